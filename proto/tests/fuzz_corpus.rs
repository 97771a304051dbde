//! Replays every committed fuzz input (`fuzz/corpus/<target>/`, the
//! corpora libFuzzer grew, and any crash turned regression) through the
//! same properties the fuzz targets check, on stable Rust, in the suite.

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
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

#[test]
fn the_stream_decoder_corpus_holds() {
    replay("frame_stream", samvad_proto::fuzzing::frame_stream);
}

#[test]
fn the_client_frame_corpus_holds() {
    replay("client_frame", samvad_proto::fuzzing::client_frame);
}

#[test]
fn the_json_text_corpus_holds() {
    replay("json_text", samvad_proto::fuzzing::json_text);
}
