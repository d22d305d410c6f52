//! One upsert of decoded events into every view of their source: Kafka
//! batches ([`crate::stream`]) and pushed events ([`super::push`]) both end
//! here, so they are applied alike.
//!
//! The whole upsert is one RocksDB write, made under the source's lock: a
//! definitions apply drops an old view's data under the same lock, after
//! the swap, so a write never lands in a view that is already gone. A view
//! written for the first time gets its generation from the catalog,
//! published before any of its data.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use arrow::array::{RecordBatch, TimestampMicrosecondArray};

use super::events::{self, Applied, Events, Target};
use crate::catalog;
use crate::engine::Engine;
use crate::registry::Registry;
use crate::store::{Batch, Durability};

/// What one upsert did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) applied: Applied,
    /// Rows of the batch written to no view, with the reason (a null key,
    /// a value that does not encode).
    pub(crate) rejects: BTreeMap<usize, String>,
}

/// Apply `typed` (one column per field of source `source`, the language's
/// types) with its `event_times` to every view of the source, adding
/// `extra` to the same write (a stream's offsets), with `durability`.
pub(crate) fn upsert(
    engine: &Engine,
    source: &str,
    typed: &RecordBatch,
    event_times: &TimestampMicrosecondArray,
    durability: Durability,
    extra: impl FnOnce(&mut Batch<'_>),
) -> anyhow::Result<Written> {
    let lock = engine.source_lock(source);
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let registry = engine.registry();
    let index = registry.plan.source(source).map(|(i, _)| i).context("source vanished")?;
    let targets = targets(engine, &registry, &registry.views_of_source(index))?;
    let mut writes = engine.store.batch();
    let mut rejects = BTreeMap::new();
    let rows = typed.num_rows();
    let batch_events = Events { typed, event_times, seq: engine.next_seq(rows), now: crate::now_micros() };
    let applied = events::apply(&registry, &targets, &batch_events, &mut rejects, &mut writes)?;
    extra(&mut writes);
    engine.store.write_rows(writes, durability)?;
    Ok(Written { applied, rejects })
}

/// The generation each view writes to; a view written for the first time
/// gets one from the catalog, published before any data.
fn targets(engine: &Engine, registry: &Registry, views: &[usize]) -> anyhow::Result<Vec<Target>> {
    let snapshot = engine.generations();
    let known: Vec<Option<u32>> =
        views.iter().map(|&v| snapshot.get(&registry.views[v].fingerprint).copied()).collect();
    drop(snapshot);
    let first: Vec<catalog::Target> = views
        .iter()
        .zip(&known)
        .filter(|(_, g)| g.is_none())
        .map(|(&v, _)| {
            let info = &registry.views[v];
            catalog::Target {
                fingerprint: info.fingerprint,
                view: info.name.clone(),
                coarse_spans_micros: info.coarse_spans_micros(),
            }
        })
        .collect();
    let mut started = HashMap::new();
    if !first.is_empty() {
        let txn = engine.catalog.begin(catalog::Write::Upsert, first)?;
        started.extend(txn.generations());
        txn.commit(None)?;
    }
    views
        .iter()
        .zip(known)
        .map(|(&view, generation)| {
            let fingerprint = registry.views[view].fingerprint;
            let generation = generation
                .or_else(|| started.get(&fingerprint).copied())
                .context("the catalog gave no generation to a view")?;
            Ok(Target { view, fingerprint, generation })
        })
        .collect()
}
