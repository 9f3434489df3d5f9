-- Version 1: jobs, their scripts, and run history.
--
-- This runs inside the cluster's own schema (the migration sets search_path to it), so
-- no name here is qualified. Text the store sorts or compares (ids, names, run ids) uses
-- the "C" collation: byte order, like the other stores and the conformance suite, and
-- the same whatever the server's locale. Scripts live in their own table so job scans
-- (start-up, lists) never read script text.

CREATE TABLE jobs (
    id                  text COLLATE "C" PRIMARY KEY,
    name                text COLLATE "C" NOT NULL,
    description         text     NOT NULL,
    -- 0 timing, 1 delay.
    exec_type           smallint NOT NULL,
    cron                text     NOT NULL,
    exec_at_ms          bigint,
    timezone            text     NOT NULL,
    enabled             boolean  NOT NULL,
    time_limit_ms       bigint   NOT NULL CHECK (time_limit_ms >= 0),
    memory_limit_mb     bigint   NOT NULL CHECK (memory_limit_mb >= 0),
    overlap             text     NOT NULL,
    misfire             text     NOT NULL,
    misfire_window_s    bigint   NOT NULL CHECK (misfire_window_s BETWEEN 0 AND 4294967295),
    version             bigint   NOT NULL CHECK (version >= 0),
    created_at_ms       bigint   NOT NULL,
    updated_at_ms       bigint   NOT NULL,
    last_scheduled_ms   bigint,
    last_started_ms     bigint,
    last_outcome        text,
    -- Ordering key of the run `last_outcome` came from (its start, or its scheduled
    -- instant if it never started, then its run id), so a late record of an older run
    -- cannot overwrite the outcome of a newer one.
    last_outcome_at_ms  bigint,
    last_outcome_run_id text COLLATE "C"
);

-- The list orders, each with the id that breaks ties.
CREATE INDEX jobs_by_created ON jobs (created_at_ms, id);
CREATE INDEX jobs_by_name ON jobs (name, id);
CREATE INDEX jobs_by_updated ON jobs (updated_at_ms, id);
CREATE INDEX jobs_by_last_started ON jobs (last_started_ms, id);

CREATE TABLE scripts (
    job_id text COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    source text NOT NULL
);

CREATE TABLE runs (
    run_id            text COLLATE "C" PRIMARY KEY,
    job_id            text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- schedule / misfire / manual.
    trigger_kind      text    NOT NULL,
    scheduled_at_ms   bigint  NOT NULL,
    started_at_ms     bigint,
    ended_at_ms       bigint,
    outcome           text    NOT NULL,
    node              text    NOT NULL,
    error_message     text,
    error_stack       text,
    cpu_time_us       bigint CHECK (cpu_time_us >= 0),
    peak_memory_bytes bigint CHECK (peak_memory_bytes >= 0),
    -- JSON array of [seq, level, text, at_ms]. Text rather than jsonb: jsonb cannot hold
    -- a NUL character, and console output may contain one.
    log               text    NOT NULL,
    log_truncated     boolean NOT NULL
);

-- A job's history newest first; also serves the ON DELETE CASCADE from jobs.
CREATE INDEX runs_by_job ON runs (job_id, scheduled_at_ms DESC, run_id DESC);
-- The dashboard's recent runs and pruning by age.
CREATE INDEX runs_by_scheduled ON runs (scheduled_at_ms);
