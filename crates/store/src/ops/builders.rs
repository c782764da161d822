//! Builders: registration, approval and revocation.
//!
//! A builder registers with its public key, a name ([`BuilderName`]'s rule, or it is refused)
//! and what it can build, and stays *pending* until an operator approves it. Approval names
//! who runs the key, its [`Operator`] (or leaves the key its own operator); keys of one
//! operator count once toward a quorum, so an operator is set once, at approval, and never
//! changed after (results may have been counted by it). Re-registering updates its name and
//! capabilities, never its status or operator. Revocation is final: its active leases are
//! cancelled, its results stop counting, and every task that counted one of them is decided
//! again — a verified artifact that relied on it loses its verification and its task goes
//! back to the queue for more builds. Counts of agreement already credited to other builders
//! are history and stay.

use buildsrs_domain::{BuilderName, Operator, PublicKey, TargetTriple, ToolchainRelease};
use jiff::Timestamp;
use serde_json::json;

use crate::db::{Db, Dialect, params};
use crate::error::{Result, StoreError};
use crate::model::{BuilderInfo, BuilderStatus, NewBuilder, RevokeReport, TaskState};
use crate::ops::reads::load_builder;
use crate::ops::{TaskRow, apply_verdict, counted_results, event, withdraw_artifact_if_unused};
use crate::policy::Policy;
use crate::rules::{Class, Verdict, decide};

/// The most jobs a builder may say it runs at once.
pub const MAX_BUILDER_CAPACITY: u32 = 64;

/// The most targets or toolchains a builder may declare.
const MAX_CAPABILITIES: usize = 64;

/// Checks a registration; the name comes back parsed.
fn check_builder(builder: &NewBuilder) -> Result<BuilderName> {
    // Builders choose their names, and the names go into the served keyring: one rule.
    let name: BuilderName = builder
        .name
        .parse()
        .map_err(|e: buildsrs_domain::InvalidLabel| StoreError::invalid(e.to_string()))?;
    if !(1..=MAX_BUILDER_CAPACITY).contains(&builder.capacity) {
        return Err(StoreError::invalid(format!(
            "a builder runs 1 to {MAX_BUILDER_CAPACITY} jobs at once, not {}",
            builder.capacity
        )));
    }
    // Each entry is a TargetTriple or ToolchainRelease: checked by the rule attestations
    // are; only the count is left.
    for (what, count) in [
        ("target", builder.targets.len()),
        ("toolchain", builder.toolchains.len()),
    ] {
        if count > MAX_CAPABILITIES {
            return Err(StoreError::invalid(format!(
                "a builder declares at most {MAX_CAPABILITIES} {what}s, got {count}"
            )));
        }
    }
    Ok(name)
}

/// Replaces a builder's rows in one capability table.
async fn replace_capabilities(
    db: &mut dyn Db,
    builder_id: i64,
    table: &str,
    mut names: Vec<&str>,
) -> Result<()> {
    db.execute(
        &format!("DELETE FROM {table} WHERE builder_id = $1"),
        params![builder_id],
    )
    .await?;
    names.sort_unstable();
    names.dedup();
    for name in names {
        db.execute(
            &format!("INSERT INTO {table} (builder_id, name) VALUES ($1, $2)"),
            params![builder_id, name],
        )
        .await?;
    }
    Ok(())
}

/// Finds a builder's id and status, locking its row.
pub(crate) async fn lock_builder(db: &mut dyn Db, key: &PublicKey) -> Result<(i64, BuilderStatus)> {
    let sql = format!(
        "SELECT id, status FROM builders WHERE public_key = $1{}",
        db.for_update()
    );
    let key_text = key.to_string();
    let row = db
        .query_opt(&sql, params![&key_text])
        .await?
        .ok_or_else(|| StoreError::not_found(format!("builder {key_text}")))?;
    Ok((row.get(0)?, row.get::<String>(1)?.parse()?))
}

/// The advisory lock new keys' registrations take on Postgres (a number of our own; the
/// migrations use another).
const REGISTRATION_LOCK: i64 = 0x6275_696c_6472_7331;

/// Registers a builder (pending) or updates a known one's name and capabilities. A new key
/// is refused while [`Policy::max_pending_builders`] wait for an operator: anyone can make
/// keys, and each would otherwise be a row for ever.
pub(crate) async fn register(
    db: &mut dyn Db,
    policy: &Policy,
    builder: &NewBuilder,
    now: Timestamp,
) -> Result<BuilderInfo> {
    let name = check_builder(builder)?;
    let key = builder.public_key.to_string();
    if db.dialect() == Dialect::Postgres {
        let known = db
            .query_opt(
                "SELECT 1 FROM builders WHERE public_key = $1",
                params![&key],
            )
            .await?
            .is_some();
        if !known {
            // New keys register one at a time (until commit), so the count of the line below
            // sees every earlier one: concurrent new keys cannot each take the last place.
            // SQLite writes one transaction at a time anyway.
            db.execute(
                "SELECT pg_advisory_xact_lock($1)",
                params![REGISTRATION_LOCK],
            )
            .await?;
        }
    }
    let inserted = db
        .execute(
            "INSERT INTO builders (public_key, name, status, registered_at, last_seen) \
             VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT (public_key) DO NOTHING",
            params![&key, &name, now],
        )
        .await?;
    if inserted == 1 {
        let pending: i64 = db
            .query_one(
                "SELECT COUNT(*) FROM builders WHERE status = 'pending'",
                &[],
            )
            .await?
            .get(0)?;
        if pending > i64::from(policy.max_pending_builders) {
            // The transaction rolls the insert back.
            return Err(StoreError::conflict(format!(
                "{} builders already wait for an operator's approval; try again later",
                policy.max_pending_builders
            )));
        }
    }
    let (id, _) = lock_builder(db, &builder.public_key).await?;
    db.execute(
        "UPDATE builders SET name = $2, last_seen = $3, capacity = $4 WHERE id = $1",
        params![id, &name, now, builder.capacity],
    )
    .await?;
    let targets = builder.targets.iter().map(TargetTriple::as_str);
    replace_capabilities(db, id, "builder_targets", targets.collect()).await?;
    let toolchains = builder.toolchains.iter().map(ToolchainRelease::as_str);
    replace_capabilities(db, id, "builder_toolchains", toolchains.collect()).await?;
    if inserted == 1 {
        event(
            db,
            now,
            "builder_registered",
            None,
            Some(id),
            json!({ "name": name, "key": key }),
        )
        .await?;
    }
    load_builder(db, id).await
}

/// Approves a pending builder as run by `operator` (`None`: the key is its own operator).
/// Approving an approved builder changes nothing, and is refused if it names another
/// operator than the one it was approved as; a revoked one cannot come back.
pub(crate) async fn approve(
    db: &mut dyn Db,
    key: &PublicKey,
    operator: Option<&Operator>,
    now: Timestamp,
) -> Result<()> {
    let (id, status) = lock_builder(db, key).await?;
    match status {
        BuilderStatus::Approved => {
            let current: Option<Operator> = db
                .query_one("SELECT operator FROM builders WHERE id = $1", params![id])
                .await?
                .get(0)?;
            match operator {
                Some(asked) if current.as_ref() != Some(asked) => {
                    Err(StoreError::conflict(format!(
                        "builder {key} is approved already, as operator {}; an operator is \
                         set once, at approval",
                        current.as_ref().map_or("(its own key)", Operator::as_str)
                    )))
                }
                _ => Ok(()),
            }
        }
        BuilderStatus::Revoked => Err(StoreError::conflict(format!(
            "builder {key} is revoked; a revoked key cannot be approved again"
        ))),
        BuilderStatus::Pending => {
            db.execute(
                "UPDATE builders SET status = 'approved', operator = $2 WHERE id = $1",
                params![id, operator],
            )
            .await?;
            event(
                db,
                now,
                "builder_approved",
                None,
                Some(id),
                json!({ "operator": operator }),
            )
            .await
        }
    }
}

/// Revokes a builder and decides again every task that counted its results.
pub(crate) async fn revoke(
    db: &mut dyn Db,
    policy: &Policy,
    key: &PublicKey,
    reason: &str,
    now: Timestamp,
) -> Result<RevokeReport> {
    let (builder_id, status) = lock_builder(db, key).await?;
    let mut report = RevokeReport::default();
    if status == BuilderStatus::Revoked {
        return Ok(report);
    }
    db.execute(
        "UPDATE builders SET status = 'revoked' WHERE id = $1",
        params![builder_id],
    )
    .await?;

    // Its active leases end; their tasks may be leased to others. Task first, then lease.
    let leases = db
        .query(
            "SELECT id, task_id FROM leases WHERE builder_id = $1 AND state = 'active' \
             ORDER BY task_id, id",
            params![builder_id],
        )
        .await?;
    for row in &leases {
        let lease_id: i64 = row.get(0)?;
        let mut task = TaskRow::lock(db, row.get(1)?).await?;
        let cancelled = db
            .execute(
                "UPDATE leases SET state = 'cancelled', ended_at = $2 \
                 WHERE id = $1 AND state = 'active'",
                params![lease_id, now],
            )
            .await?;
        if cancelled == 1 {
            task.active_leases = task.active_leases.saturating_sub(1);
            task.refresh_open(policy);
            task.save(db, now).await?;
            report.leases_cancelled += 1;
        }
    }

    // Its results stop counting; decide their tasks again.
    let tasks: Vec<i64> = db
        .query(
            "SELECT DISTINCT task_id FROM attestations WHERE builder_id = $1 AND counted \
             ORDER BY task_id",
            params![builder_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    db.execute(
        "UPDATE attestations SET counted = false WHERE builder_id = $1 AND counted",
        params![builder_id],
    )
    .await?;
    for task_id in tasks {
        let mut task = TaskRow::lock(db, task_id).await?;
        let results = counted_results(db, task_id).await?;
        task.counted = u32::try_from(results.len()).unwrap_or(u32::MAX);
        report.tasks_redecided += 1;
        if task.state == TaskState::Cancelled {
            task.save(db, now).await?;
            continue;
        }
        let verdict = decide(
            task.quorum,
            task.wanted,
            task.quorum + policy.max_extra_builds,
            &results,
        );
        if still_holds(&task, &verdict) {
            task.save(db, now).await?;
            continue;
        }
        let was_verified = (task.state == TaskState::Verified)
            .then(|| task.artifact_hash.clone())
            .flatten();
        apply_verdict(db, policy, &mut task, verdict, None, now).await?;
        task.save(db, now).await?;
        if let Some(hash) = was_verified
            && task.artifact_hash.as_deref() != Some(hash.as_str())
        {
            report.verified_lost += 1;
            withdraw_artifact_if_unused(db, &hash).await?;
        }
        event(
            db,
            now,
            "task_redecided",
            Some(task_id),
            Some(builder_id),
            json!({ "state": task.state.as_str(), "cause": "builder revoked" }),
        )
        .await?;
    }

    event(
        db,
        now,
        "builder_revoked",
        None,
        Some(builder_id),
        json!({ "reason": crate::rules::cap_reason(reason), "report": report }),
    )
    .await?;
    Ok(report)
}

/// Whether a decided task's decision survives the new verdict unchanged.
fn still_holds(task: &TaskRow, verdict: &Verdict) -> bool {
    let Verdict::Decided { class, .. } = verdict else {
        return false;
    };
    match (task.state, class) {
        (TaskState::Verified, Class::Built { hash, .. }) => {
            task.artifact_hash.as_deref() == Some(hash.to_hex().as_str())
        }
        (TaskState::NoBinaries, Class::NoBinaries) | (TaskState::Failed, Class::DoesNotBuild) => {
            true
        }
        _ => false,
    }
}
