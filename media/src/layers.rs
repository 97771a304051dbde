//! Simulcast layer choice by bandwidth: what each layer of a publisher's
//! track costs (measured from the frames that arrive), and which layers
//! fit a subscriber's estimated downlink. Plain data, no I/O: the SFU
//! feeds in frame sizes and str0m's bandwidth estimates, and applies the
//! choice.

use std::time::{Duration, Instant};

use str0m::media::Rid;

/// How long a rate is measured over before it is updated.
const WINDOW: Duration = Duration::from_secs(1);

/// Share of the estimate a layer above the current one must fit in, so
/// that a subscriber does not flap between two layers at the edge of its
/// bandwidth. The current layer stays while it fits the whole estimate.
const UPGRADE_HEADROOM: f64 = 0.85;

/// How long a track that was lowered stays at most at its layer: a
/// congested link needs time to drain before the estimate means anything
/// again, and raising at once would just congest it again.
pub const RAISE_HOLD: Duration = Duration::from_secs(5);

/// What a frame of `payload` bytes takes on the wire: RTP, SRTP, UDP and
/// IP headers on each packet of up to 1200 bytes. The estimates layers
/// are fitted to are of the wire, not of the payload.
pub fn wire_bytes(payload: usize) -> usize {
    const PER_PACKET: usize = 70;
    payload + PER_PACKET * (1 + payload / 1200)
}

/// The rate to probe for so that a layer of `bps` can be taken up: an
/// upgrade needs [`UPGRADE_HEADROOM`].
pub fn probe_for(bps: u64) -> u64 {
    (bps as f64 / UPGRADE_HEADROOM) as u64
}

/// The bitrate of one stream (one layer of a track, or a track without
/// layers), measured over windows of [`WINDOW`].
#[derive(Debug, Clone)]
pub struct Rate {
    bytes: u64,
    since: Instant,
    /// Bits per second over the last whole window (0 until one passed).
    bps: u64,
}

impl Rate {
    pub fn new(now: Instant) -> Rate {
        Rate {
            bytes: 0,
            since: now,
            bps: 0,
        }
    }

    /// A frame of `bytes` arrived at `now`.
    pub fn record(&mut self, bytes: usize, now: Instant) {
        self.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= WINDOW {
            self.bps = (self.bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.bytes = 0;
            self.since = now;
        }
    }

    pub fn bps(&self) -> u64 {
        self.bps
    }
}

/// One simulcast track a subscriber gets: its layers with their measured
/// rates, and the layer it gets now.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// (layer, bits per second); layers not measured yet are left out.
    pub layers: Vec<(Rid, u64)>,
    pub current: Option<Rid>,
    /// Lowered lately ([`RAISE_HOLD`]): not to rise above `current`.
    pub held: bool,
}

/// Picks a layer for each of `tracks` within `estimate_bps`, of which
/// `fixed_bps` is taken already (audio, video without layers). Every
/// track gets at least its cheapest layer; the rest of the budget raises
/// tracks a layer at a time, in turn, so that one track does not take it
/// all. `None` for a track with no measured layer.
pub fn allocate(estimate_bps: u64, fixed_bps: u64, tracks: &[Track]) -> Vec<Option<Rid>> {
    // Each track's layers, cheapest first, and the index it is at.
    let ladders: Vec<Vec<(Rid, u64)>> = tracks
        .iter()
        .map(|t| {
            let mut layers = t.layers.clone();
            layers.sort_by_key(|(_, bps)| *bps);
            layers
        })
        .collect();
    let mut at: Vec<Option<usize>> = ladders
        .iter()
        .map(|l| (!l.is_empty()).then_some(0))
        .collect();
    let mut spent = fixed_bps
        + ladders
            .iter()
            .filter_map(|l| l.first().map(|(_, bps)| *bps))
            .sum::<u64>();
    let mut raised = true;
    while raised {
        raised = false;
        for (i, ladder) in ladders.iter().enumerate() {
            let Some(level) = at[i] else { continue };
            let Some(&(_, next)) = ladder.get(level + 1) else {
                continue;
            };
            let cost = next - ladder[level].1;
            // Up to the current layer, the whole estimate may be used.
            let current = tracks[i]
                .current
                .and_then(|c| ladder.iter().position(|(r, _)| *r == c));
            let below_current = current.is_some_and(|c| c > level);
            if tracks[i].held && !below_current {
                continue;
            }
            let budget = if below_current {
                estimate_bps as f64
            } else {
                estimate_bps as f64 * UPGRADE_HEADROOM
            };
            if (spent + cost) as f64 <= budget {
                spent += cost;
                at[i] = Some(level + 1);
                raised = true;
            }
        }
    }
    at.iter()
        .zip(&ladders)
        .map(|(level, ladder)| level.map(|l| ladder[l].0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(layers: &[(&str, u64)], current: Option<&str>) -> Track {
        Track {
            layers: layers.iter().map(|(r, b)| (Rid::from(*r), *b)).collect(),
            current: current.map(Rid::from),
            held: false,
        }
    }

    fn rids(choice: &[Option<Rid>]) -> Vec<Option<String>> {
        choice.iter().map(|r| r.map(|r| r.to_string())).collect()
    }

    const THREE: [(&str, u64); 3] = [("q", 150_000), ("h", 500_000), ("f", 1_500_000)];

    #[test]
    fn a_rate_is_the_bits_of_a_whole_window() {
        let t0 = Instant::now();
        let mut rate = Rate::new(t0);
        for i in 0..30 {
            rate.record(1000, t0 + Duration::from_millis(i * 33));
        }
        assert_eq!(rate.bps(), 0, "no whole window yet");
        rate.record(1000, t0 + Duration::from_millis(1000));
        // 31 000 bytes in one second.
        assert_eq!(rate.bps(), 248_000);
    }

    #[test]
    fn the_highest_layer_that_fits_is_chosen() {
        let choose = |estimate| rids(&allocate(estimate, 50_000, &[track(&THREE, None)]));
        assert_eq!(choose(3_000_000), [Some("f".into())]);
        assert_eq!(choose(1_000_000), [Some("h".into())]);
        assert_eq!(choose(300_000), [Some("q".into())]);
        // Even when nothing fits, the cheapest layer keeps video going.
        assert_eq!(choose(100_000), [Some("q".into())]);
    }

    #[test]
    fn the_current_layer_stays_while_it_fits_but_a_higher_one_needs_headroom() {
        // 50k fixed + 500k for `h` = 550k.
        let stay = allocate(600_000, 50_000, &[track(&THREE, Some("h"))]);
        assert_eq!(rids(&stay), [Some("h".into())]);
        // From `q`, 600k × 0.85 = 510k < 550k: not yet.
        let hold = allocate(600_000, 50_000, &[track(&THREE, Some("q"))]);
        assert_eq!(rids(&hold), [Some("q".into())]);
        let up = allocate(700_000, 50_000, &[track(&THREE, Some("q"))]);
        assert_eq!(rids(&up), [Some("h".into())]);
    }

    #[test]
    fn a_lowered_track_is_held_at_its_layer_however_large_the_estimate() {
        let held = Track {
            held: true,
            ..track(&THREE, Some("q"))
        };
        assert_eq!(rids(&allocate(3_000_000, 0, &[held])), [Some("q".into())]);
        // It may still go down.
        let held_high = Track {
            held: true,
            ..track(&THREE, Some("h"))
        };
        assert_eq!(
            rids(&allocate(300_000, 0, &[held_high])),
            [Some("q".into())]
        );
    }

    #[test]
    fn tracks_share_the_budget_a_layer_at_a_time() {
        let two = [track(&THREE, None), track(&THREE, None)];
        // 1.2M: both can be at `h` (1.0M), not one at `f`.
        assert_eq!(
            rids(&allocate(1_300_000, 0, &two)),
            [Some("h".into()), Some("h".into())]
        );
        // A track with no measured layer gets nothing and costs nothing.
        let unmeasured = [track(&[], None), track(&THREE, None)];
        assert_eq!(
            rids(&allocate(700_000, 0, &unmeasured)),
            [None, Some("h".into())]
        );
    }
}
