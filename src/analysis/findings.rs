//! The findings of a run, as types: what the rules found ([`Diagnostic`] with its
//! [`DiagnosticCode`], [`Severity`] and typed [`Evidence`]), what to change ([`Recommendation`]
//! with its [`Cure`]), what a patched spec measured ([`Measured`]) and the one-word [`Verdict`].
//!
//! Each code, severity and verdict is spelled once, by its enum's serde name (`snake_case` of
//! the variant): the rules (`analysis/rules.rs`), the recommendations (`analysis/recommend.rs`),
//! the report (`analysis/report.rs`) and the HTML page (`analysis/html.rs`) all use the enums.
//! The evidence of each code has its own struct, so what a rule measured is read back by field,
//! not by key; its fields are declared in alphabetical order so that the JSON matches the key
//! order a `serde_json::Value` object would have.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::{EnumIter, IntoStaticStr};

pub use super::measures::RatioKind;

/// What a diagnostic is about. The serde name is the code on the wire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumIter, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DiagnosticCode {
    /// NaN or Inf in the loss, an activation or a gradient.
    NonFinite,
    /// The gradient shrinks on its way back through depth.
    VanishingGradient,
    /// The gradient grows on its way back (through depth or time), or during training.
    ExplodingGradient,
    /// Sigmoid/tanh units in their flat tails.
    Saturation,
    /// ReLU units that output zero for every sample.
    DeadUnits,
    /// Weight updates far from ~1e-3 of the weights per step.
    UpdateRatio,
    /// The recurrent gradient fades within a fraction of the sequence.
    LongRangeVanishing,
    /// The loss stays near where it started or near the best constant prediction.
    NotLearning,
    /// Input features far from zero mean and unit variance.
    InputScale,
    /// Attention has mixed every sequence's tokens into (nearly) one.
    RankCollapse,
    /// An attention layer's heads put (nearly) all their weight on one token.
    AttentionEntropyCollapse,
}

impl DiagnosticCode {
    /// The wire name (`vanishing_gradient`, ...).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// What the code means, in words (the HTML report's explanation).
    pub fn meaning(self) -> &'static str {
        match self {
            DiagnosticCode::NonFinite => "the run produced NaN or infinite values and stopped",
            DiagnosticCode::VanishingGradient => {
                "the gradient shrinks on its way back to the first layers, so they barely learn"
            }
            DiagnosticCode::ExplodingGradient => {
                "the gradient grows on its way back, so updates are erratic or overflow"
            }
            DiagnosticCode::Saturation => {
                "sigmoid/tanh units sit in their flat tails, where their derivative (and so the gradient) is near zero"
            }
            DiagnosticCode::DeadUnits => "ReLU units output zero for every input, so no gradient flows through them",
            DiagnosticCode::NotLearning => "the loss stays near where it started",
            DiagnosticCode::UpdateRatio => {
                "the size of each weight update relative to the weights is far from the usual ~1e-3"
            }
            DiagnosticCode::LongRangeVanishing => {
                "the recurrent gradient fades within far fewer time steps than the sequence has"
            }
            DiagnosticCode::InputScale => {
                "the input features are far from zero mean and unit variance, so the first layer's pre-activations \
                 (and the loss at the start) are far from the scale the initialisation assumes"
            }
            DiagnosticCode::RankCollapse => {
                "attention without skip connections averages the tokens of a sequence into one (rank collapse), so \
                 later layers and the readout cannot tell the positions apart and their gradient vanishes"
            }
            DiagnosticCode::AttentionEntropyCollapse => {
                "the attention heads put nearly all their weight on one token (entropy near 0): the softmax is \
                 saturated, its Jacobian diag(p) - pp^T is near zero, and almost no gradient reaches the queries and \
                 keys (Zhai et al. 2023 tie this collapse to unstable training)"
            }
        }
    }
}

/// How serious a finding is: `critical` when the problem alone explains a failure to learn,
/// `warning` when it is worth fixing, `info` for a note. Ordered: `Info < Warning < Critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, IntoStaticStr, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; does not change the verdict.
    Info,
    /// Worth fixing.
    Warning,
    /// Alone explains a failure to learn.
    Critical,
}

impl Severity {
    /// `critical` when `critical`, else `warning` (the two levels a threshold rule has).
    pub fn of(critical: bool) -> Severity {
        if critical {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// The one-word summary of a run: the most serious finding (see `analysis::rules::verdict`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumIter, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Verdict {
    /// No warning or critical finding.
    Healthy,
    /// `vanishing_gradient` or `long_range_vanishing`.
    Vanishing,
    /// `exploding_gradient`.
    Exploding,
    /// `saturation`.
    Saturated,
    /// `dead_units`.
    DeadUnits,
    /// `non_finite`.
    Diverged,
    /// `not_learning`.
    NotLearning,
}

impl Verdict {
    /// The wire name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// What the verdict means, in words: the explanation of its diagnostic code.
    pub fn meaning(self) -> &'static str {
        match self {
            Verdict::Healthy => "no warning or critical finding: the gradient reaches every layer at a usable scale",
            Verdict::Vanishing => DiagnosticCode::VanishingGradient.meaning(),
            Verdict::Exploding => DiagnosticCode::ExplodingGradient.meaning(),
            Verdict::Saturated => DiagnosticCode::Saturation.meaning(),
            Verdict::DeadUnits => DiagnosticCode::DeadUnits.meaning(),
            Verdict::Diverged => DiagnosticCode::NonFinite.meaning(),
            Verdict::NotLearning => DiagnosticCode::NotLearning.meaning(),
        }
    }
}

/// Each enum compares equal to its wire name (`code == "vanishing_gradient"`), so tests and
/// clients of the library can match the JSON's words.
macro_rules! eq_wire_name {
    ($($t:ty),*) => {$(
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.name() == *other
            }
        }
    )*};
}
eq_wire_name!(DiagnosticCode, Severity, Verdict);

impl Evidence {
    /// The evidence as a JSON value (as it appears in the report).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A finding about a run.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Diagnostic {
    /// What was found.
    pub code: DiagnosticCode,
    /// How serious it is.
    pub severity: Severity,
    /// Affected layers, by name.
    pub layers: Vec<String>,
    /// What was found, in words.
    pub message: String,
    /// The measured values the rule used, and its thresholds.
    #[schema(value_type = Object)]
    pub evidence: Evidence,
    /// What to change, best first (see `analysis::recommend`). Empty for a consequence whose
    /// cause has recommendations: those target the cause.
    pub recommendations: Vec<Recommendation>,
    /// The finding of this report that explains this one (see `analysis::causes`), e.g.
    /// `vanishing_gradient` for `update_ratio`; absent when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consequence_of: Option<DiagnosticCode>,
    /// What in the configuration causes it, when the measurements say (the initialisation
    /// scale, the activation, the learning rate); absent when they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// The root cause of a finding, from the run's configuration and measurements.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Cause {
    /// Which part of the configuration.
    pub kind: CauseKind,
    /// Why, with the figures.
    pub detail: String,
}

/// The parts of a configuration a finding can be blamed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CauseKind {
    /// The weights' initial scale (`σ_w²` away from the critical value of the activation).
    InitScale,
    /// The activation function (the sigmoid's derivative is at most 1/4).
    Activation,
    /// The learning rate (updates large enough to kill units or diverge).
    LearningRate,
    /// The scale of the input features (far from zero mean and unit variance).
    InputScale,
}

/// Warning and critical thresholds of a rule's measurement, in the units the rule's statement
/// gives (a ratio, a fraction, a divisor of the sequence length), as the evidence reports them.
/// For `vanishing_gradient` (fires below) `critical < warning`; for `long_range_vanishing` (the
/// horizon below T/warning, T/critical) and the others `warning < critical`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Thresholds {
    /// The critical threshold.
    pub critical: f64,
    /// The warning threshold.
    pub warning: f64,
}

/// What a rule measured, per code (and per variant of the exploding rule).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Evidence {
    /// `non_finite`.
    NonFinite(NonFiniteEvidence),
    /// `vanishing_gradient` / `exploding_gradient` from the first/last hidden layer ratio.
    Depth(DepthEvidence),
    /// `vanishing_gradient` (info): vanished at initialisation, recovered by the end.
    Recovered(RecoveredEvidence),
    /// `exploding_gradient` through time.
    Timesteps(TimestepEvidence),
    /// `exploding_gradient`: the global gradient norm grew during training.
    Growth(GrowthEvidence),
    /// `exploding_gradient`: clipping acted on most steps.
    Clipping(ClippingEvidence),
    /// `saturation`, `dead_units`, `update_ratio`: one entry per affected layer, by name.
    PerLayer(PerLayerEvidence),
    /// `long_range_vanishing`.
    Horizon(HorizonEvidence),
    /// `not_learning`.
    NotLearning(NotLearningEvidence),
    /// `input_scale`.
    InputScale(InputScaleEvidence),
}

/// Where NaN/Inf appeared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NonFiniteEvidence {
    /// Layer name, or `loss`.
    pub layer: String,
    /// `activations`, `gradients` or `loss`.
    pub location: String,
    /// Step (0-based).
    pub step: usize,
}

/// The first/last hidden weight layer comparison at one probe.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DepthEvidence {
    /// `delta_norm` of the first hidden weight layer over the last's.
    pub delta_ratio_first_last: Option<f64>,
    /// `grad_norm` of the first hidden weight layer over the last's.
    pub grad_ratio_first_last: f64,
    /// Hidden weight layers between the two (their count minus one).
    pub layers_between: f64,
    /// The ratio the finding rests on (`ratio`) to the power 1 / `layers_between`.
    pub per_layer_factor: f64,
    /// The probe step measured.
    pub probe_step: usize,
    /// Which ratio the finding rests on: the smaller of the two for `vanishing_gradient`, the
    /// larger for `exploding_gradient` (`grad_norm` or `delta_norm`).
    pub ratio: RatioKind,
    /// The rule's thresholds.
    pub thresholds: Thresholds,
}

/// Vanished at initialisation, recovered by the end of training.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecoveredEvidence {
    /// At the last probe.
    pub at_end: DepthEvidence,
    /// At step 0.
    pub at_init: DepthEvidence,
}

/// ||dL/dh_t|| growing back through the sequence.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimestepEvidence {
    /// The growth to the power 1 / (T - 1).
    pub per_step_factor: f64,
    /// The probe step measured.
    pub probe_step: Option<usize>,
    /// T.
    pub sequence_length: usize,
    /// The rule's thresholds.
    pub thresholds: Thresholds,
    /// ||dL/dh_1|| / ||dL/dh_T||.
    pub timestep_ratio_first_last: f64,
}

/// The global gradient norm's growth during training.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GrowthEvidence {
    /// Largest global gradient norm of the run.
    pub grad_norm_global_max: f64,
    /// Global gradient norm at step 0.
    pub grad_norm_global_step0: f64,
    /// The growth factor above which the rule fires.
    pub threshold: f64,
}

/// How often clipping acted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClippingEvidence {
    /// `clipped_steps / steps`.
    pub clip_rate: f64,
    /// Steps on which clipping changed the gradient.
    pub clipped_steps: usize,
    /// Steps run.
    pub steps: usize,
    /// The rate above which the rule fires.
    pub threshold: f64,
}

/// Per-layer evidence, by layer name.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PerLayerEvidence {
    /// One entry per affected layer.
    pub per_layer: BTreeMap<String, LayerEvidence>,
}

/// What a per-layer rule measured on one layer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum LayerEvidence {
    /// `saturation`.
    Saturation {
        /// Largest saturation over the probes.
        saturation_max: f64,
        /// The rule's thresholds.
        thresholds: Thresholds,
    },
    /// `dead_units`.
    Dead {
        /// Dead fraction at the last probe.
        dead_fraction: f64,
        /// Dead fraction at step 0.
        dead_fraction_step0: Option<f64>,
        /// The rule's thresholds.
        thresholds: Thresholds,
    },
    /// `rank_collapse`: an attention layer's token representations (its output, or the output
    /// of the residual block around it).
    RankCollapse {
        /// The rank-collapse measure at the last probe.
        rank_collapse: f64,
        /// At step 0.
        rank_collapse_step0: Option<f64>,
        /// The rule's thresholds (below warning, below critical).
        thresholds: Thresholds,
    },
    /// `attention_entropy_collapse`: an attention layer's entropy, averaged over its heads.
    AttentionEntropy {
        /// The mean over heads of the attention entropy (nats) at the last probe.
        entropy: f64,
        /// At step 0.
        entropy_step0: Option<f64>,
        /// The rule's thresholds (below warning, below critical).
        thresholds: Thresholds,
    },
    /// `update_ratio`.
    UpdateRatio {
        /// Median update ratio over the probes.
        median_update_ratio: f64,
        /// The healthy range.
        range: [f64; 2],
    },
}

/// The recurrent memory horizon against the sequence length.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HorizonEvidence {
    /// Largest lag at which ||dL/dh_t|| is above 1e-3 of its maximum.
    pub memory_horizon: usize,
    /// T.
    pub sequence_length: usize,
    /// The thresholds in time steps (fractions of T).
    pub thresholds: Thresholds,
}

/// The loss against where it started and against the best constant prediction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NotLearningEvidence {
    /// Loss of the best constant prediction.
    pub baseline_loss: Option<f64>,
    /// Accuracy of guessing (classification only; left out for regression, which has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chance_accuracy: Option<f64>,
    /// Final training accuracy (classification only; left out for regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_accuracy: Option<f64>,
    /// Final training loss.
    pub final_loss: f64,
    /// Loss at step 0.
    pub loss_step0: f64,
    /// The fraction of the step-0 (or constant-prediction) loss above which the loss is stuck.
    pub threshold: f64,
}

/// The input features' statistics on the training split, as the network sees them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InputScaleEvidence {
    /// Input features (per time step for sequences).
    pub features: usize,
    /// Features whose |mean| or standard deviation is above `thresholds.warning`.
    pub features_out_of_range: usize,
    /// Root mean square of the inputs over all features: sqrt(mean over features of
    /// mean^2 + std^2).
    pub input_rms: f64,
    /// Largest |mean| of a feature.
    pub max_abs_mean: f64,
    /// Largest standard deviation of a feature.
    pub max_std: f64,
    /// `input_rms` below this warns (inputs too small).
    pub rms_warning: f64,
    /// The thresholds on a feature's |mean| and standard deviation.
    pub thresholds: Thresholds,
    /// Index of the feature with the largest max(|mean|, std).
    pub worst_feature: usize,
}

/// Which known cure a recommendation applies (its typed identity; the wire shows the title).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cure {
    /// ReLU with He initialisation in the hidden layers.
    ReluHe,
    /// Batch norm in each hidden dense layer.
    BatchNorm,
    /// Initialisation matched to the activation.
    MatchedInit,
    /// Residual blocks around same-width hidden layers.
    Residual,
    /// Global-norm gradient clipping.
    Clip,
    /// A learning-rate change.
    LearningRate,
    /// Orthogonal W_hh with gain 1.
    OrthogonalRecurrent,
    /// An LSTM cell instead of a vanilla one.
    Lstm,
    /// A GRU cell instead of a vanilla one.
    Gru,
    /// Identity W_hh with ReLU (IRNN).
    Irnn,
    /// The LSTM forget-gate bias at 1.
    ForgetBias,
    /// Leaky ReLU in the affected layers.
    LeakyRelu,
    /// Biases initialised at 0.
    ZeroBias,
    /// Adam instead of SGD.
    Adam,
    /// More training steps.
    TrainLonger,
    /// Back-propagation through the whole sequence instead of a truncated window.
    FullBptt,
    /// Standardized input features (`data.standardize`).
    Standardize,
    /// A linear learning-rate warm-up (`training.schedule`).
    Warmup,
    /// Pre-LN transformer blocks (`norm_first`) with a final layer norm.
    PreLn,
}

/// One concrete change.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Recommendation {
    /// Which cure this is (not on the wire: the title says it in words).
    #[serde(skip)]
    pub cure: Cure,
    /// What to change, in a few words.
    pub title: String,
    /// The mechanism, with the reference.
    pub why: String,
    /// RFC 6902 JSON Patch that applies the change to the report's `spec`.
    #[schema(value_type = Vec<Object>)]
    pub patch: Vec<Value>,
    /// The patched spec measured at initialisation (one forward/backward), when the cure acts
    /// there; recommendations of `vanishing_gradient` and `exploding_gradient` are ranked by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
    /// The patched spec trained on the same data and seed for a short budget, against the
    /// baseline on the same budget (`analysis::verify`); absent when verification is off
    /// (`verify_share` 0) and in `analyze` reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What training the patched spec for the verification budget did, against the unpatched spec
/// on the same budget, data and seed.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Verification {
    /// Whether it is recommended: `verified_better` and `not_verified` are; `tried_no_change`
    /// and `tried_worse` are listed with their figures but not recommended.
    pub status: VerifyStatus,
    /// Why it was not verified (`not_verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<NotVerifiedReason>,
    /// Training steps of both runs (the budget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// The unpatched spec at the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<RunOutcome>,
    /// The patched spec at the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patched: Option<RunOutcome>,
    /// `patched.final_loss - baseline.final_loss` (the experiments' paired difference, on one
    /// seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_change: Option<f64>,
}

/// The verdict of a verification.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumIter, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum VerifyStatus {
    /// A final loss at the budget lower than the baseline's by more than `VERIFY_MARGIN` (5%),
    /// compared at the experiments' rounding.
    VerifiedBetter,
    /// Not verified (see `reason`): recommended on its documented grounds, ranked after the
    /// verified ones.
    NotVerified,
    /// A final loss at the budget within the margin of the baseline's, or equal: tried, not
    /// recommended.
    TriedNoChange,
    /// A higher final loss than the baseline (or NaN/Inf) at the budget: tried, not recommended.
    TriedWorse,
}

impl VerifyStatus {
    /// The wire name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Recommended: better, or not verified.
    pub fn recommended(self) -> bool {
        matches!(self, VerifyStatus::VerifiedBetter | VerifyStatus::NotVerified)
    }
}

/// Why a recommendation was not verified.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumIter, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum NotVerifiedReason {
    /// Its run would take the verifications over their share of the job's compute.
    OverBudget,
    /// The patch does not apply, or the patched spec does not validate.
    PatchInvalid,
    /// It changes the number of training steps, which a run at the budget fixes.
    ChangesSteps,
    /// The patched run did not finish (the job was cancelled meanwhile, or the engine refused).
    RunFailed,
    /// The patched spec's estimated peak memory is over the job's memory limit.
    OverMemory,
    /// The budget ends before the patched spec's warm-up does: its learning rate would not
    /// reach its value within the run.
    WithinWarmup,
}

impl NotVerifiedReason {
    /// The wire name.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A run's outcome at the verification budget (from its `RunResult`).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RunOutcome {
    /// Final training loss (eval mode, as the report's `summary.final_loss`); `null` if not finite.
    pub final_loss: Option<f64>,
    /// Final training accuracy (classification only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_accuracy: Option<f64>,
    /// `grad_ratio_first_last` at step 0.
    pub grad_ratio_first_last: Option<f64>,
    /// The same ratio at the last probe.
    pub grad_ratio_end: Option<f64>,
    /// The run's verdict.
    pub verdict: Verdict,
}

/// What one forward/backward of the patched spec showed.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Measured {
    /// `grad_ratio_first_last` of the patched spec at step 0.
    pub grad_ratio_first_last: Option<f64>,
    /// The same ratio of `delta_norm` (the gradient reaching each layer's output).
    pub delta_ratio_first_last: Option<f64>,
    /// The verdict of the patched spec at initialisation.
    pub verdict: Verdict,
}

impl Measured {
    /// Distance of the worse ratio from 1 in decades (0 = gradients equal at both ends).
    pub fn distance(&self) -> f64 {
        [self.grad_ratio_first_last, self.delta_ratio_first_last]
            .into_iter()
            .flatten()
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| r.log10().abs())
            .reduce(f64::max)
            .unwrap_or(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn each_code_and_verdict_has_one_name_on_the_wire() {
        for code in DiagnosticCode::iter() {
            // The serde name (the wire) and the strum name (docs, HTML) come from one rule.
            assert_eq!(serde_json::to_value(code).unwrap(), Value::String(code.name().into()));
            assert!(!code.meaning().is_empty());
        }
        for verdict in Verdict::iter() {
            assert_eq!(serde_json::to_value(verdict).unwrap(), Value::String(verdict.name().into()));
        }
        assert_eq!(serde_json::to_value(Severity::Critical).unwrap(), "critical");
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }

    #[test]
    fn evidence_serialises_with_the_keys_of_a_json_object_in_order() {
        let e = Evidence::Depth(DepthEvidence {
            delta_ratio_first_last: None,
            grad_ratio_first_last: 1e-5,
            layers_between: 4.0,
            per_layer_factor: 0.1,
            probe_step: 0,
            ratio: RatioKind::GradNorm,
            thresholds: Thresholds { critical: 1e-4, warning: 1e-2 },
        });
        let text = serde_json::to_string(&e).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        // A serde_json object sorts its keys; the struct's declaration order gives the same text.
        assert_eq!(text, value.to_string());
        assert!(value["delta_ratio_first_last"].is_null());
    }
}
