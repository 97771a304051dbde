//! Real external services for tests, each on a free loopback port, started
//! for one test and killed when dropped: a Kafka-protocol broker (tansu,
//! in-memory storage) and redis-server; and the peers samvad-load is
//! compared with, nats-server, ejabberd and Janus. Nothing is mocked.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; bind soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("bound address")
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tansu broker with in-memory storage.
pub struct Tansu {
    _child: Guard,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub brokers: String,
}

/// `$TANSU_BIN`, else `tansu` in cargo's bin directory, else from PATH.
pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return path.into();
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let candidate = home.join("bin/tansu");
    if candidate.exists() {
        candidate
    } else {
        PathBuf::from("tansu")
    }
}

impl Tansu {
    pub fn start() -> Tansu {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu is installed (scripts/test.sh installs it)");
        let child = Guard(child);
        wait_listening(port, "tansu");
        Tansu {
            _child: child,
            brokers: format!("127.0.0.1:{port}"),
        }
    }
}

/// A redis-server without persistence.
pub struct Redis {
    child: Option<Guard>,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let child = Guard(child);
        wait_listening(port, "redis-server");
        Redis {
            child: Some(child),
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// Kills the server (to test what happens without it).
    pub fn kill(&mut self) {
        self.child.take();
    }
}

/// nats-server with its WebSocket listener (no TLS), for the harness's
/// side-by-side client.
pub struct Nats {
    child: Guard,
    /// `ws://127.0.0.1:PORT`.
    pub ws_url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (port, ws) = (free_port(), free_port());
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nwebsocket {{ listen: \"127.0.0.1:{ws}\", no_tls: true }}\n"
            ),
        )
        .expect("writing nats.conf");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test.sh installs it)");
        let child = Guard(child);
        wait_listening(ws, "nats-server");
        Nats {
            child,
            ws_url: format!("ws://127.0.0.1:{ws}"),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// The Janus configuration of the media comparison (`bench/media.sh`).
const JANUS_CONFIG: [(&str, &str); 3] = [
    (
        "janus.jcfg",
        include_str!("../../bench/peers/janus/janus.jcfg"),
    ),
    (
        "janus.transport.http.jcfg",
        include_str!("../../bench/peers/janus/janus.transport.http.jcfg"),
    ),
    (
        "janus.plugin.videoroom.jcfg",
        include_str!("../../bench/peers/janus/janus.plugin.videoroom.jcfg"),
    ),
];

/// Janus with its videoroom plugin and HTTP API, configured as in
/// `bench/media.sh`.
pub struct Janus {
    child: Guard,
    /// `http://127.0.0.1:PORT/janus`.
    pub api: String,
    _dir: tempfile::TempDir,
}

impl Janus {
    pub fn start() -> Janus {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let root = dir.path().to_str().expect("a UTF-8 temporary path");
        for (name, text) in JANUS_CONFIG {
            let text = text
                .replace("@DIR@", root)
                .replace("@PORT@", &port.to_string());
            std::fs::write(dir.path().join(name), text).expect("writing Janus's configuration");
        }
        let log = std::fs::File::create(dir.path().join("janus.log")).expect("a log file");
        let child = Command::new("janus")
            .arg("--configs-folder")
            .arg(dir.path())
            .arg("--config")
            .arg(dir.path().join("janus.jcfg"))
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("janus is installed (scripts/test.sh installs it)");
        let child = Guard(child);
        wait_listening(port, "janus");
        Janus {
            child,
            api: format!("http://127.0.0.1:{port}/janus"),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// The ejabberd configuration of the side-by-side runs (`bench/run.sh`).
const EJABBERD_YML: &str = include_str!("../../bench/peers/ejabberd.yml");

/// ejabberd on its own Erlang node name and port, configured as in
/// `bench/run.sh`: XMPP over WebSocket at `/ws`, the HTTP API at `/api`.
pub struct Ejabberd {
    _child: Guard,
    node: String,
    /// `http://127.0.0.1:PORT`.
    pub http: String,
    _dir: tempfile::TempDir,
}

impl Ejabberd {
    pub fn start() -> Ejabberd {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let node = format!("ejt{port}");
        let root = dir.path();
        for sub in ["cfg", "spool", "logs"] {
            std::fs::create_dir_all(root.join(sub)).expect("creating ejabberd directories");
        }
        std::fs::write(
            root.join("cfg/ejabberd.yml"),
            EJABBERD_YML.replace("@PORT@", &port.to_string()),
        )
        .expect("writing ejabberd.yml");
        std::fs::write(
            root.join("cfg/ejabberdctl.cfg"),
            format!("ERLANG_NODE={node}@localhost\n"),
        )
        .expect("writing ejabberdctl.cfg");
        // ejabberdctl runs the server as the `ejabberd` user when started
        // by root: it must reach and own the directories.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755));
        let _ = Command::new("chown")
            .args(["-R", "ejabberd"])
            .arg(root)
            .status();
        let child = Command::new("ejabberdctl")
            .arg("--config-dir")
            .arg(root.join("cfg"))
            .arg("--spool")
            .arg(root.join("spool"))
            .arg("--logs")
            .arg(root.join("logs"))
            .arg("foreground")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ejabberd is installed (scripts/test.sh installs it)");
        let ejabberd = Ejabberd {
            _child: Guard(child),
            node,
            http: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        // Listening is not enough: the API answers once the modules run.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api_answers(port) {
            assert!(
                Instant::now() < deadline,
                "ejabberd did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ejabberd
    }

    /// Process id of the Erlang VM (its memory is ejabberd's).
    pub fn pid(&self) -> u32 {
        let out = Command::new("pgrep")
            .args(["-f", &format!("beam.*{}@localhost", self.node)])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("ejabberd's Erlang VM is running")
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // The VM runs under su, outside the child we hold.
        let _ = Command::new("pkill")
            .args(["-9", "-f", &format!("{}@localhost", self.node)])
            .status();
    }
}

/// Whether ejabberd's HTTP API answers `status` with 200.
fn api_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "POST /api/status HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// Centrifugo's configuration, as `bench/run.sh` runs it.
const CENTRIFUGO_CONFIG: &str = include_str!("../../bench/peers/centrifugo.json");

/// The HMAC key of that configuration's connection tokens.
pub const CENTRIFUGO_KEY: &str = "samvad-load-centrifugo-key";

/// Where `scripts/test.sh` (`go install`) puts Centrifugo when it is not
/// on the PATH.
fn centrifugo_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("centrifugo"))
            .find(|p| p.is_file())
    }) {
        return path;
    }
    let gopath = std::env::var_os("GOPATH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join("go")))
        .unwrap_or_default();
    gopath.join("bin").join("centrifugo")
}

/// A Centrifugo server (memory engine, personal channels with history and
/// recovery, `bench/peers/centrifugo.json`) on a free loopback port.
pub struct Centrifugo {
    child: Guard,
    /// `ws://127.0.0.1:PORT/connection/websocket`.
    pub ws_url: String,
    _dir: tempfile::TempDir,
}

impl Centrifugo {
    pub fn start() -> Centrifugo {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let config = dir.path().join("centrifugo.json");
        std::fs::write(
            &config,
            CENTRIFUGO_CONFIG.replace("\"port\": 8000", &format!("\"port\": {port}")),
        )
        .expect("writing Centrifugo's configuration");
        let child = Command::new(centrifugo_binary())
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("centrifugo is installed (scripts/test.sh installs it with go install)");
        let child = Guard(child);
        wait_listening(port, "centrifugo");
        Centrifugo {
            child,
            ws_url: format!("ws://127.0.0.1:{port}/connection/websocket"),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }
}
