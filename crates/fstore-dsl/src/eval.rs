//! Row-expression evaluation over Arrow record batches.
//!
//! [`eval`] runs one typed [`Expr`] of a checked plan over every row of a
//! [`RecordBatch`] and returns one Arrow array of the expression's type
//! ([`DataType::arrow`]). What each operator, function and cast means is the
//! language's promise to users (the project's `docs/dsl.md`); the submodules
//! implement those meanings as column-at-a-time kernels:
//!
//! - `logic`: `not`, `and`, `or`, `is [not] null`, `if`, `coalesce`
//! - `compare`: `== != < <= > >=` and `[not] in (...)`
//! - `arith`: arithmetic, the numeric functions, `bucketize`
//! - `text`: `lower`, `upper`, `length`, `concat`
//! - `time`: `days_between`, `hours_between`, `day_of_week`, `hour_of_day`
//! - `vector`: `dot`, `cosine`, `l2_distance`, `norm`
//! - `cast`: `x as T`
//!
//! Which kernel runs a function call is written in the row-function table,
//! [`crate::functions`], which the checker reads too.
//!
//! Data never makes evaluation fail: a value without an answer (integer
//! overflow, division by zero, text that does not parse, a float that is not
//! finite) is null in that row. Evaluation fails only when the batch does not
//! match the plan or the plan breaks an invariant the checker promises; both
//! are bugs upstream, reported as an [`EvalError`] rather than a panic.
//!
//! fstore values are never NaN or infinite: a float column read from the batch
//! has such values replaced by null, and every kernel that produces floats does
//! the same with its results.
//!
//! This module must never read the wall clock, the environment or any state
//! other than the expression and the batch: a feature is a function of its
//! input rows, so the same rows give the same values online, in a backfill and
//! in a test.

pub(crate) mod arith;
mod cast;
mod compare;
pub(crate) mod logic;
pub(crate) mod text;
pub(crate) mod time;
pub(crate) mod vector;

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BinaryArray, BooleanArray, BooleanBufferBuilder, Datum,
    Float32Array, Float64Array, Int64Array, ListArray, PrimitiveArray, StringArray, StringBuilder,
    UInt32Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType as ArrowType, Float32Type, Float64Type, Int64Type, TimestampMicrosecondType,
    UInt64Type,
};
use arrow::record_batch::RecordBatch;

use crate::functions;
use crate::plan::{Expr, ExprKind, Func, Literal, Service};
use crate::types::{DataType, ElementType};

/// Evaluation fails only when the batch does not match the plan (a missing
/// column, a column of the wrong Arrow type), the plan breaks one of its
/// documented invariants, or a result would not fit one Arrow array (more
/// than 2 GiB of text in one string column): data problems give nulls.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("column `{0}` is missing from the batch")]
    MissingColumn(String),
    #[error("column `{column}` has Arrow type {found}, expected {expected}")]
    ColumnType { column: String, expected: String, found: String },
    /// The plan holds a node the checker must never produce, e.g. an `Arith`
    /// over strings or a cast the language does not have.
    #[error("the plan breaks an invariant of the checker: {0}")]
    PlanInvariant(String),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Evaluate `expr` over every row of `batch`; the result has `batch.num_rows()`
/// rows and the Arrow type `expr.ty.arrow()`.
pub fn eval(expr: &Expr, batch: &RecordBatch) -> Result<ArrayRef, EvalError> {
    let out = eval_val(expr, batch)?.into_column(batch.num_rows())?;
    if out.data_type() != &expr.ty.arrow() {
        return Err(invariant(format!(
            "`{expr}` evaluated to Arrow type {}, expected {}",
            out.data_type(),
            expr.ty.arrow()
        )));
    }
    Ok(out)
}

/// Evaluate a service's derived features over `inputs`: a batch with a
/// column for each of [`Service::derived_inputs`] (request fields by name,
/// the service's features as `view.feature`), of the language's Arrow types.
/// Returns one array per derived feature, in declared order; each is computed
/// once over every row, and the ones after it read it by name.
pub fn derive(service: &Service, inputs: &RecordBatch) -> Result<Vec<ArrayRef>, EvalError> {
    let mut fields: Vec<arrow::datatypes::FieldRef> = inputs.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = inputs.columns().to_vec();
    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(inputs.num_rows()));
    let mut batch = inputs.clone();
    let mut out = Vec::with_capacity(service.derived.len());
    for (i, d) in service.derived.iter().enumerate() {
        let column = eval(&d.expr, &batch)?;
        if i + 1 < service.derived.len() {
            fields.push(Arc::new(arrow::datatypes::Field::new(&d.name, d.ty.arrow(), true)));
            columns.push(column.clone());
            let schema = Arc::new(arrow::datatypes::Schema::new(fields.clone()));
            batch = RecordBatch::try_new_with_options(schema, columns.clone(), &options)?;
        }
        out.push(column);
    }
    Ok(out)
}

/// An evaluated operand.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// One value per row of the batch.
    Column(ArrayRef),
    /// Exactly one row, standing for every row. Literals are scalars, and a
    /// kernel whose operands are all scalars yields a scalar, so constant
    /// sub-expressions cost one row per batch and literal operands are never
    /// materialised as columns unless a kernel needs it.
    Scalar(ArrayRef),
}

impl Val {
    fn array(&self) -> &ArrayRef {
        match self {
            Val::Column(a) | Val::Scalar(a) => a,
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Val::Scalar(_))
    }

    /// A scalar whose one value is null: the result of any null-propagating
    /// operator that has it as an operand.
    fn is_null_scalar(&self) -> bool {
        matches!(self, Val::Scalar(a) if a.is_null(0))
    }

    /// Wrap the output of a kernel run on this operand's array, keeping it a
    /// scalar if it was one.
    fn same_shape(&self, out: ArrayRef) -> Val {
        match self {
            Val::Column(_) => Val::Column(out),
            Val::Scalar(_) => Val::Scalar(out),
        }
    }

    /// Apply a row-wise kernel to this operand's array.
    fn map(&self, kernel: impl FnOnce(&ArrayRef) -> Result<ArrayRef, EvalError>) -> Result<Val, EvalError> {
        Ok(self.same_shape(kernel(self.array())?))
    }

    /// The operand as a column of `rows` rows, repeating a scalar.
    fn into_column(self, rows: usize) -> Result<ArrayRef, EvalError> {
        match self {
            Val::Column(a) => Ok(a),
            Val::Scalar(a) if a.is_null(0) => Ok(new_null_array(a.data_type(), rows)),
            Val::Scalar(a) => {
                let rows = u32::try_from(rows).map_err(|_| {
                    arrow::error::ArrowError::InvalidArgumentError(format!(
                        "cannot repeat a value into {rows} rows"
                    ))
                })?;
                let first = UInt32Array::from_value(0, rows as usize);
                Ok(arrow::compute::take(&a, &first, None)?)
            }
        }
    }
}

/// Lets arrow's comparison and selection kernels take a scalar operand as it
/// is, without repeating it into a column.
impl Datum for Val {
    fn get(&self) -> (&dyn Array, bool) {
        (self.array().as_ref(), self.is_scalar())
    }
}

/// Bring operands to one shape: all scalars stay scalars (and the kernel runs
/// on one row); otherwise every scalar is repeated into a column of `rows`.
/// For kernels that have no scalar form (`and_kleene`, string concatenation).
fn align(vals: &[Val], rows: usize) -> Result<(Vec<ArrayRef>, bool), EvalError> {
    let all_scalar = vals.iter().all(Val::is_scalar);
    let mut arrays = Vec::with_capacity(vals.len());
    for v in vals {
        arrays.push(match v {
            Val::Scalar(a) if all_scalar => a.clone(),
            v => v.clone().into_column(rows)?,
        });
    }
    Ok((arrays, all_scalar))
}

fn shaped(all_scalar: bool, out: ArrayRef) -> Val {
    if all_scalar {
        Val::Scalar(out)
    } else {
        Val::Column(out)
    }
}

fn invariant(message: String) -> EvalError {
    EvalError::PlanInvariant(message)
}

fn eval_val(expr: &Expr, batch: &RecordBatch) -> Result<Val, EvalError> {
    let rows = batch.num_rows();
    match &expr.kind {
        ExprKind::Literal(lit) => Ok(Val::Scalar(literal(lit, expr.ty)?)),
        ExprKind::Field(name) => Ok(Val::Column(field(batch, name, expr.ty)?)),
        ExprKind::FieldIsNull { field, negated } => {
            let column =
                batch.column_by_name(field).ok_or_else(|| EvalError::MissingColumn(field.clone()))?;
            // A NaN read as a float is null (see the module docs), so it must
            // count as null here too.
            let column: ArrayRef = match column.data_type() {
                ArrowType::Float32 => Arc::new(finite_only(prim::<Float32Type>(column)?.clone())),
                ArrowType::Float64 => Arc::new(finite_only(prim::<Float64Type>(column)?.clone())),
                _ => column.clone(),
            };
            logic::is_null(&Val::Column(column), *negated)
        }
        ExprKind::Neg(x) => arith::neg(&eval_val(x, batch)?, expr.ty),
        ExprKind::Not(x) => logic::not(&eval_val(x, batch)?),
        ExprKind::Arith(op, a, b) => arith::arith(*op, &eval_val(a, batch)?, &eval_val(b, batch)?, expr.ty),
        ExprKind::Compare(op, a, b) => {
            compare::compare(*op, &eval_val(a, batch)?, &eval_val(b, batch)?, a.ty)
        }
        ExprKind::And(a, b) => logic::and(eval_val(a, batch)?, eval_val(b, batch)?, rows),
        ExprKind::Or(a, b) => logic::or(eval_val(a, batch)?, eval_val(b, batch)?, rows),
        ExprKind::IsNull { expr, negated } => logic::is_null(&eval_val(expr, batch)?, *negated),
        ExprKind::InList { expr: x, list, negated } => {
            compare::in_list(&eval_val(x, batch)?, x.ty, list, *negated)
        }
        ExprKind::Cast(x) => cast::cast(&eval_val(x, batch)?, x.ty, expr.ty),
        ExprKind::Call(func, args) => {
            let args = args.iter().map(|a| eval_val(a, batch)).collect::<Result<Vec<_>, _>>()?;
            call(*func, &args, expr.ty, rows)
        }
        ExprKind::Bucketize(x, bounds) => arith::bucketize(&eval_val(x, batch)?, bounds),
        ExprKind::HashBucket(x, n) => hash_bucket(&eval_val(x, batch)?, *n),
    }
}

/// Run the kernel the row-function table gives for `func`.
fn call(func: Func, args: &[Val], ty: DataType, rows: usize) -> Result<Val, EvalError> {
    let kernel = functions::kernel(func).ok_or_else(|| invariant(format!("{func:?} has no kernel")))?;
    kernel(args, ty, rows)
        .unwrap_or_else(|| Err(invariant(format!("{func:?} called with {} arguments", args.len()))))
}

/// A literal as a one-row array of the node's type.
fn literal(lit: &Literal, ty: DataType) -> Result<ArrayRef, EvalError> {
    Ok(match (lit, ty) {
        (Literal::Null, ty) => new_null_array(&ty.arrow(), 1),
        (Literal::Bool(b), DataType::Bool) => Arc::new(BooleanArray::from(vec![*b])),
        (Literal::Int64(i), DataType::Int64) => Arc::new(Int64Array::from(vec![*i])),
        // A literal too large for a float (`1e400`) is infinite: null, like
        // every other non-finite float.
        (Literal::Float64(x), DataType::Float64) => Arc::new(Float64Array::from(vec![finite(*x)])),
        (Literal::Float64(x), DataType::Float32) => Arc::new(Float32Array::from(vec![finite(*x as f32)])),
        (Literal::String(s), DataType::String) => Arc::new(StringArray::from(vec![s.as_str()])),
        (Literal::String(s), DataType::Bytes) => Arc::new(BinaryArray::from(vec![s.as_bytes()])),
        (lit, ty) => return Err(invariant(format!("literal {lit} typed as {ty}"))),
    })
}

/// Read the batch column `name`, which must carry values of `ty`.
fn field(batch: &RecordBatch, name: &str, ty: DataType) -> Result<ArrayRef, EvalError> {
    let column = batch.column_by_name(name).ok_or_else(|| EvalError::MissingColumn(name.to_owned()))?;
    let expected = ty.arrow();
    let wrong_type = || EvalError::ColumnType {
        column: name.to_owned(),
        expected: expected.to_string(),
        found: column.data_type().to_string(),
    };
    match (ty, column.data_type()) {
        (DataType::Float32, ArrowType::Float32) => {
            Ok(Arc::new(finite_only(prim::<Float32Type>(column)?.clone())))
        }
        (DataType::Float64, ArrowType::Float64) => {
            Ok(Arc::new(finite_only(prim::<Float64Type>(column)?.clone())))
        }
        // Arrow timestamps hold UTC epoch values whatever their time zone
        // label, so a labelled column carries the same instants.
        (DataType::Timestamp, ArrowType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _)) => Ok(
            Arc::new(prim::<TimestampMicrosecondType>(column)?.clone().with_timezone_opt(None::<Arc<str>>)),
        ),
        // Lists are accepted whatever their item field is called (Parquet
        // writers say "element") and re-labelled with the canonical field.
        (DataType::Array(elem), ArrowType::List(item))
            if item.data_type() == &elem.as_data_type().arrow() =>
        {
            let list = column.as_list::<i32>();
            let canonical = match expected {
                ArrowType::List(ref field) => field.clone(),
                _ => return Err(invariant(format!("{ty} is not an Arrow list"))),
            };
            let values = match elem {
                ElementType::Float32 => {
                    Arc::new(finite_only(prim::<Float32Type>(list.values())?.clone())) as ArrayRef
                }
                ElementType::Float64 => Arc::new(finite_only(prim::<Float64Type>(list.values())?.clone())),
                ElementType::Int64 | ElementType::String => list.values().clone(),
            };
            Ok(Arc::new(ListArray::try_new(
                canonical,
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?))
        }
        (_, found) if *found == expected => Ok(column.clone()),
        _ => Err(wrong_type()),
    }
}

fn hash_bucket(x: &Val, n: i64) -> Result<Val, EvalError> {
    let n = u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invariant(format!("hash_bucket with n = {n}")))?;
    let hashes = crate::hash::hash_array(x.array().as_ref()).map_err(|e| invariant(e.to_string()))?;
    // hash % n < n <= i64::MAX, so the conversion never fails.
    let buckets = map_values::<UInt64Type, Int64Type>(&hashes, |h| i64::try_from(h % n).ok());
    Ok(x.same_shape(Arc::new(buckets)))
}

// ---------------------------------------------------------------------------
// Kernels shared by the submodules.
// ---------------------------------------------------------------------------

/// Downcast an array the plan says is of primitive type `T`.
fn prim<T: ArrowPrimitiveType>(array: &dyn Array) -> Result<&PrimitiveArray<T>, EvalError> {
    array.as_primitive_opt::<T>().ok_or_else(|| {
        invariant(format!("expected an array of {}, found {}", T::DATA_TYPE, array.data_type()))
    })
}

fn bools(array: &dyn Array) -> Result<&BooleanArray, EvalError> {
    array
        .as_boolean_opt()
        .ok_or_else(|| invariant(format!("expected an array of Boolean, found {}", array.data_type())))
}

fn strings(array: &dyn Array) -> Result<&StringArray, EvalError> {
    array
        .as_string_opt::<i32>()
        .ok_or_else(|| invariant(format!("expected an array of Utf8, found {}", array.data_type())))
}

/// Append one string to a Utf8 builder, or fail if the array would outgrow
/// Arrow's limit for one Utf8 array (2 GiB of text: its offsets are i32),
/// where `StringBuilder` would panic. Upper-casing or concatenating can grow
/// text, so a batch of valid strings can reach it; the caller should split
/// the batch.
fn append_text(out: &mut StringBuilder, value: &str) -> Result<(), EvalError> {
    let total = out.values_slice().len() + value.len();
    if i32::try_from(total).is_err() {
        return Err(arrow::error::ArrowError::OffsetOverflowError(total).into());
    }
    out.append_value(value);
    Ok(())
}

/// `Some(x)` if `x` is finite: the one place where NaN and ±inf become null.
fn finite<F: FloatValue>(x: F) -> Option<F> {
    x.is_finite_value().then_some(x)
}

/// The float types the evaluator produces.
trait FloatValue: Copy {
    fn is_finite_value(self) -> bool;
}

impl FloatValue for f32 {
    fn is_finite_value(self) -> bool {
        self.is_finite()
    }
}

impl FloatValue for f64 {
    fn is_finite_value(self) -> bool {
        self.is_finite()
    }
}

/// Null every row whose value is NaN or infinite. Shares the value buffer, and
/// costs one read pass when every value is finite.
fn finite_only<T>(array: PrimitiveArray<T>) -> PrimitiveArray<T>
where
    T: ArrowPrimitiveType,
    T::Native: FloatValue,
{
    let values = array.values();
    if values.iter().all(|v| v.is_finite_value()) {
        return array;
    }
    let is_finite = BooleanBuffer::collect_bool(values.len(), |i| values[i].is_finite_value());
    let nulls = NullBuffer::union(array.nulls(), Some(&NullBuffer::new(is_finite)));
    PrimitiveArray::new(values.clone(), nulls)
}

/// The validity of a kernel's output: valid where the input was valid and the
/// kernel gave a value.
fn and_valid(input: Option<&NullBuffer>, gave_value: BooleanBuffer) -> Option<NullBuffer> {
    let gave_value = NullBuffer::new(gave_value);
    if gave_value.null_count() == 0 {
        input.cloned()
    } else {
        NullBuffer::union(input, Some(&gave_value))
    }
}

/// Apply `f` to every value of `array`; a null input or a `None` from `f` is
/// a null output. `f` also runs on the (arbitrary) values under null slots
/// and validity is merged afterwards, which keeps the loop free of branches on
/// nulls (arrow's `unary_opt` instead visits valid slots one by one); `f` must
/// therefore accept any value, as checked arithmetic does.
fn map_values<I, O>(
    array: &PrimitiveArray<I>,
    f: impl Fn(I::Native) -> Option<O::Native>,
) -> PrimitiveArray<O>
where
    I: ArrowPrimitiveType,
    O: ArrowPrimitiveType,
{
    let mut gave_value = BooleanBufferBuilder::new(array.len());
    let values: ScalarBuffer<O::Native> = array
        .values()
        .iter()
        .map(|&v| {
            let out = f(v);
            gave_value.append(out.is_some());
            out.unwrap_or_default()
        })
        .collect();
    PrimitiveArray::new(values, and_valid(array.nulls(), gave_value.finish()))
}

/// One-operand kernel that has an answer for every value; null stays null.
/// Unlike [`map1`] this vectorises (arrow's `unary`).
fn map1_total<I, O>(x: &Val, f: impl Fn(I::Native) -> O::Native) -> Result<Val, EvalError>
where
    I: ArrowPrimitiveType,
    O: ArrowPrimitiveType,
{
    x.map(|a| Ok(Arc::new(prim::<I>(a)?.unary::<_, O>(f))))
}

/// One-operand kernel over a primitive operand; see [`map_values`].
fn map1<I, O>(x: &Val, f: impl Fn(I::Native) -> Option<O::Native>) -> Result<Val, EvalError>
where
    I: ArrowPrimitiveType,
    O: ArrowPrimitiveType,
{
    x.map(|a| Ok(Arc::new(map_values::<I, O>(prim::<I>(a)?, f))))
}

/// Two-operand kernel over primitive operands: null if either operand is null
/// or `f` gives `None`. A scalar operand is passed to `f` as it is, never
/// repeated into a column.
fn map2<A, B, O>(
    x: &Val,
    y: &Val,
    f: impl Fn(A::Native, B::Native) -> Option<O::Native>,
) -> Result<Val, EvalError>
where
    A: ArrowPrimitiveType,
    B: ArrowPrimitiveType,
    O: ArrowPrimitiveType,
{
    let (xa, ya) = (prim::<A>(x.array())?, prim::<B>(y.array())?);
    if x.is_null_scalar() || y.is_null_scalar() {
        return Ok(Val::Scalar(new_null_array(&O::DATA_TYPE, 1)));
    }
    let out: PrimitiveArray<O> = match (x, y) {
        (Val::Scalar(_), Val::Column(_)) => {
            let xv = xa.value(0);
            map_values::<B, O>(ya, |yv| f(xv, yv))
        }
        (Val::Column(_), Val::Scalar(_)) => {
            let yv = ya.value(0);
            map_values::<A, O>(xa, |xv| f(xv, yv))
        }
        // Two columns, or two scalars (each one row long).
        _ => {
            if xa.len() != ya.len() {
                return Err(invariant(format!("operands of {} and {} rows", xa.len(), ya.len())));
            }
            let mut gave_value = BooleanBufferBuilder::new(xa.len());
            let values: ScalarBuffer<O::Native> = xa
                .values()
                .iter()
                .zip(ya.values().iter())
                .map(|(&xv, &yv)| {
                    let out = f(xv, yv);
                    gave_value.append(out.is_some());
                    out.unwrap_or_default()
                })
                .collect();
            let nulls = NullBuffer::union(xa.nulls(), ya.nulls());
            PrimitiveArray::new(values, and_valid(nulls.as_ref(), gave_value.finish()))
        }
    };
    Ok(shaped(x.is_scalar() && y.is_scalar(), Arc::new(out)))
}

/// Row-wise predicate over two primitive operands of one type; null if either
/// is null. Used where arrow's comparison kernels mean something else (they
/// order floats by IEEE total order, where -0.0 < +0.0).
fn predicate2<T: ArrowPrimitiveType>(
    x: &Val,
    y: &Val,
    f: impl Fn(T::Native, T::Native) -> bool,
) -> Result<Val, EvalError> {
    let (xa, ya) = (prim::<T>(x.array())?, prim::<T>(y.array())?);
    if x.is_null_scalar() || y.is_null_scalar() {
        return Ok(Val::Scalar(new_null_array(&ArrowType::Boolean, 1)));
    }
    let (xv, yv) = (xa.values(), ya.values());
    let out = match (x, y) {
        (Val::Scalar(_), Val::Column(_)) => {
            BooleanArray::new(BooleanBuffer::collect_bool(yv.len(), |i| f(xv[0], yv[i])), ya.nulls().cloned())
        }
        (Val::Column(_), Val::Scalar(_)) => {
            BooleanArray::new(BooleanBuffer::collect_bool(xv.len(), |i| f(xv[i], yv[0])), xa.nulls().cloned())
        }
        _ => {
            if xv.len() != yv.len() {
                return Err(invariant(format!("operands of {} and {} rows", xv.len(), yv.len())));
            }
            BooleanArray::new(
                BooleanBuffer::collect_bool(xv.len(), |i| f(xv[i], yv[i])),
                NullBuffer::union(xa.nulls(), ya.nulls()),
            )
        }
    };
    Ok(shaped(x.is_scalar() && y.is_scalar(), Arc::new(out)))
}
