//! Inbox writers of `samvad serve`: a writer per shard, a group commit
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
//! A writer is a lock over its state with a thread of its own: the thread
//! applies sends, commands from other shards and the retention sweep; a
//! session that queues what needs no answer (acks, syncs) and finds the
//! writer free applies it on its own task ([`Shards::send`]).
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
//!
//! Durability comes from each writer's [`CommitLog`] (with
//! `--durability sync`): a batch is committed to fjall without an fsync,
//! then appended to the log, which is synced when the batch promises
//! something; the batch writes the log's lsn for it (`l | shard`) with its
//! changes. At start, whatever the log holds past that lsn (a power loss
//! took it from fjall's unsynced journal) is applied again, exactly as it
//! was (same inputs, same time), before anything else; before the log
//! reuses a segment, fjall is checkpointed.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use fjall::{Database, PersistMode};
use parking_lot::{Condvar, Mutex};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message as _;
use samvad_proto::bus::{DeliverBatch, LoggedBatch, LoggedInput, PushRecord};
use samvad_proto::v1;
use tokio::sync::oneshot;

use super::commit_log::{CommitLog, Record};
use super::fjall_state::FjallState;
use super::retention::{Retention, Sweep, SWEEP_EVERY};
use crate::presence::{MemoryPresence, SessionRoute};
use crate::StoreError;
use samvad_core::inbox::{Committed, Space};
use samvad_core::inbox::{Effect, Holding, InboxRules, Input, Message};

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
    /// End once what was queued before is applied.
    Stop,
}

/// A writer's queue of commands. The writer sleeps on a condition
/// variable only while the queue is empty, and a sender wakes it only when
/// it makes the queue non-empty: one wake-up per batch at most, and no
/// spinning or yielding (a channel's backoff, which on a core shared with
/// the sessions costs a context switch each time it yields).
#[derive(Default)]
struct Mailbox {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    /// The writer ended: nothing sent is applied any more.
    closed: bool,
}

impl Mailbox {
    /// Queues a command; `false` if the writer has ended.
    fn send(&self, command: Command) -> bool {
        let mut queue = self.queue.lock();
        if queue.closed {
            return false;
        }
        let was_empty = queue.commands.is_empty();
        queue.commands.push_back(command);
        drop(queue);
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Queues a command without waking the writer thread: the sender
    /// applies it itself, or calls [`Mailbox::wake`]. `false` if the
    /// writer has ended.
    fn push_quiet(&self, command: Command) -> bool {
        let mut queue = self.queue.lock();
        if queue.closed {
            return false;
        }
        queue.commands.push_back(command);
        true
    }

    /// Wakes the writer thread if it waits (no system call if it does not).
    fn wake(&self) {
        self.ready.notify_one();
    }

    /// Waits until a command is queued or the mailbox is closed, up to
    /// `timeout` (for ever with `None`); takes nothing.
    fn wait_for_work(&self, timeout: Option<Duration>) {
        let mut queue = self.queue.lock();
        match timeout {
            None => {
                while queue.commands.is_empty() && !queue.closed {
                    self.ready.wait(&mut queue);
                }
            }
            Some(timeout) => {
                if queue.commands.is_empty() && !queue.closed {
                    self.ready.wait_for(&mut queue, timeout);
                }
            }
        }
    }

    /// The commands at the head of the queue, up to [`MAX_BATCH`] inputs,
    /// as one batch, ended by a `Stop`. What `takes` refuses ends the batch
    /// and stays queued.
    fn take_batch(&self, takes: impl Fn(&Command) -> bool) -> Taken {
        let mut queue = self.queue.lock();
        let mut taken = Taken::default();
        while taken.inputs.len() < MAX_BATCH && !taken.stop {
            if queue.commands.front().is_some_and(|c| !takes(c)) {
                break;
            }
            match queue.commands.pop_front() {
                Some(Command::Submit { inputs, done }) => {
                    match done {
                        Some(done) => taken.dones.push(done),
                        None => taken.unanswered += inputs.len(),
                    }
                    taken.inputs.extend(inputs);
                }
                Some(Command::Forwarded { key, inputs }) => {
                    taken.inputs.extend(inputs);
                    taken.applied_outbox.push(key);
                }
                Some(Command::Stop) => taken.stop = true,
                None => break,
            }
        }
        taken.more = !queue.commands.is_empty();
        taken
    }

    /// The writer ended: later sends are refused, and what is queued is
    /// dropped (whoever awaits it hears [`ShardError::Stopped`]).
    fn close(&self) {
        let mut queue = self.queue.lock();
        queue.closed = true;
        queue.commands.clear();
    }
}

/// One batch of commands, taken from a mailbox.
#[derive(Default)]
struct Taken {
    inputs: Vec<Input>,
    /// Who waits for the batch to be durable.
    dones: Vec<oneshot::Sender<Result<(), ShardError>>>,
    /// Inputs of unanswered submissions among `inputs`.
    unanswered: usize,
    /// The outbox entries of other shards it applies.
    applied_outbox: Vec<Vec<u8>>,
    /// The writer is to stop after it.
    stop: bool,
    /// Commands stay queued after it.
    more: bool,
}

/// Closes a mailbox when dropped.
struct Closing<'a>(&'a Mailbox);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The shard that holds `owner`'s inbox (FNV-1a, as the bus partitions).
pub fn shard_of(owner: &str, shards: usize) -> usize {
    samvad_bus::partition_for(owner.as_bytes(), shards as u32) as usize
}

/// Handles to the writers; cheap to clone.
#[derive(Clone)]
pub struct Shards {
    senders: Arc<Vec<Mailbox>>,
    /// Each shard's writer: its thread's, and whoever applies unanswered
    /// inputs while that thread waits ([`Shards::send`]).
    writers: Arc<Vec<Mutex<Writer>>>,
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

/// The `Applied` key holding the lsn of the last batch of writer `shard`'s
/// commit log that is in the database.
fn logged_key(shard: usize) -> Vec<u8> {
    let mut key = vec![b'l'];
    key.extend_from_slice(&(shard as u16).to_be_bytes());
    key
}

/// A batch as its commit log record: the inputs exactly as applied (a
/// message's envelope bytes, not encoded again).
fn encode_logged(now_ms: i64, applied_outbox: &[Vec<u8>], inputs: &[Input]) -> Vec<u8> {
    let inputs = inputs
        .iter()
        .map(|input| match input {
            Input::Message {
                owner,
                message,
                then,
                fresh,
            } => LoggedInput {
                owner: owner.clone(),
                envelope: message.bytes.clone(),
                then: then.clone(),
                fresh: *fresh,
                other: None,
            },
            other => LoggedInput {
                owner: other.owner().to_string(),
                other: Some(other.to_record()),
                ..Default::default()
            },
        })
        .collect();
    LoggedBatch {
        now_ms,
        applied_outbox: applied_outbox
            .iter()
            .map(|k| Bytes::copy_from_slice(k))
            .collect(),
        inputs,
    }
    .encode_to_vec()
}

/// A batch read back from its commit log record.
struct LoggedInputs {
    now_ms: i64,
    /// The outbox entries it applied (removed in its fjall batch).
    applied_outbox: Vec<Vec<u8>>,
    inputs: Vec<Input>,
}

/// A commit log record's batch: its time, the outbox entries it applied,
/// its inputs.
fn decode_logged(record: &Record) -> Result<LoggedInputs, StoreError> {
    let corrupt = || StoreError::Corrupt { what: "commit log" };
    let batch = LoggedBatch::decode(record.payload.as_slice()).map_err(|_| corrupt())?;
    let mut inputs = Vec::with_capacity(batch.inputs.len());
    for input in batch.inputs {
        match input.other {
            Some(other) => inputs.extend(Input::from_record(other)),
            None => {
                let envelope =
                    v1::Envelope::decode(input.envelope.clone()).map_err(|_| corrupt())?;
                inputs.push(Input::Message {
                    owner: input.owner,
                    message: Arc::new(Message {
                        envelope,
                        bytes: input.envelope,
                    }),
                    then: input.then,
                    fresh: input.fresh,
                });
            }
        }
    }
    Ok(LoggedInputs {
        now_ms: batch.now_ms,
        applied_outbox: batch.applied_outbox.iter().map(|k| k.to_vec()).collect(),
        inputs,
    })
}

impl Shards {
    /// Opens the writers over `db`. With `logs` (a directory), each
    /// writer makes its batches durable in its own commit log there
    /// (`logs/<shard>`), and what a log holds that `db` lost is applied
    /// again first; without, `persist` is fjall's own for every batch
    /// that promises something. Outbox entries left by a crash are then
    /// queued to their targets, before anything a session submits.
    pub fn start(
        db: &Database,
        count: usize,
        persist: PersistMode,
        logs: Option<&Path>,
        presence: Arc<MemoryPresence>,
        outlet: Arc<dyn Outlet>,
        retention: Retention,
    ) -> Result<Writers, StoreError> {
        let count = count.clamp(1, u16::MAX as usize);
        let state = FjallState::open(db)?;
        let senders: Arc<Vec<Mailbox>> = Arc::new((0..count).map(|_| Mailbox::default()).collect());
        let unanswered: Arc<Vec<Backlog>> =
            Arc::new((0..count).map(|_| Backlog::new(MAX_UNANSWERED)).collect());
        let mut next_lsn = 1;
        for (key, _) in state.scan_prefix(Space::Applied, b"o")? {
            if let Some(lsn) = key.get(5..13).and_then(|b| b.try_into().ok()) {
                next_lsn = next_lsn.max(u64::from_be_bytes(lsn) + 1);
            }
        }
        let mut writers: Vec<Writer> = (0..count)
            .map(|me| Writer {
                failed: None,
                me,
                count,
                peers: senders.clone(),
                state: state.clone(),
                rules: InboxRules::new(Holding::Shard(Box::new(move |owner| {
                    shard_of(owner, count) == me
                }))),
                persist,
                log: None,
                presence: presence.clone(),
                outlet: outlet.clone(),
                next_lsn,
                unanswered: unanswered.clone(),
                retention,
                sweep: Sweep::default(),
            })
            .collect();
        if let Some(logs) = logs {
            open_logs(logs, &mut writers, &state)?;
        }
        for (key, value) in state.scan_prefix(Space::Applied, b"o")? {
            let inputs = decode_batch(&value)?;
            let Some(first) = inputs.first() else {
                continue;
            };
            // The shard of its first input applies (and removes) the entry;
            // if the shard count changed, it forwards what it no longer holds.
            let target = shard_of(first.owner(), count);
            tracing::info!(target, inputs = inputs.len(), "replaying an outbox entry");
            senders[target].send(Command::Forwarded { key, inputs });
        }
        let sweeping = !retention.is_forever();
        let writers: Arc<Vec<Mutex<Writer>>> =
            Arc::new(writers.into_iter().map(Mutex::new).collect());
        let mut exits = Vec::with_capacity(count);
        for me in 0..count {
            let (exit, exited) = oneshot::channel();
            let (writers, mailboxes) = (writers.clone(), senders.clone());
            std::thread::Builder::new()
                .name(format!("inbox-writer-{me}"))
                .spawn(move || {
                    let _ = exit.send(run(&writers[me], &mailboxes[me], sweeping));
                })
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            exits.push(exited);
        }
        Ok(Writers {
            shards: Shards {
                senders,
                writers,
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
        let sent = self.senders[shard].send(Command::Submit {
            inputs,
            done: Some(tx),
        });
        async move {
            if !sent {
                return Err(ShardError::Stopped);
            }
            rx.await.unwrap_or(Err(ShardError::Stopped))
        }
    }

    /// Asks every writer to end once what was queued before is applied
    /// (each [`Writers::exits`] then says `Ok`); what is queued after is
    /// not applied.
    pub fn stop(&self) {
        for mailbox in self.senders.iter() {
            mailbox.send(Command::Stop);
        }
    }

    /// Hands `inputs` to `owner`'s shard without waiting for them (what a
    /// session needs no answer for: its acks and syncs answer through the
    /// session itself), so that no session task wakes up per ack. Refused
    /// with [`ShardError::Busy`] while the writer has
    /// [`MAX_UNANSWERED`] such inputs queued.
    ///
    /// If nobody holds the shard's writer, the caller takes it and applies
    /// the unanswered inputs at the head of its queue, these among them, as
    /// one batch on its own thread (a session's task): a batch of acks
    /// needs no sync, so no thread wakes up, and the frames it makes
    /// (receipts) are pushed from this thread. Otherwise whoever holds the
    /// writer takes them next: the writer thread, which is woken in case it
    /// is about to wait, or another caller, which wakes it for anything it
    /// leaves queued.
    pub fn send(&self, owner: &str, inputs: Vec<Input>) -> Result<(), ShardError> {
        let shard = shard_of(owner, self.count());
        let count = inputs.len();
        self.unanswered[shard].admit(count)?;
        let mailbox = &self.senders[shard];
        if !mailbox.push_quiet(Command::Submit { inputs, done: None }) {
            self.unanswered[shard].taken(count);
            return Err(ShardError::Stopped);
        }
        match self.writers[shard].try_lock() {
            Some(mut writer) => writer.apply_queued(mailbox),
            None => mailbox.wake(),
        }
        Ok(())
    }
}

/// Opens every writer's commit log in `logs`, applies again what a log
/// holds past the lsn the database has for it, checkpoints, and hands each
/// writer its log. A log of a shard that no longer exists (the count went
/// down) is applied by writer 0, whose rules forward what it does not hold,
/// and removed.
fn open_logs(logs: &Path, writers: &mut [Writer], state: &FjallState) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Unavailable(format!("commit log: {e}"));
    std::fs::create_dir_all(logs).map_err(io)?;
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(logs)
        .map_err(io)?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let index = entry.file_name().to_str()?.parse::<usize>().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    found.sort();
    for shard in 0..writers.len() {
        if !found.iter().any(|(i, _)| *i == shard) {
            found.push((shard, logs.join(shard.to_string())));
        }
    }
    let mut opened = Vec::new();
    let mut replayed = false;
    for (index, dir) in found {
        let (log, records) = CommitLog::open(&dir).map_err(io)?;
        let mut applied = match state.get(Space::Applied, &logged_key(index))? {
            Some(v) => {
                u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "commit log lsn",
                })?)
            }
            None => 0,
        };
        let writer = &mut writers[if index < writers.len() { index } else { 0 }];
        let from = applied;
        for record in records.iter().filter(|r| r.lsn > from) {
            let LoggedInputs {
                now_ms: now,
                applied_outbox,
                inputs,
            } = decode_logged(record)?;
            tracing::info!(
                shard = index,
                lsn = record.lsn,
                "applying a logged batch again"
            );
            writer.batch(
                inputs,
                applied_outbox,
                PersistMode::Buffer,
                now,
                Logging::Replay {
                    log: index,
                    lsn: record.lsn,
                },
            )?;
            applied = record.lsn;
            replayed = true;
        }
        opened.push((index, dir, log, applied));
    }
    if replayed {
        state.checkpoint()?;
    }
    for (index, dir, mut log, applied) in opened {
        if index < writers.len() {
            log.resume_at(applied + 1).map_err(io)?;
            writers[index].log = Some(log);
        } else {
            drop(log);
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
    }
    Ok(())
}

/// How a batch meets the commit log.
#[derive(Debug, Clone, Copy)]
enum Logging {
    /// Appended to the writer's log (if it has one).
    Append,
    /// Applied again from log `log`'s record `lsn`, at start: not appended,
    /// and its forwards are left to the outbox replay that follows.
    Replay { log: usize, lsn: u64 },
}

struct Writer {
    me: usize,
    /// A commit failed where [`Shards::send`] applied a batch: the writer
    /// thread ends with this.
    failed: Option<StoreError>,
    count: usize,
    /// Every writer's queue; this one's is `peers[me]`.
    peers: Arc<Vec<Mailbox>>,
    state: FjallState,
    rules: InboxRules,
    persist: PersistMode,
    /// Where batches are made durable, if not in fjall's own journal.
    log: Option<CommitLog>,
    presence: Arc<MemoryPresence>,
    outlet: Arc<dyn Outlet>,
    next_lsn: u64,
    unanswered: Arc<Vec<Backlog>>,
    retention: Retention,
    sweep: Sweep,
}

/// A writer thread: applies what its mailbox holds, a batch at a time,
/// and the retention sweep between batches; ends when told to stop, or
/// when a commit failed (here or where [`Shards::send`] applied a batch).
fn run(writer: &Mutex<Writer>, mailbox: &Mailbox, sweeping: bool) -> Result<(), StoreError> {
    // However the writer ends (a panic too), its mailbox closes.
    let _closing = Closing(mailbox);
    loop {
        mailbox.wait_for_work(sweeping.then_some(SWEEP_EVERY));
        // The writer is taken before the queue, so that nothing queued
        // later is applied first by a sender (`apply_queued`).
        let mut writer = writer.lock();
        if let Some(e) = writer.failed.take() {
            return Err(e);
        }
        if sweeping {
            writer.sweep_if_due()?;
        }
        let taken = mailbox.take_batch(|_| true);
        let stop = taken.stop;
        writer.work(taken)?;
        if stop {
            return Ok(());
        }
    }
}

impl Writer {
    /// Applies a batch taken from the mailbox.
    fn work(&mut self, taken: Taken) -> Result<(), StoreError> {
        self.unanswered[self.me].taken(taken.unanswered);
        if taken.inputs.is_empty() && taken.applied_outbox.is_empty() {
            return Ok(());
        }
        // Only a promise needs stable storage: a batch that answers
        // someone (a send's `Accepted`) is committed with the configured
        // durability; one of acks and syncs alone is written to the OS (it
        // survives kill -9) and made stable by the next synced commit,
        // since every writer shares one journal, in order.
        let persist = if taken.dones.is_empty() {
            PersistMode::Buffer
        } else {
            self.persist
        };
        self.apply(taken.inputs, taken.applied_outbox, persist, taken.dones)
    }

    /// Applies, commits and carries out one batch, then answers `dones`.
    /// A failed commit refuses `dones` and ends the writer: the rules
    /// forget what may be ahead of the disk, and its mailbox closes before
    /// the writer is let go, so that no session applies anything after it.
    fn apply(
        &mut self,
        inputs: Vec<Input>,
        applied_outbox: Vec<Vec<u8>>,
        persist: PersistMode,
        dones: Vec<oneshot::Sender<Result<(), ShardError>>>,
    ) -> Result<(), StoreError> {
        let now = samvad_core::clock::unix_ms();
        match self.batch(inputs, applied_outbox, persist, now, Logging::Append) {
            Ok(()) => {
                for done in dones {
                    let _ = done.send(Ok(()));
                }
                Ok(())
            }
            Err(e) => {
                self.rules.forget();
                self.peers[self.me].close();
                tracing::error!(shard = self.me, error = %e, "inbox writer stops: commit failed");
                for done in dones {
                    let _ = done.send(Err(ShardError::Commit(e.to_string())));
                }
                Err(e)
            }
        }
    }

    /// Applies the unanswered submissions at the head of the queue (one
    /// batch: acks and syncs, which need no sync of their own) on the
    /// caller's thread, while the writer thread waits (it is not woken);
    /// wakes the writer thread for anything left queued.
    ///
    /// Sends are left to the writer thread: they wait for a sync, which
    /// must not block a session's task, and the writer thread's batches
    /// grow while it syncs.
    fn apply_queued(&mut self, mailbox: &Mailbox) {
        let taken =
            mailbox.take_batch(|command| matches!(command, Command::Submit { done: None, .. }));
        let more = taken.more;
        if let Err(e) = self.work(taken) {
            // The writer thread ends with it (the mailbox is closed).
            self.failed = Some(e);
            mailbox.wake();
            return;
        }
        if more {
            mailbox.wake();
        }
    }

    /// A step of the retention sweep, if one is due, for the owners this
    /// shard holds: one batch (written to the OS, made stable by the next
    /// synced commit).
    fn sweep_if_due(&mut self) -> Result<(), StoreError> {
        let (me, count) = (self.me, self.count);
        let inputs = self.sweep.step_if_due(
            &self.state,
            &self.retention,
            Instant::now(),
            samvad_core::clock::unix_ms(),
            |owner| shard_of(owner, count) == me,
        )?;
        if inputs.is_empty() {
            return Ok(());
        }
        // A failed commit ends the writer (as in `run`), rules and all.
        self.apply(inputs, Vec::new(), PersistMode::Buffer, Vec::new())
    }

    /// Applies, commits and carries out one batch.
    fn batch(
        &mut self,
        inputs: Vec<Input>,
        applied_outbox: Vec<Vec<u8>>,
        persist: PersistMode,
        now: i64,
        logging: Logging,
    ) -> Result<(), StoreError> {
        let logged = match (logging, &self.log) {
            (Logging::Append, Some(_)) => Some(encode_logged(now, &applied_outbox, &inputs)),
            _ => None,
        };
        let output = self
            .rules
            .apply(&self.state, inputs, &*self.presence, now)?;
        // Nothing to write and nothing to make stable (syncs of inboxes
        // that wrote nothing, a sweep step that found nothing old): no
        // commit, and nothing in the commit log, whose replay would only
        // push frames to sessions long gone. What a push carries was
        // committed by an earlier batch.
        if output.pending.is_empty()
            && applied_outbox.is_empty()
            && matches!(persist, PersistMode::Buffer)
            && output
                .effects
                .iter()
                .all(|effect| matches!(effect, Effect::Push { .. }))
        {
            self.rules.committed(output.touched);
            for effect in output.effects {
                if let Effect::Push { route, frame } = effect {
                    self.outlet.push(&route, frame);
                }
            }
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
        self.commit(batch, persist, logged, logging)?;
        self.rules.committed(output.touched);
        if let Logging::Append = logging {
            for (target, key, inputs) in handoffs {
                self.peers[target].send(Command::Forwarded { key, inputs });
            }
        }
        for (route, frame) in pushes {
            self.outlet.push(&route, frame);
        }
        if !offline.is_empty() {
            self.outlet.offline(offline);
        }
        Ok(())
    }
}

impl Writer {
    /// Commits a batch: to fjall alone with the configured durability, or
    /// (with a commit log) to fjall's buffer and the log, which is synced
    /// if the batch promises something.
    fn commit(
        &mut self,
        mut batch: fjall::OwnedWriteBatch,
        persist: PersistMode,
        logged: Option<Vec<u8>>,
        logging: Logging,
    ) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Unavailable(format!("commit log: {e}"));
        if let Logging::Replay { log, lsn } = logging {
            self.state.put(
                &mut batch,
                Space::Applied,
                &logged_key(log),
                &lsn.to_be_bytes(),
            );
            return self.state.commit(batch, Some(PersistMode::Buffer));
        }
        let (Some(log), Some(payload)) = (self.log.as_mut(), logged) else {
            return self.state.commit(batch, Some(persist));
        };
        if !log.fits(payload.len()) {
            // The other segment is reused: what it held must be in fjall
            // for good first.
            self.state.checkpoint()?;
            log.rotate().map_err(io)?;
        }
        let lsn = log.next_lsn();
        self.state.put(
            &mut batch,
            Space::Applied,
            &logged_key(self.me),
            &lsn.to_be_bytes(),
        );
        log.append(lsn, &payload).map_err(io)?;
        self.state.commit(batch, Some(PersistMode::Buffer))?;
        if !matches!(persist, PersistMode::Buffer) {
            log.sync().map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_core::inbox::Message;
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

    struct Nowhere;
    impl Outlet for Nowhere {
        fn push(&self, _: &SessionRoute, _: Bytes) {}
        fn offline(&self, _: Vec<PushRecord>) {}
    }

    fn chat(id: &str) -> Input {
        Input::Message {
            owner: "bob".into(),
            message: Message::new(v1::Envelope {
                id: id.into(),
                head: Some(v1::Head {
                    from: "alice".into(),
                    to: "bob".into(),
                    chatid: "alice:bob".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            then: vec!["#alice:bob".into()],
            fresh: false,
        }
    }

    /// Every entry of `owner`'s inbox: seq and message id.
    fn entries(db: &Database, owner: &str) -> Vec<(u64, String)> {
        let state = FjallState::open(db).unwrap();
        state
            .scan_prefix(Space::Inbox, &crate::keys::user_prefix(owner))
            .unwrap()
            .into_iter()
            .map(|(key, value)| {
                let seq = crate::keys::seq_of_inbox_key(&key).unwrap();
                let frame = v1::ServerFrame::decode(value).unwrap();
                let Some(v1::server_frame::Kind::Deliver(v1::Deliver {
                    envelope: Some(env),
                    ..
                })) = frame.kind
                else {
                    panic!("not a message: {frame:?}");
                };
                (seq, env.id)
            })
            .collect()
    }

    /// Starts two writers with commit logs over `db`, submits `ids` as
    /// chat messages one by one (each acknowledged), and stops them.
    fn run_writers(db: &Database, logs: &Path, ids: &[&str]) {
        let mut writers = Shards::start(
            db,
            2,
            PersistMode::SyncData,
            Some(logs),
            Arc::new(MemoryPresence::default()),
            Arc::new(Nowhere),
            Retention::default(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for id in ids {
                writers.shards.submit("bob", vec![chat(id)]).await.unwrap();
            }
            writers.shards.stop();
            for exit in std::mem::take(&mut writers.exits) {
                exit.await.unwrap().unwrap();
            }
        });
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn batches_the_database_lost_come_back_from_the_commit_logs_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (db_dir, logs, saved) = (
            dir.path().join("db"),
            dir.path().join("logs"),
            dir.path().join("saved"),
        );
        let open = || Database::builder(&db_dir).open().unwrap();
        let db = open();
        run_writers(&db, &logs, &["m1", "m2", "m3"]);
        db.persist(PersistMode::SyncAll).unwrap();
        drop(db);
        copy_dir(&db_dir, &saved);

        let db = open();
        run_writers(&db, &logs, &["m4", "m5", "m6"]);
        let before = (entries(&db, "bob"), entries(&db, "#alice:bob"));
        drop(db);
        let ids: Vec<(u64, String)> = (1..=6).map(|n| (n, format!("m{n}"))).collect();
        assert_eq!(before.0, ids);
        assert_eq!(before.1, ids);

        // A power loss: the database is back where it was last synced
        // (after m3); the logs hold m4..m6, each synced before its sender
        // was told.
        std::fs::remove_dir_all(&db_dir).unwrap();
        copy_dir(&saved, &db_dir);
        let db = open();
        assert_eq!(entries(&db, "bob").len(), 3);
        run_writers(&db, &logs, &["m7"]);
        let mut after = ids.clone();
        after.push((7, "m7".into()));
        // Applied again exactly as before (same seqs), once, and the
        // conversation's history (another shard's, through the outbox)
        // too.
        assert_eq!(entries(&db, "bob"), after);
        assert_eq!(entries(&db, "#alice:bob"), after);
        drop(db);

        // And once more with nothing lost: nothing is applied twice.
        let db = open();
        run_writers(&db, &logs, &[]);
        assert_eq!(entries(&db, "bob"), after);
        assert_eq!(entries(&db, "#alice:bob"), after);
    }

    /// Records which thread carried out each notification for an offline
    /// user, and for whom.
    #[derive(Default)]
    struct Notes(Mutex<Vec<(String, std::thread::ThreadId)>>);
    impl Outlet for Notes {
        fn push(&self, _: &SessionRoute, _: Bytes) {}
        fn offline(&self, notifications: Vec<PushRecord>) {
            let mut notes = self.0.lock();
            for n in notifications {
                notes.push((n.user, std::thread::current().id()));
            }
        }
    }

    #[test]
    fn an_ack_handed_to_a_free_writer_is_applied_by_the_caller_before_send_returns() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let notes = Arc::new(Notes::default());
        let writers = Shards::start(
            &db,
            1,
            PersistMode::SyncData,
            Some(&dir.path().join("logs")),
            Arc::new(MemoryPresence::default()),
            notes.clone(),
            Retention::default(),
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // The writer thread applies the send, and tells bob (offline).
        runtime
            .block_on(writers.shards.submit("bob", vec![chat("m1")]))
            .unwrap();
        let me = std::thread::current().id();
        assert_eq!(notes.0.lock().len(), 1);
        assert_ne!(notes.0.lock()[0].1, me);

        // The writer thread answered before it let go of the writer: wait
        // until it has (it takes the writer again only for new work).
        while writers.shards.writers[0].try_lock().is_none() {
            std::thread::yield_now();
        }
        // Bob's ack: the writer waits for work, so this thread applies it,
        // and alice's DELIVERED receipt is out before `send` returns.
        let ack = Input::Ack {
            owner: "bob".into(),
            device: "phone".into(),
            seq: 1,
        };
        writers.shards.send("bob", vec![ack]).unwrap();
        assert_eq!(notes.0.lock()[1..], [("alice".to_string(), me)]);
        writers.shards.stop();
    }

    #[test]
    fn an_outbox_entry_decodes_to_the_inputs_it_was_made_of() {
        let Input::Message { message, .. } = chat("m1") else {
            unreachable!("chat() makes a message")
        };
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
