//! The delivery engine: the drivers that commit the inbox rules. The rules
//! themselves (a state machine with no I/O and no clock: a batch of inputs
//! in, writes and effects out, over keyspaces as plain data) are the
//! core's, [`samvad_core::inbox`].
//!
//! - [`fjall_state`]: the same keyspaces in fjall, and the one write batch
//!   a driver commits per group commit.
//! - [`retention`]: the sweep that asks the rules to expire old entries.
//! - [`shards`]: the inbox writers of `samvad serve`, one per shard,
//!   fed straight by the edge, with an outbox between shards.
//!
//! The cluster's store role ([`crate::role`]) drives the same rules over
//! its `deliver` partitions ([`crate::inbox::Inboxes`]).

pub mod commit_log;
pub mod fjall_state;
pub mod retention;
pub mod shards;

pub use fjall_state::FjallState;
pub use retention::{Retention, Sweep};
pub use samvad_core::inbox::{
    Committed, Effect, Holding, InboxRules, Input, MemoryState, Message, Output, Pending, Space,
    View,
};
pub use shards::{shard_of, Outlet, ShardError, Shards, Writers};
