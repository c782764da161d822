-- Leasing checks the candidates of its window one by one (see `ops::lease`).
--
-- Migration 2 checked every task of a window (does this builder hold it? has it answered
-- it?) before locking the first that passed; when the whole first window of 16 was locked
-- by other claimers or held, the next one, 64 tasks, was checked whole. Here each candidate
-- is checked and locked in its own small statement, in order, and the first that can be
-- taken ends the search. The rules and the result are unchanged. Measured with pgbench
-- calling the function from 16 sessions on the loaded 2-core VM: 2.3-3.0 ms of server CPU
-- per lease before, 1.8-1.9 ms after; through the store's own bench (crates/store/README.md)
-- the difference is within the noise.
--
-- `leases_builder_active` goes, so that each lease granted or ended maintains one index
-- fewer: leasing probes `leases_one_active` (the same two columns the other way round), and
-- revocation, which is rare, finds a builder's active leases in one of the partial indexes
-- that hold exactly the active leases (`leases_one_active` or `leases_deadline`), reading all
-- active leases: no more than the work in flight.
DROP INDEX leases_builder_active;

CREATE OR REPLACE FUNCTION buildsrs_lease_next(p_key TEXT, p_now BIGINT, p_deadline BIGINT)
RETURNS TABLE (r_outcome TEXT, r_status TEXT, r_lease BIGINT, r_task BIGINT, r_epoch BIGINT,
               r_crate TEXT, r_version TEXT, r_cksum TEXT, r_target TEXT, r_toolchain TEXT)
LANGUAGE plpgsql VOLATILE AS $lease$
DECLARE
    v_builder BIGINT;
    v_status  TEXT;
    -- The window of leasable tasks looked at: about the number of claimers that may be
    -- locking head tasks at once, then four times larger each time it holds nothing for us.
    v_offset  BIGINT := 0;
    v_window  BIGINT := 16;
    v_seen    BIGINT;
    v_cand    BIGINT;
    v_task    BIGINT;
    -- The enabled targets and toolchains the builder declared, looked up once.
    v_targets    BIGINT[];
    v_toolchains BIGINT[];
BEGIN
    -- Locks the builder's row until the end: its own leases cannot change meanwhile.
    UPDATE builders SET last_seen = p_now WHERE public_key = p_key AND status = 'approved'
        RETURNING id INTO v_builder;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM builders WHERE public_key = p_key;
        r_outcome := CASE WHEN FOUND THEN 'not_approved' ELSE 'unknown' END;
        r_status := v_status;
        RETURN NEXT;
        RETURN;
    END IF;

    v_targets := ARRAY(SELECT tg.id FROM targets tg JOIN builder_targets bt ON bt.name = tg.name
                       WHERE bt.builder_id = v_builder AND tg.enabled);
    v_toolchains := ARRAY(SELECT tc.id FROM toolchains tc
                          JOIN builder_toolchains bc ON bc.name = tc.name
                          WHERE bc.builder_id = v_builder AND tc.enabled);

    -- The next leasable tasks in priority-then-age order, a window at a time, read from the
    -- partial index (LIMIT keeps the plan an index scan whatever the statistics say). Each
    -- candidate is tried on its own, in order, and the first this builder may take that no
    -- other claimer is locking is locked and taken: with many claimers at the head of the
    -- queue most candidates are locked or held, and checking them lazily costs one
    -- primary-key probe each where the whole window used to be checked before the first was
    -- locked. Postgres re-checks the lease limit on the newest row version when it locks
    -- the row. Whether the builder holds or has answered a task is one index probe each, so
    -- the cost does not grow with the builder's history. (Written as counts, which the
    -- planner cannot turn into anti-joins that scan all of the builder's leases.)
    LOOP
        v_seen := 0;
        FOR v_cand IN
            SELECT id FROM tasks WHERE active_leases < lease_limit AND not_before <= p_now
            ORDER BY priority DESC, id LIMIT v_window OFFSET v_offset
        LOOP
            v_seen := v_seen + 1;
            SELECT t.id INTO v_task FROM tasks t
            WHERE t.id = v_cand
            AND t.active_leases < t.lease_limit AND t.not_before <= p_now
            AND t.target_id = ANY(v_targets) AND t.toolchain_id = ANY(v_toolchains)
            AND (SELECT COUNT(*) FROM leases l WHERE l.task_id = t.id
                 AND l.builder_id = v_builder AND l.state = 'active') = 0
            AND (SELECT COUNT(*) FROM attestations a WHERE a.task_id = t.id
                 AND a.builder_id = v_builder AND a.outcome <> 'node_error') = 0
            FOR UPDATE OF t SKIP LOCKED;
            EXIT WHEN v_task IS NOT NULL;
        END LOOP;
        EXIT WHEN v_task IS NOT NULL OR v_seen < v_window;
        v_offset := v_offset + v_window;
        v_window := LEAST(v_window * 4, 4096);
    END LOOP;
    IF v_task IS NULL THEN
        r_outcome := 'none';
        RETURN NEXT;
        RETURN;
    END IF;

    RETURN QUERY
    WITH t AS (UPDATE tasks SET active_leases = active_leases + 1, epoch = epoch + 1,
                      updated_at = p_now,
                      state = CASE WHEN state = 'queued' THEN 'building' ELSE state END
               WHERE id = v_task
               RETURNING id, epoch, version_id, target_id, toolchain_id),
         l AS (INSERT INTO leases (task_id, builder_id, epoch, state, granted_at, deadline)
               SELECT id, v_builder, epoch, 'active', p_now, p_deadline FROM t RETURNING id)
    SELECT 'leased'::TEXT, NULL::TEXT, l.id, t.id, t.epoch, c.name, v.version, v.cksum,
           tg.name, tc.name
    FROM t CROSS JOIN l JOIN versions v ON v.id = t.version_id
    JOIN crates c ON c.id = v.crate_id JOIN targets tg ON tg.id = t.target_id
    JOIN toolchains tc ON tc.id = t.toolchain_id;
END
$lease$;
