//! Every job preset teaches its lesson: its expected outcome (written in its title) holds on
//! three or more seeds, the preset's own seed first.
//!
//! | preset | expected outcome | seeds |
//! |---|---|---|
//! | `deep-sigmoid-vanishing` | verdict `vanishing`, critical `vanishing_gradient` and `not_learning` (loss ~ln 2, accuracy 50%) | 7, 1, 2 |
//! | `relu-xavier-30` | verdict `vanishing`: critical `vanishing_gradient`, `dead_units` and `not_learning` (accuracy < 40% on 4 classes) | 1, 2, 3 |
//! | `relu-he-30` | verdict `healthy`, no warning, accuracy > 90% | 1, 2, 3 |
//! | `small-init` | verdict `vanishing`, critical `vanishing_gradient` (cause `init_scale`) and `not_learning` | 2, 1, 3 |
//! | `batchnorm-rescue` | verdict `healthy`, accuracy > 90% on spirals | 7, 1, 2 |
//! | `residual-rescue` | verdict `healthy`, loss < 0.4 (ln 2 = 0.69), accuracy > 80% on moons | 7, 1, 2 |
//! | `rnn-adding-vanishing` | `long_range_vanishing` (memory horizon < T/4 of T = 100), critical `not_learning` | 11, 1, 2 |
//! | `lstm-adding` | verdict `healthy`, training and validation MSE < 0.01 (baseline 1/6) | 11, 1, 2 |
//! | `rnn-exploding-clipping` | `exploding_gradient` flagged, finite, MSE < 0.11 (baseline 1/6); without `/training/clip`: `diverged` | 13, 1, 2 |
//! | `dead-relu-high-lr` | `dead_units` flagged (cause `learning_rate`); the same net at lr 0.01: no `dead_units` | 4, 1, 2, 3 |
//! | `attention-no-skip` | `rank_collapse` warning: attention layers 2-4 stay collapsed (the first only at step 0), verdict `healthy`; the recommended residual blocks: no `rank_collapse` | 1, 2, 3 |
//! | `post-ln-deep` | stuck at chance (ln 16), critical `not_learning`; warm-up and pre-LN recommended, the top verified recommendation one of them (seed 5); with 10% warm-up the same seeds learn (< 0.05) — in `tests/transformer_training.rs` | 5, 6, 7 |
//! | `pre-ln-deep` | final loss < 0.05, accuracy > 99%, no `not_learning` — in `tests/transformer_training.rs` | 5, 6, 7 |

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use gradscope::analysis::pipeline::{parse_body, run as run_spec, RunOptions};
use gradscope::engine::train::CancelFlag;
use gradscope::spec::presets::find;
use gradscope::spec::Limits;
use serde_json::Value;

/// The adding problem's baseline MSE (predicting the mean sum 1).
const ADDING_BASELINE: f64 = 1.0 / 6.0;

/// The preset's spec as written.
fn preset(name: &str) -> Value {
    find(name).unwrap_or_else(|| panic!("no preset {name}")).json.clone()
}

/// The report (as JSON) of `spec` with its seed replaced.
fn run(spec: &Value, seed: u64) -> Value {
    let mut spec = spec.clone();
    spec["seed"] = seed.into();
    let body = serde_json::to_vec(&spec).unwrap();
    let options = RunOptions { limits: &Limits::default(), params_out: false, verify_share: 0.0 };
    let parsed = parse_body(&body).expect("spec parses");
    let report = run_spec(&parsed, &options, &CancelFlag::new(), &mut |_| {}).expect("spec runs").report;
    serde_json::to_value(&report).unwrap()
}

/// The report of preset `name` on each of `seeds`, with a label for messages.
fn runs(name: &str, seeds: &[u64]) -> Vec<(String, Value)> {
    let spec = preset(name);
    seeds.iter().map(|&s| (format!("{name} seed {s}"), run(&spec, s))).collect()
}

fn verdict(r: &Value) -> &str {
    r["summary"]["verdict"].as_str().unwrap()
}

fn num(r: &Value, key: &str) -> f64 {
    r["summary"][key].as_f64().unwrap_or_else(|| panic!("summary.{key} missing: {}", r["summary"]))
}

/// (code, severity) of every finding.
fn codes(r: &Value) -> Vec<(String, String)> {
    r["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_owned(), d["severity"].as_str().unwrap().to_owned()))
        .collect()
}

fn has(r: &Value, code: &str, severities: &[&str]) -> bool {
    codes(r).iter().any(|(c, s)| c == code && severities.contains(&s.as_str()))
}

/// The `cause.kind` of the first diagnostic with `code` (see `analysis::causes`).
fn cause<'a>(r: &'a Value, code: &str) -> Option<&'a str> {
    r["diagnostics"].as_array()?.iter().find(|d| d["code"] == code)?["cause"]["kind"].as_str()
}

/// The `consequence_of` of the first diagnostic with `code`.
fn consequence_of<'a>(r: &'a Value, code: &str) -> Option<&'a str> {
    r["diagnostics"].as_array()?.iter().find(|d| d["code"] == code)?["consequence_of"].as_str()
}

fn serious(r: &Value) -> Vec<(String, String)> {
    codes(r).into_iter().filter(|(_, s)| s != "info").collect()
}

#[test]
fn deep_sigmoid_vanishing_vanishes_and_does_not_learn() {
    for (label, r) in runs("deep-sigmoid-vanishing", &[7, 1, 2]) {
        assert_eq!(verdict(&r), "vanishing", "{label}: {:?}", codes(&r));
        assert!(has(&r, "vanishing_gradient", &["critical"]), "{label}: {:?}", codes(&r));
        assert!(has(&r, "not_learning", &["critical"]), "{label}: {:?}", codes(&r));
        assert!(num(&r, "final_accuracy") < 0.6, "{label}: {}", r["summary"]);
        // The sigmoid's derivative (<= 1/4) is to blame, and not learning is its consequence.
        assert_eq!(cause(&r, "vanishing_gradient"), Some("activation"), "{label}");
        assert_eq!(consequence_of(&r, "not_learning"), Some("vanishing_gradient"), "{label}");
    }
}

#[test]
fn relu_xavier_30_vanishes_where_relu_he_30_learns() {
    for (label, r) in runs("relu-xavier-30", &[1, 2, 3]) {
        assert_eq!(verdict(&r), "vanishing", "{label}: {:?}", codes(&r));
        for code in ["vanishing_gradient", "dead_units", "not_learning"] {
            assert!(has(&r, code, &["critical"]), "{label}: no critical {code}: {:?}", codes(&r));
        }
        assert!(num(&r, "final_accuracy") < 0.4, "{label}: {}", r["summary"]);
        // sigma_w^2 = 1 for ReLU: each layer halves the signal's variance (He init gives 2).
        assert_eq!(cause(&r, "vanishing_gradient"), Some("init_scale"), "{label}");
    }
}

#[test]
fn relu_he_30_is_healthy_and_learns() {
    for (label, r) in runs("relu-he-30", &[1, 2, 3]) {
        assert_eq!(verdict(&r), "healthy", "{label}: {:?}", codes(&r));
        assert!(serious(&r).is_empty(), "{label}: {:?}", serious(&r));
        assert!(num(&r, "final_accuracy") > 0.9, "{label}: {}", r["summary"]);
    }
}

#[test]
fn small_init_vanishes_and_does_not_learn() {
    for (label, r) in runs("small-init", &[2, 1, 3]) {
        assert_eq!(verdict(&r), "vanishing", "{label}: {:?}", codes(&r));
        assert!(has(&r, "vanishing_gradient", &["critical"]), "{label}: {:?}", codes(&r));
        assert!(has(&r, "not_learning", &["critical"]), "{label}: {:?}", codes(&r));
        assert!(num(&r, "final_accuracy") < 0.6, "{label}: {}", r["summary"]);
        // The cause is the small initialisation (sigma_w^2 = 64 x 1e-4).
        assert_eq!(cause(&r, "vanishing_gradient"), Some("init_scale"), "{label}");
    }
}

#[test]
fn batchnorm_rescue_is_healthy_and_learns_spirals() {
    for (label, r) in runs("batchnorm-rescue", &[7, 1, 2]) {
        assert_eq!(verdict(&r), "healthy", "{label}: {:?}", codes(&r));
        assert!(serious(&r).is_empty(), "{label}: {:?}", serious(&r));
        assert!(num(&r, "final_accuracy") > 0.9, "{label}: {}", r["summary"]);
    }
}

#[test]
fn residual_rescue_is_healthy_and_learns() {
    for (label, r) in runs("residual-rescue", &[7, 1, 2]) {
        assert_eq!(verdict(&r), "healthy", "{label}: {:?}", codes(&r));
        assert!(serious(&r).is_empty(), "{label}: {:?}", serious(&r));
        assert!(num(&r, "final_loss") < 0.4, "{label}: {}", r["summary"]);
        assert!(num(&r, "final_accuracy") > 0.8, "{label}: {}", r["summary"]);
    }
}

#[test]
fn rnn_adding_vanishing_has_a_short_memory_and_stays_at_the_baseline() {
    for (label, r) in runs("rnn-adding-vanishing", &[11, 1, 2]) {
        assert!(has(&r, "long_range_vanishing", &["warning", "critical"]), "{label}: {:?}", codes(&r));
        assert!(has(&r, "not_learning", &["critical"]), "{label}: {:?}", codes(&r));
        let (h, t) = (num(&r, "memory_horizon"), num(&r, "sequence_length"));
        assert!(h < t / 4.0, "{label}: horizon {h} of {t}");
        assert!(num(&r, "final_loss") > 0.9 * ADDING_BASELINE, "{label}: {}", r["summary"]);
    }
}

#[test]
fn lstm_adding_learns_the_adding_problem() {
    for (label, r) in runs("lstm-adding", &[11, 1, 2]) {
        assert_eq!(verdict(&r), "healthy", "{label}: {:?}", codes(&r));
        assert!(num(&r, "final_loss") < 0.01, "{label}: {}", r["summary"]);
        assert!(num(&r, "final_val_loss") < 0.01, "{label}: {}", r["summary"]);
    }
}

#[test]
fn rnn_exploding_clipping_stays_finite_and_learns_and_diverges_without_clipping() {
    let spec = preset("rnn-exploding-clipping");
    let mut unclipped = spec.clone();
    unclipped["training"].as_object_mut().unwrap().remove("clip").expect("the preset clips");
    for seed in [13, 1, 2] {
        let r = run(&spec, seed);
        let label = format!("seed {seed}");
        assert!(has(&r, "exploding_gradient", &["warning", "critical"]), "{label}: {:?}", codes(&r));
        assert!(!has(&r, "non_finite", &["critical"]), "{label}: {:?}", codes(&r));
        assert!(!has(&r, "not_learning", &["warning", "critical"]), "{label}: {:?}", codes(&r));
        assert!(num(&r, "final_loss") < 0.11, "{label}: {} (baseline {ADDING_BASELINE})", r["summary"]);

        let r = run(&unclipped, seed);
        assert_eq!(verdict(&r), "diverged", "{label} without clipping: {:?}", codes(&r));
        assert!(has(&r, "non_finite", &["critical"]), "{label} without clipping: {:?}", codes(&r));
    }
}

#[test]
fn dead_relu_high_lr_kills_units_and_a_small_lr_does_not() {
    for (label, r) in runs("dead-relu-high-lr", &[4, 1, 2, 3]) {
        assert!(has(&r, "dead_units", &["warning", "critical"]), "{label}: {:?}", codes(&r));
        assert!(!has(&r, "non_finite", &["critical"]), "{label}: {:?}", codes(&r));
        // Alive at step 0, dead after the large updates: the learning rate.
        assert_eq!(cause(&r, "dead_units"), Some("learning_rate"), "{label}");
    }
    let mut gentle = preset("dead-relu-high-lr");
    gentle["training"]["optimizer"]["lr"] = 0.01.into();
    for seed in [4, 1] {
        let r = run(&gentle, seed);
        assert!(!has(&r, "dead_units", &["warning", "critical"]), "lr 0.01 seed {seed}: {:?}", codes(&r));
    }
}

#[test]
fn attention_no_skip_collapses_the_tokens_and_its_residual_blocks_do_not() {
    for (label, r) in runs("attention-no-skip", &[1, 2, 3]) {
        let d = r["diagnostics"].as_array().unwrap().iter().find(|d| d["code"] == "rank_collapse");
        let d = d.unwrap_or_else(|| panic!("{label}: no rank_collapse: {:?}", codes(&r)));
        assert_eq!(d["severity"], "warning", "{label}");
        let layers: Vec<&str> = d["layers"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(layers, ["attention_2", "attention_3", "attention_4", "attention_5"], "{label}");
        // The first layer's tokens start near their mean (one-hot tokens, small positions) and
        // training separates them; from the second layer on they stay collapsed.
        let evidence = &d["evidence"]["per_layer"];
        let last = |l: &str| evidence[l]["rank_collapse"].as_f64().unwrap();
        let first_step0 = evidence["attention_2"]["rank_collapse_step0"].as_f64().unwrap();
        assert!(last("attention_2") >= 0.1 && first_step0 < 0.1, "{label}: {evidence}");
        assert!(["attention_3", "attention_4", "attention_5"].iter().all(|l| last(l) < 0.1), "{label}: {evidence}");
        assert_eq!(verdict(&r), "healthy", "{label}: {:?}", codes(&r));
        // The recommendation: the attention layers wrapped in residual blocks.
        let patch = &d["recommendations"][0]["patch"];
        assert_eq!(patch.as_array().map(Vec::len), Some(4), "{label}: {patch}");
        let mut skips = preset("attention-no-skip");
        for i in 2..6 {
            let attention = skips["model"]["layers"][i].clone();
            skips["model"]["layers"][i] = serde_json::json!({"type": "residual", "layers": [attention]});
        }
        let seed = r["engine"]["seed"].as_u64().unwrap();
        let with_skips = run(&skips, seed);
        assert!(
            !has(&with_skips, "rank_collapse", &["info", "warning", "critical"]),
            "{label} with skips: {:?}",
            codes(&with_skips)
        );
    }
}
