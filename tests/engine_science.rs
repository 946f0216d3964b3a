//! The vanishing-gradient claims gradscope's diagnostics rest on, reproduced on the engine.
//!
//! Each test builds a network in Rust (no JSON), measures it, and asserts the published result.

// A test may panic on a broken expectation: the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use gradscope::engine::config::*;
use gradscope::engine::train::{analyze, train, CancelFlag, RunEnd};

fn mlp(depth: usize, width: usize, activation: Activation, init: Init, outputs: usize) -> Vec<LayerConfig> {
    let dense = common::plain_dense;
    let mut layers: Vec<LayerConfig> = (0..depth).map(|_| dense(width, activation, init)).collect();
    layers.push(dense(outputs, Activation::Linear, Init::XavierUniform { gain: 1.0 }));
    layers
}

fn run_config(
    seed: u64,
    input_dim: usize,
    layers: Vec<LayerConfig>,
    data: DataConfig,
    steps: usize,
    optimizer: OptimizerConfig,
) -> RunConfig {
    RunConfig {
        seed,
        network: NetworkConfig { input_dim, layers },
        data,
        training: TrainConfig {
            steps,
            batch_size: 64,
            loss: LossKind::CrossEntropy,
            optimizer,
            schedule: gradscope::engine::config::Schedule::Constant,
            weight_decay: 0.0,
            clip: None,
            shuffle: true,
            precision: Precision::F32,
            validation_split: 0.0,
            standardize: false,
            bptt_truncate: None,
        },
        probes: ProbeConfig { every: 100, histograms: false, parameters: false },
    }
}

const SGD: OptimizerConfig = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false };

/// Glorot & Bengio 2010: sigmoid' <= 1/4, so with Xavier weights each layer shrinks the
/// back-propagated gradient; over 19 layers the first layer's gradient is >= 100x smaller.
#[test]
fn sigmoid_stack_vanishes_at_init() {
    let layers = mlp(20, 64, Activation::Sigmoid, Init::XavierUniform { gain: 1.0 }, 2);
    let config = run_config(7, 2, layers, DataConfig::Spirals { samples: 512, noise: 0.1, classes: 2 }, 1, SGD);
    let record = analyze(&config, Some(64), false).expect("valid config");
    let g = |i: usize| record.layer_stats[i].grad_norm[0].expect("dense layers have weights");
    let (first, last_hidden) = (g(0), g(19));
    eprintln!(
        "sigmoid 20x64 xavier: grad_norm first {first:e}, last hidden {last_hidden:e}, ratio {:e}",
        first / last_hidden
    );
    assert!(first * 100.0 <= last_hidden, "first {first:e}, last hidden {last_hidden:e}");
}

/// Fits ln(activation_std) against depth over a 30-layer ReLU stack at step 0.
fn relu_std_profile(init: Init) -> Vec<f64> {
    let layers = mlp(30, 256, Activation::Relu, init, 10);
    let data = DataConfig::Blobs { samples: 256, classes: 10, dims: 256, std: 1.0 };
    let config = run_config(1, 256, layers, data, 1, SGD);
    let record = analyze(&config, Some(256), false).expect("valid config");
    (0..30).map(|i| record.layer_stats[i].activation_std[0]).collect()
}

fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = ys.iter().sum::<f64>() / n;
    let cov: f64 = ys.iter().enumerate().map(|(i, y)| (i as f64 - mx) * (y - my)).sum();
    let var: f64 = (0..ys.len()).map(|i| (i as f64 - mx).powi(2)).sum();
    cov / var
}

/// He et al. 2015: a ReLU layer halves the second moment unless Var(w) = 2/fan_in. With
/// sigma_w^2 = 1 (LeCun) the activation scale shrinks by sqrt(2) per layer; with He init it holds.
#[test]
fn relu_stack_shrinks_by_sqrt2_per_layer_with_lecun_and_holds_with_he() {
    let lecun = relu_std_profile(Init::LecunNormal { gain: 1.0, mode: FanMode::FanIn });
    let fitted = slope(&lecun.iter().map(|s| s.ln()).collect::<Vec<_>>());
    let expected = -(2f64.sqrt()).ln();
    eprintln!(
        "relu 30x256 lecun: fitted ln-slope {fitted:.4} (per-layer factor {:.4}), expected {expected:.4}",
        fitted.exp()
    );
    assert!((fitted / expected - 1.0).abs() < 0.10, "fitted ln-slope {fitted}, expected {expected}");

    let he = relu_std_profile(Init::HeNormal { gain: 1.0, mode: FanMode::FanIn });
    let (lo, hi) = he.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    eprintln!("relu 30x256 he: activation std range {lo:.4}..{hi:.4} (max/min {:.3})", hi / lo);
    assert!(hi / lo <= 2.0, "He-init activation std ranges over {lo}..{hi}");
}

/// A 10-layer tanh MLP with Xavier init trains fine with Adam: > 95% on two spirals.
#[test]
fn tanh_xavier_10_layers_learns_spirals_with_adam() {
    let layers = mlp(10, 32, Activation::Tanh, Init::XavierUniform { gain: 1.0 }, 2);
    let adam = OptimizerConfig::Adam { lr: 0.003, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false };
    let config = run_config(3, 2, layers, DataConfig::Spirals { samples: 1024, noise: 0.1, classes: 2 }, 2000, adam);
    let record = train(&config, &CancelFlag::new(), &mut |_| {}).expect("valid config");
    assert_eq!(record.end, RunEnd::Completed);
    let acc = record.final_accuracy.expect("classification");
    eprintln!("tanh 10x32 xavier adam spirals: accuracy {acc:.4} after {} steps", record.steps_run);
    assert!(acc > 0.95, "accuracy {acc}");
}
