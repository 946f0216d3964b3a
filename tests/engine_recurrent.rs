//! The gradient through time, against theory (Pascanu, Mikolov & Bengio 2013).
//!
//! For `h_t = f(W h_{t-1} + U x_t + b)`, `dL/dh_{t-1} = W^T diag(f'(.)) dL/dh_t`, so with the
//! loss on the last state `||dL/dh_t|| <= (||W|| gamma)^(T-t) ||dL/dh_T||`, gamma = max |f'|
//! (1 for tanh). For a linear cell with `W = lambda I` the ratio is exactly `lambda^(T-t)`.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use gradscope::engine::config::*;
use gradscope::engine::layers::Ctx;
use gradscope::engine::loss::{loss_and_grad, BatchTargets};
use gradscope::engine::network::Network;
use gradscope::engine::rng::{rng, Stream};
use ndarray::Array2;
use rand::Rng as _;

/// ||dL/dh_t|| for t = 1..T of a one-layer RNN -> dense(1) -> mse network at initialisation.
fn timestep_norms(activation: Activation, recurrent_init: Init, steps: usize, units: usize, seed: u64) -> Vec<f64> {
    let config = NetworkConfig {
        input_dim: 3,
        layers: vec![
            LayerConfig::Rnn(RnnConfig {
                cell: CellKind::Vanilla,
                units,
                activation,
                init: Init::XavierUniform { gain: 1.0 },
                recurrent_init,
                return_sequences: false,
                forget_bias: 0.0,
                params: Default::default(),
            }),
            LayerConfig::Dense(DenseConfig {
                units: 1,
                activation: Activation::Linear,
                init: Init::XavierUniform { gain: 1.0 },
                bias_init: Init::Constant { value: 0.0 },
                norm: None,
                norm_config: NormConfig::default(),
                params: Default::default(),
            }),
        ],
    };
    let batch = 16;
    let mut net = Network::<f64>::new(&config, seed).expect("valid");
    let mut r = rng(seed, Stream::Data);
    *net.input_mut() = Array2::from_shape_fn((steps * batch, 3), |_| r.random_range(-1.0..1.0));
    let y = Array2::from_shape_fn((batch, 1), |_| r.random_range(-1.0..1.0));
    let mut dr = rng(seed, Stream::Dropout);
    let mut ctx =
        Ctx { training: true, dropout: false, probe: true, rng: &mut dr, seq_len: steps, bptt_truncate: None };
    net.forward(&mut ctx).expect("forward");
    let (out, grad) = net.output_and_grad();
    loss_and_grad(LossKind::Mse, out, BatchTargets::Values(&y), grad).expect("loss");
    net.backward(false).expect("backward");
    let info = net.layers()[0].clone();
    net.layer(&info).and_then(|l| l.recurrent_stats()).expect("a recurrent layer").timestep_grad_norm.clone()
}

#[test]
fn tanh_rnn_gradient_stays_under_the_pascanu_bound() {
    let lambda = 0.5;
    for seed in 0..5 {
        let norms = timestep_norms(Activation::Tanh, Init::Orthogonal { gain: lambda }, 30, 32, seed);
        let last = *norms.last().unwrap();
        let t_len = norms.len();
        for (t, n) in norms.iter().enumerate() {
            let bound = lambda.powi((t_len - 1 - t) as i32);
            assert!(
                n / last <= bound * (1.0 + 1e-12),
                "seed {seed}, t = {}: ratio {} > bound {bound}",
                t + 1,
                n / last
            );
        }
        // And the bound is not vacuous: the gradient does vanish.
        assert!(norms[0] / last < 1e-6);
    }
}

#[test]
fn linear_rnn_with_scaled_identity_scales_the_gradient_by_exactly_lambda_per_step() {
    for lambda in [0.9, 1.0, 1.1] {
        let norms = timestep_norms(Activation::Linear, Init::Identity { gain: lambda }, 25, 8, 3);
        let last = *norms.last().unwrap();
        let t_len = norms.len();
        for (t, n) in norms.iter().enumerate() {
            let expected = lambda.powi((t_len - 1 - t) as i32);
            let ratio = n / last;
            assert!((ratio / expected - 1.0).abs() < 1e-4, "lambda {lambda}, t = {}: {ratio} vs {expected}", t + 1);
        }
    }
}

/// Hochreiter & Schmidhuber 1997, Le et al. 2015: on the adding problem with T = 100 (values
/// U[0,1], predicting the mean scores MSE 1/6), an LSTM learns to add while a vanilla tanh RNN
/// with the same budget (3000 Adam steps, batch 32, hidden 32) stays at the baseline.
#[test]
fn lstm_solves_adding_at_t100_where_a_tanh_rnn_stays_at_baseline() {
    use gradscope::analysis::pipeline::{run as run_spec, RunOptions};
    use gradscope::engine::train::CancelFlag;
    use gradscope::spec::{parse, Limits};

    let run = |cell: &str, lr: f64, clip: bool| {
        let mut spec = serde_json::json!({
            "seed": 1,
            "model": {"input_dim": 2, "layers": [
                {"type": "rnn", "cell": cell, "units": 32},
                {"type": "dense", "units": 1, "activation": "linear"}
            ]},
            "data": {"type": "adding", "length": 100, "samples": 6000, "validation_split": 0.2},
            "training": {"steps": 3000, "batch_size": 32, "loss": "mse", "optimizer": {"type": "adam", "lr": lr}},
            "probes": {"every": 250}
        });
        if clip {
            spec["training"]["clip"] = serde_json::json!({"type": "global_norm", "max": 1.0});
        }
        let spec = parse(&spec).expect("valid spec");
        let options = RunOptions { limits: &Limits::default(), params_out: false, verify_share: 0.0 };
        let out = run_spec(&spec, &options, &CancelFlag::new(), &mut |_| {}).expect("runs");
        let curve: Vec<String> = out
            .report
            .steps
            .iter()
            .zip(out.report.val_loss.as_ref().expect("validation split"))
            .map(|(s, l)| format!("{s}:{:.4}", l.unwrap_or(f64::NAN)))
            .collect();
        eprintln!("{cell}: test MSE by step {}", curve.join(" "));
        out.report.summary.final_val_loss.expect("validation loss")
    };
    let lstm = run("lstm", 0.005, false);
    let rnn = run("vanilla", 0.001, true);
    assert!(lstm < 0.02, "LSTM test MSE {lstm}");
    assert!(rnn > 0.1, "vanilla RNN test MSE {rnn}");
}
