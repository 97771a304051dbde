//! The real `samvad` binary for a test: one `samvad serve` ([`TestServer`])
//! or a cluster of roles over Kafka and Redis ([`cluster::Cluster`]), on free
//! loopback ports and temporary directories, killed -9 when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use samvad_client::{rest, Client, ServerAddr, TransportKind};

pub mod cluster;

/// The `samvad` binary the tests run: `$SAMVAD_BIN`, else the one cargo
/// built beside the running test binary (`target/<profile>/samvad`; the
/// test binary lives in `target/<profile>/deps`). `cargo nextest run
/// --workspace` and `cargo test --workspace` build it before any test
/// runs; a test of one other package alone needs `cargo build -p samvad`
/// first.
pub fn samvad_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SAMVAD_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let beside = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("samvad"));
    match beside {
        Some(bin) if bin.exists() => bin,
        _ => panic!(
            "no samvad binary beside {}: run `cargo build -p samvad` or set SAMVAD_BIN",
            exe.display()
        ),
    }
}

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

/// One `samvad serve` on free loopback ports (`--durability buffer`: the
/// tests that need fsync say so), killed -9 when dropped.
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
        let mut command = Command::new(samvad_bin());
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
