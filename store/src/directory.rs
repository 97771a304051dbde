//! The directory: accounts, refresh tokens and groups, everything an edge
//! needs to log users in and check recipients, and a router needs to fan
//! group messages out. One trait, two homes:
//!
//! - [`LocalDirectory`]: fjall in the process (`samvad serve`);
//! - [`RedisDirectory`]: Redis, shared by every edge of a cluster, so that
//!   login, refresh and token checks work on any edge. Run that Redis with
//!   AOF persistence in production: accounts live there.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use samvad_bus::BoxFuture;

use crate::accounts::{Account, Accounts};
use crate::groups::Groups;
use crate::tokens::{RefreshError, RefreshTokens};
use crate::user_search::{rank, trigrams};
use crate::StoreError;
use samvad_core::group::{member_changes, Group};

pub type Redeemed = Result<(String, String), RefreshError>;

pub trait Directory: Send + Sync + 'static {
    /// Creates the account; `Ok(false)` if the name is taken.
    fn create_account(&self, account: Account) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn account<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>>;
    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Replaces an existing account's record.
    fn update_account(&self, account: Account) -> BoxFuture<'_, Result<(), StoreError>>;
    /// User names ranked by 3-gram similarity to `query` (typo tolerant).
    fn search_users<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, StoreError>>;
    /// Records a new refresh token `id` of login `family` for `user`.
    fn issue_refresh<'a>(
        &'a self,
        id: &'a str,
        user: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Uses up token `id`: its user and family, or why not. Using a token
    /// twice revokes its whole family.
    fn redeem_refresh<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Redeemed, StoreError>>;
    fn revoke_family<'a>(&'a self, family: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Binds verified phone hash `new` to `user` (`Ok(false)` if another
    /// user holds it) and releases `old` if `user` held it.
    fn claim_phone<'a>(
        &'a self,
        user: &'a str,
        new: Option<&'a str>,
        old: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// `(hash, user)` for each of `hashes` some user verified.
    fn users_by_phone<'a>(
        &'a self,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
    /// Creates the group; `Ok(false)` if its id is taken.
    fn create_group(&self, group: Group) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn group<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Group>, StoreError>>;
    /// Ids of the groups `user` is a member of.
    fn groups_of<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
    /// Writes `new` in place of `old` if the stored group is still at
    /// `old.version`; `Ok(false)` if it changed (or went) in between.
    fn replace_group<'a>(
        &'a self,
        old: &'a Group,
        new: &'a Group,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Deletes the group if it is still at `group.version`.
    fn delete_group<'a>(&'a self, group: &'a Group) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Channels (anyone may subscribe) whose name contains `query`, any
    /// case, as (id, name) by name; at most `limit`.
    fn channels<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
}

/// fjall-backed directory. Writes fsync, so they run on the blocking pool.
#[derive(Clone)]
pub struct LocalDirectory {
    pub accounts: Accounts,
    pub refresh: RefreshTokens,
    pub groups: Groups,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Unavailable("blocking task failed".into()))?
}

impl Directory for LocalDirectory {
    fn create_account(&self, account: Account) -> BoxFuture<'_, Result<bool, StoreError>> {
        let accounts = self.accounts.clone();
        Box::pin(blocking(move || accounts.create(&account)))
    }

    fn account<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(async move { self.accounts.get(username) })
    }

    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { self.accounts.exists(username) })
    }

    fn update_account(&self, account: Account) -> BoxFuture<'_, Result<(), StoreError>> {
        let accounts = self.accounts.clone();
        Box::pin(blocking(move || accounts.update(&account)))
    }

    fn search_users<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, StoreError>> {
        let (accounts, query) = (self.accounts.clone(), query.to_string());
        Box::pin(blocking(move || accounts.search(&query, limit)))
    }

    fn issue_refresh<'a>(
        &'a self,
        id: &'a str,
        user: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let refresh = self.refresh.clone();
        let (id, user, family) = (id.to_string(), user.to_string(), family.to_string());
        Box::pin(blocking(move || refresh.issue(&id, &user, &family)))
    }

    fn redeem_refresh<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Redeemed, StoreError>> {
        let refresh = self.refresh.clone();
        let id = id.to_string();
        Box::pin(blocking(move || refresh.redeem(&id)))
    }

    fn revoke_family<'a>(&'a self, family: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let refresh = self.refresh.clone();
        let family = family.to_string();
        Box::pin(blocking(move || refresh.revoke_family(&family)))
    }

    fn claim_phone<'a>(
        &'a self,
        user: &'a str,
        new: Option<&'a str>,
        old: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let accounts = self.accounts.clone();
        let (user, new, old) = (
            user.to_string(),
            new.map(str::to_string),
            old.map(str::to_string),
        );
        Box::pin(blocking(move || {
            accounts.claim_phone(&user, new.as_deref(), old.as_deref())
        }))
    }

    fn users_by_phone<'a>(
        &'a self,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move { self.accounts.users_by_phone(hashes) })
    }

    fn create_group(&self, group: Group) -> BoxFuture<'_, Result<bool, StoreError>> {
        let groups = self.groups.clone();
        Box::pin(blocking(move || groups.create(&group)))
    }

    fn group<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Group>, StoreError>> {
        Box::pin(async move { self.groups.get(id) })
    }

    fn groups_of<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move { self.groups.of_member(user) })
    }

    fn replace_group<'a>(
        &'a self,
        old: &'a Group,
        new: &'a Group,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (groups, old, new) = (self.groups.clone(), old.clone(), new.clone());
        Box::pin(blocking(move || groups.replace(&old, &new)))
    }

    fn delete_group<'a>(&'a self, group: &'a Group) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (groups, group) = (self.groups.clone(), group.clone());
        Box::pin(blocking(move || groups.delete(&group)))
    }

    fn channels<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        let (groups, query) = (self.groups.clone(), query.to_owned());
        Box::pin(blocking(move || groups.channels(&query, limit)))
    }
}

/// How long Redis keeps refresh tokens and revoked families: past the
/// refresh token's own lifetime nothing can present them any more.
pub const REFRESH_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);

/// Redeems a refresh token atomically (one script, one round trip):
/// unknown / revoked / reused (which revokes the family) / ok.
const REDEEM_SCRIPT: &str = include_str!("lua/redeem_refresh.lua");

/// Creates a group and indexes it under each member, or nothing if the id
/// is taken. KEYS: the group, then each member's set; ARGV: record, id.
const CREATE_GROUP_SCRIPT: &str = include_str!("lua/create_group.lua");

/// Replaces (or, with an empty record, deletes) a group if its stored
/// version is the expected one, and updates the member index. KEYS: the
/// group, the sets of members added, then of members removed; ARGV:
/// expected version, new record or "", group id, number of added.
const REPLACE_GROUP_SCRIPT: &str = include_str!("lua/replace_group.lua");

/// Binds a phone hash to a user unless another holds it, and releases the
/// user's old one. KEYS: new (or a key never set), old (likewise); ARGV:
/// user, whether there is a new one.
const CLAIM_PHONE_SCRIPT: &str = include_str!("lua/claim_phone.lua");

/// Redis-backed directory, shared by the edges of a cluster.
pub struct RedisDirectory {
    redis: ConnectionManager,
    prefix: String,
    /// Users known to exist. Accounts are never deleted, so a yes stays
    /// true: an edge asks Redis about a recipient once, not on every send
    /// (and goes on accepting sends to them while Redis restarts).
    known_users: quick_cache::sync::Cache<String, ()>,
    claim_phone: redis::Script,
    redeem: redis::Script,
    create_group: redis::Script,
    replace_group: redis::Script,
}

/// How many known users a [`RedisDirectory`] remembers.
const KNOWN_USERS: usize = 100_000;

pub(crate) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl RedisDirectory {
    pub async fn connect(url: &str, prefix: &str) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let redis = ConnectionManager::new(client).await.map_err(unavailable)?;
        Ok(Arc::new(RedisDirectory {
            redis,
            prefix: prefix.to_string(),
            known_users: quick_cache::sync::Cache::new(KNOWN_USERS),
            redeem: redis::Script::new(REDEEM_SCRIPT),
            claim_phone: redis::Script::new(CLAIM_PHONE_SCRIPT),
            create_group: redis::Script::new(CREATE_GROUP_SCRIPT),
            replace_group: redis::Script::new(REPLACE_GROUP_SCRIPT),
        }))
    }

    fn account_key(&self, username: &str) -> String {
        format!("{}account:{username}", self.prefix)
    }

    fn phone_key(&self, hash: &str) -> String {
        format!("{}phone:{hash}", self.prefix)
    }

    fn trigram_key(&self, trigram: &str) -> String {
        format!("{}trigram:{trigram}", self.prefix)
    }

    fn group_key(&self, id: &str) -> String {
        format!("{}group:{id}", self.prefix)
    }

    fn member_groups_key(&self, user: &str) -> String {
        format!("{}member-groups:{user}", self.prefix)
    }

    /// Hash of channel id → name, kept beside the group records (written
    /// after each change of a channel, so the next change repairs a write
    /// a crash lost between the two).
    fn channels_key(&self) -> String {
        format!("{}channels", self.prefix)
    }

    async fn index_channel(&self, id: &str, name: Option<&str>) -> Result<(), StoreError> {
        let cmd = match name {
            Some(name) => {
                let mut c = redis::cmd("HSET");
                c.arg(self.channels_key()).arg(id).arg(name);
                c
            }
            None => {
                let mut c = redis::cmd("HDEL");
                c.arg(self.channels_key()).arg(id);
                c
            }
        };
        cmd.query_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Runs the replace script: `new` = `None` deletes.
    async fn swap_group(&self, old: &Group, new: Option<&Group>) -> Result<bool, StoreError> {
        let (added, removed) = match new {
            Some(new) => member_changes(old, new),
            None => (Vec::new(), old.member_names().collect()),
        };
        let record = match new {
            Some(new) => {
                serde_json::to_string(new).map_err(|_| StoreError::Corrupt { what: "group" })?
            }
            None => String::new(),
        };
        let mut invocation = self.replace_group.prepare_invoke();
        invocation.key(self.group_key(&old.id));
        for user in added.iter().chain(&removed) {
            invocation.key(self.member_groups_key(user));
        }
        invocation
            .arg(old.version)
            .arg(record)
            .arg(&old.id)
            .arg(added.len());
        let swapped: i64 = invocation
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(unavailable)?;
        Ok(swapped == 1)
    }

    fn token_key(&self, id: &str) -> String {
        format!("{}refresh:{id}", self.prefix)
    }

    fn revoked_prefix(&self) -> String {
        format!("{}revoked:", self.prefix)
    }

    /// A secret every edge of the cluster shares (the access-token key):
    /// the first edge to start sets it, the others read it.
    pub async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = format!("{}secret:{name}", self.prefix);
        let mut conn = self.redis.clone();
        let _: bool = redis::cmd("SET")
            .arg(&key)
            .arg(fresh)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map(|r| r.is_some())
            .map_err(unavailable)?;
        let value: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(value)
    }
}

impl Directory for RedisDirectory {
    fn create_account(&self, account: Account) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let value = serde_json::to_string(&account)
                .map_err(|_| StoreError::Corrupt { what: "account" })?;
            let mut conn = self.redis.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.account_key(&account.username))
                .arg(value)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                let mut index = redis::pipe();
                for t in trigrams(&account.username) {
                    index
                        .cmd("SADD")
                        .arg(self.trigram_key(&t))
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

    fn account<'a>(
        &'a self,
        username: &'a str,
    ) -> BoxFuture<'a, Result<Option<Account>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.redis.clone();
            let value: Option<String> = redis::cmd("GET")
                .arg(self.account_key(username))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            value
                .map(|v| serde_json::from_str(&v))
                .transpose()
                .map_err(|_| StoreError::Corrupt { what: "account" })
        })
    }

    fn update_account(&self, account: Account) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let value = serde_json::to_string(&account)
                .map_err(|_| StoreError::Corrupt { what: "account" })?;
            redis::cmd("SET")
                .arg(self.account_key(&account.username))
                .arg(value)
                .arg("XX")
                .query_async::<Option<String>>(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn search_users<'a>(
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
                    .arg(self.trigram_key(&t))
                    .arg(crate::accounts::SEARCH_FANOUT);
            }
            let sets: Vec<Vec<String>> = lookups
                .query_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            Ok(rank(
                query,
                sets.iter().flatten().map(String::as_str),
                limit,
            ))
        })
    }

    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if self.known_users.get(username).is_some() {
                return Ok(true);
            }
            let mut conn = self.redis.clone();
            let found: bool = redis::cmd("EXISTS")
                .arg(self.account_key(username))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if found {
                self.known_users.insert(username.to_string(), ());
            }
            Ok(found)
        })
    }

    fn issue_refresh<'a>(
        &'a self,
        id: &'a str,
        user: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.token_key(id);
            let mut conn = self.redis.clone();
            redis::pipe()
                .atomic()
                .hset_multiple(&key, &[("user", user), ("family", family), ("used", "0")])
                .ignore()
                .expire(&key, REFRESH_RETENTION.as_secs() as i64)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)
        })
    }

    fn redeem_refresh<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Redeemed, StoreError>> {
        Box::pin(async move {
            let mut conn = self.redis.clone();
            let reply: Vec<String> = self
                .redeem
                .key(self.token_key(id))
                .arg(self.revoked_prefix())
                .arg(REFRESH_RETENTION.as_secs())
                .invoke_async(&mut conn)
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
            let mut conn = self.redis.clone();
            redis::cmd("SET")
                .arg(format!("{}{family}", self.revoked_prefix()))
                .arg("1")
                .arg("EX")
                .arg(REFRESH_RETENTION.as_secs())
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)
        })
    }

    fn claim_phone<'a>(
        &'a self,
        user: &'a str,
        new: Option<&'a str>,
        old: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // A key no hash can name stands in for "none".
            let none = format!("{}phone:", self.prefix);
            let key = |hash: Option<&str>| hash.map_or(none.clone(), |h| self.phone_key(h));
            let claimed: u8 = self
                .claim_phone
                .key(key(new))
                .key(key(old))
                .arg(user)
                .arg(if new.is_some() { "1" } else { "0" })
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            Ok(claimed == 1)
        })
    }

    fn users_by_phone<'a>(
        &'a self,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move {
            if hashes.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = hashes.iter().map(|h| self.phone_key(h)).collect();
            let users: Vec<Option<String>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            Ok(hashes
                .iter()
                .zip(users)
                .filter_map(|(h, u)| u.map(|u| (h.clone(), u)))
                .collect())
        })
    }

    fn create_group(&self, group: Group) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let value =
                serde_json::to_string(&group).map_err(|_| StoreError::Corrupt { what: "group" })?;
            let mut invocation = self.create_group.prepare_invoke();
            invocation.key(self.group_key(&group.id));
            for member in group.member_names() {
                invocation.key(self.member_groups_key(member));
            }
            invocation.arg(value).arg(&group.id);
            let created: i64 = invocation
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            if created == 1 && group.channel {
                self.index_channel(&group.id, Some(&group.name)).await?;
            }
            Ok(created == 1)
        })
    }

    fn group<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Group>, StoreError>> {
        Box::pin(async move {
            let value: Option<String> = redis::cmd("GET")
                .arg(self.group_key(id))
                .query_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            value
                .map(|v| serde_json::from_str(&v))
                .transpose()
                .map_err(|_| StoreError::Corrupt { what: "group" })
        })
    }

    fn groups_of<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut ids: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.member_groups_key(user))
                .query_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            ids.sort();
            Ok(ids)
        })
    }

    fn replace_group<'a>(
        &'a self,
        old: &'a Group,
        new: &'a Group,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let swapped = self.swap_group(old, Some(new)).await?;
            if swapped && new.channel {
                self.index_channel(&new.id, Some(&new.name)).await?;
            }
            Ok(swapped)
        })
    }

    fn delete_group<'a>(&'a self, group: &'a Group) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self.swap_group(group, None).await?;
            if deleted && group.channel {
                self.index_channel(&group.id, None).await?;
            }
            Ok(deleted)
        })
    }

    fn channels<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move {
            let all: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(self.channels_key())
                .query_async(&mut self.redis.clone())
                .await
                .map_err(unavailable)?;
            let needle = query.to_lowercase();
            let found = all
                .into_iter()
                .filter(|(_, name)| name.to_lowercase().contains(&needle))
                .collect();
            Ok(samvad_core::group::ranked_channels(found, limit))
        })
    }
}
