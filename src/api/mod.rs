//! The HTTP API (axum 0.8): the routes listed in `docs/service.md` and `openapi/openapi.json`
//! (experiments included).
//!
//! Owns routing, request parsing ([`extract`]), the mapping of errors to RFC 9457 problem details
//! ([`error`]), the OpenAPI document ([`openapi`]), the preset routes ([`presets`]; the catalogue
//! is [`crate::spec::presets`]), health/readiness/metrics, request ids and request logging, and
//! the server's lifecycle ([`Server`]: bind, serve, graceful shutdown).
//!
//! Files, each depending only on the ones listed before it (no import cycle between them):
//! - [`error`], [`extract`]: the problem+json mapping and the extractors ([`extract::Caller`]:
//!   the tenant a request runs as);
//! - [`etag`]: entity tags of finished reports and `If-None-Match`;
//! - [`metrics`]: the process and build metrics, the two exposition formats of `/metrics`;
//! - [`auth`]: bearer tokens, tenants, the per-token rate and the middleware that applies them;
//! - [`app`]: the shared state [`App`] and the HTTP metrics;
//! - [`health`], [`jobs`], [`plots`], [`experiments`], [`presets`]: the handlers (`experiments`
//!   uses `jobs` and `plots` for shared wire names and media types);
//! - [`routes`](mod@routes): the route table and the document's fixed parts;
//! - [`openapi`]: the OpenAPI document made from the route table;
//! - [`idle`]: the connections' idle limit (used by the server only);
//! - [`server`]: the router with its middleware, [`Server`], `gradscope serve`.
//!
//! This file only declares them and re-exports what callers use.
//!
//! Invariants:
//! - Handlers are thin: parse, call one method of [`JobService`](crate::jobs::JobService), map its
//!   error. No engine, store or pool access from here; no CPU-heavy work on the runtime.
//! - Every non-2xx response is `application/problem+json` ([`error::ensure_problem`] catches
//!   what a handler did not produce itself).
//!
//! Layering: depends on `jobs`, `analysis` (the Report type), `spec`, `problem`, `config`; must
//! not be used by any of them.

pub mod app;
pub mod auth;
pub mod error;
pub mod etag;
pub mod experiments;
pub mod extract;
pub mod health;
pub mod idle;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod plots;
pub mod presets;
pub mod routes;
pub mod server;

pub use app::{App, HttpMetrics};
pub use routes::routes;
pub use server::{init_tracing, router, serve, shutdown_signal, HeadLimits, Server};
