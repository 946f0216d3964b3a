-- Counts of the live queue, kept by triggers in the same transaction as every change of a job's
-- status, so that admission (is there room?) and the fair-share claim (which groups are active,
-- how many of each run?) read a few rows instead of counting the queue on every request.
--
-- queue_counts: queued jobs per tenant (an experiment's runs count to its tenant).
-- group_counts: queued and running jobs per group ('' for single jobs, else the experiment id);
-- a row whose counts reach zero is deleted.

CREATE TABLE queue_counts (
    tenant TEXT    NOT NULL PRIMARY KEY,
    queued INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_counts (
    grp     TEXT    NOT NULL PRIMARY KEY,
    queued  INTEGER NOT NULL,
    running INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO queue_counts (tenant, queued)
    SELECT tenant, count(*) FROM jobs WHERE status = 'queued' GROUP BY tenant;
INSERT INTO group_counts (grp, queued, running)
    SELECT coalesce(experiment_id, ''), sum(status = 'queued'), sum(status = 'running')
    FROM jobs WHERE status IN ('queued', 'running') GROUP BY coalesce(experiment_id, '');

CREATE TRIGGER jobs_counts_insert AFTER INSERT ON jobs
WHEN new.status IN ('queued', 'running')
BEGIN
    INSERT INTO queue_counts (tenant, queued) VALUES (new.tenant, new.status = 'queued')
        ON CONFLICT (tenant) DO UPDATE SET queued = queued + excluded.queued;
    INSERT INTO group_counts (grp, queued, running)
        VALUES (coalesce(new.experiment_id, ''), new.status = 'queued', new.status = 'running')
        ON CONFLICT (grp) DO UPDATE SET queued = queued + excluded.queued, running = running + excluded.running;
END;

CREATE TRIGGER jobs_counts_update AFTER UPDATE OF status ON jobs
WHEN old.status IS NOT new.status
    AND (old.status IN ('queued', 'running') OR new.status IN ('queued', 'running'))
BEGIN
    INSERT INTO queue_counts (tenant, queued)
        VALUES (new.tenant, (new.status = 'queued') - (old.status = 'queued'))
        ON CONFLICT (tenant) DO UPDATE SET queued = queued + excluded.queued;
    INSERT INTO group_counts (grp, queued, running)
        VALUES (coalesce(new.experiment_id, ''), (new.status = 'queued') - (old.status = 'queued'),
                (new.status = 'running') - (old.status = 'running'))
        ON CONFLICT (grp) DO UPDATE SET queued = queued + excluded.queued, running = running + excluded.running;
    DELETE FROM queue_counts WHERE tenant = new.tenant AND queued = 0;
    DELETE FROM group_counts WHERE grp = coalesce(new.experiment_id, '') AND queued = 0 AND running = 0;
END;

CREATE TRIGGER jobs_counts_delete AFTER DELETE ON jobs
WHEN old.status IN ('queued', 'running')
BEGIN
    UPDATE queue_counts SET queued = queued - (old.status = 'queued') WHERE tenant = old.tenant;
    UPDATE group_counts SET queued = queued - (old.status = 'queued'), running = running - (old.status = 'running')
        WHERE grp = coalesce(old.experiment_id, '');
    DELETE FROM queue_counts WHERE tenant = old.tenant AND queued = 0;
    DELETE FROM group_counts WHERE grp = coalesce(old.experiment_id, '') AND queued = 0 AND running = 0;
END;
