//! The inbox rules as a state machine with no I/O and no clock.
//!
//! [`InboxRules::apply`] takes a batch of [`Input`]s over a read view of
//! committed state and returns an [`Output`]: the changes to commit (one
//! atomic write batch), the effects to carry out once they are durable
//! (pushes to sessions, inputs for inboxes held elsewhere, push
//! notifications) and the cache updates to keep once the commit succeeded
//! ([`InboxRules::committed`]; after a failed commit, [`InboxRules::forget`]).
//! Its caches only ever hold committed state, so replaying a batch that
//! was never committed gives the same output again.
//!
//! - A message gets the owner's next sequence number, gap-free, unless its
//!   `(from, id)` is already in the inbox: then nothing happens, so a
//!   resent or replayed message is never delivered twice.
//! - An ack moves the owner's cursor (and the device's) and yields a
//!   DELIVERED receipt for each 1:1 message it covers, found in a bounded
//!   in-memory window of unacked entries (a range read only past it).
//!   The receipt is an input for the sender's inbox: applied in the same
//!   batch where that inbox is held here, else an effect committed with
//!   the cursor, so a crash can never move the cursor and lose the receipt.
//! - A sync replays a page of entries to one session; until its last page
//!   the session gets no live pushes, so replay and live never interleave.

use crate::names::is_history;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use quick_cache::unsync::Cache;
use quick_cache::Weighter;
use samvad_proto::bus::{deliver_record, DeliverRecord, HideRecord, HistoryRecord, SyncRecord};
use samvad_proto::splice::deliver_frame;
use samvad_proto::v1::{self, server_frame, DeliveryState, ServerFrame};

use super::keys::{dedupe_key, inbox_key, seq_of_inbox_key, user_prefix};
use super::presence::{LivePresence, SessionRoute};
use super::view::{Committed, Space, StateError, View};

/// Entries one sync page replays.
pub const SYNC_PAGE: usize = 256;
/// Most entries one history page holds.
pub const HISTORY_PAGE_MAX: usize = 100;
const HISTORY_PAGE_DEFAULT: usize = 50;
/// Unacked 1:1 entries remembered per inbox for O(1) acks; an ack that
/// reaches further back reads the rest from the inbox.
pub const UNACKED_WINDOW: usize = 256;
/// Most entries one [`Input::Expire`] removes; the sweep comes back for
/// the rest.
pub const EXPIRE_PAGE: usize = 512;
/// Cache budget: inboxes plus their remembered unacked entries.
const INBOX_CACHE_WEIGHT: u64 = 1 << 20;
const DEVICE_CACHE_ITEMS: usize = 1 << 16;

/// An accepted envelope, encoded once: every inbox entry of it is these
/// bytes with its seq spliced in ([`deliver_frame`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub envelope: v1::Envelope,
    pub bytes: Bytes,
}

impl Message {
    pub fn new(envelope: v1::Envelope) -> Arc<Self> {
        let bytes = Bytes::from(envelope.encode_to_vec());
        Arc::new(Message { envelope, bytes })
    }

    fn head(&self) -> &v1::Head {
        static EMPTY: std::sync::OnceLock<v1::Head> = std::sync::OnceLock::new();
        self.envelope
            .head
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(v1::Head::default))
    }
}

/// One thing that happens to one inbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Append a message (idempotent by `(from, id)`). If it is new, it is
    /// then appended to the inboxes of `then` too (the conversation's other
    /// inboxes, where this one orders it), known to be new there.
    Message {
        owner: String,
        message: Arc<Message>,
        then: Vec<String>,
        /// Known to be new in this inbox: its first copy was just appended
        /// where the conversation is ordered, and it travels exactly once
        /// (in memory, or in an outbox entry removed as it is applied), so
        /// the dedupe read is skipped; the dedupe key is still written.
        fresh: bool,
    },
    /// Append a receipt about a message the owner sent.
    Receipt { owner: String, receipt: v1::Receipt },
    /// Move the cursor of the owner and of one device.
    Ack {
        owner: String,
        device: String,
        seq: u64,
    },
    /// Replay the inbox to one session.
    Sync { owner: String, sync: SyncRecord },
    /// One page of a conversation's history to one session.
    History {
        owner: String,
        request: HistoryRecord,
    },
    /// Delete for me.
    Hide { owner: String, hide: HideRecord },
    /// Retention: entries accepted before `before_ms` go, in a user's
    /// inbox only those delivered (at or below its cursor), in a
    /// conversation's history any. Their dedupe keys go with them.
    Expire { owner: String, before_ms: i64 },
}

impl Input {
    pub fn owner(&self) -> &str {
        match self {
            Input::Message { owner, .. }
            | Input::Receipt { owner, .. }
            | Input::Ack { owner, .. }
            | Input::Sync { owner, .. }
            | Input::History { owner, .. }
            | Input::Hide { owner, .. }
            | Input::Expire { owner, .. } => owner,
        }
    }

    /// The input a bus record asks for (`None`: a record without a kind).
    pub fn from_record(record: DeliverRecord) -> Option<Input> {
        let owner = record.user;
        Some(match record.kind? {
            deliver_record::Kind::Message(envelope) => Input::Message {
                owner,
                message: Message::new(envelope),
                then: record.then,
                fresh: false,
            },
            deliver_record::Kind::Receipt(receipt) => Input::Receipt { owner, receipt },
            deliver_record::Kind::Ack(ack) => Input::Ack {
                owner,
                device: ack.device,
                seq: ack.seq,
            },
            deliver_record::Kind::Sync(sync) => Input::Sync { owner, sync },
            deliver_record::Kind::History(request) => Input::History { owner, request },
            deliver_record::Kind::Hide(hide) => Input::Hide { owner, hide },
            deliver_record::Kind::Expire(e) => Input::Expire {
                owner,
                before_ms: e.before_ms,
            },
        })
    }

    /// The bus record of this input.
    pub fn to_record(&self) -> DeliverRecord {
        let kind = match self {
            Input::Message { message, .. } => {
                deliver_record::Kind::Message(message.envelope.clone())
            }
            Input::Receipt { receipt, .. } => deliver_record::Kind::Receipt(receipt.clone()),
            Input::Ack { device, seq, .. } => {
                deliver_record::Kind::Ack(samvad_proto::bus::AckRecord {
                    seq: *seq,
                    device: device.clone(),
                })
            }
            Input::Sync { sync, .. } => deliver_record::Kind::Sync(sync.clone()),
            Input::History { request, .. } => deliver_record::Kind::History(request.clone()),
            Input::Hide { hide, .. } => deliver_record::Kind::Hide(hide.clone()),
            Input::Expire { before_ms, .. } => {
                deliver_record::Kind::Expire(samvad_proto::bus::ExpireRecord {
                    before_ms: *before_ms,
                })
            }
        };
        DeliverRecord {
            user: self.owner().to_string(),
            kind: Some(kind),
            // Only a message has inboxes that follow it.
            then: match self {
                Input::Message { then, .. } => then.clone(),
                _ => Vec::new(),
            },
        }
    }
}

/// What the driver carries out once a batch is durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send an encoded `ServerFrame` to one session.
    Push { route: SessionRoute, frame: Bytes },
    /// An input for an inbox this machine does not hold: durable work of
    /// the batch, to be committed with it (an outbox) and handed on.
    Forward(Input),
    /// `user` has no live session for entry `seq`: a push notification.
    /// `frame` is the entry's, or for a large one the same entry with its
    /// text cut short ([`notified_frame`]).
    Offline {
        user: String,
        seq: u64,
        frame: Bytes,
    },
}

/// Characters of a message's text that a push notification carries: what
/// it shows as a preview and no more.
pub const NOTIFIED_TEXT_CHARS: usize = 120;

/// Entries up to this size are notified as they are stored.
const NOTIFIED_FRAME_MAX: usize = 1024;

/// What a push notification carries of an entry: its frame as stored, or,
/// for a frame over [`NOTIFIED_FRAME_MAX`], the same frame with the body's
/// text cut to its first [`NOTIFIED_TEXT_CHARS`] characters. A
/// notification shows one line; carrying a 30 KB message whole into the
/// push queue wrote every large message to an offline user a second time.
/// Decoded and encoded again only when it is that large.
fn notified_frame(frame: Bytes) -> Bytes {
    if frame.len() <= NOTIFIED_FRAME_MAX {
        return frame;
    }
    let Ok(mut decoded) = ServerFrame::decode(frame.clone()) else {
        return frame;
    };
    let Some(server_frame::Kind::Deliver(deliver)) = &mut decoded.kind else {
        return frame;
    };
    let Some(body) = deliver.envelope.as_mut().and_then(|e| e.body.as_mut()) else {
        return frame;
    };
    if let Some((cut, _)) = body.text.char_indices().nth(NOTIFIED_TEXT_CHARS) {
        body.text.truncate(cut);
    }
    Bytes::from(decoded.encode_to_vec())
}

/// A 1:1 entry whose sender gets a DELIVERED receipt once it is acked.
#[derive(Debug, Clone, PartialEq)]
struct Unacked {
    seq: u64,
    sender: String,
    id: String,
    chatid: String,
}

/// The in-memory state of one inbox.
#[derive(Debug, Clone, PartialEq)]
struct InboxState {
    last_seq: u64,
    cursor: u64,
    /// Receipt-worthy entries not acked yet, oldest first.
    unacked: VecDeque<Unacked>,
    /// `unacked` holds every receipt-worthy entry from this seq on.
    complete_from: u64,
    /// The cursor moved in this batch (its meta must be written).
    cursor_moved: bool,
}

#[derive(Clone)]
struct InboxWeight;

impl Weighter<String, InboxState> for InboxWeight {
    fn weight(&self, _key: &String, state: &InboxState) -> u64 {
        1 + state.unacked.len() as u64
    }
}

/// Cache updates of a batch, kept only once it is committed.
#[derive(Debug, Default)]
pub struct Touched {
    inboxes: HashMap<String, InboxState>,
    devices: HashMap<Vec<u8>, u64>,
}

/// The result of one batch.
#[derive(Debug)]
pub struct Output {
    /// Writes of the batch, to commit atomically.
    pub pending: super::view::Pending,
    pub effects: Vec<Effect>,
    pub touched: Touched,
}

/// Which inboxes a machine holds.
pub enum Holding {
    /// A cluster store: every input it is given is for an inbox it holds
    /// (its `deliver` partitions), and every input those generate (a
    /// receipt) goes back through the bus, in its partition's order.
    Given,
    /// A writer of `samvad serve`: the inboxes this says are held here are
    /// applied at once, generated inputs included; the others' inputs are
    /// forwarded.
    Shard(Box<dyn Fn(&str) -> bool + Send>),
}

impl Holding {
    fn holds(&self, owner: &str) -> bool {
        match self {
            Holding::Given => true,
            Holding::Shard(holds) => holds(owner),
        }
    }

    fn holds_generated(&self, owner: &str) -> bool {
        match self {
            Holding::Given => false,
            Holding::Shard(holds) => holds(owner),
        }
    }
}

pub struct InboxRules {
    inboxes: Cache<String, InboxState, InboxWeight>,
    devices: Cache<Vec<u8>, u64>,
    /// Per user, the sessions whose sync replayed everything: only they
    /// get live pushes. Bounded by live sessions: forgotten as presence
    /// loses them.
    synced: HashMap<String, HashSet<Arc<str>>>,
    /// Whether `synced` is also written to [`Space::Synced`].
    remember_synced: bool,
    holding: Holding,
}

impl InboxRules {
    pub fn new(holding: Holding) -> Self {
        InboxRules {
            inboxes: Cache::with_weighter(1 << 16, INBOX_CACHE_WEIGHT, InboxWeight),
            devices: Cache::new(DEVICE_CACHE_ITEMS),
            synced: HashMap::new(),
            remember_synced: false,
            holding,
        }
    }

    /// Keeps the synced sessions in [`Space::Synced`] from now on, and
    /// takes those `committed` has: a store that restarts goes on pushing
    /// live to the sessions that synced with it before, which cannot know
    /// it restarted. (In `samvad serve` the sessions die with the process,
    /// so nothing is kept.)
    pub fn remember_synced(&mut self, committed: &dyn Committed) -> Result<(), StateError> {
        self.remember_synced = true;
        let mut from = Vec::new();
        loop {
            let page = committed.range(Space::Synced, &from, &[0xff; 8], false, 4096)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            from = last.clone();
            from.push(0);
            let full = page.len() == 4096;
            for (key, _) in page {
                if let Some((owner, session)) = split_synced_key(&key) {
                    self.synced
                        .entry(owner.to_string())
                        .or_default()
                        .insert(session.into());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Applies a batch; nothing changes until [`InboxRules::committed`].
    pub fn apply(
        &mut self,
        committed: &dyn Committed,
        inputs: impl IntoIterator<Item = Input>,
        presence: &dyn LivePresence,
        now_ms: i64,
    ) -> Result<Output, StateError> {
        let mut pass = Pass {
            rules: self,
            view: View::new(committed),
            touched: Touched::default(),
            effects: Vec::new(),
            presence,
            now_ms,
            delivered: BTreeMap::new(),
        };
        let mut queue: VecDeque<Input> = inputs.into_iter().collect();
        loop {
            while let Some(input) = queue.pop_front() {
                if !pass.rules.holding.holds(input.owner()) {
                    pass.effects.push(Effect::Forward(input));
                    continue;
                }
                let mut generated = Vec::new();
                pass.apply_one(input, &mut generated)?;
                pass.route_generated(generated, &mut queue);
            }
            // The batch's acks are all applied: one receipt per sender,
            // conversation and reader.
            if pass.delivered.is_empty() {
                break;
            }
            let receipts = pass.delivered_receipts();
            pass.route_generated(receipts, &mut queue);
        }
        let Pass {
            mut view,
            touched,
            effects,
            ..
        } = pass;
        for (owner, state) in &touched.inboxes {
            if state.cursor_moved {
                view.pending.put(
                    Space::Meta,
                    owner.as_bytes().to_vec(),
                    encode_meta(state).to_vec(),
                );
            }
        }
        Ok(Output {
            pending: view.pending,
            effects,
            touched,
        })
    }

    /// The batch of `touched` is durable: its state is now the committed one.
    pub fn committed(&mut self, touched: Touched) {
        for (owner, mut state) in touched.inboxes {
            state.cursor_moved = false;
            self.inboxes.insert(owner, state);
        }
        for (key, cursor) in touched.devices {
            self.devices.insert(key, cursor);
        }
    }

    /// A commit failed: forget what may be ahead of the disk.
    pub fn forget(&mut self) {
        self.inboxes.clear();
        self.devices.clear();
    }

    /// The last seq and cursor of `owner`'s inbox, as committed.
    pub fn counters(
        &mut self,
        committed: &dyn Committed,
        owner: &str,
    ) -> Result<(u64, u64), StateError> {
        let state = match self.inboxes.get(owner) {
            Some(s) => s.clone(),
            None => load_state(&View::new(committed), owner)?,
        };
        Ok((state.last_seq, state.cursor))
    }
}

fn encode_meta(state: &InboxState) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&state.last_seq.to_be_bytes());
    out[8..].copy_from_slice(&state.cursor.to_be_bytes());
    out
}

fn be_u64(bytes: &[u8], what: &'static str) -> Result<u64, StateError> {
    Ok(u64::from_be_bytes(
        bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(StateError::Corrupt { what })?,
    ))
}

/// An inbox's state from storage: the cursor from its meta, the last seq
/// from its newest entry (meta is only written when the cursor moves).
fn load_state(view: &View, owner: &str) -> Result<InboxState, StateError> {
    let (stored_last, cursor) = match view.get(Space::Meta, owner.as_bytes())? {
        Some(v) if v.len() == 16 => (be_u64(&v, "inbox meta")?, be_u64(&v[8..], "inbox meta")?),
        Some(_) => return Err(StateError::Corrupt { what: "inbox meta" }),
        None => (0, 0),
    };
    let newest = view.range(
        Space::Inbox,
        &inbox_key(owner, 0),
        &inbox_key(owner, u64::MAX),
        true,
        1,
    )?;
    let scanned = match newest.first() {
        Some((key, _)) => seq_of_inbox_key(key).ok_or(StateError::Corrupt { what: "inbox key" })?,
        None => 0,
    };
    let last_seq = stored_last.max(scanned);
    Ok(InboxState {
        last_seq,
        cursor,
        unacked: VecDeque::new(),
        complete_from: last_seq + 1,
        cursor_moved: false,
    })
}

/// One batch in progress.
struct Pass<'a, 'r> {
    rules: &'r mut InboxRules,
    view: View<'a>,
    touched: Touched,
    effects: Vec<Effect>,
    presence: &'r dyn LivePresence,
    now_ms: i64,
    /// DELIVERED receipts the batch's acks owe, coalesced: (sender, chat,
    /// reader) → the sender's messages covered, oldest first.
    delivered: BTreeMap<(String, String, String), Vec<String>>,
}

impl Pass<'_, '_> {
    /// Inputs the batch made on the way: applied in it where their inbox
    /// is held here, else forwarded.
    fn route_generated(&mut self, generated: Vec<Input>, queue: &mut VecDeque<Input>) {
        for input in generated {
            if self.rules.holding.holds_generated(input.owner()) {
                queue.push_back(input);
            } else {
                self.effects.push(Effect::Forward(input));
            }
        }
    }

    /// The coalesced DELIVERED receipts owed so far.
    fn delivered_receipts(&mut self) -> Vec<Input> {
        std::mem::take(&mut self.delivered)
            .into_iter()
            .map(|((sender, chatid, by), mut ids)| {
                let message_id = ids.last().cloned().unwrap_or_default();
                if ids.len() == 1 {
                    ids.clear();
                }
                Input::Receipt {
                    owner: sender,
                    receipt: v1::Receipt {
                        seq: 0,
                        message_id,
                        by,
                        state: DeliveryState::Delivered as i32,
                        chatid,
                        ts: self.now_ms,
                        message_ids: ids,
                    },
                }
            })
            .collect()
    }

    fn apply_one(&mut self, input: Input, generated: &mut Vec<Input>) -> Result<(), StateError> {
        match input {
            Input::Message {
                owner,
                message,
                then,
                fresh,
            } => {
                let appended = self.message(&owner, &message, fresh)?;
                if appended {
                    generated.extend(then.into_iter().map(|owner| Input::Message {
                        owner,
                        message: message.clone(),
                        then: Vec::new(),
                        fresh: true,
                    }));
                }
                Ok(())
            }
            Input::Receipt { owner, receipt } => self.receipt(&owner, &receipt),
            Input::Ack { owner, device, seq } => self.ack(&owner, &device, seq),
            Input::Sync { owner, sync } => self.sync(&owner, &sync),
            Input::History { owner, request } => self.history(&owner, &request),
            Input::Hide { owner, hide } => self.hide(&owner, &hide),
            Input::Expire { owner, before_ms } => self.expire(&owner, before_ms),
        }
    }

    /// The state of `owner`'s inbox in this batch.
    fn state(&mut self, owner: &str) -> Result<&mut InboxState, StateError> {
        if !self.touched.inboxes.contains_key(owner) {
            // Taken out of the cache (not cloned: the unacked window may be
            // long); put back by `committed`, reloaded after `forget`.
            let state = match self.rules.inboxes.remove(owner) {
                Some((_, s)) => s,
                None => load_state(&self.view, owner)?,
            };
            self.touched.inboxes.insert(owner.to_string(), state);
        }
        Ok(self.touched.inboxes.get_mut(owner).expect("inserted above"))
    }

    /// Appends one entry under the owner's next seq and routes it live;
    /// `None` if its dedupe key is already there.
    fn append(
        &mut self,
        owner: &str,
        dedupe: Vec<u8>,
        check: bool,
        frame_for: impl FnOnce(u64) -> Bytes,
        unacked: Option<(String, String, String)>,
    ) -> Result<Option<u64>, StateError> {
        if check && self.view.contains(Space::Dedupe, &dedupe)? {
            return Ok(None);
        }
        let state = self.state(owner)?;
        state.last_seq += 1;
        let seq = state.last_seq;
        if let Some((sender, id, chatid)) = unacked {
            state.unacked.push_back(Unacked {
                seq,
                sender,
                id,
                chatid,
            });
            if state.unacked.len() > UNACKED_WINDOW {
                if let Some(oldest) = state.unacked.pop_front() {
                    state.complete_from = oldest.seq + 1;
                }
            }
        }
        let frame = frame_for(seq);
        self.view
            .pending
            .put(Space::Inbox, inbox_key(owner, seq), frame.clone());
        self.view
            .pending
            .put(Space::Dedupe, dedupe, seq.to_be_bytes().to_vec());
        if is_history(owner) {
            // A conversation's history is read page by page, never pushed.
            return Ok(Some(seq));
        }
        let sessions = self.presence.sessions(owner);
        let online = sessions.is_some();
        let routes = sessions.unwrap_or_default();
        let (live, gone) = live_routes(&mut self.rules.synced, owner, &routes);
        for route in live {
            self.effects.push(Effect::Push {
                route: route.clone(),
                frame: frame.clone(),
            });
        }
        if self.rules.remember_synced {
            for session in gone {
                self.view
                    .pending
                    .remove(Space::Synced, synced_key(owner, &session));
            }
        }
        if !online {
            self.effects.push(Effect::Offline {
                user: owner.to_string(),
                seq,
                frame: notified_frame(frame),
            });
        }
        Ok(Some(seq))
    }

    /// Appends a message; whether it was new.
    fn message(&mut self, owner: &str, message: &Message, fresh: bool) -> Result<bool, StateError> {
        let env = &message.envelope;
        let head = message.head();
        if head.action() == v1::Action::Delete && !env.ref_id.is_empty() {
            self.tombstone(owner, &env.ref_from, &env.ref_id)?;
        }
        let receipt_worthy = !is_history(owner)
            && !head.from.is_empty()
            && head.from != owner
            && !matches!(head.r#type(), v1::HeadType::Group | v1::HeadType::Channel);
        let unacked =
            receipt_worthy.then(|| (head.from.clone(), env.id.clone(), head.chatid.clone()));
        let dedupe = dedupe_key(owner, &[&head.from, &env.id]);
        let appended = self.append(
            owner,
            dedupe,
            !fresh,
            |seq| deliver_frame(&message.bytes, seq),
            unacked,
        )?;
        Ok(appended.is_some())
    }

    fn receipt(&mut self, owner: &str, r: &v1::Receipt) -> Result<(), StateError> {
        let state = r.state.to_string();
        // `\x01` cannot start a user name, so receipts never collide with messages.
        let dedupe = dedupe_key(owner, &["\u{1}", &r.by, &r.message_id, &state]);
        self.append(
            owner,
            dedupe,
            true,
            |seq| {
                Bytes::from(
                    ServerFrame::of(server_frame::Kind::Receipt(v1::Receipt {
                        seq,
                        ..r.clone()
                    }))
                    .encode_to_vec(),
                )
            },
            None,
        )?;
        Ok(())
    }

    /// Deleted for everyone (or for me): `author`'s message `id` in
    /// `owner`'s inbox keeps its place and id, loses its content. The dedupe
    /// key holds the author, so a delete that names the wrong author finds
    /// nothing.
    fn tombstone(&mut self, owner: &str, author: &str, id: &str) -> Result<(), StateError> {
        let Some(seq) = self
            .view
            .get(Space::Dedupe, &dedupe_key(owner, &[author, id]))?
        else {
            return Ok(());
        };
        let key = inbox_key(owner, be_u64(&seq, "dedupe entry")?);
        let Some(stored) = self.view.get(Space::Inbox, &key)? else {
            return Ok(());
        };
        let frame = ServerFrame::decode(stored).map_err(|_| StateError::Corrupt {
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
            self.view
                .pending
                .put(Space::Inbox, key, tomb.encode_to_vec());
        }
        Ok(())
    }

    /// The last seq `device` of `owner` acked (0: none).
    fn device_cursor(&mut self, key: &[u8]) -> Result<u64, StateError> {
        if let Some(c) = self.touched.devices.get(key) {
            return Ok(*c);
        }
        if let Some(c) = self.rules.devices.get(key) {
            return Ok(*c);
        }
        match self.view.get(Space::DeviceCursors, key)? {
            Some(v) => be_u64(&v, "device cursor"),
            None => Ok(0),
        }
    }

    /// An ack moves the device's cursor, and the owner's (the furthest any
    /// device got, which drives DELIVERED receipts).
    fn ack(&mut self, owner: &str, device: &str, seq: u64) -> Result<(), StateError> {
        let (last_seq, cursor, complete_from) = {
            let s = self.state(owner)?;
            (s.last_seq, s.cursor, s.complete_from)
        };
        let upto = seq.min(last_seq);
        if !device.is_empty() {
            let key = dedupe_key(owner, &[device]);
            if upto > self.device_cursor(&key)? {
                self.view.pending.put(
                    Space::DeviceCursors,
                    key.clone(),
                    upto.to_be_bytes().to_vec(),
                );
                self.touched.devices.insert(key, upto);
            }
        }
        if upto <= cursor {
            return Ok(());
        }
        let mut covered = Vec::new();
        if cursor + 1 < complete_from {
            // Older than the window: read those entries back.
            let end = upto.min(complete_from - 1);
            let entries = self.view.range(
                Space::Inbox,
                &inbox_key(owner, cursor + 1),
                &inbox_key(owner, end),
                false,
                usize::MAX,
            )?;
            for (_, frame) in entries {
                if let Some(u) = unacked_of(owner, &frame)? {
                    covered.push(u);
                }
            }
        }
        let state = self.state(owner)?;
        while state.unacked.front().is_some_and(|u| u.seq <= upto) {
            covered.extend(state.unacked.pop_front());
        }
        state.cursor = upto;
        state.cursor_moved = true;
        state.complete_from = state.complete_from.max(upto + 1);
        for u in covered {
            let ids = self
                .delivered
                .entry((u.sender, u.chatid, owner.to_string()))
                .or_default();
            ids.push(u.id);
        }
        Ok(())
    }

    fn sync(&mut self, owner: &str, sync: &SyncRecord) -> Result<(), StateError> {
        let last_seq = self.state(owner)?.last_seq;
        let after = if sync.resume {
            self.device_cursor(&dedupe_key(owner, &[&sync.device]))?
        } else {
            sync.after_seq
        };
        let entries = self.view.range(
            Space::Inbox,
            &inbox_key(owner, after.saturating_add(1)),
            &inbox_key(owner, u64::MAX),
            false,
            SYNC_PAGE + 1,
        )?;
        let more = entries.len() > SYNC_PAGE;
        let route = SessionRoute {
            session: sync.session.as_str().into(),
            edge: sync.edge.as_str().into(),
        };
        let mut last = after;
        for (key, frame) in entries.into_iter().take(SYNC_PAGE) {
            last = seq_of_inbox_key(&key).ok_or(StateError::Corrupt { what: "inbox key" })?;
            self.effects.push(Effect::Push {
                route: route.clone(),
                frame,
            });
        }
        if !more {
            last = last.max(last_seq);
        }
        let done = ServerFrame::of(server_frame::Kind::SyncDone(v1::SyncDone {
            last_seq: last,
            more,
        }));
        self.effects.push(Effect::Push {
            route: route.clone(),
            frame: Bytes::from(done.encode_to_vec()),
        });
        let sessions = self.rules.synced.entry(owner.to_string()).or_default();
        let key = synced_key(owner, &route.session);
        if more {
            sessions.remove(&route.session);
            if self.rules.remember_synced {
                self.view.pending.remove(Space::Synced, key);
            }
        } else {
            sessions.insert(route.session);
            if self.rules.remember_synced {
                self.view
                    .pending
                    .put(Space::Synced, key, route.edge.as_bytes().to_vec());
            }
        }
        Ok(())
    }

    /// Sends one page of a conversation's history to the asking session.
    fn history(&mut self, owner: &str, request: &HistoryRecord) -> Result<(), StateError> {
        if !is_history(owner) {
            tracing::warn!(owner, "history request for a user's inbox; skipped");
            return Ok(());
        }
        let limit = match request.limit as usize {
            0 => HISTORY_PAGE_DEFAULT,
            n => n.min(HISTORY_PAGE_MAX),
        };
        let entries = if request.before_seq == 1 {
            Vec::new()
        } else {
            let before = match request.before_seq {
                0 => u64::MAX,
                b => b - 1,
            };
            self.view.range(
                Space::Inbox,
                &inbox_key(owner, 1),
                &inbox_key(owner, before),
                true,
                limit + 1,
            )?
        };
        let more = entries.len() > limit;
        let mut messages = Vec::with_capacity(limit);
        for (_, frame) in entries.into_iter().take(limit) {
            let frame = ServerFrame::decode(frame).map_err(|_| StateError::Corrupt {
                what: "history entry",
            })?;
            if let Some(server_frame::Kind::Deliver(v1::Deliver {
                envelope: Some(env),
            })) = frame.kind
            {
                if !self
                    .view
                    .contains(Space::Hidden, &hidden_key(owner, &request.user, &env.id))?
                {
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
                session: request.session.as_str().into(),
                edge: request.edge.as_str().into(),
            },
            frame: Bytes::from(page.encode_to_vec()),
        });
        Ok(())
    }

    /// Retention ([`Input::Expire`]): at most [`EXPIRE_PAGE`] of the
    /// oldest entries per input, oldest first, stopping at the first one
    /// too young (entries are accepted in seq order). The inbox's meta is
    /// written, so its last seq survives even if every entry is gone (a
    /// history's meta is otherwise never written: its last seq is read
    /// from its newest entry).
    fn expire(&mut self, owner: &str, before_ms: i64) -> Result<(), StateError> {
        let history = is_history(owner);
        let upto = {
            let state = self.state(owner)?;
            if history {
                state.last_seq
            } else {
                state.cursor
            }
        };
        if upto == 0 {
            return Ok(());
        }
        let (from, to) = (inbox_key(owner, 0), inbox_key(owner, upto));
        // The oldest entry alone first: most sweeps find it too young, and
        // then that one entry is all they read (a page of 512 read for
        // nothing, per inbox per round, was most of a writer's work).
        let oldest = self.view.range(Space::Inbox, &from, &to, false, 1)?;
        let young = |frame: &Bytes| matches!(expiring(owner, frame), Some((accepted, ..)) if accepted >= before_ms);
        if oldest.first().is_none_or(|(_, frame)| young(frame)) {
            return Ok(());
        }
        let entries = self
            .view
            .range(Space::Inbox, &from, &to, false, EXPIRE_PAGE)?;
        let mut gone_ids = HashSet::new();
        let mut expired = 0usize;
        for (key, frame) in entries {
            let Some((accepted, dedupe, id)) = expiring(owner, &frame) else {
                // Not written by these rules: left for a person to look at,
                // and nothing after it goes either.
                tracing::warn!(owner, "an inbox entry retention cannot read; kept");
                break;
            };
            if accepted >= before_ms {
                break;
            }
            self.view.pending.remove(Space::Inbox, key);
            self.view.pending.remove(Space::Dedupe, dedupe);
            gone_ids.extend(id);
            expired += 1;
        }
        if expired == 0 {
            return Ok(());
        }
        self.state(owner)?.cursor_moved = true;
        if history {
            // Who hid what: `owner \0 user \0 id`, for the ids gone.
            let mut to = user_prefix(owner);
            to.push(0xff);
            for (key, _) in
                self.view
                    .range(Space::Hidden, &user_prefix(owner), &to, false, usize::MAX)?
            {
                let id = key.rsplit(|&b| b == 0).next().unwrap_or_default();
                if std::str::from_utf8(id).is_ok_and(|id| gone_ids.contains(id)) {
                    self.view.pending.remove(Space::Hidden, key);
                }
            }
        }
        Ok(())
    }

    /// Delete for me: in the user's own inbox the entries are emptied in
    /// place; in a conversation's history they are marked hidden for them.
    fn hide(&mut self, owner: &str, hide: &HideRecord) -> Result<(), StateError> {
        for id in &hide.message_ids {
            if is_history(owner) {
                self.view.pending.put(
                    Space::Hidden,
                    hidden_key(owner, &hide.user, id),
                    Bytes::new(),
                );
            } else if owner == hide.user {
                self.tombstone(owner, &hide.author, id)?;
            }
        }
        Ok(())
    }
}

/// What retention needs of a stored entry: when it was accepted, its
/// dedupe key and its message id (`None`: not an entry it knows).
fn expiring(owner: &str, frame: &[u8]) -> Option<(i64, Vec<u8>, Option<String>)> {
    match ServerFrame::decode(frame).ok()?.kind? {
        server_frame::Kind::Deliver(v1::Deliver {
            envelope: Some(env),
        }) => {
            let from = env.head.map(|h| h.from).unwrap_or_default();
            Some((
                env.server_ts,
                dedupe_key(owner, &[&from, &env.id]),
                Some(env.id),
            ))
        }
        server_frame::Kind::Receipt(r) => Some((
            r.ts,
            dedupe_key(
                owner,
                &["\u{1}", &r.by, &r.message_id, &r.state.to_string()],
            ),
            None,
        )),
        _ => None,
    }
}

/// The receipt-worthy part of a stored entry, if it is one.
fn unacked_of(owner: &str, frame: &[u8]) -> Result<Option<Unacked>, StateError> {
    let frame = ServerFrame::decode(frame).map_err(|_| StateError::Corrupt {
        what: "inbox entry",
    })?;
    let Some(server_frame::Kind::Deliver(v1::Deliver {
        envelope: Some(env),
    })) = frame.kind
    else {
        return Ok(None);
    };
    let head = env.head.unwrap_or_default();
    // No per-member DELIVERED receipts for group messages: they would
    // multiply every message by its group's size on the way back.
    if head.from.is_empty()
        || head.from == owner
        || matches!(head.r#type(), v1::HeadType::Group | v1::HeadType::Channel)
    {
        return Ok(None);
    }
    Ok(Some(Unacked {
        seq: env.seq,
        sender: head.from,
        id: env.id,
        chatid: head.chatid,
    }))
}

/// The sessions of `routes` that are synced, and the synced sessions
/// forgotten because they are not among a user's live ones (when presence
/// names any).
fn live_routes<'r>(
    synced: &mut HashMap<String, HashSet<Arc<str>>>,
    user: &str,
    routes: &'r [SessionRoute],
) -> (Vec<&'r SessionRoute>, Vec<Arc<str>>) {
    if routes.is_empty() {
        // No live session, or presence could not be read (Redis down, an
        // entry briefly expired): forgetting the synced sessions here would
        // stop their live pushes for good. Nothing to push anyway.
        return (Vec::new(), Vec::new());
    }
    let Some(sessions) = synced.get_mut(user) else {
        return (Vec::new(), Vec::new());
    };
    let mut gone = Vec::new();
    sessions.retain(|s| {
        let live = routes.iter().any(|r| r.session == *s);
        if !live {
            gone.push(s.clone());
        }
        live
    });
    let live = routes
        .iter()
        .filter(|r| sessions.contains(&r.session))
        .collect();
    (live, gone)
}

/// The [`Space::Synced`] key of `session` of `owner`.
fn synced_key(owner: &str, session: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + session.len() + 1);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key.extend_from_slice(session.as_bytes());
    key
}

fn split_synced_key(key: &[u8]) -> Option<(&str, &str)> {
    let zero = key.iter().position(|&b| b == 0)?;
    Some((
        std::str::from_utf8(&key[..zero]).ok()?,
        std::str::from_utf8(&key[zero + 1..]).ok()?,
    ))
}

pub(crate) fn hidden_key(owner: &str, user: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + user.len() + id.len() + 2);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Seqs of every entry of `owner`, for tests and diagnostics.
pub fn entry_seqs(committed: &dyn Committed, owner: &str) -> Result<Vec<u64>, StateError> {
    let mut to = user_prefix(owner);
    to.extend_from_slice(&[0xff; 8]);
    committed
        .range(Space::Inbox, &user_prefix(owner), &to, false, usize::MAX)?
        .into_iter()
        .map(|(k, _)| seq_of_inbox_key(&k).ok_or(StateError::Corrupt { what: "inbox key" }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::presence::PresenceMap;
    use super::super::view::MemoryState;
    use super::*;
    use crate::names::history_owner;

    fn chat(id: &str, from: &str, to: &str) -> Input {
        let kind = v1::HeadType::Chat;
        message(id, kind, from, to, to)
    }

    fn message(id: &str, kind: v1::HeadType, from: &str, to: &str, owner: &str) -> Input {
        Input::Message {
            then: Vec::new(),
            fresh: false,
            owner: owner.into(),
            message: Message::new(v1::Envelope {
                id: id.into(),
                head: Some(v1::Head {
                    r#type: kind as i32,
                    from: from.into(),
                    to: to.into(),
                    chatid: format!("{from}:{to}"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn ack(owner: &str, seq: u64) -> Input {
        Input::Ack {
            owner: owner.into(),
            device: "phone".into(),
            seq,
        }
    }

    fn sync(owner: &str, session: &str, after: u64) -> Input {
        Input::Sync {
            owner: owner.into(),
            sync: SyncRecord {
                session: session.into(),
                edge: "e1".into(),
                after_seq: after,
                device: "phone".into(),
                resume: false,
            },
        }
    }

    fn online(user: &str, session: &str) -> PresenceMap {
        let mut presence = PresenceMap::new();
        presence.insert(
            user.into(),
            vec![SessionRoute {
                session: session.into(),
                edge: "e1".into(),
            }],
        );
        presence
    }

    /// A store in memory with the rules over it; `run` applies and commits.
    struct Store {
        state: MemoryState,
        rules: InboxRules,
    }

    impl Store {
        fn new(holding: Holding) -> Self {
            Store {
                state: MemoryState::default(),
                rules: InboxRules::new(holding),
            }
        }

        fn run(&mut self, inputs: Vec<Input>, presence: &PresenceMap) -> Vec<Effect> {
            let out = self.rules.apply(&self.state, inputs, presence, 42).unwrap();
            self.state.commit(&out.pending);
            self.rules.committed(out.touched);
            out.effects
        }

        fn seqs(&self, owner: &str) -> Vec<u64> {
            entry_seqs(&self.state, owner).unwrap()
        }
    }

    fn frames(effects: &[Effect]) -> Vec<ServerFrame> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Push { frame, .. } => Some(ServerFrame::decode(frame.clone()).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn receipts(effects: &[Effect]) -> Vec<(String, String)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Forward(Input::Receipt { owner, receipt }) => Some((owner, receipt)),
                _ => None,
            })
            .flat_map(|(owner, r)| {
                let ids = if r.message_ids.is_empty() {
                    vec![r.message_id.clone()]
                } else {
                    r.message_ids.clone()
                };
                ids.into_iter().map(move |id| (owner.clone(), id))
            })
            .collect()
    }

    #[test]
    fn remembered_synced_sessions_get_live_pushes_after_a_restart() {
        let mut store = Store::new(Holding::Given);
        store.rules.remember_synced(&store.state).unwrap();
        let bob = online("bob", "s1");
        store.run(vec![sync("bob", "s1", 0)], &bob);
        // The process restarts: new rules over the same committed state.
        store.rules = InboxRules::new(Holding::Given);
        store.rules.remember_synced(&store.state).unwrap();
        let effects = store.run(vec![chat("m1", "alice", "bob")], &bob);
        assert_eq!(frames(&effects).len(), 1, "pushed live: {effects:?}");
        // Rules that do not remember (samvad serve) start with nobody.
        store.rules = InboxRules::new(Holding::Given);
        let effects = store.run(vec![chat("m2", "alice", "bob")], &bob);
        assert!(frames(&effects).is_empty(), "{effects:?}");
        // A session that is gone is forgotten on disk too.
        store.rules = InboxRules::new(Holding::Given);
        store.rules.remember_synced(&store.state).unwrap();
        store.run(vec![chat("m3", "alice", "bob")], &online("bob", "s2"));
        store.rules = InboxRules::new(Holding::Given);
        store.rules.remember_synced(&store.state).unwrap();
        let effects = store.run(vec![chat("m4", "alice", "bob")], &bob);
        assert!(frames(&effects).is_empty(), "s1 was forgotten: {effects:?}");
    }

    #[test]
    fn messages_get_gap_free_seqs_and_a_resend_is_dropped() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        store.run(
            vec![chat("a", "alice", "bob"), chat("b", "alice", "bob")],
            &none,
        );
        // Resent in the same batch and in a later one.
        let effects = store.run(
            vec![
                chat("b", "alice", "bob"),
                chat("c", "carol", "bob"),
                chat("c", "carol", "bob"),
            ],
            &none,
        );
        assert_eq!(store.seqs("bob"), [1, 2, 3]);
        // Nobody online: one notification, for the one new entry.
        let offline: Vec<u64> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Offline { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(offline, [3]);
        // The same id from another sender is another message.
        store.run(vec![chat("a", "carol", "bob")], &none);
        assert_eq!(store.seqs("bob"), [1, 2, 3, 4]);
    }

    #[test]
    fn a_large_message_is_notified_with_its_text_cut_short_and_stored_whole() {
        let mut store = Store::new(Holding::Given);
        let text = |chars: usize| "é".repeat(chars);
        let with_text = |id: &str, text: String| {
            let Input::Message { owner, message, .. } = chat(id, "alice", "bob") else {
                unreachable!()
            };
            let mut envelope = message.envelope.clone();
            envelope.body = Some(v1::Body { text, ts: 7 });
            Input::Message {
                owner,
                message: Message::new(envelope),
                then: Vec::new(),
                fresh: false,
            }
        };
        let effects = store.run(
            vec![
                with_text("big", text(20_000)),
                with_text("small", text(100)),
            ],
            &PresenceMap::new(),
        );
        let notified: Vec<(u64, Bytes)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Offline { seq, frame, .. } => Some((*seq, frame.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(notified.len(), 2, "{effects:?}");
        let stored = |seq: u64| {
            store
                .state
                .get(Space::Inbox, &inbox_key("bob", seq))
                .unwrap()
                .unwrap()
        };
        let envelope = |frame: &Bytes| match ServerFrame::decode(frame.clone()).unwrap().kind {
            Some(server_frame::Kind::Deliver(d)) => d.envelope.unwrap(),
            other => panic!("not an entry: {other:?}"),
        };
        // The large one: the same entry, its text cut to the preview.
        let (seq, frame) = &notified[0];
        assert!(frame.len() < 1024, "{} bytes", frame.len());
        let whole = envelope(&stored(*seq));
        assert_eq!(whole.body.as_ref().unwrap().text, text(20_000));
        let mut cut = whole.clone();
        cut.body.as_mut().unwrap().text = text(NOTIFIED_TEXT_CHARS);
        assert_eq!(envelope(frame), cut, "id, head, seq and ts kept");
        // The small one is notified as it is stored.
        let (seq, frame) = &notified[1];
        assert_eq!(*frame, stored(*seq));
    }

    #[test]
    fn live_pushes_only_after_the_sync_and_frames_carry_their_seq() {
        let mut store = Store::new(Holding::Given);
        let presence = online("bob", "s1");
        store.run(vec![chat("a", "alice", "bob")], &presence);
        // Not synced yet: no live push.
        let effects = store.run(vec![chat("b", "alice", "bob")], &presence);
        assert!(frames(&effects).is_empty(), "{effects:?}");
        let effects = store.run(
            vec![sync("bob", "s1", 0), chat("c", "alice", "bob")],
            &presence,
        );
        let seqs: Vec<(u64, bool)> = frames(&effects)
            .into_iter()
            .map(|f| match f.kind {
                Some(server_frame::Kind::Deliver(d)) => (d.envelope.unwrap().seq, false),
                Some(server_frame::Kind::SyncDone(done)) => (done.last_seq, true),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // Replay of 1 and 2, done at 2, then 3 live: in order, never twice.
        assert_eq!(seqs, [(1, false), (2, false), (2, true), (3, false)]);
    }

    #[test]
    fn acks_send_delivered_receipts_for_chats_not_for_group_messages() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        store.run(
            vec![
                chat("c1", "alice", "bob"),
                message("g1", v1::HeadType::Group, "alice", "g-crew", "bob"),
                chat("c2", "carol", "bob"),
            ],
            &none,
        );
        let effects = store.run(vec![ack("bob", 3)], &none);
        assert_eq!(
            receipts(&effects),
            [
                ("alice".to_string(), "c1".to_string()),
                ("carol".to_string(), "c2".to_string())
            ]
        );
        // Acking again, or less, yields nothing more.
        assert!(receipts(&store.run(vec![ack("bob", 3), ack("bob", 1)], &none)).is_empty());
    }

    #[test]
    fn the_acks_of_a_batch_give_one_receipt_per_sender_conversation_and_reader() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        store.run(
            (1..=3)
                .map(|i| chat(&format!("m{i}"), "alice", "bob"))
                .collect(),
            &none,
        );
        let effects = store.run(vec![ack("bob", 1), ack("bob", 3)], &none);
        let coalesced: Vec<(&str, &str, &[String])> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Forward(Input::Receipt { owner, receipt }) => Some((
                    owner.as_str(),
                    receipt.message_id.as_str(),
                    receipt.message_ids.as_slice(),
                )),
                _ => None,
            })
            .collect();
        let all = ["m1".to_string(), "m2".to_string(), "m3".to_string()];
        assert_eq!(coalesced, [("alice", "m3", &all[..])]);
    }

    #[test]
    fn an_ack_past_the_window_or_after_a_restart_reads_the_inbox_back() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        let n = UNACKED_WINDOW + 10;
        store.run(
            (0..n)
                .map(|i| chat(&format!("m{i}"), "alice", "bob"))
                .collect(),
            &none,
        );
        let effects = store.run(vec![ack("bob", n as u64)], &none);
        let ids: Vec<String> = receipts(&effects).into_iter().map(|(_, id)| id).collect();
        let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        assert_eq!(ids, expected);

        // A restart forgets the window; the inbox still knows.
        store.run(
            vec![chat("x", "alice", "bob"), chat("y", "alice", "bob")],
            &none,
        );
        store.rules = InboxRules::new(Holding::Given);
        let effects = store.run(vec![ack("bob", n as u64 + 2)], &none);
        assert_eq!(
            receipts(&effects),
            [
                ("alice".to_string(), "x".to_string()),
                ("alice".to_string(), "y".to_string())
            ]
        );
    }

    #[test]
    fn a_batch_replayed_after_a_crash_gives_the_same_writes_and_effects() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        store.run(vec![chat("a", "alice", "bob")], &none);
        let batch = vec![
            chat("b", "alice", "bob"),
            ack("bob", 2),
            chat("c", "alice", "bob"),
        ];
        // Applied, then the process dies before the commit.
        let lost = store
            .rules
            .apply(&store.state, batch.clone(), &none, 42)
            .unwrap();
        store.rules.forget();
        let replayed = store.rules.apply(&store.state, batch, &none, 42).unwrap();
        assert_eq!(lost.pending, replayed.pending);
        assert_eq!(lost.effects, replayed.effects);
        // The cursor, the entries and the receipts are in the one batch:
        // an ack can never be applied without its receipts.
        assert_eq!(receipts(&replayed.effects).len(), 2);
        assert!(replayed
            .pending
            .iter()
            .any(|(space, key, _)| space == Space::Meta && key == b"bob"));
        store.state.commit(&replayed.pending);
        store.rules.committed(replayed.touched);
        assert_eq!(store.seqs("bob"), [1, 2, 3]);
        // Replayed once more after it was committed: nothing new.
        let again = store.run(
            vec![
                chat("b", "alice", "bob"),
                ack("bob", 2),
                chat("c", "alice", "bob"),
            ],
            &none,
        );
        assert!(receipts(&again).is_empty());
        assert_eq!(store.seqs("bob"), [1, 2, 3]);
    }

    #[test]
    fn a_shard_applies_what_it_holds_and_forwards_the_rest() {
        // This shard holds bob and alice but not carol nor the history.
        let holds = |o: &str| o == "bob" || o == "alice";
        let mut store = Store::new(Holding::Shard(Box::new(holds)));
        let none = PresenceMap::new();
        let effects = store.run(
            vec![
                chat("a", "alice", "bob"),
                message("a", v1::HeadType::Chat, "alice", "bob", "#alice:bob"),
                chat("c", "carol", "bob"),
            ],
            &none,
        );
        let forwarded: Vec<&str> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Forward(i) => Some(i.owner()),
                _ => None,
            })
            .collect();
        assert_eq!(forwarded, ["#alice:bob"]);
        // Bob's ack: alice's receipt is applied here, in the same batch;
        // carol's goes to her shard.
        let effects = store.run(vec![ack("bob", 2)], &none);
        assert_eq!(receipts(&effects), [("carol".to_string(), "c".to_string())]);
        assert_eq!(store.seqs("alice"), [1]);
    }

    #[test]
    fn entries_made_while_a_batch_is_applied_are_pushed_to_their_owners_sessions() {
        let mut store = Store::new(Holding::Shard(Box::new(|_| true)));
        let mut presence = online("alice", "a1");
        presence.extend(online("bob", "b1"));
        store.run(
            vec![sync("alice", "a1", 0), sync("bob", "b1", 0)],
            &presence,
        );
        store.run(vec![chat("m1", "alice", "bob")], &presence);
        // Bob's ack makes alice's receipt in the same batch: it reaches her.
        let pushed: Vec<(String, Option<server_frame::Kind>)> = store
            .run(vec![ack("bob", 1)], &presence)
            .into_iter()
            .filter_map(|e| match e {
                Effect::Push { route, frame } => Some((
                    route.session.to_string(),
                    ServerFrame::decode(frame).unwrap().kind,
                )),
                _ => None,
            })
            .collect();
        let [(session, Some(server_frame::Kind::Receipt(r)))] = &pushed[..] else {
            panic!("one receipt for alice: {pushed:?}")
        };
        assert_eq!(
            (session.as_str(), r.message_id.as_str(), r.seq),
            ("a1", "m1", 1)
        );
    }

    #[test]
    fn a_conversations_other_inboxes_follow_only_a_new_message() {
        // Bob's shard orders the chat; the history is on another shard.
        let mut store = Store::new(Holding::Shard(Box::new(|o: &str| !is_history(o))));
        let none = PresenceMap::new();
        let led = |id: &str| {
            let Input::Message { owner, message, .. } = chat(id, "alice", "bob") else {
                unreachable!()
            };
            Input::Message {
                owner,
                message,
                then: vec![history_owner("alice:bob")],
                fresh: false,
            }
        };
        let forwarded = |effects: &[Effect]| -> Vec<(String, bool)> {
            effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Forward(Input::Message { owner, fresh, .. }) => {
                        Some((owner.clone(), *fresh))
                    }
                    _ => None,
                })
                .collect()
        };
        let first = store.run(vec![led("m1"), led("m1")], &none);
        assert_eq!(forwarded(&first), [(history_owner("alice:bob"), true)]);
        // Resent later: bob's inbox has it, so nothing follows.
        assert!(forwarded(&store.run(vec![led("m1")], &none)).is_empty());
        assert_eq!(store.seqs("bob"), [1]);
    }

    #[test]
    fn a_message_record_carries_the_inboxes_that_follow_it() {
        // The cluster's edge sends a chat to the recipient's partition with
        // its history to follow; the store that applies it reads `then`
        // back, and forwards the history's copy without one.
        let Input::Message { owner, message, .. } = chat("m1", "alice", "bob") else {
            unreachable!()
        };
        let led = Input::Message {
            owner,
            message,
            then: vec![history_owner("alice:bob")],
            fresh: false,
        };
        let record = led.to_record();
        assert_eq!(record.then, [history_owner("alice:bob")]);
        assert_eq!(Input::from_record(record), Some(led));
        let mut store = Store::new(Holding::Given);
        let effects = store.run(
            vec![Input::from_record(chat("m2", "alice", "bob").to_record()).unwrap()],
            &PresenceMap::new(),
        );
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Forward(_))),
            "a record without `then` is applied where it is: {effects:?}"
        );
        let mut store = Store::new(Holding::Given);
        let mut led = chat("m3", "alice", "bob").to_record();
        led.then = vec![history_owner("alice:bob")];
        let effects = store.run(vec![Input::from_record(led).unwrap()], &PresenceMap::new());
        let forwarded: Vec<DeliverRecord> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Forward(input) => Some(input.to_record()),
                _ => None,
            })
            .collect();
        assert_eq!(forwarded.len(), 1, "{effects:?}");
        assert_eq!(forwarded[0].user, history_owner("alice:bob"));
        assert!(
            forwarded[0].then.is_empty(),
            "the history is the last inbox"
        );
    }

    #[test]
    fn history_pages_newest_first_see_their_own_batch_and_are_never_pushed() {
        let mut store = Store::new(Holding::Given);
        let owner = history_owner("alice:bob");
        let presence = online(&owner, "s1");
        let mut inputs: Vec<Input> = (0..5)
            .map(|i| message(&format!("m{i}"), v1::HeadType::Chat, "alice", "bob", &owner))
            .collect();
        let page = |before_seq, limit| Input::History {
            owner: owner.clone(),
            request: HistoryRecord {
                session: "s1".into(),
                edge: "e1".into(),
                chatid: "alice:bob".into(),
                before_seq,
                limit,
                user: "bob".into(),
            },
        };
        // The page is asked in the same batch as the entries it shows.
        inputs.push(page(0, 2));
        inputs.push(page(4, 2));
        inputs.push(page(1, 2));
        let pages: Vec<(Vec<u64>, bool)> = frames(&store.run(inputs, &presence))
            .into_iter()
            .map(|f| match f.kind {
                Some(server_frame::Kind::History(p)) => {
                    (p.messages.iter().map(|e| e.seq).collect(), p.more)
                }
                other => panic!("a history page, not {other:?}"),
            })
            .collect();
        assert_eq!(
            pages,
            [(vec![5, 4], true), (vec![3, 2], true), (vec![], false)]
        );
    }

    #[test]
    fn a_delete_for_everyone_empties_the_authors_message_in_place() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        let Input::Message { message: m, .. } = chat("m1", "alice", "bob") else {
            unreachable!()
        };
        let mut delete = m.envelope.clone();
        delete.id = "d1".into();
        delete.ref_id = "m1".into();
        delete.ref_from = "alice".into();
        delete.head.as_mut().unwrap().action = v1::Action::Delete as i32;
        let mut forged = delete.clone();
        forged.id = "d2".into();
        forged.ref_from = "carol".into();
        store.run(
            vec![
                chat("m1", "alice", "bob"),
                Input::Message {
                    owner: "bob".into(),
                    message: Message::new(forged),
                    then: Vec::new(),
                    fresh: false,
                },
                Input::Message {
                    owner: "bob".into(),
                    message: Message::new(delete),
                    then: Vec::new(),
                    fresh: false,
                },
            ],
            &none,
        );
        let first = store
            .state
            .get(Space::Inbox, &inbox_key("bob", 1))
            .unwrap()
            .unwrap();
        let Some(server_frame::Kind::Deliver(d)) = ServerFrame::decode(first).unwrap().kind else {
            panic!("a deliver entry")
        };
        let env = d.envelope.unwrap();
        assert_eq!((env.id.as_str(), env.seq), ("m1", 1));
        assert_eq!(env.head.unwrap().action(), v1::Action::Delete);
        assert_eq!(store.seqs("bob"), [1, 2, 3]);
    }

    /// A 1:1 message to `owner` accepted at `ts`.
    fn chat_at(id: &str, from: &str, owner: &str, ts: i64) -> Input {
        let Input::Message { message, .. } = chat(id, from, owner) else {
            unreachable!()
        };
        let mut envelope = message.envelope.clone();
        envelope.server_ts = ts;
        Input::Message {
            owner: owner.into(),
            message: Message::new(envelope),
            then: Vec::new(),
            fresh: false,
        }
    }

    fn expire(owner: &str, before_ms: i64) -> Input {
        Input::Expire {
            owner: owner.into(),
            before_ms,
        }
    }

    #[test]
    fn retention_drops_old_delivered_entries_with_their_dedupe_keys_and_nothing_undelivered() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        let sent: Vec<Input> = (1..=4)
            .map(|i| chat_at(&format!("m{i}"), "alice", "bob", i * 100))
            .collect();
        store.run(sent, &none);
        store.run(vec![ack("bob", 3)], &none);

        // Old enough: m1 and m2. m3 is delivered but too young.
        store.run(vec![expire("bob", 250)], &none);
        assert_eq!(store.seqs("bob"), [3, 4]);
        let dedupe = |id: &str| dedupe_key("bob", &["alice", id]);
        assert_eq!(store.state.get(Space::Dedupe, &dedupe("m1")).unwrap(), None);
        assert!(store
            .state
            .get(Space::Dedupe, &dedupe("m3"))
            .unwrap()
            .is_some());

        // Everything is old now, but m4 was never acked: it stays.
        store.run(vec![expire("bob", 10_000)], &none);
        assert_eq!(store.seqs("bob"), [4]);
        // Applying it again changes nothing.
        store.run(vec![expire("bob", 10_000)], &none);
        assert_eq!(store.seqs("bob"), [4]);

        // Seqs go on from where they were, also after a restart (the cache
        // gone), and the unacked entry still gets its receipt.
        store.rules = InboxRules::new(Holding::Given);
        store.run(vec![chat_at("m5", "alice", "bob", 500)], &none);
        assert_eq!(store.seqs("bob"), [4, 5]);
        let effects = store.run(vec![ack("bob", 5)], &none);
        let covered = receipts(&effects);
        assert_eq!(
            covered,
            [("alice".into(), "m4".into()), ("alice".into(), "m5".into())]
        );
    }

    #[test]
    fn a_history_whose_entries_all_expired_keeps_its_seqs_and_forgets_who_hid_them() {
        let owner = history_owner("alice:bob");
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        store.run(
            vec![
                chat_at("m1", "alice", &owner, 100),
                chat_at("m2", "alice", &owner, 200),
            ],
            &none,
        );
        let hide = |id: &str| Input::Hide {
            owner: owner.clone(),
            hide: HideRecord {
                user: "bob".into(),
                author: "alice".into(),
                message_ids: vec![id.into()],
            },
        };
        store.run(vec![hide("m1"), hide("m2")], &none);
        store.run(vec![expire(&owner, 150)], &none);
        assert_eq!(store.seqs(&owner), [2]);
        let hidden = |id: &str| {
            store
                .state
                .get(Space::Hidden, &hidden_key(&owner, "bob", id))
        };
        assert_eq!(hidden("m1").unwrap(), None);
        assert!(hidden("m2").unwrap().is_some());

        store.run(vec![expire(&owner, 1_000)], &none);
        assert!(store.seqs(&owner).is_empty());
        store.rules = InboxRules::new(Holding::Given);
        store.run(vec![chat_at("m3", "alice", &owner, 300)], &none);
        assert_eq!(store.seqs(&owner), [3]);
    }

    #[test]
    fn retention_keeps_an_entry_it_cannot_read_and_everything_after_it() {
        let mut store = Store::new(Holding::Given);
        let none = PresenceMap::new();
        let mut junk = super::super::view::Pending::default();
        junk.put(Space::Inbox, inbox_key("bob", 1), b"\xff\xff".to_vec());
        let mut meta = 1u64.to_be_bytes().to_vec();
        meta.extend_from_slice(&1u64.to_be_bytes());
        junk.put(Space::Meta, b"bob".to_vec(), meta);
        store.state.commit(&junk);
        store.run(vec![chat_at("m2", "alice", "bob", 100)], &none);
        store.run(vec![ack("bob", 2), expire("bob", 1_000)], &none);
        assert_eq!(store.seqs("bob"), [1, 2]);
    }
}
