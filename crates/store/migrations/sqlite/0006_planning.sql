-- A planner volunteers can afford: watching a crate builds its newest version and what is
-- published from then on (plus older versions on request), not its whole history; versions
-- are planned only for the toolchains their `rust-version` allows; crates known to have no
-- binaries get one probe task per new version instead of the whole matrix.

-- What a crate asked for: how many versions older than the newest to build when it is
-- first planned (kept for a crate watched before the index shows it).
ALTER TABLE crates ADD COLUMN backfill INTEGER NOT NULL DEFAULT 0 CHECK (backfill >= 0);
-- Whether the crate has binaries, as the latest decision said: 0 after `no_binaries`, 1 after
-- `verified`, NULL before either.
ALTER TABLE crates ADD COLUMN binaries INTEGER CHECK (binaries IN (0, 1));

-- The manifest's `rust-version`, from the index line (NULL: none, or seen before this
-- migration).
ALTER TABLE versions ADD COLUMN rust_version TEXT;
-- Whether the planner chose the version, and for what: NULL (not chosen: history older than
-- the watch), 'probe' (one task, the crate had no binaries) or 'matrix'.
ALTER TABLE versions ADD COLUMN plan TEXT CHECK (plan IN ('probe', 'matrix'));
-- Why a chosen version has no tasks, e.g. no enabled toolchain is new enough.
ALTER TABLE versions ADD COLUMN plan_note TEXT;

-- Versions planned before this migration were chosen with the whole matrix.
UPDATE versions SET plan = 'matrix' WHERE id IN (SELECT version_id FROM tasks);
-- The latest binaries-or-not decision of each crate so far.
UPDATE crates SET binaries = (
    SELECT t.state = 'verified' FROM tasks t JOIN versions v ON v.id = t.version_id
    WHERE v.crate_id = crates.id AND t.state IN ('verified', 'no_binaries')
    ORDER BY t.decided_at DESC, t.id DESC LIMIT 1
) WHERE id IN (SELECT v.crate_id FROM tasks t JOIN versions v ON v.id = t.version_id
               WHERE t.state IN ('verified', 'no_binaries'));
