//! The training loop, the one-shot analysis pass, and the record of what the probes saw.
//!
//! One step: gather a batch, forward (training mode), loss, backward, check for non-finite
//! values, [probe], clip, optimiser update, [update ratios]. Batches always have exactly
//! `batch_size` rows (clamped to the training-set size): they are cut from a shuffled order of
//! the training samples that is reshuffled whenever it runs out, so a batch may span two epochs.
//! Constant batch shapes mean every buffer is allocated in the first step and reused.
//!
//! Cancellation is cooperative: the flag is read before every step, so a cancel takes effect
//! within one step. Non-finite values end the run as [`RunEnd::NonFinite`] with everything
//! measured up to and including that step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::Array2;
use rand::seq::SliceRandom;

use super::config::{LossKind, Precision, RunConfig};
use super::data::{prepare, Dataset, FeatureStats, Targets};
use super::layers::Ctx;
use super::loss::{loss_and_grad, BatchTargets, LossValue};
use super::network::{BlockInfo, LayerInfo, Network};
use super::optim::{clip, Optimizer, ParamSlot};
use super::probe::{log_histogram, mean_std, norm, rank_collapse, AttentionStats, BlockSeries, LayerSeries, NonFinite};
use super::rng::{rng, Rng, Stream};
use super::scalar::sum_sq_max;
use super::{EngineError, Result, Scalar};

/// Set from another thread to stop a run at the next step.
#[derive(Debug, Default)]
pub struct CancelFlag(AtomicBool);

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        CancelFlag(AtomicBool::new(false))
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// True once cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Reported after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Steps completed.
    pub step: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Loss of the last batch.
    pub loss: f64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Every planned step ran.
    Completed,
    /// The cancel flag was seen before `step`.
    Cancelled {
        /// Steps completed.
        step: usize,
    },
    /// NaN or Inf appeared at `step`, first in `layer` (forward order; `loss` when only the loss
    /// was non-finite).
    NonFinite {
        /// The step.
        step: usize,
        /// Layer name, or `loss`.
        layer: String,
        /// `activations`, `gradients` or `loss`.
        location: &'static str,
    },
}

/// One layer's parameters, for export in the spec's explicit-parameter layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    /// Position in the expanded spec tree.
    pub path: Vec<usize>,
    /// For a transformer's sub-layer: its block within the transformer (the tensors go to
    /// `blocks[i]`, named `self_attn.in_proj_weight`, `linear1.weight`, ...).
    pub block: Option<usize>,
    /// (name, shape, row-major values), parameters then buffers.
    pub tensors: Vec<(String, Vec<usize>, Vec<f64>)>,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The reported layers.
    pub layers: Vec<LayerInfo>,
    /// Learnable scalars in the network.
    pub num_params: usize,
    /// Probe steps (0-based step index at which the probe was taken).
    pub steps: Vec<usize>,
    /// Training-batch loss at each probe step.
    pub loss: Vec<f64>,
    /// Training-batch accuracy at each probe step (classification only).
    pub accuracy: Vec<Option<f64>>,
    /// Validation loss at each probe step (eval mode), when there is a validation set.
    pub val_loss: Vec<Option<f64>>,
    /// Validation accuracy at each probe step.
    pub val_accuracy: Vec<Option<f64>>,
    /// Global gradient norm before clipping, at each probe step.
    pub grad_norm_global: Vec<f64>,
    /// Global gradient norm after clipping, at each probe step.
    pub grad_norm_clipped: Vec<f64>,
    /// Per-layer series, parallel to `layers`.
    pub layer_stats: Vec<LayerSeries>,
    /// The residual and transformer blocks.
    pub blocks: Vec<BlockInfo>,
    /// Per-block series, parallel to `blocks`.
    pub block_stats: Vec<BlockSeries>,
    /// Steps at which clipping changed the gradient, over all steps.
    pub clipped_steps: usize,
    /// Steps run.
    pub steps_run: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// How the run ended.
    pub end: RunEnd,
    /// Loss and accuracy of the final network on the training set (eval mode, at most
    /// [`FINAL_EVAL_SAMPLES`] samples).
    pub final_loss: Option<f64>,
    /// See `final_loss`.
    pub final_accuracy: Option<f64>,
    /// The same on the validation set.
    pub final_val_loss: Option<f64>,
    /// See `final_val_loss`.
    pub final_val_accuracy: Option<f64>,
    /// Wall-clock duration.
    pub duration_ms: u64,
    /// Trained parameters, when asked for.
    pub parameters: Option<Vec<LayerParams>>,
    /// Parameter gradients of the last step, when asked for (analysis).
    pub gradients: Option<Vec<LayerParams>>,
    /// Precision the run computed in.
    pub precision: &'static str,
    /// Number of classes of a classification task.
    pub classes: Option<usize>,
    /// Mean and standard deviation of each input feature over the training split, as the
    /// network sees it (after `standardize`; over every time step for sequences).
    pub input_stats: FeatureStats,
    /// The loss of the best constant prediction on the training set: the targets' variance for
    /// mse (predict the mean), the entropy of the class frequencies for cross-entropy (predict
    /// them). A network that does not beat it has learned nothing from its inputs.
    pub baseline_loss: Option<f64>,
}

/// Most probe steps of a run at which recurrent layers compute the spectra of `W_hh`, besides
/// step 0 and the last step (see [`spectra_at`]).
pub const MAX_SPECTRA: usize = 50;

/// Largest share of a run's training compute the spectra of `W_hh` may take (see
/// [`spectra_gap`]).
pub const SPECTRA_BUDGET: f64 = 0.02;

/// Fewest steps between two probes that compute the spectra, so that by estimate they cost at
/// most [`SPECTRA_BUDGET`] of the steps between them. A step is estimated at `6 P B T` flops (`P`
/// parameters, each in a multiply-add per sample and time step forward, twice that backward; this
/// overcounts layers that run once per sequence, such as a dense head on the last state, so the
/// gap errs short); the spectra at `Network::spectra_cost` flop-equivalents (see there). Computed
/// from the configuration alone, so the schedule and the report stay deterministic. Step 0 and
/// the last step have the spectra whatever the gap (see [`spectra_at`]): in a run shorter than
/// the gap they are the whole cost, which the budget does not bound.
pub fn spectra_gap(spectra_cost: f64, params: usize, batch: usize, seq_len: usize) -> usize {
    let step = 6.0 * params as f64 * batch.max(1) as f64 * seq_len.max(1) as f64;
    if spectra_cost <= 0.0 || step <= 0.0 {
        return 1;
    }
    let gap = (spectra_cost / (SPECTRA_BUDGET * step)).ceil();
    if gap.is_finite() && gap >= 1.0 {
        gap.min(usize::MAX as f64) as usize
    } else {
        1
    }
}

/// Whether the probe at `step` computes the spectra of every recurrent `W_hh` block (eigenvalues
/// of an H x H block and of its Gram matrix, O(H^3) each). A run computes them at step 0, at the
/// last step, and at every k-th probe of its schedule (steps that are multiples of `k * every`),
/// with k the smallest number that both keeps them to at most [`MAX_SPECTRA`] probes (plus the
/// last) and spaces them at least `min_gap` steps apart ([`spectra_gap`]: their cost bound). So
/// a short run with small recurrent layers gets them at every probe; a long one at no more than
/// 51 probes; large H with short sequences further apart. At the other probe steps the spectra
/// are absent (left out of the report's `spectra_steps` and its series).
pub fn spectra_at(step: usize, total_steps: usize, every: usize, min_gap: usize) -> bool {
    let every = every.max(1);
    let probes = total_steps.div_ceil(every);
    let k = probes.div_ceil(MAX_SPECTRA).max(min_gap.div_ceil(every)).max(1);
    step == 0 || step + 1 == total_steps || step.is_multiple_of(k.saturating_mul(every))
}

/// Samples used for the end-of-run training-set evaluation.
pub const FINAL_EVAL_SAMPLES: usize = 4096;

/// Trains `config`, calling `progress` after every step.
pub fn train(config: &RunConfig, cancel: &CancelFlag, progress: &mut dyn FnMut(Progress)) -> Result<RunRecord> {
    match config.training.precision {
        Precision::F32 => Session::<f32>::new(config)?.run(cancel, progress),
        Precision::F64 => Session::<f64>::new(config)?.run(cancel, progress),
    }
}

/// One forward/backward at initialisation (or with the given weights) in `f64`, training mode
/// with dropout off, on the first `batch` training samples (all when `None`); probes at step 0
/// and, when `gradients`, every parameter's gradient.
pub fn analyze(config: &RunConfig, batch: Option<usize>, gradients: bool) -> Result<RunRecord> {
    let mut t = Session::<f64>::new(config)?;
    let n = batch.unwrap_or(t.train.len()).clamp(1, t.train.len().max(1));
    t.batch_size = n;
    t.order = (0..n).collect();
    t.dropout = false;
    t.next_batch()?;
    let started = Instant::now();
    let mut record = t.empty_record();
    record.total_steps = 0;
    t.forward_backward(&mut record, 0, true)?;
    record.steps_run = 0;
    if gradients {
        record.gradients = Some(t.export(|p| &p.grad, false));
    }
    if config.probes.parameters {
        record.parameters = Some(t.export(|p| &p.value, true));
    }
    record.duration_ms = started.elapsed().as_millis() as u64;
    Ok(record)
}

/// A training run in progress: the network, its optimiser and its data. [`train`] drives one
/// to the end; benchmarks and tools may step it themselves.
pub struct Session<'c, T> {
    config: &'c RunConfig,
    net: Network<T>,
    optimizer: Optimizer<T>,
    train: Dataset,
    validation: Option<Dataset>,
    batch_size: usize,
    order: Vec<usize>,
    cursor: usize,
    shuffle_rng: Rng,
    dropout_rng: Rng,
    dropout: bool,
    /// Time steps per sample (1 for plain data).
    seq_len: usize,
    /// See [`spectra_gap`].
    spectra_gap: usize,
    labels: Vec<usize>,
    values: Array2<T>,
    /// Squared change of every parameter at the last probed update (reused).
    update_sq: Vec<f64>,
    /// `(sum g^2, max |g|)` of every parameter's gradient in [`Network::params`] order, from the
    /// last backward pass: the global norm and the probes' gradient statistics share this pass.
    grad_sums: Vec<(f64, f64)>,
    /// Allocations of the per-step lists of gradient slices (clipping) and parameter slots (the
    /// update), kept empty between steps and reused through [`recycle`]: no allocation per step.
    grad_buf: Vec<&'c mut [T]>,
    slot_buf: Vec<ParamSlot<'c, T>>,
}

/// `v` emptied and retyped (for another lifetime of the borrows it holds), keeping its
/// allocation: `Vec`'s in-place `collect` reuses the buffer when the element types have the same
/// size and alignment, as they do here (`tests/engine_alloc.rs` checks that no step allocates).
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl<'c, T: Scalar> Session<'c, T> {
    /// Fewest steps between two probes that compute the spectra of `W_hh` ([`spectra_gap`]).
    pub fn spectra_gap(&self) -> usize {
        self.spectra_gap
    }

    /// Generates the data and builds the network of `config`.
    pub fn new(config: &'c RunConfig) -> Result<Self> {
        let (train, validation) = prepare(config)?;
        let seq_len = train.seq_len.unwrap_or(1);
        if train.is_empty() {
            return Err(EngineError::config("data", "the training set is empty"));
        }
        let net = Network::<T>::new(&config.network, config.seed)?;
        if train.input_dim() != net.input_dim() {
            return Err(EngineError::Shape {
                layer: "the network's input".to_owned(),
                expected: format!("{} features (network.input_dim)", net.input_dim()),
                got: format!("{} features per sample (or time step) in the data", train.input_dim()),
            });
        }
        let batch_size = config.training.batch_size.clamp(1, train.len());
        let (net_spectra_cost, net_params) = (net.spectra_cost(), net.num_params());
        let mut shuffle_rng = rng(config.seed, Stream::Shuffle);
        let mut order: Vec<usize> = (0..train.len()).collect();
        if config.training.shuffle {
            order.shuffle(&mut shuffle_rng);
        }
        Ok(Session {
            optimizer: Optimizer::new(config.training.optimizer, config.training.weight_decay),
            net,
            train,
            validation,
            batch_size,
            order,
            cursor: 0,
            shuffle_rng,
            dropout_rng: rng(config.seed, Stream::Dropout),
            dropout: true,
            spectra_gap: spectra_gap(net_spectra_cost, net_params, batch_size, seq_len),
            seq_len,
            labels: Vec::new(),
            values: Array2::zeros((0, 0)),
            update_sq: Vec::new(),
            grad_sums: Vec::new(),
            grad_buf: Vec::new(),
            slot_buf: Vec::new(),
            config,
        })
    }

    /// A record with no probes yet, for this session's network.
    pub fn empty_record(&self) -> RunRecord {
        let layers = self.net.layers().to_vec();
        let blocks = self.net.blocks().to_vec();
        RunRecord {
            layer_stats: vec![LayerSeries::default(); layers.len()],
            block_stats: vec![BlockSeries::default(); blocks.len()],
            blocks,
            layers,
            num_params: self.net.num_params(),
            steps: Vec::new(),
            loss: Vec::new(),
            accuracy: Vec::new(),
            val_loss: Vec::new(),
            val_accuracy: Vec::new(),
            grad_norm_global: Vec::new(),
            grad_norm_clipped: Vec::new(),
            clipped_steps: 0,
            steps_run: 0,
            total_steps: self.config.training.steps,
            end: RunEnd::Completed,
            final_loss: None,
            final_accuracy: None,
            final_val_loss: None,
            final_val_accuracy: None,
            duration_ms: 0,
            parameters: None,
            gradients: None,
            precision: T::NAME,
            baseline_loss: baseline_loss(&self.train, self.config.training.loss),
            input_stats: self.train.feature_stats(),
            classes: match self.train.y {
                Targets::Classes { classes, .. } => Some(classes),
                Targets::Values(_) => None,
            },
        }
    }

    fn run(mut self, cancel: &CancelFlag, progress: &mut dyn FnMut(Progress)) -> Result<RunRecord> {
        let started = Instant::now();
        let mut record = self.empty_record();
        let total = self.config.training.steps;
        let every = self.config.probes.every.max(1);
        for step in 0..total {
            if cancel.is_cancelled() {
                record.end = RunEnd::Cancelled { step };
                break;
            }
            let probe = step % every == 0 || step + 1 == total;
            let loss = self.step(&mut record, step, probe)?;
            if !matches!(record.end, RunEnd::Completed) {
                break;
            }
            progress(Progress { step: step + 1, total_steps: total, loss: loss.loss });
        }
        if !matches!(record.end, RunEnd::NonFinite { .. }) {
            self.final_evaluation(&mut record)?;
        }
        if self.config.probes.parameters {
            record.parameters = Some(self.export(|p| &p.value, true));
        }
        record.duration_ms = started.elapsed().as_millis() as u64;
        Ok(record)
    }

    /// One training step (batch, forward, backward, clip, update), probed when `probe`.
    /// Returns the batch loss; after a non-finite step `record.end` says where it happened and
    /// no update was made.
    pub fn step(&mut self, record: &mut RunRecord, step: usize, probe: bool) -> Result<LossValue> {
        self.next_batch()?;
        let loss = self.forward_backward(record, step, probe)?;
        if matches!(record.end, RunEnd::Completed) {
            self.update(record, probe)?;
            record.steps_run = step + 1;
        }
        Ok(loss)
    }

    /// Moves the next `batch_size` training rows into the network input and target buffers.
    fn next_batch(&mut self) -> Result<()> {
        if self.cursor + self.batch_size > self.order.len() {
            // Reshuffle and start a new pass; the remainder of the old one is dropped so that
            // every batch has the same shape.
            if self.config.training.shuffle {
                self.order.shuffle(&mut self.shuffle_rng);
            }
            self.cursor = 0;
        }
        let idx = &self.order[self.cursor..self.cursor + self.batch_size];
        self.cursor += self.batch_size;
        self.train.gather_x(idx, self.net.input_mut())?;
        self.train.gather_y(idx, &mut self.labels, &mut self.values)
    }

    /// Forward, loss, backward on the batch in the buffers; records a probe when `probe`, and
    /// ends the run (in `record.end`) on non-finite values.
    fn forward_backward(&mut self, record: &mut RunRecord, step: usize, probe: bool) -> Result<LossValue> {
        let (total, every) = (self.config.training.steps, self.config.probes.every);
        self.net.measure_spectra(probe && spectra_at(step, total, every, self.spectra_gap));
        let mut ctx = Ctx {
            training: true,
            dropout: self.dropout,
            probe,
            rng: &mut self.dropout_rng,
            seq_len: self.seq_len,
            bptt_truncate: self.config.training.bptt_truncate,
        };
        self.net.forward(&mut ctx)?;
        let kind = self.config.training.loss;
        let targets = match self.train.y {
            Targets::Classes { .. } => BatchTargets::Classes(&self.labels),
            Targets::Values(_) => BatchTargets::Values(&self.values),
        };
        let (out, grad) = self.net.output_and_grad();
        let value = loss_and_grad(kind, out, targets, grad)?;
        self.net.backward(false)?;
        self.grad_sums.clear();
        self.grad_sums.extend(self.net.params().map(|(_, p)| match p.grad.as_slice_memory_order() {
            Some(g) => sum_sq_max(g),
            None => sum_sq_max(&p.grad.iter().copied().collect::<Vec<_>>()),
        }));
        let gnorm = self.grad_sums.iter().map(|s| s.0).sum::<f64>().sqrt();
        let finite = value.loss.is_finite() && gnorm.is_finite();
        if probe || !finite {
            self.record_probe(record, step, value, gnorm)?;
        }
        if !finite {
            record.end = self.locate_non_finite(record, step);
        }
        Ok(value)
    }

    fn record_probe(&mut self, record: &mut RunRecord, step: usize, value: LossValue, gnorm: f64) -> Result<()> {
        // Per-step targets are scored at every (step, sample) pair.
        let batch = (self.batch_size * if self.train.per_step_targets { self.seq_len } else { 1 }) as f64;
        record.steps.push(step);
        record.loss.push(value.loss);
        record.accuracy.push(value.correct.map(|c| c as f64 / batch));
        record.grad_norm_global.push(gnorm);
        record.grad_norm_clipped.push(gnorm);
        let histograms = self.config.probes.histograms;
        let mut sums = self.grad_sums.as_slice();
        for (series, info) in record.layer_stats.iter_mut().zip(self.net.layers()) {
            let Some(layer) = self.net.layer(info) else { continue };
            let params = layer.params();
            let (own, rest) = sums.split_at(params.len().min(sums.len()));
            sums = rest;
            let weight = params.first().zip(own.first());
            let stats = weight.map(|(w, &(sq, max))| (sq.sqrt(), (sq / w.len().max(1) as f64).sqrt(), max));
            series.grad_norm.push(stats.map(|s| s.0));
            series.grad_rms.push(stats.map(|s| s.1));
            series.grad_max.push(stats.map(|s| s.2));
            series.weight_norm.push(weight.map(|(w, _)| norm(&w.value)));
            let bias = params.iter().zip(own).find(|(p, _)| p.name == "bias");
            series.bias_grad_norm.push(bias.map(|(_, s)| s.0.sqrt()));
            series.update_ratio.push(None);
            let out = self.net.output_of(info);
            let (mean, std) = mean_std(out);
            series.activation_mean.push(mean);
            series.activation_std.push(std);
            series.delta_norm.push(norm(self.net.delta_of(info)));
            let units = layer.unit_stats();
            series.saturation.push(units.saturation);
            series.dead_fraction.push(units.dead_fraction);
            if let Some(rec) = layer.recurrent_stats() {
                let hh = params.iter().zip(own).find(|(p, _)| p.name == "weight_hh");
                series.recurrent_grad_norm.push(hh.map(|(_, s)| s.0.sqrt()));
                series.recurrent.push(rec.clone());
            }
            if let Some(att) = layer.as_attention() {
                series.attention.push(AttentionStats {
                    entropy: att.attention_entropy(),
                    max_logit: att.max_logit(),
                    rank_collapse: rank_collapse(out, self.seq_len),
                });
            }
            if histograms {
                series.histograms.push(weight.map(|(w, _)| log_histogram(&w.grad)).unwrap_or_default());
            }
            // A NaN or infinity makes the sums non-finite, so only then are they counted.
            let mut nf = NonFinite::default();
            if !mean.is_finite() {
                nf.add(NonFinite::of(out.iter()));
            }
            for (p, _) in params.iter().zip(own).filter(|(_, s)| !s.0.is_finite()) {
                nf.add(NonFinite::of(p.grad.iter()));
            }
            series.non_finite.add(nf);
        }
        for (series, block) in record.block_stats.iter_mut().zip(self.net.blocks()) {
            let out = self.net.block_output(block);
            series.stream_norm.push(norm(out));
            let delta = self.net.block_input_delta(block);
            series.delta_norm.push((delta.nrows() == out.nrows()).then(|| norm(delta)));
            series.rank_collapse.push(rank_collapse(out, self.seq_len));
        }
        let (vl, va) = match &self.validation {
            Some(v) => {
                let (l, a) = evaluate(&mut self.net, v, self.batch_size, self.config, self.seq_len)?;
                (Some(l), a)
            }
            None => (None, None),
        };
        record.val_loss.push(vl);
        record.val_accuracy.push(va);
        Ok(())
    }

    /// The first layer (forward order) whose output, or else whose gradient, is non-finite.
    fn locate_non_finite(&self, _record: &RunRecord, step: usize) -> RunEnd {
        for info in self.net.layers() {
            if !NonFinite::of(self.net.output_of(info).iter()).is_clean() {
                return RunEnd::NonFinite { step, layer: info.name.clone(), location: "activations" };
            }
        }
        for info in self.net.layers().iter().rev() {
            let bad = self
                .net
                .layer(info)
                .is_some_and(|l| l.params().iter().any(|p| !NonFinite::of(p.grad.iter()).is_clean()));
            if bad {
                return RunEnd::NonFinite { step, layer: info.name.clone(), location: "gradients" };
            }
        }
        RunEnd::NonFinite { step, layer: "loss".into(), location: "loss" }
    }

    /// Clip, then the optimiser step; at probe steps also the update ratios.
    fn update(&mut self, record: &mut RunRecord, probe: bool) -> Result<()> {
        if let Some(c) = &self.config.training.clip {
            let mut grads: Vec<&mut [T]> = recycle(std::mem::take(&mut self.grad_buf));
            grads.extend(self.net.params_mut().filter_map(|p| p.grad.as_slice_mut()));
            let (before, after) = clip(c, &mut grads);
            self.grad_buf = recycle(grads);
            if after < before || after != before {
                record.clipped_steps += 1;
            }
            if probe {
                if let Some(last) = record.grad_norm_clipped.last_mut() {
                    *last = after;
                }
            }
        }
        let schedule = self.config.training.schedule;
        self.optimizer.set_lr_factor(schedule.factor(self.optimizer.steps_taken(), self.config.training.steps));
        let mut slots: Vec<ParamSlot<'_, T>> = recycle(std::mem::take(&mut self.slot_buf));
        slots.extend(self.net.params_mut().filter_map(|p| {
            let grad = p.grad.as_slice()?;
            let value = p.value.as_slice_mut()?;
            Some(ParamSlot { value, grad })
        }));
        if !probe {
            let stepped = self.optimizer.step(&mut slots);
            self.slot_buf = recycle(slots);
            return stepped;
        }
        // Parameter arrays are row-major by construction, so there is one slot per parameter
        // in `Network::params` order; were one missing, the ratios would be left out.
        let complete = slots.len() == self.grad_sums.len();
        self.update_sq.clear();
        self.update_sq.resize(slots.len(), f64::NAN);
        let stepped = self.optimizer.step_measured(&mut slots, &mut self.update_sq);
        self.slot_buf = recycle(slots);
        stepped?;
        if !complete {
            return Ok(());
        }
        let mut update_sq = self.update_sq.as_slice();
        for (series, info) in record.layer_stats.iter_mut().zip(self.net.layers()) {
            let n = self.net.layer(info).map_or(0, |l| l.params().len());
            let (own, rest) = update_sq.split_at(n.min(update_sq.len()));
            update_sq = rest;
            // The weight (first parameter) norm before the step was recorded by this probe.
            let ratio = own.first().zip(series.weight_norm.last().copied().flatten()).map(|(sq, w)| sq.sqrt() / w);
            if let Some(last) = series.update_ratio.last_mut() {
                *last = ratio;
            }
        }
        Ok(())
    }

    fn final_evaluation(&mut self, record: &mut RunRecord) -> Result<()> {
        let (l, a) = evaluate(&mut self.net, &self.train, self.batch_size, self.config, self.seq_len)?;
        record.final_loss = Some(l);
        record.final_accuracy = a;
        if let Some(v) = &self.validation {
            let (l, a) = evaluate(&mut self.net, v, self.batch_size, self.config, self.seq_len)?;
            record.final_val_loss = Some(l);
            record.final_val_accuracy = a;
        }
        Ok(())
    }

    /// Parameters (or gradients) in spec layout; `with_buffers` adds batch-norm running statistics.
    fn export(&self, pick: impl Fn(&super::layers::Param<T>) -> &Array2<T>, with_buffers: bool) -> Vec<LayerParams> {
        self.net
            .layers()
            .iter()
            .filter_map(|info| {
                let layer = self.net.layer(info)?;
                let mut tensors: Vec<(String, Vec<usize>, Vec<f64>)> = layer
                    .params()
                    .iter()
                    .map(|p| {
                        let a = pick(p);
                        let shape = if p.is_vector { vec![a.len()] } else { a.shape().to_vec() };
                        let name = match info.part {
                            Some((_, part)) => format!("{}.{}", part.name(), p.name),
                            None => p.name.to_string(),
                        };
                        (name, shape, a.iter().map(|v| v.f64()).collect())
                    })
                    .collect();
                if with_buffers {
                    tensors.extend(layer.buffers().into_iter().map(|(n, v)| (n.to_string(), vec![v.len()], v)));
                }
                Some(LayerParams { path: info.path.clone(), block: info.part.map(|(b, _)| b), tensors })
            })
            .collect()
    }
}

/// Loss and accuracy of `net` in evaluation mode on the first [`FINAL_EVAL_SAMPLES`] samples of
/// `data`, taken in chunks of `chunk` rows: the training batch size, so that the network's
/// buffers keep their size (and a large evaluation set does not multiply the memory held by
/// every layer). Fails only when a buffer cannot be allocated.
fn evaluate<T: Scalar>(
    net: &mut Network<T>,
    data: &Dataset,
    chunk: usize,
    config: &RunConfig,
    seq_len: usize,
) -> Result<(f64, Option<f64>)> {
    let n = data.len().min(FINAL_EVAL_SAMPLES);
    let idx: Vec<usize> = (0..n).collect();
    let mut labels = Vec::new();
    let mut values = Array2::<T>::zeros((0, 0));
    let mut r = rng(config.seed, Stream::Dropout);
    // Each chunk's loss is a mean over its rows (cross-entropy) or its rows x outputs (mse, bce),
    // so weighting by rows gives the mean over all of them.
    let (mut loss, mut correct) = (0.0f64, None::<usize>);
    for rows in idx.chunks(chunk.max(1)) {
        data.gather_x(rows, net.input_mut())?;
        data.gather_y(rows, &mut labels, &mut values)?;
        let mut ctx = Ctx { training: false, dropout: false, probe: false, rng: &mut r, seq_len, bptt_truncate: None };
        net.forward(&mut ctx)?;
        let targets = match data.y {
            Targets::Classes { .. } => BatchTargets::Classes(&labels),
            Targets::Values(_) => BatchTargets::Values(&values),
        };
        let (out, grad) = net.output_and_grad();
        let v = loss_and_grad(config.training.loss, out, targets, grad)?;
        loss += v.loss * rows.len() as f64;
        correct = v.correct.map(|c| c + correct.unwrap_or(0));
    }
    let n = n.max(1) as f64;
    let scored = if data.per_step_targets { n * seq_len as f64 } else { n };
    Ok((loss / n, correct.map(|c| c as f64 / scored)))
}

/// See [`RunRecord::baseline_loss`].
fn baseline_loss(data: &Dataset, loss: LossKind) -> Option<f64> {
    match (&data.y, loss) {
        (Targets::Values(v), LossKind::Mse) => {
            let (rows, cols) = v.dim();
            if rows == 0 {
                return None;
            }
            let var: f64 = v
                .columns()
                .into_iter()
                .map(|c| {
                    let mean = c.sum() / rows as f64;
                    c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / rows as f64
                })
                .sum();
            Some(var / cols.max(1) as f64)
        }
        (Targets::Classes { labels, classes }, LossKind::CrossEntropy) => {
            let mut counts = vec![0usize; *classes];
            for &l in labels {
                if let Some(c) = counts.get_mut(l) {
                    *c += 1;
                }
            }
            let n = labels.len().max(1) as f64;
            Some(counts.iter().filter(|&&c| c > 0).map(|&c| -(c as f64 / n) * (c as f64 / n).ln()).sum())
        }
        _ => None,
    }
}

/// The loss a network should start near for a balanced classification task: ln(classes) for
/// cross-entropy. Used by diagnostics; `None` when there is no such reference.
pub fn chance_loss(kind: LossKind, classes: usize) -> Option<f64> {
    match kind {
        LossKind::CrossEntropy if classes > 1 => Some((classes as f64).ln()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{spectra_at, spectra_gap, MAX_SPECTRA};

    /// Spectra at step 0, the last step and a regular subset of the probes: every probe of a
    /// short run, at most `MAX_SPECTRA + 1` probes of a long one.
    #[test]
    fn spectra_schedule_is_bounded_and_keeps_the_ends() {
        for (total, every) in [(0, 1), (1, 1), (30, 1), (50, 1), (51, 1), (1000, 1), (2000, 10), (100_000, 7)] {
            let probes: Vec<usize> = (0..total).filter(|s| s % every == 0 || s + 1 == total).collect();
            let with: Vec<usize> = probes.iter().copied().filter(|&s| spectra_at(s, total, every, 1)).collect();
            assert!(with.len() <= MAX_SPECTRA + 1, "{total} {every}: {}", with.len());
            if total > 0 {
                assert_eq!((with.first(), with.last()), (Some(&0), Some(&(total - 1))));
            }
            if probes.len() <= MAX_SPECTRA {
                assert_eq!(with, probes);
            }
        }
        // 1000 steps probed every step: every 20th.
        assert_eq!((0..1000).filter(|&s| spectra_at(s, 1000, 1, 1)).count(), 51);
        assert!(spectra_at(980, 1000, 1, 1) && !spectra_at(981, 1000, 1, 1));
        assert!(spectra_at(0, 0, 1, 1));
        // A cost gap of 150 steps spaces them further: 0, 150, ..., 900 and the last.
        let with: Vec<usize> = (0..1000).filter(|&s| spectra_at(s, 1000, 1, 150)).collect();
        assert_eq!(with, vec![0, 150, 300, 450, 600, 750, 900, 999]);
        // Probed every 10 steps, the gap rounds up to whole probe intervals (16 x 10).
        assert!(spectra_at(160, 1000, 10, 155) && !spectra_at(150, 1000, 10, 155));
    }

    /// The gap bounds the spectra's share of the compute by the budget, and is 1 when they are
    /// cheap or absent.
    #[test]
    fn spectra_gap_keeps_the_cost_within_the_budget() {
        // LSTM H 128 (4 blocks) after 2 inputs, batch 32, T 50 (the benchmark's configuration).
        let (h, params) = (128.0f64, 4 * 128 * (2 + 128 + 2) + 129);
        let cost = 4.0 * 300.0 * h.powi(3);
        let gap = spectra_gap(cost, params, 32, 50);
        let step = 6.0 * params as f64 * 32.0 * 50.0;
        assert!(cost / (gap as f64 * step) <= super::SPECTRA_BUDGET);
        assert!(cost / ((gap - 1) as f64 * step) > super::SPECTRA_BUDGET);
        assert_eq!(spectra_gap(0.0, params, 32, 50), 1);
        assert_eq!(spectra_gap(1.0, params, 32, 50), 1);
        assert_eq!(spectra_gap(cost, 0, 0, 0), 1);
    }
}
