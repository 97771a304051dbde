//! Frame I/O per transport. A transport turns its bytes into client frames
//! (or the fault in place of one) and writes encoded server frames; the
//! session protocol itself lives in [`samvad_core::session`] and
//! [`crate::connection`].

mod datagram;
mod stream;
mod ws;

use std::future::Future;

use bytes::Bytes;
use samvad_proto::v1::ClientFrame;

pub use datagram::Datagrams;
pub use stream::StreamTransport;
pub use ws::WsTransport;

use samvad_core::session::FrameFault;

/// One client's frames, in and out.
pub trait Transport: Send {
    /// The next frame; `Ok(None)` when the client closed cleanly. Must be
    /// cancel safe: the connection loop selects on it.
    fn recv(
        &mut self,
    ) -> impl Future<Output = std::io::Result<Option<Result<ClientFrame, FrameFault>>>> + Send;

    /// Writes one encoded `ServerFrame` and flushes.
    fn send(&mut self, frame: Bytes) -> impl Future<Output = std::io::Result<()>> + Send {
        async move {
            self.feed(frame).await?;
            self.flush().await
        }
    }

    /// Queues one encoded `ServerFrame` to be written by the next
    /// [`Transport::flush`]: a session drains everything queued for it into
    /// one write.
    fn feed(&mut self, frame: Bytes) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Writes everything fed so far.
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Closes the transport after everything sent so far.
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// The session's datagram channel, if the transport has one.
    fn datagrams(&self) -> Option<Datagrams> {
        None
    }
}
