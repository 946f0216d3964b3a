//! Turns what the engine measured into the gradient-flow report (the contract's Report,
//! `report_version` 1): summary, layer table, downsampled series, diagnostics and exported
//! parameters or gradients.
//!
//! Depends on `engine` (the measurements) and on serde/serde_json (the wire shape); must not
//! depend on the job or HTTP layers.

pub mod diagnostics;
pub mod pipeline;
pub mod report;

pub use report::{build_report, Report};
