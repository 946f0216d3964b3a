//! Recurrent layers at initialisation (Pascanu, Mikolov & Bengio 2013; see the parent module's
//! doc): the bound `gamma * sigma_max(W_hh)` of a vanilla cell, and the gate blocks' spectra of a
//! gated one, from the engine's step-0 spectra of `W_hh`.

use super::types::{RecurrentBlock, RecurrentTheory};
use crate::engine::config::{Activation, CellKind, LayerConfig, RunConfig};
use crate::engine::layers::LayerKind;
use crate::engine::train::RunRecord;

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
pub(super) fn recurrent(config: &RunConfig, record: &RunRecord, notes: &mut Vec<String>) -> Vec<RecurrentTheory> {
    let mut out = Vec::new();
    for (info, stats) in record.layers.iter().zip(&record.layer_stats) {
        if info.kind != LayerKind::Rnn {
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
