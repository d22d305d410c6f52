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
//!
//! # Where things are
//!
//! - `values`: [`Scalar`], and the orders `min`, `max`, `first` and `last`
//!   keep values by.
//! - `state`: [`Partial`] and [`State`]: how events fold in and partials merge.
//! - `inputs`: [`evaluate`], a batch's feature arguments and conditions
//!   ([`Inputs`]).
//! - `windows`: tiles, windows and request-time values ([`tile_of`],
//!   [`horizon_tiles`], [`finalize`], [`Finalizer`]).
//! - `encoding`: the stored format ([`State::encode`], [`State::decode`],
//!   [`merge_encoded`]).

mod encoding;
mod inputs;
mod state;
mod values;
mod windows;

#[cfg(test)]
mod tests;

pub use encoding::{merge_encoded, CorruptState, STATE_FORMAT_VERSION};
pub use inputs::{evaluate, Inputs};
pub use state::{Partial, State};
pub use values::Scalar;
pub use windows::{
    duration_micros, finalize, horizon_tiles, tile_of, window_covers, window_tiles, Finalizer,
};
