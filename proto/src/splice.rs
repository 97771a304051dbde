//! Encode once: server frames built around an envelope's bytes.
//!
//! An envelope is encoded once, when the edge accepts it. Every inbox entry
//! of it is the same bytes wrapped as `ServerFrame{deliver{envelope}}` with
//! the entry's `seq` appended: protobuf takes the last value of a scalar
//! field, so appending `seq` after the envelope's own fields is a valid
//! encoding of the envelope with that `seq`, and no hop decodes and
//! re-encodes the message to stamp it.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

/// `ServerFrame.deliver` (3), `Deliver.envelope` (1), `Envelope.seq` (6).
const SERVER_FRAME_DELIVER: u32 = 3;
const DELIVER_ENVELOPE: u32 = 1;
const ENVELOPE_SEQ: u32 = 6;

/// The encoded `ServerFrame{deliver{envelope}}` of an encoded envelope,
/// with `seq` set (0 leaves the envelope's own).
pub fn deliver_frame(envelope: &[u8], seq: u64) -> Bytes {
    let seq_len = if seq == 0 {
        0
    } else {
        1 + encoded_len_varint(seq)
    };
    let envelope_len = envelope.len() + seq_len;
    let deliver_len = 1 + encoded_len_varint(envelope_len as u64) + envelope_len;
    let mut out = BytesMut::with_capacity(1 + encoded_len_varint(deliver_len as u64) + deliver_len);
    encode_key(SERVER_FRAME_DELIVER, WireType::LengthDelimited, &mut out);
    encode_varint(deliver_len as u64, &mut out);
    encode_key(DELIVER_ENVELOPE, WireType::LengthDelimited, &mut out);
    encode_varint(envelope_len as u64, &mut out);
    out.put_slice(envelope);
    if seq != 0 {
        encode_key(ENVELOPE_SEQ, WireType::Varint, &mut out);
        encode_varint(seq, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{server_frame, Body, Deliver, Envelope, Head, ServerFrame};
    use prost::Message;

    #[test]
    fn a_spliced_frame_decodes_as_the_envelope_with_its_seq() {
        let env = Envelope {
            id: "m1".into(),
            head: Some(Head {
                from: "alice".into(),
                to: "bob".into(),
                ..Default::default()
            }),
            body: Some(Body {
                text: "x".repeat(300),
                ts: 7,
            }),
            server_ts: 1_700_000_000_000,
            ..Default::default()
        };
        let bytes = env.encode_to_vec();
        for seq in [0, 1, 127, 128, u64::MAX] {
            let frame = ServerFrame::decode(deliver_frame(&bytes, seq)).unwrap();
            let expected = ServerFrame::of(server_frame::Kind::Deliver(Deliver {
                envelope: Some(Envelope { seq, ..env.clone() }),
            }));
            assert_eq!(frame, expected, "seq {seq}");
        }
        // A seq already in the bytes is replaced, not added to.
        let stamped = Envelope {
            seq: 5,
            ..env.clone()
        }
        .encode_to_vec();
        let frame = ServerFrame::decode(deliver_frame(&stamped, 9)).unwrap();
        let Some(server_frame::Kind::Deliver(d)) = frame.kind else {
            panic!("a deliver frame")
        };
        assert_eq!(d.envelope.unwrap().seq, 9);
    }
}
