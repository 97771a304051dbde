//! Group calls through the real binary: native str0m participants
//! (`samvad_client::media`) join a group's room over their chat sessions,
//! publish synthetic Opus and VP8, and receive each other through the SFU;
//! mute three ways; outsiders are refused.

use std::time::Duration;

use crate::common::*;
use samvad_client::media::{Participant, Publish};
use samvad_client::rest;
use samvad_client::TransportKind;
use samvad_core::signal::{layer, mute, Leave, MediaEvent, Mute, MuteScope, SignalKind};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Runs every participant at once until `done` holds for each.
async fn run_all_until(ps: &mut [Participant], done: impl Fn(&Participant) -> bool) {
    let end = std::time::Instant::now() + T;
    while !ps.iter().all(&done) {
        assert!(
            std::time::Instant::now() < end,
            "not done in time: {:?}",
            ps.iter()
                .map(|p| (
                    &p.user,
                    &p.received.frames,
                    p.received
                        .events
                        .iter()
                        .filter(|e| e["type"] == "layer")
                        .collect::<Vec<_>>()
                ))
                .collect::<Vec<_>>()
        );
        let rounds = ps.iter_mut().map(|p| p.run_for(Duration::from_millis(100)));
        for r in futures_util::future::join_all(rounds).await {
            r.unwrap();
        }
    }
}

async fn run_all_for(ps: &mut [Participant], d: Duration) {
    let rounds = ps.iter_mut().map(|p| p.run_for(d));
    for r in futures_util::future::join_all(rounds).await {
        r.unwrap();
    }
}

fn hears(p: &Participant, from: &str, at_least: u64) -> bool {
    p.received.count(from, "audio") >= at_least && p.received.count(from, "video") >= at_least
}

fn counts(ps: &[Participant], to: usize, from: &str) -> (u64, u64) {
    let r = &ps[to].received;
    (r.count(from, "audio"), r.count(from, "video"))
}

/// Ann, Bob and Cat in a call of their group (Ann created it), joined as
/// `how` says (transport, what each publishes), and Eve, who is not in it.
async fn call_of_three(
    server: &TestServer,
    how: [(TransportKind, Publish); 3],
) -> (String, Vec<Participant>, rest::Tokens) {
    let http = server.addr.http.clone();
    let ann = server.user("ann").await;
    let bob = server.user("bob").await;
    let cat = server.user("cat").await;
    let eve = server.user("eve").await;
    let group = rest::create_group(
        &http,
        &ann.access_token,
        "call",
        &["bob".into(), "cat".into()],
    )
    .await
    .unwrap();
    let mut ps = Vec::new();
    for ((name, tokens), (kind, publish)) in [("ann", &ann), ("bob", &bob), ("cat", &cat)]
        .into_iter()
        .zip(how)
    {
        let session = server.connect(kind, tokens).await;
        ps.push(
            Participant::join_as(session, name, &group.id, publish)
                .await
                .unwrap(),
        );
    }
    (group.id, ps, eve)
}

/// Ann publishes two simulcast layers to Bob and Cat, who publish nothing.
async fn simulcast_call(server: &TestServer) -> Vec<Participant> {
    let how = [
        (TransportKind::Quic, Publish::Simulcast),
        (TransportKind::Quic, Publish::Nothing),
        (TransportKind::Quic, Publish::Nothing),
    ];
    call_of_three(server, how).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_hear_each_other_mute_and_outsiders_are_refused() {
    let server = TestServer::start();
    let (room, mut ps, eve) = call_of_three(
        &server,
        [
            (TransportKind::Ws, Publish::AudioVideo),
            (TransportKind::Quic, Publish::AudioVideo),
            (TransportKind::Wt, Publish::AudioVideo),
        ],
    )
    .await;
    // Each receives audio and video from the two others.
    run_all_until(&mut ps, |p| {
        ["ann", "bob", "cat"]
            .iter()
            .filter(|u| **u != p.user)
            .all(|u| hears(p, u, 10))
    })
    .await;
    for p in &ps {
        assert_eq!(
            p.received.count(&p.user, "video"),
            0,
            "nobody gets their own media back"
        );
    }
    let events: Vec<&Value> = ps[0].received.events.iter().collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "joined" && e["user"] == "bob"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["type"] == "published" && e["user"] == "cat"));

    // Bob mutes Cat for himself: Bob stops getting her, Ann does not.
    ps[1]
        .signal(mute(MuteScope::ForMe, "cat", true))
        .await
        .unwrap();
    run_all_for(&mut ps, Duration::from_millis(500)).await;
    let (bob_from_cat, ann_from_cat) = (counts(&ps, 1, "cat"), counts(&ps, 0, "cat"));
    run_all_for(&mut ps, Duration::from_secs(1)).await;
    assert_eq!(counts(&ps, 1, "cat"), bob_from_cat, "muted for Bob");
    assert!(
        counts(&ps, 0, "cat").1 > ann_from_cat.1 + 10,
        "still heard by Ann"
    );
    ps[1]
        .signal(mute(MuteScope::ForMe, "cat", false))
        .await
        .unwrap();
    let before = counts(&ps, 1, "cat").1;
    run_all_until(&mut ps, |p| {
        p.user != "bob" || p.received.count("cat", "video") > before + 10
    })
    .await;

    // Cat has no mute right: she cannot mute Bob for everyone.
    ps[2]
        .signal(mute(MuteScope::Everyone, "bob", true))
        .await
        .unwrap();
    run_all_until(&mut ps, |p| {
        p.user != "cat" || !p.received.errors.is_empty()
    })
    .await;
    assert_eq!(ps[2].received.errors[0]["code"], "forbidden");
    // Ann (the creator) can: Bob is told, and nobody gets him.
    ps[0]
        .signal(mute(MuteScope::Everyone, "bob", true))
        .await
        .unwrap();
    run_all_until(&mut ps, |p| {
        p.received
            .events
            .iter()
            .any(|e| e["type"] == "muted" && e["user"] == "bob" && e["by"] == "ann")
    })
    .await;
    run_all_for(&mut ps, Duration::from_millis(500)).await;
    let (ann_from_bob, cat_from_bob) = (counts(&ps, 0, "bob"), counts(&ps, 2, "bob"));
    run_all_for(&mut ps, Duration::from_secs(1)).await;
    assert_eq!(
        (counts(&ps, 0, "bob"), counts(&ps, 2, "bob")),
        (ann_from_bob, cat_from_bob)
    );

    // Mute yourself: Cat stops reaching everyone.
    ps[2]
        .signal(mute(MuteScope::Myself, "", true))
        .await
        .unwrap();
    run_all_for(&mut ps, Duration::from_millis(500)).await;
    let ann_from_cat = counts(&ps, 0, "cat");
    run_all_for(&mut ps, Duration::from_secs(1)).await;
    assert_eq!(counts(&ps, 0, "cat"), ann_from_cat);
    // Unmuted, she is heard again (with a keyframe first).
    ps[2]
        .signal(mute(MuteScope::Myself, "", false))
        .await
        .unwrap();
    let before = counts(&ps, 0, "cat").1;
    run_all_until(&mut ps, |p| {
        p.user != "ann" || p.received.count("cat", "video") > before + 10
    })
    .await;

    // Eve is not a member: her join is refused at the edge.
    let session = server.connect(TransportKind::Ws, &eve).await;
    let refused = Participant::join(session, "eve", &room, true).await;
    let message = refused.err().expect("an outsider cannot join").to_string();
    assert!(message.contains("not_member"), "{message}");

    // Leaving is told to the others.
    ps[1].signal(SignalKind::Leave(Leave {})).await.unwrap();
    run_all_until(&mut ps, |p| {
        p.user == "bob"
            || p.received
                .events
                .iter()
                .any(|e| e["type"] == "left" && e["user"] == "bob")
    })
    .await;
}

/// A publisher sends two simulcast layers; each subscriber gets one, the
/// high one unless it chose otherwise, and can switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_simulcast_layer_it_chose() {
    let server = TestServer::start();
    let mut ps = simulcast_call(&server).await;
    run_all_until(&mut ps, |p| {
        p.user == "ann" || p.received.count("ann", "video") >= 10
    })
    .await;
    // The low layer's frames are all smaller than 500 bytes, the high
    // layer's all larger.
    let size = |ps: &[Participant], i: usize| ps[i].received.last_video_size["ann"];
    assert!(
        size(&ps, 1) > 500 && size(&ps, 2) > 500,
        "both get the high layer first"
    );

    ps[1].signal(layer("ann", "l")).await.unwrap();
    let before = ps[1].received.count("ann", "video");
    run_all_until(&mut ps, |p| {
        p.user != "bob" || p.received.count("ann", "video") > before + 10
    })
    .await;
    for _ in 0..10 {
        run_all_for(&mut ps, Duration::from_millis(100)).await;
        assert!(size(&ps, 1) < 500, "Bob switched to the low layer");
        assert!(size(&ps, 2) > 500, "Cat still gets the high one");
    }
    // A layer that is not sent is refused.
    ps[2].signal(layer("ann", "x")).await.unwrap();
    run_all_until(&mut ps, |p| {
        p.user != "cat" || !p.received.errors.is_empty()
    })
    .await;
    assert_eq!(ps[2].received.errors[0]["code"], "bad_request");

    // `auto` leaves Bob's layer to his bandwidth again, which on loopback
    // fits the high one.
    ps[1].signal(layer("ann", "auto")).await.unwrap();
    run_all_until(&mut ps, |p| p.user != "bob" || size_of(p, "ann") > 500).await;
}

fn size_of(p: &Participant, from: &str) -> usize {
    p.received.last_video_size.get(from).copied().unwrap_or(0)
}

/// Whether `p` was told that its bandwidth now fits layer `rid` of
/// `user`, after its first `skip` events.
fn moved_to(p: &Participant, user: &str, rid: &str, skip: usize) -> bool {
    p.received.events[skip.min(p.received.events.len())..]
        .iter()
        .any(|e| e["type"] == "layer" && e["user"] == user && e["rid"] == rid)
}

/// Layers by bandwidth: a subscriber behind a narrow downlink is moved to
/// the low layer by the server's estimate of its bandwidth, while one with
/// room keeps the high layer; once the link widens, it is raised again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_a_narrow_downlink_gets_the_layer_that_fits() {
    let server = TestServer::start();
    let mut ps = simulcast_call(&server).await;
    // The high layer and audio take about 190 kbit/s on the wire, the
    // low one and audio about 70.
    ps[2].limit_downlink(Some(120_000));
    run_all_until(&mut ps, |p| {
        p.user != "cat" || (moved_to(p, "ann", "l", 0) && size_of(p, "ann") < 500)
    })
    .await;
    // Frames of the high layer may still be on their way (queued,
    // retransmitted), and the estimate may probe upwards and fall back:
    // Cat must settle on the low layer, judged over 2 s windows with no
    // layer change (within 30 s).
    run_all_for(&mut ps, Duration::from_secs(1)).await;
    let bob = ps[1].received.video("ann");
    let settled_by = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (cat, moves) = (ps[2].received.video("ann"), layer_moves(&ps[2]));
        run_all_for(&mut ps, Duration::from_secs(2)).await;
        let average = average_frame(cat, ps[2].received.video("ann"));
        if layer_moves(&ps[2]) == moves && average < 300 {
            break;
        }
        assert!(
            std::time::Instant::now() < settled_by,
            "Cat gets the low layer (last 2 s: {average} bytes a frame): {:?}",
            ps[2]
                .received
                .events
                .iter()
                .filter(|e| e["type"] == "layer")
                .collect::<Vec<_>>()
        );
    }
    assert!(
        average_frame(bob, ps[1].received.video("ann")) > 500,
        "Bob, with room, keeps the high one"
    );
    assert!(
        !ps[1].received.events.iter().any(|e| e["type"] == "layer"),
        "Bob was never moved"
    );

    let seen = ps[2].received.events.len();
    ps[2].limit_downlink(None);
    run_all_until(&mut ps, |p| {
        p.user != "cat" || moved_to(p, "ann", "h", seen)
    })
    .await;
    run_all_for(&mut ps, Duration::from_millis(500)).await;
    let cat = ps[2].received.video("ann");
    run_all_for(&mut ps, Duration::from_secs(1)).await;
    assert!(
        average_frame(cat, ps[2].received.video("ann")) > 500,
        "Cat is back on the high layer"
    );
}

/// How many times `p` was told its layer changed.
fn layer_moves(p: &Participant) -> usize {
    p.received
        .events
        .iter()
        .filter(|e| e["type"] == "layer")
        .count()
}

/// The average size of the video frames received between two readings of
/// [`samvad_client::media::Received::video`].
fn average_frame(before: (u64, u64), after: (u64, u64)) -> u64 {
    let frames = after.0 - before.0;
    assert!(frames > 10, "video kept coming: {frames} frames");
    (after.1 - before.1) / frames
}

/// The `error` signal's code the server answers `kind` with.
async fn signal_error(c: &mut samvad_client::Client, room: &str, kind: SignalKind) -> String {
    use samvad_proto::v1::{client_frame, server_frame, Signal};
    c.send(client_frame::Kind::Signal(Signal {
        room: room.into(),
        from: String::new(),
        kind: Some(kind),
    }))
    .await
    .unwrap();
    loop {
        let Some(server_frame::Kind::Signal(s)) = next_of(c, "signal").await.kind else {
            unreachable!()
        };
        if let Some(SignalKind::Error(e)) = s.kind {
            return e.code;
        }
    }
}

/// Bad signals get a clear error: malformed frames at the edge, wrong
/// signals for the room's state at the SFU; the call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_are_refused_with_clear_errors() {
    use samvad_proto::v1::{client_frame, Signal};
    let server = TestServer::start_with(&["--max-frame", "200000"]);
    let ann = server.user("ann").await;
    let group = rest::create_group(&server.addr.http, &ann.access_token, "call", &[])
        .await
        .unwrap();
    let mut c = server.connect(TransportKind::Ws, &ann).await;
    // Refused at the edge: no kind (or one this server does not know),
    // rooms that are not group ids, SDP over 64 KiB, kinds only the server
    // sends.
    for (room, kind) in [
        (group.id.as_str(), None),
        ("../etc", Some(SignalKind::Join("v=0".into()))),
        (
            group.id.as_str(),
            Some(SignalKind::Join("x".repeat(64 * 1024 + 1))),
        ),
        (
            group.id.as_str(),
            Some(SignalKind::Event(MediaEvent::default())),
        ),
    ] {
        let what = format!(
            "{room} {:?}",
            kind.as_ref().map(samvad_core::signal::kind_name)
        );
        c.send(client_frame::Kind::Signal(Signal {
            room: room.into(),
            from: String::new(),
            kind,
        }))
        .await
        .unwrap();
        let refusal = next_of(&mut c, "error").await;
        assert_eq!(error_code(&refusal), "invalid_envelope", "{what}");
    }
    // Refused by the SFU: signals before joining, a join that is no SDP.
    assert_eq!(
        signal_error(&mut c, &group.id, SignalKind::Answer("v=0".into())).await,
        "not_joined"
    );
    assert_eq!(
        signal_error(&mut c, &group.id, SignalKind::Mute(Mute::default())).await,
        "not_joined"
    );
    assert_eq!(
        signal_error(&mut c, &group.id, SignalKind::Join("not sdp".into())).await,
        "bad_sdp"
    );

    // Joined: a second join, an answer to nothing, a malformed mute or
    // layer, a mute or an `auto` layer of someone not in the room.
    let mut p = Participant::join(c, "ann", &group.id, true).await.unwrap();
    let no_scope = SignalKind::Mute(Mute {
        scope: 7,
        user: "ann".into(),
        muted: true,
    });
    let cases = [
        (SignalKind::Join("v=0".into()), "already_joined"),
        (SignalKind::Answer("not sdp".into()), "bad_sdp"),
        (no_scope, "bad_request"),
        // Ann publishes no layer "x".
        (layer("ann", "x"), "bad_request"),
        (
            mute(MuteScope::ForMe, "nobody", true),
            "no_such_participant",
        ),
        // Handing a layer back to bandwidth names a publisher too.
        (layer("nobody", "auto"), "no_such_participant"),
    ];
    for (i, (kind, code)) in cases.into_iter().enumerate() {
        let name = samvad_core::signal::kind_name(&kind);
        p.signal(kind).await.unwrap();
        p.run_until(T, |r| r.errors.len() > i).await.unwrap();
        assert_eq!(p.received.errors[i]["code"], code, "{name}");
    }
}
