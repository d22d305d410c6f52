//! The compact typed encoding of one stored row of a row view.
//!
//! ```text
//! version (1 byte, = 1) | event time (i64 LE, epoch micros) | null bitmap | values
//! ```
//!
//! The null bitmap has one bit per feature (bit i of byte i/8 set = null);
//! values follow for the non-null features only, in declaration order:
//! bool 1 byte; int64 and timestamp zigzag varint; float32 4 / float64 8 bytes
//! LE; string and bytes varint length + bytes; arrays varint count + elements.
//! Types are not stored: they come from the view's definition, and the view's
//! fingerprint in the key guarantees the definition that wrote a value is the
//! one that reads it. The event time sits at a fixed offset so the
//! newest-wins merge operator compares rows without decoding them.
//!
//! Decoding never trusts the bytes: a truncated or corrupt value is an error,
//! never a panic.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array, Int64Array, ListArray,
    StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use fstore_dsl::varint::{self, put_i64 as put_varint_i64, put_u64 as put_varint_u64, VarintError};
use fstore_dsl::{DataType, ElementType};

use crate::proto::{self, value::Kind};

pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the null bitmap.
pub const HEADER_LEN: usize = 9;

/// The event time of an encoded row, if the bytes are long enough to hold one.
pub fn event_time_of(encoded: &[u8]) -> Option<i64> {
    let raw: [u8; 8] = encoded.get(1..HEADER_LEN)?.try_into().ok()?;
    Some(i64::from_le_bytes(raw))
}

/// A feature column of an evaluated batch, downcast once per batch.
pub enum ColumnRef<'a> {
    Bool(&'a BooleanArray),
    Int64(&'a Int64Array),
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    String(&'a StringArray),
    Bytes(&'a BinaryArray),
    Timestamp(&'a TimestampMicrosecondArray),
    List(&'a ListArray, ElementType),
}

/// Why a value cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The evaluator handed over a column of another Arrow type.
    #[error("column of Arrow type {arrow} where {expected} was expected")]
    ColumnType { arrow: String, expected: DataType },
    /// Arrays may not hold nulls; the row is rejected.
    #[error("array element {index} is null; arrays may not hold nulls")]
    NullElement { index: usize },
}

impl<'a> ColumnRef<'a> {
    /// Downcast `array`, which must have the Arrow type of `ty` (the evaluator
    /// guarantees it); a mismatch is reported, not panicked on.
    pub fn new(array: &'a ArrayRef, ty: DataType) -> Result<Self, EncodeError> {
        let mismatch = || EncodeError::ColumnType { arrow: array.data_type().to_string(), expected: ty };
        let a = array.as_any();
        Ok(match ty {
            DataType::Bool => ColumnRef::Bool(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::Int64 => ColumnRef::Int64(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::Float32 => ColumnRef::Float32(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::Float64 => ColumnRef::Float64(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::String => ColumnRef::String(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::Bytes => ColumnRef::Bytes(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::Timestamp => ColumnRef::Timestamp(a.downcast_ref().ok_or_else(mismatch)?),
            DataType::Array(elem) => ColumnRef::List(a.downcast_ref().ok_or_else(mismatch)?, elem),
        })
    }

    fn array(&self) -> &dyn Array {
        match self {
            ColumnRef::Bool(a) => *a,
            ColumnRef::Int64(a) => *a,
            ColumnRef::Float32(a) => *a,
            ColumnRef::Float64(a) => *a,
            ColumnRef::String(a) => *a,
            ColumnRef::Bytes(a) => *a,
            ColumnRef::Timestamp(a) => *a,
            ColumnRef::List(a, _) => *a,
        }
    }

    pub fn is_null(&self, row: usize) -> bool {
        self.array().is_null(row)
    }

    /// Append the value at `row` (not null). Fails for an array holding a null
    /// element: arrays may not contain nulls, so such a row is rejected.
    fn encode(&self, row: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self {
            ColumnRef::Bool(a) => out.push(a.value(row) as u8),
            ColumnRef::Int64(a) => put_varint_i64(out, a.value(row)),
            ColumnRef::Float32(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnRef::Float64(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            ColumnRef::String(a) => put_bytes(out, a.value(row).as_bytes()),
            ColumnRef::Bytes(a) => put_bytes(out, a.value(row)),
            ColumnRef::Timestamp(a) => put_varint_i64(out, a.value(row)),
            ColumnRef::List(a, elem) => {
                let items = a.value(row);
                if items.null_count() > 0 {
                    let at = (0..items.len()).find(|&i| items.is_null(i)).unwrap_or(0);
                    return Err(EncodeError::NullElement { index: at });
                }
                put_varint_u64(out, items.len() as u64);
                match elem {
                    ElementType::Float32 => {
                        for v in items.as_primitive::<Float32Type>().values() {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    ElementType::Float64 => {
                        for v in items.as_primitive::<Float64Type>().values() {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    ElementType::Int64 => {
                        for v in items.as_primitive::<Int64Type>().values() {
                            put_varint_i64(out, *v);
                        }
                    }
                    ElementType::String => {
                        let strings = items.as_string::<i32>();
                        for i in 0..strings.len() {
                            put_bytes(out, strings.value(i).as_bytes());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Encode row `row` of `columns` with its event time into `out` (cleared first).
pub fn encode_row(
    event_time: i64,
    columns: &[ColumnRef<'_>],
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&event_time.to_le_bytes());
    let bitmap_at = out.len();
    out.resize(bitmap_at + columns.len().div_ceil(8), 0);
    for (i, column) in columns.iter().enumerate() {
        if column.is_null(row) {
            out[bitmap_at + i / 8] |= 1 << (i % 8);
        } else {
            column.encode(row, out)?;
        }
    }
    Ok(())
}

/// A decoded row: its event time and one proto value per feature (no kind = null).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedRow {
    pub(crate) event_time: i64,
    pub(crate) values: Vec<proto::Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stored row is corrupt: {0}")]
pub struct CorruptRow(pub(crate) &'static str);

/// Whether `kind` is a value of `ty`.
pub(crate) fn kind_fits(kind: &Kind, ty: DataType) -> bool {
    matches!(
        (kind, ty),
        (Kind::BoolValue(_), DataType::Bool)
            | (Kind::Int64Value(_), DataType::Int64)
            | (Kind::Float32Value(_), DataType::Float32)
            | (Kind::Float64Value(_), DataType::Float64)
            | (Kind::StringValue(_), DataType::String)
            | (Kind::BytesValue(_), DataType::Bytes)
            | (Kind::TimestampMicros(_), DataType::Timestamp)
            | (Kind::Float32List(_), DataType::Array(ElementType::Float32))
            | (Kind::Float64List(_), DataType::Array(ElementType::Float64))
            | (Kind::Int64List(_), DataType::Array(ElementType::Int64))
            | (Kind::StringList(_), DataType::Array(ElementType::String))
    )
}

/// Decode a row written by [`encode_row`] for features of `types`.
pub fn decode_row(bytes: &[u8], types: &[DataType]) -> Result<DecodedRow, CorruptRow> {
    let mut r = Reader { bytes, pos: 0 };
    if r.byte()? != FORMAT_VERSION {
        return Err(CorruptRow("unknown format version"));
    }
    let event_time = i64::from_le_bytes(r.take(8)?.try_into().map_err(|_| CorruptRow("header"))?);
    let bitmap = r.take(types.len().div_ceil(8))?;
    let mut values = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let kind = if bitmap[i / 8] & (1 << (i % 8)) != 0 { None } else { Some(r.value(*ty)?) };
        values.push(proto::Value { kind });
    }
    if r.pos != bytes.len() {
        return Err(CorruptRow("trailing bytes"));
    }
    Ok(DecodedRow { event_time, values })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptRow> {
        let end = self.pos.checked_add(n).ok_or(CorruptRow("length overflow"))?;
        let out = self.bytes.get(self.pos..end).ok_or(CorruptRow("truncated"))?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, CorruptRow> {
        Ok(self.take(1)?[0])
    }

    fn varint_u64(&mut self) -> Result<u64, CorruptRow> {
        varint::read_u64(self.bytes, &mut self.pos).map_err(corrupt)
    }

    fn varint_i64(&mut self) -> Result<i64, CorruptRow> {
        varint::read_i64(self.bytes, &mut self.pos).map_err(corrupt)
    }

    fn len(&mut self) -> Result<usize, CorruptRow> {
        let n = self.varint_u64()?;
        // A length can never exceed the bytes left; checking here keeps a
        // corrupt length from asking for a huge allocation.
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.pos)
            .ok_or(CorruptRow("length past the end"))
    }

    fn f32(&mut self) -> Result<f32, CorruptRow> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().map_err(|_| CorruptRow("f32"))?))
    }

    fn f64(&mut self) -> Result<f64, CorruptRow> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().map_err(|_| CorruptRow("f64"))?))
    }

    fn string(&mut self) -> Result<String, CorruptRow> {
        let n = self.len()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CorruptRow("invalid UTF-8"))
    }

    fn value(&mut self, ty: DataType) -> Result<Kind, CorruptRow> {
        Ok(match ty {
            DataType::Bool => Kind::BoolValue(self.byte()? != 0),
            DataType::Int64 => Kind::Int64Value(self.varint_i64()?),
            DataType::Float32 => Kind::Float32Value(self.f32()?),
            DataType::Float64 => Kind::Float64Value(self.f64()?),
            DataType::String => Kind::StringValue(self.string()?),
            DataType::Bytes => {
                let n = self.len()?;
                Kind::BytesValue(self.take(n)?.to_vec())
            }
            DataType::Timestamp => Kind::TimestampMicros(self.varint_i64()?),
            DataType::Array(elem) => {
                let n = self.len()?;
                match elem {
                    ElementType::Float32 => Kind::Float32List(proto::Float32List {
                        values: (0..n).map(|_| self.f32()).collect::<Result<_, _>>()?,
                    }),
                    ElementType::Float64 => Kind::Float64List(proto::Float64List {
                        values: (0..n).map(|_| self.f64()).collect::<Result<_, _>>()?,
                    }),
                    ElementType::Int64 => Kind::Int64List(proto::Int64List {
                        values: (0..n).map(|_| self.varint_i64()).collect::<Result<_, _>>()?,
                    }),
                    ElementType::String => Kind::StringList(proto::StringList {
                        values: (0..n).map(|_| self.string()).collect::<Result<_, _>>()?,
                    }),
                }
            }
        })
    }
}

fn corrupt(e: VarintError) -> CorruptRow {
    CorruptRow(match e {
        VarintError::Truncated => "truncated",
        VarintError::OutOfRange => "varint too long",
        VarintError::NotMinimal => "varint not minimal",
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ListBuilder, StringBuilder};
    use proptest::prelude::*;

    use super::*;

    /// A random non-null value of one type, as a proto value.
    pub(super) fn value(ty: DataType) -> BoxedStrategy<Kind> {
        match ty {
            DataType::Bool => any::<bool>().prop_map(Kind::BoolValue).boxed(),
            DataType::Int64 => any::<i64>().prop_map(Kind::Int64Value).boxed(),
            DataType::Float32 => {
                any::<f32>().prop_filter("finite", |x| x.is_finite()).prop_map(Kind::Float32Value).boxed()
            }
            DataType::Float64 => {
                any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(Kind::Float64Value).boxed()
            }
            DataType::String => ".{0,20}".prop_map(Kind::StringValue).boxed(),
            DataType::Bytes => {
                proptest::collection::vec(any::<u8>(), 0..20).prop_map(Kind::BytesValue).boxed()
            }
            DataType::Timestamp => any::<i64>().prop_map(Kind::TimestampMicros).boxed(),
            DataType::Array(ElementType::Float32) => proptest::collection::vec(-1e6f32..1e6, 0..9)
                .prop_map(|values| Kind::Float32List(proto::Float32List { values }))
                .boxed(),
            DataType::Array(ElementType::Float64) => proptest::collection::vec(-1e12f64..1e12, 0..9)
                .prop_map(|values| Kind::Float64List(proto::Float64List { values }))
                .boxed(),
            DataType::Array(ElementType::Int64) => proptest::collection::vec(any::<i64>(), 0..9)
                .prop_map(|values| Kind::Int64List(proto::Int64List { values }))
                .boxed(),
            DataType::Array(ElementType::String) => proptest::collection::vec(".{0,5}", 0..5)
                .prop_map(|values| Kind::StringList(proto::StringList { values }))
                .boxed(),
        }
    }

    /// One column of random values of one type, as proto values (None = null),
    /// and as the Arrow array the evaluator would hand to the encoder.
    fn column(ty: DataType, n: usize) -> BoxedStrategy<Vec<Option<Kind>>> {
        proptest::collection::vec(proptest::option::of(value(ty)), n).boxed()
    }

    /// The Arrow array of `ty` holding `values` (None = null).
    pub(super) fn to_arrow(ty: DataType, values: &[Option<Kind>]) -> ArrayRef {
        match ty {
            DataType::Bool => Arc::new(BooleanArray::from_iter(values.iter().map(|v| match v {
                Some(Kind::BoolValue(b)) => Some(*b),
                _ => None,
            }))),
            DataType::Int64 => Arc::new(Int64Array::from_iter(values.iter().map(|v| match v {
                Some(Kind::Int64Value(b)) => Some(*b),
                _ => None,
            }))),
            DataType::Float32 => Arc::new(Float32Array::from_iter(values.iter().map(|v| match v {
                Some(Kind::Float32Value(b)) => Some(*b),
                _ => None,
            }))),
            DataType::Float64 => Arc::new(Float64Array::from_iter(values.iter().map(|v| match v {
                Some(Kind::Float64Value(b)) => Some(*b),
                _ => None,
            }))),
            DataType::String => Arc::new(StringArray::from_iter(values.iter().map(|v| match v {
                Some(Kind::StringValue(b)) => Some(b.clone()),
                _ => None,
            }))),
            DataType::Bytes => Arc::new(BinaryArray::from_iter(values.iter().map(|v| match v {
                Some(Kind::BytesValue(b)) => Some(b.clone()),
                _ => None,
            }))),
            DataType::Timestamp => {
                Arc::new(TimestampMicrosecondArray::from_iter(values.iter().map(|v| match v {
                    Some(Kind::TimestampMicros(b)) => Some(*b),
                    _ => None,
                })))
            }
            DataType::Array(ElementType::Float32) => {
                Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(values.iter().map(
                    |v| match v {
                        Some(Kind::Float32List(l)) => {
                            Some(l.values.iter().map(|x| Some(*x)).collect::<Vec<_>>())
                        }
                        _ => None,
                    },
                )))
            }
            DataType::Array(ElementType::Float64) => {
                Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(values.iter().map(
                    |v| match v {
                        Some(Kind::Float64List(l)) => {
                            Some(l.values.iter().map(|x| Some(*x)).collect::<Vec<_>>())
                        }
                        _ => None,
                    },
                )))
            }
            DataType::Array(ElementType::Int64) => {
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(values.iter().map(|v| match v {
                    Some(Kind::Int64List(l)) => Some(l.values.iter().map(|x| Some(*x)).collect::<Vec<_>>()),
                    _ => None,
                })))
            }
            DataType::Array(ElementType::String) => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in values {
                    match v {
                        Some(Kind::StringList(l)) => {
                            for s in &l.values {
                                b.values().append_value(s);
                            }
                            b.append(true);
                        }
                        _ => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
        }
    }

    const TYPES: [DataType; 11] = DataType::ALL;

    fn rows() -> impl Strategy<Value = (Vec<DataType>, Vec<Vec<Option<Kind>>>, i64)> {
        (proptest::collection::vec(proptest::sample::select(TYPES.to_vec()), 1..12), 1usize..4, any::<i64>())
            .prop_flat_map(|(types, n, t)| {
                let columns: Vec<_> = types.iter().map(|ty| column(*ty, n)).collect();
                (Just(types), columns, Just(t))
            })
    }

    proptest! {
        #[test]
        fn rows_round_trip((types, columns, event_time) in rows()) {
            let arrays: Vec<ArrayRef> = types.iter().zip(&columns).map(|(t, c)| to_arrow(*t, c)).collect();
            let refs: Vec<ColumnRef> = arrays.iter().zip(&types).map(|(a, t)| ColumnRef::new(a, *t).unwrap()).collect();
            let mut buf = Vec::new();
            for row in 0..columns[0].len() {
                encode_row(event_time, &refs, row, &mut buf).unwrap();
                prop_assert_eq!(event_time_of(&buf), Some(event_time));
                let decoded = decode_row(&buf, &types).unwrap();
                prop_assert_eq!(decoded.event_time, event_time);
                let expected: Vec<proto::Value> = columns.iter().map(|c| proto::Value { kind: c[row].clone() }).collect();
                prop_assert_eq!(decoded.values, expected);
            }
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                                         types in proptest::collection::vec(proptest::sample::select(TYPES.to_vec()), 0..6)) {
            let _ = decode_row(&bytes, &types);
        }
    }

    #[test]
    fn truncated_rows_are_errors() {
        let array: ArrayRef = Arc::new(StringArray::from(vec![Some("hello")]));
        let refs = [ColumnRef::new(&array, DataType::String).unwrap()];
        let mut buf = Vec::new();
        encode_row(5, &refs, 0, &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(decode_row(&buf[..cut], &[DataType::String]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn null_array_elements_reject_the_row() {
        let array: ArrayRef =
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![Some(vec![Some(1.0), None])]));
        let refs = [ColumnRef::new(&array, DataType::Array(ElementType::Float32)).unwrap()];
        let err = encode_row(0, &refs, 0, &mut Vec::new()).unwrap_err();
        assert_eq!(err, EncodeError::NullElement { index: 1 });
        assert_eq!(err.to_string(), "array element 1 is null; arrays may not hold nulls");
    }
}

#[cfg(test)]
#[path = "codec_hostile_tests.rs"]
mod hostile_tests;
