//! The engine's error type. It says what went wrong in engine terms (layer, shape, step), never
//! how a caller should present it (no HTTP status, no JSON).

use thiserror::Error;

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything the engine can refuse or report as failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// A configuration the validated spec should already have excluded (defence in depth: the
    /// engine re-checks shapes it relies on instead of panicking).
    #[error("invalid configuration at {path}: {message}")]
    Config {
        /// Where in the model/data/training config, as a JSON Pointer into the spec.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Input array shape does not match what a layer expects.
    #[error("shape mismatch in {layer}: expected {expected}, got {got}")]
    Shape {
        /// Layer name (`dense_3`).
        layer: String,
        /// Expected shape, human readable.
        expected: String,
        /// Actual shape.
        got: String,
    },
    /// The run was cancelled through its [`crate::engine::train::CancelFlag`].
    #[error("cancelled at step {step}")]
    Cancelled {
        /// Step at which the flag was seen.
        step: usize,
    },
}

impl EngineError {
    /// Shorthand for [`EngineError::Config`].
    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Config { path: path.into(), message: message.into() }
    }
}
