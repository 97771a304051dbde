//! Inbox rules: what a batch of `deliver` records does to the inboxes.
//!
//! [`Inboxes::apply`] is the whole store-side delivery protocol over plain
//! data: it takes decoded records and a presence snapshot, writes one fjall
//! batch (one persist for the batch: group commit) and returns the effects
//! (frames to push to sessions, receipts to send back over the bus) for the
//! I/O loop in [`crate::role`] to carry out.
//!
//! - A message gets the owner's next sequence number, gap-free, unless its
//!   `(from, id)` is already in the inbox (then nothing happens: duplicates
//!   are never delivered twice).
//! - An ack moves the cursor forward and yields a DELIVERED receipt per
//!   message it covers.
//! - A sync replays a page of entries to one session; until the last page
//!   is sent the session gets no live pushes, so replay and live never
//!   interleave out of order or twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};
use parking_lot::Mutex;
use prost::Message;
use samvad_proto::bus::{deliver_record, DeliverRecord};
use samvad_proto::v1::{self, server_frame, DeliveryState, ServerFrame};

use crate::keys::{dedupe_key, inbox_key, seq_of_inbox_key, user_prefix};
use crate::presence::{PresenceMap, SessionRoute};
use crate::StoreError;

/// Entries one sync page replays.
pub const SYNC_PAGE: usize = 256;

/// The two counters of an inbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxMeta {
    /// Sequence number of the newest entry (0: empty).
    pub last_seq: u64,
    /// Everything up to here was acknowledged by the owner.
    pub cursor: u64,
}

impl InboxMeta {
    fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.last_seq.to_be_bytes());
        out[8..].copy_from_slice(&self.cursor.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(InboxMeta {
            last_seq: u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
            cursor: u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
        })
    }
}

/// What the I/O loop must do after a batch is durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send an encoded `ServerFrame` to one session.
    Push { route: SessionRoute, frame: Bytes },
    /// Append a receipt to `user`'s inbox (a `deliver` record keyed by user).
    Receipt { user: String, receipt: v1::Receipt },
    /// `user` has no live session for entry `seq` (push notification);
    /// `frame` is the entry.
    Offline {
        user: String,
        seq: u64,
        frame: Bytes,
    },
}

pub struct Inboxes {
    db: Database,
    inbox: Keyspace,
    meta: Keyspace,
    dedupe: Keyspace,
    /// Per `deliver` partition, the last offset applied (cluster stores):
    /// written in the same batch as the inbox changes it produced.
    applied: Keyspace,
    /// `#<chatid> \0 user \0 message id` → empty: what a user deleted for
    /// themselves from a conversation's history.
    hidden: Keyspace,
    /// `user \0 device` → the last seq that device acked.
    device_cursors: Keyspace,
    persist: PersistMode,
    metas: Mutex<HashMap<String, InboxMeta>>,
    /// Per user, the sessions whose sync has replayed everything: only they
    /// get live pushes. A session that registered but whose sync is not done
    /// yet would otherwise see live entries before (and again within) its
    /// replay.
    synced: Mutex<HashMap<String, HashSet<Arc<str>>>>,
}

/// State of one `apply` call: the open batch and what it changed.
struct Pass<'a> {
    inboxes: &'a Inboxes,
    batch: OwnedWriteBatch,
    metas: HashMap<String, InboxMeta>,
    fresh: HashSet<Vec<u8>>,
    /// Device cursors moved in this pass (also in `batch`).
    device_cursors: HashMap<Vec<u8>, u64>,
    effects: Vec<Effect>,
}

impl Inboxes {
    pub fn open(db: &Database, persist: PersistMode) -> Result<Self, StoreError> {
        Ok(Inboxes {
            db: db.clone(),
            inbox: db.keyspace("inbox", KeyspaceCreateOptions::default)?,
            meta: db.keyspace("inbox_meta", KeyspaceCreateOptions::default)?,
            dedupe: db.keyspace("dedupe", KeyspaceCreateOptions::default)?,
            applied: db.keyspace("applied", KeyspaceCreateOptions::default)?,
            hidden: db.keyspace("hidden", KeyspaceCreateOptions::default)?,
            device_cursors: db.keyspace("device_cursors", KeyspaceCreateOptions::default)?,
            persist,
            metas: Mutex::new(HashMap::new()),
            synced: Mutex::new(HashMap::new()),
        })
    }

    /// The counters of `user`'s inbox.
    pub fn meta(&self, user: &str) -> Result<InboxMeta, StoreError> {
        if let Some(m) = self.metas.lock().get(user) {
            return Ok(*m);
        }
        let m = match self.meta.get(user)? {
            Some(v) => InboxMeta::decode(&v).ok_or(StoreError::Corrupt { what: "inbox meta" })?,
            None => InboxMeta::default(),
        };
        self.metas.lock().insert(user.to_string(), m);
        Ok(m)
    }

    /// Encoded frames of `user`'s entries after `after`, at most `limit`.
    pub fn entries_after(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let start = inbox_key(user, after.saturating_add(1));
        let end = inbox_key(user, u64::MAX);
        let mut out = Vec::new();
        for kv in self.inbox.range(start..=end).take(limit) {
            let (k, v) = kv.into_inner()?;
            let seq = seq_of_inbox_key(&k).ok_or(StoreError::Corrupt { what: "inbox key" })?;
            out.push((seq, Bytes::copy_from_slice(&v)));
        }
        Ok(out)
    }

    /// Up to `limit` entries of `user` below `before` (0: from the newest),
    /// newest first.
    pub fn entries_before(
        &self,
        user: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let start = inbox_key(user, 1);
        let end = inbox_key(user, if before == 0 { u64::MAX } else { before - 1 });
        let mut out = Vec::new();
        if before == 1 {
            return Ok(out);
        }
        for kv in self.inbox.range(start..=end).rev().take(limit) {
            let (k, v) = kv.into_inner()?;
            let seq = seq_of_inbox_key(&k).ok_or(StoreError::Corrupt { what: "inbox key" })?;
            out.push((seq, Bytes::copy_from_slice(&v)));
        }
        Ok(out)
    }

    /// Applies a batch of `deliver` records; durable when it returns.
    pub fn apply(
        &self,
        records: &[DeliverRecord],
        presence: &PresenceMap,
    ) -> Result<Vec<Effect>, StoreError> {
        self.apply_at(records, presence, &[])
    }

    /// The last offset of `deliver` partition `partition` applied here.
    pub fn applied_offset(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        Ok(match self.applied.get(partition.to_be_bytes())? {
            Some(v) => Some(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt {
                    what: "applied offset",
                }
            })?)),
            None => None,
        })
    }

    /// [`Inboxes::apply`], also recording `(partition, last offset)` of the
    /// records in the same atomic batch: after a crash the inboxes and the
    /// offsets agree, so a replay resumes exactly after what was applied.
    pub fn apply_at(
        &self,
        records: &[DeliverRecord],
        presence: &PresenceMap,
        offsets: &[(u32, u64)],
    ) -> Result<Vec<Effect>, StoreError> {
        let mut pass = Pass {
            inboxes: self,
            batch: self.db.batch(),
            metas: HashMap::new(),
            fresh: HashSet::new(),
            device_cursors: HashMap::new(),
            effects: Vec::new(),
        };
        for rec in records {
            let user = rec.user.as_str();
            match &rec.kind {
                Some(deliver_record::Kind::Message(env)) => {
                    pass.append_message(user, env, presence)?
                }
                Some(deliver_record::Kind::Receipt(r)) => pass.append_receipt(user, r, presence)?,
                Some(deliver_record::Kind::Ack(ack)) => pass.ack(user, &ack.device, ack.seq)?,
                Some(deliver_record::Kind::Sync(sync)) => pass.sync(user, sync)?,
                Some(deliver_record::Kind::History(request)) => pass.history(user, request)?,
                Some(deliver_record::Kind::Hide(hide)) => pass.hide(user, hide)?,
                None => tracing::warn!(user, "deliver record without a kind; skipped"),
            }
        }
        for (partition, offset) in offsets {
            pass.batch
                .insert(&self.applied, partition.to_be_bytes(), offset.to_be_bytes());
        }
        pass.flush(Some(self.persist))?;
        Ok(pass.effects)
    }

    /// The sessions of `routes` that are synced. Forgets synced sessions
    /// that are not among a user's live ones (when presence names any).
    fn live_routes<'r>(&self, user: &str, routes: &'r [SessionRoute]) -> Vec<&'r SessionRoute> {
        if routes.is_empty() {
            // No live session, or presence could not be read (Redis down,
            // an entry briefly expired): forgetting the synced sessions here
            // would stop their live pushes for good. Nothing to push anyway.
            return Vec::new();
        }
        let mut synced = self.synced.lock();
        let Some(sessions) = synced.get_mut(user) else {
            return Vec::new();
        };
        sessions.retain(|s| routes.iter().any(|r| r.session == *s));
        routes
            .iter()
            .filter(|r| sessions.contains(&r.session))
            .collect()
    }
}

impl Pass<'_> {
    fn meta(&mut self, user: &str) -> Result<InboxMeta, StoreError> {
        if let Some(m) = self.metas.get(user) {
            return Ok(*m);
        }
        let m = self.inboxes.meta(user)?;
        self.metas.insert(user.to_string(), m);
        Ok(m)
    }

    /// Commits what the batch holds so far (with `persist`, durably).
    fn flush(&mut self, persist: Option<PersistMode>) -> Result<(), StoreError> {
        let inboxes = self.inboxes;
        let mut batch = std::mem::replace(&mut self.batch, inboxes.db.batch());
        for (user, m) in &self.metas {
            batch.insert(&inboxes.meta, user.as_str(), m.encode());
        }
        batch.durability(persist).commit()?;
        inboxes.metas.lock().extend(self.metas.drain());
        self.fresh.clear();
        Ok(())
    }

    fn is_duplicate(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.fresh.contains(key) || self.inboxes.dedupe.contains_key(key)?)
    }

    /// Appends one entry under a fresh sequence number and routes it.
    fn append(
        &mut self,
        user: &str,
        dedupe: Vec<u8>,
        frame_for: impl FnOnce(u64) -> ServerFrame,
        presence: &PresenceMap,
    ) -> Result<(), StoreError> {
        if self.is_duplicate(&dedupe)? {
            return Ok(());
        }
        let mut m = self.meta(user)?;
        m.last_seq += 1;
        let seq = m.last_seq;
        self.metas.insert(user.to_string(), m);
        let frame = Bytes::from(frame_for(seq).encode_to_vec());
        self.batch
            .insert(&self.inboxes.inbox, inbox_key(user, seq), frame.as_ref());
        self.batch
            .insert(&self.inboxes.dedupe, dedupe.clone(), seq.to_be_bytes());
        self.fresh.insert(dedupe);
        if is_history(user) {
            // A conversation's history is read page by page, never pushed.
            return Ok(());
        }
        let routes = presence.get(user).map_or(&[][..], Vec::as_slice);
        for route in self.inboxes.live_routes(user, routes) {
            self.effects.push(Effect::Push {
                route: route.clone(),
                frame: frame.clone(),
            });
        }
        if !presence.contains_key(user) {
            self.effects.push(Effect::Offline {
                user: user.to_string(),
                seq,
                frame,
            });
        }
        Ok(())
    }

    fn append_message(
        &mut self,
        user: &str,
        env: &v1::Envelope,
        presence: &PresenceMap,
    ) -> Result<(), StoreError> {
        let from = env.head.as_ref().map_or("", |h| h.from.as_str());
        let deleting = env
            .head
            .as_ref()
            .is_some_and(|h| h.action() == v1::Action::Delete);
        if deleting && !env.ref_id.is_empty() {
            self.flush(None)?;
            self.tombstone(user, &env.ref_from, &env.ref_id)?;
        }
        let dedupe = dedupe_key(user, &[from, &env.id]);
        self.append(
            user,
            dedupe,
            |seq| {
                let mut env = env.clone();
                env.seq = seq;
                ServerFrame::of(server_frame::Kind::Deliver(v1::Deliver {
                    envelope: Some(env),
                }))
            },
            presence,
        )
    }

    /// Deleted for everyone (or for me): `author`'s message `id` in
    /// `owner`'s inbox keeps its place and id, loses its content. The dedupe
    /// key holds the author, so a delete that names the wrong author finds
    /// nothing. Reads committed state: callers flush the batch first.
    fn tombstone(&mut self, owner: &str, author: &str, id: &str) -> Result<(), StoreError> {
        let Some(seq) = self.inboxes.dedupe.get(dedupe_key(owner, &[author, id]))? else {
            return Ok(());
        };
        let seq = u64::from_be_bytes(seq.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            what: "dedupe entry",
        })?);
        let key = inbox_key(owner, seq);
        let Some(stored) = self.inboxes.inbox.get(&key)? else {
            return Ok(());
        };
        let frame = ServerFrame::decode(stored.as_ref()).map_err(|_| StoreError::Corrupt {
            what: "inbox entry",
        })?;
        if let Some(server_frame::Kind::Deliver(v1::Deliver {
            envelope: Some(mut original),
        })) = frame.kind
        {
            original.body = None;
            original.attachments.clear();
            original.meta = None;
            if let Some(head) = original.head.as_mut() {
                head.action = v1::Action::Delete as i32;
            }
            let tomb = ServerFrame::of(server_frame::Kind::Deliver(v1::Deliver {
                envelope: Some(original),
            }));
            self.batch
                .insert(&self.inboxes.inbox, key, tomb.encode_to_vec());
        }
        Ok(())
    }

    fn append_receipt(
        &mut self,
        user: &str,
        r: &v1::Receipt,
        presence: &PresenceMap,
    ) -> Result<(), StoreError> {
        let state = r.state.to_string();
        // `\x01` cannot start a user name, so receipts never collide with messages.
        let dedupe = dedupe_key(user, &["\u{1}", &r.by, &r.message_id, &state]);
        self.append(
            user,
            dedupe,
            |seq| {
                ServerFrame::of(server_frame::Kind::Receipt(v1::Receipt {
                    seq,
                    ..r.clone()
                }))
            },
            presence,
        )
    }

    /// The last seq `device` of `user` acked (0: none).
    fn device_cursor(&self, user: &str, device: &str) -> Result<u64, StoreError> {
        let key = dedupe_key(user, &[device]);
        if let Some(c) = self.device_cursors.get(&key) {
            return Ok(*c);
        }
        Ok(match self.inboxes.device_cursors.get(&key)? {
            Some(v) => {
                u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "device cursor",
                })?)
            }
            None => 0,
        })
    }

    /// An ack moves the device's cursor, and the user's (the furthest any
    /// device got, which drives DELIVERED receipts).
    fn ack(&mut self, user: &str, device: &str, seq: u64) -> Result<(), StoreError> {
        let mut m = self.meta(user)?;
        let upto = seq.min(m.last_seq);
        if !device.is_empty() && upto > self.device_cursor(user, device)? {
            let key = dedupe_key(user, &[device]);
            self.batch.insert(
                &self.inboxes.device_cursors,
                key.clone(),
                upto.to_be_bytes(),
            );
            self.device_cursors.insert(key, upto);
        }
        if upto <= m.cursor {
            return Ok(());
        }
        // The acked entries may sit in this batch: make them readable.
        self.flush(None)?;
        let now = now_ms();
        for kv in self
            .inboxes
            .inbox
            .range(inbox_key(user, m.cursor + 1)..=inbox_key(user, upto))
        {
            let (_, v) = kv.into_inner()?;
            let frame = ServerFrame::decode(&v[..]).map_err(|_| StoreError::Corrupt {
                what: "inbox entry",
            })?;
            if let Some(server_frame::Kind::Deliver(v1::Deliver {
                envelope: Some(env),
            })) = frame.kind
            {
                let head = env.head.unwrap_or_default();
                // No per-member DELIVERED receipts for group messages: they
                // would multiply every message by its group's size on the
                // way back to the sender (each member's cursor still says
                // what it has).
                if head.from.is_empty() || head.from == user || head.r#type() == v1::HeadType::Group
                {
                    continue;
                }
                self.effects.push(Effect::Receipt {
                    user: head.from,
                    receipt: v1::Receipt {
                        seq: 0,
                        message_id: env.id,
                        by: user.to_string(),
                        state: DeliveryState::Delivered as i32,
                        chatid: head.chatid,
                        ts: now,
                    },
                });
            }
        }
        m.cursor = upto;
        self.metas.insert(user.to_string(), m);
        Ok(())
    }

    fn sync(&mut self, user: &str, sync: &samvad_proto::bus::SyncRecord) -> Result<(), StoreError> {
        self.flush(None)?;
        let m = self.meta(user)?;
        let after = if sync.resume {
            self.device_cursor(user, &sync.device)?
        } else {
            sync.after_seq
        };
        let entries = self.inboxes.entries_after(user, after, SYNC_PAGE + 1)?;
        let more = entries.len() > SYNC_PAGE;
        let route = SessionRoute {
            session: sync.session.as_str().into(),
            edge: sync.edge.as_str().into(),
        };
        let mut last = after;
        for (seq, frame) in entries.into_iter().take(SYNC_PAGE) {
            last = seq;
            self.effects.push(Effect::Push {
                route: route.clone(),
                frame,
            });
        }
        if !more {
            last = last.max(m.last_seq);
        }
        let done = ServerFrame::of(server_frame::Kind::SyncDone(v1::SyncDone {
            last_seq: last,
            more,
        }));
        self.effects.push(Effect::Push {
            route: route.clone(),
            frame: Bytes::from(done.encode_to_vec()),
        });
        let mut synced = self.inboxes.synced.lock();
        let sessions = synced.entry(user.to_string()).or_default();
        if more {
            sessions.remove(&route.session);
        } else {
            sessions.insert(route.session);
        }
        Ok(())
    }
}

/// The inbox that holds conversation `chatid`'s history. User names and
/// group ids never contain `#`.
pub fn history_owner(chatid: &str) -> String {
    format!("#{chatid}")
}

fn is_history(owner: &str) -> bool {
    owner.starts_with('#')
}

/// Most entries one history page holds.
pub const HISTORY_PAGE_MAX: usize = 100;
const HISTORY_PAGE_DEFAULT: usize = 50;

impl Pass<'_> {
    /// Sends one page of a conversation's history to the asking session.
    fn history(
        &mut self,
        owner: &str,
        request: &samvad_proto::bus::HistoryRecord,
    ) -> Result<(), StoreError> {
        if !is_history(owner) {
            tracing::warn!(owner, "history request for a user's inbox; skipped");
            return Ok(());
        }
        // Entries of this very batch must be readable.
        self.flush(None)?;
        let limit = match request.limit as usize {
            0 => HISTORY_PAGE_DEFAULT,
            n => n.min(HISTORY_PAGE_MAX),
        };
        let entries = self
            .inboxes
            .entries_before(owner, request.before_seq, limit + 1)?;
        let more = entries.len() > limit;
        let mut messages = Vec::with_capacity(limit);
        let hidden = &self.inboxes.hidden;
        for (_, frame) in entries.into_iter().take(limit) {
            let frame = ServerFrame::decode(frame).map_err(|_| StoreError::Corrupt {
                what: "history entry",
            })?;
            if let Some(server_frame::Kind::Deliver(v1::Deliver {
                envelope: Some(env),
            })) = frame.kind
            {
                if !hidden.contains_key(hidden_key(owner, &request.user, &env.id))? {
                    messages.push(env);
                }
            }
        }
        let page = ServerFrame::of(server_frame::Kind::History(v1::HistoryPage {
            chatid: request.chatid.clone(),
            messages,
            more,
        }));
        self.effects.push(Effect::Push {
            route: SessionRoute {
                session: request.session.clone().into(),
                edge: request.edge.clone().into(),
            },
            frame: Bytes::from(page.encode_to_vec()),
        });
        Ok(())
    }
}

fn hidden_key(owner: &str, user: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + user.len() + id.len() + 2);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

impl Pass<'_> {
    /// Delete for me: in the user's own inbox the entries are emptied in
    /// place; in a conversation's history they are marked hidden for them.
    fn hide(
        &mut self,
        owner: &str,
        hide: &samvad_proto::bus::HideRecord,
    ) -> Result<(), StoreError> {
        self.flush(None)?;
        for id in &hide.message_ids {
            if is_history(owner) {
                self.batch
                    .insert(&self.inboxes.hidden, hidden_key(owner, &hide.user, id), b"");
            } else if owner == hide.user {
                self.tombstone(owner, &hide.author, id)?;
            }
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// All of `user`'s entries, for tests and diagnostics.
pub fn user_entries(inboxes: &Inboxes, user: &str) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for kv in inboxes.inbox.prefix(user_prefix(user)) {
        let k = kv.key()?;
        out.push(seq_of_inbox_key(&k).ok_or(StoreError::Corrupt { what: "inbox key" })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_proto::bus::AckRecord;

    fn message(id: &str, kind: v1::HeadType, from: &str, to: &str) -> DeliverRecord {
        DeliverRecord {
            user: "bob".into(),
            kind: Some(deliver_record::Kind::Message(v1::Envelope {
                id: id.into(),
                head: Some(v1::Head {
                    r#type: kind as i32,
                    from: from.into(),
                    to: to.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_conversation_history_pages_newest_first_and_is_never_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let inboxes = Inboxes::open(&db, PersistMode::Buffer).unwrap();
        let owner = history_owner("alice:bob");
        let mut presence = PresenceMap::default();
        // Even a (bogus) presence entry for the log pushes nothing.
        presence.insert(owner.clone(), Vec::new());
        let records: Vec<DeliverRecord> = (0..5)
            .map(|i| DeliverRecord {
                user: owner.clone(),
                ..message(&format!("m{i}"), v1::HeadType::Chat, "alice", "bob")
            })
            .collect();
        let effects = inboxes.apply(&records, &presence).unwrap();
        assert!(effects.is_empty(), "{effects:?}");
        let page = |before: u64, limit: u32| {
            let request = DeliverRecord {
                user: owner.clone(),
                kind: Some(deliver_record::Kind::History(
                    samvad_proto::bus::HistoryRecord {
                        session: "s1".into(),
                        edge: "e1".into(),
                        chatid: "alice:bob".into(),
                        before_seq: before,
                        limit,
                        user: "bob".into(),
                    },
                )),
            };
            let effects = inboxes.apply(&[request], &presence).unwrap();
            let [Effect::Push { route, frame }] = &effects[..] else {
                panic!("one page expected: {effects:?}")
            };
            assert_eq!(&*route.session, "s1");
            let Some(server_frame::Kind::History(page)) =
                ServerFrame::decode(frame.clone()).unwrap().kind
            else {
                panic!("a history page")
            };
            let seqs: Vec<(u64, String)> =
                page.messages.into_iter().map(|e| (e.seq, e.id)).collect();
            (seqs, page.more)
        };
        let (first, more) = page(0, 2);
        assert_eq!(first, [(5, "m4".to_string()), (4, "m3".to_string())]);
        assert!(more);
        let (second, more) = page(4, 2);
        assert_eq!(second, [(3, "m2".to_string()), (2, "m1".to_string())]);
        assert!(more);
        let (last, more) = page(2, 2);
        assert_eq!(last, [(1, "m0".to_string())]);
        assert!(!more);
        assert_eq!(page(1, 2), (Vec::new(), false));

        // A page holds at most HISTORY_PAGE_MAX, whatever the limit asked.
        let more: Vec<DeliverRecord> = (5..HISTORY_PAGE_MAX + 10)
            .map(|i| DeliverRecord {
                user: owner.clone(),
                ..message(&format!("m{i}"), v1::HeadType::Chat, "alice", "bob")
            })
            .collect();
        inboxes.apply(&more, &presence).unwrap();
        let (big, more) = page(0, u32::MAX);
        assert_eq!(big.len(), HISTORY_PAGE_MAX);
        assert!(more);
        let (default, _) = page(0, 0);
        assert_eq!(
            default.len(),
            HISTORY_PAGE_DEFAULT,
            "0 asks for the default"
        );
    }

    #[test]
    fn acks_send_delivered_receipts_for_chats_not_for_group_messages() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let inboxes = Inboxes::open(&db, PersistMode::Buffer).unwrap();
        let presence = PresenceMap::default();
        inboxes
            .apply(
                &[
                    message("c1", v1::HeadType::Chat, "alice", "bob"),
                    message("g1", v1::HeadType::Group, "alice", "g-crew"),
                    message("c2", v1::HeadType::Chat, "carol", "bob"),
                ],
                &presence,
            )
            .unwrap();
        let ack = DeliverRecord {
            user: "bob".into(),
            kind: Some(deliver_record::Kind::Ack(AckRecord {
                seq: 3,
                device: "phone".into(),
            })),
        };
        let effects = inboxes.apply(&[ack], &presence).unwrap();
        let receipts: Vec<(String, String)> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Receipt { user, receipt } => Some((user, receipt.message_id)),
                _ => None,
            })
            .collect();
        assert_eq!(
            receipts,
            [
                ("alice".to_string(), "c1".to_string()),
                ("carol".to_string(), "c2".to_string())
            ]
        );
    }
}
