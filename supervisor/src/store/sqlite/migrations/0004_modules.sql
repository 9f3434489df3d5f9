-- Version 4 (issue 7): shared modules.
--
-- `modules` holds each module's current version number; `module_versions` every saved
-- version, immutable once written (a rollback saves an old source as a new version).
-- Names are [A-Za-z0-9_][A-Za-z0-9._/-]* without '@' (the version pin separator).

CREATE TABLE modules (
    name          TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE module_versions (
    name          TEXT    NOT NULL REFERENCES modules (name) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    note          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) STRICT, WITHOUT ROWID;
