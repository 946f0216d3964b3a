//! Losses and their gradients with respect to the network output (the logits).
//!
//! ```text
//! cross_entropy: L = 1/B sum_b [logsumexp(z_b) - z_b,y_b]        dz = (softmax(z) - onehot(y)) / B
//! mse:           L = 1/(B K) sum (z - t)^2                        dz = 2 (z - t) / (B K)
//! bce (logits):  L = 1/(B K) sum [max(z,0) - z t + ln(1 + e^-|z|)] dz = (sigmoid(z) - t) / (B K)
//! ```
//! Shapes: z, dz: (B, K). Class labels are one-hot for mse and, with K > 1, for bce; with K = 1
//! bce takes the label (0 or 1) as the target. logsumexp subtracts the row maximum first and bce
//! uses the |z| form, so neither overflows for large logits.

use ndarray::Array2;

use super::config::{Activation, LossKind};
use super::layers::{ensure_shape, rows, rows_mut, values, values_mut};
use super::{Result, Scalar};

/// The targets of one batch.
#[derive(Debug, Clone, Copy)]
pub enum BatchTargets<'a, T> {
    /// Class indices, one per row.
    Classes(&'a [usize]),
    /// Regression targets, the logits' shape.
    Values(&'a Array2<T>),
}

/// Loss of a batch and how many samples were classified correctly (when that means something).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossValue {
    /// Mean loss (accumulated in f64).
    pub loss: f64,
    /// Correct predictions for class targets (argmax, or `z > 0` for a single bce logit).
    pub correct: Option<usize>,
}

/// Computes the loss of `z` and writes dL/dz into `dz`. Fails only when `dz` cannot be allocated
/// ([`crate::engine::EngineError::OutOfMemory`]).
pub fn loss_and_grad<T: Scalar>(
    kind: LossKind,
    z: &Array2<T>,
    targets: BatchTargets<'_, T>,
    dz: &mut Array2<T>,
) -> Result<LossValue> {
    let (b, k) = z.dim();
    ensure_shape(dz, b, k, "the loss gradient")?;
    let target = |i: usize, j: usize| -> T {
        match targets {
            BatchTargets::Classes(labels) => {
                if k == 1 {
                    T::of(labels.get(i).copied().unwrap_or(0) as f64)
                } else if labels.get(i) == Some(&j) {
                    T::one()
                } else {
                    T::zero()
                }
            }
            BatchTargets::Values(t) => t.get((i, j)).copied().unwrap_or_else(T::zero),
        }
    };
    let mut total = 0.0f64;
    match kind {
        LossKind::CrossEntropy => {
            // Per row: m = max_j z_j, e_j = e^(z_j - m), lse = m + ln(sum_j e_j), and
            // softmax p_j = e_j / sum_j e_j = e^(z_j - lse). Row slices, one branchless exp per
            // logit (it vectorises), written into dz and turned into (p - t) / B in place.
            let inv_b = T::of(1.0 / b.max(1) as f64);
            let zs = values(z);
            for (i, (row, drow)) in rows(&zs, k).zip(rows_mut(values_mut(dz), k)).enumerate() {
                let m = row.iter().copied().fold(T::neg_infinity(), T::max);
                for (e, &v) in drow.iter_mut().zip(row) {
                    *e = (v - m).exp_branchless();
                }
                let sum: T = drow.iter().copied().sum();
                let lse = m + sum.ln();
                let label = match targets {
                    BatchTargets::Classes(l) => Some(l.get(i).copied().unwrap_or(0)),
                    // Soft targets: cross-entropy against a distribution.
                    BatchTargets::Values(_) => None,
                };
                for (j, (d, &v)) in drow.iter_mut().zip(row).enumerate() {
                    let t = match label {
                        Some(y) if y == j => T::one(),
                        Some(_) => T::zero(),
                        None => target(i, j),
                    };
                    total -= t.f64() * (v - lse).f64();
                    *d = (*d / sum - t) * inv_b;
                }
            }
            total /= b.max(1) as f64;
        }
        LossKind::Mse => {
            let scale = T::of(2.0 / (b * k).max(1) as f64);
            for i in 0..b {
                for j in 0..k {
                    let d = z[(i, j)] - target(i, j);
                    total += (d * d).f64();
                    dz[(i, j)] = d * scale;
                }
            }
            total /= (b * k).max(1) as f64;
        }
        LossKind::Bce => {
            let scale = T::of(1.0 / (b * k).max(1) as f64);
            for i in 0..b {
                for j in 0..k {
                    let (x, t) = (z[(i, j)], target(i, j));
                    let l = x.max(T::zero()) - x * t + (-x.abs()).exp().ln_1p();
                    total += l.f64();
                    let s = Activation::Sigmoid.value(x, T::zero());
                    dz[(i, j)] = (s - t) * scale;
                }
            }
            total /= (b * k).max(1) as f64;
        }
    }
    Ok(LossValue { loss: total, correct: count_correct(kind, z, targets) })
}

fn count_correct<T: Scalar>(kind: LossKind, z: &Array2<T>, targets: BatchTargets<'_, T>) -> Option<usize> {
    let BatchTargets::Classes(labels) = targets else { return None };
    let k = z.ncols();
    if k == 1 {
        // A single logit: bce's decision boundary is z = 0; for mse the target is the label itself.
        let threshold = if kind == LossKind::Mse { 0.5 } else { 0.0 };
        return Some(z.column(0).iter().zip(labels).filter(|(v, &l)| (v.f64() > threshold) == (l == 1)).count());
    }
    Some(
        z.rows()
            .into_iter()
            .zip(labels)
            .filter(|(row, &l)| {
                let mut best = 0;
                for j in 1..row.len() {
                    if row[j] > row[best] {
                        best = j;
                    }
                }
                best == l
            })
            .count(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn numeric_grad(kind: LossKind, z: &Array2<f64>, t: BatchTargets<'_, f64>) -> Array2<f64> {
        let h = 1e-6;
        let mut g = Array2::zeros(z.raw_dim());
        let mut scratch = Array2::zeros(z.raw_dim());
        for idx in 0..z.len() {
            let (i, j) = (idx / z.ncols(), idx % z.ncols());
            let mut zp = z.clone();
            zp[(i, j)] += h;
            let mut zm = z.clone();
            zm[(i, j)] -= h;
            let lp = loss_and_grad(kind, &zp, t, &mut scratch).unwrap().loss;
            let lm = loss_and_grad(kind, &zm, t, &mut scratch).unwrap().loss;
            g[(i, j)] = (lp - lm) / (2.0 * h);
        }
        g
    }

    #[test]
    fn loss_gradients_match_central_differences() {
        let z = array![[0.3, -1.2, 2.0], [1.5, 0.1, -0.4]];
        let labels = [2usize, 0];
        let values = array![[0.5, -1.0, 1.0], [0.0, 0.2, 0.9]];
        let bits = array![[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]];
        let cases: [(LossKind, BatchTargets<'_, f64>); 5] = [
            (LossKind::CrossEntropy, BatchTargets::Classes(&labels)),
            (LossKind::Mse, BatchTargets::Values(&values)),
            (LossKind::Mse, BatchTargets::Classes(&labels)),
            (LossKind::Bce, BatchTargets::Values(&bits)),
            (LossKind::Bce, BatchTargets::Classes(&labels)),
        ];
        for (kind, t) in cases {
            let mut dz = Array2::zeros((0, 0));
            loss_and_grad(kind, &z, t, &mut dz).unwrap();
            let num = numeric_grad(kind, &z, t);
            for (a, n) in dz.iter().zip(num.iter()) {
                assert!((a - n).abs() < 1e-8, "{kind:?}: analytic {a} numeric {n}");
            }
        }
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_ln_classes() {
        // softmax of equal logits is 1/K, so L = ln K.
        let z = Array2::<f64>::zeros((4, 10));
        let mut dz = Array2::zeros((0, 0));
        let v = loss_and_grad(LossKind::CrossEntropy, &z, BatchTargets::Classes(&[1, 2, 3, 4]), &mut dz).unwrap();
        assert!((v.loss - 10f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn huge_logits_stay_finite() {
        let z = array![[1e30f32, -1e30], [-1e30, 1e30]];
        let mut dz = Array2::zeros((0, 0));
        for kind in [LossKind::CrossEntropy, LossKind::Bce] {
            let v = loss_and_grad(kind, &z, BatchTargets::Classes(&[0, 1]), &mut dz).unwrap();
            assert!(v.loss.is_finite(), "{kind:?}");
            assert!(dz.iter().all(|g| g.is_finite()));
        }
    }
}
