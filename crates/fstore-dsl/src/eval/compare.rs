//! Comparisons and `[not] in (...)`.
//!
//! Order: numbers by value (for floats IEEE order, so -0.0 == 0.0), strings
//! and bytes by byte order, timestamps by instant, `false < true`. A null
//! operand gives null. `in` follows SQL: a null operand gives null, a match
//! gives true, no match gives false unless the list holds a null, which makes
//! it null; `not in` is the three-valued negation of `in`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::kernels::cmp;
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};

use super::{bools, finite, invariant, predicate2, prim, shaped, EvalError, Val};
use crate::plan::{CmpOp, Literal};
use crate::types::DataType;

/// `x op y` where both operands have type `ty`.
pub(super) fn compare(op: CmpOp, x: &Val, y: &Val, ty: DataType) -> Result<Val, EvalError> {
    match ty {
        // arrow orders floats by IEEE total order (-0.0 < 0.0, NaN largest);
        // the language compares them as numbers.
        DataType::Float64 => float_compare::<Float64Type>(op, x, y),
        DataType::Float32 => float_compare::<Float32Type>(op, x, y),
        DataType::Bool | DataType::Int64 | DataType::String | DataType::Bytes | DataType::Timestamp => {
            // arrow's kernels take scalar operands as they are; two scalars
            // give a one-row result.
            let out = match op {
                CmpOp::Eq => cmp::eq(x, y)?,
                CmpOp::Ne => cmp::neq(x, y)?,
                CmpOp::Lt => cmp::lt(x, y)?,
                CmpOp::Le => cmp::lt_eq(x, y)?,
                CmpOp::Gt => cmp::gt(x, y)?,
                CmpOp::Ge => cmp::gt_eq(x, y)?,
            };
            Ok(shaped(x.is_scalar() && y.is_scalar(), Arc::new(out)))
        }
        DataType::Array(_) => Err(invariant(format!("comparison of {ty} values"))),
    }
}

fn float_compare<T>(op: CmpOp, x: &Val, y: &Val) -> Result<Val, EvalError>
where
    T: arrow::datatypes::ArrowPrimitiveType,
    T::Native: PartialOrd,
{
    match op {
        CmpOp::Eq => predicate2::<T>(x, y, |a, b| a == b),
        CmpOp::Ne => predicate2::<T>(x, y, |a, b| a != b),
        CmpOp::Lt => predicate2::<T>(x, y, |a, b| a < b),
        CmpOp::Le => predicate2::<T>(x, y, |a, b| a <= b),
        CmpOp::Gt => predicate2::<T>(x, y, |a, b| a > b),
        CmpOp::Ge => predicate2::<T>(x, y, |a, b| a >= b),
    }
}

/// `x [not] in (list)`, where every literal has `x`'s type `ty` or is null.
pub(super) fn in_list(x: &Val, ty: DataType, list: &[Literal], negated: bool) -> Result<Val, EvalError> {
    let array = x.array();
    let rows = array.len();
    let mut list_has_null = false;
    let mut wrong_literal = None;

    // Collect the non-null literals of the operand's type; a float literal
    // that is not finite is a null, as everywhere else.
    macro_rules! members {
        ($pattern:pat => $value:expr) => {{
            let mut members = Vec::new();
            for lit in list {
                match lit {
                    Literal::Null => list_has_null = true,
                    $pattern => match $value {
                        Some(v) => members.push(v),
                        None => list_has_null = true,
                    },
                    other => wrong_literal = Some(other),
                }
            }
            members
        }};
    }

    let found: BooleanBuffer = match ty {
        DataType::Bool => {
            let members = members!(Literal::Bool(b) => Some(*b));
            let values = bools(array)?.values();
            let (has_true, has_false) = (members.contains(&true), members.contains(&false));
            BooleanBuffer::collect_bool(rows, |i| if values.value(i) { has_true } else { has_false })
        }
        DataType::Int64 => {
            let mut members = members!(Literal::Int64(i) => Some(*i));
            members.sort_unstable();
            let values = prim::<Int64Type>(array)?.values();
            BooleanBuffer::collect_bool(rows, |i| members.binary_search(&values[i]).is_ok())
        }
        DataType::Float64 => {
            // `+ 0.0` turns -0.0 into 0.0, so that the total order used for
            // the search agrees with numeric equality.
            let mut members = members!(Literal::Float64(f) => finite(*f + 0.0));
            members.sort_unstable_by(f64::total_cmp);
            let values = prim::<Float64Type>(array)?.values();
            BooleanBuffer::collect_bool(rows, |i| {
                members.binary_search_by(|m| m.total_cmp(&(values[i] + 0.0))).is_ok()
            })
        }
        DataType::Float32 => {
            let mut members = members!(Literal::Float64(f) => finite(*f as f32 + 0.0));
            members.sort_unstable_by(f32::total_cmp);
            let values = prim::<Float32Type>(array)?.values();
            BooleanBuffer::collect_bool(rows, |i| {
                members.binary_search_by(|m| m.total_cmp(&(values[i] + 0.0))).is_ok()
            })
        }
        DataType::String => {
            let members: HashSet<&str> =
                members!(Literal::String(s) => Some(s.as_str())).into_iter().collect();
            let values = array
                .as_string_opt::<i32>()
                .ok_or_else(|| invariant(format!("{ty} operand of Arrow type {}", array.data_type())))?;
            BooleanBuffer::collect_bool(rows, |i| members.contains(values.value(i)))
        }
        DataType::Bytes => {
            let members: HashSet<&[u8]> =
                members!(Literal::String(s) => Some(s.as_bytes())).into_iter().collect();
            let values = array
                .as_binary_opt::<i32>()
                .ok_or_else(|| invariant(format!("{ty} operand of Arrow type {}", array.data_type())))?;
            BooleanBuffer::collect_bool(rows, |i| members.contains(values.value(i)))
        }
        // No literal can spell a timestamp or an array, so such a list holds
        // only nulls and nothing matches.
        DataType::Timestamp | DataType::Array(_) => {
            for lit in list {
                match lit {
                    Literal::Null => list_has_null = true,
                    other => wrong_literal = Some(other),
                }
            }
            BooleanBuffer::new_unset(rows)
        }
    };
    if let Some(lit) = wrong_literal {
        return Err(invariant(format!("literal {lit} in a list of {ty}")));
    }

    // A row is null where the operand is null, or where nothing matched and
    // the list holds a null (the null might have been equal).
    let decided = if list_has_null { Some(NullBuffer::new(found.clone())) } else { None };
    let nulls = NullBuffer::union(array.logical_nulls().as_ref(), decided.as_ref());
    let values = if negated { !&found } else { found };
    Ok(x.same_shape(Arc::new(BooleanArray::new(values, nulls))))
}
