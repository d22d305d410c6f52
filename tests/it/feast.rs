//! Feast's serving APIs on the real server: the HTTP feature server API
//! (`server.http_listen`) and gRPC `feast.serving.ServingService` answer
//! what `fstore.v1` answers, shaped as Feast shapes it (names, join keys
//! first, statuses, event times, value forms); Feast's push endpoints write
//! events that are then served; hostile HTTP input gets Feast-shaped errors,
//! writes nothing and leaves the server up. The real `feast` package runs
//! against the same APIs in clients/python/tests/test_feast.py.

use fstore::client::feast::serving::{self as fs, serving_service_client::ServingServiceClient};
use fstore::client::feast::types::{self as ft, value::Val};
use fstore::proto::{self, feature_push_client::FeaturePushClient, value::Kind, FieldStatus};
use serde_json::{json, Value as Json};

use crate::util::*;

// No broker: only pushes feed the source.
const DEFS: &str = r#"
entity user { key user_id: int64 }

source events {
  type = kafka
  topic = "events"
  format = json
  timestamp = ts
}

view profile {
  entity = user
  source = events
  keys { user_id = uid }
  ttl = 1h
  features {
    country: string = country
    score: float64 = score
    weight: float32 = weight
    age: int64 = age
    emb: array<float32> = emb
  }
}

view activity {
  entity = user
  source = events
  keys { user_id = uid }
  features {
    clicks_1h: int64 = count() over 1h
  }
}

view tagged {
  entity = user
  source = events
  keys { user_id = uid }
  features {
    country: string = lower(country)
  }
}

service ranker { features = [profile.*, activity.clicks_1h] }
"#;

/// Users 1 and 2 now (2 without a country), user 3 two hours ago (past
/// the profile's ttl); user 99 has nothing.
fn seed(server: &Server, now_ms: i64) {
    let events = vec![
        format!(
            r#"{{"uid": 1, "ts": {now_ms}, "country": "NL", "score": 0.25, "weight": 0.1, "age": 41, "emb": [0.5, 1.5]}}"#
        ),
        format!(r#"{{"uid": 2, "ts": {now_ms}, "score": 2.0, "weight": 1.0, "age": 7, "emb": []}}"#),
        format!(
            r#"{{"uid": 3, "ts": {}, "country": "DE", "score": 1.0, "weight": 1.0, "age": 3, "emb": [1.0]}}"#,
            now_ms - 7_200_000
        ),
    ];
    let rt = rt();
    let report = rt.block_on(async {
        let mut client = FeaturePushClient::new(server.channel().await.unwrap());
        client
            .push_events(proto::PushEventsRequest {
                source: "events".into(),
                events: Some(proto::push_events_request::Events::Json(proto::JsonEvents { events })),
            })
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(report.events_written, 3, "{report:?}");
}

fn post(server: &Server, path: &str, body: &Json) -> (u16, Json) {
    let (status, text) = http(
        server.http_port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

/// The `{"module","class","message"}` a Feast error body (a JSON string) holds.
fn feast_error(body: &Json) -> Json {
    let text = body.as_str().unwrap_or_else(|| panic!("not a Feast error body: {body}"));
    let detail: Json = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON inside: {text}"));
    assert_eq!(detail["module"], "feast.errors", "{detail}");
    detail
}

fn grpc_answer(server: &Server) -> proto::GetOnlineFeaturesResponse {
    let rt = rt();
    rt.block_on(async {
        let mut client =
            proto::feature_serving_client::FeatureServingClient::new(server.channel().await.unwrap());
        let request = request_service("ranker", vec![("user_id", vec![int(1), int(2), int(3), int(99)])]);
        client.get_online_features(request).await.unwrap().into_inner()
    })
}

#[test]
fn the_http_api_answers_what_grpc_answers_shaped_as_feast_shapes_it() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    let now_ms = fstore::now_micros() / 1000;
    seed(&server, now_ms);
    let fstore_answer = grpc_answer(&server);

    let (status, doc) = post(
        &server,
        "/get-online-features",
        &json!({"entities": {"user_id": [1, 2, 3, 99]}, "feature_service": "ranker"}),
    );
    assert_eq!(status, 200, "{doc}");
    let names: Vec<&str> =
        doc["metadata"]["feature_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(names, ["user_id", "country", "score", "weight", "age", "emb", "clicks_1h"]);
    let results = doc["results"].as_array().unwrap();
    // The join key first, echoed: PRESENT, at the epoch.
    assert_eq!(results[0]["values"], json!([1, 2, 3, 99]));
    assert_eq!(results[0]["statuses"], json!(vec!["PRESENT"; 4]));
    assert_eq!(results[0]["event_timestamps"], json!(vec!["1970-01-01T00:00:00Z"; 4]));
    // Then every feature as fstore's gRPC API has it.
    for (result, name) in results[1..].iter().zip(&names[1..]) {
        let view = if *name == "clicks_1h" { "activity" } else { "profile" };
        let c = column(&fstore_answer, &format!("{view}.{name}"));
        let statuses: Vec<&str> = c
            .statuses
            .iter()
            .map(|s| match FieldStatus::try_from(*s).unwrap() {
                FieldStatus::Present => "PRESENT",
                FieldStatus::NullValue => "NULL_VALUE",
                FieldStatus::NotFound => "NOT_FOUND",
                FieldStatus::OutsideMaxAge => "OUTSIDE_MAX_AGE",
                _ => "INVALID",
            })
            .collect();
        assert_eq!(result["statuses"], json!(statuses), "{name}");
        let times: Vec<String> = c.event_timestamps_micros.iter().map(|t| fstore_time(*t)).collect();
        assert_eq!(result["event_timestamps"], json!(times), "{name}");
        let values: Vec<Json> = c.values.iter().map(json_of).collect();
        assert_eq!(result["values"], json!(values), "{name}");
    }
    // The cases the comparison covers, spelt out.
    let col = |name: &str| &results[names.iter().position(|n| *n == name).unwrap()];
    assert_eq!(col("country")["values"], json!(["NL", null, null, null]));
    assert_eq!(col("country")["statuses"], json!(["PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]));
    assert_eq!(col("weight")["values"][0], json!(0.10000000149011612), "float32 widened as Feast widens it");
    assert_eq!(col("emb")["values"][0], json!([0.5, 1.5]));
    assert_eq!(col("age")["values"][0], json!(41));
    let at = col("age")["event_timestamps"][0].as_str().unwrap().to_string();
    assert!(at.ends_with('Z') && at.starts_with("20"), "{at}");

    // By references, with full names: grouped by view, `view__feature`.
    let (status, doc) = post(
        &server,
        "/get-online-features",
        &json!({"entities": {"user_id": [1]}, "features": ["activity:clicks_1h", "profile:age"], "full_feature_names": true}),
    );
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["metadata"]["feature_names"], json!(["user_id", "activity__clicks_1h", "profile__age"]));
    assert_eq!(doc["results"][1]["values"], json!([1]));
    assert_eq!(doc["results"][2]["values"], json!([41]));
    // The request shape of Feast SDKs before 0.64: one view, one join key,
    // no full_feature_names; a column that is not a join key is skipped.
    let (status, doc) = post(
        &server,
        "/get-online-features",
        &json!({"features": ["profile:country"], "entities": {"user_id": [3, 1], "driver_note": ["x", "y"]}}),
    );
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["metadata"]["feature_names"], json!(["user_id", "country"]));
    assert_eq!(doc["results"][1]["statuses"], json!(["OUTSIDE_MAX_AGE", "PRESENT"]));
    // Two views with one feature name need full names.
    let (status, doc) = post(
        &server,
        "/get-online-features",
        &json!({"features": ["profile:country", "tagged:country"], "entities": {"user_id": [1]}}),
    );
    assert_eq!(status, 400, "{doc}");
    assert!(feast_error(&doc)["message"].as_str().unwrap().contains("full_feature_names"), "{doc}");
    let (h, _) = http(server.http_port, "GET", "/health", &[], b"");
    assert_eq!(h, 200);
}

/// A value as Feast's HTTP server writes it, from fstore's own form: the
/// independent half of the comparison above.
fn json_of(v: &proto::Value) -> Json {
    match &v.kind {
        None => Json::Null,
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::Float64Value(f)) => json!(f),
        Some(Kind::Float32Value(f)) => json!(*f as f64),
        Some(Kind::Int64Value(i)) => json!(i),
        Some(Kind::Float32List(l)) => json!(l.values.iter().map(|f| *f as f64).collect::<Vec<_>>()),
        other => panic!("not in this test: {other:?}"),
    }
}

fn fstore_time(micros: i64) -> String {
    if micros == 0 {
        return "1970-01-01T00:00:00Z".into();
    }
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap();
    let ms = micros.rem_euclid(1_000_000);
    if ms == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else if ms % 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

#[test]
fn feast_grpc_serving_service_answers_every_column_with_values_statuses_and_times() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    let now_ms = fstore::now_micros() / 1000;
    seed(&server, now_ms);
    let fstore_answer = grpc_answer(&server);
    let rt = rt();
    let (info, answer) = rt.block_on(async {
        let mut client = ServingServiceClient::new(server.channel().await.unwrap());
        let info =
            client.get_feast_serving_info(fs::GetFeastServingInfoRequest {}).await.unwrap().into_inner();
        let keys = ft::RepeatedValue {
            val: [1, 2, 3, 99].into_iter().map(|i| ft::Value { val: Some(Val::Int64Val(i)) }).collect(),
        };
        let request = fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::FeatureService("ranker".into())),
            entities: [("user_id".to_string(), keys)].into(),
            ..Default::default()
        };
        (info, client.get_online_features(request).await.unwrap().into_inner())
    });
    assert!(info.version.starts_with("fstore "), "{info:?}");
    let names = answer.metadata.unwrap().feature_names.unwrap().val;
    assert_eq!(names, ["user_id", "country", "score", "weight", "age", "emb", "clicks_1h"]);
    for (result, name) in answer.results.iter().zip(&names) {
        assert_eq!(result.values.len(), 4, "{name}");
        assert_eq!(result.event_timestamps.len(), 4, "{name}: every column has its times");
    }
    assert_eq!(answer.results[0].values[3].val, Some(Val::Int64Val(99)));
    assert_eq!(answer.results[0].statuses, vec![fs::FieldStatus::Present as i32; 4]);
    for (result, name) in answer.results[1..].iter().zip(&names[1..]) {
        let view = if name == "clicks_1h" { "activity" } else { "profile" };
        let c = column(&fstore_answer, &format!("{view}.{name}"));
        assert_eq!(result.statuses, c.statuses, "{name}: fstore and Feast number statuses alike");
        let micros: Vec<i64> =
            result.event_timestamps.iter().map(|t| t.seconds * 1_000_000 + t.nanos as i64 / 1000).collect();
        assert_eq!(micros, c.event_timestamps_micros, "{name}");
    }
    let country = &answer.results[1];
    assert_eq!(country.values[0].val, Some(Val::StringVal("NL".into())));
    assert_eq!(country.values[1].val, None, "null");
    assert_eq!(answer.results[3].values[0].val, Some(Val::FloatVal(0.1)));
    assert_eq!(answer.results[4].values[0].val, Some(Val::Int64Val(41)));
    assert_eq!(
        answer.results[5].values[0].val,
        Some(Val::FloatListVal(ft::FloatList { val: vec![0.5, 1.5] }))
    );

    // Unknown service: NOT_FOUND; a key of the wrong kind: INVALID_ARGUMENT naming it.
    let (unknown, wrong) = rt.block_on(async {
        let mut client = ServingServiceClient::new(server.channel().await.unwrap());
        let mut request = fs::GetOnlineFeaturesRequest {
            kind: Some(fs::get_online_features_request::Kind::FeatureService("nope".into())),
            entities: [(
                "user_id".to_string(),
                ft::RepeatedValue { val: vec![ft::Value { val: Some(Val::Int64Val(1)) }] },
            )]
            .into(),
            ..Default::default()
        };
        let unknown = client.get_online_features(request.clone()).await.unwrap_err();
        request.kind = Some(fs::get_online_features_request::Kind::FeatureService("ranker".into()));
        request.entities.insert(
            "user_id".into(),
            ft::RepeatedValue { val: vec![ft::Value { val: Some(Val::StringVal("1".into())) }] },
        );
        (unknown, client.get_online_features(request).await.unwrap_err())
    });
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("nope") && unknown.message().contains("ranker"), "{unknown:?}");
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    assert_eq!(wrong.message(), "join key `user_id` value 0 is string_val; `user_id` is int64");
}

#[test]
fn feast_push_endpoints_write_events_that_are_then_served() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    let now = chrono::Utc::now();
    // Feast's SDK and users write event times without a zone (UTC).
    let naive = now.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let (status, body) = post(
        &server,
        "/push",
        &json!({"push_source_name": "events", "df": {"uid": [5, 6], "ts": [naive, naive], "country": ["FR", "IT"], "age": [50, 60]}, "to": "online"}),
    );
    assert_eq!((status, body.clone()), (200, Json::String(String::new())), "{body}");
    // Feast's remote online store writes a view's features with `event_timestamp`.
    let spaced = now.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string();
    let (status, body) = post(
        &server,
        "/write-to-online-store",
        &json!({"feature_view_name": "profile", "df": {"user_id": [7], "country": ["ES"], "score": [9.5], "event_timestamp": [spaced], "created": [null]}}),
    );
    assert_eq!((status, &body), (200, &Json::Null), "{body}");
    let (_, doc) = post(
        &server,
        "/get-online-features",
        &json!({"entities": {"user_id": [5, 6, 7]}, "features": ["profile:country", "profile:score", "activity:clicks_1h"]}),
    );
    assert_eq!(doc["results"][1]["values"], json!(["FR", "IT", "ES"]), "{doc}");
    assert_eq!(doc["results"][2]["values"], json!([null, null, 9.5]));
    assert_eq!(doc["results"][3]["values"], json!([1, 1, 1]), "every view of the source saw each event");

    // What does not map is refused, with the reason, and writes nothing.
    let (status, body) = post(
        &server,
        "/push",
        &json!({"push_source_name": "events", "df": {"uid": [8], "ts": [naive]}, "to": "offline"}),
    );
    assert_eq!(status, 400);
    assert!(feast_error(&body)["message"].as_str().unwrap().contains("online store"), "{body}");
    let (status, body) = post(&server, "/push", &json!({"push_source_name": "nope", "df": {"uid": [8]}}));
    assert_eq!(status, 422);
    assert_eq!(feast_error(&body)["class"], "PushSourceNotFoundException");
    let (status, body) = post(
        &server,
        "/write-to-online-store",
        &json!({"feature_view_name": "tagged", "df": {"user_id": [8], "country": ["x"], "event_timestamp": [naive]}}),
    );
    assert_eq!(status, 400);
    assert!(feast_error(&body)["message"].as_str().unwrap().contains("computed"), "{body}");
    // One bad row: nothing of the batch is written.
    let (status, body) = post(
        &server,
        "/push",
        &json!({"push_source_name": "events", "df": {"uid": [8, 9], "ts": [naive, "not a time"], "country": ["PT", "PT"]}}),
    );
    assert_eq!(status, 400, "{body}");
    let message = feast_error(&body)["message"].as_str().unwrap().to_string();
    assert!(message.contains("none was written") && message.contains("event 1"), "{message}");
    let (_, doc) = post(
        &server,
        "/get-online-features",
        &json!({"entities": {"user_id": [8, 9]}, "features": ["profile:country"]}),
    );
    assert_eq!(doc["results"][1]["statuses"], json!(["NOT_FOUND", "NOT_FOUND"]));
}

#[test]
fn hostile_http_input_gets_feast_shaped_errors_and_the_server_keeps_serving() {
    let key = "fsk_feast_reader_0123456789";
    let keys = format!(
        "[{{ name = \"model\", sha256 = {:?}, services = [\"ranker\"] }}]",
        fstore::serve::auth::digest_hex(key)
    );
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)])
        .env("FSTORE_AUTH__KEYS", &keys)
        .env("FSTORE_SERVER__MAX_REQUEST_BYTES", "65536")
        .start();
    let bearer = format!("Bearer {key}");
    let auth = [("Authorization", bearer.as_str())];
    let send = |path: &str, body: &[u8]| {
        let (status, text) = http(server.http_port, "POST", path, &auth, body);
        (status, serde_json::from_str::<Json>(&text).unwrap_or(Json::String(text)))
    };
    let good = json!({"entities": {"user_id": [1]}, "feature_service": "ranker"}).to_string();
    let (status, _) = send("/get-online-features", good.as_bytes());
    assert_eq!(status, 200, "no Content-Type needed");

    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        ("/get-online-features", b"{\"entities\": {".to_vec(), 400, "FeastError", "not a valid request"),
        ("/get-online-features", b"[1, 2]".to_vec(), 400, "FeastError", "not a valid request"),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": "1"}, "feature_service": "ranker"}"#.to_vec(),
            400,
            "FeastError",
            "not a valid request",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": ["1"]}, "feature_service": "ranker"}"#.to_vec(),
            400,
            "FeastError",
            "join key `user_id` value 0 is a string",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": [1, 2], "x": [1]}, "feature_service": "ranker"}"#.to_vec(),
            400,
            "FeastError",
            "differ in length",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"uid": [1]}, "feature_service": "ranker"}"#.to_vec(),
            400,
            "FeastError",
            "missing join key `user_id`",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": [1]}, "feature_service": "nope"}"#.to_vec(),
            404,
            "FeatureServiceNotFoundException",
            "Feature service nope does not exist",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": [1]}, "features": ["nope:x"]}"#.to_vec(),
            404,
            "FeatureViewNotFoundException",
            "Feature view nope does not exist",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": [1]}, "features": ["profile.age"]}"#.to_vec(),
            400,
            "FeastError",
            "feature_view:feature",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": [1]}, "features": ["profile:nope"]}"#.to_vec(),
            400,
            "FeastError",
            "unknown feature `nope`",
        ),
        (
            "/get-online-features",
            br#"{"entities": {"user_id": [1]}}"#.to_vec(),
            400,
            "FeastError",
            "names no features",
        ),
        ("/get-online-features", vec![b' '; 100_000], 400, "FeastError", "larger than 65536 bytes"),
        (
            "/push",
            br#"{"push_source_name": "events", "df": {"uid": [1]}, "to": "sideways"}"#.to_vec(),
            400,
            "FeastError",
            "not a supported push format",
        ),
        ("/nowhere", b"{}".to_vec(), 404, "FeastError", "no such endpoint"),
    ];
    for (path, body, want_status, want_class, want_message) in cases {
        let (status, reply) = send(path, &body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        assert_eq!(status, want_status, "{shown}: {reply}");
        let detail = feast_error(&reply);
        assert_eq!(detail["class"], want_class, "{shown}: {detail}");
        assert!(detail["message"].as_str().unwrap().contains(want_message), "{shown}: {detail}");
    }
    // Keys: none, unknown, and one without the push scope.
    let (status, reply) = http(server.http_port, "POST", "/get-online-features", &[], good.as_bytes());
    assert_eq!(status, 401);
    assert_eq!(feast_error(&serde_json::from_str(&reply).unwrap())["class"], "FeastPermissionError");
    let (status, _) = http(
        server.http_port,
        "POST",
        "/get-online-features",
        &[("Authorization", "Bearer fsk_wrong")],
        good.as_bytes(),
    );
    assert_eq!(status, 401);
    let push = json!({"push_source_name": "events", "df": {"uid": [1], "ts": ["2026-12-01T00:00:00Z"], "country": ["XX"]}});
    let (status, reply) = send("/push", push.to_string().as_bytes());
    assert_eq!(status, 403, "{reply}");
    assert!(feast_error(&reply)["message"].as_str().unwrap().contains("may not push"), "{reply}");

    // Nothing was written, and the server serves on both ports.
    let (status, doc) = send("/get-online-features", good.as_bytes());
    assert_eq!(status, 200);
    assert_eq!(doc["results"][1]["statuses"], json!(["NOT_FOUND"]), "{doc}");
    let rt = rt();
    let answer = rt.block_on(async {
        let mut client =
            proto::feature_serving_client::FeatureServingClient::new(server.channel().await.unwrap());
        let request = with_key(request_service("ranker", vec![("user_id", vec![int(1)])]), key);
        client.get_online_features(request).await
    });
    assert!(answer.is_ok(), "{answer:?}");
}
