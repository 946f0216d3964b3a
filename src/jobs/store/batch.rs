//! Group commit for submissions: concurrent `create`s of a SQL store are queued here and written
//! by one task, many to a transaction, so that a burst of submissions pays one durable commit
//! (an fsync) per batch instead of one per job.
//!
//! Each submission still gets its own answer, in its own order: the batch is written in arrival
//! order; a refusal (queue full, the tenant's share full, an idempotency replay) is that
//! submission's answer and does not touch the others; a failure of the database fails the whole
//! batch, and every submission in it hears it (nothing of the batch was committed). A caller is
//! answered only after the commit, so a 202 still means the job is on disk.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::{Created, IdempotencyKey, NewJob, StoreError};

/// One submission: the job and its idempotency key.
pub(super) type CreateRequest = (NewJob, Option<IdempotencyKey>);
/// What `create` answers one submission.
pub(super) type CreateAnswer = Result<Created, StoreError>;

/// The most submissions one transaction takes.
pub(super) const MAX_BATCH: usize = 256;

/// The queue in front of a store's batch writer (see the module doc).
#[derive(Debug)]
pub(super) struct CreateQueue {
    tx: mpsc::Sender<(CreateRequest, oneshot::Sender<CreateAnswer>)>,
}

impl CreateQueue {
    /// Starts the writer task (on the current runtime). `commit` writes one batch in one
    /// transaction and answers each request, in order; an `Err` means nothing was committed.
    /// The task ends when the queue is dropped.
    pub(super) fn spawn<F, Fut>(mut commit: F) -> Self
    where
        F: FnMut(Vec<CreateRequest>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<CreateAnswer>, StoreError>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(CreateRequest, oneshot::Sender<CreateAnswer>)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut pending = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
                let (requests, replies): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
                let n = requests.len();
                match commit(requests).await {
                    Ok(answers) if answers.len() == n => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer);
                        }
                    }
                    Ok(answers) => {
                        let e =
                            StoreError::Corrupt(format!("a batch of {n} submissions got {} answers", answers.len()));
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        CreateQueue { tx }
    }

    /// Queues one submission and waits for its batch to commit.
    pub(super) async fn create(&self, job: NewJob, key: Option<IdempotencyKey>) -> CreateAnswer {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable("the store's writer has stopped".into());
        self.tx.send(((job, key), reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::jobs::store::conformance::new_job;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submissions_share_transactions_and_each_gets_its_own_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&batches);
        let queue = Arc::new(CreateQueue::spawn(move |requests: Vec<CreateRequest>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                // Slow, like an fsync: what arrives meanwhile waits for the next batch.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(requests
                    .into_iter()
                    .map(|(job, _)| {
                        if job.id.ends_with('7') {
                            Err(StoreError::QueueFull { capacity: 1 })
                        } else {
                            Ok(Created::Mismatch)
                        }
                    })
                    .collect())
            }
        }));
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move { queue.create(new_job(&format!("j{i}")), None).await })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let answer = t.await.unwrap();
            if i % 10 == 7 {
                assert_eq!(answer.unwrap_err(), StoreError::QueueFull { capacity: 1 });
            } else {
                assert!(matches!(answer, Ok(Created::Mismatch)));
            }
        }
        let n = batches.load(Ordering::SeqCst);
        assert!((1..=20).contains(&n), "100 submissions in {n} transactions");
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_submission_in_it() {
        let queue =
            CreateQueue::spawn(|_: Vec<CreateRequest>| async { Err(StoreError::Unavailable("disk full".into())) });
        let answer = queue.create(new_job("a"), None).await;
        assert_eq!(answer.unwrap_err(), StoreError::Unavailable("disk full".into()));
    }
}
