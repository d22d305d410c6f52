//! REPLACE is atomic for readers: a request sees the old snapshot or the new
//! one, never a mix or a half-loaded view, also when the server is killed in
//! the middle of a load; and the replaced data is reclaimed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use fstore::proto::{self, value::Kind, FieldStatus};

use crate::util::*;

pub(crate) const DEFS: &str = r#"
entity thing {
  key id: int64
}

source snapshot {
  type = parquet
  path = "data/snapshot/*.parquet"
  timestamp = ts
}

view things {
  entity = thing
  source = snapshot
  features {
    tag: string = tag
    n: int64 = n
  }
}

service all_things {
  features = [things.*]
}
"#;

pub(crate) fn write_snapshot(path: &std::path::Path, ids: std::ops::Range<i64>, tag: &str) {
    let n = (ids.end - ids.start) as usize;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(ids.clone()))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; n]))),
        ("tag", Arc::new(StringArray::from(vec![tag; n]))),
        ("n", Arc::new(Int64Array::from_iter_values(ids))),
    ];
    write_parquet(path, columns);
}

/// (tag per found row, set of keys found) for one request.
pub(crate) fn snapshot_seen(
    r: &proto::GetOnlineFeaturesResponse,
    keys: &[i64],
) -> (BTreeSet<String>, BTreeSet<i64>) {
    let tag = column(r, "things.tag");
    let mut tags = BTreeSet::new();
    let mut found = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        if tag.statuses[i] == FieldStatus::Present as i32 {
            if let Some(Kind::StringValue(t)) = &tag.values[i].kind {
                tags.insert(t.clone());
            }
            found.insert(*key);
        }
    }
    (tags, found)
}

pub(crate) fn ids_request(keys: &[i64]) -> proto::GetOnlineFeaturesRequest {
    request_service("all_things", vec![("id", keys.iter().map(|k| int(*k)).collect())])
}

pub(crate) fn view_status(server: &Server) -> serde_json::Value {
    rt().block_on(async {
        let json =
            server.admin().await.get_status(proto::GetStatusRequest {}).await.unwrap().into_inner().json;
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        doc["views"].as_array().unwrap().iter().find(|v| v["name"] == "things").unwrap().clone()
    })
}

#[test]
fn readers_see_the_old_or_the_new_snapshot_never_a_mix() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]).env("FSTORE_INGEST__BATCH_ROWS", "500");
    let dir = builder.root().join("incoming");
    write_snapshot(&dir.join("a.parquet"), 0..20_000, "A");
    write_snapshot(&dir.join("b.parquet"), 10_000..40_000, "B");
    let server = builder.start();
    let out =
        server.cli(&["ingest", "--source", "snapshot", "--replace", dir.join("a.parquet").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Keys in A only, in both, and in B only.
    let keys: Vec<i64> = (0..40_000).step_by(97).collect();
    let in_a: BTreeSet<i64> = keys.iter().copied().filter(|k| *k < 20_000).collect();
    let in_b: BTreeSet<i64> = keys.iter().copied().filter(|k| *k >= 10_000).collect();
    let done = Arc::new(AtomicBool::new(false));
    let (old_seen, new_seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (done, old_seen, new_seen, keys, addr) =
            (done.clone(), old_seen.clone(), new_seen.clone(), keys.clone(), server.addr());
        std::thread::spawn(move || {
            rt().block_on(async move {
                let channel = tonic::transport::Channel::from_shared(addr).unwrap().connect().await.unwrap();
                let mut client = proto::feature_serving_client::FeatureServingClient::new(channel);
                while !done.load(Ordering::Relaxed) {
                    let r = client.get_online_features(ids_request(&keys)).await.unwrap().into_inner();
                    let (tags, found) = snapshot_seen(&r, &keys);
                    if tags == BTreeSet::from(["A".to_string()]) {
                        assert_eq!(found, in_a, "a request saw part of snapshot A");
                        old_seen.fetch_add(1, Ordering::Relaxed);
                    } else if tags == BTreeSet::from(["B".to_string()]) {
                        assert_eq!(found, in_b, "a request saw part of snapshot B");
                        new_seen.fetch_add(1, Ordering::Relaxed);
                    } else {
                        panic!("a request saw a mix of snapshots: tags {tags:?}, {} keys", found.len());
                    }
                }
            })
        })
    };
    // Start the load only once the reader is reading.
    let deadline = Instant::now() + Duration::from_secs(30);
    while old_seen.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the reader never got an answer");
        std::thread::sleep(Duration::from_millis(1));
    }
    let out =
        server.cli(&["ingest", "--source", "snapshot", "--replace", dir.join("b.parquet").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    reader.join().expect("the reader saw only whole snapshots");
    assert!(new_seen.load(Ordering::Relaxed) > 0, "no request saw the new snapshot");

    // The old generation is gone from disk, not just hidden.
    let status = view_status(&server);
    assert_eq!(status["generation"], 2);
    let fingerprint = u64::from_str_radix(status["fingerprint"].as_str().unwrap(), 16).unwrap();
    let mut server = server;
    server.kill();
    let store = fstore::store::Store::open(&server.data, &fstore::config::Config::defaults().store).unwrap();
    assert_eq!(store.count_rows(fingerprint, 1).unwrap(), 0, "snapshot A was not reclaimed");
    assert_eq!(store.count_rows(fingerprint, 2).unwrap(), 30_000);
}

#[test]
fn a_server_killed_during_a_replace_restarts_on_the_old_snapshot() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]).env("FSTORE_INGEST__BATCH_ROWS", "1000");
    let dir = builder.root().join("incoming");
    write_snapshot(&dir.join("a.parquet"), 0..5_000, "A");
    write_snapshot(&dir.join("big.parquet"), 0..600_000, "B");
    let mut server = builder.start();
    let out =
        server.cli(&["ingest", "--source", "snapshot", "--replace", dir.join("a.parquet").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = view_status(&server);
    let fingerprint = u64::from_str_radix(before["fingerprint"].as_str().unwrap(), 16).unwrap();

    // Start the big REPLACE and kill the server once rows are being written.
    let mut load = std::process::Command::new(bin())
        .args(["ingest", "--source", "snapshot", "--replace", dir.join("big.parquet").to_str().unwrap()])
        .arg("--addr")
        .arg(server.addr())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows_read_at_kill = loop {
        let json = rt().block_on(async {
            server.admin().await.get_status(proto::GetStatusRequest {}).await.unwrap().into_inner().json
        });
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        let progress = &doc["sources"][0]["ingest_in_progress"];
        let read = progress["rows_read"].as_u64().unwrap_or(0);
        if read > 0 {
            break read;
        }
        assert!(Instant::now() < deadline, "the load never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    server.kill();
    let _ = load.wait();
    assert!(rows_read_at_kill < 600_000, "the load finished before the kill");

    // Pending data from the interrupted load is discarded at start.
    server.restart();
    let after = view_status(&server);
    assert_eq!(after["generation"], before["generation"]);
    let keys: Vec<i64> = (0..10_000).step_by(37).collect();
    let r = rt().block_on(async {
        server.serving().await.get_online_features(ids_request(&keys)).await.unwrap().into_inner()
    });
    let (tags, found) = snapshot_seen(&r, &keys);
    assert_eq!(tags, BTreeSet::from(["A".to_string()]));
    assert_eq!(found, keys.iter().copied().filter(|k| *k < 5_000).collect());

    server.kill();
    let store = fstore::store::Store::open(&server.data, &fstore::config::Config::defaults().store).unwrap();
    let generation = after["generation"].as_u64().unwrap() as u32;
    assert_eq!(
        store.count_rows(fingerprint, generation + 1).unwrap(),
        0,
        "the half-written generation is gone"
    );
    assert_eq!(store.count_rows(fingerprint, generation).unwrap(), 5_000);
}

/// A REPLACE writes its rows as sorted SST files (`store::bulk`): files
/// read in parallel, rows sorted in memory or, past `ingest.sort_buffer_mb`,
/// in spilled runs merged back. Whatever the path, each key must end with
/// the row a row-by-row load keeps: the newest event time, and of equal
/// event times the later file, then the later row.
#[test]
fn a_replace_keeps_the_newest_row_of_each_key_across_files_and_spilled_runs() {
    const KEYS: u64 = 20_000;
    const FILES: usize = 4;
    const ROWS: usize = 15_000;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // (key, event time, n) per file; few event times, so ties are common.
    let files: Vec<Vec<(i64, i64, i64)>> = (0..FILES)
        .map(|f| {
            (0..ROWS)
                .map(|r| {
                    let key = (next() % KEYS) as i64;
                    let ts = 1_700_000_000_000_000 + (next() % 4) as i64 * 1_000_000;
                    (key, ts, (f * ROWS + r) as i64)
                })
                .collect()
        })
        .collect();
    // Independently: in load order, a row replaces the kept one when its
    // event time is at least as great.
    let mut expected: std::collections::HashMap<i64, (i64, i64)> = Default::default();
    for &(key, ts, n) in files.iter().flatten() {
        let kept = expected.entry(key).or_insert((ts, n));
        if ts >= kept.0 {
            *kept = (ts, n);
        }
    }

    for (budget_mb, spills) in [(None, false), (Some("1"), true)] {
        let mut builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
        if let Some(mb) = budget_mb {
            builder = builder.env("FSTORE_INGEST__SORT_BUFFER_MB", mb);
        }
        let dir = builder.root().join("incoming");
        let mut paths = Vec::new();
        for (f, rows) in files.iter().enumerate() {
            let path = dir.join(format!("part-{f}.parquet"));
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))),
                ("ts", Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)))),
                ("tag", Arc::new(StringArray::from_iter_values(rows.iter().map(|_| format!("f{f}"))))),
                ("n", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))),
            ];
            write_parquet(&path, columns);
            paths.push(path.to_str().unwrap().to_string());
        }
        let server = builder.start();
        let mut args = vec!["ingest", "--source", "snapshot", "--replace"];
        args.extend(paths.iter().map(String::as_str));
        let out = server.cli(&args);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

        let log: String = strip_ansi(&server.log_text());
        let line = log.lines().find(|l| l.contains("Loaded rows sorted")).expect("the bulk path ran");
        assert_eq!(!line.contains("spilled_runs=0 "), spills, "budget {budget_mb:?}: {line}");

        let keys: Vec<i64> = (0..KEYS as i64).collect();
        let mut checked = 0;
        rt().block_on(async {
            let mut client = server.serving().await;
            for chunk in keys.chunks(1000) {
                let r = client.get_online_features(ids_request(chunk)).await.unwrap().into_inner();
                let n = column(&r, "things.n");
                for (i, key) in chunk.iter().enumerate() {
                    match expected.get(key) {
                        None => assert_eq!(n.statuses[i], FieldStatus::NotFound as i32, "key {key}"),
                        Some(&(ts, want)) => {
                            assert_eq!(
                                (n.values[i].kind.clone(), n.event_timestamps_micros[i]),
                                (Some(Kind::Int64Value(want)), ts),
                                "key {key}, budget {budget_mb:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        });
        eprintln!("sort buffer {budget_mb:?} MiB: {checked} keys checked; {line}");
        assert_eq!(checked, expected.len());
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
