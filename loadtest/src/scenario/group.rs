//! `group`: groups of G members, one sender each, sending at a total rate
//! for a duration. Every message must reach every other member once; what
//! is timed is fan-out to the *last* member (the slowest delivery of each
//! message), plus every single delivery.
//!
//! Sending is open loop as in `chat`; latencies run from the moment the
//! frame is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::report::{self, Latency, Quantile, Timeline};
use crate::scenario::{
    delivery_latency, first_ack, message_id, parse_id, progress, InboxAcker, Phase, Setup,
    ACK_EVERY, ACK_TIMER,
};
use crate::system::{Event, Session, System};
use crate::target;

#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub setup: Setup,
    /// Groups, each with one sender (its first member).
    pub groups: usize,
    /// Members per group, the sender included (at least 2).
    pub size: usize,
    /// Messages per second over all senders.
    pub rate: u32,
    pub duration: Duration,
    /// How long to wait after the last send for what is still in flight.
    pub drain: Duration,
    pub payload: usize,
}

/// What became of the messages of a fan-out run, counted per delivery
/// (one message to G-1 members is G-1 deliveries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanoutTally {
    pub sent: u64,
    pub accepted: u64,
    pub refused: u64,
    /// accepted × (members − 1).
    pub expected: u64,
    /// Distinct (message, member) deliveries.
    pub delivered: u64,
    /// Expected deliveries of accepted messages that never happened.
    pub lost: u64,
    pub duplicates: u64,
    /// Messages every other member received.
    pub complete: u64,
}

impl FanoutTally {
    /// Adds one group: `accepted[n]` for the sender's message `n`, and for
    /// each other member how often it received message `n`.
    pub fn add_group(&mut self, sent: u64, refused: u64, accepted: &[bool], members: &[Vec<u32>]) {
        self.sent += sent;
        self.refused += refused;
        let n_max = members
            .iter()
            .map(Vec::len)
            .chain([accepted.len()])
            .max()
            .unwrap_or(0);
        for n in 0..n_max {
            let acked = accepted.get(n).copied().unwrap_or(false);
            self.accepted += acked as u64;
            let mut everyone = !members.is_empty();
            for member in members {
                let times = member.get(n).copied().unwrap_or(0);
                if times > 0 {
                    self.delivered += 1;
                    self.duplicates += u64::from(times - 1);
                } else {
                    everyone = false;
                    if acked {
                        self.lost += 1;
                    }
                }
            }
            if acked {
                self.expected += members.len() as u64;
                self.complete += everyone as u64;
            }
        }
    }

    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    pub system: String,
    pub groups: usize,
    pub group_size: usize,
    pub target_rate: u32,
    pub seconds: f64,
    pub accepted_per_second: f64,
    pub tally: FanoutTally,
    pub session_failures: u64,
    pub first_error: Option<String>,
    /// Write → server ack.
    pub ack: Latency,
    /// Write → delivery, every delivery.
    pub delivery: Latency,
    /// Write → delivery to the last member, per message every member got.
    pub last_member: Latency,
    pub last_member_timeline: Vec<Timeline>,
    pub last_member_distribution: Vec<Quantile>,
}

impl GroupReport {
    pub fn summary(&self) -> String {
        let t = &self.tally;
        format!(
            "group with {}: {} groups of {}, target {} msg/s for {:.1} s → {:.0} msg/s acknowledged\n\
             sent {} · acknowledged {} · refused {} · deliveries {} of {} · lost {} · duplicated {} \
             · complete {}{}\n\
             send → ack:         {}\n\
             send → delivery:    {}\n\
             send → last member: {}",
            self.system,
            self.groups,
            self.group_size,
            self.target_rate,
            self.seconds,
            self.accepted_per_second,
            t.sent,
            t.accepted,
            t.refused,
            t.delivered,
            t.expected,
            t.lost,
            t.duplicates,
            t.complete,
            self.first_error
                .as_deref()
                .map(|e| format!("\n{} sessions failed; first: {e}", self.session_failures))
                .unwrap_or_default(),
            self.ack.line(),
            self.delivery.line(),
            self.last_member.line(),
        )
    }
}

#[derive(Default)]
struct Live {
    ready: AtomicU64,
    failed: AtomicU64,
    /// Senders done sending.
    quiet: AtomicU64,
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    delivered: AtomicU64,
}

/// What one member's session saw.
#[derive(Default)]
struct Outcome {
    sent: u64,
    refused: u64,
    accepted: Vec<bool>,
    ack: Option<Histogram<u64>>,
    /// Per message n of this group's sender: times received.
    received: Vec<u32>,
    /// Per message n: first delivery latency, µs (0 = not received).
    latency_us: Vec<u32>,
    /// µs since the epoch when message n was received.
    received_at_us: Vec<u64>,
    error: Option<String>,
}

struct Member {
    group: usize,
    group_id: Arc<str>,
    sender: bool,
    run_id: u32,
    payload: usize,
    interval: Duration,
    stagger: Duration,
    epoch: Instant,
    live: Arc<Live>,
    phase: watch::Receiver<Phase>,
}

pub async fn run(system: Arc<System>, plan: &GroupPlan) -> anyhow::Result<GroupReport> {
    let size = plan.size.max(2);
    let groups = plan.groups.max(1);
    let names: Vec<String> = (0..groups * size)
        .map(|i| format!("{}g{}m{}", plan.setup.prefix, i / size, i % size))
        .collect();
    let logins = system.provision(&names, 8).await?;
    let run_id: u32 = rand::random();
    let mut group_ids = Vec::with_capacity(groups);
    for (g, members) in logins.chunks(size).enumerate() {
        let name = format!("{}grp{g}-{run_id:08x}", plan.setup.prefix);
        group_ids.push(Arc::<str>::from(system.create_group(&name, members).await?));
    }
    let live = Arc::new(Live::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let interval = Duration::from_secs_f64(groups as f64 / plan.rate.max(1) as f64);
    let epoch = Instant::now();
    let mut tasks = Vec::with_capacity(logins.len());
    for (i, login) in logins.into_iter().enumerate() {
        let group = i / size;
        let member = Member {
            group,
            group_id: group_ids[group].clone(),
            sender: i % size == 0,
            run_id,
            payload: plan.payload,
            interval,
            stagger: interval.mul_f64(group as f64 / groups as f64),
            epoch,
            live: live.clone(),
            phase: phase_rx.clone(),
        };
        let system = system.clone();
        tasks.push(tokio::spawn(async move {
            let outcome = match system.connect(&login).await {
                Ok(session) => member.run(session).await,
                Err(e) => Outcome {
                    error: Some(format!("connect: {e:#}")),
                    ..Outcome::default()
                },
            };
            if outcome.error.is_some() {
                member.live.failed.fetch_add(1, Ordering::Relaxed);
            }
            outcome
        }));
    }
    let everyone = (groups * size) as u64;
    target::wait_until(Duration::from_secs(120), || {
        live.ready.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) >= everyone
    })
    .await;

    let expected = (plan.duration.as_secs_f64() * plan.rate as f64) as u64 * (size as u64 - 1);
    let bar = progress::bar(expected, "deliveries");
    let started = Instant::now();
    let _ = phase_tx.send(Phase::Sending);
    while started.elapsed() < plan.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(live.delivered.load(Ordering::Relaxed));
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Draining);
    let drain_end = Instant::now() + plan.drain;
    target::wait_until(plan.drain, || {
        live.quiet.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) >= groups as u64
    })
    .await;
    let fanout = (size - 1) as u64;
    target::wait_until(drain_end.saturating_duration_since(Instant::now()), || {
        bar.set_position(live.delivered.load(Ordering::Relaxed));
        live.answered.load(Ordering::Relaxed) >= live.sent.load(Ordering::Relaxed)
            && live.delivered.load(Ordering::Relaxed)
                >= live.accepted.load(Ordering::Relaxed) * fanout
    })
    .await;
    let _ = phase_tx.send(Phase::Stop);
    bar.finish_and_clear();

    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await?);
    }
    let mut tally = FanoutTally::default();
    let (mut ack, mut delivery, mut last) = (
        report::new_histogram(),
        report::new_histogram(),
        report::new_histogram(),
    );
    let mut samples = Vec::new();
    let (mut session_failures, mut first_error) = (0, None);
    let send_offset_us = started.duration_since(epoch).as_micros() as u64;
    for group in outcomes.chunks(size) {
        let (sender, members) = group.split_first().expect("groups have members");
        let received: Vec<Vec<u32>> = members.iter().map(|m| m.received.clone()).collect();
        tally.add_group(sender.sent, sender.refused, &sender.accepted, &received);
        if let Some(h) = &sender.ack {
            ack.add(h)?;
        }
        for (n, _) in sender.accepted.iter().enumerate().filter(|(_, a)| **a) {
            let mut slowest = 0u32;
            let mut last_at = 0u64;
            let mut all = true;
            for m in members {
                match m.latency_us.get(n).copied().unwrap_or(0) {
                    0 => all = false,
                    us => {
                        report::record(&mut delivery, us as u64);
                        if us >= slowest {
                            slowest = us;
                            last_at = m.received_at_us[n];
                        }
                    }
                }
            }
            if all {
                report::record(&mut last, slowest as u64);
                let second = last_at.saturating_sub(send_offset_us) / 1_000_000;
                samples.push((second as u32, slowest));
            }
        }
        for o in group {
            if let Some(e) = &o.error {
                session_failures += 1;
                first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    Ok(GroupReport {
        system: system.name(),
        groups,
        group_size: size,
        target_rate: plan.rate,
        seconds,
        accepted_per_second: tally.accepted as f64 / seconds,
        tally,
        session_failures,
        first_error,
        ack: Latency::of(&ack),
        delivery: Latency::of(&delivery),
        last_member: Latency::of(&last),
        last_member_timeline: report::timeline(&samples),
        last_member_distribution: report::distribution(&last),
    })
}

impl Member {
    async fn run(&self, mut session: Session) -> Outcome {
        let mut out = Outcome::default();
        let prepared = async {
            session.catch_up().await?;
            session.join_group(&self.group_id).await
        };
        if let Err(e) = prepared.await {
            out.error = Some(format!("joining: {e:#}"));
            return out;
        }
        self.live.ready.fetch_add(1, Ordering::Relaxed);
        let mut phase = self.phase.clone();
        if phase.wait_for(|p| *p != Phase::Connecting).await.is_err() {
            return out;
        }
        let mut quiet = !self.sender;
        if let Err(e) = self
            .exchange(&mut session, &mut out, phase, &mut quiet)
            .await
        {
            out.error = Some(format!("{e:#}"));
        }
        self.go_quiet(&mut quiet);
        session.close().await;
        out
    }

    /// Tells the controller this sender sends no more (once).
    fn go_quiet(&self, quiet: &mut bool) {
        if !*quiet {
            *quiet = true;
            self.live.quiet.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn exchange(
        &self,
        session: &mut Session,
        out: &mut Outcome,
        mut phase: watch::Receiver<Phase>,
        quiet: &mut bool,
    ) -> anyhow::Result<()> {
        let mut next_due = tokio::time::Instant::now() + self.stagger;
        let mut sending = self.sender;
        let mut sent_at: Vec<u64> = Vec::new();
        let mut acker = InboxAcker::default();
        let mut ack_timer = tokio::time::interval(ACK_TIMER);
        let padding = "x".repeat(self.payload.saturating_sub(12));
        if self.sender {
            out.ack = Some(report::new_histogram());
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_due), if sending => {
                    if *phase.borrow() != Phase::Sending {
                        sending = false;
                        self.go_quiet(quiet);
                        continue;
                    }
                    let n = sent_at.len();
                    let write_us = self.epoch.elapsed().as_micros() as u64;
                    let id = message_id(self.run_id, self.group, n);
                    sent_at.push(write_us);
                    out.sent += 1;
                    self.live.sent.fetch_add(1, Ordering::Relaxed);
                    session
                        .send_group(&id, &self.group_id, &format!("{write_us} {padding}"))
                        .await?;
                    next_due += self.interval;
                }
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Stop {
                        break;
                    }
                    if *phase.borrow() != Phase::Sending {
                        sending = false;
                        self.go_quiet(quiet);
                    }
                }
                _ = ack_timer.tick() => acker.ack(session, 1).await?,
                event = session.recv() => {
                    let Some(event) = event? else {
                        anyhow::bail!("the server closed the session");
                    };
                    let now_us = self.epoch.elapsed().as_micros() as u64;
                    match event {
                        Event::Accepted(id) => {
                            self.live.answered.fetch_add(1, Ordering::Relaxed);
                            let Some((_, _, n)) = parse_id(&id) else { continue };
                            if let Some(us) = first_ack(&mut out.accepted, &sent_at, n, now_us) {
                                self.live.accepted.fetch_add(1, Ordering::Relaxed);
                                if let Some(h) = out.ack.as_mut() {
                                    report::record(h, us);
                                }
                            }
                        }
                        Event::Refused => {
                            self.live.answered.fetch_add(1, Ordering::Relaxed);
                            out.refused += 1;
                        }
                        Event::Delivered { id, text, seq, .. } => {
                            acker.saw(seq);
                            let Some((run, group, n)) = parse_id(&id) else { continue };
                            if run != self.run_id || group != self.group {
                                continue;
                            }
                            if n >= out.received.len() {
                                out.received.resize(n + 1, 0);
                                out.latency_us.resize(n + 1, 0);
                                out.received_at_us.resize(n + 1, 0);
                            }
                            out.received[n] += 1;
                            if out.received[n] == 1 {
                                self.live.delivered.fetch_add(1, Ordering::Relaxed);
                                out.latency_us[n] = delivery_latency(&text, now_us)
                                    .clamp(1, u32::MAX as u64)
                                    as u32;
                                out.received_at_us[n] = now_us;
                            }
                        }
                        Event::Entry { seq } => acker.saw(seq),
                        Event::Error(e) => anyhow::bail!("server error: {e}"),
                    }
                    acker.ack(session, ACK_EVERY).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_tally_counts_per_delivery() {
        let mut t = FanoutTally::default();
        // Messages 0..3 acked, 3 not; two other members.
        // 0: both got it. 1: member B missed it (lost 1). 2: A got it twice.
        // 3: unacked, A got it (counts as delivered, not expected).
        let a = vec![1, 1, 2, 1];
        let b = vec![1, 0, 1];
        t.add_group(5, 1, &[true, true, true, false], &[a, b]);
        assert_eq!(
            t,
            FanoutTally {
                sent: 5,
                accepted: 3,
                refused: 1,
                expected: 6,
                delivered: 6,
                lost: 1,
                duplicates: 1,
                complete: 2,
            }
        );
        assert!(!t.is_clean());
    }

    #[test]
    fn a_clean_group_is_clean() {
        let mut t = FanoutTally::default();
        t.add_group(2, 0, &[true, true], &[vec![1, 1], vec![1, 1], vec![1, 1]]);
        assert_eq!((t.expected, t.delivered, t.complete), (6, 6, 2));
        assert!(t.is_clean());
    }
}
