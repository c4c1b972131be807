//! CertLogic date-times: parsing, offsetting (`plusTime`), DCC dates of birth and formatting.
//!
//! Written by hand rather than with `chrono`/`time` because the specification defines the arithmetic through
//! JavaScript's `Date.prototype.setUTC*` methods: out-of-range fields *overflow* into the next unit (2020-02-29 plus
//! one year is 2021-03-01, 2021-01-31 plus one month is 2021-03-03), whereas `chrono`'s `checked_add_months` clamps to
//! the last day of the month. The accepted input formats are also a narrow, specific subset of ISO 8601 (single-digit
//! offset hours, offsets without a colon, any number of fraction digits truncated to milliseconds) that no general
//! parser accepts exactly. The calendar conversion uses Howard Hinnant's public-domain `days_from_civil` algorithm.

use crate::Error;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
/// The largest distance from the epoch that a JavaScript `Date` can hold (ECMA-262 §21.4.1.22, TimeClip).
const JS_MAX_MS: i64 = 8_640_000_000_000_000;

/// A point in time with millisecond precision, as produced by `plusTime` and `dccDateOfBirth`.
///
/// Values are kept as milliseconds since 1970-01-01T00:00:00Z, within the range of a JavaScript `Date`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime(i64);

/// The time units of `plusTime`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// Calendar years (`setUTCFullYear`): the month and day are kept, an invalid day overflows into March.
    Year,
    /// Calendar months (`setUTCMonth`): the day is kept, an invalid day overflows into the next month.
    Month,
    /// Days of exactly 24 hours (UTC has no daylight saving time).
    Day,
    /// Hours.
    Hour,
}

impl TimeUnit {
    /// The unit names in the order the specification lists them.
    pub const NAMES: [&'static str; 4] = ["year", "month", "day", "hour"];

    /// Parses a unit name exactly as written in CertLogic (`"year"`, `"month"`, `"day"`, `"hour"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "year" => Some(Self::Year),
            "month" => Some(Self::Month),
            "day" => Some(Self::Day),
            "hour" => Some(Self::Hour),
            _ => None,
        }
    }
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d` (`m` in 1..=12, `d` may exceed the month's length,
/// in which case the result simply counts on, which is JavaScript's `MakeDay` behaviour).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month 1..=12, day 1..=31)` of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads exactly `n` ASCII digits at `pos`.
fn digits(b: &[u8], pos: usize, n: usize) -> Option<i64> {
    let slice = b.get(pos..pos + n)?;
    let mut v = 0i64;
    for &c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

impl DateTime {
    /// The date-time `ms` milliseconds after 1970-01-01T00:00:00Z, if a JavaScript `Date` can hold it.
    pub fn from_unix_millis(ms: i64) -> Result<Self, Error> {
        if (-JS_MAX_MS..=JS_MAX_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(Error::DateRange(format!("{ms} ms since the epoch")))
        }
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    fn from_civil(input: &str, y: i64, m: i64, d: i64) -> Result<Self, Error> {
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return Err(Error::InvalidDate(input.to_owned()));
        }
        Ok(Self(days_from_civil(y, m, d) * MS_PER_DAY))
    }

    /// Parses a date of birth as the `dccDateOfBirth` operation does: `YYYY` becomes 31 December, `YYYY-MM` the last
    /// day of that month and `YYYY-MM-DD` that day, each at midnight UTC (the last date consistent with the data, so
    /// that a partial date is read in the holder's favour).
    pub fn parse_date_of_birth(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        let bad = || Error::DateFormat(s.to_owned());
        let year = digits(b, 0, 4).ok_or_else(bad)?;
        match b.len() {
            4 => Self::from_civil(s, year, 12, 31),
            7 if b[4] == b'-' => {
                let month = digits(b, 5, 2).ok_or_else(bad)?;
                if !(1..=12).contains(&month) {
                    return Err(Error::InvalidDate(s.to_owned()));
                }
                Self::from_civil(s, year, month, days_in_month(year, month))
            }
            10 if b[4] == b'-' && b[7] == b'-' => {
                let month = digits(b, 5, 2).ok_or_else(bad)?;
                let day = digits(b, 8, 2).ok_or_else(bad)?;
                Self::from_civil(s, year, month, day)
            }
            _ => Err(bad()),
        }
    }

    /// Parses a date or date-time string in one of the formats the `plusTime` operation accepts:
    /// `YYYY`, `YYYY-MM` (both read as `dccDateOfBirth` does), `YYYY-MM-DD`, and
    /// `YYYY-MM-DDThh:mm:ss[.S…][Z|±h|±hh|±hmm|±hhmm|±h:mm|±hh:mm]`. A missing time is midnight, a missing offset
    /// is `Z`, and fraction digits beyond the third are dropped (rounding down to the millisecond).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        if b.len() <= 10 {
            return Self::parse_date_of_birth(s);
        }
        let bad = || Error::DateFormat(s.to_owned());
        let date = Self::parse_date_of_birth(s.get(..10).ok_or_else(bad)?)?;
        if b.get(10) != Some(&b'T') || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return Err(bad());
        }
        let hour = digits(b, 11, 2).ok_or_else(bad)?;
        let minute = digits(b, 14, 2).ok_or_else(bad)?;
        let second = digits(b, 17, 2).ok_or_else(bad)?;
        let mut pos = 19;
        let mut millis = 0i64;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                if pos - start < 3 {
                    millis = millis * 10 + i64::from(b[pos] - b'0');
                }
                pos += 1;
            }
            let n = pos - start;
            if n == 0 {
                return Err(bad());
            }
            for _ in n..3 {
                millis *= 10;
            }
        }
        let offset_minutes = match b.get(pos) {
            None => 0,
            Some(b'Z') if pos + 1 == b.len() => 0,
            Some(&sign @ (b'+' | b'-')) => {
                let rest = &b[pos + 1..];
                let (h, m) = match rest.iter().position(|&c| c == b':') {
                    Some(colon) => {
                        let h = digits(rest, 0, colon).filter(|_| (1..=2).contains(&colon));
                        let m = digits(rest, colon + 1, 2).filter(|_| rest.len() == colon + 3);
                        (h.ok_or_else(bad)?, m.ok_or_else(bad)?)
                    }
                    None => match rest.len() {
                        1 | 2 => (digits(rest, 0, rest.len()).ok_or_else(bad)?, 0),
                        3 => (
                            digits(rest, 0, 1).ok_or_else(bad)?,
                            digits(rest, 1, 2).ok_or_else(bad)?,
                        ),
                        4 => (
                            digits(rest, 0, 2).ok_or_else(bad)?,
                            digits(rest, 2, 2).ok_or_else(bad)?,
                        ),
                        _ => return Err(bad()),
                    },
                };
                if h > 23 || m > 59 {
                    return Err(Error::InvalidDate(s.to_owned()));
                }
                let total = h * 60 + m;
                if sign == b'-' {
                    -total
                } else {
                    total
                }
            }
            Some(_) => return Err(bad()),
        };
        // ECMAScript's date-time string format allows 24:00:00.000 as the end of a day; nothing later.
        let end_of_day = hour == 24 && minute == 0 && second == 0 && millis == 0;
        if (hour > 23 && !end_of_day) || minute > 59 || second > 59 {
            return Err(Error::InvalidDate(s.to_owned()));
        }
        let ms =
            date.0 + hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + millis
                - offset_minutes * MS_PER_MINUTE;
        Self::from_unix_millis(ms)
    }

    /// Adds `amount` units to this date-time with the semantics of JavaScript's `setUTC<Unit>(getUTC<Unit>() +
    /// amount)`, which is how the specification defines `plusTime`.
    pub fn plus(self, amount: i64, unit: TimeUnit) -> Result<Self, Error> {
        if amount == 0 {
            return Ok(self);
        }
        let out_of_range = || Error::DateRange(format!("{self} plus {amount} {unit:?}"));
        let ms = match unit {
            TimeUnit::Hour => amount
                .checked_mul(MS_PER_HOUR)
                .and_then(|d| self.0.checked_add(d)),
            TimeUnit::Day => amount
                .checked_mul(MS_PER_DAY)
                .and_then(|d| self.0.checked_add(d)),
            TimeUnit::Month | TimeUnit::Year => {
                // A Date spans about ±275,760 years; anything beyond cannot land in range, and bounding the amount
                // keeps the calendar arithmetic below far from i64 overflow.
                let months = match unit {
                    TimeUnit::Year => amount.checked_mul(12),
                    _ => Some(amount),
                }
                .filter(|m| m.unsigned_abs() <= 12 * 600_000)
                .ok_or_else(out_of_range)?;
                let days = self.0.div_euclid(MS_PER_DAY);
                let time_of_day = self.0.rem_euclid(MS_PER_DAY);
                let (y, m, d) = civil_from_days(days);
                let total = (m - 1) + months;
                let (ny, nm) = (y + total.div_euclid(12), total.rem_euclid(12) + 1);
                Some((days_from_civil(ny, nm, 1) + d - 1) * MS_PER_DAY + time_of_day)
            }
        };
        Self::from_unix_millis(ms.ok_or_else(out_of_range)?).map_err(|_| out_of_range())
    }
}

impl fmt::Display for DateTime {
    /// Formats like JavaScript's `Date.prototype.toISOString`: `YYYY-MM-DDThh:mm:ss.sssZ`, with a signed six-digit
    /// year outside 0000..=9999.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MS_PER_DAY);
        let t = self.0.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            write!(f, "{y:04}")?;
        } else if y < 0 {
            write!(f, "-{:06}", -y)?;
        } else {
            write!(f, "+{y:06}")?;
        }
        write!(
            f,
            "-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            t / MS_PER_HOUR,
            t % MS_PER_HOUR / MS_PER_MINUTE,
            t % MS_PER_MINUTE / MS_PER_SECOND,
            t % MS_PER_SECOND
        )
    }
}

impl FromStr for DateTime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        DateTime::parse(s).unwrap().to_string()
    }

    #[test]
    fn parses_every_allowed_format() {
        let cases = [
            ("2021", "2021-12-31T00:00:00.000Z"),
            ("2021-02", "2021-02-28T00:00:00.000Z"),
            ("2020-02", "2020-02-29T00:00:00.000Z"),
            ("2021-05-03", "2021-05-03T00:00:00.000Z"),
            ("2021-05-03T10:20:30", "2021-05-03T10:20:30.000Z"),
            ("2021-05-03T10:20:30Z", "2021-05-03T10:20:30.000Z"),
            ("2021-05-03T10:20:30+2", "2021-05-03T08:20:30.000Z"),
            ("2021-05-03T10:20:30-02", "2021-05-03T12:20:30.000Z"),
            ("2021-05-03T10:20:30+130", "2021-05-03T08:50:30.000Z"),
            ("2021-05-03T10:20:30+0130", "2021-05-03T08:50:30.000Z"),
            ("2021-05-03T10:20:30+1:30", "2021-05-03T08:50:30.000Z"),
            ("2021-05-03T10:20:30+01:30", "2021-05-03T08:50:30.000Z"),
            ("2021-05-03T10:20:30.1", "2021-05-03T10:20:30.100Z"),
            ("2021-05-03T10:20:30.12Z", "2021-05-03T10:20:30.120Z"),
            (
                "2021-05-03T10:20:30.123456789+2",
                "2021-05-03T08:20:30.123Z",
            ),
            ("2021-05-03T10:20:30.9999-02", "2021-05-03T12:20:30.999Z"),
            ("2021-05-03T00:30:00+01:00", "2021-05-02T23:30:00.000Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(p(input), expected, "{input}");
        }
    }

    #[test]
    fn rejects_other_formats_and_impossible_dates() {
        for bad in [
            "",
            "21",
            "2021-1",
            "2021-01-1",
            "2021/01/01",
            "2021-01-01T",
            "2021-01-01 10:00:00",
            "2021-01-01T10:00",
            "2021-01-01T10:00:00.",
            "2021-01-01T10:00:00z",
            "2021-01-01T10:00:00+",
            "2021-01-01T10:00:00+12345",
            "2021-01-01T10:00:00+1:3",
            "2021-01-01T10:00:00Z ",
            "٢٠٢١-01-01",
        ] {
            assert!(
                matches!(DateTime::parse(bad), Err(Error::DateFormat(_))),
                "{bad:?}"
            );
        }
        for bad in [
            "2021-02-29",
            "2021-13",
            "2021-00-10",
            "2021-04-31",
            "2021-01-01T25:00:00",
            "2021-01-01T10:60:00",
        ] {
            assert!(
                matches!(DateTime::parse(bad), Err(Error::InvalidDate(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn offsets_like_javascript_date() {
        let add = |s: &str, n: i64, u: TimeUnit| {
            DateTime::parse(s).unwrap().plus(n, u).unwrap().to_string()
        };
        // The specification's leap-day table.
        assert_eq!(
            add("2020-02-29", 1, TimeUnit::Day),
            "2020-03-01T00:00:00.000Z"
        );
        assert_eq!(
            add("2020-02-29", 1, TimeUnit::Month),
            "2020-03-29T00:00:00.000Z"
        );
        assert_eq!(
            add("2020-02-29", 1, TimeUnit::Year),
            "2021-03-01T00:00:00.000Z"
        );
        // Overflow of the day of month, forwards and backwards, as setUTCMonth does.
        assert_eq!(
            add("2021-01-31", 1, TimeUnit::Month),
            "2021-03-03T00:00:00.000Z"
        );
        assert_eq!(
            add("2021-03-31", -1, TimeUnit::Month),
            "2021-03-03T00:00:00.000Z"
        );
        assert_eq!(
            add("2021-03-15T12:00:00Z", -15, TimeUnit::Month),
            "2019-12-15T12:00:00.000Z"
        );
        assert_eq!(
            add("2024-02-29T06:00:00Z", -18, TimeUnit::Year),
            "2006-03-01T06:00:00.000Z"
        );
        assert_eq!(
            add("2021-06-01T00:00:00+00:00", 40, TimeUnit::Hour),
            "2021-06-02T16:00:00.000Z"
        );
        assert_eq!(
            add("2021-06-23T00:00:00Z", -180, TimeUnit::Day),
            "2020-12-25T00:00:00.000Z"
        );
    }

    #[test]
    fn range_is_that_of_a_javascript_date() {
        let d = DateTime::parse("2021-01-01").unwrap();
        assert!(matches!(
            d.plus(300_000, TimeUnit::Year),
            Err(Error::DateRange(_))
        ));
        assert!(matches!(
            d.plus(i64::MAX, TimeUnit::Hour),
            Err(Error::DateRange(_))
        ));
        assert!(matches!(
            d.plus(i64::MIN, TimeUnit::Month),
            Err(Error::DateRange(_))
        ));
        assert_eq!(
            d.plus(200_000, TimeUnit::Year).unwrap().to_string(),
            "+202021-01-01T00:00:00.000Z"
        );
        assert_eq!(
            DateTime::parse("0000-01-01")
                .unwrap()
                .plus(-1, TimeUnit::Day)
                .unwrap()
                .to_string(),
            "-000001-12-31T00:00:00.000Z"
        );
    }

    #[test]
    fn date_of_birth_is_read_in_the_holders_favour() {
        let dob = |s: &str| DateTime::parse_date_of_birth(s).unwrap().to_string();
        assert_eq!(dob("2004"), "2004-12-31T00:00:00.000Z");
        assert_eq!(dob("2004-02"), "2004-02-29T00:00:00.000Z");
        assert_eq!(dob("2004-12"), "2004-12-31T00:00:00.000Z");
        assert_eq!(dob("2004-01-01"), "2004-01-01T00:00:00.000Z");
        assert!(DateTime::parse_date_of_birth("2004-01-01T00:00:00Z").is_err());
        assert!(DateTime::parse_date_of_birth("").is_err());
    }

    #[test]
    fn calendar_round_trips() {
        for day in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
