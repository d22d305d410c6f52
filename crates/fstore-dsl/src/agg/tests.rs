//! Unit tests of the aggregations: values, merges, windows, encoding and
//! batch evaluation, through the module's own items.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;

use super::encoding::{tag, VERSION};
use super::*;
use crate::eval::EvalError;
use crate::plan::{AggFeature, AggFunc, Expr, ExprKind};
use crate::types::{DataType, ElementType};

/// The resolution of every test view: one minute.
const R: i64 = 60_000_000;

fn field(name: &str, ty: DataType) -> Expr {
    Expr { kind: ExprKind::Field(name.into()), ty }
}

/// A feature over `tiles` tiles of R (None: lifetime).
fn feat(func: AggFunc, ty: DataType, arg: Option<Expr>, tiles: Option<u64>) -> AggFeature {
    AggFeature {
        name: format!("{func:?}").to_lowercase(),
        ty,
        func,
        arg,
        window: tiles.map(|n| Duration::from_secs(60 * n)),
        condition: None,
    }
}

fn count(tiles: Option<u64>) -> AggFeature {
    feat(AggFunc::Count, DataType::Int64, None, tiles)
}

fn of(func: AggFunc, name: &str, ty: DataType, tiles: Option<u64>) -> AggFeature {
    feat(func, ty, Some(field(name, ty)), tiles)
}

fn with_condition(mut f: AggFeature, name: &str) -> AggFeature {
    f.condition = Some(field(name, DataType::Bool));
    f
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn ints(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

fn floats(values: &[Option<f64>]) -> ArrayRef {
    Arc::new(Float64Array::from(values.to_vec()))
}

fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn bools(values: &[Option<bool>]) -> ArrayRef {
    Arc::new(BooleanArray::from(values.to_vec()))
}

/// Feed row i at `times[i]` with seq i into its tile state and the
/// lifetime state, as the store does.
fn ingest(features: &[AggFeature], batch: &RecordBatch, times: &[i64]) -> (Vec<(i64, State)>, State) {
    let inputs = evaluate(features, batch).unwrap();
    assert_eq!(inputs.num_rows(), times.len());
    let mut tiles = BTreeMap::new();
    let mut lifetime = State::lifetime(features);
    for (row, &t) in times.iter().enumerate() {
        tiles
            .entry(tile_of(t, R))
            .or_insert_with(|| State::tile(features))
            .add(features, &inputs, row, t, row as u64);
        lifetime.add(features, &inputs, row, t, row as u64);
    }
    (tiles.into_iter().collect(), lifetime)
}

fn values_at(features: &[AggFeature], batch: &RecordBatch, times: &[i64], now: i64) -> Vec<Option<Scalar>> {
    let (tiles, lifetime) = ingest(features, batch, times);
    finalize(features, R, now, &tiles, Some(&lifetime))
}

fn round_trip(state: &State) -> State {
    let mut bytes = Vec::new();
    state.encode(&mut bytes);
    State::decode(&bytes).unwrap()
}

#[test]
fn no_events_gives_count_zero_and_null_otherwise() {
    let features = [
        count(Some(5)),
        count(None),
        of(AggFunc::Sum, "i", DataType::Int64, Some(5)),
        of(AggFunc::Sum, "f", DataType::Float64, None),
        of(AggFunc::Avg, "f", DataType::Float64, None),
        of(AggFunc::Min, "i", DataType::Int64, Some(1)),
        of(AggFunc::Max, "s", DataType::String, None),
        of(AggFunc::First, "s", DataType::String, Some(2)),
        of(AggFunc::Last, "f", DataType::Float64, None),
    ];
    let expected = [Some(Scalar::Int64(0)), Some(Scalar::Int64(0)), None, None, None, None, None, None, None];
    // No states at all, and identity states.
    assert_eq!(finalize(&features, R, 0, &[], None), expected);
    let tiles = [(0, State::tile(&features))];
    assert_eq!(finalize(&features, R, 0, &tiles, Some(&State::lifetime(&features))), expected);
    // Events whose values are all null count for count() only.
    let b =
        batch(vec![("i", ints(&[None, None])), ("f", floats(&[None, None])), ("s", strings(&[None, None]))]);
    let got = values_at(&features, &b, &[10, 20], 30);
    let mut expected = expected.to_vec();
    expected[0] = Some(Scalar::Int64(2));
    expected[1] = Some(Scalar::Int64(2));
    assert_eq!(got, expected);
}

#[test]
fn null_inputs_are_ignored() {
    let features = [
        count(None),
        of(AggFunc::Sum, "i", DataType::Int64, None),
        of(AggFunc::Sum, "f", DataType::Float64, Some(1)),
        of(AggFunc::Avg, "f", DataType::Float64, None),
        of(AggFunc::Min, "i", DataType::Int64, None),
        of(AggFunc::Max, "f", DataType::Float64, Some(1)),
        of(AggFunc::First, "i", DataType::Int64, None),
        of(AggFunc::Last, "i", DataType::Int64, Some(1)),
        of(AggFunc::Min, "s", DataType::String, None),
    ];
    let b = batch(vec![
        ("i", ints(&[None, Some(5), Some(-3), None])),
        ("f", floats(&[Some(1.5), None, Some(f64::NAN), Some(2.0)])),
        ("s", strings(&[None, Some("b"), None, Some("a")])),
    ]);
    let got = values_at(&features, &b, &[0, 1, 2, 3], 3);
    assert_eq!(
        got,
        [
            Some(Scalar::Int64(4)),
            Some(Scalar::Int64(2)),
            // NaN is null, like every non-finite float.
            Some(Scalar::Float64(3.5)),
            Some(Scalar::Float64(1.75)),
            Some(Scalar::Int64(-3)),
            Some(Scalar::Float64(2.0)),
            // The first event's value is null: first skips to the next one.
            Some(Scalar::Int64(5)),
            // The last event's value is null: last is the one before.
            Some(Scalar::Int64(-3)),
            Some(Scalar::String("a".into())),
        ]
    );
}

#[test]
fn false_and_null_conditions_both_exclude() {
    let features = [
        with_condition(count(None), "c"),
        with_condition(count(Some(1)), "c"),
        with_condition(of(AggFunc::Sum, "i", DataType::Int64, None), "c"),
        with_condition(of(AggFunc::Last, "i", DataType::Int64, None), "c"),
        with_condition(of(AggFunc::First, "i", DataType::Int64, Some(3)), "c"),
        with_condition(of(AggFunc::Max, "i", DataType::Int64, None), "c"),
        // No condition: every event.
        count(None),
    ];
    let b = batch(vec![
        ("i", ints(&[Some(100), Some(1), Some(10), Some(1000)])),
        ("c", bools(&[Some(false), Some(true), Some(true), None])),
    ]);
    let got = values_at(&features, &b, &[0, 1, 2, 3], 3);
    assert_eq!(
        got,
        [
            Some(Scalar::Int64(2)),
            Some(Scalar::Int64(2)),
            Some(Scalar::Int64(11)),
            Some(Scalar::Int64(10)),
            Some(Scalar::Int64(1)),
            Some(Scalar::Int64(10)),
            Some(Scalar::Int64(4)),
        ]
    );
    // Nothing passes: count 0, the others null.
    let b = batch(vec![("i", ints(&[Some(1), Some(2)])), ("c", bools(&[Some(false), None]))]);
    let got = values_at(&features, &b, &[0, 1], 1);
    assert_eq!(
        got,
        [Some(Scalar::Int64(0)), Some(Scalar::Int64(0)), None, None, None, None, Some(Scalar::Int64(2))]
    );
}

#[test]
fn first_and_last_break_time_ties_by_seq() {
    let features = [
        of(AggFunc::First, "s", DataType::String, None),
        of(AggFunc::Last, "s", DataType::String, None),
        of(AggFunc::First, "s", DataType::String, Some(1)),
        of(AggFunc::Last, "s", DataType::String, Some(1)),
    ];
    let b = batch(vec![("s", strings(&[Some("a"), Some("b"), Some("c"), Some("d")]))]);
    let inputs = evaluate(&features, &b).unwrap();
    let s = |v: &str| Some(Scalar::String(v.into()));
    // All four at the same time; arrival (seq) order differs from row order.
    // seq: a=2, b=0, c=3, d=1, so first is b and last is c.
    let seqs = [2u64, 0, 3, 1];
    for order in [[0usize, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let mut tile = State::tile(&features);
        let mut life = State::lifetime(&features);
        for row in order {
            tile.add(&features, &inputs, row, 5, seqs[row]);
            life.add(&features, &inputs, row, 5, seqs[row]);
        }
        assert_eq!(finalize(&features, R, 5, &[(0, tile)], Some(&life)), [s("b"), s("c"), s("b"), s("c")]);
    }
    // Across states: one event per state, merged in either order.
    let single = |row: usize| {
        let mut st = State::lifetime(&features);
        st.add(&features, &inputs, row, 5, seqs[row]);
        st
    };
    for (x, y) in [(0, 2), (2, 0), (1, 3), (3, 1)] {
        let mut m = single(x);
        m.merge(&single(y));
        let got = finalize(&features, R, 5, &[], Some(&m));
        let (first, last) = if seqs[x] < seqs[y] { (x, y) } else { (y, x) };
        let names = ["a", "b", "c", "d"];
        assert_eq!(got[..2], [s(names[first]), s(names[last])]);
    }
    // An earlier time wins over a greater seq.
    let mut st = State::lifetime(&features);
    st.add(&features, &inputs, 0, 7, 0);
    st.add(&features, &inputs, 1, 6, 9);
    assert_eq!(finalize(&features, R, 0, &[], Some(&st))[..2], [s("b"), s("a")]);
}

#[test]
fn same_stamp_with_different_values_merges_the_same_either_way() {
    let a = State(vec![Partial::Last(Some((1, 1, Scalar::Int64(1))))]);
    let b = State(vec![Partial::Last(Some((1, 1, Scalar::Int64(2))))]);
    let mut ab = a.clone();
    ab.merge(&b);
    let mut ba = b.clone();
    ba.merge(&a);
    assert_eq!(ab, ba);
}

#[test]
fn int_sum_overflow_is_null_and_decided_on_the_whole_sum() {
    let features = [
        of(AggFunc::Sum, "i", DataType::Int64, None),
        of(AggFunc::Sum, "i", DataType::Int64, Some(10)),
        feat(AggFunc::Sum, DataType::Float64, Some(field("i", DataType::Int64)), None),
    ];
    let b = batch(vec![("i", ints(&[Some(i64::MAX), Some(1)]))]);
    assert_eq!(values_at(&features, &b, &[0, 1], 1), [None, None, None]);
    let b = batch(vec![("i", ints(&[Some(i64::MIN), Some(-1)]))]);
    assert_eq!(values_at(&features, &b, &[0, 1], 1), [None, None, None]);
    // The sum fits even though a prefix of it does not: never wraps, never
    // depends on the order of events.
    let b = batch(vec![("i", ints(&[Some(i64::MAX), Some(1), Some(-1)]))]);
    let max = Some(Scalar::Int64(i64::MAX));
    assert_eq!(
        values_at(&features, &b, &[0, R, 2 * R], 2 * R),
        [max.clone(), max, Some(Scalar::Float64(i64::MAX as f64))]
    );
    // Across merged partials too.
    let mut x = State(vec![Partial::SumInt { sum: i64::MAX as i128, n: 1, overflow: false }]);
    x.merge(&State(vec![Partial::SumInt { sum: i64::MAX as i128, n: 1, overflow: false }]));
    let f = [of(AggFunc::Sum, "i", DataType::Int64, None)];
    assert_eq!(finalize(&f, R, 0, &[], Some(&x)), [None]);
    // An i128 overflow is sticky.
    let mut y = State(vec![Partial::SumInt { sum: i128::MAX, n: 1, overflow: false }]);
    y.merge(&State(vec![Partial::SumInt { sum: 1, n: 1, overflow: false }]));
    assert_eq!(y.0[0], Partial::SumInt { sum: 0, n: 2, overflow: true });
    y.merge(&State(vec![Partial::SumInt { sum: -1, n: 1, overflow: false }]));
    assert_eq!(finalize(&f, R, 0, &[], Some(&y)), [None]);
}

#[test]
fn float_sum_and_avg_that_are_not_finite_are_null() {
    let features = [
        of(AggFunc::Sum, "f", DataType::Float64, None),
        of(AggFunc::Avg, "f", DataType::Float64, None),
        of(AggFunc::Avg, "f", DataType::Float64, Some(1)),
    ];
    let b = batch(vec![("f", floats(&[Some(1e308), Some(1e308)]))]);
    assert_eq!(values_at(&features, &b, &[0, 1], 1), [None, None, None]);
    let b = batch(vec![("f", floats(&[Some(1.0), Some(2.0), Some(4.5)]))]);
    let avg = Some(Scalar::Float64(2.5));
    assert_eq!(values_at(&features, &b, &[0, 1, 2], 2), [Some(Scalar::Float64(7.5)), avg.clone(), avg]);
}

#[test]
fn int64_aggregates_declared_float64_are_widened() {
    let int = || Some(field("i", DataType::Int64));
    let features = [
        feat(AggFunc::Count, DataType::Float64, None, None),
        feat(AggFunc::Count, DataType::Float64, None, Some(2)),
        feat(AggFunc::Sum, DataType::Float64, int(), Some(2)),
        // As the checker may write it: the argument converted to float64.
        feat(
            AggFunc::Sum,
            DataType::Float64,
            Some(Expr { kind: ExprKind::Cast(Box::new(field("i", DataType::Int64))), ty: DataType::Float64 }),
            None,
        ),
        feat(AggFunc::Min, DataType::Float64, int(), None),
        feat(AggFunc::Max, DataType::Float64, int(), Some(2)),
        feat(AggFunc::First, DataType::Float64, int(), None),
        feat(AggFunc::Last, DataType::Float64, int(), Some(2)),
    ];
    let b = batch(vec![("i", ints(&[Some(3), Some(-4), None]))]);
    let f = |v: f64| Some(Scalar::Float64(v));
    assert_eq!(
        values_at(&features, &b, &[0, 1, 2], 2),
        [f(3.0), f(3.0), f(-1.0), f(-1.0), f(-4.0), f(3.0), f(3.0), f(-4.0)]
    );
    // With no events: count is 0.0, the others null.
    let empty = finalize(&features, R, 0, &[], None);
    assert_eq!(empty, [f(0.0), f(0.0), None, None, None, None, None, None]);
}

#[test]
fn tiles_use_floor_division() {
    assert_eq!(tile_of(0, R), 0);
    assert_eq!(tile_of(R - 1, R), 0);
    assert_eq!(tile_of(R, R), 1);
    assert_eq!(tile_of(-1, R), -1);
    assert_eq!(tile_of(-R, R), -1);
    assert_eq!(tile_of(-R - 1, R), -2);
    assert_eq!(tile_of(i64::MIN, 1), i64::MIN);
    assert_eq!(tile_of(i64::MAX, R), i64::MAX / R);
}

/// Events at k·R − 1, k·R, (k+1)·R − 1 and (k+1)·R, asked at times on and
/// either side of the tile boundaries, for windows of 1 and 2 tiles.
#[test]
fn windows_at_tile_boundaries() {
    for k in [5i64, 0, -3] {
        let features = [count(Some(1)), count(Some(2)), of(AggFunc::Last, "i", DataType::Int64, Some(2))];
        let times = [k * R - 1, k * R, (k + 1) * R - 1, (k + 1) * R];
        let b = batch(vec![("i", ints(&[Some(0), Some(1), Some(2), Some(3)]))]);
        let (tiles, lifetime) = ingest(&features, &b, &times);
        let at = |now: i64| {
            finalize(&features, R, now, &tiles, Some(&lifetime))
                .into_iter()
                .map(|v| match v {
                    Some(Scalar::Int64(n)) => n,
                    None => -1,
                    v => panic!("{v:?}"),
                })
                .collect::<Vec<_>>()
        };
        // [count over 1 tile, count over 2 tiles, last value over 2 tiles]
        assert_eq!(at(k * R - 2), [1, 1, 0], "k = {k}");
        assert_eq!(at(k * R - 1), [1, 1, 0], "k = {k}");
        // Tile k starts: 1 tile holds kR and (k+1)R − 1; 2 tiles add kR − 1.
        assert_eq!(at(k * R), [2, 3, 2], "k = {k}");
        assert_eq!(at(k * R + 1), [2, 3, 2], "k = {k}");
        assert_eq!(at((k + 1) * R - 1), [2, 3, 2], "k = {k}");
        // Tile k + 1 starts: kR − 1 (tile k − 1) drops out of the 2-tile window.
        assert_eq!(at((k + 1) * R), [1, 3, 3], "k = {k}");
        assert_eq!(at((k + 2) * R - 1), [1, 3, 3], "k = {k}");
        assert_eq!(at((k + 2) * R), [0, 1, 3], "k = {k}");
        assert_eq!(at((k + 3) * R), [0, 0, -1], "k = {k}");
        // Far before: nothing is covered (tiles after now's are not).
        assert_eq!(at((k - 10) * R), [0, 0, -1], "k = {k}");
    }
}

#[test]
fn lifetime_features_cover_every_event_whatever_now() {
    let features = [count(None), count(Some(1)), of(AggFunc::Last, "i", DataType::Int64, None)];
    let b = batch(vec![("i", ints(&[Some(1), Some(2)]))]);
    let got = values_at(&features, &b, &[-5 * R, 100 * R], 0);
    assert_eq!(got, [Some(Scalar::Int64(2)), Some(Scalar::Int64(0)), Some(Scalar::Int64(2))]);
}

#[test]
fn states_hold_only_their_kind_of_slot() {
    let features = [count(None), count(Some(3)), of(AggFunc::Sum, "i", DataType::Int64, Some(2))];
    assert_eq!(
        State::tile(&features),
        State(vec![Partial::Empty, Partial::Count(0), Partial::SumInt { sum: 0, n: 0, overflow: false }])
    );
    assert_eq!(State::lifetime(&features), State(vec![Partial::Count(0), Partial::Empty, Partial::Empty]));
    // A tile state's lifetime slot stays Empty when events are added.
    let b = batch(vec![("i", ints(&[Some(4)]))]);
    let (tiles, lifetime) = ingest(&features, &b, &[0]);
    assert_eq!(tiles[0].1 .0[0], Partial::Empty);
    assert_eq!(lifetime.0[1], Partial::Empty);
}

#[test]
fn horizon_is_the_longest_window_in_tiles() {
    let features = [count(Some(3)), count(None), count(Some(60))];
    assert_eq!(horizon_tiles(&features, R), Some(60));
    assert_eq!(horizon_tiles(&features, 5 * R), Some(12));
    assert_eq!(horizon_tiles(&[count(None)], R), None);
    assert_eq!(horizon_tiles(&[], R), None);
    assert_eq!(duration_micros(Duration::from_secs(60)), R);
}

#[test]
fn partials_merge_by_kind_in_either_order() {
    let s = |v: &str| Scalar::String(v.into());
    let cases = [
        (Partial::Count(2), Partial::Count(5), Partial::Count(7)),
        (
            Partial::SumInt { sum: -4, n: 1, overflow: false },
            Partial::SumInt { sum: 10, n: 2, overflow: false },
            Partial::SumInt { sum: 6, n: 3, overflow: false },
        ),
        (
            Partial::SumFloat { sum: 0.5, n: 1 },
            Partial::SumFloat { sum: 2.0, n: 4 },
            Partial::SumFloat { sum: 2.5, n: 5 },
        ),
        (Partial::Avg { sum: 1.0, n: 1 }, Partial::Avg { sum: 3.0, n: 1 }, Partial::Avg { sum: 4.0, n: 2 }),
        (Partial::Min(Some(s("b"))), Partial::Min(Some(s("a"))), Partial::Min(Some(s("a")))),
        (Partial::Min(None), Partial::Min(Some(s("a"))), Partial::Min(Some(s("a")))),
        (Partial::Max(Some(s("b"))), Partial::Max(Some(s("a"))), Partial::Max(Some(s("b")))),
        (
            Partial::Max(Some(Scalar::Float64(-0.0))),
            Partial::Max(Some(Scalar::Float64(0.0))),
            Partial::Max(Some(Scalar::Float64(0.0))),
        ),
        (
            Partial::First(Some((5, 0, s("x")))),
            Partial::First(Some((4, 9, s("y")))),
            Partial::First(Some((4, 9, s("y")))),
        ),
        (
            Partial::Last(Some((5, 1, s("x")))),
            Partial::Last(Some((5, 2, s("y")))),
            Partial::Last(Some((5, 2, s("y")))),
        ),
        (Partial::Last(None), Partial::Last(Some((5, 2, s("y")))), Partial::Last(Some((5, 2, s("y"))))),
    ];
    for (a, b, expected) in cases {
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!((&ab, &ba), (&expected, &expected), "{a:?} with {b:?}");
        // Bit for bit: max(-0.0, 0.0) is +0.0 whichever comes first.
        assert_eq!(round_trip(&State(vec![ab])), State(vec![expected]));
    }
}

#[test]
fn merge_treats_empty_as_neutral_and_keeps_self_on_mismatch() {
    let x = State(vec![Partial::Count(3), Partial::Empty, Partial::Min(Some(Scalar::Int64(2)))]);
    let y = State(vec![Partial::Empty, Partial::Max(None), Partial::Min(Some(Scalar::String("a".into())))]);
    let mut xy = x.clone();
    xy.merge(&y);
    assert_eq!(xy, State(vec![Partial::Count(3), Partial::Max(None), Partial::Min(Some(Scalar::Int64(2)))]));
    let mut z = State(vec![Partial::Count(1)]);
    z.merge(&State(vec![Partial::Avg { sum: 1.0, n: 1 }]));
    assert_eq!(z, State(vec![Partial::Count(1)]));
    // A shorter state takes the longer one's extra slots.
    let mut short = State(vec![Partial::Count(1)]);
    short.merge(&State(vec![Partial::Count(2), Partial::Count(7)]));
    assert_eq!(short, State(vec![Partial::Count(3), Partial::Count(7)]));
}

#[test]
fn min_and_max_order_strings_by_bytes_and_keep_timestamps() {
    let features = [
        of(AggFunc::Min, "s", DataType::String, None),
        of(AggFunc::Max, "s", DataType::String, None),
        of(AggFunc::Min, "t", DataType::Timestamp, Some(1)),
        of(AggFunc::Max, "t", DataType::Timestamp, None),
    ];
    let t: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![Some(-7), None, Some(9)]));
    let b = batch(vec![("s", strings(&[Some("Z"), Some("é"), Some("a")])), ("t", t)]);
    assert_eq!(
        values_at(&features, &b, &[0, 1, 2], 2),
        [
            Some(Scalar::String("Z".into())),
            Some(Scalar::String("é".into())),
            Some(Scalar::Timestamp(-7)),
            Some(Scalar::Timestamp(9)),
        ]
    );
}

#[test]
fn scalars_from_arrays_of_every_type() {
    let cases: Vec<(ArrayRef, DataType, Scalar)> = vec![
        (bools(&[Some(true)]), DataType::Bool, Scalar::Bool(true)),
        (ints(&[Some(-2)]), DataType::Int64, Scalar::Int64(-2)),
        (Arc::new(Float32Array::from(vec![1.5f32])), DataType::Float32, Scalar::Float32(1.5)),
        (floats(&[Some(0.25)]), DataType::Float64, Scalar::Float64(0.25)),
        (strings(&[Some("x")]), DataType::String, Scalar::String("x".into())),
        (Arc::new(BinaryArray::from(vec![&b"\0\xff"[..]])), DataType::Bytes, Scalar::Bytes(vec![0, 255])),
        (Arc::new(TimestampMicrosecondArray::from(vec![-1])), DataType::Timestamp, Scalar::Timestamp(-1)),
        (
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![Some(vec![
                Some(1.0),
                Some(2.0),
            ])])),
            DataType::Array(ElementType::Float32),
            Scalar::Float32List(vec![1.0, 2.0]),
        ),
        (
            Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![Some(3.0)])])),
            DataType::Array(ElementType::Float64),
            Scalar::Float64List(vec![3.0]),
        ),
        (
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                Some(Vec::<Option<i64>>::new()),
            ])),
            DataType::Array(ElementType::Int64),
            Scalar::Int64List(vec![]),
        ),
    ];
    for (array, ty, expected) in cases {
        assert_eq!(Scalar::from_array(array.as_ref(), 0, ty), Some(expected.clone()), "{ty}");
        assert_eq!(expected.data_type(), ty);
        // Out of range, or read as another type: no value.
        assert_eq!(Scalar::from_array(array.as_ref(), 1, ty), None);
        let other = if ty == DataType::Int64 { DataType::String } else { DataType::Int64 };
        assert_eq!(Scalar::from_array(array.as_ref(), 0, other), None);
    }
    let mut b = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
    b.values().append_value("p");
    b.values().append_value("q");
    b.append(true);
    let list: ArrayRef = Arc::new(b.finish());
    assert_eq!(
        Scalar::from_array(list.as_ref(), 0, DataType::Array(ElementType::String)),
        Some(Scalar::StringList(vec!["p".into(), "q".into()]))
    );
    // Nulls, non-finite floats and arrays holding a null are no value.
    assert_eq!(Scalar::from_array(ints(&[None]).as_ref(), 0, DataType::Int64), None);
    assert_eq!(Scalar::from_array(floats(&[Some(f64::INFINITY)]).as_ref(), 0, DataType::Float64), None);
    let holey: ArrayRef =
        Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![Some(vec![Some(1.0), None])]));
    assert_eq!(Scalar::from_array(holey.as_ref(), 0, DataType::Array(ElementType::Float32)), None);
}

fn every_kind() -> State {
    State(vec![
        Partial::Empty,
        Partial::Count(0),
        Partial::Count(u64::MAX),
        Partial::SumInt { sum: i128::MIN, n: 3, overflow: false },
        Partial::SumInt { sum: 0, n: 0, overflow: true },
        Partial::SumFloat { sum: -0.5, n: 2 },
        Partial::Avg { sum: f64::INFINITY, n: 1 },
        Partial::Min(None),
        Partial::Min(Some(Scalar::Bool(false))),
        Partial::Max(Some(Scalar::Int64(i64::MIN))),
        Partial::Max(Some(Scalar::Float32(-1.25))),
        Partial::Min(Some(Scalar::Float64(1e-300))),
        Partial::First(None),
        Partial::First(Some((i64::MIN, u64::MAX, Scalar::String("héllo".into())))),
        Partial::Last(Some((-1, 0, Scalar::Bytes(vec![0, 1, 255])))),
        Partial::Last(Some((i64::MAX, 7, Scalar::Timestamp(-9)))),
        Partial::First(Some((0, 0, Scalar::Float32List(vec![1.0, -2.5])))),
        Partial::First(Some((0, 0, Scalar::Float64List(vec![])))),
        Partial::Last(Some((0, 0, Scalar::Int64List(vec![i64::MAX, -1, 0])))),
        Partial::Last(Some((0, 0, Scalar::StringList(vec!["".into(), "b".into()])))),
    ])
}

#[test]
fn encoding_round_trips_every_kind() {
    let state = every_kind();
    assert_eq!(round_trip(&state), state);
    assert_eq!(round_trip(&State(vec![])), State(vec![]));
    // Compact: a count of 3 and an empty slot take five bytes in all.
    let mut bytes = Vec::new();
    State(vec![Partial::Count(3), Partial::Empty]).encode(&mut bytes);
    assert_eq!(bytes, [VERSION, 2, tag::COUNT, 3, tag::EMPTY]);
}

#[test]
fn decode_rejects_malformed_input() {
    let mut bytes = Vec::new();
    every_kind().encode(&mut bytes);
    for cut in 0..bytes.len() {
        assert!(State::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(State::decode(&trailing), Err(CorruptState("trailing bytes")));
    let reject = |b: &[u8]| State::decode(b).unwrap_err();
    assert_eq!(reject(&[2, 0]), CorruptState("unknown version"));
    assert_eq!(reject(&[]), CorruptState("truncated"));
    // Non-minimal and overlong varints.
    assert_eq!(reject(&[1, 1, tag::COUNT, 0x83, 0x00]), CorruptState("varint not minimal"));
    let mut long = vec![1, 1, tag::COUNT];
    long.extend([0xff; 9]);
    long.push(0x02);
    assert_eq!(reject(&long), CorruptState("varint out of range"));
    // Flags other than 0 and 1, unknown tags, bad UTF-8, huge lengths.
    assert_eq!(reject(&[1, 1, tag::MIN, 2]), CorruptState("flag is neither 0 nor 1"));
    assert_eq!(reject(&[1, 1, tag::MIN, 1, tag::BOOL, 7]), CorruptState("flag is neither 0 nor 1"));
    assert_eq!(reject(&[1, 1, 9]), CorruptState("unknown partial kind"));
    assert_eq!(reject(&[1, 1, tag::MAX, 1, 11]), CorruptState("unknown value type"));
    assert_eq!(reject(&[1, 1, tag::MAX, 1, tag::STRING, 1, 0xff]), CorruptState("invalid UTF-8"));
    assert_eq!(reject(&[1, 1, tag::MAX, 1, tag::BYTES, 0xff, 0xff, 0x7f]), CorruptState("truncated"));
    assert_eq!(reject(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]), CorruptState("truncated"));
}

#[test]
fn the_largest_varints_decode() {
    let state = State(vec![
        Partial::Count(u64::MAX),
        Partial::SumInt { sum: i128::MAX, n: u64::MAX, overflow: false },
        Partial::SumInt { sum: i128::MIN, n: 0, overflow: false },
        Partial::Last(Some((i64::MIN, u64::MAX, Scalar::Int64(i64::MAX)))),
    ]);
    assert_eq!(round_trip(&state), state);
}

#[test]
fn merge_encoded_skips_what_does_not_decode() {
    let enc = |s: State| {
        let mut b = Vec::new();
        s.encode(&mut b);
        b
    };
    let a = enc(State(vec![Partial::Count(2)]));
    let b = enc(State(vec![Partial::Count(5)]));
    let merged = merge_encoded(Some(&a), [&b[..], &b"junk"[..], &b[..]]).unwrap();
    assert_eq!(State::decode(&merged).unwrap(), State(vec![Partial::Count(12)]));
    let merged = merge_encoded(Some(&b"junk"[..]), [&a[..]]).unwrap();
    assert_eq!(merged, a);
    assert_eq!(merge_encoded(None, [&a[..]]), Some(a.clone()));
    assert_eq!(merge_encoded(Some(&a), []), Some(a.clone()));
    assert_eq!(merge_encoded(None, [&b"x"[..], &[][..]]), None);
    assert_eq!(merge_encoded(None, []), None);
}

#[test]
fn evaluate_rejects_a_batch_that_does_not_match() {
    let features = [of(AggFunc::Sum, "i", DataType::Int64, None)];
    let b = batch(vec![("j", ints(&[Some(1)]))]);
    assert!(matches!(evaluate(&features, &b), Err(EvalError::MissingColumn(c)) if c == "i"));
}
