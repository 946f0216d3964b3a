//! The end of an experiment: once every run has ended, its summary is computed from what the
//! store recorded and stored beside it. Called by the worker that ends a run and by reads (so
//! that an experiment whose last runs were cancelled while queued gets its summary too).
//! Depends on the store and the analysis summary only, so that the pool can call it.

use std::sync::Arc;

use crate::analysis::experiment::summarize;
use crate::jobs::store::JobStore;
use crate::jobs::Tenant;

/// Computes and stores the summary of experiment `id` (of `tenant`) if every run has ended and
/// it has none.
pub async fn finalize(store: &dyn JobStore, tenant: &Tenant, id: &str) {
    let snap = match store.experiment(tenant, id).await {
        Ok(Some(snap)) => snap,
        Ok(None) => return,
        Err(e) => {
            // The next read of the experiment finalizes it.
            tracing::warn!(experiment.id = %id, error = %e, "cannot finalize the experiment now");
            return;
        }
    };
    if snap.record.result.is_some() || !snap.record.all_ended() {
        return;
    }
    let result = summarize(&snap.record.input());
    match store.put_experiment_result(id, Arc::new(result)).await {
        Ok(true) => tracing::info!(experiment.id = %id, "experiment finished"),
        Ok(false) => {}
        Err(e) => tracing::warn!(experiment.id = %id, error = %e, "cannot store the experiment's result now"),
    }
}
