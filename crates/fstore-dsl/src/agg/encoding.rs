//! Encoding: the stored format of a [`State`] (see [`State::decode`]), and
//! the merge of encoded states a RocksDB merge operator runs.

use super::state::{Partial, State};
use super::values::Scalar;
use crate::varint::{self, put_i128, put_i64, put_u64, VarintError};

fn corrupt(e: VarintError) -> CorruptState {
    CorruptState(match e {
        VarintError::Truncated => "truncated",
        VarintError::OutOfRange => "varint out of range",
        VarintError::NotMinimal => "varint not minimal",
    })
}

/// The version of the stored state format. A view's identity names it
/// (the server's `registry::identity`), so a new version re-keys the
/// aggregating views whose states it cannot read.
pub const STATE_FORMAT_VERSION: u8 = 1;
pub(super) const VERSION: u8 = STATE_FORMAT_VERSION;

/// A stored state that does not decode; the reason names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt aggregation state: {0}")]
pub struct CorruptState(pub(super) &'static str);

impl State {
    /// Append the state's encoding to `out`; see [`State::decode`] for the format.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        put_u64(out, self.0.len() as u64);
        for p in &self.0 {
            put_partial(out, p);
        }
    }

    /// Decode a state written by [`State::encode`]. Never panics; rejects
    /// anything that is not exactly one canonical encoding (so a decoded state
    /// re-encodes to the same bytes), including trailing bytes.
    ///
    /// # Format (version 1)
    ///
    /// Integers are LEB128 varints, minimal length; signed ones are zigzag
    /// encoded first. Floats are IEEE little-endian bits. Lengths are varints.
    ///
    /// ```text
    /// state   := 0x01 count:varint partial{count}
    /// partial := 0 Empty
    ///          | 1 Count       n:varint
    ///          | 2 SumInt      sum:zigzag-varint(i128) n:varint overflow:(0|1)
    ///          | 3 SumFloat    sum:f64 n:varint
    ///          | 4 Avg         sum:f64 n:varint
    ///          | 5 Min         (0 | 1 scalar)
    ///          | 6 Max         (0 | 1 scalar)
    ///          | 7 First       (0 | 1 time:zigzag-varint seq:varint scalar)
    ///          | 8 Last        (0 | 1 time:zigzag-varint seq:varint scalar)
    /// scalar  := 0 bool:(0|1) | 1 int64:zigzag-varint | 2 f32 | 3 f64
    ///          | 4 len utf8-bytes | 5 len bytes | 6 timestamp-micros:zigzag-varint
    ///          | 7 len f32{len} | 8 len f64{len} | 9 len zigzag-varint{len}
    ///          | 10 len (len utf8-bytes){len}
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<State, CorruptState> {
        let mut r = Reader { bytes, pos: 0 };
        if r.byte()? != VERSION {
            return Err(CorruptState("unknown version"));
        }
        let count = r.len()?;
        let mut partials = Vec::with_capacity(count);
        for _ in 0..count {
            partials.push(r.partial()?);
        }
        if r.pos != bytes.len() {
            return Err(CorruptState("trailing bytes"));
        }
        Ok(State(partials))
    }
}

/// Merge encoded states, for a RocksDB merge operator: decode `existing` (if
/// any) and every operand, merge them in that order and encode the result.
/// Inputs that do not decode are skipped; `None` only if none decodes.
pub fn merge_encoded<'a>(
    existing: Option<&[u8]>,
    operands: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Vec<u8>> {
    let mut merged: Option<State> = existing.and_then(|bytes| State::decode(bytes).ok());
    for bytes in operands {
        let Ok(state) = State::decode(bytes) else { continue };
        match &mut merged {
            None => merged = Some(state),
            Some(m) => m.merge(&state),
        }
    }
    let merged = merged?;
    let mut out = Vec::new();
    merged.encode(&mut out);
    Some(out)
}
pub(super) mod tag {
    pub const EMPTY: u8 = 0;
    pub const COUNT: u8 = 1;
    pub const SUM_INT: u8 = 2;
    pub const SUM_FLOAT: u8 = 3;
    pub const AVG: u8 = 4;
    pub const MIN: u8 = 5;
    pub const MAX: u8 = 6;
    pub const FIRST: u8 = 7;
    pub const LAST: u8 = 8;

    pub const BOOL: u8 = 0;
    pub const INT64: u8 = 1;
    pub const FLOAT32: u8 = 2;
    pub const FLOAT64: u8 = 3;
    pub const STRING: u8 = 4;
    pub const BYTES: u8 = 5;
    pub const TIMESTAMP: u8 = 6;
    pub const FLOAT32_LIST: u8 = 7;
    pub const FLOAT64_LIST: u8 = 8;
    pub const INT64_LIST: u8 = 9;
    pub const STRING_LIST: u8 = 10;
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_partial(out: &mut Vec<u8>, p: &Partial) {
    match p {
        Partial::Empty => out.push(tag::EMPTY),
        Partial::Count(n) => {
            out.push(tag::COUNT);
            put_u64(out, *n);
        }
        Partial::SumInt { sum, n, overflow } => {
            out.push(tag::SUM_INT);
            put_i128(out, *sum);
            put_u64(out, *n);
            out.push(u8::from(*overflow));
        }
        Partial::SumFloat { sum, n } | Partial::Avg { sum, n } => {
            out.push(if matches!(p, Partial::Avg { .. }) { tag::AVG } else { tag::SUM_FLOAT });
            out.extend_from_slice(&sum.to_le_bytes());
            put_u64(out, *n);
        }
        Partial::Min(v) | Partial::Max(v) => {
            out.push(if matches!(p, Partial::Min(_)) { tag::MIN } else { tag::MAX });
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_scalar(out, v);
                }
            }
        }
        Partial::First(v) | Partial::Last(v) => {
            out.push(if matches!(p, Partial::First(_)) { tag::FIRST } else { tag::LAST });
            match v {
                None => out.push(0),
                Some((time, seq, v)) => {
                    out.push(1);
                    put_i64(out, *time);
                    put_u64(out, *seq);
                    put_scalar(out, v);
                }
            }
        }
    }
}

pub(super) fn put_scalar(out: &mut Vec<u8>, v: &Scalar) {
    match v {
        Scalar::Bool(b) => {
            out.push(tag::BOOL);
            out.push(u8::from(*b));
        }
        Scalar::Int64(i) => {
            out.push(tag::INT64);
            put_i64(out, *i);
        }
        Scalar::Float32(x) => {
            out.push(tag::FLOAT32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Scalar::Float64(x) => {
            out.push(tag::FLOAT64);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Scalar::String(s) => {
            out.push(tag::STRING);
            put_bytes(out, s.as_bytes());
        }
        Scalar::Bytes(b) => {
            out.push(tag::BYTES);
            put_bytes(out, b);
        }
        Scalar::Timestamp(t) => {
            out.push(tag::TIMESTAMP);
            put_i64(out, *t);
        }
        Scalar::Float32List(xs) => {
            out.push(tag::FLOAT32_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Scalar::Float64List(xs) => {
            out.push(tag::FLOAT64_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Scalar::Int64List(xs) => {
            out.push(tag::INT64_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                put_i64(out, *x);
            }
        }
        Scalar::StringList(xs) => {
            out.push(tag::STRING_LIST);
            put_u64(out, xs.len() as u64);
            for x in xs {
                put_bytes(out, x.as_bytes());
            }
        }
    }
}

/// Reads an encoded state; every method fails rather than panics on bad input.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, CorruptState> {
        let b = *self.bytes.get(self.pos).ok_or(CorruptState("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptState> {
        if n > self.remaining() {
            return Err(CorruptState("truncated"));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn flag(&mut self) -> Result<bool, CorruptState> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CorruptState("flag is neither 0 nor 1")),
        }
    }

    fn u64(&mut self) -> Result<u64, CorruptState> {
        varint::read_u64(self.bytes, &mut self.pos).map_err(corrupt)
    }

    fn i64(&mut self) -> Result<i64, CorruptState> {
        varint::read_i64(self.bytes, &mut self.pos).map_err(corrupt)
    }

    fn i128(&mut self) -> Result<i128, CorruptState> {
        varint::read_i128(self.bytes, &mut self.pos).map_err(corrupt)
    }

    /// A length or count of items that each take at least one byte, so it
    /// can be no more than the bytes left (which bounds any allocation).
    fn len(&mut self) -> Result<usize, CorruptState> {
        let n = usize::try_from(self.u64()?).map_err(|_| CorruptState("length out of range"))?;
        if n > self.remaining() {
            return Err(CorruptState("truncated"));
        }
        Ok(n)
    }

    fn f32(&mut self) -> Result<f32, CorruptState> {
        let b = self.take(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, CorruptState> {
        let b = self.take(8)?;
        Ok(f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    fn string(&mut self) -> Result<String, CorruptState> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| CorruptState("invalid UTF-8"))
    }

    fn partial(&mut self) -> Result<Partial, CorruptState> {
        Ok(match self.byte()? {
            tag::EMPTY => Partial::Empty,
            tag::COUNT => Partial::Count(self.u64()?),
            tag::SUM_INT => {
                let sum = self.i128()?;
                let n = self.u64()?;
                let overflow = self.flag()?;
                Partial::SumInt { sum, n, overflow }
            }
            tag::SUM_FLOAT => {
                let sum = self.f64()?;
                Partial::SumFloat { sum, n: self.u64()? }
            }
            tag::AVG => {
                let sum = self.f64()?;
                Partial::Avg { sum, n: self.u64()? }
            }
            tag::MIN => Partial::Min(self.optional(Self::scalar)?),
            tag::MAX => Partial::Max(self.optional(Self::scalar)?),
            tag::FIRST => Partial::First(self.optional(Self::stamped)?),
            tag::LAST => Partial::Last(self.optional(Self::stamped)?),
            _ => return Err(CorruptState("unknown partial kind")),
        })
    }

    fn optional<T>(
        &mut self,
        read: fn(&mut Self) -> Result<T, CorruptState>,
    ) -> Result<Option<T>, CorruptState> {
        if self.flag()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn stamped(&mut self) -> Result<(i64, u64, Scalar), CorruptState> {
        let time = self.i64()?;
        let seq = self.u64()?;
        Ok((time, seq, self.scalar()?))
    }

    fn scalar(&mut self) -> Result<Scalar, CorruptState> {
        Ok(match self.byte()? {
            tag::BOOL => Scalar::Bool(self.flag()?),
            tag::INT64 => Scalar::Int64(self.i64()?),
            tag::FLOAT32 => Scalar::Float32(self.f32()?),
            tag::FLOAT64 => Scalar::Float64(self.f64()?),
            tag::STRING => Scalar::String(self.string()?),
            tag::BYTES => {
                let n = self.len()?;
                Scalar::Bytes(self.take(n)?.to_vec())
            }
            tag::TIMESTAMP => Scalar::Timestamp(self.i64()?),
            tag::FLOAT32_LIST => {
                let n = self.len()?;
                Scalar::Float32List((0..n).map(|_| self.f32()).collect::<Result<_, _>>()?)
            }
            tag::FLOAT64_LIST => {
                let n = self.len()?;
                Scalar::Float64List((0..n).map(|_| self.f64()).collect::<Result<_, _>>()?)
            }
            tag::INT64_LIST => {
                let n = self.len()?;
                Scalar::Int64List((0..n).map(|_| self.i64()).collect::<Result<_, _>>()?)
            }
            tag::STRING_LIST => {
                let n = self.len()?;
                Scalar::StringList((0..n).map(|_| self.string()).collect::<Result<_, _>>()?)
            }
            _ => return Err(CorruptState("unknown value type")),
        })
    }
}
