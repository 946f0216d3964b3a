//! Diagnostics: rules that read the whole run (at initialisation, during training, at the end)
//! and say what is wrong, where, and how sure the measurement is.
//!
//! Every rule and threshold is in [`RULES`] (also rendered in README.md) and each diagnostic
//! carries the measured values in `evidence`. Severity: `critical` when the problem alone
//! explains a failure to learn, `warning` when it is worth fixing, `info` for a note.
//!
//! Depends on the engine's run record only; must not depend on jobs or HTTP.

use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::train::{RunEnd, RunRecord};

/// A finding about a run.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Diagnostic {
    /// `vanishing_gradient`, `exploding_gradient`, `saturation`, `dead_units`, `non_finite`,
    /// `update_ratio`, `long_range_vanishing` or `not_learning`.
    pub code: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Affected layers, by name.
    pub layers: Vec<String>,
    /// What was found, in words.
    pub message: String,
    /// The measured values the rule used, and its thresholds.
    pub evidence: Value,
    /// What to change (filled by the recommendation rules).
    pub recommendations: Vec<Value>,
}

/// One documented rule: code, what it measures, warning and critical thresholds.
pub struct Rule {
    /// Diagnostic code.
    pub code: &'static str,
    /// The measurement and the thresholds, in words.
    pub rule: &'static str,
}

/// The rules, in the order they are evaluated.
pub const RULES: &[Rule] = &[
    Rule {
        code: "non_finite",
        rule: "NaN or Inf in the loss, an activation or a gradient: critical, with the step and the first layer",
    },
    Rule {
        code: "vanishing_gradient",
        rule: "ratio of the first to the last hidden weight layer's grad_norm (or, when the weight gradients are \
               uniform, of delta_norm) at step 0 and at the last probe: < 1e-2 warning, < 1e-4 critical",
    },
    Rule {
        code: "exploding_gradient",
        rule: "the same ratio > 1e2 warning, > 1e4 critical; or the global grad norm grows > 1e3x from step 0 \
               (critical); or clipping changed the gradient on > 50% of steps (warning)",
    },
    Rule {
        code: "saturation",
        rule: "sigmoid/tanh layer with saturation (units whose derivative is < 1% of its maximum) > 0.5 warning, \
               > 0.9 critical, at any probe",
    },
    Rule {
        code: "dead_units",
        rule: "ReLU layer whose dead_fraction at the last probe is > 0.25 warning, > 0.5 critical",
    },
    Rule {
        code: "update_ratio",
        rule: "median update_ratio (||dW||/||W|| per step) of a weight layer < 1e-5 or > 1e-1 (warning); \
               ~1e-3 is the usual healthy range",
    },
    Rule {
        code: "long_range_vanishing",
        rule: "recurrent networks: memory horizon (largest lag with ||dL/dh_t|| > 1e-3 of its max) < T/4 warning, \
               < T/10 critical",
    },
    Rule {
        code: "not_learning",
        rule: "after at least 50 steps, final training loss > 0.9x the loss at step 0 (warning), or > 0.9x the loss \
               of the best constant prediction (target variance for mse, class entropy for cross-entropy) or \
               accuracy within 0.05 of chance (critical)",
    },
];

fn severity(critical: bool) -> &'static str {
    if critical {
        "critical"
    } else {
        "warning"
    }
}

fn diag(code: &str, critical: bool, layers: Vec<String>, message: String, evidence: Value) -> Diagnostic {
    Diagnostic {
        code: code.into(),
        severity: severity(critical).into(),
        layers,
        message,
        evidence,
        recommendations: Vec::new(),
    }
}

/// Hidden weight layers: dense (and recurrent) layers except the output layer.
fn hidden_weight_layers(record: &RunRecord) -> Vec<usize> {
    let w: Vec<usize> =
        record.layers.iter().filter(|l| l.kind == "dense" || l.kind == "rnn").map(|l| l.index).collect();
    match w.split_last() {
        Some((_, hidden)) => hidden.to_vec(),
        None => Vec::new(),
    }
}

fn at(v: &[Option<f64>], i: usize) -> Option<f64> {
    v.get(i).copied().flatten().filter(|x| x.is_finite())
}

/// Evaluates every rule on `record`; `classes` is the number of classes (for chance accuracy).
pub fn diagnose(record: &RunRecord, classes: Option<usize>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let RunEnd::NonFinite { step, layer, location } = &record.end {
        out.push(diag(
            "non_finite",
            true,
            vec![layer.clone()],
            format!("NaN or Inf appeared at step {step} in the {location} of {layer}; the run was stopped there"),
            json!({"step": step, "layer": layer, "location": location}),
        ));
    }
    let n = record.steps.len();
    let hidden = hidden_weight_layers(record);
    if hidden.len() >= 2 && n > 0 {
        let (first, last) = (hidden[0], hidden[hidden.len() - 1]);
        let name = |i: usize| record.layers[i].name.clone();
        for (probe, when) in [(0, "at initialisation"), (n - 1, "at the end of training")] {
            let g = |i: usize| at(&record.layer_stats[i].grad_norm, probe);
            let d = |i: usize| record.layer_stats[i].delta_norm.get(probe).copied().filter(|x| x.is_finite());
            let Some(ratio) = g(first).zip(g(last)).map(|(a, b)| a / b) else { continue };
            let delta_ratio = d(first).zip(d(last)).map(|(a, b)| a / b.max(f64::MIN_POSITIVE));
            let span = (hidden.len() - 1) as f64;
            // Weight gradients of a ReLU stack stay uniform even when the signal shrinks both
            // ways; delta_norm (the gradient reaching the layer's output) shows it.
            let worst_small = ratio.min(delta_ratio.unwrap_or(ratio));
            let evidence = json!({
                "probe_step": record.steps[probe],
                "grad_ratio_first_last": ratio,
                "delta_ratio_first_last": delta_ratio,
                "per_layer_factor": worst_small.powf(1.0 / span),
                "layers_between": span,
                "thresholds": {"warning": 1e-2, "critical": 1e-4},
            });
            if worst_small < 1e-2 {
                out.push(diag(
                    "vanishing_gradient",
                    worst_small < 1e-4,
                    vec![name(first)],
                    format!(
                        "{when}, the gradient reaching {} is {:.1e} times that of {} (a factor {:.2} per layer)",
                        name(first),
                        worst_small,
                        name(last),
                        worst_small.powf(1.0 / span)
                    ),
                    evidence,
                ));
                break;
            } else if ratio > 1e2 {
                out.push(diag(
                    "exploding_gradient",
                    ratio > 1e4,
                    vec![name(first)],
                    format!("{when}, {}'s gradient is {ratio:.1e} times that of {}", name(first), name(last)),
                    evidence,
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
        let vanished = out.iter().any(|d| d.code == "vanishing_gradient");
        if gmax / g0 > 1e3 && !vanished && !out.iter().any(|d| d.code == "exploding_gradient") {
            out.push(diag(
                "exploding_gradient",
                true,
                Vec::new(),
                format!("the global gradient norm grew {:.1e}x during training", gmax / g0),
                json!({"grad_norm_global_step0": g0, "grad_norm_global_max": gmax, "threshold": 1e3}),
            ));
        }
    }
    if record.steps_run > 0 {
        let rate = record.clipped_steps as f64 / record.steps_run as f64;
        if rate > 0.5 {
            out.push(Diagnostic {
                severity: "warning".into(),
                ..diag(
                    "exploding_gradient",
                    false,
                    Vec::new(),
                    format!("clipping changed the gradient on {:.0}% of steps", rate * 100.0),
                    json!({"clip_rate": rate, "clipped_steps": record.clipped_steps, "steps": record.steps_run, "threshold": 0.5}),
                )
            });
        }
    }
    for (info, s) in record.layers.iter().zip(&record.layer_stats) {
        if let Some(max) = s.saturation.iter().copied().flatten().filter(|v| v.is_finite()).reduce(f64::max) {
            if max > 0.5 {
                out.push(diag(
                    "saturation",
                    max > 0.9,
                    vec![info.name.clone()],
                    format!(
                        "{:.0}% of {}'s units are saturated (derivative below 1% of its maximum)",
                        max * 100.0,
                        info.name
                    ),
                    json!({"saturation_max": max, "thresholds": {"warning": 0.5, "critical": 0.9}}),
                ));
            }
        }
        if let Some(dead) = s.dead_fraction.last().copied().flatten().filter(|v| v.is_finite()) {
            if dead > 0.25 {
                out.push(diag(
                    "dead_units",
                    dead > 0.5,
                    vec![info.name.clone()],
                    format!(
                        "{:.0}% of {}'s ReLU units output zero for every sample of the batch",
                        dead * 100.0,
                        info.name
                    ),
                    json!({"dead_fraction": dead, "thresholds": {"warning": 0.25, "critical": 0.5}}),
                ));
            }
        }
        if (info.kind == "dense" || info.kind == "rnn") && record.steps_run > 0 {
            let mut r: Vec<f64> = s.update_ratio.iter().copied().flatten().filter(|v| v.is_finite()).collect();
            if !r.is_empty() {
                r.sort_by(f64::total_cmp);
                let median = r[r.len() / 2];
                if !(1e-5..=1e-1).contains(&median) {
                    out.push(Diagnostic {
                        severity: "warning".into(),
                        ..diag(
                            "update_ratio",
                            false,
                            vec![info.name.clone()],
                            format!(
                                "{}'s weights change by {median:.1e} of their norm per step (healthy is around 1e-3)",
                                info.name
                            ),
                            json!({"median_update_ratio": median, "range": [1e-5, 1e-1]}),
                        )
                    });
                }
            }
        }
    }
    if let Some(i) = record.layers.iter().position(|l| l.kind == "rnn") {
        if let Some(last) = record.layer_stats[i].recurrent.last() {
            let t = last.timestep_grad_norm.len();
            if let Some(h) = super::report::memory_horizon(&last.timestep_grad_norm) {
                if t >= 8 && (h as f64) < t as f64 / 4.0 {
                    out.push(diag(
                        "long_range_vanishing",
                        (h as f64) < t as f64 / 10.0,
                        vec![record.layers[i].name.clone()],
                        format!("the gradient reaches back only {h} of {t} time steps (above 1e-3 of its maximum)"),
                        json!({"memory_horizon": h, "sequence_length": t, "thresholds": {"warning": t as f64 / 4.0, "critical": t as f64 / 10.0}}),
                    ));
                }
            }
        }
    }
    if let (Some(&l0), Some(lf)) = (record.loss.first(), record.final_loss) {
        let chance = classes.map(|k| 1.0 / k.max(1) as f64);
        let near_chance = chance.zip(record.final_accuracy).is_some_and(|(c, a)| a < c + 0.05);
        let stuck = l0.is_finite() && lf.is_finite() && lf > 0.9 * l0;
        let no_better_than_constant = record.baseline_loss.is_some_and(|b| lf.is_finite() && lf > 0.9 * b);
        if record.steps_run >= 50 && (stuck || no_better_than_constant) {
            let mut message =
                format!("after {} steps the training loss is {lf:.4}, against {l0:.4} at step 0", record.steps_run);
            if let Some(b) = record.baseline_loss {
                message.push_str(&format!(" and {b:.4} for the best constant prediction"));
            }
            out.push(diag(
                "not_learning",
                near_chance || no_better_than_constant,
                Vec::new(),
                message,
                json!({"loss_step0": l0, "final_loss": lf, "baseline_loss": record.baseline_loss,
                       "final_accuracy": record.final_accuracy, "chance_accuracy": chance, "threshold": 0.9}),
            ));
        }
    }
    merge_per_layer(out)
}

/// Per-layer findings of one code become one diagnostic naming every affected layer, with each
/// layer's evidence and the worst severity.
fn merge_per_layer(found: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for d in found {
        let per_layer = matches!(d.code.as_str(), "saturation" | "dead_units" | "update_ratio");
        match out.iter_mut().find(|o| per_layer && o.code == d.code) {
            Some(o) => {
                if d.severity == "critical" {
                    o.severity = d.severity;
                }
                if let (Some(layer), Some(map)) = (d.layers.first(), o.evidence.get_mut("per_layer")) {
                    map[layer.as_str()] = d.evidence;
                }
                o.layers.extend(d.layers);
                o.message = format!(
                    "{} layers affected; the first: {}",
                    o.layers.len(),
                    o.message.split("; the first: ").last().unwrap_or_default()
                );
            }
            None if per_layer => {
                let layer = d.layers.first().cloned().unwrap_or_default();
                out.push(Diagnostic { evidence: json!({"per_layer": {layer: d.evidence}}), ..d });
            }
            None => out.push(d),
        }
    }
    out
}

/// The verdict: the most serious finding (critical before warning), else `healthy`.
pub fn verdict(diagnostics: &[Diagnostic]) -> &'static str {
    // Critical findings first; within a severity, the order below (the cause before its effects).
    for severity in ["critical", "warning"] {
        let found = |code: &str| diagnostics.iter().any(|d| d.code == code && d.severity == severity);
        for (code, verdict) in [
            ("non_finite", "diverged"),
            ("exploding_gradient", "exploding"),
            ("vanishing_gradient", "vanishing"),
            ("long_range_vanishing", "vanishing"),
            ("saturation", "saturated"),
            ("dead_units", "dead_units"),
            ("not_learning", "not_learning"),
        ] {
            if found(code) {
                return verdict;
            }
        }
    }
    "healthy"
}
