//! The operations, written once over [`Db`] and run by either backend inside one transaction.
//!
//! Each submodule is one area: [`artifacts`] (downloads, storage keys), [`ingest`] (index
//! versions, watching, the build matrix), [`plan`] (which versions get built, with which
//! tasks), [`builders`] (registration, approval, revocation), [`lease`] (leasing, renewal,
//! expiry), [`submit`] (results and decisions), [`tasks`] (operator changes to a task) and
//! [`reads`] (what the UI and API show). This module
//! holds what they share: the task row and its state changes, applying a decision, input
//! checks and the event log.
//!
//! Read-modify-write always locks the rows it changes first (`FOR UPDATE` on Postgres; SQLite
//! write transactions are `BEGIN IMMEDIATE`, which locks the whole database). On Postgres
//! the lock order is task → lease → crate → new tasks → builders, the builders last and in
//! id order (their counters are collected in [`Credits`] and written at the end of the
//! operation), so that concurrent submissions, expiries and yanks cannot deadlock. (A
//! decision writes its crate's `binaries` only when that changes, and a probe that built
//! writes it before planning the rest of its version; watching locks the crate before
//! planning too.) Leasing locks the builder
//! first but never waits for a task (`SKIP LOCKED`). Revocation, which is rare, locks the
//! builder before its tasks; should it deadlock with a submission, Postgres aborts one of
//! them and the backend runs it again.

pub(crate) mod artifacts;
pub(crate) mod builders;
pub(crate) mod ingest;
pub(crate) mod lease;
pub(crate) mod plan;
pub(crate) mod providers;
pub(crate) mod reads;
pub(crate) mod submit;
pub(crate) mod tasks;

use buildsrs_domain::{TargetTriple, ToolchainRelease};
use jiff::Timestamp;
use serde_json::json;

use std::collections::BTreeMap;

use crate::db::{Db, Dialect, Param, Row, params};
use crate::error::{Result, StoreError};
use crate::model::{Decision, OutcomeKind, TaskState};
use crate::policy::Policy;
use crate::rules::{Class, CountedResult, Verdict};

/// The mutable part of a task, as read-modify-write operations see it.
#[derive(Clone, Debug)]
pub(crate) struct TaskRow {
    pub id: i64,
    pub state: TaskState,
    pub reason: Option<String>,
    pub cancel_cause: Option<String>,
    pub quorum: u32,
    pub wanted: u32,
    pub counted: u32,
    pub lease_limit: u32,
    pub active_leases: u32,
    pub attempts: u32,
    pub not_before: i64,
    pub artifact_hash: Option<String>,
    pub decided_at: Option<i64>,
}

const TASK_ROW_COLUMNS: &str = "id, state, reason, cancel_cause, quorum, wanted, counted, \
     lease_limit, active_leases, attempts, not_before, artifact_hash, decided_at";

impl TaskRow {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            state: row.get::<String>(1)?.parse()?,
            reason: row.get(2)?,
            cancel_cause: row.get(3)?,
            quorum: row.get(4)?,
            wanted: row.get(5)?,
            counted: row.get(6)?,
            lease_limit: row.get(7)?,
            active_leases: row.get(8)?,
            attempts: row.get(9)?,
            not_before: row.get(10)?,
            artifact_hash: row.get(11)?,
            decided_at: row.get(12)?,
        })
    }

    /// Loads and locks a task.
    pub(crate) async fn lock(db: &mut dyn Db, id: i64) -> Result<Self> {
        let sql = format!(
            "SELECT {TASK_ROW_COLUMNS} FROM tasks WHERE id = $1{}",
            db.for_update()
        );
        let row = db
            .query_opt(&sql, params![id])
            .await?
            .ok_or_else(|| StoreError::not_found(format!("task {id}")))?;
        Self::from_row(&row)
    }

    /// Writes every mutable column back.
    pub(crate) async fn save(&self, db: &mut dyn Db, now: Timestamp) -> Result<()> {
        db.execute(
            "UPDATE tasks SET state = $2, reason = $3, cancel_cause = $4, wanted = $5, \
             counted = $6, lease_limit = $7, active_leases = $8, attempts = $9, \
             not_before = $10, artifact_hash = $11, decided_at = $12, updated_at = $13 \
             WHERE id = $1",
            params![
                self.id,
                self.state.as_str(),
                self.reason.as_deref(),
                self.cancel_cause.as_deref(),
                self.wanted,
                self.counted,
                self.lease_limit,
                self.active_leases,
                self.attempts,
                self.not_before,
                self.artifact_hash.as_deref(),
                self.decided_at,
                now,
            ],
        )
        .await?;
        Ok(())
    }

    /// Open tasks still want results: queued, building, or a mismatch below its limit.
    pub(crate) fn is_open(&self) -> bool {
        self.decided_at.is_none() && self.state != TaskState::Cancelled
    }

    /// Recomputes an open task's state label and lease limit from its counters.
    pub(crate) fn refresh_open(&mut self, policy: &Policy) {
        if !self.is_open() {
            self.lease_limit = 0;
            return;
        }
        if self.state != TaskState::Mismatch {
            self.state = if self.active_leases > 0 {
                TaskState::Building
            } else {
                TaskState::Queued
            };
        }
        self.lease_limit = self.wanted.saturating_sub(self.counted) + policy.extra_leases;
    }

    /// Ends the task for good (until a revocation or un-yank reopens it): no more leases, and
    /// the active ones are cancelled.
    pub(crate) async fn close(
        &mut self,
        db: &mut dyn Db,
        state: TaskState,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<()> {
        db.execute(
            "UPDATE leases SET state = 'cancelled', ended_at = $2 \
             WHERE task_id = $1 AND state = 'active'",
            params![self.id, now],
        )
        .await?;
        self.state = state;
        self.reason = reason;
        self.lease_limit = 0;
        self.active_leases = 0;
        if state != TaskState::Cancelled {
            self.decided_at = Some(now.as_millisecond());
        }
        Ok(())
    }

    /// Records a node-side failure (an expired lease or a node error, already written) on an
    /// open task: backs off, or stops the task once the retry limit is reached by failures
    /// of builders of at least `quorum` distinct operators (one builder, or fewer operators
    /// than could decide the task, cannot stop it). Returns whether it stopped.
    pub(crate) async fn node_failure(
        &mut self,
        db: &mut dyn Db,
        policy: &Policy,
        what: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.attempts += 1;
        if self.attempts >= policy.max_node_failures
            && failing_builders(db, self.id).await? >= u64::from(self.quorum)
        {
            let reason = format!(
                "stopped after {} node-side failures (last: {what}); the crate is not at fault",
                self.attempts
            );
            self.close(db, TaskState::Cancelled, Some(reason.clone()), now)
                .await?;
            self.cancel_cause = Some("node_failures".to_owned());
            event(
                db,
                now,
                "task_stopped",
                Some(self.id),
                None,
                json!({ "reason": reason }),
            )
            .await?;
            return Ok(true);
        }
        self.not_before = now
            .as_millisecond()
            .saturating_add(policy.backoff_millis(self.attempts));
        self.refresh_open(policy);
        Ok(false)
    }
}

/// Who a builder row `b` counts as: its operator, or its own key when the admin named none.
/// An operator name never holds `:` and a key's text always does, so a key that is its own
/// operator is never taken for a named one.
pub(crate) const OPERATOR_OF_B: &str = "COALESCE(b.operator, b.public_key)";

/// How many distinct operators had a node-side failure on a task since an operator last
/// retried it: a node error (or a toolchain too old) reported, or a lease let expire. Keys of
/// one operator count once, so one operator cannot stop a task with many keys.
async fn failing_builders(db: &mut dyn Db, task_id: i64) -> Result<u64> {
    db.query_one(
        &format!(
            "SELECT COUNT(DISTINCT {OPERATOR_OF_B}) FROM ( \
                 SELECT builder_id, received_at AS at FROM attestations \
                 WHERE task_id = $1 AND outcome IN ('node_error', 'needs_newer_toolchain') \
                 UNION ALL \
                 SELECT builder_id, ended_at AS at FROM leases \
                 WHERE task_id = $1 AND state = 'expired') f \
             JOIN builders b ON b.id = f.builder_id \
             JOIN tasks t ON t.id = $1 WHERE f.at >= t.retried_at"
        ),
        params![task_id],
    )
    .await?
    .get(0)
}

/// The counted results of approved builders for a task, in the order they came.
pub(crate) async fn counted_results(db: &mut dyn Db, task_id: i64) -> Result<Vec<CountedResult>> {
    let rows = db
        .query(
            &format!(
                "SELECT a.id, a.builder_id, a.outcome, a.artifact_hash, a.artifact_size, \
                        a.reason, {OPERATOR_OF_B} \
                 FROM attestations a JOIN builders b ON b.id = a.builder_id \
                 WHERE a.task_id = $1 AND a.counted AND b.status = 'approved' ORDER BY a.id"
            ),
            params![task_id],
        )
        .await?;
    let mut results = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: OutcomeKind = row.get::<String>(2)?.parse()?;
        let artifact = crate::db::artifact_at(row, 3, 4)?;
        let class = Class::of(kind, artifact)
            .ok_or_else(|| StoreError::corrupt("a node error is marked counted"))?;
        results.push(CountedResult {
            attestation_id: row.get(0)?,
            builder_id: row.get(1)?,
            class,
            reason: row.get(5)?,
            kind,
            operator: row.get(6)?,
        });
    }
    Ok(results)
}

/// Applies a verdict to a (locked) task: writes artifacts, closes or reopens the task, and,
/// given `credits`, credits the winners and debits the outvoted. The caller saves the task.
pub(crate) async fn apply_verdict(
    db: &mut dyn Db,
    policy: &Policy,
    task: &mut TaskRow,
    verdict: Verdict,
    credits: Option<&mut Credits>,
    now: Timestamp,
) -> Result<Decision> {
    match verdict {
        Verdict::Pending { wanted } => {
            task.wanted = wanted;
            task.reason = None;
            task.decided_at = None;
            task.artifact_hash = None;
            task.cancel_cause = None;
            task.state = TaskState::Queued;
            task.refresh_open(policy);
            Ok(Decision::Pending {
                counted: task.counted,
                wanted,
            })
        }
        Verdict::Mismatch {
            wanted,
            exhausted,
            summary,
        } => {
            task.wanted = wanted;
            task.artifact_hash = None;
            if exhausted {
                task.close(db, TaskState::Mismatch, Some(summary.clone()), now)
                    .await?;
            } else {
                task.state = TaskState::Mismatch;
                task.reason = Some(summary.clone());
                task.decided_at = None;
                task.refresh_open(policy);
            }
            event(
                db,
                now,
                "task_mismatch",
                Some(task.id),
                None,
                json!({ "wanted": wanted, "final": exhausted, "summary": summary }),
            )
            .await?;
            Ok(Decision::Mismatch { wanted, exhausted })
        }
        Verdict::Decided {
            class,
            reason,
            winners,
            losers,
        } => {
            let decision = match &class {
                Class::Built { hash, size } => {
                    let hex = hash.to_hex();
                    let size = i64::try_from(*size)
                        .map_err(|_| StoreError::corrupt("artifact size out of range"))?;
                    db.execute(
                        "INSERT INTO artifacts (hash, size, verified_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (hash) DO UPDATE \
                         SET verified_at = COALESCE(artifacts.verified_at, excluded.verified_at)",
                        params![hex.as_str(), size, now],
                    )
                    .await?;
                    task.close(db, TaskState::Verified, None, now).await?;
                    task.artifact_hash = Some(hex);
                    remember_binaries(db, task.id, true).await?;
                    Decision::Verified {
                        artifact: buildsrs_keys::ArtifactId {
                            blake3: *hash,
                            size: size.unsigned_abs(),
                        },
                    }
                }
                Class::NoBinaries => {
                    task.close(db, TaskState::NoBinaries, None, now).await?;
                    task.artifact_hash = None;
                    remember_binaries(db, task.id, false).await?;
                    Decision::NoBinaries
                }
                Class::DoesNotBuild => {
                    let reason = reason.unwrap_or_else(|| "does not build".to_owned());
                    task.close(db, TaskState::Failed, Some(reason.clone()), now)
                        .await?;
                    task.artifact_hash = None;
                    Decision::Failed { reason }
                }
            };
            if let Some(credits) = credits {
                for id in &winners {
                    credits.of(*id).agreed += 1;
                }
                for id in &losers {
                    credits.of(*id).outvoted += 1;
                }
            }
            event(
                db,
                now,
                "task_decided",
                Some(task.id),
                None,
                json!({
                    "state": task.state.as_str(),
                    "artifact": task.artifact_hash,
                    "reason": task.reason,
                    "agreeing_builders": winners.len(),
                    "outvoted_builders": losers.len(),
                }),
            )
            .await?;
            Ok(decision)
        }
    }
}

/// Records on a task's crate whether it has binaries, as a decision just said (the planner
/// probes new versions of crates without; see `ops/plan.rs`). The row is written, and so
/// locked, only when the answer changes: most decisions leave it alone. "No binaries" for
/// one target does not outvote an artifact verified for another target of the same version
/// (a crate may build only for some targets, and the decisions come in any order).
async fn remember_binaries(db: &mut dyn Db, task_id: i64, binaries: bool) -> Result<()> {
    db.execute(
        "UPDATE crates SET binaries = $2 WHERE id = (SELECT v.crate_id FROM tasks t \
         JOIN versions v ON v.id = t.version_id WHERE t.id = $1) \
         AND (binaries IS NULL OR binaries <> $2) \
         AND ($2 OR NOT EXISTS (SELECT 1 FROM tasks o WHERE o.state = 'verified' \
              AND o.version_id = (SELECT version_id FROM tasks WHERE id = $1)))",
        params![task_id, binaries],
    )
    .await?;
    Ok(())
}

/// Changes to builders' counters, collected during an operation and written at its end in
/// builder id order (the last locks any operation takes; see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Credits {
    deltas: BTreeMap<i64, Delta>,
}

/// One builder's counter changes.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub built: i64,
    pub agreed: i64,
    pub outvoted: i64,
    pub failed: i64,
    pub seen: Option<Timestamp>,
}

impl Credits {
    /// The changes for one builder.
    pub(crate) fn of(&mut self, builder_id: i64) -> &mut Delta {
        self.deltas.entry(builder_id).or_default()
    }

    /// Writes the changes.
    pub(crate) async fn flush(self, db: &mut dyn Db) -> Result<()> {
        for (id, delta) in self.deltas {
            db.execute(
                "UPDATE builders SET built = built + $2, agreed = agreed + $3, \
                 outvoted = outvoted + $4, failed = failed + $5, \
                 last_seen = COALESCE($6, last_seen) WHERE id = $1",
                params![
                    id,
                    delta.built,
                    delta.agreed,
                    delta.outvoted,
                    delta.failed,
                    delta.seen,
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// Clears an artifact's verification when no verified task uses it any more.
pub(crate) async fn withdraw_artifact_if_unused(db: &mut dyn Db, hash: &str) -> Result<()> {
    db.execute(
        "UPDATE artifacts SET verified_at = NULL WHERE hash = $1 AND NOT EXISTS \
         (SELECT 1 FROM tasks WHERE artifact_hash = $1 AND state = 'verified')",
        params![hash],
    )
    .await?;
    Ok(())
}

/// Appends to the event log.
pub(crate) async fn event(
    db: &mut dyn Db,
    now: Timestamp,
    kind: &str,
    task_id: Option<i64>,
    builder_id: Option<i64>,
    detail: serde_json::Value,
) -> Result<()> {
    let detail = detail.to_string();
    db.execute(
        "INSERT INTO events (at, kind, task_id, builder_id, detail) VALUES ($1, $2, $3, $4, $5)",
        params![now, kind, task_id, builder_id, detail.as_str()],
    )
    .await?;
    Ok(())
}

/// Runs `sql` for each version id. The SQL says `version_id = {version_ids}`: on Postgres
/// that becomes one statement over an array, on SQLite one statement per id. Parameters
/// after the ids are `$2`, `$3`, ...
pub(crate) async fn for_versions(
    db: &mut dyn Db,
    ids: &[i64],
    sql: &str,
    rest: &[Param<'_>],
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    match db.dialect() {
        Dialect::Postgres => {
            let sql = sql.replace("{version_ids}", "ANY($1)");
            let mut all = vec![Param::IntArray(ids)];
            all.extend_from_slice(rest);
            db.execute(&sql, &all).await
        }
        Dialect::Sqlite => {
            let sql = sql.replace("{version_ids}", "$1");
            let mut changed = 0;
            for id in ids {
                let mut all = vec![Param::Int(*id)];
                all.extend_from_slice(rest);
                changed += db.execute(&sql, &all).await?;
            }
            Ok(changed)
        }
    }
}

/// Runs the query `sql` for each id and returns all rows, the same way as [`for_versions`]:
/// the SQL says `column = {ids}`, which is one statement over an array on Postgres, one
/// statement per id on SQLite (where rows come in the order of `ids`).
pub(crate) async fn query_ids(db: &mut dyn Db, ids: &[i64], sql: &str) -> Result<Vec<Row>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match db.dialect() {
        Dialect::Postgres => {
            let sql = sql.replace("{ids}", "ANY($1)");
            db.query(&sql, &[Param::IntArray(ids)]).await
        }
        Dialect::Sqlite => {
            let sql = sql.replace("{ids}", "$1");
            let mut rows = Vec::new();
            for id in ids {
                rows.extend(db.query(&sql, &[Param::Int(*id)]).await?);
            }
            Ok(rows)
        }
    }
}

/// Which entry of the build matrix a name is: a target triple or a toolchain release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Matrix {
    Targets,
    Toolchains,
}

impl Matrix {
    pub(crate) fn table(self) -> &'static str {
        match self {
            Matrix::Targets => "targets",
            Matrix::Toolchains => "toolchains",
        }
    }

    pub(crate) fn what(self) -> &'static str {
        match self {
            Matrix::Targets => "target",
            Matrix::Toolchains => "toolchain",
        }
    }

    /// Checks a name by the domain's one rule for it ([`TargetTriple`] or
    /// [`ToolchainRelease`]), the rule attestations are checked by: the store never holds a
    /// target or toolchain no attestation could name.
    pub(crate) fn check(self, name: &str) -> Result<()> {
        let checked = match self {
            Matrix::Targets => name.parse::<TargetTriple>().map(drop),
            Matrix::Toolchains => name.parse::<ToolchainRelease>().map(drop),
        };
        checked.map_err(|e| StoreError::invalid(format!("{}: {e}", self.what())))
    }
}
