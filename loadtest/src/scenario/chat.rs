//! `chat`: users in pairs send 1:1 messages to each other at a total rate
//! for a duration; every message is accounted for (acknowledged, delivered,
//! lost, duplicated) and timed (send → server ack, send → delivery).
//!
//! Sending is open loop: message `n` of a session is due at a fixed time,
//! whatever the answers to earlier ones. Latencies are measured from the
//! moment the frame is written; how late writes were against their due
//! time is reported too (`send_lag`), so a server that stalls its clients
//! (coordinated omission) shows there instead of hiding. Due-time latency
//! alone would charge tokio's 1 ms timer granularity to the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use crate::report::{self, Latency, Quantile, Tally, Timeline};
use crate::scenario::{
    delivery_latency, first_ack, message_id, parse_id, progress, InboxAcker, Phase, Setup,
    ACK_EVERY, ACK_TIMER,
};
use crate::system::{Event, Session as Conn, System};
use crate::target;

#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// How sessions are opened (transport, user names, sockets).
    pub setup: Setup,
    /// Pairs of users; each user has one session and sends to its partner.
    pub pairs: usize,
    /// Messages per second over all senders.
    pub rate: u32,
    /// How long messages are sent.
    pub duration: Duration,
    /// How long to wait after the last send for acknowledgements and
    /// deliveries before counting what is missing as lost.
    pub drain: Duration,
    /// Bytes of text per message (at least the timestamp).
    pub payload: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ChatReport {
    /// `samvad/ws`, `ejabberd/ws`, …
    pub system: String,
    pub pairs: usize,
    pub target_rate: u32,
    pub seconds: f64,
    /// Acknowledged messages per second over the sending phase.
    pub accepted_per_second: f64,
    pub tally: Tally,
    /// Sessions that failed to connect or ended early.
    pub session_failures: u64,
    pub first_error: Option<String>,
    /// Deliveries of messages from earlier runs (replayed by sync).
    pub stale_deliveries: u64,
    /// Up to 20 ids of acknowledged messages never delivered, to look up.
    pub lost_sample: Vec<String>,
    /// Write → server acknowledgement.
    pub ack: Latency,
    /// Write → delivery to the recipient.
    pub delivery: Latency,
    /// Due time → write: how far the clients fell behind their schedule.
    pub send_lag: Latency,
    pub delivery_timeline: Vec<Timeline>,
    /// Write → delivery at a ladder of quantiles, for plots.
    pub delivery_distribution: Vec<Quantile>,
}

impl ChatReport {
    pub fn summary(&self) -> String {
        let t = &self.tally;
        format!(
            "chat with {}: {} pairs, target {} msg/s for {:.1} s → {:.0} msg/s acknowledged\n\
             sent {} · acknowledged {} · refused {} · delivered {} · lost {} · duplicated {} · \
             delivered unacknowledged {}{}\n\
             send → ack:      {}\n\
             send → delivery: {}\n\
             send lag:        {}",
            self.system,
            self.pairs,
            self.target_rate,
            self.seconds,
            self.accepted_per_second,
            t.sent,
            t.accepted,
            t.refused,
            t.delivered,
            t.lost,
            t.duplicates,
            t.delivered_unacknowledged,
            if self.session_failures > 0 {
                format!(
                    "\n{} sessions failed; first: {}",
                    self.session_failures,
                    self.first_error.as_deref().unwrap_or("?")
                )
            } else {
                String::new()
            },
            self.ack.line(),
            self.delivery.line(),
            self.send_lag.line(),
        )
    }
}

/// Counters the controller and the progress bar read while sessions run.
#[derive(Default)]
struct Live {
    ready: AtomicU64,
    /// Sessions that saw the end of the sending phase (or ended): no more
    /// sends will come from them.
    quiet: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    delivered: AtomicU64,
}

/// What one session saw.
struct Outcome {
    me: usize,
    sent: u64,
    refused: u64,
    /// `accepted[n]`: my message `n` was acknowledged.
    accepted: Vec<bool>,
    /// `deliveries[n]`: how often my partner's message `n` reached me.
    deliveries: Vec<u32>,
    stale: u64,
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
    send_lag: Histogram<u64>,
    /// (second of the run, µs) per delivery.
    samples: Vec<(u32, u32)>,
    error: Option<String>,
}

fn partner(i: usize) -> usize {
    i ^ 1
}

pub async fn run(system: Arc<System>, plan: &ChatPlan) -> anyhow::Result<ChatReport> {
    let sessions = plan.pairs.max(1) * 2;
    let names: Arc<Vec<String>> = Arc::new(
        (0..sessions)
            .map(|i| format!("{}u{i}", plan.setup.prefix))
            .collect(),
    );
    let logins = system.provision(&names, 8).await?;
    let run_id: u32 = rand::random();
    let live = Arc::new(Live::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    // Every session sends one message per `interval`, staggered.
    let interval = Duration::from_secs_f64(sessions as f64 / plan.rate.max(1) as f64);
    let epoch = Instant::now();
    let mut tasks = Vec::with_capacity(sessions);
    for (me, login) in logins.into_iter().enumerate() {
        let stagger = interval.mul_f64(me as f64 / sessions as f64);
        let session = Session {
            me,
            run_id,
            names: names.clone(),
            payload: plan.payload,
            interval,
            stagger,
            epoch,
            live: live.clone(),
            phase: phase_rx.clone(),
            quiet: false,
        };
        let system = system.clone();
        tasks.push(tokio::spawn(async move {
            match system.connect(&login).await {
                Ok(conn) => session.run(conn).await,
                Err(e) => session.failed(format!("connect: {e:#}")),
            }
        }));
    }
    target::wait_until(Duration::from_secs(120), || {
        live.ready.load(Ordering::Relaxed) + live.failed.load(Ordering::Relaxed) >= sessions as u64
    })
    .await;

    let expected = (plan.duration.as_secs_f64() * plan.rate as f64) as u64;
    let bar = progress::bar(expected, "messages delivered");
    let started = Instant::now();
    let _ = phase_tx.send(Phase::Sending);
    while started.elapsed() < plan.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(live.delivered.load(Ordering::Relaxed));
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Draining);
    // First every session stops sending (so `sent` is final), then the
    // answers and deliveries have until the end of the drain.
    let drain_end = Instant::now() + plan.drain;
    target::wait_until(plan.drain, || {
        live.quiet.load(Ordering::Relaxed) >= live.ready.load(Ordering::Relaxed)
    })
    .await;
    target::wait_until(drain_end.saturating_duration_since(Instant::now()), || {
        bar.set_position(live.delivered.load(Ordering::Relaxed));
        let sent = live.sent.load(Ordering::Relaxed);
        live.answered.load(Ordering::Relaxed) >= sent
            && live.delivered.load(Ordering::Relaxed) >= live.accepted.load(Ordering::Relaxed)
    })
    .await;
    let _ = phase_tx.send(Phase::Stop);
    bar.finish_and_clear();

    // Timeline seconds count from the start of sending.
    let offset = started.duration_since(epoch).as_secs() as u32;
    let mut outcomes = Vec::with_capacity(sessions);
    for task in tasks {
        outcomes.push(task.await?);
    }
    outcomes.sort_by_key(|o| o.me);
    let mut tally = Tally::default();
    let (mut ack, mut delivery) = (report::new_histogram(), report::new_histogram());
    let mut send_lag = report::new_histogram();
    let mut samples = Vec::new();
    let mut session_failures = 0;
    let mut first_error = None;
    let mut stale = 0;
    let mut lost_sample = Vec::new();
    for o in &outcomes {
        let received_by_partner = &outcomes[partner(o.me)].deliveries;
        for (n, acked) in o.accepted.iter().enumerate() {
            if *acked
                && received_by_partner.get(n).copied().unwrap_or(0) == 0
                && lost_sample.len() < 20
            {
                lost_sample.push(format!(
                    "{:08x}.{}.{} to {}",
                    run_id,
                    o.me,
                    n,
                    names[partner(o.me)]
                ));
            }
        }
        tally.add_sender(o.sent, o.refused, &o.accepted, received_by_partner);
        ack.add(&o.ack)?;
        delivery.add(&o.delivery)?;
        send_lag.add(&o.send_lag)?;
        samples.extend(
            o.samples
                .iter()
                .map(|&(second, us)| (second.saturating_sub(offset), us)),
        );
        stale += o.stale;
        if let Some(e) = &o.error {
            session_failures += 1;
            first_error.get_or_insert_with(|| e.clone());
        }
    }
    Ok(ChatReport {
        system: system.name(),
        pairs: plan.pairs,
        target_rate: plan.rate,
        seconds,
        accepted_per_second: tally.accepted as f64 / seconds,
        tally,
        session_failures,
        first_error,
        stale_deliveries: stale,
        lost_sample,
        ack: Latency::of(&ack),
        delivery: Latency::of(&delivery),
        send_lag: Latency::of(&send_lag),
        delivery_timeline: report::timeline(&samples),
        delivery_distribution: report::distribution(&delivery),
    })
}

/// One user's session in the run.
struct Session {
    me: usize,
    run_id: u32,
    names: Arc<Vec<String>>,
    payload: usize,
    interval: Duration,
    stagger: Duration,
    epoch: Instant,
    live: Arc<Live>,
    phase: watch::Receiver<Phase>,
    /// Whether `Live::quiet` counts this session already.
    quiet: bool,
}

impl Session {
    /// Tells the controller this session sends no more (once).
    fn go_quiet(&mut self) {
        if !self.quiet {
            self.quiet = true;
            self.live.quiet.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            me: self.me,
            sent: 0,
            refused: 0,
            accepted: Vec::new(),
            deliveries: Vec::new(),
            stale: 0,
            ack: report::new_histogram(),
            delivery: report::new_histogram(),
            send_lag: report::new_histogram(),
            samples: Vec::new(),
            error: None,
        }
    }

    fn failed(&self, error: String) -> Outcome {
        self.live.failed.fetch_add(1, Ordering::Relaxed);
        Outcome {
            error: Some(error),
            ..self.outcome()
        }
    }

    async fn run(mut self, mut client: Conn) -> Outcome {
        let mut out = self.outcome();
        if let Err(e) = self.catch_up(&mut client, &mut out).await {
            return self.failed(format!("sync: {e:#}"));
        }
        self.live.ready.fetch_add(1, Ordering::Relaxed);
        if self
            .phase
            .wait_for(|p| *p != Phase::Connecting)
            .await
            .is_err()
        {
            return out;
        }
        if let Err(e) = self.exchange(&mut client, &mut out).await {
            out.error = Some(format!("{e:#}"));
        }
        self.go_quiet();
        client.close().await;
        out
    }

    /// Replays (and acknowledges) whatever the inbox holds, so that live
    /// pushes start.
    async fn catch_up(&mut self, client: &mut Conn, out: &mut Outcome) -> anyhow::Result<()> {
        out.stale += client.catch_up().await?;
        Ok(())
    }

    /// The sending and receiving phase, until told to stop.
    async fn exchange(&mut self, client: &mut Conn, out: &mut Outcome) -> anyhow::Result<()> {
        let start = tokio::time::Instant::now() + self.stagger;
        let mut next_due = start;
        let mut sending = true;
        // Write time of each of my messages, µs since the epoch.
        let mut sent_at: Vec<u64> = Vec::new();
        let mut acker = InboxAcker::default();
        let mut ack_timer = tokio::time::interval(ACK_TIMER);
        let to = self.names[partner(self.me)].clone();
        let padding = "x".repeat(self.payload.saturating_sub(12));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_due), if sending => {
                    if *self.phase.borrow() != Phase::Sending {
                        sending = false;
                        self.go_quiet();
                        continue;
                    }
                    let n = sent_at.len();
                    let due_us = next_due.duration_since(self.epoch.into()).as_micros() as u64;
                    let write_us = self.epoch.elapsed().as_micros() as u64;
                    report::record(&mut out.send_lag, write_us.saturating_sub(due_us));
                    let id = message_id(self.run_id, self.me, n);
                    let text = format!("{write_us} {padding}");
                    sent_at.push(write_us);
                    out.sent += 1;
                    self.live.sent.fetch_add(1, Ordering::Relaxed);
                    client.send_chat(&id, &to, &text).await?;
                    next_due += self.interval;
                }
                changed = self.phase.changed() => {
                    if changed.is_err() || *self.phase.borrow() == Phase::Stop {
                        break;
                    }
                    if sending && *self.phase.borrow() != Phase::Sending {
                        sending = false;
                        self.go_quiet();
                    }
                }
                _ = ack_timer.tick() => acker.ack(client, 1).await?,
                event = client.recv() => {
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
                                report::record(&mut out.ack, us);
                            }
                        }
                        Event::Refused => {
                            // Error frames answer sends here (refused).
                            self.live.answered.fetch_add(1, Ordering::Relaxed);
                            out.refused += 1;
                        }
                        Event::Delivered { id, text, seq, .. } => {
                            acker.saw(seq);
                            match parse_id(&id) {
                                Some((run, sender, n))
                                    if run == self.run_id && sender == partner(self.me) =>
                                {
                                    if n >= out.deliveries.len() {
                                        out.deliveries.resize(n + 1, 0);
                                    }
                                    out.deliveries[n] += 1;
                                    if out.deliveries[n] == 1 {
                                        self.live.delivered.fetch_add(1, Ordering::Relaxed);
                                        let latency = delivery_latency(&text, now_us);
                                        report::record(&mut out.delivery, latency);
                                        out.samples.push((
                                            (now_us / 1_000_000) as u32,
                                            latency.min(u32::MAX as u64) as u32,
                                        ));
                                    }
                                }
                                _ => out.stale += 1,
                            }
                        }
                        Event::Entry { seq } => acker.saw(seq),
                        Event::Error(e) => anyhow::bail!("server error: {e}"),
                    }
                    acker.ack(client, ACK_EVERY).await?;
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
    fn partners_pair_up() {
        assert_eq!(partner(4), 5);
        assert_eq!(partner(5), 4);
    }
}
