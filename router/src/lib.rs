//! Routing: which inboxes an accepted envelope goes to.
//!
//! [`route`] is a pure function from an envelope (and, for a group
//! message, the group) to `deliver` records; the [`RouterRole`] loop feeds
//! it from the `inbound` partitions Kafka assigns it, looking groups up in
//! the directory, and commits each batch's `deliver` records in one
//! transaction with the `inbound` offsets they came from: every accepted
//! envelope is routed once, whoever routes it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use samvad_bus::{
    by_partition, Bus, BusError, Change, Outgoing, Processor, Record, Topics, Uncommitted,
};
use samvad_core::names::history_owner;
use samvad_proto::bus::{deliver_record, DeliverRecord};
use samvad_proto::v1::{Envelope, HeadType};
use samvad_store::directory::Directory;
use samvad_store::groups::Group;

/// Why an envelope cannot be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("envelope has no head")]
    NoHead,
    #[error("conversation type {0:?} is not routable")]
    Unsupported(HeadType),
    #[error("envelope has no recipient")]
    NoRecipient,
    #[error("no group {0:?}")]
    UnknownGroup(String),
    #[error("{sender:?} may not post to group {group:?}")]
    NotMember { sender: String, group: String },
    #[error("{sender:?} deletes {message:?} by {author:?}: in a chat only the author may")]
    NotAuthor {
        sender: String,
        message: String,
        author: String,
    },
}

/// The `deliver` records an accepted envelope turns into: one per recipient
/// inbox, and one for the conversation's history (the inbox of
/// `#<chatid>`). `group` is the group a group message is addressed to, as
/// the directory has it (`None` if there is no such group).
pub fn route(env: &Envelope, group: Option<&Group>) -> Result<Vec<DeliverRecord>, RouteError> {
    Ok(owners(env, group)?
        .into_iter()
        .map(|user| DeliverRecord {
            user,
            kind: Some(deliver_record::Kind::Message(env.clone())),
        })
        .collect())
}

/// The inboxes [`route`] delivers to, in the same order: the recipients,
/// then the conversation's history.
pub fn owners(env: &Envelope, group: Option<&Group>) -> Result<Vec<String>, RouteError> {
    let mut out = recipients(env, group)?;
    let chatid = env.head.as_ref().map_or("", |h| h.chatid.as_str());
    if !chatid.is_empty() {
        out.push(history_owner(chatid));
    }
    Ok(out)
}

fn recipients(env: &Envelope, group: Option<&Group>) -> Result<Vec<String>, RouteError> {
    let head = env.head.as_ref().ok_or(RouteError::NoHead)?;
    let deliver = |user: &str| user.to_string();
    match head.r#type() {
        HeadType::Chat | HeadType::Unspecified => {
            if head.to.is_empty() {
                return Err(RouteError::NoRecipient);
            }
            // In a chat only the author deletes (the store checks that the
            // message really is theirs).
            if head.action() == samvad_proto::v1::Action::Delete && env.ref_from != head.from {
                return Err(RouteError::NotAuthor {
                    sender: head.from.clone(),
                    message: env.ref_id.clone(),
                    author: env.ref_from.clone(),
                });
            }
            Ok(vec![deliver(&head.to)])
        }
        // Every member but the sender; the sender must be a member now,
        // whatever the edge saw when it accepted the message. A system
        // event (no sender: only an edge writes those, clients' envelopes
        // always carry theirs) goes to every member.
        // A channel's posts go the same way; only its admins may post.
        HeadType::Group | HeadType::Channel => {
            let group = group
                .filter(|g| g.id == head.to)
                .ok_or_else(|| RouteError::UnknownGroup(head.to.clone()))?;
            if head.from.is_empty() {
                return Ok(group.member_names().map(deliver).collect());
            }
            let deleting = head.action() == samvad_proto::v1::Action::Delete;
            if !group.may_post(&head.from)
                || (deleting && !group.may_delete(&head.from, &env.ref_from))
            {
                return Err(RouteError::NotMember {
                    sender: head.from.clone(),
                    group: group.id.clone(),
                });
            }
            // A delete reaches the deleter's own inbox too: it may hold the
            // message deleted (someone else's, deleted by right).
            Ok(group
                .member_names()
                .filter(|m| deleting || *m != head.from)
                .map(deliver)
                .collect())
        }
        other => Err(RouteError::Unsupported(other)),
    }
}

/// Records one batch takes from the bus.
const BATCH: usize = 512;

/// Pause between two asks of a directory that did not answer.
const DIRECTORY_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

pub struct RouterRole {
    pub bus: Arc<dyn Bus>,
    pub topics: Topics,
    /// Where group memberships are looked up.
    pub directory: Arc<dyn Directory>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

impl RouterRole {
    /// Runs as a member of `inbound`'s router group until the bus fails or
    /// another incarnation fences this one. A router keeps no state: where
    /// it resumes a partition is the group's committed offset, moved only
    /// by the transaction that produced the partition's deliveries.
    pub async fn run(self, mut processor: Box<dyn Processor>) -> Result<(), RouterError> {
        let mut owed = Uncommitted::<Outgoing>::default();
        loop {
            let records = owed.poll(&mut *processor, BATCH).await?;
            for change in processor.changes() {
                if let Change::Revoked { partition } = change {
                    owed.revoke(partition);
                }
            }
            for (partition, batch) in by_partition(&records) {
                let next = batch.last().map_or(0, |r| r.offset + 1);
                let out = self.route_batch(&batch).await?;
                owed.add(partition, out, next);
            }
            if owed.is_empty() {
                continue;
            }
            let owing = owed.to_commit();
            let consumed = owing.offsets;
            let outputs = owing.outputs.into_iter().map(|(_, o)| o).collect();
            match processor.commit(outputs, consumed).await {
                Ok(()) => owed.clear(),
                // Another incarnation or member owns the work now.
                Err(e @ BusError::Fenced(_)) => return Err(e.into()),
                // Kept: offered again with the next commit.
                Err(e) => tracing::warn!(error = %e, "routing batch not committed; again"),
            }
        }
    }

    /// The group `id` as the directory has it. A directory that does not
    /// answer (Redis restarting) holds the batch: routing it without the
    /// membership would refuse members' messages. Every failed attempt is
    /// logged; the partition waits, nothing is lost.
    async fn group(&self, id: &str) -> Option<Group> {
        let mut attempt = 0u32;
        loop {
            match self.directory.group(id).await {
                Ok(found) => return found,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, group = id, attempt,
                        "directory unavailable; the routing batch waits");
                    tokio::time::sleep(DIRECTORY_RETRY).await;
                }
            }
        }
    }

    /// Routes one partition's batch: its deliveries and dead letters.
    /// Groups are looked up once per batch: a batch sees one membership.
    async fn route_batch(&self, records: &[&Record]) -> Result<Vec<Outgoing>, RouterError> {
        let deliver: Arc<str> = self.topics.deliver().into();
        let mut out = Vec::with_capacity(records.len());
        let mut groups: HashMap<String, Option<Group>> = HashMap::new();
        for r in records {
            let env = match Envelope::decode(r.payload.clone()) {
                Ok(env) => env,
                Err(e) => {
                    out.push(r.dead_letter(&self.topics, &e));
                    continue;
                }
            };
            let group = match env.head.as_ref() {
                Some(head) if matches!(head.r#type(), HeadType::Group | HeadType::Channel) => {
                    if !groups.contains_key(&head.to) {
                        let found = self.group(&head.to).await;
                        groups.insert(head.to.clone(), found);
                    }
                    groups[&head.to].as_ref()
                }
                _ => None,
            };
            match route(&env, group) {
                Ok(deliveries) => out.extend(deliveries.into_iter().map(|d| {
                    let key = d.user.clone();
                    Outgoing::new(deliver.clone(), key, Bytes::from(d.encode_to_vec()))
                })),
                Err(e) => out.push(r.dead_letter(&self.topics, &e)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_core::names::chat_id;
    use samvad_proto::v1::Head;

    fn env(kind: HeadType, to: &str) -> Envelope {
        Envelope {
            id: "m1".into(),
            head: Some(Head {
                r#type: kind as i32,
                to: to.into(),
                from: "alice".into(),
                chatid: if matches!(kind, HeadType::Group | HeadType::Channel) {
                    to.into()
                } else {
                    chat_id("alice", to)
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn group(id: &str, members: &[&str]) -> Group {
        Group {
            id: id.into(),
            name: "friends".into(),
            created_ms: 0,
            members: members
                .iter()
                .map(|m| samvad_store::groups::Member {
                    user: m.to_string(),
                    role: samvad_store::groups::Role::Member,
                    rights: Default::default(),
                })
                .collect(),
            version: 0,
            invites: Vec::new(),
            channel: false,
        }
    }

    #[test]
    fn chat_goes_to_its_recipient() {
        let out = route(&env(HeadType::Chat, "bob"), None).unwrap();
        let users: Vec<&str> = out.iter().map(|d| d.user.as_str()).collect();
        assert_eq!(
            users,
            ["bob", "#alice:bob"],
            "the recipient, then the history"
        );
    }

    #[test]
    fn a_group_message_goes_to_every_member_but_the_sender() {
        let g = group("g1", &["carol", "alice", "bob"]);
        let out = route(&env(HeadType::Group, "g1"), Some(&g)).unwrap();
        let users: Vec<&str> = out.iter().map(|d| d.user.as_str()).collect();
        assert_eq!(users, ["carol", "bob", "#g1"]);
    }

    #[test]
    fn only_admins_post_in_a_channel() {
        let mut g = group("c1", &["alice", "bob"]);
        g.channel = true;
        assert!(matches!(
            route(&env(HeadType::Channel, "c1"), Some(&g)),
            Err(RouteError::NotMember { .. })
        ));
        g.members[0].role = samvad_store::groups::Role::Admin;
        let out = route(&env(HeadType::Channel, "c1"), Some(&g)).unwrap();
        let users: Vec<&str> = out.iter().map(|d| d.user.as_str()).collect();
        assert_eq!(users, ["bob", "#c1"]);
    }

    #[test]
    fn a_system_event_goes_to_every_member() {
        let g = group("g1", &["carol", "bob"]);
        let mut e = env(HeadType::Group, "g1");
        e.head.as_mut().unwrap().from = String::new();
        let users: Vec<String> = route(&e, Some(&g))
            .unwrap()
            .into_iter()
            .map(|d| d.user)
            .collect();
        assert_eq!(users, ["carol", "bob", "#g1"]);
    }

    #[test]
    fn a_non_member_cannot_post_to_a_group() {
        let g = group("g1", &["carol", "bob"]);
        assert_eq!(
            route(&env(HeadType::Group, "g1"), Some(&g)),
            Err(RouteError::NotMember {
                sender: "alice".into(),
                group: "g1".into()
            })
        );
        // The group looked up must be the one addressed.
        assert_eq!(
            route(&env(HeadType::Group, "g2"), Some(&g)),
            Err(RouteError::UnknownGroup("g2".into()))
        );
        assert_eq!(
            route(&env(HeadType::Group, "g2"), None),
            Err(RouteError::UnknownGroup("g2".into()))
        );
    }

    #[test]
    fn unroutable_envelopes_are_errors() {
        assert_eq!(
            route(&env(HeadType::Chat, ""), None),
            Err(RouteError::NoRecipient)
        );
        assert_eq!(route(&Envelope::default(), None), Err(RouteError::NoHead));
        assert_eq!(
            route(&env(HeadType::Bot, "c"), None),
            Err(RouteError::Unsupported(HeadType::Bot))
        );
    }
}
