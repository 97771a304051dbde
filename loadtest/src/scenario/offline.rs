//! `offline`: users are offline while a backlog of B messages each piles
//! up in their inboxes; then they all reconnect at once and sync. Reports
//! how long until every backlog is synced, and checks each arrived whole:
//! every message once, in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use samvad_proto::v1::{client_frame, server_frame, Send};
use serde::Serialize;

use crate::report::{self, Latency};
use crate::scenario::{progress, Setup};
use crate::target;
use samvad_client::{chat, Client, ServerAddr};

/// Sends of one sender awaiting their acknowledgement at most.
const WINDOW: usize = 32;

#[derive(Debug, Clone)]
pub struct OfflinePlan {
    /// How sessions are opened (transport, user names, sockets).
    pub setup: Setup,
    /// Offline users (each gets a backlog from its own sender).
    pub users: usize,
    /// Messages waiting for each user.
    pub backlog: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfflineReport {
    pub transport: String,
    pub users: usize,
    pub backlog: usize,
    /// Seconds to get every backlog acknowledged by the server.
    pub fill_seconds: f64,
    /// From the moment all users reconnect to the last backlog synced.
    pub sync_seconds: f64,
    /// Messages synced per second over `sync_seconds`.
    pub synced_per_second: f64,
    /// Per user: reconnect → whole backlog synced.
    pub user_sync: Latency,
    pub synced: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order_users: u64,
    pub failures: u64,
    pub first_error: Option<String>,
}

impl OfflineReport {
    pub fn summary(&self) -> String {
        format!(
            "offline over {}: {} users × {} messages filled in {:.1} s; all synced {:.2} s after \
             reconnecting ({:.0} msg/s)\n\
             per user, reconnect → backlog synced: {}\n\
             synced {} · lost {} · duplicated {} · users out of order {} · failures {}{}",
            self.transport,
            self.users,
            self.backlog,
            self.fill_seconds,
            self.sync_seconds,
            self.synced_per_second,
            self.user_sync.line(),
            self.synced,
            self.lost,
            self.duplicated,
            self.out_of_order_users,
            self.failures,
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
        )
    }
}

/// Sends `backlog` messages `<to>.<n>` from `from` to `to`, windowed.
async fn fill(client: &mut Client, from: &str, to: &str, backlog: usize) -> anyhow::Result<()> {
    let (mut sent, mut acked) = (0, 0);
    while acked < backlog {
        while sent < backlog && sent - acked < WINDOW {
            let id = format!("{to}.{sent}");
            client
                .send(client_frame::Kind::Send(Send {
                    envelope: Some(chat(&id, from, to, "backlog")),
                }))
                .await?;
            sent += 1;
        }
        match client.recv_timeout(Duration::from_secs(30)).await?.kind {
            Some(server_frame::Kind::Accepted(_)) => acked += 1,
            Some(server_frame::Kind::Error(e)) => {
                anyhow::bail!("send refused: {} {}", e.code().short_name(), e.message)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Message index of a delivery for `user`, if it is one of the backlog's.
fn backlog_index(frame_kind: Option<server_frame::Kind>, user: &str) -> Option<usize> {
    let Some(server_frame::Kind::Deliver(d)) = frame_kind else {
        return None;
    };
    d.envelope?
        .id
        .strip_prefix(user)?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// What one user's sync brought: message indexes in arrival order. A
/// message acknowledged to its sender may still be on its way to the inbox
/// when the sync runs; it then arrives live: wait for it (bounded).
async fn sync_backlog(
    client: &mut Client,
    user: &str,
    backlog: usize,
) -> anyhow::Result<Vec<usize>> {
    let mut got = sync_pages(client, user).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < backlog {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, client.recv()).await {
            Ok(Ok(Some(frame))) => {
                if let Some(n) = backlog_index(frame.kind, user) {
                    got.push(n);
                }
            }
            _ => break,
        }
    }
    Ok(got)
}

/// The paged replay of the inbox from the start.
async fn sync_pages(client: &mut Client, user: &str) -> anyhow::Result<Vec<usize>> {
    let mut got = Vec::new();
    client
        .sync(0, |frame| {
            if let Some(n) = backlog_index(frame.kind, user) {
                got.push(n);
            }
        })
        .await?;
    Ok(got)
}

pub async fn run(server: &ServerAddr, plan: &OfflinePlan) -> anyhow::Result<OfflineReport> {
    let users = plan.users.max(1);
    let names: Vec<String> = (0..users)
        .map(|i| format!("{}o{i}", plan.setup.prefix))
        .collect();
    let senders: Vec<String> = (0..users)
        .map(|i| format!("{}f{i}", plan.setup.prefix))
        .collect();
    let user_tokens = target::provision(&server.http, &names, 8).await?;
    let sender_tokens = target::provision(&server.http, &senders, 8).await?;
    let connector = Arc::new(plan.setup.connector(server)?);

    // Fill: every sender at once, recipients offline.
    let bar = progress::bar((users * plan.backlog) as u64, "messages queued");
    let started = Instant::now();
    let mut fills = Vec::new();
    for i in 0..users {
        let (connector, token) = (connector.clone(), sender_tokens[i].clone());
        let (from, to, backlog, bar) = (
            senders[i].clone(),
            names[i].clone(),
            plan.backlog,
            bar.clone(),
        );
        fills.push(tokio::spawn(async move {
            let (mut client, _) = connector.connect(&token).await?;
            fill(&mut client, &from, &to, backlog).await?;
            bar.inc(backlog as u64);
            client.close().await;
            anyhow::Ok(())
        }));
    }
    let mut failures = 0;
    let mut first_error = None;
    for f in fills {
        if let Err(e) = f.await? {
            failures += 1;
            first_error.get_or_insert(format!("fill: {e:#}"));
        }
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // Everyone back at once.
    let reconnect = Instant::now();
    let mut syncs = Vec::new();
    for i in 0..users {
        let (connector, token, name) =
            (connector.clone(), user_tokens[i].clone(), names[i].clone());
        let backlog = plan.backlog;
        syncs.push(tokio::spawn(async move {
            let (mut client, _) = connector.connect(&token).await?;
            let got = sync_backlog(&mut client, &name, backlog).await?;
            let took = reconnect.elapsed();
            client.close().await;
            anyhow::Ok((got, took))
        }));
    }
    let (mut synced, mut lost, mut duplicated, mut out_of_order) = (0, 0, 0, 0);
    let mut histogram = report::new_histogram();
    let mut last_done = Duration::ZERO;
    for s in syncs {
        match s.await? {
            Ok((got, took)) => {
                last_done = last_done.max(took);
                report::record(&mut histogram, took.as_micros() as u64);
                let mut seen = vec![0u32; plan.backlog];
                for &n in &got {
                    if let Some(c) = seen.get_mut(n) {
                        *c += 1;
                    }
                }
                synced += seen.iter().filter(|&&c| c > 0).count() as u64;
                lost += seen.iter().filter(|&&c| c == 0).count() as u64;
                duplicated += seen
                    .iter()
                    .map(|&c| c.saturating_sub(1) as u64)
                    .sum::<u64>();
                if !got.windows(2).all(|w| w[0] < w[1]) {
                    out_of_order += 1;
                }
            }
            Err(e) => {
                failures += 1;
                lost += plan.backlog as u64;
                first_error.get_or_insert(format!("sync: {e:#}"));
            }
        }
    }
    let sync_seconds = last_done.as_secs_f64();
    Ok(OfflineReport {
        transport: plan.setup.transport_name(),
        users,
        backlog: plan.backlog,
        fill_seconds,
        sync_seconds,
        synced_per_second: synced as f64 / sync_seconds.max(1e-9),
        user_sync: Latency::of(&histogram),
        synced,
        lost,
        duplicated,
        out_of_order_users: out_of_order,
        failures,
        first_error,
    })
}
