//! An estimate of a run's peak memory from its validated configuration, so that a run that
//! would not fit is refused before it allocates anything (`spec` compares it with
//! `Limits::max_job_memory`).
//!
//! The model follows the arrays the engine allocates (`E` bytes per element: 4 in f32, 8 in
//! f64; data sets are f64 whatever the precision). With `B` the batch (clamped to the training
//! samples), `T` the time steps (1 for plain data), `P` the parameters and `R = B x T` the rows
//! a layer sees before the last recurrent layer that drops the time axis (`B` after it):
//!
//! | part | bytes |
//! |---|---|
//! | parameters, their gradients | `P x E` each |
//! | optimiser state | `P x E` x (SGD: 1 with momentum; RMSprop: 1 + momentum + centred; Adagrad: 1; Adam/AdamW: 2 + amsgrad) |
//! | data set (train + validation) | `samples x T x F x 8` + targets (`x 8`, per step when the task has them) |
//! | activations (`t_0 ..= t_n`) and deltas (`d_1 ..= d_n`) | `rows x width x E` per node (`network.rs`) |
//! | dense caches | `p` (kept unless f' follows from the output), `z` and `dz` before a norm, `dp` scratch unless linear: `rows x units x E` each |
//! | norm caches | `x_hat`: `rows x features x E` per norm |
//! | dropout masks | `rows x width x E` per dropout layer with rate > 0 |
//! | recurrent states kept for backpropagation | per rnn layer: gates `R x G x H`, `h` `(R + B) x H`; LSTM `c` `(R + B) x H` and `tanh c` `R x H`; GRU `W_hn h` `R x H`; all `x E` |
//! | recurrent gradients | per rnn layer: `dG` `R x G x H` (GRU twice), a few `B x H` rows, `W_hh^T` `H x G x H`; `x E` |
//! | batch targets | `rows x outputs x E` (regression) or `rows x 8` (labels) |
//! | run record | per probe: ~80 bytes + per layer ~170 bytes (+ 248 with histograms, + `8 T + 32 G + 32 G` per recurrent layer: `||dL/dh_t||` at every step, gate and spectrum figures) |
//! | W_hh spectra workspace | `6 H^2 x 8` (the largest recurrent layer's block and its Gram matrix, eigenvalue solvers) |
//! | exported parameters (`probes.parameters`) | `P x 40` (an f64 copy and its JSON) |
//!
//! The peak is the largest of three phases, and the estimate lists the parts of that one:
//! **data preparation** (the generated set and its shuffled copy, then the train/validation
//! copies: `2 x data`), **training** (everything above but the second data copy), and **after
//! training** (the record, the theory at initialisation regenerating plain data, `2 x data`, and
//! an f64 copy of the initial parameters, `P x 8`). Evaluation reuses the training buffers
//! (`train::evaluate` cuts chunks of the batch size). [`estimate_analysis`] models `analyze`:
//! one forward/backward in f64 on its batch, no optimiser state, no dropout masks.
//!
//! Not counted: the process's fixed footprint (code, the allocator, the products' packing
//! buffers, threads), and for inline data the request's own copies (bounded by the body size).
//! `tests/memory_estimate.rs` measures the peak resident memory of real runs against this.

use std::fmt;

use super::config::{
    Activation, CellKind, DataConfig, InlineSequenceTargets, InlineTargets, LayerConfig, OptimizerConfig,
    PositionalKind, Precision, RunConfig,
};

/// What a part of the estimate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// Parameter values.
    Parameters,
    /// Parameter gradients.
    Gradients,
    /// The optimiser's per-parameter buffers.
    OptimizerState,
    /// The data set (train and validation splits).
    Data,
    /// The second copy of the data set while it is generated, shuffled and split.
    DataCopy,
    /// Every node's output (`t_k`, the input batch included).
    Activations,
    /// Every node's output gradient (`d_k`).
    Deltas,
    /// Dense layers' pre-activations and gradient scratch.
    DenseCaches,
    /// Batch and layer norms' normalised values.
    NormCaches,
    /// Dropout masks.
    DropoutMasks,
    /// A recurrent layer's per-step gates kept for backpropagation.
    RecurrentGates,
    /// A recurrent layer's per-step states (`h`, LSTM `c` and `tanh c`, GRU `W_hn h`).
    RecurrentStates,
    /// A recurrent layer's per-step gate gradients and scratch.
    RecurrentGradients,
    /// An attention layer's projections, heads, attention weights and their gradients.
    AttentionCaches,
    /// The batch's targets in the run's precision.
    BatchTargets,
    /// The run record's series (every probe step).
    Record,
    /// The eigenvalue solvers' workspace of the W_hh spectra.
    SpectraWorkspace,
    /// Trained parameters exported with the report.
    ExportedParameters,
    /// An f64 copy of the initial parameters (the theory at initialisation).
    InitialParameters,
}

/// One part of an estimate: what it is, in words, its formula with the figures, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPart {
    /// What the part is.
    pub kind: PartKind,
    /// Bytes.
    pub bytes: u64,
    /// What it is, in words ("the LSTM gates kept for backpropagation (rnn_0)").
    pub what: String,
    /// The formula with its figures ("1,024 sequences × 2,000 steps × 4 gates × 512 units × 4 bytes").
    pub formula: String,
}

impl fmt::Display for MemoryPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} = {}", self.what, self.formula, human_bytes(self.bytes))
    }
}

/// The phase of a run whose parts make the peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Generating, shuffling and splitting the data.
    DataPreparation,
    /// The training steps (or `analyze`'s forward/backward) and the evaluations.
    Training,
    /// The record and the theory at initialisation after training.
    AfterTraining,
}

/// A run's estimated peak memory: the parts held at its largest phase and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The sum of `parts` (saturating).
    pub bytes: u64,
    /// The phase the peak falls in.
    pub phase: Phase,
    /// What is held at the peak.
    pub parts: Vec<MemoryPart>,
}

impl MemoryEstimate {
    /// The largest part (the first of equal ones).
    pub fn biggest(&self) -> Option<&MemoryPart> {
        self.parts.iter().fold(None, |best: Option<&MemoryPart>, p| match best {
            Some(b) if b.bytes >= p.bytes => Some(b),
            _ => Some(p),
        })
    }

    /// Bytes of the parts of `kind`.
    pub fn bytes_of(&self, kind: PartKind) -> u64 {
        self.parts.iter().filter(|p| p.kind == kind).fold(0u64, |a, p| a.saturating_add(p.bytes))
    }

    fn of(phase: Phase, parts: Vec<MemoryPart>) -> Self {
        let parts: Vec<MemoryPart> = parts.into_iter().filter(|p| p.bytes > 0).collect();
        let bytes = parts.iter().fold(0u64, |a, p| a.saturating_add(p.bytes));
        MemoryEstimate { bytes, phase, parts }
    }
}

/// The estimated peak memory of training `config` ([`super::train::train`]); see the module doc.
pub fn estimate(config: &RunConfig) -> MemoryEstimate {
    let elem = match config.training.precision {
        Precision::F32 => 4,
        Precision::F64 => 8,
    };
    let shape = Shape::of(config);
    let mut training = shape.data_parts(false);
    training.extend(shape.network_parts(config, elem, config.training.batch_size, true));
    training.extend(optimizer_part(config.training.optimizer, shape.params, elem));
    let record = record_part(config, &shape);
    training.push(record.clone());
    training.extend(spectra_part(config));
    if config.probes.parameters {
        training.push(exported_part(shape.params));
    }
    let mut after = vec![record];
    if config.probes.parameters {
        after.push(exported_part(shape.params));
    }
    if shape.steps.is_none() {
        after.extend(shape.data_parts(true));
    }
    after.push(part(
        PartKind::InitialParameters,
        "an f64 copy of the initial parameters (theory at initialisation)",
        vec![(shape.params, "parameters"), (8, "bytes")],
    ));
    peak(vec![
        MemoryEstimate::of(Phase::DataPreparation, shape.data_parts(true)),
        MemoryEstimate::of(Phase::Training, training),
        MemoryEstimate::of(Phase::AfterTraining, after),
    ])
}

/// The estimated peak memory of `analyze` on `batch` samples ([`super::train::analyze`]): one
/// forward/backward in f64, without optimiser state or dropout masks; `gradients` when every
/// parameter's gradient is exported.
pub fn estimate_analysis(config: &RunConfig, batch: usize, gradients: bool) -> MemoryEstimate {
    let shape = Shape::of(config);
    let mut parts = shape.data_parts(false);
    parts.extend(shape.network_parts(config, 8, batch, false));
    let exports = u64::from(gradients) + u64::from(config.probes.parameters);
    if exports > 0 {
        parts.push(part(
            PartKind::ExportedParameters,
            "the parameters and gradients exported with the report (an f64 copy and its JSON)",
            vec![(exports, "exports"), (shape.params, "parameters"), (40, "bytes")],
        ));
    }
    peak(vec![
        MemoryEstimate::of(Phase::DataPreparation, shape.data_parts(true)),
        MemoryEstimate::of(Phase::Training, parts),
    ])
}

fn peak(phases: Vec<MemoryEstimate>) -> MemoryEstimate {
    phases.into_iter().fold(MemoryEstimate { bytes: 0, phase: Phase::Training, parts: Vec::new() }, |best, p| {
        if p.bytes > best.bytes {
            p
        } else {
            best
        }
    })
}

pub use super::units::{human_bytes, thousands};

/// A part whose bytes are the product of `factors`, each shown with its unit.
fn part(kind: PartKind, what: impl Into<String>, factors: Vec<(u64, &str)>) -> MemoryPart {
    let bytes = factors.iter().fold(1u64, |a, (n, _)| a.saturating_mul(*n));
    let formula = factors.iter().map(|(n, unit)| format!("{} {unit}", thousands(*n))).collect::<Vec<_>>().join(" × ");
    MemoryPart { kind, bytes, what: what.into(), formula }
}

fn u(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Sizes the parts need, from the configuration.
struct Shape {
    /// Samples of the whole data set.
    samples: u64,
    /// Training samples after the validation split.
    train: u64,
    /// Time steps (`None` for plain data).
    steps: Option<u64>,
    /// Input values per sample (all time steps).
    x_values: u64,
    /// Target values per sample and their width per row of a batch.
    y_values: u64,
    /// Targets per batch row: (values per row, regression).
    y_row: (u64, bool),
    /// Targets per time step rather than per sequence.
    per_step: bool,
    /// Trainable parameters.
    params: u64,
}

impl Shape {
    fn of(config: &RunConfig) -> Shape {
        let (samples, steps, per_step, x_row, y_row) = data_shape(&config.data, u(config.network.input_dim));
        let t = steps.unwrap_or(1);
        let y_per = if per_step { t } else { 1 };
        let held = held_out(samples, config.training.validation_split);
        Shape {
            samples,
            train: samples - held,
            steps,
            x_values: x_row.saturating_mul(t),
            y_values: y_row.0.saturating_mul(y_per),
            y_row,
            per_step,
            params: params(&config.network.layers, u(config.network.input_dim)),
        }
    }

    /// The data set (train and validation), and with `copy` its second copy.
    fn data_parts(&self, copy: bool) -> Vec<MemoryPart> {
        let per_sample = self.x_values.saturating_add(self.y_values);
        let what = match self.steps {
            Some(t) => format!("the data set ({} time steps per sequence, f64)", thousands(t)),
            None => "the data set (f64)".to_owned(),
        };
        let data = part(PartKind::Data, what, vec![(self.samples, "samples"), (per_sample, "values"), (8, "bytes")]);
        let mut parts = vec![data.clone()];
        if copy {
            parts.push(MemoryPart {
                kind: PartKind::DataCopy,
                what: "its shuffled (then split) copy while it is prepared".to_owned(),
                ..data
            });
        }
        parts
    }

    /// Arrays the network and its layers keep for a batch of `batch`; `training` adds dropout
    /// masks (off in `analyze`).
    fn network_parts(&self, config: &RunConfig, elem: u64, batch: usize, training: bool) -> Vec<MemoryPart> {
        let b = u(batch.clamp(1, usize::try_from(self.train.max(1)).unwrap_or(usize::MAX)));
        let t = self.steps.unwrap_or(1);
        let mut w = Walk { b, t, elem, training, nodes: Vec::new(), caches: Vec::new(), names: 0 };
        w.layers(&config.network.layers, b.saturating_mul(t), u(config.network.input_dim));
        let mut parts = w.caches;
        let (acts, deltas) = w.nodes.iter().enumerate().fold((0u64, 0u64), |(a, d), (k, (rows, width))| {
            let n = rows.saturating_mul(*width);
            // d_0 (the input's gradient) is not computed in training.
            (a.saturating_add(n), if k == 0 { d } else { d.saturating_add(n) })
        });
        let rows_uniform = w.nodes.iter().all(|(r, _)| *r == w.nodes[0].0);
        let arrays = u(w.nodes.len());
        let mut sized = |kind, what: &str, values: u64, arrays: u64| {
            let factors = match w.nodes.first() {
                Some((rows, _)) if rows_uniform && *rows > 0 => {
                    vec![(*rows, "rows"), (values / rows, "units summed over the arrays"), (elem, "bytes")]
                }
                _ => vec![(values, "values"), (elem, "bytes")],
            };
            parts.push(part(kind, format!("{what} ({} arrays)", thousands(arrays)), factors));
        };
        sized(
            PartKind::Activations,
            "the activations the network keeps: every layer's output and the input batch",
            acts,
            arrays,
        );
        sized(PartKind::Deltas, "the gradients of every layer's output", deltas, arrays.saturating_sub(1));
        let rows = if self.per_step { b.saturating_mul(t) } else { b };
        let (width, regression) = self.y_row;
        if regression {
            parts.push(part(
                PartKind::BatchTargets,
                "the batch's targets",
                vec![(rows, "rows"), (width, "outputs"), (elem, "bytes")],
            ));
        } else {
            parts.push(part(PartKind::BatchTargets, "the batch's labels", vec![(rows, "labels"), (8, "bytes")]));
        }
        parts.push(part(PartKind::Parameters, "the parameters", vec![(self.params, "parameters"), (elem, "bytes")]));
        parts.push(part(PartKind::Gradients, "their gradients", vec![(self.params, "parameters"), (elem, "bytes")]));
        parts
    }
}

/// Samples, time steps, per-step targets, inputs per row (per time step) and targets per row
/// (width, regression) of a data set; `input_dim` is the network's input width.
fn data_shape(data: &DataConfig, input_dim: u64) -> (u64, Option<u64>, bool, u64, (u64, bool)) {
    let class = (1, false);
    match data {
        DataConfig::Xor { samples, .. }
        | DataConfig::Spirals { samples, .. }
        | DataConfig::Circles { samples, .. }
        | DataConfig::Moons { samples, .. }
        | DataConfig::Blobs { samples, .. } => (u(*samples), None, false, input_dim, class),
        DataConfig::Sine { samples, .. } => (u(*samples), None, false, input_dim, (1, true)),
        DataConfig::Teacher { samples, classes, outputs, .. } => {
            let y = if *classes == 0 { (u(*outputs), true) } else { class };
            (u(*samples), None, false, input_dim, y)
        }
        DataConfig::Adding { samples, length } => (u(*samples), Some(u(*length)), false, input_dim, (1, true)),
        DataConfig::Copy { samples, length, delay } => {
            let t = u(*length).saturating_mul(2).saturating_add(u(*delay));
            (u(*samples), Some(t), true, input_dim, class)
        }
        DataConfig::TemporalOrder { samples, length }
        | DataConfig::Parity { samples, length }
        | DataConfig::MarkedRecall { samples, length, .. } => (u(*samples), Some(u(*length)), false, input_dim, class),
        DataConfig::SineSequence { samples, length, .. } => (u(*samples), Some(u(*length)), true, input_dim, (1, true)),
        DataConfig::InlineSequences { x, y } => {
            let t = u(x.first().map_or(0, Vec::len));
            let (per_step, y_row) = match y {
                InlineSequenceTargets::PerSequence(InlineTargets::Classes(_)) => (false, class),
                InlineSequenceTargets::PerSequence(InlineTargets::Values(v)) => {
                    (false, (u(v.first().map_or(0, Vec::len)), true))
                }
                InlineSequenceTargets::ClassesPerStep(_) => (true, class),
                InlineSequenceTargets::ValuesPerStep(v) => {
                    (true, (u(v.first().and_then(|s| s.first()).map_or(0, Vec::len)), true))
                }
            };
            (u(x.len()), Some(t), per_step, input_dim, y_row)
        }
        DataConfig::Inline { x, y } => {
            let y_row = match y {
                InlineTargets::Classes(_) => class,
                InlineTargets::Values(v) => (u(v.first().map_or(0, Vec::len)), true),
            };
            (u(x.len()), None, false, input_dim, y_row)
        }
    }
}

/// Samples [`super::data::Dataset::split`] holds out.
fn held_out(samples: u64, fraction: f64) -> u64 {
    if fraction.is_nan() || fraction <= 0.0 || samples < 2 {
        return 0;
    }
    let wanted = (samples as f64 * fraction).round().min(samples as f64);
    (wanted as u64).clamp(1, samples - 1)
}

/// A width back as `usize` (widths come from `usize` configs, so this never saturates in practice).
fn u_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Trainable parameters of `layers` fed `width` features (as the layers count them).
fn params(layers: &[LayerConfig], mut width: u64) -> u64 {
    let mut total = 0u64;
    for l in layers {
        let (n, out) = match l {
            LayerConfig::Dense(d) => {
                let units = u(d.units);
                let mut n = units.saturating_mul(width.saturating_add(1));
                if matches!(d.activation, Activation::Prelu { .. }) {
                    n = n.saturating_add(units);
                }
                if d.norm.is_some() {
                    n = n.saturating_add(units.saturating_mul(2));
                }
                (n, units)
            }
            LayerConfig::BatchNorm(_) | LayerConfig::LayerNorm(_) => (width.saturating_mul(2), width),
            LayerConfig::Activation { activation: Activation::Prelu { .. }, .. } => (width, width),
            LayerConfig::Activation { .. } | LayerConfig::Dropout { .. } => (0, width),
            LayerConfig::Residual(inner) => (params(inner, width), width),
            LayerConfig::Transformer(t) => (params(&t.as_residual_layers(u_usize(width)), width), width),
            LayerConfig::Rnn(r) => {
                let (h, g) = (u(r.units), u(r.cell.gates()));
                (g.saturating_mul(h).saturating_mul(width.saturating_add(h).saturating_add(2)), h)
            }
            // in_proj (3d x d and 3d), out_proj (d x d and d).
            LayerConfig::Attention(_) => (width.saturating_mul(width.saturating_add(1)).saturating_mul(4), width),
            LayerConfig::Pool(_) => (0, width),
            LayerConfig::Positional(p) => {
                (if p.kind == PositionalKind::Learned { u(p.steps).saturating_mul(width) } else { 0 }, width)
            }
        };
        total = total.saturating_add(n);
        width = out;
    }
    total
}

/// The walk through the layers: every node's output shape and every layer's caches.
struct Walk {
    b: u64,
    t: u64,
    elem: u64,
    training: bool,
    /// `(rows, width)` of `t_0 ..= t_n`.
    nodes: Vec<(u64, u64)>,
    caches: Vec<MemoryPart>,
    /// Reported layers so far (for their names).
    names: usize,
}

impl Walk {
    fn name(&mut self, kind: &str) -> String {
        let n = format!("{kind}_{}", self.names);
        self.names += 1;
        n
    }

    fn layers(&mut self, layers: &[LayerConfig], mut rows: u64, mut width: u64) -> (u64, u64) {
        if self.nodes.is_empty() {
            self.nodes.push((rows, width));
        }
        let e = self.elem;
        for l in layers {
            let rows_word = if rows == self.b { "samples" } else { "rows (time steps × batch)" };
            match l {
                LayerConfig::Dense(d) => {
                    let name = self.name("dense");
                    let units = u(d.units);
                    // p kept, z and dz before a norm, dp scratch unless linear without a norm.
                    let keeps_pre = d.norm.is_some()
                        || matches!(d.activation, Activation::Prelu { .. })
                        || !d.activation.derivative_from_output();
                    let dp = d.norm.is_some() || d.activation != Activation::Linear;
                    let arrays = u64::from(keeps_pre) + u64::from(dp) + 2 * u64::from(d.norm.is_some());
                    self.caches.push(part(
                        PartKind::DenseCaches,
                        format!("the pre-activations and gradient scratch of {name}"),
                        vec![(arrays, "arrays"), (rows, rows_word), (units, "units"), (e, "bytes")],
                    ));
                    if d.norm.is_some() {
                        self.caches.push(part(
                            PartKind::NormCaches,
                            format!("the normalised values of {name}'s norm"),
                            vec![(rows, rows_word), (units, "units"), (e, "bytes")],
                        ));
                    }
                    width = units;
                }
                LayerConfig::BatchNorm(_) | LayerConfig::LayerNorm(_) => {
                    let name =
                        self.name(if matches!(l, LayerConfig::BatchNorm(_)) { "batch_norm" } else { "layer_norm" });
                    self.caches.push(part(
                        PartKind::NormCaches,
                        format!("the normalised values of {name}"),
                        vec![(rows, rows_word), (width, "features"), (e, "bytes")],
                    ));
                }
                LayerConfig::Dropout { rate } => {
                    let name = self.name("dropout");
                    if self.training && *rate > 0.0 {
                        self.caches.push(part(
                            PartKind::DropoutMasks,
                            format!("the mask of {name}"),
                            vec![(rows, rows_word), (width, "units"), (e, "bytes")],
                        ));
                    }
                }
                LayerConfig::Activation { .. } => {
                    let name = self.name("activation");
                    // The first layer computes its input gradient into its own scratch.
                    if self.nodes.len() == 1 {
                        self.caches.push(part(
                            PartKind::DenseCaches,
                            format!("the gradient scratch of {name}"),
                            vec![(rows, rows_word), (width, "units"), (e, "bytes")],
                        ));
                    }
                }
                LayerConfig::Residual(inner) => {
                    let (r, w) = self.layers(inner, rows, width);
                    (rows, width) = (r, w);
                }
                LayerConfig::Transformer(t) => {
                    let (r, w) = self.layers(&t.as_residual_layers(u_usize(width)), rows, width);
                    (rows, width) = (r, w);
                }
                LayerConfig::Rnn(r) => {
                    let name = self.name("rnn");
                    let (h, g) = (u(r.units), u(r.cell.gates()));
                    let (b, t) = (self.b, self.t);
                    let cell = match r.cell {
                        CellKind::Vanilla => "vanilla RNN",
                        CellKind::Lstm => "LSTM",
                        CellKind::Gru => "GRU",
                    };
                    let gate_word = if r.cell == CellKind::Vanilla { "pre-activation" } else { "gates" };
                    self.caches.push(part(
                        PartKind::RecurrentGates,
                        format!("the {cell} {gate_word} kept for backpropagation ({name})"),
                        vec![(b, "sequences"), (t, "steps"), (g, gate_word), (h, "units"), (e, "bytes")],
                    ));
                    // h_0..=h_T; LSTM c_0..=c_T and tanh c_1..=tanh c_T; GRU W_hn h per step.
                    let (states, words) = match r.cell {
                        CellKind::Vanilla => (t.saturating_add(1), "steps + 1 (h)"),
                        CellKind::Lstm => {
                            (t.saturating_mul(3).saturating_add(2), "(3 × steps + 2) states (h, c, tanh c)")
                        }
                        CellKind::Gru => (t.saturating_mul(2).saturating_add(1), "(2 × steps + 1) states (h, W_hn h)"),
                    };
                    self.caches.push(part(
                        PartKind::RecurrentStates,
                        format!("the {cell} states kept for backpropagation ({name})"),
                        vec![(b, "sequences"), (states, words), (h, "units"), (e, "bytes")],
                    ));
                    // dG; the GRU keeps its recurrent side apart (`W_hn h` sits inside r).
                    let sides: &[&str] =
                        if r.cell == CellKind::Gru { &[" (input side)", " (recurrent side)"] } else { &[""] };
                    for side in sides {
                        self.caches.push(part(
                            PartKind::RecurrentGradients,
                            format!("the {cell} gate gradients of every step{side} ({name})"),
                            vec![(b, "sequences"), (t, "steps"), (g, gate_word), (h, "units"), (e, "bytes")],
                        ));
                    }
                    // W_hh^T, and rows of B: dh, dh_prev, dc, the captured state, the GRU's product.
                    let scratch = g.saturating_mul(h).saturating_add(b.saturating_mul(4 + g));
                    self.caches.push(part(
                        PartKind::RecurrentGradients,
                        format!("the {cell} per-step scratch ({name})"),
                        vec![(scratch, "rows"), (h, "units"), (e, "bytes")],
                    ));
                    width = h;
                    if !r.return_sequences {
                        rows = b;
                    }
                }
                LayerConfig::Attention(a) => {
                    let name = self.name("attention");
                    let (t, heads) = (self.t, u(a.heads));
                    // QKV and dQKV (3d wide each) and the heads side by side (d wide, dC in
                    // backward): 7 arrays of rows x d.
                    self.caches.push(part(
                        PartKind::AttentionCaches,
                        format!("the projections, heads and their gradients of {name}"),
                        vec![(7, "arrays"), (rows, rows_word), (width, "features"), (e, "bytes")],
                    ));
                    self.caches.push(part(
                        PartKind::AttentionCaches,
                        format!("the attention weights of {name}"),
                        vec![(rows, rows_word), (heads, "heads"), (t, "steps"), (e, "bytes")],
                    ));
                    self.caches.push(part(
                        PartKind::AttentionCaches,
                        format!("the attention weight gradients of one head of {name}"),
                        vec![(t, "steps"), (t, "steps"), (e, "bytes")],
                    ));
                }
                LayerConfig::Pool(_) => {
                    self.name("pool");
                    rows = self.b;
                }
                LayerConfig::Positional(p) => {
                    let name = self.name("positional");
                    if p.kind == PositionalKind::Sinusoidal {
                        self.caches.push(part(
                            PartKind::AttentionCaches,
                            format!("the sinusoidal table of {name}"),
                            vec![(self.t, "steps"), (width, "features"), (e, "bytes")],
                        ));
                    }
                }
            }
            // The layer's output, or the residual block's `Add` node.
            self.nodes.push((rows, width));
        }
        (rows, width)
    }
}

fn optimizer_part(optimizer: OptimizerConfig, params: u64, elem: u64) -> Option<MemoryPart> {
    let (buffers, name) = match optimizer {
        OptimizerConfig::Sgd { momentum, .. } => (u64::from(momentum != 0.0), "SGD momentum"),
        OptimizerConfig::Rmsprop { momentum, centered, .. } => {
            (1 + u64::from(momentum > 0.0) + u64::from(centered), "RMSprop")
        }
        OptimizerConfig::Adagrad { .. } => (1, "Adagrad"),
        OptimizerConfig::Adam { amsgrad, .. } => (2 + u64::from(amsgrad), "Adam"),
        OptimizerConfig::AdamW { amsgrad, .. } => (2 + u64::from(amsgrad), "AdamW"),
    };
    (buffers > 0).then(|| {
        part(
            PartKind::OptimizerState,
            format!("the {name} optimiser state"),
            vec![(buffers, "buffers"), (params, "parameters"), (elem, "bytes")],
        )
    })
}

/// Probe steps of a run: every `every`-th step and the last.
fn probe_count(steps: usize, every: usize) -> u64 {
    let every = every.max(1);
    let regular = steps.div_ceil(every);
    let last = usize::from(steps > 0 && !(steps - 1).is_multiple_of(every));
    u(regular.saturating_add(last))
}

/// Layers as the record reports them, and per recurrent layer its gates.
fn reported(layers: &[LayerConfig], out: &mut Vec<Option<u64>>) {
    for l in layers {
        match l {
            LayerConfig::Residual(inner) => reported(inner, out),
            LayerConfig::Rnn(r) => out.push(Some(u(r.cell.gates()))),
            _ => out.push(None),
        }
    }
}

fn record_part(config: &RunConfig, shape: &Shape) -> MemoryPart {
    let probes = probe_count(config.training.steps, config.probes.every);
    let mut layers = Vec::new();
    reported(&config.network.layers, &mut layers);
    let t = shape.steps.unwrap_or(1);
    let histograms = if config.probes.histograms { 248 } else { 0 };
    let per_probe = layers.iter().fold(80u64, |a, l| {
        let recurrent = l.map_or(0, |g| t.saturating_mul(8).saturating_add(64 * g).saturating_add(72));
        a.saturating_add(170 + histograms).saturating_add(recurrent)
    });
    let what = if layers.iter().any(Option::is_some) {
        "the run record (per probe: every layer's figures, the recurrent layers' gradient norm at every time step)"
    } else {
        "the run record (per probe: every layer's figures)"
    };
    part(PartKind::Record, what, vec![(probes, "probes"), (per_probe, "bytes")])
}

fn spectra_part(config: &RunConfig) -> Option<MemoryPart> {
    fn widest(layers: &[LayerConfig]) -> usize {
        layers
            .iter()
            .map(|l| match l {
                LayerConfig::Rnn(r) => r.units,
                LayerConfig::Residual(inner) => widest(inner),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }
    let h = u(widest(&config.network.layers));
    // Computed at step 0 and the last step whatever the schedule (`train::spectra_at`).
    (h > 0).then(|| {
        part(
            PartKind::SpectraWorkspace,
            "the W_hh spectra workspace (a block, its Gram matrix and the eigenvalue solvers')",
            vec![(6, "matrices"), (h, "units"), (h, "units"), (8, "bytes")],
        )
    })
}

fn exported_part(params: u64) -> MemoryPart {
    part(
        PartKind::ExportedParameters,
        "the trained parameters exported with the report (an f64 copy and its JSON)",
        vec![(params, "parameters"), (40, "bytes")],
    )
}

#[cfg(test)]
mod tests;
