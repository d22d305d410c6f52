//! A store written by an earlier release opens with this one and serves the
//! same values: nothing is re-keyed, reloaded or dropped.
//!
//! `tests/fixtures/store-2026-12-01/` holds a data directory written by the
//! release of 2026-12-01 (before the catalog, the runtime and the layering
//! changes): the definitions below, and the events of [`events`] loaded
//! from Parquet at its first start, then a clean stop. The Parquet file is
//! not kept, so a server that re-keyed a view could not quietly load it
//! again. To make such a fixture with another release's binary:
//!
//! ```text
//! FSTORE_FIXTURE_OUT=/tmp/fx cargo test --test it upgrade::the_fixture_input_can_be_written_again
//! FSTORE_SERVER__DEFINITIONS_DIR=/tmp/fx/defs FSTORE_SERVER__DATA_DIR=/tmp/fx/data <old fstore> serve
//! # stop it (Ctrl-C) once it logs "Ready", then keep defs/*.fdl and data/
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::*;
use fstore::proto;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-2026-12-01");

/// 2026-12-01T00:00:00Z; the events are the three days before it.
const T0: i64 = 1_796_083_200_000_000;
const MINUTE: i64 = 60_000_000;
const USERS: i64 = 300;

/// (user_id, v, ts): user u has u % 7 + 1 events.
fn events() -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    for u in 0..USERS {
        for i in 0..(u % 7 + 1) {
            let ts = T0 - ((u * 37 + i * 3001) % (3 * 24 * 60) + 1) * MINUTE;
            out.push((u, u * 10 + i, ts));
        }
    }
    out
}

/// The fixture's input, written again: its definitions check, and its
/// events file holds what [`events`] says. With `FSTORE_FIXTURE_OUT` set it
/// is written there, to make a fixture with another release's binary.
#[test]
fn the_fixture_input_can_be_written_again() {
    let temp = tempfile::tempdir().unwrap();
    let out = std::env::var("FSTORE_FIXTURE_OUT")
        .map_or_else(|_| temp.path().to_path_buf(), std::path::PathBuf::from);
    std::fs::create_dir_all(out.join("defs")).unwrap();
    std::fs::copy(Path::new(FIXTURE).join("defs/defs.fdl"), out.join("defs/defs.fdl")).unwrap();
    let file = out.join("defs/data/events/events.parquet");
    write_user_events(&file, &events());

    let check = std::process::Command::new(bin()).arg("check").arg(out.join("defs")).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), events().len() as i64);
}

/// What each user's features must be, from the raw events.
fn expected() -> BTreeMap<i64, [i64; 6]> {
    let mut by_user: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (u, v, ts) in events() {
        by_user.entry(u).or_default().push((ts, v));
    }
    by_user
        .into_iter()
        .map(|(u, mut evs)| {
            evs.sort();
            let latest = evs.last().unwrap().1;
            let (n, s) = (evs.len() as i64, evs.iter().map(|e| e.1).sum::<i64>());
            // profile.v, totals.n, totals.s, totals.last_v, totals.n_long, totals.s_long
            (u, [latest, n, s, latest, n, s])
        })
        .collect()
}

#[test]
fn a_store_written_by_the_previous_release_serves_the_same_values() {
    let defs = std::fs::read_to_string(Path::new(FIXTURE).join("defs/defs.fdl")).unwrap();
    let builder = ServerBuilder::new(&[("defs.fdl", &defs)]);
    copy_dir(&Path::new(FIXTURE).join("data"), &builder.root().join("data"));
    let server = builder.start();
    let rt = rt();

    let keys: Vec<i64> = (0..USERS + 5).collect();
    let request = request_service("all", vec![("user_id", keys.iter().map(|&k| int(k)).collect())]);
    let response = rt
        .block_on(async { server.serving().await.get_online_features(request).await.unwrap().into_inner() });
    let names = ["profile.v", "totals.n", "totals.s", "totals.last_v", "totals.n_long", "totals.s_long"];
    let columns: Vec<&proto::FeatureColumn> = names.iter().map(|n| column(&response, n)).collect();
    let expected = expected();
    let mut checked = 0;
    for (row, key) in keys.iter().enumerate() {
        let got: Vec<Option<i64>> = columns
            .iter()
            .map(|c| match &c.values[row].kind {
                Some(proto::value::Kind::Int64Value(v)) => Some(*v),
                _ => None,
            })
            .collect();
        match expected.get(key) {
            Some(want) => {
                assert_eq!(got, want.iter().map(|v| Some(*v)).collect::<Vec<_>>(), "user {key}");
                checked += 1;
            }
            None => assert!(got.iter().all(Option::is_none), "user {key} has no events: {got:?}"),
        }
    }
    assert_eq!(checked, USERS);

    // The views kept their generation and their load record: nothing was
    // loaded again (there is nothing to load: the fixture has no Parquet).
    let status = rt.block_on(async {
        server.admin().await.get_status(proto::GetStatusRequest {}).await.unwrap().into_inner().json
    });
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    for view in status["views"].as_array().unwrap() {
        assert_eq!(view["generation"], 1, "{view}");
        assert_eq!(view["last_load"]["rows_written"], events().len(), "{view}");
    }
    assert_eq!(status["store"]["view_definitions_stored"], 2);
    let log = server.log_text();
    assert!(!log.contains("Dropping the data"), "{log}");
    assert!(!log.contains("Built the view's coarse tiles"), "the fixture has them already:\n{log}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
