//! Push through the real binary: a user with no live session gets a Web
//! Push (RFC 8030) that a local push endpoint checks like a browser's push
//! service would (VAPID JWT, RFC 8291 decryption with the browser's keys),
//! and a signed webhook call; a user with a session gets neither; gone
//! subscriptions are forgotten; bad subscriptions are refused.

use std::time::Duration;

use crate::common::push_service::*;
use crate::common::*;
use hmac::Mac;
use reqwest::Method;
use samvad_client::TransportKind;
use serde_json::{json, Value};

const WEBHOOK_SECRET: &str = "webhook-secret";

async fn start(endpoint: &str) -> TestServer {
    TestServer::start_with(&[
        "--push-allow-http",
        "--push-endpoint-hosts",
        "127.0.0.1",
        "--push-webhook",
        &format!("{endpoint}/hook"),
        "--push-webhook-secret",
        WEBHOOK_SECRET,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_gets_a_web_push_and_a_signed_webhook_call() {
    let (endpoint, mut pushes) = push_endpoint().await;
    let server = start(&endpoint).await;
    let base = server.addr.http.clone();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let browser = Browser::new();
    let (status, answer) = call(
        Method::POST,
        format!("{base}/v1/push/subscriptions"),
        &b.access_token,
        Some(browser.subscription(&format!("{endpoint}/wp/bob"))),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let vapid = vapid_public(&base).await;

    let mut alice = server.connect(TransportKind::Ws, &a).await;
    sync_all(&mut alice, 0).await;
    send_chat(&mut alice, "m1", "alice", "bob", "see you at 8").await;
    next_of(&mut alice, "accepted").await;

    // The JWT's audience is the push service's origin. Real ones are on
    // the default port, and web-push-native leaves the port out.
    let audience = "http://127.0.0.1";
    let push = next_at(&mut pushes, "/wp/bob").await;
    let n = browser.open(&push, &vapid, audience);
    assert_eq!(n["user"], "bob");
    assert_eq!(n["from"], "alice");
    assert_eq!(n["chatid"], "alice:bob");
    assert_eq!(n["id"], "m1");
    assert_eq!(n["preview"], "see you at 8");

    // The webhook call, checked the way its receiver must.
    let hook = next_at(&mut pushes, "/hook").await;
    let timestamp = hook.headers["x-samvad-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&hook.body);
    assert_eq!(
        hook.headers["x-samvad-signature"].to_str().unwrap(),
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    );
    let hooked: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(hooked, n, "the same notification");

    // Online, Bob gets the message live and no push; offline again, he
    // gets pushes again. Pushes for one user keep their order, so the next
    // one being m3 shows m2 was never pushed.
    let mut bob = server.connect(TransportKind::Quic, &b).await;
    sync_all(&mut bob, 0).await;
    send_chat(&mut alice, "m2", "alice", "bob", "online now").await;
    assert_eq!(next_user_message(&mut bob).await.id, "m2");
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_chat(&mut alice, "m3", "alice", "bob", "gone again").await;
    let push = next_at(&mut pushes, "/wp/bob").await;
    assert_eq!(browser.open(&push, &vapid, audience)["id"], "m3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_subscriptions_are_forgotten_and_bad_ones_refused() {
    let (endpoint, mut pushes) = push_endpoint().await;
    let server = start(&endpoint).await;
    let base = server.addr.http.clone();
    let (a, b) = (server.user("alice").await, server.user("bob").await);
    let browser = Browser::new();
    let subscriptions = format!("{base}/v1/push/subscriptions");
    let token = b.access_token.as_str();

    for (bad, code) in [
        (
            browser.subscription("https://evil.example/steal"),
            "bad_endpoint",
        ),
        (
            browser.subscription("http://10.0.0.1/internal"),
            "bad_endpoint",
        ),
        (browser.subscription("file:///etc/passwd"), "bad_endpoint"),
        (
            json!({"endpoint": format!("{endpoint}/wp/x"), "keys": {"p256dh": "abc", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}),
            "bad_keys",
        ),
        (
            json!({"endpoint": format!("{endpoint}/wp/x"), "keys": {"p256dh": browser.subscription("")["keys"]["p256dh"], "auth": "AAAA"}}),
            "bad_keys",
        ),
        (
            json!({"endpoint": format!("{endpoint}/wp/x")}),
            "bad_request",
        ),
    ] {
        let (status, answer) = call(
            Method::POST,
            subscriptions.clone(),
            token,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{bad}"
        );
    }
    let (status, answer) = call(
        Method::DELETE,
        subscriptions.clone(),
        token,
        Some(json!({"endpoint": "https://fcm.googleapis.com/nope"})),
    )
    .await;
    assert_eq!(status, 404, "{answer}");

    // At most 20 devices: Alice's 21st subscription is refused.
    for n in 0..20 {
        let (status, _) = call(
            Method::POST,
            subscriptions.clone(),
            &a.access_token,
            Some(browser.subscription(&format!("{endpoint}/wp/alice/{n}"))),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, answer) = call(
        Method::POST,
        subscriptions.clone(),
        &a.access_token,
        Some(browser.subscription(&format!("{endpoint}/wp/alice/20"))),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("too_many_subscriptions"))
    );

    let gone = format!("{endpoint}/gone/bob");
    let (status, _) = call(
        Method::POST,
        subscriptions.clone(),
        token,
        Some(browser.subscription(&gone)),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        Method::POST,
        subscriptions.clone(),
        token,
        Some(browser.subscription(&gone)),
    )
    .await;
    assert_eq!(status, 200, "the same endpoint again replaces it");
    let (_, listed) = call(Method::GET, subscriptions.clone(), token, None).await;
    assert_eq!(listed, json!({"endpoints": [gone]}));

    let mut alice = server.connect(TransportKind::Ws, &a).await;
    sync_all(&mut alice, 0).await;
    send_chat(&mut alice, "m1", "alice", "bob", "anyone there?").await;
    next_at(&mut pushes, "/gone/bob").await;
    let forgotten = async {
        loop {
            let (_, listed) = call(Method::GET, subscriptions.clone(), token, None).await;
            if listed == json!({"endpoints": []}) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), forgotten)
        .await
        .expect("a 410 from the push service removes the subscription");
}
