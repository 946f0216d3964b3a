//! The JSON spec: its wire types, structural parsing, defaults and expansion, and semantic
//! validation into the engine's [`RunConfig`](crate::engine::config::RunConfig).
//!
//! The format itself — every field, its type, default, unit and limit, with an example of each
//! layer and data source — is documented in `docs/spec.md`; `tests/spec_docs.rs` fails when that
//! page and these types (through the OpenAPI schemas) or [`Limits::default`] drift apart.
//!
//! ```text
//! serde_json::Value --parse--> Spec --expanded--> Spec (as run; echoed in the report)
//!                                 \--validate(&Limits)--> RunConfig | SpecErrors
//! ```
//!
//! Every step reports *all* the problems it finds, each as a [`SpecError`] with an RFC 6901
//! JSON Pointer into the request body, so that one `422` response lists everything to fix.
//!
//! Layering: this is the wire layer. It may depend on `engine` (whose config types it produces),
//! `serde`, `serde_json` and `thiserror`; it must not depend on HTTP or async crates (`axum`,
//! `tokio`, ...) nor on the report/analysis layers.
//!
//! Modules: `types` (the wire types), `parse` (JSON -> types), `expand` (defaults, `mlp`
//! expansion), `convert` (wire enums <-> engine enums), `validate` (limits, checks, conversion),
//! `error` (problems and pointers), `recover` (parse and validation problems in one answer),
//! `schema` (the OpenAPI shape of the tagged unions).

mod convert;
mod error;
mod expand;
pub mod experiment;
mod parse;
pub mod presets;
mod recover;
pub mod schema;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{SpecError, SpecErrors};
pub use expand::MAX_EXPANDED_LAYERS;
pub use parse::parse;
pub use presets::{Preset, PresetError, PresetErrors, PresetList};
pub use recover::{check, with_validation};
pub use types::{
    Activation, ActivationLayer, BatchNorm, Cell, Clip, Data, DataSource, Dense, Dropout, FanMode, Init,
    InlineSequenceTargets, InlineTargets, Layer, LayerNorm, Loss, Mlp, Model, Norm, Optimizer, Precision, Probes,
    Residual, Rnn, Spec, Training,
};
pub use validate::{admit_memory, Limits};
