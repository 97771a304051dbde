//! How long a store with an empty disk takes to take over a partition
//! holding many messages (a benchmark, run by `bench/takeover.sh`; ignored
//! in the suite): it restores the partition's state from the changelog and
//! reads `deliver` only after the committed offset.
//!
//! `TAKEOVER_MESSAGES` (default 1 000 000) messages go straight to
//! `deliver`, for inboxes that all live on partition 0; once the first
//! store applied them it is killed -9, a second store with an empty disk
//! joins, and the clock runs until a new message is in the last inbox.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use samvad_bus::{partition_for, Bus, KafkaBus, KafkaConfig, Outgoing, Topics};
use samvad_client::TransportKind;
use samvad_proto::bus::{deliver_record, DeliverRecord};
use samvad_testkit::samvad::cluster::Cluster;

/// Users whose inboxes live on `deliver` partition 0 of 4.
fn users_on_partition_0(count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("holder{i}"))
        .filter(|u| partition_for(u.as_bytes(), 4) == 0)
        .take(count)
        .collect()
}

fn message(id: &str, to: &str) -> DeliverRecord {
    let mut env = samvad_client::chat(id, "sender", to, "takeover");
    if let Some(head) = env.head.as_mut() {
        head.chatid = format!("sender:{to}");
    }
    DeliverRecord {
        user: to.into(),
        then: Vec::new(),
        kind: Some(deliver_record::Kind::Message(env)),
    }
}

/// The ids in `tokens`' inbox, by a sync that may take long (an empty
/// list if it did not answer within two minutes).
async fn inbox_ids(cluster: &Cluster, tokens: &samvad_client::rest::Tokens) -> Vec<String> {
    let mut c = cluster.edges[0].connect(TransportKind::Ws, tokens).await;
    let mut ids = Vec::new();
    let synced = tokio::time::timeout(
        Duration::from_secs(120),
        c.sync(0, |f| {
            if let Some(samvad_proto::v1::server_frame::Kind::Deliver(d)) = f.kind {
                ids.push(d.envelope.unwrap_or_default().id);
            }
        }),
    )
    .await;
    c.close().await;
    match synced {
        Ok(Ok(_)) => ids,
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/takeover.sh"]
async fn a_store_with_an_empty_disk_takes_over_a_full_partition() {
    let total: usize = std::env::var("TAKEOVER_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut cluster = Cluster::start(1, 0, 1);
    let holders = users_on_partition_0(1000);
    let last = holders.last().unwrap().clone();
    let tokens = cluster.user(0, &last).await;
    let bus = KafkaBus::connect(KafkaConfig::new(&cluster.kafka.brokers)).unwrap();
    let topics = Topics::new("samvad.");
    let deliver: std::sync::Arc<str> = topics.deliver().into();
    bus.ensure_topic(&deliver, samvad_bus::TopicSpec::durable(4))
        .await
        .unwrap();
    let filled = Instant::now();
    let mut sent = 0;
    while sent < total {
        let chunk: Vec<Outgoing> = (sent..(sent + 10_000).min(total))
            .map(|i| {
                let to = &holders[i % holders.len()];
                let rec = message(&format!("m{i}"), to);
                Outgoing::new(
                    deliver.clone(),
                    to.clone(),
                    Bytes::from(rec.encode_to_vec()),
                )
            })
            .collect();
        sent += chunk.len();
        bus.produce(chunk).await.unwrap();
    }
    let produced = filled.elapsed();
    // Applied by the first store once the last inbox has its last message.
    let per_holder = total.div_ceil(holders.len());
    let expected_last = (0..total)
        .filter(|i| i % holders.len() == holders.len() - 1)
        .count();
    // A sync waits behind every record before it in the partition: when it
    // answers with the whole inbox, the store has applied everything.
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        if inbox_ids(&cluster, &tokens).await.len() >= expected_last {
            break;
        }
        assert!(Instant::now() < deadline, "the first store never caught up");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let applied = filled.elapsed();
    eprintln!(
        "takeover: {total} messages on partition 0 ({per_holder} per inbox): produced in {produced:?}, \
         applied by the first store in {applied:?}"
    );

    // The takeover.
    cluster.stores[0].kill9();
    let killed = Instant::now();
    tokio::task::block_in_place(|| cluster.add_store(1));
    let joined = killed.elapsed();
    bus.produce(vec![Outgoing::new(
        deliver.clone(),
        last.clone(),
        Bytes::from(message("after-takeover", &last).encode_to_vec()),
    )])
    .await
    .unwrap();
    loop {
        let ids = inbox_ids(&cluster, &tokens).await;
        if ids.iter().any(|id| id == "after-takeover") {
            assert_eq!(ids.len(), expected_last + 1, "the inbox, whole");
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(600),
            "no takeover within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "takeover: the new store was running {joined:?} after the kill; the next message was \
         in its inbox {:?} after the kill (the group gives a dead member's partitions away \
         after its 3 s session timeout)",
        killed.elapsed()
    );
}
