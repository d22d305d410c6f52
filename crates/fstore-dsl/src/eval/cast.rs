//! `x as T`: the conversions the language has, each with one exact meaning.
//!
//! | from → to | meaning |
//! |---|---|
//! | int64 → float64, float32 | nearest float (float32 is always finite: \|i64\| < 2^63) |
//! | int64 → string | decimal, `-` for negatives |
//! | int64 → bool | `x != 0` |
//! | int64 → timestamp | `x` epoch milliseconds; out of the microsecond range is null |
//! | float64, float32 → int64 | toward zero; not finite or out of the int64 range is null |
//! | float64 → float32 | nearest float32; too large for float32 (infinite) is null |
//! | float32 → float64 | exact |
//! | float64, float32 → string | shortest round-trip text, laid out as ECMAScript's `Number::toString` (below) |
//! | string → int64 | trimmed decimal integer (`+`/`-` sign allowed); anything else, or out of range, is null |
//! | string → float64 | trimmed decimal float (`1`, `-2.5`, `1e-3`, `.5`); anything else or a non-finite value (`inf`, `NaN`, `1e999`) is null |
//! | string → bytes | the UTF-8 bytes |
//! | bool → int64 | 0 / 1 |
//! | bool → string | `true` / `false` |
//! | timestamp → int64 | epoch milliseconds, rounded down (floor) |
//! | timestamp → string | RFC 3339 UTC `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`: the fraction only when the microseconds are not zero, then six digits; null outside years 0000–9999 |
//! | T → T | identity |
//!
//! "Trimmed" removes leading and trailing Unicode white space (`str::trim`).
//!
//! Float text: the digits are the shortest that read back as the same float
//! (of the source's width: `0.1` as float32 prints `0.1`), laid out like
//! ECMAScript's `Number.prototype.toString`: plain decimal when the decimal
//! exponent n (value = 0.d₁d₂… × 10ⁿ) satisfies -6 < n ≤ 21, else one digit,
//! optional fraction, `e`, sign and exponent. So `1.0` → `1`, `-2.5` → `-2.5`,
//! `1e21` → `1e+21`, `1e20` → `100000000000000000000`, `1e-7` → `1e-7`,
//! `0.000001` → `0.000001`, `-0.0` → `0`. A whole float prints like the
//! int64 of the same value, the text always parses back to the same float
//! (here and in JSON), and the layout is fixed by a published standard rather
//! than by a formatting library's choices.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{ArrowPrimitiveType, Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};

use super::time::write_rfc3339;
use super::{append_text, bools, finite, invariant, map1, map1_total, prim, strings, EvalError, Val};
use crate::types::DataType;

const MICROS_PER_MILLI: i64 = 1_000;

pub(super) fn cast(x: &Val, from: DataType, to: DataType) -> Result<Val, EvalError> {
    use DataType as T;
    match (from, to) {
        (from, to) if from == to => Ok(x.clone()),

        // For these arrow's cast kernel means exactly what the language does:
        // nearest float, `!= 0`, 0 / 1, the same UTF-8 bytes (no copy).
        (T::Int64, T::Float64 | T::Float32 | T::Bool)
        | (T::Float32, T::Float64)
        | (T::Bool, T::Int64)
        | (T::String, T::Bytes) => x.map(|a| Ok(arrow::compute::cast(a, &to.arrow())?)),

        (T::Int64, T::String) => to_text::<Int64Type>(x, |v, out| {
            let _ = write!(out, "{v}");
            true
        }),
        (T::Int64, T::Timestamp) => {
            map1::<Int64Type, TimestampMicrosecondType>(x, |millis| millis.checked_mul(MICROS_PER_MILLI))
        }

        (T::Float64, T::Int64) => map1::<Float64Type, Int64Type>(x, float_to_int),
        (T::Float32, T::Int64) => map1::<Float32Type, Int64Type>(x, |v| float_to_int(v.into())),
        (T::Float64, T::Float32) => map1::<Float64Type, Float32Type>(x, |v| finite(v as f32)),
        (T::Float64, T::String) => to_text::<Float64Type>(x, |v, out| {
            write_float(&format!("{v:e}"), out);
            true
        }),
        (T::Float32, T::String) => to_text::<Float32Type>(x, |v, out| {
            // f32's `{:e}` gives the shortest digits that round-trip as f32.
            write_float(&format!("{v:e}"), out);
            true
        }),

        (T::String, T::Int64) => {
            x.map(|a| Ok(Arc::new(parse_strings::<Int64Type>(a, |s| s.parse::<i64>().ok())?) as ArrayRef))
        }
        (T::String, T::Float64) => x.map(|a| {
            Ok(Arc::new(parse_strings::<Float64Type>(a, |s| s.parse::<f64>().ok().and_then(finite))?)
                as ArrayRef)
        }),

        (T::Bool, T::String) => x.map(|a| {
            let input = bools(a)?;
            let mut out = StringBuilder::with_capacity(input.len(), input.len() * 5);
            for v in input.iter() {
                match v {
                    Some(true) => append_text(&mut out, "true")?,
                    Some(false) => append_text(&mut out, "false")?,
                    None => out.append_null(),
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        }),

        (T::Timestamp, T::Int64) => {
            map1_total::<TimestampMicrosecondType, Int64Type>(x, |micros| micros.div_euclid(MICROS_PER_MILLI))
        }
        (T::Timestamp, T::String) => to_text::<TimestampMicrosecondType>(x, write_rfc3339),

        (from, to) => Err(invariant(format!("cast from {from} to {to}"))),
    }
}

/// Toward zero; null if not finite or outside the int64 range.
fn float_to_int(v: f64) -> Option<i64> {
    // -2^63 is an i64, 2^63 is not; both are exact as f64, and every f64 in
    // between truncates into range. NaN fails both comparisons.
    const LOW: f64 = -9_223_372_036_854_775_808.0;
    const HIGH: f64 = 9_223_372_036_854_775_808.0;
    (LOW..HIGH).contains(&v).then_some(v as i64)
}

/// Text of each non-null value, written by `write` into a reused buffer; a
/// `false` from `write` makes the row null.
fn to_text<T: ArrowPrimitiveType>(
    x: &Val,
    write: impl Fn(T::Native, &mut String) -> bool,
) -> Result<Val, EvalError> {
    x.map(|a| {
        let input = prim::<T>(a)?;
        let mut out = StringBuilder::with_capacity(input.len(), input.len() * 8);
        let mut buffer = String::new();
        for v in input.iter() {
            buffer.clear();
            match v {
                Some(v) if write(v, &mut buffer) => append_text(&mut out, &buffer)?,
                _ => out.append_null(),
            }
        }
        Ok(Arc::new(out.finish()) as ArrayRef)
    })
}

/// Parse each non-null string with surrounding white space removed; a `None`
/// from `parse` is a null.
fn parse_strings<O: ArrowPrimitiveType>(
    a: &ArrayRef,
    parse: impl Fn(&str) -> Option<O::Native>,
) -> Result<arrow::array::PrimitiveArray<O>, EvalError> {
    Ok(strings(a)?.iter().map(|s| s.and_then(|s| parse(s.trim()))).collect())
}

/// Lay out Rust's `{:e}` text of a finite float (`-1.2345e3`: the shortest
/// round-trip digits and a decimal exponent) as ECMAScript's
/// `Number::toString` would (see the module docs).
fn write_float(scientific: &str, out: &mut String) {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    // `{:e}` always writes an exponent that fits an i32; 0 is only a fallback.
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits.bytes().all(|d| d == b'0') {
        // Zero, positive or negative, prints as "0".
        out.push('0');
        return;
    }
    if negative {
        out.push('-');
    }
    // value = 0.digits × 10^n, in ECMAScript's terms.
    let k = digits.len() as i32;
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if n > 1 { '+' } else { '-' }, (n - 1).abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: f64) -> String {
        let mut out = String::new();
        write_float(&format!("{v:e}"), &mut out);
        out
    }

    fn text32(v: f32) -> String {
        let mut out = String::new();
        write_float(&format!("{v:e}"), &mut out);
        out
    }

    /// Expected strings are what `String(x)` gives in JavaScript (node 20).
    #[test]
    fn float_text_follows_ecmascript() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (1.5, "1.5"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (100.0, "100"),
            (123456.789, "123456.789"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (123e20, "1.23e+22"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-7"),
            (-1.25e-7, "-1.25e-7"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (9007199254740993.0, "9007199254740992"),
            (-9.223372036854776e18, "-9223372036854776000"),
        ];
        for (v, expected) in cases {
            assert_eq!(text(*v), *expected, "{v:e}");
        }
    }

    #[test]
    fn float32_text_uses_float32_digits() {
        assert_eq!(text32(0.1), "0.1");
        assert_eq!(text32(1.0 / 3.0), "0.33333334");
        assert_eq!(text32(16_777_216.0), "16777216");
        assert_eq!(text32(f32::MAX), "3.4028235e+38");
    }

    #[test]
    fn float_text_round_trips() {
        for bits in (0..2000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            let v = f64::from_bits(bits);
            if v.is_finite() {
                assert_eq!(text(v).parse::<f64>().ok(), Some(v + 0.0), "{v:e}");
            }
        }
    }

    #[test]
    fn float_to_int_edges() {
        assert_eq!(float_to_int(2.9), Some(2));
        assert_eq!(float_to_int(-2.9), Some(-2));
        assert_eq!(float_to_int(-9_223_372_036_854_775_808.0), Some(i64::MIN));
        assert_eq!(float_to_int(9_223_372_036_854_775_808.0), None);
        assert_eq!(float_to_int(9_223_372_036_854_774_784.0), Some(9_223_372_036_854_774_784));
        assert_eq!(float_to_int(-9_223_372_036_854_777_856.0), None);
        assert_eq!(float_to_int(f64::NAN), None);
        assert_eq!(float_to_int(f64::INFINITY), None);
    }
}
