//! The rules of group membership as a state machine with no I/O: a group
//! is made by [`Group::create`]; then a [`Change`] by an actor either turns
//! it into its next version and says what happened (an [`Event`]), or is
//! refused with a [`GroupError`]; [`Change::Delete`] ends it. Who may see a
//! group at all ([`Group::involves`]) and who is told of an event
//! ([`Group::audience`]) are rules here too. The REST layer reads the
//! group, applies the change and writes it back (or deletes it) only if
//! nobody changed it in between, then tells the audience.
//!
//! Roles: creator > admin > member. The creator holds every right, can be
//! neither removed nor demoted, and alone hands out roles and rights;
//! admins hold the rights they are given; anyone may leave. An invite is a
//! pending entry until its invitee accepts (then a member) or declines
//! (then nothing: a declined invite cannot be accepted).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::group::{Group, Invite, Member, Role};

/// What a role may be given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    AddMembers,
    RemoveMembers,
    DeleteMessages,
    Mute,
}

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most members plus pending invites a group holds.
pub const MAX_MEMBERS: usize = 10_000;
/// Most members named at a group's creation, besides its creator.
pub const MAX_INITIAL_MEMBERS: usize = 1000;

/// A change to a group, asked by an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Rename {
        name: String,
    },
    Invite {
        user: String,
    },
    Accept,
    Decline,
    /// Join a channel (no invite needed).
    Subscribe,
    /// Removing oneself is leaving.
    Remove {
        user: String,
    },
    SetRole {
        user: String,
        role: Role,
        rights: BTreeSet<Right>,
    },
    /// The creator ends the group; its members are told, then it is gone.
    Delete,
}

/// Who hears of an event: the members (as a system message in the group,
/// in order with its messages), and users told straight in their inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    pub members: bool,
    pub direct: Vec<String>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Created {
        by: String,
        name: String,
    },
    Renamed {
        by: String,
        name: String,
    },
    Invited {
        by: String,
        user: String,
        /// The group's name: the invitee is not a member yet and may not
        /// read the group, yet has to see what it is invited to.
        #[serde(default)]
        name: String,
    },
    Joined {
        user: String,
    },
    Subscribed {
        user: String,
    },
    Declined {
        user: String,
    },
    Left {
        user: String,
        /// Who became creator, when the creator left.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        new_creator: Option<String>,
    },
    Removed {
        by: String,
        user: String,
    },
    RoleChanged {
        by: String,
        user: String,
        role: Role,
        rights: BTreeSet<Right>,
    },
    Deleted {
        by: String,
    },
}

impl Event {
    /// Users who must hear of it besides the members after the change: the
    /// one who left or was removed, the invitee, the one who declined.
    pub fn also_tell(&self) -> Option<&str> {
        match self {
            Event::Invited { user, .. }
            | Event::Subscribed { user }
            | Event::Declined { user }
            | Event::Left { user, .. }
            | Event::Removed { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// Why a change is refused. Each has a stable code for the REST error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("not a member of this group")]
    NotMember,
    #[error("missing the right {0:?}")]
    MissingRight(Right),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no pending invite")]
    NotInvited,
    #[error("already a member")]
    AlreadyMember,
    #[error("already invited")]
    AlreadyInvited,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("at most {MAX_INITIAL_MEMBERS} members at creation")]
    TooManyMembers,
}

impl GroupError {
    pub fn code(&self) -> &'static str {
        match self {
            GroupError::NotMember => "not_member",
            GroupError::MissingRight(_) => "missing_right",
            GroupError::Forbidden(_) => "forbidden",
            GroupError::NotInvited => "not_invited",
            GroupError::AlreadyMember => "already_member",
            GroupError::AlreadyInvited => "already_invited",
            GroupError::Invalid(_) => "invalid",
            GroupError::TooManyMembers => "too_many_members",
        }
    }
}

impl Member {
    /// Whether this member holds `right` (the creator holds all).
    pub fn has(&self, right: Right) -> bool {
        self.role == Role::Creator || self.rights.contains(&right)
    }
}

/// A valid group name: trimmed, 1 to [`MAX_NAME_CHARS`] characters.
pub fn group_name(name: &str) -> Result<String, GroupError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(GroupError::Invalid("a group name has 1 to 100 characters"));
    }
    Ok(name.to_string())
}

impl Group {
    /// A new group `id`, version 0, of `creator` and `members` (each once,
    /// the creator first), and the event that announces it. Whether the
    /// members exist is the caller's to check.
    pub fn create(
        id: String,
        creator: &str,
        name: &str,
        members: &[String],
        channel: bool,
        now_ms: i64,
    ) -> Result<(Group, Event), GroupError> {
        let name = group_name(name)?;
        if members.len() > MAX_INITIAL_MEMBERS {
            return Err(GroupError::TooManyMembers);
        }
        let mut group = Group {
            id,
            name: name.clone(),
            created_ms: now_ms,
            version: 0,
            members: vec![Member {
                user: creator.into(),
                role: Role::Creator,
                rights: BTreeSet::new(),
            }],
            invites: Vec::new(),
            channel,
        };
        let mut seen = BTreeSet::from([creator]);
        for user in members {
            if seen.insert(user.as_str()) {
                group.members.push(Member {
                    user: user.clone(),
                    role: Role::Member,
                    rights: BTreeSet::new(),
                });
            }
        }
        let event = Event::Created {
            by: creator.into(),
            name,
        };
        Ok((group, event))
    }

    /// Whether `user` may see this group and ask `change` of it: its
    /// members; an invitee answering its invite; anyone subscribing to a
    /// channel. Anyone else learns nothing, not even that it exists.
    pub fn involves(&self, user: &str, change: &Change) -> bool {
        let answering = matches!(change, Change::Accept | Change::Decline);
        let subscribing = matches!(change, Change::Subscribe) && self.channel;
        self.is_member(user) || (answering && self.invited(user)) || subscribing
    }

    /// Who is told of `event`, this being the group after it: the members,
    /// and those who must hear of it but are not members (an invitee,
    /// someone who left or was removed). A channel's subscribers come and
    /// go without telling them all; a deleted group's members are told one
    /// by one (the group is gone).
    pub fn audience(&self, event: &Event) -> Audience {
        if let Event::Deleted { .. } = event {
            return Audience {
                members: false,
                direct: self.member_names().map(str::to_string).collect(),
            };
        }
        let quiet = self.channel && matches!(event, Event::Subscribed { .. } | Event::Left { .. });
        let direct = event
            .also_tell()
            .filter(|u| quiet || !self.is_member(u))
            .map(str::to_string)
            .into_iter()
            .collect();
        Audience {
            members: !quiet,
            direct,
        }
    }
    pub fn member(&self, user: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.user == user)
    }

    fn member_mut(&mut self, user: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.user == user)
    }

    /// Whether `deleter` may delete `author`'s message for everyone: their
    /// own, or with the `delete_messages` right over a lower role (an
    /// author who left counts as a member).
    pub fn may_delete(&self, deleter: &str, author: &str) -> bool {
        let Some(d) = self.member(deleter) else {
            return false;
        };
        if deleter == author {
            return true;
        }
        let author_role = self.member(author).map_or(Role::Member, |m| m.role);
        d.has(Right::DeleteMessages) && d.role > author_role
    }

    pub fn invited(&self, user: &str) -> bool {
        self.invites.iter().any(|i| i.user == user)
    }

    fn actor(&self, actor: &str) -> Result<&Member, GroupError> {
        self.member(actor).ok_or(GroupError::NotMember)
    }

    fn require(&self, actor: &str, right: Right) -> Result<&Member, GroupError> {
        let member = self.actor(actor)?;
        if !member.has(right) {
            return Err(GroupError::MissingRight(right));
        }
        Ok(member)
    }

    fn take_invite(&mut self, user: &str) -> Result<Invite, GroupError> {
        let at = self
            .invites
            .iter()
            .position(|i| i.user == user)
            .ok_or(GroupError::NotInvited)?;
        Ok(self.invites.remove(at))
    }

    /// Applies `change` by `actor`, bumping the version; on a refusal the
    /// group is left as it was.
    pub fn apply(&mut self, actor: &str, change: Change, now_ms: i64) -> Result<Event, GroupError> {
        let mut next = self.clone();
        let event = next.apply_inner(actor, change, now_ms)?;
        next.version += 1;
        *self = next;
        Ok(event)
    }

    fn apply_inner(
        &mut self,
        actor: &str,
        change: Change,
        now_ms: i64,
    ) -> Result<Event, GroupError> {
        match change {
            Change::Rename { name } => {
                if self.actor(actor)?.role < Role::Admin {
                    return Err(GroupError::Forbidden("only admins rename a group"));
                }
                self.name = group_name(&name)?;
                Ok(Event::Renamed {
                    by: actor.into(),
                    name: self.name.clone(),
                })
            }
            Change::Invite { user } => {
                self.require(actor, Right::AddMembers)?;
                if self.member(&user).is_some() {
                    return Err(GroupError::AlreadyMember);
                }
                if self.invited(&user) {
                    return Err(GroupError::AlreadyInvited);
                }
                if self.members.len() + self.invites.len() >= MAX_MEMBERS {
                    return Err(GroupError::Invalid("the group is full"));
                }
                self.invites.push(Invite {
                    user: user.clone(),
                    by: actor.into(),
                    ts_ms: now_ms,
                });
                Ok(Event::Invited {
                    by: actor.into(),
                    user,
                    name: self.name.clone(),
                })
            }
            Change::Accept => {
                self.take_invite(actor)?;
                self.members.push(Member {
                    user: actor.into(),
                    role: Role::Member,
                    rights: BTreeSet::new(),
                });
                Ok(Event::Joined { user: actor.into() })
            }
            Change::Decline => {
                self.take_invite(actor)?;
                Ok(Event::Declined { user: actor.into() })
            }
            Change::Subscribe => {
                if !self.channel {
                    return Err(GroupError::Forbidden(
                        "only channels take subscriptions; a group needs an invite",
                    ));
                }
                if self.member(actor).is_some() {
                    return Err(GroupError::AlreadyMember);
                }
                if self.members.len() + self.invites.len() >= MAX_MEMBERS {
                    return Err(GroupError::Invalid("the channel is full"));
                }
                self.members.push(Member {
                    user: actor.into(),
                    role: Role::Member,
                    rights: BTreeSet::new(),
                });
                Ok(Event::Subscribed { user: actor.into() })
            }
            Change::Remove { user } if user == actor => {
                let me = self.actor(actor)?.clone();
                self.members.retain(|m| m.user != actor);
                // A group keeps a creator while it has members: the first
                // admin, else the longest-standing member, takes over.
                let mut new_creator = None;
                if me.role == Role::Creator {
                    let heir = self.members.iter().position(|m| m.role == Role::Admin).or(
                        if self.members.is_empty() {
                            None
                        } else {
                            Some(0)
                        },
                    );
                    if let Some(heir) = heir {
                        let heir = &mut self.members[heir];
                        heir.role = Role::Creator;
                        heir.rights.clear();
                        new_creator = Some(heir.user.clone());
                    }
                }
                Ok(Event::Left {
                    user: actor.into(),
                    new_creator,
                })
            }
            Change::Remove { user } => {
                let remover = self.require(actor, Right::RemoveMembers)?.role;
                let target = self.member(&user).ok_or(GroupError::NotMember)?.role;
                if target == Role::Creator {
                    return Err(GroupError::Forbidden("nobody removes the creator"));
                }
                if remover <= target {
                    return Err(GroupError::Forbidden("only a higher role removes a member"));
                }
                self.members.retain(|m| m.user != user);
                Ok(Event::Removed {
                    by: actor.into(),
                    user,
                })
            }
            Change::SetRole { user, role, rights } => {
                if self.actor(actor)?.role != Role::Creator {
                    return Err(GroupError::Forbidden("only the creator hands out roles"));
                }
                if role == Role::Creator {
                    return Err(GroupError::Invalid("the creator role is not handed out"));
                }
                if role == Role::Member && !rights.is_empty() {
                    return Err(GroupError::Invalid("rights go with the admin role"));
                }
                let target = self.member_mut(&user).ok_or(GroupError::NotMember)?;
                if target.role == Role::Creator {
                    return Err(GroupError::Forbidden("nobody demotes the creator"));
                }
                target.role = role;
                target.rights = rights.clone();
                Ok(Event::RoleChanged {
                    by: actor.into(),
                    user,
                    role,
                    rights,
                })
            }
            Change::Delete => {
                if self.actor(actor)?.role != Role::Creator {
                    return Err(GroupError::Forbidden("only the creator deletes a group"));
                }
                Ok(Event::Deleted { by: actor.into() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Group {
        let mut g = Group {
            id: "g1".into(),
            name: "crew".into(),
            created_ms: 0,
            version: 0,
            members: Vec::new(),
            invites: Vec::new(),
            channel: false,
        };
        for (user, role) in [
            ("ann", Role::Creator),
            ("adam", Role::Admin),
            ("mia", Role::Member),
            ("max", Role::Member),
        ] {
            g.members.push(Member {
                user: user.into(),
                role,
                rights: BTreeSet::new(),
            });
        }
        g
    }

    fn rights(r: &[Right]) -> BTreeSet<Right> {
        r.iter().copied().collect()
    }

    fn names(g: &Group) -> Vec<&str> {
        g.member_names().collect()
    }

    #[test]
    fn an_invite_becomes_a_member_only_when_accepted() {
        let mut g = group();
        let ev = g
            .apply("ann", Change::Invite { user: "zoe".into() }, 5)
            .unwrap();
        assert_eq!(ev.also_tell(), Some("zoe"));
        assert!(!g.is_member("zoe") && g.invited("zoe"));
        assert_eq!(g.version, 1);
        assert_eq!(
            g.apply("ann", Change::Invite { user: "zoe".into() }, 5),
            Err(GroupError::AlreadyInvited)
        );
        assert_eq!(
            g.apply("zoe", Change::Accept, 6).unwrap(),
            Event::Joined { user: "zoe".into() }
        );
        assert!(g.is_member("zoe") && !g.invited("zoe"));
        assert_eq!(g.member("zoe").unwrap().role, Role::Member);
    }

    #[test]
    fn a_declined_invite_adds_nobody_and_cannot_be_accepted() {
        let mut g = group();
        g.apply("ann", Change::Invite { user: "zoe".into() }, 5)
            .unwrap();
        g.apply("zoe", Change::Decline, 6).unwrap();
        assert!(!g.is_member("zoe") && !g.invited("zoe"));
        let before = g.clone();
        assert_eq!(
            g.apply("zoe", Change::Accept, 7),
            Err(GroupError::NotInvited)
        );
        assert_eq!(g, before, "a refusal changes nothing");
        // Accepting someone else's invite is not possible either.
        g.apply("ann", Change::Invite { user: "zoe".into() }, 8)
            .unwrap();
        assert_eq!(
            g.apply("eve", Change::Accept, 9),
            Err(GroupError::NotInvited)
        );
    }

    #[test]
    fn plain_members_cannot_add_remove_or_change_rights() {
        let mut g = group();
        assert_eq!(
            g.apply("mia", Change::Invite { user: "zoe".into() }, 1),
            Err(GroupError::MissingRight(Right::AddMembers))
        );
        assert_eq!(
            g.apply("mia", Change::Remove { user: "max".into() }, 1),
            Err(GroupError::MissingRight(Right::RemoveMembers))
        );
        assert!(matches!(
            g.apply(
                "mia",
                Change::SetRole {
                    user: "mia".into(),
                    role: Role::Admin,
                    rights: rights(&[Right::AddMembers])
                },
                1
            ),
            Err(GroupError::Forbidden(_))
        ));
        assert!(matches!(
            g.apply(
                "mia",
                Change::Rename {
                    name: "mine".into()
                },
                1
            ),
            Err(GroupError::Forbidden(_))
        ));
        // Outsiders get "not a member" for everything.
        assert_eq!(
            g.apply("eve", Change::Invite { user: "zoe".into() }, 1),
            Err(GroupError::NotMember)
        );
        assert_eq!(g.version, 0);
    }

    #[test]
    fn admins_act_by_the_rights_they_were_given_and_only_downwards() {
        let mut g = group();
        // An admin without rights cannot remove.
        assert_eq!(
            g.apply("adam", Change::Remove { user: "mia".into() }, 1),
            Err(GroupError::MissingRight(Right::RemoveMembers))
        );
        g.apply(
            "ann",
            Change::SetRole {
                user: "adam".into(),
                role: Role::Admin,
                rights: rights(&[Right::RemoveMembers]),
            },
            2,
        )
        .unwrap();
        g.apply("adam", Change::Remove { user: "mia".into() }, 3)
            .unwrap();
        assert!(!g.is_member("mia"));
        // Not the creator, whatever the rights.
        assert!(matches!(
            g.apply("adam", Change::Remove { user: "ann".into() }, 4),
            Err(GroupError::Forbidden(_))
        ));
        // Not another admin either.
        g.apply(
            "ann",
            Change::SetRole {
                user: "max".into(),
                role: Role::Admin,
                rights: BTreeSet::new(),
            },
            5,
        )
        .unwrap();
        assert!(matches!(
            g.apply("adam", Change::Remove { user: "max".into() }, 6),
            Err(GroupError::Forbidden(_))
        ));
    }

    #[test]
    fn the_creator_is_permanent_but_may_leave() {
        let mut g = group();
        assert!(matches!(
            g.apply(
                "ann",
                Change::SetRole {
                    user: "ann".into(),
                    role: Role::Member,
                    rights: BTreeSet::new()
                },
                1
            ),
            Err(GroupError::Forbidden(_))
        ));
        assert!(matches!(
            g.apply(
                "ann",
                Change::SetRole {
                    user: "mia".into(),
                    role: Role::Creator,
                    rights: BTreeSet::new()
                },
                1
            ),
            Err(GroupError::Invalid(_))
        ));
        // Anyone may leave; the creator hands over to the first admin.
        assert_eq!(
            g.apply("ann", Change::Remove { user: "ann".into() }, 2)
                .unwrap(),
            Event::Left {
                user: "ann".into(),
                new_creator: Some("adam".into())
            }
        );
        assert_eq!(g.member("adam").unwrap().role, Role::Creator);
        g.apply("max", Change::Remove { user: "max".into() }, 3)
            .unwrap();
        assert_eq!(names(&g), ["adam", "mia"]);
    }

    #[test]
    fn anyone_subscribes_to_a_channel_where_only_admins_post() {
        let mut g = group();
        assert!(matches!(
            g.apply("zoe", Change::Subscribe, 1),
            Err(GroupError::Forbidden(_))
        ));
        g.channel = true;
        assert_eq!(
            g.apply("zoe", Change::Subscribe, 1).unwrap(),
            Event::Subscribed { user: "zoe".into() }
        );
        assert_eq!(
            g.apply("zoe", Change::Subscribe, 2),
            Err(GroupError::AlreadyMember)
        );
        assert!(g.may_post("ann") && g.may_post("adam"));
        assert!(!g.may_post("zoe") && !g.may_post("mia") && !g.may_post("eve"));
        // Unsubscribing is leaving.
        g.apply("zoe", Change::Remove { user: "zoe".into() }, 3)
            .unwrap();
        assert!(!g.is_member("zoe"));
    }

    #[test]
    fn deleting_others_messages_needs_the_right_over_a_lower_role() {
        let mut g = group();
        assert!(g.may_delete("mia", "mia"), "one's own");
        assert!(!g.may_delete("mia", "max"));
        assert!(!g.may_delete("adam", "mia"), "an admin without the right");
        assert!(g.may_delete("ann", "adam"), "the creator holds every right");
        assert!(!g.may_delete("eve", "eve"), "outsiders delete nothing");
        g.apply(
            "ann",
            Change::SetRole {
                user: "adam".into(),
                role: Role::Admin,
                rights: rights(&[Right::DeleteMessages]),
            },
            1,
        )
        .unwrap();
        assert!(g.may_delete("adam", "mia"));
        assert!(g.may_delete("adam", "gone"), "an author who left");
        assert!(!g.may_delete("adam", "ann"), "never the creator's");
    }

    #[test]
    fn renames_are_checked() {
        let mut g = group();
        g.apply(
            "adam",
            Change::Rename {
                name: "  new  ".into(),
            },
            1,
        )
        .unwrap();
        assert_eq!(g.name, "new");
        assert!(matches!(
            g.apply("ann", Change::Rename { name: " ".into() }, 2),
            Err(GroupError::Invalid(_))
        ));
    }

    #[test]
    fn events_serialise_with_their_kind() {
        let ev = Event::Removed {
            by: "ann".into(),
            user: "mia".into(),
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"event":"removed","by":"ann","user":"mia"}"#
        );
    }

    #[test]
    fn a_new_group_has_its_creator_first_and_each_member_once() {
        let members = vec!["bob".to_string(), "ann".into(), "bob".into(), "cy".into()];
        let (g, event) = Group::create("g9".into(), "ann", "  crew ", &members, false, 5).unwrap();
        let names: Vec<&str> = g.member_names().collect();
        assert_eq!(names, ["ann", "bob", "cy"]);
        assert_eq!(g.member("ann").unwrap().role, Role::Creator);
        assert_eq!((g.name.as_str(), g.version, g.created_ms), ("crew", 0, 5));
        assert_eq!(
            event,
            Event::Created {
                by: "ann".into(),
                name: "crew".into()
            }
        );
        assert_eq!(
            Group::create("g".into(), "ann", " ", &[], false, 0).unwrap_err(),
            GroupError::Invalid("a group name has 1 to 100 characters")
        );
        let crowd: Vec<String> = (0..=MAX_INITIAL_MEMBERS).map(|i| format!("u{i}")).collect();
        assert_eq!(
            Group::create("g".into(), "ann", "big", &crowd, false, 0).unwrap_err(),
            GroupError::TooManyMembers
        );
    }

    #[test]
    fn only_the_creator_deletes_and_every_member_is_told_one_by_one() {
        let mut g = group();
        assert_eq!(
            g.clone().apply("adam", Change::Delete, 1),
            Err(GroupError::Forbidden("only the creator deletes a group"))
        );
        assert_eq!(
            g.clone().apply("zed", Change::Delete, 1),
            Err(GroupError::NotMember)
        );
        let event = g.apply("ann", Change::Delete, 1).unwrap();
        assert_eq!(event, Event::Deleted { by: "ann".into() });
        let audience = g.audience(&event);
        assert!(!audience.members);
        let everyone: Vec<String> = g.member_names().map(str::to_string).collect();
        assert_eq!(audience.direct, everyone);
    }

    #[test]
    fn outsiders_see_nothing_but_invitees_may_answer_and_anyone_may_subscribe_to_a_channel() {
        let mut g = group();
        g.apply("ann", Change::Invite { user: "ivy".into() }, 1)
            .unwrap();
        assert!(g.involves("adam", &Change::Rename { name: "x".into() }));
        assert!(!g.involves("zed", &Change::Rename { name: "x".into() }));
        assert!(g.involves("ivy", &Change::Accept));
        assert!(!g.involves("ivy", &Change::Rename { name: "x".into() }));
        assert!(
            !g.involves("zed", &Change::Subscribe),
            "a group is no channel"
        );
        g.channel = true;
        assert!(g.involves("zed", &Change::Subscribe));
    }

    #[test]
    fn a_channel_is_quiet_about_subscribers_and_a_group_tells_the_one_who_left() {
        let mut g = group();
        let left = g
            .apply(
                "adam",
                Change::Remove {
                    user: "adam".into(),
                },
                1,
            )
            .unwrap();
        assert_eq!(
            g.audience(&left),
            Audience {
                members: true,
                direct: vec!["adam".into()]
            }
        );
        g.channel = true;
        let subscribed = g.apply("zed", Change::Subscribe, 2).unwrap();
        assert_eq!(
            g.audience(&subscribed),
            Audience {
                members: false,
                direct: vec!["zed".into()]
            }
        );
        let renamed = g
            .apply("ann", Change::Rename { name: "new".into() }, 3)
            .unwrap();
        assert_eq!(
            g.audience(&renamed),
            Audience {
                members: true,
                direct: vec![]
            }
        );
    }
}
