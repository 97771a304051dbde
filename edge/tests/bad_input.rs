//! Bad input gets an error frame with a stable code (or an HTTP status),
//! never a panic or a hang, and the session's other traffic still works.

mod common;

use bytes::Bytes;
use common::*;
use samvad_load::client::{Client, TransportKind};
use samvad_load::rest::{self, RestError};
use samvad_proto::v1::{client_frame, server_frame, Ping};

const ALL: [TransportKind; 3] = [TransportKind::Wt, TransportKind::Quic, TransportKind::Ws];

async fn ping_works(c: &mut Client) {
    c.send(client_frame::Kind::Ping(Ping { nonce: 77 }))
        .await
        .unwrap();
    let Some(server_frame::Kind::Pong(p)) = next_of(c, "pong").await.kind else {
        unreachable!()
    };
    assert_eq!(p.nonce, 77);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_unknown_frames() {
    let server = TestServer::start_with(&["--max-frame", "4096"]);
    let a = server.user("alice").await;
    server.user("bob").await;
    for kind in ALL {
        let mut c = server.connect(kind, &a).await;
        // Not protobuf: a field tag with wire type 7 does not exist.
        c.send_bytes(Bytes::from_static(&[0x0f, 0xff, 0xff]))
            .await
            .unwrap();
        assert_eq!(
            error_code(&c.recv_timeout(T).await.unwrap()),
            "malformed_frame",
            "{kind:?}"
        );
        // Truncated: a Send whose envelope claims more bytes than follow.
        c.send_bytes(Bytes::from_static(&[0x12, 0x20, 0x0a]))
            .await
            .unwrap();
        assert_eq!(
            error_code(&c.recv_timeout(T).await.unwrap()),
            "malformed_frame",
            "{kind:?}"
        );
        // Over the limit.
        c.send_bytes(Bytes::from(vec![0u8; 10_000])).await.unwrap();
        assert_eq!(
            error_code(&c.recv_timeout(T).await.unwrap()),
            "frame_too_large",
            "{kind:?}"
        );
        // A frame kind from the future (field 15): decodes, unknown kind.
        c.send_bytes(Bytes::from_static(&[0x7a, 0x00]))
            .await
            .unwrap();
        assert_eq!(
            error_code(&c.recv_timeout(T).await.unwrap()),
            "unknown_frame",
            "{kind:?}"
        );
        // The session is unharmed.
        ping_works(&mut c).await;
        send_chat(
            &mut c,
            &format!("ok-{kind:?}"),
            "alice",
            "bob",
            "still fine",
        )
        .await;
        next_of(&mut c, "accepted").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_length_prefix_is_answered_then_closed() {
    let server = TestServer::start();
    let a = server.user("alice").await;
    for kind in [TransportKind::Quic, TransportKind::Wt] {
        let mut c = server.connect(kind, &a).await;
        c.send_unframed(&[0xff; 11]).await.unwrap();
        // The session ends with a MALFORMED_FRAME error, then the stream
        // closes: the error is never lost to the close.
        let f = c.recv_timeout(T).await.expect("error frame before close");
        assert_eq!(error_code(&f), "malformed_frame", "{kind:?}");
        assert!(
            tokio::time::timeout(T, c.recv())
                .await
                .unwrap()
                .map_or(true, |f| f.is_none()),
            "closed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_before_hello_and_bad_tokens_are_refused() {
    let server = TestServer::start();
    server.user("bob").await;
    for kind in ALL {
        let mut c = Client::open(kind, &server.addr).await.unwrap();
        send_chat(&mut c, "early", "alice", "bob", "x").await;
        assert_eq!(
            error_code(&c.recv_timeout(T).await.unwrap()),
            "not_authenticated",
            "{kind:?}"
        );
        c.send(client_frame::Kind::Hello(samvad_proto::v1::Hello {
            token: "forged".into(),
            device: String::new(),
        }))
        .await
        .unwrap();
        let f = c.recv_timeout(T).await.expect("error frame before close");
        assert_eq!(error_code(&f), "bad_token", "{kind:?}");
        assert!(
            tokio::time::timeout(T, c.recv())
                .await
                .unwrap()
                .map_or(true, |f| f.is_none()),
            "closed after"
        );
        let err = Client::connect(kind, &server.addr, "a.b.c")
            .await
            .err()
            .unwrap();
        assert!(
            kind != TransportKind::Ws || err.to_string().contains("bad_token"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused() {
    let server = TestServer::start_with(&["--access-ttl", "1"]);
    let a = server.user("alice").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let err = Client::connect(TransportKind::Quic, &server.addr, &a.access_token)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("token_expired"), "{err}");
    // The refresh token still gets a fresh access token.
    let fresh = rest::refresh(&server.addr.http, &a.refresh_token)
        .await
        .unwrap();
    Client::connect(TransportKind::Quic, &server.addr, &fresh.access_token)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_sender_unknown_recipient_and_bad_envelopes() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    for kind in ALL {
        let mut c = server.connect(kind, &a).await;
        send_chat(&mut c, "s1", "bob", "bob", "pretending").await;
        assert_eq!(
            error_code(&next_of(&mut c, "error").await),
            "sender_mismatch"
        );
        send_chat(&mut c, "s2", "alice", "nobody", "x").await;
        assert_eq!(
            error_code(&next_of(&mut c, "error").await),
            "unknown_recipient"
        );
        send_chat(&mut c, "", "alice", "bob", "x").await;
        assert_eq!(
            error_code(&next_of(&mut c, "error").await),
            "invalid_envelope"
        );
        send_chat(&mut c, &"i".repeat(200), "alice", "bob", "x").await;
        assert_eq!(
            error_code(&next_of(&mut c, "error").await),
            "invalid_envelope"
        );
        c.send(client_frame::Kind::Hello(samvad_proto::v1::Hello {
            token: a.access_token.clone(),
            device: String::new(),
        }))
        .await
        .unwrap();
        assert_eq!(
            error_code(&next_of(&mut c, "error").await),
            "already_authenticated"
        );
        ping_works(&mut c).await;
    }
    // Nothing of that reached bob.
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    let (messages, _) = sync_all(&mut bob, 0).await;
    assert!(messages.is_empty(), "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_rate_limited() {
    let server = TestServer::start_with(&["--rate-limit", "5"]);
    let a = server.user("alice").await;
    server.user("bob").await;
    let mut c = server.connect(TransportKind::Quic, &a).await;
    for i in 0..30 {
        send_chat(&mut c, &format!("r{i}"), "alice", "bob", "x").await;
    }
    let mut limited = 0;
    let mut accepted = 0;
    while limited + accepted < 30 {
        let f = c.recv_timeout(T).await.unwrap();
        match kind_of(&f) {
            "accepted" => accepted += 1,
            "error" => {
                assert_eq!(error_code(&f), "rate_limited");
                limited += 1
            }
            _ => {}
        }
    }
    assert!(
        limited > 0 && accepted >= 10,
        "accepted {accepted}, limited {limited}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_text_mode_speaks_the_seed_envelope() {
    let server = TestServer::start();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let mut bob = Client::open(TransportKind::Ws, &server.addr).await.unwrap();
    bob.send_text(&format!(r#"{{"hello":{{"token":"{}"}}}}"#, b.access_token))
        .await
        .unwrap();
    assert_eq!(bob.recv_text(T).await.unwrap()["welcome"]["user"], "bob");
    bob.send_text(r#"{"sync":{"after_seq":0}}"#).await.unwrap();
    assert_eq!(bob.recv_text(T).await.unwrap()["sync_done"]["last_seq"], 0);

    let mut alice = Client::open(TransportKind::Ws, &server.addr).await.unwrap();
    alice
        .send_text(&format!(r#"{{"hello":{{"token":"{}"}}}}"#, a.access_token))
        .await
        .unwrap();
    alice.recv_text(T).await.unwrap();
    alice
        .send_text(r#"{"id":"j1","head":{"type":"chat","to":"bob","from":"alice","chatid":"","contentType":"text","action":"message"},"meta":{"hash":"","content_hash":"","generate_ts":1},"body":{"text":"hi from json","ts":2}}"#)
        .await
        .unwrap();
    assert_eq!(alice.recv_text(T).await.unwrap()["accepted"]["id"], "j1");
    let env = bob.recv_text(T).await.unwrap();
    assert_eq!(env["id"], "j1");
    assert_eq!(env["head"]["from"], "alice");
    assert_eq!(env["head"]["contentType"], "text");
    assert_eq!(env["body"]["text"], "hi from json");
    assert_eq!(env["seq"], 1);

    alice.send_text("{not json").await.unwrap();
    assert_eq!(
        alice.recv_text(T).await.unwrap()["error"]["code"],
        "malformed_frame"
    );
    alice.send_text(r#"{"teleport":{}}"#).await.unwrap();
    assert_eq!(
        alice.recv_text(T).await.unwrap()["error"]["code"],
        "unknown_frame"
    );
    alice
        .send_text(r#"{"id":"j2","head":{"to":"bob","from":"mallory"}}"#)
        .await
        .unwrap();
    assert_eq!(
        alice.recv_text(T).await.unwrap()["error"]["code"],
        "sender_mismatch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_bad_requests_with_codes() {
    let server = TestServer::start();
    let base = &server.addr.http;
    let code = |r: Result<rest::Tokens, RestError>| match r {
        Err(RestError::Refused { status, code }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };
    rest::register(base, "alice", "password-123").await.unwrap();
    assert_eq!(
        code(rest::register(base, "alice", "password-456").await),
        (409, "username_taken".into())
    );
    assert_eq!(
        code(rest::register(base, "Alice!", "password-456").await),
        (400, "invalid_username".into())
    );
    assert_eq!(
        code(rest::register(base, "carol", "short").await),
        (400, "weak_password".into())
    );
    assert_eq!(
        code(rest::login(base, "alice", "wrong-password").await),
        (401, "bad_credentials".into())
    );
    assert_eq!(
        code(rest::login(base, "nobody", "wrong-password").await),
        (401, "bad_credentials".into())
    );
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/login"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Refresh rotation: reusing a used refresh token revokes the family.
    let first = rest::login(base, "alice", "password-123").await.unwrap();
    let second = rest::refresh(base, &first.refresh_token).await.unwrap();
    assert_eq!(
        code(rest::refresh(base, &first.refresh_token).await),
        (401, "token_reused".into())
    );
    assert_eq!(
        code(rest::refresh(base, &second.refresh_token).await),
        (401, "token_revoked".into())
    );
    assert_eq!(
        code(rest::refresh(base, &first.access_token).await),
        (401, "bad_token".into())
    );
}
