//! Batch and layer normalisation.
//!
//! ```text
//! xhat = (x - mean) / sqrt(var + eps)        var biased (divide by n), as PyTorch normalises
//! y    = gamma * xhat + beta
//! dx   = inv_std / n * (n * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),  dxhat = dy * gamma
//! ```
//! Batch norm takes `mean`/`var` per feature over the batch (axis 0) in training and keeps
//! running estimates (`running = (1 - momentum) running + momentum batch`, the running variance
//! unbiased, as PyTorch); in evaluation it uses the running ones, so `dx = dy * gamma * inv_std`.
//! Layer norm takes them per sample over features (axis 1) in both modes (Ba et al. 2016).
//!
//! Shapes: x, y, dy, dx: (batch, features); gamma, beta: (1, features).

use ndarray::{Array1, Array2};

use super::{ensure_shape, explicit_or, Ctx, Layer, LayerKind, Param};
use crate::engine::config::{NormConfig, NormKind};
use crate::engine::{EngineError, Result, Scalar};

/// The normalisation arithmetic, shared by the standalone layers and a dense layer's `norm`.
/// It does not own gamma/beta, so that the owning layer can list all its parameters in one slice.
#[derive(Debug, Clone)]
pub struct NormCore<T> {
    kind: NormKind,
    eps: T,
    momentum: T,
    /// Batch norm running mean (features).
    pub running_mean: Array1<T>,
    /// Batch norm running variance (features).
    pub running_var: Array1<T>,
    xhat: Array2<T>,
    /// 1/sqrt(var + eps): per feature (batch norm) or per sample (layer norm).
    inv_std: Array1<T>,
    used_batch_stats: bool,
}

impl<T: Scalar> NormCore<T> {
    /// A norm over `features`, with running statistics from `config.params` when given.
    pub fn new(
        kind: NormKind,
        features: usize,
        config: &NormConfig,
        running_mean: Vec<f64>,
        running_var: Vec<f64>,
    ) -> Self {
        NormCore {
            kind,
            eps: T::of(config.eps),
            momentum: T::of(config.momentum),
            running_mean: running_mean.into_iter().map(T::of).collect(),
            running_var: running_var.into_iter().map(T::of).collect(),
            xhat: Array2::zeros((0, features)),
            inv_std: Array1::zeros(0),
            used_batch_stats: true,
        }
    }

    /// Which normalisation.
    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// `y = gamma * xhat + beta`.
    /// Fails only when a buffer cannot be allocated ([`EngineError::OutOfMemory`]).
    pub fn forward(
        &mut self,
        x: &Array2<T>,
        gamma: &Array2<T>,
        beta: &Array2<T>,
        y: &mut Array2<T>,
        training: bool,
    ) -> Result<()> {
        let (n, f) = x.dim();
        ensure_shape(y, n, f, "the output")?;
        ensure_shape(&mut self.xhat, n, f, "the normalised values")?;
        let (g, b) = (gamma.row(0), beta.row(0));
        match self.kind {
            NormKind::Batch => {
                if self.inv_std.len() != f {
                    self.inv_std = zeros(f)?;
                }
                self.used_batch_stats = training;
                let nf = T::of(n as f64);
                for j in 0..f {
                    let col = x.column(j);
                    let (mean, var) = if training {
                        let mean = col.sum() / nf;
                        let var = col.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / nf;
                        // Running variance is the unbiased estimate, as PyTorch keeps it.
                        let unbiased = if n > 1 { var * nf / T::of((n - 1) as f64) } else { var };
                        let m = self.momentum;
                        self.running_mean[j] = (T::one() - m) * self.running_mean[j] + m * mean;
                        self.running_var[j] = (T::one() - m) * self.running_var[j] + m * unbiased;
                        (mean, var)
                    } else {
                        (self.running_mean[j], self.running_var[j])
                    };
                    let inv = T::one() / (var + self.eps).sqrt();
                    self.inv_std[j] = inv;
                    for i in 0..n {
                        let xh = (x[(i, j)] - mean) * inv;
                        self.xhat[(i, j)] = xh;
                        y[(i, j)] = g[j] * xh + b[j];
                    }
                }
            }
            NormKind::Layer => {
                if self.inv_std.len() != n {
                    self.inv_std = zeros(n)?;
                }
                let x = x.as_standard_layout();
                let (g, b) = (slice(gamma), slice(beta));
                let ff = T::of(f as f64);
                let rows = slice(&x).chunks_exact(f).zip(slice_mut(y).chunks_exact_mut(f));
                let rows = rows.zip(slice_mut(&mut self.xhat).chunks_exact_mut(f));
                for (((xr, yr), hr), inv_std) in rows.zip(self.inv_std.iter_mut()) {
                    let mean = lanes_sum(xr, |v| v) / ff;
                    let var = lanes_sum(xr, |v| (v - mean) * (v - mean)) / ff;
                    let inv = T::one() / (var + self.eps).sqrt();
                    *inv_std = inv;
                    for ((((&xv, yv), hv), &gj), &bj) in xr.iter().zip(yr.iter_mut()).zip(hr.iter_mut()).zip(g).zip(b) {
                        let xh = (xv - mean) * inv;
                        *hv = xh;
                        *yv = gj * xh + bj;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets `gamma.grad`, `beta.grad` and `dx` from `dy` (see the module doc for the formula).
    /// Fails only when `dx` cannot be allocated ([`EngineError::OutOfMemory`]).
    pub fn backward(
        &self,
        dy: &Array2<T>,
        gamma: &mut Param<T>,
        beta: &mut Param<T>,
        dx: &mut Array2<T>,
    ) -> Result<()> {
        let (n, f) = dy.dim();
        ensure_shape(dx, n, f, "the input gradients")?;
        gamma.grad.fill(T::zero());
        beta.grad.fill(T::zero());
        let dy = dy.as_standard_layout();
        if let (Some(gg), Some(gb)) = (gamma.grad.as_slice_mut(), beta.grad.as_slice_mut()) {
            for (dr, hr) in slice(&dy).chunks_exact(f).zip(slice(&self.xhat).chunks_exact(f)) {
                for (((g, b), &d), &h) in gg.iter_mut().zip(gb.iter_mut()).zip(dr).zip(hr) {
                    *g += d * h;
                    *b += d;
                }
            }
        }
        let g = gamma.value.row(0);
        match self.kind {
            NormKind::Batch if !self.used_batch_stats => {
                for i in 0..n {
                    for j in 0..f {
                        dx[(i, j)] = dy[(i, j)] * g[j] * self.inv_std[j];
                    }
                }
            }
            NormKind::Batch => {
                let nf = T::of(n as f64);
                for j in 0..f {
                    // sum(dxhat) = gamma * sum(dy); sum(dxhat * xhat) = gamma * dgamma
                    let s1 = g[j] * beta.grad[(0, j)];
                    let s2 = g[j] * gamma.grad[(0, j)];
                    let k = self.inv_std[j] / nf;
                    for i in 0..n {
                        let dxh = dy[(i, j)] * g[j];
                        dx[(i, j)] = k * (nf * dxh - s1 - self.xhat[(i, j)] * s2);
                    }
                }
            }
            NormKind::Layer => {
                let ff = T::of(f as f64);
                let g = gamma.value.as_slice().unwrap_or(&[]);
                let rows = slice(&dy).chunks_exact(f).zip(slice(&self.xhat).chunks_exact(f));
                let rows = rows.zip(slice_mut(dx).chunks_exact_mut(f)).zip(self.inv_std.iter());
                for (((dr, hr), xr), &inv) in rows {
                    // sum(dxhat) and sum(dxhat * xhat), dxhat = dy * gamma.
                    let s1 = lanes_dot(dr, g, None);
                    let s2 = lanes_dot(dr, g, Some(hr));
                    let k = inv / ff;
                    for (((o, &d), &gj), &h) in xr.iter_mut().zip(dr).zip(g).zip(hr) {
                        *o = k * (ff * (d * gj) - s1 - h * s2);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The elements of a standard-layout array (every buffer here is one), row-major.
fn slice<T: Scalar>(a: &ndarray::ArrayBase<impl ndarray::Data<Elem = T>, ndarray::Ix2>) -> &[T] {
    a.as_slice().unwrap_or(&[])
}

/// See [`slice`].
fn slice_mut<T: Scalar>(a: &mut Array2<T>) -> &mut [T] {
    a.as_slice_mut().unwrap_or(&mut [])
}

/// Lanes of the row reductions below: independent partial sums, so that the loops vectorise.
const LANES: usize = 8;

/// `sum_j f(v_j)` over [`LANES`] partial sums.
#[inline(always)]
fn lanes_sum<T: Scalar>(v: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(T::zero(), |a, &x| a + f(x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().fold(tail, |a, &x| a + x)
}

/// `sum_j a_j b_j` (times `c_j` when given) over [`LANES`] partial sums.
#[inline(always)]
fn lanes_dot<T: Scalar>(a: &[T], b: &[T], c: Option<&[T]>) -> T {
    let mut acc = [T::zero(); LANES];
    let n = a.len().min(b.len());
    let full = n - n % LANES;
    let mut tail = T::zero();
    match c {
        Some(c) => {
            for ((ca, cb), cc) in a[..full].chunks_exact(LANES).zip(b.chunks_exact(LANES)).zip(c.chunks_exact(LANES)) {
                for (((s, &x), &y), &z) in acc.iter_mut().zip(ca).zip(cb).zip(cc) {
                    *s += x * y * z;
                }
            }
            for j in full..n.min(c.len()) {
                tail += a[j] * b[j] * c[j];
            }
        }
        None => {
            for (ca, cb) in a[..full].chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
                for ((s, &x), &y) in acc.iter_mut().zip(ca).zip(cb) {
                    *s += x * y;
                }
            }
            for j in full..n {
                tail += a[j] * b[j];
            }
        }
    }
    acc.iter().fold(tail, |s, &x| s + x)
}

/// `n` zeros, reserved fallibly (the per-row statistics of a layer norm grow with the batch).
fn zeros<T: Scalar>(n: usize) -> Result<Array1<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| EngineError::out_of_memory(n, std::mem::size_of::<T>(), "the norm statistics"))?;
    v.resize(n, T::zero());
    Ok(Array1::from_vec(v))
}

/// A standalone `batch_norm` or `layer_norm` layer; parameters `weight` (gamma), `bias` (beta).
pub struct NormLayer<T> {
    core: NormCore<T>,
    params: Vec<Param<T>>,
}

impl<T: Scalar> NormLayer<T> {
    /// A norm over `features`, taking explicit `weight`/`bias`/`running_*` from the config.
    pub fn new(kind: NormKind, features: usize, config: &NormConfig, name: &str) -> Result<Self> {
        let p = &config.params;
        let weight = explicit_or(p, "weight", features, name, || vec![1.0; features])?;
        let bias = explicit_or(p, "bias", features, name, || vec![0.0; features])?;
        let rm = explicit_or(p, "running_mean", features, name, || vec![0.0; features])?;
        let rv = explicit_or(p, "running_var", features, name, || vec![1.0; features])?;
        Ok(NormLayer {
            core: NormCore::new(kind, features, config, rm, rv),
            params: vec![Param::vector("weight", weight), Param::vector("bias", bias)],
        })
    }
}

impl<T: Scalar> Layer<T> for NormLayer<T> {
    fn kind(&self) -> LayerKind {
        match self.core.kind {
            NormKind::Batch => LayerKind::BatchNorm,
            NormKind::Layer => LayerKind::LayerNorm,
        }
    }

    fn out_dim(&self) -> usize {
        self.params[0].len()
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        self.core.forward(x, &self.params[0].value, &self.params[1].value, y, ctx.training)
    }

    fn backward(&mut self, _x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let [gamma, beta] = &mut self.params[..] else { return Ok(()) };
        let mut scratch;
        let dx = match dx {
            Some(dx) => dx,
            None => {
                scratch = Array2::zeros((0, 0));
                &mut scratch
            }
        };
        self.core.backward(dy, gamma, beta, dx)
    }

    fn params(&self) -> &[Param<T>] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    fn buffers(&self) -> Vec<(&'static str, Vec<f64>)> {
        running_buffers(&self.core, "running_mean", "running_var")
    }
}

/// Running statistics of a batch norm, for export with the parameters.
pub(crate) fn running_buffers<T: Scalar>(
    core: &NormCore<T>,
    mean: &'static str,
    var: &'static str,
) -> Vec<(&'static str, Vec<f64>)> {
    match core.kind {
        NormKind::Batch => vec![
            (mean, core.running_mean.iter().map(|v| v.f64()).collect()),
            (var, core.running_var.iter().map(|v| v.f64()).collect()),
        ],
        NormKind::Layer => Vec::new(),
    }
}
