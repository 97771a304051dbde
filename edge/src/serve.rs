//! `samvad serve`: every role in one process. Embedded bus journaled in
//! fjall, in-memory presence, the router, the store and the edge, wired
//! exactly as they are in a cluster, with nothing else to install or run.

use std::sync::Arc;

use anyhow::Context;
use samvad_bus::{Bus, Durability, EmbeddedBus, TopicSpec, Topics};
use samvad_router::RouterRole;
use samvad_store::accounts::Accounts;
use samvad_store::directory::LocalDirectory;
use samvad_store::files::LocalFiles;
use samvad_store::groups::Groups;
use samvad_store::inbox::Inboxes;
use samvad_store::presence::MemoryPresence;
use samvad_store::role::StoreRole;
use samvad_store::tokens::RefreshTokens;
use samvad_store::PersistMode;

use crate::auth::TokenKeys;
use crate::config::{DurabilityArg, ServeArgs};
use crate::node::{self, open_database, EdgeDeps};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let db = open_database(&args.data_dir)?;
    let persist = args.durability.persist_mode();
    let durability = match args.durability {
        DurabilityArg::Sync => Durability::Sync,
        DurabilityArg::Buffer => Durability::Buffer,
    };
    let bus: Arc<dyn Bus> = Arc::new(EmbeddedBus::open(db.clone(), durability)?);
    let topics = Topics::new(args.topics.topic_prefix.clone());
    // A send is acknowledged once on `inbound`: that produce is synced.
    bus.ensure_topic(&topics.inbound(), TopicSpec::synced(args.topics.partitions))
        .await?;
    bus.ensure_topic(
        &topics.deliver(),
        TopicSpec::durable(args.topics.partitions),
    )
    .await?;
    bus.ensure_topic(&topics.dead_letter(), TopicSpec::durable(1))
        .await?;
    // Nothing consumes `push` in one process yet (the notification sink is
    // to come): bounded, in memory, so it cannot grow without end.
    bus.ensure_topic(&topics.push(), TopicSpec::ephemeral(args.topics.partitions))
        .await?;
    let presence = Arc::new(MemoryPresence::default());
    let directory = Arc::new(LocalDirectory {
        accounts: Accounts::open(&db)?,
        refresh: RefreshTokens::open(&db)?,
        groups: Groups::open(&db)?,
    });

    let mut roles = tokio::task::JoinSet::new();
    roles.spawn({
        let role = RouterRole {
            bus: bus.clone(),
            topics: topics.clone(),
            directory: directory.clone(),
        };
        async move { role.run().await.context("router role") }
    });
    roles.spawn({
        let role = StoreRole {
            bus: bus.clone(),
            topics: topics.clone(),
            inboxes: Arc::new(Inboxes::open(&db, persist)?),
            presence: presence.clone(),
        };
        async move { role.run().await.context("store role") }
    });
    let deps = EdgeDeps {
        bus,
        topics,
        presence,
        directory,
        files: Arc::new(LocalFiles::open(&db)?),
        keys: TokenKeys::load_or_create(&args.data_dir, args.edge.access_ttl)?,
    };
    let extra = serde_json::json!({ "data": args.data_dir.display().to_string() });
    let running = node::start(&args.edge, deps, &mut roles, extra).await?;
    let result = node::wait(&mut roles).await;
    running.endpoint.close(0u32.into(), b"server shutting down");
    db.persist(PersistMode::SyncAll)?;
    result
}
