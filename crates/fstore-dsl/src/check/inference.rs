//! Field type inference (pass 1): the uses of every source field, and the
//! type each field gets from its pins and uses.
//!
//! The [`Walker`] records every use of a field in a view's expressions;
//! [`resolve`] decides a field's type from them; `Checker::infer_fields`
//! runs the walk to a fixed point and reports conflicts and fields whose type
//! cannot be inferred. The literal and type-joining helpers here are shared
//! with pass 2.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::declarations::{SourceInfo, ViewInfo};
use super::{At, Checker, AGG_FUNCS};
use crate::ast::{self, BinOp, ExprKind as A};
use crate::diag::{codes, did_you_mean, Span};
use crate::functions::{self, Form, Signature};
use crate::plan::Source;
use crate::types::{DataType, ElementType};

/// (source index, field name)
pub(super) type FieldKey = (usize, String);

/// What inference decided: each field's type, and which fields views read.
pub(super) struct Inferred {
    pub(super) types: HashMap<FieldKey, FieldType>,
    pub(super) read: BTreeSet<FieldKey>,
}

/// A field's type once inference is done.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum FieldType {
    Typed(DataType),
    /// Only ever tested with `is [not] null`.
    NullOnly,
    /// Its problem is already reported (or it only appears where another
    /// error was reported); expressions reading it are not typed further.
    Poisoned,
}

impl Checker<'_> {
    pub(super) fn infer_fields(&mut self) -> Inferred {
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

    pub(super) fn plan_source(&self, index: usize, s: &SourceInfo, inferred: &Inferred) -> Option<Source> {
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
pub(super) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

pub(super) fn literal(e: &ast::Expr) -> Option<Lit> {
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

pub(super) fn lit_type(l: &Lit) -> Option<DataType> {
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
pub(super) fn join_guess(types: impl IntoIterator<Item = (DataType, bool)>) -> Option<(DataType, bool)> {
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
pub(super) fn arith_type(t: DataType) -> Option<DataType> {
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
            A::Null | A::Duration(_) | A::List(_) | A::Error | A::Qualified(_) => None,
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
            A::Call { func, args } => match functions::lookup(&func.name).map(|f| &f.form) {
                Some(Form::Call { signature, .. }) => match signature {
                    Signature::Exact { returns, .. } => Some((*returns, true)),
                    Signature::Floats | Signature::Vectors => Some((DataType::Float64, true)),
                    Signature::Number => args
                        .first()
                        .and_then(|a| self.known(a))
                        .and_then(|(t, f)| arith_type(t).map(|t| (t, f))),
                    Signature::Common | Signature::Ordered | Signature::Numbers => {
                        join_guess(args.iter().filter_map(|a| self.known(a)))
                    }
                    Signature::Conditional => join_guess(args.iter().skip(1).filter_map(|a| self.known(a))),
                },
                Some(Form::Bucketize | Form::HashBucket) => Some((DataType::Int64, true)),
                None => None,
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
            A::Null
            | A::Bool(_)
            | A::Int(_)
            | A::Float(_)
            | A::Str(_)
            | A::Duration(_)
            | A::Error
            | A::Qualified(_) => {}
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
        let Some(function) = functions::lookup(func) else {
            self.ignored(|w| all(w, None));
            return;
        };
        match &function.form {
            Form::Call { signature, .. } => match signature {
                Signature::Common | Signature::Ordered => self.group(&refs, expected, false),
                Signature::Numbers => self.group(&refs, expected.filter(|d| d.ty.is_numeric()), true),
                Signature::Conditional => {
                    if let Some(c) = args.first() {
                        self.walk(c, strong(DataType::Bool));
                    }
                    self.group(refs.get(1..).unwrap_or(&[]), expected, false);
                }
                Signature::Exact { arg, .. } => all(self, strong(*arg)),
                Signature::Number => {
                    let d = expected.and_then(|d| arith_type(d.ty)).or_else(|| {
                        args.first().and_then(|a| self.known(a)).and_then(|(t, _)| arith_type(t))
                    });
                    all(self, d.and_then(numeric));
                }
                Signature::Floats => all(self, numeric(DataType::Float64)),
                // A field read only as a vector is taken to be array<float32>,
                // the common type of embeddings.
                Signature::Vectors => {
                    all(self, Some(Demand { ty: DataType::Array(ElementType::Float32), class: Class::Weak }))
                }
            },
            form @ (Form::Bucketize | Form::HashBucket) => {
                let d = if matches!(form, Form::Bucketize) { numeric(DataType::Float64) } else { None };
                if let Some(x) = args.first() {
                    self.walk(x, d);
                }
                self.ignored(|w| args.iter().skip(1).for_each(|a| w.walk(a, None)));
            }
        }
    }
}
