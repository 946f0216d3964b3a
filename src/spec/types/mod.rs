//! The wire types of a spec: the request body of `POST /v1/jobs` and `POST /v1/analyze`, field
//! for field as the `Spec` schema of `openapi/openapi.json` and `docs/spec.md` (the reference:
//! every field with its type, default and limits) name them.
//!
//! Owns the shape of the JSON and nothing else: no defaults (those live in `expand`), no
//! semantic checks (`validate`), no reading of JSON (`parse`). Fields a user may leave out are
//! `Option`s so that a parsed spec says exactly what was written; [`Spec::expanded`] fills them.
//! Serialisation is derived, so the Rust field and variant names *are* the wire names (all
//! snake_case, no renames); `parse` reads the same names, and the round-trip tests hold the two
//! together. Depends on `serde` only; must not depend on the engine, HTTP or async crates.
//!
//! [`Spec::expanded`]: crate::spec::Spec::expanded

use serde::{Serialize, Serializer};

/// A string-valued enum whose wire names are listed once, in the `name` match, and used both to
/// serialise and (through `ALL`) to parse.
macro_rules! wire_names {
    (
        $(#[$meta:meta])*
        pub enum $T:ident { $( $(#[$vmeta:meta])* $V:ident = $name:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $T { $( $(#[$vmeta])* $V ),+ }

        impl $T {
            /// Every value, in declaration order.
            pub const ALL: &'static [$T] = &[$($T::$V),+];

            /// The name on the wire.
            pub fn name(self) -> &'static str {
                match self { $($T::$V => $name),+ }
            }
        }

        impl Serialize for $T {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

/// A whole spec.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Spec {
    /// Free-form label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seed of every random choice (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The network.
    pub model: Model,
    /// The data.
    pub data: Data,
    /// How to train; optional (defaults), and unused by `/v1/analyze` beyond `batch_size`/`loss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
    /// What to record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    /// Addition: `/v1/analyze` returns every parameter's gradient when true (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_gradients: Option<bool>,
}

mod transformer;
pub use transformer::{Transformer, TransformerBlock};

/// The network: input width and layers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Model {
    /// Features per sample (per time step for sequence data).
    pub input_dim: u64,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

/// One layer, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Layer {
    /// Fully connected layer with optional norm and activation.
    Dense(Dense),
    /// Standalone batch normalisation.
    BatchNorm(BatchNorm),
    /// Standalone layer normalisation.
    LayerNorm(LayerNorm),
    /// Dropout.
    Dropout(Dropout),
    /// Standalone activation.
    Activation(ActivationLayer),
    /// `output = input + f(input)`.
    Residual(Residual),
    /// Shorthand for `depth` dense layers of `width` units.
    Mlp(Mlp),
    /// Recurrent layer unrolled over the time steps of sequence data.
    Rnn(Rnn),
    /// Multi-head self-attention over the time steps of a sequence.
    Attention(Attention),
    /// One row per sequence from the rows of its time steps.
    Pool(Pool),
    /// A vector per time step added to the rows of that step.
    Positional(Positional),
    /// `depth` transformer encoder blocks (PyTorch's `nn.TransformerEncoderLayer`).
    Transformer(Transformer),
}

/// A dense layer. Explicit parameters are laid out as PyTorch's `state_dict`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Dense {
    /// Output width.
    pub units: u64,
    /// Default `linear`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// Weight init, default `xavier_uniform`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// Addition: bias init, default `{"type": "constant", "value": 0.0}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_init: Option<Init>,
    /// Norm between the affine map and the activation; `null` (always written, so that an RFC
    /// 6902 `replace` can target it) means none.
    pub norm: Option<Norm>,
    /// units x inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Vec<Vec<f64>>>,
    /// units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias: Option<Vec<f64>>,
    /// Addition: the inner norm's scale (units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm_weight: Option<Vec<f64>>,
    /// Addition: the inner norm's shift (units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm_bias: Option<Vec<f64>>,
    /// Addition: the inner batch norm's running mean (units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_mean: Option<Vec<f64>>,
    /// Addition: the inner batch norm's running variance (units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_var: Option<Vec<f64>>,
    /// Addition: per-unit slopes of a `prelu` activation (units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prelu_weight: Option<Vec<f64>>,
}

/// Standalone batch norm over the feature axis.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BatchNorm {
    /// Default 1e-5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Running-statistics momentum, default 0.1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Scale (features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Vec<f64>>,
    /// Shift (features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias: Option<Vec<f64>>,
    /// Running mean (features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_mean: Option<Vec<f64>>,
    /// Running variance (features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_var: Option<Vec<f64>>,
}

/// Standalone layer norm over the feature axis.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LayerNorm {
    /// Default 1e-5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Scale (features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Vec<f64>>,
    /// Shift (features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias: Option<Vec<f64>>,
}

/// Dropout.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Dropout {
    /// Probability of zeroing a unit, default 0.5 (PyTorch's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// Standalone activation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActivationLayer {
    /// The function (required).
    pub activation: Activation,
    /// Per-feature slopes of a `prelu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prelu_weight: Option<Vec<f64>>,
}

/// A residual block.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Residual {
    /// The inner stack `f`; its output width must equal its input width.
    #[schema(no_recursion)]
    pub layers: Vec<Layer>,
}

/// Shorthand for `depth` hidden dense layers (see `expand` for exactly what it becomes).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Mlp {
    /// Number of dense layers.
    pub depth: u64,
    /// Units of each.
    pub width: u64,
    /// Default `relu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// Default `xavier_uniform`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// Addition: bias init of every layer, default constant 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_init: Option<Init>,
    /// Norm of every layer; `null` = none.
    pub norm: Option<Norm>,
    /// Wrap each layer whose input width equals `width` in a residual block (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residual: Option<bool>,
}

/// A recurrent layer. Its input is a sequence (sequence data, or an earlier rnn layer with
/// `return_sequences`); its output is the last hidden state, or every step's with
/// `return_sequences`. Explicit parameters (PyTorch's layout, gate blocks stacked in the
/// cell's order) override the inits and `forget_bias`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rnn {
    /// Default `vanilla`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<Cell>,
    /// Hidden width.
    pub units: u64,
    /// Vanilla cells only: `tanh` (default), `relu` or `sigmoid`. Gated cells have fixed
    /// activations, so an explicit one on `lstm`/`gru` is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// Input-to-hidden init, default `xavier_uniform`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// Hidden-to-hidden init, default `orthogonal` with gain 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrent_init: Option<Init>,
    /// Output every step (true) or only the last (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_sequences: Option<bool>,
    /// Addition, `lstm` only: initial bias of the forget gate (default 0.0 as PyTorch; 1.0 is
    /// Jozefowicz et al.'s advice). Refused on other cells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forget_bias: Option<f64>,
    /// (gates x units) x inputs, PyTorch layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_ih: Option<Vec<Vec<f64>>>,
    /// (gates x units) x units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_hh: Option<Vec<Vec<f64>>>,
    /// gates x units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_ih: Option<Vec<f64>>,
    /// gates x units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_hh: Option<Vec<f64>>,
}

/// Multi-head scaled dot-product self-attention over the time steps (PyTorch's
/// `nn.MultiheadAttention` with `batch_first=True` and dropout 0); its output has its input's
/// width `d` and keeps the time steps. Its input is a sequence (sequence data, or an rnn layer
/// with `return_sequences`); inside a residual block it makes `x + attention(x)`. Explicit
/// parameters are named and laid out as PyTorch's `state_dict` and replace the init:
/// Xavier-uniform over the stacked `in_proj_weight`, `nn.Linear`'s default for
/// `out_proj.weight`, biases 0.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Attention {
    /// Number of heads; must divide the input width `d` (each head attends over `d / heads`
    /// features).
    pub heads: u64,
    /// Time step `t` attends only to steps `<= t` (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causal: Option<bool>,
    /// 3d x d: the query, key and value projections stacked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_proj_weight: Option<Vec<Vec<f64>>>,
    /// 3d.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_proj_bias: Option<Vec<f64>>,
    /// d x d.
    #[serde(rename = "out_proj.weight", skip_serializing_if = "Option::is_none")]
    pub out_proj_weight: Option<Vec<Vec<f64>>>,
    /// d.
    #[serde(rename = "out_proj.bias", skip_serializing_if = "Option::is_none")]
    pub out_proj_bias: Option<Vec<f64>>,
}

/// Sequence pooling: one row per sequence from the rows of its time steps, for one target per
/// sequence after layers that keep the time steps (attention, or an rnn with
/// `return_sequences`). No parameters.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Pool {
    /// `last` (default): the last time step; `mean`: the mean over the time steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PoolMode>,
}

/// Positional encoding: a vector per time step added to every sequence's row of that step, so
/// that attention (blind to order) can tell the steps apart. Keeps the width; needs a sequence.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Positional {
    /// `sinusoidal` (default, Vaswani et al.'s sines and cosines, no parameters) or `learned`
    /// (a table of steps x width, init N(0, 0.02²)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<PositionalEncoding>,
    /// `learned` only: the table, steps x width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Vec<Vec<f64>>>,
}

wire_names! {
    /// Which positional encoding.
    pub enum PositionalEncoding {
        /// Fixed sines and cosines.
        Sinusoidal = "sinusoidal",
        /// A learned table.
        Learned = "learned",
    }
}

wire_names! {
    /// How a pool layer makes one row of a sequence's rows.
    pub enum PoolMode {
        /// The last time step.
        Last = "last",
        /// The mean over the time steps.
        Mean = "mean",
    }
}

wire_names! {
    /// Recurrent cell kinds.
    pub enum Cell {
        /// `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
        Vanilla = "vanilla",
        /// Long short-term memory (gates i, f, g, o).
        Lstm = "lstm",
        /// Gated recurrent unit (gates r, z, n).
        Gru = "gru",
    }
}

/// Activation functions; a bare string is accepted for each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Activation {
    /// Identity.
    Linear,
    /// Logistic.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Rectifier.
    Relu,
    /// Leaky rectifier.
    LeakyRelu {
        /// Default 0.01.
        #[serde(skip_serializing_if = "Option::is_none")]
        slope: Option<f64>,
    },
    /// Exponential linear unit.
    Elu {
        /// Default 1.0.
        #[serde(skip_serializing_if = "Option::is_none")]
        alpha: Option<f64>,
    },
    /// Leaky rectifier with learnable per-unit slopes.
    Prelu {
        /// Initial slope, default 0.25.
        #[serde(skip_serializing_if = "Option::is_none")]
        init: Option<f64>,
    },
    /// Scaled ELU.
    Selu,
    /// Gaussian error linear unit.
    Gelu,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x sigmoid(x)`.
    Silu,
}

wire_names! {
    /// Which fan a variance-scaling init divides by.
    pub enum FanMode {
        /// Inputs per unit (default).
        FanIn = "fan_in",
        /// Units.
        FanOut = "fan_out",
    }
}

/// Initialisations, with PyTorch's formulas (`torch.nn.init`). `normal`, `uniform` and
/// `constant` have required parameters, so only the others are accepted as bare strings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Init {
    /// N(0, std^2).
    Normal {
        /// Standard deviation (required).
        std: f64,
    },
    /// U(-limit, limit).
    Uniform {
        /// Half-width (required).
        limit: f64,
    },
    /// Every entry `value`.
    Constant {
        /// The value (required).
        value: f64,
    },
    /// Glorot uniform.
    XavierUniform {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
    },
    /// Glorot normal.
    XavierNormal {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
    },
    /// Kaiming uniform.
    HeUniform {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
        /// Default `fan_in`.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<FanMode>,
    },
    /// Kaiming normal.
    HeNormal {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
        /// Default `fan_in`.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<FanMode>,
    },
    /// LeCun normal.
    LecunNormal {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
        /// Default `fan_in`.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<FanMode>,
    },
    /// Scaled (semi-)orthogonal.
    Orthogonal {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
    },
    /// Scaled identity.
    Identity {
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        gain: Option<f64>,
    },
}

/// The norm inside a dense layer (`"norm": "batch"` is the bare form).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Norm {
    /// Batch norm.
    Batch {
        /// Addition: default 1e-5.
        #[serde(skip_serializing_if = "Option::is_none")]
        eps: Option<f64>,
        /// Addition: running-statistics momentum, default 0.1.
        #[serde(skip_serializing_if = "Option::is_none")]
        momentum: Option<f64>,
    },
    /// Layer norm.
    Layer {
        /// Addition: default 1e-5.
        #[serde(skip_serializing_if = "Option::is_none")]
        eps: Option<f64>,
    },
}

/// The data: a source tagged by `"type"` plus the fields every source shares.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Data {
    /// Which data and its parameters.
    #[serde(flatten)]
    pub source: DataSource,
    /// Fraction held out for validation, in `[0, 1)` (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Standardize each input feature to zero mean and unit variance before training (default
    /// `false`): the mean and standard deviation of each feature are measured on the training
    /// split (for sequences, over every time step) and applied to the training and the
    /// validation split; a constant feature is only centred. Works for every source, inline
    /// data included. The cure `input_scale` recommends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standardize: Option<bool>,
}

/// Generated or inline data.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DataSource {
    /// 2-D XOR clusters, 2 classes.
    Xor {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 0.1.
        #[serde(skip_serializing_if = "Option::is_none")]
        noise: Option<f64>,
    },
    /// 2-D interleaved spirals.
    Spirals {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 0.1.
        #[serde(skip_serializing_if = "Option::is_none")]
        noise: Option<f64>,
        /// Arms, default 2.
        #[serde(skip_serializing_if = "Option::is_none")]
        classes: Option<u64>,
    },
    /// Two concentric circles, 2 classes.
    Circles {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 0.1.
        #[serde(skip_serializing_if = "Option::is_none")]
        noise: Option<f64>,
        /// Inner / outer radius, default 0.5.
        #[serde(skip_serializing_if = "Option::is_none")]
        factor: Option<f64>,
    },
    /// Two half-moons, 2 classes.
    Moons {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 0.1.
        #[serde(skip_serializing_if = "Option::is_none")]
        noise: Option<f64>,
    },
    /// Gaussian blobs.
    Blobs {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 3.
        #[serde(skip_serializing_if = "Option::is_none")]
        classes: Option<u64>,
        /// Default 2.
        #[serde(skip_serializing_if = "Option::is_none")]
        dims: Option<u64>,
        /// Cluster std, default 1.0.
        #[serde(skip_serializing_if = "Option::is_none")]
        std: Option<f64>,
    },
    /// Regression y = sin(x) + noise.
    Sine {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 0.0.
        #[serde(skip_serializing_if = "Option::is_none")]
        noise: Option<f64>,
    },
    /// A random teacher network labels Gaussian inputs.
    Teacher {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Default 8.
        #[serde(skip_serializing_if = "Option::is_none")]
        dims: Option<u64>,
        /// Default 2; 0 = regression with `outputs` targets.
        #[serde(skip_serializing_if = "Option::is_none")]
        classes: Option<u64>,
        /// Default 1.
        #[serde(skip_serializing_if = "Option::is_none")]
        outputs: Option<u64>,
        /// Default 32.
        #[serde(skip_serializing_if = "Option::is_none")]
        hidden: Option<u64>,
    },
    /// Adding problem (sequences of (value, marker) pairs).
    Adding {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Time steps, default 50.
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
    },
    /// Copy-memory problem.
    Copy {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Symbols to remember, default 10.
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
        /// Blank steps before recall, default 10.
        #[serde(skip_serializing_if = "Option::is_none")]
        delay: Option<u64>,
    },
    /// Temporal-order problem.
    TemporalOrder {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Time steps, default 50.
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
    },
    /// Addition: marked-token recall, a retrieval task for attention: one-hot tokens with a
    /// marker channel on one position; the class is the marked token.
    MarkedRecall {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Time steps, default 16.
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
        /// Vocabulary size (the classes), default 16.
        #[serde(skip_serializing_if = "Option::is_none")]
        vocab: Option<u64>,
    },
    /// Parity of a bit sequence.
    Parity {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Bits, default 10.
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
    },
    /// Addition: next-step prediction of a noisy sine with random frequency and phase (a target
    /// at every time step).
    SineSequence {
        /// Default 1024.
        #[serde(skip_serializing_if = "Option::is_none")]
        samples: Option<u64>,
        /// Time steps, default 50.
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
        /// Gaussian noise std on the inputs, default 0.0.
        #[serde(skip_serializing_if = "Option::is_none")]
        noise: Option<f64>,
    },
    /// User samples x features.
    Inline {
        /// Samples (rows) x features.
        x: Vec<Vec<f64>>,
        /// One target per sample.
        y: InlineTargets,
    },
    /// User sequences: samples x time x features, all the same length (ragged sequences are
    /// refused; nothing is padded or masked).
    InlineSequences {
        /// Samples x time steps x features.
        x: Vec<Vec<Vec<f64>>>,
        /// One target per sequence or one per time step; see [`InlineSequenceTargets`].
        y: InlineSequenceTargets,
    },
}

/// Targets of inline data, told apart by how they are written: JSON integers are class labels
/// (`[0, 1, 1]`), numbers with a fraction or exponent are scalar regression targets
/// (`[0.5, -1.0]`), arrays are regression target rows (`[[0.1, 0.2]]`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum InlineTargets {
    /// Class labels (kept signed so that validation can name a negative one).
    Labels(Vec<i64>),
    /// One regression target per sample.
    Scalars(Vec<f64>),
    /// A row of regression targets per sample.
    Rows(Vec<Vec<f64>>),
}

/// Targets of inline sequences, told apart by nesting depth and by how numbers are written
/// (JSON integers vs numbers with a fraction or exponent):
///
/// | `y` | read as |
/// |---|---|
/// | `[c0, c1, ...]`, integers | one class label per sequence |
/// | `[v0, v1, ...]`, numbers | one regression value per sequence |
/// | `[[..K..], ...]`, numbers, not all integers | a row of `K` regression values per sequence |
/// | `[[c_0, ..., c_T-1], ...]`, all integers | a class label per time step (`T` per sequence) |
/// | `[[[..K..] x T], ...]` | a row of `K` regression values per time step |
///
/// So a list of integer lists is always per-step labels; per-sequence regression rows that
/// happen to be whole numbers are written with a decimal point (`[[1.0, 2.0]]`). Per-step
/// targets need `return_sequences: true` on the last rnn layer, per-sequence ones `false`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum InlineSequenceTargets {
    /// One target per sequence, written as the targets of `inline` data.
    PerSequence(InlineTargets),
    /// A class label per time step: samples x time (signed so validation can name a negative).
    ClassesPerStep(Vec<Vec<i64>>),
    /// A row of regression targets per time step: samples x time x outputs.
    ValuesPerStep(Vec<Vec<Vec<f64>>>),
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Training {
    /// Optimiser steps (default 1000); exclusive with `epochs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Passes over the training split; converted to steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Default 64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u64>,
    /// Default `cross_entropy` for class data, `mse` for regression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<Loss>,
    /// Default `adam`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    /// Default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// `null` = no clipping (always written so a patch can `replace` it).
    pub clip: Option<Clip>,
    /// How the learning rate changes over the steps, default `constant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Truncated BPTT window for recurrent layers (>= 1 time steps); `null` = full sequence.
    pub bptt_truncate: Option<u64>,
    /// Addition: reshuffle every epoch (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle: Option<bool>,
    /// Addition: `f32` (default) or `f64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
}

wire_names! {
    /// Loss functions.
    pub enum Loss {
        /// Softmax cross-entropy.
        CrossEntropy = "cross_entropy",
        /// Mean squared error.
        Mse = "mse",
        /// Binary cross-entropy with logits.
        Bce = "bce",
    }
}

wire_names! {
    /// Numeric precision of a run.
    pub enum Precision {
        /// 32-bit (default).
        F32 = "f32",
        /// 64-bit.
        F64 = "f64",
    }
}

/// Optimisers, PyTorch's update rules and defaults; a bare string is accepted for each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Optimizer {
    /// `torch.optim.SGD`.
    Sgd {
        /// Default 0.01.
        #[serde(skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
        /// Default 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        momentum: Option<f64>,
        /// Default 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        dampening: Option<f64>,
        /// Default false.
        #[serde(skip_serializing_if = "Option::is_none")]
        nesterov: Option<bool>,
    },
    /// `torch.optim.RMSprop`.
    Rmsprop {
        /// Default 0.01.
        #[serde(skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
        /// Default 0.99.
        #[serde(skip_serializing_if = "Option::is_none")]
        alpha: Option<f64>,
        /// Default 1e-8.
        #[serde(skip_serializing_if = "Option::is_none")]
        eps: Option<f64>,
        /// Default 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        momentum: Option<f64>,
        /// Default false.
        #[serde(skip_serializing_if = "Option::is_none")]
        centered: Option<bool>,
    },
    /// `torch.optim.Adagrad`.
    Adagrad {
        /// Default 0.01.
        #[serde(skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
        /// Default 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        lr_decay: Option<f64>,
        /// Default 1e-10.
        #[serde(skip_serializing_if = "Option::is_none")]
        eps: Option<f64>,
        /// Default 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        initial_accumulator_value: Option<f64>,
    },
    /// `torch.optim.Adam`.
    Adam {
        /// Default 0.001.
        #[serde(skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
        /// Default 0.9.
        #[serde(skip_serializing_if = "Option::is_none")]
        beta1: Option<f64>,
        /// Default 0.999.
        #[serde(skip_serializing_if = "Option::is_none")]
        beta2: Option<f64>,
        /// Default 1e-8.
        #[serde(skip_serializing_if = "Option::is_none")]
        eps: Option<f64>,
        /// Default false.
        #[serde(skip_serializing_if = "Option::is_none")]
        amsgrad: Option<bool>,
    },
    /// `torch.optim.AdamW` (weight decay from `training.weight_decay`, decoupled).
    Adamw {
        /// Default 0.001.
        #[serde(skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
        /// Default 0.9.
        #[serde(skip_serializing_if = "Option::is_none")]
        beta1: Option<f64>,
        /// Default 0.999.
        #[serde(skip_serializing_if = "Option::is_none")]
        beta2: Option<f64>,
        /// Default 1e-8.
        #[serde(skip_serializing_if = "Option::is_none")]
        eps: Option<f64>,
        /// Default false.
        #[serde(skip_serializing_if = "Option::is_none")]
        amsgrad: Option<bool>,
    },
}

/// Gradient clipping; `max` is required.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Clip {
    /// Rescale when the global L2 norm exceeds `max`.
    GlobalNorm {
        /// Threshold.
        max: f64,
    },
    /// Clamp each entry to `[-max, max]`.
    Value {
        /// Threshold.
        max: f64,
    },
}

/// How the learning rate changes over the steps: a factor on the optimiser's `lr` at each
/// update. `constant` and `cosine` may be written as their bare name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// The same learning rate at every step.
    Constant,
    /// Linear warm-up from `lr / warmup_steps` to `lr` over the first `warmup_steps` steps, then
    /// constant.
    Warmup {
        /// Steps of the warm-up, 1 ... the run's steps.
        warmup_steps: u64,
    },
    /// The same warm-up (none by default), then cosine decay from `lr` to 0 at the last step.
    Cosine {
        /// Steps of the warm-up, default 0; fewer than the run's steps.
        #[serde(skip_serializing_if = "Option::is_none")]
        warmup_steps: Option<u64>,
    },
}

/// What to record.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Probes {
    /// Probe every this many steps, default 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Gradient histograms, default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histograms: Option<bool>,
    /// Series are downsampled to at most this many points, default 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_points: Option<u64>,
    /// Return the trained parameters, default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<bool>,
}
