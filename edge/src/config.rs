//! An edge's command-line configuration: listeners, certificates, limits
//! on sessions and on what its REST API accepts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// What an edge listens on and how it treats sessions.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// UDP address for QUIC (WebTransport and native `samvad/1`), and TCP
    /// address for HTTPS, REST and WebSocket: the same host and port.
    #[arg(long, default_value = "0.0.0.0:4433", env = "SAMVAD_LISTEN")]
    pub listen: SocketAddr,

    /// Plain-HTTP listener for REST, WebSocket and the page (http://localhost
    /// is a secure context, so browsers open it with no certificate warning).
    /// `off` disables it.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SAMVAD_HTTP_LISTEN")]
    pub http_listen: String,

    /// PEM certificate chain; without it a self-signed one is generated.
    #[arg(long, requires = "tls_key", env = "SAMVAD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, requires = "tls_cert", env = "SAMVAD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Largest client frame accepted, in bytes.
    #[arg(long, default_value_t = samvad_proto::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,

    /// Name of this node on the bus (its `edge.<node>` topic); unique per
    /// edge in a cluster.
    #[arg(long, default_value = "local", env = "SAMVAD_NODE")]
    pub node: String,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 900)]
    pub access_ttl: u64,

    /// Messages a session may send per second (burst: twice that).
    #[arg(long, default_value_t = 1000)]
    pub rate_limit: u32,

    /// Bytes of messages a session may send per second (burst: twice
    /// that, and at least one frame of --max-frame). 0: no limit.
    #[arg(long, default_value_t = 1 << 20)]
    pub rate_limit_bytes: u32,

    /// Frames queued for one session before it is cut off as too slow.
    #[arg(long, default_value_t = 1024)]
    pub session_queue: usize,

    /// Seconds a write to a session may take before the session is closed
    /// (`write_stalled`): its client stopped reading.
    #[arg(long, default_value_t = 15)]
    pub write_stall_secs: u64,

    /// Sessions this edge holds at most, every transport together; more
    /// are refused (QUIC CONNECTION_REFUSED, HTTP 503 with Retry-After).
    /// 0: no limit.
    #[arg(long, default_value_t = 250_000)]
    pub max_sessions: usize,

    /// QUIC connections admitted and not yet sessions at most: those whose
    /// handshake (TLS and, for WebTransport, the HTTP/3 set-up) is under
    /// way and those waiting in line for a turn; more are refused.
    /// 0: no limit.
    #[arg(long, default_value_t = 65_536)]
    pub max_handshakes: usize,

    /// QUIC handshakes worked on at once; the other admitted connections
    /// wait in line, first come first served. Few enough that each one
    /// finishes well within the client's first retransmission timer
    /// (about a second) when thousands come at once.
    #[arg(long, default_value_t = 256)]
    pub handshakes_at_once: usize,

    /// New connections a minute from one source address (all may come at
    /// once; the allowance refills evenly); more are refused (QUIC
    /// CONNECTION_REFUSED, HTTP 429 with Retry-After). 0: no limit (behind
    /// a NAT or a load balancer every client shares one address).
    #[arg(long, default_value_t = 0)]
    pub connects_per_minute: u32,

    /// Failed logins one account may have in 10 minutes (all may come at
    /// once; the allowance refills evenly); past it, logins of that account
    /// are answered 429 with Retry-After before the password is checked.
    /// 0: no limit.
    #[arg(long, default_value_t = 10)]
    pub login_failures_per_account: u32,

    /// Failed logins one source address may have in 10 minutes, whatever
    /// the accounts. 0: no limit.
    #[arg(long, default_value_t = 100)]
    pub login_failures_per_address: u32,

    /// Accounts one source address may create in an hour. 0: no limit.
    #[arg(long, default_value_t = 1000)]
    pub registrations_per_address: u32,

    /// Largest file a user may upload, in bytes.
    #[arg(long, default_value_t = 25 << 20)]
    pub max_file_bytes: u64,

    /// Bytes of files one user may store in all.
    #[arg(long, default_value_t = 1 << 30)]
    pub file_quota_bytes: u64,

    /// Push services whose endpoints browsers may subscribe with (a host
    /// and its subdomains). The server POSTs to these, so nothing else.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fcm.googleapis.com,push.services.mozilla.com,push.apple.com,notify.windows.com"
    )]
    pub push_endpoint_hosts: Vec<String>,

    /// Accept plain-HTTP push endpoints (development and tests only).
    #[arg(long)]
    pub push_allow_http: bool,

    /// The operator's SMS gateway: phone verification codes are POSTed
    /// here as signed JSON (`X-Samvad-Signature`, as for push webhooks).
    #[arg(long, requires = "sms_webhook_secret", env = "SAMVAD_SMS_WEBHOOK")]
    pub sms_webhook: Option<reqwest::Url>,

    /// HMAC-SHA256 key of the SMS webhook's signature.
    #[arg(long, env = "SAMVAD_SMS_WEBHOOK_SECRET", hide_env_values = true)]
    pub sms_webhook_secret: Option<String>,

    /// Write the bound addresses as JSON to this file once listening.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}
