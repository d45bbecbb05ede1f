//! Duration strings: a number and a unit (`ms`, `s`, `m`, `h`), repeated: `"500ms"`, `"10s"`,
//! `"1.5s"`, `"2m"`, `"1m30s"`.

use std::time::Duration;

const HELP: &str =
    "use a number with a unit: \"500ms\", \"10s\", \"1.5s\", \"2m\", \"1h\", \"1m30s\"";

/// Parses a duration string; the error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("\"{text}\" is not a duration; {HELP}");
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
    Duration::try_from_secs_f64(total).map_err(|_| bad())
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
