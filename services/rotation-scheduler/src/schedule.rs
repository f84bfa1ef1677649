//! Rotation decisions as pure functions of time, kept apart from the loop that acts on
//! them (the habit of SPIRE's `rotationutil` and linkerd's identity client).

use chrono::{DateTime, Duration, Utc};

/// Fraction of the lifetime after which a credential is due for renewal.
pub const RENEW_AT_FRACTION: (i64, i64) = (2, 3);
/// Largest jitter, as a fraction of the lifetime, subtracted from the renewal time.
pub const MAX_JITTER_FRACTION: f64 = 0.05;

/// When a credential valid from `not_before` to `not_after` is due for renewal:
/// two thirds into its lifetime, minus `jitter_fraction` × 5% of the lifetime, never
/// before `not_before`.
///
/// `jitter_fraction` is clamped to `0.0..=1.0` (NaN counts as 0). A credential with
/// no positive lifetime is due at `not_before`.
pub fn renew_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    jitter_fraction: f64,
) -> DateTime<Utc> {
    let lifetime_ms = (not_after - not_before).num_milliseconds();
    if lifetime_ms <= 0 {
        return not_before;
    }
    let jitter_fraction = if jitter_fraction.is_nan() {
        0.0
    } else {
        jitter_fraction.clamp(0.0, 1.0)
    };
    let (num, den) = RENEW_AT_FRACTION;
    // i128 so even absurd lifetimes cannot overflow the multiplication.
    let base_ms = i128::from(lifetime_ms) * i128::from(num) / i128::from(den);
    // `as` on a finite, non-negative f64 below i64::MAX is exact enough and cannot wrap.
    let jitter_ms = (lifetime_ms as f64 * MAX_JITTER_FRACTION * jitter_fraction) as i128;
    let offset_ms = i64::try_from((base_ms - jitter_ms).max(0)).unwrap_or(lifetime_ms);
    not_before + Duration::milliseconds(offset_ms)
}

/// A stable jitter fraction in `0.0..1.0` derived from a serial (FNV-1a, then the
/// SplitMix64 finaliser so similar serials spread over the whole range), so every
/// replica and every restart computes the same renewal time for a credential while
/// renewals of a batch issued together still spread out.
pub fn jitter_fraction(serial: &str) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = serial
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    // Top 53 bits → an exactly representable fraction in [0, 1).
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn without_jitter_renews_two_thirds_in() {
        assert_eq!(renew_at(t(0), t(300), 0.0), t(200));
        assert_eq!(renew_at(t(0), t(90 * 86_400), 0.0), t(60 * 86_400));
    }

    #[test]
    fn full_jitter_takes_off_five_percent_of_lifetime() {
        // 2/3 of 3000 s = 2000 s, minus 5% of 3000 s = 150 s.
        assert_eq!(renew_at(t(0), t(3000), 1.0), t(1850));
        // Half jitter: 75 s.
        assert_eq!(renew_at(t(0), t(3000), 0.5), t(1925));
    }

    #[test]
    fn jitter_is_clamped() {
        assert_eq!(renew_at(t(0), t(3000), 7.0), renew_at(t(0), t(3000), 1.0));
        assert_eq!(renew_at(t(0), t(3000), -1.0), renew_at(t(0), t(3000), 0.0));
        assert_eq!(renew_at(t(0), t(3000), f64::NAN), t(2000));
    }

    #[test]
    fn never_before_not_before_nor_after_not_after() {
        for (lifetime, jitter) in [(1, 1.0), (5, 0.9), (3000, 1.0), (1, 0.0)] {
            let r = renew_at(t(10), t(10 + lifetime), jitter);
            assert!(
                r >= t(10) && r < t(10 + lifetime),
                "lifetime {lifetime}: {r}"
            );
        }
        // Zero or negative lifetimes are due immediately.
        assert_eq!(renew_at(t(10), t(10), 0.5), t(10));
        assert_eq!(renew_at(t(10), t(5), 0.5), t(10));
    }

    #[test]
    fn five_second_certificate_renews_between_3_1_and_3_4_seconds() {
        let nb = t(0);
        let r = renew_at(nb, t(5), jitter_fraction("0a1b2c"));
        let ms = (r - nb).num_milliseconds();
        assert!((3083..=3334).contains(&ms), "{ms}");
    }

    #[test]
    fn jitter_fraction_is_stable_and_spread() {
        assert_eq!(jitter_fraction("0abc"), jitter_fraction("0abc"));
        let fractions: Vec<f64> = (0..1000)
            .map(|i| jitter_fraction(&format!("{i:04x}")))
            .collect();
        assert!(fractions.iter().all(|f| (0.0..1.0).contains(f)));
        let low = fractions.iter().filter(|f| **f < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    }
}
