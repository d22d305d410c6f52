//! `lower`, `upper`, `length` and `concat`.
//!
//! Case mapping is Unicode's full mapping as Rust's `str::to_lowercase` and
//! `str::to_uppercase` do it ("ß" upper-cases to "SS", a final sigma lower-cases
//! to "ς"), so a string may change length. `length` counts Unicode scalar
//! values, not bytes. `concat` is null when any argument is null.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray, StringBuilder};
use arrow::compute::kernels::concat_elements::concat_elements_utf8_many;

use super::{align, append_text, invariant, strings, EvalError, Val};

pub(crate) fn lower(x: &Val) -> Result<Val, EvalError> {
    x.map(|a| {
        map_strings(strings(a)?, |s, out| {
            // The ASCII path skips Unicode tables; it gives the same answer.
            if s.is_ascii() {
                out.push_str(s);
                out.make_ascii_lowercase();
            } else {
                out.push_str(&s.to_lowercase());
            }
        })
    })
}

pub(crate) fn upper(x: &Val) -> Result<Val, EvalError> {
    x.map(|a| {
        map_strings(strings(a)?, |s, out| {
            if s.is_ascii() {
                out.push_str(s);
                out.make_ascii_uppercase();
            } else {
                out.push_str(&s.to_uppercase());
            }
        })
    })
}

/// Build a string array by writing each non-null row's output into a reused
/// buffer; nulls stay null.
fn map_strings(input: &StringArray, f: impl Fn(&str, &mut String)) -> Result<ArrayRef, EvalError> {
    let mut out = StringBuilder::with_capacity(input.len(), input.value_data().len());
    let mut buffer = String::new();
    for value in input.iter() {
        match value {
            Some(s) => {
                buffer.clear();
                f(s, &mut buffer);
                append_text(&mut out, &buffer)?;
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

pub(crate) fn length(x: &Val) -> Result<Val, EvalError> {
    x.map(|a| {
        // A string's scalar-value count is at most its byte length, which an
        // Arrow Utf8 array keeps below 2^31: the conversion cannot fail.
        let lengths = Int64Array::from_unary(strings(a)?, |s| s.chars().count() as i64);
        Ok(Arc::new(lengths))
    })
}

pub(crate) fn concat(args: &[Val], rows: usize) -> Result<Val, EvalError> {
    match args {
        [] => return Err(invariant("concat with no arguments".into())),
        [only] => return Ok(only.clone()),
        _ => {}
    }
    let (arrays, all_scalar) = align(args, rows)?;
    let arrays = arrays.iter().map(|a| strings(a)).collect::<Result<Vec<_>, _>>()?;
    // Arrow's kernel nulls a row when any argument is null, as promised.
    let out = concat_elements_utf8_many(&arrays)?;
    Ok(super::shaped(all_scalar, Arc::new(out)))
}
