//! The SFU driven with str0m peers on a simulated network in virtual time
//! (see [`net`]): rooms, forwarding, negotiation, muting, simulcast, loss
//! and refusals, with no socket and no sleep.

mod net;

use std::time::Duration;

use net::Net;
use samvad_client::media::Publish;
use samvad_core::signal::{event, layer, media_event, mute, Leave, Mute, MuteScope, SignalKind};

const SECOND: Duration = Duration::from_secs(1);
const LAN: Duration = Duration::from_millis(5);

/// Runs until every member has `(publisher, kind)` frames flowing, or fails.
fn until_flowing(net: &mut Net, to: &[usize], from: &str, kind: &str) {
    let flowing = net.run_until(10 * SECOND, |net| {
        to.iter().all(|&i| net.received(i).count(from, kind) >= 10)
    });
    assert!(
        flowing,
        "{kind} of {from} did not reach {:?}: {:?}",
        to,
        to.iter()
            .map(|&i| &net.received(i).frames)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_publisher_reaches_every_other_participant_and_not_itself() {
    let mut net = Net::new(LAN);
    let ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::Nothing);
    let cat = net.join("cat", "g1", Publish::Nothing);
    until_flowing(&mut net, &[bob, cat], "ann", "video");
    until_flowing(&mut net, &[bob, cat], "ann", "audio");
    assert_eq!(net.received(ann).total(), 0, "ann gets nothing of her own");
    assert_eq!(net.sfu.participants(), 3);
    // Bob was told who was there, then who came, then what ann publishes.
    let events = net.event_types(bob);
    assert_eq!(events.first().map(String::as_str), Some("participants"));
    assert!(events.contains(&"joined".to_string()), "{events:?}");
    assert!(events.contains(&"track".to_string()), "{events:?}");
    assert!(net.error_codes(bob).is_empty());
}

#[test]
fn a_late_joiner_is_offered_what_is_already_published() {
    let mut net = Net::new(LAN);
    let _ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::AudioVideo);
    until_flowing(&mut net, &[bob], "ann", "video");
    let dan = net.join("dan", "g1", Publish::Nothing);
    until_flowing(&mut net, &[dan], "ann", "video");
    until_flowing(&mut net, &[dan], "bob", "video");
    let roster = &net.received(dan).events[0];
    assert_eq!(roster["type"], "participants");
    assert_eq!(roster["users"], serde_json::json!(["ann", "bob"]));
}

#[test]
fn rooms_are_apart() {
    let mut net = Net::new(LAN);
    let _ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::Nothing);
    let eve = net.join("eve", "g2", Publish::Nothing);
    until_flowing(&mut net, &[bob], "ann", "video");
    net.run_for(SECOND);
    assert_eq!(net.received(eve).total(), 0, "g2 gets nothing of g1");
    assert!(!net.event_types(eve).contains(&"joined".to_string()));
    let mut rooms = net.sfu.rooms();
    rooms.sort();
    assert_eq!(rooms, ["g1", "g2"]);
}

#[test]
fn leaving_tells_the_room_and_an_ended_session_leaves_every_room() {
    let mut net = Net::new(LAN);
    let ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::Nothing);
    let cat = net.join("cat", "g1", Publish::Nothing);
    until_flowing(&mut net, &[bob, cat], "ann", "video");

    net.signal(cat, SignalKind::Leave(Leave {}));
    assert_eq!(net.sfu.participants(), 2);
    let left = net.received(ann).events.last().cloned().expect("an event");
    assert_eq!(left, serde_json::json!({"type": "left", "user": "cat"}));

    net.end_session(ann);
    assert_eq!(net.sfu.participants(), 1);
    let left = net.received(bob).events.last().cloned().expect("an event");
    assert_eq!(left, serde_json::json!({"type": "left", "user": "ann"}));
    // Nothing of ann's comes after she is gone.
    net.run_for(SECOND / 2);
    let before = net.received(bob).count("ann", "video");
    net.run_for(2 * SECOND);
    assert_eq!(net.received(bob).count("ann", "video"), before);
}

#[test]
fn muting_someone_for_everyone_needs_the_right_and_stops_their_media() {
    let mut net = Net::new(LAN);
    let ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::Nothing);
    let cat = net.join("cat", "g1", Publish::Nothing);
    net.members[cat].may_mute = true;
    until_flowing(&mut net, &[bob, cat], "ann", "video");

    let mute_ann = mute(MuteScope::Everyone, "ann", true);
    net.signal(bob, mute_ann.clone());
    assert_eq!(net.error_codes(bob), ["forbidden"]);

    net.signal(cat, mute_ann);
    let told = serde_json::json!({"type": "muted", "user": "ann", "by": "cat", "muted": true});
    for i in [ann, bob, cat] {
        assert_eq!(net.received(i).events.last(), Some(&told), "member {i}");
    }
    net.run_for(SECOND / 2);
    let muted_at = net.received(bob).count("ann", "video");
    net.run_for(2 * SECOND);
    assert_eq!(net.received(bob).count("ann", "video"), muted_at);

    net.signal(cat, mute(MuteScope::Everyone, "ann", false));
    let flowing = net.run_until(5 * SECOND, |net| {
        net.received(bob).count("ann", "video") > muted_at + 10
    });
    assert!(flowing, "unmuted video comes again");
}

#[test]
fn muting_someone_for_oneself_leaves_the_others_hearing() {
    let mut net = Net::new(LAN);
    let _ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::Nothing);
    let cat = net.join("cat", "g1", Publish::Nothing);
    until_flowing(&mut net, &[bob, cat], "ann", "audio");

    net.signal(bob, mute(MuteScope::ForMe, "ann", true));
    net.run_for(SECOND / 2);
    let (bob_at, cat_at) = (
        net.received(bob).count("ann", "audio"),
        net.received(cat).count("ann", "audio"),
    );
    net.run_for(2 * SECOND);
    assert_eq!(net.received(bob).count("ann", "audio"), bob_at);
    assert!(net.received(cat).count("ann", "audio") > cat_at + 50);
}

#[test]
fn a_subscriber_gets_the_simulcast_layer_it_chooses() {
    let mut net = Net::new(LAN);
    let _ann = net.join("ann", "g1", Publish::Simulcast);
    let bob = net.join("bob", "g1", Publish::Nothing);
    until_flowing(&mut net, &[bob], "ann", "video");
    // The low layer's frames are all smaller than the high layer's deltas
    // (the peer's synthetic sizes: high 1200/600, low 400/100 bytes).
    net.signal(bob, layer("ann", "l"));
    assert!(
        net.error_codes(bob).is_empty(),
        "{:?}",
        net.received(bob).errors
    );
    let low = net.run_until(5 * SECOND, |net| {
        net.received(bob)
            .last_video_size
            .get("ann")
            .is_some_and(|&size| size < 500)
    });
    assert!(low, "bob gets the low layer");
    net.run_for(SECOND);
    assert!(net.received(bob).last_video_size["ann"] < 500);

    net.signal(bob, layer("ann", "h"));
    let high = net.run_until(5 * SECOND, |net| {
        net.received(bob)
            .last_video_size
            .get("ann")
            .is_some_and(|&size| size >= 600)
    });
    assert!(high, "bob gets the high layer again");

    net.signal(bob, layer("ann", "x"));
    assert_eq!(net.error_codes(bob), ["bad_request"]);
}

#[test]
fn media_goes_on_over_a_lossy_network() {
    // 5 % of every datagram dropped each way, 40 ms one way: the handshake
    // retries and NACK/RTX repairs what it can.
    let mut clean = Net::new(Duration::from_millis(40));
    let mut lossy = Net::lossy(Duration::from_millis(40), 0.05);
    let mut counts = Vec::new();
    for net in [&mut clean, &mut lossy] {
        let _ann = net.join("ann", "g1", Publish::AudioVideo);
        let bob = net.join("bob", "g1", Publish::Nothing);
        until_flowing(net, &[bob], "ann", "video");
        let start = net.received(bob).count("ann", "video");
        net.run_for(10 * SECOND);
        counts.push(net.received(bob).count("ann", "video") - start);
    }
    assert!(lossy.dropped > 100, "the network dropped {}", lossy.dropped);
    let (clean, lossy) = (counts[0], counts[1]);
    // Without repair 5 % of the frames would be gone; NACK/RTX brings back
    // most of them.
    assert!(
        lossy * 100 >= clean * 98,
        "{lossy} video frames over loss against {clean} without"
    );
}

/// A benchmark, not a check (`--run-ignored only media_under_loss
/// --no-capture`): one publisher and one subscriber for 20 s of virtual
/// time at each loss rate (each way, on both hops), 40 ms one way; what
/// the subscriber gets and how much NACK/RTX did for it. Written up in
/// bench/RESULTS.md.
#[test]
#[ignore]
fn media_under_loss() {
    println!("| loss each way | datagrams dropped / sent | video frames | audio frames | NACKs by the subscriber | NACKs to the publisher |");
    println!("|---|---|---|---|---|---|");
    let mut clean = None;
    for loss in [0.0, 0.01, 0.05, 0.10, 0.20] {
        let mut net = Net::lossy(Duration::from_millis(40), loss);
        let ann = net.join("ann", "g1", Publish::AudioVideo);
        let bob = net.join("bob", "g1", Publish::Nothing);
        until_flowing(&mut net, &[bob], "ann", "video");
        let (video, audio) = (
            net.received(bob).count("ann", "video"),
            net.received(bob).count("ann", "audio"),
        );
        let (nacks_sent, _) = net.received(bob).nacks();
        let (_, nacks_to_ann) = net.received(ann).nacks();
        let (dropped, sent) = (net.dropped, net.sent);
        net.run_for(20 * SECOND);
        let video = net.received(bob).count("ann", "video") - video;
        let audio = net.received(bob).count("ann", "audio") - audio;
        let (clean_video, clean_audio) = *clean.get_or_insert((video, audio));
        let percent = |n: u64, of: u64| 100.0 * n as f64 / of.max(1) as f64;
        println!(
            "| {:.0} % | {} / {} | {video} ({:.1} %) | {audio} ({:.1} %) | {} | {} |",
            loss * 100.0,
            net.dropped - dropped,
            net.sent - sent,
            percent(video, clean_video),
            percent(audio, clean_audio),
            net.received(bob).nacks().0 - nacks_sent,
            net.received(ann).nacks().1 - nacks_to_ann,
        );
    }
}

#[test]
fn signals_out_of_place_are_refused_with_a_code() {
    let mut net = Net::new(LAN);
    let ann = net.join("ann", "g1", Publish::AudioVideo);
    until_flowing_answer(&mut net, ann);

    // A second join from the same session.
    net.signal(ann, SignalKind::Join("v=0".into()));
    // An answer when no offer of ours waits.
    net.signal(ann, SignalKind::Answer("v=0\r\n".into()));
    // Muting a stranger, choosing a layer of nobody.
    net.signal(ann, mute(MuteScope::ForMe, "zed", true));
    net.signal(ann, layer("zed", "h"));
    // A kind only the server sends; a mute of no scope.
    net.signal(ann, event(media_event::Kind::Joined("ann".into())));
    net.signal(
        ann,
        SignalKind::Mute(Mute {
            scope: 7,
            user: "ann".into(),
            muted: true,
        }),
    );
    assert_eq!(
        net.error_codes(ann),
        [
            "already_joined",
            "bad_sdp",
            "no_such_participant",
            "no_such_participant",
            "bad_request",
            "bad_request"
        ]
    );

    // A session whose rooms were left when it ended.
    let bob = net.join("bob", "g1", Publish::Nothing);
    net.end_session(bob);
    net.signal(bob, SignalKind::Leave(Leave {}));
    assert_eq!(net.error_codes(bob), ["not_joined"]);
}

#[test]
fn a_join_that_does_not_parse_makes_no_participant() {
    let mut net = Net::new(LAN);
    let ann = net.join("ann", "g1", Publish::Nothing);
    net.end_session(ann);
    net.signal(ann, SignalKind::Join("this is not SDP".into()));
    assert_eq!(net.error_codes(ann), ["bad_sdp"]);
    assert_eq!(net.sfu.participants(), 0);
    assert!(net.sfu.rooms().is_empty());
}

#[test]
fn datagrams_from_nobody_are_dropped() {
    let mut net = Net::new(LAN);
    let _ann = net.join("ann", "g1", Publish::AudioVideo);
    let bob = net.join("bob", "g1", Publish::Nothing);
    let stranger = "10.9.9.9:9999".parse().unwrap();
    // A STUN binding request with a ufrag nobody has, RTP-looking bytes,
    // an empty datagram and garbage.
    let mut stun = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    stun.extend([0u8; 12]);
    stun.extend([0x00, 0x06, 0x00, 0x08]);
    stun.extend(b"nobody:x");
    for datagram in [
        stun,
        vec![0x80, 0x60, 0, 1, 0, 0, 0, 0],
        Vec::new(),
        vec![0xff; 1500],
    ] {
        net.inject(stranger, datagram);
    }
    until_flowing(&mut net, &[bob], "ann", "video");
    assert_eq!(net.sfu.participants(), 2);
}

/// Runs until `index`'s join is answered.
fn until_flowing_answer(net: &mut Net, index: usize) {
    let answered = net.run_until(5 * SECOND, |net| !net.members[index].peer.negotiating());
    assert!(answered, "the join was answered");
}

#[test]
fn ice_credentials_come_from_the_random_source_the_sfu_is_given() {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use samvad_media::{Out, SessionAddr, Sfu, SignalIn};

    let ufrag_of = |seed: u64| {
        let now = std::time::Instant::now();
        let mut sfu = Sfu::new(
            "10.0.0.1:3478".parse().unwrap(),
            StdRng::seed_from_u64(seed),
        );
        let mut peer =
            samvad_client::media::PeerState::new(now, "10.0.1.1:4000".parse().unwrap()).unwrap();
        let offer = peer.offer(Publish::Nothing).unwrap();
        sfu.handle_signal(
            now,
            SignalIn {
                session: SessionAddr {
                    edge: "e".into(),
                    session: "s".into(),
                },
                user: "ann",
                room: "g1",
                kind: SignalKind::Join(offer),
                may_mute: false,
            },
        );
        std::iter::from_fn(|| sfu.poll_out())
            .find_map(|out| match out {
                Out::Signal {
                    kind: SignalKind::Answer(sdp),
                    ..
                } => Some(sdp),
                _ => None,
            })
            .and_then(|sdp| {
                sdp.lines()
                    .find_map(|l| l.strip_prefix("a=ice-ufrag:").map(str::to_string))
            })
            .expect("an answer with a ufrag")
    };
    assert_eq!(ufrag_of(1), ufrag_of(1));
    assert_ne!(ufrag_of(1), ufrag_of(2));
}
