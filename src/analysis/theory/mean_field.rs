//! The dense stack at initialisation (see the parent module's doc): whether the network is a
//! covered stack and its hidden layers' maps (`LayerMap`: the length map and `chi`); the fixed
//! point, `chi1`, phase and depth scale; the predicted and measured gradient profile over the
//! step-0 batch; and the input-output Jacobian spectrum with its size limits.

use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;

use super::quadrature::{expect, quadrature, scale_free};
use super::types::{JacobianSpectrum, StepZero, Theory, TheoryProfile};
use crate::engine::config::{Activation, DenseConfig, Init, LayerConfig, RunConfig};
use crate::engine::data::prepare;
use crate::engine::jacobian::{dense_stack_jacobian, jacobian_cost, singular_values, DenseMap};
use crate::engine::network::Network;
use crate::engine::rng::{rng, Stream};
use crate::engine::train::RunRecord;

/// `chi1` within this distance of 1 is `critical`.
pub const CRITICAL_TOLERANCE: f64 = 0.01;
/// Samples of the step-0 batch the profile averages over.
pub const MAX_PROFILE_SAMPLES: usize = 128;
/// Samples x hidden layers the profile iterates at most: deep stacks use fewer samples.
pub const MAX_PROFILE_WORK: usize = 16_384;
/// Samples whose Jacobian spectra are pooled.
pub const JACOBIAN_SAMPLES: usize = 4;
/// Most hidden layers for which the Jacobian is computed.
pub const JACOBIAN_MAX_DEPTH: usize = 64;
/// Widest layer (or input) for which the Jacobian is computed.
pub const JACOBIAN_MAX_WIDTH: usize = 1024;
/// Largest smaller side of the Jacobian handed to the SVD.
pub const JACOBIAN_MAX_SVD: usize = 512;
/// Most multiply-adds spent forming Jacobians, all samples together (a stack whose single
/// sample costs more gets a note instead).
pub const JACOBIAN_MAX_COST: f64 = 4e9;

/// One hidden layer's map.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LayerMap {
    pub(super) name: String,
    pub(super) activation: Activation,
    pub(super) slope: f64,
    pub(super) sigma_w2: f64,
    pub(super) bias_mean: f64,
    pub(super) bias_var: f64,
    /// `1 / (1 - p)` of dropout active between the previous layer (or the input) and this one.
    pub(super) dropout_in: f64,
}

impl LayerMap {
    pub(super) fn phi2(&self, q: f64) -> f64 {
        let (a, s) = (self.activation, self.slope);
        expect(self.bias_mean, q, scale_free(a) && self.bias_mean == 0.0, |h| a.value(h, s).powi(2))
    }
    /// `chi = sigma_w^2 E[phi'(h)^2]` at pre-activation variance `q` (without dropout).
    fn chi(&self, q: f64) -> f64 {
        let (a, s) = (self.activation, self.slope);
        self.sigma_w2
            * expect(self.bias_mean, q, scale_free(a) && self.bias_mean == 0.0, |h| {
                a.derivative(h, a.value(h, s), s).powi(2)
            })
    }
    /// Pre-activation variance of this layer given the second moment of its input.
    pub(super) fn q_from(&self, input_second_moment: f64) -> f64 {
        self.sigma_w2 * self.dropout_in * input_second_moment + self.bias_var
    }
}

/// Where the length map's iteration goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FixedPoint {
    Finite(f64),
    /// `q_l` grows without bound; the last finite value reached.
    Diverges(f64),
}

/// The fixed point of `q -> layer.q_from(E[phi^2](q))` reached from `q0` (see the module doc).
fn fixed_point(layer: &LayerMap, q0: f64) -> FixedPoint {
    let map = |q: f64| layer.q_from(layer.phi2(q));
    const HUGE: f64 = 1e100;
    let mut q = if q0.is_finite() && q0 >= 0.0 { q0 } else { 1.0 };
    for _ in 0..2000 {
        let next = map(q);
        if !next.is_finite() || next > HUGE {
            return FixedPoint::Diverges(q);
        }
        if next < 1e-250 && map(0.0) < 1e-250 {
            // Underflowing towards the fixed point 0.
            return FixedPoint::Finite(0.0);
        }
        if (next - q).abs() <= 1e-14 * q.max(next) || next == q {
            return FixedPoint::Finite(next);
        }
        q = next;
    }
    let g = |q: f64| map(q) - q;
    let bisect = |mut lo: f64, mut hi: f64| -> f64 {
        // g(lo) >= 0 >= g(hi) or the reverse; keep the sign change bracketed.
        let glo = g(lo);
        for _ in 0..300 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if (g(mid) >= 0.0) == (glo >= 0.0) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    if g(q) < 0.0 {
        // Falling: the largest root below q, or 0.
        let mut hi = q;
        let mut lo = q / 2.0;
        while lo > 1e-300 {
            // Above the quadrature's rounding (relative 1e-16) only: near q = 0 a map with
            // slope 1 there (tanh at sigma_w^2 = 1) differs from the identity by O(q^2).
            if g(lo) > 1e-10 * lo {
                return FixedPoint::Finite(bisect(lo, hi));
            }
            hi = lo;
            lo /= 2.0;
        }
        if map(0.0) < 1e-250 {
            return FixedPoint::Finite(0.0);
        }
        FixedPoint::Finite(bisect(0.0, hi))
    } else {
        // Rising: the smallest root above q, or none.
        let mut lo = q;
        let mut hi = 2.0 * q.max(1e-300);
        while hi < HUGE {
            if g(hi) <= 0.0 {
                return FixedPoint::Finite(bisect(lo, hi));
            }
            lo = hi;
            hi *= 2.0;
        }
        FixedPoint::Diverges(lo)
    }
}

fn phase(chi1: f64) -> &'static str {
    if chi1 < 1.0 - CRITICAL_TOLERANCE {
        "ordered"
    } else if chi1 > 1.0 + CRITICAL_TOLERANCE {
        "chaotic"
    } else {
        "critical"
    }
}

/// `q*`, `chi1`, phase, depth scale and predicted layer factor of `layer`'s map, from `q0`.
pub(super) fn fill_fixed_point(t: &mut Theory, layer: &LayerMap, q0: f64) {
    let (q, finite) = match fixed_point(layer, q0) {
        FixedPoint::Finite(q) => (q, true),
        FixedPoint::Diverges(q) => (q, false),
    };
    let chi1 = layer.chi(q) * layer.dropout_in;
    if !chi1.is_finite() {
        t.notes.push("chi1 is not finite: mean-field values omitted".to_string());
        return;
    }
    if finite {
        t.q_star = Some(q);
    } else {
        t.notes.push(
            "the length map has no finite fixed point (activations grow without bound with depth): q_star omitted, \
             chi1 is its limit at large q"
                .to_string(),
        );
    }
    t.chi1 = Some(chi1);
    t.phase = Some(phase(chi1).to_string());
    let l = chi1.ln().abs();
    t.depth_scale = (l > 1e-12 && l.is_finite()).then(|| 1.0 / l);
    t.predicted_layer_factor = Some(chi1.sqrt());
    t.sigma_w2 = Some(layer.sigma_w2);
    t.sigma_b2 = Some(layer.bias_var);
    t.activation = Some(layer.activation.name().to_string());
}

/// A covered dense stack: the hidden layers' maps, their record indices, and the built network's
/// weights for the Jacobian.
pub(super) struct Stack {
    maps: Vec<LayerMap>,
    /// Record index of each hidden layer.
    record_index: Vec<usize>,
    weights: Vec<Array2<f64>>,
    biases: Vec<Vec<f64>>,
    slopes: Vec<Option<Vec<f64>>>,
    /// The step-0 batch (at most MAX_PROFILE_SAMPLES rows).
    inputs: Array2<f64>,
}

/// Checks that the network is a plain dense stack and builds its maps; otherwise notes why not.
pub(super) fn dense_stack(
    config: &RunConfig,
    record: &RunRecord,
    step0: StepZero,
    notes: &mut Vec<String>,
) -> Option<Stack> {
    let layers = &config.network.layers;
    let mut covered = true;
    for l in layers {
        let note = match l {
            LayerConfig::Dense(d) if d.norm.is_some() => Some(
                "batch or layer norm inside dense layers: mean-field map not applied (the norm resets q at every \
                      layer and its backward pass is not the plain chi map)",
            ),
            LayerConfig::BatchNorm(_) => Some("batch norm: mean-field map not applied"),
            LayerConfig::LayerNorm(_) => Some("layer norm: mean-field map not applied"),
            LayerConfig::Residual(_) => {
                Some("residual blocks: mean-field map not applied (each block adds the identity to its Jacobian)")
            }
            LayerConfig::Activation { .. } => Some(
                "standalone activation layers: the dense-layer map is not applied (give the activation to the \
                      dense layer instead)",
            ),
            LayerConfig::Rnn(_) | LayerConfig::Pool(_) | LayerConfig::Positional(_) => Some(""),
            LayerConfig::Attention(_) => Some("attention layers: mean-field map not applied"),
            LayerConfig::Transformer(_) => {
                Some("transformer blocks: mean-field map not applied (see the transformer depth profile instead)")
            }
            LayerConfig::Dense(_) | LayerConfig::Dropout { .. } => None,
        };
        if let Some(n) = note {
            covered = false;
            if !n.is_empty() {
                notes.push(n.to_string());
            }
        }
    }
    if !covered {
        return None;
    }
    let dense_at: Vec<(usize, &DenseConfig)> = layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match l {
            LayerConfig::Dense(d) => Some((i, d)),
            _ => None,
        })
        .collect();
    if dense_at.len() < 2 {
        notes.push("no hidden dense layer (only the readout): no profile to predict".to_string());
        return None;
    }
    let inputs = match step_zero_inputs(config, step0) {
        Ok(x) => x,
        Err(e) => {
            notes.push(format!("the step-0 batch could not be rebuilt ({e}): mean-field values omitted"));
            return None;
        }
    };
    let mut net = match Network::<f64>::new(&config.network, config.seed) {
        Ok(n) => n,
        Err(e) => {
            notes.push(format!("the network could not be built ({e}): mean-field values omitted"));
            return None;
        }
    };
    // Move the initial parameters out of the network and drop it with its gradient buffers: a
    // 50 x 512 stack holds 13 M numbers, and copies would double the run's peak memory.
    let keys: Vec<(Vec<usize>, &'static str)> = net.params().map(|(li, p)| (li.path.clone(), p.name)).collect();
    let mut owned: Vec<(Vec<usize>, &'static str, Array2<f64>)> = keys
        .into_iter()
        .zip(net.params_mut().map(|p| {
            p.grad = Array2::zeros((0, 0));
            std::mem::take(&mut p.value)
        }))
        .map(|((path, name), value)| (path, name, value))
        .collect();
    drop(net);
    let dropout_active = step0 == StepZero::Train;
    let mut stack = Stack {
        maps: Vec::new(),
        record_index: Vec::new(),
        weights: Vec::new(),
        biases: Vec::new(),
        slopes: Vec::new(),
        inputs,
    };
    let mut dropout_in = 1.0;
    let hidden = dense_at.len() - 1;
    let mut next_dense = 0;
    for (i, l) in layers.iter().enumerate() {
        match l {
            LayerConfig::Dropout { rate } if dropout_active && *rate > 0.0 && *rate < 1.0 => {
                dropout_in /= 1.0 - rate;
            }
            LayerConfig::Dense(d) if next_dense < hidden => {
                next_dense += 1;
                let Some(info) = record.layers.iter().find(|x| x.path == [i]) else {
                    notes.push("the record does not match the network: mean-field values omitted".to_string());
                    return None;
                };
                let mut take = |name: &str| {
                    owned
                        .iter_mut()
                        .find(|(path, n, _)| path.as_slice() == [i] && *n == name)
                        .map(|(_, _, v)| std::mem::take(v))
                };
                let (Some(w), Some(b)) = (take("weight"), take("bias")) else {
                    notes.push(format!("{}: weights not found: mean-field values omitted", info.name));
                    return None;
                };
                let b: Vec<f64> = b.iter().copied().collect();
                let slopes: Option<Vec<f64>> = take("prelu_weight").map(|p| p.iter().copied().collect());
                let (sigma_w2, wnote) = weight_second_moment(d, w.view());
                if let Some(n) = wnote {
                    notes.push(format!("{}: {n}", info.name));
                }
                let (bias_mean, bias_var) = bias_moments(d, &b);
                let slope = match (&slopes, d.activation) {
                    (Some(s), _) if !s.is_empty() => s.iter().sum::<f64>() / s.len() as f64,
                    (_, Activation::Prelu { init }) => init,
                    _ => 0.0,
                };
                stack.maps.push(LayerMap {
                    name: info.name.clone(),
                    activation: d.activation,
                    slope,
                    sigma_w2,
                    bias_mean,
                    bias_var,
                    dropout_in,
                });
                stack.record_index.push(info.index);
                stack.weights.push(w);
                stack.biases.push(b);
                stack.slopes.push(slopes);
                dropout_in = 1.0;
            }
            _ => {}
        }
    }
    Some(stack)
}

/// `sigma_w^2 = fan_in * Var(W)` from the init formula, or the empirical `fan_in * mean(W^2)`
/// for explicit weights and for inits that are not i.i.d. zero-mean (with a note).
fn weight_second_moment(d: &DenseConfig, w: ArrayView2<'_, f64>) -> (f64, Option<&'static str>) {
    let (units, fan_in) = w.dim();
    let empirical = || fan_in as f64 * w.iter().map(|v| v * v).sum::<f64>() / w.len().max(1) as f64;
    if d.params.contains_key("weight") {
        return (empirical(), None);
    }
    match d.init {
        Init::Constant { .. } | Init::Identity { .. } => (
            empirical(),
            Some(
                "constant and identity weights are not i.i.d.: the mean-field map (empirical sigma_w^2) is only \
                 indicative",
            ),
        ),
        init => match init.variance(units, fan_in) {
            Some(v) => (v * fan_in as f64, None),
            None => (empirical(), None),
        },
    }
}

/// Mean and variance of the biases: from the init, or empirical for explicit or identity biases.
fn bias_moments(d: &DenseConfig, b: &[f64]) -> (f64, f64) {
    let empirical = || {
        let n = b.len().max(1) as f64;
        let mean = b.iter().sum::<f64>() / n;
        (mean, b.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n)
    };
    if d.params.contains_key("bias") {
        return empirical();
    }
    match d.bias_init {
        Init::Constant { value } => (value, 0.0),
        Init::Identity { .. } => empirical(),
        init => (0.0, init.variance(b.len(), 1).unwrap_or_else(|| empirical().1)),
    }
}

/// The samples of the step-0 batch (at most [`MAX_PROFILE_SAMPLES`]), rebuilt exactly as the
/// engine cuts it: the data of the seed, the train/validation split, then the first
/// `batch_size` of the shuffled order (training) or the first `batch` samples (`analyze`).
pub(super) fn step_zero_inputs(config: &RunConfig, step0: StepZero) -> Result<Array2<f64>, String> {
    let (train, _) = prepare(config).map_err(|e| e.to_string())?;
    if train.seq_len.is_some() {
        return Err("sequence data".to_string());
    }
    let len = train.len();
    if len == 0 {
        return Err("the training set is empty".to_string());
    }
    let mut idx: Vec<usize> = match step0 {
        StepZero::Analyze { batch } => (0..batch.clamp(1, len)).collect(),
        StepZero::Train => {
            let mut order: Vec<usize> = (0..len).collect();
            if config.training.shuffle {
                order.shuffle(&mut rng(config.seed, Stream::Shuffle));
            }
            order.truncate(config.training.batch_size.clamp(1, len));
            order
        }
    };
    idx.truncate(MAX_PROFILE_SAMPLES);
    Ok(train.x.select(Axis(0), &idx))
}

/// Fills the mean-field fields, the profile and the Jacobian of a covered stack.
pub(super) fn mean_field(t: &mut Theory, record: &RunRecord, stack: &Stack, notes: &mut Vec<String>) {
    let maps = &stack.maps;
    let n_layers = maps.len();
    if quadrature().nodes.is_empty() {
        notes.push("Gauss-Hermite nodes could not be computed: mean-field values omitted".to_string());
        return;
    }
    // Per sample: q_l and ln chi_l (chi with the dropout factor of the layer's input).
    let samples = stack.inputs.nrows().min((MAX_PROFILE_WORK / n_layers.max(1)).max(1));
    let mut q_sum = vec![0.0; n_layers];
    let mut chi_sum = vec![0.0; n_layers];
    // suffix[s][l] = sum_{k>l} ln(chi_k dropout_k) for sample s.
    let mut suffix: Vec<Vec<f64>> = Vec::with_capacity(samples);
    for x in stack.inputs.rows().into_iter().take(samples) {
        let m2 = x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64;
        let mut q = maps[0].q_from(m2);
        let mut log_chi = Vec::with_capacity(n_layers);
        for (k, layer) in maps.iter().enumerate() {
            q_sum[k] += q;
            let chi = layer.chi(q);
            chi_sum[k] += chi;
            log_chi.push((chi * layer.dropout_in).ln());
            if let Some(next) = maps.get(k + 1) {
                q = next.q_from(layer.phi2(q));
            }
        }
        let mut s = vec![0.0; n_layers];
        for l in (0..n_layers.saturating_sub(1)).rev() {
            s[l] = s[l + 1] + log_chi[l + 1];
        }
        suffix.push(s);
    }
    let n = samples.max(1) as f64;
    let q: Vec<f64> = q_sum.iter().map(|v| v / n).collect();
    let chi: Vec<f64> = chi_sum.iter().map(|v| v / n).collect();
    // 1/2 ln mean_s exp(suffix), by log-sum-exp.
    let predicted: Vec<f64> = (0..n_layers)
        .map(|l| {
            let m = suffix.iter().map(|s| s[l]).fold(f64::NEG_INFINITY, f64::max);
            if !m.is_finite() {
                return m;
            }
            0.5 * (m + (suffix.iter().map(|s| (s[l] - m).exp()).sum::<f64>() / n).ln())
        })
        .collect();
    // The fixed point of the deep part: the last hidden layer's map, from where the stack ends.
    let last = &maps[n_layers - 1];
    let deep = &maps[1.min(n_layers - 1)..];
    let same = |a: f64, b: f64| (a - b).abs() <= 0.01 * a.abs().max(b.abs()) + 1e-12;
    if deep.iter().any(|m| {
        m.activation != last.activation
            || !same(m.sigma_w2, last.sigma_w2)
            || !same(m.bias_var, last.bias_var)
            || !same(m.bias_mean, last.bias_mean)
    }) {
        notes.push(
            "hidden layers differ in activation, sigma_w^2 or bias: q_star, chi1 and the phase are the last hidden \
             layer's; the profile uses each layer's own"
                .to_string(),
        );
    }
    if last.bias_mean != 0.0 {
        notes.push(format!("biases have mean {}: the map uses pre-activations N(mean, q)", last.bias_mean));
    }
    fill_fixed_point(t, last, q[n_layers - 1]);
    let measured: Vec<Option<f64>> = {
        let delta = |i: usize| {
            record.layer_stats.get(i).and_then(|s| s.delta_norm.first().copied()).filter(|v| v.is_finite() && *v > 0.0)
        };
        let end = delta(stack.record_index[n_layers - 1]);
        stack.record_index.iter().map(|&i| Some((delta(i)? / end?).ln())).collect()
    };
    if predicted.iter().chain(&q).chain(&chi).all(|v| v.is_finite()) {
        t.profile = Some(TheoryProfile {
            layers: maps.iter().map(|m| m.name.clone()).collect(),
            q,
            chi,
            sigma_w2: maps.iter().map(|m| m.sigma_w2).collect(),
            predicted_log_delta_ratio: predicted,
            measured_log_delta_ratio: measured,
        });
    } else {
        notes.push(
            "the predicted profile is not finite (a layer passes no gradient: chi = 0, or q overflows): profile omitted"
                .to_string(),
        );
    }
    if stack.maps.iter().any(|m| m.dropout_in != 1.0) {
        notes.push("dropout: the map scales by 1/(1-p) where dropout was active at step 0".to_string());
    }
    t.jacobian = jacobian(stack, notes);
}

/// The Jacobian spectrum of a covered stack, within the documented size limits.
fn jacobian(stack: &Stack, notes: &mut Vec<String>) -> Option<JacobianSpectrum> {
    let maps: Vec<DenseMap<'_>> = stack
        .weights
        .iter()
        .zip(&stack.biases)
        .zip(&stack.slopes)
        .zip(&stack.maps)
        .map(|(((w, b), s), m)| DenseMap { weight: w.view(), bias: b, activation: m.activation, slopes: s.as_deref() })
        .collect();
    let n0 = stack.weights.first().map_or(0, |w| w.ncols());
    let nl = stack.weights.last().map_or(0, |w| w.nrows());
    let widest = stack.weights.iter().map(|w| w.nrows().max(w.ncols())).max().unwrap_or(0);
    let cost = jacobian_cost(&maps);
    let too_big = if maps.len() > JACOBIAN_MAX_DEPTH {
        Some(format!("more than {JACOBIAN_MAX_DEPTH} hidden layers"))
    } else if widest > JACOBIAN_MAX_WIDTH {
        Some(format!("a width above {JACOBIAN_MAX_WIDTH}"))
    } else if n0.min(nl) > JACOBIAN_MAX_SVD {
        Some(format!("both sides above {JACOBIAN_MAX_SVD}"))
    } else if cost > JACOBIAN_MAX_COST {
        Some(format!("{cost:.1e} multiply-adds per sample (limit {JACOBIAN_MAX_COST:.0e})"))
    } else {
        None
    };
    if let Some(why) = too_big {
        notes.push(format!("jacobian: not computed for this size ({why})"));
        return None;
    }
    let affordable = (JACOBIAN_MAX_COST / cost.max(1.0)).floor() as usize;
    let samples = if stack.maps.iter().all(|m| m.activation == Activation::Linear) {
        1
    } else {
        JACOBIAN_SAMPLES.min(affordable).max(1)
    };
    let mut sv = Vec::new();
    let mut used = 0;
    for x in stack.inputs.rows().into_iter().take(samples) {
        let x: Vec<f64> = x.iter().copied().collect();
        let j = match dense_stack_jacobian(&maps, &x) {
            Ok(j) => j,
            Err(e) => {
                notes.push(format!("jacobian: {e}"));
                return None;
            }
        };
        match singular_values(&j) {
            Some(s) => sv.extend(s),
            None => {
                notes.push("jacobian: not finite or the SVD did not converge".to_string());
                return None;
            }
        }
        used += 1;
    }
    spectrum_stats(&sv, [nl, n0], used)
}

/// Summary statistics of pooled singular values.
fn spectrum_stats(sv: &[f64], size: [usize; 2], samples: usize) -> Option<JacobianSpectrum> {
    if sv.is_empty() {
        return None;
    }
    let n = sv.len() as f64;
    let mean_sq = sv.iter().map(|s| s * s).sum::<f64>() / n;
    let var_sq = sv.iter().map(|s| (s * s - mean_sq).powi(2)).sum::<f64>() / n;
    let spec = JacobianSpectrum {
        size,
        samples,
        mean_sq,
        var_sq,
        max: sv.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        min: sv.iter().copied().fold(f64::INFINITY, f64::min),
        fraction_within_half_to_two: sv.iter().filter(|s| (0.5..=2.0).contains(*s)).count() as f64 / n,
    };
    [spec.mean_sq, spec.var_sq, spec.max, spec.min].iter().all(|v| v.is_finite()).then_some(spec)
}
