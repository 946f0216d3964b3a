//! The engine's error type. It says what went wrong in engine terms (generator and parameter,
//! sample and time step, layer and shape, config field, step), never how a caller should present
//! it: no HTTP status, no JSON, no JSON Pointer. Mapping an engine error back to a place in a
//! request is the wire layer's business (`crate::spec` validates before the engine runs, so an
//! engine error on a validated config is a gap in validation).

use std::fmt;

use thiserror::Error;

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything the engine can refuse or report as failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// A data generator's parameter is outside what its recipe needs (no samples, a NaN noise,
    /// a sequence too short for the task, ...).
    #[error("data generator `{generator}`: `{parameter}` {message}")]
    Generator {
        /// The generator (`xor`, `copy`, ...), as [`crate::engine::config::DataConfig`] names it
        /// in snake case.
        generator: &'static str,
        /// The offending parameter (`samples`, `noise`, `length`, ...).
        parameter: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Inline samples or sequences that do not form a data set: none at all, rows or time steps
    /// of different widths, a target count that differs from the sample count, labels too large
    /// to count.
    #[error("inline {part}{}: {message}", Location::of(.sample, .step))]
    InlineData {
        /// Inputs or targets.
        part: InlinePart,
        /// The sample (sequence) the problem is in, when it is in one.
        sample: Option<usize>,
        /// The time step of that sample, when it is in one.
        step: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A data set too large to allocate (more `f64` values than an array can index).
    #[error("a data set of {rows} x {cols} values is too large to allocate")]
    DataTooLarge {
        /// Rows asked for.
        rows: usize,
        /// Values per row.
        cols: usize,
    },
    /// A layer that cannot be built from its config (no units, no inputs).
    #[error("layer {layer}: {message}")]
    Layer {
        /// Layer name (`dense_3`).
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// A run-level setting the engine cannot run with, named as a field of
    /// [`crate::engine::config::RunConfig`] (`network.input_dim`, `data`).
    #[error("invalid `{field}`: {message}")]
    Config {
        /// The config field, as a Rust path below `RunConfig`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Array shapes that do not fit together: a layer's input, explicit parameters, a residual
    /// block's output, the data against the network.
    #[error("shape mismatch in {layer}: expected {expected}, got {got}")]
    Shape {
        /// Layer name (`dense_3`), or what else holds the array (`the data`).
        layer: String,
        /// Expected shape, human readable.
        expected: String,
        /// Actual shape.
        got: String,
    },
    /// A buffer of the run could not be allocated: the allocator refused `bytes` (or their count
    /// does not fit in an address). Buffers take their shape on the first step, so this surfaces
    /// at the start of a run; nothing was aborted, the run's memory is freed when it returns.
    #[error("out of memory: {} for {what} could not be allocated", Bytes(*.bytes))]
    OutOfMemory {
        /// Bytes asked for (saturated at `u64::MAX` when their count overflows).
        bytes: u64,
        /// Which buffer, in words (`the LSTM states of rnn_0`).
        what: String,
    },
    /// The run was cancelled through its [`crate::engine::train::CancelFlag`].
    #[error("cancelled at step {step}")]
    Cancelled {
        /// Step at which the flag was seen.
        step: usize,
    },
}

/// Which half of inline data an [`EngineError::InlineData`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InlinePart {
    /// The samples (`x`).
    Inputs,
    /// The targets (`y`).
    Targets,
}

impl fmt::Display for InlinePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InlinePart::Inputs => "inputs",
            InlinePart::Targets => "targets",
        })
    }
}

/// `16,777,216,000 bytes (16.8 GB)`: the exact count and a decimal size.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", super::units::thousands(self.0))?;
        match self.0 >= 1000 {
            true => write!(f, " ({})", super::units::human_bytes(self.0)),
            false => Ok(()),
        }
    }
}

/// ` of sample 3, step 1`, or nothing when the problem is not in one sample.
struct Location {
    sample: Option<usize>,
    step: Option<usize>,
}

impl Location {
    fn of(sample: &Option<usize>, step: &Option<usize>) -> Self {
        Location { sample: *sample, step: *step }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.sample {
            write!(f, " of sample {i}")?;
        }
        if let Some(t) = self.step {
            write!(f, ", step {t}")?;
        }
        Ok(())
    }
}

impl EngineError {
    /// Shorthand for [`EngineError::Generator`].
    pub fn generator(generator: &'static str, parameter: &'static str, message: impl Into<String>) -> Self {
        EngineError::Generator { generator, parameter, message: message.into() }
    }

    /// Shorthand for [`EngineError::InlineData`].
    pub fn inline(part: InlinePart, sample: Option<usize>, step: Option<usize>, message: impl Into<String>) -> Self {
        EngineError::InlineData { part, sample, step, message: message.into() }
    }

    /// Shorthand for [`EngineError::Layer`].
    pub fn layer(layer: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Layer { layer: layer.into(), message: message.into() }
    }

    /// [`EngineError::OutOfMemory`] for `count` values of `elem` bytes each.
    pub fn out_of_memory(count: usize, elem: usize, what: impl Into<String>) -> Self {
        let bytes = (count as u128).saturating_mul(elem as u128).min(u128::from(u64::MAX)) as u64;
        EngineError::OutOfMemory { bytes, what: what.into() }
    }

    /// An [`EngineError::OutOfMemory`] about a buffer of `owner` (a layer name): its `what`
    /// gets ` of {owner}`. Any other error is returned unchanged.
    pub fn of_buffer_owner(self, owner: &str) -> Self {
        match self {
            EngineError::OutOfMemory { bytes, what } => {
                EngineError::OutOfMemory { bytes, what: format!("{what} of {owner}") }
            }
            other => other,
        }
    }

    /// Shorthand for [`EngineError::Config`].
    pub fn config(field: &'static str, message: impl Into<String>) -> Self {
        EngineError::Config { field, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_engine_things() {
        let e = EngineError::generator("copy", "delay", "must be at least 1");
        assert_eq!(e.to_string(), "data generator `copy`: `delay` must be at least 1");
        let e = EngineError::inline(InlinePart::Targets, Some(2), Some(5), "1 value but the first has 2");
        assert_eq!(e.to_string(), "inline targets of sample 2, step 5: 1 value but the first has 2");
        let e = EngineError::inline(InlinePart::Inputs, None, None, "no samples");
        assert_eq!(e.to_string(), "inline inputs: no samples");
        assert_eq!(
            EngineError::config("network.input_dim", "must be at least 1").to_string(),
            "invalid `network.input_dim`: must be at least 1"
        );
        assert_eq!(EngineError::layer("rnn_0", "no units").to_string(), "layer rnn_0: no units");
        let e = EngineError::out_of_memory(4_194_304_000, 4, "the LSTM gates").of_buffer_owner("rnn_0");
        assert_eq!(
            e.to_string(),
            "out of memory: 16,777,216,000 bytes (16.8 GB) for the LSTM gates of rnn_0 could not be allocated"
        );
        assert_eq!(
            EngineError::out_of_memory(3, 4, "x").to_string(),
            "out of memory: 12 bytes for x could not be allocated"
        );
        let e = EngineError::out_of_memory(usize::MAX, 8, "x");
        assert!(matches!(e, EngineError::OutOfMemory { bytes: u64::MAX, .. }), "{e:?}");
        assert_eq!(EngineError::config("data", "m").of_buffer_owner("rnn_0"), EngineError::config("data", "m"));
    }
}
