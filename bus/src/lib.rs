//! The bus between Samvad roles.
//!
//! One trait, [`Bus`], with the semantics of a Kafka cluster: named topics
//! split into partitions, a record's key chooses its partition, order holds
//! within a partition, consumers in a group share the partitions, delivery is
//! at least once and a consumer commits an offset only after the work the
//! record asked for is durable. Roles are written against the trait and run
//! unchanged on [`EmbeddedBus`] (one process, journaled in fjall) or on
//! `KafkaBus` (rdkafka, behind the `kafka` feature). The cluster's owning roles (routers, stores)
//! run on a [`Processor`] (Kafka only): a consumer-group member whose
//! outputs commit in one transaction with the offsets they consumed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

mod embedded;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
mod kafka_processor;
mod partition;
mod processor;
mod uncommitted;

pub use embedded::{Durability, EmbeddedBus};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaBus, KafkaConfig};
pub use partition::partition_for;
pub use processor::{Change, FromCommitted, Placement, Processor, Replay};
pub use uncommitted::{ToCommit, Uncommitted};

/// Offset for [`Bus::assign`]: start after the last record (read only what
/// is produced from now on).
pub const FROM_END: u64 = u64::MAX;

/// A boxed future, so that the bus traits stay object safe (`Arc<dyn Bus>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a topic looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub partitions: u32,
    /// Whether records must survive a crash before `produce` returns.
    /// Ephemeral topics (pushes to one edge's sessions) need not.
    pub durable: bool,
    /// Whether `produce` waits for stable storage (fsync), not just for
    /// the record to be written. Needed where the return of `produce` is
    /// promised to someone outside (the server ack of a client's send on
    /// `inbound`). Internal topics need not: the embedded bus writes every
    /// record into one journal in order, so the next synced write (the
    /// store's inbox commit, which comes after) makes them durable too; and
    /// until then nothing derived from them has left the process.
    pub synced: bool,
    /// Whether the broker keeps only the latest record per key (a
    /// changelog); a record without a payload deletes its key.
    pub compacted: bool,
}

impl TopicSpec {
    /// Journaled; `produce` returns once written (see [`TopicSpec::synced`]).
    pub const fn durable(partitions: u32) -> Self {
        TopicSpec {
            partitions,
            durable: true,
            synced: false,
            compacted: false,
        }
    }

    /// Durable, keeping the latest record per key: a changelog of state.
    pub const fn compacted(partitions: u32) -> Self {
        TopicSpec {
            partitions,
            durable: true,
            synced: false,
            compacted: true,
        }
    }

    /// Journaled, and `produce` returns only once on stable storage.
    pub const fn synced(partitions: u32) -> Self {
        TopicSpec {
            partitions,
            durable: true,
            synced: true,
            compacted: false,
        }
    }

    /// Memory only, bounded retention: lost on a crash.
    pub const fn ephemeral(partitions: u32) -> Self {
        TopicSpec {
            partitions,
            durable: false,
            synced: false,
            compacted: false,
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: Arc<str>,
    pub key: Bytes,
    pub payload: Bytes,
    /// The partition, where it is not the one the key maps to (a
    /// changelog's records go to the partition of the state they change).
    pub partition: Option<u32>,
    /// No payload: deletes `key` from a compacted topic.
    pub tombstone: bool,
}

impl Outgoing {
    pub fn new(topic: impl Into<Arc<str>>, key: impl Into<Bytes>, payload: Bytes) -> Self {
        Outgoing {
            topic: topic.into(),
            key: key.into(),
            payload,
            partition: None,
            tombstone: false,
        }
    }

    /// A record for partition `partition`, whatever its key; `None` as
    /// the payload is a tombstone.
    pub fn to_partition(
        topic: impl Into<Arc<str>>,
        partition: u32,
        key: impl Into<Bytes>,
        payload: Option<Bytes>,
    ) -> Self {
        Outgoing {
            topic: topic.into(),
            key: key.into(),
            tombstone: payload.is_none(),
            payload: payload.unwrap_or_default(),
            partition: Some(partition),
        }
    }
}

/// A consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub key: Bytes,
    pub payload: Bytes,
    /// The record has no payload (a compacted topic's deletion).
    pub tombstone: bool,
}

impl Record {
    /// This record, bound for the dead-letter topic: logged with where it
    /// came from, so that a poison record is skipped (never a crash loop)
    /// but not silently lost.
    pub fn dead_letter(&self, topics: &Topics, why: &dyn std::fmt::Display) -> Outgoing {
        let origin = format!("{}/{}/{}", self.topic, self.partition, self.offset);
        tracing::error!(topic = %self.topic, partition = self.partition, offset = self.offset,
            error = %why, "record cannot be processed; moved to the dead-letter topic");
        Outgoing::new(topics.dead_letter(), origin, self.payload.clone())
    }
}

/// `records` split by partition, each in the order it came (offset order).
pub fn by_partition(records: &[Record]) -> std::collections::BTreeMap<u32, Vec<&Record>> {
    let mut out: std::collections::BTreeMap<u32, Vec<&Record>> = Default::default();
    for r in records {
        out.entry(r.partition).or_default().push(r);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("bus is shutting down")]
    Closed,
    #[error("journal: {0}")]
    Journal(#[from] fjall::Error),
    #[error("bus backend: {0}")]
    Backend(String),
    /// A transaction did not commit and was aborted; its outputs and
    /// offsets may be offered again (after a poll, if a rebalance ran).
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// Another incarnation of this member, or another member, owns the
    /// work now: this one must stop.
    #[error("fenced: {0}")]
    Fenced(String),
}

/// Producer and consumer factory, shared by every role in a process.
pub trait Bus: Send + Sync + 'static {
    /// Creates the topic if it does not exist yet.
    fn ensure_topic<'a>(
        &'a self,
        name: &'a str,
        spec: TopicSpec,
    ) -> BoxFuture<'a, Result<(), BusError>>;

    /// Produces records; the future resolves once every one is acknowledged
    /// by the bus (durable, for durable topics).
    ///
    /// Order is fixed when `produce` is called, not when its future is
    /// polled: records with the same topic and key given to calls made one
    /// after the other keep that order, even if the futures are awaited
    /// concurrently (a session pipelines its sends this way).
    fn produce(&self, records: Vec<Outgoing>) -> BoxFuture<'static, Result<(), BusError>>;

    /// Joins consumer group `group` on `topic`.
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, BusError>>;

    /// Reads the given partitions of `topic`, each from its offset, outside
    /// any consumer group (an edge reading its own topic, a media node its
    /// own).
    /// [`FROM_END`] starts after the last record. `commit` on it is not
    /// needed: the reader keeps its own offsets.
    fn assign<'a>(
        &'a self,
        topic: &'a str,
        from: &'a [(u32, u64)],
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, BusError>>;
}

/// One member of a consumer group.
pub trait Consumer: Send {
    /// Waits for records on the partitions assigned to this member and
    /// returns at most `max` of them, in order within each partition.
    fn poll(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<Record>, BusError>>;

    /// Marks `records` (and everything before them in their partitions) as
    /// done. Call only once their effects are durable.
    fn commit(&mut self, records: &[Record]) -> Result<(), BusError>;
}

/// Topic names, under a configurable prefix (DESIGN.md "Roles and the bus").
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Topics {
            prefix: prefix.into(),
        }
    }

    /// Envelopes accepted by an edge; key = conversation id.
    pub fn inbound(&self) -> String {
        format!("{}inbound", self.prefix)
    }

    /// Everything about one inbox; key = the inbox owner.
    pub fn deliver(&self) -> String {
        format!("{}deliver", self.prefix)
    }

    /// Frames one edge must push to its sessions; key = session id.
    pub fn edge(&self, node: &str) -> String {
        format!("{}edge.{node}", self.prefix)
    }

    /// Signals for the media rooms pinned to `node`; key = room.
    pub fn media(&self, node: &str) -> String {
        format!("{}media.{node}", self.prefix)
    }

    /// The cluster stores' state, compacted: per `deliver` partition, the
    /// latest value of every key (key = keyspace byte + key), committed
    /// with the offsets it results from. What a store with an empty disk
    /// restores a partition from.
    pub fn changelog(&self) -> String {
        format!("{}store-changelog", self.prefix)
    }

    /// Notifications for users with no live session; key = user.
    pub fn push(&self) -> String {
        format!("{}push", self.prefix)
    }

    /// Records no role could decode, kept for inspection; key = where the
    /// record came from (`topic/partition/offset`), payload = its bytes.
    pub fn dead_letter(&self) -> String {
        format!("{}dead-letter", self.prefix)
    }
}
