//! The feature-definition language's row evaluator: rows per second for the
//! example `user_profile` view's features (string case mapping, coalesce,
//! `in`, date arithmetic, bucketize, an embedding pass-through) over one
//! 8,192-row batch; a service's derived features over one request's 100
//! rows; and the checker's cost on the example definitions.
//!
//! Run: `cargo bench --bench dsl` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Schema};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fstore_dsl::plan::ViewBody;

const ROWS: usize = 8192;

fn batch() -> RecordBatch {
    let countries = ["FR", "DE", "US", "JP", "Straße"];
    let tiers = ["free", "silver", "gold", "platinum"];
    let mut emb = ListBuilder::new(Float32Builder::new());
    for r in 0..ROWS {
        for d in 0..16 {
            emb.values().append_value((r + d) as f32);
        }
        emb.append(true);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(Int64Array::from_iter_values(0..ROWS as i64))),
        (
            "event_ts",
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..ROWS as i64).map(|r| 1_795_132_800_000_000 + r),
            )),
        ),
        (
            "country",
            Arc::new(StringArray::from_iter((0..ROWS).map(|r| (r % 13 != 0).then(|| countries[r % 5])))),
        ),
        (
            "spend_30d",
            Arc::new(Float64Array::from_iter((0..ROWS).map(|r| (r % 7 != 0).then_some(r as f64 * 0.5)))),
        ),
        ("tier", Arc::new(StringArray::from_iter_values((0..ROWS).map(|r| tiers[r % 4])))),
        (
            "signup_ts",
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..ROWS as i64).map(|r| 1_600_000_000_000_000 + r * 1_000_000),
            )),
        ),
        (
            "age",
            Arc::new(Int64Array::from_iter((0..ROWS).map(|r| (r % 29 != 0).then_some(16 + (r % 60) as i64)))),
        ),
        ("orders_90d", Arc::new(Int64Array::from_iter_values((0..ROWS as i64).map(|r| r % 40)))),
        ("embedding", Arc::new(emb.finish())),
    ];
    let schema = Schema::new(
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap()
}

fn example_plan() -> fstore_dsl::Plan {
    let defs = Path::new(env!("CARGO_MANIFEST_DIR")).join("feature_defs");
    let files = fstore_dsl::load_dir(&defs).unwrap();
    fstore_dsl::check(&files).unwrap_or_else(|d| panic!("{}", fstore_dsl::render(&d, &files)))
}

fn evaluate(c: &mut Criterion) {
    let plan = example_plan();
    let (_, view) = plan.view("user_profile").unwrap();
    let ViewBody::Row { features } = &view.body else { panic!("user_profile is a row view") };
    // Convert the columns to the types the checker inferred for user_daily,
    // as ingest does (the file's int64 `age` is read as float64, say).
    let raw = batch();
    let (_, source) = plan.source("user_daily").unwrap();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (name, ty) in &source.fields {
        let column = raw.column_by_name(name).unwrap();
        let column = match ty {
            Some(ty) => fstore::ingest::convert::convert(column, *ty).unwrap().0,
            None => column.clone(),
        };
        fields.push(Field::new(name, column.data_type().clone(), true));
        columns.push(column);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let mut group = c.benchmark_group("eval");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("user_profile_7_features", |b| {
        b.iter(|| {
            for f in features {
                black_box(fstore_dsl::eval(&f.expr, &batch).unwrap());
            }
        })
    });
    for f in features {
        group.bench_function(format!("feature/{}", f.name), |b| {
            b.iter(|| black_box(fstore_dsl::eval(&f.expr, &batch).unwrap()))
        });
    }
    group.finish();
}

/// The derived features of the example `item_ranker_v3` (a ratio, `in`, a
/// cosine and a dot product of 16-dimension embeddings) over the 100 rows
/// of one request: what a lookup of that service adds to the stored ones.
fn derive(c: &mut Criterion) {
    const REQUEST_ROWS: usize = 100;
    let plan = example_plan();
    let (_, service) = plan.service("item_ranker_v3").unwrap();
    let embeddings = |seed: usize| {
        let mut b = ListBuilder::new(Float32Builder::new());
        for r in 0..REQUEST_ROWS {
            for d in 0..16 {
                b.values().append_value(((r * 7 + d * 3 + seed) % 11) as f32 - 5.0);
            }
            b.append(true);
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("device", Arc::new(StringArray::from_iter_values((0..REQUEST_ROWS).map(|r| ["ios", "web"][r % 2])))),
        ("shown_price", Arc::new(Float64Array::from_iter_values((0..REQUEST_ROWS).map(|r| r as f64 + 0.5)))),
        ("query_emb", embeddings(1)),
        ("user_profile.embedding", embeddings(2)),
        (
            "item_features.price",
            Arc::new(Float64Array::from_iter_values((0..REQUEST_ROWS).map(|r| r as f64 * 2.0))),
        ),
        ("item_features.embedding", embeddings(3)),
    ];
    let schema = Schema::new(
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
    );
    let inputs =
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut group = c.benchmark_group("derive");
    group.throughput(Throughput::Elements(REQUEST_ROWS as u64));
    group.bench_function("item_ranker_v3_100_rows", |b| {
        b.iter(|| black_box(fstore_dsl::derive(service, &inputs).unwrap()))
    });
    group.finish();
}

fn check(c: &mut Criterion) {
    let defs = Path::new(env!("CARGO_MANIFEST_DIR")).join("feature_defs");
    let files = fstore_dsl::load_dir(&defs).unwrap();
    c.bench_function("check/example_definitions", |b| {
        b.iter(|| fstore_dsl::check(black_box(&files)).unwrap())
    });
}

criterion_group!(benches, evaluate, derive, check);
criterion_main!(benches);
