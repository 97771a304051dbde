//! An edge node: the session listeners (QUIC/WebTransport on UDP,
//! HTTPS + WebSocket on TCP, plain HTTP on loopback), the dispatcher of its
//! `edge.<node>` topic and certificate rotation. The same in `samvad serve`
//! and `samvad edge`; only the bus, presence and directory differ.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use parking_lot::RwLock;
use samvad_bus::{Bus, TopicSpec, Topics};
use samvad_store::directory::Directory;
use samvad_store::files::FileStore;
use samvad_store::presence::Presence;
use samvad_store::push_subscriptions::PushSubscriptions;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, Limits};
use crate::config::EdgeArgs;
use crate::hub::{self, Hub};
use crate::inboxes::EdgeInboxes;
use crate::metrics::Metrics;
use crate::state::Edge;
use crate::tls::{self, Identity};
use crate::unanswered::ResetIfUnanswered;
use crate::{connection, http, quic};
use samvad_api::{Api, AuthThrottles, FileLimits, PushConfig, Sms};
use samvad_core::session::SessionConfig;
use samvad_core::throttle::Throttle;
use samvad_core::token::TokenKeys;
use samvad_media::MediaCounters;
use samvad_media::MediaRouting;
use samvad_push::EndpointPolicy;
use samvad_push::SignedWebhook;

/// What an edge is wired to.
pub struct EdgeDeps {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub presence: Arc<dyn Presence>,
    pub directory: Directory,
    pub files: Arc<dyn FileStore>,
    pub push_subscriptions: Arc<dyn PushSubscriptions>,
    pub vapid_public_key: String,
    /// Where media rooms' signals go.
    pub media: MediaRouting,
    /// The media role's counters, served with the edge's metrics.
    pub media_counters: Option<MediaCounters>,
    pub keys: TokenKeys,
    /// The live sessions (shared with `samvad serve`'s inbox writers).
    pub hub: Arc<Hub>,
    pub delivery: crate::delivery::Delivery,
}

/// A started edge.
pub struct RunningEdge {
    pub edge: Arc<Edge>,
    pub endpoint: quinn::Endpoint,
}

/// Binds the listeners and starts serving; long-running tasks that must not
/// end (the dispatcher) go into `roles`. Writes `--ready-file` last.
pub async fn start(
    args: &EdgeArgs,
    deps: EdgeDeps,
    roles: &mut JoinSet<anyhow::Result<()>>,
    extra_ready: serde_json::Value,
) -> anyhow::Result<RunningEdge> {
    deps.bus
        .ensure_topic(&deps.topics.edge(&args.node), TopicSpec::ephemeral(1))
        .await?;
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
        _ => Identity::self_signed()?,
    };
    let endpoint = quic::bind(args.listen, &identity)?;
    let quic_addr = endpoint.local_addr()?;
    let keys = Arc::new(deps.keys);
    let edge = Arc::new(Edge {
        bus: deps.bus,
        topics: deps.topics,
        presence: deps.presence,
        keys: keys.clone(),
        directory: deps.directory.clone(),
        media: deps.media,
        session_config: Arc::new(SessionConfig {
            node: args.node.as_str().into(),
            max_frame: args.max_frame,
            rate_per_sec: args.rate_limit,
            bytes_per_sec: (args.rate_limit_bytes > 0).then_some(args.rate_limit_bytes),
        }),
        session_queue: args.session_queue,
        write_stall: std::time::Duration::from_secs(args.write_stall_secs.max(1)),
        admission: Admission::new(Limits {
            max_sessions: (args.max_sessions > 0).then_some(args.max_sessions),
            max_websockets: max_websockets(),
            max_handshakes: (args.max_handshakes > 0).then_some(args.max_handshakes),
            handshakes_at_once: args.handshakes_at_once.max(1),
            connects_per_minute: (args.connects_per_minute > 0).then_some(args.connects_per_minute),
        }),
        hub: deps.hub,
        delivery: deps.delivery,
        cert_sha256: RwLock::new(identity.sha256_hex()),
        metrics: {
            let mut metrics = Metrics::default();
            if let Some(media) = &deps.media_counters {
                metrics.register_media(media);
            }
            metrics
        },
        quic_port: quic_addr.port(),
    });
    let api = Api {
        directory: deps.directory,
        keys,
        files: deps.files,
        file_limits: FileLimits {
            max_file: args.max_file_bytes,
            quota: args.file_quota_bytes,
        },
        throttles: Arc::new(AuthThrottles {
            failed_logins_per_account: Throttle::new(args.login_failures_per_account, TEN_MINUTES),
            failed_logins_per_address: Throttle::new(args.login_failures_per_address, TEN_MINUTES),
            registrations_per_address: Throttle::new(
                args.registrations_per_address,
                Duration::from_secs(3600),
            ),
        }),
        sms: Sms(args.sms_webhook.clone().map(|url| {
            Arc::new(SignedWebhook::new(
                url,
                args.sms_webhook_secret
                    .clone()
                    .unwrap_or_default()
                    .into_bytes(),
            ))
        })),
        push: Arc::new(PushConfig {
            endpoints: EndpointPolicy {
                hosts: args.push_endpoint_hosts.clone(),
                allow_http: args.push_allow_http,
            },
            vapid_public_key: deps.vapid_public_key,
        }),
        push_subscriptions: deps.push_subscriptions,
        inboxes: Arc::new(EdgeInboxes::new(edge.clone())),
    };
    let dispatch = hub::open_dispatch(&edge).await.context("edge dispatch")?;
    roles.spawn({
        let edge = edge.clone();
        async move {
            hub::run_dispatch(edge, dispatch)
                .await
                .context("edge dispatch")
        }
    });

    let tcp = listen_tcp(args.listen)?;
    let https_addr = tcp.local_addr()?;
    let acceptor = Arc::new(RwLock::new(TlsAcceptor::from(Arc::new(
        identity.server_config(&[b"http/1.1"])?,
    ))));
    let app = http::router(edge.clone(), api);
    tokio::spawn(quic::serve(endpoint.clone(), edge.clone()));
    tokio::spawn(serve_https(tcp, acceptor.clone(), app.clone()));
    let http_addr = if args.http_listen == "off" {
        None
    } else {
        let addr: SocketAddr = args
            .http_listen
            .parse()
            .context("--http-listen is HOST:PORT or off")?;
        let listener = listen_tcp(addr)?;
        let bound = listener.local_addr()?;
        tokio::spawn(serve_http(listener, app.clone()));
        Some(bound)
    };
    if identity.self_signed {
        tokio::spawn(rotate_certificate(
            identity.expires.unwrap_or_default(),
            endpoint.clone(),
            acceptor,
            edge.clone(),
        ));
    }

    tracing::info!(%quic_addr, %https_addr, http = ?http_addr, node = %args.node,
        cert_sha256 = %edge.cert_sha256.read(), "edge serving");
    if let Some(path) = &args.ready_file {
        let mut ready = serde_json::json!({
            "quic": quic_addr.to_string(),
            "https": https_addr.to_string(),
            "http": http_addr.map(|a| a.to_string()),
            "pid": std::process::id(),
            "cert_sha256": *edge.cert_sha256.read(),
        });
        if let (Some(ready), Some(extra)) = (ready.as_object_mut(), extra_ready.as_object()) {
            ready.extend(extra.clone());
        }
        write_ready(path, &ready)?;
    }
    Ok(RunningEdge { edge, endpoint })
}

/// Writes the ready file atomically (tests wait for it to appear).
pub fn write_ready(path: &std::path::Path, ready: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ready.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// WebSocket sessions this process can hold with its open files limit
/// (raised to the hard limit first).
fn max_websockets() -> Option<usize> {
    let files = crate::admission::raise_open_files_limit()?;
    let websockets = crate::admission::websockets_for_files(files);
    tracing::info!(files, websockets, "open files limit");
    Some(websockets)
}

/// Connections waiting to be accepted, per listener. A reconnect storm is
/// thousands of SYNs at once: past the backlog they are dropped and wait
/// for the client's SYN retransmission (1 s, then 3 s). The kernel caps
/// it at `net.core.somaxconn`.
const TCP_BACKLOG: u32 = 16_384;

fn listen_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()
    } else {
        tokio::net::TcpSocket::new_v4()
    }
    .context("TCP socket")?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding TCP {addr}"))?;
    socket
        .listen(TCP_BACKLOG)
        .with_context(|| format!("listening on TCP {addr}"))
}

/// How long a connection may take to send its TLS handshake or a
/// request's headers (and up to half as long again, `connection::spread`): a
/// half-open request holds a file and a task, so it may not wait for
/// ever. One that expires unanswered is reset ([`ResetIfUnanswered`]).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The next TCP connection, with Nagle off (frames are small and latency
/// matters); accept errors (out of files) back off instead of spinning.
async fn accept_tcp(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return (tcp, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves HTTP/1.1 and HTTP/2 (with upgrades: the WebSocket) on `io`, the
/// peer's address given to the handlers as `ConnectInfo` (admission
/// control), headers read within [`HEADER_READ_TIMEOUT`].
async fn serve_http_connection<I>(io: I, peer: SocketAddr, app: axum::Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::Layer::layer(&axum::Extension(ConnectInfo(peer)), app);
    let service = TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(connection::spread(HEADER_READ_TIMEOUT));
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}

async fn serve_http(listener: TcpListener, app: axum::Router) {
    loop {
        let (tcp, peer) = accept_tcp(&listener).await;
        let tcp = ResetIfUnanswered::new(tcp);
        tokio::spawn(serve_http_connection(tcp, peer, app.clone()));
    }
}

async fn serve_https(listener: TcpListener, acceptor: Arc<RwLock<TlsAcceptor>>, app: axum::Router) {
    loop {
        let (tcp, peer) = accept_tcp(&listener).await;
        let acceptor = acceptor.read().clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(
                connection::spread(HEADER_READ_TIMEOUT),
                acceptor.accept(ResetIfUnanswered::new(tcp)),
            )
            .await
            else {
                return;
            };
            serve_http_connection(tls, peer, app).await;
        });
    }
}

/// Replaces the generated certificate before it expires, on both ports.
async fn rotate_certificate(
    mut expires: i64,
    endpoint: quinn::Endpoint,
    acceptor: Arc<RwLock<TlsAcceptor>>,
    edge: Arc<Edge>,
) {
    loop {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let rotate_at = expires - tls::ROTATE_BEFORE_EXPIRY.as_secs() as i64;
        tokio::time::sleep(Duration::from_secs(
            rotate_at.saturating_sub(now).max(60) as u64
        ))
        .await;
        let next = match Identity::self_signed() {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "certificate generation failed; retrying");
                continue;
            }
        };
        match (
            quic::server_config(&next),
            next.server_config(&[b"http/1.1"]),
        ) {
            (Ok(quic_config), Ok(tls_config)) => {
                endpoint.set_server_config(Some(quic_config));
                *acceptor.write() = TlsAcceptor::from(Arc::new(tls_config));
                *edge.cert_sha256.write() = next.sha256_hex();
                expires = next.expires.unwrap_or_default();
                tracing::info!(sha256 = %next.sha256_hex(), "certificate rotated");
            }
            (Err(e), _) | (_, Err(e)) => tracing::error!(error = %e, "certificate config failed"),
        }
    }
}
