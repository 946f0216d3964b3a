//! The job layer's background tasks, on the async runtime (never on the niced training
//! threads, which a busy machine may starve):
//!
//! - **lease keeper**: every `lease_renew`, renews every lease this process holds in one
//!   statement and reads cancel requests back (a cancel sent to another replica reaches the
//!   run here within one interval even without notifications). A run the answer does not list
//!   lost its lease (the rescuer gave its job to another attempt): it is stopped and discarded.
//!   When renewals fail for longer than a lease, every local run is stopped the same way — its
//!   job will be rescued and run again.
//! - **rescuer**: about every `rescue_every` (±20% jitter, so replicas do not sweep in step),
//!   takes back jobs whose lease expired (see [`RescueScope::Expired`]). An experiment whose
//!   last run it ended gets its summary on its next read.
//! - **retention**: removes finished jobs, reports, events, experiments and idempotency keys
//!   older than `retention`.
//! - **cancel notifications**: when the store relays cancels (PostgreSQL NOTIFY), stops the
//!   local run at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinHandle;

use super::events::Wakeups;
use super::metrics::JobMetrics;
use super::pool::{StopReason, WorkerPool};
use super::store::{JobStore, Owner, RescueScope};

/// What the tasks need to know (from the service's configuration).
#[derive(Debug, Clone, Copy)]
pub(super) struct UpkeepConfig {
    pub lease_renew: Duration,
    pub lease_ttl: Duration,
    pub rescue_every: Duration,
    pub max_attempts: u32,
    pub retention: Duration,
}

/// Starts the tasks on the current runtime.
pub(super) fn spawn(
    store: &Arc<dyn JobStore>,
    pool: &Arc<WorkerPool>,
    wakeups: &Arc<Wakeups>,
    owner: &Owner,
    c: UpkeepConfig,
    metrics: &JobMetrics,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(keep_leases(
            Arc::clone(store),
            Arc::clone(pool),
            owner.clone(),
            c.lease_renew,
            c.lease_ttl,
            metrics.clone(),
        )),
        tokio::spawn(rescue(
            Arc::clone(store),
            Arc::clone(pool),
            Arc::clone(wakeups),
            c.rescue_every,
            c.max_attempts,
            metrics.clone(),
        )),
        tokio::spawn(expire(Arc::clone(store), c.retention, metrics.clone())),
    ];
    if let Some(mut cancels) = store.cancel_notifications() {
        let pool = Arc::clone(pool);
        tasks.push(tokio::spawn(async move {
            loop {
                match cancels.recv().await {
                    Ok(id) => pool.cancel(&id),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // Missed ids are picked up by the next lease renewal.
                        tracing::warn!(missed = n, "cancel notifications lagged");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
    }
    tasks
}

async fn keep_leases(
    store: Arc<dyn JobStore>,
    pool: Arc<WorkerPool>,
    owner: Owner,
    every: Duration,
    ttl: Duration,
    metrics: JobMetrics,
) {
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let runs = pool.runs();
        let held: Vec<String> = runs.iter().map(|r| r.fence.id.clone()).collect();
        match store.renew(&owner, &held, ttl).await {
            Ok(leases) => {
                last_ok = Instant::now();
                metrics.leases.set(leases.len() as i64);
                let held: HashMap<&str, _> = leases.iter().map(|l| (l.id.as_str(), l)).collect();
                // A run claimed after this renewal began may not be in its answer yet.
                for run in runs.iter().filter(|r| r.claimed_at < started) {
                    match held.get(run.fence.id.as_str()) {
                        Some(l) if l.attempt == run.fence.attempt => {
                            run.view.lease_renewed(started);
                            if l.cancel_requested {
                                run.stop(StopReason::Client);
                            }
                        }
                        _ => {
                            metrics.leases_lost.inc();
                            run.stop(StopReason::LeaseLost);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew leases");
                if last_ok.elapsed() > ttl {
                    // Another replica may have rescued these jobs by now: stop rather than
                    // race the new attempts.
                    for run in &runs {
                        metrics.leases_lost.inc();
                        run.stop(StopReason::LeaseLost);
                    }
                }
            }
        }
    }
}

async fn rescue(
    store: Arc<dyn JobStore>,
    pool: Arc<WorkerPool>,
    wakeups: Arc<Wakeups>,
    every: Duration,
    max_attempts: u32,
    metrics: JobMetrics,
) {
    loop {
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::time::sleep(every.mul_f64(jitter).max(Duration::from_millis(10))).await;
        match store.rescue(RescueScope::Expired, max_attempts).await {
            Ok(rescued) => {
                if !rescued.requeued.is_empty() {
                    tracing::warn!(jobs = ?rescued.requeued, "leases expired: jobs back in the queue");
                    metrics.rescued("requeued", rescued.requeued.len());
                    pool.notify_all();
                }
                for job in &rescued.ended {
                    let code = job.error.as_ref().map_or("none", |e| e.code.name());
                    tracing::warn!(job.id = %job.id, status = %job.status, code, "lease expired: job ended");
                    metrics.rescued(code, 1);
                    wakeups.notify(&job.id);
                }
                // An experiment whose last run ended here gets its summary on its next read
                // (`JobService::get_experiment` finalizes).
            }
            Err(e) => tracing::warn!(error = %e, "rescue failed; retrying at the next interval"),
        }
    }
}

async fn expire(store: Arc<dyn JobStore>, retention: Duration, metrics: JobMetrics) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        match store.expire(retention).await {
            Ok(gone) => {
                if gone.jobs + gone.experiments + gone.keys > 0 {
                    tracing::info!(
                        jobs = gone.jobs,
                        experiments = gone.experiments,
                        keys = gone.keys,
                        "retention: expired"
                    );
                }
                metrics.expired.inc_by(gone.jobs);
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
    }
}
