//! [`SqliteStore`]: the embedded default. One process owns a data directory (`--data-dir`):
//! `gradscope.db` in it (created on first start, migrated from `migrations/sqlite`), and an
//! exclusive lock on `gradscope.lock` held for the life of the store, so that a second process
//! cannot share the database. Holding that lock proves the previous owner is dead, which is why
//! the service re-queues every `running` row at start ([`RescueScope::AllRunning`]).
//!
//! Durability: WAL journal, `synchronous = FULL` (a commit survives a power cut, not only a
//! crash), a busy timeout. Writes go through one connection (SQLite has one writer; a pool of
//! one serialises them without `SQLITE_BUSY`), reads through a small pool of read-only
//! connections that WAL lets run beside the writer. Every state change is one transaction on
//! the writer, so a `kill -9` at any moment leaves either the state before or after it.
//!
//! Times are Unix milliseconds of this process's clock (one machine: it is the database's
//! clock too).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::batch::{CreateAnswer, CreateQueue, CreateRequest};
use super::sql::{self, db, ExperimentRow, JobRow, EXPERIMENT_COLUMNS, JOB_COLUMNS};
use super::{
    decode_cursor, encode_cursor, pick_fair, rescue_finish, CancelOutcome, Claimed, Completion, Created, Expired,
    Fence, Finish, IdempotencyKey, JobEvent, JobStore, LeaseState, NewJob, Owner, Page, RescueScope, Rescued, SeqEvent,
    StoreError, StoreStats,
};
use crate::analysis::experiment::{ExperimentResult, RunResult};
use crate::jobs::experiments::model::{ExperimentPage, ExperimentSnapshot, NewExperiment, RunSlot};
use crate::jobs::{Job, JobFailure, JobProgress, JobStatus, Tenant};

/// The database file in the data directory.
pub const DB_FILE: &str = "gradscope.db";
/// The lock file in the data directory.
pub const LOCK_FILE: &str = "gradscope.lock";

/// Where and how the SQLite store keeps its data.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The data directory (created if missing).
    pub dir: PathBuf,
    /// Queued jobs at most.
    pub capacity: usize,
    /// Queued jobs of one tenant at most (`usize::MAX`: no bound but `capacity`).
    pub max_queued_per_tenant: usize,
    /// How long a statement waits for a lock before failing.
    pub busy_timeout: Duration,
    /// Read-only connections.
    pub readers: u32,
}

impl SqliteConfig {
    /// Defaults for a store in `dir`.
    pub fn new(dir: &Path) -> Self {
        SqliteConfig {
            dir: dir.to_path_buf(),
            capacity: 1024,
            max_queued_per_tenant: usize::MAX,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
        }
    }
}

/// The SQLite [`JobStore`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    /// Submissions, written many to a transaction (group commit).
    creates: CreateQueue,
    reader: SqlitePool,
    config: SqliteConfig,
    /// Held (locked) for the life of the store.
    _lock: std::fs::File,
}

/// Why a data directory cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory or its files cannot be created or opened.
    #[error("cannot use the data directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds its lock.
    #[error(
        "the data directory {dir} is in use by another gradscope process (its lock file {LOCK_FILE} is held); \
         give each process its own --data-dir, or use --database-url postgres://… to run several replicas"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The database cannot be opened or migrated.
    #[error("cannot open or migrate {path}: {detail}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl SqliteStore {
    /// Opens (creating and migrating) the store in `config.dir`, holding its lock.
    pub async fn open(config: SqliteConfig) -> Result<Self, OpenError> {
        let dir = config.dir.clone();
        let io = |source| OpenError::Io { dir: dir.clone(), source };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked { dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let path = dir.join(DB_FILE);
        let database = |e: &dyn std::fmt::Display| OpenError::Database { path: path.clone(), detail: e.to_string() };
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| database(&e))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(config.busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| database(&e))?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await.map_err(|e| database(&e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(config.readers.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| database(&e))?;
        let creates = {
            let (writer, config) = (writer.clone(), config.clone());
            CreateQueue::spawn(move |batch| {
                let (writer, config) = (writer.clone(), config.clone());
                async move { create_batch(&writer, &config, batch).await }
            })
        };
        Ok(SqliteStore { writer, creates, reader, config, _lock: lock })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    async fn job_row(conn: &mut SqliteConnection, id: &str) -> Result<Option<JobRow>, StoreError> {
        sqlx::query_as::<_, JobRow>(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(db)
    }

    async fn owned_row(&self, tenant: &Tenant, id: &str) -> Result<Option<JobRow>, StoreError> {
        sqlx::query_as::<_, JobRow>(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ? AND tenant = ?"))
            .bind(id)
            .bind(tenant.name())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)
    }

    /// Inserts `job` as queued when the queue holds fewer than `room.0` jobs and its tenant
    /// fewer than `room.1` (admission and insertion in one statement); `None`: no room.
    async fn insert(
        conn: &mut SqliteConnection,
        job: &NewJob,
        now: i64,
        room: (i64, i64),
    ) -> Result<Option<JobRow>, StoreError> {
        sqlx::query_as::<_, JobRow>(&format!(
            "INSERT INTO jobs (id, tenant, name, spec, probe_every, total_steps, status, created_at, experiment_id) \
             SELECT ?, ?, ?, ?, ?, ?, 'queued', ?, ? \
             WHERE (SELECT coalesce(sum(queued), 0) FROM queue_counts) < ? \
               AND (SELECT coalesce(sum(queued), 0) FROM queue_counts WHERE tenant = ?) < ? \
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(&job.id)
        .bind(job.tenant.name())
        .bind(&job.name)
        .bind(sql::spec_json(&job.spec)?)
        .bind(to_i64(job.probe_every.max(1)))
        .bind(to_i64(job.total_steps))
        .bind(now)
        .bind(&job.experiment)
        .bind(room.0)
        .bind(job.tenant.name())
        .bind(room.1)
        .fetch_optional(conn)
        .await
        .map_err(db)
    }

    /// What `key` of `tenant` answers (inside a transaction or not).
    async fn replay(
        conn: &mut SqliteConnection,
        tenant: &Tenant,
        key: &IdempotencyKey,
    ) -> Result<Option<Created>, StoreError> {
        let row = sqlx::query("SELECT fingerprint, job_id FROM idempotency_keys WHERE tenant = ? AND key = ?")
            .bind(tenant.name())
            .bind(&key.key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let fingerprint: Vec<u8> = row.try_get("fingerprint").map_err(db)?;
        let job_id: String = row.try_get("job_id").map_err(db)?;
        let Some(job) = Self::job_row(conn, &job_id).await?.filter(|r| r.tenant == tenant.name()) else {
            return Ok(None);
        };
        Ok(Some(if fingerprint == key.fingerprint { Created::Replay(job.job()?) } else { Created::Mismatch }))
    }

    /// Moves job `id` (queued or running) to a terminal status with its final event, and
    /// records the run with its experiment. Returns the final job.
    async fn set_terminal(
        conn: &mut SqliteConnection,
        id: &str,
        finish: &Finish,
        run_result: Option<&RunResult>,
    ) -> Result<Option<Job>, StoreError> {
        let now = now_ms();
        let error = finish.error.as_ref().map(sql::failure_json).transpose()?;
        let updated = sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, finished_at = ?, spec = NULL, lease_owner = NULL, \
             lease_expires_at = NULL, last_seq = last_seq + 1 \
             WHERE id = ? AND status IN ('queued', 'running') RETURNING last_seq, experiment_id",
        )
        .bind(finish.status.name())
        .bind(error)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        let Some(updated) = updated else { return Ok(None) };
        let seq: i64 = updated.try_get("last_seq").map_err(db)?;
        let experiment: Option<String> = updated.try_get("experiment_id").map_err(db)?;
        let Some(row) = Self::job_row(conn, id).await? else { return Ok(None) };
        let job = row.job()?;
        let event = sql::event_json(&JobEvent::Status(Box::new(job.clone())))?;
        sqlx::query("INSERT INTO job_events (job_id, seq, body) VALUES (?, ?, ?)")
            .bind(id)
            .bind(seq)
            .bind(event)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        if let Some(experiment) = experiment {
            let slot = RunSlot { status: job.status, error: job.error.clone(), result: run_result.cloned() };
            // (An experiment deleted meanwhile keeps no record of the run.)
            sqlx::query(
                "INSERT OR IGNORE INTO experiment_runs (experiment_id, job_id, body) \
                 SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM experiments WHERE id = ?)",
            )
            .bind(&experiment)
            .bind(id)
            .bind(sql::run_slot_json(&slot)?)
            .bind(&experiment)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            sqlx::query(
                "UPDATE experiments SET finished_at = ? WHERE id = ? AND finished_at IS NULL AND NOT EXISTS \
                 (SELECT 1 FROM jobs WHERE experiment_id = ? AND status IN ('queued', 'running'))",
            )
            .bind(now)
            .bind(&experiment)
            .bind(&experiment)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        Ok(Some(job))
    }

    async fn snapshot(
        &self,
        conn: &mut SqliteConnection,
        row: &ExperimentRow,
    ) -> Result<ExperimentSnapshot, StoreError> {
        let new: NewExperiment =
            serde_json::from_str(&row.body).map_err(|e| StoreError::Corrupt(format!("stored experiment: {e}")))?;
        let runs: Vec<(String, String)> =
            sqlx::query_as("SELECT job_id, body FROM experiment_runs WHERE experiment_id = ?")
                .bind(&new.id)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        let jobs: Vec<(String, String, i64, i64)> =
            sqlx::query_as("SELECT id, status, step, total_steps FROM jobs WHERE experiment_id = ?")
                .bind(&new.id)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        row.snapshot(&runs, &jobs)
    }

    async fn experiment_row(
        conn: &mut SqliteConnection,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<ExperimentRow>, StoreError> {
        sqlx::query_as::<_, ExperimentRow>(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ? AND tenant = ?"
        ))
        .bind(id)
        .bind(tenant.name())
        .fetch_optional(conn)
        .await
        .map_err(db)
    }
}

/// Writes a batch of submissions in one transaction (see `batch.rs`): a refusal is its
/// submission's answer; a database failure fails the batch.
async fn create_batch(
    writer: &SqlitePool,
    config: &SqliteConfig,
    batch: Vec<CreateRequest>,
) -> Result<Vec<CreateAnswer>, StoreError> {
    let mut tx = writer.begin().await.map_err(db)?;
    let mut answers = Vec::with_capacity(batch.len());
    for (job, key) in batch {
        match create_one(&mut tx, config, job, key).await {
            Err(e @ (StoreError::QueueFull { .. } | StoreError::TenantQueueFull { .. })) => answers.push(Err(e)),
            Err(e) => return Err(e),
            Ok(created) => answers.push(Ok(created)),
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(answers)
}

/// One submission inside `create_batch`'s transaction.
async fn create_one(
    conn: &mut SqliteConnection,
    config: &SqliteConfig,
    job: NewJob,
    key: Option<IdempotencyKey>,
) -> Result<Created, StoreError> {
    if let Some(k) = &key {
        if let Some(answer) = SqliteStore::replay(&mut *conn, &job.tenant, k).await? {
            return Ok(answer);
        }
    }
    // The row is inserted only when the queue and the tenant's share of it have room (else
    // `check_room` below says which is full).
    let capacity = to_i64(config.capacity as u64);
    let limit = to_i64(config.max_queued_per_tenant.min(i64::MAX as usize) as u64);
    let now = now_ms();
    let row = SqliteStore::insert(&mut *conn, &job, now, (capacity, limit)).await?;
    let Some(row) = row else {
        check_room(&mut *conn, config, &job.tenant, 1).await?;
        return Err(StoreError::Corrupt("a job without room was refused, yet the queue has room".into()));
    };
    if let Some(k) = &key {
        sqlx::query(
            "INSERT INTO idempotency_keys (tenant, key, fingerprint, job_id, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (tenant, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
             job_id = excluded.job_id, created_at = excluded.created_at",
        )
        .bind(job.tenant.name())
        .bind(&k.key)
        .bind(&k.fingerprint[..])
        .bind(&job.id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(Created::New(row.job()?))
}

/// Refuses `adding` more queued jobs of `tenant` when the queue or the tenant's share of it
/// cannot take them (inside the creating transaction: the writer is the only one). Reads the
/// trigger-kept `queue_counts` (migrations/sqlite), never counts the queue.
async fn check_room(
    conn: &mut SqliteConnection,
    config: &SqliteConfig,
    tenant: &Tenant,
    adding: usize,
) -> Result<(), StoreError> {
    let (queued, mine): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(queued), 0), coalesce(sum(CASE WHEN tenant = ? THEN queued END), 0) FROM queue_counts",
    )
    .bind(tenant.name())
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let count = |n: i64| n.max(0).unsigned_abs() as usize;
    super::admit(config.capacity, config.max_queued_per_tenant, count(queued), count(mine), adding)
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create(&self, job: NewJob, key: Option<IdempotencyKey>) -> Result<Created, StoreError> {
        self.creates.create(job, key).await
    }

    async fn lookup_key(&self, tenant: &Tenant, key: &IdempotencyKey) -> Result<Option<Created>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        Self::replay(&mut conn, tenant, key).await
    }

    async fn get(&self, tenant: &Tenant, id: &str) -> Result<Option<Job>, StoreError> {
        self.owned_row(tenant, id).await?.map(|r| r.job()).transpose()
    }

    async fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let before = match cursor {
            Some(c) => decode_cursor(c).ok_or(StoreError::InvalidCursor)?,
            None => u64::MAX,
        };
        let filter = if status.is_some() { " AND status = ?" } else { "" };
        let text =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ? AND seq < ?{filter} ORDER BY seq DESC LIMIT ?");
        let mut q = sqlx::query_as::<_, JobRow>(&text).bind(tenant.name()).bind(to_i64(before));
        if let Some(s) = status {
            q = q.bind(s.name());
        }
        let rows = q.bind(to_i64(limit as u64 + 1)).fetch_all(&self.reader).await.map_err(db)?;
        let mut jobs = Vec::with_capacity(rows.len().min(limit));
        let mut next_cursor = None;
        for row in &rows {
            if jobs.len() == limit {
                next_cursor = Some(encode_cursor(row.seq as u64 + 1));
                break;
            }
            jobs.push(row.job()?);
        }
        Ok(Page { jobs, next_cursor })
    }

    async fn cancel(&self, tenant: &Tenant, id: &str, failure: JobFailure) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row =
            Self::job_row(&mut tx, id).await?.filter(|r| r.tenant == tenant.name()).ok_or(StoreError::NotFound)?;
        let outcome = match sql::status(&row.status)? {
            JobStatus::Queued => {
                let finish = Finish { status: JobStatus::Cancelled, error: Some(failure) };
                let job = Self::set_terminal(&mut tx, id, &finish, None).await?.ok_or(StoreError::NotFound)?;
                CancelOutcome::Cancelled(job)
            }
            JobStatus::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ?")
                    .bind(now_ms())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                let row = Self::job_row(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
                CancelOutcome::Requested(row.job()?)
            }
            _ => CancelOutcome::AlreadyFinished(row.job()?),
        };
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row =
            Self::job_row(&mut tx, id).await?.filter(|r| r.tenant == tenant.name()).ok_or(StoreError::NotFound)?;
        let status = sql::status(&row.status)?;
        if !status.is_terminal() {
            return Err(StoreError::NotFinished(status));
        }
        // Reports and events go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM jobs WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, StoreError> {
        let row = sqlx::query(
            "SELECT j.status, j.error, r.body FROM jobs j LEFT JOIN job_reports r ON r.job_id = j.id \
             WHERE j.id = ? AND j.tenant = ?",
        )
        .bind(id)
        .bind(tenant.name())
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?;
        let status = sql::status(&row.try_get::<String, _>("status").map_err(db)?)?;
        if !status.is_terminal() {
            return Err(StoreError::ReportNotReady(status));
        }
        let body: Option<Vec<u8>> = row.try_get("body").map_err(db)?;
        match body {
            Some(b) => Ok(Arc::from(b)),
            None => {
                let error: Option<String> = row.try_get("error").map_err(db)?;
                let reason = error.as_deref().map(sql::failure).transpose()?.map(|f| f.message);
                Err(StoreError::NoReport(status, reason))
            }
        }
    }

    async fn events_after(
        &self,
        tenant: &Tenant,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let owned: Option<i64> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = ? AND tenant = ?")
            .bind(id)
            .bind(tenant.name())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if owned.is_none() {
            return Err(StoreError::NotFound);
        }
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, body FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?")
                .bind(id)
                .bind(to_i64(after))
                .bind(to_i64(limit as u64))
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
        rows.iter().map(|(seq, body)| sql::event(*seq, body)).collect()
    }

    async fn claim(&self, owner: &Owner, workers: usize, ttl: Duration) -> Result<Option<Claimed>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        // The active groups from the trigger-kept `group_counts` ('' = single jobs).
        let active: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT grp, queued, running FROM group_counts").fetch_all(&mut *tx).await.map_err(db)?;
        if active.iter().all(|(_, queued, _)| *queued <= 0) {
            return Ok(None);
        }
        let group = |g: &str| (!g.is_empty()).then(|| g.to_owned());
        let running: std::collections::HashMap<Option<String>, usize> =
            active.iter().map(|(g, _, n)| (group(g), n.max(&0).unsigned_abs() as usize)).collect();
        let share = super::fair_share(workers, running.len());
        // When every group with queued jobs is under its share, the oldest queued job is the one
        // `pick_fair` would take; else it chooses among the oldest 256.
        let all_under = active.iter().all(|(g, queued, _)| *queued <= 0 || running[&group(g)] < share);
        let limit = if all_under { 1 } else { 256 };
        let candidates: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, experiment_id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT ?")
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let running = running.iter().map(|(g, n)| (g.as_deref(), *n)).collect();
        let groups: Vec<Option<&str>> = candidates.iter().map(|(_, g)| g.as_deref()).collect();
        let (id, _) = &candidates[pick_fair(workers, &groups, &running)];
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE jobs SET status = 'running', started_at = ?, attempt = attempt + 1, lease_owner = ?, \
             lease_expires_at = ? WHERE id = ? AND status = 'queued' \
             RETURNING tenant, spec, probe_every, total_steps, experiment_id, attempt",
        )
        .bind(now)
        .bind(owner.as_str())
        .bind(now + sql::millis(ttl))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let spec: Option<String> = row.try_get("spec").map_err(db)?;
        let spec =
            sql::spec(spec.as_deref().ok_or_else(|| StoreError::Corrupt(format!("queued job {id} has no spec")))?)?;
        let claimed = Claimed {
            id: id.clone(),
            tenant: Tenant::new(&row.try_get::<String, _>("tenant").map_err(db)?),
            spec,
            probe_every: row.try_get::<i64, _>("probe_every").map_err(db)?.max(1) as u64,
            total_steps: row.try_get::<i64, _>("total_steps").map_err(db)?.max(0) as u64,
            experiment: row.try_get("experiment_id").map_err(db)?,
            attempt: to_u32(row.try_get("attempt").map_err(db)?),
        };
        tx.commit().await.map_err(db)?;
        Ok(Some(claimed))
    }

    async fn progress(&self, fence: &Fence, progress: &[JobProgress]) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        for p in progress {
            let seq: Option<i64> = sqlx::query_scalar(
                "UPDATE jobs SET step = ?, loss = ?, last_seq = last_seq + 1 \
                 WHERE id = ? AND attempt = ? AND status = 'running' RETURNING last_seq",
            )
            .bind(to_i64(p.step))
            .bind(p.loss.filter(|l| l.is_finite()))
            .bind(&fence.id)
            .bind(i64::from(fence.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            // The transaction rolls back when dropped: nothing of a lost lease is written.
            let Some(seq) = seq else { return Ok(false) };
            sqlx::query("INSERT INTO job_events (job_id, seq, body) VALUES (?, ?, ?)")
                .bind(&fence.id)
                .bind(seq)
                .bind(sql::event_json(&JobEvent::Progress(*p))?)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn complete(&self, fence: &Fence, completion: Completion) -> Result<Option<Job>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let held: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND status = 'running'")
                .bind(&fence.id)
                .bind(i64::from(fence.attempt))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if held.is_none() {
            return Ok(None);
        }
        if let Some(report) = &completion.report {
            sqlx::query("INSERT OR REPLACE INTO job_reports (job_id, body) VALUES (?, ?)")
                .bind(&fence.id)
                .bind(report.to_vec())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let job = Self::set_terminal(&mut tx, &fence.id, &completion.finish, completion.run_result.as_ref()).await?;
        tx.commit().await.map_err(db)?;
        Ok(job)
    }

    async fn release(&self, fence: &Fence) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempt = attempt - 1, lease_owner = NULL, lease_expires_at = NULL, \
             started_at = NULL WHERE id = ? AND attempt = ? AND status = 'running'",
        )
        .bind(&fence.id)
        .bind(i64::from(fence.attempt))
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew(&self, owner: &Owner, held: &[String], ttl: Duration) -> Result<Vec<LeaseState>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let held = serde_json::to_string(held).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows: Vec<(String, i64, bool)> = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = ? WHERE status = 'running' AND lease_owner = ? \
             AND id IN (SELECT value FROM json_each(?)) RETURNING id, attempt, cancel_requested_at IS NOT NULL",
        )
        .bind(now_ms() + sql::millis(ttl))
        .bind(owner.as_str())
        .bind(held)
        .fetch_all(&self.writer)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(id, attempt, cancel_requested)| LeaseState { id, attempt: to_u32(attempt), cancel_requested })
            .collect())
    }

    async fn rescue(&self, scope: RescueScope, max_attempts: u32) -> Result<Rescued, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let all = scope == RescueScope::AllRunning;
        let lost: Vec<(String, i64, bool)> = sqlx::query_as(
            "SELECT id, attempt, cancel_requested_at IS NOT NULL FROM jobs \
             WHERE status = 'running' AND (? OR lease_expires_at IS NULL OR lease_expires_at <= ?) ORDER BY seq",
        )
        .bind(all)
        .bind(now_ms())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut rescued = Rescued::default();
        for (id, attempt, cancel_requested) in lost {
            let attempt = to_u32(attempt);
            let finish = rescue_finish(cancel_requested, attempt, max_attempts);
            match finish {
                Some(finish) => rescued.ended.extend(Self::set_terminal(&mut tx, &id, &finish, None).await?),
                None => {
                    sqlx::query(
                        "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
                         started_at = NULL WHERE id = ? AND status = 'running'",
                    )
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    rescued.requeued.push(id);
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(rescued)
    }

    async fn expire_lease(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND status = 'running'")
            .bind(now_ms() - 1)
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_experiment(
        &self,
        experiment: NewExperiment,
        jobs: Vec<NewJob>,
    ) -> Result<ExperimentSnapshot, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        check_room(&mut tx, &self.config, &experiment.tenant, jobs.len()).await?;
        let now = now_ms();
        for job in &jobs {
            // The room for all of them was checked above.
            Self::insert(&mut tx, job, now, (i64::MAX, i64::MAX))
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("run {} of an experiment was not inserted", job.id)))?;
        }
        sqlx::query("INSERT INTO experiments (id, tenant, body, created_at) VALUES (?, ?, ?, ?)")
            .bind(&experiment.id)
            .bind(experiment.tenant.name())
            .bind(sql::experiment_json(&experiment)?)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let row =
            Self::experiment_row(&mut tx, &experiment.tenant, &experiment.id).await?.ok_or(StoreError::NotFound)?;
        let snap = self.snapshot(&mut tx, &row).await?;
        tx.commit().await.map_err(db)?;
        Ok(snap)
    }

    async fn experiment(&self, tenant: &Tenant, id: &str) -> Result<Option<ExperimentSnapshot>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let Some(row) = Self::experiment_row(&mut conn, tenant, id).await? else { return Ok(None) };
        self.snapshot(&mut conn, &row).await.map(Some)
    }

    async fn list_experiments(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ExperimentPage, StoreError> {
        let before = match cursor {
            Some(c) => decode_cursor(c).ok_or(StoreError::InvalidCursor)?,
            None => u64::MAX,
        };
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let rows = sqlx::query_as::<_, ExperimentRow>(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE tenant = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
        ))
        .bind(tenant.name())
        .bind(to_i64(before))
        .bind(to_i64(limit as u64 + 1))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut experiments = Vec::with_capacity(rows.len().min(limit));
        let mut next_cursor = None;
        for row in &rows {
            if experiments.len() == limit {
                next_cursor = Some(encode_cursor(row.seq as u64 + 1));
                break;
            }
            experiments.push(self.snapshot(&mut conn, row).await?);
        }
        Ok(ExperimentPage { experiments, next_cursor })
    }

    async fn cancel_experiment(
        &self,
        tenant: &Tenant,
        id: &str,
        failure: JobFailure,
    ) -> Result<(ExperimentSnapshot, Vec<Job>, Vec<String>), StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = Self::experiment_row(&mut tx, tenant, id).await?.ok_or(StoreError::NotFound)?;
        let snap = self.snapshot(&mut tx, &row).await?;
        if snap.record.all_ended() {
            return Ok((snap, Vec::new(), Vec::new()));
        }
        let now = now_ms();
        sqlx::query("UPDATE experiments SET cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let live: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, status FROM jobs WHERE experiment_id = ? AND status IN ('queued', 'running') ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut cancelled = Vec::new();
        let mut running = Vec::new();
        for (job_id, status) in live {
            if status == JobStatus::Queued.name() {
                let finish = Finish { status: JobStatus::Cancelled, error: Some(failure.clone()) };
                cancelled.extend(Self::set_terminal(&mut tx, &job_id, &finish, None).await?);
            } else {
                sqlx::query("UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ?")
                    .bind(now)
                    .bind(&job_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                running.push(job_id);
            }
        }
        let row = Self::experiment_row(&mut tx, tenant, id).await?.ok_or(StoreError::NotFound)?;
        let snap = self.snapshot(&mut tx, &row).await?;
        tx.commit().await.map_err(db)?;
        Ok((snap, cancelled, running))
    }

    async fn put_experiment_result(&self, id: &str, result: Arc<ExperimentResult>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE experiments SET result = ? WHERE id = ? AND result IS NULL AND finished_at IS NOT NULL",
        )
        .bind(sql::result_json(&result)?)
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let row = Self::experiment_row(&mut tx, tenant, id).await?.ok_or(StoreError::NotFound)?;
        let snap = self.snapshot(&mut tx, &row).await?;
        if !snap.record.all_ended() {
            return Err(StoreError::NotFinished(snap.status()));
        }
        sqlx::query("DELETE FROM jobs WHERE experiment_id = ?").bind(id).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("DELETE FROM experiments WHERE id = ?").bind(id).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(snap.record.job_ids().cloned().collect())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let by_status: Vec<(String, i64)> = sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status")
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let mut stats = StoreStats::default();
        for (status, n) in by_status {
            let n = n.max(0) as u64;
            match sql::status(&status)? {
                JobStatus::Queued => stats.queued = n,
                JobStatus::Running => stats.running = n,
                _ => stats.finished += n,
            }
        }
        let (events, experiments, report_bytes): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM job_events), (SELECT count(*) FROM experiments), \
             (SELECT coalesce(sum(length(body)), 0) FROM job_reports)",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
        stats.events = events.max(0) as u64;
        stats.experiments = experiments.max(0) as u64;
        stats.report_bytes = report_bytes.max(0) as u64;
        Ok(stats)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(db)?;
        Ok(())
    }

    async fn expire(&self, ttl: Duration) -> Result<Expired, StoreError> {
        let cutoff = now_ms() - sql::millis(ttl);
        let mut tx = self.writer.begin().await.map_err(db)?;
        let jobs = sqlx::query("DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        let experiments = sqlx::query("DELETE FROM experiments WHERE finished_at IS NOT NULL AND finished_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        let keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(Expired { jobs, experiments, keys })
    }
}
