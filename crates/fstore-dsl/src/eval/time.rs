//! Timestamp functions and the RFC 3339 text of a timestamp.
//!
//! Timestamps are UTC epoch microseconds (i64). Calendar fields use floor
//! division, so instants before 1970 fall in the right day and hour.

use std::fmt::Write;

use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

use super::{map1_total, map2, EvalError, Val};

const MICROS_PER_SECOND: i64 = 1_000_000;
pub(crate) const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
pub(crate) const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// `days_between(a, b)` / `hours_between(a, b)`: whole `unit`s in `b - a`,
/// truncated toward zero. Computed in i128, so even the two extreme
/// timestamps give an answer rather than an overflow.
pub(crate) fn units_between(a: &Val, b: &Val, unit: i64) -> Result<Val, EvalError> {
    map2::<TimestampMicrosecondType, TimestampMicrosecondType, Int64Type>(a, b, |a, b| {
        // |b - a| < 2^64 micros, so the quotient by a unit of at least an
        // hour fits an i64; try_from only guards that reasoning.
        i64::try_from((i128::from(b) - i128::from(a)) / i128::from(unit)).ok()
    })
}

/// Monday = 0 ... Sunday = 6, UTC.
pub(crate) fn day_of_week(ts: &Val) -> Result<Val, EvalError> {
    map1_total::<TimestampMicrosecondType, Int64Type>(ts, |micros| {
        // 1970-01-01 (day 0) was a Thursday, weekday 3.
        (micros.div_euclid(MICROS_PER_DAY) + 3).rem_euclid(7)
    })
}

/// 0..=23, UTC.
pub(crate) fn hour_of_day(ts: &Val) -> Result<Val, EvalError> {
    map1_total::<TimestampMicrosecondType, Int64Type>(ts, |micros| {
        micros.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR
    })
}

/// Write `micros` as RFC 3339 UTC text, `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, the
/// fraction present only when the microseconds are not zero, and then always
/// six digits. Returns false (writing nothing) for instants outside the years
/// 0000 to 9999, which RFC 3339 cannot write.
pub(super) fn write_rfc3339(micros: i64, out: &mut String) -> bool {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let micros_of_day = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return false;
    }
    let seconds_of_day = micros_of_day / MICROS_PER_SECOND;
    let fraction = micros_of_day % MICROS_PER_SECOND;
    let (hour, minute, second) = (seconds_of_day / 3600, seconds_of_day / 60 % 60, seconds_of_day % 60);
    // Writing to a String cannot fail.
    let _ = write!(out, "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if fraction != 0 {
        let _ = write!(out, ".{fraction:06}");
    }
    out.push('Z');
    true
}

/// The proleptic Gregorian (year, month, day) of a day count from
/// 1970-01-01, valid for every i64 day count an i64 of microseconds can
/// produce. Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>):
/// shift to eras of 400 years starting on 0000-03-01, so that leap days fall
/// at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32; // [1, 31]
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(micros: i64) -> Option<String> {
        let mut out = String::new();
        write_rfc3339(micros, &mut out).then_some(out)
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
    }

    /// Every day from 0000-01-01 to 9999-12-31 against a calendar walked one
    /// day at a time with the plain leap-year rule.
    #[test]
    fn civil_dates_agree_with_a_day_by_day_walk() {
        let is_leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_length = |y: i64, m: u32| match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut year, mut month, mut day) = (0i64, 1u32, 1u32);
        let mut days = -719_528;
        while year < 10_000 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            days += 1;
            day += 1;
            if day > month_length(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
        assert_eq!(days, 2_932_897, "10000-01-01 is day 2932897");
    }

    #[test]
    fn rfc3339_text() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339(1).as_deref(), Some("1970-01-01T00:00:00.000001Z"));
        assert_eq!(rfc3339(-1).as_deref(), Some("1969-12-31T23:59:59.999999Z"));
        assert_eq!(rfc3339(1_700_000_000_123_000).as_deref(), Some("2023-11-14T22:13:20.123000Z"));
        // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z are the ends.
        assert_eq!(rfc3339(-62_167_219_200_000_000).as_deref(), Some("0000-01-01T00:00:00Z"));
        assert_eq!(rfc3339(-62_167_219_200_000_001), None);
        assert_eq!(rfc3339(253_402_300_799_999_999).as_deref(), Some("9999-12-31T23:59:59.999999Z"));
        assert_eq!(rfc3339(253_402_300_800_000_000), None);
        assert_eq!(rfc3339(i64::MIN), None);
        assert_eq!(rfc3339(i64::MAX), None);
    }
}
