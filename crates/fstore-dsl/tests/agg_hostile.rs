//! Hostile input for the aggregate-state decoder and `merge_encoded` (the
//! `aggs` merge operator): whatever the bytes, `State::decode` never panics,
//! allocates at most a small multiple of its input (measured here with a
//! counting allocator: a length or count of 2^60 is an error, not an
//! allocation), and fails with a `CorruptState` naming a known reason; what
//! decodes is canonical. Every strict prefix of a valid encoding fails, and
//! any bit flip decodes canonically or fails. `merge_encoded` ignores
//! operands that do not decode, wherever they are, and gives `None` only when
//! nothing decodes. (Round trips and random bytes are also in `agg.rs`.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use fstore_dsl::agg::{merge_encoded, Partial, Scalar, State};
use proptest::prelude::*;

mod strategies;
use strategies::*;

// ---------------------------------------------------------------------------
// Counting what one call allocates.
// ---------------------------------------------------------------------------

/// The system allocator, counting the bytes each thread asks for.
struct Counting;

thread_local! {
    static REQUESTED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: nothing to count once the thread's locals are gone.
    let _ = REQUESTED.try_with(|r| r.set(r.get().saturating_add(bytes)));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `f()` and the bytes it asked the allocator for on this thread (reallocs
/// count their new size, so a growing vector counts about twice its size).
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = REQUESTED.with(Cell::get);
    let out = f();
    (out, REQUESTED.with(Cell::get) - before)
}

/// The most a decode may allocate for `len` input bytes: the largest item
/// one input byte can become (a `Partial`, or an empty `String` in a list),
/// twice for vector growth, and some slack.
fn allocation_bound(len: usize) -> usize {
    let per_byte = std::mem::size_of::<Partial>().max(std::mem::size_of::<String>());
    4 * per_byte * len + 4096
}

// ---------------------------------------------------------------------------
// Checks.
// ---------------------------------------------------------------------------

/// Every reason `State::decode` gives.
const REASONS: &[&str] = &[
    "unknown version",
    "truncated",
    "flag is neither 0 nor 1",
    "varint out of range",
    "varint not minimal",
    "length out of range",
    "invalid UTF-8",
    "unknown partial kind",
    "unknown value type",
    "trailing bytes",
];

fn encoded(s: &State) -> Vec<u8> {
    let mut out = Vec::new();
    s.encode(&mut out);
    out
}

/// Decode any bytes: a canonical state (it re-encodes to the same bytes) or
/// a known reason, within the allocation bound either way.
fn decode_checked(bytes: &[u8]) -> Option<State> {
    let (result, requested) = allocated_by(|| State::decode(bytes));
    assert!(
        requested <= allocation_bound(bytes.len()),
        "{requested} bytes allocated to decode {} bytes",
        bytes.len()
    );
    match result {
        Ok(state) => {
            assert_eq!(encoded(&state), bytes, "a decoded state is canonical");
            Some(state)
        }
        Err(e) => {
            let message = e.to_string();
            let reason = message.strip_prefix("corrupt aggregation state: ").expect("message shape");
            assert!(REASONS.contains(&reason), "{message}");
            None
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

/// Bytes that do not decode as a state.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..48)
        .prop_filter("does not decode", |b| State::decode(b).is_err())
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Random bytes, half of them starting with the format version.
    #[test]
    fn arbitrary_bytes(version_first in any::<bool>(), mut bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        if version_first && !bytes.is_empty() {
            bytes[0] = 1;
        }
        decode_checked(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A valid encoding decodes; every strict prefix, and the encoding with
    /// one more byte, fails; any bit flip decodes canonically or fails.
    #[test]
    fn valid_states_and_their_damage(
        s in state(),
        flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..16),
        extra in any::<u8>(),
    ) {
        let bytes = encoded(&s);
        let back = decode_checked(&bytes).expect("a valid state decodes");
        prop_assert_eq!(back.0.len(), s.0.len());
        for cut in 0..bytes.len() {
            prop_assert!(decode_checked(&bytes[..cut]).is_none(), "prefix of {} bytes", cut);
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(decode_checked(&longer).is_none());
        for &(at, bit) in &flips {
            let mut flipped = bytes.clone();
            flipped[at % bytes.len()] ^= 1 << bit;
            decode_checked(&flipped);
        }
    }

    /// Garbage among the operands of a merge, or as the existing value,
    /// changes nothing: the result is that of the states that decode, and
    /// `None` only if there are none.
    #[test]
    fn merge_ignores_garbage_wherever_it_is(
        existing in proptest::option::of(prop_oneof![state().prop_map(|s| encoded(&s)), garbage()]),
        states in proptest::collection::vec(state(), 0..4),
        garbage in proptest::collection::vec((any::<proptest::sample::Index>(), garbage()), 0..4),
    ) {
        let good: Vec<Vec<u8>> = states.iter().map(encoded).collect();
        let mut all = good.clone();
        for (at, g) in &garbage {
            all.insert(at.index(all.len() + 1), g.clone());
        }
        let existing_good = existing.as_deref().filter(|e| State::decode(e).is_ok());
        let (merged, requested) =
            allocated_by(|| merge_encoded(existing.as_deref(), all.iter().map(Vec::as_slice)));
        let input_len = existing.as_ref().map_or(0, Vec::len) + all.iter().map(Vec::len).sum::<usize>();
        prop_assert!(requested <= 4 * allocation_bound(input_len), "{} bytes allocated", requested);
        let clean = merge_encoded(existing_good, good.iter().map(Vec::as_slice));
        prop_assert_eq!(&merged, &clean);
        prop_assert_eq!(merged.is_some(), existing_good.is_some() || !good.is_empty());
        if let Some(m) = &merged {
            prop_assert!(decode_checked(m).is_some());
        }
    }
}

// ---------------------------------------------------------------------------
// Absurd lengths and counts, case by case.
// ---------------------------------------------------------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// Decode `bytes`, expecting `reason`, within a few kilobytes of allocation.
fn rejects(bytes: &[u8], reason: &str) {
    let (result, requested) = allocated_by(|| State::decode(bytes));
    let err = result.expect_err("corrupt");
    assert_eq!(err.to_string(), format!("corrupt aggregation state: {reason}"), "{bytes:?}");
    assert!(requested <= 4096, "{requested} bytes allocated for {bytes:?}");
}

#[test]
fn absurd_lengths_and_counts_are_errors_not_allocations() {
    const MIN: u8 = 5; // partial tag of `min`
    const LIST_TAGS: [u8; 6] = [4, 5, 7, 8, 9, 10]; // string, bytes and the four lists
    for claimed in [1u64 << 60, 1 << 63, u64::MAX, 1 << 32, 1000] {
        // The number of partials.
        rejects(&[&[1][..], &varint(claimed), &[0, 0, 0]].concat(), "truncated");
        // The length of a string, of bytes, and of each kind of list.
        for tag in LIST_TAGS {
            rejects(&[&[1, 1, MIN, 1, tag][..], &varint(claimed), b"abcd"].concat(), "truncated");
        }
    }
    // Varints: past 64 bits, and not minimal.
    rejects(&[&[1][..], &[0xFF; 10], &[0x01]].concat(), "varint out of range");
    rejects(&[1, 0x80, 0x00], "varint not minimal");
    // A list whose count fits the bytes left but whose items need more.
    rejects(&[&[1, 1, MIN, 1, 8][..], &varint(16), &[0; 16]].concat(), "truncated");
}

#[test]
fn honest_large_counts_decode_in_proportion() {
    // A million `Empty` partials, and a million empty strings in one list:
    // the most one input byte can become, and still within the bound.
    let n = 1usize << 20;
    let many_partials = [&[1][..], &varint(n as u64), &vec![0; n]].concat();
    let state = decode_checked(&many_partials).expect("valid");
    assert_eq!(state.0.len(), n);
    let many_strings = [&[1, 1, 5, 1, 10][..], &varint(n as u64), &vec![0; n]].concat();
    let state = decode_checked(&many_strings).expect("valid");
    assert!(matches!(&state.0[0], Partial::Min(Some(Scalar::StringList(l))) if l.len() == n));
}
