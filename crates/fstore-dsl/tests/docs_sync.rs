//! The language reference, `docs/dsl.md`, documents exactly the row
//! functions the language has: those of the row-function table.
//!
//! The docs list them in the table under `## Functions`, one row per
//! function or group of functions, each written as a call in backticks in the
//! first column: `` | `lower(s)`, `upper(s)` | string → string | ... | ``.

use std::collections::BTreeSet;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dsl.md");

/// The function names in the first column of the table of the `## Functions`
/// section (which ends at the next heading).
fn documented_functions(docs: &str) -> Vec<String> {
    let mut names = Vec::new();
    let section = docs.lines().skip_while(|l| l.trim() != "## Functions").skip(1);
    for line in section.take_while(|l| !l.starts_with('#')) {
        let Some(row) = line.trim().strip_prefix('|') else { continue };
        let first_cell = row.split('|').next().unwrap_or("");
        // Every code span of the cell is a call: `name(args)`. The header
        // row and the separator row have none.
        for (i, span) in first_cell.split('`').enumerate() {
            if i % 2 == 1 {
                if let Some((name, _)) = span.split_once('(') {
                    names.push(name.trim().to_string());
                }
            }
        }
    }
    names
}

#[test]
fn docs_list_exactly_the_row_functions() {
    let docs = std::fs::read_to_string(DOCS).unwrap_or_else(|e| panic!("reading {DOCS}: {e}"));
    let documented = documented_functions(&docs);
    assert!(
        documented.len() >= 10,
        "found only {} functions in the `## Functions` table of docs/dsl.md ({documented:?}); has its layout changed?",
        documented.len()
    );

    let mut seen = BTreeSet::new();
    let twice: Vec<&str> =
        documented.iter().filter(|n| !seen.insert(n.as_str())).map(String::as_str).collect();
    let documented: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
    let table: BTreeSet<&str> = fstore_dsl::functions::names().collect();

    let undocumented: Vec<&str> = table.difference(&documented).copied().collect();
    let unknown: Vec<&str> = documented.difference(&table).copied().collect();
    let mut problems = Vec::new();
    if !undocumented.is_empty() {
        problems.push(format!(
            "row functions missing from the Functions table of docs/dsl.md: {}",
            undocumented.join(", ")
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "docs/dsl.md documents functions the language does not have: {}",
            unknown.join(", ")
        ));
    }
    if !twice.is_empty() {
        problems.push(format!("docs/dsl.md documents these functions twice: {}", twice.join(", ")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
