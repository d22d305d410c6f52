//! The command line as a newcomer meets it: `check` on good and bad
//! definitions, and `serve` on the repository's example definitions with
//! their sample data, queried with `get`.

use std::process::Command;

use crate::util::*;

fn repo_defs() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("feature_defs")
}

#[test]
fn check_accepts_the_examples() {
    let out = Command::new(bin()).arg("check").arg(repo_defs()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: 4 file(s), 3 entities, 4 sources, 4 views"), "{}", stdout(&out));
}

#[test]
fn check_reports_every_error_with_location_caret_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.fdl"),
        "entity user {\n  key user_id: int64\n}\n\nview profile {\n  entity = usr\n  source = nowhere\n  features {\n    x: int64 = 1\n  }\n}\n",
    )
    .unwrap();
    let out = Command::new(bin()).arg("check").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let file = dir.path().join("bad.fdl").display().to_string();
    assert!(err.contains(&format!("{file}:6:12: error[")), "{err}");
    assert!(err.contains(&format!("{file}:7:12: error[")), "{err}");
    assert!(err.contains("^^^"), "{err}");
    assert!(err.contains("user"), "a hint names the nearest entity: {err}");
}

#[test]
fn serve_on_the_examples_loads_sample_data_and_get_prints_a_table() {
    let started = std::time::Instant::now();
    let server = ServerBuilder::with_defs_dir(&repo_defs()).start();
    let log = server.log_text();
    assert!(!log.contains("held the old snapshot"), "a first load waited on a reader: {log}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "first start took {:?}",
        started.elapsed()
    );
    let out = server.cli(&["get", "--service", "ranker_v1", "--key", "user_id=42,43,999999"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("user_profile.country"), "{table}");
    assert!(table.contains("PRESENT"), "{table}");
    assert!(table.contains("NOT_FOUND"), "{table}");
    assert!(table.contains("2026-11-20T00:00:00Z"), "the newer daily snapshot wins: {table}");

    let out = server.cli(&[
        "get",
        "--service",
        "item_ranker_v2",
        "--key",
        "user_id=1",
        "--key",
        "item_id=sku-0001",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = doc.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names[0], "user_profile.country");
    assert!(names.contains(&"item_features.embedding"));
    let embedding = doc.as_array().unwrap().iter().find(|c| c["name"] == "item_features.embedding").unwrap();
    assert_eq!(embedding["statuses"][0], "PRESENT");
    assert_eq!(embedding["values"][0].as_array().unwrap().len(), 16);

    // Per-service latency and counts, in Prometheus text format.
    let metrics = server.metrics_text();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains(
            "fstore_requests_total{rpc=\"GetOnlineFeatures\",service=\"item_ranker_v2\",code=\"OK\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("fstore_request_duration_seconds{rpc=\"GetOnlineFeatures\",service=\"ranker_v1\",quantile=\"0.99\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("fstore_rocksdb{property=\"estimated_keys\"}"), "{metrics}");
}

#[test]
fn server_reflection_lists_every_service_for_grpcurl() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let server = ServerBuilder::new(&[(
        "defs.fdl",
        "entity e {\n  key id: int64\n}\nsource s {\n  type = parquet\n  path = \"x/*.parquet\"\n  timestamp = ts\n}\nview v {\n  entity = e\n  source = s\n  features {\n    f: int64 = f\n  }\n}\n",
    )])
    .start();
    let names = rt().block_on(async {
        let channel = tonic::transport::Channel::from_shared(server.addr()).unwrap().connect().await.unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies =
            client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
        let reply = replies.message().await.unwrap().unwrap();
        match reply.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection reply {other:?}"),
        }
    });
    for expected in ["fstore.v1.FeatureServing", "fstore.v1.FeatureAdmin", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let mut server = ServerBuilder::with_defs_dir(&repo_defs()).start();
    // A request in flight when the signal arrives is still answered.
    let rt = rt();
    let mut serving = rt.block_on(server.serving());
    let keys = (1..=1000).map(int).collect();
    let call = rt.spawn(async move {
        serving.get_online_features(request_service("ranker_v1", vec![("user_id", keys)])).await
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let status = server.terminate(std::time::Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.log_text());
    assert!(server.log_text().contains("Stopped."), "{}", server.log_text());
    let answer = rt.block_on(call).expect("the call finished");
    let response = answer.expect("the request in flight was answered");
    assert_eq!(response.into_inner().features[0].values.len(), 1000);
}
