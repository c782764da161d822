//! Index versions in, tasks out: upserting versions in batches, watching crates, and the
//! build matrix (targets × toolchains).
//!
//! A batch is checked whole before anything is written, so one bad line refuses the batch
//! and changes nothing. Within a batch, a version named twice keeps its last line (the index
//! appends newer states). Then, in one transaction:
//!
//! - new crates and versions are inserted; known versions get their yank state updated (the
//!   checksum of a published version never changes, so the first one seen is kept);
//! - new non-yanked versions of watched crates (of every crate with
//!   [`Policy::plan_all_crates`]) get one task per enabled target × enabled toolchain;
//! - versions that became yanked get their undecided tasks cancelled (their active leases
//!   too: the nodes should stop), decided ones are kept — a yanked version's verified
//!   artifacts stay downloadable, as the crate itself does on crates.io;
//! - versions that were un-yanked get their yank-cancelled tasks requeued, and any missing
//!   tasks planned.
//!
//! On Postgres the batch goes in with a handful of array (`unnest`) statements whatever its
//! size, which is what keeps ingest close to `COPY` speed; SQLite runs cheap prepared
//! statements per row inside the one transaction.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::json;

use crate::db::{Db, Dialect, params};
use crate::error::{Result, StoreError};
use crate::model::{IndexVersion, IngestReport, MatrixEntry};
use crate::ops::{check_name, event, for_versions};
use crate::policy::Policy;

/// The most versions one batch may hold.
pub(crate) const MAX_BATCH: usize = 50_000;

/// Checks a crate name the way the registry spells them: 1 to 64 ASCII letters, digits, `-`
/// and `_`.
pub(crate) fn check_crate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "crate name {:?} is not 1 to 64 ASCII letters, digits, '-' or '_'",
            name.chars().take(80).collect::<String>()
        )))
    }
}

fn check_version(line: &IndexVersion) -> Result<()> {
    check_crate_name(&line.name)?;
    let version_ok = !line.version.is_empty()
        && line.version.len() <= 128
        && line.version.bytes().all(|b| b.is_ascii_graphic());
    if !version_ok {
        return Err(StoreError::invalid(format!(
            "{}: version {:?} is not 1 to 128 printable ASCII characters",
            line.name,
            line.version.chars().take(130).collect::<String>()
        )));
    }
    let cksum_ok = line.cksum.len() == 64
        && line
            .cksum
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !cksum_ok {
        return Err(StoreError::invalid(format!(
            "{} {}: cksum {:?} is not 64 lowercase hex digits",
            line.name,
            line.version,
            line.cksum.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// What happened to one version line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// New and not yanked: plan it (if its crate is watched).
    NewLive,
    /// New but yanked: just recorded.
    NewYanked,
    /// Known, now yanked.
    Yanked,
    /// Known, no longer yanked.
    Unyanked,
}

/// Upserts one batch of index lines and plans, cancels and requeues tasks accordingly.
pub(crate) async fn upsert_versions(
    db: &mut dyn Db,
    policy: &Policy,
    batch: &[IndexVersion],
    now: Timestamp,
) -> Result<IngestReport> {
    if batch.len() > MAX_BATCH {
        return Err(StoreError::invalid(format!(
            "a batch holds at most {MAX_BATCH} versions, got {}",
            batch.len()
        )));
    }
    for line in batch {
        check_version(line)?;
    }
    // Last line wins; sorted so concurrent writers lock rows in the same order.
    let mut lines: BTreeMap<(&str, &str), &IndexVersion> = BTreeMap::new();
    for line in batch {
        lines.insert((line.name.as_str(), line.version.as_str()), line);
    }
    let lines: Vec<&IndexVersion> = lines.into_values().collect();
    if lines.is_empty() {
        return Ok(IngestReport::default());
    }

    let mut report = IngestReport::default();
    // (version id, crate watched, change)
    let changes = match db.dialect() {
        Dialect::Postgres => upsert_bulk(db, &lines, now, &mut report).await?,
        Dialect::Sqlite => upsert_rows(db, &lines, now, &mut report).await?,
    };

    let plan = |change: Change| {
        changes
            .iter()
            .filter(|(_, watched, c)| *c == change && (*watched || policy.plan_all_crates))
            .map(|(id, _, _)| *id)
            .collect::<Vec<i64>>()
    };
    let new_live = plan(Change::NewLive);
    let unyanked = plan(Change::Unyanked);
    let yanked: Vec<i64> = changes
        .iter()
        .filter(|(_, _, c)| *c == Change::Yanked)
        .map(|(id, _, _)| *id)
        .collect();

    report.tasks_planned = plan_tasks(db, policy, &new_live, now).await?;
    if !unyanked.is_empty() {
        report.tasks_requeued = for_versions(
            db,
            &unyanked,
            "UPDATE tasks SET state = 'queued', cancel_cause = NULL, reason = NULL, \
             lease_limit = CASE WHEN wanted > counted THEN wanted - counted ELSE 0 END + $2, \
             updated_at = $3 \
             WHERE version_id = {version_ids} AND state = 'cancelled' AND cancel_cause = 'yanked'",
            params![policy.extra_leases, now],
        )
        .await?;
        report.tasks_planned += plan_tasks(db, policy, &unyanked, now).await?;
    }
    if !yanked.is_empty() {
        // Tasks first, then their leases: the lock order is task → lease.
        report.tasks_cancelled = for_versions(
            db,
            &yanked,
            "UPDATE tasks SET state = 'cancelled', cancel_cause = 'yanked', \
             reason = 'version yanked', lease_limit = 0, active_leases = 0, updated_at = $2 \
             WHERE version_id = {version_ids} AND decided_at IS NULL AND state <> 'cancelled'",
            params![now],
        )
        .await?;
        for_versions(
            db,
            &yanked,
            "UPDATE leases SET state = 'cancelled', ended_at = $2 WHERE state = 'active' \
             AND task_id IN (SELECT id FROM tasks WHERE version_id = {version_ids} \
                             AND state = 'cancelled' AND cancel_cause = 'yanked')",
            params![now],
        )
        .await?;
    }

    if report != IngestReport::default() {
        // Yank changes are rare and worth finding in the log; new versions are not listed.
        let ids = |change: Change| -> Vec<i64> {
            changes
                .iter()
                .filter(|(_, _, c)| *c == change)
                .map(|(id, _, _)| *id)
                .take(1000)
                .collect()
        };
        event(
            db,
            now,
            "index_batch",
            None,
            None,
            json!({
                "report": report,
                "yanked_version_ids": ids(Change::Yanked),
                "unyanked_version_ids": ids(Change::Unyanked),
            }),
        )
        .await?;
    }
    Ok(report)
}

/// Postgres: the whole batch in a few array statements. Returns the version id, whether its
/// crate is watched, and what changed, for each line that changed something.
async fn upsert_bulk(
    db: &mut dyn Db,
    lines: &[&IndexVersion],
    now: Timestamp,
    report: &mut IngestReport,
) -> Result<Vec<(i64, bool, Change)>> {
    let mut names: Vec<String> = lines.iter().map(|l| l.name.clone()).collect();
    names.dedup();
    report.crates_added = db
        .execute(
            "INSERT INTO crates (name, watched, first_seen) \
             SELECT n, false, $2::bigint FROM unnest($1::text[]) AS u(n) \
             ON CONFLICT (name) DO NOTHING",
            params![&names, now],
        )
        .await?;
    let mut crates: HashMap<String, (i64, bool)> = HashMap::with_capacity(names.len());
    for row in db
        .query(
            "SELECT id, name, watched FROM crates WHERE name = ANY($1)",
            params![&names],
        )
        .await?
    {
        crates.insert(row.get(1)?, (row.get(0)?, row.get(2)?));
    }

    let mut crate_ids = Vec::with_capacity(lines.len());
    let mut versions = Vec::with_capacity(lines.len());
    let mut cksums = Vec::with_capacity(lines.len());
    let mut yanked = Vec::with_capacity(lines.len());
    for line in lines {
        let (id, _) = crates
            .get(&line.name)
            .ok_or_else(|| StoreError::corrupt(format!("crate {} vanished", line.name)))?;
        crate_ids.push(*id);
        versions.push(line.version.clone());
        cksums.push(line.cksum.clone());
        yanked.push(line.yanked);
    }
    let rows = db
        .query(
            "INSERT INTO versions (crate_id, version, cksum, yanked, first_seen) \
             SELECT c, v, k, y, $5::bigint \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[]) AS u(c, v, k, y) \
             ON CONFLICT (crate_id, version) DO UPDATE SET yanked = excluded.yanked \
             WHERE versions.yanked <> excluded.yanked \
             RETURNING id, crate_id, yanked, (xmax = 0) AS inserted",
            params![&crate_ids, &versions, &cksums, &yanked, now],
        )
        .await?;
    let watched_crates: HashMap<i64, bool> = crates.values().copied().collect();
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0)?;
        let crate_id: i64 = row.get(1)?;
        let is_yanked: bool = row.get(2)?;
        let inserted: bool = row.get(3)?;
        let change = match (inserted, is_yanked) {
            (true, false) => Change::NewLive,
            (true, true) => Change::NewYanked,
            (false, true) => Change::Yanked,
            (false, false) => Change::Unyanked,
        };
        count(report, change);
        let watched = watched_crates.get(&crate_id).copied().unwrap_or(false);
        changes.push((id, watched, change));
    }
    Ok(changes)
}

/// SQLite: prepared statements per line, all in the one transaction.
async fn upsert_rows(
    db: &mut dyn Db,
    lines: &[&IndexVersion],
    now: Timestamp,
    report: &mut IngestReport,
) -> Result<Vec<(i64, bool, Change)>> {
    let mut crates: HashMap<&str, (i64, bool)> = HashMap::new();
    let mut changes = Vec::new();
    for line in lines {
        let (crate_id, watched) = match crates.get(line.name.as_str()) {
            Some(known) => *known,
            None => {
                let found = db
                    .query_opt(
                        "SELECT id, watched FROM crates WHERE name = $1",
                        params![&line.name],
                    )
                    .await?;
                let known = match found {
                    Some(row) => (row.get(0)?, row.get(1)?),
                    None => {
                        let row = db
                            .query_one(
                                "INSERT INTO crates (name, watched, first_seen) \
                                 VALUES ($1, false, $2) RETURNING id",
                                params![&line.name, now],
                            )
                            .await?;
                        report.crates_added += 1;
                        (row.get(0)?, false)
                    }
                };
                crates.insert(&line.name, known);
                known
            }
        };
        let existing = db
            .query_opt(
                "SELECT id, yanked FROM versions WHERE crate_id = $1 AND version = $2",
                params![crate_id, &line.version],
            )
            .await?;
        let change = match existing {
            None => {
                let row = db
                    .query_one(
                        "INSERT INTO versions (crate_id, version, cksum, yanked, first_seen) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        params![crate_id, &line.version, &line.cksum, line.yanked, now],
                    )
                    .await?;
                let change = if line.yanked {
                    Change::NewYanked
                } else {
                    Change::NewLive
                };
                Some((row.get(0)?, change))
            }
            Some(row) => {
                let id: i64 = row.get(0)?;
                let was_yanked: bool = row.get(1)?;
                if was_yanked == line.yanked {
                    None
                } else {
                    db.execute(
                        "UPDATE versions SET yanked = $2 WHERE id = $1",
                        params![id, line.yanked],
                    )
                    .await?;
                    let change = if line.yanked {
                        Change::Yanked
                    } else {
                        Change::Unyanked
                    };
                    Some((id, change))
                }
            }
        };
        if let Some((id, change)) = change {
            count(report, change);
            changes.push((id, watched, change));
        }
    }
    Ok(changes)
}

fn count(report: &mut IngestReport, change: Change) {
    match change {
        Change::NewLive | Change::NewYanked => report.versions_added += 1,
        Change::Yanked => report.versions_yanked += 1,
        Change::Unyanked => report.versions_unyanked += 1,
    }
}

/// Creates the missing tasks of these versions: one per enabled target × enabled toolchain.
async fn plan_tasks(
    db: &mut dyn Db,
    policy: &Policy,
    version_ids: &[i64],
    now: Timestamp,
) -> Result<u64> {
    for_versions(
        db,
        version_ids,
        "INSERT INTO tasks (version_id, target_id, toolchain_id, state, priority, quorum, wanted, \
                            lease_limit, created_at, updated_at) \
         SELECT v.id, tg.id, tc.id, 'queued', CAST($2 AS BIGINT), CAST($3 AS BIGINT), \
                CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS BIGINT), CAST($5 AS BIGINT) \
         FROM versions v CROSS JOIN targets tg CROSS JOIN toolchains tc \
         WHERE v.id = {version_ids} AND NOT v.yanked AND tg.enabled AND tc.enabled \
         ORDER BY v.id, tg.id, tc.id \
         ON CONFLICT (version_id, target_id, toolchain_id) DO NOTHING",
        params![
            policy.default_priority,
            policy.quorum,
            policy.quorum + policy.extra_leases,
            now,
        ],
    )
    .await
}

/// Watches or unwatches a crate (creating it if the index has not shown it yet). Watching
/// plans tasks for all its non-yanked versions; unwatching leaves existing tasks alone.
pub(crate) async fn set_crate_watched(
    db: &mut dyn Db,
    policy: &Policy,
    name: &str,
    watched: bool,
    now: Timestamp,
) -> Result<u64> {
    check_crate_name(name)?;
    db.execute(
        "INSERT INTO crates (name, watched, first_seen) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET watched = excluded.watched",
        params![name, watched, now],
    )
    .await?;
    let row = db
        .query_one("SELECT id FROM crates WHERE name = $1", params![name])
        .await?;
    let crate_id: i64 = row.get(0)?;
    event(
        db,
        now,
        if watched {
            "crate_watched"
        } else {
            "crate_unwatched"
        },
        None,
        None,
        json!({ "crate": name }),
    )
    .await?;
    if !watched {
        return Ok(0);
    }
    let versions: Vec<i64> = db
        .query(
            "SELECT id FROM versions WHERE crate_id = $1 AND NOT yanked ORDER BY id",
            params![crate_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    plan_tasks(db, policy, &versions, now).await
}

/// Which of the two matrix tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Matrix {
    Targets,
    Toolchains,
}

impl Matrix {
    fn table(self) -> &'static str {
        match self {
            Matrix::Targets => "targets",
            Matrix::Toolchains => "toolchains",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Matrix::Targets => "target",
            Matrix::Toolchains => "toolchain",
        }
    }
}

/// Adds a target or toolchain, or enables/disables it. Disabled entries get no new tasks and
/// their queued tasks are not leased; existing versions are not planned for a new entry.
pub(crate) async fn set_matrix_entry(
    db: &mut dyn Db,
    matrix: Matrix,
    name: &str,
    enabled: bool,
    now: Timestamp,
) -> Result<()> {
    check_name(matrix.what(), name)?;
    let sql = format!(
        "INSERT INTO {} (name, enabled) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled",
        matrix.table()
    );
    db.execute(&sql, params![name, enabled]).await?;
    event(
        db,
        now,
        "matrix_changed",
        None,
        None,
        json!({ matrix.what(): name, "enabled": enabled }),
    )
    .await
}

/// The targets or toolchains, by name.
pub(crate) async fn matrix(db: &mut dyn Db, matrix: Matrix) -> Result<Vec<MatrixEntry>> {
    let sql = format!("SELECT name, enabled FROM {} ORDER BY name", matrix.table());
    db.query(&sql, &[])
        .await?
        .iter()
        .map(|row| {
            Ok(MatrixEntry {
                name: row.get(0)?,
                enabled: row.get(1)?,
            })
        })
        .collect()
}
