//! Serving metrics: per RPC and feature service, a latency histogram
//! (microseconds, HdrHistogram) and request counts by gRPC code; exported in
//! Prometheus text format on `server.metrics_listen` (`GET /metrics`) and
//! summarised in GetStatus.
//!
//! Labels are bounded: the service label is a declared service name, `refs`
//! for requests by feature references, or `unknown` for names the server
//! does not know, so a misbehaving client cannot grow the series without end.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::runtime::Runtime;

type SeriesKey = (&'static str, String);

#[derive(Default)]
pub struct Metrics {
    series: RwLock<HashMap<SeriesKey, Arc<Mutex<Series>>>>,
    door: std::sync::OnceLock<Arc<crate::serve::guard::Door>>,
}

struct Series {
    latency_micros: Histogram<u64>,
    codes: BTreeMap<&'static str, u64>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            // 3 significant digits from 1 µs to 60 s; values past it are clamped.
            latency_micros: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            codes: BTreeMap::new(),
        }
    }
}

/// The quantiles exported for every series.
const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

impl Metrics {
    pub fn record(&self, rpc: &'static str, service: &str, code: tonic::Code, elapsed: Duration) {
        let key = (rpc, service.to_string());
        let existing = self.series.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let series = match existing {
            Some(s) => s,
            None => self.series.write().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone(),
        };
        let mut s = series.lock().unwrap_or_else(|e| e.into_inner());
        s.latency_micros.saturating_record(elapsed.as_micros().clamp(1, u64::MAX as u128) as u64);
        *s.codes.entry(crate::grpc_code_name(code)).or_default() += 1;
    }

    /// Export the door's figures too: lookups in flight and refusals.
    pub fn watch_door(&self, door: Arc<crate::serve::guard::Door>) {
        let _ = self.door.set(door);
    }

    fn each(&self, mut f: impl FnMut(&'static str, &str, &Series)) {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<&SeriesKey> = series.keys().collect();
        keys.sort();
        for key in keys {
            let s = series[key].lock().unwrap_or_else(|e| e.into_inner());
            f(key.0, &key.1, &s);
        }
    }

    /// For GetStatus: counts and latency percentiles in milliseconds.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = Vec::new();
        self.each(|rpc, service, s| {
            let h = &s.latency_micros;
            out.push(serde_json::json!({
                "rpc": rpc,
                "service": service,
                "requests": h.len(),
                "by_code": s.codes,
                "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
                "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
                "p999_ms": h.value_at_quantile(0.999) as f64 / 1000.0,
                "max_ms": h.max() as f64 / 1000.0,
            }));
        });
        serde_json::Value::Array(out)
    }

    /// The Prometheus text exposition of every series plus store gauges.
    pub fn render(&self, runtime: &Runtime) -> String {
        let engine = &runtime.engine;
        let mut out = String::new();
        out.push_str(
            "# HELP fstore_request_duration_seconds Server-side latency per RPC and feature service.\n",
        );
        out.push_str("# TYPE fstore_request_duration_seconds summary\n");
        self.each(|rpc, service, s| {
            let h = &s.latency_micros;
            for q in QUANTILES {
                let _ = writeln!(
                    out,
                    "fstore_request_duration_seconds{{rpc=\"{rpc}\",service=\"{}\",quantile=\"{q}\"}} {}",
                    escape(service),
                    h.value_at_quantile(q) as f64 / 1e6
                );
            }
            let _ = writeln!(
                out,
                "fstore_request_duration_seconds_sum{{rpc=\"{rpc}\",service=\"{}\"}} {}",
                escape(service),
                h.mean() * h.len() as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "fstore_request_duration_seconds_count{{rpc=\"{rpc}\",service=\"{}\"}} {}",
                escape(service),
                h.len()
            );
        });
        out.push_str("# HELP fstore_requests_total Requests per RPC, feature service and gRPC code.\n");
        out.push_str("# TYPE fstore_requests_total counter\n");
        self.each(|rpc, service, s| {
            for (code, n) in &s.codes {
                let _ = writeln!(
                    out,
                    "fstore_requests_total{{rpc=\"{rpc}\",service=\"{}\",code=\"{code}\"}} {n}",
                    escape(service)
                );
            }
        });
        if let Some(door) = self.door.get() {
            out.push_str("# HELP fstore_requests_in_flight Lookups accepted and not yet answered.\n");
            out.push_str("# TYPE fstore_requests_in_flight gauge\n");
            let _ = writeln!(out, "fstore_requests_in_flight {}", door.in_flight());
            out.push_str(
                "# HELP fstore_requests_refused_total Calls refused before decoding: too many lookups in flight, lookups waiting too long, or no valid API key.\n",
            );
            out.push_str("# TYPE fstore_requests_refused_total counter\n");
            for (reason, count) in [
                ("in_flight", door.refused_in_flight()),
                ("queue", door.refused_queue()),
                ("unauthenticated", door.refused_unauthenticated()),
            ] {
                let _ = writeln!(out, "fstore_requests_refused_total{{reason=\"{reason}\"}} {count}");
            }
        }
        let streams = runtime.stream_stats();
        if !streams.is_empty() {
            crate::stream::stats::render_headers(&mut out);
            for stream in &streams {
                stream.render(&mut out);
            }
        }
        out.push_str("# HELP fstore_rocksdb RocksDB properties of the rows column family.\n");
        out.push_str("# TYPE fstore_rocksdb gauge\n");
        for (name, property) in [
            ("estimated_keys", "rocksdb.estimate-num-keys"),
            ("live_sst_bytes", "rocksdb.live-sst-files-size"),
            ("memtable_bytes", "rocksdb.cur-size-all-mem-tables"),
            ("block_cache_usage_bytes", "rocksdb.block-cache-usage"),
            ("block_cache_pinned_bytes", "rocksdb.block-cache-pinned-usage"),
            ("pending_compaction_bytes", "rocksdb.estimate-pending-compaction-bytes"),
        ] {
            if let Some(v) = engine.store.property(property) {
                let _ = writeln!(out, "fstore_rocksdb{{property=\"{name}\"}} {v}");
            }
        }
        if let Some(cache) = &engine.store.cache {
            use std::sync::atomic::Ordering::Relaxed;
            out.push_str("# HELP fstore_row_cache Decoded-row cache in front of RocksDB.\n");
            out.push_str("# TYPE fstore_row_cache gauge\n");
            for (stat, value) in [
                ("hits", cache.hits.load(Relaxed)),
                ("misses", cache.misses.load(Relaxed)),
                ("evictions", cache.evictions.load(Relaxed)),
                ("entries", cache.entries()),
                ("weighted_bytes", cache.weighted_bytes()),
            ] {
                let _ = writeln!(out, "fstore_row_cache{{stat=\"{stat}\"}} {value}");
            }
        }
        let _ = writeln!(
            out,
            "# TYPE fstore_uptime_seconds gauge\nfstore_uptime_seconds {}",
            engine.uptime().as_secs()
        );
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serve `GET /metrics` on `listener` until `shutdown` resolves.
pub(crate) async fn serve_http(
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (runtime, metrics) = (runtime.clone(), metrics.clone());
            async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render(&runtime))
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_per_rpc_and_service_with_codes() {
        let m = Metrics::default();
        for ms in 1..=100 {
            m.record("GetOnlineFeatures", "ranker_v1", tonic::Code::Ok, Duration::from_micros(ms * 10));
        }
        m.record("GetOnlineFeatures", "ranker_v1", tonic::Code::InvalidArgument, Duration::from_micros(5));
        m.record("GetOnlineFeatures", "refs", tonic::Code::Ok, Duration::from_micros(5));
        let summary = m.summary();
        let ranker = &summary[0];
        assert_eq!(ranker["service"], "ranker_v1");
        assert_eq!(ranker["requests"], 101);
        assert_eq!(ranker["by_code"]["INVALID_ARGUMENT"], 1);
        let p99 = ranker["p99_ms"].as_f64().unwrap();
        assert!((0.98..=1.0).contains(&p99), "{p99}");
        assert_eq!(summary[1]["service"], "refs");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
