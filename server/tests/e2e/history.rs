//! Conversation history through the real binary: pages newest first with a
//! cursor, for the conversation's members only.

use crate::common::*;
use samvad_client::rest;
use samvad_client::{group_message, Client, TransportKind};
use samvad_proto::v1::{client_frame, server_frame, History, Send};

/// One page: (seq, id) newest first, and whether there is more.
async fn page(c: &mut Client, chatid: &str, before: u64, limit: u32) -> (Vec<(u64, String)>, bool) {
    c.send(client_frame::Kind::History(History {
        chatid: chatid.into(),
        before_seq: before,
        limit,
    }))
    .await
    .unwrap();
    let Some(server_frame::Kind::History(p)) = next_of(c, "history").await.kind else {
        unreachable!()
    };
    assert_eq!(p.chatid, chatid);
    (
        p.messages.into_iter().map(|e| (e.seq, e.id)).collect(),
        p.more,
    )
}

/// Every id of a conversation, newest first, paging `limit` at a time.
async fn all_ids(c: &mut Client, chatid: &str, limit: u32) -> Vec<String> {
    let (mut ids, mut before) = (Vec::new(), 0);
    loop {
        let (messages, more) = page(c, chatid, before, limit).await;
        assert!(messages.len() <= limit as usize);
        before = messages.last().map_or(0, |m| m.0);
        ids.extend(messages.into_iter().map(|m| m.1));
        if !more {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_history_pages_newest_first_for_its_two_users_only() {
    let server = TestServer::start();
    let (a, b, c) = server.alice_bob_carol().await;
    let mut alice = server.connect(TransportKind::Quic, &a).await;
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    sync_all(&mut alice, 0).await;
    sync_all(&mut bob, 0).await;
    // Once a message has reached its recipient, the history has it too.
    for i in 0..5 {
        send_chat(&mut alice, &format!("a{i}"), "alice", "bob", "hi").await;
        next_of(&mut alice, "accepted").await;
        next_user_message(&mut bob).await;
    }
    for i in 0..2 {
        send_chat(&mut bob, &format!("b{i}"), "bob", "alice", "hey").await;
        next_of(&mut bob, "accepted").await;
        next_user_message(&mut alice).await;
    }
    let (first, more) = page(&mut alice, "alice:bob", 0, 3).await;
    assert_eq!(
        first,
        [
            (7, "b1".to_string()),
            (6, "b0".to_string()),
            (5, "a4".to_string())
        ]
    );
    assert!(more);
    assert_eq!(
        all_ids(&mut bob, "alice:bob", 2).await,
        ["b1", "b0", "a4", "a3", "a2", "a1", "a0"],
        "both see one history, in the order it happened"
    );

    // Someone else's conversation, or a chat id in the wrong form.
    let mut intruder = server.connect(TransportKind::Ws, &c).await;
    for (chatid, code) in [
        ("alice:bob", "not_member"),
        ("bob:alice", "invalid_envelope"),
        ("alice:bob:carol", "invalid_envelope"),
        ("", "invalid_envelope"),
        ("#alice:bob", "invalid_envelope"),
    ] {
        intruder
            .send(client_frame::Kind::History(History {
                chatid: chatid.into(),
                before_seq: 0,
                limit: 10,
            }))
            .await
            .unwrap();
        assert_eq!(
            error_code(&next_of(&mut intruder, "error").await),
            code,
            "{chatid:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_history_holds_messages_and_system_events_for_members_only() {
    let server = TestServer::start();
    let (a, b, eve) = (
        server.user("alice").await,
        server.user("bob").await,
        server.user("eve").await,
    );
    let group = rest::create_group(&server.addr.http, &a.access_token, "crew", &["bob".into()])
        .await
        .unwrap();
    let mut alice = server.connect(TransportKind::Wt, &a).await;
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    sync_all(&mut alice, 0).await;
    sync_all(&mut bob, 0).await;
    for i in 0..3 {
        alice
            .send(client_frame::Kind::Send(Send {
                envelope: Some(group_message(&format!("g{i}"), "alice", &group.id, "hi")),
            }))
            .await
            .unwrap();
        next_of(&mut alice, "accepted").await;
    }
    for _ in 0..3 {
        next_user_message(&mut bob).await;
    }
    let ids = all_ids(&mut bob, &group.id, 50).await;
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[..3], ["g2", "g1", "g0"]);
    assert!(
        ids[3].starts_with("sys-"),
        "the creation event comes first: {ids:?}"
    );

    let mut outsider = server.connect(TransportKind::Quic, &eve).await;
    outsider
        .send(client_frame::Kind::History(History {
            chatid: group.id.clone(),
            before_seq: 0,
            limit: 10,
        }))
        .await
        .unwrap();
    assert_eq!(
        error_code(&next_of(&mut outsider, "error").await),
        "not_member"
    );
}

async fn read(c: &mut Client, chatid: &str, author: &str, ids: &[&str]) {
    c.send(client_frame::Kind::Read(samvad_proto::v1::Read {
        chatid: chatid.into(),
        author: author.into(),
        message_ids: ids.iter().map(|s| s.to_string()).collect(),
    }))
    .await
    .unwrap();
}

async fn next_receipt(c: &mut Client) -> samvad_proto::v1::Receipt {
    let Some(server_frame::Kind::Receipt(r)) = next_of(c, "receipt").await.kind else {
        unreachable!()
    };
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_reach_the_author_from_members_only() {
    use samvad_proto::v1::DeliveryState;
    let server = TestServer::start();
    let (a, b, c) = server.alice_bob_carol().await;
    let group = rest::create_group(&server.addr.http, &a.access_token, "crew", &["bob".into()])
        .await
        .unwrap();
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    let mut carol = server.connect(TransportKind::Wt, &c).await;
    for s in [&mut alice, &mut bob, &mut carol] {
        sync_all(s, 0).await;
    }

    // 1:1: bob reads alice's message; alice gets READ.
    send_chat(&mut alice, "m1", "alice", "bob", "hi").await;
    next_user_message(&mut bob).await;
    read(&mut bob, "alice:bob", "", &["m1"]).await;
    let r = next_receipt(&mut alice).await;
    assert_eq!(
        (
            r.message_id.as_str(),
            r.by.as_str(),
            r.state(),
            r.chatid.as_str()
        ),
        ("m1", "bob", DeliveryState::Read, "alice:bob")
    );
    // Group: bob reads alice's group message.
    alice
        .send(client_frame::Kind::Send(Send {
            envelope: Some(group_message("g1", "alice", &group.id, "hi all")),
        }))
        .await
        .unwrap();
    next_user_message(&mut bob).await;
    read(&mut bob, &group.id, "alice", &["g1"]).await;
    let r = next_receipt(&mut alice).await;
    assert_eq!(
        (r.message_id.as_str(), r.by.as_str(), r.state()),
        ("g1", "bob", DeliveryState::Read)
    );

    // Outsiders, and receipts to outsiders, are refused.
    for (chatid, author) in [("alice:bob", ""), (group.id.as_str(), "alice")] {
        read(&mut carol, chatid, author, &["m1"]).await;
        assert_eq!(
            error_code(&next_of(&mut carol, "error").await),
            "not_member",
            "{chatid}"
        );
    }
    read(&mut bob, &group.id, "carol", &["g1"]).await;
    assert_eq!(error_code(&next_of(&mut bob, "error").await), "not_member");
    read(&mut bob, "alice:bob", "carol", &["m1"]).await;
    assert_eq!(error_code(&next_of(&mut bob, "error").await), "not_member");
    read(&mut bob, "alice:bob", "", &[]).await;
    assert_eq!(
        error_code(&next_of(&mut bob, "error").await),
        "invalid_envelope"
    );
    // Too many ids at once, an id too long, a group read without author.
    let many: Vec<String> = (0..257).map(|i| format!("m{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let long = "x".repeat(129);
    for (chatid, author, ids) in [
        ("alice:bob", "", many.as_slice()),
        ("alice:bob", "", &[long.as_str()][..]),
        (group.id.as_str(), "", &["g1"][..]),
    ] {
        read(&mut bob, chatid, author, ids).await;
        assert_eq!(
            error_code(&next_of(&mut bob, "error").await),
            "invalid_envelope",
            "{chatid} {} ids",
            ids.len()
        );
    }
}

fn delete(
    id: &str,
    from: &str,
    to: &str,
    group: bool,
    ref_id: &str,
    ref_from: &str,
) -> client_frame::Kind {
    let mut env = if group {
        group_message(id, from, to, "")
    } else {
        samvad_client::chat(id, from, to, "")
    };
    env.head.as_mut().unwrap().action = samvad_proto::v1::Action::Delete as i32;
    env.ref_id = ref_id.into();
    env.ref_from = ref_from.into();
    env.body = None;
    client_frame::Kind::Send(Send {
        envelope: Some(env),
    })
}

/// (id, text, deleted) of every message in an inbox, from the start.
async fn inbox(c: &mut Client) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    c.sync(0, |frame| {
        if let Some(server_frame::Kind::Deliver(d)) = frame.kind {
            let env = d.envelope.unwrap();
            let deleted = env.head.as_ref().unwrap().action() == samvad_proto::v1::Action::Delete;
            out.push((
                env.id,
                env.body.map(|b| b.text).unwrap_or_default(),
                deleted,
            ));
        }
    })
    .await
    .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_everyone_needs_authorship_or_the_right_and_empties_the_message() {
    let server = TestServer::start();
    let http = server.addr.http.clone();
    let (a, b, c) = server.alice_bob_carol().await;
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    let mut carol = server.connect(TransportKind::Ws, &c).await;
    for s in [&mut alice, &mut bob, &mut carol] {
        sync_all(s, 0).await;
    }

    // 1:1: only the author deletes.
    send_chat(&mut alice, "m1", "alice", "bob", "secret").await;
    next_user_message(&mut bob).await;
    bob.send(delete("x1", "bob", "alice", false, "m1", "alice"))
        .await
        .unwrap();
    assert_eq!(error_code(&next_of(&mut bob, "error").await), "forbidden");
    alice
        .send(delete("d1", "alice", "bob", false, "m1", "alice"))
        .await
        .unwrap();
    next_of(&mut alice, "accepted").await;
    let notice = next_user_message(&mut bob).await;
    assert_eq!((notice.id.as_str(), notice.ref_id.as_str()), ("d1", "m1"));
    let mut bob_again = server.connect(TransportKind::Ws, &b).await;
    let seen = inbox(&mut bob_again).await;
    assert_eq!(
        seen,
        [
            ("m1".to_string(), String::new(), true),
            ("d1".to_string(), String::new(), true)
        ],
        "the message keeps its place, loses its text"
    );
    let (history, _) = page(&mut bob_again, "alice:bob", 0, 10).await;
    assert_eq!(history.len(), 2);

    // Group: a plain member deletes only their own; the creator anyone's;
    // claiming to be the author of someone else's message deletes nothing.
    let group = rest::create_group(
        &http,
        &a.access_token,
        "crew",
        &["bob".into(), "carol".into()],
    )
    .await
    .unwrap();
    for id in ["c1", "c2"] {
        carol
            .send(client_frame::Kind::Send(Send {
                envelope: Some(group_message(id, "carol", &group.id, &format!("text {id}"))),
            }))
            .await
            .unwrap();
        next_of(&mut carol, "accepted").await;
        next_user_message(&mut bob).await;
        next_user_message(&mut alice).await;
    }
    bob.send(delete("x2", "bob", &group.id, true, "c1", "carol"))
        .await
        .unwrap();
    assert_eq!(error_code(&next_of(&mut bob, "error").await), "forbidden");
    bob.send(delete("x3", "bob", &group.id, true, "c2", "bob"))
        .await
        .unwrap();
    next_of(&mut bob, "accepted").await;
    alice
        .send(delete("d2", "alice", &group.id, true, "c1", "carol"))
        .await
        .unwrap();
    next_of(&mut alice, "accepted").await;
    // Once the later delete reached carol, both were applied everywhere.
    loop {
        if next_user_message(&mut carol).await.id == "d2" {
            break;
        }
    }
    let mut alice_again = server.connect(TransportKind::Ws, &a).await;
    let seen = inbox(&mut alice_again).await;
    let c1 = seen.iter().find(|m| m.0 == "c1").unwrap();
    let c2 = seen.iter().find(|m| m.0 == "c2").unwrap();
    assert_eq!((c1.1.as_str(), c1.2), ("", true), "deleted by the creator");
    // A delete must name what it deletes and carry nothing else; a
    // message must not name anything to delete.
    let no_ref = delete("x4", "alice", "bob", false, "", "alice");
    let mut with_text = delete("x5", "alice", "bob", false, "m1", "alice");
    if let client_frame::Kind::Send(Send {
        envelope: Some(env),
    }) = &mut with_text
    {
        env.body = Some(samvad_proto::v1::Body {
            text: "sneaky".into(),
            ts: 0,
        });
    }
    let mut message_with_ref = samvad_client::chat("x6", "alice", "bob", "hi");
    message_with_ref.ref_id = "m1".into();
    for frame in [
        no_ref,
        with_text,
        client_frame::Kind::Send(Send {
            envelope: Some(message_with_ref),
        }),
    ] {
        alice.send(frame).await.unwrap();
        assert_eq!(
            error_code(&next_of(&mut alice, "error").await),
            "invalid_envelope"
        );
    }
    assert_eq!(
        (c2.1.as_str(), c2.2),
        ("text c2", false),
        "a false claim deletes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_for_me_hides_a_message_from_me_only() {
    let server = TestServer::start();
    let (a, b, c) = server.alice_bob_carol().await;
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    sync_all(&mut alice, 0).await;
    sync_all(&mut bob, 0).await;
    for id in ["m1", "m2"] {
        send_chat(&mut alice, id, "alice", "bob", &format!("text {id}")).await;
        next_user_message(&mut bob).await;
    }
    let hide = |chatid: &str, ids: &[&str]| {
        client_frame::Kind::Hide(samvad_proto::v1::Hide {
            chatid: chatid.into(),
            author: "alice".into(),
            message_ids: ids.iter().map(|s| s.to_string()).collect(),
        })
    };
    bob.send(hide("alice:bob", &["m1"])).await.unwrap();
    // A session's frames are handled in order: once the ping is answered,
    // the hide is on the bus, ahead of anything asked later.
    bob.send(client_frame::Kind::Ping(Default::default()))
        .await
        .unwrap();
    next_of(&mut bob, "pong").await;
    // Bob's own view: emptied in his inbox, gone from his history.
    let mut bob_again = server.connect(TransportKind::Ws, &b).await;
    let seen = inbox(&mut bob_again).await;
    assert_eq!(
        seen,
        [
            ("m1".to_string(), String::new(), true),
            ("m2".to_string(), "text m2".to_string(), false)
        ]
    );
    let (history, _) = page(&mut bob_again, "alice:bob", 0, 10).await;
    let ids: Vec<&str> = history.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids, ["m2"]);
    // Alice still sees both.
    let (history, _) = page(&mut alice, "alice:bob", 0, 10).await;
    let ids: Vec<&str> = history.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids, ["m2", "m1"]);
    // Nobody hides in someone else's conversation.
    let mut carol = server.connect(TransportKind::Ws, &c).await;
    carol.send(hide("alice:bob", &["m1"])).await.unwrap();
    assert_eq!(
        error_code(&next_of(&mut carol, "error").await),
        "not_member"
    );
    carol.send(hide("alice:bob", &[])).await.unwrap();
    assert_eq!(
        error_code(&next_of(&mut carol, "error").await),
        "invalid_envelope"
    );
    // A hide must name a valid author.
    bob.send(client_frame::Kind::Hide(samvad_proto::v1::Hide {
        chatid: "alice:bob".into(),
        author: "Not A User".into(),
        message_ids: vec!["m2".into()],
    }))
    .await
    .unwrap();
    assert_eq!(
        error_code(&next_of(&mut bob, "error").await),
        "invalid_envelope"
    );
}

async fn get(base: &str, token: &str, path: String) -> (u16, serde_json::Value) {
    call(reqwest::Method::GET, format!("{base}{path}"), token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_over_rest_pages_the_same_and_keeps_others_out() {
    let server = TestServer::start();
    let base = server.addr.http.clone();
    let (a, b, c) = server.alice_bob_carol().await;
    let group = rest::create_group(&base, &a.access_token, "crew", &["bob".into()])
        .await
        .unwrap();
    let mut alice = server.connect(TransportKind::Ws, &a).await;
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    sync_all(&mut alice, 0).await;
    sync_all(&mut bob, 0).await;
    for i in 0..3 {
        send_chat(
            &mut alice,
            &format!("c{i}"),
            "alice",
            "bob",
            &format!("chat {i}"),
        )
        .await;
        next_of(&mut alice, "accepted").await;
        next_user_message(&mut bob).await;
    }
    alice
        .send(client_frame::Kind::Send(Send {
            envelope: Some(group_message("g0", "alice", &group.id, "to the crew")),
        }))
        .await
        .unwrap();
    next_of(&mut alice, "accepted").await;
    next_user_message(&mut bob).await;

    let (status, first) = get(
        &base,
        &b.access_token,
        "/v1/conversations/alice:bob/messages?limit=2".into(),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["c2", "c1"]);
    assert_eq!(first["more"], true);
    assert_eq!(first["messages"][0]["body"]["text"], "chat 2");
    let before = first["messages"][1]["seq"].as_u64().unwrap();
    let (_, rest_page) = get(
        &base,
        &a.access_token,
        format!("/v1/conversations/alice:bob/messages?before_seq={before}&limit=2"),
    )
    .await;
    assert_eq!(ids(&rest_page), ["c0"]);
    assert_eq!(rest_page["more"], false);
    // The same page as the session's.
    let (session_page, _) = page(&mut alice, "alice:bob", 0, 2).await;
    let session_ids: Vec<String> = session_page.into_iter().map(|m| m.1).collect();
    assert_eq!(session_ids, ids(&first));

    let (status, group_page) = get(
        &base,
        &b.access_token,
        format!("/v1/conversations/{}/messages", group.id),
    )
    .await;
    assert_eq!(status, 200);
    assert!(ids(&group_page).contains(&"g0".to_string()), "{group_page}");

    // Carol: not her chat, not her group, the same 404 as nothing at all.
    for path in [
        "/v1/conversations/alice:bob/messages".to_string(),
        format!("/v1/conversations/{}/messages", group.id),
        "/v1/conversations/nonexistent-group/messages".to_string(),
        "/v1/conversations/bob:alice/messages".to_string(),
    ] {
        let (status, answer) = get(&base, &c.access_token, path.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    // A chat of hers with a user who does not exist: no conversation.
    let (status, answer) = get(
        &base,
        &c.access_token,
        "/v1/conversations/carol:nobody-here/messages".to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for query in ["limit=0", "limit=101", "limit=x", "before_seq=-1"] {
        let (status, _) = get(
            &base,
            &a.access_token,
            format!("/v1/conversations/alice:bob/messages?{query}"),
        )
        .await;
        assert_eq!(status, 400, "{query}");
    }
    let (status, _) = call(
        reqwest::Method::GET,
        format!("{base}/v1/conversations/alice:bob/messages"),
        "not a token",
        None,
    )
    .await;
    assert_eq!(status, 401);
}
