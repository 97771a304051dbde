//! Samvad storage on fjall.
//!
//! One fjall `Database` per process, one keyspace per kind of data (never per
//! user), big-endian composite keys so that a user's entries sort by
//! sequence number:
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `inbox` | user `\0` seq | encoded `ServerFrame` (Deliver or Receipt), ready to send |
//! | `inbox_meta` | user | last seq, cursor |
//! | `dedupe` | user `\0` sender `\0` message id | seq |
//! | `accounts` | username | account JSON |
//! | `files` | file id | file record JSON (owner, conversation, SHA-256, size, type) |
//! | `blobs` | SHA-256 | file content (key-value separated) |
//! | `file_usage` | username | bytes stored (u64) |
//! | `push_subscriptions` | username `\0` endpoint | Web Push subscription JSON |
//!
//! - [`engine`]: the delivery engine: the inbox rules as a sans-IO state
//!   machine, its fjall state, and the shard writers of `samvad serve`.
//! - [`inbox`]: the cluster store's driver of those rules over `deliver`.
//! - [`accounts`]: users and their password hashes.
//! - [`files`]: content-addressed file blobs, their records and quotas.
//! - [`directory`]: accounts and refresh tokens behind one trait, in fjall
//!   (`samvad serve`) or Redis (the cluster).
//! - [`presence`]: which sessions a user has, on which edge.
//! - [`push_subscriptions`]: the Web Push endpoints of users' devices.
//! - [`role`]: the store role: consume `deliver`, apply, route, commit.

pub mod accounts;
pub mod directory;
pub mod engine;
pub mod files;
pub mod groups;
pub mod inbox;
mod keys;
pub mod presence;
pub mod push_subscriptions;
pub mod redis_presence;
pub mod role;
pub mod tokens;
pub mod user_search;

pub use fjall::PersistMode;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("corrupt {what} record")]
    Corrupt { what: &'static str },
    #[error("unavailable: {0}")]
    Unavailable(String),
}
