//! Layers: each op's forward and backward side by side.
//!
//! A layer maps a batch `x: (batch, in)` to `y: (batch, out)`. The network owns every layer's
//! input and output arrays and hands them back in `backward`, so a layer caches only what it
//! cannot recompute cheaply (pre-activations, normalised values, dropout masks). Buffers are
//! resized only when the batch shape changes: the training loop does not allocate per step.
//!
//! Gradients are *set* (not accumulated) by each `backward`, so no zeroing pass is needed.
//! Invariant: `backward` is only called after a `forward` on the same batch.

mod activation;
mod dense;
mod dropout;
mod norm;
mod rnn;

pub use activation::ActivationLayer;
pub use dense::Dense;
pub use dropout::Dropout;
pub use norm::{NormCore, NormLayer};
pub use rnn::{GateStats, RecurrentStats, Rnn, Spectrum};

use ndarray::Array2;

use super::config::{Activation, ExplicitParams};
use super::rng::Rng;
use super::{EngineError, Result, Scalar};

/// A learnable tensor and its gradient. Vectors are stored as `1 x n` rows so every parameter
/// has one type; `shape` records the shape a user sees (PyTorch's).
#[derive(Debug, Clone)]
pub struct Param<T> {
    /// PyTorch `state_dict` name within the layer (`weight`, `bias`, `norm_weight`, ...).
    pub name: &'static str,
    /// Current value.
    pub value: Array2<T>,
    /// dL/dvalue from the last backward.
    pub grad: Array2<T>,
    /// True for a vector parameter (`bias`, norm scale/shift, prelu slopes).
    pub is_vector: bool,
}

impl<T: Scalar> Param<T> {
    /// A matrix parameter from `f64` values.
    pub fn matrix(name: &'static str, value: Array2<f64>) -> Self {
        let value = value.mapv(T::of);
        let grad = Array2::zeros(value.raw_dim());
        Param { name, value, grad, is_vector: false }
    }

    /// A vector parameter from `f64` values.
    pub fn vector(name: &'static str, value: Vec<f64>) -> Self {
        let n = value.len();
        let value = Array2::from_shape_vec((1, n), value.into_iter().map(T::of).collect())
            .unwrap_or_else(|_| Array2::zeros((1, n)));
        let grad = Array2::zeros((1, n));
        Param { name, value, grad, is_vector: true }
    }

    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True when the parameter holds no scalars.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// Takes explicit values for `name` from `params` when present, checking their count; otherwise
/// calls `default`. Shapes were validated by the spec layer; a mismatch here is still an error,
/// never a panic.
pub(crate) fn explicit_or(
    params: &ExplicitParams,
    name: &str,
    len: usize,
    layer: &str,
    default: impl FnOnce() -> Vec<f64>,
) -> Result<Vec<f64>> {
    match params.get(name) {
        Some(v) if v.len() == len => Ok(v.clone()),
        Some(v) => Err(EngineError::Shape {
            layer: layer.to_string(),
            expected: format!("{len} values for `{name}`"),
            got: format!("{}", v.len()),
        }),
        None => Ok(default()),
    }
}

/// Per-call settings of a forward pass.
pub struct Ctx<'a> {
    /// Batch norm uses batch statistics (and updates running ones) when true.
    pub training: bool,
    /// Dropout is active when true (off for analysis and evaluation).
    pub dropout: bool,
    /// Layers record their unit statistics ([`UnitStats`]) on this pass.
    pub probe: bool,
    /// Dropout masks.
    pub rng: &'a mut Rng,
    /// Time steps of the batch (1 for plain samples): a sequence batch has `seq_len * B` rows,
    /// time-major.
    pub seq_len: usize,
    /// Truncated BPTT window (see `layers::rnn`).
    pub bptt_truncate: Option<usize>,
}

/// Statistics of a layer's units on the last probed forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UnitStats {
    /// Sigmoid/tanh: fraction of (sample, unit) pairs whose derivative is below
    /// [`crate::engine::activation::SATURATION_FRACTION`] of its maximum.
    pub saturation: Option<f64>,
    /// ReLU: fraction of units that output zero for every sample of the batch.
    pub dead_fraction: Option<f64>,
}

/// One layer of a feed-forward stack. See the module doc for the array ownership rules.
pub trait Layer<T: Scalar>: Send {
    /// Spec type name (`dense`, `batch_norm`, ...).
    fn kind(&self) -> &'static str;
    /// The activation applied by this layer, if any.
    fn activation(&self) -> Option<Activation> {
        None
    }
    /// Output width.
    fn out_dim(&self) -> usize;
    /// `y = f(x)`; `y` is resized when its shape differs.
    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>);
    /// Given `dy = dL/dy`, sets the parameter gradients and, when `dx` is given, `dx = dL/dx`.
    fn backward(&mut self, x: &Array2<T>, y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>);
    /// Learnable parameters, in a fixed order.
    fn params(&self) -> &[Param<T>] {
        &[]
    }
    /// Mutable access for the optimiser.
    fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut []
    }
    /// Non-learned state exported with the parameters (batch norm running statistics).
    fn buffers(&self) -> Vec<(&'static str, Vec<f64>)> {
        Vec::new()
    }
    /// Unit statistics from the last forward with `ctx.probe`.
    fn unit_stats(&self) -> UnitStats {
        UnitStats::default()
    }
    /// What a recurrent layer measured on its last probed pass.
    fn recurrent_stats(&self) -> Option<&RecurrentStats> {
        None
    }
    /// Gradient checking of truncated BPTT: hold the recurrent state at the truncation point
    /// fixed at its current value in later forward passes (see `layers::rnn`).
    fn freeze_truncated_state(&mut self, _frozen: bool) {}
    /// True when the output keeps the time axis (`T * B` rows); only recurrent layers change it.
    fn sequence_out(&self) -> bool {
        true
    }
}

/// Makes `a` a `rows x cols` array, reallocating only when the shape differs.
pub(crate) fn ensure_shape<T: Scalar>(a: &mut Array2<T>, rows: usize, cols: usize) {
    if a.dim() != (rows, cols) {
        *a = Array2::zeros((rows, cols));
    }
}

/// Applies `act` elementwise: `y = f(z)`, with per-column PReLU slopes when given.
pub(crate) fn activate<T: Scalar>(act: Activation, z: &Array2<T>, y: &mut Array2<T>, slopes: Option<&Param<T>>) {
    ensure_shape(y, z.nrows(), z.ncols());
    match slopes {
        Some(p) => {
            let s = p.value.row(0);
            ndarray::Zip::from(y.rows_mut()).and(z.rows()).for_each(|mut yr, zr| {
                ndarray::Zip::from(&mut yr).and(&zr).and(&s).for_each(|y, &z, &s| *y = act.value(z, s));
            });
        }
        None => ndarray::Zip::from(y).and(z).for_each(|y, &z| *y = act.value(z, T::zero())),
    }
}

/// `dz = dy * f'(z)`; accumulates PReLU slope gradients `sum_b dy * min(z, 0)` into `slopes.grad`.
pub(crate) fn activation_backward<T: Scalar>(
    act: Activation,
    z: &Array2<T>,
    y: &Array2<T>,
    dy: &Array2<T>,
    dz: &mut Array2<T>,
    slopes: Option<&mut Param<T>>,
) {
    ensure_shape(dz, z.nrows(), z.ncols());
    match slopes {
        Some(p) => {
            // d prelu(z; a)/da = z for z <= 0, else 0.
            p.grad.fill(T::zero());
            let s = p.value.row(0).to_owned();
            let mut gs = p.grad.row_mut(0);
            for (((mut dzr, zr), yr), dyr) in dz.rows_mut().into_iter().zip(z.rows()).zip(y.rows()).zip(dy.rows()) {
                for j in 0..zr.len() {
                    let (zv, yv, g) = (zr[j], yr[j], dyr[j]);
                    dzr[j] = g * act.derivative(zv, yv, s[j]);
                    if zv <= T::zero() {
                        gs[j] += g * zv;
                    }
                }
            }
        }
        None => {
            if matches!(act, Activation::Linear) {
                dz.assign(dy);
            } else {
                ndarray::Zip::from(dz).and(z).and(y).and(dy).for_each(|dz, &z, &y, &g| {
                    *dz = g * act.derivative(z, y, T::zero());
                });
            }
        }
    }
}

/// Saturation and dead-unit statistics of an activation's outputs (see [`UnitStats`]).
pub(crate) fn unit_stats<T: Scalar>(act: Activation, z: &Array2<T>, y: &Array2<T>) -> UnitStats {
    let mut stats = UnitStats::default();
    if let Some(max) = act.max_derivative() {
        let threshold = max * super::activation::SATURATION_FRACTION;
        let saturated = ndarray::Zip::from(z)
            .and(y)
            .fold(0usize, |n, &z, &y| n + usize::from(act.derivative(z, y, T::zero()).f64() < threshold));
        stats.saturation = Some(saturated as f64 / z.len().max(1) as f64);
    }
    if act.can_die() {
        let dead = y.columns().into_iter().filter(|c| c.iter().all(|v| *v <= T::zero())).count();
        stats.dead_fraction = Some(dead as f64 / y.ncols().max(1) as f64);
    }
    stats
}

/// Builds a layer name such as `dense_3`.
pub fn layer_name(kind: &str, index: usize) -> String {
    format!("{kind}_{index}")
}
