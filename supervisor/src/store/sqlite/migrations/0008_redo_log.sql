-- Version 8: the redo log's high-water mark (see `redo.rs`).
--
-- Creates are acknowledged once their record is in `traitor.db-redo` and committed to
-- the database in larger transactions a few milliseconds later. Each such commit also
-- stores the sequence number of the last record it holds, so that after a crash the
-- records above it, and only those, are applied again.

CREATE TABLE redo_applied (
    one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL
) STRICT;

INSERT INTO redo_applied (one, seq) VALUES (1, 0);
