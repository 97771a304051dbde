//! Load scenarios. Each takes a plan, drives many sessions from one tokio
//! runtime (one task per session, shared UDP endpoints), stops by itself
//! and returns a report.

use crate::target;
use samvad_client::{Connector, ServerAddr, TransportKind};

pub mod chat;
pub mod connect;
pub mod group;
pub mod hostile;
pub mod media;
pub mod offline;
pub mod storm;

/// Where a timed run is; its sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Sending,
    Draining,
    Stop,
}

/// Message ids of the timed scenarios are `<run, hex>.<sender>.<n>`: the
/// run tells this run's messages from replays of earlier ones, `n` is the
/// sender's count.
pub(crate) fn message_id(run: u32, sender: usize, n: usize) -> String {
    format!("{run:08x}.{sender}.{n}")
}

/// The parts of a [`message_id`].
pub(crate) fn parse_id(id: &str) -> Option<(u32, usize, usize)> {
    let mut parts = id.split('.');
    let run = u32::from_str_radix(parts.next()?, 16).ok()?;
    let sender = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    Some((run, sender, n))
}

/// Message texts start with their write time (µs since the run's epoch),
/// so a recipient can time the delivery without clock sharing: the
/// latency of a delivery seen at `now_us`.
pub(crate) fn delivery_latency(text: &str, now_us: u64) -> u64 {
    let written: u64 = text
        .split(' ')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(now_us);
    now_us.saturating_sub(written)
}

/// Marks my message `n` acknowledged; its ack latency the first time (not
/// for a repeat, or an id I never sent).
pub(crate) fn first_ack(
    accepted: &mut Vec<bool>,
    sent_at: &[u64],
    n: usize,
    now_us: u64,
) -> Option<u64> {
    if n >= accepted.len() {
        accepted.resize(n + 1, false);
    }
    if accepted[n] || n >= sent_at.len() {
        return None;
    }
    accepted[n] = true;
    Some(now_us.saturating_sub(sent_at[n]))
}

/// Acknowledges a session's inbox in batches: once [`ACK_EVERY`] new
/// entries piled up, and on an [`ACK_TIMER`] tick for the rest, as a real
/// client would rather than once per message.
#[derive(Debug, Default)]
pub(crate) struct InboxAcker {
    seen: u64,
    acked: u64,
}

/// Acknowledge the inbox after this many new entries, or on the timer.
pub(crate) const ACK_EVERY: u64 = 32;
pub(crate) const ACK_TIMER: std::time::Duration = std::time::Duration::from_millis(10);

impl InboxAcker {
    /// An inbox entry arrived.
    pub(crate) fn saw(&mut self, seq: u64) {
        self.seen = self.seen.max(seq);
    }

    /// Acknowledges what was seen if at least `pending` entries wait.
    pub(crate) async fn ack(
        &mut self,
        session: &mut crate::system::Session,
        pending: u64,
    ) -> anyhow::Result<()> {
        if self.seen >= self.acked + pending.max(1) {
            session.ack(self.seen).await?;
            self.acked = self.seen;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = message_id(0xdead_beef, 7, 42);
        assert_eq!(parse_id(&id), Some((0xdead_beef, 7, 42)));
        assert_eq!(parse_id("not.an.id"), None);
        assert_eq!(parse_id("x.y"), None);
    }

    #[test]
    fn latency_comes_from_the_text() {
        assert_eq!(delivery_latency("1000 padding", 1500), 500);
        assert_eq!(delivery_latency("garbage", 1500), 0);
    }

    #[test]
    fn only_the_first_ack_of_a_sent_message_counts() {
        let mut accepted = Vec::new();
        let sent_at = [100, 200];
        assert_eq!(first_ack(&mut accepted, &sent_at, 1, 250), Some(50));
        assert_eq!(first_ack(&mut accepted, &sent_at, 1, 300), None, "a repeat");
        assert_eq!(
            first_ack(&mut accepted, &sent_at, 5, 300),
            None,
            "never sent"
        );
        assert_eq!(accepted, [false, true, false, false, false, false]);
    }
}

/// How a scenario opens its sessions.
#[derive(Debug, Clone)]
pub struct Setup {
    pub transport: TransportKind,
    /// User name prefix (a run's users are `<prefix><letter><n>`).
    pub prefix: String,
    /// UDP sockets shared by QUIC and WebTransport sessions.
    pub endpoints: usize,
    /// Loopback source addresses for WebSocket sessions.
    pub ws_sources: usize,
}

impl Setup {
    pub fn connector(&self, server: &ServerAddr) -> anyhow::Result<Connector> {
        Connector::new(
            self.transport,
            server,
            self.endpoints,
            target::loopback_sources(self.ws_sources),
        )
    }

    /// `ws`, `quic` or `wt`, for reports.
    pub fn transport_name(&self) -> String {
        self.transport.name().to_string()
    }
}

pub mod progress {
    use indicatif::{ProgressBar, ProgressStyle};

    /// A progress bar on stderr (hidden when stderr is not a terminal).
    pub fn bar(len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {what} ({{per_sec}})"
            ))
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar
    }
}
