//! Index versions in, tasks out: upserting versions in batches, watching crates, and the
//! build matrix (targets × toolchains).
//!
//! A batch is checked whole before anything is written, so one bad line refuses the batch
//! and changes nothing. Within a batch, a version named twice keeps its last line (the index
//! appends newer states). Then, in one transaction:
//!
//! - new crates and versions are inserted; known versions get their yank state updated (the
//!   checksum and `rust-version` of a published version never change, so the first ones seen
//!   are kept);
//! - watched crates (every crate with [`Policy::plan_all_crates`]) get tasks by the rules of
//!   `ops/plan.rs`: at a crate's first sight (the batch that brings its first versions) its
//!   newest version and its backfill; after that, every new version;
//! - versions that became yanked get their undecided tasks cancelled (their active leases
//!   too: the nodes should stop), decided ones are kept — a yanked version's verified
//!   artifacts stay downloadable, as the crate itself does on crates.io;
//! - versions that were un-yanked get their yank-cancelled tasks requeued and, if the
//!   planner had chosen them (or they are now their crate's newest), any missing tasks
//!   planned (history stays unplanned).
//!
//! On Postgres the batch goes in with a handful of array (`unnest`) statements whatever its
//! size, which is what keeps ingest close to `COPY` speed; SQLite runs cheap prepared
//! statements per row inside the one transaction.
//!
//! Watching a crate records its backfill (kept for its first sight if the index has not shown
//! it yet) and plans its newest version and backfill from the versions already stored.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde_json::json;

use crate::db::{Db, Dialect, params};
use crate::error::{Result, StoreError};
use crate::model::{IndexVersion, IngestReport, MatrixEntry};
use crate::ops::plan::{Mode, Release, newest, plan_versions};
use crate::ops::{Matrix, event, for_versions, query_ids};
use crate::policy::Policy;
use buildsrs_domain::CrateName;
use buildsrs_keys::release::MAX_RUST_VERSION_LEN;

/// The most versions one batch may hold.
pub(crate) const MAX_BATCH: usize = 50_000;

/// Checks a crate name by the one rule (`buildsrs_domain::CrateName`: crates.io's).
pub(crate) fn check_crate_name(name: &str) -> Result<()> {
    name.parse::<CrateName>()
        .map(|_| ())
        .map_err(|error| StoreError::invalid(error.to_string()))
}

/// The longest download URL stored.
const MAX_DOWNLOAD_URL_LEN: usize = 2048;

/// What the types of an [`IndexVersion`] leave to check: its download URL and `rust-version`.
fn check_version(line: &IndexVersion) -> Result<()> {
    let url = &line.download_url;
    let url_ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= MAX_DOWNLOAD_URL_LEN
        && url.bytes().all(|b| b.is_ascii_graphic());
    if !url_ok {
        return Err(StoreError::invalid(format!(
            "{} {}: download URL {:?} is not an http(s) URL of at most \
             {MAX_DOWNLOAD_URL_LEN} printable characters",
            line.name,
            line.version,
            url.chars().take(80).collect::<String>()
        )));
    }
    if let Some(rust_version) = &line.rust_version
        && Release::parse_rust_version(rust_version).is_none()
    {
        return Err(StoreError::invalid(format!(
            "{} {}: rust-version {:?} is not one to three dot-separated numbers \
             (at most {MAX_RUST_VERSION_LEN} characters)",
            line.name,
            line.version,
            rust_version.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// What happened to one version line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// New and not yanked.
    NewLive,
    /// New but yanked.
    NewYanked,
    /// Known, now yanked.
    Yanked,
    /// Known, no longer yanked.
    Unyanked,
}

/// A version line that changed something.
#[derive(Clone, Debug)]
struct Changed {
    id: i64,
    crate_id: i64,
    version: String,
    change: Change,
}

/// What planning needs to know of a crate in the batch, read before its versions are written.
#[derive(Clone, Copy, Debug)]
struct CrateState {
    id: i64,
    watched: bool,
    backfill: u32,
    /// Whether the store held any version of it before this batch: if not, this batch is its
    /// first sight.
    seen_before: bool,
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
    let (crates, changes) = match db.dialect() {
        Dialect::Postgres => upsert_bulk(db, &lines, now, &mut report).await?,
        Dialect::Sqlite => upsert_rows(db, &lines, now, &mut report).await?,
    };
    let plans = |crate_id: i64| {
        crates
            .get(&crate_id)
            .is_some_and(|c| c.watched || policy.plan_all_crates)
    };

    // New versions to choose: all of them for crates seen before, the newest and the
    // backfill at a crate's first sight.
    let mut chosen: Vec<i64> = Vec::new();
    let mut first_sight: BTreeMap<i64, Vec<(i64, &str)>> = BTreeMap::new();
    for changed in changes.iter().filter(|c| plans(c.crate_id)) {
        let seen_before = crates.get(&changed.crate_id).is_some_and(|c| c.seen_before);
        match changed.change {
            Change::NewLive | Change::NewYanked if seen_before => chosen.push(changed.id),
            Change::NewLive => first_sight
                .entry(changed.crate_id)
                .or_default()
                .push((changed.id, changed.version.as_str())),
            _ => {}
        }
    }
    for (crate_id, versions) in &first_sight {
        let backfill = crates.get(crate_id).map_or(0, |c| c.backfill);
        chosen.extend(newest(versions, backfill));
    }
    // In version id order (the order the store first saw them), as tasks always were.
    chosen.sort_unstable();
    report.tasks_planned = plan_versions(db, policy, &chosen, Mode::Choose, now).await?;

    let ids = |change: Change, only_planned: bool| -> Vec<i64> {
        changes
            .iter()
            .filter(|c| c.change == change && (!only_planned || plans(c.crate_id)))
            .map(|c| c.id)
            .collect()
    };
    let unyanked = ids(Change::Unyanked, true);
    let yanked = ids(Change::Yanked, false);
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
        let newest_now = newest_unyanked(db, &changes, &unyanked).await?;
        report.tasks_planned += plan_versions(db, policy, &newest_now, Mode::Choose, now).await?;
        report.tasks_planned += plan_versions(db, policy, &unyanked, Mode::Replan, now).await?;
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
        let logged = |change: Change| -> Vec<i64> {
            changes
                .iter()
                .filter(|c| c.change == change)
                .map(|c| c.id)
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
                "yanked_version_ids": logged(Change::Yanked),
                "unyanked_version_ids": logged(Change::Unyanked),
            }),
        )
        .await?;
    }
    Ok(report)
}

/// Of the un-yanked versions `unyanked`, those that are now the newest of their crate among
/// the versions the planner chose (semver, the rule of [`newest`]): a crate whose newest
/// version was yanked when it was first planned builds it once it is back.
async fn newest_unyanked(
    db: &mut dyn Db,
    changes: &[Changed],
    unyanked: &[i64],
) -> Result<Vec<i64>> {
    let unyanked: std::collections::HashSet<i64> = unyanked.iter().copied().collect();
    let mut by_crate: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for changed in changes.iter().filter(|c| unyanked.contains(&c.id)) {
        by_crate
            .entry(changed.crate_id)
            .or_default()
            .push((changed.id, changed.version.clone()));
    }
    let crate_ids: Vec<i64> = by_crate.keys().copied().collect();
    for row in query_ids(
        db,
        &crate_ids,
        "SELECT crate_id, id, version FROM versions WHERE crate_id = {ids} AND plan IS NOT NULL",
    )
    .await?
    {
        let crate_id: i64 = row.get(0)?;
        let id: i64 = row.get(1)?;
        if let Some(versions) = by_crate.get_mut(&crate_id)
            && !versions.iter().any(|(known, _)| *known == id)
        {
            versions.push((id, row.get(2)?));
        }
    }
    let mut chosen = Vec::new();
    for versions in by_crate.values() {
        let candidates: Vec<(i64, &str)> =
            versions.iter().map(|(id, v)| (*id, v.as_str())).collect();
        chosen.extend(
            newest(&candidates, 0)
                .into_iter()
                .filter(|id| unyanked.contains(id)),
        );
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// The crates of a batch by id, and the lines that changed something.
type Upserted = (HashMap<i64, CrateState>, Vec<Changed>);

/// Reads a crate's planning state from `SELECT id, watched, backfill, <has versions>`.
fn crate_state(row: &crate::db::Row) -> Result<CrateState> {
    Ok(CrateState {
        id: row.get(0)?,
        watched: row.get(1)?,
        backfill: row.get(2)?,
        seen_before: row.get(3)?,
    })
}

/// Postgres: the whole batch in a few array statements.
async fn upsert_bulk(
    db: &mut dyn Db,
    lines: &[&IndexVersion],
    now: Timestamp,
    report: &mut IngestReport,
) -> Result<Upserted> {
    let mut names: Vec<String> = lines.iter().map(|l| l.name.to_string()).collect();
    names.dedup();
    report.crates_added = db
        .execute(
            "INSERT INTO crates (name, watched, first_seen) \
             SELECT n, false, $2::bigint FROM unnest($1::text[]) AS u(n) \
             ON CONFLICT (name) DO NOTHING",
            params![&names, now],
        )
        .await?;
    // Whether a crate had versions is read before this batch writes any (one index probe
    // per crate).
    let mut by_name: HashMap<String, CrateState> = HashMap::with_capacity(names.len());
    for row in db
        .query(
            "SELECT c.id, c.watched, c.backfill, \
                    EXISTS (SELECT 1 FROM versions v WHERE v.crate_id = c.id), c.name \
             FROM crates c WHERE c.name = ANY($1)",
            params![&names],
        )
        .await?
    {
        by_name.insert(row.get(4)?, crate_state(&row)?);
    }

    let mut crate_ids = Vec::with_capacity(lines.len());
    let mut versions = Vec::with_capacity(lines.len());
    let mut cksums = Vec::with_capacity(lines.len());
    let mut yanked = Vec::with_capacity(lines.len());
    let mut rust_versions = Vec::with_capacity(lines.len());
    let mut urls = Vec::with_capacity(lines.len());
    for line in lines {
        let state = by_name
            .get(line.name.as_str())
            .ok_or_else(|| StoreError::corrupt(format!("crate {} vanished", line.name)))?;
        crate_ids.push(state.id);
        versions.push(line.version.to_string());
        cksums.push(line.cksum.to_hex());
        yanked.push(line.yanked);
        rust_versions.push(line.rust_version.clone());
        urls.push(line.download_url.clone());
    }
    let rows = db
        .query(
            "INSERT INTO versions (crate_id, version, cksum, yanked, rust_version, first_seen, \
                                   download_url) \
             SELECT c, v, k, y, r, $6::bigint, d \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::text[], \
                         $7::text[]) AS u(c, v, k, y, r, d) \
             ON CONFLICT (crate_id, version) DO UPDATE SET yanked = excluded.yanked \
             WHERE versions.yanked <> excluded.yanked \
             RETURNING id, crate_id, yanked, (xmax = 0) AS inserted, version",
            params![
                &crate_ids,
                &versions,
                &cksums,
                &yanked,
                &rust_versions,
                now,
                &urls
            ],
        )
        .await?;
    // Known versions keep their row; their download URL follows the index (stored before
    // the column existed, or the registry's `dl` moved).
    db.execute(
        "UPDATE versions SET download_url = u.d \
         FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(c, v, d) \
         WHERE versions.crate_id = u.c AND versions.version = u.v \
           AND versions.download_url IS DISTINCT FROM u.d",
        params![&crate_ids, &versions, &urls],
    )
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let is_yanked: bool = row.get(2)?;
        let inserted: bool = row.get(3)?;
        let change = match (inserted, is_yanked) {
            (true, false) => Change::NewLive,
            (true, true) => Change::NewYanked,
            (false, true) => Change::Yanked,
            (false, false) => Change::Unyanked,
        };
        count(report, change);
        changes.push(Changed {
            id: row.get(0)?,
            crate_id: row.get(1)?,
            version: row.get(4)?,
            change,
        });
    }
    let crates = by_name.into_values().map(|c| (c.id, c)).collect();
    Ok((crates, changes))
}

/// SQLite: prepared statements per line, all in the one transaction.
async fn upsert_rows(
    db: &mut dyn Db,
    lines: &[&IndexVersion],
    now: Timestamp,
    report: &mut IngestReport,
) -> Result<Upserted> {
    let mut by_name: HashMap<&str, CrateState> = HashMap::new();
    let mut changes = Vec::new();
    for line in lines {
        let crate_id = match by_name.get(line.name.as_str()) {
            Some(known) => known.id,
            None => {
                // Read before this batch writes any of its versions (lines are sorted by
                // name, so a crate's lines come together).
                let found = db
                    .query_opt(
                        "SELECT id, watched, backfill, \
                                EXISTS (SELECT 1 FROM versions v WHERE v.crate_id = crates.id) \
                         FROM crates WHERE name = $1",
                        params![line.name.as_str()],
                    )
                    .await?;
                let state = match found {
                    Some(row) => crate_state(&row)?,
                    None => {
                        let row = db
                            .query_one(
                                "INSERT INTO crates (name, watched, first_seen) \
                                 VALUES ($1, false, $2) RETURNING id",
                                params![line.name.as_str(), now],
                            )
                            .await?;
                        report.crates_added += 1;
                        CrateState {
                            id: row.get(0)?,
                            watched: false,
                            backfill: 0,
                            seen_before: false,
                        }
                    }
                };
                by_name.insert(line.name.as_str(), state);
                state.id
            }
        };
        let existing = db
            .query_opt(
                "SELECT id, yanked, download_url FROM versions \
                 WHERE crate_id = $1 AND version = $2",
                params![crate_id, line.version.as_str()],
            )
            .await?;
        let change = match existing {
            None => {
                let cksum = line.cksum.to_hex();
                let row = db
                    .query_one(
                        "INSERT INTO versions (crate_id, version, cksum, yanked, rust_version, \
                                               first_seen, download_url) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                        params![
                            crate_id,
                            line.version.as_str(),
                            cksum.as_str(),
                            line.yanked,
                            line.rust_version.as_deref(),
                            now,
                            line.download_url.as_str()
                        ],
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
                let stored_url: Option<String> = row.get(2)?;
                if stored_url.as_deref() != Some(line.download_url.as_str()) {
                    db.execute(
                        "UPDATE versions SET download_url = $2 WHERE id = $1",
                        params![id, line.download_url.as_str()],
                    )
                    .await?;
                }
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
            changes.push(Changed {
                id,
                crate_id,
                version: line.version.to_string(),
                change,
            });
        }
    }
    let crates = by_name.into_values().map(|c| (c.id, c)).collect();
    Ok((crates, changes))
}

fn count(report: &mut IngestReport, change: Change) {
    match change {
        Change::NewLive | Change::NewYanked => report.versions_added += 1,
        Change::Yanked => report.versions_yanked += 1,
        Change::Unyanked => report.versions_unyanked += 1,
    }
}

/// Watches a crate (creating it if the index has not shown it yet) and records its backfill:
/// plans its newest version and the `backfill` next-older ones among those stored (none yet:
/// at its first sight). Returns the number of tasks planned.
pub(crate) async fn watch_crate(
    db: &mut dyn Db,
    policy: &Policy,
    name: &str,
    backfill: u32,
    now: Timestamp,
) -> Result<u64> {
    check_crate_name(name)?;
    // A backfill only grows: the tasks of a larger one exist already, and a restart that
    // watches the crate again without one must not undo what an operator asked for.
    let row = db
        .query_one(
            "INSERT INTO crates (name, watched, backfill, first_seen) VALUES ($1, true, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET watched = true, backfill = CASE \
                 WHEN excluded.backfill > crates.backfill THEN excluded.backfill \
                 ELSE crates.backfill END \
             RETURNING id, backfill",
            params![name, backfill, now],
        )
        .await?;
    let crate_id: i64 = row.get(0)?;
    let backfill = u32::try_from(row.get::<i64>(1)?).unwrap_or(backfill);
    let rows = db
        .query(
            "SELECT id, version FROM versions WHERE crate_id = $1 AND NOT yanked",
            params![crate_id],
        )
        .await?;
    let versions: Vec<(i64, String)> = rows
        .iter()
        .map(|row| Ok((row.get(0)?, row.get(1)?)))
        .collect::<Result<_>>()?;
    let candidates: Vec<(i64, &str)> = versions.iter().map(|(id, v)| (*id, v.as_str())).collect();
    let mut chosen = newest(&candidates, backfill);
    chosen.sort_unstable();
    let planned = plan_versions(db, policy, &chosen, Mode::Choose, now).await?;
    event(
        db,
        now,
        "crate_watched",
        None,
        None,
        json!({ "crate": name, "backfill": backfill, "tasks_planned": planned }),
    )
    .await?;
    Ok(planned)
}

/// Unwatches a crate (creating it if the index has not shown it yet, so that the choice is
/// kept). Its existing tasks are left alone.
pub(crate) async fn unwatch_crate(db: &mut dyn Db, name: &str, now: Timestamp) -> Result<()> {
    check_crate_name(name)?;
    db.execute(
        "INSERT INTO crates (name, watched, first_seen) VALUES ($1, false, $2) \
         ON CONFLICT (name) DO UPDATE SET watched = false",
        params![name, now],
    )
    .await?;
    event(
        db,
        now,
        "crate_unwatched",
        None,
        None,
        json!({ "crate": name }),
    )
    .await
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
    matrix.check(name)?;
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
