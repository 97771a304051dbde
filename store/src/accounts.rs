//! Accounts: a user name, the hash of its password, its profile, and the
//! 3-gram index that finds users by a misspelt name.
//!
//! Hashing happens at the edge (it is CPU work that belongs to the request);
//! this module only stores and finds records. Two homes behind
//! [`AccountStore`]: [`Accounts`] in fjall (`samvad serve`) and
//! [`RedisAccounts`] (a cluster; run that Redis with AOF persistence).

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use samvad_bus::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::blocking;
use crate::redis::{unavailable, RedisKeyspace};
pub use crate::user_search::MAX_RESULTS as MAX_SEARCH_RESULTS;
use crate::user_search::{rank, trigrams};
use crate::StoreError;

/// Where accounts are kept.
pub trait AccountStore: Send + Sync + 'static {
    /// Creates the account; `Ok(false)` if the name is taken.
    fn create(&self, account: Account) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn get<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<Account>, StoreError>>;
    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Replaces an existing account's record.
    fn update(&self, account: Account) -> BoxFuture<'_, Result<(), StoreError>>;
    /// User names ranked by 3-gram similarity to `query` (typo tolerant).
    fn search<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, StoreError>>;
}

/// Most names read per query trigram: a very common trigram cannot make a
/// search scan every account.
pub const SEARCH_FANOUT: usize = 10_000;

fn trigram_key(trigram: &str, user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(trigram.len() + 1 + user.len());
    key.extend_from_slice(trigram.as_bytes());
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub created_ms: i64,
    /// Shown instead of the user name where set.
    #[serde(default)]
    pub display_name: String,
    /// Refresh tokens issued before this second (Unix time) are refused:
    /// a password change logs every other device out.
    #[serde(default)]
    pub logins_valid_from: u64,
    /// File id of the profile picture (a file in `files::AVATARS`), or empty.
    #[serde(default)]
    pub avatar: String,
    /// Hex SHA-256 of the verified phone number (E.164), or empty. Only
    /// the hash is kept: it is what contact matching compares.
    #[serde(default)]
    pub phone_sha256: String,
    /// A phone number waiting for its code.
    #[serde(default)]
    pub phone_pending: Option<PendingPhone>,
}

/// A phone number that was sent a code, not yet confirmed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingPhone {
    pub phone_sha256: String,
    /// Hex SHA-256 of `user:code`.
    pub code_sha256: String,
    pub expires_ms: i64,
    /// Wrong codes tried so far.
    pub attempts: u32,
}

#[derive(Clone)]
pub struct Accounts {
    db: Database,
    accounts: Keyspace,
    /// `trigram \0 user name` → empty: the search index.
    trigrams: Keyspace,
    /// Serialises check-then-insert of new names.
    create_lock: std::sync::Arc<Mutex<()>>,
}

impl Accounts {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Accounts {
            db: db.clone(),
            accounts: db.keyspace("accounts", KeyspaceCreateOptions::default)?,
            trigrams: db.keyspace("user_trigrams", KeyspaceCreateOptions::default)?,
            create_lock: Default::default(),
        })
    }

    /// Creates the account; `Ok(false)` if the name is taken.
    pub fn create_now(&self, account: &Account) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        if self.accounts.contains_key(&account.username)? {
            return Ok(false);
        }
        let value =
            serde_json::to_vec(account).map_err(|_| StoreError::Corrupt { what: "account" })?;
        let mut batch = self.db.batch();
        batch.insert(&self.accounts, account.username.as_str(), value);
        for t in trigrams(&account.username) {
            batch.insert(&self.trigrams, trigram_key(&t, &account.username), b"");
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    /// User names ranked by 3-gram similarity to `query`.
    pub fn search_now(&self, query: &str, limit: usize) -> Result<Vec<(String, f64)>, StoreError> {
        let mut candidates = Vec::new();
        for t in trigrams(query) {
            let mut prefix = t.into_bytes();
            prefix.push(0);
            for kv in self.trigrams.prefix(&prefix).take(SEARCH_FANOUT) {
                let key = kv.key()?;
                candidates.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
            }
        }
        Ok(rank(query, candidates.iter().map(String::as_str), limit))
    }

    pub fn get_now(&self, username: &str) -> Result<Option<Account>, StoreError> {
        match self.accounts.get(username)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|_| StoreError::Corrupt { what: "account" }),
        }
    }

    /// Replaces an existing account's record (the search index is keyed
    /// by the name, which never changes).
    pub fn update_now(&self, account: &Account) -> Result<(), StoreError> {
        let value =
            serde_json::to_vec(account).map_err(|_| StoreError::Corrupt { what: "account" })?;
        self.accounts.insert(account.username.as_str(), value)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    pub fn exists_now(&self, username: &str) -> Result<bool, StoreError> {
        Ok(self.accounts.contains_key(username)?)
    }
}

/// Writes fsync, so they run on the blocking pool; reads are in memory or
/// one point lookup, so they run in place.
impl AccountStore for Accounts {
    fn create(&self, account: Account) -> BoxFuture<'_, Result<bool, StoreError>> {
        let accounts = self.clone();
        Box::pin(blocking(move || accounts.create_now(&account)))
    }

    fn get<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(async move { self.get_now(username) })
    }

    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { self.exists_now(username) })
    }

    fn update(&self, account: Account) -> BoxFuture<'_, Result<(), StoreError>> {
        let accounts = self.clone();
        Box::pin(blocking(move || accounts.update_now(&account)))
    }

    fn search<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, StoreError>> {
        let (accounts, query) = (self.clone(), query.to_string());
        Box::pin(blocking(move || accounts.search_now(&query, limit)))
    }
}

/// Redis-backed accounts: `account:<name>` (JSON) and `trigram:<t>` (a set
/// of names) under the cluster's prefix.
pub struct RedisAccounts {
    redis: RedisKeyspace,
    /// Users known to exist. Accounts are never deleted, so a yes stays
    /// true: an edge asks Redis about a recipient once, not on every send
    /// (and goes on accepting sends to them while Redis restarts).
    known_users: quick_cache::sync::Cache<String, ()>,
}

/// How many known users a [`RedisAccounts`] remembers.
const KNOWN_USERS: usize = 100_000;

impl RedisAccounts {
    pub fn new(redis: RedisKeyspace) -> Self {
        RedisAccounts {
            redis,
            known_users: quick_cache::sync::Cache::new(KNOWN_USERS),
        }
    }
}

fn encode(account: &Account) -> Result<String, StoreError> {
    serde_json::to_string(account).map_err(|_| StoreError::Corrupt { what: "account" })
}

impl AccountStore for RedisAccounts {
    fn create(&self, account: Account) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.redis.connection();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.redis.key("account", &account.username))
                .arg(encode(&account)?)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                let mut index = redis::pipe();
                for t in trigrams(&account.username) {
                    index
                        .cmd("SADD")
                        .arg(self.redis.key("trigram", &t))
                        .arg(&account.username)
                        .ignore();
                }
                index
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
            Ok(set.is_some())
        })
    }

    fn get<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(self.redis.get_json("account", username))
    }

    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if self.known_users.get(username).is_some() {
                return Ok(true);
            }
            let found: bool = redis::cmd("EXISTS")
                .arg(self.redis.key("account", username))
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            if found {
                self.known_users.insert(username.to_string(), ());
            }
            Ok(found)
        })
    }

    fn update(&self, account: Account) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            redis::cmd("SET")
                .arg(self.redis.key("account", &account.username))
                .arg(encode(&account)?)
                .arg("XX")
                .query_async::<Option<String>>(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn search<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, StoreError>> {
        Box::pin(async move {
            let mut lookups = redis::pipe();
            for t in trigrams(query) {
                // A bounded sample of a very common trigram's names.
                lookups
                    .cmd("SRANDMEMBER")
                    .arg(self.redis.key("trigram", &t))
                    .arg(SEARCH_FANOUT);
            }
            let sets: Vec<Vec<String>> = lookups
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(rank(
                query,
                sets.iter().flatten().map(String::as_str),
                limit,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let accounts = Accounts::open(&db).unwrap();
        let a = Account {
            username: "alice".into(),
            password_hash: "h".into(),
            created_ms: 1,
            ..Default::default()
        };
        assert!(accounts.create_now(&a).unwrap());
        assert!(!accounts
            .create_now(&Account {
                password_hash: "other".into(),
                ..a.clone()
            })
            .unwrap());
        assert_eq!(accounts.get_now("alice").unwrap(), Some(a));
        assert_eq!(accounts.get_now("bob").unwrap(), None);
    }

    #[test]
    fn new_accounts_are_found_by_similar_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let accounts = Accounts::open(&db).unwrap();
        for name in ["margaret", "margarita", "marge", "bob"] {
            accounts
                .create_now(&Account {
                    username: name.into(),
                    password_hash: "h".into(),
                    created_ms: 1,
                    ..Default::default()
                })
                .unwrap();
        }
        let found = accounts.search_now("margret", 10).unwrap();
        assert_eq!(found[0].0, "margaret", "{found:?}");
        assert!(found.iter().all(|(n, _)| n != "bob"));
    }
}
