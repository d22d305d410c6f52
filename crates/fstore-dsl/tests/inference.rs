//! Field type inference: how each source field's type follows from its uses.
//! Each test declares one entity and one source, and views over it.

use fstore_dsl::plan::{ExprKind, Plan, ViewBody};
use fstore_dsl::{check, render, DataType, Diagnostic, SourceFile};

const PRELUDE: &str = r#"
entity user {
  key user_id: int64
}

source events {
  type = parquet
  path = "events/*.parquet"
  timestamp = ts
}
"#;

fn files(body: &str) -> Vec<SourceFile> {
    vec![SourceFile { name: "t.fdl".into(), text: format!("{PRELUDE}{body}") }]
}

fn ok(body: &str) -> Plan {
    let files = files(body);
    check(&files).unwrap_or_else(|d| panic!("{}", render(&d, &files)))
}

fn errors(body: &str) -> Vec<Diagnostic> {
    check(&files(body)).expect_err("expected errors")
}

fn view(features: &str) -> String {
    format!("view v {{\n  entity = user\n  source = events\n  features {{\n{features}\n  }}\n}}\n")
}

fn field(plan: &Plan, name: &str) -> Option<Option<DataType>> {
    plan.source("events").and_then(|(_, s)| s.fields.get(name).copied())
}

#[test]
fn int64_and_float64_uses_join_to_float64() {
    let plan = ok(&view(
        "    is_one: bool = x == 1\n    scaled: float64 = x * 1.5\n    spend: float64 = coalesce(y, 0)\n    big: bool = y > 5",
    ));
    assert_eq!(field(&plan, "x"), Some(Some(DataType::Float64)));
    assert_eq!(field(&plan, "y"), Some(Some(DataType::Float64)));
}

#[test]
fn a_number_demand_accepts_the_strong_type() {
    // `n > 0.5` would prefer float64, but the declared int64 decides.
    let plan = ok(&view("    n_copy: int64 = n\n    high: bool = n > 0.5"));
    assert_eq!(field(&plan, "n"), Some(Some(DataType::Int64)));
}

#[test]
fn conflicting_uses_name_both_places() {
    let diags = errors(&view("    a: string = lower(x)\n    b: int64 = x + 1"));
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d.code, "E0303");
    assert_eq!(d.message, "field `x` of source `events` is used as int64 here but as string at t.fdl:15:23");
    assert_eq!((d.line, d.col), (16, 16));
}

#[test]
fn conflicts_are_found_across_views_of_one_source() {
    let body = format!(
        "{}\nview w {{\n  entity = user\n  source = events\n  features {{\n    b: bool = x\n  }}\n}}\n",
        view("    a: string = lower(x)")
    );
    let diags = errors(&body);
    assert_eq!(diags[0].code, "E0303");
}

#[test]
fn a_field_only_tested_for_null_has_no_type() {
    let plan = ok(
        "view v {\n  entity = user\n  source = events\n  filter = deleted is not null\n  features {\n    c: string = country\n  }\n}\n",
    );
    assert_eq!(field(&plan, "deleted"), Some(None));
    let (_, v) = plan.view("v").expect("view");
    assert!(matches!(v.filter.as_ref().map(|f| &f.kind), Some(ExprKind::FieldIsNull { negated: true, .. })));
}

#[test]
fn a_null_test_on_a_typed_field_reads_the_value() {
    let plan = ok(&view("    c: string = lower(country)\n    has: bool = country is null"));
    assert_eq!(field(&plan, "country"), Some(Some(DataType::String)));
}

#[test]
fn an_uninferable_field_is_an_error_with_a_hint() {
    let diags = errors(&view("    same: bool = a == b"));
    let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0304", "E0304"]);
    let hint = diags[0].hint.as_deref().unwrap_or_default();
    assert!(hint.contains("write `a as int64` (or the type you mean)"), "{hint}");
    assert!(hint.contains("fields block"), "{hint}");
}

#[test]
fn comparison_with_a_typed_field_types_the_other() {
    let plan = ok(&view("    l: string = lower(a)\n    same: bool = a == b\n    chain: bool = b == c"));
    for name in ["a", "b", "c"] {
        assert_eq!(field(&plan, name), Some(Some(DataType::String)), "{name}");
    }
}

#[test]
fn a_cast_is_a_weak_demand() {
    let plan = ok(&view("    f: float64 = x as float64\n    s: string = y as string\n    t: bool = y > 1"));
    // Only the cast tells x's type; y is a number by its comparison, and the
    // cast converts it.
    assert_eq!(field(&plan, "x"), Some(Some(DataType::Float64)));
    assert_eq!(field(&plan, "y"), Some(Some(DataType::Int64)));
}

#[test]
fn pins_decide_over_uses() {
    let plan = ok(
        "source pinned {\n  type = parquet\n  path = \"p\"\n  timestamp = ts\n  fields { amount: int64, unused: string }\n}\n\
         view p {\n  entity = user\n  source = pinned\n  keys { user_id = uid }\n  features {\n    total: float64 = amount\n    seen: int64 = hours_between(ts, ts)\n  }\n}\n"
    );
    let (_, s) = plan.source("pinned").expect("source");
    assert_eq!(s.fields.get("amount"), Some(&Some(DataType::Int64)));
    assert_eq!(s.fields.get("uid"), Some(&Some(DataType::Int64)));
    assert_eq!(s.fields.get("ts"), Some(&Some(DataType::Timestamp)));
    // A declared field that no view reads is not part of the plan.
    assert_eq!(s.fields.get("unused"), None);
    let (_, v) = plan.view("p").expect("view");
    let ViewBody::Row { features } = &v.body else { panic!("row view") };
    assert!(matches!(features[0].expr.kind, ExprKind::Cast(_)));
}

#[test]
fn two_pins_that_disagree_conflict() {
    let diags = errors(&view("    k: string = lower(user_id)"));
    // user_id is the int64 key; lower wants a string: a type error in the expression.
    assert_eq!(diags[0].code, "E0301");
    let diags = check(&[SourceFile {
        name: "t.fdl".into(),
        text: "entity a { key id: int64 }\nentity b { key id: string }\n\
               source s { type = parquet path = \"p\" timestamp = ts }\n\
               view va { entity = a source = s features { x: int64 = n } }\n\
               view vb { entity = b source = s features { y: int64 = n } }\n"
            .into(),
    }])
    .expect_err("conflicting key types");
    assert_eq!(diags[0].code, "E0303");
    assert!(diags[0].message.contains("field `id` of source `s`"));
}

#[test]
fn the_timestamp_field_is_a_timestamp() {
    let diags = errors(&view("    t: int64 = ts + 1"));
    assert_eq!(diags[0].code, "E0301");
    assert!(diags[0].message.contains("timestamp"), "{}", diags[0].message);
}
