//! Pushed events (`FeaturePush.PushEvents`): events for a source sent by a
//! client, applied as the source's Kafka messages are.
//!
//! Events arrive as JSON objects, exactly as a Kafka message of the source
//! carries them, or as typed columns (field -> one value per event), which
//! are read as the JSON object each row would be. Both are decoded by
//! [`super::json`] (the same types, the same bad-event reasons) and written
//! by [`super::write::upsert`] to every view of the source in one RocksDB
//! write, synced before the call returns: an acknowledged event survives a
//! crash of the process or the machine. A bad event is reported with its
//! index and reason and left out; the others are written together or not at
//! all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Number, Value as Json};

use super::json::{self, BadReason};
use super::write;
use crate::engine::Engine;
use crate::proto::{self, value::Kind};
use crate::store::Durability;

/// Events per request beyond which a push is refused: a larger batch is
/// better split, so that one call neither holds the source's lock nor a
/// write buffer for long.
pub const MAX_EVENTS: usize = 50_000;

/// Events as a client sends them.
pub enum PushedEvents {
    /// One JSON object per event.
    Json(Vec<String>),
    /// Field -> one value per event; every column of one length.
    Columns(HashMap<String, Vec<proto::Value>>),
}

/// What to do with events that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadEvents {
    /// Report each by index and write the others (`PushEvents`).
    Skip,
    /// Refuse the whole push, writing nothing (Feast's push endpoints,
    /// whose clients cannot read a partial report).
    RefuseAll,
}

/// An event left out, by its index in the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// What a push did.
#[derive(Debug, Default)]
pub struct PushReport {
    pub received: u64,
    pub written: u64,
    pub rejected: Vec<Rejected>,
    /// Events older than every window of an aggregating view (kept only in
    /// lifetime aggregates).
    pub too_late: u64,
    /// Typed columns that no view of the source reads (ignored).
    pub unread_fields: Vec<String>,
}

/// Why a push was refused as a whole (nothing written).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Apply `events` to every view of source `source`.
pub fn push(
    engine: &Engine,
    source: &str,
    events: PushedEvents,
    bad_events: BadEvents,
) -> Result<PushReport, PushError> {
    let registry = engine.registry();
    let Some((index, plan_source)) = registry.plan.source(source) else {
        let names: Vec<&str> = registry.plan.sources.iter().map(|s| s.name.as_str()).collect();
        return Err(PushError::Invalid(format!("unknown source `{source}`; sources: {}", names.join(", "))));
    };
    let views = registry.views_of_source(index);
    if views.is_empty() {
        return Err(PushError::Invalid(format!(
            "no view reads source `{source}`: pushed events would go nowhere"
        )));
    }
    let key_fields: BTreeSet<String> =
        views.iter().flat_map(|&v| registry.plan.views[v].key_fields.iter().cloned()).collect();

    let mut report = PushReport::default();
    // Payloads to decode, and for each the index of its event in the request.
    let (payloads, indices): (Vec<Vec<u8>>, Vec<usize>) = match events {
        PushedEvents::Json(events) => {
            check_count(events.len())?;
            report.received = events.len() as u64;
            events.into_iter().map(String::into_bytes).zip(0..).unzip()
        }
        PushedEvents::Columns(columns) => {
            let rows = rows_of(&columns)?;
            check_count(rows)?;
            report.received = rows as u64;
            report.unread_fields =
                columns.keys().filter(|c| !plan_source.fields.contains_key(*c)).cloned().collect();
            report.unread_fields.sort();
            let read: Vec<(&String, &Vec<proto::Value>)> =
                columns.iter().filter(|(c, _)| plan_source.fields.contains_key(*c)).collect();
            let mut out = (Vec::with_capacity(rows), Vec::with_capacity(rows));
            for row in 0..rows {
                match object_of(&read, row) {
                    Ok(object) => {
                        out.0.push(serde_json::to_vec(&Json::Object(object)).map_err(anyhow::Error::from)?);
                        out.1.push(row);
                    }
                    Err(reason) => report.rejected.push(Rejected { index: row, reason }),
                }
            }
            out
        }
    };
    let refs: Vec<Option<&[u8]>> = payloads.iter().map(|p| Some(p.as_slice())).collect();
    let decoded = json::decode(&refs, plan_source, &key_fields);
    drop(registry);
    for bad in &decoded.bad {
        report
            .rejected
            .push(Rejected { index: indices[bad.index], reason: describe(bad.reason, &bad.detail) });
    }
    if bad_events == BadEvents::RefuseAll && !report.rejected.is_empty() {
        report.rejected.sort_by_key(|r| r.index);
        let first = &report.rejected[0];
        return Err(PushError::Invalid(format!(
            "{} of {} events are bad, so none was written; event {}: {}",
            report.rejected.len(),
            report.received,
            first.index,
            first.reason
        )));
    }
    if decoded.batch.num_rows() > 0 {
        let written =
            write::upsert(engine, source, &decoded.batch, &decoded.event_times, Durability::Sync, |_| {})?;
        for (row, why) in &written.rejects {
            let index = indices[decoded.rows[*row]];
            report.rejected.push(Rejected { index, reason: describe(BadReason::BadValue, why) });
        }
        report.written = written.applied.written;
        report.too_late = written.applied.too_late;
    }
    report.rejected.sort_by_key(|r| r.index);
    Ok(report)
}

fn describe(reason: BadReason, detail: &str) -> String {
    format!("{}: {detail}", reason.name())
}

fn check_count(events: usize) -> Result<(), PushError> {
    if events > MAX_EVENTS {
        return Err(PushError::Invalid(format!(
            "the push has {events} events; the limit is {MAX_EVENTS} per request: split it"
        )));
    }
    Ok(())
}

/// The number of events in typed columns: their common length.
fn rows_of(columns: &HashMap<String, Vec<proto::Value>>) -> Result<usize, PushError> {
    let mut lengths: BTreeMap<usize, &str> = BTreeMap::new();
    for (name, values) in columns {
        lengths.entry(values.len()).or_insert(name);
    }
    match lengths.len() {
        0 => Ok(0),
        1 => Ok(*lengths.keys().next().unwrap_or(&0)),
        _ => {
            let shown: Vec<String> = lengths.iter().map(|(n, c)| format!("`{c}` has {n}")).collect();
            Err(PushError::Invalid(format!("event columns differ in length: {}", shown.join(", "))))
        }
    }
}

/// Row `row` of typed columns as the JSON object a Kafka message would be.
fn object_of(columns: &[(&String, &Vec<proto::Value>)], row: usize) -> Result<Map<String, Json>, String> {
    let mut object = Map::with_capacity(columns.len());
    for (name, values) in columns {
        let value = json_of(&values[row]).map_err(|why| format!("bad_value: field `{name}`: {why}"))?;
        object.insert((*name).clone(), value);
    }
    Ok(object)
}

fn json_of(value: &proto::Value) -> Result<Json, &'static str> {
    let float = |x: f64| Number::from_f64(x).map_or(Json::Null, Json::Number);
    Ok(match &value.kind {
        None => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::Int64Value(i)) => Json::Number((*i).into()),
        Some(Kind::Float32Value(x)) => float(*x as f64),
        Some(Kind::Float64Value(x)) => float(*x),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::BytesValue(b)) => Json::String(
            String::from_utf8(b.clone()).map_err(|_| "bytes that are not UTF-8 cannot be pushed")?,
        ),
        Some(Kind::TimestampMicros(t)) => match chrono::DateTime::from_timestamp_micros(*t) {
            Some(t) => Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            None => return Err("a timestamp out of range"),
        },
        Some(Kind::Float32List(l)) => Json::Array(l.values.iter().map(|x| float(*x as f64)).collect()),
        Some(Kind::Float64List(l)) => Json::Array(l.values.iter().map(|x| float(*x)).collect()),
        Some(Kind::Int64List(l)) => Json::Array(l.values.iter().map(|x| Json::Number((*x).into())).collect()),
        Some(Kind::StringList(l)) => Json::Array(l.values.iter().cloned().map(Json::String).collect()),
    })
}
