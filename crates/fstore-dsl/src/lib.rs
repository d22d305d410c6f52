//! The fstore feature-definition language (FDL).
//!
//! Stages, each in its own module and depending only on the ones before it
//! (but for [`functions`], the one table both the checker and the evaluator
//! read):
//!
//! - [`lex`]: bytes to tokens with spans. Never panics, whatever the input.
//! - [`parse`]: tokens to the untyped syntax tree of [`ast`], recovering after
//!   errors so that one run reports as many problems as it can.
//! - [`check`]: name resolution, field type inference and type checking; turns
//!   the syntax tree of every file into one typed [`plan::Plan`], or a list of
//!   [`diag::Diagnostic`]s with file, line, column, a caret and a hint.
//! - [`eval`]: runs typed row expressions over Arrow record batches.
//! - [`functions`]: the row functions (`lower`, `coalesce`, ...): each one's
//!   name, arity, typing rule and evaluation kernel, in one table.
//! - [`agg`]: aggregations: partial aggregates per tile, their storage encoding and windowed values.
//! - [`tiles`]: tiles at several sizes, and which of them a window reads.
//! - [`hash`]: the platform-stable hash behind `hash_bucket`.
//! - [`varint`]: the one integer encoding of every stored format.
//!
//! The language itself is documented for users in the project's `docs/dsl.md`.

#![forbid(unsafe_code)]

pub mod agg;
pub mod ast;
pub mod check;
pub mod diag;
pub mod eval;
pub mod functions;
pub mod hash;
pub mod lex;
pub mod parse;
pub mod plan;
pub mod tiles;
pub mod types;
pub mod varint;

pub use check::check;
pub use diag::{render, Diagnostic};
pub use eval::{derive, eval, EvalError};
pub use plan::Plan;
pub use types::{DataType, ElementType};

/// One definitions file: its name as shown in diagnostics, and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Read every `*.fdl` file directly inside `dir`, sorted by file name.
/// File names in diagnostics are `dir` joined with the file name, as given.
pub fn load_dir(dir: &std::path::Path) -> std::io::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "fdl") && path.is_file() {
            let bytes = std::fs::read(&path)?;
            files.push(SourceFile {
                name: path.display().to_string(),
                // Invalid UTF-8 is reported by the lexer as a diagnostic, not here.
                text: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}
