//! Aggregate states in the `aggs` column family: how they merge, which of
//! them compaction deletes, how a lookup reads the tiles its windows need,
//! and the rebuild of coarse tiles from fine ones.
//!
//! What this module owns:
//! - **The merge** (`agg_merge`): partial states combine whatever their
//!   order; a value that does not decode is kept as it is, never a failed
//!   compaction.
//! - **Expiry**: a tile (fine or coarse) is deleted once every fine tile it
//!   holds is older than the view's longest window; a coarse tile of a size
//!   the view no longer keeps is deleted too ([`AggLayout`]).
//! - **The coarse tiles of a generation hold exactly its fine tiles' events.**
//!   Ingest writes both in one batch; a generation written before coarse
//!   tiles existed (or with other sizes) is rebuilt by
//!   [`Store::build_coarse_tiles`] before anything reads or writes it.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use fstore_dsl::agg::State;
use fstore_dsl::plan::AggFeature;
use fstore_dsl::tiles::Ladder;
use rocksdb::{MergeOperands, WriteBatch};

use super::{codec, keys, Durability, ReadError, Store, CF_AGGS};

/// How one aggregating view's tiles are laid out, for compaction and rebuilds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggLayout {
    /// Entity key columns of the view (to find the tile suffix in a key).
    pub key_parts: usize,
    /// Fine tile size in microseconds.
    pub resolution_micros: i64,
    /// The longest window in fine tiles: tiles more than this many before
    /// the current one are never read again. `None`: no windows, no tiles.
    pub keep_tiles: Option<i64>,
    /// The tile sizes kept (see `fstore_dsl::tiles`).
    pub ladder: Ladder,
}

impl AggLayout {
    /// The layout of an aggregating view of `features` at `resolution_micros`.
    pub fn of_view(key_parts: usize, features: &[AggFeature], resolution_micros: i64) -> AggLayout {
        AggLayout {
            key_parts,
            resolution_micros,
            keep_tiles: fstore_dsl::agg::horizon_tiles(features, resolution_micros),
            ladder: Ladder::for_view(features, resolution_micros),
        }
    }

    /// The size of the tiles of ladder level `level`, in microseconds.
    pub fn span_micros(&self, level: usize) -> i64 {
        self.ladder.span(level).saturating_mul(self.resolution_micros)
    }

    /// The coarse tile sizes, in microseconds, finest first.
    pub fn coarse_spans_micros(&self) -> Vec<i64> {
        (1..self.ladder.levels()).map(|l| self.span_micros(l)).collect()
    }

    /// Whether the state at an `aggs` key of this view (the bytes after the
    /// view prefix) can no longer be read by any window at time `now`.
    fn expired(&self, after_prefix: &[u8], now: i64) -> bool {
        let Some(keep_tiles) = self.keep_tiles else { return false };
        let oldest_kept = fstore_dsl::agg::tile_of(now, self.resolution_micros).saturating_sub(keep_tiles);
        match keys::agg_slot(after_prefix, self.key_parts) {
            Some(keys::AggSlot::Tile(t)) => t < oldest_kept,
            Some(keys::AggSlot::Coarse { span_micros, tile }) => {
                if !(1..self.ladder.levels()).any(|l| self.span_micros(l) == span_micros) {
                    return true;
                }
                // The last fine tile it holds.
                let end = tile.checked_add(1).and_then(|t| t.checked_mul(span_micros));
                end.is_some_and(|end| (end - 1).div_euclid(self.resolution_micros) < oldest_kept)
            }
            _ => false,
        }
    }
}

/// Whether an `aggs` key is a tile that no window can reach at time `now`.
pub(super) fn tile_expired(layouts: &HashMap<u64, AggLayout>, key: &[u8], now: i64) -> bool {
    let Some(fingerprint) = key.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
        return false;
    };
    let Some(layout) = layouts.get(&fingerprint) else { return false };
    key.get(keys::PREFIX_LEN..).is_some_and(|rest| layout.expired(rest, now))
}

/// Merge partial aggregate states; see `fstore_dsl::agg`.
///
/// Never fails: a `None` here makes RocksDB fail the read and, in a
/// compaction, stop every later write. When nothing decodes (corrupt bytes
/// on disk), the existing value or the last operand is kept as it is, and
/// the read of that one key reports the corruption.
pub(super) fn agg_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    fstore_dsl::agg::merge_encoded(existing, operands)
        .or_else(|| existing.or_else(|| operands.iter().last()).map(<[u8]>::to_vec))
        .or_else(|| Some(Vec::new()))
}

/// Tiles `first..=last` of one size: fine tiles when `span_micros` is the
/// view's resolution. `level` is passed back with each state read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRun {
    pub(crate) level: usize,
    pub(crate) span_micros: i64,
    pub(crate) first: i64,
    pub(crate) last: i64,
}

/// The aggregate states of one entity that a lookup needs.
#[derive(Debug, Default)]
pub struct AggStates {
    /// (level, tile index, state), in the order of the runs asked for.
    pub(crate) tiles: Vec<(usize, i64, State)>,
    pub(crate) lifetime: Option<State>,
}

impl Store {
    /// For each of `entity_keys` (a view prefix followed by an entity key),
    /// the states of the tiles in `runs` that exist, and its lifetime state.
    /// `None` for an entity with no lifetime state (no event ever counted).
    /// One iterator for the whole request: per entity one seek per run and
    /// one for the lifetime state, each followed by a scan of only the tiles
    /// that exist in the run.
    pub fn read_agg_states(
        &self,
        entity_keys: &[Vec<u8>],
        resolution_micros: i64,
        runs: &[TileRun],
    ) -> Result<Vec<Option<AggStates>>, ReadError> {
        let corrupt = |what: &'static str| ReadError::Corrupt(codec::CorruptRow(what));
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_AGGS));
        let mut out = Vec::with_capacity(entity_keys.len());
        let (mut seek, mut end) = (Vec::with_capacity(64), Vec::with_capacity(64));
        for entity in entity_keys {
            let mut found = AggStates::default();
            seek.clear();
            seek.extend_from_slice(entity);
            keys::push_lifetime(&mut seek);
            iter.seek(&seek);
            match iter.item() {
                Some((key, value)) if key == seek.as_slice() => {
                    found.lifetime = Some(State::decode(value).map_err(|_| corrupt("lifetime state"))?);
                }
                _ => {
                    iter.status().map_err(ReadError::Store)?;
                    out.push(None);
                    continue;
                }
            }
            for run in runs {
                seek.truncate(entity.len());
                keys::push_tile_of_span(&mut seek, resolution_micros, run.span_micros, run.first);
                end.clear();
                end.extend_from_slice(entity);
                keys::push_tile_of_span(&mut end, resolution_micros, run.span_micros, run.last);
                iter.seek(&seek);
                // Keys between two keys of one entity and one size share
                // that prefix, so the bound alone ends the run.
                while let Some((key, value)) = iter.item() {
                    if key > end.as_slice() {
                        break;
                    }
                    let index = key
                        .len()
                        .checked_sub(8)
                        .and_then(|at| key[at..].try_into().ok())
                        .map(|raw: [u8; 8]| (u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
                        .ok_or_else(|| corrupt("aggregate key"))?;
                    let state = State::decode(value).map_err(|_| corrupt("tile state"))?;
                    found.tiles.push((run.level, index, state));
                    iter.next();
                }
            }
            iter.status().map_err(ReadError::Store)?;
            out.push(Some(found));
        }
        Ok(out)
    }

    /// Write the coarse tiles of `layout` of one generation from its fine
    /// tiles, replacing every stored coarse tile (so a rebuild interrupted by
    /// a crash is simply run again; a fine-only ladder removes them all). Nothing may write to the generation
    /// meanwhile: the engine runs this before its streams and loads start.
    /// Returns the number of coarse tiles written.
    pub fn build_coarse_tiles(
        &self,
        fingerprint: u64,
        generation: u32,
        layout: &AggLayout,
    ) -> anyhow::Result<u64> {
        let spans_micros = layout.coarse_spans_micros();
        let prefix = keys::view_prefix(fingerprint, generation);
        let cf = self.cf(CF_AGGS);
        let mut iter = self.db.raw_iterator_cf(cf);
        iter.seek(prefix);
        let mut batch = WriteBatch::default();
        let mut written = 0u64;
        let mut entity: Vec<u8> = Vec::new();
        let mut coarse: BTreeMap<(i64, i64), State> = BTreeMap::new();
        let mut flush = |entity: &[u8], coarse: &mut BTreeMap<(i64, i64), State>, batch: &mut WriteBatch| {
            let mut key = Vec::with_capacity(entity.len() + 17);
            let mut value = Vec::with_capacity(64);
            for ((span, tile), state) in std::mem::take(coarse) {
                key.clear();
                key.extend_from_slice(entity);
                keys::push_coarse_tile(&mut key, span, tile);
                value.clear();
                state.encode(&mut value);
                batch.put_cf(cf, &key, &value);
                written += 1;
            }
        };
        while let Some((key, value)) = iter.item() {
            if !key.starts_with(&prefix) {
                break;
            }
            let slot = keys::agg_slot(&key[keys::PREFIX_LEN..], layout.key_parts);
            if let Some(keys::AggSlot::Coarse { .. }) = slot {
                // Rebuilt below, if the layout keeps its size (the puts come
                // later in the batch, after the entity's last coarse key).
                batch.delete_cf(cf, key);
            }
            if let Some(keys::AggSlot::Tile(t)) = slot {
                let this_entity = &key[..key.len() - 9];
                if this_entity != entity.as_slice() {
                    flush(&entity, &mut coarse, &mut batch);
                    entity.clear();
                    entity.extend_from_slice(this_entity);
                    if batch.len() >= 10_000 {
                        self.write(std::mem::take(&mut batch), Durability::Wal)?;
                    }
                }
                // A tile that does not decode stays out of the coarse tiles;
                // its own read reports it.
                if let Ok(state) = State::decode(value) {
                    let start = t.saturating_mul(layout.resolution_micros);
                    for &span in &spans_micros {
                        coarse
                            .entry((span, start.div_euclid(span)))
                            .and_modify(|s| s.merge(&state))
                            .or_insert_with(|| state.clone());
                    }
                }
            }
            iter.next();
        }
        iter.status().context("scanning fine tiles")?;
        flush(&entity, &mut coarse, &mut batch);
        self.write(batch, Durability::Sync)?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use fstore_dsl::agg::Partial;

    const MINUTE: i64 = 60_000_000;

    fn count(n: u64) -> Vec<u8> {
        let mut state = Vec::new();
        State(vec![Partial::Count(n)]).encode(&mut state);
        state
    }

    fn entity(fp: u64, id: i64) -> Vec<u8> {
        let mut k = keys::view_prefix(fp, 1).to_vec();
        keys::push_key_part(&mut k, keys::KeyPart::Int(id));
        k
    }

    fn with(entity: &[u8], push: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut k = entity.to_vec();
        push(&mut k);
        k
    }

    #[test]
    fn compaction_deletes_tiles_no_window_can_reach_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Config::defaults().store).unwrap();
        let fp = 9u64;
        // A view with a longest window of 5 one-minute tiles, coarse tiles of
        // 2 minutes; 3-minute ones are of an older layout.
        let ladder = Ladder::new(vec![1, 2]).unwrap();
        let layout = AggLayout { key_parts: 1, resolution_micros: MINUTE, keep_tiles: Some(5), ladder };
        store.set_agg_layouts(HashMap::from([(fp, layout)]));
        let now_tile = crate::now_micros() / MINUTE;
        let e = entity(fp, 1);
        let mut batch = store.batch();
        for age in 0..20 {
            batch.merge_agg(&with(&e, |k| keys::push_tile(k, now_tile - age)), &count(1));
        }
        for pair in (now_tile - 20).div_euclid(2)..=now_tile.div_euclid(2) {
            batch.merge_agg(&with(&e, |k| keys::push_coarse_tile(k, 2 * MINUTE, pair)), &count(2));
            batch.merge_agg(&with(&e, |k| keys::push_coarse_tile(k, 3 * MINUTE, pair)), &count(2));
        }
        batch.merge_agg(&with(&e, keys::push_lifetime), &count(20));
        store.write_rows(batch, Durability::Wal).unwrap();
        store.db.flush_cf(store.cf(CF_AGGS)).unwrap();
        // The first compaction turns merge operands into values (RocksDB does
        // not filter operands); the next one filters those values.
        store.compact_aggs();
        store.compact_aggs();
        // Fine tiles now_tile-5 ..= now_tile stay (one tile of slack); pairs
        // whose later minute is at least now_tile-5 stay; no 3-minute tile.
        let pairs_kept = now_tile.div_euclid(2) - (now_tile - 5).div_euclid(2) + 1;
        assert_eq!(store.count_agg_states(fp, 1).unwrap() as i64, 6 + pairs_kept + 1);
        let run = |span_micros, first, last| TileRun { level: 0, span_micros, first, last };
        let found = store
            .read_agg_states(
                std::slice::from_ref(&e),
                MINUTE,
                &[run(MINUTE, now_tile - 4, now_tile), run(3 * MINUTE, 0, i64::MAX)],
            )
            .unwrap();
        let found = found[0].as_ref().unwrap();
        assert_eq!(found.tiles.len(), 5);
        assert!(found.lifetime.is_some());
    }

    #[test]
    fn coarse_tiles_rebuilt_from_fine_ones_hold_their_sums_and_replace_stale_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Config::defaults().store).unwrap();
        let fp = 5u64;
        let ladder = Ladder::new(vec![1, 60]).unwrap();
        let layout = AggLayout { key_parts: 1, resolution_micros: MINUTE, keep_tiles: Some(1000), ladder };
        let mut batch = store.batch();
        for id in [1, 2] {
            let e = entity(fp, id);
            // Fine tiles -61 ..= 130: hours -2 (one tile), -1 (60), 0, 1 (60 each), 2 (11).
            for t in -61..=130 {
                batch.merge_agg(&with(&e, |k| keys::push_tile(k, t)), &count(id as u64));
            }
            // A stale coarse tile from an interrupted rebuild, and one of a
            // size the layout does not keep.
            batch.merge_agg(&with(&e, |k| keys::push_coarse_tile(k, 60 * MINUTE, 0)), &count(999));
            batch.merge_agg(&with(&e, |k| keys::push_coarse_tile(k, 7 * MINUTE, 0)), &count(999));
            batch.merge_agg(&with(&e, keys::push_lifetime), &count(1));
        }
        store.write_rows(batch, Durability::Wal).unwrap();
        let written = store.build_coarse_tiles(fp, 1, &layout).unwrap();
        assert_eq!(written, 2 * 5);
        let run = TileRun { level: 1, span_micros: 60 * MINUTE, first: -5, last: 5 };
        let found = store.read_agg_states(&[entity(fp, 1), entity(fp, 2)], MINUTE, &[run]).unwrap();
        for (id, found) in [1u64, 2].into_iter().zip(found) {
            let got: Vec<(i64, u64)> = found
                .unwrap()
                .tiles
                .iter()
                .map(|(_, t, s)| match s.0[0] {
                    Partial::Count(n) => (*t, n),
                    _ => unreachable!(),
                })
                .collect();
            assert_eq!(got, [(-2, id), (-1, 60 * id), (0, 60 * id), (1, 60 * id), (2, 11 * id)]);
        }
        // Fine tiles, rebuilt hour tiles and the lifetime state; no other size.
        assert_eq!(store.count_agg_states(fp, 1).unwrap(), 2 * (192 + 5 + 1));
        // A fine-only layout removes every coarse tile.
        let fine = AggLayout { ladder: Ladder::fine(), ..layout };
        assert_eq!(store.build_coarse_tiles(fp, 1, &fine).unwrap(), 0);
        assert_eq!(store.count_agg_states(fp, 1).unwrap(), 2 * (192 + 1));
    }
}
