//! Turns what the engine measured into the gradient-flow report (the `Report` of `openapi/openapi.json`,
//! `report_version` 1): summary, layer table, downsampled series, diagnostics with recommended
//! fixes (measured on the patched spec), the theory at initialisation (`theory`) and exported
//! parameters or gradients.
//!
//! Modules, each depending only on those before it:
//! - `measures`: the quantities every rule and the summary share (one definition each);
//! - `findings`: the types of what is found (diagnostic codes, severities, typed evidence,
//!   recommendations, verdicts);
//! - `diagnostics`: the rules table ([`diagnostics::RULES`]) and `diagnose`, a loop over it;
//! - `causes`: which findings are consequences of others, and the root cause of the others;
//! - `recommend`: cures as JSON Patches, ranked by measuring the patched specs;
//! - `theory`: mean-field and recurrent predictions at initialisation;
//! - `report`: the Report wire type and its conversion from the run record;
//! - `experiment`: the comparison of an experiment's variants (`RunResult` per run);
//! - `verify`: every recommendation trained for a short budget against the baseline on the
//!   same budget (the run-and-summarise step shared with experiments);
//! - `pipeline`: parse -> validate -> engine -> the one place a report is assembled;
//! - `plots` and `html`: SVG plots and the HTML page, drawn from a report's JSON.
//!
//! Depends on `engine` (the measurements), `spec` (the request) and serde/serde_json (the wire
//! shape); must not depend on the job or HTTP layers.

pub mod causes;
pub mod diagnostics;
pub mod experiment;
pub mod findings;
pub mod html;
pub mod measures;
pub mod pipeline;
pub mod plots;
pub mod recommend;
pub mod report;
pub mod theory;
pub mod verify;

pub use report::{build_report, Report};
