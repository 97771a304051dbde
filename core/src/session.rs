//! The session protocol as a state machine with no I/O.
//!
//! A transport feeds [`Session::on_frame`] with decoded client frames (or
//! the reason a frame could not be decoded) and carries out the returned
//! [`Action`]s: reply frames, envelopes to make durable, records for the
//! user's inbox. Every rule of DESIGN.md's step 1 lives here, tested with
//! plain data: hello first, the token's user is `from`, sizes, rates.

use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;
use samvad_proto::bus::{deliver_record, AckRecord, DeliverRecord, HistoryRecord, SyncRecord};
use samvad_proto::v1::{
    client_frame, server_frame, Action as EnvAction, ClientFrame, Envelope, ErrorCode, HeadType,
    Pong, Presence, ServerFrame, Welcome,
};

use crate::names::{
    chat_id, history_owner, valid_device, valid_group_id, valid_username, DEFAULT_DEVICE,
    MAX_ID_LEN,
};
use crate::signal::{from_client, sdp, MAX_SDP};
use crate::token::{TokenError, TokenKeys};
use crate::token_bucket::TokenBucket;

/// What the transport must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this frame to the client.
    Reply(ServerFrame),
    /// Make the envelope durable on `inbound` (key: its chat id), then
    /// reply `Accepted`; if the bus fails, reply `UNAVAILABLE`.
    Accept(Envelope),
    /// Produce this record to `deliver`, keyed by its user.
    Deliver(DeliverRecord),
    /// Produce these records to `deliver` if the session's user and every
    /// one of `others` are members of group `group` (the transport looks
    /// the group up); else refuse with `NOT_MEMBER`.
    DeliverIfMembers {
        group: String,
        others: Vec<String>,
        records: Vec<DeliverRecord>,
        reference: &'static str,
    },
    /// Register the session in presence (before the first sync goes out,
    /// so no delivery falls between replay and live).
    GoLive,
    /// Ephemeral: show this frame to every live session of `to`.
    Ephemeral { to: String, frame: ServerFrame },
    /// The seed's in-envelope `subscribe` / `unsubscribe` on a channel:
    /// change the membership (the transport does it, as the REST call
    /// would), then reply `Accepted{id}`.
    Subscription {
        channel: String,
        subscribe: bool,
        id: String,
    },
    /// A media signal for a room: the transport checks that the user is a
    /// member of the room's group and passes it to the room's media node.
    Signal(samvad_proto::v1::Signal),
    /// Close the session (after sending the replies before this).
    Close,
}

/// Why the transport could not produce a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFault {
    /// Bytes that do not decode as a client frame.
    Malformed(String),
    /// A frame longer than the limit (its bytes were skipped).
    TooLarge(u64),
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub node: Arc<str>,
    pub max_frame: usize,
    /// Sends per second; bursts up to twice that.
    pub rate_per_sec: u32,
    /// Bytes of envelopes a session may send per second (bursts up to
    /// twice that, and always one envelope of `max_frame`); `None`: no
    /// limit. Without it one session within its message rate could still
    /// push tens of MB a second of large messages into the stores.
    pub bytes_per_sec: Option<u32>,
}

#[derive(Debug)]
enum Phase {
    AwaitingHello,
    Active { user: Arc<str>, device: Arc<str> },
}

pub struct Session {
    id: Arc<str>,
    config: Arc<SessionConfig>,
    phase: Phase,
    live: bool,
    /// Signaled a media room.
    media: bool,
    /// Frames a second, with a burst of two seconds' worth.
    limiter: TokenBucket,
    /// Envelope bytes a second, likewise (see [`SessionConfig::bytes_per_sec`]).
    byte_limiter: Option<TokenBucket>,
}

/// What the state machine needs to know about the world.
pub struct Context<'a> {
    pub keys: &'a TokenKeys,
    pub now: Instant,
    /// Wall time, Unix milliseconds: stamped on envelopes and receipts,
    /// and what tokens expire against.
    pub now_ms: i64,
}

impl Context<'_> {
    fn now_secs(&self) -> u64 {
        u64::try_from(self.now_ms / 1000).unwrap_or(0)
    }
}

fn error(code: ErrorCode, message: impl Into<String>, reference: impl Into<String>) -> Action {
    Action::Reply(ServerFrame::error(code, message, reference))
}

/// Most message ids one `Read` or `Hide` frame names.
pub const MAX_IDS_PER_FRAME: usize = 256;

fn valid_message_ids(ids: &[String]) -> bool {
    (1..=MAX_IDS_PER_FRAME).contains(&ids.len())
        && ids
            .iter()
            .all(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
}

/// The kind of conversation a chat id names.
pub enum Conversation<'a> {
    /// A 1:1 chat of the user's, with `other`.
    Chat { other: &'a str },
    /// A group (or channel): membership is for the transport to check.
    Group,
}

/// What `chatid` names, if `user` may act in it as far as the session can
/// tell without a lookup; else the error code and message to answer with.
pub fn conversation<'a>(
    user: &str,
    chatid: &'a str,
) -> Result<Conversation<'a>, (ErrorCode, &'static str)> {
    if let Some((a, b)) = chatid.split_once(':') {
        if !(valid_username(a) && valid_username(b) && chat_id(a, b) == chatid) {
            return Err((
                ErrorCode::InvalidEnvelope,
                "a 1:1 chat id is `a:b`, the two user names sorted",
            ));
        }
        if a != user && b != user {
            return Err((ErrorCode::NotMember, "not a conversation of yours"));
        }
        return Ok(Conversation::Chat {
            other: if a == user { b } else { a },
        });
    }
    if !valid_group_id(chatid) {
        return Err((
            ErrorCode::InvalidEnvelope,
            "a chat id or a group id is needed",
        ));
    }
    Ok(Conversation::Group)
}

impl Session {
    pub fn new(id: Arc<str>, config: Arc<SessionConfig>, now: Instant) -> Self {
        let rate = f64::from(config.rate_per_sec.max(1));
        let limiter = TokenBucket::new(rate, rate * 2.0, now);
        let byte_limiter = config.bytes_per_sec.map(|bytes| {
            let bytes = f64::from(bytes.max(1));
            TokenBucket::new(bytes, (bytes * 2.0).max(config.max_frame as f64), now)
        });
        Session {
            id,
            config,
            phase: Phase::AwaitingHello,
            live: false,
            media: false,
            limiter,
            byte_limiter,
        }
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The authenticated user, once hello succeeded.
    pub fn user(&self) -> Option<&Arc<str>> {
        match &self.phase {
            Phase::Active { user, .. } => Some(user),
            Phase::AwaitingHello => None,
        }
    }

    /// Handles one client frame (or the fault in place of one).
    pub fn on_frame(
        &mut self,
        frame: Result<ClientFrame, FrameFault>,
        cx: &Context,
        out: &mut Vec<Action>,
    ) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(FrameFault::Malformed(why)) => {
                return out.push(error(
                    ErrorCode::MalformedFrame,
                    format!("frame does not decode: {why}"),
                    "",
                ));
            }
            Err(FrameFault::TooLarge(len)) => {
                return out.push(error(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame of {len} bytes exceeds the limit of {} bytes",
                        self.config.max_frame
                    ),
                    "",
                ));
            }
        };
        let Some(kind) = frame.kind else {
            return out.push(error(ErrorCode::UnknownFrame, "unknown frame kind", ""));
        };
        let (user, device) = match (&self.phase, &kind) {
            (Phase::AwaitingHello, client_frame::Kind::Hello(hello)) => {
                return self.hello(&hello.token, &hello.device, cx, out)
            }
            (Phase::AwaitingHello, client_frame::Kind::Ping(p)) => {
                return out.push(Action::Reply(ServerFrame::of(server_frame::Kind::Pong(
                    Pong { nonce: p.nonce },
                ))));
            }
            (Phase::AwaitingHello, _) => {
                return out.push(error(
                    ErrorCode::NotAuthenticated,
                    "send hello with a token first",
                    "",
                ));
            }
            (Phase::Active { user, device }, _) => (user.clone(), device.clone()),
        };
        match kind {
            client_frame::Kind::Hello(_) => out.push(error(
                ErrorCode::AlreadyAuthenticated,
                "session is already authenticated",
                "hello",
            )),
            client_frame::Kind::Send(send) => match send.envelope {
                Some(env) => self.send(&user, env, cx, out),
                None => out.push(error(
                    ErrorCode::InvalidEnvelope,
                    "send without an envelope",
                    "",
                )),
            },
            client_frame::Kind::Ack(ack) => out.push(Action::Deliver(DeliverRecord {
                user: user.to_string(),
                then: Vec::new(),
                kind: Some(deliver_record::Kind::Ack(AckRecord {
                    seq: ack.seq,
                    device: device.to_string(),
                })),
            })),
            client_frame::Kind::Sync(sync) => {
                if !self.live {
                    self.live = true;
                    out.push(Action::GoLive);
                }
                out.push(Action::Deliver(DeliverRecord {
                    user: user.to_string(),
                    then: Vec::new(),
                    kind: Some(deliver_record::Kind::Sync(SyncRecord {
                        session: self.id.to_string(),
                        edge: self.config.node.to_string(),
                        after_seq: sync.after_seq,
                        device: device.to_string(),
                        resume: sync.resume,
                    })),
                }))
            }
            client_frame::Kind::History(history) => self.history(&user, history, out),
            client_frame::Kind::Read(read) => self.read(&user, read, cx.now_ms, out),
            client_frame::Kind::Hide(hide) => self.hide(&user, hide, out),
            client_frame::Kind::Typing(typing) => {
                if !valid_username(&typing.to) {
                    return out.push(error(
                        ErrorCode::InvalidEnvelope,
                        "typing needs a valid `to`",
                        "typing",
                    ));
                }
                out.push(Action::Ephemeral {
                    to: typing.to,
                    frame: ServerFrame::of(server_frame::Kind::Presence(Presence {
                        user: user.to_string(),
                        online: true,
                        typing: typing.active,
                        chatid: typing.chatid,
                    })),
                })
            }
            client_frame::Kind::Signal(signal) => self.signal(signal, out),
            client_frame::Kind::Ping(p) => out.push(Action::Reply(ServerFrame::of(
                server_frame::Kind::Pong(Pong { nonce: p.nonce }),
            ))),
        }
    }

    /// Media signaling for a room (a group's call): passed on to the
    /// room's media node once the transport has checked membership.
    fn signal(&mut self, signal: samvad_proto::v1::Signal, out: &mut Vec<Action>) {
        let client_kind = signal.kind.as_ref().is_some_and(from_client);
        let sdp_fits = signal
            .kind
            .as_ref()
            .and_then(sdp)
            .is_none_or(|sdp| sdp.len() <= MAX_SDP);
        if !client_kind || !valid_group_id(&signal.room) || !sdp_fits {
            return out.push(error(
                ErrorCode::InvalidEnvelope,
                "a signal names a group as its room, a kind (join, answer, offer, leave, mute, layer) and at most 64 KiB of SDP",
                "signal",
            ));
        }
        self.media = true;
        out.push(Action::Signal(signal));
    }

    /// Whether the session ever signaled a media room (its end is then
    /// told to the media node).
    pub fn used_media(&self) -> bool {
        self.media
    }

    /// A page of a conversation's history.
    fn history(&self, user: &str, history: samvad_proto::v1::History, out: &mut Vec<Action>) {
        let record = DeliverRecord {
            user: history_owner(&history.chatid),
            then: Vec::new(),
            kind: Some(deliver_record::Kind::History(HistoryRecord {
                session: self.id.to_string(),
                edge: self.config.node.to_string(),
                chatid: history.chatid.clone(),
                before_seq: history.before_seq,
                limit: history.limit,
                user: user.to_string(),
            })),
        };
        match conversation(user, &history.chatid) {
            Ok(Conversation::Chat { .. }) => out.push(Action::Deliver(record)),
            Ok(Conversation::Group) => out.push(Action::DeliverIfMembers {
                group: history.chatid,
                others: Vec::new(),
                records: vec![record],
                reference: "history",
            }),
            Err((code, why)) => out.push(error(code, why, "history")),
        }
    }

    /// Delete for me: my inbox and my view of the conversation's history.
    fn hide(&self, user: &str, hide: samvad_proto::v1::Hide, out: &mut Vec<Action>) {
        if !valid_message_ids(&hide.message_ids) || !valid_username(&hide.author) {
            return out.push(error(
                ErrorCode::InvalidEnvelope,
                "hide needs the author and 1 to 256 message ids of 1 to 128 bytes",
                "hide",
            ));
        }
        let record = |owner: String| DeliverRecord {
            user: owner,
            then: Vec::new(),
            kind: Some(deliver_record::Kind::Hide(samvad_proto::bus::HideRecord {
                user: user.to_string(),
                author: hide.author.clone(),
                message_ids: hide.message_ids.clone(),
            })),
        };
        let records = vec![
            record(user.to_string()),
            record(history_owner(&hide.chatid)),
        ];
        match conversation(user, &hide.chatid) {
            Ok(Conversation::Chat { .. }) => out.extend(records.into_iter().map(Action::Deliver)),
            Ok(Conversation::Group) => out.push(Action::DeliverIfMembers {
                group: hide.chatid,
                others: Vec::new(),
                records,
                reference: "hide",
            }),
            Err((code, why)) => out.push(error(code, why, "hide")),
        }
    }

    /// READ receipts for the author of messages I read.
    fn read(&self, user: &str, read: samvad_proto::v1::Read, now_ms: i64, out: &mut Vec<Action>) {
        if !valid_message_ids(&read.message_ids) {
            return out.push(error(
                ErrorCode::InvalidEnvelope,
                "read needs 1 to 256 message ids of 1 to 128 bytes",
                "read",
            ));
        }
        let receipts = |author: &str| -> Vec<DeliverRecord> {
            read.message_ids
                .iter()
                .map(|id| DeliverRecord {
                    user: author.to_string(),
                    then: Vec::new(),
                    kind: Some(deliver_record::Kind::Receipt(samvad_proto::v1::Receipt {
                        seq: 0,
                        message_id: id.clone(),
                        by: user.to_string(),
                        state: samvad_proto::v1::DeliveryState::Read as i32,
                        chatid: read.chatid.clone(),
                        ts: now_ms,
                        message_ids: Vec::new(),
                    })),
                })
                .collect()
        };
        match conversation(user, &read.chatid) {
            // In a chat the author is the other user (with myself: nobody).
            Ok(Conversation::Chat { other }) => {
                if other == user || (!read.author.is_empty() && read.author != other) {
                    return out.push(error(
                        ErrorCode::NotMember,
                        "not the other user of this conversation",
                        "read",
                    ));
                }
                out.extend(receipts(other).into_iter().map(Action::Deliver));
            }
            Ok(Conversation::Group) => {
                if !valid_username(&read.author) {
                    return out.push(error(
                        ErrorCode::InvalidEnvelope,
                        "read in a group names the author",
                        "read",
                    ));
                }
                if read.author != user {
                    out.push(Action::DeliverIfMembers {
                        records: receipts(&read.author),
                        others: vec![read.author.clone()],
                        group: read.chatid.clone(),
                        reference: "read",
                    });
                }
            }
            Err((code, why)) => out.push(error(code, why, "read")),
        }
    }

    fn hello(&mut self, token: &str, device: &str, cx: &Context, out: &mut Vec<Action>) {
        let device = if device.is_empty() {
            DEFAULT_DEVICE
        } else {
            device
        };
        if !valid_device(device) {
            out.push(error(
                ErrorCode::InvalidEnvelope,
                "a device name is 1 to 64 of A-Z a-z 0-9 . _ -",
                "hello",
            ));
            return out.push(Action::Close);
        }
        match cx.keys.verify_access(token, cx.now_secs()) {
            Ok(user) => {
                let user: Arc<str> = user.into();
                out.push(Action::Reply(ServerFrame::of(server_frame::Kind::Welcome(
                    Welcome {
                        user: user.to_string(),
                        session: self.id.to_string(),
                        max_frame: self.config.max_frame as u32,
                        node: self.config.node.to_string(),
                    },
                ))));
                self.phase = Phase::Active {
                    user,
                    device: device.into(),
                };
            }
            Err(e) => {
                let code = match e {
                    TokenError::Expired => ErrorCode::TokenExpired,
                    TokenError::Invalid => ErrorCode::BadToken,
                };
                out.push(error(code, e.to_string(), "hello"));
                out.push(Action::Close);
            }
        }
    }

    fn send(&mut self, user: &str, mut env: Envelope, cx: &Context, out: &mut Vec<Action>) {
        // What the byte allowance is charged: the envelope as sent.
        let bytes = env.encoded_len() as f64;
        let id = env.id.clone();
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return out.push(error(
                ErrorCode::InvalidEnvelope,
                "envelope id must be 1 to 128 bytes",
                id,
            ));
        }
        let Some(head) = env.head.as_mut() else {
            return out.push(error(
                ErrorCode::InvalidEnvelope,
                "envelope has no head",
                id,
            ));
        };
        if head.from.is_empty() {
            head.from = user.to_string();
        } else if head.from != user {
            return out.push(error(
                ErrorCode::SenderMismatch,
                format!("head.from {:?} is not the authenticated user", head.from),
                id,
            ));
        }
        let to_valid = match head.r#type() {
            HeadType::Chat | HeadType::Unspecified => {
                head.r#type = HeadType::Chat as i32;
                valid_username(&head.to)
            }
            HeadType::Group | HeadType::Channel => valid_group_id(&head.to),
            other => {
                return out.push(error(
                    ErrorCode::InvalidEnvelope,
                    format!(
                        "conversation type {} is not supported yet",
                        other.as_str_name()
                    ),
                    id,
                ));
            }
        };
        let mut subscription = None;
        match head.action() {
            EnvAction::Subscribe | EnvAction::Unsubscribe => {
                let empty = env.body.as_ref().is_none_or(|b| b.text.is_empty())
                    && env.attachments.is_empty()
                    && env.ref_id.is_empty()
                    && env.ref_from.is_empty();
                if head.r#type() != HeadType::Channel || !empty {
                    return out.push(error(
                        ErrorCode::InvalidEnvelope,
                        "subscribe and unsubscribe name a channel (head.type CHANNEL) and carry nothing",
                        id,
                    ));
                }
                subscription = Some(head.action() == EnvAction::Subscribe);
            }
            EnvAction::Message | EnvAction::Unspecified => {
                head.action = EnvAction::Message as i32;
                if !env.ref_id.is_empty() || !env.ref_from.is_empty() {
                    return out.push(error(
                        ErrorCode::InvalidEnvelope,
                        "ref_id and ref_from belong to a delete",
                        id,
                    ));
                }
            }
            // Delete for everyone: who may is checked against the group
            // by the transport, and against the message itself by the
            // store (whose author it really is).
            EnvAction::Delete => {
                let valid = !env.ref_id.is_empty()
                    && env.ref_id.len() <= MAX_ID_LEN
                    && valid_username(&env.ref_from)
                    && env.body.as_ref().is_none_or(|b| b.text.is_empty())
                    && env.attachments.is_empty();
                if !valid {
                    return out.push(error(
                        ErrorCode::InvalidEnvelope,
                        "a delete names ref_id and ref_from, and carries nothing else",
                        id,
                    ));
                }
            }
            other => {
                return out.push(error(
                    ErrorCode::InvalidEnvelope,
                    format!("action {} is not accepted in a send", other.as_str_name()),
                    id,
                ));
            }
        }
        if !to_valid {
            return out.push(error(
                ErrorCode::InvalidEnvelope,
                "head.to is not a valid user name or group id",
                id,
            ));
        }
        // Both allowances are checked before either is taken, so a send
        // refused for its bytes costs no message token, and the other way.
        if self.limiter.check(cx.now).is_err() {
            return out.push(error(
                ErrorCode::RateLimited,
                "too many messages; retry later with the same id",
                id,
            ));
        }
        if let Some(byte_limiter) = &mut self.byte_limiter {
            if byte_limiter.take_n(bytes, cx.now).is_err() {
                return out.push(error(
                    ErrorCode::RateLimited,
                    "too many bytes of messages a second; retry later with the same id",
                    id,
                ));
            }
        }
        // Checked above at the same instant, so there is a token to take.
        let _ = self.limiter.take(cx.now);
        if let Some(subscribe) = subscription {
            return out.push(Action::Subscription {
                channel: head.to.clone(),
                subscribe,
                id,
            });
        }
        // The conversation id keys `inbound`: one partition, one order per
        // conversation.
        head.chatid = if matches!(head.r#type(), HeadType::Group | HeadType::Channel) {
            head.to.clone()
        } else {
            chat_id(&head.from, &head.to)
        };
        env.seq = 0;
        env.server_ts = cx.now_ms;
        out.push(Action::Accept(env));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use samvad_proto::v1::{Ack, Head, Hello, Send, Sync};
    use std::time::Duration;

    fn setup() -> (Session, TokenKeys) {
        let config = Arc::new(SessionConfig {
            node: "n1".into(),
            max_frame: 1024,
            rate_per_sec: 2,
            bytes_per_sec: None,
        });
        (
            Session::new("s1".into(), config, Instant::now()),
            TokenKeys::new(b"k", 60),
        )
    }

    fn run(s: &mut Session, keys: &TokenKeys, kind: client_frame::Kind) -> Vec<Action> {
        let cx = Context {
            keys,
            now: Instant::now(),
            now_ms: 42,
        };
        let mut out = Vec::new();
        s.on_frame(Ok(ClientFrame::of(kind)), &cx, &mut out);
        out
    }

    fn code(actions: &[Action]) -> ErrorCode {
        match &actions[0] {
            Action::Reply(ServerFrame {
                kind: Some(server_frame::Kind::Error(e)),
            }) => e.code(),
            other => panic!("not an error: {other:?}"),
        }
    }

    fn hello(s: &mut Session, keys: &TokenKeys) {
        let token = keys.issue_access("alice", 0);
        let out = run(
            s,
            keys,
            client_frame::Kind::Hello(Hello {
                token,
                device: String::new(),
            }),
        );
        assert!(matches!(
            &out[0],
            Action::Reply(ServerFrame {
                kind: Some(server_frame::Kind::Welcome(_))
            })
        ));
    }

    fn send(to: &str, from: &str) -> client_frame::Kind {
        client_frame::Kind::Send(Send {
            envelope: Some(Envelope {
                id: "m1".into(),
                head: Some(Head {
                    to: to.into(),
                    from: from.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn nothing_but_hello_and_ping_before_hello() {
        let (mut s, keys) = setup();
        assert_eq!(
            code(&run(&mut s, &keys, send("bob", "alice"))),
            ErrorCode::NotAuthenticated
        );
        assert_eq!(
            code(&run(&mut s, &keys, client_frame::Kind::Ack(Ack { seq: 1 }))),
            ErrorCode::NotAuthenticated
        );
        hello(&mut s, &keys);
        assert!(matches!(
            run(&mut s, &keys, send("bob", "alice"))[0],
            Action::Accept(_)
        ));
    }

    #[test]
    fn bad_token_is_refused_and_closes() {
        let (mut s, keys) = setup();
        let out = run(
            &mut s,
            &keys,
            client_frame::Kind::Hello(Hello {
                token: "nope".into(),
                device: String::new(),
            }),
        );
        assert_eq!(code(&out), ErrorCode::BadToken);
        assert_eq!(out[1], Action::Close);
    }

    #[test]
    fn spoofed_sender_is_refused() {
        let (mut s, keys) = setup();
        hello(&mut s, &keys);
        assert_eq!(
            code(&run(&mut s, &keys, send("bob", "mallory"))),
            ErrorCode::SenderMismatch
        );
    }

    #[test]
    fn accepted_envelopes_are_stamped() {
        let (mut s, keys) = setup();
        hello(&mut s, &keys);
        let out = run(&mut s, &keys, send("bob", ""));
        let Action::Accept(env) = &out[0] else {
            panic!()
        };
        let head = env.head.as_ref().unwrap();
        assert_eq!(head.from, "alice");
        assert_eq!(head.chatid, "alice:bob");
        assert_eq!(env.server_ts, 42);
    }

    #[test]
    fn faults_get_stable_codes() {
        let (mut s, keys) = setup();
        let cx = Context {
            keys: &keys,
            now: Instant::now(),
            now_ms: 0,
        };
        let mut out = Vec::new();
        s.on_frame(Err(FrameFault::TooLarge(5000)), &cx, &mut out);
        s.on_frame(Err(FrameFault::Malformed("x".into())), &cx, &mut out);
        s.on_frame(Ok(ClientFrame { kind: None }), &cx, &mut out);
        let codes: Vec<ErrorCode> = out.chunks(1).map(code).collect();
        assert_eq!(
            codes,
            [
                ErrorCode::FrameTooLarge,
                ErrorCode::MalformedFrame,
                ErrorCode::UnknownFrame
            ]
        );
    }

    #[test]
    fn rate_limit_applies_per_session() {
        let (mut s, keys) = setup();
        hello(&mut s, &keys);
        let results: Vec<bool> = (0..6)
            .map(|_| {
                matches!(
                    run(&mut s, &keys, send("bob", "alice"))[0],
                    Action::Accept(_)
                )
            })
            .collect();
        assert_eq!(
            results.iter().filter(|ok| **ok).count(),
            4,
            "burst is twice the rate: {results:?}"
        );
    }

    #[test]
    fn byte_rate_limit_refuses_large_sends_without_costing_small_ones() {
        let config = Arc::new(SessionConfig {
            node: "n1".into(),
            max_frame: 4096,
            rate_per_sec: 1000,
            bytes_per_sec: Some(2000),
        });
        let keys = TokenKeys::new(b"k", 60);
        let t0 = Instant::now();
        let mut s = Session::new("s1".into(), config, t0);
        hello(&mut s, &keys);
        let big = |id: &str| {
            client_frame::Kind::Send(Send {
                envelope: Some(Envelope {
                    id: id.into(),
                    head: Some(Head {
                        to: "bob".into(),
                        ..Default::default()
                    }),
                    body: Some(samvad_proto::v1::Body {
                        text: "x".repeat(1500),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
        };
        let at = |s: &mut Session, kind, secs: f64| {
            let cx = Context {
                keys: &keys,
                now: t0 + Duration::from_secs_f64(secs),
                now_ms: 42,
            };
            let mut out = Vec::new();
            s.on_frame(Ok(ClientFrame::of(kind)), &cx, &mut out);
            out
        };
        // A burst of 4 000 bytes: two envelopes of ~1 500, not three.
        assert!(matches!(at(&mut s, big("a"), 0.0)[0], Action::Accept(_)));
        assert!(matches!(at(&mut s, big("b"), 0.0)[0], Action::Accept(_)));
        let refused = at(&mut s, big("c"), 0.0);
        assert_eq!(code(&refused), ErrorCode::RateLimited);
        // A small one still fits what is left, and the refusal took nothing.
        assert!(matches!(
            at(&mut s, send("bob", "alice"), 0.0)[0],
            Action::Accept(_)
        ));
        // A second later the allowance has grown by 2 000 bytes.
        assert!(matches!(at(&mut s, big("c"), 1.0)[0], Action::Accept(_)));
    }

    #[test]
    fn first_sync_goes_live_once() {
        let (mut s, keys) = setup();
        hello(&mut s, &keys);
        let out = run(
            &mut s,
            &keys,
            client_frame::Kind::Sync(Sync {
                after_seq: 0,
                resume: false,
            }),
        );
        assert_eq!(out[0], Action::GoLive);
        let out = run(
            &mut s,
            &keys,
            client_frame::Kind::Sync(Sync {
                after_seq: 3,
                resume: false,
            }),
        );
        assert!(matches!(out[0], Action::Deliver(_)));
    }

    #[test]
    fn usernames() {
        assert!(valid_username("alice_1.x-y"));
        assert!(!valid_username("Al"));
        assert!(!valid_username("a\0b"));
        assert!(!valid_username(&"a".repeat(33)));
    }
}
