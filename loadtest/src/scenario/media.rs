//! `media`: R rooms, each with P publishers and S subscribers (native
//! str0m participants, `samvad_client::media`, and Janus's, `crate::janus`), run for a while; reports the
//! frames and datagrams that reached the participants per second and per
//! core of server CPU, loss against what the publishers sent, and the time
//! from joining to the first video frame of each publisher.
//!
//! The same plan runs against Samvad ([`run`]) and against a Janus
//! videoroom ([`run_janus`]): the same synthetic publishers, counted the
//! same way on the receiving side, so that [`MediaComparison`] can put
//! the two side by side. Every participant is driven from the moment it
//! joined (a task each), so join → first video is what a user waits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::janus::{JanusAddr, JanusParticipant, JanusRoom};
use crate::report::Latency;
use crate::scenario::Setup;
use crate::system::process_cpu_seconds;
use crate::target;
use samvad_client::media::{Participant, Received};
use samvad_client::rest;
use samvad_client::{Connector, ServerAddr};

/// What a publisher sends per second: Opus every 20 ms, VP8 at 30/s.
const AUDIO_PER_SEC: f64 = 50.0;
const VIDEO_PER_SEC: f64 = 30.0;
/// Settling time before measuring: negotiations, first keyframes.
const WARM_UP: Duration = Duration::from_secs(2);
/// The longest a participant's round lasts when nothing happens.
const ROUND: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct MediaPlan {
    pub setup: Setup,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub duration: Duration,
}

/// A Janus to run the plan against.
#[derive(Debug, Clone)]
pub struct JanusTarget {
    pub addr: JanusAddr,
    /// Its process, whose CPU time is read from /proc.
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaReport {
    pub system: String,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub seconds: f64,
    /// Frames (audio and video) that reached participants, per second.
    pub frames_received_per_sec: f64,
    /// UDP datagrams that reached participants, per second: what the
    /// server forwarded (RTP, RTCP, STUN), counted the same way for every
    /// server.
    pub datagrams_received_per_sec: f64,
    /// Server CPU used, in cores (CPU seconds per second).
    pub server_cores: f64,
    /// Datagrams received per second per core of server CPU.
    pub datagrams_per_core_sec: f64,
    /// Frames received per second per core of server CPU.
    pub frames_per_core_sec: f64,
    /// What Samvad's own counters say it forwarded and sent, per second
    /// (a check on the participants' counts; other servers have none).
    pub server_frames_forwarded_per_sec: Option<f64>,
    pub server_datagrams_sent_per_sec: Option<f64>,
    /// 1 − received / expected, over the measured window.
    pub loss: f64,
    /// From the later of the receiver's join and the publisher's to the
    /// publisher's first video frame, per (receiver, publisher).
    pub join_to_first_video: Latency,
}

impl MediaReport {
    pub fn summary(&self) -> String {
        format!(
            "media on {}: {} rooms × ({} publishers + {} subscribers), {:.1} s\n\
             frames received {:.0}/s, datagrams received {:.0}/s; server CPU {:.2} cores → {:.0} datagrams/s per core\n\
             loss {:.2} %; join → first video p50 {:.1} ms, p99 {:.1} ms (n = {})",
            self.system,
            self.rooms,
            self.publishers,
            self.subscribers,
            self.seconds,
            self.frames_received_per_sec,
            self.datagrams_received_per_sec,
            self.server_cores,
            self.datagrams_per_core_sec,
            self.loss * 100.0,
            self.join_to_first_video.p50_us as f64 / 1000.0,
            self.join_to_first_video.p99_us as f64 / 1000.0,
            self.join_to_first_video.count,
        )
    }
}

/// Samvad's report beside Janus's for one plan, with the ratios.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaComparison {
    pub samvad: MediaReport,
    pub janus: MediaReport,
    /// Samvad / Janus, datagrams per second per core (higher is better).
    pub datagrams_per_core_ratio: f64,
    /// Janus / Samvad, CPU cores used for the same load (higher is better
    /// for Samvad).
    pub cpu_ratio: f64,
    /// Janus / Samvad, p99 join → first video.
    pub first_video_p99_ratio: f64,
}

impl MediaComparison {
    pub fn new(samvad: MediaReport, janus: MediaReport) -> MediaComparison {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        MediaComparison {
            datagrams_per_core_ratio: ratio(
                samvad.datagrams_per_core_sec,
                janus.datagrams_per_core_sec,
            ),
            cpu_ratio: ratio(janus.server_cores, samvad.server_cores),
            first_video_p99_ratio: ratio(
                janus.join_to_first_video.p99_us as f64,
                samvad.join_to_first_video.p99_us as f64,
            ),
            samvad,
            janus,
        }
    }

    /// The two summaries and a Markdown row of the ratios.
    pub fn summary(&self) -> String {
        format!(
            "{}\n{}\n\n| rooms × (P + S) | Samvad dgram/s/core | Janus dgram/s/core | ratio | CPU Janus/Samvad | first video p99 Samvad / Janus (ms) | loss Samvad / Janus |\n|---|---|---|---|---|---|---|\n| {} × ({} + {}) | {:.0} | {:.0} | {:.2}× | {:.2}× | {:.0} / {:.0} | {:.2} % / {:.2} % |",
            self.samvad.summary(),
            self.janus.summary(),
            self.samvad.rooms,
            self.samvad.publishers,
            self.samvad.subscribers,
            self.samvad.datagrams_per_core_sec,
            self.janus.datagrams_per_core_sec,
            self.datagrams_per_core_ratio,
            self.cpu_ratio,
            self.samvad.join_to_first_video.p99_us as f64 / 1000.0,
            self.janus.join_to_first_video.p99_us as f64 / 1000.0,
            self.samvad.loss * 100.0,
            self.janus.loss * 100.0,
        )
    }
}

/// A participant of either server (boxed: a str0m `Rtc` is kilobytes,
/// and members move into their tasks).
enum Member {
    Samvad(Box<Participant>),
    Janus(Box<JanusParticipant>),
}

impl Member {
    async fn step(&mut self, max: Duration) -> anyhow::Result<()> {
        match self {
            Member::Samvad(p) => p.step(max).await,
            Member::Janus(p) => p.step(max).await,
        }
    }

    fn user(&self) -> &str {
        match self {
            Member::Samvad(p) => &p.user,
            Member::Janus(p) => &p.user,
        }
    }

    fn received(&self) -> &Received {
        match self {
            Member::Samvad(p) => &p.received,
            Member::Janus(p) => &p.received,
        }
    }

    fn datagrams(&self) -> u64 {
        match self {
            Member::Samvad(p) => p.datagrams(),
            Member::Janus(p) => p.datagrams(),
        }
    }

    /// When it asked to receive the others.
    fn listening_since(&self) -> Option<Instant> {
        match self {
            Member::Samvad(p) => Some(p.joined_at),
            Member::Janus(p) => p.subscribed_at,
        }
    }

    /// When it offered its own tracks.
    fn publishing_since(&self) -> Option<Instant> {
        match self {
            Member::Samvad(p) => Some(p.joined_at),
            Member::Janus(p) => p.published_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    WarmUp,
    Measure,
    Stop,
}

/// What a member had received when measuring began.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    frames: u64,
    datagrams: u64,
}

fn snapshot(m: &Member) -> Snapshot {
    Snapshot {
        frames: m.received().total(),
        datagrams: m.datagrams(),
    }
}

/// Drives one member until told to stop; notes where it stood when
/// measuring began.
async fn drive(
    mut member: Member,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<(Member, Snapshot)> {
    let mut start = None;
    loop {
        match *phase.borrow_and_update() {
            Phase::WarmUp => {}
            Phase::Measure => {
                start.get_or_insert_with(|| snapshot(&member));
            }
            Phase::Stop => return Ok((member, start.unwrap_or_default())),
        }
        member
            .step(ROUND)
            .await
            .with_context(|| format!("participant {}", member.user()))?;
    }
}

/// The members, each driven in its own task from the moment it joined.
struct Crowd {
    phase: watch::Sender<Phase>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<(Member, Snapshot)>>>,
}

impl Crowd {
    fn new() -> Crowd {
        Crowd {
            phase: watch::channel(Phase::WarmUp).0,
            tasks: Vec::new(),
        }
    }

    fn add(&mut self, member: Member) {
        self.tasks
            .push(tokio::spawn(drive(member, self.phase.subscribe())));
    }

    /// Warms up, measures for `duration` between two readings of the
    /// server's CPU time, and returns the members with their starting
    /// points and the seconds measured.
    async fn measure<C, F>(
        self,
        duration: Duration,
        cpu_seconds: C,
    ) -> anyhow::Result<(Vec<(Member, Snapshot)>, f64, f64)>
    where
        C: Fn() -> F,
        F: std::future::Future<Output = anyhow::Result<f64>>,
    {
        tokio::time::sleep(WARM_UP).await;
        let cpu0 = cpu_seconds().await?;
        let t0 = Instant::now();
        self.phase.send_replace(Phase::Measure);
        tokio::time::sleep(duration).await;
        let cpu1 = cpu_seconds().await?;
        let seconds = t0.elapsed().as_secs_f64();
        self.phase.send_replace(Phase::Stop);
        let mut members = Vec::new();
        for task in self.tasks {
            members.push(task.await??);
        }
        Ok((members, seconds, (cpu1 - cpu0) / seconds))
    }
}

/// Runs `plan` against Samvad at `server`.
pub async fn run(server: &ServerAddr, plan: &MediaPlan) -> anyhow::Result<MediaReport> {
    let per_room = plan.publishers + plan.subscribers;
    let names = plan.names();
    let tokens = target::provision(&server.http, &names, 8).await?;
    let connector = Connector::new(
        plan.setup.transport,
        server,
        plan.setup.endpoints,
        Vec::new(),
    )?;
    let mut crowd = Crowd::new();
    for room in 0..plan.rooms {
        let members = &names[room * per_room..(room + 1) * per_room];
        let owner = &tokens[room * per_room];
        let group = rest::create_group(&server.http, owner, &format!("call {room}"), &members[1..])
            .await
            .context("creating a room's group")?;
        for (i, name) in members.iter().enumerate() {
            let (session, _) = connector.connect(&tokens[room * per_room + i]).await?;
            let publish = i < plan.publishers;
            let participant = Participant::join(session, name, &group.id, publish).await?;
            crowd.add(Member::Samvad(Box::new(participant)));
        }
    }
    let start = SamvadCounters::read(&server.http).await?;
    let (members, seconds, cores) = crowd
        .measure(plan.duration, || {
            target::server_metric(&server.http, "samvad_process_cpu_seconds")
        })
        .await?;
    let end = SamvadCounters::read(&server.http).await?;
    let mut report = plan.report(
        format!("samvad/{}", plan.setup.transport.name()),
        &members,
        seconds,
        cores,
    )?;
    // The counters span the warm-up too: a rate over their own window.
    let window = end.at.duration_since(start.at).as_secs_f64();
    report.server_frames_forwarded_per_sec = Some((end.forwarded - start.forwarded) / window);
    report.server_datagrams_sent_per_sec = Some((end.sent - start.sent) / window);
    Ok(report)
}

/// Runs `plan` against the Janus at `janus`: a videoroom per room; the
/// publishers join and publish, and once Janus has them all up, every
/// participant subscribes to the room's other publishers. As in a
/// browser's Janus client, a participant is a publisher peer connection
/// and a subscriber one; here each has its own Janus session.
pub async fn run_janus(janus: &JanusTarget, plan: &MediaPlan) -> anyhow::Result<MediaReport> {
    let per_room = plan.publishers + plan.subscribers;
    let names = plan.names();
    let mut crowd = Crowd::new();
    // Room ids unique to this run, so that runs against one Janus do not
    // meet.
    let first_room = rand::random::<u32>() as u64 * 1000;
    // Held to the end: each room's session lives as long as the run.
    let mut rooms = Vec::new();
    for room in 0..plan.rooms {
        let mut janus_room = JanusRoom::create(
            &janus.addr,
            first_room + room as u64,
            plan.publishers.max(1),
        )
        .await?;
        let members = &names[room * per_room..(room + 1) * per_room];
        let feed = |i: usize| i as u64 + 1;
        for (i, name) in members[..plan.publishers].iter().enumerate() {
            let publisher =
                JanusParticipant::join(&janus.addr, janus_room.id, name, feed(i), true).await?;
            crowd.add(Member::Janus(Box::new(publisher)));
        }
        janus_room
            .wait_for_publishers(plan.publishers, Duration::from_secs(20))
            .await?;
        for (i, name) in members.iter().enumerate() {
            let others: Vec<u64> = (0..plan.publishers).filter(|&p| p != i).map(feed).collect();
            if others.is_empty() {
                continue;
            }
            let mut receiver =
                JanusParticipant::join(&janus.addr, janus_room.id, name, 0, false).await?;
            receiver.subscribe(&others).await?;
            crowd.add(Member::Janus(Box::new(receiver)));
        }
        rooms.push(janus_room);
    }
    let (members, seconds, cores) = crowd
        .measure(plan.duration, || async { process_cpu_seconds(janus.pid) })
        .await?;
    plan.report("janus/videoroom".into(), &members, seconds, cores)
}

impl MediaPlan {
    /// The participants' user names, room after room.
    fn names(&self) -> Vec<String> {
        (0..self.rooms * (self.publishers + self.subscribers))
            .map(|i| format!("{}m{i}", self.setup.prefix))
            .collect()
    }

    fn report(
        &self,
        system: String,
        members: &[(Member, Snapshot)],
        seconds: f64,
        cores: f64,
    ) -> anyhow::Result<MediaReport> {
        let per_room = self.publishers + self.subscribers;
        let (mut frames, mut datagrams) = (0, 0);
        for (m, start) in members {
            frames += m.received().total() - start.frames;
            datagrams += m.datagrams() - start.datagrams;
        }
        let expected = (self.rooms * self.publishers * (per_room - 1)) as f64
            * (AUDIO_PER_SEC + VIDEO_PER_SEC)
            * seconds;
        // Join → first video per (receiver, publisher), from the later of
        // the receiver asking to receive and the publisher offering.
        let publishing: HashMap<&str, Instant> = members
            .iter()
            .filter_map(|(m, _)| Some((m.user(), m.publishing_since()?)))
            .collect();
        let mut first = Histogram::<u64>::new(3)?;
        for (receiver, _) in members {
            let Some(listening) = receiver.listening_since() else {
                continue;
            };
            for (publisher, heard) in &receiver.received().first_video {
                let since = publishing
                    .get(publisher.as_str())
                    .map_or(listening, |&p| p.max(listening));
                first.record(heard.saturating_duration_since(since).as_micros() as u64)?;
            }
        }
        let per_sec = |n: u64| n as f64 / seconds;
        let per_core = |rate: f64| if cores > 0.0 { rate / cores } else { 0.0 };
        Ok(MediaReport {
            system,
            rooms: self.rooms,
            publishers: self.publishers,
            subscribers: self.subscribers,
            seconds,
            frames_received_per_sec: per_sec(frames),
            datagrams_received_per_sec: per_sec(datagrams),
            server_cores: cores,
            datagrams_per_core_sec: per_core(per_sec(datagrams)),
            frames_per_core_sec: per_core(per_sec(frames)),
            server_frames_forwarded_per_sec: None,
            server_datagrams_sent_per_sec: None,
            loss: if expected > 0.0 {
                (1.0 - frames as f64 / expected).max(0.0)
            } else {
                0.0
            },
            join_to_first_video: Latency::of(&first),
        })
    }
}

/// Samvad's own media counters at one moment.
struct SamvadCounters {
    at: Instant,
    forwarded: f64,
    sent: f64,
}

impl SamvadCounters {
    async fn read(http: &str) -> anyhow::Result<SamvadCounters> {
        Ok(SamvadCounters {
            at: Instant::now(),
            forwarded: target::server_metric(http, "samvad_media_frames_forwarded_total").await?,
            sent: target::server_metric(http, "samvad_media_datagrams_sent_total").await?,
        })
    }
}
