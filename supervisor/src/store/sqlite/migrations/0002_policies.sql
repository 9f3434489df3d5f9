-- Version 2 (issue 6): the jobs' new policies (concurrency, catch-up, retries, jitter,
-- pause), the number and note of their current script version, every saved version of
-- their scripts, and per run its attempt, script version and suppressed duplicates.
--
-- Old rows read as the defaults the model gives a new job. The overlap and misfire
-- columns gained values (allow, queue_one, replace; skip, run_all): they are plain text
-- without a CHECK, and the reader refuses what it does not know.

ALTER TABLE jobs ADD COLUMN max_concurrent       INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN max_catch_up         INTEGER NOT NULL DEFAULT 10;
ALTER TABLE jobs ADD COLUMN retry_max_retries    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retry_backoff_ms     INTEGER NOT NULL DEFAULT 1000;
ALTER TABLE jobs ADD COLUMN retry_max_backoff_ms INTEGER NOT NULL DEFAULT 60000;
ALTER TABLE jobs ADD COLUMN jitter_s             INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN paused_until_ms      INTEGER;
ALTER TABLE jobs ADD COLUMN script_version       INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN script_note          TEXT    NOT NULL DEFAULT '';

ALTER TABLE runs ADD COLUMN attempt        INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN script_version INTEGER;
ALTER TABLE runs ADD COLUMN duplicates     INTEGER NOT NULL DEFAULT 0;

-- Immutable: a version is inserted once, in the transaction that saves its script, and
-- goes only with its job. The current script stays in `scripts` too, so loading it for
-- a run never looks here.
CREATE TABLE script_versions (
    job_id        TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    note          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, version)
) STRICT;

-- Every job has its current script as a version. When that script was saved is not
-- known; the job's last change is the closest instant that is.
INSERT INTO script_versions (job_id, version, source, note, created_at_ms)
SELECT j.id, j.script_version, s.source, j.script_note, j.updated_at_ms
FROM jobs AS j JOIN scripts AS s ON s.job_id = j.id;
