//! A view's stored identity: the canonical text its fingerprint hashes.
//!
//! The fingerprint keys every byte of a view's data, so this text must not
//! change by accident. It is written here, field by field, with every name
//! spelled out: nothing comes from `Debug` or from the language crate's
//! `Display` impls, so renaming a variant or reformatting an expression for
//! humans cannot re-key (and so drop) a view. The golden fingerprints in
//! `tests/golden/fingerprints.txt` pin it; a change to it must be made on
//! purpose, with a new [`VERSION`] and a migration of stored data.
//!
//! The text names the versions of the stored formats it depends on: the row
//! encoding (`store::codec::FORMAT_VERSION`) always, and the aggregate-state
//! encoding (`fstore_dsl::agg`) for aggregating views once it is past its
//! first version (version 1 is implied by identity version 1, which
//! predates the field).

use std::fmt::Write;

use fstore_dsl::plan::{AggFunc, ArithOp, CmpOp, Expr, ExprKind, Func, Literal, Plan, ViewBody};
use fstore_dsl::{DataType, ElementType};
use xxhash_rust::xxh64::xxh64;

use crate::store::codec;

/// The version of the identity text itself.
pub(crate) const VERSION: &str = "fstore-view/v1";

/// The fingerprint of view `view` of `plan`: XXH64 (seed 0) of [`text`].
pub(crate) fn fingerprint(plan: &Plan, view: usize) -> u64 {
    xxh64(text(plan, view, fstore_dsl::agg::STATE_FORMAT_VERSION).as_bytes(), 0)
}

/// The identity text: everything that decides which values a view stores
/// and how they are laid out (entity keys, source and key fields, filter,
/// features with types and expressions, aggregation settings, the stored
/// formats), and nothing that only affects reading (the ttl).
fn text(plan: &Plan, view: usize, state_format: u8) -> String {
    let v = &plan.views[view];
    let entity = &plan.entities[v.entity];
    let source = &plan.sources[v.source];
    let mut out = String::new();
    let _ = writeln!(out, "{VERSION} format={} view={}", codec::FORMAT_VERSION, v.name);
    let _ = writeln!(out, "entity={}", entity.name);
    for (key, field) in entity.keys.iter().zip(&v.key_fields) {
        let _ = writeln!(out, "key {}:{} <- {}", key.name, type_name(key.ty), field);
    }
    let _ = writeln!(out, "source={} timestamp={}", source.name, source.timestamp_field);
    if let Some(filter) = &v.filter {
        out.push_str("filter=");
        expr(&mut out, filter);
        out.push('\n');
    }
    match &v.body {
        ViewBody::Row { features } => {
            for f in features {
                let _ = write!(out, "row {}:{} = ", f.name, type_name(f.ty));
                expr(&mut out, &f.expr);
                out.push('\n');
            }
        }
        ViewBody::Aggregating { resolution, features } => {
            if state_format != 1 {
                let _ = writeln!(out, "states={state_format}");
            }
            let _ = writeln!(out, "resolution={}s", resolution.as_secs());
            for f in features {
                let _ = write!(out, "agg {}:{} = {}(", f.name, type_name(f.ty), agg_func_name(f.func));
                if let Some(arg) = &f.arg {
                    expr(&mut out, arg);
                }
                out.push(')');
                if let Some(w) = f.window {
                    let _ = write!(out, " over {}s", w.as_secs());
                }
                if let Some(c) = &f.condition {
                    out.push_str(" where ");
                    expr(&mut out, c);
                }
                out.push('\n');
            }
        }
    }
    out
}

fn type_name(ty: DataType) -> String {
    match ty {
        DataType::Bool => "bool".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::String => "string".into(),
        DataType::Bytes => "bytes".into(),
        DataType::Timestamp => "timestamp".into(),
        DataType::Array(e) => format!(
            "array<{}>",
            match e {
                ElementType::Float32 => "float32",
                ElementType::Float64 => "float64",
                ElementType::Int64 => "int64",
                ElementType::String => "string",
            }
        ),
    }
}

/// These are the names the first identity text gave (from `Debug`, then).
fn agg_func_name(func: AggFunc) -> &'static str {
    match func {
        AggFunc::Count => "Count",
        AggFunc::Sum => "Sum",
        AggFunc::Avg => "Avg",
        AggFunc::Min => "Min",
        AggFunc::Max => "Max",
        AggFunc::Last => "Last",
        AggFunc::First => "First",
    }
}

/// Likewise.
fn func_name(func: Func) -> &'static str {
    match func {
        Func::Coalesce => "Coalesce",
        Func::If => "If",
        Func::Lower => "Lower",
        Func::Upper => "Upper",
        Func::Length => "Length",
        Func::Concat => "Concat",
        Func::Abs => "Abs",
        Func::Ln => "Ln",
        Func::Log10 => "Log10",
        Func::Sqrt => "Sqrt",
        Func::Exp => "Exp",
        Func::Pow => "Pow",
        Func::Floor => "Floor",
        Func::Ceil => "Ceil",
        Func::Round => "Round",
        Func::Least => "Least",
        Func::Greatest => "Greatest",
        Func::Clamp => "Clamp",
        Func::DaysBetween => "DaysBetween",
        Func::HoursBetween => "HoursBetween",
        Func::DayOfWeek => "DayOfWeek",
        Func::HourOfDay => "HourOfDay",
        Func::Dot => "Dot",
        Func::Cosine => "Cosine",
        Func::L2Distance => "L2Distance",
        Func::Norm => "Norm",
    }
}

/// Fully parenthesised, with types: `(lower(country:string):string)`.
fn expr(out: &mut String, e: &Expr) {
    let ty = type_name(e.ty);
    match &e.kind {
        ExprKind::Literal(l) => {
            literal(out, l);
            let _ = write!(out, ":{ty}");
        }
        ExprKind::Field(name) => {
            let _ = write!(out, "{name}:{ty}");
        }
        ExprKind::FieldIsNull { field, negated } => {
            let _ = write!(out, "({field} is{} null)", if *negated { " not" } else { "" });
        }
        ExprKind::Neg(x) => {
            out.push_str("(-");
            expr(out, x);
            let _ = write!(out, "):{ty}");
        }
        ExprKind::Not(x) => {
            out.push_str("(not ");
            expr(out, x);
            out.push(')');
        }
        ExprKind::Arith(op, a, b) => {
            let op = match op {
                ArithOp::Add => "+",
                ArithOp::Sub => "-",
                ArithOp::Mul => "*",
                ArithOp::Div => "/",
                ArithOp::Mod => "%",
            };
            binary(out, a, op, b);
            let _ = write!(out, ":{ty}");
        }
        ExprKind::Compare(op, a, b) => {
            let op = match op {
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            };
            binary(out, a, op, b);
        }
        ExprKind::And(a, b) => binary(out, a, "and", b),
        ExprKind::Or(a, b) => binary(out, a, "or", b),
        ExprKind::IsNull { expr: x, negated } => {
            out.push('(');
            expr(out, x);
            let _ = write!(out, " is{} null)", if *negated { " not" } else { "" });
        }
        ExprKind::InList { expr: x, list, negated } => {
            out.push('(');
            expr(out, x);
            let _ = write!(out, "{} in (", if *negated { " not" } else { "" });
            for (i, l) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                literal(out, l);
            }
            out.push_str("))");
        }
        ExprKind::Cast(x) => {
            out.push('(');
            expr(out, x);
            let _ = write!(out, " as {ty})");
        }
        ExprKind::Call(func, args) => {
            let _ = write!(out, "{}(", func_name(*func));
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                expr(out, a);
            }
            let _ = write!(out, "):{ty}");
        }
        ExprKind::Bucketize(x, bounds) => {
            out.push_str("bucketize(");
            expr(out, x);
            out.push_str(", [");
            for (i, b) in bounds.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                float(out, *b);
            }
            out.push_str("])");
        }
        ExprKind::HashBucket(x, n) => {
            out.push_str("hash_bucket(");
            expr(out, x);
            let _ = write!(out, ", {n})");
        }
    }
}

fn binary(out: &mut String, a: &Expr, op: &str, b: &Expr) {
    out.push('(');
    expr(out, a);
    let _ = write!(out, " {op} ");
    expr(out, b);
    out.push(')');
}

fn literal(out: &mut String, l: &Literal) {
    match l {
        Literal::Null => out.push_str("null"),
        Literal::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Literal::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Literal::Float64(x) => float(out, *x),
        Literal::String(s) => string(out, s),
    }
}

/// The shortest decimal that reads back as `x`, always with a point or an
/// exponent (`1.0`, `0.25`, `1e16`, `1e-5`): exponent form below 1e-4 and
/// from 1e16 on.
fn float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
    } else if x != 0.0 && (x.abs() < 1e-4 || x.abs() >= 1e16) {
        let _ = write!(out, "{x:e}");
    } else {
        let plain = format!("{x}");
        out.push_str(&plain);
        if !plain.contains('.') {
            out.push_str(".0");
        }
    }
}

/// In double quotes, with `"`, `\`, controls and characters that are not
/// printable on their own escaped (`\n`, `\u{301}`); a single quote as is.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '\'' {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The first identity text took floats and strings from `Debug`; the
    /// writer must go on giving exactly what it gave.
    fn float_text(x: f64) -> String {
        let mut out = String::new();
        float(&mut out, x);
        out
    }

    fn string_text(s: &str) -> String {
        let mut out = String::new();
        string(&mut out, s);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

        #[test]
        fn floats_are_written_as_the_first_text_wrote_them(x in any::<f64>()) {
            prop_assert_eq!(float_text(x), format!("{x:?}"));
        }

        #[test]
        fn strings_are_written_as_the_first_text_wrote_them(s in any::<String>()) {
            prop_assert_eq!(string_text(&s), format!("{s:?}"));
        }
    }

    #[test]
    fn edge_floats_and_strings() {
        for x in [0.0, -0.0, 1.0, 1e15, 1e16, 9.999e15, 1e-4, 9.99e-5, 1e300, 5e-324, f64::MAX, 0.1 + 0.2] {
            assert_eq!(float_text(x), format!("{x:?}"), "{x}");
        }
        for s in ["", "it's", "a\"b", "tab\there", "\u{301}e\u{301}", "\u{7f}\0", "naïve ✓"] {
            assert_eq!(string_text(s), format!("{s:?}"), "{s}");
        }
    }

    /// The names are spelled out once; this checks they still are the names
    /// the first text took from `Debug`, for every variant.
    #[test]
    fn function_names_are_those_of_the_first_text() {
        use fstore_dsl::plan::Func::*;
        for f in [
            Coalesce,
            If,
            Lower,
            Upper,
            Length,
            Concat,
            Abs,
            Ln,
            Log10,
            Sqrt,
            Exp,
            Pow,
            Floor,
            Ceil,
            Round,
            Least,
            Greatest,
            Clamp,
            DaysBetween,
            HoursBetween,
            DayOfWeek,
            HourOfDay,
        ] {
            assert_eq!(func_name(f), format!("{f:?}"));
        }
        for f in [
            AggFunc::Count,
            AggFunc::Sum,
            AggFunc::Avg,
            AggFunc::Min,
            AggFunc::Max,
            AggFunc::Last,
            AggFunc::First,
        ] {
            assert_eq!(agg_func_name(f), format!("{f:?}"));
        }
    }

    /// Every expression of the example definitions and the language's good
    /// files is written as the language crate's canonical `Display` wrote it
    /// when the identity was defined.
    #[test]
    fn expressions_are_written_as_the_first_text_wrote_them() {
        let mut checked = 0;
        for plan in crate::registry::golden_fingerprints::golden_plans() {
            for view in &plan.views {
                let mut exprs: Vec<&Expr> = view.filter.iter().collect();
                match &view.body {
                    ViewBody::Row { features } => exprs.extend(features.iter().map(|f| &f.expr)),
                    ViewBody::Aggregating { features, .. } => {
                        exprs.extend(features.iter().flat_map(|f| f.arg.iter().chain(&f.condition)))
                    }
                }
                for e in exprs {
                    let mut out = String::new();
                    expr(&mut out, e);
                    assert_eq!(out, e.to_string());
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "only {checked} expressions");
    }

    #[test]
    fn a_later_state_format_is_named_and_re_keys_aggregating_views_only() {
        for plan in crate::registry::golden_fingerprints::golden_plans() {
            for (i, view) in plan.views.iter().enumerate() {
                let (v1, v2) = (text(&plan, i, 1), text(&plan, i, 2));
                assert_eq!(v1 != v2, view.is_aggregating(), "{}", view.name);
            }
        }
    }
}
