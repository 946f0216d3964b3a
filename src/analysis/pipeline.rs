//! From a request body to a report: parse, validate, run the engine, build the report.
//!
//! The one place that strings the layers together, so that the command line and the HTTP API
//! give the same answer for the same spec.

use serde_json::Value;
use thiserror::Error;

use super::recommend::{rank_by_measurement, Measured};
use super::report::{build_report, delta_ratio_first_last, grad_ratio_first_last, spec_with_params, Report};
use super::theory::{theory_at_init, StepZero};
use crate::engine::config::{DataConfig, RunConfig};
use crate::engine::train::{analyze, train, CancelFlag, Progress};
use crate::engine::EngineError;
use crate::problem::Problem;
use crate::spec::{parse, Limits, Spec, SpecErrors};

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
    /// ([`run_spec_with_params`]).
    pub spec_with_params: Option<Value>,
}

/// Parses a JSON body into a spec.
pub fn parse_body(body: &[u8]) -> Result<Spec, PipelineError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PipelineError::MalformedJson(e.to_string()))?;
    parse(&value).map_err(PipelineError::Invalid)
}

/// Trains the spec in `body` (see [`run_spec`]).
pub fn run_json(
    body: &[u8],
    limits: &Limits,
    cancel: &CancelFlag,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunOutput, PipelineError> {
    run_spec(&parse_body(body)?, limits, cancel, progress)
}

/// Trains the spec in `body` (see [`run_spec_with_params`]).
pub fn run_json_with_params(
    body: &[u8],
    limits: &Limits,
    cancel: &CancelFlag,
    progress: &mut dyn FnMut(Progress),
    params_out: bool,
) -> Result<RunOutput, PipelineError> {
    run_spec_with_params(&parse_body(body)?, limits, cancel, progress, params_out)
}

/// Validates and trains `spec`; the report echoes the expanded spec.
pub fn run_spec(
    spec: &Spec,
    limits: &Limits,
    cancel: &CancelFlag,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunOutput, PipelineError> {
    run_spec_with_params(spec, limits, cancel, progress, false)
}

/// [`run_spec`], and with `params_out` also the expanded spec with the trained parameters
/// written into it (`gradscope run --params-out`). Parameters are collected only when this or
/// the spec's `probes.parameters` asks: as JSON they cost several times the network's size
/// (a 50 x 512 MLP: 13 M numbers), which a plain run must not pay.
pub fn run_spec_with_params(
    spec: &Spec,
    limits: &Limits,
    cancel: &CancelFlag,
    progress: &mut dyn FnMut(Progress),
    params_out: bool,
) -> Result<RunOutput, PipelineError> {
    // Validate the spec as written, so that pointers name what the user wrote (an mlp, not
    // the dense layer it expanded into); the expanded spec gives the same config.
    let mut config = spec.validate(limits).map_err(PipelineError::Invalid)?;
    let expanded = spec.expanded();
    let wants_params = config.probes.parameters;
    config.probes.parameters = wants_params || params_out;
    let record = train(&config, cancel, progress).map_err(PipelineError::Engine)?;
    let spec_json = serde_json::to_value(&expanded).unwrap_or(Value::Null);
    let mut report = build_report(spec_json.clone(), config.seed, max_points(&expanded), &record);
    report.theory = Some(theory_at_init(&config, &record, StepZero::Train));
    rank_recommendations(&mut report, limits, analyze_batch(spec, &config));
    let spec_with_params =
        params_out.then(|| record.parameters.as_ref().map(|p| spec_with_params(&spec_json, p)).unwrap_or(spec_json));
    if !wants_params {
        report.parameters = None;
    }
    Ok(RunOutput { report, spec_with_params })
}

/// One forward/backward on the spec in `body` (see [`analyze_spec`]).
pub fn analyze_json(body: &[u8], limits: &Limits, gradients: bool) -> Result<Report, PipelineError> {
    analyze_spec(&parse_body(body)?, limits, gradients)
}

/// One forward/backward at initialisation (or with the given weights): training mode (batch
/// statistics), dropout off, on the first `training.batch_size` samples — all inline samples,
/// or [`DEFAULT_ANALYZE_BATCH`], when the spec gives no batch size.
pub fn analyze_spec(spec: &Spec, limits: &Limits, gradients: bool) -> Result<Report, PipelineError> {
    let config = spec.validate(limits).map_err(PipelineError::Invalid)?;
    let expanded = spec.expanded();
    let gradients = gradients || spec.return_gradients.unwrap_or(false);
    let batch = analyze_batch(spec, &config);
    let record = analyze(&config, Some(batch), gradients).map_err(PipelineError::Engine)?;
    let spec_json = serde_json::to_value(&expanded).unwrap_or(Value::Null);
    let mut report = build_report(spec_json, config.seed, max_points(&expanded), &record);
    report.theory = Some(theory_at_init(&config, &record, StepZero::Analyze { batch }));
    rank_recommendations(&mut report, limits, batch);
    Ok(report)
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
fn rank_recommendations(report: &mut Report, limits: &Limits, batch: usize) {
    let spec = report.spec.clone();
    let s = &report.summary;
    let compute = s.params as f64 * batch as f64 * s.sequence_length.unwrap_or(1) as f64;
    if compute > MAX_MEASURED_COMPUTE {
        return;
    }
    let mut budget = MAX_MEASURED_RECOMMENDATIONS;
    rank_by_measurement(&mut report.diagnostics, &spec, &mut |patched| {
        budget = budget.checked_sub(1)?;
        measure_at_init(patched, limits)
    });
}

/// One forward/backward of `spec_json` at initialisation; `None` when it does not validate.
fn measure_at_init(spec_json: &Value, limits: &Limits) -> Option<Measured> {
    let spec = parse(spec_json).ok()?;
    let config = spec.validate(limits).ok()?;
    let record = analyze(&config, Some(analyze_batch(&spec, &config)), false).ok()?;
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    Some(Measured {
        grad_ratio_first_last: finite(grad_ratio_first_last(&record)),
        delta_ratio_first_last: finite(delta_ratio_first_last(&record)),
        verdict: super::diagnostics::verdict(&super::diagnostics::diagnose(&record, record.classes)).to_string(),
    })
}

fn max_points(spec: &Spec) -> usize {
    spec.probes.as_ref().and_then(|p| p.max_points).map_or(DEFAULT_MAX_POINTS, |m| m as usize)
}
