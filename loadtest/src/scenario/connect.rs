//! `connect`: open N sessions at a given rate, hold them idle, and report
//! connect times, failures and the server's memory per session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::report::{self, Latency};
use crate::scenario::{progress, Setup};
use crate::system::System;
use crate::target;

#[derive(Debug, Clone)]
pub struct ConnectPlan {
    /// How sessions are opened (transport, user names, sockets).
    pub setup: Setup,
    /// Sessions to open.
    pub sessions: usize,
    /// Sessions opened per second.
    pub rate: u32,
    /// Users the sessions are spread over (each user has sessions/users
    /// devices): registering is deliberately slow (argon2), sessions are not.
    pub users: usize,
    /// How long the sessions stay open, idle, once all are up.
    pub hold: Duration,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ConnectReport {
    /// `samvad/ws`, `ejabberd/ws`, …
    pub system: String,
    pub sessions: usize,
    pub connected: u64,
    pub failed: u64,
    /// Sessions whose first attempt failed and that were tried once more
    /// (wtransport occasionally refuses an HTTP/3 handshake under load with
    /// H3_FRAME_UNEXPECTED; reported, not hidden).
    pub retried: u64,
    pub first_error: Option<String>,
    /// Transport setup plus hello → welcome, per session.
    pub connect: Latency,
    pub wall_seconds: f64,
    pub server_rss_before: u64,
    /// RSS with the first half of the sessions up and idle.
    pub server_rss_half: u64,
    pub server_rss_held: u64,
    /// Marginal memory of a session: (RSS with all up − RSS with half up)
    /// / sessions of the second half. Immune to what the server held
    /// before the run (allocator caches, registrations).
    pub server_bytes_per_session: u64,
    /// Average memory of a session: (RSS with all up − RSS before) /
    /// sessions up. Counts what the first sessions make the server set up,
    /// but does not depend on when a garbage collector ran mid-run (the
    /// marginal figure can come out as zero for a collected runtime such
    /// as ejabberd's); the side-by-side comparison uses this one.
    #[serde(default)]
    pub server_bytes_per_session_average: u64,
}

impl ConnectReport {
    pub fn summary(&self) -> String {
        format!(
            "connect with {}: {} of {} sessions up in {:.1} s ({} failed, {} retried{})\n\
             connect time: {}\n\
             server RSS: {:.1} MiB before, {:.1} MiB with half, {:.1} MiB with all sessions idle \
             → {} bytes per session (marginal), {} on average",
            self.system,
            self.connected,
            self.sessions,
            self.wall_seconds,
            self.failed,
            self.retried,
            self.first_error
                .as_deref()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default(),
            self.connect.line(),
            self.server_rss_before as f64 / 1048576.0,
            self.server_rss_half as f64 / 1048576.0,
            self.server_rss_held as f64 / 1048576.0,
            self.server_bytes_per_session,
            self.server_bytes_per_session_average,
        )
    }
}

pub async fn run(system: Arc<System>, plan: &ConnectPlan) -> anyhow::Result<ConnectReport> {
    let users: Vec<String> = (0..plan.users.max(1))
        .map(|i| format!("{}c{i}", plan.setup.prefix))
        .collect();
    let logins = Arc::new(system.provision(&users, 8).await?);
    // Let the allocator settle after the registrations before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_rss_before = system.server_rss().await?;

    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let (release, held) = watch::channel(false);
    let bar = progress::bar(plan.sessions as u64, "sessions");
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.sessions);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let half = plan.sessions / 2;
    let (mut server_rss_half, mut connected_at_half) = (0, 0);
    for i in 0..plan.sessions {
        if i == half {
            settle(&connected, &failed, half).await;
            server_rss_half = system.server_rss().await?;
            connected_at_half = connected.load(Ordering::Relaxed);
            // Resume the pace, not a burst of the ticks missed while measuring.
            ticker.reset();
        }
        ticker.tick().await;
        let (system, logins) = (system.clone(), logins.clone());
        let (connected, failed, bar) = (connected.clone(), failed.clone(), bar.clone());
        let retried = retried.clone();
        let mut held = held.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let login = &logins[i % logins.len()];
            let result = match system.connect(login).await {
                Ok(up) => Ok(up),
                Err(_) => {
                    retried.fetch_add(1, Ordering::Relaxed);
                    system.connect(login).await
                }
            };
            let elapsed = t0.elapsed();
            bar.inc(1);
            match result {
                Ok(client) => {
                    connected.fetch_add(1, Ordering::Relaxed);
                    let _ = held.wait_for(|released| *released).await;
                    client.close().await;
                    Ok(elapsed)
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    Err(format!("{e:#}"))
                }
            }
        }));
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    settle(&connected, &failed, plan.sessions).await;
    bar.finish_and_clear();
    tokio::time::sleep(plan.hold).await;
    let server_rss_held = system.server_rss().await?;
    let _ = release.send(true);

    let mut histogram = report::new_histogram();
    let mut first_error = None;
    for task in tasks {
        match task.await? {
            Ok(elapsed) => report::record(&mut histogram, elapsed.as_micros() as u64),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let connected = connected.load(Ordering::Relaxed);
    Ok(ConnectReport {
        system: system.name(),
        sessions: plan.sessions,
        connected,
        failed: failed.load(Ordering::Relaxed),
        retried: retried.load(Ordering::Relaxed),
        first_error,
        connect: Latency::of(&histogram),
        wall_seconds,
        server_rss_before,
        server_rss_half,
        server_rss_held,
        server_bytes_per_session_average: server_rss_held.saturating_sub(server_rss_before)
            / connected.max(1),
        server_bytes_per_session: server_rss_held.saturating_sub(server_rss_half)
            / connected.saturating_sub(connected_at_half).max(1),
    })
}

/// Waits until `count` connection attempts have finished (up or failed),
/// then a moment more for the server to go idle.
async fn settle(connected: &AtomicU64, failed: &AtomicU64, count: usize) {
    target::wait_until(samvad_client::CONNECT_TIMEOUT * 2, || {
        connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) >= count as u64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}
