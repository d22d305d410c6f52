//! Arithmetic, the numeric functions and `bucketize`.
//!
//! Integer arithmetic is checked: overflow (including `-i64::MIN`,
//! `abs(i64::MIN)`, `i64::MIN / -1` and `i64::MIN % -1`) and division or
//! modulo by zero give null, never a wrapped value or a panic. `/` truncates
//! toward zero and `%` takes the dividend's sign, as Rust's operators do.
//! Float results that are not finite (`1.0 / 0.0`, `ln(0)`, `sqrt(-1)`, an
//! overflowing `exp`) are null.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};

use super::{append_text, finite, invariant, map1, map1_total, map2, strings, EvalError, Val};
use crate::plan::ArithOp;
use crate::types::DataType;

/// Unary minus of an int64 or float64 operand.
pub(super) fn neg(x: &Val, ty: DataType) -> Result<Val, EvalError> {
    match ty {
        DataType::Int64 => map1::<Int64Type, Int64Type>(x, i64::checked_neg),
        DataType::Float64 => map1_total::<Float64Type, Float64Type>(x, |v| -v),
        _ => Err(invariant(format!("unary minus of {ty}"))),
    }
}

/// `x op y`, both operands of type `ty` (int64 or float64).
pub(super) fn arith(op: ArithOp, x: &Val, y: &Val, ty: DataType) -> Result<Val, EvalError> {
    match ty {
        DataType::Int64 => {
            let f: fn(i64, i64) -> Option<i64> = match op {
                ArithOp::Add => i64::checked_add,
                ArithOp::Sub => i64::checked_sub,
                ArithOp::Mul => i64::checked_mul,
                // None for a zero divisor and for i64::MIN / -1; truncates
                // toward zero.
                ArithOp::Div => i64::checked_div,
                // None for a zero divisor and for i64::MIN % -1; the result
                // has the dividend's sign.
                ArithOp::Mod => i64::checked_rem,
            };
            map2::<Int64Type, Int64Type, Int64Type>(x, y, f)
        }
        DataType::Float64 => {
            // Division and modulo by zero give ±inf or NaN, which `finite`
            // turns into null, as the language promises.
            let f: fn(f64, f64) -> f64 = match op {
                ArithOp::Add => |a, b| a + b,
                ArithOp::Sub => |a, b| a - b,
                ArithOp::Mul => |a, b| a * b,
                ArithOp::Div => |a, b| a / b,
                ArithOp::Mod => |a, b| a % b,
            };
            map2::<Float64Type, Float64Type, Float64Type>(x, y, |a, b| finite(f(a, b)))
        }
        _ => Err(invariant(format!("arithmetic on {ty}"))),
    }
}

pub(crate) fn abs(x: &Val, ty: DataType) -> Result<Val, EvalError> {
    match ty {
        DataType::Int64 => map1::<Int64Type, Int64Type>(x, i64::checked_abs),
        DataType::Float64 => map1_total::<Float64Type, Float64Type>(x, f64::abs),
        _ => Err(invariant(format!("abs of {ty}"))),
    }
}

/// `ln`, `log10`, `sqrt`, `exp`: float64 to float64, non-finite results null.
pub(crate) fn float_fn(x: &Val, f: fn(f64) -> f64) -> Result<Val, EvalError> {
    map1::<Float64Type, Float64Type>(x, |v| finite(f(v)))
}

pub(crate) fn pow(x: &Val, y: &Val) -> Result<Val, EvalError> {
    map2::<Float64Type, Float64Type, Float64Type>(x, y, |a, b| finite(a.powf(b)))
}

/// `floor`, `ceil`, `round`: identity on int64, `f` on float64.
pub(crate) fn rounding(x: &Val, ty: DataType, f: fn(f64) -> f64) -> Result<Val, EvalError> {
    match ty {
        DataType::Int64 => Ok(x.clone()),
        // A finite float rounds to a finite float.
        DataType::Float64 => map1_total::<Float64Type, Float64Type>(x, f),
        _ => Err(invariant(format!("rounding of {ty}"))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    Least,
    Greatest,
}

impl Pick {
    /// Whether `candidate` replaces `current`. Ties keep the earlier argument,
    /// which only shows for floats (-0.0 and 0.0 are equal).
    fn replaces<T: PartialOrd>(self, candidate: &T, current: &T) -> bool {
        match self {
            Pick::Least => candidate < current,
            Pick::Greatest => candidate > current,
        }
    }
}

/// `least(a, b, ...)` / `greatest(a, b, ...)`: null if any argument is null.
pub(crate) fn least_greatest(args: &[Val], ty: DataType, pick: Pick) -> Result<Val, EvalError> {
    let (first, rest) = args.split_first().ok_or_else(|| invariant(format!("{pick:?} with no arguments")))?;
    let mut acc = first.clone();
    for next in rest {
        acc = pick2(&acc, next, ty, pick)?;
    }
    Ok(acc)
}

fn pick2(x: &Val, y: &Val, ty: DataType, pick: Pick) -> Result<Val, EvalError> {
    match ty {
        DataType::Int64 => map2::<Int64Type, Int64Type, Int64Type>(x, y, |a, b| {
            Some(if pick.replaces(&b, &a) { b } else { a })
        }),
        DataType::Float64 => map2::<Float64Type, Float64Type, Float64Type>(x, y, |a, b| {
            Some(if pick.replaces(&b, &a) { b } else { a })
        }),
        DataType::Timestamp => map2::<
            TimestampMicrosecondType,
            TimestampMicrosecondType,
            TimestampMicrosecondType,
        >(x, y, |a, b| Some(if pick.replaces(&b, &a) { b } else { a })),
        DataType::String => {
            let (xs, ys) = (strings(x.array())?, strings(y.array())?);
            // A scalar has one row; the column beside it, if any, has them all.
            let rows = if x.is_scalar() { ys.len() } else { xs.len() };
            let row = |v: &Val, i: usize| if v.is_scalar() { 0 } else { i };
            let mut out = StringBuilder::with_capacity(rows, xs.value_data().len());
            for i in 0..rows {
                let (a, b) = (row(x, i), row(y, i));
                if xs.is_null(a) || ys.is_null(b) {
                    out.append_null();
                } else {
                    let (a, b) = (xs.value(a), ys.value(b));
                    // str's order is byte order.
                    append_text(&mut out, if pick.replaces(&b, &a) { b } else { a })?;
                }
            }
            Ok(super::shaped(x.is_scalar() && y.is_scalar(), Arc::new(out.finish()) as ArrayRef))
        }
        _ => Err(invariant(format!("{pick:?} of {ty}"))),
    }
}

/// `clamp(x, lo, hi)` = `least(greatest(x, lo), hi)`: when `lo > hi` the
/// result is `hi`.
pub(crate) fn clamp(x: &Val, lo: &Val, hi: &Val, ty: DataType) -> Result<Val, EvalError> {
    match ty {
        DataType::Int64 | DataType::Float64 => {
            let raised = pick2(x, lo, ty, Pick::Greatest)?;
            pick2(&raised, hi, ty, Pick::Least)
        }
        _ => Err(invariant(format!("clamp of {ty}"))),
    }
}

/// `bucketize(x, bounds)`: the index of the first bound strictly greater than
/// `x`, or the number of bounds; the bounds are ascending (checked).
pub(super) fn bucketize(x: &Val, bounds: &[f64]) -> Result<Val, EvalError> {
    map1_total::<Float64Type, Int64Type>(x, |v| {
        // partition_point is a binary search for the first bound > v. A Vec
        // holds at most isize::MAX bytes, so the index fits an i64.
        bounds.partition_point(|b| *b <= v) as i64
    })
}
