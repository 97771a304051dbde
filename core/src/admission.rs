//! Whether an envelope may enter its conversation: one rule, checked by the
//! edge when a session sends (with the group as the directory has it then)
//! and again by routing when it fans out (with the group as it is then: a
//! member removed in between is refused there).
//!
//! A chat needs a recipient, and only its author deletes a message in it.
//! A group or channel message needs the group, a sender who is a member, a
//! conversation type that matches the group's kind, a sender who may post
//! (any member of a group, a channel's admins and creator), and for a
//! delete the right to delete that author's message. A system event (no
//! sender; only an edge writes those, a session's envelopes always carry
//! their user) goes to every member.
//!
//! Whether a chat's recipient exists is the caller's question: it needs
//! the directory.

use samvad_proto::v1::{Action, Envelope, ErrorCode, HeadType};

use crate::group::Group;

/// Why an envelope is refused. [`Refusal::code`] is its one mapping to
/// the session's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("envelope has no head")]
    NoHead,
    #[error("conversation type {0:?} is not routable")]
    Unsupported(HeadType),
    #[error("envelope has no recipient")]
    NoRecipient,
    #[error("in a chat only the author deletes a message ({sender:?} deletes {message:?} by {author:?})")]
    NotAuthor {
        sender: String,
        message: String,
        author: String,
    },
    #[error("no group {0:?}")]
    UnknownGroup(String),
    #[error("{sender:?} is not a member of group {group:?}")]
    NotMember { sender: String, group: String },
    #[error("{group:?} is a {}", if *.channel { "channel" } else { "group" })]
    WrongKind { group: String, channel: bool },
    #[error("only a channel's admins post in it")]
    NotAdmin,
    #[error("deleting someone else's message needs the delete_messages right over a lower role")]
    MayNotDelete,
}

impl Refusal {
    /// The error code a session is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::NoHead
            | Refusal::Unsupported(_)
            | Refusal::NoRecipient
            | Refusal::WrongKind { .. } => ErrorCode::InvalidEnvelope,
            Refusal::UnknownGroup(_) => ErrorCode::UnknownRecipient,
            Refusal::NotMember { .. } => ErrorCode::NotMember,
            Refusal::NotAuthor { .. } | Refusal::NotAdmin | Refusal::MayNotDelete => {
                ErrorCode::Forbidden
            }
        }
    }
}

/// What an admitted envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted<'g> {
    /// A chat (or an envelope of no type, taken as one) to `head.to`.
    Chat,
    /// A message to this group or channel.
    Group(&'g Group),
}

/// Whether `env` may enter its conversation. `group` is the group a group
/// or channel message is addressed to, as the caller's directory has it
/// (`None` if there is no such group; ignored for a chat).
pub fn admit<'g>(env: &Envelope, group: Option<&'g Group>) -> Result<Admitted<'g>, Refusal> {
    let head = env.head.as_ref().ok_or(Refusal::NoHead)?;
    let deleting = head.action() == Action::Delete;
    match head.r#type() {
        HeadType::Chat | HeadType::Unspecified => {
            if head.to.is_empty() {
                return Err(Refusal::NoRecipient);
            }
            // The store checks that the message deleted is really theirs.
            if deleting && env.ref_from != head.from {
                return Err(Refusal::NotAuthor {
                    sender: head.from.clone(),
                    message: env.ref_id.clone(),
                    author: env.ref_from.clone(),
                });
            }
            Ok(Admitted::Chat)
        }
        kind @ (HeadType::Group | HeadType::Channel) => {
            let group = group
                .filter(|g| g.id == head.to)
                .ok_or_else(|| Refusal::UnknownGroup(head.to.clone()))?;
            if head.from.is_empty() {
                return Ok(Admitted::Group(group));
            }
            if !group.is_member(&head.from) {
                return Err(Refusal::NotMember {
                    sender: head.from.clone(),
                    group: group.id.clone(),
                });
            }
            if group.channel != (kind == HeadType::Channel) {
                return Err(Refusal::WrongKind {
                    group: group.id.clone(),
                    channel: group.channel,
                });
            }
            if !group.may_post(&head.from) {
                return Err(Refusal::NotAdmin);
            }
            if deleting && !group.may_delete(&head.from, &env.ref_from) {
                return Err(Refusal::MayNotDelete);
            }
            Ok(Admitted::Group(group))
        }
        other => Err(Refusal::Unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use samvad_proto::v1::Head;

    use super::*;
    use crate::group::{Member, Role};
    use crate::group_rules::Right;

    fn envelope(kind: HeadType, from: &str, to: &str) -> Envelope {
        Envelope {
            id: "m1".into(),
            head: Some(Head {
                r#type: kind as i32,
                from: from.into(),
                to: to.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn delete(kind: HeadType, from: &str, to: &str, author: &str) -> Envelope {
        let mut env = envelope(kind, from, to);
        env.head.as_mut().unwrap().action = Action::Delete as i32;
        env.ref_id = "old".into();
        env.ref_from = author.into();
        env
    }

    /// `g1`: ann the creator, bob an admin with the delete right, cat and
    /// dan members.
    fn group(channel: bool) -> Group {
        let member = |user: &str, role, rights: &[Right]| Member {
            user: user.into(),
            role,
            rights: rights.iter().copied().collect::<BTreeSet<_>>(),
        };
        Group {
            id: "g1".into(),
            name: "g".into(),
            created_ms: 0,
            version: 0,
            members: vec![
                member("ann", Role::Creator, &[]),
                member("bob", Role::Admin, &[Right::DeleteMessages]),
                member("cat", Role::Member, &[]),
                member("dan", Role::Member, &[]),
            ],
            invites: Vec::new(),
            channel,
        }
    }

    #[test]
    fn a_chat_needs_a_recipient_and_only_its_author_deletes() {
        assert_eq!(
            admit(&envelope(HeadType::Chat, "ann", "bob"), None),
            Ok(Admitted::Chat)
        );
        assert_eq!(
            admit(&envelope(HeadType::Unspecified, "ann", "bob"), None),
            Ok(Admitted::Chat)
        );
        let no_one = admit(&envelope(HeadType::Chat, "ann", ""), None).unwrap_err();
        assert_eq!(no_one, Refusal::NoRecipient);
        assert_eq!(no_one.code(), ErrorCode::InvalidEnvelope);
        assert_eq!(
            admit(&delete(HeadType::Chat, "ann", "bob", "ann"), None),
            Ok(Admitted::Chat)
        );
        let theirs = admit(&delete(HeadType::Chat, "ann", "bob", "bob"), None).unwrap_err();
        assert!(matches!(theirs, Refusal::NotAuthor { .. }));
        assert_eq!(theirs.code(), ErrorCode::Forbidden);
        let headless = Envelope::default();
        assert_eq!(admit(&headless, None), Err(Refusal::NoHead));
    }

    #[test]
    fn a_group_message_needs_the_group_and_a_member() {
        let g = group(false);
        assert_eq!(
            admit(&envelope(HeadType::Group, "cat", "g1"), Some(&g)),
            Ok(Admitted::Group(&g))
        );
        let missing = admit(&envelope(HeadType::Group, "cat", "g2"), Some(&g)).unwrap_err();
        assert_eq!(missing, Refusal::UnknownGroup("g2".into()), "another group");
        assert_eq!(missing.code(), ErrorCode::UnknownRecipient);
        assert_eq!(
            admit(&envelope(HeadType::Group, "cat", "g1"), None),
            Err(Refusal::UnknownGroup("g1".into()))
        );
        let outsider = admit(&envelope(HeadType::Group, "eve", "g1"), Some(&g)).unwrap_err();
        assert_eq!(outsider.code(), ErrorCode::NotMember);
        // A system event (no sender) goes to every member.
        assert_eq!(
            admit(&envelope(HeadType::Group, "", "g1"), Some(&g)),
            Ok(Admitted::Group(&g))
        );
    }

    #[test]
    fn the_type_must_match_the_kind_and_only_admins_post_in_a_channel() {
        let g = group(false);
        let c = group(true);
        let wrong = admit(&envelope(HeadType::Channel, "cat", "g1"), Some(&g)).unwrap_err();
        assert_eq!(
            wrong,
            Refusal::WrongKind {
                group: "g1".into(),
                channel: false
            }
        );
        assert_eq!(wrong.to_string(), "\"g1\" is a group");
        assert_eq!(wrong.code(), ErrorCode::InvalidEnvelope);
        assert!(matches!(
            admit(&envelope(HeadType::Group, "ann", "g1"), Some(&c)),
            Err(Refusal::WrongKind { channel: true, .. })
        ));
        let subscriber = admit(&envelope(HeadType::Channel, "cat", "g1"), Some(&c)).unwrap_err();
        assert_eq!(subscriber, Refusal::NotAdmin);
        assert_eq!(subscriber.code(), ErrorCode::Forbidden);
        assert!(admit(&envelope(HeadType::Channel, "bob", "g1"), Some(&c)).is_ok());
        assert!(admit(&envelope(HeadType::Channel, "ann", "g1"), Some(&c)).is_ok());
    }

    #[test]
    fn a_group_delete_is_the_authors_or_needs_the_right_over_a_lower_role() {
        let g = group(false);
        let may = |from: &str, author: &str| {
            admit(&delete(HeadType::Group, from, "g1", author), Some(&g))
        };
        assert!(may("cat", "cat").is_ok(), "their own");
        assert_eq!(may("cat", "dan"), Err(Refusal::MayNotDelete));
        assert!(
            may("bob", "cat").is_ok(),
            "an admin with the right, over a member"
        );
        assert_eq!(
            may("bob", "ann"),
            Err(Refusal::MayNotDelete),
            "not over the creator"
        );
        assert!(may("ann", "bob").is_ok(), "the creator holds every right");
        assert!(
            may("bob", "gone").is_ok(),
            "an author who left counts as a member"
        );
        assert_eq!(may("cat", "dan").unwrap_err().code(), ErrorCode::Forbidden);
    }

    #[test]
    fn other_conversation_types_are_not_admitted() {
        let kinds = [
            HeadType::Chat,
            HeadType::Group,
            HeadType::Channel,
            HeadType::Unspecified,
        ];
        for value in 0..32 {
            let Ok(kind) = HeadType::try_from(value) else {
                continue;
            };
            if kinds.contains(&kind) {
                continue;
            }
            let refusal = admit(&envelope(kind, "ann", "bob"), None).unwrap_err();
            assert_eq!(refusal, Refusal::Unsupported(kind));
            assert_eq!(refusal.code(), ErrorCode::InvalidEnvelope);
        }
    }
}
