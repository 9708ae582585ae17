//! How `sagactl` writes times and durations for people, and reads the durations they type
//! (`--older-than 5m`): pure functions, so every command says them the same way.

use std::time::Duration;

/// Reads a duration typed by a person: one or more `<whole number><unit>`, the unit `s`,
/// `m`, `h` or `d` (`90s`, `5m`, `1h30m`, `2d`); a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || format!("`{text}` is not a duration: write e.g. 90s, 5m, 1h30m or 2d");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let mut unit_chars = rest[digits..].chars();
        let seconds = match unit_chars.next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3_600,
            Some('d') => 86_400,
            _ => return Err(invalid()),
        };
        total = number
            .checked_mul(seconds)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(invalid)?;
        rest = unit_chars.as_str();
    }
    Ok(Duration::from_secs(total))
}

/// A duration in its two largest units, for people: `2d 3h`, `5m 3s`, `42s`, `350ms`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.subsec_millis());
    }
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut left = secs;
    for (size, name) in units {
        if left >= size || !parts.is_empty() {
            parts.push(format!("{}{name}", left / size));
            left %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    // `5m 0s` says no more than `5m`.
    if parts.len() == 2 && parts[1].starts_with('0') {
        parts.pop();
    }
    parts.join(" ")
}

/// A time given in microseconds since the Unix epoch, in RFC 3339 (UTC, milliseconds).
pub fn time(micros: i64) -> String {
    match firestore::jiff::Timestamp::from_microsecond(micros) {
        Ok(at) => timestamp(at),
        Err(_) => format!("{micros}µs since the epoch"),
    }
}

/// A Firestore time in RFC 3339 (UTC, milliseconds).
pub fn timestamp(at: firestore::jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A service by its name, in JSON output.
pub fn service<S: serde::Serializer>(service: &saga::contract::Service, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(service.name())
}

/// How long before `now` the time `micros` (microseconds since the Unix epoch) was; zero if
/// it is not before.
pub fn since(micros: i64, now_micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(now_micros.saturating_sub(micros)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_in_the_units_people_type() {
        let cases: &[(&str, Option<u64>)] = &[
            ("90s", Some(90)),
            ("5m", Some(300)),
            ("1h30m", Some(5_400)),
            ("2d", Some(172_800)),
            ("1d2h3m4s", Some(93_784)),
            (" 10m ", Some(600)),
            ("0", Some(0)),
            ("0s", Some(0)),
            ("", None),
            ("5", None),
            ("m", None),
            ("5 m", None),
            ("-5m", None),
            ("5w", None),
            ("1.5h", None),
            ("99999999999999999999d", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_secs()),
                *expected,
                "{text:?}"
            );
        }
        assert!(parse_duration("5x").unwrap_err().contains("90s, 5m"));
    }

    #[test]
    fn durations_are_said_in_their_two_largest_units() {
        let cases: &[(Duration, &str)] = &[
            (Duration::from_millis(350), "350ms"),
            (Duration::ZERO, "0ms"),
            (Duration::from_secs(42), "42s"),
            (Duration::from_secs(303), "5m 3s"),
            (Duration::from_mins(5), "5m"),
            (Duration::from_secs(3_725), "1h 2m"),
            (Duration::from_hours(1), "1h"),
            (Duration::from_secs(3_601), "1h"),
            (Duration::from_hours(51), "2d 3h"),
        ];
        for (duration, expected) in cases {
            assert_eq!(human(*duration), *expected, "{duration:?}");
        }
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
        assert_eq!(since(1_000_000, 4_500_000), Duration::from_millis(3_500));
        assert_eq!(since(5, 1), Duration::ZERO, "not before: zero");
    }
}
