//! The store role: consume `deliver`, apply to the inboxes, carry out the
//! effects, commit.
//!
//! Order of a batch: apply (durable in fjall, with the applied offsets and
//! the batch's outbox in the same write) → produce the outbox (receipts to
//! `deliver`, notifications to `push`) → push frames to edges (best
//! effort: a session that misses one gets it on its next sync) → commit
//! the offsets. A crash before the commit replays the batch, which the
//! inbox rules make idempotent; a crash after the apply but before the
//! outbox was produced is made good at start ([`Inboxes::outbox`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use samvad_bus::{Bus, Outgoing, Record, Topics};
use samvad_proto::bus::{deliver_record, DeliverRecord, EdgeRecord};

use crate::inbox::{Effects, Inboxes};
use crate::presence::Presence;
use samvad_bus::ownership::{last_offsets, LeaseError, Leases, Owned, OwnedReader};

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
    pub async fn run_owned(self, leases: Leases) -> Result<(), RoleError> {
        let deliver = self.topics.deliver();
        let mut owned = OwnedReader::new(leases);
        let mut silent_upto: HashMap<u32, u64> = HashMap::new();
        self.carry_out(self.inboxes.outbox()?).await?;
        loop {
            match owned.next(BATCH).await? {
                Owned::Changed(partitions) => {
                    tracing::info!(?partitions, "store ownership changed");
                    silent_upto.clear();
                    let mut from = Vec::with_capacity(partitions.len());
                    for p in partitions {
                        from.push((p, self.inboxes.applied_offset(p)?.map_or(0, |o| o + 1)));
                        if let Some(h) = owned.leases().handled(p).await? {
                            silent_upto.insert(p, h);
                        }
                    }
                    owned.read_from(&*self.bus, &deliver, &from).await?;
                }
                Owned::Records(records) => {
                    self.apply_owned(&records, &silent_upto).await?;
                    owned.mark_handled(&records).await?;
                }
            }
        }
    }

    /// One batch of an owned partition set.
    async fn apply_owned(
        &self,
        records: &[Record],
        silent_upto: &HashMap<u32, u64>,
    ) -> Result<(), RoleError> {
        let mut silent = Vec::new();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for r in records {
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
        let offsets = last_offsets(records);
        let presence = self.presence.lookup(&users_to_route(&live)).await;
        let inboxes = self.inboxes.clone();
        let effects = tokio::task::spawn_blocking(move || {
            // Replayed work first, its effects already carried out.
            inboxes.apply_silently(silent)?;
            inboxes.apply(live, &presence, &offsets)
        })
        .await
        .expect("inbox apply panicked")?;
        self.carry_out(effects).await
    }

    /// Runs until the bus closes or storage fails.
    pub async fn run(self) -> Result<(), RoleError> {
        let deliver = self.topics.deliver();
        let mut consumer = self.bus.subscribe(&deliver, "store").await?;
        self.carry_out(self.inboxes.outbox()?).await?;
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
            let offsets = last_offsets(&records);
            let effects =
                tokio::task::spawn_blocking(move || inboxes.apply(decoded, &presence, &offsets))
                    .await
                    .expect("inbox apply panicked")?;
            self.carry_out(effects).await?;
            consumer.commit(&records)?;
        }
    }

    async fn carry_out(&self, effects: Effects) -> Result<(), RoleError> {
        let deliver: Arc<str> = self.topics.deliver().into();
        let push: Arc<str> = self.topics.push().into();
        // The outbox is durable work of this batch: on the bus before the
        // batch counts as done.
        let mut owed = Vec::with_capacity(effects.records.len() + effects.notifications.len());
        for rec in effects.records {
            let key = rec.user.clone();
            owed.push(Outgoing::new(
                deliver.clone(),
                key,
                Bytes::from(rec.encode_to_vec()),
            ));
        }
        for rec in effects.notifications {
            let key = rec.user.clone();
            owed.push(Outgoing::new(
                push.clone(),
                key,
                Bytes::from(rec.encode_to_vec()),
            ));
        }
        if !owed.is_empty() {
            self.bus.produce(owed).await?;
        }
        let pushes: Vec<Outgoing> = effects
            .pushes
            .into_iter()
            .map(|(route, frame)| {
                let rec = EdgeRecord {
                    session: route.session.to_string(),
                    frame,
                    datagram: false,
                };
                Outgoing::new(
                    self.topics.edge(&route.edge),
                    route.session.to_string(),
                    Bytes::from(rec.encode_to_vec()),
                )
            })
            .collect();
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
        // Conversation histories (`#<chatid>`) have no sessions.
        .filter(|u| !u.starts_with('#'))
        .collect();
    users.into_iter().collect()
}
