//! Duration strings: a number and a unit (`ms`, `s`, `m`, `h`), repeated: `"500ms"`, `"10s"`,
//! `"1.5s"`, `"2m"`, `"1m30s"`; and the same form back for messages ([`format`]).

use std::time::Duration;

/// The longest duration a configuration may give (`8760h`). Anything longer is surely a mistake,
/// and keeping every duration this short keeps all time arithmetic far from overflow.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

const HELP: &str =
    "use a number with a unit: \"500ms\", \"10s\", \"1.5s\", \"2m\", \"1h\", \"1m30s\"";

/// Parses a duration string; the error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("{} is not a duration; {HELP}", super::quoted(text));
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if number_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    let duration = Duration::try_from_secs_f64(total).map_err(|_| bad())?;
    if duration > MAX {
        return Err(format!(
            "{} is longer than a year (8760h), the longest duration allowed",
            super::quoted(text)
        ));
    }
    Ok(duration)
}

/// A duration as a config would write it: `500ms`, `10s`, `2m`, `1.5s`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let ms = |t: &str| parse(t).unwrap().as_millis();
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("0s"), 0);
    }

    #[test]
    fn format_round_trips_through_parse() {
        for ms in [
            0, 1, 250, 999, 1000, 1500, 10_000, 59_999, 60_000, 90_500, 3_600_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d), "{ms} ms as {}", format(d));
        }
        assert_eq!(format(Duration::from_millis(120_000)), "2m");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn longer_than_a_year_is_refused_and_huge_numbers_never_overflow() {
        assert_eq!(parse("8760h"), Ok(MAX));
        for long in [
            "8761h",
            "9223372036854775807s",
            "1e400s",
            "99999999999999999999999h",
        ] {
            let err = parse(long).unwrap_err();
            assert!(
                err.contains("longer than a year") || err.contains("is not a duration"),
                "{long}: {err}"
            );
        }
        assert!(
            parse("9223372036854775807s")
                .unwrap_err()
                .contains("longer than a year")
        );
    }

    #[test]
    fn rejected_forms_explain_the_format() {
        for bad in ["", "10", "s", "-1s", "1.2.3s", "10 s", "5sec", "1d", "ms5"] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("is not a duration; use a number with a unit"),
                "{bad}: {err}"
            );
        }
    }
}
