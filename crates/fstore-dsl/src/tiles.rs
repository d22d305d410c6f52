//! Tiles at several sizes, and how a window is read from the fewest of them.
//!
//! An aggregating view cuts time into tiles of its resolution R (the *fine*
//! tiles; the window rule of [`crate::agg`] is stated over them). Beside each
//! fine tile the store keeps *coarse* tiles: each covers a whole, aligned run
//! of fine tiles and holds the merge of their states, written by the same
//! merge as the fine tile when an event arrives. A [`Ladder`] lists the sizes,
//! finest first, each a multiple of the one before it.
//!
//! A window over fine tiles [a, c] is then read as a [`Cover`]: the coarse
//! tiles that lie wholly inside it, largest first, and finer ones only at the
//! two edges. Every fine tile of [a, c] is in exactly one tile of the cover,
//! and no tile outside it is, so merging the cover's states gives exactly the
//! merge of the window's fine tiles: the answer does not change, only the
//! number of states read. With minute, hour and day tiles, a 7-day window
//! reads at most 2 × (59 + 23) + 7 states, not 10,080.

use std::time::Duration;

use crate::agg::{duration_micros, horizon_tiles};
use crate::plan::AggFeature;

/// Coarse tile sizes fstore keeps, when they are multiples of the view's
/// resolution and at most half its longest window: a minute, an hour, a day.
const COARSE_SIZES: [Duration; 3] =
    [Duration::from_secs(60), Duration::from_secs(3600), Duration::from_secs(86_400)];

/// The tile sizes of one view, finest first, in fine tiles: `spans[0]` is 1
/// and each span divides the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder {
    spans: Vec<i64>,
}

/// One run of tiles of one level: indices `first..=last` of tiles of
/// `level` (index k of level l covers fine tiles k·span .. (k+1)·span − 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Run {
    pub level: usize,
    pub first: i64,
    pub last: i64,
}

/// The tiles that together hold exactly one window's fine tiles: at most two
/// runs per level below the top and one at the top.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cover {
    pub runs: Vec<Run>,
}

impl Cover {
    /// Whether tile `index` of `level` is one of the cover's tiles.
    pub fn contains(&self, level: usize, index: i64) -> bool {
        self.runs.iter().any(|r| r.level == level && r.first <= index && index <= r.last)
    }

    /// How many tiles the cover names.
    pub fn tiles(&self) -> i64 {
        self.runs.iter().map(|r| r.last - r.first + 1).sum()
    }
}

impl Ladder {
    /// A ladder of the given spans in fine tiles. `None` unless the first is
    /// 1 and each later one is a multiple, greater than 1, of the one before.
    pub fn new(spans: Vec<i64>) -> Option<Ladder> {
        let ok = spans.first() == Some(&1) && spans.windows(2).all(|w| w[1] > w[0] && w[1] % w[0] == 0);
        ok.then_some(Ladder { spans })
    }

    /// Fine tiles only.
    pub fn fine() -> Ladder {
        Ladder { spans: vec![1] }
    }

    /// The ladder fstore keeps for a view of `features` at `resolution`
    /// microseconds: the fine tiles, then each of a minute, an hour and a day
    /// that is a multiple of the size before it and at most half the longest
    /// window (a coarser tile would rarely fit wholly inside a window).
    pub fn for_view(features: &[AggFeature], resolution: i64) -> Ladder {
        let mut spans = vec![1];
        let Some(horizon) = horizon_tiles(features, resolution) else { return Ladder { spans } };
        let longest = horizon.saturating_mul(resolution);
        let mut last = resolution;
        for size in COARSE_SIZES {
            let size = duration_micros(size);
            if size > last && size % last == 0 && size.saturating_mul(2) <= longest {
                spans.push(size / resolution);
                last = size;
            }
        }
        Ladder { spans }
    }

    /// Number of levels, the fine one included.
    pub fn levels(&self) -> usize {
        self.spans.len()
    }

    /// Span of `level` in fine tiles.
    pub fn span(&self, level: usize) -> i64 {
        self.spans[level]
    }

    /// Every level's span in fine tiles, finest first.
    pub fn spans(&self) -> &[i64] {
        &self.spans
    }

    /// The index at `level` of the tile that holds fine tile `fine`.
    pub fn tile_at(&self, level: usize, fine: i64) -> i64 {
        fine.div_euclid(self.spans[level])
    }

    /// The tiles that hold exactly the fine tiles `first..=last` (empty if
    /// `first > last`), coarsest first.
    pub fn cover(&self, first: i64, last: i64) -> Cover {
        let mut cover = Cover::default();
        self.cover_into(first, last, self.spans.len() - 1, &mut cover.runs);
        cover.runs.sort_by_key(|r| std::cmp::Reverse(r.level));
        cover
    }

    fn cover_into(&self, lo: i64, hi: i64, level: usize, runs: &mut Vec<Run>) {
        if lo > hi {
            return;
        }
        if level == 0 {
            runs.push(Run { level, first: lo, last: hi });
            return;
        }
        let span = self.spans[level];
        // The tiles of this level wholly inside [lo, hi].
        let first = ceil_div(lo, span);
        let last = (hi.saturating_add(1)).div_euclid(span) - 1;
        if first > last {
            self.cover_into(lo, hi, level - 1, runs);
            return;
        }
        runs.push(Run { level, first, last });
        self.cover_into(lo, first * span - 1, level - 1, runs);
        self.cover_into((last + 1) * span, hi, level - 1, runs);
    }
}

/// The runs of tiles that any of `covers` reads, each level's runs merged
/// where they overlap or touch, sorted by level and index: what a lookup of
/// one key reads, whichever features ask.
pub fn union<'a>(covers: impl IntoIterator<Item = &'a Cover>) -> Vec<Run> {
    let mut runs: Vec<Run> = covers.into_iter().flat_map(|c| c.runs.iter().copied()).collect();
    runs.sort_unstable();
    let mut out: Vec<Run> = Vec::with_capacity(runs.len());
    for run in runs {
        match out.last_mut() {
            Some(last) if last.level == run.level && run.first <= last.last.saturating_add(1) => {
                last.last = last.last.max(run.last);
            }
            _ => out.push(run),
        }
    }
    out
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) == 0 {
        q
    } else {
        q + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{AggFeature, AggFunc};
    use crate::DataType;

    fn count_over(window: Duration) -> AggFeature {
        AggFeature {
            name: "n".into(),
            ty: DataType::Int64,
            func: AggFunc::Count,
            arg: None,
            window: Some(window),
            condition: None,
        }
    }

    const MINUTE: i64 = 60_000_000;

    #[test]
    fn a_view_keeps_minute_hour_and_day_tiles_as_its_windows_need() {
        let week = count_over(Duration::from_secs(7 * 86_400));
        let day = count_over(Duration::from_secs(86_400));
        let hour = count_over(Duration::from_secs(3600));
        assert_eq!(
            Ladder::for_view(&[hour.clone(), day.clone(), week.clone()], MINUTE).spans(),
            [1, 60, 1440]
        );
        assert_eq!(Ladder::for_view(&[hour.clone(), day], MINUTE).spans(), [1, 60]);
        assert_eq!(Ladder::for_view(std::slice::from_ref(&hour), MINUTE).spans(), [1]);
        // One-second tiles: minutes too.
        assert_eq!(Ladder::for_view(std::slice::from_ref(&hour), 1_000_000).spans(), [1, 60]);
        // 90 s tiles: no minute, but hours and days are multiples.
        assert_eq!(Ladder::for_view(&[week], 90_000_000).spans(), [1, 40, 960]);
        // Lifetime aggregates only: no windows, fine tiles only.
        let lifetime = AggFeature { window: None, ..hour };
        assert_eq!(Ladder::for_view(&[lifetime], MINUTE).spans(), [1]);
    }

    #[test]
    fn a_week_over_minute_tiles_reads_at_most_a_few_hundred_tiles() {
        let ladder = Ladder::new(vec![1, 60, 1440]).unwrap();
        let week = 7 * 1440;
        let worst = (0..1440 * 2).map(|c| ladder.cover(c - week + 1, c).tiles()).max().unwrap();
        assert!(worst <= 2 * (59 + 23) + 7, "{worst}");
    }

    fn naive_cover(ladder: &Ladder, first: i64, last: i64) -> Vec<i64> {
        let mut fine = Vec::new();
        for run in &ladder.cover(first, last).runs {
            for k in run.first..=run.last {
                let span = ladder.span(run.level);
                fine.extend(k * span..(k + 1) * span);
            }
        }
        fine.sort_unstable();
        fine
    }

    #[test]
    fn a_cover_holds_every_fine_tile_of_the_window_once_and_no_other() {
        for spans in [vec![1], vec![1, 2], vec![1, 3, 6], vec![1, 4, 8, 24]] {
            let ladder = Ladder::new(spans).unwrap();
            for first in -30..30 {
                for last in first - 1..first + 60 {
                    let expected: Vec<i64> = (first..=last).collect();
                    assert_eq!(naive_cover(&ladder, first, last), expected, "{ladder:?} {first}..={last}");
                }
            }
        }
    }

    #[test]
    fn the_union_of_covers_reads_each_tile_once() {
        let ladder = Ladder::new(vec![1, 4, 16]).unwrap();
        let c = 100;
        let covers: Vec<Cover> = [5, 20, 60].iter().map(|w| ladder.cover(c - w + 1, c)).collect();
        let runs = union(&covers);
        for pair in runs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(a.level < b.level || a.last + 1 < b.first, "{runs:?}");
        }
        for cover in &covers {
            for run in &cover.runs {
                for k in run.first..=run.last {
                    assert!(runs.iter().any(|r| r.level == run.level && r.first <= k && k <= r.last));
                }
            }
        }
    }

    #[test]
    fn ladders_must_grow_by_whole_multiples() {
        assert!(Ladder::new(vec![]).is_none());
        assert!(Ladder::new(vec![2]).is_none());
        assert!(Ladder::new(vec![1, 1]).is_none());
        assert!(Ladder::new(vec![1, 4, 6]).is_none());
        assert!(Ladder::new(vec![1, 4, 8]).is_some());
    }
}
