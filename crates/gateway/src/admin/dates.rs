//! Calendar arithmetic for the admin API, all in UTC: `YYYY-MM-DD` days, `YYYY-MM` months,
//! RFC 3339 timestamps. Small enough to own rather than pull in a date crate, and tested below.

use crate::error::GatewayError;

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A `YYYY-MM` month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    pub month: u32,
}

impl Month {
    pub fn containing(ms: i64) -> Self {
        let (year, month, _) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        Self { year, month }
    }

    /// Unix ms of its first instant.
    pub fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * MS_PER_DAY
    }

    /// Unix ms of the first instant of the next month (an exclusive bound).
    pub fn end_ms(self) -> i64 {
        let (y, m) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        days_from_civil(y, m, 1) * MS_PER_DAY
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn invalid(param: &str, message: String) -> GatewayError {
    GatewayError::InvalidRequest {
        message,
        param: Some(param.to_string()),
    }
}

/// Exactly `n` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// "2026-11-28" → (2026, 11, 28), checking the day exists.
fn parse_ymd(s: &str) -> Option<(i64, u32, u32)> {
    let mut parts = s.split('-');
    let y = digits(parts.next()?, 4)?;
    let m = digits(parts.next()?, 2)?;
    let d = digits(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&m) {
        return None;
    }
    let y = i64::from(y);
    (1..=days_in_month(y, m)).contains(&d).then_some((y, m, d))
}

/// A `YYYY-MM-DD` query parameter → unix ms of that day's first instant (UTC).
pub fn parse_day(s: &str, param: &str) -> Result<i64, GatewayError> {
    let (y, m, d) = parse_ymd(s).ok_or_else(|| {
        invalid(
            param,
            format!("Invalid '{param}': '{s}' is not a date like 2026-11-28 (YYYY-MM-DD, UTC)."),
        )
    })?;
    Ok(days_from_civil(y, m, d) * MS_PER_DAY)
}

/// A `YYYY-MM` query parameter.
pub fn parse_month(s: &str, param: &str) -> Result<Month, GatewayError> {
    let bad = || {
        invalid(
            param,
            format!("Invalid '{param}': '{s}' is not a month like 2026-11 (YYYY-MM, UTC)."),
        )
    };
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    let year = i64::from(digits(y, 4).ok_or_else(bad)?);
    let month = digits(m, 2).ok_or_else(bad)?;
    if !(1..=12).contains(&month) {
        return Err(bad());
    }
    Ok(Month { year, month })
}

/// An RFC 3339 timestamp ("2026-11-28T08:00:00Z", "2026-11-28T09:00:00.250+01:00") → unix ms.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    if s.len() < 20 || !s.is_ascii() {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let (y, m, d) = parse_ymd(date)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (hh, rest) = rest.split_at_checked(2)?;
    let rest = rest.strip_prefix(':')?;
    let (mm, rest) = rest.split_at_checked(2)?;
    let rest = rest.strip_prefix(':')?;
    let (ss, mut rest) = rest.split_at_checked(2)?;
    let (hh, mm, ss) = (digits(hh, 2)?, digits(mm, 2)?, digits(ss, 2)?);
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        // Milliseconds: the first three digits; finer digits are truncated.
        for (i, b) in frac.bytes().take(3).take(n).enumerate() {
            millis += i64::from(b - b'0') * 10i64.pow(2 - i as u32);
        }
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            let (oh, om) = (digits(oh, 2)?, digits(om, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * i64::from(oh * 60 + om)
        }
    };
    let secs =
        days_from_civil(y, m, d) * 86_400 + i64::from(hh * 3600 + mm * 60 + ss) - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Unix ms → "2026-11-28T08:00:00Z" (with ".250" when there are milliseconds).
pub fn format_rfc3339(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let (secs, millis) = (in_day / 1000, in_day % 1000);
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{time}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{time}.{millis:03}Z")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_through_the_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [
            -719_468, -1, 0, 59, 11_016, 11_017, 20_000, 20_513, 2_932_896,
        ] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn days_parse_in_utc_and_invalid_ones_name_the_parameter() {
        // 2026-11-28T00:00:00Z.
        assert_eq!(parse_day("2026-11-28", "from").unwrap(), 1_795_824_000_000);
        assert_eq!(parse_day("2024-02-29", "from").unwrap(), 1_709_164_800_000);
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-11-31",
            "2026-1-01",
            "26-11-01",
            "2026/11/01",
            "2026-11-01x",
            "",
            "+026-11-01",
        ] {
            let err = parse_day(bad, "to").unwrap_err();
            let body = err.body();
            assert_eq!(err.status().as_u16(), 400, "{bad}");
            assert_eq!(body.error.param.as_deref(), Some("to"), "{bad}");
            assert!(body.error.message.contains("'to'"), "{bad}");
        }
    }

    #[test]
    fn months_span_their_days_and_roll_over_the_year() {
        let nov = parse_month("2026-11", "month").unwrap();
        assert_eq!(nov.to_string(), "2026-11");
        assert_eq!(nov.start_ms(), 1_793_491_200_000);
        assert_eq!(nov.end_ms(), parse_day("2026-12-01", "x").unwrap());
        let dec = parse_month("2026-12", "month").unwrap();
        assert_eq!(dec.end_ms(), parse_day("2027-01-01", "x").unwrap());
        assert_eq!(Month::containing(nov.end_ms() - 1), nov);
        assert_eq!(Month::containing(nov.end_ms()), dec);
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "2026",
            "2026-11-01",
            "abcd-ef",
        ] {
            let err = parse_month(bad, "month").unwrap_err();
            assert_eq!(err.body().error.param.as_deref(), Some("month"), "{bad}");
        }
    }

    #[test]
    fn rfc3339_parses_offsets_and_fractions_and_formats_back() {
        let t = 1_795_852_800_000; // 2026-11-28T08:00:00Z
        assert_eq!(parse_rfc3339("2026-11-28T08:00:00Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-28t08:00:00z"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-28T09:30:00+01:30"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-28T03:00:00-05:00"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-28T08:00:00.25Z"), Some(t + 250));
        assert_eq!(
            parse_rfc3339("2026-11-28T08:00:00.123456789Z"),
            Some(t + 123)
        );
        assert_eq!(format_rfc3339(t), "2026-11-28T08:00:00Z");
        assert_eq!(format_rfc3339(t + 250), "2026-11-28T08:00:00.250Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        for bad in [
            "2026-11-28",
            "2026-11-28T08:00:00",
            "2026-11-28T24:00:00Z",
            "2026-11-28T08:60:00Z",
            "2026-11-28T08:00:00.Z",
            "2026-11-28T08:00:00+1:00",
            "2026-02-30T08:00:00Z",
            "2026-11-28T08:00:00Zjunk",
            "2026-11-28T08:00:00Ü",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
