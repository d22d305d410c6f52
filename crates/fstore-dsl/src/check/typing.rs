//! Expression typing (pass 2): every view's filter and features, typed with
//! the fields' types fixed, into the plan's expressions.
//!
//! The [`Typer`] types one expression at a time, inserting the implicit
//! conversions the plan's invariants demand and reporting type errors;
//! `Checker::type_view` checks a view's features as a whole (row or
//! aggregating, resolution and windows) and builds its [`View`].

use std::collections::HashMap;
use std::time::Duration;

use super::declarations::ViewInfo;
use super::derived::ServiceScope;
use super::inference::{arith_type, join_guess, lit_type, literal, FieldKey, FieldType, Inferred, Lit};
use super::{At, Checker, Reporter, AGG_FUNCS, TYPE_NAMES};
use crate::ast::{self, BinOp, ExprKind as A};
use crate::diag::{codes, did_you_mean, Span};
use crate::functions::{self, Form, Signature};
use crate::parse::format_duration;
use crate::plan::{AggFeature, AggFunc, ArithOp, CmpOp, Expr, ExprKind, Literal, RowFeature, View, ViewBody};
use crate::types::{DataType, ElementType};

/// Default tile size of aggregating views.
const DEFAULT_RESOLUTION: Duration = Duration::from_secs(60);

fn is_agg_call(e: &ast::Expr) -> bool {
    matches!(&e.kind, A::Call { func, .. } if AGG_FUNCS.contains(&func.name.as_str()))
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Which conversions `x as T` supports; see [`ExprKind::Cast`].
fn cast_supported(from: DataType, to: DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(
            (from, to),
            (Int64, Float64 | Float32 | String | Bool | Timestamp)
                | (Float64 | Float32, Int64 | String)
                | (Float32, Float64)
                | (Float64, Float32)
                | (String, Int64 | Float64 | Bytes)
                | (Bool, Int64 | String)
                | (Timestamp, Int64 | String)
        )
}

fn cast_targets(from: DataType) -> Vec<String> {
    TYPE_NAMES
        .iter()
        .filter_map(|n| DataType::parse(n))
        .filter(|&t| t != from && cast_supported(from, t))
        .map(|t| t.to_string())
        .collect()
}

impl<'a> Checker<'a> {
    pub(super) fn type_views(&mut self, inferred: &Inferred) -> Vec<Option<View>> {
        let views = std::mem::take(&mut self.views);
        let out = views.iter().map(|v| self.type_view(v, &inferred.types)).collect();
        self.views = views;
        out
    }

    fn type_view(&mut self, view: &ViewInfo<'a>, fields: &HashMap<FieldKey, FieldType>) -> Option<View> {
        let file = view.file;
        let source = view.source.and_then(|i| self.sources.get(i).map(|s| (i, s.name.clone())));
        let source_name = source.as_ref().map_or(String::new(), |(_, n)| n.clone());
        let mut typer =
            Typer { rep: &mut self.rep, scope: Scope::Source { fields, source }, file, ctx: Ctx::Filter };
        let filter = view.filter.map(|f| typer.condition(f, "the filter"));

        // Whether each feature aggregates; `None` for one that did not parse.
        let kinds: Vec<Option<bool>> = view
            .features
            .iter()
            .map(|f| (!matches!(f.expr.kind, A::Error)).then(|| is_agg_call(&f.expr)))
            .collect();
        let has_agg = kinds.contains(&Some(true));
        let has_row = kinds.contains(&Some(false));
        if has_agg && has_row {
            let names = |agg: bool| {
                view.features
                    .iter()
                    .zip(&kinds)
                    .filter(|(_, k)| **k == Some(agg))
                    .map(|(f, _)| format!("`{}`", f.name.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let first_kind = kinds.iter().flatten().next().copied();
            if let Some((odd, _)) =
                view.features.iter().zip(&kinds).find(|(_, k)| k.is_some() && **k != first_kind)
            {
                typer.rep.report(
                    At {
                        file,
                        span: odd.span,
                    },
                    codes::MIXED_VIEW,
                    format!("view `{}` mixes row features and aggregations", view.name),
                    Some(format!(
                        "a view's features are all row expressions or all aggregations; split it into two views over source `{source_name}`: one with the row features ({}) and one with the aggregations ({})",
                        names(false),
                        names(true)
                    )),
                );
            }
        }
        let resolution = view.resolution.map_or(DEFAULT_RESOLUTION, |(d, _)| d);
        if let Some((_, at)) = view.resolution {
            if has_row && !has_agg {
                typer.rep.report(
                    at,
                    codes::RESOLUTION_IN_ROW_VIEW,
                    format!(
                        "`resolution` applies to aggregating views, and view `{}` has row features only",
                        view.name
                    ),
                    Some("remove it; a row view keeps the latest row per key".into()),
                );
            }
        }

        let mut rows = Vec::new();
        let mut aggs = Vec::new();
        let mut broken = false;
        for (f, kind) in view.features.iter().zip(&kinds) {
            let Some(is_agg) = *kind else {
                broken = true;
                continue;
            };
            let declared = typer.rep.resolve_type(file, &f.ty);
            if is_agg {
                aggs.push(typer.agg_feature(f, declared, resolution));
            } else {
                rows.push(typer.row_feature(f, declared));
            }
        }

        let filter = match filter {
            Some(f) => Some(f?),
            None => None,
        };
        if !view.valid || broken || (has_agg && has_row) {
            return None;
        }
        let body = if has_agg {
            ViewBody::Aggregating { resolution, features: aggs.into_iter().collect::<Option<_>>()? }
        } else {
            ViewBody::Row { features: rows.into_iter().collect::<Option<_>>()? }
        };
        Some(View {
            name: view.name.clone(),
            entity: view.entity?,
            source: view.source?,
            key_fields: self.key_fields(view).into_iter().map(|(_, f, _, _)| f).collect(),
            ttl: view.ttl,
            filter,
            body,
        })
    }
}

/// Where an expression stands, for the message about a misplaced aggregation.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Ctx {
    Filter,
    Where,
    AggArg,
    Feature,
    Derived,
}

/// How operands that must share a type are brought to one.
#[derive(Clone, Copy, PartialEq)]
enum Promote {
    /// int64 if all are int64, else float64; numbers only.
    Arith,
    /// Equal types, or any numbers compared as float64.
    Compare,
    /// Equal types, or int64 and float64 giving float64.
    Widen,
}

fn lit(l: Literal, ty: DataType) -> Expr {
    Expr { kind: ExprKind::Literal(l), ty }
}

/// Convert `x` to `to` where the language does so implicitly (int64 or
/// float32 to float64, a null to any type); integer literals convert in place.
fn convert(x: Expr, to: DataType) -> Expr {
    if x.ty == to {
        return x;
    }
    match x.kind {
        ExprKind::Literal(Literal::Null) => lit(Literal::Null, to),
        ExprKind::Literal(Literal::Int64(i)) if to == DataType::Float64 => {
            lit(Literal::Float64(i as f64), to)
        }
        kind => Expr { kind: ExprKind::Cast(Box::new(Expr { kind, ty: x.ty })), ty: to },
    }
}

/// What the names in an expression refer to.
pub(super) enum Scope<'t> {
    /// A view's filter and features: fields of its source.
    Source {
        fields: &'t HashMap<FieldKey, FieldType>,
        /// The view's source (index, name), if it resolved.
        source: Option<(usize, String)>,
    },
    /// A service's derived feature (see [`super::derived`]).
    Service(&'t ServiceScope<'t>),
}

pub(super) struct Typer<'t, 'a> {
    pub(super) rep: &'t mut Reporter<'a>,
    pub(super) scope: Scope<'t>,
    pub(super) file: usize,
    pub(super) ctx: Ctx,
}

impl Typer<'_, '_> {
    fn at(&self, span: Span) -> At {
        At { file: self.file, span }
    }

    pub(super) fn error(&mut self, span: Span, code: &'static str, message: String, hint: Option<String>) {
        let at = self.at(span);
        self.rep.report(at, code, message, hint);
    }

    fn mismatch(&mut self, span: Span, message: String) {
        self.error(span, codes::TYPE_MISMATCH, message, None);
    }

    /// A bool condition: a filter or a `where`.
    fn condition(&mut self, e: &ast::Expr, what: &str) -> Option<Expr> {
        let x = self.lower(e, Some(DataType::Bool))?;
        if x.ty != DataType::Bool {
            self.mismatch(e.span, format!("{what} must be a bool, found {}", x.ty));
            return None;
        }
        Some(x)
    }

    fn row_feature(&mut self, f: &ast::FeatureDef, declared: Option<DataType>) -> Option<RowFeature> {
        self.ctx = Ctx::Feature;
        if let Some((_, span)) = f.over {
            self.error(
                span,
                codes::OVER_WITHOUT_AGG,
                format!("`over` needs an aggregation, but feature `{}` is a row expression", f.name.name),
                Some("windows apply to count(), sum(x), avg(x), min(x), max(x), first(x) and last(x)".into()),
            );
        }
        if let Some(c) = &f.condition {
            self.error(
                c.span,
                codes::WHERE_WITHOUT_AGG,
                format!("`where` needs an aggregation, but feature `{}` is a row expression", f.name.name),
                Some("to skip rows in a row view, use the view's `filter`".into()),
            );
        }
        if matches!(f.expr.kind, A::Error) {
            return None;
        }
        let x = self.lower(&f.expr, declared)?;
        let declared = declared?;
        let expr = self.fit_declared(x, declared, f, f.expr.span)?;
        Some(RowFeature { name: f.name.name.clone(), ty: declared, expr })
    }

    /// The expression's type must be the declared one, or int64 widening to float64.
    pub(super) fn fit_declared(
        &mut self,
        x: Expr,
        declared: DataType,
        f: &ast::FeatureDef,
        span: Span,
    ) -> Option<Expr> {
        if x.ty == declared {
            return Some(x);
        }
        if x.ty == DataType::Int64 && declared == DataType::Float64 {
            return Some(convert(x, declared));
        }
        let hint = if cast_supported(x.ty, declared) {
            format!("convert it with `as {declared}`, or declare the feature as {}", x.ty)
        } else {
            format!("declare the feature as {}", x.ty)
        };
        self.error(
            span,
            codes::FEATURE_TYPE,
            format!("feature `{}` is declared {declared} but its expression is {}", f.name.name, x.ty),
            Some(hint),
        );
        None
    }

    fn agg_feature(
        &mut self,
        f: &ast::FeatureDef,
        declared: Option<DataType>,
        resolution: Duration,
    ) -> Option<AggFeature> {
        let A::Call { func, args } = &f.expr.kind else {
            return None;
        };
        let agg = match func.name.as_str() {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "last" => AggFunc::Last,
            _ => AggFunc::First,
        };
        let mut ok = true;

        let window = match f.over {
            None => None,
            Some((d, span)) => {
                if d.is_zero() {
                    self.error(span, codes::ZERO_DURATION, "a window must be longer than zero".into(), None);
                    ok = false;
                } else if resolution.is_zero() || !d.as_secs().is_multiple_of(resolution.as_secs().max(1)) {
                    let r = format_duration(resolution);
                    self.error(
                        span,
                        codes::WINDOW_MULTIPLE,
                        format!(
                            "window {} is not a multiple of the view's resolution {r}",
                            format_duration(d)
                        ),
                        Some(format!(
                            "windows slide by whole tiles of the resolution; use a multiple of {r}, or set a smaller `resolution`"
                        )),
                    );
                    ok = false;
                }
                Some(d)
            }
        };
        let condition = match &f.condition {
            Some(c) => {
                self.ctx = Ctx::Where;
                let c = self.condition(c, "a `where` condition");
                ok &= c.is_some();
                c
            }
            None => None,
        };

        self.ctx = Ctx::AggArg;
        let (arg, agg_ty) = if agg == AggFunc::Count {
            if !args.is_empty() {
                self.error(
                    f.expr.span,
                    codes::ARITY,
                    format!("`count` takes no arguments, found {}", args.len()),
                    Some("write `count()`; add `where x is not null` to count non-null values".into()),
                );
                return None;
            }
            (None, DataType::Int64)
        } else {
            let [arg] = args.as_slice() else {
                self.error(
                    f.expr.span,
                    codes::ARITY,
                    format!("`{}` takes 1 argument, found {}", func.name, args.len()),
                    None,
                );
                return None;
            };
            let expected = match agg {
                AggFunc::Sum => declared.and_then(arith_type),
                AggFunc::Avg => Some(DataType::Float64),
                _ => declared,
            };
            let x = self.lower(arg, expected)?;
            match agg {
                AggFunc::Sum => match arith_type(x.ty) {
                    Some(t) => (Some(convert(x, t)), t),
                    None => {
                        self.mismatch(arg.span, format!("`sum` takes int64 or float64, found {}", x.ty));
                        return None;
                    }
                },
                AggFunc::Avg => match arith_type(x.ty) {
                    Some(_) => (Some(convert(x, DataType::Float64)), DataType::Float64),
                    None => {
                        self.mismatch(arg.span, format!("`avg` takes int64 or float64, found {}", x.ty));
                        return None;
                    }
                },
                AggFunc::Min | AggFunc::Max => {
                    use DataType::*;
                    if !matches!(x.ty, Int64 | Float64 | String | Timestamp) {
                        self.error(
                            arg.span,
                            codes::TYPE_MISMATCH,
                            format!(
                                "`{}` takes int64, float64, string or timestamp, found {}",
                                func.name, x.ty
                            ),
                            (x.ty == Float32).then(|| format!("write `{}(x as float64)`", func.name)),
                        );
                        return None;
                    }
                    let t = x.ty;
                    (Some(x), t)
                }
                _ => {
                    let t = x.ty;
                    (Some(x), t)
                }
            }
        };
        let declared = declared?;
        if agg_ty != declared && !(agg_ty == DataType::Int64 && declared == DataType::Float64) {
            self.error(
                f.expr.span,
                codes::FEATURE_TYPE,
                format!(
                    "feature `{}` is declared {declared} but `{}` gives {agg_ty}",
                    f.name.name, func.name
                ),
                Some(format!("declare the feature as {agg_ty}")),
            );
            return None;
        }
        ok.then(|| AggFeature { name: f.name.name.clone(), ty: declared, func: agg, arg, window, condition })
    }

    fn field(&mut self, name: &str, span: Span) -> Option<Expr> {
        let fields = match &self.scope {
            Scope::Source { fields, .. } => *fields,
            Scope::Service(scope) => {
                let resolved = scope.name(name, span);
                return self.resolved(resolved);
            }
        };
        let Scope::Source { source: Some((source, source_name)), .. } = &self.scope else {
            return None;
        };
        let (source, source_name) = (*source, source_name.clone());
        match fields.get(&(source, name.to_string())) {
            Some(FieldType::Typed(t)) => Some(Expr { kind: ExprKind::Field(name.to_string()), ty: *t }),
            Some(FieldType::Poisoned) => None,
            // Inference saw every read; these mean it missed one.
            Some(FieldType::NullOnly) | None => {
                self.error(
                    span,
                    codes::FIELD_UNINFERRED,
                    format!("cannot infer the type of field `{name}` of source `{source_name}`"),
                    Some(format!(
                        "write `{name} as int64` (or the type you mean), or declare it in the source's fields block"
                    )),
                );
                None
            }
        }
    }

    fn untyped_null(&mut self, span: Span) -> Option<Expr> {
        self.error(
            span,
            codes::UNTYPED_NULL,
            "cannot tell the type of `null` here".into(),
            Some("give it one with a cast: `null as int64` (or the type you mean)".into()),
        );
        None
    }

    /// Type an expression; `expected` is what its context would like (used
    /// for `null` and integer literals, not enforced). `None` means an error
    /// has been reported.
    pub(super) fn lower(&mut self, e: &ast::Expr, expected: Option<DataType>) -> Option<Expr> {
        match &e.kind {
            A::Error => None,
            A::Null => match expected {
                Some(t) => Some(lit(Literal::Null, t)),
                None => self.untyped_null(e.span),
            },
            A::Bool(b) => Some(lit(Literal::Bool(*b), DataType::Bool)),
            A::Int(i) => Some(if expected == Some(DataType::Float64) {
                lit(Literal::Float64(*i as f64), DataType::Float64)
            } else {
                lit(Literal::Int64(*i), DataType::Int64)
            }),
            A::Float(x) => Some(lit(Literal::Float64(*x), DataType::Float64)),
            A::Str(s) => Some(lit(Literal::String(s.clone()), DataType::String)),
            A::Duration(_) => {
                self.error(
                    e.span,
                    codes::NOT_A_VALUE,
                    "a duration is not a value".into(),
                    Some("durations appear after `over` and in `ttl` and `resolution`".into()),
                );
                None
            }
            A::List(_) => {
                self.error(
                    e.span,
                    codes::NOT_A_VALUE,
                    "a list is not a value".into(),
                    Some("lists appear only as the bounds of `bucketize(x, [1, 10, 100])`".into()),
                );
                None
            }
            A::Ident(name) => self.field(name, e.span),
            A::Qualified(q) => match &self.scope {
                Scope::Service(scope) => {
                    let resolved = scope.qualified(&q.view, &q.feature, e.span);
                    self.resolved(resolved)
                }
                Scope::Source { .. } => {
                    self.error(
                        e.span,
                        codes::QUALIFIED_IN_VIEW,
                        format!(
                            "`{}.{}` names a feature, but a view reads fields of its source",
                            q.view.name, q.feature.name
                        ),
                        Some("features of other views are combined in a service's `derived` block".into()),
                    );
                    None
                }
            },
            A::Neg(x) => {
                match literal(e) {
                    Some(Lit::Int(i)) => {
                        return self.lower(&ast::Expr { kind: A::Int(i), span: e.span }, expected)
                    }
                    Some(Lit::Float(v)) => return Some(lit(Literal::Float64(v), DataType::Float64)),
                    _ => {}
                }
                let x = self.lower(x, expected.and_then(arith_type))?;
                match arith_type(x.ty) {
                    Some(t) => Some(Expr { kind: ExprKind::Neg(Box::new(convert(x, t))), ty: t }),
                    None => {
                        self.mismatch(e.span, format!("`-` needs a number, found {}", x.ty));
                        None
                    }
                }
            }
            A::Not(x) => {
                let x = self.bool_operand(x, "`not`")?;
                Some(Expr { kind: ExprKind::Not(Box::new(x)), ty: DataType::Bool })
            }
            A::Binary(op @ (BinOp::And | BinOp::Or), l, r) => {
                let what = format!("`{}`", op.symbol());
                let l = self.bool_operand(l, &what);
                let r = self.bool_operand(r, &what);
                let (l, r) = (Box::new(l?), Box::new(r?));
                Some(Expr {
                    kind: if *op == BinOp::And { ExprKind::And(l, r) } else { ExprKind::Or(l, r) },
                    ty: DataType::Bool,
                })
            }
            A::Binary(op, l, r) if op.is_arithmetic() => {
                let what = format!("`{}`", op.symbol());
                let (mut xs, ty) =
                    self.same_type(&[l, r], expected.and_then(arith_type), Promote::Arith, &what)?;
                let r = xs.pop()?;
                let l = xs.pop()?;
                let op = match op {
                    BinOp::Add => ArithOp::Add,
                    BinOp::Sub => ArithOp::Sub,
                    BinOp::Mul => ArithOp::Mul,
                    BinOp::Div => ArithOp::Div,
                    _ => ArithOp::Mod,
                };
                Some(Expr { kind: ExprKind::Arith(op, Box::new(l), Box::new(r)), ty })
            }
            A::Binary(op, l, r) => {
                let what = format!("`{}`", op.symbol());
                let (mut xs, ty) = self.same_type(&[l, r], None, Promote::Compare, &what)?;
                let ordering = !matches!(op, BinOp::Eq | BinOp::Ne);
                if matches!(ty, DataType::Array(_)) {
                    self.mismatch(e.span, format!("cannot compare {ty} values"));
                    return None;
                }
                if ordering && matches!(ty, DataType::Bool | DataType::Bytes) {
                    self.mismatch(e.span, format!("{what} cannot order {ty} values; use `==` or `!=`"));
                    return None;
                }
                let r = xs.pop()?;
                let l = xs.pop()?;
                let op = match op {
                    BinOp::Eq => CmpOp::Eq,
                    BinOp::Ne => CmpOp::Ne,
                    BinOp::Lt => CmpOp::Lt,
                    BinOp::Le => CmpOp::Le,
                    BinOp::Gt => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                Some(Expr { kind: ExprKind::Compare(op, Box::new(l), Box::new(r)), ty: DataType::Bool })
            }
            A::IsNull { expr, negated } => {
                if let (A::Ident(name), Scope::Source { fields, source: Some((source, _)) }) =
                    (&expr.kind, &self.scope)
                {
                    if fields.get(&(*source, name.clone())) == Some(&FieldType::NullOnly) {
                        return Some(Expr {
                            kind: ExprKind::FieldIsNull { field: name.clone(), negated: *negated },
                            ty: DataType::Bool,
                        });
                    }
                }
                let x = self.lower(expr, None)?;
                Some(Expr {
                    kind: ExprKind::IsNull { expr: Box::new(x), negated: *negated },
                    ty: DataType::Bool,
                })
            }
            A::In { expr, list, negated } => self.in_list(expr, list, *negated),
            A::Cast { expr, ty } => {
                let to = self.rep.resolve_type(self.file, ty);
                if matches!(expr.kind, A::Null) {
                    return to.map(|t| lit(Literal::Null, t));
                }
                let x = self.lower(expr, None);
                let (x, to) = (x?, to?);
                if x.ty == to {
                    return Some(x);
                }
                if !cast_supported(x.ty, to) {
                    let targets = cast_targets(x.ty);
                    let hint = if targets.is_empty() {
                        format!("{} converts to no other type", x.ty)
                    } else {
                        format!("{} converts to {}", x.ty, targets.join(", "))
                    };
                    self.error(
                        e.span,
                        codes::BAD_CAST,
                        format!("cannot convert {} to {to}", x.ty),
                        Some(hint),
                    );
                    return None;
                }
                if let ExprKind::Literal(Literal::Int64(i)) = x.kind {
                    if to == DataType::Float64 {
                        return Some(lit(Literal::Float64(i as f64), to));
                    }
                }
                Some(Expr { kind: ExprKind::Cast(Box::new(x)), ty: to })
            }
            A::Call { func, args } => self.call(func, args, expected, e.span),
        }
    }

    fn bool_operand(&mut self, e: &ast::Expr, what: &str) -> Option<Expr> {
        let x = self.lower(e, Some(DataType::Bool))?;
        if x.ty != DataType::Bool {
            self.mismatch(e.span, format!("{what} needs a bool, found {}", x.ty));
            return None;
        }
        Some(x)
    }

    /// An argument of exactly type `want` (nulls take it).
    fn arg_of(&mut self, e: &ast::Expr, want: DataType, func: &str) -> Option<Expr> {
        let x = self.lower(e, Some(want))?;
        if x.ty != want {
            self.mismatch(e.span, format!("`{func}` takes {want}, found {}", x.ty));
            return None;
        }
        Some(x)
    }

    /// A number argument, as float64.
    fn float_arg(&mut self, e: &ast::Expr, func: &str) -> Option<Expr> {
        let x = self.lower(e, Some(DataType::Float64))?;
        if arith_type(x.ty).is_none() {
            self.mismatch(e.span, format!("`{func}` takes a number, found {}", x.ty));
            return None;
        }
        Some(convert(x, DataType::Float64))
    }

    /// An `array<float32>` or `array<float64>` argument (a null is taken as
    /// the latter).
    fn vector_arg(&mut self, e: &ast::Expr, func: &str) -> Option<Expr> {
        let x = self.lower(e, Some(DataType::Array(ElementType::Float64)))?;
        if !matches!(x.ty, DataType::Array(ElementType::Float32 | ElementType::Float64)) {
            self.mismatch(e.span, format!("`{func}` takes array<float32> or array<float64>, found {}", x.ty));
            return None;
        }
        Some(x)
    }

    /// Operands that must share one type, brought to it. Bare `null`s take
    /// the type of the others, or the expected type.
    fn same_type(
        &mut self,
        items: &[&ast::Expr],
        expected: Option<DataType>,
        mode: Promote,
        what: &str,
    ) -> Option<(Vec<Expr>, DataType)> {
        let lowered: Vec<Option<Option<Expr>>> = items
            .iter()
            .map(|it| if matches!(it.kind, A::Null) { None } else { Some(self.lower(it, expected)) })
            .collect();
        if lowered.iter().any(|l| matches!(l, Some(None))) {
            return None;
        }
        let typed: Vec<(usize, DataType)> = lowered
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().and_then(|x| x.as_ref()).map(|x| (i, x.ty)))
            .collect();
        let common = match typed.first() {
            None => match expected {
                Some(t) => t,
                None => {
                    self.untyped_null(items.first()?.span);
                    return None;
                }
            },
            Some(&(_, first)) => {
                use DataType::*;
                let all_same = typed.iter().all(|(_, t)| *t == first);
                let result = match mode {
                    Promote::Arith => match typed.iter().find(|(_, t)| !t.is_numeric()) {
                        Some(&(i, t)) => Err((i, format!("{what} needs numbers, found {t}"))),
                        None if typed.iter().all(|(_, t)| *t == Int64) => Ok(Int64),
                        None => Ok(Float64),
                    },
                    Promote::Compare | Promote::Widen if all_same => Ok(first),
                    Promote::Compare if typed.iter().all(|(_, t)| t.is_numeric()) => Ok(Float64),
                    Promote::Widen if typed.iter().all(|(_, t)| matches!(t, Int64 | Float64)) => Ok(Float64),
                    _ => {
                        let &(i, t) = typed.iter().find(|(_, t)| *t != first)?;
                        Err((
                            i,
                            if mode == Promote::Compare {
                                format!("{what} cannot compare {first} with {t}")
                            } else {
                                format!("the arguments of {what} must have one type, found {first} and {t}")
                            },
                        ))
                    }
                };
                match result {
                    Ok(t) => t,
                    Err((i, message)) => {
                        let span = items.get(i)?.span;
                        self.error(
                            span,
                            codes::TYPE_MISMATCH,
                            message,
                            Some("convert one side with `as`, e.g. `x as float64`".into()),
                        );
                        return None;
                    }
                }
            }
        };
        let out = lowered
            .into_iter()
            .map(|l| match l {
                None => lit(Literal::Null, common),
                Some(x) => x.map_or_else(|| lit(Literal::Null, common), |x| convert(x, common)),
            })
            .collect();
        Some((out, common))
    }

    fn in_list(&mut self, expr: &ast::Expr, list: &[ast::Expr], negated: bool) -> Option<Expr> {
        let lits: Vec<Option<Lit>> = list.iter().map(literal).collect();
        let mut ok = true;
        for (item, l) in list.iter().zip(&lits) {
            if l.is_none() {
                self.error(
                    item.span,
                    codes::BAD_IN_LIST,
                    "the values after `in` must be literals".into(),
                    Some("compare with a field using `==` and `or`".into()),
                );
                ok = false;
            }
        }
        if list.is_empty() {
            self.error(expr.span, codes::BAD_IN_LIST, "the list after `in` is empty".into(), None);
            ok = false;
        }
        let lits: Vec<Lit> = lits.into_iter().flatten().collect();
        let expected = join_guess(lits.iter().filter_map(lit_type).map(|t| (t, true))).map(|(t, _)| t);
        let x = if matches!(expr.kind, A::Null) {
            self.untyped_null(expr.span)
        } else {
            self.lower(expr, expected)
        };
        let x = x?;
        if !ok {
            return None;
        }
        if matches!(x.ty, DataType::Array(_)) {
            self.mismatch(expr.span, format!("`in` cannot test {} values", x.ty));
            return None;
        }
        let has_float = lits.iter().any(|l| matches!(l, Lit::Float(_)));
        let target = match x.ty {
            DataType::Int64 if has_float => DataType::Float64,
            DataType::Float32 => DataType::Float64,
            t => t,
        };
        let mut out = Vec::new();
        for (item, l) in list.iter().zip(&lits) {
            let converted = match (l, target) {
                (Lit::Null, _) => Some(Literal::Null),
                (Lit::Bool(b), DataType::Bool) => Some(Literal::Bool(*b)),
                (Lit::Int(i), DataType::Int64) => Some(Literal::Int64(*i)),
                (Lit::Int(i), DataType::Float64) => Some(Literal::Float64(*i as f64)),
                (Lit::Float(v), DataType::Float64) => Some(Literal::Float64(*v)),
                (Lit::Str(s), DataType::String) => Some(Literal::String(s.clone())),
                _ => None,
            };
            match converted {
                Some(c) => out.push(c),
                None => {
                    let found = lit_type(l).map_or_else(String::new, |t| t.to_string());
                    self.error(
                        item.span,
                        codes::BAD_IN_LIST,
                        format!("the value is {found} but the tested expression is {}", x.ty),
                        None,
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| Expr {
            kind: ExprKind::InList { expr: Box::new(convert(x, target)), list: out, negated },
            ty: DataType::Bool,
        })
    }

    fn call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Expr],
        expected: Option<DataType>,
        span: Span,
    ) -> Option<Expr> {
        let name = func.name.as_str();
        if AGG_FUNCS.contains(&name) {
            let (code, message, hint) = match self.ctx {
                Ctx::Feature => (
                    codes::NESTED_AGG,
                    format!("aggregation `{name}` cannot be part of a larger expression"),
                    "an aggregation is a feature's whole expression, e.g. `n: int64 = count() over 1h`",
                ),
                Ctx::Filter => (
                    codes::AGG_IN_ROW,
                    format!("aggregation `{name}` cannot be used in a filter"),
                    "a filter tests each row before any aggregation",
                ),
                Ctx::Where => (
                    codes::AGG_IN_ROW,
                    format!("aggregation `{name}` cannot be used in a `where` condition"),
                    "a `where` condition tests each event",
                ),
                Ctx::AggArg => (
                    codes::AGG_IN_ROW,
                    format!("aggregation `{name}` cannot be nested in another aggregation"),
                    "an aggregation's argument is computed from each event",
                ),
                Ctx::Derived => (
                    codes::AGG_IN_ROW,
                    format!("aggregation `{name}` cannot be used in a derived feature"),
                    "a derived feature is computed from one request row; aggregate in a view and list its feature in the service",
                ),
            };
            self.error(func.span, code, message, Some(hint.into()));
            return None;
        }
        let Some(function) = functions::lookup(name) else {
            let hint = did_you_mean(name, functions::names().chain(AGG_FUNCS.iter().copied()));
            self.error(func.span, codes::UNKNOWN_FUNCTION, format!("unknown function `{name}`"), hint);
            return None;
        };
        let (min, max) = (function.min_args, function.max_args);
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                plural(min, "argument")
            } else if max == functions::ANY {
                format!("at least {}", plural(min, "argument"))
            } else {
                format!("{min} to {max} arguments")
            };
            self.error(span, codes::ARITY, format!("`{name}` takes {wanted}, found {}", args.len()), None);
            return None;
        }
        let (func, signature) = match &function.form {
            Form::Call { func, signature, .. } => (*func, signature),
            Form::Bucketize => {
                let x = self.float_arg(&args[0], name);
                let bounds = self.bounds(&args[1]);
                return Some(Expr { kind: ExprKind::Bucketize(Box::new(x?), bounds?), ty: DataType::Int64 });
            }
            Form::HashBucket => {
                let x = if matches!(args[0].kind, A::Null) {
                    self.untyped_null(args[0].span)
                } else {
                    self.lower(&args[0], None)
                };
                let n = match args[1].kind {
                    A::Int(n) if n > 0 => Some(n),
                    _ => {
                        self.error(
                            args[1].span,
                            codes::BAD_HASH_BUCKETS,
                            "the bucket count of `hash_bucket` must be a positive integer literal".into(),
                            Some("write e.g. `hash_bucket(user_id, 1000)`".into()),
                        );
                        None
                    }
                };
                return Some(Expr { kind: ExprKind::HashBucket(Box::new(x?), n?), ty: DataType::Int64 });
            }
        };
        let what = format!("`{name}`");
        let call = |args: Vec<Expr>, ty: DataType| Some(Expr { kind: ExprKind::Call(func, args), ty });
        use DataType::*;
        match signature {
            Signature::Common | Signature::Ordered | Signature::Numbers => {
                let refs: Vec<&ast::Expr> = args.iter().collect();
                let (expected, mode, allowed): (_, _, &[DataType]) = match signature {
                    Signature::Common => (expected, Promote::Widen, &[]),
                    Signature::Ordered => (
                        expected.filter(|t| t.is_numeric()),
                        Promote::Widen,
                        &[Int64, Float64, String, Timestamp],
                    ),
                    // Signature::Numbers: numbers only, so float32 widens as in arithmetic.
                    _ => (
                        expected.filter(|t| t.is_numeric()).and_then(arith_type),
                        Promote::Arith,
                        &[Int64, Float64],
                    ),
                };
                let (xs, ty) = self.same_type(&refs, expected, mode, &what)?;
                if !allowed.is_empty() && !allowed.contains(&ty) {
                    let names: Vec<std::string::String> = allowed.iter().map(|t| t.to_string()).collect();
                    self.mismatch(span, format!("{what} takes {}, found {ty}", names.join(" or ")));
                    return None;
                }
                call(xs, ty)
            }
            Signature::Conditional => {
                let cond = self.bool_operand(&args[0], &format!("the condition of {what}"));
                let (xs, ty) = self.same_type(&[&args[1], &args[2]], expected, Promote::Widen, &what)?;
                let mut all = vec![cond?];
                all.extend(xs);
                call(all, ty)
            }
            Signature::Exact { arg, returns } => {
                let xs: Vec<Option<Expr>> = args.iter().map(|a| self.arg_of(a, *arg, name)).collect();
                call(xs.into_iter().collect::<Option<_>>()?, *returns)
            }
            Signature::Number => {
                let x = self.lower(&args[0], expected.and_then(arith_type))?;
                let Some(t) = arith_type(x.ty) else {
                    self.mismatch(args[0].span, format!("{what} takes a number, found {}", x.ty));
                    return None;
                };
                call(vec![convert(x, t)], t)
            }
            Signature::Floats => {
                let xs: Vec<Option<Expr>> = args.iter().map(|a| self.float_arg(a, name)).collect();
                call(xs.into_iter().collect::<Option<_>>()?, Float64)
            }
            Signature::Vectors => {
                let xs: Vec<Option<Expr>> = args.iter().map(|a| self.vector_arg(a, name)).collect();
                call(xs.into_iter().collect::<Option<_>>()?, Float64)
            }
        }
    }

    /// `bucketize` bounds: a non-empty list of strictly ascending number literals.
    fn bounds(&mut self, e: &ast::Expr) -> Option<Vec<f64>> {
        let hint = Some("write e.g. `bucketize(age, [18, 30, 50])`".to_string());
        let A::List(items) = &e.kind else {
            self.error(
                e.span,
                codes::BAD_BOUNDS,
                "the bounds of `bucketize` must be a list of numbers".into(),
                hint,
            );
            return None;
        };
        if items.is_empty() {
            self.error(e.span, codes::BAD_BOUNDS, "the bounds of `bucketize` are empty".into(), hint);
            return None;
        }
        let mut out: Vec<f64> = Vec::new();
        for item in items {
            let v = match literal(item) {
                Some(Lit::Int(i)) => i as f64,
                Some(Lit::Float(v)) => v,
                _ => {
                    self.error(
                        item.span,
                        codes::BAD_BOUNDS,
                        "a bound of `bucketize` must be a number literal".into(),
                        hint,
                    );
                    return None;
                }
            };
            if let Some(&last) = out.last() {
                if v <= last {
                    self.error(
                        item.span,
                        codes::BAD_BOUNDS,
                        "the bounds of `bucketize` must be strictly ascending".into(),
                        Some(format!("{v:?} follows {last:?}")),
                    );
                    return None;
                }
            }
            out.push(v);
        }
        Some(out)
    }
}
