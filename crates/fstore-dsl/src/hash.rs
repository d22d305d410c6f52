//! The platform-stable hash behind `hash_bucket(x, n)`.
//!
//! `hash_bucket(x, n)` is `canonical_hash(x) % n`, where `canonical_hash` is
//! XXH64 with seed 0 over the value's *canonical bytes*, read as an unsigned
//! 64-bit integer. The canonical bytes of a value are:
//!
//! | type | canonical bytes |
//! |---|---|
//! | `bool` | 1 byte: `0x00` for false, `0x01` for true |
//! | `int64` | 8 bytes, little-endian two's complement |
//! | `timestamp` | its UTC epoch microseconds as an `int64` |
//! | `float32` | 4 bytes, little-endian IEEE-754 bits, -0.0 written as +0.0 |
//! | `float64` | 8 bytes, little-endian IEEE-754 bits, -0.0 written as +0.0 |
//! | `string` | its UTF-8 bytes |
//! | `bytes` | the bytes themselves |
//! | `array<T>` | the element count as 4 bytes (u32, little-endian), then per element `0x00` for a null, or `0x01` followed by the element's canonical bytes; a string element's bytes are preceded by their length as 4 bytes (u32, little-endian) |
//!
//! A null value has no hash, and neither does a float that is not finite
//! (fstore values are never NaN or infinite; inside an array such an element
//! counts as null). For example `hash_bucket("", n)` is `0xEF46DB3751D8E999 % n`
//! and `hash_bucket(1, n)` hashes the bytes `01 00 00 00 00 00 00 00`.
//!
//! This definition is a promise to users and to stored data: the same value
//! gives the same bucket on every platform and in every release. It must never
//! change, and it must never depend on the Arrow layout (offsets, slicing,
//! validity buffers) of the array a value happens to be in.

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, GenericListArray, PrimitiveArray, StringArray, UInt64Array,
};
use arrow::datatypes::{
    DataType as ArrowType, Float32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use xxhash_rust::xxh64::xxh64;

/// The seed of every canonical hash.
const SEED: u64 = 0;

/// The array holds values of a type the language does not have.
#[derive(Debug, thiserror::Error)]
#[error("no canonical bytes are defined for Arrow type {0}")]
pub struct UnsupportedType(pub ArrowType);

/// The canonical hash of `array[row]`, `None` for a null. Panics if `row` is
/// out of bounds, as indexing does.
pub fn canonical_hash(array: &dyn Array, row: usize) -> Result<Option<u64>, UnsupportedType> {
    let values = Values::of(array)?;
    let mut buffer = Vec::new();
    Ok(values.hash(row, &mut buffer))
}

/// The canonical hash of every row of `array`, null where the value is null.
pub fn hash_array(array: &dyn Array) -> Result<UInt64Array, UnsupportedType> {
    let values = Values::of(array)?;
    // Arrays are serialised into one buffer reused across rows.
    let mut buffer = Vec::new();
    Ok((0..array.len()).map(|row| values.hash(row, &mut buffer)).collect())
}

/// Append the canonical bytes of `array[row]` to `out`; `Ok(false)` (nothing
/// written) for a null.
pub fn write_canonical_bytes(
    array: &dyn Array,
    row: usize,
    out: &mut Vec<u8>,
) -> Result<bool, UnsupportedType> {
    Ok(Values::of(array)?.write(row, out, false))
}

/// An array downcast once to one of the language's types.
enum Values<'a> {
    Bool(&'a BooleanArray),
    Int64(&'a PrimitiveArray<Int64Type>),
    Timestamp(&'a PrimitiveArray<TimestampMicrosecondType>),
    Float32(&'a PrimitiveArray<Float32Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    String(&'a StringArray),
    Bytes(&'a BinaryArray),
    Array(&'a GenericListArray<i32>, Box<Values<'a>>),
}

impl<'a> Values<'a> {
    fn of(array: &'a dyn Array) -> Result<Values<'a>, UnsupportedType> {
        let unsupported = || UnsupportedType(array.data_type().clone());
        Ok(match array.data_type() {
            ArrowType::Boolean => Values::Bool(array.as_boolean()),
            ArrowType::Int64 => Values::Int64(array.as_primitive()),
            ArrowType::Timestamp(TimeUnit::Microsecond, _) => Values::Timestamp(array.as_primitive()),
            ArrowType::Float32 => Values::Float32(array.as_primitive()),
            ArrowType::Float64 => Values::Float64(array.as_primitive()),
            ArrowType::Utf8 => Values::String(array.as_string()),
            ArrowType::Binary => Values::Bytes(array.as_binary()),
            ArrowType::List(item) => {
                let list = array.as_list::<i32>();
                let elements = match item.data_type() {
                    ArrowType::Int64 | ArrowType::Float32 | ArrowType::Float64 | ArrowType::Utf8 => {
                        Values::of(list.values().as_ref())?
                    }
                    _ => return Err(unsupported()),
                };
                Values::Array(list, Box::new(elements))
            }
            _ => return Err(unsupported()),
        })
    }

    /// Hash of one row; fixed-width values skip the buffer.
    fn hash(&self, row: usize, buffer: &mut Vec<u8>) -> Option<u64> {
        match self {
            Values::Bool(a) => a.is_valid(row).then(|| xxh64(&[u8::from(a.value(row))], SEED)),
            Values::Int64(a) => a.is_valid(row).then(|| xxh64(&a.value(row).to_le_bytes(), SEED)),
            Values::Timestamp(a) => a.is_valid(row).then(|| xxh64(&a.value(row).to_le_bytes(), SEED)),
            Values::Float32(a) => f32_bytes(a, row).map(|b| xxh64(&b, SEED)),
            Values::Float64(a) => f64_bytes(a, row).map(|b| xxh64(&b, SEED)),
            Values::String(a) => a.is_valid(row).then(|| xxh64(a.value(row).as_bytes(), SEED)),
            Values::Bytes(a) => a.is_valid(row).then(|| xxh64(a.value(row), SEED)),
            Values::Array(..) => {
                buffer.clear();
                self.write(row, buffer, false).then(|| xxh64(buffer, SEED))
            }
        }
    }

    /// Append the canonical bytes of `row`; false (nothing written) for a
    /// null. `in_array` adds the length prefix strings carry inside arrays.
    fn write(&self, row: usize, out: &mut Vec<u8>, in_array: bool) -> bool {
        match self {
            Values::Bool(a) if a.is_valid(row) => out.push(u8::from(a.value(row))),
            Values::Int64(a) if a.is_valid(row) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::Timestamp(a) if a.is_valid(row) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Values::Float32(a) => match f32_bytes(a, row) {
                Some(b) => out.extend_from_slice(&b),
                None => return false,
            },
            Values::Float64(a) => match f64_bytes(a, row) {
                Some(b) => out.extend_from_slice(&b),
                None => return false,
            },
            Values::String(a) if a.is_valid(row) => {
                let bytes = a.value(row).as_bytes();
                if in_array {
                    // A Utf8 value is shorter than 2^31 bytes.
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                }
                out.extend_from_slice(bytes);
            }
            Values::Bytes(a) if a.is_valid(row) => out.extend_from_slice(a.value(row)),
            Values::Array(list, elements) if list.is_valid(row) => {
                let offsets = list.value_offsets();
                // Offsets of an i32 list are non-negative and ascending.
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                out.extend_from_slice(&((end - start) as u32).to_le_bytes());
                for element in start..end {
                    // The marker goes first; a null element rewrites it.
                    let marker = out.len();
                    out.push(0x01);
                    if !elements.write(element, out, true) {
                        out[marker] = 0x00;
                    }
                }
            }
            _ => return false,
        }
        true
    }
}

fn f32_bytes(a: &PrimitiveArray<Float32Type>, row: usize) -> Option<[u8; 4]> {
    let v = a.value(row);
    // `v + 0.0` turns -0.0 into +0.0 and leaves every other value alone.
    (a.is_valid(row) && v.is_finite()).then(|| (v + 0.0).to_bits().to_le_bytes())
}

fn f64_bytes(a: &PrimitiveArray<Float64Type>, row: usize) -> Option<[u8; 8]> {
    let v = a.value(row);
    (a.is_valid(row) && v.is_finite()).then(|| (v + 0.0).to_bits().to_le_bytes())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Float32Array, Float64Array, Int64Array, ListArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Int64Type};

    use super::*;

    fn hash_of(array: ArrayRef) -> Vec<Option<u64>> {
        hash_array(array.as_ref()).unwrap().iter().collect()
    }

    /// Reference values of XXH64 itself, from the xxHash project's test
    /// suite (seed 0).
    #[test]
    fn xxh64_reference_values() {
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    // The expected hashes below were computed independently with the Python
    // `xxhash` package (4.1.0), building the canonical bytes by hand:
    //
    //     import struct, xxhash
    //     h = lambda b: xxhash.xxh64_intdigest(b, seed=0)
    //     i64 = lambda v: struct.pack('<q', v)
    //     f32 = lambda v: struct.pack('<f', v + 0.0)   # + 0.0: -0.0 -> 0.0
    //     f64 = lambda v: struct.pack('<d', v + 0.0)
    //     s_el = lambda s: struct.pack('<I', len(s.encode())) + s.encode()
    //     def arr(elems, enc):
    //         out = struct.pack('<I', len(elems))
    //         for e in elems:
    //             out += b'\x00' if e is None else b'\x01' + enc(e)
    //         return out
    //     h(b'\x01'), h(i64(-1)), h(f32(1.5)), h('héllo ß'.encode()),
    //     h(arr([1, None, 3], i64)), h(arr(['a', None, ''], s_el)), ...

    #[test]
    fn bool_vectors() {
        let a: ArrayRef = Arc::new(BooleanArray::from(vec![Some(false), Some(true), None]));
        assert_eq!(hash_of(a), [Some(0xe934a84adb052768), Some(0x8a4127811b21e730), None]);
    }

    #[test]
    fn int64_vectors() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(0),
            Some(1),
            Some(-1),
            Some(i64::MIN),
            Some(1_234_567_890_123),
            None,
        ]));
        assert_eq!(
            hash_of(a),
            [
                Some(0x34c96acdcadb1bbb),
                Some(0x9f29cb17a2a49995),
                Some(0x85d136adb773c6c9),
                Some(0x3f425eacf01544e0),
                Some(0xd9d5580c14aa025d),
                None
            ]
        );
    }

    #[test]
    fn timestamp_vectors() {
        let a: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000), Some(-1), None]));
        assert_eq!(hash_of(a), [Some(0x813ce5e981eaa80d), Some(0x85d136adb773c6c9), None]);
    }

    #[test]
    fn float32_vectors() {
        let a: ArrayRef = Arc::new(Float32Array::from(vec![
            Some(1.5),
            Some(0.0),
            Some(-0.0),
            Some(0.1),
            Some(f32::NAN),
            Some(f32::INFINITY),
            None,
        ]));
        assert_eq!(
            hash_of(a),
            [
                Some(0x4f2d82595c483a0d),
                Some(0x3aefa6fd5cf2deb4),
                Some(0x3aefa6fd5cf2deb4),
                Some(0x9c64007f4c539817),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn float64_vectors() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.5),
            Some(0.0),
            Some(-0.0),
            Some(0.1),
            Some(f64::NAN),
            Some(f64::NEG_INFINITY),
            None,
        ]));
        assert_eq!(
            hash_of(a),
            [
                Some(0x49f7b96b6b5ccaf9),
                Some(0x34c96acdcadb1bbb),
                Some(0x34c96acdcadb1bbb),
                Some(0x30402b1ba8ba63d2),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn string_and_bytes_vectors() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some(""), Some("fstore"), Some("héllo ß"), None]));
        assert_eq!(
            hash_of(a),
            [Some(0xef46db3751d8e999), Some(0xdb03c2c2f8f19740), Some(0x2cd528c3031f9378), None]
        );
        let b: ArrayRef =
            Arc::new(BinaryArray::from(vec![Some(&[0x00u8, 0xff][..]), Some(&b"fstore"[..]), None]));
        assert_eq!(hash_of(b), [Some(0xe0d97d9a03131d7d), Some(0xdb03c2c2f8f19740), None]);
    }

    fn list_of(item: ArrowType, values: ArrayRef, offsets: &[i32], valid: &[bool]) -> ArrayRef {
        Arc::new(ListArray::new(
            Arc::new(Field::new("item", item, true)),
            arrow::buffer::OffsetBuffer::new(offsets.to_vec().into()),
            values,
            Some(valid.to_vec().into()),
        ))
    }

    #[test]
    fn array_vectors() {
        let ints = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            Some(vec![]),
            None,
        ]);
        assert_eq!(hash_of(Arc::new(ints)), [Some(0x4684639f5c08dbb2), Some(0x3aefa6fd5cf2deb4), None]);

        let strings = list_of(
            ArrowType::Utf8,
            Arc::new(StringArray::from(vec![Some("a"), None, Some("")])),
            &[0, 3],
            &[true],
        );
        assert_eq!(hash_of(strings), [Some(0xedff0083f6507b08)]);

        let floats32 =
            list_of(ArrowType::Float32, Arc::new(Float32Array::from(vec![1.5, -0.0])), &[0, 2], &[true]);
        assert_eq!(hash_of(floats32), [Some(0x565e3be7eb52c0e9)]);

        // A NaN element hashes as a null element.
        let floats64 = list_of(
            ArrowType::Float64,
            Arc::new(Float64Array::from(vec![Some(0.1), None, Some(0.1), Some(f64::NAN)])),
            &[0, 2, 4],
            &[true, true],
        );
        assert_eq!(hash_of(floats64), [Some(0x7e335f9452489287), Some(0x7e335f9452489287)]);
    }

    #[test]
    fn slicing_does_not_change_hashes() {
        let ints = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(7)]),
            Some(vec![Some(1), None, Some(3)]),
        ]);
        let sliced = ints.slice(1, 1);
        assert_eq!(hash_of(Arc::new(sliced)), [Some(0x4684639f5c08dbb2)]);
        let strings = StringArray::from(vec!["x", "fstore"]).slice(1, 1);
        assert_eq!(canonical_hash(&strings, 0).unwrap(), Some(0xdb03c2c2f8f19740));
    }

    #[test]
    fn row_and_bytes_agree_with_vectorised() {
        let a = StringArray::from(vec![Some("héllo ß"), None]);
        assert_eq!(canonical_hash(&a, 0).unwrap(), Some(0x2cd528c3031f9378));
        assert_eq!(canonical_hash(&a, 1).unwrap(), None);
        let mut bytes = Vec::new();
        assert!(write_canonical_bytes(&Int64Array::from(vec![1]), 0, &mut bytes).unwrap());
        assert_eq!(bytes, [1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!write_canonical_bytes(&a, 1, &mut bytes).unwrap());
    }

    #[test]
    fn unsupported_types_are_errors() {
        let a = arrow::array::Int32Array::from(vec![1]);
        assert!(hash_array(&a).is_err());
        assert!(canonical_hash(&a, 0).is_err());
    }
}
