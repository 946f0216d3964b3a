-- gradscope's job store on SQLite (the embedded default). Times are Unix milliseconds from
-- the store's clock; JSON columns hold the job layer's serde types (see src/jobs/store/sql.rs).

CREATE TABLE jobs (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT, -- creation order: listing, cursors, the queue
    id                  TEXT    NOT NULL UNIQUE,
    tenant              TEXT    NOT NULL,
    name                TEXT,
    spec                TEXT,                              -- the spec's JSON; NULL once the job ended
    probe_every         INTEGER NOT NULL,
    total_steps         INTEGER NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    step                INTEGER NOT NULL DEFAULT 0,
    loss                REAL,
    error               TEXT,                              -- JobFailure JSON
    cancel_requested_at INTEGER,
    experiment_id       TEXT,
    attempt             INTEGER NOT NULL DEFAULT 0,        -- claims so far (a release gives one back)
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    last_seq            INTEGER NOT NULL DEFAULT 0          -- the number of the job's last event
);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_tenant ON jobs (tenant, seq);
CREATE INDEX jobs_by_experiment ON jobs (experiment_id) WHERE experiment_id IS NOT NULL;
CREATE INDEX jobs_by_lease ON jobs (lease_owner) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_reports (
    job_id TEXT NOT NULL PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    body   BLOB NOT NULL
);

CREATE TABLE job_events (
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    body   TEXT    NOT NULL,                               -- JobEvent JSON
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL,
    job_id      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE experiments (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT    NOT NULL UNIQUE,
    tenant              TEXT    NOT NULL,
    body                TEXT    NOT NULL,                  -- NewExperiment JSON (variants, job ids, axes)
    created_at          INTEGER NOT NULL,
    finished_at         INTEGER,
    cancel_requested_at INTEGER,
    result              TEXT                               -- ExperimentResult JSON, once every run ended
);
CREATE INDEX experiments_by_tenant ON experiments (tenant, seq);

-- What each ended run of an experiment left (kept with the experiment, so the comparison
-- survives the expiry of its jobs).
CREATE TABLE experiment_runs (
    experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    job_id        TEXT NOT NULL,
    body          TEXT NOT NULL,                           -- RunSlot JSON
    PRIMARY KEY (experiment_id, job_id)
) WITHOUT ROWID;
