//! Unreliable datagrams (RFC 9221 on native QUIC, RFC 9297 on
//! WebTransport) for what may be lost and must not wait: typing
//! indicators. One datagram carries one encoded frame, no length prefix.
//!
//! Only ephemeral frames ride datagrams. A datagram that does not fit, or a
//! transport without them (WebSocket), falls back to the session's stream.

use bytes::Bytes;

use crate::webtransport::SessionDatagrams;

/// A session's datagram channel: a handle to its connection (cheap to
/// clone; the connection is shared).
#[derive(Clone)]
pub enum Datagrams {
    Quic(quinn::Connection),
    WebTransport(SessionDatagrams),
}

impl Datagrams {
    /// Sends `frame` as one datagram; false if it cannot go (too large for
    /// the path, or the peer does not take datagrams).
    pub fn send(&self, frame: Bytes) -> bool {
        match self {
            Datagrams::Quic(c) => c.send_datagram(frame).is_ok(),
            Datagrams::WebTransport(s) => s.send(&frame),
        }
    }

    /// The next datagram; `None` once the connection is gone. Cancel safe.
    pub async fn recv(&self) -> Option<Bytes> {
        match self {
            Datagrams::Quic(c) => c.read_datagram().await.ok(),
            Datagrams::WebTransport(s) => s.recv().await,
        }
    }
}
