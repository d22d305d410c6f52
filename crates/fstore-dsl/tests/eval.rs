//! The evaluator against the language's promises: every operator, function
//! and cast on ordinary values, nulls and the edge cases the docs name.
//!
//! Expressions are built by hand from the plan's types, as the checker would
//! produce them (operand types already agree; int64 → float64 widening is an
//! explicit cast).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{Field, Float32Type, Int64Type};
use fstore_dsl::plan::{ArithOp, CmpOp, Expr, ExprKind, Func, Literal};
use fstore_dsl::{eval, DataType, ElementType, EvalError};

// ---------------------------------------------------------------------------
// Building expressions and batches.
// ---------------------------------------------------------------------------

fn node(kind: ExprKind, ty: DataType) -> Expr {
    Expr { kind, ty }
}

fn col(name: &str, ty: DataType) -> Expr {
    node(ExprKind::Field(name.into()), ty)
}

fn int(v: i64) -> Expr {
    node(ExprKind::Literal(Literal::Int64(v)), DataType::Int64)
}

fn float(v: f64) -> Expr {
    node(ExprKind::Literal(Literal::Float64(v)), DataType::Float64)
}

fn text(v: &str) -> Expr {
    node(ExprKind::Literal(Literal::String(v.into())), DataType::String)
}

fn boolean(v: bool) -> Expr {
    node(ExprKind::Literal(Literal::Bool(v)), DataType::Bool)
}

fn null(ty: DataType) -> Expr {
    node(ExprKind::Literal(Literal::Null), ty)
}

fn arith(op: ArithOp, a: Expr, b: Expr) -> Expr {
    let ty = a.ty;
    node(ExprKind::Arith(op, Box::new(a), Box::new(b)), ty)
}

fn compare(op: CmpOp, a: Expr, b: Expr) -> Expr {
    node(ExprKind::Compare(op, Box::new(a), Box::new(b)), DataType::Bool)
}

fn call(func: Func, args: Vec<Expr>, ty: DataType) -> Expr {
    node(ExprKind::Call(func, args), ty)
}

fn cast(x: Expr, ty: DataType) -> Expr {
    node(ExprKind::Cast(Box::new(x)), ty)
}

fn neg(x: Expr) -> Expr {
    let ty = x.ty;
    node(ExprKind::Neg(Box::new(x)), ty)
}

fn not(x: Expr) -> Expr {
    node(ExprKind::Not(Box::new(x)), DataType::Bool)
}

fn and(a: Expr, b: Expr) -> Expr {
    node(ExprKind::And(Box::new(a), Box::new(b)), DataType::Bool)
}

fn or(a: Expr, b: Expr) -> Expr {
    node(ExprKind::Or(Box::new(a), Box::new(b)), DataType::Bool)
}

fn is_null(x: Expr, negated: bool) -> Expr {
    node(ExprKind::IsNull { expr: Box::new(x), negated }, DataType::Bool)
}

fn in_list(x: Expr, list: Vec<Literal>, negated: bool) -> Expr {
    node(ExprKind::InList { expr: Box::new(x), list, negated }, DataType::Bool)
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("test batch columns have equal lengths")
}

/// A batch with one int64 column `a`.
fn ints_batch(values: Vec<Option<i64>>) -> RecordBatch {
    batch(vec![("a", Arc::new(Int64Array::from(values)))])
}

fn floats_batch(values: Vec<Option<f64>>) -> RecordBatch {
    batch(vec![("a", Arc::new(Float64Array::from(values)))])
}

fn strings_batch(values: Vec<Option<&str>>) -> RecordBatch {
    batch(vec![("a", Arc::new(StringArray::from(values)))])
}

fn timestamps_batch(values: Vec<Option<i64>>) -> RecordBatch {
    batch(vec![("a", Arc::new(TimestampMicrosecondArray::from(values)))])
}

/// A batch of `rows` rows whose only column is not read.
fn rows(rows: usize) -> RecordBatch {
    batch(vec![("unused", Arc::new(Int32Array::from(vec![0; rows])))])
}

fn run(expr: &Expr, batch: &RecordBatch) -> ArrayRef {
    let out = eval(expr, batch).unwrap_or_else(|e| panic!("evaluating {expr}: {e}"));
    assert_eq!(out.len(), batch.num_rows(), "length of {expr}");
    assert_eq!(out.data_type(), &expr.ty.arrow(), "type of {expr}");
    out
}

fn ints(expr: &Expr, batch: &RecordBatch) -> Vec<Option<i64>> {
    run(expr, batch).as_primitive::<Int64Type>().iter().collect()
}

fn floats(expr: &Expr, batch: &RecordBatch) -> Vec<Option<f64>> {
    run(expr, batch).as_primitive::<arrow::datatypes::Float64Type>().iter().collect()
}

fn floats32(expr: &Expr, batch: &RecordBatch) -> Vec<Option<f32>> {
    run(expr, batch).as_primitive::<Float32Type>().iter().collect()
}

fn bools(expr: &Expr, batch: &RecordBatch) -> Vec<Option<bool>> {
    run(expr, batch).as_boolean().iter().collect()
}

fn strings(expr: &Expr, batch: &RecordBatch) -> Vec<Option<String>> {
    run(expr, batch).as_string::<i32>().iter().map(|s| s.map(str::to_owned)).collect()
}

fn timestamps(expr: &Expr, batch: &RecordBatch) -> Vec<Option<i64>> {
    run(expr, batch).as_primitive::<arrow::datatypes::TimestampMicrosecondType>().iter().collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

// ---------------------------------------------------------------------------
// Literals and fields.
// ---------------------------------------------------------------------------

#[test]
fn literals_fill_every_row() {
    let b = rows(3);
    assert_eq!(ints(&int(7), &b), [Some(7); 3]);
    assert_eq!(floats(&float(2.5), &b), [Some(2.5); 3]);
    assert_eq!(strings(&text("x"), &b), [s("x"), s("x"), s("x")]);
    assert_eq!(bools(&boolean(true), &b), [Some(true); 3]);
    assert_eq!(ints(&null(DataType::Int64), &b), [None; 3]);
    let bytes = node(ExprKind::Literal(Literal::String("hi".into())), DataType::Bytes);
    assert_eq!(run(&bytes, &b).as_binary::<i32>().value(2), b"hi");
    let f32_lit = node(ExprKind::Literal(Literal::Float64(0.5)), DataType::Float32);
    assert_eq!(floats32(&f32_lit, &b), [Some(0.5); 3]);
    for ty in [DataType::Timestamp, DataType::Bytes, DataType::Array(ElementType::String)] {
        assert_eq!(run(&null(ty), &b).null_count(), 3);
    }
}

#[test]
fn non_finite_float_literals_are_null() {
    let b = rows(1);
    assert_eq!(floats(&float(f64::INFINITY), &b), [None]);
    assert_eq!(floats(&float(f64::NAN), &b), [None]);
    let too_big_for_f32 = node(ExprKind::Literal(Literal::Float64(1e300)), DataType::Float32);
    assert_eq!(floats32(&too_big_for_f32, &b), [None]);
}

#[test]
fn literal_of_the_wrong_type_is_a_plan_error() {
    let bad = node(ExprKind::Literal(Literal::Int64(1)), DataType::String);
    assert!(matches!(eval(&bad, &rows(1)), Err(EvalError::PlanInvariant(_))));
}

#[test]
fn fields_read_their_column() {
    let b = ints_batch(vec![Some(1), None, Some(3)]);
    assert_eq!(ints(&col("a", DataType::Int64), &b), [Some(1), None, Some(3)]);
}

#[test]
fn missing_and_mistyped_columns_are_errors() {
    let b = ints_batch(vec![Some(1)]);
    assert!(matches!(
        eval(&col("nope", DataType::Int64), &b),
        Err(EvalError::MissingColumn(name)) if name == "nope"
    ));
    match eval(&col("a", DataType::String), &b) {
        Err(EvalError::ColumnType { column, expected, found }) => {
            assert_eq!(column, "a");
            assert_eq!(expected, "Utf8");
            assert_eq!(found, "Int64");
        }
        other => panic!("expected a column type error, got {other:?}"),
    }
    assert!(matches!(eval(&col("a", DataType::Float64), &b), Err(EvalError::ColumnType { .. })));
}

#[test]
fn float_columns_read_nan_and_infinity_as_null() {
    let b = batch(vec![
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                Some(f64::NAN),
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                None,
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(f32::NAN),
                Some(2.0),
                Some(f32::INFINITY),
                None,
                Some(-0.0),
            ])),
        ),
    ]);
    assert_eq!(floats(&col("f64", DataType::Float64), &b), [Some(1.0), None, None, None, None]);
    assert_eq!(floats32(&col("f32", DataType::Float32), &b), [None, Some(2.0), None, None, Some(-0.0)]);
    // `is null` sees the same nulls the value does.
    let is_null = node(ExprKind::FieldIsNull { field: "f64".into(), negated: false }, DataType::Bool);
    assert_eq!(bools(&is_null, &b), [Some(false), Some(true), Some(true), Some(true), Some(true)]);
}

#[test]
fn timestamp_columns_with_a_zone_label_are_read_as_utc() {
    let labelled = TimestampMicrosecondArray::from(vec![Some(5), None]).with_timezone("UTC");
    let b = batch(vec![("ts", Arc::new(labelled))]);
    assert_eq!(timestamps(&col("ts", DataType::Timestamp), &b), [Some(5), None]);
}

fn list_column(item_name: &str, values: ArrayRef, offsets: &[i32], valid: &[bool]) -> ArrayRef {
    Arc::new(ListArray::new(
        Arc::new(Field::new(item_name, values.data_type().clone(), true)),
        arrow::buffer::OffsetBuffer::new(offsets.to_vec().into()),
        values,
        Some(valid.to_vec().into()),
    ))
}

#[test]
fn array_columns_are_relabelled_and_nan_elements_become_null() {
    let values: ArrayRef = Arc::new(Float32Array::from(vec![1.0, f32::NAN, 3.0]));
    let b = batch(vec![("emb", list_column("element", values, &[0, 2, 3, 3], &[true, true, false]))]);
    let out = run(&col("emb", DataType::Array(ElementType::Float32)), &b);
    let list = out.as_list::<i32>();
    assert!(list.is_null(2));
    let first: Vec<Option<f32>> = list.value(0).as_primitive::<Float32Type>().iter().collect();
    assert_eq!(first, [Some(1.0), None]);
    let second: Vec<Option<f32>> = list.value(1).as_primitive::<Float32Type>().iter().collect();
    assert_eq!(second, [Some(3.0)]);

    let wrong: ArrayRef = Arc::new(Int64Array::from(vec![1]));
    let b = batch(vec![("emb", list_column("item", wrong, &[0, 1], &[true]))]);
    assert!(matches!(
        eval(&col("emb", DataType::Array(ElementType::Float32)), &b),
        Err(EvalError::ColumnType { .. })
    ));
}

#[test]
fn field_is_null_reads_only_nullness_of_any_type() {
    let b = batch(vec![("x", Arc::new(Int32Array::from(vec![Some(1), None])))]);
    for (negated, expected) in [(false, [Some(false), Some(true)]), (true, [Some(true), Some(false)])] {
        let e = node(ExprKind::FieldIsNull { field: "x".into(), negated }, DataType::Bool);
        assert_eq!(bools(&e, &b), expected);
    }
    let missing = node(ExprKind::FieldIsNull { field: "y".into(), negated: false }, DataType::Bool);
    assert!(matches!(eval(&missing, &b), Err(EvalError::MissingColumn(_))));
}

// ---------------------------------------------------------------------------
// Integer arithmetic.
// ---------------------------------------------------------------------------

/// `a op b` over the rows of two int64 columns.
fn int_op(op: ArithOp, pairs: &[(Option<i64>, Option<i64>)]) -> Vec<Option<i64>> {
    let b = batch(vec![
        ("a", Arc::new(Int64Array::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>()))),
        ("b", Arc::new(Int64Array::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>()))),
    ]);
    ints(&arith(op, col("a", DataType::Int64), col("b", DataType::Int64)), &b)
}

#[test]
fn int_add_sub_mul() {
    use ArithOp::*;
    let pairs = [(Some(2), Some(3)), (Some(-2), Some(3)), (None, Some(1)), (Some(1), None), (None, None)];
    assert_eq!(int_op(Add, &pairs), [Some(5), Some(1), None, None, None]);
    assert_eq!(int_op(Sub, &pairs), [Some(-1), Some(-5), None, None, None]);
    assert_eq!(int_op(Mul, &pairs), [Some(6), Some(-6), None, None, None]);
}

#[test]
fn int_overflow_is_null() {
    use ArithOp::*;
    assert_eq!(int_op(Add, &[(Some(i64::MAX), Some(1)), (Some(i64::MAX), Some(0))]), [None, Some(i64::MAX)]);
    assert_eq!(int_op(Sub, &[(Some(i64::MIN), Some(1)), (Some(i64::MIN), Some(0))]), [None, Some(i64::MIN)]);
    assert_eq!(
        int_op(
            Mul,
            &[
                (Some(i64::MAX), Some(2)),
                (Some(i64::MIN), Some(-1)),
                (Some(1 << 32), Some(1 << 31)),
                (Some(1 << 32), Some(1 << 30))
            ]
        ),
        [None, None, None, Some(1 << 62)]
    );
}

#[test]
fn int_division_truncates_and_zero_or_overflow_is_null() {
    use ArithOp::*;
    assert_eq!(
        int_op(
            Div,
            &[
                (Some(7), Some(2)),
                (Some(-7), Some(2)),
                (Some(7), Some(-2)),
                (Some(-7), Some(-2)),
                (Some(7), Some(0)),
                (Some(0), Some(0)),
                (Some(i64::MIN), Some(-1)),
                (Some(i64::MIN), Some(1)),
                (None, Some(0)),
            ]
        ),
        [Some(3), Some(-3), Some(-3), Some(3), None, None, None, Some(i64::MIN), None]
    );
}

#[test]
fn int_modulo_takes_the_dividends_sign() {
    use ArithOp::*;
    assert_eq!(
        int_op(
            Mod,
            &[
                (Some(7), Some(3)),
                (Some(-7), Some(3)),
                (Some(7), Some(-3)),
                (Some(-7), Some(-3)),
                (Some(7), Some(0)),
                (Some(i64::MIN), Some(-1)),
                (Some(i64::MIN), Some(3)),
                (Some(1), None),
            ]
        ),
        [Some(1), Some(-1), Some(1), Some(-1), None, None, Some(-2), None]
    );
}

#[test]
fn int_arithmetic_with_literal_operands() {
    let b = ints_batch(vec![Some(10), None, Some(i64::MAX)]);
    let a = || col("a", DataType::Int64);
    assert_eq!(ints(&arith(ArithOp::Add, a(), int(1)), &b), [Some(11), None, None]);
    assert_eq!(ints(&arith(ArithOp::Sub, int(1), a()), &b), [Some(-9), None, Some(i64::MIN + 2)]);
    assert_eq!(ints(&arith(ArithOp::Div, a(), int(0)), &b), [None, None, None]);
    assert_eq!(ints(&arith(ArithOp::Mul, a(), null(DataType::Int64)), &b), [None, None, None]);
    assert_eq!(ints(&arith(ArithOp::Mod, int(7), int(-2)), &b), [Some(1); 3]);
    assert_eq!(ints(&arith(ArithOp::Add, int(i64::MAX), int(1)), &b), [None; 3]);
}

#[test]
fn int_negation() {
    let b = ints_batch(vec![Some(5), Some(-5), Some(0), Some(i64::MIN), Some(i64::MAX), None]);
    assert_eq!(
        ints(&neg(col("a", DataType::Int64)), &b),
        [Some(-5), Some(5), Some(0), None, Some(-i64::MAX), None]
    );
}

// ---------------------------------------------------------------------------
// Float arithmetic.
// ---------------------------------------------------------------------------

fn float_op(op: ArithOp, pairs: &[(Option<f64>, Option<f64>)]) -> Vec<Option<f64>> {
    let b = batch(vec![
        ("a", Arc::new(Float64Array::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>()))),
        ("b", Arc::new(Float64Array::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>()))),
    ]);
    floats(&arith(op, col("a", DataType::Float64), col("b", DataType::Float64)), &b)
}

#[test]
fn float_arithmetic() {
    use ArithOp::*;
    let pairs = [(Some(1.5), Some(0.5)), (Some(-3.0), Some(2.0)), (None, Some(1.0)), (Some(1.0), None)];
    assert_eq!(float_op(Add, &pairs), [Some(2.0), Some(-1.0), None, None]);
    assert_eq!(float_op(Sub, &pairs), [Some(1.0), Some(-5.0), None, None]);
    assert_eq!(float_op(Mul, &pairs), [Some(0.75), Some(-6.0), None, None]);
    assert_eq!(float_op(Div, &pairs), [Some(3.0), Some(-1.5), None, None]);
    assert_eq!(float_op(Mod, &pairs), [Some(0.0), Some(-1.0), None, None]);
}

#[test]
fn float_division_and_modulo_by_zero_are_null() {
    use ArithOp::*;
    let pairs =
        [(Some(1.0), Some(0.0)), (Some(-1.0), Some(0.0)), (Some(0.0), Some(0.0)), (Some(1.0), Some(-0.0))];
    assert_eq!(float_op(Div, &pairs), [None; 4]);
    assert_eq!(float_op(Mod, &pairs), [None; 4]);
}

#[test]
fn float_modulo_takes_the_dividends_sign() {
    assert_eq!(
        float_op(ArithOp::Mod, &[(Some(-7.5), Some(2.0)), (Some(7.5), Some(-2.0)), (Some(7.5), Some(2.0))]),
        [Some(-1.5), Some(1.5), Some(1.5)]
    );
}

#[test]
fn float_overflow_is_null() {
    use ArithOp::*;
    assert_eq!(
        float_op(Mul, &[(Some(1e308), Some(10.0)), (Some(f64::MAX), Some(1.0))]),
        [None, Some(f64::MAX)]
    );
    assert_eq!(float_op(Add, &[(Some(f64::MAX), Some(f64::MAX))]), [None]);
    assert_eq!(float_op(Sub, &[(Some(-f64::MAX), Some(f64::MAX))]), [None]);
    assert_eq!(float_op(Div, &[(Some(1e308), Some(1e-308))]), [None]);
}

#[test]
fn nan_inputs_never_reach_arithmetic() {
    let b = floats_batch(vec![Some(f64::NAN), Some(f64::INFINITY), Some(1.0)]);
    let e = arith(ArithOp::Mul, col("a", DataType::Float64), float(0.0));
    assert_eq!(floats(&e, &b), [None, None, Some(0.0)]);
}

#[test]
fn float_negation() {
    let b = floats_batch(vec![Some(1.5), Some(-2.0), None]);
    assert_eq!(floats(&neg(col("a", DataType::Float64)), &b), [Some(-1.5), Some(2.0), None]);
}

// ---------------------------------------------------------------------------
// Comparisons.
// ---------------------------------------------------------------------------

const ALL_CMP: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];

/// `[==, !=, <, <=, >, >=]` of `a` against `b`, both columns of type `ty`.
fn all_comparisons(a: ArrayRef, b: ArrayRef, ty: DataType) -> Vec<Vec<Option<bool>>> {
    let data = batch(vec![("a", a), ("b", b)]);
    ALL_CMP.iter().map(|op| bools(&compare(*op, col("a", ty), col("b", ty)), &data)).collect()
}

/// The expected answers of all six comparisons for ordered pairs, where
/// `order` is `Some(Less/Equal/Greater)` or `None` for a null operand.
fn expected(orders: &[Option<std::cmp::Ordering>]) -> Vec<Vec<Option<bool>>> {
    use std::cmp::Ordering::*;
    let ops: [fn(std::cmp::Ordering) -> bool; 6] =
        [|o| o == Equal, |o| o != Equal, |o| o == Less, |o| o != Greater, |o| o == Greater, |o| o != Less];
    ops.iter().map(|op| orders.iter().map(|o| o.map(op)).collect()).collect()
}

#[test]
fn compare_ints() {
    use std::cmp::Ordering::*;
    assert_eq!(
        all_comparisons(
            Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None, Some(i64::MIN)])),
            Arc::new(Int64Array::from(vec![Some(2), Some(2), Some(-3), Some(1), Some(i64::MAX)])),
            DataType::Int64
        ),
        expected(&[Some(Less), Some(Equal), Some(Greater), None, Some(Less)])
    );
}

#[test]
fn compare_floats_numerically() {
    use std::cmp::Ordering::*;
    assert_eq!(
        all_comparisons(
            Arc::new(Float64Array::from(vec![Some(-0.0), Some(1.5), Some(-1e300), None, Some(f64::NAN)])),
            Arc::new(Float64Array::from(vec![Some(0.0), Some(1.25), Some(1e-300), Some(1.0), Some(1.0)])),
            DataType::Float64
        ),
        // -0.0 == 0.0; a NaN in the column reads as null.
        expected(&[Some(Equal), Some(Greater), Some(Less), None, None])
    );
    assert_eq!(
        all_comparisons(
            Arc::new(Float32Array::from(vec![Some(-0.0f32), Some(0.5), None])),
            Arc::new(Float32Array::from(vec![Some(0.0f32), Some(0.25), Some(1.0)])),
            DataType::Float32
        ),
        expected(&[Some(Equal), Some(Greater), None])
    );
}

#[test]
fn compare_strings_by_bytes() {
    use std::cmp::Ordering::*;
    assert_eq!(
        all_comparisons(
            Arc::new(StringArray::from(vec![Some("B"), Some("é"), Some(""), Some("ab"), None, Some("x")])),
            Arc::new(StringArray::from(vec![Some("a"), Some("z"), Some(""), Some("abc"), Some("a"), None])),
            DataType::String
        ),
        expected(&[Some(Less), Some(Greater), Some(Equal), Some(Less), None, None])
    );
}

#[test]
fn compare_bytes_timestamps_and_bools() {
    use std::cmp::Ordering::*;
    assert_eq!(
        all_comparisons(
            Arc::new(BinaryArray::from(vec![Some(&[0xffu8][..]), Some(&[1u8, 2][..]), None])),
            Arc::new(BinaryArray::from(vec![Some(&[0x00u8, 0][..]), Some(&[1u8, 2][..]), Some(&[][..])])),
            DataType::Bytes
        ),
        expected(&[Some(Greater), Some(Equal), None])
    );
    assert_eq!(
        all_comparisons(
            Arc::new(TimestampMicrosecondArray::from(vec![Some(-MICROS_PER_DAY), Some(5), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(0), Some(5), Some(0)])),
            DataType::Timestamp
        ),
        expected(&[Some(Less), Some(Equal), None])
    );
    assert_eq!(
        all_comparisons(
            Arc::new(BooleanArray::from(vec![Some(false), Some(true), Some(true), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(true), Some(false), Some(true)])),
            DataType::Bool
        ),
        expected(&[Some(Less), Some(Equal), Some(Greater), None])
    );
}

#[test]
fn compare_with_literals_on_either_side() {
    let b = ints_batch(vec![Some(1), Some(5), None]);
    let a = || col("a", DataType::Int64);
    assert_eq!(bools(&compare(CmpOp::Lt, a(), int(3)), &b), [Some(true), Some(false), None]);
    assert_eq!(bools(&compare(CmpOp::Lt, int(3), a()), &b), [Some(false), Some(true), None]);
    assert_eq!(bools(&compare(CmpOp::Eq, a(), null(DataType::Int64)), &b), [None; 3]);
    assert_eq!(bools(&compare(CmpOp::Ge, int(3), int(3)), &b), [Some(true); 3]);
    let f = floats_batch(vec![Some(-0.0), Some(2.0), None]);
    assert_eq!(
        bools(&compare(CmpOp::Eq, col("a", DataType::Float64), float(0.0)), &f),
        [Some(true), Some(false), None]
    );
    assert_eq!(
        bools(&compare(CmpOp::Gt, float(1.0), col("a", DataType::Float64)), &f),
        [Some(true), Some(false), None]
    );
    let st = strings_batch(vec![Some("gold"), Some("Gold"), None]);
    assert_eq!(
        bools(&compare(CmpOp::Eq, col("a", DataType::String), text("gold")), &st),
        [Some(true), Some(false), None]
    );
}

// ---------------------------------------------------------------------------
// Three-valued logic and null tests.
// ---------------------------------------------------------------------------

/// Every combination of true, false and null in columns `a` and `b`.
fn truth_table() -> RecordBatch {
    let values = [Some(true), Some(false), None];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for x in values {
        for y in values {
            a.push(x);
            b.push(y);
        }
    }
    batch(vec![("a", Arc::new(BooleanArray::from(a))), ("b", Arc::new(BooleanArray::from(b)))])
}

#[test]
fn and_or_follow_sql_three_valued_logic() {
    let t = truth_table();
    let (a, b) = (|| col("a", DataType::Bool), || col("b", DataType::Bool));
    let (tr, fa, nu) = (Some(true), Some(false), None);
    // Rows: (t,t) (t,f) (t,n) (f,t) (f,f) (f,n) (n,t) (n,f) (n,n)
    assert_eq!(bools(&and(a(), b()), &t), [tr, fa, nu, fa, fa, fa, nu, fa, nu]);
    assert_eq!(bools(&or(a(), b()), &t), [tr, tr, tr, tr, fa, nu, tr, nu, nu]);
}

#[test]
fn and_or_with_literal_operands() {
    let b = batch(vec![("a", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])))]);
    let a = || col("a", DataType::Bool);
    assert_eq!(bools(&and(a(), boolean(false)), &b), [Some(false), Some(false), Some(false)]);
    assert_eq!(bools(&or(null(DataType::Bool), a()), &b), [Some(true), None, None]);
    assert_eq!(bools(&and(boolean(true), null(DataType::Bool)), &b), [None, None, None]);
}

#[test]
fn not_is_three_valued() {
    let b = batch(vec![("a", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])))]);
    assert_eq!(bools(&not(col("a", DataType::Bool)), &b), [Some(false), Some(true), None]);
}

#[test]
fn is_null_and_is_not_null() {
    let b = ints_batch(vec![Some(1), None, Some(i64::MAX)]);
    // The overflow in the last row is a null like any other.
    let sum = || arith(ArithOp::Add, col("a", DataType::Int64), int(1));
    assert_eq!(bools(&is_null(sum(), false), &b), [Some(false), Some(true), Some(true)]);
    assert_eq!(bools(&is_null(sum(), true), &b), [Some(true), Some(false), Some(false)]);
    assert_eq!(bools(&is_null(null(DataType::String), false), &b), [Some(true); 3]);
    assert_eq!(bools(&is_null(text(""), false), &b), [Some(false); 3]);
}

// ---------------------------------------------------------------------------
// in (...)
// ---------------------------------------------------------------------------

#[test]
fn in_list_of_strings() {
    let b = strings_batch(vec![Some("gold"), Some("silver"), None, Some("")]);
    let list = vec![Literal::String("gold".into()), Literal::String("platinum".into())];
    let a = || col("a", DataType::String);
    assert_eq!(bools(&in_list(a(), list.clone(), false), &b), [Some(true), Some(false), None, Some(false)]);
    assert_eq!(bools(&in_list(a(), list, true), &b), [Some(false), Some(true), None, Some(true)]);
}

#[test]
fn in_list_with_a_null_member() {
    let b = ints_batch(vec![Some(1), Some(2), None]);
    let list = vec![Literal::Int64(1), Literal::Null];
    let a = || col("a", DataType::Int64);
    // A match is true; no match is unknown, because the null might be equal.
    assert_eq!(bools(&in_list(a(), list.clone(), false), &b), [Some(true), None, None]);
    assert_eq!(bools(&in_list(a(), list, true), &b), [Some(false), None, None]);
    assert_eq!(bools(&in_list(a(), vec![Literal::Null], false), &b), [None, None, None]);
}

#[test]
fn in_list_of_ints_floats_bools_and_bytes() {
    let b = ints_batch(vec![Some(3), Some(4), Some(i64::MIN)]);
    let many: Vec<Literal> =
        (0..100).map(|i| Literal::Int64(i * 3)).chain([Literal::Int64(i64::MIN)]).collect();
    assert_eq!(
        bools(&in_list(col("a", DataType::Int64), many, false), &b),
        [Some(true), Some(false), Some(true)]
    );

    let f = floats_batch(vec![Some(-0.0), Some(0.5), Some(0.25), None]);
    let list = vec![Literal::Float64(0.0), Literal::Float64(0.5), Literal::Float64(f64::NAN)];
    // The NaN literal is a null member.
    assert_eq!(
        bools(&in_list(col("a", DataType::Float64), list, false), &f),
        [Some(true), Some(true), None, None]
    );

    let f32s = batch(vec![("a", Arc::new(Float32Array::from(vec![Some(0.1f32), Some(0.2)])) as ArrayRef)]);
    assert_eq!(
        bools(&in_list(col("a", DataType::Float32), vec![Literal::Float64(0.1)], false), &f32s),
        [Some(true), Some(false)]
    );

    let bs =
        batch(vec![("a", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as ArrayRef)]);
    assert_eq!(
        bools(&in_list(col("a", DataType::Bool), vec![Literal::Bool(true)], false), &bs),
        [Some(true), Some(false), None]
    );

    let by =
        batch(vec![("a", Arc::new(BinaryArray::from(vec![Some(&b"ab"[..]), Some(&b"x"[..])])) as ArrayRef)]);
    assert_eq!(
        bools(&in_list(col("a", DataType::Bytes), vec![Literal::String("ab".into())], true), &by),
        [Some(false), Some(true)]
    );
}

#[test]
fn in_list_of_a_literal_operand() {
    let b = rows(2);
    assert_eq!(
        bools(&in_list(int(2), vec![Literal::Int64(1), Literal::Int64(2)], false), &b),
        [Some(true); 2]
    );
    assert_eq!(bools(&in_list(null(DataType::Int64), vec![Literal::Int64(1)], true), &b), [None; 2]);
}

#[test]
fn in_list_literal_of_the_wrong_type_is_a_plan_error() {
    let b = ints_batch(vec![Some(1)]);
    let e = in_list(col("a", DataType::Int64), vec![Literal::String("1".into())], false);
    assert!(matches!(eval(&e, &b), Err(EvalError::PlanInvariant(_))));
}

// ---------------------------------------------------------------------------
// coalesce and if.
// ---------------------------------------------------------------------------

#[test]
fn coalesce_takes_the_first_non_null() {
    let b = batch(vec![
        ("a", Arc::new(Int64Array::from(vec![Some(1), None, None, None])) as ArrayRef),
        ("b", Arc::new(Int64Array::from(vec![Some(10), Some(20), None, None]))),
    ]);
    let e = call(
        Func::Coalesce,
        vec![col("a", DataType::Int64), col("b", DataType::Int64), int(0)],
        DataType::Int64,
    );
    assert_eq!(ints(&e, &b), [Some(1), Some(20), Some(0), Some(0)]);
    let all_null =
        call(Func::Coalesce, vec![col("a", DataType::Int64), null(DataType::Int64)], DataType::Int64);
    assert_eq!(ints(&all_null, &b), [Some(1), None, None, None]);
    let literal_first =
        call(Func::Coalesce, vec![null(DataType::Int64), col("b", DataType::Int64)], DataType::Int64);
    assert_eq!(ints(&literal_first, &b), [Some(10), Some(20), None, None]);
}

#[test]
fn coalesce_of_strings_and_arrays() {
    let b = strings_batch(vec![Some("x"), None]);
    let e = call(Func::Coalesce, vec![col("a", DataType::String), text("")], DataType::String);
    assert_eq!(strings(&e, &b), [s("x"), s("")]);

    let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
    let list = list_column("item", values, &[0, 2, 2, 2], &[true, false, true]);
    let other: ArrayRef = Arc::new(Int64Array::from(vec![9]));
    let fallback = list_column("item", other, &[0, 1, 1, 1], &[true, true, false]);
    let b = batch(vec![("a", list), ("b", fallback)]);
    let ty = DataType::Array(ElementType::Int64);
    let out = run(&call(Func::Coalesce, vec![col("a", ty), col("b", ty)], ty), &b);
    let out = out.as_list::<i32>();
    assert_eq!(out.value(0).len(), 2);
    assert_eq!(out.value(1).as_primitive::<Int64Type>().values().to_vec(), Vec::<i64>::new());
    assert!(out.is_valid(2));
    assert_eq!(out.value(2).len(), 0);
}

#[test]
fn if_picks_else_on_a_null_condition() {
    let b = batch(vec![
        ("c", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as ArrayRef),
        ("x", Arc::new(StringArray::from(vec![Some("t0"), None, Some("t2")]))),
        ("y", Arc::new(StringArray::from(vec![Some("e0"), Some("e1"), Some("e2")]))),
    ]);
    let e = call(
        Func::If,
        vec![col("c", DataType::Bool), col("x", DataType::String), col("y", DataType::String)],
        DataType::String,
    );
    assert_eq!(strings(&e, &b), [s("t0"), s("e1"), s("e2")]);
    let with_literals =
        call(Func::If, vec![col("c", DataType::Bool), int(1), null(DataType::Int64)], DataType::Int64);
    assert_eq!(ints(&with_literals, &b), [Some(1), None, None]);
    let literal_condition =
        call(Func::If, vec![null(DataType::Bool), col("x", DataType::String), text("no")], DataType::String);
    assert_eq!(strings(&literal_condition, &b), [s("no"), s("no"), s("no")]);
    let true_condition =
        call(Func::If, vec![boolean(true), col("x", DataType::String), text("no")], DataType::String);
    assert_eq!(strings(&true_condition, &b), [s("t0"), None, s("t2")]);
}

// ---------------------------------------------------------------------------
// String functions.
// ---------------------------------------------------------------------------

#[test]
fn lower_and_upper_use_full_unicode_case_mapping() {
    let b = strings_batch(vec![
        Some("Straße"),
        Some("ΟΔΟΣ"),
        Some("İ"),
        Some("ǅ"),
        Some("MiXeD ascii 123"),
        Some(""),
        None,
    ]);
    let a = || col("a", DataType::String);
    assert_eq!(
        strings(&call(Func::Upper, vec![a()], DataType::String), &b),
        [s("STRASSE"), s("ΟΔΟΣ"), s("İ"), s("Ǆ"), s("MIXED ASCII 123"), s(""), None]
    );
    assert_eq!(
        strings(&call(Func::Lower, vec![a()], DataType::String), &b),
        // Final sigma; dotted capital I lower-cases to "i" + combining dot.
        [s("straße"), s("οδος"), s("i\u{307}"), s("ǆ"), s("mixed ascii 123"), s(""), None]
    );
}

#[test]
fn length_counts_unicode_scalar_values() {
    let b = strings_batch(vec![Some("abc"), Some("é"), Some("e\u{301}"), Some("🦀"), Some(""), None]);
    assert_eq!(
        ints(&call(Func::Length, vec![col("a", DataType::String)], DataType::Int64), &b),
        [Some(3), Some(1), Some(2), Some(1), Some(0), None]
    );
}

#[test]
fn concat_is_null_if_any_argument_is() {
    let b = batch(vec![
        ("a", Arc::new(StringArray::from(vec![Some("a"), None, Some(""), Some("ü")])) as ArrayRef),
        ("b", Arc::new(StringArray::from(vec![Some("b"), Some("b"), Some(""), Some("ß")]))),
    ]);
    let e = call(
        Func::Concat,
        vec![col("a", DataType::String), text("-"), col("b", DataType::String)],
        DataType::String,
    );
    assert_eq!(strings(&e, &b), [s("a-b"), None, s("-"), s("ü-ß")]);
    let one = call(Func::Concat, vec![col("a", DataType::String)], DataType::String);
    assert_eq!(strings(&one, &b), [s("a"), None, s(""), s("ü")]);
    let literals = call(Func::Concat, vec![text("x"), text("y")], DataType::String);
    assert_eq!(strings(&literals, &b), [s("xy"), s("xy"), s("xy"), s("xy")]);
    let with_null = call(Func::Concat, vec![text("x"), null(DataType::String)], DataType::String);
    assert_eq!(strings(&with_null, &b), [None, None, None, None]);
}

// ---------------------------------------------------------------------------
// Numeric functions.
// ---------------------------------------------------------------------------

fn float_fn(func: Func, values: Vec<Option<f64>>) -> Vec<Option<f64>> {
    floats(&call(func, vec![col("a", DataType::Float64)], DataType::Float64), &floats_batch(values))
}

fn int_fn(func: Func, values: Vec<Option<i64>>) -> Vec<Option<i64>> {
    ints(&call(func, vec![col("a", DataType::Int64)], DataType::Int64), &ints_batch(values))
}

#[test]
fn abs_of_ints_and_floats() {
    assert_eq!(
        int_fn(Func::Abs, vec![Some(-3), Some(3), Some(0), Some(i64::MIN), Some(i64::MAX), None]),
        [Some(3), Some(3), Some(0), None, Some(i64::MAX), None]
    );
    assert_eq!(float_fn(Func::Abs, vec![Some(-2.5), Some(2.5), None]), [Some(2.5), Some(2.5), None]);
}

#[test]
fn logarithms_roots_and_exponentials() {
    assert_eq!(
        float_fn(Func::Ln, vec![Some(std::f64::consts::E), Some(1.0), Some(0.0), Some(-1.0), None]),
        [Some(1.0), Some(0.0), None, None, None]
    );
    assert_eq!(float_fn(Func::Log10, vec![Some(1000.0), Some(0.0), Some(-10.0)]), [Some(3.0), None, None]);
    assert_eq!(
        float_fn(Func::Sqrt, vec![Some(16.0), Some(-0.0), Some(-1.0), None]),
        [Some(4.0), Some(-0.0), None, None]
    );
    assert_eq!(
        float_fn(Func::Exp, vec![Some(0.0), Some(1000.0), Some(-1000.0), None]),
        [Some(1.0), None, Some(0.0), None]
    );
}

#[test]
fn pow_of_floats() {
    let b = batch(vec![
        (
            "x",
            Arc::new(Float64Array::from(vec![Some(2.0), Some(0.0), Some(-8.0), Some(10.0), Some(4.0), None]))
                as ArrayRef,
        ),
        (
            "y",
            Arc::new(Float64Array::from(vec![
                Some(10.0),
                Some(-1.0),
                Some(1.0 / 3.0),
                Some(400.0),
                Some(0.5),
                Some(1.0),
            ])),
        ),
    ]);
    let e =
        call(Func::Pow, vec![col("x", DataType::Float64), col("y", DataType::Float64)], DataType::Float64);
    assert_eq!(floats(&e, &b), [Some(1024.0), None, None, None, Some(2.0), None]);
}

#[test]
fn floor_ceil_round_of_floats() {
    let values = vec![Some(2.5), Some(-2.5), Some(0.5), Some(-0.5), Some(1.49), Some(-1.7), Some(3.0), None];
    assert_eq!(
        float_fn(Func::Floor, values.clone()),
        [Some(2.0), Some(-3.0), Some(0.0), Some(-1.0), Some(1.0), Some(-2.0), Some(3.0), None]
    );
    assert_eq!(
        float_fn(Func::Ceil, values.clone()),
        [Some(3.0), Some(-2.0), Some(1.0), Some(-0.0), Some(2.0), Some(-1.0), Some(3.0), None]
    );
    // Half away from zero.
    assert_eq!(
        float_fn(Func::Round, values),
        [Some(3.0), Some(-3.0), Some(1.0), Some(-1.0), Some(1.0), Some(-2.0), Some(3.0), None]
    );
}

#[test]
fn floor_ceil_round_are_the_identity_on_ints() {
    for func in [Func::Floor, Func::Ceil, Func::Round] {
        assert_eq!(
            int_fn(func, vec![Some(i64::MIN), Some(-3), Some(7), None]),
            [Some(i64::MIN), Some(-3), Some(7), None]
        );
    }
}

#[test]
fn least_and_greatest_propagate_nulls() {
    let b = batch(vec![
        ("a", Arc::new(Int64Array::from(vec![Some(1), Some(5), None, Some(i64::MIN)])) as ArrayRef),
        ("b", Arc::new(Int64Array::from(vec![Some(3), Some(2), Some(1), Some(0)]))),
    ]);
    let args = || vec![col("a", DataType::Int64), col("b", DataType::Int64), int(4)];
    assert_eq!(
        ints(&call(Func::Least, args(), DataType::Int64), &b),
        [Some(1), Some(2), None, Some(i64::MIN)]
    );
    assert_eq!(ints(&call(Func::Greatest, args(), DataType::Int64), &b), [Some(4), Some(5), None, Some(4)]);
}

#[test]
fn least_and_greatest_of_floats_strings_and_timestamps() {
    let f = floats_batch(vec![Some(1.5), Some(-1.0), None]);
    assert_eq!(
        floats(&call(Func::Greatest, vec![col("a", DataType::Float64), float(0.0)], DataType::Float64), &f),
        [Some(1.5), Some(0.0), None]
    );
    let st = strings_batch(vec![Some("b"), Some("B"), Some(""), None]);
    assert_eq!(
        strings(&call(Func::Least, vec![col("a", DataType::String), text("a")], DataType::String), &st),
        [s("a"), s("B"), s(""), None]
    );
    assert_eq!(
        strings(&call(Func::Greatest, vec![text("a"), col("a", DataType::String)], DataType::String), &st),
        [s("b"), s("a"), s("a"), None]
    );
    let ts = batch(vec![
        ("a", Arc::new(TimestampMicrosecondArray::from(vec![Some(-5), Some(9), None])) as ArrayRef),
        ("b", Arc::new(TimestampMicrosecondArray::from(vec![Some(0), Some(0), Some(0)]))),
    ]);
    let args = vec![col("a", DataType::Timestamp), col("b", DataType::Timestamp)];
    assert_eq!(
        timestamps(&call(Func::Least, args.clone(), DataType::Timestamp), &ts),
        [Some(-5), Some(0), None]
    );
    assert_eq!(timestamps(&call(Func::Greatest, args, DataType::Timestamp), &ts), [Some(0), Some(9), None]);
}

#[test]
fn clamp_is_min_of_max() {
    let b = ints_batch(vec![Some(-5), Some(5), Some(50), None]);
    let e = call(Func::Clamp, vec![col("a", DataType::Int64), int(0), int(10)], DataType::Int64);
    assert_eq!(ints(&e, &b), [Some(0), Some(5), Some(10), None]);
    // lo > hi gives hi, as min(max(x, lo), hi) does.
    let inverted = call(Func::Clamp, vec![col("a", DataType::Int64), int(10), int(0)], DataType::Int64);
    assert_eq!(ints(&inverted, &b), [Some(0), Some(0), Some(0), None]);
    let null_bound =
        call(Func::Clamp, vec![col("a", DataType::Int64), null(DataType::Int64), int(0)], DataType::Int64);
    assert_eq!(ints(&null_bound, &b), [None; 4]);
    let f = floats_batch(vec![Some(-0.5), Some(0.25), Some(2.0), None]);
    let e = call(Func::Clamp, vec![col("a", DataType::Float64), float(0.0), float(1.0)], DataType::Float64);
    assert_eq!(floats(&e, &f), [Some(0.0), Some(0.25), Some(1.0), None]);
}

#[test]
fn bucketize_finds_the_first_bound_greater_than_x() {
    let b = floats_batch(vec![Some(-1.0), Some(0.0), Some(0.5), Some(1.0), Some(9.0), Some(10.0), None]);
    let e = node(
        ExprKind::Bucketize(Box::new(col("a", DataType::Float64)), vec![0.0, 1.0, 10.0]),
        DataType::Int64,
    );
    assert_eq!(ints(&e, &b), [Some(0), Some(1), Some(1), Some(2), Some(2), Some(3), None]);
    let no_bounds = node(ExprKind::Bucketize(Box::new(col("a", DataType::Float64)), vec![]), DataType::Int64);
    assert_eq!(ints(&no_bounds, &b), [Some(0), Some(0), Some(0), Some(0), Some(0), Some(0), None]);
}

#[test]
fn hash_bucket_is_the_canonical_hash_modulo_n() {
    let b = strings_batch(vec![Some(""), Some("fstore"), None]);
    let e = node(ExprKind::HashBucket(Box::new(col("a", DataType::String)), 1000), DataType::Int64);
    // Hashes from the test vectors in hash.rs.
    assert_eq!(
        ints(&e, &b),
        [Some((0xef46db3751d8e999u64 % 1000) as i64), Some((0xdb03c2c2f8f19740u64 % 1000) as i64), None]
    );
    let i = ints_batch(vec![Some(1), Some(-1)]);
    let e = node(ExprKind::HashBucket(Box::new(col("a", DataType::Int64)), i64::MAX), DataType::Int64);
    assert_eq!(
        ints(&e, &i),
        [
            Some((0x9f29cb17a2a49995u64 % i64::MAX as u64) as i64),
            Some((0x85d136adb773c6c9u64 % i64::MAX as u64) as i64)
        ]
    );
    let literal = node(ExprKind::HashBucket(Box::new(int(1)), 1), DataType::Int64);
    assert_eq!(ints(&literal, &i), [Some(0), Some(0)]);
    let zero = node(ExprKind::HashBucket(Box::new(int(1)), 0), DataType::Int64);
    assert!(matches!(eval(&zero, &i), Err(EvalError::PlanInvariant(_))));
}

// ---------------------------------------------------------------------------
// Timestamp functions.
// ---------------------------------------------------------------------------

fn between(func: Func, pairs: &[(Option<i64>, Option<i64>)]) -> Vec<Option<i64>> {
    let b = batch(vec![
        (
            "a",
            Arc::new(TimestampMicrosecondArray::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>()))
                as ArrayRef,
        ),
        ("b", Arc::new(TimestampMicrosecondArray::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>()))),
    ]);
    ints(&call(func, vec![col("a", DataType::Timestamp), col("b", DataType::Timestamp)], DataType::Int64), &b)
}

#[test]
fn days_between_truncates_toward_zero() {
    let day = MICROS_PER_DAY;
    assert_eq!(
        between(
            Func::DaysBetween,
            &[
                (Some(0), Some(2 * day)),
                (Some(0), Some(day + day / 2)),
                (Some(day + day / 2), Some(0)),
                (Some(0), Some(day - 1)),
                (Some(-day), Some(0)),
                (Some(5), Some(5)),
                (None, Some(0)),
                (Some(0), None),
                (Some(i64::MIN), Some(i64::MAX)),
                (Some(i64::MAX), Some(i64::MIN)),
            ]
        ),
        [
            Some(2),
            Some(1),
            Some(-1),
            Some(0),
            Some(1),
            Some(0),
            None,
            None,
            Some(213_503_982),
            Some(-213_503_982)
        ]
    );
}

#[test]
fn hours_between_truncates_toward_zero() {
    let hour = MICROS_PER_HOUR;
    assert_eq!(
        between(
            Func::HoursBetween,
            &[
                (Some(0), Some(3 * hour)),
                (Some(0), Some(-(hour + hour / 2))),
                (Some(-hour / 2), Some(hour / 2)),
                (Some(0), Some(hour - 1)),
                (None, None),
            ]
        ),
        [Some(3), Some(-1), Some(1), Some(0), None]
    );
}

/// UTC epoch microseconds of a calendar date (1900-01-01 is a Monday,
/// 1970-01-01 a Thursday, 2024-02-29 a Thursday, 1969-12-28 a Sunday).
fn date(days_from_epoch: i64, hour: i64) -> Option<i64> {
    Some(days_from_epoch * MICROS_PER_DAY + hour * MICROS_PER_HOUR)
}

#[test]
fn day_of_week_is_monday_zero_utc_before_and_after_1970() {
    let b = timestamps_batch(vec![
        date(0, 0),       // 1970-01-01 Thursday
        date(0, 23),      // still Thursday
        Some(-1),         // 1969-12-31T23:59:59.999999 Wednesday
        date(-4, 12),     // 1969-12-28 Sunday
        date(-3, 0),      // 1969-12-29 Monday
        date(-25_567, 5), // 1900-01-01 Monday
        date(19_782, 0),  // 2024-02-29 Thursday
        date(19_783, 0),  // 2024-03-01 Friday
        Some(i64::MIN),   // a Sunday, far before year 0
        None,
    ]);
    assert_eq!(
        ints(&call(Func::DayOfWeek, vec![col("a", DataType::Timestamp)], DataType::Int64), &b),
        [Some(3), Some(3), Some(2), Some(6), Some(0), Some(0), Some(3), Some(4), Some(6), None]
    );
}

#[test]
fn hour_of_day_is_utc_before_and_after_1970() {
    let b = timestamps_batch(vec![
        date(0, 0),
        date(0, 23),
        Some(-1),
        Some(-MICROS_PER_HOUR),
        Some(-MICROS_PER_HOUR - 1),
        date(-25_567, 5),
        date(19_782, 13).map(|t| t + 59 * 60 * MICROS_PER_SECOND),
        None,
    ]);
    assert_eq!(
        ints(&call(Func::HourOfDay, vec![col("a", DataType::Timestamp)], DataType::Int64), &b),
        [Some(0), Some(23), Some(23), Some(23), Some(22), Some(5), Some(13), None]
    );
}

// ---------------------------------------------------------------------------
// Casts.
// ---------------------------------------------------------------------------

#[test]
fn cast_int_to_float_string_bool_timestamp() {
    let b = ints_batch(vec![Some(0), Some(-42), Some(i64::MAX), Some(i64::MIN), None]);
    let a = || col("a", DataType::Int64);
    assert_eq!(
        floats(&cast(a(), DataType::Float64), &b),
        [Some(0.0), Some(-42.0), Some(9.223372036854776e18), Some(-9.223372036854776e18), None]
    );
    assert_eq!(
        floats32(&cast(a(), DataType::Float32), &b),
        [Some(0.0), Some(-42.0), Some(9.223372e18), Some(-9.223372e18), None]
    );
    assert_eq!(
        strings(&cast(a(), DataType::String), &b),
        [s("0"), s("-42"), s("9223372036854775807"), s("-9223372036854775808"), None]
    );
    assert_eq!(
        bools(&cast(a(), DataType::Bool), &b),
        [Some(false), Some(true), Some(true), Some(true), None]
    );
    // Epoch milliseconds; beyond the microsecond range is null.
    assert_eq!(timestamps(&cast(a(), DataType::Timestamp), &b), [Some(0), Some(-42_000), None, None, None]);
    let millis = ints_batch(vec![Some(1_700_000_000_123), Some(i64::MAX / 1000)]);
    assert_eq!(
        timestamps(&cast(col("a", DataType::Int64), DataType::Timestamp), &millis),
        [Some(1_700_000_000_123_000), Some(i64::MAX / 1000 * 1000)]
    );
}

#[test]
fn cast_float_to_int_truncates_and_nulls_out_of_range() {
    let b = floats_batch(vec![
        Some(2.9),
        Some(-2.9),
        Some(-0.5),
        Some(9.2e18),
        Some(9.3e18),
        Some(-(2f64.powi(63))),
        Some(-9.3e18),
        Some(f64::NAN),
        Some(f64::INFINITY),
        None,
    ]);
    assert_eq!(
        ints(&cast(col("a", DataType::Float64), DataType::Int64), &b),
        [
            Some(2),
            Some(-2),
            Some(0),
            Some(9_200_000_000_000_000_000),
            None,
            Some(i64::MIN),
            None,
            None,
            None,
            None
        ]
    );
    let f32s = batch(vec![(
        "a",
        Arc::new(Float32Array::from(vec![Some(3.7f32), Some(-1e19), Some(f32::NAN)])) as ArrayRef,
    )]);
    assert_eq!(ints(&cast(col("a", DataType::Float32), DataType::Int64), &f32s), [Some(3), None, None]);
}

#[test]
fn cast_between_float_widths() {
    let b = floats_batch(vec![Some(0.1), Some(1e39), Some(-1e39), Some(1e-50), None]);
    assert_eq!(
        floats32(&cast(col("a", DataType::Float64), DataType::Float32), &b),
        [Some(0.1f32), None, None, Some(0.0), None]
    );
    let f32s = batch(vec![("a", Arc::new(Float32Array::from(vec![Some(0.1f32), None])) as ArrayRef)]);
    assert_eq!(
        floats(&cast(col("a", DataType::Float32), DataType::Float64), &f32s),
        [Some(f64::from(0.1f32)), None]
    );
}

#[test]
fn cast_float_to_string_is_shortest_round_trip_in_ecmascript_layout() {
    let b = floats_batch(vec![
        Some(1.0),
        Some(-0.0),
        Some(0.1),
        Some(-2.5),
        Some(1e21),
        Some(1e20),
        Some(1e-7),
        Some(123.456),
        None,
    ]);
    assert_eq!(
        strings(&cast(col("a", DataType::Float64), DataType::String), &b),
        [
            s("1"),
            s("0"),
            s("0.1"),
            s("-2.5"),
            s("1e+21"),
            s("100000000000000000000"),
            s("1e-7"),
            s("123.456"),
            None
        ]
    );
    let f32s =
        batch(vec![("a", Arc::new(Float32Array::from(vec![Some(0.1f32), Some(1.5), None])) as ArrayRef)]);
    assert_eq!(
        strings(&cast(col("a", DataType::Float32), DataType::String), &f32s),
        [s("0.1"), s("1.5"), None]
    );
}

#[test]
fn cast_string_to_int_parses_trimmed_decimal() {
    let b = strings_batch(vec![
        Some("42"),
        Some("  -7 \n"),
        Some("+5"),
        Some("9223372036854775807"),
        Some("9223372036854775808"),
        Some("-9223372036854775808"),
        Some("1.5"),
        Some("0x10"),
        Some("1_000"),
        Some(""),
        Some("   "),
        Some("12abc"),
        None,
    ]);
    assert_eq!(
        ints(&cast(col("a", DataType::String), DataType::Int64), &b),
        [
            Some(42),
            Some(-7),
            Some(5),
            Some(i64::MAX),
            None,
            Some(i64::MIN),
            None,
            None,
            None,
            None,
            None,
            None,
            None
        ]
    );
}

#[test]
fn cast_string_to_float_parses_trimmed_decimal_and_rejects_non_finite() {
    let b = strings_batch(vec![
        Some("1.5"),
        Some(" -2 "),
        Some("1e3"),
        Some(".5"),
        Some("-0"),
        Some("inf"),
        Some("NaN"),
        Some("1e400"),
        Some("abc"),
        Some(""),
        None,
    ]);
    assert_eq!(
        floats(&cast(col("a", DataType::String), DataType::Float64), &b),
        [Some(1.5), Some(-2.0), Some(1000.0), Some(0.5), Some(-0.0), None, None, None, None, None, None]
    );
}

#[test]
fn cast_string_to_bytes_keeps_the_utf8_bytes() {
    let b = strings_batch(vec![Some("é"), Some(""), None]);
    let out = run(&cast(col("a", DataType::String), DataType::Bytes), &b);
    let out = out.as_binary::<i32>();
    assert_eq!(out.value(0), "é".as_bytes());
    assert_eq!(out.value(1), b"");
    assert!(out.is_null(2));
}

#[test]
fn cast_bool_to_int_and_string() {
    let b = batch(vec![("a", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as ArrayRef)]);
    assert_eq!(ints(&cast(col("a", DataType::Bool), DataType::Int64), &b), [Some(1), Some(0), None]);
    assert_eq!(strings(&cast(col("a", DataType::Bool), DataType::String), &b), [s("true"), s("false"), None]);
}

#[test]
fn cast_timestamp_to_millis_floors() {
    let b = timestamps_batch(vec![Some(1_999), Some(-1), Some(-1_000), Some(-1_001), Some(i64::MIN), None]);
    assert_eq!(
        ints(&cast(col("a", DataType::Timestamp), DataType::Int64), &b),
        [Some(1), Some(-1), Some(-1), Some(-2), Some(i64::MIN.div_euclid(1000)), None]
    );
}

#[test]
fn cast_timestamp_to_rfc3339() {
    let b = timestamps_batch(vec![
        Some(0),
        Some(1_700_000_000_000_000),
        Some(1_700_000_000_000_001),
        Some(1_700_000_000_120_000),
        Some(-1),
        date(-25_567, 5),
        date(19_782, 13),
        Some(i64::MAX),
        None,
    ]);
    assert_eq!(
        strings(&cast(col("a", DataType::Timestamp), DataType::String), &b),
        [
            s("1970-01-01T00:00:00Z"),
            s("2023-11-14T22:13:20Z"),
            s("2023-11-14T22:13:20.000001Z"),
            s("2023-11-14T22:13:20.120000Z"),
            s("1969-12-31T23:59:59.999999Z"),
            s("1900-01-01T05:00:00Z"),
            s("2024-02-29T13:00:00Z"),
            // Year 294247 has no RFC 3339 form.
            None,
            None
        ]
    );
}

#[test]
fn cast_to_the_same_type_is_the_identity() {
    let b = strings_batch(vec![Some("x"), None]);
    assert_eq!(strings(&cast(col("a", DataType::String), DataType::String), &b), [s("x"), None]);
}

#[test]
fn casts_the_language_lacks_are_plan_errors() {
    let b = strings_batch(vec![Some("x")]);
    let e = cast(col("a", DataType::String), DataType::Timestamp);
    assert!(matches!(eval(&e, &b), Err(EvalError::PlanInvariant(_))));
}

// ---------------------------------------------------------------------------
// Empty batches.
// ---------------------------------------------------------------------------

#[test]
fn empty_batches_give_empty_results() {
    let b = batch(vec![
        ("i", Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef),
        ("f", Arc::new(Float64Array::from(Vec::<f64>::new()))),
        ("s", Arc::new(StringArray::from(Vec::<&str>::new()))),
        ("t", Arc::new(TimestampMicrosecondArray::from(Vec::<i64>::new()))),
        ("c", Arc::new(BooleanArray::from(Vec::<bool>::new()))),
    ]);
    let (i, f, st, t, c) = (
        || col("i", DataType::Int64),
        || col("f", DataType::Float64),
        || col("s", DataType::String),
        || col("t", DataType::Timestamp),
        || col("c", DataType::Bool),
    );
    let exprs = [
        int(1),
        text("x"),
        null(DataType::Array(ElementType::Float32)),
        arith(ArithOp::Div, i(), int(0)),
        arith(ArithOp::Mod, f(), float(2.0)),
        neg(i()),
        compare(CmpOp::Lt, st(), text("a")),
        compare(CmpOp::Eq, f(), f()),
        and(c(), boolean(true)),
        or(c(), c()),
        not(c()),
        is_null(i(), true),
        in_list(st(), vec![Literal::String("a".into()), Literal::Null], false),
        cast(i(), DataType::String),
        cast(t(), DataType::String),
        cast(st(), DataType::Float64),
        call(Func::Coalesce, vec![i(), int(0)], DataType::Int64),
        call(Func::If, vec![c(), st(), text("x")], DataType::String),
        call(Func::Upper, vec![st()], DataType::String),
        call(Func::Length, vec![st()], DataType::Int64),
        call(Func::Concat, vec![st(), text("x")], DataType::String),
        call(Func::Sqrt, vec![f()], DataType::Float64),
        call(Func::Least, vec![st(), text("x")], DataType::String),
        call(Func::Clamp, vec![i(), int(0), int(1)], DataType::Int64),
        call(Func::DaysBetween, vec![t(), t()], DataType::Int64),
        call(Func::DayOfWeek, vec![t()], DataType::Int64),
        node(ExprKind::Bucketize(Box::new(f()), vec![1.0]), DataType::Int64),
        node(ExprKind::HashBucket(Box::new(st()), 10), DataType::Int64),
    ];
    for e in &exprs {
        assert_eq!(run(e, &b).len(), 0, "{e}");
    }
}

// ---------------------------------------------------------------------------
// Property tests: the vectorised kernels against a row-at-a-time reference.
// ---------------------------------------------------------------------------

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The language's integer arithmetic, one row at a time.
    fn int_reference(op: ArithOp, a: Option<i64>, b: Option<i64>) -> Option<i64> {
        let (a, b) = (a?, b?);
        match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div => {
                if b == 0 || (a == i64::MIN && b == -1) {
                    None
                } else {
                    Some(a / b)
                }
            }
            ArithOp::Mod => {
                if b == 0 || (a == i64::MIN && b == -1) {
                    None
                } else {
                    Some(a % b)
                }
            }
        }
    }

    fn float_reference(op: ArithOp, a: Option<f64>, b: Option<f64>) -> Option<f64> {
        let (a, b) = (a?, b?);
        let out = match op {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div => a / b,
            ArithOp::Mod => a % b,
        };
        out.is_finite().then_some(out)
    }

    fn cmp_reference<T: PartialOrd>(op: CmpOp, a: Option<T>, b: Option<T>) -> Option<bool> {
        let (a, b) = (a?, b?);
        Some(match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        })
    }

    fn arith_op() -> impl Strategy<Value = ArithOp> {
        prop_oneof![
            Just(ArithOp::Add),
            Just(ArithOp::Sub),
            Just(ArithOp::Mul),
            Just(ArithOp::Div),
            Just(ArithOp::Mod)
        ]
    }

    fn cmp_op() -> impl Strategy<Value = CmpOp> {
        prop_oneof![
            Just(CmpOp::Eq),
            Just(CmpOp::Ne),
            Just(CmpOp::Lt),
            Just(CmpOp::Le),
            Just(CmpOp::Gt),
            Just(CmpOp::Ge)
        ]
    }

    /// Mostly small values (so that equality and zero divisors happen), some
    /// at the edges of the range, some anywhere.
    fn an_int() -> impl Strategy<Value = i64> {
        prop_oneof![
            -5i64..5,
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            any::<i64>(),
            (-(1i64 << 32))..(1i64 << 32)
        ]
    }

    fn a_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-5i32..5).prop_map(f64::from),
            Just(0.0),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::NAN),
            Just(f64::INFINITY),
            -1e6f64..1e6,
            any::<f64>()
        ]
    }

    fn int_column() -> impl Strategy<Value = Vec<Option<i64>>> {
        prop::collection::vec(prop::option::weighted(0.85, an_int()), 0..40)
    }

    /// Two columns of equal length.
    fn int_pairs() -> impl Strategy<Value = Vec<(Option<i64>, Option<i64>)>> {
        prop::collection::vec(
            (prop::option::weighted(0.85, an_int()), prop::option::weighted(0.85, an_int())),
            0..40,
        )
    }

    fn float_pairs() -> impl Strategy<Value = Vec<(Option<f64>, Option<f64>)>> {
        prop::collection::vec(
            (prop::option::weighted(0.85, a_float()), prop::option::weighted(0.85, a_float())),
            0..40,
        )
    }

    /// What a float column reads as: NaN and ±inf are null.
    fn as_read(v: Option<f64>) -> Option<f64> {
        v.filter(|v| v.is_finite())
    }

    fn int_columns(pairs: &[(Option<i64>, Option<i64>)]) -> RecordBatch {
        batch(vec![
            ("a", Arc::new(Int64Array::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>())) as ArrayRef),
            ("b", Arc::new(Int64Array::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>()))),
        ])
    }

    fn float_columns(pairs: &[(Option<f64>, Option<f64>)]) -> RecordBatch {
        batch(vec![
            ("a", Arc::new(Float64Array::from(pairs.iter().map(|p| p.0).collect::<Vec<_>>())) as ArrayRef),
            ("b", Arc::new(Float64Array::from(pairs.iter().map(|p| p.1).collect::<Vec<_>>()))),
        ])
    }

    /// A literal operand, or a null one.
    fn literal_int(v: Option<i64>) -> Expr {
        v.map_or_else(|| null(DataType::Int64), int)
    }

    proptest! {
        #[test]
        fn int_arithmetic_matches_the_reference(op in arith_op(), pairs in int_pairs()) {
            let b = int_columns(&pairs);
            let got = ints(&arith(op, col("a", DataType::Int64), col("b", DataType::Int64)), &b);
            let want: Vec<_> = pairs.iter().map(|(a, b)| int_reference(op, *a, *b)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn int_arithmetic_with_a_literal_matches_the_reference(
            op in arith_op(),
            column in int_column(),
            literal in prop::option::weighted(0.9, an_int()),
        ) {
            let b = ints_batch(column.clone());
            let right = ints(&arith(op, col("a", DataType::Int64), literal_int(literal)), &b);
            let left = ints(&arith(op, literal_int(literal), col("a", DataType::Int64)), &b);
            let want_right: Vec<_> = column.iter().map(|a| int_reference(op, *a, literal)).collect();
            let want_left: Vec<_> = column.iter().map(|a| int_reference(op, literal, *a)).collect();
            prop_assert_eq!(right, want_right);
            prop_assert_eq!(left, want_left);
        }

        #[test]
        fn float_arithmetic_matches_the_reference(op in arith_op(), pairs in float_pairs()) {
            let b = float_columns(&pairs);
            let got = floats(&arith(op, col("a", DataType::Float64), col("b", DataType::Float64)), &b);
            let want: Vec<_> = pairs
                .iter()
                .map(|(a, b)| float_reference(op, as_read(*a), as_read(*b)))
                .collect();
            // Compare bits, so that -0.0 and 0.0 are told apart.
            let bits = |v: Vec<Option<f64>>| v.into_iter().map(|x| x.map(f64::to_bits)).collect::<Vec<_>>();
            prop_assert_eq!(bits(got), bits(want));
        }

        #[test]
        fn int_comparisons_match_the_reference(op in cmp_op(), pairs in int_pairs()) {
            let b = int_columns(&pairs);
            let got = bools(&compare(op, col("a", DataType::Int64), col("b", DataType::Int64)), &b);
            let want: Vec<_> = pairs.iter().map(|(a, b)| cmp_reference(op, *a, *b)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn int_comparisons_with_a_literal_match_the_reference(
            op in cmp_op(),
            column in int_column(),
            literal in prop::option::weighted(0.9, an_int()),
        ) {
            let b = ints_batch(column.clone());
            let got = bools(&compare(op, literal_int(literal), col("a", DataType::Int64)), &b);
            let want: Vec<_> = column.iter().map(|a| cmp_reference(op, literal, *a)).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn float_comparisons_match_the_reference(op in cmp_op(), pairs in float_pairs()) {
            let b = float_columns(&pairs);
            let got = bools(&compare(op, col("a", DataType::Float64), col("b", DataType::Float64)), &b);
            let want: Vec<_> = pairs
                .iter()
                .map(|(a, b)| cmp_reference(op, as_read(*a), as_read(*b)))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn string_comparisons_match_the_reference(
            op in cmp_op(),
            pairs in prop::collection::vec(
                (prop::option::weighted(0.85, "[aBé🦀]{0,3}"), prop::option::weighted(0.85, "[aBé🦀]{0,3}")),
                0..30,
            ),
        ) {
            let b = batch(vec![
                ("a", Arc::new(StringArray::from(pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>())) as ArrayRef),
                ("b", Arc::new(StringArray::from(pairs.iter().map(|p| p.1.clone()).collect::<Vec<_>>()))),
            ]);
            let got = bools(&compare(op, col("a", DataType::String), col("b", DataType::String)), &b);
            let want: Vec<_> = pairs
                .iter()
                .map(|(a, b)| cmp_reference(op, a.as_deref().map(str::as_bytes), b.as_deref().map(str::as_bytes)))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn in_list_matches_the_reference(
            column in int_column(),
            list in prop::collection::vec(prop::option::weighted(0.8, -5i64..5), 0..6),
            negated in any::<bool>(),
        ) {
            let b = ints_batch(column.clone());
            let literals = list.iter().map(|v| v.map_or(Literal::Null, Literal::Int64)).collect();
            let got = bools(&in_list(col("a", DataType::Int64), literals, negated), &b);
            let want: Vec<_> = column
                .iter()
                .map(|x| {
                    // SQL: x in (l1, l2, ...) is x = l1 or x = l2 or ...
                    let x = (*x)?;
                    let mut found = Some(false);
                    for l in &list {
                        found = match (found, l.map(|l| l == x)) {
                            (Some(true), _) | (_, Some(true)) => Some(true),
                            (Some(false), Some(false)) => Some(false),
                            _ => None,
                        };
                    }
                    found.map(|f| f != negated)
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
