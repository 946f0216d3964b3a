//! Expectations over a Gaussian: the Gauss-Hermite rule for `z ~ N(0, 1)` and the Gauss-Legendre
//! panels, their nodes and weights computed by Golub-Welsch (see the parent module's doc), and
//! `expect`, which picks between them.

use std::sync::OnceLock;

use crate::engine::config::Activation;

/// Gauss-Hermite nodes used for every expectation over `z ~ N(0, 1)` (even: no node at 0).
pub const QUADRATURE_NODES: usize = 128;
/// Gauss-Legendre nodes per panel where Gauss-Hermite is not accurate (see [`expect`]).
pub const LEGENDRE_NODES: usize = 16;
/// Largest `q` at which saturating activations use Gauss-Hermite (see [`expect`]).
pub const GAUSS_HERMITE_MAX_Q: f64 = 2.0;

/// Gauss-Hermite rule for `E[f(z)]`, `z ~ N(0, 1)`.
pub(super) struct Quadrature {
    pub(super) nodes: Vec<f64>,
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

pub(super) fn quadrature() -> &'static Quadrature {
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
pub(super) fn expect(mean: f64, q: f64, scale_free: bool, f: impl Fn(f64) -> f64) -> f64 {
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
pub(super) fn scale_free(a: Activation) -> bool {
    matches!(a, Activation::Linear | Activation::Relu | Activation::LeakyRelu { .. } | Activation::Prelu { .. })
}
