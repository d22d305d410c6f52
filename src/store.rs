//! Storage in RocksDB: key layout ([`keys`]), value encoding ([`codec`]),
//! aggregate states ([`aggs`]), the rows' merge operator (`merge`), write
//! batches ([`Batch`]) and the [`Store`] that owns the database.
//!
//! Column families:
//! - `rows`: the latest row per entity for every row view, keyed as
//!   described in [`keys`]. Writes are RocksDB merges resolved by the
//!   `newest_row` operator (greatest event time wins, ties go to the later
//!   write), so ingest never reads before it writes and concurrent writers of
//!   one key cannot lose a newer row to an older one.
//! - `aggs`: partial aggregates of aggregating views, per entity and tile and
//!   once per entity for lifetime aggregates (layout in [`keys`]). Writes are
//!   merges of partial states ([`aggs`], see `fstore_dsl::agg`), so an
//!   event is folded in without reading first. A compaction filter deletes
//!   tiles that no window can reach any more ([`Store::set_agg_layouts`]),
//!   in the compaction after the one that merged them (RocksDB filters
//!   values, not merge operands); every file is compacted at least daily.
//! - `meta`: the catalog's records of each view (`crate::catalog`: the
//!   active generation, a generation being loaded, the last load), and the
//!   next Kafka offset to consume per source, topic and partition.
//!
//! What is atomic: a stream batch's rows, aggregate states and consumed
//! offsets go in one write ([`Batch`]), so after a crash the stored offsets
//! say exactly which events the stored state holds. Which generation of a
//! view readers see, and when an old one is deleted, is the catalog's
//! (`crate::catalog`); this module stores what it is told to.
//!
//! This module never decides *what* to write (that is ingest's job) and never
//! speaks gRPC.

pub mod aggs;
mod batch;
pub(crate) mod bulk;
pub(crate) mod cache;
pub mod codec;
pub mod keys;
mod merge;

pub use batch::{Batch, CollectedRows, Durability};
use merge::{newest_row_full_merge, newest_row_partial_merge, replaces};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::Context;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBPinnableSlice, Options, WriteBatch, WriteOptions, DB,
};

use crate::config::{Compression, StoreConfig};
use codec::DecodedRow;
use fstore_dsl::DataType;

const CF_ROWS: &str = "rows";
const CF_META: &str = "meta";
const CF_AGGS: &str = "aggs";

type Layouts = Arc<arc_swap::ArcSwap<HashMap<u64, aggs::AggLayout>>>;

pub struct Store {
    db: Arc<DB>,
    dir: PathBuf,
    /// The `rows` options, compressed as the bottom level: bulk loads write
    /// SST files with them.
    sst_options: Options,
    /// Decoded rows in front of RocksDB; `None` when `store.row_cache_mb` is 0.
    pub(crate) cache: Option<cache::RowCache>,
    /// Background compactions of freshly loaded generations, one at a time.
    compactor: Mutex<Option<Compactor>>,
    /// Read by the `aggs` compaction filter.
    layouts: Layouts,
}

struct Compactor {
    jobs: mpsc::Sender<(u64, u32)>,
    worker: std::thread::JoinHandle<()>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Close the queue and wait for the running compaction, so that the
        // database is closed when the store is.
        let compactor = self.compactor.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Compactor { jobs, worker }) = compactor {
            drop(jobs);
            // A compaction of a large generation can run for minutes: ask
            // RocksDB to stop background work so that shutdown is prompt.
            // The data stays correct; only the rewrite is left for later.
            self.db.cancel_all_background_work(false);
            let _ = worker.join();
        }
    }
}

impl Store {
    /// Open (or create) the database under `dir`. What an interrupted load
    /// left behind is the catalog's to clean up (`catalog::Catalog::open`).
    pub fn open(dir: &Path, config: &StoreConfig) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        // HyperClockCache: lock-free lookups; with the LRU cache, list and
        // hash-chain upkeep took a third of the CPU of 100-key lookups.
        // 0 = let RocksDB size its table automatically.
        let cache = Cache::new_hyper_clock_cache(config.block_cache_mb << 20, 0);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);

        let mut rows = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Point lookups dominate: a whole-key bloom filter skips files that
        // cannot hold the key; keeping filter and index blocks in the cache
        // bounds memory by the cache size.
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Partitioned index and filters: a lookup loads one small index and
        // filter partition instead of a whole-file index block (megabytes at
        // a million keys), which otherwise fell out of the cache and was read
        // and allocated again on most lookups. The top level stays pinned.
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        // A hash index inside each data block turns the in-block binary
        // search of a point lookup into one probe.
        table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);
        table.set_format_version(5);
        rows.set_block_based_table_factory(&table);
        rows.set_write_buffer_size(config.write_buffer_mb << 20);
        // Upper levels hold recent writes briefly: LZ4 unless none is asked for.
        rows.set_compression_type(match config.compression {
            Compression::None => rocksdb::DBCompressionType::None,
            _ => rocksdb::DBCompressionType::Lz4,
        });
        let bottommost = match config.compression {
            Compression::None => rocksdb::DBCompressionType::None,
            Compression::Lz4 => rocksdb::DBCompressionType::Lz4,
            Compression::Zstd => rocksdb::DBCompressionType::Zstd,
        };
        rows.set_bottommost_compression_type(bottommost);
        rows.set_merge_operator("newest_row", newest_row_full_merge, newest_row_partial_merge);
        let mut sst_options = rows.clone();
        sst_options.set_compression_type(bottommost);

        // Aggregate states: read by range scans of one entity, written by merges.
        let mut aggs = Options::default();
        let mut agg_table = BlockBasedOptions::default();
        agg_table.set_block_cache(&cache);
        agg_table.set_cache_index_and_filter_blocks(true);
        agg_table.set_format_version(5);
        aggs.set_block_based_table_factory(&agg_table);
        aggs.set_write_buffer_size(config.write_buffer_mb << 20);
        aggs.set_compression_type(rocksdb::DBCompressionType::Lz4);
        aggs.set_merge_operator("agg_merge", aggs::agg_merge, aggs::agg_merge);
        // RocksDB filters values, not merge operands: an expired tile goes in
        // the compaction after the one that merged it into a value. Rewrite
        // every file at least daily so that happens even without new writes.
        aggs.set_periodic_compaction_seconds(24 * 3600);
        let layouts: Layouts = Arc::default();
        let filter_layouts = layouts.clone();
        aggs.set_compaction_filter("expired_tiles", move |_level: u32, key: &[u8], _value: &[u8]| {
            if aggs::tile_expired(&filter_layouts.load(), key, crate::now_micros()) {
                rocksdb::compaction_filter::Decision::Remove
            } else {
                rocksdb::compaction_filter::Decision::Keep
            }
        });

        let meta = Options::default();
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_ROWS, rows),
            ColumnFamilyDescriptor::new(CF_META, meta),
            ColumnFamilyDescriptor::new(CF_AGGS, aggs),
        ];
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)
            .with_context(|| format!("opening RocksDB at {}", dir.display()))?;
        let cache =
            (config.row_cache_mb > 0).then(|| cache::RowCache::new((config.row_cache_mb as u64) << 20));
        bulk::clear_leftovers(dir)?;
        let store = Store {
            db: Arc::new(db),
            dir: dir.to_path_buf(),
            sst_options,
            cache,
            compactor: Mutex::new(None),
            layouts,
        };
        Ok(store)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Every record in `meta` whose key starts with `prefix`, in key order.
    pub fn meta_records(&self, prefix: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), prefix) {
            let (key, value) = item.context("reading metadata")?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// One record in `meta`.
    pub fn meta_record(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(CF_META), key).context("reading metadata")
    }

    /// Put and delete records in `meta` in one synced write.
    pub fn write_meta_records(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut batch = WriteBatch::default();
        for (key, value) in puts {
            batch.put_cf(self.cf(CF_META), key, value);
        }
        for key in deletes {
            batch.delete_cf(self.cf(CF_META), key);
        }
        self.write(batch, Durability::Sync)
    }

    /// The fingerprints of every view with rows or aggregate states on disk,
    /// found by one seek per view.
    pub fn stored_fingerprints(&self) -> anyhow::Result<std::collections::BTreeSet<u64>> {
        let mut out = std::collections::BTreeSet::new();
        for cf in [CF_ROWS, CF_AGGS] {
            let mut iter = self.db.raw_iterator_cf(self.cf(cf));
            iter.seek_to_first();
            while let Some(key) = iter.key() {
                let Some(head) = key.get(..8) else {
                    anyhow::bail!("a stored key of {} bytes holds no view fingerprint", key.len());
                };
                let fingerprint = u64::from_be_bytes(head.try_into().expect("8 bytes"));
                out.insert(fingerprint);
                match fingerprint.checked_add(1) {
                    Some(next) => iter.seek(keys::view_prefix(next, 0)),
                    None => break,
                }
            }
            iter.status().context("listing stored views")?;
        }
        Ok(out)
    }

    /// A batch of writes under construction. Its row keys are invalidated in
    /// the row cache once written.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            rows: self.cf(CF_ROWS),
            aggs: self.cf(CF_AGGS),
            meta: self.cf(CF_META),
            batch: WriteBatch::default(),
            written: self.cache.as_ref().map(|_| Vec::new()),
            collected: None,
        }
    }

    /// A batch for a generation no reader has seen yet (a REPLACE load): no
    /// cached row can exist for its keys, so none are tracked.
    pub fn fresh_generation_batch(&self) -> Batch<'_> {
        Batch { written: None, ..self.batch() }
    }

    /// A batch for a bulk load into a fresh generation: its row upserts are
    /// collected ([`Batch::take_collected_rows`]) for a [`bulk::BulkRows`]
    /// instead of written; aggregate states go to RocksDB as usual.
    pub fn bulk_batch(&self) -> Batch<'_> {
        Batch { collected: Some(CollectedRows::default()), ..self.fresh_generation_batch() }
    }

    /// Start a bulk load of about `expected_rows` rows into SST files,
    /// buffering up to `budget_bytes` in memory before spilling sorted runs
    /// to disk.
    pub fn bulk_rows(&self, budget_bytes: usize, expected_rows: u64) -> anyhow::Result<bulk::BulkRows<'_>> {
        bulk::BulkRows::new(
            &self.db,
            self.cf(CF_ROWS),
            &self.sst_options,
            &self.dir,
            budget_bytes,
            expected_rows,
        )
    }

    /// How each aggregating view (by fingerprint) lays out its tiles: which
    /// of them compaction may delete.
    pub fn set_agg_layouts(&self, layouts: HashMap<u64, aggs::AggLayout>) {
        self.layouts.store(Arc::new(layouts));
    }

    /// The next offset to consume per (topic, partition) of a stream source,
    /// as last written with the state it produced.
    pub fn stream_offsets(&self, source: &str) -> anyhow::Result<HashMap<(String, i32), i64>> {
        let prefix = format!("offset/{source}/");
        let mut out = HashMap::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_META), prefix.as_bytes()) {
            let (key, value) = item.context("reading stream offsets")?;
            let Some(rest) = key.strip_prefix(prefix.as_bytes()) else { break };
            let rest = std::str::from_utf8(rest).context("corrupt offset key")?;
            let (topic, partition) = rest.rsplit_once('/').context("corrupt offset key")?;
            let offset: [u8; 8] = value.as_ref().try_into().context("corrupt offset")?;
            out.insert((topic.to_string(), partition.parse()?), i64::from_le_bytes(offset));
        }
        Ok(out)
    }

    pub fn write_rows(&self, rows: Batch<'_>, durability: Durability) -> anyhow::Result<()> {
        self.write(rows.batch, durability)?;
        if let (Some(cache), Some(written)) = (&self.cache, rows.written) {
            for key in written {
                cache.invalidate(&key);
            }
        }
        Ok(())
    }

    /// Read and decode rows by key, through the row cache. `types` are the
    /// view's feature types (the stored layout).
    pub fn read_rows(
        &self,
        keys: &[Vec<u8>],
        types: &[DataType],
    ) -> Result<Vec<Option<Arc<DecodedRow>>>, ReadError> {
        let mut out: Vec<Option<Arc<DecodedRow>>> = vec![None; keys.len()];
        let mut missing: Vec<usize> = Vec::new();
        let mut tokens = Vec::new();
        match &self.cache {
            Some(cache) => {
                for (i, key) in keys.iter().enumerate() {
                    match cache.get(key) {
                        Some(row) => out[i] = Some(row),
                        None => {
                            tokens.push(cache.read_token(key));
                            missing.push(i);
                        }
                    }
                }
            }
            None => missing.extend(0..keys.len()),
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<&[u8]> = missing.iter().map(|&i| keys[i].as_slice()).collect();
        let found = self.db.batched_multi_get_cf(self.cf(CF_ROWS), &wanted, false);
        for (n, result) in found.into_iter().enumerate() {
            let i = missing[n];
            let Some(bytes) = result.map_err(ReadError::Store)? else { continue };
            let row = Arc::new(codec::decode_row(&bytes, types).map_err(ReadError::Corrupt)?);
            if let Some(cache) = &self.cache {
                cache.insert_if_unchanged(&keys[i], tokens[n], row.clone());
            }
            out[i] = Some(row);
        }
        Ok(out)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> anyhow::Result<()> {
        let mut opts = WriteOptions::default();
        match durability {
            Durability::Sync => opts.set_sync(true),
            Durability::Wal => {}
            Durability::FlushBeforeCommit => opts.disable_wal(true),
        }
        self.db.write_opt(batch, &opts).context("writing to RocksDB")
    }

    /// Make every write so far durable, including [`Durability::FlushBeforeCommit`] ones,
    /// to rows and aggregate states.
    pub fn flush_rows(&self) -> anyhow::Result<()> {
        // Aggregate states too: a REPLACE of an aggregating view writes them
        // without the WAL, like rows.
        for cf in [CF_ROWS, CF_AGGS] {
            self.db.flush_cf(self.cf(cf)).context("flushing loaded data to disk")?;
        }
        Ok(())
    }

    /// Delete generations `[from, to)` of one view and let compaction reclaim the space.
    pub fn delete_generations(&self, fingerprint: u64, from: u32, to: u32) -> anyhow::Result<()> {
        if from >= to {
            return Ok(());
        }
        let start = keys::view_prefix(fingerprint, from);
        let end = keys::view_prefix(fingerprint, to);
        for cf in [CF_ROWS, CF_AGGS] {
            let cf = self.cf(cf);
            // Nothing to delete, no tombstone: a range tombstone next to a
            // bulk load's key range made the compaction below rewrite the
            // whole loaded generation (5 s for 5 M rows).
            if self.range_is_empty(cf, &start, &end) {
                continue;
            }
            self.db.delete_range_cf(cf, start, end).context("deleting an old generation")?;
            self.db.compact_range_cf(cf, Some(start), Some(end));
        }
        Ok(())
    }

    fn range_is_empty(&self, cf: &rocksdb::ColumnFamily, start: &[u8], end: &[u8]) -> bool {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let mut iter = self.db.raw_iterator_cf_opt(cf, opts);
        iter.seek(start);
        !iter.valid() && iter.status().is_ok()
    }

    /// Forget every cached row (a view's data was deleted).
    pub fn clear_row_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Run the `aggs` compaction (and its expired-tile filter) now, over everything.
    pub fn compact_aggs(&self) {
        self.db.compact_range_cf(self.cf(CF_AGGS), None::<&[u8]>, None::<&[u8]>);
    }

    /// Rewrite one generation into the bottom level: merge operands become
    /// plain values, so a lookup stops at the first file holding its key
    /// instead of searching every level for a base value to merge with.
    pub fn compact_generation(&self, fingerprint: u64, generation: u32) {
        compact_generation(&self.db, fingerprint, generation);
    }

    /// [`Store::compact_generation`] on a background thread, so that a load
    /// returns as soon as its data is visible; lookups speed up once it is done.
    pub fn compact_generation_later(&self, fingerprint: u64, generation: u32) {
        let mut compactor = self.compactor.lock().unwrap_or_else(|e| e.into_inner());
        let compactor = compactor.get_or_insert_with(|| {
            let (jobs, queue) = mpsc::channel::<(u64, u32)>();
            let db = self.db.clone();
            let worker = std::thread::Builder::new()
                .name("fstore-compact".into())
                .spawn(move || {
                    for (fingerprint, generation) in queue {
                        let started = std::time::Instant::now();
                        compact_generation(&db, fingerprint, generation);
                        tracing::info!(
                            fingerprint = format!("{fingerprint:016x}"),
                            generation,
                            seconds = started.elapsed().as_secs_f64(),
                            "Compacted a loaded generation."
                        );
                    }
                })
                .expect("spawning the compaction thread");
            Compactor { jobs, worker }
        });
        let _ = compactor.jobs.send((fingerprint, generation));
    }

    /// Read the data of the generations named by `prefixes` (view prefixes,
    /// see [`keys::view_prefix`]) into the block cache, rows and aggregate
    /// states, until about `budget_bytes` of keys and values have been read.
    /// Returns the bytes read. Lookups after it find those blocks
    /// decompressed in memory.
    pub fn warm_cache(&self, prefixes: &[[u8; keys::PREFIX_LEN]], budget_bytes: u64) -> anyhow::Result<u64> {
        let mut read = 0u64;
        for cf in [CF_ROWS, CF_AGGS] {
            for prefix in prefixes {
                let mut options = rocksdb::ReadOptions::default();
                options.fill_cache(true);
                options.set_readahead_size(4 << 20);
                options.set_iterate_range(rocksdb::PrefixRange(&prefix[..]));
                let mut iter = self.db.raw_iterator_cf_opt(self.cf(cf), options);
                iter.seek(prefix);
                while let Some((key, value)) = iter.item() {
                    read += (key.len() + value.len()) as u64;
                    if read >= budget_bytes {
                        return Ok(read);
                    }
                    iter.next();
                }
                iter.status().context("reading the store into the block cache")?;
            }
        }
        Ok(read)
    }

    /// Wait for the background compactions queued so far to finish (a
    /// dropped store cancels them instead).
    pub fn finish_compactions(&self) {
        let compactor = self.compactor.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Compactor { jobs, worker }) = compactor {
            drop(jobs);
            let _ = worker.join();
        }
    }

    /// Point-read many row keys at once (RocksDB batched multi-get).
    pub fn multi_get_rows(
        &self,
        keys: &[Vec<u8>],
    ) -> Vec<Result<Option<DBPinnableSlice<'_>>, rocksdb::Error>> {
        self.db.batched_multi_get_cf(self.cf(CF_ROWS), keys, false)
    }

    /// How many rows one generation of one view holds (a full scan of that
    /// range: for tests and diagnostics, not for the request path).
    pub fn count_rows(&self, fingerprint: u64, generation: u32) -> anyhow::Result<usize> {
        self.count_keys(CF_ROWS, fingerprint, generation)
    }

    /// How many aggregate states (tiles and lifetime states) one generation
    /// of an aggregating view holds; for tests and diagnostics.
    pub fn count_agg_states(&self, fingerprint: u64, generation: u32) -> anyhow::Result<usize> {
        self.count_keys(CF_AGGS, fingerprint, generation)
    }

    fn count_keys(&self, cf: &str, fingerprint: u64, generation: u32) -> anyhow::Result<usize> {
        let prefix = keys::view_prefix(fingerprint, generation);
        let mut count = 0;
        for item in self.db.prefix_iterator_cf(self.cf(cf), prefix) {
            let (key, _) = item.context("scanning rows")?;
            if !key.starts_with(&prefix) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// RocksDB's own figures, for status and metrics.
    pub fn property(&self, name: &str) -> Option<u64> {
        self.db.property_int_value_cf(self.cf(CF_ROWS), name).ok().flatten()
    }
}

fn compact_generation(db: &DB, fingerprint: u64, generation: u32) {
    let start = keys::view_prefix(fingerprint, generation);
    let end = keys::view_prefix(fingerprint, generation.saturating_add(1));
    let mut opts = rocksdb::CompactOptions::default();
    opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
    for cf in [CF_ROWS, CF_AGGS] {
        if let Some(cf) = db.cf_handle(cf) {
            db.compact_range_cf_opt(cf, Some(start), Some(end), &opts);
        }
    }
}

/// A lookup that could not be answered from the store.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("RocksDB read failed: {0}")]
    Store(rocksdb::Error),
    #[error(transparent)]
    Corrupt(codec::CorruptRow),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn row(event_time: i64, payload: u8) -> Vec<u8> {
        let mut v = vec![codec::FORMAT_VERSION];
        v.extend_from_slice(&event_time.to_le_bytes());
        v.push(payload);
        v
    }

    fn get(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
        store.multi_get_rows(&[key.to_vec()]).pop().unwrap().unwrap().map(|s| s.to_vec())
    }

    #[test]
    fn newest_event_time_wins_and_ties_go_to_the_later_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &Config::defaults().store).unwrap();
        let key = b"k".to_vec();
        for (t, payload) in [(10, 1), (5, 2), (10, 3), (7, 4)] {
            let mut batch = store.batch();
            batch.upsert(&key, &row(t, payload));
            store.write_rows(batch, Durability::Wal).unwrap();
        }
        assert_eq!(get(&store, &key), Some(row(10, 3)));

        // Also within one batch, and after a flush and a compaction.
        let mut batch = store.batch();
        batch.upsert(&key, &row(11, 5));
        batch.upsert(&key, &row(9, 6));
        store.write_rows(batch, Durability::Wal).unwrap();
        store.flush_rows().unwrap();
        store.db.compact_range_cf(store.cf(CF_ROWS), None::<&[u8]>, None::<&[u8]>);
        assert_eq!(get(&store, &key), Some(row(11, 5)));
        let mut batch = store.batch();
        batch.upsert(&key, &row(3, 7));
        store.write_rows(batch, Durability::Wal).unwrap();
        assert_eq!(get(&store, &key), Some(row(11, 5)), "an older row never overwrites a newer one");
    }
}
