//! Push notifications for users with no live session.
//!
//! The store produces a `PushRecord` to the `push` topic for every inbox
//! entry that found no session of its user. The push role consumes that
//! topic, turns each record into a [`Notification`] (plain data,
//! [`notification`]) and hands it to every configured [`PushSink`]:
//!
//! - [`web_push`]: to each of the user's browser subscriptions (RFC 8030,
//!   VAPID, RFC 8291 encryption);
//! - [`webhook`]: to one operator URL, HMAC-signed (for a mobile push
//!   gateway: APNs and FCM keep their own credentials there).
//!
//! A push is a hint, not the delivery: the message is durable in the inbox
//! and arrives by sync. So a failed push is retried a few times and then
//! logged, and the topic's offsets are committed once every notification of
//! a batch has been tried.
//!
//! [`endpoints`]: which subscription endpoints may be stored (the REST
//! calls that manage subscriptions are the API's, `samvad-api`).
//! [`webhook::SignedWebhook`] also carries phone verification codes to an
//! SMS gateway.

mod endpoints;
mod notification;
mod web_push;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prost::Message;
use samvad_bus::{BoxFuture, Bus, Topics};
use samvad_proto::bus::PushRecord;

pub use endpoints::EndpointPolicy;
pub use notification::Notification;
use samvad_store::push_subscriptions::PushSubscriptions;
use web_push::WebPushSink;
pub use web_push::{subscription_keys, VapidKey};
pub use webhook::SignedWebhook;
use webhook::WebhookSink;

/// Records read from `push` per batch.
const BATCH: usize = 256;
/// Notifications of a batch in flight at once.
const CONCURRENCY: usize = 32;
/// Tries of one HTTP push, with backoff in between.
const ATTEMPTS: u32 = 3;

/// Somewhere notifications go. A sink handles its own failures: a push
/// is never worth stopping the role for.
pub trait PushSink: Send + Sync + 'static {
    fn notify<'a>(&'a self, notification: &'a Notification) -> BoxFuture<'a, ()>;
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 404 or 410: the endpoint is gone for good.
    #[error("the endpoint is gone")]
    Gone,
    /// A 4xx, or a request we cannot build: trying again will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// Network errors and 5xx, after every attempt.
    #[error("failed: {0}")]
    Failed(String),
}

/// Sends the request `build` makes, up to [`ATTEMPTS`] times while the
/// failure is one that may pass (network, 5xx, 429).
pub(crate) async fn send_with_retries(
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(), SendError> {
    let mut backoff = Duration::from_millis(100);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match build().send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) if matches!(resp.status().as_u16(), 404 | 410) => return Err(SendError::Gone),
            Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                return Err(SendError::Refused(format!("HTTP {}", resp.status())))
            }
            Ok(resp) => last = format!("HTTP {}", resp.status()),
            Err(e) => last = e.to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 4;
        }
    }
    Err(SendError::Failed(last))
}

/// The sinks: Web Push to browser subscriptions (VAPID-signed with
/// `vapid`, naming `vapid_contact`) always, and `webhook` if there is one.
pub fn sinks(
    subscriptions: Arc<dyn PushSubscriptions>,
    vapid: VapidKey,
    vapid_contact: String,
    webhook: Option<SignedWebhook>,
) -> Vec<Arc<dyn PushSink>> {
    let mut sinks: Vec<Arc<dyn PushSink>> = vec![Arc::new(WebPushSink::new(
        subscriptions,
        vapid,
        vapid_contact,
    ))];
    if let Some(webhook) = webhook {
        sinks.push(Arc::new(WebhookSink(webhook)));
    }
    sinks
}

/// The push role: consumes `push`, notifies every sink.
pub struct PushRole {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub sinks: Vec<Arc<dyn PushSink>>,
}

impl PushRole {
    pub async fn run(self) -> anyhow::Result<()> {
        let mut consumer = self.bus.subscribe(&self.topics.push(), "push").await?;
        let sinks = &self.sinks;
        loop {
            let records = consumer.poll(BATCH).await?;
            let notifications: Vec<Notification> = records
                .iter()
                .filter_map(|r| match PushRecord::decode(r.payload.clone()) {
                    Ok(record) => notification::notification(&record),
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable push record skipped");
                        None
                    }
                })
                .collect();
            futures_util::stream::iter(&notifications)
                .for_each_concurrent(CONCURRENCY, |n| async move {
                    for sink in sinks {
                        sink.notify(n).await;
                    }
                })
                .await;
            consumer.commit(&records)?;
        }
    }
}
