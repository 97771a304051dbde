//! The cluster store's inboxes: the inbox rules ([`crate::engine`]) over
//! fjall, fed by `deliver` partitions.
//!
//! [`Inboxes::apply`] applies a batch of one partition's records and
//! commits, in ONE fjall batch with one persist: the inbox changes, the
//! last offset applied of the partition, and the partition's outbox (the
//! receipts for other inboxes and push notifications not yet known to be
//! committed on the bus, this batch's among them). The role commits the
//! outbox to Kafka in a transaction with the offsets; a crash before that
//! leaves it on disk, and when the partition is this store's again and the
//! group's committed offset is behind the disk, [`Inboxes::outbox`] hands
//! it to the role to commit: an ack that moved a cursor always yields its
//! receipts, once.

use bytes::Bytes;
use fjall::{Database, PersistMode};
use parking_lot::Mutex;
use prost::Message;
use samvad_proto::bus::{DeliverRecord, PushRecord, StateChange, StoreOutbox};

use crate::engine::{Effect, FjallState, Holding, InboxRules, Input, Space};
use crate::presence::{PresenceMap, SessionRoute};
use crate::StoreError;

pub use samvad_core::inbox::{HISTORY_PAGE_MAX, SYNC_PAGE};

/// The outbox of partition `partition`, in the Applied keyspace (next to
/// the applied offsets, keyed by the partition's 4 bytes).
fn outbox_key(partition: u32) -> Vec<u8> {
    let mut key = b"outbox/".to_vec();
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// What the role carries out after a batch is durable.
#[derive(Debug, Default)]
pub struct Effects {
    /// Frames for live sessions (best effort: a session that misses one
    /// gets it on its next sync).
    pub pushes: Vec<(SessionRoute, Bytes)>,
    /// The batch's outbox, already durable: records for `deliver`.
    pub records: Vec<DeliverRecord>,
    /// The batch's outbox: push notifications.
    pub notifications: Vec<PushRecord>,
    /// The batch's outbox: its changes to the state, for the changelog.
    pub changes: Vec<StateChange>,
}

pub struct Inboxes {
    state: FjallState,
    rules: Mutex<InboxRules>,
    persist: PersistMode,
}

impl Inboxes {
    pub fn open(db: &Database, persist: PersistMode) -> Result<Self, StoreError> {
        let state = FjallState::open(db)?;
        let mut rules = InboxRules::new(Holding::Given);
        rules.remember_synced(&state)?;
        Ok(Inboxes {
            state,
            rules: Mutex::new(rules),
            persist,
        })
    }

    /// A step of `sweep` over the inboxes on this disk: the `deliver`
    /// records that expire them, for the role to produce to their
    /// partitions (applied there, in order with everything else, like any
    /// record; an owner this store no longer holds is expired by its
    /// holder).
    pub fn sweep(
        &self,
        sweep: &mut crate::engine::Sweep,
        retention: &crate::engine::Retention,
    ) -> Result<Vec<DeliverRecord>, StoreError> {
        Ok(sweep
            .step(
                &self.state,
                retention,
                samvad_core::clock::unix_ms(),
                |_| true,
            )?
            .iter()
            .map(Input::to_record)
            .collect())
    }

    /// The last seq and the cursor of `user`'s inbox.
    pub fn counters(&self, user: &str) -> Result<(u64, u64), StoreError> {
        Ok(self.rules.lock().counters(&self.state, user)?)
    }

    /// The last offset of `deliver` partition `partition` applied here.
    pub fn applied_offset(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        use crate::engine::Committed;
        match self.state.get(Space::Applied, &partition.to_be_bytes())? {
            Some(v) => Ok(Some(u64::from_be_bytes(v.as_ref().try_into().map_err(
                |_| StoreError::Corrupt {
                    what: "applied offset",
                },
            )?))),
            None => Ok(None),
        }
    }

    /// The outbox of `partition` as the last batch applied here left it:
    /// what this store owed the bus for the partition then.
    pub fn outbox(&self, partition: u32) -> Result<StoreOutbox, StoreError> {
        use crate::engine::Committed;
        let Some(bytes) = self.state.get(Space::Applied, &outbox_key(partition))? else {
            return Ok(StoreOutbox::default());
        };
        StoreOutbox::decode(bytes).map_err(|_| StoreError::Corrupt {
            what: "store outbox",
        })
    }

    /// Writes changes read back from the changelog of a partition this
    /// store has no state for (one chunk of a restore; durable when it
    /// returns).
    pub fn restore(&self, changes: &[StateChange]) -> Result<(), StoreError> {
        let mut batch = self.state.batch(&Default::default());
        for change in changes {
            let Some(&space) = Space::ALL.get(change.space as usize) else {
                return Err(StoreError::Corrupt {
                    what: "changelog keyspace",
                });
            };
            match &change.value {
                Some(value) => self.state.put(&mut batch, space, &change.key, value),
                None => self.state.remove(&mut batch, space, &change.key),
            }
        }
        self.state.commit(batch, Some(self.persist))
    }

    /// Ends a restore: the partition's state is the changelog's up to the
    /// group's committed offset, so that is where its records resume.
    /// The rules forget what they cached (it predates the restore) and
    /// take the restored synced sessions.
    pub fn restored(&self, partition: u32, last_applied: u64) -> Result<(), StoreError> {
        let mut batch = self.state.batch(&Default::default());
        self.state.put(
            &mut batch,
            Space::Applied,
            &partition.to_be_bytes(),
            &last_applied.to_be_bytes(),
        );
        self.state.commit(batch, Some(PersistMode::SyncAll))?;
        let mut rules = self.rules.lock();
        rules.forget();
        // The restored partition's synced sessions go on getting pushes.
        Ok(rules.remember_synced(&self.state)?)
    }

    /// Applies a batch of `partition`'s `deliver` records, the last at
    /// offset `last`; durable when it returns. `owed` is what the role
    /// still owes the bus for the partition (earlier batches not yet
    /// committed): the partition's outbox becomes `owed` and this batch's.
    pub fn apply(
        &self,
        partition: u32,
        records: Vec<DeliverRecord>,
        presence: &PresenceMap,
        last: u64,
        owed: StoreOutbox,
    ) -> Result<Effects, StoreError> {
        self.apply_with(records, presence, partition, last, Some(owed))
    }

    /// Applies records whose effects a previous owner already carried out:
    /// the inboxes change, nothing is pushed or produced.
    pub fn apply_silently(
        &self,
        partition: u32,
        records: Vec<DeliverRecord>,
        last: u64,
    ) -> Result<(), StoreError> {
        self.apply_with(records, &PresenceMap::new(), partition, last, None)
            .map(|_| ())
    }

    fn apply_with(
        &self,
        records: Vec<DeliverRecord>,
        presence: &PresenceMap,
        partition: u32,
        last: u64,
        owed: Option<StoreOutbox>,
    ) -> Result<Effects, StoreError> {
        let inputs = records.into_iter().filter_map(|r| {
            let input = Input::from_record(r);
            if input.is_none() {
                tracing::warn!("deliver record without a kind; skipped");
            }
            input
        });
        let mut rules = self.rules.lock();
        let output = rules.apply(&self.state, inputs, presence, samvad_core::clock::unix_ms())?;
        let mut batch = self.state.batch(&output.pending);
        self.state.put(
            &mut batch,
            Space::Applied,
            &partition.to_be_bytes(),
            &last.to_be_bytes(),
        );
        let mut effects = Effects::default();
        if let Some(mut outbox) = owed {
            for effect in output.effects {
                match effect {
                    Effect::Push { route, frame } => effects.pushes.push((route, frame)),
                    Effect::Forward(input) => effects.records.push(input.to_record()),
                    Effect::Offline { user, seq, frame } => {
                        effects.notifications.push(PushRecord { user, seq, frame })
                    }
                }
            }
            effects.changes = output
                .pending
                .iter()
                .map(|(space, key, value)| StateChange {
                    space: space as u32,
                    key: Bytes::copy_from_slice(key),
                    value: value.cloned(),
                })
                .collect();
            outbox.records.extend(effects.records.iter().cloned());
            outbox
                .notifications
                .extend(effects.notifications.iter().cloned());
            outbox.changes.extend(effects.changes.iter().cloned());
            self.state.put(
                &mut batch,
                Space::Applied,
                &outbox_key(partition),
                &outbox.encode_to_vec(),
            );
        }
        match self.state.commit(batch, Some(self.persist)) {
            Ok(()) => {
                rules.committed(output.touched);
                Ok(effects)
            }
            Err(e) => {
                rules.forget();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_proto::bus::{deliver_record, AckRecord};
    use samvad_proto::v1;

    fn chat(id: &str, from: &str, to: &str) -> DeliverRecord {
        DeliverRecord {
            user: to.into(),
            then: Vec::new(),
            kind: Some(deliver_record::Kind::Message(v1::Envelope {
                id: id.into(),
                head: Some(v1::Head {
                    r#type: v1::HeadType::Chat as i32,
                    from: from.into(),
                    to: to.into(),
                    chatid: format!("{from}:{to}"),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn an_acks_receipts_are_kept_in_the_outbox_with_the_cursor_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let ack = DeliverRecord {
            user: "bob".into(),
            then: Vec::new(),
            kind: Some(deliver_record::Kind::Ack(AckRecord {
                seq: 2,
                device: "phone".into(),
            })),
        };
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let inboxes = Inboxes::open(&db, PersistMode::Buffer).unwrap();
            let first = inboxes
                .apply(
                    0,
                    vec![chat("m1", "alice", "bob"), chat("m2", "alice", "bob")],
                    &PresenceMap::new(),
                    1,
                    StoreOutbox::default(),
                )
                .unwrap();
            // The role committed the first batch's outbox: it owes nothing
            // from it.
            drop(first);
            let effects = inboxes
                .apply(0, vec![ack], &PresenceMap::new(), 2, StoreOutbox::default())
                .unwrap();
            assert_eq!(
                effects.records.len(),
                1,
                "one coalesced receipt: {effects:?}"
            );
            // The process dies here, before the role produced them.
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let db = Database::builder(dir.path()).open().unwrap();
        let inboxes = Inboxes::open(&db, PersistMode::Buffer).unwrap();
        assert_eq!(inboxes.applied_offset(0).unwrap(), Some(2));
        assert_eq!(inboxes.counters("bob").unwrap(), (2, 2));
        let owed = inboxes.outbox(0).unwrap();
        assert_eq!(inboxes.outbox(1).unwrap(), StoreOutbox::default());
        let receipts: Vec<(String, String, Vec<String>)> = owed
            .records
            .iter()
            .map(|r| match &r.kind {
                Some(deliver_record::Kind::Receipt(receipt)) => (
                    r.user.clone(),
                    receipt.message_id.clone(),
                    receipt.message_ids.clone(),
                ),
                other => panic!("a receipt, not {other:?}"),
            })
            .collect();
        assert_eq!(
            receipts,
            [(
                "alice".to_string(),
                "m2".to_string(),
                vec!["m1".to_string(), "m2".to_string()]
            )]
        );
        // Bob had no session: both entries were owed as push notifications
        // by the first batch, which the role committed (it owed nothing when
        // it applied the second).
        assert!(owed.notifications.is_empty());
    }
}
