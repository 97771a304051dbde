//! Side-by-side: the JSON reports of runs against Samvad and its peers,
//! turned into the table of ratios that `bench/RESULTS.md` carries.
//!
//! Each comparison is one number per system:
//! - p99 delivery latency in `chat` at one rate every system ran;
//! - the highest `chat` rate a system sustained with delivery p99 within a
//!   bound (nothing lost, and at least 95% of the target rate acknowledged);
//! - server memory per idle session, from `connect` (the average over the
//!   sessions up, which a garbage-collected peer cannot skew);
//! - with `group` reports, p99 fan-out latency to the last member at one
//!   rate.
//!
//! A run repeated (same system, scenario and rate) counts by its median,
//! and as kept up only if most of its repeats kept up: one noisy run on a
//! shared machine moves nothing.

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
    /// Systems whose name starts with this are Samvad (in its
    /// configurations); the others are the peers it is compared with.
    pub ours: String,
    /// The chat rate latencies are compared at.
    pub rate: u32,
    /// The group rate fan-out latencies are compared at.
    pub group_rate: u32,
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

/// The median of the runs that kept up, if most runs did.
fn verdict(runs: &[(bool, u64)]) -> Option<u64> {
    let mut kept: Vec<u64> = runs.iter().filter(|r| r.0).map(|r| r.1).collect();
    if kept.len() * 2 <= runs.len() {
        return None;
    }
    kept.sort_unstable();
    Some(kept[kept.len() / 2])
}

/// The numbers per system: ours first, then the peers, each in the order
/// they first appear.
pub fn rows(reports: &[Report], q: &Question) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    // (system, rate) → (kept up, p99) per run.
    let mut chats: BTreeMap<(String, u32), Vec<(bool, u64)>> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<(bool, u64)>> = BTreeMap::new();
    let mut memory: BTreeMap<String, Vec<(bool, u64)>> = BTreeMap::new();
    for report in reports {
        let system = match report {
            Report::Chat(c) => &c.system,
            Report::Connect(c) => &c.system,
            Report::Group(g) => &g.system,
        };
        if !order.contains(system) {
            order.push(system.clone());
        }
        match report {
            Report::Chat(c) => chats
                .entry((c.system.clone(), c.target_rate))
                .or_default()
                .push((kept_up(c), c.delivery.p99_us)),
            Report::Connect(c) => memory
                .entry(c.system.clone())
                .or_default()
                .push((c.connected > 0, c.server_bytes_per_session_average)),
            Report::Group(g) if g.target_rate == q.group_rate => {
                let clean = g.tally.is_clean() && g.session_failures == 0;
                groups
                    .entry(g.system.clone())
                    .or_default()
                    .push((clean, g.last_member.p99_us))
            }
            Report::Group(_) => {}
        }
    }
    order.sort_by_key(|s| !s.starts_with(&q.ours));
    order
        .into_iter()
        .map(|system| {
            let max_rate = chats
                .iter()
                .filter(|((s, _), runs)| {
                    *s == system && verdict(runs).is_some_and(|p99| p99 <= q.p99_bound_us)
                })
                .map(|((_, rate), _)| *rate)
                .max();
            Row {
                chat_p99_us: chats
                    .get(&(system.clone(), q.rate))
                    .and_then(|runs| verdict(runs)),
                max_rate,
                bytes_per_session: memory.get(&system).and_then(|runs| verdict(runs)),
                group_p99_us: groups.get(&system).and_then(|runs| verdict(runs)),
                system,
            }
        })
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

type Pick = fn(&Row) -> Option<u64>;
type Show = fn(Option<u64>) -> String;

/// The measures, each with how a row gives it and how it reads.
fn measures(q: &Question) -> Vec<(String, Pick, Show)> {
    vec![
        (
            format!("chat p99 at {} msg/s (lower is better)", q.rate),
            |r| r.chat_p99_us,
            ms,
        ),
        (
            format!(
                "highest chat rate with p99 ≤ {} ms (higher is better)",
                q.p99_bound_us as f64 / 1000.0
            ),
            |r| r.max_rate.map(u64::from),
            |v| v.map_or("—".into(), |v| format!("{v} msg/s")),
        ),
        (
            "memory per idle session (lower is better)".into(),
            |r| r.bytes_per_session,
            |v| v.map_or("—".into(), |v| format!("{:.1} KB", v as f64 / 1000.0)),
        ),
        (
            format!(
                "group p99 to the last member at {} msg/s (lower is better)",
                q.group_rate
            ),
            |r| r.group_p99_us,
            ms,
        ),
    ]
}

/// Two Markdown tables: every system's numbers, then Samvad / peer ratios
/// (one line per configuration of ours and peer). Measures nobody has are
/// left out.
pub fn markdown(rows: &[Row], q: &Question) -> String {
    let measures: Vec<_> = measures(q)
        .into_iter()
        .filter(|(_, pick, _)| rows.iter().any(|r| pick(r).is_some()))
        .collect();
    let header = |first: &str| {
        let mut line = format!("| {first} |");
        for (name, _, _) in &measures {
            line.push_str(&format!(" {name} |"));
        }
        line.push('\n');
        line.push_str(&"|---".repeat(measures.len() + 1));
        line.push_str("|\n");
        line
    };
    let mut out = header("system");
    for r in rows {
        out.push_str(&format!("| {} |", r.system));
        for (_, pick, show) in &measures {
            out.push_str(&format!(" {} |", show(pick(r))));
        }
        out.push('\n');
    }
    let (ours, peers): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| r.system.starts_with(&q.ours));
    if ours.is_empty() || peers.is_empty() {
        return out;
    }
    out.push('\n');
    out.push_str(&header("ratio"));
    for o in &ours {
        for p in &peers {
            out.push_str(&format!("| {} / {} |", o.system, p.system));
            for (_, pick, _) in &measures {
                out.push_str(&format!(" {} |", ratio(pick(o), pick(p))));
            }
            out.push('\n');
        }
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
            ours: "samvad".into(),
            rate: 1000,
            group_rate: 500,
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
    fn a_file_that_is_no_report_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("other.json", r#"{"sessions": 3}"#), ("broken.json", "{")] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            assert!(Report::read(&path).is_err(), "{name}");
        }
        assert!(Report::read(&dir.path().join("missing.json")).is_err());
    }

    #[test]
    fn repeats_count_by_their_median_and_majority() {
        let reports = [
            chat("samvad/ws", 1000, 1000.0, 2_000, 0),
            chat("samvad/ws", 1000, 1000.0, 30_000, 0),
            chat("samvad/ws", 1000, 1000.0, 3_000, 0),
            // Two of three runs lost messages at 2000: not kept up.
            chat("samvad/ws", 2000, 2000.0, 3_000, 0),
            chat("samvad/ws", 2000, 2000.0, 3_000, 1),
            chat("samvad/ws", 2000, 2000.0, 3_000, 1),
        ];
        let rows = rows(&reports, &question());
        assert_eq!(rows[0].chat_p99_us, Some(3_000), "median of 2, 3, 30 ms");
        assert_eq!(rows[0].max_rate, Some(1000));
    }

    #[test]
    fn the_tables_have_ratios_of_ours_against_each_peer() {
        let reports = [
            chat("peer/ws", 1000, 1000.0, 4_000, 0),
            chat("samvad/ws", 1000, 1000.0, 2_000, 0),
            chat("peer/ws", 2000, 2000.0, 5_000, 0),
            chat("samvad-buffered/ws", 1000, 1000.0, 1_000, 0),
        ];
        let q = question();
        let table = markdown(&rows(&reports, &q), &q);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("| system | chat p99 at 1000 msg/s"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("| samvad/ws | 2.00 ms | 1000 msg/s |"),
            "{table}"
        );
        assert!(
            lines[3].starts_with("| samvad-buffered/ws |"),
            "ours first: {table}"
        );
        assert!(
            lines[4].starts_with("| peer/ws | 4.00 ms | 2000 msg/s |"),
            "{table}"
        );
        assert!(
            table.contains("| samvad/ws / peer/ws | 0.50 | 0.50 |"),
            "{table}"
        );
        assert!(
            table.contains("| samvad-buffered/ws / peer/ws | 0.25 | 0.50 |"),
            "{table}"
        );
        // No connect or group reports: no columns for them.
        assert!(!table.contains("memory") && !table.contains("group"));
    }
}
