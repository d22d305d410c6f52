//! Writes the sample Parquet data that the example definitions in
//! `feature_defs/` load on a server's first start.
//!
//! Deterministic (a fixed-seed generator), so re-running it reproduces the
//! checked-in files byte for byte:
//!
//! ```sh
//! cargo run --example gen_sample_data -- feature_defs/data
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Builder, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

const USERS: i64 = 1000;
const ITEMS: usize = 400;
const DIM: usize = 16;
/// 2026-11-20T00:00:00Z: the sample's "today".
const TODAY_MS: i64 = 1_795_132_800_000;
const DAY_MS: i64 = 86_400_000;

/// SplitMix64: tiny, fixed, and the same on every platform.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn embeddings(rng: &mut Rng, n: usize) -> ArrayRef {
    let mut b =
        ListBuilder::new(Float32Builder::new()).with_field(Field::new("item", DataType::Float32, true));
    for _ in 0..n {
        for _ in 0..DIM {
            b.values().append_value((rng.unit() * 2.0 - 1.0) as f32);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().expect("a file path")).expect("creating the output folder");
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect())
        .expect("columns of equal length");
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut w = ArrowWriter::try_new(File::create(path).expect("creating file"), schema, Some(props))
        .expect("a Parquet writer");
    w.write(&batch).expect("writing rows");
    w.close().expect("closing the file");
    println!("wrote {}", path.display());
}

fn user_day(out: &Path, rng: &mut Rng, day: i64) {
    let countries = ["FR", "DE", "US", "JP", "BR", "IN", "Es", "GB"];
    let tiers = ["free", "silver", "gold", "platinum"];
    let n = USERS as usize;
    let ts = TODAY_MS - day * DAY_MS;
    let user_id: Vec<i64> = (1..=USERS).collect();
    // Every 97th user has no country (the view's filter skips them) and every
    // 13th has no recorded spend (coalesced to 0.0).
    let country: Vec<Option<&str>> = (0..n).map(|i| (i % 97 != 50).then(|| rng.pick(&countries))).collect();
    let spend: Vec<Option<f64>> =
        (0..n).map(|i| (i % 13 != 7).then(|| (rng.unit() * 500.0 * 100.0).round() / 100.0)).collect();
    let tier: Vec<&str> = (0..n).map(|_| rng.pick(&tiers)).collect();
    let signup: Vec<i64> = (0..n).map(|_| TODAY_MS - (30 + rng.below(2000) as i64) * DAY_MS).collect();
    let age: Vec<Option<i64>> = (0..n).map(|i| (i % 29 != 3).then(|| 16 + rng.below(60) as i64)).collect();
    let orders: Vec<i64> = (0..n).map(|_| rng.below(40) as i64).collect();
    write(
        &out.join(format!("user_daily/day-{day}.parquet")),
        vec![
            ("user_id", Arc::new(Int64Array::from(user_id))),
            ("event_ts", Arc::new(TimestampMillisecondArray::from(vec![ts; n]).with_timezone("UTC"))),
            ("country", Arc::new(StringArray::from(country))),
            ("spend_30d", Arc::new(Float64Array::from(spend))),
            ("tier", Arc::new(StringArray::from(tier))),
            ("signup_ts", Arc::new(TimestampMillisecondArray::from(signup).with_timezone("UTC"))),
            ("age", Arc::new(Int64Array::from(age))),
            ("orders_90d", Arc::new(Int64Array::from(orders))),
            ("embedding", embeddings(rng, n)),
        ],
    );
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "feature_defs/data".into()));
    let mut rng = Rng(42);
    // Two daily snapshots: the newer one (day 0) wins for every user.
    user_day(&out, &mut rng, 1);
    user_day(&out, &mut rng, 0);

    let categories = ["books", "shoes", "kitchen", "garden", "toys", "audio"];
    let brands = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne"];
    let words = ["red", "classic", "smart", "mini", "pro", "eco", "deluxe", "café", "größe"];
    let item_ids: Vec<String> = (0..ITEMS).map(|i| format!("sku-{i:04}")).collect();
    let titles: Vec<String> = (0..ITEMS)
        .map(|_| (0..2 + rng.below(3)).map(|_| rng.pick(&words)).collect::<Vec<_>>().join(" "))
        .collect();
    write(
        &out.join("item_catalog/catalog.parquet"),
        vec![
            ("item_id", Arc::new(StringArray::from(item_ids.clone()))),
            (
                "updated_at",
                Arc::new(TimestampMillisecondArray::from(
                    (0..ITEMS).map(|_| TODAY_MS - rng.below(10 * DAY_MS as u64) as i64).collect::<Vec<_>>(),
                )),
            ),
            (
                "category",
                Arc::new(StringArray::from((0..ITEMS).map(|_| rng.pick(&categories)).collect::<Vec<_>>())),
            ),
            (
                "price",
                Arc::new(Float64Array::from(
                    (0..ITEMS)
                        .map(|_| (rng.unit() * 300.0 * 100.0).round() / 100.0 + 1.0)
                        .collect::<Vec<_>>(),
                )),
            ),
            ("title", Arc::new(StringArray::from(titles))),
            ("brand", Arc::new(StringArray::from((0..ITEMS).map(|_| rng.pick(&brands)).collect::<Vec<_>>()))),
            (
                "in_stock",
                Arc::new(BooleanArray::from(
                    (0..ITEMS).map(|i| (i % 11 != 0).then(|| rng.below(5) != 0)).collect::<Vec<_>>(),
                )),
            ),
            ("embedding", embeddings(&mut rng, ITEMS)),
        ],
    );

    let pairs = 3000;
    let users: Vec<i64> = (0..pairs).map(|_| 1 + rng.below(USERS as u64) as i64).collect();
    let items: Vec<String> = (0..pairs).map(|_| item_ids[rng.below(ITEMS as u64) as usize].clone()).collect();
    write(
        &out.join("user_item_daily/day-0.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(users))),
            ("item_id", Arc::new(StringArray::from(items))),
            (
                "event_ts",
                Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(vec![TODAY_MS * 1000; pairs])
                        .with_timezone("UTC"),
                ),
            ),
            (
                "views_30d",
                Arc::new(Int64Array::from((0..pairs).map(|_| rng.below(50) as i64).collect::<Vec<_>>())),
            ),
            (
                "purchased",
                Arc::new(BooleanArray::from((0..pairs).map(|_| rng.below(4) == 0).collect::<Vec<_>>())),
            ),
            (
                "last_view_ts",
                Arc::new(TimestampMillisecondArray::from(
                    (0..pairs).map(|_| TODAY_MS - rng.below(30 * DAY_MS as u64) as i64).collect::<Vec<_>>(),
                )),
            ),
        ],
    );
}
