//! Whatever the input, `check` returns: a plan or diagnostics, each located
//! inside its file, and rendering them never panics either.

use fstore_dsl::{check, render, SourceFile};
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
