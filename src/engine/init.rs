//! Parameter initialisations with PyTorch's formulas (`torch.nn.init`); each variant of [`Init`]
//! (`engine/config.rs`) states its own.
//!
//! Values are drawn in `f64` and then rounded to the run's precision, so an `f32` and an `f64` run
//! of the same spec start from the same weights. `fan_in` is the number of inputs of a unit and
//! `fan_out` the number of units (PyTorch's convention for a `units x inputs` weight).

use ndarray::Array2;
use rand::Rng as _;
use rand_distr::StandardNormal;

use super::config::{FanMode, Init};
use super::rng::Rng;

impl Init {
    /// A `rows x cols` matrix (`units x inputs` for a dense weight).
    pub fn matrix(&self, rows: usize, cols: usize, rng: &mut Rng) -> Array2<f64> {
        let (fan_in, fan_out) = (cols.max(1) as f64, rows.max(1) as f64);
        let fan = |mode: FanMode| match mode {
            FanMode::FanIn => fan_in,
            FanMode::FanOut => fan_out,
        };
        match *self {
            Init::Normal { std } => normal(rows, cols, std, rng),
            Init::Uniform { limit } => uniform(rows, cols, limit, rng),
            Init::Constant { value } => Array2::from_elem((rows, cols), value),
            Init::XavierUniform { gain } => uniform(rows, cols, gain * (6.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::XavierNormal { gain } => normal(rows, cols, gain * (2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::HeUniform { gain, mode } => uniform(rows, cols, gain * (6.0 / fan(mode)).sqrt(), rng),
            Init::HeNormal { gain, mode } => normal(rows, cols, gain * (2.0 / fan(mode)).sqrt(), rng),
            Init::LecunNormal { gain, mode } => normal(rows, cols, gain * (1.0 / fan(mode)).sqrt(), rng),
            Init::Orthogonal { gain } => orthogonal(rows, cols, rng) * gain,
            Init::Identity { gain } => {
                let mut m = Array2::zeros((rows, cols));
                for i in 0..rows.min(cols) {
                    m[(i, i)] = gain;
                }
                m
            }
        }
    }

    /// A vector of length `n` (biases): treated as an `n x 1` matrix for fan-based rules.
    pub fn vector(&self, n: usize, rng: &mut Rng) -> Vec<f64> {
        self.matrix(n, 1, rng).into_raw_vec_and_offset().0
    }

    /// The weight variance the rule gives a `rows x cols` matrix: `sigma_w^2 / fan_in` is what
    /// mean-field theory calls `sigma_w^2`-scaled, so `variance * fan_in` is sigma_w^2.
    pub fn variance(&self, rows: usize, cols: usize) -> Option<f64> {
        let (fan_in, fan_out) = (cols.max(1) as f64, rows.max(1) as f64);
        let fan = |mode: FanMode| match mode {
            FanMode::FanIn => fan_in,
            FanMode::FanOut => fan_out,
        };
        Some(match *self {
            Init::Normal { std } => std * std,
            Init::Uniform { limit } => limit * limit / 3.0,
            Init::Constant { .. } | Init::Identity { .. } => return None,
            Init::XavierUniform { gain } | Init::XavierNormal { gain } => gain * gain * 2.0 / (fan_in + fan_out),
            Init::HeUniform { gain, mode } | Init::HeNormal { gain, mode } => gain * gain * 2.0 / fan(mode),
            Init::LecunNormal { gain, mode } => gain * gain / fan(mode),
            // A semi-orthogonal rows x cols matrix has squared Frobenius norm min(rows, cols).
            Init::Orthogonal { gain } => gain * gain * rows.min(cols) as f64 / (rows * cols).max(1) as f64,
        })
    }
}

fn normal(rows: usize, cols: usize, std: f64, rng: &mut Rng) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || std * rng.sample::<f64, _>(StandardNormal))
}

fn uniform(rows: usize, cols: usize, limit: f64, rng: &mut Rng) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || limit * (2.0 * rng.random::<f64>() - 1.0))
}

/// PyTorch's `orthogonal_`: QR of a Gaussian matrix (transposed when wide), with the columns of
/// Q multiplied by sign(diag R) so the result is uniformly (Haar) distributed.
fn orthogonal(rows: usize, cols: usize, rng: &mut Rng) -> Array2<f64> {
    let (r, c) = if rows < cols { (cols, rows) } else { (rows, cols) };
    let g = nalgebra::DMatrix::<f64>::from_fn(r, c, |_, _| rng.sample::<f64, _>(StandardNormal));
    let qr = g.qr();
    let (q, rr) = (qr.q(), qr.r());
    let mut out = Array2::zeros((rows, cols));
    for i in 0..r {
        for j in 0..c {
            let sign = if rr[(j, j)] < 0.0 { -1.0 } else { 1.0 };
            let v = q[(i, j)] * sign;
            if rows < cols {
                out[(j, i)] = v;
            } else {
                out[(i, j)] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rng::{rng, Stream};

    fn sample_var(m: &Array2<f64>) -> f64 {
        let n = m.len() as f64;
        let mean = m.sum() / n;
        m.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
    }

    #[test]
    fn variance_scaling_rules_give_their_documented_variance() {
        let mut r = rng(3, Stream::Init);
        let (rows, cols) = (300, 500);
        let inits = [
            Init::XavierUniform { gain: 1.0 },
            Init::XavierNormal { gain: 2.0 },
            Init::HeUniform { gain: 1.0, mode: FanMode::FanIn },
            Init::HeNormal { gain: 1.0, mode: FanMode::FanOut },
            Init::LecunNormal { gain: 0.7, mode: FanMode::FanIn },
            Init::Normal { std: 0.05 },
            Init::Uniform { limit: 0.2 },
        ];
        for init in inits {
            let m = init.matrix(rows, cols, &mut r);
            let expected = init.variance(rows, cols).unwrap_or(f64::NAN);
            let got = sample_var(&m);
            assert!((got / expected - 1.0).abs() < 0.02, "{init:?}: var {got}, expected {expected}");
        }
    }

    #[test]
    fn orthogonal_rows_are_orthonormal_for_tall_and_wide() {
        let mut r = rng(1, Stream::Init);
        for (rows, cols) in [(6, 6), (8, 3), (3, 8)] {
            let m = Init::Orthogonal { gain: 1.0 }.matrix(rows, cols, &mut r);
            // The smaller Gram matrix (M^T M for tall, M M^T for wide) is the identity.
            let g = if rows >= cols { m.t().dot(&m) } else { m.dot(&m.t()) };
            for ((i, j), v) in g.indexed_iter() {
                let e = if i == j { 1.0 } else { 0.0 };
                assert!((v - e).abs() < 1e-12, "{rows}x{cols} gram[{i},{j}] = {v}");
            }
        }
    }

    #[test]
    fn identity_puts_gain_on_the_diagonal() {
        let mut r = rng(1, Stream::Init);
        let m = Init::Identity { gain: 0.5 }.matrix(3, 4, &mut r);
        assert_eq!(m[(2, 2)], 0.5);
        assert_eq!(m.sum(), 1.5);
    }
}
