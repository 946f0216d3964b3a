//! The human summary a terminal gets instead of the JSON: the verdict and the headline figures,
//! one line per diagnostic (severity, code, where, the measured value against the rule's
//! thresholds as the evidence has them), the top verified recommendation with what it did, and
//! the files written. For an experiment: one line per variant, best first.
//!
//! Everything is read from the typed report (`analysis::report::Report`) and experiment, so the
//! figures are the JSON's.

use std::fmt::Write;

use serde_json::Value;

use super::files::Written;
use super::format::{count, num, opt, percent};
use crate::analysis::experiment::{ExperimentResult, VariantRow};
use crate::analysis::findings::{Diagnostic, Evidence, LayerEvidence, Severity, Thresholds, Verification};
use crate::analysis::report::{Outcome, Report};
use crate::jobs::experiments::model::Experiment;

/// Which command made the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// `gradscope run` (training, recommendations verified).
    Run,
    /// `gradscope analyze` (one forward/backward).
    Analyze,
}

/// Patch operations shown per recommendation; the rest are counted.
const PATCH_OPS_SHOWN: usize = 2;
/// Layers named per diagnostic; the rest are counted.
const LAYERS_SHOWN: usize = 3;

/// The worst severity of `report`: its worst diagnostic's, and critical for a run that stopped
/// on NaN/Inf whatever its diagnostics say.
pub fn worst(report: &Report) -> Option<Severity> {
    let diverged = (report.summary.outcome == Outcome::NonFinite).then_some(Severity::Critical);
    report.diagnostics.iter().map(|d| d.severity).chain(diverged).max()
}

/// The summary of a report.
pub fn report(report: &Report, made: Made, files: &[Written]) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let _ = writeln!(out, "verdict: {} — {}", s.verdict.name(), s.verdict.meaning());
    let mut figures = Vec::new();
    if let Some(a) = s.final_accuracy {
        figures.push(format!("accuracy {}", percent(a)));
    }
    if let Some(v) = s.final_val_loss {
        figures.push(format!("validation loss {}", num(v)));
    }
    if let Some(a) = s.final_val_accuracy {
        figures.push(format!("validation accuracy {}", percent(a)));
    }
    figures.push(format!("{} parameters", count(s.params as u64)));
    figures.push(format!("seed {}", report.engine.seed));
    let head = match made {
        Made::Analyze => format!("analysed one forward/backward at initialisation: loss {}", opt(s.final_loss)),
        Made::Run => {
            let ran = match (&s.outcome, &s.non_finite) {
                (Outcome::NonFinite, Some(at)) => format!(
                    "stopped at step {} of {}: NaN/Inf in the {} of {}",
                    at.step, s.total_steps, at.location, at.layer
                ),
                (outcome, _) => format!("trained {}/{} steps ({})", s.steps, s.total_steps, outcome.name()),
            };
            format!("{ran} in {}: final loss {}", super::format::duration_ms(s.duration_ms), opt(s.final_loss))
        }
    };
    let _ = writeln!(out, "{head}, {}", figures.join(", "));
    if let (Some(h), Some(t)) = (s.memory_horizon, s.sequence_length) {
        let init = s.memory_horizon_init.map(|h| format!(" ({h} at step 0)")).unwrap_or_default();
        let _ = writeln!(out, "memory horizon {h} of {t} time steps{init}");
    }
    diagnostics(&mut out, &report.diagnostics);
    recommendation(&mut out, report, made);
    files_section(&mut out, files);
    out
}

fn diagnostics(out: &mut String, diagnostics: &[Diagnostic]) {
    if diagnostics.is_empty() {
        out.push_str("\nno diagnostic\n");
        return;
    }
    let n = diagnostics.len();
    let _ = writeln!(out, "\n{n} diagnostic{}:", if n == 1 { "" } else { "s" });
    let rows: Vec<(&str, &str, String, String)> = diagnostics
        .iter()
        .map(|d| {
            let (place, measured) = evidence(d);
            let measured = match d.consequence_of {
                Some(cause) => format!("{measured}; a consequence of {}", cause.name()),
                None => measured,
            };
            (d.severity.name(), d.code.name(), place, measured)
        })
        .collect();
    let code_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let place_w = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0).min(40);
    for (severity, code, place, measured) in rows {
        let _ = writeln!(out, "  {severity:<8}  {code:<code_w$}  {place:<place_w$}  {measured}");
    }
}

/// `dense_0`, `dense_0, dense_1`, `dense_0, dense_1, dense_2 (+4 more)`; `network` for none.
fn layer_list(names: &[String]) -> String {
    match names.len() {
        0 => "network".to_owned(),
        n if n <= LAYERS_SHOWN => names.join(", "),
        n => format!("{} (+{} more)", names[..LAYERS_SHOWN].join(", "), n - LAYERS_SHOWN),
    }
}

/// `(warning < 0.01, critical < 1e-4)` for a rule that fires below, `>` for one above.
fn band(t: &Thresholds) -> String {
    let op = if t.critical < t.warning { "<" } else { ">" };
    format!("(warning {op} {}, critical {op} {})", num(t.warning), num(t.critical))
}

/// Where a diagnostic is (layers, step, time steps) and what was measured against which
/// thresholds.
fn evidence(d: &Diagnostic) -> (String, String) {
    let layers = layer_list(&d.layers);
    match &d.evidence {
        Evidence::NonFinite(e) => {
            (format!("{} at step {}", e.layer, e.step), format!("NaN/Inf in the {} (any is critical)", e.location))
        }
        Evidence::Depth(e) => {
            let value = match e.ratio {
                crate::analysis::findings::RatioKind::GradNorm => Some(e.grad_ratio_first_last),
                crate::analysis::findings::RatioKind::DeltaNorm => e.delta_ratio_first_last,
            };
            let ratio = serde_json::to_value(e.ratio).ok().and_then(|v| v.as_str().map(str::to_owned));
            (
                format!("{layers} at step {}", e.probe_step),
                format!(
                    "{} first/last {} {}, x{} per layer",
                    ratio.unwrap_or_default(),
                    opt(value),
                    band(&e.thresholds),
                    num(e.per_layer_factor)
                ),
            )
        }
        Evidence::Recovered(e) => (
            format!("{layers}, steps 0-{}", e.at_end.probe_step),
            format!(
                "grad_norm first/last {} at step 0, {} at step {} (warning < {})",
                num(e.at_init.grad_ratio_first_last),
                num(e.at_end.grad_ratio_first_last),
                e.at_end.probe_step,
                num(e.at_init.thresholds.warning)
            ),
        ),
        Evidence::Timesteps(e) => {
            let at = e.probe_step.map(|s| format!(" at step {s}")).unwrap_or_default();
            (
                format!("{layers}, time steps 1-{}{at}", e.sequence_length),
                format!(
                    "||dL/dh_1||/||dL/dh_T|| {} {}, x{} per time step",
                    num(e.timestep_ratio_first_last),
                    band(&e.thresholds),
                    num(e.per_step_factor)
                ),
            )
        }
        Evidence::Growth(e) => (
            format!("{layers}, during training"),
            format!(
                "global grad norm {} -> max {} (x{}; critical > x{})",
                num(e.grad_norm_global_step0),
                num(e.grad_norm_global_max),
                num(e.grad_norm_global_max / e.grad_norm_global_step0),
                num(e.threshold)
            ),
        ),
        Evidence::Clipping(e) => (
            format!("{layers}, {} steps", e.steps),
            format!(
                "clipping acted on {}/{} steps = {} (warning > {})",
                e.clipped_steps,
                e.steps,
                percent(e.clip_rate),
                percent(e.threshold)
            ),
        ),
        Evidence::PerLayer(e) => {
            // In the diagnostic's layer order (forward), not the map's (alphabetical).
            let entries: Vec<(&String, &LayerEvidence)> =
                d.layers.iter().filter_map(|n| e.per_layer.get(n).map(|v| (n, v))).collect();
            let quantity = match entries.first().map(|(_, v)| *v) {
                Some(LayerEvidence::Saturation { .. }) => "saturated",
                Some(LayerEvidence::Dead { .. }) => "dead",
                Some(LayerEvidence::RankCollapse { .. }) => "rank collapse",
                Some(LayerEvidence::AttentionEntropy { .. }) => "attention entropy (nats)",
                Some(LayerEvidence::UpdateRatio { .. }) | None => "median update ratio",
            };
            let mut values: Vec<String> = entries
                .iter()
                .take(LAYERS_SHOWN)
                .map(|(name, v)| match v {
                    LayerEvidence::Saturation { saturation_max, .. } => format!("{name} {}", percent(*saturation_max)),
                    LayerEvidence::Dead { dead_fraction, dead_fraction_step0, .. } => {
                        let init = dead_fraction_step0.map(|f| format!(" ({} at step 0)", percent(f)));
                        format!("{name} {}{}", percent(*dead_fraction), init.unwrap_or_default())
                    }
                    LayerEvidence::UpdateRatio { median_update_ratio, .. } => {
                        format!("{name} {}", num(*median_update_ratio))
                    }
                    LayerEvidence::RankCollapse { rank_collapse, .. } => {
                        format!("{name} {}", num(*rank_collapse))
                    }
                    LayerEvidence::AttentionEntropy { entropy, .. } => format!("{name} {}", num(*entropy)),
                })
                .collect();
            if entries.len() > LAYERS_SHOWN {
                values.push(format!("+{} more", entries.len() - LAYERS_SHOWN));
            }
            let limits = match entries.first().map(|(_, v)| *v) {
                Some(LayerEvidence::Saturation { thresholds, .. } | LayerEvidence::Dead { thresholds, .. }) => {
                    let op = if thresholds.critical < thresholds.warning { "<" } else { ">" };
                    format!(
                        " (warning {op} {}, critical {op} {})",
                        percent(thresholds.warning),
                        percent(thresholds.critical)
                    )
                }
                Some(LayerEvidence::UpdateRatio { range, .. }) => {
                    format!(" (healthy {} to {})", num(range[0]), num(range[1]))
                }
                Some(
                    LayerEvidence::RankCollapse { thresholds, .. } | LayerEvidence::AttentionEntropy { thresholds, .. },
                ) => {
                    format!(" (warning < {}, critical < {})", num(thresholds.warning), num(thresholds.critical))
                }
                None => String::new(),
            };
            (layers, format!("{quantity}: {}{limits}", values.join(", ")))
        }
        Evidence::Horizon(e) => {
            let t = e.sequence_length as f64;
            (
                format!("{layers}, {} time steps", e.sequence_length),
                format!(
                    "memory horizon {} (warning < T/{} = {}, critical < T/{} = {})",
                    e.memory_horizon,
                    num(e.thresholds.warning),
                    num(t / e.thresholds.warning),
                    num(e.thresholds.critical),
                    num(t / e.thresholds.critical)
                ),
            )
        }
        Evidence::NotLearning(e) => {
            let mut measured = format!(
                "final loss {}; {} at step 0, {} for the best constant (warning > {}x step 0, critical > {}x \
                 constant)",
                num(e.final_loss),
                num(e.loss_step0),
                opt(e.baseline_loss),
                num(e.threshold),
                num(e.threshold)
            );
            if let (Some(a), Some(c)) = (e.final_accuracy, e.chance_accuracy) {
                let _ = write!(measured, "; accuracy {} vs chance {}", percent(a), percent(c));
            }
            ("network, end of training".to_owned(), measured)
        }
        Evidence::InputScale(e) => (
            format!("inputs, feature {}", e.worst_feature),
            format!(
                "{} of {} features out of range, max |mean| {}, max std {} {}; input rms {} (warning < {})",
                e.features_out_of_range,
                e.features,
                num(e.max_abs_mean),
                num(e.max_std),
                band(&e.thresholds),
                num(e.input_rms),
                num(e.rms_warning)
            ),
        ),
    }
}

fn recommendation(out: &mut String, report: &Report, made: Made) {
    if let Some((d, r, v)) = report.top_verified() {
        let _ = writeln!(out, "\ntop verified recommendation (for {}): {}", d.code.name(), r.title);
        let _ = writeln!(out, "  it did:  {}", verification_words(v));
        let _ = writeln!(out, "  change:  {}", patch_words(&r.patch));
        return;
    }
    let Some((d, r)) = report.first_recommended() else {
        if report.diagnostics.iter().any(|d| !d.recommendations.is_empty()) {
            out.push_str("\nno recommendation beat the unchanged network when verified\n");
        }
        return;
    };
    let why = match (made, r.verification.as_ref().and_then(|v| v.reason)) {
        (Made::Analyze, _) => "not verified: `gradscope run` verifies by training".to_owned(),
        (Made::Run, Some(reason)) => format!("not verified: {}", reason.name()),
        (Made::Run, None) => "not verified (--verify-share 0)".to_owned(),
    };
    let _ = writeln!(out, "\ntop recommendation (for {}; {why}): {}", d.code.name(), r.title);
    let _ = writeln!(out, "  change:  {}", patch_words(&r.patch));
}

/// What a verified change did: `final loss 0.6931 -> 0.1203 in 100 steps (-0.5728), accuracy
/// 50.0% -> 95.3%, verdict vanishing -> healthy`.
fn verification_words(v: &Verification) -> String {
    let (Some(b), Some(p)) = (&v.baseline, &v.patched) else { return v.status.name().to_owned() };
    let steps = v.steps.map(|s| format!(" in {s} steps")).unwrap_or_default();
    let change = v.loss_change.map(|c| format!(" ({}{})", if c > 0.0 { "+" } else { "" }, num(c))).unwrap_or_default();
    let mut words = format!("final loss {} -> {}{steps}{change}", opt(b.final_loss), opt(p.final_loss));
    if let (Some(ba), Some(pa)) = (b.final_accuracy, p.final_accuracy) {
        let _ = write!(words, ", accuracy {} -> {}", percent(ba), percent(pa));
    }
    let _ = write!(words, ", verdict {} -> {} (same data and seed)", b.verdict.name(), p.verdict.name());
    words
}

/// A JSON Patch in words: `replace /model/layers/0/activation = "relu"; ...`.
fn patch_words(patch: &[Value]) -> String {
    let mut ops: Vec<String> = patch
        .iter()
        .take(PATCH_OPS_SHOWN)
        .map(|op| {
            let kind = op["op"].as_str().unwrap_or("?");
            let path = op["path"].as_str().unwrap_or("");
            match op.get("value") {
                Some(value) => {
                    let mut v = value.to_string();
                    if v.chars().count() > 60 {
                        v = v.chars().take(57).collect::<String>() + "...";
                    }
                    format!("{kind} {path} = {v}")
                }
                None => format!("{kind} {path}"),
            }
        })
        .collect();
    if patch.len() > PATCH_OPS_SHOWN {
        ops.push(format!("(+{} more operations; the JSON has the patch)", patch.len() - PATCH_OPS_SHOWN));
    }
    ops.join("; ")
}

fn files_section(out: &mut String, files: &[Written]) {
    if files.is_empty() {
        out.push_str("\nthe full report: --json prints it, -o FILE writes it, --html FILE draws it\n");
        return;
    }
    out.push_str("\nfiles:\n");
    let w = files.iter().map(|f| f.what.len()).max().unwrap_or(0);
    for f in files {
        let detail = f.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
        let _ = writeln!(out, "  {:<w$}  {}{detail}", f.what, f.path.display());
    }
}

/// The summary of an experiment: its status, a line per variant (best first), the files.
pub fn experiment(e: &Experiment, files: &[Written]) -> String {
    let mut out = String::new();
    let name = e.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    let _ =
        writeln!(out, "experiment{name}: {}, {} variants x {} seeds", e.status.name(), e.variants.len(), e.seeds.len());
    let Some(result) = &e.result else {
        out.push_str("no result: no run left a report\n");
        files_section(&mut out, files);
        return out;
    };
    variant_lines(&mut out, result);
    if let Some(best) = result.variants.iter().find(|v| v.best) {
        let others = result.variants.iter().filter(|v| !v.best).count();
        let apart = result.variants.iter().filter(|v| v.distinguishable_from_best).count();
        let apart = match (apart, others) {
            (_, 0) => String::new(),
            (0, _) => " (no other variant is distinguishable from it: their 95% intervals overlap)".to_owned(),
            (k, n) => format!(" ({k} of the {n} other variants distinguishable from it by 95% intervals)"),
        };
        let _ = writeln!(out, "best: {}{apart}", best.name);
    }
    files_section(&mut out, files);
    out
}

fn variant_lines(out: &mut String, result: &ExperimentResult) {
    let mut rows: Vec<&VariantRow> = result.variants.iter().collect();
    rows.sort_by_key(|v| v.rank);
    let label = |v: &VariantRow| format!("{}{}", v.name, if v.baseline { " (baseline)" } else { "" });
    let w = rows.iter().map(|v| label(v).chars().count()).max().unwrap_or(0);
    for v in rows {
        let _ = writeln!(out, "  #{:<2} {:<w$}  {}", v.rank, label(v), variant_outcome(v));
    }
}

/// One variant's outcome: mean final loss with its interval, accuracy, the paired difference
/// with the baseline, the verdicts and the runs that diverged or are missing.
fn variant_outcome(v: &VariantRow) -> String {
    let l = &v.final_loss;
    let interval = match (l.low, l.high) {
        (Some(lo), Some(hi)) => format!(" [{}, {}]", num(lo), num(hi)),
        _ => String::new(),
    };
    let mut parts = vec![format!("final loss {}{interval} (n={})", opt(l.mean), l.n)];
    if let Some(a) = v.final_accuracy.as_ref().and_then(|a| a.mean) {
        parts.push(format!("accuracy {}", percent(a)));
    }
    if let Some(d) = &v.vs_baseline {
        let d = &d.final_loss;
        let sign = |x: f64| format!("{}{}", if x > 0.0 { "+" } else { "" }, num(x));
        let ci = match (d.low, d.high) {
            (Some(lo), Some(hi)) => format!(" [{}, {}]", sign(lo), sign(hi)),
            _ => String::new(),
        };
        let verdict = if d.excludes_zero { "excludes 0" } else { "includes 0" };
        if let Some(m) = d.mean {
            parts.push(format!("vs baseline {}{ci} {verdict}", sign(m)));
        }
    }
    let verdicts: Vec<String> = v.verdicts.iter().map(|c| format!("{} x{}", c.verdict.name(), c.count)).collect();
    if !verdicts.is_empty() {
        parts.push(verdicts.join(", "));
    }
    if v.non_finite > 0 {
        parts.push(format!("{} of {} diverged", v.non_finite, v.n));
    }
    if v.missing > 0 {
        parts.push(format!("{} missing", v.missing));
    }
    if v.pending > 0 {
        parts.push(format!("{} pending", v.pending));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::analysis::findings::{RunOutcome, Verdict, VerifyStatus};
    use crate::analysis::pipeline::{analyze, parse_body, AnalyzeOptions};
    use crate::spec::Limits;

    /// The report of `gradscope analyze` on a 12-layer sigmoid MLP (a real one: the pipeline's).
    fn deep_sigmoid() -> Report {
        let spec = json!({
            "seed": 3,
            "model": {"input_dim": 2, "layers": [
                {"type": "mlp", "depth": 12, "width": 16, "activation": "sigmoid", "init": "xavier_uniform"},
                {"type": "dense", "units": 2, "activation": "linear"}
            ]},
            "data": {"type": "xor", "samples": 64},
            "training": {"steps": 10, "batch_size": 32}
        });
        let spec = parse_body(spec.to_string().as_bytes()).unwrap();
        analyze(&spec, &AnalyzeOptions { limits: &Limits::default(), gradients: false }).unwrap()
    }

    #[test]
    fn a_report_summary_has_the_verdict_a_line_per_diagnostic_with_its_thresholds_and_the_files() {
        let report = deep_sigmoid();
        assert_eq!(report.summary.verdict, Verdict::Vanishing);
        let files = [Written { what: "JSON report", path: "out/r.json".into(), detail: None }];
        let text = super::report(&report, Made::Analyze, &files);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("verdict: vanishing — "), "{text}");
        assert!(lines[1].starts_with("analysed one forward/backward at initialisation: loss "), "{text}");
        let n = report.diagnostics.len();
        let header = lines.iter().position(|l| l.ends_with("diagnostics:") || *l == "1 diagnostic:").expect(&text);
        assert_eq!(lines[header], if n == 1 { "1 diagnostic:".to_owned() } else { format!("{n} diagnostics:") });
        for (line, d) in lines[header + 1..header + 1 + n].iter().zip(&report.diagnostics) {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(&words[..2], [d.severity.name(), d.code.name()], "{line}");
        }
        let vanishing = lines.iter().find(|l| l.contains("vanishing_gradient")).expect(&text);
        assert!(
            vanishing.contains("at step 0") && vanishing.contains("(warning < 0.01, critical < 1e-4)"),
            "{vanishing}"
        );
        assert!(text.contains("top recommendation (for vanishing_gradient; not verified: `gradscope run`"), "{text}");
        assert!(text.ends_with("files:\n  JSON report  out/r.json\n"), "{text}");
        assert!(!text.contains('{') || text.contains("change:"), "no JSON besides the patch values: {text}");
    }

    #[test]
    fn a_verified_change_reads_as_before_and_after_with_the_patch_in_words() {
        let outcome = |loss, acc, verdict| RunOutcome {
            final_loss: Some(loss),
            final_accuracy: Some(acc),
            grad_ratio_first_last: None,
            grad_ratio_end: None,
            verdict,
        };
        let v = Verification {
            status: VerifyStatus::VerifiedBetter,
            reason: None,
            steps: Some(100),
            baseline: Some(outcome(0.7012, 0.5, Verdict::Vanishing)),
            patched: Some(outcome(0.1203, 0.953, Verdict::Healthy)),
            loss_change: Some(-0.5728),
        };
        assert_eq!(
            verification_words(&v),
            "final loss 0.7012 -> 0.1203 in 100 steps (-0.5728), accuracy 50.0% -> 95.3%, verdict vanishing -> \
             healthy (same data and seed)"
        );
        let patch = [
            json!({"op": "replace", "path": "/model/layers/0/activation", "value": "relu"}),
            json!({"op": "remove", "path": "/training/clip"}),
            json!({"op": "add", "path": "/model/layers/1/norm", "value": {"type": "batch"}}),
        ];
        assert_eq!(
            patch_words(&patch),
            "replace /model/layers/0/activation = \"relu\"; remove /training/clip; (+1 more operations; the JSON has \
             the patch)"
        );
    }

    #[test]
    fn layer_lists_name_three_and_count_the_rest() {
        let names: Vec<String> = (0..5).map(|i| format!("dense_{i}")).collect();
        assert_eq!(layer_list(&names[..0]), "network");
        assert_eq!(layer_list(&names[..2]), "dense_0, dense_1");
        assert_eq!(layer_list(&names), "dense_0, dense_1, dense_2 (+2 more)");
    }
}
