//! Kafka streams: one consumer per `type = kafka` source, in the configured
//! consumer group, feeding the source's views.
//!
//! Each consumer runs on its own thread and loops: collect up to
//! `kafka.batch_max` messages (waiting at most `kafka.linger_ms` once one has
//! arrived), decode them ([`crate::ingest::json`]), evaluate every view
//! ([`crate::ingest::events`]) and write the views' rows, the aggregate
//! states and the next offset of every partition in the batch in **one**
//! RocksDB write. That write is the commit point:
//!
//! - On start and on every partition assignment the consumer resumes from the
//!   offsets stored with the state, so an event is applied exactly once
//!   whatever moment the process was killed at. Messages below a stored
//!   offset that still arrive (Kafka's committed offset can lag behind ours)
//!   are skipped.
//! - After the write, the same offsets are committed to Kafka (asynchronously),
//!   so lag tools and the group's other members see the progress. When
//!   partitions are revoked, the batch in hand is written and committed first,
//!   so the member that takes them over starts where this one stopped.
//!
//! Bad messages never stall a partition: each is counted per source and
//! reason, the first few and then one every ten seconds are logged, and if
//! the source names a `dead_letter_topic` the original bytes are sent there
//! with the reason in the `fstore-error` header (at least once: a crash
//! between the send and the write can send one twice).

pub(crate) mod stats;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use fstore_dsl::plan::{Source, SourceKind};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::engine::Engine;
use crate::ingest::json::{self, BadMessage};
use crate::ingest::write;
use crate::store::Durability;
use stats::StreamStats;

/// The running consumers; dropping it does not stop them, [`Streams::stop`] does.
pub(crate) struct Streams {
    stop: Arc<AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Every stream source's figures, in source order.
    stats: Vec<Arc<StreamStats>>,
}

impl Streams {
    /// Start a consumer for every Kafka source that some view reads. With no
    /// brokers configured, log once that those sources are idle.
    pub(crate) fn start(engine: &Arc<Engine>) -> Streams {
        let stop = Arc::new(AtomicBool::new(false));
        let registry = engine.registry();
        let sources: Vec<Source> = registry
            .plan
            .sources
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                matches!(s.kind, SourceKind::Kafka { .. }) && !registry.views_of_source(*i).is_empty()
            })
            .map(|(_, s)| s.clone())
            .collect();
        let (mut workers, mut all_stats) = (Vec::new(), Vec::new());
        if sources.is_empty() {
            return Streams { stop, workers, stats: all_stats };
        }
        let brokers = engine.config.kafka.brokers.trim().to_string();
        for source in sources {
            let SourceKind::Kafka { topic, .. } = &source.kind else { continue };
            let state = if brokers.is_empty() { "idle: kafka.brokers is not set" } else { "starting" };
            let stats = Arc::new(StreamStats::new(&source.name, topic, state));
            all_stats.push(stats.clone());
            if brokers.is_empty() {
                continue;
            }
            let (engine, stop) = (engine.clone(), stop.clone());
            let name = source.name.clone();
            let worker = std::thread::Builder::new()
                .name(format!("fstore-stream-{}", source.name))
                .spawn(move || {
                    if let Err(e) = consume(&engine, &source, &stats, &stop) {
                        tracing::error!(source = %source.name, error = format!("{e:#}"), "Stream consumer stopped.");
                        stats.set_state(format!("stopped: {e:#}"));
                    }
                })
                .with_context(|| format!("starting the consumer of {name}"));
            match worker {
                Ok(w) => workers.push(w),
                Err(e) => tracing::error!(error = format!("{e:#}"), "Could not start a stream consumer."),
            }
        }
        if brokers.is_empty() {
            let names: Vec<_> = all_stats.iter().map(|s| s.source.clone()).collect();
            tracing::warn!(
                sources = names.join(", "),
                "Stream sources are idle: set kafka.brokers (or FSTORE_KAFKA__BROKERS) to consume them."
            );
        }
        Streams { stop, workers, stats: all_stats }
    }

    /// Every stream source's figures, in source order.
    pub(crate) fn stats(&self) -> &[Arc<StreamStats>] {
        &self.stats
    }

    /// Finish the batch in hand, write it, commit and leave the group.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// One consumed message, owned (the consumer's buffers are reused).
struct Msg {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// Broker (or producer) timestamp, epoch milliseconds.
    timestamp_ms: Option<i64>,
}

/// Applies batches of one source's messages to the store.
struct Applier {
    engine: Arc<Engine>,
    source: Source,
    topic: String,
    dead_letter_topic: Option<String>,
    key_fields: BTreeSet<String>,
    stats: Arc<StreamStats>,
    /// Next offset per partition already in the store: anything below is applied.
    stored: Mutex<HashMap<i32, i64>>,
    producer: Option<ThreadedProducer<DefaultProducerContext>>,
    logged_bad: Mutex<(u64, Option<Instant>)>,
    /// Messages read but not yet written.
    pending: Mutex<Vec<Msg>>,
    /// Set on every assignment: the next batch written is logged, so that
    /// the log shows when events became servable after a start or rebalance.
    first_since_assignment: AtomicBool,
}

struct StreamContext {
    applier: Arc<Applier>,
}

impl StreamContext {
    /// Before partitions go to another member: write what was read and commit it.
    fn hand_over(&self, consumer: &BaseConsumer<Self>) {
        let source = &self.applier.source.name;
        match self.applier.flush() {
            Ok(Some(offsets)) => {
                if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                    tracing::warn!(source = %source, error = %e, "Committing offsets to Kafka before a rebalance failed; the stored offsets still hold.");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(source = %source, error = format!("{e:#}"), "Writing a batch before a rebalance failed; its events are read again.")
            }
        }
    }
}

impl ClientContext for StreamContext {
    /// librdkafka's statistics (every second) carry each partition's high
    /// watermark as last seen in fetch responses: the lag gauge's other half.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some(topic) = statistics.topics.get(&self.applier.topic) else { return };
        for (&partition, p) in &topic.partitions {
            if partition >= 0 {
                let known = |offset: i64| (offset >= 0).then_some(offset);
                self.applier.stats.watermarks(partition, known(p.lo_offset), known(p.hi_offset));
            }
        }
    }
}

impl ConsumerContext for StreamContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr as E;
        match err {
            E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Resume from the offsets stored with the state, where there are some.
                let stored = self.applier.reload_offsets();
                for element in tpl.elements() {
                    tracing::info!(source = %self.applier.source.name, partition = element.partition(), from = ?stored.get(&element.partition()), "Partition assigned.");
                }
                let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.applier.stats.assigned(&assigned, &stored);
                for partition in assigned {
                    if let Some(&next) = stored.get(&partition) {
                        let _ =
                            tpl.set_partition_offset(&self.applier.topic, partition, Offset::Offset(next));
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(source = %self.applier.source.name, error = %e, "Assigning partitions failed.");
                }
                self.applier.first_since_assignment.store(true, Ordering::Relaxed);
                self.applier.stats.set_state("running");
            }
            E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.hand_over(consumer);
                for element in tpl.elements() {
                    tracing::info!(source = %self.applier.source.name, partition = element.partition(), "Partition revoked.");
                }
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                self.applier.stats.revoked(&revoked);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(source = %self.applier.source.name, error = %e, "Unassigning partitions failed.");
                }
            }
            other => tracing::error!(source = %self.applier.source.name, error = ?other, "Rebalance failed."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(source = %self.applier.source.name, error = %e, "Offset commit to Kafka failed; the next one supersedes it.");
        }
    }
}

/// A librdkafka configuration: the brokers, fstore's own settings `ours`,
/// then the user's `kafka.properties`, which override both.
fn client_config(engine: &Engine, ours: &[(&str, String)]) -> ClientConfig {
    let kafka = &engine.config.kafka;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.brokers.trim());
    for (key, value) in ours {
        config.set(*key, value);
    }
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

fn consume(
    engine: &Arc<Engine>,
    source: &Source,
    stats: &Arc<StreamStats>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let SourceKind::Kafka { topic, dead_letter_topic } = &source.kind else {
        anyhow::bail!("not a Kafka source");
    };
    let kafka = &engine.config.kafka;
    let registry = engine.registry();
    let index = registry.plan.source(&source.name).map(|(i, _)| i).context("source vanished")?;
    let key_fields: BTreeSet<String> = registry
        .views_of_source(index)
        .iter()
        .flat_map(|&v| registry.plan.views[v].key_fields.clone())
        .collect();
    let producer = match dead_letter_topic {
        Some(_) => Some(
            client_config(engine, &[])
                .create::<ThreadedProducer<_>>()
                .context("creating the dead-letter producer")?,
        ),
        None => None,
    };
    let applier = Arc::new(Applier {
        engine: engine.clone(),
        source: source.clone(),
        topic: topic.clone(),
        dead_letter_topic: dead_letter_topic.clone(),
        key_fields,
        stats: stats.clone(),
        stored: Mutex::new(HashMap::new()),
        producer,
        logged_bad: Mutex::new((0, None)),
        pending: Mutex::new(Vec::new()),
        first_since_assignment: AtomicBool::new(false),
    });
    applier.reload_offsets();

    let mut ours = vec![
        ("group.id", kafka.group_id.clone()),
        ("client.id", format!("fstore-{}", source.name)),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("auto.offset.reset", "earliest".into()),
        ("enable.partition.eof", "false".into()),
        ("statistics.interval.ms", "1000".into()),
        // Ask the broker to answer a fetch within 5 ms even when it has
        // little to give (librdkafka waits up to 500 ms by default): the
        // freshness of a quiet stream depends on it (measured: p50 146 ms
        // -> 16 ms at 20,000 events/s, BENCHMARKS.md).
        ("fetch.wait.max.ms", "5".into()),
        ("session.timeout.ms", kafka.session_timeout_ms.to_string()),
        ("heartbeat.interval.ms", (kafka.session_timeout_ms / 5).to_string()),
        // A topic created after the server started is found within 10 s.
        ("topic.metadata.refresh.interval.ms", "10000".into()),
    ];
    if !kafka.instance_id.is_empty() {
        // One member per source: each source has a consumer of its own.
        ours.push(("group.instance.id", format!("{}-{}", kafka.instance_id, source.name)));
    }
    let config = client_config(engine, &ours);
    let consumer: BaseConsumer<StreamContext> = config
        .create_with_context(StreamContext { applier: applier.clone() })
        .context("creating the Kafka consumer")?;
    consumer.subscribe(&[topic.as_str()]).with_context(|| format!("subscribing to topic `{topic}`"))?;
    tracing::info!(source = %source.name, topic = %topic, brokers = %kafka.brokers, group = %kafka.group_id, "Consuming.");
    stats.set_state("waiting for partitions");

    let linger = Duration::from_millis(kafka.linger_ms);
    let mut last_error_log: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        // Collect a batch: wait up to 100 ms for a first message, then at
        // most `linger` for more.
        let mut first_at: Option<Instant> = None;
        loop {
            let timeout = match first_at {
                None => Duration::from_millis(100),
                Some(t) => linger.saturating_sub(t.elapsed()),
            };
            let Some(result) = consumer.poll(timeout) else { break };
            match result {
                Ok(m) => {
                    applier.lock_pending().push(Msg {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    first_at.get_or_insert_with(Instant::now);
                    if applier.lock_pending().len() >= kafka.batch_max {
                        break;
                    }
                }
                Err(e) => {
                    if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(source = %source.name, error = %e, "Kafka consumer error (librdkafka retries).");
                        last_error_log = Some(Instant::now());
                    }
                    break;
                }
            }
            if first_at.is_some_and(|t| t.elapsed() >= linger) || stop.load(Ordering::Relaxed) {
                break;
            }
        }
        loop {
            match applier.flush() {
                Ok(Some(offsets)) => {
                    if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
                        tracing::debug!(source = %source.name, error = %e, "Offset commit to Kafka failed.");
                    }
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    // The store refused the write: keep the batch and retry,
                    // so nothing is lost or skipped.
                    tracing::error!(source = %source.name, error = format!("{e:#}"), "Writing a stream batch failed; retrying.");
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
    // Leave the group now, so the others take the partitions at once.
    if let Ok(Some(offsets)) = applier.flush() {
        let _ = consumer.commit(&offsets, CommitMode::Sync);
    }
    consumer.unsubscribe();
    stats.set_state("stopped");
    tracing::info!(source = %source.name, "Stream consumer stopped.");
    Ok(())
}

impl Applier {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Msg>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reload_offsets(&self) -> HashMap<i32, i64> {
        let stored: HashMap<i32, i64> = match self.engine.store.stream_offsets(&self.source.name) {
            Ok(all) => {
                all.into_iter().filter(|((t, _), _)| *t == self.topic).map(|((_, p), o)| (p, o)).collect()
            }
            Err(e) => {
                tracing::error!(source = %self.source.name, error = format!("{e:#}"), "Reading stored offsets failed.");
                HashMap::new()
            }
        };
        *self.stored.lock().unwrap_or_else(|e| e.into_inner()) = stored.clone();
        stored
    }

    /// Write the pending messages; returns the offsets to commit to Kafka,
    /// or `None` if there was nothing new. On error the messages stay pending.
    fn flush(&self) -> anyhow::Result<Option<TopicPartitionList>> {
        let mut pending = self.lock_pending();
        if pending.is_empty() {
            return Ok(None);
        }
        let stored = self.stored.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Skip what the store already holds (redelivered after a restart or
        // a rebalance); the rest is applied now.
        let fresh: Vec<&Msg> = pending
            .iter()
            .filter(|m| stored.get(&m.partition).is_none_or(|&next| m.offset >= next))
            .collect();
        let mut next: BTreeMap<i32, (u64, i64)> = BTreeMap::new();
        for m in &fresh {
            let entry = next.entry(m.partition).or_insert((0, m.offset + 1));
            entry.0 += 1;
            entry.1 = entry.1.max(m.offset + 1);
        }
        if !fresh.is_empty() {
            self.apply(&fresh, &next)?;
        }
        pending.clear();
        let mut tpl = TopicPartitionList::new();
        {
            let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
            for (&partition, &(_, offset)) in &next {
                stored.insert(partition, offset);
                tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))?;
            }
        }
        Ok((tpl.count() > 0).then_some(tpl))
    }

    fn apply(&self, msgs: &[&Msg], next: &BTreeMap<i32, (u64, i64)>) -> anyhow::Result<()> {
        let engine = &self.engine;
        let payloads: Vec<Option<&[u8]>> = msgs.iter().map(|m| m.payload.as_deref()).collect();
        let decoded = json::decode(&payloads, &self.source, &self.key_fields);
        for bad in &decoded.bad {
            self.bad_message(msgs[bad.index], bad);
        }
        if let Some(producer) = &self.producer {
            if !decoded.bad.is_empty() {
                // Dead letters go out before the offsets move past them.
                let _ = producer.flush(Duration::from_secs(10));
            }
        }

        let rows = decoded.batch.num_rows();
        let written = write::upsert(
            engine,
            &self.source.name,
            &decoded.batch,
            &decoded.event_times,
            Durability::Wal,
            |writes| {
                for (&partition, &(_, offset)) in next {
                    writes.put_offset(&self.source.name, &self.topic, partition, offset);
                }
            },
        )?;
        let (applied, rejects) = (written.applied, written.rejects);

        let servable = crate::now_micros();
        for (row, why) in &rejects {
            let m = msgs[decoded.rows[*row]];
            self.bad_message(
                m,
                &BadMessage {
                    index: decoded.rows[*row],
                    reason: json::BadReason::BadValue,
                    detail: why.clone(),
                },
            );
        }
        let from_event: Vec<i64> = decoded.event_times.values().iter().map(|t| servable - t).collect();
        let from_broker: Vec<i64> =
            msgs.iter().filter_map(|m| m.timestamp_ms).map(|ms| servable - ms.saturating_mul(1000)).collect();
        self.stats.freshness(&from_event, &from_broker);
        self.stats.applied(next, rows as u64 - rejects.len() as u64, applied.too_late);
        if self.first_since_assignment.swap(false, Ordering::Relaxed) {
            tracing::info!(source = %self.source.name, events = rows, "First events since the partitions were assigned are servable.");
        }
        Ok(())
    }

    fn bad_message(&self, m: &Msg, bad: &BadMessage) {
        self.stats.bad(bad.reason);
        {
            let mut logged = self.logged_bad.lock().unwrap_or_else(|e| e.into_inner());
            let due = logged.0 < 5 || logged.1.is_none_or(|t| t.elapsed() > Duration::from_secs(10));
            if due {
                tracing::warn!(
                    source = %self.source.name,
                    topic = %self.topic,
                    partition = m.partition,
                    offset = m.offset,
                    reason = bad.reason.name(),
                    "Bad message skipped: {}", bad.detail
                );
                logged.0 += 1;
                logged.1 = Some(Instant::now());
            }
        }
        let (Some(producer), Some(dlq)) = (&self.producer, &self.dead_letter_topic) else { return };
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "fstore-error", value: Some(bad.detail.as_str()) })
            .insert(Header { key: "fstore-reason", value: Some(bad.reason.name()) })
            .insert(Header { key: "fstore-source", value: Some(self.source.name.as_str()) })
            .insert(Header { key: "fstore-topic", value: Some(self.topic.as_str()) })
            .insert(Header { key: "fstore-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "fstore-offset", value: Some(offset.as_str()) });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(dlq).headers(headers);
        if let Some(key) = &m.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &m.payload {
            record = record.payload(payload.as_slice());
        }
        let ok = producer.send(record).is_ok();
        if !ok {
            tracing::warn!(source = %self.source.name, topic = %dlq, "Could not queue a dead letter.");
        }
        self.stats.dead_lettered(ok);
    }
}
