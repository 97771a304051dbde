//! Groups: a named conversation with members and roles. The record is the
//! unit of change (one key per group), with an index from each member to
//! their groups so that "my groups" is one prefix scan.
//!
//! The record and the rules of change live in samvad-core
//! ([`samvad_core::group`], [`samvad_core::group_rules`]); this module stores
//! versions: a write replaces version `n` with `n + 1` or fails, so two
//! concurrent changes cannot both win.
//!
//! Two homes behind [`GroupStore`]: [`Groups`] in fjall and [`RedisGroups`].

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use samvad_bus::BoxFuture;
use samvad_core::group::{member_changes, ranked_channels, Group};

use crate::blocking;
use crate::redis::{unavailable, RedisKeyspace};
use crate::StoreError;

/// Where groups and the member index are kept.
pub trait GroupStore: Send + Sync + 'static {
    /// Creates the group; `Ok(false)` if its id is taken.
    fn create(&self, group: Group) -> BoxFuture<'_, Result<bool, StoreError>>;
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Group>, StoreError>>;
    /// Ids of the groups `user` is a member of.
    fn of_member<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
    /// Writes `new` in place of `old` if the stored group is still at
    /// `old.version`; `Ok(false)` if it changed (or went) in between.
    fn replace<'a>(
        &'a self,
        old: &'a Group,
        new: &'a Group,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Deletes the group if it is still at `group.version`.
    fn delete<'a>(&'a self, group: &'a Group) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Channels (anyone may subscribe) whose name contains `query`, any
    /// case, as (id, name) by name; at most `limit`.
    fn channels<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
}

/// fjall-backed groups (`samvad serve`).
#[derive(Clone)]
pub struct Groups {
    db: Database,
    groups: Keyspace,
    /// `user \0 group id` → empty: a member's groups.
    by_member: Keyspace,
    /// Channel id → its name: the public directory of channels.
    channels: Keyspace,
    create_lock: std::sync::Arc<Mutex<()>>,
}

fn member_key(user: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + 1 + id.len());
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

impl Groups {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Groups {
            db: db.clone(),
            groups: db.keyspace("groups", KeyspaceCreateOptions::default)?,
            by_member: db.keyspace("group_members", KeyspaceCreateOptions::default)?,
            channels: db.keyspace("channels", KeyspaceCreateOptions::default)?,
            create_lock: Default::default(),
        })
    }

    /// Creates the group; `Ok(false)` if the id is taken.
    pub fn create_now(&self, group: &Group) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        if self.groups.contains_key(&group.id)? {
            return Ok(false);
        }
        let value = serde_json::to_vec(group).map_err(|_| StoreError::Corrupt { what: "group" })?;
        let mut batch = self.db.batch();
        batch.insert(&self.groups, group.id.as_bytes(), value);
        for m in &group.members {
            batch.insert(&self.by_member, member_key(&m.user, &group.id), b"");
        }
        if group.channel {
            batch.insert(&self.channels, group.id.as_bytes(), group.name.as_bytes());
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    /// Writes `new` in place of `old` if the stored version is still
    /// `old`'s; `Ok(false)` if someone changed the group in between (or it
    /// was deleted).
    pub fn replace_now(&self, old: &Group, new: &Group) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        match self.get_now(&old.id)? {
            Some(current) if current.version == old.version => {}
            _ => return Ok(false),
        }
        let value = serde_json::to_vec(new).map_err(|_| StoreError::Corrupt { what: "group" })?;
        let (added, removed) = member_changes(old, new);
        let mut batch = self.db.batch();
        batch.insert(&self.groups, new.id.as_bytes(), value);
        for user in added {
            batch.insert(&self.by_member, member_key(user, &new.id), b"");
        }
        for user in removed {
            batch.remove(&self.by_member, member_key(user, &new.id));
        }
        if new.channel {
            batch.insert(&self.channels, new.id.as_bytes(), new.name.as_bytes());
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    /// Deletes the group and its index entries; `Ok(false)` if the stored
    /// version is not `group`'s.
    pub fn delete_now(&self, group: &Group) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        match self.get_now(&group.id)? {
            Some(current) if current.version == group.version => {}
            _ => return Ok(false),
        }
        let mut batch = self.db.batch();
        batch.remove(&self.groups, group.id.as_bytes());
        batch.remove(&self.channels, group.id.as_bytes());
        for user in group.member_names() {
            batch.remove(&self.by_member, member_key(user, &group.id));
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    pub fn get_now(&self, id: &str) -> Result<Option<Group>, StoreError> {
        self.groups
            .get(id)?
            .map(|v| serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt { what: "group" }))
            .transpose()
    }

    /// Channels whose name contains `query` (any case; empty: all), as
    /// (id, name), at most `limit`, by name.
    pub fn channels_now(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let needle = query.to_lowercase();
        let mut found = Vec::new();
        for kv in self.channels.iter() {
            let (id, name) = kv.into_inner()?;
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.to_lowercase().contains(&needle) {
                found.push((String::from_utf8_lossy(&id).into_owned(), name));
            }
        }
        Ok(ranked_channels(found, limit))
    }

    /// Ids of the groups `user` is a member of.
    pub fn of_member_now(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        let mut ids = Vec::new();
        for kv in self.by_member.prefix(&prefix) {
            let key = kv.key()?;
            ids.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok(ids)
    }
}

impl GroupStore for Groups {
    fn create(&self, group: Group) -> BoxFuture<'_, Result<bool, StoreError>> {
        let groups = self.clone();
        Box::pin(blocking(move || groups.create_now(&group)))
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Group>, StoreError>> {
        Box::pin(async move { self.get_now(id) })
    }

    fn of_member<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move { self.of_member_now(user) })
    }

    fn replace<'a>(
        &'a self,
        old: &'a Group,
        new: &'a Group,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (groups, old, new) = (self.clone(), old.clone(), new.clone());
        Box::pin(blocking(move || groups.replace_now(&old, &new)))
    }

    fn delete<'a>(&'a self, group: &'a Group) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (groups, group) = (self.clone(), group.clone());
        Box::pin(blocking(move || groups.delete_now(&group)))
    }

    fn channels<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        let (groups, query) = (self.clone(), query.to_owned());
        Box::pin(blocking(move || groups.channels_now(&query, limit)))
    }
}

/// Creates a group and indexes it under each member, or nothing if the id
/// is taken. KEYS: the group, then each member's set; ARGV: record, id.
const CREATE_SCRIPT: &str = include_str!("lua/create_group.lua");

/// Replaces (or, with an empty record, deletes) a group if its stored
/// version is the expected one, and updates the member index. KEYS: the
/// group, the sets of members added, then of members removed; ARGV:
/// expected version, new record or "", group id, number of added.
const REPLACE_SCRIPT: &str = include_str!("lua/replace_group.lua");

/// Redis-backed groups: `group:<id>` (JSON), `member-groups:<user>` (a set
/// of ids) and `channels` (a hash of channel id to name, written after each
/// change of a channel, so the next change repairs a write a crash lost
/// between the two).
pub struct RedisGroups {
    redis: RedisKeyspace,
    create: redis::Script,
    replace: redis::Script,
}

impl RedisGroups {
    pub fn new(redis: RedisKeyspace) -> Self {
        RedisGroups {
            redis,
            create: redis::Script::new(CREATE_SCRIPT),
            replace: redis::Script::new(REPLACE_SCRIPT),
        }
    }

    async fn index_channel(&self, id: &str, name: Option<&str>) -> Result<(), StoreError> {
        let mut cmd = redis::cmd(if name.is_some() { "HSET" } else { "HDEL" });
        cmd.arg(self.redis.bare_key("channels")).arg(id);
        if let Some(name) = name {
            cmd.arg(name);
        }
        cmd.query_async::<i64>(&mut self.redis.connection())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Runs the replace script: `new` = `None` deletes.
    async fn swap(&self, old: &Group, new: Option<&Group>) -> Result<bool, StoreError> {
        let (added, removed) = match new {
            Some(new) => member_changes(old, new),
            None => (Vec::new(), old.member_names().collect()),
        };
        let record = match new {
            Some(new) => encode(new)?,
            None => String::new(),
        };
        let mut invocation = self.replace.prepare_invoke();
        invocation.key(self.redis.key("group", &old.id));
        for user in added.iter().chain(&removed) {
            invocation.key(self.redis.key("member-groups", user));
        }
        invocation
            .arg(old.version)
            .arg(record)
            .arg(&old.id)
            .arg(added.len());
        let swapped: i64 = invocation
            .invoke_async(&mut self.redis.connection())
            .await
            .map_err(unavailable)?;
        Ok(swapped == 1)
    }
}

fn encode(group: &Group) -> Result<String, StoreError> {
    serde_json::to_string(group).map_err(|_| StoreError::Corrupt { what: "group" })
}

impl GroupStore for RedisGroups {
    fn create(&self, group: Group) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut invocation = self.create.prepare_invoke();
            invocation.key(self.redis.key("group", &group.id));
            for member in group.member_names() {
                invocation.key(self.redis.key("member-groups", member));
            }
            invocation.arg(encode(&group)?).arg(&group.id);
            let created: i64 = invocation
                .invoke_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            if created == 1 && group.channel {
                self.index_channel(&group.id, Some(&group.name)).await?;
            }
            Ok(created == 1)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Group>, StoreError>> {
        Box::pin(self.redis.get_json("group", id))
    }

    fn of_member<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut ids: Vec<String> = redis::cmd("SMEMBERS")
                .arg(self.redis.key("member-groups", user))
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            ids.sort();
            Ok(ids)
        })
    }

    fn replace<'a>(
        &'a self,
        old: &'a Group,
        new: &'a Group,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let swapped = self.swap(old, Some(new)).await?;
            if swapped && new.channel {
                self.index_channel(&new.id, Some(&new.name)).await?;
            }
            Ok(swapped)
        })
    }

    fn delete<'a>(&'a self, group: &'a Group) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleted = self.swap(group, None).await?;
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
                .arg(self.redis.bare_key("channels"))
                .query_async(&mut self.redis.connection())
                .await
                .map_err(unavailable)?;
            let needle = query.to_lowercase();
            let found = all
                .into_iter()
                .filter(|(_, name)| name.to_lowercase().contains(&needle))
                .collect();
            Ok(ranked_channels(found, limit))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use samvad_core::group::{Member, Role};

    use super::*;

    fn group(id: &str, members: &[(&str, Role)]) -> Group {
        Group {
            id: id.into(),
            name: format!("name of {id}"),
            created_ms: 1,
            version: 0,
            members: members
                .iter()
                .map(|(u, r)| Member {
                    user: u.to_string(),
                    role: *r,
                    rights: BTreeSet::new(),
                })
                .collect(),
            invites: Vec::new(),
            channel: false,
        }
    }

    #[test]
    fn replace_is_compare_and_set_and_keeps_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let groups = Groups::open(&db).unwrap();
        let v0 = group("g1", &[("ann", Role::Creator), ("bob", Role::Member)]);
        groups.create_now(&v0).unwrap();
        let mut v1 = v0.clone();
        v1.version = 1;
        v1.members.retain(|m| m.user != "bob");
        v1.members.push(Member {
            user: "cat".into(),
            role: Role::Member,
            rights: BTreeSet::new(),
        });
        assert!(groups.replace_now(&v0, &v1).unwrap());
        assert!(!groups.replace_now(&v0, &v1).unwrap(), "v0 is gone");
        assert_eq!(groups.get_now("g1").unwrap(), Some(v1.clone()));
        assert!(groups.of_member_now("bob").unwrap().is_empty());
        assert_eq!(groups.of_member_now("cat").unwrap(), ["g1"]);
        assert!(
            !groups.delete_now(&v0).unwrap(),
            "deleting needs the current version"
        );
        assert!(groups.delete_now(&v1).unwrap());
        assert_eq!(groups.get_now("g1").unwrap(), None);
        assert!(groups.of_member_now("ann").unwrap().is_empty());
    }

    #[test]
    fn channels_are_listed_by_name_and_follow_renames_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let groups = Groups::open(&db).unwrap();
        let mut news = group("c1", &[("ann", Role::Creator)]);
        news.channel = true;
        news.name = "World News".into();
        let mut sport = group("c2", &[("ann", Role::Creator)]);
        sport.channel = true;
        sport.name = "sport".into();
        let plain = group("g1", &[("ann", Role::Creator)]);
        for g in [&news, &sport, &plain] {
            groups.create_now(g).unwrap();
        }
        let names = |q: &str| -> Vec<String> {
            groups
                .channels_now(q, 10)
                .unwrap()
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        assert_eq!(names(""), ["sport", "World News"], "groups are not listed");
        assert_eq!(names("NEWS"), ["World News"]);
        assert_eq!(groups.channels_now("", 1).unwrap().len(), 1);
        let mut renamed = news.clone();
        renamed.version = 1;
        renamed.name = "Local News".into();
        assert!(groups.replace_now(&news, &renamed).unwrap());
        assert_eq!(names("news"), ["Local News"]);
        assert!(groups.delete_now(&renamed).unwrap());
        assert_eq!(names(""), ["sport"]);
    }

    #[test]
    fn create_get_and_list_by_member() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let groups = Groups::open(&db).unwrap();
        let g1 = group("g1", &[("ann", Role::Creator), ("bob", Role::Member)]);
        let g2 = group("g2", &[("bob", Role::Creator)]);
        assert!(groups.create_now(&g1).unwrap());
        assert!(groups.create_now(&g2).unwrap());
        assert!(!groups.create_now(&g2).unwrap(), "ids are unique");
        assert_eq!(groups.get_now("g1").unwrap(), Some(g1.clone()));
        assert_eq!(groups.get_now("nope").unwrap(), None);
        assert_eq!(groups.of_member_now("bob").unwrap(), ["g1", "g2"]);
        assert_eq!(groups.of_member_now("ann").unwrap(), ["g1"]);
        // "an" is a prefix of "ann" but not a member of anything.
        assert!(groups.of_member_now("an").unwrap().is_empty());
        assert!(g1.is_member("bob") && !g1.is_member("carl"));
    }
}
