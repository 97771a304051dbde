//! The harness's XMPP, NATS and Centrifugo clients against the real servers
//! it is compared with (ejabberd, nats-server, Centrifugo, as `bench/run.sh` starts them):
//! short runs of connect, chat and group whose accounting must add up, so
//! that the side-by-side numbers come from clients that work. The same for
//! its Janus videoroom client (Janus as `bench/media.sh` starts it).

use std::sync::Arc;
use std::time::Duration;

use samvad_client::TransportKind;
use samvad_load::scenario::{chat, connect, group, Setup};
use samvad_load::system::{Sources, System};
use samvad_load::target;
use samvad_testkit::{Centrifugo, Ejabberd, Janus, Nats, CENTRIFUGO_KEY};

fn setup(prefix: &str) -> Setup {
    Setup {
        transport: TransportKind::Ws,
        prefix: prefix.into(),
        endpoints: 1,
        ws_sources: 1,
    }
}

async fn scenarios_add_up(system: Arc<System>) {
    let name = system.name();
    let plan = chat::ChatPlan {
        setup: setup("pc"),
        pairs: 4,
        rate: 200,
        duration: Duration::from_secs(2),
        drain: Duration::from_secs(10),
        payload: 64,
    };
    let report = chat::run(system.clone(), &plan).await.unwrap();
    let t = report.tally;
    assert_eq!(
        report.session_failures, 0,
        "{name}: {:?}",
        report.first_error
    );
    assert!(t.sent >= 300, "{name}: sent {}", t.sent);
    assert_eq!(t.accepted, t.sent, "{name}: every send acknowledged");
    assert_eq!(t.delivered, t.sent, "{name}: every message delivered");
    assert!(t.is_clean(), "{name}: {t:?}");
    assert_eq!(report.ack.count, t.accepted);
    assert_eq!(report.delivery.count, t.delivered);

    let plan = group::GroupPlan {
        setup: setup("pg"),
        groups: 2,
        size: 4,
        rate: 50,
        duration: Duration::from_secs(2),
        drain: Duration::from_secs(10),
        payload: 64,
    };
    let report = group::run(system.clone(), &plan).await.unwrap();
    let t = report.tally;
    assert_eq!(
        report.session_failures, 0,
        "{name}: {:?}",
        report.first_error
    );
    assert!(t.sent >= 80, "{name}: sent {}", t.sent);
    assert_eq!(t.accepted, t.sent, "{name}");
    assert_eq!(
        t.expected,
        t.accepted * 3,
        "{name}: three other members each"
    );
    assert_eq!(t.delivered, t.expected, "{name}: {t:?}");
    assert_eq!(t.complete, t.accepted, "{name}");
    assert!(t.is_clean(), "{name}: {t:?}");
    assert_eq!(report.last_member.count, t.complete);

    let plan = connect::ConnectPlan {
        setup: setup("pn"),
        sessions: 40,
        rate: 200,
        users: 4,
        hold: Duration::from_millis(200),
    };
    let report = connect::run(system, &plan).await.unwrap();
    assert_eq!(report.connected, 40, "{name}: {:?}", report.first_error);
    assert!(
        report.server_rss_held > 1 << 20,
        "{name}: memory read from /proc"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_client_accounts_for_every_message() {
    let nats = Nats::start();
    scenarios_add_up(Arc::new(System::Nats {
        url: nats.ws_url.clone(),
        pid: nats.pid(),
        sources: Sources::new(target::loopback_sources(2)),
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_centrifugo_client_accounts_for_every_message() {
    let centrifugo = Centrifugo::start();
    scenarios_add_up(Arc::new(System::Centrifugo {
        url: centrifugo.ws_url.clone(),
        hmac_key: CENTRIFUGO_KEY.into(),
        pid: centrifugo.pid(),
        sources: Sources::new(target::loopback_sources(2)),
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xmpp_client_accounts_for_every_message_with_ejabberd() {
    let ejabberd = tokio::task::spawn_blocking(Ejabberd::start).await.unwrap();
    scenarios_add_up(Arc::new(System::Ejabberd {
        http: ejabberd.http.clone(),
        domain: "localhost".into(),
        pid: ejabberd.pid(),
        sources: Sources::new(target::loopback_sources(2)),
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janus_client_hears_every_publisher_through_a_videoroom() {
    use samvad_load::janus::JanusAddr;
    use samvad_load::scenario::media::{run_janus, JanusTarget, MediaPlan};
    let janus = Janus::start();
    let target = JanusTarget {
        addr: JanusAddr::new(&janus.api).unwrap(),
        pid: janus.pid(),
    };
    let plan = MediaPlan {
        setup: setup("jm"),
        rooms: 1,
        publishers: 2,
        subscribers: 1,
        duration: Duration::from_secs(2),
    };
    let report = run_janus(&target, &plan).await.unwrap();
    // Two publishers, each heard by the two others: every pair saw video.
    assert_eq!(report.join_to_first_video.count, 4, "{}", report.summary());
    assert!(report.frames_received_per_sec > 0.0);
    assert!(report.datagrams_received_per_sec > 0.0);
    assert!(report.server_cores > 0.0, "Janus's CPU time is read");
    assert!(report.loss < 0.5, "{}", report.summary());
    assert_eq!(report.server_frames_forwarded_per_sec, None);
}
