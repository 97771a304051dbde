//! [`Processor`] on Kafka: a consumer-group member (cooperative-sticky
//! assignment, static membership) with a transactional producer whose
//! transactions carry the consumed offsets (KIP-447).
//!
//! The rebalance callback runs inside the consumer's `recv`, that is
//! between two batches of the role (a role polls only once its previous
//! batch is committed), so a revoked partition has no batch in flight, and
//! a newly assigned one starts where the role's [`Placement`] says,
//! computed from the group's committed offset while the callback runs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::FutureExt;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, PurgeConfig};
use rdkafka::topic_partition_list::TopicPartitionListElem;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{backend, owned, KafkaBus, ADMIN_TIMEOUT};
use crate::processor::{Change, Placement, Processor};
use crate::{BoxFuture, BusError, Outgoing, Record};

/// How long one transactional call may take before it counts as failed.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two asks for the committed offsets of assigned partitions.
const TXN_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What the rebalance callback shares with the processor.
struct GroupContext {
    topic: String,
    placement: Arc<dyn Placement>,
    /// Changes not yet seen by the processor's `poll`.
    changes: Mutex<Vec<Change>>,
    owned: Mutex<BTreeSet<u32>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = consumer.incremental_unassign(tpl) {
                    tracing::error!(error = %e, "giving partitions back failed");
                }
                let mut owned = self.owned.lock();
                let mut changes = self.changes.lock();
                for elem in tpl.elements_for_topic(&self.topic) {
                    let partition = elem.partition() as u32;
                    owned.remove(&partition);
                    changes.push(Change::Revoked { partition });
                }
                tracing::info!(topic = %self.topic, owned = ?*owned, "partitions revoked");
            }
            other => {
                // The group is in an unknown state: own nothing until the
                // next assignment (librdkafka's advice).
                tracing::error!(error = ?other, topic = %self.topic, "rebalance failed");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassigning after a failed rebalance");
                }
                let mut owned = self.owned.lock();
                let mut changes = self.changes.lock();
                for partition in std::mem::take(&mut *owned) {
                    changes.push(Change::Revoked { partition });
                }
            }
        }
    }
}

impl GroupContext {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        // The group's committed offsets of the new partitions. Without them
        // the placement cannot tell replayed work from new work, and the
        // consumer cannot fetch anything anyway: ask until they come.
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), ADMIN_TIMEOUT) {
                Ok(list) => break list,
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.topic,
                        "reading the committed offsets of assigned partitions failed; again");
                    std::thread::sleep(TXN_RETRY_PAUSE);
                }
            }
        };
        let mut start = TopicPartitionList::new();
        let mut changes = Vec::new();
        for elem in committed.elements_for_topic(&self.topic) {
            let partition = elem.partition() as u32;
            let committed = committed_of(&elem);
            let from = self.placement.start(partition, committed);
            if let Err(e) = start.add_partition_offset(
                &self.topic,
                partition as i32,
                Offset::Offset(from as i64),
            ) {
                tracing::error!(error = %e, partition, "bad start offset");
                continue;
            }
            changes.push(Change::Assigned {
                partition,
                committed,
                start: from,
            });
        }
        if let Err(e) = consumer.incremental_assign(&start) {
            tracing::error!(error = %e, topic = %self.topic, "taking assigned partitions failed");
            return;
        }
        let mut owned = self.owned.lock();
        owned.extend(changes.iter().map(|c| match c {
            Change::Assigned { partition, .. } | Change::Revoked { partition } => *partition,
        }));
        tracing::info!(topic = %self.topic, ?changes, owned = ?*owned, "partitions assigned");
        self.changes.lock().extend(changes);
    }
}

fn committed_of(elem: &TopicPartitionListElem<'_>) -> Option<u64> {
    match elem.offset() {
        Offset::Offset(o) if o >= 0 => Some(o as u64),
        _ => None,
    }
}

pub(crate) struct KafkaProcessor {
    consumer: Arc<StreamConsumer<GroupContext>>,
    producer: Arc<BaseProducer>,
    topic: String,
    partitions: Arc<parking_lot::RwLock<std::collections::HashMap<Arc<str>, u32>>>,
    /// Changes taken from the context, not yet given to the role.
    /// (The role reads them after each poll.)
    changes: Vec<Change>,
}

impl KafkaProcessor {
    pub(crate) async fn start(
        bus: &KafkaBus,
        topic: &str,
        group: &str,
        member: &str,
        placement: Arc<dyn Placement>,
    ) -> Result<KafkaProcessor, BusError> {
        let config = bus.config();
        let context = GroupContext {
            topic: topic.to_string(),
            placement,
            changes: Mutex::new(Vec::new()),
            owned: Mutex::new(BTreeSet::new()),
        };
        let consumer: StreamConsumer<GroupContext> = config
            .base()
            .set("group.id", group)
            .set("group.instance.id", member)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", config.fetch_wait_ms.to_string())
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout_ms / 5).max(100).to_string(),
            )
            .create_with_context(context)
            .map_err(backend)?;
        consumer.subscribe(&[topic]).map_err(backend)?;
        let producer: BaseProducer = config
            .base()
            .set("transactional.id", format!("{group}-{member}"))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger_ms.to_string())
            .set("batch.num.messages", config.batch_records.to_string())
            .set("queue.buffering.max.messages", "100000")
            // A member killed for good leaves its open transaction to the
            // broker, whose read_committed readers wait until it times out.
            .set("transaction.timeout.ms", "10000")
            // A transaction begun right after the previous commit meets the
            // coordinator still writing that one's markers
            // (CONCURRENT_TRANSACTIONS) and is retried after this: the
            // default 100 ms was the floor of every batch.
            .set("retry.backoff.ms", "2")
            .set("retry.backoff.max.ms", "50")
            .create()
            .map_err(backend)?;
        // Fences any earlier incarnation of this member (same transactional
        // id) and aborts what it left open.
        let producer = Arc::new(producer);
        let init = producer.clone();
        tokio::task::spawn_blocking(move || init.init_transactions(TXN_TIMEOUT))
            .await
            .map_err(|e| BusError::Backend(e.to_string()))?
            .map_err(backend)?;
        Ok(KafkaProcessor {
            consumer: Arc::new(consumer),
            producer,
            topic: topic.to_string(),
            partitions: bus.partition_counts(),
            changes: Vec::new(),
        })
    }

    /// Moves the context's changes here; drops `records` of partitions
    /// revoked meanwhile.
    fn take_changes(&mut self, records: &mut Vec<Record>) {
        let new: Vec<Change> = std::mem::take(&mut *self.consumer.context().changes.lock());
        for change in &new {
            if let Change::Revoked { partition } = change {
                records.retain(|r| r.partition != *partition);
            }
        }
        self.changes.extend(new);
    }
}

impl Processor for KafkaProcessor {
    fn poll(&mut self, max: usize) -> BoxFuture<'_, Result<Vec<Record>, BusError>> {
        Box::pin(async move {
            let mut records = Vec::new();
            let first = crate::kafka::next_message(&self.consumer).await;
            let first = owned(&first);
            // A rebalance may have run inside that `recv`, before or after
            // the message was fetched: what it revoked is dropped.
            self.take_changes(&mut records);
            let owned_now = self
                .consumer
                .context()
                .owned
                .lock()
                .contains(&first.partition);
            if owned_now {
                records.push(first);
            }
            while records.len() < max {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => {
                        let record = owned(&message);
                        drop(message);
                        self.take_changes(&mut records);
                        if self
                            .consumer
                            .context()
                            .owned
                            .lock()
                            .contains(&record.partition)
                        {
                            records.push(record);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, topic = %self.topic, "Kafka consumer error");
                        break;
                    }
                    None => break,
                }
            }
            self.take_changes(&mut records);
            Ok(records)
        })
    }

    fn changes(&mut self) -> Vec<Change> {
        let mut none = Vec::new();
        self.take_changes(&mut none);
        std::mem::take(&mut self.changes)
    }

    fn commit(
        &mut self,
        outputs: Vec<Outgoing>,
        consumed: Vec<(u32, u64)>,
    ) -> BoxFuture<'_, Result<(), BusError>> {
        let producer = self.producer.clone();
        let consumer = self.consumer.clone();
        let partitions = self.partitions.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                transact(
                    &producer,
                    &consumer,
                    &partitions,
                    &topic,
                    &outputs,
                    &consumed,
                )
            })
            .await
            .map_err(|e| BusError::Backend(e.to_string()))?
        })
    }
}

/// One transaction: `outputs` and the offsets. On failure it is aborted,
/// so the producer is ready for the next one, and the failure goes back to
/// the role, which keeps the batch and offers it again after its next poll
/// (which serves any rebalance: a retry here, with the group generation of
/// before, could only fail again while the consumer is not polled).
fn transact(
    producer: &BaseProducer,
    consumer: &StreamConsumer<GroupContext>,
    partitions: &parking_lot::RwLock<std::collections::HashMap<Arc<str>, u32>>,
    topic: &str,
    outputs: &[Outgoing],
    consumed: &[(u32, u64)],
) -> Result<(), BusError> {
    let mut offsets = TopicPartitionList::new();
    for &(partition, next) in consumed {
        offsets
            .add_partition_offset(topic, partition as i32, Offset::Offset(next as i64))
            .map_err(backend)?;
    }
    let metadata = consumer
        .group_metadata()
        .ok_or_else(|| BusError::Backend("not a member of the group".into()))?;
    let started = std::time::Instant::now();
    let e = match try_transact(producer, &metadata, partitions, outputs, &offsets) {
        Ok(()) => {
            tracing::debug!(took = ?started.elapsed(), outputs = outputs.len(), "transaction committed");
            return Ok(());
        }
        Err(e) => e,
    };
    if is_fenced(&e) {
        return Err(BusError::Fenced(e.to_string()));
    }
    tracing::warn!(error = %e, took = ?started.elapsed(), outputs = outputs.len(),
        "transaction failed; aborting it");
    // The records of the failed transaction are not wanted: dropped, and
    // their delivery reports served, or the abort waits for them forever.
    producer.purge(PurgeConfig::default().queue().inflight());
    serve_reports(producer);
    if let Err(abort) = resumed(|| producer.abort_transaction(TXN_TIMEOUT)) {
        if is_fenced(&abort) {
            return Err(BusError::Fenced(abort.to_string()));
        }
        tracing::warn!(error = %abort, "aborting the transaction failed");
    }
    Err(BusError::Aborted(e.to_string()))
}

/// Serves the producer's delivery reports until none is outstanding (or
/// [`TXN_TIMEOUT`]): this thread is the only one that polls it.
fn serve_reports(producer: &BaseProducer) {
    let deadline = std::time::Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
}

fn try_transact(
    producer: &BaseProducer,
    metadata: &rdkafka::consumer::ConsumerGroupMetadata,
    partitions: &parking_lot::RwLock<std::collections::HashMap<Arc<str>, u32>>,
    outputs: &[Outgoing],
    offsets: &TopicPartitionList,
) -> Result<(), KafkaError> {
    let began = std::time::Instant::now();
    producer.begin_transaction()?;
    {
        let partitions = partitions.read();
        for rec in outputs {
            // Delivery reports are not looked at: the commit below fails
            // if any record failed.
            let mut record = base_record(&partitions, rec);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        KafkaError::MessageProduction(rdkafka::error::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
    }
    let queued = began.elapsed();
    if offsets.count() > 0 {
        resumed(|| producer.send_offsets_to_transaction(offsets, metadata, TXN_TIMEOUT))?;
    }
    let offsets_added = began.elapsed();
    // rdkafka's flush (which the commit starts with) polls in 100 ms
    // sleeps that the last delivery report does not cut short: every
    // transaction took 100 ms more than its work. Waited for here in 1 ms
    // steps instead, so the commit's own flush finds nothing to wait for.
    serve_reports(producer);
    let produced = began.elapsed();
    let committed = resumed(|| producer.commit_transaction(TXN_TIMEOUT));
    // Where a transaction's time goes (each step counted from its start):
    // what bench/RESULTS.md's transaction anatomy is read from.
    tracing::debug!(?queued, ?offsets_added, ?produced, ended = ?began.elapsed(), "transaction steps");
    committed
}

/// How many times a transactional call that timed out is called again.
const RESUMES: u32 = 6;

/// `call`, called again while it fails with a retriable error (a timeout
/// while a broker is away): librdkafka resumes the call in progress, and
/// any other call (an abort) would be refused as conflicting with it, for
/// good.
fn resumed(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < RESUMES => {
                tracing::warn!(error = %e, attempt, "transactional call timed out; resuming it");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether `e` means another incarnation or another member took over: the
/// producer or the group generation is fenced, and no retry can succeed.
fn is_fenced(e: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    if let KafkaError::Transaction(t) = e {
        if t.is_fatal() {
            return true;
        }
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::ProducerFenced
                | Code::InvalidProducerEpoch
                | Code::Fenced
                | Code::FencedInstanceId
                | Code::FencedMemberEpoch
        )
    )
}

/// `rec` as a [`BaseRecord`], on its explicit partition or the one its key
/// maps to (as [`crate::kafka::future_record`] does for the plain producer).
fn base_record<'a>(
    partitions: &std::collections::HashMap<Arc<str>, u32>,
    rec: &'a Outgoing,
) -> BaseRecord<'a, [u8], [u8]> {
    let mut record = BaseRecord::to(&rec.topic).key(rec.key.as_ref());
    if !rec.tombstone {
        record = record.payload(rec.payload.as_ref());
    }
    let partition = rec.partition.or_else(|| {
        partitions
            .get(&rec.topic)
            .map(|&n| crate::partition_for(&rec.key, n))
    });
    match partition {
        Some(p) => record.partition(p as i32),
        None => record,
    }
}
