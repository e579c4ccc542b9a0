//! Durations as people type them: `300s`, `20m`, `1h30m`, `90` (seconds).

/// Parses a run time such as `300s`, `20m`, `1h30m`, `1h 30m 10s` or a bare
/// number of seconds (`90`, `2.5`) into seconds. Matches Locust's `-t` syntax.
///
/// # Errors
/// A message naming the bad text and the accepted forms.
pub fn parse_duration_s(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let bad = || {
        format!("'{text}' is not a duration: use a number of seconds or units h, m, s, e.g. 300s, 20m, 1h30m")
    };
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(v) = t.parse::<f64>() {
        return if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(bad())
        };
    }
    let mut total = 0.0;
    let mut number = String::new();
    let mut seen_unit = false;
    for ch in t.chars() {
        match ch {
            '0'..='9' | '.' => number.push(ch),
            ' ' => {}
            'h' | 'm' | 's' => {
                let v: f64 = number.parse().map_err(|_| bad())?;
                total += v * match ch {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                number.clear();
                seen_unit = true;
            }
            _ => return Err(bad()),
        }
    }
    if !number.is_empty() || !seen_unit {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_locust_forms() {
        assert_eq!(parse_duration_s("300s"), Ok(300.0));
        assert_eq!(parse_duration_s("20m"), Ok(1200.0));
        assert_eq!(parse_duration_s("1h30m"), Ok(5400.0));
        assert_eq!(parse_duration_s("1h 30m 10s"), Ok(5410.0));
        assert_eq!(parse_duration_s("90"), Ok(90.0));
        assert_eq!(parse_duration_s("0.5s"), Ok(0.5));
    }

    #[test]
    fn rejects_unknown_units_and_junk() {
        for bad in ["10x", "", "m", "10s5", "-3s", "abc", "-1"] {
            let e = parse_duration_s(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }
}
