//! Probes: what is measured about each layer at a probe step, and the series they form.
//!
//! Definitions (one name per quantity across engine, JSON and docs):
//! - `grad_norm`, `grad_rms`, `grad_max`: L2 norm, root mean square and largest magnitude of the
//!   layer's weight gradient (its first parameter: `weight` for dense and norms, the slopes for
//!   a PReLU activation layer), before clipping.
//! - `bias_grad_norm`: L2 norm of the `bias` gradient.
//! - `delta_norm`: L2 norm of dL/d(layer output) over the batch.
//! - `weight_norm`: L2 norm of the weight before the step.
//! - `update_ratio`: ||W_after - W_before|| / ||W_before|| of the step taken at the probe step
//!   (the change is summed by the optimiser as it updates, see `Optimizer::step_measured`).
//! - `activation_mean`, `activation_std`: over every (sample, unit) entry of the layer output.
//! - `saturation`, `dead_fraction`: see [`crate::engine::layers::UnitStats`].
//! - `recurrent_grad_norm`: for a recurrent layer, the L2 norm of the `weight_hh` gradient.
//! - `timestep_grad_norm` (recurrent): ||dL/dh_t|| for t = 1..T, the total gradient reaching
//!   the hidden state of step t, over the whole batch.
//! - `attention_entropy` (attention layers): per head, the entropy of the attention weights
//!   averaged over samples and query positions (ln T for uniform attention, 0 for one-hot).
//! - `max_logit` (attention layers): the largest attention logit `q.k / sqrt(dh)`.
//! - `rank_collapse` (attention layers' outputs and blocks' outputs): Dong et al.'s relative
//!   distance of a sequence's token matrix `X` (T x d) from rank one,
//!   `||X - 1 x̄^T||_F / ||X||_F` with `x̄` the mean token, averaged over the batch's sequences:
//!   1 for tokens with no common part, 0 when every token is the same ([`rank_collapse`]).
//! - blocks (residual and transformer blocks): `stream_norm`, the L2 norm of the block's output
//!   (the residual stream), and `delta_norm`, ||dL/dx_l|| of its input, both over the batch.
//! - histograms: counts of log10|g| over the weight gradient in the fixed bins of
//!   [`HIST_EDGES`]: bin 0 holds |g| < 1e-12 (zeros included), the last bin |g| >= 1e2.
//!
//! Values are `f64` and may be NaN or infinite; the report layer turns those into `null` and
//! counts them. Sums are taken in the run's precision within blocks of 256 elements and in `f64`
//! across blocks (`scalar::block_sum`): relative error about 1e-6 in an `f32` run, and a value
//! whose square overflows `f32` is still measured.

use ndarray::Array2;

use super::layers::RecurrentStats;
use super::scalar::{block_sum, diff_sq, sum_sq_max};
use super::Scalar;

/// Interior bin edges of the log10|g| histograms: -12, -11.5, ..., 2 (29 edges, 30 bins).
pub const HIST_EDGES: [f64; 29] = {
    let mut e = [0.0; 29];
    let mut i = 0;
    while i < 29 {
        e[i] = -12.0 + 0.5 * i as f64;
        i += 1;
    }
    e
};

/// Per-layer series; entry `i` belongs to probe step `i`. `None` where the quantity does not
/// apply to the layer (no weight, no saturating activation, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerSeries {
    /// See the module doc for every field.
    pub grad_norm: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub grad_rms: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub grad_max: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub bias_grad_norm: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub delta_norm: Vec<f64>,
    #[allow(missing_docs)]
    pub weight_norm: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub update_ratio: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub activation_mean: Vec<f64>,
    #[allow(missing_docs)]
    pub activation_std: Vec<f64>,
    #[allow(missing_docs)]
    pub saturation: Vec<Option<f64>>,
    #[allow(missing_docs)]
    pub dead_fraction: Vec<Option<f64>>,
    /// One histogram per probe step when histograms are on.
    pub histograms: Vec<Vec<u64>>,
    /// Recurrent layers: L2 norm of the `weight_hh` gradient (`grad_norm` is `weight_ih`'s).
    pub recurrent_grad_norm: Vec<Option<f64>>,
    /// Recurrent layers: what the layer measured at each probe step (||dL/dh_t||, gates,
    /// spectra of W_hh).
    pub recurrent: Vec<RecurrentStats>,
    /// Attention layers: what the layer measured at each probe step.
    pub attention: Vec<AttentionStats>,
    /// NaN and infinity counts over the layer's outputs and gradients, summed over probes and
    /// the step where a run stopped on them.
    pub non_finite: NonFinite,
}

/// What an attention layer measured at one probe step (see the module doc).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionStats {
    /// Per head.
    pub entropy: Vec<f64>,
    /// The largest logit over heads.
    pub max_logit: f64,
    /// Of the layer's output.
    pub rank_collapse: Option<f64>,
}

/// Series of one block (residual or transformer), entry `i` at probe step `i`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockSeries {
    /// L2 norm of the block's output over the batch.
    pub stream_norm: Vec<f64>,
    /// ||dL/d(block input)|| over the batch; `None` for a block at the network's input.
    pub delta_norm: Vec<Option<f64>>,
    /// Of the block's output, for sequences.
    pub rank_collapse: Vec<Option<f64>>,
}

/// Dong et al.'s rank-collapse measure of time-major rows (`x` is `(T*B, d)` with step `t` of
/// sequence `b` in row `t*B + b`): per sequence `||X - 1 x̄^T||_F / ||X||_F`, averaged over the
/// sequences; `None` for fewer than two steps or when the rows do not split into `steps`.
/// Sequences whose tokens are all zero count as 0.
pub fn rank_collapse<T: Scalar>(x: &Array2<T>, steps: usize) -> Option<f64> {
    let rows = x.nrows();
    if steps < 2 || rows == 0 || !rows.is_multiple_of(steps) {
        return None;
    }
    let (b, d) = (rows / steps, x.ncols());
    // One pass per sum over the rows in memory order, with a (sequence, feature) accumulator per
    // entry of a step's B x d block: sums over t per entry (that vectorises), then over features.
    let values = match x.as_slice() {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    };
    let block = b * d;
    let mut mean = vec![0.0f64; block];
    for step in values.chunks_exact(block.max(1)) {
        mean.iter_mut().zip(step).for_each(|(m, v)| *m += v.f64());
    }
    mean.iter_mut().for_each(|m| *m /= steps as f64);
    let (mut dev, mut all) = (vec![0.0f64; block], vec![0.0f64; block]);
    for step in values.chunks_exact(block.max(1)) {
        for (((dv, al), m), v) in dev.iter_mut().zip(all.iter_mut()).zip(&mean).zip(step) {
            let v = v.f64();
            *dv += (v - m) * (v - m);
            *al += v * v;
        }
    }
    let total: f64 = dev
        .chunks_exact(d.max(1))
        .zip(all.chunks_exact(d.max(1)))
        .map(|(dv, al)| {
            let (dev, all) = (dv.iter().sum::<f64>(), al.iter().sum::<f64>());
            if all > 0.0 {
                (dev / all).sqrt()
            } else {
                0.0
            }
        })
        .sum();
    Some(total / b as f64)
}

/// Counts of non-finite values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NonFinite {
    /// NaN values.
    pub nan: u64,
    /// Infinite values.
    pub inf: u64,
}

impl NonFinite {
    /// Counts the non-finite entries of `values`.
    pub fn of<'a, T: Scalar>(values: impl IntoIterator<Item = &'a T>) -> Self {
        let mut c = NonFinite::default();
        for v in values {
            if v.is_nan() {
                c.nan += 1;
            } else if v.is_infinite() {
                c.inf += 1;
            }
        }
        c
    }

    /// True when nothing non-finite was counted.
    pub fn is_clean(&self) -> bool {
        self.nan == 0 && self.inf == 0
    }

    /// Adds `other`.
    pub fn add(&mut self, other: NonFinite) {
        self.nan += other.nan;
        self.inf += other.inf;
    }
}

/// The array's elements in memory order: the engine's arrays are contiguous, and every statistic
/// here is independent of element order. A non-contiguous view is copied.
fn elements<T: Scalar>(a: &Array2<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice_memory_order() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// L2 norm, RMS and max |v| of an array (summed as `scalar::block_sum` describes).
pub fn norm_rms_max<T: Scalar>(a: &Array2<T>) -> (f64, f64, f64) {
    let (sq, max) = sum_sq_max(&elements(a));
    let n = a.len().max(1) as f64;
    (sq.sqrt(), (sq / n).sqrt(), max)
}

/// L2 norm of an array.
pub fn norm<T: Scalar>(a: &Array2<T>) -> f64 {
    block_sum(&elements(a), |v| v * v, |v| v * v).sqrt()
}

/// Mean and (population) standard deviation: two passes (the mean, then the squared deviations
/// from it), each a single vectorisable sum.
pub fn mean_std<T: Scalar>(a: &Array2<T>) -> (f64, f64) {
    let values = elements(a);
    let n = values.len().max(1) as f64;
    let mean = block_sum(&values, |v| v, |v| v) / n;
    // Deviations from the mean rounded to `T`: that shifts the sum of squares by n (mean - m)^2,
    // a relative change of (ulp / std)^2, nothing unless std is at the resolution of `T`.
    let m = T::of(mean);
    let var = block_sum(&values, |v| (v - m) * (v - m), |v| (v - m.f64()) * (v - m.f64())) / n;
    (mean, var.sqrt())
}

/// L2 norm of `a - b` (same shapes), in f64.
pub fn diff_norm<T: Scalar>(a: &Array2<T>, b: &Array2<T>) -> f64 {
    diff_sq(&elements(a), &elements(b)).sqrt()
}

/// Histogram of log10|g| in the bins of [`HIST_EDGES`].
pub fn log_histogram<T: Scalar>(a: &Array2<T>) -> Vec<u64> {
    let mut h = vec![0u64; HIST_EDGES.len() + 1];
    for v in a.iter() {
        let m = v.f64().abs();
        if !m.is_finite() {
            continue;
        }
        let l = if m > 0.0 { m.log10() } else { f64::NEG_INFINITY };
        let bin = HIST_EDGES.partition_point(|&e| e <= l);
        h[bin] += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn histogram_puts_zero_in_the_first_bin_and_edges_in_the_upper_bin() {
        let h = log_histogram(&array![[0.0f64, 1e-12, 1.0, 1e3]]);
        assert_eq!(h[0], 1, "zero");
        assert_eq!(h[1], 1, "1e-12 sits on the first edge");
        assert_eq!(h[25], 1, "log10(1) = 0 = edge 24");
        assert_eq!(h[29], 1, "overflow");
    }

    #[test]
    fn reductions_match_the_naive_sums() {
        let a = Array2::from_shape_fn((7, 5), |(i, j)| (i as f64 - 3.1) * 0.37 + j as f64 * 1.9 - 100.0);
        let v: Vec<f64> = a.iter().copied().collect();
        let n = v.len() as f64;
        let sq: f64 = v.iter().map(|x| x * x).sum();
        let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let (norm, rms, m) = norm_rms_max(&a);
        assert!((norm - sq.sqrt()).abs() < 1e-12 * norm && (rms - (sq / n).sqrt()).abs() < 1e-12 * rms);
        assert_eq!(m, max);
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (mu, sd) = mean_std(&a);
        assert!((mu - mean).abs() < 1e-12 * mean.abs() && (sd - std).abs() < 1e-10 * std, "{mu} {sd}");
        let b = a.mapv(|x| x * 0.5);
        let d: f64 = v.iter().map(|x| (x * 0.5).powi(2)).sum::<f64>().sqrt();
        assert!((diff_norm(&a, &b) - d).abs() < 1e-12 * d);
        // A transposed (non-contiguous in row order) view gives the same statistics.
        assert_eq!(norm_rms_max(&a.t().to_owned()).2, max);
    }

    #[test]
    fn rank_collapse_is_one_minus_nothing_for_centred_tokens_and_zero_for_equal_ones() {
        // Two sequences of 3 steps, time-major rows t*2 + b. Sequence 0: tokens (1,0), (-1,0),
        // (0,0): mean 0, so the distance from rank one is the whole matrix: 1. Sequence 1: every
        // token (2,3): 0. The average is 0.5.
        let x = array![[1.0f64, 0.0], [2.0, 3.0], [-1.0, 0.0], [2.0, 3.0], [0.0, 0.0], [2.0, 3.0]];
        assert_eq!(rank_collapse(&x, 3), Some(0.5));
        // Tokens (1,1), (3,1): mean (2,1); ||X - 1 mean^T||^2 = 2, ||X||^2 = 12: sqrt(1/6).
        let y = array![[1.0f64, 1.0], [3.0, 1.0]];
        assert!((rank_collapse(&y, 2).unwrap() - (1.0f64 / 6.0).sqrt()).abs() < 1e-15);
        assert_eq!(rank_collapse(&y, 1), None);
        assert_eq!(rank_collapse(&y, 3), None);
    }

    /// A column-major input gives what its standard-layout copy gives; no features gives 0
    /// (every sequence all zero).
    #[test]
    fn rank_collapse_reads_any_layout_and_no_features() {
        use ndarray::ShapeBuilder;
        let x = Array2::from_shape_fn((6, 5), |(i, j)| ((i * 5 + j) as f64 * 0.7).sin());
        let mut column_major = Array2::zeros((6, 5).f());
        column_major.assign(&x);
        assert!(!column_major.is_standard_layout());
        assert_eq!(rank_collapse(&column_major, 3), rank_collapse(&x, 3));
        assert_eq!(rank_collapse(&Array2::<f32>::zeros((6, 0)), 3), Some(0.0));
    }

    #[test]
    fn norm_keeps_nan_visible() {
        let (n, _, m) = norm_rms_max(&array![[1.0f32, f32::NAN]]);
        assert!(n.is_nan() && m.is_nan());
        let long = Array2::from_shape_fn((3, 11), |(i, j)| if (i, j) == (1, 4) { f32::NAN } else { 1.0 });
        let (n, _, m) = norm_rms_max(&long);
        assert!(n.is_nan() && m.is_nan());
        let (_, _, m) = norm_rms_max(&array![[1.0f32, f32::INFINITY, -2.0]]);
        assert_eq!(m, f64::INFINITY);
    }
}
