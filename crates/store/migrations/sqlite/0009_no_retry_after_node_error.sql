-- A builder that reported a node error for a task is not given that task again (the rule
-- is in the leasing query in Rust, ops/lease.rs; on Postgres also in the leasing function).
-- An operator's retry forgives: node errors from before `retried_at` (unix ms, 0 for
-- never) keep nobody away.
ALTER TABLE tasks ADD COLUMN retried_at INTEGER NOT NULL DEFAULT 0;
