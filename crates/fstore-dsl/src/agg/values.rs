//! Values: one non-null value of a language type ([`Scalar`]), and the
//! orders `min`, `max`, `first` and `last` keep values by.

use std::cmp::Ordering;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};

use super::encoding::put_scalar;
use crate::types::{DataType, ElementType};

/// One non-null value of a language type. Floats are finite when they come
/// from [`Scalar::from_array`]; a decoded state may hold any bit pattern.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Float32List(Vec<f32>),
    Float64List(Vec<f64>),
    Int64List(Vec<i64>),
    StringList(Vec<String>),
}

impl Scalar {
    /// The value at `row` of `array`, which carries values of `ty` (in the
    /// Arrow type [`DataType::arrow`] gives). `None` if the value is null, is
    /// a float that is not finite, is an array holding a null or non-finite
    /// element, if `row` is out of range, or if the array is not of `ty`.
    pub fn from_array(array: &dyn Array, row: usize, ty: DataType) -> Option<Scalar> {
        if row >= array.len() || array.is_null(row) {
            return None;
        }
        Some(match ty {
            DataType::Bool => Scalar::Bool(array.as_boolean_opt()?.value(row)),
            DataType::Int64 => Scalar::Int64(array.as_primitive_opt::<Int64Type>()?.value(row)),
            DataType::Float32 => Scalar::Float32(
                Some(array.as_primitive_opt::<Float32Type>()?.value(row)).filter(|v| v.is_finite())?,
            ),
            DataType::Float64 => Scalar::Float64(
                Some(array.as_primitive_opt::<Float64Type>()?.value(row)).filter(|v| v.is_finite())?,
            ),
            DataType::String => Scalar::String(array.as_string_opt::<i32>()?.value(row).to_owned()),
            DataType::Bytes => Scalar::Bytes(array.as_binary_opt::<i32>()?.value(row).to_vec()),
            DataType::Timestamp => {
                Scalar::Timestamp(array.as_primitive_opt::<TimestampMicrosecondType>()?.value(row))
            }
            DataType::Array(elem) => {
                let items = array.as_list_opt::<i32>()?.value(row);
                if items.null_count() > 0 {
                    return None;
                }
                match elem {
                    ElementType::Float32 => {
                        let values = items.as_primitive_opt::<Float32Type>()?.values();
                        if !values.iter().all(|v| v.is_finite()) {
                            return None;
                        }
                        Scalar::Float32List(values.to_vec())
                    }
                    ElementType::Float64 => {
                        let values = items.as_primitive_opt::<Float64Type>()?.values();
                        if !values.iter().all(|v| v.is_finite()) {
                            return None;
                        }
                        Scalar::Float64List(values.to_vec())
                    }
                    ElementType::Int64 => {
                        Scalar::Int64List(items.as_primitive_opt::<Int64Type>()?.values().to_vec())
                    }
                    ElementType::String => {
                        let strings = items.as_string_opt::<i32>()?;
                        Scalar::StringList((0..strings.len()).map(|i| strings.value(i).to_owned()).collect())
                    }
                }
            }
        })
    }

    /// The language type of the value.
    pub fn data_type(&self) -> DataType {
        match self {
            Scalar::Bool(_) => DataType::Bool,
            Scalar::Int64(_) => DataType::Int64,
            Scalar::Float32(_) => DataType::Float32,
            Scalar::Float64(_) => DataType::Float64,
            Scalar::String(_) => DataType::String,
            Scalar::Bytes(_) => DataType::Bytes,
            Scalar::Timestamp(_) => DataType::Timestamp,
            Scalar::Float32List(_) => DataType::Array(ElementType::Float32),
            Scalar::Float64List(_) => DataType::Array(ElementType::Float64),
            Scalar::Int64List(_) => DataType::Array(ElementType::Int64),
            Scalar::StringList(_) => DataType::Array(ElementType::String),
        }
    }
}

/// The order `min` and `max` use, between two values of one type: numbers and
/// timestamps by value (floats by IEEE total order, so −0.0 < +0.0 and the
/// result never depends on merge order), strings and bytes by their bytes,
/// false < true. `None` for values of different types and for arrays, which
/// have no order.
fn order(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Scalar::Int64(a), Scalar::Int64(b)) | (Scalar::Timestamp(a), Scalar::Timestamp(b)) => Some(a.cmp(b)),
        (Scalar::Float32(a), Scalar::Float32(b)) => Some(a.total_cmp(b)),
        (Scalar::Float64(a), Scalar::Float64(b)) => Some(a.total_cmp(b)),
        (Scalar::String(a), Scalar::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Scalar::Bytes(a), Scalar::Bytes(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Whether `candidate` replaces `current` as the `want` extreme (`Less` for
/// min, `Greater` for max). Values of another type never replace (a corrupt
/// slot keeps what it has).
pub(super) fn extreme_wins(candidate: &Scalar, current: &Scalar, want: Ordering) -> bool {
    order(candidate, current) == Some(want)
}

/// Whether the stamped `candidate` replaces `current` for `first` (`want` =
/// `Less`) or `last` (`Greater`): by (time, seq), and only when both are equal
/// (the same event seen twice, or corruption) by the values' encodings, so the
/// outcome never depends on merge order.
pub(super) fn stamped_wins(
    candidate: (i64, u64, &Scalar),
    current: (i64, u64, &Scalar),
    want: Ordering,
) -> bool {
    match (candidate.0, candidate.1).cmp(&(current.0, current.1)) {
        Ordering::Equal => tie_order(candidate.2, current.2) == want,
        o => o == want,
    }
}

/// An arbitrary but fixed total order on values, for exact ties only.
fn tie_order(a: &Scalar, b: &Scalar) -> Ordering {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    put_scalar(&mut x, a);
    put_scalar(&mut y, b);
    x.cmp(&y)
}

/// Add `v` to an exact integer sum; an overflow (of the i128, after some 2^64
/// maximal int64s) is sticky and zeroes the sum so equal states compare equal.
pub(super) fn add_int(sum: &mut i128, overflow: &mut bool, v: i128) {
    match sum.checked_add(v).filter(|_| !*overflow) {
        Some(s) => *sum = s,
        None => {
            *sum = 0;
            *overflow = true;
        }
    }
}
