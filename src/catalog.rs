//! The catalog: which generation of each view readers see, and the life of
//! every generation from first write to deletion. It is the one owner of
//! the rules that make a REPLACE atomic:
//!
//! - **Targets.** Every write goes to a generation the catalog hands out
//!   ([`Catalog::begin`]). An UPSERT writes to the view's active generation,
//!   or, when the view holds nothing yet, to a new one. A REPLACE always
//!   writes to a new one. A new generation is recorded as *pending* (one
//!   synced write) before any data reaches it, and its number is above every
//!   number this process has used for the view, so no write ever lands among
//!   data that is still being deleted.
//! - **Commit.** [`Txn::commit`] makes a REPLACE's data durable (flushed),
//!   then switches all its views in one synced metadata write, then
//!   publishes the new [`Snapshot`]. Dropping a [`Txn`] without committing
//!   deletes its new generations: readers never saw them.
//! - **Retirement.** A generation that a new snapshot no longer names (the
//!   one a REPLACE replaced, or every generation of a dropped view,
//!   [`Catalog::retire`]) is deleted once no one holds a snapshot that names
//!   it. Snapshots are chained, older to newer, so the work attached to one
//!   runs only after it and every older snapshot are let go. There is no
//!   polling and no timeout: the last holder's release queues the deletion
//!   for the catalog's retirer thread.
//! - **Recovery.** [`Catalog::open`] finishes what a crash interrupted:
//!   pending generations are discarded, and every stored generation that the
//!   metadata does not name as active is deleted, including the data of
//!   views whose record is gone. Nothing unreferenced survives a restart.
//!
//! Readers (lookups) and writers (loads, stream batches) hold a snapshot
//! only while they serve one request or write one batch.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use anyhow::Context;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// What the catalog records of one view (by fingerprint).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ViewMeta {
    /// The view's name when this record was last written (for humans).
    pub(crate) view: String,
    /// Generation readers use; 0 = nothing loaded yet.
    pub generation: u32,
    /// A load in progress (or interrupted by a crash) writes here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pending_generation: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_load: Option<LoadRecord>,
    /// For an aggregating view: the coarse tile sizes, in microseconds, that
    /// the active generation holds for every one of its events. `None`: it
    /// was written before coarse tiles existed (fine tiles only), and is
    /// rebuilt at the next start (`Store::build_coarse_tiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coarse_spans_micros: Option<Vec<i64>>,
}

/// What GetStatus says of a view's last Parquet load.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadRecord {
    pub(crate) mode: String,
    pub(crate) finished_at_micros: i64,
    pub(crate) rows_written: u64,
    pub(crate) rows_rejected: u64,
    pub(crate) files: Vec<String>,
}

const META_PREFIX: &[u8] = b"view/";

fn meta_key(fingerprint: u64) -> Vec<u8> {
    format!("view/{fingerprint:016x}").into_bytes()
}

/// How a write treats the view's current data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Add to the active generation (a new one if the view holds nothing).
    Upsert,
    /// Write a whole new generation that replaces the active one at commit.
    Replace,
}

/// A view a write goes to.
#[derive(Clone, Debug)]
pub struct Target {
    pub(crate) fingerprint: u64,
    /// The view's name, recorded for humans and logs.
    pub(crate) view: String,
    /// The coarse tile sizes this version writes for the view (`None`: a
    /// row view). A new generation records them.
    pub(crate) coarse_spans_micros: Option<Vec<i64>>,
}

/// The published generation map: the active generation per view
/// fingerprint (absent = nothing loaded). Every generation it names stays
/// on disk while anyone holds it.
pub struct Snapshot {
    generations: HashMap<u64, u32>,
    /// The snapshot published after this one: held, so that it (and the
    /// deletions it waits for) is released only after this one is.
    next: OnceLock<Arc<Snapshot>>,
    /// Deletions to queue once this snapshot (and every older one) is let go.
    retired: Mutex<Vec<Job>>,
    jobs: mpsc::Sender<Job>,
}

impl std::ops::Deref for Snapshot {
    type Target = HashMap<u64, u32>;
    fn deref(&self) -> &HashMap<u64, u32> {
        &self.generations
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        for job in self.retired.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            // A catalog that has stopped leaves the work to the next start.
            let _ = self.jobs.send(job);
        }
        // Release the newer snapshots this one kept alive, one at a time
        // rather than recursively (the chain can be long).
        let mut next = self.next.take();
        while let Some(snapshot) = next {
            match Arc::try_unwrap(snapshot) {
                Ok(mut snapshot) => next = snapshot.next.take(),
                Err(_) => break,
            }
        }
    }
}

/// Work for the retirer thread.
enum Job {
    /// Delete generations `[from, to)` of a view; `dropped`: the whole view
    /// was retired.
    Delete {
        fingerprint: u64,
        from: u32,
        to: u32,
        dropped: bool,
    },
    /// Answer once every job queued before it is done.
    Barrier(mpsc::Sender<()>),
    Stop,
}

/// Changes to the catalog, one at a time.
#[derive(Default)]
struct State {
    /// The highest generation number this process has handed out per view.
    floor: HashMap<u64, u32>,
    /// Views with a write in progress.
    busy: HashSet<u64>,
}

pub struct Catalog {
    store: Arc<Store>,
    current: ArcSwap<Snapshot>,
    state: Mutex<State>,
    jobs: mpsc::Sender<Job>,
    /// Views retired whose data is not deleted yet.
    retiring: Arc<Mutex<HashSet<u64>>>,
    retirer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Catalog {
    /// Read the view records, finish what a crash interrupted, and publish
    /// the active generations.
    pub fn open(store: Arc<Store>) -> anyhow::Result<Catalog> {
        let mut metas = read_metas(&store)?;
        let mut cleared = Vec::new();
        for (fingerprint, meta) in &mut metas {
            if let Some(pending) = meta.pending_generation.take() {
                tracing::warn!(view = %meta.view, generation = pending, "Discarding a REPLACE load that did not finish.");
                cleared.push((*fingerprint, meta.clone()));
            }
        }
        put_metas(&store, &cleared)?;
        // Every stored generation the records do not name as active goes:
        // pending ones, replaced ones not yet deleted, views without a record.
        for fingerprint in store.stored_fingerprints()? {
            match metas.get(&fingerprint).map(|m| m.generation) {
                Some(active) if active > 0 => {
                    store.delete_generations(fingerprint, 0, active)?;
                    store.delete_generations(fingerprint, active + 1, u32::MAX)?;
                }
                _ => store.delete_generations(fingerprint, 0, u32::MAX)?,
            }
        }
        let generations =
            metas.iter().filter(|(_, m)| m.generation > 0).map(|(fp, m)| (*fp, m.generation)).collect();

        let (jobs, queue) = mpsc::channel();
        let retiring = Arc::new(Mutex::new(HashSet::new()));
        let retirer = {
            let (store, retiring) = (store.clone(), retiring.clone());
            std::thread::Builder::new()
                .name("fstore-retirer".into())
                .spawn(move || retire_loop(&store, &queue, &retiring))
                .context("starting the thread that deletes retired generations")?
        };
        let first =
            Snapshot { generations, next: OnceLock::new(), retired: Mutex::default(), jobs: jobs.clone() };
        Ok(Catalog {
            store,
            current: ArcSwap::from_pointee(first),
            state: Mutex::default(),
            jobs,
            retiring,
            retirer: Mutex::new(Some(retirer)),
        })
    }

    /// The generations readers use. Hold it only while serving one request
    /// or writing one batch: what it names is kept on disk until it is let go.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Every view record, by fingerprint.
    pub fn metas(&self) -> anyhow::Result<HashMap<u64, ViewMeta>> {
        read_metas(&self.store)
    }

    pub fn meta(&self, fingerprint: u64) -> anyhow::Result<Option<ViewMeta>> {
        read_meta(&self.store, fingerprint)
    }

    /// How many view definitions have data on disk: the recorded ones, and
    /// retired ones whose data is still being deleted.
    pub fn stored_views(&self) -> anyhow::Result<usize> {
        let metas = self.metas()?;
        let retiring = self.retiring.lock().unwrap_or_else(|e| e.into_inner());
        Ok(metas.len() + retiring.iter().filter(|fp| !metas.contains_key(fp)).count())
    }

    /// Start a write to `targets`: each gets the generation it writes to,
    /// recorded before this returns.
    pub fn begin(&self, write: Write, targets: Vec<Target>) -> anyhow::Result<Txn<'_>> {
        let mut state = self.lock_state();
        if let Some(t) = targets.iter().find(|t| state.busy.contains(&t.fingerprint)) {
            anyhow::bail!("view `{}` is already being written by another load", t.view);
        }
        let mut views = Vec::with_capacity(targets.len());
        let mut pending = Vec::new();
        for target in targets {
            let mut previous = self.meta(target.fingerprint)?.unwrap_or_default();
            previous.view = target.view.clone();
            let fresh = write == Write::Replace || previous.generation == 0;
            let generation = if fresh {
                let floor = state.floor.get(&target.fingerprint).copied().unwrap_or(0);
                let g = previous.generation.max(previous.pending_generation.unwrap_or(0)).max(floor) + 1;
                state.floor.insert(target.fingerprint, g);
                let mut meta = previous.clone();
                meta.pending_generation = Some(g);
                pending.push((target.fingerprint, meta));
                g
            } else {
                previous.generation
            };
            views.push(TxnView { target, generation, previous, fresh });
        }
        // Recorded before any data: a crash during the write leaves a note
        // that lets the next start delete what it wrote.
        put_metas(&self.store, &pending)?;
        state.busy.extend(views.iter().map(|v| v.target.fingerprint));
        Ok(Txn { catalog: self, write, views, open: true })
    }

    /// Forget a view: unpublish it now, and delete its data once no one
    /// holds a snapshot that names it. Hold the lock of the view's source,
    /// so that no write to it is under way.
    pub fn retire(&self, fingerprint: u64) -> anyhow::Result<()> {
        let mut state = self.lock_state();
        let meta = self.meta(fingerprint)?.unwrap_or_default();
        let floor = state.floor.get(&fingerprint).copied().unwrap_or(0);
        let highest = floor.max(meta.generation).max(meta.pending_generation.unwrap_or(0));
        state.floor.insert(fingerprint, highest);
        self.retiring.lock().unwrap_or_else(|e| e.into_inner()).insert(fingerprint);
        self.store.write_meta_records(&[], &[meta_key(fingerprint)])?;
        let job = Job::Delete { fingerprint, from: 0, to: highest.saturating_add(1), dropped: true };
        self.publish(&state, &[], &[fingerprint], vec![job]);
        Ok(())
    }

    /// Record which coarse tile sizes the view's active generation holds.
    pub fn set_coarse_spans(&self, fingerprint: u64, spans: Option<Vec<i64>>) -> anyhow::Result<()> {
        let _state = self.lock_state();
        let mut meta =
            self.meta(fingerprint)?.with_context(|| format!("view {fingerprint:016x} has no record"))?;
        meta.coarse_spans_micros = spans;
        put_metas(&self.store, &[(fingerprint, meta)])
    }

    /// Wait until every deletion queued so far has run.
    pub fn wait_for_retirements(&self) {
        let (done, wait) = mpsc::channel();
        if self.jobs.send(Job::Barrier(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Publish `updates` and `removed` as a new snapshot; `retired` runs once
    /// the snapshot it replaces (and every older one) is let go.
    fn publish(&self, _state: &State, updates: &[(u64, u32)], removed: &[u64], retired: Vec<Job>) {
        let old = self.current.load_full();
        let mut generations = old.generations.clone();
        for fingerprint in removed {
            generations.remove(fingerprint);
        }
        generations.extend(updates.iter().copied());
        let next = Arc::new(Snapshot {
            generations,
            next: OnceLock::new(),
            retired: Mutex::default(),
            jobs: self.jobs.clone(),
        });
        old.retired.lock().unwrap_or_else(|e| e.into_inner()).extend(retired);
        let _ = old.next.set(next.clone());
        self.current.store(next);
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        // Deletions already queued run first; later ones wait for the next start.
        let _ = self.jobs.send(Job::Stop);
        if let Some(retirer) = self.retirer.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = retirer.join();
        }
    }
}

fn retire_loop(store: &Store, queue: &mpsc::Receiver<Job>, retiring: &Mutex<HashSet<u64>>) {
    for job in queue {
        match job {
            Job::Delete { fingerprint, from, to, dropped } => {
                if let Err(e) = store.delete_generations(fingerprint, from, to) {
                    tracing::error!(
                        fingerprint = format!("{fingerprint:016x}"),
                        error = format!("{e:#}"),
                        "Could not delete a retired generation; the next start does."
                    );
                }
                if dropped {
                    store.clear_row_cache();
                    retiring.lock().unwrap_or_else(|e| e.into_inner()).remove(&fingerprint);
                }
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
            Job::Stop => return,
        }
    }
}

/// The deletion of what a commit replaced, which runs once no one holds a
/// snapshot that names it.
pub struct Retirement(Option<mpsc::Receiver<()>>);

impl Retirement {
    /// Wait up to `timeout` for the deletion; true once it has run (or
    /// there was nothing to delete). It runs whether or not anyone waits.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        match &self.0 {
            None => true,
            Some(done) => !matches!(done.recv_timeout(timeout), Err(mpsc::RecvTimeoutError::Timeout)),
        }
    }
}

/// A write in progress: its views' generations. Commit it, or drop it to
/// throw away what it wrote to new generations.
pub struct Txn<'a> {
    catalog: &'a Catalog,
    write: Write,
    views: Vec<TxnView>,
    open: bool,
}

struct TxnView {
    target: Target,
    generation: u32,
    /// The record before the write (restored if the write is abandoned).
    previous: ViewMeta,
    /// The write goes to a new generation.
    fresh: bool,
}

impl Txn<'_> {
    /// The generation each target writes to, in the order they were given.
    pub fn generations(&self) -> Vec<(u64, u32)> {
        self.views.iter().map(|v| (v.target.fingerprint, v.generation)).collect()
    }

    /// Make the write visible: a REPLACE's data is flushed to disk, every
    /// view's record is switched in one synced write, and the new snapshot
    /// is published. What the new generations replace is deleted once no
    /// one holds the snapshot that names it. `load`: the record of a
    /// Parquet load, for GetStatus.
    pub fn commit(mut self, load: Option<LoadRecord>) -> anyhow::Result<Retirement> {
        let catalog = self.catalog;
        if self.write == Write::Replace {
            // Written without the WAL: on disk before the switch names it.
            catalog.store.flush_rows()?;
        }
        let mut metas = Vec::new();
        for v in &self.views {
            if !v.fresh && load.is_none() {
                continue;
            }
            let mut meta = v.previous.clone();
            if v.fresh {
                meta.generation = v.generation;
                // A new generation, written with this version's tiles.
                meta.coarse_spans_micros = v.target.coarse_spans_micros.clone();
            }
            meta.pending_generation = None;
            if let Some(load) = &load {
                meta.last_load = Some(load.clone());
            }
            metas.push((v.target.fingerprint, meta));
        }
        let mut state = catalog.lock_state();
        put_metas(&catalog.store, &metas)?;
        let fresh: Vec<&TxnView> = self.views.iter().filter(|v| v.fresh).collect();
        let mut retirement = Retirement(None);
        if !fresh.is_empty() {
            let updates: Vec<(u64, u32)> =
                fresh.iter().map(|v| (v.target.fingerprint, v.generation)).collect();
            let mut retired: Vec<Job> = fresh
                .iter()
                .filter(|v| v.previous.generation > 0)
                .map(|v| Job::Delete {
                    fingerprint: v.target.fingerprint,
                    from: 0,
                    to: v.generation,
                    dropped: false,
                })
                .collect();
            if !retired.is_empty() {
                let (done, wait) = mpsc::channel();
                retired.push(Job::Barrier(done));
                retirement = Retirement(Some(wait));
            }
            catalog.publish(&state, &updates, &[], retired);
        }
        for v in &self.views {
            state.busy.remove(&v.target.fingerprint);
        }
        self.open = false;
        Ok(retirement)
    }

    fn abort(&mut self) {
        let catalog = self.catalog;
        for v in self.views.iter().filter(|v| v.fresh) {
            let fingerprint = v.target.fingerprint;
            let result = catalog
                .store
                .delete_generations(fingerprint, v.generation, v.generation + 1)
                .and_then(|()| put_metas(&catalog.store, &[(fingerprint, v.previous.clone())]));
            if let Err(e) = result {
                tracing::error!(view = %v.target.view, error = %e, "Cleaning up a failed load; the next start retries.");
            }
        }
        let mut state = catalog.lock_state();
        for v in &self.views {
            state.busy.remove(&v.target.fingerprint);
        }
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.open {
            self.abort();
        }
    }
}

fn read_metas(store: &Store) -> anyhow::Result<HashMap<u64, ViewMeta>> {
    let mut out = HashMap::new();
    for (key, value) in store.meta_records(META_PREFIX)? {
        let hex = &key[META_PREFIX.len()..];
        let fingerprint = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .context("corrupt view metadata key")?;
        let meta: ViewMeta = serde_json::from_slice(&value).context("corrupt view metadata")?;
        out.insert(fingerprint, meta);
    }
    Ok(out)
}

fn read_meta(store: &Store, fingerprint: u64) -> anyhow::Result<Option<ViewMeta>> {
    let raw = store.meta_record(&meta_key(fingerprint))?;
    raw.map(|r| serde_json::from_slice(&r).context("corrupt view metadata")).transpose()
}

/// Write several views' records at once (one synced write).
fn put_metas(store: &Store, metas: &[(u64, ViewMeta)]) -> anyhow::Result<()> {
    if metas.is_empty() {
        return Ok(());
    }
    let puts = metas
        .iter()
        .map(|(fp, meta)| Ok((meta_key(*fp), serde_json::to_vec(meta)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    store.write_meta_records(&puts, &[])
}

#[cfg(test)]
mod tests;
