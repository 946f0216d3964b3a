//! Conversions between the wire enums and the engine's, both ways.
//!
//! `to_engine` applies the defaults of a parameter left out (`leaky_relu` without `slope`), so
//! it is total; whether the values make sense is `validate`'s business. `From<engine type>`
//! writes every parameter out, which is how `expand` fills defaults (a round trip through the
//! engine type). Depends on the wire types, the defaults in `expand` and `engine::config`; must
//! not depend on HTTP or async crates.

use super::expand::*;
use super::types::{Activation, Clip, FanMode, Init, Loss, Norm, Optimizer, Precision, Schedule};
use crate::engine::config as e;

impl Activation {
    /// The engine's activation, defaults applied.
    pub(crate) fn to_engine(self) -> e::Activation {
        match self {
            Activation::Linear => e::Activation::Linear,
            Activation::Sigmoid => e::Activation::Sigmoid,
            Activation::Tanh => e::Activation::Tanh,
            Activation::Relu => e::Activation::Relu,
            Activation::LeakyRelu { slope } => e::Activation::LeakyRelu { slope: slope.unwrap_or(LEAKY_RELU_SLOPE) },
            Activation::Elu { alpha } => e::Activation::Elu { alpha: alpha.unwrap_or(ELU_ALPHA) },
            Activation::Prelu { init } => e::Activation::Prelu { init: init.unwrap_or(PRELU_INIT) },
            Activation::Selu => e::Activation::Selu,
            Activation::Gelu => e::Activation::Gelu,
            Activation::Softplus => e::Activation::Softplus,
            Activation::Silu => e::Activation::Silu,
        }
    }
}

impl From<e::Activation> for Activation {
    fn from(a: e::Activation) -> Self {
        match a {
            e::Activation::Linear => Activation::Linear,
            e::Activation::Sigmoid => Activation::Sigmoid,
            e::Activation::Tanh => Activation::Tanh,
            e::Activation::Relu => Activation::Relu,
            e::Activation::LeakyRelu { slope } => Activation::LeakyRelu { slope: Some(slope) },
            e::Activation::Elu { alpha } => Activation::Elu { alpha: Some(alpha) },
            e::Activation::Prelu { init } => Activation::Prelu { init: Some(init) },
            e::Activation::Selu => Activation::Selu,
            e::Activation::Gelu => Activation::Gelu,
            e::Activation::Softplus => Activation::Softplus,
            e::Activation::Silu => Activation::Silu,
        }
    }
}

impl FanMode {
    fn to_engine(self) -> e::FanMode {
        match self {
            FanMode::FanIn => e::FanMode::FanIn,
            FanMode::FanOut => e::FanMode::FanOut,
        }
    }

    fn from_engine(m: e::FanMode) -> Self {
        match m {
            e::FanMode::FanIn => FanMode::FanIn,
            e::FanMode::FanOut => FanMode::FanOut,
        }
    }
}

impl Init {
    /// The engine's init, defaults applied.
    pub(crate) fn to_engine(self) -> e::Init {
        let g = |gain: Option<f64>| gain.unwrap_or(GAIN);
        let m = |mode: Option<FanMode>| mode.unwrap_or(FAN_MODE).to_engine();
        match self {
            Init::Normal { std } => e::Init::Normal { std },
            Init::Uniform { limit } => e::Init::Uniform { limit },
            Init::Constant { value } => e::Init::Constant { value },
            Init::XavierUniform { gain } => e::Init::XavierUniform { gain: g(gain) },
            Init::XavierNormal { gain } => e::Init::XavierNormal { gain: g(gain) },
            Init::HeUniform { gain, mode } => e::Init::HeUniform { gain: g(gain), mode: m(mode) },
            Init::HeNormal { gain, mode } => e::Init::HeNormal { gain: g(gain), mode: m(mode) },
            Init::LecunNormal { gain, mode } => e::Init::LecunNormal { gain: g(gain), mode: m(mode) },
            Init::Orthogonal { gain } => e::Init::Orthogonal { gain: g(gain) },
            Init::Identity { gain } => e::Init::Identity { gain: g(gain) },
        }
    }
}

impl From<e::Init> for Init {
    fn from(i: e::Init) -> Self {
        let m = |mode| Some(FanMode::from_engine(mode));
        match i {
            e::Init::Normal { std } => Init::Normal { std },
            e::Init::Uniform { limit } => Init::Uniform { limit },
            e::Init::Constant { value } => Init::Constant { value },
            e::Init::XavierUniform { gain } => Init::XavierUniform { gain: Some(gain) },
            e::Init::XavierNormal { gain } => Init::XavierNormal { gain: Some(gain) },
            e::Init::HeUniform { gain, mode } => Init::HeUniform { gain: Some(gain), mode: m(mode) },
            e::Init::HeNormal { gain, mode } => Init::HeNormal { gain: Some(gain), mode: m(mode) },
            e::Init::LecunNormal { gain, mode } => Init::LecunNormal { gain: Some(gain), mode: m(mode) },
            e::Init::Orthogonal { gain } => Init::Orthogonal { gain: Some(gain) },
            e::Init::Identity { gain } => Init::Identity { gain: Some(gain) },
        }
    }
}

impl Norm {
    /// The engine's norm kind and settings (no explicit parameters: a dense layer keeps those in
    /// its own `params`), defaults applied. A layer norm has no running statistics, so its
    /// `momentum` is the unused default.
    pub(crate) fn to_engine(self) -> (e::NormKind, e::NormConfig) {
        match self {
            Norm::Batch { eps, momentum } => (
                e::NormKind::Batch,
                e::NormConfig {
                    eps: eps.unwrap_or(NORM_EPS),
                    momentum: momentum.unwrap_or(NORM_MOMENTUM),
                    params: e::ExplicitParams::new(),
                },
            ),
            Norm::Layer { eps } => (
                e::NormKind::Layer,
                e::NormConfig {
                    eps: eps.unwrap_or(NORM_EPS),
                    momentum: NORM_MOMENTUM,
                    params: e::ExplicitParams::new(),
                },
            ),
        }
    }

    pub(crate) fn from_engine(kind: e::NormKind, config: &e::NormConfig) -> Self {
        match kind {
            e::NormKind::Batch => Norm::Batch { eps: Some(config.eps), momentum: Some(config.momentum) },
            e::NormKind::Layer => Norm::Layer { eps: Some(config.eps) },
        }
    }
}

impl Optimizer {
    /// The engine's optimiser, defaults applied (including the per-optimiser `lr`).
    pub(crate) fn to_engine(self) -> e::OptimizerConfig {
        match self {
            Optimizer::Sgd { lr, momentum, dampening, nesterov } => e::OptimizerConfig::Sgd {
                lr: lr.unwrap_or(SGD_LR),
                momentum: momentum.unwrap_or(MOMENTUM),
                dampening: dampening.unwrap_or(DAMPENING),
                nesterov: nesterov.unwrap_or(false),
            },
            Optimizer::Rmsprop { lr, alpha, eps, momentum, centered } => e::OptimizerConfig::Rmsprop {
                lr: lr.unwrap_or(RMSPROP_LR),
                alpha: alpha.unwrap_or(RMSPROP_ALPHA),
                eps: eps.unwrap_or(EPS),
                momentum: momentum.unwrap_or(MOMENTUM),
                centered: centered.unwrap_or(false),
            },
            Optimizer::Adagrad { lr, lr_decay, eps, initial_accumulator_value } => e::OptimizerConfig::Adagrad {
                lr: lr.unwrap_or(ADAGRAD_LR),
                lr_decay: lr_decay.unwrap_or(0.0),
                eps: eps.unwrap_or(ADAGRAD_EPS),
                initial_accumulator_value: initial_accumulator_value.unwrap_or(0.0),
            },
            Optimizer::Adam { lr, beta1, beta2, eps, amsgrad } => e::OptimizerConfig::Adam {
                lr: lr.unwrap_or(ADAM_LR),
                beta1: beta1.unwrap_or(BETA1),
                beta2: beta2.unwrap_or(BETA2),
                eps: eps.unwrap_or(EPS),
                amsgrad: amsgrad.unwrap_or(false),
            },
            Optimizer::Adamw { lr, beta1, beta2, eps, amsgrad } => e::OptimizerConfig::AdamW {
                lr: lr.unwrap_or(ADAM_LR),
                beta1: beta1.unwrap_or(BETA1),
                beta2: beta2.unwrap_or(BETA2),
                eps: eps.unwrap_or(EPS),
                amsgrad: amsgrad.unwrap_or(false),
            },
        }
    }
}

impl From<e::OptimizerConfig> for Optimizer {
    fn from(o: e::OptimizerConfig) -> Self {
        match o {
            e::OptimizerConfig::Sgd { lr, momentum, dampening, nesterov } => Optimizer::Sgd {
                lr: Some(lr),
                momentum: Some(momentum),
                dampening: Some(dampening),
                nesterov: Some(nesterov),
            },
            e::OptimizerConfig::Rmsprop { lr, alpha, eps, momentum, centered } => Optimizer::Rmsprop {
                lr: Some(lr),
                alpha: Some(alpha),
                eps: Some(eps),
                momentum: Some(momentum),
                centered: Some(centered),
            },
            e::OptimizerConfig::Adagrad { lr, lr_decay, eps, initial_accumulator_value } => Optimizer::Adagrad {
                lr: Some(lr),
                lr_decay: Some(lr_decay),
                eps: Some(eps),
                initial_accumulator_value: Some(initial_accumulator_value),
            },
            e::OptimizerConfig::Adam { lr, beta1, beta2, eps, amsgrad } => Optimizer::Adam {
                lr: Some(lr),
                beta1: Some(beta1),
                beta2: Some(beta2),
                eps: Some(eps),
                amsgrad: Some(amsgrad),
            },
            e::OptimizerConfig::AdamW { lr, beta1, beta2, eps, amsgrad } => Optimizer::Adamw {
                lr: Some(lr),
                beta1: Some(beta1),
                beta2: Some(beta2),
                eps: Some(eps),
                amsgrad: Some(amsgrad),
            },
        }
    }
}

impl Clip {
    pub(crate) fn to_engine(self) -> e::ClipConfig {
        match self {
            Clip::GlobalNorm { max } => e::ClipConfig::GlobalNorm { max },
            Clip::Value { max } => e::ClipConfig::Value { max },
        }
    }
}

impl Schedule {
    pub(crate) fn to_engine(self) -> e::Schedule {
        let steps = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        match self {
            Schedule::Constant => e::Schedule::Constant,
            Schedule::Warmup { warmup_steps } => e::Schedule::Warmup { warmup_steps: steps(warmup_steps) },
            Schedule::Cosine { warmup_steps } => e::Schedule::Cosine { warmup_steps: steps(warmup_steps.unwrap_or(0)) },
        }
    }
}

impl Loss {
    pub(crate) fn to_engine(self) -> e::LossKind {
        match self {
            Loss::CrossEntropy => e::LossKind::CrossEntropy,
            Loss::Mse => e::LossKind::Mse,
            Loss::Bce => e::LossKind::Bce,
        }
    }
}

impl Precision {
    pub(crate) fn to_engine(self) -> e::Precision {
        match self {
            Precision::F32 => e::Precision::F32,
            Precision::F64 => e::Precision::F64,
        }
    }
}
