//! The delivery engine: the inbox rules and the drivers that commit them.
//!
//! - [`view`]: keyspaces as plain data: committed state read through a
//!   trait, a batch's pending changes over it, an in-memory model.
//! - [`rules`]: the inbox rules, a state machine with no I/O and no clock:
//!   a batch of inputs in, writes and effects out.
//! - [`fjall_state`]: the same keyspaces in fjall, and the one write batch
//!   a driver commits per group commit.
//! - [`retention`]: the sweep that asks the rules to expire old entries.
//! - [`shards`]: the inbox writers of `samvad serve`, one thread per shard,
//!   fed straight by the edge, with an outbox between shards.
//!
//! The cluster's store role ([`crate::role`]) drives the same rules over
//! its `deliver` partitions ([`crate::inbox::Inboxes`]).

pub mod commit_log;
pub mod fjall_state;
pub mod retention;
pub mod rules;
pub mod shards;
pub mod view;

pub use fjall_state::FjallState;
pub use retention::{Retention, Sweep};
pub use rules::{Effect, Holding, InboxRules, Input, Message, Output};
pub use shards::{shard_of, Outlet, ShardError, Shards, Writers};
pub use view::{Committed, MemoryState, Pending, Space, View};
