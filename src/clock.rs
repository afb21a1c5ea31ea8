//! Time as the store and the wire see it: unix milliseconds inside, RFC 3339 UTC outside.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `ms` as RFC 3339 in UTC with millisecond precision, e.g. `2026-11-29T17:04:05.123Z`.
///
/// Written digit by digit for years 0 to 9999: every accepted record's receipt, audit entry and
/// signed delivery stamps one or more, and going through `time`'s calendar and `format!` was
/// 2.5 % of the request threads' samples at the acceptance burst.
pub fn rfc3339_ms(ms: i64) -> String {
    const MS_PER_DAY: i64 = 86_400_000;
    let (days, in_day) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return rfc3339_ms_by_calendar(ms);
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1_000 % 60);
    put(20, 3, in_day % 1_000);
    // invariant: only ASCII digits and punctuation were written
    String::from_utf8(text.to_vec()).unwrap_or_default()
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01: Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// [`rfc3339_ms`] through `time`'s calendar: years outside 0 to 9999 (and instants outside
/// `time`'s range, shown as the epoch).
fn rfc3339_ms_by_calendar(ms: i64) -> String {
    let t = from_ms(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 instant into unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(to_ms)
}

/// An HTTP date (RFC 9110 IMF-fixdate), for `Sunset` headers.
pub fn http_date(t: OffsetDateTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(http_date(from_ms(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc3339_ms(951_782_400_000 - 1), "2000-02-28T23:59:59.999Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    proptest::proptest! {
        /// Digit by digit gives what `time`'s calendar gives, across years 0 to 9999 and past
        /// both ends.
        #[test]
        fn digits_agree_with_the_calendar(ms in -63_000_000_000_000i64..254_000_000_000_000) {
            proptest::prop_assert_eq!(rfc3339_ms(ms), rfc3339_ms_by_calendar(ms));
        }

        #[test]
        fn day_boundaries_and_leap_days_agree(day in -719_528i64..2_932_897, ms in proptest::prop_oneof![0i64..2, 86_399_998i64..86_400_000]) {
            let at = day * 86_400_000 + ms;
            proptest::prop_assert_eq!(rfc3339_ms(at), rfc3339_ms_by_calendar(at));
        }
    }
}
