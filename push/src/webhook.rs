//! The webhook sink: every notification POSTed as JSON to one URL, signed
//! so the receiver knows it came from us and is fresh.
//!
//! `X-Samvad-Timestamp: <unix seconds>` and `X-Samvad-Signature: v1=<hex>`,
//! the HMAC-SHA256 under the shared secret of `"<timestamp>.<body>"` (the
//! scheme of Stripe's and Slack's webhooks): a receiver recomputes it,
//! compares in constant time, and refuses old timestamps against replay.

use std::time::Duration;

use hmac::{Hmac, Mac};
use samvad_bus::BoxFuture;
use sha2::Sha256;

use super::notification::Notification;
use super::{send_with_retries, PushSink, SendError};

pub const TIMESTAMP_HEADER: &str = "x-samvad-timestamp";
pub const SIGNATURE_HEADER: &str = "x-samvad-signature";

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One operator URL that gets signed JSON POSTs: push notifications, and
/// phone verification codes for an SMS gateway.
pub struct SignedWebhook {
    url: reqwest::Url,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl SignedWebhook {
    pub fn new(url: reqwest::Url, secret: Vec<u8>) -> Self {
        SignedWebhook {
            url,
            secret,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain client builds"),
        }
    }

    /// POSTs `body` (JSON), signed, retrying what may pass.
    pub async fn post(&self, body: &[u8]) -> Result<(), SendError> {
        send_with_retries(|| {
            let timestamp = samvad_core::clock::unix_secs();
            self.client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp)
                .header(SIGNATURE_HEADER, signature(&self.secret, timestamp, body))
                .body(body.to_vec())
        })
        .await
    }
}

/// The webhook as a push sink.
pub struct WebhookSink(pub SignedWebhook);

impl PushSink for WebhookSink {
    fn notify<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let body = serde_json::to_vec(notification).expect("notifications serialise");
            if let Err(e) = self.0.post(&body).await {
                tracing::warn!(user = %notification.user, error = %e, "webhook push failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_secret_timestamp_and_body() {
        let s = signature(b"k", 100, b"{}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64, "{s}");
        assert_eq!(s, signature(b"k", 100, b"{}"));
        assert_ne!(s, signature(b"k2", 100, b"{}"));
        assert_ne!(s, signature(b"k", 101, b"{}"));
        assert_ne!(s, signature(b"k", 100, b"{ }"));
    }
}
