//! Crash safety at random moments: the real server is killed with SIGKILL
//! while a load runs (or just after it returned), restarted, and every key is
//! read back. An UPSERT keeps every batch it wrote and never tears a row; a
//! REPLACE serves the old snapshot or the new one, each whole. The moments
//! come from a seeded generator: each test prints its seed, and
//! `FSTORE_TEST_CRASH_SEED=<seed>` replays it. Two regression tests kill
//! at one chosen moment each: a REPLACE of an aggregating view just after
//! its switch, and a first UPSERT into an empty view before a REPLACE.
//! (Kills during stream ingestion are in `stream.rs`.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use fstore::proto::{self, value::Kind, FieldStatus};
use tokio::runtime::Runtime;

use crate::replace;
use crate::util::*;

/// Rows per lookup request: the server's default `max_rows_per_request`.
const CHUNK: usize = 10_000;

/// splitmix64: enough randomness to choose moments, and replayable.
struct Rng(u64);

impl Rng {
    fn for_test(test: &str) -> Rng {
        let seed = match std::env::var("FSTORE_TEST_CRASH_SEED") {
            Ok(s) => s.parse().expect("FSTORE_TEST_CRASH_SEED is a u64"),
            Err(_) => std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64,
        };
        eprintln!("{test}: seed {seed} (replay with FSTORE_TEST_CRASH_SEED={seed})");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in a non-empty `range`.
    fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.in_range(0..i as u64 + 1) as usize);
        }
    }
}

/// When to kill the server, relative to a load started through the CLI.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This long after starting the CLI: the load may not have begun.
    Delay(Duration),
    /// Once GetStatus shows at least this many rows read (the server counts
    /// a batch's rows once it has written them), or the load returned.
    RowsRead(u64),
    /// This long after the CLI returned: the old snapshot's deletion and
    /// the background compaction may still be running.
    AfterDone(Duration),
    /// Once GetStatus shows the view's new `last_load` (the switch is
    /// durable), or the load returned.
    Committed,
}

/// `k` moments in random order: one of each kind, then any kind. Counted
/// in rows, a moment falls early or late in the load, or once every row is
/// written (the load is committing, or has just committed).
fn moments(rng: &mut Rng, k: usize, rows: u64) -> Vec<Moment> {
    let mut out = Vec::new();
    for i in 0..k as u64 {
        let kind = if i < 5 { i } else { rng.in_range(0..5) };
        out.push(match kind {
            0 => Moment::Delay(Duration::from_millis(rng.in_range(0..100))),
            1 => Moment::RowsRead(rng.in_range(1..rows / 3)),
            2 => Moment::RowsRead(rng.in_range(rows / 3..rows)),
            3 => Moment::RowsRead(rows),
            _ => Moment::AfterDone(Duration::from_millis(rng.in_range(0..100))),
        });
    }
    rng.shuffle(&mut out);
    out
}

fn status(rt: &Runtime, server: &Server) -> serde_json::Value {
    let json = rt.block_on(async {
        server.admin().await.get_status(proto::GetStatusRequest {}).await.unwrap().into_inner().json
    });
    serde_json::from_str(&json).unwrap()
}

fn source_of<'a>(status: &'a serde_json::Value, source: &str) -> &'a serde_json::Value {
    status["sources"].as_array().unwrap().iter().find(|s| s["name"] == source).unwrap()
}

fn view_of<'a>(status: &'a serde_json::Value, view: &str) -> &'a serde_json::Value {
    status["views"].as_array().unwrap().iter().find(|v| v["name"] == view).unwrap()
}

/// When `view`'s last load was committed (its synced metadata), if ever.
fn committed_at(status: &serde_json::Value, view: &str) -> Option<u64> {
    view_of(status, view)["last_load"]["finished_at_micros"].as_u64()
}

/// What the test knew when it killed the server.
#[derive(Debug)]
struct Kill {
    moment: Moment,
    /// Rows read, so written, by the last GetStatus before the kill; `None`
    /// when it showed no load in progress (not started, or finished).
    rows_read: Option<u64>,
    /// The load was committed before the kill: the CLI had returned success,
    /// or GetStatus showed the view's new `last_load`.
    committed: bool,
    /// How long the CLI had been running.
    after: Duration,
}

impl Kill {
    fn describe(&self) -> String {
        format!(
            "{:?}: killed {} ms in, {}{}",
            self.moment,
            self.after.as_millis(),
            self.rows_read.map_or("no load in progress".into(), |n| format!("{n} rows read")),
            if self.committed { ", committed" } else { "" }
        )
    }
}

/// Run `fstore ingest --source <source> <args>` against `server` and SIGKILL
/// the server at `moment`; `before_kill(returned)` runs just before the kill,
/// told whether the load had returned. `view` is one of the source's views,
/// for its `last_load`.
fn load_and_kill(
    rt: &Runtime,
    server: &mut Server,
    source: &str,
    view: &str,
    args: &[&str],
    moment: Moment,
    before_kill: impl FnOnce(bool),
) -> Kill {
    let committed_before = committed_at(&status(rt, server), view);
    let cli_log = server.log.with_file_name("ingest.log");
    let started = Instant::now();
    let mut cli = Command::new(bin())
        .args(["ingest", "--source", source])
        .args(args)
        .arg("--addr")
        .arg(server.addr())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&cli_log).unwrap())
        .spawn()
        .expect("starting fstore ingest");
    let cli_failed = |status: std::process::ExitStatus| {
        format!("fstore ingest failed ({status}): {}", std::fs::read_to_string(&cli_log).unwrap_or_default())
    };
    let deadline = started + Duration::from_secs(60);
    match moment {
        Moment::Delay(d) => std::thread::sleep(d),
        Moment::RowsRead(n) => {
            while cli.try_wait().unwrap().is_none() {
                let read = source_of(&status(rt, server), source)["ingest_in_progress"]["rows_read"]
                    .as_u64()
                    .unwrap_or(0);
                if read >= n {
                    break;
                }
                assert!(Instant::now() < deadline, "the load neither progressed nor finished");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Moment::AfterDone(d) => {
            let status = cli.wait().unwrap();
            assert!(status.success(), "{}", cli_failed(status));
            std::thread::sleep(d);
        }
        Moment::Committed => {
            while cli.try_wait().unwrap().is_none()
                && committed_at(&status(rt, server), view) == committed_before
            {
                assert!(Instant::now() < deadline, "the load neither committed nor finished");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let returned = cli.try_wait().unwrap();
    if let Some(status) = returned {
        assert!(status.success(), "{}", cli_failed(status));
    }
    before_kill(returned.is_some());
    let last = status(rt, server);
    let rows_read = source_of(&last, source)["ingest_in_progress"]["rows_read"].as_u64();
    let after = started.elapsed();
    server.kill();
    let committed = returned.is_some() || committed_at(&last, view) != committed_before;
    // The CLI fails once the server is gone.
    while cli.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = cli.kill();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Kill { moment, rows_read, committed, after }
}

/// After a restart: no load in progress, `views` on their expected generations.
fn assert_idle(rt: &Runtime, server: &Server, source: &str, views: &[(&str, u64)]) {
    let status = status(rt, server);
    let progress = &source_of(&status, source)["ingest_in_progress"];
    assert!(progress.is_null(), "a load is still in progress after a restart: {progress}");
    for (view, generation) in views {
        assert_eq!(view_of(&status, view)["generation"], *generation, "generation of view {view}");
    }
}

/// A lookup, retried with backoff while the server sheds load (a debug
/// build on a small machine running other tests can be slow to take it).
async fn get_features(
    client: &mut proto::feature_serving_client::FeatureServingClient<tonic::transport::Channel>,
    request: proto::GetOnlineFeaturesRequest,
) -> Result<proto::GetOnlineFeaturesResponse, tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut backoff = Duration::from_millis(5);
    loop {
        match client.get_online_features(request.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == tonic::Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            Err(s) => return Err(s),
        }
    }
}

/// `request(chunk)` for every chunk of at most [`CHUNK`] keys, in order.
fn lookup(
    rt: &Runtime,
    server: &Server,
    keys: &[i64],
    request: impl Fn(&[i64]) -> proto::GetOnlineFeaturesRequest,
) -> Vec<proto::GetOnlineFeaturesResponse> {
    rt.block_on(async {
        let mut client = server.serving().await;
        let mut out = Vec::new();
        for chunk in keys.chunks(CHUNK) {
            out.push(get_features(&mut client, request(chunk)).await.expect("a lookup"));
        }
        out
    })
}

// ---- UPSERT ----

const UPSERT_DEFS: &str = r#"
entity thing {
  key id: int64
}

source versions {
  type = parquet
  path = "data/versions/*.parquet"
  timestamp = ts
}

view left {
  entity = thing
  source = versions
  features {
    tag: string = tag
    x: int64 = x
    y: float64 = y
  }
}

view right {
  entity = thing
  source = versions
  features {
    w: int64 = w
    label: string = tag
  }
}

service both {
  features = [left.*, right.*]
}
"#;

/// Keys are 0..KEYS; every value of a row is derived from (key, version).
const KEYS: usize = 40_000;
const UPSERT_BATCH_ROWS: usize = 250;
const UPSERT_KILLS: usize = 6;
const TS_BASE: i64 = 1_700_000_000_000_000;
const SCALE: i64 = 10_000_000;

/// Version `v` of every key, rows in the order of `keys`; newer versions
/// have newer event times, so each replaces the one before.
fn write_version(path: &Path, keys: &[i64], v: i64) {
    let n = keys.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(keys.to_vec()))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(vec![TS_BASE + v * 1_000_000; n]))),
        ("tag", Arc::new(StringArray::from_iter_values(keys.iter().map(|k| format!("v{v}/{k}"))))),
        ("x", Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| v * SCALE + k)))),
        ("y", Arc::new(Float64Array::from(vec![v as f64 + 0.5; n]))),
        ("w", Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| -(v * SCALE + k))))),
    ];
    write_parquet(path, columns);
}

/// The version of row `i` (key `key`) in views `left` and `right`, each
/// read from every value and event time of the view independently. Panics
/// if a value is missing or the values of one view disagree.
fn versions_of_row(r: &proto::GetOnlineFeaturesResponse, i: usize, key: i64) -> [i64; 2] {
    let mut views: [Vec<(String, i64)>; 2] = Default::default();
    for c in &r.features {
        assert_eq!(
            c.statuses[i],
            FieldStatus::Present as i32,
            "key {key}: {} has status {}: the key is missing",
            c.name,
            c.statuses[i]
        );
        let version = match (c.name.as_str(), &c.values[i].kind) {
            ("left.tag" | "right.label", Some(Kind::StringValue(s))) => {
                match s.strip_prefix('v').and_then(|s| s.split_once('/')) {
                    Some((v, k)) if k == key.to_string() => v.parse().unwrap_or(-1),
                    _ => -1,
                }
            }
            ("left.x", Some(Kind::Int64Value(x))) if x % SCALE == key => x / SCALE,
            ("left.y", Some(Kind::Float64Value(y))) => (y - 0.5) as i64,
            ("right.w", Some(Kind::Int64Value(w))) if -w % SCALE == key => -w / SCALE,
            (name, value) => panic!("key {key}: {name} = {value:?} belongs to another key"),
        };
        let view = usize::from(c.name.starts_with("right."));
        views[view].push((c.name.clone(), version));
        let event_time = (c.event_timestamps_micros[i] - TS_BASE) / 1_000_000;
        views[view].push((format!("{} event time", c.name), event_time));
    }
    views.map(|seen| {
        let first = seen[0].1;
        assert!(seen.iter().all(|(_, v)| *v == first), "key {key}: a torn row: {seen:?}");
        first
    })
}

/// Every key's version, after checking that both views agree on it.
fn read_versions(rt: &Runtime, server: &Server) -> Vec<i64> {
    let keys: Vec<i64> = (0..KEYS as i64).collect();
    let responses = lookup(rt, server, &keys, |chunk| {
        request_service("both", vec![("id", chunk.iter().map(|k| int(*k)).collect())])
    });
    let mut out = Vec::with_capacity(KEYS);
    for (chunk, r) in keys.chunks(CHUNK).zip(&responses) {
        for (i, key) in chunk.iter().enumerate() {
            let [left, right] = versions_of_row(r, i, *key);
            assert_eq!(left, right, "key {key}: a row torn across views (left v{left}, right v{right})");
            out.push(left);
        }
    }
    out
}

/// Reads a sample of keys in a loop while a load runs, checking that no
/// view's row is torn or goes back to an older version, and, once the load
/// has returned, that every key reads the new version (no stale cached row).
struct Reader {
    /// 0: read on; 1: stop (the server may be killed under a read); 2: stop
    /// after a read that must show `newest` only.
    stop: Arc<AtomicU8>,
    thread: std::thread::JoinHandle<u64>,
}

impl Reader {
    fn start(addr: String, keys: Vec<i64>, floor: Vec<i64>, newest: i64) -> Reader {
        let stop = Arc::new(AtomicU8::new(0));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                let channel = tonic::transport::Channel::from_shared(addr).unwrap().connect().await.unwrap();
                let mut client = proto::feature_serving_client::FeatureServingClient::new(channel);
                let mut seen: Vec<[i64; 2]> = floor.iter().map(|v| [*v, *v]).collect();
                let request = request_service("both", vec![("id", keys.iter().map(|k| int(*k)).collect())]);
                let mut requests = 0;
                loop {
                    let stop = stopping.load(Ordering::SeqCst);
                    let r = match get_features(&mut client, request.clone()).await {
                        Ok(r) => r,
                        Err(_) if stopping.load(Ordering::SeqCst) == 1 => return requests,
                        Err(s) => panic!("a reader's lookup failed: {s}"),
                    };
                    requests += 1;
                    for (i, key) in keys.iter().enumerate() {
                        let now = versions_of_row(&r, i, *key);
                        for view in 0..2 {
                            assert!(
                                (seen[i][view]..=newest).contains(&now[view]),
                                "key {key}: a reader saw v{} after v{} during the load of v{newest}",
                                now[view],
                                seen[i][view]
                            );
                            assert!(
                                stop != 2 || now[view] == newest,
                                "key {key}: a reader saw v{} after the load of v{newest} returned",
                                now[view]
                            );
                        }
                        seen[i] = now;
                    }
                    if stop != 0 {
                        return requests;
                    }
                }
            })
        });
        Reader { stop, thread }
    }

    /// Ask to stop. If the load has returned, wait for one last read, which
    /// must show its version for every key; otherwise return at once, so the
    /// server can be killed without waiting for the read in flight.
    fn signal(&self, load_returned: bool) {
        self.stop.store(if load_returned { 2 } else { 1 }, Ordering::SeqCst);
        if load_returned {
            while !self.thread.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The number of reads, once the reader has stopped.
    fn join(self) -> u64 {
        self.thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

#[test]
fn upserts_killed_at_random_moments_lose_nothing_committed_and_never_tear_a_row() {
    let started = Instant::now();
    let mut rng = Rng::for_test("upserts_killed_at_random_moments");
    let builder = ServerBuilder::new(&[("defs.fdl", UPSERT_DEFS)])
        .env("FSTORE_INGEST__BATCH_ROWS", &UPSERT_BATCH_ROWS.to_string());
    let dir = builder.root().join("incoming");
    let keys: Vec<i64> = (0..KEYS as i64).collect();
    write_version(&dir.join("v1.parquet"), &keys, 1);
    let mut server = builder.start();
    let rt = rt();
    let out = server.cli(&["ingest", "--source", "versions", dir.join("v1.parquet").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut versions = read_versions(&rt, &server);
    assert!(versions.iter().all(|v| *v == 1));
    let (mut rows_checked, mut committed_kills, mut reader_requests) = (KEYS, 0, 0);
    // Every 7th key, read over and over while the loads run.
    let sample: Vec<i64> = keys.iter().copied().step_by(7).collect();

    for (round, moment) in moments(&mut rng, UPSERT_KILLS, KEYS as u64).into_iter().enumerate() {
        let v = round as i64 + 2;
        // Each version's file lists the keys in a different order.
        let mut order = keys.clone();
        rng.shuffle(&mut order);
        let file = dir.join(format!("v{v}.parquet"));
        write_version(&file, &order, v);
        let floor = sample.iter().map(|k| versions[*k as usize]).collect();
        let reader = Reader::start(server.addr(), sample.clone(), floor, v);
        let kill = load_and_kill(
            &rt,
            &mut server,
            "versions",
            "left",
            &[file.to_str().unwrap()],
            moment,
            |returned| reader.signal(returned),
        );
        reader_requests += reader.join();
        server.restart();
        assert_idle(&rt, &server, "versions", &[("left", 1), ("right", 1)]);

        // The keys holding version v are the file's first `written` rows, a
        // whole number of batches; every other key kept its version.
        let after = read_versions(&rt, &server);
        rows_checked += KEYS;
        let written = after.iter().filter(|a| **a == v).count();
        for (position, key) in order.iter().enumerate() {
            let expected = if position < written { v } else { versions[*key as usize] };
            assert_eq!(
                after[*key as usize], expected,
                "key {key} (row {position} of the v{v} file, {written} keys on v{v}) after a kill at {kill:?}"
            );
        }
        assert!(
            written as u64 >= kill.rows_read.unwrap_or(0),
            "rows the server had written were lost: {written} keys on v{v} after a kill at {kill:?}"
        );
        assert!(
            written.is_multiple_of(UPSERT_BATCH_ROWS) || written == KEYS,
            "a batch was written in part: {written} keys on v{v} after a kill at {kill:?}"
        );
        if kill.committed {
            committed_kills += 1;
            assert_eq!(written, KEYS, "a committed load was lost in part: kill at {kill:?}");
        }
        eprintln!("  round {round}: {}: {written} of {KEYS} keys on v{v}", kill.describe());
        versions = after;
    }

    // One load to completion, without a restart: cached rows go too.
    let last = UPSERT_KILLS as i64 + 2;
    let file = dir.join(format!("v{last}.parquet"));
    write_version(&file, &keys, last);
    let out = server.cli(&["ingest", "--source", "versions", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let versions = read_versions(&rt, &server);
    rows_checked += KEYS;
    for (key, version) in versions.iter().enumerate() {
        assert_eq!(*version, last, "key {key} after the last load");
    }
    eprintln!(
        "crash summary: upserts: {UPSERT_KILLS} kills ({committed_kills} after the load committed), \
         {KEYS} keys x 2 views checked after each, {rows_checked} rows checked, \
         {reader_requests} concurrent reads of {} keys, {:.1} s",
        sample.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---- REPLACE ----

const SNAPSHOT_ROWS: i64 = 60_000;
/// Snapshot j holds keys j*SHIFT .. j*SHIFT + SNAPSHOT_ROWS, tagged "S{j}".
const SHIFT: i64 = 25_000;
const REPLACE_BATCH_ROWS: usize = 200;
const REPLACE_KILLS: usize = 10;

fn snapshot_keys(j: i64) -> std::ops::Range<i64> {
    j * SHIFT..j * SHIFT + SNAPSHOT_ROWS
}

#[test]
fn replace_killed_at_random_moments_serves_the_old_or_the_new_snapshot() {
    let started = Instant::now();
    let mut rng = Rng::for_test("replace_killed_at_random_moments");
    let builder = ServerBuilder::new(&[("defs.fdl", replace::DEFS)])
        .env("FSTORE_INGEST__BATCH_ROWS", &REPLACE_BATCH_ROWS.to_string());
    let dir = builder.root().join("incoming");
    let file = |j: i64| dir.join(format!("s{j}.parquet"));
    for j in 0..=REPLACE_KILLS as i64 {
        replace::write_snapshot(&file(j), snapshot_keys(j), &format!("S{j}"));
    }
    let mut server = builder.start();
    let rt = rt();
    let out = server.cli(&["ingest", "--source", "snapshot", "--replace", file(0).to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut serving = 0;
    let mut generation = replace::view_status(&server)["generation"].as_u64().unwrap();
    let (mut looked_up, mut rows_checked, mut new_served, mut committed_kills) = (0, 0, 0, 0);

    for (round, moment) in moments(&mut rng, REPLACE_KILLS, SNAPSHOT_ROWS as u64).into_iter().enumerate() {
        let j = round as i64 + 1;
        let path = file(j);
        let kill = load_and_kill(
            &rt,
            &mut server,
            "snapshot",
            "things",
            &["--replace", path.to_str().unwrap()],
            moment,
            |_| {},
        );
        server.restart();

        // Every key of both snapshots, and a few on either side of each.
        let mut keys = BTreeSet::new();
        for range in [snapshot_keys(serving), snapshot_keys(j)] {
            keys.extend(range.start - 50..range.end + 50);
        }
        let keys: Vec<i64> = keys.into_iter().collect();
        let (mut tags, mut found) = (BTreeSet::new(), BTreeSet::new());
        for (chunk, r) in keys.chunks(CHUNK).zip(lookup(&rt, &server, &keys, replace::ids_request)) {
            let (t, f) = replace::snapshot_seen(&r, chunk);
            tags.extend(t);
            found.extend(f);
            let n = column(&r, "things.n");
            for (i, key) in chunk.iter().enumerate() {
                if n.statuses[i] == FieldStatus::Present as i32 {
                    assert_eq!(n.values[i].kind, Some(Kind::Int64Value(*key)), "things.n of key {key}");
                }
            }
        }
        looked_up += keys.len();
        rows_checked += found.len();
        let now = match tags.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [tag] if tag == format!("S{serving}") => serving,
            [tag] if tag == format!("S{j}") => j,
            _ => panic!(
                "after a kill at {kill:?}, the server serves tags {tags:?} ({} keys); \
                 it served S{serving} and was loading S{j}",
                found.len()
            ),
        };
        let expected: BTreeSet<i64> = snapshot_keys(now).collect();
        assert!(
            found == expected,
            "after a kill at {kill:?}, the server serves {} keys of snapshot S{now}, which has {}: \
             e.g. missing {:?}, extra {:?}",
            found.len(),
            expected.len(),
            expected.difference(&found).next(),
            found.difference(&expected).next()
        );
        if kill.committed {
            committed_kills += 1;
            assert_eq!(now, j, "the committed snapshot S{j} was lost by a kill at {kill:?}");
        }
        if now == j {
            new_served += 1;
            generation += 1;
        }
        assert_idle(&rt, &server, "snapshot", &[("things", generation)]);
        eprintln!("  round {round}: {}: serves S{now} (was loading S{j})", kill.describe());
        serving = now;
    }

    // Nothing of the interrupted or replaced loads is left on disk.
    let fingerprint =
        u64::from_str_radix(replace::view_status(&server)["fingerprint"].as_str().unwrap(), 16).unwrap();
    server.kill();
    let store = fstore::store::Store::open(&server.data, &fstore::config::Config::defaults().store).unwrap();
    for g in 0..=generation as u32 + 1 {
        let expected = if g as u64 == generation { SNAPSHOT_ROWS as usize } else { 0 };
        assert_eq!(store.count_rows(fingerprint, g).unwrap(), expected, "rows of generation {g}");
    }
    eprintln!(
        "crash summary: replace: {REPLACE_KILLS} kills ({committed_kills} after the load committed, \
         {new_served} restarts on the new snapshot), {looked_up} keys looked up, \
         {rows_checked} rows found and checked, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---- REPLACE of an aggregating view, killed just after the switch ----

const AGG_DEFS: &str = r#"
entity user {
  key user_id: int64
}

source events {
  type = parquet
  path = "data/events/*.parquet"
  timestamp = ts
}

view activity {
  entity = user
  source = events
  resolution = 1m
  features {
    n: int64 = count() over 1d
    s: int64 = sum(v) over 1d
  }
}

service recent {
  features = [activity.*]
}
"#;

/// Users 0..AGG_USERS have a few events each; snapshot j gives each j + 1.
const AGG_USERS: i64 = 2_000;
/// Users HEAVY_BASE.. have an event a minute for HEAVY_MINUTES: each lookup
/// of one merges that many tiles, so the readers' lookups are slow.
const HEAVY_BASE: i64 = 1_000_000;
const HEAVY_USERS: i64 = 8;
const HEAVY_MINUTES: i64 = 23 * 60;
/// Rows of a heavy user per reader lookup.
const HEAVY_ROWS: usize = 100;
/// Kills to land in the window, and the most loads to try for them.
const AGG_KILLS: usize = 2;
const AGG_ATTEMPTS: usize = 6;

/// (user, v, event time) of snapshot `j`, event times up to 23 hours
/// before `now` (a `1d` window holds them all).
fn agg_snapshot(j: i64, now: i64) -> Vec<(i64, i64, i64)> {
    let minute = 60_000_000;
    let mut events = Vec::new();
    for user in 0..AGG_USERS {
        for i in 0..j + 1 {
            events.push((user, user + 1_000_000 * j, now - ((user * 7 + i * 131) % HEAVY_MINUTES) * minute));
        }
    }
    for user in HEAVY_BASE..HEAVY_BASE + HEAVY_USERS {
        for m in 0..HEAVY_MINUTES {
            events.push((user, j, now - m * minute));
        }
    }
    events
}

/// (n, s) of `user` in snapshot `j`.
fn agg_expected(j: i64, user: i64) -> (i64, i64) {
    if user >= HEAVY_BASE {
        (HEAVY_MINUTES, HEAVY_MINUTES * j)
    } else {
        (j + 1, (j + 1) * (user + 1_000_000 * j))
    }
}

fn write_agg_snapshot(path: &Path, j: i64, now: i64) -> usize {
    let events = agg_snapshot(j, now);
    write_user_events(path, &events);
    events.len()
}

fn users_request(users: &[i64]) -> proto::GetOnlineFeaturesRequest {
    request_service("recent", vec![("user_id", users.iter().map(|u| int(*u)).collect())])
}

/// Check that every user reads snapshot `j`, whole; returns the users checked.
fn assert_agg_snapshot(rt: &Runtime, server: &Server, j: i64, after: &str) -> usize {
    let users: Vec<i64> = (0..AGG_USERS).chain(HEAVY_BASE..HEAVY_BASE + HEAVY_USERS).collect();
    let mut wrong = Vec::new();
    for (chunk, r) in users.chunks(CHUNK).zip(lookup(rt, server, &users, users_request)) {
        let (n, s) = (column(&r, "activity.n"), column(&r, "activity.s"));
        for (i, user) in chunk.iter().enumerate() {
            let value = |c: &proto::FeatureColumn| match &c.values[i].kind {
                Some(Kind::Int64Value(v)) if c.statuses[i] == FieldStatus::Present as i32 => Some(*v),
                _ => None,
            };
            let (expected_n, expected_s) = agg_expected(j, *user);
            if (value(n), value(s)) != (Some(expected_n), Some(expected_s)) {
                wrong.push(format!(
                    "user {user}: n {:?} s {:?} (status {}), expected {expected_n} and {expected_s}",
                    value(n),
                    value(s),
                    n.statuses[i]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "after {after}, {} of {} users do not read the committed snapshot S{j}, e.g. {}",
        wrong.len(),
        users.len(),
        wrong[0]
    );
    users.len()
}

/// Lookups of the heavy users in a loop on `threads` connections, so that
/// some request holds the old snapshot when a REPLACE switches: the load
/// then waits for it before deleting the old generation.
struct HeavyReaders {
    stop: Arc<AtomicU8>,
    threads: Vec<std::thread::JoinHandle<(u64, Duration)>>,
}

impl HeavyReaders {
    fn start(addr: String, threads: usize) -> HeavyReaders {
        let stop = Arc::new(AtomicU8::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, addr) = (stop.clone(), addr.clone());
                std::thread::spawn(move || {
                    rt().block_on(async move {
                        // Stagger the threads, so one is mid-request when another starts.
                        tokio::time::sleep(Duration::from_millis(50 * t as u64)).await;
                        let channel =
                            tonic::transport::Channel::from_shared(addr).unwrap().connect().await.unwrap();
                        let mut client = proto::feature_serving_client::FeatureServingClient::new(channel);
                        let users: Vec<i64> =
                            (0..HEAVY_ROWS).map(|i| HEAVY_BASE + i as i64 % HEAVY_USERS).collect();
                        let (mut requests, mut busy) = (0, Duration::ZERO);
                        while stop.load(Ordering::SeqCst) == 0 {
                            let started = Instant::now();
                            match get_features(&mut client, users_request(&users)).await {
                                Ok(_) => {
                                    requests += 1;
                                    busy += started.elapsed();
                                }
                                Err(_) if stop.load(Ordering::SeqCst) != 0 => break,
                                Err(s) => panic!("a heavy reader's lookup failed: {s}"),
                            }
                        }
                        (requests, busy)
                    })
                })
            })
            .collect();
        HeavyReaders { stop, threads }
    }

    /// Ask to stop; returns at once (the server is about to be killed).
    fn signal(&self) {
        self.stop.store(1, Ordering::SeqCst);
    }

    /// (requests, their mean duration), once every thread has stopped.
    fn join(self) -> (u64, Duration) {
        let (mut requests, mut busy) = (0, Duration::ZERO);
        for t in self.threads {
            let (r, b) = t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            requests += r;
            busy += b;
        }
        (requests, busy.checked_div(requests.max(1) as u32).unwrap_or_default())
    }
}

fn loads_finished(server: &Server) -> usize {
    server.log_text().matches("Parquet load finished.").count()
}

/// A REPLACE writes aggregate states without the WAL, like rows, so they
/// must be on disk before the switch: a kill just after it used to restart
/// on the new generation with no states in it (every user NOT_FOUND).
#[test]
fn a_replace_of_an_aggregating_view_killed_after_the_switch_keeps_the_new_snapshot() {
    let started = Instant::now();
    let builder = ServerBuilder::new(&[("defs.fdl", AGG_DEFS)]);
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_micros() as i64;
    // Snapshot 0 is the initial load at start; later ones are REPLACEs.
    let events = write_agg_snapshot(&builder.root().join("defs/data/events/s0.parquet"), 0, now);
    let incoming = builder.root().join("incoming");
    let mut server = builder.start();
    let rt = rt();
    let mut users_checked = assert_agg_snapshot(&rt, &server, 0, "the initial load");
    let (mut landed, mut attempts, mut reads, mut read_time) = (0, 0, 0, Duration::ZERO);

    while landed < AGG_KILLS {
        assert!(
            attempts < AGG_ATTEMPTS,
            "{attempts} kills, {landed} after the switch and before the load finished: \
             the readers did not hold the old snapshot long enough"
        );
        attempts += 1;
        let j = attempts as i64;
        let file = incoming.join(format!("s{j}.parquet"));
        write_agg_snapshot(&file, j, now);
        let finished_before = loads_finished(&server);
        let readers = HeavyReaders::start(server.addr(), 2);
        // Let the readers get going: some lookup must be in flight at the switch.
        std::thread::sleep(Duration::from_millis(300));
        let kill = load_and_kill(
            &rt,
            &mut server,
            "events",
            "activity",
            &["--replace", file.to_str().unwrap()],
            Moment::Committed,
            |_| readers.signal(),
        );
        let (r, mean) = readers.join();
        reads += r;
        read_time += mean * r as u32;
        // The window: the switch is durable and the load is still in the
        // server (the last GetStatus showed it in progress, and it has not
        // logged its end). Once the load has finished, the unlogged states
        // are on disk anyway (deleting the old generation flushes them), so
        // only a kill in the window tests the promise.
        let in_window =
            kill.committed && kill.rows_read.is_some() && loads_finished(&server) == finished_before;
        landed += usize::from(in_window);
        server.restart();
        users_checked += assert_agg_snapshot(&rt, &server, j, &format!("a kill at {}", kill.describe()));
        eprintln!(
            "  attempt {attempts}: {}{}: serves S{j}; {r} reads, {} ms each",
            kill.describe(),
            if in_window { ", in the window" } else { ", too late for the window" },
            mean.as_millis()
        );
    }
    eprintln!(
        "crash summary: aggregating replace: {attempts} kills after the switch ({landed} before the load \
         finished), {events} events a snapshot, {users_checked} users checked, {reads} concurrent heavy \
         reads ({} ms each), {:.1} s",
        read_time.checked_div(reads.max(1) as u32).unwrap_or_default().as_millis(),
        started.elapsed().as_secs_f64()
    );
}

// ---- A killed first UPSERT, then a REPLACE ----

/// Two sources of the same shape: one view's next REPLACE comes from the
/// CLI, the other's from the load at start.
const FIRST_DEFS: &str = r#"
entity thing {
  key id: int64
}

source by_cli {
  type = parquet
  path = "data/by_cli/*.parquet"
  timestamp = ts
}

source at_start {
  type = parquet
  path = "data/at_start/*.parquet"
  timestamp = ts
}

view cli_things {
  entity = thing
  source = by_cli
  features {
    tag: string = tag
    n: int64 = n
  }
}

view start_things {
  entity = thing
  source = at_start
  features {
    tag: string = tag
    n: int64 = n
  }
}

service cli_all {
  features = [cli_things.*]
}

service start_all {
  features = [start_things.*]
}
"#;

/// The UPSERT's keys, tagged "U", and the REPLACE's, tagged "R": they overlap.
const UPSERT_KEYS: std::ops::Range<i64> = 0..40_000;
const REPLACE_KEYS: std::ops::Range<i64> = 20_000..50_000;
const FIRST_BATCH_ROWS: usize = 250;

/// Check that `view` serves exactly the REPLACE's rows: every key of both
/// files, and a few on either side. Returns the keys looked up.
fn assert_serves_the_replace(rt: &Runtime, server: &Server, service: &str, view: &str, kill: &str) -> usize {
    let keys: Vec<i64> = (UPSERT_KEYS.start - 50..REPLACE_KEYS.end + 50).collect();
    let (mut tags, mut found) = (std::collections::BTreeMap::<String, usize>::new(), BTreeSet::new());
    let request =
        |chunk: &[i64]| request_service(service, vec![("id", chunk.iter().map(|k| int(*k)).collect())]);
    for (chunk, r) in keys.chunks(CHUNK).zip(lookup(rt, server, &keys, request)) {
        let (tag, n) = (column(&r, &format!("{view}.tag")), column(&r, &format!("{view}.n")));
        for (i, key) in chunk.iter().enumerate() {
            if tag.statuses[i] != FieldStatus::Present as i32 {
                continue;
            }
            if let Some(Kind::StringValue(t)) = &tag.values[i].kind {
                *tags.entry(t.clone()).or_default() += 1;
            }
            assert_eq!(n.values[i].kind, Some(Kind::Int64Value(*key)), "{view}.n of key {key}");
            found.insert(*key);
        }
    }
    let expected: BTreeSet<i64> = REPLACE_KEYS.collect();
    assert!(
        tags.keys().eq(["R"]) && found == expected,
        "after a first UPSERT killed at {kill} and a REPLACE, {view} serves {} keys tagged {tags:?}; \
         the REPLACE has {}: e.g. extra {:?}, missing {:?}",
        found.len(),
        expected.len(),
        found.difference(&expected).next(),
        expected.difference(&found).next()
    );
    keys.len()
}

/// An UPSERT into a view with no data writes generation 1 and records it
/// only when it commits: one killed mid-load leaves rows there that nothing
/// records. The next REPLACE, by the CLI or by the load at start, targets
/// generation 1 too, and used to serve those rows with its own.
#[test]
fn a_killed_first_upsert_never_leaks_into_the_next_replace() {
    let started = Instant::now();
    let mut rng = Rng::for_test("a_killed_first_upsert_never_leaks_into_the_next_replace");
    let builder = ServerBuilder::new(&[("defs.fdl", FIRST_DEFS)])
        .env("FSTORE_INGEST__BATCH_ROWS", &FIRST_BATCH_ROWS.to_string());
    let (incoming, own) = (builder.root().join("incoming"), builder.root().join("defs/data"));
    let (upsert, replace) = (incoming.join("u.parquet"), incoming.join("r.parquet"));
    replace::write_snapshot(&upsert, UPSERT_KEYS, "U");
    replace::write_snapshot(&replace, REPLACE_KEYS, "R");
    // Neither source has files of its own yet: both views start empty.
    let mut server = builder.start();
    let rt = rt();
    let rows = (UPSERT_KEYS.end - UPSERT_KEYS.start) as u64;
    let (mut looked_up, mut left_behind) = (0, Vec::new());

    for (source, view, service) in
        [("by_cli", "cli_things", "cli_all"), ("at_start", "start_things", "start_all")]
    {
        let fingerprint =
            u64::from_str_radix(view_of(&status(&rt, &server), view)["fingerprint"].as_str().unwrap(), 16)
                .unwrap();
        // Early enough that the load is still running when the kill comes.
        let moment = Moment::RowsRead(rng.in_range(rows / 16..rows / 4));
        let kill = load_and_kill(&rt, &mut server, source, view, &[upsert.to_str().unwrap()], moment, |_| {});
        assert!(!kill.committed, "the UPSERT finished before the kill at {kill:?}; nothing to test");
        // What the killed load left: rows in generation 1 that no metadata records.
        let left = {
            let store =
                fstore::store::Store::open(&server.data, &fstore::config::Config::defaults().store).unwrap();
            store.count_rows(fingerprint, 1).unwrap()
        };
        let how = if source == "by_cli" {
            server.restart();
            let out = server.cli(&["ingest", "--source", source, "--replace", replace.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
            "the CLI"
        } else {
            // The load at start finds the view empty and loads the source's own files.
            std::fs::create_dir_all(own.join(source)).unwrap();
            std::fs::copy(&replace, own.join(source).join("r.parquet")).unwrap();
            server.restart();
            "the load at start"
        };
        looked_up += assert_serves_the_replace(&rt, &server, service, view, &kill.describe());
        eprintln!(
            "  {view}: {}: {left} unrecorded rows left; then a REPLACE by {how} serves only it",
            kill.describe()
        );
        left_behind.push(left);
    }
    // The first view kept its snapshot through the second restart.
    looked_up += assert_serves_the_replace(&rt, &server, "cli_all", "cli_things", "(the first view, again)");
    eprintln!(
        "crash summary: first upsert: 2 killed first UPSERTs of {rows} rows (left {} and {} unrecorded rows), \
         each followed by a REPLACE of {} rows; {looked_up} keys looked up, {:.1} s",
        left_behind[0],
        left_behind[1],
        REPLACE_KEYS.end - REPLACE_KEYS.start,
        started.elapsed().as_secs_f64()
    );
}
