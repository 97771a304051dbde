//! Inbox writers of `samvad serve`: one thread per shard, a group commit
//! per batch, no bus between the edge and the inboxes.
//!
//! An inbox belongs to shard `hash(owner) mod N`. Each shard's writer takes
//! everything queued for it (up to [`MAX_BATCH`] inputs), applies it with
//! [`InboxRules`] and commits the changes, the batch's outbox and the
//! removal of the outbox entries it applied as ONE fjall batch with one
//! fsync; then it answers the submitters, pushes the new entries straight
//! into the recipients' session queues ([`Outlet`]) and hands inputs for
//! other shards' inboxes to their writers.
//!
//! Across shards, the outbox keeps every promise: an input for another
//! shard is written as `o | target | source | lsn` in the batch that made
//! it, and removed in the batch of the target that applies it. A crash
//! between the two leaves the entry, and the next start hands it to its
//! target again before anything else (applying it twice is harmless: the
//! inbox rules drop duplicates). Order across shards holds per pair of
//! shards (one FIFO channel each way), which is what a conversation needs:
//! a 1:1 chat's entries and a group's fan-out each travel from one shard.
//!
//! Each writer runs its [`Sweep`] of retention between batches, and applies
//! what a step yields as a batch like any other.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use fjall::{Database, PersistMode};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;
use samvad_proto::bus::{DeliverBatch, PushRecord};
use tokio::sync::oneshot;

use super::fjall_state::FjallState;
use super::retention::{Retention, Sweep, SWEEP_EVERY};
use super::rules::{Effect, Holding, InboxRules, Input};
use super::view::Space;
use crate::presence::{MemoryPresence, SessionRoute};
use crate::StoreError;

/// Most inputs one writer applies in one batch.
pub const MAX_BATCH: usize = 1024;

/// Most inputs queued to one writer without an answer awaited
/// ([`Shards::send`]: acks, syncs). What a session awaits is bounded by its
/// own in-flight limit; these by this.
pub const MAX_UNANSWERED: usize = 64 * 1024;

/// How many inputs wait in a writer's queue unanswered, against a cap.
#[derive(Debug)]
struct Backlog {
    queued: AtomicUsize,
    cap: usize,
}

impl Backlog {
    fn new(cap: usize) -> Self {
        Backlog {
            queued: AtomicUsize::new(0),
            cap,
        }
    }

    /// Counts `n` more, or refuses with how many wait already.
    fn admit(&self, n: usize) -> Result<(), ShardError> {
        let queued = self.queued.fetch_add(n, Ordering::Relaxed);
        if queued >= self.cap {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            return Err(ShardError::Busy(queued));
        }
        Ok(())
    }

    /// The writer took `n` of them.
    fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Where a writer's effects leave the store.
pub trait Outlet: Send + Sync + 'static {
    /// An encoded frame for one live session of this process.
    fn push(&self, route: &SessionRoute, frame: Bytes);
    /// Entries for users with no live session (push notifications).
    fn offline(&self, notifications: Vec<PushRecord>);
}

/// Why a submission was not applied.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ShardError {
    #[error("the inbox writer failed to commit: {0}")]
    Commit(String),
    #[error("the inbox writer has stopped")]
    Stopped,
    #[error("the inbox writer is {0} inputs behind; retry")]
    Busy(usize),
}

enum Command {
    /// Inputs from a session; `done` hears once they are durable.
    Submit {
        inputs: Vec<Input>,
        done: Option<oneshot::Sender<Result<(), ShardError>>>,
    },
    /// Inputs from another shard's outbox entry `key`.
    Forwarded { key: Vec<u8>, inputs: Vec<Input> },
}

/// The shard that holds `owner`'s inbox (FNV-1a, as the bus partitions).
pub fn shard_of(owner: &str, shards: usize) -> usize {
    samvad_bus::partition_for(owner.as_bytes(), shards as u32) as usize
}

/// Handles to the writers; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    senders: Arc<Vec<Sender<Command>>>,
    /// Per writer, inputs queued by [`Shards::send`] it has not taken yet.
    unanswered: Arc<Vec<Backlog>>,
}

/// A started set of writers.
pub struct Writers {
    pub shards: Shards,
    /// How each writer ended: it ends only if its storage failed (a closed
    /// channel: it panicked). Awaiting these never blocks a runtime's
    /// shutdown, as joining the threads would.
    pub exits: Vec<oneshot::Receiver<Result<(), StoreError>>>,
}

fn outbox_key(target: usize, source: usize, lsn: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(13);
    key.push(b'o');
    key.extend_from_slice(&(target as u16).to_be_bytes());
    key.extend_from_slice(&(source as u16).to_be_bytes());
    key.extend_from_slice(&lsn.to_be_bytes());
    key
}

/// A batch of inputs as `DeliverBatch` bytes. A message's envelope is
/// written as its bytes from the edge, not encoded again.
fn encode_batch(inputs: &[Input]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut put = |record: &[u8]| {
        encode_key(1, WireType::LengthDelimited, &mut out);
        out.reserve(encoded_len_varint(record.len() as u64) + record.len());
        encode_varint(record.len() as u64, &mut out);
        out.put_slice(record);
    };
    for input in inputs {
        match input {
            Input::Message {
                owner,
                message,
                then,
                ..
            } => {
                // Followers are generated when their leader is applied and
                // travel on their own, so `then` is empty here; were it
                // not, each follower is written as a record of its own
                // (applied with a dedupe read after a replay).
                for owner in std::iter::once(owner).chain(then) {
                    let mut r = BytesMut::with_capacity(owner.len() + message.bytes.len() + 12);
                    encode_key(1, WireType::LengthDelimited, &mut r);
                    encode_varint(owner.len() as u64, &mut r);
                    r.put_slice(owner.as_bytes());
                    encode_key(2, WireType::LengthDelimited, &mut r);
                    encode_varint(message.bytes.len() as u64, &mut r);
                    r.put_slice(&message.bytes);
                    put(&r);
                }
            }
            other => put(&other.to_record().encode_to_vec()),
        }
    }
    out.to_vec()
}

fn decode_batch(bytes: &[u8]) -> Result<Vec<Input>, StoreError> {
    let batch = DeliverBatch::decode(bytes).map_err(|_| StoreError::Corrupt { what: "outbox" })?;
    Ok(batch
        .records
        .into_iter()
        .filter_map(Input::from_record)
        .collect())
}

impl Shards {
    /// Opens the writers over `db`. Outbox entries left by a crash are
    /// queued to their targets before anything a session submits.
    pub fn start(
        db: &Database,
        count: usize,
        persist: PersistMode,
        presence: Arc<MemoryPresence>,
        outlet: Arc<dyn Outlet>,
        retention: Retention,
    ) -> Result<Writers, StoreError> {
        let count = count.clamp(1, u16::MAX as usize);
        let state = FjallState::open(db)?;
        let channels: Vec<(Sender<Command>, Receiver<Command>)> =
            (0..count).map(|_| crossbeam_channel::unbounded()).collect();
        let senders: Arc<Vec<Sender<Command>>> =
            Arc::new(channels.iter().map(|(tx, _)| tx.clone()).collect());
        let unanswered: Arc<Vec<Backlog>> =
            Arc::new((0..count).map(|_| Backlog::new(MAX_UNANSWERED)).collect());
        let mut next_lsn = 1;
        for (key, value) in state.scan_prefix(Space::Applied, b"o")? {
            if let Some(lsn) = key.get(5..13).and_then(|b| b.try_into().ok()) {
                next_lsn = next_lsn.max(u64::from_be_bytes(lsn) + 1);
            }
            let inputs = decode_batch(&value)?;
            let Some(first) = inputs.first() else {
                continue;
            };
            // The shard of its first input applies (and removes) the entry;
            // if the shard count changed, it forwards what it no longer holds.
            let target = shard_of(first.owner(), count);
            tracing::info!(target, inputs = inputs.len(), "replaying an outbox entry");
            let _ = senders[target].send(Command::Forwarded { key, inputs });
        }
        let mut exits = Vec::with_capacity(count);
        for (me, (_, rx)) in channels.into_iter().enumerate() {
            let writer = Writer {
                me,
                count,
                rx,
                peers: senders.clone(),
                state: state.clone(),
                persist,
                presence: presence.clone(),
                outlet: outlet.clone(),
                next_lsn,
                unanswered: unanswered.clone(),
                retention,
                sweep: Sweep::default(),
            };
            let (exit, exited) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("inbox-writer-{me}"))
                .spawn(move || {
                    let _ = exit.send(writer.run());
                })
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            exits.push(exited);
        }
        Ok(Writers {
            shards: Shards {
                senders,
                unanswered,
            },
            exits,
        })
    }

    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// Hands `inputs` to the writer of `owner`'s shard, which applies them
    /// in one batch (forwarding those for other shards through its outbox).
    /// Order is fixed when this is called; the future resolves once the
    /// batch is durable.
    pub fn submit(
        &self,
        owner: &str,
        inputs: Vec<Input>,
    ) -> impl std::future::Future<Output = Result<(), ShardError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let shard = shard_of(owner, self.count());
        let sent = self.senders[shard]
            .send(Command::Submit {
                inputs,
                done: Some(tx),
            })
            .is_ok();
        async move {
            if !sent {
                return Err(ShardError::Stopped);
            }
            rx.await.unwrap_or(Err(ShardError::Stopped))
        }
    }

    /// Hands `inputs` to `owner`'s shard without waiting for them (what a
    /// session needs no answer for: its acks and syncs answer through the
    /// session itself), so that no session task wakes up per ack. Refused
    /// with [`ShardError::Busy`] while the writer has
    /// [`MAX_UNANSWERED`] such inputs queued.
    pub fn send(&self, owner: &str, inputs: Vec<Input>) -> Result<(), ShardError> {
        let shard = shard_of(owner, self.count());
        self.unanswered[shard].admit(inputs.len())?;
        self.senders[shard]
            .send(Command::Submit { inputs, done: None })
            .map_err(|_| ShardError::Stopped)
    }
}

struct Writer {
    me: usize,
    count: usize,
    rx: Receiver<Command>,
    peers: Arc<Vec<Sender<Command>>>,
    state: FjallState,
    persist: PersistMode,
    presence: Arc<MemoryPresence>,
    outlet: Arc<dyn Outlet>,
    next_lsn: u64,
    unanswered: Arc<Vec<Backlog>>,
    retention: Retention,
    sweep: Sweep,
}

impl Writer {
    fn run(mut self) -> Result<(), StoreError> {
        let (me, count) = (self.me, self.count);
        let mut rules = InboxRules::new(Holding::Shard(Box::new(move |owner| {
            shard_of(owner, count) == me
        })));
        loop {
            let first = if self.retention.is_forever() {
                match self.rx.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                }
            } else {
                self.sweep_if_due(&mut rules)?;
                match self.rx.recv_timeout(SWEEP_EVERY) {
                    Ok(first) => first,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut inputs = Vec::new();
            let mut dones = Vec::new();
            let mut applied_outbox = Vec::new();
            let unanswered = &self.unanswered[me];
            let mut take = |command: Command, inputs: &mut Vec<Input>| match command {
                Command::Submit { inputs: i, done } => {
                    if done.is_none() {
                        unanswered.taken(i.len());
                    }
                    inputs.extend(i);
                    dones.extend(done);
                }
                Command::Forwarded { key, inputs: i } => {
                    inputs.extend(i);
                    applied_outbox.push(key);
                }
            };
            take(first, &mut inputs);
            while inputs.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(command) => take(command, &mut inputs),
                    Err(_) => break,
                }
            }
            // Only a promise needs stable storage: a batch that answers
            // someone (a send's `Accepted`) is committed with the
            // configured durability; one of acks and syncs alone is written
            // to the OS (it survives kill -9) and made stable by the next
            // synced commit, since every writer shares one journal, in
            // order.
            let persist = if dones.is_empty() {
                PersistMode::Buffer
            } else {
                self.persist
            };
            if let Err(e) = self.batch(&mut rules, inputs, applied_outbox, persist) {
                rules.forget();
                tracing::error!(shard = me, error = %e, "inbox writer stops: commit failed");
                for done in dones {
                    let _ = done.send(Err(ShardError::Commit(e.to_string())));
                }
                return Err(e);
            }
            for done in dones {
                let _ = done.send(Ok(()));
            }
        }
        Ok(())
    }

    /// A step of the retention sweep, if one is due, for the owners this
    /// shard holds: one batch (written to the OS, made stable by the next
    /// synced commit).
    fn sweep_if_due(&mut self, rules: &mut InboxRules) -> Result<(), StoreError> {
        let (me, count) = (self.me, self.count);
        let inputs = self
            .sweep
            .step_if_due(&self.state, &self.retention, now_ms(), |owner| {
                shard_of(owner, count) == me
            })?;
        if inputs.is_empty() {
            return Ok(());
        }
        // A failed commit ends the writer (as in `run`), rules and all.
        self.batch(rules, inputs, Vec::new(), PersistMode::Buffer)
    }

    /// Applies, commits and carries out one batch.
    fn batch(
        &mut self,
        rules: &mut InboxRules,
        inputs: Vec<Input>,
        applied_outbox: Vec<Vec<u8>>,
        persist: PersistMode,
    ) -> Result<(), StoreError> {
        let output = rules.apply(&self.state, inputs, &*self.presence, now_ms())?;
        // Nothing to write and nothing to make stable (a sweep step that
        // found nothing old): no commit.
        if output.pending.is_empty()
            && output.effects.is_empty()
            && applied_outbox.is_empty()
            && matches!(persist, PersistMode::Buffer)
        {
            rules.committed(output.touched);
            return Ok(());
        }
        let mut batch = self.state.batch(&output.pending);
        for key in &applied_outbox {
            self.state.remove(&mut batch, Space::Applied, key);
        }
        let mut forwards: BTreeMap<usize, Vec<Input>> = BTreeMap::new();
        let mut pushes = Vec::new();
        let mut offline = Vec::new();
        for effect in output.effects {
            match effect {
                Effect::Forward(input) => forwards
                    .entry(shard_of(input.owner(), self.count))
                    .or_default()
                    .push(input),
                Effect::Push { route, frame } => pushes.push((route, frame)),
                Effect::Offline { user, seq, frame } => {
                    offline.push(PushRecord { user, seq, frame })
                }
            }
        }
        let mut handoffs = Vec::with_capacity(forwards.len());
        for (target, inputs) in forwards {
            let key = outbox_key(target, self.me, self.next_lsn);
            self.next_lsn += 1;
            self.state
                .put(&mut batch, Space::Applied, &key, &encode_batch(&inputs));
            handoffs.push((target, key, inputs));
        }
        self.state.commit(batch, Some(persist))?;
        rules.committed(output.touched);
        for (target, key, inputs) in handoffs {
            let _ = self.peers[target].send(Command::Forwarded { key, inputs });
        }
        for (route, frame) in &pushes {
            self.outlet.push(route, frame.clone());
        }
        if !offline.is_empty() {
            self.outlet.offline(offline);
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (the writers' receipts' time).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rules::Message;
    use samvad_proto::v1;

    #[test]
    fn a_writer_far_behind_refuses_more_unanswered_inputs_until_it_takes_some() {
        let backlog = Backlog::new(3);
        backlog.admit(2).unwrap();
        backlog.admit(1).unwrap();
        assert_eq!(backlog.admit(1), Err(ShardError::Busy(3)));
        // A refusal counts nothing.
        assert_eq!(backlog.admit(5), Err(ShardError::Busy(3)));
        backlog.taken(2);
        backlog.admit(1).unwrap();
        backlog.admit(1).unwrap();
        assert_eq!(backlog.admit(1), Err(ShardError::Busy(3)));
    }

    #[test]
    fn an_outbox_entry_decodes_to_the_inputs_it_was_made_of() {
        let message = Message::new(v1::Envelope {
            id: "m1".into(),
            head: Some(v1::Head {
                from: "alice".into(),
                to: "bob".into(),
                chatid: "alice:bob".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let inputs = vec![
            Input::Message {
                owner: "#alice:bob".into(),
                message: message.clone(),
                then: vec!["carol".into()],
                fresh: true,
            },
            Input::Ack {
                owner: "bob".into(),
                device: "phone".into(),
                seq: 3,
            },
        ];
        let decoded = decode_batch(&encode_batch(&inputs)).unwrap();
        let plain = |owner: &str| Input::Message {
            owner: owner.into(),
            message: message.clone(),
            then: Vec::new(),
            fresh: false,
        };
        assert_eq!(
            decoded,
            [plain("#alice:bob"), plain("carol"), inputs[1].clone()]
        );
    }
}
