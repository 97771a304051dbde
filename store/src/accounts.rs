//! Accounts: a user name and the hash of its password.
//!
//! Hashing happens at the edge (it is CPU work that belongs to the request);
//! this module only stores and finds records.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::StoreError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub created_ms: i64,
}

#[derive(Clone)]
pub struct Accounts {
    db: Database,
    accounts: Keyspace,
    /// Serialises check-then-insert of new names.
    create_lock: std::sync::Arc<Mutex<()>>,
}

impl Accounts {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Accounts {
            db: db.clone(),
            accounts: db.keyspace("accounts", KeyspaceCreateOptions::default)?,
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
        self.accounts.insert(account.username.as_str(), value)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    pub fn get(&self, username: &str) -> Result<Option<Account>, StoreError> {
        match self.accounts.get(username)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|_| StoreError::Corrupt { what: "account" }),
        }
    }

    pub fn exists(&self, username: &str) -> Result<bool, StoreError> {
        Ok(self.accounts.contains_key(username)?)
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
}
