//! Framing of protobuf frames on byte streams (QUIC and WebTransport).
//!
//! A frame is its length as a protobuf varint (LEB128, the same prefix that
//! protobuf's own `writeDelimited` uses, so every protobuf library can read
//! and write it) followed by that many bytes of one encoded message.
//!
//! [`FrameDecoder`] is a sans-IO state machine: the connection loop appends
//! whatever bytes arrived and pops whole frames. A frame over the size limit
//! is reported once and then skipped byte for byte, so the stream stays in
//! sync and the session's later frames still work.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

/// Why a stream could not yield the next frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The announced length exceeds the limit; the frame's bytes are skipped.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    /// The length prefix is not a valid varint; the stream cannot be re-synced.
    #[error("invalid frame length prefix")]
    BadLength,
}

impl FrameError {
    /// Whether the stream can go on after this error.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::TooLarge { .. })
    }
}

/// Pops length-prefixed frames out of a growing buffer.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    /// Bytes of an oversized frame still to be thrown away.
    skip: u64,
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame, skip: 0 }
    }

    /// Returns the next whole frame, `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if self.skip > 0 {
            let n = self.skip.min(buf.len() as u64);
            buf.advance(n as usize);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let Some((len, prefix)) = peek_varint(buf)? else {
            return Ok(None);
        };
        if len > self.max_frame as u64 {
            buf.advance(prefix);
            self.skip = len;
            // Throw away what is already here; the rest on later calls.
            let n = self.skip.min(buf.len() as u64);
            buf.advance(n as usize);
            self.skip -= n;
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = prefix + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(prefix);
        Ok(Some(buf.split_to(len as usize).freeze()))
    }
}

/// Reads a varint at the start of `buf` without consuming it.
fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 10 {
        Err(FrameError::BadLength)
    } else {
        Ok(None)
    }
}

/// Encodes a message with its length prefix, ready to write to a stream.
pub fn encode_delimited(msg: &impl Message) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.encoded_len() + 5);
    msg.encode_length_delimited(&mut out)
        .expect("BytesMut grows as needed");
    out.freeze()
}

/// Prefixes already-encoded frame bytes with their length.
pub fn delimit(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.len() + 5);
    prost::encoding::encode_varint(frame.len() as u64, &mut out);
    out.extend_from_slice(frame);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{client_frame::Kind, ClientFrame, Ping};

    fn ping(n: u64) -> ClientFrame {
        ClientFrame::of(Kind::Ping(Ping { nonce: n }))
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let mut wire = Vec::new();
        for n in 0..50 {
            wire.extend_from_slice(&encode_delimited(&ping(n * 1_000_003)));
        }
        for chunk in [1, 2, 3, 7, 64] {
            let mut dec = FrameDecoder::new(1024);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = dec.decode(&mut buf).unwrap() {
                    got.push(ClientFrame::decode(frame).unwrap());
                }
            }
            assert_eq!(
                got,
                (0..50).map(|n| ping(n * 1_000_003)).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn oversized_frame_is_reported_then_skipped() {
        let big = vec![7u8; 5000];
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&delimit(&big));
        wire.extend_from_slice(&encode_delimited(&ping(9)));
        let mut dec = FrameDecoder::new(1024);
        // Feed in small pieces: the skip must span several calls.
        let mut buf = BytesMut::new();
        let mut errors = 0;
        let mut frames = Vec::new();
        for piece in wire.chunks(100) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(ClientFrame::decode(f).unwrap()),
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(
                            e,
                            FrameError::TooLarge {
                                len: 5000,
                                max: 1024
                            }
                        );
                        assert!(e.is_recoverable());
                        errors += 1;
                    }
                }
            }
        }
        assert_eq!(errors, 1);
        assert_eq!(frames, vec![ping(9)]);
    }

    #[test]
    fn endless_varint_is_fatal() {
        let mut buf = BytesMut::from(&[0xffu8; 12][..]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::BadLength);
        assert!(!err.is_recoverable());
    }

    #[test]
    fn partial_prefix_waits() {
        let mut buf = BytesMut::from(&[0x80u8, 0x80][..]);
        assert_eq!(FrameDecoder::new(1 << 20).decode(&mut buf), Ok(None));
    }
}
