-- Version 4 (issue 7): shared modules. Like version 1, this runs with search_path set
-- to the cluster schema.
--
-- `modules` holds each module's current version number; `module_versions` every saved
-- version, immutable once written (a rollback saves an old source as a new version).
-- A save increments `modules.version` under the row's lock, so two nodes saving at once
-- get two different versions.

CREATE TABLE modules (
    name          text COLLATE "C" PRIMARY KEY,
    version       bigint NOT NULL,
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

CREATE TABLE module_versions (
    name          text COLLATE "C" NOT NULL REFERENCES modules (name) ON DELETE CASCADE,
    version       bigint NOT NULL,
    source        text   NOT NULL,
    note          text   NOT NULL,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (name, version)
);
