//! Groups through the real binary: REST to create and read them, fan-out
//! of group messages to every member's sessions, and the refusals that
//! keep non-members out.

use crate::common::*;
use samvad_client::rest::{self, RestError};
use samvad_client::{group_message, TransportKind};
use samvad_proto::v1::{client_frame, server_frame, Send};

fn refused_with(result: Result<impl std::fmt::Debug, RestError>) -> (u16, String) {
    match result {
        Err(RestError::Refused { status, code }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn send_group(c: &mut samvad_client::Client, id: &str, from: &str, group: &str) {
    c.send(client_frame::Kind::Send(Send {
        envelope: Some(group_message(id, from, group, &format!("text of {id}"))),
    }))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_reaches_every_other_member_on_every_transport() {
    let server = TestServer::start();
    let (a, b, c) = server.alice_bob_carol().await;
    let group = rest::create_group(
        &server.addr.http,
        &a.access_token,
        "friends",
        &["bob".into(), "carol".into(), "bob".into()],
    )
    .await
    .unwrap();
    let members: Vec<(&str, &str)> = group
        .members
        .iter()
        .map(|m| (m.user.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(
        members,
        [("alice", "creator"), ("bob", "member"), ("carol", "member")],
        "the caller is the creator; duplicates are dropped"
    );

    let mut bob = server.connect(TransportKind::Quic, &b).await;
    sync_all(&mut bob, 0).await;
    let mut carol = server.connect(TransportKind::Ws, &c).await;
    sync_all(&mut carol, 0).await;
    let mut alice = server.connect(TransportKind::Wt, &a).await;
    sync_all(&mut alice, 0).await;

    send_group(&mut alice, "g-1", "alice", &group.id).await;
    next_of(&mut alice, "accepted").await;
    for member in [&mut bob, &mut carol] {
        let env = next_user_message(member).await;
        let head = env.head.unwrap();
        assert_eq!(env.id, "g-1");
        assert_eq!(
            (head.from.as_str(), head.to.as_str()),
            ("alice", group.id.as_str())
        );
        assert_eq!(head.chatid, group.id, "the conversation is the group");
    }
    // Members reply; the sender of each message does not get it back.
    send_group(&mut bob, "g-2", "bob", &group.id).await;
    next_of(&mut bob, "accepted").await;
    for member in [&mut alice, &mut carol] {
        assert_eq!(next_user_message(member).await.id, "g-2");
    }
    // Carol's inbox holds the group's creation, then both messages, in
    // order, and nothing of her own.
    let mut carol_again = server.connect(TransportKind::Ws, &c).await;
    let (messages, _) = sync_all(&mut carol_again, 0).await;
    let ids: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids[0].starts_with("sys-"), "the creation event: {ids:?}");
    assert_eq!(ids[1..], ["g-1", "g-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_cannot_post_to_read_or_list_a_group() {
    let server = TestServer::start();
    let (a, b, eve) = (
        server.user("alice").await,
        server.user("bob").await,
        server.user("eve").await,
    );
    let http = &server.addr.http;
    let group = rest::create_group(http, &a.access_token, "private", &["bob".into()])
        .await
        .unwrap();

    // Posting: a clear error frame, and nothing reaches the members. Bob
    // first has the group's creation event (it may still be on its way
    // when he connects).
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    sync_expecting(&mut bob, 0, 1).await;
    let mut intruder = server.connect(TransportKind::Quic, &eve).await;
    send_group(&mut intruder, "x-1", "eve", &group.id).await;
    let refusal = next_of(&mut intruder, "error").await;
    assert_eq!(error_code(&refusal), "not_member");
    // Claiming to be a member does not help.
    send_group(&mut intruder, "x-2", "alice", &group.id).await;
    assert_eq!(
        error_code(&next_of(&mut intruder, "error").await),
        "sender_mismatch"
    );
    send_group(&mut intruder, "x-3", "eve", "gdoesnotexist").await;
    assert_eq!(
        error_code(&next_of(&mut intruder, "error").await),
        "unknown_recipient"
    );
    send_group(&mut intruder, "x-4", "eve", "../Bad Id").await;
    assert_eq!(
        error_code(&next_of(&mut intruder, "error").await),
        "invalid_envelope"
    );

    // Reading: a non-member sees no such group; no token, a forged token or
    // a header naming a user gets 401.
    assert_eq!(
        refused_with(rest::group(http, &eve.access_token, &group.id).await),
        (404, "not_found".into())
    );
    assert_eq!(
        rest::group(http, &b.access_token, &group.id)
            .await
            .unwrap()
            .name,
        "private"
    );
    let client = reqwest::Client::new();
    for (header, value) in [
        ("X-User", "alice"),
        ("Authorization", "Bearer not-a-token"),
        ("Cookie", "user=alice"),
    ] {
        let resp = client
            .get(format!("{http}/v1/groups/{}", group.id))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{header}: {value}");
    }

    // Listing: only my own groups.
    let list = |token: String| {
        let client = client.clone();
        let url = format!("{http}/v1/groups");
        async move {
            let v: serde_json::Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(b.access_token.clone()).await, vec![group.id.clone()]);
    assert!(list(eve.access_token.clone()).await.is_empty());

    // Bob got nothing from any of it: the first frame after all that is
    // the answer to his ping.
    bob.send(client_frame::Kind::Ping(Default::default()))
        .await
        .unwrap();
    assert_eq!(kind_of(&bob.recv_timeout(T).await.unwrap()), "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_group_checks_its_members_and_name() {
    let server = TestServer::start();
    let a = server.user("alice").await;
    let http = &server.addr.http;
    assert_eq!(
        refused_with(rest::create_group(http, &a.access_token, "g", &["nobody".into()]).await),
        (400, "unknown_user".into())
    );
    assert_eq!(
        refused_with(rest::create_group(http, &a.access_token, "  ", &[]).await),
        (400, "bad_request".into())
    );
    let too_many: Vec<String> = (0..1001).map(|i| format!("user{i}")).collect();
    assert_eq!(
        refused_with(rest::create_group(http, &a.access_token, "big", &too_many).await),
        (400, "too_many_members".into())
    );
    assert_eq!(
        refused_with(rest::create_group(http, "forged", "g", &[]).await),
        (401, "bad_token".into())
    );
    // Alone is allowed: a group of one, to add people later.
    let solo = rest::create_group(http, &a.access_token, "notes", &[])
        .await
        .unwrap();
    assert_eq!(solo.members.len(), 1);
}

/// The group events in `c`'s inbox after `after`, as (event, user) pairs.
/// The group event a delivered frame carries, if it is one.
fn event_of(frame: samvad_proto::v1::ServerFrame) -> Option<(u64, String, String)> {
    let server_frame::Kind::Deliver(d) = frame.kind? else {
        return None;
    };
    let env = d.envelope.unwrap();
    let head = env.head.unwrap();
    if head.content_type != "application/vnd.samvad.group-event+json" {
        return None;
    }
    assert!(head.from.is_empty(), "system messages have no sender");
    let v: serde_json::Value = serde_json::from_str(&env.body.unwrap().text).unwrap();
    Some((
        env.seq,
        v["event"].as_str().unwrap().to_string(),
        v["user"].as_str().unwrap_or("").to_string(),
    ))
}

async fn events(c: &mut samvad_client::Client, after: u64) -> (Vec<(String, String)>, u64) {
    let mut out = Vec::new();
    let mut last = after;
    c.sync(after, |frame| {
        if let Some((seq, event, user)) = event_of(frame) {
            last = last.max(seq);
            out.push((event, user));
        }
    })
    .await
    .unwrap();
    (out, last)
}

/// [`events`] from the start, then live ones until there are `n`: an
/// event announced a moment ago may still be on its way.
async fn events_expecting(c: &mut samvad_client::Client, n: usize) -> Vec<(String, String)> {
    let (mut out, _) = events(c, 0).await;
    while out.len() < n {
        if let Some((_, event, user)) = event_of(next_of(c, "deliver").await) {
            out.push((event, user));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_roles_and_removals_follow_the_rights_and_are_announced() {
    use reqwest::Method;
    let server = TestServer::start();
    let http = server.addr.http.clone();
    let (ann, bob, cat, dan) = (
        server.user("ann").await,
        server.user("bob").await,
        server.user("cat").await,
        server.user("dan").await,
    );
    let group = rest::create_group(&http, &ann.access_token, "crew", &["bob".into()])
        .await
        .unwrap();
    let g = |path: &str| format!("{http}/v1/groups/{}{path}", group.id);

    // A plain member can neither invite, remove, rename nor hand out rights.
    let (s, v) = call(
        Method::POST,
        g("/invites"),
        &bob.access_token,
        Some(serde_json::json!({"user": "cat"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("missing_right"))
    );
    let (s, _) = call(Method::DELETE, g("/members/ann"), &bob.access_token, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(
        Method::PUT,
        g("/members/bob"),
        &bob.access_token,
        Some(serde_json::json!({"role": "admin", "rights": ["add_members"]})),
    )
    .await;
    assert_eq!(s, 403, "no self-promotion");
    let (s, _) = call(
        Method::PATCH,
        g(""),
        &bob.access_token,
        Some(serde_json::json!({"name": "bob's"})),
    )
    .await;
    assert_eq!(s, 403);

    // Roles that cannot be handed out, or not in the form asked for.
    for bad in [
        serde_json::json!({"role": "creator"}),
        serde_json::json!({"role": "member", "rights": ["mute"]}),
        serde_json::json!({"role": "owner"}),
        serde_json::json!({"role": "admin", "rights": ["everything"]}),
    ] {
        let (s, _) = call(
            Method::PUT,
            g("/members/bob"),
            &ann.access_token,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, 400, "{bad}");
    }

    // The creator makes bob an admin who may add members.
    let (s, v) = call(
        Method::PUT,
        g("/members/bob"),
        &ann.access_token,
        Some(serde_json::json!({"role": "admin", "rights": ["add_members"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(
        Method::POST,
        g("/invites"),
        &bob.access_token,
        Some(serde_json::json!({"user": "cat"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        Method::POST,
        g("/invites"),
        &bob.access_token,
        Some(serde_json::json!({"user": "dan"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        Method::POST,
        g("/invites"),
        &bob.access_token,
        Some(serde_json::json!({"user": "nobody"})),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("unknown_user"))
    );
    // An invitee is not a member until accepting.
    let (s, _) = call(Method::GET, g(""), &cat.access_token, None).await;
    assert_eq!(s, 404);
    let (s, v) = call(Method::POST, g("/invites/accept"), &cat.access_token, None).await;
    assert_eq!(s, 200, "{v}");
    // Declined adds nobody, and a declined invite cannot be accepted.
    let (s, _) = call(Method::POST, g("/invites/decline"), &dan.access_token, None).await;
    assert_eq!(s, 204);
    let (s, v) = call(Method::POST, g("/invites/accept"), &dan.access_token, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "without an invite, the group does not exist for dan"
    );
    let current = rest::group(&http, &ann.access_token, &group.id)
        .await
        .unwrap();
    let members: Vec<&str> = current.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(members, ["ann", "bob", "cat"]);

    // bob (admin without remove_members) cannot remove cat; ann can. Nobody
    // removes the creator.
    let (s, _) = call(Method::DELETE, g("/members/cat"), &bob.access_token, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(Method::DELETE, g("/members/cat"), &ann.access_token, None).await;
    assert_eq!(s, 204);
    let (s, _) = call(Method::DELETE, g("/members/ann"), &ann.access_token, None).await;
    assert_eq!(s, 204, "the creator may leave; bob (the admin) takes over");
    let now = rest::group(&http, &bob.access_token, &group.id)
        .await
        .unwrap();
    assert_eq!(
        now.members
            .iter()
            .map(|m| (m.user.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        [("bob", "creator")]
    );

    // Every change was announced. bob saw them all in the group's
    // conversation; cat got her invite, her join and her removal; dan his
    // invite and his decline.
    let mut b = server.connect(TransportKind::Ws, &bob).await;
    let seen = events_expecting(&mut b, 8).await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "role_changed",
            "invited",
            "invited",
            "joined",
            "declined",
            "removed",
            "left"
        ]
    );
    // Her removal reaches her directly (she is no longer a member), so it
    // may overtake the group's own announcements.
    let mut c = server.connect(TransportKind::Ws, &cat).await;
    let mut seen = events_expecting(&mut c, 4).await;
    seen.sort();
    assert_eq!(
        seen,
        [
            ("declined".to_string(), "dan".to_string()),
            ("invited".to_string(), "cat".to_string()),
            ("joined".to_string(), "cat".to_string()),
            ("removed".to_string(), "cat".to_string()),
        ]
    );
    // Removed, cat can no longer post.
    c.send(client_frame::Kind::Send(Send {
        envelope: Some(group_message("late", "cat", &group.id, "still here?")),
    }))
    .await
    .unwrap();
    assert_eq!(error_code(&next_of(&mut c, "error").await), "not_member");
    let mut d = server.connect(TransportKind::Ws, &dan).await;
    let seen = events_expecting(&mut d, 2).await;
    assert_eq!(
        seen,
        [
            ("invited".to_string(), "dan".to_string()),
            ("declined".to_string(), "dan".to_string())
        ]
    );

    // Only the creator deletes; then the group is gone for everyone.
    let (s, _) = call(Method::DELETE, g(""), &cat.access_token, None).await;
    assert_eq!(s, 404, "an outsider cannot even see it");
    let (s, _) = call(Method::DELETE, g(""), &bob.access_token, None).await;
    assert_eq!(s, 204);
    let (s, _) = call(Method::GET, g(""), &bob.access_token, None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_by_similar_names_and_contacts_by_exact_ones() {
    let server = TestServer::start();
    let me = server.user("alexander").await;
    for name in ["alexandra", "sandra", "bob"] {
        server.user(name).await;
    }
    let http = &server.addr.http;
    let search = |q: &str, token: &str| {
        let url = format!("{http}/v1/users?q={q}");
        let token = token.to_string();
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, v) = search("alexnder", &me.access_token).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.first(),
        Some(&"alexander"),
        "a typo still finds it: {v}"
    );
    assert!(names.contains(&"alexandra"));
    assert!(!names.contains(&"bob"));
    // Not without logging in; not with an empty query.
    assert_eq!(search("alex", "forged").await.0, 401);
    assert_eq!(search("", &me.access_token).await.0, 400);
    assert_eq!(search(&"a".repeat(65), &me.access_token).await.0, 400);
    let (status, v) = call(
        reqwest::Method::GET,
        format!("{http}/v1/users"),
        &me.access_token,
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "no q: a JSON error"
    );

    let (status, v) = call(
        reqwest::Method::POST,
        format!("{http}/v1/contacts/match"),
        &me.access_token,
        Some(serde_json::json!({"usernames": ["bob", "nobody", "sandra", "bob", "NOT valid"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["users"], serde_json::json!(["bob", "sandra"]));
    let too_many: Vec<String> = (0..1001).map(|i| format!("user{i}")).collect();
    let (status, v) = call(
        reqwest::Method::POST,
        format!("{http}/v1/contacts/match"),
        &me.access_token,
        Some(serde_json::json!({ "usernames": too_many })),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("too_many_contacts"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_subscribes_to_a_channel_and_only_its_admins_post() {
    use reqwest::Method;
    let server = TestServer::start();
    let http = server.addr.http.clone();
    let (ann, bob, eve, cat) = (
        server.user("ann").await,
        server.user("bob").await,
        server.user("eve").await,
        server.user("cat").await,
    );
    let (s, channel) = call(
        Method::POST,
        format!("{http}/v1/groups"),
        &ann.access_token,
        Some(serde_json::json!({"name": "news", "channel": true})),
    )
    .await;
    assert_eq!(s, 201);
    let id = channel["id"].as_str().unwrap().to_string();
    assert_eq!(channel["channel"], true);
    let g = |path: &str| format!("{http}/v1/groups/{id}{path}");
    // Public: anyone logged in may look, then subscribe.
    let (s, _) = call(Method::GET, g(""), &bob.access_token, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(Method::POST, g("/subscribe"), &bob.access_token, None).await;
    assert_eq!(s, 200);
    let (s, v) = call(Method::POST, g("/subscribe"), &bob.access_token, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("already_member"))
    );
    // A group is not a channel: no subscribing without an invite.
    let private = rest::create_group(&http, &ann.access_token, "private", &[])
        .await
        .unwrap();
    let (s, _) = call(
        Method::POST,
        format!("{http}/v1/groups/{}/subscribe", private.id),
        &cat.access_token,
        None,
    )
    .await;
    assert_eq!(s, 404, "a group stays invisible to outsiders");

    let post = |from: &str, kind: samvad_proto::v1::HeadType, id_: &str| {
        let mut env = group_message(id_, from, &id, "news!");
        env.head.as_mut().unwrap().r#type = kind as i32;
        client_frame::Kind::Send(Send {
            envelope: Some(env),
        })
    };
    use samvad_proto::v1::HeadType;
    let mut a = server.connect(TransportKind::Ws, &ann).await;
    let mut b = server.connect(TransportKind::Quic, &bob).await;
    let mut e = server.connect(TransportKind::Ws, &eve).await;
    for s in [&mut a, &mut b, &mut e] {
        sync_all(s, 0).await;
    }
    a.send(post("ann", HeadType::Channel, "n1")).await.unwrap();
    next_of(&mut a, "accepted").await;
    assert_eq!(next_user_message(&mut b).await.id, "n1");
    b.send(post("bob", HeadType::Channel, "b1")).await.unwrap();
    assert_eq!(error_code(&next_of(&mut b, "error").await), "forbidden");
    b.send(post("bob", HeadType::Group, "b2")).await.unwrap();
    assert_eq!(
        error_code(&next_of(&mut b, "error").await),
        "invalid_envelope"
    );
    e.send(post("eve", HeadType::Channel, "e1")).await.unwrap();
    assert_eq!(error_code(&next_of(&mut e, "error").await), "not_member");

    // Subscriptions are not announced to everyone: ann's inbox has only
    // the creation of her two conversations.
    let (s, _) = call(Method::POST, g("/unsubscribe"), &bob.access_token, None).await;
    assert_eq!(s, 204);
    let mut a2 = server.connect(TransportKind::Ws, &ann).await;
    let (seen, _) = events(&mut a2, 0).await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds, ["created", "created"]);
    let mut b2 = server.connect(TransportKind::Ws, &bob).await;
    let (seen, _) = events(&mut b2, 0).await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["subscribed", "left"],
        "the subscriber hears of his own"
    );
}

/// The seed's in-envelope actions: an envelope with action SUBSCRIBE or
/// UNSUBSCRIBE to a channel changes the subscription as the REST calls do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_unsubscribe_ride_the_session_as_envelope_actions() {
    use samvad_proto::v1::{Action as EnvAction, HeadType};
    let server = TestServer::start();
    let http = server.addr.http.clone();
    let (ann, bob) = (server.user("ann").await, server.user("bob").await);
    let (_, channel) = call(
        reqwest::Method::POST,
        format!("{http}/v1/groups"),
        &ann.access_token,
        Some(serde_json::json!({"name": "news", "channel": true})),
    )
    .await;
    let id = channel["id"].as_str().unwrap().to_string();
    let private = rest::create_group(&http, &ann.access_token, "private", &[])
        .await
        .unwrap();
    let action = |msg: &str, to: &str, kind: HeadType, action: EnvAction, text: &str| {
        let mut env = group_message(msg, "bob", to, text);
        let head = env.head.as_mut().unwrap();
        head.r#type = kind as i32;
        head.action = action as i32;
        client_frame::Kind::Send(Send {
            envelope: Some(env),
        })
    };
    let mut a = server.connect(TransportKind::Ws, &ann).await;
    let mut b = server.connect(TransportKind::Wt, &bob).await;
    sync_all(&mut a, 0).await;
    sync_all(&mut b, 0).await;

    b.send(action(
        "s1",
        &id,
        HeadType::Channel,
        EnvAction::Subscribe,
        "",
    ))
    .await
    .unwrap();
    let Some(server_frame::Kind::Accepted(acc)) = next_of(&mut b, "accepted").await.kind else {
        unreachable!()
    };
    assert_eq!(acc.id, "s1");
    let group = rest::group(&http, &bob.access_token, &id).await.unwrap();
    assert!(group.members.iter().any(|m| m.user == "bob"));
    // Subscribed: the channel's posts reach him.
    let mut post = group_message("n1", "ann", &id, "news!");
    post.head.as_mut().unwrap().r#type = HeadType::Channel as i32;
    a.send(client_frame::Kind::Send(Send {
        envelope: Some(post),
    }))
    .await
    .unwrap();
    assert_eq!(next_user_message(&mut b).await.id, "n1");

    // Subscribing twice is fine; a group, a channel that is not there, or
    // an action with content is refused.
    b.send(action(
        "s2",
        &id,
        HeadType::Channel,
        EnvAction::Subscribe,
        "",
    ))
    .await
    .unwrap();
    next_of(&mut b, "accepted").await;
    for (msg, to, kind, text, code) in [
        (
            "s3",
            private.id.as_str(),
            HeadType::Channel,
            "",
            "unknown_recipient",
        ),
        (
            "s4",
            "no-such-channel",
            HeadType::Channel,
            "",
            "unknown_recipient",
        ),
        (
            "s5",
            private.id.as_str(),
            HeadType::Group,
            "",
            "invalid_envelope",
        ),
        (
            "s6",
            id.as_str(),
            HeadType::Channel,
            "hello",
            "invalid_envelope",
        ),
    ] {
        b.send(action(msg, to, kind, EnvAction::Subscribe, text))
            .await
            .unwrap();
        let err = next_of(&mut b, "error").await;
        assert_eq!(error_code(&err), code, "{msg}");
    }
    let outsider = rest::group(&http, &bob.access_token, &private.id).await;
    assert!(outsider.is_err(), "still not in the private group");

    b.send(action(
        "u1",
        &id,
        HeadType::Channel,
        EnvAction::Unsubscribe,
        "",
    ))
    .await
    .unwrap();
    next_of(&mut b, "accepted").await;
    let group = rest::group(&http, &bob.access_token, &id).await.unwrap();
    assert!(!group.members.iter().any(|m| m.user == "bob"));
}
