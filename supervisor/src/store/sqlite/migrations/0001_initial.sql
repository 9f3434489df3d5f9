-- Version 1: jobs, their scripts, and run history.
--
-- Tables are STRICT so a bug that writes text into an integer column fails loudly
-- instead of being stored. Scripts live in their own table so job scans (start-up,
-- lists) never page through script text.

CREATE TABLE jobs (
    id                  TEXT    NOT NULL UNIQUE,
    name                TEXT    NOT NULL,
    description         TEXT    NOT NULL,
    -- 0 timing, 1 delay.
    exec_type           INTEGER NOT NULL,
    cron                TEXT    NOT NULL,
    exec_at_ms          INTEGER,
    timezone            TEXT    NOT NULL,
    enabled             INTEGER NOT NULL,
    time_limit_ms       INTEGER NOT NULL,
    memory_limit_mb     INTEGER NOT NULL,
    overlap             TEXT    NOT NULL,
    misfire             TEXT    NOT NULL,
    misfire_window_s    INTEGER NOT NULL,
    version             INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    last_scheduled_ms   INTEGER,
    last_started_ms     INTEGER,
    last_outcome        TEXT,
    -- Ordering key of the run `last_outcome` came from (its start, or its scheduled
    -- instant if it never started, then its run id), so a late record of an older
    -- run cannot overwrite the outcome of a newer one.
    last_outcome_at_ms  INTEGER,
    last_outcome_run_id TEXT
) STRICT;

-- The default list order, and the one the UI pages through.
CREATE INDEX jobs_by_created ON jobs (created_at_ms, id);
CREATE INDEX jobs_by_name ON jobs (name, id);
-- Makes count_jobs a covering-index scan.
CREATE INDEX jobs_by_enabled ON jobs (enabled);

CREATE TABLE scripts (
    job_id TEXT NOT NULL PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    source TEXT NOT NULL
) STRICT;

CREATE TABLE runs (
    run_id            TEXT    NOT NULL PRIMARY KEY,
    job_id            TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- schedule / misfire / manual.
    trigger_kind      TEXT    NOT NULL,
    scheduled_at_ms   INTEGER NOT NULL,
    started_at_ms     INTEGER,
    ended_at_ms       INTEGER,
    outcome           TEXT    NOT NULL,
    node              TEXT    NOT NULL,
    error_message     TEXT,
    error_stack       TEXT,
    cpu_time_us       INTEGER,
    peak_memory_bytes INTEGER,
    -- JSON array of [seq, level, text, at_ms].
    log               TEXT    NOT NULL,
    log_truncated     INTEGER NOT NULL
) STRICT;

-- A job's history newest first; also serves the ON DELETE CASCADE from jobs.
CREATE INDEX runs_by_job ON runs (job_id, scheduled_at_ms DESC, run_id DESC);
-- The dashboard's recent runs and pruning by age.
CREATE INDEX runs_by_scheduled ON runs (scheduled_at_ms);
