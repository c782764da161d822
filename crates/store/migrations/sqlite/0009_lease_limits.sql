-- A builder that reported a node error for a task is not given that task again (the rule
-- is in the leasing query in Rust, ops/lease.rs; on Postgres also in the leasing function).
-- An operator's retry forgives: node errors from before `retried_at` (unix ms, 0 for
-- never) keep nobody away.
ALTER TABLE tasks ADD COLUMN retried_at INTEGER NOT NULL DEFAULT 0;

-- How many jobs a builder runs at once, as its hello says: it is never leased more tasks
-- than that at a time. Builders stored before say hello again on their next connection.
ALTER TABLE builders ADD COLUMN capacity INTEGER NOT NULL DEFAULT 1;
