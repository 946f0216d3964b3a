//! Experiments: the same network under several variants (cures, settings), each trained on the
//! same seeds, compared by outcome with intervals over the seeds.
//!
//! The job layer runs every (variant, seed) as an ordinary job and hands this module what each
//! run left ([`RunResult`], taken from its report by [`RunResult::from_report`]); [`summarize`]
//! turns them into the [`ExperimentResult`]: a row per variant with means, standard deviations
//! and 95% intervals, paired differences against the baseline, a ranking, main effects of a
//! grid's axes, and the series its plots draw. Pure and deterministic: the same inputs give the
//! same result, byte for byte.
//!
//! Depends on `report` (a run's report) and `findings` (verdicts, codes); must not depend on the
//! job or HTTP layers.

mod input;

pub use input::{Axis, ExperimentInput, RunInput, RunResult, RunState, VariantInput};

mod stats;
