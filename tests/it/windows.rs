//! Windows over a week of events, read through coarse tiles: values served
//! over gRPC equal an independent computation from the raw events, at
//! request times on and off tile edges, and still do after the store is
//! opened by this version as an earlier one left it (fine tiles only).

use fstore::proto::{value::Kind, FieldStatus};

use crate::util::*;

const DEFS: &str = r#"
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
    n_1h: int64 = count() over 1h
    s_1d: int64 = sum(v) over 1d
    n_7d: int64 = count() over 7d
    s_7d: int64 = sum(v) over 7d
    max_7d: int64 = max(v) over 7d
    n_all: int64 = count()
  }
}

service recent {
  features = [activity.*]
}
"#;

const MINUTE: i64 = 60_000_000;
const DAY: i64 = 1440 * MINUTE;
const USERS: i64 = 40;

/// (user, v, event time): a week of events, busier users with more, some on
/// minute, hour and day edges and a few stamped minutes after `now`.
fn events(now: i64) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = now - 7 * DAY + 60 * MINUTE;
    for user in 0..USERS {
        let count = if user % 10 == 0 { 3000 } else { 20 + user as u64 * 5 };
        for _ in 0..count {
            let r = next();
            let t = match r % 8 {
                // On a day, hour or minute edge, or just before one.
                0 => (start + (next() % (7 * DAY as u64)) as i64).div_euclid(DAY) * DAY - (r >> 8) as i64 % 2,
                1 => (start + (next() % (7 * DAY as u64)) as i64).div_euclid(60 * MINUTE) * 60 * MINUTE,
                // The last few hours, and a little after `now`.
                2 => now - (next() % (5 * 60 * MINUTE as u64)) as i64 + 3 * MINUTE,
                _ => start + (next() % ((now - start) as u64)) as i64,
            };
            out.push((user, (next() % 1000) as i64 - 200, t.max(start)));
        }
    }
    out
}

/// The features of `user` at request time `at`, from the events alone: a
/// window of W covers the events whose minute lies in [c − W + 1, c], c the
/// minute of `at` (docs/dsl.md).
fn expected(events: &[(i64, i64, i64)], user: i64, at: i64) -> [Option<i64>; 6] {
    let c = at.div_euclid(MINUTE);
    let mine: Vec<(i64, i64, i64)> = events.iter().filter(|e| e.0 == user).copied().collect();
    let within = |minutes: i64| -> Vec<i64> {
        mine.iter()
            .filter(|e| {
                let k = e.2.div_euclid(MINUTE);
                k <= c && k > c - minutes
            })
            .map(|e| e.1)
            .collect()
    };
    let count = |m: i64| Some(within(m).len() as i64);
    let sum = |m: i64| {
        let v = within(m);
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let max = within(7 * 1440).into_iter().max();
    [count(60), sum(1440), count(7 * 1440), sum(7 * 1440), max, Some(mine.len() as i64)]
}

const NAMES: [&str; 6] =
    ["activity.n_1h", "activity.s_1d", "activity.n_7d", "activity.s_7d", "activity.max_7d", "activity.n_all"];

fn check(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    events: &[(i64, i64, i64)],
    times: &[i64],
    when: &str,
) {
    let users: Vec<i64> = (0..USERS).collect();
    let mut wrong = Vec::new();
    for &at in times {
        let mut request =
            request_service("recent", vec![("user_id", users.iter().map(|u| int(*u)).collect())]);
        request.request_time_micros = at;
        let response = rt.block_on(async {
            let mut client = server.serving().await;
            client.get_online_features(request).await.unwrap().into_inner()
        });
        for (row, user) in users.iter().enumerate() {
            let want = expected(events, *user, at);
            for (name, want) in NAMES.iter().zip(want) {
                let c = column(&response, name);
                let got = match &c.values[row].kind {
                    Some(Kind::Int64Value(v)) if c.statuses[row] == FieldStatus::Present as i32 => Some(*v),
                    _ => None,
                };
                if got != want {
                    wrong.push(format!("{when}: user {user} {name} at {at}: got {got:?}, expected {want:?}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} wrong values, first: {:#?}", wrong.len(), &wrong[..wrong.len().min(10)]);
}

#[test]
fn a_week_of_windows_read_through_coarse_tiles_match_the_raw_events_before_and_after_an_upgrade() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
    let now = fstore::now_micros();
    let events = events(now);
    let file = builder.root().join("incoming/events.parquet");
    write_user_events(&file, &events);
    let mut server = builder.start();
    let out = server.cli(&["ingest", "--source", "events", "--replace", file.to_str().unwrap()]);
    assert!(out.status.success(), "ingest failed: {}{}", stdout(&out), stderr(&out));

    // Request times: now, on a day, hour and minute edge and just before
    // each, and half an hour back.
    let day_edge = now.div_euclid(DAY) * DAY;
    let hour_edge = now.div_euclid(60 * MINUTE) * 60 * MINUTE;
    let times = [now, day_edge, day_edge - 1, hour_edge, hour_edge - 1, now - 30 * MINUTE - 1, now + MINUTE];
    let rt = rt();
    check(&rt, &server, &events, &times, "as loaded");

    // As an earlier version left the store: fine tiles only, and a view
    // record that names no coarse tiles.
    server.terminate(std::time::Duration::from_secs(30));
    {
        let config = fstore::config::Config::defaults();
        let store = std::sync::Arc::new(fstore::store::Store::open(&server.data, &config.store).unwrap());
        let catalog = fstore::catalog::Catalog::open(store.clone()).unwrap();
        let registry = fstore::registry::Registry::load(&server.defs).unwrap();
        let info = registry.views.iter().find(|v| v.name == "activity").unwrap();
        let meta = catalog.meta(info.fingerprint).unwrap().unwrap();
        let layout = info.agg_layout.clone().unwrap();
        assert!(layout.ladder.levels() == 3, "minute, hour and day tiles: {:?}", layout.ladder);
        assert_eq!(meta.coarse_spans_micros, Some(vec![60 * MINUTE, DAY]));
        let fine_only =
            fstore::store::aggs::AggLayout { ladder: fstore_dsl::tiles::Ladder::fine(), ..layout };
        store.build_coarse_tiles(info.fingerprint, meta.generation, &fine_only).unwrap();
        catalog.set_coarse_spans(info.fingerprint, None).unwrap();
    }
    server.restart();
    assert!(
        server.log_text().contains("Built the view's coarse tiles from its fine tiles"),
        "{}",
        server.log_text()
    );
    check(&rt, &server, &events, &times, "after the upgrade");
}
