//! What only the memory store does: count-bounded eviction. The behaviour every store shares is
//! checked by `../conformance.rs`.

use super::*;
use crate::jobs::store::conformance::{done, new_job, open};

fn store(capacity: usize, retain: usize) -> MemoryStore {
    MemoryStore::new(MemoryStoreConfig {
        capacity,
        retain,
        ttl: Duration::from_secs(3600),
        max_idempotency_keys: 100,
        max_queued_per_tenant: usize::MAX,
        max_events_per_job: 100,
    })
}

#[tokio::test]
async fn finished_jobs_beyond_the_retention_count_are_evicted_oldest_first() {
    let s = store(10, 2);
    for id in ["a", "b", "c"] {
        s.create(new_job(id), None).await.unwrap();
        done(&s, id).await;
    }
    assert!(s.get(&open(), "a").await.unwrap().is_none());
    assert!(s.get(&open(), "b").await.unwrap().is_some() && s.get(&open(), "c").await.unwrap().is_some());
}

#[tokio::test]
async fn a_job_keeps_its_newest_events_and_always_its_final_one() {
    let s = MemoryStore::new(MemoryStoreConfig { max_events_per_job: 3, ..store(10, 10).config });
    s.create(new_job("a"), None).await.unwrap();
    let c = s.claim(&Owner::new("w"), 1, Duration::from_secs(60)).await.unwrap().unwrap();
    let p: Vec<JobProgress> = (1..=5).map(|step| JobProgress { step, total_steps: 10, loss: None }).collect();
    assert!(s.progress(&c.fence(), &p).await.unwrap());
    let seqs = |ev: Vec<SeqEvent>| ev.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.events_after(&open(), "a", 0, 100).await.unwrap()), [3, 4, 5]);
    let finish = Finish { status: JobStatus::Succeeded, error: None };
    s.complete(&c.fence(), Completion { finish, report: None, run_result: None }).await.unwrap().unwrap();
    let ev = s.events_after(&open(), "a", 0, 100).await.unwrap();
    assert_eq!(ev.last().map(|e| e.seq), Some(6));
    assert!(matches!(ev.last().map(|e| &e.event), Some(JobEvent::Status(_))));
}
