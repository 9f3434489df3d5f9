-- Version 3 (issue 7): secrets and per-job key-value state. Like version 1, this runs
-- with search_path set to the cluster schema.
--
-- `jobs.secrets` holds the names of the secrets granted to the job, comma-separated
-- (names are [A-Z_][A-Z0-9_]*, so a comma never occurs in one); '' is no grant.
-- `secrets.sealed` is nonce || AES-256-GCM ciphertext+tag of the value (the name is the
-- associated data); the plaintext is never stored. A job's kv entries go with the job.

ALTER TABLE jobs ADD COLUMN secrets text NOT NULL DEFAULT '';

CREATE TABLE secrets (
    name          text COLLATE "C" PRIMARY KEY,
    sealed        bytea  NOT NULL,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

CREATE TABLE job_kv (
    job_id     text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key        text NOT NULL,
    value_json text NOT NULL,
    PRIMARY KEY (job_id, key)
);
