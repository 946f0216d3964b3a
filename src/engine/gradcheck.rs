//! Finite-difference gradient checking, in `f64`.
//!
//! The check perturbs one scalar at a time and compares the five-point central difference
//! `(-L(p+2h) + 8 L(p+h) - 8 L(p-h) + L(p-2h)) / 12h` (truncation error O(h^4)) with the analytic
//! gradient. With h = 1e-4 both truncation (~h^4) and rounding (~eps/h) stay near 1e-12, far
//! below the 1e-6 tolerance, while the stencil stays narrow enough not to straddle ReLU kinks. It is part of the
//! engine's public API so that integration tests, and users of the library, can check a network
//! of their own; it is far too slow for anything but small networks.

use ndarray::Array2;

use super::config::{LossKind, NetworkConfig};
use super::layers::Ctx;
use super::loss::{loss_and_grad, BatchTargets};
use super::network::Network;
use super::rng::{rng, Stream};
use super::Result;

/// Worst disagreement found by [`check`].
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// Largest relative error over every checked scalar.
    pub max_rel_error: f64,
    /// Where it occurred (`dense_0.weight[3]`, `input[5]`).
    pub worst: String,
    /// Scalars checked.
    pub checked: usize,
}

/// Relative error `|a - n| / max(|a|, |n|, floor)`; the floor keeps gradients that are zero up to
/// rounding from dominating.
fn rel_error(a: f64, n: f64, floor: f64) -> f64 {
    (a - n).abs() / a.abs().max(n.abs()).max(floor)
}

/// The loss of one training-mode forward pass on `x`, with the same dropout mask every time.
fn loss_at(
    net: &mut Network<f64>,
    x: &Array2<f64>,
    seed: u64,
    targets: BatchTargets<'_, f64>,
    loss: LossKind,
    opts: &CheckOptions,
) -> Result<f64> {
    let mut r = rng(seed, Stream::Dropout);
    let mut ctx = Ctx {
        training: true,
        dropout: true,
        probe: false,
        rng: &mut r,
        seq_len: opts.seq_len,
        bptt_truncate: opts.bptt_truncate,
    };
    net.input_mut().clone_from(x);
    net.forward(&mut ctx)?;
    let (out, grad) = net.output_and_grad();
    let out = out.clone();
    Ok(loss_and_grad(loss, &out, targets, grad)?.loss)
}

/// Five-point central difference of `f` at 0.
fn stencil(mut f: impl FnMut(f64) -> f64, h: f64) -> f64 {
    (-f(2.0 * h) + 8.0 * f(h) - 8.0 * f(-h) + f(-2.0 * h)) / (12.0 * h)
}

/// How to run a check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOptions {
    /// Finite-difference step (1e-4 suits the five-point stencil in f64).
    pub h: f64,
    /// Time steps of the batch (rows are `seq_len * B`, time-major) for recurrent networks.
    pub seq_len: usize,
    /// Truncated BPTT window.
    pub bptt_truncate: Option<usize>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { h: 1e-4, seq_len: 1, bptt_truncate: None }
    }
}

/// Checks every parameter gradient and the input gradient of `config` on the batch `x`,
/// in training mode (batch statistics) with a dropout mask that is the same on every pass.
pub fn check(
    config: &NetworkConfig,
    seed: u64,
    x: &Array2<f64>,
    targets: BatchTargets<'_, f64>,
    loss: LossKind,
    opts: &CheckOptions,
) -> Result<GradCheck> {
    let h = opts.h;
    let mut net = Network::<f64>::new(config, seed)?;
    let loss_of = |net: &mut Network<f64>| loss_at(net, x, seed, targets, loss, opts);
    // The first pass gives every buffer its shape; the perturbed ones reuse them (a failure
    // there would show as a non-finite difference).
    let base_loss = loss_of(&mut net)?;
    net.backward(true)?;
    // Truncated BPTT is the exact gradient of the loss with the state at the truncation point
    // held fixed: perturbed passes reuse the state of the pass just differentiated.
    net.freeze_truncated_state(true);
    let analytic: Vec<Array2<f64>> = net.params().map(|(_, p)| p.grad.clone()).collect();
    let names: Vec<String> = net.params().map(|(info, p)| format!("{}.{}", info.name, p.name)).collect();
    let input_grad = net.input_grad().clone();
    let scale = analytic.iter().flat_map(|g| g.iter()).chain(input_grad.iter()).fold(0.0f64, |m, v| m.max(v.abs()));
    // The finite difference carries rounding noise of about eps * |L| / h. Scalars whose gradient
    // is within 1e6 times that noise (or below 1e-5 of the largest gradient) are in effect
    // compared with an absolute tolerance of 1e-6 * floor instead of a relative one.
    let noise = f64::EPSILON * base_loss.abs().max(1.0) / h;
    let floor = (1e-5 * scale).max(1e6 * noise).max(1e-12);

    let mut result = GradCheck { max_rel_error: 0.0, worst: String::new(), checked: 0 };
    let mut record = |a: f64, n: f64, name: String| {
        let e = rel_error(a, n, floor);
        result.checked += 1;
        if e > result.max_rel_error || !e.is_finite() {
            result.max_rel_error = if e.is_finite() { e } else { f64::INFINITY };
            result.worst = format!("{name}: analytic {a:e}, numeric {n:e}");
        }
    };
    for (pi, grad) in analytic.iter().enumerate() {
        for idx in 0..grad.len() {
            let perturb = |net: &mut Network<f64>, delta: f64| {
                if let Some(p) = net.params_mut().nth(pi) {
                    if let Some(v) = p.value.iter_mut().nth(idx) {
                        *v += delta;
                    }
                }
            };
            let at = |net: &mut Network<f64>, delta: f64| {
                perturb(net, delta);
                let l = loss_of(net).unwrap_or(f64::NAN);
                perturb(net, -delta);
                l
            };
            let numeric = stencil(|d| at(&mut net, d), h);
            let a = grad.iter().nth(idx).copied().unwrap_or(f64::NAN);
            record(a, numeric, format!("{}[{idx}]", names[pi]));
        }
    }
    for idx in 0..x.len() {
        let (i, j) = (idx / x.ncols(), idx % x.ncols());
        let run = |delta: f64| {
            let mut xx = x.clone();
            xx[(i, j)] += delta;
            loss_at(&mut net, &xx, seed, targets, loss, opts).unwrap_or(f64::NAN)
        };
        let n = stencil(run, h);
        record(input_grad[(i, j)], n, format!("input[{idx}]"));
    }
    Ok(result)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test may panic on a broken expectation
mod tests {
    use super::*;
    use crate::engine::config::{
        Activation, AttentionConfig, CellKind, DenseConfig, FanMode, Init, LayerConfig, NormConfig, NormKind, PoolKind,
        RnnConfig,
    };
    use rand::seq::IndexedRandom;
    use rand::Rng as _;

    const ACTIVATIONS: [Activation; 11] = [
        Activation::Linear,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Elu { alpha: 1.0 },
        Activation::Prelu { init: 0.25 },
        Activation::Selu,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Silu,
    ];

    fn dense(units: usize, activation: Activation, norm: Option<NormKind>) -> LayerConfig {
        LayerConfig::Dense(DenseConfig {
            units,
            activation,
            init: Init::HeNormal { gain: 1.0, mode: FanMode::FanIn },
            bias_init: Init::Uniform { limit: 0.3 },
            norm,
            norm_config: NormConfig::default(),
            params: Default::default(),
        })
    }

    /// A random stack of every layer kind, width `w`, ending in `outputs` linear units.
    fn random_network(r: &mut crate::engine::rng::Rng, w: usize, outputs: usize) -> NetworkConfig {
        let norms = [None, Some(NormKind::Batch), Some(NormKind::Layer)];
        let mut layers = vec![dense(w, *ACTIVATIONS.choose(r).unwrap_or(&Activation::Tanh), None)];
        for _ in 0..r.random_range(2..5) {
            let act = *ACTIVATIONS.choose(r).unwrap_or(&Activation::Tanh);
            let norm = *norms.choose(r).unwrap_or(&None);
            layers.push(match r.random_range(0..7) {
                0 | 1 => dense(w, act, norm),
                2 => LayerConfig::BatchNorm(NormConfig::default()),
                3 => LayerConfig::LayerNorm(NormConfig::default()),
                4 => LayerConfig::Activation { activation: act, params: Default::default() },
                5 => LayerConfig::Dropout { rate: 0.3 },
                _ => LayerConfig::Residual(vec![dense(w, act, norm), dense(w, Activation::Linear, None)]),
            });
        }
        layers.push(dense(outputs, Activation::Linear, None));
        NetworkConfig { input_dim: 3, layers }
    }

    /// Every layer type, activation, norm placement, residual block and loss, on random stacks:
    /// analytic gradients agree with central differences to a relative error below 1e-6.
    #[test]
    fn randomized_networks_match_finite_differences() {
        let mut r = rng(2024, Stream::Data);
        let losses = [LossKind::CrossEntropy, LossKind::Mse, LossKind::Bce];
        for case in 0..60 {
            let loss = losses[case % 3];
            let outputs = if loss == LossKind::Bce { 1 } else { 3 };
            let config = random_network(&mut r, 5, outputs);
            let x = Array2::from_shape_fn((6, 3), |_| r.random_range(-1.5..1.5));
            let labels: Vec<usize> = (0..6).map(|i| if loss == LossKind::Bce { i % 2 } else { i % 3 }).collect();
            let values = Array2::from_shape_fn((6, outputs), |_| r.random_range(-1.0..1.0));
            let targets =
                if loss == LossKind::Mse { BatchTargets::Values(&values) } else { BatchTargets::Classes(&labels) };
            let res = check(&config, case as u64, &x, targets, loss, &CheckOptions::default()).expect("valid network");
            assert!(res.max_rel_error < 1e-6, "case {case} ({loss:?}) {:#?}: {}", config.layers, res.worst);
            assert!(res.checked > 50);
        }
    }

    /// A nested residual (residual inside residual) routes gradients through both skips.
    #[test]
    fn nested_residual_blocks_match_finite_differences() {
        let inner = LayerConfig::Residual(vec![dense(4, Activation::Tanh, Some(NormKind::Layer))]);
        let config = NetworkConfig {
            input_dim: 4,
            layers: vec![
                LayerConfig::Residual(vec![inner, dense(4, Activation::Silu, None)]),
                LayerConfig::Residual(vec![]),
                dense(2, Activation::Linear, None),
            ],
        };
        let x = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 7 + j * 3) % 5) as f64 * 0.4 - 0.9);
        let res = check(
            &config,
            1,
            &x,
            BatchTargets::Classes(&[0, 1, 1, 0, 1]),
            LossKind::CrossEntropy,
            &CheckOptions::default(),
        )
        .expect("valid");
        assert!(res.max_rel_error < 1e-6, "{}", res.worst);
    }

    fn rnn(cell: CellKind, units: usize, activation: Activation, return_sequences: bool) -> LayerConfig {
        LayerConfig::Rnn(RnnConfig {
            cell,
            units,
            activation,
            init: Init::XavierUniform { gain: 1.0 },
            recurrent_init: Init::Orthogonal { gain: 1.1 },
            return_sequences,
            forget_bias: 0.5,
            params: Default::default(),
        })
    }

    /// All three cells, stacked layers, return_sequences both ways and truncated BPTT:
    /// BPTT gradients agree with central differences to a relative error below 1e-6.
    #[test]
    fn recurrent_networks_match_finite_differences() {
        let (steps, batch, features) = (6, 3, 2);
        let mut r = rng(77, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, features), |_| r.random_range(-1.0..1.0));
        let cells = [
            (CellKind::Vanilla, Activation::Tanh),
            (CellKind::Vanilla, Activation::Relu),
            (CellKind::Vanilla, Activation::Sigmoid),
            (CellKind::Lstm, Activation::Tanh),
            (CellKind::Gru, Activation::Tanh),
        ];
        for (cell, act) in cells {
            for truncate in [None, Some(2)] {
                // Last state -> dense -> mse.
                let last = NetworkConfig {
                    input_dim: features,
                    layers: vec![rnn(cell, 4, act, false), dense(2, Activation::Linear, None)],
                };
                let y = Array2::from_shape_fn((batch, 2), |_| r.random_range(-1.0..1.0));
                let opts = CheckOptions { seq_len: steps, bptt_truncate: truncate, ..CheckOptions::default() };
                let res = check(&last, 5, &x, BatchTargets::Values(&y), LossKind::Mse, &opts).expect("valid");
                assert!(res.max_rel_error < 1e-6, "{cell:?} {act:?} last, truncate {truncate:?}: {}", res.worst);

                // Stacked: sequence -> sequence -> dense per step -> per-step cross-entropy.
                let other = if cell == CellKind::Gru { CellKind::Lstm } else { CellKind::Gru };
                let seq = NetworkConfig {
                    input_dim: features,
                    layers: vec![
                        rnn(cell, 4, act, true),
                        rnn(other, 3, Activation::Tanh, true),
                        dense(3, Activation::Linear, None),
                    ],
                };
                let labels: Vec<usize> = (0..steps * batch).map(|i| (i * 7) % 3).collect();
                let res =
                    check(&seq, 6, &x, BatchTargets::Classes(&labels), LossKind::CrossEntropy, &opts).expect("valid");
                assert!(res.max_rel_error < 1e-6, "{cell:?} {act:?} stacked, truncate {truncate:?}: {}", res.worst);
            }
        }
    }

    fn attention(heads: usize, causal: bool) -> LayerConfig {
        LayerConfig::Attention(AttentionConfig { heads, causal, params: Default::default() })
    }

    /// Attention inside the network, as a transformer uses it: an input projection per step, a
    /// pre-LN block (x + attn(LN(x)), x + FFN(LN(x))), a post-LN block (LN(x + attn(x))), then
    /// pooled (last step or mean) into a classifier; or kept per step into per-step targets.
    /// With and without the causal mask, the gradients agree with central differences to a
    /// relative error below 1e-6.
    #[test]
    fn attention_networks_match_finite_differences() {
        let (steps, batch, features, d) = (4, 3, 3, 4);
        let mut r = rng(91, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, features), |_| r.random_range(-1.0..1.0));
        let layer_norm = || LayerConfig::LayerNorm(NormConfig::default());
        let opts = CheckOptions { seq_len: steps, ..CheckOptions::default() };
        for causal in [false, true] {
            let blocks = |head: Vec<LayerConfig>| {
                let mut layers = vec![
                    dense(d, Activation::Linear, None),
                    LayerConfig::Residual(vec![layer_norm(), attention(2, causal)]),
                    LayerConfig::Residual(vec![
                        layer_norm(),
                        dense(8, Activation::Gelu, None),
                        dense(d, Activation::Linear, None),
                    ]),
                    LayerConfig::Residual(vec![attention(1, causal)]),
                    layer_norm(),
                ];
                layers.extend(head);
                NetworkConfig { input_dim: features, layers }
            };
            for pool in [PoolKind::Last, PoolKind::Mean] {
                let config = blocks(vec![LayerConfig::Pool(pool), dense(3, Activation::Linear, None)]);
                let labels = [0, 2, 1];
                let res = check(&config, 3, &x, BatchTargets::Classes(&labels), LossKind::CrossEntropy, &opts)
                    .expect("valid");
                assert!(res.max_rel_error < 1e-6, "causal {causal}, {pool:?}: {}", res.worst);
            }
            let config = blocks(vec![dense(2, Activation::Linear, None)]);
            let y = Array2::from_shape_fn((steps * batch, 2), |_| r.random_range(-1.0..1.0));
            let res = check(&config, 4, &x, BatchTargets::Values(&y), LossKind::Mse, &opts).expect("valid");
            assert!(res.max_rel_error < 1e-6, "causal {causal}, per step: {}", res.worst);
        }
    }

    /// Transformer layers (two blocks each) with the skip scaled by alpha (DeepNorm): post-LN
    /// `x = norm(alpha x + f(x))` and pre-LN `x = alpha x + f(norm(x))`, whose backward adds
    /// `alpha dL/dy` to the skip's gradient.
    #[test]
    fn transformer_layers_with_scaled_skips_match_finite_differences() {
        use crate::engine::config::TransformerConfig;
        let (steps, batch, features, d) = (4, 2, 3, 4);
        let mut r = rng(92, Stream::Data);
        let x = Array2::from_shape_fn((steps * batch, features), |_| r.random_range(-1.0..1.0));
        let opts = CheckOptions { seq_len: steps, ..CheckOptions::default() };
        for norm_first in [false, true] {
            for alpha in [1.0, 1.7] {
                let t = TransformerConfig {
                    depth: 2,
                    heads: 2,
                    ffn: 6,
                    activation: Activation::Gelu,
                    norm_first,
                    causal: norm_first,
                    alpha,
                    eps: 1e-5,
                    blocks: Vec::new(),
                };
                let config = NetworkConfig {
                    input_dim: features,
                    layers: vec![
                        dense(d, Activation::Linear, None),
                        LayerConfig::Transformer(t),
                        LayerConfig::Pool(PoolKind::Last),
                        dense(3, Activation::Linear, None),
                    ],
                };
                let res = check(&config, 5, &x, BatchTargets::Classes(&[2, 0]), LossKind::CrossEntropy, &opts)
                    .expect("valid");
                assert!(res.max_rel_error < 1e-6, "norm_first {norm_first}, alpha {alpha}: {}", res.worst);
            }
        }
    }
}
