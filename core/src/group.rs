//! A group as it is stored: a named conversation with members, their
//! roles and rights, pending invites, and a version every change bumps.
//! What may change it, and how, is [`crate::group_rules`]; who may post in
//! it is here and in [`crate::admission`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::group_rules::Right;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Creator,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub user: String,
    pub role: Role,
    /// What an admin may do (the creator holds every right).
    #[serde(default)]
    pub rights: BTreeSet<Right>,
}

/// A pending invitation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invite {
    pub user: String,
    pub by: String,
    pub ts_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    /// Bumped by every change; a write must name the version it replaces.
    #[serde(default)]
    pub version: u64,
    pub members: Vec<Member>,
    #[serde(default)]
    pub invites: Vec<Invite>,
    /// A channel: anyone may subscribe (join without an invite), only
    /// admins and the creator post, subscribers read.
    #[serde(default)]
    pub channel: bool,
}

/// Who joins and who leaves the member index when `old` becomes `new`.
pub fn member_changes<'a>(old: &'a Group, new: &'a Group) -> (Vec<&'a str>, Vec<&'a str>) {
    let added = new.member_names().filter(|u| !old.is_member(u)).collect();
    let removed = old.member_names().filter(|u| !new.is_member(u)).collect();
    (added, removed)
}

impl Group {
    pub fn is_member(&self, user: &str) -> bool {
        self.members.iter().any(|m| m.user == user)
    }

    /// Whether `user` may post: any member of a group; in a channel, its
    /// admins and creator.
    pub fn may_post(&self, user: &str) -> bool {
        self.members
            .iter()
            .any(|m| m.user == user && (!self.channel || m.role >= Role::Admin))
    }

    /// Every member's name, in the order they were added.
    pub fn member_names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.user.as_str())
    }
}

/// A channel listing in the order people read it: by name, then id; the
/// first `limit`.
pub fn ranked_channels(mut found: Vec<(String, String)>, limit: usize) -> Vec<(String, String)> {
    found.sort_by(|a, b| {
        a.1.to_lowercase()
            .cmp(&b.1.to_lowercase())
            .then(a.0.cmp(&b.0))
    });
    found.truncate(limit);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Creator > Role::Admin && Role::Admin > Role::Member);
    }

    #[test]
    fn channels_rank_by_name_then_id_whatever_the_case() {
        let found = vec![
            ("c3".to_string(), "sport".to_string()),
            ("c1".to_string(), "World News".to_string()),
            ("c2".to_string(), "Sport".to_string()),
        ];
        let ranked = ranked_channels(found, 2);
        assert_eq!(
            ranked,
            [
                ("c2".to_string(), "Sport".to_string()),
                ("c3".to_string(), "sport".to_string())
            ]
        );
    }
}
