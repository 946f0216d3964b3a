//! Semantic validation: a parsed spec -> [`RunConfig`], or every problem with its pointer.
//!
//! Owns [`Limits`] and [`Spec::validate`]: sizes that make no sense (0 units, 0 samples), the
//! shape walk through the layers (input width vs data, residual widths, sequences through
//! recurrent layers, output width vs loss and targets, per-step vs per-sequence targets),
//! explicit parameters' shapes and values, hyper-parameter ranges, and the budget of a run
//! (layers, units, parameters, steps, batch, samples, sequence length, compute). It
//! works on the expanded spec (defaults filled, `mlp` expanded), but points at the positions the
//! user wrote: a layer an `mlp` produced is reported at the `mlp` (its `units` at `width`).
//!
//! Inline data is validated here and only here: the engine re-checks only what it needs not to
//! panic, and its errors name samples and layers, not pointers. Every pointer is made in `spec`.
//!
//! Depends on the wire types, `expand` (defaults, origins), `convert`, `engine::config` and the
//! sequence tasks' input widths in `engine::data`; must not depend on HTTP or async crates.
//! Nothing here panics on any parsed spec: sizes are compared in `u128` with saturating
//! arithmetic, and a layer count over the limit is refused before `mlp`s are expanded.
//!
//! Files: this one holds [`Limits`], [`Spec::validate`] (the order of the checks, hence of the
//! problems: data, model, training, probes, compute, memory), the validator and its small numeric
//! checks; `data.rs` the data sources, one function per kind, inline data included;
//! `model.rs` the layers and the shape walk; `training.rs` training, optimiser, probes, the
//! compute budget and the memory admission ([`admit_memory`]).

mod data;
mod model;
mod training;

use super::error::{index, thousands, Collector, SpecErrors};
use super::expand::*;
use super::types::*;
use crate::engine::config as e;
use crate::engine::memory;
pub use training::admit_memory;

/// What one run may cost. A spec over any of these is refused (`422`) with the computed value
/// and the limit. The defaults suit a 2-core box serving a few runs at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Layers after `mlp` expansion, counting those inside residual blocks (not the blocks).
    /// Values above [`MAX_EXPANDED_LAYERS`](super::MAX_EXPANDED_LAYERS) act as that bound.
    pub max_layers: u64,
    /// Units of one layer (also `input_dim`, data dimensions and class counts).
    pub max_units: u64,
    /// Trainable parameters of the network.
    pub max_params: u64,
    /// Optimiser steps (after converting epochs).
    pub max_steps: u64,
    /// `training.batch_size`.
    pub max_batch_size: u64,
    /// Samples of the data set (generated or inline).
    pub max_samples: u64,
    /// Time steps of a sequence.
    pub max_seq_len: u64,
    /// Input values of the whole data set (samples x time steps x features), which the run
    /// holds in memory (as f64: 8 bytes each).
    pub max_data_values: u64,
    /// parameters x steps x samples per batch (x time steps for sequence data): a proxy for the
    /// run's floating-point work.
    pub max_compute: u64,
    /// Estimated peak memory of one run in bytes (`engine::memory::estimate`; `analyze` is held
    /// to `engine::memory::estimate_analysis` by [`admit_memory`]). `u64::MAX` here; the
    /// service and the command line derive theirs from the machine (`config`).
    pub max_job_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layers: 1000,
            max_units: 4096,
            max_params: 50_000_000,
            max_steps: 1_000_000,
            max_batch_size: 65_536,
            max_samples: 1_000_000,
            max_seq_len: 10_000,
            max_data_values: 20_000_000,
            max_compute: 10_000_000_000_000,
            max_job_memory: u64::MAX,
        }
    }
}

impl Spec {
    /// Checks the spec against `limits` and converts it into the engine's [`RunConfig`],
    /// reporting every problem found, each with a JSON Pointer into this (unexpanded) spec.
    ///
    /// Conversion rules worth knowing: `epochs` becomes `epochs * ceil(train / batch_size)`
    /// steps, where `train = samples - floor(samples * validation_split)`; a missing `training`
    /// takes the defaults (1000 steps of 64, Adam at 0.001, cross-entropy for class data and
    /// MSE for regression).
    ///
    /// Sequences: sequence data (`adding`, `copy`, `temporal_order`, `parity`, `sine_sequence`,
    /// `inline_sequences`) needs an `rnn` layer and an `rnn` layer needs sequence data.
    /// `input_dim` is the features per time step. The first rnn reads the sequence; one with
    /// `return_sequences: false` outputs only its last step, after which the layers see one row
    /// per sample (so a later rnn is refused); with `true`, later layers (dense, norms, dropout,
    /// activations, another rnn) apply at every step. Data with a target at every step (`copy`,
    /// `sine_sequence`, per-step inline targets) needs the last rnn to return sequences, data
    /// with one target per sequence needs it not to. Rnn layers inside residual blocks are not
    /// supported yet. Every sequence length (`2 length + delay` for `copy`) is held to
    /// [`Limits::max_seq_len`], and the compute budget counts each time step:
    /// parameters x steps x batch x T.
    pub fn validate(&self, limits: &Limits) -> Result<e::RunConfig, SpecErrors> {
        self.validate_measured(limits).map(|(config, _)| config)
    }

    /// [`validate`](Self::validate), and the run's compute as [`Limits::max_compute`] counts it
    /// (parameters x steps x batch, x time steps for sequences), which an experiment sums over
    /// its runs.
    pub fn validate_measured(&self, limits: &Limits) -> Result<(e::RunConfig, u128), SpecErrors> {
        let mut v = Validator { cx: Collector::new(), limits, params: 0, work: 0 };
        let training = filled_training(self.training.as_ref(), &self.data);
        let probes = filled_probes(self.probes.as_ref());
        let loss = training.loss.unwrap_or(Loss::CrossEntropy);

        let data = v.data(&self.data.filled(), loss);
        let network = v.model(self, &data, loss);
        let train = v.training(&training, &data);
        let probes = v.probes(&probes);

        if let (Some(steps), Some(batch), Some(samples)) = (train.steps, train.batch, data.train_samples) {
            v.compute(steps, batch.min(samples), data.seq_len.filter(|_| data.sequence), train.steps_ptr);
        }

        let config = (|| {
            let validation_split = self.data.validation_split.unwrap_or(VALIDATION_SPLIT);
            Some(e::RunConfig {
                seed: self.seed.unwrap_or(SEED),
                network: network?,
                data: data.config?,
                training: e::TrainConfig {
                    steps: train.steps?,
                    batch_size: train.batch?,
                    loss: loss.to_engine(),
                    optimizer: training.optimizer.unwrap_or(OPTIMIZER).to_engine(),
                    schedule: train.schedule?,
                    weight_decay: training.weight_decay.unwrap_or(WEIGHT_DECAY),
                    clip: training.clip.map(Clip::to_engine),
                    shuffle: training.shuffle.unwrap_or(SHUFFLE),
                    precision: training.precision.unwrap_or(PRECISION).to_engine(),
                    validation_split,
                    standardize: self.data.standardize.unwrap_or(false),
                    bptt_truncate: train.bptt_truncate?,
                },
                probes: probes?,
            })
        })();
        if let Some(config) = &config {
            v.memory(config, &memory::estimate(config));
        }
        let work = v.work;
        v.cx.finish(config.map(|c| (c, work)))
    }
}

/// What the model and training checks need to know about the data.
#[derive(Debug, Default)]
struct DataInfo {
    /// Features per sample (per time step for sequences); `None` if unknown or invalid.
    features: Option<usize>,
    /// What the last layer must produce; `None` if unknown or invalid.
    target: Option<Target>,
    /// Samples left for training after the validation split.
    train_samples: Option<usize>,
    /// Sequence data (needs a recurrent layer).
    sequence: bool,
    /// Time steps per sequence, when sequence data and valid.
    seq_len: Option<usize>,
    /// Sequence data with a target at every time step (the last rnn must return sequences).
    per_step: bool,
    /// Where the data's targets are written, for messages (`/data/type`, `/data/y`).
    targets_ptr: &'static str,
    /// The `type` name, for messages.
    kind: &'static str,
    /// The engine's data config when valid and supported.
    config: Option<e::DataConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// Class labels `0..n`.
    Classes(usize),
    /// Regression targets of this width; `unit` when all are known to lie in `[0, 1]` (needed
    /// for `bce`; generated regression targets are not bounded so).
    Values { width: usize, unit: bool },
}

/// The training settings as checked: `None` where invalid.
struct TrainInfo {
    steps: Option<usize>,
    batch: Option<usize>,
    /// `Some(None)`: full BPTT; `None`: invalid.
    bptt_truncate: Option<Option<usize>>,
    /// `None`: invalid.
    schedule: Option<e::Schedule>,
    /// Where a step-count problem is best pointed at (`steps` or `epochs`).
    steps_ptr: &'static str,
}

struct Validator<'a> {
    cx: Collector,
    limits: &'a Limits,
    /// Trainable parameters seen so far (saturating).
    params: u128,
    /// The run's compute, once `compute` has counted it.
    work: u128,
}

/// At most this many non-finite entries are listed per array; one is usually enough to find
/// the bug, and a matrix of NaNs should not produce a thousand-entry response.
const MAX_NON_FINITE_PER_ARRAY: usize = 3;

impl Validator<'_> {
    // -----------------------------------------------------------------------------------------
    // Small checks. Each records a problem and returns whether the value passed.

    fn over_limit(&mut self, ptr: &str, subject: &str, n: u128, unit: &str, limit: u64) -> bool {
        if n > u128::from(limit) {
            self.cx.push(ptr, format!("{subject} has {} {unit}; the limit is {}", thousands(n), thousands(limit)));
            return true;
        }
        false
    }

    /// A count that must be at least `min`; `None` (recorded) otherwise.
    fn at_least(&mut self, ptr: &str, name: &str, n: u64, min: u64) -> Option<usize> {
        if n < min {
            self.cx.push(ptr, format!("`{name}` must be at least {min}, got {n}"));
            return None;
        }
        match usize::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.cx.push(ptr, format!("`{name}` is too large: {n}"));
                None
            }
        }
    }

    /// A width (units, dims, classes): at least 1 and at most `max_units`.
    fn width(&mut self, ptr: &str, name: &str, n: u64, subject: &str) -> Option<usize> {
        let n = self.at_least(ptr, name, n, 1)?;
        if self.over_limit(ptr, subject, n as u128, name, self.limits.max_units) {
            return None;
        }
        Some(n)
    }

    fn finite(&mut self, ptr: &str, name: &str, x: f64) -> bool {
        if !x.is_finite() {
            self.cx.push(ptr, format!("`{name}` must be a finite number, got {x}"));
        }
        x.is_finite()
    }

    fn positive(&mut self, ptr: &str, name: &str, x: f64) -> bool {
        let ok = x.is_finite() && x > 0.0;
        if !ok {
            self.cx.push(ptr, format!("`{name}` must be a finite number > 0, got {x}"));
        }
        ok
    }

    fn non_negative(&mut self, ptr: &str, name: &str, x: f64) -> bool {
        let ok = x.is_finite() && x >= 0.0;
        if !ok {
            self.cx.push(ptr, format!("`{name}` must be a finite number >= 0, got {x}"));
        }
        ok
    }

    /// `x` in `[0, 1)` (`[0, 1]` when `closed`).
    fn fraction(&mut self, ptr: &str, name: &str, x: f64, closed: bool) -> bool {
        let ok = x >= 0.0 && (x < 1.0 || (closed && x == 1.0));
        if !ok {
            let interval = if closed { "[0, 1]" } else { "[0, 1)" };
            self.cx.push(ptr, format!("`{name}` must be in {interval}, got {x}"));
        }
        ok
    }

    /// Lists up to a few non-finite entries of `values` (at `ptr/i`); true when there are none.
    fn all_finite<'x>(&mut self, ptr: &str, name: &str, values: impl Iterator<Item = (String, &'x f64)>) -> bool {
        let mut bad = 0;
        for (p, x) in values {
            if !x.is_finite() {
                if bad < MAX_NON_FINITE_PER_ARRAY {
                    self.cx.push(p, format!("`{name}` holds a non-finite value ({x})"));
                }
                bad += 1;
            }
        }
        if bad > MAX_NON_FINITE_PER_ARRAY {
            self.cx.push(ptr, format!("`{name}` holds {bad} non-finite values in all"));
        }
        bad == 0
    }

    /// An explicit parameter vector of `len` entries (`per`: "one per unit").
    fn vector(&mut self, ptr: &str, name: &str, v: &[f64], len: usize, per: &str) -> Option<Vec<f64>> {
        if v.len() != len {
            self.cx.push(ptr, format!("`{name}` has {} values; expected {len} ({per})", v.len()));
            return None;
        }
        let finite = self.all_finite(ptr, name, v.iter().enumerate().map(|(i, x)| (index(ptr, i), x)));
        finite.then(|| v.to_vec())
    }

    /// An explicit `rows x cols` matrix (`layout`: "units x inputs"), flattened row-major.
    fn matrix(
        &mut self,
        ptr: &str,
        name: &str,
        m: &[Vec<f64>],
        rows: usize,
        cols: usize,
        layout: &str,
    ) -> Option<Vec<f64>> {
        if m.len() != rows {
            self.cx.push(ptr, format!("`{name}` has {} rows; expected {rows} x {cols} ({layout})", m.len()));
            return None;
        }
        let mut ok = true;
        for (i, row) in m.iter().enumerate() {
            if row.len() != cols {
                self.cx.push(
                    index(ptr, i),
                    format!(
                        "row {i} of `{name}` has {} values; expected {cols} ({layout} = {rows} x {cols})",
                        row.len()
                    ),
                );
                ok = false;
            }
        }
        let cells = m
            .iter()
            .enumerate()
            .flat_map(|(i, row)| row.iter().enumerate().map(move |(j, x)| (format!("{ptr}/{i}/{j}"), x)));
        ok &= self.all_finite(ptr, name, cells);
        ok.then(|| m.iter().flatten().copied().collect())
    }

    fn add_params(&mut self, n: u128) {
        self.params = self.params.saturating_add(n);
    }
}
