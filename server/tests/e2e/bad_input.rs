//! Bad input gets an error frame with a stable code (or an HTTP status),
//! never a panic or a hang, and the session's other traffic still works.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use samvad_client::rest::{self, RestError};
use samvad_client::{Client, TransportKind};
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

/// A session that sends large messages faster than its byte allowance is
/// told `rate_limited` for the excess; what was accepted reaches the
/// recipient, what was refused does not (the client retries it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_rate_limit_answers_rate_limited() {
    let server = TestServer::start_with(&["--rate-limit-bytes", "100000"]);
    let a = server.user("alice").await;
    let b = server.user("bob").await;
    let mut c = server.connect(TransportKind::Ws, &a).await;
    // 20 × 30 KB at once against a burst of 200 KB.
    let text = "y".repeat(30_000);
    for i in 0..20 {
        send_chat(&mut c, &format!("big{i:02}"), "alice", "bob", &text).await;
    }
    let mut accepted = Vec::new();
    let mut limited = 0;
    while limited + accepted.len() < 20 {
        let f = c.recv_timeout(T).await.unwrap();
        match &f.kind {
            Some(server_frame::Kind::Accepted(a)) => accepted.push(a.id.clone()),
            Some(server_frame::Kind::Error(_)) => {
                assert_eq!(error_code(&f), "rate_limited");
                limited += 1
            }
            _ => {}
        }
    }
    assert!(
        limited > 0 && accepted.len() >= 6,
        "accepted {accepted:?}, limited {limited}"
    );
    accepted.sort();
    let mut bob = server.connect(TransportKind::Ws, &b).await;
    let (messages, _) = sync_all(&mut bob, 0).await;
    let mut got: Vec<String> = messages.into_iter().map(|m| m.1).collect();
    got.sort();
    assert_eq!(got, accepted);
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
    assert_eq!(env["_v"], 2.0);
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
    let refused = alice.recv_text(T).await.unwrap();
    assert_eq!(refused["error"]["code"], "sender_mismatch");
    assert_eq!(refused["error"]["ref"], "j2");
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
    // A body over the limit: 413 with the JSON error, like every refusal.
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/login"))
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");

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

/// Alice's session sends to Bob's, which receives it: refusals at the door
/// left the sessions inside unharmed.
async fn still_chatting(a: &mut Client, b: &mut Client) {
    send_chat(a, "m1", "alice", "bob", "still here").await;
    next_of(a, "accepted").await;
    assert_eq!(next_user_message(b).await.id, "m1");
}

/// A WebSocket upgrade request, answered without upgrading when refused.
async fn ws_upgrade(server: &TestServer) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/ws", server.addr.http))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap()
}

/// Whether connecting failed because the server refused the QUIC
/// connection (`CONNECTION_REFUSED`, before any handshake).
fn quic_refused(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<quinn::ConnectionError>(),
            Some(quinn::ConnectionError::ConnectionClosed(c))
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
        )
    })
}

/// A refusal to come back later: `status`, a `Retry-After` of at least a
/// second, and the JSON error of every refusal with `code`.
async fn assert_refused(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
}

/// The refusal of a WebSocket upgrade.
async fn assert_ws_refused(server: &TestServer, status: u16, code: &str) {
    assert_refused(ws_upgrade(server).await, status, code).await;
}

/// Past `--max-sessions` new sessions are refused at the door on every
/// transport (WebSocket: 503 with Retry-After; QUIC and WebTransport:
/// CONNECTION_REFUSED); the sessions already in keep chatting, and a place
/// that frees is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_limit_are_refused_and_the_others_unharmed() {
    let server = TestServer::start_with(&["--max-sessions", "2"]);
    let (alice, bob, carol) = server.alice_bob_carol().await;
    let mut a = server.connect(TransportKind::Ws, &alice).await;
    let mut b = server.connect(TransportKind::Quic, &bob).await;
    sync_all(&mut a, 0).await;
    sync_all(&mut b, 0).await;

    assert_ws_refused(&server, 503, "sessions_full").await;
    let quic = Client::connect(TransportKind::Quic, &server.addr, &carol.access_token).await;
    assert!(quic_refused(quic.as_ref().err().expect("refused")));
    let wt = Client::connect(TransportKind::Wt, &server.addr, &carol.access_token).await;
    assert!(wt.is_err(), "a WebTransport session past the limit");

    still_chatting(&mut a, &mut b).await;

    // Bob leaves; his place is taken again once his session has ended.
    b.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Client::connect(TransportKind::Quic, &server.addr, &carol.access_token).await {
            Ok(_) => break,
            Err(e) if quic_refused(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("the freed place was not taken: {e:#}"),
        }
    }
}

/// `--connects-per-minute`: past its allowance an address is refused
/// (WebSocket: 429 with Retry-After; QUIC: CONNECTION_REFUSED) while the
/// sessions it holds go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_connects_too_often_is_held_back() {
    let server = TestServer::start_with(&["--connects-per-minute", "2"]);
    let (alice, bob, _) = server.alice_bob_carol().await;
    let mut a = server.connect(TransportKind::Ws, &alice).await;
    let mut b = server.connect(TransportKind::Quic, &bob).await;
    assert_ws_refused(&server, 429, "address_rate").await;
    let quic = Client::connect(TransportKind::Quic, &server.addr, &bob.access_token).await;
    assert!(quic_refused(quic.as_ref().err().expect("refused")));
    // REST is not a connection to a session: it is not held back.
    assert!(server.user("dave").await.access_token.len() > 10);
    sync_all(&mut a, 0).await;
    sync_all(&mut b, 0).await;
    still_chatting(&mut a, &mut b).await;
}

/// `--max-handshakes`: a client that starts a QUIC handshake and never
/// finishes it holds a handshake place; while it does, new QUIC
/// connections are refused, and WebSocket sessions are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_are_bounded() {
    let server = TestServer::start_with(&["--max-handshakes", "1"]);
    let (alice, bob, _) = server.alice_bob_carol().await;
    // A path that carries the client's first packet (its Initial) to the
    // server and nothing else: the handshake can never finish.
    let client_side = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_side = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut stalled = server.addr.clone();
    stalled.quic = client_side.local_addr().unwrap();
    let upstream = server.addr.quic;
    let (answered, server_answered) = tokio::sync::oneshot::channel();
    let forwarded = tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        let (n, _) = client_side.recv_from(&mut buf).await.unwrap();
        server_side.send_to(&buf[..n], upstream).await.unwrap();
        // The server's first flight: the handshake is under way.
        server_side.recv_from(&mut buf).await.unwrap();
        let _ = answered.send(());
        // Hold both sockets, and drop whatever else comes.
        let mut other = vec![0; 65_536];
        loop {
            tokio::select! {
                _ = client_side.recv_from(&mut buf) => {}
                _ = server_side.recv_from(&mut other) => {}
            }
        }
    });
    let half_open = tokio::spawn(async move {
        let _ = Client::connect(TransportKind::Quic, &stalled, &alice.access_token).await;
    });
    server_answered.await.unwrap();
    let refused = Client::connect(TransportKind::Quic, &server.addr, &bob.access_token).await;
    assert!(
        quic_refused(
            refused
                .as_ref()
                .err()
                .expect("a second handshake is refused")
        ),
        "{:?}",
        refused.err()
    );
    let mut ws = server.connect(TransportKind::Ws, &bob).await;
    sync_all(&mut ws, 0).await;
    half_open.abort();
    forwarded.abort();
}

/// `--handshakes-at-once`: past that many QUIC handshakes at work, an
/// admitted connection waits in line, is not refused, and gets its turn
/// when a handshake at work finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_past_the_turns_wait_in_line() {
    let server = TestServer::start_with(&["--handshakes-at-once", "1"]);
    let (alice, bob, _) = server.alice_bob_carol().await;
    // Alice's handshake holds the only turn: it is under way on the server
    // and held on its path.
    let mut path = crate::common::lossy::HeldUdpPath::start(server.addr.quic).await;
    let mut through_path = server.addr.clone();
    through_path.quic = path.addr;
    let alice_token = alice.access_token.clone();
    let alice_up = tokio::spawn(async move {
        Client::connect(TransportKind::Quic, &through_path, &alice_token).await
    });
    path.answered().await;
    let addr = server.addr.clone();
    let bob_token = bob.access_token.clone();
    let bob_up =
        tokio::spawn(async move { Client::connect(TransportKind::Quic, &addr, &bob_token).await });
    // Bob is in line...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&server, "samvad_quic_handshakes_waiting").await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second handshake never waited in line"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!bob_up.is_finished(), "a handshake in line went ahead");
    // ... and comes through once Alice's handshake is done.
    path.open();
    let (mut a, _) = alice_up
        .await
        .unwrap()
        .expect("the held handshake finishes");
    let (mut b, _) = bob_up
        .await
        .unwrap()
        .expect("the waiting handshake gets its turn");
    assert_eq!(metric(&server, "samvad_quic_handshakes_waiting").await, 0);
    sync_all(&mut a, 0).await;
    sync_all(&mut b, 0).await;
    still_chatting(&mut a, &mut b).await;
}

/// `POST path` with a username and password, as a client sends it.
async fn credentials(
    server: &TestServer,
    path: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", server.addr.http))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

/// A 429 `too_many_attempts`.
async fn assert_throttled(response: reqwest::Response) {
    assert_refused(response, 429, "too_many_attempts").await;
}

/// Guessing passwords: past its allowance of failed logins an account is
/// answered 429 with Retry-After before any password is checked (even the
/// right one, until the allowance refills), while other accounts log in;
/// an address past its own allowance is held back whatever the account;
/// registrations per address likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_per_account_and_per_address() {
    let server = TestServer::start_with(&[
        "--login-failures-per-account",
        "3",
        "--login-failures-per-address",
        "5",
        "--registrations-per-address",
        "4",
    ]);
    server.alice_bob_carol().await;
    for _ in 0..3 {
        let wrong = credentials(&server, "/v1/login", "alice", "guess-guess").await;
        assert_eq!(wrong.status().as_u16(), 401);
    }
    assert_throttled(credentials(&server, "/v1/login", "alice", "password-123").await).await;
    let bob = credentials(&server, "/v1/login", "bob", "password-123").await;
    assert_eq!(
        bob.status().as_u16(),
        200,
        "another account is not held back"
    );
    for _ in 0..2 {
        let wrong = credentials(&server, "/v1/login", "nobody", "guess-guess").await;
        assert_eq!(wrong.status().as_u16(), 401);
    }
    // Five failures from this address in all: its logins wait.
    assert_throttled(credentials(&server, "/v1/login", "carol", "password-123").await).await;
    let dave = credentials(&server, "/v1/register", "dave", "password-123").await;
    assert_eq!(dave.status().as_u16(), 201);
    assert_throttled(credentials(&server, "/v1/register", "erin", "password-123").await).await;
}

/// At the open files limit: WebSocket sessions (a file each) are refused
/// with 503 `websockets_full` while a reserve of descriptors is kept, so
/// the process never fails to accept; QUIC sessions (sharing one socket)
/// and REST go on, and a WebSocket place that frees is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_files_limit_websockets_are_refused_and_the_rest_goes_on() {
    // 256 files: 192 WebSocket sessions, 64 kept for everything else.
    let server = TestServer::start_with_open_files(256, &[]);
    let (alice, bob, _) = server.alice_bob_carol().await;
    let mut held = Vec::new();
    for _ in 0..192 {
        held.push(server.connect(TransportKind::Ws, &alice).await);
    }
    assert_ws_refused(&server, 503, "websockets_full").await;
    let mut b = server.connect(TransportKind::Quic, &bob).await;
    sync_all(&mut b, 0).await;
    assert!(
        server.user("dave").await.access_token.len() > 10,
        "REST answers"
    );
    let mut a = held.pop().unwrap();
    sync_all(&mut a, 0).await;
    still_chatting(&mut a, &mut b).await;
    // One WebSocket leaves; its place is taken again once it has ended.
    held.pop().unwrap().close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ws_upgrade(&server).await.status().as_u16() == 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "the freed place was not taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A WebTransport session asked for at another path than `/wt` is refused
/// with 404 (the HTTP/3 handshake itself succeeds), and the endpoint goes
/// on serving `/wt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webtransport_at_another_path_is_not_found() {
    let server = TestServer::start();
    let alice = server.user("alice").await;
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(
            server.addr.cert_sha256,
        )])
        .build();
    let endpoint = wtransport::Endpoint::client(config).unwrap();
    let refused = endpoint
        .connect(format!("https://{}/elsewhere", server.addr.quic))
        .await;
    assert!(
        matches!(
            refused,
            Err(wtransport::error::ConnectingError::SessionRejected)
        ),
        "{:?}",
        refused.err()
    );
    let mut c = server.connect(TransportKind::Wt, &alice).await;
    sync_all(&mut c, 0).await;
}

/// How many sessions ended because their writes stalled (`/metrics`).
async fn write_stalls(server: &TestServer) -> u64 {
    metrics(server)
        .await
        .lines()
        .filter(|l| l.contains("error_frames") && l.contains("code=\"write_stalled\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A client that stops reading: its session's writes back up until one
/// cannot finish within `--write-stall-secs`, and the server closes it with
/// that reason; other sessions go on, and nothing sent to it is lost (it
/// resyncs on its next session).
async fn a_client_that_stops_reading_is_cut_off(kind: TransportKind) {
    const N: usize = 600;
    // No byte allowance: this one sender must outrun the socket buffers.
    let server = TestServer::start_with(&["--write-stall-secs", "2", "--rate-limit-bytes", "0"]);
    let (alice, bob, carol) = server.alice_bob_carol().await;
    let mut stalled = server.connect(kind, &bob).await;
    sync_all(&mut stalled, 0).await;
    let mut a = server.connect(kind, &alice).await;
    sync_all(&mut a, 0).await;
    let mut c = server.connect(kind, &carol).await;
    sync_all(&mut c, 0).await;

    // 600 × 30 KB to a reader that reads nothing: far past the socket
    // buffers and flow-control windows on the way.
    let text = "x".repeat(30_000);
    for i in 0..N {
        send_chat(&mut a, &format!("s{i:04}"), "alice", "bob", &text).await;
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    let mut accepted = 0;
    while accepted < N {
        if matches!(
            a.recv_timeout(T).await.unwrap().kind,
            Some(server_frame::Kind::Accepted(_))
        ) {
            accepted += 1;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while write_stalls(&server).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled session was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Carol and Alice chat on.
    send_chat(&mut a, "to-carol", "alice", "carol", "are you there?").await;
    assert_eq!(next_user_message(&mut c).await.id, "to-carol");

    // The stalled client reads again: what was in flight, then the end.
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(_)) = stalled.recv().await {}
    })
    .await;
    assert!(end.is_ok(), "the server did not close the stalled session");
    // Its next session gets everything, once, in order.
    let mut again = server.connect(kind, &bob).await;
    let (messages, _) = sync_all(&mut again, 0).await;
    let ids: Vec<String> = messages.into_iter().map(|m| m.1).collect();
    assert_eq!(ids, (0..N).map(|i| format!("s{i:04}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_stops_reading_is_cut_off() {
    a_client_that_stops_reading_is_cut_off(TransportKind::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_client_that_stops_reading_is_cut_off() {
    a_client_that_stops_reading_is_cut_off(TransportKind::Quic).await;
}

/// Clients that open a session and then say nothing: a QUIC connection
/// with a stream it never writes on (quinn's client sends nothing until the
/// first byte, so the server sees no stream), and a WebSocket that never
/// says hello. Both are closed by the server after the hello timeout,
/// whatever keep-alives they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_never_say_hello_are_closed() {
    let server = TestServer::start();
    let mut silent = Vec::new();
    for kind in [TransportKind::Quic, TransportKind::Ws, TransportKind::Wt] {
        silent.push(Client::open(kind, &server.addr).await.unwrap());
    }
    for mut client in silent {
        let kind = client.kind;
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(_)) = client.recv().await {}
        })
        .await;
        assert!(closed.is_ok(), "{kind:?}: a silent session was not closed");
    }
}

/// Half-open requests: connections that send part of a WebSocket upgrade's
/// headers (plain HTTP) or no TLS handshake at all (HTTPS), and then
/// nothing. Sessions go on beside them, and the server closes every one
/// within the header timeout (10 s, spread to 15) instead of holding its
/// file for ever, with a reset: it never answered them, so there is
/// nothing to deliver and no TIME_WAIT to keep (edge `unanswered.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_are_closed_and_sessions_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const HALF_OPEN: usize = 400;
    let server = TestServer::start();
    let (alice, bob, _) = server.alice_bob_carol().await;
    let http: std::net::SocketAddr = server
        .addr
        .http
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let ready = samvad_testkit::samvad::wait_ready(&server.dir.join("ready.json"), "samvad serve");
    let https: std::net::SocketAddr = ready["https"].as_str().unwrap().parse().unwrap();
    let started = std::time::Instant::now();
    let mut open = Vec::with_capacity(HALF_OPEN);
    for i in 0..HALF_OPEN {
        let to = if i % 4 == 0 { https } else { http };
        let mut tcp = tokio::net::TcpStream::connect(to).await.unwrap();
        if to == http {
            tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
                .await
                .unwrap();
        }
        open.push(tcp);
    }
    let mut a = server.connect(TransportKind::Ws, &alice).await;
    let mut b = server.connect(TransportKind::Quic, &bob).await;
    sync_all(&mut a, 0).await;
    sync_all(&mut b, 0).await;
    still_chatting(&mut a, &mut b).await;

    let closed = futures_util::future::join_all(open.into_iter().map(|mut tcp| async move {
        let mut buf = [0u8; 512];
        tokio::time::timeout(Duration::from_secs(25), tcp.read(&mut buf))
            .await
            .ok()
            .map(|read| read.map_err(|e| e.kind()))
    }))
    .await;
    let held = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        held,
        0,
        "{held} half-open connections still held after {:?}",
        started.elapsed()
    );
    let not_reset: Vec<_> = closed
        .iter()
        .flatten()
        .filter(|read| **read != Err(std::io::ErrorKind::ConnectionReset))
        .collect();
    assert!(not_reset.is_empty(), "not reset: {not_reset:?}");
}
