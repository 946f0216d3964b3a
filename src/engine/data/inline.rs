//! User-supplied (inline) samples and sequences, kept in the user's order.
//!
//! Inline data is validated once, by the spec layer (`crate::spec`), which reports every problem
//! (empty data, ragged rows, sequences or time steps, non-finite values, a target count that
//! differs from the sample count, negative or too many classes, per-step targets of the wrong
//! length) with its JSON Pointer. What is checked here is only what building the arrays needs
//! not to go wrong on a config that did not come through it: at least one sample, rectangular
//! inputs and targets (so every row lands where the layout says), one target per sample (so a
//! batch never indexes past the labels), and labels whose count (largest + 1) fits a `usize`.
//! A violation is an [`EngineError::InlineData`] naming the sample and time step. Values are
//! taken as given.

use ndarray::Array2;

use super::build::{array, checked_size, reserved};
use super::dataset::{Dataset, Targets};
use crate::engine::config::{InlineSequenceTargets, InlineTargets};
use crate::engine::error::{EngineError, InlinePart, Result};

/// An [`EngineError::InlineData`] in the inputs.
fn inputs(sample: Option<usize>, step: Option<usize>, message: impl Into<String>) -> EngineError {
    EngineError::inline(InlinePart::Inputs, sample, step, message)
}

/// An [`EngineError::InlineData`] in the targets.
fn targets(sample: Option<usize>, step: Option<usize>, message: impl Into<String>) -> EngineError {
    EngineError::inline(InlinePart::Targets, sample, step, message)
}

/// User-supplied samples, kept in order.
///
/// `x` needs at least one row and all rows the same nonzero width. Class targets: one label per
/// row, and the class count is the largest label + 1. Value targets: one row per sample, all the
/// same nonzero width.
pub(super) fn inline(x: &[Vec<f64>], y: &InlineTargets) -> Result<Dataset> {
    let x_arr = matrix(x, InlinePart::Inputs)?;
    Ok(Dataset::plain(x_arr, per_sample_targets(y, x.len())?))
}

/// User-supplied sequences, kept in order.
///
/// `x` is samples x time x features: at least one sequence, every sequence the same number of
/// steps `T >= 1`, every step the same number of features `F >= 1`. Sequences of different
/// lengths are refused at the first one that differs: nothing is padded or masked, so a ragged
/// batch has no meaning here. Targets are one per sequence
/// ([`InlineSequenceTargets::PerSequence`], checked as inline targets are), or one per step:
/// `ClassesPerStep` (samples x T labels; classes = largest label + 1) or `ValuesPerStep`
/// (samples x T x K, every step the same nonzero `K`). A violation names the first offending
/// sample (and time step).
pub(super) fn inline_sequences(x: &[Vec<Vec<f64>>], y: &InlineSequenceTargets) -> Result<Dataset> {
    let Some(first) = x.first() else {
        return Err(inputs(None, None, "there are no sequences"));
    };
    let steps = first.len();
    let Some(features) = first.first().map(Vec::len) else {
        return Err(inputs(Some(0), None, "a sequence needs at least one time step"));
    };
    if features == 0 {
        return Err(inputs(Some(0), Some(0), "a time step needs at least one feature"));
    }
    let width = checked_size(steps, features)?;
    let mut flat = reserved(x.len(), width)?;
    for (i, seq) in x.iter().enumerate() {
        if seq.len() != steps {
            return Err(inputs(
                Some(i),
                None,
                format!(
                    "{} time steps but sequence 0 has {steps}: all sequences must have the same length \
                     (ragged sequences are not padded or masked)",
                    seq.len()
                ),
            ));
        }
        for (t, step) in seq.iter().enumerate() {
            if step.len() != features {
                return Err(inputs(
                    Some(i),
                    Some(t),
                    format!("{} features but the first time step has {features}", step.len()),
                ));
            }
            flat.extend_from_slice(step);
        }
    }
    let x_arr = array(flat, width)?;
    let (y, per_step) = match y {
        InlineSequenceTargets::PerSequence(y) => (per_sample_targets(y, x.len())?, false),
        InlineSequenceTargets::ClassesPerStep(rows) => {
            check_count(rows.len(), x.len())?;
            let mut labels = reserved(rows.len(), steps)?;
            for (i, row) in rows.iter().enumerate() {
                check_steps(row.len(), steps, i, "labels")?;
                labels.extend_from_slice(row);
            }
            let classes = count_classes(&labels, |j| (j / steps, Some(j % steps)))?;
            (Targets::Classes { labels, classes }, true)
        }
        InlineSequenceTargets::ValuesPerStep(seqs) => {
            check_count(seqs.len(), x.len())?;
            let outputs = seqs.first().and_then(|s| s.first()).map_or(0, Vec::len);
            if outputs == 0 {
                return Err(targets(Some(0), Some(0), "per-step targets need at least one value per time step"));
            }
            let cols = checked_size(steps, outputs)?;
            let mut values = reserved(seqs.len(), cols)?;
            for (i, seq) in seqs.iter().enumerate() {
                check_steps(seq.len(), steps, i, "target rows")?;
                for (t, row) in seq.iter().enumerate() {
                    if row.len() != outputs {
                        return Err(targets(
                            Some(i),
                            Some(t),
                            format!("{} target values but the first time step has {outputs}", row.len()),
                        ));
                    }
                    values.extend_from_slice(row);
                }
            }
            (Targets::Values(array(values, cols)?), true)
        }
    };
    Ok(Dataset { x: x_arr, y, seq_len: Some(steps), per_step_targets: per_step })
}

/// One target per sample (or sequence), checked as [`inline`] documents.
fn per_sample_targets(y: &InlineTargets, samples: usize) -> Result<Targets> {
    Ok(match y {
        InlineTargets::Classes(labels) => {
            check_count(labels.len(), samples)?;
            let classes = count_classes(labels, |i| (i, None))?;
            Targets::Classes { labels: labels.clone(), classes }
        }
        InlineTargets::Values(rows) => {
            check_count(rows.len(), samples)?;
            Targets::Values(matrix(rows, InlinePart::Targets)?)
        }
    })
}

/// Checks that sequence `i` has a per-step target (`what`: "labels") for each of its `steps`.
fn check_steps(got: usize, steps: usize, i: usize, what: &str) -> Result<()> {
    if got == steps {
        Ok(())
    } else {
        Err(targets(
            Some(i),
            None,
            format!("{got} {what} but {steps} time steps: per-step targets need one per time step"),
        ))
    }
}

/// The class count of `labels`: the largest label + 1. `at(j)` is the sample and time step of
/// label `j`.
fn count_classes(labels: &[usize], at: impl Fn(usize) -> (usize, Option<usize>)) -> Result<usize> {
    let mut classes = 0;
    for (j, &label) in labels.iter().enumerate() {
        let count = label.checked_add(1).ok_or_else(|| {
            let (sample, step) = at(j);
            targets(Some(sample), step, format!("class label {label} is too large to count classes"))
        })?;
        classes = classes.max(count);
    }
    Ok(classes)
}

/// Checks that there is one target per sample.
fn check_count(count: usize, samples: usize) -> Result<()> {
    if count == samples {
        Ok(())
    } else {
        Err(targets(None, None, format!("{count} targets for {samples} samples: need exactly one per sample")))
    }
}

/// A rectangular, nonempty matrix given as rows (`part` says whose), as an array.
fn matrix(rows: &[Vec<f64>], part: InlinePart) -> Result<Array2<f64>> {
    let Some(first) = rows.first() else {
        return Err(EngineError::inline(part, None, None, "there are no samples"));
    };
    let width = first.len();
    if width == 0 {
        return Err(EngineError::inline(part, Some(0), None, "a row needs at least one value"));
    }
    let mut flat = reserved(rows.len(), width)?;
    for (i, row) in rows.iter().enumerate() {
        if row.len() != width {
            return Err(EngineError::inline(
                part,
                Some(i),
                None,
                format!("{} values but sample 0 has {width}", row.len()),
            ));
        }
        flat.extend_from_slice(row);
    }
    array(flat, width)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::engine::config::DataConfig;

    use crate::engine::error::InlinePart::{Inputs, Targets as Ys};

    #[test]
    fn inline_data_keeps_order_and_counts_classes_from_the_largest_label() {
        let x = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]];
        let d = gen(&DataConfig::Inline { x, y: InlineTargets::Classes(vec![4, 0, 1]) }, 0);
        assert_eq!(d.x, ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
        assert_eq!(labels(&d), &[4, 0, 1]);
        assert_eq!(d.output_dim(), 5);

        let y = InlineTargets::Values(vec![vec![0.5], vec![1.5]]);
        let d = gen(&DataConfig::Inline { x: vec![vec![1.0], vec![2.0]], y }, 0);
        assert_eq!(values(&d), &ndarray::array![[0.5], [1.5]]);
    }

    #[test]
    fn inline_ragged_rows_are_an_error_at_the_sample() {
        let x = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0]];
        let e = inline_err(x, InlineTargets::Classes(vec![0, 1, 0]));
        assert_eq!(site_of(&e), (Inputs, Some(2), None));
        assert_eq!(e.to_string(), "inline inputs of sample 2: 1 values but sample 0 has 2");
    }

    #[test]
    fn inline_empty_data_is_an_error() {
        assert_eq!(site_of(&inline_err(vec![], InlineTargets::Classes(vec![]))), (Inputs, None, None));
        let e = inline_err(vec![vec![], vec![]], InlineTargets::Classes(vec![0, 1]));
        assert_eq!(site_of(&e), (Inputs, Some(0), None));
    }

    #[test]
    fn inline_values_are_taken_as_given() {
        // Finite values are the spec layer's check (`spec::tests::data_checks`); the engine
        // builds the arrays and leaves non-finite numbers to the run's non-finite accounting.
        let x = vec![vec![1.0, 2.0], vec![f64::NAN, 4.0]];
        let y = InlineTargets::Values(vec![vec![0.0], vec![f64::INFINITY]]);
        let d = gen(&DataConfig::Inline { x, y }, 0);
        assert!(d.x[[1, 0]].is_nan());
        assert_eq!(values(&d)[[1, 0]], f64::INFINITY);
    }

    #[test]
    fn inline_target_count_mismatch_is_an_error() {
        let x = vec![vec![1.0], vec![2.0], vec![3.0]];
        assert_eq!(site_of(&inline_err(x.clone(), InlineTargets::Classes(vec![0, 1]))), (Ys, None, None));
        let y = InlineTargets::Values(vec![vec![0.0]; 4]);
        assert_eq!(site_of(&inline_err(x.clone(), y)), (Ys, None, None));
        let y = InlineTargets::Values(vec![vec![0.0, 1.0], vec![0.0], vec![0.0, 1.0]]);
        assert_eq!(site_of(&inline_err(x, y)), (Ys, Some(1), None));
    }

    #[test]
    fn inline_label_too_large_to_count_is_an_error() {
        let e = inline_err(vec![vec![1.0], vec![2.0]], InlineTargets::Classes(vec![0, usize::MAX]));
        assert_eq!(site_of(&e), (Ys, Some(1), None));
    }

    #[test]
    fn inline_sequences_keep_order_and_count_classes() {
        let x = vec![vec![vec![1.0], vec![2.0]], vec![vec![3.0], vec![4.0]], vec![vec![5.0], vec![6.0]]];
        let d = inline_seq(x, InlineSequenceTargets::PerSequence(InlineTargets::Classes(vec![2, 0, 1])))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.x, ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
        assert_eq!((labels(&d), d.output_dim(), d.input_dim()), (&[2, 0, 1][..], 3, 1));
    }

    #[test]
    fn inline_ragged_sequences_are_rejected_at_the_first_offending_one() {
        let step = |v: f64| vec![v, v];
        let x = vec![vec![step(1.0), step(2.0)], vec![step(3.0), step(4.0)], vec![step(5.0)], vec![step(6.0)]];
        let y = InlineSequenceTargets::PerSequence(InlineTargets::Classes(vec![0, 1, 0, 1]));
        let e = inline_seq(x, y).err().unwrap_or_else(|| panic!("ragged sequences accepted"));
        assert_eq!(site_of(&e), (Inputs, Some(2), None));
        assert!(e.to_string().contains("not padded or masked"), "{e}");
    }

    #[test]
    fn inline_sequence_problems_name_the_sample_and_step() {
        let x = || vec![vec![vec![1.0, 2.0], vec![3.0, 4.0]], vec![vec![5.0, 6.0], vec![7.0, 8.0]]];
        let per_seq = |l: Vec<usize>| InlineSequenceTargets::PerSequence(InlineTargets::Classes(l));
        /// x, y, and where the problem is reported.
        type Case = (Vec<Vec<Vec<f64>>>, InlineSequenceTargets, Site);
        let cases: Vec<Case> = vec![
            (vec![], per_seq(vec![]), (Inputs, None, None)),
            (vec![vec![]], per_seq(vec![0]), (Inputs, Some(0), None)),
            (vec![vec![vec![]]], per_seq(vec![0]), (Inputs, Some(0), Some(0))),
            (vec![vec![vec![1.0, 2.0], vec![3.0]]], per_seq(vec![0]), (Inputs, Some(0), Some(1))),
            (x(), per_seq(vec![0]), (Ys, None, None)),
            (x(), InlineSequenceTargets::ClassesPerStep(vec![vec![0, 1], vec![1]]), (Ys, Some(1), None)),
            (x(), InlineSequenceTargets::ClassesPerStep(vec![vec![0, 1]]), (Ys, None, None)),
            (x(), InlineSequenceTargets::ClassesPerStep(vec![vec![0, 1], vec![1, usize::MAX]]), (Ys, Some(1), Some(1))),
            (x(), InlineSequenceTargets::ValuesPerStep(vec![vec![vec![0.0]; 2], vec![vec![0.0]]]), (Ys, Some(1), None)),
            (
                x(),
                InlineSequenceTargets::ValuesPerStep(vec![vec![vec![0.0]; 2], vec![vec![0.0], vec![0.0, 1.0]]]),
                (Ys, Some(1), Some(1)),
            ),
            (x(), InlineSequenceTargets::ValuesPerStep(vec![vec![vec![]; 2], vec![vec![]; 2]]), (Ys, Some(0), Some(0))),
        ];
        for (x, y, site) in cases {
            let what = format!("{x:?} {y:?}");
            match inline_seq(x, y) {
                Err(e) => assert_eq!(site_of(&e), site, "{what}: {e}"),
                Ok(d) => panic!("{what} was accepted: {d:?}"),
            }
        }
    }

    #[test]
    fn inline_sequence_values_are_taken_as_given() {
        // As for plain samples: finite values are checked by the spec layer.
        let x = vec![vec![vec![1.0]], vec![vec![f64::NAN]]];
        let d = inline_seq(x, InlineSequenceTargets::PerSequence(InlineTargets::Classes(vec![0, 1])))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(d.x[[1, 0]].is_nan());
        let y = InlineSequenceTargets::ValuesPerStep(vec![vec![vec![0.0]], vec![vec![f64::INFINITY]]]);
        let d = inline_seq(vec![vec![vec![1.0]], vec![vec![2.0]]], y).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(values(&d)[[1, 0]], f64::INFINITY);
    }
}
