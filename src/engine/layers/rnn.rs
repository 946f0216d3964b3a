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
//! recurrent block of `W_hh` (at the probe steps `train::spectra_at` picks; see
//! [`Layer::measure_spectra`]).

use crate::engine::linalg::{gemm, spectrum};
use ndarray::{s, Array2, ArrayView2, Zip};

use super::{ensure_shape, explicit_or, Ctx, Layer, LayerKind, Param, UnitStats};
use crate::engine::activation::SATURATION_FRACTION;
use crate::engine::config::{Activation, CellKind, RnnConfig};
use crate::engine::rng::Rng;
use crate::engine::scalar::sum_sq;
use crate::engine::simd::vectorised;
use crate::engine::{EngineError, Result, Scalar};

/// Index of `weight_hh` in `params` (weight_ih, weight_hh, bias_ih, bias_hh).
const W_HH: usize = 1;

/// The spectra of one H x H block of `W_hh` (`linalg::spectrum`: the eigenvalues of the block
/// and of its Gram matrix, in f64) take about as long as `SPECTRA_COST_PER_H3 * H^3` flops of the
/// step's matrix products: measured on this project's machine (one thread), one block takes
/// ~3.1 ms at H 128 where the f32 products run at ~205 GFLOP/s, i.e. ~300 H^3. Only the schedule
/// of the spectra depends on it (`train::spectra_gap`).
pub const SPECTRA_COST_PER_H3: f64 = 300.0;

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
    /// Spectra of the recurrent blocks; empty on a probe that did not compute them (see
    /// `train::spectra_at`).
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
    /// `h_0 ..= h_T`, ((T+1)*B, H).
    hs: Array2<T>,
    /// LSTM cell states `c_0 ..= c_T`, ((T+1)*B, H).
    cs: Array2<T>,
    /// LSTM `tanh(c_1) ..= tanh(c_T)`, (T*B, H).
    tc: Array2<T>,
    /// Gate activations per step (vanilla: the pre-activation), (T*B, G*H). Forward first
    /// fills it with the pre-activations and then turns them into activations in place.
    gates: Array2<T>,
    /// GRU: `W_hn h_{t-1} + b_hn` per step, (T*B, H).
    hn: Array2<T>,
    /// GRU per-step scratch: `h_{t-1} W_hh^T + b_hh`, (B, G*H).
    hw: Array2<T>,
    /// `W_hh^T` (H, G*H), row-major, copied once per forward pass: the per-step products read
    /// it contiguously (packing the transposed view for every step gathers with stride H).
    w_hh_t: Array2<T>,
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
    /// Probed passes compute the spectra of `W_hh` (otherwise `recurrent.spectra` is empty).
    spectra: bool,
}

impl<T: Scalar> Rnn<T> {
    /// Builds the layer for `inputs` features per step.
    pub fn new(config: &RnnConfig, inputs: usize, name: &str, rng: &mut Rng) -> Result<Self> {
        let (h, g) = (config.units, config.cell.gates());
        if h == 0 || inputs == 0 {
            return Err(EngineError::layer(
                name,
                format!("needs at least one input and one unit, got {inputs} -> {h}"),
            ));
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
            Array2::from_shape_vec((g * h, cols), v)
                .map_err(|e| EngineError::layer(name, format!("weight of {} x {cols}: {e}", g * h)))
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
            hs: Array2::zeros((0, 0)),
            cs: Array2::zeros((0, 0)),
            tc: Array2::zeros((0, 0)),
            gates: Array2::zeros((0, 0)),
            hn: Array2::zeros((0, 0)),
            hw: Array2::zeros((0, 0)),
            w_hh_t: Array2::zeros((0, 0)),
            dg: Array2::zeros((0, 0)),
            dg_hh: Array2::zeros((0, 0)),
            dh: Array2::zeros((0, 0)),
            dh_prev: Array2::zeros((0, 0)),
            dc: Array2::zeros((0, 0)),
            stats: UnitStats::default(),
            recurrent: RecurrentStats::default(),
            captured: (Array2::zeros((0, 0)), Array2::zeros((0, 0))),
            frozen: false,
            spectra: true,
        })
    }

    fn gate_names(&self) -> &'static [&'static str] {
        match self.cell {
            CellKind::Vanilla => &["hh"],
            CellKind::Lstm => &["i", "f", "g", "o"],
            CellKind::Gru => &["r", "z", "n"],
        }
    }

    /// Gate means and saturations, and the spectra of W_hh (probe steps only, and only when
    /// `spectra`: O(H^3); otherwise the spectra are left empty, an absent value).
    #[inline(always)]
    fn record_probe_stats(&mut self) {
        let h = self.units;
        let gates = match self.cell {
            CellKind::Vanilla => Vec::new(),
            _ => {
                let names = self.gate_names();
                let (sums, saturated) = gate_sums(flat(&self.gates), names.len(), h);
                let n = (self.gates.nrows() * h).max(1) as f64;
                names
                    .iter()
                    .enumerate()
                    .map(|(k, &gate)| GateStats { gate, mean: sums[k] / n, saturation: saturated[k] / n })
                    .collect()
            }
        };
        self.recurrent.gates = gates;
        self.recurrent.spectra.clear();
        if !self.spectra {
            return;
        }
        // Each gate's block of W_hh (G*H, H) is H contiguous rows.
        let w = flat(&self.params[W_HH].value);
        let spectra = self
            .gate_names()
            .iter()
            .enumerate()
            .map(|(k, &block)| {
                let (sigma_max, spectral_radius) = spectrum(w.get(k * h * h..(k + 1) * h * h).unwrap_or(&[]), h);
                Spectrum { block, sigma_max, spectral_radius }
            })
            .collect();
        self.recurrent.spectra = spectra;
    }
}

/// Per gate, the sum of the activations and the number of saturated ones (derivative below
/// [`SATURATION_FRACTION`] of its maximum, compared in the run's precision) over the rows of
/// `gates` blocks of `h` units each. Accumulated in the run's precision over 16 lanes per gate (a
/// loop that vectorises) and moved into f64 every 16 rows: each lane adds 16 x ceil(h / 16)
/// terms in [0, 1] (or [-1, 1] for the tanh gate), so in f32 a sum's error stays below ~1e-7 x
/// that count x the sum of magnitudes (~1e-5 of it at h = 128), and the counts are exact.
#[inline(always)]
fn gate_sums<T: Scalar>(values: &[T], gates: usize, h: usize) -> ([f64; 4], [f64; 4]) {
    const LANES: usize = 16;
    const ROWS: usize = 16;
    let (mut sums, mut counts) = ([0.0f64; 4], [0.0f64; 4]);
    if h == 0 || gates == 0 {
        return (sums, counts);
    }
    let one = T::one();
    let tanh_limit = T::of(SATURATION_FRACTION);
    let sigmoid_limit = T::of(0.25 * SATURATION_FRACTION);
    for rows in values.chunks(gates * h * ROWS) {
        for k in 0..gates.min(4) {
            // LSTM g and GRU n are tanh: f' = 1 - a^2; the other gates sigmoids: a (1 - a).
            let blocks = rows.chunks_exact(gates * h).map(|row| &row[k * h..(k + 1) * h]);
            let (s, c) = if k == 2 {
                lane_sums::<T, LANES>(blocks, |a| one - a * a < tanh_limit)
            } else {
                lane_sums::<T, LANES>(blocks, |a| a * (one - a) < sigmoid_limit)
            };
            sums[k] += s;
            counts[k] += c;
        }
    }
    (sums, counts)
}

/// `(sum a, count of low(a))` over `blocks`, in `L` lanes of `T` (registers, so that the loop
/// vectorises), returned in f64.
#[inline(always)]
fn lane_sums<'a, T: Scalar, const L: usize>(
    blocks: impl Iterator<Item = &'a [T]>,
    low: impl Fn(T) -> bool,
) -> (f64, f64) {
    let (zero, one) = (T::zero(), T::one());
    let (mut s, mut c) = ([zero; L], [zero; L]);
    for block in blocks {
        let chunks = block.chunks_exact(L);
        let tail = chunks.remainder();
        for v in chunks {
            for ((sl, cl), &a) in s.iter_mut().zip(c.iter_mut()).zip(v) {
                *sl += a;
                *cl += if low(a) { one } else { zero };
            }
        }
        for (i, &a) in tail.iter().enumerate() {
            s[i] += a;
            c[i] += if low(a) { one } else { zero };
        }
    }
    (s.iter().map(|v| v.f64()).sum(), c.iter().map(|v| v.f64()).sum())
}

// The per-row loops of the gated cells. Separate functions because their slice arguments are
// known not to alias (`&mut` parameters): inlined into one long function, loops over a dozen
// re-sliced buffers were not vectorised (the compiler would have needed a run-time overlap check
// per pair of them). Every slice is cut to the same length first, so the bounds checks fold away.

/// LSTM forward, one row: `c_t = f c_{t-1} + i g`, `h_t = o tanh(c_t)`, keeping `tanh(c_t)`.
#[inline(always)]
fn lstm_forward_row<T: Scalar>([gi, gf, gg, go]: [&[T]; 4], cp: &[T], ct: &mut [T], tct: &mut [T], ht: &mut [T]) {
    let h = ct.len();
    let (gi, gf, gg, go, cp) = (&gi[..h], &gf[..h], &gg[..h], &go[..h], &cp[..h]);
    let (tct, ht) = (&mut tct[..h], &mut ht[..h]);
    for j in 0..h {
        let c = gf[j] * cp[j] + gi[j] * gg[j];
        let tcv = tanh(c);
        (ct[j], tct[j], ht[j]) = (c, tcv, go[j] * tcv);
    }
}

/// GRU forward, one row, after r and z: `n = tanh(x_n + r (W_hn h + b_hn))` (in place of
/// `x_n`), `h_t = (1 - z) n + z h_{t-1}`.
#[inline(always)]
fn gru_forward_row<T: Scalar>(gn: &mut [T], ht: &mut [T], [gr, gz, hw_n, hp]: [&[T]; 4]) {
    let (h, one) = (gn.len(), T::one());
    let (ht, gr, gz, hw_n, hp) = (&mut ht[..h], &gr[..h], &gz[..h], &hw_n[..h], &hp[..h]);
    for j in 0..h {
        let nv = tanh(gn[j] + gr[j] * hw_n[j]);
        gn[j] = nv;
        ht[j] = (one - gz[j]) * nv + gz[j] * hp[j];
    }
}

/// LSTM backward, one row: the pre-activation gradients of the four gates from `dh_t` and the
/// cell gradient `dc` carried from step t+1, which it replaces with `dc_{t-1}` (zero where
/// truncated BPTT cuts the recurrent path).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // separate `&mut` parameters: each is known not to alias
fn lstm_backward_row<T: Scalar>(
    (gi, gf, gg, go): (&[T], &[T], &[T], &[T]),
    (cp, tct, dhr): (&[T], &[T], &[T]),
    di: &mut [T],
    df: &mut [T],
    dgg: &mut [T],
    d_o: &mut [T],
    dcr: &mut [T],
    recurrent_path: bool,
) {
    let (h, zero, one) = (dcr.len(), T::zero(), T::one());
    let (gi, gf, gg, go, cp, tct, dhr) = (&gi[..h], &gf[..h], &gg[..h], &go[..h], &cp[..h], &tct[..h], &dhr[..h]);
    let (di, df, dgg, d_o) = (&mut di[..h], &mut df[..h], &mut dgg[..h], &mut d_o[..h]);
    for j in 0..h {
        let (ig, fg, gv, og, tcv, dhj) = (gi[j], gf[j], gg[j], go[j], tct[j], dhr[j]);
        // dc_t = dc (from step t+1, already times f_{t+1}) + dh o (1 - tanh^2 c_t)
        let dcj = dcr[j] + dhj * og * (one - tcv * tcv);
        // d pre_i = dc g i(1-i), d pre_f = dc c_{t-1} f(1-f),
        // d pre_g = dc i (1-g^2), d pre_o = dh tanh(c_t) o(1-o)
        di[j] = dcj * gv * ig * (one - ig);
        df[j] = dcj * cp[j] * fg * (one - fg);
        dgg[j] = dcj * ig * (one - gv * gv);
        d_o[j] = dhj * tcv * og * (one - og);
        // dc_{t-1} = dc_t f_t
        dcr[j] = if recurrent_path { dcj * fg } else { zero };
    }
}

/// GRU backward, one row: the input-side pre-activation gradients `[dr dz dn]`, the recurrent
/// side `[dr dz dn r]` (n's `W_hn h` term sits inside r), and the direct path `dh_{t-1} = dh z`.
#[inline(always)]
fn gru_backward_row<T: Scalar>(
    [gr, gz, gn]: [&[T]; 3],
    [hp, hnr, dhr]: [&[T]; 3],
    [dr_, dz_, dn_]: [&mut [T]; 3],
    [hr_, hz_, hn_]: [&mut [T]; 3],
    dpr: &mut [T],
) {
    let (h, one) = (dpr.len(), T::one());
    let (gr, gz, gn, hp, hnr, dhr) = (&gr[..h], &gz[..h], &gn[..h], &hp[..h], &hnr[..h], &dhr[..h]);
    let (dr_, dz_, dn_) = (&mut dr_[..h], &mut dz_[..h], &mut dn_[..h]);
    let (hr_, hz_, hn_) = (&mut hr_[..h], &mut hz_[..h], &mut hn_[..h]);
    for j in 0..h {
        let (r, z, n, dhj) = (gr[j], gz[j], gn[j], dhr[j]);
        // dn = dh (1-z)(1-n^2), dz = dh (h_{t-1} - n) z(1-z), dr = dn (W_hn h + b_hn) r(1-r)
        let dn = dhj * (one - z) * (one - n * n);
        let dz = dhj * (hp[j] - n) * z * (one - z);
        let dr = dn * hnr[j] * r * (one - r);
        (dr_[j], dz_[j], dn_[j]) = (dr, dz, dn);
        (hr_[j], hz_[j], hn_[j]) = (dr, dz, dn * r);
        dpr[j] = dhj * z;
    }
}

/// How an out-of-memory error names the cell's large buffers (the network adds the layer).
struct BufferWords {
    /// `gates`: (T*B, G*H), kept for backpropagation.
    gates: &'static str,
    /// `hs`: ((T+1)*B, H).
    states: &'static str,
    /// `dg`: (T*B, G*H).
    gate_gradients: &'static str,
}

fn buffer_words(cell: CellKind) -> BufferWords {
    match cell {
        CellKind::Vanilla => BufferWords {
            gates: "the RNN pre-activations",
            states: "the RNN states",
            gate_gradients: "the RNN pre-activation gradients",
        },
        CellKind::Lstm => BufferWords {
            gates: "the LSTM gate activations",
            states: "the LSTM states",
            gate_gradients: "the LSTM gate gradients",
        },
        CellKind::Gru => BufferWords {
            gates: "the GRU gate activations",
            states: "the GRU states",
            gate_gradients: "the GRU gate gradients",
        },
    }
}

fn sigmoid<T: Scalar>(v: T) -> T {
    Activation::Sigmoid.value(v, T::zero())
}

/// The elements of a buffer, row-major. Every array this layer slices this way is its own,
/// made by `ensure_shape` or `Param` (standard layout), for which `as_slice` never fails.
fn flat<T: Scalar>(a: &Array2<T>) -> &[T] {
    a.as_slice().unwrap_or(&[])
}

/// See [`flat`].
fn flat_mut<T: Scalar>(a: &mut Array2<T>) -> &mut [T] {
    a.as_slice_mut().unwrap_or(&mut [])
}

/// `out[j] = sum_r m[r, j]` for a row-major `m` with `out.len()` columns.
#[inline(always)]
fn column_sums<T: Scalar>(m: &[T], out: &mut [T]) {
    out.fill(T::zero());
    if out.is_empty() {
        return;
    }
    for row in m.chunks_exact(out.len()) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// [`unit_stats`] of the vanilla cell's pre-activations `z` and outputs `y`, on views (no copies).
#[inline(always)]
fn view_unit_stats<T: Scalar>(act: Activation, z: ArrayView2<'_, T>, y: ArrayView2<'_, T>) -> UnitStats {
    let mut stats = UnitStats::default();
    if let Some(max) = act.max_derivative() {
        let threshold = max * SATURATION_FRACTION;
        let saturated = Zip::from(&z)
            .and(&y)
            .fold(0usize, |n, &z, &y| n + usize::from(act.derivative(z, y, T::zero()).f64() < threshold));
        stats.saturation = Some(saturated as f64 / z.len().max(1) as f64);
    }
    if act.can_die() {
        let dead = y.columns().into_iter().filter(|c| c.iter().all(|v| *v <= T::zero())).count();
        stats.dead_fraction = Some(dead as f64 / y.ncols().max(1) as f64);
    }
    stats
}

/// tanh. In `f32`, a rational approximation that vectorises (Eigen's `generic_fast_tanh_float`:
/// an odd degree-13 over an even degree-6 polynomial on [-9, 9], outside which tanh rounds to
/// +-1; error below 5e-7 absolute and relative, a few ulp, see the test); in `f64` (gradient checks, analysis) the exact one.
#[inline(always)]
fn tanh<T: Scalar>(x: T) -> T {
    if std::mem::size_of::<T>() != 4 {
        return x.tanh();
    }
    let c = T::of;
    let x = x.max(c(-9.0)).min(c(9.0));
    let x2 = x * x;
    let p = x2 * c(-2.760_768_477_423_55e-16) + c(2.000_187_904_824_77e-13);
    let p = x2 * p + c(-8.604_671_522_137_35e-11);
    let p = x2 * p + c(5.122_297_090_371_14e-8);
    let p = x2 * p + c(1.485_722_357_179_79e-5);
    let p = x2 * p + c(6.372_619_288_754_36e-4);
    let p = x2 * p + c(4.893_524_558_917_86e-3);
    let q = x2 * c(1.198_258_394_667_02e-6) + c(1.185_347_056_866_54e-4);
    let q = x2 * q + c(2.268_434_632_439e-3);
    let q = x2 * q + c(4.893_525_185_543_85e-3);
    x * p / q
}

impl<T: Scalar> Rnn<T> {
    /// [`Layer::forward`], inlined into `simd::vectorised`.
    #[inline(always)]
    fn forward_pass(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        let (h, gh) = (self.units, self.cell.gates() * self.units);
        let steps = ctx.seq_len.max(1);
        let b = x.nrows() / steps;
        self.steps = steps;
        self.batch = b;
        self.truncate = ctx.bptt_truncate;
        self.probe = ctx.probe;
        let rows = steps * b;
        let (cell, activation, frozen) = (self.cell, self.activation, self.frozen);
        let words = buffer_words(cell);
        ensure_shape(&mut self.gates, rows, gh, words.gates)?;
        ensure_shape(&mut self.hs, rows + b, h, words.states)?;
        if cell == CellKind::Lstm {
            ensure_shape(&mut self.cs, rows + b, h, "the LSTM cell states")?;
            ensure_shape(&mut self.tc, rows, h, "the LSTM tanh(c) values")?;
            self.cs.slice_mut(s![..b, ..]).fill(T::zero());
        }
        if cell == CellKind::Gru {
            ensure_shape(&mut self.hw, b, gh, "the GRU recurrent products")?;
            ensure_shape(&mut self.hn, rows, h, "the GRU candidate's recurrent terms")?;
        }
        self.hs.slice_mut(s![..b, ..]).fill(T::zero());
        let Rnn { params, gates, hs, cs, tc, hw, hn, captured, w_hh_t, .. } = self;
        let [w_ih, w_hh, b_ih, b_hh] = &params[..] else { return Ok(()) };
        ensure_shape(w_hh_t, h, gh, "the transposed recurrent weights")?;
        w_hh_t.assign(&w_hh.value.t());
        // gates = X W_ih^T + b_ih (+ b_hh, except for the GRU, whose b_hn sits inside r (.)):
        // the input side of every step in one GEMM; the biases in the same pass as its init.
        let bh = b_hh.value.row(0);
        // The bias row once, then copied into every row.
        let fold_hh = cell != CellKind::Gru;
        let all = flat_mut(gates);
        let (first, rest) = all.split_at_mut(gh.min(all.len()));
        for ((g, &a), &c) in first.iter_mut().zip(flat(&b_ih.value)).zip(flat(&b_hh.value)) {
            *g = if fold_hh { a + c } else { a };
        }
        if gh > 0 {
            for row in rest.chunks_exact_mut(gh) {
                row.copy_from_slice(first);
            }
        }
        let one = T::one();
        gemm(one, &x.slice(s![..rows, ..]), &w_ih.value.t(), one, gates);
        let cut = self.truncate.filter(|&k| k < steps).map(|k| steps - k);
        for t in 0..steps {
            let (r0, r1) = (t * b, (t + 1) * b);
            // At the truncation step the state comes from `captured` when frozen (the step's
            // own output rows in `hs` stay as computed: they still feed the loss).
            let held = cut == Some(t) && frozen && captured.0.nrows() == b;
            if cut == Some(t) && !held {
                ensure_shape(&mut captured.0, b, h, "the state at the truncation point")?;
                captured.0.assign(&hs.slice(s![r0..r1, ..]));
                if cell == CellKind::Lstm {
                    ensure_shape(&mut captured.1, b, h, "the cell state at the truncation point")?;
                    captured.1.assign(&cs.slice(s![r0..r1, ..]));
                }
            }
            {
                let h_prev = if held { captured.0.view() } else { hs.slice(s![r0..r1, ..]) };
                if cell == CellKind::Gru {
                    // hw = h_{t-1} W_hh^T + b_hh (kept apart: n needs W_hn h + b_hn alone).
                    for mut row in hw.rows_mut() {
                        row.assign(&bh);
                    }
                    gemm(one, &h_prev, &*w_hh_t, one, hw);
                } else {
                    // Pre-activations of step t, in place: gates_t += h_{t-1} W_hh^T.
                    gemm(one, &h_prev, &*w_hh_t, one, &mut gates.slice_mut(s![r0..r1, ..]));
                }
            }
            let g = &mut flat_mut(gates)[r0 * gh..r1 * gh];
            let (done, next) = flat_mut(hs).split_at_mut(r1 * h);
            let h_prev: &[T] = if held { flat(&captured.0) } else { &done[r0 * h..] };
            let h_t = &mut next[..b * h];
            match cell {
                CellKind::Vanilla => {
                    // g keeps the pre-activation z; h_t = f(z).
                    if activation == Activation::Tanh {
                        for (h, &z) in h_t.iter_mut().zip(g.iter()) {
                            *h = tanh(z);
                        }
                    } else {
                        for (h, &z) in h_t.iter_mut().zip(g.iter()) {
                            *h = activation.value(z, T::zero());
                        }
                    }
                }
                CellKind::Lstm => {
                    let (cdone, cnext) = flat_mut(cs).split_at_mut(r1 * h);
                    let c_prev: &[T] = if held { flat(&captured.1) } else { &cdone[r0 * h..] };
                    let c_t = &mut cnext[..b * h];
                    let tc_t = &mut flat_mut(tc)[r0 * h..r1 * h];
                    for i in 0..b {
                        let row = &mut g[i * gh..(i + 1) * gh];
                        // [i f g o] = [s s tanh s](pre), in place, a gate block at a time (plain
                        // slice loops, which vectorise).
                        for v in &mut row[..2 * h] {
                            *v = sigmoid(*v);
                        }
                        for v in &mut row[2 * h..3 * h] {
                            *v = tanh(*v);
                        }
                        for v in &mut row[3 * h..] {
                            *v = sigmoid(*v);
                        }
                        let (gi, rest) = row.split_at(h);
                        let (gf, rest) = rest.split_at(h);
                        let (gg, go) = rest.split_at(h);
                        let cp = &c_prev[i * h..(i + 1) * h];
                        let ct = &mut c_t[i * h..(i + 1) * h];
                        let tct = &mut tc_t[i * h..(i + 1) * h];
                        let ht = &mut h_t[i * h..(i + 1) * h];
                        // c_t = f c_{t-1} + i g,  h_t = o tanh(c_t); tanh(c_t) kept for backward.
                        lstm_forward_row([gi, gf, gg, go], cp, ct, tct, ht);
                    }
                }
                CellKind::Gru => {
                    let hw = flat(hw);
                    let hn_t = &mut flat_mut(hn)[r0 * h..r1 * h];
                    for i in 0..b {
                        let row = &mut g[i * gh..(i + 1) * gh];
                        let hwr = &hw[i * gh..(i + 1) * gh];
                        // r = s(x_r + hw_r), z = s(x_z + hw_z) over the contiguous [r z] block
                        // (slice loops, which vectorise).
                        for (v, &w) in row[..2 * h].iter_mut().zip(&hwr[..2 * h]) {
                            *v = sigmoid(*v + w);
                        }
                        let (rz, gn) = row.split_at_mut(2 * h);
                        let (gr, gz) = rz.split_at(h);
                        let hw_n = &hwr[2 * h..];
                        let hp = &h_prev[i * h..(i + 1) * h];
                        let hnr = &mut hn_t[i * h..(i + 1) * h];
                        let ht = &mut h_t[i * h..(i + 1) * h];
                        hnr.copy_from_slice(hw_n);
                        gru_forward_row(gn, ht, [gr, gz, hw_n, hp]);
                    }
                }
            }
        }
        let out = if self.return_sequences { self.hs.slice(s![b.., ..]) } else { self.hs.slice(s![rows.., ..]) };
        ensure_shape(y, out.nrows(), h, "the output")?;
        y.assign(&out);
        if ctx.probe {
            if cell == CellKind::Vanilla {
                self.stats = view_unit_stats(activation, self.gates.view(), self.hs.slice(s![b.., ..]));
            }
            self.record_probe_stats();
        }
        Ok(())
    }

    /// [`Layer::backward`], inlined into `simd::vectorised`.
    #[inline(always)]
    fn backward_pass(&mut self, x: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let (h, gh, steps, b) = (self.units, self.cell.gates() * self.units, self.steps, self.batch);
        let (cell, activation, probe) = (self.cell, self.activation, self.probe);
        let rows = steps * b;
        ensure_shape(&mut self.dg, rows, gh, buffer_words(cell).gate_gradients)?;
        ensure_shape(&mut self.dh, b, h, "the state gradients")?;
        ensure_shape(&mut self.dh_prev, b, h, "the state gradients")?;
        self.dh.fill(T::zero());
        if cell == CellKind::Lstm {
            ensure_shape(&mut self.dc, b, h, "the cell state gradients")?;
            self.dc.fill(T::zero());
        }
        if cell == CellKind::Gru {
            ensure_shape(&mut self.dg_hh, rows, gh, "the GRU recurrent gate gradients")?;
        }
        if probe {
            self.recurrent.timestep_grad_norm.clear();
            self.recurrent.timestep_grad_norm.resize(steps, 0.0);
        }
        let cut = self.truncate.filter(|&k| k < steps).map(|k| steps - k);
        let (zero, one) = (T::zero(), T::one());
        let Rnn { params, gates, hs, cs, tc, hn, dg, dg_hh, dh, dh_prev, dc, recurrent, return_sequences, .. } = self;
        let [_, w_hh, _, _] = &params[..] else { return Ok(()) };
        for t in (0..steps).rev() {
            let (r0, r1) = (t * b, (t + 1) * b);
            // dh_t = gradient from the future (dh) + from this step's output.
            if *return_sequences {
                *dh += &dy.slice(s![r0..r1, ..]);
            } else if t + 1 == steps {
                *dh += &dy.slice(s![..b, ..]);
            }
            if probe {
                recurrent.timestep_grad_norm[t] = sum_sq(flat(dh)).sqrt();
            }
            let recurrent_path = cut != Some(t);
            let g = &flat(gates)[r0 * gh..r1 * gh];
            let dgt = &mut flat_mut(dg)[r0 * gh..r1 * gh];
            let dhv = flat(dh);
            match cell {
                CellKind::Vanilla => {
                    // dz = dh_t f'(z), with f' from z and h_t = f(z).
                    let h_t = &flat(hs)[r1 * h..(r1 + b) * h];
                    if activation == Activation::Tanh {
                        for ((d, &a), &dhv) in dgt.iter_mut().zip(h_t).zip(dhv) {
                            *d = dhv * (one - a * a);
                        }
                    } else {
                        for (((d, &z), &a), &dhv) in dgt.iter_mut().zip(g).zip(h_t).zip(dhv) {
                            *d = dhv * activation.derivative(z, a, zero);
                        }
                    }
                }
                CellKind::Lstm => {
                    let c_prev = &flat(cs)[r0 * h..r1 * h];
                    let tc_t = &flat(tc)[r0 * h..r1 * h];
                    let dcv = flat_mut(dc);
                    for i in 0..b {
                        let row = &g[i * gh..(i + 1) * gh];
                        let (gi, gf, gg, go) = (&row[..h], &row[h..2 * h], &row[2 * h..3 * h], &row[3 * h..]);
                        let drow = &mut dgt[i * gh..(i + 1) * gh];
                        let (di, rest) = drow.split_at_mut(h);
                        let (df, rest) = rest.split_at_mut(h);
                        let (dgg, d_o) = rest.split_at_mut(h);
                        let (cp, tct) = (&c_prev[i * h..(i + 1) * h], &tc_t[i * h..(i + 1) * h]);
                        let (dhr, dcr) = (&dhv[i * h..(i + 1) * h], &mut dcv[i * h..(i + 1) * h]);
                        lstm_backward_row((gi, gf, gg, go), (cp, tct, dhr), di, df, dgg, d_o, dcr, recurrent_path);
                    }
                }
                CellKind::Gru => {
                    let h_prev = &flat(hs)[r0 * h..r1 * h];
                    let hn_t = &flat(hn)[r0 * h..r1 * h];
                    let dgh = &mut flat_mut(dg_hh)[r0 * gh..r1 * gh];
                    let dhp = flat_mut(dh_prev);
                    for i in 0..b {
                        let row = &g[i * gh..(i + 1) * gh];
                        let (gr, gz, gn) = (&row[..h], &row[h..2 * h], &row[2 * h..]);
                        let drow = &mut dgt[i * gh..(i + 1) * gh];
                        let (dr_, rest) = drow.split_at_mut(h);
                        let (dz_, dn_) = rest.split_at_mut(h);
                        let hrow = &mut dgh[i * gh..(i + 1) * gh];
                        let (hr_, rest) = hrow.split_at_mut(h);
                        let (hz_, hn_) = rest.split_at_mut(h);
                        let (hp, hnr) = (&h_prev[i * h..(i + 1) * h], &hn_t[i * h..(i + 1) * h]);
                        let (dhr, dpr) = (&dhv[i * h..(i + 1) * h], &mut dhp[i * h..(i + 1) * h]);
                        gru_backward_row([gr, gz, gn], [hp, hnr, dhr], [dr_, dz_, dn_], [hr_, hz_, hn_], dpr);
                    }
                }
            }
            if recurrent_path {
                // dh_{t-1} = dG_hh W_hh (+ the GRU's direct path already in dh_prev).
                let (src, beta) = if cell == CellKind::Gru { (&*dg_hh, one) } else { (&*dg, zero) };
                gemm(one, &src.slice(s![r0..r1, ..]), &w_hh.value, beta, dh_prev);
                std::mem::swap(dh, dh_prev);
            } else {
                dh.fill(zero);
            }
        }
        // Weight gradients for all steps at once.
        let xin = x.slice(s![..rows, ..]);
        let dgh: ArrayView2<'_, T> = if cell == CellKind::Gru { dg_hh.view() } else { dg.view() };
        let h_prevs = hs.slice(s![..rows, ..]);
        let [w_ih, w_hh, b_ih, b_hh] = &mut params[..] else { return Ok(()) };
        gemm(one, &dg.t(), &xin, zero, &mut w_ih.grad);
        gemm(one, &dgh.t(), &h_prevs, zero, &mut w_hh.grad);
        column_sums(flat(dg), flat_mut(&mut b_ih.grad));
        if cell == CellKind::Gru {
            column_sums(flat(dg_hh), flat_mut(&mut b_hh.grad));
        } else {
            // Vanilla and LSTM: both biases enter the same pre-activation.
            b_hh.grad.assign(&b_ih.grad);
        }
        if let Some(dx) = dx {
            ensure_shape(dx, rows, x.ncols(), "the input gradients")?;
            gemm(one, &*dg, &w_ih.value, zero, dx);
        }
        Ok(())
    }
}

impl<T: Scalar> Layer<T> for Rnn<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Rnn
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

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        // The gate loops are most of the step outside the products: AVX-512 where there is one.
        vectorised(
            #[inline(always)]
            || self.forward_pass(x, y, ctx),
        )
    }

    fn backward(&mut self, x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        vectorised(
            #[inline(always)]
            || self.backward_pass(x, dy, dx),
        )
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

    fn measure_spectra(&mut self, on: bool) {
        self.spectra = on;
    }

    /// [`SPECTRA_COST_PER_H3`] H^3 per gate block.
    fn spectra_cost(&self) -> f64 {
        (self.cell.gates() as f64) * SPECTRA_COST_PER_H3 * (self.units as f64).powi(3)
    }
}

#[cfg(test)]
mod tests {
    use super::{gate_sums, tanh};

    #[test]
    fn f32_tanh_is_within_a_few_ulp() {
        // Over [-12, 12] in steps of 1e-4: absolute error and error relative to |tanh x|.
        let (mut abs, mut rel) = (0.0f64, 0.0f64);
        for k in -120_000..=120_000 {
            let x = k as f64 * 1e-4;
            let exact = x.tanh();
            let err = (f64::from(tanh(x as f32)) - (x as f32 as f64).tanh()).abs();
            abs = abs.max(err);
            if exact.abs() > 1e-30 {
                rel = rel.max(err / exact.abs());
            }
        }
        assert!(abs < 5e-7 && rel < 5e-7, "abs {abs:e} rel {rel:e}");
        assert_eq!(tanh(0.0f32), 0.0);
        assert_eq!(tanh(1e-3f64), 1e-3f64.tanh());
    }

    /// Gate means and saturation counts in f32 lanes match a plain f64 count, for a width that
    /// is not a multiple of the lane count and more rows than one flush.
    #[test]
    fn gate_sums_match_a_plain_count() {
        let (gates, h, rows) = (4, 37, 45);
        let v: Vec<f32> = (0..gates * h * rows).map(|i| (((i * 7919) % 1000) as f32 / 1000.0).powi(3)).collect();
        let (sums, counts) = gate_sums(&v, gates, h);
        for k in 0..gates {
            let (mut s, mut c) = (0.0f64, 0.0f64);
            for r in 0..rows {
                for &a in &v[r * gates * h + k * h..r * gates * h + (k + 1) * h] {
                    s += f64::from(a);
                    let a = f64::from(a);
                    let low = if k == 2 { 1.0 - a * a < 0.01 } else { a * (1.0 - a) < 0.0025 };
                    c += f64::from(u8::from(low));
                }
            }
            assert!((sums[k] - s).abs() < 1e-5 * s, "gate {k}: {} vs {s}", sums[k]);
            assert_eq!(counts[k], c, "gate {k}");
        }
    }
}
