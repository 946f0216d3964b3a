//! The depth profile of transformer stacks at initialisation (Xiong et al. 2020, Theorem 1)
//! beside the measured one.
//!
//! Xiong et al. bound the gradient of the last block's FFN weights at init by `O(d sqrt(ln d))`
//! for post-LN (independent of the depth L) and by `O(d sqrt(ln d / L))` for pre-LN: in a pre-LN
//! stack every block adds to a residual stream whose norm `sigma_l` grows like `sqrt(l)`, and the
//! final layer norm divides the gradient reaching block `l` by it, so the gradient falls toward
//! the output as `1 / sigma_l`; in a post-LN stack every block's output is normalised, so the
//! profile is flat. gradscope predicts from the measured stream norms: post-LN `g_l = g` (the
//! geometric mean of the measured profile), pre-LN `g_l = g_1 sigma_1 / sigma_l`. Measured with
//! PyTorch's setup (tests/transformer_science.rs): post-LN max/min 1.28 at L = 12, slope of the
//! last block's gradient against L +0.07; pre-LN last/first 0.40, slope -0.50.

use super::types::{DepthProfile, DepthRegime};
use crate::engine::config::{BlockPart, LayerConfig, RunConfig};
use crate::engine::train::RunRecord;

/// A profile whose largest and smallest block differ by at most this factor is flat.
pub const FLAT_MAX_OVER_MIN: f64 = 2.0;
/// A profile whose last block's gradient is at most this fraction of the first's falls toward
/// the output.
pub const FALLING_LAST_OVER_FIRST: f64 = 0.6;

/// One profile per transformer layer of at least two blocks, from the step-0 probes.
pub(super) fn depth_profiles(config: &RunConfig, record: &RunRecord) -> Vec<DepthProfile> {
    let mut out = Vec::new();
    for (i, layer) in config.network.layers.iter().enumerate() {
        let LayerConfig::Transformer(t) = layer else { continue };
        if t.depth < 2 {
            continue;
        }
        let grad = |b: usize| -> Option<f64> {
            let l = record.layers.iter().find(|l| l.path == [i] && l.part == Some((b, BlockPart::Linear2)))?;
            record.layer_stats[l.index].grad_norm.first().copied().flatten().filter(|v| v.is_finite() && *v > 0.0)
        };
        let stream = |b: usize| -> Option<f64> {
            let k = record.blocks.iter().position(|x| x.path == [i] && x.within == Some(b))?;
            // The stream entering block b is the previous block's output; block 0's input is
            // the transformer's input, which no block records: use block 0's output instead.
            let k = if b == 0 { k } else { k - 1 };
            record.block_stats[k].stream_norm.first().copied().filter(|v| v.is_finite() && *v > 0.0)
        };
        let measured: Vec<Option<f64>> = (0..t.depth).map(grad).collect();
        let stream_norm: Vec<Option<f64>> = (0..t.depth).map(stream).collect();
        let logs: Vec<f64> = measured.iter().flatten().map(|g| g.ln()).collect();
        let predicted: Vec<Option<f64>> = if t.norm_first {
            let (g1, s1) = (measured[0], stream_norm[0]);
            stream_norm.iter().map(|s| Some(g1? * s1? / (*s)?)).collect()
        } else if logs.is_empty() {
            vec![None; t.depth]
        } else {
            let g = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
            vec![Some(g); t.depth]
        };
        let (max, min) = measured.iter().flatten().fold((0.0f64, f64::INFINITY), |(a, b), &v| (a.max(v), b.min(v)));
        let max_over_min = (min.is_finite() && min > 0.0).then(|| max / min);
        let last_over_first = match (measured.first().copied().flatten(), measured.last().copied().flatten()) {
            (Some(f), Some(l)) => Some(l / f),
            _ => None,
        };
        let regime = match (max_over_min, last_over_first) {
            (Some(m), _) if m <= FLAT_MAX_OVER_MIN => DepthRegime::Flat,
            (_, Some(r)) if r <= FALLING_LAST_OVER_FIRST => DepthRegime::FallsTowardOutput,
            (_, Some(r)) if r >= 1.0 / FALLING_LAST_OVER_FIRST => DepthRegime::GrowsTowardOutput,
            (Some(_), Some(_)) => DepthRegime::Uneven,
            _ => DepthRegime::Unmeasured,
        };
        let expected = if t.norm_first { DepthRegime::FallsTowardOutput } else { DepthRegime::Flat };
        out.push(DepthProfile {
            pointer: format!("/model/layers/{i}"),
            norm_first: t.norm_first,
            measured,
            stream_norm,
            predicted,
            max_over_min,
            last_over_first,
            regime,
            as_predicted: regime == expected,
        });
    }
    out
}
