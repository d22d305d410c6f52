//! The running store: definitions, database and the live state that ties
//! them together. Serving and ingest both work through an [`Engine`].
//!
//! Readers take two snapshots at the start of a request, the registry and
//! the catalog's generation map, and hold them (as `Arc`s) until the
//! response is built: a request that started on the old snapshot finishes on
//! it ([`crate::catalog`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use serde::Serialize;

use crate::catalog::{Catalog, Snapshot};
use crate::config::Config;
use crate::registry::Registry;
use crate::store::Store;

pub struct Engine {
    pub(crate) config: Config,
    pub store: Arc<Store>,
    /// Which generation of each view readers see.
    pub(crate) catalog: Catalog,
    registry: ArcSwap<Registry>,
    /// One writer per source at a time: two loads of one source would race
    /// for its views' generations.
    source_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    status: Mutex<HashMap<String, SourceStatus>>,
    started: Instant,
    /// Arrival order of events (`last`/`first` break event-time ties by it).
    /// Starts from the clock so that it keeps growing across restarts.
    seq: AtomicU64,
    /// One definitions apply at a time.
    pub(crate) apply_lock: Mutex<()>,
}

/// What GetStatus says of one source's batch loads.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) in_progress: Option<Arc<IngestProgress>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_ingest: Option<IngestReport>,
}

/// What one load did, as the `IngestReport` message and GetStatus show it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct IngestReport {
    pub(crate) source: String,
    pub(crate) mode: String,
    pub(crate) files: Vec<String>,
    pub(crate) rows_read: u64,
    /// Rows stored in at least one view (rows every view filters out are
    /// neither written nor rejected).
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// Events older than every window of an aggregating view: kept only in
    /// its lifetime aggregates.
    pub(crate) rows_too_late: u64,
    pub sample_errors: Vec<String>,
    pub(crate) duration_micros: u64,
}

/// Live counters of a running load; the CLI polls them for its progress bar.
#[derive(Debug, Default, Serialize)]
pub struct IngestProgress {
    pub(crate) mode: String,
    pub(crate) files: Vec<String>,
    pub(crate) rows_total: std::sync::atomic::AtomicU64,
    pub(crate) rows_read: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Check the definitions, open the store and read each view's generation.
    pub fn open(config: Config) -> anyhow::Result<Arc<Engine>> {
        crate::registry::journal::recover(&config.server.definitions_dir)?;
        let registry = Registry::load(&config.server.definitions_dir)?;
        let store = Arc::new(Store::open(&config.server.data_dir, &config.store)?);
        let catalog = Catalog::open(store.clone())?;
        store.set_agg_layouts(agg_layouts(&registry));
        build_missing_coarse_tiles(&store, &catalog, &registry)?;
        Ok(Arc::new(Engine {
            config,
            store,
            catalog,
            registry: ArcSwap::from_pointee(registry),
            source_locks: Mutex::default(),
            status: Mutex::default(),
            started: Instant::now(),
            apply_lock: Mutex::default(),
            seq: AtomicU64::new((crate::now_micros().max(0) as u64).saturating_mul(1000)),
        }))
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// The generation map readers use ([`Catalog::snapshot`]). Hold it only
    /// while serving one request: what it names stays on disk until then.
    pub fn generations(&self) -> Arc<Snapshot> {
        self.catalog.snapshot()
    }

    /// Reserve arrival numbers for `n` events; returns the first.
    pub fn next_seq(&self, n: usize) -> u64 {
        self.seq.fetch_add(n as u64, Ordering::Relaxed)
    }

    /// Make `next` the running definitions; returns the set it replaces.
    /// Requests that started on the old set finish on it.
    pub fn install(&self, next: Registry) -> anyhow::Result<Arc<Registry>> {
        // Views `next` brings back whose data an earlier version stored:
        // nothing writes to them until they are installed.
        build_missing_coarse_tiles(&self.store, &self.catalog, &next)?;
        self.store.set_agg_layouts(agg_layouts(&next));
        Ok(self.registry.swap(Arc::new(next)))
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Hold this while writing to any view of `source`.
    pub fn source_lock(&self, source: &str) -> Arc<Mutex<()>> {
        let mut locks = self.source_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(source.to_string()).or_default().clone()
    }

    /// A path named in a definition or an ingest request: relative paths are
    /// relative to the definitions directory.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.config.server.definitions_dir.join(p)
        }
    }

    pub fn update_status(&self, source: &str, f: impl FnOnce(&mut SourceStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(status.entry(source.to_string()).or_default());
    }

    pub fn source_status(&self) -> HashMap<String, SourceStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Per aggregating view, how its tiles are laid out.
fn agg_layouts(registry: &Registry) -> HashMap<u64, crate::store::aggs::AggLayout> {
    registry.views.iter().filter_map(|info| Some((info.fingerprint, info.agg_layout.clone()?))).collect()
}

/// Give every stored generation of `registry`'s aggregating views the coarse
/// tiles their layout keeps, built from their fine tiles where the generation
/// was written without them (by an earlier version, or with other sizes).
/// Runs before anything writes to those views: at start, and for the views a
/// definitions change brings in before they are installed.
fn build_missing_coarse_tiles(store: &Store, catalog: &Catalog, registry: &Registry) -> anyhow::Result<()> {
    for info in &registry.views {
        let Some(layout) = &info.agg_layout else { continue };
        let Some(meta) = catalog.meta(info.fingerprint)? else { continue };
        let spans = layout.coarse_spans_micros();
        if meta.generation == 0 || meta.coarse_spans_micros.as_ref() == Some(&spans) {
            continue;
        }
        let started = Instant::now();
        let written = store
            .build_coarse_tiles(info.fingerprint, meta.generation, layout)
            .with_context(|| format!("building the coarse tiles of view `{}`", info.name))?;
        catalog.set_coarse_spans(info.fingerprint, Some(spans))?;
        tracing::info!(
            view = %info.name,
            coarse_tiles = written,
            seconds = started.elapsed().as_secs_f64(),
            "Built the view's coarse tiles from its fine tiles (stored by an earlier version)."
        );
    }
    Ok(())
}
