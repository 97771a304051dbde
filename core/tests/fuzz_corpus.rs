//! Replays every committed fuzz input of the core's targets
//! (`fuzz/corpus/<target>/`: the corpora libFuzzer grew, and any crash
//! turned regression) through the properties the targets check, on stable
//! Rust, in the suite.

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) {
    samvad_proto::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), target, property);
}

#[test]
fn the_session_corpus_holds() {
    replay("session", samvad_core::fuzzing::session);
}

#[test]
fn the_signed_url_corpus_holds() {
    replay("signed_url", samvad_core::fuzzing::signed_url);
}

#[test]
fn the_signal_corpus_holds() {
    replay("signal", samvad_core::fuzzing::signal);
}

/// The seeds are in the committed corpora (`SAMVAD_UPDATE_VECTORS=1`
/// writes them), and the session seeds get past hello, so the fuzzer
/// starts where the rules are.
#[test]
fn the_seeds_are_committed_and_reach_the_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let update = std::env::var_os("SAMVAD_UPDATE_VECTORS").is_some();
    for (target, name, bytes) in samvad_core::fuzzing::seeds() {
        let path = root.join(target).join(format!("seed-{name}"));
        if update {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).ok().as_deref(),
            Some(bytes.as_slice()),
            "{} is stale: SAMVAD_UPDATE_VECTORS=1 cargo test -p samvad-core",
            path.display()
        );
        if target == "session" && name != "refused" {
            assert!(
                samvad_core::fuzzing::session_user(&bytes).is_some(),
                "{name} never gets past hello"
            );
        }
    }
}
