//! Defaults and expansion: the spec "as run".
//!
//! Owns every default value of the wire format (the constants below are the only place they are
//! written) and [`Spec::expanded`], which applies them, replaces shorthands (`mlp`) by what they
//! stand for and bare strings by tagged objects. The expanded spec is what the report echoes and
//! what RFC 6902 patches in recommendations are written against, so it must be canonical: the
//! same run always expands to the same JSON, and expanding an expanded spec changes nothing.
//!
//! Depends on the wire types and on `convert` (for the engine round trip that fills the defaults
//! of activations, inits, norms and optimisers); must not depend on HTTP or async crates.

use super::error::{index, join};
use super::types::*;

// ---------------------------------------------------------------------------------------------
// Defaults (PyTorch's wherever PyTorch has one).

/// Seed when none is given.
pub(crate) const SEED: u64 = 0;
/// `training.steps` when neither steps nor epochs are given.
pub(crate) const STEPS: u64 = 1000;
/// `training.batch_size`.
pub(crate) const BATCH_SIZE: u64 = 64;
/// `training.weight_decay`.
pub(crate) const WEIGHT_DECAY: f64 = 0.0;
/// `training.shuffle`.
pub(crate) const SHUFFLE: bool = true;
/// `training.precision`.
pub(crate) const PRECISION: Precision = Precision::F32;
/// `training.optimizer`: Adam with its own defaults.
pub(crate) const OPTIMIZER: Optimizer =
    Optimizer::Adam { lr: None, beta1: None, beta2: None, eps: None, amsgrad: None };

/// SGD's `lr` (PyTorch requires one; 0.01 is the customary choice).
pub(crate) const SGD_LR: f64 = 0.01;
/// RMSprop's `lr` (PyTorch's default).
pub(crate) const RMSPROP_LR: f64 = 0.01;
/// Adagrad's `lr` (PyTorch's default).
pub(crate) const ADAGRAD_LR: f64 = 0.01;
/// Adam's and AdamW's `lr` (PyTorch's default).
pub(crate) const ADAM_LR: f64 = 0.001;
/// SGD/RMSprop momentum.
pub(crate) const MOMENTUM: f64 = 0.0;
/// SGD dampening.
pub(crate) const DAMPENING: f64 = 0.0;
/// RMSprop smoothing constant.
pub(crate) const RMSPROP_ALPHA: f64 = 0.99;
/// RMSprop / Adam epsilon.
pub(crate) const EPS: f64 = 1e-8;
/// Adagrad epsilon.
pub(crate) const ADAGRAD_EPS: f64 = 1e-10;
/// Adam first-moment decay.
pub(crate) const BETA1: f64 = 0.9;
/// Adam second-moment decay.
pub(crate) const BETA2: f64 = 0.999;

/// Samples of every generated data set.
pub(crate) const SAMPLES: u64 = 1024;
/// Noise of xor, spirals, circles and moons.
pub(crate) const NOISE: f64 = 0.1;
/// Noise of sine and sine_sequence.
pub(crate) const SINE_NOISE: f64 = 0.0;
/// Circles' inner/outer radius.
pub(crate) const CIRCLES_FACTOR: f64 = 0.5;
/// Spiral arms.
pub(crate) const SPIRALS_CLASSES: u64 = 2;
/// Blob count.
pub(crate) const BLOBS_CLASSES: u64 = 3;
/// Blob dimensions.
pub(crate) const BLOBS_DIMS: u64 = 2;
/// Blob standard deviation.
pub(crate) const BLOBS_STD: f64 = 1.0;
/// Teacher input dimensions.
pub(crate) const TEACHER_DIMS: u64 = 8;
/// Teacher classes (0 would mean regression).
pub(crate) const TEACHER_CLASSES: u64 = 2;
/// Teacher regression outputs.
pub(crate) const TEACHER_OUTPUTS: u64 = 1;
/// Teacher hidden width.
pub(crate) const TEACHER_HIDDEN: u64 = 32;
/// Sequence length of adding, temporal_order and sine_sequence.
pub(crate) const SEQUENCE_LENGTH: u64 = 50;
/// Copy-problem symbols to remember.
pub(crate) const COPY_LENGTH: u64 = 10;
/// Copy-problem blank steps.
pub(crate) const COPY_DELAY: u64 = 10;
/// Parity bits.
pub(crate) const PARITY_LENGTH: u64 = 10;
/// Marked-recall time steps.
pub(crate) const RECALL_LENGTH: u64 = 16;
/// Marked-recall vocabulary.
pub(crate) const RECALL_VOCAB: u64 = 16;
/// `data.validation_split`.
pub(crate) const VALIDATION_SPLIT: f64 = 0.0;

/// `probes.every`.
pub(crate) const PROBE_EVERY: u64 = 10;
/// `probes.max_points`.
pub(crate) const PROBE_MAX_POINTS: u64 = 200;
/// `probes.histograms`.
pub(crate) const PROBE_HISTOGRAMS: bool = false;
/// `probes.parameters`.
pub(crate) const PROBE_PARAMETERS: bool = false;
/// `return_gradients`.
pub(crate) const RETURN_GRADIENTS: bool = false;

/// Dense layers are affine unless told otherwise (as `torch.nn.Linear`).
pub(crate) const DENSE_ACTIVATION: Activation = Activation::Linear;
/// `mlp` layers are hidden layers, so they get a non-linearity by default.
pub(crate) const MLP_ACTIVATION: Activation = Activation::Relu;
/// Weight init of dense and mlp layers and of an rnn's input weights: Xavier (Glorot) uniform.
pub(crate) const WEIGHT_INIT: Init = Init::XavierUniform { gain: None };
/// Bias init: zeros.
pub(crate) const BIAS_INIT: Init = Init::Constant { value: 0.0 };
/// An rnn's recurrent weights.
pub(crate) const RECURRENT_INIT: Init = Init::Orthogonal { gain: None };
/// An rnn's cell.
pub(crate) const RNN_CELL: Cell = Cell::Vanilla;
/// A vanilla rnn's activation.
pub(crate) const RNN_ACTIVATION: Activation = Activation::Tanh;
/// An lstm's initial forget-gate bias (PyTorch's 0).
pub(crate) const FORGET_BIAS: f64 = 0.0;
/// `leaky_relu` slope (PyTorch).
pub(crate) const LEAKY_RELU_SLOPE: f64 = 0.01;
/// `elu` alpha (PyTorch).
pub(crate) const ELU_ALPHA: f64 = 1.0;
/// `prelu` initial slope (PyTorch).
pub(crate) const PRELU_INIT: f64 = 0.25;
/// Init gain.
pub(crate) const GAIN: f64 = 1.0;
/// Init fan mode.
pub(crate) const FAN_MODE: FanMode = FanMode::FanIn;
/// Norm epsilon (PyTorch).
pub(crate) const NORM_EPS: f64 = 1e-5;
/// Batch-norm running-statistics momentum (PyTorch).
pub(crate) const NORM_MOMENTUM: f64 = 0.1;
/// Dropout rate (PyTorch).
pub(crate) const DROPOUT_RATE: f64 = 0.5;
/// Default learning-rate schedule.
pub(crate) const SCHEDULE: Schedule = Schedule::Constant;
/// Default `causal` of an attention layer.
pub(crate) const ATTENTION_CAUSAL: bool = false;
/// Default `depth` of a transformer.
pub(crate) const TRANSFORMER_DEPTH: u64 = 1;
/// Default `activation` of a transformer's feed-forward layer (PyTorch's).
pub(crate) const TRANSFORMER_ACTIVATION: Activation = Activation::Relu;
/// Default `norm_first` of a transformer (PyTorch's: post-LN).
pub(crate) const TRANSFORMER_NORM_FIRST: bool = false;
/// Default skip scale `alpha` of a transformer.
pub(crate) const TRANSFORMER_ALPHA: f64 = 1.0;
/// Default `encoding` of a positional layer.
pub(crate) const POSITIONAL_ENCODING: PositionalEncoding = PositionalEncoding::Sinusoidal;
/// Default `mode` of a pool layer.
pub(crate) const POOL_MODE: PoolMode = PoolMode::Last;

// ---------------------------------------------------------------------------------------------
// Where an expanded layer came from.

/// The position in the *original* spec that an expanded layer stands for, so that validation
/// can point at what the user wrote rather than at a layer that exists only after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The layer was written at this pointer.
    Written(String),
    /// The layer is one of those the `mlp` at this pointer expands into.
    Mlp(String),
}

impl Origin {
    /// The layer's pointer.
    pub(crate) fn ptr(&self) -> &str {
        match self {
            Origin::Written(p) | Origin::Mlp(p) => p,
        }
    }

    /// Pointer of a field of the layer, given as a relative path (`"units"`, `"init/gain"`). A
    /// dense layer from an mlp maps `units` to the mlp's `width`, the fields the mlp passes down
    /// to themselves, and anything else (which the mlp cannot have set) to the mlp itself.
    pub(crate) fn at(&self, field: &str) -> String {
        match self {
            Origin::Written(p) => format!("{p}/{field}"),
            Origin::Mlp(p) => {
                let first = field.split('/').next().unwrap_or(field);
                match first {
                    "units" => format!("{p}/width"),
                    "activation" | "init" | "bias_init" | "norm" => format!("{p}/{field}"),
                    _ => p.clone(),
                }
            }
        }
    }

    /// The name of a field as written: a dense layer's `units` is its mlp's `width`.
    pub(crate) fn name<'a>(&self, field: &'a str) -> &'a str {
        match (self, field) {
            (Origin::Mlp(_), "units") => "width",
            _ => field,
        }
    }

    /// Origin of the `i`-th layer inside this (residual) layer's `layers`.
    fn inner(&self, i: usize) -> Origin {
        match self {
            Origin::Written(p) => Origin::Written(index(&join(p, "layers"), i)),
            Origin::Mlp(p) => Origin::Mlp(p.clone()),
        }
    }
}

/// Origins of a list of expanded layers, parallel to it; `inner` is parallel to a residual
/// block's own layers (empty for other layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    pub(crate) origin: Origin,
    pub(crate) inner: Vec<Placed>,
}

// ---------------------------------------------------------------------------------------------
// Expansion.

impl Spec {
    /// The spec as run: every `mlp` replaced by the dense layers it stands for, every default
    /// written out, every bare string replaced by its tagged object (`"relu"` ->
    /// `{"type": "relu"}`). Idempotent, and parsing the serialised result validates to the same
    /// [`RunConfig`](crate::engine::config::RunConfig).
    ///
    /// An `mlp` becomes `depth` dense layers of `width` units with its `activation`, `init`,
    /// `bias_init` and `norm`. With `"residual": true`, each of those whose input width equals
    /// `width` is wrapped in its own residual block (`{"type": "residual", "layers": [dense]}`).
    /// In practice: when the mlp's input is already `width` wide, all `depth` layers are
    /// wrapped; otherwise the first one (which changes the width) stays a plain dense layer and
    /// the remaining `depth - 1` are wrapped.
    ///
    /// `epochs` is kept as written (it is the user's intent, and a patch may change it); steps
    /// are derived from it at validation. `steps` is written out only when `epochs` is absent.
    ///
    /// Cost: one layer per unit of `depth`, so that cost is bounded: when the whole network would
    /// expand to more than [`MAX_EXPANDED_LAYERS`] layers, every `mlp` is left as an (otherwise
    /// filled-in) `mlp`, and [`Spec::validate`] refuses such a spec by its layer count. Safe to
    /// call on an unvalidated spec.
    pub fn expanded(&self) -> Spec {
        let (layers, _) = self.expanded_layers();
        Spec {
            name: self.name.clone(),
            seed: Some(self.seed.unwrap_or(SEED)),
            model: Model { input_dim: self.model.input_dim, layers },
            data: self.data.filled(),
            training: Some(filled_training(self.training.as_ref(), &self.data)),
            probes: Some(filled_probes(self.probes.as_ref())),
            return_gradients: Some(self.return_gradients.unwrap_or(RETURN_GRADIENTS)),
        }
    }

    /// The expanded layers and, parallel to them, where each came from.
    pub(crate) fn expanded_layers(&self) -> (Vec<Layer>, Vec<Placed>) {
        let mut width = Some(self.model.input_dim);
        let expand_mlps = expanded_layer_count(&self.model.layers) <= u128::from(MAX_EXPANDED_LAYERS);
        expand_layers(&self.model.layers, &|i| Origin::Written(format!("/model/layers/{i}")), expand_mlps, &mut width)
    }
}

/// The most layers `expanded` writes out; above it, `mlp`s stay unexpanded. A hard bound on the
/// memory a request can make `expanded` allocate (each layer is a few hundred bytes), well above
/// any sensible [`Limits::max_layers`](super::Limits::max_layers).
pub const MAX_EXPANDED_LAYERS: u64 = 100_000;

/// How many layers `layers` expand into: each `mlp` counts `depth`, a residual block counts the
/// layers inside it (not itself), every other layer 1. Saturating, so absurd depths stay absurd.
pub(crate) fn expanded_layer_count(layers: &[Layer]) -> u128 {
    layers
        .iter()
        .map(|layer| match layer {
            Layer::Mlp(m) => u128::from(m.depth),
            Layer::Residual(r) => expanded_layer_count(&r.layers),
            // attention, norm1, linear1, linear2, norm2 per block.
            Layer::Transformer(t) => u128::from(t.depth.unwrap_or(TRANSFORMER_DEPTH)).saturating_mul(5),
            _ => 1,
        })
        .fold(0, u128::saturating_add)
}

/// Expands `layers` whose input is `width` wide (`None` when unknown), leaving `width` at their
/// output width. `origin_of(i)` says where the `i`-th input layer was written.
fn expand_layers(
    layers: &[Layer],
    // `dyn`: the function recurses into residual blocks with a new closure each level.
    origin_of: &dyn Fn(usize) -> Origin,
    expand_mlps: bool,
    width: &mut Option<u64>,
) -> (Vec<Layer>, Vec<Placed>) {
    let mut out = Vec::with_capacity(layers.len());
    let mut placed = Vec::with_capacity(layers.len());
    let mut emit = |layer: Layer, origin: Origin, inner: Vec<Placed>| {
        out.push(layer);
        placed.push(Placed { origin, inner });
    };
    for (i, layer) in layers.iter().enumerate() {
        let origin = origin_of(i);
        match layer {
            Layer::Mlp(m) if !expand_mlps => {
                if m.depth > 0 {
                    *width = Some(m.width);
                }
                emit(Layer::Mlp(filled_mlp(m)), origin, Vec::new());
            }
            Layer::Mlp(m) => {
                let from = Origin::Mlp(origin.ptr().to_owned());
                let dense = mlp_dense(m);
                for _ in 0..m.depth {
                    if m.residual.unwrap_or(false) && *width == Some(m.width) {
                        let block = Layer::Residual(Residual { layers: vec![Layer::Dense(dense.clone())] });
                        let inner = vec![Placed { origin: from.clone(), inner: Vec::new() }];
                        emit(block, from.clone(), inner);
                    } else {
                        emit(Layer::Dense(dense.clone()), from.clone(), Vec::new());
                    }
                    *width = Some(m.width);
                }
            }
            Layer::Residual(r) => {
                // The block's output is input + f(input): the width after it is the width before
                // it (validation reports an inner stack that does not preserve it).
                let mut inner_width = *width;
                let (inner_layers, inner) =
                    expand_layers(&r.layers, &|j| origin.inner(j), expand_mlps, &mut inner_width);
                emit(Layer::Residual(Residual { layers: inner_layers }), origin, inner);
            }
            Layer::Dense(d) => {
                *width = Some(d.units);
                emit(Layer::Dense(filled_dense(d)), origin, Vec::new());
            }
            Layer::Rnn(r) => {
                *width = Some(r.units);
                emit(Layer::Rnn(filled_rnn(r)), origin, Vec::new());
            }
            Layer::BatchNorm(b) => {
                let b = BatchNorm {
                    eps: Some(b.eps.unwrap_or(NORM_EPS)),
                    momentum: Some(b.momentum.unwrap_or(NORM_MOMENTUM)),
                    ..b.clone()
                };
                emit(Layer::BatchNorm(b), origin, Vec::new());
            }
            Layer::LayerNorm(l) => {
                let l = LayerNorm { eps: Some(l.eps.unwrap_or(NORM_EPS)), ..l.clone() };
                emit(Layer::LayerNorm(l), origin, Vec::new());
            }
            Layer::Dropout(d) => {
                emit(Layer::Dropout(Dropout { rate: Some(d.rate.unwrap_or(DROPOUT_RATE)) }), origin, Vec::new());
            }
            Layer::Activation(a) => {
                let a = ActivationLayer { activation: a.activation.filled(), prelu_weight: a.prelu_weight.clone() };
                emit(Layer::Activation(a), origin, Vec::new());
            }
            Layer::Attention(a) => {
                let a = Attention { causal: Some(a.causal.unwrap_or(ATTENTION_CAUSAL)), ..a.clone() };
                emit(Layer::Attention(a), origin, Vec::new());
            }
            Layer::Transformer(t) => {
                let t = Transformer {
                    depth: Some(t.depth.unwrap_or(TRANSFORMER_DEPTH)),
                    activation: Some(t.activation.map(|a| a.filled()).unwrap_or(TRANSFORMER_ACTIVATION)),
                    norm_first: Some(t.norm_first.unwrap_or(TRANSFORMER_NORM_FIRST)),
                    causal: Some(t.causal.unwrap_or(ATTENTION_CAUSAL)),
                    alpha: Some(t.alpha.unwrap_or(TRANSFORMER_ALPHA)),
                    eps: Some(t.eps.unwrap_or(NORM_EPS)),
                    ..t.clone()
                };
                emit(Layer::Transformer(t), origin, Vec::new());
            }
            Layer::Positional(p) => {
                let p = Positional { encoding: Some(p.encoding.unwrap_or(POSITIONAL_ENCODING)), ..p.clone() };
                emit(Layer::Positional(p), origin, Vec::new());
            }
            Layer::Pool(p) => {
                emit(Layer::Pool(Pool { mode: Some(p.mode.unwrap_or(POOL_MODE)) }), origin, Vec::new());
            }
        }
    }
    (out, placed)
}

/// One of the dense layers an mlp stands for.
fn mlp_dense(m: &Mlp) -> Dense {
    filled_dense(&Dense {
        units: m.width,
        activation: Some(m.activation.unwrap_or(MLP_ACTIVATION)),
        init: m.init,
        bias_init: m.bias_init,
        norm: m.norm,
        weight: None,
        bias: None,
        norm_weight: None,
        norm_bias: None,
        running_mean: None,
        running_var: None,
        prelu_weight: None,
    })
}

/// An mlp left unexpanded (see [`MAX_EXPANDED_LAYERS`]), its settings written out all the same.
fn filled_mlp(m: &Mlp) -> Mlp {
    let d = mlp_dense(m);
    Mlp {
        activation: d.activation,
        init: d.init,
        bias_init: d.bias_init,
        norm: d.norm,
        residual: Some(m.residual.unwrap_or(false)),
        ..m.clone()
    }
}

fn filled_dense(d: &Dense) -> Dense {
    Dense {
        activation: Some(d.activation.unwrap_or(DENSE_ACTIVATION).filled()),
        init: Some(d.init.unwrap_or(WEIGHT_INIT).filled()),
        bias_init: Some(d.bias_init.unwrap_or(BIAS_INIT).filled()),
        norm: d.norm.map(Norm::filled),
        ..d.clone()
    }
}

/// Defaults are written only where the cell uses them: `activation` for vanilla cells,
/// `forget_bias` for lstm. A value the cell does not use is kept as written, so that validation
/// of the expanded spec still refuses it.
fn filled_rnn(r: &Rnn) -> Rnn {
    let cell = r.cell.unwrap_or(RNN_CELL);
    let activation = match cell {
        Cell::Vanilla => Some(r.activation.unwrap_or(RNN_ACTIVATION)),
        Cell::Lstm | Cell::Gru => r.activation,
    };
    let forget_bias = match cell {
        Cell::Lstm => Some(r.forget_bias.unwrap_or(FORGET_BIAS)),
        Cell::Vanilla | Cell::Gru => r.forget_bias,
    };
    Rnn {
        cell: Some(cell),
        activation: activation.map(Activation::filled),
        init: Some(r.init.unwrap_or(WEIGHT_INIT).filled()),
        recurrent_init: Some(r.recurrent_init.unwrap_or(RECURRENT_INIT).filled()),
        return_sequences: Some(r.return_sequences.unwrap_or(false)),
        forget_bias,
        ..r.clone()
    }
}

// The tagged enums with an engine counterpart fill their defaults by a round trip through it, so
// those defaults are applied in exactly one place (`convert`'s `to_engine`).

impl Activation {
    /// Every parameter written out.
    pub fn filled(self) -> Activation {
        Activation::from(self.to_engine())
    }
}

impl Init {
    /// Every parameter written out.
    pub fn filled(self) -> Init {
        Init::from(self.to_engine())
    }
}

impl Norm {
    /// Every parameter written out.
    pub fn filled(self) -> Norm {
        let (kind, config) = self.to_engine();
        Norm::from_engine(kind, &config)
    }
}

impl Optimizer {
    /// Every parameter written out (`lr` defaults per optimiser).
    pub fn filled(self) -> Optimizer {
        Optimizer::from(self.to_engine())
    }
}

impl Data {
    /// Every parameter written out.
    pub fn filled(&self) -> Data {
        use DataSource as S;
        let n = |s: Option<u64>| Some(s.unwrap_or(SAMPLES));
        let source = match &self.source {
            S::Xor { samples, noise } => S::Xor { samples: n(*samples), noise: Some(noise.unwrap_or(NOISE)) },
            S::Spirals { samples, noise, classes } => S::Spirals {
                samples: n(*samples),
                noise: Some(noise.unwrap_or(NOISE)),
                classes: Some(classes.unwrap_or(SPIRALS_CLASSES)),
            },
            S::Circles { samples, noise, factor } => S::Circles {
                samples: n(*samples),
                noise: Some(noise.unwrap_or(NOISE)),
                factor: Some(factor.unwrap_or(CIRCLES_FACTOR)),
            },
            S::Moons { samples, noise } => S::Moons { samples: n(*samples), noise: Some(noise.unwrap_or(NOISE)) },
            S::Blobs { samples, classes, dims, std } => S::Blobs {
                samples: n(*samples),
                classes: Some(classes.unwrap_or(BLOBS_CLASSES)),
                dims: Some(dims.unwrap_or(BLOBS_DIMS)),
                std: Some(std.unwrap_or(BLOBS_STD)),
            },
            S::Sine { samples, noise } => S::Sine { samples: n(*samples), noise: Some(noise.unwrap_or(SINE_NOISE)) },
            S::Teacher { samples, dims, classes, outputs, hidden } => S::Teacher {
                samples: n(*samples),
                dims: Some(dims.unwrap_or(TEACHER_DIMS)),
                classes: Some(classes.unwrap_or(TEACHER_CLASSES)),
                outputs: Some(outputs.unwrap_or(TEACHER_OUTPUTS)),
                hidden: Some(hidden.unwrap_or(TEACHER_HIDDEN)),
            },
            S::Adding { samples, length } => {
                S::Adding { samples: n(*samples), length: Some(length.unwrap_or(SEQUENCE_LENGTH)) }
            }
            S::Copy { samples, length, delay } => S::Copy {
                samples: n(*samples),
                length: Some(length.unwrap_or(COPY_LENGTH)),
                delay: Some(delay.unwrap_or(COPY_DELAY)),
            },
            S::TemporalOrder { samples, length } => {
                S::TemporalOrder { samples: n(*samples), length: Some(length.unwrap_or(SEQUENCE_LENGTH)) }
            }
            S::MarkedRecall { samples, length, vocab } => S::MarkedRecall {
                samples: n(*samples),
                length: Some(length.unwrap_or(RECALL_LENGTH)),
                vocab: Some(vocab.unwrap_or(RECALL_VOCAB)),
            },
            S::Parity { samples, length } => {
                S::Parity { samples: n(*samples), length: Some(length.unwrap_or(PARITY_LENGTH)) }
            }
            S::SineSequence { samples, length, noise } => S::SineSequence {
                samples: n(*samples),
                length: Some(length.unwrap_or(SEQUENCE_LENGTH)),
                noise: Some(noise.unwrap_or(SINE_NOISE)),
            },
            other @ (S::Inline { .. } | S::InlineSequences { .. }) => other.clone(),
        };
        Data {
            source,
            validation_split: Some(self.validation_split.unwrap_or(VALIDATION_SPLIT)),
            standardize: self.standardize,
        }
    }

    /// Whether the data's targets are class labels (rather than regression values). Inline
    /// scalar targets count as regression here; an explicit `cross_entropy` may still read
    /// integral ones as labels (see validation).
    pub(crate) fn has_class_labels(&self) -> bool {
        use DataSource as S;
        match &self.source {
            S::Xor { .. } | S::Spirals { .. } | S::Circles { .. } | S::Moons { .. } | S::Blobs { .. } => true,
            S::Copy { .. } | S::TemporalOrder { .. } | S::Parity { .. } | S::MarkedRecall { .. } => true,
            S::Sine { .. } | S::Adding { .. } | S::SineSequence { .. } => false,
            S::Teacher { classes, .. } => classes.unwrap_or(TEACHER_CLASSES) != 0,
            S::Inline { y, .. } | S::InlineSequences { y: InlineSequenceTargets::PerSequence(y), .. } => {
                matches!(y, InlineTargets::Labels(_))
            }
            S::InlineSequences { y, .. } => matches!(y, InlineSequenceTargets::ClassesPerStep(_)),
        }
    }
}

/// `training` with every default written out; the default loss follows the data.
pub(crate) fn filled_training(t: Option<&Training>, data: &Data) -> Training {
    let default_loss = if data.has_class_labels() { Loss::CrossEntropy } else { Loss::Mse };
    let t = t.cloned().unwrap_or(Training {
        steps: None,
        epochs: None,
        batch_size: None,
        loss: None,
        optimizer: None,
        weight_decay: None,
        clip: None,
        schedule: None,
        bptt_truncate: None,
        shuffle: None,
        precision: None,
    });
    Training {
        steps: if t.epochs.is_some() { t.steps } else { Some(t.steps.unwrap_or(STEPS)) },
        epochs: t.epochs,
        batch_size: Some(t.batch_size.unwrap_or(BATCH_SIZE)),
        loss: Some(t.loss.unwrap_or(default_loss)),
        optimizer: Some(t.optimizer.unwrap_or(OPTIMIZER).filled()),
        weight_decay: Some(t.weight_decay.unwrap_or(WEIGHT_DECAY)),
        clip: t.clip,
        schedule: Some(match t.schedule.unwrap_or(SCHEDULE) {
            Schedule::Cosine { warmup_steps } => Schedule::Cosine { warmup_steps: Some(warmup_steps.unwrap_or(0)) },
            s => s,
        }),
        bptt_truncate: t.bptt_truncate,
        shuffle: Some(t.shuffle.unwrap_or(SHUFFLE)),
        precision: Some(t.precision.unwrap_or(PRECISION)),
    }
}

pub(crate) fn filled_probes(p: Option<&Probes>) -> Probes {
    let get = |f: fn(&Probes) -> Option<u64>, d| Some(p.and_then(f).unwrap_or(d));
    let flag = |f: fn(&Probes) -> Option<bool>, d| Some(p.and_then(f).unwrap_or(d));
    Probes {
        every: get(|p| p.every, PROBE_EVERY),
        histograms: flag(|p| p.histograms, PROBE_HISTOGRAMS),
        max_points: get(|p| p.max_points, PROBE_MAX_POINTS),
        parameters: flag(|p| p.parameters, PROBE_PARAMETERS),
    }
}
