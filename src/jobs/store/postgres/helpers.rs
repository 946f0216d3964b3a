//! The PostgreSQL store's statements shared by its methods: terminal transitions, run records,
//! key replays, inserts, snapshots, and small conversions.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{FromRow, Postgres, Row, Transaction};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::analysis::experiment::RunResult;
use crate::jobs::experiments::model::{ExperimentSnapshot, RunSlot};
use crate::jobs::store::batch::{CreateAnswer, CreateRequest};
use crate::jobs::store::sql::{self, db, ExperimentRow, JobRow, JOB_COLUMNS};
use crate::jobs::store::{admit, decode_cursor, Created, Finish, IdempotencyKey, JobEvent, NewJob, StoreError};
use crate::jobs::{Job, Tenant};

/// The store's clock: Unix milliseconds from the database (the same for every replica).
/// `clock_timestamp()`, not `now()`: a time read late in a transaction is not its start time.
pub(super) const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// How long a call waits for a pooled connection before the store reports `Unavailable` (the
/// API answers 503 at once rather than hanging while the database is away).
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The channel cancel requests are announced on (payload: the job id).
pub const CANCEL_CHANNEL: &str = "gradscope_cancel";

/// A count or id-like number for an `i64` column.
pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A count read back from the database.
pub(super) fn count(v: i64) -> usize {
    usize::try_from(v.max(0)).unwrap_or(usize::MAX)
}

/// An attempt number read back from the database.
pub(super) fn attempt(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("attempt {v} out of range")))
}

/// `(status, error)` of a [`Finish`] as columns.
pub(super) fn finish_columns(finish: &Finish) -> Result<(&'static str, Option<String>), StoreError> {
    Ok((finish.status.name(), finish.error.as_ref().map(sql::failure_json).transpose()?))
}

/// The `WHERE` of every worker write.
pub(super) const FENCED: &str = "id = $1 AND attempt = $2 AND status = 'running'";

/// Moves queued or running job `id` to `finish`'s status and appends its final `status` event;
/// when it is a run of an experiment, records the run (`experiment_runs`) and finishes the
/// experiment if this was its last run. `None`: the job is gone or already terminal. The
/// caller holds the job's row lock or takes it here (the `UPDATE`); the experiment's row is
/// locked after it (see the module doc's lock order).
pub(super) async fn set_terminal(
    tx: &mut Transaction<'static, Postgres>,
    id: &str,
    finish: &Finish,
    run_result: Option<RunResult>,
) -> Result<Option<Job>, StoreError> {
    let (status, error) = finish_columns(finish)?;
    let sql = format!(
        "UPDATE jobs SET status = $2, error = $3, finished_at = {NOW}, spec = NULL, lease_owner = NULL, \
         lease_expires_at = NULL, last_seq = last_seq + 1 \
         WHERE id = $1 AND status IN ('queued', 'running') RETURNING {JOB_COLUMNS}, last_seq"
    );
    let Some(row) = sqlx::query(&sql).bind(id).bind(status).bind(error).fetch_optional(&mut **tx).await.map_err(db)?
    else {
        return Ok(None);
    };
    let (job_row, seq) = job_and_seq(&row)?;
    let job = job_row.job()?;
    sqlx::query("INSERT INTO job_events (job_id, seq, body) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(seq)
        .bind(sql::event_json(&JobEvent::Status(Box::new(job.clone())))?)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if let Some(experiment) = &job_row.experiment_id {
        run_ended(tx, experiment, &job, run_result).await?;
    }
    Ok(Some(job))
}

/// A job row with its `last_seq`.
pub(super) fn job_and_seq(row: &PgRow) -> Result<(JobRow, i64), StoreError> {
    Ok((JobRow::from_row(row).map_err(db)?, row.try_get("last_seq").map_err(db)?))
}

/// Records how run `job` of `experiment` ended and finishes the experiment when no run of it is
/// queued or running any more. The experiment's row lock serialises this check between
/// concurrent completions (each statement after it sees the other's committed status).
pub(super) async fn run_ended(
    tx: &mut Transaction<'static, Postgres>,
    experiment: &str,
    job: &Job,
    result: Option<RunResult>,
) -> Result<(), StoreError> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM experiments WHERE id = $1 FOR UPDATE")
        .bind(experiment)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    if exists.is_none() {
        return Ok(());
    }
    let slot = RunSlot { status: job.status, error: job.error.clone(), result };
    sqlx::query(
        "INSERT INTO experiment_runs (experiment_id, job_id, body) VALUES ($1, $2, $3) \
         ON CONFLICT (experiment_id, job_id) DO NOTHING",
    )
    .bind(experiment)
    .bind(&job.id)
    .bind(sql::run_slot_json(&slot)?)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let sql = format!(
        "UPDATE experiments SET finished_at = {NOW} WHERE id = $1 AND finished_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM jobs WHERE experiment_id = $1 AND status IN ('queued', 'running'))"
    );
    sqlx::query(&sql).bind(experiment).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

/// What key `key` of `tenant` answers: `Replay`/`Mismatch` while its job is kept, `None` when
/// unused or its job is gone.
pub(super) async fn replay(
    conn: &mut sqlx::PgConnection,
    tenant: &Tenant,
    key: &IdempotencyKey,
) -> Result<Option<Created>, StoreError> {
    let columns = prefixed_job_columns();
    let sql = format!(
        "SELECT k.fingerprint, {columns} FROM idempotency_keys k JOIN jobs j ON j.id = k.job_id AND j.tenant = k.tenant \
         WHERE k.tenant = $1 AND k.key = $2"
    );
    let Some(row) =
        sqlx::query(&sql).bind(tenant.name()).bind(&key.key).fetch_optional(&mut *conn).await.map_err(db)?
    else {
        return Ok(None);
    };
    let fingerprint: Vec<u8> = row.try_get("fingerprint").map_err(db)?;
    if fingerprint.as_slice() != key.fingerprint.as_slice() {
        return Ok(Some(Created::Mismatch));
    }
    Ok(Some(Created::Replay(JobRow::from_row(&row).map_err(db)?.job()?)))
}

/// The first key of the advisory lock submissions count the queue under; the second is the
/// hash of the schema, so stores in different schemas of one database do not contend.
const QUEUE_LOCK: i32 = 0x6773_6371; // "gscq"

/// Takes the queue's advisory lock for the rest of `tx` (serialises count + insert).
pub(super) async fn lock_queue(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(QUEUE_LOCK)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Writes a batch of submissions in one transaction under the queue's lock (see `batch.rs`):
/// the queue is counted once per batch (and each tenant's share once, when bounded), then
/// counted on as the batch adds to it; a refusal is its submission's answer, a database
/// failure fails the batch.
pub(super) async fn create_batch(
    pool: &PgPool,
    capacity: usize,
    per_tenant: usize,
    batch: Vec<CreateRequest>,
) -> Result<Vec<CreateAnswer>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    // One batch at a time per schema (across replicas): the counts below stay true until
    // commit, and two submissions with one new key cannot both insert it.
    lock_queue(&mut tx).await?;
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'queued'")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let mut queued = count(queued);
    let mut of_tenant: HashMap<String, usize> = HashMap::new();
    let mut answers = Vec::with_capacity(batch.len());
    for (job, key) in batch {
        if let Some(k) = &key {
            if let Some(answer) = replay(&mut tx, &job.tenant, k).await? {
                answers.push(Ok(answer));
                continue;
            }
        }
        let mine = match of_tenant.get(job.tenant.name()) {
            Some(n) => *n,
            None if per_tenant == usize::MAX => 0,
            None => {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'queued' AND tenant = $1")
                    .bind(job.tenant.name())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                count(n)
            }
        };
        if let Err(refused) = admit(capacity, per_tenant, queued, mine, 1) {
            of_tenant.insert(job.tenant.name().to_owned(), mine);
            answers.push(Err(refused));
            continue;
        }
        let created = insert_job(&mut tx, &job).await?;
        queued += 1;
        of_tenant.insert(job.tenant.name().to_owned(), mine + 1);
        if let Some(k) = &key {
            // A key whose job is gone is taken over by the new job.
            let sql = format!(
                "INSERT INTO idempotency_keys (tenant, key, fingerprint, job_id, created_at) \
                 VALUES ($1, $2, $3, $4, {NOW}) ON CONFLICT (tenant, key) DO UPDATE SET \
                 fingerprint = excluded.fingerprint, job_id = excluded.job_id, created_at = excluded.created_at"
            );
            sqlx::query(&sql)
                .bind(job.tenant.name())
                .bind(&k.key)
                .bind(k.fingerprint.as_slice())
                .bind(&job.id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        answers.push(Ok(Created::New(created)));
    }
    tx.commit().await.map_err(db)?;
    Ok(answers)
}

/// [`JOB_COLUMNS`] with the `j.` prefix, for joins.
pub(super) fn prefixed_job_columns() -> String {
    JOB_COLUMNS.split(',').map(|c| format!("j.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

/// Inserts queued job `job` (the caller checked the room).
pub(super) async fn insert_job(tx: &mut Transaction<'static, Postgres>, job: &NewJob) -> Result<Job, StoreError> {
    let sql = format!(
        "INSERT INTO jobs (id, tenant, name, spec, probe_every, total_steps, status, created_at, experiment_id) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', {NOW}, $7) RETURNING {JOB_COLUMNS}"
    );
    let row: JobRow = sqlx::query_as(&sql)
        .bind(&job.id)
        .bind(job.tenant.name())
        .bind(job.name.as_deref())
        .bind(sql::spec_json(&job.spec)?)
        .bind(int(job.probe_every.max(1)))
        .bind(int(job.total_steps))
        .bind(job.experiment.as_deref())
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    row.job()
}

/// The snapshot of experiment `row` as `conn` sees it now.
pub(super) async fn snapshot(
    conn: &mut sqlx::PgConnection,
    row: &ExperimentRow,
    id: &str,
) -> Result<ExperimentSnapshot, StoreError> {
    let mut all = snapshots(conn, std::slice::from_ref(row), &[id.to_owned()]).await?;
    all.pop().ok_or_else(|| StoreError::Corrupt("an experiment vanished while read".into()))
}

/// The snapshots of experiments `rows` (ids `ids`, in the same order), their runs and jobs read
/// in two statements.
pub(super) async fn snapshots(
    conn: &mut sqlx::PgConnection,
    rows: &[ExperimentRow],
    ids: &[String],
) -> Result<Vec<ExperimentSnapshot>, StoreError> {
    let runs: Vec<(String, String, String)> =
        sqlx::query_as("SELECT experiment_id, job_id, body FROM experiment_runs WHERE experiment_id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    let jobs: Vec<(String, String, String, i64, i64)> =
        sqlx::query_as("SELECT experiment_id, id, status, step, total_steps FROM jobs WHERE experiment_id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
    let mut runs_of: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for (e, job, body) in runs {
        let key = ids.iter().find(|i| **i == e).map(String::as_str).unwrap_or_default();
        runs_of.entry(key).or_default().push((job, body));
    }
    let mut jobs_of: HashMap<&str, Vec<(String, String, i64, i64)>> = HashMap::new();
    for (e, id, status, step, total) in jobs {
        let key = ids.iter().find(|i| **i == e).map(String::as_str).unwrap_or_default();
        jobs_of.entry(key).or_default().push((id, status, step, total));
    }
    rows.iter()
        .zip(ids)
        .map(|(row, id)| {
            row.snapshot(
                runs_of.get(id.as_str()).map(Vec::as_slice).unwrap_or_default(),
                jobs_of.get(id.as_str()).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect()
}

/// Ends `tx` without committing and passes `out` on. Every return that does not commit goes
/// through here: dropping a `Transaction` only queues its ROLLBACK, which the pool sends when
/// it next pings the connection (a background task), and until then the row locks it took stay
/// held — a claim meanwhile skips those rows (`SKIP LOCKED`) and finds no work.
pub(super) async fn roll_back<T>(
    tx: Transaction<'static, Postgres>,
    out: Result<T, StoreError>,
) -> Result<T, StoreError> {
    tx.rollback().await.map_err(db)?;
    out
}

/// Starts a read-only transaction that sees one snapshot for all its statements (a listing of
/// experiments and their jobs must not mix two moments).
pub(super) async fn begin_snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await.map_err(db)?;
    Ok(tx)
}

/// The cursor bound: rows with `seq` below it.
pub(super) fn before(cursor: Option<&str>) -> Result<i64, StoreError> {
    match cursor {
        Some(c) => decode_cursor(c).map(int).ok_or(StoreError::InvalidCursor),
        None => Ok(i64::MAX),
    }
}

/// `limit + 1` (one more row tells whether another page follows) as a SQL `LIMIT`.
pub(super) fn page_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1).saturating_add(1)
}

/// Creates `schema` unless it exists. Two replicas creating it at once may race (`IF NOT
/// EXISTS` is not atomic in PostgreSQL): the loser finds it made and carries on.
pub(super) async fn create_schema(options: &PgConnectOptions, schema: &str) -> Result<(), StoreError> {
    use sqlx::Connection;
    let mut conn = sqlx::postgres::PgConnection::connect_with(options).await.map_err(db)?;
    let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut conn).await;
    if let Err(e) = created {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .map_err(db)?;
        if !exists {
            return Err(db(e));
        }
    }
    conn.close().await.map_err(db)
}

/// Starts the task that forwards `gradscope_cancel` notifications to `tx`. Its connection is
/// its own (a pool of one without lifetime limits), not one of the store's. On a lost
/// connection `PgListener` reconnects and listens again; while the database is away the task
/// retries every second.
pub(super) async fn listen(
    options: PgConnectOptions,
    tx: broadcast::Sender<String>,
) -> Result<JoinHandle<()>, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool).await.map_err(db)?;
    listener.listen(CANCEL_CHANNEL).await.map_err(db)?;
    Ok(tokio::spawn(async move {
        let mut failing = false;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    failing = false;
                    // No receiver is not an error: nobody runs jobs here yet.
                    let _ = tx.send(n.payload().to_owned());
                }
                Ok(None) => {
                    tracing::info!("the cancel listener's connection was lost and re-established");
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "the cancel listener lost the database; retrying every second");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}
