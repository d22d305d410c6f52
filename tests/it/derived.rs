//! Request-time features through the real server: a service with request
//! fields and derived features, data loaded from Parquet with the CLI,
//! lookups over gRPC with per-row and broadcast request fields, NOT_FOUND
//! and null inputs, and vector functions, each value checked against an
//! independent computation; clear errors for bad request fields; the same
//! values from `fstore eval` offline; and an apply that changes a derived
//! feature without touching any view's data.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Array, Int64Array, ListBuilder, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type};
use fstore::proto::{self, value::Kind, FieldStatus};

use crate::util::*;

const DEFS: &str = r#"
entity user { key user_id: int64 }
entity item { key item_id: string }

source users {
  type = parquet
  path = "data/users/*.parquet"
  timestamp = ts
}
source items {
  type = parquet
  path = "data/items/*.parquet"
  timestamp = ts
}

view user_profile {
  entity = user
  source = users
  features {
    tenure_days: int64 = tenure_days
    embedding: array<float32> = embedding
  }
}
view item_features {
  entity = item
  source = items
  features { price: float64 = price }
}

service ranker_v2 {
  request { device: string, shown_price: float64, query_emb: array<float32> }
  features = [user_profile.*, item_features.price]
  derived {
    price_ratio: float64 = shown_price / item_features.price
    is_mobile: bool = device in ("ios", "android")
    per_day: float64 = item_features.price / user_profile.tenure_days
    affinity: float64 = cosine(query_emb, user_profile.embedding)
    dist: float64 = l2_distance(query_emb, user_profile.embedding)
  }
}

service plain {
  features = [user_profile.*, item_features.price]
}
"#;

const DERIVED: [&str; 5] = ["price_ratio", "is_mobile", "per_day", "affinity", "dist"];

struct User {
    id: i64,
    tenure: Option<i64>,
    embedding: Option<Vec<f32>>,
}

fn users() -> Vec<User> {
    (1..=12)
        .map(|i: i64| User {
            id: i,
            // A tenure of zero makes per_day not finite: null.
            tenure: match i % 5 {
                0 => None,
                3 => Some(0),
                _ => Some(i * 7),
            },
            embedding: match i % 4 {
                0 => None,
                // A different dimension: the vector functions give null.
                1 => Some(vec![1.0, 2.0, 3.0]),
                _ => Some((0..4).map(|d| ((i * 3 + d) % 7) as f32 - 2.5).collect()),
            },
        })
        .collect()
}

fn items() -> Vec<(&'static str, Option<f64>)> {
    vec![("a", Some(10.0)), ("b", Some(2.5)), ("c", None), ("d", Some(40.0))]
}

fn load(server: &Server) {
    let now = fstore::now_micros();
    let users = users();
    let mut emb =
        ListBuilder::new(Float32Builder::new()).with_field(Field::new("item", DataType::Float32, true));
    for u in &users {
        match &u.embedding {
            Some(v) => {
                emb.values().append_slice(v);
                emb.append(true);
            }
            None => emb.append(false),
        }
    }
    let dir = server.defs.parent().unwrap().join("incoming");
    let users_file = dir.join("users.parquet");
    write_parquet(
        &users_file,
        vec![
            ("user_id", Arc::new(Int64Array::from_iter_values(users.iter().map(|u| u.id))) as ArrayRef),
            ("tenure_days", Arc::new(Int64Array::from_iter(users.iter().map(|u| u.tenure)))),
            ("embedding", Arc::new(emb.finish())),
            ("ts", Arc::new(TimestampMicrosecondArray::from_iter_values(users.iter().map(|_| now)))),
        ],
    );
    let items = items();
    let items_file = dir.join("items.parquet");
    write_parquet(
        &items_file,
        vec![
            ("item_id", Arc::new(StringArray::from_iter_values(items.iter().map(|i| i.0))) as ArrayRef),
            ("price", Arc::new(Float64Array::from_iter(items.iter().map(|i| i.1)))),
            ("ts", Arc::new(TimestampMicrosecondArray::from_iter_values(items.iter().map(|_| now)))),
        ],
    );
    for (source, file) in [("users", &users_file), ("items", &items_file)] {
        let out = server.cli(&["ingest", "--source", source, file.to_str().unwrap()]);
        assert!(out.status.success(), "ingest {source}: {}{}", stdout(&out), stderr(&out));
    }
}

/// The entity rows asked for: known pairs, an unknown user and an unknown item.
fn keys() -> Vec<(i64, &'static str)> {
    let mut keys: Vec<(i64, &str)> = (1..=12).map(|u| (u, ["a", "b", "c", "d"][u as usize % 4])).collect();
    keys.push((999, "a"));
    keys.push((2, "zzz"));
    keys
}

fn query(row: usize) -> Vec<f32> {
    (0..4).map(|d| ((row + d) % 5) as f32 * 0.5 - 1.0).collect()
}

fn floats(v: &[f32]) -> proto::Value {
    proto::Value { kind: Some(Kind::Float32List(proto::Float32List { values: v.to_vec() })) }
}

fn float(v: f64) -> proto::Value {
    proto::Value { kind: Some(Kind::Float64Value(v)) }
}

fn request(request_data: Vec<(&str, Vec<proto::Value>)>) -> proto::GetOnlineFeaturesRequest {
    let keys = keys();
    let mut r = request_service(
        "ranker_v2",
        vec![
            ("user_id", keys.iter().map(|k| int(k.0)).collect()),
            ("item_id", keys.iter().map(|k| string(k.1)).collect()),
        ],
    );
    r.request_data =
        request_data.into_iter().map(|(k, v)| (k.to_string(), proto::Values { values: v })).collect();
    r
}

/// What each derived feature should be for one row, computed here from the
/// generated data and the docs' rules (nulls propagate, a non-finite result
/// and vectors of unequal length are null).
#[derive(Debug, PartialEq)]
struct Expected {
    price_ratio: Option<f64>,
    is_mobile: Option<bool>,
    per_day: Option<f64>,
    affinity: Option<f64>,
    dist: Option<f64>,
}

fn expected(
    user: Option<&User>,
    price: Option<f64>,
    device: Option<&str>,
    shown: Option<f64>,
    q: &[f32],
) -> Expected {
    let finite = |x: f64| x.is_finite().then_some(x);
    let emb = user.and_then(|u| u.embedding.as_ref()).filter(|e| e.len() == q.len());
    let q64: Vec<f64> = q.iter().map(|&x| x as f64).collect();
    let e64: Option<Vec<f64>> = emb.map(|e| e.iter().map(|&x| x as f64).collect());
    Expected {
        price_ratio: shown.zip(price).and_then(|(s, p)| finite(s / p)),
        is_mobile: device.map(|d| d == "ios" || d == "android"),
        per_day: price.zip(user.and_then(|u| u.tenure)).and_then(|(p, t)| finite(p / t as f64)),
        affinity: e64.as_ref().and_then(|e| {
            let dot: f64 = q64.iter().zip(e).map(|(a, b)| a * b).sum();
            let nq = q64.iter().map(|a| a * a).sum::<f64>().sqrt();
            let ne = e.iter().map(|a| a * a).sum::<f64>().sqrt();
            (nq * ne > 0.0).then(|| dot / (nq * ne))
        }),
        dist: e64.as_ref().map(|e| q64.iter().zip(e).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()),
    }
}

fn f64_at(c: &proto::FeatureColumn, row: usize) -> Option<f64> {
    match c.values[row].kind {
        Some(Kind::Float64Value(x)) => Some(x),
        None => None,
        ref other => panic!("{} row {row} is {other:?}", c.name),
    }
}

fn bool_at(c: &proto::FeatureColumn, row: usize) -> Option<bool> {
    match c.values[row].kind {
        Some(Kind::BoolValue(x)) => Some(x),
        None => None,
        ref other => panic!("{} row {row} is {other:?}", c.name),
    }
}

fn actual(r: &proto::GetOnlineFeaturesResponse, row: usize) -> Expected {
    Expected {
        price_ratio: f64_at(column(r, "price_ratio"), row),
        is_mobile: bool_at(column(r, "is_mobile"), row),
        per_day: f64_at(column(r, "per_day"), row),
        affinity: f64_at(column(r, "affinity"), row),
        dist: f64_at(column(r, "dist"), row),
    }
}

fn close(a: &Expected, b: &Expected) -> bool {
    let near = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * y.abs().max(1.0),
        (None, None) => true,
        _ => false,
    };
    near(a.price_ratio, b.price_ratio)
        && a.is_mobile == b.is_mobile
        && near(a.per_day, b.per_day)
        && near(a.affinity, b.affinity)
        && near(a.dist, b.dist)
}

fn check_statuses(r: &proto::GetOnlineFeaturesResponse) {
    for name in DERIVED {
        let c = column(r, name);
        for (row, v) in c.values.iter().enumerate() {
            let want = if v.kind.is_some() { FieldStatus::Present } else { FieldStatus::NullValue };
            assert_eq!(c.statuses[row], want as i32, "{name} row {row}");
            assert_eq!(
                c.event_timestamps_micros[row], 0,
                "{name} row {row}: derived values have no event time"
            );
        }
    }
}

#[test]
fn derived_features_are_computed_per_request_with_per_row_and_broadcast_fields() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    load(&server);
    let users = users();
    let items: HashMap<&str, Option<f64>> = items().into_iter().collect();
    let keys = keys();
    let rows = keys.len();
    let devices = ["ios", "web", "android"];
    let rt = rt();
    let mut client = rt.block_on(server.serving());

    // Per-row request fields, with a null device and a null price among them.
    let device_at = |row: usize| (row % 5 != 4).then(|| devices[row % 3]);
    let shown_at = |row: usize| (row % 6 != 5).then_some(row as f64 * 1.5 + 1.0);
    let per_row = request(vec![
        ("device", (0..rows).map(|r| device_at(r).map_or(proto::Value::default(), string)).collect()),
        ("shown_price", (0..rows).map(|r| shown_at(r).map_or(proto::Value::default(), float)).collect()),
        ("query_emb", (0..rows).map(|r| floats(&query(r))).collect()),
    ]);
    let response = rt.block_on(client.get_online_features(per_row)).expect("lookup").into_inner();
    let names: Vec<&str> = response.features.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "user_profile.tenure_days",
            "user_profile.embedding",
            "item_features.price",
            "price_ratio",
            "is_mobile",
            "per_day",
            "affinity",
            "dist"
        ],
        "the service's features, then its derived features in declared order"
    );
    check_statuses(&response);
    let mut nulls = 0;
    let mut present = 0;
    for (row, (user, item)) in keys.iter().enumerate() {
        let user = users.iter().find(|u| u.id == *user);
        let price = items.get(item).copied().flatten();
        let want = expected(user, price, device_at(row), shown_at(row), &query(row));
        let got = actual(&response, row);
        assert!(
            close(&got, &want),
            "row {row} ({user:?}?, {item}): got {got:?}, want {want:?}",
            user = user.map(|u| u.id)
        );
        nulls +=
            [got.price_ratio, got.per_day, got.affinity, got.dist].iter().filter(|x| x.is_none()).count();
        present +=
            [got.price_ratio, got.per_day, got.affinity, got.dist].iter().filter(|x| x.is_some()).count();
    }
    assert!(nulls > 5 && present > 10, "the data exercises both: {nulls} nulls, {present} values");
    // The unknown user's and unknown item's features are NOT_FOUND; what
    // derives from them is null.
    let unknown_user = rows - 2;
    assert_eq!(
        column(&response, "user_profile.tenure_days").statuses[unknown_user],
        FieldStatus::NotFound as i32
    );
    assert_eq!(column(&response, "per_day").statuses[unknown_user], FieldStatus::NullValue as i32);
    assert_eq!(column(&response, "price_ratio").statuses[rows - 1], FieldStatus::NullValue as i32);

    // One value for every row: the same as that value repeated.
    let q = [0.5f32, -1.0, 2.0, 0.25];
    let broadcast = request(vec![
        ("device", vec![string("android")]),
        ("shown_price", vec![float(7.5)]),
        ("query_emb", vec![floats(&q)]),
    ]);
    let repeated = request(vec![
        ("device", vec![string("android"); rows]),
        ("shown_price", vec![float(7.5); rows]),
        ("query_emb", vec![floats(&q); rows]),
    ]);
    let a = rt.block_on(client.get_online_features(broadcast)).expect("broadcast").into_inner();
    let b = rt.block_on(client.get_online_features(repeated)).expect("repeated").into_inner();
    assert_eq!(a, b);
    for (row, (user, item)) in keys.iter().enumerate() {
        let user = users.iter().find(|u| u.id == *user);
        let want = expected(user, items.get(item).copied().flatten(), Some("android"), Some(7.5), &q);
        assert!(close(&actual(&a, row), &want), "broadcast row {row}: {:?} vs {want:?}", actual(&a, row));
    }

    // What a client learns of the service.
    let list =
        rt.block_on(client.list_feature_services(proto::ListFeatureServicesRequest {})).unwrap().into_inner();
    let info = list.services.iter().find(|s| s.name == "ranker_v2").expect("ranker_v2 listed");
    let request_fields: Vec<(&str, &str)> =
        info.request_fields.iter().map(|f| (f.name.as_str(), f.r#type.as_str())).collect();
    assert_eq!(
        request_fields,
        [("device", "string"), ("shown_price", "float64"), ("query_emb", "array<float32>")]
    );
    let features: Vec<&str> = info.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(&features[3..], DERIVED);
    assert_eq!(info.features[6].r#type, "float64");
    let plain = list.services.iter().find(|s| s.name == "plain").unwrap();
    assert!(plain.request_fields.is_empty());

    // The CLI sends request fields typed by the service's description.
    let out = server.cli(&[
        "get",
        "--service",
        "ranker_v2",
        "--key",
        "user_id=2",
        "--key",
        "item_id=a",
        "--request",
        "device=ios",
        "--request",
        "shown_price=5",
        "--request",
        "query_emb=[1,0,0,0]",
        "--json",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ratio = json.as_array().unwrap().iter().find(|c| c["name"] == "price_ratio").unwrap();
    assert_eq!(ratio["values"][0], 0.5);
}

#[test]
fn bad_request_fields_are_refused_with_their_names_and_the_server_keeps_serving() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    load(&server);
    let rows = keys().len();
    let rt = rt();
    let mut client = rt.block_on(server.serving());
    let good = || {
        vec![
            ("device", vec![string("ios")]),
            ("shown_price", vec![float(1.0)]),
            ("query_emb", vec![floats(&[1.0, 0.0, 0.0, 0.0])]),
        ]
    };
    let refused = |data: Vec<(&str, Vec<proto::Value>)>| {
        let status = rt.block_on(client.clone().get_online_features(request(data))).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{}", status.message());
        status.message().to_string()
    };

    let mut missing = good();
    missing.remove(1);
    let m = refused(missing);
    assert!(m.contains("missing request field `shown_price` (float64)"), "{m}");
    assert!(m.contains("device (string), shown_price (float64), query_emb (array<float32>)"), "{m}");

    let mut wrong_type = good();
    wrong_type[1].1 = vec![string("cheap")];
    let m = refused(wrong_type);
    assert!(m.contains("request field `shown_price` value 0 is a string; `shown_price` is float64"), "{m}");

    let mut wrong_length = good();
    wrong_length[0].1 = vec![string("ios"), string("web")];
    let m = refused(wrong_length);
    assert!(
        m.contains(&format!("request field `device` has 2 values; give one (for every row) or {rows}")),
        "{m}"
    );

    let mut extra = good();
    extra.push(("color", vec![string("red")]));
    let m = refused(extra);
    assert!(m.contains("unexpected request field `color`"), "{m}");

    // Request data for a service without a request block, or with references.
    let mut plain = request(good());
    plain.selector = Some(proto::get_online_features_request::Selector::FeatureService("plain".into()));
    let status = rt.block_on(client.get_online_features(plain)).expect_err("plain takes no request data");
    assert!(status.message().contains("service `plain` declares no request fields"), "{}", status.message());
    let mut refs = request_refs(&["item_features.price"], vec![("item_id", vec![string("a")])]);
    refs.request_data.insert("device".into(), proto::Values { values: vec![string("ios")] });
    let status = rt.block_on(client.get_online_features(refs)).expect_err("references take no request data");
    assert!(status.message().contains("request data is for feature services"), "{}", status.message());

    // An integer for a float field is taken as the number it is.
    let mut int_price = good();
    int_price[1].1 = vec![int(2)];
    let r = rt.block_on(client.get_online_features(request(int_price))).expect("an int64 price").into_inner();
    assert_eq!(f64_at(column(&r, "price_ratio"), 0), Some(2.0 / 2.5), "user 1's item is b, at 2.5");

    // Nothing of that disturbed serving.
    let ok = rt.block_on(client.get_online_features(request(good()))).expect("a good request").into_inner();
    assert_eq!(column(&ok, "price_ratio").values.len(), rows);
}

/// Write the server's answer as a training pipeline would hold it: request
/// fields and feature values in columns named as in the definitions.
fn training_rows(
    path: &std::path::Path,
    r: &proto::GetOnlineFeaturesResponse,
    devices: &[Option<&str>],
    shown: &[Option<f64>],
    queries: &[Vec<f32>],
) {
    let mut emb =
        ListBuilder::new(Float32Builder::new()).with_field(Field::new("item", DataType::Float32, true));
    for v in &column(r, "user_profile.embedding").values {
        match &v.kind {
            Some(Kind::Float32List(l)) => {
                emb.values().append_slice(&l.values);
                emb.append(true);
            }
            _ => emb.append(false),
        }
    }
    let mut q =
        ListBuilder::new(Float32Builder::new()).with_field(Field::new("item", DataType::Float32, true));
    for v in queries {
        q.values().append_slice(v);
        q.append(true);
    }
    let tenure = column(r, "user_profile.tenure_days").values.iter().map(|v| match v.kind {
        Some(Kind::Int64Value(x)) => Some(x),
        _ => None,
    });
    let price = column(r, "item_features.price").values.iter().map(|v| match v.kind {
        Some(Kind::Float64Value(x)) => Some(x),
        _ => None,
    });
    write_parquet(
        path,
        vec![
            ("label", Arc::new(Int64Array::from_iter_values(0..devices.len() as i64)) as ArrayRef),
            ("device", Arc::new(StringArray::from(devices.to_vec()))),
            ("shown_price", Arc::new(Float64Array::from(shown.to_vec()))),
            ("query_emb", Arc::new(q.finish())),
            // int32 in the file: read as the feature's int64, as ingest would.
            (
                "user_profile.tenure_days",
                Arc::new(arrow::array::Int32Array::from_iter(tenure.map(|t| t.map(|t| t as i32)))),
            ),
            ("user_profile.embedding", Arc::new(emb.finish())),
            ("item_features.price", Arc::new(Float64Array::from_iter(price))),
        ],
    );
}

/// `fstore eval --service ranker_v2` over `input`, into `out`.
fn eval(defs: &std::path::Path, input: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    std::process::Command::new(bin())
        .args(["eval", "--service", "ranker_v2", "--defs"])
        .arg(defs)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn fstore_eval_computes_what_the_server_serves_value_for_value() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    load(&server);
    let rows = keys().len();
    let devices: Vec<Option<&str>> = (0..rows).map(|r| (r % 4 != 1).then(|| ["ios", "web"][r % 2])).collect();
    let shown: Vec<Option<f64>> = (0..rows).map(|r| (r % 7 != 2).then_some(r as f64 * 0.75 + 0.5)).collect();
    let queries: Vec<Vec<f32>> = (0..rows).map(query).collect();
    let rt = rt();
    let mut client = rt.block_on(server.serving());
    let response = rt
        .block_on(client.get_online_features(request(vec![
            ("device", devices.iter().map(|d| d.map_or(proto::Value::default(), string)).collect()),
            ("shown_price", shown.iter().map(|s| s.map_or(proto::Value::default(), float)).collect()),
            ("query_emb", queries.iter().map(|q| floats(q)).collect()),
        ])))
        .expect("lookup")
        .into_inner();

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.parquet");
    let out = dir.path().join("out.parquet");
    training_rows(&input, &response, &devices, &shown, &queries);
    let run = eval(&server.defs, &input, &out);
    assert!(run.status.success(), "{}{}", stdout(&run), stderr(&run));
    assert!(stdout(&run).contains(&format!("{rows} rows")), "{}", stdout(&run));

    let file = std::fs::File::open(&out).unwrap();
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), rows);
    // The input's columns are carried through, the derived ones appended.
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(&names[..2], ["label", "device"]);
    assert_eq!(&names[7..], DERIVED);
    let mut compared = 0;
    for name in DERIVED {
        let served = column(&response, name);
        let offline = batch.column_by_name(name).unwrap();
        for row in 0..rows {
            let want = &served.values[row].kind;
            match offline.data_type() {
                DataType::Float64 => {
                    let got =
                        (!offline.is_null(row)).then(|| offline.as_primitive::<Float64Type>().value(row));
                    let served = match want {
                        Some(Kind::Float64Value(x)) => Some(*x),
                        _ => None,
                    };
                    // Bit for bit: the same evaluator over the same values.
                    assert_eq!(got.map(f64::to_bits), served.map(f64::to_bits), "{name} row {row}");
                }
                DataType::Boolean => {
                    let got = (!offline.is_null(row)).then(|| offline.as_boolean().value(row));
                    let served = match want {
                        Some(Kind::BoolValue(x)) => Some(*x),
                        _ => None,
                    };
                    assert_eq!(got, served, "{name} row {row}");
                }
                other => panic!("{name} is {other}"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, rows * DERIVED.len());

    // A file without an input column: a clear error naming it.
    write_parquet(&input, vec![("device", Arc::new(StringArray::from(vec!["ios"])) as ArrayRef)]);
    let run = eval(&server.defs, &input, &out);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains(
            "has no column `item_features.price` (float64), which the derived features of `ranker_v2` read"
        ),
        "{}",
        stderr(&run)
    );
}

#[test]
fn changing_a_derived_feature_is_a_service_change_that_keeps_every_view() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    load(&server);
    let new_defs = DEFS.replace(
        "price_ratio: float64 = shown_price / item_features.price",
        "price_ratio: float64 = item_features.price / shown_price",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("defs.fdl"), &new_defs).unwrap();
    let out = server.cli(&["apply", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("derived feature `price_ratio` changed"), "{text}");
    for view in ["user_profile", "item_features"] {
        let line = text.lines().find(|l| l.contains(view)).unwrap_or_else(|| panic!("{view} in {text}"));
        assert!(line.contains("unchanged") && line.contains("kept"), "{line}");
    }
    assert!(text.contains("applied"), "{text}");

    // The data is still there and the new expression is served.
    let rt = rt();
    let mut client = rt.block_on(server.serving());
    let mut r = request_service("ranker_v2", vec![("user_id", vec![int(2)]), ("item_id", vec![string("a")])]);
    r.request_data = [
        ("device", string("ios")),
        ("shown_price", float(4.0)),
        ("query_emb", floats(&[1.0, 0.0, 0.0, 0.0])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), proto::Values { values: vec![v] }))
    .collect();
    let response = rt.block_on(client.get_online_features(r)).unwrap().into_inner();
    assert_eq!(column(&response, "item_features.price").statuses[0], FieldStatus::Present as i32);
    assert_eq!(f64_at(column(&response, "price_ratio"), 0), Some(10.0 / 4.0));

    // A derived feature with a check error is refused with file:line:col.
    std::fs::write(
        dir.path().join("defs.fdl"),
        new_defs.replace("device in (\"ios\", \"android\")", "devise in (\"ios\", \"android\")"),
    )
    .unwrap();
    let out = server.cli(&["apply", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("error[E0506]: unknown name `devise` in service `ranker_v2`"), "{err}");
    assert!(err.contains("did you mean `device`?"), "{err}");
}
