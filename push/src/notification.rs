//! What a push says: a notification built from a `PushRecord`, plain data.
//!
//! A push wakes a device and tells it enough to show a line ("alice: see
//! you at 8") and to sync; it is not the message's delivery, which stays in
//! the inbox. Only messages from users notify: receipts, deletions and
//! group events wait for the next sync.

use prost::Message;
use samvad_proto::bus::PushRecord;
use samvad_proto::v1::{server_frame, Action, ServerFrame};
use serde::{Deserialize, Serialize};

/// Characters of a text message shown in a notification: as many as the
/// inbox puts in a notification's frame.
pub const PREVIEW_CHARS: usize = samvad_core::inbox::NOTIFIED_TEXT_CHARS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Who is notified.
    pub user: String,
    /// The entry's place in the user's inbox: sync from before it.
    pub seq: u64,
    pub chatid: String,
    pub from: String,
    /// The message id.
    pub id: String,
    pub server_ts: i64,
    pub content_type: String,
    /// The start of a text message; empty for anything else.
    pub preview: String,
}

/// The notification for `record`, if it is one worth a push.
pub fn notification(record: &PushRecord) -> Option<Notification> {
    let frame = ServerFrame::decode(record.frame.clone()).ok()?;
    let Some(server_frame::Kind::Deliver(deliver)) = frame.kind else {
        return None;
    };
    let env = deliver.envelope?;
    let head = env.head?;
    if head.from.is_empty() || !matches!(head.action(), Action::Message | Action::Unspecified) {
        return None;
    }
    // The seed's clients say `text`; others say `text/plain`.
    let ct = head.content_type.as_str();
    let is_text = ct.is_empty() || ct == "text" || ct.starts_with("text/plain");
    let preview = match (&env.body, is_text) {
        (Some(body), true) => body.text.chars().take(PREVIEW_CHARS).collect(),
        _ => String::new(),
    };
    Some(Notification {
        user: record.user.clone(),
        seq: record.seq,
        chatid: head.chatid,
        from: head.from,
        id: env.id,
        server_ts: env.server_ts,
        content_type: head.content_type,
        preview,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_proto::v1::{Body, Deliver, Envelope, Head, Receipt};

    fn record(frame: ServerFrame) -> PushRecord {
        PushRecord {
            user: "bob".into(),
            seq: 7,
            frame: frame.encode_to_vec().into(),
        }
    }

    fn deliver(from: &str, action: Action, content_type: &str, text: &str) -> ServerFrame {
        ServerFrame {
            kind: Some(server_frame::Kind::Deliver(Deliver {
                envelope: Some(Envelope {
                    id: "m1".into(),
                    head: Some(Head {
                        from: from.into(),
                        to: "bob".into(),
                        chatid: "alice:bob".into(),
                        content_type: content_type.into(),
                        action: action as i32,
                        ..Default::default()
                    }),
                    body: Some(Body {
                        text: text.into(),
                        ts: 0,
                    }),
                    server_ts: 42,
                    ..Default::default()
                }),
            })),
        }
    }

    #[test]
    fn a_text_message_notifies_with_a_bounded_preview() {
        let long = "é".repeat(500);
        let n = notification(&record(deliver(
            "alice",
            Action::Message,
            "text/plain",
            &long,
        )))
        .unwrap();
        assert_eq!(
            (
                n.user.as_str(),
                n.seq,
                n.from.as_str(),
                n.id.as_str(),
                n.server_ts
            ),
            ("bob", 7, "alice", "m1", 42)
        );
        assert_eq!(n.preview.chars().count(), PREVIEW_CHARS);
        let n = notification(&record(deliver("alice", Action::Message, "text", "hi"))).unwrap();
        assert_eq!(n.preview, "hi");
        let n = notification(&record(deliver(
            "alice",
            Action::Message,
            "image/png",
            "xx",
        )))
        .unwrap();
        assert_eq!(n.preview, "", "no preview of what is not text");
    }

    #[test]
    fn receipts_deletions_system_messages_and_garbage_do_not_notify() {
        let receipt = ServerFrame {
            kind: Some(server_frame::Kind::Receipt(Receipt::default())),
        };
        assert_eq!(notification(&record(receipt)), None);
        assert_eq!(
            notification(&record(deliver("alice", Action::Delete, "", ""))),
            None
        );
        assert_eq!(
            notification(&record(deliver("", Action::Message, "", "x"))),
            None
        );
        let garbage = PushRecord {
            user: "bob".into(),
            seq: 1,
            frame: vec![0xff, 0xff, 0xff].into(),
        };
        assert_eq!(notification(&garbage), None);
    }
}
