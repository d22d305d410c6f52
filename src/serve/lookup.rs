//! `GetOnlineFeatures`: validate the request against the resolved selection,
//! read each view once with a batched multi-get, fill the column-major
//! response straight from the stored bytes, and compute the service's
//! derived features over it ([`derive`]).

use std::collections::HashMap;

use fstore_dsl::DataType;

use crate::engine::Engine;
use crate::error::Error;
use crate::ingest::events;
use crate::proto::{self, get_online_features_request::Selector, value::Kind, FieldStatus};
use crate::registry::{Registry, Selection, ViewInfo, ViewRead};
use crate::serve::auth::Caller;
use crate::serve::derive;
use crate::store::aggs::TileRun;
use crate::store::keys::{push_key_part, view_prefix, KeyPart};
use fstore_dsl::agg::{self, Scalar};
use fstore_dsl::plan::{AggFeature, ViewBody};
use fstore_dsl::tiles;

/// Row reads above which a lookup is heavy.
const HEAVY_ROW_READS: usize = 256;

/// What one key of an aggregating view costs, in row reads: a seek per run
/// of tiles its windows read (at most two per tile size) and one for its
/// lifetime state, and up to a few dozen states to decode and merge.
const AGG_KEY_READS: usize = 16;

/// Whether a request takes long enough (many row reads, or many keys'
/// windows to merge) that it should not run on an async worker. Cheap: no
/// lookup. A lookup of a key or two of an aggregating view runs inline.
pub(crate) fn is_heavy(registry: &Registry, request: &proto::GetOnlineFeaturesRequest) -> bool {
    let rows = request.entities.values().map(|v| v.values.len()).max().unwrap_or(0);
    match &request.selector {
        Some(Selector::FeatureService(name)) => match registry.services.get(name) {
            Some(selection) => {
                let per_row: usize = selection
                    .views
                    .iter()
                    .map(|r| if registry.views[r.view].aggregating { AGG_KEY_READS } else { 1 })
                    .sum();
                rows * per_row > HEAVY_ROW_READS
            }
            None => false,
        },
        Some(Selector::Features(refs)) => rows * refs.refs.len().max(1) > HEAVY_ROW_READS,
        None => false,
    }
}

/// Answer `request` for `caller` (None: authentication is off).
pub(crate) fn get_online_features(
    engine: &Engine,
    request: proto::GetOnlineFeaturesRequest,
    caller: Option<&Caller>,
) -> Result<proto::GetOnlineFeaturesResponse, Error> {
    let registry = engine.registry();
    let generations = engine.generations();
    let resolved;
    let service = match &request.selector {
        Some(Selector::FeatureService(name)) => Some(name.as_str()),
        _ => None,
    };
    if let (Some(caller), Some(name)) = (caller, service) {
        if !caller.may_read_service(name) {
            return Err(Error::permission_denied(format!(
                "API key `{}` may not read feature service `{name}`",
                caller.name
            )));
        }
    }
    let selection: &Selection = match &request.selector {
        Some(Selector::FeatureService(name)) => match registry.services.get(name) {
            Some(s) => s,
            None => {
                let mut names: Vec<_> = registry.services.keys().map(String::as_str).collect();
                names.sort_unstable();
                return Err(Error::invalid_argument(format!(
                    "unknown feature service `{name}`; known services: {}",
                    names.join(", ")
                )));
            }
        },
        Some(Selector::Features(refs)) => {
            resolved = registry.resolve_refs(&refs.refs)?;
            if let Some(caller) = caller {
                caller.may_read_features(&registry, resolved.columns.iter().map(|c| c.name.as_str()))?;
            }
            &resolved
        }
        None => {
            return Err(Error::invalid_argument(
                "the request names no features: set feature_service or features",
            ))
        }
    };
    let rows = check_entities(&request.entities, selection, engine.config.max_rows_per_request(service))?;
    let request_fields = derive::check_request_data(&request.request_data, selection, service, rows)?;

    let mut columns: Vec<proto::FeatureColumn> = selection
        .columns
        .iter()
        .map(|c| proto::FeatureColumn {
            name: c.name.clone(),
            values: Vec::with_capacity(rows),
            statuses: Vec::with_capacity(rows),
            event_timestamps_micros: Vec::with_capacity(rows),
        })
        .collect();
    if rows == 0 {
        if let Some(derived) = &selection.derived {
            columns.extend(derive::empty_columns(derived));
        }
        return Ok(proto::GetOnlineFeaturesResponse { features: columns });
    }
    // Windows (and ttl) are computed at the request's time: the server's
    // clock unless the request names one.
    let now =
        if request.request_time_micros != 0 { request.request_time_micros } else { crate::now_micros() };

    for read in &selection.views {
        let info = &registry.views[read.view];
        let Some(&generation) = generations.get(&info.fingerprint) else {
            push_not_found(&mut columns, read, rows);
            continue;
        };
        let prefix = view_prefix(info.fingerprint, generation);
        let key_columns: Vec<&[proto::Value]> =
            info.key_names.iter().map(|k| request.entities[k].values.as_slice()).collect();
        let keys: Vec<Vec<u8>> = (0..rows)
            .map(|row| {
                let mut key = Vec::with_capacity(32);
                key.extend_from_slice(&prefix);
                for column in &key_columns {
                    push_key_part(&mut key, key_part(&column[row]));
                }
                key
            })
            .collect();
        let ttl_micros = info.ttl.map(|t| t.as_micros().min(i64::MAX as u128) as i64);
        if let ViewBody::Aggregating { features, .. } = &registry.plan.views[read.view].body {
            aggregate(engine, info, read, features, now, ttl_micros, &keys, &mut columns)?;
            continue;
        }
        let rows_found = engine
            .store
            .read_rows(&keys, &info.feature_types)
            .map_err(|e| Error::internal(format!("reading view `{}`", info.name), e))?;
        for found in rows_found {
            let Some(decoded) = found else {
                push_not_found(&mut columns, read, 1);
                continue;
            };
            let expired = ttl_micros.is_some_and(|ttl| now.saturating_sub(decoded.event_time) > ttl);
            for &(feature, column) in &read.features {
                let (value, status) = if expired {
                    (proto::Value::default(), FieldStatus::OutsideMaxAge)
                } else if decoded.values[feature].kind.is_none() {
                    (proto::Value::default(), FieldStatus::NullValue)
                } else {
                    (decoded.values[feature].clone(), FieldStatus::Present)
                };
                let c = &mut columns[column];
                c.values.push(value);
                c.statuses.push(status as i32);
                c.event_timestamps_micros.push(decoded.event_time);
            }
        }
    }
    if let Some(derived) = &selection.derived {
        derive::append_derived(derived, &request_fields, &mut columns, rows)?;
    }
    Ok(proto::GetOnlineFeaturesResponse { features: columns })
}

/// Fill the columns of an aggregating view: merge each entity's tiles into
/// its windows at time `now` (see `fstore_dsl::agg`), reading for each
/// window only the tiles of its cover (`fstore_dsl::tiles`): coarse tiles
/// for its interior, fine ones at its edges.
#[allow(clippy::too_many_arguments)]
fn aggregate(
    engine: &Engine,
    info: &ViewInfo,
    read: &ViewRead,
    features: &[AggFeature],
    now: i64,
    ttl_micros: Option<i64>,
    keys: &[Vec<u8>],
    columns: &mut [proto::FeatureColumn],
) -> Result<(), Error> {
    let Some(layout) = &info.agg_layout else {
        return Err(Error::internal(
            format!("view `{}` has no tile layout", info.name),
            anyhow::anyhow!("an aggregating view without one"),
        ));
    };
    let resolution = layout.resolution_micros;
    let covers = agg::window_covers(features, resolution, &layout.ladder, now);
    let runs: Vec<TileRun> = tiles::union(covers.iter().flatten())
        .into_iter()
        .map(|r| TileRun {
            level: r.level,
            span_micros: layout.span_micros(r.level),
            first: r.first,
            last: r.last,
        })
        .collect();
    let states = engine
        .store
        .read_agg_states(keys, resolution, &runs)
        .map_err(|e| Error::internal(format!("reading the aggregates of view `{}`", info.name), e))?;
    for found in states {
        let Some(found) = found else {
            push_not_found(columns, read, 1);
            continue;
        };
        let newest =
            found.lifetime.as_ref().and_then(|l| events::newest_event_time(l, features)).unwrap_or(0);
        let expired = ttl_micros.is_some_and(|ttl| now.saturating_sub(newest) > ttl);
        let mut values = agg::Finalizer::new(features, &covers);
        for (level, index, state) in &found.tiles {
            values.fold(*level, *index, state);
        }
        let values = values.finish(features, found.lifetime.as_ref());
        for &(feature, column) in &read.features {
            let (value, status) = match &values[feature] {
                _ if expired => (proto::Value::default(), FieldStatus::OutsideMaxAge),
                None => (proto::Value::default(), FieldStatus::NullValue),
                Some(v) => (proto::Value { kind: Some(scalar_kind(v)) }, FieldStatus::Present),
            };
            let c = &mut columns[column];
            c.values.push(value);
            c.statuses.push(status as i32);
            c.event_timestamps_micros.push(newest);
        }
    }
    Ok(())
}

fn scalar_kind(v: &Scalar) -> Kind {
    match v {
        Scalar::Bool(b) => Kind::BoolValue(*b),
        Scalar::Int64(i) => Kind::Int64Value(*i),
        Scalar::Float32(f) => Kind::Float32Value(*f),
        Scalar::Float64(f) => Kind::Float64Value(*f),
        Scalar::String(s) => Kind::StringValue(s.clone()),
        Scalar::Bytes(b) => Kind::BytesValue(b.clone()),
        Scalar::Timestamp(t) => Kind::TimestampMicros(*t),
        Scalar::Float32List(v) => Kind::Float32List(proto::Float32List { values: v.clone() }),
        Scalar::Float64List(v) => Kind::Float64List(proto::Float64List { values: v.clone() }),
        Scalar::Int64List(v) => Kind::Int64List(proto::Int64List { values: v.clone() }),
        Scalar::StringList(v) => Kind::StringList(proto::StringList { values: v.clone() }),
    }
}

/// Append `rows` NOT_FOUND entries to each column `read` fills.
fn push_not_found(columns: &mut [proto::FeatureColumn], read: &ViewRead, rows: usize) {
    for &(_, column) in &read.features {
        let c = &mut columns[column];
        c.values.extend(std::iter::repeat_n(proto::Value::default(), rows));
        c.statuses.extend(std::iter::repeat_n(FieldStatus::NotFound as i32, rows));
        c.event_timestamps_micros.extend(std::iter::repeat_n(0, rows));
    }
}

fn key_part(value: &proto::Value) -> KeyPart<'_> {
    match &value.kind {
        Some(Kind::Int64Value(v)) => KeyPart::Int(*v),
        Some(Kind::StringValue(s)) => KeyPart::Str(s),
        // check_entities admits only the two kinds above.
        _ => unreachable!("entity key values are validated before lookup"),
    }
}

/// Every needed key column present, no others, equal lengths, right types,
/// no nulls. Returns the number of rows.
fn check_entities(
    entities: &HashMap<String, proto::Values>,
    selection: &Selection,
    max_rows: (usize, Option<&str>),
) -> Result<usize, Error> {
    let needed: Vec<&str> = selection.keys.keys().map(String::as_str).collect();
    for name in &needed {
        if !entities.contains_key(*name) {
            return Err(Error::invalid_argument(format!(
                "missing entity key column `{name}`; this request needs: {}",
                needed.join(", ")
            )));
        }
    }
    let mut extra: Vec<&str> =
        entities.keys().map(String::as_str).filter(|k| !selection.keys.contains_key(*k)).collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(Error::invalid_argument(format!(
            "unexpected entity key column `{}`; this request needs: {}",
            extra[0],
            needed.join(", ")
        )));
    }
    let mut rows = None;
    for (name, ty) in &selection.keys {
        let values = &entities[name].values;
        match rows {
            None => rows = Some((name, values.len())),
            Some((first, n)) if n != values.len() => {
                return Err(Error::invalid_argument(format!(
                    "entity key columns differ in length: `{first}` has {n} values, `{name}` has {}",
                    values.len()
                )))
            }
            Some(_) => {}
        }
        for (i, value) in values.iter().enumerate() {
            let ok = matches!(
                (ty, &value.kind),
                (DataType::Int64, Some(Kind::Int64Value(_))) | (DataType::String, Some(Kind::StringValue(_)))
            );
            if !ok {
                let found = match &value.kind {
                    None => "null".to_string(),
                    Some(kind) => kind_name(kind).to_string(),
                };
                return Err(Error::invalid_argument(format!(
                    "entity key `{name}` value {i} is {found}; `{name}` is {ty}"
                )));
            }
        }
    }
    let rows = rows.map_or(0, |(_, n)| n);
    let (max_rows, by_service) = max_rows;
    if rows > max_rows {
        let setting = match by_service {
            Some(name) => format!("services.{name}.max_rows_per_request"),
            None => "server.max_rows_per_request".to_string(),
        };
        return Err(Error::invalid_argument(format!(
            "the request has {rows} entity rows; the limit is {max_rows} ({setting})"
        )));
    }
    Ok(rows)
}

pub(crate) fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::BoolValue(_) => "a bool",
        Kind::Int64Value(_) => "an int64",
        Kind::Float32Value(_) => "a float32",
        Kind::Float64Value(_) => "a float64",
        Kind::StringValue(_) => "a string",
        Kind::BytesValue(_) => "bytes",
        Kind::TimestampMicros(_) => "a timestamp",
        Kind::Float32List(_) => "an array<float32>",
        Kind::Float64List(_) => "an array<float64>",
        Kind::Int64List(_) => "an array<int64>",
        Kind::StringList(_) => "an array<string>",
    }
}
