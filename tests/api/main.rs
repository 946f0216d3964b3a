//! End-to-end tests of the HTTP service: a real server on 127.0.0.1:0 (small pools), a real
//! HTTP client. One integration binary; the modules group the behaviours.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod auth;
#[path = "../common/mod.rs"]
mod common;
mod docker;
mod encoding;
mod errors;
mod experiment_science;
mod experiments;
mod helpers;
mod jobs;
mod memory;
mod metrics;
mod openapi;
mod ops;
mod plots;
