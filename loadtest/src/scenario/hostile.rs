//! `hostile`: N clients that misbehave in one way, held until the server
//! cuts them off; reports how long each took to be cut off and the
//! server's memory meanwhile. Run beside `chat` (bench/hostile.sh) to see
//! whether they cost honest users anything.
//!
//! The kinds:
//! - `half-open`: a TCP connection that sends part of a WebSocket
//!   upgrade's headers and then nothing;
//! - `silent`: a session (of `--transport`) that never says hello; over
//!   QUIC, a connection whose stream is never written;
//! - `stop-reading`: a WebSocket session that says hello, syncs, and then
//!   reads nothing while messages pile up for it;
//! - `slow-reader`: the same, reading one byte a second;
//! - `keep-up` (a control, not hostile): the same flood to readers that
//!   read as fast as it comes, so a run can tell the flood's cost from
//!   the stalled readers';
//! - `none` (a control): no clients, only the memory sampler (which
//!   scrapes `/metrics` four times a second) for `--timeout`.
//!
//! Readers are driven over raw TCP (the upgrade and the masked hello frame
//! written here) so that this module, not a WebSocket library, decides how
//! fast they read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::Latency;
use crate::scenario::Setup;
use crate::target;
use samvad_client::{chat, Client, ServerAddr, TransportKind};
use samvad_proto::v1::{
    client_frame, server_frame, ClientFrame, ErrorCode, Hello, Send as SendFrame, ServerFrame, Sync,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostileKind {
    HalfOpen,
    Silent,
    StopReading,
    SlowReader,
    KeepUp,
    None,
}

#[derive(Debug, Clone)]
pub struct HostilePlan {
    pub setup: Setup,
    pub kind: HostileKind,
    pub count: usize,
    /// How long to wait for the server to cut every client off.
    pub timeout: Duration,
    /// Bytes of messages sent to each reader that does not read.
    pub flood: usize,
    /// Bytes a second the flooding session sends.
    pub flood_rate: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostileReport {
    pub kind: HostileKind,
    pub transport: String,
    pub count: usize,
    /// Clients the server closed within the timeout.
    pub cut_off: u64,
    /// Flood messages the server refused (`rate_limited`): a flood paced
    /// within the session's allowance has none.
    pub flood_refused: u64,
    /// From the client's last byte to the server's close.
    pub time_to_cut_off: Latency,
    pub server_rss_before: u64,
    pub server_rss_peak: u64,
    /// Once every client was cut off (or the timeout passed).
    pub server_rss_after: u64,
}

impl HostileReport {
    pub fn summary(&self) -> String {
        format!(
            "hostile {:?} ({}): {} of {} cut off; time to cut-off {}; {} flood messages refused\n\
             server RSS: {:.1} MiB before, {:.1} MiB at most, {:.1} MiB after",
            self.kind,
            self.transport,
            self.cut_off,
            self.count,
            self.time_to_cut_off.line(),
            self.flood_refused,
            self.server_rss_before as f64 / 1048576.0,
            self.server_rss_peak as f64 / 1048576.0,
            self.server_rss_after as f64 / 1048576.0,
        )
    }
}

/// Text of each message flooded to a reader.
const FLOOD_MESSAGE: usize = 30_000;

pub async fn run(server: ServerAddr, plan: &HostilePlan) -> anyhow::Result<HostileReport> {
    let http = server.http.clone();
    let rss_before = target::server_rss(&http).await?;
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (http, peak) = (http.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(rss) = target::server_rss(&http).await {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let deadline = plan.timeout;
    // Each client's time to cut-off, and the flood messages refused.
    let (times, flood_refused): (Vec<Option<Duration>>, u64) = match plan.kind {
        HostileKind::HalfOpen => {
            let addr = http_addr(&http).await?;
            let mut held = Vec::with_capacity(plan.count);
            for _ in 0..plan.count {
                let mut tcp = TcpStream::connect(addr).await?;
                tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
                    .await?;
                held.push((tcp, Instant::now()));
            }
            let times = join(
                held.into_iter()
                    .map(|(tcp, since)| until_closed(tcp, since, deadline)),
            )
            .await;
            (times, 0)
        }
        HostileKind::Silent => {
            let mut held = Vec::with_capacity(plan.count);
            for _ in 0..plan.count {
                held.push((
                    Client::open(plan.setup.transport, &server).await?,
                    Instant::now(),
                ));
            }
            let times = join(held.into_iter().map(|(mut c, since)| async move {
                let closed = tokio::time::timeout(deadline, async {
                    while let Ok(Some(_)) = c.recv().await {}
                })
                .await;
                closed.ok().map(|_| since.elapsed())
            }))
            .await;
            (times, 0)
        }
        HostileKind::StopReading | HostileKind::SlowReader | HostileKind::KeepUp => {
            readers(&server, plan).await?
        }
        HostileKind::None => {
            tokio::time::sleep(deadline).await;
            (Vec::new(), 0)
        }
    };
    sampler.abort();
    let mut cut = crate::report::new_histogram();
    for d in times.iter().flatten() {
        crate::report::record(&mut cut, d.as_micros() as u64);
    }
    Ok(HostileReport {
        kind: plan.kind,
        transport: match plan.kind {
            HostileKind::HalfOpen
            | HostileKind::StopReading
            | HostileKind::SlowReader
            | HostileKind::KeepUp => "tcp".into(),
            HostileKind::None => "none".into(),
            HostileKind::Silent => plan.setup.transport_name(),
        },
        count: plan.count,
        cut_off: times.iter().flatten().count() as u64,
        flood_refused,
        time_to_cut_off: Latency::of(&cut),
        server_rss_before: rss_before,
        server_rss_peak: peak.load(Ordering::Relaxed),
        server_rss_after: target::server_rss(&http).await?,
    })
}

async fn join<F: std::future::Future<Output = Option<Duration>>>(
    each: impl Iterator<Item = F>,
) -> Vec<Option<Duration>> {
    futures_util::future::join_all(each).await
}

async fn http_addr(http: &str) -> anyhow::Result<std::net::SocketAddr> {
    Ok(target::loopback_target(http, "http://").await?.1)
}

/// Reads (and drops) until the server closes; the time from `since`.
async fn until_closed(mut tcp: TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
    .map(|_| since.elapsed())
}

/// Readers that do not keep up: each a user of its own, flooded by one
/// sender at `flood_rate`; a reader is cut off when the server closes its
/// socket (seen by reading, one byte a second or all at once after the
/// flood for one that stopped). Also answers how many flood messages the
/// server refused.
async fn readers(
    server: &ServerAddr,
    plan: &HostilePlan,
) -> anyhow::Result<(Vec<Option<Duration>>, u64)> {
    let names: Vec<String> = (0..=plan.count)
        .map(|i| format!("{}h{i}", plan.setup.prefix))
        .collect();
    let tokens = target::provision(&server.http, &names, 8).await?;
    let addr = http_addr(&server.http).await?;
    let mut held: Vec<TcpStream> = Vec::with_capacity(plan.count);
    for token in &tokens[1..] {
        held.push(raw_session(addr, token).await?);
    }
    let keeping_up: Vec<_> = if plan.kind == HostileKind::KeepUp {
        held.drain(..)
            .map(|tcp| tokio::spawn(read_all(tcp)))
            .collect()
    } else {
        Vec::new()
    };
    // Flood them, pipelined and paced to `flood_rate` bytes a second; the
    // sender reads its acceptances (and any refusals) as it goes.
    let mut sender = Client::connect(TransportKind::Ws, server, &tokens[0])
        .await?
        .0;
    let text = "x".repeat(FLOOD_MESSAGE);
    let per_reader = plan.flood.div_ceil(FLOOD_MESSAGE).max(1);
    let rate = plan.flood_rate.max(1) as f64;
    let started = Instant::now();
    let mut sent_bytes = 0usize;
    let mut refused = 0u64;
    let mut note = |frame: Option<ServerFrame>| {
        if let Some(server_frame::Kind::Error(e)) = frame.and_then(|f| f.kind) {
            if e.code() == ErrorCode::RateLimited {
                refused += 1;
            }
        }
    };
    for n in 0..per_reader {
        for to in &names[1..] {
            let env = chat(&format!("h{n}.{to}"), &names[0], to, &text);
            sent_bytes += env.encoded_len();
            sender
                .send(client_frame::Kind::Send(SendFrame {
                    envelope: Some(env),
                }))
                .await?;
            let due = started + Duration::from_secs_f64(sent_bytes as f64 / rate);
            let pause = tokio::time::sleep_until(due.into());
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    f = sender.recv() => note(f?),
                }
            }
        }
    }
    // The answers to the last sends.
    while let Ok(f) = tokio::time::timeout(Duration::from_secs(1), sender.recv()).await {
        note(f?);
    }
    let flooded = Instant::now();
    // A reader cannot see the server's close before it has read what was
    // sent ahead of it (megabytes, at one byte a second): the server's
    // count of sessions it ended for a stalled write tells when each was
    // cut off. Slow readers read on meanwhile.
    let slow: Vec<_> = match plan.kind {
        HostileKind::SlowReader => held
            .drain(..)
            .map(|tcp| tokio::spawn(read_slowly(tcp)))
            .collect(),
        HostileKind::KeepUp => {
            // They read all along (spawned before the flood), and are
            // never cut off: wait as long as a stalled reader would take.
            drop(held);
            tokio::time::sleep(Duration::from_secs(15)).await;
            for reader in keeping_up {
                reader.abort();
            }
            sender.close().await;
            return Ok((vec![None; plan.count], refused));
        }
        _ => Vec::new(),
    };
    let before = write_stalls(&server.http).await?;
    let mut times = Vec::with_capacity(plan.count);
    while times.len() < plan.count && flooded.elapsed() < plan.timeout {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = write_stalls(&server.http).await?.saturating_sub(before) as usize;
        while times.len() < now.min(plan.count) {
            times.push(Some(flooded.elapsed()));
        }
    }
    times.resize(plan.count, None);
    drop(held);
    for reader in slow {
        reader.abort();
    }
    sender.close().await;
    Ok((times, refused))
}

/// Sessions the server ended because a write to them stalled.
async fn write_stalls(http: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{http}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.contains("error_frames") && l.contains("code=\"write_stalled\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// A WebSocket session over raw TCP: the upgrade, a hello, a sync; the
/// answer is left unread. Its receive buffer is kept small, as a phone's
/// on a bad link would be.
async fn raw_session(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut tcp = socket.connect(addr).await?;
    tcp.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    // The 101 and its headers, byte by byte so nothing after is taken.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = tcp.read_u8().await.context("the upgrade's answer")?;
        head.push(b);
        if head.len() > 4096 {
            bail!("an upgrade answer of over 4 KiB");
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("upgrade refused: {}", String::from_utf8_lossy(&head));
    }
    for kind in [
        client_frame::Kind::Hello(Hello {
            token: token.into(),
            device: String::new(),
        }),
        client_frame::Kind::Sync(Sync {
            after_seq: 0,
            resume: false,
        }),
    ] {
        tcp.write_all(&masked_binary(&ClientFrame::of(kind).encode_to_vec()))
            .await?;
    }
    Ok(tcp)
}

/// A client's binary WebSocket frame (RFC 6455: clients mask).
fn masked_binary(payload: &[u8]) -> Vec<u8> {
    let mask: [u8; 4] = rand::random();
    let mut frame = vec![0x82];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// One byte a second, until the socket closes.
async fn read_slowly(mut tcp: TcpStream) {
    let mut byte = [0u8; 1];
    while let Ok(1) = tcp.read(&mut byte).await {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// As fast as it comes, until the socket closes.
async fn read_all(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = tcp.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}
