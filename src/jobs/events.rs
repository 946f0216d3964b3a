//! Job events for `GET /v1/jobs/{id}/events`: reading a job's events from the store in order,
//! and waking readers when there are new ones.
//!
//! The events themselves are the store's (numbered 1, 2, 3, … per job without gaps, the final
//! `status` event committed with the terminal status: see [`super::store`]), so a client that
//! reconnects with `Last-Event-ID: n` resumes at `n + 1` on any replica and after a restart. A
//! [`Subscription`] reads them in batches; between batches it waits for a local wake-up
//! ([`Wakeups`], sent by this process's workers after each write) or for `poll` to pass, which
//! is how events written by another replica arrive.
//!
//! Depends on the store and the job model; must not depend on HTTP crates.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

pub use super::store::{JobEvent, SeqEvent};
use super::store::{JobStore, StoreError};
use super::Tenant;

/// Wake-ups of readers of a job's events, in this process.
#[derive(Debug, Default)]
pub struct Wakeups {
    senders: Mutex<HashMap<String, watch::Sender<()>>>,
}

impl Wakeups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
        // Inserts and removes only: a poisoned map is still consistent.
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the readers of job `id` (there is something new to read).
    pub fn notify(&self, id: &str) {
        let mut senders = self.lock();
        if let Some(tx) = senders.get(id) {
            if tx.send(()).is_err() {
                // Every reader is gone.
                senders.remove(id);
            }
        }
    }

    /// A receiver woken by [`notify`](Self::notify) for `id`.
    pub fn watch(&self, id: &str) -> watch::Receiver<()> {
        let mut senders = self.lock();
        if senders.len() > 1024 {
            senders.retain(|_, tx| tx.receiver_count() > 0);
        }
        senders.entry(id.to_owned()).or_insert_with(|| watch::channel(()).0).subscribe()
    }
}

/// Reads a job's events in order, waiting for new ones; ends after the final status event (or
/// at once when the job has ended and everything after the given id was read).
#[derive(Debug)]
pub struct Subscription {
    store: Arc<dyn JobStore>,
    tenant: Tenant,
    id: String,
    cursor: u64,
    buffer: VecDeque<SeqEvent>,
    wake: watch::Receiver<()>,
    poll: Duration,
    ended: bool,
}

impl Subscription {
    /// A reader of job `id`'s events after `after` (0 = from the first).
    pub fn new(
        store: Arc<dyn JobStore>,
        wakeups: &Wakeups,
        tenant: Tenant,
        id: String,
        after: u64,
        poll: Duration,
    ) -> Self {
        let wake = wakeups.watch(&id);
        Subscription { store, tenant, id, cursor: after, buffer: VecDeque::new(), wake, poll, ended: false }
    }

    /// The next event, or `None` after the final one (or when the store cannot be read: the
    /// client reconnects with the last id it got and resumes there).
    pub async fn next(&mut self) -> Option<SeqEvent> {
        loop {
            if let Some(ev) = self.buffer.pop_front() {
                self.cursor = ev.seq;
                self.ended = matches!(ev.event, JobEvent::Status(_));
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            // Mark the current value seen *before* reading, so that an event written between
            // the read and the wait still wakes us.
            self.wake.borrow_and_update();
            match self.store.events_after(&self.tenant, &self.id, self.cursor, 256).await {
                Ok(events) if !events.is_empty() => {
                    self.buffer.extend(events);
                    continue;
                }
                Ok(_) => {
                    // Nothing new: a job that has ended has nothing more to say.
                    match self.store.get(&self.tenant, &self.id).await {
                        Ok(Some(job)) if !job.status.is_terminal() => {}
                        Ok(_) => return None,
                        Err(e) => return Self::lost(&e),
                    }
                }
                Err(StoreError::NotFound) => return None,
                Err(e) => return Self::lost(&e),
            }
            tokio::select! {
                _ = self.wake.changed() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    fn lost(e: &StoreError) -> Option<SeqEvent> {
        tracing::warn!(error = %e, "event stream ended: the store cannot be read");
        None
    }
}
