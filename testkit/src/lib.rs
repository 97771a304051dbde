//! Real external services for tests, each on a free loopback port, started
//! for one test and killed when dropped: Apache Kafka (KRaft, one broker or
//! three) and redis-server; and the peers samvad-load is
//! compared with, nats-server, ejabberd, Janus and Centrifugo. Nothing is
//! mocked. With the `samvad` feature, [`samvad`] starts the product itself:
//! `samvad serve`, or a cluster of its roles on these services.

#[cfg(feature = "samvad")]
pub mod samvad;

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
    wait_listening_within(port, what, Duration::from_secs(30), || None);
}

/// Waits up to `patience` until `port` takes connections; `exited` says
/// why the server never will (it exited, with what it logged), and is
/// asked while waiting so that such a server fails at once.
fn wait_listening_within(
    port: u16,
    what: &str,
    patience: Duration,
    mut exited: impl FnMut() -> Option<String>,
) {
    let deadline = Instant::now() + patience;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(why) = exited() {
            panic!("{what} exited before listening on {port}: {why}");
        }
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

/// The Apache Kafka release the tests and benchmarks run
/// (`scripts/kafka/pom.xml` names the same one).
pub const KAFKA_VERSION: &str = "4.4.0";

/// Where `scripts/kafka/install.sh` put the broker's jars: `$KAFKA_LIBS`,
/// else `~/.cache/samvad/kafka-<version>/libs`.
pub fn kafka_libs() -> PathBuf {
    if let Ok(path) = std::env::var("KAFKA_LIBS") {
        return path.into();
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_default());
    home.join(format!(".cache/samvad/kafka-{KAFKA_VERSION}/libs"))
}

/// Kafka's logging: warnings and worse, to stderr (which tests discard).
const KAFKA_LOG4J: &str = "Configuration:
  Appenders:
    Console:
      name: STDERR
      target: SYSTEM_ERR
      PatternLayout:
        pattern: \"[%d] %p %m (%c)%n\"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDERR
";

/// One Apache Kafka broker of a [`Kafka`] cluster, in KRaft combined mode
/// (broker and controller in one JVM).
struct KafkaNode {
    id: u32,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Guard>,
}

/// Apache Kafka in KRaft mode, started from the jars `scripts/test.sh`
/// fetched with Maven: one broker for most tests, three (replication 3,
/// `min.insync.replicas=2`) for the broker-failure ones. Every broker is
/// also a controller, so any one of three may die.
pub struct Kafka {
    nodes: Vec<KafkaNode>,
    /// `127.0.0.1:PORT[,…]`, for `bootstrap.servers`.
    pub brokers: String,
    /// The replication factor topics of this cluster should have.
    pub replication: u32,
    _dir: tempfile::TempDir,
}

impl Kafka {
    /// One broker.
    pub fn start() -> Kafka {
        Kafka::cluster(1)
    }

    /// `count` brokers, each a controller too; topics replicated to all of
    /// them (at most 3), acks from 2 when there are 3.
    pub fn cluster(count: u32) -> Kafka {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let libs = kafka_libs();
        assert!(
            libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"))
                .exists(),
            "Apache Kafka is not in {} (scripts/test.sh installs it)",
            libs.display()
        );
        std::fs::write(dir.path().join("log4j2.yaml"), KAFKA_LOG4J).expect("writing log4j2.yaml");
        let nodes: Vec<KafkaNode> = (1..=count)
            .map(|id| KafkaNode {
                id,
                port: free_port(),
                controller_port: free_port(),
                dir: dir.path().join(format!("broker{id}")),
                child: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let replication = count.min(3);
        let min_isr = if replication >= 3 { 2 } else { 1 };
        for node in &nodes {
            std::fs::create_dir_all(&node.dir).expect("creating a broker directory");
            let properties = format!(
                "process.roles=broker,controller\n\
                 node.id={id}\n\
                 controller.quorum.voters={voters}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 controller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 log.dirs={data}\n\
                 num.partitions=1\n\
                 default.replication.factor={replication}\n\
                 min.insync.replicas={min_isr}\n\
                 offsets.topic.replication.factor={replication}\n\
                 offsets.topic.num.partitions=4\n\
                 transaction.state.log.replication.factor={replication}\n\
                 transaction.state.log.min.isr={min_isr}\n\
                 transaction.state.log.num.partitions=4\n\
                 group.initial.rebalance.delay.ms=0\n\
                 group.min.session.timeout.ms=1000\n\
                 transaction.abort.timed.out.transaction.cleanup.interval.ms=1000\n\
                 auto.create.topics.enable=false\n",
                id = node.id,
                port = node.port,
                cport = node.controller_port,
                data = node.dir.join("data").display(),
            );
            std::fs::write(node.dir.join("server.properties"), properties)
                .expect("writing server.properties");
        }
        let cluster_id = java(&libs, dir.path())
            .args(["kafka.tools.StorageTool", "random-uuid"])
            .stderr(Stdio::null())
            .output()
            .expect("java is installed");
        let cluster_id = String::from_utf8_lossy(&cluster_id.stdout)
            .trim()
            .to_string();
        assert!(
            !cluster_id.is_empty(),
            "StorageTool random-uuid printed nothing"
        );
        for node in &nodes {
            let status = java(&libs, dir.path())
                .args([
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                ])
                .arg(&cluster_id)
                .arg("-c")
                .arg(node.dir.join("server.properties"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("java is installed");
            assert!(status.success(), "kafka-storage format failed");
        }
        let brokers = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",");
        let mut kafka = Kafka {
            nodes,
            brokers,
            replication,
            _dir: dir,
        };
        for i in 0..kafka.nodes.len() {
            kafka.spawn(i);
        }
        for i in 0..kafka.nodes.len() {
            kafka.wait_broker(i);
        }
        kafka
    }

    /// Waits until broker `index` listens. A JVM starting beside the rest
    /// of the suite on two busy cores can take well over the 30 s other
    /// servers get; a broker that exited (its port taken between
    /// `free_port` and its bind, a bad config) fails at once, with what it
    /// logged.
    fn wait_broker(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let (port, log) = (node.port, node.dir.join("kafka.log"));
        wait_listening_within(port, "kafka", Duration::from_secs(120), || {
            let status = node.child.as_mut()?.0.try_wait().ok().flatten()?;
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            Some(format!(
                "{status}; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        });
    }

    fn spawn(&mut self, index: usize) {
        let libs = kafka_libs();
        let root = self._dir.path().to_path_buf();
        let node = &mut self.nodes[index];
        let log = std::fs::File::create(node.dir.join("kafka.log")).expect("a log file");
        let child = java(&libs, &root)
            .args(["-Xms128m", "-Xmx768m", "-XX:+UseG1GC"])
            .arg("kafka.Kafka")
            .arg(node.dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("java is installed");
        node.child = Some(Guard(child));
    }

    /// kill -9 of broker `index` (its data stays for [`Kafka::restart`]).
    pub fn kill9(&mut self, index: usize) {
        self.nodes[index].child.take();
    }

    /// Starts broker `index` again on its data, and waits until it listens.
    pub fn restart(&mut self, index: usize) {
        self.kill9(index);
        self.spawn(index);
        self.wait_broker(index);
    }
}

/// `java` with the broker's classpath and logging.
fn java(libs: &std::path::Path, root: &std::path::Path) -> Command {
    let mut command = Command::new("java");
    command
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            root.join("log4j2.yaml").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    command
}

/// A redis-server run as a store of record, as the cluster needs it:
/// every write appended to its AOF before it is answered (`appendfsync
/// everysec`: a kill -9 of the server loses nothing it acknowledged, a
/// crash of the machine up to a second).
pub struct Redis {
    child: Option<Guard>,
    port: u16,
    dir: tempfile::TempDir,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let mut redis = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            url: format!("redis://127.0.0.1:{port}/"),
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(Guard(child));
        wait_listening(self.port, "redis-server");
    }

    /// Kills the server (to test what happens without it).
    pub fn kill(&mut self) {
        self.child.take();
    }

    /// kill -9, then the server again on the same port and files.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
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
