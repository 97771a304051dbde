//! Side-by-side: the JSON reports of runs against Samvad and its peers,
//! turned into the table of ratios that `bench/RESULTS.md` carries.
//!
//! Three comparisons, each one number per system:
//! - p99 delivery latency in `chat` at one rate every system ran;
//! - the highest `chat` rate a system sustained with delivery p99 within a
//!   bound (nothing lost, and at least 95% of the target rate acknowledged);
//! - server memory per idle session, from `connect` (the average over the
//!   sessions up, which a garbage-collected peer cannot skew);
//! - with `group` reports, p99 fan-out latency to the last member at one
//!   rate.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use crate::scenario::chat::ChatReport;
use crate::scenario::connect::ConnectReport;
use crate::scenario::group::GroupReport;

/// A report file of any scenario the comparison reads.
pub enum Report {
    Chat(ChatReport),
    Connect(ConnectReport),
    Group(GroupReport),
}

impl Report {
    pub fn read(path: &Path) -> anyhow::Result<Report> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        let report = if value.get("group_size").is_some() {
            Report::Group(serde_json::from_value(value)?)
        } else if value.get("server_bytes_per_session").is_some() {
            Report::Connect(serde_json::from_value(value)?)
        } else if value.get("delivery_timeline").is_some() {
            Report::Chat(serde_json::from_value(value)?)
        } else {
            anyhow::bail!("{} is not a chat, group or connect report", path.display());
        };
        Ok(report)
    }
}

/// What the comparison is asked.
#[derive(Debug, Clone)]
pub struct Question {
    /// The system the others are compared with (`samvad/ws`).
    pub baseline: String,
    /// The chat (and group) rate latencies are compared at.
    pub rate: u32,
    /// The p99 bound throughput is compared within, in microseconds.
    pub p99_bound_us: u64,
}

/// One system's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub system: String,
    pub chat_p99_us: Option<u64>,
    pub max_rate: Option<u32>,
    pub bytes_per_session: Option<u64>,
    pub group_p99_us: Option<u64>,
}

/// Whether a chat run kept up: nothing lost or duplicated, no session
/// failed, and at least 95% of the target rate acknowledged.
fn kept_up(r: &ChatReport) -> bool {
    r.tally.is_clean()
        && r.session_failures == 0
        && r.accepted_per_second >= 0.95 * r.target_rate as f64
}

/// The numbers per system, in the order systems first appear.
pub fn rows(reports: &[Report], q: &Question) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    let mut by_system: BTreeMap<String, Row> = BTreeMap::new();
    fn row<'a>(
        order: &mut Vec<String>,
        by_system: &'a mut BTreeMap<String, Row>,
        system: &str,
    ) -> &'a mut Row {
        if !order.iter().any(|s| s == system) {
            order.push(system.to_string());
        }
        by_system.entry(system.to_string()).or_insert_with(|| Row {
            system: system.to_string(),
            ..Row::default()
        })
    }
    for report in reports {
        match report {
            Report::Chat(c) => {
                let r = row(&mut order, &mut by_system, &c.system);
                if c.target_rate == q.rate && kept_up(c) {
                    r.chat_p99_us = Some(c.delivery.p99_us);
                }
                if kept_up(c) && c.delivery.p99_us <= q.p99_bound_us {
                    r.max_rate = r.max_rate.max(Some(c.target_rate));
                }
            }
            Report::Connect(c) => {
                if c.connected > 0 {
                    row(&mut order, &mut by_system, &c.system).bytes_per_session =
                        Some(c.server_bytes_per_session_average);
                }
            }
            Report::Group(g) => {
                if g.target_rate == q.rate && g.tally.is_clean() && g.session_failures == 0 {
                    row(&mut order, &mut by_system, &g.system).group_p99_us =
                        Some(g.last_member.p99_us);
                }
            }
        }
    }
    // The baseline first, then the peers in the order they came.
    order.sort_by_key(|s| *s != q.baseline);
    order
        .into_iter()
        .filter_map(|s| by_system.remove(&s))
        .collect()
}

fn ratio(ours: Option<u64>, theirs: Option<u64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
        _ => "—".into(),
    }
}

fn ms(us: Option<u64>) -> String {
    us.map_or("—".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

/// The Markdown table: one column per system, then Samvad / peer ratios.
pub fn markdown(rows: &[Row], q: &Question) -> String {
    let base = rows.iter().find(|r| r.system == q.baseline);
    let peers: Vec<&Row> = rows.iter().filter(|r| r.system != q.baseline).collect();
    let mut out = String::new();
    out.push_str("| measure | better | ");
    for r in rows {
        out.push_str(&format!("{} | ", r.system));
    }
    for p in &peers {
        out.push_str(&format!("{} / {} | ", q.baseline, p.system));
    }
    out.push('\n');
    out.push_str(&"|---".repeat(2 + rows.len() + peers.len()));
    out.push_str("|\n");
    type Pick = fn(&Row) -> Option<u64>;
    type Show = fn(Option<u64>) -> String;
    let lines: [(String, &str, Pick, Show); 4] = [
        (
            format!("chat: delivery p99 at {} msg/s", q.rate),
            "lower",
            |r| r.chat_p99_us,
            ms,
        ),
        (
            format!(
                "chat: highest rate with p99 ≤ {} ms",
                q.p99_bound_us as f64 / 1000.0
            ),
            "higher",
            |r| r.max_rate.map(u64::from),
            |v| v.map_or("—".into(), |v| format!("{v} msg/s")),
        ),
        (
            "memory per idle session".into(),
            "lower",
            |r| r.bytes_per_session,
            |v| v.map_or("—".into(), |v| format!("{:.1} KB", v as f64 / 1000.0)),
        ),
        (
            format!("group: p99 to the last member at {} msg/s", q.rate),
            "lower",
            |r| r.group_p99_us,
            ms,
        ),
    ];
    for (name, better, pick, show) in lines {
        if rows.iter().all(|r| pick(r).is_none()) {
            continue;
        }
        out.push_str(&format!("| {name} | {better} | "));
        for r in rows {
            out.push_str(&format!("{} | ", show(pick(r))));
        }
        for p in &peers {
            out.push_str(&format!("{} | ", ratio(base.and_then(pick), pick(p))));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, Tally};

    fn chat(system: &str, rate: u32, accepted_per_second: f64, p99_us: u64, lost: u64) -> Report {
        Report::Chat(ChatReport {
            system: system.into(),
            pairs: 10,
            target_rate: rate,
            seconds: 10.0,
            accepted_per_second,
            tally: Tally {
                sent: 100,
                accepted: 100,
                delivered: 100 - lost,
                lost,
                ..Tally::default()
            },
            session_failures: 0,
            first_error: None,
            stale_deliveries: 0,
            lost_sample: Vec::new(),
            ack: Latency::default(),
            delivery: Latency {
                p99_us,
                ..Latency::default()
            },
            send_lag: Latency::default(),
            delivery_timeline: Vec::new(),
            delivery_distribution: Vec::new(),
        })
    }

    fn question() -> Question {
        Question {
            baseline: "samvad/ws".into(),
            rate: 1000,
            p99_bound_us: 10_000,
        }
    }

    #[test]
    fn throughput_counts_only_runs_that_kept_up_within_the_bound() {
        let reports = [
            chat("samvad/ws", 1000, 1000.0, 2_000, 0),
            chat("samvad/ws", 5000, 4990.0, 8_000, 0),
            // Within the bound but lost a message: does not count.
            chat("samvad/ws", 10000, 9990.0, 9_000, 1),
            chat("peer/ws", 1000, 1000.0, 4_000, 0),
            // Fell behind (acknowledged 80% of the target): does not count.
            chat("peer/ws", 5000, 4000.0, 5_000, 0),
            // Kept up but over the bound.
            chat("peer/ws", 2000, 2000.0, 20_000, 0),
        ];
        let rows = rows(&reports, &question());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].system, "samvad/ws");
        assert_eq!(rows[0].max_rate, Some(5000));
        assert_eq!(rows[0].chat_p99_us, Some(2_000));
        assert_eq!(rows[1].max_rate, Some(1000));
        assert_eq!(rows[1].chat_p99_us, Some(4_000));
    }

    #[test]
    fn the_table_has_ratios_against_the_baseline() {
        let reports = [
            chat("peer/ws", 1000, 1000.0, 4_000, 0),
            chat("samvad/ws", 1000, 1000.0, 2_000, 0),
            chat("peer/ws", 2000, 2000.0, 5_000, 0),
        ];
        let q = question();
        let table = markdown(&rows(&reports, &q), &q);
        assert!(
            table.starts_with("| measure | better | samvad/ws | peer/ws | samvad/ws / peer/ws |"),
            "the baseline comes first: {table}"
        );
        let p99 = table
            .lines()
            .find(|l| l.starts_with("| chat: delivery p99"))
            .unwrap();
        assert!(p99.ends_with("| 2.00 ms | 4.00 ms | 0.50 | "), "{p99}");
        let rate = table
            .lines()
            .find(|l| l.starts_with("| chat: highest rate"))
            .unwrap();
        assert!(
            rate.ends_with("| 1000 msg/s | 2000 msg/s | 0.50 | "),
            "{rate}"
        );
        // No connect or group reports: no rows for them.
        assert!(!table.contains("memory"));
        assert!(!table.contains("group"));
    }
}
