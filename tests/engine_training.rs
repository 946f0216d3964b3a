//! The training loop's promises: determinism, cancellation within one step, clean ends on
//! non-finite values, and probes where the spec asks for them.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use gradscope::engine::config::*;
use gradscope::engine::train::{train, CancelFlag, RunEnd};

fn config(steps: usize, lr: f64, every: usize) -> RunConfig {
    let dense = |units, activation| {
        LayerConfig::Dense(DenseConfig {
            units,
            activation,
            init: Init::HeNormal { gain: 1.0, mode: FanMode::FanIn },
            bias_init: Init::Constant { value: 0.0 },
            norm: None,
            norm_config: NormConfig::default(),
            params: Default::default(),
        })
    };
    RunConfig {
        seed: 9,
        network: NetworkConfig {
            input_dim: 2,
            layers: vec![
                dense(32, Activation::Relu),
                LayerConfig::Dropout { rate: 0.2 },
                LayerConfig::Residual(vec![dense(32, Activation::Tanh)]),
                dense(2, Activation::Linear),
            ],
        },
        data: DataConfig::Moons { samples: 300, noise: 0.1 },
        training: TrainConfig {
            steps,
            batch_size: 32,
            loss: LossKind::CrossEntropy,
            optimizer: OptimizerConfig::Sgd { lr, momentum: 0.9, dampening: 0.0, nesterov: false },
            schedule: gradscope::engine::config::Schedule::Constant,
            weight_decay: 0.0,
            clip: None,
            shuffle: true,
            precision: Precision::F32,
            validation_split: 0.2,
            standardize: false,
            bptt_truncate: None,
        },
        probes: ProbeConfig { every, histograms: true, parameters: true },
    }
}

#[test]
fn same_config_and_seed_give_bit_identical_records() {
    let c = config(60, 0.05, 7);
    let mut a = train(&c, &CancelFlag::new(), &mut |_| {}).expect("runs");
    let mut b = train(&c, &CancelFlag::new(), &mut |_| {}).expect("runs");
    a.duration_ms = 0;
    b.duration_ms = 0;
    assert_eq!(a, b);
    let mut other = c.clone();
    other.seed += 1;
    let o = train(&other, &CancelFlag::new(), &mut |_| {}).expect("runs");
    assert_ne!(a.loss, o.loss, "a different seed changes the run");
}

#[test]
fn probes_are_taken_at_step_zero_every_k_and_the_last_step() {
    let r = train(&config(23, 0.05, 10), &CancelFlag::new(), &mut |_| {}).expect("runs");
    assert_eq!(r.steps, vec![0, 10, 20, 22]);
    for s in &r.layer_stats {
        assert_eq!(s.delta_norm.len(), 4);
        assert_eq!(s.activation_std.len(), 4);
    }
    assert!(r.val_loss.iter().all(Option::is_some), "validation split is evaluated at each probe");
    assert!(r.parameters.is_some());
}

#[test]
fn cancel_running_job_stops_within_one_step() {
    let flag = CancelFlag::new();
    let seen = AtomicUsize::new(0);
    let r = train(&config(10_000, 0.05, 100), &flag, &mut |p| {
        seen.store(p.step, Ordering::Relaxed);
        if p.step == 5 {
            flag.cancel();
        }
    })
    .expect("runs");
    assert_eq!(r.end, RunEnd::Cancelled { step: 5 });
    assert_eq!(r.steps_run, 5);
    assert_eq!(seen.load(Ordering::Relaxed), 5);
}

#[test]
fn huge_learning_rate_ends_cleanly_as_non_finite_with_the_probes_so_far() {
    let r = train(&config(500, 1e12, 1), &CancelFlag::new(), &mut |_| {}).expect("runs");
    let RunEnd::NonFinite { step, layer, location } = &r.end else { panic!("expected non-finite, got {:?}", r.end) };
    assert!(*step < 500);
    assert!(!layer.is_empty() && !location.is_empty());
    assert_eq!(*r.steps.last().expect("probes"), *step, "the failing step is probed");
    assert_eq!(r.steps_run, *step, "no update is made from a non-finite gradient");
}
