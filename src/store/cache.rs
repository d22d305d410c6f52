//! A cache of decoded rows in front of RocksDB, weighed in bytes.
//!
//! It must never serve a value older than the store. Every write path goes
//! through [`crate::store::Store::write_rows`], which invalidates the keys it
//! wrote. The race between a reader that read an old value and a writer that
//! just replaced it is closed by a per-shard epoch: a reader takes the epoch
//! before reading RocksDB and inserts only if no write touched the shard in
//! the meantime, and a writer bumps the epoch and invalidates under the same
//! lock, after its write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use moka::sync::Cache;

use super::codec::DecodedRow;
use crate::proto::value::Kind;

const SHARDS: usize = 256;

pub(crate) struct RowCache {
    rows: Cache<Box<[u8]>, Arc<DecodedRow>, ahash::RandomState>,
    epochs: Box<[Mutex<u64>]>,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub evictions: Arc<AtomicU64>,
}

/// Taken before a store read; see [`RowCache::insert_if_unchanged`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadToken {
    shard: usize,
    epoch: u64,
}

impl RowCache {
    pub(crate) fn new(capacity_bytes: u64) -> RowCache {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let rows = Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(weigh)
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build_with_hasher(ahash::RandomState::new());
        RowCache {
            rows,
            epochs: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
        }
    }

    fn shard(key: &[u8]) -> usize {
        (xxhash_rust::xxh64::xxh64(key, 0) as usize) % SHARDS
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<DecodedRow>> {
        let found = self.rows.get(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn read_token(&self, key: &[u8]) -> ReadToken {
        let shard = Self::shard(key);
        ReadToken { shard, epoch: *self.epochs[shard].lock().unwrap_or_else(|e| e.into_inner()) }
    }

    /// Cache a row read from the store, unless a write to its shard happened
    /// since `token` was taken (the row may then be stale).
    pub(crate) fn insert_if_unchanged(&self, key: &[u8], token: ReadToken, row: Arc<DecodedRow>) {
        let epoch = self.epochs[token.shard].lock().unwrap_or_else(|e| e.into_inner());
        if *epoch == token.epoch {
            self.rows.insert(key.into(), row);
        }
    }

    /// Called after a write of `key` reached the store.
    pub(crate) fn invalidate(&self, key: &[u8]) {
        let mut epoch = self.epochs[Self::shard(key)].lock().unwrap_or_else(|e| e.into_inner());
        *epoch += 1;
        self.rows.invalidate(key);
    }

    /// Forget every row (a view's data was dropped).
    pub(crate) fn clear(&self) {
        for epoch in &self.epochs {
            *epoch.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        }
        self.rows.invalidate_all();
    }

    pub(crate) fn entries(&self) -> u64 {
        self.rows.entry_count()
    }

    pub(crate) fn weighted_bytes(&self) -> u64 {
        self.rows.weighted_size()
    }
}

/// moka passes the key as its own type, hence the `&Box`.
#[allow(clippy::borrowed_box)]
fn weigh(key: &Box<[u8]>, row: &Arc<DecodedRow>) -> u32 {
    u32::try_from(key.len() + weight(row)).unwrap_or(u32::MAX)
}

/// Approximate heap bytes of a decoded row.
fn weight(row: &DecodedRow) -> usize {
    let per_value = std::mem::size_of::<crate::proto::Value>();
    row.values.iter().fold(64 + row.values.len() * per_value, |acc, v| {
        acc + match &v.kind {
            Some(Kind::StringValue(s)) => s.len(),
            Some(Kind::BytesValue(b)) => b.len(),
            Some(Kind::Float32List(l)) => l.values.len() * 4,
            Some(Kind::Float64List(l)) => l.values.len() * 8,
            Some(Kind::Int64List(l)) => l.values.len() * 8,
            Some(Kind::StringList(l)) => l.values.iter().map(|s| s.len() + 24).sum(),
            _ => 0,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64) -> Arc<DecodedRow> {
        Arc::new(DecodedRow { event_time: t, values: vec![] })
    }

    #[test]
    fn a_write_during_a_read_keeps_the_stale_row_out() {
        let cache = RowCache::new(1 << 20);
        let token = cache.read_token(b"k");
        // A writer replaces the row after the reader read the old one...
        cache.invalidate(b"k");
        // ...so the reader's old row must not be cached.
        cache.insert_if_unchanged(b"k", token, row(1));
        assert!(cache.get(b"k").is_none());

        let token = cache.read_token(b"k");
        cache.insert_if_unchanged(b"k", token, row(2));
        assert_eq!(cache.get(b"k").unwrap().event_time, 2);
        cache.invalidate(b"k");
        assert!(cache.get(b"k").is_none(), "a write invalidates");
        assert_eq!(cache.hits.load(Ordering::Relaxed), 1);
    }
}
