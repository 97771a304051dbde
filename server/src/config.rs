//! Command-line configuration of the server's roles (an edge's own is
//! [`samvad_edge::EdgeArgs`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
pub use samvad_edge::EdgeArgs;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory of the fjall database (bus journal, inboxes, accounts).
    #[arg(long, default_value = "./data", env = "SAMVAD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// How durable a write is before it is acknowledged.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,

    /// Inbox writers: an inbox belongs to shard hash(owner) mod this
    /// (default: one per core).
    #[arg(long, env = "SAMVAD_SHARDS")]
    pub shards: Option<usize>,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub edge: EdgeArgs,

    #[command(flatten)]
    pub topics: TopicArgs,

    #[command(flatten)]
    pub push: PushArgs,

    #[command(flatten)]
    pub media: MediaArgs,
}

/// How long inboxes keep what they hold.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Days a user's delivered messages and receipts stay in their inbox
    /// (a device that syncs later finds older ones in the conversation's
    /// history). Undelivered entries stay until they are delivered.
    /// 0: for ever.
    #[arg(long, default_value_t = 30.0, env = "SAMVAD_INBOX_RETENTION_DAYS")]
    pub inbox_retention_days: f64,

    /// Days a conversation's history is kept. 0: for ever.
    #[arg(long, default_value_t = 0.0, env = "SAMVAD_HISTORY_RETENTION_DAYS")]
    pub history_retention_days: f64,
}

impl RetentionArgs {
    /// The inbox rules' retention.
    pub fn retention(&self) -> anyhow::Result<samvad_store::engine::Retention> {
        let days = |what: &str, d: f64| -> anyhow::Result<Option<std::time::Duration>> {
            anyhow::ensure!(d.is_finite() && d >= 0.0, "--{what} must be 0 or more days");
            Ok((d > 0.0).then(|| std::time::Duration::from_secs_f64(d * 86_400.0)))
        };
        Ok(samvad_store::engine::Retention {
            delivered: days("inbox-retention-days", self.inbox_retention_days)?,
            history: days("history-retention-days", self.history_retention_days)?,
        })
    }
}

/// The SFU's UDP socket.
#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// UDP address of the media socket (every participant's ICE traffic,
    /// DTLS and RTP go through it).
    #[arg(long, default_value = "127.0.0.1:0", env = "SAMVAD_MEDIA_LISTEN")]
    pub media_listen: SocketAddr,

    /// The address participants reach the media socket at, offered as its
    /// ICE candidate; default: --media-listen (which must then not be
    /// 0.0.0.0).
    #[arg(long, env = "SAMVAD_MEDIA_PUBLIC_ADDR")]
    pub media_public_addr: Option<SocketAddr>,
}

impl MediaArgs {
    /// Binds the socket; returns it with the address to offer.
    pub async fn bind(&self) -> anyhow::Result<(tokio::net::UdpSocket, SocketAddr)> {
        use anyhow::Context;
        let socket = tokio::net::UdpSocket::bind(self.media_listen)
            .await
            .with_context(|| format!("binding media UDP {}", self.media_listen))?;
        let local = socket.local_addr()?;
        let public = match self.media_public_addr {
            Some(addr) => addr,
            None if local.ip().is_unspecified() => {
                anyhow::bail!("--media-listen on 0.0.0.0 needs --media-public-addr")
            }
            None => local,
        };
        Ok((socket, public))
    }
}

/// Where notifications for offline users go (the push role).
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// POST every notification, signed, to this URL (for a mobile push
    /// gateway). Web Push to browser subscriptions happens regardless.
    #[arg(long, requires = "push_webhook_secret", env = "SAMVAD_PUSH_WEBHOOK")]
    pub push_webhook: Option<reqwest::Url>,

    /// HMAC-SHA256 key of the webhook's `X-Samvad-Signature`.
    #[arg(long, env = "SAMVAD_PUSH_WEBHOOK_SECRET", hide_env_values = true)]
    pub push_webhook_secret: Option<String>,

    /// Contact sent to push services with the VAPID signature.
    #[arg(long, default_value = "mailto:push@localhost")]
    pub vapid_contact: String,
}

impl PushArgs {
    /// The signed webhook `--push-webhook` asks for, if any.
    pub fn webhook(&self) -> anyhow::Result<Option<samvad_push::SignedWebhook>> {
        let Some(url) = &self.push_webhook else {
            return Ok(None);
        };
        let secret = self
            .push_webhook_secret
            .as_ref()
            .context("--push-webhook needs --push-webhook-secret")?;
        Ok(Some(samvad_push::SignedWebhook::new(
            url.clone(),
            secret.as_bytes().to_vec(),
        )))
    }
}

/// Names and sizes of the bus topics.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Prefix of every bus topic name (and of the Redis keys).
    #[arg(long, default_value = "samvad.")]
    pub topic_prefix: String,

    /// Partitions of the `inbound` and `deliver` topics.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
}

/// How a cluster process reaches Kafka and Redis.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    #[arg(long, env = "SAMVAD_KAFKA")]
    pub kafka: String,

    /// Redis URL (presence; in edges also accounts and refresh tokens).
    #[arg(long, env = "SAMVAD_REDIS")]
    pub redis: String,

    /// Replication factor of the topics this process creates.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,

    /// `fetch.wait.max.ms` of the Kafka consumers: latency floor vs CPU.
    #[arg(long, default_value_t = 1)]
    pub fetch_wait_ms: u32,

    /// `linger.ms` of the Kafka producers: how long a record waits for
    /// others to share its request.
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u32,

    /// Milliseconds a router or store may go silent before Kafka gives its
    /// partitions to the others (`session.timeout.ms`). A node restarted
    /// within it gets its own partitions back with no rebalance (static
    /// membership).
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u32,

    /// Seconds a presence entry lives without a heartbeat.
    #[arg(long, default_value_t = 15)]
    pub presence_ttl: u64,

    #[command(flatten)]
    pub topics: TopicArgs,
}

/// Where a node without an HTTP listener of its own serves `/metrics`.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at `http://<this>/metrics` (off when not
    /// given). Port 0 picks a free one, written to the ready file.
    #[arg(long, env = "SAMVAD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterEdgeArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Seconds a media room's pin to its node lives without renewal (the
    /// media nodes' --lease-ttl).
    #[arg(long, default_value_t = 9)]
    pub media_lease_ttl: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterMediaArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub media: MediaArgs,

    /// Name of this node (its `media.<node>` topic and room pins): unique
    /// per media node.
    #[arg(long, default_value = "media", env = "SAMVAD_NODE")]
    pub node: String,

    /// Seconds this node's announcement and its rooms' pins live without
    /// renewal: how long the rooms of a dead node wait before a rejoin
    /// lands elsewhere.
    #[arg(long, default_value_t = 9)]
    pub lease_ttl: u64,

    /// Write `{role, pid, media}` as JSON to this file once running.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterStoreArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Directory of this store node's fjall database (inboxes). A cache of
    /// the `deliver` partitions it owns: losing it costs a replay, not data.
    #[arg(long, default_value = "./data", env = "SAMVAD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// How durable an inbox write is before its pushes and commit.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,

    #[command(flatten)]
    pub retention: RetentionArgs,

    /// Name of this node (logs, Kafka client id, its static membership of
    /// the store group and its transactional id): unique per store, and
    /// the same across its restarts.
    #[arg(long, default_value = "store", env = "SAMVAD_NODE")]
    pub node: String,

    /// Write `{role, pid}` as JSON to this file once running.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterPushArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub push: PushArgs,

    /// Write `{role, pid}` as JSON to this file once running.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterRouterArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// Name of this node (logs, Kafka client id, its static membership of
    /// the router group and its transactional id): unique per router, and
    /// the same across its restarts.
    #[arg(long, default_value = "router", env = "SAMVAD_NODE")]
    pub node: String,

    /// Write `{role, pid}` as JSON to this file once running.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync once per batch (group commit): survives power loss.
    Sync,
    /// Hand to the OS once per batch: survives kill -9, not power loss.
    Buffer,
}

impl DurabilityArg {
    /// The fjall persist mode of a durable write.
    pub fn persist_mode(self) -> samvad_store::PersistMode {
        match self {
            DurabilityArg::Sync => samvad_store::PersistMode::SyncData,
            DurabilityArg::Buffer => samvad_store::PersistMode::Buffer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(inbox: f64, history: f64) -> anyhow::Result<samvad_store::engine::Retention> {
        RetentionArgs {
            inbox_retention_days: inbox,
            history_retention_days: history,
        }
        .retention()
    }

    #[test]
    fn retention_days_are_refused_unless_zero_or_more() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let err = retention(bad, 0.0).unwrap_err().to_string();
            assert!(err.contains("--inbox-retention-days"), "{err}");
            let err = retention(0.0, bad).unwrap_err().to_string();
            assert!(err.contains("--history-retention-days"), "{err}");
        }
        let kept = retention(1.0, 0.0).unwrap();
        assert_eq!(kept.delivered, Some(std::time::Duration::from_secs(86_400)));
        assert_eq!(kept.history, None, "0 keeps for ever");
    }
}
