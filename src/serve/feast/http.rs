//! Feast's HTTP feature server API on `server.http_listen`:
//!
//! - `POST /get-online-features`: `entities` (join key -> values),
//!   `feature_service` or `features` (`view:feature`), `full_feature_names`;
//!   answered as Feast's server answers (`metadata.feature_names`,
//!   `results[]` with `values`, `statuses`, `event_timestamps`);
//! - `POST /push`: `push_source_name` (an fstore source), `df` (field ->
//!   values), `to` (`online`); written as `FeaturePush.PushEvents` writes;
//! - `POST /write-to-online-store`: `feature_view_name`, `df` (join keys,
//!   features, `event_timestamp`) for a row view whose features are source
//!   fields, written as events of its source;
//! - `GET /health`: 200 once the server serves, 503 before.
//!
//! Bodies are read as JSON whatever their Content-Type (Feast's clients send
//! `application/json`; curl users often do not), up to
//! `server.max_request_bytes`. Keys are checked as on the gRPC port
//! (`Authorization: Bearer <key>`), and lookups pass the same door. Errors
//! are Feast's: a status code and a body that is a JSON string holding
//! `{"module", "class", "message"}`, which Feast's client turns back into
//! the `feast.errors` class; the message is fstore's own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fstore_dsl::DataType;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{rfc3339, status_name, Features, Lookup, Problem, Untyped};
use crate::error::{Code, Error};
use crate::ingest::push::{self, BadEvents, PushError, PushedEvents};
use crate::proto::{self, value::Kind};
use crate::serve::guard::{Arrival, Call};
use crate::serve::Serving;

/// What the HTTP handlers share.
pub(crate) struct FeastHttp {
    pub(crate) serving: Arc<Serving>,
    /// Set once the server serves (`/health`).
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) max_body_bytes: usize,
}

type Shared = State<Arc<FeastHttp>>;

/// The routes, for `axum::serve`.
pub(crate) fn router(state: Arc<FeastHttp>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/get-online-features", post(get_online_features))
        .route("/push", post(push_events))
        .route("/write-to-online-store", post(write_to_online_store))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
}

/// Serve until `shutdown` resolves.
pub(crate) async fn serve(
    state: Arc<FeastHttp>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

#[derive(Deserialize)]
struct GetOnlineFeaturesBody {
    entities: Columns,
    #[serde(default)]
    feature_service: Option<String>,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    full_feature_names: bool,
}

#[derive(Deserialize)]
struct PushBody {
    push_source_name: String,
    df: Columns,
    #[serde(default = "online")]
    to: String,
}

fn online() -> String {
    "online".into()
}

#[derive(Deserialize)]
struct WriteBody {
    feature_view_name: String,
    df: Columns,
}

/// Columns (name -> one value per row) in the client's order.
struct Columns(Vec<(String, Vec<Json>)>);

impl<'de> Deserialize<'de> for Columns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Columns, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Columns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of columns, each a list of values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Columns, A::Error> {
                let mut out: Vec<(String, Vec<Json>)> = Vec::new();
                while let Some((name, values)) = map.next_entry::<String, Vec<Json>>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!("column `{name}` appears twice")));
                    }
                    out.push((name, values));
                }
                Ok(Columns(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Columns {
    /// Rows, when every column has as many values.
    fn rows(&self, what: &str) -> Result<usize, Error> {
        let mut rows = None;
        for (name, values) in &self.0 {
            match rows {
                None => rows = Some((name, values.len())),
                Some((first, n)) if n != values.len() => {
                    return Err(Error::invalid_argument(format!(
                        "{what} columns differ in length: `{first}` has {n} values, `{name}` has {}",
                        values.len()
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(rows.map_or(0, |(_, n)| n))
    }
}

impl Untyped for Json {
    fn typed(&self, ty: DataType) -> Result<proto::Value, String> {
        json_value(self, ty).map(|kind| proto::Value { kind })
    }
}

/// A JSON value as `ty` (null is an unset value), or what it is instead.
fn json_value(v: &Json, ty: DataType) -> Result<Option<Kind>, String> {
    use fstore_dsl::ElementType as E;
    let found = || match v {
        Json::Null => "null".to_string(),
        Json::Bool(_) => "a bool".into(),
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer".into(),
        Json::Number(_) => "a number".into(),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "an object".into(),
    };
    if v.is_null() {
        return Ok(None);
    }
    let floats =
        |items: &Vec<Json>| items.iter().map(|x| x.as_f64().ok_or_else(found)).collect::<Result<Vec<_>, _>>();
    let kind = match (ty, v) {
        (DataType::Bool, Json::Bool(b)) => Kind::BoolValue(*b),
        (DataType::Int64, Json::Number(n)) if n.is_i64() => Kind::Int64Value(n.as_i64().unwrap_or_default()),
        (DataType::Float64, Json::Number(n)) => Kind::Float64Value(n.as_f64().unwrap_or_default()),
        (DataType::Float32, Json::Number(n)) => Kind::Float32Value(n.as_f64().unwrap_or_default() as f32),
        (DataType::String, Json::String(s)) => Kind::StringValue(s.clone()),
        (DataType::Bytes, Json::String(s)) => Kind::BytesValue(s.as_bytes().to_vec()),
        (DataType::Timestamp, Json::String(s)) => Kind::TimestampMicros(parse_time(s).ok_or_else(found)?),
        (DataType::Array(E::Float32), Json::Array(items)) => Kind::Float32List(proto::Float32List {
            values: floats(items)?.into_iter().map(|x| x as f32).collect(),
        }),
        (DataType::Array(E::Float64), Json::Array(items)) => {
            Kind::Float64List(proto::Float64List { values: floats(items)? })
        }
        (DataType::Array(E::Int64), Json::Array(items)) => Kind::Int64List(proto::Int64List {
            values: items.iter().map(|x| x.as_i64().ok_or_else(found)).collect::<Result<_, _>>()?,
        }),
        (DataType::Array(E::String), Json::Array(items)) => Kind::StringList(proto::StringList {
            values: items
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(found))
                .collect::<Result<_, _>>()?,
        }),
        _ => return Err(found()),
    };
    Ok(Some(kind))
}

/// An event time as Feast users write it: RFC 3339, or ISO 8601 without a
/// zone (read as UTC, as Feast does), with `T` or a space; microseconds.
fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let s = s.trim();
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, format) {
            return Some(t.timestamp_micros());
        }
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, format) {
            return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
        }
    }
    None
}

/// Let the call in (keys, overload) and read its body as `T`.
async fn enter<T: serde::de::DeserializeOwned>(
    state: &FeastHttp,
    headers: &HeaderMap,
    body: Body,
    call: Call,
) -> Result<(crate::serve::guard::Entry, T), Problem> {
    let entry = state.serving.door().enter(headers, call, Arrival::now())?;
    let bytes = axum::body::to_bytes(body, state.max_body_bytes).await.map_err(|_| {
        Error::invalid_argument(format!(
            "the request body is larger than {} bytes (server.max_request_bytes)",
            state.max_body_bytes
        ))
    })?;
    let parsed = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid_argument(format!("the request body is not a valid request: {e}")))?;
    Ok((entry, parsed))
}

async fn get_online_features(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    reply(lookup(&state, &headers, body).await)
}

async fn lookup(state: &FeastHttp, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    let (entry, body): (_, GetOnlineFeaturesBody) = enter(state, headers, body, Call::Lookup).await?;
    let features = match body.feature_service {
        Some(name) if !name.is_empty() => Features::Service(name),
        _ if body.features.is_empty() => {
            return Err(Error::invalid_argument(
                "the request names no features: set feature_service or features",
            )
            .into())
        }
        _ => Features::Refs(body.features),
    };
    body.entities.rows("entity")?;
    let plan =
        Lookup::plan(&state.serving.engine().registry(), features, body.entities.0, body.full_feature_names)?;
    let response = state
        .serving
        .lookup("feast.http/get-online-features", entry.arrival, entry.caller.clone(), plan.request.clone())
        .await?;
    drop(entry);
    let answer = plan.answer(response);
    let mut names = Vec::with_capacity(answer.columns.len());
    let mut results = Vec::with_capacity(answer.columns.len());
    for c in answer.columns {
        names.push(c.name);
        results.push(json!({
            "values": c.values.iter().map(value_json).collect::<Vec<_>>(),
            "statuses": c.statuses.iter().map(|s| status_name(*s)).collect::<Vec<_>>(),
            "event_timestamps": c.event_timestamps_micros.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
        }));
    }
    let doc = json!({ "metadata": { "feature_names": names }, "results": results });
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], doc.to_string()).into_response())
}

/// A value as Feast's server writes it: numbers and strings as JSON,
/// float32 widened to float64, non-finite floats as "NaN" / "Infinity" /
/// "-Infinity", bytes in base64, timestamps as epoch seconds, null for none.
fn value_json(v: &proto::Value) -> Json {
    fn float(f: f64) -> Json {
        if f.is_finite() {
            json!(f)
        } else if f.is_nan() {
            json!("NaN")
        } else if f > 0.0 {
            json!("Infinity")
        } else {
            json!("-Infinity")
        }
    }
    match &v.kind {
        None => Json::Null,
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::Int64Value(i)) => json!(i),
        Some(Kind::Float32Value(f)) => float(*f as f64),
        Some(Kind::Float64Value(f)) => float(*f),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BytesValue(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(Kind::TimestampMicros(t)) => json!(t.div_euclid(1_000_000)),
        Some(Kind::Float32List(l)) => Json::Array(l.values.iter().map(|f| float(*f as f64)).collect()),
        Some(Kind::Float64List(l)) => Json::Array(l.values.iter().map(|f| float(*f)).collect()),
        Some(Kind::Int64List(l)) => json!(l.values),
        Some(Kind::StringList(l)) => json!(l.values),
    }
}

async fn push_events(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    reply(push_body(&state, &headers, body).await.map(|()| StatusCode::OK.into_response()))
}

async fn push_body(state: &FeastHttp, headers: &HeaderMap, body: Body) -> Result<(), Problem> {
    let (entry, body): (_, PushBody) = enter(state, headers, body, Call::Other).await?;
    match body.to.as_str() {
        "online" => {}
        "offline" | "online_and_offline" => {
            return Err(Error::invalid_argument(format!(
                "push with to=\"{}\" is not served: fstore is an online store and keeps no offline copy; push with to=\"online\" and write the offline store from your pipeline",
                body.to
            ))
            .into())
        }
        other => {
            return Err(Error::invalid_argument(format!(
                "{other} is not a supported push format. Please specify one of these ['online', 'offline', 'online_and_offline']."
            ))
            .into())
        }
    }
    let timestamp_field = {
        let registry = state.serving.engine().registry();
        match registry.plan.source(&body.push_source_name) {
            Some((_, source)) => source.timestamp_field.clone(),
            None => {
                return Err(Problem::NotFound {
                    class: "PushSourceNotFoundException",
                    message: format!("Unable to find push source '{}'.", body.push_source_name),
                })
            }
        }
    };
    let events = events_of(&body.df, &timestamp_field, |name| Some(name.to_string()))?;
    write(state, entry, &body.push_source_name, events).await
}

async fn write_to_online_store(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    reply(write_body(&state, &headers, body).await.map(|()| (StatusCode::OK, "null").into_response()))
}

/// Feast's `/write-to-online-store` carries a view's features; fstore
/// stores a source's events and computes its views from them. A row view
/// whose features are source fields maps back: each column names a join
/// key, a feature (written as its field) or the event time.
async fn write_body(state: &FeastHttp, headers: &HeaderMap, body: Body) -> Result<(), Problem> {
    let (entry, body): (_, WriteBody) = enter(state, headers, body, Call::Other).await?;
    let (source, timestamp_field, fields) = {
        let registry = state.serving.engine().registry();
        let Some((_, view)) = registry.plan.view(&body.feature_view_name) else {
            return Err(Problem::NotFound {
                class: "FeatureViewNotFoundException",
                message: format!("Feature view {} does not exist", body.feature_view_name),
            });
        };
        let source = &registry.plan.sources[view.source];
        let fstore_dsl::plan::ViewBody::Row { features } = &view.body else {
            return Err(Error::invalid_argument(format!(
                "feature view `{}` aggregates events of source `{}`: write the events with /push (push_source_name `{}`), not its features",
                view.name, source.name, source.name
            ))
            .into());
        };
        // Column -> source field.
        let mut fields: HashMap<String, String> = HashMap::new();
        let entity = &registry.plan.entities[view.entity];
        for (key, field) in entity.keys.iter().zip(&view.key_fields) {
            fields.insert(key.name.clone(), field.clone());
        }
        fields.insert("event_timestamp".into(), source.timestamp_field.clone());
        for (name, _) in &body.df.0 {
            if fields.contains_key(name) || name == "created" {
                continue;
            }
            let Some(feature) = features.iter().find(|f| f.name == *name) else {
                return Err(Error::invalid_argument(format!(
                    "column `{name}` is not a join key or feature of feature view `{}`",
                    view.name
                ))
                .into());
            };
            let fstore_dsl::plan::ExprKind::Field(field) = &feature.expr.kind else {
                return Err(Error::invalid_argument(format!(
                    "feature `{name}` of view `{}` is computed (`{}`), not a source field: write the events of source `{}` with /push instead",
                    view.name, feature.expr, source.name
                ))
                .into());
            };
            fields.insert(name.clone(), field.clone());
        }
        (source.name.clone(), source.timestamp_field.clone(), fields)
    };
    let events = events_of(&body.df, &timestamp_field, |name| match name {
        "created" => None,
        _ => fields.get(name).cloned(),
    })?;
    write(state, entry, &source, events).await
}

/// One JSON object per row of `df`, with each column under the field
/// `field_of` names (None: left out). Event times (field `timestamp_field`)
/// in Feast's forms are written as RFC 3339 for fstore's decoder.
fn events_of(
    df: &Columns,
    timestamp_field: &str,
    field_of: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Error> {
    let rows = df.rows("df")?;
    let columns: Vec<(String, &Vec<Json>)> =
        df.0.iter().filter_map(|(name, values)| field_of(name).map(|f| (f, values))).collect();
    let mut events = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut object = serde_json::Map::with_capacity(columns.len());
        for (field, values) in &columns {
            let mut v = values[row].clone();
            if field != timestamp_field {
                object.insert(field.clone(), v);
                continue;
            }
            if let Json::String(s) = &v {
                if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    if let Some(t) = parse_time(s) {
                        v = json!(rfc3339(t));
                    }
                }
            }
            object.insert(field.clone(), v);
        }
        events.push(Json::Object(object).to_string());
    }
    Ok(events)
}

/// Write `events` to `source` as one push: every event or none (a Feast
/// client cannot read a partial report), answered once synced.
async fn write(
    state: &FeastHttp,
    entry: crate::serve::guard::Entry,
    source: &str,
    events: Vec<String>,
) -> Result<(), Problem> {
    if let Some(caller) = &entry.caller {
        if !caller.may_push(source) {
            return Err(Error::permission_denied(format!(
                "API key `{}` may not push to source `{source}`: list it in the key's `push` (or use an admin key)",
                caller.name
            ))
            .into());
        }
    }
    let engine = state.serving.engine().clone();
    let source = source.to_string();
    let report = tokio::task::spawn_blocking(move || {
        push::push(&engine, &source, PushedEvents::Json(events), BadEvents::RefuseAll)
    })
    .await
    .map_err(|e| Error::internal("running a push", e))?
    .map_err(|e| match e {
        PushError::Invalid(m) => Error::invalid_argument(m),
        PushError::Internal(e) => Error::internal("writing pushed events", e),
    })?;
    drop(entry);
    if let Some(first) = report.rejected.first() {
        return Err(Error::invalid_argument(format!(
            "{} of {} rows were not written (the others were): row {}: {}",
            report.rejected.len(),
            report.received,
            first.index,
            first.reason
        ))
        .into());
    }
    Ok(())
}

async fn health(State(state): Shared) -> StatusCode {
    if state.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let mut response = reply(Err(Error::invalid_argument(format!(
        "no such endpoint `{}`; fstore's Feast API serves POST /get-online-features, /push, /write-to-online-store and GET /health",
        uri.path()
    ))
    .into()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// An answer, or the failure as Feast's server writes one: a status code and
/// a body that is a JSON string of `{"module", "class", "message"}`.
fn reply(result: Result<Response, Problem>) -> Response {
    let problem = match result {
        Ok(response) => return response,
        Err(problem) => problem,
    };
    let (status, class, message) = match problem {
        Problem::NotFound { class, message } => {
            let status = if class == "PushSourceNotFoundException" {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::NOT_FOUND
            };
            (status, class, message)
        }
        Problem::Error(e) => {
            let (code, message) = e.into_reply();
            let (status, class) = match code {
                Code::InvalidArgument | Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "FeastError"),
                Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "FeastPermissionError"),
                Code::PermissionDenied => (StatusCode::FORBIDDEN, "FeastPermissionError"),
                Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "FeastError"),
                Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "FeastError"),
                Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "FeastError"),
                Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "FeastError"),
            };
            (status, class, message)
        }
    };
    let detail = json!({ "module": "feast.errors", "class": class, "message": message }).to_string();
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], Json::String(detail).to_string())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_feast_writes_them() {
        let v = |kind| value_json(&proto::Value { kind: Some(kind) }).to_string();
        assert_eq!(v(Kind::Float32Value(0.1)), "0.10000000149011612");
        assert_eq!(v(Kind::Float64Value(f64::NAN)), "\"NaN\"");
        assert_eq!(v(Kind::Float64Value(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(v(Kind::BytesValue(b"hi!".to_vec())), "\"aGkh\"");
        assert_eq!(v(Kind::TimestampMicros(1_796_083_200_999_999)), "1796083200");
        assert_eq!(v(Kind::Int64List(proto::Int64List { values: vec![1, 2] })), "[1,2]");
        assert_eq!(value_json(&proto::Value::default()), Json::Null);
    }

    #[test]
    fn event_times_in_feast_forms_are_read_as_utc() {
        let want = 1_796_083_200_000_000;
        assert_eq!(parse_time("2026-12-01T00:00:00Z"), Some(want));
        assert_eq!(parse_time("2026-12-01T00:00:00"), Some(want));
        assert_eq!(parse_time("2026-12-01 00:00:00.000000"), Some(want));
        assert_eq!(parse_time("2026-12-01 01:00:00+01:00"), Some(want));
        assert_eq!(parse_time("2026-12-01"), Some(want));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn json_values_take_the_declared_type_or_say_what_they_are() {
        let t = |v: Json, ty| json_value(&v, ty);
        assert_eq!(t(json!(7), DataType::Int64), Ok(Some(Kind::Int64Value(7))));
        assert_eq!(t(json!(7), DataType::Float64), Ok(Some(Kind::Float64Value(7.0))));
        assert_eq!(t(json!("7"), DataType::Int64), Err("a string".into()));
        assert_eq!(t(json!(7.5), DataType::Int64), Err("a number".into()));
        assert_eq!(t(Json::Null, DataType::String), Ok(None));
    }

    #[test]
    fn errors_are_a_json_string_feast_can_parse() {
        let response = reply(Err(Problem::NotFound {
            class: "FeatureServiceNotFoundException",
            message: "Feature service x does not exist".into(),
        }));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = reply(Err(Error::resource_exhausted("busy").into()));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}
