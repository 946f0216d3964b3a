//! The floating-point element type the engine computes in.
//!
//! Training runs in `f32` by default (speed); gradient checks and `analyze` run in `f64`
//! (accuracy). Every numeric routine is generic over [`Scalar`] so both share one code path.
//! The reductions at the end are shared by the optimiser's gradient norms (f64 lanes) and the
//! probes (blocks in the run's precision, summed in f64).

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
    + super::linalg::FaerScalar
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

// Probe statistics (norms, means, the squared change of an update) are summed in the run's
// precision within blocks of `BLOCK` elements, over `BLOCK_LANES` lanes, and the block sums in
// f64: twice the SIMD width of f64 lanes in f32. The relative error stays near 1e-6 (each lane
// adds `BLOCK / BLOCK_LANES` = 16 terms in f32), far below what a probe reports. A block whose sum
// is not finite is summed again in f64, so a huge value whose square overflows f32 (an exploding
// gradient) is still measured, and the result is non-finite exactly when an element is. The
// optimiser's clipping norm, which changes the update, keeps the f64 lanes of `sum_sq`.

/// Elements per block of a probe sum.
const BLOCK: usize = 256;
/// Lanes of a probe sum's in-block partial sums.
const BLOCK_LANES: usize = 16;

/// `sum f(v)` for a probe statistic (see above); `exact` is `f` in f64, for a block whose sum in
/// `T` is not finite.
#[inline(always)]
pub fn block_sum<T: Scalar>(values: &[T], f: impl Fn(T) -> T, exact: impl Fn(f64) -> f64) -> f64 {
    let mut total = 0.0f64;
    for block in values.chunks(BLOCK) {
        let mut acc = [T::zero(); BLOCK_LANES];
        let chunks = block.chunks_exact(BLOCK_LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        let part = acc.iter().map(|a| a.f64()).sum::<f64>() + tail.iter().map(|&v| f(v).f64()).sum::<f64>();
        total += if part.is_finite() { part } else { block.iter().map(|v| exact(v.f64())).sum::<f64>() };
    }
    total
}

/// `sum v^2` and `max |v|` in one pass, for probes (see above). A NaN makes both NaN (a plain
/// `max` would drop it and report a non-finite gradient as finite).
pub fn sum_sq_max<T: Scalar>(values: &[T]) -> (f64, f64) {
    let (mut total, mut largest) = (0.0f64, T::zero());
    for block in values.chunks(BLOCK) {
        let (mut sq, mut max) = ([T::zero(); BLOCK_LANES], [T::zero(); BLOCK_LANES]);
        let chunks = block.chunks_exact(BLOCK_LANES);
        let tail = chunks.remainder();
        for c in chunks {
            for ((s, m), &v) in sq.iter_mut().zip(max.iter_mut()).zip(c) {
                *s += v * v;
                // A select, not `max`, so that it vectorises; NaN is restored below.
                *m = if v.abs() > *m { v.abs() } else { *m };
            }
        }
        for &v in tail {
            sq[0] += v * v;
            max[0] = if v.abs() > max[0] { v.abs() } else { max[0] };
        }
        let part = sq.iter().map(|a| a.f64()).sum::<f64>();
        total += if part.is_finite() { part } else { block.iter().map(|v| v.f64() * v.f64()).sum::<f64>() };
        largest = max.iter().fold(largest, |a, &b| if b > a { b } else { a });
    }
    // Any NaN input makes the sum of squares NaN.
    let largest = if total.is_nan() { f64::NAN } else { largest.f64() };
    (total, largest)
}

/// `sum (a - b)^2` over pairs (the shorter slice's length), for probes (see above).
pub fn diff_sq<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    let mut total = 0.0f64;
    for (ba, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let mut acc = [T::zero(); BLOCK_LANES];
        let (ca, cb) = (ba.chunks_exact(BLOCK_LANES), bb.chunks_exact(BLOCK_LANES));
        let tail = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| ((x - y) * (x - y)).f64()).sum::<f64>();
        for (x, y) in ca.zip(cb) {
            for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                *s += (x - y) * (x - y);
            }
        }
        let part = acc.iter().map(|a| a.f64()).sum::<f64>() + tail;
        total += if part.is_finite() {
            part
        } else {
            ba.iter().zip(bb).map(|(x, y)| (x.f64() - y.f64()).powi(2)).sum::<f64>()
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe sums in f32 blocks agree with f64 sums to ~1e-6, measure values whose squares
    /// overflow f32, and keep NaN and infinity visible.
    #[test]
    fn probe_sums_are_accurate_and_keep_non_finite_values() {
        let v: Vec<f32> = (0..10_007).map(|i| ((i as f32) * 0.731).sin() * (1.0 + (i % 7) as f32)).collect();
        let exact_sq: f64 = v.iter().map(|&x| (x as f64).powi(2)).sum();
        let exact_max = v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
        let (sq, max) = sum_sq_max(&v);
        assert!((sq / exact_sq - 1.0).abs() < 1e-6, "{sq} vs {exact_sq}");
        assert_eq!(max, exact_max);
        let exact_sum: f64 = v.iter().map(|&x| x as f64).sum();
        let abs_sum: f64 = v.iter().map(|&x| (x as f64).abs()).sum();
        assert!((block_sum(&v, |x| x, |x| x) - exact_sum).abs() < 1e-6 * abs_sum);
        let w: Vec<f32> = v.iter().map(|x| x * 0.999 + 1e-3).collect();
        let exact_diff: f64 = v.iter().zip(&w).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
        assert!((diff_sq(&w, &v) / exact_diff - 1.0).abs() < 1e-5);

        let mut huge = v.clone();
        huge[300] = 3e30;
        let (sq, max) = sum_sq_max(&huge);
        assert!((sq / 9e60 - 1.0).abs() < 1e-6 && max == 3e30f32 as f64, "{sq:e}");
        assert!((block_sum(&huge, |x| x * x, |x| x * x) / 9e60 - 1.0).abs() < 1e-6);
        let mut bad = v.clone();
        bad[5000] = f32::NAN;
        let (sq, max) = sum_sq_max(&bad);
        assert!(sq.is_nan() && max.is_nan());
        bad[5000] = f32::INFINITY;
        assert_eq!(sum_sq_max(&bad), (f64::INFINITY, f64::INFINITY));
        assert!(diff_sq(&bad, &v).is_infinite());
    }

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
