//! The inbox keyspaces in fjall: committed state for the rules, and the
//! one write batch a driver commits per group commit.

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use crate::StoreError;
use samvad_core::inbox::{Committed, Pending, Space, StateError};

/// The inbox keyspaces of one fjall database.
#[derive(Clone)]
pub struct FjallState {
    db: Database,
    spaces: [Keyspace; Space::ALL.len()],
}

impl FjallState {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        let open = |space: Space| db.keyspace(space.name(), KeyspaceCreateOptions::default);
        Ok(FjallState {
            db: db.clone(),
            spaces: [
                open(Space::Inbox)?,
                open(Space::Meta)?,
                open(Space::Dedupe)?,
                open(Space::Hidden)?,
                open(Space::DeviceCursors)?,
                open(Space::Applied)?,
                open(Space::Synced)?,
            ],
        })
    }

    fn keyspace(&self, space: Space) -> &Keyspace {
        &self.spaces[space as usize]
    }

    /// A write batch holding `pending`, for the driver to add its own
    /// bookkeeping to and commit.
    pub fn batch(&self, pending: &Pending) -> OwnedWriteBatch {
        let mut batch = self.db.batch();
        for (space, key, value) in pending.iter() {
            match value {
                Some(v) => batch.insert(self.keyspace(space), key, v.as_ref()),
                None => batch.remove(self.keyspace(space), key),
            }
        }
        batch
    }

    /// Adds a write to a batch.
    pub fn put(&self, batch: &mut OwnedWriteBatch, space: Space, key: &[u8], value: &[u8]) {
        batch.insert(self.keyspace(space), key, value);
    }

    /// Adds a removal to a batch.
    pub fn remove(&self, batch: &mut OwnedWriteBatch, space: Space, key: &[u8]) {
        batch.remove(self.keyspace(space), key);
    }

    /// Commits a batch: durable (fsynced) with `Some(SyncAll)`, in the
    /// journal's buffer with `None`.
    pub fn commit(
        &self,
        batch: OwnedWriteBatch,
        persist: Option<PersistMode>,
    ) -> Result<(), StoreError> {
        batch.durability(persist).commit()?;
        Ok(())
    }

    /// Makes everything committed so far durable (one sync of the
    /// database's journal): what a commit log needs before it reuses a
    /// segment.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// Every entry of `space` whose key starts with `prefix`.
    pub fn scan_prefix(
        &self,
        space: Space,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.keyspace(space).prefix(prefix) {
            let (k, v) = kv.into_inner()?;
            out.push((k.to_vec(), Bytes::copy_from_slice(&v)));
        }
        Ok(out)
    }
}

impl Committed for FjallState {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StateError> {
        Ok(self
            .keyspace(space)
            .get(key)
            .map_err(storage)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn range(
        &self,
        space: Space,
        from: &[u8],
        to: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StateError> {
        let iter = self.keyspace(space).range(from..=to);
        let mut out = Vec::new();
        let mut take = |kv: fjall::Guard| -> Result<(), StateError> {
            let (k, v) = kv.into_inner().map_err(storage)?;
            out.push((k.to_vec(), Bytes::copy_from_slice(&v)));
            Ok(())
        };
        if rev {
            for kv in iter.rev().take(limit) {
                take(kv)?;
            }
        } else {
            for kv in iter.take(limit) {
                take(kv)?;
            }
        }
        Ok(out)
    }
}

/// A fjall failure as the rules see it.
fn storage(e: fjall::Error) -> StateError {
    StateError::Storage(Box::new(e))
}
