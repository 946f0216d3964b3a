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
//! Depends on the wire types, `expand` (defaults, origins), `convert`, `engine::config` and the
//! sequence tasks' input widths in `engine::data`; must not depend on HTTP or async crates.
//! Nothing here panics on any parsed spec: sizes are compared in `u128` with saturating
//! arithmetic, and a layer count over the limit is refused before `mlp`s are expanded.

use super::error::{index, join, thousands, Collector, SpecErrors};
use super::expand::*;
use super::types::*;
use crate::engine::config as e;
use crate::engine::data::{COPY_INPUTS, COPY_SYMBOLS, TEMPORAL_ORDER_INPUTS};

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
        let mut v = Validator { cx: Collector::new(), limits, params: 0 };
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
                    weight_decay: training.weight_decay.unwrap_or(WEIGHT_DECAY),
                    clip: training.clip.map(Clip::to_engine),
                    shuffle: training.shuffle.unwrap_or(SHUFFLE),
                    precision: training.precision.unwrap_or(PRECISION).to_engine(),
                    validation_split,
                    bptt_truncate: train.bptt_truncate?,
                },
                probes: probes?,
            })
        })();
        v.cx.finish(config)
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
    /// Where a step-count problem is best pointed at (`steps` or `epochs`).
    steps_ptr: &'static str,
}

struct Validator<'a> {
    cx: Collector,
    limits: &'a Limits,
    /// Trainable parameters seen so far (saturating).
    params: u128,
}

/// At most this many non-finite entries are listed per array; one is usually enough to find
/// the bug, and a matrix of NaNs should not produce a thousand-entry response.
const MAX_NON_FINITE_PER_ARRAY: usize = 3;

impl Validator<'_> {
    // -----------------------------------------------------------------------------------------
    // Small checks. Each records a problem and returns whether the value passed.

    fn over_limit(&mut self, ptr: &str, subject: &str, n: u128, unit: &str, limit: u64) -> bool {
        if n > u128::from(limit) {
            self.cx
                .push(ptr, format!("{subject} has {} {unit}; the limit is {}", thousands(n), thousands(limit.into())));
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

    // -----------------------------------------------------------------------------------------
    // Activations, inits, norms.

    /// `ptr` is the activation's own pointer.
    fn activation(&mut self, ptr: &str, a: Activation) {
        match a.to_engine() {
            e::Activation::LeakyRelu { slope } => {
                self.finite(&join(ptr, "slope"), "slope", slope);
            }
            e::Activation::Elu { alpha } => {
                self.finite(&join(ptr, "alpha"), "alpha", alpha);
            }
            e::Activation::Prelu { init } => {
                self.finite(&join(ptr, "init"), "init", init);
            }
            _ => {}
        }
    }

    /// `ptr` is the init's own pointer.
    fn init(&mut self, ptr: &str, i: Init) {
        match i.to_engine() {
            e::Init::Normal { std } => {
                self.non_negative(&join(ptr, "std"), "std", std);
            }
            e::Init::Uniform { limit } => {
                self.non_negative(&join(ptr, "limit"), "limit", limit);
            }
            e::Init::Constant { value } => {
                self.finite(&join(ptr, "value"), "value", value);
            }
            e::Init::XavierUniform { gain }
            | e::Init::XavierNormal { gain }
            | e::Init::HeUniform { gain, .. }
            | e::Init::HeNormal { gain, .. }
            | e::Init::LecunNormal { gain, .. }
            | e::Init::Orthogonal { gain }
            | e::Init::Identity { gain } => {
                self.non_negative(&join(ptr, "gain"), "gain", gain);
            }
        }
    }

    /// Norm settings; `at` maps a field name to its pointer.
    fn norm_settings(&mut self, at: impl Fn(&str) -> String, config: &e::NormConfig, batch: bool) {
        self.positive(&at("eps"), "eps", config.eps);
        if batch {
            self.fraction(&at("momentum"), "momentum", config.momentum, true);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Data.

    fn data(&mut self, d: &Data, loss: Loss) -> DataInfo {
        use DataSource as S;
        let split = d.validation_split.unwrap_or(VALIDATION_SPLIT);
        let split_ok = self.fraction("/data/validation_split", "validation_split", split, false);
        let mut info = DataInfo { kind: data_kind(&d.source), targets_ptr: "/data/type", ..DataInfo::default() };

        let samples = |v: &mut Self, n: Option<u64>| -> Option<usize> {
            let n = v.at_least("/data/samples", "samples", n.unwrap_or(SAMPLES), 1)?;
            (!v.over_limit("/data/samples", "the data", n as u128, "samples", v.limits.max_samples)).then_some(n)
        };
        let noise = |v: &mut Self, x: Option<f64>| v.non_negative("/data/noise", "noise", x.unwrap_or(NOISE));
        let classes = |v: &mut Self, n: Option<u64>, default: u64| -> Option<usize> {
            let n = v.at_least("/data/classes", "classes", n.unwrap_or(default), 2)?;
            (!v.over_limit("/data/classes", "the data", n as u128, "classes", v.limits.max_units)).then_some(n)
        };

        let n_samples;
        match &d.source {
            S::Xor { samples: n, noise: z } | S::Moons { samples: n, noise: z } => {
                n_samples = samples(self, *n);
                let z_ok = noise(self, *z);
                info.features = Some(2);
                info.target = Some(Target::Classes(2));
                info.config = match (&d.source, n_samples, z_ok) {
                    (S::Xor { .. }, Some(samples), true) => {
                        Some(e::DataConfig::Xor { samples, noise: z.unwrap_or(NOISE) })
                    }
                    (S::Moons { .. }, Some(samples), true) => {
                        Some(e::DataConfig::Moons { samples, noise: z.unwrap_or(NOISE) })
                    }
                    _ => None,
                };
            }
            S::Spirals { samples: n, noise: z, classes: c } => {
                n_samples = samples(self, *n);
                let z_ok = noise(self, *z);
                let c = classes(self, *c, SPIRALS_CLASSES);
                info.features = Some(2);
                info.target = c.map(Target::Classes);
                if let (Some(samples), true, Some(classes)) = (n_samples, z_ok, c) {
                    info.config = Some(e::DataConfig::Spirals { samples, noise: z.unwrap_or(NOISE), classes });
                }
            }
            S::Circles { samples: n, noise: z, factor } => {
                n_samples = samples(self, *n);
                let z_ok = noise(self, *z);
                let factor = factor.unwrap_or(CIRCLES_FACTOR);
                let f_ok = factor > 0.0 && factor < 1.0;
                if !f_ok {
                    self.cx.push(
                        "/data/factor",
                        format!("`factor` (inner radius / outer radius) must be in (0, 1), got {factor}"),
                    );
                }
                info.features = Some(2);
                info.target = Some(Target::Classes(2));
                if let (Some(samples), true, true) = (n_samples, z_ok, f_ok) {
                    info.config = Some(e::DataConfig::Circles { samples, noise: z.unwrap_or(NOISE), factor });
                }
            }
            S::Blobs { samples: n, classes: c, dims, std } => {
                n_samples = samples(self, *n);
                let c = classes(self, *c, BLOBS_CLASSES);
                let dims = self.width("/data/dims", "dims", dims.unwrap_or(BLOBS_DIMS), "the data");
                let std = std.unwrap_or(BLOBS_STD);
                let std_ok = self.non_negative("/data/std", "std", std);
                info.features = dims;
                info.target = c.map(Target::Classes);
                if let (Some(samples), Some(classes), Some(dims), true) = (n_samples, c, dims, std_ok) {
                    info.config = Some(e::DataConfig::Blobs { samples, classes, dims, std });
                }
            }
            S::Sine { samples: n, noise: z } => {
                n_samples = samples(self, *n);
                let z = z.unwrap_or(SINE_NOISE);
                let z_ok = self.non_negative("/data/noise", "noise", z);
                info.features = Some(1);
                info.target = Some(Target::Values { width: 1, unit: false });
                if let (Some(samples), true) = (n_samples, z_ok) {
                    info.config = Some(e::DataConfig::Sine { samples, noise: z });
                }
            }
            S::Teacher { samples: n, dims, classes: c, outputs, hidden } => {
                n_samples = samples(self, *n);
                let dims = self.width("/data/dims", "dims", dims.unwrap_or(TEACHER_DIMS), "the data");
                let hidden = self.width("/data/hidden", "hidden", hidden.unwrap_or(TEACHER_HIDDEN), "the teacher");
                let c = c.unwrap_or(TEACHER_CLASSES);
                let outputs_n = outputs.unwrap_or(TEACHER_OUTPUTS);
                let (target, classes, outputs) = if c == 0 {
                    let o = self.width("/data/outputs", "outputs", outputs_n, "the teacher");
                    (o.map(|width| Target::Values { width, unit: false }), Some(0), o)
                } else {
                    let k = if c == 1 {
                        self.cx.push("/data/classes", "`classes` must be 0 (regression) or at least 2, got 1");
                        None
                    } else {
                        classes(self, Some(c), TEACHER_CLASSES)
                    };
                    // `outputs` is unused for classification; the engine still gets a value.
                    (k.map(Target::Classes), k, usize::try_from(outputs_n).ok())
                };
                info.features = dims;
                info.target = target;
                if let (Some(samples), Some(dims), Some(classes), Some(outputs), Some(hidden)) =
                    (n_samples, dims, classes, outputs, hidden)
                {
                    info.config = Some(e::DataConfig::Teacher { samples, dims, classes, outputs, hidden });
                }
            }
            S::Adding { samples: n, length } => {
                n_samples = samples(self, *n);
                let t = self.seq_len("/data/length", length.unwrap_or(SEQUENCE_LENGTH), 2, "the adding problem");
                self.sequence(&mut info, t, 2, Target::Values { width: 1, unit: false }, false);
                if let (Some(samples), Some(length)) = (n_samples, t) {
                    info.config = Some(e::DataConfig::Adding { samples, length });
                }
            }
            S::TemporalOrder { samples: n, length } => {
                n_samples = samples(self, *n);
                let t =
                    self.seq_len("/data/length", length.unwrap_or(SEQUENCE_LENGTH), 10, "the temporal-order problem");
                self.sequence(&mut info, t, TEMPORAL_ORDER_INPUTS, Target::Classes(4), false);
                if let (Some(samples), Some(length)) = (n_samples, t) {
                    info.config = Some(e::DataConfig::TemporalOrder { samples, length });
                }
            }
            S::Parity { samples: n, length } => {
                n_samples = samples(self, *n);
                let t = self.seq_len("/data/length", length.unwrap_or(PARITY_LENGTH), 1, "a sequence");
                self.sequence(&mut info, t, 1, Target::Classes(2), false);
                if let (Some(samples), Some(length)) = (n_samples, t) {
                    info.config = Some(e::DataConfig::Parity { samples, length });
                }
            }
            S::SineSequence { samples: n, length, noise: z } => {
                n_samples = samples(self, *n);
                let t = self.seq_len("/data/length", length.unwrap_or(SEQUENCE_LENGTH), 1, "a sequence");
                let z = z.unwrap_or(SINE_NOISE);
                let z_ok = self.non_negative("/data/noise", "noise", z);
                self.sequence(&mut info, t, 1, Target::Values { width: 1, unit: false }, true);
                if let (Some(samples), Some(length), true) = (n_samples, t, z_ok) {
                    info.config = Some(e::DataConfig::SineSequence { samples, length, noise: z });
                }
            }
            S::Copy { samples: n, length, delay } => {
                n_samples = samples(self, *n);
                let length = self.at_least("/data/length", "length", length.unwrap_or(COPY_LENGTH), 1);
                // The delimiter takes the last step of the gap, so there must be one.
                let delay = self.at_least("/data/delay", "delay", delay.unwrap_or(COPY_DELAY), 1);
                let mut t = None;
                if let (Some(length), Some(delay)) = (length, delay) {
                    // Symbols, blanks, then the recall: the whole input is length + delay + length.
                    let total = (length as u128) * 2 + delay as u128;
                    let over = self.over_limit(
                        "/data/delay",
                        "a sequence",
                        total,
                        "time steps (length + delay + length)",
                        self.limits.max_seq_len,
                    );
                    t = usize::try_from(total).ok().filter(|_| !over);
                }
                self.sequence(&mut info, t, COPY_INPUTS, Target::Classes(COPY_SYMBOLS + 1), true);
                if let (Some(samples), Some(length), Some(delay), Some(_)) = (n_samples, length, delay, t) {
                    info.config = Some(e::DataConfig::Copy { samples, length, delay });
                }
            }
            S::Inline { x, y } => {
                n_samples = self.inline_x(x);
                if let Some(features) = self.rows_width("/data/x", "x", x.iter().map(Vec::len)) {
                    info.features = Some(features);
                }
                let finite = self.all_finite(
                    "/data/x",
                    "x",
                    x.iter()
                        .enumerate()
                        .flat_map(|(i, r)| r.iter().enumerate().map(move |(j, v)| (format!("/data/x/{i}/{j}"), v))),
                );
                let targets = self.inline_targets(y, x.len(), loss);
                if let Some((targets, target)) = targets {
                    info.target = Some(target);
                    if finite && info.features.is_some() && n_samples.is_some() {
                        info.config = Some(e::DataConfig::Inline { x: x.clone(), y: targets });
                    }
                }
            }
            S::InlineSequences { x, y } => {
                n_samples = self.inline_x(x);
                info.sequence = true;
                info.targets_ptr = "/data/y";
                let steps = self.inline_steps(x);
                info.features = self.step_width(x);
                let finite = self.all_finite(
                    "/data/x",
                    "x",
                    x.iter().enumerate().flat_map(|(i, s)| {
                        s.iter().enumerate().flat_map(move |(t, r)| {
                            r.iter().enumerate().map(move |(j, v)| (format!("/data/x/{i}/{t}/{j}"), v))
                        })
                    }),
                );
                let targets = match (y, steps) {
                    (InlineSequenceTargets::PerSequence(y), _) => self
                        .inline_targets(y, x.len(), loss)
                        .map(|(t, target)| (e::InlineSequenceTargets::PerSequence(t), target)),
                    (InlineSequenceTargets::ClassesPerStep(rows), Some(steps)) => {
                        info.per_step = true;
                        self.step_labels(rows, x.len(), steps)
                    }
                    (InlineSequenceTargets::ValuesPerStep(rows), Some(steps)) => {
                        info.per_step = true;
                        self.step_values(rows, x.len(), steps)
                    }
                    // Per-step targets cannot be checked against an unknown length.
                    (_, None) => {
                        info.per_step = true;
                        None
                    }
                };
                info.seq_len = steps;
                if let Some((targets, target)) = targets {
                    info.target = Some(target);
                    if finite && info.features.is_some() && steps.is_some() && n_samples.is_some() {
                        info.config = Some(e::DataConfig::InlineSequences { x: x.clone(), y: targets });
                    }
                }
            }
        }

        // The generated data lives in memory for the whole run: bound its size, not just its
        // sample count (a million sequences of 10,000 steps would need ~160 GB).
        if let (Some(n), Some(f)) = (n_samples, info.features) {
            let values = n as u128 * f as u128 * info.seq_len.unwrap_or(1) as u128;
            if self.over_limit(
                "/data",
                "the data",
                values,
                "input values (samples x steps x features)",
                self.limits.max_data_values,
            ) {
                info.config = None;
            }
        }

        if let (Some(n), true) = (n_samples, split_ok) {
            // Validation samples are floor(n * split); `split < 1` leaves at least one for training.
            let held_out = (n as f64 * split).floor() as usize;
            info.train_samples = Some(n.saturating_sub(held_out).max(1));
        }
        info
    }

    /// A sequence length: at least `min` (`what` needs that many, e.g. "the adding problem")
    /// and at most `max_seq_len`.
    fn seq_len(&mut self, ptr: &str, n: u64, min: u64, what: &str) -> Option<usize> {
        if n < min {
            let steps = if min == 1 { "time step" } else { "time steps" };
            self.cx.push(ptr, format!("{what} needs at least {min} {steps}, got `length` {n}"));
            return None;
        }
        if self.over_limit(ptr, "a sequence", n.into(), "time steps", self.limits.max_seq_len) {
            return None;
        }
        usize::try_from(n).ok()
    }

    /// Records what a generated sequence task gives: `steps` steps (`None` if invalid) of
    /// `features` inputs, `target` (per step or per sequence).
    fn sequence(&mut self, info: &mut DataInfo, steps: Option<usize>, features: usize, target: Target, per_step: bool) {
        info.sequence = true;
        info.seq_len = steps;
        info.features = Some(features);
        info.target = Some(target);
        info.per_step = per_step;
    }

    /// The common length `T` of inline sequences: the first one's, at least 1 and within
    /// `max_seq_len`; every other sequence must match it (ragged ones are reported each at its
    /// pointer, since nothing is padded or masked). `None` when any of that fails.
    fn inline_steps(&mut self, x: &[Vec<Vec<f64>>]) -> Option<usize> {
        let steps = x.first()?.len();
        if steps == 0 {
            self.cx.push("/data/x/0", "a sequence needs at least one time step");
            return None;
        }
        let mut ok = !self.over_limit("/data/x/0", "a sequence", steps as u128, "time steps", self.limits.max_seq_len);
        for (i, seq) in x.iter().enumerate().skip(1) {
            if seq.len() != steps {
                self.cx.push(
                    index("/data/x", i),
                    format!(
                        "sequence {i} has {} time steps but sequence 0 has {steps}; all sequences must have \
                         the same length (ragged sequences are not padded or masked)",
                        seq.len()
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(steps)
    }

    /// The common number of features of every time step of inline sequences, reporting empty
    /// and ragged steps at `/data/x/i/t`.
    fn step_width(&mut self, x: &[Vec<Vec<f64>>]) -> Option<usize> {
        let width = x.first()?.first()?.len();
        if width == 0 {
            self.cx.push("/data/x/0/0", "time steps of `x` need at least one value");
            return None;
        }
        let mut ok = true;
        for (i, seq) in x.iter().enumerate() {
            for (t, step) in seq.iter().enumerate() {
                if step.len() != width {
                    self.cx.push(
                        format!("/data/x/{i}/{t}"),
                        format!(
                            "time step {t} of sequence {i} has {} features but the first step has {width}",
                            step.len()
                        ),
                    );
                    ok = false;
                }
            }
        }
        if self.over_limit("/data/x", "each time step", width as u128, "features", self.limits.max_units) {
            return None;
        }
        ok.then_some(width)
    }

    /// Checks that `y` has one entry per sequence.
    fn target_count(&mut self, count: usize, samples: usize) -> bool {
        if count != samples {
            self.cx.push("/data/y", format!("`y` has {count} targets but `x` has {samples} sequences"));
        }
        count == samples
    }

    /// Checks that sequence `i` has one per-step target per time step.
    fn step_count(&mut self, i: usize, got: usize, steps: usize, what: &str, hint: &str) -> bool {
        if got != steps {
            self.cx.push(
                index("/data/y", i),
                format!("sequence {i} has {got} {what} but {steps} time steps; per-step targets need one per time step{hint}"),
            );
        }
        got == steps
    }

    /// Per-step class labels (`[[c_0, ..., c_T-1], ...]`).
    fn step_labels(
        &mut self,
        rows: &[Vec<i64>],
        samples: usize,
        steps: usize,
    ) -> Option<(e::InlineSequenceTargets, Target)> {
        let mut ok = self.target_count(rows.len(), samples);
        let hint = " (a list of integer lists is read as class labels per time step; write per-sequence \
                    regression rows with decimal points, e.g. [[1.0, 2.0]])";
        let mut out = Vec::with_capacity(rows.len());
        let mut classes = 0usize;
        for (i, row) in rows.iter().enumerate() {
            ok &= self.step_count(i, row.len(), steps, "labels", hint);
            let mut labels = Vec::with_capacity(row.len());
            for (t, &l) in row.iter().enumerate() {
                match usize::try_from(l) {
                    Ok(l) => {
                        classes = classes.max(l.saturating_add(1));
                        labels.push(l);
                    }
                    Err(_) => {
                        ok = false;
                        self.cx.push(
                            format!("/data/y/{i}/{t}"),
                            format!("class label {l} is negative; labels are 0, 1, 2, ..."),
                        );
                    }
                }
            }
            out.push(labels);
        }
        if self.over_limit("/data/y", "the data", classes as u128, "classes (largest label + 1)", self.limits.max_units)
        {
            return None;
        }
        ok.then_some((e::InlineSequenceTargets::ClassesPerStep(out), Target::Classes(classes)))
    }

    /// Per-step regression rows (`[[[..K..] x T], ...]`).
    fn step_values(
        &mut self,
        rows: &[Vec<Vec<f64>>],
        samples: usize,
        steps: usize,
    ) -> Option<(e::InlineSequenceTargets, Target)> {
        let mut ok = self.target_count(rows.len(), samples);
        for (i, seq) in rows.iter().enumerate() {
            ok &= self.step_count(i, seq.len(), steps, "target rows", "");
        }
        let width = match rows.first().and_then(|s| s.first()).map(Vec::len) {
            Some(0) | None => {
                self.cx.push("/data/y/0", "per-step targets need at least one value per time step");
                None
            }
            Some(w) => Some(w),
        };
        if let Some(w) = width {
            for (i, seq) in rows.iter().enumerate() {
                for (t, row) in seq.iter().enumerate() {
                    if row.len() != w {
                        self.cx.push(
                            format!("/data/y/{i}/{t}"),
                            format!("this time step has {} target values but the first has {w}", row.len()),
                        );
                        ok = false;
                    }
                }
            }
            ok &= !self.over_limit("/data/y", "each target", w as u128, "values", self.limits.max_units);
        }
        let finite = self.all_finite(
            "/data/y",
            "y",
            rows.iter().enumerate().flat_map(|(i, s)| {
                s.iter()
                    .enumerate()
                    .flat_map(move |(t, r)| r.iter().enumerate().map(move |(k, v)| (format!("/data/y/{i}/{t}/{k}"), v)))
            }),
        );
        let unit = rows.iter().flatten().flatten().all(|v| (0.0..=1.0).contains(v));
        let width = width.filter(|_| ok && finite)?;
        Some((e::InlineSequenceTargets::ValuesPerStep(rows.to_vec()), Target::Values { width, unit }))
    }

    /// Count of inline samples: at least one, within the limit.
    fn inline_x<T>(&mut self, x: &[T]) -> Option<usize> {
        if x.is_empty() {
            self.cx.push("/data/x", "inline data needs at least one sample");
            return None;
        }
        (!self.over_limit("/data/x", "the data", x.len() as u128, "samples", self.limits.max_samples))
            .then_some(x.len())
    }

    /// The common width of rows, reporting empty and ragged ones (at `ptr/i`).
    fn rows_width(&mut self, ptr: &str, name: &str, widths: impl Iterator<Item = usize>) -> Option<usize> {
        let mut first = None;
        let mut ok = true;
        for (i, w) in widths.enumerate() {
            match first {
                None if w == 0 => {
                    self.cx.push(index(ptr, i), format!("rows of `{name}` need at least one value"));
                    return None;
                }
                None => first = Some(w),
                Some(f) if f != w => {
                    self.cx.push(index(ptr, i), format!("row {i} of `{name}` has {w} values but the first has {f}"));
                    ok = false;
                }
                Some(_) => {}
            }
        }
        let f = first?;
        if self.over_limit(ptr, "each sample", f as u128, "features", self.limits.max_units) {
            return None;
        }
        ok.then_some(f)
    }

    /// Inline targets as the engine takes them, and what the output layer must produce.
    fn inline_targets(&mut self, y: &InlineTargets, samples: usize, loss: Loss) -> Option<(e::InlineTargets, Target)> {
        let count = match y {
            InlineTargets::Labels(v) => v.len(),
            InlineTargets::Scalars(v) => v.len(),
            InlineTargets::Rows(v) => v.len(),
        };
        let count_ok = count == samples;
        if !count_ok {
            self.cx.push("/data/y", format!("`y` has {count} targets but `x` has {samples} samples"));
        }
        let labels = |v: &mut Self, labels: Vec<usize>| -> Option<(e::InlineTargets, Target)> {
            let classes = labels.iter().max().map_or(0, |m| m.saturating_add(1));
            if v.over_limit("/data/y", "the data", classes as u128, "classes (largest label + 1)", v.limits.max_units) {
                return None;
            }
            Some((e::InlineTargets::Classes(labels), Target::Classes(classes)))
        };
        let out = match y {
            InlineTargets::Labels(v) => {
                let mut ok = true;
                let mut out = Vec::with_capacity(v.len());
                for (i, &l) in v.iter().enumerate() {
                    match usize::try_from(l) {
                        Ok(l) => out.push(l),
                        Err(_) => {
                            ok = false;
                            self.cx.push(
                                index("/data/y", i),
                                format!("class label {l} is negative; labels are 0, 1, 2, ... (write regression targets with a decimal point, e.g. {l}.0, or as arrays)"),
                            );
                        }
                    }
                }
                if ok {
                    labels(self, out)
                } else {
                    None
                }
            }
            // Decimal targets with an explicit cross_entropy: accept integral ones as labels
            // (`1.0` is what numpy-based clients send), name the others.
            InlineTargets::Scalars(v) if loss == Loss::CrossEntropy => {
                let mut ok = true;
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 {
                        out.push(x as usize);
                    } else {
                        ok = false;
                        self.cx.push(
                            index("/data/y", i),
                            format!("label {x} is not a class index (an integer >= 0), which cross_entropy needs"),
                        );
                    }
                }
                if ok {
                    labels(self, out)
                } else {
                    None
                }
            }
            InlineTargets::Scalars(v) => {
                let finite =
                    self.all_finite("/data/y", "y", v.iter().enumerate().map(|(i, x)| (index("/data/y", i), x)));
                let unit = v.iter().all(|x| (0.0..=1.0).contains(x));
                finite.then(|| {
                    (e::InlineTargets::Values(v.iter().map(|x| vec![*x]).collect()), Target::Values { width: 1, unit })
                })
            }
            InlineTargets::Rows(rows) => {
                let width = self.rows_width("/data/y", "y", rows.iter().map(Vec::len));
                let finite = self.all_finite(
                    "/data/y",
                    "y",
                    rows.iter()
                        .enumerate()
                        .flat_map(|(i, r)| r.iter().enumerate().map(move |(j, x)| (format!("/data/y/{i}/{j}"), x))),
                );
                let unit = rows.iter().flatten().all(|x| (0.0..=1.0).contains(x));
                match (width, finite) {
                    (Some(width), true) => {
                        Some((e::InlineTargets::Values(rows.clone()), Target::Values { width, unit }))
                    }
                    _ => None,
                }
            }
        };
        out.filter(|_| count_ok)
    }

    // -----------------------------------------------------------------------------------------
    // Model.

    fn model(&mut self, spec: &Spec, data: &DataInfo, loss: Loss) -> Option<e::NetworkConfig> {
        let input_dim = self.width("/model/input_dim", "input_dim", spec.model.input_dim, "the input");
        if let (Some(i), Some(f)) = (input_dim, data.features) {
            if i != f {
                let each = if data.sequence { "time step" } else { "sample" };
                self.cx.push(
                    "/model/input_dim",
                    format!("`input_dim` is {i} but each {each} of the `{}` data has {f} features", data.kind),
                );
            }
        }
        if spec.model.layers.is_empty() {
            self.cx.push("/model/layers", "the model needs at least one layer");
            return None;
        }

        // Count (and check mlp depths) on the spec as written, so that an absurd depth is
        // refused before anything is expanded.
        self.check_mlp_depths(&spec.model.layers, "/model/layers");
        let count = expanded_layer_count(&spec.model.layers);
        let max_layers = self.limits.max_layers.min(MAX_EXPANDED_LAYERS);
        if self.over_limit("/model/layers", "the network", count, "layers (with mlp expanded)", max_layers) {
            return None;
        }

        let (layers, placed) = spec.expanded_layers();
        let has_rnn = contains_rnn(&layers);
        if data.sequence && !has_rnn {
            self.cx.push(
                "/data/type",
                format!(
                    "`{}` is sequence data (samples x time steps x features), which needs a recurrent (`rnn`) layer to read it",
                    data.kind
                ),
            );
        }

        let flow = if data.sequence { Flow::Steps } else { Flow::Samples };
        let mut walk = Walk { flow, last_rnn: None, in_residual: false, kind: data.kind };
        let (configs, out_width) = self.layers(&layers, &placed, input_dim, &mut walk);
        if data.sequence {
            self.per_step_output(data, &walk);
        }

        if self.over_limit("/model", "the network", self.params, "parameters", self.limits.max_params) {
            return None;
        }
        if let (Some(w), Some(target), Some(last_layer), Some(last_origin)) =
            (out_width, data.target, layers.last(), placed.last())
        {
            let ptr = match last_layer {
                Layer::Dense(_) | Layer::Rnn(_) => last_origin.origin.at("units"),
                _ => last_origin.origin.ptr().to_owned(),
            };
            self.task(w, target, loss, &ptr, data.kind);
        }
        Some(e::NetworkConfig { input_dim: input_dim?, layers: configs? })
    }

    /// Checks the `mlp` depths as written (a depth-0 mlp expands to nothing, leaving no layer to
    /// point at later).
    fn check_mlp_depths(&mut self, layers: &[Layer], base: &str) {
        for (i, layer) in layers.iter().enumerate() {
            let ptr = index(base, i);
            match layer {
                Layer::Mlp(m) => {
                    self.at_least(&join(&ptr, "depth"), "depth", m.depth, 1);
                }
                Layer::Residual(r) => self.check_mlp_depths(&r.layers, &join(&ptr, "layers")),
                _ => {}
            }
        }
    }

    /// Does the network's output match the data's targets: one per time step (the last rnn
    /// returns sequences) or one per sequence (it does not)? Reported at the last rnn's
    /// `return_sequences`, naming where the targets are.
    fn per_step_output(&mut self, data: &DataInfo, walk: &Walk) {
        let Some(rnn) = &walk.last_rnn else { return };
        let ptr = join(rnn, "return_sequences");
        let (kind, at) = (data.kind, data.targets_ptr);
        match (&walk.flow, data.per_step) {
            (Flow::Collapsed(_), true) => self.cx.push(
                ptr,
                format!("`{kind}` has a target at every time step (see {at}); set return_sequences to true on the last rnn layer"),
            ),
            (Flow::Steps, false) => self.cx.push(
                ptr,
                format!(
                    "`{kind}` has one target per sequence (see {at}), but the last rnn layer returns every time step; \
                     set return_sequences to false on the last rnn layer (false is the default)"
                ),
            ),
            _ => {}
        }
    }

    /// Walks expanded layers fed `width` features (`None`: unknown after an earlier problem).
    fn layers(
        &mut self,
        layers: &[Layer],
        placed: &[Placed],
        mut width: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<Vec<e::LayerConfig>>, Option<usize>) {
        let mut out = Some(Vec::with_capacity(layers.len()));
        for (layer, at) in layers.iter().zip(placed) {
            let (config, w) = self.layer(layer, at, width, walk);
            width = w;
            match (config, out.as_mut()) {
                (Some(c), Some(o)) => o.push(c),
                _ => out = None,
            }
        }
        (out, width)
    }

    fn layer(
        &mut self,
        layer: &Layer,
        at: &Placed,
        width: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<e::LayerConfig>, Option<usize>) {
        let o = &at.origin;
        match layer {
            Layer::Dense(d) => {
                let (config, units) = self.dense(d, o, width);
                (config.map(e::LayerConfig::Dense), units)
            }
            Layer::BatchNorm(b) => {
                let config = e::NormConfig {
                    eps: b.eps.unwrap_or(NORM_EPS),
                    momentum: b.momentum.unwrap_or(NORM_MOMENTUM),
                    params: e::ExplicitParams::new(),
                };
                self.norm_settings(|f| o.at(f), &config, true);
                let given = [
                    ("weight", &b.weight),
                    ("bias", &b.bias),
                    ("running_mean", &b.running_mean),
                    ("running_var", &b.running_var),
                ];
                let params = self.feature_params(o, width, &given);
                if let Some(w) = width {
                    self.add_params(2 * w as u128);
                }
                let config = params.map(|params| e::LayerConfig::BatchNorm(e::NormConfig { params, ..config }));
                (config.filter(|_| width.is_some()), width)
            }
            Layer::LayerNorm(l) => {
                let config = e::NormConfig {
                    eps: l.eps.unwrap_or(NORM_EPS),
                    momentum: NORM_MOMENTUM,
                    params: e::ExplicitParams::new(),
                };
                self.norm_settings(|f| o.at(f), &config, false);
                let params = self.feature_params(o, width, &[("weight", &l.weight), ("bias", &l.bias)]);
                if let Some(w) = width {
                    self.add_params(2 * w as u128);
                }
                let config = params.map(|params| e::LayerConfig::LayerNorm(e::NormConfig { params, ..config }));
                (config.filter(|_| width.is_some()), width)
            }
            Layer::Dropout(d) => {
                let rate = d.rate.unwrap_or(DROPOUT_RATE);
                let ok = self.fraction(&o.at("rate"), "rate", rate, false);
                (ok.then_some(e::LayerConfig::Dropout { rate }), width)
            }
            Layer::Activation(a) => {
                self.activation(&o.at("activation"), a.activation);
                let activation = a.activation.to_engine();
                let mut params = Some(e::ExplicitParams::new());
                let is_prelu = matches!(activation, e::Activation::Prelu { .. });
                if let Some(w) = width {
                    if is_prelu {
                        self.add_params(w as u128);
                    }
                    params = self.prelu_weight(o, is_prelu, a.prelu_weight.as_deref(), w);
                }
                let config = params.map(|params| e::LayerConfig::Activation { activation, params });
                (config.filter(|_| width.is_some()), width)
            }
            Layer::Residual(r) => {
                if r.layers.is_empty() {
                    self.cx.push(o.at("layers"), "a residual block needs at least one layer");
                    return (None, width);
                }
                // input + f(input): the rows must stay what they are, which rules out an rnn
                // inside (reported there); the flow after the block is the flow before it.
                let outer = (walk.flow.clone(), walk.in_residual);
                walk.in_residual = true;
                let (inner, out) = self.layers(&r.layers, &at.inner, width, walk);
                (walk.flow, walk.in_residual) = outer;
                if let (Some(i), Some(w)) = (width, out) {
                    if i != w {
                        self.cx.push(o.ptr(), format!("residual block output has {w} units but its input has {i}"));
                        return (None, width);
                    }
                }
                (inner.map(e::LayerConfig::Residual), width)
            }
            Layer::Rnn(r) => self.rnn(r, o, width, walk),
            Layer::Mlp(_) => {
                // `expanded_layers` leaves none; say so rather than panic if that ever changes.
                self.cx.push(o.ptr(), "internal: an `mlp` was not expanded");
                (None, None)
            }
        }
    }

    /// A recurrent layer fed `input` features per time step: its settings, where it sits in the
    /// flow of sequences, and its explicit parameters (PyTorch's layout: `weight_ih` is
    /// (gates x units) x inputs, `weight_hh` (gates x units) x units, `bias_ih` and `bias_hh`
    /// gates x units, gate blocks in the cell's order).
    fn rnn(
        &mut self,
        r: &Rnn,
        o: &Origin,
        input: Option<usize>,
        walk: &mut Walk,
    ) -> (Option<e::LayerConfig>, Option<usize>) {
        let cell = r.cell.unwrap_or(RNN_CELL);
        let units = self.width(&o.at("units"), "units", r.units, "the layer");
        let return_sequences = r.return_sequences.unwrap_or(false);

        // Where it sits: it needs a sequence, and not inside a residual block.
        let mut placed_ok = true;
        match &walk.flow {
            Flow::Steps => {}
            Flow::Samples => {
                placed_ok = false;
                self.cx.push(
                    o.ptr(),
                    format!(
                        "an `rnn` layer needs sequence data (samples x time steps x features), but the `{}` data \
                         (see /data/type) has one row of features per sample; use adding, copy, temporal_order, \
                         parity, sine_sequence or inline_sequences data, or remove the rnn layer",
                        walk.kind
                    ),
                );
            }
            Flow::Collapsed(previous) => {
                placed_ok = false;
                self.cx.push(
                    o.ptr(),
                    format!(
                        "an rnn layer needs a sequence; the previous rnn layer ({previous}) has return_sequences \
                         false, so only its last time step reaches this layer; set return_sequences to true there"
                    ),
                );
            }
        }
        if walk.in_residual {
            placed_ok = false;
            self.cx.push(
                o.ptr(),
                "`rnn` layers inside residual blocks are not supported yet; put the recurrent layers \
                 before or after the residual block",
            );
        }
        if !walk.in_residual {
            walk.flow = if return_sequences { Flow::Steps } else { Flow::Collapsed(o.ptr().to_owned()) };
            walk.last_rnn = Some(o.ptr().to_owned());
        }

        let ecell = match cell {
            Cell::Vanilla => e::CellKind::Vanilla,
            Cell::Lstm => e::CellKind::Lstm,
            Cell::Gru => e::CellKind::Gru,
        };
        let (gate_order, fixed_activations) = match cell {
            Cell::Vanilla => ("", ""),
            Cell::Lstm => ("4 gates (i, f, g, o) x ", "sigmoid gates, tanh cell input and output"),
            Cell::Gru => ("3 gates (r, z, n) x ", "sigmoid gates, tanh candidate"),
        };

        let activation = match (cell, r.activation) {
            (Cell::Vanilla, a) => {
                let a = a.unwrap_or(RNN_ACTIVATION).to_engine();
                match a {
                    e::Activation::Tanh | e::Activation::Relu | e::Activation::Sigmoid => Some(a),
                    other => {
                        self.cx.push(
                            o.at("activation"),
                            format!(
                                "a vanilla rnn cell's activation must be tanh, relu or sigmoid, got `{}`",
                                activation_name(other)
                            ),
                        );
                        None
                    }
                }
            }
            (_, Some(_)) => {
                self.cx.push(
                    o.at("activation"),
                    format!(
                        "`activation` applies to vanilla rnn cells only; an {} cell has fixed activations \
                         ({fixed_activations}); remove it",
                        cell.name()
                    ),
                );
                None
            }
            // Unused by gated cells.
            (_, None) => Some(e::Activation::Tanh),
        };
        let init = r.init.unwrap_or(WEIGHT_INIT);
        self.init(&o.at("init"), init);
        let recurrent_init = r.recurrent_init.unwrap_or(RECURRENT_INIT);
        self.init(&o.at("recurrent_init"), recurrent_init);
        let forget_bias = match (cell, r.forget_bias) {
            (Cell::Lstm, b) => {
                let b = b.unwrap_or(FORGET_BIAS);
                self.finite(&o.at("forget_bias"), "forget_bias", b).then_some(b)
            }
            (_, Some(_)) => {
                self.cx.push(
                    o.at("forget_bias"),
                    format!(
                        "`forget_bias` applies to lstm cells only (it is the initial bias of the forget gate); \
                         this layer's cell is `{}`",
                        cell.name()
                    ),
                );
                None
            }
            (_, None) => Some(FORGET_BIAS),
        };

        let (Some(units), Some(inputs)) = (units, input) else {
            return (None, units);
        };
        let gates = ecell.gates();
        let rows = gates.saturating_mul(units);
        let per_gate = (gates as u128) * (units as u128);
        self.add_params(per_gate * (inputs as u128 + units as u128 + 2));

        let mut params = Some(e::ExplicitParams::new());
        let mut put = |name: &str, value: Option<Vec<f64>>| match (value, params.as_mut()) {
            (Some(v), Some(p)) => {
                p.insert(name.to_owned(), v);
            }
            _ => params = None,
        };
        if let Some(w) = &r.weight_ih {
            let layout = format!("{gate_order}units x inputs");
            put("weight_ih", self.matrix(&o.at("weight_ih"), "weight_ih", w, rows, inputs, &layout));
        }
        if let Some(w) = &r.weight_hh {
            let layout = format!("{gate_order}units x units");
            put("weight_hh", self.matrix(&o.at("weight_hh"), "weight_hh", w, rows, units, &layout));
        }
        for (name, given) in [("bias_ih", &r.bias_ih), ("bias_hh", &r.bias_hh)] {
            if let Some(b) = given {
                let per = format!("{gate_order}units");
                put(name, self.vector(&o.at(name), name, b, rows, &per));
            }
        }

        let config = (|| {
            Some(e::RnnConfig {
                cell: ecell,
                units,
                activation: activation?,
                init: init.to_engine(),
                recurrent_init: recurrent_init.to_engine(),
                return_sequences,
                forget_bias: forget_bias?,
                params: params?,
            })
        })();
        (config.filter(|_| placed_ok).map(e::LayerConfig::Rnn), Some(units))
    }

    fn dense(&mut self, d: &Dense, o: &Origin, input: Option<usize>) -> (Option<e::DenseConfig>, Option<usize>) {
        let units = self.width(&o.at("units"), o.name("units"), d.units, "the layer");
        let activation = d.activation.unwrap_or(DENSE_ACTIVATION);
        self.activation(&o.at("activation"), activation);
        let init = d.init.unwrap_or(WEIGHT_INIT);
        self.init(&o.at("init"), init);
        let bias_init = d.bias_init.unwrap_or(BIAS_INIT);
        self.init(&o.at("bias_init"), bias_init);
        let norm = d.norm.map(Norm::to_engine);
        if let Some((kind, config)) = &norm {
            self.norm_settings(|f| o.at(&format!("norm/{f}")), config, *kind == e::NormKind::Batch);
        }
        let activation = activation.to_engine();
        let is_prelu = matches!(activation, e::Activation::Prelu { .. });

        let (Some(units), Some(inputs)) = (units, input) else {
            return (None, units);
        };
        let u = units as u128;
        let mut n = u * inputs as u128 + u;
        if norm.is_some() {
            n += 2 * u;
        }
        if is_prelu {
            n += u;
        }
        self.add_params(n);

        let mut params = Some(e::ExplicitParams::new());
        let mut put = |name: &str, value: Option<Vec<f64>>| match (value, params.as_mut()) {
            (Some(v), Some(p)) => {
                p.insert(name.to_owned(), v);
            }
            _ => params = None,
        };
        if let Some(w) = &d.weight {
            put("weight", self.matrix(&o.at("weight"), "weight", w, units, inputs, "units x inputs"));
        }
        if let Some(b) = &d.bias {
            put("bias", self.vector(&o.at("bias"), "bias", b, units, "one per unit"));
        }
        let batch = matches!(norm, Some((e::NormKind::Batch, _)));
        for (name, given, needs) in [
            ("norm_weight", &d.norm_weight, norm.is_some()),
            ("norm_bias", &d.norm_bias, norm.is_some()),
            ("running_mean", &d.running_mean, batch),
            ("running_var", &d.running_var, batch),
        ] {
            let Some(v) = given else { continue };
            let ptr = o.at(name);
            if !needs {
                let what = if name.starts_with("running") { "batch norm (`\"norm\": \"batch\"`)" } else { "`norm`" };
                self.cx.push(ptr, format!("`{name}` is given but the layer has no {what}"));
                put(name, None);
                continue;
            }
            let v = self.vector(&ptr, name, v, units, "one per unit");
            let v = v.filter(|v| name != "running_var" || self.variance_ok(&ptr, v));
            put(name, v);
        }
        match self.prelu_weight(o, is_prelu, d.prelu_weight.as_deref(), units) {
            Some(p) => {
                if let (Some(v), Some(all)) = (p.get("prelu_weight"), params.as_mut()) {
                    all.insert("prelu_weight".to_owned(), v.clone());
                }
            }
            None => params = None,
        }

        let (norm_kind, norm_config) = match norm {
            Some((kind, config)) => (Some(kind), config),
            None => (None, e::NormConfig::default()),
        };
        let config = params.map(|params| e::DenseConfig {
            units,
            activation,
            init: init.to_engine(),
            bias_init: bias_init.to_engine(),
            norm: norm_kind,
            norm_config,
            params,
        });
        (config, Some(units))
    }

    /// Running variances must not be negative (the norm takes their square root).
    fn variance_ok(&mut self, ptr: &str, v: &[f64]) -> bool {
        match v.iter().position(|x| *x < 0.0) {
            Some(i) => {
                self.cx.push(index(ptr, i), format!("`running_var` holds a negative variance ({})", v[i]));
                false
            }
            None => true,
        }
    }

    /// `prelu_weight`: one slope per unit, only with a `prelu` activation.
    fn prelu_weight(
        &mut self,
        o: &Origin,
        is_prelu: bool,
        given: Option<&[f64]>,
        width: usize,
    ) -> Option<e::ExplicitParams> {
        let mut params = e::ExplicitParams::new();
        let Some(v) = given else { return Some(params) };
        let ptr = o.at("prelu_weight");
        if !is_prelu {
            self.cx.push(ptr, "`prelu_weight` is given but the activation is not `prelu`");
            return None;
        }
        params.insert("prelu_weight".to_owned(), self.vector(&ptr, "prelu_weight", v, width, "one per unit")?);
        Some(params)
    }

    /// The explicit parameters of a standalone norm: one value per feature each.
    fn feature_params(
        &mut self,
        o: &Origin,
        width: Option<usize>,
        given: &[(&str, &Option<Vec<f64>>)],
    ) -> Option<e::ExplicitParams> {
        let mut params = Some(e::ExplicitParams::new());
        let Some(w) = width else { return params };
        for (name, v) in given {
            let Some(v) = v else { continue };
            let ptr = o.at(name);
            let v = self.vector(&ptr, name, v, w, "one per feature");
            let v = v.filter(|v| *name != "running_var" || self.variance_ok(&ptr, v));
            match (v, params.as_mut()) {
                (Some(v), Some(p)) => {
                    p.insert((*name).to_owned(), v);
                }
                _ => params = None,
            }
        }
        params
    }

    /// Does an output of `width` fit the loss and the targets? `ptr`: the last layer's width.
    fn task(&mut self, width: usize, target: Target, loss: Loss, ptr: &str, kind: &str) {
        let name = loss.name();
        match (loss, target) {
            (Loss::CrossEntropy, Target::Classes(n)) if width != n => self.cx.push(
                ptr,
                format!("the last layer has {width} units but cross_entropy over the {n} classes of the `{kind}` data needs {n}"),
            ),
            (Loss::CrossEntropy, Target::Values { .. }) => self.cx.push(
                "/training/loss",
                format!("cross_entropy needs class labels but the `{kind}` data has regression targets; use mse (or bce for targets in [0, 1])"),
            ),
            (Loss::Bce, Target::Classes(2)) if width != 1 => self.cx.push(
                ptr,
                format!("the last layer has {width} units but bce on 2 classes needs 1 (the logit of class 1)"),
            ),
            (Loss::Bce, Target::Classes(n)) if n != 2 => self.cx.push(
                "/training/loss",
                format!("bce on class labels needs exactly 2 classes but the `{kind}` data has {n}; use cross_entropy"),
            ),
            (Loss::Bce, Target::Values { unit: false, .. }) => self.cx.push(
                "/training/loss",
                format!("bce needs targets in [0, 1] but the `{kind}` data's targets are not all in [0, 1]; use mse"),
            ),
            (Loss::Mse, Target::Classes(n)) if width != n => self.cx.push(
                ptr,
                format!("the last layer has {width} units but mse on {n} class labels compares one-hot targets, so it needs {n} (one per class)"),
            ),
            (Loss::Mse | Loss::Bce, Target::Values { width: k, .. }) if width != k => self.cx.push(
                ptr,
                format!("the last layer has {width} units but {name} needs one per target value, and the `{kind}` data has {k}"),
            ),
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Training, probes, compute.

    fn training(&mut self, t: &Training, data: &DataInfo) -> TrainInfo {
        let batch = self.at_least("/training/batch_size", "batch_size", t.batch_size.unwrap_or(BATCH_SIZE), 1);
        let batch = batch.filter(|b| {
            !self.over_limit("/training/batch_size", "a batch", *b as u128, "samples", self.limits.max_batch_size)
        });

        let (steps, steps_ptr) = match (t.steps, t.epochs) {
            (Some(_), Some(_)) => {
                self.cx.push("/training/epochs", "give `steps` or `epochs`, not both");
                (None, "/training/steps")
            }
            (_, Some(epochs)) => {
                let epochs = self.at_least("/training/epochs", "epochs", epochs, 1);
                let steps = match (epochs, batch, data.train_samples) {
                    (Some(epochs), Some(batch), Some(train)) => {
                        let per_epoch = train.div_ceil(batch) as u128;
                        let steps = (epochs as u128).saturating_mul(per_epoch);
                        let over = self.over_limit(
                            "/training/epochs",
                            &format!(
                                "training ({} epochs of {} batches)",
                                thousands(epochs as u128),
                                thousands(per_epoch)
                            ),
                            steps,
                            "steps",
                            self.limits.max_steps,
                        );
                        if over {
                            None
                        } else {
                            usize::try_from(steps).ok()
                        }
                    }
                    _ => None,
                };
                (steps, "/training/epochs")
            }
            (steps, None) => {
                let steps = self.at_least("/training/steps", "steps", steps.unwrap_or(STEPS), 1);
                let steps = steps.filter(|s| {
                    !self.over_limit("/training/steps", "training", *s as u128, "steps", self.limits.max_steps)
                });
                (steps, "/training/steps")
            }
        };

        self.optimizer(t.optimizer.unwrap_or(OPTIMIZER));
        self.non_negative("/training/weight_decay", "weight_decay", t.weight_decay.unwrap_or(WEIGHT_DECAY));
        if let Some(clip) = t.clip {
            let (Clip::GlobalNorm { max } | Clip::Value { max }) = clip;
            self.positive("/training/clip/max", "max", max);
        }
        let bptt_truncate = match t.bptt_truncate {
            None => Some(None),
            Some(b) => self.at_least("/training/bptt_truncate", "bptt_truncate", b, 1).map(Some),
        };
        TrainInfo { steps, batch, bptt_truncate, steps_ptr }
    }

    fn optimizer(&mut self, opt: Optimizer) {
        let p = |f: &str| join("/training/optimizer", f);
        match opt.to_engine() {
            e::OptimizerConfig::Sgd { lr, momentum, dampening, nesterov } => {
                self.positive(&p("lr"), "lr", lr);
                let m = self.fraction(&p("momentum"), "momentum", momentum, false);
                let d = self.fraction(&p("dampening"), "dampening", dampening, true);
                if nesterov && m && d && (momentum == 0.0 || dampening != 0.0) {
                    // As in PyTorch: Nesterov momentum is defined only for momentum > 0, no dampening.
                    self.cx.push(p("nesterov"), "nesterov needs `momentum` > 0 and `dampening` 0");
                }
            }
            e::OptimizerConfig::Rmsprop { lr, alpha, eps, momentum, .. } => {
                self.positive(&p("lr"), "lr", lr);
                self.fraction(&p("alpha"), "alpha", alpha, false);
                self.positive(&p("eps"), "eps", eps);
                self.fraction(&p("momentum"), "momentum", momentum, false);
            }
            e::OptimizerConfig::Adagrad { lr, lr_decay, eps, initial_accumulator_value } => {
                self.positive(&p("lr"), "lr", lr);
                self.non_negative(&p("lr_decay"), "lr_decay", lr_decay);
                self.positive(&p("eps"), "eps", eps);
                self.non_negative(
                    &p("initial_accumulator_value"),
                    "initial_accumulator_value",
                    initial_accumulator_value,
                );
            }
            e::OptimizerConfig::Adam { lr, beta1, beta2, eps, .. }
            | e::OptimizerConfig::AdamW { lr, beta1, beta2, eps, .. } => {
                self.positive(&p("lr"), "lr", lr);
                self.fraction(&p("beta1"), "beta1", beta1, false);
                self.fraction(&p("beta2"), "beta2", beta2, false);
                self.positive(&p("eps"), "eps", eps);
            }
        }
    }

    fn probes(&mut self, p: &Probes) -> Option<e::ProbeConfig> {
        let every = self.at_least("/probes/every", "every", p.every.unwrap_or(PROBE_EVERY), 1);
        // The first and the last probe are always kept, so fewer than 2 points cannot be honoured.
        self.at_least("/probes/max_points", "max_points", p.max_points.unwrap_or(PROBE_MAX_POINTS), 2);
        Some(e::ProbeConfig {
            every: every?,
            histograms: p.histograms.unwrap_or(PROBE_HISTOGRAMS),
            parameters: p.parameters.unwrap_or(PROBE_PARAMETERS),
        })
    }

    /// parameters x steps x samples per batch, against `max_compute`; for sequences also
    /// x time steps, since a recurrent layer applies its parameters once per step (and the
    /// layers after a `return_sequences` rnn once per step too), forward and backward.
    fn compute(&mut self, steps: usize, batch: usize, seq_len: Option<usize>, ptr: &str) {
        let work = self.params.saturating_mul(steps as u128).saturating_mul(batch as u128);
        let (work, subject, unit) = match seq_len {
            None => (
                work,
                format!(
                    "training ({} parameters x {} steps x {} samples per batch)",
                    thousands(self.params),
                    thousands(steps as u128),
                    thousands(batch as u128)
                ),
                "parameter-sample updates",
            ),
            Some(t) => (
                work.saturating_mul(t as u128),
                format!(
                    "training ({} parameters x {} steps x {} sequences per batch x {} time steps)",
                    thousands(self.params),
                    thousands(steps as u128),
                    thousands(batch as u128),
                    thousands(t as u128)
                ),
                "parameter-time-step updates",
            ),
        };
        self.over_limit(ptr, &subject, work, unit, self.limits.max_compute);
    }
}

/// How the rows flowing between layers relate to samples.
#[derive(Debug, Clone, PartialEq)]
enum Flow {
    /// One row per sample: plain data.
    Samples,
    /// One row per time step of each sample: sequence data, or the output of an rnn with
    /// `return_sequences` (later dense, norm, dropout and activation layers apply per step).
    Steps,
    /// One row per sample after the rnn at this pointer returned only its last step.
    Collapsed(String),
}

/// What the shape walk tracks besides the width.
struct Walk {
    flow: Flow,
    /// Pointer of the last rnn layer seen.
    last_rnn: Option<String>,
    /// Inside a residual block.
    in_residual: bool,
    /// The data's `type`, for messages.
    kind: &'static str,
}

/// The wire name of an activation, for messages.
fn activation_name(a: e::Activation) -> &'static str {
    match a {
        e::Activation::Linear => "linear",
        e::Activation::Sigmoid => "sigmoid",
        e::Activation::Tanh => "tanh",
        e::Activation::Relu => "relu",
        e::Activation::LeakyRelu { .. } => "leaky_relu",
        e::Activation::Elu { .. } => "elu",
        e::Activation::Prelu { .. } => "prelu",
        e::Activation::Selu => "selu",
        e::Activation::Gelu => "gelu",
        e::Activation::Softplus => "softplus",
        e::Activation::Silu => "silu",
    }
}

fn contains_rnn(layers: &[Layer]) -> bool {
    layers.iter().any(|l| match l {
        Layer::Rnn(_) => true,
        Layer::Residual(r) => contains_rnn(&r.layers),
        _ => false,
    })
}

/// The data's `type` name, for messages.
fn data_kind(s: &DataSource) -> &'static str {
    use DataSource as S;
    match s {
        S::Xor { .. } => "xor",
        S::Spirals { .. } => "spirals",
        S::Circles { .. } => "circles",
        S::Moons { .. } => "moons",
        S::Blobs { .. } => "blobs",
        S::Sine { .. } => "sine",
        S::Teacher { .. } => "teacher",
        S::Adding { .. } => "adding",
        S::Copy { .. } => "copy",
        S::TemporalOrder { .. } => "temporal_order",
        S::Parity { .. } => "parity",
        S::SineSequence { .. } => "sine_sequence",
        S::Inline { .. } => "inline",
        S::InlineSequences { .. } => "inline_sequences",
    }
}
