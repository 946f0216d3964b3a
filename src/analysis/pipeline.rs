//! From a request body to a report: parse, validate, run the engine, build the report.
//!
//! The one place that strings the layers together, so that the command line and the HTTP API
//! give the same answer for the same spec.

use serde_json::Value;
use thiserror::Error;

use super::report::{build_report, spec_with_params, Report};
use crate::engine::config::DataConfig;
use crate::engine::train::{analyze, train, CancelFlag, Progress};
use crate::engine::EngineError;
use crate::problem::{Problem, ProblemEntry};
use crate::spec::{parse, Limits, Spec, SpecErrors};

/// Default number of probe points kept per series.
pub const DEFAULT_MAX_POINTS: usize = 200;
/// Samples `analyze` uses when neither the spec's `training.batch_size` nor inline data says.
pub const DEFAULT_ANALYZE_BATCH: usize = 64;

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
            PipelineError::Engine(e) => {
                let mut p = Problem::new("invalid-spec", "Invalid spec", 422, e.to_string());
                if let EngineError::Config { path, message } = e {
                    p.errors.push(ProblemEntry { pointer: path.clone(), detail: message.clone() });
                }
                p
            }
        })
    }
}

/// A finished training run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The report.
    pub report: Report,
    /// The expanded spec with the trained parameters written into its layers.
    pub spec_with_params: Value,
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

/// Validates and trains `spec`; the report echoes the expanded spec.
pub fn run_spec(
    spec: &Spec,
    limits: &Limits,
    cancel: &CancelFlag,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunOutput, PipelineError> {
    // Validate the spec as written, so that pointers name what the user wrote (an mlp, not
    // the dense layer it expanded into); the expanded spec gives the same config.
    let mut config = spec.validate(limits).map_err(PipelineError::Invalid)?;
    let expanded = spec.expanded();
    let wants_params = config.probes.parameters;
    // Parameters are always collected so that they can be written out; the report carries
    // them only when the spec asked.
    config.probes.parameters = true;
    let record = train(&config, cancel, progress).map_err(PipelineError::Engine)?;
    let spec_json = serde_json::to_value(&expanded).unwrap_or(Value::Null);
    let mut report = build_report(spec_json.clone(), config.seed, max_points(&expanded), &record);
    let spec_with_params = record.parameters.as_ref().map(|p| spec_with_params(&spec_json, p)).unwrap_or(spec_json);
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
    let given_batch = spec.training.as_ref().and_then(|t| t.batch_size).map(|b| b as usize);
    let batch = match (&config.data, given_batch) {
        (_, Some(b)) => b,
        (DataConfig::Inline { x, .. }, None) => x.len(),
        (_, None) => DEFAULT_ANALYZE_BATCH,
    };
    let gradients = gradients || spec.return_gradients.unwrap_or(false);
    let record = analyze(&config, Some(batch), gradients).map_err(PipelineError::Engine)?;
    let spec_json = serde_json::to_value(&expanded).unwrap_or(Value::Null);
    Ok(build_report(spec_json, config.seed, max_points(&expanded), &record))
}

fn max_points(spec: &Spec) -> usize {
    spec.probes.as_ref().and_then(|p| p.max_points).map_or(DEFAULT_MAX_POINTS, |m| m as usize)
}
