//! Standalone elementwise activation layer (`{"type": "activation"}`).
//!
//! ```text
//! y = f(x)          dx = dy * f'(x)          PReLU: d/da_j = sum_b dy_bj * min(x_bj, 0)
//! ```

use ndarray::Array2;

use super::{
    activate, activation_backward, ensure_shape, explicit_or, unit_stats, Ctx, Layer, LayerKind, Param, UnitStats,
};
use crate::engine::config::{Activation, ExplicitParams};
use crate::engine::{Result, Scalar};

/// See the module doc. PReLU slopes are per feature (`prelu_weight`).
pub struct ActivationLayer<T> {
    activation: Activation,
    width: usize,
    params: Vec<Param<T>>,
    scratch: Array2<T>,
    stats: UnitStats,
}

impl<T: Scalar> ActivationLayer<T> {
    /// An activation over `width` features.
    pub fn new(activation: Activation, width: usize, params: &ExplicitParams, name: &str) -> Result<Self> {
        let params = match activation {
            Activation::Prelu { init } => {
                vec![Param::vector(
                    "prelu_weight",
                    explicit_or(params, "prelu_weight", width, name, || vec![init; width])?,
                )]
            }
            _ => Vec::new(),
        };
        Ok(ActivationLayer { activation, width, params, scratch: Array2::zeros((0, 0)), stats: UnitStats::default() })
    }
}

impl<T: Scalar> Layer<T> for ActivationLayer<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Activation
    }

    fn activation(&self) -> Option<Activation> {
        Some(self.activation)
    }

    fn out_dim(&self) -> usize {
        self.width
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        activate(self.activation, x, y, self.params.first(), "the output")?;
        if ctx.probe {
            self.stats = unit_stats(self.activation, x, y);
        }
        Ok(())
    }

    fn backward(&mut self, x: &Array2<T>, y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        // The slope gradient is needed even for the first layer, so compute dx into scratch then.
        let out = match dx {
            Some(dx) => dx,
            None => {
                ensure_shape(&mut self.scratch, x.nrows(), x.ncols(), "the input gradients")?;
                &mut self.scratch
            }
        };
        activation_backward(self.activation, x, y, dy, out, self.params.first_mut(), None)
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
}
