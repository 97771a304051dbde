//! Retention: which inboxes to expire, walked a step at a time.
//!
//! The rule itself ([`Input::Expire`]) is in the inbox rules; this is the
//! walk that asks for it. A [`Sweep`] goes through the inbox owners in key
//! order, [`SWEEP_OWNERS`] per step and a step per [`SWEEP_EVERY`], with one
//! one-entry range read per owner (and the rule reads one more, the
//! oldest entry, unless it is old): what it costs does not depend on how
//! many entries the inboxes hold, and a round over a million owners takes
//! about an hour, which days of retention allow. A round over a few owners
//! is over at once; the next waits [`Retention::shortest_round`].

use std::time::{Duration, Instant};

use crate::StoreError;
use samvad_core::inbox::Input;
use samvad_core::inbox::{Committed, Space};

/// How often a sweep takes a step.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Inbox owners one step looks at.
pub const SWEEP_OWNERS: usize = 256;
/// The shortest round: a server with few inboxes walks them all in one
/// step, and would otherwise read every inbox once a second for nothing
/// (retention is counted in days). Shorter when retention is so short
/// that a minute would be more than a tenth of it.
pub const SWEEP_ROUND: Duration = Duration::from_secs(60);

/// How long entries are kept (`None`: for ever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// A user's delivered (acked) entries, from when they were accepted;
    /// undelivered ones are kept until they are delivered.
    pub delivered: Option<Duration>,
    /// A conversation's history.
    pub history: Option<Duration>,
}

impl Retention {
    /// Whether anything ever expires.
    pub fn is_forever(&self) -> bool {
        self.delivered.is_none() && self.history.is_none()
    }

    /// How long a round lasts at least: [`SWEEP_ROUND`], or a tenth of
    /// the shortest retention if that is less, so that an entry never
    /// outlives its retention by much more than a tenth of it.
    pub fn shortest_round(&self) -> Duration {
        [self.delivered, self.history]
            .into_iter()
            .flatten()
            .map(|keep| keep / 10)
            .fold(SWEEP_ROUND, Duration::min)
    }

    fn of(&self, owner: &str) -> Option<Duration> {
        if samvad_core::names::is_history(owner) {
            self.history
        } else {
            self.delivered
        }
    }
}

/// Where a sweep is: the owners after `from` come next.
#[derive(Debug, Default)]
pub struct Sweep {
    from: Vec<u8>,
    due: Option<Instant>,
    /// When the current round's first step was taken.
    round_began: Option<Instant>,
}

impl Sweep {
    /// If a step is due at `now`: an [`Input::Expire`] for each of the
    /// next [`SWEEP_OWNERS`] owners that `mine` holds, with `now_ms` the
    /// wall-clock time. Steps come [`SWEEP_EVERY`] apart, rounds
    /// [`Retention::shortest_round`] apart at least.
    pub fn step_if_due(
        &mut self,
        committed: &dyn Committed,
        retention: &Retention,
        now: Instant,
        now_ms: i64,
        mine: impl Fn(&str) -> bool,
    ) -> Result<Vec<Input>, StoreError> {
        if retention.is_forever() || self.due.is_some_and(|due| now < due) {
            return Ok(Vec::new());
        }
        self.due = Some(now + SWEEP_EVERY);
        let began = *self.round_began.get_or_insert(now);
        let inputs = self.step(committed, retention, now_ms, mine)?;
        if self.from.is_empty() {
            // The round is over: the next begins a round's length after
            // this one did.
            self.round_began = None;
            self.due = Some((now + SWEEP_EVERY).max(began + retention.shortest_round()));
        }
        Ok(inputs)
    }

    /// One step, due or not.
    pub fn step(
        &mut self,
        committed: &dyn Committed,
        retention: &Retention,
        now_ms: i64,
        mine: impl Fn(&str) -> bool,
    ) -> Result<Vec<Input>, StoreError> {
        let mut inputs = Vec::new();
        for _ in 0..SWEEP_OWNERS {
            // No key starts with 0xff (UTF-8 has no such byte).
            let next = committed.range(Space::Inbox, &self.from, &[0xff], false, 1)?;
            let Some((key, _)) = next.first() else {
                // The end: the next step starts over.
                self.from.clear();
                break;
            };
            let zero = key.iter().position(|&b| b == 0).unwrap_or(key.len());
            // Past every key of this owner: `owner \0 seq` < `owner \x01`.
            self.from = key[..zero].to_vec();
            self.from.push(1);
            let Ok(owner) = std::str::from_utf8(&key[..zero]) else {
                continue;
            };
            if let Some(keep) = retention.of(owner).filter(|_| mine(owner)) {
                inputs.push(Input::Expire {
                    owner: owner.to_string(),
                    before_ms: now_ms.saturating_sub(keep.as_millis() as i64),
                });
            }
        }
        Ok(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::inbox_key;
    use samvad_core::inbox::{MemoryState, Pending};

    fn owners(inputs: &[Input]) -> Vec<(&str, i64)> {
        inputs
            .iter()
            .map(|i| match i {
                Input::Expire { owner, before_ms } => (owner.as_str(), *before_ms),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_sweep_visits_each_owner_once_per_round_with_its_own_retention() {
        let mut state = MemoryState::default();
        let mut pending = Pending::default();
        for (owner, seqs) in [("alice", 3), ("#alice:bob", 2), ("bob", 1), ("carol", 2)] {
            for seq in 1..=seqs {
                pending.put(Space::Inbox, inbox_key(owner, seq), b"x".to_vec());
            }
        }
        state.commit(&pending);
        let retention = Retention {
            delivered: Some(Duration::from_secs(10)),
            history: Some(Duration::from_secs(100)),
        };
        let mut sweep = Sweep::default();
        let all = sweep.step(&state, &retention, 1_000_000, |_| true).unwrap();
        assert_eq!(
            owners(&all),
            [
                ("#alice:bob", 900_000),
                ("alice", 990_000),
                ("bob", 990_000),
                ("carol", 990_000)
            ]
        );
        // The next round starts over; `mine` picks a shard's owners.
        let again = sweep
            .step(&state, &retention, 1_000_000, |o| o != "bob")
            .unwrap();
        assert_eq!(owners(&again).len(), 3);
        // History kept for ever: only users' inboxes.
        let users_only = Retention {
            history: None,
            ..retention
        };
        let mut sweep = Sweep::default();
        let some = sweep
            .step(&state, &users_only, 1_000_000, |_| true)
            .unwrap();
        assert_eq!(owners(&some).len(), 3);
        assert!(Sweep::default()
            .step_if_due(&state, &Retention::default(), Instant::now(), 0, |_| true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn steps_come_a_second_apart_and_rounds_a_round_apart() {
        let mut state = MemoryState::default();
        let mut pending = Pending::default();
        for owner in ["alice", "bob"] {
            pending.put(Space::Inbox, inbox_key(owner, 1), b"x".to_vec());
        }
        state.commit(&pending);
        let retention = Retention {
            delivered: Some(Duration::from_secs(86_400)),
            history: None,
        };
        let t0 = Instant::now();
        let mut sweep = Sweep::default();
        let mut at = |t: Duration| {
            sweep
                .step_if_due(&state, &retention, t0 + t, 1_000_000, |_| true)
                .unwrap()
                .len()
        };
        // Two owners: the first step is a whole round.
        assert_eq!(at(Duration::ZERO), 2);
        assert_eq!(at(SWEEP_EVERY), 0);
        assert_eq!(at(SWEEP_ROUND - Duration::from_millis(1)), 0);
        assert_eq!(at(SWEEP_ROUND), 2);
        assert_eq!(at(SWEEP_ROUND + SWEEP_EVERY / 2), 0);
    }

    #[test]
    fn a_short_retention_shortens_the_round_to_a_tenth_of_it() {
        let days = |d: u64| Some(Duration::from_secs(d * 86_400));
        let long = Retention {
            delivered: days(30),
            history: days(365),
        };
        assert_eq!(long.shortest_round(), SWEEP_ROUND);
        let short = Retention {
            delivered: days(30),
            history: Some(Duration::from_secs(2)),
        };
        assert_eq!(short.shortest_round(), Duration::from_millis(200));

        // With a 2 s retention, steps come a second apart even when each
        // is a whole round.
        let mut state = MemoryState::default();
        let mut pending = Pending::default();
        pending.put(Space::Inbox, inbox_key("#alice:bob", 1), b"x".to_vec());
        state.commit(&pending);
        let t0 = Instant::now();
        let mut sweep = Sweep::default();
        let mut at = |t: Duration| {
            sweep
                .step_if_due(&state, &short, t0 + t, 1_000_000, |_| true)
                .unwrap()
                .len()
        };
        assert_eq!(at(Duration::ZERO), 1);
        assert_eq!(at(SWEEP_EVERY / 2), 0);
        assert_eq!(at(SWEEP_EVERY), 1);
    }
}
