//! The gRPC server: `FeatureServing`, `FeaturePush` and `FeatureAdmin` (see
//! `proto/fstore/v1/fstore.proto`), Feast's `ServingService` ([`feast`]),
//! the standard health service and server reflection; and the HTTP
//! listeners: Feast's feature server API on `server.http_listen`, metrics on
//! `server.metrics_listen`.
//!
//! Handlers report failures as [`crate::error::Error`], which becomes a gRPC
//! status in one place: what the client can act on goes in the message,
//! internal detail goes to the log.

pub mod auth;
pub(crate) mod derive;
pub(crate) mod feast;
pub(crate) mod guard;
pub(crate) mod heavy;
pub(crate) mod lookup;
pub(crate) mod metrics;
pub(crate) mod push;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::definitions::ApplyError;
use crate::engine::Engine;
use crate::error::Error;
use crate::ingest::parquet::{self, Mode};
use crate::ingest::{IngestError, IngestReport};
use fstore_client::feast::serving::serving_service_server::ServingServiceServer;

use crate::proto::{
    self, feature_admin_server::FeatureAdminServer, feature_push_server::FeaturePushServer,
    feature_serving_server::FeatureServingServer,
};
use crate::runtime::Runtime;
use auth::Caller;
use guard::{Arrival, Door, DoorLayer};
use metrics::Metrics;

pub struct Serving {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    door: Arc<Door>,
    /// Heavy lookups running at once: one per core.
    lookup_slots: Arc<tokio::sync::Semaphore>,
    /// Where heavy lookups run: one thread per slot, below the workers' priority.
    heavy: Arc<heavy::HeavyPool>,
    /// Lookups in flight per service that has `services.NAME.max_in_flight`.
    service_in_flight:
        std::sync::RwLock<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicUsize>>>,
}

/// One lookup of a service with an in-flight limit; frees its place on drop.
struct ServiceTicket(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ServiceTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tonic::async_trait]
impl proto::feature_serving_server::FeatureServing for Serving {
    async fn get_online_features(
        &self,
        request: Request<proto::GetOnlineFeaturesRequest>,
    ) -> Result<Response<proto::GetOnlineFeaturesResponse>, Status> {
        let arrival = Arrival::of(&request);
        let caller = request.extensions().get::<Arc<Caller>>().cloned();
        self.lookup("GetOnlineFeatures", arrival, caller, request.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn list_feature_services(
        &self,
        request: Request<proto::ListFeatureServicesRequest>,
    ) -> Result<Response<proto::ListFeatureServicesResponse>, Status> {
        let caller = request.extensions().get::<Arc<Caller>>().cloned();
        let registry = self.engine.registry();
        let services =
            registry
                .plan
                .services
                .iter()
                .filter(|s| caller.as_ref().is_none_or(|c| c.may_read_service(&s.name)))
                .map(|s| {
                    let selection = &registry.services[&s.name];
                    proto::FeatureServiceInfo {
                        name: s.name.clone(),
                        features: selection
                            .columns
                            .iter()
                            .map(|c| proto::FeatureInfo { name: c.name.clone(), r#type: c.ty.to_string() })
                            .chain(s.derived.iter().map(|d| proto::FeatureInfo {
                                name: d.name.clone(),
                                r#type: d.ty.to_string(),
                            }))
                            .collect(),
                        entity_keys: selection.keys.keys().cloned().collect(),
                        key_types: selection
                            .keys
                            .iter()
                            .map(|(k, t)| proto::FeatureInfo { name: k.clone(), r#type: t.to_string() })
                            .collect(),
                        request_fields: s
                            .request
                            .iter()
                            .map(|f| proto::FeatureInfo { name: f.name.clone(), r#type: f.ty.to_string() })
                            .collect(),
                    }
                })
                .collect();
        Ok(Response::new(proto::ListFeatureServicesResponse { services }))
    }
}

impl Serving {
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn door(&self) -> &Arc<Door> {
        &self.door
    }

    /// Answer a lookup that arrived at `arrival` from `caller` (None:
    /// authentication is off), by any of the APIs (`rpc` names it in the
    /// metrics): within the service's in-flight limit, in its turn, inline
    /// or on the heavy pool.
    pub(crate) async fn lookup(
        &self,
        rpc: &'static str,
        arrival: Arrival,
        caller: Option<Arc<Caller>>,
        request: proto::GetOnlineFeaturesRequest,
    ) -> Result<proto::GetOnlineFeaturesResponse, Error> {
        let registry = self.engine.registry();
        let service = service_label(&registry, &request);
        let _ticket = match self.service_ticket(&service) {
            Ok(ticket) => ticket,
            Err(e) => {
                self.metrics.record(rpc, &service, e.code().grpc(), arrival.at.elapsed());
                return Err(e);
            }
        };
        // Light lookups run inline on the async worker. Measured with `fstore
        // bench` (release, 1 row x 50 features, 1,000 hot keys, 200 req/s,
        // one connection): tokio's block_in_place gave p50 3.0 ms / p99
        // 11 ms, most of its CPU in malloc as the worker's core moved to a
        // fresh thread per call; inline gave p50 0.70 ms / p99 3.3 ms.
        //
        // Heavy ones (many rows, or windows to merge) take milliseconds:
        // inline, they would hold the workers that read new requests off the
        // connections, so a queue would form where the server cannot see it
        // (before a request is even read), and overload would go unshed.
        // They wait for one of `lookup_slots` and run on the lookup threads
        // (below the workers' priority, see `heavy`); the wait is measured
        // and bounded like any other.
        let heavy = lookup::is_heavy(&registry, &request);
        drop(registry);
        let result = if heavy {
            match self.lookup_slots.clone().acquire_owned().await {
                Ok(slot) => match self.its_turn(&arrival, &request) {
                    Ok(serving) => {
                        let engine = self.engine.clone();
                        let result = self
                            .heavy
                            .run(move || {
                                let _slot = slot;
                                lookup::get_online_features(&engine, request, caller.as_deref())
                            })
                            .await;
                        drop(serving);
                        result
                    }
                    Err(e) => Err(e),
                },
                Err(_) => Err(Error::unavailable("the server is shutting down")),
            }
        } else {
            self.its_turn(&arrival, &request)
                .and_then(|_serving| lookup::get_online_features(&self.engine, request, caller.as_deref()))
        };
        let code = result.as_ref().map_or_else(|e| e.code().grpc(), |_| tonic::Code::Ok);
        // From arrival, so that time spent waiting for a worker shows.
        self.metrics.record(rpc, &service, code, arrival.at.elapsed());
        result
    }

    /// A place among `services.NAME.max_in_flight` lookups of `service`, if
    /// that limit is set; held until the answer is built.
    fn service_ticket(&self, service: &str) -> Result<Option<ServiceTicket>, Error> {
        let Some(limit) = self.engine.config.services.get(service).and_then(|s| s.max_in_flight) else {
            return Ok(None);
        };
        let existing = self.service_in_flight.read().unwrap_or_else(|e| e.into_inner()).get(service).cloned();
        let counter = match existing {
            Some(c) => c,
            None => self
                .service_in_flight
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(service.to_string())
                .or_default()
                .clone(),
        };
        if counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= limit {
            counter.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Error::resource_exhausted(format!(
                "feature service `{service}` has {limit} lookups in flight (services.{service}.max_in_flight); retry with backoff"
            )));
        }
        Ok(Some(ServiceTicket(counter)))
    }

    /// Whether a lookup that has waited since `arrival` should still be
    /// served: not past the client's deadline, nor past the service's
    /// queueing limit (an overloaded server answers at once instead of late).
    /// If so, the guard counts it as served until dropped.
    fn its_turn(
        &self,
        arrival: &Arrival,
        request: &proto::GetOnlineFeaturesRequest,
    ) -> Result<guard::InService<'_>, Error> {
        use proto::get_online_features_request::Selector;
        let waited = arrival.at.elapsed();
        if arrival.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::deadline_exceeded(format!(
                "the client's deadline passed while the request waited {:.1} ms for its turn",
                waited.as_secs_f64() * 1e3
            )));
        }
        let service = match &request.selector {
            Some(Selector::FeatureService(name)) => Some(name.as_str()),
            _ => None,
        };
        let limit = self.engine.config.max_queue(service);
        if !limit.is_zero() && waited > limit {
            let setting = match service.filter(|s| self.engine.config.services.contains_key(*s)) {
                Some(name) => format!("services.{name}.max_queue_ms"),
                None => "server.max_queue_ms".to_string(),
            };
            return Err(Error::resource_exhausted(format!(
                "server overloaded: the request waited {:.1} ms for its turn, more than {} ms ({setting}); retry with backoff",
                waited.as_secs_f64() * 1e3,
                limit.as_millis()
            )));
        }
        Ok(self.door.serving())
    }
}

/// The metrics label of a request: a declared service, `refs`, or `unknown`.
fn service_label(registry: &crate::registry::Registry, request: &proto::GetOnlineFeaturesRequest) -> String {
    use proto::get_online_features_request::Selector;
    match &request.selector {
        Some(Selector::FeatureService(name)) if registry.services.contains_key(name) => name.clone(),
        Some(Selector::Features(_)) => "refs".into(),
        _ => "unknown".into(),
    }
}

/// Admin calls need a key with the admin scope (when keys are configured).
fn require_admin<T>(request: &Request<T>) -> Result<(), Error> {
    match request.extensions().get::<Arc<Caller>>() {
        Some(caller) if !caller.is_admin() => Err(Error::permission_denied(format!(
            "API key `{}` may not administer: ingest, apply and status need a key with admin = true",
            caller.name
        ))),
        _ => Ok(()),
    }
}

pub struct Admin {
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl proto::feature_admin_server::FeatureAdmin for Admin {
    async fn ingest_parquet(
        &self,
        request: Request<proto::IngestParquetRequest>,
    ) -> Result<Response<proto::IngestReport>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let mode = match request.mode() {
            proto::ingest_parquet_request::Mode::Upsert => Mode::Upsert,
            proto::ingest_parquet_request::Mode::Replace => Mode::Replace,
        };
        let engine = self.runtime.engine.clone();
        // Parquet decoding and bulk writes are long, blocking work: keep them
        // off the async workers that serve lookups.
        let report = tokio::task::spawn_blocking(move || {
            parquet::ingest(&engine, &request.source, &request.paths, mode)
        })
        .await
        .map_err(|e| Error::internal("running a load", e))?
        .map_err(ingest_error)?;
        Ok(Response::new(report_to_proto(report)))
    }

    async fn get_status(
        &self,
        request: Request<proto::GetStatusRequest>,
    ) -> Result<Response<proto::GetStatusResponse>, Status> {
        require_admin(&request)?;
        let json = status_json(&self.runtime, &self.metrics)
            .map_err(|e| Error::internal("building the status document", e))?;
        Ok(Response::new(proto::GetStatusResponse { json }))
    }

    async fn apply_definitions(
        &self,
        request: Request<proto::ApplyDefinitionsRequest>,
    ) -> Result<Response<proto::ApplyDefinitionsReport>, Status> {
        require_admin(&request)?;
        let request = request.into_inner();
        let files = (!request.files.is_empty()).then(|| {
            request.files.into_iter().map(|f| fstore_dsl::SourceFile { name: f.name, text: f.text }).collect()
        });
        let runtime = self.runtime.clone();
        let report = tokio::task::spawn_blocking(move || runtime.apply(files, request.dry_run))
            .await
            .map_err(|e| Error::internal("running an apply", e))?
            .map_err(|e| match e {
                ApplyError::Invalid(m) => Error::invalid_argument(m),
                ApplyError::Internal(e) => Error::internal("applying definitions", e),
            })?;
        Ok(Response::new(proto::ApplyDefinitionsReport {
            applied: report.applied,
            views: report
                .views
                .into_iter()
                .map(|v| proto::ViewChange { view: v.view, change: v.change.to_string(), data: v.data })
                .collect(),
            services: report
                .services
                .into_iter()
                .map(|s| proto::ServiceChange {
                    service: s.service,
                    change: s.change.to_string(),
                    detail: s.detail,
                })
                .collect(),
            notes: report.notes,
        }))
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

fn ingest_error(e: IngestError) -> Error {
    match e {
        IngestError::Invalid(m) => Error::invalid_argument(m),
        IngestError::Unsupported(m) => Error::failed_precondition(m),
        IngestError::Internal(e) => Error::internal("loading Parquet", e),
    }
}

/// GetStatus's document. Documented in the README; keys only grow.
pub fn status_json(runtime: &Runtime, metrics: &Metrics) -> anyhow::Result<String> {
    let engine = &runtime.engine;
    let registry = engine.registry();
    let generations = engine.generations();
    let metas = engine.catalog.metas()?;
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
    let streams = runtime.stream_stats();
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
            // View definitions with data on disk; more than the running
            // views while an apply's old data is being dropped.
            "view_definitions_stored": engine.catalog.stored_views()?,
            "live_sst_bytes": engine.store.property("rocksdb.live-sst-files-size"),
            "memtable_bytes": engine.store.property("rocksdb.cur-size-all-mem-tables"),
        },
    });
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// Serve until `shutdown` resolves. The listener is bound by the caller so
/// that a test can ask for port 0 and learn the port.
pub async fn run(
    runtime: Arc<Runtime>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let engine = runtime.engine.clone();
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
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (runtime, health, ready) = (runtime.clone(), health.clone(), ready.clone());
        tokio::spawn(async move {
            if let Err(err) = tokio::task::spawn_blocking(move || runtime.prepare()).await {
                tracing::error!(error = %err, "Getting ready failed; serving anyway.");
            }
            ready.store(true, std::sync::atomic::Ordering::Relaxed);
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

    let config = &engine.config;
    let keys = auth::Keys::from_config(&config.auth);
    if auth::open_to_the_network(addr, &keys) {
        tracing::warn!(
            %addr,
            "!!! Listening beyond loopback WITHOUT authentication: anyone who can reach {addr} can read features, load data and replace definitions. Configure [[auth.keys]] (see the README) or listen on 127.0.0.1. !!!"
        );
    }
    // Heavy lookups run one per core; fewer lookups than that in flight
    // means no queue.
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get());
    let door = Door::new(keys, config.server.max_in_flight, config.max_queue(None), at_once);
    if door.auth_enabled() {
        tracing::info!(keys = config.auth.keys.len(), "API keys required.");
    }
    let metrics = Arc::new(Metrics::default());
    metrics.watch_door(door.clone());
    let metrics_addr = config.server.metrics_listen;
    let metrics_listener = TcpListener::bind(metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics endpoint {metrics_addr}: {e}"))?;
    tracing::info!(addr = %metrics_listener.local_addr()?, "Prometheus metrics at /metrics.");
    let metrics_server =
        tokio::spawn(metrics::serve_http(runtime.clone(), metrics.clone(), metrics_listener, stopped()));

    let reload = tokio::spawn(runtime.clone().reload_on_sighup());

    let serving = Arc::new(Serving {
        engine: engine.clone(),
        metrics: metrics.clone(),
        door: door.clone(),
        lookup_slots: Arc::new(tokio::sync::Semaphore::new(at_once)),
        heavy: heavy::HeavyPool::new(at_once)?,
        service_in_flight: Default::default(),
    });
    let feast_http = match config.http_listen()? {
        None => None,
        Some(http_addr) => {
            let listener = TcpListener::bind(http_addr).await.map_err(|e| {
                anyhow::anyhow!("binding the HTTP endpoint {http_addr} (server.http_listen): {e}")
            })?;
            tracing::info!(addr = %listener.local_addr()?, "Feast HTTP feature server API.");
            let state = Arc::new(feast::http::FeastHttp {
                serving: serving.clone(),
                ready: ready.clone(),
                max_body_bytes: config.server.max_request_bytes,
            });
            Some(tokio::spawn(feast::http::serve(state, listener, stopped())))
        }
    };

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config.tls)? {
        builder = builder.tls_config(tls).map_err(|e| anyhow::anyhow!("configuring TLS: {e}"))?;
        tracing::info!(client_certificates = config.tls.client_ca.is_some(), "TLS on.");
    }
    let max_bytes = config.server.max_request_bytes;
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    tracing::info!(%addr, "fstore listening.");
    // TCP_NODELAY: without it Nagle's algorithm holds each small response
    // until the client's next request ACKs the last one, which put lookup
    // p50 at connections / rate and the tail at the 40 ms delayed-ACK timer.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = builder
        .layer(DoorLayer(door.clone()))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(FeatureServingServer::from_arc(serving.clone()).max_decoding_message_size(max_bytes))
        .add_service(
            ServingServiceServer::new(feast::grpc::FeastServing { serving: serving.clone() })
                .max_decoding_message_size(max_bytes),
        )
        .add_service(
            FeaturePushServer::new(push::Pushing { engine: engine.clone(), metrics: metrics.clone() })
                .max_decoding_message_size(max_bytes),
        )
        .add_service(
            FeatureAdminServer::new(Admin { runtime: runtime.clone(), metrics })
                .max_decoding_message_size(max_bytes),
        )
        .serve_with_incoming_shutdown(incoming, stopped());
    // Requests in flight at shutdown get `shutdown_grace_ms` to finish.
    let overdue = async {
        stopped().await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = server => result,
        () = overdue => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "Requests still in flight after the shutdown grace period; stopping anyway.");
            Ok(())
        }
    };
    loader.abort();
    reload.abort();
    let _ = metrics_server.await;
    if let Some(http) = feast_http {
        let _ = http.await;
    }
    // Write what the consumers hold and leave the consumer group.
    let _ = tokio::task::spawn_blocking(move || runtime.stop()).await;
    result.map_err(Into::into)
}

/// The listener's TLS settings from PEM files, if `tls.cert` is set.
fn tls_config(tls: &crate::config::TlsConfig) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else { return Ok(None) };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading the TLS {what} {}: {e}", path.display()))
    };
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(cert, "certificate")?, read(key, "key")?));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(Some(config))
}
