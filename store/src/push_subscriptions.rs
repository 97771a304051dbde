//! Web Push subscriptions: where to notify a user who has no live session.
//!
//! A subscription is what a browser's `pushManager.subscribe()` returns: a
//! push service endpoint and the keys to encrypt for it (RFC 8291). One
//! per device, keyed by endpoint; a user has at most
//! [`MAX_PER_USER`]. Two homes, as for the directory: fjall in
//! `samvad serve`, a Redis hash per user in a cluster.

use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use samvad_bus::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::blocking;
use crate::keys::{dedupe_key, user_prefix};
use crate::redis::{unavailable, RedisKeyspace};
use crate::StoreError;

/// Devices one user may subscribe.
pub const MAX_PER_USER: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushSubscription {
    /// The push service URL (RFC 8030) to POST notifications to.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url (RFC 8291 `ua_public`).
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url.
    pub auth: String,
}

/// The outcome of [`PushSubscriptions::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Added,
    /// The endpoint was known: its keys were replaced.
    Replaced,
    /// The user has [`MAX_PER_USER`] already.
    Full,
}

pub trait PushSubscriptions: Send + Sync + 'static {
    fn add<'a>(
        &'a self,
        user: &'a str,
        subscription: WebPushSubscription,
    ) -> BoxFuture<'a, Result<Added, StoreError>>;
    /// Whether `endpoint` was a subscription of `user`.
    fn remove<'a>(
        &'a self,
        user: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn of<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebPushSubscription>, StoreError>>;
}

fn decode(bytes: &[u8]) -> Result<WebPushSubscription, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        what: "push subscription",
    })
}

fn encode(subscription: &WebPushSubscription) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(subscription).map_err(|_| StoreError::Corrupt {
        what: "push subscription",
    })
}

/// fjall keyspace `push_subscriptions`: `user \0 endpoint` → JSON.
#[derive(Clone)]
pub struct LocalPushSubscriptions {
    db: Database,
    subscriptions: Keyspace,
    /// Serialises the count check with the insert.
    write_lock: Arc<Mutex<()>>,
}

fn key(user: &str, endpoint: &str) -> Vec<u8> {
    dedupe_key(user, &[endpoint])
}

impl LocalPushSubscriptions {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(LocalPushSubscriptions {
            db: db.clone(),
            subscriptions: db.keyspace("push_subscriptions", KeyspaceCreateOptions::default)?,
            write_lock: Default::default(),
        })
    }

    fn all_of(&self, user: &str) -> Result<Vec<WebPushSubscription>, StoreError> {
        self.subscriptions
            .prefix(user_prefix(user))
            .map(|kv| decode(&kv.value()?))
            .collect()
    }

    fn add_now(&self, user: &str, sub: &WebPushSubscription) -> Result<Added, StoreError> {
        let _guard = self.write_lock.lock();
        let key = key(user, &sub.endpoint);
        let outcome = if self.subscriptions.contains_key(&key)? {
            Added::Replaced
        } else if self.subscriptions.prefix(user_prefix(user)).count() >= MAX_PER_USER {
            return Ok(Added::Full);
        } else {
            Added::Added
        };
        self.subscriptions.insert(key, encode(sub)?)?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(outcome)
    }

    fn remove_now(&self, user: &str, endpoint: &str) -> Result<bool, StoreError> {
        let key = key(user, endpoint);
        let existed = self.subscriptions.contains_key(&key)?;
        if existed {
            self.subscriptions.remove(key)?;
            self.db.persist(PersistMode::SyncAll)?;
        }
        Ok(existed)
    }
}

impl PushSubscriptions for LocalPushSubscriptions {
    fn add<'a>(
        &'a self,
        user: &'a str,
        subscription: WebPushSubscription,
    ) -> BoxFuture<'a, Result<Added, StoreError>> {
        let (this, user) = (self.clone(), user.to_string());
        Box::pin(blocking(move || this.add_now(&user, &subscription)))
    }

    fn remove<'a>(
        &'a self,
        user: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (this, user, endpoint) = (self.clone(), user.to_string(), endpoint.to_string());
        Box::pin(blocking(move || this.remove_now(&user, &endpoint)))
    }

    fn of<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebPushSubscription>, StoreError>> {
        Box::pin(async move { self.all_of(user) })
    }
}

/// KEYS: the user's hash. ARGV: endpoint, JSON, limit.
/// Returns 0 added, 1 replaced, 2 full.
const ADD_SCRIPT: &str = include_str!("lua/push_subscription_add.lua");

/// A Redis hash `push_subscriptions:<user>` (endpoint → JSON) per user.
pub struct RedisPushSubscriptions {
    redis: RedisKeyspace,
    add: redis::Script,
}

impl RedisPushSubscriptions {
    pub fn new(redis: RedisKeyspace) -> Self {
        RedisPushSubscriptions {
            redis,
            add: redis::Script::new(ADD_SCRIPT),
        }
    }

    fn key(&self, user: &str) -> String {
        self.redis.key("push_subscriptions", user)
    }
}

impl PushSubscriptions for RedisPushSubscriptions {
    fn add<'a>(
        &'a self,
        user: &'a str,
        subscription: WebPushSubscription,
    ) -> BoxFuture<'a, Result<Added, StoreError>> {
        Box::pin(async move {
            let code: u8 = self
                .add
                .key(self.key(user))
                .arg(&subscription.endpoint)
                .arg(encode(&subscription)?)
                .arg(MAX_PER_USER)
                .invoke_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(match code {
                0 => Added::Added,
                1 => Added::Replaced,
                _ => Added::Full,
            })
        })
    }

    fn remove<'a>(
        &'a self,
        user: &'a str,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let removed: u32 = redis::cmd("HDEL")
                .arg(self.key(user))
                .arg(endpoint)
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            Ok(removed > 0)
        })
    }

    fn of<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebPushSubscription>, StoreError>> {
        Box::pin(async move {
            let values: Vec<Vec<u8>> = redis::cmd("HVALS")
                .arg(self.key(user))
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            values.iter().map(|v| decode(v)).collect()
        })
    }
}
