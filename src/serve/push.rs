//! `FeaturePush.PushEvents`: events written by clients, through
//! [`crate::ingest::push`], answered once the write is synced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::metrics::Metrics;
use crate::engine::Engine;
use crate::error::Error;
use crate::ingest::push::{self, BadEvents, PushError, PushedEvents};
use crate::proto::{self, push_events_request::Events};

pub(crate) struct Pushing {
    pub(crate) engine: Arc<Engine>,
    pub(crate) metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl proto::feature_push_server::FeaturePush for Pushing {
    async fn push_events(
        &self,
        request: Request<proto::PushEventsRequest>,
    ) -> Result<Response<proto::PushEventsResponse>, Status> {
        let started = Instant::now();
        let caller = request.extensions().get::<Arc<Caller>>().cloned();
        let request = request.into_inner();
        let source = request.source.clone();
        let result = self.push(caller.as_deref(), request).await.map_err(Status::from);
        let code = result.as_ref().map_or_else(|e| e.code(), |_| tonic::Code::Ok);
        self.metrics.record("PushEvents", &source, code, started.elapsed());
        result.map(Response::new)
    }
}

impl Pushing {
    async fn push(
        &self,
        caller: Option<&Caller>,
        request: proto::PushEventsRequest,
    ) -> Result<proto::PushEventsResponse, Error> {
        if let Some(caller) = caller {
            if !caller.may_push(&request.source) {
                return Err(Error::permission_denied(format!(
                    "API key `{}` may not push to source `{}`: list it in the key's `push` (or use an admin key)",
                    caller.name, request.source
                )));
            }
        }
        let events = match request.events {
            Some(Events::Json(j)) => PushedEvents::Json(j.events),
            Some(Events::Columns(c)) => PushedEvents::Columns(
                c.columns.into_iter().map(|(k, v)| (k, v.values)).collect::<HashMap<_, _>>(),
            ),
            None => {
                return Err(Error::invalid_argument("the push carries no events: set `columns` or `json`"))
            }
        };
        let engine = self.engine.clone();
        let source = request.source;
        // Decoding and a synced RocksDB write: off the async workers.
        let report =
            tokio::task::spawn_blocking(move || push::push(&engine, &source, events, BadEvents::Skip))
                .await
                .map_err(|e| Error::internal("running a push", e))?
                .map_err(|e| match e {
                    PushError::Invalid(m) => Error::invalid_argument(m),
                    PushError::Internal(e) => Error::internal("writing pushed events", e),
                })?;
        Ok(proto::PushEventsResponse {
            events_received: report.received,
            events_written: report.written,
            rejected: report
                .rejected
                .into_iter()
                .map(|r| proto::RejectedEvent { index: r.index as u64, reason: r.reason })
                .collect(),
            events_too_late: report.too_late,
            unread_fields: report.unread_fields,
        })
    }
}
