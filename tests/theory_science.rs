//! The theory block against the published claims (issue 5, must-show 3): mean-field signal
//! propagation (Poole et al. 2016, Schoenholz et al. 2017) predicts the whole per-layer gradient
//! profile at initialisation, and the input-output Jacobian's spectrum behaves as Pennington,
//! Schoenholz & Ganguli (2017) derive for deep linear networks.
//!
//! Each test builds its network in Rust, runs the engine's one-step analysis, computes the
//! theory block from the config and the record, and prints what it measured (`--nocapture`).

// A test may panic on a broken expectation: the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use gradscope::analysis::theory::{theory_at_init, StepZero, Theory, TheoryProfile};
use gradscope::engine::config::*;
use gradscope::engine::train::analyze;

use common::plain_dense as dense;

fn config(seed: u64, input_dim: usize, layers: Vec<LayerConfig>, data: DataConfig, batch: usize) -> RunConfig {
    RunConfig {
        seed,
        network: NetworkConfig { input_dim, layers },
        data,
        training: TrainConfig {
            steps: 1,
            batch_size: batch,
            loss: LossKind::CrossEntropy,
            optimizer: OptimizerConfig::Sgd { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false },
            schedule: gradscope::engine::config::Schedule::Constant,
            weight_decay: 0.0,
            clip: None,
            shuffle: true,
            precision: Precision::F64,
            validation_split: 0.0,
            standardize: false,
            bptt_truncate: None,
        },
        probes: ProbeConfig::default(),
    }
}

/// Analyse `config` at initialisation and compute its theory block.
fn theory_of(config: &RunConfig, batch: usize) -> Theory {
    let record = analyze(config, Some(batch), false).expect("valid config");
    theory_at_init(config, &record, StepZero::Analyze { batch })
}

/// The mean over `profiles` (one per seed) of the predicted and measured ln(delta_l / delta_L) at
/// each of the first `depth` hidden layers.
fn mean_profile(profiles: &[TheoryProfile], depth: usize) -> (Vec<f64>, Vec<f64>) {
    let n = profiles.len() as f64;
    let (mut predicted, mut measured) = (vec![0.0; depth], vec![0.0; depth]);
    for p in profiles {
        for l in 0..depth {
            predicted[l] += p.predicted_log_delta_ratio[l] / n;
            measured[l] += p.measured_log_delta_ratio[l].expect("finite delta_norm") / n;
        }
    }
    (predicted, measured)
}

/// A `depth` x `width` stack with weights N(0, sigma_w^2 / fan_in), zero biases, and a linear
/// readout.
fn mlp(depth: usize, width: usize, activation: Activation, sigma_w2: f64, outputs: usize) -> Vec<LayerConfig> {
    let init = Init::LecunNormal { gain: sigma_w2.sqrt(), mode: FanMode::FanIn };
    let mut layers: Vec<LayerConfig> = (0..depth).map(|_| dense(width, activation, init)).collect();
    layers.push(dense(outputs, Activation::Linear, Init::XavierUniform { gain: 1.0 }));
    layers
}

/// Must-show 3: at width 512, depth 20, tanh, sigma_b = 0, the measured
/// ln(delta_norm_l / delta_norm_L) at step 0, averaged over 5 seeds, is within 10% (or 0.2
/// absolute, whichever is larger) of the profile predicted by iterating the length map, at
/// every hidden layer — in the ordered phase (0.5), at the critical point where q_l ~ 1/(2l)
/// makes the decay a power law (1.0), and beyond it (1.5).
#[test]
fn tanh_profile_matches_length_map_at_width_512() {
    let (depth, width, batch, seeds) = (20, 512, 128, 5u64);
    for sigma_w2 in [0.5, 1.0, 1.5] {
        let profiles: Vec<TheoryProfile> = (0..seeds)
            .map(|seed| {
                let c = config(
                    seed,
                    2,
                    mlp(depth, width, Activation::Tanh, sigma_w2, 2),
                    DataConfig::Spirals { samples: 512, noise: 0.1, classes: 2 },
                    batch,
                );
                let t = theory_of(&c, batch);
                let p = t.profile.unwrap_or_else(|| panic!("no profile: {:?}", t.notes));
                assert_eq!(p.layers.len(), depth);
                assert_eq!(p.predicted_log_delta_ratio[depth - 1], 0.0);
                p
            })
            .collect();
        let (predicted, measured) = mean_profile(&profiles, depth);
        let mut worst: f64 = 0.0;
        for l in 0..depth {
            let (p, m) = (predicted[l], measured[l]);
            let tol = (0.1 * p.abs()).max(0.2);
            worst = worst.max((m - p).abs());
            assert!((m - p).abs() <= tol, "sigma_w^2 {sigma_w2}, layer {l}: measured {m:.4}, predicted {p:.4}");
        }
        eprintln!(
            "tanh sigma_w^2 {sigma_w2}: ln(delta_0/delta_L) predicted {:.4}, measured {:.4}; max |deviation| over \
             layers {worst:.4}",
            predicted[0], measured[0]
        );
    }
}

/// At sigma_w^2 = 1 the net is not at q* = 0 in its first layers: the predicted profile is a power
/// law (1/2 sum ln(1 - 2 q_k) ~ -1/2 ln((L + c)/(l + c))), far from the geometric chi1^((L-l)/2)
/// = 1 that q* alone would give.
#[test]
fn tanh_critical_profile_is_a_power_law_not_the_fixed_point_geometric() {
    let (depth, width, batch) = (20, 512, 128);
    let c = config(
        3,
        2,
        mlp(depth, width, Activation::Tanh, 1.0, 2),
        DataConfig::Spirals { samples: 512, noise: 0.1, classes: 2 },
        batch,
    );
    let t = theory_of(&c, batch);
    assert_eq!(t.q_star, Some(0.0));
    assert!((t.chi1.unwrap() - 1.0).abs() < 1e-6);
    assert_eq!(t.phase.as_deref(), Some("critical"));
    let p = t.profile.unwrap();
    // q_l falls, roughly like 1/(2l) once 2l >> 1/q_1.
    assert!(p.q.windows(2).all(|w| w[1] < w[0]), "q falls: {:?}", p.q);
    let (q5, q19) = (p.q[9], p.q[19]);
    assert!((q5 / q19 - 2.0).abs() < 0.4, "q_10 / q_20 = {}", q5 / q19);
    // Not flat: the first layer's gradient is measurably smaller than the last's.
    assert!(p.predicted_log_delta_ratio[0] < -0.3, "{:?}", p.predicted_log_delta_ratio);
}

fn linear_stack(depth: usize, n: usize, init: Init) -> Vec<LayerConfig> {
    let mut layers: Vec<LayerConfig> = (0..depth).map(|_| dense(n, Activation::Linear, init)).collect();
    layers.push(dense(2, Activation::Linear, Init::XavierUniform { gain: 1.0 }));
    layers
}

fn teacher(dims: usize) -> DataConfig {
    DataConfig::Teacher { samples: 64, dims, classes: 2, outputs: 0, hidden: 8 }
}

/// Pennington et al. 2017: a deep linear network with orthogonal weights has an orthogonal
/// input-output Jacobian — every singular value is 1, at any depth.
#[test]
fn orthogonal_deep_linear_net_is_an_exact_isometry() {
    let n = 400;
    for depth in [2, 5, 10] {
        let c = config(11, n, linear_stack(depth, n, Init::Orthogonal { gain: 1.0 }), teacher(n), 16);
        let t = theory_of(&c, 16);
        let j = t.jacobian.unwrap_or_else(|| panic!("no jacobian: {:?}", t.notes));
        assert_eq!(j.size, [n, n]);
        assert!((j.max - 1.0).abs() < 1e-4 && (j.min - 1.0).abs() < 1e-4, "L {depth}: {j:?}");
        assert_eq!(j.fraction_within_half_to_two, 1.0);
        eprintln!("orthogonal linear L {depth}: singular values in [{:.10}, {:.10}]", j.min, j.max);
    }
}

/// Pennington et al. 2017: with Gaussian weights of variance 1/N the squared singular values of
/// the product of L matrices follow the Fuss-Catalan law, whose variance is L: the spread grows
/// linearly with depth although the mean stays 1 (within 25% at N = 400, mean over 3 seeds).
#[test]
fn gaussian_deep_linear_net_squared_singular_value_variance_grows_like_depth() {
    let n = 400;
    let init = Init::Normal { std: (1.0 / n as f64).sqrt() };
    for depth in [2usize, 5, 10] {
        let seeds = 3;
        let (mut var, mut mean) = (0.0, 0.0);
        for seed in 0..seeds {
            let c = config(100 + seed, n, linear_stack(depth, n, init), teacher(n), 16);
            let j = theory_of(&c, 16).jacobian.expect("jacobian");
            var += j.var_sq / seeds as f64;
            mean += j.mean_sq / seeds as f64;
        }
        eprintln!("gaussian linear N {n} L {depth}: mean of s^2 {mean:.4}, variance of s^2 {var:.4} (theory {depth})");
        assert!((mean - 1.0).abs() < 0.15, "L {depth}: mean of s^2 {mean}");
        assert!((var / depth as f64 - 1.0).abs() < 0.25, "L {depth}: variance of s^2 {var}");
    }
}

/// Every example (`examples/`, `tests/fixtures/spec-examples/`) analysed through the JSON pipeline
/// gets a theory block: the mean-field fields for plain dense stacks, the Pascanu bound for
/// recurrent layers, notes for what is not covered — and never a panic.
#[test]
fn every_example_gets_a_theory_block() {
    use gradscope::analysis::pipeline::{analyze, parse_body, AnalyzeOptions};
    use gradscope::spec::Limits;
    let mut files = Vec::new();
    for dir in [common::root().join("examples"), common::root().join("tests/fixtures/spec-examples")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")));
        }
    }
    assert!(!files.is_empty());
    files.sort();
    for path in files {
        let body = std::fs::read(&path).unwrap();
        let options = AnalyzeOptions { limits: &Limits::default(), gradients: false };
        let report =
            parse_body(&body).and_then(|spec| analyze(&spec, &options)).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let t = report.theory.unwrap_or_else(|| panic!("{path:?}: no theory"));
        let json = serde_json::to_value(&t).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        eprintln!("{name}: {}", serde_json::to_string(&json).unwrap().chars().take(900).collect::<String>());
        let kinds: Vec<&str> = report.layers.iter().map(|l| l.kind.name()).collect();
        if kinds.contains(&"rnn") {
            assert!(!t.recurrent.is_empty(), "{name}: recurrent layers without bounds");
            if let Some(vanilla) = t.recurrent.iter().find(|r| r.cell == "vanilla") {
                assert!((vanilla.pascanu_bound_factor - vanilla.gamma * vanilla.sigma_max).abs() < 1e-12);
            }
        } else {
            // Covered (a plain dense stack): the mean-field fields; otherwise a note says why not.
            let covered = t.chi1.is_some() && t.phase.is_some() && t.profile.is_some();
            assert!(covered || !t.notes.is_empty(), "{name}: neither theory nor a note");
            if ["deep-sigmoid.json", "relu-he-30.json", "tanh-xavier.json", "small-init.json"].contains(&name.as_str())
            {
                assert!(covered, "{name}: {:?}", t.notes);
            }
        }
        if name == "rnn-exploding.json" {
            assert!((t.recurrent[0].sigma_max - 1.5).abs() < 1e-9, "1.5 x orthogonal");
            assert_eq!(t.recurrent[0].vanishing_guaranteed, Some(false));
        }
        let mut numbers = Vec::new();
        common::numbers(&json, &mut numbers);
        assert!(numbers.iter().all(|v| v.is_finite()), "{name}: non-finite number");
    }
}

/// The same stack on inputs of (nearly) equal length, N(0, I) in 32 dimensions: every sample
/// starts the map at the same q_1, so equal weighting of the samples is exact and the prediction
/// is tighter — within 0.1 at every layer (spirals, whose radii vary from 0 to 1, need the 0.2).
#[test]
fn tanh_profile_matches_length_map_closely_for_gaussian_inputs() {
    let (depth, width, batch, seeds) = (20, 512, 128, 5u64);
    for sigma_w2 in [0.5, 1.0, 1.5] {
        let profiles: Vec<TheoryProfile> = (0..seeds)
            .map(|seed| {
                let c = config(seed, 32, mlp(depth, width, Activation::Tanh, sigma_w2, 2), teacher(32), batch);
                theory_of(&c, batch).profile.expect("profile")
            })
            .collect();
        let (predicted, measured) = mean_profile(&profiles, depth);
        let worst = (0..depth).map(|l| (measured[l] - predicted[l]).abs()).fold(0.0, f64::max);
        eprintln!(
            "tanh sigma_w^2 {sigma_w2}, gaussian inputs: ln(delta_0/delta_L) predicted {:.4}, measured {:.4}; max \
             |deviation| {worst:.4}",
            predicted[0], measured[0]
        );
        assert!(worst < 0.1, "sigma_w^2 {sigma_w2}: predicted {predicted:?}, measured {measured:?}");
    }
}

/// The map is per layer: a stack alternating tanh and ReLU layers with dropout (p = 0.2) after
/// each, probed at step 0 of a training run (dropout active, so each dropout scales the squared
/// gradient it passes back by 1/(1-p)), follows the prediction within max(10%, 0.2).
#[test]
fn mixed_activations_with_dropout_follow_the_per_layer_map() {
    use gradscope::engine::train::{train, CancelFlag};
    let (depth, width, batch, seeds) = (12, 512, 128, 3u64);
    let mut layers = Vec::new();
    for k in 0..depth {
        let (act, init) = if k % 2 == 0 {
            (Activation::Tanh, Init::LecunNormal { gain: 1.1, mode: FanMode::FanIn })
        } else {
            (Activation::Relu, Init::HeNormal { gain: 1.0, mode: FanMode::FanIn })
        };
        layers.push(dense(width, act, init));
        layers.push(LayerConfig::Dropout { rate: 0.2 });
    }
    layers.push(dense(2, Activation::Linear, Init::XavierUniform { gain: 1.0 }));
    let profiles: Vec<TheoryProfile> = (0..seeds)
        .map(|seed| {
            let c = config(seed, 32, layers.clone(), teacher(32), batch);
            let record = train(&c, &CancelFlag::new(), &mut |_| {}).expect("valid config");
            let t = theory_at_init(&c, &record, StepZero::Train);
            assert!(t.notes.iter().any(|n| n.contains("activation")), "mixed activations are noted: {:?}", t.notes);
            t.profile.expect("profile")
        })
        .collect();
    let (predicted, measured) = mean_profile(&profiles, depth);
    let worst = (0..depth).map(|l| (measured[l] - predicted[l]).abs()).fold(0.0, f64::max);
    eprintln!(
        "tanh/relu + dropout 0.2: ln(delta_0/delta_L) predicted {:.4}, measured {:.4}; max |deviation| {worst:.4}",
        predicted[0], measured[0]
    );
    for l in 0..depth {
        let (p, m) = (predicted[l], measured[l]);
        assert!((m - p).abs() <= (0.1 * p.abs()).max(0.2), "layer {l}: measured {m:.4}, predicted {p:.4}");
    }
}
