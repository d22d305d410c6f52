//! The checker. (to be written)

use crate::{Diagnostic, Plan, SourceFile};

/// Check every file together (one namespace) and produce the typed plan, or
/// every error found.
pub fn check(files: &[SourceFile]) -> Result<Plan, Vec<Diagnostic>> {
    let _ = files;
    Err(Vec::new())
}
