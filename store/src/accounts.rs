//! Accounts: a user name and the hash of its password.
//!
//! Hashing happens at the edge (it is CPU work that belongs to the request);
//! this module only stores and finds records.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::user_search::{rank, trigrams};
use crate::StoreError;

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
    /// Phone hash → user name: who verified which number.
    phones: Keyspace,
    /// Serialises check-then-insert of new names.
    create_lock: std::sync::Arc<Mutex<()>>,
}

impl Accounts {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Accounts {
            db: db.clone(),
            accounts: db.keyspace("accounts", KeyspaceCreateOptions::default)?,
            trigrams: db.keyspace("user_trigrams", KeyspaceCreateOptions::default)?,
            phones: db.keyspace("phones", KeyspaceCreateOptions::default)?,
            create_lock: Default::default(),
        })
    }

    /// Creates the account; `Ok(false)` if the name is taken.
    pub fn create(&self, account: &Account) -> Result<bool, StoreError> {
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
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<(String, f64)>, StoreError> {
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

    pub fn get(&self, username: &str) -> Result<Option<Account>, StoreError> {
        match self.accounts.get(username)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|_| StoreError::Corrupt { what: "account" }),
        }
    }

    /// Replaces an existing account's record (the search index is keyed
    /// by the name, which never changes).
    pub fn update(&self, account: &Account) -> Result<(), StoreError> {
        let value =
            serde_json::to_vec(account).map_err(|_| StoreError::Corrupt { what: "account" })?;
        self.accounts.insert(account.username.as_str(), value)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    pub fn exists(&self, username: &str) -> Result<bool, StoreError> {
        Ok(self.accounts.contains_key(username)?)
    }

    /// Binds phone hash `new` to `user` (unless another user holds it:
    /// `Ok(false)`) and releases `old` if `user` held it.
    pub fn claim_phone(
        &self,
        user: &str,
        new: Option<&str>,
        old: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        if let Some(new) = new {
            match self.phones.get(new)? {
                Some(holder) if holder.as_ref() != user.as_bytes() => return Ok(false),
                _ => {}
            }
        }
        let mut batch = self.db.batch();
        if let Some(old) = old.filter(|o| Some(*o) != new) {
            if self
                .phones
                .get(old)?
                .is_some_and(|h| h.as_ref() == user.as_bytes())
            {
                batch.remove(&self.phones, old);
            }
        }
        if let Some(new) = new {
            batch.insert(&self.phones, new, user);
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    /// The users who verified each of `hashes`, as `(hash, user)`.
    pub fn users_by_phone(&self, hashes: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let mut found = Vec::new();
        for hash in hashes {
            if let Some(user) = self.phones.get(hash)? {
                found.push((hash.clone(), String::from_utf8_lossy(&user).into_owned()));
            }
        }
        Ok(found)
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
        assert!(accounts.create(&a).unwrap());
        assert!(!accounts
            .create(&Account {
                password_hash: "other".into(),
                ..a.clone()
            })
            .unwrap());
        assert_eq!(accounts.get("alice").unwrap(), Some(a));
        assert_eq!(accounts.get("bob").unwrap(), None);
    }

    #[test]
    fn new_accounts_are_found_by_similar_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let accounts = Accounts::open(&db).unwrap();
        for name in ["margaret", "margarita", "marge", "bob"] {
            accounts
                .create(&Account {
                    username: name.into(),
                    password_hash: "h".into(),
                    created_ms: 1,
                    ..Default::default()
                })
                .unwrap();
        }
        let found = accounts.search("margret", 10).unwrap();
        assert_eq!(found[0].0, "margaret", "{found:?}");
        assert!(found.iter().all(|(n, _)| n != "bob"));
    }
}
