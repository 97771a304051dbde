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
use samvad_core::admission::{admit, Admitted, Refusal};
use samvad_core::group::Group;
use samvad_core::names::history_owner;
use samvad_proto::bus::{deliver_record, DeliverRecord};
use samvad_proto::v1::{Envelope, HeadType};
use samvad_store::groups::GroupStore;

/// The `deliver` records an accepted envelope turns into: one per recipient
/// inbox, and one for the conversation's history (the inbox of
/// `#<chatid>`). `group` is the group a group message is addressed to, as
/// the directory has it (`None` if there is no such group).
pub fn route(env: &Envelope, group: Option<&Group>) -> Result<Vec<DeliverRecord>, Refusal> {
    Ok(owners(env, group)?
        .into_iter()
        .map(|user| DeliverRecord {
            user,
            then: Vec::new(),
            kind: Some(deliver_record::Kind::Message(env.clone())),
        })
        .collect())
}

/// The inboxes [`route`] delivers to, in the same order: the recipients,
/// then the conversation's history.
pub fn owners(env: &Envelope, group: Option<&Group>) -> Result<Vec<String>, Refusal> {
    let mut out = recipients(env, group)?;
    let chatid = env.head.as_ref().map_or("", |h| h.chatid.as_str());
    if !chatid.is_empty() {
        out.push(history_owner(chatid));
    }
    Ok(out)
}

fn recipients(env: &Envelope, group: Option<&Group>) -> Result<Vec<String>, Refusal> {
    let admitted = admit(env, group)?;
    let head = env.head.as_ref().ok_or(Refusal::NoHead)?;
    match admitted {
        Admitted::Chat => Ok(vec![head.to.clone()]),
        // Every member but the sender (a system event, with no sender,
        // reaches them all). A delete reaches the deleter's own inbox too:
        // it may hold the message deleted (someone else's, deleted by
        // right).
        Admitted::Group(group) => {
            let deleting = head.action() == samvad_proto::v1::Action::Delete;
            Ok(group
                .member_names()
                .filter(|m| deleting || *m != head.from)
                .map(str::to_string)
                .collect())
        }
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
    pub groups: Arc<dyn GroupStore>,
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
            match self.groups.get(id).await {
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
                .map(|m| samvad_core::group::Member {
                    user: m.to_string(),
                    role: samvad_core::group::Role::Member,
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
        assert_eq!(
            route(&env(HeadType::Channel, "c1"), Some(&g)),
            Err(Refusal::NotAdmin)
        );
        g.members[0].role = samvad_core::group::Role::Admin;
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
            Err(Refusal::NotMember {
                sender: "alice".into(),
                group: "g1".into()
            })
        );
        // The group looked up must be the one addressed.
        assert_eq!(
            route(&env(HeadType::Group, "g2"), Some(&g)),
            Err(Refusal::UnknownGroup("g2".into()))
        );
        assert_eq!(
            route(&env(HeadType::Group, "g2"), None),
            Err(Refusal::UnknownGroup("g2".into()))
        );
    }

    #[test]
    fn unroutable_envelopes_are_errors() {
        assert_eq!(
            route(&env(HeadType::Chat, ""), None),
            Err(Refusal::NoRecipient)
        );
        assert_eq!(route(&Envelope::default(), None), Err(Refusal::NoHead));
        assert_eq!(
            route(&env(HeadType::Bot, "c"), None),
            Err(Refusal::Unsupported(HeadType::Bot))
        );
    }
}
