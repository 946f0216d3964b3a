//! Validation of `training` (batch size, steps or epochs, optimiser hyper-parameters, weight
//! decay, clipping, truncated BPTT), `probes`, the compute budget of the whole run, and its
//! memory admission: the estimated peak (`engine::memory`) against `Limits::max_job_memory`.

use super::super::error::{join, thousands, Collector, SpecErrors};
use super::super::expand::*;
use super::super::types::*;
use super::{DataInfo, TrainInfo, Validator};
use crate::engine::config as e;
use crate::engine::memory::{human_bytes, MemoryEstimate, PartKind};

impl Validator<'_> {
    pub(super) fn training(&mut self, t: &Training, data: &DataInfo) -> TrainInfo {
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
        let schedule = self.schedule(t.schedule.unwrap_or(SCHEDULE), steps);
        TrainInfo { steps, batch, bptt_truncate, schedule, steps_ptr }
    }

    /// A warm-up of at least one step and at most the run's steps (a cosine decay needs a step
    /// after its warm-up).
    fn schedule(&mut self, schedule: Schedule, steps: Option<usize>) -> Option<e::Schedule> {
        let ptr = "/training/schedule/warmup_steps";
        let config = schedule.to_engine();
        let w = config.warmup_steps();
        match (schedule, steps) {
            (Schedule::Warmup { warmup_steps: 0 }, _) => {
                self.cx.push(ptr, "`warmup_steps` must be at least 1 (or use the constant schedule)");
                None
            }
            (Schedule::Warmup { .. }, Some(s)) if w > s => {
                self.cx.push(ptr, format!("`warmup_steps` is {w} but the run has {s} steps; at most {s}"));
                None
            }
            (Schedule::Cosine { .. }, Some(s)) if w >= s => {
                self.cx.push(
                    ptr,
                    format!("`warmup_steps` is {w} but the run has {s} steps; a cosine decay needs fewer than {s}"),
                );
                None
            }
            _ => Some(config),
        }
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

    pub(super) fn probes(&mut self, p: &Probes) -> Option<e::ProbeConfig> {
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
    pub(super) fn compute(&mut self, steps: usize, batch: usize, seq_len: Option<usize>, ptr: &str) {
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
        self.work = work;
        self.over_limit(ptr, &subject, work, unit, self.limits.max_compute);
    }
}

impl Validator<'_> {
    /// The run's estimated peak memory against `max_job_memory` (see [`admit_memory`]).
    pub(super) fn memory(&mut self, config: &e::RunConfig, estimate: &MemoryEstimate) {
        memory_problem(&mut self.cx, config, estimate, self.limits.max_job_memory);
    }
}

/// Refuses a run whose estimated peak memory (`estimate`, from `engine::memory::estimate` for a
/// training run or `estimate_analysis` for `analyze`) is over `limit` bytes: one problem naming
/// the estimate, the limit and the biggest part with its formula. Its pointer is the field that
/// drives that part: `/training/batch_size` for what the network keeps per batch (activations,
/// their gradients, caches, recurrent states), `/data/samples` (`/data/x` for inline data) for
/// the data set, `/model/layers` for the parameters, their gradients, the optimiser state and
/// the spectra workspace, `/probes/every` for the run record.
pub fn admit_memory(config: &e::RunConfig, estimate: &MemoryEstimate, limit: u64) -> Result<(), SpecErrors> {
    let mut cx = Collector::new();
    memory_problem(&mut cx, config, estimate, limit);
    cx.finish(Some(()))
}

fn memory_problem(cx: &mut Collector, config: &e::RunConfig, estimate: &MemoryEstimate, limit: u64) {
    if estimate.bytes <= limit {
        return;
    }
    let inline = matches!(config.data, e::DataConfig::Inline { .. } | e::DataConfig::InlineSequences { .. });
    let (pointer, biggest) = match estimate.biggest() {
        Some(p) => (memory_pointer(p.kind, inline), format!("; the biggest part is {p}")),
        None => ("", String::new()),
    };
    cx.push(
        pointer,
        format!(
            "the run needs an estimated {} of memory, over this server's limit of {} per job{biggest}",
            human_bytes(estimate.bytes),
            human_bytes(limit)
        ),
    );
}

/// Where a memory problem points, by the part that dominates (see [`admit_memory`]).
fn memory_pointer(kind: PartKind, inline: bool) -> &'static str {
    match kind {
        PartKind::Data | PartKind::DataCopy if inline => "/data/x",
        PartKind::Data | PartKind::DataCopy => "/data/samples",
        PartKind::Parameters
        | PartKind::Gradients
        | PartKind::OptimizerState
        | PartKind::SpectraWorkspace
        | PartKind::ExportedParameters
        | PartKind::InitialParameters => "/model/layers",
        PartKind::Record => "/probes/every",
        PartKind::Activations
        | PartKind::Deltas
        | PartKind::DenseCaches
        | PartKind::NormCaches
        | PartKind::DropoutMasks
        | PartKind::RecurrentGates
        | PartKind::RecurrentStates
        | PartKind::RecurrentGradients
        | PartKind::AttentionCaches
        | PartKind::BatchTargets => "/training/batch_size",
    }
}
