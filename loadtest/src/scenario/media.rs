//! `media`: R rooms, each with P publishers and S subscribers (native
//! str0m participants, `crate::media`), run for a while; reports the
//! frames the SFU forwarded per second and per core of server CPU, the
//! datagrams it sent, loss against what the publishers sent, and the time
//! from join to the first video frame of each publisher.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::{Connector, ServerAddr};
use crate::media::Participant;
use crate::report::Latency;
use crate::rest;
use crate::scenario::Setup;
use crate::target;

/// What a publisher sends per second: Opus every 20 ms, VP8 at 30/s.
const AUDIO_PER_SEC: f64 = 50.0;
const VIDEO_PER_SEC: f64 = 30.0;

#[derive(Debug, Clone)]
pub struct MediaPlan {
    pub setup: Setup,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MediaReport {
    pub system: String,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub seconds: f64,
    /// Frames (audio and video) that reached subscribers, per second.
    pub frames_received_per_sec: f64,
    /// Frames the server says it forwarded, per second.
    pub frames_forwarded_per_sec: f64,
    /// UDP datagrams the media socket sent, per second (RTP, RTCP, STUN).
    pub datagrams_sent_per_sec: f64,
    /// Server CPU used, in cores (CPU seconds per second).
    pub server_cores: f64,
    /// Datagrams sent per second per core of server CPU.
    pub datagrams_per_core_sec: f64,
    /// 1 − received / expected, over the measured window.
    pub loss: f64,
    /// Join → first video frame of each publisher, per (subscriber,
    /// publisher).
    pub join_to_first_video: Latency,
}

impl MediaReport {
    pub fn summary(&self) -> String {
        format!(
            "media on {}: {} rooms × ({} publishers + {} subscribers), {:.1} s\n\
             frames received {:.0}/s, forwarded {:.0}/s; datagrams sent {:.0}/s; server CPU {:.2} cores → {:.0} datagrams/s per core\n\
             loss {:.2} %; join → first video p50 {:.1} ms, p99 {:.1} ms (n = {})",
            self.system,
            self.rooms,
            self.publishers,
            self.subscribers,
            self.seconds,
            self.frames_received_per_sec,
            self.frames_forwarded_per_sec,
            self.datagrams_sent_per_sec,
            self.server_cores,
            self.datagrams_per_core_sec,
            self.loss * 100.0,
            self.join_to_first_video.p50_us as f64 / 1000.0,
            self.join_to_first_video.p99_us as f64 / 1000.0,
            self.join_to_first_video.count,
        )
    }
}

struct Counters {
    forwarded: f64,
    sent: f64,
    cpu: f64,
}

async fn counters(http: &str) -> anyhow::Result<Counters> {
    Ok(Counters {
        forwarded: target::server_metric(http, "samvad_media_frames_forwarded_total").await?,
        sent: target::server_metric(http, "samvad_media_datagrams_sent_total").await?,
        cpu: target::server_metric(http, "samvad_process_cpu_seconds").await?,
    })
}

pub async fn run(server: &ServerAddr, plan: &MediaPlan) -> anyhow::Result<MediaReport> {
    let per_room = plan.publishers + plan.subscribers;
    let names: Vec<String> = (0..plan.rooms * per_room)
        .map(|i| format!("{}m{i}", plan.setup.prefix))
        .collect();
    let tokens = target::provision(&server.http, &names, 8).await?;
    let connector = Connector::new(
        plan.setup.transport,
        server,
        plan.setup.endpoints,
        Vec::new(),
    )?;
    let mut participants = Vec::new();
    for room in 0..plan.rooms {
        let members = &names[room * per_room..(room + 1) * per_room];
        let owner = &tokens[room * per_room];
        let group = rest::create_group(&server.http, owner, &format!("call {room}"), &members[1..])
            .await
            .context("creating a room's group")?;
        for (i, name) in members.iter().enumerate() {
            let (session, _) = connector.connect(&tokens[room * per_room + i]).await?;
            let publish = i < plan.publishers;
            participants.push(Participant::join(session, name, &group.id, publish).await?);
        }
    }
    // Warm up (negotiations, first keyframes), then measure.
    run_all(&mut participants, Duration::from_secs(2)).await?;
    let before: Vec<u64> = participants.iter().map(received_total).collect();
    let start = counters(&server.http).await?;
    let t0 = Instant::now();
    run_all(&mut participants, plan.duration).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let end = counters(&server.http).await?;

    let received: u64 = participants
        .iter()
        .zip(&before)
        .map(|(p, b)| received_total(p) - b)
        .sum();
    let expected = (plan.rooms * plan.publishers * (per_room - 1)) as f64
        * (AUDIO_PER_SEC + VIDEO_PER_SEC)
        * seconds;
    let mut first = Histogram::<u64>::new(3)?;
    for p in &participants {
        for at in p.received.first_video.values() {
            first.record(at.duration_since(p.joined_at).as_micros() as u64)?;
        }
    }
    let cores = (end.cpu - start.cpu) / seconds;
    let sent = (end.sent - start.sent) / seconds;
    Ok(MediaReport {
        system: format!("samvad/{}", plan.setup.transport.name()),
        rooms: plan.rooms,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        seconds,
        frames_received_per_sec: received as f64 / seconds,
        frames_forwarded_per_sec: (end.forwarded - start.forwarded) / seconds,
        datagrams_sent_per_sec: sent,
        server_cores: cores,
        datagrams_per_core_sec: if cores > 0.0 { sent / cores } else { 0.0 },
        loss: (1.0 - received as f64 / expected).max(0.0),
        join_to_first_video: Latency::of(&first),
    })
}

fn received_total(p: &Participant) -> u64 {
    p.received.frames.values().sum()
}

async fn run_all(ps: &mut [Participant], d: Duration) -> anyhow::Result<()> {
    let rounds = ps.iter_mut().map(|p| p.run_for(d));
    for r in futures_util::future::join_all(rounds).await {
        r?;
    }
    Ok(())
}
