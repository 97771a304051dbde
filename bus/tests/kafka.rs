//! The bus contract on a real Kafka-protocol broker: the same checks the
//! embedded bus passes (order per key, the partition a key maps to, groups
//! with their own offsets, members sharing partitions). tansu 0.6 does not
//! give a departed member's partitions to the others (ARCHITECTURE.md), so
//! takeover is not tested through consumer groups.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use samvad_bus::{
    partition_for, Bus, Consumer, KafkaBus, KafkaConfig, Outgoing, Record, TopicSpec,
};
use samvad_testkit::Tansu;

async fn poll_n(c: &mut Box<dyn Consumer>, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(left, c.poll(n - out.len()))
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records arrived: {out:?}", out.len()))
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
async fn a_new_group_reads_from_the_start_and_groups_are_independent() {
    let tansu = Tansu::start();
    let bus = bus(&tansu);
    bus.ensure_topic("t", TopicSpec::durable(2)).await.unwrap();
    bus.produce(records("t", &["a", "b"], 10)).await.unwrap();
    let mut first = bus.subscribe("t", "g1").await.unwrap();
    let got = poll_n(&mut first, 20).await;
    first.commit(&got).unwrap();
    // Another group has its own offsets: it sees everything again.
    let mut second = bus.subscribe("t", "g2").await.unwrap();
    let again = poll_n(&mut second, 20).await;
    let payloads: BTreeSet<Bytes> = again.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(payloads.len(), 20);
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
    // Settled: one more round, marked, split between the members with no
    // overlap (earlier rounds may still be arriving: they are not counted).
    let last: Vec<Outgoing> = keys
        .iter()
        .map(|k| Outgoing::new("t", k.clone(), Bytes::from_static(b"last")))
        .collect();
    bus.produce(last).await.unwrap();
    let (mut round_a, mut round_b) = (Vec::new(), Vec::new());
    let is_last = |r: &Record| r.payload == Bytes::from_static(b"last");
    let deadline = Instant::now() + Duration::from_secs(30);
    while round_a.len() + round_b.len() < keys.len() {
        assert!(Instant::now() < deadline, "the last round did not arrive");
        let wait = Duration::from_millis(200);
        if let Ok(r) = tokio::time::timeout(wait, a.poll(1000)).await {
            round_a.extend(r.unwrap().into_iter().filter(is_last));
        }
        if let Ok(r) = tokio::time::timeout(wait, b.poll(1000)).await {
            round_b.extend(r.unwrap().into_iter().filter(is_last));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assigned_reader_starts_where_it_is_told() {
    let tansu = Tansu::start();
    let bus = bus(&tansu);
    bus.ensure_topic("t", TopicSpec::durable(2)).await.unwrap();
    bus.produce(records("t", &["a", "b"], 3)).await.unwrap();
    let p = partition_for(b"a", 2);
    // From offset 1 of a's partition: a:1, a:2 (and b's if they share it).
    let mut from_one = bus.assign("t", &[(p, 1)]).await.unwrap();
    let got = poll_n(&mut from_one, 2).await;
    assert_eq!(got[0].offset, 1);
    assert!(got.iter().all(|r| r.partition == p));
    // From the end: only what is produced afterwards.
    let mut tail = bus.assign("t", &[(p, samvad_bus::FROM_END)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    bus.produce(vec![Outgoing::new("t", "a", Bytes::from_static(b"new"))])
        .await
        .unwrap();
    let got = poll_n(&mut tail, 1).await;
    assert_eq!(got[0].payload, Bytes::from_static(b"new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_lose_nothing_for_a_live_reader() {
    let tansu = Tansu::start();
    let bus = bus(&tansu);
    bus.ensure_topic("t", TopicSpec::durable(2)).await.unwrap();
    let mut reader = bus.assign("t", &[(0, 0), (1, 0)]).await.unwrap();
    let mut producers = Vec::new();
    for task in 0..20 {
        let bus = bus.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..100 {
                let key = format!("k{}", (task + i) % 7);
                bus.produce(vec![Outgoing::new(
                    "t",
                    key,
                    Bytes::from(format!("{task}:{i}")),
                )])
                .await
                .unwrap();
            }
        }));
    }
    let got = poll_n(&mut reader, 2000).await;
    for p in producers {
        p.await.unwrap();
    }
    let unique: BTreeSet<Bytes> = got.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(unique.len(), 2000);
}
