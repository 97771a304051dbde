//! Prometheus metrics, served at `/metrics`: [`NodeMetrics`] of every
//! process (CPU, memory; a media node's counters), and the edge's own
//! [`Metrics`] on top.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use samvad_media::MediaCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

/// What every node serves: its process's CPU time and memory, read at
/// scrape time, and the counters of the roles it runs that have any.
pub struct NodeMetrics {
    registry: Registry,
    resident_memory: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("samvad");
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident set size of this process (VmRSS), read at scrape time",
            resident_memory.clone(),
        );
        let cpu_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time of this process, read at scrape time",
            cpu_seconds.clone(),
        );
        NodeMetrics {
            registry,
            resident_memory,
            cpu_seconds,
        }
    }
}

impl NodeMetrics {
    /// Serves the media role's counters too.
    pub fn register_media(&mut self, media: &MediaCounters) {
        media.register(&mut self.registry);
    }

    pub fn render(&self) -> String {
        if let Some(rss) = resident_memory_bytes() {
            self.resident_memory.set(rss as i64);
        }
        if let Some(cpu) = cpu_seconds() {
            self.cpu_seconds.set(cpu);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The edge's metrics: sessions, messages, errors, datagrams.
pub struct Metrics {
    node: NodeMetrics,
    pub sessions: Family<TransportLabel, Gauge>,
    pub accepted: Counter,
    pub pushed: Counter,
    pub errors: Family<CodeLabel, Counter>,
    pub slow_consumers: Counter,
    /// Typing frames taken from datagrams.
    pub datagrams_in: Counter,
    /// Datagrams that were not an authenticated session's typing frame.
    pub datagrams_ignored: Counter,
    /// Connections refused by admission control, by reason.
    refused: Family<CodeLabel, Counter>,
    /// QUIC connections waiting in line for a handshake turn.
    pub handshakes_waiting: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut node = NodeMetrics::default();
        let registry = &mut node.registry;
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
        let refused = Family::<CodeLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused by admission control, by reason",
            refused.clone(),
        );
        let handshakes_waiting = Gauge::default();
        registry.register(
            "quic_handshakes_waiting",
            "QUIC connections admitted and waiting in line for a handshake turn",
            handshakes_waiting.clone(),
        );
        Metrics {
            refused,
            handshakes_waiting,
            node,
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
    /// Counts a connection refused by admission control.
    pub fn refused(&self, refusal: crate::admission::Refusal) {
        tracing::debug!(%refusal, "connection refused");
        self.refused
            .get_or_create(&CodeLabel {
                code: refusal.label().into(),
            })
            .inc();
    }

    /// Serves the media role's counters too (`samvad serve`).
    pub fn register_media(&mut self, media: &MediaCounters) {
        self.node.register_media(media);
    }

    pub fn render(&self) -> String {
        self.node.render()
    }
}

/// Serves `metrics` at `/metrics` on `listen`, for a node with no HTTP
/// listener of its own (router, store, push, media); returns the address
/// it listens on (`listen` may ask for port 0).
pub async fn serve(
    listen: std::net::SocketAddr,
    metrics: std::sync::Arc<NodeMetrics>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<std::net::SocketAddr> {
    use axum::http::header;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    tasks.spawn(async move { Ok(axum::serve(listener, app).await?) });
    Ok(addr)
}

/// utime + stime of this process from `/proc/self/stat` (Linux only).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_sec > 0).then(|| ticks as f64 / per_sec as f64)
}

/// VmRSS of this process from `/proc/self/status` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
