//! A session on one bidirectional QUIC stream (native `samvad/1` and
//! WebTransport): varint-length-prefixed protobuf frames.

use bytes::{Bytes, BytesMut};
use prost::Message;
use samvad_proto::frame::{FrameDecoder, FrameError};
use samvad_proto::v1::ClientFrame;
use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Datagrams, Transport};
use crate::session::FrameFault;

/// How long closing waits for the client to acknowledge the last frames
/// (often the error that ends the session) before the connection goes.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Read buffer growth step. The buffer starts empty and is let go whenever
/// it holds no partial frame: idle sessions hold no read buffer at all.
const READ_CHUNK: usize = 2048;

/// Fed frames are written once this much is waiting, flush or not.
const WRITE_BATCH: usize = 64 * 1024;

pub struct StreamTransport<R, W> {
    recv: R,
    send: W,
    buf: BytesMut,
    /// Frames fed and not yet flushed.
    out: BytesMut,
    decoder: FrameDecoder,
    /// The stream lost sync (bad length prefix): nothing more can be read.
    broken: bool,
    datagrams: Option<Datagrams>,
}

impl<R, W> StreamTransport<R, W> {
    pub fn new(recv: R, send: W, max_frame: usize) -> Self {
        StreamTransport {
            recv,
            send,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame),
            broken: false,
            datagrams: None,
        }
    }

    /// Bytes of the stream already read (with a header before them).
    pub fn with_read_ahead(mut self, bytes: BytesMut) -> Self {
        self.buf = bytes;
        self
    }

    /// The session's connection also carries datagrams.
    pub fn with_datagrams(mut self, datagrams: Datagrams) -> Self {
        self.datagrams = Some(datagrams);
        self
    }
}

/// A QUIC send stream that can be finished and report when the peer has
/// acknowledged everything on it. Closing the connection before that
/// discards data in flight, so the session's last frame would be lost.
pub trait FinishAcked: Send {
    fn finish_acked(&mut self) -> impl Future<Output = ()> + Send;
}

impl FinishAcked for quinn::SendStream {
    async fn finish_acked(&mut self) {
        if self.finish().is_ok() {
            let _ = self.stopped().await;
        }
    }
}

impl<R, W> Transport for StreamTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + FinishAcked + Unpin + Send,
{
    async fn recv(&mut self) -> std::io::Result<Option<Result<ClientFrame, FrameFault>>> {
        if self.broken {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream out of sync",
            ));
        }
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return Ok(Some(
                        ClientFrame::decode(frame)
                            .map_err(|e| FrameFault::Malformed(e.to_string())),
                    ));
                }
                Err(FrameError::TooLarge { len, .. }) => {
                    return Ok(Some(Err(FrameFault::TooLarge(len))))
                }
                Err(FrameError::BadLength) => {
                    self.broken = true;
                    return Ok(Some(Err(FrameFault::Malformed(
                        "invalid length prefix; closing".into(),
                    ))));
                }
                Ok(None) => {
                    if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                        self.buf.reserve(READ_CHUNK);
                    }
                    if self.recv.read_buf(&mut self.buf).await? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn feed(&mut self, frame: Bytes) -> std::io::Result<()> {
        // Held only while frames wait for their flush: idle sessions keep
        // no write buffer.
        self.out.reserve(frame.len() + 10);
        prost::encoding::encode_varint(frame.len() as u64, &mut self.out);
        self.out.extend_from_slice(&frame);
        if self.out.len() >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.send.write_all(&out).await
    }

    fn datagrams(&self) -> Option<Datagrams> {
        self.datagrams.clone()
    }

    async fn close(&mut self) {
        let _ = Transport::flush(self).await;
        let _ = self.send.flush().await;
        let _ = tokio::time::timeout(CLOSE_GRACE, self.send.finish_acked()).await;
    }
}
