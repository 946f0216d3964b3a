//! Unit tests of the theory at initialisation: the quadrature, the fixed point and phases, the
//! step-0 batch and the fitted factor.

use super::*;

use ndarray::Array2;

use super::mean_field::{fill_fixed_point, step_zero_inputs, LayerMap};
use super::quadrature::{expect, quadrature};
use crate::engine::config::Activation;
use crate::engine::network::Network;

fn map(activation: Activation, sigma_w2: f64, sigma_b2: f64) -> LayerMap {
    LayerMap {
        name: "dense_0".to_string(),
        activation,
        slope: 0.0,
        sigma_w2,
        bias_mean: 0.0,
        bias_var: sigma_b2,
        dropout_in: 1.0,
    }
}

fn fixed(layer: &LayerMap, q0: f64) -> (Option<f64>, f64) {
    let mut t = Theory::default();
    fill_fixed_point(&mut t, layer, q0);
    (t.q_star, t.chi1.unwrap_or(f64::NAN))
}

#[test]
fn gauss_hermite_integrates_gaussian_moments_exactly() {
    let moments = [(0, 1.0), (2, 1.0), (4, 3.0), (6, 15.0), (8, 105.0), (10, 945.0), (3, 0.0)];
    for (k, m) in moments {
        let got = expect(0.0, 1.0, true, |z| z.powi(k));
        assert!((got - m).abs() < 1e-10 * m.max(1.0), "E[z^{k}] = {got}, expected {m}");
    }
    let r = quadrature();
    assert_eq!(r.nodes.len(), QUADRATURE_NODES);
    assert!(r.nodes.iter().all(|z| *z != 0.0), "even rule: no node at the kink");
}

#[test]
fn expectations_match_a_fine_riemann_sum_for_tanh_at_every_q() {
    // E[tanh'(sqrt(q) z)^2] against a dense trapezoid rule on [-12, 12].
    for q in [0.01, 0.5, 2.0, 2.5, 10.0, 100.0, 1e4] {
        let gh = expect(0.0, q, false, |h| (1.0 - h.tanh().powi(2)).powi(2));
        let n = 4_000_000;
        let dz = 24.0 / n as f64;
        let mut tr = 0.0;
        for i in 0..=n {
            let z = -12.0 + i as f64 * dz;
            let w = if i == 0 || i == n { 0.5 } else { 1.0 };
            let f = (1.0 - (q.sqrt() * z).tanh().powi(2)).powi(2);
            tr += w * f * (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt() * dz;
        }
        assert!((gh - tr).abs() < 1e-6 * tr, "q {q}: gauss-hermite {gh}, trapezoid {tr}");
    }
}

#[test]
fn chi1_matches_the_closed_forms() {
    for sw2 in [0.5, 1.0, 1.5, 2.0, 3.0] {
        for sb2 in [0.0, 0.05] {
            let (_, chi) = fixed(&map(Activation::Relu, sw2, sb2), 1.0);
            assert!((chi - sw2 / 2.0).abs() < 1e-6, "relu sw2 {sw2} sb2 {sb2}: chi1 {chi}");
            let (_, chi) = fixed(&map(Activation::Linear, sw2, sb2), 1.0);
            assert!((chi - sw2).abs() < 1e-6, "linear sw2 {sw2}: chi1 {chi}");
        }
    }
    for sw2 in [0.3, 0.5, 0.9, 1.0] {
        let (q, chi) = fixed(&map(Activation::Tanh, sw2, 0.0), 1.0);
        assert_eq!(q, Some(0.0), "tanh sw2 {sw2}: q* = {q:?}");
        assert!((chi - sw2).abs() < 1e-6, "tanh sw2 {sw2}: chi1 {chi}");
    }
}

#[test]
fn tanh_with_large_weights_has_a_positive_fixed_point() {
    let layer = map(Activation::Tanh, 2.0, 0.0);
    let (q, chi) = fixed(&layer, 0.1);
    let q = q.unwrap_or(f64::NAN);
    assert!(q > 0.1, "q* {q}");
    assert!((layer.q_from(layer.phi2(q)) - q).abs() < 1e-10);
    assert!(chi.is_finite() && chi > 0.0);
}

#[test]
fn relu_beyond_he_has_no_finite_fixed_point_but_a_chi1() {
    let mut t = Theory::default();
    fill_fixed_point(&mut t, &map(Activation::Relu, 3.0, 0.0), 1.0);
    assert_eq!(t.q_star, None);
    assert!((t.chi1.unwrap_or(0.0) - 1.5).abs() < 1e-9);
    assert_eq!(t.phase.as_deref(), Some("chaotic"));
    assert!(!t.notes.is_empty());
}

#[test]
fn phases_and_depth_scale() {
    let mut t = Theory::default();
    fill_fixed_point(&mut t, &map(Activation::Relu, 1.0, 0.0), 1.0);
    assert_eq!(t.phase.as_deref(), Some("ordered"));
    assert!((t.depth_scale.unwrap_or(0.0) - 1.0 / 2f64.ln()).abs() < 1e-9);
    assert!((t.predicted_layer_factor.unwrap_or(0.0) - 0.5f64.sqrt()).abs() < 1e-9);
    let mut t = Theory::default();
    fill_fixed_point(&mut t, &map(Activation::Relu, 2.0, 0.0), 1.0);
    assert_eq!(t.phase.as_deref(), Some("critical"));
    assert_eq!(t.depth_scale, None, "chi1 = 1: infinite depth scale");
}

/// The step-0 batch rebuilt here is the one the engine trained on: the first layer's output
/// computed from it has the mean and std the engine's step-0 probe recorded.
#[test]
fn step_zero_batch_is_the_one_the_engine_used() {
    use crate::engine::config::*;
    use crate::engine::train::{analyze, train, CancelFlag};
    let dense = |units, activation| {
        LayerConfig::Dense(DenseConfig {
            units,
            activation,
            init: Init::XavierUniform { gain: 1.0 },
            bias_init: Init::Normal { std: 0.1 },
            norm: None,
            norm_config: NormConfig::default(),
            params: Default::default(),
        })
    };
    let config = RunConfig {
        seed: 9,
        network: NetworkConfig {
            input_dim: 2,
            layers: vec![dense(16, Activation::Tanh), dense(3, Activation::Linear)],
        },
        data: DataConfig::Spirals { samples: 300, noise: 0.2, classes: 3 },
        training: TrainConfig {
            steps: 2,
            batch_size: 40,
            loss: LossKind::CrossEntropy,
            optimizer: OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false },
            schedule: crate::engine::config::Schedule::Constant,
            weight_decay: 0.0,
            clip: None,
            shuffle: true,
            precision: Precision::F64,
            validation_split: 0.2,
            standardize: false,
            bptt_truncate: None,
        },
        probes: ProbeConfig::default(),
    };
    let net = Network::<f64>::new(&config.network, config.seed).unwrap_or_else(|e| panic!("{e}"));
    let params: Vec<_> = net.params().map(|(_, p)| p.value.clone()).collect();
    let (w, b) = (&params[0], &params[1]);
    let first_layer_stats = |x: &Array2<f64>| {
        let y = (x.dot(&w.t()) + b).mapv(f64::tanh);
        let mean = y.mean().unwrap_or(f64::NAN);
        (mean, y.mapv(|v| (v - mean).powi(2)).mean().unwrap_or(f64::NAN).sqrt())
    };
    let record = train(&config, &CancelFlag::new(), &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let x = step_zero_inputs(&config, StepZero::Train).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(x.nrows(), 40);
    let (mean, std) = first_layer_stats(&x);
    let s = &record.layer_stats[0];
    assert!((mean - s.activation_mean[0]).abs() < 1e-12 && (std - s.activation_std[0]).abs() < 1e-12);
    let record = analyze(&config, Some(25), false).unwrap_or_else(|e| panic!("{e}"));
    let x = step_zero_inputs(&config, StepZero::Analyze { batch: 25 }).unwrap_or_else(|e| panic!("{e}"));
    let (mean, std) = first_layer_stats(&x);
    let s = &record.layer_stats[0];
    assert!((mean - s.activation_mean[0]).abs() < 1e-12 && (std - s.activation_std[0]).abs() < 1e-12);
}

#[test]
fn fitted_factor_recovers_a_geometric_decay() {
    let v: Vec<Option<f64>> = (0..10).map(|k| Some(3.0 * 0.7f64.powi(9 - k))).collect();
    // delta grows towards the output: delta_l / delta_{l+1} = 0.7.
    assert!((fitted_factor(&v).unwrap_or(0.0) - 0.7).abs() < 1e-12);
    assert_eq!(fitted_factor(&[Some(1.0)]), None);
}
