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
//! ([`Init::variance`](crate::engine::config::Init::variance)); for explicit weights, and for `constant`/`identity` inits (which are
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
//!
//! # Layout
//!
//! - `types`: the wire types (`Theory` and its parts, the report's `theory` block) and the
//!   input `StepZero`;
//! - `quadrature`: Gauss-Hermite and Gauss-Legendre rules (Golub-Welsch) and `expect`;
//! - `mean_field`: the covered dense stack, its length and chi maps, the fixed point, the
//!   predicted and measured profile, and the Jacobian spectrum;
//! - `recurrent`: the bound of each recurrent layer;
//! - this file: `theory_at_init`, which puts them together.
//!
//! Dependencies run one way: this file uses the others, `mean_field` uses `quadrature` and
//! `types`, `recurrent` uses `types` (no import cycle, `tests/layering.rs`).

mod mean_field;
mod quadrature;
mod recurrent;
#[cfg(test)]
mod tests;
mod transformer;
mod types;

pub use mean_field::{
    CRITICAL_TOLERANCE, JACOBIAN_MAX_COST, JACOBIAN_MAX_DEPTH, JACOBIAN_MAX_SVD, JACOBIAN_MAX_WIDTH, JACOBIAN_SAMPLES,
    MAX_PROFILE_SAMPLES, MAX_PROFILE_WORK,
};
pub use quadrature::{GAUSS_HERMITE_MAX_Q, LEGENDRE_NODES, QUADRATURE_NODES};
pub use transformer::{FALLING_LAST_OVER_FIRST, FLAT_MAX_OVER_MIN};
pub use types::{
    DepthProfile, DepthRegime, JacobianSpectrum, RecurrentBlock, RecurrentTheory, StepZero, Theory, TheoryProfile,
};

use crate::engine::config::RunConfig;
use crate::engine::layers::LayerKind;
use crate::engine::train::RunRecord;
use mean_field::{dense_stack, mean_field};
use recurrent::recurrent;

/// The theory block of a run of `config` whose step-0 probe is in `record`.
///
/// Never panics; what cannot be computed is omitted and explained in `notes`.
pub fn theory_at_init(config: &RunConfig, record: &RunRecord, step0: StepZero) -> Theory {
    let mut notes = Vec::new();
    let mut t = Theory {
        recurrent: recurrent(config, record, &mut notes),
        transformer: transformer::depth_profiles(config, record),
        ..Theory::default()
    };
    // Dense layers in forward order (nested ones included) for the measured factor.
    let dense: Vec<usize> = record.layers.iter().filter(|l| l.kind == LayerKind::Dense).map(|l| l.index).collect();
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
