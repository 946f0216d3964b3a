//! Helpers shared by the data module's unit tests (test builds only).

use ndarray::Array2;

use super::{generate, Dataset, Targets};
use crate::engine::config::{DataConfig, InlineSequenceTargets, InlineTargets};
use crate::engine::error::{EngineError, InlinePart, Result};

/// One config of every synthetic generator, small enough to be quick.
pub(super) fn every_generator() -> Vec<DataConfig> {
    vec![
        DataConfig::Xor { samples: 101, noise: 0.1 },
        DataConfig::Spirals { samples: 101, noise: 0.1, classes: 3 },
        DataConfig::Circles { samples: 101, noise: 0.05, factor: 0.5 },
        DataConfig::Moons { samples: 101, noise: 0.1 },
        DataConfig::Blobs { samples: 101, classes: 4, dims: 3, std: 1.0 },
        DataConfig::Sine { samples: 101, noise: 0.1 },
        DataConfig::Teacher { samples: 101, dims: 5, classes: 3, outputs: 0, hidden: 8 },
        DataConfig::Teacher { samples: 101, dims: 5, classes: 0, outputs: 2, hidden: 8 },
        DataConfig::Adding { samples: 101, length: 12 },
        DataConfig::Copy { samples: 101, length: 4, delay: 3 },
        DataConfig::TemporalOrder { samples: 101, length: 20 },
        DataConfig::Parity { samples: 101, length: 9 },
        DataConfig::MarkedRecall { samples: 101, length: 7, vocab: 5 },
        DataConfig::SineSequence { samples: 101, length: 15, noise: 0.1 },
    ]
}

pub(super) fn gen(config: &DataConfig, seed: u64) -> Dataset {
    match generate(config, seed) {
        Ok(d) => d,
        Err(e) => panic!("{config:?} failed: {e}"),
    }
}

pub(super) fn labels(d: &Dataset) -> &[usize] {
    match &d.y {
        Targets::Classes { labels, .. } => labels,
        Targets::Values(_) => panic!("expected class targets"),
    }
}

pub(super) fn values(d: &Dataset) -> &Array2<f64> {
    match &d.y {
        Targets::Values(v) => v,
        Targets::Classes { .. } => panic!("expected value targets"),
    }
}

pub(super) fn class_counts(d: &Dataset) -> Vec<usize> {
    let mut counts = vec![0; d.output_dim()];
    for &l in labels(d) {
        counts[l] += 1;
    }
    counts
}

/// Asserts shape, label range and that class counts differ by at most one.
pub(super) fn assert_balanced(d: &Dataset, samples: usize, dims: usize, classes: usize) {
    assert_eq!(d.len(), samples);
    assert_eq!(d.input_dim(), dims);
    assert_eq!(d.output_dim(), classes);
    assert_eq!(labels(d).len(), samples);
    assert!(d.x.iter().all(|v| v.is_finite()));
    let counts = class_counts(d);
    let (min, max) = (counts.iter().min(), counts.iter().max());
    assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "unbalanced: {counts:?}");
}

pub(super) fn inline_err(x: Vec<Vec<f64>>, y: InlineTargets) -> EngineError {
    match generate(&DataConfig::Inline { x, y }, 0) {
        Err(e) => e,
        Ok(d) => panic!("expected an error, got {d:?}"),
    }
}

/// The generator and parameter an [`EngineError::Generator`] names.
pub(super) fn generator_of(e: &EngineError) -> (&'static str, &'static str) {
    match e {
        EngineError::Generator { generator, parameter, .. } => (generator, parameter),
        other => panic!("expected a generator error, got {other:?}"),
    }
}

/// Where an [`EngineError::InlineData`] is: inputs or targets, sample, time step.
pub(super) type Site = (InlinePart, Option<usize>, Option<usize>);

/// The [`Site`] of an [`EngineError::InlineData`].
pub(super) fn site_of(e: &EngineError) -> Site {
    match e {
        EngineError::InlineData { part, sample, step, .. } => (*part, *sample, *step),
        other => panic!("expected an inline-data error, got {other:?}"),
    }
}

/// A dataset whose row `i` is `[i]` with label `i % 3`, so rows can be traced through a split.
pub(super) fn numbered(n: usize) -> Dataset {
    let x = (0..n).map(|i| vec![i as f64]).collect();
    let y = InlineTargets::Classes((0..n).map(|i| i % 3).collect());
    gen(&DataConfig::Inline { x, y }, 0)
}

pub(super) fn row_ids(d: &Dataset) -> Vec<usize> {
    d.x.column(0).iter().map(|&v| v as usize).collect()
}

/// The value of feature `f` at step `t` of sample `i` of a sequence dataset.
pub(super) fn at(d: &Dataset, i: usize, t: usize, f: usize) -> f64 {
    d.x[[i, t * d.input_dim() + f]]
}

/// The one-hot index at step `t` of sample `i`; fails unless exactly one input is 1.
pub(super) fn one_hot(d: &Dataset, i: usize, t: usize) -> usize {
    let f = d.input_dim();
    let step: Vec<f64> = (0..f).map(|j| at(d, i, t, j)).collect();
    assert_eq!(step.iter().filter(|&&v| v == 1.0).count(), 1, "sample {i} step {t}: {step:?}");
    assert!(step.iter().all(|&v| v == 0.0 || v == 1.0), "sample {i} step {t}: {step:?}");
    step.iter().position(|&v| v == 1.0).unwrap_or(usize::MAX)
}

pub(super) fn inline_seq(x: Vec<Vec<Vec<f64>>>, y: InlineSequenceTargets) -> Result<Dataset> {
    generate(&DataConfig::InlineSequences { x, y }, 0)
}

/// 2 sequences of 3 steps of 2 features; feature `f` of step `t` of sample `i` is
/// `100 i + 10 t + f`, so every gathered value says where it came from.
pub(super) fn two_by_three(y: InlineSequenceTargets) -> Dataset {
    let x = (0..2).map(|i| (0..3).map(|t| (0..2).map(|f| (100 * i + 10 * t + f) as f64).collect()).collect()).collect();
    inline_seq(x, y).unwrap_or_else(|e| panic!("{e}"))
}
