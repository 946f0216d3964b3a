//! [`PostgresStore`]: the [`JobStore`] on PostgreSQL, for a cluster of replicas on one database.
//!
//! Every replica runs the same code against the same tables (`migrations/postgres`); the
//! database is the only coordinator. Each state change is one transaction at `READ COMMITTED`,
//! made safe under concurrency by these rules:
//!
//! - **Claim** locks at most one queued row per group (`FOR UPDATE SKIP LOCKED`: claimers never
//!   wait for each other), moves the picked one to `running` and commits at once; no
//!   transaction stays open while a job trains.
//! - **Fencing.** Every worker write names `id = $1 AND attempt = $2 AND status = 'running'`;
//!   zero rows means the lease was lost and nothing is written.
//! - **Times** come from the database clock (`clock_timestamp()`, Unix milliseconds), so
//!   replicas with skewed clocks agree on which lease expired.
//! - **Events** are numbered by `UPDATE jobs SET last_seq = last_seq + n ... RETURNING` in the
//!   transaction that inserts them: the row lock orders writers of one job, so numbers have no
//!   gaps and a reader never sees a later number commit before an earlier one.
//! - **Lock order.** A transaction that ends a run of an experiment locks the job row(s) first
//!   and the experiment row after (`cancel_experiment` and `delete_experiment` do the same), so
//!   two of them never wait for each other in a cycle. The experiment row lock also serialises
//!   the "was this the last run?" check of concurrent completions (without it, two last runs
//!   ending at once would each see the other still running and neither would finish the
//!   experiment).
//! - **Queue bounds** are exact: `create` and `create_experiment` count and insert under a
//!   transaction-scoped advisory lock of the schema.
//! - **Cancels across replicas.** A cancel of a running job records `cancel_requested_at` and
//!   sends `NOTIFY gradscope_cancel` with the job id in the same transaction (delivered on
//!   commit). Each replica listens and forwards ids to [`PostgresStore::cancel_notifications`].
//!   Notifications sent while a listener is reconnecting are lost; the lease keeper's `renew`
//!   reads every cancel request back, so a cancel is seen within one renew interval regardless.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{FromRow, Postgres, Row, Transaction};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::batch::CreateQueue;
use super::sql::{self, db, ExperimentRow, JobRow, EXPERIMENT_COLUMNS, JOB_COLUMNS};
use super::{
    encode_cursor, pick_fair, rescue_finish, CancelOutcome, Claimed, Completion, Created, Expired, Fence, Finish,
    IdempotencyKey, JobEvent, JobStore, LeaseState, NewJob, Owner, Page, RescueScope, Rescued, SeqEvent, StoreError,
    StoreStats,
};
use crate::analysis::experiment::ExperimentResult;
use crate::jobs::experiments::model::{ExperimentPage, ExperimentSnapshot, NewExperiment};
use crate::jobs::{Job, JobFailure, JobProgress, JobStatus, Tenant};

/// Buffered cancel notifications per receiver (a slow receiver loses the oldest; the lease
/// keeper's `renew` still reads every request back).
const NOTIFICATION_BUFFER: usize = 1024;

/// How a [`PostgresStore`] connects and what it bounds.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (sqlx's URL syntax; `?host=/dir` for a
    /// socket directory).
    pub url: String,
    /// A schema to keep the tables in (created if missing; set as `search_path` on every
    /// connection). `None`: the connection's default (`public`).
    pub schema: Option<String>,
    /// Queued jobs at most (the queue's capacity).
    pub capacity: usize,
    /// Queued jobs of one tenant at most (`usize::MAX`: only `capacity` bounds them).
    pub max_queued_per_tenant: usize,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Announce cancel requests with `NOTIFY` and listen for them (off behind a pooler in
    /// transaction mode, where `LISTEN` does not work: cancels then travel by `renew` only).
    pub notify: bool,
}

impl PostgresConfig {
    /// The defaults for the database at `url`: schema `None`, capacity 1024, no per-tenant
    /// bound, 10 connections, notifications on.
    pub fn new(url: &str) -> Self {
        PostgresConfig {
            url: url.to_owned(),
            schema: None,
            capacity: 1024,
            max_queued_per_tenant: usize::MAX,
            max_connections: 10,
            notify: true,
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    /// The URL without its password (configs end up in logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("capacity", &self.capacity)
            .field("max_queued_per_tenant", &self.max_queued_per_tenant)
            .field("max_connections", &self.max_connections)
            .field("notify", &self.notify)
            .finish()
    }
}

/// `url` with its password (in the user info or a `password=` query parameter) replaced by
/// `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| if p.starts_with("password=") { "password=***".to_owned() } else { p.to_owned() })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The PostgreSQL [`JobStore`]. Cheap to share (`Arc`); dropping it stops its listener.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Submissions, written many to a transaction (group commit).
    creates: CreateQueue,
    capacity: usize,
    max_queued_per_tenant: usize,
    notify: bool,
    /// Cancel notifications, when `notify` is on.
    cancels: Option<broadcast::Sender<String>>,
    /// The listener task, aborted on drop.
    listener: Option<JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(task) = &self.listener {
            task.abort();
        }
    }
}

/// A schema name the store accepts: an unquoted SQL identifier (letters, digits, `_`; not
/// starting with a digit; at most 63 bytes), so it can go into `search_path` and DDL as is.
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

impl PostgresStore {
    /// Connects (retrying is the caller's business), creates `schema` if given and sets
    /// `search_path` on every connection, runs the migrations of `migrations/postgres` (sqlx's
    /// migrator holds an advisory lock meanwhile, so replicas starting together apply each
    /// migration once) and, when `notify` is on, starts a task that listens on
    /// `gradscope_cancel` and forwards job ids to [`Self::cancel_notifications`].
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Unavailable(format!("invalid database URL {}: {e}", redact(&config.url))))?;
        if let Some(schema) = &config.schema {
            if !valid_schema(schema) {
                return Err(StoreError::Unavailable(format!(
                    "invalid schema name `{schema}` (letters, digits and _, not starting with a digit)"
                )));
            }
            create_schema(&options, schema).await?;
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot migrate the database: {e}")))?;
        let (cancels, listener) = if config.notify {
            let (tx, _) = broadcast::channel(NOTIFICATION_BUFFER);
            let task = listen(options, tx.clone()).await?;
            (Some(tx), Some(task))
        } else {
            (None, None)
        };
        let creates = {
            let (pool, capacity, per_tenant) = (pool.clone(), config.capacity, config.max_queued_per_tenant);
            CreateQueue::spawn(move |batch| {
                let pool = pool.clone();
                async move { create_batch(&pool, capacity, per_tenant, batch).await }
            })
        };
        Ok(PostgresStore {
            pool,
            creates,
            capacity: config.capacity,
            max_queued_per_tenant: config.max_queued_per_tenant,
            notify: config.notify,
            cancels,
            listener,
        })
    }

    /// Ids of jobs whose cancel was requested on any replica (by `NOTIFY`), when notify is on.
    /// A notification may be missed (listener reconnecting, receiver lagging): it speeds a
    /// cancel up, `renew` is what guarantees it.
    pub fn cancel_notifications(&self) -> Option<broadcast::Receiver<String>> {
        self.cancels.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Starts a transaction.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db)
    }

    /// Refuses `adding` more queued jobs of `tenant` when the queue or the tenant's share of it
    /// cannot take them (under [`lock_queue`]).
    async fn check_room(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &Tenant,
        adding: usize,
    ) -> Result<(), StoreError> {
        let (queued, of_tenant): (i64, i64) =
            sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE tenant = $1) FROM jobs WHERE status = 'queued'")
                .bind(tenant.name())
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?;
        super::admit(self.capacity, self.max_queued_per_tenant, count(queued), count(of_tenant), adding)
    }

    /// Sends the cancel notification of `id` when `tx` commits (if notify is on).
    async fn announce_cancel(&self, tx: &mut Transaction<'static, Postgres>, id: &str) -> Result<(), StoreError> {
        if self.notify {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CANCEL_CHANNEL)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}

/// The test database: `GRADSCOPE_TEST_DATABASE_URL`, else one built from
/// `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE` when `PGHOST` is set (`pg_virtualenv`
/// sets them); `None` otherwise.
pub fn test_database_url() -> Option<String> {
    if let Ok(url) = std::env::var("GRADSCOPE_TEST_DATABASE_URL") {
        if !url.is_empty() {
            return Some(url);
        }
    }
    let host = std::env::var("PGHOST").ok().filter(|h| !h.is_empty())?;
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let port = var("PGPORT").unwrap_or_else(|| "5432".into());
    let user = var("PGUSER").unwrap_or_else(|| "postgres".into());
    let database = var("PGDATABASE").unwrap_or_else(|| user.clone());
    let userinfo = match var("PGPASSWORD") {
        Some(p) => format!("{}:{}", encode(&user), encode(&p)),
        None => encode(&user),
    };
    Some(if host.starts_with('/') {
        // A socket directory goes in the query.
        format!("postgres://{userinfo}@/{}?host={}&port={port}", encode(&database), encode(&host))
    } else {
        format!("postgres://{userinfo}@{host}:{port}/{}", encode(&database))
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

mod helpers;
use helpers::*;

#[async_trait]
impl JobStore for PostgresStore {
    async fn create(&self, job: NewJob, key: Option<IdempotencyKey>) -> Result<Created, StoreError> {
        self.creates.create(job, key).await
    }

    async fn lookup_key(&self, tenant: &Tenant, key: &IdempotencyKey) -> Result<Option<Created>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        replay(&mut conn, tenant, key).await
    }

    async fn get(&self, tenant: &Tenant, id: &str) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2");
        let row: Option<JobRow> =
            sqlx::query_as(&sql).bind(id).bind(tenant.name()).fetch_optional(&self.pool).await.map_err(db)?;
        row.map(|r| r.job()).transpose()
    }

    async fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let before = before(cursor)?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND ($2::text IS NULL OR status = $2) AND seq < $3 \
             ORDER BY seq DESC LIMIT $4"
        );
        let mut rows: Vec<JobRow> = sqlx::query_as(&sql)
            .bind(tenant.name())
            .bind(status.map(JobStatus::name))
            .bind(before)
            .bind(page_limit(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut next_cursor = None;
        if rows.len() > limit {
            // One more matching job exists: the next page starts with it.
            next_cursor = rows.get(limit).map(|r| encode_cursor(r.seq.max(0) as u64 + 1));
            rows.truncate(limit);
        }
        let jobs = rows.iter().map(JobRow::job).collect::<Result<_, _>>()?;
        Ok(Page { jobs, next_cursor })
    }

    async fn cancel(&self, tenant: &Tenant, id: &str, failure: JobFailure) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE");
        let row: JobRow = sqlx::query_as(&sql)
            .bind(id)
            .bind(tenant.name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        let outcome = match sql::status(&row.status)? {
            JobStatus::Queued => {
                let finish = Finish { status: JobStatus::Cancelled, error: Some(failure) };
                let job = set_terminal(&mut tx, id, &finish, None).await?.ok_or(StoreError::NotFound)?;
                CancelOutcome::Cancelled(job)
            }
            JobStatus::Running => {
                let sql = format!(
                    "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, {NOW}) WHERE id = $1 \
                     RETURNING {JOB_COLUMNS}"
                );
                let row: JobRow = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await.map_err(db)?;
                self.announce_cancel(&mut tx, id).await?;
                CancelOutcome::Requested(row.job()?)
            }
            _ => CancelOutcome::AlreadyFinished(row.job()?),
        };
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 AND tenant = $2 FOR UPDATE")
            .bind(id)
            .bind(tenant.name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        let status = sql::status(&status)?;
        if !status.is_terminal() {
            return roll_back(tx, Err(StoreError::NotFinished(status))).await;
        }
        // Reports and events go with the row (ON DELETE CASCADE); keys naming it are dropped.
        sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("DELETE FROM idempotency_keys WHERE job_id = $1 AND tenant = $2")
            .bind(id)
            .bind(tenant.name())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, StoreError> {
        let row: Option<(String, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT j.status, j.error, r.body FROM jobs j LEFT JOIN job_reports r ON r.job_id = j.id \
             WHERE j.id = $1 AND j.tenant = $2",
        )
        .bind(id)
        .bind(tenant.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let (status, error, body) = row.ok_or(StoreError::NotFound)?;
        let status = sql::status(&status)?;
        if !status.is_terminal() {
            return Err(StoreError::ReportNotReady(status));
        }
        match body {
            Some(body) => Ok(Arc::from(body)),
            None => {
                let message = error.as_deref().map(sql::failure).transpose()?.map(|e| e.message);
                Err(StoreError::NoReport(status, message))
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
        // The job's existence and the events in one statement: a LEFT JOIN keeps the job's row
        // when it has no events above `after`.
        let rows: Vec<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT e.seq, e.body FROM jobs j LEFT JOIN LATERAL \
             (SELECT seq, body FROM job_events WHERE job_id = j.id AND seq > $3 ORDER BY seq LIMIT $4) e ON true \
             WHERE j.id = $1 AND j.tenant = $2 ORDER BY e.seq",
        )
        .bind(id)
        .bind(tenant.name())
        .bind(int(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        rows.into_iter()
            .filter_map(|(seq, body)| Some((seq?, body?)))
            .map(|(seq, body)| sql::event(seq, &body))
            .collect()
    }

    async fn claim(&self, owner: &Owner, workers: usize, ttl: Duration) -> Result<Option<Claimed>, StoreError> {
        let mut tx = self.begin().await?;
        // Every active group (queued or running jobs) with how many jobs it runs.
        let groups: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT experiment_id, count(*) FILTER (WHERE status = 'running') FROM jobs \
             WHERE status IN ('queued', 'running') GROUP BY experiment_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        // The candidates: the oldest queued job of each group, oldest first. `pick_fair` over
        // these picks what it would over the whole queue (the first job of an eligible group
        // is its group's oldest), while only one row per group is locked. Rows another claimer
        // holds are skipped, not waited for.
        let mut candidates: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT seq, id, experiment_id FROM jobs WHERE seq IN \
             (SELECT DISTINCT ON (experiment_id) seq FROM jobs WHERE status = 'queued' ORDER BY experiment_id, seq) \
             AND status = 'queued' FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        if candidates.is_empty() {
            // Every group's oldest job is being claimed by someone else: take the oldest free one
            // (no worker idles while work waits).
            candidates = sqlx::query_as(
                "SELECT seq, id, experiment_id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1 \
                 FOR UPDATE SKIP LOCKED",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        }
        candidates.sort_by_key(|(seq, _, _)| *seq);
        if candidates.is_empty() {
            return roll_back(tx, Ok(None)).await;
        }
        let running: HashMap<Option<&str>, usize> = groups.iter().map(|(g, n)| (g.as_deref(), count(*n))).collect();
        let of: Vec<Option<&str>> = candidates.iter().map(|(_, _, g)| g.as_deref()).collect();
        let pick = pick_fair(workers, &of, &running);
        let Some((_, id, _)) = candidates.get(pick) else { return roll_back(tx, Ok(None)).await };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = {NOW}, lease_owner = $2, \
             lease_expires_at = {NOW} + $3 WHERE id = $1 AND status = 'queued' \
             RETURNING tenant, spec, probe_every, total_steps, experiment_id, attempt"
        );
        let row: Option<(String, Option<String>, i64, i64, Option<String>, i64)> = sqlx::query_as(&sql)
            .bind(id)
            .bind(owner.as_str())
            .bind(sql::millis(ttl))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some((tenant, spec, probe_every, total_steps, experiment, attempt_no)) = row else {
            return roll_back(tx, Ok(None)).await;
        };
        let spec = spec.ok_or_else(|| StoreError::Corrupt(format!("queued job {id} has no spec")))?;
        let claimed = Claimed {
            id: id.clone(),
            tenant: Tenant::new(&tenant),
            spec: sql::spec(&spec)?,
            probe_every: probe_every.max(1) as u64,
            total_steps: total_steps.max(0) as u64,
            experiment,
            attempt: attempt(attempt_no)?,
        };
        tx.commit().await.map_err(db)?;
        Ok(Some(claimed))
    }

    async fn progress(&self, fence: &Fence, progress: &[JobProgress]) -> Result<bool, StoreError> {
        let Some(last) = progress.last() else {
            let sql = format!("SELECT 1 FROM jobs WHERE {FENCED}");
            let held: Option<i32> = sqlx::query_scalar(&sql)
                .bind(&fence.id)
                .bind(i64::from(fence.attempt))
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            return Ok(held.is_some());
        };
        let mut tx = self.begin().await?;
        let n = i64::try_from(progress.len()).unwrap_or(i64::MAX);
        let sql = format!(
            "UPDATE jobs SET step = $3, total_steps = $4, loss = $5, last_seq = last_seq + $6 WHERE {FENCED} \
             RETURNING last_seq"
        );
        let last_seq: Option<i64> = sqlx::query_scalar(&sql)
            .bind(&fence.id)
            .bind(i64::from(fence.attempt))
            .bind(int(last.step))
            .bind(int(last.total_steps))
            .bind(last.loss.filter(|l| l.is_finite()))
            .bind(n)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some(last_seq) = last_seq else { return roll_back(tx, Ok(false)).await };
        let first = last_seq - n + 1;
        let seqs: Vec<i64> = (first..=last_seq).collect();
        let bodies =
            progress.iter().map(|p| sql::event_json(&JobEvent::Progress(*p))).collect::<Result<Vec<_>, _>>()?;
        sqlx::query("INSERT INTO job_events (job_id, seq, body) SELECT $1, s, b FROM UNNEST($2::bigint[], $3::text[]) AS t(s, b)")
            .bind(&fence.id)
            .bind(&seqs)
            .bind(&bodies)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn complete(&self, fence: &Fence, completion: Completion) -> Result<Option<Job>, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT 1 FROM jobs WHERE {FENCED} FOR UPDATE");
        let held: Option<i32> = sqlx::query_scalar(&sql)
            .bind(&fence.id)
            .bind(i64::from(fence.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if held.is_none() {
            return roll_back(tx, Ok(None)).await;
        }
        if let Some(report) = &completion.report {
            sqlx::query(
                "INSERT INTO job_reports (job_id, body) VALUES ($1, $2) \
                 ON CONFLICT (job_id) DO UPDATE SET body = excluded.body",
            )
            .bind(&fence.id)
            .bind(&report[..])
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        let job = set_terminal(&mut tx, &fence.id, &completion.finish, completion.run_result).await?;
        tx.commit().await.map_err(db)?;
        Ok(job)
    }

    async fn release(&self, fence: &Fence) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempt = attempt - 1, lease_owner = NULL, lease_expires_at = NULL, \
             started_at = NULL WHERE {FENCED}"
        );
        let done =
            sqlx::query(&sql).bind(&fence.id).bind(i64::from(fence.attempt)).execute(&self.pool).await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew(&self, owner: &Owner, held: &[String], ttl: Duration) -> Result<Vec<LeaseState>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE jobs SET lease_expires_at = {NOW} + $2 WHERE lease_owner = $1 AND status = 'running' \
             AND id = ANY($3) RETURNING id, attempt, cancel_requested_at IS NOT NULL"
        );
        let rows: Vec<(String, i64, bool)> = sqlx::query_as(&sql)
            .bind(owner.as_str())
            .bind(sql::millis(ttl))
            .bind(held)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|(id, a, cancel_requested)| Ok(LeaseState { id, attempt: attempt(a)?, cancel_requested }))
            .collect()
    }

    async fn rescue(&self, scope: RescueScope, max_attempts: u32) -> Result<Rescued, StoreError> {
        let mut tx = self.begin().await?;
        // Rows another rescuer (or a live worker's write) holds are skipped: each lost job is
        // taken by exactly one rescuer, and a job whose worker is writing is not lost.
        let sql = format!(
            "SELECT id, attempt, cancel_requested_at IS NOT NULL FROM jobs WHERE status = 'running' \
             AND ($1 OR lease_expires_at IS NULL OR lease_expires_at <= {NOW}) ORDER BY seq FOR UPDATE SKIP LOCKED"
        );
        let lost: Vec<(String, i64, bool)> =
            sqlx::query_as(&sql).bind(scope == RescueScope::AllRunning).fetch_all(&mut *tx).await.map_err(db)?;
        let mut rescued = Rescued::default();
        for (id, a, cancel_requested) in lost {
            let a = attempt(a)?;
            let finish = rescue_finish(cancel_requested, a, max_attempts);
            match finish {
                Some(finish) => rescued.ended.extend(set_terminal(&mut tx, &id, &finish, None).await?),
                None => rescued.requeued.push(id),
            }
        }
        if !rescued.requeued.is_empty() {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, started_at = NULL \
                 WHERE id = ANY($1) AND status = 'running'",
            )
            .bind(&rescued.requeued)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(rescued)
    }

    async fn expire_lease(&self, id: &str) -> Result<bool, StoreError> {
        let sql = format!("UPDATE jobs SET lease_expires_at = {NOW} WHERE id = $1 AND status = 'running'");
        let done = sqlx::query(&sql).bind(id).execute(&self.pool).await.map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_experiment(
        &self,
        experiment: NewExperiment,
        jobs: Vec<NewJob>,
    ) -> Result<ExperimentSnapshot, StoreError> {
        let mut tx = self.begin().await?;
        lock_queue(&mut tx).await?;
        self.check_room(&mut tx, &experiment.tenant, jobs.len()).await?;
        for job in &jobs {
            insert_job(&mut tx, job).await?;
        }
        let sql = format!(
            "INSERT INTO experiments (id, tenant, body, created_at) VALUES ($1, $2, $3, {NOW}) \
             RETURNING {EXPERIMENT_COLUMNS}"
        );
        let row: ExperimentRow = sqlx::query_as(&sql)
            .bind(&experiment.id)
            .bind(experiment.tenant.name())
            .bind(sql::experiment_json(&experiment)?)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let snap = snapshot(&mut tx, &row, &experiment.id).await?;
        tx.commit().await.map_err(db)?;
        Ok(snap)
    }

    async fn experiment(&self, tenant: &Tenant, id: &str) -> Result<Option<ExperimentSnapshot>, StoreError> {
        let mut tx = begin_snapshot(&self.pool).await?;
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = $1 AND tenant = $2");
        let row: Option<ExperimentRow> =
            sqlx::query_as(&sql).bind(id).bind(tenant.name()).fetch_optional(&mut *tx).await.map_err(db)?;
        let snap = match row {
            Some(row) => Some(snapshot(&mut tx, &row, id).await?),
            None => None,
        };
        tx.commit().await.map_err(db)?;
        Ok(snap)
    }

    async fn list_experiments(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ExperimentPage, StoreError> {
        let before = before(cursor)?;
        let mut tx = begin_snapshot(&self.pool).await?;
        let sql = format!(
            "SELECT {EXPERIMENT_COLUMNS}, id FROM experiments WHERE tenant = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
        );
        let rows: Vec<PgRow> = sqlx::query(&sql)
            .bind(tenant.name())
            .bind(before)
            .bind(page_limit(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut experiments = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            experiments.push(ExperimentRow::from_row(row).map_err(db)?);
            ids.push(row.try_get::<String, _>("id").map_err(db)?);
        }
        let mut next_cursor = None;
        if experiments.len() > limit {
            next_cursor = experiments.get(limit).map(|r| encode_cursor(r.seq.max(0) as u64 + 1));
            experiments.truncate(limit);
            ids.truncate(limit);
        }
        let experiments = snapshots(&mut tx, &experiments, &ids).await?;
        tx.commit().await.map_err(db)?;
        Ok(ExperimentPage { experiments, next_cursor })
    }

    async fn cancel_experiment(
        &self,
        tenant: &Tenant,
        id: &str,
        failure: JobFailure,
    ) -> Result<(ExperimentSnapshot, Vec<Job>, Vec<String>), StoreError> {
        let mut tx = self.begin().await?;
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM experiments WHERE id = $1 AND tenant = $2")
            .bind(id)
            .bind(tenant.name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return roll_back(tx, Err(StoreError::NotFound)).await;
        }
        // Lock order: the jobs, then the experiment (see the module doc).
        let jobs: Vec<(String, String)> =
            sqlx::query_as("SELECT id, status FROM jobs WHERE experiment_id = $1 ORDER BY seq FOR UPDATE")
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = $1 FOR UPDATE");
        let Some(row) = sqlx::query_as::<_, ExperimentRow>(&sql).bind(id).fetch_optional(&mut *tx).await.map_err(db)?
        else {
            return roll_back(tx, Err(StoreError::NotFound)).await;
        };
        let mut queued = Vec::new();
        let mut running = Vec::new();
        for (job, status) in jobs {
            match sql::status(&status)? {
                JobStatus::Queued => queued.push(job),
                JobStatus::Running => running.push(job),
                _ => {}
            }
        }
        if queued.is_empty() && running.is_empty() {
            // Every run ended: nothing to cancel, and no request to record.
            let snap = snapshot(&mut tx, &row, id).await?;
            tx.commit().await.map_err(db)?;
            return Ok((snap, Vec::new(), Vec::new()));
        }
        let sql =
            format!("UPDATE experiments SET cancel_requested_at = COALESCE(cancel_requested_at, {NOW}) WHERE id = $1");
        sqlx::query(&sql).bind(id).execute(&mut *tx).await.map_err(db)?;
        let mut cancelled = Vec::with_capacity(queued.len());
        for job in &queued {
            let finish = Finish { status: JobStatus::Cancelled, error: Some(failure.clone()) };
            cancelled.extend(set_terminal(&mut tx, job, &finish, None).await?);
        }
        if !running.is_empty() {
            let sql = format!(
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, {NOW}) WHERE id = ANY($1)"
            );
            sqlx::query(&sql).bind(&running).execute(&mut *tx).await.map_err(db)?;
            for job in &running {
                self.announce_cancel(&mut tx, job).await?;
            }
        }
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = $1");
        let row: ExperimentRow = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await.map_err(db)?;
        let snap = snapshot(&mut tx, &row, id).await?;
        tx.commit().await.map_err(db)?;
        Ok((snap, cancelled, running))
    }

    async fn put_experiment_result(&self, id: &str, result: Arc<ExperimentResult>) -> Result<bool, StoreError> {
        // `finished_at` is set in the transaction that ends the last run.
        let done = sqlx::query(
            "UPDATE experiments SET result = $2 WHERE id = $1 AND result IS NULL AND finished_at IS NOT NULL",
        )
        .bind(id)
        .bind(sql::result_json(&result)?)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM experiments WHERE id = $1 AND tenant = $2")
            .bind(id)
            .bind(tenant.name())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if known.is_none() {
            return roll_back(tx, Err(StoreError::NotFound)).await;
        }
        sqlx::query("SELECT 1 FROM jobs WHERE experiment_id = $1 ORDER BY seq FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let sql = format!("SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = $1 FOR UPDATE");
        let Some(row) = sqlx::query_as::<_, ExperimentRow>(&sql).bind(id).fetch_optional(&mut *tx).await.map_err(db)?
        else {
            return roll_back(tx, Err(StoreError::NotFound)).await;
        };
        let snap = snapshot(&mut tx, &row, id).await?;
        if !snap.record.all_ended() {
            return roll_back(tx, Err(StoreError::NotFinished(snap.status()))).await;
        }
        let ids: Vec<String> = snap.record.job_ids().cloned().collect();
        // Reports, events and runs go with their rows (ON DELETE CASCADE).
        sqlx::query("DELETE FROM jobs WHERE experiment_id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("DELETE FROM experiments WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(ids)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (queued, running, finished, events, experiments, report_bytes): (i64, i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM jobs WHERE status = 'queued'), \
                        (SELECT count(*) FROM jobs WHERE status = 'running'), \
                        (SELECT count(*) FROM jobs WHERE status NOT IN ('queued', 'running')), \
                        (SELECT count(*) FROM job_events), \
                        (SELECT count(*) FROM experiments), \
                        (SELECT COALESCE(sum(octet_length(body)), 0)::bigint FROM job_reports)",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let n = |v: i64| v.max(0) as u64;
        Ok(StoreStats {
            queued: n(queued),
            running: n(running),
            finished: n(finished),
            events: n(events),
            experiments: n(experiments),
            report_bytes: n(report_bytes),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    fn cancel_notifications(&self) -> Option<broadcast::Receiver<String>> {
        PostgresStore::cancel_notifications(self)
    }

    fn cancels_reach_runs_at_once(&self) -> bool {
        self.cancels.is_some()
    }

    async fn expire(&self, ttl: Duration) -> Result<Expired, StoreError> {
        let mut tx = self.begin().await?;
        let ttl = sql::millis(ttl);
        // Reports and events go with their jobs (ON DELETE CASCADE); an experiment keeps what
        // its expired runs left (`experiment_runs`).
        let sql = format!(
            "DELETE FROM jobs WHERE status NOT IN ('queued', 'running') AND finished_at IS NOT NULL \
             AND finished_at < {NOW} - $1"
        );
        let jobs = sqlx::query(&sql).bind(ttl).execute(&mut *tx).await.map_err(db)?.rows_affected();
        let sql = format!("DELETE FROM experiments WHERE finished_at IS NOT NULL AND finished_at < {NOW} - $1");
        let experiments = sqlx::query(&sql).bind(ttl).execute(&mut *tx).await.map_err(db)?.rows_affected();
        let sql = format!("DELETE FROM idempotency_keys WHERE created_at < {NOW} - $1");
        let keys = sqlx::query(&sql).bind(ttl).execute(&mut *tx).await.map_err(db)?.rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(Expired { jobs, experiments, keys })
    }
}

#[cfg(test)]
mod tests;
