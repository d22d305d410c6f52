//! Decoding JSON stream messages into a typed Arrow batch.
//!
//! Each message must be one JSON object. Every field a view reads is taken
//! from it and read as the type the definitions need; a field that is absent
//! or JSON `null` is null. The batch then goes through exactly the same
//! evaluation as a Parquet batch, so a feature means the same whichever way
//! its events arrive.
//!
//! How JSON values are read, by target type (anything else does not fit):
//! - bool: `true` / `false`.
//! - int64: an integer, or a number with no fractional part, within int64.
//! - float64: any number; float32: any number within float32's range.
//! - string: a string. Numbers are not turned into strings.
//! - bytes: a string, as its UTF-8 bytes.
//! - timestamp: a number of epoch milliseconds (fractions allowed), or an
//!   RFC 3339 string such as `2026-11-21T10:00:00Z` or with an offset.
//! - `array<T>`: an array whose elements are all read as T; a null element
//!   does not fit (as for Parquet).
//!
//! A message is bad, and left out of the batch, when it is not a JSON object
//! ([`BadReason::NotJson`]), lacks an entity key ([`BadReason::MissingKey`]),
//! lacks its event time ([`BadReason::NoEventTime`]) or has a value that does
//! not fit ([`BadReason::BadValue`]). The reason text names the field.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema};
use fstore_dsl::plan::Source;
use fstore_dsl::{DataType, ElementType};
use serde_json::Value;

/// Why a message was left out, for counting per source and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadReason {
    NotJson,
    MissingKey,
    NoEventTime,
    BadValue,
}

impl BadReason {
    pub const ALL: [BadReason; 4] =
        [BadReason::NotJson, BadReason::MissingKey, BadReason::NoEventTime, BadReason::BadValue];

    /// The label used in metrics, status and the dead-letter header.
    pub fn name(self) -> &'static str {
        match self {
            BadReason::NotJson => "not_json",
            BadReason::MissingKey => "missing_key",
            BadReason::NoEventTime => "no_event_time",
            BadReason::BadValue => "bad_value",
        }
    }
}

/// A message that could not be used, with what was wrong.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BadMessage {
    /// Index into the decoded messages.
    pub(crate) index: usize,
    pub(crate) reason: BadReason,
    pub(crate) detail: String,
}

/// The good messages as one batch, and the bad ones.
pub(crate) struct Decoded {
    /// One column per source field (named as the field), rows in message order.
    pub(crate) batch: RecordBatch,
    /// The event time of each row (never null).
    pub(crate) event_times: TimestampMicrosecondArray,
    /// For each batch row, the index of the message it came from.
    pub(crate) rows: Vec<usize>,
    pub(crate) bad: Vec<BadMessage>,
}

/// One field's value read as its type.
#[derive(Debug, PartialEq)]
enum Cell {
    Null,
    /// A field read only for nullness: present and not null.
    Present,
    Bool(bool),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(String),
    Bytes(Vec<u8>),
    Ts(i64),
    ListF32(Vec<f32>),
    ListF64(Vec<f64>),
    ListInt(Vec<i64>),
    ListStr(Vec<String>),
}

/// Decode `payloads` (a `None` payload is an empty message) for `source`.
/// `key_fields` are the fields holding entity keys in any view of the source.
pub(crate) fn decode(payloads: &[Option<&[u8]>], source: &Source, key_fields: &BTreeSet<String>) -> Decoded {
    let fields: Vec<(&String, Option<DataType>)> = source.fields.iter().map(|(n, t)| (n, *t)).collect();
    let mut rows = Vec::with_capacity(payloads.len());
    let mut cells: Vec<Vec<Cell>> = Vec::with_capacity(payloads.len());
    let mut times = Vec::with_capacity(payloads.len());
    let mut bad = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        match decode_one(payload.unwrap_or(b""), source, &fields, key_fields) {
            Ok((row, time)) => {
                rows.push(index);
                cells.push(row);
                times.push(time);
            }
            Err((reason, detail)) => bad.push(BadMessage { index, reason, detail }),
        }
    }

    let mut schema = Vec::with_capacity(fields.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
    for (i, (name, ty)) in fields.iter().enumerate() {
        let column =
            build_column(*ty, cells.iter_mut().map(|row| std::mem::replace(&mut row[i], Cell::Null)));
        schema.push(Field::new(name.as_str(), column.data_type().clone(), true));
        columns.push(column);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(schema)), columns)
        .expect("every column is built with one value per good message");
    let event_times = TimestampMicrosecondArray::from(times).with_timezone("UTC");
    Decoded { batch, event_times, rows, bad }
}

type Failure = (BadReason, String);

fn decode_one(
    payload: &[u8],
    source: &Source,
    fields: &[(&String, Option<DataType>)],
    key_fields: &BTreeSet<String>,
) -> Result<(Vec<Cell>, i64), Failure> {
    let object = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            return Err((BadReason::NotJson, format!("expected a JSON object, found {}", json_kind(&other))))
        }
        Err(e) => return Err((BadReason::NotJson, format!("not JSON: {e}"))),
    };
    let mut row = Vec::with_capacity(fields.len());
    let mut time = None;
    for (name, ty) in fields {
        let value = object.get(name.as_str()).filter(|v| !v.is_null());
        let cell = match (value, ty) {
            (None, _) => Cell::Null,
            (Some(_), None) => Cell::Present,
            (Some(v), Some(ty)) => read(v, *ty).map_err(|why| {
                let reason = if **name == source.timestamp_field {
                    BadReason::NoEventTime
                } else {
                    BadReason::BadValue
                };
                (reason, format!("field `{name}`: {why}"))
            })?,
        };
        if **name == source.timestamp_field {
            match cell {
                Cell::Ts(t) => time = Some(t),
                _ => {
                    return Err((
                        BadReason::NoEventTime,
                        format!("event time field `{name}` is missing or null"),
                    ))
                }
            }
        } else if matches!(cell, Cell::Null) && key_fields.contains(name.as_str()) {
            return Err((BadReason::MissingKey, format!("key field `{name}` is missing or null")));
        }
        row.push(cell);
    }
    let time = time.ok_or_else(|| {
        (BadReason::NoEventTime, format!("event time field `{}` is missing", source.timestamp_field))
    })?;
    Ok((row, time))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a JSON value does not fit its field's type.
#[derive(Debug, thiserror::Error)]
enum ValueError {
    /// `a string "abc" is not a valid int64` (long values shown cut).
    #[error("{kind} {shown} is not a valid {ty}")]
    Misfit { kind: &'static str, shown: String, ty: String },
    #[error("{0}; expected epoch milliseconds or an RFC 3339 string")]
    Timestamp(Box<ValueError>),
    #[error("element {0} is null; arrays may not hold nulls")]
    NullElement(usize),
    #[error("element {0}: {1}")]
    Element(usize, Box<ValueError>),
}

fn misfit(v: &Value, ty: impl std::fmt::Display) -> ValueError {
    let mut shown = v.to_string();
    if shown.len() > 40 {
        let mut cut = 37;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    ValueError::Misfit { kind: json_kind(v), shown, ty: ty.to_string() }
}

fn read(v: &Value, ty: DataType) -> Result<Cell, ValueError> {
    Ok(match ty {
        DataType::Bool => Cell::Bool(v.as_bool().ok_or_else(|| misfit(v, ty))?),
        DataType::Int64 => Cell::Int(int64(v).ok_or_else(|| misfit(v, ty))?),
        DataType::Float64 => Cell::F64(v.as_f64().ok_or_else(|| misfit(v, ty))?),
        DataType::Float32 => Cell::F32(float32(v).ok_or_else(|| misfit(v, ty))?),
        DataType::String => Cell::Str(v.as_str().ok_or_else(|| misfit(v, ty))?.to_string()),
        DataType::Bytes => Cell::Bytes(v.as_str().ok_or_else(|| misfit(v, ty))?.as_bytes().to_vec()),
        DataType::Timestamp => {
            Cell::Ts(timestamp(v).ok_or_else(|| ValueError::Timestamp(Box::new(misfit(v, "timestamp"))))?)
        }
        DataType::Array(elem) => {
            let items = v.as_array().ok_or_else(|| misfit(v, ty))?;
            let element = |i: usize, item: &Value| {
                if item.is_null() {
                    ValueError::NullElement(i)
                } else {
                    ValueError::Element(i, Box::new(misfit(item, elem.as_data_type())))
                }
            };
            macro_rules! list {
                ($variant:ident, $read:expr) => {
                    Cell::$variant(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, item)| $read(item).ok_or_else(|| element(i, item)))
                            .collect::<Result<_, _>>()?,
                    )
                };
            }
            match elem {
                ElementType::Float32 => list!(ListF32, float32),
                ElementType::Float64 => list!(ListF64, |x: &Value| x.as_f64()),
                ElementType::Int64 => list!(ListInt, int64),
                ElementType::String => list!(ListStr, |x: &Value| x.as_str().map(str::to_string)),
            }
        }
    })
}

fn int64(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    // 3.0 is an integer written as a float; 3.5 and 1e300 are not int64s.
    // Both bounds are exclusive: integers just past int64 (such as
    // -9223372036854775809) arrive here rounded to ±2^63, and must not
    // become i64::MIN. (i64::MIN itself is read exactly by `as_i64`.)
    let f = v.as_f64().filter(|f| f.fract() == 0.0)?;
    (f > -(2f64.powi(63)) && f < 2f64.powi(63)).then_some(f as i64)
}

fn float32(v: &Value) -> Option<f32> {
    let f = v.as_f64()?;
    (f.abs() <= f32::MAX as f64).then_some(f as f32)
}

/// Epoch milliseconds (a number) or RFC 3339 (a string), as epoch microseconds.
fn timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            if let Some(ms) = n.as_i64() {
                return ms.checked_mul(1000);
            }
            let micros = (n.as_f64()? * 1000.0).round();
            (micros.abs() < 9.2e18).then_some(micros as i64)
        }
        Value::String(s) => {
            let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
            Some(t.timestamp_micros())
        }
        _ => None,
    }
}

fn build_column(ty: Option<DataType>, cells: impl Iterator<Item = Cell>) -> ArrayRef {
    macro_rules! build {
        ($builder:expr, $($pat:pat => $val:expr),+) => {{
            let mut b = $builder;
            for cell in cells {
                match cell {
                    $($pat => b.append_value($val),)+
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }};
    }
    match ty {
        None => build!(BooleanBuilder::new(), Cell::Present => true),
        Some(DataType::Bool) => build!(BooleanBuilder::new(), Cell::Bool(v) => v),
        Some(DataType::Int64) => build!(Int64Builder::new(), Cell::Int(v) => v),
        Some(DataType::Float32) => build!(Float32Builder::new(), Cell::F32(v) => v),
        Some(DataType::Float64) => build!(Float64Builder::new(), Cell::F64(v) => v),
        Some(DataType::String) => build!(StringBuilder::new(), Cell::Str(v) => v),
        Some(DataType::Bytes) => build!(BinaryBuilder::new(), Cell::Bytes(v) => v),
        Some(DataType::Timestamp) => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for cell in cells {
                match cell {
                    Cell::Ts(v) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Some(DataType::Array(elem)) => {
            macro_rules! list {
                ($inner:expr, $variant:ident) => {{
                    let field = Field::new("item", elem.as_data_type().arrow(), true);
                    let mut b = ListBuilder::new($inner).with_field(Arc::new(field));
                    for cell in cells {
                        match cell {
                            Cell::$variant(items) => {
                                for item in items {
                                    b.values().append_value(item);
                                }
                                b.append(true);
                            }
                            _ => b.append(false),
                        }
                    }
                    Arc::new(b.finish())
                }};
            }
            match elem {
                ElementType::Float32 => list!(Float32Builder::new(), ListF32),
                ElementType::Float64 => list!(Float64Builder::new(), ListF64),
                ElementType::Int64 => list!(Int64Builder::new(), ListInt),
                ElementType::String => list!(StringBuilder::new(), ListStr),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float32Type, Int64Type};
    use std::collections::BTreeMap;

    fn source() -> Source {
        let mut fields = BTreeMap::new();
        fields.insert("uid".to_string(), Some(DataType::Int64));
        fields.insert("ts".to_string(), Some(DataType::Timestamp));
        fields.insert("price".to_string(), Some(DataType::Float64));
        fields.insert("item".to_string(), Some(DataType::String));
        fields.insert("emb".to_string(), Some(DataType::Array(ElementType::Float32)));
        fields.insert("tag".to_string(), None);
        Source {
            name: "clicks".into(),
            kind: fstore_dsl::plan::SourceKind::Kafka { topic: "clicks".into(), dead_letter_topic: None },
            timestamp_field: "ts".into(),
            fields,
        }
    }

    fn run(messages: &[&str]) -> Decoded {
        let payloads: Vec<Option<&[u8]>> = messages.iter().map(|m| Some(m.as_bytes())).collect();
        decode(&payloads, &source(), &BTreeSet::from(["uid".to_string()]))
    }

    #[test]
    fn good_messages_become_typed_rows() {
        let d = run(&[
            r#"{"uid": 7, "ts": 1700000000123, "price": 2, "item": "a", "emb": [1, 0.5], "tag": "x"}"#,
            r#"{"uid": 8.0, "ts": "2026-11-21T10:00:00.5+01:00", "extra": {"ignored": true}}"#,
        ]);
        assert!(d.bad.is_empty(), "{:?}", d.bad);
        assert_eq!(d.rows, vec![0, 1]);
        let b = &d.batch;
        let uid = b.column_by_name("uid").unwrap().as_primitive::<Int64Type>();
        assert_eq!((uid.value(0), uid.value(1)), (7, 8));
        assert_eq!(d.event_times.value(0), 1_700_000_000_123_000);
        assert_eq!(d.event_times.value(1), 1_795_251_600_500_000);
        let price = b.column_by_name("price").unwrap().as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(price.value(0), 2.0);
        assert!(price.is_null(1), "an absent field is null");
        let emb = b.column_by_name("emb").unwrap().as_list::<i32>();
        assert_eq!(emb.value(0).as_primitive::<Float32Type>().values(), &[1.0, 0.5]);
        let tag = b.column_by_name("tag").unwrap();
        assert!(tag.is_valid(0) && tag.is_null(1), "null-only fields keep their nullness");
    }

    #[test]
    fn bad_messages_are_named_and_left_out() {
        let d = run(&[
            r#"not json"#,
            r#"[1, 2]"#,
            r#"{"ts": 1}"#,
            r#"{"uid": null, "ts": 1}"#,
            r#"{"uid": 1}"#,
            r#"{"uid": 1, "ts": "yesterday"}"#,
            r#"{"uid": 1.5, "ts": 1}"#,
            r#"{"uid": 1, "ts": 1, "price": "12"}"#,
            r#"{"uid": 1, "ts": 1, "emb": [1, null]}"#,
            r#"{"uid": 1, "ts": 1, "emb": [1e300]}"#,
            r#"{"uid": 9, "ts": 1}"#,
        ]);
        let got: Vec<(usize, &str)> = d.bad.iter().map(|b| (b.index, b.reason.name())).collect();
        assert_eq!(
            got,
            vec![
                (0, "not_json"),
                (1, "not_json"),
                (2, "missing_key"),
                (3, "missing_key"),
                (4, "no_event_time"),
                (5, "no_event_time"),
                (6, "bad_value"),
                (7, "bad_value"),
                (8, "bad_value"),
                (9, "bad_value"),
            ]
        );
        assert_eq!(d.rows, vec![10], "the good message alongside is kept");
        assert!(d.bad[7].detail.contains("field `price`"), "{}", d.bad[7].detail);
        assert!(d.bad[7].detail.contains("\"12\""), "{}", d.bad[7].detail);
        assert!(d.bad[8].detail.contains("element 1 is null"), "{}", d.bad[8].detail);
        assert!(d.bad[5].detail.contains("RFC 3339"), "{}", d.bad[5].detail);
    }

    #[test]
    fn an_empty_batch_has_every_column() {
        let d = run(&[]);
        assert_eq!(d.batch.num_rows(), 0);
        assert_eq!(d.batch.num_columns(), 6);
    }
}

#[cfg(test)]
#[path = "json_hostile_tests.rs"]
mod hostile_tests;
