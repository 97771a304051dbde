//! Verified phone numbers, as the hex SHA-256 of the E.164 number: which
//! user holds which, one user per number. Contact matching compares these
//! hashes; the numbers themselves are never stored.
//!
//! Two homes behind [`PhoneStore`]: [`Phones`] in fjall and [`RedisPhones`].

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use samvad_bus::BoxFuture;

use crate::blocking;
use crate::redis::{unavailable, RedisKeyspace};
use crate::StoreError;

/// Where verified phone hashes are kept.
pub trait PhoneStore: Send + Sync + 'static {
    /// Binds verified phone hash `new` to `user` (`Ok(false)` if another
    /// user holds it) and releases `old` if `user` held it.
    fn claim<'a>(
        &'a self,
        user: &'a str,
        new: Option<&'a str>,
        old: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// `(hash, user)` for each of `hashes` some user verified.
    fn users<'a>(
        &'a self,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
}

/// fjall-backed phone hashes: keyspace `phones`, hash → user name.
#[derive(Clone)]
pub struct Phones {
    db: Database,
    phones: Keyspace,
    /// Serialises check-then-bind.
    lock: std::sync::Arc<Mutex<()>>,
}

impl Phones {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Phones {
            db: db.clone(),
            phones: db.keyspace("phones", KeyspaceCreateOptions::default)?,
            lock: Default::default(),
        })
    }

    fn claim_now(
        &self,
        user: &str,
        new: Option<&str>,
        old: Option<&str>,
    ) -> Result<bool, StoreError> {
        let _guard = self.lock.lock();
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

    fn users_now(&self, hashes: &[String]) -> Result<Vec<(String, String)>, StoreError> {
        let mut found = Vec::new();
        for hash in hashes {
            if let Some(user) = self.phones.get(hash)? {
                found.push((hash.clone(), String::from_utf8_lossy(&user).into_owned()));
            }
        }
        Ok(found)
    }
}

impl PhoneStore for Phones {
    fn claim<'a>(
        &'a self,
        user: &'a str,
        new: Option<&'a str>,
        old: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let phones = self.clone();
        let (user, new, old) = (
            user.to_string(),
            new.map(str::to_string),
            old.map(str::to_string),
        );
        Box::pin(blocking(move || {
            phones.claim_now(&user, new.as_deref(), old.as_deref())
        }))
    }

    fn users<'a>(
        &'a self,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move { self.users_now(hashes) })
    }
}

/// Binds a phone hash to a user unless another holds it, and releases the
/// user's old one. KEYS: new (or a key never set), old (likewise); ARGV:
/// user, whether there is a new one.
const CLAIM_SCRIPT: &str = include_str!("lua/claim_phone.lua");

/// Redis-backed phone hashes: `phone:<hash>` → user name.
pub struct RedisPhones {
    redis: RedisKeyspace,
    claim: redis::Script,
}

impl RedisPhones {
    pub fn new(redis: RedisKeyspace) -> Self {
        RedisPhones {
            redis,
            claim: redis::Script::new(CLAIM_SCRIPT),
        }
    }
}

impl PhoneStore for RedisPhones {
    fn claim<'a>(
        &'a self,
        user: &'a str,
        new: Option<&'a str>,
        old: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // `phone:` (no hash can name it) stands in for "none".
            let key = |hash: Option<&str>| self.redis.key("phone", hash.unwrap_or(""));
            let claimed: u8 = self
                .claim
                .key(key(new))
                .key(key(old))
                .arg(user)
                .arg(if new.is_some() { "1" } else { "0" })
                .invoke_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(claimed == 1)
        })
    }

    fn users<'a>(
        &'a self,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move {
            if hashes.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = hashes.iter().map(|h| self.redis.key("phone", h)).collect();
            let users: Vec<Option<String>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(hashes
                .iter()
                .zip(users)
                .filter_map(|(h, u)| u.map(|u| (h.clone(), u)))
                .collect())
        })
    }
}
