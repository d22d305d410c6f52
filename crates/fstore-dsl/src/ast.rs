//! The untyped syntax tree of one definitions file, as the parser builds it.
//!
//! It records what was written, with a span on every node, and nothing more:
//! names are unresolved, types unchecked, property names free. The checker
//! gives it meaning. After a parse error the parser keeps what it could read
//! and puts [`ExprKind::Error`] or [`Value::Error`] where the broken part was,
//! so that the checker neither reports a missing property nor cascades errors
//! from it. Expressions are at most [`crate::parse::MAX_DEPTH`] deep, so code
//! walking them recursively cannot overflow the stack.

use std::time::Duration;

use crate::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct File {
    pub decls: Vec<Decl>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclKind {
    Entity,
    Source,
    View,
    Service,
}

impl DeclKind {
    pub fn keyword(self) -> &'static str {
        match self {
            DeclKind::Entity => "entity",
            DeclKind::Source => "source",
            DeclKind::View => "view",
            DeclKind::Service => "service",
        }
    }
}

/// `view user_profile { ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct Decl {
    pub kind: DeclKind,
    pub name: Ident,
    /// From the keyword to the closing brace.
    pub span: Span,
    pub entries: Vec<Entry>,
    /// Some entry failed to parse (already reported). The checker then does
    /// not report missing properties or keys: the broken entry may be one.
    pub incomplete: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// `key user_id: int64`, meaningful in an entity only.
    Key {
        name: Ident,
        ty: TypeName,
        span: Span,
    },
    Property(Property),
}

/// `name = value` or `name { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    pub name: Ident,
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `= expr`. Bare words (`type = parquet`), strings and durations are
    /// expressions too; the checker takes what each property needs.
    Expr(Expr),
    /// `= [view.feature, view.*]`
    Refs(Vec<FeatureRef>, Span),
    /// `keys { user_id = uid }`
    Keys(Vec<KeyMapping>, Span),
    /// `fields { price: float64 }`
    Fields(Vec<FieldDecl>, Span),
    /// `features { name: type = expr ... }`
    Features(Vec<FeatureDef>, Span),
    /// `name { ... }` for any other name; its content is skipped.
    UnknownBlock(Span),
    /// The value did not parse; the error is already reported.
    Error,
}

/// `view.feature` or `view.*`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureRef {
    pub view: Ident,
    /// `None` for `view.*`.
    pub feature: Option<Ident>,
    pub span: Span,
}

/// `user_id = uid` in `keys { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyMapping {
    pub key: Ident,
    pub field: Ident,
}

/// `price: float64` in `fields { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDecl {
    pub name: Ident,
    pub ty: TypeName,
}

/// A type as written, e.g. `array<float32>`; resolved by the checker.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeName {
    pub name: String,
    pub span: Span,
}

/// `name: type = expr over DURATION where COND`. When anything after the
/// name fails to parse, the feature is kept (so references to it resolve)
/// with an [`ExprKind::Error`] expression.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureDef {
    pub name: Ident,
    pub ty: TypeName,
    pub expr: Expr,
    pub over: Option<(Duration, Span)>,
    pub condition: Option<Expr>,
    pub span: Span,
}

/// `view.feature` in an expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Qualified {
    pub view: Ident,
    pub feature: Ident,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Only meaningful as a property value (`ttl = 2d`).
    Duration(Duration),
    /// A field reference, or a bare word as a property value.
    Ident(String),
    /// `view.feature`: a feature of the service, in a derived feature's
    /// expression (anywhere else it is an error). Boxed: every expression
    /// node is as large as the largest kind.
    Qualified(Box<Qualified>),
    /// `[a, b]`, only meaningful as `bucketize` bounds.
    List(Vec<Expr>),
    Call {
        func: Ident,
        args: Vec<Expr>,
    },
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Cast {
        expr: Box<Expr>,
        ty: TypeName,
    },
    /// Did not parse; the error is already reported.
    Error,
}
