//! LEB128 varints: the one encoding of integers in fstore's stored formats
//! (aggregate states here, rows in the server's `store::codec`). Writers
//! emit the minimal encoding; readers accept only that, within a given
//! number of bits, so a corrupt byte string is an error, never a wrong value.

/// Why bytes do not hold a varint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The bytes end inside it.
    Truncated,
    /// More bits than the value may have.
    OutOfRange,
    /// A longer encoding than needed (a last byte of 0 after the first).
    NotMinimal,
}

pub fn put_u128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    put_u128(out, u128::from(v));
}

/// Zigzag, so that small negative numbers stay short.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub fn put_i128(out: &mut Vec<u8>, v: i128) {
    put_u128(out, ((v << 1) ^ (v >> 127)) as u128);
}

/// Read a minimal varint of at most `bits` (up to 128) bits at `*pos`,
/// and move `*pos` past it.
pub fn read(bytes: &[u8], pos: &mut usize, bits: u32) -> Result<u128, VarintError> {
    let mut v: u128 = 0;
    let mut shift = 0u32;
    loop {
        let b = *bytes.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        let payload = u128::from(b & 0x7f);
        if shift >= bits || (bits - shift < 7 && payload >> (bits - shift) != 0) {
            return Err(VarintError::OutOfRange);
        }
        v |= payload << shift;
        if b & 0x80 == 0 {
            if b == 0 && shift > 0 {
                return Err(VarintError::NotMinimal);
            }
            return Ok(v);
        }
        shift += 7;
    }
}

pub fn read_u64(bytes: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    // At most 64 bits were read, so the conversion cannot fail.
    u64::try_from(read(bytes, pos, 64)?).map_err(|_| VarintError::OutOfRange)
}

pub fn read_i64(bytes: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let z = read_u64(bytes, pos)?;
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

pub fn read_i128(bytes: &[u8], pos: &mut usize) -> Result<i128, VarintError> {
    let z = read(bytes, pos, 128)?;
    Ok(((z >> 1) as i128) ^ -((z & 1) as i128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips_and_corrupt_encodings_are_errors() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 300, -300] {
            let mut out = Vec::new();
            put_i64(&mut out, v);
            let mut pos = 0;
            assert_eq!(read_i64(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
        for v in [0i128, i128::MAX, i128::MIN, -5] {
            let mut out = Vec::new();
            put_i128(&mut out, v);
            assert_eq!(read_i128(&out, &mut 0), Ok(v));
        }
        assert_eq!(read(&[0x80], &mut 0, 64), Err(VarintError::Truncated));
        assert_eq!(read(&[0x83, 0x00], &mut 0, 64), Err(VarintError::NotMinimal));
        assert_eq!(read(&[0xFF; 11], &mut 0, 64), Err(VarintError::OutOfRange));
        // The tenth byte of a u64 may carry one bit only.
        let mut max = vec![0xFF; 9];
        max.push(0x01);
        assert_eq!(read_u64(&max, &mut 0), Ok(u64::MAX));
        max[9] = 0x02;
        assert_eq!(read_u64(&max, &mut 0), Err(VarintError::OutOfRange));
    }
}
