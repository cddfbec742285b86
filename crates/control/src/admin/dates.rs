//! Calendar arithmetic for the admin API, all in UTC: `YYYY-MM-DD` days, `YYYY-MM` months,
//! RFC 3339 timestamps. The calendar itself is the `time` crate's; this module only adapts it to
//! unix milliseconds and to the admin API's error messages.
//!
//! `time` (without its `large-dates` feature) covers the years -9999..=9999; instants outside
//! that range are clamped to its ends rather than panicking.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::parsing::Parsed;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use switchyard_gateway::error::GatewayError;

const MS_PER_DAY: i64 = 86_400_000;

/// The UTC instant of unix ms `ms`, clamped to the range `time` supports.
fn utc(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(if ms < 0 {
        PrimitiveDateTime::MIN.assume_utc()
    } else {
        PrimitiveDateTime::MAX.assume_utc()
    })
}

/// Unix ms of a date's first instant (UTC).
fn midnight_ms(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp() * 1000
}

/// The date of a day number (days since 1970-01-01, UTC) as (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let date = utc(z.saturating_mul(MS_PER_DAY)).date();
    (
        i64::from(date.year()),
        u32::from(u8::from(date.month())),
        u32::from(date.day()),
    )
}

/// A `YYYY-MM` month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    pub month: u32,
}

impl Month {
    pub fn containing(ms: i64) -> Self {
        let t = utc(ms);
        Self {
            year: i64::from(t.year()),
            month: u32::from(u8::from(t.month())),
        }
    }

    /// Its first day; a year or month outside `time`'s range is clamped into it.
    fn first_day(self) -> Date {
        let (min, max) = (Date::MIN.year(), Date::MAX.year());
        let year = i32::try_from(self.year.clamp(i64::from(min), i64::from(max))).unwrap_or(min);
        let month = u8::try_from(self.month.clamp(1, 12))
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .unwrap_or(time::Month::January);
        Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN)
    }

    /// Unix ms of its first instant.
    pub fn start_ms(self) -> i64 {
        midnight_ms(self.first_day())
    }

    /// Unix ms of the first instant of the next month (an exclusive bound).
    pub fn end_ms(self) -> i64 {
        let first = self.first_day();
        // Added in ms rather than as a `Date`, so that 9999-12 still has an end.
        self.start_ms() + i64::from(first.month().length(first.year())) * MS_PER_DAY
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

/// `time` accepts a leading sign on `[year]`; the admin API takes plain four-digit years.
fn starts_with_digit(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// A `YYYY-MM-DD` query parameter → unix ms of that day's first instant (UTC).
pub fn parse_day(s: &str, param: &str) -> Result<i64, GatewayError> {
    starts_with_digit(s)
        .then(|| Date::parse(s, format_description!("[year]-[month]-[day]")).ok())
        .flatten()
        .map(midnight_ms)
        .ok_or_else(|| {
            invalid(
                param,
                format!(
                    "Invalid '{param}': '{s}' is not a date like 2026-11-28 (YYYY-MM-DD, UTC)."
                ),
            )
        })
}

/// The `[start, end)` milliseconds of an optional `YYYY-MM` parameter; `(None, None)` without.
pub fn month_range(
    value: Option<&str>,
    param: &str,
) -> Result<(Option<i64>, Option<i64>), GatewayError> {
    match value {
        Some(m) => {
            let month = parse_month(m, param)?;
            Ok((Some(month.start_ms()), Some(month.end_ms())))
        }
        None => Ok((None, None)),
    }
}

/// A `YYYY-MM` query parameter.
pub fn parse_month(s: &str, param: &str) -> Result<Month, GatewayError> {
    let mut parsed = Parsed::new();
    let whole = starts_with_digit(s)
        && parsed
            .parse_items(s.as_bytes(), format_description!("[year]-[month]"))
            .is_ok_and(<[u8]>::is_empty);
    match (whole, parsed.year(), parsed.month()) {
        (true, Some(year), Some(month)) => Ok(Month {
            year: i64::from(year),
            month: u32::from(u8::from(month)),
        }),
        _ => Err(invalid(
            param,
            format!("Invalid '{param}': '{s}' is not a month like 2026-11 (YYYY-MM, UTC)."),
        )),
    }
}

/// An RFC 3339 timestamp ("2026-11-28T08:00:00Z", "2026-11-28T09:00:00.250+01:00") → unix ms.
/// Fractions finer than a millisecond are truncated.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    // Stricter than `time`, as before: the date and time are separated by 'T', 't' or ' ' (time
    // takes any byte), and there are no leap seconds (time reads :60 as :59.999999999).
    let separated = matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' '));
    if !separated || s.get(17..19) == Some("60") {
        return None;
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// Unix ms → "2026-11-28T08:00:00Z" (with ".250" when there are milliseconds).
pub fn format_rfc3339(ms: i64) -> String {
    // Not `Rfc3339` itself: it trims the fraction's trailing zeros (".25"), and we keep three.
    let t = utc(ms);
    let formatted = if t.millisecond() == 0 {
        t.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
    } else {
        t.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
    };
    // Formatting a complete UTC date-time into a String cannot fail.
    formatted.unwrap_or_default()
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_map_to_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        // Beyond `time`'s range: clamped, not a panic.
        assert_eq!(civil_from_days(i64::MAX), (9999, 12, 31));
        assert_eq!(civil_from_days(i64::MIN), (-9999, 1, 1));
    }

    #[test]
    fn out_of_range_instants_clamp_instead_of_panicking() {
        assert_eq!(Month::containing(i64::MAX).to_string(), "9999-12");
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        let last = Month {
            year: 9999,
            month: 12,
        };
        assert_eq!(last.end_ms() - last.start_ms(), 31 * MS_PER_DAY);
        assert_eq!(parse_rfc3339("2026-11-28x08:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-11-30T23:59:60Z"), None);
        assert!(parse_day("+2026-11-28", "from").is_err());
        assert!(parse_month("+2026-11", "month").is_err());
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
