//! Datasets generated deterministically from the seed, and user (inline) data.
//! (in progress: being written)

use ndarray::Array2;

/// Samples and their targets, in `f64` (cast to the run's precision when batched).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Samples x features.
    pub x: Array2<f64>,
    /// Targets, one per sample.
    pub y: Targets,
}

/// What a sample is labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices in `0..classes`.
    Classes {
        /// One label per sample.
        labels: Vec<usize>,
        /// Number of classes.
        classes: usize,
    },
    /// Regression targets: samples x outputs.
    Values(Array2<f64>),
}
