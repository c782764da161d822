-- Who runs each builder key: a short name the admin gives at approval (1 to 64 of ASCII
-- letters, digits, `._-`, checked by buildsrs_domain::Operator before it is written). Keys
-- of one operator count once toward a quorum. NULL: the key is its own operator, as every
-- builder approved before this migration is.
ALTER TABLE builders ADD COLUMN operator TEXT;

-- Builder names now follow one rule (buildsrs_domain::BuilderName: 1 to 64 of ASCII
-- letters, digits, `._-`), so that no name can add a word or a line to the served keyring.
-- A stored name that breaks it is replaced by one that does not; the builder's next hello
-- sets its name again (and is refused, saying why, if it still breaks the rule).
UPDATE builders SET name = 'builder-' || id WHERE name !~ '^[A-Za-z0-9._-]{1,64}$';

-- A key is not leased a task that another key of its operator holds a lease on or has a
-- counted result for: its result could not count, and it would hold one of the task's
-- leases meanwhile. The leasing function (0009) is replaced with that condition added (for
-- keys with a named operator only); its signature and result stay.
CREATE OR REPLACE FUNCTION buildsrs_lease_next(p_key TEXT, p_now BIGINT, p_deadline BIGINT)
RETURNS TABLE (r_outcome TEXT, r_status TEXT, r_lease BIGINT, r_task BIGINT, r_epoch BIGINT,
               r_crate TEXT, r_version TEXT, r_cksum TEXT, r_target TEXT, r_toolchain TEXT,
               r_download_url TEXT)
LANGUAGE plpgsql VOLATILE AS $lease$
DECLARE
    v_builder BIGINT;
    v_status  TEXT;
    v_capacity BIGINT;
    -- Who runs the key (NULL: the key is its own operator).
    v_operator TEXT;
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
        RETURNING id, capacity, operator INTO v_builder, v_capacity, v_operator;
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
                 -- Nor a task another key of its operator holds or has a counted result
                 -- for: this key's result could not count (one per operator).
                 AND (v_operator IS NULL OR (
                      (SELECT COUNT(*) FROM leases l JOIN builders o ON o.id = l.builder_id
                       WHERE l.task_id = t.id AND l.state = 'active'
                       AND o.operator = v_operator) = 0
                      AND (SELECT COUNT(*) FROM attestations a
                           JOIN builders o ON o.id = a.builder_id
                           WHERE a.task_id = t.id AND a.counted
                           AND o.operator = v_operator) = 0))
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
