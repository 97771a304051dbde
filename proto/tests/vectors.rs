//! Test vectors for every client: `proto/vectors/frames.json` holds frames
//! as this crate encodes them (hex) beside their proto3 JSON form. This test
//! rebuilds the file from the messages below and fails if it differs (run
//! with `SAMVAD_UPDATE_VECTORS=1` to rewrite it after a deliberate change);
//! the web SDK's tests decode every vector with the generated TypeScript
//! code, compare it with the JSON, and re-encode the canonical ones byte
//! for byte. One vector is the server's encode-once form (`splice`): a
//! `seq` appended after the envelope's own fields, which is valid protobuf
//! but not the canonical field order.

use prost::Message;
use samvad_proto::splice::deliver_frame;
use samvad_proto::v1::{
    client_frame, media_event, server_frame, signal, Accepted, Ack, Action, Attachment, Body,
    ClientFrame, Deliver, DeliveryState, Envelope, Error, ErrorCode, Head, HeadType, Hello,
    HistoryPage, MediaEvent, Mute, MuteScope, Presence, Read, Receipt, Send, ServerFrame, Signal,
    Sync, SyncDone, Typing, Welcome,
};
use serde_json::{json, Value};

struct Vector {
    name: &'static str,
    message: &'static str,
    bytes: Vec<u8>,
    json: Value,
    canonical: bool,
}

fn client(name: &'static str, kind: client_frame::Kind, json: Value) -> Vector {
    Vector {
        name,
        message: "samvad.v1.ClientFrame",
        bytes: ClientFrame { kind: Some(kind) }.encode_to_vec(),
        json,
        canonical: true,
    }
}

fn server(name: &'static str, kind: server_frame::Kind, json: Value) -> Vector {
    Vector {
        name,
        message: "samvad.v1.ServerFrame",
        bytes: ServerFrame { kind: Some(kind) }.encode_to_vec(),
        json,
        canonical: true,
    }
}

fn chat_envelope() -> Envelope {
    Envelope {
        id: "m1".into(),
        head: Some(Head {
            r#type: HeadType::Chat.into(),
            to: "bob".into(),
            from: "alice".into(),
            chatid: "alice:bob".into(),
            content_type: "text".into(),
            action: Action::Message.into(),
        }),
        body: Some(Body {
            text: "héllo 👋".into(),
            ts: 1_700_000_000_000,
        }),
        attachments: vec![Attachment {
            file_id: "f1".into(),
            name: "a.png".into(),
            content_type: "image/png".into(),
            size: 1234,
            sha256: "ab".into(),
        }],
        ..Default::default()
    }
}

fn chat_envelope_json() -> Value {
    json!({
        "id": "m1",
        "head": {"type": "HEAD_TYPE_CHAT", "to": "bob", "from": "alice", "chatid": "alice:bob",
                 "contentType": "text", "action": "ACTION_MESSAGE"},
        "body": {"text": "héllo 👋", "ts": "1700000000000"},
        "attachments": [{"fileId": "f1", "name": "a.png", "contentType": "image/png",
                         "size": "1234", "sha256": "ab"}]
    })
}

fn vectors() -> Vec<Vector> {
    let mut stored = chat_envelope();
    stored.server_ts = 1_700_000_000_123;
    let mut spliced_json = chat_envelope_json();
    spliced_json["serverTs"] = json!("1700000000123");
    spliced_json["seq"] = json!("5");
    vec![
        client(
            "hello",
            client_frame::Kind::Hello(Hello {
                token: "tok".into(),
                device: "phone".into(),
            }),
            json!({"hello": {"token": "tok", "device": "phone"}}),
        ),
        client(
            "send",
            client_frame::Kind::Send(Send {
                envelope: Some(chat_envelope()),
            }),
            json!({"send": {"envelope": chat_envelope_json()}}),
        ),
        client(
            "ack past 2^53",
            client_frame::Kind::Ack(Ack {
                seq: 9_007_199_254_740_993,
            }),
            json!({"ack": {"seq": "9007199254740993"}}),
        ),
        client(
            "sync resume",
            client_frame::Kind::Sync(Sync {
                after_seq: 0,
                resume: true,
            }),
            json!({"sync": {"resume": true}}),
        ),
        client(
            "typing",
            client_frame::Kind::Typing(Typing {
                to: "bob".into(),
                chatid: "alice:bob".into(),
                active: true,
            }),
            json!({"typing": {"to": "bob", "chatid": "alice:bob", "active": true}}),
        ),
        client(
            "signal",
            client_frame::Kind::Signal(Signal {
                room: "g1".into(),
                from: String::new(),
                kind: Some(signal::Kind::Join("v=0".into())),
            }),
            json!({"signal": {"room": "g1", "join": "v=0"}}),
        ),
        client(
            "signal mute",
            client_frame::Kind::Signal(Signal {
                room: "g1".into(),
                from: String::new(),
                kind: Some(signal::Kind::Mute(Mute {
                    scope: MuteScope::Everyone as i32,
                    user: "bob".into(),
                    muted: true,
                })),
            }),
            json!({"signal": {"room": "g1", "mute": {"scope": "MUTE_SCOPE_EVERYONE", "user": "bob", "muted": true}}}),
        ),
        server(
            "signal event",
            server_frame::Kind::Signal(Signal {
                room: "g1".into(),
                from: String::new(),
                kind: Some(signal::Kind::Event(MediaEvent {
                    kind: Some(media_event::Kind::Track(media_event::Track {
                        user: "ann".into(),
                        kind: "video".into(),
                        mid: "1".into(),
                    })),
                })),
            }),
            json!({"signal": {"room": "g1", "event": {"track": {"user": "ann", "kind": "video", "mid": "1"}}}}),
        ),
        client(
            "read",
            client_frame::Kind::Read(Read {
                chatid: "alice:bob".into(),
                author: "bob".into(),
                message_ids: vec!["m1".into(), "m2".into()],
            }),
            json!({"read": {"chatid": "alice:bob", "author": "bob", "messageIds": ["m1", "m2"]}}),
        ),
        server(
            "welcome",
            server_frame::Kind::Welcome(Welcome {
                user: "alice".into(),
                session: "s1".into(),
                max_frame: 65536,
                node: "local".into(),
            }),
            json!({"welcome": {"user": "alice", "session": "s1", "maxFrame": 65536, "node": "local"}}),
        ),
        server(
            "accepted",
            server_frame::Kind::Accepted(Accepted {
                id: "m1".into(),
                server_ts: 1_700_000_000_123,
            }),
            json!({"accepted": {"id": "m1", "serverTs": "1700000000123"}}),
        ),
        Vector {
            name: "deliver, encoded once (seq appended)",
            message: "samvad.v1.ServerFrame",
            bytes: deliver_frame(&stored.encode_to_vec(), 5).to_vec(),
            json: json!({"deliver": {"envelope": spliced_json}}),
            canonical: false,
        },
        server(
            "receipt",
            server_frame::Kind::Receipt(Receipt {
                seq: 7,
                message_id: "m2".into(),
                by: "bob".into(),
                state: DeliveryState::Read.into(),
                chatid: "alice:bob".into(),
                ts: 1_700_000_000_500,
                message_ids: vec!["m1".into(), "m2".into()],
            }),
            json!({"receipt": {"seq": "7", "messageId": "m2", "by": "bob", "state": "DELIVERY_STATE_READ",
                               "chatid": "alice:bob", "ts": "1700000000500", "messageIds": ["m1", "m2"]}}),
        ),
        server(
            "sync done",
            server_frame::Kind::SyncDone(SyncDone {
                last_seq: 42,
                more: true,
            }),
            json!({"syncDone": {"lastSeq": "42", "more": true}}),
        ),
        server(
            "history page",
            server_frame::Kind::History(HistoryPage {
                chatid: "g1".into(),
                messages: vec![Envelope {
                    id: "m9".into(),
                    head: Some(Head {
                        r#type: HeadType::Group.into(),
                        to: "g1".into(),
                        from: "ann".into(),
                        chatid: "g1".into(),
                        ..Default::default()
                    }),
                    seq: 3,
                    ..Default::default()
                }],
                more: false,
            }),
            json!({"history": {"chatid": "g1", "messages": [{"id": "m9",
                "head": {"type": "HEAD_TYPE_GROUP", "to": "g1", "from": "ann", "chatid": "g1"}, "seq": "3"}]}}),
        ),
        server(
            "presence",
            server_frame::Kind::Presence(Presence {
                user: "bob".into(),
                online: false,
                typing: true,
                chatid: "alice:bob".into(),
            }),
            json!({"presence": {"user": "bob", "typing": true, "chatid": "alice:bob"}}),
        ),
        server(
            "error",
            server_frame::Kind::Error(Error {
                code: ErrorCode::SenderMismatch.into(),
                message: "head.from is not you".into(),
                r#ref: "m1".into(),
            }),
            json!({"error": {"code": "ERROR_CODE_SENDER_MISMATCH", "message": "head.from is not you", "ref": "m1"}}),
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(vectors: &[Vector]) -> String {
    let list: Vec<Value> = vectors
        .iter()
        .map(|v| {
            json!({"name": v.name, "message": v.message, "hex": hex(&v.bytes),
                   "canonical": v.canonical, "json": v.json})
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "about": "Samvad wire test vectors, written by proto/tests/vectors.rs; `hex` is the protobuf \
                  encoding, `json` its proto3 JSON form; non-canonical vectors decode to `json` but \
                  re-encode differently",
        "vectors": list
    }))
    .expect("vectors serialise")
        + "\n"
}

#[test]
fn every_vector_decodes_to_the_message_it_was_built_from() {
    let mut stored = chat_envelope();
    stored.server_ts = 1_700_000_000_123;
    stored.seq = 5;
    for v in vectors() {
        if v.message == "samvad.v1.ClientFrame" {
            let f = ClientFrame::decode(v.bytes.as_slice()).expect(v.name);
            assert_eq!(f.encode_to_vec(), v.bytes, "{}", v.name);
        } else {
            let f = ServerFrame::decode(v.bytes.as_slice()).expect(v.name);
            if v.canonical {
                assert_eq!(f.encode_to_vec(), v.bytes, "{}", v.name);
            } else {
                assert_ne!(f.encode_to_vec(), v.bytes, "{} is not canonical", v.name);
                assert_eq!(
                    f.kind,
                    Some(server_frame::Kind::Deliver(Deliver {
                        envelope: Some(stored.clone())
                    }))
                );
            }
        }
    }
}

#[test]
fn the_vectors_file_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/frames.json");
    let want = render(&vectors());
    if std::env::var_os("SAMVAD_UPDATE_VECTORS").is_some() {
        std::fs::write(path, &want).expect("write vectors");
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "proto/vectors/frames.json is stale: run `SAMVAD_UPDATE_VECTORS=1 cargo test -p samvad-proto --test vectors`"
    );
}
