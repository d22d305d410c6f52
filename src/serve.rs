//! The gRPC server: `FeatureServing` and `FeatureAdmin` (see
//! `proto/fstore/v1/fstore.proto`), the standard health service and server
//! reflection.
//!
//! Handlers map errors to gRPC codes in one place ([`ingest_status`]): what
//! the client can act on goes in the message, internal detail goes to the log.

pub mod lookup;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::ingest::parquet::{self, Mode};
use crate::ingest::{IngestError, IngestReport};
use crate::proto::{
    self, feature_admin_server::FeatureAdminServer, feature_serving_server::FeatureServingServer,
};
use metrics::Metrics;

pub struct Serving {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl proto::feature_serving_server::FeatureServing for Serving {
    async fn get_online_features(
        &self,
        request: Request<proto::GetOnlineFeaturesRequest>,
    ) -> Result<Response<proto::GetOnlineFeaturesResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let service = self.service_label(&request);
        // Lookups run inline on the async worker. Measured with `fstore bench`
        // (release, 1 row x 50 features, 1,000 hot keys, 200 req/s, one
        // connection): tokio's block_in_place gave p50 3.0 ms / p99 11 ms,
        // most of its CPU in malloc as the worker's core moved to a fresh
        // thread per call; inline gave p50 0.70 ms / p99 3.3 ms. Requests
        // whose keys miss the block cache may need a blocking pool instead;
        // decide that by the tail of a benchmark, not by rule.
        let engine = &self.engine;
        let result = lookup::get_online_features(engine, request);
        let code = result.as_ref().map_or_else(|e| e.code(), |_| tonic::Code::Ok);
        self.metrics.record("GetOnlineFeatures", &service, code, started.elapsed());
        result.map(Response::new)
    }

    async fn list_feature_services(
        &self,
        _request: Request<proto::ListFeatureServicesRequest>,
    ) -> Result<Response<proto::ListFeatureServicesResponse>, Status> {
        let registry = self.engine.registry();
        let services = registry
            .plan
            .services
            .iter()
            .map(|s| {
                let selection = &registry.services[&s.name];
                proto::FeatureServiceInfo {
                    name: s.name.clone(),
                    features: selection
                        .columns
                        .iter()
                        .map(|c| proto::FeatureInfo { name: c.name.clone(), r#type: c.ty.to_string() })
                        .collect(),
                    entity_keys: selection.keys.keys().cloned().collect(),
                    key_types: selection
                        .keys
                        .iter()
                        .map(|(k, t)| proto::FeatureInfo { name: k.clone(), r#type: t.to_string() })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(proto::ListFeatureServicesResponse { services }))
    }
}

impl Serving {
    /// The metrics label of a request: a declared service, `refs`, or `unknown`.
    fn service_label(&self, request: &proto::GetOnlineFeaturesRequest) -> String {
        use proto::get_online_features_request::Selector;
        match &request.selector {
            Some(Selector::FeatureService(name)) if self.engine.registry().services.contains_key(name) => {
                name.clone()
            }
            Some(Selector::Features(_)) => "refs".into(),
            _ => "unknown".into(),
        }
    }
}

pub struct Admin {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl proto::feature_admin_server::FeatureAdmin for Admin {
    async fn ingest_parquet(
        &self,
        request: Request<proto::IngestParquetRequest>,
    ) -> Result<Response<proto::IngestReport>, Status> {
        let request = request.into_inner();
        let mode = match request.mode() {
            proto::ingest_parquet_request::Mode::Upsert => Mode::Upsert,
            proto::ingest_parquet_request::Mode::Replace => Mode::Replace,
        };
        let engine = self.engine.clone();
        // Parquet decoding and bulk writes are long, blocking work: keep them
        // off the async workers that serve lookups.
        let report = tokio::task::spawn_blocking(move || {
            parquet::ingest(&engine, &request.source, &request.paths, mode)
        })
        .await
        .map_err(|e| Status::internal(format!("the load task failed: {e}")))?
        .map_err(ingest_status)?;
        Ok(Response::new(report_to_proto(report)))
    }

    async fn get_status(
        &self,
        _request: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::GetStatusResponse>, Status> {
        let json = status_json(&self.engine, &self.metrics)
            .map_err(|e| Status::internal(format!("building status: {e}")))?;
        Ok(Response::new(proto::GetStatusResponse { json }))
    }
}

fn report_to_proto(r: IngestReport) -> proto::IngestReport {
    proto::IngestReport {
        rows_read: r.rows_read,
        rows_written: r.rows_written,
        rows_rejected: r.rows_rejected,
        sample_errors: r.sample_errors,
        duration_micros: r.duration_micros,
        rows_too_late: r.rows_too_late,
    }
}

fn ingest_status(e: IngestError) -> Status {
    match e {
        IngestError::Invalid(m) => Status::invalid_argument(m),
        IngestError::Unsupported(m) => Status::failed_precondition(m),
        IngestError::Internal(e) => {
            tracing::error!(error = format!("{e:#}"), "Load failed.");
            Status::internal(format!("the load failed inside the server: {e}"))
        }
    }
}

/// GetStatus's document. Documented in the README; keys only grow.
pub fn status_json(engine: &Engine, metrics: &Metrics) -> anyhow::Result<String> {
    let registry = engine.registry();
    let generations = engine.generations();
    let metas = engine.store.view_metas()?;
    let views: Vec<_> = registry
        .views
        .iter()
        .map(|v| {
            let meta = metas.get(&v.fingerprint);
            json!({
                "name": v.name,
                "kind": if v.aggregating { "aggregating" } else { "row" },
                "fingerprint": format!("{:016x}", v.fingerprint),
                "generation": generations.get(&v.fingerprint).copied().unwrap_or(0),
                "last_load": meta.and_then(|m| m.last_load.clone()),
            })
        })
        .collect();
    let status = engine.source_status();
    let streams = engine.streams();
    let sources: Vec<_> = registry
        .plan
        .sources
        .iter()
        .map(|s| {
            let (kind, location) = match &s.kind {
                fstore_dsl::plan::SourceKind::Parquet { path } => ("parquet", path.clone()),
                fstore_dsl::plan::SourceKind::Kafka { topic, .. } => ("kafka", topic.clone()),
            };
            let st = status.get(&s.name).cloned().unwrap_or_default();
            let stream = streams.iter().find(|t| t.source == s.name).map(|t| t.to_json());
            json!({
                "name": s.name,
                "type": kind,
                "location": location,
                "ingest_in_progress": st.in_progress,
                "last_ingest": st.last_ingest,
                "stream": stream,
            })
        })
        .collect();
    let doc = json!({
        "uptime_seconds": engine.uptime().as_secs(),
        "definitions": {
            "dir": engine.config.server.definitions_dir.display().to_string(),
            "entities": registry.plan.entities.len(),
            "sources": registry.plan.sources.len(),
            "views": registry.plan.views.len(),
            "services": registry.plan.services.len(),
        },
        "views": views,
        "sources": sources,
        "serving": metrics.summary(),
        "store": {
            "data_dir": engine.config.server.data_dir.display().to_string(),
            "estimated_keys": engine.store.property("rocksdb.estimate-num-keys"),
            "live_sst_bytes": engine.store.property("rocksdb.live-sst-files-size"),
            "memtable_bytes": engine.store.property("rocksdb.cur-size-all-mem-tables"),
        },
    });
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// Serve until `shutdown` resolves. The listener is bound by the caller so
/// that a test can ask for port 0 and learn the port.
pub async fn run(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_not_serving::<FeatureServingServer<Serving>>().await;
    health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    // First start (or changed definitions): load parquet sources whose views
    // are empty. The server answers meanwhile and reports NOT_SERVING on the
    // health service until the load is done.
    let loader = {
        let engine = engine.clone();
        let health = health.clone();
        tokio::spawn(async move {
            if engine.config.server.load_sources_on_start {
                let e = engine.clone();
                if let Err(err) = tokio::task::spawn_blocking(move || parquet::load_empty_sources(&e)).await {
                    tracing::error!(error = %err, "Initial load task failed.");
                }
            }
            health.set_serving::<FeatureServingServer<Serving>>().await;
            health.set_service_status("", tonic_health::ServingStatus::Serving).await;
            tracing::info!("Ready: serving features.");
        })
    };

    // One shutdown signal stops both the gRPC and the metrics server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let streams = crate::stream::Streams::start(&engine);

    let metrics = Arc::new(Metrics::default());
    let metrics_addr = engine.config.server.metrics_listen;
    let metrics_listener = TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics endpoint {metrics_addr}: {e}"))?;
    tracing::info!(addr = %metrics_listener.local_addr()?, "Prometheus metrics at /metrics.");
    let metrics_server =
        tokio::spawn(metrics::serve_http(engine.clone(), metrics.clone(), metrics_listener, stopped()));

    tracing::info!(%addr, "fstore listening.");
    // TCP_NODELAY: without it Nagle's algorithm holds each small response
    // until the client's next request ACKs the last one, which put lookup
    // p50 at connections / rate and the tail at the 40 ms delayed-ACK timer.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(FeatureServingServer::new(Serving { engine: engine.clone(), metrics: metrics.clone() }))
        .add_service(FeatureAdminServer::new(Admin { engine, metrics }))
        .serve_with_incoming_shutdown(incoming, stopped())
        .await;
    loader.abort();
    let _ = metrics_server.await;
    // Write what the consumers hold and leave the consumer group.
    let _ = tokio::task::spawn_blocking(move || streams.stop()).await;
    result.map_err(Into::into)
}
