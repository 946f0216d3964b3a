//! The statistics of an experiment, each defined once: the mean with its Student t interval,
//! the geometric mean with a t interval on log10, the paired difference over common seeds and
//! the rounding of losses the ranking compares.
//!
//! Every function takes only finite values (callers filter) and returns `None` for what cannot
//! be computed (no value; an interval or a standard deviation from fewer than two), so that no
//! NaN or infinity ever reaches the JSON.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// The confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// The two-sided Student t quantile `t_{(1 + CONFIDENCE)/2, df}` (4.303 for 2 degrees of
/// freedom); `None` for `df = 0`.
pub fn t_quantile(df: usize) -> Option<f64> {
    if df == 0 {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, df as f64).ok()?;
    Some(t.inverse_cdf(0.5 + CONFIDENCE / 2.0)).filter(|q| q.is_finite())
}

/// Mean, sample standard deviation and 95% Student t interval of the mean of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeanStat {
    /// The mean; `null` without a value.
    pub mean: Option<f64>,
    /// The sample standard deviation (n - 1 in the denominator); `null` for n < 2.
    pub sd: Option<f64>,
    /// Lower end of the 95% interval of the mean, `mean - t * sd / sqrt(n)` (t with n - 1
    /// degrees of freedom); `null` for n < 2.
    pub low: Option<f64>,
    /// Upper end of that interval; `null` for n < 2.
    pub high: Option<f64>,
    /// Values the statistics are computed from.
    pub n: usize,
}

impl MeanStat {
    /// The statistics of `values` (finite values only; others are left out).
    pub fn of(values: &[f64]) -> MeanStat {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return MeanStat { mean: None, sd: None, low: None, high: None, n };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = (n >= 2).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        let half = sd.zip(t_quantile(n.saturating_sub(1))).map(|(sd, t)| t * sd / (n as f64).sqrt());
        let finite = |x: f64| Some(x).filter(|x| x.is_finite());
        MeanStat {
            mean: finite(mean),
            sd: sd.and_then(finite),
            low: half.and_then(|h| finite(mean - h)),
            high: half.and_then(|h| finite(mean + h)),
            n,
        }
    }

    /// Whether both intervals are known and they share no point.
    pub fn disjoint(&self, other: &MeanStat) -> bool {
        match (self.low, self.high, other.low, other.high) {
            (Some(a0), Some(a1), Some(b0), Some(b1)) => a1 < b0 || b1 < a0,
            _ => false,
        }
    }
}

/// Geometric mean of a positive quantity (a ratio), with the 95% t interval of the mean of its
/// log10 taken back by `10^x`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GeoStat {
    /// `10^mean(log10 x)`; `null` without a positive finite value.
    pub geo_mean: Option<f64>,
    /// `10^(low end of the t interval of mean(log10 x))`; `null` for n < 2.
    pub low: Option<f64>,
    /// `10^(high end)`; `null` for n < 2.
    pub high: Option<f64>,
    /// Positive finite values the statistics are computed from.
    pub n: usize,
}

impl GeoStat {
    /// The statistics of `values`; values that are not positive and finite are left out.
    pub fn of(values: &[f64]) -> GeoStat {
        let logs: Vec<f64> = values.iter().filter(|x| x.is_finite() && **x > 0.0).map(|x| x.log10()).collect();
        let m = MeanStat::of(&logs);
        let pow = |x: Option<f64>| x.map(|x| 10f64.powf(x)).filter(|x| x.is_finite());
        GeoStat { geo_mean: pow(m.mean), low: pow(m.low), high: pow(m.high), n: m.n }
    }

    /// `log10` of the geometric mean (the mean of the logs).
    pub fn log10_mean(&self) -> Option<f64> {
        self.geo_mean.filter(|g| *g > 0.0).map(f64::log10).filter(|x| x.is_finite())
    }
}

/// The mean of paired differences `variant - baseline` over the seeds where both have a value,
/// with its 95% paired t interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PairedDiff {
    /// Mean difference, variant minus baseline; `null` without a pair.
    pub mean: Option<f64>,
    /// Lower end of the 95% t interval (n_pairs - 1 degrees of freedom); `null` for fewer than
    /// two pairs.
    pub low: Option<f64>,
    /// Upper end; `null` for fewer than two pairs.
    pub high: Option<f64>,
    /// Seeds on which both runs finished with a finite value.
    pub n_pairs: usize,
    /// The interval is known and does not contain 0: the difference is distinguishable from
    /// none at the 95% level.
    pub excludes_zero: bool,
}

impl PairedDiff {
    /// The paired difference of `(variant, baseline)` pairs; pairs with a non-finite member are
    /// left out.
    pub fn of(pairs: &[(f64, f64)]) -> PairedDiff {
        let d: Vec<f64> = pairs.iter().filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(a, b)| a - b).collect();
        let m = MeanStat::of(&d);
        let excludes_zero = match (m.low, m.high) {
            (Some(lo), Some(hi)) => lo > 0.0 || hi < 0.0,
            _ => false,
        };
        PairedDiff { mean: m.mean, low: m.low, high: m.high, n_pairs: m.n, excludes_zero }
    }
}

/// `x` rounded to `digits` significant decimal digits (`0.12345 -> 0.123` for 3). Two numbers
/// with the same rounding give the same bits: the rounded mantissa is an integer divided or
/// multiplied by an exact power of ten.
pub fn round_significant(x: f64, digits: u32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let exp = x.abs().log10().floor() as i32;
    let shift = digits as i32 - 1 - exp;
    let round = |x: f64, shift: i32| {
        if shift >= 0 {
            let p = 10f64.powi(shift);
            (x * p).round() / p
        } else {
            let p = 10f64.powi(-shift);
            (x / p).round() * p
        }
    };
    let r = round(x, shift);
    // 0.09996 rounds to 0.1000, whose exponent is one higher: round again at that exponent so
    // that it equals 0.1 written directly.
    let exp2 = r.abs().log10().floor() as i32;
    if exp2 != exp {
        round(r, digits as i32 - 1 - exp2)
    } else {
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn t_quantiles_match_the_table() {
        // Two-sided 95%: df 1 -> 12.706, 2 -> 4.303, 4 -> 2.776, 30 -> 2.042.
        for (df, q) in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (30, 2.0423)] {
            assert!((t_quantile(df).unwrap() - q).abs() < 1e-3, "{df}");
        }
        assert_eq!(t_quantile(0), None);
    }

    #[test]
    fn mean_sd_and_t_interval_of_one_two_three() {
        let s = MeanStat::of(&[1.0, 2.0, 3.0]);
        assert_eq!(s.n, 3);
        assert!(close(s.mean.unwrap(), 2.0));
        assert!(close(s.sd.unwrap(), 1.0));
        let half = 4.302652729911275 / 3f64.sqrt();
        assert!((s.low.unwrap() - (2.0 - half)).abs() < 1e-9, "{s:?}");
        assert!((s.high.unwrap() - (2.0 + half)).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn one_value_has_a_mean_but_no_interval_and_none_has_nothing() {
        let s = MeanStat::of(&[0.5]);
        assert_eq!((s.mean, s.sd, s.low, s.high, s.n), (Some(0.5), None, None, None, 1));
        let s = MeanStat::of(&[f64::NAN, f64::INFINITY]);
        assert_eq!((s.mean, s.sd, s.low, s.high, s.n), (None, None, None, None, 0));
    }

    #[test]
    fn paired_differences_exclude_zero_only_when_consistent() {
        // Differences 1, 1.1, 0.9: mean 1, sd 0.1, interval 1 +- 0.248.
        let d = PairedDiff::of(&[(2.0, 1.0), (3.1, 2.0), (1.9, 1.0)]);
        assert_eq!(d.n_pairs, 3);
        assert!(close(d.mean.unwrap(), 1.0));
        assert!((d.low.unwrap() - (1.0 - 4.302652729911275 * 0.1 / 3f64.sqrt())).abs() < 1e-9);
        assert!(d.excludes_zero);
        // Differences 1, -1, 0.5: the interval contains 0.
        let d = PairedDiff::of(&[(2.0, 1.0), (1.0, 2.0), (1.5, 1.0)]);
        assert!(d.low.unwrap() < 0.0 && d.high.unwrap() > 0.0 && !d.excludes_zero);
        // One pair: a mean, no interval, so nothing is excluded.
        let d = PairedDiff::of(&[(2.0, 1.0), (f64::NAN, 1.0)]);
        assert_eq!((d.mean, d.low, d.n_pairs, d.excludes_zero), (Some(1.0), None, 1, false));
    }

    #[test]
    fn geometric_mean_interval_is_the_t_interval_of_log10_taken_back() {
        // log10: -1, -2, -3 -> mean -2 (geo mean 0.01), sd 1, interval -2 +- 2.484.
        let g = GeoStat::of(&[0.1, 0.01, 0.001, 0.0, -1.0, f64::NAN]);
        assert_eq!(g.n, 3, "zero, negative and NaN are left out");
        assert!(close(g.geo_mean.unwrap(), 0.01));
        let half = 4.302652729911275 / 3f64.sqrt();
        assert!(close(g.low.unwrap(), 10f64.powf(-2.0 - half)));
        assert!(close(g.high.unwrap(), 10f64.powf(-2.0 + half)));
        assert!(close(g.log10_mean().unwrap(), -2.0));
        assert_eq!(GeoStat::of(&[]).geo_mean, None);
    }

    #[test]
    fn rounding_to_three_significant_digits_makes_near_equal_losses_equal() {
        assert_eq!(round_significant(0.12345, 3), 0.123);
        assert_eq!(round_significant(0.12349, 3), round_significant(0.1231, 3));
        assert_eq!(round_significant(0.099996, 3), 0.1);
        assert_eq!(round_significant(12345.0, 3), 12300.0);
        assert_eq!(round_significant(-0.5556, 3), -0.556);
        assert_eq!(round_significant(0.0, 3), 0.0);
        assert_ne!(round_significant(0.1234, 3), round_significant(0.1236, 3));
    }

    #[test]
    fn intervals_overlap_unless_apart() {
        let a = MeanStat::of(&[1.0, 1.1, 0.9]);
        let b = MeanStat::of(&[5.0, 5.1, 4.9]);
        let c = MeanStat::of(&[1.2, 1.0, 1.4]);
        assert!(a.disjoint(&b) && b.disjoint(&a));
        assert!(!a.disjoint(&c));
        assert!(!a.disjoint(&MeanStat::of(&[9.0])), "no interval: not distinguishable");
    }
}
