-- Version 2 (issue 6): the jobs' new policies (concurrency, catch-up, retries, jitter,
-- pause), the number and note of their current script version, every saved version of
-- their scripts, and per run its attempt, script version and suppressed duplicates.
--
-- Old rows read as the defaults the model gives a new job (constant defaults: no table
-- rewrite). The overlap and misfire columns gained values (allow, queue_one, replace;
-- skip, run_all): they are plain text without a CHECK, and the reader refuses what it
-- does not know. Like version 1, this runs with search_path set to the cluster schema.

ALTER TABLE jobs
    ADD COLUMN max_concurrent       bigint NOT NULL DEFAULT 1
        CHECK (max_concurrent BETWEEN 0 AND 4294967295),
    ADD COLUMN max_catch_up         bigint NOT NULL DEFAULT 10
        CHECK (max_catch_up BETWEEN 0 AND 4294967295),
    ADD COLUMN retry_max_retries    bigint NOT NULL DEFAULT 0
        CHECK (retry_max_retries BETWEEN 0 AND 4294967295),
    ADD COLUMN retry_backoff_ms     bigint NOT NULL DEFAULT 1000 CHECK (retry_backoff_ms >= 0),
    ADD COLUMN retry_max_backoff_ms bigint NOT NULL DEFAULT 60000
        CHECK (retry_max_backoff_ms >= 0),
    ADD COLUMN jitter_s             bigint NOT NULL DEFAULT 0
        CHECK (jitter_s BETWEEN 0 AND 4294967295),
    ADD COLUMN paused_until_ms      bigint,
    ADD COLUMN script_version       bigint NOT NULL DEFAULT 1 CHECK (script_version >= 0),
    ADD COLUMN script_note          text   NOT NULL DEFAULT '';

ALTER TABLE runs
    ADD COLUMN attempt        bigint NOT NULL DEFAULT 1 CHECK (attempt BETWEEN 0 AND 4294967295),
    ADD COLUMN script_version bigint CHECK (script_version >= 0),
    ADD COLUMN duplicates     bigint NOT NULL DEFAULT 0
        CHECK (duplicates BETWEEN 0 AND 4294967295);

-- Immutable: a version is inserted once, in the statement that saves its script, and
-- goes only with its job. The current script stays in `scripts` too, so loading it for
-- a run never looks here.
CREATE TABLE script_versions (
    job_id        text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version       bigint NOT NULL CHECK (version >= 0),
    source        text   NOT NULL,
    note          text   NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (job_id, version)
);

-- Every job has its current script as a version. When that script was saved is not
-- known; the job's last change is the closest instant that is.
INSERT INTO script_versions (job_id, version, source, note, created_at_ms)
SELECT j.id, j.script_version, s.source, j.script_note, j.updated_at_ms
FROM jobs AS j JOIN scripts AS s ON s.job_id = j.id;
