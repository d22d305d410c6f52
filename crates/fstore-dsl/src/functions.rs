//! The row functions of the language, in one table that the checker and the
//! evaluator both read.
//!
//! Each entry (a `RowFunction`) gives a function's name as written, how many
//! arguments it takes, how the checker types a call (its `Signature`) and
//! which kernel the evaluator runs for it. A new function is one entry here,
//! the [`Func`] the plan names it by, its kernel in
//! [`crate::eval`](mod@crate::eval), and its line in the Functions table of
//! the project's `docs/dsl.md` (a test checks that the docs list exactly the
//! functions of this table).
//!
//! The order of the table is the order in which "did you mean" hints consider
//! the names, so it is part of what diagnostics say.
//!
//! Aggregations (`count`, `sum`, ...) are not row functions: they are a
//! feature's whole expression, typed by the checker and computed by
//! [`crate::agg`].

use crate::eval::arith::{self, Pick};
use crate::eval::time::{self, MICROS_PER_DAY, MICROS_PER_HOUR};
use crate::eval::{logic, text, vector, EvalError, Val};
use crate::plan::Func;
use crate::types::DataType;

/// One row function of the language.
pub(crate) struct RowFunction {
    /// The name as written in definitions.
    pub(crate) name: &'static str,
    /// The fewest arguments a call takes.
    pub(crate) min_args: usize,
    /// The most arguments a call takes; [`ANY`] for no limit.
    pub(crate) max_args: usize,
    pub(crate) form: Form,
}

/// What a call of a row function becomes in the plan.
pub(crate) enum Form {
    /// `ExprKind::Call(func, args)`, typed by `signature` and evaluated by
    /// `kernel`.
    Call { func: Func, signature: Signature, kernel: Kernel },
    /// `bucketize(x, [b1, ...])`: its bounds are literals, so it is a plan
    /// node of its own, `ExprKind::Bucketize`.
    Bucketize,
    /// `hash_bucket(x, n)`: its bucket count is a literal, so it is a plan
    /// node of its own, `ExprKind::HashBucket`.
    HashBucket,
}

/// How the checker types the arguments of a call, and what type the call has.
/// Both passes read it: pass 1 for the demands a call puts on fields and the
/// type it is known to have, pass 2 to type it.
pub(crate) enum Signature {
    /// `(T, T, ...) -> T`: arguments of one type, int64 and float64 widening
    /// to float64.
    Common,
    /// As [`Signature::Common`], for T in int64, float64, string, timestamp.
    Ordered,
    /// Numbers of one kind: int64 if all are int64, else float64 (float32
    /// widening as in arithmetic).
    Numbers,
    /// `(bool, T, T) -> T`, the branches as [`Signature::Common`].
    Conditional,
    /// Every argument of exactly type `arg` (a null takes it); the call is
    /// `returns`.
    Exact { arg: DataType, returns: DataType },
    /// `(number) -> T`: T is int64 for an int64 argument, else float64.
    Number,
    /// Every argument a number, converted to float64; the call is float64.
    Floats,
    /// Every argument an `array<float32>` or `array<float64>`; the call is
    /// float64.
    Vectors,
}

/// Runs one call over its evaluated arguments, given the call's type and the
/// batch's number of rows. `None` when the arguments are not as many as the
/// kernel takes: a plan the checker must never produce.
pub(crate) type Kernel = fn(&[Val], DataType, usize) -> Option<Result<Val, EvalError>>;

/// `max_args` of a function that takes any number of arguments from its
/// `min_args` on.
pub(crate) const ANY: usize = usize::MAX;

/// Every row function, in the order "did you mean" hints consider them.
pub(crate) static ROW_FUNCTIONS: &[RowFunction] = &[
    RowFunction {
        name: "coalesce",
        min_args: 2,
        max_args: ANY,
        form: Form::Call {
            func: Func::Coalesce,
            signature: Signature::Common,
            kernel: |args, _, _| Some(logic::coalesce(args)),
        },
    },
    RowFunction {
        name: "if",
        min_args: 3,
        max_args: 3,
        form: Form::Call {
            func: Func::If,
            signature: Signature::Conditional,
            kernel: |args, _, _| {
                three(args).map(|(c, then, otherwise)| logic::if_then_else(c, then, otherwise))
            },
        },
    },
    RowFunction {
        name: "lower",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Lower,
            signature: Signature::Exact { arg: DataType::String, returns: DataType::String },
            kernel: |args, _, _| one(args).map(text::lower),
        },
    },
    RowFunction {
        name: "upper",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Upper,
            signature: Signature::Exact { arg: DataType::String, returns: DataType::String },
            kernel: |args, _, _| one(args).map(text::upper),
        },
    },
    RowFunction {
        name: "length",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Length,
            signature: Signature::Exact { arg: DataType::String, returns: DataType::Int64 },
            kernel: |args, _, _| one(args).map(text::length),
        },
    },
    RowFunction {
        name: "concat",
        min_args: 1,
        max_args: ANY,
        form: Form::Call {
            func: Func::Concat,
            signature: Signature::Exact { arg: DataType::String, returns: DataType::String },
            kernel: |args, _, rows| Some(text::concat(args, rows)),
        },
    },
    RowFunction {
        name: "abs",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Abs,
            signature: Signature::Number,
            kernel: |args, ty, _| one(args).map(|x| arith::abs(x, ty)),
        },
    },
    RowFunction {
        name: "ln",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Ln,
            signature: Signature::Floats,
            kernel: |args, _, _| one(args).map(|x| arith::float_fn(x, f64::ln)),
        },
    },
    RowFunction {
        name: "log10",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Log10,
            signature: Signature::Floats,
            kernel: |args, _, _| one(args).map(|x| arith::float_fn(x, f64::log10)),
        },
    },
    RowFunction {
        name: "sqrt",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Sqrt,
            signature: Signature::Floats,
            kernel: |args, _, _| one(args).map(|x| arith::float_fn(x, f64::sqrt)),
        },
    },
    RowFunction {
        name: "exp",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Exp,
            signature: Signature::Floats,
            kernel: |args, _, _| one(args).map(|x| arith::float_fn(x, f64::exp)),
        },
    },
    RowFunction {
        name: "pow",
        min_args: 2,
        max_args: 2,
        form: Form::Call {
            func: Func::Pow,
            signature: Signature::Floats,
            kernel: |args, _, _| two(args).map(|(x, y)| arith::pow(x, y)),
        },
    },
    RowFunction {
        name: "floor",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Floor,
            signature: Signature::Number,
            kernel: |args, ty, _| one(args).map(|x| arith::rounding(x, ty, f64::floor)),
        },
    },
    RowFunction {
        name: "ceil",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Ceil,
            signature: Signature::Number,
            kernel: |args, ty, _| one(args).map(|x| arith::rounding(x, ty, f64::ceil)),
        },
    },
    RowFunction {
        name: "round",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Round,
            signature: Signature::Number,
            // f64::round rounds half away from zero, as the language promises.
            kernel: |args, ty, _| one(args).map(|x| arith::rounding(x, ty, f64::round)),
        },
    },
    RowFunction {
        name: "least",
        min_args: 2,
        max_args: ANY,
        form: Form::Call {
            func: Func::Least,
            signature: Signature::Ordered,
            kernel: |args, ty, _| Some(arith::least_greatest(args, ty, Pick::Least)),
        },
    },
    RowFunction {
        name: "greatest",
        min_args: 2,
        max_args: ANY,
        form: Form::Call {
            func: Func::Greatest,
            signature: Signature::Ordered,
            kernel: |args, ty, _| Some(arith::least_greatest(args, ty, Pick::Greatest)),
        },
    },
    RowFunction {
        name: "clamp",
        min_args: 3,
        max_args: 3,
        form: Form::Call {
            func: Func::Clamp,
            signature: Signature::Numbers,
            kernel: |args, ty, _| three(args).map(|(x, lo, hi)| arith::clamp(x, lo, hi, ty)),
        },
    },
    RowFunction { name: "bucketize", min_args: 2, max_args: 2, form: Form::Bucketize },
    RowFunction { name: "hash_bucket", min_args: 2, max_args: 2, form: Form::HashBucket },
    RowFunction {
        name: "days_between",
        min_args: 2,
        max_args: 2,
        form: Form::Call {
            func: Func::DaysBetween,
            signature: Signature::Exact { arg: DataType::Timestamp, returns: DataType::Int64 },
            kernel: |args, _, _| two(args).map(|(a, b)| time::units_between(a, b, MICROS_PER_DAY)),
        },
    },
    RowFunction {
        name: "hours_between",
        min_args: 2,
        max_args: 2,
        form: Form::Call {
            func: Func::HoursBetween,
            signature: Signature::Exact { arg: DataType::Timestamp, returns: DataType::Int64 },
            kernel: |args, _, _| two(args).map(|(a, b)| time::units_between(a, b, MICROS_PER_HOUR)),
        },
    },
    RowFunction {
        name: "day_of_week",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::DayOfWeek,
            signature: Signature::Exact { arg: DataType::Timestamp, returns: DataType::Int64 },
            kernel: |args, _, _| one(args).map(time::day_of_week),
        },
    },
    RowFunction {
        name: "hour_of_day",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::HourOfDay,
            signature: Signature::Exact { arg: DataType::Timestamp, returns: DataType::Int64 },
            kernel: |args, _, _| one(args).map(time::hour_of_day),
        },
    },
    RowFunction {
        name: "dot",
        min_args: 2,
        max_args: 2,
        form: Form::Call {
            func: Func::Dot,
            signature: Signature::Vectors,
            kernel: |args, _, rows| (args.len() == 2).then(|| vector::dot(args, rows)),
        },
    },
    RowFunction {
        name: "cosine",
        min_args: 2,
        max_args: 2,
        form: Form::Call {
            func: Func::Cosine,
            signature: Signature::Vectors,
            kernel: |args, _, rows| (args.len() == 2).then(|| vector::cosine(args, rows)),
        },
    },
    RowFunction {
        name: "l2_distance",
        min_args: 2,
        max_args: 2,
        form: Form::Call {
            func: Func::L2Distance,
            signature: Signature::Vectors,
            kernel: |args, _, rows| (args.len() == 2).then(|| vector::l2_distance(args, rows)),
        },
    },
    RowFunction {
        name: "norm",
        min_args: 1,
        max_args: 1,
        form: Form::Call {
            func: Func::Norm,
            signature: Signature::Vectors,
            kernel: |args, _, rows| (args.len() == 1).then(|| vector::norm(args, rows)),
        },
    },
];

/// The row function called `name`, if there is one.
pub(crate) fn lookup(name: &str) -> Option<&'static RowFunction> {
    ROW_FUNCTIONS.iter().find(|f| f.name == name)
}

/// The kernel that evaluates calls of `func`.
pub(crate) fn kernel(func: Func) -> Option<Kernel> {
    ROW_FUNCTIONS.iter().find_map(|f| match f.form {
        Form::Call { func: g, kernel, .. } if g == func => Some(kernel),
        _ => None,
    })
}

/// The names of the row functions, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    ROW_FUNCTIONS.iter().map(|f| f.name)
}

fn one(args: &[Val]) -> Option<&Val> {
    match args {
        [x] => Some(x),
        _ => None,
    }
}

fn two(args: &[Val]) -> Option<(&Val, &Val)> {
    match args {
        [x, y] => Some((x, y)),
        _ => None,
    }
}

fn three(args: &[Val]) -> Option<(&Val, &Val, &Val)> {
    match args {
        [x, y, z] => Some((x, y, z)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Each entry's plan function is the one its name says (`days_between`
    /// is `DaysBetween`), and no name or plan function appears twice.
    #[test]
    fn entries_are_consistent() {
        let mut names = HashSet::new();
        let mut funcs = HashSet::new();
        for f in ROW_FUNCTIONS {
            assert!(names.insert(f.name), "`{}` is in the table twice", f.name);
            assert!(f.min_args >= 1 && f.min_args <= f.max_args, "arity of `{}`", f.name);
            if let Form::Call { func, .. } = f.form {
                assert!(funcs.insert(func), "{func:?} is in the table twice");
                assert_eq!(
                    format!("{func:?}").to_lowercase(),
                    f.name.replace('_', ""),
                    "`{}` calls {func:?}",
                    f.name
                );
                assert!(kernel(func).is_some());
            }
            assert!(lookup(f.name).is_some_and(|g| std::ptr::eq(f, g)));
        }
        assert!(lookup("count").is_none(), "aggregations are not row functions");
    }
}
