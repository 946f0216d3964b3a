//! [`Dataset`] and [`Targets`]: samples and their labels in `f64`, the train/validation split and
//! copying mini-batches out in the run's precision (layout in the [module docs](super)).

use ndarray::{Array2, Axis, Slice};
use rand::seq::SliceRandom;

use crate::engine::layers::ensure_shape;
use crate::engine::rng::{rng, Stream};
use crate::engine::scalar::Scalar;
use crate::engine::{EngineError, Result};

/// Samples and their targets, in `f64` (cast to the run's precision when batched).
///
/// For sequences see the [module docs](super#sequence-layout) for the layout of `x` and `y`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Samples x features; for sequences samples x (T * F), feature `f` of step `t` at column
    /// `t * F + f`.
    pub x: Array2<f64>,
    /// Targets, one per sample (or one per time step when `per_step_targets`).
    pub y: Targets,
    /// Time steps per sample for sequence data (None for plain samples).
    pub seq_len: Option<usize>,
    /// True when targets are given for every time step (tasks solved with return_sequences).
    pub per_step_targets: bool,
}

/// Per input feature: the mean and the population standard deviation of a dataset's inputs
/// (over samples and, for sequences, time steps).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureStats {
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// Standard deviation of each feature (population: divided by the count).
    pub std: Vec<f64>,
}

/// What a sample is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices in `0..classes`.
    Classes {
        /// One label per sample; with per-step targets one per time step, step `t` of sample
        /// `i` at `i * T + t`.
        labels: Vec<usize>,
        /// Number of classes.
        classes: usize,
    },
    /// Regression targets: samples x outputs; with per-step targets samples x (T * outputs),
    /// output `k` of step `t` at column `t * outputs + k`.
    Values(Array2<f64>),
}

impl Dataset {
    /// Plain (non-sequence) samples.
    pub(super) fn plain(x: Array2<f64>, y: Targets) -> Dataset {
        Dataset { x, y, seq_len: None, per_step_targets: false }
    }

    /// Number of samples (sequences, for sequence data).
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no samples (never the case for a generated dataset).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features per sample (`x.ncols()`), or per time step for sequences (`x.ncols() / T`).
    pub fn input_dim(&self) -> usize {
        match self.seq_len {
            Some(steps) => self.x.ncols().checked_div(steps).unwrap_or(0),
            None => self.x.ncols(),
        }
    }

    /// Number of classes, or number of regression target columns (per time step with
    /// per-step targets).
    pub fn output_dim(&self) -> usize {
        match &self.y {
            Targets::Classes { classes, .. } => *classes,
            Targets::Values(v) => match self.step_targets() {
                Some(steps) => v.ncols().checked_div(steps).unwrap_or(0),
                None => v.ncols(),
            },
        }
    }

    /// `Some(T)` when every time step has its own target.
    fn step_targets(&self) -> Option<usize> {
        self.seq_len.filter(|_| self.per_step_targets)
    }

    /// Deterministic train/validation split.
    ///
    /// Shuffles the indices `0..len` with `rng(seed, Stream::Shuffle)` and holds out the first
    /// `round(len * fraction)` of them, at least 1 when `fraction > 0` and `len >= 2`, and never
    /// so many that no training sample is left. Each part keeps the rows in their original
    /// relative order. Returns `(self, None)` when nothing is held out: `fraction` is 0 (or not a
    /// positive number), or there are fewer than 2 samples. `fraction >= 1` holds out all but one.
    /// Sequences are split whole (a sample is a sequence); both parts keep `seq_len` and
    /// `per_step_targets`.
    pub fn split(self, fraction: f64, seed: u64) -> (Dataset, Option<Dataset>) {
        let len = self.len();
        // Written so that NaN, like 0 and negatives, holds nothing out.
        if fraction.is_nan() || fraction <= 0.0 || len < 2 {
            return (self, None);
        }
        // The float product is clamped before conversion, so the cast cannot misbehave even for
        // `fraction = inf`.
        let wanted = (len as f64 * fraction).round().min(len as f64);
        let held_out = (wanted as usize).clamp(1, len - 1);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng(seed, Stream::Shuffle));
        let (validation, train) = order.split_at_mut(held_out);
        // Sorting keeps the original relative order, so the split only decides membership.
        validation.sort_unstable();
        train.sort_unstable();
        (self.take(train), Some(self.take(validation)))
    }

    /// Copies the samples `idx` into `out`, cast to `T`.
    ///
    /// Plain samples: row `b` of `out` is sample `idx[b]`, shape `(B, input_dim())` with
    /// `B = idx.len()`. Sequences of `T` steps are written *time-major*: shape
    /// `(T * B, input_dim())`, row `t * B + b` = step `t` of sample `idx[b]`, so that step `t` of
    /// the whole batch is the contiguous block of rows `t*B .. (t+1)*B`.
    ///
    /// `out` is reallocated only when its shape differs from that: the training loop calls this
    /// every step with the same batch size and must not allocate. Fails only when `out` cannot
    /// be allocated ([`EngineError::OutOfMemory`]).
    ///
    /// # Panics
    /// If an index is `>= len()` (a caller bug, as with slice indexing).
    pub fn gather_x<T: Scalar>(&self, idx: &[usize], out: &mut Array2<T>) -> Result<()> {
        match self.seq_len {
            Some(steps) => copy_steps(&self.x, steps, idx, out, "the input batch"),
            None => copy_rows(&self.x, idx, out, "the input batch"),
        }
    }

    /// Targets of the samples `idx`.
    ///
    /// For [`Targets::Classes`] the labels are written into `labels` (cleared first, so its
    /// capacity is reused) and `values` is left untouched. For [`Targets::Values`] the rows are
    /// copied into `values` (reallocated only when its shape differs) and `labels` is cleared, so
    /// stale labels cannot be mistaken for current ones.
    ///
    /// Per-sequence targets are gathered one per sample, as for plain samples. Per-step targets
    /// are time-major like [`Dataset::gather_x`]: `labels[t * B + b]` is the label of step `t`
    /// of sample `idx[b]` (`T * B` labels), and `values` is `(T * B, output_dim())` with row
    /// `t * B + b` the targets of that step. Fails only when a buffer cannot be allocated
    /// ([`EngineError::OutOfMemory`]).
    ///
    /// # Panics
    /// If an index is `>= len()` (a caller bug, as with slice indexing).
    pub fn gather_y<T: Scalar>(&self, idx: &[usize], labels: &mut Vec<usize>, values: &mut Array2<T>) -> Result<()> {
        labels.clear();
        match (&self.y, self.step_targets()) {
            (Targets::Classes { labels: all, .. }, steps) => {
                let steps_or_one = steps.unwrap_or(1);
                let n = idx.len().saturating_mul(steps_or_one);
                labels
                    .try_reserve_exact(n)
                    .map_err(|_| EngineError::out_of_memory(n, std::mem::size_of::<usize>(), "the batch's labels"))?;
                match steps {
                    None => labels.extend(idx.iter().map(|&i| all[i])),
                    Some(steps) => {
                        for t in 0..steps {
                            labels.extend(idx.iter().map(|&i| all[i * steps + t]));
                        }
                    }
                }
                Ok(())
            }
            (Targets::Values(all), None) => copy_rows(all, idx, values, "the target batch"),
            (Targets::Values(all), Some(steps)) => copy_steps(all, steps, idx, values, "the target batch"),
        }
    }

    /// Mean and (population) standard deviation of each input feature over every sample —
    /// and, for sequences, every time step: the statistics `data.standardize` uses and the
    /// ones the run record reports as `input_stats`. Empty for an empty dataset.
    pub fn feature_stats(&self) -> FeatureStats {
        let features = self.input_dim();
        let (mut sum, mut sq) = (vec![0.0f64; features], vec![0.0f64; features]);
        if features == 0 {
            return FeatureStats { mean: sum, std: sq };
        }
        let blocks = self.x.ncols() / features;
        let count = (self.len() * blocks) as f64;
        if count == 0.0 {
            return FeatureStats { mean: Vec::new(), std: Vec::new() };
        }
        for row in self.x.rows() {
            for (j, &v) in row.iter().enumerate() {
                sum[j % features] += v;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        // Two passes: the centred sum of squares stays accurate for large offsets.
        for row in self.x.rows() {
            for (j, &v) in row.iter().enumerate() {
                let d = v - mean[j % features];
                sq[j % features] += d * d;
            }
        }
        let std = sq.iter().map(|s| (s / count).sqrt()).collect();
        FeatureStats { mean, std }
    }

    /// Replaces every input value `x` of feature `f` by `(x - mean[f]) / std[f]` (for
    /// sequences, at every time step); a feature with `std[f] == 0` (constant) is only centred.
    /// `stats` must have one entry per input feature (from [`Dataset::feature_stats`] of the
    /// training split); extra or missing entries leave the features they do not cover as they
    /// are.
    pub fn standardize(&mut self, stats: &FeatureStats) {
        let features = self.input_dim();
        if features == 0 || stats.mean.len() != features || stats.std.len() != features {
            return;
        }
        for mut row in self.x.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                let f = j % features;
                let scale = if stats.std[f] > 0.0 { stats.std[f] } else { 1.0 };
                *v = (*v - stats.mean[f]) / scale;
            }
        }
    }

    /// The samples `idx` (in that order) as a new dataset. Indices come from this module and are
    /// in range by construction.
    pub(super) fn take(&self, idx: &[usize]) -> Dataset {
        let x = self.x.select(Axis(0), idx);
        let y = match &self.y {
            Targets::Classes { labels, classes } => {
                // With per-step targets each sample owns a block of `T` labels.
                let per = self.step_targets().unwrap_or(1);
                let labels = idx.iter().flat_map(|&i| labels[i * per..(i + 1) * per].iter().copied()).collect();
                Targets::Classes { labels, classes: *classes }
            }
            Targets::Values(v) => Targets::Values(v.select(Axis(0), idx)),
        };
        Dataset { x, y, seq_len: self.seq_len, per_step_targets: self.per_step_targets }
    }
}

/// Copies rows `idx` of `src` into `out` as `T`, reallocating `out` only when its shape differs.
fn copy_rows<T: Scalar>(src: &Array2<f64>, idx: &[usize], out: &mut Array2<T>, what: &'static str) -> Result<()> {
    ensure_shape(out, idx.len(), src.ncols(), what)?;
    for (mut dst, &i) in out.rows_mut().into_iter().zip(idx) {
        for (d, &s) in dst.iter_mut().zip(src.row(i)) {
            *d = T::of(s);
        }
    }
    Ok(())
}

/// Copies the sequences `idx` of `src` (rows of `steps` blocks of `width = ncols / steps`
/// values) into `out` time-major: row `t * B + b` of the `(steps * B, width)` result is block
/// `t` of row `idx[b]`. Reallocates `out` only when its shape differs.
fn copy_steps<T: Scalar>(
    src: &Array2<f64>,
    steps: usize,
    idx: &[usize],
    out: &mut Array2<T>,
    what: &'static str,
) -> Result<()> {
    let batch = idx.len();
    let width = src.ncols().checked_div(steps).unwrap_or(0);
    ensure_shape(out, steps.saturating_mul(batch), width, what)?;
    for (b, &i) in idx.iter().enumerate() {
        let row = src.row(i);
        for t in 0..steps {
            let block = row.slice_axis(Axis(0), Slice::from(t * width..(t + 1) * width));
            for (d, &v) in out.row_mut(t * batch + b).iter_mut().zip(block) {
                *d = T::of(v);
            }
        }
    }
    Ok(())
}
