//! The `rows` column family's merge operator, `newest_row`: of a key's
//! stored value and its merge operands, the newest event time wins.

use rocksdb::MergeOperands;

use super::codec;

/// Pick the newest of the existing value and the operands; on equal event
/// times the later operand wins (arrival order). A value too short to carry
/// an event time (corruption) never wins over a good one.
fn newest<'a>(existing: Option<&'a [u8]>, operands: &'a MergeOperands) -> Option<&'a [u8]> {
    let readable = |v: &[u8]| codec::event_time_of(v).is_some();
    let mut best = existing.filter(|v| readable(v));
    for op in operands {
        if readable(op) && best.is_none_or(|b| replaces(b, op)) {
            best = Some(op);
        }
    }
    best.or(existing)
}

/// Whether `later` replaces `earlier` stored under the same key: the newest
/// event time wins, ties go to the later write, and a row too short to
/// carry an event time (corruption) never wins over a good one. The rule of
/// the `rows` merge operator, and of bulk loads (`bulk`).
pub(super) fn replaces(earlier: &[u8], later: &[u8]) -> bool {
    match (codec::event_time_of(earlier), codec::event_time_of(later)) {
        (Some(e), Some(l)) => l >= e,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// Never fails, for the reason given at [`super::aggs::agg_merge`]: with no readable
/// row at all, the last operand is kept and its read reports the corruption.
fn newest_or_kept<'a>(existing: Option<&'a [u8]>, operands: &'a MergeOperands) -> Option<Vec<u8>> {
    let kept = newest(existing, operands).or_else(|| operands.iter().last());
    Some(kept.map(<[u8]>::to_vec).unwrap_or_default())
}

pub(super) fn newest_row_full_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    newest_or_kept(existing, operands)
}

pub(super) fn newest_row_partial_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    newest_or_kept(existing, operands)
}
