-- gradscope's job store on PostgreSQL (a cluster of replicas on one database). Times are Unix milliseconds from
-- the store's clock; JSON columns hold the job layer's serde types (see src/jobs/store/sql.rs).

CREATE TABLE jobs (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- creation order: listing, cursors, the queue
    id                  TEXT    NOT NULL UNIQUE,
    tenant              TEXT    NOT NULL,
    name                TEXT,
    spec                TEXT,                              -- the spec's JSON; NULL once the job ended
    probe_every         BIGINT NOT NULL,
    total_steps         BIGINT NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at          BIGINT NOT NULL,
    started_at          BIGINT,
    finished_at         BIGINT,
    step                BIGINT NOT NULL DEFAULT 0,
    loss                DOUBLE PRECISION,
    error               TEXT,                              -- JobFailure JSON
    cancel_requested_at BIGINT,
    experiment_id       TEXT,
    attempt             BIGINT NOT NULL DEFAULT 0,        -- claims so far (a release gives one back)
    lease_owner         TEXT,
    lease_expires_at    BIGINT,
    last_seq            BIGINT NOT NULL DEFAULT 0          -- the number of the job's last event
);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_tenant ON jobs (tenant, seq);
CREATE INDEX jobs_by_experiment ON jobs (experiment_id) WHERE experiment_id IS NOT NULL;
CREATE INDEX jobs_by_lease ON jobs (lease_owner) WHERE status = 'running';
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_reports (
    job_id TEXT NOT NULL PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    body   BYTEA NOT NULL
);

CREATE TABLE job_events (
    job_id TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    body   TEXT    NOT NULL,                               -- JobEvent JSON
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE idempotency_keys (
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint BYTEA    NOT NULL,
    job_id      TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE experiments (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                  TEXT    NOT NULL UNIQUE,
    tenant              TEXT    NOT NULL,
    body                TEXT    NOT NULL,                  -- NewExperiment JSON (variants, job ids, axes)
    created_at          BIGINT NOT NULL,
    finished_at         BIGINT,
    cancel_requested_at BIGINT,
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
);
