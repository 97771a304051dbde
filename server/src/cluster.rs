//! The cluster: `samvad edge | router | store`, one role per process, wired
//! by Kafka (the bus) and Redis (presence; for edges also the directory of
//! accounts and refresh tokens, and the shared access-token key). The roles
//! are the very ones `samvad serve` runs; only their bus, presence and
//! directory differ.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use samvad_bus::{Bus, FromCommitted, KafkaBus, KafkaConfig, TopicSpec, Topics};
use samvad_router::RouterRole;
use samvad_store::directory::Directory;
use samvad_store::files::RedisFiles;
use samvad_store::groups::RedisGroups;
use samvad_store::inbox::Inboxes;
use samvad_store::push_subscriptions::RedisPushSubscriptions;
use samvad_store::redis::RedisKeyspace;
use samvad_store::redis_presence::RedisPresence;
use samvad_store::role::{DiskPlacement, StoreRole};
use samvad_store::PersistMode;
use tokio::task::JoinSet;

use crate::config::{
    ClusterArgs, ClusterEdgeArgs, ClusterMediaArgs, ClusterPushArgs, ClusterRouterArgs,
    ClusterStoreArgs, MetricsArgs,
};
use crate::process::{self, open_database};
use samvad_core::token::TokenKeys;
use samvad_edge::{EdgeDeps, NodeMetrics};
use samvad_media::MediaCounters;
use samvad_media::RoomPins;
use samvad_media::{MediaRole, MediaRouting};
use samvad_push::PushRole;
use samvad_push::VapidKey;

/// Connects to Kafka and makes sure the shared topics exist.
async fn bus(cluster: &ClusterArgs, node: &str) -> anyhow::Result<(Arc<dyn Bus>, Topics)> {
    let (bus, topics) = kafka(cluster, node).await?;
    Ok((bus, topics))
}

/// [`bus`], keeping the Kafka type (for the processors of owning roles).
async fn kafka(cluster: &ClusterArgs, node: &str) -> anyhow::Result<(Arc<KafkaBus>, Topics)> {
    let mut config = KafkaConfig::new(&cluster.kafka);
    config.replication = cluster.replication;
    config.fetch_wait_ms = cluster.fetch_wait_ms;
    config.linger_ms = cluster.linger_ms;
    config.session_timeout_ms = cluster.session_timeout_ms;
    config.client_id = format!("samvad-{node}");
    let bus = Arc::new(KafkaBus::connect(config).context("connecting to Kafka")?);
    let topics = Topics::new(cluster.topics.topic_prefix.clone());
    let partitions = cluster.topics.partitions;
    bus.ensure_topic(&topics.inbound(), TopicSpec::synced(partitions))
        .await
        .context("creating the inbound topic")?;
    bus.ensure_topic(&topics.deliver(), TopicSpec::durable(partitions))
        .await
        .context("creating the deliver topic")?;
    bus.ensure_topic(&topics.dead_letter(), TopicSpec::durable(1))
        .await
        .context("creating the dead-letter topic")?;
    bus.ensure_topic(&topics.push(), TopicSpec::durable(partitions))
        .await
        .context("creating the push topic")?;
    bus.ensure_topic(&topics.changelog(), TopicSpec::compacted(partitions))
        .await
        .context("creating the store changelog topic")?;
    Ok((bus, topics))
}

async fn presence(cluster: &ClusterArgs) -> anyhow::Result<Arc<RedisPresence>> {
    RedisPresence::connect(
        &cluster.redis,
        &cluster.topics.topic_prefix,
        Duration::from_secs(cluster.presence_ttl),
    )
    .await
    .context("connecting to Redis")
}

/// Writes a ready file for a role without session listeners (tests wait
/// for it): its pid, and where it serves metrics if it does.
fn ready(
    path: Option<&std::path::Path>,
    role: &str,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        samvad_edge::write_ready(
            path,
            &serde_json::json!({
                "role": role,
                "pid": std::process::id(),
                "metrics": metrics.map(|a| a.to_string()),
            }),
        )?;
    }
    Ok(())
}

/// Serves `node_metrics` where `args` asks, if it does.
async fn serve_metrics(
    args: &MetricsArgs,
    node_metrics: NodeMetrics,
    roles: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Option<SocketAddr>> {
    match args.metrics_listen {
        Some(listen) => {
            let addr = samvad_edge::serve_metrics(listen, Arc::new(node_metrics), roles)
                .await
                .with_context(|| format!("serving metrics on {listen}"))?;
            Ok(Some(addr))
        }
        None => Ok(None),
    }
}

pub async fn edge(args: ClusterEdgeArgs) -> anyhow::Result<()> {
    let (bus, topics) = bus(&args.cluster, &args.edge.node).await?;
    let presence = presence(&args.cluster).await?;
    let redis = RedisKeyspace::connect(&args.cluster.redis, &args.cluster.topics.topic_prefix)
        .await
        .context("connecting to Redis")?;
    let secret = redis
        .shared_secret("access-token-key", &rand::random::<[u8; 32]>())
        .await?;
    let vapid = vapid_key(&redis).await?;
    let deps = EdgeDeps {
        bus,
        topics,
        presence,
        push_subscriptions: Arc::new(RedisPushSubscriptions::new(redis.clone())),
        vapid_public_key: vapid.public_base64(),
        media: MediaRouting::Pinned(
            RoomPins::connect(
                &args.cluster.redis,
                &args.cluster.topics.topic_prefix,
                Duration::from_secs(args.media_lease_ttl),
            )
            .await
            .context("connecting to Redis")?,
        ),
        media_counters: None,
        directory: Directory::connect(&redis),
        files: Arc::new(RedisFiles::new(redis.clone())),
        keys: TokenKeys::new(&secret, args.edge.access_ttl),
        hub: Default::default(),
        delivery: samvad_edge::Delivery::Bus,
    };
    let mut roles = JoinSet::new();
    let running = samvad_edge::start(
        &args.edge,
        deps,
        &mut roles,
        serde_json::json!({ "role": "edge" }),
    )
    .await?;
    let result = process::wait(&mut roles).await;
    running.endpoint.close(0u32.into(), b"server shutting down");
    result
}

/// The cluster's VAPID key, shared through Redis like the token key.
async fn vapid_key(redis: &RedisKeyspace) -> anyhow::Result<VapidKey> {
    let secret = redis
        .shared_secret("vapid-key", &VapidKey::generate_secret())
        .await?;
    VapidKey::from_secret(&secret)
}

/// `samvad media`: an SFU node; rooms are pinned to it by Redis leases.
pub async fn media(args: ClusterMediaArgs) -> anyhow::Result<()> {
    let (bus, topics) = bus(&args.cluster, &args.node).await?;
    bus.ensure_topic(&topics.media(&args.node), TopicSpec::ephemeral(1))
        .await?;
    let pins = RoomPins::connect(
        &args.cluster.redis,
        &args.cluster.topics.topic_prefix,
        Duration::from_secs(args.lease_ttl),
    )
    .await
    .context("connecting to Redis")?;
    let signals = samvad_media::open_signals(bus.as_ref(), &topics, &args.node).await?;
    // Announced before the ready file: an edge may pin a room to it at once.
    pins.renew(&args.node, &[]).await?;
    let (socket, public_addr) = args.media.bind().await?;
    let mut roles = JoinSet::new();
    let counters = MediaCounters::default();
    let mut node_metrics = NodeMetrics::default();
    node_metrics.register_media(&counters);
    let metrics = serve_metrics(&args.metrics, node_metrics, &mut roles).await?;
    roles.spawn(async move {
        MediaRole {
            bus,
            topics,
            node: args.node,
            socket,
            public_addr,
            counters,
            pins: Some(pins),
        }
        .run(signals)
        .await
        .context("media role")
    });
    if let Some(path) = &args.ready_file {
        samvad_edge::write_ready(
            path,
            &serde_json::json!({
                "role": "media",
                "pid": std::process::id(),
                "media": public_addr.to_string(),
                "metrics": metrics.map(|a| a.to_string()),
            }),
        )?;
    }
    process::wait(&mut roles).await
}

/// `samvad push`: consumes `push`, notifies browsers and the webhook.
pub async fn push(args: ClusterPushArgs) -> anyhow::Result<()> {
    let (bus, topics) = bus(&args.cluster, "push").await?;
    let prefix = &args.cluster.topics.topic_prefix;
    let redis = RedisKeyspace::connect(&args.cluster.redis, prefix)
        .await
        .context("connecting to Redis")?;
    let subscriptions = Arc::new(RedisPushSubscriptions::new(redis.clone()));
    let sinks = samvad_push::sinks(
        subscriptions,
        vapid_key(&redis).await?,
        args.push.vapid_contact.clone(),
        args.push.webhook()?,
    );
    let mut roles = JoinSet::new();
    roles.spawn(async move {
        PushRole { bus, topics, sinks }
            .run()
            .await
            .context("push role")
    });
    let metrics = serve_metrics(&args.metrics, NodeMetrics::default(), &mut roles).await?;
    ready(args.ready_file.as_deref(), "push", metrics)?;
    tracing::info!("push running");
    process::wait(&mut roles).await
}

pub async fn router(args: ClusterRouterArgs) -> anyhow::Result<()> {
    let (kafka, topics) = kafka(&args.cluster, &args.node).await?;
    let processor = kafka
        .processor(
            &topics.inbound(),
            &format!("{}router", args.cluster.topics.topic_prefix),
            &args.node,
            Arc::new(FromCommitted),
        )
        .await
        .context("joining the router group")?;
    let bus: Arc<dyn Bus> = kafka;
    let redis = RedisKeyspace::connect(&args.cluster.redis, &args.cluster.topics.topic_prefix)
        .await
        .context("connecting to Redis")?;
    let mut roles = JoinSet::new();
    roles.spawn(async move {
        RouterRole {
            bus,
            topics,
            groups: Arc::new(RedisGroups::new(redis)),
        }
        .run(processor)
        .await
        .context("router role")
    });
    let metrics = serve_metrics(&args.metrics, NodeMetrics::default(), &mut roles).await?;
    ready(args.ready_file.as_deref(), "router", metrics)?;
    tracing::info!(node = %args.node, "router running");
    process::wait(&mut roles).await
}

/// Retention in the cluster: a sweep of this store's disk a step a second,
/// whose expiries go to `deliver` like any other record, so that they are
/// applied in the partition's order and logged to the changelog with the
/// rest. A step whose produce fails is logged and the sweep goes on: the
/// next round asks again.
async fn sweep_retention(
    inboxes: Arc<Inboxes>,
    bus: Arc<dyn Bus>,
    deliver: Arc<str>,
    retention: samvad_store::engine::Retention,
) -> anyhow::Result<()> {
    let mut sweep = samvad_store::engine::Sweep::default();
    let mut every = tokio::time::interval(samvad_store::engine::retention::SWEEP_EVERY);
    loop {
        every.tick().await;
        let inboxes = inboxes.clone();
        let (back, records) = tokio::task::spawn_blocking(move || {
            let records = inboxes.sweep(&mut sweep, &retention);
            (sweep, records)
        })
        .await
        .context("retention sweep panicked")?;
        sweep = back;
        let records = records.context("retention sweep")?;
        if records.is_empty() {
            continue;
        }
        let out = samvad_edge::to_deliver(deliver.clone(), records);
        if let Err(e) = bus.produce(out).await {
            tracing::warn!(error = %e, "retention: producing expiries failed; the next round asks again");
        }
    }
}

pub async fn store(args: ClusterStoreArgs) -> anyhow::Result<()> {
    let (kafka, topics) = kafka(&args.cluster, &args.node).await?;
    let presence = presence(&args.cluster).await?;
    let db = open_database(&args.data_dir)?;
    let inboxes = Arc::new(Inboxes::open(&db, args.durability.persist_mode())?);
    let processor = kafka
        .processor(
            &topics.deliver(),
            &format!("{}store", args.cluster.topics.topic_prefix),
            &args.node,
            Arc::new(DiskPlacement {
                inboxes: inboxes.clone(),
                changelog: Some((kafka.clone(), topics.changelog())),
            }),
        )
        .await
        .context("joining the store group")?;
    let bus: Arc<dyn Bus> = kafka;
    let mut roles = JoinSet::new();
    let retention = args.retention.retention()?;
    if !retention.is_forever() {
        roles.spawn(sweep_retention(
            inboxes.clone(),
            bus.clone(),
            topics.deliver().into(),
            retention,
        ));
    }
    roles.spawn(async move {
        StoreRole {
            bus,
            topics,
            inboxes,
            presence,
        }
        .run(processor)
        .await
        .context("store role")
    });
    let metrics = serve_metrics(&args.metrics, NodeMetrics::default(), &mut roles).await?;
    ready(args.ready_file.as_deref(), "store", metrics)?;
    tracing::info!(node = %args.node, data = %args.data_dir.display(), "store running");
    let result = process::wait(&mut roles).await;
    db.persist(PersistMode::SyncAll)?;
    result
}
