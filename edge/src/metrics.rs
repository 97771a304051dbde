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
        Metrics {
            registry,
            sessions,
            accepted,
            pushed,
            errors,
            slow_consumers,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
