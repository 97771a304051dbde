//! What every part of an edge shares (its sessions, transports and
//! dispatch; the REST API has its own state, [`samvad_api::Api`]).

use std::sync::Arc;

use parking_lot::RwLock;
use samvad_bus::{Bus, Topics};
use samvad_store::directory::Directory;
use samvad_store::presence::Presence;

use crate::hub::Hub;
use crate::metrics::Metrics;
use samvad_core::session::SessionConfig;
use samvad_core::token::TokenKeys;
use samvad_media::MediaRouting;

pub struct Edge {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub presence: Arc<dyn Presence>,
    pub keys: Arc<TokenKeys>,
    /// Accounts and refresh tokens: fjall in `serve`, Redis in a cluster.
    pub directory: Directory,
    /// Where media rooms' signals go.
    pub media: MediaRouting,
    pub session_config: Arc<SessionConfig>,
    /// Frames queued per session before it is cut off.
    pub session_queue: usize,
    /// A session whose write does not finish within this is closed: its
    /// peer stopped reading.
    pub write_stall: std::time::Duration,
    /// Limits on sessions, handshakes and connection rates.
    pub admission: crate::admission::Admission,
    pub hub: Arc<Hub>,
    /// Where sends, acks and syncs go: the bus, or this process's inbox writers.
    pub delivery: crate::delivery::Delivery,
    /// SHA-256 (hex) of the current certificate, served at `/cert-hash`.
    pub cert_sha256: RwLock<String>,
    pub metrics: Metrics,
    /// UDP port of QUIC and WebTransport, for the web page.
    pub quic_port: u16,
}
