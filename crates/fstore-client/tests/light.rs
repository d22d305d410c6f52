//! A model server that depends on `fstore-client` builds none of the
//! store's heavy dependencies. Read from the workspace's `Cargo.lock`: every
//! package the client can pull in, directly or not.

use std::collections::{BTreeMap, BTreeSet};

const HEAVY: &[&str] =
    &["rocksdb", "librocksdb-sys", "rdkafka", "rdkafka-sys", "arrow", "parquet", "fstore", "fstore-dsl"];

#[test]
fn the_client_pulls_in_no_store_engine_and_no_kafka_client() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&lock).unwrap();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in lock["package"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_string();
        let of = package.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default();
        // Entries are "name" or "name version" when several versions are locked.
        let names = of.iter().map(|d| d.as_str().unwrap().split(' ').next().unwrap().to_string());
        deps.entry(name).or_default().extend(names);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec!["fstore-client".to_string()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(deps.get(&name).cloned().unwrap_or_default());
        }
    }
    assert!(seen.contains("tonic") && seen.contains("prost"), "the walk found the client's own dependencies");
    let heavy: Vec<&&str> = HEAVY.iter().filter(|h| seen.contains(**h)).collect();
    assert!(heavy.is_empty(), "fstore-client depends (perhaps indirectly) on {heavy:?}");
}
