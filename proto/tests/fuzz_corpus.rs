//! Replays every committed fuzz input (`fuzz/corpus/<target>/`, the
//! corpora libFuzzer grew, and any crash turned regression) through the
//! same properties the fuzz targets check, on stable Rust, in the suite.

fn replay(target: &str, property: fn(&[u8])) {
    samvad_proto::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), target, property);
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
