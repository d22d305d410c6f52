//! The definitions directory, written crash-safely: a whole set of files
//! goes to `.fstore-apply/` with a `COMPLETE` marker, then into place. A
//! crash before the marker leaves the old set; after it, [`recover`] (run
//! when the server opens) finishes the move.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use fstore_dsl::SourceFile;

const STAGING: &str = ".fstore-apply";
const COMPLETE: &str = "COMPLETE";

/// Write `files` as the whole content (`*.fdl`) of `dir`, crash-safely.
pub(crate) fn write(dir: &Path, files: &[SourceFile]) -> anyhow::Result<()> {
    let staging = dir.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    for f in files {
        let mut out = std::fs::File::create(staging.join(&f.name))?;
        out.write_all(f.text.as_bytes())?;
        out.sync_all()?;
    }
    std::fs::File::create(staging.join(COMPLETE))?.sync_all()?;
    sync_dir(&staging)?;
    finish_move(dir)
}

/// Move a complete staged set into place; discard an incomplete one.
pub(crate) fn recover(dir: &Path) -> anyhow::Result<()> {
    let staging = dir.join(STAGING);
    if !staging.exists() {
        return Ok(());
    }
    if staging.join(COMPLETE).exists() {
        tracing::warn!(dir = %dir.display(), "Finishing a definitions apply that a crash interrupted.");
        finish_move(dir)
    } else {
        tracing::warn!(dir = %dir.display(), "Discarding a definitions apply that a crash interrupted before it was complete.");
        std::fs::remove_dir_all(&staging).context("removing an incomplete staged apply")
    }
}

fn finish_move(dir: &Path) -> anyhow::Result<()> {
    let staging = dir.join(STAGING);
    let mut staged = BTreeMap::new();
    for entry in std::fs::read_dir(&staging)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "fdl") {
            staged.insert(
                path.file_name().map(|n| n.to_os_string()).context("a staged file without a name")?,
                path,
            );
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_os_string());
        if path.is_file()
            && path.extension().is_some_and(|e| e == "fdl")
            && !name.is_some_and(|n| staged.contains_key(&n))
        {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, path) in staged {
        std::fs::rename(&path, dir.join(name))?;
    }
    sync_dir(dir)?;
    std::fs::remove_dir_all(&staging)?;
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile { name: name.into(), text: text.into() }
    }

    fn fdl_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".fdl"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_journalled_write_replaces_the_whole_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.fdl"), "old").unwrap();
        std::fs::write(dir.path().join("keep.fdl"), "v1").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a definition").unwrap();
        write(dir.path(), &[file("keep.fdl", "v2"), file("new.fdl", "n")]).unwrap();
        assert_eq!(fdl_names(dir.path()), ["keep.fdl", "new.fdl"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.fdl")).unwrap(), "v2");
        assert!(dir.path().join("notes.txt").exists(), "other files are left alone");
        assert!(!dir.path().join(STAGING).exists());
    }

    #[test]
    fn recovery_finishes_a_complete_apply_and_discards_an_incomplete_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.fdl"), "old").unwrap();
        let staging = dir.path().join(STAGING);
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("b.fdl"), "new").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(fdl_names(dir.path()), ["a.fdl"], "no COMPLETE marker: the old set stays");
        assert!(!staging.exists());

        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("b.fdl"), "new").unwrap();
        std::fs::write(staging.join(COMPLETE), "").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(fdl_names(dir.path()), ["b.fdl"], "complete: the new set is moved in");
    }
}
