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
//! - Stores by kind of data, each a small trait with a fjall home
//!   (`samvad serve`) and a Redis home (a cluster):
//!   - [`accounts`]: users, their password hashes and profiles;
//!   - [`phones`]: verified phone hashes;
//!   - [`tokens`]: refresh tokens and revoked login families;
//!   - [`groups`]: groups and channels, and each member's groups;
//!   - [`files`]: content-addressed file blobs, their records and quotas;
//!   - [`push_subscriptions`]: the Web Push endpoints of users' devices.
//! - [`directory`]: the first four bundled, as a process hands them over.
//! - [`redis`]: the Redis connection and key names those homes share.
//! - [`presence`]: which sessions a user has, on which edge.
//! - [`role`]: the store role: consume `deliver`, apply, route, commit.

pub mod accounts;
pub mod directory;
pub mod engine;
pub mod files;
pub mod groups;
pub mod inbox;
pub mod phones;
pub mod presence;
pub mod push_subscriptions;
pub mod redis;
pub mod redis_presence;
pub mod role;
pub mod tokens;
mod user_search;

pub use fjall::PersistMode;
/// The composite keys of the inbox keyspaces (the core's).
use samvad_core::inbox::keys;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("corrupt {what} record")]
    Corrupt { what: &'static str },
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// What the inbox rules read did not decode, or could not be read.
    #[error(transparent)]
    State(#[from] samvad_core::inbox::StateError),
}

/// Runs a storage call that fsyncs on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Unavailable("blocking task failed".into()))?
}
