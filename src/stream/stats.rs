//! What one stream source has done, for GetStatus and `/metrics`: per
//! partition the next offset, consumer lag and event rate; per source bad
//! messages by reason, too-late events, dead-lettered messages, and two
//! freshness histograms (event time to servable, broker time to servable).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::json;

use crate::ingest::json::BadReason;

/// Seconds of history behind the events-per-second figure.
const RATE_WINDOW_SECS: u64 = 10;

pub struct StreamStats {
    pub(crate) source: String,
    pub(crate) topic: String,
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    state: String,
    partitions: BTreeMap<i32, Partition>,
    bad: BTreeMap<BadReason, u64>,
    /// Good events written to the store.
    events: u64,
    too_late: u64,
    dead_lettered: u64,
    dead_letter_failures: u64,
    batches: u64,
    /// Microseconds from event time / broker timestamp to the write that made
    /// the event servable.
    freshness_event: Option<Histogram<u64>>,
    freshness_broker: Option<Histogram<u64>>,
}

#[derive(Default)]
struct Partition {
    /// Messages consumed, good and bad.
    messages: u64,
    /// The next offset to apply: stored with the state it produced, so
    /// known from the moment the partition is assigned (after a restart too).
    next_offset: Option<i64>,
    /// The partition's first and next-to-be-written offsets on the broker,
    /// as last seen in fetch responses.
    low_watermark: Option<i64>,
    high_watermark: Option<i64>,
    /// (second since start, events applied in it), the last few seconds.
    recent: VecDeque<(u64, u64)>,
}

/// Freshness from 1 µs to a day, 3 significant digits; a day or more counts as a day.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(86_400_000_000, 3).expect("valid histogram bounds")
}

impl StreamStats {
    pub fn new(source: &str, topic: &str, state: &str) -> StreamStats {
        StreamStats {
            source: source.to_string(),
            topic: topic.to_string(),
            started: Instant::now(),
            inner: Mutex::new(Inner { state: state.to_string(), ..Default::default() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_state(&self, state: impl Into<String>) {
        self.lock().state = state.into();
    }

    /// A batch was written: per partition the messages it held and the next
    /// offset; the good events among them, and how many were too late.
    pub fn applied(&self, partitions: &BTreeMap<i32, (u64, i64)>, events: u64, too_late: u64) {
        let second = self.started.elapsed().as_secs();
        let mut inner = self.lock();
        inner.batches += 1;
        inner.events += events;
        inner.too_late += too_late;
        for (&partition, &(messages, next)) in partitions {
            let p = inner.partitions.entry(partition).or_default();
            p.messages += messages;
            p.next_offset = Some(next);
            match p.recent.back_mut() {
                Some((s, n)) if *s == second => *n += messages,
                _ => p.recent.push_back((second, messages)),
            }
            while p.recent.front().is_some_and(|(s, _)| *s + RATE_WINDOW_SECS < second) {
                p.recent.pop_front();
            }
        }
    }

    /// Partitions were assigned to this consumer, each resuming from its
    /// offset stored with the state (`stored`), or from the broker's earliest
    /// offset where nothing is stored yet. Only assigned partitions are
    /// reported: their position is known at once, so a restarted consumer
    /// that is caught up reports lag 0 before any new message arrives.
    pub fn assigned(&self, partitions: &[i32], stored: &HashMap<i32, i64>) {
        let mut inner = self.lock();
        for &partition in partitions {
            let p = inner.partitions.entry(partition).or_default();
            if let Some(&next) = stored.get(&partition) {
                p.next_offset = Some(next);
            }
        }
    }

    /// Partitions went to another member: their figures are its to report.
    pub fn revoked(&self, partitions: &[i32]) {
        let mut inner = self.lock();
        for partition in partitions {
            inner.partitions.remove(partition);
        }
    }

    /// The broker's watermarks of an assigned partition (others are ignored:
    /// librdkafka reports every partition of the topic it knows of).
    pub fn watermarks(&self, partition: i32, low: Option<i64>, high: Option<i64>) {
        if let Some(p) = self.lock().partitions.get_mut(&partition) {
            p.low_watermark = low.or(p.low_watermark);
            p.high_watermark = high.or(p.high_watermark);
        }
    }

    pub fn bad(&self, reason: BadReason) {
        *self.lock().bad.entry(reason).or_default() += 1;
    }

    pub fn dead_lettered(&self, ok: bool) {
        let mut inner = self.lock();
        if ok {
            inner.dead_lettered += 1;
        } else {
            inner.dead_letter_failures += 1;
        }
    }

    /// Freshness of the events of one batch, in microseconds (negative
    /// values, from clocks ahead of ours, count as zero).
    pub fn freshness(&self, from_event: &[i64], from_broker: &[i64]) {
        let mut inner = self.lock();
        let h = inner.freshness_event.get_or_insert_with(histogram);
        for &v in from_event {
            h.saturating_record(v.max(0) as u64);
        }
        let h = inner.freshness_broker.get_or_insert_with(histogram);
        for &v in from_broker {
            h.saturating_record(v.max(0) as u64);
        }
    }

    /// Messages per second, over the last few whole seconds.
    fn rate(&self, p: &Partition) -> f64 {
        let second = self.started.elapsed().as_secs();
        // Whole seconds only: the current one is still filling.
        let messages: u64 = p
            .recent
            .iter()
            .filter(|(s, _)| *s < second && *s + RATE_WINDOW_SECS >= second)
            .map(|(_, n)| n)
            .sum();
        let span = RATE_WINDOW_SECS.min(second).max(1);
        messages as f64 / span as f64
    }

    /// The GetStatus section of this source.
    pub fn to_json(&self) -> serde_json::Value {
        let inner = self.lock();
        let partitions: Vec<_> = inner
            .partitions
            .iter()
            .map(|(partition, p)| {
                json!({
                    "partition": partition,
                    "messages": p.messages,
                    "next_offset": p.next_offset,
                    "high_watermark": p.high_watermark,
                    "lag": lag(p),
                    "messages_per_second": self.rate(p),
                })
            })
            .collect();
        let bad: serde_json::Map<String, serde_json::Value> = BadReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(inner.bad.get(r).copied().unwrap_or(0))))
            .collect();
        json!({
            "topic": self.topic,
            "state": inner.state,
            "events": inner.events,
            "batches": inner.batches,
            "partitions": partitions,
            "bad_messages": bad,
            "too_late": inner.too_late,
            "dead_lettered": inner.dead_lettered,
            "dead_letter_failures": inner.dead_letter_failures,
            "freshness_ms": {
                "event_time": quantiles(inner.freshness_event.as_ref()),
                "broker_time": quantiles(inner.freshness_broker.as_ref()),
            },
        })
    }

    /// Prometheus text for this source.
    pub fn render(&self, out: &mut String) {
        let inner = self.lock();
        let source = &self.source;
        for (partition, p) in &inner.partitions {
            let labels = format!("source=\"{source}\",partition=\"{partition}\"");
            let _ = writeln!(out, "fstore_stream_messages_total{{{labels}}} {}", p.messages);
            let _ = writeln!(out, "fstore_stream_messages_per_second{{{labels}}} {}", self.rate(p));
            if let Some(next) = p.next_offset {
                let _ = writeln!(out, "fstore_stream_next_offset{{{labels}}} {next}");
            }
            if let Some(lag) = lag(p) {
                let _ = writeln!(out, "fstore_stream_consumer_lag{{{labels}}} {lag}");
            }
        }
        for reason in BadReason::ALL {
            let n = inner.bad.get(&reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "fstore_stream_bad_messages_total{{source=\"{source}\",reason=\"{}\"}} {n}",
                reason.name()
            );
        }
        let _ = writeln!(out, "fstore_stream_events_total{{source=\"{source}\"}} {}", inner.events);
        let _ = writeln!(out, "fstore_stream_too_late_total{{source=\"{source}\"}} {}", inner.too_late);
        let _ =
            writeln!(out, "fstore_stream_dead_lettered_total{{source=\"{source}\"}} {}", inner.dead_lettered);
        for (clock, h) in [("event", &inner.freshness_event), ("broker", &inner.freshness_broker)] {
            let Some(h) = h else { continue };
            for q in [0.5, 0.9, 0.99, 0.999] {
                let _ = writeln!(
                    out,
                    "fstore_stream_freshness_seconds{{source=\"{source}\",clock=\"{clock}\",quantile=\"{q}\"}} {}",
                    h.value_at_quantile(q) as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "fstore_stream_freshness_seconds_count{{source=\"{source}\",clock=\"{clock}\"}} {}",
                h.len()
            );
        }
    }
}

/// Messages in the partition not yet applied: from the next offset to apply
/// (or, with nothing applied yet, the broker's earliest offset, where the
/// consumer starts) to the high watermark. Unknown until both are known.
fn lag(p: &Partition) -> Option<i64> {
    let from = p.next_offset.or(p.low_watermark)?;
    Some((p.high_watermark? - from).max(0))
}

fn quantiles(h: Option<&Histogram<u64>>) -> serde_json::Value {
    match h {
        Some(h) if !h.is_empty() => json!({
            "count": h.len(),
            "p50": h.value_at_quantile(0.5) as f64 / 1e3,
            "p90": h.value_at_quantile(0.9) as f64 / 1e3,
            "p99": h.value_at_quantile(0.99) as f64 / 1e3,
            "max": h.max() as f64 / 1e3,
        }),
        _ => json!(null),
    }
}

/// Help and type lines for the stream metrics, written once.
pub(crate) fn render_headers(out: &mut String) {
    for (name, kind, help) in [
        ("fstore_stream_messages_total", "counter", "Messages consumed (good and bad), per partition."),
        ("fstore_stream_messages_per_second", "gauge", "Messages consumed per second over the last 10 s."),
        ("fstore_stream_events_total", "counter", "Good events written to the store, per source."),
        ("fstore_stream_next_offset", "gauge", "Next offset to consume (stored with the state it produced)."),
        ("fstore_stream_consumer_lag", "gauge", "Messages in the partition not yet applied."),
        ("fstore_stream_bad_messages_total", "counter", "Messages that could not be used, by reason."),
        ("fstore_stream_too_late_total", "counter", "Events older than every window of an aggregating view."),
        ("fstore_stream_dead_lettered_total", "counter", "Bad messages sent to the dead-letter topic."),
        ("fstore_stream_freshness_seconds", "summary", "From event time or broker timestamp to servable."),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(stats: &StreamStats, partition: i32) -> serde_json::Value {
        let doc = stats.to_json();
        doc["partitions"].as_array().unwrap().iter().find(|p| p["partition"] == partition).cloned().unwrap()
    }

    #[test]
    fn an_assigned_partition_reports_its_stored_position_before_any_message() {
        let stats = StreamStats::new("clicks", "t", "running");
        stats.assigned(&[0, 1, 2], &HashMap::from([(0, 323), (1, 318)]));
        // Watermarks of a partition this consumer does not hold are ignored.
        stats.watermarks(7, Some(0), Some(1000));
        stats.watermarks(0, Some(0), Some(323));
        stats.watermarks(1, Some(0), Some(320));
        stats.watermarks(2, Some(5), Some(40));
        let p0 = partition(&stats, 0);
        assert_eq!((p0["next_offset"].as_i64(), p0["lag"].as_i64()), (Some(323), Some(0)));
        let p1 = partition(&stats, 1);
        assert_eq!((p1["next_offset"].as_i64(), p1["lag"].as_i64()), (Some(318), Some(2)));
        // Nothing stored: the consumer starts at the broker's earliest offset.
        let p2 = partition(&stats, 2);
        assert_eq!((p2["next_offset"].as_i64(), p2["lag"].as_i64()), (None, Some(35)));
        assert_eq!(stats.to_json()["partitions"].as_array().unwrap().len(), 3);

        let mut text = String::new();
        stats.render(&mut text);
        assert!(text.contains("fstore_stream_next_offset{source=\"clicks\",partition=\"0\"} 323"), "{text}");
        assert!(text.contains("fstore_stream_consumer_lag{source=\"clicks\",partition=\"0\"} 0"), "{text}");
        assert!(!text.contains("partition=\"7\""), "{text}");

        // Applying moves the position; a revoked partition is no longer reported.
        stats.applied(&BTreeMap::from([(1, (2, 320))]), 2, 0);
        assert_eq!(partition(&stats, 1)["lag"].as_i64(), Some(0));
        stats.revoked(&[1, 2]);
        let left: Vec<i64> = stats.to_json()["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["partition"].as_i64().unwrap())
            .collect();
        assert_eq!(left, vec![0]);
    }

    #[test]
    fn lag_is_unknown_until_the_high_watermark_is() {
        let stats = StreamStats::new("clicks", "t", "running");
        stats.assigned(&[0], &HashMap::from([(0, 10)]));
        assert_eq!(partition(&stats, 0)["lag"], serde_json::Value::Null);
    }
}
