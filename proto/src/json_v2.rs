//! The seed's JSON v2 envelope, for WebSocket text mode (old clients).
//!
//! A text frame from a client is either a bare v2 envelope (an object with a
//! `head`), which means "send this", or a one-key object naming a control
//! frame: `{"hello":{"token":…}}`, `{"ack":{"seq":5}}`,
//! `{"sync":{"after_seq":0}}`, `{"typing":{…}}`, `{"ping":{"nonce":1}}`.
//! The server answers deliveries with bare v2 envelopes (plus `seq` and
//! `server_ts`) and every other frame as a one-key object, e.g.
//! `{"accepted":{"id":…,"server_ts":…}}` or
//! `{"error":{"code":"sender_mismatch","message":…,"ref":…}}`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::v1::{self, client_frame, server_frame, Action, HeadType};

/// A text frame that is not valid JSON v2.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not valid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("unknown frame kind")]
    UnknownKind,
    #[error("unknown {field} value {value:?}")]
    UnknownValue { field: &'static str, value: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EnvelopeJson {
    /// The format's version, `2.0` in every envelope the server writes;
    /// a client may leave it out.
    #[serde(rename = "_v", default = "version_2")]
    pub version: f64,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub head: HeadJson,
    #[serde(default)]
    pub meta: MetaJson,
    #[serde(default)]
    pub body: BodyJson,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentJson>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub seq: u64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub server_ts: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HeadJson {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub chatid: String,
    #[serde(rename = "contentType", default)]
    pub content_type: String,
    #[serde(default)]
    pub action: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MetaJson {
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub content_hash: String,
    #[serde(default)]
    pub generate_ts: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BodyJson {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub ts: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AttachmentJson {
    pub file_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub sha256: String,
}

/// The JSON v2 format's `_v`.
pub const VERSION: f64 = 2.0;

fn version_2() -> f64 {
    VERSION
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

const HEAD_TYPES: [(HeadType, &str); 5] = [
    (HeadType::Chat, "chat"),
    (HeadType::Group, "group"),
    (HeadType::Channel, "channel"),
    (HeadType::Bot, "bot"),
    (HeadType::Notification, "notification"),
];

const ACTIONS: [(Action, &str); 12] = [
    (Action::Message, "message"),
    (Action::Ack, "ack"),
    (Action::Subscribe, "subscribe"),
    (Action::Unsubscribe, "unsubscribe"),
    (Action::Join, "join"),
    (Action::Leave, "leave"),
    (Action::Create, "create"),
    (Action::AddMember, "add-member"),
    (Action::RemoveMember, "remove-member"),
    (Action::State, "state"),
    (Action::Typing, "typing"),
    (Action::Delete, "delete"),
];

fn lookup<T: Copy + PartialEq>(
    table: &[(T, &'static str)],
    name: &str,
    field: &'static str,
) -> Result<T, JsonError> {
    table
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(v, _)| *v)
        .ok_or_else(|| JsonError::UnknownValue {
            field,
            value: name.to_string(),
        })
}

fn name_of<T: Copy + PartialEq>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, n)| *n)
        .unwrap_or("")
}

impl TryFrom<EnvelopeJson> for v1::Envelope {
    type Error = JsonError;

    fn try_from(j: EnvelopeJson) -> Result<Self, JsonError> {
        if j.version != VERSION {
            return Err(JsonError::UnknownValue {
                field: "_v",
                value: j.version.to_string(),
            });
        }
        // An absent type or action means the seed's defaults: a chat message.
        let kind = match j.head.kind.as_str() {
            "" => HeadType::Chat,
            k => lookup(&HEAD_TYPES, k, "head.type")?,
        };
        let action = match j.head.action.as_str() {
            "" => Action::Message,
            a => lookup(&ACTIONS, a, "head.action")?,
        };
        Ok(v1::Envelope {
            id: j.id,
            head: Some(v1::Head {
                r#type: kind as i32,
                to: j.head.to,
                from: j.head.from,
                chatid: j.head.chatid,
                content_type: j.head.content_type,
                action: action as i32,
            }),
            meta: Some(v1::Meta {
                hash: j.meta.hash,
                content_hash: j.meta.content_hash,
                generate_ts: j.meta.generate_ts,
            }),
            body: Some(v1::Body {
                text: j.body.text,
                ts: j.body.ts,
            }),
            attachments: j
                .attachments
                .into_iter()
                .map(|a| v1::Attachment {
                    file_id: a.file_id,
                    name: a.name,
                    content_type: a.content_type,
                    size: a.size,
                    sha256: a.sha256,
                })
                .collect(),
            seq: j.seq,
            server_ts: j.server_ts,
            // The seed's format has no delete for everyone.
            ref_id: String::new(),
            ref_from: String::new(),
        })
    }
}

impl From<&v1::Envelope> for EnvelopeJson {
    fn from(e: &v1::Envelope) -> Self {
        let head = e.head.clone().unwrap_or_default();
        let meta = e.meta.clone().unwrap_or_default();
        let body = e.body.clone().unwrap_or_default();
        let (kind, action) = (head.r#type(), head.action());
        EnvelopeJson {
            version: VERSION,
            id: e.id.clone(),
            head: HeadJson {
                kind: name_of(&HEAD_TYPES, kind).to_string(),
                to: head.to,
                from: head.from,
                chatid: head.chatid,
                content_type: head.content_type,
                action: name_of(&ACTIONS, action).to_string(),
            },
            meta: MetaJson {
                hash: meta.hash,
                content_hash: meta.content_hash,
                generate_ts: meta.generate_ts,
            },
            body: BodyJson {
                text: body.text,
                ts: body.ts,
            },
            attachments: e
                .attachments
                .iter()
                .map(|a| AttachmentJson {
                    file_id: a.file_id.clone(),
                    name: a.name.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                })
                .collect(),
            seq: e.seq,
            server_ts: e.server_ts,
        }
    }
}

#[derive(Deserialize)]
struct HelloJson {
    token: String,
    #[serde(default)]
    device: String,
}
#[derive(Deserialize)]
struct SeqJson {
    #[serde(default)]
    seq: u64,
}
#[derive(Deserialize)]
struct SyncJson {
    #[serde(default)]
    after_seq: u64,
    #[serde(default)]
    resume: bool,
}
#[derive(Deserialize)]
struct ReadJson {
    chatid: String,
    #[serde(default)]
    author: String,
    message_ids: Vec<String>,
}
#[derive(Deserialize)]
struct HistoryJson {
    chatid: String,
    #[serde(default)]
    before_seq: u64,
    #[serde(default)]
    limit: u32,
}
#[derive(Deserialize)]
struct TypingJson {
    #[serde(default)]
    to: String,
    #[serde(default)]
    chatid: String,
    #[serde(default)]
    active: bool,
}
#[derive(Deserialize)]
struct PingJson {
    #[serde(default)]
    nonce: u64,
}

/// Parses one client text frame.
pub fn parse_client_text(text: &str) -> Result<v1::ClientFrame, JsonError> {
    let value: Value = serde_json::from_str(text)?;
    let Value::Object(map) = &value else {
        return Err(JsonError::UnknownKind);
    };
    if map.contains_key("head") {
        let env: EnvelopeJson = serde_json::from_value(value)?;
        return Ok(v1::ClientFrame::of(client_frame::Kind::Send(v1::Send {
            envelope: Some(env.try_into()?),
        })));
    }
    let mut entries = map.iter();
    let (Some((name, inner)), None) = (entries.next(), entries.next()) else {
        return Err(JsonError::UnknownKind);
    };
    let inner = inner.clone();
    let kind = match name.as_str() {
        "hello" => {
            let h: HelloJson = serde_json::from_value(inner)?;
            client_frame::Kind::Hello(v1::Hello {
                token: h.token,
                device: h.device,
            })
        }
        "send" => {
            let env: EnvelopeJson = serde_json::from_value(inner)?;
            client_frame::Kind::Send(v1::Send {
                envelope: Some(env.try_into()?),
            })
        }
        "ack" => client_frame::Kind::Ack(v1::Ack {
            seq: serde_json::from_value::<SeqJson>(inner)?.seq,
        }),
        "sync" => {
            let s: SyncJson = serde_json::from_value(inner)?;
            client_frame::Kind::Sync(v1::Sync {
                after_seq: s.after_seq,
                resume: s.resume,
            })
        }
        "typing" => {
            let t: TypingJson = serde_json::from_value(inner)?;
            client_frame::Kind::Typing(v1::Typing {
                to: t.to,
                chatid: t.chatid,
                active: t.active,
            })
        }
        "history" => {
            let h: HistoryJson = serde_json::from_value(inner)?;
            client_frame::Kind::History(v1::History {
                chatid: h.chatid,
                before_seq: h.before_seq,
                limit: h.limit,
            })
        }
        "read" => {
            let r: ReadJson = serde_json::from_value(inner)?;
            client_frame::Kind::Read(v1::Read {
                chatid: r.chatid,
                author: r.author,
                message_ids: r.message_ids,
            })
        }
        "ping" => client_frame::Kind::Ping(v1::Ping {
            nonce: serde_json::from_value::<PingJson>(inner)?.nonce,
        }),
        _ => return Err(JsonError::UnknownKind),
    };
    Ok(v1::ClientFrame::of(kind))
}

fn state_name(state: v1::DeliveryState) -> &'static str {
    match state {
        v1::DeliveryState::Unspecified => "",
        v1::DeliveryState::Sent => "sent",
        v1::DeliveryState::Delivered => "delivered",
        v1::DeliveryState::Read => "read",
    }
}

/// A history page as JSON: `{chatid, messages, more}`, each message a
/// JSON v2 envelope (also the REST answer for history).
pub fn history_json(page: &v1::HistoryPage) -> Value {
    let messages: Vec<EnvelopeJson> = page.messages.iter().map(EnvelopeJson::from).collect();
    json!({"chatid": page.chatid, "messages": messages, "more": page.more})
}

/// A signal as JSON: `{room, from, <kind>: …}`, the kind named as in the
/// .proto (`join`/`answer`/`offer` carry the SDP as a string; an `event`
/// is `{type, …}`).
fn signal_json(s: &v1::Signal) -> Value {
    use v1::signal::Kind;
    let (name, value) = match &s.kind {
        Some(Kind::Join(sdp)) => ("join", json!(sdp)),
        Some(Kind::Answer(sdp)) => ("answer", json!(sdp)),
        Some(Kind::Offer(sdp)) => ("offer", json!(sdp)),
        Some(Kind::Leave(_)) => ("leave", json!({})),
        Some(Kind::Mute(m)) => {
            let scope = match m.scope() {
                v1::MuteScope::Myself => "myself",
                v1::MuteScope::ForMe => "for_me",
                v1::MuteScope::Everyone => "everyone",
            };
            (
                "mute",
                json!({"scope": scope, "user": m.user, "muted": m.muted}),
            )
        }
        Some(Kind::Layer(l)) => ("layer", json!({"user": l.user, "rid": l.rid})),
        Some(Kind::Event(e)) => ("event", media_event_json(e)),
        Some(Kind::Error(e)) => ("error", json!({"code": e.code, "message": e.message})),
        None => return json!({"room": s.room, "from": s.from}),
    };
    json!({"room": s.room, "from": s.from, name: value})
}

/// A media event as JSON: `{type, …}` (`participants` `{users}`, `joined`
/// and `left` `{user}`, `published` `{user, kind}`, `track` `{user, kind,
/// mid}`, `muted` `{user, by, muted}`, `layer` `{user, rid}`).
pub fn media_event_json(event: &v1::MediaEvent) -> Value {
    use v1::media_event::Kind as Event;
    match &event.kind {
        Some(Event::Participants(p)) => json!({"type": "participants", "users": p.users}),
        Some(Event::Joined(user)) => json!({"type": "joined", "user": user}),
        Some(Event::Left(user)) => json!({"type": "left", "user": user}),
        Some(Event::Published(p)) => json!({"type": "published", "user": p.user, "kind": p.kind}),
        Some(Event::Track(t)) => {
            json!({"type": "track", "user": t.user, "kind": t.kind, "mid": t.mid})
        }
        Some(Event::Muted(m)) => {
            json!({"type": "muted", "user": m.user, "by": m.by, "muted": m.muted})
        }
        Some(Event::Layer(l)) => json!({"type": "layer", "user": l.user, "rid": l.rid}),
        None => json!({}),
    }
}

/// Renders one server frame as a text frame.
pub fn server_text(frame: &v1::ServerFrame) -> String {
    use server_frame::Kind;
    let value = match &frame.kind {
        Some(Kind::Deliver(d)) => {
            let env = d
                .envelope
                .as_ref()
                .map(EnvelopeJson::from)
                .unwrap_or_default();
            serde_json::to_value(env).unwrap_or(Value::Null)
        }
        Some(Kind::Welcome(w)) => {
            json!({"welcome": {"user": w.user, "session": w.session, "max_frame": w.max_frame, "node": w.node}})
        }
        Some(Kind::Accepted(a)) => json!({"accepted": {"id": a.id, "server_ts": a.server_ts}}),
        Some(Kind::Receipt(r)) => json!({"receipt": {
            "seq": r.seq, "message_id": r.message_id, "message_ids": r.message_ids, "by": r.by,
            "state": state_name(r.state()), "chatid": r.chatid, "ts": r.ts}}),
        Some(Kind::SyncDone(s)) => json!({"sync_done": {"last_seq": s.last_seq, "more": s.more}}),
        Some(Kind::Presence(p)) => {
            json!({"presence": {"user": p.user, "online": p.online, "typing": p.typing, "chatid": p.chatid}})
        }
        Some(Kind::Signal(s)) => json!({ "signal": signal_json(s) }),
        Some(Kind::Error(e)) => {
            json!({"error": {"code": e.code().short_name(), "message": e.message, "ref": e.r#ref}})
        }
        Some(Kind::Pong(p)) => json!({"pong": {"nonce": p.nonce}}),
        Some(Kind::History(h)) => json!({ "history": history_json(h) }),
        None => json!({}),
    };
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{"_v":2.0,"id":"m-1","head":{"type":"chat","to":"bob","from":"alice","chatid":"alice:bob","contentType":"text","action":"message"},"meta":{"hash":"h","content_hash":"ch","generate_ts":1700000000000},"body":{"text":"hi","ts":1700000000001}}"#;

    #[test]
    fn seed_envelope_round_trips() {
        let frame = parse_client_text(SEED).unwrap();
        let Some(client_frame::Kind::Send(send)) = frame.kind else {
            panic!("not a send")
        };
        let env = send.envelope.unwrap();
        assert_eq!(env.head.as_ref().unwrap().from, "alice");
        assert_eq!(env.head.as_ref().unwrap().r#type(), HeadType::Chat);
        assert_eq!(env.meta.as_ref().unwrap().generate_ts, 1_700_000_000_000);
        let out = server_text(&v1::ServerFrame::of(server_frame::Kind::Deliver(
            v1::Deliver {
                envelope: Some(env),
            },
        )));
        let a: Value = serde_json::from_str(&out).unwrap();
        let b: Value = serde_json::from_str(SEED).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_version_may_be_left_out_but_not_be_another() {
        let without = SEED.replace(r#""_v":2.0,"#, "");
        assert!(parse_client_text(&without).is_ok());
        let other = SEED.replace(r#""_v":2.0"#, r#""_v":3.0"#);
        assert!(matches!(
            parse_client_text(&other),
            Err(JsonError::UnknownValue { field: "_v", .. })
        ));
    }

    #[test]
    fn control_frames_parse() {
        let f = parse_client_text(r#"{"ack":{"seq":7}}"#).unwrap();
        assert_eq!(f.kind, Some(client_frame::Kind::Ack(v1::Ack { seq: 7 })));
        let f = parse_client_text(r#"{"hello":{"token":"t"}}"#).unwrap();
        assert!(matches!(f.kind, Some(client_frame::Kind::Hello(_))));
    }

    #[test]
    fn bad_text_is_an_error_not_a_panic() {
        assert!(matches!(parse_client_text("{"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse_client_text("[1]"),
            Err(JsonError::UnknownKind)
        ));
        assert!(matches!(
            parse_client_text(r#"{"launch":{}}"#),
            Err(JsonError::UnknownKind)
        ));
        assert!(matches!(
            parse_client_text(r#"{"head":{"type":"fax"}}"#),
            Err(JsonError::UnknownValue {
                field: "head.type",
                ..
            })
        ));
    }

    #[test]
    fn errors_render_with_stable_codes() {
        let f = v1::ServerFrame::error(v1::ErrorCode::SenderMismatch, "no", "m-1");
        let v: Value = serde_json::from_str(&server_text(&f)).unwrap();
        assert_eq!(v["error"]["code"], "sender_mismatch");
    }
}
