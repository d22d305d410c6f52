//! Aggregations: partial aggregates, how they combine, how they are stored,
//! and the value of each aggregating feature at request time.
//!
//! # The model
//!
//! An aggregating view's features (`count()`, `sum(x)`, `avg(x)`, `min(x)`,
//! `max(x)`, `first(x)`, `last(x)`, each with an optional `over W` and
//! `where C`) are never computed from the raw events at request time. Each
//! event is instead folded, as it arrives, into a [`Partial`]: a small summary
//! of a set of events from which the aggregate of that set follows (a count; a
//! sum and a count; the least value; the value with the latest time and its
//! stamp). Partials of disjoint sets of events [merge](Partial::merge) into the
//! partial of their union, in any order and any grouping.
//!
//! A [`State`] holds one partial per feature of a view, in feature order. The
//! store keeps, per entity key:
//!
//! - one **tile state** per tile index k that has events, built by
//!   [`State::tile`]: it covers the events with event time in
//!   [k·R, (k+1)·R), R being the view's resolution, and holds the partials of
//!   the windowed features (`over W`); its lifetime slots are [`Partial::Empty`];
//! - one **lifetime state**, built by [`State::lifetime`]: it covers every
//!   event ever seen for the key, and holds the partials of the features
//!   without `over`; its windowed slots are `Empty`.
//!
//! Beside the tiles of size R the store keeps coarser ones (an hour, a day),
//! each the merge of a whole run of tiles; [`crate::tiles`] says which a
//! window reads, and [`Finalizer`] folds them into the features' values.
//!
//! Ingest evaluates each batch's feature arguments and conditions once
//! ([`evaluate`]), then folds each event into its tile's state and into the
//! lifetime state ([`State::add`]). States are stored [encoded](State::encode)
//! in a self-describing format, so that a RocksDB merge operator can combine
//! them ([`merge_encoded`]) without knowing the view.
//!
//! # The window rule
//!
//! Time is cut into tiles [k·R, (k+1)·R) ([`tile_of`], floor division, so
//! events before 1970 have negative tiles). At request time `now`, with
//! c = floor(now / R), a window of length W covers the events whose tile lies
//! in [c − W/R + 1, c]: the current, partial tile and the W/R − 1 whole tiles
//! before it. Tiles after c (events stamped later than `now`'s tile) are not
//! covered. [`finalize`] merges each windowed feature's slot over exactly those
//! tiles, and reads the lifetime features from the lifetime state (which covers
//! every event, whatever its time relative to `now`). The store needs to keep
//! [`horizon_tiles`] tiles per key.
//!
//! # Values
//!
//! - Null inputs are ignored, as are events failing the feature's condition
//!   (false or null). With no counted events `count()` is 0 and the others are
//!   null.
//! - `sum` of int64 is kept exactly (in an `i128`) and is null when the sum of
//!   all counted events does not fit an int64: the result never depends on the
//!   order in which events arrive or partials merge. A float sum or average
//!   that is not finite is null.
//! - `first` / `last` take the value of the event with the least / greatest
//!   (event time, arrival sequence number); the caller numbers arrivals.
//! - An int64 aggregate declared float64 is computed as int64 and widened
//!   at the end.
//! - An array value holding a null element is not a value fstore can store
//!   (see the row codec); `first`/`last` ignore it like a null.

use std::cmp::Ordering;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;

use crate::eval::{eval, EvalError};
use crate::plan::{AggFeature, AggFunc};
use crate::tiles::{Cover, Ladder};
use crate::types::{DataType, ElementType};

// ---------------------------------------------------------------------------
// Values.
// ---------------------------------------------------------------------------

/// One non-null value of a language type. Floats are finite when they come
/// from [`Scalar::from_array`]; a decoded state may hold any bit pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Float32List(Vec<f32>),
    Float64List(Vec<f64>),
    Int64List(Vec<i64>),
    StringList(Vec<String>),
}

impl Scalar {
    /// The value at `row` of `array`, which carries values of `ty` (in the
    /// Arrow type [`DataType::arrow`] gives). `None` if the value is null, is
    /// a float that is not finite, is an array holding a null or non-finite
    /// element, if `row` is out of range, or if the array is not of `ty`.
    pub fn from_array(array: &dyn Array, row: usize, ty: DataType) -> Option<Scalar> {
        if row >= array.len() || array.is_null(row) {
            return None;
        }
        Some(match ty {
            DataType::Bool => Scalar::Bool(array.as_boolean_opt()?.value(row)),
            DataType::Int64 => Scalar::Int64(array.as_primitive_opt::<Int64Type>()?.value(row)),
            DataType::Float32 => Scalar::Float32(
                Some(array.as_primitive_opt::<Float32Type>()?.value(row)).filter(|v| v.is_finite())?,
            ),
            DataType::Float64 => Scalar::Float64(
                Some(array.as_primitive_opt::<Float64Type>()?.value(row)).filter(|v| v.is_finite())?,
            ),
            DataType::String => Scalar::String(array.as_string_opt::<i32>()?.value(row).to_owned()),
            DataType::Bytes => Scalar::Bytes(array.as_binary_opt::<i32>()?.value(row).to_vec()),
            DataType::Timestamp => {
                Scalar::Timestamp(array.as_primitive_opt::<TimestampMicrosecondType>()?.value(row))
            }
            DataType::Array(elem) => {
                let items = array.as_list_opt::<i32>()?.value(row);
                if items.null_count() > 0 {
                    return None;
                }
                match elem {
                    ElementType::Float32 => {
                        let values = items.as_primitive_opt::<Float32Type>()?.values();
                        if !values.iter().all(|v| v.is_finite()) {
                            return None;
                        }
                        Scalar::Float32List(values.to_vec())
                    }
                    ElementType::Float64 => {
                        let values = items.as_primitive_opt::<Float64Type>()?.values();
                        if !values.iter().all(|v| v.is_finite()) {
                            return None;
                        }
                        Scalar::Float64List(values.to_vec())
                    }
                    ElementType::Int64 => {
                        Scalar::Int64List(items.as_primitive_opt::<Int64Type>()?.values().to_vec())
                    }
                    ElementType::String => {
                        let strings = items.as_string_opt::<i32>()?;
                        Scalar::StringList((0..strings.len()).map(|i| strings.value(i).to_owned()).collect())
                    }
                }
            }
        })
    }

    /// The language type of the value.
    pub fn data_type(&self) -> DataType {
        match self {
            Scalar::Bool(_) => DataType::Bool,
            Scalar::Int64(_) => DataType::Int64,
            Scalar::Float32(_) => DataType::Float32,
            Scalar::Float64(_) => DataType::Float64,
            Scalar::String(_) => DataType::String,
            Scalar::Bytes(_) => DataType::Bytes,
            Scalar::Timestamp(_) => DataType::Timestamp,
            Scalar::Float32List(_) => DataType::Array(ElementType::Float32),
            Scalar::Float64List(_) => DataType::Array(ElementType::Float64),
            Scalar::Int64List(_) => DataType::Array(ElementType::Int64),
            Scalar::StringList(_) => DataType::Array(ElementType::String),
        }
    }
}

/// The order `min` and `max` use, between two values of one type: numbers and
/// timestamps by value (floats by IEEE total order, so −0.0 < +0.0 and the
/// result never depends on merge order), strings and bytes by their bytes,
/// false < true. `None` for values of different types and for arrays, which
/// have no order.
fn order(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Scalar::Int64(a), Scalar::Int64(b)) | (Scalar::Timestamp(a), Scalar::Timestamp(b)) => Some(a.cmp(b)),
        (Scalar::Float32(a), Scalar::Float32(b)) => Some(a.total_cmp(b)),
        (Scalar::Float64(a), Scalar::Float64(b)) => Some(a.total_cmp(b)),
        (Scalar::String(a), Scalar::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Scalar::Bytes(a), Scalar::Bytes(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Whether `candidate` replaces `current` as the `want` extreme (`Less` for
/// min, `Greater` for max). Values of another type never replace (a corrupt
/// slot keeps what it has).
fn extreme_wins(candidate: &Scalar, current: &Scalar, want: Ordering) -> bool {
    order(candidate, current) == Some(want)
}

/// Whether the stamped `candidate` replaces `current` for `first` (`want` =
/// `Less`) or `last` (`Greater`): by (time, seq), and only when both are equal
/// (the same event seen twice, or corruption) by the values' encodings, so the
/// outcome never depends on merge order.
fn stamped_wins(candidate: (i64, u64, &Scalar), current: (i64, u64, &Scalar), want: Ordering) -> bool {
    match (candidate.0, candidate.1).cmp(&(current.0, current.1)) {
        Ordering::Equal => tie_order(candidate.2, current.2) == want,
        o => o == want,
    }
}

/// An arbitrary but fixed total order on values, for exact ties only.
fn tie_order(a: &Scalar, b: &Scalar) -> Ordering {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    put_scalar(&mut x, a);
    put_scalar(&mut y, b);
    x.cmp(&y)
}

/// Add `v` to an exact integer sum; an overflow (of the i128, after some 2^64
/// maximal int64s) is sticky and zeroes the sum so equal states compare equal.
fn add_int(sum: &mut i128, overflow: &mut bool, v: i128) {
    match sum.checked_add(v).filter(|_| !*overflow) {
        Some(s) => *sum = s,
        None => {
            *sum = 0;
            *overflow = true;
        }
    }
}

// ---------------------------------------------------------------------------
// Partials and states.
// ---------------------------------------------------------------------------

/// One feature's partial aggregate over some set of events.
#[derive(Clone, Debug, PartialEq)]
pub enum Partial {
    /// The slot is not kept in this state: a lifetime feature's slot in a tile
    /// state, or a windowed feature's slot in the lifetime state. Merging with
    /// `Empty` changes nothing, and `Empty` takes whatever it is merged with.
    Empty,
    /// `count()`: the number of counted events.
    Count(u64),
    /// `sum` of int64: the exact sum of the `n` counted non-null values. Kept
    /// in an `i128` so that it is the same whatever the order of events and
    /// merges; whether it fits an int64 is decided at the end. `overflow` is
    /// set if even the `i128` overflowed (then `sum` is 0).
    SumInt {
        sum: i128,
        n: u64,
        overflow: bool,
    },
    /// `sum` of float64. May hold a non-finite sum (served as null).
    SumFloat {
        sum: f64,
        n: u64,
    },
    /// `avg` (its argument is float64): sum and number of the counted values.
    Avg {
        sum: f64,
        n: u64,
    },
    Min(Option<Scalar>),
    Max(Option<Scalar>),
    /// `first`: (event time, seq, value) of the least (time, seq) so far.
    First(Option<(i64, u64, Scalar)>),
    /// `last`: (event time, seq, value) of the greatest (time, seq) so far.
    Last(Option<(i64, u64, Scalar)>),
}

impl Partial {
    /// The partial of no events for `feature` (never `Empty`). A `sum` over
    /// an int64 argument is [`Partial::SumInt`], over anything else
    /// [`Partial::SumFloat`].
    pub fn identity(feature: &AggFeature) -> Partial {
        match feature.func {
            AggFunc::Count => Partial::Count(0),
            AggFunc::Sum => match feature.arg.as_ref().map(|a| a.ty) {
                Some(DataType::Int64) => Partial::SumInt { sum: 0, n: 0, overflow: false },
                _ => Partial::SumFloat { sum: 0.0, n: 0 },
            },
            AggFunc::Avg => Partial::Avg { sum: 0.0, n: 0 },
            AggFunc::Min => Partial::Min(None),
            AggFunc::Max => Partial::Max(None),
            AggFunc::First => Partial::First(None),
            AggFunc::Last => Partial::Last(None),
        }
    }

    /// Combine with the partial of another, disjoint set of events. The result
    /// is the same whatever the order and grouping of merges (float sums up to
    /// rounding). `Empty` is neutral. Partials of different kinds (a corrupt
    /// or foreign state) leave `self` as it is; so do `min`/`max` values of
    /// another type.
    pub fn merge(&mut self, other: &Partial) {
        match (&mut *self, other) {
            (_, Partial::Empty) => {}
            (Partial::Empty, other) => *self = other.clone(),
            (Partial::Count(a), Partial::Count(b)) => *a = a.saturating_add(*b),
            (
                Partial::SumInt { sum, n, overflow },
                Partial::SumInt { sum: other_sum, n: other_n, overflow: other_overflow },
            ) => {
                *overflow |= *other_overflow;
                add_int(sum, overflow, *other_sum);
                *n = n.saturating_add(*other_n);
            }
            (Partial::SumFloat { sum, n }, Partial::SumFloat { sum: other_sum, n: other_n })
            | (Partial::Avg { sum, n }, Partial::Avg { sum: other_sum, n: other_n }) => {
                *sum += *other_sum;
                *n = n.saturating_add(*other_n);
            }
            (Partial::Min(current), Partial::Min(Some(v))) => merge_extreme(current, v, Ordering::Less),
            (Partial::Max(current), Partial::Max(Some(v))) => merge_extreme(current, v, Ordering::Greater),
            (Partial::First(current), Partial::First(Some(v))) => merge_stamped(current, v, Ordering::Less),
            (Partial::Last(current), Partial::Last(Some(v))) => merge_stamped(current, v, Ordering::Greater),
            _ => {}
        }
    }

    /// Fold in one event that passed the feature's condition; `arg` is the
    /// feature's evaluated argument (none for `count()`).
    fn add(&mut self, arg: Option<&Arg>, row: usize, time: i64, seq: u64) {
        match self {
            Partial::Empty => {}
            Partial::Count(n) => *n = n.saturating_add(1),
            Partial::SumInt { sum, n, overflow } => {
                if let Some(v) = arg.and_then(|a| a.int64(row)) {
                    add_int(sum, overflow, i128::from(v));
                    *n = n.saturating_add(1);
                }
            }
            Partial::SumFloat { sum, n } | Partial::Avg { sum, n } => {
                if let Some(v) = arg.and_then(|a| a.float64(row)) {
                    *sum += v;
                    *n = n.saturating_add(1);
                }
            }
            Partial::Min(current) => {
                if let Some(a) = arg {
                    a.fold_extreme(row, current, Ordering::Less);
                }
            }
            Partial::Max(current) => {
                if let Some(a) = arg {
                    a.fold_extreme(row, current, Ordering::Greater);
                }
            }
            Partial::First(current) => fold_stamped(current, arg, row, time, seq, Ordering::Less),
            Partial::Last(current) => fold_stamped(current, arg, row, time, seq, Ordering::Greater),
        }
    }
}

fn merge_extreme(current: &mut Option<Scalar>, v: &Scalar, want: Ordering) {
    match current {
        None => *current = Some(v.clone()),
        Some(c) => {
            if extreme_wins(v, c, want) {
                c.clone_from(v);
            }
        }
    }
}

fn merge_stamped(current: &mut Option<(i64, u64, Scalar)>, v: &(i64, u64, Scalar), want: Ordering) {
    match current {
        None => *current = Some(v.clone()),
        Some((t, s, c)) => {
            if stamped_wins((v.0, v.1, &v.2), (*t, *s, c), want) {
                *t = v.0;
                *s = v.1;
                c.clone_from(&v.2);
            }
        }
    }
}

/// `first`/`last`: read the value only if the event's stamp can win.
fn fold_stamped(
    current: &mut Option<(i64, u64, Scalar)>,
    arg: Option<&Arg>,
    row: usize,
    time: i64,
    seq: u64,
    want: Ordering,
) {
    if let Some((t, s, _)) = current {
        if (time, seq).cmp(&(*t, *s)) == want.reverse() {
            return;
        }
    }
    let Some(v) = arg.and_then(|a| a.scalar(row)) else { return };
    match current {
        Some((t, s, c)) if !stamped_wins((time, seq, &v), (*t, *s, c), want) => {}
        _ => *current = Some((time, seq, v)),
    }
}

/// The partials of every feature of one view, in feature order.
#[derive(Clone, Debug, PartialEq)]
pub struct State(pub Vec<Partial>);

impl State {
    /// A state for one tile: identity partials for the windowed features,
    /// `Empty` for the lifetime ones.
    pub fn tile(features: &[AggFeature]) -> State {
        State(
            features
                .iter()
                .map(|f| if f.window.is_some() { Partial::identity(f) } else { Partial::Empty })
                .collect(),
        )
    }

    /// The lifetime state: identity partials for the features without a
    /// window, `Empty` for the windowed ones.
    pub fn lifetime(features: &[AggFeature]) -> State {
        State(
            features
                .iter()
                .map(|f| if f.window.is_none() { Partial::identity(f) } else { Partial::Empty })
                .collect(),
        )
    }

    /// Fold the event at `row` of the batch `inputs` was evaluated from into
    /// every slot that is not `Empty`, unless the feature's condition is false
    /// or null there; null arguments are ignored. `event_time` (epoch micros)
    /// and `seq` (arrival order, greater is later) order `first` and `last`.
    /// `features` must be those `inputs` was evaluated for. Does nothing if
    /// `row` is out of range (a caller bug: debug builds panic).
    pub fn add(&mut self, features: &[AggFeature], inputs: &Inputs, row: usize, event_time: i64, seq: u64) {
        debug_assert_eq!(features.len(), inputs.features.len(), "inputs of another view");
        debug_assert!(row < inputs.rows, "row {row} of a batch of {}", inputs.rows);
        if row >= inputs.rows {
            return;
        }
        for ((slot, _), input) in self.0.iter_mut().zip(features).zip(&inputs.features) {
            if matches!(slot, Partial::Empty) {
                continue;
            }
            if let Some(c) = &input.condition {
                if !(c.is_valid(row) && c.value(row)) {
                    continue;
                }
            }
            slot.add(input.arg.as_ref(), row, event_time, seq);
        }
    }

    /// Merge `other` into `self`, slot by slot (see [`Partial::merge`]). A
    /// state with fewer slots is treated as having `Empty` ones at the end.
    pub fn merge(&mut self, other: &State) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.merge(theirs);
        }
        if other.0.len() > self.0.len() {
            self.0.extend_from_slice(&other.0[self.0.len()..]);
        }
    }

    /// Append the state's encoding to `out`; see [`State::decode`] for the format.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        put_u64(out, self.0.len() as u64);
        for p in &self.0 {
            put_partial(out, p);
        }
    }

    /// Decode a state written by [`State::encode`]. Never panics; rejects
    /// anything that is not exactly one canonical encoding (so a decoded state
    /// re-encodes to the same bytes), including trailing bytes.
    ///
    /// # Format (version 1)
    ///
    /// Integers are LEB128 varints, minimal length; signed ones are zigzag
    /// encoded first. Floats are IEEE little-endian bits. Lengths are varints.
    ///
    /// ```text
    /// state   := 0x01 count:varint partial{count}
    /// partial := 0 Empty
    ///          | 1 Count       n:varint
    ///          | 2 SumInt      sum:zigzag-varint(i128) n:varint overflow:(0|1)
    ///          | 3 SumFloat    sum:f64 n:varint
    ///          | 4 Avg         sum:f64 n:varint
    ///          | 5 Min         (0 | 1 scalar)
    ///          | 6 Max         (0 | 1 scalar)
    ///          | 7 First       (0 | 1 time:zigzag-varint seq:varint scalar)
    ///          | 8 Last        (0 | 1 time:zigzag-varint seq:varint scalar)
    /// scalar  := 0 bool:(0|1) | 1 int64:zigzag-varint | 2 f32 | 3 f64
    ///          | 4 len utf8-bytes | 5 len bytes | 6 timestamp-micros:zigzag-varint
    ///          | 7 len f32{len} | 8 len f64{len} | 9 len zigzag-varint{len}
    ///          | 10 len (len utf8-bytes){len}
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<State, CorruptState> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != VERSION {
            return Err(CorruptState("unknown version"));
        }
        let count = r.len()?;
        let mut partials = Vec::with_capacity(count);
        for _ in 0..count {
            partials.push(r.partial()?);
        }
        if r.pos != bytes.len() {
            return Err(CorruptState("trailing bytes"));
        }
        Ok(State(partials))
    }
}

/// Merge encoded states, for a RocksDB merge operator: decode `existing` (if
/// any) and every operand, merge them in that order and encode the result.
/// Inputs that do not decode are skipped; `None` only if none decodes.
pub fn merge_encoded<'a>(
    existing: Option<&[u8]>,
    operands: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Vec<u8>> {
    let mut merged: Option<State> = existing.and_then(|bytes| State::decode(bytes).ok());
    for bytes in operands {
        let Ok(state) = State::decode(bytes) else { continue };
        match &mut merged {
            None => merged = Some(state),
            Some(m) => m.merge(&state),
        }
    }
    let merged = merged?;
    let mut out = Vec::new();
    merged.encode(&mut out);
    Some(out)
}

// ---------------------------------------------------------------------------
// Evaluating a batch.
// ---------------------------------------------------------------------------

/// The evaluated arguments and conditions of every feature of one view over
/// one record batch, ready for [`State::add`].
#[derive(Debug)]
pub struct Inputs {
    features: Vec<FeatureInputs>,
    rows: usize,
}

impl Inputs {
    /// The number of rows of the batch the inputs were evaluated over.
    pub fn num_rows(&self) -> usize {
        self.rows
    }
}

#[derive(Debug)]
struct FeatureInputs {
    arg: Option<Arg>,
    condition: Option<BooleanArray>,
}

/// An evaluated argument, downcast once per batch.
#[derive(Debug)]
enum Arg {
    Int64(Int64Array),
    Float64(Float64Array),
    String(StringArray),
    Other(ArrayRef, DataType),
}

impl Arg {
    fn new(array: ArrayRef, ty: DataType) -> Result<Arg, EvalError> {
        let wrong =
            || EvalError::PlanInvariant(format!("argument of type {ty} evaluated to {}", array.data_type()));
        Ok(match ty {
            DataType::Int64 => Arg::Int64(array.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?.clone()),
            DataType::Float64 => {
                Arg::Float64(array.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?.clone())
            }
            DataType::String => Arg::String(array.as_string_opt::<i32>().ok_or_else(wrong)?.clone()),
            ty => Arg::Other(array, ty),
        })
    }

    fn int64(&self, row: usize) -> Option<i64> {
        match self {
            Arg::Int64(a) => a.is_valid(row).then(|| a.value(row)),
            _ => None,
        }
    }

    fn float64(&self, row: usize) -> Option<f64> {
        match self {
            Arg::Float64(a) => a.is_valid(row).then(|| a.value(row)).filter(|v| v.is_finite()),
            Arg::Int64(a) => a.is_valid(row).then(|| a.value(row) as f64),
            _ => None,
        }
    }

    fn scalar(&self, row: usize) -> Option<Scalar> {
        match self {
            Arg::Int64(a) => Scalar::from_array(a, row, DataType::Int64),
            Arg::Float64(a) => Scalar::from_array(a, row, DataType::Float64),
            Arg::String(a) => Scalar::from_array(a, row, DataType::String),
            Arg::Other(a, ty) => Scalar::from_array(a.as_ref(), row, *ty),
        }
    }

    /// `min`/`max`: replace `current` if the value at `row` beats it, without
    /// allocating unless it does.
    fn fold_extreme(&self, row: usize, current: &mut Option<Scalar>, want: Ordering) {
        match (self, current.as_mut()) {
            (Arg::Int64(a), Some(Scalar::Int64(c))) => {
                if a.is_valid(row) && a.value(row).cmp(c) == want {
                    *c = a.value(row);
                }
            }
            (Arg::Float64(a), Some(Scalar::Float64(c))) => {
                let v = a.value(row);
                if a.is_valid(row) && v.is_finite() && v.total_cmp(c) == want {
                    *c = v;
                }
            }
            (Arg::String(a), Some(Scalar::String(c))) => {
                if a.is_valid(row) && a.value(row).as_bytes().cmp(c.as_bytes()) == want {
                    c.clear();
                    c.push_str(a.value(row));
                }
            }
            (_, Some(c)) => {
                if let Some(v) = self.scalar(row) {
                    if extreme_wins(&v, c, want) {
                        *c = v;
                    }
                }
            }
            (_, None) => *current = self.scalar(row),
        }
    }
}

/// Evaluate every feature's argument and condition over `batch` (which must
/// hold the source fields the plan reads, in the plan's types).
pub fn evaluate(features: &[AggFeature], batch: &RecordBatch) -> Result<Inputs, EvalError> {
    let mut out = Vec::with_capacity(features.len());
    for f in features {
        let arg = match &f.arg {
            Some(expr) => Some(Arg::new(eval(expr, batch)?, expr.ty)?),
            None => None,
        };
        let condition = match &f.condition {
            Some(expr) => {
                let c = eval(expr, batch)?;
                Some(c.as_boolean_opt().cloned().ok_or_else(|| {
                    EvalError::PlanInvariant(format!(
                        "condition of `{}` evaluated to {}",
                        f.name,
                        c.data_type()
                    ))
                })?)
            }
            None => None,
        };
        out.push(FeatureInputs { arg, condition });
    }
    Ok(Inputs { features: out, rows: batch.num_rows() })
}

// ---------------------------------------------------------------------------
// Tiles, windows and request-time values.
// ---------------------------------------------------------------------------

/// A duration in whole microseconds, saturating at `i64::MAX`: the unit of
/// every time and resolution here.
pub fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The tile holding `time`: floor(time / resolution), also for times before
/// 1970. Both in microseconds; `resolution` must be positive (panics on 0).
pub fn tile_of(time: i64, resolution: i64) -> i64 {
    time.div_euclid(resolution)
}

/// The number of tiles W/R a feature's window covers, `None` for a lifetime
/// feature. At least 1 (the checker only allows positive multiples of R).
pub fn window_tiles(feature: &AggFeature, resolution: i64) -> Option<i64> {
    feature.window.map(|w| (duration_micros(w) / resolution).max(1))
}

/// The longest window of the view in tiles (the greatest W/R), or `None` if no
/// feature has a window. A request at tile c reads tiles c − horizon + 1 ..= c.
pub fn horizon_tiles(features: &[AggFeature], resolution: i64) -> Option<i64> {
    features.iter().filter_map(|f| window_tiles(f, resolution)).max()
}

/// A partial being merged at request time, borrowing the values it keeps so
/// that only the winners are cloned, once.
enum Acc<'a> {
    Count(u64),
    SumInt { sum: i128, n: u64, overflow: bool },
    SumFloat { sum: f64, n: u64 },
    Avg { sum: f64, n: u64 },
    Min(Option<&'a Scalar>),
    Max(Option<&'a Scalar>),
    First(Option<(i64, u64, &'a Scalar)>),
    Last(Option<(i64, u64, &'a Scalar)>),
}

impl<'a> Acc<'a> {
    fn identity(feature: &AggFeature) -> Acc<'a> {
        match Partial::identity(feature) {
            Partial::SumInt { .. } => Acc::SumInt { sum: 0, n: 0, overflow: false },
            Partial::SumFloat { .. } => Acc::SumFloat { sum: 0.0, n: 0 },
            Partial::Avg { .. } => Acc::Avg { sum: 0.0, n: 0 },
            Partial::Min(_) => Acc::Min(None),
            Partial::Max(_) => Acc::Max(None),
            Partial::First(_) => Acc::First(None),
            Partial::Last(_) => Acc::Last(None),
            Partial::Count(_) | Partial::Empty => Acc::Count(0),
        }
    }

    /// Merge one stored partial in, with the rules of [`Partial::merge`].
    fn fold(&mut self, p: &'a Partial) {
        match (self, p) {
            (Acc::Count(a), Partial::Count(b)) => *a = a.saturating_add(*b),
            (
                Acc::SumInt { sum, n, overflow },
                Partial::SumInt { sum: other_sum, n: other_n, overflow: other_overflow },
            ) => {
                *overflow |= *other_overflow;
                add_int(sum, overflow, *other_sum);
                *n = n.saturating_add(*other_n);
            }
            (Acc::SumFloat { sum, n }, Partial::SumFloat { sum: other_sum, n: other_n })
            | (Acc::Avg { sum, n }, Partial::Avg { sum: other_sum, n: other_n }) => {
                *sum += *other_sum;
                *n = n.saturating_add(*other_n);
            }
            (Acc::Min(current), Partial::Min(Some(v))) => fold_extreme_ref(current, v, Ordering::Less),
            (Acc::Max(current), Partial::Max(Some(v))) => fold_extreme_ref(current, v, Ordering::Greater),
            (Acc::First(current), Partial::First(Some((t, s, v)))) => {
                fold_stamped_ref(current, (*t, *s, v), Ordering::Less)
            }
            (Acc::Last(current), Partial::Last(Some((t, s, v)))) => {
                fold_stamped_ref(current, (*t, *s, v), Ordering::Greater)
            }
            _ => {}
        }
    }

    /// The feature's value, of its declared type `ty`.
    fn value(self, ty: DataType) -> Option<Scalar> {
        let widen = ty == DataType::Float64;
        let int = |v: i64| if widen { Scalar::Float64(v as f64) } else { Scalar::Int64(v) };
        let finite = |v: f64| v.is_finite().then_some(Scalar::Float64(v));
        let widened = |s: &Scalar| match s {
            Scalar::Int64(v) if widen => Scalar::Float64(*v as f64),
            s => s.clone(),
        };
        match self {
            Acc::Count(n) => i64::try_from(n).ok().map(int),
            Acc::SumInt { sum, n, overflow } => {
                if n == 0 || overflow {
                    None
                } else {
                    i64::try_from(sum).ok().map(int)
                }
            }
            Acc::SumFloat { sum, n } => (n > 0).then_some(sum).and_then(finite),
            Acc::Avg { sum, n } => (n > 0).then(|| sum / n as f64).and_then(finite),
            Acc::Min(v) | Acc::Max(v) => v.map(widened),
            Acc::First(v) | Acc::Last(v) => v.map(|(_, _, s)| widened(s)),
        }
    }
}

fn fold_extreme_ref<'a>(current: &mut Option<&'a Scalar>, v: &'a Scalar, want: Ordering) {
    match current {
        Some(c) if !extreme_wins(v, c, want) => {}
        _ => *current = Some(v),
    }
}

fn fold_stamped_ref<'a>(
    current: &mut Option<(i64, u64, &'a Scalar)>,
    v: (i64, u64, &'a Scalar),
    want: Ordering,
) {
    match current {
        Some(c) if !stamped_wins(v, *c, want) => {}
        _ => *current = Some(v),
    }
}

/// Every feature's value at request time `now` (`None` is null), of its
/// declared type, from fine tiles alone.
///
/// `tiles` holds the key's tile states as (tile index, state), in any order;
/// a windowed feature of W/R tiles merges its slot over the tiles with index
/// in [c − W/R + 1, c], c = [`tile_of`]`(now, resolution)`. Lifetime features
/// read `lifetime` (absent: no events, so `count()` is 0 and the others null).
/// Walks `tiles` once and clones only the values it returns.
pub fn finalize(
    features: &[AggFeature],
    resolution: i64,
    now: i64,
    tiles: &[(i64, State)],
    lifetime: Option<&State>,
) -> Vec<Option<Scalar>> {
    let covers = window_covers(features, resolution, &Ladder::fine(), now);
    let mut values = Finalizer::new(features, &covers);
    for (k, state) in tiles {
        values.fold(0, *k, state);
    }
    values.finish(features, lifetime)
}

/// Per feature, the tiles of `ladder` its window reads at request time
/// `now`: the [`Cover`] of fine tiles [c − W/R + 1, c], c = [`tile_of`]`(now,
/// resolution)`. `None` for a lifetime feature.
pub fn window_covers(
    features: &[AggFeature],
    resolution: i64,
    ladder: &Ladder,
    now: i64,
) -> Vec<Option<Cover>> {
    let current = tile_of(now, resolution);
    features
        .iter()
        .map(|f| window_tiles(f, resolution).map(|w| ladder.cover(current.saturating_sub(w - 1), current)))
        .collect()
}

/// Folds one key's stored states into its features' values at one request
/// time: each tile state into the features whose [`Cover`] holds that tile,
/// the lifetime state into the lifetime features. States may come in any
/// order; only the values returned are cloned, once.
pub struct Finalizer<'a> {
    accs: Vec<(Option<&'a Cover>, Acc<'a>)>,
}

impl<'a> Finalizer<'a> {
    /// `covers` from [`window_covers`], one per feature.
    pub fn new(features: &[AggFeature], covers: &'a [Option<Cover>]) -> Finalizer<'a> {
        Finalizer { accs: features.iter().zip(covers).map(|(f, c)| (c.as_ref(), Acc::identity(f))).collect() }
    }

    /// Fold the state of tile `index` of ladder level `level`.
    pub fn fold(&mut self, level: usize, index: i64, state: &'a State) {
        for ((cover, acc), p) in self.accs.iter_mut().zip(&state.0) {
            if cover.is_some_and(|c| c.contains(level, index)) {
                acc.fold(p);
            }
        }
    }

    /// The values, with the lifetime features read from `lifetime`.
    pub fn finish(mut self, features: &[AggFeature], lifetime: Option<&'a State>) -> Vec<Option<Scalar>> {
        if let Some(lifetime) = lifetime {
            for ((cover, acc), p) in self.accs.iter_mut().zip(&lifetime.0) {
                if cover.is_none() {
                    acc.fold(p);
                }
            }
        }
        self.accs.into_iter().zip(features).map(|((_, acc), f)| acc.value(f.ty)).collect()
    }
}

// ---------------------------------------------------------------------------
// Encoding.
// ---------------------------------------------------------------------------

const VERSION: u8 = 1;

/// A stored state that does not decode; the reason names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt aggregation state: {0}")]
pub struct CorruptState(&'static str);

mod tag {
    pub const EMPTY: u8 = 0;
    pub const COUNT: u8 = 1;
    pub const SUM_INT: u8 = 2;
    pub const SUM_FLOAT: u8 = 3;
    pub const AVG: u8 = 4;
    pub const MIN: u8 = 5;
    pub const MAX: u8 = 6;
    pub const FIRST: u8 = 7;
    pub const LAST: u8 = 8;

    pub const BOOL: u8 = 0;
    pub const INT64: u8 = 1;
    pub const FLOAT32: u8 = 2;
    pub const FLOAT64: u8 = 3;
    pub const STRING: u8 = 4;
    pub const BYTES: u8 = 5;
    pub const TIMESTAMP: u8 = 6;
    pub const FLOAT32_LIST: u8 = 7;
    pub const FLOAT64_LIST: u8 = 8;
    pub const INT64_LIST: u8 = 9;
    pub const STRING_LIST: u8 = 10;
}

fn put_u128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    put_u128(out, u128::from(v));
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_i128(out: &mut Vec<u8>, v: i128) {
    put_u128(out, ((v << 1) ^ (v >> 127)) as u128);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_partial(out: &mut Vec<u8>, p: &Partial) {
    match p {
        Partial::Empty => out.push(tag::EMPTY),
        Partial::Count(n) => {
            out.push(tag::COUNT);
            put_u64(out, *n);
        }
        Partial::SumInt { sum, n, overflow } => {
            out.push(tag::SUM_INT);
            put_i128(out, *sum);
            put_u64(out, *n);
            out.push(u8::from(*overflow));
        }
        Partial::SumFloat { sum, n } | Partial::Avg { sum, n } => {
            out.push(if matches!(p, Partial::Avg { .. }) { tag::AVG } else { tag::SUM_FLOAT });
            out.extend_from_slice(&sum.to_le_bytes());
            put_u64(out, *n);
        }
        Partial::Min(v) | Partial::Max(v) => {
            out.push(if matches!(p, Partial::Min(_)) { tag::MIN } else { tag::MAX });
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_scalar(out, v);
                }
            }
        }
        Partial::First(v) | Partial::Last(v) => {
            out.push(if matches!(p, Partial::First(_)) { tag::FIRST } else { tag::LAST });
            match v {
                None => out.push(0),
                Some((time, seq, v)) => {
                    out.push(1);
                    put_i64(out, *time);
                    put_u64(out, *seq);
                    put_scalar(out, v);
                }
            }
        }
    }
}

fn put_scalar(out: &mut Vec<u8>, v: &Scalar) {
    match v {
        Scalar::Bool(b) => {
            out.push(tag::BOOL);
            out.push(u8::from(*b));
        }
        Scalar::Int64(i) => {
            out.push(tag::INT64);
            put_i64(out, *i);
        }
        Scalar::Float32(x) => {
            out.push(tag::FLOAT32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Scalar::Float64(x) => {
            out.push(tag::FLOAT64);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Scalar::String(s) => {
            out.push(tag::STRING);
            put_bytes(out, s.as_bytes());
        }
        Scalar::Bytes(b) => {
            out.push(tag::BYTES);
            put_bytes(out, b);
        }
        Scalar::Timestamp(t) => {
            out.push(tag::TIMESTAMP);
            put_i64(out, *t);
        }
        Scalar::Float32List(xs) => {
            out.push(tag::FLOAT32_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Scalar::Float64List(xs) => {
            out.push(tag::FLOAT64_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Scalar::Int64List(xs) => {
            out.push(tag::INT64_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                put_i64(out, *x);
            }
        }
        Scalar::StringList(xs) => {
            out.push(tag::STRING_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                put_bytes(out, x.as_bytes());
            }
        }
    }
}

/// Reads an encoded state; every method fails rather than panics on bad input.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, CorruptState> {
        let b = *self.bytes.get(self.pos).ok_or(CorruptState("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptState> {
        if n > self.remaining() {
            return Err(CorruptState("truncated"));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn flag(&mut self) -> Result<bool, CorruptState> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CorruptState("flag is neither 0 nor 1")),
        }
    }

    /// A minimal LEB128 varint of at most `bits` bits.
    fn varint(&mut self, bits: u32) -> Result<u128, CorruptState> {
        let mut v: u128 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            let payload = u128::from(b & 0x7f);
            if shift >= bits || (bits - shift < 7 && payload >> (bits - shift) != 0) {
                return Err(CorruptState("varint out of range"));
            }
            v |= payload << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(CorruptState("varint not minimal"));
                }
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn u64(&mut self) -> Result<u64, CorruptState> {
        // At most 64 bits were read, so the conversion cannot fail.
        u64::try_from(self.varint(64)?).map_err(|_| CorruptState("varint out of range"))
    }

    fn i64(&mut self) -> Result<i64, CorruptState> {
        let u = self.u64()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn i128(&mut self) -> Result<i128, CorruptState> {
        let u = self.varint(128)?;
        Ok(((u >> 1) as i128) ^ -((u & 1) as i128))
    }

    /// A length or count of items that each take at least one byte, so it
    /// can be no more than the bytes left (which bounds any allocation).
    fn len(&mut self) -> Result<usize, CorruptState> {
        let n = usize::try_from(self.u64()?).map_err(|_| CorruptState("length out of range"))?;
        if n > self.remaining() {
            return Err(CorruptState("truncated"));
        }
        Ok(n)
    }

    fn f32(&mut self) -> Result<f32, CorruptState> {
        let b = self.take(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, CorruptState> {
        let b = self.take(8)?;
        Ok(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn string(&mut self) -> Result<String, CorruptState> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| CorruptState("invalid UTF-8"))
    }

    fn partial(&mut self) -> Result<Partial, CorruptState> {
        Ok(match self.byte()? {
            tag::EMPTY => Partial::Empty,
            tag::COUNT => Partial::Count(self.u64()?),
            tag::SUM_INT => {
                let sum = self.i128()?;
                let n = self.u64()?;
                let overflow = self.flag()?;
                Partial::SumInt { sum, n, overflow }
            }
            tag::SUM_FLOAT => {
                let sum = self.f64()?;
                Partial::SumFloat { sum, n: self.u64()? }
            }
            tag::AVG => {
                let sum = self.f64()?;
                Partial::Avg { sum, n: self.u64()? }
            }
            tag::MIN => Partial::Min(self.optional(Self::scalar)?),
            tag::MAX => Partial::Max(self.optional(Self::scalar)?),
            tag::FIRST => Partial::First(self.optional(Self::stamped)?),
            tag::LAST => Partial::Last(self.optional(Self::stamped)?),
            _ => return Err(CorruptState("unknown partial kind")),
        })
    }

    fn optional<T>(
        &mut self,
        read: fn(&mut Self) -> Result<T, CorruptState>,
    ) -> Result<Option<T>, CorruptState> {
        if self.flag()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn stamped(&mut self) -> Result<(i64, u64, Scalar), CorruptState> {
        let time = self.i64()?;
        let seq = self.u64()?;
        Ok((time, seq, self.scalar()?))
    }

    fn scalar(&mut self) -> Result<Scalar, CorruptState> {
        Ok(match self.byte()? {
            tag::BOOL => Scalar::Bool(self.flag()?),
            tag::INT64 => Scalar::Int64(self.i64()?),
            tag::FLOAT32 => Scalar::Float32(self.f32()?),
            tag::FLOAT64 => Scalar::Float64(self.f64()?),
            tag::STRING => Scalar::String(self.string()?),
            tag::BYTES => {
                let n = self.len()?;
                Scalar::Bytes(self.take(n)?.to_vec())
            }
            tag::TIMESTAMP => Scalar::Timestamp(self.i64()?),
            tag::FLOAT32_LIST => {
                let n = self.len()?;
                Scalar::Float32List((0..n).map(|_| self.f32()).collect::<Result<_, _>>()?)
            }
            tag::FLOAT64_LIST => {
                let n = self.len()?;
                Scalar::Float64List((0..n).map(|_| self.f64()).collect::<Result<_, _>>()?)
            }
            tag::INT64_LIST => {
                let n = self.len()?;
                Scalar::Int64List((0..n).map(|_| self.i64()).collect::<Result<_, _>>()?)
            }
            tag::STRING_LIST => {
                let n = self.len()?;
                Scalar::StringList((0..n).map(|_| self.string()).collect::<Result<_, _>>()?)
            }
            _ => return Err(CorruptState("unknown value type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Float32Array, Float64Array, Int64Array, ListArray, StringArray,
        TimestampMicrosecondArray,
    };

    use super::*;
    use crate::plan::{Expr, ExprKind};

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

    fn values_at(
        features: &[AggFeature],
        batch: &RecordBatch,
        times: &[i64],
        now: i64,
    ) -> Vec<Option<Scalar>> {
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
        let expected =
            [Some(Scalar::Int64(0)), Some(Scalar::Int64(0)), None, None, None, None, None, None, None];
        // No states at all, and identity states.
        assert_eq!(finalize(&features, R, 0, &[], None), expected);
        let tiles = [(0, State::tile(&features))];
        assert_eq!(finalize(&features, R, 0, &tiles, Some(&State::lifetime(&features))), expected);
        // Events whose values are all null count for count() only.
        let b = batch(vec![
            ("i", ints(&[None, None])),
            ("f", floats(&[None, None])),
            ("s", strings(&[None, None])),
        ]);
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
            assert_eq!(
                finalize(&features, R, 5, &[(0, tile)], Some(&life)),
                [s("b"), s("c"), s("b"), s("c")]
            );
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
                Some(Expr {
                    kind: ExprKind::Cast(Box::new(field("i", DataType::Int64))),
                    ty: DataType::Float64,
                }),
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
        assert_eq!(
            State::lifetime(&features),
            State(vec![Partial::Count(0), Partial::Empty, Partial::Empty])
        );
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
            (
                Partial::Avg { sum: 1.0, n: 1 },
                Partial::Avg { sum: 3.0, n: 1 },
                Partial::Avg { sum: 4.0, n: 2 },
            ),
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
        let y =
            State(vec![Partial::Empty, Partial::Max(None), Partial::Min(Some(Scalar::String("a".into())))]);
        let mut xy = x.clone();
        xy.merge(&y);
        assert_eq!(
            xy,
            State(vec![Partial::Count(3), Partial::Max(None), Partial::Min(Some(Scalar::Int64(2)))])
        );
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
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(
                    Vec::<Option<i64>>::new(),
                )])),
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
}
