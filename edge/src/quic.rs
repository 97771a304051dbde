//! The UDP endpoint: one quinn endpoint serves both WebTransport (ALPN
//! `h3`, handed to wtransport) and native QUIC sessions (ALPN `samvad/1`),
//! told apart by the ALPN of the TLS handshake, on one port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use samvad_proto::ALPN_NATIVE;

use crate::admission::Place;
use crate::connection;
use crate::state::Edge;
use crate::tls::Identity;
use crate::transport::{Datagrams, StreamTransport};
use crate::webtransport;

/// How long a WebTransport session may take to be set up once its QUIC
/// handshake is done.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The application close code of a connection whose handshake finished
/// when the edge had no session place left (it was free when the
/// connection came): retry later, as after `CONNECTION_REFUSED`.
const SESSIONS_FULL: quinn::VarInt = quinn::VarInt::from_u32(0x503);
/// Application close code: no session stream came in time.
const NO_SESSION_STREAM: quinn::VarInt = quinn::VarInt::from_u32(0x408);

/// ALPN of HTTP/3, which WebTransport runs on.
pub const ALPN_H3: &[u8] = b"h3";
/// Path browsers open the WebTransport session on.
pub const WT_PATH: &str = "/wt";

/// The quinn server config for `identity`.
pub fn server_config(identity: &Identity) -> anyhow::Result<quinn::ServerConfig> {
    let tls = identity.server_config(&[ALPN_H3, ALPN_NATIVE])?;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).context("QUIC TLS config")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Transport parameters sized for chat sessions, which are many, mostly
/// idle, and send small frames (bench/RESULTS.md, "Sessions at scale"):
/// - streams: quinn allocates the state of every stream a peer may open
///   up front. A native session opens one bidirectional stream; a
///   WebTransport one opens the CONNECT request and its session stream,
///   and the HTTP/3 control and QPACK streams (three unidirectional).
/// - no segmentation offload: a connection keeps a send buffer as large as
///   its largest transmit, and batches of datagrams only pay off for bulk
///   transfers (files go over HTTP, media over its own socket).
/// - no path MTU discovery: chat frames fit the 1200-byte minimum, and
///   the probes would wake every idle connection.
fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(
            Duration::from_secs(30)
                .try_into()
                .expect("30 s is a valid idle timeout"),
        ))
        .max_concurrent_bidi_streams(4u32.into())
        .max_concurrent_uni_streams(4u32.into())
        .enable_segmentation_offload(false)
        .mtu_discovery_config(None);
    transport
}

/// Socket buffers of the endpoint's UDP socket. Every session shares it: a
/// reconnect storm is thousands of 1200-byte Initial packets at once, and
/// what overflows the buffer is dropped, so those handshakes wait for
/// retransmission timers that back off to seconds (10 000 sessions coming
/// back at once dropped 27 000 datagrams with 8 MB, and a third of the
/// sessions timed out waiting for their welcome). Queued is better than
/// dropped: a packet waiting in the buffer costs its bytes for as long as
/// the endpoint takes to reach it.
const UDP_BUFFER: usize = 64 << 20;

/// Sizes one of the socket's buffers: past `net.core.rmem_max` /
/// `wmem_max` when the process may (`SO_RCVBUFFORCE`, CAP_NET_ADMIN),
/// else as far as those caps allow. Says what it got when that is less.
fn size_buffer(socket: &socket2::Socket, receive: bool) {
    use std::os::fd::AsRawFd;
    let (what, forced) = if receive {
        ("receive", libc::SO_RCVBUFFORCE)
    } else {
        ("send", libc::SO_SNDBUFFORCE)
    };
    let size = libc::c_int::try_from(UDP_BUFFER).expect("the buffer size fits a C int");
    // SAFETY: a valid socket, and a pointer to a c_int with its length,
    // as setsockopt takes for these options.
    let forced_ok = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            forced,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced_ok {
        let set = if receive {
            socket.set_recv_buffer_size(UDP_BUFFER)
        } else {
            socket.set_send_buffer_size(UDP_BUFFER)
        };
        if let Err(e) = set {
            tracing::warn!(error = %e, "could not size the UDP {what} buffer");
        }
    }
    let got = if receive {
        socket.recv_buffer_size()
    } else {
        socket.send_buffer_size()
    };
    // The kernel doubles what it is given, for its bookkeeping.
    match got {
        Ok(got) if got < UDP_BUFFER => tracing::info!(
            bytes = got,
            wanted = UDP_BUFFER,
            "UDP {what} buffer capped by net.core.{}mem_max (raise it, or grant CAP_NET_ADMIN)",
            if receive { "r" } else { "w" },
        ),
        _ => {}
    }
}

pub fn bind(addr: SocketAddr, identity: &Identity) -> anyhow::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .context("UDP socket")?;
    size_buffer(&socket, true);
    size_buffer(&socket, false);
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    let runtime = quinn::default_runtime().context("no async runtime for QUIC")?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config(identity)?),
        socket.into(),
        runtime,
    )
    .with_context(|| format!("serving QUIC on {addr}"))
}

/// How long an admitted connection may wait in line for its handshake
/// turn. A quinn client gives up on a handshake after its idle timeout
/// (30 s by default, as the native client): past this, little of the
/// handshake's time would be left and the turn would likely be spent on a
/// client that has gone. (Chrome gives up on a QUIC handshake after 10 s;
/// a browser that left is one handshake of work wasted, not a failure.)
const LONGEST_WAIT: Duration = Duration::from_secs(25);

/// An admitted connection waiting for its handshake turn.
struct Waiting {
    incoming: quinn::Incoming,
    place: Place,
    since: Instant,
}

/// A handshake at work: its admission place and its turn, both given back
/// when the connection becomes a session or fails.
struct Handshake {
    _place: Place,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

/// Accepts connections until the endpoint closes. Admission comes first:
/// a refused connection costs one `CONNECTION_REFUSED` packet, no
/// handshake.
///
/// Admitted connections wait in line and at most
/// `Limits::handshakes_at_once` handshakes are worked on at once, first
/// come first served. Why: when thousands of clients come back at once (a
/// reconnect storm), working on all of them together makes every one of
/// them slow. Each handshake is a few round trips, and each round trip
/// would wait behind the packets of all the others; past a second the
/// clients' retransmission timers fire, the retransmitted flights add
/// work, and the timers back off to many seconds. In line, a handshake
/// takes milliseconds once its turn comes, and waiting costs nothing but
/// the client's first packet (quinn keeps the `Incoming`, and buffers
/// its retransmitted Initials).
pub async fn serve(endpoint: quinn::Endpoint, edge: Arc<Edge>) {
    let turns = Arc::new(tokio::sync::Semaphore::new(
        edge.admission.limits().handshakes_at_once.max(1),
    ));
    let mut line: std::collections::VecDeque<Waiting> = std::collections::VecDeque::new();
    loop {
        tokio::select! {
            biased;
            turn = turns.clone().acquire_owned(), if !line.is_empty() => {
                let turn = turn.expect("the semaphore is never closed");
                let Waiting { incoming, place, since } =
                    line.pop_front().expect("the line is not empty");
                edge.metrics.handshakes_waiting.set(line.len() as i64);
                if since.elapsed() > LONGEST_WAIT {
                    tracing::debug!("QUIC connection waited too long for a handshake turn");
                    incoming.ignore();
                    continue;
                }
                start(incoming, &edge, Handshake { _place: place, _turn: turn });
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let admitted = edge
                    .admission
                    .connection(incoming.remote_address().ip(), Instant::now())
                    .and_then(|()| edge.admission.handshake());
                match admitted {
                    Ok(place) => {
                        line.push_back(Waiting { incoming, place, since: Instant::now() });
                        edge.metrics.handshakes_waiting.set(line.len() as i64);
                    }
                    Err(refusal) => {
                        edge.metrics.refused(refusal);
                        incoming.refuse();
                    }
                }
            }
        }
    }
}

/// Starts the handshake of an admitted connection, in the task that will
/// run its session.
fn start(incoming: quinn::Incoming, edge: &Arc<Edge>, handshake: Handshake) {
    // Accepted here, not in the task: an async fn keeps its arguments
    // for its whole life, and an `Incoming` (it carries the client's
    // first packet) is about 350 bytes more than a `Connecting`.
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!(error = %e, "QUIC connection refused by its handshake");
            return;
        }
    };
    let edge = edge.clone();
    tokio::spawn(async move {
        if let Err(e) = handle(connecting, edge, handshake).await {
            tracing::debug!(error = %e, "QUIC connection ended with an error");
        }
    });
}

/// The place of a session whose handshake is done (taken before the
/// handshake's place is let go); a refusal closes the connection.
fn session_place(
    edge: &Edge,
    conn: &quinn::Connection,
    handshake: Handshake,
) -> anyhow::Result<Place> {
    let place = edge.admission.session();
    drop(handshake);
    place.map_err(|refusal| {
        edge.metrics.refused(refusal);
        conn.close(SESSIONS_FULL, refusal.to_string().as_bytes());
        anyhow::anyhow!(refusal)
    })
}

/// Runs one connection: its handshake, then its session, in one task.
///
/// The handshake (TLS, then for WebTransport the HTTP/3 set-up) runs in
/// a box of its own that is freed when it is done. Why: a task's future
/// is allocated at its largest state for the task's whole life, and
/// awaited inline the handshake's futures took room beside the session's
/// in every idle session's task (bench/RESULTS.md, "Idle sessions,
/// smaller again": with `connection::run`'s own change, the task went
/// from 3.4 to 1.7 KB). Not a task of its own either: the handshake
/// leaves wakers in the streams it read (the HTTP/3 control and QPACK
/// streams, kept open and never read again), and a finished task stays
/// allocated while a waker of it is held.
async fn handle(
    connecting: quinn::Connecting,
    edge: Arc<Edge>,
    handshake: Handshake,
) -> anyhow::Result<()> {
    // The session is awaited as the value of a block in which everything
    // else was bound: a binding still in scope at the `.await` (even one
    // moved out of) keeps its bytes in this future for the session's life,
    // and this future is most of an idle session's task.
    let held;
    {
        let Some(Established {
            conn,
            transport,
            transport_name,
            keep_open,
            place,
        }) = Box::pin(establish(connecting, &edge, handshake)).await?
        else {
            return Ok(());
        };
        held = (conn, keep_open, place);
        connection::run(edge, transport, transport_name)
    }
    .await;
    let (conn, keep_open, place) = held;
    // The transport waited for the client to acknowledge the last frames,
    // so closing now loses nothing.
    drop(keep_open);
    conn.close(0u32.into(), b"session ended");
    drop(place);
    Ok(())
}

/// A connection whose handshake is done and whose session stream is open.
struct Established {
    conn: quinn::Connection,
    transport: StreamTransport,
    transport_name: &'static str,
    /// WebTransport's streams that must stay open as long as the session
    /// (boxed: a native QUIC session has none, and its task is smaller).
    keep_open: Option<Box<webtransport::KeepOpen>>,
    /// The session's admission place, given back when it ends.
    place: Place,
}

/// Takes a connection through its handshake to its session stream;
/// `None` if it closed on the way (no session stream in time).
async fn establish(
    mut connecting: quinn::Connecting,
    edge: &Edge,
    handshake: Handshake,
) -> anyhow::Result<Option<Established>> {
    let alpn = connecting
        .handshake_data()
        .await?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()
        .and_then(|h| h.protocol);
    let max_frame = edge.session_config.max_frame;
    match alpn.as_deref() {
        Some(ALPN_NATIVE) => {
            let conn = connecting.await?;
            let place = session_place(edge, &conn, handshake)?;
            // A client that connects and opens no stream (or one it never
            // writes on: quinn shows a stream at its first byte) would hold
            // its place for as long as it sends keep-alives.
            let Ok(stream) = tokio::time::timeout(
                connection::spread(connection::HELLO_TIMEOUT),
                conn.accept_bi(),
            )
            .await
            else {
                conn.close(NO_SESSION_STREAM, b"no session stream in time");
                return Ok(None);
            };
            let (send, recv) = stream?;
            let transport = StreamTransport::new(recv, send, max_frame)
                .with_datagrams(Datagrams::Quic(conn.clone()));
            Ok(Some(Established {
                conn,
                transport,
                transport_name: "quic",
                keep_open: None,
                place,
            }))
        }
        Some(ALPN_H3) => {
            let conn = connecting.await?;
            let session = tokio::time::timeout(
                connection::spread(HANDSHAKE_TIMEOUT),
                webtransport::accept(&conn, WT_PATH),
            )
            .await
            .context("WebTransport handshake timed out")??;
            let place = session_place(edge, &conn, handshake)?;
            let transport = StreamTransport::new(session.recv, session.send, max_frame)
                .with_read_ahead(session.read_ahead)
                .with_datagrams(Datagrams::WebTransport(session.datagrams));
            Ok(Some(Established {
                conn,
                transport,
                transport_name: "webtransport",
                keep_open: Some(Box::new(session.keep_open)),
                place,
            }))
        }
        other => anyhow::bail!("unexpected ALPN {other:?}"),
    }
}
