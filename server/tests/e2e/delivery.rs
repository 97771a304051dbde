//! Guaranteed 1:1 delivery through the real binary, over every transport.

use std::collections::HashMap;

use crate::common::*;
use samvad_client::TransportKind;
use samvad_proto::v1::{client_frame, server_frame, Ack, DeliveryState};

/// Live delivery, server ack, ack → cursor → DELIVERED receipt.
async fn one_to_one(kind: TransportKind) {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut bob = server.connect(kind, &b).await;
    let (messages, _) = sync_all(&mut bob, 0).await;
    assert!(messages.is_empty());
    let mut alice = server.connect(kind, &a).await;
    sync_all(&mut alice, 0).await;

    send_chat(&mut alice, "m-1", "alice", "bob", "hello bob").await;
    let accepted = next_of(&mut alice, "accepted").await;
    let Some(server_frame::Kind::Accepted(acc)) = accepted.kind else {
        unreachable!()
    };
    assert_eq!(acc.id, "m-1");
    assert!(acc.server_ts > 0);

    let Some(server_frame::Kind::Deliver(d)) = next_of(&mut bob, "deliver").await.kind else {
        unreachable!()
    };
    let env = d.envelope.unwrap();
    assert_eq!((env.seq, env.id.as_str()), (1, "m-1"));
    let head = env.head.unwrap();
    assert_eq!(
        (head.from.as_str(), head.to.as_str(), head.chatid.as_str()),
        ("alice", "bob", "alice:bob")
    );
    assert_eq!(env.body.unwrap().text, "hello bob");
    assert_eq!(env.server_ts, acc.server_ts);

    bob.send(client_frame::Kind::Ack(Ack { seq: 1 }))
        .await
        .unwrap();
    let Some(server_frame::Kind::Receipt(r)) = next_of(&mut alice, "receipt").await.kind else {
        unreachable!()
    };
    assert_eq!((r.message_id.as_str(), r.by.as_str()), ("m-1", "bob"));
    assert_eq!(r.state(), DeliveryState::Delivered);
    assert_eq!(r.seq, 1, "the receipt is entry 1 of alice's inbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_over_webtransport() {
    one_to_one(TransportKind::Wt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_over_quic() {
    one_to_one(TransportKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_over_websocket() {
    one_to_one(TransportKind::Ws).await;
}

/// Sender and recipient on different transports share one inbox model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_transports_and_to_every_session() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut bob_wt = server.connect(TransportKind::Wt, &b).await;
    let mut bob_ws = server.connect(TransportKind::Ws, &b).await;
    sync_all(&mut bob_wt, 0).await;
    sync_all(&mut bob_ws, 0).await;
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    send_chat(&mut alice, "x", "alice", "bob", "to both").await;
    for bob in [&mut bob_wt, &mut bob_ws] {
        let Some(server_frame::Kind::Deliver(d)) = next_of(bob, "deliver").await.kind else {
            unreachable!()
        };
        assert_eq!(d.envelope.unwrap().seq, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_then_sync_in_pages() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    // More than one sync page (256).
    let n = 300;
    for i in 0..n {
        send_chat(
            &mut alice,
            &format!("m{i}"),
            "alice",
            "bob",
            &format!("text {i}"),
        )
        .await;
    }
    for _ in 0..n {
        next_of(&mut alice, "accepted").await;
    }
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    let messages = sync_expecting(&mut bob, 0, n).await;
    let seqs: Vec<u64> = messages.iter().map(|m| m.0).collect();
    assert_eq!(
        seqs,
        (1..=n as u64).collect::<Vec<_>>(),
        "gap-free, in order, once each: {messages:?}"
    );
    assert!(messages
        .iter()
        .enumerate()
        .all(|(i, m)| m.1 == format!("m{i}") && m.2 == format!("text {i}")));
    // A sync after what the client has returns nothing.
    let (again, _) = sync_all(&mut bob, n as u64).await;
    assert!(again.is_empty());
    // Then live delivery continues after the replay.
    send_chat(&mut alice, "late", "alice", "bob", "live").await;
    let Some(server_frame::Kind::Deliver(d)) = next_of(&mut bob, "deliver").await.kind else {
        unreachable!()
    };
    assert_eq!(d.envelope.unwrap().seq, n as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_send_is_acknowledged_never_delivered_twice() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Wt, &a).await;
    for _ in 0..3 {
        send_chat(&mut alice, "same-id", "alice", "bob", "once").await;
        let Some(server_frame::Kind::Accepted(acc)) = next_of(&mut alice, "accepted").await.kind
        else {
            unreachable!()
        };
        assert_eq!(acc.id, "same-id");
    }
    send_chat(&mut alice, "other-id", "alice", "bob", "twice").await;
    next_of(&mut alice, "accepted").await;
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    let messages = sync_expecting(&mut bob, 0, 2).await;
    let ids: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids, ["same-id", "other-id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_move_the_cursor_and_yield_receipts_once() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    sync_all(&mut alice, 0).await;
    for i in 1..=3 {
        send_chat(&mut alice, &format!("m{i}"), "alice", "bob", "x").await;
        next_of(&mut alice, "accepted").await;
    }
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    let messages = sync_expecting(&mut bob, 0, 3).await;
    assert_eq!(messages.len(), 3);
    // Ack 2, then 2 again, then 1: m1 and m2 get one receipt together,
    // once (DELIVERED receipts are coalesced per acknowledgement).
    for seq in [2, 2, 1] {
        bob.send(client_frame::Kind::Ack(Ack { seq }))
            .await
            .unwrap();
    }
    let Some(server_frame::Kind::Receipt(r)) = next_of(&mut alice, "receipt").await.kind else {
        unreachable!()
    };
    assert_eq!(
        (r.message_id.as_str(), r.message_ids.as_slice()),
        ("m2", &["m1".to_string(), "m2".to_string()][..])
    );
    assert_eq!(r.state(), DeliveryState::Delivered);
    // Acking past the end is clamped to the last entry.
    bob.send(client_frame::Kind::Ack(Ack { seq: 99 }))
        .await
        .unwrap();
    let Some(server_frame::Kind::Receipt(r)) = next_of(&mut alice, "receipt").await.kind else {
        unreachable!()
    };
    assert_eq!(r.message_id, "m3");
    assert!(
        r.message_ids.is_empty(),
        "a receipt for one message names it alone"
    );
    // Alice's inbox holds exactly the two receipts, even after reconnects.
    let mut alice2 = server.connect(TransportKind::Wt, &a).await;
    let (_, receipts) = sync_all(&mut alice2, 0).await;
    assert_eq!(receipts, 2);
}

/// One conversation's messages `(seq, id, text)` in an inbox, ids `m<n>`
/// or `k<n>` numbered in send order: seqs 1, 2, 3, … and ids ascending
/// (nothing twice, nothing reordered).
fn assert_gap_free_in_send_order(messages: &[(u64, String, String)]) {
    let seqs: Vec<u64> = messages.iter().map(|m| m.0).collect();
    assert_eq!(
        seqs,
        (1..=messages.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let order: Vec<usize> = messages.iter().map(|m| m.1[1..].parse().unwrap()).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "per-conversation order kept: {order:?}"
    );
}

/// kill -9 in the middle of a stream of pipelined sends: after a restart,
/// every acknowledged message is in the inbox exactly once, gap-free; the
/// sender's retry of unacknowledged ones adds no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_and_duplicates_nothing() {
    let mut server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    let n = 400;
    for i in 0..n {
        send_chat(&mut alice, &format!("k{i}"), "alice", "bob", "payload").await;
    }
    let mut acked = Vec::new();
    // Kill once part of the stream is acknowledged.
    while acked.len() < 50 {
        if let Some(server_frame::Kind::Accepted(acc)) = alice.recv_timeout(T).await.unwrap().kind {
            acked.push(acc.id);
        }
    }
    server.kill9();
    // Whatever acks were already on their way count too.
    while let Ok(Ok(Some(f))) =
        tokio::time::timeout(std::time::Duration::from_secs(2), alice.recv()).await
    {
        if let Some(server_frame::Kind::Accepted(acc)) = f.kind {
            acked.push(acc.id);
        }
    }
    assert!(acked.len() < n, "the kill should interrupt the stream");
    server.restart();

    let mut bob = server.connect(TransportKind::Ws, &b).await;
    // The restarted server replays `inbound` into the inbox; what the sync
    // does not find yet arrives live. Take everything until every
    // acknowledged id is in and the session has been quiet for a moment.
    let (mut messages, _) = sync_all(&mut bob, 0).await;
    let quiet = std::time::Duration::from_millis(700);
    loop {
        let have: std::collections::HashSet<&str> = messages.iter().map(|m| m.1.as_str()).collect();
        let complete = acked.iter().all(|id| have.contains(id.as_str()));
        let wait = if complete { quiet } else { T };
        match tokio::time::timeout(wait, bob.recv()).await {
            Ok(Ok(Some(f))) => {
                if let Some(server_frame::Kind::Deliver(d)) = f.kind {
                    let env = d.envelope.unwrap();
                    messages.push((env.seq, env.id, env.body.unwrap_or_default().text));
                }
            }
            Err(_) if complete => break,
            other => panic!("bob's session failed before every acked message came: {other:?}"),
        }
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for m in &messages {
        *count.entry(m.1.as_str()).or_default() += 1;
    }
    for id in &acked {
        assert_eq!(
            count.get(id.as_str()),
            Some(&1),
            "acknowledged {id} must arrive exactly once"
        );
    }
    assert!(count.values().all(|c| *c == 1), "no duplicates");
    assert_gap_free_in_send_order(&messages);

    // The client retries everything it has no ack for, plus a few acked.
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    let mut retried = 0;
    for i in 0..n {
        let id = format!("k{i}");
        if !acked.contains(&id) || i < 10 {
            send_chat(&mut alice, &id, "alice", "bob", "payload").await;
            retried += 1;
        }
    }
    for _ in 0..retried {
        next_of(&mut alice, "accepted").await;
    }
    drop(messages);
    bob.close().await;
    let mut bob = server.connect(TransportKind::Wt, &b).await;
    let (everything, _) = sync_all(&mut bob, 0).await;
    let mut all: Vec<String> = everything.into_iter().map(|m| m.1).collect();
    assert_eq!(all.len(), n, "every message once after the retry");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

/// One user on two devices: each has its own session and its own place in
/// the inbox. A message reaches both live; a device that was away catches
/// up from where it was, whatever the other one acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_a_user_gets_every_message_from_its_own_cursor() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let b2 = samvad_client::rest::login(&server.addr.http, "bob", "password-123")
        .await
        .unwrap();
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    let mut phone = server.connect(TransportKind::Quic, &b).await;
    let mut laptop = server.connect(TransportKind::Wt, &b2).await;
    for s in [&mut alice, &mut phone, &mut laptop] {
        sync_all(s, 0).await;
    }
    send_chat(&mut alice, "m1", "alice", "bob", "to both").await;
    for device in [&mut phone, &mut laptop] {
        assert_eq!(next_user_message(device).await.id, "m1");
    }
    // The laptop goes away; the phone reads and acks two more.
    laptop.close().await;
    for id in ["m2", "m3"] {
        send_chat(&mut alice, id, "alice", "bob", "while away").await;
        let env = next_user_message(&mut phone).await;
        phone
            .send(client_frame::Kind::Ack(Ack { seq: env.seq }))
            .await
            .unwrap();
    }
    // Back, the laptop syncs after the last entry it had (seq 1): it gets
    // both, although the phone acknowledged them.
    let mut laptop = server.connect(TransportKind::Wt, &b2).await;
    let (messages, _) = sync_all(&mut laptop, 1).await;
    let ids: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids, ["m2", "m3"]);
}

/// Resumes `device`'s session from its cursor on the server: the ids of
/// the messages replayed.
async fn resume(
    server: &TestServer,
    tokens: &samvad_client::rest::Tokens,
    device: &str,
) -> Vec<String> {
    let (mut c, _) = samvad_client::Client::connect_device(
        TransportKind::Quic,
        &server.addr,
        &tokens.access_token,
        device,
    )
    .await
    .unwrap();
    c.send(client_frame::Kind::Sync(samvad_proto::v1::Sync {
        after_seq: 0,
        resume: true,
    }))
    .await
    .unwrap();
    let mut ids = Vec::new();
    loop {
        let frame = c.recv_timeout(T).await.unwrap();
        match frame.kind {
            Some(server_frame::Kind::Deliver(d)) => ids.push(d.envelope.unwrap().id),
            Some(server_frame::Kind::SyncDone(done)) => {
                assert!(!done.more);
                return ids;
            }
            _ => {}
        }
    }
}

/// Each device has its own ack cursor on the server: a device that lost
/// its local state resumes where it, not another device, had acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_from_its_own_cursor_on_the_server() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    sync_all(&mut alice, 0).await;
    let connect = |device: &'static str| {
        samvad_client::Client::connect_device(
            TransportKind::Ws,
            &server.addr,
            &b.access_token,
            device,
        )
    };
    let (mut phone, _) = connect("phone").await.unwrap();
    let (mut laptop, _) = connect("laptop").await.unwrap();
    // Stays online: once it has a message, the inbox has it.
    let (mut watch, _) = connect("watch").await.unwrap();
    for device in [&mut phone, &mut laptop, &mut watch] {
        sync_all(device, 0).await;
    }
    let mut seqs = Vec::new();
    for id in ["m1", "m2", "m3"] {
        send_chat(&mut alice, id, "alice", "bob", "hello").await;
        let env = next_user_message(&mut phone).await;
        assert_eq!(next_user_message(&mut laptop).await.id, id);
        seqs.push(env.seq);
    }
    // The phone acks everything, the laptop only the first.
    let ack = |seq| client_frame::Kind::Ack(Ack { seq });
    phone.send(ack(seqs[2])).await.unwrap();
    laptop.send(ack(seqs[0])).await.unwrap();
    phone.close().await;
    laptop.close().await;
    send_chat(&mut alice, "m4", "alice", "bob", "later").await;
    for _ in 0..4 {
        next_user_message(&mut watch).await;
    }

    assert_eq!(resume(&server, &b, "laptop").await, ["m2", "m3", "m4"]);
    assert_eq!(resume(&server, &b, "phone").await, ["m4"]);
    assert_eq!(
        resume(&server, &b, "tablet").await,
        ["m1", "m2", "m3", "m4"],
        "a new device has acked nothing"
    );

    // A device name that is not one is refused at hello.
    let refused = samvad_client::Client::connect_device(
        TransportKind::Ws,
        &server.addr,
        &b.access_token,
        "a device\nwith a newline",
    )
    .await;
    assert!(refused.is_err());
}

/// kill -9 in the middle of a 20 000 msg/s stream (10 senders, 2 000/s
/// each, to 10 recipients, over 4 inbox shards so that most conversations'
/// histories live on another shard than their recipients): after a restart
/// every acknowledged message is in its recipient's inbox exactly once,
/// gap-free and in send order, and in its conversation's history exactly
/// once (the cross-shard outbox was replayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_20_000_msg_s_stream_loses_and_repeats_nothing() {
    const PAIRS: usize = 10;
    const PER_TICK: usize = 20; // every 10 ms: 2 000/s per sender
    let mut server = TestServer::start_with(&["--rate-limit", "100000", "--shards", "4"]);
    let mut senders = Vec::new();
    let mut recipients = Vec::new();
    for i in 0..PAIRS {
        senders.push(server.user(&format!("send{i:02}")).await);
        recipients.push(server.user(&format!("recv{i:02}")).await);
    }
    let mut tasks = Vec::new();
    // A QUIC client learns of a killed server only by its idle timeout:
    // the senders are told when the kill happened instead.
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (i, tokens) in senders.iter().enumerate() {
        let mut client = server.connect(TransportKind::Quic, tokens).await;
        let killed = killed.clone();
        tasks.push(tokio::spawn(async move {
            let (from, to) = (format!("send{i:02}"), format!("recv{i:02}"));
            let mut acked = Vec::new();
            let mut next = 0usize;
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
            'run: loop {
                tick.tick().await;
                if killed.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                for _ in 0..PER_TICK {
                    let sent = client
                        .send(client_frame::Kind::Send(samvad_proto::v1::Send {
                            envelope: Some(samvad_client::chat(
                                &format!("m{next}"),
                                &from,
                                &to,
                                "x",
                            )),
                        }))
                        .await;
                    if sent.is_err() {
                        break 'run;
                    }
                    next += 1;
                }
                loop {
                    match tokio::time::timeout(std::time::Duration::from_millis(1), client.recv())
                        .await
                    {
                        Ok(Ok(Some(f))) => {
                            if let Some(server_frame::Kind::Accepted(a)) = f.kind {
                                acked.push(a.id);
                            }
                        }
                        Ok(_) => break 'run,
                        Err(_) => break,
                    }
                }
            }
            (next, acked)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.kill9();
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acked_by_pair = Vec::new();
    for task in tasks {
        let (sent, acked) = task.await.unwrap();
        // A sender whose last burst was all acknowledged when the kill
        // came has nothing in flight; the others lose their in-flight ones.
        assert!(acked.len() <= sent);
        acked_by_pair.push(acked);
    }
    let total: usize = acked_by_pair.iter().map(Vec::len).sum();
    assert!(total > 0, "some sends were acknowledged before the kill");
    eprintln!("{total} messages acknowledged before the kill");
    server.restart();

    for (i, acked) in acked_by_pair.iter().enumerate() {
        let mut bob = server.connect(TransportKind::Ws, &recipients[i]).await;
        let (messages, _) = sync_all(&mut bob, 0).await;
        assert_gap_free_in_send_order(&messages);
        let have: std::collections::HashSet<&str> = messages.iter().map(|m| m.1.as_str()).collect();
        for id in acked {
            assert!(
                have.contains(id.as_str()),
                "acknowledged {id} of pair {i} lost"
            );
        }

        // The conversation's history holds each of them once too.
        let chatid = format!("recv{i:02}:send{i:02}");
        let mut in_history = Vec::new();
        let mut before = 0;
        loop {
            bob.send(client_frame::Kind::History(samvad_proto::v1::History {
                chatid: chatid.clone(),
                before_seq: before,
                limit: 100,
            }))
            .await
            .unwrap();
            let Some(server_frame::Kind::History(page)) = next_of(&mut bob, "history").await.kind
            else {
                unreachable!()
            };
            in_history.extend(page.messages.iter().map(|e| e.id.clone()));
            match page.messages.last() {
                Some(last) if page.more => before = last.seq,
                _ => break,
            }
        }
        let mut count: HashMap<&str, usize> = HashMap::new();
        for id in &in_history {
            *count.entry(id.as_str()).or_default() += 1;
        }
        assert!(
            count.values().all(|c| *c == 1),
            "no message twice in history"
        );
        for id in acked {
            assert_eq!(
                count.get(id.as_str()),
                Some(&1),
                "acknowledged {id} of pair {i} missing from the history"
            );
        }
        bob.close().await;
    }
}

/// A client of `tokens` behind a bad path to `server`: a lossy UDP relay
/// for QUIC and WebTransport, a delaying TCP relay for WebSocket. The path
/// lives as long as the returned guard.
async fn connect_behind(
    kind: TransportKind,
    server: &TestServer,
    tokens: &samvad_client::rest::Tokens,
    conditions: crate::common::lossy::Conditions,
) -> (samvad_client::Client, Box<dyn std::any::Any + Send>) {
    use crate::common::lossy::{DelayedTcpPath, LossyUdpPath};
    let mut addr = server.addr.clone();
    let guard: Box<dyn std::any::Any + Send> = if kind == TransportKind::Ws {
        let upstream = server
            .addr
            .http
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let path = DelayedTcpPath::start(upstream, conditions.delay).await;
        addr.http = format!("http://{}", path.addr);
        Box::new(path)
    } else {
        let path = LossyUdpPath::start(server.addr.quic, conditions).await;
        addr.quic = path.addr;
        Box::new(path)
    };
    let (client, _) = samvad_client::Client::connect(kind, &addr, &tokens.access_token)
        .await
        .unwrap();
    (client, guard)
}

fn dropped_on(guard: &dyn std::any::Any) -> u64 {
    guard
        .downcast_ref::<crate::common::lossy::LossyUdpPath>()
        .map_or(0, |p| {
            p.counts.dropped.load(std::sync::atomic::Ordering::Relaxed)
        })
}

/// A stream of sends over a bad network: both clients behind a relay with
/// 5 % loss and 50 ms (+ up to 10 ms, so reordered) each way for QUIC and
/// WebTransport, 50 ms each way for WebSocket (TCP: loss above the kernel
/// is delay). Every message is acknowledged, delivered once, gap-free and in
/// send order, and its sender gets the DELIVERED receipts.
async fn chat_over_a_bad_network(kind: TransportKind, seed: u64) {
    use crate::common::lossy::Conditions;
    const N: usize = 150;
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let conditions = Conditions {
        loss: 0.05,
        delay: std::time::Duration::from_millis(50),
        jitter: std::time::Duration::from_millis(10),
        seed,
    };
    let (mut alice, alice_path) = connect_behind(kind, &server, &a, conditions).await;
    let (mut bob, bob_path) = connect_behind(
        kind,
        &server,
        &b,
        Conditions {
            seed: seed + 1,
            ..conditions
        },
    )
    .await;
    sync_all(&mut bob, 0).await;
    sync_all(&mut alice, 0).await;

    for i in 0..N {
        send_chat(
            &mut alice,
            &format!("m{i:04}"),
            "alice",
            "bob",
            "through the storm",
        )
        .await;
        if i % 10 == 9 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut received = Vec::new();
    let mut accepted = Vec::new();
    let mut delivered_receipts = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while received.len() < N || accepted.len() < N || delivered_receipts.len() < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled: {} received, {} accepted, {} receipts",
            received.len(),
            accepted.len(),
            delivered_receipts.len()
        );
        tokio::select! {
            f = bob.recv_timeout(T) => {
                if let Some(server_frame::Kind::Deliver(d)) = f.unwrap().kind {
                    let env = d.envelope.unwrap();
                    bob.send(client_frame::Kind::Ack(Ack { seq: env.seq })).await.unwrap();
                    received.push((env.seq, env.id, String::new()));
                }
            }
            f = alice.recv_timeout(T) => match f.unwrap().kind {
                Some(server_frame::Kind::Accepted(acc)) => accepted.push(acc.id),
                Some(server_frame::Kind::Receipt(r)) => {
                    assert_eq!(r.state(), DeliveryState::Delivered);
                    let ids = if r.message_ids.is_empty() { vec![r.message_id] } else { r.message_ids };
                    for id in ids {
                        assert!(delivered_receipts.insert(id), "a receipt twice");
                    }
                }
                _ => {}
            },
        }
    }
    assert_gap_free_in_send_order(&received);
    let sent: Vec<String> = (0..N).map(|i| format!("m{i:04}")).collect();
    assert_eq!(accepted, sent, "accepted once each, in send order");
    if kind != TransportKind::Ws {
        let dropped = dropped_on(alice_path.as_ref()) + dropped_on(bob_path.as_ref());
        assert!(dropped > 0, "the path dropped nothing: not a lossy test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_a_lossy_network_quic() {
    chat_over_a_bad_network(TransportKind::Quic, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_a_lossy_network_webtransport() {
    chat_over_a_bad_network(TransportKind::Wt, 29).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_a_slow_network_websocket() {
    chat_over_a_bad_network(TransportKind::Ws, 41).await;
}

/// Benchmark, not a check (`cargo nextest run -p samvad --test delivery
/// --run-ignored only latency_under_loss --no-capture`): send → delivery
/// latency of 1:1 chat at 100 msg/s for 10 s per transport, both clients
/// behind a path with 25 ms (+ up to 5 ms) each way and 0, 1 or 5 % loss
/// (WebSocket: delay only, see `lossy`). Prints one line per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it on its own"]
async fn latency_under_loss() {
    use crate::common::lossy::Conditions;
    use std::time::{Duration, Instant};
    const N: usize = 1000;
    for kind in [TransportKind::Quic, TransportKind::Wt, TransportKind::Ws] {
        for loss in [0.0, 0.01, 0.05] {
            if kind == TransportKind::Ws && loss > 0.0 {
                continue;
            }
            let server = TestServer::start();
            let (a, b) = (server.user("alice").await, server.user("bob").await);
            let c = Conditions {
                loss,
                delay: Duration::from_millis(25),
                jitter: Duration::from_millis(5),
                seed: 7,
            };
            let (mut alice, _pa) = connect_behind(kind, &server, &a, c).await;
            let (mut bob, _pb) =
                connect_behind(kind, &server, &b, Conditions { seed: 8, ..c }).await;
            sync_all(&mut alice, 0).await;
            sync_all(&mut bob, 0).await;
            let sent_at: std::sync::Arc<parking_lot::Mutex<HashMap<String, Instant>>> =
                Default::default();
            let stamps = sent_at.clone();
            let sender = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                for i in 0..N {
                    tick.tick().await;
                    let id = format!("m{i:05}");
                    stamps.lock().insert(id.clone(), Instant::now());
                    send_chat(&mut alice, &id, "alice", "bob", "x").await;
                }
                alice
            });
            let mut latencies = Vec::with_capacity(N);
            while latencies.len() < N {
                let f = bob.recv_timeout(Duration::from_secs(30)).await.unwrap();
                if let Some(server_frame::Kind::Deliver(d)) = f.kind {
                    let env = d.envelope.unwrap();
                    let sent = sent_at.lock()[&env.id];
                    latencies.push(sent.elapsed());
                    bob.send(client_frame::Kind::Ack(Ack { seq: env.seq }))
                        .await
                        .unwrap();
                }
            }
            drop(sender.await.unwrap());
            latencies.sort();
            let q = |p: f64| {
                latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
            };
            println!(
                "latency_under_loss {kind:?} loss {:.0} %: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                loss * 100.0,
                q(0.50).as_secs_f64() * 1e3,
                q(0.99).as_secs_f64() * 1e3,
                latencies.last().unwrap().as_secs_f64() * 1e3
            );
        }
    }
}

/// The ids a session's History request returns for `chatid` (newest first).
async fn history_ids(c: &mut samvad_client::Client, chatid: &str) -> Vec<String> {
    c.send(client_frame::Kind::History(samvad_proto::v1::History {
        chatid: chatid.into(),
        before_seq: 0,
        limit: 100,
    }))
    .await
    .unwrap();
    let Some(server_frame::Kind::History(page)) = next_of(c, "history").await.kind else {
        unreachable!()
    };
    page.messages.into_iter().map(|e| e.id).collect()
}

/// Polls `check` once a second until it holds or `SYNC_WAIT` passes: the
/// retention sweep runs in the background, a step a second.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + SYNC_WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `--inbox-retention-days`: delivered entries leave the inbox once old,
/// undelivered ones stay, the conversation's history keeps them all, and
/// seqs go on after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_entries_expire_from_the_inbox_and_stay_in_the_history() {
    // 0.00002 days: 1.7 s.
    let mut server = TestServer::start_with(&["--inbox-retention-days", "0.00002"]);
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    sync_all(&mut alice, 0).await;
    for id in ["m1", "m2"] {
        send_chat(&mut alice, id, "alice", "bob", id).await;
        next_of(&mut alice, "accepted").await;
    }
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    let (got, _) = sync_all(&mut bob, 0).await;
    assert_eq!(got.len(), 2);
    bob.send(client_frame::Kind::Ack(Ack { seq: 2 }))
        .await
        .unwrap();
    // m3 is delivered live but never acked.
    send_chat(&mut alice, "m3", "alice", "bob", "m3").await;
    next_of(&mut alice, "accepted").await;
    assert_eq!(next_user_message(&mut bob).await.seq, 3);

    let b_token = b.access_token.clone();
    let addr = server.addr.clone();
    eventually("m1 and m2 expire from bob's inbox", || {
        let (addr, token) = (addr.clone(), b_token.clone());
        async move {
            let (mut tablet, _) =
                samvad_client::Client::connect_device(TransportKind::Ws, &addr, &token, "tablet")
                    .await
                    .unwrap();
            let (left, _) = sync_all(&mut tablet, 0).await;
            let left: Vec<(u64, String)> = left.into_iter().map(|m| (m.0, m.1)).collect();
            left == [(3, "m3".to_string())]
        }
    })
    .await;
    // The history has all three; Alice's receipts (never acked by her) stay.
    assert_eq!(history_ids(&mut bob, "alice:bob").await, ["m3", "m2", "m1"]);
    let (_, receipts) = sync_all(&mut alice, 0).await;
    assert!(
        receipts >= 1,
        "alice's undelivered DELIVERED receipt expired"
    );

    // Seqs go on after a restart, even where entries are gone.
    drop((alice, bob));
    server.restart();
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    sync_all(&mut alice, 0).await;
    send_chat(&mut alice, "m4", "alice", "bob", "m4").await;
    next_of(&mut alice, "accepted").await;
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    let (left, _) = sync_all(&mut bob, 0).await;
    let seqs: Vec<u64> = left.iter().map(|m| m.0).collect();
    assert_eq!(seqs, [3, 4]);
}

/// `--history-retention-days`: a conversation's history forgets old
/// messages, and its next message still gets the next seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_history_expires_and_goes_on_counting() {
    let server = TestServer::start_with(&["--history-retention-days", "0.00002"]);
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    sync_all(&mut alice, 0).await;
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    sync_all(&mut bob, 0).await;
    for id in ["h1", "h2"] {
        send_chat(&mut alice, id, "alice", "bob", id).await;
        next_of(&mut alice, "accepted").await;
        next_user_message(&mut bob).await;
    }
    let alice = std::sync::Arc::new(tokio::sync::Mutex::new(alice));
    eventually("the history forgets h1 and h2", || {
        let alice = alice.clone();
        async move {
            history_ids(&mut *alice.lock().await, "alice:bob")
                .await
                .is_empty()
        }
    })
    .await;
    let mut alice = alice.lock().await;
    send_chat(&mut alice, "h3", "alice", "bob", "h3").await;
    next_of(&mut alice, "accepted").await;
    next_user_message(&mut bob).await;
    alice
        .send(client_frame::Kind::History(samvad_proto::v1::History {
            chatid: "alice:bob".into(),
            before_seq: 0,
            limit: 10,
        }))
        .await
        .unwrap();
    let Some(server_frame::Kind::History(page)) = next_of(&mut alice, "history").await.kind else {
        unreachable!()
    };
    let kept: Vec<(u64, String)> = page.messages.into_iter().map(|e| (e.seq, e.id)).collect();
    assert_eq!(kept, [(3, "h3".to_string())]);
}
