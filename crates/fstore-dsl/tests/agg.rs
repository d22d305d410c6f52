//! Aggregations against the language's promises.
//!
//! - A view checked from definitions text, run end to end.
//! - A model test: random events are folded into states split at random (per
//!   tile, several partial states per tile, several batches), merged in random
//!   orders, directly, through encode/decode and through `merge_encoded`, and
//!   finalized at several request times; every value must equal a naive
//!   computation over the raw event list, written here independently.
//! - The same over coarse tiles: windows read through a random ladder's
//!   covers give the same naive values.
//! - The state encoding: round trips, and never a panic on arbitrary bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Int64Type;
use fstore_dsl::agg::{self, finalize, merge_encoded, tile_of, Finalizer, Scalar, State};
use fstore_dsl::plan::{AggFeature, AggFunc, Expr, ExprKind, ViewBody};
use fstore_dsl::tiles::Ladder;
use fstore_dsl::{check, render, DataType, ElementType, SourceFile};
use proptest::prelude::*;

mod strategies;
use strategies::*;

// ---------------------------------------------------------------------------
// End to end from definitions text.
// ---------------------------------------------------------------------------

const DEFINITIONS: &str = r#"
entity user {
  key user_id: int64
}

source clicks {
  type = kafka
  topic = "clicks"
  format = json
  timestamp = ts
  fields {
    amount: int64
    price: float64
    item: string
    kind: string
  }
}

view activity {
  entity = user
  source = clicks
  resolution = 1m
  features {
    clicks_1h: int64 = count() over 1h
    clicks: float64 = count()
    amount_1h: int64 = sum(amount) over 1h
    amount_all: float64 = sum(amount)
    spend_2m: float64 = sum(price) over 2m where kind == "buy"
    avg_amount: float64 = avg(amount)
    min_item_5m: string = min(item) over 5m
    max_amount: float64 = max(amount)
    first_ts: timestamp = first(ts)
    last_item_1m: string = last(item) over 1m where kind != "view"
  }
}
"#;

const MINUTE: i64 = 60_000_000;

#[test]
fn a_checked_view_end_to_end() {
    let files = vec![SourceFile { name: "t.fdl".into(), text: DEFINITIONS.into() }];
    let plan = check(&files).unwrap_or_else(|d| panic!("{}", render(&d, &files)));
    let (_, view) = plan.view("activity").unwrap();
    let ViewBody::Aggregating { resolution, features } = &view.body else { panic!("not aggregating") };
    let r = agg::duration_micros(*resolution);
    assert_eq!(r, MINUTE);
    assert_eq!(agg::horizon_tiles(features, r), Some(60));

    // Minute 0: a view, a buy; minute 1: a buy with no price, a view; minute 2: a click.
    let times = [10, 20, MINUTE + 5, MINUTE + 6, 2 * MINUTE];
    let batch = RecordBatch::try_from_iter([
        ("ts", Arc::new(TimestampMicrosecondArray::from(times.to_vec())) as ArrayRef),
        ("user_id", Arc::new(Int64Array::from(vec![1; 5]))),
        ("amount", Arc::new(Int64Array::from(vec![Some(3), Some(4), None, Some(-1), Some(10)]))),
        ("price", Arc::new(Float64Array::from(vec![Some(1.5), Some(2.25), None, Some(8.0), Some(0.5)]))),
        ("item", Arc::new(StringArray::from(vec![Some("m"), Some("c"), Some("x"), None, Some("k")]))),
        (
            "kind",
            Arc::new(StringArray::from(vec![Some("view"), Some("buy"), Some("buy"), Some("view"), None])),
        ),
    ])
    .unwrap();
    let inputs = agg::evaluate(features, &batch).unwrap();
    let mut tiles: BTreeMap<i64, State> = BTreeMap::new();
    let mut lifetime = State::lifetime(features);
    for (row, &t) in times.iter().enumerate() {
        let seq = row as u64;
        tiles
            .entry(tile_of(t, r))
            .or_insert_with(|| State::tile(features))
            .add(features, &inputs, row, t, seq);
        lifetime.add(features, &inputs, row, t, seq);
    }
    let tiles: Vec<(i64, State)> = tiles.into_iter().collect();
    let at = |now: i64| finalize(features, r, now, &tiles, Some(&lifetime));
    let (int, float, text) = (Scalar::Int64, Scalar::Float64, |s: &str| Scalar::String(s.into()));

    assert_eq!(
        at(MINUTE + 30_000_000),
        [
            Some(int(4)),
            // Lifetime features see every event, also those after `now`.
            Some(float(5.0)),
            Some(int(6)),
            // Declared float64 over int64 (the checker keeps the int64 argument).
            Some(float(16.0)),
            // The buy at minute 1 has a null price; the one at minute 0 counts.
            Some(float(2.25)),
            Some(float(4.0)),
            Some(text("c")),
            Some(float(10.0)),
            Some(Scalar::Timestamp(10)),
            // Tile 1 only; its last event is a view, so the buy's "x".
            Some(text("x")),
        ]
    );
    let later = at(3 * MINUTE);
    assert_eq!(later[0], Some(int(5)));
    // spend_2m at minute 3 covers minutes 2 and 3: no priced buy.
    assert_eq!(later[4], None);
    // last_item_1m at minute 3: an empty tile.
    assert_eq!(later[9], None);
    // At minute 2 the tile's one event has a null kind: the condition is null.
    assert_eq!(at(2 * MINUTE)[9], None);
}

// ---------------------------------------------------------------------------
// The model test.
// ---------------------------------------------------------------------------

/// The resolution of the model view: one second.
const R: i64 = 1_000_000;

#[derive(Clone, Debug)]
struct Event {
    time: i64,
    i: Option<i64>,
    f: Option<f64>,
    s: Option<&'static str>,
    c: Option<bool>,
}

/// What a feature reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Col {
    None,
    I,
    /// `i as float64`.
    IAsF,
    F,
    S,
    C,
    /// The event time column.
    Ts,
    /// `[i, i]` when i is not null.
    L,
}

struct Spec {
    func: AggFunc,
    col: Col,
    ty: DataType,
    tiles: Option<u64>,
    cond: bool,
}

fn spec(func: AggFunc, col: Col, ty: DataType, tiles: Option<u64>, cond: bool) -> Spec {
    Spec { func, col, ty, tiles, cond }
}

fn specs() -> Vec<Spec> {
    use AggFunc::*;
    use DataType::{Bool, Float64, Int64, String, Timestamp};
    vec![
        spec(Count, Col::None, Int64, None, false),
        spec(Count, Col::None, Int64, Some(1), false),
        spec(Count, Col::None, Float64, Some(3), true),
        spec(Sum, Col::I, Int64, Some(2), false),
        spec(Sum, Col::I, Float64, None, false),
        spec(Sum, Col::IAsF, Float64, Some(6), true),
        spec(Sum, Col::F, Float64, Some(4), true),
        spec(Sum, Col::F, Float64, None, false),
        spec(Avg, Col::F, Float64, Some(3), false),
        spec(Avg, Col::IAsF, Float64, None, true),
        spec(Min, Col::S, String, Some(2), false),
        spec(Max, Col::S, String, None, true),
        spec(Min, Col::F, Float64, None, false),
        spec(Max, Col::I, Int64, Some(5), false),
        spec(Min, Col::I, Float64, Some(1), true),
        spec(Max, Col::Ts, Timestamp, None, false),
        spec(First, Col::S, String, Some(3), false),
        spec(Last, Col::S, String, None, false),
        spec(First, Col::I, Int64, None, true),
        spec(Last, Col::F, Float64, Some(2), false),
        spec(Last, Col::C, Bool, Some(1), false),
        spec(First, Col::L, DataType::Array(ElementType::Int64), None, false),
        spec(Last, Col::I, Float64, Some(4), true),
    ]
}

fn field(name: &str, ty: DataType) -> Expr {
    Expr { kind: ExprKind::Field(name.into()), ty }
}

fn feature(s: &Spec) -> AggFeature {
    let arg = match s.col {
        Col::None => None,
        Col::I => Some(field("i", DataType::Int64)),
        Col::IAsF => {
            Some(Expr { kind: ExprKind::Cast(Box::new(field("i", DataType::Int64))), ty: DataType::Float64 })
        }
        Col::F => Some(field("f", DataType::Float64)),
        Col::S => Some(field("s", DataType::String)),
        Col::C => Some(field("c", DataType::Bool)),
        Col::Ts => Some(field("ts", DataType::Timestamp)),
        Col::L => Some(field("l", DataType::Array(ElementType::Int64))),
    };
    AggFeature {
        name: format!("{:?}_{:?}", s.func, s.col),
        ty: s.ty,
        func: s.func,
        arg,
        window: s.tiles.map(|n| Duration::from_micros(n * R as u64)),
        condition: s.cond.then(|| field("c", DataType::Bool)),
    }
}

fn batch(events: &[Event]) -> RecordBatch {
    let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(
        events.iter().map(|e| e.i.map(|i| vec![Some(i), Some(i)])),
    );
    RecordBatch::try_from_iter([
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.time))) as ArrayRef,
        ),
        ("i", Arc::new(events.iter().map(|e| e.i).collect::<Int64Array>())),
        ("f", Arc::new(events.iter().map(|e| e.f).collect::<Float64Array>())),
        ("s", Arc::new(events.iter().map(|e| e.s).collect::<StringArray>())),
        ("c", Arc::new(events.iter().map(|e| e.c).collect::<BooleanArray>())),
        ("l", Arc::new(lists)),
    ])
    .unwrap()
}

/// A naive value of the feature at `now`, from the event list alone. Floats
/// also carry a scale for the comparison's tolerance.
#[derive(Debug, PartialEq)]
enum Expected {
    Exact(Option<Scalar>),
    Float { value: Option<f64>, scale: f64 },
}

/// floor(t / r) for r > 0, written without `div_euclid`.
fn naive_tile(t: i64, r: i64) -> i64 {
    let q = t / r;
    if t % r != 0 && t < 0 {
        q - 1
    } else {
        q
    }
}

fn naive(s: &Spec, events: &[Event], now: i64) -> Expected {
    let c = naive_tile(now, R);
    // (seq, event) for the events this feature counts.
    let counted: Vec<(u64, &Event)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e))
        .filter(|(_, e)| !s.cond || e.c == Some(true))
        .filter(|(_, e)| match s.tiles {
            None => true,
            Some(w) => {
                let k = naive_tile(e.time, R);
                k <= c && k > c - w as i64
            }
        })
        .collect();
    let widen = |v: Scalar| match (v, s.ty) {
        (Scalar::Int64(i), DataType::Float64) => Scalar::Float64(i as f64),
        (v, _) => v,
    };
    let value = |e: &Event| -> Option<Scalar> {
        match s.col {
            Col::None => None,
            Col::I => e.i.map(Scalar::Int64),
            Col::IAsF => e.i.map(|i| Scalar::Float64(i as f64)),
            Col::F => e.f.map(Scalar::Float64),
            Col::S => e.s.map(|s| Scalar::String(s.into())),
            Col::C => e.c.map(Scalar::Bool),
            Col::Ts => Some(Scalar::Timestamp(e.time)),
            Col::L => e.i.map(|i| Scalar::Int64List(vec![i, i])),
        }
    };
    let values: Vec<(i64, u64, Scalar)> =
        counted.iter().filter_map(|(seq, e)| value(e).map(|v| (e.time, *seq, v))).collect();
    let floats = || -> Vec<f64> {
        values
            .iter()
            .map(|(_, _, v)| match v {
                Scalar::Float64(x) => *x,
                v => panic!("not a float: {v:?}"),
            })
            .collect()
    };
    let cmp = |a: &Scalar, b: &Scalar| match (a, b) {
        (Scalar::Int64(a), Scalar::Int64(b)) | (Scalar::Timestamp(a), Scalar::Timestamp(b)) => a.cmp(b),
        (Scalar::Float64(a), Scalar::Float64(b)) => a.partial_cmp(b).unwrap(),
        (Scalar::String(a), Scalar::String(b)) => a.cmp(b),
        _ => panic!("no order for {a:?} and {b:?}"),
    };
    match s.func {
        AggFunc::Count => Expected::Exact(Some(widen(Scalar::Int64(counted.len() as i64)))),
        AggFunc::Sum if s.col == Col::I => {
            let total: i128 =
                values.iter().map(|(_, _, v)| if let Scalar::Int64(i) = v { *i as i128 } else { 0 }).sum();
            let fits = i64::try_from(total).ok().filter(|_| !values.is_empty());
            Expected::Exact(fits.map(|v| widen(Scalar::Int64(v))))
        }
        AggFunc::Sum | AggFunc::Avg => {
            let xs = floats();
            let sum: f64 = xs.iter().sum();
            let abs: f64 = xs.iter().map(|x| x.abs()).sum();
            let n = xs.len() as f64;
            let (value, scale) = if s.func == AggFunc::Sum { (sum, abs) } else { (sum / n, abs / n) };
            Expected::Float { value: (!xs.is_empty()).then_some(value), scale }
        }
        AggFunc::Min => {
            Expected::Exact(values.into_iter().map(|(_, _, v)| v).min_by(|a, b| cmp(a, b)).map(widen))
        }
        AggFunc::Max => {
            Expected::Exact(values.into_iter().map(|(_, _, v)| v).max_by(|a, b| cmp(a, b)).map(widen))
        }
        AggFunc::First => {
            Expected::Exact(values.into_iter().min_by_key(|(t, seq, _)| (*t, *seq)).map(|(_, _, v)| widen(v)))
        }
        AggFunc::Last => {
            Expected::Exact(values.into_iter().max_by_key(|(t, seq, _)| (*t, *seq)).map(|(_, _, v)| widen(v)))
        }
    }
}

fn agrees(expected: &Expected, got: &Option<Scalar>) -> bool {
    match (expected, got) {
        (Expected::Exact(e), g) => e == g,
        (Expected::Float { value: None, .. }, None) => true,
        (Expected::Float { value: Some(e), scale }, Some(Scalar::Float64(g))) => {
            (e - g).abs() <= 1e-12 * (1.0 + scale)
        }
        _ => false,
    }
}

/// A small deterministic generator for the shuffles and choices below, so
/// that a failing case shrinks and replays from proptest's inputs alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn encoded(state: &State) -> Vec<u8> {
    let mut out = Vec::new();
    state.encode(&mut out);
    out
}

/// Combine the partial states of one tile (or the lifetime) into one, in one
/// of several ways picked at random.
fn combine(mut parts: Vec<State>, rng: &mut Rng) -> State {
    rng.shuffle(&mut parts);
    match rng.below(3) {
        // Directly, left to right.
        0 => {
            let mut parts = parts.into_iter();
            let mut acc = parts.next().unwrap();
            for p in parts {
                acc.merge(&p);
            }
            acc
        }
        // As a RocksDB merge operator would: encoded operands, with an
        // undecodable one thrown in now and then.
        1 => {
            let mut bytes: Vec<Vec<u8>> = parts.iter().map(encoded).collect();
            if rng.below(2) == 0 {
                let at = rng.below(bytes.len() + 1);
                bytes.insert(at, b"\x01\x05garbage".to_vec());
            }
            let existing = if rng.below(2) == 0 { Some(bytes.remove(0)) } else { None };
            let merged = merge_encoded(existing.as_deref(), bytes.iter().map(Vec::as_slice))
                .expect("something decodes");
            State::decode(&merged).unwrap()
        }
        // Pairwise in a random tree, every intermediate through encode/decode.
        _ => {
            while parts.len() > 1 {
                let i = rng.below(parts.len());
                let a = parts.swap_remove(i);
                let j = rng.below(parts.len());
                let b = parts.swap_remove(j);
                let (mut a, b) = if rng.below(2) == 0 { (a, b) } else { (b, a) };
                a.merge(&b);
                parts.push(State::decode(&encoded(&a)).unwrap());
            }
            parts.pop().unwrap()
        }
    }
}

/// A few request times, on tile edges and off them.
fn request_times() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(
        (-8i64..9, prop::sample::select(vec![0, 1, R / 2, R - 1])).prop_map(|(k, o)| k * R + o),
        1..6,
    )
}

fn event() -> impl Strategy<Value = Event> {
    let time =
        (-6i64..6, prop::sample::select(vec![0, 1, 2, R / 2, R - 2, R - 1])).prop_map(|(k, o)| k * R + o);
    let i = prop_oneof![
        8 => -1000i64..1000,
        1 => (i64::MAX - 3)..=i64::MAX,
        1 => i64::MIN..=(i64::MIN + 3),
    ];
    let f = prop_oneof![(-4000i64..4000).prop_map(|n| n as f64 * 0.25), -1e6f64..1e6];
    let s = prop::sample::select(vec!["", "a", "b", "ab", "B", "é", "z"]);
    (
        time,
        prop::option::weighted(0.85, i),
        prop::option::weighted(0.85, f),
        prop::option::weighted(0.85, s),
        prop::option::weighted(0.85, any::<bool>()),
    )
        .prop_map(|(time, i, f, s, c)| Event { time, i, f, s, c })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn split_merged_and_finalized_states_equal_the_naive_values(
        events in prop::collection::vec(event(), 0..40),
        parts in 1usize..4,
        chunk in 1usize..16,
        seed in any::<u64>(),
        nows in request_times(),
    ) {
        let specs = specs();
        let features: Vec<AggFeature> = specs.iter().map(feature).collect();
        let mut rng = Rng(seed | 1);

        // Fold events, batch by batch, into (tile, part) and (lifetime, part) states.
        let mut tile_parts: BTreeMap<(i64, usize), State> = BTreeMap::new();
        let mut lifetime_parts: BTreeMap<usize, State> = BTreeMap::new();
        for (c, chunk_events) in events.chunks(chunk).enumerate() {
            let inputs = agg::evaluate(&features, &batch(chunk_events)).unwrap();
            for (row, e) in chunk_events.iter().enumerate() {
                let seq = (c * chunk + row) as u64;
                let tile = tile_of(e.time, R);
                tile_parts
                    .entry((tile, rng.below(parts)))
                    .or_insert_with(|| State::tile(&features))
                    .add(&features, &inputs, row, e.time, seq);
                lifetime_parts
                    .entry(rng.below(parts))
                    .or_insert_with(|| State::lifetime(&features))
                    .add(&features, &inputs, row, e.time, seq);
            }
        }

        // Merge each tile's parts, and the lifetime parts, in random ways.
        let mut by_tile: BTreeMap<i64, Vec<State>> = BTreeMap::new();
        for ((tile, _), state) in tile_parts {
            by_tile.entry(tile).or_default().push(state);
        }
        let mut tiles: Vec<(i64, State)> =
            by_tile.into_iter().map(|(tile, parts)| (tile, combine(parts, &mut rng))).collect();
        rng.shuffle(&mut tiles);
        let lifetime_parts: Vec<State> = lifetime_parts.into_values().collect();
        let lifetime = (!lifetime_parts.is_empty()).then(|| combine(lifetime_parts, &mut rng));

        for now in nows {
            let got = finalize(&features, R, now, &tiles, lifetime.as_ref());
            prop_assert_eq!(got.len(), specs.len());
            for ((s, f), got) in specs.iter().zip(&features).zip(&got) {
                let expected = naive(s, &events, now);
                prop_assert!(agrees(&expected, got), "{} at {}: expected {:?}, got {:?}", f.name, now, expected, got);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Coarse tiles change how many states a window reads, never its value:
    /// events folded into the tiles of every level of a random ladder (as
    /// ingest writes them), read back through each window's cover, give the
    /// naive values, at request times on and off tile and coarse-tile edges.
    #[test]
    fn windows_read_through_coarse_tiles_equal_the_naive_values(
        events in prop::collection::vec(event(), 0..40),
        spans in prop::sample::select(vec![vec![1], vec![1, 2], vec![1, 2, 4], vec![1, 3], vec![1, 3, 6], vec![1, 2, 6, 12]]),
        parts in 1usize..3,
        seed in any::<u64>(),
        nows in request_times(),
    ) {
        let specs = specs();
        let features: Vec<AggFeature> = specs.iter().map(feature).collect();
        let ladder = Ladder::new(spans).unwrap();
        let mut rng = Rng(seed | 1);

        let inputs = agg::evaluate(&features, &batch(&events)).unwrap();
        let mut tile_parts: BTreeMap<(usize, i64, usize), State> = BTreeMap::new();
        let mut lifetime = State::lifetime(&features);
        for (row, e) in events.iter().enumerate() {
            let fine = tile_of(e.time, R);
            for level in 0..ladder.levels() {
                tile_parts
                    .entry((level, ladder.tile_at(level, fine), rng.below(parts)))
                    .or_insert_with(|| State::tile(&features))
                    .add(&features, &inputs, row, e.time, row as u64);
            }
            lifetime.add(&features, &inputs, row, e.time, row as u64);
        }
        let mut by_tile: BTreeMap<(usize, i64), Vec<State>> = BTreeMap::new();
        for ((level, index, _), state) in tile_parts {
            by_tile.entry((level, index)).or_default().push(state);
        }
        let mut tiles: Vec<((usize, i64), State)> =
            by_tile.into_iter().map(|(at, parts)| (at, combine(parts, &mut rng))).collect();
        rng.shuffle(&mut tiles);

        for now in nows {
            let covers = agg::window_covers(&features, R, &ladder, now);
            let mut values = Finalizer::new(&features, &covers);
            for ((level, index), state) in &tiles {
                values.fold(*level, *index, state);
            }
            let got = values.finish(&features, Some(&lifetime));
            for ((s, f), got) in specs.iter().zip(&features).zip(&got) {
                let expected = naive(s, &events, now);
                prop_assert!(agrees(&expected, got), "{} at {} over {:?}: expected {:?}, got {:?}", f.name, now, ladder, expected, got);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The encoding.
// ---------------------------------------------------------------------------

/// A valid encoding with a few random edits: near misses reach deeper into
/// the decoder than random bytes do.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (state(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)).prop_map(
        |(s, edits)| {
            let mut bytes = encoded(&s);
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn encode_then_decode_round_trips(s in state()) {
        let bytes = encoded(&s);
        let back = State::decode(&bytes).unwrap();
        // Bit for bit (floats may be NaN, which is not equal to itself).
        prop_assert_eq!(encoded(&back), bytes);
        prop_assert_eq!(back.0.len(), s.0.len());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        near in mutated(),
    ) {
        for input in [&bytes, &near] {
            // What decodes is canonical: it re-encodes to the same bytes.
            if let Ok(s) = State::decode(input) {
                prop_assert_eq!(&encoded(&s), input);
            }
        }
        let merged = merge_encoded(Some(&bytes), [&near[..], &bytes[..]]);
        let decodable = State::decode(&bytes).is_ok() || State::decode(&near).is_ok();
        prop_assert_eq!(merged.is_some(), decodable);
        if let Some(m) = merged {
            prop_assert!(State::decode(&m).is_ok());
        }
    }

    #[test]
    fn merging_random_states_never_panics(a in state(), b in state()) {
        let mut ab = a.clone();
        ab.merge(&b);
        prop_assert_eq!(ab.0.len(), a.0.len().max(b.0.len()));
        let merged = merge_encoded(Some(&encoded(&a)), [&encoded(&b)[..]]).unwrap();
        prop_assert_eq!(merged, encoded(&ab));
    }
}
