//! Sequence pooling: one row per sequence from the rows of its time steps, for sequence-level
//! targets after layers that keep the time axis (attention, or an rnn with `return_sequences`).
//!
//! Rows are time-major (see `layers::rnn`): step `t` of sample `b` is row `t*B + b` of the
//! input `x: (T*B, d)`; the output `y` is `(B, d)`.
//! ```text
//! last:  y_b = x_{(T-1)B + b}              dx_{tB+b} = dy_b if t = T-1, else 0
//! mean:  y_b = (1/T) sum_t x_{tB+b}        dx_{tB+b} = dy_b / T
//! ```
//! No parameters.

use ndarray::{s, Array2};

use super::{ensure_shape, Ctx, Layer, LayerKind};
use crate::engine::config::PoolKind;
use crate::engine::{EngineError, Result, Scalar};

/// See the module doc.
pub struct Pool {
    kind: PoolKind,
    width: usize,
    steps: usize,
}

impl Pool {
    /// Pooling of `width` features.
    pub fn new(kind: PoolKind, width: usize) -> Self {
        Pool { kind, width, steps: 1 }
    }
}

impl<T: Scalar> Layer<T> for Pool {
    fn kind(&self) -> LayerKind {
        LayerKind::Pool
    }

    fn out_dim(&self) -> usize {
        self.width
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        let steps = ctx.seq_len.max(1);
        if x.ncols() != self.width || !x.nrows().is_multiple_of(steps) {
            return Err(EngineError::Shape {
                layer: "pool".to_string(),
                expected: format!("(T*B, {}) with T = {steps}", self.width),
                got: format!("({}, {})", x.nrows(), x.ncols()),
            });
        }
        self.steps = steps;
        let batch = x.nrows() / steps;
        ensure_shape(y, batch, self.width, "the output")?;
        match self.kind {
            PoolKind::Last => y.assign(&x.slice(s![(steps - 1) * batch.., ..])),
            PoolKind::Mean => {
                y.fill(T::zero());
                for t in 0..steps {
                    *y += &x.slice(s![t * batch..(t + 1) * batch, ..]);
                }
                let inv = T::of(1.0 / steps as f64);
                y.mapv_inplace(|v| v * inv);
            }
        }
        Ok(())
    }

    fn backward(&mut self, _x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let Some(dx) = dx else { return Ok(()) };
        let (steps, batch) = (self.steps, dy.nrows());
        ensure_shape(dx, steps * batch, self.width, "the input gradients")?;
        match self.kind {
            PoolKind::Last => {
                dx.fill(T::zero());
                dx.slice_mut(s![(steps - 1) * batch.., ..]).assign(dy);
            }
            PoolKind::Mean => {
                let inv = T::of(1.0 / steps as f64);
                for t in 0..steps {
                    let mut block = dx.slice_mut(s![t * batch..(t + 1) * batch, ..]);
                    block.zip_mut_with(dy, |d, &g| *d = g * inv);
                }
            }
        }
        Ok(())
    }

    fn sequence_out(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rng::{rng, Stream};
    use ndarray::array;

    fn ctx_run(kind: PoolKind, x: &Array2<f64>, steps: usize) -> (Array2<f64>, Array2<f64>) {
        let mut pool = Pool::new(kind, x.ncols());
        let mut r = rng(0, Stream::Dropout);
        let mut ctx =
            Ctx { training: true, dropout: false, probe: false, rng: &mut r, seq_len: steps, bptt_truncate: None };
        let mut y = Array2::zeros((0, 0));
        Layer::<f64>::forward(&mut pool, x, &mut y, &mut ctx).unwrap();
        let dy = Array2::from_shape_fn(y.raw_dim(), |(i, j)| 1.0 + (i * 10 + j) as f64);
        let mut dx = Array2::zeros((0, 0));
        Layer::<f64>::backward(&mut pool, x, &y, &dy, Some(&mut dx)).unwrap();
        (y, dx)
    }

    /// T = 3, B = 2, d = 2: rows (t, b) = (0,0) (0,1) (1,0) (1,1) (2,0) (2,1).
    fn x() -> Array2<f64> {
        array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0], [11.0, 12.0]]
    }

    #[test]
    fn last_takes_the_last_step_of_each_sample_and_sends_the_gradient_there_only() {
        let (y, dx) = ctx_run(PoolKind::Last, &x(), 3);
        assert_eq!(y, array![[9.0, 10.0], [11.0, 12.0]]);
        // dy = [[1, 2], [11, 12]] lands in rows 4 and 5; the earlier steps get 0.
        assert_eq!(dx, array![[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [11.0, 12.0]]);
    }

    #[test]
    fn mean_averages_the_steps_of_each_sample_and_spreads_the_gradient_evenly() {
        let (y, dx) = ctx_run(PoolKind::Mean, &x(), 3);
        // Sample 0: (1 + 5 + 9) / 3 = 5, (2 + 6 + 10) / 3 = 6; sample 1: 7, 8.
        assert_eq!(y, array![[5.0, 6.0], [7.0, 8.0]]);
        // d y_b / d x_{tB+b} = 1/3 for every t.
        let third = |v: f64| v / 3.0;
        let expected = array![
            [third(1.0), third(2.0)],
            [third(11.0), third(12.0)],
            [third(1.0), third(2.0)],
            [third(11.0), third(12.0)],
            [third(1.0), third(2.0)],
            [third(11.0), third(12.0)]
        ];
        assert!((&dx - &expected).iter().all(|d| d.abs() < 1e-15), "{dx}");
    }

    #[test]
    fn rows_that_are_not_whole_sequences_are_a_shape_error() {
        let mut pool = Pool::new(PoolKind::Mean, 2);
        let mut r = rng(0, Stream::Dropout);
        let mut ctx =
            Ctx { training: true, dropout: false, probe: false, rng: &mut r, seq_len: 4, bptt_truncate: None };
        let mut y = Array2::zeros((0, 0));
        assert!(matches!(Layer::<f64>::forward(&mut pool, &x(), &mut y, &mut ctx), Err(EngineError::Shape { .. })));
    }
}
