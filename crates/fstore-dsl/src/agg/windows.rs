//! Tiles, windows and request-time values: which tile an event falls in,
//! how many tiles a window covers, and each feature's value at request time
//! from the stored states ([`finalize`], [`Finalizer`]).

use std::cmp::Ordering;
use std::time::Duration;

use super::state::{Partial, State};
use super::values::{add_int, extreme_wins, stamped_wins, Scalar};
use crate::plan::AggFeature;
use crate::tiles::{Cover, Ladder};
use crate::types::DataType;

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
