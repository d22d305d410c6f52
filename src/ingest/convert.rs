//! Reading source columns as the types the definitions need.
//!
//! A Parquet writer picks its own physical types (int32 for small ints,
//! large strings, dictionary encoding, nanosecond timestamps with a zone,
//! float64 embeddings...). This module decides which source types are
//! compatible with each language type and converts whole columns, reporting
//! every value that does not fit (an unsigned value past int64, a float64
//! past float32's range, a timestamp out of range) so that its row is
//! rejected instead of silently coerced.
//!
//! Compatible types, by target:
//! - bool: boolean
//! - int64: any signed or unsigned integer (uint64 must fit)
//! - float32 / float64: any integer or float, decimal (float32 must fit)
//! - string: utf8, large utf8, utf8 view, dictionary of those
//! - bytes: binary of any kind, fixed-size binary, and any string type
//! - timestamp: timestamp of any unit and zone, date32/date64, and integers
//!   as epoch milliseconds
//! - array<T>: list, large list or fixed-size list of a type compatible with T

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType as ArrowType, Float64Type, TimeUnit};
use fstore_dsl::{DataType, ElementType};

/// A column whose type cannot hold the field's type at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    pub(crate) found: String,
    pub(crate) expected: DataType,
}

/// Whether a source column of Arrow type `found` can be read as `target`.
pub fn compatible(found: &ArrowType, target: DataType) -> bool {
    use ArrowType as A;
    match (target, found) {
        (_, A::Dictionary(_, value)) => compatible(value, target),
        (DataType::Bool, A::Boolean) => true,
        (DataType::Int64, t) => t.is_integer(),
        (DataType::Float32 | DataType::Float64, t) => {
            t.is_integer()
                || t.is_floating()
                || matches!(t, A::Decimal32(..) | A::Decimal64(..) | A::Decimal128(..) | A::Decimal256(..))
        }
        (DataType::String, A::Utf8 | A::LargeUtf8 | A::Utf8View) => true,
        (DataType::Bytes, A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_)) => true,
        (DataType::Bytes, A::Utf8 | A::LargeUtf8 | A::Utf8View) => true,
        (DataType::Timestamp, A::Timestamp(..) | A::Date32 | A::Date64) => true,
        (DataType::Timestamp, t) => t.is_integer(),
        (DataType::Array(elem), A::List(f) | A::LargeList(f) | A::FixedSizeList(f, _)) => {
            compatible(f.data_type(), elem.as_data_type())
        }
        _ => false,
    }
}

/// Convert `array` to `target`'s Arrow type. Values that do not fit become
/// null in the result and are listed as `(row, reason)`.
pub fn convert(array: &ArrayRef, target: DataType) -> Result<(ArrayRef, Vec<(usize, String)>), Incompatible> {
    let found = array.data_type();
    if !compatible(found, target) {
        return Err(Incompatible { found: found.to_string(), expected: target });
    }
    let mut misfits = Vec::new();
    if found == &target.arrow() {
        return Ok((array.clone(), misfits));
    }
    // Integers in a timestamp field are epoch milliseconds: reinterpret them
    // as millisecond timestamps, then convert the unit like any timestamp.
    let source: ArrayRef = if target == DataType::Timestamp && found.is_integer() {
        let as_i64 = cast_checked(array, &ArrowType::Int64)?;
        cast_checked(&as_i64, &ArrowType::Timestamp(TimeUnit::Millisecond, None))?
    } else if let ArrowType::Timestamp(unit, Some(_)) = found {
        // The zone only says how to display the instant; values are UTC already.
        cast_checked(array, &ArrowType::Timestamp(*unit, None))?
    } else {
        array.clone()
    };
    let converted =
        cast_with_options(&source, &target.arrow(), &CastOptions { safe: true, ..Default::default() })
            .map_err(|_| Incompatible { found: found.to_string(), expected: target })?;
    // A safe cast turns a value that does not fit into null: find those rows.
    for row in 0..array.len() {
        if array.is_valid(row) && converted.is_null(row) {
            misfits.push((row, format!("value does not fit {target}")));
        }
    }
    // Casting float64 to float32 saturates to infinity instead of failing.
    if matches!(target, DataType::Float32 | DataType::Array(ElementType::Float32)) {
        narrowing_misfits(&source, &converted, target, &mut misfits);
    }
    if misfits.is_empty() {
        return Ok((converted, misfits));
    }
    misfits.sort();
    misfits.dedup_by_key(|(row, _)| *row);
    // Null out the misfit rows so nothing downstream reads a coerced value.
    let keep = arrow::array::BooleanArray::from_iter(
        (0..converted.len()).map(|row| Some(misfits.binary_search_by_key(&row, |(r, _)| *r).is_err())),
    );
    let nulled = arrow::compute::nullif(
        &converted,
        &arrow::compute::not(&keep)
            .map_err(|_| Incompatible { found: found.to_string(), expected: target })?,
    )
    .map_err(|_| Incompatible { found: found.to_string(), expected: target })?;
    Ok((nulled, misfits))
}

fn cast_checked(array: &ArrayRef, to: &ArrowType) -> Result<ArrayRef, Incompatible> {
    cast_with_options(array, to, &CastOptions { safe: true, ..Default::default() })
        .map_err(|_| Incompatible { found: array.data_type().to_string(), expected: DataType::Timestamp })
}

/// Rows where a finite float64 became an infinite float32.
fn narrowing_misfits(
    source: &ArrayRef,
    converted: &ArrayRef,
    target: DataType,
    out: &mut Vec<(usize, String)>,
) {
    let too_big = |x: f64| x.is_finite() && x.abs() > f32::MAX as f64;
    match target {
        DataType::Float32 => {
            if let Ok(as_f64) = cast_with_options(source, &ArrowType::Float64, &CastOptions::default()) {
                let values = as_f64.as_primitive::<Float64Type>();
                for row in 0..values.len() {
                    if values.is_valid(row) && too_big(values.value(row)) {
                        out.push((row, format!("value {} does not fit float32", values.value(row))));
                    }
                }
            }
        }
        DataType::Array(ElementType::Float32) => {
            let element_f64 =
                ArrowType::List(Arc::new(arrow::datatypes::Field::new("item", ArrowType::Float64, true)));
            let Ok(as_f64) = cast_with_options(source, &element_f64, &CastOptions::default()) else { return };
            let lists = as_f64.as_list::<i32>();
            for row in 0..lists.len() {
                if lists.is_valid(row) && converted.is_valid(row) {
                    let items = lists.value(row);
                    let items = items.as_primitive::<Float64Type>();
                    if let Some(i) = (0..items.len()).find(|&i| items.is_valid(i) && too_big(items.value(i)))
                    {
                        out.push((
                            row,
                            format!("array element {i} ({}) does not fit float32", items.value(i)),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Float32Array, Float64Array, Int32Array, Int64Array, ListArray, StringArray, StringDictionaryBuilder,
        TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array,
    };
    use arrow::datatypes::{Float32Type, Int32Type};

    use super::*;

    #[test]
    fn widening_conversions_keep_values() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(-7)]));
        let (c, bad) = convert(&a, DataType::Int64).unwrap();
        assert!(bad.is_empty());
        assert_eq!(
            c.as_primitive::<arrow::datatypes::Int64Type>(),
            &Int64Array::from(vec![Some(1), None, Some(-7)])
        );
        let (c, _) = convert(&a, DataType::Float64).unwrap();
        assert_eq!(c.as_primitive::<Float64Type>(), &Float64Array::from(vec![Some(1.0), None, Some(-7.0)]));
    }

    #[test]
    fn unsigned_overflow_is_a_misfit_not_a_wrap() {
        let a: ArrayRef = Arc::new(UInt64Array::from(vec![5, u64::MAX]));
        let (c, bad) = convert(&a, DataType::Int64).unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 1);
        assert!(c.is_null(1) && c.is_valid(0));
    }

    #[test]
    fn float64_past_float32_is_a_misfit() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![1.5, 1e300]));
        let (c, bad) = convert(&a, DataType::Float32).unwrap();
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(c.as_primitive::<Float32Type>().value(0), 1.5);
        assert!(c.is_null(1));

        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(1e300)]),
        ]));
        let (c, bad) = convert(&lists, DataType::Array(ElementType::Float32)).unwrap();
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1]);
        assert!(c.is_valid(0) && c.is_null(1));
    }

    #[test]
    fn timestamps_from_any_unit_zone_or_epoch_millis() {
        let nanos: ArrayRef = Arc::new(
            TimestampNanosecondArray::from(vec![1_500_000_000_123_456_789]).with_timezone("Europe/Paris"),
        );
        let (c, _) = convert(&nanos, DataType::Timestamp).unwrap();
        assert_eq!(
            c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(0),
            1_500_000_000_123_456
        );
        let millis: ArrayRef = Arc::new(Int64Array::from(vec![1_700_000_000_000]));
        let (c, _) = convert(&millis, DataType::Timestamp).unwrap();
        assert_eq!(c.as_ref(), &TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]) as &dyn Array);
    }

    #[test]
    fn dictionary_strings_and_incompatible_types() {
        let mut b = StringDictionaryBuilder::<Int32Type>::new();
        b.append_value("fr");
        b.append_null();
        let dict: ArrayRef = Arc::new(b.finish());
        let (c, _) = convert(&dict, DataType::String).unwrap();
        assert_eq!(c.as_string::<i32>(), &StringArray::from(vec![Some("fr"), None]));

        let strings: ArrayRef = Arc::new(StringArray::from(vec!["12"]));
        let err = convert(&strings, DataType::Int64).unwrap_err();
        assert_eq!(err.expected, DataType::Int64);
        assert_eq!(err.found, "Utf8");
        let floats: ArrayRef = Arc::new(Float32Array::from(vec![1.0]));
        assert!(convert(&floats, DataType::Int64).is_err(), "float to int would truncate silently");
    }
}
