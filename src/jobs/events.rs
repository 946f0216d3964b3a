//! Per-job event logs: what `GET /v1/jobs/{id}/events` streams and replays.
//!
//! Each job has an [`EventLog`]: `progress` events while it runs, then exactly one final
//! `status` event, after which the log is closed. Every event gets the next number of a per-job
//! sequence starting at 1, so a client that reconnects with `Last-Event-ID: n` resumes at `n + 1`
//! without gaps or repeats. The log keeps the last `capacity` events (the final `status` event is
//! never dropped); a reconnect that asks for something older resumes at the oldest kept event.
//!
//! Writers are worker threads (plain `std` code); readers are async tasks, woken through a
//! `tokio::sync::watch` channel, whose `send` works from any thread. Depends on the job model
//! only; must not depend on HTTP crates.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{Job, JobProgress};

/// One event of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// Training moved on.
    Progress(JobProgress),
    /// The job reached a terminal status (the last event of every log).
    Status(Box<Job>),
}

/// An event with its sequence number (the SSE `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqEvent {
    /// 1, 2, 3, ... per job.
    pub seq: u64,
    /// The event.
    pub event: JobEvent,
}

/// The bounded, replayable event log of one job.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<LogInner>,
    notify: watch::Sender<u64>,
    capacity: usize,
}

#[derive(Debug)]
struct LogInner {
    events: VecDeque<SeqEvent>,
    next_seq: u64,
    closed: bool,
}

impl EventLog {
    /// An empty log keeping at most `capacity` events (at least 2).
    pub fn new(capacity: usize) -> Self {
        let (notify, _) = watch::channel(0);
        EventLog {
            inner: Mutex::new(LogInner { events: VecDeque::new(), next_seq: 1, closed: false }),
            notify,
            capacity: capacity.max(2),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        // A panic while holding this lock cannot leave the log inconsistent (every update is a
        // single push/pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a progress event; ignored once the log is closed.
    pub fn progress(&self, p: JobProgress) {
        self.push(JobEvent::Progress(p), false);
    }

    /// Appends the final status event and closes the log. Only the first call has an effect.
    pub fn close(&self, job: Job) {
        self.push(JobEvent::Status(Box::new(job)), true);
    }

    fn push(&self, event: JobEvent, close: bool) {
        let seq = {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            if inner.events.len() >= self.capacity {
                inner.events.pop_front();
            }
            inner.events.push_back(SeqEvent { seq, event });
            inner.closed = close;
            seq
        };
        self.notify.send_replace(seq);
    }

    /// The first kept event after `seq` (the oldest kept one when `seq` is older than that).
    pub fn after(&self, seq: u64) -> Option<SeqEvent> {
        let inner = self.lock();
        let first = inner.events.front()?.seq;
        // Sequence numbers are contiguous, so the position is arithmetic.
        let pos = seq.saturating_add(1).saturating_sub(first);
        inner.events.get(usize::try_from(pos).ok()?).cloned()
    }

    /// True once the final status event was appended.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The last sequence number handed out (0 before the first event).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// A reader that starts after `seq` (0 = from the beginning).
    pub fn subscribe(self: &Arc<Self>, seq: u64) -> Subscription {
        Subscription { log: Arc::clone(self), rx: self.notify.subscribe(), cursor: seq }
    }
}

/// Reads a job's events in order, waiting for new ones; ends after the final status event.
#[derive(Debug)]
pub struct Subscription {
    log: Arc<EventLog>,
    rx: watch::Receiver<u64>,
    cursor: u64,
}

impl Subscription {
    /// The next event, or `None` after the final one.
    pub async fn next(&mut self) -> Option<SeqEvent> {
        loop {
            // Mark the current value seen *before* looking, so that an event appended between
            // the look and the wait still wakes us.
            self.rx.borrow_and_update();
            if let Some(ev) = self.log.after(self.cursor) {
                self.cursor = ev.seq;
                return Some(ev);
            }
            if self.log.is_closed() {
                return None;
            }
            if self.rx.changed().await.is_err() {
                // The sender lives in the log we hold, so this cannot happen; end cleanly.
                return None;
            }
        }
    }
}

/// The event logs of every job the store still holds.
#[derive(Debug, Default)]
pub struct EventHub {
    logs: Mutex<HashMap<String, Arc<EventLog>>>,
    capacity: usize,
}

impl EventHub {
    /// A hub whose logs keep `capacity` events each.
    pub fn new(capacity: usize) -> Self {
        EventHub { logs: Mutex::new(HashMap::new()), capacity }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<EventLog>>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the log of a new job.
    pub fn create(&self, id: &str) -> Arc<EventLog> {
        let log = Arc::new(EventLog::new(self.capacity));
        self.lock().insert(id.to_owned(), Arc::clone(&log));
        log
    }

    /// The log of `id`.
    pub fn get(&self, id: &str) -> Option<Arc<EventLog>> {
        self.lock().get(id).cloned()
    }

    /// Forgets the log of `id` (readers holding it finish normally).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(step: u64) -> JobProgress {
        JobProgress { step, total_steps: 10, loss: Some(1.0) }
    }

    #[test]
    fn sequence_numbers_start_at_one_and_resume_after_the_given_id() {
        let log = EventLog::new(10);
        for s in 1..=3 {
            log.progress(p(s));
        }
        assert_eq!(log.after(0).map(|e| e.seq), Some(1));
        assert_eq!(log.after(2).map(|e| e.seq), Some(3));
        assert_eq!(log.after(3), None);
    }

    #[test]
    fn a_full_log_drops_the_oldest_and_resumes_at_the_oldest_kept() {
        let log = EventLog::new(3);
        for s in 1..=5 {
            log.progress(p(s));
        }
        assert_eq!(log.after(0).map(|e| e.seq), Some(3));
        assert_eq!(log.after(4).map(|e| e.seq), Some(5));
    }

    #[test]
    fn nothing_is_appended_after_the_status_event() {
        let log = EventLog::new(3);
        log.progress(p(1));
        let job = Job {
            id: "j".into(),
            status: super::super::JobStatus::Succeeded,
            name: None,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            progress: p(10),
            error: None,
            cancel_requested: false,
            experiment_id: None,
        };
        log.close(job);
        log.progress(p(2));
        assert!(log.is_closed());
        assert_eq!(log.last_seq(), 2);
        assert!(matches!(log.after(1).map(|e| e.event), Some(JobEvent::Status(_))));
    }
}
