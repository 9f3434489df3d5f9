-- Version 5 (issue 7): the audit log of changes made through the API.
--
-- One row per change: when (`at_ms`, the node's clock), who (`actor`, the API token's
-- name), where (`node`), what (`action`, e.g. `job.update`), to what (`target`: a job
-- id, a secret or module name) and how (`detail`, a small JSON object that never holds
-- a script's text or a secret's value). `id` is unique (a UUID v7 made by the node);
-- lists are newest first by (`at_ms`, `id`), which is also the keyset cursor. Rows are
-- independent of the jobs they name: the log outlives a deleted job.
--
-- (Version 4 is the shared modules' migration; this file keeps its number 0005 in
-- every store.)

CREATE TABLE audit (
    id     TEXT    PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    node   TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    detail TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX audit_by_time ON audit (at_ms, id);
CREATE INDEX audit_by_target ON audit (target, at_ms, id);
