//! What every part of an edge shares.

use std::sync::Arc;

use parking_lot::RwLock;
use samvad_bus::{Bus, Topics};
use samvad_store::directory::Directory;
use samvad_store::files::FileStore;
use samvad_store::presence::Presence;
use samvad_store::push_subscriptions::PushSubscriptions;

use crate::file_api::FileLimits;
use crate::hub::Hub;
use crate::metrics::Metrics;
use samvad_core::session::SessionConfig;
use samvad_core::token::TokenKeys;
use samvad_media::MediaRouting;
use samvad_push::webhook::SignedWebhook;
use samvad_push::EndpointPolicy;

pub struct Edge {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub presence: Arc<dyn Presence>,
    pub keys: TokenKeys,
    /// Accounts and refresh tokens: fjall in `serve`, Redis in a cluster.
    pub directory: Arc<dyn Directory>,
    /// File records and content: fjall in `serve`, Redis in a cluster.
    pub files: Arc<dyn FileStore>,
    pub file_limits: FileLimits,
    /// Browsers' Web Push subscriptions, and what endpoints may be used.
    pub push_subscriptions: Arc<dyn PushSubscriptions>,
    pub push_endpoints: EndpointPolicy,
    /// The VAPID public key (base64url), for `pushManager.subscribe()`.
    pub vapid_public_key: String,
    /// Where media rooms' signals go.
    pub media: MediaRouting,
    /// The operator's SMS gateway, for phone verification codes.
    pub sms: Option<SignedWebhook>,
    pub session_config: Arc<SessionConfig>,
    /// Frames queued per session before it is cut off.
    pub session_queue: usize,
    /// A session whose write does not finish within this is closed: its
    /// peer stopped reading.
    pub write_stall: std::time::Duration,
    /// Limits on sessions, handshakes and connection rates.
    pub admission: crate::admission::Admission,
    /// Throttles of failed logins and of registrations.
    pub auth_throttles: crate::throttle::AuthThrottles,
    pub hub: Arc<Hub>,
    /// Where sends, acks and syncs go: the bus, or this process's inbox writers.
    pub delivery: crate::delivery::Delivery,
    /// SHA-256 (hex) of the current certificate, served at `/cert-hash`.
    pub cert_sha256: RwLock<String>,
    pub metrics: Metrics,
    /// UDP port of QUIC and WebTransport, for the web page.
    pub quic_port: u16,
}
