//! `samvad-load`: drives a Samvad server on this machine with many sessions
//! and reports what it measured (stdout summary, `--out` JSON).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use samvad_client::TransportKind;
use samvad_load::compare::{self, Report};
use samvad_load::plot;
use samvad_load::scenario::{chat, connect, group, hostile, offline, storm, Setup};
use samvad_load::system::{Sources, System, SystemKind};
use samvad_load::target;

#[derive(Parser)]
#[command(name = "samvad-load", version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
struct Common {
    /// The system under test: Samvad, or a peer to compare it with.
    #[arg(long, global = true, value_enum, default_value = "samvad")]
    system: SystemKind,
    /// Where it listens. Samvad: its plain-HTTP URL (the QUIC port and
    /// certificate are discovered from /cert-hash). ejabberd: the HTTP
    /// listener with `/ws` and `/api`. NATS: its WebSocket URL (`ws://…`).
    /// Loopback only.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Process id of a peer server, whose memory is read from /proc
    /// (Samvad reports its own in /metrics).
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Name of the system in reports (default: `samvad/ws`, `nats/ws`, …),
    /// to tell apart runs of one system in different configurations.
    #[arg(long, global = true)]
    label: Option<String>,
    /// XMPP domain of the ejabberd users.
    #[arg(long, global = true, default_value = "localhost")]
    xmpp_domain: String,
    /// Centrifugo's HMAC key for connection tokens (`client.token.hmac_secret_key`).
    #[arg(long, global = true, env = "CENTRIFUGO_KEY")]
    centrifugo_key: Option<String>,
    /// Transport of every session.
    #[arg(long, global = true, value_enum, default_value = "ws")]
    transport: TransportKind,
    /// Write the report as JSON here.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Plot latency over time and its distribution here (SVG; chat and
    /// group).
    #[arg(long, global = true)]
    plot: Option<PathBuf>,
    /// User name prefix (3–20 chars of [a-z0-9_.-]); default: random, so
    /// that every run starts with empty inboxes.
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// UDP sockets shared by the QUIC / WebTransport sessions.
    #[arg(long, global = true, default_value_t = 4)]
    endpoints: usize,
    /// Loopback source addresses (127.0.0.1, .2, …) for WebSocket sessions
    /// (Samvad's and the peers'), for more sessions than one address has
    /// ephemeral ports.
    #[arg(long, global = true, default_value_t = 1)]
    ws_sources: usize,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N sessions at a rate, hold them idle; report connect times and
    /// the server's memory per session.
    Connect {
        #[arg(long, short = 'n', default_value_t = 1000)]
        sessions: usize,
        /// Sessions opened per second.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Users the sessions are spread over (registering costs argon2).
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Seconds to hold the sessions idle before measuring memory.
        #[arg(long, default_value_t = 3)]
        hold: u64,
    },
    /// Pairs of users exchanging 1:1 messages at a total rate.
    Chat {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        /// Messages per second, all senders together.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds to wait for the last acknowledgements and deliveries.
        #[arg(long, default_value_t = 10)]
        drain: u64,
        /// Bytes of text per message.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// Groups of G members, one sender each, at a total rate: fan-out
    /// latency to the last member.
    Group {
        #[arg(long, default_value_t = 10)]
        groups: usize,
        /// Members per group, the sender included.
        #[arg(long, short = 'g', default_value_t = 10)]
        size: usize,
        /// Messages per second, all senders together.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 10)]
        drain: u64,
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// Plot a soak's samples (bench/soak.sh's CSV: seconds, RSS KiB, open
    /// files, disk bytes, CPU seconds) as an SVG of four panels over time.
    SoakPlot {
        csv: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Lay reports of runs against Samvad and its peers side by side: a
    /// Markdown table of Samvad / peer ratios, and a latency plot.
    Compare {
        /// JSON reports (chat, group, connect) of every system.
        reports: Vec<PathBuf>,
        /// Systems whose name starts with this are ours (Samvad in its
        /// configurations); the others are the peers.
        #[arg(long, default_value = "samvad")]
        ours: String,
        /// The chat rate latencies are compared at.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// The group rate fan-out latencies are compared at.
        #[arg(long, default_value_t = 500)]
        group_rate: u32,
        /// The p99 bound throughput is compared within, in ms.
        #[arg(long, default_value_t = 10.0)]
        p99_bound_ms: f64,
        /// Write the table here (Markdown) as well as to stdout.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// R rooms of P publishers and S subscribers (native str0m
    /// participants): forwarded frames per second and per core, loss,
    /// join → first video. With `--janus`, the same plan runs against a
    /// Janus videoroom right after, and the ratios are reported.
    Media {
        #[arg(long, default_value_t = 2)]
        rooms: usize,
        #[arg(long, default_value_t = 2)]
        publishers: usize,
        #[arg(long, default_value_t = 4)]
        subscribers: usize,
        /// Seconds measured (after 2 s of warm-up).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// A Janus HTTP API (`http://127.0.0.1:8088/janus`) to run the same
        /// plan against.
        #[arg(long, requires = "janus_pid")]
        janus: Option<String>,
        /// The Janus process, whose CPU time is read from /proc.
        #[arg(long, requires = "janus")]
        janus_pid: Option<u32>,
    },
    /// One native participant joins a room as a subscriber and waits for
    /// video from a publisher (exit status 0 once it has enough frames):
    /// for tests that pair it with browsers.
    MediaProbe {
        /// The room (group id).
        #[arg(long)]
        room: String,
        /// The participant's user name and access token.
        #[arg(long)]
        user: String,
        #[arg(long)]
        token: String,
        /// The publisher whose video to wait for.
        #[arg(long)]
        from: String,
        /// Video frames to wait for.
        #[arg(long, default_value_t = 20)]
        frames: u64,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Users offline while a backlog piles up, then all back at once: time
    /// until every backlog is synced, and that each arrived whole.
    Offline {
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Messages waiting for each user.
        #[arg(long, default_value_t = 500)]
        backlog: usize,
    },
    /// N sessions up, then all drop and reconnect at once: time until all
    /// are back and synced.
    Storm {
        #[arg(long, short = 'n', default_value_t = 1000)]
        sessions: usize,
        /// Sessions opened per second before the storm.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Users the sessions are spread over.
        #[arg(long, default_value_t = 50)]
        users: usize,
    },
    /// N clients that misbehave one way (half-open upgrades, sessions that
    /// never say hello, readers that stop or read a byte a second), held
    /// until the server cuts them off: time to cut-off and server memory.
    Hostile {
        #[arg(long, value_enum)]
        kind: hostile::HostileKind,
        #[arg(long, short = 'n', default_value_t = 1000)]
        count: usize,
        /// Seconds to wait for the server to cut every client off.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Bytes of messages sent to each reader.
        #[arg(long, default_value_t = 2_000_000)]
        flood: usize,
        /// Bytes a second the one flooding session sends: within the
        /// server's default allowance (`--rate-limit-bytes`, 1 MiB/s), so
        /// the flood is what one session may do, not what it is refused.
        #[arg(long, default_value_t = 1_000_000)]
        flood_rate: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SAMVAD_LOAD_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let c = &cli.common;
    if let Scenario::Compare {
        reports,
        ours,
        rate,
        group_rate,
        p99_bound_ms,
        markdown,
    } = &cli.scenario
    {
        return run_compare(
            reports,
            compare::Question {
                ours: ours.clone(),
                rate: *rate,
                group_rate: *group_rate,
                p99_bound_us: (p99_bound_ms * 1000.0) as u64,
            },
            markdown.as_deref(),
            c.plot.as_deref(),
        );
    }
    if let Scenario::SoakPlot { csv, out } = &cli.scenario {
        let text =
            std::fs::read_to_string(csv).with_context(|| format!("reading {}", csv.display()))?;
        let samples = samvad_load::plot::soak_samples(&text)?;
        samvad_load::plot::soak_svg(out, &samples)?;
        println!("{} samples → {}", samples.len(), out.display());
        return Ok(());
    }
    let prefix = c
        .prefix
        .clone()
        .unwrap_or_else(|| format!("l{:06x}", rand::random::<u32>() & 0xff_ffff));
    let setup = Setup {
        transport: c.transport,
        prefix,
        endpoints: c.endpoints,
        ws_sources: c.ws_sources,
    };
    let system = Arc::new(match c.system {
        SystemKind::Samvad => System::samvad(target::discover(&c.server).await?, &setup)?,
        SystemKind::Ejabberd => System::Ejabberd {
            http: target::loopback_url(&c.server, "http://").await?,
            domain: c.xmpp_domain.clone(),
            pid: c
                .server_pid
                .context("--server-pid is needed for ejabberd's memory")?,
            sources: Sources::new(target::loopback_sources(c.ws_sources)),
        },
        SystemKind::Nats => System::Nats {
            url: target::loopback_url(&c.server, "ws://").await?,
            pid: c
                .server_pid
                .context("--server-pid is needed for nats-server's memory")?,
            sources: Sources::new(target::loopback_sources(c.ws_sources)),
        },
        SystemKind::Centrifugo => System::Centrifugo {
            url: target::loopback_url(&c.server, "ws://").await?,
            hmac_key: c
                .centrifugo_key
                .clone()
                .context("--centrifugo-key is needed to sign Centrifugo's tokens")?,
            pid: c
                .server_pid
                .context("--server-pid is needed for Centrifugo's memory")?,
            sources: Sources::new(target::loopback_sources(c.ws_sources)),
        },
    });
    let samvad_only = |scenario: &str| -> anyhow::Result<samvad_client::ServerAddr> {
        match &*system {
            System::Samvad { server, .. } => Ok(server.clone()),
            _ => anyhow::bail!("`{scenario}` needs Samvad's sync; it runs against Samvad only"),
        }
    };
    let (summary, json) = match cli.scenario {
        Scenario::Connect {
            sessions,
            rate,
            users,
            hold,
        } => {
            let plan = connect::ConnectPlan {
                setup,
                sessions,
                rate,
                users: users.min(sessions),
                hold: Duration::from_secs(hold),
            };
            let mut report = connect::run(system.clone(), &plan).await?;
            if let Some(label) = &c.label {
                report.system = label.clone();
            }
            (report.summary(), serde_json::to_value(&report)?)
        }
        Scenario::Chat {
            pairs,
            rate,
            duration,
            drain,
            payload,
        } => {
            let plan = chat::ChatPlan {
                setup,
                pairs,
                rate,
                duration: Duration::from_secs(duration),
                drain: Duration::from_secs(drain),
                payload,
            };
            let mut report = chat::run(system.clone(), &plan).await?;
            if let Some(label) = &c.label {
                report.system = label.clone();
            }
            let series = plot::Series {
                label: report.system.clone(),
                timeline: &report.delivery_timeline,
                distribution: &report.delivery_distribution,
            };
            plot_if_asked(c, &format!("chat, {rate} msg/s, {pairs} pairs"), series)?;
            (report.summary(), serde_json::to_value(&report)?)
        }
        Scenario::Group {
            groups,
            size,
            rate,
            duration,
            drain,
            payload,
        } => {
            let plan = group::GroupPlan {
                setup,
                groups,
                size,
                rate,
                duration: Duration::from_secs(duration),
                drain: Duration::from_secs(drain),
                payload,
            };
            let mut report = group::run(system.clone(), &plan).await?;
            if let Some(label) = &c.label {
                report.system = label.clone();
            }
            let series = plot::Series {
                label: format!("{} (last member)", report.system),
                timeline: &report.last_member_timeline,
                distribution: &report.last_member_distribution,
            };
            let title = format!("group fan-out, {groups} groups of {size}, {rate} msg/s");
            plot_if_asked(c, &title, series)?;
            (report.summary(), serde_json::to_value(&report)?)
        }
        Scenario::Compare { .. } | Scenario::SoakPlot { .. } => {
            unreachable!("handled before connecting")
        }
        Scenario::Media {
            rooms,
            publishers,
            subscribers,
            duration,
            janus,
            janus_pid,
        } => {
            use samvad_load::scenario::media::{self, JanusTarget, MediaComparison, MediaPlan};
            let plan = MediaPlan {
                setup,
                rooms,
                publishers,
                subscribers,
                duration: Duration::from_secs(duration),
            };
            let report = media::run(&samvad_only("media")?, &plan).await?;
            match janus.zip(janus_pid) {
                Some((url, pid)) => {
                    let addr = samvad_load::janus::JanusAddr::new(&url)?;
                    let janus = media::run_janus(&JanusTarget { addr, pid }, &plan).await?;
                    let both = MediaComparison::new(report, janus);
                    (both.summary(), serde_json::to_value(&both)?)
                }
                None => (report.summary(), serde_json::to_value(&report)?),
            }
        }
        Scenario::MediaProbe {
            room,
            user,
            token,
            from,
            frames,
            timeout,
        } => {
            let server = samvad_only("media-probe")?;
            let (session, _) =
                samvad_client::Client::connect(setup.transport, &server, &token).await?;
            let mut probe =
                samvad_client::media::Participant::join(session, &user, &room, false).await?;
            probe
                .run_until(Duration::from_secs(timeout), |r| {
                    r.count(&from, "video") >= frames
                })
                .await?;
            let got = probe.received.count(&from, "video");
            let first = probe
                .received
                .first_video
                .get(&from)
                .map(|t| t.duration_since(probe.joined_at).as_secs_f64() * 1000.0);
            (
                format!("{user} got {got} video frames from {from}; first after {first:?} ms"),
                serde_json::json!({"from": from, "video_frames": got, "join_to_first_video_ms": first}),
            )
        }
        Scenario::Offline { users, backlog } => {
            let plan = offline::OfflinePlan {
                setup,
                users,
                backlog,
            };
            let report = offline::run(&samvad_only("offline")?, &plan).await?;
            (report.summary(), serde_json::to_value(&report)?)
        }
        Scenario::Storm {
            sessions,
            rate,
            users,
        } => {
            let plan = storm::StormPlan {
                setup,
                sessions,
                rate,
                users,
            };
            let report = storm::run(&samvad_only("storm")?, &plan).await?;
            (report.summary(), serde_json::to_value(&report)?)
        }
        Scenario::Hostile {
            kind,
            count,
            timeout,
            flood,
            flood_rate,
        } => {
            let plan = hostile::HostilePlan {
                setup,
                kind,
                count,
                timeout: Duration::from_secs(timeout),
                flood,
                flood_rate,
            };
            let report = hostile::run(samvad_only("hostile")?, &plan).await?;
            (report.summary(), serde_json::to_value(&report)?)
        }
    };
    println!("{summary}");
    if let Some(path) = &c.out {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Plots one run's latency if `--plot` asked for it.
fn plot_if_asked(c: &Common, title: &str, series: plot::Series) -> anyhow::Result<()> {
    match &c.plot {
        Some(path) => plot::latency_svg(path, title, &[series]),
        None => Ok(()),
    }
}

/// `compare`: reads the reports, prints (and writes) the table, plots the
/// chat runs at the compared rate side by side.
fn run_compare(
    paths: &[PathBuf],
    question: compare::Question,
    markdown: Option<&std::path::Path>,
    plot_path: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let reports = paths
        .iter()
        .map(|p| Report::read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let table = compare::markdown(&compare::rows(&reports, &question), &question);
    println!("{table}");
    if let Some(path) = markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = plot_path {
        let series: Vec<plot::Series> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Chat(c) if c.target_rate == question.rate => Some(plot::Series {
                    label: c.system.clone(),
                    timeline: &c.delivery_timeline,
                    distribution: &c.delivery_distribution,
                }),
                _ => None,
            })
            .collect();
        let title = format!("chat at {} msg/s, side by side", question.rate);
        plot::latency_svg(path, &title, &series)?;
    }
    Ok(())
}
