-- Two more outcome kinds, from the one outcome vocabulary (buildsrs-domain):
-- 'disk_limit' (the build wrote more than the node allows; a build failure) and
-- 'needs_newer_toolchain' (the builder's Rust is too old; like 'node_error', never counted).
-- SQLite cannot change a CHECK constraint, so the table is rebuilt with the same columns,
-- rows and indexes. build_logs references attestations (id): the check is deferred to the
-- commit, by which time every id is back under the same name.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE attestations_new (
    id             INTEGER PRIMARY KEY,
    task_id        INTEGER NOT NULL REFERENCES tasks (id),
    builder_id     INTEGER NOT NULL REFERENCES builders (id),
    lease_id       INTEGER NOT NULL UNIQUE REFERENCES leases (id),
    outcome        TEXT    NOT NULL CHECK (outcome IN ('built', 'no_binaries', 'build_failed',
                                                       'timed_out', 'out_of_memory',
                                                       'output_too_large', 'disk_limit',
                                                       'source_checksum_mismatch',
                                                       'needs_newer_toolchain', 'node_error')),
    artifact_hash  TEXT,
    artifact_size  INTEGER,
    signed         BLOB,
    reason         TEXT,
    received_at    INTEGER NOT NULL,
    counted        INTEGER NOT NULL CHECK (counted IN (0, 1)),
    late           INTEGER NOT NULL CHECK (late IN (0, 1)),
    CHECK ((outcome = 'built') = (artifact_hash IS NOT NULL AND artifact_size IS NOT NULL
                                  AND signed IS NOT NULL)),
    CHECK (outcome NOT IN ('node_error', 'needs_newer_toolchain') OR counted = 0)
);
INSERT INTO attestations_new (id, task_id, builder_id, lease_id, outcome, artifact_hash,
                              artifact_size, signed, reason, received_at, counted, late)
    SELECT id, task_id, builder_id, lease_id, outcome, artifact_hash, artifact_size, signed,
           reason, received_at, counted, late
    FROM attestations;
DROP TABLE attestations;
ALTER TABLE attestations_new RENAME TO attestations;

CREATE UNIQUE INDEX attestations_counted_once ON attestations (task_id, builder_id) WHERE counted = 1;
CREATE INDEX attestations_task_builder ON attestations (task_id, builder_id);
CREATE INDEX attestations_builder ON attestations (builder_id, task_id);
CREATE INDEX attestations_artifact ON attestations (artifact_hash) WHERE artifact_hash IS NOT NULL;
