//! The typed plan: what the checker produces and everything downstream runs on.
//!
//! A [`Plan`] is a fully resolved, fully typed view of one set of definitions.
//! Names are resolved to indices, every expression node carries its type, and
//! implicit conversions (int64 widening to float64) are explicit [`ExprKind::Cast`]
//! nodes. The evaluator and the store rely on the invariants documented on each
//! item and never re-check them; the checker must never produce a plan that
//! breaks one.
//!
//! Nothing here holds source spans, so two plans built from the same
//! definitions compare equal and print the same canonical text (the store's
//! schema fingerprints are computed from that text).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::types::DataType;

/// A checked set of definitions.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub entities: Vec<Entity>,
    pub sources: Vec<Source>,
    pub views: Vec<View>,
    pub services: Vec<Service>,
}

/// `entity user { key user_id: int64 }`
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub name: String,
    /// At least one key. Key types are `int64` or `string` only.
    pub keys: Vec<EntityKey>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EntityKey {
    pub name: String,
    pub ty: DataType,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// `type = parquet`; `path` is a glob relative to the definitions directory
    /// (or absolute), exactly as written.
    Parquet { path: String },
    /// `type = kafka`, `format = json`.
    Kafka {
        topic: String,
        /// Where undecodable messages go, with the reason in a header.
        dead_letter_topic: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
    /// The event-time field. It is always present in `fields` with type
    /// `timestamp` (read from a timestamp column, or an int64 of epoch millis,
    /// or for JSON an RFC 3339 string).
    pub timestamp_field: String,
    /// Every field that some view reads from this source, with the type it
    /// must be read as. `None` means the field is only ever tested with
    /// `is [not] null`, so any column type is accepted and only nullness is used.
    /// Includes the timestamp field and every key field of every view.
    pub fields: BTreeMap<String, Option<DataType>>,
}

/// One view: one source mapped onto one entity.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub name: String,
    /// Index into [`Plan::entities`].
    pub entity: usize,
    /// Index into [`Plan::sources`].
    pub source: usize,
    /// The source field that holds each entity key, in the entity's key order.
    /// Defaults to the key's own name; `keys { user_id = uid }` overrides it.
    /// Each such field has the key's type in the source's `fields`.
    pub key_fields: Vec<String>,
    /// Rows older than this at request time are served as OUTSIDE_MAX_AGE.
    pub ttl: Option<Duration>,
    /// `filter = ...`: rows for which this is not `true` (false or null) are skipped.
    /// Always of type bool.
    pub filter: Option<Expr>,
    pub body: ViewBody,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ViewBody {
    /// Every feature is a row expression.
    Row { features: Vec<RowFeature> },
    /// Every feature is an aggregation.
    Aggregating {
        /// Tile size; every window is a positive multiple of it. Default 1m.
        resolution: Duration,
        features: Vec<AggFeature>,
    },
}

/// `name: ty = expr` in a row view. `expr.ty == ty` always holds.
#[derive(Clone, Debug, PartialEq)]
pub struct RowFeature {
    pub name: String,
    pub ty: DataType,
    pub expr: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Last,
    First,
}

/// `name: ty = func(arg) over window where condition` in an aggregating view.
///
/// Typing: `count()` has no arg and is int64. `sum` of int64 is int64, of
/// float64 is float64. `avg` takes int64 or float64 (as float64) and is
/// float64. `min`/`max` take int64, float64, string or timestamp and keep the
/// type. `first`/`last` take any type and keep it. `ty` is the aggregate's
/// type, except that an int64 aggregate may be declared float64 (widening).
#[derive(Clone, Debug, PartialEq)]
pub struct AggFeature {
    pub name: String,
    pub ty: DataType,
    pub func: AggFunc,
    /// `None` exactly for `count()`.
    pub arg: Option<Expr>,
    /// `None`: all events ever seen for the key. Otherwise a positive multiple
    /// of the view's resolution.
    pub window: Option<Duration>,
    /// `where ...`, type bool; events for which it is not `true` are not counted.
    pub condition: Option<Expr>,
}

/// `service ranker_v1 { features = [...] }`, with `view.*` expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    /// In declared order, `view.*` expanded in the view's declaration order.
    /// No feature appears twice.
    pub features: Vec<FeatureRef>,
    /// `request { device: string, ... }`: what a request carries besides its
    /// entity keys, in declared order. Names are unique, and no derived
    /// feature has one of them.
    pub request: Vec<RequestField>,
    /// `derived { name: type = expr ... }`, in declared order, which is also
    /// the order of evaluation: each one's expression reads only request
    /// fields (by name), the service's features (as fields named
    /// `view.feature`) and derived features before it (by name), each with
    /// the type given here or in the view. `expr.ty == ty` always holds.
    pub derived: Vec<DerivedFeature>,
}

/// A field of a service's `request { ... }` block.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestField {
    pub name: String,
    pub ty: DataType,
}

/// A feature of a service's `derived { ... }` block: computed at request
/// time, never stored.
#[derive(Clone, Debug, PartialEq)]
pub struct DerivedFeature {
    pub name: String,
    pub ty: DataType,
    pub expr: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureRef {
    /// Index into [`Plan::views`].
    pub view: usize,
    /// Index into the view's features.
    pub feature: usize,
}

/// A typed expression node.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: DataType,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A null of the node's type.
    Null,
    Bool(bool),
    Int64(i64),
    Float64(f64),
    String(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Functions with their typing (the checker guarantees these argument types).
/// Each is one entry of the row-function table, [`crate::functions`]. The
/// names are part of a view's canonical text (see [`Expr`]'s `Display`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `(T, T, ...) -> T`, two or more args of one type.
    Coalesce,
    /// `(bool, T, T) -> T`; a null condition picks the else branch.
    If,
    /// `(string) -> string`, Unicode full case mapping.
    Lower,
    Upper,
    /// `(string) -> int64`, Unicode scalar values.
    Length,
    /// `(string, string, ...) -> string`, one or more args.
    Concat,
    /// `(T) -> T` for T in int64, float64; abs(i64::MIN) is null.
    Abs,
    /// `(float64) -> float64`; a result that is not a finite number is null.
    Ln,
    Log10,
    Sqrt,
    Exp,
    /// `(float64, float64) -> float64`.
    Pow,
    /// `(T) -> T` for T in int64 (identity), float64.
    Floor,
    Ceil,
    /// Half away from zero.
    Round,
    /// `(T, T, ...) -> T` for T in int64, float64, string, timestamp; nulls propagate.
    Least,
    Greatest,
    /// `(T, T, T) -> T` for T in int64, float64.
    Clamp,
    /// `(timestamp, timestamp) -> int64`, whole units of b − a, truncated toward zero.
    DaysBetween,
    HoursBetween,
    /// `(timestamp) -> int64`, Monday = 0, UTC.
    DayOfWeek,
    /// `(timestamp) -> int64`, 0..=23, UTC.
    HourOfDay,
    /// `(array<F>, array<F>) -> float64` for F in float32, float64 (each
    /// argument either): null when the lengths differ (see `eval::vector`).
    Dot,
    Cosine,
    L2Distance,
    /// `(array<F>) -> float64`.
    Norm,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Literal(Literal),
    /// A source field; the batch column of that name has type `ty`.
    Field(String),
    /// `x is null` / `x is not null` on a field whose type is not inferred
    /// (its entry in `Source::fields` is `None`): only its nullness is read,
    /// whatever the column's Arrow type. `ty` is bool.
    FieldIsNull {
        field: String,
        negated: bool,
    },
    /// Unary minus; operand type == `ty` ∈ {int64, float64}. −i64::MIN is null.
    Neg(Box<Expr>),
    /// Three-valued `not`; operand bool.
    Not(Box<Expr>),
    /// Both operands have type `ty` ∈ {int64, float64}. Integer overflow,
    /// division or modulo by zero give null. Integer `/` truncates toward zero;
    /// `%` takes the sign of the dividend.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// Both operands have the same scalar (non-array) type; `ty` is bool.
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    /// SQL three-valued logic; operands bool.
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// `ty` is bool; operand of any type.
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `x in (a, b)`; every literal is of `expr.ty` (or Null), `ty` is bool.
    /// SQL semantics: null x gives null; no match and a null in the list gives null.
    InList {
        expr: Box<Expr>,
        list: Vec<Literal>,
        negated: bool,
    },
    /// Convert the operand to `ty`. Supported (from -> to):
    /// int64 -> float64, float32, string, bool (≠ 0), timestamp (epoch millis);
    /// float64/float32 -> int64 (toward zero; out of range or not finite is null),
    /// float32 <-> float64, string;
    /// string -> int64, float64 (parse, failure is null), bytes (UTF-8);
    /// bool -> int64 (0/1), string ("true"/"false");
    /// timestamp -> int64 (epoch millis, floor), string (RFC 3339 UTC);
    /// and any type to itself.
    Cast(Box<Expr>),
    /// See [`Func`] for argument types.
    Call(Func, Vec<Expr>),
    /// `bucketize(x, [b1, ...])`: x float64, bounds ascending; index of the
    /// first bound greater than x, or the number of bounds. `ty` is int64.
    Bucketize(Box<Expr>, Vec<f64>),
    /// `hash_bucket(x, n)`: x of any type, n > 0; `ty` is int64.
    /// XXH64 (seed 0) of the value's canonical bytes, as u64, modulo n.
    HashBucket(Box<Expr>, i64),
}

impl Plan {
    pub fn entity(&self, name: &str) -> Option<(usize, &Entity)> {
        self.entities.iter().enumerate().find(|(_, e)| e.name == name)
    }
    pub fn source(&self, name: &str) -> Option<(usize, &Source)> {
        self.sources.iter().enumerate().find(|(_, s)| s.name == name)
    }
    pub fn view(&self, name: &str) -> Option<(usize, &View)> {
        self.views.iter().enumerate().find(|(_, v)| v.name == name)
    }
    pub fn service(&self, name: &str) -> Option<(usize, &Service)> {
        self.services.iter().enumerate().find(|(_, s)| s.name == name)
    }
}

impl Service {
    /// What the derived features read besides one another: request fields
    /// and the service's features (as `view.feature`), each once, sorted.
    pub fn derived_inputs(&self) -> Vec<&str> {
        let mut names = Vec::new();
        for d in &self.derived {
            d.expr.field_names(&mut names);
        }
        names.retain(|n| !self.derived.iter().any(|d| d.name == *n));
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl Expr {
    /// Push the name of every field the expression reads.
    pub fn field_names<'e>(&'e self, out: &mut Vec<&'e str>) {
        match &self.kind {
            ExprKind::Literal(_) => {}
            ExprKind::Field(name) | ExprKind::FieldIsNull { field: name, .. } => out.push(name),
            ExprKind::Neg(x)
            | ExprKind::Not(x)
            | ExprKind::IsNull { expr: x, .. }
            | ExprKind::InList { expr: x, .. }
            | ExprKind::Cast(x)
            | ExprKind::Bucketize(x, _)
            | ExprKind::HashBucket(x, _) => x.field_names(out),
            ExprKind::Arith(_, a, b)
            | ExprKind::Compare(_, a, b)
            | ExprKind::And(a, b)
            | ExprKind::Or(a, b) => {
                a.field_names(out);
                b.field_names(out);
            }
            ExprKind::Call(_, args) => args.iter().for_each(|a| a.field_names(out)),
        }
    }
}

impl View {
    /// Feature names and types in declaration order, whatever the view's kind.
    pub fn feature_names(&self) -> Vec<(&str, DataType)> {
        match &self.body {
            ViewBody::Row { features } => features.iter().map(|f| (f.name.as_str(), f.ty)).collect(),
            ViewBody::Aggregating { features, .. } => {
                features.iter().map(|f| (f.name.as_str(), f.ty)).collect()
            }
        }
    }

    pub fn feature_index(&self, name: &str) -> Option<usize> {
        self.feature_names().iter().position(|(n, _)| *n == name)
    }

    pub fn is_aggregating(&self) -> bool {
        matches!(self.body, ViewBody::Aggregating { .. })
    }
}

/// Canonical, fully parenthesised text with types, e.g.
/// `(lower(country:string):string)`. Stable across releases: the store's
/// schema fingerprints hash it, so changing this output re-keys every view.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(l) => write!(f, "{l}:{}", self.ty),
            ExprKind::Field(name) => write!(f, "{name}:{}", self.ty),
            ExprKind::FieldIsNull { field, negated } => {
                write!(f, "({field} is{} null)", if *negated { " not" } else { "" })
            }
            ExprKind::Neg(e) => write!(f, "(-{e}):{}", self.ty),
            ExprKind::Not(e) => write!(f, "(not {e})"),
            ExprKind::Arith(op, a, b) => {
                let op = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Mod => "%",
                };
                write!(f, "({a} {op} {b}):{}", self.ty)
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
                write!(f, "({a} {op} {b})")
            }
            ExprKind::And(a, b) => write!(f, "({a} and {b})"),
            ExprKind::Or(a, b) => write!(f, "({a} or {b})"),
            ExprKind::IsNull { expr, negated } => {
                write!(f, "({expr} is{} null)", if *negated { " not" } else { "" })
            }
            ExprKind::InList { expr, list, negated } => {
                write!(f, "({expr}{} in (", if *negated { " not" } else { "" })?;
                for (i, l) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{l}")?;
                }
                f.write_str("))")
            }
            ExprKind::Cast(e) => write!(f, "({e} as {})", self.ty),
            ExprKind::Call(func, args) => {
                write!(f, "{func:?}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, "):{}", self.ty)
            }
            ExprKind::Bucketize(e, bounds) => write!(f, "bucketize({e}, {bounds:?})"),
            ExprKind::HashBucket(e, n) => write!(f, "hash_bucket({e}, {n})"),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int64(i) => write!(f, "{i}"),
            // `{:?}` keeps a decimal point or exponent, so 1.0 never prints as 1.
            Literal::Float64(x) => write!(f, "{x:?}"),
            Literal::String(s) => write!(f, "{s:?}"),
        }
    }
}
