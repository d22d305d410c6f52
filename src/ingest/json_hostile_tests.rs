//! Hostile input for the JSON message decoder: whatever the bytes (random,
//! mutated good messages, valid JSON of the wrong shape or type for every
//! language type, extreme numbers and timestamps, nesting 100,000 deep),
//! `decode` never panics and accounts for every payload: it is a batch row or
//! a [`BadMessage`] whose detail says it is not JSON (with the line and
//! column serde_json stopped at) or names the field at fault. Good messages
//! decoded in the same call as bad ones still come through, with their values.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use fstore_dsl::plan::{Source, SourceKind};
use fstore_dsl::{DataType, ElementType};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{decode, BadReason, Decoded};

const KEY: &str = "uid";
const TIME: &str = "ts";
/// A field only tested for nullness (`tag is null`): any value is accepted.
const UNTYPED: &str = "tag";

/// The field of type `ty` in [`source`].
fn field_of(ty: DataType) -> String {
    format!("f_{}", ty.to_string().replace(['<', '>'], "_"))
}

/// A source with the key, the event time, an untyped field and one field of
/// every type of the language.
fn source() -> Source {
    let mut fields = BTreeMap::new();
    fields.insert(KEY.to_string(), Some(DataType::Int64));
    fields.insert(TIME.to_string(), Some(DataType::Timestamp));
    fields.insert(UNTYPED.to_string(), None);
    for ty in DataType::ALL {
        fields.insert(field_of(ty), Some(ty));
    }
    Source {
        name: "hostile".into(),
        kind: SourceKind::Kafka { topic: "hostile".into(), dead_letter_topic: None },
        timestamp_field: TIME.into(),
        fields,
    }
}

fn run(payloads: &[Option<&[u8]>]) -> Decoded {
    let decoded = decode(payloads, &source(), &BTreeSet::from([KEY.to_string()]));
    check_accounting(payloads.len(), &decoded);
    decoded
}

fn run_texts(texts: &[&str]) -> Decoded {
    let payloads: Vec<Option<&[u8]>> = texts.iter().map(|t| Some(t.as_bytes())).collect();
    run(&payloads)
}

/// Every payload is exactly one batch row or one bad message, in order; the
/// batch and event times have one entry per row; every bad message has a
/// short detail that says what is wrong and where.
fn check_accounting(n: usize, d: &Decoded) {
    assert_eq!(d.rows.len() + d.bad.len(), n, "rows + bad = payloads");
    let mut seen: Vec<usize> = d.rows.iter().copied().chain(d.bad.iter().map(|b| b.index)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "each payload once");
    assert!(d.rows.windows(2).all(|w| w[0] < w[1]), "rows in message order");
    assert_eq!(d.batch.num_rows(), d.rows.len());
    assert_eq!(d.batch.num_columns(), source().fields.len());
    assert_eq!(d.event_times.len(), d.rows.len());
    assert_eq!(d.event_times.null_count(), 0, "every row has an event time");
    let fields = source().fields;
    for b in &d.bad {
        let detail = &b.detail;
        // Details are short whatever the payload: values are cut to 40 characters.
        assert!(!detail.is_empty() && detail.len() < 300, "{detail:?}");
        match b.reason {
            BadReason::NotJson => assert!(
                detail.starts_with("expected a JSON object, found ")
                    || (detail.starts_with("not JSON: ")
                        && detail.contains(" at line ")
                        && detail.contains(" column ")),
                "{detail}"
            ),
            BadReason::MissingKey => assert_eq!(detail, &format!("key field `{KEY}` is missing or null")),
            BadReason::NoEventTime => assert!(detail.contains(&format!("`{TIME}`")), "{detail}"),
            BadReason::BadValue => {
                let named = fields.keys().find(|f| detail.starts_with(&format!("field `{f}`: ")));
                // Not the event time (that is `NoEventTime`) nor an untyped field.
                assert!(named.is_some_and(|f| f != TIME && f != UNTYPED), "{detail}");
                assert!(
                    detail.contains(" is not a valid ") || detail.contains("arrays may not hold nulls"),
                    "{detail}"
                );
            }
        }
    }
}

fn reason_of(d: &Decoded, index: usize) -> Option<BadReason> {
    d.bad.iter().find(|b| b.index == index).map(|b| b.reason)
}

fn detail_of(d: &Decoded, index: usize) -> &str {
    d.bad.iter().find(|b| b.index == index).map_or("", |b| b.detail.as_str())
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// A value that fits `ty`, as a message would carry it.
fn fitting(ty: DataType) -> BoxedStrategy<Value> {
    let f32s = || (-1e30f64..1e30).prop_map(|x| json!(x as f32));
    let f64s = || any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| json!(x));
    let strings = || ".{0,12}".prop_map(Value::String);
    match ty {
        DataType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        DataType::Int64 => any::<i64>().prop_map(|i| json!(i)).boxed(),
        DataType::Float32 => f32s().boxed(),
        DataType::Float64 => f64s().boxed(),
        DataType::String | DataType::Bytes => strings().boxed(),
        DataType::Timestamp => timestamp().boxed(),
        DataType::Array(ElementType::Float32) => {
            proptest::collection::vec(f32s(), 0..5).prop_map(Value::Array).boxed()
        }
        DataType::Array(ElementType::Float64) => {
            proptest::collection::vec(f64s(), 0..5).prop_map(Value::Array).boxed()
        }
        DataType::Array(ElementType::Int64) => {
            proptest::collection::vec(any::<i64>().prop_map(|i| json!(i)), 0..5)
                .prop_map(Value::Array)
                .boxed()
        }
        DataType::Array(ElementType::String) => {
            proptest::collection::vec(strings(), 0..5).prop_map(Value::Array).boxed()
        }
    }
}

/// Epoch milliseconds (integer or fractional) or an RFC 3339 string.
fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-(1i64 << 50)..(1i64 << 50)).prop_map(|ms| json!(ms)),
        (-1e15f64..1e15).prop_map(|ms| json!(ms)),
        (-62_000_000_000i64..253_000_000_000, 0u32..1_000_000_000, -86_000i32..86_000).prop_map(
            |(s, ns, off)| {
                let t = chrono::DateTime::from_timestamp(s, ns).expect("in range");
                let off = chrono::FixedOffset::east_opt(off).expect("in range");
                Value::String(t.with_timezone(&off).to_rfc3339())
            }
        ),
    ]
}

/// A good message: key and time, and any of the other fields present,
/// null or absent. `uid` is given, to recognise the row.
fn good_message(uid: i64) -> impl Strategy<Value = String> {
    let others: Vec<BoxedStrategy<(String, Option<Option<Value>>)>> = DataType::ALL
        .iter()
        .map(|&ty| {
            proptest::option::of(proptest::option::of(fitting(ty)))
                .prop_map(move |v| (field_of(ty), v))
                .boxed()
        })
        .collect();
    (timestamp(), others, proptest::option::of(any::<i64>())).prop_map(move |(ts, others, tag)| {
        let mut m = serde_json::Map::new();
        m.insert(KEY.into(), json!(uid));
        m.insert(TIME.into(), ts);
        if let Some(tag) = tag {
            m.insert(UNTYPED.into(), json!(tag));
        }
        for (name, v) in others {
            if let Some(v) = v {
                m.insert(name, v.unwrap_or(Value::Null));
            }
        }
        Value::Object(m).to_string()
    })
}

/// Raw JSON texts chosen to sit on every edge: extreme and non-finite
/// numbers, integers just past int64 and u64, timestamps whose microseconds
/// overflow, odd strings and escapes, wrong shapes, and text that is not JSON.
const RAW: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "-0.0",
    "1",
    "1.5",
    "-1",
    "3.0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e18",
    "1e19",
    "9.3e18",
    "-9.3e18",
    "3.4028235e38",
    "3.5e38",
    "-3.5e38",
    "1e-50",
    "5e-324",
    "1.7976931348623157e308",
    "1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "9223372036854775",
    "9223372036854776",
    "-9223372036854776",
    "9223372036854775.807",
    "1e300",
    "\"\"",
    "\"x\"",
    "\"12\"",
    "\"true\"",
    "\"2026-11-21T10:00:00Z\"",
    "\"9999-12-31T23:59:59.999999999Z\"",
    "\"0000-01-01T00:00:00-23:59\"",
    "\"+10000-01-01T00:00:00Z\"",
    "\"2026-02-30T00:00:00Z\"",
    "\"2026-11-21T10:00:00+25:00\"",
    "\"2026-11-21T23:59:60Z\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udfff\\ud800\"",
    "\"\\uD83D\\uDE00\"",
    "\"\\x\"",
    "[]",
    "[null]",
    "[1,null]",
    "[1,2.5,-3]",
    "[\"a\",1]",
    "[[1]]",
    "[1e300]",
    "[9223372036854775808]",
    "{}",
    "{\"a\":1}",
    "NaN",
    "Infinity",
    "-Infinity",
    "01",
    "1.",
    "+1",
    ".5",
    "0x10",
    "'a'",
    "",
    "[1,]",
    "{\"a\":}",
];

/// Any JSON value, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|x| json!(x)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A hostile value for one field: an edge literal or any JSON value.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(RAW).prop_map(str::to_string),
        any_json().prop_map(|v| v.to_string()),
    ]
}

fn all_fields() -> Vec<String> {
    source().fields.into_keys().collect()
}

fn typed_fields() -> Vec<String> {
    all_fields().into_iter().filter(|f| f != UNTYPED).collect()
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Delete { at: usize, len: usize },
    Insert { at: usize, byte: u8 },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, bit } => {
                if let Some(b) = bytes.get_mut(at % n) {
                    *b ^= 1 << bit;
                }
            }
            Mutation::Delete { at, len } => {
                let at = (at % n).min(bytes.len());
                let end = (at + len).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Insert { at, byte } => bytes.insert((at % n).min(bytes.len()), byte),
            Mutation::Truncate { at } => bytes.truncate(at % n),
        }
    }
    bytes
}

/// The `uid` column at each batch row.
fn uids(d: &Decoded) -> Vec<i64> {
    let column = d.batch.column_by_name(KEY).expect("uid column").as_primitive::<Int64Type>();
    (0..column.len()).map(|i| column.value(i)).collect()
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Up to 8 payloads of random bytes (or none at all) per call.
    #[test]
    fn arbitrary_bytes(payloads in proptest::collection::vec(
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)), 0..8)
    ) {
        let refs: Vec<Option<&[u8]>> = payloads.iter().map(|p| p.as_deref()).collect();
        let d = run(&refs);
        // Random bytes are essentially never a JSON object with a key and a time.
        for (i, p) in payloads.iter().enumerate() {
            if p.as_ref().is_none_or(|p| serde_json::from_slice::<Value>(p).is_err()) {
                prop_assert_eq!(reason_of(&d, i), Some(BadReason::NotJson));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Good messages with a few bytes flipped, deleted, inserted or cut,
    /// decoded together with the untouched ones: those all come through.
    #[test]
    fn mutated_good_messages(
        messages in proptest::collection::vec(
            (0i64..1000).prop_flat_map(good_message), 1..5),
        mutations in proptest::collection::vec(mutation(), 1..4),
        which in any::<usize>(),
    ) {
        let which = which % messages.len();
        let mutated = mutate(messages[which].clone().into_bytes(), &mutations);
        let mut payloads: Vec<Option<&[u8]>> = messages.iter().map(|m| Some(m.as_bytes())).collect();
        payloads.push(Some(&mutated));
        let d = run(&payloads);
        let good: Vec<usize> = (0..messages.len()).collect();
        let kept: Vec<usize> = d.rows.iter().copied().filter(|&i| i < messages.len()).collect();
        prop_assert_eq!(kept, good, "{:?}", d.bad);
        let expected: Vec<i64> = messages.iter().map(|m| serde_json::from_str::<Value>(m).unwrap()[KEY].as_i64().unwrap()).collect();
        prop_assert_eq!(&uids(&d)[..messages.len()], &expected[..]);
    }

    /// A good message with one field (any field, of any type) replaced by a
    /// hostile value: a row, or a bad message naming that field (or saying
    /// the whole message is not JSON). Decoded beside a good message.
    #[test]
    fn wrong_shapes_and_types(
        base in good_message(7),
        field in proptest::sample::select(all_fields()),
        value in hostile_value(),
    ) {
        let mut object: serde_json::Map<String, Value> = serde_json::from_str(&base).unwrap();
        object.insert(field.clone(), json!("@@HOLE@@"));
        let text = Value::Object(object).to_string().replace("\"@@HOLE@@\"", &value);
        let d = run_texts(&[&text, &base]);
        prop_assert!(d.rows.contains(&1), "the good message beside it: {:?}", d.bad);
        let is_json = serde_json::from_str::<Value>(&value).is_ok();
        match reason_of(&d, 0) {
            None => {
                prop_assert!(is_json);
                // An accepted value is null exactly when it was JSON null.
                let column = d.batch.column_by_name(&field).unwrap();
                prop_assert_eq!(column.is_null(0), value == "null", "{} = {}", field, value);
            }
            Some(BadReason::NotJson) => prop_assert!(!is_json, "{}", detail_of(&d, 0)),
            Some(_) => {
                let detail = detail_of(&d, 0);
                prop_assert!(is_json);
                prop_assert!(detail.contains(&format!("`{field}`")), "{field}: {detail}");
                prop_assert!(field != UNTYPED, "any value of an untyped field is fine");
            }
        }
    }

    /// Good and hostile messages interleaved in one call: exactly the good
    /// ones become rows, in order, with their own values.
    #[test]
    fn good_messages_survive_bad_neighbours(
        plan in proptest::collection::vec(any::<bool>(), 1..12),
        goods in proptest::collection::vec((0i64..1000).prop_flat_map(good_message), 12),
        bads in proptest::collection::vec(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..60),
            proptest::sample::select(RAW).prop_map(|s| s.as_bytes().to_vec()),
            // A duplicate key: the last value, which fits no type, counts.
            (proptest::sample::select(typed_fields()), proptest::sample::select(RAW))
                .prop_map(|(f, v)| format!("{{\"{KEY}\": 1, \"{TIME}\": 1, \"{f}\": {v}, \"{f}\": [[{{}}]]}}").into_bytes()),
        ], 12),
    ) {
        let payloads: Vec<Option<&[u8]>> = plan
            .iter()
            .enumerate()
            .map(|(i, &good)| Some(if good { goods[i].as_bytes() } else { bads[i].as_slice() }))
            .collect();
        let d = run(&payloads);
        let want: Vec<usize> = (0..plan.len()).filter(|&i| plan[i]).collect();
        prop_assert_eq!(&d.rows, &want, "{:?}", d.bad);
        let expected: Vec<i64> =
            want.iter().map(|&i| serde_json::from_str::<Value>(&goods[i]).unwrap()[KEY].as_i64().unwrap()).collect();
        prop_assert_eq!(uids(&d), expected);
    }
}

// ---------------------------------------------------------------------------
// Edges, case by case.
// ---------------------------------------------------------------------------

/// `{"uid": 1, "ts": 1, <field>: <raw>}`.
fn with_field(field: &str, raw: &str) -> String {
    if field == KEY || field == TIME {
        let other = if field == KEY { format!("\"{TIME}\": 1") } else { format!("\"{KEY}\": 1") };
        format!("{{{other}, \"{field}\": {raw}}}")
    } else {
        format!("{{\"{KEY}\": 1, \"{TIME}\": 1, \"{field}\": {raw}}}")
    }
}

/// Decode `raw` as the value of the field of `ty`; `Ok(())` if the message
/// became a row, else the reason and detail.
fn outcome(field: &str, raw: &str) -> Result<(), (BadReason, String)> {
    let d = run_texts(&[&with_field(field, raw)]);
    match d.bad.first() {
        None => Ok(()),
        Some(b) => Err((b.reason, b.detail.clone())),
    }
}

#[test]
fn extreme_values_per_type() {
    use BadReason::*;
    let fits = |ty: DataType, raws: &[&str]| {
        for raw in raws {
            assert_eq!(outcome(&field_of(ty), raw), Ok(()), "{ty} {raw}");
        }
    };
    let misfits = |ty: DataType, raws: &[&str]| {
        let field = field_of(ty);
        for raw in raws {
            let (reason, detail) = outcome(&field, raw).expect_err(raw);
            assert_eq!(reason, BadValue, "{ty} {raw}: {detail}");
            assert!(detail.starts_with(&format!("field `{field}`: ")), "{detail}");
        }
    };
    let not_json = |raws: &[&str]| {
        for raw in raws {
            let (reason, detail) = outcome(&field_of(DataType::Float64), raw).expect_err(raw);
            assert_eq!(reason, NotJson, "{raw}: {detail}");
        }
    };

    fits(DataType::Bool, &["true", "false", "null"]);
    misfits(DataType::Bool, &["1", "0", "\"true\"", "[]", "{}"]);

    fits(DataType::Int64, &["9223372036854775807", "-9223372036854775808", "-0", "3.0", "1e18", "-0.0"]);
    // Integers just past int64 (serde_json reads them as floats, rounded to
    // ±2^63) do not fit; i64::MIN - 1 used to be read as i64::MIN.
    misfits(
        DataType::Int64,
        &[
            "9223372036854775808",
            "-9223372036854775809",
            "-9223372036854776000",
            "18446744073709551615",
            "1e19",
            "9.3e18",
            "-9.3e18",
            "1.5",
            "5e-324",
            "\"1\"",
        ],
    );

    // Just below f32::MAX; note that 3.4028235e38, the shortest text for
    // f32::MAX, is just above it and does not fit (as for Parquet).
    fits(DataType::Float32, &["3.4028234e38", "-3.4028234e38", "1e-50", "-0", "5e-324", "1"]);
    misfits(DataType::Float32, &["3.5e38", "-3.5e38", "1e300", "1.7976931348623157e308", "\"1.5\""]);

    fits(
        DataType::Float64,
        &["1.7976931348623157e308", "-1.7976931348623157e308", "5e-324", "1e-400", "18446744073709551616"],
    );
    misfits(DataType::Float64, &["\"NaN\"", "\"1e400\"", "[1.5]"]);
    // serde_json refuses numbers out of f64's range, and non-JSON literals.
    not_json(&["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "01", "+1", ".5", "1.", "0x10"]);

    fits(DataType::String, &["\"\"", "\"\\u0000\"", "\"\\uD83D\\uDE00\""]);
    misfits(DataType::String, &["12", "true", "[\"a\"]"]);
    not_json(&["\"\\ud800\"", "\"\\x\"", "'a'"]);
    fits(DataType::Bytes, &["\"\"", "\"abc\""]);
    misfits(DataType::Bytes, &["[1, 2]", "12"]);

    let f32s = DataType::Array(ElementType::Float32);
    fits(f32s, &["[]", "[1, 2.5, -3]", "[3.4028234e38]"]);
    misfits(f32s, &["[1, null]", "[[1]]", "[1e300]", "[\"1\"]", "1", "\"[1]\"", "{\"0\": 1}"]);
    let ints = DataType::Array(ElementType::Int64);
    fits(ints, &["[9223372036854775807, -9223372036854775808, 2.0]"]);
    misfits(ints, &["[9223372036854775808]", "[1.5]", "[null]"]);
    misfits(DataType::Array(ElementType::String), &["[\"a\", 1]", "[null]"]);
    misfits(DataType::Array(ElementType::Float64), &["[true]"]);

    // The element at fault is named.
    let (_, detail) = outcome(&field_of(f32s), "[1, 2, null]").unwrap_err();
    assert!(detail.contains("element 2 is null"), "{detail}");
    let (_, detail) = outcome(&field_of(ints), "[1, 2, 3.5]").unwrap_err();
    assert!(detail.contains("element 2: a number 3.5 is not a valid int64"), "{detail}");
}

#[test]
fn extreme_event_times() {
    let fits = [
        "0",
        "-1",
        "1.5",
        "9223372036854775",
        "-9223372036854775",
        "9.1e15",
        "\"1970-01-01T00:00:00Z\"",
        "\"9999-12-31T23:59:59.999999999Z\"",
        "\"0000-01-01T00:00:00+23:59\"",
        "\"2026-11-21T10:00:00.5+01:00\"",
    ];
    for raw in fits {
        assert_eq!(outcome(TIME, raw), Ok(()), "{raw}");
    }
    // Milliseconds whose microseconds overflow an i64, and strings that are
    // not RFC 3339 dates, are not event times.
    let misfits = [
        "9223372036854776",
        "-9223372036854776",
        "9223372036854775807",
        "18446744073709551615",
        "1e300",
        "-1e300",
        "9.3e15",
        "\"2026-02-30T00:00:00Z\"",
        "\"+10000-01-01T00:00:00Z\"",
        "\"2026-11-21T10:00:00+25:00\"",
        "\"2026-11-21\"",
        "\"\"",
        "true",
        "[1]",
        "{}",
        "null",
    ];
    for raw in misfits {
        let (reason, detail) = outcome(TIME, raw).expect_err(raw);
        assert_eq!(reason, BadReason::NoEventTime, "{raw}: {detail}");
        assert!(detail.contains(&format!("`{TIME}`")), "{detail}");
    }
    let (_, detail) = outcome(TIME, "9223372036854776").unwrap_err();
    assert!(detail.contains("epoch milliseconds or an RFC 3339 string"), "{detail}");
}

#[test]
fn keys_that_are_null_or_do_not_fit() {
    let (reason, detail) = outcome(KEY, "null").unwrap_err();
    assert_eq!((reason, detail.as_str()), (BadReason::MissingKey, "key field `uid` is missing or null"));
    let (reason, detail) = outcome(KEY, "9223372036854775808").unwrap_err();
    assert_eq!(reason, BadReason::BadValue);
    assert!(detail.starts_with("field `uid`: a number 9223372036854775808 is not a valid int64"), "{detail}");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    const N: usize = 100_000;
    let deep = [
        format!("{}{}", "[".repeat(N), "]".repeat(N)),
        "[".repeat(N),
        format!("{}1{}", "{\"a\":".repeat(N), "}".repeat(N)),
        "{\"a\":".repeat(N),
        format!("{}{}", "[{\"a\":".repeat(N / 2), "}]".repeat(N / 2)),
    ];
    for text in &deep {
        // As the whole message, and as the value of an untyped and a typed field.
        for message in [
            text.clone(),
            with_field(UNTYPED, text),
            with_field(&field_of(DataType::Array(ElementType::Int64)), text),
        ] {
            let d = run_texts(&[&message, &with_field(UNTYPED, "1")]);
            assert_eq!(d.rows, vec![1], "the good message beside it");
            let detail = detail_of(&d, 0);
            assert_eq!(reason_of(&d, 0), Some(BadReason::NotJson), "{detail}");
            assert!(
                detail.contains("recursion limit exceeded") || detail.contains("EOF while parsing"),
                "{detail}"
            );
        }
    }
    // Nesting within serde_json's limit is fine where nothing reads it, and a
    // type error naming the field where something does.
    let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(outcome(UNTYPED, &nested), Ok(()));
    let (reason, detail) = outcome(&field_of(DataType::Array(ElementType::Int64)), &nested).unwrap_err();
    assert_eq!(reason, BadReason::BadValue);
    assert!(detail.starts_with("field `f_array_int64_`: element 0: an array [[[["), "{detail}");
}

#[test]
fn not_objects_and_not_json() {
    let big = format!("\"{}\"", "x".repeat(1 << 20));
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b" ".to_vec(),
        b"null".to_vec(),
        b"1".to_vec(),
        b"\"s\"".to_vec(),
        b"[]".to_vec(),
        b"[{\"uid\": 1, \"ts\": 1}]".to_vec(),
        b"{\"uid\": 1, \"ts\": 1} x".to_vec(),
        b"{\"uid\": 1, \"ts\": 1}{}".to_vec(),
        b"\xEF\xBB\xBF{\"uid\": 1, \"ts\": 1}".to_vec(),
        b"{\"uid\": 1, \"ts\": 1, \"tag\": \"\xff\"}".to_vec(),
        b"{\"uid\": 1, \"ts\": 1, \"\xc3\": 1}".to_vec(),
        b"{\"uid\": 1\x00, \"ts\": 1}".to_vec(),
        b"{\"uid\": 1, \"ts\": 1".to_vec(),
        b"{uid: 1, ts: 1}".to_vec(),
        big.into_bytes(),
    ];
    let mut payloads: Vec<Option<&[u8]>> = cases.iter().map(|c| Some(c.as_slice())).collect();
    payloads.push(None);
    let d = run(&payloads);
    assert!(d.rows.is_empty(), "{:?}", d.rows);
    assert!(d.bad.iter().all(|b| b.reason == BadReason::NotJson), "{:?}", d.bad);
}

#[test]
fn huge_values_are_cut_short_in_details() {
    let long = format!("\"{}\"", "é".repeat(1 << 20));
    let d = run_texts(&[
        &with_field(&field_of(DataType::Int64), &long),
        &with_field(&field_of(DataType::String), &long),
    ]);
    assert_eq!(d.rows, vec![1], "a 2 MB string is a fine string");
    let detail = detail_of(&d, 0);
    assert!(detail.starts_with("field `f_int64`: a string \"ééé") && detail.len() < 120, "{detail}");
    // Duplicate keys: the last one counts, either way round.
    assert_eq!(outcome(KEY, "1, \"uid\": \"x\"").unwrap_err().0, BadReason::BadValue);
    assert_eq!(outcome(KEY, "\"x\", \"uid\": 1"), Ok(()));
}
