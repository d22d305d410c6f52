//! Definitions replaced on a running server: `fstore apply` and SIGHUP.
//! A set that fails `check` is refused and the old one keeps serving; a
//! changed view is never served values its old definition computed.

use std::time::{Duration, Instant};

use fstore::proto::{self, FieldStatus};

use crate::util::*;

/// `factor` makes each version's values distinct: score = base * factor.
fn defs(factor: i64) -> String {
    format!(
        r#"
entity item {{
  key item_id: int64
}}

source items {{
  type = parquet
  path = "data/items.parquet"
  timestamp = ts
}}

view item_stats {{
  entity = item
  source = items
  features {{
    score: int64 = base * {factor}
  }}
}}

view item_names {{
  entity = item
  source = items
  features {{
    name: string = name
  }}
}}

service ranker {{
  features = [item_stats.score, item_names.name]
}}
"#
    )
}

const ITEMS: i64 = 2_000;

fn write_items(root: &std::path::Path) {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;
    let dir = root.join("defs/data");
    std::fs::create_dir_all(&dir).unwrap();
    let ids: Vec<i64> = (0..ITEMS).collect();
    write_parquet(
        &dir.join("items.parquet"),
        vec![
            ("item_id", Arc::new(Int64Array::from(ids.clone()))),
            ("base", Arc::new(Int64Array::from(ids.iter().map(|i| i + 1).collect::<Vec<_>>()))),
            (
                "name",
                Arc::new(StringArray::from(ids.iter().map(|i| format!("item-{i}")).collect::<Vec<_>>())),
            ),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_000_000; ITEMS as usize]).with_timezone("UTC"),
                ),
            ),
        ],
    );
}

/// Each item's score status and value; panics on a value no version computes.
fn scores(server: &Server) -> Vec<(FieldStatus, Option<i64>)> {
    let keys: Vec<_> = (0..ITEMS).map(int).collect();
    let r = rt().block_on(async {
        server
            .serving()
            .await
            .get_online_features(request_service("ranker", vec![("item_id", keys)]))
            .await
            .unwrap()
            .into_inner()
    });
    let col = column(&r, "item_stats.score");
    col.statuses
        .iter()
        .zip(&col.values)
        .map(|(s, v)| {
            let status = FieldStatus::try_from(*s).unwrap();
            let value = match &v.kind {
                Some(proto::value::Kind::Int64Value(x)) => Some(*x),
                _ => None,
            };
            (status, value)
        })
        .collect()
}

/// Poll until every score is `factor` x base; every answer on the way must
/// be NOT_FOUND or a value of `factor` (never an older version's).
fn wait_for_factor(server: &Server, factor: i64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut polls = 0;
    loop {
        polls += 1;
        let got = scores(server);
        for (item, (status, value)) in got.iter().enumerate() {
            let base = item as i64 + 1;
            match (status, value) {
                (FieldStatus::NotFound, None) => {}
                (FieldStatus::Present, Some(v)) => {
                    assert_eq!(
                        *v,
                        base * factor,
                        "item {item}: a value not computed by the running definition"
                    )
                }
                other => panic!("item {item}: unexpected {other:?}"),
            }
        }
        if got.iter().all(|(s, _)| *s == FieldStatus::Present) {
            return polls;
        }
        assert!(Instant::now() < deadline, "the new definition's values never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_dir(dir: &std::path::Path, files: &[(&str, &str)]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn apply_refuses_a_bad_set_and_serves_a_changed_view_only_from_new_values() {
    let builder = ServerBuilder::new(&[("items.fdl", &defs(2))]);
    write_items(builder.root());
    let root = builder.root().to_path_buf();
    let mut server = builder.start();
    wait_for_factor(&server, 2);
    let incoming = root.join("incoming");

    // A set that fails check: refused with its diagnostics; nothing changes.
    let broken = defs(3).replace("base * 3", "base * )");
    write_dir(&incoming, &[("items.fdl", &broken)]);
    let out = server.cli(&["apply", incoming.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refused; the server keeps its current definitions"), "{err}");
    assert!(err.contains("items.fdl:16:27"), "names the file and line: {err}");
    assert!(std::fs::read_to_string(server.defs.join("items.fdl")).unwrap().contains("base * 2"));
    assert!(scores(&server).iter().all(|(_, v)| v.is_some()), "the old set still serves");

    // A dry run reports and changes nothing.
    write_dir(&incoming, &[("items.fdl", &defs(3))]);
    let out = server.cli(&["apply", "--dry-run", incoming.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("item_stats") && text.contains("changed") && text.contains("not applied"),
        "{text}"
    );
    wait_for_factor(&server, 2);

    // The real apply: item_stats changed, item_names did not.
    let out = server.cli(&["apply", incoming.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("applied"), "{text}");
    assert!(text.contains("empty until loaded"), "says where the new values come from: {text}");
    let names_row = text.lines().find(|l| l.contains("item_names")).expect("item_names in the report");
    assert!(names_row.contains("unchanged") && names_row.contains("kept"), "{names_row}");
    let polls = wait_for_factor(&server, 3);
    eprintln!("apply: new values served after {polls} polls, never an old one");
    assert!(
        std::fs::read_to_string(server.defs.join("items.fdl")).unwrap().contains("base * 3"),
        "persisted"
    );

    // A restart runs the applied set.
    server.restart();
    wait_for_factor(&server, 3);

    // SIGHUP re-reads the directory; a bad directory is refused the same way.
    std::fs::write(server.defs.join("items.fdl"), defs(4)).unwrap();
    hangup(&server, true);
    wait_for_factor(&server, 4);
    std::fs::write(server.defs.join("items.fdl"), &broken).unwrap();
    hangup(&server, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log_text().contains("Reload refused") {
        assert!(Instant::now() < deadline, "no refusal logged:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log_text().contains("items.fdl:16:27"), "the log carries the diagnostics");
    wait_for_factor(&server, 4);

    // Old definitions' data is dropped: going back to factor 2 recomputes,
    // it does not resurrect what factor 2 once stored.
    std::fs::write(server.defs.join("items.fdl"), defs(2)).unwrap();
    hangup(&server, true);
    wait_for_factor(&server, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_definitions(&server) != 2 {
        assert!(Instant::now() < deadline, "old views' data was never dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let store = fstore::store::Store::open(&server.data, &fstore::config::Config::defaults().store).unwrap();
    let catalog = fstore::catalog::Catalog::open(std::sync::Arc::new(store)).unwrap();
    let live: Vec<u64> = catalog.metas().unwrap().into_keys().collect();
    assert_eq!(live.len(), 2, "only the running set's views keep data: {live:x?}");
}

/// SIGHUP; when `applies` is set, wait until the server has applied the
/// directory (the signal is handled asynchronously).
fn hangup(server: &Server, applies: bool) {
    let applied = || server.log_text().matches("Applied new definitions.").count();
    let before = applied();
    let pid = server.child.as_ref().unwrap().id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while applies && applied() == before {
        assert!(Instant::now() < deadline, "SIGHUP applied nothing:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stored_definitions(server: &Server) -> u64 {
    let json = rt().block_on(async {
        server.admin().await.get_status(proto::GetStatusRequest {}).await.unwrap().into_inner().json
    });
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["store"]["view_definitions_stored"].as_u64().unwrap()
}
