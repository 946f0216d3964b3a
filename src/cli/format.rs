//! Numbers and durations as the summaries and the progress lines write them.

use std::time::Duration;

/// A measurement in at most four significant digits: plain between 1e-3 and 1e5, in scientific
/// notation outside (`3.1e-13`), `0` for zero and `NaN/Inf` for what is not finite.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "NaN/Inf".to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    let a = x.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{x:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    } else {
        let s = format!("{x:.1e}");
        s.replace(".0e", "e")
    }
}

/// An optional measurement: `null` in the report is `–`.
pub fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), num)
}

/// A fraction as a percentage with one decimal (`95.3%`).
pub fn percent(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", x * 100.0)
    } else {
        "NaN/Inf".to_owned()
    }
}

/// A count with thousands separators (`84,482`): the engine's one definition.
pub fn count(n: u64) -> String {
    crate::engine::units::thousands(n)
}

/// A duration for people: `0.4s`, `12s`, `3m04s`, `1h02m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        let s = s.round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// A duration in milliseconds (the report's `duration_ms`), as [`duration`] writes it.
pub fn duration_ms(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

/// Steps per second: whole numbers from 10 up, two significant digits below.
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "– steps/s".to_owned()
    } else if per_sec >= 10.0 {
        format!("{} steps/s", count(per_sec.round() as u64))
    } else {
        format!("{} steps/s", num(per_sec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_four_significant_digits_and_switch_to_exponents_outside_1e_3_to_1e5() {
        assert_eq!(num(0.713147), "0.7131");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(3.1e-13), "3.1e-13");
        assert_eq!(num(1e-4), "1e-4");
        assert_eq!(num(2.5e6), "2.5e6");
        assert_eq!(num(-0.25), "-0.25");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "NaN/Inf");
        assert_eq!(opt(None), "–");
    }

    #[test]
    fn counts_durations_rates_and_percentages_read_as_people_write_them() {
        assert_eq!(count(84482), "84,482");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(duration(Duration::from_secs(184)), "3m04s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(rate(1234.4), "1,234 steps/s");
        assert_eq!(rate(0.5), "0.5 steps/s");
        assert_eq!(percent(0.953), "95.3%");
    }
}
