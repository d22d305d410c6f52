//! `fstore bench`: an open-loop load generator over the real gRPC API, to
//! measure lookup latency at a fixed request rate.
//!
//! Open loop means that request i is sent at `start + i / rate` whether or not
//! earlier requests have been answered, and its latency is counted from that
//! scheduled instant, not from when it happened to be sent. A closed-loop
//! client (send, wait, send again) slows down when the server stalls and so
//! never records the requests that would have queued behind the stall
//! ("coordinated omission"); here a stall shows in the tail as it would for
//! real callers. `--baseline` runs the same schedule against the standard
//! health Check, which does no work, giving the floor of gRPC itself on this
//! machine to compare the lookups with.
//!
//! The load generator must never target anything but the one address it is
//! given, and never run unbounded: each run sends a fixed number of requests,
//! each request carries a deadline, in-flight requests are capped, and
//! responses are awaited for at most a drain timeout after the last send.
//!
//! - [`driver`]: the schedule, the request tasks and the recording.
//! - [`keys`]: `--key` specs and the key columns drawn for each request.
//! - [`sampler`]: the seeded generator, uniform and Zipf key distributions.
//! - [`report`]: per-run results as a table and as JSON.
//! - [`chart`]: the latency-versus-throughput SVG of a sweep.

pub mod chart;
pub mod driver;
pub mod ingest;
pub mod keys;
pub mod report;
pub mod sampler;
pub mod stream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tonic::transport::Channel;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use driver::{Connection, LoadPlan, Workload};
use fstore::proto::{self, get_online_features_request::Selector};
use keys::{KeyColumn, KeySpec, KeyType};
use report::{RunKind, RunReport, RunSetup};
use sampler::Distribution;

/// Requests in flight beyond which a due request is counted as a "client
/// overload" error instead of being sent: far above what a healthy server
/// has outstanding, low enough that a dead one cannot exhaust the client.
const MAX_IN_FLIGHT: usize = 20_000;
/// Each request's deadline, sent to the server and enforced by the client.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// How long a run waits for answers after its last request is sent. Longer
/// than the deadline, so that only a request whose task never got to run is
/// counted as unanswered here rather than timed out by its own deadline.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(6);
/// Connecting and the setup calls (listing services, the first request).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a server that is still loading its data at start.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Above this, a run's numbers are more about the client than the server.
const MAX_RATE: f64 = 1_000_000.0;
const MAX_CONNECTIONS: usize = 1024;
/// Longest --duration or --warmup: a benchmark is a measurement, not a soak.
const MAX_SPAN: Duration = Duration::from_secs(3600);
const MAX_ROWS: usize = 100_000;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Requests per second, sent on schedule whatever the server does.
    #[arg(long, required_unless_present = "sweep", conflicts_with = "sweep")]
    pub rate: Option<f64>,
    /// Rates to run in turn, each with its own warm-up, e.g. --sweep 1000,2000,5000.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// Recorded time per run, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load sent before each run's recorded window and not recorded.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// HTTP/2 connections to spread requests over, round-robin.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Feature service to look up; key columns and types come from the server.
    #[arg(long, conflicts_with = "features", required_unless_present_any = ["features", "baseline"])]
    pub service: Option<String>,
    /// Feature references instead of a service: view.feature or view.*, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Entity rows per request.
    #[arg(long, default_value_t = 1)]
    pub rows: usize,
    /// Key values: --key user_id=1..100000 (int64, end exclusive),
    /// --key 'item_id=sku-{0000..0400}' (strings, zero-padded; quote it, or
    /// the shell expands it into a list, which works too) or a list
    /// --key item_id=sku-0001,sku-0002. One per key column; with --service,
    /// int64 keys default to 1..1000. With --features, a `{A..B}` template
    /// makes string keys of bare numbers.
    #[arg(long = "key", value_parser = parse_key_spec, num_args = 1..)]
    pub keys: Vec<KeySpec>,
    /// A request field of the service, sent with every request as one value
    /// for every row, e.g. --request device=ios --request 'query_emb=[0.1,0.2]'.
    #[arg(long = "request")]
    pub request: Vec<String>,
    /// How keys are drawn from their ranges: uniform, or zipf:S (skew S > 0,
    /// e.g. zipf:1.1) where the first key of a range is the hottest.
    #[arg(long, default_value = "uniform", value_parser = parse_distribution)]
    pub distribution: Distribution,
    /// Seed of the key sequence: the same seed asks for the same keys.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Call the health Check RPC instead of looking up: the floor of gRPC itself.
    #[arg(long, conflicts_with = "compare_baseline")]
    pub baseline: bool,
    /// At each rate, run the lookup and then the baseline, and report the
    /// ratio of their p99 latencies.
    #[arg(long)]
    pub compare_baseline: bool,
    /// Write the runs as a JSON array to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write a latency-versus-throughput chart (SVG) of the runs to this file.
    #[arg(long, value_name = "PATH.svg")]
    pub chart: Option<PathBuf>,
    /// Server address (default: from server.listen).
    #[arg(long)]
    pub addr: Option<String>,
}

/// Runs the benchmark against `--addr`, or else `default_addr` (the CLI
/// passes the configured listen address), and nothing else. Fails only when
/// it cannot start: bad options, no server; requests that fail while it
/// runs are reported, not fatal.
pub fn run(
    args: BenchArgs,
    default_addr: String,
    client: &fstore::client::ClientOptions,
) -> anyhow::Result<ExitCode> {
    let rates = validate(&args)?;
    let addr = args.addr.clone().unwrap_or(default_addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fstore-bench")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(bench(&args, client, &addr, &rates));
    // Requests abandoned after a drain timeout must not hold the process.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let reports = result?;

    println!("{}", report::table(&reports));
    for run in &reports {
        for (code, message) in &run.error_messages {
            println!("{} at {} req/s, first {code}: {message}", run.setup.kind.label(), run.setup.target_rps);
        }
    }
    for run in &reports {
        if let Some(lag) = run.send_lag_p99_ms.filter(|lag| *lag > 1.0) {
            println!(
                "note: at {} req/s the client itself sent requests late (send lag p99 {lag:.3} ms): \
                 this machine, not only the server, limits that run.",
                run.setup.target_rps
            );
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&reports).context("encoding the results as JSON")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        let svg = chart::render(&chart::title_of(&reports), &chart::series_of(&reports));
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the options that need no server; returns the rates to run.
fn validate(args: &BenchArgs) -> anyhow::Result<Vec<f64>> {
    let rates = match args.rate {
        Some(rate) => vec![rate],
        None => args.sweep.clone(),
    };
    if rates.is_empty() {
        bail!("give --rate or --sweep");
    }
    for &rate in &rates {
        if !(rate > 0.0 && rate <= MAX_RATE) {
            bail!("rate {rate}: expected requests per second in (0, {MAX_RATE}]");
        }
    }
    if args.duration.is_zero() {
        bail!("--duration must be longer than zero");
    }
    if args.duration > MAX_SPAN || args.warmup > MAX_SPAN {
        bail!("--duration and --warmup are limited to {} s each", MAX_SPAN.as_secs());
    }
    if !(1..=MAX_CONNECTIONS).contains(&args.connections) {
        bail!("--connections {}: expected 1 to {MAX_CONNECTIONS}", args.connections);
    }
    if !(1..=MAX_ROWS).contains(&args.rows) {
        bail!("--rows {}: expected 1 to {MAX_ROWS}", args.rows);
    }
    if !args.request.is_empty() && args.service.is_none() {
        bail!("--request gives a feature service's request fields: it needs --service");
    }
    if !args.baseline && args.service.is_none() && args.features.is_empty() {
        bail!("give --service NAME or --features view.feature,... (or --baseline)");
    }
    Ok(rates)
}

async fn bench(
    args: &BenchArgs,
    client: &fstore::client::ClientOptions,
    addr: &str,
    rates: &[f64],
) -> anyhow::Result<Vec<RunReport>> {
    let connections = connect(client, addr, args.connections).await?;
    let lookup = if args.baseline { None } else { Some(prepare_lookup(args, &connections[0]).await?) };
    if args.baseline || args.compare_baseline {
        check_health_rpc(&connections[0]).await?;
    }
    let target = describe_target(args);
    let what = match &lookup {
        Some((_, columns)) => format!(
            "{target}, {} row{}/request, keys {} ({}, seed {})",
            args.rows,
            if args.rows == 1 { "" } else { "s" },
            columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
            args.distribution,
            args.seed
        ),
        None => "health Check (baseline)".to_string(),
    };
    println!(
        "fstore bench {addr}: {what}, {} connection{}, {} s warm-up + {} s per run",
        args.connections,
        if args.connections == 1 { "" } else { "s" },
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
    );

    let mut reports = Vec::new();
    for &rate in rates {
        let plan = LoadPlan {
            rate,
            warmup: args.warmup,
            duration: args.duration,
            seed: args.seed,
            max_in_flight: MAX_IN_FLIGHT,
            request_deadline: REQUEST_DEADLINE,
            drain_timeout: DRAIN_TIMEOUT,
        };
        let setup = |kind: RunKind| RunSetup {
            kind,
            target: if kind == RunKind::Baseline { "health check".into() } else { target.clone() },
            rows_per_request: (kind == RunKind::Lookup).then_some(args.rows),
            connections: args.connections,
            distribution: args.distribution.to_string(),
            seed: args.seed,
            target_rps: rate,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: args.duration.as_secs_f64(),
        };
        let lookup_report = match &lookup {
            Some((workload, _)) => {
                Some(measure(&connections, workload, &plan, setup(RunKind::Lookup)).await?)
            }
            None => None,
        };
        let baseline_report = if args.baseline || args.compare_baseline {
            Some(measure(&connections, &Workload::HealthCheck, &plan, setup(RunKind::Baseline)).await?)
        } else {
            None
        };
        match (lookup_report, baseline_report) {
            (Some(mut lookup), Some(baseline)) => {
                lookup.compare_with(&baseline);
                reports.push(lookup);
                reports.push(baseline);
            }
            (lookup, baseline) => reports.extend(lookup.into_iter().chain(baseline)),
        }
    }
    Ok(reports)
}

async fn measure(
    connections: &[Connection],
    workload: &Workload,
    plan: &LoadPlan,
    setup: RunSetup,
) -> anyhow::Result<RunReport> {
    eprintln!(
        "{} at {} req/s: {} s warm-up, then {} s recorded…",
        setup.kind.label(),
        plan.rate,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    );
    let measurement = driver::run(connections, workload, plan).await?;
    let report = RunReport::new(setup, &measurement);
    // A line per run as it ends, so that a long sweep shows its progress.
    let ms = |ms: Option<f64>| ms.map_or_else(|| "-".to_string(), |ms| format!("{ms:.3} ms"));
    eprintln!(
        "  achieved {:.1} req/s, p50 {}, p99 {}, max {}, {} error(s)",
        report.achieved_rps,
        ms(report.p50_ms),
        ms(report.p99_ms),
        ms(report.max_ms),
        report.errors
    );
    Ok(report)
}

fn describe_target(args: &BenchArgs) -> String {
    match &args.service {
        Some(service) => format!("service {service}"),
        None => format!("features {}", args.features.join(",")),
    }
}

/// One HTTP/2 connection per channel: each `connect` opens its own.
async fn connect(
    client: &fstore::client::ClientOptions,
    addr: &str,
    count: usize,
) -> anyhow::Result<Vec<Connection>> {
    let endpoint = client.endpoint(addr)?.connect_timeout(SETUP_TIMEOUT).tcp_nodelay(true);
    let addr = client.url(addr);
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let channel: Channel = tokio::time::timeout(SETUP_TIMEOUT, endpoint.connect())
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {SETUP_TIMEOUT:?}"))
            .and_then(|connected| connected.map_err(anyhow::Error::from))
            .with_context(|| {
                format!("connecting to the fstore server at {addr} (is `fstore serve` running?)")
            })?;
        connections.push(Connection::new(channel, client.bearer()?));
    }
    Ok(connections)
}

fn setup_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(SETUP_TIMEOUT);
    request
}

/// Resolves what to look up and with which keys, waits until the server is
/// ready, and sends one request so that bad options fail here, clearly,
/// rather than as thousands of INVALID_ARGUMENT errors.
async fn prepare_lookup(
    args: &BenchArgs,
    connection: &Connection,
) -> anyhow::Result<(Workload, Vec<KeyColumn>)> {
    let mut serving = connection.serving.clone();
    let specs = keys::merge_repeated(&args.keys)?;
    let mut request_data = std::collections::HashMap::new();
    let (selector, columns) = match &args.service {
        Some(name) => {
            let list = tokio::time::timeout(
                SETUP_TIMEOUT,
                serving.list_feature_services(setup_request(proto::ListFeatureServicesRequest {})),
            )
            .await
            .context("listing feature services: no answer")?
            .map_err(status_error)
            .context("listing feature services")?
            .into_inner();
            let Some(service) = list.services.iter().find(|s| &s.name == name) else {
                let names: Vec<&str> = list.services.iter().map(|s| s.name.as_str()).collect();
                bail!("the server has no feature service {name:?}; it has: {}", names.join(", "));
            };
            for spec in &args.request {
                let field = spec.split_once('=').map_or(spec.as_str(), |(n, _)| n);
                let Some(info) = service.request_fields.iter().find(|f| f.name == field) else {
                    bail!("--request {spec}: service {name:?} has no request field `{field}`");
                };
                let value = crate::typed_arg::request_value(spec, &info.r#type)?;
                request_data.insert(field.to_string(), proto::Values { values: vec![value] });
            }
            (Selector::FeatureService(name.clone()), service_key_columns(service, &specs, args.distribution)?)
        }
        None => {
            if specs.is_empty() {
                bail!(
                    "with --features, give every key column with --key, \
                     e.g. --key user_id=1..100000 --key 'item_id=sku-{{0000..0400}}'"
                );
            }
            let columns = specs
                .iter()
                .map(|spec| KeyColumn::new(spec, None, args.distribution))
                .collect::<anyhow::Result<Vec<_>>>()?;
            (Selector::Features(proto::FeatureRefs { refs: args.features.clone() }), columns)
        }
    };
    wait_until_serving(connection).await?;

    let mut rng = sampler::Rng::new(args.seed);
    let probe = proto::GetOnlineFeaturesRequest {
        selector: Some(selector.clone()),
        entities: keys::draw_entities(&columns, args.rows, &mut rng),
        request_data: request_data.clone(),
        ..Default::default()
    };
    let workload = Workload::Lookup {
        selector,
        columns: Arc::from(columns.clone()),
        rows: args.rows,
        request_data: Arc::new(request_data),
    };
    // A server still draining an earlier load sheds with RESOURCE_EXHAUSTED
    // and asks for a retry with backoff: do so, within the setup time.
    let give_up = tokio::time::Instant::now() + SETUP_TIMEOUT;
    let mut backoff = Duration::from_millis(20);
    let response = loop {
        let answer =
            tokio::time::timeout(SETUP_TIMEOUT, serving.get_online_features(setup_request(probe.clone())))
                .await
                .context("the first lookup: no answer")?;
        match answer {
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tokio::time::Instant::now() + backoff < give_up =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            answer => {
                break answer
                    .map_err(status_error)
                    .context("the server refused the first lookup, so the benchmark's requests are wrong")?
                    .into_inner()
            }
        }
    };
    let values: usize = response.features.iter().map(|f| f.statuses.len()).sum();
    let present = response
        .features
        .iter()
        .flat_map(|f| f.statuses.iter())
        .filter(|s| **s == proto::FieldStatus::Present as i32)
        .count();
    eprintln!("first lookup: {present} of {values} values present");
    if values > 0 && present == 0 {
        eprintln!(
            "note: none of the first lookup's keys were found; if that holds for all, this measures misses. \
             Check the --key ranges against the loaded data."
        );
    }
    Ok((workload, columns))
}

/// The key columns of a service: each from its --key, or an int64 default.
fn service_key_columns(
    service: &proto::FeatureServiceInfo,
    specs: &[KeySpec],
    distribution: Distribution,
) -> anyhow::Result<Vec<KeyColumn>> {
    // Servers that predate key_types list the names alone; their types then
    // follow from the specs' form.
    let keys: Vec<(String, Option<KeyType>)> = if service.key_types.is_empty() {
        service.entity_keys.iter().map(|name| (name.clone(), None)).collect()
    } else {
        service
            .key_types
            .iter()
            .map(|k| {
                Ok((
                    k.name.clone(),
                    Some(KeyType::parse(&k.r#type).with_context(|| format!("key {}", k.name))?),
                ))
            })
            .collect::<anyhow::Result<_>>()?
    };
    for spec in specs {
        if !keys.iter().any(|(name, _)| *name == spec.name) {
            let names: Vec<&str> = keys.iter().map(|(name, _)| name.as_str()).collect();
            bail!(
                "--key {}: service {} has no such key column; its keys are: {}",
                spec.name,
                service.name,
                names.join(", ")
            );
        }
    }
    keys.iter()
        .map(|(name, key_type)| match specs.iter().find(|spec| &spec.name == name) {
            Some(spec) => KeyColumn::new(spec, *key_type, distribution),
            None if *key_type == Some(KeyType::String) => bail!(
                "service {} needs the string key {name}: give its values, e.g. --key '{name}=sku-{{0000..0400}}'",
                service.name
            ),
            None => Ok(KeyColumn::default_int(name, distribution)),
        })
        .collect()
}

/// A server that has just started loads its sample data first and reports
/// NOT_SERVING meanwhile; measuring then would measure the load.
async fn wait_until_serving(connection: &Connection) -> anyhow::Result<()> {
    let mut health = connection.health.clone();
    let give_up = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut told = false;
    loop {
        let reply = tokio::time::timeout(
            SETUP_TIMEOUT,
            health.check(setup_request(HealthCheckRequest { service: String::new() })),
        )
        .await;
        match reply {
            Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
            // Without a health service there is nothing to wait for.
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => return Ok(()),
            Ok(Err(status)) => return Err(status_error(status).context("health check")),
            Ok(Ok(_)) | Err(_) => {}
        }
        if tokio::time::Instant::now() >= give_up {
            bail!("the server did not report SERVING within {READY_TIMEOUT:?}");
        }
        if !told {
            eprintln!("waiting for the server to finish loading (health: not serving)…");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The baseline needs the health service; a server without it fails here.
async fn check_health_rpc(connection: &Connection) -> anyhow::Result<()> {
    let mut health = connection.health.clone();
    tokio::time::timeout(
        SETUP_TIMEOUT,
        health.check(setup_request(HealthCheckRequest { service: String::new() })),
    )
    .await
    .context("health check: no answer")?
    .map_err(status_error)
    .context("the baseline calls the standard gRPC health service, and it failed")?;
    Ok(())
}

/// A setup call's failure as the user should read it.
fn status_error(status: tonic::Status) -> anyhow::Error {
    let hint = if status.code() == tonic::Code::Unimplemented { " (is this an fstore server?)" } else { "" };
    anyhow::anyhow!("{}: {}{hint}", driver::code_name(status.code()), status.message())
}

/// `10s`, `500ms`, `1.5s`, `2m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 =
        number.parse().map_err(|_| format!("{text:?}: expected a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_key_spec(text: &str) -> Result<KeySpec, String> {
    text.parse().map_err(|e: anyhow::Error| format!("{e:#}"))
}

fn parse_distribution(text: &str) -> Result<Distribution, String> {
    text.parse().map_err(|e: anyhow::Error| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use clap::Parser;
    use tokio::sync::oneshot;
    use tonic::{Request, Response, Status};

    use super::*;
    use fstore::proto::feature_serving_server::{FeatureServing, FeatureServingServer};

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(list: &[&str]) -> BenchArgs {
        let argv = std::iter::once("bench").chain(list.iter().copied());
        match TestCli::try_parse_from(argv) {
            Ok(cli) => cli.bench,
            Err(e) => panic!("{list:?}: {e}"),
        }
    }

    /// A stand-in for the fstore server: one service keyed by an int64 and a
    /// string, answering every well-formed lookup with present values. With
    /// `stall_at`, the lookup with that number freezes the whole server for
    /// [`STALL`], as a long pause would.
    #[derive(Default)]
    struct FakeServing {
        lookups: AtomicU64,
        stall_at: Option<u64>,
        stalled_until: Mutex<Option<tokio::time::Instant>>,
    }

    const STALL: Duration = Duration::from_millis(300);

    #[tonic::async_trait]
    impl FeatureServing for FakeServing {
        async fn get_online_features(
            &self,
            request: Request<proto::GetOnlineFeaturesRequest>,
        ) -> Result<Response<proto::GetOnlineFeaturesResponse>, Status> {
            if let Some(stall_at) = self.stall_at {
                let number = self.lookups.fetch_add(1, Ordering::Relaxed);
                let until = {
                    let mut until =
                        self.stalled_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if number == stall_at {
                        *until = Some(tokio::time::Instant::now() + STALL);
                    }
                    *until
                };
                if let Some(until) = until {
                    tokio::time::sleep_until(until).await;
                }
            }
            let request = request.into_inner();
            if request.selector != Some(Selector::FeatureService("ranker".into())) {
                return Err(Status::invalid_argument("unknown feature service"));
            }
            let column = |name: &str| request.entities.get(name).map(|v| &v.values);
            let (Some(users), Some(items)) = (column("user_id"), column("item_id")) else {
                return Err(Status::invalid_argument("missing key column"));
            };
            let typed = users.iter().all(|v| matches!(v.kind, Some(proto::value::Kind::Int64Value(_))))
                && items.iter().all(|v| matches!(v.kind, Some(proto::value::Kind::StringValue(_))));
            if !typed || users.len() != items.len() {
                return Err(Status::invalid_argument("key values of the wrong type or length"));
            }
            let rows = users.len();
            Ok(Response::new(proto::GetOnlineFeaturesResponse {
                features: vec![proto::FeatureColumn {
                    name: "stats.views".into(),
                    values: vec![proto::Value { kind: Some(proto::value::Kind::Int64Value(1)) }; rows],
                    statuses: vec![proto::FieldStatus::Present as i32; rows],
                    event_timestamps_micros: vec![0; rows],
                }],
            }))
        }

        async fn list_feature_services(
            &self,
            _request: Request<proto::ListFeatureServicesRequest>,
        ) -> Result<Response<proto::ListFeatureServicesResponse>, Status> {
            let key = |name: &str, key_type: &str| proto::FeatureInfo {
                name: name.into(),
                r#type: key_type.into(),
            };
            Ok(Response::new(proto::ListFeatureServicesResponse {
                services: vec![proto::FeatureServiceInfo {
                    name: "ranker".into(),
                    features: vec![key("stats.views", "int64")],
                    entity_keys: vec!["user_id".into(), "item_id".into()],
                    key_types: vec![key("user_id", "int64"), key("item_id", "string")],
                    request_fields: Vec::new(),
                }],
            }))
        }
    }

    /// A tonic server on 127.0.0.1:0 in its own runtime (the bench builds its
    /// own), with the health service and the fake feature service. Stops when
    /// the returned guard is dropped.
    struct TestServer {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        runtime: Option<tokio::runtime::Runtime>,
    }

    impl TestServer {
        fn start() -> TestServer {
            TestServer::with(FakeServing::default())
        }

        fn with(serving: FakeServing) -> TestServer {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a test runtime starts");
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("binding a loopback port for the test server");
            let addr = listener.local_addr().expect("a bound listener has an address");
            let (stop, stopped) = oneshot::channel::<()>();
            runtime.spawn(async move {
                let (_reporter, health) = tonic_health::server::health_reporter();
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let served = tonic::transport::Server::builder()
                    .add_service(health)
                    .add_service(FeatureServingServer::new(serving))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    eprintln!("test server: {e}");
                }
            });
            TestServer { addr, stop: Some(stop), runtime: Some(runtime) }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(runtime) = self.runtime.take() {
                runtime.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }

    fn read_runs(path: &std::path::Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).expect("the bench wrote its JSON");
        serde_json::from_str(&text).expect("the bench's JSON parses")
    }

    /// `min_achieved` is a fraction of the target rate, loose because a busy
    /// test machine may stretch a short run's last responses.
    fn assert_clean_run(run: &serde_json::Value, expected_requests: f64, min_achieved: f64) {
        let requests = run["requests"].as_f64().expect("requests is a number");
        assert!(
            (requests - expected_requests).abs() <= expected_requests * 0.1,
            "requests {requests}, expected about {expected_requests}: {run}"
        );
        assert_eq!(run["errors"], 0, "{run}");
        assert_eq!(run["ok"], run["requests"], "{run}");
        let ms = |field: &str| run[field].as_f64().unwrap_or_else(|| panic!("{field} missing in {run}"));
        assert!(ms("p50_ms") > 0.0, "{run}");
        assert!(
            ms("p50_ms") <= ms("p99_ms") && ms("p99_ms") <= ms("max_ms"),
            "percentiles out of order: {run}"
        );
        let achieved = ms("achieved_rps");
        let target = ms("target_rps");
        assert!(
            achieved > target * min_achieved && achieved <= target * 1.01,
            "achieved {achieved} of {target}: {run}"
        );
    }

    #[test]
    fn a_short_baseline_run_against_an_in_process_health_server() {
        let server = TestServer::start();
        let dir = tempfile::tempdir().expect("a temp dir");
        let json = dir.path().join("runs.json");
        let json_arg = json.display().to_string();
        let bench = args(&[
            "--baseline",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--warmup",
            "0.2s",
            "--connections",
            "2",
            "--json",
            &json_arg,
        ]);
        let code = run(bench, server.url(), &Default::default()).expect("the bench runs");
        assert_eq!(code, ExitCode::SUCCESS);
        let runs = read_runs(&json);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["kind"], "baseline");
        assert_clean_run(&runs[0], 200.0, 0.5);
    }

    #[test]
    fn a_lookup_sweep_with_baseline_comparison_and_chart() {
        let server = TestServer::start();
        let dir = tempfile::tempdir().expect("a temp dir");
        let json = dir.path().join("runs.json");
        let chart = dir.path().join("chart.svg");
        let (json_arg, chart_arg) = (json.display().to_string(), chart.display().to_string());
        let bench = args(&[
            "--service",
            "ranker",
            "--key",
            "item_id=sku-{0000..0400}",
            "--rows",
            "3",
            "--distribution",
            "zipf:1.1",
            "--sweep",
            "100,200",
            "--duration",
            "0.5s",
            "--warmup",
            "0.1s",
            "--compare-baseline",
            "--json",
            &json_arg,
            "--chart",
            &chart_arg,
        ]);
        run(bench, server.url(), &Default::default()).expect("the bench runs");
        let runs = read_runs(&json);
        let kinds: Vec<&str> = runs.iter().filter_map(|r| r["kind"].as_str()).collect();
        assert_eq!(kinds, ["lookup", "baseline", "lookup", "baseline"]);
        for run in &runs {
            assert_clean_run(run, run["target_rps"].as_f64().unwrap_or(0.0) * 0.5, 0.3);
        }
        assert_eq!(runs[0]["rows_per_request"], 3);
        assert!(runs[0]["p99_ratio_to_baseline"].as_f64().is_some(), "{}", runs[0]);
        let svg = std::fs::read_to_string(&chart).expect("the chart was written");
        assert!(svg.contains("service ranker, 3 rows per request") && svg.contains("baseline p99"));
    }

    /// The point of the open loop: a 300 ms stall delays every request due
    /// during it, and each is timed from when it was due, so about 60 of
    /// 200 requests are slow. A closed-loop client would have waited and
    /// recorded one slow request per connection.
    #[test]
    fn a_server_stall_shows_in_the_tail() {
        // Lookup 0 is the first-lookup check; 140 is in the recorded window.
        let server = TestServer::with(FakeServing { stall_at: Some(140), ..FakeServing::default() });
        let dir = tempfile::tempdir().expect("a temp dir");
        let json = dir.path().join("runs.json");
        let json_arg = json.display().to_string();
        let bench = args(&[
            "--service",
            "ranker",
            "--key",
            "item_id=sku-{0000..0400}",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--warmup",
            "0.2s",
            "--json",
            &json_arg,
        ]);
        run(bench, server.url(), &Default::default()).expect("the bench runs");
        let runs = read_runs(&json);
        let ms =
            |field: &str| runs[0][field].as_f64().unwrap_or_else(|| panic!("{field} missing in {}", runs[0]));
        assert_eq!(runs[0]["errors"], 0, "{}", runs[0]);
        assert!(ms("max_ms") >= STALL.as_millis() as f64 * 0.9, "the stalled request: {}", runs[0]);
        assert!(ms("p90_ms") >= 100.0, "requests due during the stall are slow too: {}", runs[0]);
        assert!(ms("p50_ms") < 100.0, "most requests are not: {}", runs[0]);
    }

    #[test]
    fn setup_failures_are_errors_that_say_what_is_wrong() {
        let server = TestServer::start();
        let failure = |list: &[&str]| match run(args(list), server.url(), &Default::default()) {
            Ok(code) => panic!("{list:?} should fail, exited {code:?}"),
            Err(e) => format!("{e:#}"),
        };
        let quick = ["--rate", "10", "--duration", "0.1s", "--warmup", "0s"];
        let with = |extra: &[&'static str]| -> Vec<&str> { quick.iter().chain(extra).copied().collect() };
        let message = failure(&with(&["--service", "ranker"]));
        assert!(message.contains("item_id"), "a string key needs a spec: {message}");
        let message = failure(&with(&["--service", "nope"]));
        assert!(message.contains("nope") && message.contains("ranker"), "{message}");
        let message =
            failure(&with(&["--service", "ranker", "--key", "item_id=a{0..5}", "--key", "shop=1..3"]));
        assert!(message.contains("shop"), "{message}");
        let message = failure(&with(&["--service", "ranker", "--key", "user_id=u{0..5}"]));
        assert!(message.contains("user_id"), "{message}");
        let message = failure(&with(&["--features", "stats.views", "--key", "user_id=1..5"]));
        assert!(message.contains("INVALID_ARGUMENT"), "the first lookup fails clearly: {message}");

        // Nothing listens on a port that was just released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding a loopback port");
        let message =
            match run(args(&["--baseline", "--rate", "10"]), format!("http://{closed}"), &Default::default())
            {
                Ok(code) => panic!("a closed port should fail, exited {code:?}"),
                Err(e) => format!("{e:#}"),
            };
        assert!(message.contains("connecting"), "{message}");
    }

    #[test]
    fn options_are_checked_before_connecting() {
        assert!(TestCli::try_parse_from(["bench", "--service", "s"]).is_err(), "a rate is required");
        assert!(TestCli::try_parse_from(["bench", "--rate", "5"]).is_err(), "a target is required");
        assert!(TestCli::try_parse_from(["bench", "--baseline", "--rate", "5", "--key", "x"]).is_err());
        assert!(TestCli::try_parse_from(["bench", "--baseline", "--rate", "5", "--distribution", "zipf:0"])
            .is_err());
        let unreachable = "http://127.0.0.1:9".to_string();
        for bad in [
            &["--baseline", "--rate", "0"][..],
            &["--baseline", "--rate=-5"],
            &["--baseline", "--sweep", "100,0"],
            &["--baseline", "--rate", "5", "--connections", "0"],
            &["--baseline", "--rate", "5", "--duration", "0s"],
            &["--baseline", "--rate", "5", "--duration", "7200s"],
            &["--baseline", "--rate", "5", "--warmup", "61m"],
            &["--service", "s", "--rate", "5", "--rows", "0"],
        ] {
            assert!(
                run(args(bad), unreachable.clone(), &Default::default()).is_err(),
                "{bad:?} should be refused"
            );
        }
        let expanded =
            args(&["--baseline", "--rate", "5", "--key", "item_id=sku-0", "item_id=sku-1", "--seed", "3"]);
        assert_eq!(expanded.keys.len(), 2, "an unquoted template, expanded by the shell, still parses");
        assert_eq!(expanded.seed, 3);
        let parsed = args(&["--service", "s", "--sweep", "1000,2000,5000", "--key", "user_id=1..9"]);
        assert_eq!(parsed.sweep, [1000.0, 2000.0, 5000.0]);
        assert_eq!(parsed.duration, Duration::from_secs(10));
        assert_eq!(parsed.warmup, Duration::from_secs(2));
        assert_eq!(parsed.connections, 4);
        assert_eq!(parsed.distribution, Distribution::Uniform);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "10h", "-1s", "1e400s", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }
}
