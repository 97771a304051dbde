//! The cluster under a nemesis: 2 edges, 2 routers, 3 stores, Kafka and
//! Redis carry a steady stream of 1:1 and group messages over all three
//! transports while, every few seconds, a random process of any role (or
//! Redis; or a broker, with three of them) is killed -9 and brought back.
//!
//! The checker: every message acknowledged to its sender is in every
//! recipient's inbox exactly once, in the order it was sent within its
//! conversation, under gap-free seqs; and sessions keep receiving live
//! after the faults. Senders retry what was not acknowledged with the same
//! id (on an error frame, a silent server or a dead edge), as a client
//! does; receivers reconnect when their edge dies and sync after the last
//! seq they hold.
//!
//! In the suite it runs short, on one broker (`nemesis_loses_and_repeats_nothing`).
//! The long bench run is the same test with `NEMESIS_SECS`, `NEMESIS_BROKERS=3`
//! (broker faults too) and `--run-ignored all` (`bench/nemesis.sh`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samvad_client::rest;
use samvad_client::{chat, group_message, Client, ServerAddr, TransportKind};
use samvad_proto::v1::{client_frame, server_frame, Ack, Envelope};
use samvad_testkit::samvad::cluster::Cluster;

/// How long a sender waits for the ack of one send before it retries.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// A message is never acknowledged within this: the cluster is stuck.
const STUCK: Duration = Duration::from_secs(90);

/// The edges as clients see them: a generation bumped when one dies, its
/// address while it runs.
#[derive(Default)]
struct Edges {
    generation: Vec<u64>,
    addr: Vec<Option<ServerAddr>>,
}

type SharedEdges = Arc<Mutex<Edges>>;

/// A live edge, preferring `preferred`: (index, generation, address).
async fn pick_edge(edges: &SharedEdges, preferred: usize) -> (usize, u64, ServerAddr) {
    loop {
        {
            let e = edges.lock().unwrap();
            let n = e.addr.len();
            for k in 0..n {
                let i = (preferred + k) % n;
                if let Some(addr) = &e.addr[i] {
                    return (i, e.generation[i], addr.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn edge_alive(edges: &SharedEdges, index: usize, generation: u64) -> bool {
    edges.lock().unwrap().generation[index] == generation
}

/// What one conversation's sender does.
struct Sender {
    tokens: rest::Tokens,
    kind: TransportKind,
    /// Builds the envelope of message `id`.
    envelope: Box<dyn Fn(&str) -> Envelope + Send>,
    preferred_edge: usize,
}

#[derive(Debug, Default)]
struct SenderReport {
    acked: Vec<String>,
    retries: u64,
    errors: BTreeMap<String, u64>,
}

async fn run_sender(
    s: Sender,
    edges: SharedEdges,
    stop: Arc<AtomicBool>,
    pace: Duration,
) -> SenderReport {
    let mut report = SenderReport::default();
    let mut conn: Option<(Client, usize, u64)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("{}-{n}", s.tokens.user);
        let first_try = Instant::now();
        loop {
            assert!(
                first_try.elapsed() < STUCK,
                "{id} not acknowledged within {STUCK:?}: {report:?}"
            );
            if conn
                .as_ref()
                .is_some_and(|(_, i, g)| !edge_alive(&edges, *i, *g))
            {
                conn = None;
            }
            let (client, _, _) = match &mut conn {
                Some(c) => c,
                None => {
                    let (i, g, addr) = pick_edge(&edges, s.preferred_edge).await;
                    match Client::connect(s.kind, &addr, &s.tokens.access_token).await {
                        Ok((c, _)) => conn.insert((c, i, g)),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
            };
            let sent = client
                .send(client_frame::Kind::Send(samvad_proto::v1::Send {
                    envelope: Some((s.envelope)(&id)),
                }))
                .await;
            if sent.is_err() {
                conn = None;
                report.retries += 1;
                continue;
            }
            match wait_ack(client, &id).await {
                Ok(()) => break,
                Err(Some(code)) => {
                    *report.errors.entry(code).or_default() += 1;
                    report.retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(None) => {
                    // Silence or a closed session: another connection.
                    conn = None;
                    report.retries += 1;
                }
            }
        }
        report.acked.push(id);
        n += 1;
        tokio::time::sleep(pace).await;
    }
    if let Some((c, _, _)) = conn {
        c.close().await;
    }
    report
}

/// Waits for the ack of `id`: `Err(Some(code))` for an error frame,
/// `Err(None)` if the session went quiet or closed.
async fn wait_ack(client: &mut Client, id: &str) -> Result<(), Option<String>> {
    let deadline = Instant::now() + ACK_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client.recv_timeout(left).await.map_err(|_| None)?;
        match frame.kind {
            Some(server_frame::Kind::Accepted(a)) if a.id == id => return Ok(()),
            Some(server_frame::Kind::Error(e)) => {
                return Err(Some(e.code().short_name().to_string()))
            }
            _ => {}
        }
    }
}

/// What a receiver saw: every inbox entry, in seq order.
#[derive(Debug, Default)]
struct ReceiverLog {
    /// (seq, id, from).
    entries: Vec<(u64, String, String)>,
    live: u64,
    repeats: u64,
    /// Live deliveries that skipped a seq (a push lost): resynced.
    gaps: u64,
    reconnects: u64,
    last_live: Option<Instant>,
}

impl ReceiverLog {
    fn last_seq(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.0)
    }

    /// Takes a delivery; false if it skipped a seq.
    fn take(&mut self, env: &Envelope, live: bool) -> bool {
        let last = self.last_seq();
        if env.seq <= last {
            self.repeats += 1;
            return true;
        }
        if env.seq > last + 1 {
            return false;
        }
        let from = env.head.as_ref().map_or("", |h| h.from.as_str());
        self.entries
            .push((env.seq, env.id.clone(), from.to_string()));
        if live {
            self.live += 1;
            self.last_live = Some(Instant::now());
        }
        true
    }
}

async fn run_receiver(
    tokens: rest::Tokens,
    kind: TransportKind,
    preferred_edge: usize,
    edges: SharedEdges,
    log: Arc<Mutex<ReceiverLog>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let (edge, generation, addr) = pick_edge(&edges, preferred_edge).await;
        let Ok((mut c, _)) = Client::connect(kind, &addr, &tokens.access_token).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        log.lock().unwrap().reconnects += 1;
        if receive(&mut c, &log, &stop, || edge_alive(&edges, edge, generation))
            .await
            .is_ok()
        {
            c.close().await;
        }
    }
}

/// Syncs after the last seq held, then takes live deliveries until the
/// session fails, skips a seq, or `stop`.
async fn receive(
    c: &mut Client,
    log: &Mutex<ReceiverLog>,
    stop: &AtomicBool,
    edge_alive: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let mut after = log.lock().unwrap().last_seq();
    loop {
        c.send(client_frame::Kind::Sync(samvad_proto::v1::Sync {
            after_seq: after,
            resume: false,
        }))
        .await?;
        let done = loop {
            // A sync's answer may wait for a takeover (crate::common::SYNC_WAIT).
            let frame = c.recv_timeout(crate::common::SYNC_WAIT).await?;
            match frame.kind {
                Some(server_frame::Kind::Deliver(d)) => {
                    let env = d.envelope.unwrap_or_default();
                    if !log.lock().unwrap().take(&env, false) {
                        anyhow::bail!("a gap in a sync page");
                    }
                }
                Some(server_frame::Kind::SyncDone(done)) => break done,
                _ => {}
            }
        };
        after = done.last_seq;
        if after > 0 {
            c.send(client_frame::Kind::Ack(Ack { seq: after })).await?;
        }
        if !done.more {
            break;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        if !edge_alive() {
            anyhow::bail!("the edge died");
        }
        let frame = match c.recv_timeout(Duration::from_millis(500)).await {
            Ok(f) => f,
            Err(e) if e.to_string().contains("timed out") => continue,
            Err(e) => return Err(e),
        };
        if let Some(server_frame::Kind::Deliver(d)) = frame.kind {
            let env = d.envelope.unwrap_or_default();
            let skipped = {
                let mut log = log.lock().unwrap();
                let taken = log.take(&env, true);
                if !taken {
                    log.gaps += 1;
                }
                !taken
            };
            if skipped {
                anyhow::bail!("a live delivery skipped a seq");
            }
            c.send(client_frame::Kind::Ack(Ack { seq: env.seq }))
                .await?;
        }
    }
    Ok(())
}

/// A small deterministic generator (the seed is printed, to replay a run).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Victim {
    Edge(usize),
    Router(usize),
    Store(usize),
    Redis,
    Broker(usize),
}

/// kill -9 of `victim`, a second down, then back (blocking: the test's
/// processes are waited for on this thread).
fn strike(cluster: &mut Cluster, edges: &SharedEdges, victim: Victim) {
    let down = Duration::from_secs(1);
    match victim {
        Victim::Edge(i) => {
            {
                let mut e = edges.lock().unwrap();
                e.generation[i] += 1;
                e.addr[i] = None;
            }
            cluster.edges[i].kill9();
            std::thread::sleep(down);
            cluster.edges[i].restart();
            let mut e = edges.lock().unwrap();
            e.generation[i] += 1;
            e.addr[i] = Some(cluster.edges[i].addr().clone());
        }
        Victim::Router(i) => {
            cluster.routers[i].kill9();
            std::thread::sleep(down);
            cluster.routers[i].restart();
        }
        Victim::Store(i) => {
            cluster.stores[i].kill9();
            std::thread::sleep(down);
            cluster.stores[i].restart();
        }
        Victim::Redis => {
            cluster.redis.kill();
            std::thread::sleep(down);
            cluster.redis.restart();
        }
        Victim::Broker(i) => {
            cluster.kafka.kill9(i);
            std::thread::sleep(down * 3);
            cluster.kafka.restart(i);
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn nemesis_run() {
    let secs: u64 = env_or("NEMESIS_SECS", 24);
    let brokers: u32 = env_or("NEMESIS_BROKERS", 1);
    let pace = Duration::from_millis(env_or("NEMESIS_PACE_MS", 10));
    // 1:1 conversations, each a sender and a receiver of its own.
    let chats: usize = env_or("NEMESIS_CHATS", 3).max(3);
    let seed: u64 = env_or("NEMESIS_SEED", {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("nemesis: {secs} s, {brokers} broker(s), {chats} chats and a group, seed {seed}");
    let kafka = samvad_testkit::Kafka::cluster(brokers);
    let mut cluster = Cluster::start_on(kafka, 2, 2, 3);
    let edges: SharedEdges = Arc::new(Mutex::new(Edges {
        generation: vec![0; 2],
        addr: cluster
            .edges
            .iter()
            .map(|e| Some(e.addr().clone()))
            .collect(),
    }));

    // Three 1:1 conversations and a group, each over its own transports.
    let kinds = [TransportKind::Ws, TransportKind::Quic, TransportKind::Wt];
    let mut receivers = Vec::new();
    for i in 0..chats {
        receivers.push(cluster.user(i % 2, &format!("recv{i}")).await);
    }
    let mut senders = Vec::new();
    for i in 0..chats {
        senders.push(cluster.user(i % 2, &format!("send{i}")).await);
    }
    let poster = cluster.user(0, "poster").await;
    // The group: the first three receivers.
    let members: Vec<String> = receivers.iter().take(3).map(|r| r.user.clone()).collect();
    let group = rest::create_group(
        &cluster.edges[0].addr().http,
        &poster.access_token,
        "nemesis",
        &members,
    )
    .await
    .unwrap();

    let stop_senders = Arc::new(AtomicBool::new(false));
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let mut logs = Vec::new();
    let mut receiver_tasks = Vec::new();
    for (i, r) in receivers.iter().enumerate() {
        let log = Arc::new(Mutex::new(ReceiverLog::default()));
        logs.push(log.clone());
        receiver_tasks.push(tokio::spawn(run_receiver(
            r.clone(),
            kinds[(i + 1) % 3],
            (i + 1) % 2,
            edges.clone(),
            log,
            stop_receivers.clone(),
        )));
    }
    let mut sender_tasks = Vec::new();
    // Per sender: who receives its messages.
    let mut audience: Vec<(String, Vec<String>)> = Vec::new();
    for (i, s) in senders.iter().enumerate() {
        let (from, to) = (s.user.clone(), receivers[i].user.clone());
        audience.push((from.clone(), vec![to.clone()]));
        sender_tasks.push(tokio::spawn(run_sender(
            Sender {
                tokens: s.clone(),
                kind: kinds[i % 3],
                envelope: Box::new(move |id| chat(id, &from, &to, "nemesis")),
                preferred_edge: i % 2,
            },
            edges.clone(),
            stop_senders.clone(),
            pace,
        )));
    }
    {
        let (from, gid) = (poster.user.clone(), group.id.clone());
        audience.push((from.clone(), members.clone()));
        sender_tasks.push(tokio::spawn(run_sender(
            Sender {
                tokens: poster.clone(),
                kind: TransportKind::Quic,
                envelope: Box::new(move |id| group_message(id, &from, &gid, "nemesis")),
                preferred_edge: 1,
            },
            edges.clone(),
            stop_senders.clone(),
            pace,
        )));
    }

    // The nemesis.
    let mut dice = Dice(seed);
    let mut victims = Vec::new();
    for i in 0..2 {
        victims.push(Victim::Edge(i));
        victims.push(Victim::Router(i));
    }
    for i in 0..3 {
        victims.push(Victim::Store(i));
    }
    victims.push(Victim::Redis);
    if brokers >= 3 {
        for i in 0..brokers as usize {
            victims.push(Victim::Broker(i));
        }
    }
    let start = Instant::now();
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while start.elapsed() < Duration::from_secs(secs) {
        let victim = victims[dice.roll(victims.len())];
        faults.push((start.elapsed().as_secs_f32(), victim));
        tokio::task::block_in_place(|| strike(&mut cluster, &edges, victim));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let last_fault = Instant::now();
    // Traffic goes on with every process up, at least 4 s and until every
    // receiver has had a live delivery since the last fault (or 30 s): a
    // store killed last may take its successor's transaction timeout
    // (10 s) to come back, and the check below is that sessions receive
    // again, not how soon.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let recovered = Instant::now() + Duration::from_secs(30);
    while Instant::now() < recovered
        && !logs.iter().all(|log: &Arc<Mutex<ReceiverLog>>| {
            log.lock()
                .unwrap()
                .last_live
                .is_some_and(|t| t > last_fault)
        })
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop_senders.store(true, Ordering::Relaxed);
    let mut reports = Vec::new();
    for t in sender_tasks {
        reports.push(t.await.unwrap());
    }
    let acked: usize = reports.iter().map(|r| r.acked.len()).sum();

    // Every acknowledged message reaches its recipients' live sessions.
    let expected: HashMap<&str, usize> = receivers
        .iter()
        .map(|r| {
            let n = audience
                .iter()
                .zip(&reports)
                .filter(|((_, to), _)| to.contains(&r.user))
                .map(|(_, rep)| rep.acked.len())
                .sum();
            (r.user.as_str(), n)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind: Vec<(String, usize, usize)> = receivers
            .iter()
            .zip(&logs)
            .map(|(r, log)| {
                let have = log
                    .lock()
                    .unwrap()
                    .entries
                    .iter()
                    .filter(|e| !e.2.is_empty())
                    .count();
                (r.user.clone(), have, expected[r.user.as_str()])
            })
            .filter(|(_, have, want)| have < want)
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "receivers behind (user, have, acked): {behind:?}; faults {faults:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_receivers.store(true, Ordering::Relaxed);
    for t in receiver_tasks {
        t.await.unwrap();
    }

    // The checker, on each inbox as a fresh device reads it from the start.
    let (_, _, addr) = pick_edge(&edges, 0).await;
    for (r, log) in receivers.iter().zip(&logs) {
        let (mut c, _) = Client::connect(TransportKind::Ws, &addr, &r.access_token)
            .await
            .unwrap();
        let fresh = Mutex::new(ReceiverLog::default());
        let stop = AtomicBool::new(true);
        receive(&mut c, &fresh, &stop, || true).await.unwrap();
        c.close().await;
        let inbox = fresh.into_inner().unwrap().entries;
        let seqs: Vec<u64> = inbox.iter().map(|e| e.0).collect();
        assert_eq!(
            seqs,
            (1..=inbox.len() as u64).collect::<Vec<_>>(),
            "{}: gap-free",
            r.user
        );
        for ((from, to), rep) in audience.iter().zip(&reports) {
            if !to.contains(&r.user) {
                continue;
            }
            let got: Vec<&str> = inbox
                .iter()
                .filter(|e| &e.2 == from)
                .map(|e| e.1.as_str())
                .collect();
            let want: Vec<&str> = rep.acked.iter().map(String::as_str).collect();
            if got != want {
                let missing: Vec<&&str> = want.iter().filter(|w| !got.contains(w)).collect();
                panic!(
                    "{}'s inbox from {from}: {} entries for {} acknowledged; missing {:?}; \
                     faults {faults:?}",
                    r.user,
                    got.len(),
                    want.len(),
                    missing.iter().take(10).collect::<Vec<_>>()
                );
            }
        }
        let log = log.lock().unwrap();
        assert!(
            log.last_live.is_some_and(|t| t > last_fault),
            "{}: no live delivery after the last fault: {log:?}",
            r.user
        );
        eprintln!(
            "nemesis: {} holds {} entries; {} live, {} repeats, {} gaps, {} connections",
            r.user,
            inbox.len(),
            log.live,
            log.repeats,
            log.gaps,
            log.reconnects
        );
    }
    let retries: u64 = reports.iter().map(|r| r.retries).sum();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for r in &reports {
        for (code, n) in &r.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
    }
    eprintln!(
        "nemesis: {acked} messages acknowledged, {} faults ({faults:?}), {retries} sends retried, \
         error frames {errors:?}; 0 lost, 0 duplicated",
        faults.len()
    );
}

/// The suite's run: short, one broker, every role and Redis as victims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_loses_and_repeats_nothing() {
    nemesis_run().await;
}
