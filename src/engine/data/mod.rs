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
//! Files: this one holds [`generate`] (and is the only one that uses the generators);
//! `dataset.rs` [`Dataset`], [`Targets`], the split and batch gathering; `build.rs` the helpers
//! the generators share; `points.rs` the generators of plain samples (xor, spirals, circles,
//! moons, blobs, sine, teacher); `sequences.rs` the sequence tasks (adding, copy, temporal
//! order, parity, sine sequence); `inline.rs` user samples and sequences.

mod build;
mod dataset;
mod inline;
mod points;
mod sequences;
#[cfg(test)]
mod testing;

use rand::seq::SliceRandom;

use crate::engine::config::{DataConfig, RunConfig};
use crate::engine::error::Result;
use crate::engine::rng::{rng, Stream};

pub use dataset::{Dataset, FeatureStats, Targets};
use inline::{inline, inline_sequences};
use points::{blobs, circles, moons, sine, spirals, teacher, xor};
use sequences::{adding, copy, marked_recall, parity, sine_sequence, temporal_order};
pub use sequences::{COPY_DELIMITER, COPY_INPUTS, COPY_SYMBOLS, TEMPORAL_ORDER_INPUTS};

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
        DataConfig::MarkedRecall { samples, length, vocab } => marked_recall(*samples, *length, *vocab, &mut r)?,
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

/// The data a run trains and validates on: [`generate`]d from the run's seed, split
/// ([`Dataset::split`] with `training.validation_split`) and, when `training.standardize` is
/// set, standardized per input feature with the training split's statistics (the same
/// statistics applied to the validation split, so nothing of it leaks into training). The
/// session and the theory at initialisation both read the data through this.
///
/// # Errors
/// As [`generate`].
pub fn prepare(config: &RunConfig) -> Result<(Dataset, Option<Dataset>)> {
    let data = generate(&config.data, config.seed)?;
    let (mut train, mut validation) = data.split(config.training.validation_split, config.seed);
    if config.training.standardize {
        let stats = train.feature_stats();
        train.standardize(&stats);
        if let Some(v) = validation.as_mut() {
            v.standardize(&stats);
        }
    }
    Ok((train, validation))
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::testing::*;
    use super::*;
    use crate::engine::config::{InlineSequenceTargets, InlineTargets};

    #[test]
    fn standardized_features_have_mean_0_and_std_1_with_the_training_statistics() {
        let blobs = gen(&DataConfig::Blobs { samples: 400, classes: 4, dims: 5, std: 1.0 }, 5);
        let raw = blobs.feature_stats();
        assert!(raw.std.iter().any(|s| *s > 3.0), "blobs are spread over U(-10, 10): {raw:?}");
        let (mut train, validation) = blobs.split(0.25, 5);
        let mut validation = validation.unwrap();
        let stats = train.feature_stats();
        train.standardize(&stats);
        validation.standardize(&stats);
        let after = train.feature_stats();
        assert_eq!(after.mean.len(), 5);
        for (m, s) in after.mean.iter().zip(&after.std) {
            assert!(m.abs() < 1e-12 && (s - 1.0).abs() < 1e-12, "{after:?}");
        }
        // The validation split uses the training statistics: near, not exactly, 0 and 1.
        let v = validation.feature_stats();
        assert!(v.mean.iter().all(|m| m.abs() < 0.5) && v.std.iter().all(|s| (s - 1.0).abs() < 0.5), "{v:?}");
        // Deterministic: the same data gives the same numbers, bit for bit.
        let mut again = gen(&DataConfig::Blobs { samples: 400, classes: 4, dims: 5, std: 1.0 }, 5).split(0.25, 5).0;
        again.standardize(&again.feature_stats());
        assert_eq!(again, train);
    }

    #[test]
    fn sequences_are_standardized_per_feature_over_every_time_step() {
        let mut adding = gen(&DataConfig::Adding { samples: 64, length: 10 }, 1);
        let before = adding.feature_stats();
        assert_eq!(before.mean.len(), 2, "value and marker");
        // Markers: exactly 2 of the 10 steps.
        assert!((before.mean[1] - 0.2).abs() < 1e-12, "{before:?}");
        adding.standardize(&before);
        let after = adding.feature_stats();
        for (m, s) in after.mean.iter().zip(&after.std) {
            assert!(m.abs() < 1e-12 && (s - 1.0).abs() < 1e-12, "{after:?}");
        }
        // A constant feature is centred, not divided by 0.
        let x = Array2::from_shape_vec((3, 2), vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0]).unwrap();
        let mut d = Dataset::plain(x, Targets::Classes { labels: vec![0, 1, 0], classes: 2 });
        d.standardize(&d.feature_stats());
        assert!(d.x.column(1).iter().all(|v| *v == 0.0) && d.x.iter().all(|v| v.is_finite()));
    }

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
        d.gather_x(&[3, 1, 3], &mut out).unwrap();
        assert_eq!(out, ndarray::array![[3.0f32], [1.0], [3.0]]);
        let ptr = out.as_ptr();
        d.gather_x(&[9, 0, 5], &mut out).unwrap();
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(out, ndarray::array![[9.0f32], [0.0], [5.0]]);
        // A different batch size reshapes the buffer.
        d.gather_x(&[2], &mut out).unwrap();
        assert_eq!(out, ndarray::array![[2.0f32]]);
    }

    #[test]
    fn gather_y_writes_labels_into_the_reused_vector() {
        let d = numbered(10);
        let mut labels = Vec::new();
        let mut values = Array2::<f64>::zeros((2, 2));
        d.gather_y(&[4, 5, 6], &mut labels, &mut values).unwrap();
        assert_eq!(labels, [1, 2, 0]);
        let ptr = labels.as_ptr();
        d.gather_y(&[0, 1, 2], &mut labels, &mut values).unwrap();
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
        d.gather_y(&[2, 0], &mut labels, &mut values).unwrap();
        assert_eq!(values, ndarray::array![[2.5f32, 3.0], [0.5, 1.0]]);
        assert!(labels.is_empty());
        let ptr = values.as_ptr();
        d.gather_y(&[1, 1], &mut labels, &mut values).unwrap();
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
        d.gather_x(&[1, 0], &mut out).unwrap();
        // Row t * B + b is step t of sample idx[b].
        let expected =
            ndarray::array![[100.0, 101.0], [0.0, 1.0], [110.0, 111.0], [10.0, 11.0], [120.0, 121.0], [20.0, 21.0]];
        assert_eq!(out, expected);
        // The same batch size reuses the buffer; another one reshapes it.
        let ptr = out.as_ptr();
        d.gather_x(&[0, 0], &mut out).unwrap();
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(out.column(0).to_vec(), vec![0.0, 0.0, 10.0, 10.0, 20.0, 20.0]);
        let mut small = Array2::<f32>::zeros((0, 0));
        d.gather_x(&[1], &mut small).unwrap();
        assert_eq!(small, ndarray::array![[100.0f32, 101.0], [110.0, 111.0], [120.0, 121.0]]);
    }

    #[test]
    fn per_sequence_targets_of_sequences_are_gathered_one_per_sample() {
        let d = two_by_three(InlineSequenceTargets::PerSequence(InlineTargets::Values(vec![vec![0.5], vec![1.5]])));
        assert!(!d.per_step_targets);
        let (mut labels, mut values) = (vec![3], Array2::<f64>::zeros((0, 0)));
        d.gather_y(&[1, 0, 1], &mut labels, &mut values).unwrap();
        assert!(labels.is_empty());
        assert_eq!(values, ndarray::array![[1.5], [0.5], [1.5]]);
    }

    #[test]
    fn per_step_class_targets_are_gathered_time_major() {
        let d = two_by_three(InlineSequenceTargets::ClassesPerStep(vec![vec![0, 1, 2], vec![3, 4, 5]]));
        assert!(d.per_step_targets);
        assert_eq!(d.output_dim(), 6);
        let (mut labels, mut values) = (Vec::new(), Array2::<f32>::zeros((1, 1)));
        d.gather_y(&[1, 0], &mut labels, &mut values).unwrap();
        // labels[t * B + b] = step t of sample idx[b].
        assert_eq!(labels, [3, 0, 4, 1, 5, 2]);
        assert_eq!(values.dim(), (1, 1), "class targets leave the value buffer alone");
        let ptr = labels.as_ptr();
        d.gather_y(&[0, 1], &mut labels, &mut values).unwrap();
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
        d.gather_y(&[1, 0], &mut labels, &mut values).unwrap();
        assert!(labels.is_empty());
        let expected =
            ndarray::array![[100.5, 101.5], [0.5, 1.5], [110.5, 111.5], [10.5, 11.5], [120.5, 121.5], [20.5, 21.5]];
        assert_eq!(values, expected);
        let ptr = values.as_ptr();
        d.gather_y(&[0, 1], &mut labels, &mut values).unwrap();
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
