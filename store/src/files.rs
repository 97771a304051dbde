//! Files: content-addressed blobs, and the records that say who owns a file
//! and which conversation it was sent in (so who may read it).
//!
//! A file has two names. Its *id* is random, chosen by the edge when it
//! grants an upload; clients refer to files by id, and the id says nothing
//! about the content. Its *content* is stored once under its SHA-256, so
//! the same bytes sent twice take the space once. No client-chosen name
//! ever reaches storage: there are no paths, only these two keys.
//!
//! Every byte a user uploads counts against the user's quota, even when the
//! content was already stored: quotas are about what a user asked us to
//! keep, not about our deduplication.
//!
//! Two homes, as for the directory: fjall in `samvad serve` (the blob
//! keyspace separates large values from the LSM, so compactions do not
//! rewrite them), Redis in a cluster (one Lua script checks the quota and
//! writes the record, the blob and the usage together).

use std::sync::Arc;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use parking_lot::Mutex;
use samvad_bus::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::blocking;
use crate::redis::{unavailable, RedisKeyspace};
use crate::StoreError;

/// The conversation of avatar files: any signed-in user may read them.
pub const AVATARS: &str = "@avatars";

/// What the store knows of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    /// The user who uploaded it; the size counts against that user's quota.
    pub owner: String,
    /// The conversation (chat id `a:b` or group id) it was sent in, or
    /// [`AVATARS`]. Only that conversation's members get download URLs.
    pub conversation: String,
    /// Hex SHA-256 of the content: the blob's key.
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub created_ms: i64,
}

/// The outcome of [`FileStore::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// A file with this id is already stored (an upload URL used twice).
    Exists,
    /// Storing it would take the owner past the quota; `used` is the
    /// owner's usage now.
    OverQuota {
        used: u64,
    },
}

pub trait FileStore: Send + Sync + 'static {
    /// Stores `content` under `record.sha256` and `record` under its id,
    /// and adds `record.size` to the owner's usage, if that stays within
    /// `quota`. All or nothing.
    fn put(
        &self,
        record: FileRecord,
        content: Bytes,
        quota: u64,
    ) -> BoxFuture<'_, Result<Stored, StoreError>>;
    fn record<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<FileRecord>, StoreError>>;
    fn content<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;
    /// Bytes stored for `user`.
    fn usage<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;
}

fn encode(record: &FileRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|_| StoreError::Corrupt { what: "file" })
}

fn decode(bytes: &[u8]) -> Result<FileRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt { what: "file" })
}

/// fjall-backed files: keyspaces `files` (id → record JSON), `blobs`
/// (SHA-256 → content, key-value separated) and `file_usage` (user → u64).
#[derive(Clone)]
pub struct LocalFiles {
    db: Database,
    files: Keyspace,
    blobs: Keyspace,
    usage: Keyspace,
    /// Serialises the quota check with the write it allows.
    write_lock: Arc<Mutex<()>>,
}

impl LocalFiles {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(LocalFiles {
            db: db.clone(),
            files: db.keyspace("files", KeyspaceCreateOptions::default)?,
            blobs: db.keyspace("blobs", || {
                KeyspaceCreateOptions::default()
                    .with_kv_separation(Some(KvSeparationOptions::default()))
            })?,
            usage: db.keyspace("file_usage", KeyspaceCreateOptions::default)?,
            write_lock: Default::default(),
        })
    }

    fn used(&self, user: &str) -> Result<u64, StoreError> {
        Ok(match self.usage.get(user)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { what: "file usage" })?,
            ),
            None => 0,
        })
    }

    fn put_now(
        &self,
        record: &FileRecord,
        content: &[u8],
        quota: u64,
    ) -> Result<Stored, StoreError> {
        let _guard = self.write_lock.lock();
        if self.files.contains_key(&record.id)? {
            return Ok(Stored::Exists);
        }
        let used = self.used(&record.owner)?;
        let total = used.saturating_add(record.size);
        if total > quota {
            return Ok(Stored::OverQuota { used });
        }
        let mut batch = self.db.batch();
        if !self.blobs.contains_key(&record.sha256)? {
            batch.insert(&self.blobs, &record.sha256, content);
        }
        batch.insert(&self.files, &record.id, encode(record)?);
        batch.insert(&self.usage, &record.owner, total.to_be_bytes());
        batch.commit()?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(Stored::Stored)
    }
}

impl FileStore for LocalFiles {
    fn put(
        &self,
        record: FileRecord,
        content: Bytes,
        quota: u64,
    ) -> BoxFuture<'_, Result<Stored, StoreError>> {
        let files = self.clone();
        Box::pin(blocking(move || files.put_now(&record, &content, quota)))
    }

    fn record<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<FileRecord>, StoreError>> {
        Box::pin(async move { self.files.get(id)?.map(|v| decode(&v)).transpose() })
    }

    fn content<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let (blobs, key) = (self.blobs.clone(), sha256.to_string());
        Box::pin(blocking(move || {
            Ok(blobs.get(&key)?.map(|v| Bytes::copy_from_slice(&v)))
        }))
    }

    fn usage<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move { self.used(user) })
    }
}

/// KEYS: record, usage, blob. ARGV: record JSON, size, quota, content.
/// Returns `{0, used}` stored, `{1, used}` exists, `{2, used}` over quota.
const PUT_FILE_SCRIPT: &str = include_str!("lua/put_file.lua");

/// Redis-backed files, shared by every edge of a cluster. Keys `file:<id>`,
/// `blob:<sha256>`, `file_usage:<user>` under the cluster's prefix. Run
/// that Redis with AOF persistence, as for the directory.
pub struct RedisFiles {
    redis: RedisKeyspace,
    put: redis::Script,
}

impl RedisFiles {
    pub fn new(redis: RedisKeyspace) -> Self {
        RedisFiles {
            redis,
            put: redis::Script::new(PUT_FILE_SCRIPT),
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        self.redis.key(kind, name)
    }
}

impl FileStore for RedisFiles {
    fn put(
        &self,
        record: FileRecord,
        content: Bytes,
        quota: u64,
    ) -> BoxFuture<'_, Result<Stored, StoreError>> {
        Box::pin(async move {
            let (code, used): (u8, u64) = self
                .put
                .key(self.key("file", &record.id))
                .key(self.key("file_usage", &record.owner))
                .key(self.key("blob", &record.sha256))
                .arg(encode(&record)?)
                .arg(record.size)
                .arg(quota)
                .arg(content.as_ref())
                .invoke_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(match code {
                0 => Stored::Stored,
                1 => Stored::Exists,
                _ => Stored::OverQuota { used },
            })
        })
    }

    fn record<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<FileRecord>, StoreError>> {
        Box::pin(async move {
            let value: Option<Vec<u8>> = self.redis.get("file", id).await?;
            value.map(|v| decode(&v)).transpose()
        })
    }

    fn content<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(async move {
            let value: Option<Vec<u8>> = self.redis.get("blob", sha256).await?;
            Ok(value.map(Bytes::from))
        })
    }

    fn usage<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let used: Option<u64> = self.redis.get("file_usage", user).await?;
            Ok(used.unwrap_or(0))
        })
    }
}
