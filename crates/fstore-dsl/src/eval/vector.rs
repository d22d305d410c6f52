//! Vector functions: `dot`, `cosine`, `l2_distance` and `norm` over
//! `array<float32>` and `array<float64>`, computed in float64.
//!
//! A row's result is null when an operand is null, holds a null element,
//! when two operands differ in length, when `cosine` has an operand of norm
//! zero (the empty array included), or when the result is not finite. A
//! length mismatch is the common mistake (two embeddings of different
//! models); the language documents it as one of these reasons, and it never
//! fails evaluation.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, ListArray};
use arrow::datatypes::{DataType as ArrowType, Float64Type};

use super::{finite, invariant, EvalError, Val};

/// One operand's arrays, with its elements as float64.
struct Vectors<'a> {
    list: &'a ListArray,
    values: Float64Array,
    scalar: bool,
}

impl<'a> Vectors<'a> {
    fn new(x: &'a Val) -> Result<Vectors<'a>, EvalError> {
        let list = x
            .array()
            .as_list_opt::<i32>()
            .ok_or_else(|| invariant(format!("a vector function over {}", x.array().data_type())))?;
        let values = match list.values().data_type() {
            ArrowType::Float32 | ArrowType::Float64 => {
                arrow::compute::cast(list.values(), &ArrowType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone()
            }
            other => return Err(invariant(format!("a vector function over a list of {other}"))),
        };
        Ok(Vectors { list, values, scalar: x.is_scalar() })
    }

    /// The array of `row`, or `None` when it is null or holds a null.
    fn get(&self, row: usize) -> Option<&[f64]> {
        let i = if self.scalar { 0 } else { row };
        if self.list.is_null(i) {
            return None;
        }
        let offsets = self.list.value_offsets();
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        if self.values.nulls().is_some_and(|n| (start..end).any(|j| n.is_null(j))) {
            return None;
        }
        self.values.values().get(start..end)
    }
}

fn dot_of(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm_of(a: &[f64]) -> f64 {
    dot_of(a, a).sqrt()
}

/// `f` over the operands' arrays row by row; a scalar result when every
/// operand is a scalar.
fn rows_of(args: &[Val], rows: usize, f: impl Fn(&[&[f64]]) -> Option<f64>) -> Result<Val, EvalError> {
    let vectors = args.iter().map(Vectors::new).collect::<Result<Vec<_>, _>>()?;
    let all_scalar = args.iter().all(Val::is_scalar);
    let n = if all_scalar { 1 } else { rows };
    let mut operands: Vec<&[f64]> = Vec::with_capacity(vectors.len());
    let out: Float64Array = (0..n)
        .map(|row| {
            operands.clear();
            for v in &vectors {
                operands.push(v.get(row)?);
            }
            if operands.windows(2).any(|w| w[0].len() != w[1].len()) {
                return None;
            }
            f(&operands).and_then(finite)
        })
        .collect();
    let out = Arc::new(out);
    Ok(if all_scalar { Val::Scalar(out) } else { Val::Column(out) })
}

pub(crate) fn dot(args: &[Val], rows: usize) -> Result<Val, EvalError> {
    rows_of(args, rows, |v| match v {
        [a, b] => Some(dot_of(a, b)),
        _ => None,
    })
}

pub(crate) fn cosine(args: &[Val], rows: usize) -> Result<Val, EvalError> {
    rows_of(args, rows, |v| match v {
        [a, b] => {
            let norms = norm_of(a) * norm_of(b);
            (norms > 0.0).then(|| dot_of(a, b) / norms)
        }
        _ => None,
    })
}

pub(crate) fn l2_distance(args: &[Val], rows: usize) -> Result<Val, EvalError> {
    rows_of(args, rows, |v| match v {
        [a, b] => Some(a.iter().zip(*b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()),
        _ => None,
    })
}

pub(crate) fn norm(args: &[Val], rows: usize) -> Result<Val, EvalError> {
    rows_of(args, rows, |v| match v {
        [a] => Some(norm_of(a)),
        _ => None,
    })
}
