//! The properties the fuzz targets check (`fuzz/`), kept here so the
//! suite can replay every committed corpus input on stable Rust
//! (`proto/tests/fuzz_corpus.rs`) and the fuzzers and the replay cannot
//! drift. Each takes arbitrary bytes and panics only on a broken property.

use bytes::BytesMut;
use prost::Message;

use crate::frame::FrameDecoder;
use crate::json_v2::{parse_client_text, server_text};
use crate::v1::{ClientFrame, ServerFrame};

/// Largest frame the stream property allows (small, so oversized frames
/// and their skipping are reached often).
const MAX_FRAME: usize = 512;

/// The stream decoder, fed the input in chunks of a size the first byte
/// chooses: it never yields a frame over the limit, never consumes more
/// than it was given, stops for good on a bad length prefix, and every
/// frame it yields decodes (or fails to) as a `ClientFrame` without panic.
pub fn frame_stream(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut yielded = 0usize;
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_FRAME, "a frame over the limit");
                    yielded += frame.len();
                    let _ = ClientFrame::decode(frame);
                }
                Ok(None) => break,
                Err(e) if e.is_recoverable() => continue,
                Err(_) => return,
            }
        }
    }
    assert!(yielded <= rest.len(), "yielded more than was fed");
}

/// Any bytes that decode as a `ClientFrame` re-encode to bytes that
/// decode to the same frame.
pub fn client_frame(data: &[u8]) {
    if let Ok(frame) = ClientFrame::decode(data) {
        let again =
            ClientFrame::decode(frame.encode_to_vec().as_slice()).expect("re-encoded bytes decode");
        assert_eq!(again, frame, "a round trip changed the frame");
    }
    if let Ok(frame) = ServerFrame::decode(data) {
        // Every server frame has a JSON text form.
        let _ = server_text(&frame);
    }
}

/// The JSON v2 text codec on any text: parses or refuses, never panics;
/// what it accepts encodes as protobuf and decodes back unchanged.
pub fn json_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = parse_client_text(text) {
        let again =
            ClientFrame::decode(frame.encode_to_vec().as_slice()).expect("re-encoded bytes decode");
        assert_eq!(again, frame);
    }
}

/// Runs every input committed for `target` under `fuzz/corpus/` (the
/// workspace's, from `manifest_dir`, a crate beside it) through
/// `property`, failing on the first that breaks it or on an empty corpus:
/// the replay the proto and core corpus tests share.
pub fn replay_corpus(manifest_dir: &str, target: &str, property: fn(&[u8])) {
    let dir = std::path::Path::new(manifest_dir)
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("a corpus input reads");
        let outcome = std::panic::catch_unwind(|| property(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks the property",
            path.display()
        );
        inputs += 1;
    }
    assert!(inputs > 0, "{target}: an empty corpus checks nothing");
}
