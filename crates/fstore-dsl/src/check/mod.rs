//! The checker: every file's syntax tree to one typed [`Plan`].
//!
//! It resolves names across all files (one namespace, one name per kind),
//! checks each declaration's properties, infers the type of every source
//! field from how views use it, types every expression, inserting the casts
//! the plan's invariants demand, and checks views and services. It reports
//! every error it finds, and it must never produce a plan that breaks an
//! invariant documented in [`crate::plan`]: when anything is wrong, no plan.
//!
//! Field types are inferred in two passes. Pass 1 walks each expression top
//! down with the type its context expects and records, per (source, field),
//! every *use*: a strong demand (a string function's argument, a feature's
//! declared type), a numeric demand (an arithmetic operand: any number will
//! do, the type says which is preferred), a weak demand (`x as T`, a
//! comparison with another inferred field), or none at all. Pins (the
//! source's timestamp, an entity key, the `fields` block) fix a type outright.
//! Pass 1 runs to a fixed point because a comparison with an inferred field
//! uses that field's current type. Pass 2 then types every expression with
//! the fields' types fixed.
//!
//! The work is split in three: `declarations` resolves names and checks each
//! declaration's properties, `inference` is pass 1, and `typing` is pass 2,
//! which also builds each view of the plan. This module holds the entry,
//! [`check`], the `Checker` that drives the three, and what they share.

mod declarations;
mod derived;
mod inference;
mod typing;

use crate::ast::{self, TypeName};
use crate::diag::{codes, did_you_mean, location, Diagnostic, Span, MAX_PER_FILE};
use crate::parse::parse;
use crate::plan::{Entity, EntityKey, Plan, Service};
use crate::types::DataType;
use crate::SourceFile;

use declarations::{EntityInfo, SourceInfo, ViewInfo};

/// Check every file together (one namespace) and produce the typed plan, or
/// every error found, sorted by file (in the order given) and position.
pub fn check(files: &[SourceFile]) -> Result<Plan, Vec<Diagnostic>> {
    let mut asts = Vec::with_capacity(files.len());
    let mut rep = Reporter { files, diags: Vec::new() };
    for file in files {
        let (ast, diags) = parse(file);
        asts.push(ast);
        rep.diags.extend(diags);
    }
    let plan = Checker::new(rep, &asts).run();
    match plan {
        Ok(plan) => Ok(plan),
        Err(mut diags) => {
            let order = |d: &Diagnostic| files.iter().position(|f| f.name == d.file);
            diags.sort_by_key(|d| (order(d), d.span.start, d.span.end));
            diags.dedup_by(|a, b| a.code == b.code && a.file == b.file && a.span == b.span);
            Err(diags)
        }
    }
}

const AGG_FUNCS: &[&str] = &["count", "sum", "avg", "min", "max", "last", "first"];

const TYPE_NAMES: &[&str] = &[
    "bool",
    "int64",
    "float32",
    "float64",
    "string",
    "bytes",
    "timestamp",
    "array<float32>",
    "array<float64>",
    "array<int64>",
    "array<string>",
];

/// A place in one of the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct At {
    file: usize,
    span: Span,
}

/// Collects diagnostics; shared by the checker and the expression typer.
struct Reporter<'a> {
    files: &'a [SourceFile],
    diags: Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn report(&mut self, at: At, code: &'static str, message: String, hint: Option<String>) {
        if let Some(file) = self.files.get(at.file) {
            if self.diags.iter().filter(|d| d.file == file.name).count() >= MAX_PER_FILE {
                return;
            }
            self.diags.push(Diagnostic::new(file, at.span, code, message).with_hint_opt(hint));
        }
    }

    fn loc(&self, at: At) -> String {
        self.files.get(at.file).map_or_else(String::new, |f| location(f, at.span))
    }

    /// Resolve a written type name, reporting unknown ones.
    fn resolve_type(&mut self, file: usize, ty: &TypeName) -> Option<DataType> {
        if let Some(t) = DataType::parse(&ty.name) {
            return Some(t);
        }
        let at = At { file, span: ty.span };
        let hint = if ty.name.starts_with("array<") {
            Some("arrays hold float32, float64, int64 or string: `array<float32>`".to_string())
        } else {
            did_you_mean(&ty.name, TYPE_NAMES.iter().copied()).or_else(|| {
                Some(
                    "the types are bool, int64, float32, float64, string, bytes, timestamp and array<T>"
                        .to_string(),
                )
            })
        };
        self.report(at, codes::UNKNOWN_TYPE, format!("unknown type `{}`", ty.name), hint);
        None
    }
}

/// The declarations of every file, as `declarations` gathers them for the
/// two passes to read.
struct Checker<'a> {
    rep: Reporter<'a>,
    asts: &'a [ast::File],
    entities: Vec<EntityInfo>,
    sources: Vec<SourceInfo>,
    views: Vec<ViewInfo<'a>>,
}

impl<'a> Checker<'a> {
    fn new(rep: Reporter<'a>, asts: &'a [ast::File]) -> Self {
        Checker { rep, asts, entities: Vec::new(), sources: Vec::new(), views: Vec::new() }
    }

    fn report(&mut self, at: At, code: &'static str, message: String, hint: Option<String>) {
        self.rep.report(at, code, message, hint);
    }

    fn run(mut self) -> Result<Plan, Vec<Diagnostic>> {
        let decls = self.collect_decls();
        for &(file, decl) in &decls[0] {
            self.entity(file, decl);
        }
        for &(file, decl) in &decls[1] {
            self.source(file, decl);
        }
        for &(file, decl) in &decls[2] {
            self.view(file, decl);
        }
        let fields = self.infer_fields();
        let views = self.type_views(&fields);
        let services: Vec<Option<Service>> =
            decls[3].iter().map(|&(file, decl)| self.service(file, decl, &views)).collect();

        if !self.rep.diags.is_empty() {
            return Err(self.rep.diags);
        }
        let plan = (|| {
            Some(Plan {
                entities: self
                    .entities
                    .iter()
                    .map(|e| {
                        Some(Entity {
                            name: e.name.clone(),
                            keys: e
                                .keys
                                .iter()
                                .map(|(name, ty)| Some(EntityKey { name: name.clone(), ty: (*ty)? }))
                                .collect::<Option<_>>()?,
                        })
                    })
                    .collect::<Option<_>>()?,
                sources: self
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(i, s)| self.plan_source(i, s, &fields))
                    .collect::<Option<_>>()?,
                views: views.into_iter().collect::<Option<_>>()?,
                services: services.into_iter().collect::<Option<_>>()?,
            })
        })();
        plan.ok_or_else(|| {
            // Every path that drops part of the plan reports why; reaching
            // this is a checker bug, reported rather than panicking.
            vec![Diagnostic {
                code: "E0000",
                message: "internal error: the checker could not build a plan".into(),
                file: self.rep.files.first().map_or_else(String::new, |f| f.name.clone()),
                span: Span::default(),
                line: 1,
                col: 1,
                hint: Some("please report this with the definitions that caused it".into()),
            }]
        })
    }
}
