-- Version 6: fewer B-trees written per job create (docs/benchmarks.md, "creates").
--
-- A create wrote nine B-trees and the script text twice: the jobs table, its id index
-- and its three indexes; `scripts` and its key index; `script_versions` and its key
-- index. Now a job's current script is the row of `script_versions` whose version is
-- `jobs.script_version`, which every create and script save already wrote, so
-- `scripts` goes; and `script_versions` is clustered on its key (WITHOUT ROWID), one
-- B-tree instead of a table and an index. A create writes six B-trees.

CREATE TABLE script_versions_v6 (
    job_id        TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    note          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, version)
) STRICT, WITHOUT ROWID;

INSERT INTO script_versions_v6 (job_id, version, source, note, created_at_ms)
SELECT job_id, version, source, note, created_at_ms FROM script_versions
WHERE job_id IN (SELECT id FROM jobs);

-- `scripts` was what a run loaded: should a job's current version be missing or
-- differ from it, `scripts` wins.
INSERT INTO script_versions_v6 (job_id, version, source, note, created_at_ms)
SELECT j.id, j.script_version, s.source, j.script_note, j.updated_at_ms
FROM jobs AS j JOIN scripts AS s ON s.job_id = j.id WHERE true
ON CONFLICT (job_id, version) DO UPDATE SET source = excluded.source;

DROP TABLE script_versions;
ALTER TABLE script_versions_v6 RENAME TO script_versions;
DROP TABLE scripts;
