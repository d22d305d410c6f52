//! A restarted server reports SERVING only once its data is in the block
//! cache, so that the first lookups under load do not all miss it at once
//! (BENCHMARKS.md, "Restart under load").

use std::process::Command;

use crate::util::*;

fn rocksdb_gauge(metrics: &str, name: &str) -> u64 {
    let prefix = format!("fstore_rocksdb{{property=\"{name}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_restarted_server_reports_serving_with_its_data_in_the_block_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["bench-ingest", "--rows", "60000", "--features", "12", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "bench-ingest: {}", stderr(&out));
    let store = dir.path().join("store");
    let start = |warm: bool| {
        ServerBuilder::with_defs_dir(&dir.path().join("defs"))
            .env("FSTORE_SERVER__DATA_DIR", store.to_str().unwrap())
            .env("FSTORE_STORE__WARM_CACHE_ON_START", if warm { "true" } else { "false" })
            .start()
    };

    // Cold: only index and filter blocks are cached when SERVING is reported.
    let mut server = start(false);
    let metrics = server.metrics_text();
    let (sst, cold) =
        (rocksdb_gauge(&metrics, "live_sst_bytes"), rocksdb_gauge(&metrics, "block_cache_usage_bytes"));
    assert!(sst > 1 << 20, "a store of some size: {sst} bytes");
    assert!(cold < sst / 4, "without warming, {cold} bytes cached of {sst}");
    server.terminate(std::time::Duration::from_secs(30));

    // Warmed: by SERVING, every block is in the cache (decompressed, so at
    // least the files' size).
    let server = start(true);
    let metrics = server.metrics_text();
    let warm = rocksdb_gauge(&metrics, "block_cache_usage_bytes");
    assert!(warm >= sst, "after warming, {warm} bytes cached of {sst}");
    assert!(server.log_text().contains("Warmed the block cache."), "{}", server.log_text());
}
