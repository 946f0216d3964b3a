//! Multi-head scaled dot-product self-attention: PyTorch's `nn.MultiheadAttention` with
//! `batch_first=True`, query = key = value = x, dropout 0, and an optional causal mask.
//!
//! Rows are time-major, as in the recurrent layers (`layers::rnn`): the input `x` is `(T*B, d)`
//! with step `t` of sample `b` in row `t*B + b` (`T = ctx.seq_len`), and so is the output. Heads
//! `H` split `d` into `dh = d / H` columns each. Parameters are PyTorch's, by `state_dict` name:
//! `in_proj_weight (3d, d)` (the q, k, v projections stacked), `in_proj_bias (3d)`,
//! `out_proj.weight (d, d)`, `out_proj.bias (d)`.
//!
//! Each op, forward and backward side by side (per sample `b` and head `h` for the middle
//! three; `c = 1/sqrt(dh)`):
//! ```text
//! in proj:  QKV = X W_in^T + b_in      X: (T*B, d)  W_in: (3d, d)  QKV: (T*B, 3d)
//!           dW_in = dQKV^T X,  db_in = sum_rows dQKV,  dX = dQKV W_in
//! scores:   S = c Q K^T                Q, K: (T, dh)  S: (T, T)
//!           dQ = c dS K,  dK = c dS^T Q
//! softmax:  P_ij = exp(S_ij - m_i) / sum_{k in row} exp(S_ik - m_i),  m_i = max_j S_ij,
//!           j over 0..T, or 0..=i with the causal mask (P_ij = 0 for j > i)
//!           dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)   (0 where masked, since P_ij = 0 there)
//! mix:      O = P V                    V: (T, dh)  O: (T, dh)
//!           dP = dO V^T,  dV = P^T dO
//! out proj: Y = C W_out^T + b_out      C: (T*B, d), the heads' O side by side  W_out: (d, d)
//!           dW_out = dY^T C,  db_out = sum_rows dY,  dC = dY W_out
//! ```
//!
//! The per-(sample, head) products read Q, K, V in place in `QKV` and write O in place in `C`;
//! backward reads dO in place in `dC` and writes dQ, dK, dV in place in `dQKV`: sample `b`, head
//! `h` is the column block
//! `h*dh..(h+1)*dh` (+ d for K, + 2d for V) of every `B`-th row starting at row `b`, a
//! [`Strided`] block, so nothing is copied per head. The attention weights `P` are kept as
//! `(B*H*T, T)`, `(b, h, i)` in row `(b*H + h)*T + i` (for backward and for the probes). Every
//! buffer is resized only when the batch shape changes.
//!
//! Init as PyTorch: `in_proj_weight` Xavier-uniform over the stacked `(3d, d)` matrix,
//! `out_proj.weight` U(±1/sqrt(d)) (`nn.Linear`'s default, kaiming-uniform with a = sqrt(5)),
//! both biases 0.
//!
//! Probes ([`Attention::attention_entropy`], [`Attention::max_logits`]) read the last forward pass;
//! both are computed with the softmax, on every forward pass (one logarithm per row).

use ndarray::{s, Array2, ArrayView2};

use super::{column_sums, ensure_shape, explicit_or, Ctx, Layer, LayerKind, Param};
use crate::engine::config::{AttentionConfig, Init};
use crate::engine::linalg::{gemm, gemm_strided, Strided, StridedMut};
use crate::engine::rng::Rng;
use crate::engine::{EngineError, Result, Scalar};

const IN_W: usize = 0;
const IN_B: usize = 1;
const OUT_W: usize = 2;
const OUT_B: usize = 3;

/// See the module doc.
pub struct Attention<T> {
    d: usize,
    heads: usize,
    causal: bool,
    params: Vec<Param<T>>,
    steps: usize,
    batch: usize,
    /// `X W_in^T + b_in`, (T*B, 3d).
    qkv: Array2<T>,
    /// Attention weights, (B*H*T, T).
    probs: Array2<T>,
    /// The heads' outputs side by side, (T*B, d); in backward, `dC`.
    concat: Array2<T>,
    /// dP, then dS, of one (sample, head), (T, T).
    dp: Array2<T>,
    /// dQKV, (T*B, 3d).
    dqkv: Array2<T>,
    /// Largest unmasked logit `S_ij` per head on the last forward pass.
    max_logits: Vec<f64>,
    /// Per head, the sum over samples and query positions of the attention weights' entropy on
    /// the last forward pass (computed with the softmax, see [`softmax_rows_entropy`]).
    entropy_sums: Vec<f64>,
}

/// Shape of a pass: steps, batch, head width.
#[derive(Clone, Copy)]
struct Dims {
    steps: usize,
    batch: usize,
    dh: usize,
}

impl Dims {
    /// Sample `b`, head `h`'s `(T, dh)` block of the time-major buffer `wide` with `cols`
    /// columns, starting at column `off + h*dh` (`off`: 0 for Q, d for K, 2d for V).
    fn head<'a, T: Scalar>(&self, wide: &'a [T], cols: usize, off: usize, b: usize, h: usize) -> Strided<'a, T> {
        Strided::new(wide, b * cols + off + h * self.dh, self.steps, self.dh, self.batch * cols)
    }

    /// [`Dims::head`], to be written.
    fn head_mut<'a, T: Scalar>(
        &self,
        wide: &'a mut [T],
        cols: usize,
        off: usize,
        b: usize,
        h: usize,
    ) -> StridedMut<'a, T> {
        StridedMut::new(wide, b * cols + off + h * self.dh, self.steps, self.dh, self.batch * cols)
    }

    /// The `(T, T)` matrix of (sample, head) `bh = b*H + h` in `(B*H*T, T)` rows.
    fn square<'a, T: Scalar>(&self, rows: &'a [T], bh: usize) -> Strided<'a, T> {
        let t = self.steps;
        Strided::new(rows, bh * t * t, t, t, t)
    }
}

/// The elements of a buffer this layer made (standard layout, see `ensure_shape`), row-major.
fn flat<T: Scalar>(a: &Array2<T>) -> &[T] {
    a.as_slice().unwrap_or(&[])
}

/// See [`flat`].
fn flat_mut<T: Scalar>(a: &mut Array2<T>) -> &mut [T] {
    a.as_slice_mut().unwrap_or(&mut [])
}

/// Row-wise softmax of the logits in `rows` (T columns each, query `i` = row index) in place,
/// over the first `i + 1` entries when `causal` (the rest set to 0), else over all. Subtracts the
/// row maximum first. Returns the largest logit it saw (unmasked entries only) and the sum over
/// the rows of their entropies `-sum_j P_ij ln P_ij`, from the same pass: with `v_j = S_ij - m_i`
/// and `Z = sum_j e^v_j`, `ln P_ij = v_j - ln Z`, so the entropy is `ln Z - (sum_j e^v_j v_j) / Z`
/// (two non-negative terms: no cancellation), one logarithm per row instead of one per entry.
fn softmax_rows_entropy<T: Scalar>(rows: &mut [T], steps: usize, causal: bool) -> (f64, f64) {
    const L: usize = 8;
    let mut largest = f64::NEG_INFINITY;
    let mut entropy = 0.0f64;
    for (i, row) in rows.chunks_exact_mut(steps.max(1)).enumerate() {
        let lim = if causal { (i + 1).min(steps) } else { steps };
        let (live, masked) = row.split_at_mut(lim);
        // The maximum (NaN if any entry is NaN), over L lanes so that the loop vectorises (the
        // lanes as fixed-size arrays: with zipped iterators the compiler kept them scalar).
        let pick = |m: T, v: T| if v > m || v.is_nan() { v } else { m };
        let mut lanes = [T::neg_infinity(); L];
        let (chunks, tail) = live.as_chunks::<L>();
        for c in chunks {
            for l in 0..L {
                lanes[l] = pick(lanes[l], c[l]);
            }
        }
        let m = tail.iter().chain(lanes.iter()).fold(T::neg_infinity(), |m, &v| pick(m, v));
        largest = largest.max(m.f64());
        let (mut sum, mut weighted) = ([T::zero(); L], [T::zero(); L]);
        let (chunks, tail) = live.as_chunks_mut::<L>();
        for c in chunks {
            for l in 0..L {
                let shifted = c[l] - m;
                let e = shifted.exp_branchless();
                sum[l] += e;
                weighted[l] += e * shifted;
                c[l] = e;
            }
        }
        for (j, v) in tail.iter_mut().enumerate() {
            let shifted = *v - m;
            let e = shifted.exp_branchless();
            sum[j] += e;
            weighted[j] += e * shifted;
            *v = e;
        }
        let z = sum.iter().fold(T::zero(), |a, &b| a + b);
        let ev = weighted.iter().fold(T::zero(), |a, &b| a + b);
        entropy += z.f64().ln() - ev.f64() / z.f64();
        let inv = T::one() / z;
        live.iter_mut().for_each(|v| *v *= inv);
        masked.fill(T::zero());
    }
    (largest, entropy)
}

/// [`softmax_rows_entropy`] without the entropy.
#[cfg(test)]
fn softmax_rows<T: Scalar>(rows: &mut [T], steps: usize, causal: bool) -> f64 {
    softmax_rows_entropy(rows, steps, causal).0
}

/// `dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)`, in place of `dP`, row by row.
fn softmax_backward_rows<T: Scalar>(p: &[T], dp: &mut [T], steps: usize) {
    const L: usize = 8;
    let n = steps.max(1);
    for (pr, dr) in p.chunks_exact(n).zip(dp.chunks_exact_mut(n)) {
        let mut lanes = [T::zero(); L];
        let ((pc, pt), (dc, dt)) = (pr.as_chunks::<L>(), dr.as_chunks::<L>());
        let tail = pt.iter().zip(dt).fold(T::zero(), |acc, (&p, &g)| acc + p * g);
        for (a, b) in pc.iter().zip(dc) {
            for l in 0..L {
                lanes[l] += a[l] * b[l];
            }
        }
        let dot = lanes.iter().fold(tail, |acc, &v| acc + v);
        for (g, &p) in dr.iter_mut().zip(pr) {
            *g = p * (*g - dot);
        }
    }
}

impl<T: Scalar> Attention<T> {
    /// Builds the layer for width `d` (its input and output width).
    pub fn new(config: &AttentionConfig, d: usize, name: &str, rng: &mut Rng) -> Result<Self> {
        let heads = config.heads;
        if d == 0 || heads == 0 || !d.is_multiple_of(heads) {
            return Err(EngineError::layer(
                name,
                format!("needs a width divisible by the number of heads, got width {d} and {heads} heads"),
            ));
        }
        // Drawn even when explicit values replace them (as `Dense` does), in PyTorch's order of
        // `_reset_parameters`: in_proj first.
        let w_in = Init::XavierUniform { gain: 1.0 }.matrix(3 * d, d, rng);
        let w_out = Init::Uniform { limit: 1.0 / (d as f64).sqrt() }.matrix(d, d, rng);
        let p = &config.params;
        let w_in = explicit_or(p, "in_proj_weight", 3 * d * d, name, || w_in.iter().copied().collect())?;
        let b_in = explicit_or(p, "in_proj_bias", 3 * d, name, || vec![0.0; 3 * d])?;
        let w_out = explicit_or(p, "out_proj.weight", d * d, name, || w_out.iter().copied().collect())?;
        let b_out = explicit_or(p, "out_proj.bias", d, name, || vec![0.0; d])?;
        let shaped = |v: Vec<f64>, rows: usize| {
            Array2::from_shape_vec((rows, d), v)
                .map_err(|e| EngineError::layer(name, format!("weight of {rows} x {d}: {e}")))
        };
        let empty = || Array2::zeros((0, 0));
        Ok(Attention {
            d,
            heads,
            causal: config.causal,
            params: vec![
                Param::matrix("in_proj_weight", shaped(w_in, 3 * d)?),
                Param::vector("in_proj_bias", b_in),
                Param::matrix("out_proj.weight", shaped(w_out, d)?),
                Param::vector("out_proj.bias", b_out),
            ],
            steps: 0,
            batch: 0,
            qkv: empty(),
            probs: empty(),
            concat: empty(),
            dp: empty(),
            dqkv: empty(),
            max_logits: Vec::new(),
            entropy_sums: Vec::new(),
        })
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// True when the causal mask is on.
    pub fn causal(&self) -> bool {
        self.causal
    }

    fn dims(&self) -> Dims {
        Dims { steps: self.steps, batch: self.batch, dh: self.d / self.heads }
    }

    /// The attention weights `P` (T, T) of sample `b`, head `h` on the last forward pass (row `i`:
    /// query position `i`); `None` out of range or before any forward.
    pub fn attention_weights(&self, b: usize, h: usize) -> Option<ArrayView2<'_, T>> {
        if b >= self.batch || h >= self.heads || self.probs.nrows() != self.batch * self.heads * self.steps {
            return None;
        }
        let r0 = (b * self.heads + h) * self.steps;
        Some(self.probs.slice(s![r0..r0 + self.steps, ..]))
    }

    /// Per head, the entropy `-sum_j P_ij ln P_ij` (0 ln 0 = 0) of the last forward pass's
    /// attention weights, averaged over samples and query positions `i`; empty before any
    /// forward. Uniform attention over T positions gives ln T.
    pub fn attention_entropy(&self) -> Vec<f64> {
        let (t, b, heads) = (self.steps, self.batch, self.heads);
        if t == 0 || b == 0 || self.probs.nrows() != b * heads * t || self.entropy_sums.len() != heads {
            return Vec::new();
        }
        self.entropy_sums.iter().map(|e| e / (b * t) as f64).collect()
    }

    /// Per head, the largest attention logit `S_ij = q_i . k_j / sqrt(dh)` (unmasked entries,
    /// before the softmax) of the last forward pass; empty before any forward.
    pub fn max_logits(&self) -> &[f64] {
        &self.max_logits
    }

    /// The largest of [`Attention::max_logits`] (-inf before any forward).
    pub fn max_logit(&self) -> f64 {
        self.max_logits.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}

impl<T: Scalar> Layer<T> for Attention<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Attention
    }

    fn as_attention(&self) -> Option<&Attention<T>> {
        Some(self)
    }

    fn out_dim(&self) -> usize {
        self.d
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        let (d, heads) = (self.d, self.heads);
        let steps = ctx.seq_len.max(1);
        if x.ncols() != d || !x.nrows().is_multiple_of(steps) {
            return Err(EngineError::Shape {
                layer: "attention".to_string(),
                expected: format!("(T*B, {d}) with T = {steps}"),
                got: format!("({}, {})", x.nrows(), x.ncols()),
            });
        }
        self.steps = steps;
        self.batch = x.nrows() / steps;
        let n = self.dims();
        let (rows, packed) = (steps * n.batch, n.batch * heads * steps);
        ensure_shape(&mut self.qkv, rows, 3 * d, "the attention projections")?;
        ensure_shape(&mut self.probs, packed, steps, "the attention weights")?;
        ensure_shape(&mut self.concat, rows, d, "the attention head outputs")?;
        ensure_shape(y, rows, d, "the output")?;
        let Attention { params, qkv, probs, concat, max_logits, entropy_sums, causal, .. } = self;
        let one = T::one();

        // QKV = X W_in^T + b_in: the bias row in every row, then the product accumulated.
        for mut row in qkv.rows_mut() {
            row.assign(&params[IN_B].value.row(0));
        }
        gemm(one, x, &params[IN_W].value.t(), one, qkv);

        let scale = T::of(1.0 / (n.dh as f64).sqrt());
        max_logits.clear();
        max_logits.resize(heads, f64::NEG_INFINITY);
        entropy_sums.clear();
        entropy_sums.resize(heads, 0.0);
        let qkv = flat(qkv);
        for bh in 0..n.batch * heads {
            let (b, h) = (bh / heads, bh % heads);
            let (r0, r1) = (bh * steps * steps, (bh + 1) * steps * steps);
            // S = c Q K^T (T, T), into P's rows.
            let (q, k) = (n.head(qkv, 3 * d, 0, b, h), n.head(qkv, 3 * d, d, b, h));
            gemm_strided(scale, q, k.t(), false, StridedMut::new(&mut flat_mut(probs)[r0..r1], 0, steps, steps, steps));
            // P = softmax(S) per row, masked under the causal mask.
            let (largest, entropy) = softmax_rows_entropy(&mut flat_mut(probs)[r0..r1], steps, *causal);
            max_logits[h] = max_logits[h].max(largest);
            entropy_sums[h] += entropy;
            // O = P V (T, dh), into the head's columns of C.
            let v = n.head(qkv, 3 * d, 2 * d, b, h);
            gemm_strided(one, n.square(flat(probs), bh), v, false, n.head_mut(flat_mut(concat), d, 0, b, h));
        }

        // Y = C W_out^T + b_out.
        for mut row in y.rows_mut() {
            row.assign(&params[OUT_B].value.row(0));
        }
        gemm(one, &*concat, &params[OUT_W].value.t(), one, y);
        Ok(())
    }

    fn backward(&mut self, x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let (d, heads, steps) = (self.d, self.heads, self.steps);
        let n = self.dims();
        let rows = steps * n.batch;
        ensure_shape(&mut self.dp, steps, steps, "the attention weight gradients")?;
        ensure_shape(&mut self.dqkv, rows, 3 * d, "the attention projection gradients")?;
        let Attention { params, qkv, probs, concat, dp, dqkv, .. } = self;
        let (zero, one) = (T::zero(), T::one());
        let [w_in, b_in, w_out, b_out] = &mut params[..] else { return Ok(()) };

        // Y = C W_out^T + b_out: dW_out = dY^T C, db_out = sum_rows dY, then dC = dY W_out
        // (into `concat`, whose forward values are no longer needed).
        gemm(one, &dy.t(), &*concat, zero, &mut w_out.grad);
        column_sums(dy, &mut b_out.grad);
        gemm(one, dy, &w_out.value, zero, concat);

        let scale = T::of(1.0 / (n.dh as f64).sqrt());
        let (qkv, dc) = (flat(qkv), flat(concat));
        for bh in 0..n.batch * heads {
            let (b, h) = (bh / heads, bh % heads);
            let (p_bh, do_bh) = (n.square(flat(probs), bh), n.head(dc, d, 0, b, h));
            let (q, k, v) = (n.head(qkv, 3 * d, 0, b, h), n.head(qkv, 3 * d, d, b, h), n.head(qkv, 3 * d, 2 * d, b, h));
            // O = P V: dP = dO V^T (T, T), dV = P^T dO (T, dh).
            gemm_strided(one, do_bh, v.t(), false, StridedMut::new(flat_mut(dp), 0, steps, steps, steps));
            gemm_strided(one, p_bh.t(), do_bh, false, n.head_mut(flat_mut(dqkv), 3 * d, 2 * d, b, h));
            // P = softmax(S): dS = P (dP - rowsum(P dP)), in place of dP.
            let r0 = bh * steps * steps;
            softmax_backward_rows(&flat(probs)[r0..r0 + steps * steps], flat_mut(dp), steps);
            // S = c Q K^T: dQ = c dS K, dK = c dS^T Q.
            let ds = Strided::new(flat(dp), 0, steps, steps, steps);
            gemm_strided(scale, ds, k, false, n.head_mut(flat_mut(dqkv), 3 * d, 0, b, h));
            gemm_strided(scale, ds.t(), q, false, n.head_mut(flat_mut(dqkv), 3 * d, d, b, h));
        }

        // QKV = X W_in^T + b_in: dW_in = dQKV^T X, db_in = sum_rows dQKV, dX = dQKV W_in.
        gemm(one, &dqkv.t(), x, zero, &mut w_in.grad);
        column_sums(dqkv, &mut b_in.grad);
        if let Some(dx) = dx {
            ensure_shape(dx, rows, d, "the input gradients")?;
            gemm(one, &*dqkv, &w_in.value, zero, dx);
        }
        Ok(())
    }

    fn params(&self) -> &[Param<T>] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)] // a test may panic on a broken expectation
mod tests {
    use super::*;
    use crate::engine::config::ExplicitParams;
    use crate::engine::rng::{rng, Stream};
    use rand::Rng as _;

    fn layer(d: usize, heads: usize, causal: bool, seed: u64) -> Attention<f64> {
        let config = AttentionConfig { heads, causal, params: ExplicitParams::new() };
        let mut layer = Attention::new(&config, d, "attention_0", &mut rng(seed, Stream::Init)).expect("valid");
        // Nonzero biases, so that their gradients (and their paths) are exercised.
        let mut r = rng(seed, Stream::Data);
        for i in [IN_B, OUT_B] {
            layer.params[i].value.mapv_inplace(|_| r.random_range(-0.5..0.5));
        }
        layer
    }

    fn run(layer: &mut Attention<f64>, x: &Array2<f64>, steps: usize) -> Array2<f64> {
        let mut r = rng(0, Stream::Dropout);
        let mut ctx =
            Ctx { training: true, dropout: false, probe: false, rng: &mut r, seq_len: steps, bptt_truncate: None };
        let mut y = Array2::zeros((0, 0));
        layer.forward(x, &mut y, &mut ctx).expect("forward");
        y
    }

    /// L = sum(Y * R) + 0.5 sum(Y^2): a loss with a gradient that depends on Y.
    fn loss(y: &Array2<f64>, r: &Array2<f64>) -> f64 {
        y.iter().zip(r.iter()).map(|(&y, &r)| y * r + 0.5 * y * y).sum()
    }

    fn stencil(mut f: impl FnMut(f64) -> f64, h: f64) -> f64 {
        (-f(2.0 * h) + 8.0 * f(h) - 8.0 * f(-h) + f(-2.0 * h)) / (12.0 * h)
    }

    /// Worst relative error (with `gradcheck`'s floor) of the analytic input and parameter
    /// gradients against five-point central differences, and where it occurred.
    fn worst_error(d: usize, heads: usize, causal: bool, steps: usize, batch: usize) -> (f64, String, usize) {
        let mut r = rng(11, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-1.5..1.5));
        let target = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-1.0..1.0));
        let mut net = layer(d, heads, causal, 3);
        // Larger weights than the init, so the attention is far from uniform.
        net.params[IN_W].value.mapv_inplace(|v| 2.5 * v);
        let y = run(&mut net, &x, steps);
        let base = loss(&y, &target);
        let dy = &y + &target;
        let mut dx = Array2::zeros((0, 0));
        net.backward(&x, &y, &dy, Some(&mut dx)).expect("backward");
        let grads: Vec<Array2<f64>> = net.params.iter().map(|p| p.grad.clone()).collect();
        let scale = grads.iter().flat_map(|g| g.iter()).chain(dx.iter()).fold(0.0f64, |m, v| m.max(v.abs()));
        let h = 1e-4;
        let noise = f64::EPSILON * base.abs().max(1.0) / h;
        let floor = (1e-5 * scale).max(1e6 * noise).max(1e-12);
        let (mut worst, mut at, mut checked) = (0.0f64, String::new(), 0);
        let mut record = |a: f64, num: f64, name: String| {
            let e = (a - num).abs() / a.abs().max(num.abs()).max(floor);
            checked += 1;
            if e > worst || !e.is_finite() {
                worst = if e.is_finite() { e } else { f64::INFINITY };
                at = format!("{name}: analytic {a:e}, numeric {num:e}");
            }
        };
        for (pi, grad) in grads.iter().enumerate().take(4) {
            for idx in 0..grad.len() {
                let numeric = stencil(
                    |delta| {
                        let mut probe = layer(d, heads, causal, 3);
                        probe.params.iter_mut().zip(&net.params).for_each(|(p, q)| p.value.assign(&q.value));
                        *probe.params[pi].value.iter_mut().nth(idx).unwrap() += delta;
                        loss(&run(&mut probe, &x, steps), &target)
                    },
                    h,
                );
                let name = net.params[pi].name;
                record(*grad.iter().nth(idx).unwrap(), numeric, format!("{name}[{idx}]"));
            }
        }
        for idx in 0..x.len() {
            let (i, j) = (idx / d, idx % d);
            let numeric = stencil(
                |delta| {
                    let mut xx = x.clone();
                    xx[(i, j)] += delta;
                    loss(&run(&mut net, &xx, steps), &target)
                },
                h,
            );
            record(dx[(i, j)], numeric, format!("input[{idx}]"));
        }
        (worst, at, checked)
    }

    /// Input and all four parameters, with and without the causal mask, 1 and 4 heads: the
    /// analytic gradients agree with central differences to a relative error below 1e-6.
    #[test]
    fn gradients_match_finite_differences_for_every_parameter_and_mask() {
        for heads in [1, 4] {
            for causal in [false, true] {
                let (worst, at, checked) = worst_error(8, heads, causal, 5, 3);
                assert!(worst < 1e-6, "heads {heads} causal {causal}: {worst:e} at {at}");
                // 3d*d + 3d + d*d + d parameters and T*B*d inputs.
                assert_eq!(checked, 3 * 64 + 24 + 64 + 8 + 15 * 8);
            }
        }
    }

    /// The edges of the per-head blocks: one step of one sample (T = B = 1), one sample of three
    /// steps, and heads of width 1 (heads = d), with and without the mask.
    #[test]
    fn gradients_match_finite_differences_at_one_step_one_sample_and_unit_heads() {
        for (d, heads, steps, batch) in [(4, 2, 1, 1), (4, 4, 3, 1), (4, 4, 3, 2), (6, 6, 1, 3)] {
            for causal in [false, true] {
                let (worst, at, checked) = worst_error(d, heads, causal, steps, batch);
                assert!(worst < 1e-6, "d {d} heads {heads} T {steps} B {batch} causal {causal}: {worst:e} at {at}");
                assert_eq!(checked, 4 * d * d + 4 * d + steps * batch * d);
            }
        }
    }

    /// With the mask, changing the input at step s changes no output before s; without it, it
    /// changes every output of that sample (and none of the other samples).
    #[test]
    fn causal_mask_keeps_earlier_outputs_independent_of_later_inputs() {
        let (d, steps, batch) = (8, 6, 2);
        let mut r = rng(5, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-1.0..1.0));
        for causal in [true, false] {
            let mut net = layer(d, 2, causal, 7);
            let y = run(&mut net, &x, steps);
            let changed = 3;
            let mut x2 = x.clone();
            // Sample 1 at step `changed`: row changed*B + 1.
            x2.row_mut(changed * batch + 1).mapv_inplace(|v| v + 0.7);
            let y2 = run(&mut net, &x2, steps);
            for t in 0..steps {
                for b in 0..batch {
                    let row = t * batch + b;
                    let diff = (&y.row(row) - &y2.row(row)).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    let should_change = b == 1 && (!causal || t >= changed);
                    if should_change {
                        assert!(diff > 1e-6, "causal {causal}: step {t} sample {b} did not change");
                    } else {
                        assert_eq!(diff, 0.0, "causal {causal}: step {t} sample {b} changed by {diff:e}");
                    }
                }
            }
        }
    }

    /// Every row of P is a distribution (non-negative, sums to 1); under the mask the entries
    /// after the query position are exactly 0; in f32 too.
    #[test]
    fn softmax_rows_sum_to_one_and_masked_entries_are_zero() {
        let (d, steps, batch, heads) = (8, 7, 3, 4);
        let mut r = rng(9, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-3.0..3.0));
        for causal in [false, true] {
            let mut net = layer(d, heads, causal, 1);
            net.params[IN_W].value.mapv_inplace(|v| 4.0 * v);
            run(&mut net, &x, steps);
            let mut net32 = Attention::<f32>::new(
                &AttentionConfig { heads, causal, params: ExplicitParams::new() },
                d,
                "attention_0",
                &mut rng(1, Stream::Init),
            )
            .expect("valid");
            let mut rr = rng(0, Stream::Dropout);
            let mut ctx =
                Ctx { training: true, dropout: false, probe: false, rng: &mut rr, seq_len: steps, bptt_truncate: None };
            net32.forward(&x.mapv(|v| v as f32), &mut Array2::zeros((0, 0)), &mut ctx).expect("forward");
            for b in 0..batch {
                for h in 0..heads {
                    let p = net.attention_weights(b, h).expect("in range");
                    let p32 = net32.attention_weights(b, h).expect("in range");
                    for i in 0..steps {
                        assert!((p.row(i).sum() - 1.0).abs() < 1e-12, "row {i}: {}", p.row(i).sum());
                        assert!((p32.row(i).sum() - 1.0).abs() < 1e-5);
                        for j in 0..steps {
                            assert!(p[(i, j)] >= 0.0);
                            if causal && j > i {
                                assert_eq!(p[(i, j)], 0.0);
                            }
                        }
                    }
                }
            }
            assert!(net.attention_weights(batch, 0).is_none() && net.attention_weights(0, heads).is_none());
        }
    }

    /// Large logits (1e4 apart) do not overflow: the row maximum is subtracted first.
    #[test]
    fn softmax_is_stable_for_large_logits() {
        let mut row = vec![1e4f32, 0.0, -1e4, 1e4 - 1.0];
        let largest = softmax_rows(&mut row[..], 4, false);
        assert_eq!(largest, 1e4);
        assert!(row.iter().all(|v| v.is_finite()));
        let e = (-1.0f64).exp();
        assert!((f64::from(row[0]) - 1.0 / (1.0 + e)).abs() < 1e-6, "{row:?}");
        assert!((f64::from(row[3]) - e / (1.0 + e)).abs() < 1e-6);
    }

    /// With zero query weights and biases every logit is 0, so attention is uniform: the entropy
    /// of every head is ln T, and the largest logit is 0; under the causal mask row i is uniform
    /// over i + 1 positions, so the mean entropy is the mean of ln(i + 1).
    #[test]
    fn entropy_of_uniform_attention_is_ln_t() {
        let (d, steps, batch, heads) = (8, 6, 3, 4);
        let mut r = rng(4, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-1.0..1.0));
        for causal in [false, true] {
            let mut net = layer(d, heads, causal, 2);
            net.params[IN_W].value.slice_mut(s![..d, ..]).fill(0.0);
            net.params[IN_B].value.slice_mut(s![.., ..d]).fill(0.0);
            assert!(net.attention_entropy().is_empty() && net.max_logits().is_empty());
            run(&mut net, &x, steps);
            let want = if causal {
                (1..=steps).map(|n| (n as f64).ln()).sum::<f64>() / steps as f64
            } else {
                (steps as f64).ln()
            };
            let entropy = net.attention_entropy();
            assert_eq!(entropy.len(), heads);
            for e in entropy {
                assert!((e - want).abs() < 1e-12, "causal {causal}: {e} vs {want}");
            }
            assert_eq!(net.max_logits(), &[0.0; 4]);
        }
        // Non-uniform attention has lower entropy and a positive largest logit.
        let mut net = layer(d, heads, false, 2);
        net.params[IN_W].value.mapv_inplace(|v| 5.0 * v);
        run(&mut net, &x, steps);
        assert!(net.attention_entropy().iter().all(|&e| e < (steps as f64).ln() - 1e-3));
        assert!(net.max_logit() > 0.0);
    }

    /// The largest logit per head equals the maximum of c q_i . k_j computed directly.
    #[test]
    fn max_logit_matches_a_direct_computation() {
        let (d, steps, batch, heads) = (8, 4, 2, 2);
        let dh = d / heads;
        let mut r = rng(8, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-1.0..1.0));
        let mut net = layer(d, heads, true, 6);
        run(&mut net, &x, steps);
        let w = net.params[IN_W].value.clone();
        let bias = net.params[IN_B].value.row(0).to_owned();
        let qkv = x.dot(&w.t()) + &bias;
        for h in 0..heads {
            let mut want = f64::NEG_INFINITY;
            for b in 0..batch {
                for i in 0..steps {
                    for j in 0..=i {
                        let qi = qkv.slice(s![i * batch + b, h * dh..(h + 1) * dh]);
                        let kj = qkv.slice(s![j * batch + b, d + h * dh..d + (h + 1) * dh]);
                        want = want.max(qi.dot(&kj) / (dh as f64).sqrt());
                    }
                }
            }
            assert!((net.max_logits()[h] - want).abs() < 1e-12, "head {h}: {} vs {want}", net.max_logits()[h]);
        }
    }

    /// PyTorch's init: in_proj_weight within the Xavier bound sqrt(6 / 4d) with about its
    /// variance (bound^2 / 3), out_proj.weight within 1/sqrt(d), both biases 0; names and shapes
    /// as `nn.MultiheadAttention`'s `state_dict`.
    #[test]
    fn init_and_names_follow_pytorch() {
        let d = 64;
        let config = AttentionConfig { heads: 4, causal: false, params: ExplicitParams::new() };
        let net = Attention::<f64>::new(&config, d, "attention_0", &mut rng(1, Stream::Init)).expect("valid");
        let names: Vec<_> = net.params.iter().map(|p| (p.name, p.value.dim(), p.is_vector)).collect();
        assert_eq!(
            names,
            [
                ("in_proj_weight", (3 * d, d), false),
                ("in_proj_bias", (1, 3 * d), true),
                ("out_proj.weight", (d, d), false),
                ("out_proj.bias", (1, d), true)
            ]
        );
        let check = |m: &Array2<f64>, bound: f64| {
            assert!(m.iter().all(|v| v.abs() <= bound));
            let var = m.iter().map(|v| v * v).sum::<f64>() / m.len() as f64;
            assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.05, "var {var}, bound {bound}");
        };
        check(&net.params[IN_W].value, (6.0 / (4 * d) as f64).sqrt());
        check(&net.params[OUT_W].value, 1.0 / (d as f64).sqrt());
        assert!(net.params[IN_B].value.iter().chain(net.params[OUT_B].value.iter()).all(|&v| v == 0.0));
    }

    /// Explicit values replace the init; a wrong count, a width not divisible by the heads and
    /// an input of the wrong shape are errors, not panics.
    #[test]
    fn explicit_params_and_shape_errors() {
        let d = 4;
        let mut params = ExplicitParams::new();
        params.insert("out_proj.bias".into(), vec![1.0, 2.0, 3.0, 4.0]);
        let config = AttentionConfig { heads: 2, causal: false, params };
        let mut net = Attention::<f64>::new(&config, d, "attention_0", &mut rng(1, Stream::Init)).expect("valid");
        assert_eq!(net.params[OUT_B].value.row(0).to_vec(), [1.0, 2.0, 3.0, 4.0]);
        let mut bad = config.clone();
        bad.params.insert("in_proj_bias".into(), vec![0.0; 5]);
        assert!(Attention::<f64>::new(&bad, d, "attention_0", &mut rng(1, Stream::Init)).is_err());
        let three = AttentionConfig { heads: 3, ..config.clone() };
        assert!(Attention::<f64>::new(&three, d, "attention_0", &mut rng(1, Stream::Init)).is_err());
        let mut r = rng(0, Stream::Dropout);
        let mut ctx =
            Ctx { training: true, dropout: false, probe: false, rng: &mut r, seq_len: 3, bptt_truncate: None };
        let mut y = Array2::zeros((0, 0));
        assert!(net.forward(&Array2::zeros((7, d)), &mut y, &mut ctx).is_err());
        assert!(net.forward(&Array2::zeros((6, d + 1)), &mut y, &mut ctx).is_err());
        net.forward(&Array2::zeros((6, d)), &mut y, &mut ctx).expect("T 3, B 2");
        assert_eq!(y.dim(), (6, d));
    }

    /// A batch of B sequences gives each sample the output it gets alone, and T = 1 attends to
    /// itself only (P = 1, so Y = (x W_v^T + b_v) W_out^T + b_out).
    #[test]
    fn samples_are_independent_and_one_step_attends_to_itself() {
        let (d, steps, batch) = (8, 5, 3);
        let mut r = rng(12, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, d), |_| r.random_range(-1.0..1.0));
        let mut net = layer(d, 4, false, 4);
        let y = run(&mut net, &x, steps);
        for b in 0..batch {
            let xb = Array2::from_shape_fn((steps, d), |(t, j)| x[(t * batch + b, j)]);
            let yb = run(&mut net, &xb, steps);
            for t in 0..steps {
                let diff = (&yb.row(t) - &y.row(t * batch + b)).iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(diff < 1e-12, "sample {b} step {t}: {diff:e}");
            }
        }
        let y1 = run(&mut net, &x, 1);
        let w = &net.params[IN_W].value;
        let v: Array2<f64> = x.dot(&w.slice(s![2 * d.., ..]).t()) + net.params[IN_B].value.slice(s![0, 2 * d..]);
        let want = v.dot(&net.params[OUT_W].value.t()) + net.params[OUT_B].value.row(0);
        assert!((&y1 - &want).iter().all(|e| e.abs() < 1e-12));
    }
}
