//! `storm`: N sessions up, then all of them drop and reconnect at once (a
//! network blip, a load balancer restart). Reports how long until every
//! session is back and synced, and how many could not come back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::{self, Latency};
use crate::scenario::{progress, Setup};
use crate::target;
use samvad_client::{Client, Connector, ServerAddr};

#[derive(Debug, Clone)]
pub struct StormPlan {
    /// How sessions are opened (transport, user names, sockets).
    pub setup: Setup,
    pub sessions: usize,
    /// Sessions opened per second before the storm.
    pub rate: u32,
    pub users: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub transport: String,
    pub sessions: usize,
    /// Sessions up before the storm.
    pub before: u64,
    /// Sessions back (connected, authenticated, synced) after it.
    pub back: u64,
    pub failed: u64,
    /// Connects tried a second time (wtransport occasionally refuses an
    /// HTTP/3 handshake under load; reported, not hidden).
    pub retried: u64,
    /// Why first attempts failed: the error (its first line, numbers
    /// left in) and how many times, most frequent first.
    pub retry_causes: Vec<(String, u64)>,
    pub first_error: Option<String>,
    /// Per session: storm → back and synced.
    pub reconnect: Latency,
    /// Storm → the last session back.
    pub all_back_seconds: f64,
    /// CPU time the server spent from the storm to the last session back
    /// (its `samvad_process_cpu_seconds`), per session back, in µs.
    pub server_cpu_us_per_reconnect: Option<f64>,
    /// The same for this harness (both sides of every handshake share the
    /// machine's cores).
    pub harness_cpu_us_per_reconnect: Option<f64>,
}

impl StormReport {
    pub fn summary(&self) -> String {
        format!(
            "storm over {}: {} sessions dropped at once, {} back ({} failed, {} retried{}); all back in {:.2} s\n\
             per session, drop → back and synced: {}\n\
             CPU per reconnect: server {}, harness {}",
            self.transport,
            self.before,
            self.back,
            self.failed,
            self.retried,
            self.first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
                + &self
                    .retry_causes
                    .iter()
                    .map(|(cause, n)| format!("; retried {n}× after: {cause}"))
                    .collect::<String>(),
            self.all_back_seconds,
            self.reconnect.line(),
            micros(self.server_cpu_us_per_reconnect),
            micros(self.harness_cpu_us_per_reconnect),
        )
    }
}

fn micros(us: Option<f64>) -> String {
    us.map(|us| format!("{us:.0} µs"))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU seconds of the server (from its metrics) and of this process.
async fn cpu_seconds(http: &str) -> (Option<f64>, Option<f64>) {
    let server = target::server_metric(http, "samvad_process_cpu_seconds")
        .await
        .ok();
    let harness = crate::system::process_cpu_seconds(std::process::id()).ok();
    (server, harness)
}

/// Why first attempts failed, counted by cause.
#[derive(Default)]
struct Retries {
    count: AtomicU64,
    causes: Mutex<BTreeMap<String, u64>>,
}

impl Retries {
    fn record(&self, error: &anyhow::Error) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let cause = format!("{error:#}");
        let cause = cause.lines().next().unwrap_or_default().to_owned();
        *self
            .causes
            .lock()
            .expect("no panic holds the lock")
            .entry(cause)
            .or_default() += 1;
    }

    fn causes(&self) -> Vec<(String, u64)> {
        let mut causes: Vec<_> = self
            .causes
            .lock()
            .expect("no panic holds the lock")
            .iter()
            .map(|(cause, n)| (cause.clone(), *n))
            .collect();
        causes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        causes
    }
}

/// Connects (a failed attempt is tried once more, and counted with its
/// cause in `retries`), authenticates and syncs to the end of the inbox.
async fn come_back(
    connector: &Connector,
    token: &str,
    retries: &Retries,
) -> anyhow::Result<Client> {
    let (mut client, _) = match connector.connect(token).await {
        Ok(up) => up,
        Err(e) => {
            retries.record(&e);
            connector.connect(token).await?
        }
    };
    client.sync(0, |_| {}).await?;
    Ok(client)
}

pub async fn run(server: &ServerAddr, plan: &StormPlan) -> anyhow::Result<StormReport> {
    let users: Vec<String> = (0..plan.users.clamp(1, plan.sessions.max(1)))
        .map(|i| format!("{}s{i}", plan.setup.prefix))
        .collect();
    let tokens = Arc::new(target::provision(&server.http, &users, 8).await?);
    let connector = Arc::new(plan.setup.connector(server)?);
    let retries = Arc::new(Retries::default());

    // Up, at a steady pace.
    let bar = progress::bar(plan.sessions as u64, "sessions");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate.max(1) as f64));
    let mut opening = Vec::with_capacity(plan.sessions);
    for i in 0..plan.sessions {
        ticker.tick().await;
        let (connector, tokens, bar) = (connector.clone(), tokens.clone(), bar.clone());
        let retries = retries.clone();
        opening.push(tokio::spawn(async move {
            let up = come_back(&connector, &tokens[i % tokens.len()], &retries).await;
            bar.inc(1);
            up
        }));
    }
    let mut clients = Vec::with_capacity(plan.sessions);
    for o in opening {
        if let Ok(client) = o.await? {
            clients.push(client);
        }
    }
    bar.finish_and_clear();
    let before = clients.len() as u64;

    // The storm: everyone drops, then everyone comes back at once.
    let cpu_before = cpu_seconds(&server.http).await;
    tracing::info!(
        sessions = before,
        "storm: every session drops and comes back"
    );
    let storm = Instant::now();
    futures_util::future::join_all(clients.into_iter().map(Client::close)).await;
    let mut returning = Vec::with_capacity(before as usize);
    for i in 0..before as usize {
        let (connector, tokens, retries) = (connector.clone(), tokens.clone(), retries.clone());
        returning.push(tokio::spawn(async move {
            let client = come_back(&connector, &tokens[i % tokens.len()], &retries).await?;
            let took = storm.elapsed();
            anyhow::Ok((client, took))
        }));
    }
    let mut histogram = report::new_histogram();
    let (mut back, mut failed, mut last) = (0, 0, Duration::ZERO);
    let mut first_error = None;
    let mut survivors = Vec::new();
    for r in returning {
        match r.await? {
            Ok((client, took)) => {
                back += 1;
                last = last.max(took);
                report::record(&mut histogram, took.as_micros() as u64);
                survivors.push(client);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let cpu_after = cpu_seconds(&server.http).await;
    tracing::info!(back, failed, "storm: over");
    let per_reconnect = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) * 1e6 / back.max(1) as f64)
    };
    futures_util::future::join_all(survivors.into_iter().map(Client::close)).await;
    Ok(StormReport {
        server_cpu_us_per_reconnect: per_reconnect(cpu_before.0, cpu_after.0),
        harness_cpu_us_per_reconnect: per_reconnect(cpu_before.1, cpu_after.1),
        transport: plan.setup.transport_name(),
        sessions: plan.sessions,
        before,
        back,
        failed,
        retried: retries.count.load(Ordering::Relaxed),
        retry_causes: retries.causes(),
        first_error,
        reconnect: Latency::of(&histogram),
        all_back_seconds: last.as_secs_f64(),
    })
}
