//! A service's `request { ... }` and `derived { ... }` blocks: request
//! fields, and features computed at request time from them, the service's
//! features and earlier derived features.
//!
//! Names in a derived expression resolve through a [`ServiceScope`]: a bare
//! name is a request field or an earlier derived feature, and `view.feature`
//! one of the service's features. Evaluation order is declaration order, so
//! a derived feature that uses itself or a later one is an error, and no
//! cycle can be written.

use std::cell::Cell;
use std::collections::HashMap;

use super::typing::{Ctx, Scope, Typer};
use super::{At, Checker};
use crate::ast::{self, Property, Value};
use crate::diag::{codes, did_you_mean, Span};
use crate::plan::{DerivedFeature, Expr, ExprKind, FeatureRef, RequestField, View};
use crate::types::DataType;

/// A name that did not resolve: what to report.
pub(super) struct Unresolved {
    span: Span,
    code: &'static str,
    message: String,
    hint: Option<String>,
}

/// `Ok(None)`: the name refers to something already in error.
pub(super) type Resolved = Result<Option<Expr>, Unresolved>;

/// What the names of one service's derived features refer to.
pub(super) struct ServiceScope<'t> {
    service: &'t str,
    /// Request field -> its type (`None` when the type is unknown, already reported).
    request: HashMap<&'t str, Option<DataType>>,
    /// Derived feature -> (its position, its declared type).
    derived: HashMap<&'t str, (usize, Option<DataType>)>,
    /// The derived feature being typed.
    current: Cell<usize>,
    /// `view.feature` -> type, for each feature the service lists.
    listed: HashMap<String, DataType>,
    /// Every view (by name) and its features; `None` for a view in error.
    views: HashMap<&'t str, Option<Vec<&'t str>>>,
}

fn field(name: String, ty: Option<DataType>) -> Resolved {
    Ok(ty.map(|ty| Expr { kind: ExprKind::Field(name), ty }))
}

impl ServiceScope<'_> {
    /// A bare name: a request field, or a derived feature before the current one.
    pub(super) fn name(&self, name: &str, span: Span) -> Resolved {
        if let Some(&ty) = self.request.get(name) {
            return field(name.to_string(), ty);
        }
        let current = self.current.get();
        if let Some(&(index, ty)) = self.derived.get(name) {
            if index < current {
                return field(name.to_string(), ty);
            }
            let (message, hint) = if index == current {
                (
                    format!("derived feature `{name}` uses itself"),
                    "a derived feature is computed from request fields, the service's features and derived features above it".to_string(),
                )
            } else {
                (
                    format!("derived feature `{name}` is used before it is defined"),
                    format!("derived features are computed in order; move `{name}` above this one"),
                )
            };
            return Err(Unresolved { span, code: codes::DERIVED_ORDER, message, hint: Some(hint) });
        }
        let mut known: Vec<&str> = self.request.keys().copied().collect();
        known.extend(self.derived.iter().filter(|(_, (i, _))| *i < current).map(|(n, _)| *n));
        known.sort_unstable();
        let hint = did_you_mean(name, known.iter().copied()).or_else(|| {
            let mut listed: Vec<&String> =
                self.listed.keys().filter(|k| k.rsplit('.').next() == Some(name)).collect();
            listed.sort();
            match listed.first() {
                Some(full) => Some(format!("features are named with their view: `{full}`")),
                None if known.is_empty() => Some(format!(
                    "declare it in the service's request block: `request {{ {name}: float64 }}`"
                )),
                None => Some(format!(
                    "the names here are {}, and the service's features as `view.feature`",
                    known.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                )),
            }
        });
        Err(Unresolved {
            span,
            code: codes::UNKNOWN_NAME,
            message: format!("unknown name `{name}` in service `{}`", self.service),
            hint,
        })
    }

    /// `view.feature`: one of the service's features.
    pub(super) fn qualified(&self, view: &ast::Ident, feature: &ast::Ident, span: Span) -> Resolved {
        let full = format!("{}.{}", view.name, feature.name);
        if let Some(&ty) = self.listed.get(&full) {
            return field(full, Some(ty));
        }
        let Some(features) = self.views.get(view.name.as_str()) else {
            return Err(Unresolved {
                span: view.span,
                code: codes::UNKNOWN_VIEW,
                message: format!("unknown view `{}`", view.name),
                hint: did_you_mean(&view.name, self.views.keys().copied()),
            });
        };
        // A view in error: whatever it was meant to hold is reported there.
        let Some(features) = features else { return Ok(None) };
        if !features.contains(&feature.name.as_str()) {
            return Err(Unresolved {
                span: feature.span,
                code: codes::UNKNOWN_FEATURE,
                message: format!("view `{}` has no feature `{}`", view.name, feature.name),
                hint: did_you_mean(&feature.name, features.iter().copied()),
            });
        }
        Err(Unresolved {
            span,
            code: codes::FEATURE_NOT_IN_SERVICE,
            message: format!("`{full}` is not one of the features of service `{}`", self.service),
            hint: Some(format!(
                "add `{full}` to the service's `features`; derived features read only what the service serves"
            )),
        })
    }
}

impl Typer<'_, '_> {
    /// Report a name that did not resolve.
    pub(super) fn resolved(&mut self, resolved: Resolved) -> Option<Expr> {
        match resolved {
            Ok(x) => x,
            Err(u) => {
                self.error(u.span, u.code, u.message, u.hint);
                None
            }
        }
    }
}

impl<'a> Checker<'a> {
    /// The `request` and `derived` blocks of service `name`, given the
    /// features it lists (already resolved) and every typed view. `None`
    /// when anything is wrong (and reported).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn service_blocks<'v>(
        &mut self,
        file: usize,
        name: &'v str,
        request: Option<&'a Property>,
        derived: Option<&'a Property>,
        features: &[FeatureRef],
        views: &'v [Option<View>],
    ) -> Option<(Vec<RequestField>, Vec<DerivedFeature>)> {
        let mut ok = true;
        let mut request_fields: Vec<(&'a ast::FieldDecl, Option<DataType>)> = Vec::new();
        if let Some(p) = request {
            match &p.value {
                Value::Fields(fields, _) => {
                    let mut seen: HashMap<&str, Span> = HashMap::new();
                    for f in fields {
                        if let Some(&first) = seen.get(f.name.name.as_str()) {
                            let first = self.rep.loc(At { file, span: first });
                            self.report(
                                At { file, span: f.name.span },
                                codes::DUPLICATE_ENTRY,
                                format!("request field `{}` is declared twice", f.name.name),
                                Some(format!("first declared at {first}")),
                            );
                            ok = false;
                            continue;
                        }
                        seen.insert(&f.name.name, f.name.span);
                        let ty = self.rep.resolve_type(file, &f.ty);
                        ok &= ty.is_some();
                        request_fields.push((f, ty));
                    }
                }
                Value::Error => ok = false,
                _ => {
                    self.report(
                        At { file, span: p.span },
                        codes::BAD_VALUE,
                        "a service's `request` is a block of typed fields".into(),
                        Some("write `request { device: string, shown_price: float64 }`".into()),
                    );
                    ok = false;
                }
            }
        }
        let mut defs: Vec<&'a ast::FeatureDef> = Vec::new();
        if let Some(p) = derived {
            match &p.value {
                Value::Features(features, _) => defs.extend(features),
                Value::Error => ok = false,
                _ => {
                    self.report(
                        At { file, span: p.span },
                        codes::BAD_VALUE,
                        "a service's `derived` is a block of features".into(),
                        Some(
                            "write `derived { price_ratio: float64 = shown_price / item_features.price }`"
                                .into(),
                        ),
                    );
                    ok = false;
                }
            }
        }

        let mut scope = ServiceScope {
            service: name,
            request: request_fields.iter().map(|(f, ty)| (f.name.name.as_str(), *ty)).collect(),
            derived: HashMap::new(),
            current: Cell::new(0),
            listed: HashMap::new(),
            views: HashMap::new(),
        };
        for (info, typed) in self.views.iter().zip(views) {
            let names = typed.as_ref().map(|v| v.feature_names().into_iter().map(|(n, _)| n).collect());
            scope.views.insert(info.name.as_str(), names);
        }
        // Service features are resolved against the typed views; a view in
        // error is left out (its errors are reported).
        for r in features {
            if let Some(Some(view)) = views.get(r.view) {
                if let Some((feature, ty)) = view.feature_names().get(r.feature) {
                    scope.listed.insert(format!("{}.{feature}", view.name), *ty);
                }
            }
        }
        // The derived features that will be typed, first of each name.
        let mut kept: Vec<(&'a ast::FeatureDef, Option<DataType>)> = Vec::new();
        for def in defs {
            let at = At { file, span: def.name.span };
            let n = def.name.name.as_str();
            if let Some(&(i, _)) = scope.derived.get(n) {
                let first = self.rep.loc(At { file, span: kept[i].0.name.span });
                self.rep.report(
                    at,
                    codes::DUPLICATE_ENTRY,
                    format!("derived feature `{n}` is declared twice"),
                    Some(format!("first declared at {first}")),
                );
                ok = false;
                continue;
            }
            if let Some((f, _)) = request_fields.iter().find(|(f, _)| f.name.name == n) {
                let first = self.rep.loc(At { file, span: f.name.span });
                self.rep.report(
                    at,
                    codes::NAME_CLASH,
                    format!("derived feature `{n}` has the name of a request field"),
                    Some(format!("the request field is declared at {first}; rename one of them")),
                );
                ok = false;
                continue;
            }
            // An empty type name marks a feature whose declaration did not
            // parse (reported).
            let ty = if def.ty.name.is_empty() { None } else { self.rep.resolve_type(file, &def.ty) };
            ok &= ty.is_some();
            scope.derived.insert(n, (kept.len(), ty));
            kept.push((def, ty));
        }

        let mut typer = Typer { rep: &mut self.rep, scope: Scope::Service(&scope), file, ctx: Ctx::Derived };
        let mut out = Vec::new();
        for (i, (def, declared)) in kept.iter().enumerate() {
            scope.current.set(i);
            if let Some((_, span)) = def.over {
                typer.error(
                    span,
                    codes::OVER_WITHOUT_AGG,
                    format!("`over` has no meaning in derived feature `{}`", def.name.name),
                    Some(
                        "windows belong to aggregations in a view; list that view's feature in the service"
                            .into(),
                    ),
                );
                ok = false;
            }
            if let Some(c) = &def.condition {
                typer.error(
                    c.span,
                    codes::WHERE_WITHOUT_AGG,
                    format!("`where` has no meaning in derived feature `{}`", def.name.name),
                    Some("to choose between values, write `if(condition, a, b)`".into()),
                );
                ok = false;
            }
            if matches!(def.expr.kind, ast::ExprKind::Error) {
                ok = false;
                continue;
            }
            let Some(x) = typer.lower(&def.expr, *declared) else {
                ok = false;
                continue;
            };
            let Some(ty) = *declared else { continue };
            match typer.fit_declared(x, ty, def, def.expr.span) {
                Some(expr) => out.push(DerivedFeature { name: def.name.name.clone(), ty, expr }),
                None => ok = false,
            }
        }
        let request = request_fields
            .into_iter()
            .map(|(f, ty)| Some(RequestField { name: f.name.name.clone(), ty: ty? }))
            .collect::<Option<Vec<_>>>();
        match (ok, request) {
            (true, Some(request)) => Some((request, out)),
            _ => None,
        }
    }
}
