//! Push through the real binary: a user with no live session gets a Web
//! Push (RFC 8030) that a local push endpoint checks like a browser's push
//! service would (VAPID JWT, RFC 8291 decryption with the browser's keys),
//! and a signed webhook call; a user with a session gets neither; gone
//! subscriptions are forgotten; bad subscriptions are refused.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use hmac::Mac;
use reqwest::Method;
use samvad_load::client::TransportKind;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use web_push_native::jwt_simple::prelude::*;
use web_push_native::p256;

/// One request the endpoint received.
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A local push service and webhook receiver: records every request;
/// paths under `/gone/` answer 410 as a push service does for a dropped
/// subscription.
async fn push_endpoint() -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let tx = tx.clone();
        async move {
            let gone = uri.path().starts_with("/gone/");
            let _ = tx.send(Received {
                path: uri.path().to_string(),
                headers,
                body,
            });
            if gone {
                StatusCode::GONE
            } else {
                StatusCode::CREATED
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

/// A browser's side of a subscription: its key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        Browser {
            secret: p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap(),
            auth: rand::random(),
        }
    }

    fn subscription(&self, endpoint: &str) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let public = self.secret.public_key().to_encoded_point(false);
        json!({
            "endpoint": endpoint,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(public.as_bytes()),
                "auth": URL_SAFE_NO_PAD.encode(self.auth),
            }
        })
    }

    /// Checks a push as a push service and a browser would, and returns
    /// the decrypted notification.
    fn open(&self, push: &Received, vapid_public: &str, audience: &str) -> Value {
        assert_eq!(push.headers["content-encoding"], "aes128gcm");
        assert!(push.headers.contains_key("ttl"));
        // `Authorization: vapid t=<JWT>, k=<public key>` (RFC 8292).
        let authorization = push.headers["authorization"].to_str().unwrap();
        let rest = authorization.strip_prefix("vapid t=").unwrap();
        let (token, key) = rest.split_once(", k=").unwrap();
        assert_eq!(
            key, vapid_public,
            "signed with the key the server publishes"
        );
        let key = ES256PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(key).unwrap()).unwrap();
        let options = VerificationOptions {
            allowed_audiences: Some(HashSet::from([audience.to_string()])),
            ..Default::default()
        };
        key.verify_token::<NoCustomClaims>(token, Some(options))
            .expect("a valid VAPID JWT for this push service");
        let mut auth = web_push_native::Auth::default();
        auth.copy_from_slice(&self.auth);
        let plain = web_push_native::decrypt(push.body.to_vec(), &self.secret, &auth)
            .expect("decrypts with the browser's keys");
        serde_json::from_slice(&plain).unwrap()
    }
}

async fn next_at(rx: &mut mpsc::UnboundedReceiver<Received>, prefix: &str) -> Received {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let r = rx.recv().await.unwrap();
            if r.path.starts_with(prefix) {
                return r;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing pushed to {prefix}"))
}

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

async fn vapid_public(base: &str) -> String {
    let v: Value = reqwest::get(format!("{base}/v1/push/vapid-public-key"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["key"].as_str().unwrap().to_string()
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
