//! Overload: the server sheds what it cannot serve in time, quickly and with
//! RESOURCE_EXHAUSTED, so the requests it admits keep their latency and its
//! memory stays bounded. Driven by the real load generator (`fstore bench`).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
use fstore::proto;
use tonic::Code;

use crate::util::*;

const KEYS: i64 = 5_000;
const FEATURES: usize = 20;
const HEAVY_KEYS: i64 = 40;

fn defs() -> String {
    let features: String = (0..FEATURES).map(|i| format!("    f{i}: int64 = v + {i}\n")).collect();
    format!(
        r#"
entity user {{
  key user_id: int64
}}

source users {{
  type = parquet
  path = "data/users.parquet"
  timestamp = ts
}}

view stats {{
  entity = user
  source = users
  features {{
{features}  }}
}}

service ranker {{
  features = [stats.*]
}}

# Costly to serve, cheap to ask for: each row merges its 1,380 tiles one by
# one. (No coarse tile size, a minute, an hour or a day, is a multiple of 7 s,
# so none are kept: the window reads fine tiles only.) The load generator on
# the same two cores stays the lesser load.
source events {{
  type = parquet
  path = "data/events.parquet"
  timestamp = ts
}}

view activity {{
  entity = user
  source = events
  resolution = 7s
  features {{
    n_1d: int64 = count() over 86394s
    sum_1d: int64 = sum(v) over 86394s
  }}
}}

service heavy {{
  features = [activity.*]
}}
"#
    )
}

fn start(env: &[(&str, &str)]) -> Server {
    let mut builder = ServerBuilder::new(&[("defs.fdl", &defs())]);
    let dir = builder.root().join("defs/data");
    std::fs::create_dir_all(&dir).unwrap();
    let ids: Vec<i64> = (0..KEYS).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(Int64Array::from(ids.clone()))),
        ("v", Arc::new(Int64Array::from(ids))),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![1_000_000; KEYS as usize]).with_timezone("UTC")),
        ),
    ];
    write_parquet(&dir.join("users.parquet"), columns);
    // HEAVY_KEYS users, one event a minute for the last 23 hours.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    let minutes = 23 * 60;
    let (mut users, mut values, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for user in 0..HEAVY_KEYS {
        for minute in 0..minutes {
            users.push(user);
            values.push(minute);
            times.push(now - minute * 60_000_000);
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(Int64Array::from(users))),
        ("v", Arc::new(Int64Array::from(values))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC"))),
    ];
    write_parquet(&dir.join("events.parquet"), columns);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start()
}

/// One `fstore bench` run of the `heavy` service; its JSON report.
fn bench(server: &Server, rate: f64, duration: &str, rows: usize) -> serde_json::Value {
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = server.cli(&[
        "bench",
        "--service",
        "heavy",
        "--rows",
        &rows.to_string(),
        "--key",
        &format!("user_id=0..{HEAVY_KEYS}"),
        "--rate",
        &format!("{rate:.0}"),
        "--duration",
        duration,
        "--warmup",
        "500ms",
        "--connections",
        "4",
        "--json",
        json.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    let runs: serde_json::Value = serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    runs[0].clone()
}

fn goodput(run: &serde_json::Value) -> f64 {
    run["ok"].as_f64().unwrap() / run["measured_s"].as_f64().unwrap()
}

fn errors_other_than(run: &serde_json::Value, allowed: &str) -> Vec<String> {
    run["errors_by_kind"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, n)| k.as_str() != allowed && n.as_u64() != Some(0))
        .map(|(k, n)| format!("{k}: {n}"))
        .collect()
}

fn rss_kib(server: &Server) -> u64 {
    let pid = server.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A counter of `/metrics` whose line starts with `series` (0 when absent).
fn counter(server: &Server, series: &str) -> u64 {
    server
        .metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

/// Refusals so far: (at the door, at the lookup's turn).
fn refusals(server: &Server) -> (u64, u64) {
    (
        counter(server, "fstore_requests_refused_total{reason=\"queue\"}"),
        counter(
            server,
            "fstore_requests_total{rpc=\"GetOnlineFeatures\",service=\"heavy\",code=\"RESOURCE_EXHAUSTED\"}",
        ),
    )
}

/// Errors other than shedding are never allowed; shedding at a rate well
/// under capacity only as the odd burst a busy machine makes (at most 5 %:
/// a lookup slowed by a neighbour keeps the next ones waiting).
fn at_most_a_burst_shed(run: &serde_json::Value, what: &str) {
    assert!(errors_other_than(run, "RESOURCE_EXHAUSTED").is_empty(), "{what}: {run}");
    let shed = run["errors_by_kind"]["RESOURCE_EXHAUSTED"].as_u64().unwrap_or(0) as f64;
    assert!(shed <= 0.05 * run["requests"].as_f64().unwrap(), "{what}: shed {shed}: {run}");
}

// scripts/test.sh runs this test alone, after the rest of the suite: what it
// measures is the server's capacity, which parallel tests would take.
#[test]
fn at_twice_the_sustainable_rate_admitted_requests_keep_their_latency() {
    const QUEUE_MS: u64 = 25;
    const ROWS: usize = 40;
    let server = start(&[("FSTORE_SERVER__MAX_QUEUE_MS", &QUEUE_MS.to_string())]);

    // Capacity: what the server completes when asked for more than it can
    // do (it sheds the rest), on this machine, in this build, now. Doubling
    // from a low rate, so as not to bury a slow debug build in refusals.
    let mut rate = 25.0;
    let capacity = loop {
        let flood = bench(&server, rate, "2s", ROWS);
        let shed = flood["errors_by_kind"]["RESOURCE_EXHAUSTED"].as_u64().unwrap_or(0);
        eprintln!("calibrating at {rate:.0} req/s: goodput {:.0}, shed {shed}", goodput(&flood));
        // A few refusals come from bursts below capacity; a tenth shed
        // means the rate is past it.
        if shed as f64 > 0.1 * flood["requests"].as_f64().unwrap() || rate >= 1_000.0 {
            break goodput(&flood);
        }
        rate *= 2.0;
    };
    std::thread::sleep(Duration::from_secs(1));
    // Sustainable: well below capacity, so that a busier machine than at
    // calibration still serves it. Overload: twice capacity.
    let sustainable = 0.5 * capacity;
    let calm = bench(&server, sustainable, "5s", ROWS);
    let calm_p99 = calm["p99_ms"].as_f64().unwrap();
    at_most_a_burst_shed(&calm, "at the sustainable rate");

    let rss_before = rss_kib(&server);
    let (door_before, turn_before) = refusals(&server);
    let storm = bench(&server, 2.0 * capacity, "6s", ROWS);
    let (door_after, turn_after) = refusals(&server);
    let rss_after = rss_kib(&server);
    let (at_door, at_turn) = (door_after - door_before, turn_after - turn_before);
    let shed = storm["errors_by_kind"]["RESOURCE_EXHAUSTED"].as_u64().unwrap_or(0);
    let storm_p99 = storm["p99_ms"].as_f64().unwrap();
    let refused_p99 = storm["refused_p99_ms"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "overload: capacity {capacity:.0} req/s; at {sustainable:.0} req/s p99 {calm_p99:.1} ms; at {:.0} req/s \
         {shed} of {} shed ({at_door} at the door, {at_turn} at their turn, refused in p50 {} ms, p99 \
         {refused_p99} ms, send lag p99 {} ms), admitted p99 {storm_p99:.1} ms, goodput {:.0} req/s; \
         RSS {} -> {} MiB",
        2.0 * capacity,
        storm["requests"],
        storm["refused_p50_ms"],
        storm["send_lag_p99_ms"],
        goodput(&storm),
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(shed > 0, "nothing was shed at twice capacity: {storm}");
    assert!(errors_other_than(&storm, "RESOURCE_EXHAUSTED").is_empty(), "only shedding: {storm}");
    let message = storm["error_messages"]["RESOURCE_EXHAUSTED"].as_str().unwrap();
    assert!(message.contains("server.max_queue_ms"), "{message}");
    // The excess is told at once, at the door, where the client can still
    // retry elsewhere: not after a queue turn.
    assert!(
        at_door >= 4 * at_turn && at_door > 0,
        "at least four in five refusals at the door: {at_door} at the door, {at_turn} at their turn"
    );
    // Refused at once: in a fraction of the queueing limit typically, and
    // nine in ten without waiting a turn. (Timed from the request's send. The 5 ms
    // p99 target is measured in release by BENCHMARKS.md's overload run; a
    // debug build sharing two cores with its load generator shows a tail of
    // scheduling delays here, which a test must not depend on.)
    let refused_p50 = storm["refused_p50_ms"].as_f64().unwrap_or(f64::NAN);
    let refused_p90 = storm["refused_p90_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(refused_p50 < QUEUE_MS as f64 / 5.0, "refusals answered in p50 {refused_p50} ms: {storm}");
    assert!(refused_p90 < QUEUE_MS as f64, "refusals answered in p90 {refused_p90} ms: {storm}");
    // Without shedding the queue grows by capacity each second and p99
    // climbs towards the run's length; with it, admitted requests wait at
    // most the queueing limit on top of their usual latency.
    let bound = calm_p99 * 2.0 + QUEUE_MS as f64 + 15.0;
    assert!(storm_p99 <= bound, "admitted p99 {storm_p99:.1} ms > {bound:.1} ms");
    assert!(goodput(&storm) >= 0.7 * capacity, "shedding must be cheap: goodput {:.0}", goodput(&storm));
    assert!(rss_after < rss_before + 64 * 1024, "memory grew from {rss_before} to {rss_after} KiB");

    // Afterwards, once the storm's queue has drained, it serves as before.
    std::thread::sleep(Duration::from_secs(1));
    let after = bench(&server, sustainable, "3s", ROWS);
    at_most_a_burst_shed(&after, "after the storm");
}

#[test]
fn limits_on_in_flight_rows_and_bytes_refuse_with_the_setting_named() {
    let server = start(&[
        ("FSTORE_SERVER__MAX_IN_FLIGHT", "2"),
        ("FSTORE_SERVER__MAX_QUEUE_MS", "0"),
        ("FSTORE_SERVER__MAX_REQUEST_BYTES", "65536"),
        ("FSTORE_SERVICES__RANKER", "{ max_rows_per_request = 500 }"),
    ]);
    let rt = rt();
    rt.block_on(async {
        let mut client = server.serving().await;
        let ids = |n: i64| (0..n).map(|i| int(i % KEYS)).collect::<Vec<_>>();

        // (what, request, expected code, text of the message)
        let cases: Vec<(&str, proto::GetOnlineFeaturesRequest, Code, &str)> = vec![
            (
                "rows over the service's limit",
                request_service("ranker", vec![("user_id", ids(501))]),
                Code::InvalidArgument,
                "the limit is 500 (services.ranker.max_rows_per_request)",
            ),
            (
                "rows by refs over the server's limit",
                request_refs(&["stats.f0"], vec![("user_id", ids(10_001))]),
                Code::InvalidArgument,
                "(server.max_rows_per_request)",
            ),
            (
                "a message over max_request_bytes",
                request_refs(&["stats.f0"], vec![("user_id", vec![string(&"x".repeat(70_000))])]),
                Code::OutOfRange,
                "the limit is: 65536 bytes",
            ),
        ];
        for (what, request, code, text) in cases {
            let status = client.get_online_features(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(status.message().contains(text), "{what}: `{}` lacks `{text}`", status.message());
        }
        assert!(client
            .get_online_features(request_service("ranker", vec![("user_id", ids(500))]))
            .await
            .is_ok());

        // 64 at once against a limit of 2 in flight: the excess is refused at
        // the door, at once; the rest are served.
        let requests = (0..64).map(|_| request_service("ranker", vec![("user_id", ids(500))])).collect();
        let (ok, refused) = served_and_refused(&client, requests, "server.max_in_flight").await;
        eprintln!("in-flight limit 2: {ok} served, {refused} refused of 64");
        assert!(ok >= 2 && refused > 0, "{ok} served, {refused} refused");
    });
    let metrics = server.metrics_text();
    assert!(metrics.contains("fstore_requests_refused_total{reason=\"in_flight\"}"), "{metrics}");
    assert!(metrics.contains("fstore_requests_in_flight 0"), "every ticket returned");
}

#[test]
fn a_busy_service_is_bounded_on_its_own_and_deadlines_are_honoured() {
    let server =
        start(&[("FSTORE_SERVER__MAX_QUEUE_MS", "0"), ("FSTORE_SERVICES__HEAVY", "{ max_in_flight = 3 }")]);
    let heavy = || {
        let keys = (0..40).map(|i| int(i % HEAVY_KEYS)).collect();
        request_service("heavy", vec![("user_id", keys)])
    };
    let rt = rt();
    rt.block_on(async {
        let client = server.serving().await;
        // 8 slow lookups of one service at once, and light lookups of another.
        let slow = tokio::spawn({
            let client = client.clone();
            let requests = (0..8).map(|_| heavy()).collect();
            async move { served_and_refused(&client, requests, "services.heavy.max_in_flight").await }
        });
        let mut light = Vec::new();
        for i in 0..5 {
            let mut c = client.clone();
            let request = request_service("ranker", vec![("user_id", vec![int(i)])]);
            light.push(tokio::spawn(async move { c.get_online_features(request).await }));
        }
        let (ok, refused) = slow.await.unwrap();
        eprintln!("services.heavy.max_in_flight = 3: {ok} served, {refused} refused of 8");
        assert!(ok >= 3 && refused >= 1, "{ok} served, {refused} refused");
        for call in light {
            assert!(call.await.unwrap().is_ok(), "another service is not limited by heavy's bound");
        }

        // With both lookup slots busy, a lookup whose deadline passes while it
        // waits is not served late.
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut c = client.clone();
            let request = heavy();
            busy.push(tokio::spawn(async move { c.get_online_features(request).await }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut request = tonic::Request::new(heavy());
        request.set_timeout(Duration::from_millis(5));
        let status =
            client.clone().get_online_features(request).await.expect_err("served after its deadline");
        assert!(matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled), "{status:?}");
        for call in busy {
            assert!(call.await.unwrap().is_ok());
        }
    });
}

type Client = proto::feature_serving_client::FeatureServingClient<tonic::transport::Channel>;

/// Send `requests` all at once; count those served and those refused with
/// RESOURCE_EXHAUSTED naming `setting`. Any other outcome fails the test.
async fn served_and_refused(
    client: &Client,
    requests: Vec<proto::GetOnlineFeaturesRequest>,
    setting: &str,
) -> (usize, usize) {
    let calls: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let mut c = client.clone();
            tokio::spawn(async move { c.get_online_features(request).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if s.code() == Code::ResourceExhausted => {
                assert!(s.message().contains(setting), "{}", s.message());
                refused += 1;
            }
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    (ok, refused)
}
