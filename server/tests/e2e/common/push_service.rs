//! A local push service for tests: receives Web Push and webhook calls,
//! and a browser's side of a subscription that checks and decrypts them.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use web_push_native::jwt_simple::prelude::*;
use web_push_native::p256;

/// One request the endpoint received.
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A local push service and webhook receiver: records every request;
/// paths under `/gone/` answer 410 as a push service does for a dropped
/// subscription.
pub async fn push_endpoint() -> (String, mpsc::UnboundedReceiver<Received>) {
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
pub struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            secret: p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap(),
            auth: rand::random(),
        }
    }

    pub fn subscription(&self, endpoint: &str) -> Value {
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
    pub fn open(&self, push: &Received, vapid_public: &str, audience: &str) -> Value {
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

pub async fn next_at(rx: &mut mpsc::UnboundedReceiver<Received>, prefix: &str) -> Received {
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

pub async fn vapid_public(base: &str) -> String {
    let v: Value = reqwest::get(format!("{base}/v1/push/vapid-public-key"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["key"].as_str().unwrap().to_string()
}
