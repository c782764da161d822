-- A builder that reported a node error for a task is not given that task again (before,
-- node errors were the one result that did not keep a builder away): one builder cannot
-- lease a task and fail it over and over until the task is stopped. An operator's retry
-- forgives: node errors from before `retried_at` (unix ms, 0 for never) keep nobody away.
-- The leasing function (0002, 0008) is replaced with that condition changed and the
-- capacity check below added; its signature and result stay.
ALTER TABLE tasks ADD COLUMN retried_at BIGINT NOT NULL DEFAULT 0;

-- How many jobs a builder runs at once, as its hello says: it is never leased more tasks
-- than that at a time. Builders stored before say hello again on their next connection.
ALTER TABLE builders ADD COLUMN capacity BIGINT NOT NULL DEFAULT 1;

CREATE OR REPLACE FUNCTION buildsrs_lease_next(p_key TEXT, p_now BIGINT, p_deadline BIGINT)
RETURNS TABLE (r_outcome TEXT, r_status TEXT, r_lease BIGINT, r_task BIGINT, r_epoch BIGINT,
               r_crate TEXT, r_version TEXT, r_cksum TEXT, r_target TEXT, r_toolchain TEXT,
               r_download_url TEXT)
LANGUAGE plpgsql VOLATILE AS $lease$
DECLARE
    v_builder BIGINT;
    v_status  TEXT;
    v_capacity BIGINT;
    -- The window of leasable tasks looked at: about the number of claimers that may be
    -- locking head tasks at once, then four times larger each time it holds nothing for us.
    v_offset  BIGINT := 0;
    v_window  BIGINT := 16;
    v_seen    BIGINT;
    v_task    BIGINT;
    -- The enabled targets and toolchains the builder declared, looked up once.
    v_targets    BIGINT[];
    v_toolchains BIGINT[];
BEGIN
    -- Locks the builder's row until the end: its own leases cannot change meanwhile.
    UPDATE builders SET last_seen = p_now WHERE public_key = p_key AND status = 'approved'
        RETURNING id, capacity INTO v_builder, v_capacity;
    IF NOT FOUND THEN
        SELECT status INTO v_status FROM builders WHERE public_key = p_key;
        r_outcome := CASE WHEN FOUND THEN 'not_approved' ELSE 'unknown' END;
        r_status := v_status;
        RETURN NEXT;
        RETURN;
    END IF;
    -- No more leases at once than the builder runs jobs (read from the partial index of
    -- active leases: no more than the work in flight).
    IF (SELECT COUNT(*) FROM leases WHERE builder_id = v_builder AND state = 'active')
        >= v_capacity THEN
        r_outcome := 'none';
        RETURN NEXT;
        RETURN;
    END IF;

    v_targets := ARRAY(SELECT tg.id FROM targets tg JOIN builder_targets bt ON bt.name = tg.name
                       WHERE bt.builder_id = v_builder AND tg.enabled);
    v_toolchains := ARRAY(SELECT tc.id FROM toolchains tc
                          JOIN builder_toolchains bc ON bc.name = tc.name
                          WHERE bc.builder_id = v_builder AND tc.enabled);

    -- A window of the next leasable tasks in priority-then-age order, read from the partial
    -- index alone (materialised, so the plan does not depend on table statistics); among
    -- them the first this builder may take that no other claimer is locking. Postgres
    -- re-checks the lease limit on the newest row version when it locks the row. Whether the
    -- builder holds or has answered a task is one index probe per task in the window, so
    -- the cost does not grow with the builder's history. (Written as counts, which the
    -- planner cannot turn into anti-joins: with a young table's statistics it would scan
    -- all of the builder's leases for every task instead.)
    LOOP
        WITH w AS MATERIALIZED (
                 SELECT id FROM tasks WHERE active_leases < lease_limit AND not_before <= p_now
                 ORDER BY priority DESC, id LIMIT v_window OFFSET v_offset),
             pick AS (
                 SELECT t.id FROM tasks t
                 WHERE t.id = ANY(ARRAY(SELECT id FROM w))
                 AND t.active_leases < t.lease_limit AND t.not_before <= p_now
                 AND t.target_id = ANY(v_targets) AND t.toolchain_id = ANY(v_toolchains)
                 AND (SELECT COUNT(*) FROM leases l WHERE l.task_id = t.id
                      AND l.builder_id = v_builder AND l.state = 'active') = 0
                 AND (SELECT COUNT(*) FROM attestations a WHERE a.task_id = t.id
                      AND a.builder_id = v_builder
                      AND (a.outcome <> 'node_error' OR a.received_at >= t.retried_at)) = 0
                 ORDER BY t.priority DESC, t.id LIMIT 1 FOR UPDATE OF t SKIP LOCKED)
        SELECT (SELECT COUNT(*) FROM w), (SELECT id FROM pick) INTO v_seen, v_task;
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
           tg.name, tc.name, v.download_url
    FROM t CROSS JOIN l JOIN versions v ON v.id = t.version_id
    JOIN crates c ON c.id = v.crate_id JOIN targets tg ON tg.id = t.target_id
    JOIN toolchains tc ON tc.id = t.toolchain_id;
END
$lease$;
