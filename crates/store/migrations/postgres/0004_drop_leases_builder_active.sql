-- `leases_builder_active` goes (the same on SQLite), so that each lease granted or ended
-- maintains one index fewer (about 7% less WAL per lease, measured): leasing probes
-- `leases_one_active` (the same two columns the other way round), and revocation, which is
-- rare, finds a builder's active leases in one of the partial indexes that hold exactly the
-- active leases (`leases_one_active` or `leases_deadline`), reading all active leases: no
-- more than the work in flight.
DROP INDEX leases_builder_active;
