//! Replacing the feature definitions of a running server (`fstore apply`,
//! the ApplyDefinitions RPC, SIGHUP).
//!
//! A new set is checked first; one that fails is refused with its
//! diagnostics and changes nothing. A set that passes replaces the registry
//! in one atomic swap: a request sees the old set or the new one.
//!
//! Values never outlive their definition. A view's data is keyed by the
//! fingerprint of the definition that computed it, so a changed view starts
//! empty under its new fingerprint; its parquet sources are loaded again,
//! and stream-fed views fill from new events (or a backfill). The data of
//! fingerprints no longer defined is dropped once no request reads it, so
//! that going back to an old definition cannot resurrect stale values.
//!
//! Files sent with the request are written into the definitions directory,
//! so that a restart runs the same set. The write is journalled
//! ([`journal`]): the whole set goes to `.fstore-apply/` with a `COMPLETE`
//! marker, then into place.
//! A crash before the marker leaves the old set; after it, the next start
//! finishes the move ([`journal::recover`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use fstore_dsl::plan::SourceKind;
use fstore_dsl::SourceFile;

use crate::engine::Engine;
use crate::registry::{journal, Registry};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The set is unusable: names, or diagnostics from `check`.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ViewChange {
    pub(crate) view: String,
    pub(crate) change: &'static str,
    pub(crate) data: String,
}

/// What became of a feature service. Its derived features hold no data, so
/// changing one changes the service and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceChange {
    pub(crate) service: String,
    pub(crate) change: &'static str,
    /// What changed, e.g. "derived feature `ratio` changed"; empty when unchanged.
    pub(crate) detail: String,
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub(crate) applied: bool,
    pub(crate) views: Vec<ViewChange>,
    pub(crate) services: Vec<ServiceChange>,
    pub(crate) notes: Vec<String>,
    /// A Kafka source, or what its consumer decodes, changed: the consumers
    /// must restart to follow.
    pub(crate) restart_streams: bool,
}

/// Check `files` (None: the definitions directory as it is now) and, unless
/// `dry_run`, make them the running set.
pub(crate) fn apply(
    engine: &Arc<Engine>,
    files: Option<Vec<SourceFile>>,
    dry_run: bool,
) -> Result<ApplyReport, ApplyError> {
    let _one_at_a_time = engine.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
    let dir = engine.config.server.definitions_dir.clone();
    let sent = files.is_some();
    let files = match files {
        Some(files) => {
            validate_names(&files)?;
            files
        }
        None => {
            let files = fstore_dsl::load_dir(&dir)
                .with_context(|| format!("reading the definitions directory {}", dir.display()))?;
            if files.is_empty() {
                return Err(ApplyError::Invalid(format!("no .fdl files in {}", dir.display())));
            }
            files
        }
    };
    let next = Registry::from_files(files.clone()).map_err(|e| ApplyError::Invalid(e.to_string()))?;
    let current = engine.registry();
    let mut report = diff(&current, &next);
    report.restart_streams = stream_signature(&current) != stream_signature(&next);
    let changed = report.views.iter().any(|v| v.change != "unchanged")
        || report.services.iter().any(|s| s.change != "unchanged");
    if dry_run {
        report.notes.push("dry run: nothing changed".into());
        return Ok(report);
    }
    if sent {
        journal::write(&dir, &files).context("writing the definitions directory")?;
    }
    if !changed {
        report.notes.push("no view or service changed".into());
        return Ok(report);
    }
    let previous = engine.install(next)?;
    report.applied = true;
    let orphans = orphans(engine, &previous);
    if !orphans.is_empty() {
        report.notes.push(format!(
            "{} view definition(s) no longer in use: their data is dropped once no request reads it",
            orphans.len()
        ));
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("fstore-drop-views".into())
            .spawn(move || drop_views(&engine, &orphans))
            .context("starting the thread that drops old views")?;
    }
    tracing::info!(
        views = report
            .views
            .iter()
            .filter(|v| v.change != "unchanged")
            .map(|v| format!("{} {}", v.view, v.change))
            .collect::<Vec<_>>()
            .join(", "),
        "Applied new definitions."
    );
    Ok(report)
}

/// What became of each view, and where its values come from now.
fn diff(current: &Registry, next: &Registry) -> ApplyReport {
    let old: HashMap<&str, u64> = current.views.iter().map(|v| (v.name.as_str(), v.fingerprint)).collect();
    let mut views = Vec::new();
    for (index, info) in next.views.iter().enumerate() {
        let change = match old.get(info.name.as_str()) {
            None => "added",
            Some(&fp) if fp == info.fingerprint => "unchanged",
            Some(_) => "changed",
        };
        let data = if change == "unchanged" {
            "kept".to_string()
        } else {
            let source = &next.plan.sources[next.plan.views[index].source];
            match &source.kind {
                SourceKind::Parquet { path } => format!(
                    "empty until loaded: loading from {path} (source {}) when server.load_sources_on_start is on, else `fstore ingest --source {}`",
                    source.name, source.name
                ),
                SourceKind::Kafka { topic, .. } => format!(
                    "empty until new events arrive on {topic}; older events come back with `fstore ingest --source {} FILE.parquet`",
                    source.name
                ),
            }
        };
        views.push(ViewChange { view: info.name.clone(), change, data });
    }
    let kept: HashSet<&str> = next.views.iter().map(|v| v.name.as_str()).collect();
    for info in &current.views {
        if !kept.contains(info.name.as_str()) {
            views.push(ViewChange { view: info.name.clone(), change: "removed", data: "dropped".into() });
        }
    }
    ApplyReport { views, services: service_changes(current, next), ..Default::default() }
}

/// What became of each feature service: its columns, request fields and
/// derived features compared by name, type and canonical expression.
fn service_changes(current: &Registry, next: &Registry) -> Vec<ServiceChange> {
    let mut out = Vec::new();
    for service in &next.plan.services {
        let name = &service.name;
        let Some((_, old)) = current.plan.service(name) else {
            out.push(ServiceChange { service: name.clone(), change: "added", detail: String::new() });
            continue;
        };
        let columns = |r: &Registry| -> Vec<String> {
            r.services
                .get(name)
                .map(|s| s.columns.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default()
        };
        let mut details = Vec::new();
        if columns(current) != columns(next) {
            details.push("its features changed".to_string());
        }
        if old.request != service.request {
            details.push("its request fields changed".to_string());
        }
        let text = |d: &fstore_dsl::plan::DerivedFeature| format!("{}:{}={}", d.name, d.ty, d.expr);
        for d in &service.derived {
            match old.derived.iter().find(|o| o.name == d.name) {
                None => details.push(format!("derived feature `{}` added", d.name)),
                Some(o) if text(o) != text(d) => {
                    details.push(format!("derived feature `{}` changed", d.name))
                }
                Some(_) => {}
            }
        }
        for o in &old.derived {
            if !service.derived.iter().any(|d| d.name == o.name) {
                details.push(format!("derived feature `{}` removed", o.name));
            }
        }
        let order =
            |s: &fstore_dsl::plan::Service| s.derived.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
        if details.is_empty() && order(old) != order(service) {
            details.push("its derived features were reordered".to_string());
        }
        let change = if details.is_empty() { "unchanged" } else { "changed" };
        out.push(ServiceChange { service: name.clone(), change, detail: details.join("; ") });
    }
    for old in &current.plan.services {
        if next.plan.service(&old.name).is_none() {
            out.push(ServiceChange { service: old.name.clone(), change: "removed", detail: String::new() });
        }
    }
    out
}

/// What the stream consumers were started with: Kafka sources and the key
/// fields their views read.
fn stream_signature(registry: &Registry) -> String {
    let mut out = String::new();
    for (index, source) in registry.plan.sources.iter().enumerate() {
        if matches!(source.kind, SourceKind::Kafka { .. }) {
            let views = registry.views_of_source(index);
            let keys: Vec<_> = views.iter().map(|&v| &registry.plan.views[v].key_fields).collect();
            out.push_str(&format!("{source:?}{keys:?};"));
        }
    }
    out
}

/// Fingerprints `previous` used that the running set does not.
fn orphans(engine: &Engine, previous: &Registry) -> Vec<(u64, String)> {
    let live: HashSet<u64> = engine.registry().views.iter().map(|v| v.fingerprint).collect();
    previous
        .views
        .iter()
        .zip(&previous.plan.views)
        .filter(|(info, _)| !live.contains(&info.fingerprint))
        .map(|(info, view)| (info.fingerprint, previous.plan.sources[view.source].name.clone()))
        .collect()
}

/// Retire the views no longer defined: each is unpublished at once and its
/// data deleted once no request holds a snapshot naming it.
fn drop_views(engine: &Engine, orphans: &[(u64, String)]) {
    for (fingerprint, source) in orphans {
        // A writer of the source finishes its batch (written with the old
        // registry) first; later batches read the new one.
        let lock = engine.source_lock(source);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = engine.catalog.retire(*fingerprint) {
            tracing::error!(
                fingerprint = format!("{fingerprint:016x}"),
                error = format!("{e:#}"),
                "Could not drop an old view's data."
            );
        }
    }
}

/// Drop data of views that no definition computes any more (changed or
/// removed while the server was stopped). Run at start.
pub(crate) fn drop_unused_views(engine: &Engine) -> anyhow::Result<usize> {
    let live: HashSet<u64> = engine.registry().views.iter().map(|v| v.fingerprint).collect();
    let mut dropped = 0;
    for (fingerprint, meta) in engine.catalog.metas()? {
        if !live.contains(&fingerprint) {
            tracing::info!(view = %meta.view, fingerprint = format!("{fingerprint:016x}"), "Dropping the data of a view definition no longer in use.");
            engine.catalog.retire(fingerprint)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

fn validate_names(files: &[SourceFile]) -> Result<(), ApplyError> {
    if files.is_empty() {
        return Err(ApplyError::Invalid("no definition files sent".into()));
    }
    let mut seen = HashSet::new();
    for f in files {
        let ok = f.name.ends_with(".fdl")
            && f.name.len() > 4
            && !f.name.starts_with('.')
            && f.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(ApplyError::Invalid(format!(
                "definition file name `{}` must be a plain file name ending in .fdl (letters, digits, . _ -)",
                f.name
            )));
        }
        if !seen.insert(&f.name) {
            return Err(ApplyError::Invalid(format!("definition file `{}` is sent twice", f.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> SourceFile {
        SourceFile { name: name.into(), text: text.into() }
    }

    #[test]
    fn file_names_must_be_plain_fdl_names() {
        for bad in ["../x.fdl", "a/b.fdl", "x.txt", ".fdl", ".hidden.fdl", ""] {
            assert!(validate_names(&[file(bad, "")]).is_err(), "{bad}");
        }
        assert!(validate_names(&[file("a.fdl", ""), file("a.fdl", "")]).is_err());
        assert!(validate_names(&[]).is_err());
        assert!(validate_names(&[file("users-v2_x.fdl", "")]).is_ok());
    }
}
