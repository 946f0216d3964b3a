//! Theory at initialisation: what mean-field theory predicts for this very network before it
//! trains, beside what the step-0 probe measured.
//!
//! # The dense stack (Poole et al. 2016; Schoenholz et al. 2017)
//!
//! For a hidden dense layer `l` with fan-in `N_{l-1}`, weights of second moment
//! `sigma_w^2 / N_{l-1}` and biases of mean `m_b` and variance `sigma_b^2`, the pre-activation
//! `h_l` of a sample is, over the units, Gaussian with mean `m_b` and variance `q_l`:
//!
//! ```text
//! q_1     = sigma_w^2 mean_j(x_j^2) + sigma_b^2                     (the sample's own input)
//! q_l     = sigma_w^2 E[phi(m_b + sqrt(q_{l-1}) z)^2] + sigma_b^2   (z ~ N(0, 1))
//! chi_l   = sigma_w^2 E[phi'(m_b + sqrt(q_l) z)^2]
//! ```
//! each with that layer's own `sigma_w^2`, `sigma_b^2`, `m_b` and activation (`phi` of layer
//! `l-1` in the length map). `sigma_w^2 = fan_in * Var(W)` comes from the init formula
//! ([`Init::variance`]); for explicit weights, and for `constant`/`identity` inits (which are
//! not i.i.d. and get a note), it is the empirical `fan_in * mean(W^2)` of the built network.
//! Biases: a `constant` init is `m_b = value, sigma_b^2 = 0`; random inits `m_b = 0` and their
//! variance; explicit biases their empirical mean and variance. An inverted-dropout layer of
//! rate `p` active at step 0 (training, not `analyze`) scales the second moment it passes on,
//! and the squared gradient it passes back, by `1 / (1 - p)`.
//!
//! `delta_norm` is `||dL/dy_l||` with `y_l = phi(h_l)` the layer's post-activation output. Since
//! `dL/dy_{l-1} = W_l^T (phi'(h_l) * dL/dy_l)` and `W_l` has `N_{l-1}` columns of variance
//! `sigma_w^2 / N_{l-1}`, `||dL/dy_{l-1}||^2 = chi_l ||dL/dy_l||^2` per sample — the widths
//! cancel. So for hidden layers `l < L` (L the last hidden layer, before the readout)
//!
//! ```text
//! predicted ln(delta_l / delta_L) = 1/2 ln mean_s prod_{k=l+1..L} chi_k(s)
//! ```
//! iterating the map from each sample `s` of the step-0 batch (at most
//! [`MAX_PROFILE_SAMPLES`], and at most [`MAX_PROFILE_WORK`] / depth; weighted equally: the
//! per-sample gradients reaching layer `L` are assumed to be of equal size). The profile is
//! therefore not `chi1^(L-l)`: a network starts away from `q*` (for tanh at `sigma_w^2 = 1`
//! `q_l` falls like `1/(2l)` and the decay is a power law), and the prediction follows it layer
//! by layer.
//!
//! Expectations use `n = ` [`QUADRATURE_NODES`]-point Gauss-Hermite quadrature for the standard
//! normal (probabilists' Hermite), its nodes and weights computed by Golub-Welsch: the
//! eigenvalues of the symmetric tridiagonal Jacobi matrix (off-diagonal `sqrt(k)`) are the
//! nodes, the squared first components of its eigenvectors the weights (nalgebra's symmetric
//! eigensolver). The node count is even, so no node sits on the kink of ReLU-like functions at 0:
//! for ReLU, leaky ReLU and linear activations (zero-mean biases) the expectations are exact.
//! Saturating activations at `q > 2` are integrated in panels instead (see `expect`): their
//! features are narrower than the Hermite nodes' spacing there.
//!
//! `q*` is the fixed point of the last hidden layer's map, iterated from that layer's mean `q`
//! (bracketed and bisected when the iteration crawls, e.g. `q_l ~ 1/(2l)`; `q* = 0` when the map
//! has no positive fixed point below and `0` is one). When `q_l` grows without bound there is
//! no finite `q*` (omitted, with a note) and `chi1` is the limit of `chi` at large `q`.
//! `chi1 = chi(q*)`; phase: `ordered` when `chi1 < 1 - CRITICAL_TOLERANCE`, `chaotic` when
//! `chi1 > 1 + CRITICAL_TOLERANCE`, `critical` in between ([`CRITICAL_TOLERANCE`] = 0.01: a
//! depth scale of at least ~100 layers). `depth_scale = 1 / |ln chi1|`: the number of layers
//! over which the squared gradient norm changes by a factor e (Schoenholz et al.'s `xi_grad`;
//! omitted, i.e. infinite, when `chi1 = 1`). `predicted_layer_factor = sqrt(chi1)`, the ratio
//! `delta_{l} / delta_{l+1}` deep in the stack; `measured_layer_factor` is `exp(-slope)` of a
//! least-squares line through `ln delta_norm` of the hidden dense layers at step 0.
//!
//! Covered: a stack of dense layers without normalisation (any activations, also mixed),
//! optionally with dropout, ending in a dense readout. Normalisation, residual blocks,
//! standalone activation layers and recurrent layers get a note instead of a profile.
//!
//! # The Jacobian (Pennington, Schoenholz & Ganguli 2017)
//!
//! `J = dy_L / dx`, from the network input `x` to the last hidden layer's output `y_L`
//! (post-activation), at the initial weights, dropout off (see [`crate::engine::jacobian`]),
//! for each of the first [`JACOBIAN_SAMPLES`] samples of the step-0 batch (one when every
//! hidden activation is linear: `J` does not depend on `x` then; fewer when the cost cap below
//! is reached); the singular values of all samples are pooled. Computed when the stack has at
//! most [`JACOBIAN_MAX_DEPTH`] hidden layers, every width and the input are at most
//! [`JACOBIAN_MAX_WIDTH`], the SVD's smaller side `min(N_0, N_L)` is at most
//! [`JACOBIAN_MAX_SVD`], and one sample costs at most [`JACOBIAN_MAX_COST`] multiply-adds (the
//! samples together stay under it too); otherwise a note says why it is absent.
//!
//! # Recurrent layers (Pascanu, Mikolov & Bengio 2013)
//!
//! For a vanilla cell `h_t = phi(W_ih x_t + W_hh h_{t-1} + b)`,
//! `||dh_t/dh_{t-1}|| <= gamma sigma_max(W_hh)` with `gamma` a bound on `|phi'|` (tanh and ReLU
//! 1, sigmoid 1/4): below 1 the gradient through time vanishes at least geometrically
//! (sufficient); exploding needs `sigma_max > 1 / gamma` (necessary, not sufficient). The
//! spectra are the engine's own step-0 probe of `W_hh`. Gated cells (LSTM, GRU) have no such
//! bound: their state Jacobian is gated (the LSTM cell path is `f * c_{t-1}`).

use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::engine::config::{Activation, CellKind, DenseConfig, Init, LayerConfig, RunConfig};
use crate::engine::data::generate;
use crate::engine::jacobian::{dense_stack_jacobian, jacobian_cost, singular_values, DenseMap};
use crate::engine::network::Network;
use crate::engine::rng::{rng, Stream};
use crate::engine::train::RunRecord;

/// Gauss-Hermite nodes used for every expectation over `z ~ N(0, 1)` (even: no node at 0).
pub const QUADRATURE_NODES: usize = 128;
/// Gauss-Legendre nodes per panel where Gauss-Hermite is not accurate (see [`expect`]).
pub const LEGENDRE_NODES: usize = 16;
/// Largest `q` at which saturating activations use Gauss-Hermite (see [`expect`]).
pub const GAUSS_HERMITE_MAX_Q: f64 = 2.0;
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

/// What theory predicts at initialisation, beside what the step-0 probe measured.
///
/// The contract's fields (`q_star` ... `measured_layer_factor`) describe the deep part of a
/// dense stack; `profile` the whole stack layer by layer; `jacobian` the input-output Jacobian;
/// `recurrent` each recurrent layer. A part that does not apply is omitted and `notes` says why.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Theory {
    /// Fixed point of the length map (variance of a hidden pre-activation), iterated with the
    /// last hidden layer's `sigma_w^2`, `sigma_b^2` and activation. Omitted when the map has no
    /// finite fixed point (activations grow without bound with depth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q_star: Option<f64>,
    /// `chi1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]`: the factor by which the squared gradient norm
    /// changes per layer deep in the stack (Gauss-Hermite quadrature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi1: Option<f64>,
    /// `ordered` (chi1 < 0.99: vanishing), `critical` (|chi1 - 1| <= 0.01) or `chaotic`
    /// (chi1 > 1.01: exploding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `1 / |ln chi1|`: layers over which the squared gradient norm changes by a factor e.
    /// Omitted when chi1 = 1 (the depth scale is infinite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth_scale: Option<f64>,
    /// `sqrt(chi1)`: predicted `delta_norm` ratio of a hidden layer to the next one, deep in the
    /// stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_layer_factor: Option<f64>,
    /// Measured at step 0: `exp(-slope)` of the least-squares line through `ln delta_norm` of the
    /// hidden dense layers (every dense layer but the last) against their position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_layer_factor: Option<f64>,
    /// The `sigma_w^2` (fan_in x weight variance) `q_star` and `chi1` use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_w2: Option<f64>,
    /// The bias variance `sigma_b^2` `q_star` and `chi1` use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_b2: Option<f64>,
    /// The activation `q_star` and `chi1` use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// Predicted and measured gradient profile over the hidden layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<TheoryProfile>,
    /// Singular values of the input-output Jacobian at initialisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jacobian: Option<JacobianSpectrum>,
    /// One entry per recurrent layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recurrent: Vec<RecurrentTheory>,
    /// Why parts are absent or approximate (e.g. `batch norm: mean-field map not applied`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The length map iterated through the hidden layers, and the gradient profile it predicts,
/// beside the one measured at step 0. Entries are parallel to `layers`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TheoryProfile {
    /// Hidden dense layers (every dense layer but the readout), in forward order.
    pub layers: Vec<String>,
    /// Pre-activation variance `q_l` from the length map, mean over the samples.
    pub q: Vec<f64>,
    /// `chi_l = sigma_w^2 E[phi'(h_l)^2]`, mean over the samples.
    pub chi: Vec<f64>,
    /// Each layer's `sigma_w^2` (fan_in x weight variance).
    pub sigma_w2: Vec<f64>,
    /// Predicted `ln(delta_norm_l / delta_norm_L)`, L the last hidden layer (so the last entry
    /// is 0).
    pub predicted_log_delta_ratio: Vec<f64>,
    /// Measured at step 0; `null` where a `delta_norm` was zero or non-finite.
    pub measured_log_delta_ratio: Vec<Option<f64>>,
}

/// Singular values of `J = dy_L / dx` (network input to the last hidden layer's output) at
/// initialisation, pooled over the samples.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct JacobianSpectrum {
    /// `[N_L, N_0]`: rows (last hidden width) and columns (input width) of `J`.
    pub size: [usize; 2],
    /// Samples whose singular values are pooled.
    pub samples: usize,
    /// Mean of the squared singular values (`chi^L` in the mean-field limit).
    pub mean_sq: f64,
    /// Variance of the squared singular values (about `L` for a deep linear Gaussian net).
    pub var_sq: f64,
    /// Largest singular value.
    pub max: f64,
    /// Smallest singular value.
    pub min: f64,
    /// Fraction of singular values in `[0.5, 2]` (1 under dynamical isometry).
    pub fraction_within_half_to_two: f64,
}

/// One recurrent layer at initialisation.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RecurrentTheory {
    /// Layer name.
    pub layer: String,
    /// `vanilla`, `lstm` or `gru`.
    pub cell: String,
    /// Largest singular value of `W_hh` (gated cells: the largest over the gate blocks).
    pub sigma_max: f64,
    /// Spectral radius of `W_hh` (gated cells: the largest over the gate blocks).
    pub spectral_radius: f64,
    /// Bound on `|phi'|` of the vanilla cell's activation (tanh 1, relu 1, sigmoid 1/4); for
    /// gated cells that of the tanh candidate, 1.
    pub gamma: f64,
    /// `gamma * sigma_max`: per-step upper bound on `||dh_t/dh_{t-1}||` (vanilla cells).
    pub pascanu_bound_factor: f64,
    /// Vanilla cells: `true` when the bound is below 1, so the gradient through time vanishes at
    /// least like `bound^(T-t)`. Omitted for gated cells, where the bound does not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vanishing_guaranteed: Option<bool>,
    /// Gated cells: the spectrum of each gate block of `W_hh`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<RecurrentBlock>,
    /// What the numbers do and do not say for this cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The spectrum of one gate block of `W_hh`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RecurrentBlock {
    /// Gate (`i`, `f`, `g`, `o` for LSTM; `r`, `z`, `n` for GRU).
    pub block: String,
    /// Largest singular value.
    pub sigma_max: f64,
    /// Spectral radius.
    pub spectral_radius: f64,
}

/// Which batch the step-0 probe measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepZero {
    /// `analyze`: the first `batch` training samples, dropout off.
    Analyze {
        /// Samples.
        batch: usize,
    },
    /// A training run: the first batch of the shuffled order, dropout on.
    Train,
}

/// Gauss-Hermite rule for `E[f(z)]`, `z ~ N(0, 1)`.
struct Quadrature {
    nodes: Vec<f64>,
    weights: Vec<f64>,
}

/// Golub-Welsch for the probabilists' Hermite polynomials: the Jacobi matrix is tridiagonal
/// with zero diagonal and off-diagonal `sqrt(k)`, k = 1..n-1.
fn gauss_hermite(n: usize) -> Quadrature {
    let mut jm = nalgebra::DMatrix::<f64>::zeros(n, n);
    for k in 1..n {
        let b = (k as f64).sqrt();
        jm[(k - 1, k)] = b;
        jm[(k, k - 1)] = b;
    }
    let Some(eig) = nalgebra::SymmetricEigen::try_new(jm, f64::EPSILON, 1_000_000) else {
        // Never seen; the mean-field results then read "not computed" rather than panic.
        return Quadrature { nodes: Vec::new(), weights: Vec::new() };
    };
    let mut pairs: Vec<(f64, f64)> =
        (0..n).map(|i| (eig.eigenvalues[i], eig.eigenvectors[(0, i)] * eig.eigenvectors[(0, i)])).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Symmetrise: the rule is exactly symmetric in exact arithmetic.
    let half = n / 2;
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..half {
        let j = n - 1 - i;
        let x = 0.5 * (pairs[j].0 - pairs[i].0);
        let w = 0.5 * (pairs[i].1 + pairs[j].1);
        nodes[i] = -x;
        nodes[j] = x;
        weights[i] = w;
        weights[j] = w;
    }
    let total: f64 = weights.iter().sum();
    if total > 0.0 {
        weights.iter_mut().for_each(|w| *w /= total);
    }
    Quadrature { nodes, weights }
}

fn quadrature() -> &'static Quadrature {
    static RULE: OnceLock<Quadrature> = OnceLock::new();
    RULE.get_or_init(|| gauss_hermite(QUADRATURE_NODES))
}

/// Gauss-Legendre rule on [-1, 1] (Golub-Welsch: off-diagonal `k / sqrt(4k^2 - 1)`, weights
/// twice the squared first eigenvector components).
fn gauss_legendre(n: usize) -> Quadrature {
    let mut jm = nalgebra::DMatrix::<f64>::zeros(n, n);
    for k in 1..n {
        let k2 = (k * k) as f64;
        let b = k as f64 / (4.0 * k2 - 1.0).sqrt();
        jm[(k - 1, k)] = b;
        jm[(k, k - 1)] = b;
    }
    let Some(eig) = nalgebra::SymmetricEigen::try_new(jm, f64::EPSILON, 1_000_000) else {
        return Quadrature { nodes: Vec::new(), weights: Vec::new() };
    };
    let nodes = eig.eigenvalues.iter().copied().collect();
    let weights = (0..n).map(|i| 2.0 * eig.eigenvectors[(0, i)].powi(2)).collect();
    Quadrature { nodes, weights }
}

fn legendre() -> &'static Quadrature {
    static RULE: OnceLock<Quadrature> = OnceLock::new();
    RULE.get_or_init(|| gauss_legendre(LEGENDRE_NODES))
}

/// `E[f(mean + sqrt(q) z)]`, z ~ N(0, 1); `q` is clamped to a tiny positive number so that
/// `q = 0` gives the limit `q -> 0+` (both sides of a kink at the mean, as the Gaussian has).
///
/// Gauss-Hermite when `q <= GAUSS_HERMITE_MAX_Q` or `f` is exact under it (`scale_free`: the
/// positively homogeneous activations). For larger `q` the features of a saturating `f` (width
/// ~1 in `h`) are narrower than the Gauss-Hermite nodes' spacing in `z` (relative error 1% at
/// q = 10), so the integral over `h` is split into unit panels on `|h| <= 40` (every kink sits at
/// `h = 0`, a panel edge), panels of half a standard deviation beyond, up to 9 standard
/// deviations, each integrated by Gauss-Legendre against the Gaussian density.
fn expect(mean: f64, q: f64, scale_free: bool, f: impl Fn(f64) -> f64) -> f64 {
    let s = q.max(1e-300).sqrt();
    if scale_free || q <= GAUSS_HERMITE_MAX_Q {
        let rule = quadrature();
        return rule.nodes.iter().zip(&rule.weights).map(|(&z, &w)| w * f(mean + s * z)).sum();
    }
    let (lo, hi) = (mean - 9.0 * s, mean + 9.0 * s);
    let mut edges = vec![lo, hi];
    edges.extend((-40..=40).map(f64::from).filter(|h| *h > lo && *h < hi));
    // 36 half-standard-deviation steps span [lo, hi]; computed from the index, so a huge mean
    // (where `h + step == h`) cannot stall the loop.
    edges.extend((1..36).map(|j| lo + f64::from(j) * 0.5 * s).filter(|h| h.abs() > 40.0 && *h < hi));
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let density = |h: f64| (-0.5 * ((h - mean) / s).powi(2)).exp() / (s * (2.0 * std::f64::consts::PI).sqrt());
    let rule = legendre();
    edges
        .windows(2)
        .map(|w| {
            let (c, r) = (0.5 * (w[0] + w[1]), 0.5 * (w[1] - w[0]));
            rule.nodes
                .iter()
                .zip(&rule.weights)
                .map(|(&x, &wt)| wt * r * f(c + r * x) * density(c + r * x))
                .sum::<f64>()
        })
        .sum()
}

/// True for the positively homogeneous activations, whose Gaussian expectations the even
/// Gauss-Hermite rule gives exactly at every `q` (mean 0).
fn scale_free(a: Activation) -> bool {
    matches!(a, Activation::Linear | Activation::Relu | Activation::LeakyRelu { .. } | Activation::Prelu { .. })
}

/// One hidden layer's map.
#[derive(Debug, Clone, PartialEq)]
struct LayerMap {
    name: String,
    activation: Activation,
    slope: f64,
    sigma_w2: f64,
    bias_mean: f64,
    bias_var: f64,
    /// `1 / (1 - p)` of dropout active between the previous layer (or the input) and this one.
    dropout_in: f64,
}

impl LayerMap {
    fn phi2(&self, q: f64) -> f64 {
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
    fn q_from(&self, input_second_moment: f64) -> f64 {
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
fn fill_fixed_point(t: &mut Theory, layer: &LayerMap, q0: f64) {
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

/// The theory block of a run of `config` whose step-0 probe is in `record`.
///
/// Never panics; what cannot be computed is omitted and explained in `notes`.
pub fn theory_at_init(config: &RunConfig, record: &RunRecord, step0: StepZero) -> Theory {
    let mut notes = Vec::new();
    let mut t = Theory { recurrent: recurrent(config, record, &mut notes), ..Theory::default() };
    // Dense layers in forward order (nested ones included) for the measured factor.
    let dense: Vec<usize> = record.layers.iter().filter(|l| l.kind == "dense").map(|l| l.index).collect();
    let hidden_all = &dense[..dense.len().saturating_sub(1)];
    let delta0 = |i: usize| -> Option<f64> {
        record.layer_stats.get(i)?.delta_norm.first().copied().filter(|v| v.is_finite() && *v > 0.0)
    };
    t.measured_layer_factor = fitted_factor(&hidden_all.iter().map(|&i| delta0(i)).collect::<Vec<_>>());
    if let Some(stack) = dense_stack(config, record, step0, &mut notes) {
        mean_field(&mut t, record, &stack, &mut notes);
    }
    if !t.recurrent.is_empty() {
        notes.push("recurrent layers: the feed-forward mean-field map does not apply; see `recurrent`".to_string());
    }
    for n in notes {
        if !t.notes.contains(&n) {
            t.notes.push(n);
        }
    }
    t
}

/// `exp(-slope)` of the least-squares line through `(k, ln v_k)` over the present values.
fn fitted_factor(values: &[Option<f64>]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = values.iter().enumerate().filter_map(|(k, v)| v.map(|v| (k as f64, v.ln()))).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let f = (-(sxy / sxx)).exp();
    (sxx > 0.0 && f.is_finite()).then_some(f)
}

/// A covered dense stack: the hidden layers' maps, their record indices, and the built network's
/// weights for the Jacobian.
struct Stack {
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
fn dense_stack(config: &RunConfig, record: &RunRecord, step0: StepZero, notes: &mut Vec<String>) -> Option<Stack> {
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
            LayerConfig::Rnn(_) => Some(""),
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
fn step_zero_inputs(config: &RunConfig, step0: StepZero) -> Result<Array2<f64>, String> {
    let data = generate(&config.data, config.seed).map_err(|e| e.to_string())?;
    let (train, _) = data.split(config.training.validation_split, config.seed);
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
fn mean_field(t: &mut Theory, record: &RunRecord, stack: &Stack, notes: &mut Vec<String>) {
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

/// Finds the config of the layer at `path` (indices through residual blocks).
fn config_at<'a>(layers: &'a [LayerConfig], path: &[usize]) -> Option<&'a LayerConfig> {
    let (first, rest) = path.split_first()?;
    let l = layers.get(*first)?;
    match (l, rest.is_empty()) {
        (_, true) => Some(l),
        (LayerConfig::Residual(inner), false) => config_at(inner, rest),
        _ => None,
    }
}

/// `|phi'| <= gamma` for the vanilla cell's activation.
fn gamma(a: Activation) -> f64 {
    match a {
        Activation::Sigmoid => 0.25,
        Activation::LeakyRelu { slope } => slope.abs().max(1.0),
        Activation::Elu { alpha } => alpha.abs().max(1.0),
        Activation::Prelu { init } => init.abs().max(1.0),
        Activation::Selu => 1.050_700_987_355_480_5 * 1.673_263_242_354_377_3,
        Activation::Gelu => 1.13,
        Activation::Silu => 1.1,
        _ => 1.0,
    }
}

/// One entry per recurrent layer, from the engine's step-0 spectra of `W_hh`.
fn recurrent(config: &RunConfig, record: &RunRecord, notes: &mut Vec<String>) -> Vec<RecurrentTheory> {
    let mut out = Vec::new();
    for (info, stats) in record.layers.iter().zip(&record.layer_stats) {
        if info.kind != "rnn" {
            continue;
        }
        let Some(LayerConfig::Rnn(rc)) = config_at(&config.network.layers, &info.path) else { continue };
        let Some(spectra) = stats.recurrent.first().map(|r| &r.spectra).filter(|s| !s.is_empty()) else {
            notes.push(format!("{}: W_hh spectra were not measured at step 0", info.name));
            continue;
        };
        if spectra.iter().any(|s| !s.sigma_max.is_finite() || !s.spectral_radius.is_finite()) {
            notes.push(format!("{}: W_hh spectra are not finite", info.name));
            continue;
        }
        let sigma_max = spectra.iter().map(|s| s.sigma_max).fold(0.0, f64::max);
        let spectral_radius = spectra.iter().map(|s| s.spectral_radius).fold(0.0, f64::max);
        let mut entry =
            RecurrentTheory { layer: info.name.clone(), sigma_max, spectral_radius, ..RecurrentTheory::default() };
        match rc.cell {
            CellKind::Vanilla => {
                entry.cell = "vanilla".to_string();
                entry.gamma = gamma(rc.activation);
                entry.pascanu_bound_factor = entry.gamma * sigma_max;
                entry.vanishing_guaranteed = Some(entry.pascanu_bound_factor < 1.0);
                entry.note = Some(if entry.pascanu_bound_factor < 1.0 {
                    format!(
                        "gamma * sigma_max = {:.3} < 1: ||dL/dh_t|| shrinks at least like {:.3}^(T-t) (Pascanu et al. \
                         2013, sufficient condition for vanishing)",
                        entry.pascanu_bound_factor, entry.pascanu_bound_factor
                    )
                } else {
                    format!(
                        "gamma * sigma_max = {:.3} >= 1: vanishing is not guaranteed; exploding is possible \
                         (sigma_max > 1/gamma is necessary for it, not sufficient)",
                        entry.pascanu_bound_factor
                    )
                });
            }
            cell => {
                entry.cell = if cell == CellKind::Lstm { "lstm" } else { "gru" }.to_string();
                entry.gamma = 1.0;
                entry.pascanu_bound_factor = sigma_max;
                entry.blocks = spectra
                    .iter()
                    .map(|s| RecurrentBlock {
                        block: s.block.to_string(),
                        sigma_max: s.sigma_max,
                        spectral_radius: s.spectral_radius,
                    })
                    .collect();
                entry.note = Some(
                    "gated cell: the vanilla bound gamma * sigma_max does not bound ||dh_t/dh_{t-1}||; the gates \
                     scale each path (for LSTM the cell state passes back through the forget gate, f * c_{t-1})"
                        .to_string(),
                );
            }
        }
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
                weight_decay: 0.0,
                clip: None,
                shuffle: true,
                precision: Precision::F64,
                validation_split: 0.2,
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
}
