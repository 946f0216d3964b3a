//! One conformance suite for every [`JobStore`]: the same checks run against the memory store,
//! SQLite (a fresh database in a temporary directory) and PostgreSQL (a fresh schema in the
//! database of `GRADSCOPE_TEST_DATABASE_URL`, or of the `PG*` variables `pg_virtualenv` sets;
//! without either those tests print that they were skipped and pass).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::jobs::experiments::model::{NewExperiment, VariantRecord};
use crate::jobs::FailureCode;

pub(crate) fn spec() -> Arc<Spec> {
    let v = serde_json::json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2}]},
                               "data": {"type": "xor"}});
    Arc::new(crate::spec::parse(&v).unwrap())
}

pub(crate) fn new_job(id: &str) -> NewJob {
    NewJob {
        id: id.into(),
        tenant: Tenant::open(),
        name: None,
        spec: spec(),
        total_steps: 10,
        probe_every: 1,
        experiment: None,
    }
}

pub(crate) fn open() -> Tenant {
    Tenant::open()
}

const TTL: Duration = Duration::from_secs(60);

fn owner() -> Owner {
    Owner::new("worker-a")
}

fn ok() -> Completion {
    Completion { finish: Finish { status: JobStatus::Succeeded, error: None }, report: None, run_result: None }
}

/// Claims the next job and completes it as succeeded.
pub(crate) async fn done(s: &dyn JobStore, id: &str) {
    let c = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    assert_eq!(c.id, id);
    s.complete(&c.fence(), ok()).await.unwrap().unwrap();
}

fn cancelled() -> JobFailure {
    JobFailure { code: FailureCode::Cancelled, message: "x".into() }
}

fn run_of(experiment: &str, id: &str) -> NewJob {
    NewJob { experiment: Some(experiment.into()), ..new_job(id) }
}

fn job_of(tenant: &str, id: &str) -> NewJob {
    NewJob { tenant: Tenant::new(tenant), ..new_job(id) }
}

fn key(k: &str, fp: u8) -> IdempotencyKey {
    IdempotencyKey { key: k.into(), fingerprint: [fp; 32] }
}

async fn claim_id(s: &dyn JobStore, workers: usize) -> String {
    s.claim(&owner(), workers, TTL).await.unwrap().unwrap().id
}

fn seqs(events: &[SeqEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

pub(crate) async fn claim_takes_the_oldest_queued_job_and_skips_cancelled_ones(s: &dyn JobStore) {
    for id in ["a", "b", "c"] {
        s.create(new_job(id), None).await.unwrap();
    }
    assert!(matches!(s.cancel(&open(), "a", cancelled()).await, Ok(CancelOutcome::Cancelled(_))));
    let c = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    assert_eq!((c.id.as_str(), c.attempt), ("b", 1));
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running, stats.finished), (1, 1, 1));
    assert_eq!(c.spec, spec(), "the claimed spec is the submitted one");
}

pub(crate) async fn an_experiment_alone_takes_every_worker_but_a_waiting_single_job_gets_the_next_one(
    s: &dyn JobStore,
) {
    for id in ["e1", "e2", "e3", "e4"] {
        s.create(run_of("E", id), None).await.unwrap();
    }
    let e1 = s.claim(&owner(), 2, TTL).await.unwrap().unwrap();
    assert_eq!(e1.id, "e1");
    let e2 = s.claim(&owner(), 2, TTL).await.unwrap().unwrap();
    assert_eq!(e2.id, "e2", "nothing else waits: no worker idles");
    s.create(new_job("single"), None).await.unwrap();
    s.complete(&e1.fence(), ok()).await.unwrap().unwrap();
    assert_eq!(claim_id(s, 2).await, "single", "the experiment is at its share (1 of 2)");
    s.complete(&e2.fence(), ok()).await.unwrap().unwrap();
    assert_eq!(claim_id(s, 2).await, "e3");
}

pub(crate) async fn create_refuses_when_the_queue_is_full(s: &dyn JobStore) {
    // The store under test was made with a capacity of 2.
    s.create(new_job("a"), None).await.unwrap();
    s.create(new_job("b"), None).await.unwrap();
    assert_eq!(s.create(new_job("c"), None).await.unwrap_err(), StoreError::QueueFull { capacity: 2 });
    s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    s.create(new_job("c"), None).await.unwrap();
}

pub(crate) async fn a_tenant_over_its_queued_jobs_is_refused_while_others_are_not(s: &dyn JobStore) {
    // The store under test was made with 2 queued jobs per tenant.
    s.create(job_of("a", "a1"), None).await.unwrap();
    s.create(job_of("a", "a2"), None).await.unwrap();
    assert_eq!(
        s.create(job_of("a", "a3"), None).await.unwrap_err(),
        StoreError::TenantQueueFull { queued: 2, limit: 2 }
    );
    s.create(job_of("b", "b1"), None).await.unwrap();
    s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    s.create(job_of("a", "a3"), None).await.unwrap();
}

pub(crate) async fn list_pages_newest_first_and_the_last_page_has_no_cursor(s: &dyn JobStore) {
    for id in ["a", "b", "c", "d", "e"] {
        s.create(new_job(id), None).await.unwrap();
    }
    let ids = |p: &Page| p.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    let p1 = s.list(&open(), None, 2, None).await.unwrap();
    assert_eq!(ids(&p1), ["e", "d"]);
    let p2 = s.list(&open(), None, 2, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!(ids(&p2), ["c", "b"]);
    let p3 = s.list(&open(), None, 2, p2.next_cursor.as_deref()).await.unwrap();
    assert_eq!(ids(&p3), ["a"]);
    assert!(p3.next_cursor.is_none());
    assert_eq!(s.list(&open(), None, 2, Some("zz")).await.unwrap_err(), StoreError::InvalidCursor);
    s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    let running = s.list(&open(), Some(JobStatus::Running), 10, None).await.unwrap();
    assert_eq!(ids(&running), ["a"]);
}

pub(crate) async fn an_idempotency_key_replays_its_job_and_refuses_another_body(s: &dyn JobStore) {
    let first = s.create(new_job("j"), Some(key("k", 1))).await.unwrap();
    assert!(matches!(first, Created::New(ref j) if j.id == "j"));
    assert!(matches!(s.create(new_job("j2"), Some(key("k", 1))).await.unwrap(), Created::Replay(ref j) if j.id == "j"));
    assert_eq!(s.create(new_job("j3"), Some(key("k", 2))).await.unwrap(), Created::Mismatch);
    assert!(matches!(s.lookup_key(&open(), &key("k", 1)).await.unwrap(), Some(Created::Replay(_))));
    assert!(s.get(&open(), "j2").await.unwrap().is_none(), "a replay creates nothing");
    // Keys are per tenant.
    let other = NewJob { tenant: Tenant::new("b"), ..new_job("jb") };
    assert!(matches!(s.create(other, Some(key("k", 2))).await.unwrap(), Created::New(_)));
    // A key whose job was deleted starts afresh.
    s.cancel(&open(), "j", cancelled()).await.unwrap();
    s.delete(&open(), "j").await.unwrap();
    assert_eq!(s.lookup_key(&open(), &key("k", 2)).await.unwrap(), None);
    assert!(matches!(s.create(new_job("j4"), Some(key("k", 2))).await.unwrap(), Created::New(_)));
}

pub(crate) async fn delete_refuses_unfinished_jobs_and_report_waits_for_a_terminal_status(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    assert_eq!(s.delete(&open(), "a").await.unwrap_err(), StoreError::NotFinished(JobStatus::Queued));
    let c = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    assert_eq!(s.report(&open(), "a").await.unwrap_err(), StoreError::ReportNotReady(JobStatus::Running));
    let report: Arc<[u8]> = Arc::from(&b"{\"x\":1}"[..]);
    s.complete(&c.fence(), Completion { report: Some(report), ..ok() }).await.unwrap().unwrap();
    assert_eq!(&*s.report(&open(), "a").await.unwrap(), b"{\"x\":1}");
    s.delete(&open(), "a").await.unwrap();
    assert!(s.get(&open(), "a").await.unwrap().is_none());
    assert_eq!(s.delete(&open(), "a").await.unwrap_err(), StoreError::NotFound);
    assert_eq!(s.events_after(&open(), "a", 0, 10).await.unwrap_err(), StoreError::NotFound);
}

pub(crate) async fn a_tenant_sees_cancels_deletes_and_lists_only_its_own_jobs(s: &dyn JobStore) {
    let (a, b) = (Tenant::new("a"), Tenant::new("b"));
    s.create(job_of("a", "ja"), None).await.unwrap();
    s.create(job_of("b", "jb"), None).await.unwrap();
    assert!(s.get(&a, "ja").await.unwrap().is_some());
    assert!(s.get(&b, "ja").await.unwrap().is_none(), "another tenant's job is not found");
    let ids = |p: Page| p.jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list(&a, None, 10, None).await.unwrap()), ["ja"]);
    assert_eq!(ids(s.list(&b, None, 10, None).await.unwrap()), ["jb"]);
    assert_eq!(s.cancel(&b, "ja", cancelled()).await.unwrap_err(), StoreError::NotFound);
    assert_eq!(s.get(&a, "ja").await.unwrap().unwrap().status, JobStatus::Queued, "the refused cancel changed nothing");
    s.cancel(&a, "ja", cancelled()).await.unwrap();
    assert_eq!(s.delete(&b, "ja").await.unwrap_err(), StoreError::NotFound);
    assert_eq!(s.report(&b, "ja").await.unwrap_err(), StoreError::NotFound);
    assert_eq!(s.events_after(&b, "ja", 0, 10).await.unwrap_err(), StoreError::NotFound);
    s.delete(&a, "ja").await.unwrap();
}

pub(crate) async fn events_are_numbered_without_gaps_and_end_with_the_status(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    let c = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    let p = |step| JobProgress { step, total_steps: 10, loss: Some(0.5) };
    assert!(s.progress(&c.fence(), &[p(1), p(2)]).await.unwrap());
    assert!(s.progress(&c.fence(), &[p(3)]).await.unwrap());
    assert_eq!(s.get(&open(), "a").await.unwrap().unwrap().progress, p(3));
    let job = s.complete(&c.fence(), ok()).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    let events = s.events_after(&open(), "a", 0, 100).await.unwrap();
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
    assert_eq!(events[1].event, JobEvent::Progress(p(2)));
    assert!(matches!(&events[3].event, JobEvent::Status(j) if j.status == JobStatus::Succeeded));
    assert_eq!(seqs(&s.events_after(&open(), "a", 2, 100).await.unwrap()), [3, 4]);
    assert_eq!(seqs(&s.events_after(&open(), "a", 1, 2).await.unwrap()), [2, 3]);
    // A queued job cancelled gets its one final event too.
    s.create(new_job("b"), None).await.unwrap();
    s.cancel(&open(), "b", cancelled()).await.unwrap();
    let events = s.events_after(&open(), "b", 0, 100).await.unwrap();
    assert!(
        matches!(&events[..], [SeqEvent { seq: 1, event: JobEvent::Status(j) }] if j.status == JobStatus::Cancelled)
    );
}

pub(crate) async fn a_lost_lease_fences_off_the_old_attempt(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    let old = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    let p = |step| JobProgress { step, total_steps: 10, loss: None };
    assert!(s.progress(&old.fence(), &[p(1)]).await.unwrap());
    // The worker stalls; its lease runs out and a rescuer gives the job to another worker.
    assert!(s.expire_lease("a").await.unwrap());
    let rescued = s.rescue(RescueScope::Expired, 3).await.unwrap();
    assert_eq!(rescued.requeued, ["a"]);
    let new = s.claim(&Owner::new("worker-b"), 1, TTL).await.unwrap().unwrap();
    assert_eq!((new.id.as_str(), new.attempt), ("a", 2));
    // The old attempt wakes up: its progress, completion and release change nothing.
    assert!(!s.progress(&old.fence(), &[p(9)]).await.unwrap());
    let report: Arc<[u8]> = Arc::from(&b"old"[..]);
    assert_eq!(s.complete(&old.fence(), Completion { report: Some(report), ..ok() }).await.unwrap(), None);
    assert!(!s.release(&old.fence()).await.unwrap());
    assert!(s.renew(&owner(), &["a".into()], TTL).await.unwrap().is_empty(), "the old owner holds no lease now");
    let job = s.get(&open(), "a").await.unwrap().unwrap();
    assert_eq!((job.status, job.progress.step), (JobStatus::Running, 1));
    // The new attempt finishes, once.
    assert!(s.progress(&new.fence(), &[p(10)]).await.unwrap());
    let report: Arc<[u8]> = Arc::from(&b"new"[..]);
    s.complete(&new.fence(), Completion { report: Some(report), ..ok() }).await.unwrap().unwrap();
    assert_eq!(s.complete(&new.fence(), ok()).await.unwrap(), None, "a second completion changes nothing");
    assert_eq!(&*s.report(&open(), "a").await.unwrap(), b"new");
    let events = s.events_after(&open(), "a", 0, 100).await.unwrap();
    assert_eq!(seqs(&events), [1, 2, 3], "attempt 1's progress, attempt 2's progress, the status");
}

pub(crate) async fn two_rescuers_at_once_rescue_a_job_once(s: &dyn JobStore) {
    for id in ["a", "b"] {
        s.create(new_job(id), None).await.unwrap();
        s.claim(&owner(), 2, TTL).await.unwrap().unwrap();
        s.expire_lease(id).await.unwrap();
    }
    let (r1, r2) = tokio::join!(s.rescue(RescueScope::Expired, 3), s.rescue(RescueScope::Expired, 3));
    let mut all: Vec<String> = r1.unwrap().requeued.into_iter().chain(r2.unwrap().requeued).collect();
    all.sort();
    assert_eq!(all, ["a", "b"], "each job rescued exactly once");
    assert_eq!(s.stats().await.unwrap().queued, 2);
    assert!(s.rescue(RescueScope::Expired, 3).await.unwrap().requeued.is_empty());
}

pub(crate) async fn a_job_whose_worker_dies_every_time_fails_worker_lost_after_max_attempts(s: &dyn JobStore) {
    s.create(new_job("poison"), None).await.unwrap();
    for attempt in 1..=3 {
        let c = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
        assert_eq!(c.attempt, attempt);
        s.expire_lease("poison").await.unwrap();
        let r = s.rescue(RescueScope::Expired, 3).await.unwrap();
        if attempt < 3 {
            assert_eq!(r.requeued, ["poison"]);
        } else {
            assert!(r.requeued.is_empty());
            assert_eq!(r.ended.len(), 1);
        }
    }
    let job = s.get(&open(), "poison").await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.map(|e| e.code), Some(FailureCode::WorkerLost));
    assert!(s.claim(&owner(), 1, TTL).await.unwrap().is_none());
    let events = s.events_after(&open(), "poison", 0, 100).await.unwrap();
    assert!(matches!(events.last().map(|e| &e.event), Some(JobEvent::Status(_))));
}

pub(crate) async fn a_cancel_requested_while_the_worker_is_lost_ends_the_job_cancelled(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    assert!(
        matches!(s.cancel(&open(), "a", cancelled()).await.unwrap(), CancelOutcome::Requested(j) if j.cancel_requested)
    );
    let leases = s.renew(&owner(), &["a".into()], TTL).await.unwrap();
    assert_eq!(leases, [LeaseState { id: "a".into(), attempt: 1, cancel_requested: true }], "renew reads it back");
    s.expire_lease("a").await.unwrap();
    let r = s.rescue(RescueScope::Expired, 3).await.unwrap();
    assert_eq!(r.ended.iter().map(|j| j.status).collect::<Vec<_>>(), [JobStatus::Cancelled]);
}

pub(crate) async fn release_gives_the_attempt_back_and_renew_keeps_leases_alive(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    s.create(new_job("b"), None).await.unwrap();
    let a = s.claim(&owner(), 2, Duration::from_millis(300)).await.unwrap().unwrap();
    let b = s.claim(&Owner::new("worker-b"), 2, Duration::from_millis(300)).await.unwrap().unwrap();
    assert!(s.release(&a.fence()).await.unwrap());
    let again = s.claim(&owner(), 2, TTL).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempt), ("a", 1), "a release does not use an attempt");
    // worker-b renews; after the old expiry it is still running, and not rescued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.renew(&Owner::new("worker-b"), std::slice::from_ref(&b.id), TTL).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.rescue(RescueScope::Expired, 3).await.unwrap().requeued.is_empty());
    assert_eq!(s.get(&open(), &b.id).await.unwrap().unwrap().status, JobStatus::Running);
    // At start, a store whose previous owner is dead takes every running job back.
    let r = s.rescue(RescueScope::AllRunning, 3).await.unwrap();
    let got: HashSet<String> = r.requeued.into_iter().collect();
    assert_eq!(got, HashSet::from(["a".to_string(), "b".to_string()]));
}

pub(crate) async fn a_stopped_run_keeps_its_partial_report(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    let c = s.claim(&owner(), 1, TTL).await.unwrap().unwrap();
    let finish = Finish { status: JobStatus::Cancelled, error: Some(cancelled()) };
    let report: Arc<[u8]> = Arc::from(&b"{\"partial\":true}"[..]);
    s.complete(&c.fence(), Completion { finish, report: Some(report), run_result: None }).await.unwrap().unwrap();
    assert_eq!(&*s.report(&open(), "a").await.unwrap(), b"{\"partial\":true}");
}

fn run_result() -> crate::analysis::experiment::RunResult {
    crate::analysis::experiment::RunResult {
        final_loss: Some(0.25),
        final_accuracy: Some(1.0),
        non_finite: false,
        grad_ratio_init: Some(2.0),
        grad_ratio_end: None,
        verdict: crate::analysis::findings::Verdict::Healthy,
        codes: Vec::new(),
        steps: vec![0, 10],
        loss: vec![Some(0.7), Some(0.25)],
        layers: vec!["dense_0".into()],
        grad_norm_init: vec![Some(0.1)],
        steps_done: 10,
        total_steps: 10,
        duration_ms: 5,
    }
}

fn experiment(id: &str, jobs: &[&str]) -> NewExperiment {
    NewExperiment {
        id: id.into(),
        tenant: open(),
        name: Some("e".into()),
        description: None,
        seeds: vec![1, 2],
        loss_threshold: None,
        axes: Vec::new(),
        heatmap: None,
        variants: vec![VariantRecord {
            name: "baseline".into(),
            baseline: true,
            settings: Vec::new(),
            patch: serde_json::json!([]),
            spec: serde_json::json!({}),
            job_ids: jobs.iter().map(|j| j.to_string()).collect(),
        }],
    }
}

pub(crate) async fn an_experiment_records_its_runs_and_its_result_once(s: &dyn JobStore) {
    let new = experiment("E", &["r1", "r2"]);
    let snap = s.create_experiment(new.clone(), vec![run_of("E", "r1"), run_of("E", "r2")]).await.unwrap();
    assert_eq!(snap.record.new, new);
    assert_eq!(snap.status(), JobStatus::Queued);
    let c = s.claim(&owner(), 2, TTL).await.unwrap().unwrap();
    let run = run_result();
    s.complete(&c.fence(), Completion { run_result: Some(run.clone()), ..ok() }).await.unwrap().unwrap();
    let (snap, cancelled_jobs, running) = s.cancel_experiment(&open(), "E", cancelled()).await.unwrap();
    assert_eq!(cancelled_jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), ["r2"]);
    assert!(running.is_empty());
    assert!(snap.record.all_ended() && snap.record.cancel_requested);
    assert_eq!(snap.record.ended["r1"].result, Some(run));
    assert_eq!(snap.record.ended["r2"].status, JobStatus::Cancelled);
    assert!(snap.record.finished_at.is_some());
    let result = Arc::new(crate::analysis::experiment::summarize(&snap.record.input()));
    assert!(s.put_experiment_result("E", Arc::clone(&result)).await.unwrap());
    assert!(!s.put_experiment_result("E", result.clone()).await.unwrap(), "the first result wins");
    let page = s.list_experiments(&open(), 10, None).await.unwrap();
    assert_eq!(page.experiments.len(), 1);
    assert_eq!(page.experiments[0].record.result.as_deref(), Some(&*result));
    assert!(s.experiment(&Tenant::new("b"), "E").await.unwrap().is_none());
    let mut ids = s.delete_experiment(&open(), "E").await.unwrap();
    ids.sort();
    assert_eq!(ids, ["r1", "r2"]);
    assert!(s.get(&open(), "r1").await.unwrap().is_none());
    assert!(s.experiment(&open(), "E").await.unwrap().is_none());
}

pub(crate) async fn expire_removes_finished_jobs_and_keeps_the_queue(s: &dyn JobStore) {
    s.create(new_job("a"), Some(key("k", 1))).await.unwrap();
    done(s, "a").await;
    s.create(new_job("b"), None).await.unwrap();
    let kept = s.expire(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(kept.jobs, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gone = s.expire(Duration::from_millis(1)).await.unwrap();
    assert_eq!(gone.jobs, 1);
    assert!(s.get(&open(), "a").await.unwrap().is_none());
    assert_eq!(s.get(&open(), "b").await.unwrap().unwrap().status, JobStatus::Queued);
    assert_eq!(s.stats().await.unwrap().events, 0, "the expired job's events went with it");
}

/// Room in the queue (capacity 3, two per tenant) is taken by every way into it and given back
/// by every way out, for the queue and for each tenant: what admission counts is the queue as
/// it is (the SQLite and PostgreSQL stores keep these counts in tables beside the jobs).
pub(crate) async fn every_way_in_and_out_of_the_queue_moves_its_room(s: &dyn JobStore) {
    let full = StoreError::QueueFull { capacity: 3 };
    let tenant_full = |queued| StoreError::TenantQueueFull { queued, limit: 2 };
    s.create(job_of("x", "a"), None).await.unwrap();
    s.create(job_of("x", "b"), None).await.unwrap();
    assert_eq!(s.create(job_of("x", "c"), None).await.unwrap_err(), tenant_full(2));
    s.create(job_of("y", "c"), None).await.unwrap();
    assert_eq!(s.create(job_of("y", "d"), None).await.unwrap_err(), full);
    // A claim takes a job out of the queue (the oldest: x's "a").
    let a = s.claim(&owner(), 2, TTL).await.unwrap().unwrap();
    assert_eq!(a.id, "a");
    s.create(job_of("x", "d"), None).await.unwrap();
    assert_eq!(s.create(job_of("y", "e"), None).await.unwrap_err(), full);
    // A cancel of a queued job gives its room back at once.
    s.cancel(&Tenant::new("x"), "d", cancelled()).await.unwrap();
    s.create(job_of("y", "e"), None).await.unwrap();
    assert_eq!(s.create(job_of("y", "f"), None).await.unwrap_err(), full);
    // A release puts the job back in the queue (over capacity: it was admitted before).
    assert!(s.release(&a.fence()).await.unwrap());
    let g = NewExperiment { tenant: Tenant::new("z"), ..experiment("g", &["g1"]) };
    let runs = vec![NewJob { tenant: Tenant::new("z"), ..run_of("g", "g1") }];
    assert_eq!(s.create_experiment(g.clone(), runs.clone()).await.unwrap_err(), full);
    // Claim everything queued ("a", "b", "c", "e"), complete one, and lose another's lease.
    let mut claimed = Vec::new();
    for _ in 0..4 {
        claimed.push(s.claim(&owner(), 8, TTL).await.unwrap().unwrap());
    }
    assert!(s.claim(&owner(), 8, TTL).await.unwrap().is_none());
    s.complete(&claimed[0].fence(), ok()).await.unwrap().unwrap();
    // An experiment's runs count to its tenant and to the queue.
    s.create_experiment(g, runs).await.unwrap();
    s.create(job_of("x", "h"), None).await.unwrap();
    s.create(job_of("x", "i"), None).await.unwrap();
    assert_eq!(s.create(job_of("x", "j"), None).await.unwrap_err(), full);
    // A rescued job is queued again; a job that used its attempts leaves the queue for good.
    assert!(s.expire_lease(&claimed[1].id).await.unwrap());
    assert_eq!(s.rescue(RescueScope::Expired, 3).await.unwrap().requeued, [claimed[1].id.clone()]);
    assert_eq!(s.create(job_of("y", "j"), None).await.unwrap_err(), full);
    s.cancel_experiment(&Tenant::new("z"), "g", cancelled()).await.unwrap();
    s.cancel(&Tenant::new("x"), "h", cancelled()).await.unwrap();
    // x still has two queued: "i", and "b" back from the rescue.
    assert_eq!(s.create(job_of("x", "k"), None).await.unwrap_err(), tenant_full(2));
    s.cancel(&Tenant::new("x"), "i", cancelled()).await.unwrap();
    s.create(job_of("y", "k"), None).await.unwrap();
    // Every queued job claimed and finished: the whole capacity is free again.
    while let Some(c) = s.claim(&owner(), 8, TTL).await.unwrap() {
        s.complete(&c.fence(), ok()).await.unwrap().unwrap();
    }
    for c in &claimed[2..] {
        s.complete(&c.fence(), ok()).await.unwrap().unwrap();
    }
    for id in ["l", "m"] {
        s.create(job_of("x", id), None).await.unwrap();
    }
    s.create(job_of("y", "n"), None).await.unwrap();
    assert_eq!(s.create(job_of("y", "o"), None).await.unwrap_err(), full);
}

/// A worker that could not record the end of its job (the database was away) lets the job go;
/// its process goes on renewing the leases of its other runs, but not that one, so the rescuer
/// runs it again.
pub(crate) async fn renew_keeps_only_the_runs_still_held_and_a_job_let_go_is_rescued(s: &dyn JobStore) {
    s.create(new_job("a"), None).await.unwrap();
    s.create(new_job("b"), None).await.unwrap();
    let a = s.claim(&owner(), 2, Duration::from_millis(200)).await.unwrap().unwrap();
    let b = s.claim(&owner(), 2, Duration::from_millis(200)).await.unwrap().unwrap();
    assert_eq!((a.id.as_str(), b.id.as_str()), ("a", "b"));
    // "a" was let go; only "b" is still running here.
    let leases = s.renew(&owner(), std::slice::from_ref(&b.id), TTL).await.unwrap();
    assert_eq!(leases, [LeaseState { id: "b".into(), attempt: 1, cancel_requested: false }]);
    assert!(s.renew(&owner(), &[], TTL).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s.rescue(RescueScope::Expired, 3).await.unwrap();
    assert_eq!(r.requeued, ["a"]);
    assert_eq!(s.get(&open(), "b").await.unwrap().unwrap().status, JobStatus::Running);
    let again = s.claim(&Owner::new("worker-b"), 2, TTL).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempt), ("a", 2));
}

/// Every test of the suite, with the store limits it needs: `(name, capacity, per tenant)`.
macro_rules! conformance_suite {
    ($make:path) => {
        conformance_suite!(@one $make, claim_takes_the_oldest_queued_job_and_skips_cancelled_ones, 100, usize::MAX);
        conformance_suite!(@one $make, an_experiment_alone_takes_every_worker_but_a_waiting_single_job_gets_the_next_one, 100, usize::MAX);
        conformance_suite!(@one $make, create_refuses_when_the_queue_is_full, 2, usize::MAX);
        conformance_suite!(@one $make, a_tenant_over_its_queued_jobs_is_refused_while_others_are_not, 100, 2);
        conformance_suite!(@one $make, every_way_in_and_out_of_the_queue_moves_its_room, 3, 2);
        conformance_suite!(@one $make, list_pages_newest_first_and_the_last_page_has_no_cursor, 100, usize::MAX);
        conformance_suite!(@one $make, an_idempotency_key_replays_its_job_and_refuses_another_body, 100, usize::MAX);
        conformance_suite!(@one $make, delete_refuses_unfinished_jobs_and_report_waits_for_a_terminal_status, 100, usize::MAX);
        conformance_suite!(@one $make, a_tenant_sees_cancels_deletes_and_lists_only_its_own_jobs, 100, usize::MAX);
        conformance_suite!(@one $make, events_are_numbered_without_gaps_and_end_with_the_status, 100, usize::MAX);
        conformance_suite!(@one $make, a_lost_lease_fences_off_the_old_attempt, 100, usize::MAX);
        conformance_suite!(@one $make, two_rescuers_at_once_rescue_a_job_once, 100, usize::MAX);
        conformance_suite!(@one $make, a_job_whose_worker_dies_every_time_fails_worker_lost_after_max_attempts, 100, usize::MAX);
        conformance_suite!(@one $make, a_cancel_requested_while_the_worker_is_lost_ends_the_job_cancelled, 100, usize::MAX);
        conformance_suite!(@one $make, release_gives_the_attempt_back_and_renew_keeps_leases_alive, 100, usize::MAX);
        conformance_suite!(@one $make, renew_keeps_only_the_runs_still_held_and_a_job_let_go_is_rescued, 100, usize::MAX);
        conformance_suite!(@one $make, a_stopped_run_keeps_its_partial_report, 100, usize::MAX);
        conformance_suite!(@one $make, an_experiment_records_its_runs_and_its_result_once, 100, usize::MAX);
        conformance_suite!(@one $make, expire_removes_finished_jobs_and_keeps_the_queue, 100, usize::MAX);
    };
    (@one $make:path, $name:ident, $capacity:expr, $per_tenant:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(store) = $make($capacity, $per_tenant).await else { return };
            super::$name(&*store).await;
        }
    };
}

mod memory {
    use super::super::{JobStore, MemoryStore, MemoryStoreConfig};
    use std::time::Duration;

    async fn make(capacity: usize, per_tenant: usize) -> Option<Box<dyn JobStore>> {
        Some(Box::new(MemoryStore::new(MemoryStoreConfig {
            capacity,
            retain: 1000,
            ttl: Duration::from_secs(3600),
            max_idempotency_keys: 1000,
            max_queued_per_tenant: per_tenant,
            max_events_per_job: 1000,
        })))
    }

    conformance_suite!(make);
}

mod sqlite {
    use super::super::{JobStore, SqliteConfig, SqliteStore};

    async fn make(capacity: usize, per_tenant: usize) -> Option<Box<dyn JobStore>> {
        let dir = std::env::temp_dir().join(format!("gradscope-conformance-{}", uuid::Uuid::now_v7()));
        let config = SqliteConfig { capacity, max_queued_per_tenant: per_tenant, ..SqliteConfig::new(&dir) };
        Some(Box::new(SqliteStore::open(config).await.unwrap()))
    }

    conformance_suite!(make);
}

mod postgres {
    use super::super::{JobStore, PostgresConfig, PostgresStore};

    async fn make(capacity: usize, per_tenant: usize) -> Option<Box<dyn JobStore>> {
        let Some(url) = crate::jobs::store::postgres::test_database_url() else {
            eprintln!("skipped: no PostgreSQL (set GRADSCOPE_TEST_DATABASE_URL or run under pg_virtualenv)");
            return None;
        };
        let schema = format!("conformance_{}", uuid::Uuid::now_v7().simple());
        let config = PostgresConfig {
            capacity,
            max_queued_per_tenant: per_tenant,
            schema: Some(schema),
            ..PostgresConfig::new(&url)
        };
        Some(Box::new(PostgresStore::connect(config).await.unwrap()))
    }

    conformance_suite!(make);
}
