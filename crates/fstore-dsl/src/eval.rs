//! Row-expression evaluation over Arrow record batches. (to be written)

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;

use crate::plan::Expr;

/// Evaluation fails only when the batch does not match the plan (a missing
/// column, a column of the wrong Arrow type): data problems give nulls.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("column `{0}` is missing from the batch")]
    MissingColumn(String),
    #[error("column `{column}` has Arrow type {found}, expected {expected}")]
    ColumnType { column: String, expected: String, found: String },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Evaluate `expr` over every row of `batch`; the result has `batch.num_rows()`
/// rows and the Arrow type `expr.ty.arrow()`.
pub fn eval(expr: &Expr, batch: &RecordBatch) -> Result<ArrayRef, EvalError> {
    let _ = (expr, batch);
    Err(EvalError::MissingColumn("(evaluator not written yet)".into()))
}
