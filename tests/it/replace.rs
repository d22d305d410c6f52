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
