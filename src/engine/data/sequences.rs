//! The sequence tasks: adding, copy, temporal order, parity and sine sequence. Each draws its
//! sequences one after another, every sequence independent of the others, in the order its doc
//! states; [`super::generate`] then shuffles them like any other data. Layout of the sequences
//! and their targets: see the [parent module](super#sequence-layout). A parameter the task
//! cannot draw from is an [`EngineError::Generator`].

use std::f64::consts::PI;

use rand::Rng as _;

use super::build::{array, check_length, check_noise, check_samples, checked_size, normal, reserved, sequences, zeros};
use super::dataset::{Dataset, Targets};
use crate::engine::error::{EngineError, Result};
use crate::engine::rng::Rng;

/// Symbols of the copy problem's alphabet (input indices `1..=8`, classes `1..=8`).
pub const COPY_SYMBOLS: usize = 8;
/// One-hot inputs of the copy problem: blank (0), the symbols (1..=8), the delimiter (9).
pub const COPY_INPUTS: usize = COPY_SYMBOLS + 2;
/// Input index of the copy problem's "recall now" delimiter.
pub const COPY_DELIMITER: usize = COPY_SYMBOLS + 1;
/// One-hot inputs of the temporal-order problem: distractors a, b, c, d (0..4), `X` (4), `Y` (5).
pub const TEMPORAL_ORDER_INPUTS: usize = 6;

/// The adding problem, in Le, Jaitly and Hinton's (2015) variant of Hochreiter and
/// Schmidhuber's (1997) task: `F = 2` inputs per step, a value and a marker.
///
/// Per sequence: `length` values `u_t ~ U[0,1)` (step by step), then the first marked position
/// uniform in `[0, T/2)`, then the second uniform in `[T/2, T)` (integer `T/2`). Markers are 1
/// at those two steps and 0 elsewhere, so there are exactly two, one in each half. The target
/// (one regression value per sequence, `K = 1`) is the sum of the two marked values.
///
/// Baseline: always predicting the mean 1.0 scores MSE = Var(X1 + X2) = 2/12 = 1/6 ≈ 0.167; a
/// model must beat that to have learnt anything (Le et al. call 0.167 the baseline).
/// Needs `length >= 2`.
pub(super) fn adding(samples: usize, length: usize, r: &mut Rng) -> Result<Dataset> {
    check_samples("adding", samples)?;
    if length < 2 {
        return Err(EngineError::generator(
            "adding",
            "length",
            format!("must be at least 2 (one marker in each half), got {length}"),
        ));
    }
    let width = checked_size(length, 2)?;
    let mut x = reserved(samples, width)?;
    let mut y = Vec::with_capacity(samples);
    let half = length / 2;
    for _ in 0..samples {
        let start = x.len();
        for _ in 0..length {
            x.push(r.random::<f64>());
            x.push(0.0);
        }
        let first = r.random_range(0..half);
        let second = r.random_range(half..length);
        let row = &mut x[start..];
        row[2 * first + 1] = 1.0;
        row[2 * second + 1] = 1.0;
        y.push(row[2 * first] + row[2 * second]);
    }
    sequences(x, length, 2, Targets::Values(array(y, 1)?), false)
}

/// The copy-memory problem (Hochreiter and Schmidhuber 1997; Arjovsky et al. 2016's form):
/// remember `L = length` symbols over a `D = delay` step gap and reproduce them in order.
///
/// Inputs are one-hot over `F = 10`: 0 = blank, 1..=8 the symbols, 9 the delimiter ("recall
/// now"). A sequence has `T = L + D + L` steps: steps `0..L` carry symbols drawn uniformly from
/// `1..=8` (step by step), then come `D - 1` blanks, one delimiter (step `L + D - 1`), and `L`
/// blanks during which the network must output the symbols.
///
/// Targets are per step, 9 classes (0 = blank, 1..=8 the symbol): blank for the first `L + D`
/// steps, and the `L` input symbols in order during the last `L` steps.
///
/// Baseline: predicting blank where the target is blank and a uniform guess over the 8 symbols
/// during recall scores a mean cross-entropy per step of `L ln 8 / (2L + D)` (0.693 for the
/// default `L = D = 10`) and per-step accuracy `(L + D + L/8) / (2L + D)` (0.708 there). Needs
/// `length >= 1` and `delay >= 1` (the delimiter takes the last step of the gap).
pub(super) fn copy(samples: usize, length: usize, delay: usize, r: &mut Rng) -> Result<Dataset> {
    check_samples("copy", samples)?;
    if length == 0 {
        return Err(EngineError::generator("copy", "length", "must be at least 1 (a symbol to remember)"));
    }
    if delay == 0 {
        return Err(EngineError::generator(
            "copy",
            "delay",
            "must be at least 1 (its last step carries the delimiter)",
        ));
    }
    let recall = length
        .checked_add(delay)
        .ok_or_else(|| EngineError::generator("copy", "delay", "is too large: length + delay overflows"))?;
    let steps = recall
        .checked_add(length)
        .ok_or_else(|| EngineError::generator("copy", "delay", "is too large: length + delay + length overflows"))?;
    let width = checked_size(steps, COPY_INPUTS)?;
    let mut x = zeros(samples, width)?;
    let mut labels = reserved(samples, steps)?;
    let mut symbols = Vec::with_capacity(length);
    for row in x.chunks_exact_mut(width) {
        symbols.clear();
        for t in 0..length {
            let symbol = r.random_range(1..=COPY_SYMBOLS);
            row[t * COPY_INPUTS + symbol] = 1.0;
            symbols.push(symbol);
        }
        for t in length..steps {
            let input = if t == recall - 1 { COPY_DELIMITER } else { 0 };
            row[t * COPY_INPUTS + input] = 1.0;
        }
        labels.extend(std::iter::repeat_n(0, recall));
        labels.extend_from_slice(&symbols);
    }
    let y = Targets::Classes { labels, classes: COPY_SYMBOLS + 1 };
    sequences(x, steps, COPY_INPUTS, y, true)
}

/// The temporal-order problem (Hochreiter and Schmidhuber 1997, task 6a): classify the order of
/// two relevant symbols hidden among distractors.
///
/// Inputs are one-hot over `F = 6`: distractors a, b, c, d (0..4), `X` (4), `Y` (5). Per
/// sequence: a distractor uniform over the four at every step (step by step), then
/// `t1 ~ U{T/10 ..= 2T/10}` and `t2 ~ U{5T/10 ..= 6T/10}` (integer division), then whether the
/// first is `Y` (else `X`), then whether the second is; those two steps carry that symbol
/// instead of their distractor. Class (per sequence, 4 classes) =
/// `2 * (first is Y) + (second is Y)`: XX = 0, XY = 1, YX = 2, YY = 3, equally likely, so chance
/// is 25% accuracy and a cross-entropy of ln 4. Needs `length >= 10`.
pub(super) fn temporal_order(samples: usize, length: usize, r: &mut Rng) -> Result<Dataset> {
    check_samples("temporal_order", samples)?;
    if length < 10 {
        return Err(EngineError::generator("temporal_order", "length", format!("must be at least 10, got {length}")));
    }
    const F: usize = TEMPORAL_ORDER_INPUTS;
    let width = checked_size(length, F)?;
    let mut x = zeros(samples, width)?;
    let mut labels = Vec::with_capacity(samples);
    // `width` did not overflow, so neither do these (6 * length <= width).
    let (lo1, hi1, lo2, hi2) = (length / 10, 2 * length / 10, 5 * length / 10, 6 * length / 10);
    for row in x.chunks_exact_mut(width) {
        for t in 0..length {
            row[t * F + r.random_range(0..4)] = 1.0;
        }
        let t1 = r.random_range(lo1..=hi1);
        let t2 = r.random_range(lo2..=hi2);
        let first_y: bool = r.random();
        let second_y: bool = r.random();
        for (t, is_y) in [(t1, first_y), (t2, second_y)] {
            row[t * F..(t + 1) * F].fill(0.0);
            row[t * F + 4 + usize::from(is_y)] = 1.0;
        }
        labels.push(2 * usize::from(first_y) + usize::from(second_y));
    }
    sequences(x, length, F, Targets::Classes { labels, classes: 4 }, false)
}

/// Parity: `F = 1`, `length` bits drawn uniformly (step by step) and given as 0.0 / 1.0; the
/// class (per sequence, 2 classes) is the XOR of all bits. Chance is 50%: no proper prefix of
/// the bits says anything about the answer.
pub(super) fn parity(samples: usize, length: usize, r: &mut Rng) -> Result<Dataset> {
    check_samples("parity", samples)?;
    check_length("parity", length)?;
    let mut x = reserved(samples, length)?;
    let mut labels = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut odd = false;
        for _ in 0..length {
            let bit: bool = r.random();
            odd ^= bit;
            x.push(if bit { 1.0 } else { 0.0 });
        }
        labels.push(usize::from(odd));
    }
    sequences(x, length, 1, Targets::Classes { labels, classes: 2 }, false)
}

/// Marked-token recall, a retrieval task for attention: `T = length` tokens drawn uniformly
/// from a vocabulary of `V = vocab`, one-hot, beside a marker channel that is 1 at one position
/// drawn uniformly (0 elsewhere): `F = V + 1` features per step, feature `V` the marker. The
/// target (one per sequence, `V` classes) is the token at the marked position, so the last
/// position must find the marked step and read its token. Chance: cross-entropy `ln V`,
/// accuracy `1 / V`. Needs `length >= 1` and `vocab >= 2`.
pub(super) fn marked_recall(samples: usize, length: usize, vocab: usize, r: &mut Rng) -> Result<Dataset> {
    check_samples("marked_recall", samples)?;
    check_length("marked_recall", length)?;
    if vocab < 2 {
        return Err(EngineError::generator("marked_recall", "vocab", format!("must be at least 2, got {vocab}")));
    }
    let features = vocab.checked_add(1).ok_or(EngineError::DataTooLarge { rows: samples, cols: vocab })?;
    let mut x = reserved(samples, checked_size(length, features)?)?;
    let mut labels = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = x.len();
        let mut tokens = Vec::with_capacity(length);
        for _ in 0..length {
            let token = r.random_range(0..vocab);
            tokens.push(token);
            x.extend((0..features).map(|f| if f == token { 1.0 } else { 0.0 }));
        }
        let marked = r.random_range(0..length);
        x[start + marked * features + vocab] = 1.0;
        labels.push(tokens[marked]);
    }
    sequences(x, length, features, Targets::Classes { labels, classes: vocab }, false)
}

/// Next-step prediction of a sine wave: `F = 1`, a regression target at every step (`K = 1`).
///
/// Per sequence: `omega ~ U[0.1, 0.5]`, then `phi ~ U[0, 2 pi)`, then for `t = 0..T` the input
/// `x_t = sin(omega t + phi) + noise * z_t` (`z_t ~ N(0, 1)`, step by step) with target the
/// clean next value `sin(omega (t + 1) + phi)`. Predicting `x_t` itself (no memory needed)
/// already does fairly well for slow waves; the frequency has to be inferred from the past.
pub(super) fn sine_sequence(samples: usize, length: usize, noise: f64, r: &mut Rng) -> Result<Dataset> {
    check_samples("sine_sequence", samples)?;
    check_length("sine_sequence", length)?;
    check_noise("sine_sequence", "noise", noise)?;
    let mut x = reserved(samples, length)?;
    let mut y = reserved(samples, length)?;
    for _ in 0..samples {
        let omega = r.random_range(0.1..=0.5);
        let phi = r.random_range(0.0..2.0 * PI);
        for t in 0..length {
            x.push((omega * t as f64 + phi).sin() + noise * normal(r));
            y.push((omega * (t + 1) as f64 + phi).sin());
        }
    }
    sequences(x, length, 1, Targets::Values(array(y, length)?), true)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::engine::config::DataConfig;
    use crate::engine::data::generate;

    #[test]
    fn sequence_generators_have_the_documented_shapes() {
        // (config, T, F, output_dim, per_step)
        let cases = [
            (DataConfig::Adding { samples: 7, length: 11 }, 11, 2, 1, false),
            (DataConfig::Copy { samples: 7, length: 4, delay: 3 }, 11, 10, 9, true),
            (DataConfig::TemporalOrder { samples: 7, length: 20 }, 20, 6, 4, false),
            (DataConfig::Parity { samples: 7, length: 5 }, 5, 1, 2, false),
            (DataConfig::SineSequence { samples: 7, length: 13, noise: 0.2 }, 13, 1, 1, true),
        ];
        for (config, steps, features, outputs, per_step) in cases {
            let d = gen(&config, 3);
            assert_eq!(d.len(), 7, "{config:?}");
            assert_eq!(d.seq_len, Some(steps), "{config:?}");
            assert_eq!(d.x.dim(), (7, steps * features), "{config:?}");
            assert_eq!((d.input_dim(), d.output_dim()), (features, outputs), "{config:?}");
            assert_eq!(d.per_step_targets, per_step, "{config:?}");
            assert!(d.x.iter().all(|v| v.is_finite()), "{config:?}");
            let rows = if per_step { 7 * steps } else { 7 };
            match &d.y {
                Targets::Classes { labels, classes } => {
                    assert_eq!(labels.len(), rows, "{config:?}");
                    assert!(labels.iter().all(|l| l < classes), "{config:?}");
                }
                Targets::Values(v) => {
                    let cols = if per_step { steps * outputs } else { outputs };
                    assert_eq!(v.dim(), (7, cols), "{config:?}");
                }
            }
        }
    }

    #[test]
    fn adding_has_one_marker_in_each_half_and_targets_the_marked_sum() {
        for length in [2, 3, 10, 51] {
            let d = gen(&DataConfig::Adding { samples: 200, length }, 4);
            let half = length / 2;
            for (i, &target) in values(&d).column(0).iter().enumerate() {
                let markers: Vec<usize> = (0..length).filter(|&t| at(&d, i, t, 1) != 0.0).collect();
                assert_eq!(markers.len(), 2, "length {length} sample {i}");
                assert!(markers[0] < half && markers[1] >= half, "{markers:?}");
                assert!((0..length).all(|t| (0.0..1.0).contains(&at(&d, i, t, 0))));
                assert!((0..length).all(|t| [0.0, 1.0].contains(&at(&d, i, t, 1))));
                assert_eq!(target, at(&d, i, markers[0], 0) + at(&d, i, markers[1], 0));
            }
        }
    }

    #[test]
    fn adding_baseline_of_predicting_one_is_a_sixth() {
        let d = gen(&DataConfig::Adding { samples: 20_000, length: 20 }, 8);
        let mse = values(&d).iter().map(|y| (y - 1.0) * (y - 1.0)).sum::<f64>() / d.len() as f64;
        assert!((mse - 1.0 / 6.0).abs() < 0.01, "baseline MSE {mse}");
    }

    #[test]
    fn copy_recalls_the_first_symbols_after_the_delimiter() {
        let (length, delay) = (5, 4);
        let steps = 2 * length + delay;
        let d = gen(&DataConfig::Copy { samples: 50, length, delay }, 6);
        for i in 0..d.len() {
            let y = &labels(&d)[i * steps..(i + 1) * steps];
            for t in 0..steps {
                let input = one_hot(&d, i, t);
                if t < length {
                    assert!((1..=COPY_SYMBOLS).contains(&input), "step {t}: {input}");
                    // The symbol comes back L + D steps later.
                    assert_eq!(y[t + length + delay], input);
                } else if t == length + delay - 1 {
                    assert_eq!(input, COPY_DELIMITER);
                } else {
                    assert_eq!(input, 0, "step {t} should be blank");
                }
                if t < length + delay {
                    assert_eq!(y[t], 0, "step {t} should target blank");
                }
            }
        }
        // All 8 symbols occur.
        let mut seen = [false; COPY_SYMBOLS + 1];
        labels(&d).iter().for_each(|&l| seen[l] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn copy_with_delay_one_puts_the_delimiter_right_after_the_symbols() {
        let d = gen(&DataConfig::Copy { samples: 3, length: 2, delay: 1 }, 1);
        assert_eq!(d.seq_len, Some(5));
        for i in 0..3 {
            assert_eq!(one_hot(&d, i, 2), COPY_DELIMITER);
            assert_eq!((one_hot(&d, i, 3), one_hot(&d, i, 4)), (0, 0));
        }
    }

    #[test]
    fn marked_recall_targets_the_token_under_the_one_marker() {
        let (length, vocab) = (16, 16);
        let d = gen(&DataConfig::MarkedRecall { samples: 400, length, vocab }, 3);
        let mut seen = vec![0usize; vocab];
        for (i, &label) in labels(&d).iter().enumerate() {
            // Each step: one token (one-hot over the first `vocab` features).
            for t in 0..length {
                let hot: Vec<usize> = (0..vocab).filter(|&f| at(&d, i, t, f) == 1.0).collect();
                assert_eq!(hot.len(), 1, "sample {i} step {t}");
            }
            let marked: Vec<usize> = (0..length).filter(|&t| at(&d, i, t, vocab) == 1.0).collect();
            assert_eq!(marked.len(), 1, "sample {i}");
            assert_eq!(at(&d, i, marked[0], label), 1.0, "the label is the marked step's token");
            seen[label] += 1;
        }
        // Labels cover the vocabulary (400 draws over 16 classes).
        assert!(seen.iter().all(|&n| n > 5), "{seen:?}");
    }

    #[test]
    fn parity_labels_are_the_xor_of_the_bits() {
        let d = gen(&DataConfig::Parity { samples: 300, length: 7 }, 2);
        for (i, &label) in labels(&d).iter().enumerate() {
            let bits: Vec<f64> = (0..7).map(|t| at(&d, i, t, 0)).collect();
            assert!(bits.iter().all(|&b| b == 0.0 || b == 1.0));
            let ones = bits.iter().filter(|&&b| b == 1.0).count();
            assert_eq!(label, ones % 2);
        }
        let counts = class_counts(&d);
        assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    }

    #[test]
    fn temporal_order_hides_x_or_y_at_two_positions_and_labels_their_order() {
        let length = 40;
        let d = gen(&DataConfig::TemporalOrder { samples: 4000, length }, 3);
        for (i, &label) in labels(&d).iter().enumerate() {
            let symbols: Vec<usize> = (0..length).map(|t| one_hot(&d, i, t)).collect();
            let relevant: Vec<usize> = (0..length).filter(|&t| symbols[t] >= 4).collect();
            assert_eq!(relevant.len(), 2, "sample {i}: {symbols:?}");
            let (t1, t2) = (relevant[0], relevant[1]);
            assert!((length / 10..=2 * length / 10).contains(&t1), "t1 = {t1}");
            assert!((5 * length / 10..=6 * length / 10).contains(&t2), "t2 = {t2}");
            assert_eq!(label, 2 * (symbols[t1] - 4) + (symbols[t2] - 4));
        }
        // Four equally likely classes: 1000 expected each, sd ~27.
        let counts = class_counts(&d);
        assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
    }

    #[test]
    fn sine_sequence_targets_the_clean_next_value() {
        let length = 30;
        let d = gen(&DataConfig::SineSequence { samples: 20, length, noise: 0.0 }, 9);
        let v = values(&d);
        for i in 0..d.len() {
            for t in 0..length - 1 {
                assert_eq!(v[[i, t]], at(&d, i, t + 1, 0), "sample {i} step {t}");
            }
            assert!(v.row(i).iter().all(|y| y.abs() <= 1.0));
        }
        // With noise the inputs move off the curve but the targets do not.
        let noisy = gen(&DataConfig::SineSequence { samples: 20, length, noise: 0.3 }, 9);
        assert_ne!(noisy.x, d.x);
        assert!(values(&noisy).iter().all(|y| y.abs() <= 1.0));
    }

    #[test]
    fn invalid_sequence_configs_name_the_task_and_the_parameter() {
        let bad = [
            (DataConfig::Adding { samples: 10, length: 1 }, ("adding", "length")),
            (DataConfig::Adding { samples: 0, length: 10 }, ("adding", "samples")),
            (DataConfig::Copy { samples: 10, length: 0, delay: 3 }, ("copy", "length")),
            (DataConfig::Copy { samples: 10, length: 3, delay: 0 }, ("copy", "delay")),
            (DataConfig::TemporalOrder { samples: 10, length: 9 }, ("temporal_order", "length")),
            (DataConfig::Parity { samples: 10, length: 0 }, ("parity", "length")),
            (DataConfig::MarkedRecall { samples: 10, length: 0, vocab: 4 }, ("marked_recall", "length")),
            (DataConfig::MarkedRecall { samples: 10, length: 4, vocab: 1 }, ("marked_recall", "vocab")),
            (DataConfig::SineSequence { samples: 10, length: 0, noise: 0.0 }, ("sine_sequence", "length")),
            (DataConfig::SineSequence { samples: 10, length: 5, noise: f64::NAN }, ("sine_sequence", "noise")),
        ];
        for (config, expected) in bad {
            match generate(&config, 0) {
                Err(e) => assert_eq!(generator_of(&e), expected, "{config:?}: {e}"),
                Ok(_) => panic!("{config:?} was accepted"),
            }
        }
    }
}
