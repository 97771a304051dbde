//! The bus contract on Apache Kafka: the same checks the embedded bus
//! passes (order per key, the partition a key maps to, groups with their
//! own offsets, members sharing partitions), and the transactional
//! processors the cluster's owning roles run on: outputs committed with
//! their offsets exactly once across a takeover, zombies fenced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use samvad_bus::{
    partition_for, Bus, BusError, Change, Consumer, FromCommitted, KafkaBus, KafkaConfig, Outgoing,
    Processor, Record, TopicSpec,
};
use samvad_testkit::Kafka;

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

fn bus(kafka: &Kafka) -> Arc<dyn Bus> {
    Arc::new(kafka_bus(kafka))
}

fn kafka_bus(kafka: &Kafka) -> KafkaBus {
    let mut config = KafkaConfig::new(&kafka.brokers);
    // A member that stops heartbeating loses its partitions after this.
    config.session_timeout_ms = 2000;
    KafkaBus::connect(config).unwrap()
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
    let kafka = Kafka::start();
    let bus = bus(&kafka);
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
    let kafka = Kafka::start();
    let bus = bus(&kafka);
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
    let kafka = Kafka::start();
    let bus = bus(&kafka);
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
    let kafka = Kafka::start();
    let bus = bus(&kafka);
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
    let kafka = Kafka::start();
    let bus = bus(&kafka);
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

/// Reads everything committed to `topic` (2 partitions) until `n` records
/// came, then half a second more to catch any extra.
async fn committed_outputs(bus: &dyn Bus, topic: &str, n: usize) -> Vec<Bytes> {
    let mut reader = bus.assign(topic, &[(0, 0), (1, 0)]).await.unwrap();
    let mut got: Vec<Bytes> = poll_n(&mut reader, n)
        .await
        .into_iter()
        .map(|r| r.payload)
        .collect();
    while let Ok(more) = tokio::time::timeout(Duration::from_millis(500), reader.poll(100)).await {
        got.extend(more.unwrap().into_iter().map(|r| r.payload));
    }
    got
}

/// Polls `p` until `n` records of its partitions came; commits nothing.
async fn take(p: &mut Box<dyn Processor>, n: usize) -> (Vec<Record>, Vec<Change>) {
    let mut records = Vec::new();
    let mut changes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {n} records came",
            records.len()
        );
        if let Ok(got) =
            tokio::time::timeout(Duration::from_millis(200), p.poll(n - records.len())).await
        {
            records.extend(got.unwrap());
        }
        changes.extend(p.changes());
    }
    (records, changes)
}

/// The output of input record `r`, and what committing it marks.
fn echo(records: &[Record]) -> (Vec<Outgoing>, Vec<(u32, u64)>) {
    let outputs = records
        .iter()
        .map(|r| Outgoing::new("out", r.key.clone(), r.payload.clone()))
        .collect();
    let mut next: HashMap<u32, u64> = HashMap::new();
    for r in records {
        let e = next.entry(r.partition).or_default();
        *e = (*e).max(r.offset + 1);
    }
    (outputs, next.into_iter().collect())
}

/// A broker with the topics the processor tests read (`in`) and write
/// (`out`), 2 partitions each.
async fn processing() -> (Kafka, KafkaBus) {
    let kafka = Kafka::start();
    let bus = kafka_bus(&kafka);
    for topic in ["in", "out"] {
        bus.ensure_topic(topic, TopicSpec::durable(2))
            .await
            .unwrap();
    }
    (kafka, bus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_resumes_after_the_last_commit_and_outputs_commit_once() {
    let (_kafka, bus) = processing().await;
    let inputs = |from: usize, to: usize| -> Vec<Outgoing> {
        (from..to)
            .map(|i| Outgoing::new("in", format!("k{}", i % 5), Bytes::from(format!("{i}"))))
            .collect()
    };
    bus.produce(inputs(0, 40)).await.unwrap();
    let mut first = bus
        .processor("in", "g", "m1", Arc::new(FromCommitted))
        .await
        .unwrap();
    let (records, changes) = take(&mut first, 40).await;
    assert!(
        changes.iter().all(|c| matches!(
            c,
            Change::Assigned {
                committed: None,
                start: 0,
                ..
            }
        )),
        "{changes:?}"
    );
    let (outputs, consumed) = echo(&records);
    first.commit(outputs, consumed).await.unwrap();
    // A second batch is read and processed, but the member dies before it
    // commits: its outputs are never seen, its records are read again.
    bus.produce(inputs(40, 60)).await.unwrap();
    let (records, _) = take(&mut first, 20).await;
    drop(records);
    drop(first);
    let mut second = bus
        .processor("in", "g", "m2", Arc::new(FromCommitted))
        .await
        .unwrap();
    let (records, changes) = take(&mut second, 20).await;
    let starts: BTreeSet<(u32, Option<u64>, u64)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Assigned {
                partition,
                committed,
                start,
            } => Some((*partition, *committed, *start)),
            Change::Revoked { .. } => None,
        })
        .collect();
    assert_eq!(
        starts.len(),
        2,
        "both partitions came to the successor: {changes:?}"
    );
    assert!(
        starts.iter().all(|(_, c, s)| c.is_some() && Some(*s) == *c),
        "{starts:?}"
    );
    let (outputs, consumed) = echo(&records);
    second.commit(outputs, consumed).await.unwrap();
    let got = committed_outputs(&bus, "out", 60).await;
    let unique: BTreeSet<&Bytes> = got.iter().collect();
    assert_eq!(got.len(), 60, "each input's output exactly once");
    assert_eq!(unique.len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_fences_its_earlier_incarnation() {
    let (_kafka, bus) = processing().await;
    bus.produce(records("in", &["a", "b", "c"], 4))
        .await
        .unwrap();
    let mut zombie = bus
        .processor("in", "g", "m1", Arc::new(FromCommitted))
        .await
        .unwrap();
    let (records, _) = take(&mut zombie, 12).await;
    // The same member starts again (a supervisor restarted it while the
    // old process hung): the old one can no longer commit.
    let mut successor = bus
        .processor("in", "g", "m1", Arc::new(FromCommitted))
        .await
        .unwrap();
    let (outputs, consumed) = echo(&records);
    let refused = zombie.commit(outputs, consumed).await;
    assert!(matches!(refused, Err(BusError::Fenced(_))), "{refused:?}");
    let (records, _) = take(&mut successor, 12).await;
    let (outputs, consumed) = echo(&records);
    successor.commit(outputs, consumed).await.unwrap();
    let got = committed_outputs(&bus, "out", 12).await;
    assert_eq!(got.len(), 12, "the successor's outputs only");
}
