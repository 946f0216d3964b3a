//! Transformers in training (issue 16): twelve post-LN blocks need warm-up, pre-LN ones do not
//! (Xiong et al. 2020), and gradscope's report says so on a run that fails; attention whose
//! softmax saturates is `attention_entropy_collapse` (Zhai et al. 2023).
//!
//! The recall runs are the presets `post-ln-deep` and `pre-ln-deep`: marked-token recall (T 16,
//! vocabulary 16, one-hot tokens plus a marker channel; the last position predicts the marked
//! token), a dense input projection to d 64 with learned positions, twelve blocks (4 heads, FFN
//! 256, relu), last-token readout, Adam lr 1e-3, 600 fresh batches of 64 (38,400 samples, one
//! epoch), float32. PyTorch, the same setup: post-LN without warm-up stuck at chance (ln 16 =
//! 2.77) on 2 of 5 seeds; with 10% warm-up and pre-LN every seed below 0.01.
//!
//! Measured here, post-LN without warm-up on seeds 1-6: seed 5 stuck at chance (2.78), seed 3
//! part of the way down (2.42), the others learnt (0.001-0.003): 2 of 6 failed. Which seeds fail
//! is chaotic: a change of float rounding in the engine's softmax turned seed 6 from stuck into
//! learnt. The test counts the failures (at least one at chance, not all), checks the report of
//! each failing run (warm-up and pre-LN recommended, the top verified recommendation one of
//! them: on seed 5 pre-LN, 2.82 -> 0.03 in 85 steps; on seed 3 warm-up), then runs warm-up and
//! pre-LN on three seeds, the failing ones first. The preset's own seed (5) is pinned as its title
//! describes it (at chance, both cures verified better): a change of rounding that frees that
//! seed fails the test, and the preset then needs another seed that fails.

// A test may panic on a broken expectation: the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use gradscope::analysis::pipeline::{parse_body, run as run_spec, RunOptions};
use gradscope::analysis::report::Report;
use gradscope::engine::train::CancelFlag;
use gradscope::spec::presets::find;
use gradscope::spec::Limits;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Chance on the recall task: ln 16.
const CHANCE: f64 = 2.772_588_722;
/// What "learnt the task" means here (the bar).
const LEARNT: f64 = 0.05;
/// Verification budget of the post-LN runs: their compute again.
const VERIFY_SHARE: f64 = 1.0;
/// The seeds of post-LN without warm-up.
const SEEDS: [u64; 6] = [1, 2, 3, 4, 5, 6];

fn preset(name: &str) -> Value {
    find(name).unwrap_or_else(|| panic!("no preset {name}")).json.clone()
}

/// The report of `spec` on `seed`, its recommendations verified with `verify_share` of the
/// job's compute.
fn report(spec: &Value, seed: u64, verify_share: f64) -> Report {
    let mut spec = spec.clone();
    spec["seed"] = seed.into();
    let body = serde_json::to_vec(&spec).unwrap();
    let options = RunOptions { limits: &Limits::default(), params_out: false, verify_share };
    let parsed = parse_body(&body).expect("spec parses");
    run_spec(&parsed, &options, &CancelFlag::new(), &mut |_| {}).expect("spec runs").report
}

/// The runs, two at a time (the machine's cores), in order.
fn reports(runs: &[(&str, &Value, u64, f64)]) -> Vec<(String, Report)> {
    let mut out: Vec<Option<(String, Report)>> = (0..runs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        for (slots, chunk) in out.chunks_mut(runs.len().div_ceil(2)).zip(runs.chunks(runs.len().div_ceil(2))) {
            s.spawn(move || {
                for (slot, (label, spec, seed, share)) in slots.iter_mut().zip(chunk) {
                    *slot = Some((format!("{label} seed {seed}"), report(spec, *seed, *share)));
                }
            });
        }
    });
    out.into_iter().map(Option::unwrap).collect()
}

fn final_loss(r: &Report) -> f64 {
    r.summary.final_loss.unwrap()
}

fn codes(r: &Report) -> Vec<(&'static str, &'static str)> {
    r.diagnostics.iter().map(|d| (d.code.name(), d.severity.name())).collect()
}

fn has(r: &Report, code: &str, severity: &str) -> bool {
    codes(r).contains(&(code, severity))
}

#[test]
fn post_ln_needs_warm_up_where_pre_ln_does_not_and_the_report_says_so() {
    let post = preset("post-ln-deep");
    let pre = preset("pre-ln-deep");
    let mut warm = post.clone();
    warm["training"]["schedule"] = json!({"type": "warmup", "warmup_steps": 60});
    // Post-LN without warm-up, its recommendations verified within the job's compute again
    // (`--verify-share 1`: ~85 steps per patched run here; the default half leaves 20, too few
    // for either cure to show). A run either learns or stays at
    // chance (or, more rarely, part of the way down); which seeds fail is chaotic (float rounding
    // in the first steps decides it), so the test counts them.
    let runs: Vec<_> = SEEDS.iter().map(|&s| ("post-LN", &post, s, VERIFY_SHARE)).collect();
    let done = reports(&runs);
    let (mut stuck, mut at_chance) = (Vec::new(), 0);
    for (seed, (label, r)) in SEEDS.iter().zip(&done) {
        let loss = final_loss(r);
        eprintln!("{label}: final loss {loss:.4}, verdict {}, {:?}", r.summary.verdict.name(), codes(r));
        if loss < LEARNT {
            assert!(!codes(r).iter().any(|(c, _)| *c == "not_learning"), "{label}: {:?}", codes(r));
            continue;
        }
        stuck.push(*seed);
        if (loss - CHANCE).abs() < 0.05 {
            at_chance += 1;
            assert!(has(r, "not_learning", "critical"), "{label}: {:?}", codes(r));
        }
        // The report proposes warm-up and pre-LN, and its top recommendation, verified by
        // training, is one of them and leaves chance behind within the budget.
        let cures: Vec<&str> = r
            .diagnostics
            .iter()
            .filter(|d| d.severity.name() != "info")
            .flat_map(|d| d.recommendations.iter().map(|x| x.title.as_str()))
            .collect();
        assert!(cures.iter().any(|t| t.starts_with("Warm the learning rate up")), "{label}: {cures:?}");
        assert!(cures.iter().any(|t| t.starts_with("Use pre-LN")), "{label}: {cures:?}");
        for d in &r.diagnostics {
            for x in &d.recommendations {
                let v = x.verification.as_ref();
                let status = v.map(|v| (v.status.name(), v.steps, v.loss_change));
                eprintln!("{label}: {} / {}: {status:?}", d.code.name(), x.title);
            }
        }
        let (d, top, v) = r.top_verified().unwrap_or_else(|| panic!("{label}: nothing verified better"));
        eprintln!("{label}: top verified (for {}): {} {v:?}", d.code.name(), top.title);
        let patch = serde_json::to_string(&top.patch).unwrap();
        assert!(
            patch.contains("/training/schedule") || patch.contains("/norm_first"),
            "{label}: top recommendation (for {}): {} {patch}",
            d.code.name(),
            top.title
        );
        assert!(v.loss_change.unwrap() < -1.0, "{label}: {}: {v:?}", top.title);
    }
    // The preset's own seed is the one its title describes: stuck at chance, and both cures
    // verified better at verify_share 1.
    let own = post["seed"].as_u64().unwrap();
    let (label, r) = &done[SEEDS.iter().position(|&s| s == own).unwrap()];
    assert!((final_loss(r) - CHANCE).abs() < 0.05, "{label}: the preset's title says it stays at chance");
    for cure in ["Warm the learning rate up", "Use pre-LN"] {
        let status = r
            .diagnostics
            .iter()
            .flat_map(|d| &d.recommendations)
            .filter(|x| x.title.starts_with(cure))
            .filter_map(|x| x.verification.as_ref().map(|v| v.status.name()))
            .collect::<Vec<_>>();
        assert!(status.contains(&"verified_better"), "{label}: {cure}: {status:?}");
    }
    eprintln!(
        "post-LN without warm-up failed on {} of {} seeds, {stuck:?}; {at_chance} at chance",
        stuck.len(),
        SEEDS.len()
    );
    assert!(at_chance > 0 && stuck.len() < SEEDS.len(), "failed on {stuck:?} of {SEEDS:?}, {at_chance} at chance");

    // With warm-up, and pre-LN without it: every seed learns, the failing ones first.
    let mut seeds = stuck.clone();
    seeds.extend(SEEDS.iter().filter(|s| !stuck.contains(s)));
    seeds.truncate(3);
    let mut runs: Vec<_> = seeds.iter().map(|&s| ("post-LN + warm-up", &warm, s, 0.0)).collect();
    runs.extend(seeds.iter().map(|&s| ("pre-LN", &pre, s, 0.0)));
    for (label, r) in reports(&runs) {
        let loss = final_loss(&r);
        eprintln!("{label}: final loss {loss:.4}, verdict {}, {:?}", r.summary.verdict.name(), codes(&r));
        assert!(loss < LEARNT, "{label}: final loss {loss} (want < {LEARNT}); {:?}", codes(&r));
        assert!(r.summary.final_accuracy.unwrap() > 0.99, "{label}");
        assert!(!codes(&r).iter().any(|(c, _)| *c == "not_learning"), "{label}: {:?}", codes(&r));
    }
}

/// `in_proj_weight` of an attention layer of width `d`: PyTorch's Xavier-uniform over the
/// stacked (3d, d) matrix, with the query and key rows multiplied by `qk_scale`.
fn in_proj(d: usize, qk_scale: f64, seed: u64) -> Value {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let limit = (6.0 / (4 * d) as f64).sqrt();
    let rows: Vec<Vec<f64>> = (0..3 * d)
        .map(|i| {
            let scale = if i < 2 * d { qk_scale } else { 1.0 };
            (0..d).map(|_| scale * r.random_range(-limit..limit)).collect()
        })
        .collect();
    json!(rows)
}

/// Recall through one attention layer (d 32) whose query and key rows are `qk_scale` times
/// PyTorch's init.
fn one_attention(qk_scale: Option<f64>, seed: u64) -> Value {
    let mut attention = json!({"type": "attention", "heads": 4});
    if let Some(scale) = qk_scale {
        attention["in_proj_weight"] = in_proj(32, scale, seed);
    }
    json!({
        "seed": seed,
        "model": {"input_dim": 17, "layers": [
            {"type": "dense", "units": 32}, {"type": "positional", "encoding": "learned"},
            {"type": "residual", "layers": [attention]}, "layer_norm", "pool", {"type": "dense", "units": 16}]},
        "data": {"type": "marked_recall", "samples": 2048},
        "training": {"steps": 150, "batch_size": 64, "optimizer": {"type": "adam", "lr": 0.001}},
        "probes": {"every": 25}
    })
}

#[test]
fn attention_entropy_collapse_fires_on_oversized_query_and_key_weights_and_not_at_pytorch_init() {
    for seed in [1, 2, 3] {
        // 100x the query and key weights: logits 1e4x, one-hot attention from step 0 on (entropy
        // ~0.03 nats against ln 16 = 2.77 at PyTorch's init), and it stays so.
        let r = report(&one_attention(Some(100.0), seed), seed, 0.0);
        let d = r.diagnostics.iter().find(|d| d.code.name() == "attention_entropy_collapse");
        let d = d.unwrap_or_else(|| panic!("seed {seed}: no attention_entropy_collapse: {:?}", codes(&r)));
        assert_eq!(d.layers, ["attention_2"], "seed {seed}");
        let first = &d.recommendations[0];
        assert_eq!(first.patch, [json!({"op": "remove", "path": "/model/layers/2/layers/0/in_proj_weight"})]);
        let plain = report(&one_attention(None, seed), seed, 0.0);
        assert!(
            !plain.diagnostics.iter().any(|d| d.code.name() == "attention_entropy_collapse"),
            "seed {seed} at PyTorch's init: {:?}",
            codes(&plain)
        );
    }
}
