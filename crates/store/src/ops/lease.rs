//! Leasing: who builds what, until when.
//!
//! A builder gets the highest-priority, oldest task that
//! - is below its lease limit (`active_leases < lease_limit`, where the limit is the results
//!   still wanted plus [`Policy::extra_leases`]; 0 once the task is decided or cancelled),
//! - is not backing off (`not_before <= now`),
//! - is for an enabled target and toolchain the builder declared,
//! - the builder has not already delivered a result for (node errors aside), and
//! - the builder does not hold an active lease on already, and
//! - no other key of the builder's operator (when the admin named one) holds an active lease
//!   on or has a counted result for: that result could not count, one per operator.
//!
//! Race freedom: on Postgres the candidate row is locked with `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers (in any number of coordinator processes) never wait on each other and
//! never both take the last slot: Postgres re-checks the `WHERE` clause against the newest row
//! version when it locks it. On SQLite every write transaction is `BEGIN IMMEDIATE` on one
//! connection, so claims are serialised. Behind both, the unique index `leases_one_active`
//! refuses a second active lease of one builder on one task and a `CHECK` keeps
//! `active_leases` non-negative.
//!
//! Every lease carries the task's *fencing epoch*, incremented with each lease granted.
//! Renewals must quote it. A lease past its deadline is expired by [`expire`]: the task is
//! requeued with a backoff that doubles with each node-side failure, and after
//! [`Policy::max_node_failures`] of them it is cancelled with the reason (never failed: a
//! crate is not at fault when nodes die).
//!
//! Cost: the scan walks the leasable tasks in order and skips those a builder may not take.
//! Normally that is a handful (the tasks it holds, those other claimers are locking). A
//! builder that has delivered results for many tasks still waiting for other builders (a
//! target with a single active builder, say) skips all of them on every call; a per-builder
//! "nothing for you before task N" hint would fix that if it ever matters.

use buildsrs_keys::PublicKey;
use jiff::Timestamp;
use serde_json::json;

use crate::db::{Db, Dialect, Row, params};
use crate::error::{Result, StoreError};
use crate::model::{BuilderStatus, ExpireReport, Lease, LeaseId, LeaseState, TaskId};
use crate::ops::{Credits, TaskRow, event};
use crate::policy::Policy;

/// The candidate query on SQLite (Postgres runs its own, see [`lease_next`]).
const CANDIDATE: &str = "SELECT t.id FROM tasks t \
     WHERE t.active_leases < t.lease_limit AND t.not_before <= $2 \
     AND t.target_id IN (SELECT tg.id FROM targets tg \
                         JOIN builder_targets bt ON bt.name = tg.name \
                         WHERE bt.builder_id = $1 AND tg.enabled) \
     AND t.toolchain_id IN (SELECT tc.id FROM toolchains tc \
                            JOIN builder_toolchains bc ON bc.name = tc.name \
                            WHERE bc.builder_id = $1 AND tc.enabled) \
     AND NOT EXISTS (SELECT 1 FROM attestations a \
                     WHERE a.task_id = t.id AND a.builder_id = $1 \
                     AND (a.outcome <> 'node_error' OR a.received_at >= t.retried_at)) \
     AND NOT EXISTS (SELECT 1 FROM leases l \
                     WHERE l.task_id = t.id AND l.builder_id = $1 AND l.state = 'active') \
     AND NOT EXISTS (SELECT 1 FROM leases l JOIN builders o ON o.id = l.builder_id \
                     WHERE l.task_id = t.id AND l.state = 'active' \
                     AND o.operator = (SELECT operator FROM builders WHERE id = $1)) \
     AND NOT EXISTS (SELECT 1 FROM attestations a JOIN builders o ON o.id = a.builder_id \
                     WHERE a.task_id = t.id AND a.counted \
                     AND o.operator = (SELECT operator FROM builders WHERE id = $1)) \
     ORDER BY t.priority DESC, t.id \
     LIMIT 1";

/// Leases the next task to a builder, or `None` if nothing fits.
///
/// On Postgres this is one statement, the server-side function `buildsrs_lease_next`
/// (migration 0002), which the store runs outside any explicit transaction to save the
/// round trips of one; see there for how it finds and locks a task. On SQLite it is the
/// same steps from here, in the usual transaction.
pub(crate) async fn lease_next(
    db: &mut dyn Db,
    policy: &Policy,
    key: &PublicKey,
    now: Timestamp,
) -> Result<Option<Lease>> {
    let key_text = key.to_string();
    let deadline = deadline_after(now, policy)?;
    let grant = match db.dialect() {
        Dialect::Postgres => postgres_lease(db, &key_text, now, deadline).await?,
        Dialect::Sqlite => sqlite_lease(db, &key_text, now, deadline).await?,
    };
    let Some(grant) = grant else {
        return Ok(None);
    };
    Ok(Some(Lease {
        task_id: grant.get(0)?,
        lease_id: grant.get(1)?,
        epoch: grant.get(2)?,
        deadline,
        crate_name: grant.get(3)?,
        version: grant.get(4)?,
        cksum: grant.get(5)?,
        target: grant.get(6)?,
        toolchain: grant.get(7)?,
        download_url: grant.get(8)?,
    }))
}

/// Postgres: one call of the leasing function. Returns the granted lease as
/// `task, lease, epoch, crate, version, cksum, target, toolchain, download URL`.
async fn postgres_lease(
    db: &mut dyn Db,
    key: &str,
    now: Timestamp,
    deadline: Timestamp,
) -> Result<Option<Row>> {
    let row = db
        .query_one(
            "SELECT r_outcome, r_status, r_task, r_lease, r_epoch, r_crate, r_version, r_cksum, \
             r_target, r_toolchain, r_download_url FROM buildsrs_lease_next($1, $2, $3)",
            params![key, now, deadline],
        )
        .await?;
    match row.get::<String>(0)?.as_str() {
        "leased" => Ok(Some(Row(row.0.into_iter().skip(2).collect()))),
        "none" => Ok(None),
        "unknown" => Err(StoreError::not_found(format!("builder {key}"))),
        "not_approved" => Err(not_approved(key, row.get::<String>(1)?.parse()?)),
        other => Err(StoreError::corrupt(format!(
            "buildsrs_lease_next answered {other:?}"
        ))),
    }
}

fn not_approved(key: &str, status: BuilderStatus) -> StoreError {
    StoreError::NotApproved {
        key: key.to_owned(),
        status: status.to_string(),
    }
}

/// SQLite: the same steps as the Postgres function, on the one writer connection (claims are
/// serialised by `BEGIN IMMEDIATE`, so no row locks are needed).
async fn sqlite_lease(
    db: &mut dyn Db,
    key: &str,
    now: Timestamp,
    deadline: Timestamp,
) -> Result<Option<Row>> {
    let row = db
        .query_opt(
            "UPDATE builders SET last_seen = $2 WHERE public_key = $1 \
             RETURNING id, status, capacity",
            params![key, now],
        )
        .await?
        .ok_or_else(|| StoreError::not_found(format!("builder {key}")))?;
    let builder_id: i64 = row.get(0)?;
    let status: BuilderStatus = row.get::<String>(1)?.parse()?;
    if status != BuilderStatus::Approved {
        return Err(not_approved(key, status));
    }
    // No more leases at once than the builder runs jobs.
    let capacity: i64 = row.get(2)?;
    let active: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM leases WHERE builder_id = $1 AND state = 'active'",
            params![builder_id],
        )
        .await?
        .get(0)?;
    if active >= capacity {
        return Ok(None);
    }
    let Some(candidate) = db.query_opt(CANDIDATE, params![builder_id, now]).await? else {
        return Ok(None);
    };
    let task_id: i64 = candidate.get(0)?;
    let row = db
        .query_one(
            "UPDATE tasks SET active_leases = active_leases + 1, epoch = epoch + 1, \
             state = CASE WHEN state = 'queued' THEN 'building' ELSE state END, \
             updated_at = $2 WHERE id = $1 RETURNING epoch",
            params![task_id, now],
        )
        .await?;
    let epoch: i64 = row.get(0)?;
    db.query_one(
        "INSERT INTO leases (task_id, builder_id, epoch, state, granted_at, deadline) \
         VALUES ($1, $2, $3, 'active', $4, $5) RETURNING id",
        params![task_id, builder_id, epoch, now, deadline],
    )
    .await?;
    db.query_opt(
        "SELECT t.id, l.id, l.epoch, c.name, v.version, v.cksum, tg.name, tc.name, \
                v.download_url \
         FROM leases l JOIN tasks t ON t.id = l.task_id \
         JOIN versions v ON v.id = t.version_id JOIN crates c ON c.id = v.crate_id \
         JOIN targets tg ON tg.id = t.target_id JOIN toolchains tc ON tc.id = t.toolchain_id \
         WHERE l.task_id = $1 AND l.epoch = $2",
        params![task_id, epoch],
    )
    .await
}

fn deadline_after(now: Timestamp, policy: &Policy) -> Result<Timestamp> {
    Timestamp::from_millisecond(now.as_millisecond().saturating_add(policy.lease_millis()))
        .map_err(|_| StoreError::invalid("lease deadline out of range"))
}

/// Extends an active lease; the epoch must be the lease's and the deadline not yet passed.
pub(crate) async fn renew(
    db: &mut dyn Db,
    policy: &Policy,
    key: &PublicKey,
    lease_id: LeaseId,
    epoch: i64,
    now: Timestamp,
) -> Result<Timestamp> {
    let sql = format!(
        "SELECT l.epoch, l.state, l.deadline, b.public_key, b.id, l.granted_at FROM leases l \
         JOIN builders b ON b.id = l.builder_id WHERE l.id = $1{}",
        match db.dialect() {
            Dialect::Postgres => " FOR UPDATE OF l",
            Dialect::Sqlite => "",
        }
    );
    let row = db
        .query_opt(&sql, params![lease_id.0])
        .await?
        .ok_or_else(|| StoreError::not_found(format!("lease {lease_id}")))?;
    let current: i64 = row.get(0)?;
    let state: LeaseState = row.get::<String>(1)?.parse()?;
    let deadline: i64 = row.get(2)?;
    let holder: PublicKey = row.get(3)?;
    let builder_id: i64 = row.get(4)?;
    let granted: i64 = row.get(5)?;
    if holder != *key {
        return Err(StoreError::conflict(format!(
            "lease {lease_id} is held by another builder"
        )));
    }
    if current != epoch {
        return Err(StoreError::StaleEpoch {
            lease_id: lease_id.0,
            given: epoch,
            current,
        });
    }
    if state != LeaseState::Active {
        return Err(StoreError::LeaseEnded {
            lease_id: lease_id.0,
            state: state.to_string(),
        });
    }
    if deadline <= now.as_millisecond() {
        // Past its deadline but not swept yet: as good as expired, or the fencing would
        // depend on when the sweeper last ran.
        return Err(StoreError::LeaseEnded {
            lease_id: lease_id.0,
            state: LeaseState::Expired.to_string(),
        });
    }
    // Renewals stop at the lease's maximum lifetime: the last one runs up to it, and a lease
    // at its end is as good as expired (the sweeper requeues its task).
    let end_of_life = granted.saturating_add(policy.max_lease_lifetime_millis());
    if end_of_life <= now.as_millisecond() {
        return Err(StoreError::LeaseEnded {
            lease_id: lease_id.0,
            state: "at its maximum lifetime".to_owned(),
        });
    }
    let deadline = deadline_after(now, policy)?.min(
        Timestamp::from_millisecond(end_of_life)
            .map_err(|_| StoreError::corrupt("lease grant time out of range"))?,
    );
    db.execute(
        "UPDATE leases SET deadline = $2 WHERE id = $1",
        params![lease_id.0, deadline],
    )
    .await?;
    db.execute(
        "UPDATE builders SET last_seen = $2 WHERE id = $1",
        params![builder_id, now],
    )
    .await?;
    Ok(deadline)
}

/// How many expired leases one pass handles before looking again.
const EXPIRE_CHUNK: i64 = 256;

/// Expires every active lease whose deadline has passed and requeues (or stops) its task.
///
/// Leases are found without locks, then each is handled under its task's lock (task first,
/// in task order, then the lease, which is checked again: it may have been renewed or
/// completed in the meantime).
pub(crate) async fn expire(
    db: &mut dyn Db,
    policy: &Policy,
    now: Timestamp,
) -> Result<ExpireReport> {
    let mut report = ExpireReport::default();
    let mut credits = Credits::default();
    let lock = match db.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    let recheck = format!(
        "SELECT builder_id FROM leases WHERE id = $1 AND state = 'active' AND deadline <= $2{lock}"
    );
    loop {
        let rows = db
            .query(
                "SELECT id, task_id FROM leases WHERE state = 'active' AND deadline <= $1 \
                 ORDER BY task_id, id LIMIT $2",
                params![now, EXPIRE_CHUNK],
            )
            .await?;
        let done = (rows.len() as i64) < EXPIRE_CHUNK;
        for row in &rows {
            let lease_id: i64 = row.get(0)?;
            let task_id: i64 = row.get(1)?;
            let mut task = TaskRow::lock(db, task_id).await?;
            let Some(lease) = db.query_opt(&recheck, params![lease_id, now]).await? else {
                continue;
            };
            let builder_id: i64 = lease.get(0)?;
            db.execute(
                "UPDATE leases SET state = 'expired', ended_at = $2 WHERE id = $1",
                params![lease_id, now],
            )
            .await?;
            report.expired += 1;
            task.active_leases = task.active_leases.saturating_sub(1);
            if task.is_open() {
                if task.node_failure(db, policy, "lease expired", now).await? {
                    report.stopped += 1;
                } else {
                    report.requeued += 1;
                }
            }
            task.save(db, now).await?;
            credits.of(builder_id).failed += 1;
            event(
                db,
                now,
                "lease_expired",
                Some(task_id),
                Some(builder_id),
                json!({ "lease": lease_id, "attempts": task.attempts }),
            )
            .await?;
        }
        if done {
            break;
        }
    }
    credits.flush(db).await?;
    Ok(report)
}

/// Sets a task's priority.
pub(crate) async fn set_priority(
    db: &mut dyn Db,
    task: TaskId,
    priority: i64,
    now: Timestamp,
) -> Result<()> {
    let changed = db
        .execute(
            "UPDATE tasks SET priority = $2, updated_at = $3 WHERE id = $1",
            params![task.0, priority, now],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::not_found(format!("task {task}")));
    }
    Ok(())
}

/// Requeues a task stopped for node-side failures, with its failure count reset.
pub(crate) async fn retry(
    db: &mut dyn Db,
    policy: &Policy,
    task_id: TaskId,
    now: Timestamp,
) -> Result<()> {
    let mut task = TaskRow::lock(db, task_id.0).await?;
    if task.state != crate::model::TaskState::Cancelled
        || task.cancel_cause.as_deref() != Some("node_failures")
    {
        return Err(StoreError::conflict(format!(
            "task {task_id} is {}; only tasks stopped for node-side failures can be retried",
            task.state
        )));
    }
    task.state = crate::model::TaskState::Queued;
    task.cancel_cause = None;
    task.reason = None;
    task.attempts = 0;
    task.not_before = now.as_millisecond();
    task.refresh_open(policy);
    task.save(db, now).await?;
    // Forgiven: builders whose node errors stopped the task may lease it again, and the
    // failures before now no longer count toward stopping it.
    db.execute(
        "UPDATE tasks SET retried_at = $2 WHERE id = $1",
        params![task_id.0, now],
    )
    .await?;
    event(db, now, "task_retried", Some(task_id.0), None, json!({})).await
}
