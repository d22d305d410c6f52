//! Diagnostics: what `fstore check` prints. (to be completed)

use crate::SourceFile;

/// Byte offsets `[start, end)` into a file's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// One error, located in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code, e.g. `E0101`; documented in docs/dsl.md.
    pub code: &'static str,
    pub message: String,
    /// File name as in [`SourceFile::name`].
    pub file: String,
    pub span: Span,
    /// 1-based line and column (column counted in characters).
    pub line: usize,
    pub col: usize,
    pub hint: Option<String>,
}

/// Render diagnostics as `file:line:col: error[CODE]: message`, the source
/// line, a caret line under the span, and `  = hint: ...` where there is one.
pub fn render(diags: &[Diagnostic], files: &[SourceFile]) -> String {
    let _ = files;
    diags
        .iter()
        .map(|d| format!("{}:{}:{}: error[{}]: {}\n", d.file, d.line, d.col, d.code, d.message))
        .collect()
}
