//! The input-output Jacobian of a stack of dense layers at one input, and its singular values
//! (dynamical isometry, Pennington, Schoenholz & Ganguli 2017).
//!
//! ```text
//! h_k = W_k y_{k-1} + b_k,  y_k = f_k(h_k),  y_0 = x          W_k: (N_k, N_{k-1})
//! J   = dy_L/dx = D_L W_L D_{L-1} W_{L-1} ... D_1 W_1,   D_k = diag(f_k'(h_k))   J: (N_L, N_0)
//! ```
//! The product is formed from whichever end is cheaper: from the input side it costs
//! `N_0 * sum_k N_k N_{k-1}` multiply-adds, from the output side `N_L * sum_k N_k N_{k-1}`
//! ([`jacobian_cost`]). Singular values come from nalgebra's SVD (no hand-written
//! decomposition). Pure like the rest of the engine: plain arrays in, numbers out.

use ndarray::{Array1, Array2, ArrayView2};

use super::config::Activation;
use super::{EngineError, Result};

/// One dense layer of the stack, borrowed from wherever its parameters live.
#[derive(Debug, Clone)]
pub struct DenseMap<'a> {
    /// `units x inputs`, PyTorch's layout.
    pub weight: ArrayView2<'a, f64>,
    /// `units` biases.
    pub bias: &'a [f64],
    /// The activation applied after the affine map.
    pub activation: Activation,
    /// Per-unit PReLU slopes (ignored by other activations); `None` uses the activation's own.
    pub slopes: Option<&'a [f64]>,
}

/// Multiply-adds needed to form the Jacobian of `layers` (see the module doc).
pub fn jacobian_cost(layers: &[DenseMap<'_>]) -> f64 {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else { return 0.0 };
    let inner: f64 = layers.iter().map(|l| l.weight.len() as f64).sum();
    inner * (first.weight.ncols().min(last.weight.nrows()) as f64)
}

/// `dy_L/dx` at the input `x` (see the module doc): an `N_L x N_0` matrix.
///
/// # Errors
/// [`EngineError::Shape`] when consecutive layers or `x` do not fit together, or the stack is
/// empty.
pub fn dense_stack_jacobian(layers: &[DenseMap<'_>], x: &[f64]) -> Result<Array2<f64>> {
    let shape_error = |layer: usize, expected: usize, got: usize| EngineError::Shape {
        layer: format!("jacobian layer {layer}"),
        expected: format!("{expected} inputs"),
        got: format!("{got}"),
    };
    if layers.is_empty() {
        return Err(EngineError::Shape {
            layer: "jacobian".to_owned(),
            expected: "at least one dense layer".to_owned(),
            got: "none".to_owned(),
        });
    }
    // Forward: the derivative of every unit at this input.
    let mut y = Array1::from(x.to_vec());
    let mut derivs: Vec<Array1<f64>> = Vec::with_capacity(layers.len());
    for (k, l) in layers.iter().enumerate() {
        let (units, inputs) = l.weight.dim();
        if inputs != y.len() {
            return Err(shape_error(k, inputs, y.len()));
        }
        if l.bias.len() != units {
            return Err(shape_error(k, units, l.bias.len()));
        }
        let h = l.weight.dot(&y) + &Array1::from(l.bias.to_vec());
        let slope = |j: usize| l.slopes.and_then(|s| s.get(j).copied()).unwrap_or(prelu_default(l.activation));
        let out: Array1<f64> = h.iter().enumerate().map(|(j, &z)| l.activation.value(z, slope(j))).collect();
        let d: Array1<f64> =
            h.iter().zip(out.iter()).enumerate().map(|(j, (&z, &a))| l.activation.derivative(z, a, slope(j))).collect();
        derivs.push(d);
        y = out;
    }
    let (n0, nl) = (x.len(), y.len());
    // D_k W_k: the weight with row i scaled by f'(h_k)_i.
    let scaled = |k: usize| -> Array2<f64> {
        let mut m = layers[k].weight.to_owned();
        for (mut row, d) in m.rows_mut().into_iter().zip(derivs[k].iter()) {
            row *= *d;
        }
        m
    };
    let last = layers.len() - 1;
    if n0 <= nl {
        let mut j = scaled(0);
        for k in 1..layers.len() {
            j = scaled(k).dot(&j);
        }
        Ok(j)
    } else {
        let mut j = scaled(last);
        for k in (0..last).rev() {
            j = j.dot(&scaled(k));
        }
        Ok(j)
    }
}

fn prelu_default(a: Activation) -> f64 {
    match a {
        Activation::Prelu { init } => init,
        _ => 0.0,
    }
}

/// The singular values of `m`, largest first, by nalgebra's SVD; `None` when `m` holds a
/// non-finite entry or the SVD does not converge.
pub fn singular_values(m: &Array2<f64>) -> Option<Vec<f64>> {
    if m.is_empty() || m.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (rows, cols) = m.dim();
    let dm = nalgebra::DMatrix::from_fn(rows, cols, |i, j| m[(i, j)]);
    let svd = nalgebra::linalg::SVD::try_new(dm, false, false, f64::EPSILON, 1_000_000)?;
    let mut s: Vec<f64> = svd.singular_values.iter().copied().collect();
    s.sort_by(|a, b| b.total_cmp(a));
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn jacobian_of_one_tanh_layer_is_diag_derivative_times_weight() {
        let w = array![[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]];
        let b = [0.1, -0.2, 0.3];
        let x = [0.4, -0.3];
        let l = DenseMap { weight: w.view(), bias: &b, activation: Activation::Tanh, slopes: None };
        let j = dense_stack_jacobian(&[l], &x).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            let h = w[(i, 0)] * x[0] + w[(i, 1)] * x[1] + b[i];
            let d = 1.0 - h.tanh().powi(2);
            for k in 0..2 {
                assert!((j[(i, k)] - d * w[(i, k)]).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn both_multiplication_orders_agree_with_finite_differences() {
        // Wide input (forms from the output side) and narrow input (from the input side).
        for (n0, widths) in [(5usize, vec![7usize, 6, 3]), (2, vec![4, 8, 9])] {
            let mut ws = Vec::new();
            let mut bs = Vec::new();
            let mut fan = n0;
            for (k, &n) in widths.iter().enumerate() {
                ws.push(Array2::from_shape_fn((n, fan), |(i, j)| ((i * 7 + j * 3 + k) as f64).sin() * 0.6));
                bs.push((0..n).map(|i| (i as f64 * 0.3).cos() * 0.1).collect::<Vec<_>>());
                fan = n;
            }
            let acts = [Activation::Tanh, Activation::Sigmoid, Activation::Elu { alpha: 1.0 }];
            let layers: Vec<DenseMap<'_>> = ws
                .iter()
                .zip(&bs)
                .zip(acts)
                .map(|((w, b), a)| DenseMap { weight: w.view(), bias: b, activation: a, slopes: None })
                .collect();
            let x: Vec<f64> = (0..n0).map(|i| 0.3 * i as f64 - 0.5).collect();
            let j = dense_stack_jacobian(&layers, &x).unwrap_or_else(|e| panic!("{e}"));
            let forward = |x: &[f64]| -> Vec<f64> {
                let mut y = x.to_vec();
                for l in &layers {
                    let h = l.weight.dot(&Array1::from(y.clone())) + &Array1::from(l.bias.to_vec());
                    y = h.iter().map(|&z| l.activation.value(z, 0.0)).collect();
                }
                y
            };
            let eps = 1e-6;
            for c in 0..n0 {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[c] += eps;
                xm[c] -= eps;
                let (yp, ym) = (forward(&xp), forward(&xm));
                for r in 0..yp.len() {
                    let fd = (yp[r] - ym[r]) / (2.0 * eps);
                    assert!((j[(r, c)] - fd).abs() < 1e-8, "n0 {n0} J[{r},{c}] {} vs {fd}", j[(r, c)]);
                }
            }
        }
    }

    #[test]
    fn singular_values_of_a_diagonal_matrix_are_its_sorted_magnitudes() {
        let m = array![[0.5, 0.0, 0.0], [0.0, -3.0, 0.0]];
        let s = singular_values(&m).unwrap_or_default();
        assert_eq!(s.len(), 2);
        assert!((s[0] - 3.0).abs() < 1e-12 && (s[1] - 0.5).abs() < 1e-12);
        assert!(singular_values(&array![[f64::NAN]]).is_none());
    }

    #[test]
    fn mismatched_shapes_are_errors_not_panics() {
        let w = array![[1.0, 2.0]];
        let l = DenseMap { weight: w.view(), bias: &[0.0], activation: Activation::Linear, slopes: None };
        assert!(dense_stack_jacobian(std::slice::from_ref(&l), &[1.0]).is_err());
        assert!(dense_stack_jacobian(&[], &[1.0]).is_err());
        let bad_bias = DenseMap { bias: &[], ..l };
        assert!(dense_stack_jacobian(&[bad_bias], &[1.0, 2.0]).is_err());
    }
}
