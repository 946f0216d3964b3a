//! Elementwise activation functions and their exact derivatives.
//!
//! Each function is written once as a scalar `value` and `derivative`; layers map them over
//! arrays. The derivative takes both the input `z` and the output `a = f(z)` because for several
//! functions the output is the cheaper (and numerically better) way to the slope: sigmoid'
//! = a (1 - a), tanh' = 1 - a^2.
//!
//! Conventions at kinks follow PyTorch, so gradients match it exactly: relu'(0) = 0,
//! leaky_relu'(0) = slope, elu'(0) = alpha, prelu'(0) = slope.

use super::config::Activation;
use super::Scalar;

/// SELU constants (Klambauer et al. 2017), as in PyTorch.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// PyTorch's softplus switches to the identity above this input (beta = 1).
const SOFTPLUS_THRESHOLD: f64 = 20.0;
/// A sigmoid or tanh unit counts as saturated when its derivative is below this fraction of the
/// function's largest derivative (sigmoid 1/4, tanh 1): |z| > ~5.3 for tanh, > ~6.9 for sigmoid.
pub const SATURATION_FRACTION: f64 = 0.01;

/// `1 / (1 + e^-z)`, as `1 / (1 + e)` for z >= 0 and `e / (1 + e)` below, with `e = e^-|z| <= 1`,
/// so the exponential never overflows. Selects rather than branches, and the branchless `exp`,
/// so that a loop over it vectorises.
#[inline(always)]
fn sigmoid<T: Scalar>(z: T) -> T {
    let e = (-z.abs()).exp_branchless();
    let numerator = if z >= T::zero() { T::one() } else { e };
    numerator / (T::one() + e)
}

/// Standard normal CDF and density via erf (f64; exact GELU as PyTorch's default).
fn gelu_parts(z: f64) -> (f64, f64) {
    let cdf = 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
    let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    (cdf, pdf)
}

impl Activation {
    /// f(z). `slope` is the unit's learnable slope for `Prelu` and ignored otherwise.
    ///
    /// Always inlined: called with a constant activation inside an elementwise loop, the `match`
    /// folds to one arm and the loop vectorises (see `layers::specialise!`).
    #[inline(always)]
    pub fn value<T: Scalar>(&self, z: T, slope: T) -> T {
        let zero = T::zero();
        match *self {
            Activation::Linear => z,
            Activation::Sigmoid => sigmoid(z),
            Activation::Tanh => z.tanh(),
            Activation::Relu => {
                if z > zero {
                    z
                } else {
                    zero
                }
            }
            Activation::LeakyRelu { slope: s } => {
                if z > zero {
                    z
                } else {
                    z * T::of(s)
                }
            }
            Activation::Prelu { .. } => {
                if z > zero {
                    z
                } else {
                    z * slope
                }
            }
            Activation::Elu { alpha } => {
                if z > zero {
                    z
                } else {
                    T::of(alpha) * z.exp_m1()
                }
            }
            Activation::Selu => {
                let s = T::of(SELU_SCALE);
                if z > zero {
                    s * z
                } else {
                    s * T::of(SELU_ALPHA) * z.exp_m1()
                }
            }
            Activation::Gelu => {
                let (cdf, _) = gelu_parts(z.f64());
                z * T::of(cdf)
            }
            Activation::Softplus => {
                if z.f64() > SOFTPLUS_THRESHOLD {
                    z
                } else {
                    z.exp().ln_1p()
                }
            }
            Activation::Silu => z * sigmoid(z),
        }
    }

    /// f'(z), given `a = f(z)`. Always inlined, as [`Self::value`].
    #[inline(always)]
    pub fn derivative<T: Scalar>(&self, z: T, a: T, slope: T) -> T {
        let zero = T::zero();
        let one = T::one();
        match *self {
            Activation::Linear => one,
            Activation::Sigmoid => a * (one - a),
            Activation::Tanh => one - a * a,
            Activation::Relu => {
                if z > zero {
                    one
                } else {
                    zero
                }
            }
            Activation::LeakyRelu { slope: s } => {
                if z > zero {
                    one
                } else {
                    T::of(s)
                }
            }
            Activation::Prelu { .. } => {
                if z > zero {
                    one
                } else {
                    slope
                }
            }
            // elu'(z) = alpha e^z = a + alpha for z <= 0.
            Activation::Elu { alpha } => {
                if z > zero {
                    one
                } else {
                    a + T::of(alpha)
                }
            }
            Activation::Selu => {
                let s = T::of(SELU_SCALE);
                if z > zero {
                    s
                } else {
                    a + s * T::of(SELU_ALPHA)
                }
            }
            // d/dz [z Phi(z)] = Phi(z) + z phi(z)
            Activation::Gelu => {
                let (cdf, pdf) = gelu_parts(z.f64());
                T::of(cdf + z.f64() * pdf)
            }
            Activation::Softplus => {
                if z.f64() > SOFTPLUS_THRESHOLD {
                    one
                } else {
                    sigmoid(z)
                }
            }
            // d/dz [z s(z)] = s(z) (1 + z (1 - s(z)))
            Activation::Silu => {
                let s = sigmoid(z);
                s * (one + z * (one - s))
            }
        }
    }

    /// The largest value f' takes, for the saturating functions whose saturation is measured.
    pub fn max_derivative(&self) -> Option<f64> {
        match self {
            Activation::Sigmoid => Some(0.25),
            Activation::Tanh => Some(1.0),
            _ => None,
        }
    }

    /// True when the derivative follows from the output alone: `derivative(a, a, _)` is f'(z)
    /// for `a = f(z)`, so a layer may apply `f` in place and keep no copy of `z`. Holds for
    /// linear, sigmoid and tanh (f' is a function of `a`) and ReLU (`a > 0` exactly when `z > 0`).
    pub fn derivative_from_output(&self) -> bool {
        matches!(self, Activation::Linear | Activation::Sigmoid | Activation::Tanh | Activation::Relu)
    }

    /// True for ReLU, the one activation whose units die (output and gradient exactly zero).
    pub fn can_die(&self) -> bool {
        matches!(self, Activation::Relu)
    }

    /// Name as in the spec (`leaky_relu`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Prelu { .. } => "prelu",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
            Activation::Softplus => "softplus",
            Activation::Silu => "silu",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 11] = [
        Activation::Linear,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::Elu { alpha: 1.3 },
        Activation::Prelu { init: 0.25 },
        Activation::Selu,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Silu,
    ];

    /// f'(z) against the central difference (f(z+h) - f(z-h)) / 2h, away from the kink at 0.
    #[test]
    fn every_derivative_matches_central_difference() {
        let h = 1e-6;
        for act in ALL {
            for &z in &[-7.5f64, -2.0, -0.3, 0.2, 1.7, 6.0, 25.0] {
                let slope = 0.3f64;
                let a = act.value(z, slope);
                let numeric = (act.value(z + h, slope) - act.value(z - h, slope)) / (2.0 * h);
                let analytic = act.derivative(z, a, slope);
                let err = (numeric - analytic).abs() / analytic.abs().max(1e-3);
                assert!(err < 1e-6, "{act:?} at {z}: analytic {analytic}, numeric {numeric}");
            }
        }
    }

    #[test]
    fn sigmoid_is_stable_for_large_inputs() {
        assert_eq!(Activation::Sigmoid.value(-1000.0f64, 0.0), 0.0);
        assert_eq!(Activation::Sigmoid.value(1000.0f64, 0.0), 1.0);
        assert!(Activation::Sigmoid.value(-1000.0f32, 0.0).is_finite());
    }

    #[test]
    fn output_only_derivatives_match() {
        for act in ALL.into_iter().filter(Activation::derivative_from_output) {
            for &z in &[-7.5f64, -2.0, -0.3, 0.0, 0.2, 1.7, 6.0, f64::NAN] {
                let a = act.value(z, 0.0);
                let (from_z, from_a) = (act.derivative(z, a, 0.0), act.derivative(a, a, 0.0));
                assert!(from_z == from_a || (from_z.is_nan() && from_a.is_nan()), "{act:?} at {z}");
            }
        }
    }

    #[test]
    fn kinks_follow_pytorch() {
        assert_eq!(Activation::Relu.derivative(0.0f64, 0.0, 0.0), 0.0);
        assert_eq!(Activation::LeakyRelu { slope: 0.1 }.derivative(0.0f64, 0.0, 0.0), 0.1);
        assert_eq!(Activation::Prelu { init: 0.25 }.derivative(0.0f64, 0.0, 0.4), 0.4);
    }
}
