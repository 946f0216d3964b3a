//! Optimisers (SGD, RMSprop, Adagrad, Adam, AdamW) and gradient clipping, with PyTorch 2.x's
//! update rules.
//!
//! This module owns the optimiser state (momentum buffers, moment estimates, accumulators and
//! the step count) and the two clipping modes of `torch.nn.utils` (`clip_grad_norm_`,
//! `clip_grad_value_`). It knows nothing about layers: a caller hands it flat parameter slices
//! and their gradients, in the same order on every step.
//!
//! Like the rest of the engine it is pure: it must not depend on serde, I/O, threads or any
//! other module of this crate beyond `engine::config` and `engine::scalar`.
//!
//! # Matching PyTorch
//! Each rule follows the single-tensor ("for-loop", `foreach=False`) implementation in
//! `torch/optim/*.py` of PyTorch 2.x operation by operation, and in the same order, because
//! floating-point results depend on the order of operations:
//! - element-wise arithmetic is done in `T`, the parameter dtype, as torch does; every Python
//!   float hyper-parameter is converted to `T` at the point where torch converts it (ATen casts a
//!   scalar operand to the tensor's dtype);
//! - quantities that torch computes as Python floats (`1 - beta ** step`, `lr / bias_correction`,
//!   Adagrad's decayed `clr`, `1 - lr * weight_decay`) are computed in `f64` and converted once;
//! - ATen's kernels are mirrored in their operand order: `add(x, alpha=a)` is `self + a * x`,
//!   `addcmul(t1, t2, value=v)` is `self + v * t1 * t2`, `addcdiv(t1, t2, value=v)` is
//!   `self + v * t1 / t2`, and `lerp` uses ATen's two-branch form (see [`lerp`]).
//!
//! What cannot be mirrored exactly: ATen's vectorised CPU kernels fuse some multiply-adds (the
//! `add`-with-alpha and `lerp` kernels call `vec::fmadd`), while this code rounds after every
//! operation. Results therefore agree with torch to a few ulps per step, not bit for bit.

use super::config::{ClipConfig, OptimizerConfig};
use super::scalar::{diff_sq, sum_sq, Scalar};
use super::{EngineError, Result};

/// One parameter tensor as the optimiser sees it: contiguous values and their gradient, same
/// length.
#[derive(Debug)]
pub struct ParamSlot<'a, T> {
    /// Parameter values, updated in place.
    pub value: &'a mut [T],
    /// Gradient of the loss with respect to `value` (after any clipping).
    pub grad: &'a [T],
}

/// Per-slot optimiser state. Which buffers are used depends on the rule; an unused buffer is an
/// empty `Vec` (no allocation), and the update loops rely on that: a buffer is non-empty exactly
/// when its variant is on.
#[derive(Debug, Clone)]
struct SlotState<T> {
    /// Number of parameters in the slot when the state was created.
    len: usize,
    /// SGD / RMSprop `momentum_buffer`, Adam `exp_avg`.
    first: Vec<T>,
    /// RMSprop `square_avg`, Adagrad `sum`, Adam `exp_avg_sq`.
    second: Vec<T>,
    /// RMSprop `grad_avg` (centered only), Adam `max_exp_avg_sq` (amsgrad only).
    third: Vec<T>,
}

/// Elements per block of [`Optimizer::step_measured`]: the block's old values (4 or 8 KiB) stay in
/// L1 until the block's change is summed.
pub const MEASURE_BLOCK: usize = 1024;

/// The state buffers of a range of one slot's elements; a buffer whose variant is off is empty.
struct StateParts<'a, T> {
    first: &'a mut [T],
    second: &'a mut [T],
    third: &'a mut [T],
}

impl<T> SlotState<T> {
    /// The elements `range` of every buffer that is on.
    fn parts(&mut self, range: std::ops::Range<usize>) -> StateParts<'_, T> {
        fn part<T>(buf: &mut [T], range: std::ops::Range<usize>) -> &mut [T] {
            if buf.is_empty() {
                buf
            } else {
                buf.get_mut(range).unwrap_or_default()
            }
        }
        StateParts {
            first: part(&mut self.first, range.clone()),
            second: part(&mut self.second, range.clone()),
            third: part(&mut self.third, range),
        }
    }
}

/// Applies an elementwise update `rule(values, grads, state)` to one slot: in one call, or, when
/// `measure` is given, block by block, summing the squared change of each block into it.
fn update_slot<T: Scalar>(
    slot: &mut ParamSlot<'_, T>,
    st: &mut SlotState<T>,
    measure: Option<&mut f64>,
    rule: impl Fn(&mut [T], &[T], StateParts<'_, T>),
) {
    let n = slot.value.len();
    let Some(total) = measure else {
        rule(slot.value, slot.grad, st.parts(0..n));
        return;
    };
    *total = 0.0;
    let mut before = [T::zero(); MEASURE_BLOCK];
    for start in (0..n).step_by(MEASURE_BLOCK) {
        let range = start..(start + MEASURE_BLOCK).min(n);
        let old = &mut before[..range.len()];
        let (Some(value), Some(grad)) = (slot.value.get_mut(range.clone()), slot.grad.get(range.clone())) else {
            continue;
        };
        old.copy_from_slice(value);
        rule(value, grad, st.parts(range));
        *total += diff_sq(value, old);
    }
}

/// A PyTorch-compatible optimiser over a fixed list of parameter slots.
#[derive(Debug, Clone)]
pub struct Optimizer<T> {
    config: OptimizerConfig,
    weight_decay: f64,
    /// Per-slot state, created on the first [`Optimizer::step`].
    slots: Vec<SlotState<T>>,
    /// Whether `slots` has been created.
    ready: bool,
    /// torch's per-parameter `state["step"]`: updates applied since the state was created. All
    /// slots step together, so one counter stands for all of them.
    state_step: u64,
    /// Calls to [`Optimizer::step`].
    steps: usize,
    /// The schedule's factor on `lr` for the next updates ([`Optimizer::set_lr_factor`]).
    lr_factor: f64,
}

impl<T: Scalar> Optimizer<T> {
    /// `weight_decay` is the L2 coefficient: added to the gradient (grad + wd*param) for
    /// sgd/rmsprop/adagrad/adam, decoupled (param *= 1 - lr*wd) for AdamW, exactly as torch.optim
    /// does.
    pub fn new(config: OptimizerConfig, weight_decay: f64) -> Self {
        Optimizer { config, weight_decay, slots: Vec::new(), ready: false, state_step: 0, steps: 0, lr_factor: 1.0 }
    }

    /// Sets the factor on the configured learning rate for the next updates (a learning-rate
    /// schedule, `config::Schedule`); 1 until set. The rate of update `t` is `lr * factor`, as
    /// a torch scheduler sets `param_group["lr"]` before `step()`: Adam's bias corrections still
    /// count every update, and Adagrad's `lr_decay` applies on top.
    pub fn set_lr_factor(&mut self, factor: f64) {
        self.lr_factor = factor;
    }

    /// Applies one update to every slot. The slot list must be the same length and order on
    /// every call (state is per index, created lazily on the first call with the slot lengths).
    /// Must not allocate after the first call.
    ///
    /// A slot list whose shape differs from the first call's is a caller bug: debug builds
    /// panic; release builds start a fresh state for the new layout (as a new torch optimiser
    /// would) rather than index out of bounds.
    ///
    /// Fails only when the state cannot be allocated on the first call
    /// ([`EngineError::OutOfMemory`]); no parameter is changed then.
    pub fn step(&mut self, params: &mut [ParamSlot<'_, T>]) -> Result<()> {
        self.step_with(params, None)
    }

    /// [`Optimizer::step`], also setting `update_sq[i]` to the squared L2 norm of the change it
    /// made to slot `i`, `sum (p_after - p_before)^2` (summed as probe statistics are, see
    /// `scalar::diff_sq`; entries beyond `params.len()` are left alone). The slots are updated in blocks of [`MEASURE_BLOCK`] elements whose old
    /// values are kept in a stack buffer, so measuring needs no copy of the parameters and reads
    /// them while they are in L1. The update rules are elementwise, so the result is the same as
    /// [`Optimizer::step`]'s.
    pub fn step_measured(&mut self, params: &mut [ParamSlot<'_, T>], update_sq: &mut [f64]) -> Result<()> {
        self.step_with(params, Some(update_sq))
    }

    fn step_with(&mut self, params: &mut [ParamSlot<'_, T>], update_sq: Option<&mut [f64]>) -> Result<()> {
        if !self.layout_matches(params) {
            debug_assert!(!self.ready, "optimizer slot layout changed between steps");
            self.init_state(params)?;
        }
        self.steps += 1;
        self.state_step += 1;
        // torch keeps `step` in a float32 tensor and reads it back with `.item()`; integers up to
        // 2^24 are exact in both, so the f64 here is the same number.
        let step = self.state_step as f64;
        let first_step = self.state_step == 1;
        // torch only touches the gradient when `weight_decay != 0`.
        let wd = self.weight_decay;
        let l2 = (wd != 0.0).then(|| T::of(wd));

        // Slot `i` with its state and where its measured change goes.
        let mut measures = update_sq.map(|u| u.iter_mut());
        let mut slots = params.iter_mut().zip(self.slots.iter_mut()).map(move |(slot, st)| {
            let measure = measures.as_mut().and_then(Iterator::next);
            (slot, st, measure)
        });
        // x * 1.0 == x exactly: a constant schedule changes no bit of the update.
        let scaled = |lr: f64| lr * self.lr_factor;
        match self.config {
            OptimizerConfig::Sgd { lr, momentum, dampening, nesterov } => {
                let lr = scaled(lr);
                let h = SgdScalars {
                    neg_lr: T::of(-lr),
                    momentum: T::of(momentum),
                    one_minus_dampening: T::of(1.0 - dampening),
                    nesterov,
                    first_step,
                    l2,
                };
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| sgd_update(&h, p, g, st.first));
                }
            }
            OptimizerConfig::Rmsprop { lr, alpha, eps, momentum, centered: _ } => {
                let lr = scaled(lr);
                let h = RmspropScalars {
                    neg_lr: T::of(-lr),
                    alpha: T::of(alpha),
                    one_minus_alpha: T::of(1.0 - alpha),
                    eps: T::of(eps),
                    momentum: T::of(momentum),
                    l2,
                };
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| rmsprop_update(&h, p, g, st));
                }
            }
            OptimizerConfig::Adagrad { lr, lr_decay, eps, initial_accumulator_value: _ } => {
                // clr = lr / (1 + (step - 1) * lr_decay), a Python float in torch.
                let clr = scaled(lr) / (1.0 + (step - 1.0) * lr_decay);
                let h = AdagradScalars { neg_clr: T::of(-clr), eps: T::of(eps), l2 };
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| adagrad_update(&h, p, g, st.second));
                }
            }
            OptimizerConfig::Adam { lr, beta1, beta2, eps, amsgrad: _ } => {
                let h = AdamScalars::new(scaled(lr), beta1, beta2, eps, step, l2, None);
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| adam_update(&h, p, g, st));
                }
            }
            OptimizerConfig::AdamW { lr, beta1, beta2, eps, amsgrad: _ } => {
                // Decoupled decay: param.mul_(1 - lr * weight_decay), factor a Python float.
                // (torch >= 2.6 skips it when weight_decay == 0; older AdamW multiplied by
                // exactly 1.0, which is the same.)
                let lr = scaled(lr);
                let decay = (wd != 0.0).then(|| T::of(1.0 - lr * wd));
                let h = AdamScalars::new(lr, beta1, beta2, eps, step, None, decay);
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| adam_update(&h, p, g, st));
                }
            }
        }
        Ok(())
    }

    /// Number of calls to [`Optimizer::step`] so far.
    pub fn steps_taken(&self) -> usize {
        self.steps
    }

    /// The configured (base) learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self.config {
            OptimizerConfig::Sgd { lr, .. }
            | OptimizerConfig::Rmsprop { lr, .. }
            | OptimizerConfig::Adagrad { lr, .. }
            | OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. } => lr,
        }
    }

    /// Whether the state was built for exactly this list of slot lengths.
    fn layout_matches(&self, params: &[ParamSlot<'_, T>]) -> bool {
        self.ready
            && self.slots.len() == params.len()
            && self.slots.iter().zip(params).all(|(st, p)| st.len == p.value.len())
    }

    /// Allocates the per-slot buffers torch creates lazily on a parameter's first step; this is
    /// the only place the optimiser allocates. The buffers are reserved fallibly (they are as
    /// large as the parameters, up to three times over); on a failure the state stays unbuilt.
    fn init_state(&mut self, params: &[ParamSlot<'_, T>]) -> Result<()> {
        let filled = |on: bool, n: usize, value: T| -> Result<Vec<T>> {
            let mut v = Vec::new();
            if on {
                v.try_reserve_exact(n)
                    .map_err(|_| EngineError::out_of_memory(n, std::mem::size_of::<T>(), "the optimiser state"))?;
                v.resize(n, value);
            }
            Ok(v)
        };
        let zeros = |on: bool, n: usize| filled(on, n, T::zero());
        self.ready = false;
        self.slots = params
            .iter()
            .map(|p| {
                let n = p.value.len();
                let (first, second, third) = match self.config {
                    // SGD: momentum_buffer only with momentum. torch starts it as None and clones
                    // the first gradient into it; it is allocated here so that the first step
                    // copies instead of allocating.
                    OptimizerConfig::Sgd { momentum, .. } => (zeros(momentum != 0.0, n)?, Vec::new(), Vec::new()),
                    // RMSprop: square_avg = 0; momentum_buffer = 0 if momentum > 0;
                    // grad_avg = 0 if centered.
                    OptimizerConfig::Rmsprop { momentum, centered, .. } => {
                        (zeros(momentum > 0.0, n)?, zeros(true, n)?, zeros(centered, n)?)
                    }
                    // Adagrad: sum = full_like(p, initial_accumulator_value).
                    OptimizerConfig::Adagrad { initial_accumulator_value, .. } => {
                        (Vec::new(), filled(true, n, T::of(initial_accumulator_value))?, Vec::new())
                    }
                    // Adam / AdamW: exp_avg = 0, exp_avg_sq = 0, max_exp_avg_sq = 0 if amsgrad.
                    OptimizerConfig::Adam { amsgrad, .. } | OptimizerConfig::AdamW { amsgrad, .. } => {
                        (zeros(true, n)?, zeros(true, n)?, zeros(amsgrad, n)?)
                    }
                };
                Ok(SlotState { len: n, first, second, third })
            })
            .collect::<Result<_>>()?;
        self.ready = true;
        self.state_step = 0;
        Ok(())
    }
}

/// `grad.add(param, alpha=weight_decay)` when weight decay is on: `g + wd * p`.
#[inline]
fn with_l2<T: Scalar>(g: T, p: T, l2: Option<T>) -> T {
    match l2 {
        Some(wd) => g + wd * p,
        None => g,
    }
}

/// `torch.lerp(start, end, weight)` as ATen computes it (`aten/src/ATen/native/Lerp.h`): the
/// form is picked by `|weight| < 0.5` so that the result is exact at both ends.
#[inline]
fn lerp<T: Scalar>(start: T, end: T, weight: T) -> T {
    if weight.abs() < T::of(0.5) {
        start + weight * (end - start)
    } else {
        end - (end - start) * (T::one() - weight)
    }
}

/// `torch.maximum`: like `max`, but NaN-propagating (Rust's `Float::max` drops NaNs).
#[inline]
fn nan_max<T: Scalar>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        T::nan()
    } else if a > b {
        a
    } else {
        b
    }
}

/// SGD hyper-parameters in `T`, for one step.
struct SgdScalars<T> {
    neg_lr: T,
    momentum: T,
    one_minus_dampening: T,
    nesterov: bool,
    /// torch's momentum buffer is None before a parameter's first step.
    first_step: bool,
    l2: Option<T>,
}

/// `torch.optim.SGD`, `_single_tensor_sgd`:
/// ```text
/// g = g + wd * p                                   (if wd != 0)
/// if momentum != 0:
///     buf = g                                      (first step: clone, no dampening)
///     buf = momentum * buf + (1 - dampening) * g   (later: buf.mul_(momentum).add_(g, alpha=1-dampening))
///     g = g + momentum * buf if nesterov else buf
/// p = p + (-lr) * g                                (param.add_(g, alpha=-lr))
/// ```
fn sgd_update<T: Scalar>(h: &SgdScalars<T>, value: &mut [T], grad: &[T], buf: &mut [T]) {
    debug_assert_eq!(value.len(), grad.len(), "parameter and gradient lengths differ");
    // Plain SGD (no momentum, no weight decay): the same arithmetic as below, in a loop without
    // per-element branches, which the compiler vectorises.
    if buf.is_empty() && h.l2.is_none() {
        for (p, &g) in value.iter_mut().zip(grad) {
            *p += h.neg_lr * g;
        }
        return;
    }
    // `buf` is empty without momentum; `next()` then yields None for every element.
    let mut bufs = buf.iter_mut();
    for (p, &g) in value.iter_mut().zip(grad) {
        let g = with_l2(g, *p, h.l2);
        let d = match bufs.next() {
            Some(b) => {
                *b = if h.first_step { g } else { *b * h.momentum + h.one_minus_dampening * g };
                if h.nesterov {
                    g + h.momentum * *b
                } else {
                    *b
                }
            }
            None => g,
        };
        *p += h.neg_lr * d;
    }
}

/// RMSprop hyper-parameters in `T`.
struct RmspropScalars<T> {
    neg_lr: T,
    alpha: T,
    one_minus_alpha: T,
    eps: T,
    momentum: T,
    l2: Option<T>,
}

/// `torch.optim.RMSprop`, `_single_tensor_rmsprop`:
/// ```text
/// g = g + wd * p                                         (if wd != 0)
/// square_avg = alpha * square_avg + (1 - alpha) * g * g  (mul_(alpha).addcmul_(g, g, value=1-alpha))
/// if centered:
///     grad_avg = lerp(grad_avg, g, 1 - alpha)
///     avg = sqrt(square_avg - grad_avg * grad_avg)       (addcmul(ga, ga, value=-1).sqrt_())
/// else:
///     avg = sqrt(square_avg)
/// avg = avg + eps                                        (eps after the sqrt)
/// if momentum > 0:
///     buf = momentum * buf + g / avg                     (mul_(momentum).addcdiv_(g, avg))
///     p = p + (-lr) * buf
/// else:
///     p = p + (-lr) * g / avg                            (addcdiv_(g, avg, value=-lr))
/// ```
fn rmsprop_update<T: Scalar>(h: &RmspropScalars<T>, value: &mut [T], grad: &[T], st: StateParts<'_, T>) {
    debug_assert_eq!(value.len(), grad.len(), "parameter and gradient lengths differ");
    // Empty buffers (variant off) yield None for every element.
    let mut momentum_bufs = st.first.iter_mut();
    let mut grad_avgs = st.third.iter_mut();
    for ((p, &g), sq) in value.iter_mut().zip(grad).zip(st.second.iter_mut()) {
        let g = with_l2(g, *p, h.l2);
        *sq = *sq * h.alpha + h.one_minus_alpha * g * g;
        let avg = match grad_avgs.next() {
            Some(ga) => {
                *ga = lerp(*ga, g, h.one_minus_alpha);
                // addcmul with value=-1: (-1 * ga) * ga, i.e. exactly -(ga * ga).
                (*sq + -T::one() * *ga * *ga).sqrt()
            }
            None => sq.sqrt(),
        } + h.eps;
        match momentum_bufs.next() {
            Some(b) => {
                *b = *b * h.momentum + T::one() * g / avg;
                *p += h.neg_lr * *b;
            }
            None => *p += h.neg_lr * g / avg,
        }
    }
}

/// Adagrad hyper-parameters in `T`.
struct AdagradScalars<T> {
    /// `-clr`, the decayed learning rate of this step, negated.
    neg_clr: T,
    eps: T,
    l2: Option<T>,
}

/// `torch.optim.Adagrad`, `_single_tensor_adagrad` (dense gradients):
/// ```text
/// g = g + wd * p                            (if wd != 0)
/// clr = lr / (1 + (step - 1) * lr_decay)    (Python float, computed by the caller)
/// sum = sum + 1 * g * g                     (addcmul_(g, g, value=1))
/// std = sqrt(sum) + eps
/// p = p + (-clr) * g / std                  (addcdiv_(g, std, value=-clr))
/// ```
fn adagrad_update<T: Scalar>(h: &AdagradScalars<T>, value: &mut [T], grad: &[T], sum: &mut [T]) {
    debug_assert_eq!(value.len(), grad.len(), "parameter and gradient lengths differ");
    for ((p, &g), s) in value.iter_mut().zip(grad).zip(sum.iter_mut()) {
        let g = with_l2(g, *p, h.l2);
        *s += T::one() * g * g;
        let std = s.sqrt() + h.eps;
        *p += h.neg_clr * g / std;
    }
}

/// Adam / AdamW hyper-parameters for one step, in `T`.
struct AdamScalars<T> {
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    /// `sqrt(1 - beta2^step)`.
    bias_correction2_sqrt: T,
    eps: T,
    /// `-lr / (1 - beta1^step)`.
    neg_step_size: T,
    /// Adam's coupled L2 term.
    l2: Option<T>,
    /// AdamW's decoupled factor `1 - lr * wd`.
    decay: Option<T>,
}

impl<T: Scalar> AdamScalars<T> {
    fn new(lr: f64, beta1: f64, beta2: f64, eps: f64, step: f64, l2: Option<T>, decay: Option<T>) -> Self {
        // Python floats in torch: bias_correction1 = 1 - beta1 ** step,
        // bias_correction2 = 1 - beta2 ** step, step_size = lr / bias_correction1,
        // bias_correction2_sqrt = math.sqrt(bias_correction2). `powf` is C `pow`, as in CPython.
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        let step_size = lr / bias_correction1;
        AdamScalars {
            one_minus_beta1: T::of(1.0 - beta1),
            beta2: T::of(beta2),
            one_minus_beta2: T::of(1.0 - beta2),
            bias_correction2_sqrt: T::of(bias_correction2.sqrt()),
            eps: T::of(eps),
            neg_step_size: T::of(-step_size),
            l2,
            decay,
        }
    }
}

/// `torch.optim.Adam` / `AdamW`, `_single_tensor_adam` (non-capturable branch):
/// ```text
/// p = p * (1 - lr * wd)                          (AdamW only, before anything else)
/// g = g + wd * p                                 (Adam only, if wd != 0)
/// m = lerp(m, g, 1 - beta1)                      (exp_avg.lerp_(g, 1-beta1))
/// v = beta2 * v + (1 - beta2) * g * g            (mul_(beta2).addcmul_(g, g, value=1-beta2))
/// v_max = maximum(v_max, v)                      (amsgrad only; v_max replaces v below)
/// denom = sqrt(v) / sqrt(1 - beta2^t) + eps      (eps after the bias-corrected sqrt)
/// p = p + (-lr / (1 - beta1^t)) * m / denom      (addcdiv_(m, denom, value=-step_size))
/// ```
fn adam_update<T: Scalar>(h: &AdamScalars<T>, value: &mut [T], grad: &[T], st: StateParts<'_, T>) {
    debug_assert_eq!(value.len(), grad.len(), "parameter and gradient lengths differ");
    // Empty without amsgrad: None for every element.
    let mut max_sqs = st.third.iter_mut();
    let moments = st.first.iter_mut().zip(st.second.iter_mut());
    for ((p, &g), (m, v)) in value.iter_mut().zip(grad).zip(moments) {
        if let Some(factor) = h.decay {
            *p *= factor;
        }
        let g = with_l2(g, *p, h.l2);
        *m = lerp(*m, g, h.one_minus_beta1);
        *v = *v * h.beta2 + h.one_minus_beta2 * g * g;
        let second = match max_sqs.next() {
            Some(vmax) => {
                *vmax = nan_max(*vmax, *v);
                *vmax
            }
            None => *v,
        };
        let denom = second.sqrt() / h.bias_correction2_sqrt + h.eps;
        *p += h.neg_step_size * *m / denom;
    }
}

/// Global L2 norm over all gradients (accumulate in f64 for accuracy), as
/// torch.nn.utils.clip_grad_norm_ computes it (the norm of the per-tensor norms, which is the
/// norm of all entries together).
pub fn global_norm<T: Scalar>(grads: &[&[T]]) -> f64 {
    grads.iter().map(|g| sum_sq(g)).sum::<f64>().sqrt()
}

/// [`global_norm`] over mutable slices, without building a `&[&[T]]`.
fn global_norm_mut<T: Scalar>(grads: &[&mut [T]]) -> f64 {
    grads.iter().map(|g| sum_sq(g)).sum::<f64>().sqrt()
}

/// Applies clipping in place and returns (norm_before, norm_after) of the global gradient norm.
///
/// - `GlobalNorm { max }`: torch's `clip_grad_norm_`: `clip_coef = max / (total_norm + 1e-6)`,
///   clamped to at most 1.0, and every gradient is multiplied by it. Like torch this scales
///   (slightly) even when `total_norm` is within 1e-6 below `max`, and multiplies by exactly 1.0
///   otherwise, which leaves the gradients unchanged.
/// - `Value { max }`: torch's `clip_grad_value_`: clamp every entry to `[-max, max]`.
///
/// NaN gradients stay NaN, as in torch (`error_if_nonfinite=False`).
pub fn clip<T: Scalar>(config: &ClipConfig, grads: &mut [&mut [T]]) -> (f64, f64) {
    let before = global_norm_mut(grads);
    match *config {
        ClipConfig::GlobalNorm { max } => {
            // torch computes this on the norm tensor, in the gradient dtype:
            // `total_norm + 1e-6` casts 1e-6 to T, and `max_norm / tensor` is Tensor.__rdiv__,
            // which is `tensor.reciprocal() * max_norm`.
            let total = T::of(before);
            let coef = (T::one() / (total + T::of(1e-6))) * T::of(max);
            // torch.clamp(coef, max=1.0); written so that a NaN coefficient stays NaN.
            let coef = if coef > T::one() { T::one() } else { coef };
            for g in grads.iter_mut() {
                for x in g.iter_mut() {
                    *x *= coef;
                }
            }
        }
        ClipConfig::Value { max } => {
            let (lo, hi) = (T::of(-max), T::of(max));
            for g in grads.iter_mut() {
                for x in g.iter_mut() {
                    // torch.clamp_: NaN passes through unchanged.
                    if *x < lo {
                        *x = lo;
                    } else if *x > hi {
                        *x = hi;
                    }
                }
            }
        }
    }
    (before, global_norm_mut(grads))
}

#[cfg(test)]
mod tests;
