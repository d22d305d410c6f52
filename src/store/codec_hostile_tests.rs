//! Hostile input for the stored-row decoder: whatever the bytes (random,
//! truncated, extended or bit-flipped encodings, read as random type lists),
//! `decode_row` never panics, never allocates more than a small multiple of
//! its input (a length prefix of 2^60 is an error, not an allocation), and
//! fails with a `CorruptRow` naming what was wrong; a valid encoding
//! round-trips. `event_time_of`, which the `rows` merge operator runs on
//! stored bytes, reads any bytes. And the RocksDB merge operators of both
//! column families, which cannot be called without a database (RocksDB's
//! `MergeOperands` has no public constructor), are run through a real one on
//! garbage operands: no panic (which would abort the process from inside
//! RocksDB), and what they make of the garbage is pinned down here.

use arrow::array::ArrayRef;
use fstore_dsl::{DataType, ElementType};
use proptest::prelude::*;

use super::put_varint_u64;
use super::tests::{to_arrow, value};
use super::{
    decode_row, encode_row, event_time_of, ColumnRef, CorruptRow, DecodedRow, FORMAT_VERSION, HEADER_LEN,
};
use crate::proto::{self, value::Kind};

/// Every reason `decode_row` gives.
const REASONS: &[&str] = &[
    "unknown format version",
    "truncated",
    "length overflow",
    "length past the end",
    "varint too long",
    "varint not minimal",
    "invalid UTF-8",
    "trailing bytes",
];

/// Rough heap size of a decoded value, to bound what decoding allocates.
fn heap_size(kind: &Kind) -> usize {
    match kind {
        Kind::StringValue(s) => s.len(),
        Kind::BytesValue(b) => b.len(),
        Kind::Float32List(l) => 4 * l.values.len(),
        Kind::Float64List(l) => 8 * l.values.len(),
        Kind::Int64List(l) => 8 * l.values.len(),
        Kind::StringList(l) => l.values.iter().map(|s| std::mem::size_of::<String>() + s.len()).sum(),
        _ => 0,
    }
}

/// The result of decoding any bytes as `types`: a row of one value of the
/// right type (or null) per feature, with the event time `event_time_of`
/// sees, using no more than 24 heap bytes per input byte; or a `CorruptRow`
/// whose message names a known reason.
fn check_decoded(bytes: &[u8], types: &[DataType], result: &Result<DecodedRow, CorruptRow>) {
    match result {
        Ok(row) => {
            assert_eq!(row.values.len(), types.len());
            for (v, ty) in row.values.iter().zip(types) {
                if let Some(kind) = &v.kind {
                    assert!(super::kind_fits(kind, *ty), "{kind:?} for {ty}");
                }
            }
            assert_eq!(event_time_of(bytes), Some(row.event_time));
            let heap: usize = row.values.iter().filter_map(|v| v.kind.as_ref()).map(heap_size).sum();
            assert!(heap <= 24 * bytes.len(), "{heap} heap bytes from {} input bytes", bytes.len());
        }
        Err(e) => {
            let message = e.to_string();
            let reason = message.strip_prefix("stored row is corrupt: ").expect("message shape");
            assert!(REASONS.contains(&reason), "{message}");
        }
    }
}

fn decode_checked(bytes: &[u8], types: &[DataType]) -> Result<DecodedRow, CorruptRow> {
    let result = decode_row(bytes, types);
    check_decoded(bytes, types, &result);
    result
}

// ---------------------------------------------------------------------------
// Valid rows.
// ---------------------------------------------------------------------------

fn types(max: usize) -> impl Strategy<Value = Vec<DataType>> {
    proptest::collection::vec(proptest::sample::select(DataType::ALL.to_vec()), 0..max)
}

/// A row: its types, its values (None = null) and its event time.
fn row() -> impl Strategy<Value = (Vec<DataType>, Vec<Option<Kind>>, i64)> {
    (types(12), any::<i64>()).prop_flat_map(|(types, t)| {
        let values: Vec<_> = types.iter().map(|ty| proptest::option::of(value(*ty))).collect();
        (Just(types), values, Just(t))
    })
}

fn encode(types: &[DataType], values: &[Option<Kind>], event_time: i64) -> Vec<u8> {
    let arrays: Vec<ArrayRef> =
        types.iter().zip(values).map(|(t, v)| to_arrow(*t, std::slice::from_ref(v))).collect();
    let columns: Vec<ColumnRef> =
        arrays.iter().zip(types).map(|(a, t)| ColumnRef::new(a, *t).expect("column of its type")).collect();
    let mut out = Vec::new();
    encode_row(event_time, &columns, 0, &mut out).expect("no null array elements");
    out
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Random bytes (mostly starting with the format version, to get past
    /// the first check) read as a random list of up to 12 types.
    #[test]
    fn garbage_as_random_types(
        version_first in any::<bool>(),
        mut bytes in proptest::collection::vec(any::<u8>(), 0..96),
        types in types(12),
    ) {
        if version_first && !bytes.is_empty() {
            bytes[0] = FORMAT_VERSION;
        }
        let _ = decode_checked(&bytes, &types);
    }

    /// `event_time_of` reads bytes 1..9 of anything at least 9 bytes long.
    #[test]
    fn event_time_of_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let expected = (bytes.len() >= HEADER_LEN)
            .then(|| i64::from_le_bytes(bytes[1..HEADER_LEN].try_into().unwrap()));
        prop_assert_eq!(event_time_of(&bytes), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A valid encoding round-trips; every strict prefix of it is an error;
    /// one byte more is "trailing bytes"; any bit flip, or reading it as
    /// other types, decodes or fails cleanly.
    #[test]
    fn valid_rows_and_their_damage(
        (types, values, event_time) in row(),
        flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..16),
        other_types in types(12),
        extra in any::<u8>(),
    ) {
        let bytes = encode(&types, &values, event_time);
        let decoded = decode_checked(&bytes, &types).expect("a valid row decodes");
        prop_assert_eq!(decoded.event_time, event_time);
        let expected: Vec<proto::Value> = values.iter().map(|v| proto::Value { kind: v.clone() }).collect();
        prop_assert_eq!(decoded.values, expected);

        for cut in 0..bytes.len() {
            prop_assert!(decode_checked(&bytes[..cut], &types).is_err(), "prefix of {} bytes", cut);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert_eq!(decode_checked(&longer, &types), Err(CorruptRow("trailing bytes")));

        for &(at, bit) in &flips {
            let mut flipped = bytes.clone();
            flipped[at % bytes.len()] ^= 1 << bit;
            let _ = decode_checked(&flipped, &types);
        }
        let _ = decode_checked(&bytes, &other_types);
    }
}

/// A row header (version, event time 0, all-present bitmap) for `types`.
fn header(types: &[DataType]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(&0i64.to_le_bytes());
    out.resize(out.len() + types.len().div_ceil(8), 0);
    out
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint_u64(&mut out, v);
    out
}

#[test]
fn absurd_lengths_are_errors_not_allocations() {
    let length_prefixed = [
        DataType::String,
        DataType::Bytes,
        DataType::Array(ElementType::Float32),
        DataType::Array(ElementType::Float64),
        DataType::Array(ElementType::Int64),
        DataType::Array(ElementType::String),
    ];
    for ty in length_prefixed {
        for claimed in [1u64 << 60, 1 << 63, u64::MAX, 1 << 32, u32::MAX as u64, 5] {
            let mut bytes = header(&[ty]);
            bytes.extend(varint(claimed));
            bytes.extend_from_slice(b"abcd");
            assert_eq!(decode_row(&bytes, &[ty]), Err(CorruptRow("length past the end")), "{ty} {claimed}");
        }
        // A varint longer than any u64.
        let mut bytes = header(&[ty]);
        bytes.extend([0xFF; 11]);
        assert_eq!(decode_row(&bytes, &[ty]), Err(CorruptRow("varint too long")), "{ty}");
    }
    // An array whose count is what is left but whose items need more bytes.
    let ty = DataType::Array(ElementType::Float64);
    let mut bytes = header(&[ty]);
    bytes.extend(varint(64));
    bytes.extend([0u8; 64]);
    assert_eq!(decode_row(&bytes, &[ty]), Err(CorruptRow("truncated")));
    // Many features and few bytes: the bitmap is cut short.
    assert_eq!(decode_row(&header(&[]), &[DataType::Bool; 100_000]), Err(CorruptRow("truncated")));
    // A bad version first.
    assert_eq!(decode_row(&[2, 0, 0], &[]), Err(CorruptRow("unknown format version")));
}

#[test]
fn honest_large_counts_decode_in_proportion() {
    // A million empty strings in one megabyte: the worst ratio of decoded to
    // stored size there is (a `String` per input byte), and still bounded.
    let ty = DataType::Array(ElementType::String);
    let n = 1 << 20;
    let mut bytes = header(&[ty]);
    bytes.extend(varint(n));
    bytes.resize(bytes.len() + n as usize, 0);
    let row = decode_checked(&bytes, &[ty]).expect("valid");
    assert!(matches!(&row.values[0].kind, Some(Kind::StringList(l)) if l.values.len() == n as usize));
}

// ---------------------------------------------------------------------------
// The merge operators of the `rows` and `aggs` column families, through a
// real database (they cannot be called without one).
// ---------------------------------------------------------------------------

mod merge_operators {
    use std::cell::{Cell, RefCell};

    use fstore_dsl::agg::{Partial, State};
    use proptest::test_runner::TestRunner;

    use super::*;
    use crate::store::{keys, Durability, Store};

    const FINGERPRINT: u64 = 0xF00D;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &crate::config::Config::defaults().store).expect("open");
        (dir, store)
    }

    /// The key of entity `id`: a row key, and the prefix of its aggregate states.
    fn entity(id: i64) -> Vec<u8> {
        let mut key = keys::view_prefix(FINGERPRINT, 1).to_vec();
        keys::push_entity_key(&mut key, &[keys::KeyPart::Int(id)]);
        key
    }

    fn lifetime_key(id: i64) -> Vec<u8> {
        let mut key = entity(id);
        keys::push_lifetime(&mut key);
        key
    }

    fn count_state(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        State(vec![Partial::Count(n)]).encode(&mut out);
        out
    }

    /// One operand for a key: a good encoded value, or garbage.
    #[derive(Clone, Debug)]
    enum Operand {
        /// A valid row with this event time; for `aggs`, a `count()` state of this count.
        Good(i64),
        Garbage(Vec<u8>),
    }

    fn operand() -> impl Strategy<Value = Operand> {
        prop_oneof![
            (-5i64..5).prop_map(Operand::Good),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Operand::Garbage),
        ]
    }

    /// Operands for one key, at least one of them good.
    fn operands() -> impl Strategy<Value = Vec<Operand>> {
        proptest::collection::vec(operand(), 1..8)
            .prop_filter("one good operand", |ops| ops.iter().any(|o| matches!(o, Operand::Good(_))))
    }

    fn row_bytes(op: &Operand, id: i64, n: usize) -> Vec<u8> {
        match op {
            Operand::Good(t) => {
                encode(&[DataType::Int64], &[Some(Kind::Int64Value(id * 100 + n as i64))], *t)
            }
            Operand::Garbage(bytes) => bytes.clone(),
        }
    }

    /// Garbage that never decodes as a state (it does not start with the
    /// format version), so merging is order-independent and exact.
    fn agg_bytes(op: &Operand) -> Vec<u8> {
        match op {
            Operand::Good(n) => count_state(n.unsigned_abs()),
            Operand::Garbage(bytes) => {
                let mut bytes = bytes.clone();
                if bytes.first() == Some(&1) {
                    bytes[0] = 0;
                }
                bytes
            }
        }
    }

    /// What the `rows` operator keeps: of the operands with an event time
    /// (at least 9 bytes, garbage included), the newest, later written ones
    /// winning ties.
    fn newest(ops: &[Vec<u8>]) -> Option<Vec<u8>> {
        let mut best: Option<(&Vec<u8>, i64)> = None;
        for op in ops {
            if let Some(t) = event_time_of(op) {
                if best.is_none_or(|(_, bt)| t >= bt) {
                    best = Some((op, t));
                }
            }
        }
        best.map(|(op, _)| op.clone())
    }

    /// Write each key's operands (over several batches), then check what
    /// reads return, before and after a compaction that runs the operators
    /// as full merges into the bottom level; writes still succeed after.
    #[test]
    fn garbage_operands_beside_good_ones() {
        let (_dir, store) = open();
        const CASES: u32 = 200;
        let mut runner = TestRunner::new(ProptestConfig::with_cases(CASES));
        let next_id = Cell::new(0i64);
        let expected_rows: RefCell<Vec<(i64, Vec<u8>)>> = RefCell::default();
        let expected_counts: RefCell<Vec<(i64, u64)>> = RefCell::default();
        runner
            .run(&(operands(), operands(), 1usize..4), |(row_ops, agg_ops, batches)| {
                let id = next_id.get() + 1;
                next_id.set(id);
                let rows: Vec<Vec<u8>> =
                    row_ops.iter().enumerate().map(|(n, op)| row_bytes(op, id, n)).collect();
                let aggs: Vec<Vec<u8>> = agg_ops.iter().map(agg_bytes).collect();
                for chunk in 0..batches {
                    let mut batch = store.batch();
                    for bytes in rows.iter().skip(chunk).step_by(batches) {
                        batch.upsert(&entity(id), bytes);
                    }
                    for bytes in aggs.iter().skip(chunk).step_by(batches) {
                        batch.merge_agg(&lifetime_key(id), bytes);
                    }
                    store.write_rows(batch, Durability::Wal).expect("write");
                }
                // Operands in the order they were written.
                let written: Vec<Vec<u8>> = (0..batches)
                    .flat_map(|chunk| rows.iter().skip(chunk).step_by(batches).cloned())
                    .collect();
                let want = newest(&written).expect("a good operand");
                let got =
                    store.multi_get_rows(&[entity(id)]).pop().unwrap().expect("read").map(|v| v.to_vec());
                prop_assert_eq!(got.as_ref(), Some(&want));
                let count: u64 = agg_ops
                    .iter()
                    .filter_map(|op| match op {
                        Operand::Good(n) => Some(n.unsigned_abs()),
                        Operand::Garbage(_) => None,
                    })
                    .sum();
                let states = store.read_agg_states(&[entity(id)], 60_000_000, &[]).expect("read states");
                let lifetime = states[0].as_ref().and_then(|s| s.lifetime.clone());
                prop_assert_eq!(lifetime, Some(State(vec![Partial::Count(count)])));
                expected_rows.borrow_mut().push((id, want));
                expected_counts.borrow_mut().push((id, count));
                Ok(())
            })
            .expect("merge operators");
        assert_eq!(expected_rows.borrow().len(), CASES as usize);

        store.compact_generation(FINGERPRINT, 1);
        for (id, want) in expected_rows.borrow().iter() {
            let got = store.multi_get_rows(&[entity(*id)]).pop().unwrap().expect("read").map(|v| v.to_vec());
            assert_eq!(got.as_ref(), Some(want), "entity {id} after compaction");
        }
        for (id, count) in expected_counts.borrow().iter() {
            let states = store.read_agg_states(&[entity(*id)], 60_000_000, &[]).expect("read states");
            let lifetime = states[0].as_ref().and_then(|s| s.lifetime.clone());
            assert_eq!(lifetime, Some(State(vec![Partial::Count(*count)])), "entity {id} after compaction");
        }
        let mut batch = store.batch();
        batch.upsert(&entity(0), &encode(&[], &[], 0));
        store.write_rows(batch, Durability::Wal).expect("writes still succeed");
    }

    /// Only garbage for a key: the operators keep the bytes as they are
    /// (returning nothing would fail the read in RocksDB and, in a
    /// compaction, stop every later write); decoding them reports the
    /// corruption for that key alone.
    #[test]
    fn garbage_only_is_kept_and_reported_when_decoded() {
        let (_dir, store) = open();
        let mut batch = store.batch();
        batch.upsert(&entity(1), b"\x01\x02");
        batch.upsert(&entity(1), b"");
        batch.merge_agg(&lifetime_key(1), b"\x01\x05");
        batch.merge_agg(&lifetime_key(1), b"junk");
        batch.upsert(&entity(2), &encode(&[], &[], 7));
        store.write_rows(batch, Durability::Wal).expect("write");
        let read = store.multi_get_rows(&[entity(1), entity(2)]);
        let kept = read[0].as_ref().expect("the read succeeds").as_ref().expect("something is kept").to_vec();
        assert!(decode_row(&kept, &[]).is_err(), "the kept bytes decode as corrupt");
        assert!(read[1].is_ok(), "other keys read fine");
        let states = store.read_agg_states(&[entity(1)], 60_000_000, &[]);
        if let Ok(states) = states {
            assert!(states[0].as_ref().is_none_or(|s| s.lifetime.is_none()), "garbage is never a state");
        }
    }

    /// Garbage-only keys must not fail a compaction: RocksDB would record a
    /// background error and refuse every later write.
    #[test]
    fn garbage_only_keys_do_not_stop_writes_after_compaction() {
        let (_dir, store) = open();
        let mut batch = store.batch();
        batch.upsert(&entity(1), b"\x01\x02");
        batch.merge_agg(&lifetime_key(1), b"junk");
        store.write_rows(batch, Durability::Wal).expect("write");
        store.compact_generation(FINGERPRINT, 1);
        let mut batch = store.batch();
        batch.upsert(&entity(2), &encode(&[], &[], 7));
        store.write_rows(batch, Durability::Wal).expect("writes still succeed");
    }
}
