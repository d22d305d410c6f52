//! Loading Parquet files into the views of a parquet source.
//!
//! 1. Expand the paths (files, globs, directories) and check every file's
//!    schema before anything is written: a missing or incompatible column
//!    fails the whole load with the file and column named.
//! 2. Stream each file in record batches of `ingest.batch_rows` rows, reading
//!    only the columns the views need, so memory stays bounded whatever the
//!    file size.
//! 3. Per batch: convert columns to the definitions' types, reject bad rows
//!    (null key or event time, a value that does not fit), evaluate every
//!    view's filter and features, and write the encoded rows in one RocksDB
//!    write batch.
//! 4. UPSERT writes into each view's active generation (newest event time
//!    wins per key). REPLACE writes a new generation unlogged, flushes it,
//!    switches all the source's views to it in one synced metadata write,
//!    then deletes the old generation once no request reads it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{Field, Schema, TimestampMicrosecondType};
use fstore_dsl::plan::{Source, SourceKind};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::convert::{compatible, convert};
use super::{events, IngestError, IngestReport};
use crate::catalog::{self, LoadRecord, Txn};
use crate::engine::{Engine, IngestProgress};
use crate::registry::Registry;
use crate::store::bulk::BulkRows;
use crate::store::{CollectedRows, Durability};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Upsert,
    Replace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Upsert => "upsert",
            Mode::Replace => "replace",
        }
    }
}

/// Load `paths` (or, if empty, the source's own `path`) into every view of `source`.
pub fn ingest(
    engine: &Engine,
    source: &str,
    paths: &[String],
    mode: Mode,
) -> Result<IngestReport, IngestError> {
    ingest_views(engine, source, paths, mode, None)
}

/// [`ingest`], into only the views named by `only` (indices into the plan's
/// views) when given: a first load must not touch views that already hold data.
fn ingest_views(
    engine: &Engine,
    source: &str,
    paths: &[String],
    mode: Mode,
    only: Option<&[usize]>,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let registry = engine.registry();
    let Some((source_index, source_def)) = registry.plan.source(source) else {
        let known: Vec<_> = registry.plan.sources.iter().map(|s| s.name.as_str()).collect();
        return Err(IngestError::Invalid(format!(
            "unknown source `{source}`; sources are: {}",
            known.join(", ")
        )));
    };
    // A stream source's views can be backfilled from Parquet files of its
    // events, named in the request (the source itself has no path).
    let own_path = match &source_def.kind {
        SourceKind::Parquet { path } => Some(path.clone()),
        SourceKind::Kafka { .. } => None,
    };
    if paths.is_empty() && own_path.is_none() {
        return Err(IngestError::Invalid(format!(
            "source `{source}` is a Kafka stream; name the Parquet files of its events to backfill from"
        )));
    }
    let mut views = registry.views_of_source(source_index);
    if let Some(only) = only {
        views.retain(|v| only.contains(v));
    }
    if views.is_empty() {
        return Err(IngestError::Invalid(format!(
            "no view reads source `{source}`, so there is nothing to load"
        )));
    }
    let paths: Vec<String> = match own_path {
        Some(own) if paths.is_empty() => vec![own],
        _ => paths.to_vec(),
    };
    let files = expand_paths(engine, &paths)?;
    let rows_total = check_schemas(&files, source_def)?;

    let lock = engine.source_lock(source);
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    // A definitions apply drops old views' data under this lock: a load
    // planned on the old definitions must not write after that.
    if !Arc::ptr_eq(&registry, &engine.registry()) {
        return Err(IngestError::Unsupported(
            "the definitions were replaced while this load was starting; run it again".into(),
        ));
    }
    let progress = Arc::new(IngestProgress {
        mode: mode.name().to_string(),
        files: files.iter().map(|f| f.display().to_string()).collect(),
        ..Default::default()
    });
    progress.rows_total.store(rows_total, Ordering::Relaxed);
    engine.update_status(source, |s| s.in_progress = Some(progress.clone()));
    let result = Load::new(engine, &registry, &views, mode, rows_total).and_then(|mut load| {
        let outcome = load.files(&files, source_def, &progress);
        // On error the load is dropped, and with it what it wrote.
        outcome.and_then(|()| load.commit(&files))
    });
    engine.update_status(source, |s| s.in_progress = None);
    let mut report = result?;
    report.source = source.to_string();
    report.duration_micros = started.elapsed().as_micros() as u64;
    tracing::info!(
        source,
        mode = mode.name(),
        rows_read = report.rows_read,
        rows_written = report.rows_written,
        rows_rejected = report.rows_rejected,
        duration_ms = report.duration_micros / 1000,
        "Parquet load finished."
    );
    let stored = report.clone();
    engine.update_status(source, |s| s.last_ingest = Some(stored));
    Ok(report)
}

/// Files named directly, by glob, or as a directory of `*.parquet`, sorted
/// and without repeats. A path that matches nothing is an error.
fn expand_paths(engine: &Engine, paths: &[String]) -> Result<Vec<PathBuf>, IngestError> {
    let mut files = Vec::new();
    for path in paths {
        let resolved = engine.resolve_path(path);
        let pattern = if resolved.is_dir() { resolved.join("*.parquet") } else { resolved.clone() };
        let pattern_text = pattern.to_string_lossy();
        let matches = glob::glob(&pattern_text)
            .map_err(|e| IngestError::Invalid(format!("bad glob `{path}`: {e}")))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect::<Vec<_>>();
        if matches.is_empty() {
            return Err(IngestError::Invalid(format!(
                "no Parquet files match `{path}` (looked for {})",
                pattern.display()
            )));
        }
        files.extend(matches);
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Every needed column must exist with a compatible type in every file.
/// Returns the total row count, for progress.
fn check_schemas(files: &[PathBuf], source: &Source) -> Result<u64, IngestError> {
    let mut problems = Vec::new();
    let mut rows = 0u64;
    for file in files {
        let builder = match open(file) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{}: {e:#}", file.display()));
                continue;
            }
        };
        rows += builder.metadata().file_metadata().num_rows().max(0) as u64;
        let schema = builder.schema();
        for (field, ty) in &source.fields {
            match schema.field_with_name(field) {
                Err(_) => {
                    let similar = schema
                        .fields()
                        .iter()
                        .find(|f| f.name().eq_ignore_ascii_case(field))
                        .map(|f| format!(" (it has `{}`: names are case-sensitive)", f.name()))
                        .unwrap_or_default();
                    problems.push(format!(
                        "{}: column `{field}` is missing; source `{}` needs it{similar}",
                        file.display(),
                        source.name
                    ));
                }
                Ok(f) => {
                    if let Some(ty) = ty {
                        if !compatible(f.data_type(), *ty) {
                            problems.push(format!(
                                "{}: column `{field}` has type {}, which cannot be read as {ty}",
                                file.display(),
                                f.data_type()
                            ));
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(IngestError::Invalid(format!("nothing was loaded: {}", problems.join("; "))))
    }
}

fn open(file: &Path) -> anyhow::Result<ParquetRecordBatchReaderBuilder<File>> {
    let f = File::open(file).context("opening file")?;
    ParquetRecordBatchReaderBuilder::try_new(f).context("reading Parquet metadata")
}

/// What one file of a load read, wrote and rejected.
#[derive(Default)]
struct FileOutcome {
    file: String,
    rows_read: u64,
    rows_written: u64,
    rows_too_late: u64,
    rows_rejected: u64,
    sample_errors: Vec<String>,
}

/// One view being written by a load.
struct Target {
    view: usize,
    fingerprint: u64,
    generation: u32,
}

struct Load<'a> {
    engine: &'a Engine,
    registry: &'a Registry,
    mode: Mode,
    targets: Vec<Target>,
    /// The generations written; dropped without a commit, it deletes the
    /// new ones.
    txn: Option<Txn<'a>>,
    report: IngestReport,
    max_samples: usize,
    batch_rows: usize,
    /// A REPLACE's rows of row views, on their way to SST files (see
    /// `store::bulk`); aggregating views' states are written as usual.
    bulk: Option<BulkRows<'a>>,
}

impl<'a> Load<'a> {
    fn new(
        engine: &'a Engine,
        registry: &'a Registry,
        views: &[usize],
        mode: Mode,
        rows_total: u64,
    ) -> Result<Self, IngestError> {
        let write = match mode {
            Mode::Upsert => catalog::Write::Upsert,
            Mode::Replace => catalog::Write::Replace,
        };
        let wanted = views
            .iter()
            .map(|&v| {
                let info = &registry.views[v];
                catalog::Target {
                    fingerprint: info.fingerprint,
                    view: info.name.clone(),
                    coarse_spans_micros: info.coarse_spans_micros(),
                }
            })
            .collect();
        let txn = engine.catalog.begin(write, wanted)?;
        let targets: Vec<Target> = views
            .iter()
            .zip(txn.generations())
            .map(|(&view, (fingerprint, generation))| Target { view, fingerprint, generation })
            .collect();
        let row_views = targets.iter().any(|t| !registry.views[t.view].aggregating);
        let bulk = match mode {
            Mode::Replace if row_views => {
                let budget = engine.config.ingest.sort_buffer_mb << 20;
                let row_views = targets.iter().filter(|t| !registry.views[t.view].aggregating).count();
                Some(engine.store.bulk_rows(budget, rows_total.saturating_mul(row_views as u64))?)
            }
            _ => None,
        };
        Ok(Load {
            engine,
            registry,
            mode,
            targets,
            txn: Some(txn),
            report: IngestReport { mode: mode.name().into(), ..Default::default() },
            max_samples: engine.config.ingest.max_sample_errors,
            batch_rows: engine.config.ingest.batch_rows,
            bulk,
        })
    }

    /// Load `files` in order, or, for a REPLACE of row views only (nothing
    /// is written until the commit), on every core at once.
    fn files(
        &mut self,
        files: &[PathBuf],
        source: &Source,
        progress: &IngestProgress,
    ) -> Result<(), IngestError> {
        let rows_only = self.targets.iter().all(|t| !self.registry.views[t.view].aggregating);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(files.len());
        let bulk = self.bulk.take().map(Mutex::new);
        let result = match &bulk {
            Some(shared) if rows_only && threads > 1 => {
                self.files_in_parallel(files, source, progress, shared, threads)
            }
            _ => files.iter().enumerate().try_for_each(|(index, file)| {
                let outcome = self.file(index, file, source, progress, bulk.as_ref())?;
                self.record(outcome);
                Ok(())
            }),
        };
        self.bulk = bulk.map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
        result
    }

    fn files_in_parallel(
        &mut self,
        files: &[PathBuf],
        source: &Source,
        progress: &IngestProgress,
        bulk: &Mutex<BulkRows<'a>>,
        threads: usize,
    ) -> Result<(), IngestError> {
        let next = AtomicUsize::new(0);
        let this = &*self;
        let outcomes: Vec<Result<Vec<(usize, FileOutcome)>, IngestError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(file) = files.get(index) else { return Ok(done) };
                            match this.file(index, file, source, progress, Some(bulk)) {
                                Ok(outcome) => done.push((index, outcome)),
                                Err(e) => {
                                    // Stop the other workers at their next file.
                                    next.store(files.len(), Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("a load worker panicked")).collect()
        });
        let mut done = Vec::new();
        for outcome in outcomes {
            done.extend(outcome?);
        }
        // Reports list files, and sample their errors, in the files' order.
        done.sort_by_key(|(index, _)| *index);
        for (_, outcome) in done {
            self.record(outcome);
        }
        Ok(())
    }

    /// Read and evaluate one file: rows for SST files go to `bulk` (a
    /// REPLACE with row views), other writes to the store.
    fn file(
        &self,
        index: usize,
        file: &Path,
        source: &Source,
        progress: &IngestProgress,
        bulk: Option<&Mutex<BulkRows<'a>>>,
    ) -> Result<FileOutcome, IngestError> {
        let builder = open(file).map_err(|e| IngestError::Invalid(format!("{}: {e:#}", file.display())))?;
        let wanted: Vec<usize> =
            source.fields.keys().filter_map(|name| builder.schema().index_of(name).ok()).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| IngestError::Invalid(format!("{}: {e}", file.display())))?;
        let mut outcome = FileOutcome { file: file.display().to_string(), ..Default::default() };
        // Of rows with equal keys and event times, the later wins: by file,
        // then by position in the file.
        let mut order = (index as u64) << 40;
        for batch in reader {
            let first_row = outcome.rows_read as usize;
            let batch = batch.map_err(|e| {
                IngestError::Invalid(format!("{}: reading rows from {first_row} on: {e}", file.display()))
            })?;
            let n = batch.num_rows();
            let (rows, rejects) = self.batch(file, &batch, source, bulk.is_some(), &mut outcome)?;
            if let Some(bulk) = bulk {
                let collected = rows.len() as u64;
                bulk.lock().unwrap_or_else(|e| e.into_inner()).extend(rows.iter(), order)?;
                order += collected;
            }
            for (row, why) in rejects {
                if outcome.sample_errors.len() >= self.max_samples {
                    break;
                }
                outcome.sample_errors.push(format!("{} row {}: {why}", file.display(), first_row + row));
            }
            outcome.rows_read += n as u64;
            progress.rows_read.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// Evaluate one batch and write it, or, with `collect`, return its rows
    /// for SST files; with its rejected rows and why.
    fn batch(
        &self,
        file: &Path,
        batch: &RecordBatch,
        source: &Source,
        collect: bool,
        outcome: &mut FileOutcome,
    ) -> Result<(CollectedRows, BTreeMap<usize, String>), IngestError> {
        let reject = |rejects: &mut BTreeMap<usize, String>, row: usize, reason: String| {
            rejects.entry(row).or_insert(reason);
        };
        let rows = batch.num_rows();
        let mut rejects: BTreeMap<usize, String> = BTreeMap::new();

        // Columns as the definitions' types.
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (name, ty) in &source.fields {
            let column = batch
                .column_by_name(name)
                .with_context(|| format!("column `{name}` vanished from {}", file.display()))?;
            let column = match ty {
                None => column.clone(),
                Some(ty) => {
                    let (converted, misfits) = convert(column, *ty).map_err(|e| {
                        IngestError::Invalid(format!(
                            "{}: column `{name}` has type {}, which cannot be read as {}",
                            file.display(),
                            e.found,
                            e.expected
                        ))
                    })?;
                    for (row, why) in misfits {
                        reject(&mut rejects, row, format!("column `{name}`: {why}"));
                    }
                    converted
                }
            };
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        }
        let typed =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).context("assembling a batch")?;

        let timestamps = typed
            .column_by_name(&source.timestamp_field)
            .context("the timestamp field is always read")?
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        for row in 0..rows {
            if timestamps.is_null(row) {
                let reason = format!("event time `{}` is null", source.timestamp_field);
                reject(&mut rejects, row, reason);
            }
        }

        let mut writes = match self.mode {
            Mode::Replace if collect => self.engine.store.bulk_batch(),
            Mode::Replace => self.engine.store.fresh_generation_batch(),
            Mode::Upsert => self.engine.store.batch(),
        };
        let targets: Vec<events::Target> = self
            .targets
            .iter()
            .map(|t| events::Target { view: t.view, fingerprint: t.fingerprint, generation: t.generation })
            .collect();
        let batch_events = events::Events {
            typed: &typed,
            event_times: &timestamps,
            seq: self.engine.next_seq(rows),
            now: crate::now_micros(),
        };
        let applied = events::apply(self.registry, &targets, &batch_events, &mut rejects, &mut writes)?;
        outcome.rows_written += applied.written;
        outcome.rows_too_late += applied.too_late;
        let collected = writes.take_collected_rows();
        if !writes.is_empty() {
            let durability = match self.mode {
                Mode::Replace => Durability::FlushBeforeCommit,
                Mode::Upsert => Durability::Wal,
            };
            self.engine.store.write_rows(writes, durability)?;
        }
        outcome.rows_rejected += rejects.len() as u64;
        Ok((collected, rejects))
    }

    /// Add a file's outcome to the report.
    fn record(&mut self, outcome: FileOutcome) {
        let report = &mut self.report;
        report.rows_read += outcome.rows_read;
        report.rows_written += outcome.rows_written;
        report.rows_too_late += outcome.rows_too_late;
        report.rows_rejected += outcome.rows_rejected;
        let room = self.max_samples.saturating_sub(report.sample_errors.len());
        report.sample_errors.extend(outcome.sample_errors.into_iter().take(room));
        report.files.push(outcome.file);
    }

    /// Make the load visible: one synced metadata write for all views.
    fn commit(mut self, files: &[PathBuf]) -> Result<IngestReport, IngestError> {
        if let Some(bulk) = self.bulk.take() {
            bulk.finish()?;
        }
        let record = LoadRecord {
            mode: self.mode.name().into(),
            finished_at_micros: crate::now_micros(),
            rows_written: self.report.rows_written,
            rows_rejected: self.report.rows_rejected,
            files: files.iter().map(|f| f.display().to_string()).collect(),
        };
        let txn = self.txn.take().context("a load commits once")?;
        let retirement = txn.commit(Some(record))?;
        // Readers that started on the old snapshot finish on it; then its
        // data goes. The load returns once it has (the space is back), or,
        // if a reader holds it longer, leaves the deletion to that reader's
        // release.
        if !retirement.wait(Duration::from_secs(30)) {
            tracing::warn!(
                "Readers held the old snapshot for 30 s; its space is reclaimed once they let go."
            );
        }
        if self.mode == Mode::Replace {
            // The snapshot is stored as merge operands; rewriting it into the
            // bottom level turns them into plain values, so a lookup stops at
            // the first file that holds its key (measured: 100-key multi-get
            // 1.04 ms -> 0.40 ms, `cargo bench --bench store`). In the
            // background: the load is visible now, lookups get faster later.
            // Row views came in as sorted SST files of plain values
            // (`store::bulk`) and need no rewrite.
            for t in self.targets.iter().filter(|t| self.registry.views[t.view].aggregating) {
                self.engine.store.compact_generation_later(t.fingerprint, t.generation);
            }
        }
        Ok(std::mem::take(&mut self.report))
    }
}

/// At start, load the views of parquet sources that hold no data yet (a
/// fresh store, or a changed definition) from their source's own path; views
/// that hold data are left alone. Failures are logged; the server serves anyway.
pub fn load_empty_sources(engine: &Engine) {
    let registry = engine.registry();
    // Decide what to load, then let go of the generation map: a REPLACE waits
    // for every holder of the map it replaces before deleting old data.
    let work: Vec<(&Source, Vec<usize>)> = {
        let generations = engine.generations();
        registry
            .plan
            .sources
            .iter()
            .enumerate()
            .filter(|(_, source)| matches!(source.kind, SourceKind::Parquet { .. }))
            .map(|(index, source)| {
                let empty = registry
                    .views_of_source(index)
                    .into_iter()
                    .filter(|&v| !generations.contains_key(&registry.views[v].fingerprint))
                    .collect::<Vec<usize>>();
                (source, empty)
            })
            .filter(|(_, empty)| !empty.is_empty())
            .collect()
    };
    for (source, empty) in work {
        match ingest_views(engine, &source.name, &[], Mode::Replace, Some(&empty)) {
            Ok(report) if report.rows_rejected > 0 => tracing::warn!(
                source = %source.name,
                rows_rejected = report.rows_rejected,
                first = report.sample_errors.first().map(String::as_str).unwrap_or(""),
                "Initial load rejected some rows."
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "Initial load failed; the source's views stay empty.")
            }
        }
    }
}
