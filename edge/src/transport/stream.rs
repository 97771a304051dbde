//! A session on one bidirectional QUIC stream (native `samvad/1` and
//! WebTransport): varint-length-prefixed protobuf frames.

use bytes::{Bytes, BytesMut};
use prost::Message;
use samvad_proto::frame::{FrameDecoder, FrameError};
use samvad_proto::v1::ClientFrame;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Datagrams, Transport};
use samvad_core::session::FrameFault;

/// How long closing waits for the client to acknowledge the last frames
/// (often the error that ends the session) before the connection goes.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Most bytes taken from the stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Fed frames are written once this much is waiting, flush or not.
const WRITE_BATCH: usize = 64 * 1024;

pub struct StreamTransport {
    recv: quinn::RecvStream,
    send: quinn::SendStream,
    /// Bytes of a frame not complete yet. Filled from quinn's own chunks
    /// only when they arrive and let go once it holds no partial frame:
    /// an idle session holds no read buffer at all.
    buf: BytesMut,
    /// Frames fed and not yet flushed.
    out: BytesMut,
    decoder: FrameDecoder,
    /// The stream lost sync (bad length prefix): nothing more can be read.
    broken: bool,
    datagrams: Option<Datagrams>,
}

impl StreamTransport {
    pub fn new(recv: quinn::RecvStream, send: quinn::SendStream, max_frame: usize) -> Self {
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

impl Transport for StreamTransport {
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
                // Cancel safe: quinn hands out nothing until it returns.
                Ok(None) => match self.recv.read_chunk(READ_CHUNK, true).await? {
                    Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                    None => return Ok(None),
                },
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
        self.send
            .write_all(&out)
            .await
            .map_err(std::io::Error::from)
    }

    fn datagrams(&self) -> Option<Datagrams> {
        self.datagrams.clone()
    }

    /// Closing the connection before the peer acknowledged everything
    /// would discard data in flight (often the error that ends the
    /// session): finish the stream and wait, briefly, until it is acked.
    async fn close(&mut self) {
        let _ = Transport::flush(self).await;
        let _ = self.send.flush().await;
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, self.send.stopped()).await;
        }
    }
}
