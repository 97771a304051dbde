//! The numbers a run reports: latency percentiles from HDR histograms and
//! the accounting of messages (sent, acknowledged, delivered, lost,
//! duplicated). Pure functions of recorded data, unit tested.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, with three
/// significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// Records `micros`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// One line: `p50 0.41 ms · p99 1.20 ms · max 3.00 ms (n = 1000)`.
    pub fn line(&self) -> String {
        format!(
            "p50 {} · p90 {} · p99 {} · p99.9 {} · max {} (n = {})",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.count
        )
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// What became of the messages of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Tally {
    /// Send frames written.
    pub sent: u64,
    /// Sends the server acknowledged (durable).
    pub accepted: u64,
    /// Sends the server refused with an error frame.
    pub refused: u64,
    /// Distinct messages that reached their recipient.
    pub delivered: u64,
    /// Deliveries beyond the first of the same message.
    pub duplicates: u64,
    /// Acknowledged messages that never reached their recipient.
    pub lost: u64,
    /// Messages delivered although their acknowledgement never arrived
    /// (the session ended first): not a loss, not a duplicate.
    pub delivered_unacknowledged: u64,
}

impl Tally {
    /// Adds one sender's messages: `accepted[n]` says whether message `n`
    /// was acknowledged, `deliveries[n]` how often it was delivered (a
    /// shorter slice means zero for the rest).
    pub fn add_sender(&mut self, sent: u64, refused: u64, accepted: &[bool], deliveries: &[u32]) {
        self.sent += sent;
        self.refused += refused;
        let n = accepted.len().max(deliveries.len());
        for i in 0..n {
            let acked = accepted.get(i).copied().unwrap_or(false);
            let times = deliveries.get(i).copied().unwrap_or(0);
            self.accepted += acked as u64;
            if times > 0 {
                self.delivered += 1;
                self.duplicates += (times - 1) as u64;
                if !acked {
                    self.delivered_unacknowledged += 1;
                }
            } else if acked {
                self.lost += 1;
            }
        }
    }

    /// Nothing acknowledged was lost and nothing was delivered twice.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }
}

/// The latency at one quantile, for distribution plots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Quantile {
    pub quantile: f64,
    pub us: u64,
}

/// Quantiles a distribution is sampled at: dense in the tail, where
/// systems differ.
const QUANTILES: [f64; 17] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
];

/// The distribution of `h` at [`QUANTILES`] (empty for no samples).
pub fn distribution(h: &Histogram<u64>) -> Vec<Quantile> {
    if h.is_empty() {
        return Vec::new();
    }
    QUANTILES
        .iter()
        .map(|&q| Quantile {
            quantile: q,
            us: h.value_at_quantile(q),
        })
        .collect()
}

/// A latency percentile per second of the run, for plots.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Timeline {
    /// Seconds since the start of the run.
    pub second: u32,
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// Per-second percentiles of `(second, micros)` samples.
pub fn timeline(samples: &[(u32, u32)]) -> Vec<Timeline> {
    let Some(last) = samples.iter().map(|s| s.0).max() else {
        return Vec::new();
    };
    let mut per_second: Vec<Histogram<u64>> = (0..=last).map(|_| new_histogram()).collect();
    for &(second, micros) in samples {
        record(&mut per_second[second as usize], micros as u64);
    }
    per_second
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(second, h)| Timeline {
            second: second as u32,
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert_eq!(l.min_us, 1);
        assert_eq!(l.max_us, 1000);
        assert_eq!(l.p50_us, 500);
        assert_eq!(l.p99_us, 990);
        assert!((l.mean_us - 500.5).abs() < 0.5);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn out_of_range_values_are_clamped_not_dropped() {
        let mut h = new_histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn tally_counts_loss_duplicates_and_unacknowledged_deliveries() {
        let mut t = Tally::default();
        // 0: acked, delivered once. 1: acked, never delivered (lost).
        // 2: acked, delivered three times (two duplicates).
        // 3: not acked, delivered once. 4: not acked, not delivered.
        t.add_sender(6, 1, &[true, true, true, false, false], &[1, 0, 3, 1]);
        assert_eq!(
            t,
            Tally {
                sent: 6,
                accepted: 3,
                refused: 1,
                delivered: 3,
                duplicates: 2,
                lost: 1,
                delivered_unacknowledged: 1,
            }
        );
        assert!(!t.is_clean());
    }

    #[test]
    fn tally_adds_up_over_senders() {
        let mut t = Tally::default();
        t.add_sender(2, 0, &[true, true], &[1, 1]);
        t.add_sender(1, 0, &[true], &[1]);
        assert_eq!(t.accepted, 3);
        assert_eq!(t.delivered, 3);
        assert!(t.is_clean());
    }

    #[test]
    fn distribution_is_monotonic_and_ends_at_the_max() {
        let mut h = new_histogram();
        for us in 1..=10_000 {
            record(&mut h, us);
        }
        let d = distribution(&h);
        assert_eq!(d.len(), QUANTILES.len());
        assert!(d
            .windows(2)
            .all(|w| w[0].us <= w[1].us && w[0].quantile < w[1].quantile));
        assert_eq!(d.last().unwrap().us, h.max());
        assert_eq!(d[5].quantile, 0.5);
        assert!((4990..=5010).contains(&d[5].us), "median {}", d[5].us);
        assert!(distribution(&new_histogram()).is_empty());
    }

    #[test]
    fn timeline_groups_samples_by_second() {
        let samples = [(0, 100), (0, 300), (2, 1000)];
        let tl = timeline(&samples);
        assert_eq!(tl.len(), 2);
        assert_eq!((tl[0].second, tl[0].count), (0, 2));
        assert_eq!(tl[1].second, 2);
        assert_eq!(tl[1].p99_us, 1000);
    }
}
