//! Feast's gRPC `feast.serving.ServingService`, beside `fstore.v1` on the
//! gRPC port: `GetFeastServingInfo`, and `GetOnlineFeatures` with
//! `entities`, `features` or `feature_service`, `full_feature_names` and
//! `request_context`. Every column carries a value, a status and an event
//! time for every row, join keys included (Feast's Java client reads them
//! for every column). Values are Feast's kinds 1-19: an fstore int64 is
//! `int64_val`, float32 `float_val`, float64 `double_val`, a timestamp
//! `unix_timestamp_val` (seconds), arrays the matching `*_list_val`.

use std::sync::Arc;

use fstore_client::feast::serving::{
    self as fs, serving_service_server::ServingService, GetFeastServingInfoRequest,
    GetFeastServingInfoResponse,
};
use fstore_client::feast::types::{self as ft, value::Val};
use fstore_dsl::{DataType, ElementType};
use tonic::{Request, Response, Status};

use super::{Features, Lookup, Problem, Untyped};
use crate::proto::{self, value::Kind};
use crate::serve::auth::Caller;
use crate::serve::guard::Arrival;
use crate::serve::Serving;

pub(crate) struct FeastServing {
    pub(crate) serving: Arc<Serving>,
}

#[tonic::async_trait]
impl ServingService for FeastServing {
    async fn get_feast_serving_info(
        &self,
        _request: Request<GetFeastServingInfoRequest>,
    ) -> Result<Response<GetFeastServingInfoResponse>, Status> {
        Ok(Response::new(GetFeastServingInfoResponse {
            version: format!("fstore {}", env!("CARGO_PKG_VERSION")),
        }))
    }

    async fn get_online_features(
        &self,
        request: Request<fs::GetOnlineFeaturesRequest>,
    ) -> Result<Response<fs::GetOnlineFeaturesResponse>, Status> {
        let arrival = Arrival::of(&request);
        let caller = request.extensions().get::<Arc<Caller>>().cloned();
        self.lookup(arrival, caller, request.into_inner()).await.map(Response::new).map_err(|p| match p {
            Problem::NotFound { message, .. } => Status::not_found(message),
            Problem::Error(e) => Status::from(e),
        })
    }
}

impl FeastServing {
    async fn lookup(
        &self,
        arrival: Arrival,
        caller: Option<Arc<Caller>>,
        request: fs::GetOnlineFeaturesRequest,
    ) -> Result<fs::GetOnlineFeaturesResponse, Problem> {
        use fs::get_online_features_request::Kind as Selector;
        let features = match request.kind {
            Some(Selector::FeatureService(name)) => Features::Service(name),
            Some(Selector::Features(list)) => Features::Refs(list.val),
            None => {
                return Err(crate::error::Error::invalid_argument(
                    "the request names no features: set feature_service or features",
                )
                .into())
            }
        };
        // Join keys, then request fields, each by name: a protobuf map has
        // no order of its own.
        let mut entities: Vec<(String, Vec<ft::Value>)> =
            request.entities.into_iter().map(|(k, v)| (k, v.val)).collect();
        entities.sort_by(|a, b| a.0.cmp(&b.0));
        let mut context: Vec<(String, Vec<ft::Value>)> =
            request.request_context.into_iter().map(|(k, v)| (k, v.val)).collect();
        context.sort_by(|a, b| a.0.cmp(&b.0));
        entities.extend(context);
        let plan =
            Lookup::plan(&self.serving.engine().registry(), features, entities, request.full_feature_names)?;
        let response = self
            .serving
            .lookup("feast.ServingService/GetOnlineFeatures", arrival, caller, plan.request.clone())
            .await?;
        let answer = plan.answer(response);
        let mut names = Vec::with_capacity(answer.columns.len());
        let mut results = Vec::with_capacity(answer.columns.len());
        for c in answer.columns {
            names.push(c.name);
            results.push(fs::get_online_features_response::FeatureVector {
                values: c.values.into_iter().map(feast_value).collect(),
                statuses: c.statuses,
                event_timestamps: c
                    .event_timestamps_micros
                    .into_iter()
                    .map(|t| prost_types::Timestamp {
                        seconds: t.div_euclid(1_000_000),
                        nanos: (t.rem_euclid(1_000_000) * 1000) as i32,
                    })
                    .collect(),
            });
        }
        Ok(fs::GetOnlineFeaturesResponse {
            metadata: Some(fs::GetOnlineFeaturesResponseMetadata {
                feature_names: Some(fs::FeatureList { val: names }),
                feature_view_metadata: Vec::new(),
            }),
            results,
            status: true,
        })
    }
}

/// An fstore value as Feast's.
fn feast_value(v: proto::Value) -> ft::Value {
    let val = v.kind.map(|kind| match kind {
        Kind::BoolValue(b) => Val::BoolVal(b),
        Kind::Int64Value(i) => Val::Int64Val(i),
        Kind::Float32Value(f) => Val::FloatVal(f),
        Kind::Float64Value(f) => Val::DoubleVal(f),
        Kind::StringValue(s) => Val::StringVal(s),
        Kind::BytesValue(b) => Val::BytesVal(b),
        Kind::TimestampMicros(t) => Val::UnixTimestampVal(t.div_euclid(1_000_000)),
        Kind::Float32List(l) => Val::FloatListVal(ft::FloatList { val: l.values }),
        Kind::Float64List(l) => Val::DoubleListVal(ft::DoubleList { val: l.values }),
        Kind::Int64List(l) => Val::Int64ListVal(ft::Int64List { val: l.values }),
        Kind::StringList(l) => Val::StringListVal(ft::StringList { val: l.values }),
    });
    ft::Value { val }
}

impl Untyped for ft::Value {
    fn typed(&self, ty: DataType) -> Result<proto::Value, String> {
        let kind = match (&self.val, ty) {
            (None | Some(Val::NullVal(_)), _) => None,
            (Some(Val::BoolVal(b)), DataType::Bool) => Some(Kind::BoolValue(*b)),
            (Some(Val::Int64Val(i)), DataType::Int64) => Some(Kind::Int64Value(*i)),
            (Some(Val::Int32Val(i)), DataType::Int64) => Some(Kind::Int64Value(*i as i64)),
            (Some(Val::DoubleVal(f)), DataType::Float64) => Some(Kind::Float64Value(*f)),
            (Some(Val::FloatVal(f)), DataType::Float64) => Some(Kind::Float64Value(*f as f64)),
            (Some(Val::Int64Val(i)), DataType::Float64) => Some(Kind::Float64Value(*i as f64)),
            (Some(Val::Int32Val(i)), DataType::Float64) => Some(Kind::Float64Value(*i as f64)),
            (Some(Val::FloatVal(f)), DataType::Float32) => Some(Kind::Float32Value(*f)),
            (Some(Val::DoubleVal(f)), DataType::Float32) => Some(Kind::Float32Value(*f as f32)),
            (Some(Val::StringVal(s)), DataType::String) => Some(Kind::StringValue(s.clone())),
            (Some(Val::BytesVal(b)), DataType::Bytes) => Some(Kind::BytesValue(b.clone())),
            (Some(Val::UnixTimestampVal(t)), DataType::Timestamp) => {
                Some(Kind::TimestampMicros(t.saturating_mul(1_000_000)))
            }
            (Some(Val::FloatListVal(l)), DataType::Array(ElementType::Float32)) => {
                Some(Kind::Float32List(proto::Float32List { values: l.val.clone() }))
            }
            (Some(Val::DoubleListVal(l)), DataType::Array(ElementType::Float32)) => {
                Some(Kind::Float32List(proto::Float32List {
                    values: l.val.iter().map(|x| *x as f32).collect(),
                }))
            }
            (Some(Val::DoubleListVal(l)), DataType::Array(ElementType::Float64)) => {
                Some(Kind::Float64List(proto::Float64List { values: l.val.clone() }))
            }
            (Some(Val::FloatListVal(l)), DataType::Array(ElementType::Float64)) => {
                Some(Kind::Float64List(proto::Float64List {
                    values: l.val.iter().map(|x| *x as f64).collect(),
                }))
            }
            (Some(Val::Int64ListVal(l)), DataType::Array(ElementType::Int64)) => {
                Some(Kind::Int64List(proto::Int64List { values: l.val.clone() }))
            }
            (Some(Val::StringListVal(l)), DataType::Array(ElementType::String)) => {
                Some(Kind::StringList(proto::StringList { values: l.val.clone() }))
            }
            (Some(other), _) => return Err(feast_kind_name(other).to_string()),
        };
        Ok(proto::Value { kind })
    }
}

fn feast_kind_name(v: &Val) -> &'static str {
    match v {
        Val::BytesVal(_) => "bytes_val",
        Val::StringVal(_) => "string_val",
        Val::Int32Val(_) => "int32_val",
        Val::Int64Val(_) => "int64_val",
        Val::DoubleVal(_) => "double_val",
        Val::FloatVal(_) => "float_val",
        Val::BoolVal(_) => "bool_val",
        Val::UnixTimestampVal(_) => "unix_timestamp_val",
        Val::BytesListVal(_) => "bytes_list_val",
        Val::StringListVal(_) => "string_list_val",
        Val::Int32ListVal(_) => "int32_list_val",
        Val::Int64ListVal(_) => "int64_list_val",
        Val::DoubleListVal(_) => "double_list_val",
        Val::FloatListVal(_) => "float_list_val",
        Val::BoolListVal(_) => "bool_list_val",
        Val::UnixTimestampListVal(_) => "unix_timestamp_list_val",
        Val::NullVal(_) => "null_val",
    }
}
