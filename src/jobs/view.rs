//! What a replica knows for certain about a job it trains, so that `GET /v1/jobs/{id}` of that
//! job is answered from memory rather than from the database.
//!
//! Polling a running job is the commonest read of the service, and while every worker trains,
//! each read that reaches the database waits for a CPU the training threads hold (on PostgreSQL
//! the database's backends compete with the whole gradscope process, whatever priority its
//! workers have: see docs/service.md). The replica that holds a job's lease is the only writer
//! of what the job's record says while it runs, with one exception, so it can answer exactly:
//!
//! - **start**: the record as the store returns it right after the claim (status, times,
//!   name, experiment);
//! - **progress**: updated after each progress write the store confirmed (fenced by attempt),
//!   so memory never shows a step the database does not have;
//! - **cancel requests** (the exception: any replica may set one): reach this replica at once
//!   on SQLite and the in-memory store (one process), and through NOTIFY on PostgreSQL — with
//!   NOTIFY off they come only with the next lease renewal, so the service does not read from
//!   memory then (see [`crate::jobs::store::JobStore::cancels_reach_runs_at_once`]);
//! - **the lease**: memory answers only while a renewal (or the claim) less than half a lease
//!   ago proved that no other replica can have taken the job, and never after a write found the
//!   lease lost;
//! - **the end**: the run leaves the pool's map before its completion is committed, so from
//!   then on reads go to the database and see `running` until the terminal status commits.
//!
//! Invariant: a read from memory returns what a read from the database returned at some moment
//! since the last confirmed write, never a step the database does not have. Two lags are
//! bounded, not zero: a cancel requested on another replica shows once its NOTIFY arrives; and
//! when an operator expires a lease by hand (`expire_lease`) and a rescuer takes the job back,
//! the old run learns it at its next progress write or renewal (the heartbeat, 0.5 s, or the
//! renewal interval for a step longer than that) — a lease that simply runs out was unproved
//! for half a lease before, so memory had stopped answering long before any rescue.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Job, JobProgress, Tenant};

/// The job's record as last confirmed by the store, for one run.
#[derive(Debug, Default)]
pub(super) struct RunView {
    known: Mutex<Option<Known>>,
}

#[derive(Debug)]
struct Known {
    tenant: Tenant,
    job: Job,
    /// When a claim or renewal that proved the lease ours began: no other replica can take
    /// the job before a lease's time after it.
    lease_held_at: Instant,
}

impl RunView {
    fn known(&self) -> std::sync::MutexGuard<'_, Option<Known>> {
        // Plain assignments only: a poisoned lock still holds a consistent value.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record read back from the store after the claim at `claimed_at`.
    pub(super) fn start(&self, tenant: &Tenant, job: Job, claimed_at: Instant) {
        *self.known() = Some(Known { tenant: tenant.clone(), job, lease_held_at: claimed_at });
    }

    /// A renewal that began at `at` found the lease still ours.
    pub(super) fn lease_renewed(&self, at: Instant) {
        if let Some(k) = self.known().as_mut() {
            k.lease_held_at = k.lease_held_at.max(at);
        }
    }

    /// The store confirmed a progress write ending with `last`.
    pub(super) fn progressed(&self, last: &JobProgress) {
        if let Some(k) = self.known().as_mut() {
            k.job.progress = *last;
        }
    }

    /// The record, if `tenant` owns the job and the lease was proved ours less than `fresh_for`
    /// before `now`.
    pub(super) fn read(&self, tenant: &Tenant, now: Instant, fresh_for: Duration) -> Option<Job> {
        let known = self.known();
        let k = known.as_ref()?;
        (k.tenant == *tenant && now.saturating_duration_since(k.lease_held_at) < fresh_for).then(|| k.job.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jobs::JobStatus;

    /// A running job, as the fixture of the tests here and of `pool.rs`'s.
    pub(crate) fn job() -> Job {
        Job {
            id: "j".into(),
            status: JobStatus::Running,
            name: None,
            created_at: "2026-12-03T00:00:00.000Z".into(),
            started_at: Some("2026-12-03T00:00:01.000Z".into()),
            finished_at: None,
            progress: JobProgress { step: 0, total_steps: 100, loss: None },
            error: None,
            cancel_requested: false,
            experiment_id: None,
        }
    }

    #[test]
    fn nothing_is_known_before_the_record_is_read_back() {
        let view = RunView::default();
        view.lease_renewed(Instant::now());
        view.progressed(&JobProgress { step: 5, total_steps: 100, loss: Some(1.0) });
        assert!(view.read(&Tenant::open(), Instant::now(), Duration::from_secs(30)).is_none());
    }

    #[test]
    fn a_read_shows_the_last_confirmed_progress_to_the_owner_only() {
        let view = RunView::default();
        let t0 = Instant::now();
        view.start(&Tenant::open(), job(), t0);
        view.progressed(&JobProgress { step: 40, total_steps: 100, loss: Some(0.5) });
        let got = view.read(&Tenant::open(), t0, Duration::from_secs(30)).map(|j| j.progress);
        assert_eq!(got, Some(JobProgress { step: 40, total_steps: 100, loss: Some(0.5) }));
        assert!(view.read(&Tenant::new("other"), t0, Duration::from_secs(30)).is_none());
    }

    #[test]
    fn a_read_needs_a_lease_proved_within_the_freshness_window() {
        let view = RunView::default();
        let t0 = Instant::now();
        view.start(&Tenant::open(), job(), t0);
        let fresh = Duration::from_secs(30);
        assert!(view.read(&Tenant::open(), t0 + Duration::from_secs(29), fresh).is_some());
        // No renewal for half a lease: another replica may own the job soon; ask the database.
        assert!(view.read(&Tenant::open(), t0 + Duration::from_secs(30), fresh).is_none());
        view.lease_renewed(t0 + Duration::from_secs(20));
        assert!(view.read(&Tenant::open(), t0 + Duration::from_secs(45), fresh).is_some());
        // A renewal that began earlier than the last proof does not move it back.
        view.lease_renewed(t0);
        assert!(view.read(&Tenant::open(), t0 + Duration::from_secs(45), fresh).is_some());
    }

    mod served {
        //! The service answers reads of a job it trains from memory, exactly.

        use std::sync::Arc;
        use std::time::{Duration, Instant};

        use crate::jobs::service::{JobService, JobsConfig};
        use crate::jobs::store::{JobStore, RescueScope};
        use crate::jobs::store::{MemoryStore, MemoryStoreConfig};
        use crate::jobs::{Job, JobStatus, Tenant};

        fn long_spec() -> crate::spec::Spec {
            let v = serde_json::json!({
                "model": {"input_dim": 2, "layers": [{"type": "mlp", "depth": 2, "width": 16, "activation": "tanh"},
                                                     {"type": "dense", "units": 2}]},
                "data": {"type": "spirals", "samples": 256},
                "training": {"steps": 1000000, "batch_size": 32}, "probes": {"every": 50}});
            crate::spec::parse(&v).expect("a valid spec")
        }

        fn service(workers: usize) -> (JobService, Arc<dyn JobStore>) {
            let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new(MemoryStoreConfig {
                capacity: 16,
                retain: 16,
                ttl: Duration::from_secs(3600),
                max_idempotency_keys: 16,
                max_queued_per_tenant: usize::MAX,
                max_events_per_job: 64,
            }));
            let config = JobsConfig { workers, ..JobsConfig::default() };
            (JobService::with_store(config, Arc::clone(&store)).expect("service"), store)
        }

        /// Waits until the store says `id` runs with some progress.
        async fn running(store: &dyn JobStore, id: &str) -> Job {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let job = store.get(&Tenant::open(), id).await.expect("store").expect("job");
                if job.status == JobStatus::Running && job.progress.step > 0 {
                    return job;
                }
                assert!(Instant::now() < deadline, "the job did not start: {job:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        fn without_progress(mut job: Job) -> Job {
            job.progress = Default::default();
            job
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_running_job_is_read_from_memory_as_the_store_has_it_never_ahead() {
            let (service, store) = service(1);
            let tenant = Tenant::open();
            let id = service.submit(&tenant, long_spec(), None).await.expect("accepted").job.id;
            running(&*store, &id).await;
            let mut advanced = 0;
            let mut last = 0;
            for _ in 0..200 {
                let memory = service.pool.local_view(&tenant, &id).expect("read from memory");
                let stored = store.get(&tenant, &id).await.expect("store").expect("job");
                // Everything but progress is the stored record; progress is the stored one or
                // an earlier one (read just before a write the store confirmed).
                assert_eq!(without_progress(memory.clone()), without_progress(stored.clone()));
                assert!(memory.progress.step <= stored.progress.step, "{memory:?} is ahead of {stored:?}");
                assert_eq!(service.get(&tenant, &id).await.expect("get").status, JobStatus::Running);
                advanced += usize::from(memory.progress.step > last);
                last = memory.progress.step;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(advanced >= 2, "progress read from memory advanced {advanced} times");
            // Another tenant's read does not see the job through memory either.
            assert!(service.pool.local_view(&Tenant::new("other"), &id).is_none());
            assert!(service.get(&Tenant::new("other"), &id).await.is_err());
            service.cancel(&tenant, &id).await.expect("cancel");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_cancel_shows_in_the_next_read_and_the_end_comes_from_the_store() {
            let (service, store) = service(1);
            let tenant = Tenant::open();
            let id = service.submit(&tenant, long_spec(), None).await.expect("accepted").job.id;
            running(&*store, &id).await;
            service.cancel(&tenant, &id).await.expect("cancel");
            let job = service.get(&tenant, &id).await.expect("get");
            assert!(job.cancel_requested || job.status == JobStatus::Cancelled, "{job:?}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let job = service.get(&tenant, &id).await.expect("get");
                if job.status.is_terminal() {
                    assert_eq!(job, store.get(&tenant, &id).await.expect("store").expect("job"));
                    assert_eq!(job.status, JobStatus::Cancelled);
                    break;
                }
                assert!(job.cancel_requested, "a read after the cancel lost it: {job:?}");
                assert!(Instant::now() < deadline, "the run did not stop");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn after_a_lost_lease_reads_go_to_the_store() {
            let (service, store) = service(1);
            let tenant = Tenant::open();
            let id = service.submit(&tenant, long_spec(), None).await.expect("accepted").job.id;
            running(&*store, &id).await;
            assert!(service.pool.local_view(&tenant, &id).is_some());
            // A rescuer takes the job back (the operator's `expire_lease` stands in for a lease
            // that ran out): the run's next progress write finds its lease lost, the run stops,
            // and memory never answers for that attempt again.
            assert!(store.expire_lease(&id).await.expect("store"));
            store.rescue(RescueScope::Expired, 3).await.expect("rescue");
            let deadline = Instant::now() + Duration::from_secs(10);
            while service.pool.runs().iter().any(|r| r.fence.attempt == 1) {
                assert!(Instant::now() < deadline, "the run of the lost lease did not stop");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Whatever is read now is the store's record (the job queued again or its next
            // attempt running), never the lost attempt's.
            let job = service.get(&tenant, &id).await.expect("get");
            let stored = store.get(&tenant, &id).await.expect("store").expect("job");
            assert!(job.status == stored.status && job.started_at == stored.started_at, "{job:?} vs {stored:?}");
            service.cancel(&tenant, &id).await.expect("cancel");
        }
    }
}
