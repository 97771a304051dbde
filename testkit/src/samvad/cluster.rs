//! A Samvad cluster for a test: a real Apache Kafka broker, a real redis-server,
//! and `samvad edge | router | store` as separate processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use samvad_client::{rest, Client, ServerAddr, TransportKind};

use super::samvad_bin;
use crate::{Kafka, Redis};

/// One `samvad` process of the cluster.
pub struct Node {
    child: Option<Child>,
    args: Vec<String>,
    ready: PathBuf,
    /// Set for edges.
    pub addr: Option<ServerAddr>,
    /// What the node wrote to its ready file.
    pub ready_info: serde_json::Value,
}

impl Node {
    fn spawn(args: Vec<String>, ready: PathBuf) -> Node {
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(samvad_bin())
            .args(&args)
            .arg("--ready-file")
            .arg(&ready)
            .env(
                "SAMVAD_LOG",
                std::env::var("CLUSTER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn samvad");
        let info = super::wait_ready(&ready, &format!("{args:?}"));
        let addr = super::edge_addr(&info);
        Node {
            child: Some(child),
            args,
            ready,
            addr,
            ready_info: info,
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the process again with the same arguments (and data dir).
    pub fn restart(&mut self) {
        self.kill9();
        let fresh = Node::spawn(self.args.clone(), self.ready.clone());
        *self = fresh;
    }

    pub fn addr(&self) -> &ServerAddr {
        self.addr.as_ref().expect("an edge")
    }

    pub async fn connect(&self, kind: TransportKind, tokens: &rest::Tokens) -> Client {
        Client::connect(kind, self.addr(), &tokens.access_token)
            .await
            .unwrap()
            .0
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub edges: Vec<Node>,
    pub routers: Vec<Node>,
    pub stores: Vec<Node>,
    pub pushes: Vec<Node>,
    pub medias: Vec<Node>,
    /// Arguments every store started from now on is given besides the
    /// common ones.
    pub store_args: Vec<String>,
    // Dropped after the nodes (fields drop in order).
    pub redis: Redis,
    pub kafka: Kafka,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn common(&self) -> Vec<String> {
        vec![
            "--kafka".into(),
            self.kafka.brokers.clone(),
            "--redis".into(),
            self.redis.url.clone(),
            "--partitions".into(),
            "4".into(),
            "--presence-ttl".into(),
            "15".into(),
            // A node that died for good loses its partitions after this.
            "--session-timeout-ms".into(),
            "3000".into(),
            "--replication".into(),
            self.kafka.replication.to_string(),
        ]
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn start(edges: usize, routers: usize, stores: usize) -> Cluster {
        Cluster::start_on(Kafka::start(), edges, routers, stores)
    }

    /// [`Cluster::start`] on the given brokers (three, for broker faults).
    pub fn start_on(kafka: Kafka, edges: usize, routers: usize, stores: usize) -> Cluster {
        Cluster::start_with(kafka, edges, routers, stores, &[])
    }

    /// [`Cluster::start_on`] with `store_args` given to every store.
    pub fn start_with(
        kafka: Kafka,
        edges: usize,
        routers: usize,
        stores: usize,
        store_args: &[&str],
    ) -> Cluster {
        let mut cluster = Cluster {
            store_args: store_args.iter().map(|a| a.to_string()).collect(),
            edges: Vec::new(),
            routers: Vec::new(),
            stores: Vec::new(),
            pushes: Vec::new(),
            medias: Vec::new(),
            redis: Redis::start(),
            kafka,
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..stores {
            cluster.add_store(i);
        }
        for i in 0..routers {
            let mut args = vec!["router".to_string()];
            args.extend(cluster.common());
            args.extend(["--node".into(), format!("r{i}")]);
            let node = Node::spawn(args, cluster.path(&format!("router{i}.json")));
            cluster.routers.push(node);
        }
        for i in 0..edges {
            let mut args = vec!["edge".to_string()];
            args.extend(cluster.common());
            args.extend([
                "--node".into(),
                format!("e{i}"),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--http-listen".into(),
                "127.0.0.1:0".into(),
                // The tests' push service is plain HTTP on loopback.
                "--push-allow-http".into(),
                "--push-endpoint-hosts".into(),
                "127.0.0.1".into(),
                "--media-lease-ttl".into(),
                "3".into(),
            ]);
            let node = Node::spawn(args, cluster.path(&format!("edge{i}.json")));
            cluster.edges.push(node);
        }
        cluster
    }

    /// Starts store `i` (data in its own directory).
    pub fn add_store(&mut self, i: usize) {
        let mut args = vec!["store".to_string()];
        args.extend(self.common());
        args.extend([
            "--node".into(),
            format!("s{i}"),
            "--durability".into(),
            "buffer".into(),
            "--data-dir".into(),
            self.path(&format!("store{i}")).display().to_string(),
        ]);
        args.extend(self.store_args.iter().cloned());
        let node = Node::spawn(args, self.path(&format!("store{i}.json")));
        self.stores.push(node);
    }

    /// Starts a push role (`samvad push`).
    pub fn add_push(&mut self) {
        let mut args = vec!["push".to_string()];
        args.extend(self.common());
        let i = self.pushes.len();
        let node = Node::spawn(args, self.path(&format!("push{i}.json")));
        self.pushes.push(node);
    }

    /// Starts media node `m<i>` (`samvad media`), with 3-second room
    /// leases, serving its metrics on a free port.
    pub fn add_media(&mut self, i: usize) {
        let mut args = vec!["media".to_string()];
        args.extend(self.common());
        args.extend([
            "--node".into(),
            format!("m{i}"),
            "--lease-ttl".into(),
            "3".into(),
            "--media-listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ]);
        let node = Node::spawn(args, self.path(&format!("media{i}.json")));
        self.medias.push(node);
    }

    pub fn data_dir(&self, store: usize) -> PathBuf {
        self.path(&format!("store{store}"))
    }

    pub async fn user(&self, edge: usize, name: &str) -> rest::Tokens {
        rest::register(&self.edges[edge].addr().http, name, "password-123")
            .await
            .unwrap()
    }
}
