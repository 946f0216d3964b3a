//! Diagnostics: the rules that read a whole run (at initialisation, during training, at the end)
//! and say what is wrong, where, and how sure the measurement is.
//!
//! The rules are data: [`RULES`] holds, per code, its warning/critical thresholds as numbers, the
//! sentence that states the rule (written from those numbers) and the check that applies them.
//! [`diagnose`] is a loop over the table; README.md's rules table and the OpenAPI `Diagnostic`
//! description are [`markdown_table`], so the thresholds a client reads are the ones the code
//! applies. Each diagnostic carries the measured values in its typed evidence
//! (`analysis/findings.rs`); what is measured is defined in `analysis/measures.rs`.
//!
//! Depends on the engine's run record, `findings` and `measures` only.

use super::findings::{
    ClippingEvidence, DepthEvidence, Diagnostic, DiagnosticCode, Evidence, GrowthEvidence, HorizonEvidence,
    InputScaleEvidence, LayerEvidence, NonFiniteEvidence, NotLearningEvidence, PerLayerEvidence, RatioKind,
    RecoveredEvidence, Severity, Thresholds, TimestepEvidence, Verdict,
};
use super::measures::{first_recurrent, hidden_weight_layers, memory_horizon, FirstLast, HORIZON_FRACTION};
use crate::engine::train::{RunEnd, RunRecord};

/// One rule: its code, its thresholds, its statement and its check.
pub struct Rule {
    /// The diagnostic code the rule emits.
    pub code: DiagnosticCode,
    /// Warning and critical thresholds of its main measurement (the numbers its evidence
    /// reports).
    pub band: Thresholds,
    /// The rule in words, written from `band` and the rule's other numbers.
    pub describe: fn(&Rule) -> String,
    /// Appends what the rule finds in `run` (after the earlier rules' findings in `found`).
    check: fn(&Rule, &Run<'_>, &mut Vec<Diagnostic>),
}

impl Rule {
    /// The rule in words (see [`Rule::describe`]).
    pub fn text(&self) -> String {
        (self.describe)(self)
    }
}

/// Global gradient norm growth from step 0 above which `exploding_gradient` is critical.
pub const GROWTH_CRITICAL: f64 = 1e3;
/// Fraction of steps with clipping acting above which `exploding_gradient` warns.
pub const CLIP_RATE_WARNING: f64 = 0.5;
/// The healthy range of the median update ratio ||dW|| / ||W|| per step.
pub const UPDATE_RATIO_RANGE: [f64; 2] = [1e-5, 1e-1];
/// Sequences shorter than this have no `long_range_vanishing` finding.
pub const HORIZON_MIN_LENGTH: usize = 8;
/// Training steps before `not_learning` judges the loss.
pub const NOT_LEARNING_MIN_STEPS: usize = 50;
/// Accuracy within this of chance is as good as guessing.
pub const CHANCE_MARGIN: f64 = 0.05;

/// `vanishing_gradient`: first/last hidden-layer gradient ratio.
pub const VANISHING: Thresholds = Thresholds { warning: 1e-2, critical: 1e-4 };
/// `exploding_gradient`: the same ratio, and the growth through time.
pub const EXPLODING: Thresholds = Thresholds { warning: 1e2, critical: 1e4 };
/// `saturation`: fraction of saturated units at any probe.
pub const SATURATION: Thresholds = Thresholds { warning: 0.5, critical: 0.9 };
/// `dead_units`: dead fraction at the last probe.
pub const DEAD_UNITS: Thresholds = Thresholds { warning: 0.25, critical: 0.5 };
/// `long_range_vanishing`: the memory horizon against the sequence length T divided by these
/// (T/4 warning, T/10 critical).
pub const HORIZON: Thresholds = Thresholds { warning: 4.0, critical: 10.0 };
/// `input_scale`: a feature's |mean| or standard deviation on the training split. Standardized
/// features sit at 0 and 1; the generators' own scales (spirals, moons, xor, circles ~0.5-1,
/// sine x ~ U(-pi, pi) with std 1.8, teacher N(0, 1)) stay below 3, while sklearn-style blobs
/// (centres U(-10, 10): per-feature std ~5-6, |mean| up to ~5) are above it. At 10 the first
/// layer's pre-activations are 10x what the initialisation is scaled for.
pub const INPUT_SCALE: Thresholds = Thresholds { warning: 3.0, critical: 10.0 };
/// `input_scale` warns when the root mean square of the inputs over all features is below this:
/// inputs that small leave the first layer's gradient (proportional to its input) 10x smaller
/// than at unit scale. Taken over all features, not per feature, so that sparse one-hot or
/// marker features (copy, adding: std ~0.1-0.3 each) do not count as small.
pub const INPUT_RMS_WARNING: f64 = 0.1;
/// `rank_collapse`: the rank-collapse measure (relative distance of a sequence's tokens from
/// their mean, `engine::probe`) of an attention layer's token representations. 1 for unrelated
/// tokens; one pure attention layer at init leaves about 0.5, two about 2e-4 (Dong et al. 2021;
/// tests/transformer_science.rs); with skip connections it stays above 0.9.
pub const RANK_COLLAPSE: Thresholds = Thresholds { warning: 0.1, critical: 1e-3 };
/// `attention_entropy_collapse`: an attention layer's entropy (nats), averaged over its heads, at
/// the last probe. Uniform attention over T tokens has ln T (2.8 for 16); below 0.1 a head puts
/// ~99% of its weight on one token on average (e^0.1 = 1.1 tokens attended), where the
/// softmax passes back almost no gradient (Zhai et al. 2023).
pub const ATTENTION_ENTROPY: Thresholds = Thresholds { warning: 0.1, critical: 0.01 };
/// `not_learning`: final loss as a fraction of the step-0 loss (warning) and of the best
/// constant prediction's loss (critical).
pub const NOT_LEARNING: Thresholds = Thresholds { warning: 0.9, critical: 0.9 };

/// The rules, in the order they are evaluated (and their diagnostics listed; the per-layer
/// ones — saturation, dead units, update ratio — by the first layer they affect, input side
/// first).
pub const RULES: &[Rule] = &[
    Rule {
        code: DiagnosticCode::NonFinite,
        // Any NaN or Inf count above zero.
        band: Thresholds { warning: 0.0, critical: 0.0 },
        describe: |_| {
            "NaN or Inf in the loss, an activation or a gradient: critical, with the step and the first layer".into()
        },
        check: non_finite,
    },
    Rule {
        code: DiagnosticCode::InputScale,
        band: INPUT_SCALE,
        describe: |r| {
            format!(
                "an input feature's |mean| or standard deviation on the training split (over every time step for \
                 sequences) > {} warning, > {} critical; or the inputs' root mean square over all features < {} \
                 (warning); standardized data (`data.standardize`) has 0 and 1",
                num(r.band.warning),
                num(r.band.critical),
                num(INPUT_RMS_WARNING)
            )
        },
        check: input_scale,
    },
    Rule {
        code: DiagnosticCode::VanishingGradient,
        band: VANISHING,
        describe: |r| {
            format!(
                "ratio of the first to the last hidden weight layer's grad_norm (or, when the weight gradients are \
                 uniform, of delta_norm) at step 0 and at the last probe: < {} warning, < {} critical; info when it \
                 vanished at step 0 but training brought it back above {}",
                num(r.band.warning),
                num(r.band.critical),
                num(r.band.warning)
            )
        },
        check: vanishing,
    },
    Rule {
        code: DiagnosticCode::ExplodingGradient,
        band: EXPLODING,
        describe: |r| {
            format!(
                "the same comparison, with the larger of the two ratios (grad_norm or delta_norm: a chaotic ReLU \
                 stack keeps its weight gradients uniform while the backward signal grows; grad_norm alone when every \
                 hidden layer is normalised, since normalised weights are scale-invariant), > {w} warning, > {c} \
                 critical; for recurrent layers, ||dL/dh_1|| / ||dL/dh_T|| > {w} \
                 warning, > {c} critical; or the global grad norm grows > {g}x from step 0 (critical; not out of a \
                 vanishing start); or clipping changed the gradient on > {p}% of steps (warning)",
                w = num(r.band.warning),
                c = num(r.band.critical),
                g = num(GROWTH_CRITICAL),
                p = num(CLIP_RATE_WARNING * 100.0)
            )
        },
        check: exploding,
    },
    Rule {
        code: DiagnosticCode::Saturation,
        band: SATURATION,
        describe: |r| {
            format!(
                "sigmoid/tanh layer with saturation (units whose derivative is < 1% of its maximum) > {} warning, \
                 > {} critical, at any probe",
                num(r.band.warning),
                num(r.band.critical)
            )
        },
        check: saturation,
    },
    Rule {
        code: DiagnosticCode::DeadUnits,
        band: DEAD_UNITS,
        describe: |r| {
            format!(
                "ReLU layer whose dead_fraction at the last probe is > {} warning, > {} critical",
                num(r.band.warning),
                num(r.band.critical)
            )
        },
        check: dead_units,
    },
    Rule {
        code: DiagnosticCode::UpdateRatio,
        band: Thresholds { warning: UPDATE_RATIO_RANGE[0], critical: UPDATE_RATIO_RANGE[1] },
        describe: |_| {
            format!(
                "median update_ratio (||dW||/||W|| per step) of a weight layer < {} or > {} (warning); ~1e-3 is the \
                 usual healthy range",
                num(UPDATE_RATIO_RANGE[0]),
                num(UPDATE_RATIO_RANGE[1])
            )
        },
        check: update_ratio,
    },
    Rule {
        code: DiagnosticCode::LongRangeVanishing,
        band: HORIZON,
        describe: |r| {
            format!(
                "recurrent networks of at least {} time steps: memory horizon (largest lag with ||dL/dh_t|| > {} of \
                 its max) < T/{} warning, < T/{} critical",
                HORIZON_MIN_LENGTH,
                num(HORIZON_FRACTION),
                num(r.band.warning),
                num(r.band.critical)
            )
        },
        check: long_range,
    },
    Rule {
        code: DiagnosticCode::NotLearning,
        band: NOT_LEARNING,
        describe: |r| {
            format!(
                "after at least {} steps, final training loss > {}x the loss at step 0 (warning), or > {}x the loss \
                 of the best constant prediction (target variance for mse, class entropy for cross-entropy) or \
                 accuracy within {} of chance (critical)",
                NOT_LEARNING_MIN_STEPS,
                num(r.band.warning),
                num(r.band.critical),
                num(CHANCE_MARGIN)
            )
        },
        check: not_learning,
    },
    Rule {
        code: DiagnosticCode::RankCollapse,
        band: RANK_COLLAPSE,
        describe: |r| {
            format!(
                "sequences: rank-collapse measure at the last probe (||X - 1 mean(X)||_F / ||X||_F of the tokens after \
                 an attention layer, or after the residual block around it) < {} warning, < {} critical when the run \
                 also did not learn (info: collapsed at step 0 only)",
                num(r.band.warning),
                num(r.band.critical)
            )
        },
        check: rank_collapse,
    },
    Rule {
        code: DiagnosticCode::AttentionEntropyCollapse,
        band: ATTENTION_ENTROPY,
        describe: |r| {
            format!(
                "attention layer whose entropy (nats, averaged over heads, samples and query positions; ln T when \
                 uniform) at the last probe is < {} warning, < {} critical when the run also did not learn or \
                 diverged",
                num(r.band.warning),
                num(r.band.critical)
            )
        },
        check: attention_entropy,
    },
];

/// Which verdict each code gives, most serious first: within a severity, the first code found
/// in this order names the run (the cause before its effects). `update_ratio` and
/// `input_scale` give none: they name a cause the other findings show the effects of.
pub const VERDICTS: [(DiagnosticCode, Verdict); 7] = [
    (DiagnosticCode::NonFinite, Verdict::Diverged),
    (DiagnosticCode::ExplodingGradient, Verdict::Exploding),
    (DiagnosticCode::VanishingGradient, Verdict::Vanishing),
    (DiagnosticCode::LongRangeVanishing, Verdict::Vanishing),
    (DiagnosticCode::Saturation, Verdict::Saturated),
    (DiagnosticCode::DeadUnits, Verdict::DeadUnits),
    (DiagnosticCode::NotLearning, Verdict::NotLearning),
];

/// A number as the rules table writes it: powers of ten as `1e-2`, others as they are.
fn num(x: f64) -> String {
    let exp = x.abs().log10().round();
    if x > 0.0 && (10f64.powf(exp) - x).abs() <= 1e-12 * x && exp.abs() >= 2.0 {
        format!("1e{exp}")
    } else {
        format!("{x}")
    }
}

/// The rules table (Markdown): README.md's "Diagnostics" table and the OpenAPI `Diagnostic`
/// description.
pub fn markdown_table() -> String {
    let mut out = String::from("| code | rule (warning / critical thresholds) |\n|---|---|\n");
    for rule in RULES {
        out.push_str(&format!("| `{}` | {} |\n", rule.code.name(), rule.text()));
    }
    out
}

/// What the rules read: the run record and what is derived from it once.
pub struct Run<'a> {
    record: &'a RunRecord,
    classes: Option<usize>,
    /// The first/last hidden weight layers, when there are two and a probe.
    first_last: Option<FirstLast>,
    /// What their comparison says (read by the vanishing and the exploding rule).
    depth: Depth,
}

/// Evaluates every rule on `record`; `classes` is the number of classes (for chance accuracy).
pub fn diagnose(record: &RunRecord, classes: Option<usize>) -> Vec<Diagnostic> {
    let (depth, first_last) = depth(record);
    let run = Run { record, classes, first_last, depth };
    let mut out = Vec::new();
    for rule in RULES {
        (rule.check)(rule, &run, &mut out);
    }
    // Per-layer diagnostics are listed by the first layer they affect (stable: rule order
    // within a layer).
    let first_layer = |d: &Diagnostic| {
        d.layers.first().and_then(|n| record.layers.iter().position(|l| &l.name == n)).unwrap_or(usize::MAX)
    };
    let per_layer = |d: &Diagnostic| matches!(d.evidence, Evidence::PerLayer(_));
    if let Some(start) = out.iter().position(per_layer) {
        let end = out.iter().rposition(per_layer).map_or(start, |e| e + 1);
        out[start..end].sort_by_key(first_layer);
    }
    out
}

/// The verdict: the most serious finding (critical before warning), else `healthy`.
pub fn verdict(diagnostics: &[Diagnostic]) -> Verdict {
    for severity in [Severity::Critical, Severity::Warning] {
        for (code, verdict) in VERDICTS {
            if diagnostics.iter().any(|d| d.code == code && d.severity == severity) {
                return verdict;
            }
        }
    }
    Verdict::Healthy
}

fn diag(
    code: DiagnosticCode,
    severity: Severity,
    layers: Vec<String>,
    message: String,
    evidence: Evidence,
) -> Diagnostic {
    Diagnostic {
        code,
        severity,
        layers,
        message,
        evidence,
        recommendations: Vec::new(),
        consequence_of: None,
        cause: None,
    }
}

fn non_finite(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    if let RunEnd::NonFinite { step, layer, location } = &run.record.end {
        out.push(diag(
            rule.code,
            Severity::Critical,
            vec![layer.clone()],
            format!("NaN or Inf appeared at step {step} in the {location} of {layer}; the run was stopped there"),
            Evidence::NonFinite(NonFiniteEvidence {
                layer: layer.clone(),
                location: location.to_string(),
                step: *step,
            }),
        ));
    }
}

fn input_scale(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let stats = &run.record.input_stats;
    let features: Vec<(f64, f64)> = stats.mean.iter().zip(&stats.std).map(|(&m, &s)| (m, s)).collect();
    if features.is_empty() || features.iter().any(|(m, s)| !(m.is_finite() && s.is_finite())) {
        return;
    }
    let scale = |(m, s): (f64, f64)| m.abs().max(s);
    let (worst_feature, worst) =
        features.iter().map(|&f| scale(f)).enumerate().fold((0, 0.0f64), |a, (i, v)| if v > a.1 { (i, v) } else { a });
    let max_abs_mean = features.iter().map(|(m, _)| m.abs()).fold(0.0, f64::max);
    let max_std = features.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    let out_of_range = features.iter().filter(|&&f| scale(f) > rule.band.warning).count();
    let input_rms = (features.iter().map(|(m, s)| m * m + s * s).sum::<f64>() / features.len() as f64).sqrt();
    let too_large = worst > rule.band.warning;
    if !too_large && input_rms >= INPUT_RMS_WARNING {
        return;
    }
    let message = if too_large {
        let (m, s) = features[worst_feature];
        format!(
            "{out_of_range} of {} input features are far from standardized; feature {worst_feature} has mean \
             {m:.2} and standard deviation {s:.2} on the training split",
            features.len()
        )
    } else {
        format!("the inputs are small: their root mean square over all features is {input_rms:.2e}")
    };
    out.push(diag(
        rule.code,
        Severity::of(worst > rule.band.critical),
        Vec::new(),
        message,
        Evidence::InputScale(InputScaleEvidence {
            features: features.len(),
            features_out_of_range: out_of_range,
            input_rms,
            max_abs_mean,
            max_std,
            rms_warning: INPUT_RMS_WARNING,
            thresholds: rule.band,
            worst_feature,
        }),
    ));
}

/// What the first/last hidden-layer comparison says: at most one of vanishing and exploding,
/// at the first probe (step 0, then the last) where either shows.
enum Depth {
    None,
    /// Vanished at step 0, recovered by the end: (worst ratio at step 0, at the end, evidence).
    Recovered(f64, f64, RecoveredEvidence),
    Vanishing {
        when: &'static str,
        worst: f64,
        evidence: DepthEvidence,
    },
    Exploding {
        when: &'static str,
        ratio: f64,
        evidence: DepthEvidence,
    },
}

struct DepthAt {
    /// The smaller ratio and its evidence (read by the vanishing rule).
    small: f64,
    small_evidence: DepthEvidence,
    /// The larger ratio and its evidence (read by the exploding rule).
    large: f64,
    large_evidence: DepthEvidence,
}

fn depth(record: &RunRecord) -> (Depth, Option<FirstLast>) {
    let n = record.steps.len();
    let Some(fl) = FirstLast::of(record).filter(|_| n > 0) else { return (Depth::None, None) };
    // A stack of normalised layers is scale-invariant in its weights: the backward signal may
    // grow through the norms (Yang et al. 2019) without the weight updates growing, so only the
    // weight-gradient ratio counts as exploding there.
    let hidden = hidden_weight_layers(record.layers.iter().map(|l| l.kind));
    let normalized = hidden.iter().all(|&i| record.layers.get(i).is_some_and(|l| l.normalized));
    let measure = |probe: usize| {
        let r = fl.ratios(record, probe)?;
        let evidence = |worst: f64, ratio, thresholds| DepthEvidence {
            delta_ratio_first_last: r.delta,
            grad_ratio_first_last: r.grad,
            layers_between: fl.span,
            per_layer_factor: worst.powf(1.0 / fl.span),
            probe_step: record.steps[probe],
            ratio,
            thresholds,
        };
        let (small, large) = (r.worst_small(), if normalized { r.grad } else { r.worst_large() });
        Some(DepthAt {
            small,
            small_evidence: evidence(small, r.smallest(), VANISHING),
            large,
            large_evidence: evidence(large, if normalized { RatioKind::GradNorm } else { r.largest() }, EXPLODING),
        })
    };
    let init = measure(0);
    let end = if n > 1 { measure(n - 1) } else { None };
    if let (Some(i), Some(e)) = (&init, &end) {
        if i.small < VANISHING.warning && e.small >= VANISHING.warning {
            let evidence = RecoveredEvidence { at_end: e.small_evidence.clone(), at_init: i.small_evidence.clone() };
            return (Depth::Recovered(i.small, e.small, evidence), Some(fl));
        }
    }
    for (found, when) in [(init, "at initialisation"), (end, "at the end of training")] {
        let Some(at) = found else { continue };
        if at.small < VANISHING.warning {
            return (Depth::Vanishing { when, worst: at.small, evidence: at.small_evidence }, Some(fl));
        } else if at.large > EXPLODING.warning {
            return (Depth::Exploding { when, ratio: at.large, evidence: at.large_evidence }, Some(fl));
        }
    }
    (Depth::None, Some(fl))
}

fn vanishing(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let Some(fl) = run.first_last else { return };
    let name = |i: usize| run.record.layers[i].name.clone();
    match &run.depth {
        Depth::Recovered(w0, w1, evidence) => out.push(diag(
            rule.code,
            Severity::Info,
            vec![name(fl.first)],
            format!(
                "at initialisation the gradient reaching {} was {w0:.1e} times that of {}, but training recovered it \
                 (ratio {w1:.1e} at the end)",
                name(fl.first),
                name(fl.last)
            ),
            Evidence::Recovered(evidence.clone()),
        )),
        Depth::Vanishing { when, worst, evidence } => out.push(diag(
            rule.code,
            Severity::of(*worst < rule.band.critical),
            vec![name(fl.first)],
            format!(
                "{when}, the gradient reaching {} is {:.1e} times that of {} (a factor {:.2} per layer)",
                name(fl.first),
                worst,
                name(fl.last),
                worst.powf(1.0 / fl.span)
            ),
            Evidence::Depth(evidence.clone()),
        )),
        Depth::Exploding { .. } | Depth::None => {}
    }
}

fn exploding(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let record = run.record;
    let start = out.len();
    if let (Depth::Exploding { when, ratio, evidence }, Some(fl)) = (&run.depth, run.first_last) {
        let name = |i: usize| record.layers[i].name.clone();
        let evidence = DepthEvidence { thresholds: rule.band, ..evidence.clone() };
        let what = match evidence.ratio {
            RatioKind::GradNorm => "weight gradient",
            RatioKind::DeltaNorm => "backward signal (delta_norm)",
        };
        out.push(diag(
            rule.code,
            Severity::of(*ratio > rule.band.critical),
            vec![name(fl.first)],
            format!(
                "{when}, the {what} reaching {} is {ratio:.1e} times that of {} (a factor {:.2} per layer)",
                name(fl.first),
                name(fl.last),
                evidence.per_layer_factor
            ),
            Evidence::Depth(evidence),
        ));
    }
    // The gradient through time: ||dL/dh_1|| / ||dL/dh_T|| growing back through the sequence.
    if let Some(i) = first_recurrent(&record.layers) {
        let series = &record.layer_stats[i].recurrent;
        for (probe, when) in [(0, "at initialisation"), (series.len().saturating_sub(1), "at the end of training")] {
            let Some(r) = series.get(probe) else { continue };
            let norms = &r.timestep_grad_norm;
            let (Some(&first_t), Some(&last_t)) = (norms.first(), norms.last()) else { continue };
            if !(first_t.is_finite() && last_t.is_finite() && last_t > 0.0) || norms.len() < 2 {
                continue;
            }
            let growth = first_t / last_t;
            if growth > rule.band.warning {
                let t = norms.len();
                let per_step = growth.powf(1.0 / (t - 1) as f64);
                out.push(diag(
                    rule.code,
                    Severity::of(growth > rule.band.critical),
                    vec![record.layers[i].name.clone()],
                    format!(
                        "{when}, ||dL/dh_t|| grows {growth:.1e}x from the last to the first of {t} time steps \
                         (a factor {per_step:.2} per step back)"
                    ),
                    Evidence::Timesteps(TimestepEvidence {
                        per_step_factor: per_step,
                        probe_step: record.steps.get(probe).copied(),
                        sequence_length: t,
                        thresholds: rule.band,
                        timestep_ratio_first_last: growth,
                    }),
                ));
                break;
            }
        }
    }
    if let (Some(g0), Some(gmax)) = (
        record.grad_norm_global.first().copied().filter(|v| v.is_finite() && *v > 0.0),
        record.grad_norm_global.iter().copied().filter(|v| v.is_finite()).reduce(f64::max),
    ) {
        // Growth out of a vanishing start is recovery, not explosion.
        let vanished = out.iter().any(|d| d.code == DiagnosticCode::VanishingGradient);
        if gmax / g0 > GROWTH_CRITICAL && !vanished && out.len() == start {
            out.push(diag(
                rule.code,
                Severity::Critical,
                Vec::new(),
                format!("the global gradient norm grew {:.1e}x during training", gmax / g0),
                Evidence::Growth(GrowthEvidence {
                    grad_norm_global_max: gmax,
                    grad_norm_global_step0: g0,
                    threshold: GROWTH_CRITICAL,
                }),
            ));
        }
    }
    if record.steps_run > 0 {
        let rate = record.clipped_steps as f64 / record.steps_run as f64;
        if rate > CLIP_RATE_WARNING {
            out.push(diag(
                rule.code,
                Severity::Warning,
                Vec::new(),
                format!("clipping changed the gradient on {:.0}% of steps", rate * 100.0),
                Evidence::Clipping(ClippingEvidence {
                    clip_rate: rate,
                    clipped_steps: record.clipped_steps,
                    steps: record.steps_run,
                    threshold: CLIP_RATE_WARNING,
                }),
            ));
        }
    }
}

/// One diagnostic naming every affected layer, with each layer's evidence and the worst
/// severity; the message is the first layer's (prefixed with the count when there are more).
fn per_layer(code: DiagnosticCode, found: Vec<(String, Severity, String, LayerEvidence)>, out: &mut Vec<Diagnostic>) {
    let Some(first_message) = found.first().map(|f| f.2.clone()) else { return };
    let severity = found.iter().map(|f| f.1).max().unwrap_or(Severity::Warning);
    let message = if found.len() > 1 {
        format!("{} layers affected; the first: {first_message}", found.len())
    } else {
        first_message
    };
    let layers = found.iter().map(|f| f.0.clone()).collect();
    let per_layer = found.into_iter().map(|(name, _, _, e)| (name, e)).collect();
    out.push(diag(code, severity, layers, message, Evidence::PerLayer(PerLayerEvidence { per_layer })));
}

fn saturation(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let mut found = Vec::new();
    for (info, s) in run.record.layers.iter().zip(&run.record.layer_stats) {
        let Some(max) = s.saturation.iter().copied().flatten().filter(|v| v.is_finite()).reduce(f64::max) else {
            continue;
        };
        if max > rule.band.warning {
            found.push((
                info.name.clone(),
                Severity::of(max > rule.band.critical),
                format!(
                    "{:.0}% of {}'s units are saturated (derivative below 1% of its maximum)",
                    max * 100.0,
                    info.name
                ),
                LayerEvidence::Saturation { saturation_max: max, thresholds: rule.band },
            ));
        }
    }
    per_layer(rule.code, found, out);
}

fn dead_units(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let mut found = Vec::new();
    for (info, s) in run.record.layers.iter().zip(&run.record.layer_stats) {
        let Some(dead) = s.dead_fraction.last().copied().flatten().filter(|v| v.is_finite()) else { continue };
        if dead > rule.band.warning {
            found.push((
                info.name.clone(),
                Severity::of(dead > rule.band.critical),
                format!("{:.0}% of {}'s ReLU units output zero for every sample of the batch", dead * 100.0, info.name),
                LayerEvidence::Dead {
                    dead_fraction: dead,
                    dead_fraction_step0: s.dead_fraction.first().copied().flatten(),
                    thresholds: rule.band,
                },
            ));
        }
    }
    per_layer(rule.code, found, out);
}

fn update_ratio(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let mut found = Vec::new();
    if run.record.steps_run == 0 {
        return;
    }
    for (info, s) in run.record.layers.iter().zip(&run.record.layer_stats) {
        if !info.kind.has_weights() {
            continue;
        }
        let mut r: Vec<f64> = s.update_ratio.iter().copied().flatten().filter(|v| v.is_finite()).collect();
        if r.is_empty() {
            continue;
        }
        r.sort_by(f64::total_cmp);
        let median = r[r.len() / 2];
        if !(rule.band.warning..=rule.band.critical).contains(&median) {
            found.push((
                info.name.clone(),
                Severity::Warning,
                format!(
                    "{}'s weights change by {median:.1e} of their norm per step (healthy is around 1e-3)",
                    info.name
                ),
                LayerEvidence::UpdateRatio { median_update_ratio: median, range: UPDATE_RATIO_RANGE },
            ));
        }
    }
    per_layer(rule.code, found, out);
}

fn long_range(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let record = run.record;
    let Some(i) = first_recurrent(&record.layers) else { return };
    let Some(last) = record.layer_stats[i].recurrent.last() else { return };
    let t = last.timestep_grad_norm.len();
    let Some(h) = memory_horizon(&last.timestep_grad_norm) else { return };
    let (warning, critical) = (t as f64 / rule.band.warning, t as f64 / rule.band.critical);
    if t >= HORIZON_MIN_LENGTH && (h as f64) < warning {
        out.push(diag(
            rule.code,
            Severity::of((h as f64) < critical),
            vec![record.layers[i].name.clone()],
            format!("the gradient reaches back only {h} of {t} time steps (above 1e-3 of its maximum)"),
            Evidence::Horizon(HorizonEvidence {
                memory_horizon: h,
                sequence_length: t,
                thresholds: Thresholds { critical, warning },
            }),
        ));
    }
}

/// Per attention layer, its token representations: the innermost block around it, or else its
/// own output. Collapsed tokens are harmless when one vector per sequence is all the readout
/// needs (a pooled class), so the finding is critical only when the run also did not learn.
fn rank_collapse(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let record = run.record;
    let stuck = out.iter().any(|d| d.code == DiagnosticCode::NotLearning && d.severity == Severity::Critical);
    let mut found = Vec::new();
    for (info, s) in record.layers.iter().zip(&record.layer_stats) {
        if s.attention.is_empty() {
            continue;
        }
        let block = record.blocks.iter().filter(|b| b.layers.contains(&info.index)).min_by_key(|b| b.layers.len());
        let series: Vec<Option<f64>> = match block {
            Some(b) => record.block_stats[b.index].rank_collapse.clone(),
            None => s.attention.iter().map(|a| a.rank_collapse).collect(),
        };
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        let (Some(first), Some(last)) =
            (finite(series.first().copied().flatten()), finite(series.last().copied().flatten()))
        else {
            continue;
        };
        let at = block.map_or_else(|| info.name.clone(), |b| format!("{} (around {})", b.name, info.name));
        let severity = if last < rule.band.critical && stuck {
            Severity::Critical
        } else if last < rule.band.warning {
            Severity::Warning
        } else if first < rule.band.warning {
            Severity::Info
        } else {
            continue;
        };
        let message = if severity == Severity::Info {
            format!("the tokens after {at} had collapsed to their mean at step 0 ({first:.1e}); training separated them ({last:.2})")
        } else {
            format!(
                "the tokens after {at} are within {last:.1e} of their mean (relative): attention mixed them into one"
            )
        };
        found.push((
            info.name.clone(),
            severity,
            message,
            LayerEvidence::RankCollapse {
                rank_collapse: last,
                rank_collapse_step0: Some(first),
                thresholds: rule.band,
            },
        ));
    }
    per_layer(rule.code, found, out);
}

/// Per attention layer, the mean over heads of its attention entropy. One sharp head can be the
/// task (a head that reads the marked token); all heads near one-hot is a saturated softmax.
/// Critical only when the run also failed: not learning, or NaN/Inf.
fn attention_entropy(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let record = run.record;
    let failed = out.iter().any(|d| {
        d.severity == Severity::Critical && matches!(d.code, DiagnosticCode::NotLearning | DiagnosticCode::NonFinite)
    });
    let mean = |entropy: &[f64]| {
        let finite: Vec<f64> = entropy.iter().copied().filter(|v| v.is_finite()).collect();
        (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
    };
    let mut found = Vec::new();
    for (info, s) in record.layers.iter().zip(&record.layer_stats) {
        let (Some(first), Some(last)) = (s.attention.first(), s.attention.last()) else { continue };
        let Some(entropy) = mean(&last.entropy) else { continue };
        if entropy >= rule.band.warning {
            continue;
        }
        let severity = Severity::of(entropy < rule.band.critical && failed);
        found.push((
            info.name.clone(),
            severity,
            format!(
                "{}'s heads attend to ~{:.2} tokens each (entropy {entropy:.1e} nats averaged over heads): its softmax \
                 is saturated and passes back almost no gradient to the queries and keys",
                info.name,
                entropy.exp()
            ),
            LayerEvidence::AttentionEntropy { entropy, entropy_step0: mean(&first.entropy), thresholds: rule.band },
        ));
    }
    per_layer(rule.code, found, out);
}

fn not_learning(rule: &Rule, run: &Run<'_>, out: &mut Vec<Diagnostic>) {
    let record = run.record;
    let (Some(&l0), Some(lf)) = (record.loss.first(), record.final_loss) else { return };
    let chance = run.classes.map(|k| 1.0 / k.max(1) as f64);
    let near_chance = chance.zip(record.final_accuracy).is_some_and(|(c, a)| a < c + CHANCE_MARGIN);
    let stuck = l0.is_finite() && lf.is_finite() && lf > rule.band.warning * l0;
    let no_better_than_constant = record.baseline_loss.is_some_and(|b| lf.is_finite() && lf > rule.band.critical * b);
    if record.steps_run >= NOT_LEARNING_MIN_STEPS && (stuck || no_better_than_constant) {
        let mut message =
            format!("after {} steps the training loss is {lf:.4}, against {l0:.4} at step 0", record.steps_run);
        if let Some(b) = record.baseline_loss {
            message.push_str(&format!(" and {b:.4} for the best constant prediction"));
        }
        out.push(diag(
            rule.code,
            Severity::of(near_chance || no_better_than_constant),
            Vec::new(),
            message,
            Evidence::NotLearning(NotLearningEvidence {
                baseline_loss: record.baseline_loss,
                chance_accuracy: chance,
                final_accuracy: record.final_accuracy,
                final_loss: lf,
                loss_step0: l0,
                threshold: rule.band.warning,
            }),
        ));
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_code_has_exactly_one_rule_and_every_verdict_a_code() {
        for code in DiagnosticCode::iter() {
            assert_eq!(RULES.iter().filter(|r| r.code == code).count(), 1, "{code:?}");
        }
        for v in Verdict::iter().filter(|v| *v != Verdict::Healthy) {
            assert!(VERDICTS.iter().any(|(_, w)| *w == v), "{v:?}");
        }
    }

    #[test]
    fn the_table_states_the_numbers_the_checks_use() {
        let table = markdown_table();
        assert!(table.contains("| `vanishing_gradient` |") && table.contains("< 1e-2 warning, < 1e-4 critical"));
        assert!(table.contains("> 1e3x from step 0") && table.contains("> 50% of steps"));
        assert!(table.contains("< T/4 warning, < T/10 critical"));
        assert!(table.contains("> 0.25 warning, > 0.5 critical"));
        assert!(table.contains("< 1e-5 or > 0.1 (warning)"));
        assert_eq!(table.lines().count(), RULES.len() + 2);
    }

    #[test]
    fn numbers_are_written_as_a_person_would() {
        assert_eq!(num(1e-2), "1e-2");
        assert_eq!(num(1e4), "1e4");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(50.0), "50");
        assert_eq!(num(4.0), "4");
        assert_eq!(num(10.0), "10");
    }

    fn finding(code: DiagnosticCode, severity: Severity) -> Diagnostic {
        diag(
            code,
            severity,
            Vec::new(),
            String::new(),
            Evidence::Growth(GrowthEvidence { grad_norm_global_max: 0.0, grad_norm_global_step0: 0.0, threshold: 0.0 }),
        )
    }

    #[test]
    fn the_verdict_is_the_most_serious_cause() {
        use DiagnosticCode as C;
        assert_eq!(verdict(&[]), Verdict::Healthy);
        assert_eq!(verdict(&[finding(C::VanishingGradient, Severity::Info)]), Verdict::Healthy);
        assert_eq!(verdict(&[finding(C::UpdateRatio, Severity::Warning)]), Verdict::Healthy);
        let both = [finding(C::NotLearning, Severity::Critical), finding(C::VanishingGradient, Severity::Warning)];
        assert_eq!(verdict(&both), Verdict::NotLearning, "critical before warning");
        let both = [finding(C::Saturation, Severity::Critical), finding(C::VanishingGradient, Severity::Critical)];
        assert_eq!(verdict(&both), Verdict::Vanishing, "the cause before its effect");
    }
}
