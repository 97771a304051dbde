//! WebTransport over HTTP/3 (draft-ietf-webtrans-http3), served straight
//! on quinn: the part of HTTP/3 a WebTransport session needs, and nothing
//! else. The codecs (frames, QPACK, settings, stream headers) are
//! wtransport-proto's, which does no I/O of its own.
//!
//! Why not wtransport's server: it runs a driver per connection, with
//! channels and a worker task of its own, about 34 KB that every idle
//! session held beside quinn's connection (bench/RESULTS.md, "Sessions at
//! scale"), and it refused some handshakes under load (`H3_FRAME_UNEXPECTED`).
//! Here the handshake is one async function run by the session's own task,
//! and what it leaves is the streams themselves.
//!
//! The handshake, as a browser does it:
//! 1. both sides open a control stream and send SETTINGS (ours enable the
//!    extended CONNECT, HTTP/3 datagrams and WebTransport; a QPACK dynamic
//!    table of 0, so headers are plain static-table QPACK);
//! 2. the client sends `CONNECT` with `:protocol webtransport` on its first
//!    bidirectional stream; we answer `200` (or `404` for another path);
//! 3. the client opens a bidirectional stream that starts with
//!    `WEBTRANSPORT_STREAM` and the session's id: the session's frames.
//!
//! Datagrams carry the session's quarter stream id before the payload.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use wtransport_proto::bytes::BufferReader;
use wtransport_proto::datagram::Datagram;
use wtransport_proto::error::ErrorCode as H3Code;
use wtransport_proto::frame::{Frame, FrameKind};
use wtransport_proto::headers::Headers;
use wtransport_proto::ids::{QStreamId, SessionId, StreamId};
use wtransport_proto::session::{SessionRequest, SessionResponse};
use wtransport_proto::settings::Settings;
use wtransport_proto::stream_header::{StreamHeader, StreamKind};
use wtransport_proto::varint::VarInt;

/// How long a refusal waits for the client to have read it.
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Most bytes read while waiting for one handshake frame or header.
const MAX_HANDSHAKE_READ: usize = 16 * 1024;

/// Why a connection did not become a WebTransport session.
#[derive(Debug, thiserror::Error)]
pub enum WtError {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream ended during the handshake")]
    UnexpectedEnd,
    #[error("HTTP/3 protocol violation: {0:?}")]
    Protocol(H3Code),
    #[error("a handshake frame over {MAX_HANDSHAKE_READ} bytes")]
    TooLarge,
    #[error("no WebTransport endpoint at {0:?}")]
    NotFound(String),
}

/// An established session: its stream, its datagrams, and the streams
/// that must stay open as long as it lives.
pub struct Session {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    /// Session stream bytes read along with its header.
    pub read_ahead: BytesMut,
    pub datagrams: SessionDatagrams,
    /// The CONNECT stream (closing it ends the session), our control
    /// stream and the client's control and QPACK streams (closing those
    /// is an HTTP/3 connection error).
    pub keep_open: KeepOpen,
}

/// Streams held, not used, for the session's lifetime.
pub struct KeepOpen {
    _connect: (quinn::SendStream, quinn::RecvStream),
    _control: quinn::SendStream,
    _peer: Vec<quinn::RecvStream>,
    /// The client's unidirectional streams whose type has not come yet.
    _classifying: FuturesUnordered<Classifying>,
}

/// The session's datagrams on its connection.
#[derive(Clone)]
pub struct SessionDatagrams {
    conn: quinn::Connection,
    qsid: QStreamId,
}

impl SessionDatagrams {
    /// Sends `payload` as one datagram of the session; false if it cannot
    /// go (too large for the path, or the peer takes no datagrams).
    pub fn send(&self, payload: &[u8]) -> bool {
        let datagram = Datagram::new(self.qsid, payload);
        let mut buf = vec![0; datagram.write_size()];
        datagram
            .write(&mut buf)
            .expect("the buffer has the datagram's size");
        self.conn.send_datagram(Bytes::from(buf)).is_ok()
    }

    /// The next datagram of this session (others are dropped); `None` once
    /// the connection is gone. Cancel safe.
    pub async fn recv(&self) -> Option<Bytes> {
        loop {
            let bytes = self.conn.read_datagram().await.ok()?;
            if let Some(payload) = session_payload(&bytes, self.qsid) {
                return Some(payload);
            }
        }
    }
}

/// The payload of `datagram` if it belongs to the session `qsid`.
fn session_payload(datagram: &Bytes, qsid: QStreamId) -> Option<Bytes> {
    let parsed = Datagram::read(datagram).ok()?;
    if parsed.qstream_id() != qsid {
        return None;
    }
    let start = datagram.len() - parsed.payload().len();
    Some(datagram.slice(start..))
}

/// Our SETTINGS: a QPACK table of 0 (static table only), extended
/// CONNECT, HTTP/3 datagrams, one WebTransport session per connection.
fn settings() -> Settings {
    Settings::builder()
        .qpack_max_table_capacity(VarInt::from_u32(0))
        .qpack_blocked_streams(VarInt::from_u32(0))
        .enable_connect_protocol()
        .enable_webtransport()
        .enable_h3_datagrams()
        .webtransport_max_sessions(VarInt::from_u32(1))
        .build()
}

/// The bytes that open our control stream: its type, then SETTINGS.
fn control_stream_preface() -> Vec<u8> {
    let mut out = Vec::new();
    StreamHeader::new_control()
        .write(&mut out)
        .expect("a Vec grows");
    settings()
        .generate_frame()
        .write(&mut out)
        .expect("a Vec grows");
    out
}

/// Serves the WebTransport handshake on `conn` for sessions at `path`.
/// The caller bounds it in time.
pub async fn accept(conn: &quinn::Connection, path: &str) -> Result<Session, WtError> {
    let mut control = conn.open_uni().await?;
    control.write_all(&control_stream_preface()).await?;

    // The client's unidirectional streams, each read up to its type (and
    // the control stream's SETTINGS) beside the rest of the handshake.
    // None of them may be dropped: that would stop the client's control
    // stream, which HTTP/3 treats as closing the connection.
    let mut peer_uni: FuturesUnordered<Classifying> = FuturesUnordered::new();
    let mut peer = Vec::new();
    let mut peer_settings = false;
    let mut connect: Option<(quinn::SendStream, quinn::RecvStream, SessionId)> = None;
    let mut session: Option<(quinn::SendStream, quinn::RecvStream, BytesMut)> = None;
    loop {
        match (peer_settings, session.take(), connect.take()) {
            (true, Some((send, recv, read_ahead)), Some((connect_send, connect_recv, id))) => {
                return Ok(Session {
                    send,
                    recv,
                    read_ahead,
                    datagrams: SessionDatagrams {
                        conn: conn.clone(),
                        qsid: QStreamId::from_session_id(id),
                    },
                    keep_open: KeepOpen {
                        _connect: (connect_send, connect_recv),
                        _control: control,
                        _peer: peer,
                        _classifying: peer_uni,
                    },
                });
            }
            (_, not_yet_session, not_yet_connect) => {
                session = not_yet_session;
                connect = not_yet_connect;
            }
        }
        tokio::select! {
            uni = conn.accept_uni() => peer_uni.push(Box::pin(classify_uni(uni?))),
            Some(classified) = peer_uni.next(), if !peer_uni.is_empty() => {
                if let Some((kind, recv)) = classified? {
                    peer_settings |= matches!(kind, StreamKind::Control);
                    peer.push(recv);
                }
            }
            bi = conn.accept_bi(), if session.is_none() => {
                let (mut send, mut recv) = bi?;
                match &connect {
                    None => {
                        let id = session_id(recv.id())?;
                        answer_connect(&mut send, &mut recv, path).await?;
                        connect = Some((send, recv, id));
                    }
                    Some((_, _, id)) => {
                        let mut buf = BytesMut::new();
                        let opened = read_until(&mut recv, &mut buf, session_stream_header).await?;
                        if opened != Some(*id) {
                            return Err(WtError::Protocol(H3Code::Id));
                        }
                        session = Some((send, recv, buf));
                    }
                }
            }
        }
    }
}

/// A client's unidirectional stream being read up to its type.
type Classifying = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Option<(StreamKind, quinn::RecvStream)>, WtError>>
            + Send,
    >,
>;

fn session_id(stream: quinn::StreamId) -> Result<SessionId, WtError> {
    let id = VarInt::try_from_u64(u64::from(stream)).map_err(|_| WtError::Protocol(H3Code::Id))?;
    SessionId::try_from_session_stream(StreamId::new(id)).map_err(|_| WtError::Protocol(H3Code::Id))
}

/// Reads the request on the CONNECT stream and answers it: `200` for a
/// WebTransport request at `path`, `404` (and an error) for another path.
async fn answer_connect(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    path: &str,
) -> Result<(), WtError> {
    let mut buf = BytesMut::new();
    let headers = read_until(recv, &mut buf, connect_request).await?;
    let request =
        SessionRequest::try_from(headers).map_err(|_| WtError::Protocol(H3Code::Message))?;
    let found = request.path() == path;
    let response = if found {
        SessionResponse::ok()
    } else {
        SessionResponse::not_found()
    };
    let mut out = Vec::new();
    response
        .headers()
        .generate_frame()
        .write(&mut out)
        .expect("a Vec grows");
    send.write_all(&out).await?;
    if !found {
        // The connection closes when this returns: first let the client
        // have the answer (or give up on it after a moment).
        if send.finish().is_ok() {
            let _ = tokio::time::timeout(ANSWER_GRACE, send.stopped()).await;
        }
        return Err(WtError::NotFound(request.path().to_string()));
    }
    Ok(())
}

/// Reads a client's unidirectional stream up to its type: control streams
/// (after their SETTINGS) and QPACK streams are kept open; anything else
/// is refused, as HTTP/3 asks of unknown stream types.
async fn classify_uni(
    mut recv: quinn::RecvStream,
) -> Result<Option<(StreamKind, quinn::RecvStream)>, WtError> {
    let mut buf = BytesMut::new();
    let header = read_until(&mut recv, &mut buf, |r| {
        StreamHeader::read_from_buffer(r).map_err(|_| WtError::Protocol(H3Code::StreamCreation))
    })
    .await?;
    match header.kind() {
        StreamKind::Control => {
            read_until(&mut recv, &mut buf, peer_settings).await?;
            Ok(Some((header.kind(), recv)))
        }
        StreamKind::QPackEncoder | StreamKind::QPackDecoder => Ok(Some((header.kind(), recv))),
        StreamKind::WebTransport | StreamKind::Exercise(_) => {
            let _ = recv.stop(
                quinn::VarInt::from_u64(H3Code::StreamCreation.to_code().into_inner())
                    .expect("an HTTP/3 code is a varint"),
            );
            Ok(None)
        }
    }
}

/// The first frame in `r`, if it is all there: what `take` makes of it
/// when `is_expected` holds for its kind, else `unexpected`; bytes that are
/// no frame are a frame error.
fn first_frame<T>(
    r: &mut BufferReader,
    is_expected: fn(&FrameKind) -> bool,
    unexpected: H3Code,
    take: impl FnOnce(&Frame) -> Result<T, H3Code>,
) -> Result<Option<T>, WtError> {
    match Frame::read_from_buffer(r) {
        Ok(Some(f)) if is_expected(&f.kind()) => take(&f).map(Some).map_err(WtError::Protocol),
        Ok(Some(_)) => Err(WtError::Protocol(unexpected)),
        Ok(None) => Ok(None),
        Err(_) => Err(WtError::Protocol(H3Code::Frame)),
    }
}

/// The request on a CONNECT stream: a HEADERS frame first.
fn connect_request(r: &mut BufferReader) -> Result<Option<Headers>, WtError> {
    first_frame(
        r,
        |k| matches!(k, FrameKind::Headers),
        H3Code::FrameUnexpected,
        Headers::with_frame,
    )
}

/// The session a WebTransport stream belongs to: `WEBTRANSPORT_STREAM`
/// and the session's id first.
fn session_stream_header(r: &mut BufferReader) -> Result<Option<Option<SessionId>>, WtError> {
    first_frame(
        r,
        |k| matches!(k, FrameKind::WebTransport),
        H3Code::FrameUnexpected,
        |f| Ok(f.session_id()),
    )
}

/// The client's SETTINGS: the first frame of its control stream.
fn peer_settings(r: &mut BufferReader) -> Result<Option<Settings>, WtError> {
    first_frame(
        r,
        |k| matches!(k, FrameKind::Settings),
        H3Code::MissingSettings,
        Settings::with_frame,
    )
}

/// Reads `recv` into `buf` until `parse` finds what it looks for at the
/// start of `buf`; consumes what it parsed and leaves the rest in `buf`.
async fn read_until<T>(
    recv: &mut quinn::RecvStream,
    buf: &mut BytesMut,
    mut parse: impl FnMut(&mut BufferReader) -> Result<Option<T>, WtError>,
) -> Result<T, WtError> {
    loop {
        let mut reader = BufferReader::new(buf);
        if let Some(parsed) = parse(&mut reader)? {
            let used = reader.offset();
            buf.advance(used);
            return Ok(parsed);
        }
        if buf.len() >= MAX_HANDSHAKE_READ {
            return Err(WtError::TooLarge);
        }
        match recv
            .read_chunk(MAX_HANDSHAKE_READ - buf.len(), true)
            .await?
        {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => return Err(WtError::UnexpectedEnd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_settings_open_the_control_stream_and_read_back() {
        let preface = control_stream_preface();
        let mut reader = BufferReader::new(&preface);
        let header = StreamHeader::read_from_buffer(&mut reader)
            .unwrap()
            .unwrap();
        assert!(matches!(header.kind(), StreamKind::Control));
        let frame = Frame::read_from_buffer(&mut reader).unwrap().unwrap();
        let settings = Settings::with_frame(&frame).unwrap();
        assert_eq!(
            settings.get(wtransport_proto::settings::SettingId::QPackMaxTableCapacity),
            Some(VarInt::from_u32(0))
        );
        assert!(settings
            .get(wtransport_proto::settings::SettingId::EnableWebTransport)
            .is_some());
        assert!(settings
            .get(wtransport_proto::settings::SettingId::H3Datagram)
            .is_some());
        assert_eq!(reader.offset(), preface.len());
    }

    fn bytes_of(frame: Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.write(&mut out).unwrap();
        out
    }

    #[test]
    fn handshake_frames_out_of_place_are_protocol_errors() {
        let settings = bytes_of(settings().generate_frame());
        let headers = bytes_of(SessionResponse::ok().headers().generate_frame());
        let parse = |f: fn(&mut BufferReader) -> Result<Option<()>, WtError>, b: &[u8]| {
            f(&mut BufferReader::new(b))
        };
        let code = |r: Result<Option<()>, WtError>| match r {
            Err(WtError::Protocol(c)) => c.to_code(),
            other => panic!("not a protocol error: {other:?}"),
        };
        let connect = |r: &mut BufferReader| connect_request(r).map(|o| o.map(drop));
        let stream = |r: &mut BufferReader| session_stream_header(r).map(|o| o.map(drop));
        let control = |r: &mut BufferReader| peer_settings(r).map(|o| o.map(drop));
        // The right frame in the right place parses; half of one waits.
        assert!(matches!(parse(connect, &headers), Ok(Some(()))));
        assert!(matches!(parse(control, &settings), Ok(Some(()))));
        assert!(matches!(parse(connect, &headers[..2]), Ok(None)));
        // Another frame where one is expected.
        assert_eq!(
            code(parse(connect, &settings)),
            H3Code::FrameUnexpected.to_code()
        );
        assert_eq!(
            code(parse(stream, &headers)),
            H3Code::FrameUnexpected.to_code()
        );
        assert_eq!(
            code(parse(control, &headers)),
            H3Code::MissingSettings.to_code()
        );
        // A HEADERS frame whose QPACK block is garbage.
        let garbage = bytes_of(Frame::new_headers(std::borrow::Cow::Borrowed(&[0xff; 8])));
        assert!(matches!(
            parse(connect, &garbage),
            Err(WtError::Protocol(_))
        ));
    }

    #[test]
    fn datagrams_of_other_sessions_are_not_ours() {
        let id = session_id(quinn::StreamId::new(quinn::Side::Client, quinn::Dir::Bi, 1)).unwrap();
        let ours = QStreamId::from_session_id(id);
        let other = QStreamId::from_session_id(
            session_id(quinn::StreamId::new(quinn::Side::Client, quinn::Dir::Bi, 2)).unwrap(),
        );
        let encode = |qsid, payload: &[u8]| {
            let d = Datagram::new(qsid, payload);
            let mut buf = vec![0; d.write_size()];
            d.write(&mut buf).unwrap();
            Bytes::from(buf)
        };
        assert_eq!(
            session_payload(&encode(ours, b"typing"), ours).as_deref(),
            Some(&b"typing"[..])
        );
        assert_eq!(session_payload(&encode(other, b"typing"), ours), None);
        assert_eq!(session_payload(&Bytes::from_static(&[0xff]), ours), None);
    }

    #[test]
    fn session_ids_are_the_connect_streams_ids() {
        let first = quinn::StreamId::new(quinn::Side::Client, quinn::Dir::Bi, 0);
        assert_eq!(session_id(first).unwrap().into_u64(), 0);
        let third = quinn::StreamId::new(quinn::Side::Client, quinn::Dir::Bi, 2);
        assert_eq!(session_id(third).unwrap().into_u64(), 8);
        let uni = quinn::StreamId::new(quinn::Side::Client, quinn::Dir::Uni, 0);
        assert!(session_id(uni).is_err());
    }
}
