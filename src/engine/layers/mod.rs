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
mod attention;
mod dense;
mod dropout;
mod norm;
mod pool;
mod positional;
mod rnn;

pub use activation::ActivationLayer;
pub use attention::Attention;
pub use dense::Dense;
pub use dropout::Dropout;
pub use norm::{NormCore, NormLayer};
pub use pool::Pool;
pub use positional::{sinusoidal, Positional};
pub use rnn::{GateStats, RecurrentStats, Rnn, Spectrum};

use std::borrow::Cow;

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
    /// What kind of layer this is (its spec type name is [`LayerKind::name`]).
    fn kind(&self) -> LayerKind;
    /// The activation applied by this layer, if any.
    fn activation(&self) -> Option<Activation> {
        None
    }
    /// Output width.
    fn out_dim(&self) -> usize;
    /// True when the layer normalises its pre-activations (a dense layer with an inner batch or
    /// layer norm): its output, and so the step its weights take, does not depend on their scale.
    fn normalized(&self) -> bool {
        false
    }
    /// `y = f(x)`; `y` is resized when its shape differs. Fails only when a buffer cannot be
    /// allocated ([`EngineError::OutOfMemory`], see [`ensure_shape`]).
    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()>;
    /// Given `dy = dL/dy`, sets the parameter gradients and, when `dx` is given, `dx = dL/dx`.
    /// Fails as [`Layer::forward`] does.
    fn backward(&mut self, x: &Array2<T>, y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()>;
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
    /// The layer as an attention layer, for its probes.
    fn as_attention(&self) -> Option<&Attention<T>> {
        None
    }
    /// Gradient checking of truncated BPTT: hold the recurrent state at the truncation point
    /// fixed at its current value in later forward passes (see `layers::rnn`).
    fn freeze_truncated_state(&mut self, _frozen: bool) {}
    /// Recurrent layers: whether probed forward passes compute the spectra of `W_hh` (an
    /// O(H^3) decomposition per block; see `train::spectra_at`). On until told otherwise.
    fn measure_spectra(&mut self, _on: bool) {}
    /// Recurrent layers: what computing the spectra of `W_hh` once costs, in flop-equivalents of
    /// the step's matrix products (see `layers::rnn`); 0 for the others.
    fn spectra_cost(&self) -> f64 {
        0.0
    }
    /// True when the output keeps the time axis (`T * B` rows); recurrent layers without
    /// `return_sequences` and pool layers do not.
    fn sequence_out(&self) -> bool {
        true
    }
}

/// Makes `a` a `rows x cols` array. Its storage is kept and reused (zero-filled), so a shape
/// that shrinks and grows back (an evaluation chunk between training batches) does not allocate.
/// The storage is reserved fallibly: when the allocator refuses it (or `rows * cols` overflows),
/// `a` is left empty and the error is [`EngineError::OutOfMemory`] naming `what` (the buffer,
/// in words: `the LSTM gates`; the network adds the layer's name), never an abort.
pub(crate) fn ensure_shape<T: Scalar>(a: &mut Array2<T>, rows: usize, cols: usize, what: &'static str) -> Result<()> {
    if a.dim() != (rows, cols) {
        let (mut storage, _) = std::mem::take(a).into_raw_vec_and_offset();
        storage.clear();
        let oom = || EngineError::out_of_memory(rows.saturating_mul(cols), std::mem::size_of::<T>(), what);
        let len = rows.checked_mul(cols).ok_or_else(oom)?;
        storage.try_reserve_exact(len).map_err(|_| oom())?;
        storage.resize(len, T::zero());
        *a = Array2::from_shape_vec((rows, cols), storage).map_err(|_| oom())?;
    }
    Ok(())
}

/// Evaluates `$body` with `$a` bound to `$act`; for the common activations `$a` is a constant
/// of the arm, so that the `match` inside [`Activation::value`] and [`Activation::derivative`]
/// folds away and the elementwise loop in `$body` is compiled (and vectorised) once per
/// activation instead of branching on the activation for every element.
macro_rules! specialise {
    ($act:expr, $a:ident => $body:expr) => {
        match $act {
            Activation::Relu => {
                let $a = Activation::Relu;
                $body
            }
            Activation::Linear => {
                let $a = Activation::Linear;
                $body
            }
            Activation::Sigmoid => {
                let $a = Activation::Sigmoid;
                $body
            }
            Activation::Tanh => {
                let $a = Activation::Tanh;
                $body
            }
            $a => $body,
        }
    };
}

/// The elements of `a` in row-major order. The engine only creates row-major (standard layout)
/// arrays; any other view is copied first, so the elementwise loops below can run over plain
/// slices, which the compiler vectorises (ndarray's `Zip` over several arrays does not).
pub(crate) fn values<T: Scalar>(a: &Array2<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// [`values`] for an output array, which is first made row-major if it is not.
pub(crate) fn values_mut<T: Scalar>(a: &mut Array2<T>) -> &mut [T] {
    if !a.is_standard_layout() {
        *a = a.as_standard_layout().into_owned();
    }
    a.as_slice_mut().unwrap_or_default()
}

/// Row `r` of a row-major slice with `cols` columns. `chunks_exact(0)` would panic, hence the
/// `max(1)`: a zero-width array has no elements, so there is nothing to iterate anyway.
pub(crate) fn rows<T>(values: &[T], cols: usize) -> std::slice::ChunksExact<'_, T> {
    values.chunks_exact(cols.max(1))
}

pub(crate) fn rows_mut<T>(values: &mut [T], cols: usize) -> std::slice::ChunksExactMut<'_, T> {
    values.chunks_exact_mut(cols.max(1))
}

/// Applies `act` elementwise: `y = f(z)`, with per-column PReLU slopes when given.
pub(crate) fn activate<T: Scalar>(
    act: Activation,
    z: &Array2<T>,
    y: &mut Array2<T>,
    slopes: Option<&Param<T>>,
    what: &'static str,
) -> Result<()> {
    let cols = z.ncols();
    ensure_shape(y, z.nrows(), cols, what)?;
    let (z, y) = (values(z), values_mut(y));
    match slopes {
        Some(p) => {
            let s = values(&p.value);
            for (yr, zr) in rows_mut(y, cols).zip(rows(&z, cols)) {
                for ((y, &z), &s) in yr.iter_mut().zip(zr).zip(s.iter()) {
                    *y = act.value(z, s);
                }
            }
        }
        None => specialise!(act, a => {
            for (y, &z) in y.iter_mut().zip(z.iter()) {
                *y = a.value(z, T::zero());
            }
        }),
    }
    Ok(())
}

/// Adds the bias row `b` to every row of `y` and applies `act` in place: `y = f(y + b)`, one
/// pass over `y` (`act` has no learnable slopes).
pub(crate) fn bias_activate<T: Scalar>(act: Activation, b: &Array2<T>, y: &mut Array2<T>) {
    let (cols, b) = (y.ncols(), values(b));
    specialise!(act, a => {
        for row in rows_mut(values_mut(y), cols) {
            for (v, &b) in row.iter_mut().zip(b.iter()) {
                *v = a.value(*v + b, T::zero());
            }
        }
    })
}

/// `db = sum_b dz`: the bias gradient, the column sums of `dz`, added row by row.
pub(crate) fn column_sums<T: Scalar>(dz: &Array2<T>, db: &mut Array2<T>) {
    let cols = dz.ncols();
    let total = values_mut(db);
    total.fill(T::zero());
    for row in rows(&values(dz), cols) {
        for (t, &v) in total.iter_mut().zip(row) {
            *t += v;
        }
    }
}

/// `dz = dy * f'(z)`; accumulates PReLU slope gradients `sum_b dy * min(z, 0)` into `slopes.grad`.
/// When `db` is given it is set to `sum_b dz`, the gradient of a bias added before `f`, in the
/// same pass over the rows.
///
/// For activations whose derivative follows from the output
/// ([`Activation::derivative_from_output`]) `z` may be the output `y` itself.
pub(crate) fn activation_backward<T: Scalar>(
    act: Activation,
    z: &Array2<T>,
    y: &Array2<T>,
    dy: &Array2<T>,
    dz: &mut Array2<T>,
    slopes: Option<&mut Param<T>>,
    db: Option<&mut Array2<T>>,
) -> Result<()> {
    let cols = z.ncols();
    ensure_shape(dz, z.nrows(), cols, "the activation gradients")?;
    let (z, y, dy) = (values(z), values(y), values(dy));
    let out = values_mut(dz);
    match (slopes, db) {
        (Some(p), db) => {
            // d prelu(z; a)/da = z for z <= 0, else 0.
            let s = values(&p.value).into_owned();
            let gs = values_mut(&mut p.grad);
            gs.fill(T::zero());
            let rows_of = rows_mut(out, cols).zip(rows(&z, cols)).zip(rows(&y, cols)).zip(rows(&dy, cols));
            for (((dzr, zr), yr), dyr) in rows_of {
                for j in 0..zr.len().min(s.len()).min(gs.len()) {
                    let (zv, yv, g) = (zr[j], yr[j], dyr[j]);
                    dzr[j] = g * act.derivative(zv, yv, s[j]);
                    if zv <= T::zero() {
                        gs[j] += g * zv;
                    }
                }
            }
            if let Some(db) = db {
                column_sums(dz, db);
            }
        }
        (None, Some(db)) => {
            let total = values_mut(db);
            total.fill(T::zero());
            specialise!(act, a => {
                let rows_of = rows_mut(out, cols).zip(rows(&z, cols)).zip(rows(&y, cols)).zip(rows(&dy, cols));
                for (((dzr, zr), yr), dyr) in rows_of {
                    for ((((dz, &z), &y), &g), t) in dzr.iter_mut().zip(zr).zip(yr).zip(dyr).zip(total.iter_mut()) {
                        *dz = g * a.derivative(z, y, T::zero());
                        *t += *dz;
                    }
                }
            })
        }
        (None, None) => specialise!(act, a => {
            for (((dz, &z), &y), &g) in out.iter_mut().zip(z.iter()).zip(y.iter()).zip(dy.iter()) {
                *dz = g * a.derivative(z, y, T::zero());
            }
        }),
    }
    Ok(())
}

/// Saturation and dead-unit statistics of an activation's outputs (see [`UnitStats`]). `z` may
/// be `y` itself when [`Activation::derivative_from_output`].
pub(crate) fn unit_stats<T: Scalar>(act: Activation, z: &Array2<T>, y: &Array2<T>) -> UnitStats {
    let mut stats = UnitStats::default();
    if let Some(max) = act.max_derivative() {
        let threshold = max * super::activation::SATURATION_FRACTION;
        let (z, y) = (values(z), values(y));
        let saturated: usize = specialise!(act, a => z
            .iter()
            .zip(y.iter())
            .map(|(&z, &y)| usize::from(a.derivative(z, y, T::zero()).f64() < threshold))
            .sum());
        stats.saturation = Some(saturated as f64 / z.len().max(1) as f64);
    }
    if act.can_die() {
        stats.dead_fraction = Some(dead_columns(y) as f64 / y.ncols().max(1) as f64);
    }
    stats
}

/// Columns of `y` with no positive (or NaN) entry: the column maximum, with NaN winning, is at
/// most zero. The rows are scanned in blocks of columns, contiguously and without allocating;
/// the maximum is a select, which vectorises.
fn dead_columns<T: Scalar>(y: &Array2<T>) -> usize {
    const BLOCK: usize = 64;
    let (cols, y) = (y.ncols(), values(y));
    let mut dead = 0;
    for start in (0..cols).step_by(BLOCK) {
        let width = BLOCK.min(cols - start);
        let mut max = [T::neg_infinity(); BLOCK];
        for row in rows(&y, cols) {
            for (m, &v) in max.iter_mut().zip(&row[start..start + width]) {
                *m = if v > *m || v.is_nan() { v } else { *m };
            }
        }
        dead += max[..width].iter().filter(|&&m| m <= T::zero()).count();
    }
    dead
}

/// What kind a reported layer is. [`LayerKind::name`] is the spec's layer `type` (`dense`,
/// `batch_norm`, ...), which also prefixes the layer's reported name (`dense_3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// A fully connected layer (with its activation and optional inner norm).
    Dense,
    /// A standalone batch norm layer.
    BatchNorm,
    /// A standalone layer norm layer.
    LayerNorm,
    /// Dropout.
    Dropout,
    /// A standalone activation layer.
    Activation,
    /// A recurrent layer (vanilla, LSTM or GRU cell).
    Rnn,
    /// Multi-head self-attention.
    Attention,
    /// Sequence pooling (last step or mean).
    Pool,
    /// Positional encoding.
    Positional,
}

impl LayerKind {
    /// The spec's layer `type` of this kind.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Dense => "dense",
            LayerKind::BatchNorm => "batch_norm",
            LayerKind::LayerNorm => "layer_norm",
            LayerKind::Dropout => "dropout",
            LayerKind::Activation => "activation",
            LayerKind::Rnn => "rnn",
            LayerKind::Attention => "attention",
            LayerKind::Pool => "pool",
            LayerKind::Positional => "positional",
        }
    }

    /// Dense and recurrent layers: the ones with a weight matrix, whose `grad_norm` the
    /// gradient-flow measurements compare.
    pub fn has_weights(self) -> bool {
        matches!(self, LayerKind::Dense | LayerKind::Rnn)
    }
}

impl PartialEq<&str> for LayerKind {
    /// A kind equals its spec type name.
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// Builds a layer name such as `dense_3`.
pub fn layer_name(kind: &str, index: usize) -> String {
    format!("{kind}_{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer the allocator cannot give is an `OutOfMemory` error naming its bytes and what it
    /// is, not an abort; the array is left empty and usable. 2^52 bytes (4.5 PB) is beyond any
    /// x86-64 address space (47 bits for user space), so the allocator refuses it whatever the
    /// overcommit policy; a count whose bytes overflow never reaches the allocator.
    #[test]
    fn ensure_shape_reports_an_allocation_it_cannot_make() {
        let mut a = Array2::<f32>::zeros((3, 4));
        match ensure_shape(&mut a, 1 << 40, 1 << 10, "the LSTM gate activations") {
            Err(EngineError::OutOfMemory { bytes, what }) => {
                assert_eq!((bytes, what.as_str()), (1 << 52, "the LSTM gate activations"));
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
        assert_eq!(a.dim(), (0, 0));
        let e = ensure_shape(&mut a, usize::MAX, 2, "the output").unwrap_err();
        assert_eq!(e, EngineError::OutOfMemory { bytes: u64::MAX, what: "the output".into() });
        let e = ensure_shape(&mut Array2::<f64>::zeros((0, 0)), usize::MAX / 16, 1, "x").unwrap_err();
        assert!(matches!(e, EngineError::OutOfMemory { bytes, .. } if bytes == (usize::MAX / 16) as u64 * 8), "{e:?}");
        ensure_shape(&mut a, 2, 5, "the output").unwrap();
        assert_eq!(a, Array2::<f32>::zeros((2, 5)));
    }

    /// Over two column blocks: a column is dead when no entry is positive; a NaN keeps it alive,
    /// as does a single positive entry in the last row.
    #[test]
    fn dead_columns_counts_columns_without_a_positive_or_nan_entry() {
        let mut y = Array2::from_shape_fn((5, 70), |(i, j)| if j % 3 == 0 { -(i as f32) } else { i as f32 - 1.0 });
        y[(2, 3)] = f32::NAN;
        y[(4, 6)] = 1e-30;
        let want = (0..70).filter(|j| j % 3 == 0).count() - 2;
        assert_eq!(dead_columns(&y), want);
        assert_eq!(dead_columns(&Array2::<f64>::zeros((3, 4))), 4);
        // Transposed: rows 0 and 1 of y hold no positive entry.
        assert_eq!(dead_columns(&y.t().as_standard_layout().into_owned()), 2);
    }
}
