//! Kafka streams end to end: the real binary consuming from a real broker
//! process, windows checked against an independent computation, bad
//! messages, kill -9 without loss or doubling, a rebalance between two
//! servers, and a Parquet backfill equal to the same events streamed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use fstore::proto::{self, value::Kind, FieldStatus};

use crate::kafka::{server_env, Broker};
use crate::util::{column, int, request_service, rt, write_parquet, Server, ServerBuilder};

const MINUTE_MS: i64 = 60_000;

fn defs(topic: &str) -> String {
    format!(
        r#"
entity user {{ key user_id: int64 }}

source clicks {{
  type = kafka
  topic = "{topic}"
  format = json
  timestamp = ts
  dead_letter_topic = "{topic}-dead"
}}

view last_click {{
  entity = user
  source = clicks
  keys {{ user_id = uid }}
  features {{
    item: string = item
    price: float64 = price
  }}
}}

view activity {{
  entity = user
  source = clicks
  keys {{ user_id = uid }}
  resolution = 1m
  features {{
    clicks_5m: int64 = count() over 5m
    spend_10m: float64 = sum(price) over 10m
    max_price_3m: float64 = max(price) over 3m
    buys_5m: int64 = count() over 5m where event == "purchase"
    first_item_10m: string = first(item) over 10m
    last_item: string = last(item)
    clicks_all: int64 = count()
    spend_all: int64 = sum(cents)
  }}
}}

service both {{ features = [last_click.*, activity.*] }}
"#
    )
}

/// One click as sent, in send order.
#[derive(Clone, Debug)]
struct Click {
    uid: i64,
    ts: i64,
    price: Option<f64>,
    cents: i64,
    event: &'static str,
    item: String,
}

impl Click {
    fn json(&self) -> String {
        let price = self.price.map_or("null".to_string(), |p| p.to_string());
        format!(
            r#"{{"uid": {}, "ts": {}, "price": {price}, "cents": {}, "event": "{}", "item": "{}"}}"#,
            self.uid, self.ts, self.cents, self.event, self.item
        )
    }
}

/// What the definitions above must give for `user` at request time `now_ms`,
/// computed directly from the events (in arrival order) by the language's rule.
#[derive(Debug, PartialEq)]
struct Expected {
    clicks_5m: i64,
    spend_10m: Option<f64>,
    max_price_3m: Option<f64>,
    buys_5m: i64,
    first_item_10m: Option<String>,
    last_item: Option<String>,
    clicks_all: i64,
    spend_all: Option<i64>,
}

fn expected(clicks: &[&Click], now_ms: i64, too_late: &dyn Fn(&Click) -> bool) -> Expected {
    let c = now_ms.div_euclid(MINUTE_MS);
    // Tile k is in a window of W minutes when c − W + 1 <= k <= c.
    let in_window = |ts: i64, minutes: i64| (c - minutes + 1..=c).contains(&ts.div_euclid(MINUTE_MS));
    let windowed: Vec<&&Click> = clicks.iter().filter(|e| !too_late(e)).collect();
    let w = |m: i64| windowed.iter().filter(move |e| in_window(e.ts, m));
    let prices: Vec<f64> = w(10).filter_map(|e| e.price).collect();
    // first: least (time, arrival); last: greatest (time, arrival).
    let first = w(10).enumerate().min_by_key(|(i, e)| (e.ts, *i)).map(|(_, e)| e.item.clone());
    let last = clicks.iter().enumerate().max_by_key(|(i, e)| (e.ts, *i)).map(|(_, e)| e.item.clone());
    Expected {
        clicks_5m: w(5).count() as i64,
        spend_10m: (!prices.is_empty()).then(|| prices.iter().sum()),
        max_price_3m: w(3).filter_map(|e| e.price).reduce(f64::max),
        buys_5m: w(5).filter(|e| e.event == "purchase").count() as i64,
        first_item_10m: first,
        last_item: last,
        clicks_all: clicks.len() as i64,
        spend_all: (!clicks.is_empty()).then(|| clicks.iter().map(|e| e.cents).sum()),
    }
}

fn served(r: &proto::GetOnlineFeaturesResponse, row: usize) -> Expected {
    let value = |name: &str| column(r, name).values[row].kind.clone();
    let int = |name: &str| match value(name) {
        Some(Kind::Int64Value(v)) => Some(v),
        None => None,
        other => panic!("{name}: {other:?}"),
    };
    let float = |name: &str| match value(name) {
        Some(Kind::Float64Value(v)) => Some(v),
        None => None,
        other => panic!("{name}: {other:?}"),
    };
    let string = |name: &str| match value(name) {
        Some(Kind::StringValue(v)) => Some(v),
        None => None,
        other => panic!("{name}: {other:?}"),
    };
    Expected {
        clicks_5m: int("activity.clicks_5m").unwrap(),
        spend_10m: float("activity.spend_10m"),
        max_price_3m: float("activity.max_price_3m"),
        buys_5m: int("activity.buys_5m").unwrap(),
        first_item_10m: string("activity.first_item_10m"),
        last_item: string("activity.last_item"),
        clicks_all: int("activity.clicks_all").unwrap(),
        spend_all: int("activity.spend_all"),
    }
}

fn close(a: &Expected, b: &Expected) -> bool {
    let f = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * (1.0 + x.abs()),
        (x, y) => x == y,
    };
    f(a.spend_10m, b.spend_10m)
        && f(a.max_price_3m, b.max_price_3m)
        && Expected { spend_10m: None, max_price_3m: None, ..clone(a) }
            == Expected { spend_10m: None, max_price_3m: None, ..clone(b) }
}

fn clone(e: &Expected) -> Expected {
    Expected {
        clicks_5m: e.clicks_5m,
        spend_10m: e.spend_10m,
        max_price_3m: e.max_price_3m,
        buys_5m: e.buys_5m,
        first_item_10m: e.first_item_10m.clone(),
        last_item: e.last_item.clone(),
        clicks_all: e.clicks_all,
        spend_all: e.spend_all,
    }
}

fn status(server: &Server) -> serde_json::Value {
    rt().block_on(async {
        let json =
            server.admin().await.get_status(proto::GetStatusRequest {}).await.unwrap().into_inner().json;
        serde_json::from_str(&json).unwrap()
    })
}

fn stream_status(server: &Server) -> serde_json::Value {
    let doc = status(server);
    doc["sources"].as_array().unwrap().iter().find(|s| s["name"] == "clicks").unwrap()["stream"].clone()
}

/// Wait until the server has applied `events` events (and reported `bad` bad ones).
fn wait_applied(server: &Server, events: u64, bad: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = stream_status(server);
        let applied = s["events"].as_u64().unwrap_or(0);
        let rejected: u64 =
            s["bad_messages"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
        if applied >= events && rejected >= bad {
            assert_eq!((applied, rejected), (events, bad), "more than was sent: {s:#}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited 60 s for {events} events and {bad} bad messages; status: {s:#}\nlog:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lookup(server: &Server, users: &[i64], at_ms: i64) -> proto::GetOnlineFeaturesResponse {
    let mut request = request_service("both", vec![("user_id", users.iter().map(|u| int(*u)).collect())]);
    request.request_time_micros = at_ms * 1000;
    rt().block_on(async { server.serving().await.get_online_features(request).await.unwrap().into_inner() })
}

fn start_server(broker: &Broker, topic: &str, group: &str) -> Server {
    let mut b = ServerBuilder::new(&[("defs.fdl", &defs(topic))]);
    for (k, v) in server_env(broker, group) {
        b = b.env(k, &v);
    }
    b.start()
}

/// A small deterministic generator (no shared seed state between tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_ms() -> i64 {
    fstore::now_micros() / 1000
}

#[test]
fn windows_over_tiles_match_an_independent_computation() {
    let broker = Broker::start();
    let topic = broker.create_topic("windows", 2);
    let server = start_server(&broker, &topic, "windows");
    let producer = broker.producer();

    // Events spread over the last 8 minutes and the next one, sent out of
    // time order (late arrivals), some too late for any window (30 minutes
    // old), two with the same event time, nulls among the prices.
    let start = now_ms();
    let mut rng = Lcg(7);
    let users = [1i64, 2, 3, 4, 5];
    let mut clicks = Vec::new();
    for i in 0..400 {
        let uid = users[rng.below(users.len() as u64) as usize];
        let ts = if i % 50 == 0 {
            start - 30 * MINUTE_MS - rng.below(MINUTE_MS as u64) as i64
        } else {
            start - 8 * MINUTE_MS + rng.below(9 * MINUTE_MS as u64) as i64
        };
        let price = (rng.below(10) != 0).then(|| rng.below(10_000) as f64 / 100.0);
        let event = if rng.below(4) == 0 { "purchase" } else { "view" };
        clicks.push(Click {
            uid,
            ts,
            price,
            cents: rng.below(1000) as i64,
            event,
            item: format!("item-{i}"),
        });
    }
    let tie = clicks[1].clone();
    clicks.push(Click { item: "tie-later".into(), ..tie });
    for c in &clicks {
        producer.send(&topic, (c.uid % 2) as i32, &c.uid.to_string(), c.json().as_bytes());
    }
    producer.flush();
    wait_applied(&server, clicks.len() as u64, 0);

    let too_late = |c: &Click| c.ts < start - 20 * MINUTE_MS;
    let late_count = clicks.iter().filter(|c| too_late(c)).count() as u64;
    assert_eq!(stream_status(&server)["too_late"].as_u64(), Some(late_count));

    let mut checked = 0;
    for at in [
        start - 3 * MINUTE_MS,
        start,
        start.div_euclid(MINUTE_MS) * MINUTE_MS, // on a tile boundary
        start.div_euclid(MINUTE_MS) * MINUTE_MS - 1, // just before it
        start + 2 * MINUTE_MS + 17_000,
        start + 6 * MINUTE_MS,
        start + 11 * MINUTE_MS,
    ] {
        let response = lookup(&server, &users, at);
        for (row, user) in users.iter().enumerate() {
            let events: Vec<&Click> = clicks.iter().filter(|c| c.uid == *user).collect();
            let want = expected(&events, at, &too_late);
            let got = served(&response, row);
            assert!(close(&got, &want), "user {user} at {at} (start {start}):\n got {got:?}\nwant {want:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 35);

    // Row views hold the newest event per key.
    let response = lookup(&server, &[1], start);
    let newest =
        clicks.iter().enumerate().filter(|(_, c)| c.uid == 1).max_by_key(|(i, c)| (c.ts, *i)).unwrap().1;
    assert_eq!(
        column(&response, "last_click.item").values[0].kind,
        Some(Kind::StringValue(newest.item.clone()))
    );

    // An unknown user is NOT_FOUND, not zero.
    let response = lookup(&server, &[999], start);
    assert_eq!(column(&response, "activity.clicks_all").statuses[0], FieldStatus::NotFound as i32);

    // Metrics carry the stream's figures per partition.
    let metrics = server.metrics_text();
    assert!(metrics.contains("fstore_stream_messages_total{source=\"clicks\",partition=\"0\"}"), "{metrics}");
    assert!(
        metrics.contains("fstore_stream_freshness_seconds{source=\"clicks\",clock=\"event\""),
        "{metrics}"
    );
}

#[test]
fn bad_messages_are_counted_and_dead_lettered_while_good_ones_land() {
    let broker = Broker::start();
    let topic = broker.create_topic("bad", 1);
    let dead = format!("{topic}-dead");
    broker.create_topic_named(&dead, 1);
    let server = start_server(&broker, &topic, "bad");
    let producer = broker.producer();
    let t = now_ms();
    let messages: Vec<String> = vec![
        format!(r#"{{"uid": 1, "ts": {t}, "price": 2.5, "cents": 1, "event": "view", "item": "a"}}"#),
        "this is not json".into(),
        format!(r#"{{"ts": {t}, "price": 1.0, "cents": 1, "event": "view", "item": "b"}}"#),
        format!(r#"{{"uid": 1, "ts": {t}, "price": "cheap", "cents": 1, "event": "view", "item": "c"}}"#),
        r#"{"uid": 1, "price": 1.0, "cents": 1, "event": "view", "item": "d"}"#.into(),
        format!(r#"{{"uid": 1, "ts": {}, "price": 4.0, "cents": 2, "event": "view", "item": "e"}}"#, t + 1),
    ];
    for m in &messages {
        producer.send(&topic, 0, "k", m.as_bytes());
    }
    producer.flush();
    wait_applied(&server, 2, 4);
    let s = stream_status(&server);
    assert_eq!(s["bad_messages"]["not_json"], 1);
    assert_eq!(s["bad_messages"]["missing_key"], 1);
    assert_eq!(s["bad_messages"]["bad_value"], 1);
    assert_eq!(s["bad_messages"]["no_event_time"], 1);

    let got = served(&lookup(&server, &[1], t), 0);
    assert_eq!((got.clicks_all, got.spend_all, got.last_item.as_deref()), (2, Some(3), Some("e")));

    let letters = broker.read_all(&dead, 1, 4);
    assert_eq!(letters.len(), 4, "every bad message is dead-lettered");
    let (payload, headers) = &letters[2];
    assert_eq!(payload, messages[3].as_bytes(), "the original bytes");
    let header = |k: &str| headers.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(header("fstore-reason"), Some("bad_value"));
    assert!(header("fstore-error").unwrap().contains("field `price`"), "{headers:?}");
    assert_eq!(header("fstore-offset"), Some("3"));
    let log = server.log_text();
    assert!(log.contains("Bad message skipped") && log.contains("not JSON"), "{log}");
}

#[test]
fn kill_9_mid_stream_loses_and_doubles_nothing() {
    let broker = Broker::start();
    let partitions = 4;
    let topic = broker.create_topic("crash", partitions);
    let mut server = start_server(&broker, &topic, "crash");

    // A producer sends 40,000 events for 64 users while the server is
    // killed with SIGKILL three times and restarted.
    let total = 40_000usize;
    let users = 64i64;
    let base = now_ms();
    let producer = Arc::new(broker.producer());
    let sender = {
        let (producer, topic) = (producer.clone(), topic.clone());
        std::thread::spawn(move || {
            for i in 0..total {
                let uid = (i as i64 * 7919) % users;
                let c = Click {
                    uid,
                    ts: base + (i as i64 % 1000),
                    price: Some(1.0),
                    cents: (i % 97) as i64,
                    event: "view",
                    item: format!("i{i}"),
                };
                producer.send(&topic, (uid % 4) as i32, &uid.to_string(), c.json().as_bytes());
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(60));
                }
            }
            producer.flush();
        })
    };
    // The first kill comes once events are landing; the others at random
    // moments after each restart.
    let mut rng = Lcg(base as u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_status(&server)["events"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no events arrived; log:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Each restart joins a new consumer group, which has no offsets in
    // Kafka and so reads every partition from the start again (as a lost or
    // lagging commit would): only the offsets stored with the state prevent
    // double counting.
    let kills = 3;
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        server.kill();
        for (key, value) in server.env.iter_mut() {
            if key == "FSTORE_KAFKA__GROUP_ID" {
                *value = format!("crash-{k}");
            }
        }
        server.restart();
    }
    sender.join().unwrap();

    // Expected totals, computed from what was sent.
    let mut want: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for i in 0..total {
        let uid = (i as i64 * 7919) % users;
        let e = want.entry(uid).or_default();
        e.0 += 1;
        e.1 += (i % 97) as i64;
        e.2 = i as i64;
    }
    let all: Vec<i64> = (0..users).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = lookup(&server, &all, base);
        let got: BTreeMap<i64, (i64, i64, i64)> = all
            .iter()
            .enumerate()
            .map(|(row, uid)| {
                if column(&r, "activity.clicks_all").statuses[row] == FieldStatus::NotFound as i32 {
                    return (*uid, (0, 0, -1));
                }
                let s = served(&r, row);
                let last: i64 = s.last_item.as_deref().map_or(-1, |l| l[1..].parse().unwrap());
                (*uid, (s.clicks_all, s.spend_all.unwrap_or(0), last))
            })
            .collect();
        let counted: i64 = got.values().map(|v| v.0).sum();
        if counted >= total as i64 {
            assert_eq!(counted, total as i64, "an event was counted twice");
            // Ties in event time go to the later arrival: the last sent.
            let mut want_last = want.clone();
            for (uid, v) in want_last.iter_mut() {
                v.2 = (0..total)
                    .filter(|i| (*i as i64 * 7919) % users == *uid)
                    .max_by_key(|i| (base + (*i as i64 % 1000), *i))
                    .unwrap() as i64;
            }
            assert_eq!(got, want_last, "per-user totals after {kills} kills");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {total} events arrived; log:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_servers_share_partitions_and_a_rebalance_loses_nothing() {
    let broker = Broker::start();
    let topic = broker.create_topic("group", 4);
    let a = start_server(&broker, &topic, "shared");
    let mut b = start_server(&broker, &topic, "shared");
    let producer = broker.producer();
    let base = now_ms();
    let send = |from: usize, to: usize| {
        for i in from..to {
            let uid = (i % 16) as i64;
            let c = Click { uid, ts: base, price: None, cents: 1, event: "view", item: format!("i{i}") };
            producer.send(&topic, (uid % 4) as i32, &uid.to_string(), c.json().as_bytes());
        }
        producer.flush();
    };
    // Both members hold partitions before the first events.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_status(&a)["state"] != "running" || stream_status(&b)["state"] != "running" {
        assert!(Instant::now() < deadline, "no assignment:\n{}\n{}", a.log_text(), b.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    send(0, 4000);
    let users: Vec<i64> = (0..16).collect();
    let count = |s: &Server| -> Vec<i64> {
        let r = lookup(s, &users, base);
        (0..16).map(|row| served_count(&r, row)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ca, cb) = (count(&a), count(&b));
        let total: i64 = ca.iter().sum::<i64>() + cb.iter().sum::<i64>();
        if total >= 4000 {
            assert_eq!(total, 4000);
            assert!(
                ca.iter().sum::<i64>() > 0 && cb.iter().sum::<i64>() > 0,
                "both servers consumed: {ca:?} {cb:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{ca:?} {cb:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // b leaves (SIGTERM: it writes, commits and leaves the group); a takes
    // its partitions over from where b stopped.
    b.terminate(Duration::from_secs(20));
    // Read what b stored, with b out of the group (no brokers configured).
    b.env.retain(|(k, _)| k != "FSTORE_KAFKA__BROKERS");
    b.restart();
    let cb = count(&b);
    send(4000, 8000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ca = count(&a);
        let per_user: Vec<i64> = ca.iter().zip(&cb).map(|(x, y)| x + y).collect();
        if per_user.iter().sum::<i64>() >= 8000 {
            assert_eq!(per_user, vec![500; 16], "each user's events counted exactly once across the group");
            break;
        }
        assert!(Instant::now() < deadline, "{ca:?} {cb:?}\n{}", a.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn served_count(r: &proto::GetOnlineFeaturesResponse, row: usize) -> i64 {
    match &column(r, "activity.clicks_all").values[row].kind {
        Some(Kind::Int64Value(v)) => *v,
        _ => 0,
    }
}

#[test]
fn a_parquet_backfill_equals_the_same_events_streamed() {
    let broker = Broker::start();
    let topic = broker.create_topic("backfill", 1);
    let streamed = start_server(&broker, &topic, "backfill");
    // The other server has no brokers: its stream source is idle, and it
    // gets the events from a Parquet file through IngestParquet.
    let mut backfilled = ServerBuilder::new(&[("defs.fdl", &defs(&topic))]).start();

    let start = now_ms();
    let mut rng = Lcg(3);
    let clicks: Vec<Click> = (0..300)
        .map(|i| Click {
            uid: rng.below(4) as i64,
            ts: start - 9 * MINUTE_MS + rng.below(9 * MINUTE_MS as u64) as i64,
            price: (i % 7 != 0).then(|| rng.below(500) as f64 / 10.0),
            cents: rng.below(100) as i64,
            event: if i % 3 == 0 { "purchase" } else { "view" },
            item: format!("item-{i}"),
        })
        .collect();
    let producer = broker.producer();
    for c in &clicks {
        producer.send(&topic, 0, &c.uid.to_string(), c.json().as_bytes());
    }
    producer.flush();
    wait_applied(&streamed, clicks.len() as u64, 0);

    let file = backfilled.data.parent().unwrap().join("history.parquet");
    let col = |f: &dyn Fn(&Click) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(clicks.iter().map(f)))
    };
    write_parquet(
        &file,
        vec![
            ("uid", col(&|c| c.uid)),
            ("ts", col(&|c| c.ts)),
            ("cents", col(&|c| c.cents)),
            ("price", Arc::new(Float64Array::from_iter(clicks.iter().map(|c| c.price))) as ArrayRef),
            ("event", Arc::new(StringArray::from_iter_values(clicks.iter().map(|c| c.event)))),
            ("item", Arc::new(StringArray::from_iter_values(clicks.iter().map(|c| c.item.clone())))),
        ],
    );
    let out = backfilled.cli(&["ingest", "--source", "clicks", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", crate::util::stdout(&out), crate::util::stderr(&out));
    assert!(
        backfilled.log_text().contains("Stream sources are idle"),
        "a server without brokers says so: {}",
        backfilled.log_text()
    );

    let users = [0i64, 1, 2, 3];
    for at in [start, start + 4 * MINUTE_MS] {
        let (x, y) = (lookup(&streamed, &users, at), lookup(&backfilled, &users, at));
        for row in 0..users.len() {
            let (sx, sy) = (served(&x, row), served(&y, row));
            assert!(close(&sx, &sy), "user {row} at {at}:\nstreamed   {sx:?}\nbackfilled {sy:?}");
            assert!(sx.clicks_all > 0);
        }
    }
    backfilled.kill();
}

/// Per partition, as GetStatus reports it: (next offset, high watermark, lag).
type Positions = BTreeMap<i64, (Option<i64>, Option<i64>, Option<i64>)>;

fn positions(server: &Server) -> Positions {
    stream_status(server)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                (p["next_offset"].as_i64(), p["high_watermark"].as_i64(), p["lag"].as_i64()),
            )
        })
        .collect()
}

fn metric(text: &str, name: &str, partition: i64) -> Option<i64> {
    let prefix = format!("{name}{{source=\"clicks\",partition=\"{partition}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap())
}

/// Wait until every partition reports its high watermark, and return the figures.
fn wait_positions(server: &Server, partitions: i64) -> Positions {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = positions(server);
        if stream_status(server)["state"] == "running"
            && p.len() == partitions as usize
            && p.values().all(|(_, high, _)| high.is_some())
        {
            return p;
        }
        assert!(Instant::now() < deadline, "no positions after 60 s: {p:?}\nlog:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_caught_up_stream_reports_no_lag_after_a_restart_with_no_new_messages() {
    let broker = Broker::start();
    let partitions = 3;
    let topic = broker.create_topic("lag", partitions as i32);
    // With static membership (kafka.instance_id), as a deployment that
    // restarts servers in place would run.
    let mut builder = ServerBuilder::new(&[("defs.fdl", &defs(&topic))]);
    for (k, v) in server_env(&broker, "lag") {
        builder = builder.env(k, &v);
    }
    let mut server = builder.env("FSTORE_KAFKA__INSTANCE_ID", "lag-node-1").start();
    let producer = broker.producer();
    let base = now_ms();
    let per_partition = [323i64, 318, 318];
    let mut sent = 0;
    for (partition, &n) in per_partition.iter().enumerate() {
        for i in 0..n {
            let uid = partition as i64 * 1000 + i % 10;
            let c = Click { uid, ts: base, price: None, cents: 1, event: "view", item: format!("i{i}") };
            producer.send(&topic, partition as i32, &uid.to_string(), c.json().as_bytes());
            sent += 1;
        }
    }
    producer.flush();
    wait_applied(&server, sent, 0);
    let caught_up: Positions = (0..partitions)
        .map(|p| (p, (Some(per_partition[p as usize]), Some(per_partition[p as usize]), Some(0))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wait_positions(&server, partitions) != caught_up {
        assert!(Instant::now() < deadline, "never caught up: {:?}", positions(&server));
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stopped both ways, restarted, and no message arrives afterwards: the
    // stored positions are reported, and lag is 0, as before the stop.
    for how in ["SIGKILL", "SIGTERM"] {
        match how {
            "SIGKILL" => server.kill(),
            _ => assert!(server.terminate(Duration::from_secs(20)).success()),
        }
        server.restart();
        let after = wait_positions(&server, partitions);
        assert_eq!(after, caught_up, "after a {how} restart, with no new messages");
        let metrics = server.metrics_text();
        for p in 0..partitions {
            let want = per_partition[p as usize];
            assert_eq!(metric(&metrics, "fstore_stream_next_offset", p), Some(want), "{how}, {metrics}");
            assert_eq!(metric(&metrics, "fstore_stream_consumer_lag", p), Some(0), "{how}, {metrics}");
        }
        assert_eq!(stream_status(&server)["events"], 0, "nothing applied again after the {how} restart");
    }
}
