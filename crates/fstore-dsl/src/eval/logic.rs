//! `not`, `and`, `or`, `is [not] null`, `if` and `coalesce`: the operators
//! that do not simply propagate null.
//!
//! `and`/`or` follow SQL's three-valued logic (`false and null` is false,
//! `true or null` is true, otherwise null wins); `if` takes the else branch
//! when its condition is null; `coalesce` gives its first non-null argument.

use std::sync::Arc;

use arrow::array::Array;
use arrow::compute::kernels::{boolean, zip};

use super::{align, bools, invariant, shaped, EvalError, Val};

pub(super) fn not(x: &Val) -> Result<Val, EvalError> {
    x.map(|a| Ok(Arc::new(boolean::not(bools(a)?)?)))
}

pub(super) fn and(x: Val, y: Val, rows: usize) -> Result<Val, EvalError> {
    let (arrays, all_scalar) = align(&[x, y], rows)?;
    let out = boolean::and_kleene(bools(&arrays[0])?, bools(&arrays[1])?)?;
    Ok(shaped(all_scalar, Arc::new(out)))
}

pub(super) fn or(x: Val, y: Val, rows: usize) -> Result<Val, EvalError> {
    let (arrays, all_scalar) = align(&[x, y], rows)?;
    let out = boolean::or_kleene(bools(&arrays[0])?, bools(&arrays[1])?)?;
    Ok(shaped(all_scalar, Arc::new(out)))
}

pub(super) fn is_null(x: &Val, negated: bool) -> Result<Val, EvalError> {
    x.map(|a| Ok(Arc::new(if negated { boolean::is_not_null(a)? } else { boolean::is_null(a)? })))
}

/// `if(cond, then, else)`: rows where `cond` is true take `then`, rows where
/// it is false or null take `else`. Both branches are evaluated in full
/// (neither can fail on data), then merged.
pub(crate) fn if_then_else(cond: &Val, then: &Val, otherwise: &Val) -> Result<Val, EvalError> {
    let mask = bools(cond.array())?;
    if let Val::Scalar(_) = cond {
        let take_then = mask.is_valid(0) && mask.value(0);
        return Ok(if take_then { then } else { otherwise }.clone());
    }
    // zip treats a null in the mask as false, which is the rule we promise.
    Ok(Val::Column(zip::zip(mask, then, otherwise)?))
}

/// `coalesce(a, b, ...)`: per row, the first argument that is not null; null
/// if all are. Stops reading arguments once no row is null any more.
pub(crate) fn coalesce(args: &[Val]) -> Result<Val, EvalError> {
    let (first, rest) = args.split_first().ok_or_else(|| invariant("coalesce with no arguments".into()))?;
    let mut acc = first.clone();
    for next in rest {
        let done = match &acc {
            Val::Scalar(a) | Val::Column(a) => a.null_count() == 0,
        };
        if done {
            break;
        }
        acc = match acc {
            Val::Scalar(_) => next.clone(),
            Val::Column(a) => {
                let present = boolean::is_not_null(&a)?;
                Val::Column(zip::zip(&present, &a, next)?)
            }
        };
    }
    Ok(acc)
}
