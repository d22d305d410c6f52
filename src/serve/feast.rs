//! Feast's serving APIs, answered by fstore: a team that runs Feast today
//! points its clients at fstore by changing one address.
//!
//! - [`http`]: Feast's HTTP feature server (`POST /get-online-features`,
//!   `/push`, `/write-to-online-store`, `GET /health`) on
//!   `server.http_listen`;
//! - [`grpc`]: Feast's gRPC `feast.serving.ServingService`, on the gRPC port
//!   beside `fstore.v1`.
//!
//! Both translate a Feast request into an fstore lookup here
//! ([`Lookup::plan`]), run it through the same path as `fstore.v1`
//! (`serve::Serving::lookup`: the door, shedding, metrics, access checks),
//! and shape the answer as Feast does ([`Answer`]): one column per feature,
//! join keys first (echoing the request, PRESENT, epoch event time), then
//! each feature view's features, named `feature` or `view__feature`.
//! docs/feast.md says what maps and what does not.

pub(crate) mod grpc;
pub(crate) mod http;

use fstore_dsl::DataType;

use crate::error::Error;
use crate::proto::{self, get_online_features_request::Selector, FieldStatus};
use crate::registry::Registry;

/// What Feast asks for: a feature service, or `view:feature` references.
pub(crate) enum Features {
    Service(String),
    Refs(Vec<String>),
}

/// A failure as a Feast client expects it: a Feast error class where Feast
/// names one (not-found ones), else fstore's error as it is.
pub(crate) enum Problem {
    NotFound { class: &'static str, message: String },
    Error(Error),
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        Problem::Error(e)
    }
}

/// A Feast lookup resolved against the definitions: the fstore request it
/// becomes, and how to shape the answer.
pub(crate) struct Lookup {
    pub(crate) request: proto::GetOnlineFeaturesRequest,
    /// The join keys and request fields the client sent that the lookup
    /// uses, in the client's order: echoed first in the answer, as Feast does.
    echoed: Vec<(String, Vec<proto::Value>)>,
    /// Per answer column after the echoed ones: the index of the fstore
    /// response column, and its Feast name.
    columns: Vec<(usize, String)>,
}

/// What the caller's column of values holds before it is typed: the HTTP
/// API's JSON, or the gRPC API's Feast values.
pub(crate) trait Untyped {
    /// The value as `ty`, or what it is instead (for the error message).
    fn typed(&self, ty: DataType) -> Result<proto::Value, String>;
}

impl Lookup {
    /// Resolve `features` and type the client's columns (`columns`: name ->
    /// one value per entity row, in the client's order). Columns that are
    /// neither a join key nor a request field of the lookup are skipped, as
    /// Feast skips them.
    pub(crate) fn plan<V: Untyped>(
        registry: &Registry,
        features: Features,
        columns: Vec<(String, Vec<V>)>,
        full_feature_names: bool,
    ) -> Result<Lookup, Problem> {
        let (selector, selection, service_name) = match features {
            Features::Service(name) => match registry.services.get(&name) {
                Some(s) => (Selector::FeatureService(name.clone()), s.clone(), Some(name)),
                None => {
                    return Err(Problem::NotFound {
                        class: "FeatureServiceNotFoundException",
                        message: format!(
                            "Feature service {name} does not exist{}",
                            known(registry.services.keys())
                        ),
                    })
                }
            },
            Features::Refs(refs) => {
                let mut fstore_refs = Vec::with_capacity(refs.len());
                for r in &refs {
                    let Some((view, feature)) = r.split_once(':') else {
                        return Err(Error::invalid_argument(format!(
                            "feature reference `{r}` must have the form feature_view:feature"
                        ))
                        .into());
                    };
                    if view.contains('@') {
                        return Err(Error::invalid_argument(format!(
                            "feature reference `{r}` names a feature view version; fstore serves one version of each view"
                        ))
                        .into());
                    }
                    if registry.plan.view(view).is_none() {
                        return Err(Problem::NotFound {
                            class: "FeatureViewNotFoundException",
                            message: format!(
                                "Feature view {view} does not exist{}",
                                known(registry.views.iter().map(|v| &v.name))
                            ),
                        });
                    }
                    fstore_refs.push(format!("{view}.{feature}"));
                }
                let selection = registry.resolve_refs(&fstore_refs)?;
                (
                    Selector::Features(proto::FeatureRefs { refs: fstore_refs }),
                    std::sync::Arc::new(selection),
                    None,
                )
            }
        };
        let declared = selection.derived.as_ref().map_or(&[][..], |d| d.service.request.as_slice());

        let mut request = proto::GetOnlineFeaturesRequest { selector: Some(selector), ..Default::default() };
        let mut echoed = Vec::new();
        for (name, values) in columns {
            let (ty, is_key) = match selection.keys.get(&name) {
                Some(ty) => (*ty, true),
                None => match declared.iter().find(|f| f.name == name) {
                    Some(field) => (field.ty, false),
                    None => continue,
                },
            };
            let typed = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.typed(ty).map_err(|found| {
                        let what = if is_key { "join key" } else { "request field" };
                        Error::invalid_argument(format!(
                            "{what} `{name}` value {i} is {found}; `{name}` is {ty}"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let target = if is_key { &mut request.entities } else { &mut request.request_data };
            target.insert(name.clone(), proto::Values { values: typed.clone() });
            echoed.push((name, typed));
        }
        if let Some(missing) = selection.keys.keys().find(|k| !request.entities.contains_key(*k)) {
            let needed: Vec<&str> = selection.keys.keys().map(String::as_str).collect();
            let mut message =
                format!("missing join key `{missing}`; this request needs: {}", needed.join(", "));
            if needed.len() > 1 && request.entities.len() == 1 {
                message.push_str(
                    " (Feast SDKs before 0.64 send only the first join key of a view; upgrade the client to read views with composite keys)",
                );
            }
            return Err(Error::invalid_argument(message).into());
        }

        // Features by view in first-appearance order, as Feast groups them;
        // then the service's derived features.
        let mut names: Vec<(usize, String)> = Vec::with_capacity(selection.columns.len());
        for read in &selection.views {
            for &(_, column) in &read.features {
                let (view, feature) = selection.columns[column].name.split_once('.').unwrap_or_default();
                let name =
                    if full_feature_names { format!("{view}__{feature}") } else { feature.to_string() };
                names.push((column, name));
            }
        }
        if let Some(derived) = &selection.derived {
            let service = service_name.as_deref().unwrap_or_default();
            for (i, d) in derived.service.derived.iter().enumerate() {
                let name = if full_feature_names { format!("{service}__{}", d.name) } else { d.name.clone() };
                names.push((selection.columns.len() + i, name));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (_, name) in &names {
            if !seen.insert(name.as_str()) {
                return Err(Error::invalid_argument(format!(
                    "feature name `{name}` is requested twice (from two feature views); set full_feature_names to tell them apart"
                ))
                .into());
            }
        }
        Ok(Lookup { request, echoed, columns: names })
    }

    /// The Feast answer from fstore's response to [`Lookup::request`].
    pub(crate) fn answer(self, response: proto::GetOnlineFeaturesResponse) -> Answer {
        let rows = self.echoed.first().map_or(0, |(_, v)| v.len());
        let mut features = response.features;
        let mut columns: Vec<AnswerColumn> = self
            .echoed
            .into_iter()
            .map(|(name, values)| AnswerColumn {
                name,
                values,
                statuses: vec![FieldStatus::Present as i32; rows],
                event_timestamps_micros: vec![0; rows],
            })
            .collect();
        for (index, name) in self.columns {
            let c = std::mem::take(&mut features[index]);
            columns.push(AnswerColumn {
                name,
                values: c.values,
                statuses: c.statuses,
                event_timestamps_micros: c.event_timestamps_micros,
            });
        }
        Answer { columns }
    }
}

/// A Feast answer, before a protocol renders it.
pub(crate) struct Answer {
    pub(crate) columns: Vec<AnswerColumn>,
}

pub(crate) struct AnswerColumn {
    pub(crate) name: String,
    pub(crate) values: Vec<proto::Value>,
    pub(crate) statuses: Vec<i32>,
    pub(crate) event_timestamps_micros: Vec<i64>,
}

/// Feast's name for a status.
pub(crate) fn status_name(status: i32) -> &'static str {
    match FieldStatus::try_from(status) {
        Ok(FieldStatus::Present) => "PRESENT",
        Ok(FieldStatus::NullValue) => "NULL_VALUE",
        Ok(FieldStatus::NotFound) => "NOT_FOUND",
        Ok(FieldStatus::OutsideMaxAge) => "OUTSIDE_MAX_AGE",
        _ => "INVALID",
    }
}

/// An event time as Feast's server writes it: RFC 3339 in UTC with `Z`,
/// with no fraction, or 3 or 6 digits, whichever is exact.
pub(crate) fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let base =
        chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S").to_string();
    if frac == 0 {
        format!("{base}Z")
    } else if frac % 1000 == 0 {
        format!("{base}.{:03}Z", frac / 1000)
    } else {
        format!("{base}.{frac:06}Z")
    }
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let mut names: Vec<&str> = names.map(String::as_str).collect();
    names.sort_unstable();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_written_as_feast_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_200_000_000), "2026-12-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_200_250_000), "2026-12-01T00:00:00.250Z");
        assert_eq!(rfc3339(1_796_083_200_000_001), "2026-12-01T00:00:00.000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }
}
