//! The floating-point element type the engine computes in.
//!
//! Training runs in `f32` by default (speed); gradient checks and `analyze` run in `f64`
//! (accuracy). Every numeric routine is generic over [`Scalar`] so both share one code path.
//! The reductions at the end (sums of squares, accumulated in `f64`) are shared by the
//! optimiser's gradient norms and the probes.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::Float;

/// `f32` or `f64`.
pub trait Scalar:
    Float
    + LinalgScalar
    + ScalarOperand
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn of(x: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// Name used in reports (`"f32"` / `"f64"`).
    const NAME: &'static str;
    /// `e^x` without branches or library calls, so that elementwise loops over it vectorise.
    /// `f32`: see [`exp_f32`]; `f64` (gradient checks, analysis) uses the library `exp`.
    fn exp_branchless(self) -> Self;
}

impl Scalar for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    const NAME: &'static str = "f32";
    #[inline(always)]
    fn exp_branchless(self) -> Self {
        exp_f32(self)
    }
}

impl Scalar for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    const NAME: &'static str = "f64";
    #[inline(always)]
    fn exp_branchless(self) -> Self {
        self.exp()
    }
}

/// `e^x` in `f32` as Cephes' `expf` computes it, written without branches (clamps and selects
/// only) so that a loop over it vectorises; the library `expf` is a call per element.
///
/// ```text
/// n = round(x log2 e),  r = x - n ln 2 (ln 2 in two parts, so r is exact),  |r| <= ln 2 / 2
/// e^x = 2^n e^r,  e^r = 1 + r + r^2 P(r)  (P of degree 5, Cephes' minimax coefficients)
/// ```
/// Within 1.5 ulp of the exact value (tested); `x` is clamped to [-87.3, 88.7], the range where
/// `e^x` is a normal `f32`, so smaller inputs give e^-87.3 (about 1.2e-38) rather than a
/// subnormal or zero, and larger ones the largest power below overflow. NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer (to nearest) and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_55, 88.722_83);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n sits in the low mantissa bits of `shifted`; -126 <= n <= 128. 2^n is applied as two
    // exact powers of two, 2^(n/2) and 2^(n - n/2), each a normal f32 built from its exponent bits.
    let n = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    er * pow2(n >> 1) * pow2(n - (n >> 1))
}

/// Independent partial sums per reduction. One running sum is bound by the latency of an add per
/// element; `LANES` sums (combined at the end) keep several adds in flight and let the compiler
/// use SIMD. Every reduction below accumulates in `f64`, so the lane split changes results only
/// by f64 rounding.
pub const LANES: usize = 8;

/// `sum v^2` and `max |v|` in one pass. A NaN makes both NaN (a plain `max` would drop it and
/// report a non-finite gradient as finite).
pub fn sum_sq_max<T: Scalar>(values: &[T]) -> (f64, f64) {
    let (mut sq, mut max) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for ((s, m), v) in sq.iter_mut().zip(max.iter_mut()).zip(c) {
            let v = v.f64();
            *s += v * v;
            // A select, not `f64::max`, so that it vectorises; NaN is restored below.
            *m = if v.abs() > *m { v.abs() } else { *m };
        }
    }
    let (mut total, mut largest) = (sq.iter().sum::<f64>(), max.iter().fold(0.0f64, |a, &b| a.max(b)));
    for v in tail {
        let v = v.f64();
        total += v * v;
        largest = largest.max(v.abs());
    }
    // Any NaN input makes the sum of squares NaN.
    if total.is_nan() {
        largest = f64::NAN;
    }
    (total, largest)
}

/// `sum f(v)`, accumulated in f64 over [`LANES`] partial sums.
#[inline(always)]
pub fn lane_sum<T: Scalar>(values: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(v.f64());
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|v| f(v.f64())).sum::<f64>()
}

/// `sum v^2`.
pub fn sum_sq<T: Scalar>(values: &[T]) -> f64 {
    lane_sum(values, |v| v * v)
}

/// `sum (a - b)^2` over pairs (the shorter slice's length), accumulated in f64.
pub fn diff_sq<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x.f64() - y.f64()).powi(2)).sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            let d = x.f64() - y.f64();
            *s += d * d;
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_f32_is_within_two_ulp_of_exact() {
        let mut worst = 0.0f64;
        for i in 0..=400_000 {
            let x = -87.3f32 + (88.7 + 87.3) * i as f32 / 400_000.0;
            let exact = (x as f64).exp();
            let got = exp_f32(x) as f64;
            // One ulp of the exact value in f32.
            let ulp = (f32::EPSILON as f64) * 2f64.powi(exact.log2().floor() as i32);
            worst = worst.max((got - exact).abs() / ulp);
        }
        assert!(worst <= 1.5, "worst error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1000.0) > 0.0 && exp_f32(-1000.0) < 1.3e-38);
        assert!(exp_f32(1000.0).is_finite());
    }
}
