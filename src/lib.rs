//! gradscope: trains a neural network described as JSON and reports how the gradient flows
//! through it — where it vanishes or explodes, what theory predicted, and what to change.
//!
//! Layers, each depending only on those above it in this list:
//! `engine` (numerics, no I/O) -> `spec` (the JSON request and its validation) -> `analysis`
//! (the report) -> `jobs` (store, queue, worker threads; no HTTP) -> `api` (axum) -> `cli`.

/// The report: what the engine measured, as the `Report` of `openapi/openapi.json` (`report_version` 1).
pub mod analysis;
/// The HTTP API (axum): routes, problem details, OpenAPI, preset routes, health, metrics, server.
pub mod api;
/// The command line (`serve` (default), `run`, `analyze`, `presets`, `openapi`, `healthcheck`).
pub mod cli;
/// The service's configuration (flags and environment variables).
pub mod config;
/// The training engine: layers, gradients, optimisers, data, probes. Pure and deterministic.
pub mod engine;
/// Jobs: store, queue, worker pool on OS threads, progress events. No HTTP.
pub mod jobs;
/// RFC 9457 problem details, shared by the command line and the HTTP API.
pub mod problem;
/// The wire format of a spec, its validation into engine configuration, and the presets.
pub mod spec;
