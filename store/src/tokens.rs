//! Refresh tokens with rotation and reuse detection.
//!
//! Every refresh token belongs to a family (one login). Using a token marks
//! it used and issues the next one of the family; presenting a used token
//! again means it leaked, so the whole family is revoked (OAuth 2.0 Security
//! BCP, "refresh token rotation").
//!
//! Two homes behind [`RefreshTokenStore`]: [`RefreshTokens`] in fjall and
//! [`RedisRefreshTokens`].

use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use samvad_bus::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::blocking;
use crate::redis::{unavailable, RedisKeyspace};
use crate::StoreError;

/// A redeemed token's user and family, or why it was refused.
pub type Redeemed = Result<(String, String), RefreshError>;

/// Where refresh tokens and revoked families are kept.
pub trait RefreshTokenStore: Send + Sync + 'static {
    /// Records a new refresh token `id` of login `family` for `user`.
    fn issue<'a>(
        &'a self,
        id: &'a str,
        user: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Uses up token `id`: its user and family, or why not. Using a token
    /// twice revokes its whole family.
    fn redeem<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Redeemed, StoreError>>;
    /// Revokes a family (logout).
    fn revoke_family<'a>(&'a self, family: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

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
    pub fn issue_now(&self, id: &str, user: &str, family: &str) -> Result<(), StoreError> {
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
    pub fn redeem_now(&self, id: &str) -> Result<Redeemed, StoreError> {
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
    pub fn revoke_family_now(&self, family: &str) -> Result<(), StoreError> {
        self.revoked.insert(family, b"")?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }
}

impl RefreshTokenStore for RefreshTokens {
    fn issue<'a>(
        &'a self,
        id: &'a str,
        user: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let tokens = self.clone();
        let (id, user, family) = (id.to_string(), user.to_string(), family.to_string());
        Box::pin(blocking(move || tokens.issue_now(&id, &user, &family)))
    }

    fn redeem<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Redeemed, StoreError>> {
        let (tokens, id) = (self.clone(), id.to_string());
        Box::pin(blocking(move || tokens.redeem_now(&id)))
    }

    fn revoke_family<'a>(&'a self, family: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let (tokens, family) = (self.clone(), family.to_string());
        Box::pin(blocking(move || tokens.revoke_family_now(&family)))
    }
}

/// How long Redis keeps refresh tokens and revoked families: past the
/// refresh token's own lifetime nothing can present them any more.
pub const REFRESH_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// Redeems a refresh token atomically (one script, one round trip):
/// unknown / revoked / reused (which revokes the family) / ok.
const REDEEM_SCRIPT: &str = include_str!("lua/redeem_refresh.lua");

/// Redis-backed refresh tokens: a hash `refresh:<id>` per token and a key
/// `revoked:<family>` per revoked family, each expiring after
/// [`REFRESH_RETENTION`].
pub struct RedisRefreshTokens {
    redis: RedisKeyspace,
    redeem: redis::Script,
}

impl RedisRefreshTokens {
    pub fn new(redis: RedisKeyspace) -> Self {
        RedisRefreshTokens {
            redis,
            redeem: redis::Script::new(REDEEM_SCRIPT),
        }
    }
}

impl RefreshTokenStore for RedisRefreshTokens {
    fn issue<'a>(
        &'a self,
        id: &'a str,
        user: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.redis.key("refresh", id);
            redis::pipe()
                .atomic()
                .hset_multiple(&key, &[("user", user), ("family", family), ("used", "0")])
                .ignore()
                .expire(&key, REFRESH_RETENTION.as_secs() as i64)
                .ignore()
                .query_async::<()>(&mut self.redis.connection())
                .await
                .map_err(unavailable)
        })
    }

    fn redeem<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Redeemed, StoreError>> {
        Box::pin(async move {
            let reply: Vec<String> = self
                .redeem
                .key(self.redis.key("refresh", id))
                .arg(self.redis.key("revoked", ""))
                .arg(REFRESH_RETENTION.as_secs())
                .invoke_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(match reply.first().map(String::as_str) {
                Some("ok") if reply.len() == 3 => Ok((reply[1].clone(), reply[2].clone())),
                Some("reused") => Err(RefreshError::Reused),
                Some("revoked") => Err(RefreshError::Revoked),
                _ => Err(RefreshError::Unknown),
            })
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            redis::cmd("SET")
                .arg(self.redis.key("revoked", family))
                .arg("1")
                .arg("EX")
                .arg(REFRESH_RETENTION.as_secs())
                .query_async::<()>(&mut self.redis.connection())
                .await
                .map_err(unavailable)
        })
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
        t.issue_now("a", "alice", "f1").unwrap();
        assert_eq!(
            t.redeem_now("a").unwrap(),
            Ok(("alice".into(), "f1".into()))
        );
        t.issue_now("b", "alice", "f1").unwrap();
        // The old token again: theft. The whole family dies, b included.
        assert_eq!(t.redeem_now("a").unwrap(), Err(RefreshError::Reused));
        assert_eq!(t.redeem_now("b").unwrap(), Err(RefreshError::Revoked));
        assert_eq!(t.redeem_now("zz").unwrap(), Err(RefreshError::Unknown));
    }
}
