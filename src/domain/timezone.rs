//! Office hours: CoreRoller's "only update Monday to Friday, 09:00–16:59 local time" rule,
//! evaluated in the group's IANA timezone for a given instant (passed in, never read here).

use chrono::{Datelike, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

use super::ValidationError;

/// Validates an IANA timezone name such as `Europe/Berlin`.
pub fn parse_timezone(field: &str, raw: &str) -> Result<Tz, ValidationError> {
    raw.trim()
        .parse::<Tz>()
        .map_err(|_| ValidationError::new(field, format!("{raw:?} is not an IANA timezone")))
}

/// True during office hours in `tz` at `now_ms` (unix milliseconds).
pub fn in_office_hours(tz: Tz, now_ms: i64) -> bool {
    let Some(utc) = chrono::DateTime::from_timestamp_millis(now_ms) else {
        return false;
    };
    let local = tz.from_utc_datetime(&utc.naive_utc());
    let weekday = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
    weekday && (9..17).contains(&local.hour())
}

/// All timezone names, for the dashboard's picker.
pub fn all_timezones() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn office_hours_follow_the_group_timezone() {
        let berlin = parse_timezone("tz", "Europe/Berlin").unwrap();
        // Wednesday 2026-11-25 08:30 UTC = 09:30 in Berlin.
        assert!(in_office_hours(berlin, ms("2026-11-25T08:30:00Z")));
        // 16:30 UTC = 17:30 in Berlin: closed.
        assert!(!in_office_hours(berlin, ms("2026-11-25T16:30:00Z")));
        // Saturday.
        assert!(!in_office_hours(berlin, ms("2026-11-28T10:00:00Z")));
        let sydney = parse_timezone("tz", "Australia/Sydney").unwrap();
        // Tuesday 23:00 UTC is Wednesday 10:00 in Sydney (UTC+11).
        assert!(in_office_hours(sydney, ms("2026-11-24T23:00:00Z")));
    }

    #[test]
    fn unknown_timezones_are_rejected() {
        assert!(parse_timezone("policy_timezone", "Mars/Olympus").is_err());
        assert!(parse_timezone("policy_timezone", "").is_err());
    }
}
