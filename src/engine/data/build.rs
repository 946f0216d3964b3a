//! The helpers the generators share: Gaussian draws, noise, balanced class counts, parameter
//! checks ([`EngineError::Generator`]) and arrays sized without overflow
//! ([`EngineError::DataTooLarge`]).

use ndarray::Array2;
use rand::Rng as _;
use rand_distr::StandardNormal;

use super::dataset::{Dataset, Targets};
use crate::engine::error::{EngineError, Result};
use crate::engine::rng::Rng;

/// `z ~ N(0, 1)`.
pub(super) fn normal(r: &mut Rng) -> f64 {
    r.sample(StandardNormal)
}

/// Adds `noise * z` to every element, in order.
pub(super) fn add_noise(x: &mut [f64], noise: f64, r: &mut Rng) {
    for v in x {
        *v += noise * normal(r);
    }
}

/// A `rows x cols` matrix of `std * z`, drawn in row-major order.
pub(super) fn gaussian_matrix(rows: usize, cols: usize, std: f64, r: &mut Rng) -> Result<Array2<f64>> {
    let values = (0..checked_size(rows, cols)?).map(|_| std * normal(r)).collect();
    array(values, cols)
}

/// `(class, count)` for the classes that get samples: `samples / classes` each, the first
/// `samples % classes` one more. Classes past `samples` get none and are skipped, so a huge class
/// count costs nothing.
pub(super) fn balanced_counts(samples: usize, classes: usize) -> impl Iterator<Item = (usize, usize)> {
    let base = samples / classes;
    let extra = samples % classes;
    (0..classes.min(samples)).map(move |c| (c, base + usize::from(c < extra)))
}

/// The sample count every generator needs: at least one, since nothing can train on no data.
pub(super) fn check_samples(generator: &'static str, samples: usize) -> Result<()> {
    if samples == 0 {
        Err(EngineError::generator(generator, "samples", "must be at least 1 (nothing can train on no data)"))
    } else {
        Ok(())
    }
}

/// A sequence length: at least one step.
pub(super) fn check_length(generator: &'static str, length: usize) -> Result<()> {
    if length == 0 {
        Err(EngineError::generator(generator, "length", "must be at least 1 (a sequence needs a time step)"))
    } else {
        Ok(())
    }
}

/// A noise or spread parameter: finite and non-negative (a NaN would silently poison every point).
pub(super) fn check_noise(generator: &'static str, parameter: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(EngineError::generator(generator, parameter, format!("must be finite and >= 0, got {value}")))
    }
}

/// `rows * cols`, refusing sizes `ndarray` could not index (it panics beyond `isize::MAX` bytes).
pub(super) fn checked_size(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f64>())
        .ok_or(EngineError::DataTooLarge { rows, cols })
}

/// An empty vector with room for `rows * cols` values, reserved fallibly: a size that cannot
/// be indexed is [`EngineError::DataTooLarge`], one the allocator refuses
/// [`EngineError::OutOfMemory`] (the data set is generated before anything else of a run).
pub(super) fn reserved<T>(rows: usize, cols: usize) -> Result<Vec<T>> {
    let n = checked_size(rows, cols)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| EngineError::out_of_memory(n, std::mem::size_of::<T>(), "the data set"))?;
    Ok(v)
}

/// `rows * cols` zeros, reserved as [`reserved`] does.
pub(super) fn zeros(rows: usize, cols: usize) -> Result<Vec<f64>> {
    let mut v = reserved(rows, cols)?;
    v.resize(rows * cols, 0.0);
    Ok(v)
}

/// Row-major values into a matrix of `cols` columns.
pub(super) fn array(values: Vec<f64>, cols: usize) -> Result<Array2<f64>> {
    let rows = values.len().checked_div(cols).unwrap_or(0);
    Array2::from_shape_vec((rows, cols), values)
        .map_err(|e| EngineError::config("data", format!("internal shape error: {e}")))
}

/// Sequences of `steps` steps of `features` values each, one sequence per row of `x`.
pub(super) fn sequences(x: Vec<f64>, steps: usize, features: usize, y: Targets, per_step: bool) -> Result<Dataset> {
    let x = array(x, checked_size(steps, features)?)?;
    Ok(Dataset { x, y, seq_len: Some(steps), per_step_targets: per_step })
}

/// A classification dataset from row-major `x` with `cols` columns.
pub(super) fn classes_dataset(x: Vec<f64>, cols: usize, labels: Vec<usize>, classes: usize) -> Result<Dataset> {
    Ok(Dataset::plain(array(x, cols)?, Targets::Classes { labels, classes }))
}
