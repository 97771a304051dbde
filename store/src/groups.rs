//! Groups: a named conversation with members and roles. The record is the
//! unit of change (one key per group), with an index from each member to
//! their groups so that "my groups" is one prefix scan.
//!
//! The record and the rules of change live in samvad-core
//! ([`samvad_core::group`], [`samvad_core::group_rules`]); this module stores
//! versions: a write replaces version `n` with `n + 1` or fails, so two
//! concurrent changes cannot both win.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::Mutex;
use samvad_core::group::{member_changes, ranked_channels, Group};

use crate::StoreError;

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
    pub fn create(&self, group: &Group) -> Result<bool, StoreError> {
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
    pub fn replace(&self, old: &Group, new: &Group) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        match self.get(&old.id)? {
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
    pub fn delete(&self, group: &Group) -> Result<bool, StoreError> {
        let _guard = self.create_lock.lock();
        match self.get(&group.id)? {
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

    pub fn get(&self, id: &str) -> Result<Option<Group>, StoreError> {
        self.groups
            .get(id)?
            .map(|v| serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt { what: "group" }))
            .transpose()
    }

    /// Channels whose name contains `query` (any case; empty: all), as
    /// (id, name), at most `limit`, by name.
    pub fn channels(&self, query: &str, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
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
    pub fn of_member(&self, user: &str) -> Result<Vec<String>, StoreError> {
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
        groups.create(&v0).unwrap();
        let mut v1 = v0.clone();
        v1.version = 1;
        v1.members.retain(|m| m.user != "bob");
        v1.members.push(Member {
            user: "cat".into(),
            role: Role::Member,
            rights: BTreeSet::new(),
        });
        assert!(groups.replace(&v0, &v1).unwrap());
        assert!(!groups.replace(&v0, &v1).unwrap(), "v0 is gone");
        assert_eq!(groups.get("g1").unwrap(), Some(v1.clone()));
        assert!(groups.of_member("bob").unwrap().is_empty());
        assert_eq!(groups.of_member("cat").unwrap(), ["g1"]);
        assert!(
            !groups.delete(&v0).unwrap(),
            "deleting needs the current version"
        );
        assert!(groups.delete(&v1).unwrap());
        assert_eq!(groups.get("g1").unwrap(), None);
        assert!(groups.of_member("ann").unwrap().is_empty());
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
            groups.create(g).unwrap();
        }
        let names = |q: &str| -> Vec<String> {
            groups
                .channels(q, 10)
                .unwrap()
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        assert_eq!(names(""), ["sport", "World News"], "groups are not listed");
        assert_eq!(names("NEWS"), ["World News"]);
        assert_eq!(groups.channels("", 1).unwrap().len(), 1);
        let mut renamed = news.clone();
        renamed.version = 1;
        renamed.name = "Local News".into();
        assert!(groups.replace(&news, &renamed).unwrap());
        assert_eq!(names("news"), ["Local News"]);
        assert!(groups.delete(&renamed).unwrap());
        assert_eq!(names(""), ["sport"]);
    }

    #[test]
    fn create_get_and_list_by_member() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let groups = Groups::open(&db).unwrap();
        let g1 = group("g1", &[("ann", Role::Creator), ("bob", Role::Member)]);
        let g2 = group("g2", &[("bob", Role::Creator)]);
        assert!(groups.create(&g1).unwrap());
        assert!(groups.create(&g2).unwrap());
        assert!(!groups.create(&g2).unwrap(), "ids are unique");
        assert_eq!(groups.get("g1").unwrap(), Some(g1.clone()));
        assert_eq!(groups.get("nope").unwrap(), None);
        assert_eq!(groups.of_member("bob").unwrap(), ["g1", "g2"]);
        assert_eq!(groups.of_member("ann").unwrap(), ["g1"]);
        // "an" is a prefix of "ann" but not a member of anything.
        assert!(groups.of_member("an").unwrap().is_empty());
        assert!(g1.is_member("bob") && !g1.is_member("carl"));
    }
}
