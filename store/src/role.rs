//! The store role: consume `deliver`, apply to the inboxes, carry out the
//! effects, commit.
//!
//! Order of a batch: apply (durable in fjall) → produce receipts to
//! `deliver` (durable on the bus) → push frames to edges (best effort: a
//! session that misses one gets it on its next sync) → commit the offsets.
//! A crash anywhere before the commit replays the batch, which the inbox
//! rules make idempotent.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use samvad_bus::{Bus, Consumer, Outgoing, Record, Topics};
use samvad_proto::bus::{deliver_record, DeliverRecord, EdgeRecord, PushRecord};

use crate::inbox::{Effect, Inboxes};
use crate::presence::{Presence, PresenceMap};
use samvad_bus::ownership::{LeaseError, Leases};

/// Records one batch takes from the bus.
const BATCH: usize = 512;

pub struct StoreRole {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    pub inboxes: Arc<Inboxes>,
    pub presence: Arc<dyn Presence>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("bus: {0}")]
    Bus(#[from] samvad_bus::BusError),
    #[error("store: {0}")]
    Store(#[from] crate::StoreError),
    #[error("{0}")]
    Lease(#[from] LeaseError),
}

impl StoreRole {
    /// Runs as the owner of the `deliver` partitions it holds leases on
    /// (the cluster), until the bus closes or storage fails.
    ///
    /// On every change of ownership the reader restarts each owned
    /// partition right after the last offset applied *here* (kept in fjall
    /// with the inboxes; 0 on an empty disk), so this node's inboxes are
    /// always the result of the partition's records in order, whoever
    /// applied them before. Records up to the partition's `handled` mark
    /// were already pushed and receipted by a previous owner: they are
    /// applied silently.
    pub async fn run_owned(self, leases: Arc<Leases>) -> Result<(), RoleError> {
        let deliver = self.topics.deliver();
        let mut owned: BTreeSet<u32> = BTreeSet::new();
        let mut reader: Option<Box<dyn Consumer>> = None;
        let mut silent_upto: HashMap<u32, u64> = HashMap::new();
        let mut ticker = tokio::time::interval(leases.period());
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let held = match leases.tick().await {
                        Ok(held) => held,
                        Err(e) => {
                            // Without Redis the leases may lapse: stop
                            // reading rather than race a new owner.
                            tracing::warn!(error = %e, "lease renewal failed; pausing");
                            BTreeSet::new()
                        }
                    };
                    if held == owned {
                        continue;
                    }
                    tracing::info!(partitions = ?held, "store ownership changed");
                    owned = held;
                    silent_upto.clear();
                    let mut from = Vec::with_capacity(owned.len());
                    for &p in &owned {
                        from.push((p, self.inboxes.applied_offset(p)?.map_or(0, |o| o + 1)));
                        if let Some(h) = leases.handled(p).await? {
                            silent_upto.insert(p, h);
                        }
                    }
                    reader = if from.is_empty() {
                        None
                    } else {
                        Some(self.bus.assign(&deliver, &from).await?)
                    };
                }
                records = async {
                    match reader.as_mut() {
                        Some(r) => r.poll(BATCH).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let records = records?;
                    let handled = self.apply_owned(&records, &silent_upto).await?;
                    for (p, o) in handled {
                        leases.set_handled(p, o).await?;
                    }
                }
            }
        }
    }

    /// One batch of an owned partition set; returns (partition, last
    /// offset) of what it carried out.
    async fn apply_owned(
        &self,
        records: &[Record],
        silent_upto: &HashMap<u32, u64>,
    ) -> Result<Vec<(u32, u64)>, RoleError> {
        let mut silent = Vec::new();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        let mut last: HashMap<u32, u64> = HashMap::new();
        for r in records {
            let e = last.entry(r.partition).or_default();
            *e = (*e).max(r.offset);
            match DeliverRecord::decode(r.payload.clone()) {
                Ok(d)
                    if silent_upto
                        .get(&r.partition)
                        .is_some_and(|&h| r.offset <= h) =>
                {
                    silent.push(d)
                }
                Ok(d) => live.push(d),
                Err(e) => dead.push(r.dead_letter(&self.topics, &e)),
            }
        }
        if !dead.is_empty() {
            self.bus.produce(dead).await?;
        }
        let offsets: Vec<(u32, u64)> = last.into_iter().collect();
        let presence = self.presence.lookup(&users_to_route(&live)).await;
        let inboxes = self.inboxes.clone();
        let all_offsets = offsets.clone();
        let effects = tokio::task::spawn_blocking(move || {
            // Replayed work first, its effects already carried out.
            inboxes.apply(&silent, &PresenceMap::new())?;
            inboxes.apply_at(&live, &presence, &all_offsets)
        })
        .await
        .expect("inbox apply panicked")?;
        self.carry_out(effects).await?;
        Ok(offsets)
    }

    /// Runs until the bus closes or storage fails.
    pub async fn run(self) -> Result<(), RoleError> {
        let deliver = self.topics.deliver();
        let mut consumer = self.bus.subscribe(&deliver, "store").await?;
        loop {
            let records = consumer.poll(BATCH).await?;
            let mut decoded = Vec::with_capacity(records.len());
            let mut dead = Vec::new();
            for r in &records {
                match DeliverRecord::decode(r.payload.clone()) {
                    Ok(d) => decoded.push(d),
                    Err(e) => dead.push(r.dead_letter(&self.topics, &e)),
                }
            }
            if !dead.is_empty() {
                self.bus.produce(dead).await?;
            }
            let presence = self.presence.lookup(&users_to_route(&decoded)).await;
            let inboxes = self.inboxes.clone();
            let effects = tokio::task::spawn_blocking(move || inboxes.apply(&decoded, &presence))
                .await
                .expect("inbox apply panicked")?;
            self.carry_out(effects).await?;
            consumer.commit(&records)?;
        }
    }

    async fn carry_out(&self, effects: Vec<Effect>) -> Result<(), RoleError> {
        let deliver: Arc<str> = self.topics.deliver().into();
        let mut receipts = Vec::new();
        let mut pushes = Vec::new();
        let mut notifications = Vec::new();
        for effect in effects {
            match effect {
                Effect::Receipt { user, receipt } => {
                    let rec = DeliverRecord {
                        user: user.clone(),
                        kind: Some(deliver_record::Kind::Receipt(receipt)),
                    };
                    receipts.push(Outgoing::new(
                        deliver.clone(),
                        user,
                        Bytes::from(rec.encode_to_vec()),
                    ));
                }
                Effect::Push { route, frame } => {
                    let rec = EdgeRecord {
                        session: route.session.to_string(),
                        frame,
                    };
                    pushes.push(Outgoing::new(
                        self.topics.edge(&route.edge),
                        route.session.to_string(),
                        Bytes::from(rec.encode_to_vec()),
                    ));
                }
                Effect::Offline { user, seq, frame } => {
                    let rec = PushRecord {
                        user: user.clone(),
                        seq,
                        frame,
                    };
                    notifications.push(Outgoing::new(
                        self.topics.push(),
                        user,
                        Bytes::from(rec.encode_to_vec()),
                    ));
                }
            }
        }
        // Receipts and notifications are durable work of this batch: on
        // the bus before the batch counts as done.
        receipts.append(&mut notifications);
        if !receipts.is_empty() {
            self.bus.produce(receipts).await?;
        }
        if !pushes.is_empty() {
            if let Err(e) = self.bus.produce(pushes).await {
                tracing::warn!(error = %e, "push to edge failed; sessions catch up on sync");
            }
        }
        Ok(())
    }
}

/// The users whose new entries a batch may push live (messages, receipts).
fn users_to_route(records: &[DeliverRecord]) -> Vec<&str> {
    let users: BTreeSet<&str> = records
        .iter()
        .filter(|d| {
            matches!(
                d.kind,
                Some(deliver_record::Kind::Message(_)) | Some(deliver_record::Kind::Receipt(_))
            )
        })
        .map(|d| d.user.as_str())
        .collect();
    users.into_iter().collect()
}
