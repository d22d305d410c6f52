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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use crate::ast::{self, BinOp, Decl, DeclKind, Entry, ExprKind as A, Property, TypeName, Value};
use crate::diag::{codes, did_you_mean, location, Diagnostic, Span, MAX_PER_FILE};
use crate::parse::{format_duration, parse};
use crate::plan::{
    AggFeature, AggFunc, ArithOp, CmpOp, Entity, EntityKey, Expr, ExprKind, FeatureRef, Func, Literal, Plan,
    RowFeature, Service, Source, SourceKind, View, ViewBody,
};
use crate::types::DataType;
use crate::SourceFile;

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

/// Default tile size of aggregating views.
const DEFAULT_RESOLUTION: Duration = Duration::from_secs(60);

const AGG_FUNCS: &[&str] = &["count", "sum", "avg", "min", "max", "last", "first"];

/// Row functions with their arity (min, max).
const ROW_FUNCS: &[(&str, usize, usize)] = &[
    ("coalesce", 2, usize::MAX),
    ("if", 3, 3),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("length", 1, 1),
    ("concat", 1, usize::MAX),
    ("abs", 1, 1),
    ("ln", 1, 1),
    ("log10", 1, 1),
    ("sqrt", 1, 1),
    ("exp", 1, 1),
    ("pow", 2, 2),
    ("floor", 1, 1),
    ("ceil", 1, 1),
    ("round", 1, 1),
    ("least", 2, usize::MAX),
    ("greatest", 2, usize::MAX),
    ("clamp", 3, 3),
    ("bucketize", 2, 2),
    ("hash_bucket", 2, 2),
    ("days_between", 2, 2),
    ("hours_between", 2, 2),
    ("day_of_week", 1, 1),
    ("hour_of_day", 1, 1),
];

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

const SOURCE_PROPS: &[&str] =
    &["type", "path", "topic", "format", "timestamp", "dead_letter_topic", "fields"];
const VIEW_PROPS: &[&str] = &["entity", "source", "ttl", "filter", "keys", "resolution", "features"];
const SERVICE_PROPS: &[&str] = &["features"];

/// A value that failed to lex or parse; its error is already reported.
fn is_error(v: &Value) -> bool {
    matches!(v, Value::Error | Value::Expr(ast::Expr { kind: A::Error, .. }))
}

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

// ---------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------

struct EntityInfo {
    name: String,
    keys: Vec<(String, Option<DataType>)>,
}

struct SourceInfo {
    name: String,
    kind: Option<SourceKind>,
    timestamp: Option<(String, At)>,
    /// The `fields { ... }` block: name, type (None if unknown), where.
    fields: Vec<(String, Option<DataType>, At)>,
}

struct ViewInfo<'a> {
    name: String,
    file: usize,
    entity: Option<usize>,
    /// Where the entity is named, for messages about unmapped key fields.
    entity_at: At,
    source: Option<usize>,
    /// `keys { key = field }`, only mappings of known keys.
    key_map: Vec<(String, String, At)>,
    ttl: Option<Duration>,
    resolution: Option<(Duration, At)>,
    filter: Option<&'a ast::Expr>,
    /// First feature of each name, in declaration order.
    features: Vec<&'a ast::FeatureDef>,
    /// False when a property needed to build the view is missing or wrong.
    valid: bool,
}

struct Checker<'a> {
    rep: Reporter<'a>,
    asts: &'a [ast::File],
    entities: Vec<EntityInfo>,
    sources: Vec<SourceInfo>,
    views: Vec<ViewInfo<'a>>,
}

/// Properties of one declaration by name, after unknown and duplicate ones
/// have been reported.
type Props<'a> = HashMap<&'a str, &'a Property>;

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
            decls[3].iter().map(|&(file, decl)| self.service(file, decl)).collect();

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

    /// Declarations by kind (entity, source, view, service), first of each
    /// name only; later ones are reported as duplicates.
    fn collect_decls(&mut self) -> [Vec<(usize, &'a Decl)>; 4] {
        let mut out: [Vec<(usize, &'a Decl)>; 4] = Default::default();
        let mut seen: HashMap<(usize, &'a str), At> = HashMap::new();
        for (file, ast) in self.asts.iter().enumerate() {
            for decl in &ast.decls {
                let kind = match decl.kind {
                    DeclKind::Entity => 0,
                    DeclKind::Source => 1,
                    DeclKind::View => 2,
                    DeclKind::Service => 3,
                };
                let at = At { file, span: decl.name.span };
                if let Some(&first) = seen.get(&(kind, decl.name.name.as_str())) {
                    let first = self.rep.loc(first);
                    self.report(
                        at,
                        codes::DUPLICATE_DECL,
                        format!("{} `{}` is declared twice", decl.kind.keyword(), decl.name.name),
                        Some(format!("first declared at {first}")),
                    );
                    continue;
                }
                seen.insert((kind, decl.name.name.as_str()), at);
                out[kind].push((file, decl));
            }
        }
        out
    }

    /// Report unknown and duplicate properties (and `key` lines outside an
    /// entity); return the rest by name.
    fn props(&mut self, file: usize, decl: &'a Decl, allowed: &[&str]) -> Props<'a> {
        let mut props: Props<'a> = HashMap::new();
        let kind = decl.kind.keyword();
        for entry in &decl.entries {
            match entry {
                Entry::Key { span, .. } => self.report(
                    At { file, span: *span },
                    codes::UNKNOWN_PROPERTY,
                    format!("a {kind} has no `key` lines"),
                    Some("keys are declared in an entity: `entity user { key user_id: int64 }`".into()),
                ),
                Entry::Property(p) => {
                    let at = At { file, span: p.name.span };
                    if !allowed.contains(&p.name.name.as_str()) {
                        let hint = did_you_mean(&p.name.name, allowed.iter().copied()).or_else(|| {
                            Some(format!(
                                "a {kind} has the properties {}",
                                allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                            ))
                        });
                        self.report(
                            at,
                            codes::UNKNOWN_PROPERTY,
                            format!("unknown property `{}` in {kind} `{}`", p.name.name, decl.name.name),
                            hint,
                        );
                    } else if let Some(first) = props.get(p.name.name.as_str()) {
                        let first = self.rep.loc(At { file, span: first.name.span });
                        self.report(
                            at,
                            codes::DUPLICATE_PROPERTY,
                            format!("property `{}` is given twice", p.name.name),
                            Some(format!("first given at {first}")),
                        );
                    } else {
                        props.insert(p.name.name.as_str(), p);
                    }
                }
            }
        }
        props
    }

    fn missing(&mut self, file: usize, decl: &Decl, prop: &str, example: &str) {
        if decl.incomplete {
            return;
        }
        self.report(
            At { file, span: decl.name.span },
            codes::MISSING_PROPERTY,
            format!("{} `{}` has no `{prop}`", decl.kind.keyword(), decl.name.name),
            Some(format!("add `{example}`")),
        );
    }

    fn bad_value(&mut self, file: usize, span: Span, message: String, hint: Option<String>) {
        self.report(At { file, span }, codes::BAD_VALUE, message, hint);
    }

    /// A property whose value is a bare word: `type = parquet`.
    fn word(&mut self, file: usize, p: &'a Property, example: &str) -> Option<(&'a str, Span)> {
        if is_error(&p.value) {
            return None;
        }
        match &p.value {
            Value::Expr(ast::Expr { kind: A::Ident(w), span }) => Some((w.as_str(), *span)),
            Value::Error => None,
            _ => {
                self.bad_value(
                    file,
                    p.span,
                    format!("`{}` expects a name", p.name.name),
                    Some(format!("write `{example}`")),
                );
                None
            }
        }
    }

    fn string(&mut self, file: usize, p: &'a Property, example: &str) -> Option<String> {
        if is_error(&p.value) {
            return None;
        }
        match &p.value {
            Value::Expr(ast::Expr { kind: A::Str(s), .. }) => Some(s.clone()),
            Value::Error => None,
            _ => {
                self.bad_value(
                    file,
                    p.span,
                    format!("`{}` expects a string", p.name.name),
                    Some(format!("write `{example}`")),
                );
                None
            }
        }
    }

    /// A positive duration: `ttl = 2d`.
    fn duration(&mut self, file: usize, p: &'a Property) -> Option<(Duration, Span)> {
        if is_error(&p.value) {
            return None;
        }
        match &p.value {
            Value::Expr(ast::Expr { kind: A::Duration(d), span }) => {
                if d.is_zero() {
                    self.report(
                        At { file, span: *span },
                        codes::ZERO_DURATION,
                        format!("`{}` must be longer than zero", p.name.name),
                        None,
                    );
                    return None;
                }
                Some((*d, *span))
            }
            Value::Error => None,
            _ => {
                self.bad_value(
                    file,
                    p.span,
                    format!("`{}` expects a duration", p.name.name),
                    Some(format!("write it with a unit: `{} = 1h` (s, m, h, d or w)", p.name.name)),
                );
                None
            }
        }
    }

    fn entity(&mut self, file: usize, decl: &'a Decl) {
        let mut keys: Vec<(String, Option<DataType>)> = Vec::new();
        let mut valid = true;
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for entry in &decl.entries {
            match entry {
                Entry::Key { name, ty, .. } => {
                    let at = At { file, span: name.span };
                    if let Some(&first) = seen.get(name.name.as_str()) {
                        let first = self.rep.loc(At { file, span: first });
                        self.report(
                            at,
                            codes::DUPLICATE_ENTRY,
                            format!("key `{}` is declared twice", name.name),
                            Some(format!("first declared at {first}")),
                        );
                        valid = false;
                        continue;
                    }
                    seen.insert(&name.name, name.span);
                    let t = self.rep.resolve_type(file, ty);
                    let t = match t {
                        Some(t @ (DataType::Int64 | DataType::String)) => Some(t),
                        Some(t) => {
                            self.report(
                                At { file, span: ty.span },
                                codes::KEY_TYPE,
                                format!("key `{}` has type {t}; keys are int64 or string", name.name),
                                Some("convert the key in the source, or use a string key".into()),
                            );
                            None
                        }
                        None => None,
                    };
                    valid &= t.is_some();
                    keys.push((name.name.clone(), t));
                }
                Entry::Property(p) => {
                    self.report(
                        At { file, span: p.name.span },
                        codes::UNKNOWN_PROPERTY,
                        format!("unknown property `{}` in entity `{}`", p.name.name, decl.name.name),
                        Some("an entity holds only key lines: `key user_id: int64`".into()),
                    );
                }
            }
        }
        if keys.is_empty() && valid && !decl.incomplete {
            self.report(
                At { file, span: decl.name.span },
                codes::NO_KEYS,
                format!("entity `{}` has no key", decl.name.name),
                Some("add a key line: `key user_id: int64`".into()),
            );
        }
        self.entities.push(EntityInfo { name: decl.name.name.clone(), keys });
    }

    fn source(&mut self, file: usize, decl: &'a Decl) {
        let props = self.props(file, decl, SOURCE_PROPS);
        let get = |name: &str| props.get(name).copied();

        let mut fields = Vec::new();
        if let Some(p) = get("fields") {
            match &p.value {
                Value::Fields(decls, _) => {
                    let mut seen: HashMap<&str, Span> = HashMap::new();
                    for f in decls {
                        let at = At { file, span: f.name.span };
                        if let Some(&first) = seen.get(f.name.name.as_str()) {
                            let first = self.rep.loc(At { file, span: first });
                            self.report(
                                at,
                                codes::DUPLICATE_ENTRY,
                                format!("field `{}` is declared twice", f.name.name),
                                Some(format!("first declared at {first}")),
                            );
                            continue;
                        }
                        seen.insert(&f.name.name, f.name.span);
                        let ty = self.rep.resolve_type(file, &f.ty);
                        fields.push((f.name.name.clone(), ty, At { file, span: f.ty.span }));
                    }
                }
                Value::Error => {}
                _ => self.bad_value(
                    file,
                    p.span,
                    "`fields` expects a block of field types".into(),
                    Some("write `fields { price: float64, item_id: string }`".into()),
                ),
            }
        }

        let timestamp = match get("timestamp") {
            Some(p) => {
                self.word(file, p, "timestamp = event_ts").map(|(w, span)| (w.to_string(), At { file, span }))
            }
            None => {
                self.missing(file, decl, "timestamp", "timestamp = event_time_field");
                None
            }
        };

        let kind = match get("type") {
            None => {
                self.missing(file, decl, "type", "type = parquet` or `type = kafka");
                None
            }
            Some(p) => match self.word(file, p, "type = parquet") {
                Some(("parquet", _)) => {
                    self.not_for(file, &props, &["topic", "format", "dead_letter_topic"], "kafka");
                    match get("path") {
                        Some(p) => self
                            .string(file, p, "path = \"data/*.parquet\"")
                            .map(|path| SourceKind::Parquet { path }),
                        None => {
                            self.missing(file, decl, "path", "path = \"data/*.parquet\"");
                            None
                        }
                    }
                }
                Some(("kafka", _)) => {
                    self.not_for(file, &props, &["path"], "parquet");
                    match get("format") {
                        Some(p) => match self.word(file, p, "format = json") {
                            Some(("json", _)) | None => {}
                            Some((other, span)) => self.bad_value(
                                file,
                                span,
                                format!("unsupported format `{other}`"),
                                Some("kafka sources read `json` (one JSON object per message)".into()),
                            ),
                        },
                        None => self.missing(file, decl, "format", "format = json"),
                    }
                    let dead_letter_topic = get("dead_letter_topic")
                        .and_then(|p| self.string(file, p, "dead_letter_topic = \"clicks_dlq\""));
                    match get("topic") {
                        Some(p) => self
                            .string(file, p, "topic = \"clicks\"")
                            .map(|topic| SourceKind::Kafka { topic, dead_letter_topic }),
                        None => {
                            self.missing(file, decl, "topic", "topic = \"clicks\"");
                            None
                        }
                    }
                }
                Some((other, span)) => {
                    let hint = did_you_mean(other, ["parquet", "kafka"])
                        .or_else(|| Some("a source is `type = parquet` or `type = kafka`".into()));
                    self.bad_value(file, span, format!("unknown source type `{other}`"), hint);
                    None
                }
                None => None,
            },
        };

        self.sources.push(SourceInfo { name: decl.name.name.clone(), kind, timestamp, fields });
    }

    /// Report properties that belong to the other source type.
    fn not_for(&mut self, file: usize, props: &Props<'a>, names: &[&str], other: &str) {
        let mut found: Vec<&Property> = names.iter().filter_map(|n| props.get(n).copied()).collect();
        found.sort_by_key(|p| p.span.start);
        for p in found {
            self.report(
                At { file, span: p.name.span },
                codes::WRONG_SOURCE_KIND,
                format!("`{}` applies to {other} sources only", p.name.name),
                None,
            );
        }
    }

    fn entity_index(&self, name: &str) -> Option<usize> {
        self.entities.iter().position(|e| e.name == name)
    }

    fn source_index(&self, name: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.name == name)
    }

    fn view(&mut self, file: usize, decl: &'a Decl) {
        let props = self.props(file, decl, VIEW_PROPS);
        let get = |name: &str| props.get(name).copied();
        let mut valid = true;
        let mut entity_at = At { file, span: decl.name.span };

        let entity = match get("entity") {
            None => {
                self.missing(file, decl, "entity", "entity = user");
                None
            }
            Some(p) => self.word(file, p, "entity = user").and_then(|(name, span)| {
                entity_at = At { file, span };
                let found = self.entity_index(name);
                if found.is_none() {
                    let hint = did_you_mean(name, self.entities.iter().map(|e| e.name.as_str()));
                    self.report(
                        At { file, span },
                        codes::UNKNOWN_ENTITY,
                        format!("unknown entity `{name}`"),
                        hint,
                    );
                }
                found
            }),
        };
        let source = match get("source") {
            None => {
                self.missing(file, decl, "source", "source = events");
                None
            }
            Some(p) => self.word(file, p, "source = events").and_then(|(name, span)| {
                let found = self.source_index(name);
                if found.is_none() {
                    let hint = did_you_mean(name, self.sources.iter().map(|s| s.name.as_str()));
                    self.report(
                        At { file, span },
                        codes::UNKNOWN_SOURCE,
                        format!("unknown source `{name}`"),
                        hint,
                    );
                }
                found
            }),
        };
        valid &= entity.is_some() && source.is_some();

        let ttl = match get("ttl") {
            Some(p) => {
                let d = self.duration(file, p);
                valid &= d.is_some();
                d.map(|(d, _)| d)
            }
            None => None,
        };
        let resolution = match get("resolution") {
            Some(p) => {
                let d = self.duration(file, p);
                valid &= d.is_some();
                d.map(|(d, _)| (d, At { file, span: p.span }))
            }
            None => None,
        };
        let filter = match get("filter") {
            Some(p) => match &p.value {
                Value::Expr(e) => Some(e),
                Value::Error => None,
                _ => {
                    self.bad_value(
                        file,
                        p.span,
                        "`filter` expects an expression".into(),
                        Some("write `filter = country is not null`".into()),
                    );
                    None
                }
            },
            None => None,
        };

        let mut key_map = Vec::new();
        if let Some(p) = get("keys") {
            match &p.value {
                Value::Keys(maps, _) => {
                    let entity_keys: Vec<String> = entity
                        .and_then(|i| self.entities.get(i))
                        .map(|e| e.keys.iter().map(|(k, _)| k.clone()).collect())
                        .unwrap_or_default();
                    let mut seen: HashMap<&str, Span> = HashMap::new();
                    for m in maps {
                        let at = At { file, span: m.key.span };
                        if let Some(&first) = seen.get(m.key.name.as_str()) {
                            let first = self.rep.loc(At { file, span: first });
                            self.report(
                                at,
                                codes::DUPLICATE_ENTRY,
                                format!("key `{}` is mapped twice", m.key.name),
                                Some(format!("first mapped at {first}")),
                            );
                            continue;
                        }
                        seen.insert(&m.key.name, m.key.span);
                        if entity.is_some() && !entity_keys.contains(&m.key.name) {
                            let entity_name =
                                entity.and_then(|i| self.entities.get(i)).map_or("", |e| e.name.as_str());
                            let hint = did_you_mean(&m.key.name, entity_keys.iter().map(String::as_str))
                                .or_else(|| {
                                    Some(format!(
                                        "the keys of entity `{entity_name}` are {}",
                                        entity_keys
                                            .iter()
                                            .map(|k| format!("`{k}`"))
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ))
                                });
                            self.report(
                                at,
                                codes::UNKNOWN_KEY,
                                format!("`{}` is not a key of entity `{entity_name}`", m.key.name),
                                hint,
                            );
                            continue;
                        }
                        key_map.push((
                            m.key.name.clone(),
                            m.field.name.clone(),
                            At { file, span: m.field.span },
                        ));
                    }
                }
                Value::Error => {}
                _ => self.bad_value(
                    file,
                    p.span,
                    "`keys` expects a block of key mappings".into(),
                    Some("write `keys { user_id = uid }`".into()),
                ),
            }
        }

        let mut features = Vec::new();
        match get("features") {
            None => {
                self.missing(file, decl, "features", "features { name: type = expression }");
                valid = false;
            }
            Some(p) => match &p.value {
                Value::Features(defs, span) => {
                    if defs.is_empty() {
                        self.report(
                            At { file, span: *span },
                            codes::NO_FEATURES,
                            format!("view `{}` has no features", decl.name.name),
                            Some("add one: `features { country: string = country }`".into()),
                        );
                        valid = false;
                    }
                    let mut seen: HashMap<&str, Span> = HashMap::new();
                    for f in defs {
                        if let Some(&first) = seen.get(f.name.name.as_str()) {
                            let first = self.rep.loc(At { file, span: first });
                            self.report(
                                At { file, span: f.name.span },
                                codes::DUPLICATE_ENTRY,
                                format!("feature `{}` is declared twice", f.name.name),
                                Some(format!("first declared at {first}")),
                            );
                            continue;
                        }
                        seen.insert(&f.name.name, f.name.span);
                        features.push(f);
                    }
                }
                Value::Error => valid = false,
                _ => {
                    self.bad_value(
                        file,
                        p.span,
                        "a view's `features` is a block of feature definitions".into(),
                        Some("write `features { country: string = lower(country) }`".into()),
                    );
                    valid = false;
                }
            },
        }

        self.views.push(ViewInfo {
            name: decl.name.name.clone(),
            file,
            entity,
            entity_at,
            source,
            key_map,
            ttl,
            resolution,
            filter,
            features,
            valid,
        });
    }

    // -----------------------------------------------------------------------
    // Field type inference (pass 1)
    // -----------------------------------------------------------------------

    /// The source field holding each key of the view's entity, in key order,
    /// with where the mapping was written (or the `entity` property).
    fn key_fields(&self, view: &ViewInfo) -> Vec<(String, String, Option<DataType>, At)> {
        let Some(entity) = view.entity.and_then(|i| self.entities.get(i)) else {
            return Vec::new();
        };
        let entity_at = view.entity_at;
        entity
            .keys
            .iter()
            .map(|(key, ty)| match view.key_map.iter().find(|(k, _, _)| k == key) {
                Some((_, field, at)) => (key.clone(), field.clone(), *ty, *at),
                None => (key.clone(), key.clone(), *ty, entity_at),
            })
            .collect()
    }

    fn infer_fields(&mut self) -> Inferred {
        // Pins: types fixed by the source's timestamp, its fields block and
        // the entity keys of views reading it.
        let mut pins: BTreeMap<FieldKey, Vec<(Option<DataType>, At)>> = BTreeMap::new();
        // The timestamp and key fields are read whatever the expressions do.
        let mut read: BTreeSet<FieldKey> = BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if let Some((field, at)) = &s.timestamp {
                pins.entry((i, field.clone())).or_default().push((Some(DataType::Timestamp), *at));
                read.insert((i, field.clone()));
            }
            for (field, ty, at) in &s.fields {
                pins.entry((i, field.clone())).or_default().push((*ty, *at));
            }
        }
        for view in &self.views {
            let Some(source) = view.source else { continue };
            for (_, field, ty, at) in self.key_fields(view) {
                read.insert((source, field.clone()));
                pins.entry((source, field)).or_default().push((ty, at));
            }
        }
        for list in pins.values_mut() {
            list.sort_by_key(|(_, at)| *at);
        }
        let pinned: HashSet<FieldKey> = pins.keys().cloned().collect();

        let mut prev: HashMap<FieldKey, FieldType> = HashMap::new();
        let mut uses;
        // A comparison with an inferred field uses its type from the previous
        // round; chains of such comparisons settle in a few rounds.
        let mut rounds = 0;
        loop {
            uses = BTreeMap::new();
            for view in &self.views {
                let Some(source) = view.source else { continue };
                let mut walker = Walker {
                    source,
                    file: view.file,
                    prev: &prev,
                    pinned: &pinned,
                    uses: &mut uses,
                    ignore: 0,
                };
                walker.view(view);
            }
            let next: HashMap<FieldKey, FieldType> = pins
                .keys()
                .chain(uses.keys())
                .map(|k| {
                    let (t, _) = resolve(
                        pins.get(k).map_or(&[][..], Vec::as_slice),
                        uses.get(k).map_or(&[][..], Vec::as_slice),
                    );
                    (k.clone(), t)
                })
                .collect();
            rounds += 1;
            if next == prev || rounds >= 16 {
                break;
            }
            prev = next;
        }

        // The final round, with its problems reported.
        let mut out = HashMap::new();
        let keys: Vec<FieldKey> = {
            let mut k: Vec<FieldKey> = pins.keys().chain(uses.keys()).cloned().collect();
            k.sort();
            k.dedup();
            k
        };
        for key in keys {
            let mut field_uses = uses.get(&key).cloned().unwrap_or_default();
            field_uses.sort_by_key(|u| u.at);
            let (t, problem) = resolve(pins.get(&key).map_or(&[][..], Vec::as_slice), &field_uses);
            let (source, field) = (key.0, key.1.as_str());
            let source_name = self.sources.get(source).map_or_else(String::new, |s| s.name.clone());
            match problem {
                Some(Problem::Conflict { here, here_ty, other, other_ty }) => {
                    let other = self.rep.loc(other);
                    self.report(
                        here,
                        codes::FIELD_CONFLICT,
                        format!(
                            "field `{field}` of source `{source_name}` is used as {here_ty} here but as {other_ty} at {other}"
                        ),
                        Some(format!(
                            "a field has one type; convert one use with `as`, or pin the type in the source's fields block: `fields {{ {field}: {other_ty} }}`"
                        )),
                    );
                }
                Some(Problem::Uninferable { at }) => {
                    let others: Vec<&str> = uses
                        .keys()
                        .chain(pins.keys())
                        .filter(|(s, f)| *s == source && f != field)
                        .map(|(_, f)| f.as_str())
                        .collect();
                    let base = format!(
                        "write `{field} as int64` (or the type you mean), or declare it in the source's fields block"
                    );
                    let hint = match did_you_mean(field, others) {
                        Some(dym) => format!("{dym} Otherwise {base}"),
                        None => base,
                    };
                    self.report(
                        at,
                        codes::FIELD_UNINFERRED,
                        format!("cannot infer the type of field `{field}` of source `{source_name}`"),
                        Some(hint),
                    );
                }
                None => {}
            }
            out.insert(key, t);
        }
        for (key, list) in &uses {
            if list.iter().any(|u| u.class != Class::Ignored) {
                read.insert(key.clone());
            }
        }
        Inferred { types: out, read }
    }

    fn plan_source(&self, index: usize, s: &SourceInfo, inferred: &Inferred) -> Option<Source> {
        let (timestamp_field, _) = s.timestamp.clone()?;
        let mut fields = BTreeMap::new();
        // Only fields some view reads: a field declared in a fields block but
        // read by nothing must not make ingest reject rows.
        for key in inferred.read.iter().filter(|(src, _)| *src == index) {
            let ty = match inferred.types.get(key)? {
                FieldType::Typed(t) => Some(*t),
                FieldType::NullOnly => None,
                FieldType::Poisoned => return None,
            };
            fields.insert(key.1.clone(), ty);
        }
        Some(Source { name: s.name.clone(), kind: s.kind.clone()?, timestamp_field, fields })
    }

    // -----------------------------------------------------------------------
    // Views (pass 2)
    // -----------------------------------------------------------------------

    fn type_views(&mut self, inferred: &Inferred) -> Vec<Option<View>> {
        let views = std::mem::take(&mut self.views);
        let out = views.iter().map(|v| self.type_view(v, &inferred.types)).collect();
        self.views = views;
        out
    }

    fn type_view(&mut self, view: &ViewInfo<'a>, fields: &HashMap<FieldKey, FieldType>) -> Option<View> {
        let file = view.file;
        let source = view.source.and_then(|i| self.sources.get(i).map(|s| (i, s.name.clone())));
        let mut typer = Typer { rep: &mut self.rep, fields, source, file, ctx: Ctx::Filter };
        let filter = view.filter.map(|f| typer.condition(f, "the filter"));

        // Whether each feature aggregates; `None` for one that did not parse.
        let kinds: Vec<Option<bool>> = view
            .features
            .iter()
            .map(|f| (!matches!(f.expr.kind, A::Error)).then(|| is_agg_call(&f.expr)))
            .collect();
        let has_agg = kinds.contains(&Some(true));
        let has_row = kinds.contains(&Some(false));
        let source_name = typer.source.as_ref().map_or(String::new(), |(_, n)| n.clone());
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

    // -----------------------------------------------------------------------
    // Services
    // -----------------------------------------------------------------------

    fn service(&mut self, file: usize, decl: &'a Decl) -> Option<Service> {
        let props = self.props(file, decl, SERVICE_PROPS);
        let Some(p) = props.get("features").copied() else {
            self.missing(file, decl, "features", "features = [view.feature, view.*]");
            return None;
        };
        let (refs, list_span) = match &p.value {
            Value::Refs(refs, span) => (refs, *span),
            Value::Error => return None,
            _ => {
                self.bad_value(
                    file,
                    p.span,
                    "a service's `features` is a list of feature references".into(),
                    Some("write `features = [user_profile.*, user_activity.clicks_1h]`".into()),
                );
                return None;
            }
        };
        if refs.is_empty() {
            self.report(
                At { file, span: list_span },
                codes::EMPTY_SERVICE,
                format!("service `{}` has no features", decl.name.name),
                Some("list some: `features = [user_profile.*]`".into()),
            );
            return None;
        }

        let mut ok = true;
        let mut features: Vec<FeatureRef> = Vec::new();
        let mut listed: HashMap<(usize, usize), At> = HashMap::new();
        // Key name -> (type, entity name), across the entities drawn upon.
        let mut keys: HashMap<String, (Option<DataType>, String)> = HashMap::new();
        let mut entities_seen: HashSet<usize> = HashSet::new();
        for r in refs {
            let at = At { file, span: r.span };
            let Some(vi) = self.views.iter().position(|v| v.name == r.view.name) else {
                let hint = did_you_mean(&r.view.name, self.views.iter().map(|v| v.name.as_str()));
                self.report(
                    At { file, span: r.view.span },
                    codes::UNKNOWN_VIEW,
                    format!("unknown view `{}`", r.view.name),
                    hint,
                );
                ok = false;
                continue;
            };
            let view = &self.views[vi];
            let names: Vec<String> = view.features.iter().map(|f| f.name.name.clone()).collect();
            let indices: Vec<usize> = match &r.feature {
                None => (0..names.len()).collect(),
                Some(f) => match names.iter().position(|n| *n == f.name) {
                    Some(i) => vec![i],
                    None => {
                        let hint = did_you_mean(&f.name, names.iter().map(String::as_str));
                        let view_name = view.name.clone();
                        self.report(
                            At { file, span: f.span },
                            codes::UNKNOWN_FEATURE,
                            format!("view `{view_name}` has no feature `{}`", f.name),
                            hint,
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if let Some(ei) = self.views[vi].entity {
                if entities_seen.insert(ei) {
                    if let Some(entity) = self.entities.get(ei) {
                        let entity_name = entity.name.clone();
                        for (key, ty) in entity.keys.clone() {
                            match keys.get(&key) {
                                Some((other_ty, other_entity))
                                    if *other_ty != ty && ty.is_some() && other_ty.is_some() =>
                                {
                                    let (a, b) = (
                                        other_ty.map_or(String::new(), |t| t.to_string()),
                                        ty.map_or(String::new(), |t| t.to_string()),
                                    );
                                    let other_entity = other_entity.clone();
                                    self.report(
                                        at,
                                        codes::KEY_COLLISION,
                                        format!(
                                            "key `{key}` is {a} in entity `{other_entity}` but {b} in entity `{entity_name}`"
                                        ),
                                        Some("a request carries one column per key name; rename the key in one of the entities".into()),
                                    );
                                    ok = false;
                                }
                                Some(_) => {}
                                None => {
                                    keys.insert(key, (ty, entity_name.clone()));
                                }
                            }
                        }
                    }
                }
            }
            for i in indices {
                let view_name = &self.views[vi].name;
                if let Some(&first) = listed.get(&(vi, i)) {
                    let first = self.rep.loc(first);
                    let name = format!("{view_name}.{}", names[i]);
                    self.report(
                        at,
                        codes::DUPLICATE_FEATURE_REF,
                        format!("feature `{name}` is listed twice in service `{}`", decl.name.name),
                        Some(format!("it is already listed at {first}")),
                    );
                    ok = false;
                    continue;
                }
                listed.insert((vi, i), at);
                features.push(FeatureRef { view: vi, feature: i });
            }
        }
        ok.then(|| Service { name: decl.name.name.clone(), features })
    }
}

// ---------------------------------------------------------------------------
// Inference data
// ---------------------------------------------------------------------------

/// (source index, field name)
type FieldKey = (usize, String);

/// What inference decided: each field's type, and which fields views read.
struct Inferred {
    types: HashMap<FieldKey, FieldType>,
    read: BTreeSet<FieldKey>,
}

/// A field's type once inference is done.
#[derive(Clone, Copy, Debug, PartialEq)]
enum FieldType {
    Typed(DataType),
    /// Only ever tested with `is [not] null`.
    NullOnly,
    /// Its problem is already reported (or it only appears where another
    /// error was reported); expressions reading it are not typed further.
    Poisoned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Must be exactly this type (int64 and float64 join to float64).
    Strong,
    /// Any number will do; the type says which is preferred.
    Numeric,
    /// Only when nothing else decides: `x as T`, `x == other_field`.
    Weak,
    /// Read with no expectation at all (`hash_bucket(x, 8)`).
    Untyped,
    /// The operand of `is [not] null`.
    IsNull,
    /// Inside something already in error.
    Ignored,
}

#[derive(Clone, Copy, Debug)]
struct Demand {
    ty: DataType,
    class: Class,
}

#[derive(Clone, Copy, Debug)]
struct Use {
    ty: Option<DataType>,
    class: Class,
    at: At,
}

enum Problem {
    Conflict { here: At, here_ty: DataType, other: At, other_ty: DataType },
    Uninferable { at: At },
}

/// Join exact demands: equal types, or int64 with float64 giving float64.
/// Returns the type and where it was established, or the first conflict.
fn join_exact(uses: &[(DataType, At)]) -> Result<(DataType, At), Problem> {
    let mut iter = uses.iter();
    let Some(&(mut acc, mut acc_at)) = iter.next() else {
        return Err(Problem::Uninferable { at: At { file: 0, span: Span::default() } });
    };
    for &(t, at) in iter {
        match (acc, t) {
            _ if acc == t => {}
            (DataType::Int64, DataType::Float64) => {
                acc = DataType::Float64;
                acc_at = at;
            }
            (DataType::Float64, DataType::Int64) => {}
            _ => return Err(Problem::Conflict { here: at, here_ty: t, other: acc_at, other_ty: acc }),
        }
    }
    Ok((acc, acc_at))
}

/// Decide a field's type from its pins and uses (both sorted by position).
fn resolve(pins: &[(Option<DataType>, At)], uses: &[Use]) -> (FieldType, Option<Problem>) {
    if let Some(&(first, first_at)) = pins.first() {
        let Some(first) = first else {
            return (FieldType::Poisoned, None);
        };
        for &(t, at) in &pins[1..] {
            match t {
                None => return (FieldType::Poisoned, None),
                Some(t) if t != first => {
                    return (
                        FieldType::Poisoned,
                        Some(Problem::Conflict { here: at, here_ty: t, other: first_at, other_ty: first }),
                    )
                }
                Some(_) => {}
            }
        }
        return (FieldType::Typed(first), None);
    }
    let of = |class: Class| -> Vec<(DataType, At)> {
        uses.iter().filter(|u| u.class == class).filter_map(|u| u.ty.map(|t| (t, u.at))).collect()
    };
    let strong = of(Class::Strong);
    let numeric = of(Class::Numeric);
    if !strong.is_empty() {
        return match join_exact(&strong) {
            Err(p) => (FieldType::Poisoned, Some(p)),
            Ok((t, at)) => {
                if !t.is_numeric() {
                    if let Some(&(nt, nat)) = numeric.first() {
                        return (
                            FieldType::Poisoned,
                            Some(Problem::Conflict { here: nat, here_ty: nt, other: at, other_ty: t }),
                        );
                    }
                }
                (FieldType::Typed(t), None)
            }
        };
    }
    if !numeric.is_empty() {
        let all_int = numeric.iter().all(|(t, _)| *t == DataType::Int64);
        let all_f32 = numeric.iter().all(|(t, _)| *t == DataType::Float32);
        let t = if all_int {
            DataType::Int64
        } else if all_f32 {
            DataType::Float32
        } else {
            DataType::Float64
        };
        return (FieldType::Typed(t), None);
    }
    let weak = of(Class::Weak);
    if !weak.is_empty() {
        return match join_exact(&weak) {
            Err(p) => (FieldType::Poisoned, Some(p)),
            Ok((t, _)) => (FieldType::Typed(t), None),
        };
    }
    if let Some(u) = uses.iter().find(|u| u.class == Class::Untyped) {
        return (FieldType::Poisoned, Some(Problem::Uninferable { at: u.at }));
    }
    if uses.iter().any(|u| u.class == Class::IsNull) {
        return (FieldType::NullOnly, None);
    }
    (FieldType::Poisoned, None)
}

/// A literal as written, for `in` lists and `bucketize` bounds.
#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

fn literal(e: &ast::Expr) -> Option<Lit> {
    Some(match &e.kind {
        A::Null => Lit::Null,
        A::Bool(b) => Lit::Bool(*b),
        A::Int(i) => Lit::Int(*i),
        A::Float(x) => Lit::Float(*x),
        A::Str(s) => Lit::Str(s.clone()),
        A::Neg(inner) => match &inner.kind {
            A::Int(i) => Lit::Int(i.checked_neg()?),
            A::Float(x) => Lit::Float(-x),
            _ => return None,
        },
        _ => return None,
    })
}

fn lit_type(l: &Lit) -> Option<DataType> {
    match l {
        Lit::Null => None,
        Lit::Bool(_) => Some(DataType::Bool),
        Lit::Int(_) => Some(DataType::Int64),
        Lit::Float(_) => Some(DataType::Float64),
        Lit::Str(_) => Some(DataType::String),
    }
}

/// Join types that must become one (in pass 1 guesses): equal, or numbers
/// of different kinds giving float64.
fn join_guess(types: impl IntoIterator<Item = (DataType, bool)>) -> Option<(DataType, bool)> {
    let mut acc: Option<(DataType, bool)> = None;
    for (t, firm) in types {
        acc = Some(match acc {
            None => (t, firm),
            Some((a, af)) if a == t => (a, af || firm),
            Some((a, af)) if a.is_numeric() && t.is_numeric() => (DataType::Float64, af || firm),
            Some(_) => return None,
        });
    }
    acc
}

/// The type arithmetic works in: float32 operands are widened to float64.
fn arith_type(t: DataType) -> Option<DataType> {
    match t {
        DataType::Int64 => Some(DataType::Int64),
        DataType::Float32 | DataType::Float64 => Some(DataType::Float64),
        _ => None,
    }
}

/// Pass 1: walks one view's expressions, recording each field use.
struct Walker<'w> {
    source: usize,
    file: usize,
    prev: &'w HashMap<FieldKey, FieldType>,
    pinned: &'w HashSet<FieldKey>,
    uses: &'w mut BTreeMap<FieldKey, Vec<Use>>,
    /// Above zero inside constructs that are errors anyway.
    ignore: u32,
}

fn strong(ty: DataType) -> Option<Demand> {
    Some(Demand { ty, class: Class::Strong })
}

fn numeric(ty: DataType) -> Option<Demand> {
    Some(Demand { ty, class: Class::Numeric })
}

impl Walker<'_> {
    fn view(&mut self, view: &ViewInfo) {
        if let Some(f) = view.filter {
            self.walk(f, strong(DataType::Bool));
        }
        for f in &view.features {
            let declared = DataType::parse(&f.ty.name);
            match &f.expr.kind {
                A::Call { func, args } if AGG_FUNCS.contains(&func.name.as_str()) => {
                    let demand = match func.name.as_str() {
                        "count" => None,
                        "sum" => numeric(declared.and_then(arith_type).unwrap_or(DataType::Float64)),
                        "avg" => numeric(DataType::Float64),
                        _ => declared.and_then(strong),
                    };
                    if func.name == "count" || args.len() != 1 {
                        self.ignored(|w| args.iter().for_each(|a| w.walk(a, None)));
                    } else {
                        for a in args {
                            self.walk(a, demand);
                        }
                    }
                }
                // An unknown declared type is reported already; guessing
                // from nothing would only add a second error.
                _ if declared.is_none() => self.ignored(|w| w.walk(&f.expr, None)),
                _ => self.walk(&f.expr, declared.and_then(strong)),
            }
            if let Some(c) = &f.condition {
                self.walk(c, strong(DataType::Bool));
            }
        }
    }

    fn ignored(&mut self, f: impl FnOnce(&mut Self)) {
        self.ignore += 1;
        f(self);
        self.ignore -= 1;
    }

    fn record(&mut self, field: &str, span: Span, class: Class, ty: Option<DataType>) {
        let class = if self.ignore > 0 { Class::Ignored } else { class };
        self.uses.entry((self.source, field.to_string())).or_default().push(Use {
            ty,
            class,
            at: At { file: self.file, span },
        });
    }

    /// The type an expression will have, as far as it can be told now, and
    /// whether it is firm (not depending on an inferred field's type).
    fn known(&self, e: &ast::Expr) -> Option<(DataType, bool)> {
        match &e.kind {
            A::Bool(_) => Some((DataType::Bool, true)),
            A::Int(_) => Some((DataType::Int64, true)),
            A::Float(_) => Some((DataType::Float64, true)),
            A::Str(_) => Some((DataType::String, true)),
            A::Null | A::Duration(_) | A::List(_) | A::Error => None,
            A::Ident(name) => {
                let key = (self.source, name.clone());
                match self.prev.get(&key) {
                    Some(FieldType::Typed(t)) => Some((*t, self.pinned.contains(&key))),
                    _ => None,
                }
            }
            A::Neg(x) => self.known(x).filter(|(t, _)| t.is_numeric()),
            A::Not(_) | A::IsNull { .. } | A::In { .. } => Some((DataType::Bool, true)),
            A::Binary(op, l, r) => {
                if op.is_arithmetic() {
                    let sides = [self.known(l), self.known(r)];
                    let sides =
                        sides.into_iter().flatten().filter_map(|(t, f)| arith_type(t).map(|t| (t, f)));
                    join_guess(sides)
                } else {
                    Some((DataType::Bool, true))
                }
            }
            A::Cast { ty, .. } => DataType::parse(&ty.name).map(|t| (t, true)),
            A::Call { func, args } => match func.name.as_str() {
                "lower" | "upper" | "concat" => Some((DataType::String, true)),
                "length" | "days_between" | "hours_between" | "day_of_week" | "hour_of_day" | "bucketize"
                | "hash_bucket" => Some((DataType::Int64, true)),
                "ln" | "log10" | "sqrt" | "exp" | "pow" => Some((DataType::Float64, true)),
                "abs" | "floor" | "ceil" | "round" => {
                    args.first().and_then(|a| self.known(a)).and_then(|(t, f)| arith_type(t).map(|t| (t, f)))
                }
                "coalesce" | "least" | "greatest" | "clamp" => {
                    join_guess(args.iter().filter_map(|a| self.known(a)))
                }
                "if" => join_guess(args.iter().skip(1).filter_map(|a| self.known(a))),
                _ => None,
            },
        }
    }

    /// Walk operands that must end up with one type; the demand on each is
    /// the expected type if any, else the join of what the operands tell.
    fn group(&mut self, items: &[&ast::Expr], expected: Option<Demand>, numeric_only: bool) {
        let demand = match expected {
            Some(d) if !numeric_only || d.ty.is_numeric() => Some(d),
            _ => join_guess(items.iter().filter_map(|a| self.known(a))).map(|(ty, firm)| Demand {
                ty,
                class: if ty.is_numeric() {
                    Class::Numeric
                } else if firm {
                    Class::Strong
                } else {
                    Class::Weak
                },
            }),
        };
        let demand = demand.map(|d| {
            if numeric_only && d.class == Class::Strong {
                Demand { class: Class::Numeric, ..d }
            } else {
                d
            }
        });
        for a in items {
            self.walk(a, demand);
        }
    }

    fn walk(&mut self, e: &ast::Expr, expected: Option<Demand>) {
        match &e.kind {
            A::Ident(name) => match expected {
                Some(d) => self.record(name, e.span, d.class, Some(d.ty)),
                None => self.record(name, e.span, Class::Untyped, None),
            },
            A::Null | A::Bool(_) | A::Int(_) | A::Float(_) | A::Str(_) | A::Duration(_) | A::Error => {}
            A::List(items) => self.ignored(|w| items.iter().for_each(|i| w.walk(i, None))),
            A::Neg(x) => {
                let d = expected
                    .and_then(|d| arith_type(d.ty))
                    .or_else(|| self.known(x).and_then(|(t, _)| arith_type(t)));
                self.walk(x, d.and_then(numeric));
            }
            A::Not(x) => self.walk(x, strong(DataType::Bool)),
            A::Binary(BinOp::And | BinOp::Or, l, r) => {
                self.walk(l, strong(DataType::Bool));
                self.walk(r, strong(DataType::Bool));
            }
            A::Binary(op, l, r) if op.is_arithmetic() => {
                let from_context = expected.and_then(|d| arith_type(d.ty)).map(|t| (t, true));
                let sides = [self.known(l), self.known(r)]
                    .into_iter()
                    .flatten()
                    .filter_map(|(t, f)| arith_type(t).map(|t| (t, f)));
                let d = join_guess(from_context.into_iter().chain(sides)).and_then(|(t, _)| numeric(t));
                self.walk(l, d);
                self.walk(r, d);
            }
            A::Binary(_, l, r) => self.group(&[l, r], None, false),
            A::IsNull { expr, .. } => match &expr.kind {
                A::Ident(name) => self.record(name, expr.span, Class::IsNull, None),
                _ => self.walk(expr, None),
            },
            A::In { expr, list, .. } => {
                let lits: Vec<Option<Lit>> = list.iter().map(literal).collect();
                let types = || lits.iter().flatten().filter_map(lit_type);
                // Literals of different kinds are an error of their own;
                // the first one still tells what the field was meant to be.
                let d = join_guess(types().map(|t| (t, true)))
                    .or_else(|| types().next().map(|t| (t, true)))
                    .map(|(ty, _)| Demand {
                        ty,
                        class: if ty.is_numeric() { Class::Numeric } else { Class::Strong },
                    });
                self.walk(expr, d);
                for (item, lit) in list.iter().zip(&lits) {
                    if lit.is_none() {
                        self.ignored(|w| w.walk(item, None));
                    }
                }
            }
            A::Cast { expr, ty } => {
                let d = DataType::parse(&ty.name).map(|ty| Demand { ty, class: Class::Weak });
                self.walk(expr, d);
            }
            A::Call { func, args } => self.call(&func.name, args, expected),
        }
    }

    fn call(&mut self, func: &str, args: &[ast::Expr], expected: Option<Demand>) {
        let all = |w: &mut Self, d: Option<Demand>| args.iter().for_each(|a| w.walk(a, d));
        let refs: Vec<&ast::Expr> = args.iter().collect();
        match func {
            "coalesce" | "least" | "greatest" => self.group(&refs, expected, false),
            "clamp" => self.group(&refs, expected.filter(|d| d.ty.is_numeric()), true),
            "if" => {
                if let Some(c) = args.first() {
                    self.walk(c, strong(DataType::Bool));
                }
                self.group(refs.get(1..).unwrap_or(&[]), expected, false);
            }
            "lower" | "upper" | "length" | "concat" => all(self, strong(DataType::String)),
            "abs" | "floor" | "ceil" | "round" => {
                let d = expected
                    .and_then(|d| arith_type(d.ty))
                    .or_else(|| args.first().and_then(|a| self.known(a)).and_then(|(t, _)| arith_type(t)));
                all(self, d.and_then(numeric));
            }
            "ln" | "log10" | "sqrt" | "exp" | "pow" => all(self, numeric(DataType::Float64)),
            "days_between" | "hours_between" | "day_of_week" | "hour_of_day" => {
                all(self, strong(DataType::Timestamp))
            }
            "bucketize" | "hash_bucket" => {
                let d = if func == "bucketize" { numeric(DataType::Float64) } else { None };
                if let Some(x) = args.first() {
                    self.walk(x, d);
                }
                self.ignored(|w| args.iter().skip(1).for_each(|a| w.walk(a, None)));
            }
            _ => self.ignored(|w| all(w, None)),
        }
    }
}

// ---------------------------------------------------------------------------
// Expression typing (pass 2)
// ---------------------------------------------------------------------------

/// Where an expression stands, for the message about a misplaced aggregation.
#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Filter,
    Where,
    AggArg,
    Feature,
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

struct Typer<'t, 'a> {
    rep: &'t mut Reporter<'a>,
    fields: &'t HashMap<FieldKey, FieldType>,
    /// The view's source (index, name), if it resolved.
    source: Option<(usize, String)>,
    file: usize,
    ctx: Ctx,
}

impl Typer<'_, '_> {
    fn at(&self, span: Span) -> At {
        At { file: self.file, span }
    }

    fn error(&mut self, span: Span, code: &'static str, message: String, hint: Option<String>) {
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
    fn fit_declared(&mut self, x: Expr, declared: DataType, f: &ast::FeatureDef, span: Span) -> Option<Expr> {
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
        let (source, source_name) = self.source.clone()?;
        match self.fields.get(&(source, name.to_string())) {
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
    fn lower(&mut self, e: &ast::Expr, expected: Option<DataType>) -> Option<Expr> {
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
                if let A::Ident(name) = &expr.kind {
                    if let Some((source, _)) = &self.source {
                        if self.fields.get(&(*source, name.clone())) == Some(&FieldType::NullOnly) {
                            return Some(Expr {
                                kind: ExprKind::FieldIsNull { field: name.clone(), negated: *negated },
                                ty: DataType::Bool,
                            });
                        }
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
            };
            self.error(func.span, code, message, Some(hint.into()));
            return None;
        }
        let Some(&(_, min, max)) = ROW_FUNCS.iter().find(|(n, _, _)| *n == name) else {
            let hint =
                did_you_mean(name, ROW_FUNCS.iter().map(|(n, _, _)| *n).chain(AGG_FUNCS.iter().copied()));
            self.error(func.span, codes::UNKNOWN_FUNCTION, format!("unknown function `{name}`"), hint);
            return None;
        };
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                plural(min, "argument")
            } else if max == usize::MAX {
                format!("at least {}", plural(min, "argument"))
            } else {
                format!("{min} to {max} arguments")
            };
            self.error(span, codes::ARITY, format!("`{name}` takes {wanted}, found {}", args.len()), None);
            return None;
        }
        let what = format!("`{name}`");
        let call = |f: Func, args: Vec<Expr>, ty: DataType| Some(Expr { kind: ExprKind::Call(f, args), ty });
        use DataType::*;
        match name {
            "coalesce" | "least" | "greatest" | "clamp" => {
                let refs: Vec<&ast::Expr> = args.iter().collect();
                let expected =
                    if name == "coalesce" { expected } else { expected.filter(|t| t.is_numeric()) };
                // clamp works on numbers only, so float32 widens as in arithmetic.
                let mode = if name == "clamp" { Promote::Arith } else { Promote::Widen };
                let expected = if name == "clamp" { expected.and_then(arith_type) } else { expected };
                let (xs, ty) = self.same_type(&refs, expected, mode, &what)?;
                let allowed: &[DataType] = match name {
                    "coalesce" => &[],
                    "clamp" => &[Int64, Float64],
                    _ => &[Int64, Float64, String, Timestamp],
                };
                if !allowed.is_empty() && !allowed.contains(&ty) {
                    let names: Vec<std::string::String> = allowed.iter().map(|t| t.to_string()).collect();
                    self.mismatch(span, format!("{what} takes {}, found {ty}", names.join(" or ")));
                    return None;
                }
                let f = match name {
                    "coalesce" => Func::Coalesce,
                    "least" => Func::Least,
                    "greatest" => Func::Greatest,
                    _ => Func::Clamp,
                };
                call(f, xs, ty)
            }
            "if" => {
                let cond = self.bool_operand(&args[0], "the condition of `if`");
                let (xs, ty) = self.same_type(&[&args[1], &args[2]], expected, Promote::Widen, &what)?;
                let mut all = vec![cond?];
                all.extend(xs);
                call(Func::If, all, ty)
            }
            "lower" | "upper" | "length" => {
                let x = self.arg_of(&args[0], String, name)?;
                let (f, ty) = match name {
                    "lower" => (Func::Lower, String),
                    "upper" => (Func::Upper, String),
                    _ => (Func::Length, Int64),
                };
                call(f, vec![x], ty)
            }
            "concat" => {
                let xs: Vec<Option<Expr>> = args.iter().map(|a| self.arg_of(a, String, name)).collect();
                call(Func::Concat, xs.into_iter().collect::<Option<_>>()?, String)
            }
            "abs" | "floor" | "ceil" | "round" => {
                let x = self.lower(&args[0], expected.and_then(arith_type))?;
                let Some(t) = arith_type(x.ty) else {
                    self.mismatch(args[0].span, format!("{what} takes a number, found {}", x.ty));
                    return None;
                };
                let f = match name {
                    "abs" => Func::Abs,
                    "floor" => Func::Floor,
                    "ceil" => Func::Ceil,
                    _ => Func::Round,
                };
                call(f, vec![convert(x, t)], t)
            }
            "ln" | "log10" | "sqrt" | "exp" | "pow" => {
                let xs: Vec<Option<Expr>> = args.iter().map(|a| self.float_arg(a, name)).collect();
                let f = match name {
                    "ln" => Func::Ln,
                    "log10" => Func::Log10,
                    "sqrt" => Func::Sqrt,
                    "exp" => Func::Exp,
                    _ => Func::Pow,
                };
                call(f, xs.into_iter().collect::<Option<_>>()?, Float64)
            }
            "days_between" | "hours_between" | "day_of_week" | "hour_of_day" => {
                let xs: Vec<Option<Expr>> = args.iter().map(|a| self.arg_of(a, Timestamp, name)).collect();
                let f = match name {
                    "days_between" => Func::DaysBetween,
                    "hours_between" => Func::HoursBetween,
                    "day_of_week" => Func::DayOfWeek,
                    _ => Func::HourOfDay,
                };
                call(f, xs.into_iter().collect::<Option<_>>()?, Int64)
            }
            "bucketize" => {
                let x = self.float_arg(&args[0], name);
                let bounds = self.bounds(&args[1]);
                Some(Expr { kind: ExprKind::Bucketize(Box::new(x?), bounds?), ty: Int64 })
            }
            _ => {
                // hash_bucket
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
                Some(Expr { kind: ExprKind::HashBucket(Box::new(x?), n?), ty: Int64 })
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
