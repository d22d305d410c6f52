//! Applying a typed batch of source events to the views that read the source.
//!
//! Parquet loads and Kafka streams both end here, so a feature is computed
//! the same way whichever path its events took:
//!
//! - a **row view** evaluates its filter and features over the batch and
//!   upserts one encoded row per event (the store keeps the newest per key);
//! - an **aggregating view** evaluates its filter, arguments and `where`
//!   conditions, folds the events into partial states per (entity, tile),
//!   for the fine tile and each coarse tile that holds it (`fstore_dsl::tiles`),
//!   and per entity for lifetime aggregates, and merges those into the store.
//!   An event whose tile is older than the view's longest window plus one
//!   tile is too late for every window: it is counted and only its lifetime
//!   aggregates take it.
//!
//! The lifetime state of an entity carries one slot past the view's
//! features: the newest event time seen, which serving reports as the row's
//! event time and checks against the view's `ttl`.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::Int64Type;
use fstore_dsl::agg::{self, Partial, Scalar, State};
use fstore_dsl::plan::{AggFeature, ViewBody};
use fstore_dsl::DataType;

use crate::registry::Registry;
use crate::store::codec::{encode_row, ColumnRef};
use crate::store::keys::{push_key_part, push_lifetime, push_tile_of_span, view_prefix, KeyPart};
use crate::store::Batch;

/// One view being written, and where.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Index into the plan's views.
    pub(crate) view: usize,
    pub(crate) fingerprint: u64,
    pub(crate) generation: u32,
}

/// What applying a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Events stored in at least one view.
    pub(crate) written: u64,
    /// Events too old for any window of an aggregating view (counted once
    /// per event, however many views dropped it).
    pub(crate) too_late: u64,
}

/// Everything about one batch that does not change per event.
pub(crate) struct Events<'a> {
    /// One column per source field, as the definitions' types.
    pub(crate) typed: &'a RecordBatch,
    pub(crate) event_times: &'a TimestampMicrosecondArray,
    /// Arrival order of row 0; row i arrived as `seq + i`.
    pub(crate) seq: u64,
    /// Wall-clock time of the write, for the too-late rule.
    pub(crate) now: i64,
}

/// Lifetime-state slot holding the newest event time (after the features).
pub(crate) fn newest_slot(features: &[AggFeature]) -> usize {
    features.len()
}

/// Evaluate every target view over `events` and add the results to `writes`.
/// Rows in `rejects` are skipped; rows that fail to encode are added to it
/// (with the reason) and written to no view.
pub(crate) fn apply(
    registry: &Registry,
    targets: &[Target],
    events: &Events<'_>,
    rejects: &mut BTreeMap<usize, String>,
    writes: &mut Batch<'_>,
) -> anyhow::Result<Applied> {
    let typed = events.typed;
    let rows = typed.num_rows();
    let mut prepared = Vec::with_capacity(targets.len());
    for target in targets {
        let view = &registry.plan.views[target.view];
        let entity = &registry.plan.entities[view.entity];
        let mut keys = Vec::new();
        for (key, field) in entity.keys.iter().zip(&view.key_fields) {
            let column = typed
                .column_by_name(field)
                .ok_or_else(|| anyhow::anyhow!("key field `{field}` is always read"))?
                .clone();
            for row in 0..rows {
                if column.is_null(row) {
                    rejects
                        .entry(row)
                        .or_insert_with(|| format!("key `{}` (field `{field}`) is null", key.name));
                }
            }
            keys.push((key.ty, column));
        }
        let filter = match &view.filter {
            Some(f) => Some(fstore_dsl::eval(f, typed)?.as_boolean().clone()),
            None => None,
        };
        let kind = match &view.body {
            ViewBody::Row { features } => {
                let mut values = Vec::with_capacity(features.len());
                for f in features {
                    let array = fstore_dsl::eval(&f.expr, typed)
                        .map_err(|e| anyhow::anyhow!("evaluating feature `{}.{}`: {e}", view.name, f.name))?;
                    values.push((f.ty, array));
                }
                Kind::Row(values)
            }
            ViewBody::Aggregating { resolution, features } => {
                let resolution = resolution.as_micros() as i64;
                let inputs = agg::evaluate(features, typed)
                    .map_err(|e| anyhow::anyhow!("evaluating view `{}`: {e}", view.name))?;
                let oldest_tile = agg::horizon_tiles(features, resolution)
                    .map(|h| agg::tile_of(events.now, resolution).saturating_sub(h));
                let coarse = registry.views[target.view]
                    .agg_layout
                    .as_ref()
                    .map(|l| l.coarse_spans_micros())
                    .unwrap_or_default();
                Kind::Agg { features, resolution, inputs, oldest_tile, coarse }
            }
        };
        prepared.push((target, keys, filter, kind));
    }
    let columns: Vec<Option<Vec<ColumnRef<'_>>>> = prepared
        .iter()
        .map(|(_, _, _, kind)| match kind {
            Kind::Row(values) => values
                .iter()
                .map(|(ty, a)| ColumnRef::new(a, *ty))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("evaluated feature {e}")),
            Kind::Agg { .. } => Ok(None),
        })
        .collect::<anyhow::Result<_>>()?;

    let mut applied = Applied::default();
    let mut states: HashMap<Vec<u8>, State> = HashMap::new();
    let mut key = Vec::with_capacity(64);
    let mut encoded: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(targets.len());
    for row in 0..rows {
        if rejects.contains_key(&row) {
            continue;
        }
        let event_time = events.event_times.value(row);
        // Encode the row views first: a row that fails there is rejected
        // from every view, before any aggregate counted it.
        encoded.clear();
        let mut failure = None;
        let mut kept = false;
        for ((target, keys, filter, kind), columns) in prepared.iter().zip(&columns) {
            let (Kind::Row(_), Some(columns)) = (kind, columns) else { continue };
            if filter.as_ref().is_some_and(|f| !(f.is_valid(row) && f.value(row))) {
                continue;
            }
            entity_key(&mut key, target, keys, row);
            let mut value = Vec::with_capacity(64);
            if let Err(why) = encode_row(event_time, columns, row, &mut value) {
                failure = Some(why.to_string());
                break;
            }
            encoded.push((key.clone(), value));
        }
        if let Some(why) = failure {
            rejects.insert(row, why);
            continue;
        }
        for (k, v) in &encoded {
            writes.upsert(k, v);
            kept = true;
        }
        let mut late = false;
        for (target, keys, filter, kind) in &prepared {
            let Kind::Agg { features, resolution, inputs, oldest_tile, coarse } = kind else { continue };
            if filter.as_ref().is_some_and(|f| !(f.is_valid(row) && f.value(row))) {
                continue;
            }
            kept = true;
            let seq = events.seq + row as u64;
            entity_key(&mut key, target, keys, row);
            let entity_len = key.len();
            if let Some(oldest) = oldest_tile {
                let tile = agg::tile_of(event_time, *resolution);
                if tile >= *oldest {
                    // The fine tile, and the coarse tile of each size that holds it.
                    let start = tile.saturating_mul(*resolution);
                    let spans = std::iter::once(*resolution).chain(coarse.iter().copied());
                    for span in spans {
                        push_tile_of_span(&mut key, *resolution, span, start.div_euclid(span));
                        states
                            .entry(key.clone())
                            .or_insert_with(|| State::tile(features))
                            .add(features, inputs, row, event_time, seq);
                        key.truncate(entity_len);
                    }
                } else {
                    late = true;
                }
            }
            push_lifetime(&mut key);
            let lifetime = states.entry(key.clone()).or_insert_with(|| lifetime_state(features));
            lifetime.add(features, inputs, row, event_time, seq);
            note_event_time(lifetime, newest_slot(features), event_time);
        }
        applied.written += u64::from(kept);
        applied.too_late += u64::from(late);
    }
    let mut buffer = Vec::with_capacity(64);
    for (key, state) in &states {
        buffer.clear();
        state.encode(&mut buffer);
        writes.merge_agg(key, &buffer);
    }
    Ok(applied)
}

enum Kind<'a> {
    Row(Vec<(DataType, arrow::array::ArrayRef)>),
    Agg {
        features: &'a [AggFeature],
        resolution: i64,
        inputs: agg::Inputs,
        oldest_tile: Option<i64>,
        /// Coarse tile sizes in microseconds (see `fstore_dsl::tiles`).
        coarse: Vec<i64>,
    },
}

fn entity_key(key: &mut Vec<u8>, target: &Target, keys: &[(DataType, arrow::array::ArrayRef)], row: usize) {
    key.clear();
    key.extend_from_slice(&view_prefix(target.fingerprint, target.generation));
    for (ty, column) in keys {
        let part = match ty {
            DataType::Int64 => KeyPart::Int(column.as_primitive::<Int64Type>().value(row)),
            _ => KeyPart::Str(column.as_string::<i32>().value(row)),
        };
        push_key_part(key, part);
    }
}

/// An empty lifetime state, with the newest-event-time slot.
pub(crate) fn lifetime_state(features: &[AggFeature]) -> State {
    let mut state = State::lifetime(features);
    state.0.push(Partial::Max(None));
    state
}

fn note_event_time(state: &mut State, slot: usize, event_time: i64) {
    if let Some(Partial::Max(newest)) = state.0.get_mut(slot) {
        if !matches!(newest, Some(Scalar::Timestamp(t)) if *t >= event_time) {
            *newest = Some(Scalar::Timestamp(event_time));
        }
    }
}

/// The newest event time recorded in a lifetime state.
pub(crate) fn newest_event_time(state: &State, features: &[AggFeature]) -> Option<i64> {
    match state.0.get(newest_slot(features)) {
        Some(Partial::Max(Some(Scalar::Timestamp(t)))) => Some(*t),
        _ => None,
    }
}
