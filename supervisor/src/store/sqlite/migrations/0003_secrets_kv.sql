-- Version 3 (issue 7): secrets and per-job key-value state.
--
-- `jobs.secrets` holds the names of the secrets granted to the job, comma-separated
-- (names are [A-Z_][A-Z0-9_]*, so a comma never occurs in one); '' is no grant.
-- `secrets.sealed` is nonce || AES-256-GCM ciphertext+tag of the value (the name is the
-- associated data); the plaintext is never stored. A job's kv entries go with the job.

ALTER TABLE jobs ADD COLUMN secrets TEXT NOT NULL DEFAULT '';

CREATE TABLE secrets (
    name          TEXT    PRIMARY KEY,
    sealed        BLOB    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE job_kv (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
) STRICT, WITHOUT ROWID;
