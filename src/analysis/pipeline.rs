//! From a request body to a report: parse, validate, run the engine, then assemble the report
//! — measure -> diagnose -> recommend -> rank (by measuring the patched specs) -> theory; after a
//! training run, each recommendation verified by training it for a short budget (`verify`).
//!
//! The one place that strings the layers together and the one place a report is assembled, so
//! that the command line, the worker pool and the HTTP API give the same answer for the same
//! spec. Two entry points, [`run`] and [`analyze`], each with its options struct.

use serde_json::Value;
use thiserror::Error;

use super::causes::{attribute, drop_consequence_cures};
use super::diagnostics::{diagnose, verdict};
use super::experiment::RunResult;
use super::findings::{Diagnostic, Measured};
use super::measures::{delta_ratio_first_last, grad_ratio_first_last, sequence_length};
use super::recommend::{rank_by_measurement, recommend};
use super::report::{build_report, layer_entries, spec_with_params, Outcome, Parts, Report};
use super::theory::{theory_at_init, StepZero};
use super::verify::{verify, Job};
use crate::engine::config::{DataConfig, RunConfig};
use crate::engine::memory::{self, PartKind};
use crate::engine::train::{self, CancelFlag, Progress, RunRecord};
use crate::engine::EngineError;
use crate::problem::Problem;
use crate::spec::{admit_memory, parse, Limits, Spec, SpecErrors};

/// Default number of probe points kept per series.
pub const DEFAULT_MAX_POINTS: usize = 200;
/// Samples `analyze` uses when neither the spec's `training.batch_size` nor inline data says.
pub const DEFAULT_ANALYZE_BATCH: usize = 64;
/// Patched specs measured per report when ranking recommendations (one forward/backward each).
pub const MAX_MEASURED_RECOMMENDATIONS: usize = 8;
/// Largest parameters x batch x time steps of a spec whose recommendations are measured: a
/// large spec near the analysis limits must not turn one `POST /v1/analyze` into nine. A
/// compute bound, not a clock, so that the same spec always gives the same report; above it the
/// recommendations keep their documented order.
pub const MAX_MEASURED_COMPUTE: f64 = 2.5e9;

/// Why a spec produced no report.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The spec is invalid.
    #[error("invalid spec: {0}")]
    Invalid(SpecErrors),
    /// The engine refused the validated config (a gap in validation, reported, not panicked).
    #[error("engine: {0}")]
    Engine(EngineError),
}

impl PipelineError {
    /// The problem detail a client should see.
    pub fn problem(&self) -> Option<Problem> {
        Some(match self {
            PipelineError::MalformedJson(m) => Problem::malformed_json(m.clone()),
            PipelineError::Invalid(errors) => Problem::invalid_spec(errors),
            // A valid run the memory could not hold: not the spec's fault, so not a 422.
            PipelineError::Engine(e @ EngineError::OutOfMemory { .. }) => Problem::out_of_memory(e.to_string()),
            // The engine speaks engine terms (no pointers): its message, without an entry.
            PipelineError::Engine(e) => Problem::new("invalid-spec", "Invalid spec", 422, e.to_string()),
        })
    }
}

/// A finished training run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The report.
    pub report: Report,
    /// The expanded spec with the trained parameters written into its layers, when asked for
    /// ([`RunOptions::params_out`]).
    pub spec_with_params: Option<Value>,
}

/// How to train a spec.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// The admission limits the spec is validated against.
    pub limits: &'a Limits,
    /// Also return the expanded spec with the trained parameters written into it
    /// (`gradscope run --params-out`). Parameters are collected only when this or the spec's
    /// `probes.parameters` asks: as JSON they cost several times the network's size (a 50 x 512
    /// MLP: 13 M numbers), which a plain run must not pay.
    pub params_out: bool,
    /// Share of the job's compute its recommendations' verification may take together
    /// (`analysis::verify`); 0 switches verification off (the report then has no
    /// `verification` entries).
    pub verify_share: f64,
}

impl<'a> RunOptions<'a> {
    /// A plain run without verification.
    pub fn new(limits: &'a Limits) -> RunOptions<'a> {
        RunOptions { limits, params_out: false, verify_share: 0.0 }
    }
}

/// How to analyse a spec (one forward/backward).
#[derive(Debug, Clone, Copy)]
pub struct AnalyzeOptions<'a> {
    /// The admission limits the spec is validated against.
    pub limits: &'a Limits,
    /// Return every parameter's gradient (also when the spec's `return_gradients` says so).
    pub gradients: bool,
}

/// Parses a JSON body into a spec.
pub fn parse_body(body: &[u8]) -> Result<Spec, PipelineError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PipelineError::MalformedJson(e.to_string()))?;
    parse(&value).map_err(PipelineError::Invalid)
}

/// Parses a JSON body into a spec. When it does not parse, the problems also list what
/// validation against `limits` finds in the rest (`spec::with_validation`), so one answer names
/// every mistake; a spec that parses is validated by [`run`] or [`analyze`] as usual.
pub fn check_body(body: &[u8], limits: &Limits) -> Result<Spec, PipelineError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PipelineError::MalformedJson(e.to_string()))?;
    parse(&value).map_err(|errors| PipelineError::Invalid(crate::spec::with_validation(&value, errors, limits)))
}

/// `limits` for validating an analysis' spec before its memory is admitted: an analysis admits
/// one batch in f64 ([`memory::estimate_analysis`]), not a training run.
pub fn analysis_validation_limits(limits: &Limits) -> Limits {
    Limits { max_job_memory: u64::MAX, ..limits.clone() }
}

/// Validates and trains `spec`; the report echoes the expanded spec.
pub fn run(
    spec: &Spec,
    options: &RunOptions<'_>,
    cancel: &CancelFlag,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunOutput, PipelineError> {
    // Validate the spec as written, so that pointers name what the user wrote (an mlp, not
    // the dense layer it expanded into); the expanded spec gives the same config.
    let mut config = spec.validate(options.limits).map_err(PipelineError::Invalid)?;
    let expanded = spec.expanded();
    let wants_params = config.probes.parameters;
    config.probes.parameters = wants_params || options.params_out;
    let record = train::train(&config, cancel, progress).map_err(PipelineError::Engine)?;
    let spec_json = serde_json::to_value(&expanded).unwrap_or(Value::Null);
    let at_init = StepZero::Train;
    let assembled =
        assemble(&config, &record, spec_json.clone(), at_init, options.limits, analyze_batch(spec, &config));
    let mut report =
        build_report(&record, Parts { max_points: max_points(&expanded), parameters: wants_params, ..assembled });
    if options.verify_share > 0.0 && report.summary.outcome != Outcome::Cancelled {
        let own = RunResult::from_report(&report);
        let compute = spec.validate_measured(options.limits).map_or(0, |(_, w)| w);
        // What the job keeps while its recommendations are verified: its record (and report).
        let estimate = memory::estimate(&config);
        let held = estimate.bytes_of(PartKind::Record).saturating_mul(2);
        let job = Job {
            spec: &spec_json,
            steps: config.training.steps,
            compute,
            own: &own,
            limits: options.limits,
            held,
            cancel,
        };
        verify(&mut report.diagnostics, &job, options.verify_share);
    }
    let spec_with_params = options
        .params_out
        .then(|| record.parameters.as_ref().map(|p| spec_with_params(&spec_json, p)).unwrap_or(spec_json));
    Ok(RunOutput { report, spec_with_params })
}

/// One forward/backward at initialisation (or with the given weights): training mode (batch
/// statistics), dropout off, on the first `training.batch_size` samples — all inline samples,
/// or [`DEFAULT_ANALYZE_BATCH`], when the spec gives no batch size.
///
/// Its memory is held to `limits.max_job_memory` by its own estimate
/// (`engine::memory::estimate_analysis`: f64, its batch), not the training run's.
pub fn analyze(spec: &Spec, options: &AnalyzeOptions<'_>) -> Result<Report, PipelineError> {
    let gradients = options.gradients || spec.return_gradients.unwrap_or(false);
    let (config, batch) = validate_analysis(spec, options.limits, gradients).map_err(PipelineError::Invalid)?;
    let expanded = spec.expanded();
    let mut record = train::analyze(&config, Some(batch), gradients).map_err(PipelineError::Engine)?;
    // The network analysed is the initial one: its loss is the one forward pass's (a non-finite
    // one still becomes `null` in the report, and only then).
    record.final_loss = record.loss.first().copied();
    record.final_accuracy = record.accuracy.first().copied().flatten();
    let spec_json = serde_json::to_value(&expanded).unwrap_or(Value::Null);
    let assembled = assemble(&config, &record, spec_json, StepZero::Analyze { batch }, options.limits, batch);
    Ok(build_report(&record, Parts { max_points: max_points(&expanded), parameters: true, ..assembled }))
}

/// Diagnoses `record`, recommends cures, ranks them by measuring the patched specs and adds
/// the theory at initialisation: everything a report holds besides the measurements.
fn assemble(
    config: &RunConfig,
    record: &RunRecord,
    spec: Value,
    step0: StepZero,
    limits: &Limits,
    batch: usize,
) -> Parts {
    let mut diagnostics = diagnose(record, record.classes);
    attribute(&mut diagnostics, record);
    recommend(&mut diagnostics, &spec, &layer_entries(record));
    drop_consequence_cures(&mut diagnostics);
    rank_recommendations(&mut diagnostics, &spec, record, limits, batch);
    Parts {
        verdict: verdict(&diagnostics),
        theory: Some(theory_at_init(config, record, step0)),
        diagnostics,
        spec,
        seed: config.seed,
        max_points: DEFAULT_MAX_POINTS,
        parameters: false,
    }
}

/// Validates `spec` for `analyze` and admits its memory ([`memory::estimate_analysis`] on its
/// batch against `limits.max_job_memory`); the config and the batch.
fn validate_analysis(spec: &Spec, limits: &Limits, gradients: bool) -> Result<(RunConfig, usize), SpecErrors> {
    let config = spec.validate(&analysis_validation_limits(limits))?;
    let batch = analyze_batch(spec, &config);
    admit_memory(&config, &memory::estimate_analysis(&config, batch, gradients), limits.max_job_memory)?;
    Ok((config, batch))
}

fn analyze_batch(spec: &Spec, config: &RunConfig) -> usize {
    let given_batch = spec.training.as_ref().and_then(|t| t.batch_size).map(|b| b as usize);
    match (&config.data, given_batch) {
        (_, Some(b)) => b,
        (DataConfig::Inline { x, .. }, None) => x.len(),
        (_, None) => DEFAULT_ANALYZE_BATCH,
    }
}

/// Measures the recommendations whose cure shows at initialisation on their patched specs and
/// ranks them by it (see `analysis::recommend`): gradscope reports what the change did to this
/// network, not what it is said to do.
fn rank_recommendations(
    diagnostics: &mut [Diagnostic],
    spec: &Value,
    record: &RunRecord,
    limits: &Limits,
    batch: usize,
) {
    let compute = record.num_params as f64 * batch as f64 * sequence_length(record).unwrap_or(1) as f64;
    if compute > MAX_MEASURED_COMPUTE {
        return;
    }
    let mut budget = MAX_MEASURED_RECOMMENDATIONS;
    rank_by_measurement(diagnostics, spec, &mut |patched| {
        budget = budget.checked_sub(1)?;
        measure_at_init(patched, limits)
    });
}

/// One forward/backward of `spec_json` at initialisation; `None` when it does not validate or
/// its memory is over the limit (as `analyze` admits it).
fn measure_at_init(spec_json: &Value, limits: &Limits) -> Option<Measured> {
    let spec = parse(spec_json).ok()?;
    let (config, batch) = validate_analysis(&spec, limits, false).ok()?;
    let record = train::analyze(&config, Some(batch), false).ok()?;
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    Some(Measured {
        grad_ratio_first_last: finite(grad_ratio_first_last(&record)),
        delta_ratio_first_last: finite(delta_ratio_first_last(&record)),
        verdict: verdict(&diagnose(&record, record.classes)),
    })
}

fn max_points(spec: &Spec) -> usize {
    spec.probes.as_ref().and_then(|p| p.max_points).map_or(DEFAULT_MAX_POINTS, |m| m as usize)
}
