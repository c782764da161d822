//! Results: recording what a builder reports, and deciding.
//!
//! A result names its lease and the lease's epoch; the submitter must be the lease holder.
//! Every result is recorded (with its capped log), whatever the lease's state. Whether it
//! *counts* toward the decision:
//! - node errors never count; they are node-side failures (retry limit, backoff), and only
//!   when they come under an active lease (an expired lease already counted its failure);
//! - otherwise it counts if the builder is approved, the task is not cancelled, the builder
//!   has no counted result for the task yet, and neither has another key of its operator.
//!   So a late result from an expired or superseded lease still counts once if it is the
//!   builder's first, never twice; and one operator's keys count once together, so that a
//!   quorum is that many operators agreeing.
//!
//! A result that does not count says why ([`NotCounted`]), so the node can be told.
//!
//! A counted result on an open task runs the rules of [`crate::rules`]. On a task decided
//! already it is kept (it may keep the decision alive if a builder is revoked later) and
//! credits its builder as agreeing or outvoted against the decision.
//!
//! Submitting twice under one lease (a retry after a lost answer) records nothing new and
//! answers as the first time did, except that a result that was not counted is now not
//! counted as a duplicate (the first answer's reason is not kept).
//!
//! A counted built result of a *probe* task (one task for a new version of a crate whose
//! last decision was "no binaries", see `ops/plan.rs`) marks the crate as having binaries and
//! plans the rest of that version's matrix, in the same transaction.

use buildsrs_domain::{Operator, Outcome};
use jiff::Timestamp;
use serde_json::json;

use crate::db::{Db, Dialect, artifact_at, params};
use crate::error::{Result, StoreError};
use crate::model::{
    AttestationId, BuildOutcome, BuilderStatus, LeaseState, LeasedTask, NotCounted, OutcomeKind,
    StoredBuild, Submission, SubmitCheck, SubmitReport, TaskId, TaskState, VersionPlan,
};
use crate::ops::plan::{Mode, plan_versions};
use crate::ops::{Credits, TaskRow, apply_verdict, counted_results, event};
use crate::policy::Policy;
use crate::rules::{Class, cap_log, cap_reason, decide};

/// The largest signed attestation accepted.
pub(crate) const MAX_SIGNED_BYTES: usize = 64 * 1024;

fn check_outcome(outcome: &BuildOutcome) -> Result<()> {
    if let Outcome::Built(StoredBuild { artifact, signed }) = outcome {
        if signed.is_empty() || signed.len() > MAX_SIGNED_BYTES {
            return Err(StoreError::invalid(format!(
                "a signed attestation is 1 to {MAX_SIGNED_BYTES} bytes, got {}",
                signed.len()
            )));
        }
        if i64::try_from(artifact.size).is_err() {
            return Err(StoreError::invalid("artifact size out of range"));
        }
    }
    Ok(())
}

/// What the lease's task is, for the submitter's check.
async fn leased_task(db: &mut dyn Db, task_id: i64) -> Result<LeasedTask> {
    let row = db
        .query_one(
            "SELECT c.name, v.version, v.cksum, tg.name, tc.name \
             FROM tasks t JOIN versions v ON v.id = t.version_id \
             JOIN crates c ON c.id = v.crate_id JOIN targets tg ON tg.id = t.target_id \
             JOIN toolchains tc ON tc.id = t.toolchain_id WHERE t.id = $1",
            params![task_id],
        )
        .await?;
    Ok(LeasedTask {
        task_id: TaskId(task_id),
        crate_name: row.get(0)?,
        version: row.get(1)?,
        cksum: row.get(2)?,
        target: row.get(3)?,
        toolchain: row.get(4)?,
    })
}

/// Records a result and decides its task.
pub(crate) async fn submit(
    db: &mut dyn Db,
    policy: &Policy,
    submission: &Submission,
    check: &SubmitCheck,
    now: Timestamp,
) -> Result<SubmitReport> {
    check_outcome(&submission.outcome)?;
    let lease_id = submission.lease_id.0;
    // Lock order: the task first, then the lease (see the `ops` module docs).
    let task_id: i64 = db
        .query_opt(
            "SELECT task_id FROM leases WHERE id = $1",
            params![lease_id],
        )
        .await?
        .ok_or_else(|| StoreError::not_found(format!("lease {lease_id}")))?
        .get(0)?;
    let mut task = TaskRow::lock(db, task_id).await?;
    let sql = format!(
        "SELECT l.task_id, l.builder_id, l.epoch, l.state, b.public_key, b.status, b.operator \
         FROM leases l JOIN builders b ON b.id = l.builder_id WHERE l.id = $1{}",
        match db.dialect() {
            Dialect::Postgres => " FOR UPDATE OF l",
            Dialect::Sqlite => "",
        }
    );
    let row = db.query_one(&sql, params![lease_id]).await?;
    let builder_id: i64 = row.get(1)?;
    let epoch: i64 = row.get(2)?;
    let lease_state: LeaseState = row.get::<String>(3)?.parse()?;
    let holder: buildsrs_keys::PublicKey = row.get(4)?;
    let status: BuilderStatus = row.get::<String>(5)?.parse()?;
    let operator: Option<Operator> = row.get(6)?;
    if holder != submission.builder {
        return Err(StoreError::conflict(format!(
            "lease {lease_id} is held by another builder"
        )));
    }
    if epoch != submission.epoch {
        return Err(StoreError::StaleEpoch {
            lease_id,
            given: submission.epoch,
            current: epoch,
        });
    }
    let leased = leased_task(db, task_id).await?;
    check(&leased).map_err(StoreError::Refused)?;

    if let Some(row) = db
        .query_opt(
            "SELECT id, counted, late FROM attestations WHERE lease_id = $1",
            params![lease_id],
        )
        .await?
    {
        let counted: bool = row.get(1)?;
        return Ok(SubmitReport {
            attestation_id: AttestationId(row.get(0)?),
            task: leased,
            counted,
            late: row.get(2)?,
            duplicate: true,
            task_state: task.state,
            decision: None,
            not_counted: (!counted).then_some(NotCounted::Duplicate),
        });
    }

    let late = lease_state != LeaseState::Active;
    if !late {
        db.execute(
            "UPDATE leases SET state = 'completed', ended_at = $2 WHERE id = $1",
            params![lease_id, now],
        )
        .await?;
        task.active_leases = task.active_leases.saturating_sub(1);
    }

    let kind = submission.outcome.kind();
    let not_counted = if kind.is_builder_fault() {
        Some(NotCounted::NodeError)
    } else if status != BuilderStatus::Approved {
        Some(NotCounted::BuilderNotApproved { status })
    } else if task.state == TaskState::Cancelled {
        Some(NotCounted::TaskCancelled {
            reason: task.reason.clone(),
        })
    } else if db
        .query_opt(
            "SELECT 1 FROM attestations WHERE task_id = $1 AND builder_id = $2 AND counted",
            params![task_id, builder_id],
        )
        .await?
        .is_some()
    {
        Some(NotCounted::AlreadyCounted)
    } else if let Some(operator) = operator
        && operator_counted(db, task_id, &operator).await?
    {
        Some(NotCounted::OperatorAlreadyCounted { operator })
    } else {
        None
    };
    let counted = not_counted.is_none();
    let attestation_id = record(
        db, policy, submission, task_id, builder_id, counted, late, now,
    )
    .await?;
    let mut credits = Credits::default();
    let mine = credits.of(builder_id);
    mine.seen = Some(now);
    match kind {
        OutcomeKind::Built => mine.built += 1,
        kind if kind.is_builder_fault() => mine.failed += 1,
        _ => {}
    }

    let mut decision = None;
    if kind.is_builder_fault() {
        if !late && task.is_open() {
            let what = match submission.outcome.reason() {
                Some(reason) if !reason.is_empty() => {
                    format!("{}: {}", kind.label(), cap_reason(reason))
                }
                _ => kind.label().to_owned(),
            };
            task.node_failure(db, policy, &what, now).await?;
        }
    } else if counted {
        task.counted += 1;
        if task.is_open() {
            let results = counted_results(db, task_id).await?;
            let verdict = decide(
                task.quorum,
                task.wanted,
                task.quorum + policy.max_extra_builds,
                &results,
            );
            decision =
                Some(apply_verdict(db, policy, &mut task, verdict, Some(&mut credits), now).await?);
        } else {
            judge_late(db, &task, submission, builder_id, &mut credits).await?;
        }
        // A built result against a decision ("no binaries" by a quorum) is not evidence
        // enough to plan more.
        if kind == OutcomeKind::Built && (task.is_open() || task.state == TaskState::Verified) {
            probe_built(db, policy, task_id, builder_id, now).await?;
        }
    }
    task.refresh_open(policy);
    task.save(db, now).await?;
    if late {
        event(
            db,
            now,
            "late_result",
            Some(task_id),
            Some(builder_id),
            json!({ "lease": lease_id, "lease_state": lease_state.as_str(), "counted": counted }),
        )
        .await?;
    }
    credits.flush(db).await?;
    Ok(SubmitReport {
        attestation_id,
        task: leased,
        counted,
        late,
        duplicate: false,
        task_state: task.state,
        decision,
        not_counted,
    })
}

/// Whether a key of `operator` has a counted result for the task. (A key that is its own
/// operator has no other keys: the builder's own check covers it.)
async fn operator_counted(db: &mut dyn Db, task_id: i64, operator: &Operator) -> Result<bool> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM attestations a JOIN builders b ON b.id = a.builder_id \
             WHERE a.task_id = $1 AND a.counted AND b.operator = $2",
            params![task_id, operator],
        )
        .await?
        .is_some())
}

/// After a counted built result: if its task is its version's probe, the crate has binaries
/// after all; plan the rest of the version's matrix. The crate row is written before the new
/// tasks (the lock order of `ops/mod.rs`).
async fn probe_built(
    db: &mut dyn Db,
    policy: &Policy,
    task_id: i64,
    builder_id: i64,
    now: Timestamp,
) -> Result<()> {
    let row = db
        .query_one(
            "SELECT v.id, v.crate_id, v.plan FROM tasks t JOIN versions v ON v.id = t.version_id \
             WHERE t.id = $1",
            params![task_id],
        )
        .await?;
    let plan: Option<VersionPlan> = row
        .get::<Option<String>>(2)?
        .map(|p| p.parse())
        .transpose()?;
    if plan != Some(VersionPlan::Probe) {
        return Ok(());
    }
    let version_id: i64 = row.get(0)?;
    let crate_id: i64 = row.get(1)?;
    db.execute(
        "UPDATE crates SET binaries = true WHERE id = $1 AND (binaries IS NULL OR NOT binaries)",
        params![crate_id],
    )
    .await?;
    let planned = plan_versions(db, policy, &[version_id], Mode::Replan, now).await?;
    event(
        db,
        now,
        "probe_built",
        Some(task_id),
        Some(builder_id),
        json!({ "tasks_planned": planned }),
    )
    .await
}

/// Inserts the result row and its capped log.
#[allow(clippy::too_many_arguments)]
async fn record(
    db: &mut dyn Db,
    policy: &Policy,
    submission: &Submission,
    task_id: i64,
    builder_id: i64,
    counted: bool,
    late: bool,
    now: Timestamp,
) -> Result<AttestationId> {
    let (hash, size, signed) = match &submission.outcome {
        Outcome::Built(StoredBuild { artifact, signed }) => (
            Some(artifact.blake3.to_hex()),
            i64::try_from(artifact.size).ok(),
            Some(signed.as_slice()),
        ),
        _ => (None, None, None),
    };
    let reason = submission.outcome.reason().map(cap_reason);
    let row = db
        .query_one(
            "INSERT INTO attestations (task_id, builder_id, lease_id, outcome, artifact_hash, \
                                       artifact_size, signed, reason, received_at, counted, late) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            params![
                task_id,
                builder_id,
                submission.lease_id.0,
                submission.outcome.kind().as_str(),
                hash.as_deref(),
                size,
                signed,
                reason.as_deref(),
                now,
                counted,
                late,
            ],
        )
        .await?;
    let id: i64 = row.get(0)?;
    if let Some(log) = &submission.log {
        let kept = cap_log(log, policy.max_log_bytes);
        db.execute(
            "INSERT INTO build_logs (attestation_id, log, original_len) VALUES ($1, $2, $3)",
            params![id, kept, i64::try_from(log.len()).unwrap_or(i64::MAX)],
        )
        .await?;
    }
    Ok(AttestationId(id))
}

/// Credits a counted result on a decided task as agreeing or outvoted.
async fn judge_late(
    db: &mut dyn Db,
    task: &TaskRow,
    submission: &Submission,
    builder_id: i64,
    credits: &mut Credits,
) -> Result<()> {
    let decided = match task.state {
        TaskState::Verified => {
            let row = db
                .query_one(
                    "SELECT t.artifact_hash, a.size FROM tasks t \
                     JOIN artifacts a ON a.hash = t.artifact_hash WHERE t.id = $1",
                    params![task.id],
                )
                .await?;
            artifact_at(&row, 0, 1)?.map(|a| Class::Built {
                hash: a.blake3,
                size: a.size,
            })
        }
        TaskState::NoBinaries => Some(Class::NoBinaries),
        TaskState::Failed => Some(Class::DoesNotBuild),
        _ => None,
    };
    let artifact = match &submission.outcome {
        Outcome::Built(StoredBuild { artifact, .. }) => Some(*artifact),
        _ => None,
    };
    if let (Some(decided), Some(mine)) = (decided, Class::of(submission.outcome.kind(), artifact)) {
        if decided == mine {
            credits.of(builder_id).agreed += 1;
        } else {
            credits.of(builder_id).outvoted += 1;
        }
    }
    Ok(())
}
