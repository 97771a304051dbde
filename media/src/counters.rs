//! The media role's Prometheus counters, registered into the node's
//! registry by whoever serves `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct MediaCounters {
    pub datagrams_received: Counter,
    pub datagrams_sent: Counter,
    pub frames_forwarded: Counter,
    pub participants: Gauge,
}

impl MediaCounters {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "media_datagrams_received",
            "UDP datagrams the media socket received",
            self.datagrams_received.clone(),
        );
        registry.register(
            "media_datagrams_sent",
            "UDP datagrams the media socket sent (RTP, RTCP, STUN, DTLS)",
            self.datagrams_sent.clone(),
        );
        registry.register(
            "media_frames_forwarded",
            "Media frames written to subscribers",
            self.frames_forwarded.clone(),
        );
        registry.register(
            "media_participants",
            "Participants in media rooms on this node",
            self.participants.clone(),
        );
    }
}
