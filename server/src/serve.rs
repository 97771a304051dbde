//! `samvad serve`: every role in one process, with nothing else to install
//! or run. Sessions hand what they send straight to the inbox writers
//! (`samvad_store::engine::shards`: one thread per shard, group commit),
//! which push into the sessions' queues themselves: no bus hop between
//! edge, router and store. The embedded bus (journaled in fjall) still
//! carries what is not on that path: push notifications to the push role,
//! media signals, typing.

use std::sync::Arc;

use anyhow::Context;
use samvad_bus::{Bus, Durability, EmbeddedBus, TopicSpec, Topics};
use samvad_store::directory::Directory;
use samvad_store::engine::Shards;
use samvad_store::files::LocalFiles;
use samvad_store::presence::MemoryPresence;
use samvad_store::push_subscriptions::LocalPushSubscriptions;
use samvad_store::PersistMode;

use crate::auth::{load_or_create_keys, secret_file};
use crate::config::{DurabilityArg, ServeArgs};
use crate::process::{self, open_database};
use samvad_edge::{Delivery, EdgeDeps, Hub, LocalOutlet};
use samvad_media::MediaCounters;
use samvad_media::{MediaRole, MediaRouting};
use samvad_push::PushRole;
use samvad_push::VapidKey;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let db = open_database(&args.data_dir)?;
    let persist = args.durability.persist_mode();
    let durability = match args.durability {
        DurabilityArg::Sync => Durability::Sync,
        DurabilityArg::Buffer => Durability::Buffer,
    };
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(db.clone(), durability)?);
    let topics = Topics::new(args.topics.topic_prefix.clone());
    // The embedded bus carries what is off a message's path: dead letters,
    // push notifications, media signals.
    bus.ensure_topic(&topics.dead_letter(), TopicSpec::durable(1))
        .await?;
    bus.ensure_topic(&topics.push(), TopicSpec::durable(args.topics.partitions))
        .await?;
    let media_node = args.edge.node.clone();
    bus.ensure_topic(&topics.media(&media_node), TopicSpec::ephemeral(1))
        .await?;
    let presence = Arc::new(MemoryPresence::default());
    let hub = Arc::new(Hub::default());
    let shards = args.shards.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // With `--durability sync`, the writers make batches durable in their
    // own commit logs (pre-written segments: one device write per sync).
    let logs = args.data_dir.join("inbox-log");
    let logs = matches!(args.durability, DurabilityArg::Sync).then_some(logs.as_path());
    let mut writers = Shards::start(
        &db,
        shards,
        persist,
        logs,
        presence.clone(),
        Arc::new(LocalOutlet {
            hub: hub.clone(),
            bus: bus.clone(),
            push_topic: topics.push().into(),
            runtime: tokio::runtime::Handle::current(),
        }),
        args.retention.retention()?,
    )?;
    let mut roles = tokio::task::JoinSet::new();
    for (shard, exited) in std::mem::take(&mut writers.exits).into_iter().enumerate() {
        // A writer ends only when its storage failed: so does the server.
        roles.spawn(async move {
            exited
                .await
                .map_err(|_| anyhow::anyhow!("inbox writer {shard} panicked"))?
                .with_context(|| format!("inbox writer {shard}"))
        });
    }
    let directory = Directory::open(&db)?;

    let push_subscriptions = Arc::new(LocalPushSubscriptions::open(&db)?);
    let vapid = VapidKey::from_secret(&secret_file(
        &args.data_dir,
        "vapid.key",
        VapidKey::generate_secret,
    )?)?;
    let vapid_public_key = vapid.public_base64();
    roles.spawn({
        let role = PushRole {
            bus: bus.clone(),
            topics: topics.clone(),
            sinks: samvad_push::sinks(
                push_subscriptions.clone(),
                vapid,
                args.push.vapid_contact.clone(),
                args.push.webhook()?,
            ),
        };
        async move { role.run().await.context("push role") }
    });
    let (media_socket, media_addr) = args.media.bind().await?;
    let media_counters = MediaCounters::default();
    let media_signals = samvad_media::open_signals(bus.as_ref(), &topics, &media_node).await?;
    roles.spawn({
        let role = MediaRole {
            bus: bus.clone(),
            topics: topics.clone(),
            node: media_node.clone(),
            socket: media_socket,
            public_addr: media_addr,
            counters: media_counters.clone(),
            pins: None,
        };
        async move { role.run(media_signals).await.context("media role") }
    });
    let deps = EdgeDeps {
        bus,
        topics,
        presence,
        directory,
        files: Arc::new(LocalFiles::open(&db)?),
        push_subscriptions,
        vapid_public_key,
        media: MediaRouting::Local(media_node),
        media_counters: Some(media_counters),
        keys: load_or_create_keys(&args.data_dir, args.edge.access_ttl)?,
        hub,
        delivery: Delivery::Shards(writers.shards),
    };
    let extra = serde_json::json!({
        "data": args.data_dir.display().to_string(),
        "media": media_addr.to_string(),
    });
    let running = samvad_edge::start(&args.edge, deps, &mut roles, extra).await?;
    let result = process::wait(&mut roles).await;
    running.endpoint.close(0u32.into(), b"server shutting down");
    db.persist(PersistMode::SyncAll)?;
    result
}
