//! The properties of the two SDP fuzz targets. `sdp`
//! (`fuzz/fuzz_targets/sdp.rs`): whatever a client sends as the SDP of a
//! join, an answer or an offer, the SFU answers it or refuses it with an
//! `error` signal, and never panics. `sdp_text`
//! (`fuzz/fuzz_targets/sdp_text.rs`): the SDP decoder alone, at the speed
//! a decoder target needs (the SFU target builds a peer connection per
//! input and runs at a few hundred inputs a second). The suite replays
//! both committed corpora on stable (`media/tests/fuzz_corpus.rs`).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use samvad_core::signal::SignalKind;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::crypto::dtls::DtlsCert;

use crate::{generate_dtls_cert, Out, SessionAddr, Sfu, SignalIn};

/// The first byte picks what the rest is sent as: a join's offer (even),
/// or, after a join with the SDP of `SEED_OFFER`, an answer or an offer.
pub fn sdp(data: &[u8]) {
    let Some((&choice, sdp)) = data.split_first() else {
        return;
    };
    let sdp = String::from_utf8_lossy(sdp).into_owned();
    let addr: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
    // One certificate for every input: making a key pair per input was
    // nearly all of the target's time (25 inputs a second).
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    let cert = CERT.get_or_init(generate_dtls_cert).clone();
    let mut sfu = Sfu::with_dtls_cert(addr, StdRng::seed_from_u64(1), cert);
    let session = SessionAddr {
        edge: "edge".into(),
        session: "s".into(),
    };
    let now = Instant::now();
    let send = |sfu: &mut Sfu, kind: SignalKind| {
        sfu.handle_signal(
            now,
            SignalIn {
                session: session.clone(),
                user: "ann",
                room: "g1",
                kind,
                may_mute: false,
            },
        );
        std::iter::from_fn(|| sfu.poll_out())
            .filter_map(|out| match out {
                Out::Signal { kind, .. } => Some(kind),
                Out::Transmit { .. } => None,
            })
            .collect::<Vec<_>>()
    };
    match choice % 3 {
        0 => {
            let replies = send(&mut sfu, SignalKind::Join(sdp));
            let answered = replies.iter().any(|k| matches!(k, SignalKind::Answer(_)));
            let refused = replies.iter().any(|k| matches!(k, SignalKind::Error(_)));
            assert!(
                answered != refused,
                "a join is answered or refused: {replies:?}"
            );
            assert_eq!(sfu.participants(), usize::from(answered));
        }
        n => {
            let joined = send(&mut sfu, SignalKind::Join(SEED_OFFER.into()));
            assert!(joined.iter().any(|k| matches!(k, SignalKind::Answer(_))));
            let kind = if n == 1 {
                SignalKind::Answer(sdp)
            } else {
                SignalKind::Offer(sdp)
            };
            let replies = send(&mut sfu, kind);
            // An answer to nothing is refused; an offer is answered or refused.
            assert!(
                replies
                    .iter()
                    .any(|k| matches!(k, SignalKind::Answer(_) | SignalKind::Error(_))),
                "{replies:?}"
            );
            assert_eq!(sfu.participants(), 1);
        }
    }
}

/// The SDP decoder the SFU uses for every offer and answer a client
/// sends (str0m's `SdpOffer` and `SdpAnswer` both read with one
/// `Sdp::parse`): any text is read or refused, never a panic; and what it
/// reads, written out again, reads back. (Not always as the same text:
/// str0m reads `a=fmtp:… x=1;` as a parameter with an empty name and
/// prints it back with one more `;`, which the first fuzz minute found;
/// harmless to the SFU, which matches codecs by named parameters.)
pub fn sdp_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(offer) = SdpOffer::from_sdp_string(text) {
        let printed = offer.to_sdp_string();
        if let Err(e) = SdpAnswer::from_sdp_string(&printed) {
            panic!("a printed description reads back: {e}\n{printed}");
        }
    }
}

/// A browser-like offer (audio and video, send only): what the corpus
/// seeds start from.
pub const SEED_OFFER: &str = include_str!("seed_offer.sdp");
