//! Tests of the report plots: every plot is XML with its title and axis labels, nulls are
//! skipped, and degenerate reports (one probe, one layer, one time step) get sensible axes.

use super::*;
use serde_json::json;

/// Plot `name` of `report`, by name as a client asks for it.
fn draw(report: &Value, name: &str) -> Result<String, PlotError> {
    render_json(report, plot_named(name)?)
}

fn names(plots: Vec<PlotName>) -> Vec<&'static str> {
    plots.into_iter().map(PlotName::name).collect()
}

/// A report as JSON, with a few nulls, a validation split and a theory profile.
pub(crate) fn mlp_report() -> Value {
    json!({
        "report_version": 1,
        "summary": {"verdict": "vanishing", "final_loss": 0.5, "final_accuracy": 0.75, "steps": 30,
                    "total_steps": 30, "grad_ratio_first_last": 1e-5},
        "layers": [{"index": 0, "name": "dense_0", "type": "dense", "params": 24, "units": 8,
                    "activation": "sigmoid", "pointer": "/model/layers/0"}],
        "steps": [0, 10, 20, 29],
        "loss": [0.7, 0.6, null, 0.5],
        "accuracy": [0.5, 0.6, 0.7, 0.75],
        "val_loss": [0.72, 0.65, 0.6, 0.58],
        "val_accuracy": [0.5, 0.55, 0.6, 0.7],
        "layer_stats": [
            {"layer": "dense_0", "grad_norm": [1e-6, 2e-6, null, 0.0], "delta_norm": [1, 1, 1, 1]},
            {"layer": "dropout_1", "delta_norm": [1, 1, 1, 1]},
            {"layer": "dense_2", "grad_norm": [1e-2, 2e-2, 3e-2, 4e-2], "delta_norm": [1, 1, 1, 1]},
            {"layer": "dense_3", "grad_norm": [0.5, 0.4, 0.3, 0.2], "delta_norm": [1, 1, 1, 1]}
        ],
        "diagnostics": [],
        "theory": {"chi1": 0.5, "profile": {
            "layers": ["dense_0", "dense_1", "dense_2"],
            "predicted_log_delta_ratio": [-2.0, -1.0, 0.0],
            "measured_log_delta_ratio": [-2.1, null, 0.0]
        }}
    })
}

pub(crate) fn rnn_report() -> Value {
    json!({
        "steps": [0, 50, 100],
        "loss": [1.0, 0.5, 0.2],
        "layer_stats": [{"layer": "rnn_0", "grad_norm": [0.1, 0.2, 0.3], "delta_norm": [1, 1, 1]}],
        "timesteps": {"layer": "rnn_0", "steps": [0, 50, 100],
                      "grad_norm": [[1e-9, 1e-6, 1e-3, 1.0], [null, 1e-4, 1e-2, 1.0], [0.0, 0.1, 0.5, 1.0]]}
    })
}

/// Every `<text>` of an SVG (trimmed), after checking it parses as XML.
fn texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.descendants().filter(|t| t.is_text()).filter_map(|t| t.text()).collect::<String>().trim().to_owned())
        .collect()
}

fn check(svg: &str, labels: &[&str]) {
    let texts = texts(svg);
    for label in labels {
        assert!(texts.iter().any(|t| t.contains(label)), "no text `{label}` in {texts:?}");
    }
    // No coordinate or size is NaN or infinite.
    let doc = roxmltree::Document::parse(svg).unwrap();
    for node in doc.descendants() {
        for a in node.attributes() {
            let v = a.value().to_ascii_lowercase();
            assert!(
                !v.contains("nan") && !v.contains("inf"),
                "{}=\"{}\" in <{}>",
                a.name(),
                a.value(),
                node.tag_name().name()
            );
        }
    }
}

#[test]
fn every_plot_of_an_mlp_report_is_xml_with_a_title_and_axis_labels() {
    let r = mlp_report();
    assert_eq!(names(available_json(&r)), vec!["grad_flow", "grad_norms", "loss", "theory"]);
    let expect: [(&str, &[&str]); 4] = [
        ("grad_flow", &["training step", "layer (input side at the bottom)", "log10 grad_norm", "dense_2"]),
        ("grad_norms", &["layer", "grad_norm (log scale)", "step 0", "step 29"]),
        ("loss", &["training step", "loss", "accuracy", "validation loss"]),
        ("theory", &["hidden layer l", "ln(delta_norm_l / delta_norm_L)", "predicted at init", "measured at step 0"]),
    ];
    for (name, labels) in expect {
        let svg = draw(&r, name).unwrap();
        check(&svg, labels);
        check(&svg, &[title(plot_named(name).unwrap())]);
    }
}

#[test]
fn timesteps_are_drawn_for_recurrent_reports_only() {
    let svg = draw(&rnn_report(), "timesteps").unwrap();
    check(&svg, &[title(PlotName::Timesteps), "time step t", "||dL/dh_t|| (log scale)", "step 0", "step 100"]);
    let err = draw(&mlp_report(), "timesteps").unwrap_err();
    assert!(matches!(err, PlotError::NotApplicable { plot: PlotName::Timesteps, .. }), "{err:?}");
    assert!(!available_json(&mlp_report()).contains(&PlotName::Timesteps));
    assert!(available_json(&rnn_report()).contains(&PlotName::Timesteps));
}

#[test]
fn unknown_plots_and_missing_theory_are_errors() {
    assert_eq!(draw(&mlp_report(), "nope"), Err(PlotError::UnknownPlot("nope".into())));
    let mut r = mlp_report();
    r["theory"] = json!({"chi1": 0.5});
    assert!(matches!(draw(&r, "theory"), Err(PlotError::NotApplicable { plot: PlotName::Theory, .. })));
    r.as_object_mut().unwrap().remove("theory");
    assert!(matches!(draw(&r, "theory"), Err(PlotError::NotApplicable { plot: PlotName::Theory, .. })));
}

#[test]
fn all_null_series_say_so_instead_of_drawing_nan() {
    let mut r = mlp_report();
    for l in r["layer_stats"].as_array_mut().unwrap() {
        if l["grad_norm"].is_array() {
            l["grad_norm"] = json!([null, null, null, null]);
        }
    }
    r["loss"] = json!([null, null, null, null]);
    r["val_loss"] = json!([null, null, null, null]);
    r["theory"]["profile"]["measured_log_delta_ratio"] = json!([null, null, null]);
    check(&draw(&r, "grad_flow").unwrap(), &["no finite grad_norm values"]);
    check(&draw(&r, "grad_norms").unwrap(), &["no finite positive grad_norm"]);
    check(&draw(&r, "loss").unwrap(), &["no finite loss values"]);
    check(&draw(&r, "theory").unwrap(), &["measured at step 0 (no finite value)"]);
    let mut rnn = rnn_report();
    rnn["timesteps"]["grad_norm"] = json!([[null, 0.0], [null, null]]);
    check(&draw(&rnn, "timesteps").unwrap(), &["no finite positive ||dL/dh_t||"]);
}

#[test]
fn a_single_probe_report_from_the_pipeline_draws() {
    let spec = json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 3, "width": 8, "activation": "tanh"},
            {"type": "dense", "units": 2}
        ]},
        "data": {"type": "xor", "samples": 32}
    });
    let spec = crate::analysis::pipeline::parse_body(spec.to_string().as_bytes()).unwrap();
    let options = crate::analysis::pipeline::AnalyzeOptions { limits: &Default::default(), gradients: false };
    let report = crate::analysis::pipeline::analyze(&spec, &options).unwrap();
    let names = available(&report);
    assert!(names.contains(&PlotName::GradFlow) && names.contains(&PlotName::Loss), "{names:?}");
    for name in names {
        let svg = render(&report, name).unwrap();
        check(&svg, &[title(name)]);
        no_negative_zero(&svg);
    }
    // Its one probe is at step 0: the loss plot's step axis is labelled 0 and 1 only.
    let loss = render(&report, PlotName::Loss).unwrap();
    let steps: Vec<String> = texts(&loss).into_iter().filter(|t| t.parse::<i64>().is_ok()).collect();
    assert!(steps.contains(&"0".to_owned()), "{steps:?}");
    assert!(steps.iter().all(|t| t == "0" || t == "1"), "{steps:?}");
}

/// No text of `svg` is a number written with the sign of a zero (`-0`, `-0.0`, `-0.00`).
fn no_negative_zero(svg: &str) {
    for t in texts(svg) {
        let negative_zero =
            t.strip_prefix('-').is_some_and(|u| !u.is_empty() && u.chars().all(|c| c == '0' || c == '.'));
        assert!(!negative_zero, "tick label `{t}` in {:?}", texts(svg));
    }
}

/// The numeric texts of `svg` (tick labels), each once: an axis cut finer than its labels' precision
/// repeats them (`0 0 0 1 1`).
fn ticks_once(svg: &str) {
    let numbers: Vec<String> = texts(svg)
        .into_iter()
        .filter(|t| t.parse::<f64>().is_ok() || t.starts_with("1e") || t.contains("e-"))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for n in &numbers {
        assert!(seen.insert(n), "tick label `{n}` twice: {numbers:?}");
    }
}

/// One probe step, one weight layer, one hidden layer in the theory, one time step: every plot
/// that applies is drawn with whole-step axes, no `-0` and no NaN anywhere.
fn degenerate_reports() -> Vec<(&'static str, Value)> {
    let one_probe = json!({
        "summary": {"baseline_loss": std::f64::consts::LN_2},
        "spec": {"training": {"loss": "cross_entropy"}},
        "steps": [0],
        "loss": [0.6932],
        "layer_stats": [{"layer": "dense_0", "grad_norm": [1.0], "delta_norm": [1.0]}],
        "theory": {"profile": {"layers": ["dense_0"], "predicted_log_delta_ratio": [0.0],
                               "measured_log_delta_ratio": [0.0]}}
    });
    let later_probe = json!({
        "steps": [7],
        "loss": [0.25],
        "layer_stats": [{"layer": "dense_0", "grad_norm": [0.001], "delta_norm": [1.0]}]
    });
    let one_time_step = json!({
        "steps": [0],
        "loss": [1.0],
        "layer_stats": [{"layer": "rnn_0", "grad_norm": [0.1], "delta_norm": [1.0]}],
        "timesteps": {"layer": "rnn_0", "steps": [0], "grad_norm": [[0.5]]}
    });
    vec![("one probe at step 0", one_probe), ("one probe at step 7", later_probe), ("one time step", one_time_step)]
}

#[test]
fn a_single_probe_report_gets_whole_step_axes_without_minus_zero_or_nan() {
    for (what, report) in degenerate_reports() {
        let names = available_json(&report);
        assert!(names.contains(&PlotName::Loss) && names.contains(&PlotName::GradFlow), "{what}: {names:?}");
        for name in names {
            let svg = render_json(&report, name).unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
            check(&svg, &[title(name)]);
            no_negative_zero(&svg);
            ticks_once(&svg);
        }
    }
    // The lone step is labelled, with whole steps around it and nothing in between.
    let (_, later) = &degenerate_reports()[1];
    let loss = texts(&render_json(later, PlotName::Loss).unwrap());
    for step in ["6", "7", "8"] {
        assert!(loss.contains(&step.to_owned()), "step {step} in {loss:?}");
    }
    assert!(!loss.iter().any(|t| t.starts_with("6.") || t.starts_with("7.")), "{loss:?}");
    // One time step: t = 1 is the one label of the time axis.
    let (_, rnn) = &degenerate_reports()[2];
    let time = texts(&render_json(rnn, PlotName::Timesteps).unwrap());
    assert!(
        time.contains(&"1".to_owned()) && !time.contains(&"0".to_owned()) && !time.contains(&"2".to_owned()),
        "{time:?}"
    );
}

#[test]
fn short_runs_label_each_whole_step_once() {
    // Steps 0..3: a range plotters cuts into halves; only whole steps get a label.
    let mut r = mlp_report();
    r["steps"] = json!([0, 1, 2, 3]);
    r.as_object_mut().unwrap().remove("accuracy");
    r.as_object_mut().unwrap().remove("val_accuracy");
    let svg = draw(&r, "loss").unwrap();
    ticks_once(&svg);
    let texts = texts(&svg);
    for step in ["0", "1", "2", "3"] {
        assert!(texts.contains(&step.to_owned()), "{step} in {texts:?}");
    }
}

#[test]
fn tiny_and_nearly_constant_losses_get_distinct_tick_labels() {
    for loss in
        [json!([1.0e-6, 1.2e-6, null, 1.1e-6]), json!([2.5, 2.50001, 2.5, 2.50002]), json!([0.0, -0.0, 0.0, 0.0])]
    {
        let mut r = mlp_report();
        r["loss"] = loss.clone();
        for key in ["val_loss", "accuracy", "val_accuracy"] {
            r.as_object_mut().unwrap().remove(key);
        }
        let svg = draw(&r, "loss").unwrap();
        check(&svg, &["training loss (batch)"]);
        no_negative_zero(&svg);
        ticks_once(&svg);
        let labels: Vec<String> = texts(&svg).into_iter().filter(|t| t.parse::<f64>().is_ok()).collect();
        assert!(labels.len() >= 6, "{loss}: {labels:?}");
    }
}

/// The loss plot of `report` with `baseline_loss` in its summary and `loss` as the spec's loss.
fn with_baseline(baseline: f64, loss: &str) -> Value {
    let mut r = mlp_report();
    r["summary"]["baseline_loss"] = json!(baseline);
    r["spec"] = json!({"training": {"loss": loss}});
    r
}

/// The y coordinates (pixels) of the dashes of the baseline: the short segments drawn in its
/// grey (the legend's sample is a longer one).
fn grey_segments(svg: &str) -> Vec<f64> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    let mut ys = Vec::new();
    for n in doc.descendants().filter(|n| n.attribute("stroke") == Some("#787878")) {
        let Some(points) = n.attribute("points") else { continue };
        let xy: Vec<(f64, f64)> = points
            .split_whitespace()
            .filter_map(|p| {
                let (x, y) = p.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect();
        if let [(x0, y0), (x1, _)] = xy[..] {
            if (x1 - x0).abs() < 10.0 {
                ys.push(y0);
            }
        }
    }
    ys
}

#[test]
fn the_loss_plot_draws_the_chance_level_of_the_task_with_its_legend() {
    // Cross-entropy on 3 balanced classes: ln 3.
    let svg = draw(&with_baseline(3f64.ln(), "cross_entropy"), "loss").unwrap();
    check(&svg, &["chance level 1.099: predict the class frequencies", "training loss (batch)"]);
    let ys = grey_segments(&svg);
    assert!(ys.len() >= 4, "a dashed line of several segments: {ys:?}");
    assert!(ys.iter().all(|y| (y - ys[0]).abs() < 1e-9), "horizontal: {ys:?}");
    // The axis reaches up to it though every loss of the run is lower (at most 0.72).
    let ticks: Vec<f64> = texts(&svg).iter().filter_map(|t| t.parse::<f64>().ok()).collect();
    assert!(ticks.iter().any(|t| *t >= 1.0 && *t <= 1.2), "{ticks:?}");

    // MSE: the targets' variance, predicting their mean.
    let svg = draw(&with_baseline(0.02513, "mse"), "loss").unwrap();
    check(&svg, &["chance level 0.02513: predict the target mean"]);
    // No baseline (bce): no line, no legend entry.
    let mut r = mlp_report();
    r["spec"] = json!({"training": {"loss": "bce"}});
    let svg = draw(&r, "loss").unwrap();
    assert!(!texts(&svg).iter().any(|t| t.contains("chance level")));
    assert!(grey_segments(&svg).is_empty());
}

#[test]
fn reports_carry_the_chance_level_of_their_task() {
    use crate::analysis::pipeline::{analyze, parse_body, AnalyzeOptions};
    let options = AnalyzeOptions { limits: &Default::default(), gradients: false };
    let report = |spec: Value| analyze(&parse_body(spec.to_string().as_bytes()).unwrap(), &options).unwrap();
    // Three balanced blobs: the class entropy is ln 3.
    let blobs = report(json!({
        "seed": 3,
        "model": {"input_dim": 4, "layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 3}]},
        "data": {"type": "blobs", "samples": 96, "classes": 3, "dims": 4}
    }));
    let b = blobs.summary.baseline_loss.expect("a classification baseline");
    assert!((b - 3f64.ln()).abs() < 1e-9, "{b}");
    check(&render(&blobs, PlotName::Loss).unwrap(), &["chance level 1.099: predict the class frequencies"]);
    // Regression (mse): the targets' variance, positive.
    let sine = report(json!({
        "seed": 3,
        "model": {"input_dim": 1, "layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 1}]},
        "data": {"type": "sine", "samples": 64},
        "training": {"loss": "mse"}
    }));
    let b = sine.summary.baseline_loss.expect("a regression baseline");
    assert!(b > 0.0 && b.is_finite(), "{b}");
    check(&render(&sine, PlotName::Loss).unwrap(), &["predict the target mean"]);
}

#[test]
fn axis_labels_have_the_decimals_their_spacing_needs_and_never_a_negative_zero() {
    // Whole-number axes: whole ticks only, from the minimum on, `-0` as `0`.
    assert_eq!(whole_label(-0.4, 0.0), "");
    assert_eq!(whole_label(0.5, 0.0), "");
    assert_eq!(whole_label(-1e-17, 0.0), "0");
    assert_eq!(whole_label(7.0, 0.0), "7");
    assert_eq!(whole_label(0.0, 1.0), "", "time steps start at 1");
    // A lone step (or none) gets one step either side; two or more their span.
    assert_eq!(step_range([0.0]), (-1.0, 1.0));
    assert_eq!(step_range([7.0, 7.0]), (6.0, 8.0));
    assert_eq!(step_range([]), (-1.0, 1.0));
    assert_eq!(step_range([0.0, 29.0]), (0.0, 29.0));
    // Linear axes: the decimals of the tick spacing plotters picks; tiny magnitudes in
    // scientific notation.
    assert_eq!(linear_label(-1e-17, &(-0.5..0.5), 10), "0.0");
    assert_eq!(linear_label(0.65, &(0.6..0.7), 10), "0.65");
    assert_eq!(linear_label(0.64, &(0.636..0.672), 6), "0.64");
    assert_eq!(linear_label(0.635, &(0.636..0.672), 10), "0.635");
    assert_eq!(linear_label(2e-6, &(0.0..5e-6), 10), "2.0e-6");
    assert_eq!(linear_label(-1e-22, &(0.0..5e-6), 10), "0");
    assert_eq!(fixed(-0.0001, 2), "0.00");
    assert_eq!(sig4(3f64.ln()), "1.099");
    assert_eq!(sig4(0.02513), "0.02513");
}
