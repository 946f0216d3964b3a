//! The measurements the rules, the recommendations and the summary share, each defined once.
//!
//! - **Hidden weight layers** ([`hidden_weight_layers`]): the dense and recurrent layers of the
//!   network in forward order (nested ones included), without the last one — the output layer.
//! - **First/last ratios** ([`FirstLast`]): the first hidden weight layer's `grad_norm` (and
//!   `delta_norm`) over the last hidden weight layer's, at a probe. The summary's
//!   `grad_ratio_first_last`, the evidence of `vanishing_gradient` / `exploding_gradient` and a
//!   recommendation's `measured` ratio are all this one number.
//! - **Memory horizon** ([`memory_horizon`]): the largest lag `T - t` at which ||dL/dh_t|| is
//!   still above [`HORIZON_FRACTION`] of its maximum over t, for the first recurrent layer
//!   ([`first_recurrent`], the one the gradient must travel furthest to reach).
//!
//! Depends on the engine's run record only.

use crate::engine::layers::LayerKind;
use crate::engine::network::LayerInfo;
use crate::engine::train::RunRecord;

/// A gradient below this fraction of the curve's maximum no longer counts as reaching back.
pub const HORIZON_FRACTION: f64 = 1e-3;

/// Positions (in forward order, as in `record.layers` and the report's `layers`) of the hidden
/// weight layers among layers of the given kinds: dense and recurrent layers except the last
/// one (the output layer).
pub fn hidden_weight_layers(kinds: impl IntoIterator<Item = LayerKind>) -> Vec<usize> {
    let weights: Vec<usize> = kinds.into_iter().enumerate().filter(|(_, k)| k.has_weights()).map(|(i, _)| i).collect();
    match weights.split_last() {
        Some((_, hidden)) => hidden.to_vec(),
        None => Vec::new(),
    }
}

/// Index of the first recurrent layer, if any.
pub fn first_recurrent(layers: &[LayerInfo]) -> Option<usize> {
    layers.iter().position(|l| l.kind == LayerKind::Rnn)
}

/// The sequence length T of a recurrent network (of its first recurrent layer), if any.
pub fn sequence_length(record: &RunRecord) -> Option<usize> {
    let i = first_recurrent(&record.layers)?;
    record.layer_stats.get(i)?.recurrent.first().map(|r| r.timestep_grad_norm.len())
}

/// The first and the last hidden weight layer, when there are at least two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstLast {
    /// Index of the first hidden weight layer.
    pub first: usize,
    /// Index of the last hidden weight layer.
    pub last: usize,
    /// Hidden weight layers between them (their count minus one), as the exponent of the
    /// per-layer factor.
    pub span: f64,
}

/// The two ratios at one probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    /// First over last `grad_norm` (finite).
    pub grad: f64,
    /// First over last `delta_norm`, the last floored at the smallest positive float; `None`
    /// when either is not finite.
    pub delta: Option<f64>,
}

impl Ratios {
    /// The smaller of the two: weight gradients of a ReLU stack stay uniform even when the
    /// signal shrinks both ways, and `delta_norm` (the gradient reaching the layer's output)
    /// shows it.
    pub fn worst_small(&self) -> f64 {
        self.grad.min(self.delta.unwrap_or(self.grad))
    }

    /// The larger of the two, the mirror of [`Ratios::worst_small`]: a chaotic ReLU stack
    /// (He init at gain 2) keeps its weight-gradient ratio near 1 while the gradient reaching
    /// the first layer's output grows by the gain squared per layer.
    pub fn worst_large(&self) -> f64 {
        self.grad.max(self.delta.unwrap_or(self.grad))
    }

    /// Which of the two [`Ratios::worst_large`] is.
    pub fn largest(&self) -> RatioKind {
        match self.delta {
            Some(d) if d > self.grad => RatioKind::DeltaNorm,
            _ => RatioKind::GradNorm,
        }
    }

    /// Which of the two [`Ratios::worst_small`] is.
    pub fn smallest(&self) -> RatioKind {
        match self.delta {
            Some(d) if d < self.grad => RatioKind::DeltaNorm,
            _ => RatioKind::GradNorm,
        }
    }
}

/// Which first/last ratio a depth finding rests on (its serde name is the measured quantity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioKind {
    /// The weight gradients' norms (`grad_norm`).
    GradNorm,
    /// The backward signal reaching each layer's output (`delta_norm`).
    DeltaNorm,
}

impl FirstLast {
    /// The first and last hidden weight layers of `record`.
    pub fn of(record: &RunRecord) -> Option<FirstLast> {
        let hidden = hidden_weight_layers(record.layers.iter().map(|l| l.kind));
        let (&first, &last) = (hidden.first()?, hidden.last()?);
        (hidden.len() >= 2).then(|| FirstLast { first, last, span: (hidden.len() - 1) as f64 })
    }

    /// The ratios at probe index `probe`; `None` when a `grad_norm` is missing or not finite.
    pub fn ratios(&self, record: &RunRecord, probe: usize) -> Option<Ratios> {
        let grad =
            |i: usize| record.layer_stats.get(i)?.grad_norm.get(probe).copied().flatten().filter(|x| x.is_finite());
        let delta = |i: usize| record.layer_stats.get(i)?.delta_norm.get(probe).copied().filter(|x| x.is_finite());
        let grad = grad(self.first).zip(grad(self.last)).map(|(a, b)| a / b)?;
        let delta = delta(self.first).zip(delta(self.last)).map(|(a, b)| a / b.max(f64::MIN_POSITIVE));
        Some(Ratios { grad, delta })
    }
}

/// `grad_norm` of the first hidden weight layer over the last's, at step 0 (the summary's
/// `grad_ratio_first_last`, and what a recommendation's `measured` reports).
pub fn grad_ratio_first_last(record: &RunRecord) -> Option<f64> {
    FirstLast::of(record)?.ratios(record, 0).map(|r| r.grad)
}

/// `delta_norm` of the first hidden weight layer over the last's, at step 0.
pub fn delta_ratio_first_last(record: &RunRecord) -> Option<f64> {
    FirstLast::of(record)?.ratios(record, 0)?.delta
}

/// The largest lag `T - t` (t = 1..T) with `norms[t-1] > HORIZON_FRACTION * max(norms)`;
/// `None` when the curve is empty or carries no gradient.
pub fn memory_horizon(norms: &[f64]) -> Option<usize> {
    let max = norms.iter().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    if max <= 0.0 {
        return None;
    }
    let first = norms.iter().position(|&v| v.is_finite() && v > HORIZON_FRACTION * max)?;
    Some(norms.len() - 1 - first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_horizon_is_the_longest_lag_above_a_thousandth_of_the_maximum() {
        assert_eq!(memory_horizon(&[]), None);
        assert_eq!(memory_horizon(&[0.0, 0.0]), None);
        // t = 1..4; 1e-4 is below 1e-3 of the maximum 1, 2e-3 is above: lag 4 - 2 = 2.
        assert_eq!(memory_horizon(&[1e-4, 2e-3, 0.5, 1.0]), Some(2));
        assert_eq!(memory_horizon(&[1.0, 1.0, 1.0]), Some(2));
    }

    #[test]
    fn the_worst_ratio_is_the_smaller_one() {
        let r = Ratios { grad: 1.0, delta: Some(1e-3) };
        assert_eq!(r.worst_small(), 1e-3);
        assert_eq!(Ratios { grad: 0.5, delta: None }.worst_small(), 0.5);
        assert_eq!(r.smallest(), RatioKind::DeltaNorm);
    }

    #[test]
    fn the_worst_large_ratio_is_the_larger_one() {
        let r = Ratios { grad: 1.0, delta: Some(2.7e3) };
        assert_eq!(r.worst_large(), 2.7e3);
        assert_eq!(r.largest(), RatioKind::DeltaNorm);
        let r = Ratios { grad: 5e2, delta: Some(3.0) };
        assert_eq!((r.worst_large(), r.largest()), (5e2, RatioKind::GradNorm));
        assert_eq!(Ratios { grad: 0.5, delta: None }.worst_large(), 0.5);
    }
}
