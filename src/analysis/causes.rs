//! Cause before effect: which findings of a report are consequences of others, and what in the
//! run's configuration causes the root ones.
//!
//! - **Consequences** ([`CONSEQUENCES`], a table like the rules'): a finding whose code is an
//!   `effect` is marked `consequence_of` the first `cause` code the report also holds, with the
//!   sentence that explains the link. Tiny update ratios and not learning under a vanishing
//!   gradient are the vanishing gradient seen from elsewhere; recommendations target the cause
//!   (`analysis::recommend` makes none for a consequence).
//! - **Root causes** ([`Cause`]): for a vanishing or exploding gradient through depth, the
//!   hidden dense layers' weight scale at step 0, `σ_w² = fan_in · Var(W) = ‖W‖_F² / units`, and
//!   their activation say which of the two is to blame — the mean-field factor by which each
//!   layer multiplies the signal's variance is `σ_w²/2` for ReLU, at most `σ_w²` for tanh and at
//!   most `σ_w²/16` for the sigmoid, whose derivative is at most 1/4 ([`INIT_TOO_SMALL`],
//!   [`RELU_FACTOR_BAND`], [`TANH_BAND`]). For dead units, whether they were already dead at
//!   step 0 — above the `dead_units` warning threshold: the initialisation — or died during
//!   training (the updates: the learning rate).
//!
//! Runs after `diagnostics::diagnose`, before `recommend`. Depends on `findings` and the
//! engine's run record.

use crate::analysis::diagnostics::DEAD_UNITS;
use crate::analysis::findings::{Cause, CauseKind, Diagnostic, DiagnosticCode, Evidence, Severity};
use crate::analysis::measures::hidden_weight_layers;
use crate::engine::config::Activation;
use crate::engine::layers::LayerKind;
use crate::engine::train::RunRecord;

/// A finding explained by another.
#[derive(Debug, Clone, Copy)]
pub struct Consequence {
    /// The finding that is explained.
    pub effect: DiagnosticCode,
    /// The finding that explains it (when the report holds it at warning or above).
    pub cause: DiagnosticCode,
    /// Why, for people.
    pub why: &'static str,
}

/// Every known link, in priority order: the first cause the report holds wins.
pub const CONSEQUENCES: &[Consequence] = &[
    Consequence {
        effect: DiagnosticCode::NonFinite,
        cause: DiagnosticCode::InputScale,
        why: "inputs far from unit scale make the first layer's pre-activations and the first updates that much larger",
    },
    Consequence {
        effect: DiagnosticCode::DeadUnits,
        cause: DiagnosticCode::NonFinite,
        why: "the units died when the run diverged: the blown-up updates left their pre-activations negative",
    },
    Consequence {
        effect: DiagnosticCode::DeadUnits,
        cause: DiagnosticCode::ExplodingGradient,
        why: "the units died under exploding updates that pushed their pre-activations negative",
    },
    Consequence {
        effect: DiagnosticCode::UpdateRatio,
        cause: DiagnosticCode::VanishingGradient,
        why: "the first layers' updates are tiny because their gradient vanished; a larger learning rate would not reach them without blowing up the last layers",
    },
    Consequence {
        effect: DiagnosticCode::ExplodingGradient,
        cause: DiagnosticCode::InputScale,
        why: "inputs far from unit scale make the first layer's gradients and updates that much larger",
    },
    Consequence {
        effect: DiagnosticCode::NotLearning,
        cause: DiagnosticCode::NonFinite,
        why: "the run diverged (NaN/Inf), so it could not learn",
    },
    Consequence {
        effect: DiagnosticCode::NotLearning,
        cause: DiagnosticCode::VanishingGradient,
        why: "the early layers receive almost no gradient, so the network trains only its last layers",
    },
    Consequence {
        effect: DiagnosticCode::NotLearning,
        cause: DiagnosticCode::LongRangeVanishing,
        why: "the gradient does not reach back to the time steps that hold the answer",
    },
    Consequence {
        effect: DiagnosticCode::NotLearning,
        cause: DiagnosticCode::DeadUnits,
        why: "dead units pass back no gradient, so the layers behind them stop learning",
    },
    Consequence {
        effect: DiagnosticCode::VanishingGradient,
        cause: DiagnosticCode::Saturation,
        why: "saturated units have a derivative near 0 and pass back almost no gradient",
    },
];

/// `σ_w²` below this is too small whatever the activation: each layer shrinks the signal.
pub const INIT_TOO_SMALL: f64 = 0.25;
/// For ReLU, the per-layer variance factor `σ_w²/2` outside this band blames the initialisation
/// (He init gives 1).
pub const RELU_FACTOR_BAND: (f64, f64) = (0.8, 1.25);
/// For tanh (and other activations with slope 1 at 0), `σ_w²` outside this band blames the
/// initialisation (about 1 is critical).
pub const TANH_BAND: (f64, f64) = (0.5, 2.0);

/// Marks consequences and attaches root causes, in place.
pub fn attribute(diagnostics: &mut [Diagnostic], record: &RunRecord) {
    let present: Vec<DiagnosticCode> = diagnostics
        .iter()
        .filter(|d| matches!(d.severity, Severity::Warning | Severity::Critical))
        .map(|d| d.code)
        .collect();
    for d in diagnostics.iter_mut() {
        if let Some(link) = CONSEQUENCES.iter().find(|c| c.effect == d.code && present.contains(&c.cause)) {
            d.consequence_of = Some(link.cause);
            d.message = format!("{} This is a consequence of `{}`: {}.", d.message, link.cause.name(), link.why);
        }
        d.cause = match d.code {
            DiagnosticCode::VanishingGradient | DiagnosticCode::ExplodingGradient
                if matches!(d.evidence, Evidence::Depth(_)) =>
            {
                depth_cause(record, d.code == DiagnosticCode::VanishingGradient)
            }
            DiagnosticCode::DeadUnits => dead_cause(record, &d.layers),
            _ => None,
        };
    }
}

/// A consequence whose cause has recommendations gets none of its own: the cure is the
/// cause's. (Without them, it keeps its own, so that no finding is left without advice.)
pub fn drop_consequence_cures(diagnostics: &mut [Diagnostic]) {
    let with_cures: Vec<DiagnosticCode> =
        diagnostics.iter().filter(|d| !d.recommendations.is_empty()).map(|d| d.code).collect();
    for d in diagnostics.iter_mut() {
        if d.consequence_of.is_some_and(|c| with_cures.contains(&c)) {
            d.recommendations.clear();
        }
    }
}

/// The hidden dense layers' median `σ_w²` at step 0 and their most common activation.
fn weight_scale(record: &RunRecord) -> Option<(f64, Activation)> {
    let hidden = hidden_weight_layers(record.layers.iter().map(|l| l.kind));
    let mut scales = Vec::new();
    let mut acts: Vec<Activation> = Vec::new();
    for &i in &hidden {
        let (Some(info), Some(stats)) = (record.layers.get(i), record.layer_stats.get(i)) else { continue };
        if info.kind != LayerKind::Dense || info.units == 0 {
            continue;
        }
        if let Some(Some(norm)) = stats.weight_norm.first() {
            scales.push(norm * norm / info.units as f64);
        }
        if let Some(a) = info.activation {
            acts.push(a);
        }
    }
    if scales.is_empty() {
        return None;
    }
    scales.sort_by(f64::total_cmp);
    let median = scales[scales.len() / 2];
    let activation = acts
        .iter()
        .max_by_key(|a| acts.iter().filter(|b| std::mem::discriminant(*b) == std::mem::discriminant(*a)).count())
        .copied()?;
    Some((median, activation))
}

fn depth_cause(record: &RunRecord, vanishing: bool) -> Option<Cause> {
    let (s, activation) = weight_scale(record)?;
    let init = |detail: String| Some(Cause { kind: CauseKind::InitScale, detail });
    if vanishing && s < INIT_TOO_SMALL {
        return init(format!(
            "the weights are initialised too small: σ_w² = fan_in·Var(W) = {s:.3}, far below the ~1 (2 for ReLU) that keeps the signal's scale; each layer shrinks it"
        ));
    }
    match activation {
        Activation::Sigmoid if vanishing => Some(Cause {
            kind: CauseKind::Activation,
            detail: format!(
                "the sigmoid's derivative is at most 1/4, so each layer multiplies the backward signal by at most σ_w/4 ≈ {:.3} here (σ_w² = {s:.3}); an activation with slope 1 (ReLU, tanh) or normalisation avoids it",
                s.sqrt() / 4.0
            ),
        }),
        Activation::Relu | Activation::LeakyRelu { .. } => {
            let f = s / 2.0;
            let off = if vanishing { f < RELU_FACTOR_BAND.0 } else { f > RELU_FACTOR_BAND.1 };
            off.then(|| Cause {
                kind: CauseKind::InitScale,
                detail: format!(
                    "the initialisation scale: for ReLU each layer multiplies the signal's variance by σ_w²/2 = {f:.3} (σ_w² = {s:.3}); He init (σ_w² = 2) keeps it at 1"
                ),
            })
        }
        Activation::Tanh | Activation::Linear => {
            let off = if vanishing { s < TANH_BAND.0 } else { s > TANH_BAND.1 };
            off.then(|| Cause {
                kind: CauseKind::InitScale,
                detail: format!(
                    "the initialisation scale: σ_w² = {s:.3}, while about 1 (Xavier/LeCun) keeps a tanh stack's signal at its scale"
                ),
            })
        }
        _ => None,
    }
}

fn dead_cause(record: &RunRecord, layers: &[String]) -> Option<Cause> {
    let mut at_init = Vec::new();
    let mut at_end = Vec::new();
    for name in layers {
        let Some(i) = record.layers.iter().position(|l| &l.name == name) else { continue };
        let Some(series) = record.layer_stats.get(i).map(|s| &s.dead_fraction) else { continue };
        if let (Some(Some(first)), Some(Some(last))) = (series.first(), series.iter().rev().find(|v| v.is_some())) {
            at_init.push(*first);
            at_end.push(*last);
        }
    }
    if at_init.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = (mean(&at_init), mean(&at_end));
    // Below the rule's own warning threshold at step 0, flagged at the end: they died training.
    if a < DEAD_UNITS.warning && b > a {
        Some(Cause {
            kind: CauseKind::LearningRate,
            detail: format!(
                "the units died during training ({:.0}% dead at step 0, {:.0}% at the end): large updates pushed their pre-activations below 0 for every input; a smaller learning rate, or a leaky activation, keeps them alive",
                100.0 * a,
                100.0 * b
            ),
        })
    } else {
        Some(Cause {
            kind: CauseKind::InitScale,
            detail: format!(
                "the units were dead from the start ({:.0}% at step 0): the initialisation (weights and biases) leaves their pre-activations below 0",
                100.0 * a
            ),
        })
    }
}
