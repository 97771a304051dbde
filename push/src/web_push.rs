//! The Web Push sink (RFC 8030), with VAPID (RFC 8292) and payload
//! encryption (RFC 8291, aes128gcm) by `web-push-native`, which builds the
//! request and does no I/O; we send it.
//!
//! A push service that answers 404 or 410 has dropped the subscription
//! (the browser unsubscribed or the user cleared it): we forget it.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use samvad_bus::BoxFuture;
use samvad_store::push_subscriptions::{PushSubscriptions, WebPushSubscription};
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::{p256, Auth, WebPushBuilder};

use super::notification::Notification;
use super::{send_with_retries, PushSink, SendError};

/// How long a push service keeps a notification for an unreachable device.
pub const PUSH_TTL: Duration = Duration::from_secs(24 * 3600);

/// The server's VAPID key pair (P-256).
pub struct VapidKey(ES256KeyPair);

impl VapidKey {
    /// A fresh key's 32 secret bytes, to store.
    pub fn generate_secret() -> Vec<u8> {
        ES256KeyPair::generate().to_bytes()
    }

    pub fn from_secret(secret: &[u8]) -> anyhow::Result<Self> {
        Ok(VapidKey(
            ES256KeyPair::from_bytes(secret).map_err(|e| anyhow::anyhow!("VAPID key: {e}"))?,
        ))
    }

    /// The public key as browsers take it in `applicationServerKey`:
    /// the uncompressed point, base64url without padding.
    pub fn public_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.public_key().public_key().to_bytes_uncompressed())
    }
}

/// Why a subscription's keys are unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("p256dh is not a base64url P-256 public key")]
    PublicKey,
    #[error("auth is not 16 base64url bytes")]
    Auth,
}

/// The browser's keys of `subscription`, decoded and checked.
pub fn subscription_keys(
    subscription: &WebPushSubscription,
) -> Result<(p256::PublicKey, Auth), KeyError> {
    let public = URL_SAFE_NO_PAD
        .decode(subscription.p256dh.trim_end_matches('='))
        .ok()
        .and_then(|b| p256::PublicKey::from_sec1_bytes(&b).ok())
        .ok_or(KeyError::PublicKey)?;
    let auth = URL_SAFE_NO_PAD
        .decode(subscription.auth.trim_end_matches('='))
        .ok()
        .filter(|b| b.len() == 16)
        .ok_or(KeyError::Auth)?;
    let mut secret = Auth::default();
    secret.copy_from_slice(&auth);
    Ok((public, secret))
}

pub struct WebPushSink {
    subscriptions: Arc<dyn PushSubscriptions>,
    key: VapidKey,
    /// `mailto:` or `https:` contact of the operator, sent to push services.
    contact: String,
    client: reqwest::Client,
}

impl WebPushSink {
    pub fn new(subscriptions: Arc<dyn PushSubscriptions>, key: VapidKey, contact: String) -> Self {
        WebPushSink {
            subscriptions,
            key,
            contact,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain client builds"),
        }
    }

    async fn push_to(
        &self,
        subscription: &WebPushSubscription,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let (public, auth) =
            subscription_keys(subscription).map_err(|e| SendError::Refused(e.to_string()))?;
        let endpoint = subscription
            .endpoint
            .parse()
            .map_err(|_| SendError::Refused("endpoint is not a URI".into()))?;
        let request = WebPushBuilder::new(endpoint, public, auth)
            .with_valid_duration(PUSH_TTL)
            .with_vapid(&self.key.0, &self.contact)
            .build(payload.to_vec())
            .map_err(|e| SendError::Refused(format!("building the push: {e:?}")))?;
        let (parts, body) = request.into_parts();
        send_with_retries(|| {
            self.client
                .request(parts.method.clone(), parts.uri.to_string())
                .headers(parts.headers.clone())
                .header("urgency", "high")
                .body(body.clone())
        })
        .await
    }
}

impl PushSink for WebPushSink {
    fn notify<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let subscriptions = match self.subscriptions.of(&notification.user).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(user = %notification.user, error = %e, "push subscriptions unavailable");
                    return;
                }
            };
            let payload = serde_json::to_vec(notification).expect("notifications serialise");
            for subscription in &subscriptions {
                match self.push_to(subscription, &payload).await {
                    Ok(()) => {}
                    Err(SendError::Gone) => {
                        tracing::info!(user = %notification.user, endpoint = %subscription.endpoint, "push subscription gone");
                        if let Err(e) = self
                            .subscriptions
                            .remove(&notification.user, &subscription.endpoint)
                            .await
                        {
                            tracing::warn!(error = %e, "forgetting a gone subscription");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(user = %notification.user, endpoint = %subscription.endpoint, error = %e, "web push failed");
                    }
                }
            }
        })
    }
}
