//! Datasets: the synthetic generators (xor, spirals, circles, moons, blobs, sine, teacher), the
//! sequence tasks (adding, copy, temporal order, parity, sine sequence), user (inline) samples and
//! sequences, the train/validation split, and copying mini-batches out in the run's precision.
//!
//! # Sequence layout
//!
//! A dataset of sequences with `T` time steps of `F` features keeps one row per sample:
//! [`Dataset::x`] is `samples x (T * F)` with feature `f` of step `t` at column `t * F + f`, and
//! [`Dataset::seq_len`] is `Some(T)`. Targets are either one per sequence (laid out as for plain
//! samples) or, when [`Dataset::per_step_targets`] is set, one per time step: class labels
//! `samples * T` long with step `t` of sample `i` at `i * T + t`, regression values
//! `samples x (T * K)` with output `k` of step `t` at column `t * K + k`.
//!
//! Mini-batches of sequences are copied out *time-major* ([`Dataset::gather_x`]): a batch of `B`
//! sequences becomes a `(T * B) x F` matrix whose row `t * B + b` is step `t` of the batch's
//! sample `b`, so a recurrent layer reads step `t` as the contiguous rows `t*B .. (t+1)*B`.
//! Per-step targets are gathered time-major the same way ([`Dataset::gather_y`]).
//!
//! This module owns turning a validated [`DataConfig`] into numbers. Like the rest of the engine it
//! is pure: it must not depend on serde, I/O, async runtimes or threads. Every random draw comes
//! from [`rng`]`(seed, `[`Stream::Data`]`)` (generation) or [`Stream::Shuffle`] (the split), so a
//! dataset is a function of its config and seed alone, bit for bit.
//!
//! The spec layer validates data configs first (`crate::spec`, with a JSON Pointer per problem).
//! The checks here are what the engine needs not to panic on a config that did not come through
//! it: each generator refuses parameters its recipe cannot draw from
//! ([`EngineError::Generator`]), inline data must be non-empty and rectangular with one target per
//! sample ([`EngineError::InlineData`]), and no array may outgrow what `ndarray` can index
//! ([`EngineError::DataTooLarge`]). Values themselves (finite or not) are the spec's concern.
//!
//! Files: this one holds [`Dataset`], [`Targets`], [`generate`], the split, batch gathering and
//! the helpers the generators share; `points.rs` the generators of plain samples (xor, spirals,
//! circles, moons, blobs, sine, teacher); `sequences.rs` the sequence tasks (adding, copy,
//! temporal order, parity, sine sequence); `inline.rs` user samples and sequences.

mod inline;
mod points;
mod sequences;
#[cfg(test)]
mod testing;

use ndarray::{Array2, Axis, Slice};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand_distr::StandardNormal;

use crate::engine::config::DataConfig;
use crate::engine::error::{EngineError, Result};
use crate::engine::rng::{rng, Rng, Stream};
use crate::engine::scalar::Scalar;

use inline::{inline, inline_sequences};
use points::{blobs, circles, moons, sine, spirals, teacher, xor};
use sequences::{adding, copy, parity, sine_sequence, temporal_order};
pub use sequences::{COPY_DELIMITER, COPY_INPUTS, COPY_SYMBOLS, TEMPORAL_ORDER_INPUTS};

/// Samples and their targets, in `f64` (cast to the run's precision when batched).
///
/// For sequences see the [module docs](self#sequence-layout) for the layout of `x` and `y`.
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

/// Generates the dataset of `config` from `seed`, drawing from `rng(seed, Stream::Data)`.
///
/// Every synthetic generator draws its points in the order its recipe states, adds its Gaussian
/// noise, and then shuffles the rows (one Fisher-Yates pass of the same stream) so that classes
/// are interleaved. Inline data is checked for shape and kept in the user's order.
///
/// Recipes, in brief (each private generator's doc states its exact draw order); `N(0, s^2)`
/// is drawn as `s * z` with `z` standard normal, so `noise = 0` gives clean data:
/// - `xor`: 2-D, sample `i` uniform in quadrant `i % 4` of `[-1,1]^2`, label
///   `(x0 > 0) xor (x1 > 0)` of the clean point, plus `N(0, noise^2)` per coordinate.
/// - `spirals`: `classes` arms; arm `j` has radius `r = 0.2 + 0.8 t` and angle
///   `2 pi j / classes + 4 t` for `t` evenly spaced in `[0, 1]`, plus `N(0, noise^2)`.
/// - `circles`: sklearn `make_circles` (outer radius 1 class 0, inner `factor` class 1).
/// - `moons`: sklearn `make_moons` (upper moon class 0, lower class 1).
/// - `blobs`: centres `U(-10, 10)^dims`, points `N(centre, std^2 I)`.
/// - `sine`: `x ~ U(-pi, pi)`, `y = sin x + N(0, noise^2)` (one target column).
/// - `teacher`: `x ~ N(0, I)` labelled by a random `dims -> hidden (tanh) -> out` net with
///   `N(0, 1/fan_in)` weights: argmax class, or the outputs when `classes == 0`.
/// - `inline`: the user's rows, kept as given.
///
/// Sequence tasks (layout in the [module docs](self#sequence-layout); each recipe in full on its
/// generator, `adding`, `copy`, `temporal_order`, `parity` and `sine_sequence`):
/// - `adding`: `T` steps of (value `U[0,1)`, marker); two markers, one in each half; target the
///   sum of the two marked values (regression, per sequence).
/// - `copy`: `L` of 8 symbols, `D - 1` blanks, a delimiter, `L` blanks (one-hot, 10 inputs);
///   a class target at every step: blank (0), then the `L` symbols during the last `L` steps.
/// - `temporal_order`: distractors with an `X` or `Y` at two positions; 4 classes (the order).
/// - `parity`: `T` bits; class = their XOR.
/// - `sine_sequence`: a noisy sine with random frequency and phase; target at every step the
///   clean next value.
/// - `inline_sequences`: the user's sequences (equal lengths; ragged ones are refused, nothing
///   is padded or masked).
///
/// Class counts of xor, spirals, circles, moons and blobs differ by at most 1 (the remainder goes
/// to the first classes).
///
/// # Errors
/// [`EngineError::Generator`] naming the generator and the parameter, [`EngineError::InlineData`]
/// naming the sample and time step, or [`EngineError::DataTooLarge`], when the config breaks an
/// invariant the spec layer enforces.
pub fn generate(config: &DataConfig, seed: u64) -> Result<Dataset> {
    let mut r = rng(seed, Stream::Data);
    let generated = match config {
        DataConfig::Xor { samples, noise } => xor(*samples, *noise, &mut r)?,
        DataConfig::Spirals { samples, noise, classes } => spirals(*samples, *noise, *classes, &mut r)?,
        DataConfig::Circles { samples, noise, factor } => circles(*samples, *noise, *factor, &mut r)?,
        DataConfig::Moons { samples, noise } => moons(*samples, *noise, &mut r)?,
        DataConfig::Blobs { samples, classes, dims, std } => blobs(*samples, *classes, *dims, *std, &mut r)?,
        DataConfig::Adding { samples, length } => adding(*samples, *length, &mut r)?,
        DataConfig::Copy { samples, length, delay } => copy(*samples, *length, *delay, &mut r)?,
        DataConfig::TemporalOrder { samples, length } => temporal_order(*samples, *length, &mut r)?,
        DataConfig::Parity { samples, length } => parity(*samples, *length, &mut r)?,
        DataConfig::SineSequence { samples, length, noise } => sine_sequence(*samples, *length, *noise, &mut r)?,
        DataConfig::InlineSequences { x, y } => return inline_sequences(x, y),
        DataConfig::Sine { samples, noise } => sine(*samples, *noise, &mut r)?,
        DataConfig::Teacher { samples, dims, classes, outputs, hidden } => {
            teacher(*samples, *dims, *classes, *outputs, *hidden, &mut r)?
        }
        // User data keeps its order: the user may rely on it (e.g. `analyze` takes the first
        // `batch_size` samples), and the split shuffles anyway.
        DataConfig::Inline { x, y } => return inline(x, y),
    };
    let mut order: Vec<usize> = (0..generated.len()).collect();
    order.shuffle(&mut r);
    Ok(generated.take(&order))
}

impl Dataset {
    /// Plain (non-sequence) samples.
    fn plain(x: Array2<f64>, y: Targets) -> Dataset {
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
    /// every step with the same batch size and must not allocate.
    ///
    /// # Panics
    /// If an index is `>= len()` (a caller bug, as with slice indexing).
    pub fn gather_x<T: Scalar>(&self, idx: &[usize], out: &mut Array2<T>) {
        match self.seq_len {
            Some(steps) => copy_steps(&self.x, steps, idx, out),
            None => copy_rows(&self.x, idx, out),
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
    /// `t * B + b` the targets of that step.
    ///
    /// # Panics
    /// If an index is `>= len()` (a caller bug, as with slice indexing).
    pub fn gather_y<T: Scalar>(&self, idx: &[usize], labels: &mut Vec<usize>, values: &mut Array2<T>) {
        labels.clear();
        match (&self.y, self.step_targets()) {
            (Targets::Classes { labels: all, .. }, None) => labels.extend(idx.iter().map(|&i| all[i])),
            (Targets::Classes { labels: all, .. }, Some(steps)) => {
                for t in 0..steps {
                    labels.extend(idx.iter().map(|&i| all[i * steps + t]));
                }
            }
            (Targets::Values(all), None) => copy_rows(all, idx, values),
            (Targets::Values(all), Some(steps)) => copy_steps(all, steps, idx, values),
        }
    }

    /// The samples `idx` (in that order) as a new dataset. Indices come from this module and are
    /// in range by construction.
    fn take(&self, idx: &[usize]) -> Dataset {
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
fn copy_rows<T: Scalar>(src: &Array2<f64>, idx: &[usize], out: &mut Array2<T>) {
    let shape = (idx.len(), src.ncols());
    if out.dim() != shape {
        *out = Array2::zeros(shape);
    }
    for (mut dst, &i) in out.rows_mut().into_iter().zip(idx) {
        for (d, &s) in dst.iter_mut().zip(src.row(i)) {
            *d = T::of(s);
        }
    }
}

/// Copies the sequences `idx` of `src` (rows of `steps` blocks of `width = ncols / steps`
/// values) into `out` time-major: row `t * B + b` of the `(steps * B, width)` result is block
/// `t` of row `idx[b]`. Reallocates `out` only when its shape differs.
fn copy_steps<T: Scalar>(src: &Array2<f64>, steps: usize, idx: &[usize], out: &mut Array2<T>) {
    let batch = idx.len();
    let width = src.ncols().checked_div(steps).unwrap_or(0);
    let shape = (steps * batch, width);
    if out.dim() != shape {
        *out = Array2::zeros(shape);
    }
    for (b, &i) in idx.iter().enumerate() {
        let row = src.row(i);
        for t in 0..steps {
            let block = row.slice_axis(Axis(0), Slice::from(t * width..(t + 1) * width));
            for (d, &v) in out.row_mut(t * batch + b).iter_mut().zip(block) {
                *d = T::of(v);
            }
        }
    }
}

/// `z ~ N(0, 1)`.
fn normal(r: &mut Rng) -> f64 {
    r.sample(StandardNormal)
}

/// Adds `noise * z` to every element, in order.
fn add_noise(x: &mut [f64], noise: f64, r: &mut Rng) {
    for v in x {
        *v += noise * normal(r);
    }
}

/// A `rows x cols` matrix of `std * z`, drawn in row-major order.
fn gaussian_matrix(rows: usize, cols: usize, std: f64, r: &mut Rng) -> Result<Array2<f64>> {
    let values = (0..checked_size(rows, cols)?).map(|_| std * normal(r)).collect();
    array(values, cols)
}

/// `(class, count)` for the classes that get samples: `samples / classes` each, the first
/// `samples % classes` one more. Classes past `samples` get none and are skipped, so a huge class
/// count costs nothing.
fn balanced_counts(samples: usize, classes: usize) -> impl Iterator<Item = (usize, usize)> {
    let base = samples / classes;
    let extra = samples % classes;
    (0..classes.min(samples)).map(move |c| (c, base + usize::from(c < extra)))
}

/// The sample count every generator needs: at least one, since nothing can train on no data.
fn check_samples(generator: &'static str, samples: usize) -> Result<()> {
    if samples == 0 {
        Err(EngineError::generator(generator, "samples", "must be at least 1 (nothing can train on no data)"))
    } else {
        Ok(())
    }
}

/// A sequence length: at least one step.
fn check_length(generator: &'static str, length: usize) -> Result<()> {
    if length == 0 {
        Err(EngineError::generator(generator, "length", "must be at least 1 (a sequence needs a time step)"))
    } else {
        Ok(())
    }
}

/// A noise or spread parameter: finite and non-negative (a NaN would silently poison every point).
fn check_noise(generator: &'static str, parameter: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(EngineError::generator(generator, parameter, format!("must be finite and >= 0, got {value}")))
    }
}

/// `rows * cols`, refusing sizes `ndarray` could not index (it panics beyond `isize::MAX` bytes).
fn checked_size(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f64>())
        .ok_or(EngineError::DataTooLarge { rows, cols })
}

/// Row-major values into a matrix of `cols` columns.
fn array(values: Vec<f64>, cols: usize) -> Result<Array2<f64>> {
    let rows = values.len().checked_div(cols).unwrap_or(0);
    Array2::from_shape_vec((rows, cols), values)
        .map_err(|e| EngineError::config("data", format!("internal shape error: {e}")))
}

/// Sequences of `steps` steps of `features` values each, one sequence per row of `x`.
fn sequences(x: Vec<f64>, steps: usize, features: usize, y: Targets, per_step: bool) -> Result<Dataset> {
    let x = array(x, checked_size(steps, features)?)?;
    Ok(Dataset { x, y, seq_len: Some(steps), per_step_targets: per_step })
}

/// A classification dataset from row-major `x` with `cols` columns.
fn classes_dataset(x: Vec<f64>, cols: usize, labels: Vec<usize>, classes: usize) -> Result<Dataset> {
    Ok(Dataset::plain(array(x, cols)?, Targets::Classes { labels, classes }))
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::engine::config::{InlineSequenceTargets, InlineTargets};

    #[test]
    fn same_seed_gives_identical_data_for_every_generator() {
        for config in every_generator() {
            assert_eq!(gen(&config, 7), gen(&config, 7), "{config:?}");
        }
    }

    #[test]
    fn same_seed_gives_identical_spirals() {
        let config = DataConfig::Spirals { samples: 300, noise: 0.1, classes: 2 };
        assert_eq!(gen(&config, 42), gen(&config, 42));
    }

    #[test]
    fn different_seed_gives_different_data_for_every_generator() {
        for config in every_generator() {
            assert_ne!(gen(&config, 1).x, gen(&config, 2).x, "{config:?}");
        }
    }

    #[test]
    fn generated_classes_are_interleaved_not_in_blocks() {
        // Unshuffled, the first half of circles would be all class 0.
        let d = gen(&DataConfig::Circles { samples: 200, noise: 0.0, factor: 0.5 }, 3);
        let first_half = &labels(&d)[..100];
        assert!(first_half.contains(&0) && first_half.contains(&1));
    }

    #[test]
    fn absurd_sample_counts_are_errors_not_panics() {
        let n = usize::MAX;
        for config in [
            DataConfig::Xor { samples: n, noise: 0.1 },
            DataConfig::Spirals { samples: n, noise: 0.1, classes: 2 },
            DataConfig::Circles { samples: n, noise: 0.1, factor: 0.5 },
            DataConfig::Moons { samples: n, noise: 0.1 },
            DataConfig::Blobs { samples: n, classes: 2, dims: 2, std: 1.0 },
            DataConfig::Sine { samples: n, noise: 0.1 },
            DataConfig::Teacher { samples: n, dims: 2, classes: 2, outputs: 0, hidden: 4 },
            DataConfig::Adding { samples: n, length: 50 },
            DataConfig::Adding { samples: 2, length: n },
            DataConfig::Copy { samples: n, length: 10, delay: 10 },
            DataConfig::Copy { samples: 2, length: n, delay: 10 },
            DataConfig::Copy { samples: 2, length: n / 2, delay: n / 2 },
            DataConfig::TemporalOrder { samples: n, length: 50 },
            DataConfig::TemporalOrder { samples: 2, length: n },
            DataConfig::Parity { samples: n, length: 10 },
            DataConfig::SineSequence { samples: n, length: 10, noise: 0.0 },
            DataConfig::SineSequence { samples: 2, length: n, noise: 0.0 },
        ] {
            assert!(generate(&config, 0).is_err(), "{config:?}");
        }
    }

    #[test]
    fn split_holds_out_the_rounded_fraction_and_partitions_the_rows() {
        let (train, validation) = numbered(100).split(0.2, 4);
        let validation = validation.map(|v| row_ids(&v)).unwrap_or_default();
        let train_ids = row_ids(&train);
        assert_eq!((train_ids.len(), validation.len()), (80, 20));
        let mut all: Vec<usize> = train_ids.iter().chain(&validation).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Parts keep the original order, and targets travel with their rows.
        assert!(train_ids.windows(2).all(|w| w[0] < w[1]));
        assert!(train_ids.iter().zip(labels(&train)).all(|(&i, &l)| l == i % 3));
        assert_eq!(train.output_dim(), 3);
    }

    #[test]
    fn split_is_deterministic_and_depends_on_the_seed() {
        let a = numbered(50).split(0.3, 8);
        assert_eq!(a, numbered(50).split(0.3, 8));
        assert_ne!(a, numbered(50).split(0.3, 9));
    }

    #[test]
    fn split_always_leaves_a_training_sample_and_holds_out_at_least_one() {
        let sizes = |n: usize, f: f64| {
            let (train, validation) = numbered(n).split(f, 1);
            (train.len(), validation.map(|v| v.len()))
        };
        assert_eq!(sizes(2, 0.01), (1, Some(1)));
        assert_eq!(sizes(3, 0.99), (1, Some(2)));
        assert_eq!(sizes(5, 1.0), (1, Some(4)));
        assert_eq!(sizes(5, f64::INFINITY), (1, Some(4)));
        assert_eq!(sizes(1, 0.5), (1, None));
        assert_eq!(sizes(10, 0.0), (10, None));
        assert_eq!(sizes(10, f64::NAN), (10, None));
        assert_eq!(sizes(10, -0.5), (10, None));
    }

    #[test]
    fn gather_x_copies_rows_and_reuses_the_buffer() {
        let d = numbered(10);
        let mut out = Array2::<f32>::zeros((0, 0));
        d.gather_x(&[3, 1, 3], &mut out);
        assert_eq!(out, ndarray::array![[3.0f32], [1.0], [3.0]]);
        let ptr = out.as_ptr();
        d.gather_x(&[9, 0, 5], &mut out);
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(out, ndarray::array![[9.0f32], [0.0], [5.0]]);
        // A different batch size reshapes the buffer.
        d.gather_x(&[2], &mut out);
        assert_eq!(out, ndarray::array![[2.0f32]]);
    }

    #[test]
    fn gather_y_writes_labels_into_the_reused_vector() {
        let d = numbered(10);
        let mut labels = Vec::new();
        let mut values = Array2::<f64>::zeros((2, 2));
        d.gather_y(&[4, 5, 6], &mut labels, &mut values);
        assert_eq!(labels, [1, 2, 0]);
        let ptr = labels.as_ptr();
        d.gather_y(&[0, 1, 2], &mut labels, &mut values);
        assert_eq!((labels.as_ptr(), labels.as_slice()), (ptr, &[0, 1, 2][..]));
        assert_eq!(values.dim(), (2, 2), "class targets leave the value buffer alone");
    }

    #[test]
    fn gather_y_copies_value_rows_and_reuses_the_buffer() {
        let x = vec![vec![0.0], vec![1.0], vec![2.0]];
        let y = InlineTargets::Values(vec![vec![0.5, 1.0], vec![1.5, 2.0], vec![2.5, 3.0]]);
        let d = gen(&DataConfig::Inline { x, y }, 0);
        let mut labels = vec![7];
        let mut values = Array2::<f32>::zeros((0, 0));
        d.gather_y(&[2, 0], &mut labels, &mut values);
        assert_eq!(values, ndarray::array![[2.5f32, 3.0], [0.5, 1.0]]);
        assert!(labels.is_empty());
        let ptr = values.as_ptr();
        d.gather_y(&[1, 1], &mut labels, &mut values);
        assert_eq!(values.as_ptr(), ptr);
        assert_eq!(values, ndarray::array![[1.5f32, 2.0], [1.5, 2.0]]);
    }

    // -----------------------------------------------------------------------------------------
    // Sequences.
    #[test]
    fn plain_data_is_not_a_sequence() {
        let d = gen(&DataConfig::Xor { samples: 8, noise: 0.1 }, 1);
        assert_eq!((d.seq_len, d.per_step_targets), (None, false));
        assert_eq!(numbered(4).seq_len, None);
    }

    #[test]
    fn gather_x_of_sequences_is_time_major() {
        let d = two_by_three(InlineSequenceTargets::PerSequence(InlineTargets::Classes(vec![0, 1])));
        assert_eq!((d.len(), d.input_dim(), d.seq_len), (2, 2, Some(3)));
        assert_eq!(d.x.row(1).to_vec(), vec![100.0, 101.0, 110.0, 111.0, 120.0, 121.0]);
        let mut out = Array2::<f64>::zeros((0, 0));
        d.gather_x(&[1, 0], &mut out);
        // Row t * B + b is step t of sample idx[b].
        let expected =
            ndarray::array![[100.0, 101.0], [0.0, 1.0], [110.0, 111.0], [10.0, 11.0], [120.0, 121.0], [20.0, 21.0]];
        assert_eq!(out, expected);
        // The same batch size reuses the buffer; another one reshapes it.
        let ptr = out.as_ptr();
        d.gather_x(&[0, 0], &mut out);
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(out.column(0).to_vec(), vec![0.0, 0.0, 10.0, 10.0, 20.0, 20.0]);
        let mut small = Array2::<f32>::zeros((0, 0));
        d.gather_x(&[1], &mut small);
        assert_eq!(small, ndarray::array![[100.0f32, 101.0], [110.0, 111.0], [120.0, 121.0]]);
    }

    #[test]
    fn per_sequence_targets_of_sequences_are_gathered_one_per_sample() {
        let d = two_by_three(InlineSequenceTargets::PerSequence(InlineTargets::Values(vec![vec![0.5], vec![1.5]])));
        assert!(!d.per_step_targets);
        let (mut labels, mut values) = (vec![3], Array2::<f64>::zeros((0, 0)));
        d.gather_y(&[1, 0, 1], &mut labels, &mut values);
        assert!(labels.is_empty());
        assert_eq!(values, ndarray::array![[1.5], [0.5], [1.5]]);
    }

    #[test]
    fn per_step_class_targets_are_gathered_time_major() {
        let d = two_by_three(InlineSequenceTargets::ClassesPerStep(vec![vec![0, 1, 2], vec![3, 4, 5]]));
        assert!(d.per_step_targets);
        assert_eq!(d.output_dim(), 6);
        let (mut labels, mut values) = (Vec::new(), Array2::<f32>::zeros((1, 1)));
        d.gather_y(&[1, 0], &mut labels, &mut values);
        // labels[t * B + b] = step t of sample idx[b].
        assert_eq!(labels, [3, 0, 4, 1, 5, 2]);
        assert_eq!(values.dim(), (1, 1), "class targets leave the value buffer alone");
        let ptr = labels.as_ptr();
        d.gather_y(&[0, 1], &mut labels, &mut values);
        assert_eq!((labels.as_ptr(), labels.as_slice()), (ptr, &[0, 3, 1, 4, 2, 5][..]));
    }

    #[test]
    fn per_step_value_targets_are_gathered_time_major() {
        // Target k of step t of sample i: 100 i + 10 t + k + 0.5.
        let y = (0..2)
            .map(|i| (0..3).map(|t| (0..2).map(|k| (100 * i + 10 * t + k) as f64 + 0.5).collect()).collect())
            .collect();
        let d = two_by_three(InlineSequenceTargets::ValuesPerStep(y));
        assert_eq!((d.output_dim(), d.per_step_targets), (2, true));
        let Targets::Values(v) = &d.y else { panic!("expected values") };
        assert_eq!(v.dim(), (2, 6));
        let (mut labels, mut values) = (vec![9], Array2::<f64>::zeros((0, 0)));
        d.gather_y(&[1, 0], &mut labels, &mut values);
        assert!(labels.is_empty());
        let expected =
            ndarray::array![[100.5, 101.5], [0.5, 1.5], [110.5, 111.5], [10.5, 11.5], [120.5, 121.5], [20.5, 21.5]];
        assert_eq!(values, expected);
        let ptr = values.as_ptr();
        d.gather_y(&[0, 1], &mut labels, &mut values);
        assert_eq!(values.as_ptr(), ptr);
        assert_eq!(values.column(0).to_vec(), vec![0.5, 100.5, 10.5, 110.5, 20.5, 120.5]);
    }

    #[test]
    fn split_keeps_sequences_whole_with_their_per_step_targets() {
        let d = gen(&DataConfig::Copy { samples: 40, length: 3, delay: 2 }, 5);
        let steps = 8;
        let (train, validation) = d.clone().split(0.25, 2);
        let validation = validation.unwrap_or_else(|| panic!("nothing held out"));
        assert_eq!((train.len(), validation.len()), (30, 10));
        for part in [&train, &validation] {
            assert_eq!((part.seq_len, part.per_step_targets, part.input_dim()), (Some(steps), true, 10));
            assert_eq!(labels(part).len(), part.len() * steps);
            // Each sequence's recall labels are still its own symbols.
            for i in 0..part.len() {
                for k in 0..3 {
                    assert_eq!(labels(part)[i * steps + 5 + k], one_hot(part, i, k));
                }
            }
        }
    }
}
