//! Pushed events through the real server: `FeaturePush.PushEvents` as JSON
//! and as typed columns into a row view and an aggregating view of one
//! source, servable as soon as the call returns, still there after kill -9;
//! windows against an independent computation; bad events reported by index
//! with the rest applied; requests refused whole; and who may push.

use std::collections::HashMap;

use fstore::proto::{self, feature_push_client::FeaturePushClient, value::Kind, FieldStatus};
use tonic::Code;

use crate::util::*;

// The source is a Kafka topic, but no broker is configured: only pushes feed it.
const DEFS: &str = r#"
entity user { key user_id: int64 }

source clicks {
  type = kafka
  topic = "clicks"
  format = json
  timestamp = ts
}

view last_click {
  entity = user
  source = clicks
  keys { user_id = uid }
  features {
    item: string = item
    price: float64 = price
  }
}

view activity {
  entity = user
  source = clicks
  keys { user_id = uid }
  features {
    clicks_10m: int64 = count() over 10m
    spend_10m: float64 = sum(price) over 10m
    clicks_all: int64 = count()
  }
}

service both { features = [last_click.*, activity.*] }
"#;

const MINUTE_MS: i64 = 60_000;

#[derive(Clone, Debug)]
struct Click {
    uid: i64,
    ts_ms: i64,
    price: f64,
    item: String,
}

fn clicks(users: std::ops::Range<i64>, now_ms: i64) -> Vec<Click> {
    let mut out = Vec::new();
    for uid in users {
        for k in 0..(uid % 4 + 1) {
            // Some within ten minutes, some older (outside the window, inside `count()`).
            let age_min = (uid * 7 + k * 5) % 25;
            out.push(Click {
                uid,
                ts_ms: now_ms - age_min * MINUTE_MS - k,
                price: (uid * 10 + k) as f64 / 4.0,
                item: format!("item-{uid}-{k}"),
            });
        }
    }
    out
}

fn json(c: &Click) -> String {
    format!(r#"{{"uid": {}, "ts": {}, "price": {}, "item": "{}"}}"#, c.uid, c.ts_ms, c.price, c.item)
}

fn columns(cs: &[Click]) -> proto::push_events_request::Events {
    let col = |f: &dyn Fn(&Click) -> Kind| proto::Values {
        values: cs.iter().map(|c| proto::Value { kind: Some(f(c)) }).collect(),
    };
    let columns: HashMap<String, proto::Values> = [
        ("uid", col(&|c| Kind::Int64Value(c.uid))),
        ("ts", col(&|c| Kind::TimestampMicros(c.ts_ms * 1000))),
        ("price", col(&|c| Kind::Float64Value(c.price))),
        ("item", col(&|c| Kind::StringValue(c.item.clone()))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    proto::push_events_request::Events::Columns(proto::EventColumns { columns })
}

fn json_events(events: Vec<String>) -> proto::push_events_request::Events {
    proto::push_events_request::Events::Json(proto::JsonEvents { events })
}

async fn pusher(server: &Server) -> FeaturePushClient<tonic::transport::Channel> {
    FeaturePushClient::new(server.channel().await.unwrap())
}

fn push_request(events: proto::push_events_request::Events) -> proto::PushEventsRequest {
    proto::PushEventsRequest { source: "clicks".into(), events: Some(events) }
}

/// What the service should answer for `uid`, computed from the clicks.
fn expected(cs: &[Click], uid: i64, now_ms: i64) -> (String, f64, i64, f64, i64) {
    let mine: Vec<&Click> = cs.iter().filter(|c| c.uid == uid).collect();
    let last = mine.iter().max_by_key(|c| c.ts_ms).unwrap();
    // 10m window at 1-minute tiles: the tiles of the last ten minutes, this one included.
    let tile = |t: i64| t.div_euclid(MINUTE_MS);
    let within: Vec<&&Click> = mine.iter().filter(|c| tile(c.ts_ms) > tile(now_ms) - 10).collect();
    (
        last.item.clone(),
        last.price,
        within.len() as i64,
        within.iter().map(|c| c.price).sum(),
        mine.len() as i64,
    )
}

fn check_served(response: &proto::GetOnlineFeaturesResponse, cs: &[Click], uids: &[i64], now_ms: i64) {
    for (row, &uid) in uids.iter().enumerate() {
        let (item, price, n10, spend10, n) = expected(cs, uid, now_ms);
        let value = |name: &str| column(response, name).values[row].kind.clone();
        assert_eq!(value("last_click.item"), Some(Kind::StringValue(item)), "user {uid}");
        assert_eq!(value("last_click.price"), Some(Kind::Float64Value(price)), "user {uid}");
        assert_eq!(value("activity.clicks_10m"), Some(Kind::Int64Value(n10)), "user {uid}");
        match value("activity.spend_10m") {
            Some(Kind::Float64Value(x)) => {
                assert!((x - spend10).abs() < 1e-9, "user {uid}: {x} vs {spend10}")
            }
            None => assert_eq!(n10, 0, "user {uid}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(value("activity.clicks_all"), Some(Kind::Int64Value(n)), "user {uid}");
    }
}

fn lookup(uids: &[i64], at_ms: i64) -> proto::GetOnlineFeaturesRequest {
    let mut r = request_service("both", vec![("user_id", uids.iter().map(|u| int(*u)).collect())]);
    r.request_time_micros = at_ms * 1000;
    r
}

#[test]
fn pushed_events_are_servable_on_return_and_survive_kill_9() {
    let mut server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    let rt = rt();
    let now_ms = fstore::now_micros() / 1000;
    // Half the users as JSON messages, half as typed columns: one path.
    let by_json = clicks(1..40, now_ms);
    let by_columns = clicks(40..80, now_ms);
    let mut client = rt.block_on(pusher(&server));
    let r = rt
        .block_on(client.push_events(push_request(json_events(by_json.iter().map(json).collect()))))
        .expect("push json")
        .into_inner();
    assert_eq!((r.events_received, r.events_written), (by_json.len() as u64, by_json.len() as u64));
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let r = rt
        .block_on(client.push_events(push_request(columns(&by_columns))))
        .expect("push columns")
        .into_inner();
    assert_eq!(r.events_written, by_columns.len() as u64);
    assert!(r.unread_fields.is_empty());

    // Servable when acknowledged: no wait, no retry.
    let all: Vec<Click> = by_json.iter().chain(&by_columns).cloned().collect();
    let uids: Vec<i64> = (1..80).collect();
    let mut serving = rt.block_on(server.serving());
    let response = rt.block_on(serving.get_online_features(lookup(&uids, now_ms))).unwrap().into_inner();
    check_served(&response, &all, &uids, now_ms);

    // Acknowledged means synced: a kill -9 loses nothing.
    server.kill();
    server.restart();
    let mut serving = rt.block_on(server.serving());
    let response = rt.block_on(serving.get_online_features(lookup(&uids, now_ms))).unwrap().into_inner();
    check_served(&response, &all, &uids, now_ms);

    // Pushing again adds to the windows; the row view keeps the newest event.
    let later = Click { uid: 3, ts_ms: now_ms + 1, price: 99.5, item: "late-buy".into() };
    let mut client = rt.block_on(pusher(&server));
    rt.block_on(client.push_events(push_request(json_events(vec![json(&later)])))).unwrap();
    let mut with_later = all.clone();
    with_later.push(later);
    let response = rt.block_on(serving.get_online_features(lookup(&[3], now_ms + 1))).unwrap().into_inner();
    check_served(&response, &with_later, &[3], now_ms + 1);
}

#[test]
fn bad_events_are_reported_by_index_and_the_rest_applied() {
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).start();
    let rt = rt();
    let now_ms = fstore::now_micros() / 1000;
    let mut client = rt.block_on(pusher(&server));
    let events = vec![
        format!(r#"{{"uid": 1, "ts": {now_ms}, "price": 2.5, "item": "a"}}"#),
        "not json at all".to_string(),
        format!(r#"{{"ts": {now_ms}, "price": 1.0, "item": "no key"}}"#),
        format!(r#"{{"uid": 2, "ts": {now_ms}, "price": "cheap", "item": "b"}}"#),
        r#"{"uid": 3, "price": 1.0, "item": "no time"}"#.to_string(),
        format!(r#"{{"uid": 4, "ts": {now_ms}, "price": 4.0, "item": "d"}}"#),
    ];
    let r = rt.block_on(client.push_events(push_request(json_events(events)))).expect("push").into_inner();
    assert_eq!((r.events_received, r.events_written), (6, 2));
    let rejected: Vec<(u64, &str)> = r.rejected.iter().map(|e| (e.index, e.reason.as_str())).collect();
    assert_eq!(rejected.len(), 4, "{rejected:?}");
    assert_eq!(rejected[0].0, 1);
    assert!(rejected[0].1.starts_with("not_json: not JSON"), "{rejected:?}");
    assert_eq!(rejected[1], (2, "missing_key: key field `uid` is missing or null"));
    assert_eq!(rejected[2].0, 3);
    assert!(rejected[2].1.starts_with("bad_value: field `price`: a string \"cheap\""), "{rejected:?}");
    assert_eq!(rejected[3], (4, "no_event_time: event time field `ts` is missing or null"));

    let mut serving = rt.block_on(server.serving());
    let response =
        rt.block_on(serving.get_online_features(lookup(&[1, 2, 3, 4], now_ms))).unwrap().into_inner();
    let statuses = &column(&response, "last_click.item").statuses;
    let present = FieldStatus::Present as i32;
    let missing = FieldStatus::NotFound as i32;
    assert_eq!(statuses, &vec![present, missing, missing, present]);

    // Typed columns: a column no view reads is named; a value of the wrong type is a bad event.
    let mut typed = match columns(&clicks(10..12, now_ms)) {
        proto::push_events_request::Events::Columns(c) => c,
        _ => unreachable!(),
    };
    let rows = typed.columns["uid"].values.len();
    typed.columns.insert("colour".into(), proto::Values { values: vec![string("red"); rows] });
    typed.columns.get_mut("price").unwrap().values[0] = string("free");
    let r = rt
        .block_on(client.push_events(push_request(proto::push_events_request::Events::Columns(typed))))
        .unwrap()
        .into_inner();
    assert_eq!(r.unread_fields, ["colour"]);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].index, 0);
    assert!(r.rejected[0].reason.contains("field `price`"), "{:?}", r.rejected);
    assert_eq!(r.events_written, rows as u64 - 1);

    // Refused whole, nothing written: unknown source, ragged columns, no events, too many.
    let refuse = |request: proto::PushEventsRequest, text: &str| {
        let status = rt.block_on(client.clone().push_events(request)).expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains(text), "{} lacks {text}", status.message());
    };
    let mut unknown = push_request(json_events(vec!["{}".into()]));
    unknown.source = "clickz".into();
    refuse(unknown, "unknown source `clickz`; sources: clicks");
    let ragged: HashMap<String, proto::Values> = [
        ("uid".to_string(), proto::Values { values: vec![int(1), int(2)] }),
        ("ts".to_string(), proto::Values { values: vec![int(now_ms)] }),
    ]
    .into();
    refuse(
        push_request(proto::push_events_request::Events::Columns(proto::EventColumns { columns: ragged })),
        "event columns differ in length",
    );
    refuse(proto::PushEventsRequest { source: "clicks".into(), events: None }, "carries no events");
    let too_many = vec!["{}".to_string(); fstore::ingest::push::MAX_EVENTS + 1];
    refuse(push_request(json_events(too_many)), "the limit is 50000 per request");

    // The server serves on.
    assert!(rt.block_on(serving.get_online_features(lookup(&[1], now_ms))).is_ok());
}

#[test]
fn a_key_pushes_only_to_the_sources_it_names() {
    let pusher_key = "fsk_pusher_0123456789";
    let reader_key = "fsk_reader_0123456789";
    let entry = |name: &str, key: &str, push: &str| {
        format!(
            "{{ name = {name:?}, sha256 = {:?}, services = [\"both\"], push = [{push}] }}",
            fstore::serve::auth::digest_hex(key)
        )
    };
    let keys = format!("[{}, {}]", entry("events", pusher_key, "\"clicks\""), entry("model", reader_key, ""));
    let server = ServerBuilder::new(&[("defs.fdl", DEFS)]).env("FSTORE_AUTH__KEYS", &keys).start();
    let rt = rt();
    let now_ms = fstore::now_micros() / 1000;
    let client = rt.block_on(pusher(&server));
    let event = || push_request(json_events(vec![format!(r#"{{"uid": 1, "ts": {now_ms}, "item": "a"}}"#)]));

    let status = rt.block_on(client.clone().push_events(event())).expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status =
        rt.block_on(client.clone().push_events(with_key(event(), reader_key))).expect_err("a reader");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("API key `model` may not push to source `clicks`"),
        "{}",
        status.message()
    );
    let ok = rt
        .block_on(client.clone().push_events(with_key(event(), pusher_key)))
        .expect("the pusher")
        .into_inner();
    assert_eq!(ok.events_written, 1);
}
