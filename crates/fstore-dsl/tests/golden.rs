//! Golden tests over definition files.
//!
//! `tests/golden/good/` holds definition sets that must check; `tests/golden/bad/`
//! holds sets that must fail, each with a sibling `.expected` file holding the
//! rendered diagnostics exactly. A set is one `.fdl` file, or a folder of them
//! checked together (one namespace). Each bad file starts with a comment that
//! says what it shows, so the folder reads as a catalogue of errors.
//!
//! To rewrite the `.expected` files after an intended change of wording:
//! `BLESS=1 cargo test -p fstore-dsl --test golden`, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use fstore_dsl::diag::CODES;
use fstore_dsl::plan::{AggFunc, Plan, ViewBody};
use fstore_dsl::{check, render, DataType, ElementType, SourceFile};

fn golden_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(kind)
}

/// Every definition set in `dir`: (name, files), sorted by name. File names
/// in diagnostics are relative to `dir`, so expected output is portable.
fn cases(dir: &Path) -> Vec<(String, Vec<SourceFile>)> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    let read = |path: &Path, name: String| SourceFile {
        name,
        text: String::from_utf8_lossy(&fs::read(path).expect("readable case file")).into_owned(),
    };
    let file_name = |p: &Path| p.file_name().expect("file name").to_string_lossy().into_owned();
    let mut out = Vec::new();
    for path in entries {
        if path.is_dir() {
            let dir_name = file_name(&path);
            let mut files: Vec<PathBuf> = fs::read_dir(&path)
                .expect("readable case folder")
                .map(|e| e.expect("directory entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "fdl"))
                .collect();
            files.sort();
            let files = files.iter().map(|f| read(f, format!("{dir_name}/{}", file_name(f)))).collect();
            out.push((dir_name, files));
        } else if path.extension().is_some_and(|e| e == "fdl") {
            let name = file_name(&path);
            out.push((name.trim_end_matches(".fdl").to_string(), vec![read(&path, name)]));
        }
    }
    out
}

#[test]
fn good_definitions_check() {
    let mut failures = Vec::new();
    let cases = cases(&golden_dir("good"));
    assert!(cases.len() >= 5, "expected several good cases");
    for (name, files) in cases {
        match check(&files) {
            Ok(plan) => {
                // The canonical text must be printable for every expression.
                for view in &plan.views {
                    if let Some(f) = &view.filter {
                        assert!(!f.to_string().is_empty());
                    }
                }
            }
            Err(diags) => failures.push(format!("{name}:\n{}", render(&diags, &files))),
        }
    }
    assert!(failures.is_empty(), "good cases failed:\n{}", failures.join("\n"));
}

#[test]
fn bad_definitions_give_expected_diagnostics() {
    let bless = std::env::var_os("BLESS").is_some();
    let dir = golden_dir("bad");
    let mut failures = Vec::new();
    for (name, files) in cases(&dir) {
        let actual = match check(&files) {
            Ok(_) => {
                failures.push(format!("{name}: checked without errors"));
                continue;
            }
            Err(diags) => render(&diags, &files),
        };
        let expected_path = dir.join(format!("{name}.expected"));
        if bless {
            fs::write(&expected_path, &actual).expect("writable expected file");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{name}: diagnostics differ from {}\n--- expected\n{expected}--- actual\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}\n(run with BLESS=1 to accept the new output)", failures.join("\n"));
}

#[test]
fn every_code_has_a_bad_case_and_documentation() {
    let mut seen = String::new();
    for entry in fs::read_dir(golden_dir("bad")).expect("bad cases") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "expected") {
            seen.push_str(&fs::read_to_string(&path).expect("expected file"));
        }
    }
    let docs = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dsl.md"))
        .expect("docs/dsl.md");
    for (code, _) in CODES {
        assert!(seen.contains(&format!("error[{code}]")), "no bad case produces {code}");
        assert!(docs.contains(&format!("`{code}`")), "docs/dsl.md does not document {code}");
    }
    let mut codes: Vec<&str> = CODES.iter().map(|(c, _)| *c).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), CODES.len(), "duplicate code in the registry");
}

#[test]
fn recovery_reports_many_errors_in_one_file() {
    let files = &cases(&golden_dir("bad"))
        .into_iter()
        .find(|(name, _)| name == "many_errors")
        .expect("bad/many_errors.fdl")
        .1;
    let diags = check(files).expect_err("many_errors must fail");
    assert!(diags.len() >= 6, "only {} errors reported", diags.len());
    let positions: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.col)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted, "diagnostics are sorted by position");
}

fn load_good(name: &str) -> Plan {
    let files = cases(&golden_dir("good"))
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("good case {name}"))
        .1;
    check(&files).unwrap_or_else(|d| panic!("{}", render(&d, &files)))
}

fn field(plan: &Plan, source: &str, field: &str) -> Option<DataType> {
    let (_, s) = plan.source(source).expect("source");
    *s.fields.get(field).unwrap_or_else(|| panic!("{source}.{field} not in plan"))
}

#[test]
fn dsl_md_example_infers_field_types() {
    let plan = load_good("01_dsl_md_example");
    assert_eq!(plan.entities.len(), 2);
    assert_eq!(field(&plan, "clicks", "uid"), Some(DataType::Int64));
    assert_eq!(field(&plan, "clicks", "price"), Some(DataType::Float64));
    assert_eq!(field(&plan, "clicks", "event"), Some(DataType::String));
    assert_eq!(field(&plan, "clicks", "item_id"), Some(DataType::String));
    assert_eq!(field(&plan, "clicks", "ts"), Some(DataType::Timestamp));
    assert_eq!(field(&plan, "user_daily", "country"), Some(DataType::String));
    assert_eq!(field(&plan, "user_daily", "spend_30d"), Some(DataType::Float64));
    assert_eq!(field(&plan, "user_daily", "tier"), Some(DataType::String));
    assert_eq!(field(&plan, "user_daily", "signup_ts"), Some(DataType::Timestamp));
    assert_eq!(field(&plan, "user_daily", "event_ts"), Some(DataType::Timestamp));
    assert_eq!(field(&plan, "user_daily", "user_id"), Some(DataType::Int64));
    assert_eq!(field(&plan, "user_daily", "embedding"), Some(DataType::Array(ElementType::Float32)));

    let (_, activity) = plan.view("user_activity").expect("view");
    assert_eq!(activity.key_fields, vec!["uid".to_string()]);
    match &activity.body {
        ViewBody::Aggregating { resolution, features } => {
            assert_eq!(resolution.as_secs(), 60);
            let funcs: Vec<AggFunc> = features.iter().map(|f| f.func).collect();
            use AggFunc::*;
            assert_eq!(funcs, vec![Count, Sum, Avg, Max, Count, Last]);
            assert!(features[4].condition.is_some());
            assert_eq!(features[5].window, None);
        }
        ViewBody::Row { .. } => panic!("user_activity must aggregate"),
    }
    let (_, profile) = plan.view("user_profile").expect("view");
    assert_eq!(profile.ttl.map(|d| d.as_secs()), Some(2 * 86_400));
    assert!(!profile.is_aggregating());

    let (_, ranker) = plan.service("ranker_v1").expect("service");
    let names: Vec<String> = ranker
        .features
        .iter()
        .map(|r| {
            let view = &plan.views[r.view];
            format!("{}.{}", view.name, view.feature_names()[r.feature].0)
        })
        .collect();
    assert_eq!(
        names,
        [
            "user_profile.country",
            "user_profile.spend_30d",
            "user_profile.is_premium",
            "user_profile.tenure_days",
            "user_profile.embedding",
            "user_activity.clicks_1h",
            "user_activity.spend_24h",
        ]
    );
}

#[test]
fn other_good_cases_plan_facts() {
    use fstore_dsl::plan::ExprKind;

    let plan = load_good("02_composite_keys");
    let (_, v) = plan.view("user_item_latest").expect("view");
    assert_eq!(v.key_fields, ["uid", "sku"]);
    assert_eq!(field(&plan, "interactions", "sku"), Some(DataType::String));

    // A field only tested for null has no type and is read by its nullness.
    let plan = load_good("03_every_function");
    assert_eq!(field(&plan, "profiles", "deleted_at"), None);
    assert_eq!(field(&plan, "profiles", "score"), Some(DataType::Float32));
    let (_, v) = plan.view("user_functions").expect("view");
    let filter = v.filter.as_ref().expect("filter").to_string();
    assert!(filter.starts_with("((deleted_at is null) and"), "{filter}");

    // int64 arithmetic with a literal in a float64 context is float division.
    let plan = load_good("04_casts_and_nulls");
    let (_, v) = plan.view("session_features").expect("view");
    let ViewBody::Row { features } = &v.body else {
        panic!("row view expected");
    };
    let duration = &features[0];
    assert_eq!(duration.expr.to_string(), "((duration_ms:int64 as float64) / 1000.0:float64):float64");
    assert!(matches!(duration.expr.kind, ExprKind::Arith(..)));

    let plan = load_good("05_aggregations");
    let (_, v) = plan.view("merchant_stats").expect("view");
    let ViewBody::Aggregating { resolution, features } = &v.body else {
        panic!("aggregating view expected");
    };
    assert_eq!(resolution.as_secs(), 300);
    let widened = features.iter().find(|f| f.name == "cents_1d_f").expect("feature");
    assert_eq!(widened.ty, DataType::Float64);
    assert_eq!(widened.arg.as_ref().expect("arg").ty, DataType::Int64);
    let avg = features.iter().find(|f| f.name == "avg_cents_1w").expect("feature");
    assert!(matches!(avg.arg.as_ref().expect("arg").kind, ExprKind::Cast(_)));
}
