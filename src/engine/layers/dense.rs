//! Dense (fully connected) layer with optional norm and activation.
//!
//! ```text
//! forward:  z = x W^T + b            x: (batch, in)  W: (units, in)  b: (1, units)
//!           p = norm(z)  (or p = z)  p: (batch, units)
//!           y = f(p)                 y: (batch, units)
//! backward: dp = dy * f'(p)
//!           dz = norm_backward(dp)  (or dz = dp)
//!           dW = dz^T x,  db = sum_batch dz,  dx = dz W
//! ```
//! `W` is stored `units x inputs`, PyTorch's `nn.Linear.weight` layout, so explicit weights
//! from a `state_dict` load as they are.

use crate::engine::linalg::gemm;
use ndarray::Array2;

use super::norm::running_buffers;
use super::{
    activate, activation_backward, bias_activate, column_sums, ensure_shape, explicit_or, unit_stats, Ctx, Layer,
    LayerKind, NormCore, Param, UnitStats,
};
use crate::engine::config::{Activation, DenseConfig};
use crate::engine::rng::Rng;
use crate::engine::{EngineError, Result, Scalar};

const WEIGHT: usize = 0;
const BIAS: usize = 1;

/// See the module doc.
pub struct Dense<T> {
    activation: Activation,
    /// weight, bias, then `prelu_weight` if the activation is PReLU, then `norm_weight`,
    /// `norm_bias` if there is a norm.
    params: Vec<Param<T>>,
    prelu: Option<usize>,
    norm: Option<(NormCore<T>, usize)>,
    /// Affine output `z` when a norm follows (its input); unused otherwise.
    z: Array2<T>,
    /// Activation input `p`.
    pre: Array2<T>,
    /// Scratch for dp and dz.
    dpre: Array2<T>,
    dz: Array2<T>,
    stats: UnitStats,
}

impl<T: Scalar> Dense<T> {
    /// Builds the layer for `inputs` features, drawing unspecified parameters from `rng`.
    pub fn new(config: &DenseConfig, inputs: usize, name: &str, rng: &mut Rng) -> Result<Self> {
        let units = config.units;
        if units == 0 || inputs == 0 {
            return Err(EngineError::layer(
                name,
                format!("needs at least one input and one unit, got {inputs} -> {units}"),
            ));
        }
        let p = &config.params;
        // Draw the random defaults even when explicit values replace them, so that giving one
        // layer's weights does not change every later layer's initialisation.
        let w_default = config.init.matrix(units, inputs, rng);
        let b_default = config.bias_init.vector(units, rng);
        let w = explicit_or(p, "weight", units * inputs, name, || w_default.iter().copied().collect())?;
        let b = explicit_or(p, "bias", units, name, || b_default)?;
        let w = Array2::from_shape_vec((units, inputs), w)
            .map_err(|e| EngineError::layer(name, format!("weight of {units} x {inputs}: {e}")))?;
        let mut params = vec![Param::matrix("weight", w), Param::vector("bias", b)];
        let prelu = match config.activation {
            Activation::Prelu { init } => {
                let s = explicit_or(p, "prelu_weight", units, name, || vec![init; units])?;
                params.push(Param::vector("prelu_weight", s));
                Some(params.len() - 1)
            }
            _ => None,
        };
        let norm = match config.norm {
            Some(kind) => {
                let g = explicit_or(p, "norm_weight", units, name, || vec![1.0; units])?;
                let b = explicit_or(p, "norm_bias", units, name, || vec![0.0; units])?;
                let rm = explicit_or(p, "running_mean", units, name, || vec![0.0; units])?;
                let rv = explicit_or(p, "running_var", units, name, || vec![1.0; units])?;
                params.push(Param::vector("norm_weight", g));
                params.push(Param::vector("norm_bias", b));
                Some((NormCore::new(kind, units, &config.norm_config, rm, rv), params.len() - 2))
            }
            None => None,
        };
        Ok(Dense {
            activation: config.activation,
            params,
            prelu,
            norm,
            z: Array2::zeros((0, units)),
            pre: Array2::zeros((0, units)),
            dpre: Array2::zeros((0, units)),
            dz: Array2::zeros((0, units)),
            stats: UnitStats::default(),
        })
    }
}

impl<T: Scalar> Dense<T> {
    /// Whether the activation input `p` is kept in its own buffer. Without a norm or PReLU
    /// slopes, and with an activation whose derivative follows from its output, `f` is applied in
    /// place on `y` and backward reads `y` instead.
    fn keeps_pre(&self) -> bool {
        self.norm.is_some() || self.prelu.is_some() || !self.activation.derivative_from_output()
    }

    /// `p` when it is kept, else `y` (see [`Self::keeps_pre`]).
    fn pre_or<'a>(&'a self, y: &'a Array2<T>) -> &'a Array2<T> {
        if self.keeps_pre() {
            &self.pre
        } else {
            y
        }
    }
}

impl<T: Scalar> Layer<T> for Dense<T> {
    fn kind(&self) -> LayerKind {
        LayerKind::Dense
    }

    fn activation(&self) -> Option<Activation> {
        Some(self.activation)
    }

    fn normalized(&self) -> bool {
        self.norm.is_some()
    }

    fn out_dim(&self) -> usize {
        self.params[BIAS].len()
    }

    fn forward(&mut self, x: &Array2<T>, y: &mut Array2<T>, ctx: &mut Ctx<'_>) -> Result<()> {
        let (n, units) = (x.nrows(), self.out_dim());
        let (w, b) = (&self.params[WEIGHT].value, &self.params[BIAS].value);
        if self.keeps_pre() {
            // z = x W^T + b (into `z` before a norm, else into `p`); p = norm(z); y = f(p).
            let z = if self.norm.is_some() { &mut self.z } else { &mut self.pre };
            ensure_shape(z, n, units, "the pre-activations")?;
            gemm(T::one(), x, &w.t(), T::zero(), z);
            bias_activate(Activation::Linear, b, z);
            if let Some((core, i)) = &mut self.norm {
                let (g, bt) = (&self.params[*i].value, &self.params[*i + 1].value);
                core.forward(&self.z, g, bt, &mut self.pre, ctx.training)?;
            }
            activate(self.activation, &self.pre, y, self.prelu.map(|i| &self.params[i]), "the output")?;
        } else {
            // y = f(x W^T + b): the product straight into y, then bias and f in one pass.
            ensure_shape(y, n, units, "the output")?;
            gemm(T::one(), x, &w.t(), T::zero(), y);
            bias_activate(self.activation, b, y);
        }
        if ctx.probe {
            self.stats = unit_stats(self.activation, self.pre_or(y), y);
        }
        Ok(())
    }

    fn backward(&mut self, x: &Array2<T>, y: &Array2<T>, dy: &Array2<T>, dx: Option<&mut Array2<T>>) -> Result<()> {
        let p = if self.keeps_pre() { &self.pre } else { y };
        let dz = match &self.norm {
            // dp = dy * f'(p); dz = norm_backward(dp); db = sum_b dz.
            Some((core, i)) => {
                let prelu = self.prelu.map(|i| &mut self.params[i]);
                activation_backward(self.activation, p, y, dy, &mut self.dpre, prelu, None)?;
                let (left, right) = self.params.split_at_mut(*i + 1);
                core.backward(&self.dpre, &mut left[*i], &mut right[0], &mut self.dz)?;
                column_sums(&self.dz, &mut self.params[BIAS].grad);
                &self.dz
            }
            // f' = 1: dz = dy, no copy.
            None if self.activation == Activation::Linear => {
                column_sums(dy, &mut self.params[BIAS].grad);
                dy
            }
            // dz = dy * f'(p) and db = sum_b dz in one pass.
            None => {
                let (affine, extra) = self.params.split_at_mut(BIAS + 1);
                let prelu = self.prelu.and_then(|i| extra.get_mut(i - (BIAS + 1)));
                let db = Some(&mut affine[BIAS].grad);
                activation_backward(self.activation, p, y, dy, &mut self.dpre, prelu, db)?;
                &self.dpre
            }
        };
        // dW = dz^T x
        gemm(T::one(), &dz.t(), x, T::zero(), &mut self.params[WEIGHT].grad);
        // dx = dz W
        if let Some(dx) = dx {
            ensure_shape(dx, x.nrows(), x.ncols(), "the input gradients")?;
            gemm(T::one(), dz, &self.params[WEIGHT].value, T::zero(), dx);
        }
        Ok(())
    }

    fn params(&self) -> &[Param<T>] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param<T>] {
        &mut self.params
    }

    fn buffers(&self) -> Vec<(&'static str, Vec<f64>)> {
        match &self.norm {
            Some((core, _)) => running_buffers(core, "running_mean", "running_var"),
            None => Vec::new(),
        }
    }

    fn unit_stats(&self) -> UnitStats {
        self.stats
    }
}
