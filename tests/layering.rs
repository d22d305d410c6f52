//! The server library's layering, as `src/lib.rs` states it: each module
//! depends only on those listed before it. This reads every `crate::`
//! path in the code of `src/` (comments aside) and fails on any that points
//! at a module listed later, or at one the list does not name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The modules in the order `lib.rs`'s documentation lists them
/// (`//! - [`name`]: ...`, or `//! - `name` (...)` for the binary's).
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - [`").or_else(|| line.strip_prefix("//! - `")))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_string()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`store/keys.rs` -> `store`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(SRC).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a line: without its `//` comment, and nothing of a string
/// literal that mentions `crate::` (good enough for this code base).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// Every `crate::name` a file's code uses, with the line it is on.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_use_block = false;
    for (n, line) in text.lines().enumerate() {
        let code = code(line);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String =
                rest[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push((n + 1, name));
            }
            rest = &rest[at + 7..];
        }
        // `use crate::{a, b::c};` names modules without a `crate::` each.
        let trimmed = code.trim();
        if trimmed.starts_with("use crate::{") || trimmed.starts_with("pub use crate::{") || in_use_block {
            let inner = trimmed.split_once("crate::{").map_or(trimmed, |(_, r)| r);
            for part in inner.split(',') {
                let name: String =
                    part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "self" {
                    out.push((n + 1, name));
                }
            }
            in_use_block = !trimmed.ends_with(';');
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_modules_listed_before_it() {
    let layers = layers();
    assert!(layers.len() >= 10, "lib.rs lists the modules in order; found {layers:?}");
    let rank: BTreeMap<&str, usize> = layers.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    // Items of the library root itself (the generated contract, clocks).
    let root = ["proto", "now_micros", "grpc_code_name"];
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = rank.get(module.as_str()) else {
            wrong.push(format!("{}: module `{module}` is not in lib.rs's list", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, used) in uses(&text) {
            if used == module || root.contains(&used.as_str()) {
                continue;
            }
            match rank.get(used.as_str()) {
                Some(&r) if r < own => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, which lib.rs lists after it",
                    file.display()
                )),
                None => wrong.push(format!("{}:{line}: `{used}` is not in lib.rs's list", file.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}
