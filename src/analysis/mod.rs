//! Turns what the engine measured into the gradient-flow report (the contract's Report,
//! `report_version` 1): summary, layer table, downsampled series, diagnostics with recommended
//! fixes (measured on the patched spec), the theory at initialisation (`theory`) and exported
//! parameters or gradients.
//!
//! Depends on `engine` (the measurements) and on serde/serde_json (the wire shape); must not
//! depend on the job or HTTP layers.

pub mod diagnostics;
pub mod html;
pub mod pipeline;
pub mod plots;
pub mod recommend;
pub mod report;
pub mod theory;

pub use report::{build_report, Report};
