//! The optimisers' unit tests: each update rule against a hand-computed step, torch.optim's
//! conventions, schedules and clipping.

use super::*;

/// Runs `grads.len()` steps on a single slot starting from `p0` and returns the parameters.
/// The gradients are given, not recomputed from the parameters, so each expected value can
/// be derived by hand from the update rule alone.
fn run<T: Scalar>(config: OptimizerConfig, wd: f64, p0: &[T], grads: &[Vec<T>]) -> Vec<T> {
    let mut opt = Optimizer::<T>::new(config, wd);
    let mut p = p0.to_vec();
    for g in grads {
        opt.step(&mut [ParamSlot { value: &mut p, grad: g }]).unwrap();
    }
    assert_eq!(opt.steps_taken(), grads.len());
    p
}

fn assert_close(got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(1e-300);
    assert!((got - want).abs() <= tol, "got {got:e}, want {want:e} (rel tol {rel:e})");
}

fn assert_all_close(got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len());
    for (&g, &w) in got.iter().zip(want) {
        assert_close(g, w, rel);
    }
}

fn sgd(lr: f64, momentum: f64, dampening: f64, nesterov: bool) -> OptimizerConfig {
    OptimizerConfig::Sgd { lr, momentum, dampening, nesterov }
}

fn adam(lr: f64, amsgrad: bool) -> OptimizerConfig {
    OptimizerConfig::Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad }
}

fn adamw(lr: f64, amsgrad: bool) -> OptimizerConfig {
    OptimizerConfig::AdamW { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad }
}

#[test]
fn sgd_one_step_is_p_minus_lr_g() {
    // p1 = p0 - lr * g = [1 - 0.1*0.5, -2 - 0.1*0.25, 3 - 0.1*(-4)] = [0.95, -2.025, 3.4].
    let p = run(sgd(0.1, 0.0, 0.0, false), 0.0, &[1.0, -2.0, 3.0], &[vec![0.5, 0.25, -4.0]]);
    assert_all_close(&p, &[0.95, -2.025, 3.4], 1e-15);
}

#[test]
fn sgd_momentum_two_steps() {
    // momentum 0.9, lr 0.1, p0 = 1, g1 = 1, g2 = 0.5.
    // step 1: buf = g1 = 1 (buffer starts as the gradient); p1 = 1 - 0.1*1 = 0.9.
    // step 2: buf = 0.9*1 + 0.5 = 1.4; p2 = 0.9 - 0.1*1.4 = 0.76.
    let p = run(sgd(0.1, 0.9, 0.0, false), 0.0, &[1.0], &[vec![1.0], vec![0.5]]);
    assert_all_close(&p, &[0.76], 1e-15);
}

#[test]
fn sgd_dampening_skips_the_first_step() {
    // As above with dampening 0.5: the first buffer is the raw gradient (torch does not
    // dampen it), so p1 = 0.9 still.
    // step 2: buf = 0.9*1 + (1-0.5)*0.5 = 1.15; p2 = 0.9 - 0.1*1.15 = 0.785.
    let p = run(sgd(0.1, 0.9, 0.5, false), 0.0, &[1.0], &[vec![1.0], vec![0.5]]);
    assert_all_close(&p, &[0.785], 1e-15);
}

#[test]
fn sgd_nesterov_two_steps() {
    // momentum 0.9, lr 0.1, p0 = 1, g1 = 1, g2 = 0.5, nesterov.
    // step 1: buf = 1; d = g + 0.9*buf = 1.9; p1 = 1 - 0.19 = 0.81.
    // step 2: buf = 0.9*1 + 0.5 = 1.4; d = 0.5 + 0.9*1.4 = 1.76; p2 = 0.81 - 0.176 = 0.634.
    let p = run(sgd(0.1, 0.9, 0.0, true), 0.0, &[1.0], &[vec![1.0], vec![0.5]]);
    assert_all_close(&p, &[0.634], 1e-15);
}

#[test]
fn sgd_weight_decay_is_added_to_the_gradient() {
    // wd 0.5, lr 0.1, p0 = 2, g = 1: g' = 1 + 0.5*2 = 2; p1 = 2 - 0.1*2 = 1.8.
    let p = run(sgd(0.1, 0.0, 0.0, false), 0.5, &[2.0], &[vec![1.0]]);
    assert_all_close(&p, &[1.8], 1e-15);
}

#[test]
fn adam_first_step_moves_by_lr_times_sign() {
    // Step 1: m = (1-b1) g, v = (1-b2) g^2, bias corrections 1-b1 and 1-b2, so
    // denom = sqrt((1-b2) g^2)/sqrt(1-b2) + eps = |g| + eps and
    // p1 = p0 - lr/(1-b1) * (1-b1) g / (|g| + eps) = p0 - lr * g / (|g| + eps),
    // i.e. ~lr * sign(g) for |g| >> eps, whatever the gradient's scale. A zero gradient
    // gives m = 0 and no move.
    let (lr, eps) = (0.01, 1e-8);
    let g = [2.0, -0.5, 1e-3, 0.0];
    let p0 = [0.3, 0.3, -0.7, 1.5];
    let p = run(adam(lr, false), 0.0, &p0, &[g.to_vec()]);
    let want: Vec<f64> = p0.iter().zip(&g).map(|(&p, &g): (&f64, &f64)| p - lr * g / (g.abs() + eps)).collect();
    assert_all_close(&p, &want, 1e-12);
    assert_eq!(p[3], 1.5);
    assert_close(p[0], 0.3 - 0.01, 1e-7);
    assert_close(p[1], 0.3 + 0.01, 1e-7);
}

#[test]
fn adam_first_step_in_f32() {
    // The same rule in f32, where torch also computes: p1 = p0 - lr * g/(|g| + eps).
    let p = run::<f32>(adam(0.01, false), 0.0, &[0.3, 0.3], &[vec![2.0, -0.5]]);
    assert!((p[0] - 0.29).abs() < 1e-6, "{}", p[0]);
    assert!((p[1] - 0.31).abs() < 1e-6, "{}", p[1]);
}

#[test]
fn adam_two_steps() {
    // b1 0.9, b2 0.999, eps 1e-8, lr 0.1, p0 = 0, g1 = 1, g2 = -1.
    // step 1: p1 = -lr * 1/(1 + eps) (first-step rule above).
    // step 2: m2 = 0.9*0.1 + 0.1*(-1) = -0.01; v2 = 0.999*0.001 + 0.001 = 0.001999;
    //   1 - b1^2 = 0.19; 1 - b2^2 = 0.001999, so sqrt(v2)/sqrt(1-b2^2) = 1 and
    //   p2 = p1 - (0.1/0.19) * (-0.01)/(1 + eps) = -(0.1 - 0.1/19)/(1 + eps)
    //      = -(0.1 * 18/19)/(1 + eps).
    let p = run(adam(0.1, false), 0.0, &[0.0], &[vec![1.0], vec![-1.0]]);
    assert_all_close(&p, &[-(0.1 * 18.0 / 19.0) / (1.0 + 1e-8)], 1e-9);
}

#[test]
fn amsgrad_uses_the_running_max_of_v() {
    // lr 0.1, p0 = 0, g1 = 1, g2 = 0: v1 = 0.001, v2 = 0.999*0.001 = 0.000999 < v1, so the
    // amsgrad denominator uses max(v) = 0.001 while plain Adam uses v2.
    // m2 = 0.9*0.1 = 0.09; step size 0.1/0.19; 1 - b2^2 = 0.001999.
    // p2 = p1 - (0.1/0.19) * 0.09 / (sqrt(v)/sqrt(0.001999) + 1e-8), p1 = -0.1/(1 + 1e-8).
    let p1 = -0.1 / (1.0 + 1e-8);
    let want = |v: f64| p1 - (0.1 / 0.19) * 0.09 / (v.sqrt() / 0.001999f64.sqrt() + 1e-8);
    let grads = [vec![1.0], vec![0.0]];
    let plain = run(adam(0.1, false), 0.0, &[0.0], &grads);
    let ams = run(adam(0.1, true), 0.0, &[0.0], &grads);
    assert_all_close(&plain, &[want(0.000999)], 1e-9);
    assert_all_close(&ams, &[want(0.001)], 1e-9);
    // The larger denominator makes the amsgrad step smaller.
    assert!((ams[0] - p1).abs() < (plain[0] - p1).abs());
}

#[test]
fn adamw_decay_is_decoupled_unlike_adam_l2() {
    // lr 0.1, wd 0.1, p0 = 1, zero gradient, one step.
    // AdamW: p *= 1 - lr*wd = 0.99 first; then m = v = 0 and the Adam part moves nothing:
    //   p1 = 0.99 (decay proportional to p, independent of the gradient history).
    // Adam + L2: g' = 0 + 0.1*1 = 0.1 enters the moments and is normalised like any
    //   gradient, so p1 = 1 - lr * 0.1/(0.1 + eps) ~= 0.9: ten times the AdamW move.
    let adamw_p = run(adamw(0.1, false), 0.1, &[1.0], &[vec![0.0]]);
    let adam_p = run(adam(0.1, false), 0.1, &[1.0], &[vec![0.0]]);
    assert_all_close(&adamw_p, &[0.99], 1e-15);
    assert_all_close(&adam_p, &[1.0 - 0.1 * 0.1 / (0.1 + 1e-8)], 1e-12);

    // With a gradient the decoupled decay comes first, then the first-step Adam move:
    // p1 = 0.99 - lr * g/(|g| + eps) with g = 2 (the decay does not enter m or v).
    let adamw_g = run(adamw(0.1, false), 0.1, &[1.0], &[vec![2.0]]);
    assert_all_close(&adamw_g, &[0.99 - 0.1 * 2.0 / (2.0 + 1e-8)], 1e-12);
}

#[test]
fn adagrad_two_steps() {
    // lr 0.1, lr_decay 0.5, eps 1e-10, initial accumulator 0.1, p0 = 1, g1 = 1, g2 = 2.
    // step 1: clr = 0.1/(1 + 0*0.5) = 0.1; sum = 0.1 + 1 = 1.1;
    //   p1 = 1 - 0.1*1/(sqrt(1.1) + 1e-10) = 0.90465374108...
    // step 2: clr = 0.1/(1 + 1*0.5) = 0.1/1.5; sum = 1.1 + 4 = 5.1;
    //   p2 = p1 - (0.1/1.5)*2/(sqrt(5.1) + 1e-10) = 0.84561274871...
    let config = OptimizerConfig::Adagrad { lr: 0.1, lr_decay: 0.5, eps: 1e-10, initial_accumulator_value: 0.1 };
    let p1 = 1.0 - 0.1 / (1.1f64.sqrt() + 1e-10);
    let p2 = p1 - (0.1 / 1.5) * 2.0 / (5.1f64.sqrt() + 1e-10);
    assert_close(p1, 0.904_653_741_084_531_7, 1e-15);
    assert_close(p2, 0.845_612_748_717_806_3, 1e-15);
    let p = run(config, 0.0, &[1.0], &[vec![1.0], vec![2.0]]);
    assert_all_close(&p, &[p2], 1e-14);
}

#[test]
fn rmsprop_two_steps() {
    // alpha 0.99, eps 1e-8, lr 0.01, p0 = 1, g1 = 1, g2 = -2, no momentum, not centered.
    // step 1: sq = 0.01*1 = 0.01; avg = sqrt(0.01) + 1e-8 = 0.1 + 1e-8;
    //   p1 = 1 - 0.01*1/(0.1 + 1e-8) = 0.90000001...
    // step 2: sq = 0.99*0.01 + 0.01*4 = 0.0499; avg = sqrt(0.0499) + 1e-8;
    //   p2 = p1 + 0.01*2/avg = 0.98953230...
    let config = OptimizerConfig::Rmsprop { lr: 0.01, alpha: 0.99, eps: 1e-8, momentum: 0.0, centered: false };
    let p1 = 1.0 - 0.01 / (0.1 + 1e-8);
    let p2 = p1 + 0.02 / (0.0499f64.sqrt() + 1e-8);
    assert_close(p2, 0.989_532_302_199_152_2, 1e-15);
    let p = run(config, 0.0, &[1.0], &[vec![1.0], vec![-2.0]]);
    assert_all_close(&p, &[p2], 1e-13);
}

#[test]
fn rmsprop_centered_momentum_two_steps() {
    // alpha 0.9, eps 1e-8, lr 0.01, momentum 0.5, centered; p0 = 1, g1 = 1, g2 = 3.
    // step 1: sq = 0.1*1 = 0.1; ga = lerp(0, 1, 0.1) = 0.1; avg = sqrt(0.1 - 0.01) + eps
    //   = 0.3 + eps; buf = 0*0.5 + 1/avg; p1 = 1 - 0.01*buf = 0.96666666...
    // step 2: sq = 0.9*0.1 + 0.1*9 = 0.99; ga = 0.1 + 0.1*(3 - 0.1) = 0.39;
    //   avg = sqrt(0.99 - 0.39^2) + eps = sqrt(0.8379) + eps; buf = 0.5*buf1 + 3/avg;
    //   p2 = p1 - 0.01*buf = 0.91722632...
    let config = OptimizerConfig::Rmsprop { lr: 0.01, alpha: 0.9, eps: 1e-8, momentum: 0.5, centered: true };
    let buf1 = 1.0 / (0.3 + 1e-8);
    let p1 = 1.0 - 0.01 * buf1;
    let buf2 = 0.5 * buf1 + 3.0 / (0.8379f64.sqrt() + 1e-8);
    let p2 = p1 - 0.01 * buf2;
    assert_close(p2, 0.917_226_325_757_481_5, 1e-14);
    let p = run(config, 0.0, &[1.0], &[vec![1.0], vec![3.0]]);
    assert_all_close(&p, &[p2], 1e-12);
}

#[test]
fn zero_gradient_leaves_params_unchanged_without_decay() {
    // Every rule's step is proportional to the (decayed) gradient or to state built from
    // it, so with g = 0 and wd = 0 the parameters stay bit-identical over several steps
    // (Adagrad and RMSprop divide 0 by eps; Adam divides m = 0 by eps).
    let rms = |momentum, centered| OptimizerConfig::Rmsprop { lr: 0.01, alpha: 0.99, eps: 1e-8, momentum, centered };
    let configs = [
        sgd(0.1, 0.0, 0.0, false),
        sgd(0.1, 0.9, 0.1, true),
        rms(0.0, false),
        rms(0.9, true),
        OptimizerConfig::Adagrad { lr: 0.1, lr_decay: 0.0, eps: 1e-10, initial_accumulator_value: 0.0 },
        adam(0.1, true),
        adamw(0.1, false),
    ];
    let p0 = [0.5, -1.25, 3.0];
    for config in configs {
        let p = run(config, 0.0, &p0, &[vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]]);
        assert_eq!(p, p0, "{config:?}");
    }
    // With decay only AdamW moves without a gradient signal through the moments:
    // two steps of p *= 1 - lr*wd = 0.99.
    let p = run(adamw(0.1, false), 0.1, &[2.0], &[vec![0.0], vec![0.0]]);
    assert_all_close(&p, &[2.0 * 0.99 * 0.99], 1e-15);
}

#[test]
fn step_does_not_reallocate_state_after_the_first_call() {
    // The state buffers are created on the first step; later steps must reuse them, so
    // their addresses and capacities never change.
    let rms = OptimizerConfig::Rmsprop { lr: 0.01, alpha: 0.99, eps: 1e-8, momentum: 0.9, centered: true };
    for config in [adam(0.01, true), rms, sgd(0.1, 0.9, 0.0, false)] {
        let mut opt = Optimizer::<f32>::new(config, 0.01);
        let (mut a, mut b) = (vec![0.5f32; 7], vec![-0.25f32; 3]);
        let (ga, gb) = (vec![0.1f32; 7], vec![0.2f32; 3]);
        opt.step(&mut [ParamSlot { value: &mut a, grad: &ga }, ParamSlot { value: &mut b, grad: &gb }]).unwrap();
        let snapshot = |opt: &Optimizer<f32>| -> Vec<(*const f32, usize)> {
            opt.slots.iter().flat_map(|s| [&s.first, &s.second, &s.third]).map(|v| (v.as_ptr(), v.capacity())).collect()
        };
        let before = snapshot(&opt);
        for _ in 0..5 {
            opt.step(&mut [ParamSlot { value: &mut a, grad: &ga }, ParamSlot { value: &mut b, grad: &gb }]).unwrap();
        }
        assert_eq!(snapshot(&opt), before, "{config:?}");
        assert_eq!(opt.steps_taken(), 6);
        assert_eq!(opt.slots.len(), 2);
    }
}

/// Measuring the update (block by block, across block boundaries) changes nothing and
/// reports exactly the squared change, for every rule and its stateful variants.
#[test]
fn step_measured_matches_step_and_measures_the_change() {
    let configs = [
        sgd(0.1, 0.0, 0.0, false),
        sgd(0.1, 0.9, 0.1, true),
        OptimizerConfig::Rmsprop { lr: 0.01, alpha: 0.99, eps: 1e-8, momentum: 0.5, centered: true },
        OptimizerConfig::Adagrad { lr: 0.1, lr_decay: 0.01, eps: 1e-10, initial_accumulator_value: 0.1 },
        adam(0.01, true),
        adamw(0.01, false),
    ];
    let lens = [MEASURE_BLOCK * 2 + 37, 5];
    let init = |n: usize, k: f32| (0..n).map(|i| (i as f32 * 0.37 + k).sin()).collect::<Vec<f32>>();
    for config in configs {
        let (mut plain, mut measured) = (Optimizer::<f32>::new(config, 0.01), Optimizer::<f32>::new(config, 0.01));
        let mut a: Vec<Vec<f32>> = lens.iter().map(|&n| init(n, 0.0)).collect();
        let mut b = a.clone();
        for step in 0..3 {
            let grads: Vec<Vec<f32>> = lens.iter().map(|&n| init(n, 1.0 + step as f32)).collect();
            let before = b.clone();
            let mut slots: Vec<ParamSlot<'_, f32>> =
                a.iter_mut().zip(&grads).map(|(p, g)| ParamSlot { value: p, grad: g }).collect();
            plain.step(&mut slots).unwrap();
            let mut slots: Vec<ParamSlot<'_, f32>> =
                b.iter_mut().zip(&grads).map(|(p, g)| ParamSlot { value: p, grad: g }).collect();
            let mut update_sq = [0.0; 2];
            measured.step_measured(&mut slots, &mut update_sq).unwrap();
            assert_eq!(a, b, "{config:?}");
            for ((after, before), sq) in b.iter().zip(&before).zip(update_sq) {
                let want: f64 = after.iter().zip(before).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
                // Summed in f32 blocks, as probe statistics are (scalar::diff_sq).
                assert_close(sq, want, 1e-5);
            }
        }
    }
}

#[test]
fn steps_taken_and_learning_rate() {
    let mut opt = Optimizer::<f64>::new(adamw(3e-4, false), 0.01);
    assert_eq!(opt.steps_taken(), 0);
    assert_eq!(opt.learning_rate(), 3e-4);
    let mut p = vec![1.0];
    opt.step(&mut [ParamSlot { value: &mut p, grad: &[0.5] }]).unwrap();
    assert_eq!(opt.steps_taken(), 1);
}

/// A schedule's factor scales the step as a torch scheduler's `lr` does: SGD moves by
/// `factor * lr * g`; Adam's step is `factor * lr * m_hat / (sqrt(v_hat) + eps)`, its bias
/// corrections counting every update whatever the factor.
#[test]
fn the_lr_factor_scales_each_update_like_a_torch_scheduler() {
    let mut opt = Optimizer::<f64>::new(sgd(0.1, 0.0, 0.0, false), 0.0);
    let mut p = vec![1.0];
    opt.set_lr_factor(0.25);
    opt.step(&mut [ParamSlot { value: &mut p, grad: &[2.0] }]).unwrap();
    // 1 - 0.25 * 0.1 * 2 = 0.95.
    assert_close(p[0], 0.95, 1e-15);
    // Adam, update 2 at factor 0.5 after update 1 at factor 1, constant gradient g = 1:
    // m_hat = v_hat = 1 at every update, so each moves by factor * lr / (1 + eps).
    let mut opt = Optimizer::<f64>::new(adamw(0.01, false), 0.0);
    let mut p = vec![0.0];
    opt.step(&mut [ParamSlot { value: &mut p, grad: &[1.0] }]).unwrap();
    opt.set_lr_factor(0.5);
    opt.step(&mut [ParamSlot { value: &mut p, grad: &[1.0] }]).unwrap();
    assert_close(p[0], -(0.01 + 0.005) / (1.0 + 1e-8), 1e-12);
}

/// Warm-up is `(s + 1) / W` for the first `W` updates, then 1; cosine decays from 1 after
/// its warm-up to (1 + cos(pi (S - 1 - W) / (S - W))) / 2 at the last update.
#[test]
fn schedules_give_the_documented_factors() {
    use crate::engine::config::Schedule;
    let warm = Schedule::Warmup { warmup_steps: 4 };
    let f: Vec<f64> = (0..6).map(|s| warm.factor(s, 10)).collect();
    assert_eq!(f, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    assert_eq!(Schedule::Constant.factor(7, 10), 1.0);
    let cos = Schedule::Cosine { warmup_steps: 2 };
    assert_eq!((cos.factor(0, 10), cos.factor(1, 10), cos.factor(2, 10)), (0.5, 1.0, 1.0));
    // Halfway through the decay (s - W = 4 of 8): cos(pi / 2) = 0, factor 1/2.
    assert_close(cos.factor(6, 10), 0.5, 1e-15);
    let last = (1.0 + (std::f64::consts::PI * 7.0 / 8.0).cos()) / 2.0;
    assert_close(cos.factor(9, 10), last, 1e-15);
    assert!(cos.factor(9, 10) < 0.04);
}

#[test]
fn global_norm_is_the_l2_norm_of_all_entries() {
    // sqrt(3^2 + 4^2 + 12^2) = sqrt(169) = 13.
    let (a, b) = ([3.0f32], [4.0f32, 12.0]);
    assert_eq!(global_norm::<f32>(&[&a, &b]), 13.0);
    assert_eq!(global_norm::<f64>(&[]), 0.0);
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn global_norm_clip_scales_to_max_and_keeps_direction() {
    // Global norm of [3, 0] and [4] is 5 > max = 1, so every entry is multiplied by
    // 1/(5 + 1e-6): the norm after is 5/(5 + 1e-6) = 1 - 2e-7, within 1e-6 of max.
    let (mut a, mut b) = (vec![3.0, 0.0], vec![4.0]);
    let (before, after) = clip(&ClipConfig::GlobalNorm { max: 1.0 }, &mut [&mut a, &mut b]);
    assert_eq!(before, 5.0);
    assert_close(after, 1.0, 1e-6);
    assert_close(after, 5.0 / (5.0 + 1e-6), 1e-15);
    let flat: Vec<f64> = a.iter().chain(&b).copied().collect();
    assert_close(cosine(&flat, &[3.0, 0.0, 4.0]), 1.0, 1e-15);
    assert_all_close(&flat, &[0.6 / (1.0 + 2e-7), 0.0, 0.8 / (1.0 + 2e-7)], 1e-15);
}

#[test]
fn global_norm_clip_in_f32() {
    let (mut a, mut b) = (vec![30.0f32, -40.0], vec![0.5f32]);
    let norm0 = (2500.0f64 + 0.25).sqrt();
    let (before, after) = clip(&ClipConfig::GlobalNorm { max: 2.0 }, &mut [&mut a, &mut b]);
    assert_close(before, norm0, 1e-7);
    assert_close(after, 2.0, 1e-6);
    let got: Vec<f64> = a.iter().chain(&b).map(|&x| f64::from(x)).collect();
    assert_close(cosine(&got, &[30.0, -40.0, 0.5]), 1.0, 1e-6);
}

#[test]
fn global_norm_clip_below_max_changes_nothing() {
    // Norm 5 <= max 10: clip_coef = 10/(5 + 1e-6) > 1 is clamped to 1.0, and multiplying by
    // 1.0 is exact.
    let (mut a, mut b) = (vec![3.0, 0.0], vec![-4.0]);
    let (before, after) = clip(&ClipConfig::GlobalNorm { max: 10.0 }, &mut [&mut a, &mut b]);
    assert_eq!((before, after), (5.0, 5.0));
    assert_eq!((a, b), (vec![3.0, 0.0], vec![-4.0]));
}

#[test]
fn global_norm_clip_at_exactly_max_scales_like_torch() {
    // torch always multiplies by min(1, max/(norm + 1e-6)); at norm == max that is
    // 5/(5 + 1e-6) < 1, so the gradient shrinks by 2e-7 relative (not left alone).
    let mut a = vec![3.0, 4.0];
    let (before, after) = clip(&ClipConfig::GlobalNorm { max: 5.0 }, &mut [&mut a]);
    assert_eq!(before, 5.0);
    assert!(after < 5.0);
    assert_close(after, 5.0 * 5.0 / (5.0 + 1e-6), 1e-15);
}

#[test]
fn value_clip_clamps_each_entry() {
    // Clamp to [-1, 1]: [-3, 0.5] -> [-1, 0.5]; [2, -0.25, 1] -> [1, -0.25, 1].
    let (mut a, mut b) = (vec![-3.0, 0.5], vec![2.0, -0.25, 1.0]);
    let (before, after) = clip(&ClipConfig::Value { max: 1.0 }, &mut [&mut a, &mut b]);
    assert_eq!(a, vec![-1.0, 0.5]);
    assert_eq!(b, vec![1.0, -0.25, 1.0]);
    // Norms: sqrt(9 + 0.25 + 4 + 0.0625 + 1) and sqrt(1 + 0.25 + 1 + 0.0625 + 1).
    assert_close(before, 14.3125f64.sqrt(), 1e-15);
    assert_close(after, 3.3125f64.sqrt(), 1e-15);
}

#[test]
fn value_clip_keeps_nan() {
    let mut a = vec![f32::NAN, 5.0];
    let _ = clip(&ClipConfig::Value { max: 1.0 }, &mut [&mut a]);
    assert!(a[0].is_nan());
    assert_eq!(a[1], 1.0);
}

#[test]
fn lerp_matches_atens_two_branches() {
    // Small weight: start + w*(end - start); large weight: end - (end - start)*(1 - w).
    // Both are exact at their own end: lerp(a, b, 0) = a and lerp(a, b, 1) = b.
    assert_eq!(lerp(0.3f64, 0.7, 0.0), 0.3);
    assert_eq!(lerp(0.3f64, 0.7, 1.0), 0.7);
    assert_close(lerp(0.0f64, 1.0, 0.1), 0.1, 1e-15);
    assert_close(lerp(2.0f64, 4.0, 0.75), 3.5, 1e-15);
}
