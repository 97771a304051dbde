//! Prometheus metrics of the edge, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    pub sessions: Family<TransportLabel, Gauge>,
    pub accepted: Counter,
    pub pushed: Counter,
    pub errors: Family<CodeLabel, Counter>,
    pub slow_consumers: Counter,
    /// Typing frames taken from datagrams.
    pub datagrams_in: Counter,
    /// Datagrams that were not an authenticated session's typing frame.
    pub datagrams_ignored: Counter,
    resident_memory: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("samvad");
        let sessions = Family::<TransportLabel, Gauge>::default();
        let accepted = Counter::default();
        let pushed = Counter::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let slow_consumers = Counter::default();
        registry.register("sessions", "Live client sessions", sessions.clone());
        registry.register(
            "messages_accepted",
            "Envelopes made durable and acknowledged",
            accepted.clone(),
        );
        registry.register(
            "frames_pushed",
            "Frames pushed from the bus to sessions",
            pushed.clone(),
        );
        registry.register("error_frames", "Error frames sent, by code", errors.clone());
        registry.register(
            "slow_consumers",
            "Sessions cut off for not reading",
            slow_consumers.clone(),
        );
        let datagrams_in = Counter::default();
        let datagrams_ignored = Counter::default();
        registry.register(
            "datagrams_received",
            "Typing frames received as datagrams",
            datagrams_in.clone(),
        );
        registry.register(
            "datagrams_ignored",
            "Datagrams dropped: not a typing frame, or before hello",
            datagrams_ignored.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size of this process (VmRSS), read at scrape time",
            resident_memory.clone(),
        );
        Metrics {
            registry,
            resident_memory,
            sessions,
            accepted,
            pushed,
            errors,
            slow_consumers,
            datagrams_in,
            datagrams_ignored,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// VmRSS of this process from `/proc/self/status` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
