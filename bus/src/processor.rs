//! A transactional member of a consumer group: what the cluster's owning
//! roles (routers on `inbound`, stores on `deliver`) run on.
//!
//! Kafka decides who owns which partition (the group's assignment, with
//! static membership so that a restarted node gets its partitions back),
//! and every batch's outputs are produced together with the input offsets
//! they consumed, in one transaction (KIP-447): a node that lost its
//! partitions is fenced by the group generation and cannot commit, and a
//! batch that was not committed is read again by whoever owns the
//! partition next, its outputs never seen by `read_committed` readers.
//! The processor knows nothing of what the role keeps: where reading a
//! newly assigned partition starts is the role's call ([`Placement`]).

use crate::{BoxFuture, BusError, Outgoing, Record};

/// Where a processor starts reading a partition it is given.
pub trait Placement: Send + Sync + 'static {
    /// The first offset to read of `partition`, whose group has
    /// `committed` (the first offset whose outputs are not committed;
    /// `None` if the group never committed there). A role without state
    /// answers `committed.unwrap_or(0)`; a store whose disk is ahead or
    /// behind answers from its disk.
    fn start(&self, partition: u32, committed: Option<u64>) -> u64;
}

/// The committed offset is where every role without state starts.
pub struct FromCommitted;

impl Placement for FromCommitted {
    fn start(&self, _partition: u32, committed: Option<u64>) -> u64 {
        committed.unwrap_or(0)
    }
}

/// A change of the partitions a processor owns, reported by
/// [`Processor::changes`] before any record of the new assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `partition` is this member's now; reading starts at `start` (what
    /// the [`Placement`] said), the group had committed up to `committed`.
    Assigned {
        partition: u32,
        committed: Option<u64>,
        start: u64,
    },
    /// `partition` went to another member; nothing more of it is
    /// returned, and a commit naming it fails.
    Revoked { partition: u32 },
}

/// One member of a consumer group whose outputs and consumed offsets are
/// committed together.
pub trait Processor: Send {
    /// Waits for records of the owned partitions and returns at most `max`,
    /// in order within each partition. Cancel safe. Ownership changes that
    /// happened meanwhile are in [`Processor::changes`]; records of a
    /// partition revoked meanwhile are not returned.
    fn poll(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<Record>, BusError>>;

    /// Ownership changes since the last call, in order.
    fn changes(&mut self) -> Vec<Change>;

    /// Produces `outputs` and marks `consumed` (partition, next offset to
    /// read) as done, atomically: both or neither become visible. A
    /// transaction the broker aborts is tried again here (the same outputs
    /// and offsets) until it commits or the member is fenced, which is
    /// [`BusError::Fenced`]: another member owns the partitions now, and
    /// this one must stop.
    fn commit(
        &mut self,
        outputs: Vec<Outgoing>,
        consumed: Vec<(u32, u64)>,
    ) -> BoxFuture<'_, Result<(), BusError>>;
}

/// Reads one partition of a topic from its start to its end, as it is
/// committed, outside any group: what a store restores a changelog with.
/// Blocking (it runs inside the rebalance callback, before the partition's
/// first record is read).
pub trait Replay: Send + Sync + 'static {
    /// Calls `each` with the records in order, in chunks; returns how many
    /// there were.
    fn replay(
        &self,
        topic: &str,
        partition: u32,
        each: &mut dyn FnMut(Vec<Record>) -> Result<(), BusError>,
    ) -> Result<u64, BusError>;
}
