//! The theory's interface: the wire types of the report's `theory` block (`Theory` and its
//! parts, documented in the OpenAPI schema) and `StepZero`, which batch the step-0 probe measured.

use serde::Serialize;

/// What theory predicts at initialisation, beside what the step-0 probe measured.
///
/// The published fields (`q_star` ... `measured_layer_factor`) describe the deep part of a
/// dense stack; `profile` the whole stack layer by layer; `jacobian` the input-output Jacobian;
/// `recurrent` each recurrent layer. A part that does not apply is omitted and `notes` says why.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Theory {
    /// Fixed point of the length map (variance of a hidden pre-activation), iterated with the
    /// last hidden layer's `sigma_w^2`, `sigma_b^2` and activation. Omitted when the map has no
    /// finite fixed point (activations grow without bound with depth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q_star: Option<f64>,
    /// `chi1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]`: the factor by which the squared gradient norm
    /// changes per layer deep in the stack (Gauss-Hermite quadrature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi1: Option<f64>,
    /// `ordered` (chi1 < 0.99: vanishing), `critical` (|chi1 - 1| <= 0.01) or `chaotic`
    /// (chi1 > 1.01: exploding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `1 / |ln chi1|`: layers over which the squared gradient norm changes by a factor e.
    /// Omitted when chi1 = 1 (the depth scale is infinite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth_scale: Option<f64>,
    /// `sqrt(chi1)`: predicted `delta_norm` ratio of a hidden layer to the next one, deep in the
    /// stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_layer_factor: Option<f64>,
    /// Measured at step 0: `exp(-slope)` of the least-squares line through `ln delta_norm` of the
    /// hidden dense layers (every dense layer but the last) against their position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_layer_factor: Option<f64>,
    /// The `sigma_w^2` (fan_in x weight variance) `q_star` and `chi1` use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_w2: Option<f64>,
    /// The bias variance `sigma_b^2` `q_star` and `chi1` use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_b2: Option<f64>,
    /// The activation `q_star` and `chi1` use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// Predicted and measured gradient profile over the hidden layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<TheoryProfile>,
    /// Singular values of the input-output Jacobian at initialisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jacobian: Option<JacobianSpectrum>,
    /// One entry per recurrent layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recurrent: Vec<RecurrentTheory>,
    /// One entry per transformer layer of at least two blocks: Xiong et al.'s depth profile.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transformer: Vec<DepthProfile>,
    /// Why parts are absent or approximate (e.g. `batch norm: mean-field map not applied`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The length map iterated through the hidden layers, and the gradient profile it predicts,
/// beside the one measured at step 0. Entries are parallel to `layers`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TheoryProfile {
    /// Hidden dense layers (every dense layer but the readout), in forward order.
    pub layers: Vec<String>,
    /// Pre-activation variance `q_l` from the length map, mean over the samples.
    pub q: Vec<f64>,
    /// `chi_l = sigma_w^2 E[phi'(h_l)^2]`, mean over the samples.
    pub chi: Vec<f64>,
    /// Each layer's `sigma_w^2` (fan_in x weight variance).
    pub sigma_w2: Vec<f64>,
    /// Predicted `ln(delta_norm_l / delta_norm_L)`, L the last hidden layer (so the last entry
    /// is 0).
    pub predicted_log_delta_ratio: Vec<f64>,
    /// Measured at step 0; `null` where a `delta_norm` was zero or non-finite.
    pub measured_log_delta_ratio: Vec<Option<f64>>,
}

/// Singular values of `J = dy_L / dx` (network input to the last hidden layer's output) at
/// initialisation, pooled over the samples.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct JacobianSpectrum {
    /// `[N_L, N_0]`: rows (last hidden width) and columns (input width) of `J`.
    pub size: [usize; 2],
    /// Samples whose singular values are pooled.
    pub samples: usize,
    /// Mean of the squared singular values (`chi^L` in the mean-field limit).
    pub mean_sq: f64,
    /// Variance of the squared singular values (about `L` for a deep linear Gaussian net).
    pub var_sq: f64,
    /// Largest singular value.
    pub max: f64,
    /// Smallest singular value.
    pub min: f64,
    /// Fraction of singular values in `[0.5, 2]` (1 under dynamical isometry).
    pub fraction_within_half_to_two: f64,
}

/// One recurrent layer at initialisation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RecurrentTheory {
    /// Layer name.
    pub layer: String,
    /// `vanilla`, `lstm` or `gru`.
    pub cell: String,
    /// Largest singular value of `W_hh` (gated cells: the largest over the gate blocks).
    pub sigma_max: f64,
    /// Spectral radius of `W_hh` (gated cells: the largest over the gate blocks).
    pub spectral_radius: f64,
    /// Bound on `|phi'|` of the vanilla cell's activation (tanh 1, relu 1, sigmoid 1/4); for
    /// gated cells that of the tanh candidate, 1.
    pub gamma: f64,
    /// `gamma * sigma_max`: per-step upper bound on `||dh_t/dh_{t-1}||` (vanilla cells).
    pub pascanu_bound_factor: f64,
    /// Vanilla cells: `true` when the bound is below 1, so the gradient through time vanishes at
    /// least like `bound^(T-t)`. Omitted for gated cells, where the bound does not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vanishing_guaranteed: Option<bool>,
    /// Gated cells: the spectrum of each gate block of `W_hh`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<RecurrentBlock>,
    /// What the numbers do and do not say for this cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The spectrum of one gate block of `W_hh`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RecurrentBlock {
    /// Gate (`i`, `f`, `g`, `o` for LSTM; `r`, `z`, `n` for GRU).
    pub block: String,
    /// Largest singular value.
    pub sigma_max: f64,
    /// Spectral radius.
    pub spectral_radius: f64,
}

/// Which batch the step-0 probe measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepZero {
    /// `analyze`: the first `batch` training samples, dropout off.
    Analyze {
        /// Samples.
        batch: usize,
    },
    /// A training run: the first batch of the shuffled order, dropout on.
    Train,
}

/// The gradient of each block's FFN output weight (`linear2.weight`) at step 0 along a
/// transformer stack, beside Xiong et al.'s prediction (see `theory::transformer`). Entries of
/// `measured`, `stream_norm` and `predicted` are per block, in forward order.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct DepthProfile {
    /// JSON Pointer of the transformer layer in the spec.
    pub pointer: String,
    /// Pre-LN (true) or post-LN.
    pub norm_first: bool,
    /// ||dL/d linear2.weight|| of each block at step 0.
    pub measured: Vec<Option<f64>>,
    /// L2 norm of the residual stream entering each block (block 0: leaving it).
    pub stream_norm: Vec<Option<f64>>,
    /// Post-LN: flat at the measured geometric mean; pre-LN: `g_1 sigma_1 / sigma_l`.
    pub predicted: Vec<Option<f64>>,
    /// Largest over smallest measured value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_over_min: Option<f64>,
    /// Last block's over the first block's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_over_first: Option<f64>,
    /// The regime the measured profile is in.
    pub regime: DepthRegime,
    /// Whether it is the regime theory predicts for the placement (flat for post-LN, falling
    /// toward the output for pre-LN).
    pub as_predicted: bool,
}

/// The shape of a transformer's depth profile.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepthRegime {
    /// max/min within `FLAT_MAX_OVER_MIN` (post-LN at init).
    Flat,
    /// last/first at most `FALLING_LAST_OVER_FIRST` (pre-LN: the stream grows, the gradient
    /// falls as 1/sigma_l).
    FallsTowardOutput,
    /// last/first at least 1 / `FALLING_LAST_OVER_FIRST`.
    GrowsTowardOutput,
    /// None of the above.
    Uneven,
    /// Too few finite values.
    Unmeasured,
}
