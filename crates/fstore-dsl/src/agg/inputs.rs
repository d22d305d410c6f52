//! Evaluating a batch: every feature's argument and condition over one
//! record batch, downcast once, for [`State::add`](super::State::add).

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;

use super::values::{extreme_wins, Scalar};
use crate::eval::{eval, EvalError};
use crate::plan::AggFeature;
use crate::types::DataType;

/// The evaluated arguments and conditions of every feature of one view over
/// one record batch, ready for [`State::add`](super::State::add).
#[derive(Debug)]
pub struct Inputs {
    pub(super) features: Vec<FeatureInputs>,
    pub(super) rows: usize,
}

impl Inputs {
    /// The number of rows of the batch the inputs were evaluated over.
    pub fn num_rows(&self) -> usize {
        self.rows
    }
}

#[derive(Debug)]
pub(super) struct FeatureInputs {
    pub(super) arg: Option<Arg>,
    pub(super) condition: Option<BooleanArray>,
}

/// An evaluated argument, downcast once per batch.
#[derive(Debug)]
pub(super) enum Arg {
    Int64(Int64Array),
    Float64(Float64Array),
    String(StringArray),
    Other(ArrayRef, DataType),
}

impl Arg {
    fn new(array: ArrayRef, ty: DataType) -> Result<Arg, EvalError> {
        let wrong =
            || EvalError::PlanInvariant(format!("argument of type {ty} evaluated to {}", array.data_type()));
        Ok(match ty {
            DataType::Int64 => Arg::Int64(array.as_primitive_opt::<Int64Type>().ok_or_else(wrong)?.clone()),
            DataType::Float64 => {
                Arg::Float64(array.as_primitive_opt::<Float64Type>().ok_or_else(wrong)?.clone())
            }
            DataType::String => Arg::String(array.as_string_opt::<i32>().ok_or_else(wrong)?.clone()),
            ty => Arg::Other(array, ty),
        })
    }

    pub(super) fn int64(&self, row: usize) -> Option<i64> {
        match self {
            Arg::Int64(a) => a.is_valid(row).then(|| a.value(row)),
            _ => None,
        }
    }

    pub(super) fn float64(&self, row: usize) -> Option<f64> {
        match self {
            Arg::Float64(a) => a.is_valid(row).then(|| a.value(row)).filter(|v| v.is_finite()),
            Arg::Int64(a) => a.is_valid(row).then(|| a.value(row) as f64),
            _ => None,
        }
    }

    pub(super) fn scalar(&self, row: usize) -> Option<Scalar> {
        match self {
            Arg::Int64(a) => Scalar::from_array(a, row, DataType::Int64),
            Arg::Float64(a) => Scalar::from_array(a, row, DataType::Float64),
            Arg::String(a) => Scalar::from_array(a, row, DataType::String),
            Arg::Other(a, ty) => Scalar::from_array(a.as_ref(), row, *ty),
        }
    }

    /// `min`/`max`: replace `current` if the value at `row` beats it, without
    /// allocating unless it does.
    pub(super) fn fold_extreme(&self, row: usize, current: &mut Option<Scalar>, want: Ordering) {
        match (self, current.as_mut()) {
            (Arg::Int64(a), Some(Scalar::Int64(c))) => {
                if a.is_valid(row) && a.value(row).cmp(c) == want {
                    *c = a.value(row);
                }
            }
            (Arg::Float64(a), Some(Scalar::Float64(c))) => {
                let v = a.value(row);
                if a.is_valid(row) && v.is_finite() && v.total_cmp(c) == want {
                    *c = v;
                }
            }
            (Arg::String(a), Some(Scalar::String(c))) => {
                if a.is_valid(row) && a.value(row).as_bytes().cmp(c.as_bytes()) == want {
                    c.clear();
                    c.push_str(a.value(row));
                }
            }
            (_, Some(c)) => {
                if let Some(v) = self.scalar(row) {
                    if extreme_wins(&v, c, want) {
                        *c = v;
                    }
                }
            }
            (_, None) => *current = self.scalar(row),
        }
    }
}

/// Evaluate every feature's argument and condition over `batch` (which must
/// hold the source fields the plan reads, in the plan's types).
pub fn evaluate(features: &[AggFeature], batch: &RecordBatch) -> Result<Inputs, EvalError> {
    let mut out = Vec::with_capacity(features.len());
    for f in features {
        let arg = match &f.arg {
            Some(expr) => Some(Arg::new(eval(expr, batch)?, expr.ty)?),
            None => None,
        };
        let condition = match &f.condition {
            Some(expr) => {
                let c = eval(expr, batch)?;
                Some(c.as_boolean_opt().cloned().ok_or_else(|| {
                    EvalError::PlanInvariant(format!(
                        "condition of `{}` evaluated to {}",
                        f.name,
                        c.data_type()
                    ))
                })?)
            }
            None => None,
        };
        out.push(FeatureInputs { arg, condition });
    }
    Ok(Inputs { features: out, rows: batch.num_rows() })
}
