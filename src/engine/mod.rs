//! The training engine: tensors on `ndarray`, layers with hand-written forward and backward
//! passes, activations, initialisations, losses, optimisers, datasets, the training loop and the
//! probes that measure gradient flow.
//!
//! Invariants:
//! - Pure and synchronous: no I/O, no async, no threads of its own; it must not depend on `tokio`,
//!   `axum`, `serde`/`serde_json`, `utoipa`, nor on any other module of this crate.
//! - Deterministic: the same [`config::RunConfig`] (seed included) gives bit-identical results on
//!   the same build.
//! - Nothing a validated config contains makes it panic; failures are [`EngineError`] values and
//!   non-finite numbers end a run cleanly with what was measured so far.

pub mod activation;
pub mod config;
pub mod data;
pub mod error;
pub mod gradcheck;
pub mod init;
pub mod jacobian;
pub mod layers;
pub mod linalg;
pub mod loss;
pub mod memory;
pub mod network;
pub mod optim;
pub mod probe;
pub mod rng;
pub mod scalar;
pub mod simd;
pub mod train;
pub mod units;

pub use error::{EngineError, Result};
pub use scalar::Scalar;
