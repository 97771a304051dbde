//! `samvad serve`: every role in one process. Embedded bus journaled in
//! fjall, in-memory presence, the router, the store and the edge, wired
//! exactly as they are in a cluster, with nothing else to install or run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use parking_lot::RwLock;
use samvad_bus::{Bus, Durability, EmbeddedBus, TopicSpec, Topics};
use samvad_router::RouterRole;
use samvad_store::accounts::Accounts;
use samvad_store::inbox::Inboxes;
use samvad_store::presence::MemoryPresence;
use samvad_store::role::StoreRole;
use samvad_store::tokens::RefreshTokens;
use samvad_store::PersistMode;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::TokenKeys;
use crate::config::{DurabilityArg, ServeArgs};
use crate::hub::{self, Hub};
use crate::metrics::Metrics;
use crate::session::SessionConfig;
use crate::state::Edge;
use crate::tls::{self, Identity};
use crate::{http, quic};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let db = fjall::Database::builder(args.data_dir.join("db"))
        .open()
        .with_context(|| format!("opening the database in {}", args.data_dir.display()))?;
    let (durability, persist) = match args.durability {
        DurabilityArg::Sync => (Durability::Sync, PersistMode::SyncData),
        DurabilityArg::Buffer => (Durability::Buffer, PersistMode::Buffer),
    };
    let bus = EmbeddedBus::open(db.clone(), durability)?;
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let topics = Topics::new(args.topic_prefix.clone());
    // A send is acknowledged once on `inbound`: that produce is synced.
    bus.ensure_topic(&topics.inbound(), TopicSpec::synced(args.partitions))
        .await?;
    bus.ensure_topic(&topics.deliver(), TopicSpec::durable(args.partitions))
        .await?;
    bus.ensure_topic(&topics.edge(&args.node), TopicSpec::ephemeral(1))
        .await?;

    let presence = Arc::new(MemoryPresence::default());
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
        _ => Identity::self_signed()?,
    };
    let endpoint = quic::bind(args.listen, &identity)?;
    let quic_addr = endpoint.local_addr()?;
    let edge = Arc::new(Edge {
        bus: bus.clone(),
        topics: topics.clone(),
        presence: presence.clone(),
        keys: TokenKeys::load_or_create(&args.data_dir, args.access_ttl)?,
        accounts: Accounts::open(&db)?,
        refresh: RefreshTokens::open(&db)?,
        session_config: Arc::new(SessionConfig {
            node: args.node.as_str().into(),
            max_frame: args.max_frame,
            rate_per_sec: args.rate_limit,
        }),
        session_queue: args.session_queue,
        hub: Hub::default(),
        cert_sha256: RwLock::new(identity.sha256_hex()),
        metrics: Metrics::default(),
        quic_port: quic_addr.port(),
    });

    let mut roles = tokio::task::JoinSet::new();
    roles.spawn({
        let role = RouterRole {
            bus: bus.clone(),
            topics: topics.clone(),
        };
        async move { role.run().await.context("router role") }
    });
    roles.spawn({
        let role = StoreRole {
            bus: bus.clone(),
            topics: topics.clone(),
            inboxes: Arc::new(Inboxes::open(&db, persist)?),
            presence,
        };
        async move { role.run().await.context("store role") }
    });
    roles.spawn({
        let edge = edge.clone();
        async move { hub::run_dispatch(edge).await.context("edge dispatch") }
    });

    // Listeners.
    let tcp = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding TCP {}", args.listen))?;
    let https_addr = tcp.local_addr()?;
    let acceptor = Arc::new(RwLock::new(TlsAcceptor::from(Arc::new(
        identity.server_config(&[b"http/1.1"])?,
    ))));
    let app = http::router(edge.clone());
    tokio::spawn(quic::serve(endpoint.clone(), edge.clone()));
    tokio::spawn(serve_https(tcp, acceptor.clone(), app.clone()));
    let http_addr = if args.http_listen == "off" {
        None
    } else {
        let addr: SocketAddr = args
            .http_listen
            .parse()
            .context("--http-listen is HOST:PORT or off")?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding TCP {addr}"))?;
        let bound = listener.local_addr()?;
        // Frames are small and latency matters: no Nagle.
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                let _ = tcp.set_nodelay(true);
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
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

    tracing::info!(%quic_addr, %https_addr, http = ?http_addr, node = %args.node, data = %args.data_dir.display(),
        cert_sha256 = %edge.cert_sha256.read(), "samvad serving");
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "quic": quic_addr.to_string(),
            "https": https_addr.to_string(),
            "http": http_addr.map(|a| a.to_string()),
            "pid": std::process::id(),
            "cert_sha256": *edge.cert_sha256.read(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())?;
        std::fs::rename(&tmp, path)?;
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        Some(ended) = roles.join_next() => {
            let result = ended.context("role panicked")?;
            result?;
            anyhow::bail!("a role stopped");
        }
    }
    endpoint.close(0u32.into(), b"server shutting down");
    db.persist(PersistMode::SyncAll)?;
    Ok(())
}

async fn serve_https(listener: TcpListener, acceptor: Arc<RwLock<TlsAcceptor>>, app: axum::Router) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.read().clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
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
