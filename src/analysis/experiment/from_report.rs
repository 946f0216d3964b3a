//! [`RunResult::from_report`]: what one finished run leaves for the comparison, read from its
//! report when it ends.

use super::input::RunResult;
use crate::analysis::measures::hidden_weight_layers;
use crate::analysis::report::{Outcome, Report};

impl RunResult {
    /// The comparison's figures of one run, from its report. `grad_ratio_end` is the summary's
    /// `grad_ratio_first_last` (`analysis/measures.rs`: the first over the last hidden weight
    /// layer's `grad_norm`) at the last probe instead of step 0.
    pub fn from_report(report: &Report) -> RunResult {
        let s = &report.summary;
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        let (layers, grad_norm_init) = report
            .layer_stats
            .iter()
            .filter_map(|l| l.grad_norm.as_ref().map(|g| (l.layer.clone(), finite(g.first().copied().flatten()))))
            .unzip();
        RunResult {
            final_loss: finite(s.final_loss),
            final_accuracy: finite(s.final_accuracy),
            non_finite: s.non_finite.is_some() || s.outcome == Outcome::NonFinite,
            grad_ratio_init: finite(s.grad_ratio_first_last),
            grad_ratio_end: report.steps.len().checked_sub(1).and_then(|last| grad_ratio_at(report, last)),
            verdict: s.verdict,
            codes: report.diagnostics.iter().map(|d| d.code).collect(),
            steps: report.steps.clone(),
            loss: report.loss.iter().map(|v| finite(*v)).collect(),
            layers,
            grad_norm_init,
            steps_done: s.steps,
            total_steps: s.total_steps,
            duration_ms: s.duration_ms,
        }
    }
}

/// First over last hidden weight layer's `grad_norm` at probe index `probe` of the report's
/// series (`layer_stats` is parallel to `layers`); `None` with fewer than two hidden weight
/// layers or when either norm or the ratio is not finite.
fn grad_ratio_at(report: &Report, probe: usize) -> Option<f64> {
    let hidden = hidden_weight_layers(report.layers.iter().map(|l| l.kind));
    if hidden.len() < 2 {
        return None;
    }
    let norm = |i: usize| -> Option<f64> {
        report.layer_stats.get(i)?.grad_norm.as_ref()?.get(probe).copied().flatten().filter(|x| x.is_finite())
    };
    let ratio = norm(*hidden.first()?)? / norm(*hidden.last()?)?;
    ratio.is_finite().then_some(ratio)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::analysis::pipeline::{parse_body, run, RunOptions};
    use crate::engine::train::CancelFlag;
    use serde_json::json;

    fn report(spec: serde_json::Value) -> Report {
        let spec = parse_body(spec.to_string().as_bytes()).unwrap();
        let limits = Default::default();
        let options = RunOptions::new(&limits);
        run(&spec, &options, &CancelFlag::default(), &mut |_| {}).unwrap().report
    }

    #[test]
    fn a_trained_mlp_leaves_its_summary_series_and_both_ratios() {
        let r = report(json!({
            "seed": 3,
            "model": {"input_dim": 2, "layers": [
                {"type": "mlp", "depth": 3, "width": 8, "activation": "tanh"},
                {"type": "dense", "units": 2}
            ]},
            "data": {"type": "xor", "samples": 64},
            "training": {"steps": 40, "batch_size": 16},
            "probes": {"every": 10}
        }));
        let out = RunResult::from_report(&r);
        assert_eq!(out.final_loss, r.summary.final_loss);
        assert!(out.final_accuracy.is_some(), "xor is a classification");
        assert!(!out.non_finite);
        assert_eq!(out.verdict, r.summary.verdict);
        assert_eq!(out.codes, r.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>());
        assert_eq!(out.steps, r.steps);
        assert_eq!(out.loss.len(), r.steps.len());
        assert_eq!((out.steps_done, out.total_steps), (40, 40));
        assert_eq!(out.grad_ratio_init, r.summary.grad_ratio_first_last);
        assert!(out.grad_ratio_init.is_some());
        // Four dense layers (three hidden, one output): all have a grad_norm.
        assert_eq!(out.layers.len(), 4, "{:?}", out.layers);
        assert_eq!(out.grad_norm_init.len(), 4);
        assert!(out.grad_norm_init.iter().all(|g| g.is_some_and(|g| g > 0.0)));
        // The end ratio is the same definition at the last probe: first / last hidden layer.
        let last = r.steps.len() - 1;
        let g = |i: usize| r.layer_stats[i].grad_norm.as_ref().unwrap()[last].unwrap();
        let hidden = hidden_weight_layers(r.layers.iter().map(|l| l.kind));
        let expect = g(hidden[0]) / g(*hidden.last().unwrap());
        assert_eq!(out.grad_ratio_end, Some(expect));
        // And at step 0 it reproduces the summary's ratio.
        assert_eq!(grad_ratio_at(&r, 0), r.summary.grad_ratio_first_last);
    }

    #[test]
    fn a_network_with_one_hidden_layer_has_no_ratio() {
        let r = report(json!({
            "seed": 1,
            "model": {"input_dim": 2, "layers": [
                {"type": "dense", "units": 4, "activation": "relu"},
                {"type": "dense", "units": 2}
            ]},
            "data": {"type": "xor", "samples": 32},
            "training": {"steps": 5, "batch_size": 16}
        }));
        let out = RunResult::from_report(&r);
        assert_eq!((out.grad_ratio_init, out.grad_ratio_end), (None, None));
        assert_eq!(out.layers.len(), 2);
    }
}
