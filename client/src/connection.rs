//! A Samvad session from the client side, over any transport.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use prost::Message;
use samvad_proto::frame::FrameDecoder;
use samvad_proto::v1::{client_frame, server_frame, ClientFrame, Envelope, Head, ServerFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wtransport::tls::client::ServerHashVerification;
use wtransport::tls::Sha256Digest;

/// Which transport a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TransportKind {
    /// WebTransport over HTTP/3 (what browsers use).
    Wt,
    /// Native QUIC, ALPN `samvad/1`.
    Quic,
    /// WebSocket, binary protobuf frames.
    Ws,
}

impl TransportKind {
    /// `wt`, `quic` or `ws`, for reports.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Wt => "wt",
            TransportKind::Quic => "quic",
            TransportKind::Ws => "ws",
        }
    }
}

/// Where a server listens, and the certificate it presents.
#[derive(Debug, Clone)]
pub struct ServerAddr {
    /// UDP address of QUIC and WebTransport.
    pub quic: SocketAddr,
    /// `http://host:port` of the plain-HTTP listener (REST and WebSocket).
    pub http: String,
    /// SHA-256 of the server certificate, pinned by QUIC clients.
    pub cert_sha256: [u8; 32],
}

type BoxRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn AsyncWrite + Unpin + Send>;
type WsStream = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// How often an idle QUIC connection pings so that it outlives the server's
/// 30 s idle timeout.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long opening a transport may take (handshakes included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing waits for the server to take the last bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

enum Conn {
    Stream {
        recv: BoxRead,
        send: BoxWrite,
        buf: BytesMut,
        decoder: FrameDecoder,
        /// Keeps the QUIC connection (and its endpoint) open.
        _hold: Box<dyn std::any::Any + Send>,
    },
    Ws(Box<WsStream>),
}

impl Conn {
    fn stream(
        send: impl AsyncWrite + Unpin + Send + 'static,
        recv: impl AsyncRead + Unpin + Send + 'static,
        hold: impl std::any::Any + Send,
    ) -> Conn {
        Conn::Stream {
            recv: Box::new(recv),
            send: Box::new(send),
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(16 << 20),
            _hold: Box::new(hold),
        }
    }
}

/// The datagram side of a QUIC or WebTransport session.
#[derive(Clone)]
enum Datagrams {
    Quic(quinn::Connection),
    Wt(wtransport::Connection),
}

/// One client session.
pub struct Client {
    conn: Conn,
    datagrams: Option<Datagrams>,
    pub kind: TransportKind,
}

/// TLS 1.3 session tickets for the many sessions a [`Connector`] opens to
/// its one server, shared: any ticket resumes any session (a ticket is
/// the TLS session's, not the user's), and each is used once. rustls's
/// own store keeps 8 tickets per server name, which a harness of
/// thousands of sessions, each standing for a device with its own ticket,
/// would use up at once. A resumed handshake skips the certificate, its
/// signature and its check (the key exchange is still fresh: psk_dhe_ke).
struct TicketPool {
    tickets: std::sync::Mutex<std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>>,
    kx_hint: std::sync::Mutex<Option<rustls::NamedGroup>>,
    most: usize,
}

impl TicketPool {
    fn new(most: usize) -> Self {
        TicketPool {
            tickets: Default::default(),
            kx_hint: Default::default(),
            most,
        }
    }
}

impl std::fmt::Debug for TicketPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketPool")
            .field("most", &self.most)
            .finish_non_exhaustive()
    }
}

impl rustls::client::ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, _: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        *self.kx_hint.lock().expect("no panic holds the lock") = Some(group);
    }

    fn kx_hint(&self, _: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        *self.kx_hint.lock().expect("no panic holds the lock")
    }

    // TLS 1.2 is not offered (see `pinned_rustls`).
    fn set_tls12_session(
        &self,
        _: rustls::pki_types::ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }

    fn tls12_session(
        &self,
        _: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &rustls::pki_types::ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        let mut tickets = self.tickets.lock().expect("no panic holds the lock");
        if tickets.len() == self.most {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        _: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.tickets
            .lock()
            .expect("no panic holds the lock")
            .pop_back()
    }
}

/// Tickets a connector keeps at most: one per session, for as many
/// sessions as a harness opens.
const TICKETS_KEPT: usize = 1 << 18;

/// TLS 1.3 to the server whose certificate has this SHA-256, with a
/// ticket pool of its own for resumption.
fn pinned_rustls(cert_sha256: [u8; 32], alpn: &[u8]) -> rustls::ClientConfig {
    let verifier = ServerHashVerification::new([Sha256Digest::new(cert_sha256)]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config.resumption = rustls::client::Resumption::store(Arc::new(TicketPool::new(TICKETS_KEPT)));
    config
}

/// Socket buffers of the harness's UDP sockets: each carries thousands of
/// sessions, and a storm's handshakes arrive at once (the default, about
/// 200 KB, drops them and the handshakes wait for retransmission).
const UDP_BUFFER: usize = 8 << 20;

/// A UDP socket on any port of the address family of `server`, with large
/// buffers (best effort: the kernel caps them at `net.core.rmem_max`).
fn udp_socket(server: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.bind(&unspecified_like(server).into())?;
    Ok(socket.into())
}

fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// Opens a TCP connection to `host_port` from `source` (any port of it;
/// `None`: the system's choice), with Nagle off: the harness measures
/// latency.
pub async fn tcp_connect(
    host_port: &str,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<tokio::net::TcpStream> {
    let target = tokio::net::lookup_host(host_port)
        .await?
        .next()
        .context("no address for the server")?;
    let socket = if target.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    if let Some(source) = source {
        socket.bind((source, 0).into())?;
    }
    let tcp = socket.connect(target).await.context("TCP connect")?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Opens sessions of one transport to one server, sharing UDP endpoints
/// between them: thousands of QUIC sessions need a handful of sockets and
/// driver tasks, not one each. WebSocket sessions rotate over source
/// addresses so that more of them fit than one address has ports.
pub struct Connector {
    kind: TransportKind,
    server: ServerAddr,
    quic: Vec<quinn::Endpoint>,
    wt: Vec<Arc<wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>>>,
    ws_sources: Vec<std::net::IpAddr>,
    next: AtomicUsize,
}

impl Connector {
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// A connector with `endpoints` UDP sockets (QUIC, WebTransport) and
    /// `ws_sources` local addresses (WebSocket; empty: the system's choice).
    pub fn new(
        kind: TransportKind,
        server: &ServerAddr,
        endpoints: usize,
        ws_sources: Vec<std::net::IpAddr>,
    ) -> anyhow::Result<Connector> {
        let endpoints = endpoints.max(1);
        let mut quic = Vec::new();
        let mut wt = Vec::new();
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        let transport = Arc::new(transport);
        match kind {
            TransportKind::Quic => {
                let tls = pinned_rustls(server.cert_sha256, samvad_proto::ALPN_NATIVE);
                let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
                let mut config = quinn::ClientConfig::new(Arc::new(crypto));
                config.transport_config(transport);
                for _ in 0..endpoints {
                    let mut endpoint = quinn::Endpoint::new(
                        quinn::EndpointConfig::default(),
                        None,
                        udp_socket(server.quic)?,
                        quinn::default_runtime().context("no async runtime")?,
                    )?;
                    endpoint.set_default_client_config(config.clone());
                    quic.push(endpoint);
                }
            }
            TransportKind::Wt => {
                let tls = pinned_rustls(server.cert_sha256, b"h3");
                for _ in 0..endpoints {
                    let config = wtransport::ClientConfig::builder()
                        .with_bind_socket(udp_socket(server.quic)?)
                        .with_custom_tls(tls.clone())
                        .keep_alive_interval(Some(KEEP_ALIVE))
                        .build();
                    wt.push(Arc::new(wtransport::Endpoint::client(config)?));
                }
            }
            TransportKind::Ws => {}
        }
        Ok(Connector {
            kind,
            server: server.clone(),
            quic,
            wt,
            ws_sources,
            next: AtomicUsize::new(0),
        })
    }

    /// Opens a transport without saying hello; gives up after
    /// [`CONNECT_TIMEOUT`].
    pub async fn open(&self) -> anyhow::Result<Client> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.open_unbounded())
            .await
            .context("connect timed out")?
    }

    async fn open_unbounded(&self) -> anyhow::Result<Client> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut datagrams = None;
        let conn = match self.kind {
            TransportKind::Quic => {
                let endpoint = &self.quic[n % self.quic.len()];
                let conn = endpoint
                    .connect(self.server.quic, "localhost")?
                    .await
                    .context("QUIC connect")?;
                let (send, recv) = conn.open_bi().await?;
                datagrams = Some(Datagrams::Quic(conn.clone()));
                Conn::stream(send, recv, (conn, endpoint.clone()))
            }
            TransportKind::Wt => {
                let endpoint = &self.wt[n % self.wt.len()];
                // The certificate is pinned by hash, so the URL names the
                // address itself: no resolver, no localhost v4/v6 guess.
                let url = format!("https://{}/wt", self.server.quic);
                let options = wtransport::endpoint::ConnectOptions::builder(url).build();
                let conn = endpoint
                    .connect(options)
                    .await
                    .context("WebTransport connect")?;
                let (send, recv) = conn.open_bi().await?.await?;
                datagrams = Some(Datagrams::Wt(conn.clone()));
                Conn::stream(send, recv, (conn, endpoint.clone()))
            }
            TransportKind::Ws => {
                let url = format!("{}/ws", self.server.http.replacen("http", "ws", 1));
                let host_port = self
                    .server
                    .http
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let source = (!self.ws_sources.is_empty())
                    .then(|| self.ws_sources[n % self.ws_sources.len()]);
                let tcp = tcp_connect(host_port, source).await?;
                let (ws, _) = tokio_tungstenite::client_async(url, tcp)
                    .await
                    .context("WebSocket handshake")?;
                Conn::Ws(Box::new(ws))
            }
        };
        Ok(Client {
            conn,
            datagrams,
            kind: self.kind,
        })
    }

    /// Opens a transport and authenticates; returns the Welcome.
    pub async fn connect(
        &self,
        token: &str,
    ) -> anyhow::Result<(Client, samvad_proto::v1::Welcome)> {
        self.connect_device(token, "samvad-load").await
    }

    /// [`Connector::connect`] as the named device (its own ack cursor).
    pub async fn connect_device(
        &self,
        token: &str,
        device: &str,
    ) -> anyhow::Result<(Client, samvad_proto::v1::Welcome)> {
        let mut client = self.open().await?;
        client
            .send(client_frame::Kind::Hello(samvad_proto::v1::Hello {
                token: token.into(),
                device: device.into(),
            }))
            .await?;
        match client.recv_timeout(Duration::from_secs(10)).await?.kind {
            Some(server_frame::Kind::Welcome(w)) => Ok((client, w)),
            Some(server_frame::Kind::Error(e)) => {
                bail!("hello refused: {} {}", e.code().short_name(), e.message)
            }
            other => bail!("unexpected reply to hello: {other:?}"),
        }
    }
}

impl Client {
    /// Opens a transport without saying hello, on an endpoint of its own.
    pub async fn open(kind: TransportKind, server: &ServerAddr) -> anyhow::Result<Client> {
        Connector::new(kind, server, 1, Vec::new())?.open().await
    }

    /// Opens a transport on an endpoint of its own and authenticates;
    /// returns the Welcome.
    pub async fn connect(
        kind: TransportKind,
        server: &ServerAddr,
        token: &str,
    ) -> anyhow::Result<(Client, samvad_proto::v1::Welcome)> {
        Connector::new(kind, server, 1, Vec::new())?
            .connect(token)
            .await
    }

    /// [`Client::connect`] as the named device.
    pub async fn connect_device(
        kind: TransportKind,
        server: &ServerAddr,
        token: &str,
        device: &str,
    ) -> anyhow::Result<(Client, samvad_proto::v1::Welcome)> {
        Connector::new(kind, server, 1, Vec::new())?
            .connect_device(token, device)
            .await
    }

    pub async fn send(&mut self, kind: client_frame::Kind) -> anyhow::Result<()> {
        self.send_bytes(ClientFrame::of(kind).encode_to_vec().into())
            .await
    }

    /// Sends raw bytes as one frame (length-prefixed on streams, one binary
    /// message on WebSocket): for malformed-input tests.
    pub async fn send_bytes(&mut self, frame: Bytes) -> anyhow::Result<()> {
        match &mut self.conn {
            Conn::Stream { send, .. } => {
                let mut prefix = BytesMut::new();
                prost::encoding::encode_varint(frame.len() as u64, &mut prefix);
                send.write_all(&prefix).await?;
                send.write_all(&frame).await?;
            }
            Conn::Ws(ws) => ws.send(WsMessage::Binary(frame)).await?,
        }
        Ok(())
    }

    /// Sends one frame as a datagram (QUIC and WebTransport only): the
    /// server takes typing indicators this way.
    pub fn send_datagram(&self, kind: client_frame::Kind) -> anyhow::Result<()> {
        let frame = Bytes::from(ClientFrame::of(kind).encode_to_vec());
        match &self.datagrams {
            Some(Datagrams::Quic(c)) => c.send_datagram(frame)?,
            Some(Datagrams::Wt(c)) => c.send_datagram(frame)?,
            None => bail!("{} has no datagrams", self.kind.name()),
        }
        Ok(())
    }

    /// The next frame that came as a datagram.
    pub async fn recv_datagram(&self, timeout: Duration) -> anyhow::Result<ServerFrame> {
        let bytes = tokio::time::timeout(timeout, async {
            match &self.datagrams {
                Some(Datagrams::Quic(c)) => Ok(c.read_datagram().await?),
                Some(Datagrams::Wt(c)) => Ok(c.receive_datagram().await?.payload()),
                None => Err(anyhow::anyhow!("{} has no datagrams", self.kind.name())),
            }
        })
        .await
        .context("timed out waiting for a datagram")??;
        Ok(ServerFrame::decode(bytes)?)
    }

    /// Writes bytes to the stream as they are, with no length prefix.
    pub async fn send_unframed(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match &mut self.conn {
            Conn::Stream { send, .. } => send.write_all(bytes).await?,
            Conn::Ws(_) => bail!("WebSocket has no unframed bytes"),
        }
        Ok(())
    }

    /// Sends a text message (WebSocket JSON mode).
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        match &mut self.conn {
            Conn::Ws(ws) => ws.send(WsMessage::Text(text.into())).await?,
            Conn::Stream { .. } => bail!("text frames exist only on WebSocket"),
        }
        Ok(())
    }

    /// The next text message (WebSocket JSON mode).
    pub async fn recv_text(&mut self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let Conn::Ws(ws) = &mut self.conn else {
            bail!("text frames exist only on WebSocket")
        };
        loop {
            match tokio::time::timeout(timeout, ws.next())
                .await
                .context("timed out")?
            {
                Some(Ok(WsMessage::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
                Some(Ok(WsMessage::Close(_))) | None => bail!("connection closed"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// The next server frame; `None` when the server closed the session.
    pub async fn recv(&mut self) -> anyhow::Result<Option<ServerFrame>> {
        match &mut self.conn {
            Conn::Stream {
                recv, buf, decoder, ..
            } => loop {
                if let Some(frame) = decoder.decode(buf)? {
                    return Ok(Some(ServerFrame::decode(frame)?));
                }
                buf.reserve(4096);
                match recv.read_buf(buf).await {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            },
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(WsMessage::Binary(b))) => return Ok(Some(ServerFrame::decode(b)?)),
                    Some(Ok(WsMessage::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                }
            },
        }
    }

    /// The next frame, failing if none comes within `timeout` or the
    /// session closed.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> anyhow::Result<ServerFrame> {
        match tokio::time::timeout(timeout, self.recv())
            .await
            .context("timed out waiting for a frame")??
        {
            Some(frame) => Ok(frame),
            None => bail!("session closed by the server"),
        }
    }

    /// Replays the inbox after `after`, page by page, acknowledging each
    /// page; every frame but `SyncDone` goes to `each`. Returns the last
    /// sequence number. Live pushes start once this returns.
    pub async fn sync(
        &mut self,
        mut after: u64,
        mut each: impl FnMut(ServerFrame),
    ) -> anyhow::Result<u64> {
        loop {
            self.send(client_frame::Kind::Sync(samvad_proto::v1::Sync {
                after_seq: after,
                resume: false,
            }))
            .await?;
            loop {
                let frame = self.recv_timeout(Duration::from_secs(60)).await?;
                let Some(server_frame::Kind::SyncDone(done)) = frame.kind else {
                    each(frame);
                    continue;
                };
                after = done.last_seq;
                if after > 0 {
                    self.send(client_frame::Kind::Ack(samvad_proto::v1::Ack {
                        seq: after,
                    }))
                    .await?;
                }
                if !done.more {
                    return Ok(after);
                }
                break;
            }
        }
    }

    /// Closes the session (waiting at most [`CLOSE_TIMEOUT`]).
    pub async fn close(mut self) {
        let close = async {
            match &mut self.conn {
                Conn::Stream { send, .. } => {
                    let _ = send.shutdown().await;
                }
                Conn::Ws(ws) => {
                    let _ = ws.send(WsMessage::Close(None)).await;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// A chat envelope from `from` to `to`.
pub fn chat(id: &str, from: &str, to: &str, text: &str) -> Envelope {
    Envelope {
        id: id.into(),
        head: Some(Head {
            to: to.into(),
            from: from.into(),
            content_type: "text".into(),
            ..Default::default()
        }),
        body: Some(samvad_proto::v1::Body {
            text: text.into(),
            ts: 0,
        }),
        ..Default::default()
    }
}

/// A group message from `from` to group `group`.
pub fn group_message(id: &str, from: &str, group: &str, text: &str) -> Envelope {
    let mut env = chat(id, from, group, text);
    if let Some(head) = env.head.as_mut() {
        head.r#type = samvad_proto::v1::HeadType::Group as i32;
    }
    env
}
