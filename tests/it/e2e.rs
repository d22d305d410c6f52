//! End to end: definitions and Parquet written here, loaded with the real
//! CLI into a real server, read back over gRPC and compared value by value
//! with an independent computation of what the definitions say.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Builder, Float64Array, Int64Array, ListBuilder, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field};
use fstore::proto::{self, value::Kind, FieldStatus};
use xxhash_rust::xxh64::xxh64;

use crate::util::*;

const DEFS: &str = r#"
entity customer {
  key customer_id: int64
}

entity pair {
  key customer_id: int64
  key product: string
}

source customers {
  type = parquet
  path = "data/customers/*.parquet"
  timestamp = updated
}

view customer_features {
  entity = customer
  source = customers
  keys { customer_id = cid }
  ttl = 1d
  filter = active
  features {
    name_upper: string = upper(name)
    name_len: int64 = length(name)
    score: float64 = coalesce(score, -1.0)
    score_x2: float64 = score * 2
    visits: int64 = visits
    is_vip: bool = visits > 100
    segment: int64 = hash_bucket(name, 10)
    signup: timestamp = signup
    emb: array<float32> = emb
  }
}

source pairs {
  type = parquet
  path = "data/pairs/*.parquet"
  timestamp = ts
}

view pair_stats {
  entity = pair
  source = pairs
  keys { customer_id = cid }
  features {
    rating: float64 = rating
    bought: bool = bought
  }
}

service everything {
  features = [customer_features.*, pair_stats.*]
}

service names {
  features = [customer_features.name_upper, customer_features.score]
}
"#;

const NAMES: [&str; 6] = ["Zoë", "straße", "ΣΊΣΥΦΟΣ", "ana", "Łukasz", "日本"];
const HOUR: i64 = 3_600_000_000;

/// One input row of the customers file, as the test generated it.
struct Customer {
    cid: Option<i64>,
    name: Option<String>,
    score: Option<f64>,
    visits: Option<u64>,
    active: Option<bool>,
    updated: i64,
    signup: Option<i64>,
    emb: Option<Vec<f32>>,
}

fn customers(now: i64) -> Vec<Customer> {
    (0..300)
        .map(|i: i64| Customer {
            // Row 17 has no key: it must be rejected with its row number.
            cid: (i != 17).then_some(1000 + i),
            name: (i % 7 != 3).then(|| format!("{}-{i}", NAMES[i as usize % NAMES.len()])),
            score: (i % 5 != 1).then_some(i as f64 * 0.25 - 10.0),
            // Row 29's visits do not fit int64: rejected, the rest still land.
            visits: Some(if i == 29 { u64::MAX } else { (i * 3) as u64 }),
            // Inactive or unknown customers are filtered out (NOT_FOUND, not rejected).
            active: match i % 11 {
                4 => None,
                6 => Some(false),
                _ => Some(true),
            },
            // Every 9th row is two days old: outside the 1d ttl.
            updated: if i % 9 == 2 { now - 48 * HOUR } else { now - (i % 20) * 60_000_000 },
            signup: (i % 4 != 0).then(|| 1_600_000_000_000_000 + i * 86_400_000_000),
            emb: (i % 6 != 5).then(|| (0..8).map(|d| (i * 8 + d) as f32 / 7.0).collect()),
        })
        .collect()
}

fn write_customers(path: &std::path::Path, rows: &[Customer]) {
    let mut emb =
        ListBuilder::new(Float32Builder::new()).with_field(Field::new("item", DataType::Float32, true));
    for r in rows {
        match &r.emb {
            Some(v) => {
                emb.values().append_slice(v);
                emb.append(true);
            }
            None => emb.append(false),
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("cid", Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.cid)))),
        ("name", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.name.clone())))),
        ("score", Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.score)))),
        ("visits", Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.visits)))),
        ("active", Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.active)))),
        (
            "updated",
            Arc::new(
                TimestampMicrosecondArray::from_iter(rows.iter().map(|r| Some(r.updated)))
                    .with_timezone("UTC"),
            ),
        ),
        ("signup", Arc::new(TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.signup)))),
        ("emb", Arc::new(emb.finish())),
        ("unused_extra_column", Arc::new(Int64Array::from_iter(rows.iter().map(|_| Some(1))))),
    ];
    write_parquet(path, columns);
}

/// hash_bucket as docs/dsl.md defines it: XXH64, seed 0, of the UTF-8 bytes, mod n.
fn expected_bucket(s: &str, n: u64) -> i64 {
    (xxh64(s.as_bytes(), 0) % n) as i64
}

#[test]
fn parquet_to_grpc_values_match_an_independent_computation() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]).env("FSTORE_INGEST__BATCH_ROWS", "64");
    let now = fstore::now_micros();
    let rows = customers(now);
    let file = builder.root().join("incoming/customers.parquet");
    write_customers(&file, &rows);
    // No sample data in defs/data: the initial load fails, logged, server still serves.
    let server = builder.start();

    let out = server.cli(&["ingest", "--source", "customers", "--replace", file.to_str().unwrap()]);
    assert!(out.status.success(), "ingest failed: {}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let filtered = rows.iter().filter(|r| r.active != Some(true)).count();
    assert!(text.contains("300"), "rows read in report: {text}");
    assert!(text.contains("customers.parquet row 17: key `customer_id` (field `cid`) is null"), "{text}");
    assert!(text.contains("customers.parquet row 29: column `visits`"), "{text}");
    // 2 rejected; rows filtered out of the only view are neither written nor rejected.
    let expected_written = rows.len()
        - 2
        - rows.iter().enumerate().filter(|(i, r)| *i != 17 && *i != 29 && r.active != Some(true)).count();
    assert!(filtered > 0);
    assert!(text.contains(&format!("{expected_written}")), "rows written {expected_written} in: {text}");

    // Ask for every generated key, plus two unknown ones.
    let mut keys: Vec<i64> = rows.iter().filter_map(|r| r.cid).collect();
    keys.extend([-5, 999_999]);
    let rt = rt();
    let response = rt.block_on(async {
        let mut client = server.serving().await;
        client
            .get_online_features(request_refs(
                &["customer_features.*"],
                vec![("customer_id", keys.iter().map(|k| int(*k)).collect())],
            ))
            .await
            .unwrap()
            .into_inner()
    });
    let names: Vec<&str> = response.features.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "customer_features.name_upper",
            "customer_features.name_len",
            "customer_features.score",
            "customer_features.score_x2",
            "customer_features.visits",
            "customer_features.is_vip",
            "customer_features.segment",
            "customer_features.signup",
            "customer_features.emb"
        ]
    );

    let mut checked = 0;
    for (row, key) in keys.iter().enumerate() {
        let input = rows.iter().enumerate().find(|(_, r)| r.cid == Some(*key));
        let stored = input.filter(|(i, r)| *i != 29 && r.active == Some(true)).map(|(_, r)| r);
        for c in &response.features {
            let status = FieldStatus::try_from(c.statuses[row]).unwrap();
            let Some(r) = stored else {
                assert_eq!(status, FieldStatus::NotFound, "key {key} column {}", c.name);
                assert_eq!(c.values[row].kind, None);
                assert_eq!(c.event_timestamps_micros[row], 0);
                continue;
            };
            assert_eq!(c.event_timestamps_micros[row], r.updated, "key {key} column {}", c.name);
            if now - r.updated > 24 * HOUR {
                assert_eq!(status, FieldStatus::OutsideMaxAge, "key {key} column {}", c.name);
                assert_eq!(c.values[row].kind, None);
                continue;
            }
            let expected: Option<Kind> = match c.name.as_str() {
                "customer_features.name_upper" => {
                    r.name.as_ref().map(|n| Kind::StringValue(n.to_uppercase()))
                }
                "customer_features.name_len" => {
                    r.name.as_ref().map(|n| Kind::Int64Value(n.chars().count() as i64))
                }
                "customer_features.score" => Some(Kind::Float64Value(r.score.unwrap_or(-1.0))),
                "customer_features.score_x2" => r.score.map(|s| Kind::Float64Value(s * 2.0)),
                "customer_features.visits" => r.visits.map(|v| Kind::Int64Value(v as i64)),
                "customer_features.is_vip" => r.visits.map(|v| Kind::BoolValue(v > 100)),
                "customer_features.segment" => {
                    r.name.as_ref().map(|n| Kind::Int64Value(expected_bucket(n, 10)))
                }
                "customer_features.signup" => r.signup.map(Kind::TimestampMicros),
                "customer_features.emb" => {
                    r.emb.clone().map(|values| Kind::Float32List(proto::Float32List { values }))
                }
                other => panic!("unexpected column {other}"),
            };
            let expected_status =
                if expected.is_some() { FieldStatus::Present } else { FieldStatus::NullValue };
            assert_eq!(status, expected_status, "key {key} column {}", c.name);
            assert_eq!(c.values[row].kind, expected, "key {key} column {}", c.name);
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} values compared");
}

#[test]
fn composite_keys_newest_wins_and_services_across_entities() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
    let dir = builder.root().join("incoming");
    let now = fstore::now_micros();
    let pairs = |ts: i64, rating: f64| -> Vec<(&str, ArrayRef)> {
        vec![
            ("cid", Arc::new(Int64Array::from(vec![1, 1, 2, 2]))),
            ("product", Arc::new(StringArray::from(vec!["a", "b", "a", "a\0b"]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![ts; 4]))),
            ("rating", Arc::new(Float64Array::from(vec![rating, rating + 1.0, rating + 2.0, rating + 3.0]))),
            ("bought", Arc::new(BooleanArray::from(vec![Some(true), None, Some(false), Some(true)]))),
        ]
    };
    write_parquet(&dir.join("new.parquet"), pairs(now - HOUR, 10.0));
    write_parquet(&dir.join("old.parquet"), pairs(now - 5 * HOUR, 0.0));
    let server = builder.start();
    let ingest = |name: &str| {
        let out = server.cli(&["ingest", "--source", "pairs", dir.join(name).to_str().unwrap()]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    };
    // The newer file first, then the older one: an older row never overwrites a newer one.
    ingest("new.parquet");
    ingest("old.parquet");

    let rt = rt();
    rt.block_on(async {
        let mut client = server.serving().await;
        let r = client
            .get_online_features(request_refs(
                &["pair_stats.rating", "pair_stats.bought"],
                vec![
                    ("customer_id", vec![int(1), int(1), int(2), int(2), int(2)]),
                    ("product", vec![string("a"), string("b"), string("a"), string("a\0b"), string("a\0")]),
                ],
            ))
            .await
            .unwrap()
            .into_inner();
        let rating = column(&r, "pair_stats.rating");
        let got: Vec<Option<Kind>> = rating.values.iter().map(|v| v.kind.clone()).collect();
        assert_eq!(
            got,
            vec![
                Some(Kind::Float64Value(10.0)),
                Some(Kind::Float64Value(11.0)),
                Some(Kind::Float64Value(12.0)),
                Some(Kind::Float64Value(13.0)),
                None
            ]
        );
        assert_eq!(rating.statuses[4], FieldStatus::NotFound as i32, "composite keys are unambiguous");
        assert_eq!(rating.event_timestamps_micros[0], now - HOUR);
        let bought = column(&r, "pair_stats.bought");
        assert_eq!(bought.statuses[1], FieldStatus::NullValue as i32);

        // A service spanning two entities needs both key columns.
        let r = client
            .get_online_features(request_service(
                "everything",
                vec![("customer_id", vec![int(1)]), ("product", vec![string("b")])],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.features.len(), 11);
        assert_eq!(column(&r, "pair_stats.rating").values[0].kind, Some(Kind::Float64Value(11.0)));
        assert_eq!(column(&r, "customer_features.score").statuses[0], FieldStatus::NotFound as i32);

        let list =
            client.list_feature_services(proto::ListFeatureServicesRequest {}).await.unwrap().into_inner();
        let everything = list.services.iter().find(|s| s.name == "everything").unwrap();
        assert_eq!(everything.entity_keys, vec!["customer_id", "product"]);
        assert_eq!(everything.features[0].name, "customer_features.name_upper");
        assert_eq!(everything.features[8].r#type, "array<float32>");
    });
}

#[test]
fn invalid_requests_are_invalid_argument_naming_the_problem() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    let ids = |n: i64| (0..n).map(int).collect::<Vec<_>>();
    let cases: Vec<(&str, proto::GetOnlineFeaturesRequest, &str)> = vec![
        (
            "unknown service",
            request_service("nope", vec![("customer_id", ids(1))]),
            "unknown feature service `nope`",
        ),
        ("unknown view", request_refs(&["nope.x"], vec![("customer_id", ids(1))]), "unknown view `nope`"),
        (
            "unknown feature",
            request_refs(&["customer_features.nope"], vec![("customer_id", ids(1))]),
            "unknown feature `nope` of view `customer_features`",
        ),
        (
            "malformed ref",
            request_refs(&["customer_features"], vec![("customer_id", ids(1))]),
            "view.feature",
        ),
        ("missing key", request_service("names", vec![]), "missing entity key column `customer_id`"),
        (
            "extra key",
            request_service("names", vec![("customer_id", ids(1)), ("shop", ids(1))]),
            "unexpected entity key column `shop`",
        ),
        (
            "unequal lengths",
            request_service("everything", vec![("customer_id", ids(2)), ("product", vec![string("a")])]),
            "differ in length",
        ),
        (
            "wrong key type",
            request_service("names", vec![("customer_id", vec![int(1), string("2")])]),
            "entity key `customer_id` value 1 is a string; `customer_id` is int64",
        ),
        (
            "null key",
            request_service("names", vec![("customer_id", vec![proto::Value::default()])]),
            "value 0 is null",
        ),
        ("no selector", proto::GetOnlineFeaturesRequest::default(), "names no features"),
        ("too many rows", request_service("names", vec![("customer_id", ids(10_001))]), "the limit is 10000"),
    ];
    let rt = rt();
    rt.block_on(async {
        let mut client = server.serving().await;
        for (what, request, expected) in cases {
            let err = client.get_online_features(request).await.expect_err(what);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err:?}");
            assert!(
                err.message().contains(expected),
                "{what}: `{}` should contain `{expected}`",
                err.message()
            );
        }
        // Zero rows is a valid request with empty columns.
        let r = client
            .get_online_features(request_service("names", vec![("customer_id", vec![])]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.features.len(), 2);
        assert!(r.features.iter().all(|c| c.values.is_empty() && c.statuses.is_empty()));
    });
}

#[test]
fn bad_files_fail_whole_naming_file_and_column_and_write_nothing() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
    let dir = builder.root().join("incoming");
    let good: Vec<(&str, ArrayRef)> = vec![
        ("cid", Arc::new(Int64Array::from(vec![1]))),
        ("product", Arc::new(StringArray::from(vec!["a"]))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1]))),
        ("rating", Arc::new(Float64Array::from(vec![1.0]))),
        ("bought", Arc::new(BooleanArray::from(vec![true]))),
    ];
    write_parquet(&dir.join("a_good.parquet"), good.clone());
    let mut missing = good.clone();
    missing.retain(|(n, _)| *n != "rating");
    write_parquet(&dir.join("b_missing.parquet"), missing);
    let mut wrong = good;
    wrong[4] = ("bought", Arc::new(StringArray::from(vec!["yes"])));
    write_parquet(&dir.join("c_wrong_type.parquet"), wrong);
    std::fs::write(dir.join("d_not_parquet.parquet"), b"hello").unwrap();
    let server = builder.start();

    let glob = dir.join("*.parquet");
    let out = server.cli(&["ingest", "--source", "pairs", glob.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("b_missing.parquet: column `rating` is missing"), "{err}");
    assert!(
        err.contains("c_wrong_type.parquet: column `bought` has type Utf8, which cannot be read as bool"),
        "{err}"
    );
    assert!(err.contains("d_not_parquet.parquet"), "{err}");

    let out = server.cli(&["ingest", "--source", "pairs", dir.join("nothing-*.parquet").to_str().unwrap()]);
    assert!(stderr(&out).contains("no Parquet files match"), "{}", stderr(&out));
    let out = server.cli(&["ingest", "--source", "nope"]);
    assert!(stderr(&out).contains("unknown source `nope`"), "{}", stderr(&out));

    // Nothing was written, not even a_good's row.
    rt().block_on(async {
        let mut client = server.serving().await;
        let r = client
            .get_online_features(request_refs(
                &["pair_stats.rating"],
                vec![("customer_id", vec![int(1)]), ("product", vec![string("a")])],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.features[0].statuses[0], FieldStatus::NotFound as i32);
    });
}

#[test]
fn an_upsert_is_served_at_once_even_after_the_row_was_cached() {
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
    let dir = builder.root().join("incoming");
    let now = fstore::now_micros();
    let write = |name: &str, ts: i64, rating: f64| {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("cid", Arc::new(Int64Array::from(vec![7]))),
            ("product", Arc::new(StringArray::from(vec!["p"]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![ts]))),
            ("rating", Arc::new(Float64Array::from(vec![rating]))),
            ("bought", Arc::new(BooleanArray::from(vec![true]))),
        ];
        write_parquet(&dir.join(name), columns);
    };
    write("v1.parquet", now - 2 * HOUR, 1.0);
    write("v2.parquet", now - HOUR, 2.0);
    let server = builder.start();
    let rating = |server: &Server| {
        rt().block_on(async {
            let r = server
                .serving()
                .await
                .get_online_features(request_refs(
                    &["pair_stats.rating"],
                    vec![("customer_id", vec![int(7)]), ("product", vec![string("p")])],
                ))
                .await
                .unwrap()
                .into_inner();
            r.features[0].values[0].kind.clone()
        })
    };
    let ingest = |name: &str| {
        let out = server.cli(&["ingest", "--source", "pairs", dir.join(name).to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    ingest("v1.parquet");
    // Read twice so the row is cached, then upsert a newer one.
    assert_eq!(rating(&server), Some(Kind::Float64Value(1.0)));
    assert_eq!(rating(&server), Some(Kind::Float64Value(1.0)));
    ingest("v2.parquet");
    assert_eq!(
        rating(&server),
        Some(Kind::Float64Value(2.0)),
        "the cache served a value older than the store"
    );
    let metrics = server.metrics_text();
    assert!(metrics.contains("fstore_row_cache{stat=\"hits\"} 1"), "{metrics}");
}
