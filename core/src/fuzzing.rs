//! The properties the core's fuzz targets check (`fuzz/`), kept here so the
//! suite replays every committed corpus input on stable Rust
//! (`core/tests/fuzz_corpus.rs`) and the fuzzers and the replay cannot
//! drift. Each takes arbitrary bytes and panics only on a broken property.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prost::Message;
use samvad_proto::bus::deliver_record;
use samvad_proto::frame::FrameDecoder;
use samvad_proto::v1::{client_frame, server_frame, ClientFrame, ErrorCode, HeadType};

use crate::names::{chat_id, history_owner, valid_group_id, valid_username, MAX_ID_LEN};
use crate::session::{Action, Context, FrameFault, Session, SessionConfig};
use crate::signal::{
    from_client, kind_name, sdp, MuteScope, Signal, SignalKind, AUTO_LAYER, MAX_SDP,
};
use crate::signed_url::{DownloadGrant, UploadGrant, UrlError, UrlSigner};
use crate::token::TokenKeys;

/// Reads the fuzzer's bytes as the choices of a test.
struct Choices<'a>(&'a [u8]);

impl<'a> Choices<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    /// Up to 255 bytes, as text (lossy).
    fn text(&mut self) -> String {
        let len = usize::from(self.byte()).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

const MAX_FRAME: usize = 4096;
const RATE: u32 = 5;
/// Envelope bytes a second: a burst of 16 KiB, several frames of `MAX_FRAME`.
const BYTES_PER_SEC: u32 = 8192;
/// A virtual wall clock start (2027): tokens are issued against it.
const EPOCH_MS: i64 = 1_800_000_000_000;

/// What the session may do for its transport, judged against what it was
/// told: the session state machine fed any sequence of frames (and faults)
/// at any pace. A hello whose token is a valid user name gets a real token
/// for that user (`expired:` before the name: one that has expired), so
/// the fuzzer reaches past authentication; any other token is as sent.
///
/// Input: records of one byte of virtual time (× 10 ms) followed by one
/// length-delimited `ClientFrame` (the stream framing).
pub fn session(data: &[u8]) {
    session_user(data);
}

/// [`session`], answering who the session was welcomed as, if anyone.
pub fn session_user(data: &[u8]) -> Option<String> {
    let keys = TokenKeys::new(b"fuzz", 60);
    let config = Arc::new(SessionConfig {
        node: "edge-1".into(),
        max_frame: MAX_FRAME,
        rate_per_sec: RATE,
        bytes_per_sec: Some(BYTES_PER_SEC),
    });
    let start = Instant::now();
    let mut now = start;
    let mut now_ms = EPOCH_MS;
    let mut session = Session::new("s1".into(), config, start);
    let mut user: Option<String> = None;
    let mut sends = 0u64;
    let mut accepted_bytes = 0u64;
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut input = BytesMut::from(data);
    let mut out = Vec::new();
    while let Some((&tick, _)) = input.split_first() {
        let _ = input.split_to(1);
        now += Duration::from_millis(u64::from(tick) * 10);
        now_ms += i64::from(tick) * 10;
        let frame = match decoder.decode(&mut input) {
            Ok(Some(bytes)) => ClientFrame::decode(bytes)
                .map_err(|e| FrameFault::Malformed(e.to_string()))
                .map(|frame| with_real_token(frame, &keys, now_ms)),
            Ok(None) => return user,
            Err(e) if e.is_recoverable() => Err(FrameFault::TooLarge(MAX_FRAME as u64 + 1)),
            Err(_) => return user,
        };
        let named = match &frame {
            Ok(ClientFrame {
                kind: Some(client_frame::Kind::Hello(h)),
            }) => Some(h.token.clone()),
            _ => None,
        };
        out.clear();
        let cx = Context {
            keys: &keys,
            now,
            now_ms,
        };
        session.on_frame(frame, &cx, &mut out);
        let mut closed = false;
        for action in &out {
            assert!(!closed, "an action after Close: {out:?}");
            check_action(action, user.as_deref(), now_ms);
            match action {
                Action::Reply(f) => {
                    if let Some(server_frame::Kind::Welcome(w)) = &f.kind {
                        assert!(user.is_none(), "a second welcome");
                        let token_user = named
                            .as_deref()
                            .and_then(|t| keys.verify_access(t, now_ms as u64 / 1000).ok());
                        assert_eq!(
                            Some(&w.user),
                            token_user.as_ref(),
                            "welcome for another user"
                        );
                        user = Some(w.user.clone());
                    }
                }
                Action::Accept(env) => {
                    sends += 1;
                    accepted_bytes += env.encoded_len() as u64;
                }
                Action::Subscription { .. } => sends += 1,
                Action::Close => closed = true,
                _ => {}
            }
        }
        // The token bucket: a burst of two seconds' worth, then the rate.
        let elapsed = now.duration_since(start).as_secs_f64();
        assert!(
            sends as f64 <= f64::from(RATE) * (2.0 + elapsed) + 1.0,
            "{sends} sends in {elapsed} s"
        );
        // And the byte allowance, charged as sent: the accepted envelope
        // is the sent one with `chatid`, `seq` and `server_ts` set, which
        // 64 bytes a send of slack covers.
        assert!(
            accepted_bytes as f64
                <= f64::from(BYTES_PER_SEC) * (2.0 + elapsed) + 64.0 * sends as f64,
            "{accepted_bytes} bytes in {elapsed} s"
        );
        assert_eq!(session.user().map(|u| u.to_string()), user);
        if closed {
            return user;
        }
    }
    user
}

fn with_real_token(mut frame: ClientFrame, keys: &TokenKeys, now_ms: i64) -> ClientFrame {
    if let Some(client_frame::Kind::Hello(hello)) = &mut frame.kind {
        let now = now_ms as u64 / 1000;
        if valid_username(&hello.token) {
            hello.token = keys.issue_access(&hello.token, now);
        } else if let Some(name) = hello.token.strip_prefix("expired:") {
            if valid_username(name) {
                hello.token = keys.issue_access(name, now - 3600);
            }
        }
    }
    frame
}

/// One action, judged: nothing is done for anybody before hello, and
/// everything done after is done as the authenticated user.
fn check_action(action: &Action, user: Option<&str>, now_ms: i64) {
    let Some(user) = user else {
        match action {
            Action::Reply(f) => match &f.kind {
                Some(server_frame::Kind::Error(e)) => assert_ne!(e.code(), ErrorCode::Unspecified),
                Some(server_frame::Kind::Welcome(_) | server_frame::Kind::Pong(_)) => {}
                other => panic!("{other:?} before hello"),
            },
            Action::Close => {}
            other => panic!("{other:?} before hello"),
        }
        return;
    };
    match action {
        Action::Reply(f) => {
            if let Some(server_frame::Kind::Error(e)) = &f.kind {
                assert_ne!(e.code(), ErrorCode::Unspecified);
            }
        }
        Action::Accept(env) => {
            assert!((1..=MAX_ID_LEN).contains(&env.id.len()));
            assert_eq!((env.seq, env.server_ts), (0, now_ms));
            let head = env.head.as_ref().expect("an accepted envelope has a head");
            assert_eq!(head.from, user, "accepted as somebody else");
            match head.r#type() {
                HeadType::Chat => {
                    assert!(valid_username(&head.to));
                    assert_eq!(head.chatid, chat_id(user, &head.to));
                }
                HeadType::Group | HeadType::Channel => {
                    assert!(valid_group_id(&head.to));
                    assert_eq!(head.chatid, head.to);
                }
                other => panic!("accepted a {other:?} envelope"),
            }
        }
        Action::Deliver(record) => check_record(record, user, None),
        Action::DeliverIfMembers { group, records, .. } => {
            assert!(valid_group_id(group));
            for record in records {
                check_record(record, user, Some(group));
            }
        }
        Action::Ephemeral { to, frame } => {
            assert!(valid_username(to));
            match &frame.kind {
                Some(server_frame::Kind::Presence(p)) => assert_eq!(p.user, user),
                other => panic!("ephemeral {other:?}"),
            }
        }
        Action::Subscription { channel, id, .. } => {
            assert!(valid_group_id(channel) && (1..=MAX_ID_LEN).contains(&id.len()));
        }
        Action::Signal(signal) => {
            let kind = signal.kind.as_ref().expect("a signal passed on has a kind");
            assert!(from_client(kind), "a {} from a client", kind_name(kind));
            assert!(valid_group_id(&signal.room));
            assert!(sdp(kind).is_none_or(|sdp| sdp.len() <= MAX_SDP));
        }
        Action::GoLive | Action::Close => {}
    }
}

/// A record for an inbox: the user's own, a conversation's history, or
/// (a receipt) the author's; always in the user's name. `group` is the
/// group the transport will check membership of, if any.
fn check_record(record: &samvad_proto::bus::DeliverRecord, user: &str, group: Option<&str>) {
    let in_conversation = |chatid: &str| match group {
        Some(g) => chatid == g,
        None => chatid.split(':').any(|side| side == user),
    };
    match record.kind.as_ref().expect("a record has a kind") {
        deliver_record::Kind::Ack(_) | deliver_record::Kind::Sync(_) => {
            assert_eq!(record.user, user, "another user's cursor");
        }
        deliver_record::Kind::History(h) => {
            assert_eq!(h.user, user);
            assert!(in_conversation(&h.chatid), "history of {}", h.chatid);
            assert_eq!(record.user, history_owner(&h.chatid));
        }
        deliver_record::Kind::Hide(h) => {
            assert_eq!(h.user, user);
            assert!(record.user == user || crate::names::is_history(&record.user));
        }
        deliver_record::Kind::Receipt(r) => {
            assert_eq!(r.by, user, "a receipt in another's name");
            assert_ne!(record.user, user, "a receipt to myself");
            assert!(in_conversation(&r.chatid), "a receipt in {}", r.chatid);
        }
        other => panic!("a session made {other:?}"),
    }
}

/// Signed file URLs: a grant signed for a file checks back to itself until
/// it expires, and to nothing after; no edit of the URL's query makes it
/// check to another grant, another file or another method.
///
/// Input: the grant's fields, then edits (position, byte) to the query.
pub fn signed_url(data: &[u8]) {
    let mut c = Choices(data);
    let signer = UrlSigner::new(b"fuzz");
    let file = c.text();
    let upload = UploadGrant {
        user: c.text(),
        conversation: c.text(),
        size: c.u64(),
        content_type: c.text(),
        expires: c.u64() >> 1,
    };
    let download = DownloadGrant {
        user: upload.user.clone(),
        expires: upload.expires,
    };
    let expires = upload.expires;
    let up = signer.upload_query(&file, upload.clone());
    let down = signer.download_query(&file, download.clone());
    assert_eq!(signer.check_upload(&file, &up, expires), Ok(upload.clone()));
    assert_eq!(
        signer.check_download(&file, &down, expires),
        Ok(download.clone())
    );
    assert_eq!(
        signer.check_upload(&file, &up, expires + 1),
        Err(UrlError::Expired)
    );
    assert!(signer.check_download(&file, &up, 0).is_err(), "PUT as GET");
    assert!(signer.check_upload(&file, &down, 0).is_err(), "GET as PUT");
    let other = format!("{file}x");
    assert!(signer.check_upload(&other, &up, 0).is_err(), "another file");
    let mut edited = up.into_bytes();
    let edits = c.rest();
    for edit in edits.chunks(2) {
        if let [at, byte] = *edit {
            if !edited.is_empty() {
                let at = usize::from(at) % edited.len();
                edited[at] = byte;
            }
        }
    }
    let edited = String::from_utf8_lossy(&edited);
    if let Ok(grant) = signer.check_upload(&file, &edited, 0) {
        assert_eq!(grant, upload, "an edited URL checks to another grant");
    }
    let _ = signer.check_download(&file, &edited, 0);
}

/// Signals as the wire carries them: what decodes as a `Signal` has one
/// encoding, which decodes back to it, and a kind with a name.
pub fn signal(data: &[u8]) {
    let Ok(signal) = Signal::decode(data) else {
        return;
    };
    let bytes = signal.encode_to_vec();
    assert_eq!(
        Signal::decode(bytes.as_slice()).ok().as_ref(),
        Some(&signal)
    );
    if let Some(kind) = &signal.kind {
        assert!(!kind_name(kind).is_empty());
    }
}

/// Seed inputs for the targets: what real clients do, so the fuzzers start
/// past the first frame. `name` → bytes; written to `fuzz/corpus/<target>/`
/// by `core/tests/fuzz_corpus.rs`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use samvad_proto::frame::encode_delimited;
    use samvad_proto::v1::{
        Ack, Body, Envelope, Head, Hello, Hide, History, Ping, Read, Send, Signal, Sync, Typing,
    };
    use samvad_proto::v1::{Action as EnvAction, HeadType as T};
    let session = |frames: Vec<client_frame::Kind>| {
        let mut bytes = Vec::new();
        for (i, kind) in frames.into_iter().enumerate() {
            bytes.push(if i % 3 == 2 { 120 } else { 1 });
            bytes.extend_from_slice(&encode_delimited(&ClientFrame::of(kind)));
        }
        bytes
    };
    let hello = |token: &str| {
        client_frame::Kind::Hello(Hello {
            token: token.into(),
            device: "phone".into(),
        })
    };
    let send = |id: &str, kind: T, to: &str, action: EnvAction, text: &str| {
        client_frame::Kind::Send(Send {
            envelope: Some(Envelope {
                id: id.into(),
                head: Some(Head {
                    r#type: kind as i32,
                    to: to.into(),
                    action: action as i32,
                    ..Default::default()
                }),
                body: Some(Body {
                    text: text.into(),
                    ts: 0,
                }),
                ref_id: if action == EnvAction::Delete {
                    "m1".into()
                } else {
                    String::new()
                },
                ref_from: if action == EnvAction::Delete {
                    "alice".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
        })
    };
    let ids = || vec!["m1".to_string(), "m2".to_string()];
    let chat = session(vec![
        hello("alice"),
        client_frame::Kind::Sync(Sync {
            after_seq: 0,
            resume: false,
        }),
        send("m1", T::Chat, "bob", EnvAction::Message, "hi"),
        client_frame::Kind::Ack(Ack { seq: 3 }),
        client_frame::Kind::Read(Read {
            chatid: "alice:bob".into(),
            author: "bob".into(),
            message_ids: ids(),
        }),
        client_frame::Kind::Hide(Hide {
            chatid: "alice:bob".into(),
            author: "bob".into(),
            message_ids: ids(),
        }),
        client_frame::Kind::History(History {
            chatid: "alice:bob".into(),
            before_seq: 0,
            limit: 20,
        }),
        client_frame::Kind::Typing(Typing {
            to: "bob".into(),
            chatid: "alice:bob".into(),
            active: true,
        }),
        send("m2", T::Chat, "bob", EnvAction::Delete, ""),
        client_frame::Kind::Ping(Ping { nonce: 7 }),
    ]);
    let group = session(vec![
        hello("bob"),
        send("g1", T::Group, "team", EnvAction::Message, "all"),
        send("c1", T::Channel, "news", EnvAction::Subscribe, ""),
        client_frame::Kind::Read(Read {
            chatid: "team".into(),
            author: "alice".into(),
            message_ids: ids(),
        }),
        client_frame::Kind::History(History {
            chatid: "team".into(),
            before_seq: 9,
            limit: 0,
        }),
        client_frame::Kind::Signal(Signal {
            room: "team".into(),
            from: String::new(),
            kind: Some(SignalKind::Join("v=0\r\n".into())),
        }),
        client_frame::Kind::Signal(Signal {
            room: "team".into(),
            from: String::new(),
            kind: Some(crate::signal::mute(MuteScope::Myself, "", true)),
        }),
    ]);
    let refused = session(vec![
        send("early", T::Chat, "bob", EnvAction::Message, "before hello"),
        hello("expired:alice"),
        hello("not a token"),
    ]);
    let mut flood = session(vec![hello("carl")]);
    for i in 0..30 {
        flood.extend(session(vec![send(
            &format!("f{i}"),
            T::Chat,
            "dave",
            EnvAction::Message,
            "x",
        )]));
    }
    let text = |s: &str| {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let url = [
        text("file-1"),
        text("alice"),
        text("alice:bob"),
        42u64.to_be_bytes().to_vec(),
        text("image/png"),
        1_800_000_000u64.to_be_bytes().to_vec(),
        vec![3, b'X', 40, b'%'],
    ]
    .concat();
    let signal = |kind| {
        Signal {
            room: "team".into(),
            from: String::new(),
            kind: Some(kind),
        }
        .encode_to_vec()
    };
    let mute = signal(crate::signal::mute(MuteScope::ForMe, "bob", true));
    let layer = signal(crate::signal::layer("ann", AUTO_LAYER));
    vec![
        ("session", "chat", chat),
        ("session", "group", group),
        ("session", "refused", refused),
        ("session", "flood", flood),
        ("signed_url", "upload", url),
        ("signal", "mute", mute),
        ("signal", "layer", layer),
    ]
}
