//! The reads the UI and the API need. They run in read-only transactions (a consistent
//! snapshot on Postgres, a read connection on SQLite) and never change anything.

use std::collections::HashMap;

use buildsrs_domain::{
    ArtifactId, Blake3Hash, CrateVersion, PublicKey, TargetTriple, ToolchainRelease,
};
use jiff::Timestamp;

use crate::db::{Db, Dialect, FromCell, Row, artifact_at, params};
use crate::error::{Result, StoreError};
use crate::model::{
    ArtifactInfo, AttestationId, AttestationInfo, BuildLog, BuilderInfo, BuilderResult, CrateInfo,
    CrateSummary, DailyDownloads, Event, LeaseInfo, Page, Paged, QueueStats, TaskDetail, TaskId,
    TaskInfo, TaskState, VerifiedItem, VersionInfo, VersionSummary,
};
use crate::ops::ingest::check_crate_name;

const TASK_SELECT: &str = "SELECT t.id, c.name, v.version, tg.name, tc.name, t.state, t.reason, \
     t.priority, t.quorum, t.wanted, t.counted, t.active_leases, t.attempts, t.not_before, \
     t.artifact_hash, ar.size, t.created_at, t.updated_at, t.decided_at \
     FROM tasks t JOIN versions v ON v.id = t.version_id JOIN crates c ON c.id = v.crate_id \
     JOIN targets tg ON tg.id = t.target_id JOIN toolchains tc ON tc.id = t.toolchain_id \
     LEFT JOIN artifacts ar ON ar.hash = t.artifact_hash";

fn task_info(row: &Row) -> Result<TaskInfo> {
    Ok(TaskInfo {
        id: row.get(0)?,
        crate_name: row.get(1)?,
        version: row.get(2)?,
        target: row.get(3)?,
        toolchain: row.get(4)?,
        state: row.get::<String>(5)?.parse()?,
        reason: row.get(6)?,
        priority: row.get(7)?,
        quorum: row.get(8)?,
        wanted: row.get(9)?,
        counted: row.get(10)?,
        active_leases: row.get(11)?,
        attempts: row.get(12)?,
        not_before: row.get(13)?,
        artifact: artifact_at(row, 14, 15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        decided_at: row.get(18)?,
    })
}

const ATTESTATION_SELECT: &str = "SELECT a.id, a.task_id, a.lease_id, b.public_key, b.name, \
     a.outcome, a.artifact_hash, a.artifact_size, a.signed, a.reason, a.received_at, a.counted, \
     a.late FROM attestations a JOIN builders b ON b.id = a.builder_id";

fn attestation_info(row: &Row) -> Result<AttestationInfo> {
    Ok(AttestationInfo {
        id: AttestationId(row.get(0)?),
        task_id: row.get(1)?,
        lease_id: row.get(2)?,
        builder: row.get(3)?,
        builder_name: row.get(4)?,
        outcome: row.get::<String>(5)?.parse()?,
        artifact: artifact_at(row, 6, 7)?,
        signed: row.get(8)?,
        reason: row.get(9)?,
        received_at: row.get(10)?,
        counted: row.get(11)?,
        late: row.get(12)?,
    })
}

fn collect<T>(rows: &[Row], f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// The database's schema version.
pub(crate) async fn schema_version(db: &mut dyn Db) -> Result<i64> {
    db.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        &[],
    )
    .await?
    .get(0)
}

/// Whether a search text could be part of a crate name at all: names hold only ASCII
/// letters, digits, `-` and `_`. Anything else matches nothing (and so never reaches SQL,
/// where `%` or `\` would need escaping).
fn could_be_in_a_name(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Turns a search text (already lowered, and one that [`could_be_in_a_name`]) into a `LIKE`
/// pattern for "contains": `-` and `_` match each other, as the registry treats them as the
/// same in names.
fn like_pattern(text: &str) -> String {
    format!("%{}%", text.replace('-', "_"))
}

/// The `WHERE` condition finding the crates whose name matches the `LIKE` pattern `$1`.
/// Both backends keep a trigram index of the names (migration 5) that answers it when the
/// text has three letters or digits in a row; shorter texts scan the table either way.
fn name_matches(dialect: Dialect, text: &str) -> &'static str {
    match dialect {
        // The planner picks the GIN index over this expression when the pattern has
        // trigrams (names are ASCII: the "C" collation lowers them cheaply).
        Dialect::Postgres => "lower(c.name COLLATE \"C\") LIKE $1",
        // FTS5 answers LIKE on its column from the index (case-insensitively, as SQLite's
        // LIKE is for ASCII), and with fewer than three literal characters in a row it would
        // read its whole index: the table is then the cheaper scan.
        Dialect::Sqlite if text.split(['-', '_']).any(|run| run.len() >= 3) => {
            "c.id IN (SELECT rowid FROM crate_name_trigrams WHERE name LIKE $1)"
        }
        Dialect::Sqlite => "c.name LIKE $1",
    }
}

/// Crates whose name contains `query` (case-insensitive), exact match first, then shorter
/// names, then by name.
pub(crate) async fn search_crates(
    db: &mut dyn Db,
    query: &str,
    page: Page,
) -> Result<Paged<CrateSummary>> {
    if query.chars().count() > 64 {
        return Err(StoreError::invalid("a search is at most 64 characters"));
    }
    let page = Page {
        offset: page.offset,
        limit: page.limit.min(Page::MAX_LIMIT),
    };
    let offset =
        i64::try_from(page.offset).map_err(|_| StoreError::invalid("page offset out of range"))?;
    let text = query.trim().to_ascii_lowercase();
    if !could_be_in_a_name(&text) {
        return Ok(Paged {
            items: Vec::new(),
            total: 0,
            page,
        });
    }
    let pattern = like_pattern(&text);
    let matches = name_matches(db.dialect(), &text);
    if db.dialect() == Dialect::Postgres {
        // The pool's connections force generic plans (`plan_cache_mode`, see postgres.rs),
        // and for `LIKE $1` with an unknown pattern the planner does not choose the trigram
        // index; a plan made for this pattern uses it (or, for `%s%`, knows a scan is
        // cheaper).
        db.execute("SET LOCAL plan_cache_mode = force_custom_plan", params![])
            .await?;
    }
    // One scan: the total rides along with each row of the page, and versions are counted
    // for the page's rows only.
    let dialect = db.dialect();
    let order = |t: &str| {
        let lowered = match dialect {
            Dialect::Postgres => format!("lower({t}.name COLLATE \"C\")"),
            Dialect::Sqlite => format!("lower({t}.name)"),
        };
        format!("({lowered} = $2) DESC, length({t}.name), {t}.name")
    };
    let rows = db
        .query(
            &format!(
                "SELECT p.name, p.watched, \
                        (SELECT COUNT(*) FROM versions v WHERE v.crate_id = p.id), \
                        p.first_seen, p.total \
                 FROM (SELECT c.id, c.name, c.watched, c.first_seen, COUNT(*) OVER () AS total \
                       FROM crates c WHERE {matches} \
                       ORDER BY {} LIMIT $3 OFFSET $4) p \
                 ORDER BY {}",
                order("c"),
                order("p"),
            ),
            params![&pattern, &text, page.limit, offset],
        )
        .await?;
    let total: u64 = match rows.first() {
        Some(row) => row.get(4)?,
        // A page past the end has no row to carry the total: count separately.
        None if offset > 0 => db
            .query_one(
                &format!("SELECT COUNT(*) FROM crates c WHERE {matches}"),
                params![&pattern],
            )
            .await?
            .get(0)?,
        None => 0,
    };
    let items = collect(&rows, |row| {
        Ok(CrateSummary {
            name: row.get(0)?,
            watched: row.get(1)?,
            versions: row.get(2)?,
            first_seen: row.get(3)?,
        })
    })?;
    Ok(Paged { items, total, page })
}

/// The names of every watched crate, sorted.
pub(crate) async fn watched_crates(db: &mut dyn Db) -> Result<Vec<String>> {
    let rows = db
        .query(
            "SELECT name FROM crates WHERE watched ORDER BY name",
            params![],
        )
        .await?;
    collect(&rows, |row| row.get(0))
}

/// The columns [`version_summary`] reads, of `versions` as `v`.
const VERSION_COLUMNS: &str =
    "v.version, v.cksum, v.yanked, v.first_seen, v.rust_version, v.plan, v.plan_note";

fn version_summary(row: &Row, at: usize) -> Result<VersionSummary> {
    Ok(VersionSummary {
        version: row.get(at)?,
        cksum: row.get(at + 1)?,
        yanked: row.get(at + 2)?,
        first_seen: row.get(at + 3)?,
        rust_version: row.get(at + 4)?,
        plan: row
            .get::<Option<String>>(at + 5)?
            .map(|p| p.parse())
            .transpose()?,
        plan_note: row.get(at + 6)?,
    })
}

/// A crate and its versions.
pub(crate) async fn crate_info(db: &mut dyn Db, name: &str) -> Result<Option<CrateInfo>> {
    check_crate_name(name)?;
    let Some(row) = db
        .query_opt(
            "SELECT id, name, watched, first_seen, backfill, binaries FROM crates WHERE name = $1",
            params![name],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.get(0)?;
    let versions = db
        .query(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM versions v WHERE v.crate_id = $1 \
                 ORDER BY v.first_seen DESC, v.id DESC"
            ),
            params![id],
        )
        .await?;
    Ok(Some(CrateInfo {
        name: row.get(1)?,
        watched: row.get(2)?,
        first_seen: row.get(3)?,
        backfill: row.get(4)?,
        binaries: row.get(5)?,
        versions: collect(&versions, |row| version_summary(row, 0))?,
    }))
}

/// A crate, its versions, and the tasks of its `newest` newest versions, read in one
/// transaction (the crate page's one store call).
pub(crate) async fn crate_with_tasks(
    db: &mut dyn Db,
    name: &str,
    newest: u32,
) -> Result<Option<(CrateInfo, Vec<VersionInfo>)>> {
    let Some(info) = crate_info(db, name).await? else {
        return Ok(None);
    };
    let tasks = db
        .query(
            &format!(
                "{TASK_SELECT} WHERE v.id IN (SELECT id FROM versions WHERE crate_id = \
                 (SELECT id FROM crates WHERE name = $1) \
                 ORDER BY first_seen DESC, id DESC LIMIT $2) ORDER BY tg.name, tc.name"
            ),
            params![name, newest],
        )
        .await?;
    let mut tasks_of: HashMap<CrateVersion, Vec<TaskInfo>> = HashMap::new();
    for row in &tasks {
        let task = task_info(row)?;
        tasks_of.entry(task.version.clone()).or_default().push(task);
    }
    let versions = info
        .versions
        .iter()
        .take(newest as usize)
        .map(|version| VersionInfo {
            crate_name: info.name.clone(),
            version: version.clone(),
            tasks: tasks_of.remove(&version.version).unwrap_or_default(),
        })
        .collect();
    Ok(Some((info, versions)))
}

/// A version and its tasks.
pub(crate) async fn version_info(
    db: &mut dyn Db,
    name: &str,
    version: &str,
) -> Result<Option<VersionInfo>> {
    Ok(version_row_and_tasks(db, name, version)
        .await?
        .map(|(_, info)| info))
}

/// A version's row id, and the version with its tasks.
async fn version_row_and_tasks(
    db: &mut dyn Db,
    name: &str,
    version: &str,
) -> Result<Option<(i64, VersionInfo)>> {
    check_crate_name(name)?;
    let Some(row) = db
        .query_opt(
            &format!(
                "SELECT v.id, c.name, {VERSION_COLUMNS} FROM versions v \
                 JOIN crates c ON c.id = v.crate_id WHERE c.name = $1 AND v.version = $2"
            ),
            params![name, version],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.get(0)?;
    let tasks = db
        .query(
            &format!("{TASK_SELECT} WHERE t.version_id = $1 ORDER BY tg.name, tc.name"),
            params![id],
        )
        .await?;
    let info = VersionInfo {
        crate_name: row.get(1)?,
        version: version_summary(&row, 2)?,
        tasks: collect(&tasks, task_info)?,
    };
    Ok(Some((id, info)))
}

/// A version, its tasks, and each task's leases and results, read in one transaction (the
/// version page's one store call: one snapshot, one pool checkout, four queries however
/// many targets the version has).
pub(crate) async fn version_details(
    db: &mut dyn Db,
    name: &str,
    version: &str,
) -> Result<Option<(VersionInfo, Vec<TaskDetail>)>> {
    let Some((version_id, info)) = version_row_and_tasks(db, name, version).await? else {
        return Ok(None);
    };
    let of_version = "IN (SELECT id FROM tasks WHERE version_id = $1)";
    let leases = db
        .query(
            &format!("{LEASE_SELECT} WHERE l.task_id {of_version} ORDER BY l.id"),
            params![version_id],
        )
        .await?;
    let results = db
        .query(
            &format!("{ATTESTATION_SELECT} WHERE a.task_id {of_version} ORDER BY a.id"),
            params![version_id],
        )
        .await?;
    let mut details: Vec<TaskDetail> = info
        .tasks
        .iter()
        .map(|task| TaskDetail {
            task: task.clone(),
            leases: Vec::new(),
            results: Vec::new(),
        })
        .collect();
    let position: HashMap<TaskId, usize> = info
        .tasks
        .iter()
        .enumerate()
        .map(|(i, task)| (task.id, i))
        .collect();
    let at = |id: TaskId| -> Result<usize> {
        position.get(&id).copied().ok_or_else(|| {
            StoreError::corrupt(format!(
                "a lease or result of {name} {version} names {id}, not one of its tasks"
            ))
        })
    };
    for row in &leases {
        let lease = lease_info(row)?;
        details[at(lease.task_id)?].leases.push(lease);
    }
    for row in &results {
        let result = attestation_info(row)?;
        details[at(result.task_id)?].results.push(result);
    }
    Ok(Some((info, details)))
}

const LEASE_SELECT: &str = "SELECT l.id, l.task_id, b.public_key, l.epoch, l.state, \
     l.granted_at, l.deadline, l.ended_at FROM leases l JOIN builders b ON b.id = l.builder_id";

fn lease_info(row: &Row) -> Result<LeaseInfo> {
    Ok(LeaseInfo {
        id: row.get(0)?,
        task_id: row.get(1)?,
        builder: row.get(2)?,
        epoch: row.get(3)?,
        state: row.get::<String>(4)?.parse()?,
        granted_at: row.get(5)?,
        deadline: row.get(6)?,
        ended_at: row.get(7)?,
    })
}

/// A task with its leases and results.
pub(crate) async fn task(db: &mut dyn Db, id: TaskId) -> Result<Option<TaskDetail>> {
    let Some(row) = db
        .query_opt(&format!("{TASK_SELECT} WHERE t.id = $1"), params![id.0])
        .await?
    else {
        return Ok(None);
    };
    let task = task_info(&row)?;
    let leases = db
        .query(
            &format!("{LEASE_SELECT} WHERE l.task_id = $1 ORDER BY l.id"),
            params![id.0],
        )
        .await?;
    let results = db
        .query(
            &format!("{ATTESTATION_SELECT} WHERE a.task_id = $1 ORDER BY a.id"),
            params![id.0],
        )
        .await?;
    Ok(Some(TaskDetail {
        task,
        leases: collect(&leases, lease_info)?,
        results: collect(&results, attestation_info)?,
    }))
}

/// A verified (or once verified) artifact with its tasks, attestations and downloads.
pub(crate) async fn artifact(db: &mut dyn Db, hash: &Blake3Hash) -> Result<Option<ArtifactInfo>> {
    let hex = hash.to_hex();
    let Some(row) = db
        .query_opt(
            "SELECT size, storage_key, verified_at FROM artifacts WHERE hash = $1",
            params![hex.as_str()],
        )
        .await?
    else {
        return Ok(None);
    };
    let size: u64 = row.get(0)?;
    let tasks = db
        .query(
            &format!(
                "{TASK_SELECT} WHERE t.artifact_hash = $1 AND t.state = 'verified' ORDER BY t.id"
            ),
            params![hex.as_str()],
        )
        .await?;
    let attestations = db
        .query(
            &format!(
                "{ATTESTATION_SELECT} WHERE a.artifact_hash = $1 AND a.artifact_size = $2 \
                 AND a.counted AND b.status = 'approved' ORDER BY a.id"
            ),
            params![hex.as_str(), i64::try_from(size).unwrap_or(i64::MAX)],
        )
        .await?;
    let downloads = db
        .query(
            "SELECT day, count FROM artifact_downloads WHERE hash = $1 ORDER BY day DESC LIMIT 30",
            params![hex.as_str()],
        )
        .await?;
    let downloads = collect(&downloads, |row| {
        let day: i64 = row.get(0)?;
        let date = Timestamp::from_second(day.saturating_mul(86_400))
            .map_err(|_| StoreError::corrupt("download day out of range"))?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        Ok(DailyDownloads {
            day: date,
            count: row.get(1)?,
        })
    })?;
    Ok(Some(ArtifactInfo {
        artifact: ArtifactId {
            blake3: *hash,
            size,
        },
        storage_key: row.get(1)?,
        verified_at: row.get(2)?,
        tasks: collect(&tasks, task_info)?,
        attestations: collect(&attestations, attestation_info)?,
        downloads,
    }))
}

const BUILDER_SELECT: &str = "SELECT id, public_key, name, status, registered_at, last_seen, \
     built, agreed, outvoted, failed, operator FROM builders";

fn builder_info(row: &Row, capabilities: &Capabilities) -> Result<BuilderInfo> {
    let id: i64 = row.get(0)?;
    Ok(BuilderInfo {
        public_key: row.get(1)?,
        name: row.get(2)?,
        status: row.get::<String>(3)?.parse()?,
        operator: row.get(10)?,
        targets: capabilities.targets.get(&id).cloned().unwrap_or_default(),
        toolchains: capabilities
            .toolchains
            .get(&id)
            .cloned()
            .unwrap_or_default(),
        registered_at: row.get(4)?,
        last_seen: row.get(5)?,
        built: row.get(6)?,
        agreed: row.get(7)?,
        outvoted: row.get(8)?,
        failed: row.get(9)?,
    })
}

struct Capabilities {
    targets: HashMap<i64, Vec<TargetTriple>>,
    toolchains: HashMap<i64, Vec<ToolchainRelease>>,
}

async fn capabilities(db: &mut dyn Db, only: Option<(i64, i64)>) -> Result<Capabilities> {
    Ok(Capabilities {
        targets: capability_table(db, "builder_targets", only).await?,
        toolchains: capability_table(db, "builder_toolchains", only).await?,
    })
}

/// One capability table by builder id, each entry read through its type's rule.
async fn capability_table<T: FromCell>(
    db: &mut dyn Db,
    table: &str,
    only: Option<(i64, i64)>,
) -> Result<HashMap<i64, Vec<T>>> {
    let rows = match only {
        Some((first, last)) => {
            db.query(
                &format!(
                    "SELECT builder_id, name FROM {table} WHERE builder_id BETWEEN $1 AND $2 \
                     ORDER BY builder_id, name"
                ),
                params![first, last],
            )
            .await?
        }
        None => {
            db.query(
                &format!("SELECT builder_id, name FROM {table} ORDER BY builder_id, name"),
                &[],
            )
            .await?
        }
    };
    let mut map: HashMap<i64, Vec<T>> = HashMap::new();
    for row in rows {
        map.entry(row.get(0)?).or_default().push(row.get(1)?);
    }
    Ok(map)
}

/// One builder by id.
pub(crate) async fn load_builder(db: &mut dyn Db, id: i64) -> Result<BuilderInfo> {
    let row = db
        .query_opt(&format!("{BUILDER_SELECT} WHERE id = $1"), params![id])
        .await?
        .ok_or_else(|| StoreError::not_found(format!("builder #{id}")))?;
    let caps = capabilities(db, Some((id, id))).await?;
    builder_info(&row, &caps)
}

/// One builder by key.
pub(crate) async fn builder(db: &mut dyn Db, key: &PublicKey) -> Result<Option<BuilderInfo>> {
    let key = key.to_string();
    let Some(row) = db
        .query_opt(
            &format!("{BUILDER_SELECT} WHERE public_key = $1"),
            params![&key],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.get(0)?;
    let caps = capabilities(db, Some((id, id))).await?;
    builder_info(&row, &caps).map(Some)
}

/// All builders, oldest first.
pub(crate) async fn builders(db: &mut dyn Db) -> Result<Vec<BuilderInfo>> {
    let rows = db
        .query(&format!("{BUILDER_SELECT} ORDER BY id"), &[])
        .await?;
    let caps = capabilities(db, None).await?;
    collect(&rows, |row| builder_info(row, &caps))
}

/// A page of builders in the order they registered, and how many there are: what a list
/// shows, however many keys have said hello.
pub(crate) async fn builders_page(db: &mut dyn Db, page: Page) -> Result<Paged<BuilderInfo>> {
    let page = Page {
        offset: page.offset,
        limit: page.limit.min(Page::MAX_LIMIT),
    };
    let offset =
        i64::try_from(page.offset).map_err(|_| StoreError::invalid("page offset out of range"))?;
    let total: u64 = db
        .query_one("SELECT COUNT(*) FROM builders", &[])
        .await?
        .get(0)?;
    let rows = db
        .query(
            &format!("{BUILDER_SELECT} ORDER BY id LIMIT $1 OFFSET $2"),
            params![page.limit, offset],
        )
        .await?;
    // Ids ascend: the page's capabilities are those of the ids between its first and last.
    let span = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => (first.get::<i64>(0)?, last.get::<i64>(0)?),
        _ => {
            return Ok(Paged {
                items: Vec::new(),
                total,
                page,
            });
        }
    };
    let caps = capabilities(db, Some(span)).await?;
    Ok(Paged {
        items: collect(&rows, |row| builder_info(row, &caps))?,
        total,
        page,
    })
}

/// Approved builders seen since `since`: the home page's "online" count.
pub(crate) async fn builders_seen_since(db: &mut dyn Db, since: Timestamp) -> Result<u64> {
    db.query_one(
        "SELECT COUNT(*) FROM builders WHERE status = 'approved' AND last_seen >= $1",
        params![since],
    )
    .await?
    .get(0)
}

/// Counts of tasks, leases, builders, crates and artifacts.
pub(crate) async fn queue_stats(db: &mut dyn Db, now: Timestamp) -> Result<QueueStats> {
    let mut stats = QueueStats::default();
    for row in db
        .query("SELECT state, COUNT(*) FROM tasks GROUP BY state", &[])
        .await?
    {
        let count: u64 = row.get(1)?;
        match row.get::<String>(0)?.parse()? {
            TaskState::Queued => stats.queued = count,
            TaskState::Building => stats.building = count,
            TaskState::Verified => stats.verified = count,
            TaskState::Mismatch => stats.mismatch = count,
            TaskState::Failed => stats.failed = count,
            TaskState::NoBinaries => stats.no_binaries = count,
            TaskState::Cancelled => stats.cancelled = count,
        }
    }
    for row in db
        .query("SELECT status, COUNT(*) FROM builders GROUP BY status", &[])
        .await?
    {
        let count: u64 = row.get(1)?;
        match row.get::<String>(0)?.as_str() {
            "pending" => stats.builders_pending = count,
            "approved" => stats.builders_approved = count,
            _ => stats.builders_revoked = count,
        }
    }
    let mut count = async |sql: &str, now: Option<Timestamp>| -> Result<u64> {
        match now {
            Some(now) => db.query_one(sql, params![now]).await?.get(0),
            None => db.query_one(sql, &[]).await?.get(0),
        }
    };
    stats.ready = count(
        "SELECT COUNT(*) FROM tasks WHERE active_leases < lease_limit AND not_before <= $1",
        Some(now),
    )
    .await?;
    stats.active_leases = count("SELECT COUNT(*) FROM leases WHERE state = 'active'", None).await?;
    stats.crates = count("SELECT COUNT(*) FROM crates", None).await?;
    stats.versions = count("SELECT COUNT(*) FROM versions", None).await?;
    stats.artifacts_verified = count(
        "SELECT COUNT(*) FROM artifacts WHERE verified_at IS NOT NULL",
        None,
    )
    .await?;
    Ok(stats)
}

/// The most recently verified tasks.
pub(crate) async fn recently_verified(db: &mut dyn Db, limit: u32) -> Result<Vec<VerifiedItem>> {
    let rows = db
        .query(
            &format!(
                "{TASK_SELECT} WHERE t.state = 'verified' \
                 ORDER BY t.decided_at DESC, t.id DESC LIMIT $1"
            ),
            params![limit.min(Page::MAX_LIMIT)],
        )
        .await?;
    collect(&rows, |row| {
        let task = task_info(row)?;
        Ok(VerifiedItem {
            task_id: task.id,
            artifact: task
                .artifact
                .ok_or_else(|| StoreError::corrupt("verified task without artifact"))?,
            verified_at: task
                .decided_at
                .ok_or_else(|| StoreError::corrupt("verified task without decision time"))?,
            crate_name: task.crate_name,
            version: task.version,
            target: task.target,
            toolchain: task.toolchain,
        })
    })
}

/// Events after `after` (an event id), oldest first.
pub(crate) async fn events(db: &mut dyn Db, after: i64, limit: u32) -> Result<Vec<Event>> {
    let rows = db
        .query(
            "SELECT e.id, e.at, e.kind, e.task_id, b.public_key, e.detail FROM events e \
             LEFT JOIN builders b ON b.id = e.builder_id WHERE e.id > $1 ORDER BY e.id LIMIT $2",
            params![after, limit.min(1000)],
        )
        .await?;
    collect(&rows, |row| {
        let detail: String = row.get(5)?;
        Ok(Event {
            id: row.get(0)?,
            at: row.get(1)?,
            kind: row.get(2)?,
            task_id: row.get::<Option<i64>>(3)?.map(TaskId),
            builder: row.get(4)?,
            detail: serde_json::from_str(&detail)
                .map_err(|e| StoreError::corrupt(format!("event detail: {e}")))?,
        })
    })
}

/// The kept part of a result's build log.
pub(crate) async fn build_log(db: &mut dyn Db, id: AttestationId) -> Result<Option<BuildLog>> {
    let Some(row) = db
        .query_opt(
            "SELECT l.log, l.original_len, t.decided_at FROM build_logs l \
             JOIN attestations a ON a.id = l.attestation_id JOIN tasks t ON t.id = a.task_id \
             WHERE l.attestation_id = $1",
            params![id.0],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(BuildLog {
        task_decided: row.get::<Option<Timestamp>>(2)?.is_some(),
        attestation_id: id,
        bytes: row.get(0)?,
        original_len: row.get(1)?,
    }))
}

/// Open tasks (being built first, then by priority and age): the queue page.
pub(crate) async fn open_tasks(db: &mut dyn Db, page: Page) -> Result<Paged<TaskInfo>> {
    let page = Page {
        offset: page.offset,
        limit: page.limit.min(Page::MAX_LIMIT),
    };
    let offset =
        i64::try_from(page.offset).map_err(|_| StoreError::invalid("page offset out of range"))?;
    let open = "t.decided_at IS NULL AND t.state <> 'cancelled'";
    let total: u64 = db
        .query_one(&format!("SELECT COUNT(*) FROM tasks t WHERE {open}"), &[])
        .await?
        .get(0)?;
    let rows = db
        .query(
            &format!(
                "{TASK_SELECT} WHERE {open} \
                 ORDER BY (t.active_leases > 0) DESC, t.priority DESC, t.created_at, t.id \
                 LIMIT $1 OFFSET $2"
            ),
            params![page.limit, offset],
        )
        .await?;
    Ok(Paged {
        items: collect(&rows, task_info)?,
        total,
        page,
    })
}

/// A builder's most recent results, newest first; `None` for an unknown builder.
pub(crate) async fn builder_results(
    db: &mut dyn Db,
    key: &PublicKey,
    limit: u32,
) -> Result<Option<Vec<BuilderResult>>> {
    let key = key.to_string();
    let Some(row) = db
        .query_opt(
            "SELECT id FROM builders WHERE public_key = $1",
            params![&key],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.get(0)?;
    let rows = db
        .query(
            "SELECT a.id, a.task_id, a.lease_id, b.public_key, b.name, a.outcome, \
                    a.artifact_hash, a.artifact_size, a.signed, a.reason, a.received_at, \
                    a.counted, a.late, c.name, v.version, tg.name, tc.name, t.state, \
                    t.decided_at \
             FROM attestations a JOIN builders b ON b.id = a.builder_id \
             JOIN tasks t ON t.id = a.task_id JOIN versions v ON v.id = t.version_id \
             JOIN crates c ON c.id = v.crate_id JOIN targets tg ON tg.id = t.target_id \
             JOIN toolchains tc ON tc.id = t.toolchain_id \
             WHERE a.builder_id = $1 ORDER BY a.id DESC LIMIT $2",
            params![id, limit.min(Page::MAX_LIMIT)],
        )
        .await?;
    collect(&rows, |row| {
        Ok(BuilderResult {
            result: attestation_info(row)?,
            crate_name: row.get(13)?,
            version: row.get(14)?,
            target: row.get(15)?,
            toolchain: row.get(16)?,
            task_state: row.get::<String>(17)?.parse()?,
            task_decided: row.get::<Option<Timestamp>>(18)?.is_some(),
        })
    })
    .map(Some)
}
