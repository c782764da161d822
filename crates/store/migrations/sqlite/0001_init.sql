-- buildsrs store, schema version 1 (SQLite). Times are unix milliseconds; booleans are 0/1.

CREATE TABLE crates (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    watched     INTEGER NOT NULL DEFAULT 0 CHECK (watched IN (0, 1)),
    first_seen  INTEGER NOT NULL
);
CREATE INDEX crates_lower_name ON crates (lower(name));

CREATE TABLE versions (
    id          INTEGER PRIMARY KEY,
    crate_id    INTEGER NOT NULL REFERENCES crates (id),
    version     TEXT    NOT NULL,
    cksum       TEXT    NOT NULL,
    yanked      INTEGER NOT NULL CHECK (yanked IN (0, 1)),
    first_seen  INTEGER NOT NULL,
    UNIQUE (crate_id, version)
);

CREATE TABLE targets (
    id       INTEGER PRIMARY KEY,
    name     TEXT    NOT NULL UNIQUE,
    enabled  INTEGER NOT NULL CHECK (enabled IN (0, 1))
);

CREATE TABLE toolchains (
    id       INTEGER PRIMARY KEY,
    name     TEXT    NOT NULL UNIQUE,
    enabled  INTEGER NOT NULL CHECK (enabled IN (0, 1))
);

CREATE TABLE builders (
    id             INTEGER PRIMARY KEY,
    public_key     TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'revoked')),
    registered_at  INTEGER NOT NULL,
    last_seen      INTEGER,
    built          INTEGER NOT NULL DEFAULT 0,
    agreed         INTEGER NOT NULL DEFAULT 0,
    outvoted       INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE builder_targets (
    builder_id  INTEGER NOT NULL REFERENCES builders (id),
    name        TEXT    NOT NULL,
    PRIMARY KEY (builder_id, name)
);

CREATE TABLE builder_toolchains (
    builder_id  INTEGER NOT NULL REFERENCES builders (id),
    name        TEXT    NOT NULL,
    PRIMARY KEY (builder_id, name)
);

CREATE TABLE artifacts (
    hash         TEXT    PRIMARY KEY,
    size         INTEGER NOT NULL,
    storage_key  TEXT,
    verified_at  INTEGER
);

CREATE TABLE artifact_downloads (
    hash   TEXT    NOT NULL REFERENCES artifacts (hash),
    day    INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (hash, day)
);

-- lease_limit is maintained by the code: (wanted - counted) + extra_leases while the task is
-- open, 0 once it is decided or cancelled. A task can be leased while active_leases < lease_limit.
CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY,
    version_id     INTEGER NOT NULL REFERENCES versions (id),
    target_id      INTEGER NOT NULL REFERENCES targets (id),
    toolchain_id   INTEGER NOT NULL REFERENCES toolchains (id),
    state          TEXT    NOT NULL CHECK (state IN ('queued', 'building', 'verified', 'mismatch',
                                                     'failed', 'no_binaries', 'cancelled')),
    reason         TEXT,
    cancel_cause   TEXT    CHECK (cancel_cause IN ('yanked', 'node_failures')),
    priority       INTEGER NOT NULL,
    quorum         INTEGER NOT NULL CHECK (quorum >= 1),
    wanted         INTEGER NOT NULL,
    counted        INTEGER NOT NULL DEFAULT 0,
    lease_limit    INTEGER NOT NULL,
    active_leases  INTEGER NOT NULL DEFAULT 0 CHECK (active_leases >= 0),
    epoch          INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    not_before     INTEGER NOT NULL DEFAULT 0,
    artifact_hash  TEXT    REFERENCES artifacts (hash),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    decided_at     INTEGER,
    UNIQUE (version_id, target_id, toolchain_id)
);
-- The leasing scan: only tasks below their lease limit, in priority-then-age order.
CREATE INDEX tasks_leasable ON tasks (priority DESC, id) WHERE active_leases < lease_limit;
CREATE INDEX tasks_state ON tasks (state);
CREATE INDEX tasks_verified ON tasks (decided_at) WHERE state = 'verified';
CREATE INDEX tasks_artifact ON tasks (artifact_hash) WHERE artifact_hash IS NOT NULL;

CREATE TABLE leases (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    builder_id  INTEGER NOT NULL REFERENCES builders (id),
    epoch       INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('active', 'completed', 'expired', 'cancelled')),
    granted_at  INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    ended_at    INTEGER,
    UNIQUE (task_id, epoch)
);
-- A builder holds at most one active lease per task.
CREATE UNIQUE INDEX leases_one_active ON leases (task_id, builder_id) WHERE state = 'active';
CREATE INDEX leases_deadline ON leases (deadline) WHERE state = 'active';
-- A builder's active leases (leasing excludes their tasks; revocation cancels them).
CREATE INDEX leases_builder_active ON leases (builder_id, task_id) WHERE state = 'active';

CREATE TABLE attestations (
    id             INTEGER PRIMARY KEY,
    task_id        INTEGER NOT NULL REFERENCES tasks (id),
    builder_id     INTEGER NOT NULL REFERENCES builders (id),
    lease_id       INTEGER NOT NULL UNIQUE REFERENCES leases (id),
    outcome        TEXT    NOT NULL CHECK (outcome IN ('built', 'no_binaries', 'build_failed',
                                                       'timed_out', 'out_of_memory',
                                                       'output_too_large',
                                                       'source_checksum_mismatch', 'node_error')),
    artifact_hash  TEXT,
    artifact_size  INTEGER,
    signed         BLOB,
    reason         TEXT,
    received_at    INTEGER NOT NULL,
    counted        INTEGER NOT NULL CHECK (counted IN (0, 1)),
    late           INTEGER NOT NULL CHECK (late IN (0, 1)),
    CHECK ((outcome = 'built') = (artifact_hash IS NOT NULL AND artifact_size IS NOT NULL
                                  AND signed IS NOT NULL)),
    CHECK (outcome <> 'node_error' OR counted = 0)
);
-- A builder counts at most once per task.
CREATE UNIQUE INDEX attestations_counted_once ON attestations (task_id, builder_id) WHERE counted = 1;
CREATE INDEX attestations_task_builder ON attestations (task_id, builder_id);
-- A builder's results (leasing excludes their tasks; revocation re-decides them).
CREATE INDEX attestations_builder ON attestations (builder_id, task_id);
CREATE INDEX attestations_artifact ON attestations (artifact_hash) WHERE artifact_hash IS NOT NULL;

CREATE TABLE build_logs (
    attestation_id  INTEGER PRIMARY KEY REFERENCES attestations (id),
    log             BLOB    NOT NULL,
    original_len    INTEGER NOT NULL
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    task_id     INTEGER,
    builder_id  INTEGER,
    detail      TEXT    NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
