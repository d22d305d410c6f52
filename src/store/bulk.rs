//! Bulk loads of rows into a fresh generation, written as sorted SST files
//! and ingested whole, bypassing the memtable, its flushes and the
//! compactions that follow: a REPLACE load's rows land in the bottom level
//! as plain values, ready to serve.
//!
//! Rows arrive in any order and may repeat a key. They are buffered up to a
//! memory budget; a full buffer is sorted, reduced to one row per key and
//! spilled as a sorted run. [`BulkRows::finish`] merges the runs (or sorts
//! the lone buffer) into SST files of non-overlapping key ranges and
//! ingests them in one step. Of rows with the same key the newest event
//! time wins and, on a tie, the later one: the rule of the `rows` merge
//! operator, so a bulk load stores what row-by-row upserts would have.
//!
//! Nothing is visible to readers until the load commits: the rows belong to
//! a generation no reader is pointed at. A crash leaves spilled runs, which
//! [`clear_leftovers`] removes at the next start, and perhaps ingested files
//! of the pending generation, which the store's recovery deletes.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rocksdb::{IngestExternalFileOptions, Options, SstFileWriter, DB};

use super::replaces;

/// Where spilled runs and SST files wait, under the data directory.
const DIR: &str = "bulk-load";
/// SST files are cut at about this size.
const SST_BYTES: u64 = 256 << 20;

/// Remove what an interrupted bulk load left behind.
pub(crate) fn clear_leftovers(data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join(DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The rows of one bulk load, on their way to SST files.
pub struct BulkRows<'a> {
    db: &'a DB,
    cf: &'a rocksdb::ColumnFamily,
    sst_options: &'a Options,
    dir: PathBuf,
    budget: usize,
    buffer: Buffer,
    runs: Vec<PathBuf>,
    rows: u64,
}

/// Buffered rows: their bytes in an arena of fixed-size chunks (a growing
/// Vec would copy gigabytes as it doubles), and an entry per row to sort.
#[derive(Default)]
struct Buffer {
    chunks: Vec<Vec<u8>>,
    arena_bytes: usize,
    entries: Vec<Entry>,
}

/// One buffered row. `head` (the key's first bytes, zero-padded, as
/// big-endian integers) settles most comparisons without a look into the
/// arena.
struct Entry {
    head: [u64; HEAD / 8],
    order: u64,
    chunk: u32,
    at: u32,
    key_len: u32,
    value_len: u32,
}

const HEAD: usize = 24;
const CHUNK: usize = 64 << 20;

impl Buffer {
    fn bytes(&self) -> usize {
        self.arena_bytes + self.entries.len() * std::mem::size_of::<Entry>()
    }

    fn push(&mut self, key: &[u8], value: &[u8], order: u64) {
        let mut padded = [0u8; HEAD];
        let n = key.len().min(HEAD);
        padded[..n].copy_from_slice(&key[..n]);
        let head = std::array::from_fn(|i| {
            u64::from_be_bytes(padded[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        });
        let len = key.len() + value.len();
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= len);
        if !fits {
            self.chunks.push(Vec::with_capacity(CHUNK.max(len)));
        }
        let chunk = self.chunks.last_mut().expect("pushed above");
        let at = chunk.len() as u32;
        chunk.extend_from_slice(key);
        chunk.extend_from_slice(value);
        self.arena_bytes += len;
        self.entries.push(Entry {
            head,
            order,
            chunk: (self.chunks.len() - 1) as u32,
            at,
            key_len: key.len() as u32,
            value_len: value.len() as u32,
        });
    }

    fn key(&self, e: &Entry) -> &[u8] {
        let at = e.at as usize;
        &self.chunks[e.chunk as usize][at..at + e.key_len as usize]
    }

    fn value(&self, e: &Entry) -> &[u8] {
        let from = e.at as usize + e.key_len as usize;
        &self.chunks[e.chunk as usize][from..from + e.value_len as usize]
    }

    /// Sort by key, then arrival order, and keep one row per key: the one
    /// the `rows` merge operator would keep ([`super::replaces`]).
    fn sort(&mut self) {
        use rayon::slice::ParallelSliceMut;
        // Zero-padding keeps `head` order consistent with key order: equal
        // heads fall through to the whole keys.
        let mut entries = std::mem::take(&mut self.entries);
        let this = &*self;
        entries.par_sort_unstable_by(|a, b| {
            a.head.cmp(&b.head).then_with(|| this.key(a).cmp(this.key(b))).then(a.order.cmp(&b.order))
        });
        // In place: `kept` rows so far are the first of `entries`.
        let mut kept = 0;
        for next in 0..entries.len() {
            if kept > 0 && self.key(&entries[kept - 1]) == self.key(&entries[next]) {
                if replaces(self.value(&entries[kept - 1]), self.value(&entries[next])) {
                    entries.swap(kept - 1, next);
                }
            } else {
                entries.swap(kept, next);
                kept += 1;
            }
        }
        entries.truncate(kept);
        self.entries = entries;
    }
}

impl<'a> BulkRows<'a> {
    pub(super) fn new(
        db: &'a DB,
        cf: &'a rocksdb::ColumnFamily,
        sst_options: &'a Options,
        data_dir: &Path,
        budget: usize,
        expected_rows: u64,
    ) -> anyhow::Result<BulkRows<'a>> {
        // Loads of different sources may run at once: each has its own folder.
        static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = data_dir.join(DIR).join(format!("load-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(BulkRows {
            db,
            cf,
            sst_options,
            dir,
            budget: budget.max(1 << 20),
            // Entries are a small part of a row's bytes: sized once, they
            // are not copied as they grow (capped by what the budget holds).
            buffer: Buffer {
                entries: Vec::with_capacity(
                    (expected_rows as usize).min(budget / std::mem::size_of::<Entry>() / 4),
                ),
                ..Buffer::default()
            },
            runs: Vec::new(),
            rows: 0,
        })
    }

    /// Add rows (key, encoded row) that arrived in this order, the first of
    /// them with `first_order`: of rows with the same key and event time,
    /// the one with the greater order wins. Spills a sorted run when the
    /// buffer is full.
    pub fn extend<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        rows: impl IntoIterator<Item = (K, V)>,
        first_order: u64,
    ) -> anyhow::Result<()> {
        for (i, (key, value)) in rows.into_iter().enumerate() {
            self.buffer.push(key.as_ref(), value.as_ref(), first_order + i as u64);
            self.rows += 1;
        }
        if self.buffer.bytes() >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> anyhow::Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.sort();
        let path = self.dir.join(format!("run-{:05}", self.runs.len()));
        write_run(&buffer, &path)?;
        self.runs.push(path);
        Ok(())
    }

    /// Write every row into SST files and ingest them. Returns the files
    /// ingested.
    pub fn finish(mut self) -> anyhow::Result<usize> {
        if self.rows == 0 {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut sort_seconds = 0.0;
        let files = if self.runs.is_empty() {
            let mut buffer = std::mem::take(&mut self.buffer);
            buffer.sort();
            sort_seconds = started.elapsed().as_secs_f64();
            // Compression is most of the rest: split the sorted rows into
            // key ranges and write one range per core.
            // (Small loads stay in one file.)
            let threads = if buffer.entries.len() < 100_000 {
                1
            } else {
                std::thread::available_parallelism().map_or(2, |n| n.get())
            };
            let chunk = buffer.entries.len().div_ceil(threads).max(1);
            let written: Vec<anyhow::Result<Vec<PathBuf>>> = std::thread::scope(|scope| {
                let writers: Vec<_> = buffer
                    .entries
                    .chunks(chunk)
                    .enumerate()
                    .map(|(i, range)| {
                        let (options, dir, buffer) = (self.sst_options, &self.dir, &buffer);
                        scope.spawn(move || {
                            let mut ssts = SstFiles::new(options, dir, &format!("range-{i:03}"));
                            for e in range {
                                ssts.put(buffer.key(e), buffer.value(e))?;
                            }
                            ssts.finish()
                        })
                    })
                    .collect();
                writers.into_iter().map(|w| w.join().expect("an SST writer panicked")).collect()
            });
            let mut files = Vec::new();
            for range in written {
                files.extend(range?);
            }
            files
        } else {
            if !self.buffer.entries.is_empty() {
                self.spill()?;
            }
            let mut ssts = SstFiles::new(self.sst_options, &self.dir, "merged");
            merge_runs(&self.runs, |key, value| ssts.put(key, value))?;
            ssts.finish()?
        };
        let mut opts = IngestExternalFileOptions::default();
        // The files are ours: link them into the database instead of copying.
        opts.set_move_files(true);
        self.db
            .ingest_external_file_cf_opts(self.cf, &opts, files.clone())
            .context("ingesting the loaded rows into RocksDB")?;
        tracing::info!(
            rows = self.rows,
            spilled_runs = self.runs.len(),
            sst_files = files.len(),
            sort_seconds,
            seconds = started.elapsed().as_secs_f64(),
            "Loaded rows sorted, written as SST files and ingested."
        );
        Ok(files.len())
    }
}

impl Drop for BulkRows<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Write a sorted buffer as a run: (key length, value length, order, key,
/// value) per row, lengths as little-endian u32 and the order as u64.
fn write_run(buffer: &Buffer, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for e in &buffer.entries {
        out.write_all(&e.key_len.to_le_bytes())?;
        out.write_all(&e.value_len.to_le_bytes())?;
        out.write_all(&e.order.to_le_bytes())?;
        out.write_all(buffer.key(e))?;
        out.write_all(buffer.value(e))?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))
}

/// Sorted SST files of at most about [`SST_BYTES`] each.
struct SstFiles<'a> {
    options: &'a Options,
    dir: &'a Path,
    /// File names start with it.
    stem: String,
    writer: Option<SstFileWriter<'a>>,
    files: Vec<PathBuf>,
}

impl<'a> SstFiles<'a> {
    fn new(options: &'a Options, dir: &'a Path, stem: &str) -> SstFiles<'a> {
        SstFiles { options, dir, stem: stem.to_string(), writer: None, files: Vec::new() }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        if self.writer.as_ref().is_some_and(|w| w.file_size() >= SST_BYTES) {
            self.close()?;
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let path = self.dir.join(format!("{}-{:05}.sst", self.stem, self.files.len()));
                let writer = SstFileWriter::create(self.options);
                writer.open(&path).with_context(|| format!("creating {}", path.display()))?;
                self.files.push(path);
                self.writer.insert(writer)
            }
        };
        writer.put(key, value).context("writing an SST file")
    }

    fn close(&mut self) -> anyhow::Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer.finish().context("finishing an SST file")?;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<Vec<PathBuf>> {
        self.close()?;
        Ok(std::mem::take(&mut self.files))
    }
}

/// A row read back from a run, with its arrival order.
struct RunRow {
    key: Box<[u8]>,
    value: Box<[u8]>,
    order: u64,
}

/// A spilled run, read back in order. Runs are spilled as rows arrive, and
/// files may be read in parallel, so a run's rows are not all later than
/// an earlier run's: each row carries its order.
struct Run {
    input: BufReader<File>,
    head: Option<RunRow>,
}

impl Run {
    fn open(path: &Path) -> anyhow::Result<Run> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut run = Run { input: BufReader::with_capacity(1 << 20, file), head: None };
        run.advance()?;
        Ok(run)
    }

    fn advance(&mut self) -> anyhow::Result<()> {
        let mut lengths = [0u8; 16];
        match self.input.read_exact(&mut lengths) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.head = None;
                return Ok(());
            }
            Err(e) => return Err(e).context("reading a spilled run"),
        }
        let key_len = u32::from_le_bytes(lengths[..4].try_into().expect("4 bytes")) as usize;
        let value_len = u32::from_le_bytes(lengths[4..8].try_into().expect("4 bytes")) as usize;
        let order = u64::from_le_bytes(lengths[8..].try_into().expect("8 bytes"));
        let mut key = vec![0; key_len].into_boxed_slice();
        let mut value = vec![0; value_len].into_boxed_slice();
        self.input.read_exact(&mut key).context("reading a spilled run")?;
        self.input.read_exact(&mut value).context("reading a spilled run")?;
        self.head = Some(RunRow { key, value, order });
        Ok(())
    }
}

/// Min-heap order on head keys.
struct ByHead(Run);

impl PartialEq for ByHead {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ByHead {}
impl PartialOrd for ByHead {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByHead {
    fn cmp(&self, other: &Self) -> Ordering {
        fn key(r: &ByHead) -> &[u8] {
            r.0.head.as_ref().map_or(&[], |h| &h.key)
        }
        // Reversed: BinaryHeap is a max-heap.
        key(other).cmp(key(self))
    }
}

/// Merge sorted runs into one sorted sequence with one row per key, handed
/// to `emit` in key order.
fn merge_runs(
    paths: &[PathBuf],
    mut emit: impl FnMut(&[u8], &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut heap = BinaryHeap::new();
    for path in paths {
        let run = Run::open(path)?;
        if run.head.is_some() {
            heap.push(ByHead(run));
        }
    }
    let mut pending: Option<RunRow> = None;
    while let Some(ByHead(mut run)) = heap.pop() {
        let row = run.head.take().expect("runs in the heap have a head");
        pending = match pending {
            Some(current) if current.key == row.key => {
                let (earlier, later) =
                    if current.order < row.order { (current, row) } else { (row, current) };
                Some(if replaces(&earlier.value, &later.value) { later } else { earlier })
            }
            Some(current) => {
                emit(&current.key, &current.value)?;
                Some(row)
            }
            None => Some(row),
        };
        run.advance()?;
        if run.head.is_some() {
            heap.push(ByHead(run));
        }
    }
    if let Some(row) = pending {
        emit(&row.key, &row.value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (Box<[u8]>, Box<[u8]>);

    fn row(key: &str, event_time: i64, payload: u8) -> Row {
        let mut v = vec![super::super::codec::FORMAT_VERSION];
        v.extend_from_slice(&event_time.to_le_bytes());
        v.push(payload);
        (key.as_bytes().into(), v.into_boxed_slice())
    }

    fn sorted(rows: &[Row]) -> Buffer {
        let mut buffer = Buffer::default();
        for (i, (k, v)) in rows.iter().enumerate() {
            buffer.push(k, v, i as u64);
        }
        buffer.sort();
        buffer
    }

    fn contents(buffer: &Buffer) -> Vec<Row> {
        buffer.entries.iter().map(|e| (buffer.key(e).into(), buffer.value(e).into())).collect()
    }

    #[test]
    fn duplicates_keep_the_newest_and_ties_go_to_the_later_row() {
        let rows = vec![row("b", 1, 5), row("a", 5, 1), row("a", 9, 2), row("a", 9, 3), row("a", 7, 4)];
        assert_eq!(contents(&sorted(&rows)), vec![row("a", 9, 3), row("b", 1, 5)]);
    }

    #[test]
    fn keys_sort_as_bytes_beyond_the_compared_head() {
        // Keys longer than the head, equal in it, and keys that are
        // prefixes of others.
        let long = |tail: &str| format!("{}{tail}", "x".repeat(HEAD));
        let rows = vec![row(&long("b"), 1, 1), row(&long("a"), 1, 2), row("x", 1, 3), row(&long(""), 1, 4)];
        let keys: Vec<Vec<u8>> = contents(&sorted(&rows)).into_iter().map(|r| r.0.to_vec()).collect();
        let mut expected: Vec<Vec<u8>> = rows.iter().map(|r| r.0.to_vec()).collect();
        expected.sort();
        assert_eq!(keys, expected);
    }

    #[test]
    fn merged_runs_equal_one_sorted_buffer() {
        let dir = tempfile::tempdir().unwrap();
        // Three runs with overlapping keys, spilled in arrival order.
        let arrivals: Vec<Vec<Row>> = vec![
            vec![row("k3", 1, 1), row("k1", 4, 2), row("k2", 2, 3)],
            vec![row("k1", 4, 4), row("k4", 1, 5), row("k3", 0, 6)],
            vec![row("k2", 1, 7), row("k1", 3, 8), row("k5", 9, 9)],
        ];
        // Rows are numbered in arrival order across all runs, and the runs
        // are merged in reverse, as when files are read in parallel.
        let mut paths = Vec::new();
        let mut order = 0;
        for (i, rows) in arrivals.iter().enumerate() {
            let mut buffer = Buffer::default();
            for (k, v) in rows {
                buffer.push(k, v, order);
                order += 1;
            }
            buffer.sort();
            let path = dir.path().join(format!("run-{i}"));
            write_run(&buffer, &path).unwrap();
            paths.push(path);
        }
        paths.reverse();
        let mut merged = Vec::new();
        merge_runs(&paths, |k, v| {
            merged.push((Box::from(k), Box::from(v)));
            Ok(())
        })
        .unwrap();
        assert_eq!(merged, contents(&sorted(&arrivals.concat())));
        assert_eq!(merged.len(), 5);
        // k1: event time 4 twice; the later run's row (payload 4) wins.
        assert_eq!(merged[0], row("k1", 4, 4));
    }
}
