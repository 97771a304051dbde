//! The store role: own `deliver` partitions as Kafka assigns them, apply
//! their records to the inboxes, and commit the effects with the offsets.
//!
//! A batch, per partition: apply (durable in fjall, with the partition's
//! applied offset and outbox in the same write) → push frames to edges
//! (best effort, straight away: a session that misses one gets it on its
//! next sync) → one Kafka transaction for the whole poll with every
//! partition's outbox (receipts to `deliver`, notifications to `push`) and
//! the offsets consumed. A transaction that aborts is offered again with
//! the next; a crash before it commits leaves the disk ahead of the
//! group's committed offset, and the outbox on disk is what is owed.
//!
//! Where a partition starts when it is assigned ([`DiskPlacement`]): right
//! after the last offset applied *here* (0 on an empty disk), so this
//! node's inboxes are always the result of the partition's records in
//! order, whoever applied them before. Records below the group's committed
//! offset had their effects committed by an earlier owner: they are
//! applied silently.

use samvad_core::names::InboxOwner;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use samvad_bus::{
    by_partition, Bus, BusError, Change, Outgoing, Placement, Processor, Record, Replay, Topics,
    Uncommitted,
};
use samvad_proto::bus::{
    deliver_record, DeliverRecord, EdgeRecord, PushRecord, StateChange, StoreOutbox,
};

use crate::inbox::{Effects, Inboxes};
use crate::presence::Presence;

/// Pause between two attempts to produce dead letters.
const DEAD_LETTER_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

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
    Bus(#[from] BusError),
    #[error("store: {0}")]
    Store(#[from] crate::StoreError),
}

/// What a store owes the bus: records for `deliver` and `push`, and its
/// state's changes for the changelog.
#[derive(Debug, Clone)]
pub enum Owed {
    Deliver(Box<DeliverRecord>),
    Push(PushRecord),
    Change(StateChange),
}

/// Starts each assigned partition right after the offset this disk
/// applied. A partition this disk has nothing of, whose group has
/// committed work, is first restored from the changelog (`changelog`: where
/// it is read from): the state as of the committed offset, so only the
/// records after it are read. Without a changelog, or with one that is
/// empty (a cluster older than it), it is rebuilt from `deliver`'s start.
pub struct DiskPlacement {
    pub inboxes: Arc<Inboxes>,
    pub changelog: Option<(Arc<dyn Replay>, String)>,
}

impl Placement for DiskPlacement {
    fn start(&self, partition: u32, committed: Option<u64>) -> u64 {
        let applied = match self.inboxes.applied_offset(partition) {
            Ok(applied) => applied,
            Err(e) => {
                // Unreadable state cannot be trusted to skip anything.
                tracing::error!(error = %e, partition, "reading the applied offset; from 0");
                return 0;
            }
        };
        match (applied, committed, &self.changelog) {
            (Some(applied), _, _) => applied + 1,
            (None, Some(committed), Some((replay, topic))) if committed > 0 => {
                match self.restore(&**replay, topic, partition, committed) {
                    Ok(Some(start)) => start,
                    Ok(None) => 0,
                    Err(e) => {
                        tracing::error!(error = %e, partition,
                            "restoring from the changelog failed; rebuilding from deliver");
                        0
                    }
                }
            }
            _ => 0,
        }
    }
}

impl DiskPlacement {
    /// Restores `partition` from the changelog; the offset to go on from,
    /// or `None` if the changelog has nothing of it.
    fn restore(
        &self,
        replay: &dyn Replay,
        topic: &str,
        partition: u32,
        committed: u64,
    ) -> Result<Option<u64>, RoleError> {
        let started = std::time::Instant::now();
        let mut changes = Vec::new();
        let count = replay.replay(topic, partition, &mut |records| {
            changes.clear();
            for r in records {
                let Some((&space, key)) = r.key.split_first() else {
                    continue;
                };
                changes.push(StateChange {
                    space: space as u32,
                    key: r.key.slice(1..1 + key.len()),
                    value: (!r.tombstone).then_some(r.payload),
                });
            }
            self.inboxes
                .restore(&changes)
                .map_err(|e| BusError::Backend(e.to_string()))
        })?;
        if count == 0 {
            return Ok(None);
        }
        self.inboxes.restored(partition, committed - 1)?;
        tracing::info!(partition, records = count, took = ?started.elapsed(), committed,
            "partition restored from the changelog");
        Ok(Some(committed))
    }
}

impl StoreRole {
    /// Runs as a member of `deliver`'s store group until the bus fails,
    /// storage fails, or another incarnation fences this one.
    pub async fn run(self, mut processor: Box<dyn Processor>) -> Result<(), RoleError> {
        let mut owed = Uncommitted::<Owed>::default();
        // Per partition, the last offset whose effects an earlier owner
        // committed.
        let mut silent_upto: HashMap<u32, u64> = HashMap::new();
        loop {
            let records = owed.poll(&mut *processor, BATCH).await?;
            for change in processor.changes() {
                self.take_change(change, &mut owed, &mut silent_upto)?;
            }
            self.apply(&records, &silent_upto, &mut owed).await?;
            if owed.is_empty() {
                continue;
            }
            let owing = owed.to_commit();
            let consumed = owing.offsets;
            let outputs = owing
                .outputs
                .into_iter()
                .map(|(partition, o)| self.outgoing(partition, o))
                .collect();
            match processor.commit(outputs, consumed).await {
                Ok(()) => owed.clear(),
                // Another incarnation or member owns the work now.
                Err(e @ BusError::Fenced(_)) => return Err(e.into()),
                // Kept: offered again with the next commit.
                Err(e) => tracing::warn!(error = %e, "store batch not committed; again"),
            }
        }
    }

    fn take_change(
        &self,
        change: Change,
        owed: &mut Uncommitted<Owed>,
        silent_upto: &mut HashMap<u32, u64>,
    ) -> Result<(), RoleError> {
        match change {
            Change::Assigned {
                partition,
                committed,
                start,
            } => {
                let committed = committed.unwrap_or(0);
                silent_upto.remove(&partition);
                if start < committed {
                    // Behind: replay what another owner committed.
                    silent_upto.insert(partition, committed - 1);
                } else if start > committed {
                    // Ahead: batches applied here whose transaction never
                    // committed; their effects are the outbox on disk.
                    let outbox = self.inboxes.outbox(partition)?;
                    tracing::info!(
                        partition,
                        committed,
                        start,
                        records = outbox.records.len(),
                        notifications = outbox.notifications.len(),
                        "disk ahead of the group; committing its outbox"
                    );
                    owed.owe(partition, owed_of(outbox));
                }
                tracing::info!(partition, committed, start, "deliver partition assigned");
            }
            Change::Revoked { partition } => {
                owed.revoke(partition);
                silent_upto.remove(&partition);
                tracing::info!(partition, "deliver partition revoked");
            }
        }
        Ok(())
    }

    /// Applies one poll, partition by partition.
    async fn apply(
        &self,
        records: &[Record],
        silent_upto: &HashMap<u32, u64>,
        owed: &mut Uncommitted<Owed>,
    ) -> Result<(), RoleError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut dead = Vec::new();
        let mut partitions = Vec::new();
        for (partition, batch) in by_partition(records) {
            let mut silent = Vec::new();
            let mut live = Vec::new();
            let mut last_silent = None;
            for r in &batch {
                match DeliverRecord::decode(r.payload.clone()) {
                    Ok(d) if silent_upto.get(&partition).is_some_and(|&h| r.offset <= h) => {
                        silent.push(d);
                        last_silent = Some(r.offset);
                    }
                    Ok(d) => live.push(d),
                    Err(e) => dead.push(r.dead_letter(&self.topics, &e)),
                }
            }
            let last = batch.last().map_or(0, |r| r.offset);
            partitions.push((partition, silent, last_silent, live, last));
        }
        // A poison record is kept, never dropped: produced before the batch
        // goes on, however long the broker takes to take it.
        while !dead.is_empty() {
            match self.bus.produce(dead.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "producing dead letters failed; again");
                    tokio::time::sleep(DEAD_LETTER_RETRY).await;
                }
            }
        }
        let users: Vec<&str> = partitions
            .iter()
            .flat_map(|(_, _, _, live, _)| users_to_route(live))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let presence = self.presence.lookup(&users).await;
        let mut pushes = Vec::new();
        for (partition, silent, last_silent, live, last) in partitions {
            let inboxes = self.inboxes.clone();
            let before = owed_outbox(owed.outputs(partition));
            let presence = presence.clone();
            let (applied_live, effects) = tokio::task::spawn_blocking(move || {
                if let Some(last_silent) = last_silent {
                    inboxes.apply_silently(partition, silent, last_silent)?;
                }
                if live.is_empty() {
                    // Nothing to commit: the group's offset is past these
                    // already (committing theirs would move it back).
                    return Ok((false, Effects::default()));
                }
                inboxes
                    .apply(partition, live, &presence, last, before)
                    .map(|e| (true, e))
            })
            .await
            .expect("inbox apply panicked")?;
            pushes.extend(effects.pushes);
            if applied_live {
                let new = owed_of(StoreOutbox {
                    records: effects.records,
                    notifications: effects.notifications,
                    changes: effects.changes,
                });
                owed.add(partition, new, last + 1);
            }
        }
        self.push(pushes).await;
        Ok(())
    }

    /// Frames for live sessions, through their edges' topics.
    async fn push(&self, pushes: Vec<(crate::presence::SessionRoute, Bytes)>) {
        if pushes.is_empty() {
            return;
        }
        let pushes: Vec<Outgoing> = pushes
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
        if let Err(e) = self.bus.produce(pushes).await {
            tracing::warn!(error = %e, "push to edge failed; sessions catch up on sync");
        }
    }

    fn outgoing(&self, partition: u32, owed: Owed) -> Outgoing {
        match owed {
            Owed::Change(change) => {
                let mut key = Vec::with_capacity(1 + change.key.len());
                key.push(change.space as u8);
                key.extend_from_slice(&change.key);
                Outgoing::to_partition(self.topics.changelog(), partition, key, change.value)
            }
            Owed::Deliver(rec) => {
                let key = rec.user.clone();
                Outgoing::new(self.topics.deliver(), key, Bytes::from(rec.encode_to_vec()))
            }
            Owed::Push(rec) => {
                let key = rec.user.clone();
                Outgoing::new(self.topics.push(), key, Bytes::from(rec.encode_to_vec()))
            }
        }
    }
}

fn owed_of(outbox: StoreOutbox) -> Vec<Owed> {
    let mut out: Vec<Owed> = outbox
        .records
        .into_iter()
        .map(|r| Owed::Deliver(Box::new(r)))
        .collect();
    out.extend(outbox.notifications.into_iter().map(Owed::Push));
    out.extend(outbox.changes.into_iter().map(Owed::Change));
    out
}

fn owed_outbox(owed: &[Owed]) -> StoreOutbox {
    let mut outbox = StoreOutbox::default();
    for o in owed {
        match o {
            Owed::Deliver(r) => outbox.records.push((**r).clone()),
            Owed::Push(r) => outbox.notifications.push(r.clone()),
            Owed::Change(c) => outbox.changes.push(c.clone()),
        }
    }
    outbox
}

/// The users whose new entries a batch may push live (messages, receipts).
fn users_to_route(records: &[DeliverRecord]) -> impl Iterator<Item = &str> {
    records
        .iter()
        .filter(|d| {
            matches!(
                d.kind,
                Some(deliver_record::Kind::Message(_)) | Some(deliver_record::Kind::Receipt(_))
            )
        })
        // Conversation histories have no sessions.
        .filter_map(|d| InboxOwner::parse(&d.user).user())
}
