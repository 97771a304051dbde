//! What the end-to-end tests share: the server under test (from
//! samvad-testkit), and waiting for frames of a kind, syncing every page,
//! REST calls with a token.

use std::time::Duration;

use samvad_client::{chat, Client};
use samvad_proto::v1::{client_frame, server_frame, ServerFrame};
pub use samvad_testkit::samvad::TestServer;

pub mod lossy;
pub mod push_service;

pub const T: Duration = Duration::from_secs(10);

/// How long a sync's answer may take: in the cluster, right after a store
/// was killed -9, its inbox waits for the takeover (the group's session
/// timeout, then the dead store's open transaction timing out: about 14 s
/// with the tests' settings).
pub const SYNC_WAIT: Duration = Duration::from_secs(30);

pub fn kind_of(frame: &ServerFrame) -> &'static str {
    match &frame.kind {
        Some(server_frame::Kind::Welcome(_)) => "welcome",
        Some(server_frame::Kind::Accepted(_)) => "accepted",
        Some(server_frame::Kind::Deliver(_)) => "deliver",
        Some(server_frame::Kind::Receipt(_)) => "receipt",
        Some(server_frame::Kind::SyncDone(_)) => "sync_done",
        Some(server_frame::Kind::Presence(_)) => "presence",
        Some(server_frame::Kind::Signal(_)) => "signal",
        Some(server_frame::Kind::Error(_)) => "error",
        Some(server_frame::Kind::Pong(_)) => "pong",
        Some(server_frame::Kind::History(_)) => "history",
        None => "none",
    }
}

/// The error code of an error frame, or a panic.
pub fn error_code(frame: &ServerFrame) -> String {
    match &frame.kind {
        Some(server_frame::Kind::Error(e)) => e.code().short_name(),
        _ => panic!("expected an error frame, got {frame:?}"),
    }
}

pub async fn send_chat(c: &mut Client, id: &str, from: &str, to: &str, text: &str) {
    c.send(client_frame::Kind::Send(samvad_proto::v1::Send {
        envelope: Some(chat(id, from, to, text)),
    }))
    .await
    .unwrap();
}

/// Waits for the next frame of kind `kind`, skipping others.
pub async fn next_of(c: &mut Client, kind: &str) -> ServerFrame {
    loop {
        let f = c.recv_timeout(T).await.unwrap();
        if kind_of(&f) == kind {
            return f;
        }
    }
}

/// Syncs after `after` through every page; returns (seq, id, text) of the
/// delivered messages and the number of receipts.
pub async fn sync_all(c: &mut Client, mut after: u64) -> (Vec<(u64, String, String)>, u64) {
    let mut messages = Vec::new();
    let mut receipts = 0;
    loop {
        c.send(client_frame::Kind::Sync(samvad_proto::v1::Sync {
            after_seq: after,
            resume: false,
        }))
        .await
        .unwrap();
        loop {
            let f = c.recv_timeout(SYNC_WAIT).await.unwrap();
            match f.kind {
                Some(server_frame::Kind::Deliver(d)) => {
                    let env = d.envelope.unwrap();
                    messages.push((env.seq, env.id, env.body.unwrap_or_default().text));
                }
                Some(server_frame::Kind::Receipt(_)) => receipts += 1,
                Some(server_frame::Kind::SyncDone(done)) => {
                    after = done.last_seq;
                    if done.more {
                        break;
                    }
                    return (messages, receipts);
                }
                _ => {}
            }
        }
    }
}

/// Syncs from `after`, then takes live deliveries until `n` messages came:
/// an accepted message is durable on `inbound` but may still be on its way
/// to the inbox when the sync runs; it then arrives live, right after.
pub async fn sync_expecting(c: &mut Client, after: u64, n: usize) -> Vec<(u64, String, String)> {
    let (mut messages, _) = sync_all(c, after).await;
    while messages.len() < n {
        if let Some(server_frame::Kind::Deliver(d)) = next_of(c, "deliver").await.kind {
            let env = d.envelope.unwrap();
            messages.push((env.seq, env.id, env.body.unwrap_or_default().text));
        }
    }
    messages
}

/// The next message a user sent (a `Deliver` with a sender), skipping
/// system messages and other frames.
pub async fn next_user_message(c: &mut Client) -> samvad_proto::v1::Envelope {
    loop {
        if let Some(server_frame::Kind::Deliver(d)) = next_of(c, "deliver").await.kind {
            let env = d.envelope.unwrap();
            if env.head.as_ref().is_some_and(|h| !h.from.is_empty()) {
                return env;
            }
        }
    }
}

/// A REST call with a bearer `token`: the status and the JSON answer
/// (`null` when there is none).
pub async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// The server's `/metrics` page.
pub async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.addr.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of a metric without labels; 0 until the server serves it.
pub async fn metric(server: &TestServer, name: &str) -> u64 {
    metrics(server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0, |v| v.trim().parse().unwrap())
}
