//! The RocksDB key layout.
//!
//! Row-view values live in the `rows` column family under
//!
//! ```text
//! view fingerprint (u64 BE) | generation (u32 BE) | entity key
//! ```
//!
//! - The **fingerprint** hashes the view's whole checked definition (entity
//!   keys, source, features with their types and expressions, filter). A
//!   changed definition gets a new key space, so values computed by an old
//!   definition are never served as if the new one had computed them.
//! - The **generation** lets a REPLACE load a complete new snapshot beside the
//!   old one and switch readers over with one metadata write; the old
//!   generation is then one contiguous range to delete.
//! - The **entity key** is every key column in the entity's order, each tagged
//!   with its type and encoded so that the concatenation is unambiguous and
//!   sorts like the tuple of values: int64 as `0x01` + 8 bytes big-endian with
//!   the sign bit flipped; string as `0x02` + UTF-8 bytes with `0x00` escaped
//!   as `0x00 0xFF`, terminated by `0x00 0x01`. No key is a prefix of another
//!   key of the same view, which the windowed aggregations (tile keys appended
//!   after the entity key) rely on.
//!
//! Aggregating views keep partial aggregates in the `aggs` column family, per
//! entity and tile, and once per entity for lifetime aggregates:
//!
//! ```text
//! view fingerprint | generation | entity key | 0x10 tile index                  (fine tile)
//! view fingerprint | generation | entity key | 0x11 span (u64 BE) | tile index (coarse tile)
//! view fingerprint | generation | entity key | 0x20                              (lifetime state)
//! ```
//!
//! Tile indices are i64 big-endian with the sign bit flipped. A coarse tile
//! of span S microseconds and index k holds the events of [k·S, (k+1)·S)
//! (see `fstore_dsl::tiles`); naming its span in the key keeps the tiles of
//! each size apart whatever sizes a later version keeps. One entity's fine
//! tiles are contiguous in time order, then its coarse tiles by size and
//! time, then its lifetime state: each run of tiles a window reads is one
//! seek and a short forward scan.

/// One entity key column's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPart<'a> {
    Int(i64),
    Str(&'a str),
}

const TAG_INT: u8 = 0x01;
const TAG_STR: u8 = 0x02;

/// Length of [`view_prefix`].
pub const PREFIX_LEN: usize = 12;

/// The first bytes of every key of one generation of one view.
pub fn view_prefix(fingerprint: u64, generation: u32) -> [u8; PREFIX_LEN] {
    let mut out = [0u8; PREFIX_LEN];
    out[..8].copy_from_slice(&fingerprint.to_be_bytes());
    out[8..].copy_from_slice(&generation.to_be_bytes());
    out
}

/// Append the encoding of one entity key (all its columns) to `out`.
pub fn push_entity_key(out: &mut Vec<u8>, parts: &[KeyPart<'_>]) {
    for part in parts {
        push_key_part(out, *part);
    }
}

pub fn push_key_part(out: &mut Vec<u8>, part: KeyPart<'_>) {
    match part {
        KeyPart::Int(v) => {
            out.push(TAG_INT);
            out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        }
        KeyPart::Str(s) => {
            out.push(TAG_STR);
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0x00, 0x01]);
        }
    }
}

const TAG_TILE: u8 = 0x10;
const TAG_COARSE: u8 = 0x11;
const TAG_LIFETIME: u8 = 0x20;

/// Append the suffix of the state of fine tile `tile` (after the entity key).
pub fn push_tile(out: &mut Vec<u8>, tile: i64) {
    out.push(TAG_TILE);
    push_index(out, tile);
}

/// Append the suffix of the state of the coarse tile of `span_micros` with
/// index `tile` (after the entity key).
pub fn push_coarse_tile(out: &mut Vec<u8>, span_micros: i64, tile: i64) {
    out.push(TAG_COARSE);
    out.extend_from_slice(&(span_micros as u64).to_be_bytes());
    push_index(out, tile);
}

/// Append the suffix of the tile of `span_micros` (the view's resolution for
/// a fine tile) with index `tile`.
pub fn push_tile_of_span(out: &mut Vec<u8>, resolution_micros: i64, span_micros: i64, tile: i64) {
    if span_micros == resolution_micros {
        push_tile(out, tile)
    } else {
        push_coarse_tile(out, span_micros, tile)
    }
}

fn push_index(out: &mut Vec<u8>, tile: i64) {
    out.extend_from_slice(&((tile as u64) ^ (1 << 63)).to_be_bytes());
}

fn read_index(raw: &[u8]) -> Option<i64> {
    let raw: [u8; 8] = raw.try_into().ok()?;
    Some((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

/// Append the suffix of an entity's lifetime state (sorts after all its tiles).
pub fn push_lifetime(out: &mut Vec<u8>) {
    out.push(TAG_LIFETIME);
}

/// What an `aggs` key holds, read from its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggSlot {
    /// A fine tile, by index.
    Tile(i64),
    /// A coarse tile: its span in microseconds and its index.
    Coarse {
        span_micros: i64,
        tile: i64,
    },
    Lifetime,
}

/// The slot of an aggregate-state key, given the bytes after the view prefix
/// and the number of entity key columns. `None` if the bytes are not one.
pub fn agg_slot(after_prefix: &[u8], key_parts: usize) -> Option<AggSlot> {
    let rest = after_prefix.get(entity_key_len(after_prefix, key_parts)?..)?;
    match rest.split_first()? {
        (&TAG_TILE, raw) => Some(AggSlot::Tile(read_index(raw)?)),
        (&TAG_COARSE, raw) if raw.len() == 16 => {
            let span: [u8; 8] = raw[..8].try_into().ok()?;
            let span_micros = i64::try_from(u64::from_be_bytes(span)).ok().filter(|s| *s > 0)?;
            Some(AggSlot::Coarse { span_micros, tile: read_index(&raw[8..])? })
        }
        (&TAG_LIFETIME, []) => Some(AggSlot::Lifetime),
        _ => None,
    }
}

/// Length of the `parts`-column entity key at the start of `bytes`.
fn entity_key_len(bytes: &[u8], parts: usize) -> Option<usize> {
    let mut pos = 0;
    for _ in 0..parts {
        match *bytes.get(pos)? {
            TAG_INT => pos += 9,
            TAG_STR => {
                pos += 1;
                loop {
                    match (*bytes.get(pos)?, bytes.get(pos + 1)) {
                        (0x00, Some(0x01)) => {
                            pos += 2;
                            break;
                        }
                        (0x00, _) => pos += 2,
                        _ => pos += 1,
                    }
                }
            }
            _ => return None,
        }
    }
    (pos <= bytes.len()).then_some(pos)
}

/// Decode an entity key produced by [`push_entity_key`], for diagnostics and tests.
pub fn decode_entity_key(mut bytes: &[u8]) -> Option<Vec<OwnedKeyPart>> {
    let mut parts = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        match tag {
            TAG_INT => {
                let raw: [u8; 8] = rest.get(..8)?.try_into().ok()?;
                parts.push(OwnedKeyPart::Int((u64::from_be_bytes(raw) ^ (1 << 63)) as i64));
                bytes = &rest[8..];
            }
            TAG_STR => {
                let mut s = Vec::new();
                let mut i = 0;
                loop {
                    match (rest.get(i)?, rest.get(i + 1)) {
                        (0x00, Some(0xFF)) => {
                            s.push(0);
                            i += 2;
                        }
                        (0x00, Some(0x01)) => {
                            i += 2;
                            break;
                        }
                        (0x00, _) => return None,
                        (&b, _) => {
                            s.push(b);
                            i += 1;
                        }
                    }
                }
                parts.push(OwnedKeyPart::Str(String::from_utf8(s).ok()?));
                bytes = &rest[i..];
            }
            _ => return None,
        }
    }
    Some(parts)
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnedKeyPart {
    Int(i64),
    Str(String),
}

impl OwnedKeyPart {
    pub fn as_part(&self) -> KeyPart<'_> {
        match self {
            OwnedKeyPart::Int(v) => KeyPart::Int(*v),
            OwnedKeyPart::Str(s) => KeyPart::Str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part() -> impl Strategy<Value = OwnedKeyPart> {
        prop_oneof![
            any::<i64>().prop_map(OwnedKeyPart::Int),
            ".{0,12}".prop_map(OwnedKeyPart::Str),
            // Strings full of the escape byte and the terminator's second byte.
            proptest::collection::vec(prop_oneof![Just('\0'), Just('\u{1}'), Just('a')], 0..6)
                .prop_map(|c| OwnedKeyPart::Str(c.into_iter().collect())),
        ]
    }

    fn encode(parts: &[OwnedKeyPart]) -> Vec<u8> {
        let mut out = Vec::new();
        let borrowed: Vec<_> = parts.iter().map(|p| p.as_part()).collect();
        push_entity_key(&mut out, &borrowed);
        out
    }

    proptest! {
        #[test]
        fn entity_keys_round_trip(parts in proptest::collection::vec(part(), 1..4)) {
            prop_assert_eq!(decode_entity_key(&encode(&parts)), Some(parts));
        }

        #[test]
        fn encoding_is_injective_and_order_preserving(
            a in proptest::collection::vec(part(), 2),
            b in proptest::collection::vec(part(), 2),
        ) {
            // Same shape (types per position) so the tuples are comparable.
            let same_shape = a.iter().zip(&b).all(|(x, y)| std::mem::discriminant(x) == std::mem::discriminant(y));
            prop_assume!(same_shape);
            let (ea, eb) = (encode(&a), encode(&b));
            prop_assert_eq!(ea == eb, a == b);
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
        }
    }

    #[test]
    fn composite_keys_are_unambiguous() {
        // ("a\0", "b") and ("a", "\0b") would collide under naive concatenation.
        let x = encode(&[OwnedKeyPart::Str("a\0".into()), OwnedKeyPart::Str("b".into())]);
        let y = encode(&[OwnedKeyPart::Str("a".into()), OwnedKeyPart::Str("\0b".into())]);
        assert_ne!(x, y);
        assert!(!x.starts_with(&y) && !y.starts_with(&x));
    }

    proptest! {
        #[test]
        fn tile_keys_sort_in_time_order_before_the_lifetime_state(
            parts in proptest::collection::vec(part(), 1..3),
            a in any::<i64>(),
            b in any::<i64>(),
            span in 1i64..i64::MAX,
            other_span in 1i64..i64::MAX,
        ) {
            let entity = encode(&parts);
            let key = |slot: Option<i64>| {
                let mut k = entity.clone();
                match slot {
                    Some(t) => push_tile(&mut k, t),
                    None => push_lifetime(&mut k),
                }
                k
            };
            let coarse = |span: i64, t: i64| {
                let mut k = entity.clone();
                push_coarse_tile(&mut k, span, t);
                k
            };
            prop_assert_eq!(key(Some(a)).cmp(&key(Some(b))), a.cmp(&b));
            prop_assert!(key(Some(a)) < key(None));
            // Coarse tiles: after every fine tile, grouped by span, in time
            // order within a span, before the lifetime state.
            prop_assert!(key(Some(a)) < coarse(span, b));
            prop_assert!(coarse(span, a) < key(None));
            prop_assert_eq!(coarse(span, a).cmp(&coarse(span, b)), a.cmp(&b));
            if span != other_span {
                prop_assert_eq!(coarse(span, a).cmp(&coarse(other_span, b)), span.cmp(&other_span));
            }
            prop_assert_eq!(
                agg_slot(&coarse(span, a), parts.len()),
                Some(AggSlot::Coarse { span_micros: span, tile: a })
            );
            prop_assert_eq!(agg_slot(&key(Some(a)), parts.len()), Some(AggSlot::Tile(a)));
            prop_assert_eq!(agg_slot(&key(None), parts.len()), Some(AggSlot::Lifetime));
            prop_assert_eq!(agg_slot(&entity, parts.len()), None);
        }
    }

    #[test]
    fn prefix_orders_generations_within_a_view() {
        assert!(view_prefix(7, 1) < view_prefix(7, 2));
        assert!(view_prefix(7, u32::MAX) < view_prefix(8, 0));
    }
}
