//! The bus on Kafka (rdkafka): what the cluster roles use.
//!
//! Producers are idempotent with `acks=all`, so a produce that resolved is
//! on the broker and retries never duplicate or reorder it. Records go to
//! the partition [`partition_for`] gives their key, the same function the
//! embedded bus uses, so a user's inbox lives on the same partition number
//! in both modes. Consumers never auto-commit and read only committed
//! transactions. The owning roles run on [`KafkaBus::processor`]: a
//! consumer-group member with a transactional producer
//! (`kafka_processor.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{try_join_all, FutureExt};
use parking_lot::RwLock;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::{partition_for, BoxFuture, Bus, BusError, Consumer, Outgoing, Record, TopicSpec};

/// How to reach the cluster and how hard to push it.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Replication factor of the topics this bus creates.
    pub replication: i32,
    /// How long a fetch waits on the broker for data (`fetch.wait.max.ms`):
    /// the floor of a consumer's latency when the topic is quiet, traded
    /// against CPU (DESIGN.md measured 0 → p50 0.26 ms, 5 → 7.7 ms).
    pub fetch_wait_ms: u32,
    /// How long the producer waits to batch (`linger.ms`).
    pub linger_ms: u32,
    /// Names this process in broker logs.
    pub client_id: String,
    /// Records per produce batch (`batch.num.messages`).
    pub batch_records: u32,
    /// How long a group member may be silent before the group gives its
    /// partitions to others (`session.timeout.ms`): the takeover time after
    /// a node dies for good. A node restarted within it gets its
    /// partitions back without a rebalance (static membership).
    pub session_timeout_ms: u32,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            replication: 1,
            fetch_wait_ms: 1,
            linger_ms: 1,
            client_id: "samvad".into(),
            batch_records: 10_000,
            session_timeout_ms: 10_000,
        }
    }

    pub(crate) fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("log_level", "4");
        // librdkafka's own protocol log (e.g. `eos,protocol`: every
        // transactional call and request with its round trip), through
        // `tracing` as target `librdkafka`.
        if let Ok(debug) = std::env::var("SAMVAD_RDKAFKA_DEBUG") {
            c.set("debug", debug).set("log_level", "7");
        }
        c
    }
}

/// How long ephemeral topics (pushes to one edge) keep records.
const EPHEMERAL_RETENTION_MS: &str = "60000";
/// Metadata and admin calls give up after this.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a topic's creation is asked for again while it times out.
const CREATE_PATIENCE: Duration = Duration::from_secs(150);

/// Whether `e` is a timeout, which a later attempt may not meet.
fn timed_out(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut)
    )
}

pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Partition counts of the topics this process knows.
    partitions: Arc<RwLock<HashMap<Arc<str>, u32>>>,
}

pub(crate) fn backend(e: KafkaError) -> BusError {
    BusError::Backend(e.to_string())
}

impl KafkaBus {
    pub fn connect(config: KafkaConfig) -> Result<Self, BusError> {
        let producer: FutureProducer = config
            .base()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", "100000")
            .set("batch.num.messages", config.batch_records.to_string())
            .create()
            .map_err(backend)?;
        let admin = config.base().create().map_err(backend)?;
        Ok(KafkaBus {
            config,
            producer,
            admin,
            partitions: Arc::new(RwLock::new(HashMap::new())),
        })
    }

    /// A member of consumer group `group` on `topic` whose outputs are
    /// produced in transactions with the offsets they consumed
    /// ([`crate::Processor`]). `member` names it in the group for good
    /// (static membership: `group.instance.id`, and the transactional id, so
    /// that a restarted member fences its previous incarnation); `placement`
    /// says where each partition it is given starts.
    pub async fn processor(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        placement: std::sync::Arc<dyn crate::Placement>,
    ) -> Result<Box<dyn crate::Processor>, BusError> {
        crate::kafka_processor::KafkaProcessor::start(self, topic, group, member, placement)
            .await
            .map(|p| Box::new(p) as Box<dyn crate::Processor>)
    }

    pub(crate) fn config(&self) -> &KafkaConfig {
        &self.config
    }

    pub(crate) fn partition_counts(&self) -> Arc<RwLock<HashMap<Arc<str>, u32>>> {
        self.partitions.clone()
    }

    /// The partition count of `topic` from the cluster's metadata.
    async fn fetch_partitions(&self, topic: &str) -> Result<u32, BusError> {
        let producer = self.producer.clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
            loop {
                let metadata = producer
                    .client()
                    .fetch_metadata(Some(&name), ADMIN_TIMEOUT)
                    .map_err(backend)?;
                let count = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map_or(0, |t| t.partitions().len() as u32);
                if count > 0 {
                    return Ok(count);
                }
                if std::time::Instant::now() > deadline {
                    return Err(BusError::UnknownTopic(name));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
        .map_err(|e| BusError::Backend(e.to_string()))?
    }
}

impl Bus for KafkaBus {
    fn ensure_topic<'a>(
        &'a self,
        name: &'a str,
        spec: TopicSpec,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let mut topic = NewTopic::new(
                name,
                spec.partitions as i32,
                TopicReplication::Fixed(self.config.replication),
            );
            if !spec.durable {
                topic = topic.set("retention.ms", EPHEMERAL_RETENTION_MS);
            }
            if spec.compacted {
                topic = topic.set("cleanup.policy", "compact");
            }
            let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
            // A broker still starting, or sharing its cores with much else,
            // may not settle a creation in time: asked again (a topic made
            // meanwhile answers TopicAlreadyExists) until CREATE_PATIENCE.
            let patience = std::time::Instant::now() + CREATE_PATIENCE;
            loop {
                let outcome = match self.admin.create_topics([&topic], &options).await {
                    Ok(results) => results.into_iter().try_for_each(|r| match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => Ok(()),
                        Err((_, code)) => Err(KafkaError::AdminOp(code)),
                    }),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => break,
                    Err(e) if timed_out(&e) && std::time::Instant::now() < patience => {
                        tracing::warn!(topic = name, error = %e, "creating a topic timed out; again");
                    }
                    Err(e) => return Err(BusError::Backend(format!("creating {name}: {e}"))),
                }
            }
            let count = self.fetch_partitions(name).await?;
            if count != spec.partitions {
                tracing::warn!(
                    topic = name,
                    want = spec.partitions,
                    have = count,
                    "topic exists with another partition count; using what it has"
                );
            }
            self.partitions.write().insert(name.into(), count);
            Ok(())
        })
    }

    fn produce(&self, records: Vec<Outgoing>) -> BoxFuture<'static, Result<(), BusError>> {
        // Enqueue now, in call order (the order the trait promises); the
        // future only waits for the broker's acknowledgements.
        let mut pending = Vec::with_capacity(records.len());
        let partitions = self.partitions.read();
        for rec in &records {
            match self.producer.send_result(future_record(&partitions, rec)) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => {
                    let e = backend(e);
                    return Box::pin(async move { Err(e) });
                }
            }
        }
        Box::pin(async move {
            let results = try_join_all(pending).await.map_err(|_| BusError::Closed)?;
            for result in results {
                if let Err((e, _)) = result {
                    return Err(backend(e));
                }
            }
            Ok(())
        })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, BusError>> {
        Box::pin(async move {
            let consumer: StreamConsumer = self
                .config
                .base()
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", self.config.fetch_wait_ms.to_string())
                .set(
                    "session.timeout.ms",
                    self.config.session_timeout_ms.to_string(),
                )
                .set("heartbeat.interval.ms", "1000")
                .create()
                .map_err(backend)?;
            consumer.subscribe(&[topic]).map_err(backend)?;
            Ok(Box::new(KafkaConsumer {
                consumer,
                commits: true,
            }) as Box<dyn Consumer>)
        })
    }

    fn assign<'a>(
        &'a self,
        topic: &'a str,
        from: &'a [(u32, u64)],
    ) -> BoxFuture<'a, Result<Box<dyn Consumer>, BusError>> {
        Box::pin(async move {
            let consumer: StreamConsumer = self
                .config
                .base()
                // librdkafka wants a group id even without group membership.
                .set("group.id", format!("{}-assigned", self.config.client_id))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", self.config.fetch_wait_ms.to_string())
                .create()
                .map_err(backend)?;
            let mut list = TopicPartitionList::new();
            for &(partition, offset) in from {
                // From the end: the high watermark now, not whenever the
                // fetcher starts (a record produced meanwhile is read).
                let start = if offset == crate::FROM_END {
                    let (_, high) = consumer
                        .fetch_watermarks(topic, partition as i32, ADMIN_TIMEOUT)
                        .map_err(backend)?;
                    Offset::Offset(high)
                } else {
                    Offset::Offset(offset as i64)
                };
                list.add_partition_offset(topic, partition as i32, start)
                    .map_err(backend)?;
            }
            consumer.assign(&list).map_err(backend)?;
            Ok(Box::new(KafkaConsumer {
                consumer,
                commits: false,
            }) as Box<dyn Consumer>)
        })
    }
}

/// The record `rec` as rdkafka takes it, on the partition its key maps to
/// when the topic's partition count is known.
pub(crate) fn future_record<'a>(
    partitions: &HashMap<Arc<str>, u32>,
    rec: &'a Outgoing,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record = FutureRecord::to(&rec.topic).key(rec.key.as_ref());
    if !rec.tombstone {
        record = record.payload(rec.payload.as_ref());
    }
    if let Some(p) = rec.partition {
        return record.partition(p as i32);
    }
    match partitions.get(&rec.topic) {
        Some(&n) => record.partition(partition_for(&rec.key, n) as i32),
        None => record,
    }
}

/// A consumed message, owned.
pub(crate) fn owned(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        topic: message.topic().into(),
        partition: message.partition() as u32,
        offset: message.offset() as u64,
        key: Bytes::copy_from_slice(message.key().unwrap_or_default()),
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        tombstone: message.payload().is_none(),
    }
}

struct KafkaConsumer {
    consumer: StreamConsumer,
    /// False for assigned readers: their owner keeps the offsets.
    commits: bool,
}

impl Consumer for KafkaConsumer {
    /// Cancel safe: the only await is for the first message; everything
    /// after it is taken without suspending, so a caller that drops this
    /// future (a `select!` whose other branch won) never loses records
    /// already taken from librdkafka's queue.
    fn poll(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<Record>, BusError>> {
        Box::pin(async move {
            let mut records = Vec::new();
            let first = next_message(&self.consumer).await;
            records.push(owned(&first));
            drop(first);
            while records.len() < max {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => records.push(owned(&message)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Kafka consumer error");
                        break;
                    }
                    None => break,
                }
            }
            Ok(records)
        })
    }

    fn commit(&mut self, records: &[Record]) -> Result<(), BusError> {
        if !self.commits {
            return Ok(());
        }
        let mut next: HashMap<(&str, u32), u64> = HashMap::new();
        for r in records {
            let e = next.entry((&r.topic, r.partition)).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(topic, partition as i32, Offset::Offset(offset as i64))
                .map_err(backend)?;
        }
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(backend)
    }
}

impl crate::Replay for KafkaBus {
    /// The end is the first end-of-partition the consumer reports: with
    /// `read_committed`, the last stable offset, so a transaction still
    /// open (of an owner that died: it will be aborted; a live one cannot
    /// commit, its generation is gone) is not waited for.
    fn replay(
        &self,
        topic: &str,
        partition: u32,
        each: &mut dyn FnMut(Vec<Record>) -> Result<(), BusError>,
    ) -> Result<u64, BusError> {
        use rdkafka::consumer::BaseConsumer;
        let consumer: BaseConsumer<QuietEof> = self
            .config
            .base()
            .set("group.id", format!("{}-replay", self.config.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .set("max.partition.fetch.bytes", "16777216")
            .create_with_context(QuietEof)
            .map_err(backend)?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition as i32, Offset::Beginning)
            .map_err(backend)?;
        consumer.assign(&list).map_err(backend)?;
        let mut count = 0u64;
        let mut chunk = Vec::with_capacity(4096);
        loop {
            match consumer.poll(ADMIN_TIMEOUT) {
                Some(Ok(message)) => {
                    chunk.push(owned(&message));
                    count += 1;
                    if chunk.len() == 4096 {
                        each(std::mem::replace(&mut chunk, Vec::with_capacity(4096)))?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(backend(e)),
                None => {
                    return Err(BusError::Backend(format!(
                        "replaying {topic}/{partition}: nothing within {ADMIN_TIMEOUT:?}"
                    )))
                }
            }
        }
        if !chunk.is_empty() {
            each(chunk)?;
        }
        Ok(count)
    }
}

/// A replaying consumer's context: the end of the partition is what it
/// waits for, not an error to log.
struct QuietEof;

impl rdkafka::client::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::error!(error = %error, reason, "Kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// The next message of `consumer`. The errors a consumer reports between
/// messages (a broker down, a connection reset: librdkafka reconnects by
/// itself) are logged and waited out, not returned: a role must not die
/// because one broker of the cluster restarts.
pub(crate) async fn next_message<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
) -> rdkafka::message::BorrowedMessage<'_> {
    let mut errors = 0u32;
    loop {
        match consumer.recv().await {
            Ok(message) => return message,
            Err(e) => {
                errors += 1;
                // The first of a run, then one in a hundred.
                if errors % 100 == 1 {
                    tracing::warn!(error = %e, errors, "Kafka consumer error; waiting");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timeouts_make_a_topic_creation_ask_again() {
        assert!(timed_out(&KafkaError::AdminOp(
            RDKafkaErrorCode::OperationTimedOut
        )));
        assert!(timed_out(&KafkaError::AdminOp(
            RDKafkaErrorCode::RequestTimedOut
        )));
        assert!(!timed_out(&KafkaError::AdminOp(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!timed_out(&KafkaError::AdminOp(
            RDKafkaErrorCode::InvalidPartitions
        )));
    }
}
