//! A session on one bidirectional QUIC stream (native `samvad/1` and
//! WebTransport): varint-length-prefixed protobuf frames.

use bytes::{Bytes, BytesMut};
use prost::Message;
use samvad_proto::frame::{FrameDecoder, FrameError};
use samvad_proto::v1::ClientFrame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Transport;
use crate::session::FrameFault;

/// Read buffer growth step. The buffer starts empty: idle sessions hold no
/// read buffer at all.
const READ_CHUNK: usize = 2048;

pub struct StreamTransport<R, W> {
    recv: R,
    send: W,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// The stream lost sync (bad length prefix): nothing more can be read.
    broken: bool,
}

impl<R, W> StreamTransport<R, W> {
    pub fn new(recv: R, send: W, max_frame: usize) -> Self {
        StreamTransport {
            recv,
            send,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max_frame),
            broken: false,
        }
    }
}

impl<R, W> Transport for StreamTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
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

    async fn send(&mut self, frame: Bytes) -> std::io::Result<()> {
        let mut prefix = BytesMut::with_capacity(10);
        prost::encoding::encode_varint(frame.len() as u64, &mut prefix);
        self.send.write_all(&prefix).await?;
        self.send.write_all(&frame).await
    }

    async fn close(&mut self) {
        let _ = self.send.shutdown().await;
    }
}
