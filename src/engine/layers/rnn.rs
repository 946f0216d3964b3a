//! Recurrent layers (vanilla RNN, LSTM, GRU) unrolled over the sequence, with backpropagation
//! through time.
//!
//! Rows are time-major: the input `x` is `(T*B, F)` with step `t` in rows `t*B..(t+1)*B`; the
//! output is `h_T` as `(B, H)`, or every `h_t` as `(T*B, H)` with `return_sequences`.
//! Parameters are PyTorch's, packed by gate: `weight_ih (G*H, F)`, `weight_hh (G*H, H)`,
//! `bias_ih`, `bias_hh (G*H)` with G = 1 (vanilla), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n).
//!
//! ```text
//! vanilla: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//! LSTM:    [i f g o] = [s s tanh s](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
//!          c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)
//! GRU:     r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
//!          n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h_t = (1 - z) n + z h_{t-1}
//! ```
//! with `h_0 = c_0 = 0` and s the logistic sigmoid.
//!
//! Forward does the input products for all steps in one GEMM (`X W_ih^T`), then one
//! `(B, H) x (H, G*H)` product per step. Backward walks the steps in reverse, collecting the
//! pre-activation gradients of every step, and again forms the weight gradients with one GEMM
//! each: `dW_ih = dG^T X`, `dW_hh = dG_hh^T [h_0 .. h_{T-1}]`.
//!
//! Truncated BPTT with `k`: the recurrent gradient (through `h_{t-1}`, and `c_{t-1}` for LSTM)
//! is cut between step `T-k-1` and step `T-k` (0-based steps `0..T`), exactly like detaching the
//! state that enters step `T-k` in PyTorch. The loss at the end therefore reaches back at most
//! `k` steps; with `return_sequences`, earlier steps still get the gradient of their own outputs
//! and pass it back through their own earlier steps.
//!
//! Probes: `||dL/dh_t||` (the total gradient at every step, over the whole batch), saturation of
//! the vanilla activation or of each gate, and the spectral norm / spectral radius of each
//! recurrent block of `W_hh`.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, Axis};

use super::{ensure_shape, explicit_or, unit_stats, Ctx, Layer, Param, UnitStats};
use crate::engine::activation::SATURATION_FRACTION;
use crate::engine::config::{Activation, CellKind, RnnConfig};
use crate::engine::rng::Rng;
use crate::engine::{EngineError, Result, Scalar};

/// Index of `weight_hh` in `params` (weight_ih, weight_hh, bias_ih, bias_hh).
const W_HH: usize = 1;

/// Mean and saturation of one gate on the last probed forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct GateStats {
    /// `i`, `f`, `g`, `o` (LSTM) or `r`, `z`, `n` (GRU).
    pub gate: &'static str,
    /// Mean activation over steps, samples and units.
    pub mean: f64,
    /// Fraction with derivative below 1% of its maximum.
    pub saturation: f64,
}

/// Spectrum of one recurrent block of `W_hh`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Block name (`hh` for the vanilla cell, the gate otherwise).
    pub block: &'static str,
    /// Largest singular value (the spectral norm, lambda_1 of Pascanu et al. 2013).
    pub sigma_max: f64,
    /// Largest eigenvalue modulus.
    pub spectral_radius: f64,
}

/// What a recurrent layer measured on its last probed pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecurrentStats {
    /// `||dL/dh_t||` for t = 1..T (over the whole batch).
    pub timestep_grad_norm: Vec<f64>,
    /// Per-gate statistics (gated cells).
    pub gates: Vec<GateStats>,
    /// Spectra of the recurrent blocks.
    pub spectra: Vec<Spectrum>,
}

/// See the module doc.
pub struct Rnn<T> {
    cell: CellKind,
    activation: Activation,
    units: usize,
    return_sequences: bool,
    params: Vec<Param<T>>,
    steps: usize,
    batch: usize,
    truncate: Option<usize>,
    probe: bool,
    /// `X W_ih^T + b_ih`, (T*B, G*H).
    xw: Array2<T>,
    /// `h_0 ..= h_T`, ((T+1)*B, H).
    hs: Array2<T>,
    /// LSTM cell states `c_0 ..= c_T`, ((T+1)*B, H).
    cs: Array2<T>,
    /// Gate activations per step (vanilla: the pre-activation), (T*B, G*H).
    gates: Array2<T>,
    /// GRU: `W_hn h_{t-1} + b_hn` per step, (T*B, H).
    hn: Array2<T>,
    /// Per-step scratch: `h_{t-1} W_hh^T + b_hh`, (B, G*H).
    hw: Array2<T>,
    /// Pre-activation gradients, input side (T*B, G*H), and recurrent side (GRU only differs).
    dg: Array2<T>,
    dg_hh: Array2<T>,
    dh: Array2<T>,
    dh_prev: Array2<T>,
    dc: Array2<T>,
    stats: UnitStats,
    recurrent: RecurrentStats,
    /// State entering step `T-k` on the last unfrozen pass (h, and c for LSTM); with
    /// `frozen`, forward passes use it instead of the computed one. This makes the loss the
    /// function whose exact gradient truncated BPTT computes, so finite differences can check it.
    captured: (Array2<T>, Array2<T>),
    frozen: bool,
}

impl<T: Scalar> Rnn<T> {
    /// Builds the layer for `inputs` features per step.
    pub fn new(config: &RnnConfig, inputs: usize, name: &str, rng: &mut Rng) -> Result<Self> {
        let (h, g) = (config.units, config.cell.gates());
        if h == 0 || inputs == 0 {
            return Err(EngineError::config(name, "a recurrent layer needs at least one input and one unit"));
        }
        // Each gate block gets its own init, so that e.g. an orthogonal W_hh is orthogonal per
        // gate (a (4H x H) orthogonal draw would not be).
        let mut w_ih = Array2::<f64>::zeros((g * h, inputs));
        let mut w_hh = Array2::<f64>::zeros((g * h, h));
        for k in 0..g {
            w_ih.slice_mut(s![k * h..(k + 1) * h, ..]).assign(&config.init.matrix(h, inputs, rng));
            w_hh.slice_mut(s![k * h..(k + 1) * h, ..]).assign(&config.recurrent_init.matrix(h, h, rng));
        }
        let p = &config.params;
        let w_ih = explicit_or(p, "weight_ih", g * h * inputs, name, || w_ih.iter().copied().collect())?;
        let w_hh = explicit_or(p, "weight_hh", g * h * h, name, || w_hh.iter().copied().collect())?;
        let mut b_ih_default = vec![0.0; g * h];
        if config.cell == CellKind::Lstm {
            b_ih_default[h..2 * h].iter_mut().for_each(|b| *b = config.forget_bias);
        }
        let b_ih = explicit_or(p, "bias_ih", g * h, name, || b_ih_default)?;
        let b_hh = explicit_or(p, "bias_hh", g * h, name, || vec![0.0; g * h])?;
        let shaped = |v: Vec<f64>, cols: usize| {
            Array2::from_shape_vec((g * h, cols), v).map_err(|e| EngineError::config(name, e.to_string()))
        };
        Ok(Rnn {
            cell: config.cell,
            activation: config.activation,
            units: h,
            return_sequences: config.return_sequences,
            params: vec![
                Param::matrix("weight_ih", shaped(w_ih, inputs)?),
                Param::matrix("weight_hh", shaped(w_hh, h)?),
                Param::vector("bias_ih", b_ih),
                Param::vector("bias_hh", b_hh),
            ],
            steps: 0,
            batch: 0,
            truncate: None,
            probe: false,
            xw: Array2::zeros((0, 0)),
            hs: Array2::zeros((0, 0)),
            cs: Array2::zeros((0, 0)),
            gates: Array2::zeros((0, 0)),
            hn: Array2::zeros((0, 0)),
            hw: Array2::zeros((0, 0)),
            dg: Array2::zeros((0, 0)),
            dg_hh: Array2::zeros((0, 0)),
            dh: Array2::zeros((0, 0)),
            dh_prev: Array2::zeros((0, 0)),
            dc: Array2::zeros((0, 0)),
            stats: UnitStats::default(),
            recurrent: RecurrentStats::default(),
            captured: (Array2::zeros((0, 0)), Array2::zeros((0, 0))),
            frozen: false,
        })
    }

    fn gate_names(&self) -> &'static [&'static str] {
        match self.cell {
            CellKind::Vanilla => &["hh"],
            CellKind::Lstm => &["i", "f", "g", "o"],
            CellKind::Gru => &["r", "z", "n"],
        }
    }

    /// Gate means and saturations, and the spectra of W_hh (probe steps only: O(H^3)).
    fn record_probe_stats(&mut self) {
        let h = self.units;
        let gates = match self.cell {
            CellKind::Vanilla => Vec::new(),
            _ => self
                .gate_names()
                .iter()
                .enumerate()
                .map(|(k, &gate)| {
                    let block = self.gates.slice(s![.., k * h..(k + 1) * h]);
                    let tanh_gate = (self.cell == CellKind::Lstm && gate == "g") || gate == "n";
                    let n = block.len().max(1) as f64;
                    let mean = block.iter().map(|v| v.f64()).sum::<f64>() / n;
                    let saturated = block
                        .iter()
                        .filter(|v| {
                            let a = v.f64();
                            if tanh_gate {
                                1.0 - a * a < SATURATION_FRACTION
                            } else {
                                a * (1.0 - a) < 0.25 * SATURATION_FRACTION
                            }
                        })
                        .count();
                    GateStats { gate, mean, saturation: saturated as f64 / n }
                })
                .collect(),
        };
        let w = &self.params[W_HH].value;
        let spectra = self
            .gate_names()
            .iter()
            .enumerate()
            .map(|(k, &block)| {
                let m = nalgebra::DMatrix::<f64>::from_fn(h, h, |i, j| w[(k * h + i, j)].f64());
                let sigma_max = m.singular_values().iter().fold(0.0f64, |a, &b| a.max(b));
                let spectral_radius = spectral_radius(m);
                Spectrum { block, sigma_max, spectral_radius }
            })
            .collect();
        self.recurrent.gates = gates;
        self.recurrent.spectra = spectra;
    }
}

/// Largest eigenvalue modulus of a square matrix. The eigenvalues come from a real Schur
/// decomposition with a bounded number of QR sweeps (nalgebra's unbounded default can loop
/// forever on some matrices); if it does not converge, Gelfand's formula
/// rho = lim ||A^k||^(1/k) with k = 2^10 by repeated (normalised) squaring gives the estimate.
fn spectral_radius(m: nalgebra::DMatrix<f64>) -> f64 {
    if let Some(schur) = nalgebra::linalg::Schur::try_new(m.clone(), 1e-12, 10_000) {
        return schur.complex_eigenvalues().iter().fold(0.0f64, |a, e| a.max(e.norm()));
    }
    // log ||A^(2^j)|| accumulates as a sum of logs of the normalisers.
    let (mut a, mut log_scale) = (m, 0.0f64);
    let squarings = 10;
    for _ in 0..squarings {
        let n = a.norm();
        if n == 0.0 || !n.is_finite() {
            return if n == 0.0 { 0.0 } else { f64::NAN };
        }
        a /= n;
        log_scale = 2.0 * (log_scale + n.ln());
        a = &a * &a;
    }
    ((log_scale + a.norm().ln()) / f64::from(1u32 << squarings)).exp()
}

fn sigmoid<T: Scalar>(v: T) -> T {
    Activation::Sigmoid.value(v, T::zero())
}

impl<T: Scalar> Layer<T> for Rnn<T> {
    fn kind(&self) -> &'static str {
        "rnn"
    }

    fn activation(&self) -> Option<Activation> {
        match self.cell {
            CellKind::Vanilla => Some(self.activation),
            _ => None,
        }
    }

    fn out_dim(&self) -> usize {
        self.units
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) {
        let (h, gh) = (self.units, self.cell.gates() * self.units);
        let steps = ctx.seq_len.max(1);
        let b = x.nrows() / steps;
        self.steps = steps;
        self.batch = b;
        self.truncate = ctx.bptt_truncate;
        self.probe = ctx.probe;
        let rows = steps * b;
        ensure_shape(&mut self.xw, rows, gh);
        ensure_shape(&mut self.hs, rows + b, h);
        ensure_shape(&mut self.gates, rows, gh);
        ensure_shape(&mut self.hw, b, gh);
        if self.cell == CellKind::Lstm {
            ensure_shape(&mut self.cs, rows + b, h);
            self.cs.slice_mut(s![..b, ..]).fill(T::zero());
        }
        if self.cell == CellKind::Gru {
            ensure_shape(&mut self.hn, rows, h);
        }
        self.hs.slice_mut(s![..b, ..]).fill(T::zero());
        let [w_ih, w_hh, b_ih, b_hh] = &self.params[..] else { return };
        let xin = x.slice(s![..rows, ..]);
        self.xw.assign(&b_ih.value.broadcast((rows, gh)).unwrap_or_else(|| b_ih.value.view()));
        general_mat_mul(T::one(), &xin, &w_ih.value.t(), T::one(), &mut self.xw);
        let one = T::one();
        let cut = self.truncate.filter(|&k| k < steps).map(|k| steps - k);
        for t in 0..steps {
            let (r0, r1) = (t * b, (t + 1) * b);
            // At the truncation step the state comes from `captured` when frozen (the step's
            // own output rows in `hs` stay as computed: they still feed the loss).
            let held = cut == Some(t) && self.frozen && self.captured.0.nrows() == b;
            if cut == Some(t) && !held {
                self.captured.0 = self.hs.slice(s![r0..r1, ..]).to_owned();
                if self.cell == CellKind::Lstm {
                    self.captured.1 = self.cs.slice(s![r0..r1, ..]).to_owned();
                }
            }
            self.hw.assign(&b_hh.value.broadcast((b, gh)).unwrap_or_else(|| b_hh.value.view()));
            {
                let h_prev = if held { self.captured.0.view() } else { self.hs.slice(s![r0..r1, ..]) };
                general_mat_mul(one, &h_prev, &w_hh.value.t(), one, &mut self.hw);
            }
            let (done, mut next) = self.hs.view_mut().split_at(Axis(0), r1);
            let h_prev = if held { self.captured.0.view() } else { done.slice(s![r0.., ..]) };
            let mut h_t = next.slice_mut(s![..b, ..]);
            let xw = self.xw.slice(s![r0..r1, ..]);
            let mut g = self.gates.slice_mut(s![r0..r1, ..]);
            match self.cell {
                CellKind::Vanilla => {
                    for i in 0..b {
                        for j in 0..h {
                            let z = xw[(i, j)] + self.hw[(i, j)];
                            g[(i, j)] = z;
                            h_t[(i, j)] = self.activation.value(z, T::zero());
                        }
                    }
                }
                CellKind::Lstm => {
                    let (cdone, mut cnext) = self.cs.view_mut().split_at(Axis(0), r1);
                    let c_prev = if held { self.captured.1.view() } else { cdone.slice(s![r0.., ..]) };
                    let mut c_t = cnext.slice_mut(s![..b, ..]);
                    for i in 0..b {
                        for j in 0..h {
                            let pre = |k: usize| xw[(i, k * h + j)] + self.hw[(i, k * h + j)];
                            let (ig, fg, gg, og) = (sigmoid(pre(0)), sigmoid(pre(1)), pre(2).tanh(), sigmoid(pre(3)));
                            g[(i, j)] = ig;
                            g[(i, h + j)] = fg;
                            g[(i, 2 * h + j)] = gg;
                            g[(i, 3 * h + j)] = og;
                            let c = fg * c_prev[(i, j)] + ig * gg;
                            c_t[(i, j)] = c;
                            h_t[(i, j)] = og * c.tanh();
                        }
                    }
                }
                CellKind::Gru => {
                    let mut hn = self.hn.slice_mut(s![r0..r1, ..]);
                    for i in 0..b {
                        for j in 0..h {
                            let r = sigmoid(xw[(i, j)] + self.hw[(i, j)]);
                            let z = sigmoid(xw[(i, h + j)] + self.hw[(i, h + j)]);
                            let hnv = self.hw[(i, 2 * h + j)];
                            let n = (xw[(i, 2 * h + j)] + r * hnv).tanh();
                            g[(i, j)] = r;
                            g[(i, h + j)] = z;
                            g[(i, 2 * h + j)] = n;
                            hn[(i, j)] = hnv;
                            h_t[(i, j)] = (one - z) * n + z * h_prev[(i, j)];
                        }
                    }
                }
            }
        }
        let out = if self.return_sequences { self.hs.slice(s![b.., ..]) } else { self.hs.slice(s![rows.., ..]) };
        ensure_shape(y, out.nrows(), h);
        y.assign(&out);
        if ctx.probe {
            if self.cell == CellKind::Vanilla {
                let pre = self.gates.clone();
                let post = self.hs.slice(s![b.., ..]).to_owned();
                self.stats = unit_stats(self.activation, &pre, &post);
            }
            self.record_probe_stats();
        }
    }

    fn backward(&mut self, x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) {
        let (h, gh, steps, b) = (self.units, self.cell.gates() * self.units, self.steps, self.batch);
        let rows = steps * b;
        ensure_shape(&mut self.dg, rows, gh);
        ensure_shape(&mut self.dh, b, h);
        ensure_shape(&mut self.dh_prev, b, h);
        self.dh.fill(T::zero());
        if self.cell == CellKind::Lstm {
            ensure_shape(&mut self.dc, b, h);
            self.dc.fill(T::zero());
        }
        if self.cell == CellKind::Gru {
            ensure_shape(&mut self.dg_hh, rows, gh);
        }
        if self.probe {
            self.recurrent.timestep_grad_norm.clear();
            self.recurrent.timestep_grad_norm.resize(steps, 0.0);
        }
        let cut = self.truncate.filter(|&k| k < steps).map(|k| steps - k);
        let one = T::one();
        let [_, w_hh, _, _] = &self.params[..] else { return };
        for t in (0..steps).rev() {
            let (r0, r1) = (t * b, (t + 1) * b);
            // dh_t = gradient from the future (self.dh) + from this step's output.
            if self.return_sequences {
                self.dh += &dy.slice(s![r0..r1, ..]);
            } else if t + 1 == steps {
                self.dh += &dy.slice(s![..b, ..]);
            }
            if self.probe {
                self.recurrent.timestep_grad_norm[t] = self.dh.iter().map(|v| v.f64() * v.f64()).sum::<f64>().sqrt();
            }
            let g = self.gates.slice(s![r0..r1, ..]);
            let h_prev = self.hs.slice(s![r0..r1, ..]);
            let mut dg = self.dg.slice_mut(s![r0..r1, ..]);
            let recurrent = cut != Some(t);
            match self.cell {
                CellKind::Vanilla => {
                    let h_t = self.hs.slice(s![r1..r1 + b, ..]);
                    for i in 0..b {
                        for j in 0..h {
                            dg[(i, j)] =
                                self.dh[(i, j)] * self.activation.derivative(g[(i, j)], h_t[(i, j)], T::zero());
                        }
                    }
                    if recurrent {
                        general_mat_mul(one, &dg, &w_hh.value, T::zero(), &mut self.dh_prev);
                    }
                }
                CellKind::Lstm => {
                    let c_t = self.cs.slice(s![r1..r1 + b, ..]);
                    let c_prev = self.cs.slice(s![r0..r1, ..]);
                    for i in 0..b {
                        for j in 0..h {
                            let (ig, fg, gg, og) = (g[(i, j)], g[(i, h + j)], g[(i, 2 * h + j)], g[(i, 3 * h + j)]);
                            let tc = c_t[(i, j)].tanh();
                            let dh = self.dh[(i, j)];
                            let dc = self.dc[(i, j)] + dh * og * (one - tc * tc);
                            dg[(i, j)] = dc * gg * ig * (one - ig);
                            dg[(i, h + j)] = dc * c_prev[(i, j)] * fg * (one - fg);
                            dg[(i, 2 * h + j)] = dc * ig * (one - gg * gg);
                            dg[(i, 3 * h + j)] = dh * tc * og * (one - og);
                            self.dc[(i, j)] = if recurrent { dc * fg } else { T::zero() };
                        }
                    }
                    if recurrent {
                        general_mat_mul(one, &dg, &w_hh.value, T::zero(), &mut self.dh_prev);
                    }
                }
                CellKind::Gru => {
                    let hn = self.hn.slice(s![r0..r1, ..]);
                    let mut dgh = self.dg_hh.slice_mut(s![r0..r1, ..]);
                    for i in 0..b {
                        for j in 0..h {
                            let (r, z, n) = (g[(i, j)], g[(i, h + j)], g[(i, 2 * h + j)]);
                            let dh = self.dh[(i, j)];
                            let dn = dh * (one - z) * (one - n * n);
                            let dz = dh * (h_prev[(i, j)] - n) * z * (one - z);
                            let dr = dn * hn[(i, j)] * r * (one - r);
                            dg[(i, j)] = dr;
                            dg[(i, h + j)] = dz;
                            dg[(i, 2 * h + j)] = dn;
                            dgh[(i, j)] = dr;
                            dgh[(i, h + j)] = dz;
                            dgh[(i, 2 * h + j)] = dn * r;
                            // The direct path h_{t-1} -> h_t through z.
                            self.dh_prev[(i, j)] = dh * z;
                        }
                    }
                    if recurrent {
                        general_mat_mul(one, &dgh, &w_hh.value, one, &mut self.dh_prev);
                    }
                }
            }
            if recurrent {
                std::mem::swap(&mut self.dh, &mut self.dh_prev);
            } else {
                self.dh.fill(T::zero());
            }
        }
        // Weight gradients for all steps at once.
        let xin = x.slice(s![..rows, ..]);
        let dgh: ArrayView2<'_, T> = if self.cell == CellKind::Gru { self.dg_hh.view() } else { self.dg.view() };
        let h_prevs = self.hs.slice(s![..rows, ..]);
        let [w_ih, w_hh, b_ih, b_hh] = &mut self.params[..] else { return };
        general_mat_mul(one, &self.dg.t(), &xin, T::zero(), &mut w_ih.grad);
        general_mat_mul(one, &dgh.t(), &h_prevs, T::zero(), &mut w_hh.grad);
        b_ih.grad.row_mut(0).assign(&self.dg.sum_axis(Axis(0)));
        b_hh.grad.row_mut(0).assign(&dgh.sum_axis(Axis(0)));
        if let Some(dx) = dx {
            ensure_shape(dx, rows, x.ncols());
            general_mat_mul(one, &self.dg, &w_ih.value, T::zero(), dx);
        }
    }

    fn params(&self) -> &[Param<T>] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    fn unit_stats(&self) -> UnitStats {
        self.stats
    }

    fn recurrent_stats(&self) -> Option<&RecurrentStats> {
        Some(&self.recurrent)
    }

    fn sequence_out(&self) -> bool {
        self.return_sequences
    }

    fn freeze_truncated_state(&mut self, frozen: bool) {
        self.frozen = frozen;
    }
}

#[cfg(test)]
mod tests {
    use super::spectral_radius;
    use nalgebra::DMatrix;

    #[test]
    fn spectral_radius_of_scaled_identity_and_rotation() {
        // The identity made nalgebra's unbounded Schur iteration hang; it must return at once.
        assert!((spectral_radius(DMatrix::identity(32, 32) * 1.5) - 1.5).abs() < 1e-9);
        // A rotation by 90 degrees has eigenvalues +-i: radius 1, though no real eigenvalue.
        let r = DMatrix::from_row_slice(2, 2, &[0.0, -2.0, 2.0, 0.0]);
        assert!((spectral_radius(r) - 2.0).abs() < 1e-9);
        // Nilpotent: radius 0 although the norm is 1.
        let n = DMatrix::from_row_slice(2, 2, &[0.0, 1.0, 0.0, 0.0]);
        assert!(spectral_radius(n) < 1e-6);
    }
}
