//! Replays the committed corpora of the `sdp` and `sdp_text` fuzz
//! targets (`fuzz/corpus/sdp/`, `fuzz/corpus/sdp_text/`) through their
//! properties on stable, and checks that the seeds are committed: a real
//! offer of the native client (`src/seed_offer.sdp`, written by
//! `SAMVAD_UPDATE_VECTORS=1` when it is empty) sent as a join, an answer
//! and an offer, and as text to the decoder.

use std::path::Path;
use std::time::Instant;

use samvad_client::media::{PeerState, Publish};
use samvad_media::fuzzing::{sdp, sdp_text, SEED_OFFER};

#[test]
fn the_sdp_corpus_holds() {
    samvad_proto::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "sdp", sdp);
}

#[test]
fn the_sdp_text_corpus_holds() {
    samvad_proto::fuzzing::replay_corpus(env!("CARGO_MANIFEST_DIR"), "sdp_text", sdp_text);
}

#[test]
fn the_seeds_are_committed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("SAMVAD_UPDATE_VECTORS").is_some();
    // The offer is written once (it is random): the seeds follow it.
    if update && SEED_OFFER.is_empty() {
        let mut peer = PeerState::new(Instant::now(), "127.0.0.1:5000".parse().unwrap()).unwrap();
        let offer = peer.offer(Publish::AudioVideo).unwrap();
        std::fs::write(root.join("src/seed_offer.sdp"), offer).unwrap();
    }
    assert!(SEED_OFFER.starts_with("v=0"), "the seed is an SDP offer");
    for (choice, name) in [(0u8, "join"), (1, "answer"), (2, "offer")] {
        let seed = [&[choice][..], SEED_OFFER.as_bytes()].concat();
        committed(
            &root.join("../fuzz/corpus/sdp").join(format!("seed-{name}")),
            &seed,
            update,
        );
        sdp(&seed);
    }
    let seed = SEED_OFFER.as_bytes();
    committed(
        &root.join("../fuzz/corpus/sdp_text/seed-offer"),
        seed,
        update,
    );
    sdp_text(seed);
}

/// Asserts that `path` holds `seed` (writes it first when updating).
fn committed(path: &Path, seed: &[u8], update: bool) {
    if update {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, seed).unwrap();
    }
    assert_eq!(
        std::fs::read(path).ok().as_deref(),
        Some(seed),
        "{} is stale: SAMVAD_UPDATE_VECTORS=1 cargo test -p samvad-media --test fuzz_corpus",
        path.display()
    );
}
