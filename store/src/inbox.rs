//! The cluster store's inboxes: the inbox rules ([`crate::engine`]) over
//! fjall, fed by `deliver` partitions.
//!
//! [`Inboxes::apply`] applies a batch of records and commits, in ONE fjall
//! batch with one persist: the inbox changes, the last offset applied per
//! partition, and the batch's outbox (receipts for other inboxes, push
//! notifications). The role produces the outbox after the commit; a crash
//! before that leaves it on disk and [`Inboxes::outbox`] hands it to the
//! role again at start, so an ack that moved a cursor always yields its
//! receipts (they are deduplicated where they land).

use bytes::Bytes;
use fjall::{Database, PersistMode};
use parking_lot::Mutex;
use prost::Message;
use samvad_proto::bus::{DeliverRecord, PushRecord, StoreOutbox};

use crate::engine::{Effect, FjallState, Holding, InboxRules, Input, Space};
use crate::presence::{PresenceMap, SessionRoute};
use crate::StoreError;

pub use crate::engine::rules::{history_owner, HISTORY_PAGE_MAX, SYNC_PAGE};

const OUTBOX_KEY: &[u8] = b"store-outbox";

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
}

pub struct Inboxes {
    state: FjallState,
    rules: Mutex<InboxRules>,
    persist: PersistMode,
}

impl Inboxes {
    pub fn open(db: &Database, persist: PersistMode) -> Result<Self, StoreError> {
        Ok(Inboxes {
            state: FjallState::open(db)?,
            rules: Mutex::new(InboxRules::new(Holding::Given)),
            persist,
        })
    }

    /// The last seq and the cursor of `user`'s inbox.
    pub fn counters(&self, user: &str) -> Result<(u64, u64), StoreError> {
        self.rules.lock().counters(&self.state, user)
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

    /// The outbox of the last committed batch (produced again at start:
    /// the process may have died before it was).
    pub fn outbox(&self) -> Result<Effects, StoreError> {
        use crate::engine::Committed;
        let Some(bytes) = self.state.get(Space::Applied, OUTBOX_KEY)? else {
            return Ok(Effects::default());
        };
        let outbox = StoreOutbox::decode(bytes).map_err(|_| StoreError::Corrupt {
            what: "store outbox",
        })?;
        Ok(Effects {
            pushes: Vec::new(),
            records: outbox.records,
            notifications: outbox.notifications,
        })
    }

    /// Applies a batch of `deliver` records; durable when it returns,
    /// with `(partition, last offset)` of the records in the same batch.
    pub fn apply(
        &self,
        records: Vec<DeliverRecord>,
        presence: &PresenceMap,
        offsets: &[(u32, u64)],
    ) -> Result<Effects, StoreError> {
        self.apply_with(records, presence, offsets, true)
    }

    /// Applies records whose effects a previous owner already carried out:
    /// the inboxes change, nothing is pushed or produced.
    pub fn apply_silently(&self, records: Vec<DeliverRecord>) -> Result<(), StoreError> {
        self.apply_with(records, &PresenceMap::new(), &[], false)
            .map(|_| ())
    }

    fn apply_with(
        &self,
        records: Vec<DeliverRecord>,
        presence: &PresenceMap,
        offsets: &[(u32, u64)],
        with_effects: bool,
    ) -> Result<Effects, StoreError> {
        let inputs = records.into_iter().filter_map(|r| {
            let input = Input::from_record(r);
            if input.is_none() {
                tracing::warn!("deliver record without a kind; skipped");
            }
            input
        });
        let mut rules = self.rules.lock();
        let output = rules.apply(&self.state, inputs, presence, now_ms())?;
        let mut batch = self.state.batch(&output.pending);
        for (partition, offset) in offsets {
            self.state.put(
                &mut batch,
                Space::Applied,
                &partition.to_be_bytes(),
                &offset.to_be_bytes(),
            );
        }
        let mut effects = Effects::default();
        if with_effects {
            for effect in output.effects {
                match effect {
                    Effect::Push { route, frame } => effects.pushes.push((route, frame)),
                    Effect::Forward(input) => effects.records.push(input.to_record()),
                    Effect::Offline { user, seq, frame } => {
                        effects.notifications.push(PushRecord { user, seq, frame })
                    }
                }
            }
            let outbox = StoreOutbox {
                records: effects.records.clone(),
                notifications: effects.notifications.clone(),
            };
            self.state.put(
                &mut batch,
                Space::Applied,
                OUTBOX_KEY,
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_proto::bus::{deliver_record, AckRecord};
    use samvad_proto::v1;

    fn chat(id: &str, from: &str, to: &str) -> DeliverRecord {
        DeliverRecord {
            user: to.into(),
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
            kind: Some(deliver_record::Kind::Ack(AckRecord {
                seq: 2,
                device: "phone".into(),
            })),
        };
        {
            let db = Database::builder(dir.path()).open().unwrap();
            let inboxes = Inboxes::open(&db, PersistMode::Buffer).unwrap();
            inboxes
                .apply(
                    vec![chat("m1", "alice", "bob"), chat("m2", "alice", "bob")],
                    &PresenceMap::new(),
                    &[(0, 1)],
                )
                .unwrap();
            let effects = inboxes
                .apply(vec![ack], &PresenceMap::new(), &[(0, 2)])
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
        let owed = inboxes.outbox().unwrap();
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
        // by the first batch, and the second batch's outbox replaced it.
        assert!(owed.notifications.is_empty());
    }
}
