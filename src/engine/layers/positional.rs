//! Positional encoding: a vector per time step added to every sample's row of that step, so that
//! attention (which is blind to order) can tell the steps apart.
//!
//! Rows are time-major (see `layers::rnn`): step `t` of sample `b` is row `t*B + b` of
//! `x: (T*B, d)`; `P: (T, d)` holds one row per step.
//! ```text
//! forward:   y_{tB+b} = x_{tB+b} + P_t
//! backward:  dx = dy,   dP_t = sum_b dy_{tB+b}      (learned P only)
//! sinusoidal (Vaswani et al. 2017):  P_{t,2i} = sin(t / 10000^(2i/d)),  P_{t,2i+1} = cos(t / 10000^(2i/d))
//! learned:   P a parameter (`weight`, T x d), init N(0, 0.02^2) (GPT-2's position embeddings)
//! ```

use ndarray::Array2;

use super::{ensure_shape, explicit_or, values, values_mut, Ctx, Layer, LayerKind, Param};
use crate::engine::config::{ExplicitParams, Init, PositionalKind};
use crate::engine::rng::Rng;
use crate::engine::{EngineError, Result, Scalar};

/// Standard deviation of a learned table's init.
pub const LEARNED_STD: f64 = 0.02;

/// See the module doc.
pub struct Positional<T> {
    kind: PositionalKind,
    steps: usize,
    width: usize,
    /// The learned table (one parameter), or none.
    params: Vec<Param<T>>,
    /// The sinusoidal table.
    fixed: Array2<T>,
}

/// The sinusoidal table of `steps` x `d`.
pub fn sinusoidal(steps: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((steps, d), |(t, j)| {
        let i2 = (j - j % 2) as f64;
        let angle = t as f64 / 10000f64.powf(i2 / d as f64);
        if j % 2 == 0 {
            angle.sin()
        } else {
            angle.cos()
        }
    })
}

impl<T: Scalar> Positional<T> {
    /// An encoding of `steps` time steps of `width` features; explicit `weight` (learned only)
    /// replaces the init.
    pub fn new(
        kind: PositionalKind,
        steps: usize,
        width: usize,
        params: &ExplicitParams,
        name: &str,
        rng: &mut Rng,
    ) -> Result<Self> {
        if steps == 0 || width == 0 {
            return Err(EngineError::layer(name, format!("needs steps and width, got {steps} x {width}")));
        }
        let (params, fixed) = match kind {
            PositionalKind::Learned => {
                let drawn = Init::Normal { std: LEARNED_STD }.matrix(steps, width, rng);
                let w = explicit_or(params, "weight", steps * width, name, || drawn.iter().copied().collect())?;
                let w = Array2::from_shape_vec((steps, width), w)
                    .map_err(|e| EngineError::layer(name, format!("weight of {steps} x {width}: {e}")))?;
                (vec![Param::matrix("weight", w)], Array2::zeros((0, 0)))
            }
            PositionalKind::Sinusoidal => (Vec::new(), sinusoidal(steps, width).mapv(T::of)),
        };
        Ok(Positional { kind, steps, width, params, fixed })
    }

    fn table(&self) -> &Array2<T> {
        match self.kind {
            PositionalKind::Learned => self.params.first().map_or(&self.fixed, |p| &p.value),
            PositionalKind::Sinusoidal => &self.fixed,
        }
    }
}

impl<T: Scalar> Layer<T> for Positional<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Positional
    }

    fn out_dim(&self) -> usize {
        self.width
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        let steps = ctx.seq_len.max(1);
        if steps != self.steps || x.ncols() != self.width || !x.nrows().is_multiple_of(steps) {
            return Err(EngineError::Shape {
                layer: "positional".to_string(),
                expected: format!("(T*B, {}) with T = {}", self.width, self.steps),
                got: format!("({}, {}) with T = {steps}", x.nrows(), x.ncols()),
            });
        }
        ensure_shape(y, x.nrows(), x.ncols(), "the output")?;
        let batch = x.nrows() / steps;
        let (d, xs, p) = (self.width, values(x), values(self.table()));
        let out = values_mut(y);
        for (r, (yr, xr)) in out.chunks_exact_mut(d).zip(xs.chunks_exact(d)).enumerate() {
            let pt = &p[(r / batch.max(1)) * d..][..d];
            for ((y, &x), &p) in yr.iter_mut().zip(xr).zip(pt) {
                *y = x + p;
            }
        }
        Ok(())
    }

    fn backward(&mut self, _x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let (d, batch) = (self.width, dy.nrows() / self.steps.max(1));
        if let Some(p) = self.params.first_mut() {
            let g = values_mut(&mut p.grad);
            g.fill(T::zero());
            for (r, row) in values(dy).chunks_exact(d).enumerate() {
                let gt = &mut g[(r / batch.max(1)) * d..][..d];
                for (g, &v) in gt.iter_mut().zip(row) {
                    *g += v;
                }
            }
        }
        if let Some(dx) = dx {
            ensure_shape(dx, dy.nrows(), dy.ncols(), "the input gradients")?;
            dx.assign(dy);
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
    use crate::engine::rng::{rng, Stream};

    /// The table of Vaswani et al.: row 0 is (sin 0, cos 0, ...) = (0, 1, 0, 1); row 1's first
    /// pair is (sin 1, cos 1), its second (sin 1/100, cos 1/100) at d = 4 (10000^(2/4) = 100).
    #[test]
    fn the_sinusoidal_table_is_vaswanis() {
        let p = sinusoidal(2, 4);
        assert_eq!(p.row(0).to_vec(), [0.0, 1.0, 0.0, 1.0]);
        let want = [1f64.sin(), 1f64.cos(), 0.01f64.sin(), 0.01f64.cos()];
        for (g, w) in p.row(1).iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{g} vs {w}");
        }
    }

    /// T = 2, B = 2, d = 2 with an explicit table: each step's row is added to both samples of
    /// that step; dP_t sums the step's rows of dy; dx = dy.
    #[test]
    fn a_learned_table_is_added_per_step_and_its_gradient_sums_the_batch() {
        let mut params = ExplicitParams::new();
        params.insert("weight".into(), vec![10.0, 20.0, 30.0, 40.0]);
        let mut layer =
            Positional::<f64>::new(PositionalKind::Learned, 2, 2, &params, "positional_0", &mut rng(0, Stream::Init))
                .unwrap();
        let x = ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]];
        let mut r = rng(0, Stream::Dropout);
        let mut ctx =
            Ctx { training: true, dropout: false, probe: false, rng: &mut r, seq_len: 2, bptt_truncate: None };
        let mut y = Array2::zeros((0, 0));
        layer.forward(&x, &mut y, &mut ctx).unwrap();
        assert_eq!(y, ndarray::array![[11.0, 22.0], [13.0, 24.0], [35.0, 46.0], [37.0, 48.0]]);
        let dy = ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]];
        let mut dx = Array2::zeros((0, 0));
        layer.backward(&x, &y, &dy, Some(&mut dx)).unwrap();
        assert_eq!(dx, dy);
        assert_eq!(layer.params()[0].grad, ndarray::array![[4.0, 6.0], [12.0, 14.0]]);
    }
}
