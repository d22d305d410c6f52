//! The open-loop driver: sends request i at `start + i / rate` whatever the
//! earlier requests are doing, and times each from that scheduled instant.
//!
//! A dedicated OS thread keeps the schedule. It builds request i ahead of its
//! time (so building is not timed), sleeps until it is due, and spawns it on
//! the runtime; it never waits for a response. A thread rather than a task
//! because tokio's timer ticks in whole milliseconds, which would add up to a
//! millisecond of the client's own lateness to every sample, while a thread's
//! sleep overshoots by tens of microseconds. Whatever lateness remains is
//! measured per request and reported as send lag.
//!
//! Every run is bounded: a fixed number of requests, each with a deadline, and
//! a drain timeout after the last is sent; what is still unanswered then is
//! counted as a timeout.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use super::keys::{draw_entities, KeyColumn};
use super::sampler::Rng;
use fstore::proto::{
    feature_serving_client::FeatureServingClient, get_online_features_request::Selector,
    GetOnlineFeaturesRequest,
};

/// Error kind of a request the client could not send because too many were
/// already in flight.
pub const CLIENT_OVERLOAD: &str = "client overload";
/// Error kind of a request unanswered by its deadline or by the end of the drain.
pub const TIMEOUT: &str = "timeout";

/// What each request asks.
#[derive(Clone, Debug)]
pub enum Workload {
    /// GetOnlineFeatures with freshly drawn keys.
    Lookup {
        selector: Selector,
        columns: Arc<[KeyColumn]>,
        rows: usize,
        /// Request fields, sent as they are with every request.
        request_data: Arc<HashMap<String, fstore::proto::Values>>,
    },
    /// The standard health Check for service "": the floor of gRPC itself.
    HealthCheck,
}

/// One HTTP/2 connection to the server, with a client for each service.
#[derive(Clone, Debug)]
pub struct Connection {
    pub serving: FeatureServingClient<fstore::client::Authed>,
    pub health: HealthClient<Channel>,
}

impl Connection {
    pub fn new(channel: Channel, bearer: fstore::client::Bearer) -> Connection {
        Connection {
            // Large responses (many rows, embeddings) must not fail on
            // tonic's default 4 MiB limit: that would measure the client.
            serving: FeatureServingClient::with_interceptor(channel.clone(), bearer)
                .max_decoding_message_size(256 << 20),
            health: HealthClient::new(channel),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Requests per second.
    pub rate: f64,
    /// Sent but not recorded: connections, caches and the server's allocator warm up.
    pub warmup: Duration,
    /// The recorded window, after the warm-up.
    pub duration: Duration,
    /// Seeds the key sequence: the same seed asks for the same keys.
    pub seed: u64,
    /// A request due while this many are in flight is not sent but counted
    /// as a "client overload" error, so that a dead server cannot make the
    /// client grow without bound.
    pub max_in_flight: usize,
    /// Per request, sent to the server as grpc-timeout and enforced here.
    pub request_deadline: Duration,
    /// How long to wait for responses after the last request is sent.
    pub drain_timeout: Duration,
}

/// The raw outcome of one run, recorded window only.
#[derive(Debug)]
pub struct Measurement {
    /// Requests scheduled in the recorded window.
    pub requests: u64,
    pub ok: u64,
    /// gRPC code names (UNAVAILABLE, …) and client-side kinds, with counts.
    pub errors: BTreeMap<&'static str, u64>,
    /// The first message seen of each gRPC error code, to say what went wrong.
    pub error_messages: BTreeMap<&'static str, String>,
    /// Scheduled send to response, successful requests only, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Actual send to the answer, requests refused for overload
    /// (RESOURCE_EXHAUSTED) only: how quickly the server tells a client to
    /// retry elsewhere (the client's own lateness, in `send_lag_us`, left out).
    pub refused_latency_us: Histogram<u64>,
    /// Scheduled send to actual send, in microseconds: the client's own lateness.
    pub send_lag_us: Histogram<u64>,
    /// From the window's first scheduled send to its last response, and at
    /// least the window's length.
    pub measured: Duration,
}

/// When request `index` is due, counted from the start of the run.
pub fn scheduled_offset(index: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// How many requests fall due in the first `span` of a run: those with
/// index / rate < span.
pub fn requests_within(span: Duration, rate: f64) -> u64 {
    // The small epsilon keeps e.g. 0.2 s × 200/s (= 40.000000000000004 in
    // floating point) at 40 requests, not 41.
    (span.as_secs_f64() * rate - 1e-9).ceil().max(0.0) as u64
}

enum Outcome {
    Ok,
    Status(tonic::Status),
    Timeout,
    Overload,
}

struct Sample {
    recorded: bool,
    outcome: Outcome,
    latency_us: u64,
    send_lag_us: u64,
    completed_at: Instant,
}

enum Call {
    Lookup(GetOnlineFeaturesRequest),
    HealthCheck,
}

/// Decrements the in-flight count however the request task ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `plan` against `connections` (round-robin) and measures it. Must be
/// called within a multi-thread tokio runtime, which runs the requests.
pub async fn run(
    connections: &[Connection],
    workload: &Workload,
    plan: &LoadPlan,
) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!connections.is_empty(), "no connections to send on");
    anyhow::ensure!(plan.rate > 0.0 && plan.rate.is_finite(), "the rate must be a positive number");
    let warmup_requests = requests_within(plan.warmup, plan.rate);
    let total_requests = requests_within(plan.warmup + plan.duration, plan.rate);
    let recorded_requests = total_requests - warmup_requests;

    let (samples_tx, mut samples_rx) = mpsc::unbounded_channel::<Sample>();
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    // A short lead so that request 0 is not already late when the thread starts.
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + scheduled_offset(warmup_requests, plan.rate);

    let scheduler = Scheduler {
        runtime: tokio::runtime::Handle::current(),
        connections: connections.to_vec(),
        workload: workload.clone(),
        plan: plan.clone(),
        start,
        warmup_requests,
        total_requests,
        samples: samples_tx,
    };
    std::thread::Builder::new()
        .name("fstore-bench-schedule".into())
        .spawn(move || {
            scheduler.run();
            let _ = done_tx.send(());
        })
        .context("starting the scheduler thread")?;

    let mut latency_us = Histogram::<u64>::new(3).context("creating a histogram")?;
    let mut send_lag_us = Histogram::<u64>::new(3).context("creating a histogram")?;
    let mut refused_latency_us = Histogram::<u64>::new(3).context("creating a histogram")?;
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut error_messages: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut ok = 0u64;
    let mut recorded_seen = 0u64;
    let mut last_completion = window_start;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let drain = async {
            match drain_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            sample = samples_rx.recv() => {
                // None: the scheduler and every request task are done.
                let Some(sample) = sample else { break };
                if !sample.recorded {
                    continue;
                }
                recorded_seen += 1;
                let kind = match sample.outcome {
                    Outcome::Ok => {
                        ok += 1;
                        record(&mut latency_us, sample.latency_us);
                        record(&mut send_lag_us, sample.send_lag_us);
                        last_completion = last_completion.max(sample.completed_at);
                        continue;
                    }
                    Outcome::Status(status) => {
                        if status.code() == tonic::Code::ResourceExhausted {
                            record(&mut refused_latency_us, sample.latency_us.saturating_sub(sample.send_lag_us));
                        }
                        let kind = code_name(status.code());
                        error_messages.entry(kind).or_insert_with(|| status.message().to_string());
                        kind
                    }
                    Outcome::Timeout => TIMEOUT,
                    Outcome::Overload => CLIENT_OVERLOAD,
                };
                *errors.entry(kind).or_default() += 1;
            }
            finished = &mut done_rx, if drain_until.is_none() => {
                finished.context("the scheduler thread stopped unexpectedly")?;
                drain_until = Some(tokio::time::Instant::now() + plan.drain_timeout);
            }
            () = drain => break,
        }
    }
    let unanswered = recorded_requests.saturating_sub(recorded_seen);
    if unanswered > 0 {
        tracing::warn!(unanswered, "Requests still unanswered after the drain timeout; counted as timeouts.");
        *errors.entry(TIMEOUT).or_default() += unanswered;
    }
    Ok(Measurement {
        requests: recorded_requests,
        ok,
        errors,
        error_messages,
        latency_us,
        refused_latency_us,
        send_lag_us,
        measured: plan.duration.max(last_completion.saturating_duration_since(window_start)),
    })
}

struct Scheduler {
    runtime: tokio::runtime::Handle,
    connections: Vec<Connection>,
    workload: Workload,
    plan: LoadPlan,
    start: Instant,
    warmup_requests: u64,
    total_requests: u64,
    samples: mpsc::UnboundedSender<Sample>,
}

impl Scheduler {
    fn run(self) {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut rng = Rng::new(self.plan.seed);
        for index in 0..self.total_requests {
            if self.samples.is_closed() {
                // Nobody is measuring any more: stop sending.
                return;
            }
            // Build first, while there is slack before the request is due.
            let call = match &self.workload {
                Workload::Lookup { selector, columns, rows, request_data } => {
                    Call::Lookup(GetOnlineFeaturesRequest {
                        selector: Some(selector.clone()),
                        entities: draw_entities(columns, *rows, &mut rng),
                        request_data: HashMap::clone(request_data),
                        ..Default::default()
                    })
                }
                Workload::HealthCheck => Call::HealthCheck,
            };
            let due = self.start + scheduled_offset(index, self.plan.rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let recorded = index >= self.warmup_requests;
            if in_flight.load(Ordering::Relaxed) >= self.plan.max_in_flight {
                let now = Instant::now();
                let _ = self.samples.send(Sample {
                    recorded,
                    outcome: Outcome::Overload,
                    latency_us: 0,
                    send_lag_us: micros(now.saturating_duration_since(due)),
                    completed_at: now,
                });
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(in_flight.clone());
            let connection = self.connections[(index % self.connections.len() as u64) as usize].clone();
            let samples = self.samples.clone();
            let deadline = self.plan.request_deadline;
            self.runtime.spawn(async move {
                let _guard = guard;
                let sent_at = Instant::now();
                let result = tokio::time::timeout(deadline, send(connection, call, deadline)).await;
                let completed_at = Instant::now();
                let outcome = match result {
                    Ok(Ok(())) => Outcome::Ok,
                    Ok(Err(status)) => Outcome::Status(status),
                    Err(_elapsed) => Outcome::Timeout,
                };
                let _ = samples.send(Sample {
                    recorded,
                    outcome,
                    latency_us: micros(completed_at.saturating_duration_since(due)),
                    send_lag_us: micros(sent_at.saturating_duration_since(due)),
                    completed_at,
                });
            });
        }
    }
}

async fn send(mut connection: Connection, call: Call, deadline: Duration) -> Result<(), tonic::Status> {
    match call {
        Call::Lookup(message) => {
            let mut request = tonic::Request::new(message);
            request.set_timeout(deadline);
            connection.serving.get_online_features(request).await.map(drop)
        }
        Call::HealthCheck => {
            let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
            request.set_timeout(deadline);
            connection.health.check(request).await.map(drop)
        }
    }
}

/// Records into an auto-resizing histogram. Not `saturating_record`: that
/// never resizes, and would clamp every latency above the histogram's
/// initial range (about 2 ms) without a word.
fn record(histogram: &mut Histogram<u64>, micros: u64) {
    if histogram.record(micros).is_err() {
        // Only past i64::MAX / 2 µs, which no response takes.
        histogram.saturating_record(micros);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The canonical gRPC name of a status code, as other gRPC tools print it.
pub fn code_name(code: tonic::Code) -> &'static str {
    fstore::grpc_code_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_i_is_due_at_i_over_rate() {
        assert_eq!(scheduled_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(scheduled_offset(1, 1000.0), Duration::from_millis(1));
        assert_eq!(scheduled_offset(1500, 1000.0), Duration::from_millis(1500));
        assert_eq!(scheduled_offset(3, 4.0), Duration::from_millis(750));
        let offsets: Vec<Duration> = (0..1000).map(|i| scheduled_offset(i, 333.0)).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "the schedule only moves forward");
        let last = offsets[999].as_secs_f64();
        assert!((last - 999.0 / 333.0).abs() < 1e-9, "no drift accumulates: {last}");
    }

    #[test]
    fn requests_within_counts_those_due_before_the_end() {
        assert_eq!(requests_within(Duration::from_secs(1), 200.0), 200);
        assert_eq!(requests_within(Duration::from_millis(200), 200.0), 40);
        assert_eq!(requests_within(Duration::from_millis(1200), 200.0), 240);
        assert_eq!(requests_within(Duration::ZERO, 200.0), 0);
        // 2.5 requests' worth: indices 0, 1 and 2 are due before 1 s.
        assert_eq!(requests_within(Duration::from_secs(1), 2.5), 3);
    }

    #[test]
    fn code_names_are_grpc_canonical() {
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    }
}
