//! Refresh tokens with rotation and reuse detection.
//!
//! Every refresh token belongs to a family (one login). Using a token marks
//! it used and issues the next one of the family; presenting a used token
//! again means it leaked, so the whole family is revoked (OAuth 2.0 Security
//! BCP, "refresh token rotation").

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::StoreError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct TokenRecord {
    user: String,
    family: String,
    used: bool,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown refresh token")]
    Unknown,
    #[error("refresh token reused; its family is revoked")]
    Reused,
    #[error("refresh token family revoked")]
    Revoked,
}

#[derive(Clone)]
pub struct RefreshTokens {
    db: Database,
    tokens: Keyspace,
    revoked: Keyspace,
    lock: std::sync::Arc<Mutex<()>>,
}

impl RefreshTokens {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(RefreshTokens {
            db: db.clone(),
            tokens: db.keyspace("refresh_tokens", KeyspaceCreateOptions::default)?,
            revoked: db.keyspace("revoked_families", KeyspaceCreateOptions::default)?,
            lock: Default::default(),
        })
    }

    /// Records a new token `id` of `family` for `user`.
    pub fn issue(&self, id: &str, user: &str, family: &str) -> Result<(), StoreError> {
        let rec = TokenRecord {
            user: user.into(),
            family: family.into(),
            used: false,
        };
        self.tokens.insert(
            id,
            serde_json::to_vec(&rec).map_err(|_| StoreError::Corrupt { what: "token" })?,
        )?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// Consumes token `id`: returns its user and family, or why not.
    pub fn redeem(&self, id: &str) -> Result<Result<(String, String), RefreshError>, StoreError> {
        let _guard = self.lock.lock();
        let Some(v) = self.tokens.get(id)? else {
            return Ok(Err(RefreshError::Unknown));
        };
        let mut rec: TokenRecord =
            serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt { what: "token" })?;
        if self.revoked.contains_key(&rec.family)? {
            return Ok(Err(RefreshError::Revoked));
        }
        if rec.used {
            self.revoked.insert(rec.family.as_str(), b"")?;
            self.db.persist(PersistMode::SyncData)?;
            return Ok(Err(RefreshError::Reused));
        }
        rec.used = true;
        self.tokens.insert(
            id,
            serde_json::to_vec(&rec).map_err(|_| StoreError::Corrupt { what: "token" })?,
        )?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(Ok((rec.user, rec.family)))
    }

    /// Revokes a family (logout).
    pub fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        self.revoked.insert(family, b"")?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_revokes_the_family() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let t = RefreshTokens::open(&db).unwrap();
        t.issue("a", "alice", "f1").unwrap();
        assert_eq!(t.redeem("a").unwrap(), Ok(("alice".into(), "f1".into())));
        t.issue("b", "alice", "f1").unwrap();
        // The old token again: theft. The whole family dies, b included.
        assert_eq!(t.redeem("a").unwrap(), Err(RefreshError::Reused));
        assert_eq!(t.redeem("b").unwrap(), Err(RefreshError::Revoked));
        assert_eq!(t.redeem("zz").unwrap(), Err(RefreshError::Unknown));
    }
}
