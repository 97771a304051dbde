//! The bus contract on a real Kafka-protocol broker: the same checks the
//! embedded bus passes (order per key, the partition a key maps to, at
//! least once until commit, groups sharing partitions).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use samvad_bus::{
    partition_for, Bus, Consumer, KafkaBus, KafkaConfig, Outgoing, Record, TopicSpec,
};
use support::Tansu;

async fn poll_n(c: &mut Box<dyn Consumer>, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(left, c.poll(n - out.len()))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived", out.len()))
            .unwrap();
        out.extend(got);
    }
    out
}

fn bus(tansu: &Tansu) -> Arc<dyn Bus> {
    Arc::new(KafkaBus::connect(KafkaConfig::new(&tansu.brokers)).unwrap())
}

fn records(topic: &str, keys: &[&str], per_key: usize) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for i in 0..per_key {
        for k in keys {
            out.push(Outgoing::new(
                topic,
                k.to_string(),
                Bytes::from(format!("{k}:{i}")),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_key_and_partition_by_key() {
    let tansu = Tansu::start();
    let bus = bus(&tansu);
    bus.ensure_topic("t", TopicSpec::durable(4)).await.unwrap();
    // Idempotent: ensuring again is fine.
    bus.ensure_topic("t", TopicSpec::durable(4)).await.unwrap();
    let keys = ["alice", "bob", "carol", "dave", "erin"];
    let mut consumer = bus.subscribe("t", "g").await.unwrap();
    // Produce in many calls whose futures are awaited together: order is
    // fixed at call time.
    let futures: Vec<_> = records("t", &keys, 40)
        .into_iter()
        .map(|r| bus.produce(vec![r]))
        .collect();
    for f in futures {
        f.await.unwrap();
    }
    let got = poll_n(&mut consumer, keys.len() * 40).await;
    let mut next: HashMap<Bytes, usize> = HashMap::new();
    for r in &got {
        assert_eq!(
            r.partition,
            partition_for(&r.key, 4),
            "key decides partition"
        );
        let n = next.entry(r.key.clone()).or_default();
        let expected = format!("{}:{}", String::from_utf8_lossy(&r.key), n);
        assert_eq!(r.payload, Bytes::from(expected), "order within a key");
        *n += 1;
    }
    assert!(next.values().all(|&n| n == 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_records_come_again_committed_ones_do_not() {
    let tansu = Tansu::start();
    let bus = bus(&tansu);
    bus.ensure_topic("t", TopicSpec::durable(2)).await.unwrap();
    bus.produce(records("t", &["a", "b"], 10)).await.unwrap();
    {
        let mut c = bus.subscribe("t", "g").await.unwrap();
        let got = poll_n(&mut c, 20).await;
        // Commit only the first half of each partition.
        let mut by_partition: HashMap<u32, Vec<Record>> = HashMap::new();
        for r in got {
            by_partition.entry(r.partition).or_default().push(r);
        }
        let done: Vec<Record> = by_partition
            .values()
            .map(|rs| rs[rs.len() / 2 - 1].clone())
            .collect();
        c.commit(&done).unwrap();
        // Let the async commit reach the broker before leaving the group.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut c = bus.subscribe("t", "g").await.unwrap();
    let again = poll_n(&mut c, 10).await;
    let payloads: BTreeSet<String> = again
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    let expected: BTreeSet<String> = (5..10)
        .flat_map(|i| [format!("a:{i}"), format!("b:{i}")])
        .collect();
    assert_eq!(payloads, expected, "exactly the uncommitted records return");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shares_partitions_and_each_record_goes_to_one_member() {
    let tansu = Tansu::start();
    let bus = bus(&tansu);
    bus.ensure_topic("t", TopicSpec::durable(4)).await.unwrap();
    let mut a = bus.subscribe("t", "g").await.unwrap();
    let mut b = bus.subscribe("t", "g").await.unwrap();
    let keys: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    // Keep producing until both members have received something, so the
    // rebalance has happened whatever its timing.
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen_a.is_empty() || seen_b.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the group never shared the partitions"
        );
        bus.produce(records("t", &key_refs, 1)).await.unwrap();
        let wait = Duration::from_millis(300);
        if let Ok(r) = tokio::time::timeout(wait, a.poll(1000)).await {
            let r = r.unwrap();
            a.commit(&r).unwrap();
            seen_a.extend(r);
        }
        if let Ok(r) = tokio::time::timeout(wait, b.poll(1000)).await {
            let r = r.unwrap();
            b.commit(&r).unwrap();
            seen_b.extend(r);
        }
    }
    // Settled: one more round, split between the members, no overlap.
    bus.produce(records("t", &key_refs, 1)).await.unwrap();
    let (mut round_a, mut round_b) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while round_a.len() + round_b.len() < keys.len() {
        assert!(Instant::now() < deadline, "the last round did not arrive");
        let wait = Duration::from_millis(200);
        if let Ok(r) = tokio::time::timeout(wait, a.poll(1000)).await {
            round_a.extend(r.unwrap());
        }
        if let Ok(r) = tokio::time::timeout(wait, b.poll(1000)).await {
            round_b.extend(r.unwrap());
        }
    }
    assert_eq!(
        round_a.len() + round_b.len(),
        keys.len(),
        "each record to one member"
    );
    let pa: BTreeSet<u32> = round_a.iter().map(|r| r.partition).collect();
    let pb: BTreeSet<u32> = round_b.iter().map(|r| r.partition).collect();
    assert!(pa.is_disjoint(&pb), "a {pa:?} b {pb:?}");
    assert_eq!(pa.len() + pb.len(), 4);
}
