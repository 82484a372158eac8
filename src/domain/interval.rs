//! Durations in CoreRoller's (PostgreSQL interval) text form: `15 minutes`, `1 hour`,
//! `100 milliseconds`, `1 hour 30 minutes`, plus the compact `15m`/`1h` forms. Policies keep the
//! text the operator wrote; the rollout engine works in milliseconds.

use super::ValidationError;

const MS_PER_UNIT: &[(&[&str], i64)] = &[
    (&["ms", "msec", "msecs", "millisecond", "milliseconds"], 1),
    (&["s", "sec", "secs", "second", "seconds"], 1_000),
    (&["m", "min", "mins", "minute", "minutes"], 60_000),
    (&["h", "hr", "hrs", "hour", "hours"], 3_600_000),
    (&["d", "day", "days"], 86_400_000),
    (&["w", "week", "weeks"], 604_800_000),
];

/// Upper bound so arithmetic on timestamps can never overflow (about 100 years).
const MAX_MS: i64 = 100 * 365 * 86_400_000;

fn unit_ms(unit: &str) -> Option<i64> {
    MS_PER_UNIT
        .iter()
        .find(|(names, _)| names.iter().any(|name| name.eq_ignore_ascii_case(unit)))
        .map(|(_, ms)| *ms)
}

/// Parses an interval into milliseconds. Must be positive.
pub fn parse_interval(field: &str, raw: &str) -> Result<i64, ValidationError> {
    let invalid = || {
        ValidationError::new(
            field,
            format!("{raw:?} is not an interval like \"15 minutes\", \"1 hour\" or \"100 milliseconds\""),
        )
    };
    let text = raw.trim();
    if text.is_empty() || text.len() > 64 {
        return Err(invalid());
    }
    // (number, unit) pairs; a number may be glued to its unit ("15m"). Slices of the text, no
    // copies: the Omaha path reads a group's policy on every deciding check.
    let mut tokens = text.split_whitespace().flat_map(|word| {
        let digits_end = word
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(word.len());
        if digits_end > 0 && digits_end < word.len() {
            [Some(&word[..digits_end]), Some(&word[digits_end..])]
        } else {
            [Some(word), None]
        }
        .into_iter()
        .flatten()
    });
    let mut total: i64 = 0;
    while let Some(amount) = tokens.next() {
        let unit = tokens.next().ok_or_else(invalid)?;
        let amount: i64 = amount.parse().map_err(|_| invalid())?;
        let per = unit_ms(unit).ok_or_else(invalid)?;
        total = amount
            .checked_mul(per)
            .and_then(|ms| total.checked_add(ms))
            .filter(|ms| *ms <= MAX_MS)
            .ok_or_else(invalid)?;
    }
    if total <= 0 {
        return Err(ValidationError::new(field, "must be longer than zero"));
    }
    Ok(total)
}

/// Formats milliseconds in the long CoreRoller form, using the largest exact unit.
pub fn format_interval(ms: i64) -> String {
    for (names, per) in MS_PER_UNIT.iter().rev() {
        if ms % per == 0 {
            let n = ms / per;
            let unit = names[names.len() - 1];
            return format!("{n} {unit}");
        }
    }
    format!("{ms} milliseconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coreroller_forms_parse() {
        assert_eq!(parse_interval("p", "15 minutes").unwrap(), 900_000);
        assert_eq!(parse_interval("p", "1 hour").unwrap(), 3_600_000);
        assert_eq!(parse_interval("p", "100 milliseconds").unwrap(), 100);
        assert_eq!(parse_interval("p", "1 minutes").unwrap(), 60_000);
        assert_eq!(parse_interval("p", "1 hour 30 minutes").unwrap(), 5_400_000);
        assert_eq!(parse_interval("p", "15m").unwrap(), 900_000);
        assert_eq!(parse_interval("p", "2 Days").unwrap(), 172_800_000);
    }

    #[test]
    fn bad_intervals_are_rejected() {
        for bad in [
            "",
            "15",
            "minutes",
            "0 minutes",
            "-1 hour",
            "1 fortnight",
            "99999999999999 weeks",
        ] {
            assert!(parse_interval("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_uses_the_largest_exact_unit() {
        assert_eq!(format_interval(900_000), "15 minutes");
        assert_eq!(format_interval(3_600_000), "1 hours");
        assert_eq!(format_interval(1_500), "1500 milliseconds");
    }
}
