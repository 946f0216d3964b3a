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
}

impl Scalar for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    const NAME: &'static str = "f32";
}

impl Scalar for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    const NAME: &'static str = "f64";
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
