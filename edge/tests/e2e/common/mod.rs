//! Starts the real `samvad` binary on free loopback ports for a test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use samvad_load::client::{chat, Client, ServerAddr, TransportKind};
use samvad_load::rest;
use samvad_proto::v1::{client_frame, server_frame, ServerFrame};

pub mod cluster;
pub mod lossy;
pub mod push_service;

pub const T: Duration = Duration::from_secs(10);

/// How long a sync's answer may take: in the cluster, right after a store
/// was killed -9, its inbox waits for the takeover (the group's session
/// timeout, then the dead store's open transaction timing out: about 14 s
/// with the tests' settings).
pub const SYNC_WAIT: Duration = Duration::from_secs(30);

/// The JSON a process writes to its `--ready-file` once it runs.
pub fn wait_ready(path: &Path, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).unwrap();
        }
        assert!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where an edge listens, from its ready file (`None` for other roles).
pub fn edge_addr(info: &serde_json::Value) -> Option<ServerAddr> {
    let hash = info["cert_sha256"].as_str()?;
    Some(ServerAddr {
        quic: info["quic"].as_str()?.parse().ok()?,
        http: format!("http://{}", info["http"].as_str()?),
        cert_sha256: hex::decode(hash).ok()?.try_into().ok()?,
    })
}

pub struct TestServer {
    child: Option<Child>,
    pub dir: PathBuf,
    pub addr: ServerAddr,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Self::start_in(tmp.path(), extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `dir` (a restart when `dir` holds a database).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Self {
        Self::start_limited(dir, extra, None)
    }

    /// A server that may open at most `files` files (soft and hard limit).
    pub fn start_with_open_files(files: u64, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Self::start_limited(tmp.path(), extra, Some(files));
        s._tmp = Some(tmp);
        s
    }

    fn start_limited(dir: &Path, extra: &[&str], files: Option<u64>) -> Self {
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut command = Command::new(env!("CARGO_BIN_EXE_samvad"));
        if let Some(files) = files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only setrlimit is called, which
            // is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: files,
                        rlim_max: files,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--durability",
                "buffer",
            ])
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .env("SAMVAD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn samvad");
        let info = wait_ready(&ready, "samvad serve");
        let addr = edge_addr(&info).expect("an edge's ready file");
        TestServer {
            child: Some(child),
            dir: dir.to_path_buf(),
            addr,
            _tmp: None,
        }
    }

    /// kill -9: no chance to flush or shut down.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Restarts on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        let dir = self.dir.clone();
        let mut fresh = Self::start_in(&dir, &[]);
        self.child = fresh.child.take();
        self.addr = fresh.addr.clone();
    }

    pub async fn user(&self, name: &str) -> rest::Tokens {
        rest::register(&self.addr.http, name, "password-123")
            .await
            .unwrap()
    }

    /// The three users most tests need: Alice, Bob and Carol.
    pub async fn alice_bob_carol(&self) -> (rest::Tokens, rest::Tokens, rest::Tokens) {
        (
            self.user("alice").await,
            self.user("bob").await,
            self.user("carol").await,
        )
    }

    pub async fn connect(&self, kind: TransportKind, tokens: &rest::Tokens) -> Client {
        Client::connect(kind, &self.addr, &tokens.access_token)
            .await
            .unwrap()
            .0
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

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

/// The harness's view of a Samvad server at `addr`, sessions opened as
/// `setup` says.
pub fn samvad_system(
    addr: &ServerAddr,
    setup: &samvad_load::scenario::Setup,
) -> std::sync::Arc<samvad_load::system::System> {
    std::sync::Arc::new(samvad_load::system::System::samvad(addr.clone(), setup).unwrap())
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
