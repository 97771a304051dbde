//! The cluster through real processes: `samvad edge` ×2, `router`, `store`
//! ×2 over a real Apache Kafka broker and a real redis-server.

use crate::common::*;
use samvad_client::rest;
use samvad_client::TransportKind;
use samvad_proto::v1::{client_frame, server_frame, Ack};
use samvad_testkit::samvad::cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_edges_over_every_transport() {
    let cluster = Cluster::start(2, 1, 1);
    // Register on one edge, log in on the other: the directory is shared.
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let bob_again = rest::login(&cluster.edges[0].addr().http, "bob", "password-123")
        .await
        .unwrap();
    assert_eq!(bob_again.user, "bob");
    for (i, kind) in [TransportKind::Ws, TransportKind::Quic, TransportKind::Wt]
        .into_iter()
        .enumerate()
    {
        let mut a = cluster.edges[0].connect(kind, &alice).await;
        let mut b = cluster.edges[1].connect(kind, &bob).await;
        sync_all(&mut a, 0).await;
        let (_, _) = sync_all(&mut b, 0).await;
        let id = format!("x-{i}");
        send_chat(&mut a, &id, "alice", "bob", "across edges").await;
        let Some(server_frame::Kind::Accepted(acc)) = next_of(&mut a, "accepted").await.kind else {
            unreachable!()
        };
        assert_eq!(acc.id, id);
        let Some(server_frame::Kind::Deliver(d)) = next_of(&mut b, "deliver").await.kind else {
            unreachable!()
        };
        let env = d.envelope.unwrap();
        assert_eq!(env.id, id, "{kind:?}");
        assert_eq!(env.body.unwrap().text, "across edges");
        b.send(client_frame::Kind::Ack(Ack { seq: env.seq }))
            .await
            .unwrap();
        let Some(server_frame::Kind::Receipt(r)) = next_of(&mut a, "receipt").await.kind else {
            unreachable!()
        };
        assert_eq!(r.message_id, id);
        a.send(client_frame::Kind::Ack(Ack { seq: r.seq }))
            .await
            .unwrap();
        a.close().await;
        b.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_wait_and_sync_on_another_edge() {
    let cluster = Cluster::start(2, 1, 1);
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(0, "bob").await;
    let mut a = cluster.edges[0].connect(TransportKind::Quic, &alice).await;
    sync_all(&mut a, 0).await;
    for i in 0..5 {
        send_chat(&mut a, &format!("m{i}"), "alice", "bob", &format!("n{i}")).await;
        next_of(&mut a, "accepted").await;
    }
    // Bob comes online on the other edge and syncs from the start. An
    // accepted message is durable on `inbound` but may still be on its way
    // to the inbox: what the sync does not replay arrives live right after.
    let mut b = cluster.edges[1].connect(TransportKind::Ws, &bob).await;
    let messages = sync_expecting(&mut b, 0, 5).await;
    let ids: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
    let seqs: Vec<u64> = messages.iter().map(|m| m.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap-free: {seqs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_go_to_the_dead_letter_topic_and_traffic_goes_on() {
    use bytes::Bytes;
    use samvad_bus::{Bus, KafkaBus, KafkaConfig, Outgoing, Topics};

    let cluster = Cluster::start(1, 1, 1);
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(0, "bob").await;
    let bus = KafkaBus::connect(KafkaConfig::new(&cluster.kafka.brokers)).unwrap();
    let topics = Topics::new("samvad.");
    // Not protobuf (wire type 7), on both topics a role decodes.
    let poison = Bytes::from_static(&[0x0f, 0xff, 0xff]);
    bus.produce(vec![
        Outgoing::new(topics.inbound(), "alice:bob", poison.clone()),
        Outgoing::new(topics.deliver(), "bob", poison.clone()),
    ])
    .await
    .unwrap();
    // Traffic after them flows: the roles skipped them, did not crash.
    let mut a = cluster.edges[0].connect(TransportKind::Ws, &alice).await;
    let mut b = cluster.edges[0].connect(TransportKind::Quic, &bob).await;
    sync_all(&mut a, 0).await;
    sync_all(&mut b, 0).await;
    send_chat(&mut a, "after-poison", "alice", "bob", "still flowing").await;
    next_of(&mut a, "accepted").await;
    let Some(server_frame::Kind::Deliver(d)) = next_of(&mut b, "deliver").await.kind else {
        unreachable!()
    };
    assert_eq!(d.envelope.unwrap().id, "after-poison");
    // Both poison records are in the dead-letter topic, keyed by origin.
    let mut dead = bus
        .subscribe(&topics.dead_letter(), "inspector")
        .await
        .unwrap();
    let mut origins = Vec::new();
    while origins.len() < 2 {
        let records = tokio::time::timeout(T * 3, dead.poll(10))
            .await
            .expect("dead letters arrive")
            .unwrap();
        for r in records {
            assert_eq!(r.payload, poison);
            origins.push(String::from_utf8(r.key.to_vec()).unwrap());
        }
    }
    origins.sort();
    assert!(origins[0].starts_with("samvad.deliver/"), "{origins:?}");
    assert!(origins[1].starts_with("samvad.inbound/"), "{origins:?}");
}

/// Every recipient's inbox holds exactly `ids`, once each, gap-free from 1.
async fn assert_inboxes(cluster: &Cluster, recipients: &[rest::Tokens], per_user: usize) {
    for r in recipients {
        let mut c = cluster.edges[0].connect(TransportKind::Quic, r).await;
        let messages = sync_expecting(&mut c, 0, per_user).await;
        let ids: Vec<String> = messages.iter().map(|m| m.1.clone()).collect();
        let expected: Vec<String> = (0..per_user).map(|i| format!("{}-{i}", r.user)).collect();
        assert_eq!(ids, expected, "{}: once each, in order", r.user);
        let seqs: Vec<u64> = messages.iter().map(|m| m.0).collect();
        assert_eq!(
            seqs,
            (1..=per_user as u64).collect::<Vec<_>>(),
            "{}: gap-free",
            r.user
        );
        c.close().await;
    }
}

async fn send_round(
    a: &mut samvad_client::Client,
    recipients: &[rest::Tokens],
    range: std::ops::Range<usize>,
) {
    for i in range {
        for r in recipients {
            send_chat(a, &format!("{}-{i}", r.user), "alice", &r.user, "x").await;
            next_of(a, "accepted").await;
        }
    }
}

/// Partitions move between stores (a graceful hand-over when the second
/// store joins, a takeover when one is killed, a hand-back to a store that
/// lost its disk) and every inbox stays exact: nothing lost, nothing twice,
/// the same gap-free sequence numbers whoever serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_between_stores_without_loss_or_duplicates() {
    let mut cluster = Cluster::start(1, 1, 2);
    let alice = cluster.user(0, "alice").await;
    let mut recipients = Vec::new();
    for i in 0..8 {
        recipients.push(cluster.user(0, &format!("rcpt{i}")).await);
    }
    let mut a = cluster.edges[0].connect(TransportKind::Ws, &alice).await;
    sync_all(&mut a, 0).await;
    send_round(&mut a, &recipients, 0..3).await;
    // The stores have balanced by now (the second one joined at start).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    send_round(&mut a, &recipients, 3..6).await;
    assert_inboxes(&cluster, &recipients, 6).await;

    // kill -9 one store mid-stream: the other takes its partitions over.
    cluster.stores[0].kill9();
    send_round(&mut a, &recipients, 6..9).await;
    assert_inboxes(&cluster, &recipients, 9).await;

    // It comes back with an empty disk: partitions are handed back and it
    // rebuilds them from the log.
    std::fs::remove_dir_all(cluster.data_dir(0)).unwrap();
    cluster.stores[0].restart();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    send_round(&mut a, &recipients, 9..12).await;
    assert_inboxes(&cluster, &recipients, 12).await;
}

/// Bob, live on `first`, takes deliveries and acks them; when his edge
/// dies he reconnects to `second` and syncs after the last seq he has.
/// Returns (seq, id) of the `n` messages he ends up with.
async fn receive_across_edge_loss(
    first: samvad_client::ServerAddr,
    second: samvad_client::ServerAddr,
    bob: rest::Tokens,
    n: usize,
) -> Vec<(u64, String)> {
    use samvad_client::Client;
    let mut got: Vec<(u64, String)> = Vec::new();
    let mut edge = first;
    loop {
        let (mut c, _) = Client::connect(TransportKind::Wt, &edge, &bob.access_token)
            .await
            .unwrap();
        let after = got.last().map_or(0, |m| m.0);
        for m in sync_all(&mut c, after).await.0 {
            got.push((m.0, m.1));
        }
        while got.len() < n {
            match c.recv_timeout(T).await {
                Ok(f) => {
                    if let Some(server_frame::Kind::Deliver(d)) = f.kind {
                        let env = d.envelope.unwrap();
                        c.send(client_frame::Kind::Ack(Ack { seq: env.seq }))
                            .await
                            .ok();
                        got.push((env.seq, env.id));
                    }
                }
                // The edge died: move to the other one.
                Err(_) => break,
            }
        }
        if got.len() >= n {
            return got;
        }
        edge = second.clone();
    }
}

/// A steady stream from alice (edge 0) to bob, live on edge 1, while the
/// router is killed -9 and restarted, then bob's edge is killed -9 and he
/// moves to edge 0. Every acknowledged message reaches bob exactly once, in
/// order; the sender retries what was not acknowledged, with the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_router_or_an_edge_loses_and_duplicates_nothing() {
    use std::time::Duration;
    let mut cluster = Cluster::start(2, 1, 1);
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let n = 90;
    let receiver = tokio::spawn(receive_across_edge_loss(
        cluster.edges[1].addr().clone(),
        cluster.edges[0].addr().clone(),
        bob.clone(),
        n,
    ));
    let mut a = cluster.edges[0].connect(TransportKind::Quic, &alice).await;
    sync_all(&mut a, 0).await;
    for i in 0..n {
        if i == n / 3 {
            cluster.routers[0].kill9();
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.routers[0].restart();
        }
        if i == 2 * n / 3 {
            cluster.edges[1].kill9();
        }
        let id = format!("s{i:03}");
        // Until acknowledged: a send whose ack is lost is sent again.
        loop {
            send_chat(&mut a, &id, "alice", "bob", "steady").await;
            match tokio::time::timeout(T, async {
                loop {
                    match a.recv().await {
                        Ok(Some(f)) => {
                            if let Some(server_frame::Kind::Accepted(acc)) = f.kind {
                                if acc.id == id {
                                    return true;
                                }
                            }
                        }
                        _ => return false,
                    }
                }
            })
            .await
            {
                Ok(true) => break,
                _ => {
                    a = cluster.edges[0].connect(TransportKind::Quic, &alice).await;
                    sync_all(&mut a, 0).await;
                }
            }
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .expect("bob gets every message")
        .unwrap();
    let ids: Vec<String> = got.iter().map(|m| m.1.clone()).collect();
    let expected: Vec<String> = (0..n).map(|i| format!("s{i:03}")).collect();
    assert_eq!(ids, expected, "every message once, in order");
    let seqs: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>(), "gap-free");
    // And the inbox agrees, with nothing beyond: a full sync on edge 0.
    let mut b = cluster.edges[0].connect(TransportKind::Ws, &bob).await;
    let messages = sync_expecting(&mut b, 0, n).await;
    assert_eq!(messages.len(), n, "no duplicate in the inbox");
}

/// Refresh tokens live in Redis: rotation works across edges, and reusing
/// a rotated token (theft) revokes the whole login on every edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_is_caught_across_edges() {
    let cluster = Cluster::start(2, 1, 1);
    let first = cluster.user(0, "alice").await;
    let (edge0, edge1) = (&cluster.edges[0].addr().http, &cluster.edges[1].addr().http);
    let second = rest::refresh(edge1, &first.refresh_token).await.unwrap();
    assert_eq!(second.user, "alice");
    // The first token again, on the other edge: reuse.
    match rest::refresh(edge0, &first.refresh_token).await {
        Err(rest::RestError::Refused { status, code }) => {
            assert_eq!((status, code.as_str()), (401, "token_reused"))
        }
        other => panic!("reuse accepted: {other:?}"),
    }
    // The whole family is gone, the newest token included.
    match rest::refresh(edge1, &second.refresh_token).await {
        Err(rest::RestError::Refused { status, code }) => {
            assert_eq!((status, code.as_str()), (401, "token_revoked"))
        }
        other => panic!("revoked token accepted: {other:?}"),
    }
    // A forged token is refused too.
    match rest::refresh(edge0, "not.a.token").await {
        Err(rest::RestError::Refused { status, .. }) => assert_eq!(status, 401),
        other => panic!("forged token accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_fan_out_across_edges_and_outsiders_are_refused() {
    let cluster = Cluster::start(2, 1, 1);
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let carol = cluster.user(1, "carol").await;
    let eve = cluster.user(0, "eve").await;
    // Created on one edge, read on the other: groups live in Redis.
    let group = rest::create_group(
        &cluster.edges[0].addr().http,
        &alice.access_token,
        "crew",
        &["bob".into(), "carol".into()],
    )
    .await
    .unwrap();
    let seen = rest::group(&cluster.edges[1].addr().http, &bob.access_token, &group.id)
        .await
        .unwrap();
    assert_eq!(seen.members.len(), 3);
    assert!(matches!(
        rest::group(&cluster.edges[1].addr().http, &eve.access_token, &group.id).await,
        Err(rest::RestError::Refused { status: 404, .. })
    ));

    let mut a = cluster.edges[0].connect(TransportKind::Quic, &alice).await;
    let mut b = cluster.edges[1].connect(TransportKind::Ws, &bob).await;
    let mut c = cluster.edges[1].connect(TransportKind::Wt, &carol).await;
    let mut e = cluster.edges[0].connect(TransportKind::Ws, &eve).await;
    for s in [&mut a, &mut b, &mut c, &mut e] {
        sync_all(s, 0).await;
    }
    e.send(client_frame::Kind::Send(samvad_proto::v1::Send {
        envelope: Some(samvad_client::group_message(
            "intrude",
            "eve",
            &group.id,
            "let me in",
        )),
    }))
    .await
    .unwrap();
    assert_eq!(error_code(&next_of(&mut e, "error").await), "not_member");
    for i in 0..3 {
        a.send(client_frame::Kind::Send(samvad_proto::v1::Send {
            envelope: Some(samvad_client::group_message(
                &format!("g{i}"),
                "alice",
                &group.id,
                "hello crew",
            )),
        }))
        .await
        .unwrap();
        next_of(&mut a, "accepted").await;
    }
    for member in [&mut b, &mut c] {
        let mut ids = Vec::new();
        while ids.len() < 3 {
            ids.push(next_user_message(member).await.id);
        }
        assert_eq!(ids, ["g0", "g1", "g2"], "in order, once each");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_pushes_work_across_edges() {
    let mut cluster = Cluster::start(2, 1, 1);
    cluster.add_push();
    let (e0, e1) = (
        cluster.edges[0].addr().http.clone(),
        cluster.edges[1].addr().http.clone(),
    );
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;

    // A file uploaded through one edge is downloaded through the other:
    // the URL key and the file store are the cluster's, not an edge's.
    let (status, ticket) = call(
        reqwest::Method::POST,
        format!("{e0}/v1/files"),
        &alice.access_token,
        Some(serde_json::json!({"conversation": "alice:bob", "size": 5, "content_type": "text/plain"})),
    )
    .await;
    assert_eq!(status, 201, "{ticket}");
    let id = ticket["file_id"].as_str().unwrap();
    let put = reqwest::Client::new()
        .put(format!("{e1}{}", ticket["upload_url"].as_str().unwrap()))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let (status, url) = call(
        reqwest::Method::POST,
        format!("{e1}/v1/files/{id}/download-url"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{url}");
    let body = reqwest::get(format!("{e0}{}", url["url"].as_str().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello");

    // Bob subscribes on edge 1; Alice writes on edge 0 while Bob is
    // offline; `samvad push` notifies his browser, signed with the key
    // both edges publish.
    let (endpoint, mut pushes) = push_service::push_endpoint().await;
    let browser = push_service::Browser::new();
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{e1}/v1/push/subscriptions"),
        &bob.access_token,
        Some(browser.subscription(&format!("{endpoint}/wp/bob"))),
    )
    .await;
    assert_eq!(status, 201);
    let vapid = push_service::vapid_public(&e1).await;
    assert_eq!(vapid, push_service::vapid_public(&e0).await);
    let mut a = cluster.edges[0].connect(TransportKind::Ws, &alice).await;
    sync_all(&mut a, 0).await;
    send_chat(&mut a, "m1", "alice", "bob", "ping").await;
    next_of(&mut a, "accepted").await;
    let push = push_service::next_at(&mut pushes, "/wp/bob").await;
    let n = browser.open(&push, &vapid, "http://127.0.0.1");
    assert_eq!(
        (n["from"].as_str(), n["id"].as_str()),
        (Some("alice"), Some("m1"))
    );
}

/// The media node a room is pinned to, per Redis.
async fn pinned_node(cluster: &Cluster, room: &str) -> Option<String> {
    let client = redis::Client::open(cluster.redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(format!("samvad.media:room:{room}"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Ann on one edge, Bob on the other, in a call; both hear each other.
async fn join_call(
    cluster: &Cluster,
    room: &str,
    ann: &rest::Tokens,
    bob: &rest::Tokens,
) -> Vec<samvad_client::media::Participant> {
    let mut ps = Vec::new();
    for (edge, name, tokens) in [(0, "ann", ann), (1, "bob", bob)] {
        let session = cluster.edges[edge]
            .connect(TransportKind::Quic, tokens)
            .await;
        ps.push(
            samvad_client::media::Participant::join(session, name, room, true)
                .await
                .unwrap(),
        );
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let heard = ps[0].received.count("bob", "video") >= 10
            && ps[1].received.count("ann", "video") >= 10;
        if heard {
            return ps;
        }
        assert!(std::time::Instant::now() < end, "no media across edges");
        let rounds = ps
            .iter_mut()
            .map(|p| p.run_for(std::time::Duration::from_millis(100)));
        for r in futures_util::future::join_all(rounds).await {
            r.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_pinned_to_one_media_node_and_moves_when_it_dies() {
    let mut cluster = Cluster::start(2, 1, 1);
    cluster.add_media(0);
    cluster.add_media(1);
    let ann = cluster.user(0, "ann").await;
    let bob = cluster.user(1, "bob").await;
    let group = rest::create_group(
        &cluster.edges[0].addr().http,
        &ann.access_token,
        "call",
        &["bob".into()],
    )
    .await
    .unwrap();

    // Both edges send the room's signals to the one node it is pinned to.
    let ps = join_call(&cluster, &group.id, &ann, &bob).await;
    let first = pinned_node(&cluster, &group.id)
        .await
        .expect("the room is pinned");
    let index: usize = first.trim_start_matches('m').parse().unwrap();
    // The node serves its own metrics: the two participants, and the
    // frames it forwarded between them.
    let metrics_url = format!(
        "http://{}",
        cluster.medias[index].ready_info["metrics"]
            .as_str()
            .expect("the media node serves metrics")
    );
    let metric = |name: &'static str| rest::server_metric(&metrics_url, name);
    assert_eq!(metric("samvad_media_participants").await.unwrap(), 2.0);
    assert!(metric("samvad_media_frames_forwarded_total").await.unwrap() > 0.0);
    assert!(metric("samvad_process_cpu_seconds").await.unwrap() > 0.0);
    drop(ps);

    // That node dies; once its lease runs out, a rejoin lands on the other.
    cluster.medias[index].kill9();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pinned_node(&cluster, &group.id).await.as_deref() == Some(first.as_str()) {
        assert!(
            std::time::Instant::now() < end,
            "the dead node's pin never ran out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ps = join_call(&cluster, &group.id, &ann, &bob).await;
    let second = pinned_node(&cluster, &group.id)
        .await
        .expect("pinned again");
    assert_ne!(second, first);
}

/// Alice sends `ids` to bob; bob, who does nothing but ack, gets each live
/// exactly once, in order, with the next seqs.
async fn live_round(
    a: &mut samvad_client::Client,
    b: &mut samvad_client::Client,
    ids: std::ops::Range<usize>,
) {
    for i in ids.clone() {
        send_chat(a, &format!("live-{i}"), "alice", "bob", "x").await;
        next_of(a, "accepted").await;
    }
    for i in ids {
        // Twice the frame timeout: a takeover waits for the group's session
        // timeout first.
        let frame = match b.recv_timeout(T * 2).await {
            Ok(f) => f,
            Err(e) => panic!("bob got no live delivery of live-{i}: {e}"),
        };
        let Some(server_frame::Kind::Deliver(d)) = frame.kind else {
            panic!("a delivery, not {frame:?}")
        };
        let env = d.envelope.unwrap();
        assert_eq!(env.id, format!("live-{i}"), "live, once, in order");
        assert_eq!(env.seq, i as u64 + 1, "gap-free");
        b.send(client_frame::Kind::Ack(Ack { seq: env.seq }))
            .await
            .unwrap();
    }
}

/// A session live on an edge keeps getting its messages live, without its
/// client doing anything, while the store that owns its inbox is killed -9
/// and restarted on its disk (it remembers which sessions had synced), and
/// when another store takes the partitions over (it replays the sessions'
/// syncs from the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sessions_keep_receiving_across_a_store_restart_and_a_takeover() {
    let mut cluster = Cluster::start(1, 1, 1);
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(0, "bob").await;
    let mut a = cluster.edges[0].connect(TransportKind::Ws, &alice).await;
    sync_all(&mut a, 0).await;
    let mut b = cluster.edges[0].connect(TransportKind::Ws, &bob).await;
    sync_all(&mut b, 0).await;
    live_round(&mut a, &mut b, 0..5).await;

    cluster.stores[0].restart();
    live_round(&mut a, &mut b, 5..10).await;

    // A second store joins, then the first dies for good: the second owns
    // every partition once the group gives up on the first.
    cluster.add_store(1);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    cluster.stores[0].kill9();
    live_round(&mut a, &mut b, 10..15).await;
    a.close().await;
    b.close().await;
}

/// Retention in the cluster: a store's sweep expires delivered entries
/// through `deliver`, in order with everything else; undelivered ones and
/// the seqs stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_entries_expire_in_the_cluster_too() {
    let cluster = Cluster::start_with(
        samvad_testkit::Kafka::start(),
        1,
        1,
        1,
        // 0.00002 days: 1.7 s.
        &["--inbox-retention-days", "0.00002"],
    );
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(0, "bob").await;
    let mut a = cluster.edges[0].connect(TransportKind::Quic, &alice).await;
    sync_all(&mut a, 0).await;
    for id in ["m1", "m2"] {
        send_chat(&mut a, id, "alice", "bob", id).await;
        next_of(&mut a, "accepted").await;
    }
    let mut b = cluster.edges[0].connect(TransportKind::Quic, &bob).await;
    assert_eq!(sync_expecting(&mut b, 0, 2).await.len(), 2);
    b.send(client_frame::Kind::Ack(Ack { seq: 1 }))
        .await
        .unwrap();

    // m1 goes; m2, never acked, stays.
    let deadline = tokio::time::Instant::now() + SYNC_WAIT * 2;
    loop {
        let (left, _) = sync_all(&mut b, 0).await;
        let left: Vec<(u64, String)> = left.into_iter().map(|m| (m.0, m.1)).collect();
        if left == [(2, "m2".to_string())] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "m1 never expired: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    send_chat(&mut a, "m3", "alice", "bob", "m3").await;
    next_of(&mut a, "accepted").await;
    assert_eq!(next_user_message(&mut b).await.seq, 3);
}
