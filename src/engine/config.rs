//! Validated engine configuration: what a network, its data and its training are.
//!
//! These are plain Rust types with no serde. The wire spec (`crate::spec`) checks a request and
//! converts it into these once ("parse, don't validate"); the engine trusts their documented
//! invariants but still returns [`crate::engine::EngineError`] rather than panicking where a
//! violated invariant would otherwise index out of bounds.

use std::collections::BTreeMap;

/// Explicit parameter values for one layer, keyed by PyTorch `state_dict` name (`weight`, `bias`,
/// `running_mean`, `prelu_weight`, ...), flattened row-major. Shapes are checked when the layer is
/// built.
pub type ExplicitParams = BTreeMap<String, Vec<f64>>;

/// A whole network: input width and the layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Features per sample (per time step for sequences).
    pub input_dim: usize,
    /// Layers, shorthands (`mlp`) already expanded.
    pub layers: Vec<LayerConfig>,
}

/// One layer of the network.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerConfig {
    /// `y = act(norm(x W^T + b))`.
    Dense(DenseConfig),
    /// Standalone batch normalisation over the feature axis.
    BatchNorm(NormConfig),
    /// Standalone layer normalisation over the feature axis.
    LayerNorm(NormConfig),
    /// Inverted dropout; identity in evaluation.
    Dropout {
        /// Probability of zeroing a unit, in `[0, 1)`.
        rate: f64,
    },
    /// Elementwise activation; `params` may hold `prelu_weight`.
    Activation {
        /// The function.
        activation: Activation,
        /// Explicit parameters (`prelu_weight`).
        params: ExplicitParams,
    },
    /// `y = x + f(x)` where `f` is the inner stack; inner output width must equal input width.
    Residual(Vec<LayerConfig>),
    /// A recurrent layer unrolled over the sequence.
    Rnn(RnnConfig),
    /// Multi-head self-attention over the time steps (`layers::attention`); keeps the width.
    Attention(AttentionConfig),
    /// One row per sequence from the rows of its time steps (`layers::pool`).
    Pool(PoolKind),
    /// A vector per time step added to the rows of that step (`layers::positional`).
    Positional(PositionalConfig),
    /// `depth` transformer encoder blocks (PyTorch's `nn.TransformerEncoderLayer`), built from
    /// attention, dense and layer-norm layers with scaled skips (see [`TransformerConfig`]).
    Transformer(TransformerConfig),
}

/// `depth` encoder blocks of width `d` (the input width), each PyTorch's
/// `nn.TransformerEncoderLayer(d, heads, ffn, dropout=0, activation, batch_first=True,
/// norm_first)` with the skip scaled by `alpha` (DeepNorm, Wang et al. 2022; 1 is PyTorch's):
/// ```text
/// post-LN: x = norm1(alpha x + self_attn(x));  x = norm2(alpha x + linear2(act(linear1(x))))
/// pre-LN:  x = alpha x + self_attn(norm1(x));  x = alpha x + linear2(act(linear1(norm2(x))))
/// ```
/// Init as PyTorch: `self_attn` as the attention layer, `linear1`/`linear2` weight and bias
/// U(±1/sqrt(fan_in)) (`nn.Linear`'s default), norms 1 and 0.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerConfig {
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads; must divide `d`.
    pub heads: usize,
    /// Width of the feed-forward layer `linear1`.
    pub ffn: usize,
    /// Activation between `linear1` and `linear2` (PyTorch allows relu and gelu).
    pub activation: Activation,
    /// Pre-LN (true) or post-LN (false, PyTorch's default).
    pub norm_first: bool,
    /// Causal attention mask.
    pub causal: bool,
    /// Scale of the skip (residual) branch.
    pub alpha: f64,
    /// Layer-norm epsilon.
    pub eps: f64,
    /// Explicit parameters of each block by `nn.TransformerEncoderLayer`'s `state_dict` names
    /// (`self_attn.in_proj_weight`, `linear1.weight`, `norm2.bias`, ...); empty, or one map per
    /// block.
    pub blocks: Vec<ExplicitParams>,
}

/// The sub-layers of a transformer block, named by their `state_dict` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockPart {
    /// The attention.
    SelfAttn,
    /// The first feed-forward layer (`d -> ffn`).
    Linear1,
    /// The second feed-forward layer (`ffn -> d`).
    Linear2,
    /// The norm of the attention branch.
    Norm1,
    /// The norm of the feed-forward branch.
    Norm2,
}

impl BlockPart {
    /// The `state_dict` prefix (`self_attn`, `linear1`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BlockPart::SelfAttn => "self_attn",
            BlockPart::Linear1 => "linear1",
            BlockPart::Linear2 => "linear2",
            BlockPart::Norm1 => "norm1",
            BlockPart::Norm2 => "norm2",
        }
    }

    /// Every part, in `state_dict` order.
    pub const ALL: [BlockPart; 5] =
        [BlockPart::SelfAttn, BlockPart::Linear1, BlockPart::Linear2, BlockPart::Norm1, BlockPart::Norm2];
}

impl TransformerConfig {
    /// The configuration of `part` in block `block` on width `d`: its init, and the explicit
    /// parameters of that block whose names start with the part's prefix, without it.
    pub fn part(&self, block: usize, part: BlockPart, d: usize) -> LayerConfig {
        let prefix = format!("{}.", part.name());
        let params: ExplicitParams = self
            .blocks
            .get(block)
            .map(|m| {
                m.iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|n| (n.to_string(), v.clone()))).collect()
            })
            .unwrap_or_default();
        let linear = |units: usize, fan_in: usize, activation: Activation| {
            let limit = 1.0 / (fan_in.max(1) as f64).sqrt();
            LayerConfig::Dense(DenseConfig {
                units,
                activation,
                init: Init::Uniform { limit },
                bias_init: Init::Uniform { limit },
                norm: None,
                norm_config: NormConfig::default(),
                params: params.clone(),
            })
        };
        match part {
            BlockPart::SelfAttn => LayerConfig::Attention(AttentionConfig {
                heads: self.heads,
                causal: self.causal,
                params: params.clone(),
            }),
            BlockPart::Linear1 => linear(self.ffn, d, self.activation),
            BlockPart::Linear2 => linear(d, self.ffn, Activation::Linear),
            BlockPart::Norm1 | BlockPart::Norm2 => {
                LayerConfig::LayerNorm(NormConfig { eps: self.eps, params: params.clone(), ..NormConfig::default() })
            }
        }
    }

    /// The same network with `alpha` = 1 written with plain residual blocks (what the memory
    /// estimate and the mean-field notes read; the skip scale changes neither).
    pub fn as_residual_layers(&self, d: usize) -> Vec<LayerConfig> {
        let mut out = Vec::new();
        for b in 0..self.depth {
            let p = |part| self.part(b, part, d);
            if self.norm_first {
                out.push(LayerConfig::Residual(vec![p(BlockPart::Norm1), p(BlockPart::SelfAttn)]));
                out.push(LayerConfig::Residual(vec![
                    p(BlockPart::Norm2),
                    p(BlockPart::Linear1),
                    p(BlockPart::Linear2),
                ]));
            } else {
                out.push(LayerConfig::Residual(vec![p(BlockPart::SelfAttn)]));
                out.push(p(BlockPart::Norm1));
                out.push(LayerConfig::Residual(vec![p(BlockPart::Linear1), p(BlockPart::Linear2)]));
                out.push(p(BlockPart::Norm2));
            }
        }
        out
    }
}

/// Settings of a positional encoding; its width is its input width.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionalConfig {
    /// Fixed or learned.
    pub kind: PositionalKind,
    /// Time steps of the sequences (the table's rows).
    pub steps: usize,
    /// Explicit `weight` (learned only), steps x width row-major.
    pub params: ExplicitParams,
}

/// Which positional encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionalKind {
    /// Vaswani et al.'s sines and cosines (no parameters).
    Sinusoidal,
    /// A learned table.
    Learned,
}

/// Settings of an attention layer; its width `d` is its input width.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionConfig {
    /// Number of heads; must divide `d`.
    pub heads: usize,
    /// Position `t` attends only to positions `<= t`.
    pub causal: bool,
    /// Explicit parameter values by `state_dict` name (`in_proj_weight`, `in_proj_bias`,
    /// `out_proj.weight`, `out_proj.bias`), row-major (replace the random init).
    pub params: ExplicitParams,
}

/// How a pool layer makes one row of a sequence's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// The last time step.
    Last,
    /// The mean over the time steps.
    Mean,
}

/// Which recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// `h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`.
    Vanilla,
    /// Long short-term memory (gates i, f, g, o as PyTorch packs them).
    Lstm,
    /// Gated recurrent unit (gates r, z, n as PyTorch packs them).
    Gru,
}

impl CellKind {
    /// Gate blocks stacked in `weight_ih` / `weight_hh`.
    pub fn gates(&self) -> usize {
        match self {
            CellKind::Vanilla => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// A recurrent layer.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnConfig {
    /// The cell.
    pub cell: CellKind,
    /// Hidden width.
    pub units: usize,
    /// Activation of the vanilla cell (tanh, relu or sigmoid; ignored by gated cells).
    pub activation: Activation,
    /// Init of each gate block of `weight_ih` (gates x units, inputs).
    pub init: Init,
    /// Init of each gate block of `weight_hh` (units x units per gate).
    pub recurrent_init: Init,
    /// Output every time step (rows `T x batch`, time-major) instead of the last one.
    pub return_sequences: bool,
    /// Initial value of the LSTM forget-gate bias (in `bias_ih`; 0 as PyTorch, 1.0 as
    /// Jozefowicz et al. 2015 recommend).
    pub forget_bias: f64,
    /// Explicit `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`, flattened row-major.
    pub params: ExplicitParams,
}

/// A dense (fully connected) layer.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseConfig {
    /// Output width.
    pub units: usize,
    /// Applied after the optional norm.
    pub activation: Activation,
    /// Weight initialisation (`weight` is units x inputs, as in PyTorch).
    pub init: Init,
    /// Bias initialisation (default zeros).
    pub bias_init: Init,
    /// Optional normalisation between the affine map and the activation.
    pub norm: Option<NormKind>,
    /// Norm settings when `norm` is set.
    pub norm_config: NormConfig,
    /// Explicit parameters: `weight`, `bias`, `prelu_weight`, and for the norm `norm_weight`,
    /// `norm_bias`, `running_mean`, `running_var`.
    pub params: ExplicitParams,
}

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// Batch statistics in training, running statistics in evaluation.
    Batch,
    /// Per-sample statistics over features.
    Layer,
}

/// Settings of a batch or layer norm.
#[derive(Debug, Clone, PartialEq)]
pub struct NormConfig {
    /// Added to the variance before the square root (PyTorch default 1e-5).
    pub eps: f64,
    /// Running-statistics momentum for batch norm (PyTorch default 0.1).
    pub momentum: f64,
    /// Explicit parameters: `weight`, `bias`, `running_mean`, `running_var`.
    pub params: ExplicitParams,
}

impl Default for NormConfig {
    fn default() -> Self {
        NormConfig { eps: 1e-5, momentum: 0.1, params: ExplicitParams::new() }
    }
}

/// Elementwise activation functions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `x`
    Linear,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `tanh x`
    Tanh,
    /// `max(0, x)`
    Relu,
    /// `x` if `x > 0` else `slope * x`
    LeakyRelu {
        /// Negative-side slope (PyTorch default 0.01).
        slope: f64,
    },
    /// `x` if `x > 0` else `alpha (e^x - 1)`
    Elu {
        /// PyTorch default 1.0.
        alpha: f64,
    },
    /// Leaky ReLU with a learnable slope per unit.
    Prelu {
        /// Initial slope (PyTorch default 0.25).
        init: f64,
    },
    /// `scale * elu(x, alpha)` with Klambauer et al.'s constants.
    Selu,
    /// `x Phi(x)` (exact, erf-based, as PyTorch's default).
    Gelu,
    /// `ln(1 + e^x)` (PyTorch: beta 1, linear above 20).
    Softplus,
    /// `x sigmoid(x)`
    Silu,
}

/// Which fan a variance-scaling init divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanMode {
    /// Inputs per unit (preserves forward variance).
    FanIn,
    /// Units (preserves backward variance).
    FanOut,
}

/// Weight initialisations with PyTorch's formulas (`torch.nn.init`); each variant states its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// N(0, std^2).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// U(-limit, limit).
    Uniform {
        /// Half-width.
        limit: f64,
    },
    /// Every entry `value`.
    Constant {
        /// The value.
        value: f64,
    },
    /// U(-l, l), l = gain sqrt(6 / (fan_in + fan_out)).
    XavierUniform {
        /// Multiplier.
        gain: f64,
    },
    /// N(0, s^2), s = gain sqrt(2 / (fan_in + fan_out)).
    XavierNormal {
        /// Multiplier.
        gain: f64,
    },
    /// U(-l, l), l = gain sqrt(6 / fan).
    HeUniform {
        /// Multiplier.
        gain: f64,
        /// Which fan.
        mode: FanMode,
    },
    /// N(0, s^2), s = gain sqrt(2 / fan).
    HeNormal {
        /// Multiplier.
        gain: f64,
        /// Which fan.
        mode: FanMode,
    },
    /// N(0, s^2), s = gain sqrt(1 / fan).
    LecunNormal {
        /// Multiplier.
        gain: f64,
        /// Which fan.
        mode: FanMode,
    },
    /// gain * a (semi-)orthogonal matrix from the QR of a Gaussian matrix.
    Orthogonal {
        /// Multiplier.
        gain: f64,
    },
    /// gain * I (padded with zeros when not square).
    Identity {
        /// Multiplier.
        gain: f64,
    },
}

/// Data to train on, generated deterministically from the run's seed.
#[derive(Debug, Clone, PartialEq)]
pub enum DataConfig {
    /// 2-D XOR: four Gaussian clusters, label = sign(x0) xor sign(x1).
    Xor {
        /// Number of samples.
        samples: usize,
        /// Gaussian noise std added to each point.
        noise: f64,
    },
    /// Interleaved 2-D spirals, one arm per class.
    Spirals {
        /// Number of samples.
        samples: usize,
        /// Gaussian noise std.
        noise: f64,
        /// Number of arms (classes), >= 2.
        classes: usize,
    },
    /// Two concentric circles (sklearn `make_circles`).
    Circles {
        /// Number of samples.
        samples: usize,
        /// Gaussian noise std.
        noise: f64,
        /// Inner radius / outer radius, in (0, 1).
        factor: f64,
    },
    /// Two interleaved half-moons (sklearn `make_moons`).
    Moons {
        /// Number of samples.
        samples: usize,
        /// Gaussian noise std.
        noise: f64,
    },
    /// Isotropic Gaussian blobs, one per class, centres U(-10, 10)^dims (sklearn `make_blobs`).
    Blobs {
        /// Number of samples.
        samples: usize,
        /// Number of classes.
        classes: usize,
        /// Input dimensions.
        dims: usize,
        /// Cluster standard deviation.
        std: f64,
    },
    /// Regression: x ~ U(-pi, pi), y = sin(x) + noise.
    Sine {
        /// Number of samples.
        samples: usize,
        /// Gaussian noise std on the target.
        noise: f64,
    },
    /// A random tanh network labels N(0, I) inputs.
    Teacher {
        /// Number of samples.
        samples: usize,
        /// Input dimensions.
        dims: usize,
        /// Classes (argmax of the teacher's output) or, with `classes == 0`, regression with
        /// `outputs` targets.
        classes: usize,
        /// Regression outputs when `classes == 0`.
        outputs: usize,
        /// Hidden width of the teacher.
        hidden: usize,
    },
    /// Adding problem (Le et al. 2015 variant): inputs (value ~ U[0,1], marker); exactly two
    /// markers, one in each half; target the sum of the two marked values (regression).
    Adding {
        /// Number of sequences.
        samples: usize,
        /// Time steps.
        length: usize,
    },
    /// Copy-memory problem: `length` symbols, `delay` blanks, then reproduce the symbols;
    /// targets at every step (blank elsewhere).
    Copy {
        /// Number of sequences.
        samples: usize,
        /// Symbols to remember.
        length: usize,
        /// Blank steps between seeing and recalling them.
        delay: usize,
    },
    /// Temporal order (Hochreiter & Schmidhuber 1997): the order of two relevant symbols among
    /// distractors, 4 classes.
    TemporalOrder {
        /// Number of sequences.
        samples: usize,
        /// Time steps.
        length: usize,
    },
    /// Marked-token recall: one-hot tokens plus a marker channel on one position; the class is
    /// the marked token (`vocab` classes).
    MarkedRecall {
        /// Number of sequences.
        samples: usize,
        /// Time steps.
        length: usize,
        /// Vocabulary size (classes).
        vocab: usize,
    },
    /// Parity of a bit sequence, 2 classes.
    Parity {
        /// Number of sequences.
        samples: usize,
        /// Time steps.
        length: usize,
    },
    /// Next-step prediction of a noisy sine wave with random phase and frequency; targets at
    /// every step (regression).
    SineSequence {
        /// Number of sequences.
        samples: usize,
        /// Time steps.
        length: usize,
        /// Gaussian noise std on the inputs.
        noise: f64,
    },
    /// User-supplied sequences (equal lengths; ragged sequences are rejected).
    InlineSequences {
        /// samples x time x features.
        x: Vec<Vec<Vec<f64>>>,
        /// One target per sequence, or (with `return_sequences`) one per time step.
        y: InlineSequenceTargets,
    },
    /// User-supplied samples.
    Inline {
        /// Row-major samples x features.
        x: Vec<Vec<f64>>,
        /// Targets.
        y: InlineTargets,
    },
}

/// Targets of inline data.
#[derive(Debug, Clone, PartialEq)]
pub enum InlineTargets {
    /// Class indices.
    Classes(Vec<usize>),
    /// Regression targets, one row per sample.
    Values(Vec<Vec<f64>>),
}

/// Targets of inline sequences.
#[derive(Debug, Clone, PartialEq)]
pub enum InlineSequenceTargets {
    /// One target per sequence (read from the last time step).
    PerSequence(InlineTargets),
    /// One class label per time step: samples x time.
    ClassesPerStep(Vec<Vec<usize>>),
    /// One regression row per time step: samples x time x outputs.
    ValuesPerStep(Vec<Vec<Vec<f64>>>),
}

/// Loss functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy over class logits, mean over the batch.
    CrossEntropy,
    /// Mean squared error, mean over all elements.
    Mse,
    /// Binary cross-entropy with logits, mean over all elements.
    Bce,
}

/// Optimisers with PyTorch's update rules; `None` fields take PyTorch's defaults at validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 = none).
        momentum: f64,
        /// Dampening of the momentum buffer.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// `torch.optim.RMSprop`.
    Rmsprop {
        /// Learning rate.
        lr: f64,
        /// Smoothing constant (default 0.99).
        alpha: f64,
        /// Denominator epsilon (default 1e-8).
        eps: f64,
        /// Momentum (default 0).
        momentum: f64,
        /// Centred variant.
        centered: bool,
    },
    /// `torch.optim.Adagrad`.
    Adagrad {
        /// Learning rate.
        lr: f64,
        /// Learning-rate decay (default 0).
        lr_decay: f64,
        /// Denominator epsilon (default 1e-10).
        eps: f64,
        /// Initial accumulator (default 0).
        initial_accumulator_value: f64,
    },
    /// `torch.optim.Adam` (L2 weight decay added to the gradient).
    Adam {
        /// Learning rate.
        lr: f64,
        /// First-moment decay (default 0.9).
        beta1: f64,
        /// Second-moment decay (default 0.999).
        beta2: f64,
        /// Denominator epsilon (default 1e-8).
        eps: f64,
        /// AMSGrad variant.
        amsgrad: bool,
    },
    /// `torch.optim.AdamW` (decoupled weight decay).
    AdamW {
        /// Learning rate.
        lr: f64,
        /// First-moment decay (default 0.9).
        beta1: f64,
        /// Second-moment decay (default 0.999).
        beta2: f64,
        /// Denominator epsilon (default 1e-8).
        eps: f64,
        /// AMSGrad variant.
        amsgrad: bool,
    },
}

/// Gradient clipping, applied after backward and before the optimiser step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipConfig {
    /// Scale all gradients by `max / (norm + 1e-6)` when the global L2 norm exceeds `max`
    /// (`torch.nn.utils.clip_grad_norm_`).
    GlobalNorm {
        /// Threshold.
        max: f64,
    },
    /// Clamp every gradient entry to `[-max, max]` (`clip_grad_value_`).
    Value {
        /// Threshold.
        max: f64,
    },
}

/// Numeric precision of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats (default; fast).
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Number of optimiser steps (epochs are converted by the spec layer).
    pub steps: usize,
    /// Samples per step; clamped to the training-set size.
    pub batch_size: usize,
    /// Loss.
    pub loss: LossKind,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// How the optimiser's learning rate changes over the steps.
    pub schedule: Schedule,
    /// L2 penalty (coupled for all optimisers but AdamW, where it is decoupled).
    pub weight_decay: f64,
    /// Optional gradient clipping.
    pub clip: Option<ClipConfig>,
    /// Reshuffle the training set every epoch.
    pub shuffle: bool,
    /// Precision.
    pub precision: Precision,
    /// Fraction of samples held out for validation, in `[0, 1)`.
    pub validation_split: f64,
    /// Standardize each input feature to zero mean and unit variance with the training split's
    /// statistics, applied to both splits (`engine::data::prepare`).
    pub standardize: bool,
    /// Truncated BPTT: the recurrent gradient flows back at most this many steps from the last
    /// time step (see `engine::layers::rnn`). `None` = full BPTT.
    pub bptt_truncate: Option<usize>,
}

/// How the learning rate changes over the steps: a factor on the optimiser's `lr` at each
/// update `s = 0, 1, ..., steps - 1` ([`Schedule::factor`]).
/// ```text
/// constant:  1
/// warmup:    (s + 1) / W for s < W, then 1                     (linear warm-up over W updates)
/// cosine:    the warm-up, then (1 + cos(pi (s - W) / (steps - W))) / 2   (down to ~0 at the end)
/// ```
/// Warm-up as the original transformer used it (Vaswani et al. 2017) and as post-LN stacks need
/// it (Xiong et al. 2020); cosine decay as `torch.optim.lr_scheduler.CosineAnnealingLR` with
/// `T_max = steps - W`, `eta_min = 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The same learning rate at every step.
    Constant,
    /// Linear warm-up over the first `warmup_steps` updates, then constant.
    Warmup {
        /// Updates of the warm-up (>= 1).
        warmup_steps: usize,
    },
    /// Linear warm-up over `warmup_steps` updates (0: none), then cosine decay.
    Cosine {
        /// Updates of the warm-up.
        warmup_steps: usize,
    },
}

impl Schedule {
    /// The factor on the learning rate of update `s` (0-based) of a run of `steps` updates.
    pub fn factor(self, s: usize, steps: usize) -> f64 {
        let warm = |w: usize| if s < w { (s + 1) as f64 / w as f64 } else { 1.0 };
        match self {
            Schedule::Constant => 1.0,
            Schedule::Warmup { warmup_steps } => warm(warmup_steps),
            Schedule::Cosine { warmup_steps } if s < warmup_steps => warm(warmup_steps),
            Schedule::Cosine { warmup_steps } => {
                let span = steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = (s - warmup_steps) as f64 / span;
                0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// Updates of the warm-up (0 for `constant`).
    pub fn warmup_steps(self) -> usize {
        match self {
            Schedule::Constant => 0,
            Schedule::Warmup { warmup_steps } | Schedule::Cosine { warmup_steps } => warmup_steps,
        }
    }
}

/// What to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// Probe every this many steps (plus step 0 and the last step). >= 1.
    pub every: usize,
    /// Record histograms of log10|g|.
    pub histograms: bool,
    /// Return the trained parameters.
    pub parameters: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { every: 10, histograms: false, parameters: false }
    }
}

/// A complete, validated run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Seed of every random choice (init, data, shuffling, dropout).
    pub seed: u64,
    /// The network.
    pub network: NetworkConfig,
    /// The data.
    pub data: DataConfig,
    /// The training.
    pub training: TrainConfig,
    /// The probes.
    pub probes: ProbeConfig,
}
