//! What an operator changes on a single task from the admin UI: its quorum.
//! (Priority and retrying a stopped task live with leasing, in [`super::lease`].)

use jiff::Timestamp;
use serde_json::json;

use crate::db::{Db, params};
use crate::error::{Result, StoreError};
use crate::model::{Decision, TaskId};
use crate::ops::{Credits, TaskRow, apply_verdict, counted_results, event};
use crate::policy::Policy;
use crate::rules::decide;

/// The largest quorum an operator can ask for: more independent builders than any network
/// of volunteers is likely to have for one target.
pub(crate) const MAX_QUORUM: u32 = 16;

/// Changes an open task's quorum and decides it again with the results it already has: a
/// lower quorum may verify it at once, a higher one wants more builds.
pub(crate) async fn set_quorum(
    db: &mut dyn Db,
    policy: &Policy,
    task_id: TaskId,
    quorum: u32,
    now: Timestamp,
) -> Result<Decision> {
    if !(1..=MAX_QUORUM).contains(&quorum) {
        return Err(StoreError::invalid(format!(
            "a quorum is 1 to {MAX_QUORUM} builders"
        )));
    }
    let mut task = TaskRow::lock(db, task_id.0).await?;
    if !task.is_open() {
        return Err(StoreError::conflict(format!(
            "task {task_id} is {}; only open tasks take a new quorum",
            task.state
        )));
    }
    let old = task.quorum;
    db.execute(
        "UPDATE tasks SET quorum = $2 WHERE id = $1",
        params![task.id, quorum],
    )
    .await?;
    task.quorum = quorum;
    // Start from the new quorum; a standing disagreement raises it again in `decide`.
    task.wanted = quorum;
    let results = counted_results(db, task.id).await?;
    task.counted = u32::try_from(results.len()).unwrap_or(u32::MAX);
    let verdict = decide(
        quorum,
        task.wanted,
        quorum + policy.max_extra_builds,
        &results,
    );
    let mut credits = Credits::default();
    let decision = apply_verdict(db, policy, &mut task, verdict, Some(&mut credits), now).await?;
    task.save(db, now).await?;
    credits.flush(db).await?;
    event(
        db,
        now,
        "task_quorum_changed",
        Some(task.id),
        None,
        json!({ "from": old, "to": quorum, "state": task.state.as_str() }),
    )
    .await?;
    Ok(decision)
}
