//! Derived features, from definitions to values: a service's `request` and
//! `derived` blocks checked into the plan and evaluated with
//! [`fstore_dsl::derive`] over batches of request fields and feature
//! values, the vector functions against a direct computation, and arbitrary
//! request values never failing or panicking the evaluator.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Builder, Float64Array, Int64Array, ListBuilder,
    RecordBatch, StringArray,
};
use arrow::datatypes::{Field, Float64Type, Schema};
use fstore_dsl::plan::{Plan, Service};
use fstore_dsl::{check, derive, render, SourceFile};
use proptest::prelude::*;

const DEFS: &str = r#"
entity user { key user_id: int64 }
entity item { key item_id: string }
source users { type = parquet, path = "u/*.parquet", timestamp = ts }
source items { type = parquet, path = "i/*.parquet", timestamp = ts }
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
    dotp: float64 = dot(query_emb, user_profile.embedding)
    len: float64 = norm(query_emb)
    cheap_mobile: bool = is_mobile and price_ratio < 0.5
  }
}
"#;

fn plan() -> Plan {
    let files = [SourceFile { name: "defs.fdl".into(), text: DEFS.into() }];
    check(&files).unwrap_or_else(|d| panic!("{}", render(&d, &files)))
}

fn service(plan: &Plan) -> &Service {
    plan.service("ranker_v2").expect("the service").1
}

fn vectors(rows: &[Option<Vec<Option<f32>>>]) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for row in rows {
        match row {
            Some(items) => {
                for x in items {
                    b.values().append_option(*x);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

struct Inputs {
    device: Vec<Option<&'static str>>,
    shown_price: Vec<Option<f64>>,
    query: Vec<Option<Vec<Option<f32>>>>,
    tenure: Vec<Option<i64>>,
    embedding: Vec<Option<Vec<Option<f32>>>>,
    price: Vec<Option<f64>>,
}

fn batch(i: &Inputs) -> RecordBatch {
    let f32_list = fstore_dsl::DataType::Array(fstore_dsl::ElementType::Float32).arrow();
    let schema = Schema::new(vec![
        Field::new("device", arrow::datatypes::DataType::Utf8, true),
        Field::new("shown_price", arrow::datatypes::DataType::Float64, true),
        Field::new("query_emb", f32_list.clone(), true),
        Field::new("user_profile.tenure_days", arrow::datatypes::DataType::Int64, true),
        Field::new("user_profile.embedding", f32_list, true),
        Field::new("item_features.price", arrow::datatypes::DataType::Float64, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(i.device.clone())),
        Arc::new(Float64Array::from(i.shown_price.clone())),
        vectors(&i.query),
        Arc::new(Int64Array::from(i.tenure.clone())),
        vectors(&i.embedding),
        Arc::new(Float64Array::from(i.price.clone())),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("a valid batch")
}

fn floats(a: &ArrayRef) -> Vec<Option<f64>> {
    a.as_primitive::<Float64Type>().iter().collect()
}

/// The vector functions computed directly, in float64, for comparison.
fn direct(q: &[f32], e: &[f32]) -> (f64, f64, f64, f64) {
    let q: Vec<f64> = q.iter().map(|&x| x as f64).collect();
    let e: Vec<f64> = e.iter().map(|&x| x as f64).collect();
    let mut dot = 0.0;
    let mut nq = 0.0;
    let mut ne = 0.0;
    let mut d2 = 0.0;
    for k in 0..q.len() {
        dot += q[k] * e[k];
        nq += q[k] * q[k];
        ne += e[k] * e[k];
        d2 += (q[k] - e[k]) * (q[k] - e[k]);
    }
    (dot / (nq.sqrt() * ne.sqrt()), d2.sqrt(), dot, nq.sqrt())
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

#[test]
fn the_plan_holds_request_fields_and_derived_features_in_order() {
    let plan = plan();
    let s = service(&plan);
    let request: Vec<String> = s.request.iter().map(|f| format!("{}:{}", f.name, f.ty)).collect();
    assert_eq!(request, ["device:string", "shown_price:float64", "query_emb:array<float32>"]);
    let derived: Vec<&str> = s.derived.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        derived,
        ["price_ratio", "is_mobile", "per_day", "affinity", "dist", "dotp", "len", "cheap_mobile"]
    );
    assert_eq!(
        s.derived_inputs(),
        [
            "device",
            "item_features.price",
            "query_emb",
            "shown_price",
            "user_profile.embedding",
            "user_profile.tenure_days"
        ]
    );
    // int64 / float64 widens: the tenure is cast, as in a view.
    assert!(s.derived[2].expr.to_string().contains("as float64"), "{}", s.derived[2].expr);
}

#[test]
fn derived_values_follow_the_language_with_nulls_and_mismatched_vectors() {
    let plan = plan();
    let s = service(&plan);
    let inputs = Inputs {
        device: vec![Some("ios"), Some("web"), None, Some("android")],
        shown_price: vec![Some(5.0), Some(30.0), Some(1.0), None],
        query: vec![
            Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
            Some(vec![Some(1.0), Some(0.0)]),
            Some(vec![Some(0.0), Some(0.0)]),
            Some(vec![Some(1.0), None]),
        ],
        tenure: vec![Some(10), Some(0), Some(4), None],
        embedding: vec![
            Some(vec![Some(0.5), Some(-1.0), Some(2.0)]),
            Some(vec![Some(1.0), Some(0.0), Some(0.0)]), // length differs from the query
            Some(vec![Some(1.0), Some(1.0)]),            // query of norm zero
            Some(vec![Some(1.0), Some(1.0)]),            // query holds a null
        ],
        // The third row's item was NOT_FOUND: its features are null.
        price: vec![Some(20.0), Some(10.0), None, Some(8.0)],
    };
    let out = derive(s, &batch(&inputs)).expect("derive");
    assert_eq!(out.len(), s.derived.len());

    assert_eq!(floats(&out[0]), [Some(0.25), Some(3.0), None, None], "price_ratio");
    let mobile: Vec<Option<bool>> = out[1].as_boolean().iter().collect();
    assert_eq!(mobile, [Some(true), Some(false), None, Some(true)], "is_mobile");
    // 10.0 / 0 is not finite: null, as in a view.
    assert_eq!(floats(&out[2]), [Some(2.0), None, None, None], "per_day");

    let (cos, dist, dot, len) = direct(&[1.0, 2.0, 3.0], &[0.5, -1.0, 2.0]);
    assert!(close(floats(&out[3])[0], cos), "cosine {:?} vs {cos}", floats(&out[3]));
    assert!(close(floats(&out[4])[0], dist), "l2 {:?} vs {dist}", floats(&out[4]));
    assert!(close(floats(&out[5])[0], dot), "dot {:?} vs {dot}", floats(&out[5]));
    assert!(close(floats(&out[6])[0], len), "norm {:?} vs {len}", floats(&out[6]));
    // Row 1: lengths differ: every two-array function is null, norm is not.
    for (i, name) in [(3, "cosine"), (4, "l2_distance"), (5, "dot")] {
        assert_eq!(floats(&out[i])[1], None, "{name} of arrays of lengths 2 and 3");
    }
    assert_eq!(floats(&out[6])[1], Some(1.0));
    // Row 2: a query of norm zero: cosine is null, the distance is not.
    assert_eq!(floats(&out[3])[2], None);
    assert!(close(floats(&out[4])[2], 2f64.sqrt()));
    assert_eq!(floats(&out[6])[2], Some(0.0));
    // Row 3: a null element makes the row's vector results null.
    assert_eq!(floats(&out[3])[3], None);
    assert_eq!(floats(&out[6])[3], None);

    // A derived feature reads the ones above it.
    let cheap: Vec<Option<bool>> = out[7].as_boolean().iter().collect();
    assert_eq!(cheap, [Some(true), Some(false), None, None], "cheap_mobile");
}

#[test]
fn a_missing_input_column_is_an_error_not_a_panic() {
    let plan = plan();
    let s = service(&plan);
    let schema = Schema::new(vec![Field::new("device", arrow::datatypes::DataType::Utf8, true)]);
    let only_device = RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(StringArray::from(vec![Some("ios")])) as ArrayRef],
    )
    .unwrap();
    let err = derive(s, &only_device).expect_err("inputs are missing");
    assert!(err.to_string().contains("missing"), "{err}");
}

fn arb_vector() -> impl Strategy<Value = Option<Vec<Option<f32>>>> {
    let element = prop_oneof![
        8 => any::<f32>().prop_map(Some),
        1 => Just(Some(f32::NAN)),
        1 => Just(Some(f32::INFINITY)),
        1 => Just(Some(f32::MAX)),
        1 => Just(None),
    ];
    proptest::option::weighted(0.9, proptest::collection::vec(element, 0..6))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a request carries (nulls, NaN and infinities, huge values,
    /// arrays of any length, with null elements), derived features evaluate
    /// without error, give one value per row, and are never NaN or infinite.
    #[test]
    fn arbitrary_request_values_never_fail_the_evaluator(
        rows in proptest::collection::vec(
            (
                proptest::option::of(prop_oneof![Just("ios"), Just("android"), Just("web"), Just("")]),
                proptest::option::of(any::<f64>()),
                arb_vector(),
                proptest::option::of(any::<i64>()),
                arb_vector(),
                proptest::option::of(any::<f64>()),
            ),
            1..12,
        )
    ) {
        let plan = plan();
        let s = service(&plan);
        let inputs = Inputs {
            device: rows.iter().map(|r| r.0).collect(),
            shown_price: rows.iter().map(|r| r.1).collect(),
            query: rows.iter().map(|r| r.2.clone()).collect(),
            tenure: rows.iter().map(|r| r.3).collect(),
            embedding: rows.iter().map(|r| r.4.clone()).collect(),
            price: rows.iter().map(|r| r.5).collect(),
        };
        let out = derive(s, &batch(&inputs)).expect("derive never fails on data");
        for (d, column) in s.derived.iter().zip(&out) {
            prop_assert_eq!(column.len(), rows.len());
            prop_assert_eq!(column.data_type(), &d.ty.arrow());
            if let Some(values) = column.as_primitive_opt::<Float64Type>() {
                prop_assert!(values.iter().flatten().all(f64::is_finite), "{} holds a non-finite value", d.name);
            }
        }
        let _: &BooleanArray = out[1].as_boolean();
    }
}
