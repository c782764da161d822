//! Planning: which versions get built, and which tasks each gets. Volunteers pay for every
//! task, so a crate's whole history is never planned by default.
//!
//! **Which versions.** A version is *chosen* once (`versions.plan` is set) and then stays
//! chosen:
//! - when a crate is watched, or first seen by the index follower while watched (its "first
//!   sight": the batch that brings its first versions), its newest version and its
//!   `backfill` next-older ones are chosen ([`newest`]: semver order among non-yanked
//!   versions, pre-releases only when there is nothing else — what `cargo install` picks).
//!   With [`crate::Policy::plan_all_crates`] every crate's first sight does the same (with the
//!   backfill of its last watch request, 0 unless asked);
//! - after its first sight, every version new to the store of a watched crate (any crate in
//!   full-index mode) is chosen: published since watching. A version that arrives yanked is
//!   chosen too, so that un-yanking it plans it;
//! - un-yanking a version that was not chosen chooses it only if that makes it the crate's
//!   newest (say its newest version was yanked when the crate was watched); un-yanked history
//!   stays unplanned;
//! - watching again with a larger backfill chooses the extra versions; tasks are unique per
//!   version × target × toolchain, so nothing is planned twice.
//!
//! First sight picks the highest semver, which is not the version just published when that
//! one is a backport below a higher line (e.g. 1.4.7 published after 2.0.0): a crate watched
//! before its first sight builds 2.0.0 then.
//!
//! **Which tasks.** A chosen, non-yanked version gets one task per enabled target × enabled
//! toolchain, except:
//! - toolchains whose release (a name `X.Y.Z`, possibly with a channel suffix such as
//!   `1.97.0-nightly`) is below the version's `rust-version` (`1.70` means 1.70.0) are skipped;
//!   names that are not releases (`nightly-2026-01-01`, `beta`) never are.
//!   If no enabled toolchain is new enough, nothing is planned and `versions.plan_note` says
//!   why. That is never held against the crate: no task fails;
//! - a crate whose latest decision was "no binaries" (`crates.binaries` false) gets a single
//!   *probe* task per new version (plan `probe`): the first enabled target (in the order the
//!   targets were added) × the newest enabled toolchain that fits (releases by version, then
//!   other names in the order added). Nodes answer "no binaries" before building anything,
//!   so a probe is cheap. A counted built result of a probe marks the crate as having
//!   binaries again and plans the rest of that version's matrix (`ops/submit.rs`).
//!
//! Planning any number of versions costs a constant number of statements on Postgres (array
//! parameters); SQLite runs cheap prepared statements per row inside the one transaction.

use std::cmp::Ordering;

use jiff::Timestamp;

use crate::db::{Db, Dialect, params};
use crate::error::Result;
use crate::model::VersionPlan;
use crate::ops::query_ids;
use crate::policy::Policy;

/// A Rust release (the one rule: `buildsrs_keys::release`).
pub(crate) use buildsrs_keys::RustRelease as Release;

/// The newest of `versions` and the `backfill` next-older ones, newest first: semver order,
/// pre-releases only when there is no release. Versions that are not semver are never
/// picked (the index follower skips them anyway). The caller leaves yanked versions out.
pub(crate) fn newest<T: Copy>(versions: &[(T, &str)], backfill: u32) -> Vec<T> {
    let mut parsed: Vec<(semver::Version, T)> = versions
        .iter()
        .filter_map(|(item, text)| semver::Version::parse(text).ok().map(|v| (v, *item)))
        .collect();
    if parsed.iter().any(|(v, _)| v.pre.is_empty()) {
        parsed.retain(|(v, _)| v.pre.is_empty());
    }
    parsed.sort_by(|a, b| b.0.cmp(&a.0));
    let wanted = usize::try_from(backfill)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    parsed
        .into_iter()
        .take(wanted)
        .map(|(_, item)| item)
        .collect()
}

/// An enabled toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Toolchain {
    pub id: i64,
    pub name: String,
    /// `None` for names that are not releases.
    pub release: Option<Release>,
}

/// The enabled part of the build matrix, each list in the order its entries were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Matrix {
    pub targets: Vec<i64>,
    pub toolchains: Vec<Toolchain>,
}

/// What a version gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Planned {
    /// These (target id, toolchain id) tasks.
    Tasks(Vec<(i64, i64)>),
    /// Nothing, for this reason (which is kept on the version).
    Note(String),
    /// Nothing: no target or no toolchain is enabled.
    Nothing,
}

impl Matrix {
    /// The tasks for a version with this `rust-version` and plan.
    pub(crate) fn tasks(&self, rust_version: Option<&str>, plan: VersionPlan) -> Planned {
        if self.targets.is_empty() || self.toolchains.is_empty() {
            return Planned::Nothing;
        }
        let needs = rust_version.and_then(Release::parse_rust_version);
        let fits = |t: &&Toolchain| match (t.release, needs) {
            (Some(release), Some(needs)) => release >= needs,
            _ => true,
        };
        let fitting: Vec<&Toolchain> = self.toolchains.iter().filter(fits).collect();
        if fitting.is_empty() {
            let mut names: Vec<&str> = self.toolchains.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            return Planned::Note(format!(
                "needs Rust {} or newer; enabled toolchains: {}",
                rust_version.unwrap_or_default(),
                names.join(", ")
            ));
        }
        match plan {
            VersionPlan::Matrix => Planned::Tasks(
                self.targets
                    .iter()
                    .flat_map(|target| fitting.iter().map(move |t| (*target, t.id)))
                    .collect(),
            ),
            VersionPlan::Probe => {
                // Releases newest first, then other names in the order added: the first is
                // the one most likely to build.
                let probe = fitting
                    .iter()
                    .enumerate()
                    .min_by(|(i, a), (j, b)| match (a.release, b.release) {
                        (Some(x), Some(y)) => y.cmp(&x),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => i.cmp(j),
                    })
                    .map(|(_, t)| t.id);
                match (self.targets.first(), probe) {
                    (Some(target), Some(toolchain)) => Planned::Tasks(vec![(*target, toolchain)]),
                    _ => Planned::Nothing,
                }
            }
        }
    }
}

/// The plan a chosen version gets: a version planned with the whole matrix keeps it; others
/// are probed while their crate is known to have no binaries.
pub(crate) fn plan_of(current: Option<VersionPlan>, binaries: Option<bool>) -> VersionPlan {
    match (current, binaries) {
        (Some(VersionPlan::Matrix), _) => VersionPlan::Matrix,
        (_, Some(false)) => VersionPlan::Probe,
        _ => VersionPlan::Matrix,
    }
}

/// Whether [`plan_versions`] chooses the versions it is given or only plans those chosen
/// before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Choose them (they are new, the newest, or backfill).
    Choose,
    /// Plan only versions chosen before (an un-yank, a probe that built): never history.
    Replan,
}

async fn load_matrix(db: &mut dyn Db) -> Result<Matrix> {
    let targets = db
        .query(
            "SELECT id FROM targets WHERE enabled ORDER BY id",
            params![],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    let toolchains = db
        .query(
            "SELECT id, name FROM toolchains WHERE enabled ORDER BY id",
            params![],
        )
        .await?
        .iter()
        .map(|row| {
            let name: String = row.get(1)?;
            Ok(Toolchain {
                id: row.get(0)?,
                release: Release::parse_release(&name),
                name,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Matrix {
        targets,
        toolchains,
    })
}

/// Plans these versions (see the module docs): sets their plan and note, creates their
/// missing tasks. Returns the number of tasks created. Ids are planned in the order given,
/// so task ids follow it.
pub(crate) async fn plan_versions(
    db: &mut dyn Db,
    policy: &Policy,
    version_ids: &[i64],
    mode: Mode,
    now: Timestamp,
) -> Result<u64> {
    if version_ids.is_empty() {
        return Ok(0);
    }
    let rows = query_ids(
        db,
        version_ids,
        "SELECT v.id, v.yanked, v.rust_version, v.plan, v.plan_note, c.binaries \
         FROM versions v JOIN crates c ON c.id = v.crate_id WHERE v.id = {ids}",
    )
    .await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0)?;
        found.insert(id, row);
    }
    let matrix = load_matrix(db).await?;
    // (version, target, toolchain) to insert; (version, plan, note) to write.
    let mut tasks: Vec<(i64, i64, i64)> = Vec::new();
    let mut changed: Vec<(i64, VersionPlan, Option<String>)> = Vec::new();
    for id in version_ids {
        let Some(row) = found.remove(id) else {
            continue; // Named twice.
        };
        let yanked: bool = row.get(1)?;
        let rust_version: Option<String> = row.get(2)?;
        let current: Option<VersionPlan> = row
            .get::<Option<String>>(3)?
            .map(|p| p.parse())
            .transpose()?;
        let note: Option<String> = row.get(4)?;
        let binaries: Option<bool> = row.get(5)?;
        if current.is_none() && mode == Mode::Replan {
            continue;
        }
        let plan = plan_of(current, binaries);
        let mut new_note = note.clone();
        if !yanked {
            match matrix.tasks(rust_version.as_deref(), plan) {
                Planned::Tasks(list) => {
                    tasks.extend(list.into_iter().map(|(tg, tc)| (*id, tg, tc)));
                    new_note = None;
                }
                Planned::Note(text) => new_note = Some(text),
                Planned::Nothing => new_note = None,
            }
        }
        if current != Some(plan) || new_note != note {
            changed.push((*id, plan, new_note));
        }
    }
    write_plans(db, &changed).await?;
    insert_tasks(db, policy, &tasks, now).await
}

/// Writes versions' plans and notes.
async fn write_plans(
    db: &mut dyn Db,
    changed: &[(i64, VersionPlan, Option<String>)],
) -> Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    match db.dialect() {
        Dialect::Postgres => {
            let ids: Vec<i64> = changed.iter().map(|(id, _, _)| *id).collect();
            let plans: Vec<String> = changed
                .iter()
                .map(|(_, plan, _)| plan.as_str().to_owned())
                .collect();
            let notes: Vec<Option<String>> =
                changed.iter().map(|(_, _, note)| note.clone()).collect();
            db.execute(
                "UPDATE versions SET plan = u.plan, plan_note = u.note \
                 FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, plan, note) \
                 WHERE versions.id = u.id",
                params![&ids, &plans, &notes],
            )
            .await?;
        }
        Dialect::Sqlite => {
            for (id, plan, note) in changed {
                db.execute(
                    "UPDATE versions SET plan = $2, plan_note = $3 WHERE id = $1",
                    params![*id, plan.as_str(), note.as_deref()],
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Creates the tasks that do not exist yet, in the order given.
async fn insert_tasks(
    db: &mut dyn Db,
    policy: &Policy,
    tasks: &[(i64, i64, i64)],
    now: Timestamp,
) -> Result<u64> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let lease_limit = policy.quorum + policy.extra_leases;
    match db.dialect() {
        Dialect::Postgres => {
            let mut versions = Vec::with_capacity(tasks.len());
            let mut targets = Vec::with_capacity(tasks.len());
            let mut toolchains = Vec::with_capacity(tasks.len());
            let mut order = Vec::with_capacity(tasks.len());
            for (n, (v, tg, tc)) in (0_i64..).zip(tasks) {
                versions.push(*v);
                targets.push(*tg);
                toolchains.push(*tc);
                order.push(n);
            }
            db.execute(
                "INSERT INTO tasks (version_id, target_id, toolchain_id, state, priority, \
                                    quorum, wanted, lease_limit, created_at, updated_at) \
                 SELECT v, tg, tc, 'queued', $5::bigint, $6::bigint, $6::bigint, $7::bigint, \
                        $8::bigint, $8::bigint \
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                      AS u(v, tg, tc, n) \
                 ORDER BY n \
                 ON CONFLICT (version_id, target_id, toolchain_id) DO NOTHING",
                params![
                    &versions,
                    &targets,
                    &toolchains,
                    &order,
                    policy.default_priority,
                    policy.quorum,
                    lease_limit,
                    now,
                ],
            )
            .await
        }
        Dialect::Sqlite => {
            let mut created = 0;
            for (v, tg, tc) in tasks {
                created += db
                    .execute(
                        "INSERT INTO tasks (version_id, target_id, toolchain_id, state, \
                                            priority, quorum, wanted, lease_limit, created_at, \
                                            updated_at) \
                         VALUES ($1, $2, $3, 'queued', $4, $5, $5, $6, $7, $7) \
                         ON CONFLICT (version_id, target_id, toolchain_id) DO NOTHING",
                        params![
                            *v,
                            *tg,
                            *tc,
                            policy.default_priority,
                            policy.quorum,
                            lease_limit,
                            now,
                        ],
                    )
                    .await?;
            }
            Ok(created)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_prefers_releases_and_takes_the_backfill() {
        let versions = [
            (1, "0.9.0"),
            (2, "1.0.0"),
            (3, "1.10.0"),
            (4, "1.9.0"),
            (5, "2.0.0-rc.1"),
            (6, "not semver"),
        ];
        assert_eq!(newest(&versions, 0), [3]);
        assert_eq!(newest(&versions, 2), [3, 4, 2]);
        assert_eq!(newest(&versions, 100), [3, 4, 2, 1]);
        let pre = [(1, "0.1.0-alpha.1"), (2, "0.1.0-beta.1"), (3, "junk")];
        assert_eq!(newest(&pre, 0), [2], "only pre-releases: the highest one");
        assert_eq!(newest(&pre, u32::MAX), [2, 1]);
        assert!(newest::<i32>(&[], 3).is_empty());
        assert!(newest(&[(1, "junk")], 3).is_empty());
    }

    fn matrix(toolchains: &[&str]) -> Matrix {
        Matrix {
            targets: vec![10, 11],
            toolchains: toolchains
                .iter()
                .zip(100..)
                .map(|(name, id)| Toolchain {
                    id,
                    name: (*name).to_owned(),
                    release: Release::parse_release(name),
                })
                .collect(),
        }
    }

    #[test]
    fn rust_version_skips_old_toolchains_and_notes_when_none_fit() {
        let m = matrix(&["1.80.0", "nightly-2026-01-01", "1.95.0"]);
        assert_eq!(
            m.tasks(None, VersionPlan::Matrix),
            Planned::Tasks(vec![
                (10, 100),
                (10, 101),
                (10, 102),
                (11, 100),
                (11, 101),
                (11, 102)
            ])
        );
        assert_eq!(
            m.tasks(Some("1.85"), VersionPlan::Matrix),
            Planned::Tasks(vec![(10, 101), (10, 102), (11, 101), (11, 102)])
        );
        assert_eq!(
            m.tasks(Some("1.95"), VersionPlan::Matrix),
            Planned::Tasks(vec![(10, 101), (10, 102), (11, 101), (11, 102)]),
            "1.95 means 1.95.0, which 1.95.0 is"
        );
        let releases = matrix(&["1.95.0", "1.80.0"]);
        assert_eq!(
            releases.tasks(Some("1.96"), VersionPlan::Matrix),
            Planned::Note("needs Rust 1.96 or newer; enabled toolchains: 1.80.0, 1.95.0".into())
        );
        assert_eq!(
            releases.tasks(Some("1.96"), VersionPlan::Probe),
            Planned::Note("needs Rust 1.96 or newer; enabled toolchains: 1.80.0, 1.95.0".into())
        );
        assert_eq!(
            Matrix::default().tasks(None, VersionPlan::Matrix),
            Planned::Nothing
        );
    }

    #[test]
    fn a_probe_is_the_first_target_and_the_newest_fitting_toolchain() {
        let m = matrix(&["1.80.0", "nightly-2026-01-01", "1.95.0", "beta"]);
        assert_eq!(
            m.tasks(None, VersionPlan::Probe),
            Planned::Tasks(vec![(10, 102)])
        );
        let m = matrix(&["nightly-2026-01-01", "beta", "1.80.0"]);
        assert_eq!(
            m.tasks(Some("1.85"), VersionPlan::Probe),
            Planned::Tasks(vec![(10, 100)]),
            "no release fits: the first other name"
        );
    }

    #[test]
    fn matrix_plans_stay_and_crates_without_binaries_are_probed() {
        use VersionPlan::{Matrix, Probe};
        assert_eq!(plan_of(None, None), Matrix);
        assert_eq!(plan_of(None, Some(true)), Matrix);
        assert_eq!(plan_of(None, Some(false)), Probe);
        assert_eq!(plan_of(Some(Probe), Some(false)), Probe);
        assert_eq!(plan_of(Some(Probe), Some(true)), Matrix);
        assert_eq!(plan_of(Some(Matrix), Some(false)), Matrix);
    }
}
