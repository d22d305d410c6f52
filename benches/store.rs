//! Store read path: what one lookup costs below gRPC.
//!
//! - `decode_row/50_features`: decoding one stored row of 50 mixed features
//!   (ints, floats, strings, a 32-float embedding) into response values.
//! - `multi_get/{1,100}_keys`: RocksDB batched multi-get of 1 and 100 random
//!   keys from a view of 200,000 rows, data in the block cache.
//!
//! Run: `cargo bench --bench store` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Builder, Float64Array, Int64Array, ListBuilder, StringArray};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fstore::config::Config;
use fstore::store::codec::{decode_row, encode_row, ColumnRef};
use fstore::store::keys::{push_key_part, view_prefix, KeyPart};
use fstore::store::{Durability, Store};
use fstore_dsl::{DataType, ElementType};

/// 50 features: 20 int64, 20 float64, 9 strings and one array<float32> of 32.
fn sample_columns(rows: usize) -> (Vec<DataType>, Vec<ArrayRef>) {
    let mut types = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for i in 0..20 {
        types.push(DataType::Int64);
        arrays.push(Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|r| r * 31 + i))));
    }
    for i in 0..20 {
        types.push(DataType::Float64);
        arrays.push(Arc::new(Float64Array::from_iter_values((0..rows).map(|r| r as f64 * 0.5 + i as f64))));
    }
    for i in 0..9 {
        types.push(DataType::String);
        arrays.push(Arc::new(StringArray::from_iter_values((0..rows).map(|r| format!("value-{i}-{r}")))));
    }
    types.push(DataType::Array(ElementType::Float32));
    let mut emb = ListBuilder::new(Float32Builder::new());
    for r in 0..rows {
        for d in 0..32 {
            emb.values().append_value((r * 32 + d) as f32 / 1000.0);
        }
        emb.append(true);
    }
    arrays.push(Arc::new(emb.finish()));
    (types, arrays)
}

fn decode(c: &mut Criterion) {
    let (types, arrays) = sample_columns(1);
    let refs: Vec<ColumnRef> =
        arrays.iter().zip(&types).map(|(a, t)| ColumnRef::new(a, *t).unwrap()).collect();
    let mut encoded = Vec::new();
    encode_row(1_700_000_000_000_000, &refs, 0, &mut encoded).unwrap();
    let mut group = c.benchmark_group("decode_row");
    group.throughput(Throughput::Elements(types.len() as u64));
    group.bench_function("50_features", |b| b.iter(|| decode_row(black_box(&encoded), &types).unwrap()));
    group.finish();
}

fn multi_get(c: &mut Criterion) {
    const ROWS: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &Config::defaults().store).unwrap();
    let (types, arrays) = sample_columns(ROWS);
    let refs: Vec<ColumnRef> =
        arrays.iter().zip(&types).map(|(a, t)| ColumnRef::new(a, *t).unwrap()).collect();
    let key = |id: i64| {
        let mut k = view_prefix(7, 1).to_vec();
        push_key_part(&mut k, KeyPart::Int(id));
        k
    };
    let mut value = Vec::new();
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(10_000) {
        let mut batch = store.batch();
        for &row in chunk {
            encode_row(1, &refs, row, &mut value).unwrap();
            batch.upsert(&key(row as i64), &value);
        }
        store.write_rows(batch, Durability::FlushBeforeCommit).unwrap();
    }
    store.flush_rows().unwrap();
    if std::env::var_os("BENCH_NO_COMPACT").is_none() {
        store.compact_generation(7, 1);
    }

    // A fixed pseudo-random key sequence (LCG) so runs compare.
    let mut state = 12345u64;
    let mut next_key = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        key(((state >> 33) % ROWS as u64) as i64)
    };
    let mut group = c.benchmark_group("multi_get");
    for n in [1usize, 100] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_keys"), |b| {
            b.iter_batched(
                || (0..n).map(|_| next_key()).collect::<Vec<_>>(),
                |keys| {
                    let found = store.multi_get_rows(&keys);
                    black_box(found.iter().filter(|r| matches!(r, Ok(Some(_)))).count())
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decode, multi_get);
criterion_main!(benches);
