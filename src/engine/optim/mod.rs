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
}

impl<T: Scalar> Optimizer<T> {
    /// `weight_decay` is the L2 coefficient: added to the gradient (grad + wd*param) for
    /// sgd/rmsprop/adagrad/adam, decoupled (param *= 1 - lr*wd) for AdamW, exactly as torch.optim
    /// does.
    pub fn new(config: OptimizerConfig, weight_decay: f64) -> Self {
        Optimizer { config, weight_decay, slots: Vec::new(), ready: false, state_step: 0, steps: 0 }
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
        match self.config {
            OptimizerConfig::Sgd { lr, momentum, dampening, nesterov } => {
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
                let clr = lr / (1.0 + (step - 1.0) * lr_decay);
                let h = AdagradScalars { neg_clr: T::of(-clr), eps: T::of(eps), l2 };
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| adagrad_update(&h, p, g, st.second));
                }
            }
            OptimizerConfig::Adam { lr, beta1, beta2, eps, amsgrad: _ } => {
                let h = AdamScalars::new(lr, beta1, beta2, eps, step, l2, None);
                for (slot, st, measure) in &mut slots {
                    update_slot(slot, st, measure, |p, g, st| adam_update(&h, p, g, st));
                }
            }
            OptimizerConfig::AdamW { lr, beta1, beta2, eps, amsgrad: _ } => {
                // Decoupled decay: param.mul_(1 - lr * weight_decay), factor a Python float.
                // (torch >= 2.6 skips it when weight_decay == 0; older AdamW multiplied by
                // exactly 1.0, which is the same.)
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
mod tests {
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
        let rms =
            |momentum, centered| OptimizerConfig::Rmsprop { lr: 0.01, alpha: 0.99, eps: 1e-8, momentum, centered };
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
                opt.slots
                    .iter()
                    .flat_map(|s| [&s.first, &s.second, &s.third])
                    .map(|v| (v.as_ptr(), v.capacity()))
                    .collect()
            };
            let before = snapshot(&opt);
            for _ in 0..5 {
                opt.step(&mut [ParamSlot { value: &mut a, grad: &ga }, ParamSlot { value: &mut b, grad: &gb }])
                    .unwrap();
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
}
