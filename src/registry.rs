//! The checked definitions the server runs on, with everything a request
//! needs resolved once per definitions version: each view's fingerprint and
//! feature types, each feature service's columns and required key columns.
//! A request never walks the plan to find a name.
//!
//! The server holds the current registry behind an atomic pointer, so a
//! request sees one definitions version from start to finish.

pub(crate) mod identity;
pub(crate) mod journal;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use fstore_dsl::plan::{FeatureRef, Plan};
use fstore_dsl::{DataType, SourceFile};

/// Definitions that failed `check`, rendered for humans.
#[derive(Debug, thiserror::Error)]
#[error("{count} error(s) in the definitions:\n{rendered}")]
pub struct DefinitionErrors {
    pub(crate) count: usize,
    pub(crate) rendered: String,
}

/// Per view, what serving and ingest need at hand.
#[derive(Clone, Debug)]
pub struct ViewInfo {
    pub name: String,
    /// Identifies the definition that computes this view's values; part of every key.
    pub fingerprint: u64,
    /// Feature types in declaration order: the stored row layout.
    pub(crate) feature_types: Vec<DataType>,
    pub(crate) feature_names: Vec<String>,
    /// Entity key column names, in the entity's order.
    pub(crate) key_names: Vec<String>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) aggregating: bool,
    /// An aggregating view's tiles: resolution, sizes and horizon.
    pub agg_layout: Option<crate::store::aggs::AggLayout>,
}

impl ViewInfo {
    /// What a new generation of this view records of its coarse tiles
    /// (`ViewMeta::coarse_spans_micros`): their sizes, `None` for a row view.
    pub fn coarse_spans_micros(&self) -> Option<Vec<i64>> {
        self.agg_layout.as_ref().map(|l| l.coarse_spans_micros())
    }
}

/// A resolved feature selection: the columns of a response and how to fill them.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Response columns in order: (`view.feature`, view index, feature index).
    pub(crate) columns: Vec<Column>,
    /// Each view read once, with the columns it fills.
    pub(crate) views: Vec<ViewRead>,
    /// Key columns the request must carry, with their types, sorted by name.
    pub(crate) keys: BTreeMap<String, DataType>,
    /// A service's request fields and derived features; `None` for a
    /// service without them and for a list of references.
    pub(crate) derived: Option<Derived>,
}

/// What a service computes at request time (its `request` and `derived`
/// blocks), resolved for the lookup.
#[derive(Clone, Debug)]
pub(crate) struct Derived {
    /// The service as checked: its request fields and derived expressions.
    pub(crate) service: fstore_dsl::plan::Service,
    /// Each column the derived features read, with its type and where its
    /// values come from.
    pub(crate) inputs: Vec<(String, DataType, Input)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// The request field at this index of `Service::request`.
    Request(usize),
    /// The response column at this index of `Selection::columns`.
    Column(usize),
}

#[derive(Clone, Debug)]
pub struct Column {
    pub(crate) name: String,
    pub feature: FeatureRef,
    pub(crate) ty: DataType,
}

#[derive(Clone, Debug)]
pub struct ViewRead {
    pub(crate) view: usize,
    /// (feature index within the view, response column index)
    pub(crate) features: Vec<(usize, usize)>,
}

pub struct Registry {
    pub(crate) plan: Plan,
    pub views: Vec<ViewInfo>,
    pub(crate) services: HashMap<String, Arc<Selection>>,
    pub files: Vec<SourceFile>,
}

impl Registry {
    /// The checked definitions.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Read and check every `*.fdl` file in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Registry> {
        let files = fstore_dsl::load_dir(dir)
            .map_err(|e| anyhow::anyhow!("reading definitions directory {}: {e}", dir.display()))?;
        if files.is_empty() {
            anyhow::bail!("no .fdl files in the definitions directory {}", dir.display());
        }
        Ok(Self::from_files(files)?)
    }

    pub fn from_files(files: Vec<SourceFile>) -> Result<Registry, DefinitionErrors> {
        let plan = fstore_dsl::check(&files).map_err(|diags| DefinitionErrors {
            count: diags.len(),
            rendered: fstore_dsl::render(&diags, &files),
        })?;
        Ok(Self::from_plan(plan, files))
    }

    pub fn from_plan(plan: Plan, files: Vec<SourceFile>) -> Registry {
        let views: Vec<ViewInfo> = (0..plan.views.len()).map(|i| view_info(&plan, i)).collect();
        let mut registry = Registry { plan, views, services: HashMap::new(), files };
        let services: HashMap<String, Arc<Selection>> = registry
            .plan
            .services
            .iter()
            .map(|s| {
                let mut selection = registry.select(&s.features);
                selection.derived = derived(s, &selection);
                (s.name.clone(), Arc::new(selection))
            })
            .collect();
        registry.services = services;
        registry
    }

    /// Resolve `view.feature` / `view.*` references, in order, without duplicates.
    pub fn resolve_refs(&self, refs: &[String]) -> Result<Selection, Error> {
        if refs.is_empty() {
            return Err(Error::invalid_argument(
                "the request names no features: set feature_service or features.refs",
            ));
        }
        let mut out: Vec<FeatureRef> = Vec::new();
        for reference in refs {
            let Some((view_name, feature)) = reference.split_once('.') else {
                return Err(Error::invalid_argument(format!(
                    "feature reference `{reference}` must have the form view.feature or view.*"
                )));
            };
            let Some((view, def)) = self.plan.view(view_name) else {
                return Err(Error::invalid_argument(format!(
                    "unknown view `{view_name}` in feature reference `{reference}`"
                )));
            };
            let picked: Vec<FeatureRef> = if feature == "*" {
                (0..def.feature_names().len()).map(|feature| FeatureRef { view, feature }).collect()
            } else {
                let Some(feature) = def.feature_index(feature) else {
                    return Err(Error::invalid_argument(format!(
                        "unknown feature `{feature}` of view `{view_name}` in reference `{reference}`"
                    )));
                };
                vec![FeatureRef { view, feature }]
            };
            for r in picked {
                if out.contains(&r) {
                    return Err(Error::invalid_argument(format!(
                        "feature reference `{reference}` repeats a feature already requested"
                    )));
                }
                out.push(r);
            }
        }
        Ok(self.select(&out))
    }

    fn select(&self, features: &[FeatureRef]) -> Selection {
        let mut columns = Vec::with_capacity(features.len());
        let mut views: Vec<ViewRead> = Vec::new();
        let mut keys = BTreeMap::new();
        for (column, r) in features.iter().enumerate() {
            let info = &self.views[r.view];
            columns.push(Column {
                name: format!("{}.{}", info.name, info.feature_names[r.feature]),
                feature: *r,
                ty: info.feature_types[r.feature],
            });
            match views.iter_mut().find(|v| v.view == r.view) {
                Some(read) => read.features.push((r.feature, column)),
                None => views.push(ViewRead { view: r.view, features: vec![(r.feature, column)] }),
            }
            let entity = &self.plan.entities[self.plan.views[r.view].entity];
            for key in &entity.keys {
                keys.insert(key.name.clone(), key.ty);
            }
        }
        Selection { columns, views, keys, derived: None }
    }

    /// Views that read the named source.
    pub fn views_of_source(&self, source: usize) -> Vec<usize> {
        (0..self.plan.views.len()).filter(|&v| self.plan.views[v].source == source).collect()
    }
}

/// Where each input of a service's derived features comes from; `None`
/// for a service without request fields or derived features.
fn derived(service: &fstore_dsl::plan::Service, selection: &Selection) -> Option<Derived> {
    if service.request.is_empty() && service.derived.is_empty() {
        return None;
    }
    let inputs = service
        .derived_inputs()
        .into_iter()
        .filter_map(|name| {
            let input = match service.request.iter().position(|r| r.name == name) {
                Some(i) => (service.request[i].ty, Input::Request(i)),
                // The checker resolved every other input to a listed feature.
                None => {
                    let c = selection.columns.iter().position(|c| c.name == name)?;
                    (selection.columns[c].ty, Input::Column(c))
                }
            };
            Some((name.to_string(), input.0, input.1))
        })
        .collect();
    Some(Derived { service: service.clone(), inputs })
}

/// The fingerprint that keys a view's stored data: a hash of its canonical
/// identity text ([`identity`]).
pub fn fingerprint(plan: &Plan, view: usize) -> u64 {
    identity::fingerprint(plan, view)
}

fn view_info(plan: &Plan, view: usize) -> ViewInfo {
    let v = &plan.views[view];
    let features = v.feature_names();
    ViewInfo {
        name: v.name.clone(),
        fingerprint: fingerprint(plan, view),
        feature_types: features.iter().map(|(_, t)| *t).collect(),
        feature_names: features.iter().map(|(n, _)| n.to_string()).collect(),
        key_names: plan.entities[v.entity].keys.iter().map(|k| k.name.clone()).collect(),
        ttl: v.ttl,
        aggregating: v.is_aggregating(),
        agg_layout: match &v.body {
            fstore_dsl::plan::ViewBody::Aggregating { resolution, features } => {
                Some(crate::store::aggs::AggLayout::of_view(
                    plan.entities[v.entity].keys.len(),
                    features,
                    resolution.as_micros() as i64,
                ))
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod golden_fingerprints {
    //! A view's fingerprint keys its stored data: a change that alters it
    //! re-keys the view, whose data is then dropped and loaded again. Such a
    //! change must be made on purpose, so the fingerprint of every view of
    //! the example definitions and of the language's golden good files is
    //! pinned in `tests/golden/fingerprints.txt`. After an intended change:
    //! `BLESS=1 cargo test --lib golden_fingerprints`; the diff names the
    //! views it re-keys.

    use std::fmt::Write;
    use std::path::{Path, PathBuf};

    use fstore_dsl::SourceFile;

    const HEADER: &str = "\
# Golden view fingerprints: definition set, view, fingerprint (hex).
# A fingerprint keys a view's stored data; a change here re-keys the view,
# so its data is dropped and loaded again. Rewritten only on purpose, with
# `BLESS=1 cargo test --lib golden_fingerprints` (see src/registry.rs).
";

    /// The checked plans of the example definitions and the good files.
    pub(crate) fn golden_plans() -> Vec<fstore_dsl::Plan> {
        definition_sets()
            .into_iter()
            .map(|(set, files)| {
                fstore_dsl::check(&files)
                    .unwrap_or_else(|d| panic!("{set} does not check:\n{}", fstore_dsl::render(&d, &files)))
            })
            .collect()
    }

    fn definition_sets() -> Vec<(String, Vec<SourceFile>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let examples = fstore_dsl::load_dir(&root.join("feature_defs")).expect("feature_defs/ is readable");
        let mut sets = vec![("feature_defs".to_string(), examples)];
        let good = root.join("crates/fstore-dsl/tests/golden/good");
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(&good).expect("the golden good files").map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let files = if path.is_dir() {
                fstore_dsl::load_dir(&path).unwrap()
            } else if name.ends_with(".fdl") {
                vec![SourceFile { name: name.clone(), text: std::fs::read_to_string(&path).unwrap() }]
            } else {
                continue;
            };
            sets.push((name, files));
        }
        sets
    }

    #[test]
    fn every_fingerprint_is_the_golden_one() {
        let mut got = String::from(HEADER);
        let mut views = 0;
        for (set, files) in definition_sets() {
            let plan = fstore_dsl::check(&files)
                .unwrap_or_else(|d| panic!("{set} does not check:\n{}", fstore_dsl::render(&d, &files)));
            for (i, view) in plan.views.iter().enumerate() {
                writeln!(got, "{set} {} {:016x}", view.name, super::fingerprint(&plan, i)).unwrap();
                views += 1;
            }
        }
        assert!(views >= 10, "only {views} views fingerprinted");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fingerprints.txt");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&path, &got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        let changed: Vec<&str> = got.lines().filter(|l| !want.lines().any(|w| w == *l)).collect();
        let gone: Vec<&str> = want.lines().filter(|w| !got.lines().any(|l| l == *w)).collect();
        assert!(
            changed.is_empty() && gone.is_empty(),
            "view fingerprints changed: every view below would be re-keyed, its stored data dropped.\n\
             now:\n  {}\nwas:\n  {}\nIf that is intended, rewrite {} with BLESS=1 and say so in the commit.",
            changed.join("\n  "),
            gone.join("\n  "),
            path.display()
        );
    }
}
