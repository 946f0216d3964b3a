//! Numbers as people read them in messages: digit groups (`16,777,216,000`) and byte sizes in
//! decimal units (`16.8 GB`). One definition for the engine's errors, the memory estimate and
//! the spec's limit messages.

/// `1234567` as `1,234,567`.
pub fn thousands(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in decimal units with one decimal (`16.8 GB`), or `512 bytes` below a kilobyte.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 999.95 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_in_threes_and_sizes_rounded_to_one_decimal() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(thousands(16_777_216_000u64), "16,777,216,000");
        assert_eq!(thousands(61_000_000u128), "61,000,000");
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(16_777_216_000), "16.8 GB");
        assert_eq!(human_bytes(999_960), "1.0 MB");
        assert_eq!(human_bytes(4_000_000_000), "4.0 GB");
        assert_eq!(human_bytes(u64::MAX), "18.4 EB");
    }
}
