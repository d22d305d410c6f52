//! Whatever the input, `check` returns: a plan or diagnostics, each located
//! inside its file, and rendering them never panics either.
//!
//! Also: a file that is not UTF-8, read through `load_dir`, gets an
//! "invalid UTF-8" diagnostic naming the file, line and column of the first
//! bad byte (in a string or a comment too); expressions nested or chained
//! past the parser's depth limit get a located `E0103` diagnostic instead of
//! overflowing the stack; huge numbers and durations get `E0004`; and
//! 100,000-character identifiers are checked in well under a second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fstore_dsl::{check, load_dir, render, Diagnostic, SourceFile};
use proptest::prelude::*;

fn good_texts() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/good");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("good cases") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "fdl") {
            out.push(std::fs::read_to_string(path).expect("good case"));
        }
    }
    out.sort();
    out
}

/// Check and render; assert every diagnostic lies inside its file.
fn check_all_inside(text: String) -> Result<(), TestCaseError> {
    let files = vec![SourceFile { name: "fuzz.fdl".into(), text }];
    if let Err(diags) = check(&files) {
        prop_assert!(!diags.is_empty());
        let text = &files[0].text;
        let lines: Vec<&str> = text.split('\n').collect();
        for d in &diags {
            prop_assert!(d.line >= 1 && d.line <= lines.len(), "line {} of {}", d.line, lines.len());
            let width = lines[d.line - 1].chars().count();
            prop_assert!(d.col >= 1 && d.col <= width + 1, "col {} of {}", d.col, width);
        }
        let _ = render(&diags, &files);
    }
    Ok(())
}

/// Pieces that make mutations hit interesting syntax.
const SNIPPETS: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    "==",
    ".",
    "*",
    "-",
    "\"",
    "\\",
    "#",
    "\n",
    "1e999",
    "99999999999999999999",
    "0s",
    "3y",
    " over 1h ",
    " where ",
    " not ",
    " in ",
    " is null ",
    " as ",
    "count()",
    "sum(x)",
    "null",
    "entity e { key k: int64 }",
    "view ",
    "source ",
    "service ",
    "\u{FFFD}",
    "\0",
    "\t",
    "é",
    "array<",
    ">",
    ">=",
];

#[derive(Clone, Debug)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, snippet: usize },
    Duplicate { at: usize, len: usize },
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let n = chars.len().max(1);
        match *edit {
            Edit::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Insert { at, snippet } => {
                let at = (at % n).min(chars.len());
                let piece: Vec<char> = SNIPPETS[snippet % SNIPPETS.len()].chars().collect();
                chars.splice(at..at, piece);
            }
            Edit::Duplicate { at, len } => {
                let at = (at % n).min(chars.len());
                let end = (at + len).min(chars.len());
                let piece: Vec<char> = chars[at..end].to_vec();
                chars.splice(at..at, piece);
            }
        }
    }
    chars.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, snippet)| Edit::Insert { at, snippet }),
        (any::<usize>(), 1usize..80).prop_map(|(at, len)| Edit::Duplicate { at, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        check_all_inside(text)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_all_inside(String::from_utf8_lossy(&bytes).into_owned())?;
    }

    #[test]
    fn mutated_good_files_never_panic(
        which in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let goods = good_texts();
        let text = apply(&goods[which % goods.len()], &edits);
        check_all_inside(text)?;
    }
}

#[test]
fn pathological_inputs() {
    for text in [
        String::new(),
        "\n\n\n".into(),
        "(".repeat(200_000),
        format!("view v {{ features {{ x: int64 = {}1 }} }}", "-".repeat(200_000)),
        format!("view v {{ features {{ x: int64 = 1{} }} }}", " + 1".repeat(100_000)),
        "{".repeat(100_000),
        "entity ".repeat(50_000),
        "\"".repeat(10_001),
    ] {
        check_all_inside(text).expect("diagnostics inside the file");
    }
}

// ---------------------------------------------------------------------------
// Files that are not UTF-8, through the directory loader.
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fstore-never-panics-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `bytes` as `defs.fdl` in `dir`, load the directory and check it.
/// Returns the file's name as diagnostics show it, and the diagnostics.
fn load_and_check(dir: &Path, bytes: &[u8]) -> (String, Result<(), Vec<Diagnostic>>) {
    let path = dir.join("defs.fdl");
    std::fs::write(&path, bytes).expect("write");
    let files = load_dir(dir).expect("load_dir reads any bytes");
    assert_eq!(files.len(), 1);
    let result = check(&files).map(|_| ());
    if let Err(diags) = &result {
        let _ = render(diags, &files);
    }
    (path.display().to_string(), result)
}

/// Line and column (in characters) of the first invalid UTF-8 byte, if any.
fn first_invalid(bytes: &[u8]) -> Option<(usize, usize)> {
    let valid = std::str::from_utf8(bytes).err()?.valid_up_to();
    let before = std::str::from_utf8(&bytes[..valid]).expect("valid prefix");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((before.matches('\n').count() + 1, before[line_start..].chars().count() + 1))
}

/// If `bytes` are not UTF-8, checking fails with an "invalid UTF-8"
/// diagnostic naming the file and the line and column of the first bad
/// byte, unless the file's diagnostics were already capped before it.
fn assert_invalid_utf8_reported(name: &str, bytes: &[u8], result: &Result<(), Vec<Diagnostic>>) {
    let Some((line, col)) = first_invalid(bytes) else { return };
    let diags = result.as_ref().expect_err("a file that is not UTF-8 never checks");
    let found = diags.iter().any(|d| {
        d.file == name
            && d.code == "E0001"
            && d.message.contains("invalid UTF-8")
            && (d.line, d.col) == (line, col)
    });
    let capped = diags.len() >= 100 && diags.iter().all(|d| (d.line, d.col) < (line, col));
    assert!(found || capped, "no `invalid UTF-8` at {name}:{line}:{col} in {diags:#?}");
}

/// Byte sequences that are not UTF-8: a lone continuation byte, bytes that
/// never occur, a truncated sequence, an overlong encoding, a surrogate and
/// a code point past U+10FFFF.
const INVALID: &[&[u8]] =
    &[b"\x80", b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"];

/// Found by `arbitrary_bytes_through_load_dir`: invalid UTF-8 right after a
/// backslash in a string was reported as an unknown escape only.
#[test]
fn invalid_utf8_after_a_backslash_in_a_string_is_located() {
    for invalid in INVALID {
        let bytes = [b"\"\\".as_slice(), invalid, b"\"\n"].concat();
        let dir = TempDir::new();
        let (name, result) = load_and_check(&dir.0, &bytes);
        assert_invalid_utf8_reported(&name, &bytes, &result);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random bytes: nearly always invalid UTF-8 early on.
    #[test]
    fn arbitrary_bytes_through_load_dir(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = TempDir::new();
        let (name, result) = load_and_check(&dir.0, &bytes);
        assert_invalid_utf8_reported(&name, &bytes, &result);
    }

    /// A good file with one invalid sequence spliced in anywhere: in a name,
    /// a string, a comment or between tokens.
    #[test]
    fn invalid_utf8_in_a_good_file_is_located(
        which in any::<usize>(),
        at in any::<usize>(),
        bad in proptest::sample::select(INVALID),
    ) {
        let goods = good_texts();
        let text = &goods[which % goods.len()];
        let mut at = at % (text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let bytes = [&text.as_bytes()[..at], bad, &text.as_bytes()[at..]].concat();
        let dir = TempDir::new();
        let (name, result) = load_and_check(&dir.0, &bytes);
        prop_assert!(first_invalid(&bytes).is_some());
        assert_invalid_utf8_reported(&name, &bytes, &result);
    }
}

// ---------------------------------------------------------------------------
// Pathological nesting, literals and names: a located diagnostic, quickly.
// ---------------------------------------------------------------------------

const HEAD: &str = "entity user { key uid: int64 }\n\
    source s { type = kafka topic = \"t\" format = json timestamp = ts }\n";

/// A file whose only view has one feature `x: <ty> = <expr>`, on line 3.
fn with_feature(ty: &str, expr: &str) -> String {
    format!("{HEAD}view v {{ entity = user source = s features {{ x: {ty} = {expr} }} }}\n")
}

/// Check `text`, within `limit`, and return its diagnostics (none if it checks).
fn diags_of(text: String, limit: Duration) -> Vec<Diagnostic> {
    let files = vec![SourceFile { name: "p.fdl".into(), text }];
    let started = Instant::now();
    let result = check(&files);
    let took = started.elapsed();
    assert!(took < limit, "checking took {took:?}");
    let diags = result.err().unwrap_or_default();
    check_all_inside(files[0].text.clone()).expect("diagnostics inside the file");
    diags
}

/// `text` fails with a diagnostic of `code` on `line` mentioning `words`.
fn assert_diag(label: &str, text: String, code: &str, line: usize, words: &str) {
    let diags = diags_of(text, Duration::from_secs(5));
    assert!(
        diags
            .iter()
            .any(|d| d.code == code && d.line == line && d.file == "p.fdl" && d.message.contains(words)),
        "{label}: expected {code} on line {line} mentioning {words:?}, got {diags:#?}"
    );
}

#[test]
fn deep_nesting_is_a_located_diagnostic_not_a_stack_overflow() {
    const N: usize = 100_000;
    let cases: Vec<(&str, String)> = vec![
        ("parentheses", format!("{}uid{}", "(".repeat(N), ")".repeat(N))),
        ("unclosed parentheses", "(".repeat(N)),
        ("negations", format!("{}uid", "-".repeat(N))),
        ("nots", format!("{}uid", "not ".repeat(N))),
        ("calls", format!("{}uid{}", "abs(".repeat(N), ")".repeat(N))),
        ("lists", format!("{}1{}", "[".repeat(N), "]".repeat(N))),
        ("in lists", format!("uid{}", " in (uid".repeat(N))),
        ("sum chain", format!("uid{}", " + uid".repeat(N))),
        ("product chain", format!("uid{}", " * uid".repeat(N))),
        ("or chain", format!("uid > 0{}", " or uid > 0".repeat(N))),
        ("comparison chain", format!("uid{}", " < uid".repeat(N))),
        ("casts", format!("uid{}", " as int64".repeat(N))),
        ("is null chain", format!("uid{}", " is null".repeat(N))),
        ("alternating", format!("{}uid{}", "-(not [".repeat(N / 8), "])".repeat(N / 8))),
    ];
    for (label, expr) in cases {
        assert_diag(label, with_feature("int64", &expr), "E0103", 3, "nested too deeply");
    }
    // The same in a `where` clause and a view filter.
    let cond = format!("{}uid > 0{}", "(".repeat(N), ")".repeat(N));
    assert_diag("where", with_feature("int64", &format!("count() where {cond}")), "E0103", 3, "nested");
    let text = format!(
        "{HEAD}view v {{ entity = user source = s filter = {cond} features {{ x: int64 = uid }} }}\n"
    );
    assert_diag("filter", text, "E0103", 3, "nested");
    // Braces are skipped without recursion.
    let text = format!("{HEAD}view v {{ entity = user source = s x {{ {} }}\n", "{".repeat(N));
    assert_diag("braces", text, "E0102", 3, "not closed");
}

/// Ways to open one more level of an expression, with what closes it; any
/// sequence of them is syntactically valid.
const OPENERS: &[(&str, &str)] = &[
    ("(", ")"),
    ("-", ""),
    ("(not ", ")"),
    ("abs(", ")"),
    ("coalesce(1, ", ")"),
    ("[", "]"),
    ("uid in (", ")"),
    ("1 + ", ""),
    ("(1 * ", ")"),
    ("uid == ", ""),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any mix of up to 700 levels never overflows the stack. Each level adds
    /// one to the parser's recursion depth or to the height of the tree, both
    /// limited to 128: past 256 levels there is a located `E0103`, and up to
    /// 60 there is none.
    #[test]
    fn random_nesting_never_overflows(levels in proptest::collection::vec(0..OPENERS.len(), 0..700)) {
        let open: String = levels.iter().map(|&i| OPENERS[i].0).collect();
        let close: String = levels.iter().rev().map(|&i| OPENERS[i].1).collect();
        let diags = diags_of(with_feature("int64", &format!("{open}uid{close}")), Duration::from_secs(5));
        let too_deep = diags.iter().any(|d| d.code == "E0103" && d.line == 3 && d.message.contains("nested too deeply"));
        if levels.len() > 256 {
            prop_assert!(too_deep, "{diags:#?}");
        }
        if levels.len() <= 60 {
            prop_assert!(!too_deep, "{diags:#?}");
        }
    }
}

#[test]
fn expressions_just_within_the_depth_limit_check() {
    // 127 nested negations and 127 calls: as deep as an expression may be.
    for expr in [format!("{}uid", "-".repeat(127)), format!("{}uid{}", "abs(".repeat(127), ")".repeat(127))] {
        let diags = diags_of(with_feature("int64", &expr), Duration::from_secs(5));
        assert!(diags.is_empty(), "{diags:#?}");
    }
}

#[test]
fn wide_but_shallow_expressions_check_quickly() {
    const N: usize = 100_000;
    let limit = Duration::from_secs(5);
    let ok = |ty: &str, expr: String| {
        let diags = diags_of(with_feature(ty, &expr), limit);
        assert!(diags.is_empty(), "{}: {diags:#?}", &expr[..40]);
    };
    ok("bool", format!("uid in ({}1)", "1, ".repeat(N)));
    ok("string", format!("concat({}\"a\")", "\"a\", ".repeat(N)));
    ok("int64", format!("greatest({}1)", "uid, ".repeat(N)));
    let features: String = (0..20_000).map(|i| format!("f{i}: int64 = uid\n")).collect();
    let text = format!("{HEAD}view v {{ entity = user source = s features {{ {features} }} }}\n");
    assert!(diags_of(text, limit).is_empty());
}

#[test]
fn huge_numbers_and_durations_are_range_errors() {
    let nines = "9".repeat(100_000);
    let int_cases = [
        "9223372036854775808".to_string(),
        "99999999999999999999".into(),
        nines.clone(),
        format!("-{nines}"),
    ];
    for n in int_cases {
        assert_diag("int", with_feature("int64", &n), "E0004", 3, "does not fit in int64");
    }
    for x in ["1e400".to_string(), "1.5e309".into(), format!("{nines}.0"), format!("1e{nines}")] {
        assert_diag("float", with_feature("float64", &x), "E0004", 3, "out of range for float64");
    }
    // Many digits that do fit are fine.
    assert!(diags_of(with_feature("float64", &format!("1.{nines}")), Duration::from_secs(5)).is_empty());
    assert!(diags_of(with_feature("float64", &format!("1e-{nines}")), Duration::from_secs(5)).is_empty());

    // Durations: past u64 seconds, past i64 microseconds (which would wrap to
    // a zero or negative tile size in the server), and with huge digit counts.
    for d in [
        "99999999999999999999d".to_string(),
        "213503982334602d".into(),
        "9223372036855s".into(),
        "288230376151711744s".into(),
        "72057594037927936m".into(),
        format!("{nines}w"),
    ] {
        assert_diag("over", with_feature("int64", &format!("count() over {d}")), "E0004", 3, "out of range");
        let text = format!("{HEAD}view v {{ entity = user source = s resolution = {d} features {{ x: int64 = count() }} }}\n");
        assert_diag("resolution", text, "E0004", 3, "out of range");
        let text =
            format!("{HEAD}view v {{ entity = user source = s ttl = {d} features {{ x: int64 = uid }} }}\n");
        assert_diag("ttl", text, "E0004", 3, "out of range");
    }
    // The longest duration there is still checks.
    let text = format!(
        "{HEAD}view v {{ entity = user source = s resolution = 9223372036854s features {{ x: int64 = count() over 9223372036854s }} }}\n"
    );
    assert!(diags_of(text, Duration::from_secs(5)).is_empty());
}

#[test]
fn long_identifiers_are_checked_quickly() {
    const N: usize = 100_000;
    let limit = Duration::from_secs(5);
    let long = "a".repeat(N);
    let near = format!("{}b", &long[1..]);
    // Accepted where names are free: entity, key, source, view, feature, field.
    let text = format!(
        "entity {long} {{ key {long}: int64 }}\n\
         source {near} {{ type = kafka topic = \"{long}\" format = json timestamp = ts }}\n\
         view {long} {{ entity = {long} source = {near} features {{ {long}: int64 = {long} + {long} }} }}\n\
         service {long} {{ features = [{long}.{long}] }}\n"
    );
    assert!(diags_of(text, limit).is_empty());
    // Unknown names, near a long known one: an error naming it, without the
    // minutes of work a hint would take.
    let text = format!(
        "entity {long} {{ key uid: int64 }}\n{}view v {{ entity = {near} source = s features {{ x: int64 = uid }} }}\n",
        &HEAD[HEAD.find('\n').unwrap() + 1..]
    );
    assert_diag("unknown entity", text, "E0201", 3, "unknown entity");
    let text = format!("{HEAD}view v {{ entity = user source = s features {{ {long}: int64 = uid }} }}\nservice x {{ features = [v.{near}] }}\n");
    assert_diag("unknown feature", text, "E0502", 4, "has no feature");
    assert_diag(
        "unknown function",
        with_feature("int64", &format!("{long}(uid)")),
        "E0203",
        3,
        "unknown function",
    );
    assert_diag("unknown type", with_feature(&long, "uid"), "E0204", 3, "unknown type");
    // A long string literal, and a long unterminated one.
    assert!(
        diags_of(with_feature("bool", &format!("uid == 1 or \"{long}\" == \"{near}\"")), limit).is_empty()
    );
    assert_diag("unterminated", with_feature("string", &format!("\"{long}")), "E0002", 3, "unterminated");
}
