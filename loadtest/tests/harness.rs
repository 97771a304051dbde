//! The load harness against the real server: short runs of each scenario
//! whose accounting must add up (every send answered, nothing lost, nothing
//! duplicated, counts consistent).

use std::sync::Arc;
use std::time::Duration;

use samvad_client::{rest, Client, ServerAddr, TransportKind};
use samvad_load::scenario::{chat, connect, group, offline, storm, Setup};
use samvad_load::system::System;
use samvad_load::target;
use samvad_proto::v1::server_frame;
use samvad_testkit::samvad::cluster::Cluster;
use samvad_testkit::samvad::TestServer;

/// The harness's view of a Samvad server at `addr`, sessions opened as
/// `setup` says.
fn samvad_system(addr: &ServerAddr, setup: &Setup) -> Arc<System> {
    Arc::new(System::samvad(addr.clone(), setup).unwrap())
}

/// The ids of every message in the user's inbox, every sync page read.
async fn inbox_ids(c: &mut Client) -> Vec<String> {
    let mut ids = Vec::new();
    c.sync(0, |frame| {
        if let Some(server_frame::Kind::Deliver(d)) = frame.kind {
            ids.extend(d.envelope.map(|e| e.id));
        }
    })
    .await
    .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_runs_account_for_every_message() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    assert_eq!(addr.cert_sha256, server.addr.cert_sha256);
    for (i, transport) in [TransportKind::Ws, TransportKind::Quic, TransportKind::Wt]
        .into_iter()
        .enumerate()
    {
        let plan = chat::ChatPlan {
            setup: Setup {
                transport,
                prefix: format!("h{i}"),
                endpoints: 2,
                ws_sources: 2,
            },
            pairs: 4,
            rate: 200,
            duration: Duration::from_secs(2),
            drain: Duration::from_secs(10),
            payload: 100,
        };
        let report = chat::run(samvad_system(&addr, &plan.setup), &plan)
            .await
            .unwrap();
        let t = report.tally;
        assert_eq!(
            report.session_failures, 0,
            "{transport:?}: {:?}",
            report.first_error
        );
        assert!(t.sent >= 300, "{transport:?}: sent {}", t.sent);
        assert_eq!(t.accepted, t.sent, "{transport:?}: every send acknowledged");
        assert_eq!(t.refused, 0);
        assert_eq!(
            t.delivered, t.accepted,
            "{transport:?}: every message delivered"
        );
        assert!(t.is_clean(), "{transport:?}: {t:?}");
        assert_eq!(report.delivery.count, t.delivered);
        assert_eq!(report.ack.count, t.accepted);
        assert_eq!(report.stale_deliveries, 0);
        let timeline_total: u64 = report.delivery_timeline.iter().map(|s| s.count).sum();
        assert_eq!(timeline_total, t.delivered);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_runs_account_for_every_delivery() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    for (i, transport) in [TransportKind::Ws, TransportKind::Quic]
        .into_iter()
        .enumerate()
    {
        let plan = group::GroupPlan {
            setup: Setup {
                transport,
                prefix: format!("gr{i}"),
                endpoints: 2,
                ws_sources: 1,
            },
            groups: 3,
            size: 5,
            rate: 60,
            duration: Duration::from_secs(2),
            drain: Duration::from_secs(10),
            payload: 64,
        };
        let report = group::run(samvad_system(&addr, &plan.setup), &plan)
            .await
            .unwrap();
        let t = report.tally;
        assert_eq!(
            report.session_failures, 0,
            "{transport:?}: {:?}",
            report.first_error
        );
        assert!(t.sent >= 90, "{transport:?}: sent {}", t.sent);
        assert_eq!(t.accepted, t.sent, "{transport:?}: every send acknowledged");
        assert_eq!(t.expected, t.accepted * 4, "four other members each");
        assert_eq!(t.delivered, t.expected, "{transport:?}: {t:?}");
        assert_eq!(t.complete, t.accepted);
        assert!(t.is_clean(), "{transport:?}: {t:?}");
        assert_eq!(report.last_member.count, t.complete);
        assert_eq!(report.delivery.count, t.delivered);
        let timeline_total: u64 = report.last_member_timeline.iter().map(|s| s.count).sum();
        assert_eq!(timeline_total, t.complete);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_with_the_same_users_ignores_old_messages() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    let plan = chat::ChatPlan {
        setup: Setup {
            transport: TransportKind::Quic,
            prefix: "again".into(),
            endpoints: 1,
            ws_sources: 1,
        },
        pairs: 2,
        rate: 100,
        duration: Duration::from_secs(1),
        drain: Duration::from_secs(10),
        payload: 16,
    };
    let first = chat::run(samvad_system(&addr, &plan.setup), &plan)
        .await
        .unwrap();
    assert!(first.tally.is_clean());
    // Users exist now (login instead of register); their inboxes were
    // acknowledged, so nothing stale comes back and the tally is fresh.
    let second = chat::run(samvad_system(&addr, &plan.setup), &plan)
        .await
        .unwrap();
    assert!(second.tally.is_clean(), "{:?}", second.tally);
    assert_eq!(second.tally.delivered, second.tally.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_holds_sessions_and_reads_server_memory() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    for transport in [TransportKind::Ws, TransportKind::Quic, TransportKind::Wt] {
        let plan = connect::ConnectPlan {
            setup: Setup {
                transport,
                prefix: format!("c{}", format!("{transport:?}").to_lowercase()),
                endpoints: 2,
                ws_sources: 1,
            },
            sessions: 40,
            rate: 200,
            users: 4,
            hold: Duration::from_millis(200),
        };
        let report = connect::run(samvad_system(&addr, &plan.setup), &plan)
            .await
            .unwrap();
        assert_eq!(
            report.connected, 40,
            "{transport:?}: {:?}",
            report.first_error
        );
        assert_eq!(report.failed, 0);
        assert_eq!(report.connect.count, 40);
        assert!(report.server_rss_held > 1 << 20, "RSS read from /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_backlogs_sync_whole_after_a_mass_reconnect() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    for (i, transport) in [TransportKind::Quic, TransportKind::Ws]
        .into_iter()
        .enumerate()
    {
        let plan = offline::OfflinePlan {
            setup: Setup {
                transport,
                prefix: format!("off{i}"),
                endpoints: 2,
                ws_sources: 1,
            },
            users: 6,
            // More than one sync page (256) per user.
            backlog: 300,
        };
        let report = offline::run(&addr, &plan).await.unwrap();
        assert_eq!(
            report.failures, 0,
            "{transport:?}: {:?}",
            report.first_error
        );
        assert_eq!(report.synced, 6 * 300, "{transport:?}");
        assert_eq!((report.lost, report.duplicated), (0, 0));
        assert_eq!(report.out_of_order_users, 0);
        assert_eq!(report.user_sync.count, 6);
        assert!(report.sync_seconds > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_comes_back_after_a_storm() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    for transport in [TransportKind::Ws, TransportKind::Quic, TransportKind::Wt] {
        let plan = storm::StormPlan {
            setup: Setup {
                transport,
                prefix: format!("st{}", format!("{transport:?}").to_lowercase()),
                endpoints: 2,
                ws_sources: 1,
            },
            sessions: 30,
            rate: 300,
            users: 5,
        };
        let report = storm::run(&addr, &plan).await.unwrap();
        assert_eq!(report.before, 30, "{transport:?}");
        assert_eq!(report.back, 30, "{transport:?}: {:?}", report.first_error);
        assert_eq!(report.failed, 0);
        assert_eq!(report.reconnect.count, 30);
    }
}

#[tokio::test]
async fn only_loopback_servers_are_targets() {
    let err = target::discover("http://192.0.2.1:8080").await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_runs_count_what_the_sfu_forwarded() {
    let server = TestServer::start();
    let addr = target::discover(&server.addr.http).await.unwrap();
    let plan = samvad_load::scenario::media::MediaPlan {
        setup: Setup {
            transport: TransportKind::Quic,
            prefix: "md".into(),
            endpoints: 1,
            ws_sources: 1,
        },
        rooms: 1,
        publishers: 2,
        subscribers: 1,
        duration: Duration::from_secs(2),
    };
    let report = samvad_load::scenario::media::run(&addr, &plan)
        .await
        .unwrap();
    // Two publishers, each heard by the two others: every pair saw video.
    assert_eq!(report.join_to_first_video.count, 4, "{}", report.summary());
    assert!(report.frames_received_per_sec > 0.0);
    assert!(report.server_frames_forwarded_per_sec.unwrap() > 0.0);
    assert!(report.server_datagrams_sent_per_sec.unwrap() > 0.0);
    assert!(report.datagrams_received_per_sec > 0.0);
    assert!(report.server_cores > 0.0);
    assert!(report.loss < 0.5, "{}", report.summary());
}

/// The load harness against the cluster: a few seconds of pairs chatting,
/// every acknowledged message delivered once. A message the live path
/// missed would still have to be in the recipient's inbox: checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_chat_through_the_cluster_accounts_for_everything() {
    let cluster = Cluster::start(1, 1, 1);
    let addr = target::discover(&cluster.edges[0].addr().http)
        .await
        .unwrap();
    let plan = chat::ChatPlan {
        setup: Setup {
            transport: TransportKind::Quic,
            prefix: "hc".into(),
            endpoints: 1,
            ws_sources: 1,
        },
        pairs: 10,
        rate: 200,
        duration: Duration::from_secs(4),
        drain: Duration::from_secs(10),
        payload: 32,
    };
    let report = chat::run(samvad_system(&addr, &plan.setup), &plan)
        .await
        .unwrap();
    let mut in_inbox = Vec::new();
    for lost in &report.lost_sample {
        // "<run>.<sender>.<n> to <user>": is it in that user's inbox?
        let (id, user) = lost.split_once(" to ").unwrap();
        let tokens = rest::login(&addr.http, user, target::LOAD_PASSWORD)
            .await
            .unwrap();
        let mut c = cluster.edges[0].connect(TransportKind::Ws, &tokens).await;
        let ids = inbox_ids(&mut c).await;
        in_inbox.push((id.to_string(), ids.iter().any(|m| m == id)));
    }
    assert!(
        report.tally.is_clean() && report.tally.delivered == report.tally.accepted,
        "{:?}; lost ids and whether the inbox has them: {in_inbox:?}",
        report.tally
    );
}
