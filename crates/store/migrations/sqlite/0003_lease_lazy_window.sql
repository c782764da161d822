-- Migration 3 on Postgres rewrites its leasing function; SQLite leases in-process and needs
-- no function. Both drop `leases_builder_active`: leasing probes `leases_one_active` (the same
-- two columns the other way round), revocation, which is rare, finds a builder's active
-- leases through `leases_deadline` (which holds exactly the active leases), and each lease
-- granted or ended no longer maintains a fifth index.
DROP INDEX leases_builder_active;
