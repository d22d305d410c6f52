//! Partials and states: one feature's partial aggregate ([`Partial`]), one
//! view's partials ([`State`]), how events fold into them and how they merge.

use std::cmp::Ordering;

use arrow::array::Array;

use super::inputs::{Arg, Inputs};
use super::values::{add_int, extreme_wins, stamped_wins, Scalar};
use crate::plan::{AggFeature, AggFunc};
use crate::types::DataType;

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
}
