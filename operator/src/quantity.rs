//! Kubernetes quantities for sizes (`10Gi`, `500M`, `1.5Ti`, `1000`): the
//! syntax the volume size and the quotas accept, and their bytes.

const SUFFIXES: [(&str, f64); 13] = [
    ("", 1.0),
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// The bytes of a quantity, rounded up; `None` when it is not one or does
/// not fit in 64 bits.
pub fn bytes(s: &str) -> Option<u64> {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let number: f64 = number.parse().ok()?;
    let (_, factor) = SUFFIXES.iter().find(|(name, _)| *name == suffix)?;
    let value = (number * factor).ceil();
    // u64::MAX as f64 rounds up to 2^64, which does not fit: `<`, not `<=`.
    (value.is_finite() && value >= 0.0 && value < u64::MAX as f64).then_some(value as u64)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn sizes() {
        assert_eq!(bytes("10Gi"), Some(10 * 1024 * 1024 * 1024));
        assert_eq!(bytes("500M"), Some(500_000_000));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("1000"), Some(1000));
        for bad in ["", "Gi", "10GB", "ten", "-1", "1e3", "100Ei"] {
            assert_eq!(bytes(bad), None, "{bad:?}");
        }
    }
}
