//! [`EmbeddedBus`]: the bus of `samvad serve`, inside one process.
//!
//! Records live in memory, per partition, until every consumer group of the
//! topic has committed past them. Durable topics are also journaled in fjall
//! before `produce` resolves, so a record acknowledged to a producer survives
//! kill -9; on start the journal is replayed into memory and every group
//! resumes from its committed offset (at-least-once, like Kafka).
//!
//! All journal writes go through one writer thread that takes every request
//! waiting in its queue and writes them as one fjall batch with one persist:
//! group commit, so a burst of N produces costs one fsync, not N.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{partition_for, BoxFuture, Bus, BusError, Consumer, Outgoing, Record, TopicSpec};

/// How hard a durable produce is made durable before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync (fdatasync) once per batch: survives power loss.
    Sync,
    /// Written to the OS before the ack: survives kill -9 of the process,
    /// not a power loss. Faster on disks with slow flushes.
    Buffer,
}

impl Durability {
    fn persist_mode(self) -> PersistMode {
        match self {
            Durability::Sync => PersistMode::SyncData,
            Durability::Buffer => PersistMode::Buffer,
        }
    }
}

/// Most requests one journal batch takes.
const MAX_BATCH: usize = 1024;
/// Most records an ephemeral partition keeps; older ones are dropped (their
/// readers recover by sync, as after a disconnect).
const EPHEMERAL_RETENTION: usize = 65_536;

/// The in-process bus.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    log: Keyspace,
    offsets: Keyspace,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// Unbounded so that `produce` can fix record order synchronously; what
    /// bounds it is upstream: every producer awaits its produces, and a
    /// session has at most `MAX_IN_FLIGHT` of them.
    writer: mpsc::UnboundedSender<Job>,
    next_member: AtomicU64,
    failed: AtomicBool,
}

struct Topic {
    name: Arc<str>,
    spec: TopicSpec,
    partitions: Vec<Mutex<PartitionLog>>,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Woken when records arrive or the assignment of a group changes.
    notify: Notify,
}

#[derive(Default)]
struct PartitionLog {
    /// Retained records, offsets increasing (normally contiguous).
    records: VecDeque<(u64, Bytes, Bytes)>,
    /// Offset the next produced record gets.
    next: u64,
}

impl PartitionLog {
    fn push(&mut self, offset: u64, key: Bytes, payload: Bytes) {
        self.records.push_back((offset, key, payload));
    }

    /// Drops records below `offset`.
    fn trim_below(&mut self, offset: u64) {
        while self.records.front().is_some_and(|r| r.0 < offset) {
            self.records.pop_front();
        }
    }

    fn first_offset(&self) -> u64 {
        self.records.front().map_or(self.next, |r| r.0)
    }
}

struct Group {
    state: Mutex<GroupState>,
}

struct GroupState {
    members: BTreeSet<u64>,
    generation: u64,
    /// Next offset to consume, per partition.
    committed: Vec<u64>,
}

enum Job {
    Produce {
        records: Vec<(Arc<Topic>, u32, Bytes, Bytes)>,
        done: oneshot::Sender<Result<(), BusError>>,
    },
    Commit {
        group: String,
        topic: Arc<Topic>,
        partition: u32,
        offset: u64,
        trim_to: u64,
    },
}

impl EmbeddedBus {
    /// Opens the bus over `db` (keyspaces `bus_log` and `bus_offsets`).
    pub fn open(db: Database, durability: Durability) -> Result<Self, BusError> {
        let log = db.keyspace("bus_log", KeyspaceCreateOptions::default)?;
        let offsets = db.keyspace("bus_offsets", KeyspaceCreateOptions::default)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            log: log.clone(),
            offsets: offsets.clone(),
            topics: RwLock::new(HashMap::new()),
            writer: tx,
            next_member: AtomicU64::new(1),
            failed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("bus-journal".into())
            .spawn(move || {
                JournalWriter {
                    db,
                    log,
                    offsets,
                    durability,
                    trimmed: HashMap::new(),
                }
                .run(rx, weak)
            })
            .map_err(|e| BusError::Backend(format!("spawn journal writer: {e}")))?;
        Ok(EmbeddedBus { inner })
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        self.inner
            .topics
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic(name.to_string()))
    }

    fn create_topic(&self, name: &str, spec: TopicSpec) -> Result<(), BusError> {
        if self.inner.topics.read().contains_key(name) {
            return Ok(());
        }
        let name: Arc<str> = name.into();
        let mut partitions: Vec<PartitionLog> = (0..spec.partitions)
            .map(|_| PartitionLog::default())
            .collect();
        let mut groups = HashMap::new();
        if spec.durable {
            // Replay the journal of this topic.
            for kv in self.inner.log.prefix(topic_prefix(&name)) {
                let (k, v) = kv.into_inner()?;
                let Some((p, offset)) = parse_log_key(&k, name.len()) else {
                    continue;
                };
                let Some(part) = partitions.get_mut(p as usize) else {
                    continue;
                };
                let Some((key, payload)) = parse_log_value(&v) else {
                    continue;
                };
                part.push(offset, key, payload);
                part.next = offset + 1;
            }
            // Groups that ever committed on this topic keep their records.
            for kv in self.inner.offsets.prefix(topic_prefix(&name)) {
                let (k, v) = kv.into_inner()?;
                let Some((group, p)) = parse_offset_key(&k, name.len()) else {
                    continue;
                };
                let Ok(bytes) = <[u8; 8]>::try_from(&v[..]) else {
                    continue;
                };
                let state = groups.entry(group).or_insert_with(|| GroupState {
                    members: BTreeSet::new(),
                    generation: 0,
                    committed: vec![0; spec.partitions as usize],
                });
                if let Some(c) = state.committed.get_mut(p as usize) {
                    *c = u64::from_be_bytes(bytes);
                }
            }
            for (p, part) in partitions.iter_mut().enumerate() {
                if let Some(min) = groups.values().map(|g| g.committed[p]).min() {
                    part.trim_below(min);
                    part.next = part.next.max(min);
                }
            }
        }
        let topic = Arc::new(Topic {
            name: name.clone(),
            spec,
            partitions: partitions.into_iter().map(Mutex::new).collect(),
            groups: Mutex::new(
                groups
                    .into_iter()
                    .map(|(g, state)| {
                        (
                            g,
                            Arc::new(Group {
                                state: Mutex::new(state),
                            }),
                        )
                    })
                    .collect(),
            ),
            notify: Notify::new(),
        });
        self.inner.topics.write().entry(name).or_insert(topic);
        Ok(())
    }

    /// Appends ephemeral records and queues durable ones for the journal
    /// now (this fixes their order); the future waits for the journal.
    fn produce_records(&self, records: Vec<Outgoing>) -> BoxFuture<'static, Result<(), BusError>> {
        match self.enqueue(records) {
            Ok(None) => Box::pin(async { Ok(()) }),
            Ok(Some(wait)) => Box::pin(async move { wait.await.map_err(|_| BusError::Closed)? }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn enqueue(
        &self,
        records: Vec<Outgoing>,
    ) -> Result<Option<oneshot::Receiver<Result<(), BusError>>>, BusError> {
        if self.inner.failed.load(Ordering::Relaxed) {
            return Err(BusError::Closed);
        }
        let mut durable = Vec::new();
        for rec in records {
            let topic = self.topic(&rec.topic)?;
            let p = rec
                .partition
                .unwrap_or_else(|| partition_for(&rec.key, topic.spec.partitions));
            if topic.spec.durable {
                durable.push((topic, p, rec.key, rec.payload));
            } else {
                {
                    let mut part = topic.partitions[p as usize].lock();
                    let offset = part.next;
                    part.next += 1;
                    part.push(offset, rec.key, rec.payload);
                    if part.records.len() > EPHEMERAL_RETENTION {
                        part.records.pop_front();
                    }
                }
                topic.notify.notify_waiters();
            }
        }
        if durable.is_empty() {
            return Ok(None);
        }
        let (done, wait) = oneshot::channel();
        self.inner
            .writer
            .send(Job::Produce {
                records: durable,
                done,
            })
            .map_err(|_| BusError::Closed)?;
        Ok(Some(wait))
    }

    async fn join(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        let topic = self.topic(topic)?;
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let group_handle = {
            let mut groups = topic.groups.lock();
            groups
                .entry(group.to_string())
                .or_insert_with(|| {
                    Arc::new(Group {
                        state: Mutex::new(GroupState {
                            members: BTreeSet::new(),
                            generation: 0,
                            committed: vec![0; topic.spec.partitions as usize],
                        }),
                    })
                })
                .clone()
        };
        {
            let mut st = group_handle.state.lock();
            st.members.insert(member);
            st.generation += 1;
        }
        topic.notify.notify_waiters();
        Ok(Box::new(EmbeddedConsumer {
            bus: self.inner.clone(),
            topic,
            group_name: group.to_string(),
            group: group_handle,
            member,
            generation: u64::MAX,
            assigned: Vec::new(),
            rotate: 0,
        }))
    }
}

impl Bus for EmbeddedBus {
    fn ensure_topic<'a>(
        &'a self,
        name: &'a str,
        spec: TopicSpec,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move { self.create_topic(name, spec) })
    }

    fn produce(&self, records: Vec<Outgoing>) -> BoxFuture<'static, Result<(), BusError>> {
        self.produce_records(records)
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, BusError>> {
        Box::pin(self.join(topic, group))
    }

    fn assign<'a>(
        &'a self,
        topic: &'a str,
        from: &'a [(u32, u64)],
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, BusError>> {
        Box::pin(async move {
            let topic = self.topic(topic)?;
            let mut assigned = Vec::with_capacity(from.len());
            for &(p, offset) in from {
                let Some(part) = topic.partitions.get(p as usize) else {
                    return Err(BusError::Backend(format!(
                        "{} has no partition {p}",
                        topic.name
                    )));
                };
                let offset = if offset == crate::FROM_END {
                    part.lock().next
                } else {
                    offset
                };
                assigned.push((p, offset));
            }
            // A private group that never rebalances: the reader keeps the
            // partitions and offsets it was given.
            let group = Arc::new(Group {
                state: Mutex::new(GroupState {
                    members: BTreeSet::new(),
                    generation: 0,
                    committed: vec![0; topic.spec.partitions as usize],
                }),
            });
            Ok(Box::new(EmbeddedConsumer {
                bus: self.inner.clone(),
                topic,
                group_name: String::new(),
                group,
                member: u64::MAX,
                generation: 0,
                assigned,
                rotate: 0,
            }) as Box<dyn Consumer>)
        })
    }
}

struct EmbeddedConsumer {
    bus: Arc<Inner>,
    topic: Arc<Topic>,
    group_name: String,
    group: Arc<Group>,
    member: u64,
    /// The group generation `assigned` was computed for.
    generation: u64,
    /// (partition, next offset to read).
    assigned: Vec<(u32, u64)>,
    /// Where the next poll starts, so no partition starves the others.
    rotate: usize,
}

impl EmbeddedConsumer {
    /// Recomputes this member's partitions after a join or leave: partition
    /// p goes to the (p mod n)-th member; reading resumes at the committed
    /// offset, as after a Kafka rebalance.
    fn refresh_assignment(&mut self) {
        let st = self.group.state.lock();
        if st.generation == self.generation {
            return;
        }
        self.generation = st.generation;
        let members: Vec<u64> = st.members.iter().copied().collect();
        let Some(me) = members.iter().position(|m| *m == self.member) else {
            self.assigned.clear();
            return;
        };
        self.assigned = (0..self.topic.spec.partitions)
            .filter(|p| *p as usize % members.len() == me)
            .map(|p| (p, st.committed[p as usize]))
            .collect();
    }

    fn take(&mut self, max: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let n = self.assigned.len();
        for i in 0..n {
            let idx = (self.rotate + i) % n;
            let (p, pos) = &mut self.assigned[idx];
            let part = self.topic.partitions[*p as usize].lock();
            let start = part.records.partition_point(|r| r.0 < *pos);
            for (offset, key, payload) in part.records.range(start..).take(max - out.len()) {
                out.push(Record {
                    topic: self.topic.name.clone(),
                    partition: *p,
                    offset: *offset,
                    key: key.clone(),
                    payload: payload.clone(),
                    // The embedded bus compacts nothing: a changelog is a
                    // cluster's.
                    tombstone: false,
                });
                *pos = offset + 1;
            }
            if out.len() >= max {
                break;
            }
        }
        self.rotate = self.rotate.wrapping_add(1);
        out
    }
}

impl Consumer for EmbeddedConsumer {
    fn poll(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<Record>, BusError>> {
        Box::pin(async move {
            let topic = self.topic.clone();
            loop {
                let notified = topic.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.bus.failed.load(Ordering::Relaxed) {
                    return Err(BusError::Closed);
                }
                self.refresh_assignment();
                let out = self.take(max.max(1));
                if !out.is_empty() {
                    return Ok(out);
                }
                notified.await;
            }
        })
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        let mut upto: HashMap<u32, u64> = HashMap::new();
        for r in records {
            let e = upto.entry(r.partition).or_default();
            *e = (*e).max(r.offset + 1);
        }
        for (p, offset) in upto {
            {
                let mut st = self.group.state.lock();
                let c = &mut st.committed[p as usize];
                if offset <= *c {
                    continue;
                }
                *c = offset;
            }
            // Records every group is past can go, from memory and journal.
            let min = self
                .topic
                .groups
                .lock()
                .values()
                .map(|g| g.state.lock().committed[p as usize])
                .min()
                .unwrap_or(offset);
            self.topic.partitions[p as usize].lock().trim_below(min);
            if self.topic.spec.durable {
                // If the writer is gone the bus has failed; the next poll says so.
                let _ = self.bus.writer.send(Job::Commit {
                    group: self.group_name.clone(),
                    topic: self.topic.clone(),
                    partition: p,
                    offset,
                    trim_to: min,
                });
            }
        }
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        {
            let mut st = self.group.state.lock();
            st.members.remove(&self.member);
            st.generation += 1;
        }
        self.topic.notify.notify_waiters();
    }
}

/// The thread that owns all journal writes.
struct JournalWriter {
    db: Database,
    log: Keyspace,
    offsets: Keyspace,
    durability: Durability,
    /// Per (topic, partition): journal entries below this are deleted.
    trimmed: HashMap<(Arc<str>, u32), u64>,
}

impl JournalWriter {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>, bus: std::sync::Weak<Inner>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while let Some(job) = rx.blocking_recv() {
            jobs.push(job);
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.write(&mut jobs) {
                tracing::error!(error = %e, "bus journal write failed; the bus stops");
                if let Some(bus) = bus.upgrade() {
                    bus.failed.store(true, Ordering::Relaxed);
                    for topic in bus.topics.read().values() {
                        topic.notify.notify_waiters();
                    }
                }
                for job in jobs.drain(..) {
                    if let Job::Produce { done, .. } = job {
                        let _ = done.send(Err(BusError::Closed));
                    }
                }
                return;
            }
        }
    }

    fn write(&mut self, jobs: &mut Vec<Job>) -> Result<(), fjall::Error> {
        let mut batch = self.db.batch();
        let mut must_sync = false;
        // Offsets given to the produced records, in job order.
        let mut assigned = Vec::new();
        for job in jobs.iter() {
            match job {
                Job::Produce { records, .. } => {
                    for (topic, p, key, payload) in records {
                        must_sync |= topic.spec.synced;
                        let offset = {
                            let mut part = topic.partitions[*p as usize].lock();
                            let o = part.next;
                            part.next += 1;
                            o
                        };
                        assigned.push(offset);
                        batch.insert(
                            &self.log,
                            log_key(&topic.name, *p, offset),
                            log_value(key, payload),
                        );
                    }
                }
                Job::Commit {
                    group,
                    topic,
                    partition,
                    offset,
                    trim_to,
                } => {
                    batch.insert(
                        &self.offsets,
                        offset_key(&topic.name, group, *partition),
                        offset.to_be_bytes(),
                    );
                    let from = self
                        .trimmed
                        .entry((topic.name.clone(), *partition))
                        .or_insert(0);
                    if *from == 0 {
                        // First trim since start: begin at the oldest entry.
                        *from = topic.partitions[*partition as usize]
                            .lock()
                            .first_offset()
                            .min(*trim_to);
                        let first_journaled = self
                            .log
                            .prefix(partition_prefix(&topic.name, *partition))
                            .next()
                            .and_then(|kv| kv.key().ok())
                            .and_then(|k| parse_log_key(&k, topic.name.len()))
                            .map(|(_, o)| o);
                        if let Some(o) = first_journaled {
                            *from = (*from).min(o);
                        }
                    }
                    for o in *from..*trim_to {
                        batch.remove(&self.log, log_key(&topic.name, *partition, o));
                    }
                    *from = (*from).max(*trim_to);
                }
            }
        }
        let batch = if must_sync {
            batch.durability(Some(self.durability.persist_mode()))
        } else {
            batch
        };
        batch.commit()?;
        // Durable: make the records visible, in offset order, and answer.
        let mut touched: Vec<Arc<Topic>> = Vec::new();
        let mut offsets = assigned.into_iter();
        for job in jobs.drain(..) {
            if let Job::Produce { records, done } = job {
                for ((topic, p, key, payload), offset) in records.into_iter().zip(offsets.by_ref())
                {
                    topic.partitions[p as usize]
                        .lock()
                        .push(offset, key, payload);
                    if !touched.iter().any(|t| Arc::ptr_eq(t, &topic)) {
                        touched.push(topic);
                    }
                }
                let _ = done.send(Ok(()));
            }
        }
        for topic in touched {
            topic.notify.notify_waiters();
        }
        Ok(())
    }
}

fn topic_prefix(topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 1);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k
}

fn partition_prefix(topic: &str, partition: u32) -> Vec<u8> {
    let mut k = topic_prefix(topic);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn log_key(topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut k = partition_prefix(topic, partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn parse_log_key(k: &[u8], topic_len: usize) -> Option<(u32, u64)> {
    let rest = k.get(topic_len + 1..)?;
    let p = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let o = u64::from_be_bytes(rest.get(4..12)?.try_into().ok()?);
    Some((p, o))
}

fn log_value(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + key.len() + payload.len());
    v.extend_from_slice(&(key.len() as u32).to_be_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(payload);
    v
}

fn parse_log_value(v: &[u8]) -> Option<(Bytes, Bytes)> {
    let len = u32::from_be_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let key = v.get(4..4 + len)?;
    let payload = v.get(4 + len..)?;
    Some((Bytes::copy_from_slice(key), Bytes::copy_from_slice(payload)))
}

fn offset_key(topic: &str, group: &str, partition: u32) -> Vec<u8> {
    let mut k = topic_prefix(topic);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn parse_offset_key(k: &[u8], topic_len: usize) -> Option<(String, u32)> {
    let rest = k.get(topic_len + 1..)?;
    let (group, p) = rest.split_at(rest.len().checked_sub(5)?);
    let p = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
    Some((String::from_utf8(group.to_vec()).ok()?, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(dir: &std::path::Path) -> (Database, EmbeddedBus) {
        let db = Database::builder(dir).open().unwrap();
        let bus = EmbeddedBus::open(db.clone(), Durability::Buffer).unwrap();
        (db, bus)
    }

    const SPEC: TopicSpec = TopicSpec::synced(4);

    async fn poll_n(c: &mut Box<dyn Consumer>, n: usize) -> Vec<Record> {
        let mut out = Vec::new();
        while out.len() < n {
            let got = tokio::time::timeout(Duration::from_secs(5), c.poll(n - out.len()))
                .await
                .unwrap()
                .unwrap();
            out.extend(got);
        }
        out
    }

    fn rec(key: &str, n: u32) -> Outgoing {
        Outgoing::new("t", key.to_string(), Bytes::from(n.to_be_bytes().to_vec()))
    }

    #[tokio::test]
    async fn order_holds_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, bus) = open(dir.path());
        bus.ensure_topic("t", SPEC).await.unwrap();
        let mut c = bus.subscribe("t", "g").await.unwrap();
        for n in 0..100 {
            bus.produce(vec![rec(&format!("k{}", n % 7), n)])
                .await
                .unwrap();
        }
        let got = poll_n(&mut c, 100).await;
        for k in 0..7 {
            let seq: Vec<u32> = got
                .iter()
                .filter(|r| r.key == format!("k{k}").as_bytes())
                .map(|r| u32::from_be_bytes(r.payload[..].try_into().unwrap()))
                .collect();
            assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
        }
    }

    #[tokio::test]
    async fn uncommitted_records_come_back_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (db, bus) = open(dir.path());
            bus.ensure_topic("t", SPEC).await.unwrap();
            let mut c = bus.subscribe("t", "g").await.unwrap();
            bus.produce((0..10).map(|n| rec("a", n)).collect())
                .await
                .unwrap();
            let got = poll_n(&mut c, 10).await;
            c.commit(&got[..4]).unwrap();
            // Let the writer persist the commit.
            tokio::time::sleep(Duration::from_millis(100)).await;
            db.persist(PersistMode::SyncAll).unwrap();
        }
        let (_db, bus) = open(dir.path());
        bus.ensure_topic("t", SPEC).await.unwrap();
        let mut c = bus.subscribe("t", "g").await.unwrap();
        let got = poll_n(&mut c, 6).await;
        let values: Vec<u32> = got
            .iter()
            .map(|r| u32::from_be_bytes(r.payload[..].try_into().unwrap()))
            .collect();
        assert_eq!(values, vec![4, 5, 6, 7, 8, 9]);
        // New records continue the offsets.
        bus.produce(vec![rec("a", 10)]).await.unwrap();
        let next = poll_n(&mut c, 1).await;
        assert_eq!(next[0].offset, got.last().unwrap().offset + 1);
    }

    #[tokio::test]
    async fn group_members_share_partitions_and_take_over() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, bus) = open(dir.path());
        bus.ensure_topic("t", SPEC).await.unwrap();
        let mut a = bus.subscribe("t", "g").await.unwrap();
        let mut b = bus.subscribe("t", "g").await.unwrap();
        bus.produce((0..40).map(|n| rec(&format!("k{n}"), n)).collect())
            .await
            .unwrap();
        let got_a = tokio::time::timeout(Duration::from_millis(200), a.poll(100))
            .await
            .unwrap()
            .unwrap();
        let got_b = tokio::time::timeout(Duration::from_millis(200), b.poll(100))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got_a.len() + got_b.len(), 40);
        let pa: BTreeSet<u32> = got_a.iter().map(|r| r.partition).collect();
        let pb: BTreeSet<u32> = got_b.iter().map(|r| r.partition).collect();
        assert!(pa.is_disjoint(&pb));
        // b leaves without committing: a gets b's partitions from the start.
        a.commit(&got_a).unwrap();
        drop(b);
        let again = poll_n(&mut a, got_b.len()).await;
        assert_eq!(again.len(), got_b.len());
        assert!(again.iter().all(|r| pb.contains(&r.partition)));
    }

    #[tokio::test]
    async fn ephemeral_topics_skip_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, bus) = open(dir.path());
            bus.ensure_topic("e", TopicSpec::ephemeral(1))
                .await
                .unwrap();
            bus.produce(vec![Outgoing::new("e", "k", Bytes::from_static(b"x"))])
                .await
                .unwrap();
        }
        let (_db, bus) = open(dir.path());
        bus.ensure_topic("e", TopicSpec::ephemeral(1))
            .await
            .unwrap();
        let mut c = bus.subscribe("e", "g").await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(100), c.poll(1))
            .await
            .is_err());
    }
}
