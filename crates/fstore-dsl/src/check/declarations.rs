//! Declarations: names across files, and the properties of each entity,
//! source, view and service.
//!
//! Every declaration's name is resolved here (one namespace, one name per
//! kind), and its properties checked and gathered into the infos the two
//! inference passes read ([`EntityInfo`], [`SourceInfo`], [`ViewInfo`]). A
//! service's references to views and features are resolved here too.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{At, Checker};
use crate::ast::{self, Decl, DeclKind, Entry, ExprKind as A, Property, Value};
use crate::diag::{codes, did_you_mean, Span};
use crate::plan::{FeatureRef, Service, SourceKind, View};
use crate::types::DataType;

const SOURCE_PROPS: &[&str] =
    &["type", "path", "topic", "format", "timestamp", "dead_letter_topic", "fields"];
const VIEW_PROPS: &[&str] = &["entity", "source", "ttl", "filter", "keys", "resolution", "features"];
const SERVICE_PROPS: &[&str] = &["features", "request", "derived"];

/// A value that failed to lex or parse; its error is already reported.
fn is_error(v: &Value) -> bool {
    matches!(v, Value::Error | Value::Expr(ast::Expr { kind: A::Error, .. }))
}

pub(super) struct EntityInfo {
    pub(super) name: String,
    pub(super) keys: Vec<(String, Option<DataType>)>,
}

pub(super) struct SourceInfo {
    pub(super) name: String,
    pub(super) kind: Option<SourceKind>,
    pub(super) timestamp: Option<(String, At)>,
    /// The `fields { ... }` block: name, type (None if unknown), where.
    pub(super) fields: Vec<(String, Option<DataType>, At)>,
}

pub(super) struct ViewInfo<'a> {
    pub(super) name: String,
    pub(super) file: usize,
    pub(super) entity: Option<usize>,
    /// Where the entity is named, for messages about unmapped key fields.
    pub(super) entity_at: At,
    pub(super) source: Option<usize>,
    /// `keys { key = field }`, only mappings of known keys.
    pub(super) key_map: Vec<(String, String, At)>,
    pub(super) ttl: Option<Duration>,
    pub(super) resolution: Option<(Duration, At)>,
    pub(super) filter: Option<&'a ast::Expr>,
    /// First feature of each name, in declaration order.
    pub(super) features: Vec<&'a ast::FeatureDef>,
    /// False when a property needed to build the view is missing or wrong.
    pub(super) valid: bool,
}

/// Properties of one declaration by name, after unknown and duplicate ones
/// have been reported.
type Props<'a> = HashMap<&'a str, &'a Property>;

impl<'a> Checker<'a> {
    /// Declarations by kind (entity, source, view, service), first of each
    /// name only; later ones are reported as duplicates.
    pub(super) fn collect_decls(&mut self) -> [Vec<(usize, &'a Decl)>; 4] {
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

    pub(super) fn entity(&mut self, file: usize, decl: &'a Decl) {
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

    pub(super) fn source(&mut self, file: usize, decl: &'a Decl) {
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

    pub(super) fn view(&mut self, file: usize, decl: &'a Decl) {
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

    /// The source field holding each key of the view's entity, in key order,
    /// with where the mapping was written (or the `entity` property).
    pub(super) fn key_fields(&self, view: &ViewInfo) -> Vec<(String, String, Option<DataType>, At)> {
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

    // -----------------------------------------------------------------------
    // Services
    // -----------------------------------------------------------------------

    pub(super) fn service(&mut self, file: usize, decl: &'a Decl, views: &[Option<View>]) -> Option<Service> {
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
        let request = props.get("request").copied();
        let derived = props.get("derived").copied();
        let blocks = self.service_blocks(file, &decl.name.name, request, derived, &features, views);
        let (request, derived) = blocks?;
        ok.then(|| Service { name: decl.name.name.clone(), features, request, derived })
    }
}
