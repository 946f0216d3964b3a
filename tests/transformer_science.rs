//! The transformer claims gradscope's transformer diagnostics rest on, reproduced on the engine
//! with the setups measured in PyTorch (float64, PyTorch's default init) before the thresholds
//! were written:
//! - Xiong et al. 2020 (Theorem 1): at init the gradient of the last block's FFN output weight
//!   does not depend on depth for post-LN (PyTorch slope +0.05 over L = 6..48) and falls as
//!   L^-1/2 for pre-LN (-0.50); along the stack post-LN is flat (max/min 1.30 at L = 12) and
//!   pre-LN falls toward the output (last/first 0.41).
//! - Dong et al. 2021: pure attention loses rank doubly exponentially with depth (relative
//!   distance from the token mean 0.53 after one layer, 2.2e-4 after two, the float floor from
//!   three), and skip connections prevent it (0.93 after ten).
//!
//! Common setup: Gaussian inputs (B 32, T 32, d 64) through a linear input projection, the
//! blocks (4 heads, FFN 256, relu), a final layer norm for pre-LN, the last token's row through
//! Linear(64, 10), cross-entropy on random labels.

// A test may panic on a broken expectation: the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use gradscope::engine::config::*;
mod common;

use gradscope::analysis::diagnostics::diagnose;
use gradscope::analysis::findings::{DiagnosticCode, Severity};
use gradscope::engine::train::{analyze, RunRecord};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

const D: usize = 64;
const T: usize = 32;
const B: usize = 32;
const SEEDS: u64 = 8;

/// `nn.Linear`'s default init: weight and bias U(±1/sqrt(fan_in)).
fn torch_linear(units: usize, fan_in: usize) -> LayerConfig {
    let limit = 1.0 / (fan_in as f64).sqrt();
    LayerConfig::Dense(DenseConfig {
        units,
        activation: Activation::Linear,
        init: Init::Uniform { limit },
        bias_init: Init::Uniform { limit },
        norm: None,
        norm_config: NormConfig::default(),
        params: Default::default(),
    })
}

/// B Gaussian sequences (T x d) with random labels of 10 classes, drawn from `seed`.
fn gaussian_sequences(seed: u64) -> DataConfig {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let x = (0..B).map(|_| (0..T).map(|_| (0..D).map(|_| r.sample(StandardNormal)).collect()).collect()).collect();
    let y = (0..B).map(|_| r.random_range(0..10)).collect();
    DataConfig::InlineSequences { x, y: InlineSequenceTargets::PerSequence(InlineTargets::Classes(y)) }
}

fn config(seed: u64, layers: Vec<LayerConfig>) -> RunConfig {
    RunConfig {
        seed,
        network: NetworkConfig { input_dim: D, layers },
        data: gaussian_sequences(seed),
        training: TrainConfig {
            steps: 1,
            batch_size: B,
            loss: LossKind::CrossEntropy,
            optimizer: OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false },
            schedule: Schedule::Constant,
            weight_decay: 0.0,
            clip: None,
            shuffle: false,
            precision: Precision::F64,
            validation_split: 0.0,
            standardize: false,
            bptt_truncate: None,
        },
        probes: ProbeConfig { every: 1, histograms: false, parameters: false },
    }
}

/// The common setup with `depth` encoder blocks.
fn encoder(depth: usize, norm_first: bool) -> Vec<LayerConfig> {
    let blocks = TransformerConfig {
        depth,
        heads: 4,
        ffn: 4 * D,
        activation: Activation::Relu,
        norm_first,
        causal: false,
        alpha: 1.0,
        eps: 1e-5,
        blocks: Vec::new(),
    };
    let mut layers = vec![torch_linear(D, D), LayerConfig::Transformer(blocks)];
    if norm_first {
        layers.push(LayerConfig::LayerNorm(NormConfig::default()));
    }
    layers.extend([LayerConfig::Pool(PoolKind::Last), torch_linear(10, D)]);
    layers
}

/// ||dL/d linear2.weight|| of every block at init.
fn linear2_profile(record: &RunRecord) -> Vec<f64> {
    record
        .layers
        .iter()
        .filter(|l| matches!(l.part, Some((_, BlockPart::Linear2))))
        .map(|l| record.layer_stats[l.index].grad_norm[0].expect("a dense layer has a weight"))
        .collect()
}

/// Per block, the mean over seeds of log ||dL/d linear2.weight||.
fn mean_log_profile(depth: usize, norm_first: bool) -> Vec<f64> {
    let mut sum = vec![0.0; depth];
    for seed in 0..SEEDS {
        let record = analyze(&config(seed, encoder(depth, norm_first)), None, false).expect("valid config");
        let profile = linear2_profile(&record);
        assert_eq!(profile.len(), depth);
        sum.iter_mut().zip(profile).for_each(|(s, g)| *s += g.ln());
    }
    sum.iter().map(|s| s / SEEDS as f64).collect()
}

/// Least-squares slope of `y` against `x`.
fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    cov / x.iter().map(|a| (a - mx).powi(2)).sum::<f64>()
}

/// Xiong et al. 2020, Theorem 1: the last block's FFN-output gradient is flat in depth for
/// post-LN and falls as L^-1/2 for pre-LN. Slope of the seed-averaged log gradient against
/// log L over L = 6, 12, 24, 48 (PyTorch: +0.05 and -0.50); and the per-block profile at
/// L = 12 (PyTorch: post-LN max/min 1.30, pre-LN last/first 0.41).
#[test]
fn last_block_gradient_is_flat_in_depth_for_post_ln_and_falls_as_inverse_root_depth_for_pre_ln() {
    let depths = [6usize, 12, 24, 48];
    let log_depths: Vec<f64> = depths.iter().map(|&l| (l as f64).ln()).collect();
    for norm_first in [false, true] {
        let mut last = Vec::new();
        for &depth in &depths {
            let profile = mean_log_profile(depth, norm_first);
            if depth == 12 {
                let g: Vec<f64> = profile.iter().map(|l| l.exp()).collect();
                let (max, min) = g.iter().fold((0.0f64, f64::INFINITY), |(a, b), &v| (a.max(v), b.min(v)));
                let last_first = g[g.len() - 1] / g[0];
                eprintln!("L = 12, norm_first {norm_first}: max/min {:.2}, last/first {last_first:.2}", max / min);
                if norm_first {
                    assert!(last_first <= 0.6, "pre-LN last/first {last_first} (PyTorch 0.41)");
                } else {
                    assert!(max / min <= 2.0, "post-LN max/min {} (PyTorch 1.30)", max / min);
                }
            }
            last.push(*profile.last().expect("blocks"));
        }
        let s = slope(&log_depths, &last);
        eprintln!("norm_first {norm_first}: slope {s:.3}");
        if norm_first {
            assert!((-0.7..=-0.3).contains(&s), "pre-LN slope {s} (PyTorch -0.50)");
        } else {
            assert!(s.abs() <= 0.2, "post-LN slope {s} (PyTorch +0.05)");
        }
    }
}

/// Ten attention layers, with or without a skip around each, then the readout.
fn attention_stack(seed: u64, skip: bool) -> RunRecord {
    let attention = || LayerConfig::Attention(AttentionConfig { heads: 4, causal: false, params: Default::default() });
    let mut layers: Vec<LayerConfig> =
        (0..10).map(|_| if skip { LayerConfig::Residual(vec![attention()]) } else { attention() }).collect();
    layers.extend([LayerConfig::Pool(PoolKind::Last), torch_linear(10, D)]);
    analyze(&config(seed, layers), None, false).expect("valid config")
}

/// Ten attention layers: with no skip, each layer's output (`rank_collapse` of its probe); with
/// skips, each block's output.
fn rank_profile(seed: u64, skip: bool) -> Vec<f64> {
    let record = attention_stack(seed, skip);
    if skip {
        record.block_stats.iter().map(|b| b.rank_collapse[0].expect("sequences")).collect()
    } else {
        record
            .layer_stats
            .iter()
            .filter_map(|s| s.attention.first())
            .map(|a| a.rank_collapse.expect("sequences"))
            .collect()
    }
}

/// Dong et al. 2021: pure attention collapses the tokens to rank one doubly exponentially
/// (PyTorch: 0.53 after one layer, 2.2e-4 after two, the float floor after three); with skip
/// connections the tokens keep apart (0.93 after ten).
#[test]
fn pure_attention_collapses_to_rank_one_within_three_layers_and_skips_prevent_it() {
    for seed in 0..5 {
        let pure = rank_profile(seed, false);
        eprintln!("seed {seed}, no skip: {:?}", pure.iter().map(|r| format!("{r:.2e}")).collect::<Vec<_>>());
        assert_eq!(pure.len(), 10);
        assert!((0.45..=0.62).contains(&pure[0]), "depth 1: {} (PyTorch 0.53)", pure[0]);
        assert!((1e-5..=1e-3).contains(&pure[1]), "depth 2: {} (PyTorch 2.2e-4)", pure[1]);
        assert!(pure[2..].iter().all(|&r| r < 1e-3), "depth >= 3: {pure:?}");
        let skip = rank_profile(seed, true);
        eprintln!("seed {seed}, skip: {skip:.3?}");
        assert_eq!(skip.len(), 10);
        assert!(skip.iter().all(|&r| r > 0.8), "with skips: {skip:?} (PyTorch 0.93 at depth 10)");
    }
}

/// The `rank_collapse` diagnostic reads the same probes: a warning on the pure attention stack
/// (naming every layer from the second on, not the first; critical only with a run that does
/// not learn), absent with skip connections.
#[test]
fn rank_collapse_diagnostic_fires_on_pure_attention_and_not_with_skips() {
    for seed in 0..3 {
        let pure = diagnose(&attention_stack(seed, false), Some(10));
        let d = pure.iter().find(|d| d.code == DiagnosticCode::RankCollapse).expect("rank_collapse on pure attention");
        assert_eq!(d.severity, Severity::Warning);
        assert!(!d.layers.contains(&"attention_0".to_string()), "one layer leaves 0.5: {:?}", d.layers);
        assert_eq!(d.layers.len(), 9, "{:?}", d.layers);
        let skip = diagnose(&attention_stack(seed, true), Some(10));
        assert!(skip.iter().all(|d| d.code != DiagnosticCode::RankCollapse), "seed {seed}: {skip:?}");
    }
}

/// The report's theory carries the depth profile and names the regime: at L = 12 with the
/// common setup, flat for post-LN and falling toward the output for pre-LN (both as predicted),
/// over three seeds, through `gradscope analyze` on a JSON spec.
#[test]
fn report_names_the_depth_regime_of_post_ln_and_pre_ln_stacks() {
    for seed in 0..3u64 {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<Vec<Vec<f64>>> =
            (0..B).map(|_| (0..T).map(|_| (0..D).map(|_| r.sample(StandardNormal)).collect()).collect()).collect();
        let y: Vec<usize> = (0..B).map(|_| r.random_range(0..10)).collect();
        for (norm_first, regime) in [(false, "flat"), (true, "falls_toward_output")] {
            let linear = |units: usize| {
                let limit = 1.0 / (D as f64).sqrt();
                serde_json::json!({"type": "dense", "units": units, "init": {"type": "uniform", "limit": limit},
                                   "bias_init": {"type": "uniform", "limit": limit}})
            };
            let mut layers = vec![
                linear(D),
                serde_json::json!({"type": "transformer", "depth": 12, "heads": 4, "ffn": 4 * D, "norm_first": norm_first}),
            ];
            if norm_first {
                layers.push(serde_json::json!("layer_norm"));
            }
            layers.extend([serde_json::json!("pool"), linear(10)]);
            let spec = serde_json::json!({
                "seed": seed,
                "model": {"input_dim": D, "layers": layers},
                "data": {"type": "inline_sequences", "x": x, "y": y},
                "training": {"loss": "cross_entropy", "batch_size": B, "steps": 1, "precision": "f64", "shuffle": false},
            });
            let path = common::temp_json(&format!("depth_regime_{seed}_{norm_first}.json"), &spec);
            let out = common::gradscope(&["analyze", path.to_str().expect("utf-8")], None);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
            let profile = &report["theory"]["transformer"][0];
            assert_eq!(profile["regime"], regime, "seed {seed}, norm_first {norm_first}: {profile}");
            assert_eq!(profile["as_predicted"], true);
            assert_eq!(profile["measured"].as_array().map(Vec::len), Some(12));
            assert_eq!(report["blocks"].as_array().map(Vec::len), Some(12), "one block series per encoder block");
        }
    }
}
