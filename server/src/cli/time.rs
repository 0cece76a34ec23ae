//! RFC 3339 timestamps for the CLI's output and its `--start-at` flag.
//!
//! The workspace has no date crate, and the CLI only needs UTC, so formatting is done here
//! with Howard Hinnant's civil-from-days algorithm. Parsing reuses `prost_types`, which
//! already accepts every RFC 3339 form (offsets, fractions) the flag should take.

use std::str::FromStr;

use endure_proto::prost_types::Timestamp;

const SECONDS_PER_DAY: i64 = 86_400;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// How many fractional digits a formatted timestamp may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Up to nanoseconds: exact, for JSON that scripts compare.
    Full,
    /// Up to milliseconds: enough to order events when a person reads a table.
    Millis,
}

/// Formats a timestamp as RFC 3339 in UTC (`2024-05-01T12:34:56.789Z`). The fraction is left
/// out when it is zero and otherwise shown in groups of 3, 6 or 9 digits, as prost-types does.
pub fn rfc3339(timestamp: &Timestamp, precision: Precision) -> String {
    let total_nanos =
        i128::from(timestamp.seconds) * i128::from(NANOS_PER_SECOND) + i128::from(timestamp.nanos);
    let seconds = total_nanos.div_euclid(i128::from(NANOS_PER_SECOND)) as i64;
    let mut nanos = total_nanos.rem_euclid(i128::from(NANOS_PER_SECOND)) as u32;
    if precision == Precision::Millis {
        nanos -= nanos % 1_000_000;
    }
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{}Z",
        fraction(nanos)
    )
}

/// The fractional part, including its dot; empty for a whole second.
fn fraction(nanos: u32) -> String {
    if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    }
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01, in the proleptic
/// Gregorian calendar (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses `--start-at`: any RFC 3339 timestamp, with `Z` or an offset.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
    Timestamp::from_str(text.trim()).map_err(|_| {
        format!("'{text}' is not an RFC 3339 timestamp (for example 2030-01-31T09:30:00Z)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(&at(0, 0), Precision::Full), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(&at(951_782_400, 0), Precision::Full),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(&at(1_700_000_000, 123_000_000), Precision::Full),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(&at(1_700_000_000, 123_456_000), Precision::Full),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339(&at(1_700_000_000, 1), Precision::Full),
            "2023-11-14T22:13:20.000000001Z"
        );
        assert_eq!(rfc3339(&at(-1, 0), Precision::Full), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn the_never_firing_timer_time_formats() {
        let never = at(253_402_300_799, 999_999_999);
        assert_eq!(
            rfc3339(&never, Precision::Full),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            rfc3339(&never, Precision::Millis),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn millis_precision_truncates_and_drops_a_zero_fraction() {
        assert_eq!(
            rfc3339(&at(1_700_000_000, 123_999_999), Precision::Millis),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(&at(1_700_000_000, 999_999), Precision::Millis),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn unnormalized_nanos_carry_into_seconds() {
        assert_eq!(
            rfc3339(&at(10, -500_000_000), Precision::Full),
            "1970-01-01T00:00:09.500Z"
        );
        assert_eq!(
            rfc3339(&at(10, 1_500_000_000), Precision::Full),
            "1970-01-01T00:00:11.500Z"
        );
    }

    #[test]
    fn agrees_with_prost_types_over_many_dates() {
        // Steps of about 37 days and an odd number of seconds cover leap years, month ends
        // and every time of day; prost-types is an independent implementation.
        let mut seconds = -2_208_988_800; // 1900-01-01
        while seconds < 4_102_444_800 {
            let timestamp = at(seconds, (seconds.rem_euclid(7) * 100_000_000) as i32);
            assert_eq!(
                rfc3339(&timestamp, Precision::Full),
                timestamp.to_string(),
                "{seconds}"
            );
            seconds += 3_196_811;
        }
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        let timestamp = at(1_700_000_000, 250_000_000);
        assert_eq!(
            parse_rfc3339(&rfc3339(&timestamp, Precision::Full)),
            Ok(timestamp)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Ok(at(1_700_000_000, 0))
        );
        assert!(parse_rfc3339("tomorrow")
            .unwrap_err()
            .contains("not an RFC 3339 timestamp"));
    }
}
