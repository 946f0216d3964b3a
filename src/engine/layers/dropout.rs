//! Inverted dropout (Srivastava et al. 2014).
//!
//! ```text
//! training: m_ij ~ Bernoulli(1 - rate) / (1 - rate),  y = x * m,  dx = dy * m
//! otherwise: y = x, dx = dy
//! ```
//! Scaling at training time keeps E[y] = x, so evaluation needs no rescaling. Masks come from the
//! run's dropout stream, so they are reproducible.

use ndarray::Array2;
use rand::Rng as _;

use super::{ensure_shape, Ctx, Layer, LayerKind};
use crate::engine::{Result, Scalar};

/// See the module doc.
pub struct Dropout<T> {
    rate: f64,
    width: usize,
    mask: Array2<T>,
    active: bool,
}

impl<T: Scalar> Dropout<T> {
    /// Dropout with probability `rate` in `[0, 1)` over `width` features.
    pub fn new(rate: f64, width: usize) -> Self {
        Dropout { rate, width, mask: Array2::zeros((0, 0)), active: false }
    }
}

impl<T: Scalar> Layer<T> for Dropout<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Dropout
    }

    fn out_dim(&self) -> usize {
        self.width
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        ensure_shape(y, x.nrows(), x.ncols(), "the output")?;
        self.active = ctx.dropout && self.rate > 0.0;
        if !self.active {
            y.assign(x);
            return Ok(());
        }
        ensure_shape(&mut self.mask, x.nrows(), x.ncols(), "the dropout mask")?;
        let keep = 1.0 - self.rate;
        let scale = T::of(1.0 / keep);
        for m in self.mask.iter_mut() {
            *m = if ctx.rng.random::<f64>() < keep { scale } else { T::zero() };
        }
        ndarray::Zip::from(y).and(x).and(&self.mask).for_each(|y, &x, &m| *y = x * m);
        Ok(())
    }

    fn backward(&mut self, _x: &Array2<T>, _y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let Some(dx) = dx else { return Ok(()) };
        ensure_shape(dx, dy.nrows(), dy.ncols(), "the input gradients")?;
        if self.active {
            ndarray::Zip::from(dx).and(dy).and(&self.mask).for_each(|d, &g, &m| *d = g * m);
        } else {
            dx.assign(dy);
        }
        Ok(())
    }
}
