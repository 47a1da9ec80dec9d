//! Rates with units: `500K`, `1M`, `1.5MiB/s`, as curl's `--limit-rate` takes them (K, M, G are
//! powers of 1024; a bare number is bytes per second). One parser for the `ferry` CLI's flags
//! and ferryd's flags and configuration file.

/// Parses a rate into bytes per second; the error says what is accepted.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid rate `{s}`: give bytes per second, optionally with a unit: 500K, 1M, 2G (powers of 1024)"
        )
    };
    let t = s.trim();
    let t = t
        .strip_suffix("/s")
        .unwrap_or(t)
        .trim_end_matches(['B', 'b']);
    let t = t.strip_suffix(['i', 'I']).unwrap_or(t);
    let (number, scale) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let number = number.trim();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * scale as f64;
    if !(1.0..=1e18).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("500K"), Ok(500 * 1024));
        assert_eq!(parse_rate("500k"), Ok(500 * 1024));
        assert_eq!(parse_rate("1M"), Ok(1 << 20));
        assert_eq!(parse_rate("1.5M"), Ok(3 << 19));
        assert_eq!(parse_rate("2G"), Ok(2 << 30));
        assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
        assert_eq!(parse_rate("64KB"), Ok(64 << 10));
        for bad in ["", "M", "1X", "-1", "0", "1e3", "ten", "1..2K"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(e.contains("500K"), "{bad}: {e}");
        }
    }
}
