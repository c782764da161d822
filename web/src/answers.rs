//! Store rows into the API's answer types (`buildsrs_api::answers`): what `/api/v1` writes.
//!
//! The store keeps names and versions as checked text and signed attestations as the bytes
//! the builder sent; here each becomes its parsed type. The store only holds what passed
//! those checks, so a value that does not parse is a corrupt row: an internal error that
//! names it, never a guess.

use std::fmt::Display;
use std::str::FromStr;

use buildsrs_api::answers as api;
use buildsrs_keys::SignedAttestation;
use buildsrs_store as store;

use crate::error::WebError;

/// Parses a value the store holds.
fn parsed<T>(text: &str, what: &str) -> Result<T, WebError>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|error| WebError::Internal(format!("the store holds a bad {what}: {error}")))
}

fn task_state(state: store::TaskState) -> api::TaskState {
    match state {
        store::TaskState::Queued => api::TaskState::Queued,
        store::TaskState::Building => api::TaskState::Building,
        store::TaskState::Verified => api::TaskState::Verified,
        store::TaskState::Mismatch => api::TaskState::Mismatch,
        store::TaskState::Failed => api::TaskState::Failed,
        store::TaskState::NoBinaries => api::TaskState::NoBinaries,
        store::TaskState::Cancelled => api::TaskState::Cancelled,
    }
}

fn version_plan(plan: store::VersionPlan) -> api::VersionPlan {
    match plan {
        store::VersionPlan::Probe => api::VersionPlan::Probe,
        store::VersionPlan::Matrix => api::VersionPlan::Matrix,
    }
}

fn builder_status(status: store::BuilderStatus) -> api::BuilderStatus {
    match status {
        store::BuilderStatus::Pending => api::BuilderStatus::Pending,
        store::BuilderStatus::Approved => api::BuilderStatus::Approved,
        store::BuilderStatus::Revoked => api::BuilderStatus::Revoked,
    }
}

fn lease_state(state: store::LeaseState) -> api::LeaseState {
    match state {
        store::LeaseState::Active => api::LeaseState::Active,
        store::LeaseState::Completed => api::LeaseState::Completed,
        store::LeaseState::Expired => api::LeaseState::Expired,
        store::LeaseState::Cancelled => api::LeaseState::Cancelled,
    }
}

fn page(page: store::Page) -> api::PageInfo {
    api::PageInfo {
        offset: page.offset,
        limit: page.limit,
    }
}

/// A page of a crate search.
pub(crate) fn crate_list(
    found: &store::Paged<store::CrateSummary>,
) -> Result<api::CrateList, WebError> {
    let items = found
        .items
        .iter()
        .map(|krate| {
            Ok(api::CrateSummary {
                name: krate.name.clone(),
                watched: krate.watched,
                versions: krate.versions,
                first_seen: krate.first_seen,
            })
        })
        .collect::<Result<_, WebError>>()?;
    Ok(api::CrateList {
        items,
        total: found.total,
        page: page(found.page),
    })
}

/// A version of a crate.
pub(crate) fn version_summary(
    version: &store::VersionSummary,
) -> Result<api::VersionSummary, WebError> {
    Ok(api::VersionSummary {
        version: version.version.clone(),
        cksum: version.cksum,
        yanked: version.yanked,
        first_seen: version.first_seen,
        rust_version: version.rust_version.clone(),
        plan: version.plan.map(version_plan),
        plan_note: version.plan_note.clone(),
    })
}

/// A crate, its versions, and the one `latest` names.
pub(crate) fn crate_answer(info: &store::CrateInfo) -> Result<api::CrateAnswer, WebError> {
    let latest = crate::params::latest(&info.versions).map(|v| v.version.clone());
    Ok(api::CrateAnswer {
        name: info.name.clone(),
        watched: info.watched,
        first_seen: info.first_seen,
        backfill: info.backfill,
        binaries: info.binaries,
        versions: info
            .versions
            .iter()
            .map(version_summary)
            .collect::<Result<_, _>>()?,
        latest,
    })
}

/// A task.
pub(crate) fn task(task: &store::TaskInfo) -> Result<api::Task, WebError> {
    Ok(api::Task {
        id: task.id.0,
        crate_name: task.crate_name.clone(),
        version: task.version.clone(),
        target: task.target.clone(),
        toolchain: task.toolchain.clone(),
        state: task_state(task.state),
        reason: task.reason.clone(),
        priority: task.priority,
        quorum: task.quorum,
        wanted: task.wanted,
        counted: task.counted,
        active_leases: task.active_leases,
        attempts: task.attempts,
        not_before: task.not_before,
        artifact: task.artifact,
        created_at: task.created_at,
        updated_at: task.updated_at,
        decided_at: task.decided_at,
    })
}

fn tasks(tasks: &[store::TaskInfo]) -> Result<Vec<api::Task>, WebError> {
    tasks.iter().map(task).collect()
}

fn lease(lease: &store::LeaseInfo) -> api::Lease {
    api::Lease {
        id: lease.id.0,
        task_id: lease.task_id.0,
        builder: lease.builder,
        epoch: lease.epoch,
        state: lease_state(lease.state),
        granted_at: lease.granted_at,
        deadline: lease.deadline,
        ended_at: lease.ended_at,
    }
}

/// A recorded result, its signed attestation decoded.
pub(crate) fn build_result(result: &store::AttestationInfo) -> Result<api::BuildResult, WebError> {
    let signed = result
        .signed
        .as_deref()
        .map(|bytes| {
            SignedAttestation::from_json(bytes).map_err(|error| {
                WebError::Internal(format!(
                    "the store holds a bad attestation (result {}): {error}",
                    result.id
                ))
            })
        })
        .transpose()?;
    Ok(api::BuildResult {
        id: result.id.0,
        task_id: result.task_id.0,
        lease_id: result.lease_id.0,
        builder: result.builder,
        builder_name: result.builder_name.clone(),
        outcome: result.outcome,
        artifact: result.artifact,
        signed,
        reason: result.reason.clone(),
        received_at: result.received_at,
        counted: result.counted,
        late: result.late,
    })
}

fn build_results(results: &[store::AttestationInfo]) -> Result<Vec<api::BuildResult>, WebError> {
    results.iter().map(build_result).collect()
}

/// A task with its leases and results.
pub(crate) fn task_answer(detail: &store::TaskDetail) -> Result<api::TaskAnswer, WebError> {
    Ok(api::TaskAnswer {
        task: task(&detail.task)?,
        leases: detail.leases.iter().map(lease).collect(),
        results: build_results(&detail.results)?,
    })
}

/// A version and its tasks, with the download paths of verified ones.
pub(crate) fn version_answer(
    info: &store::VersionInfo,
    details: &[store::TaskDetail],
) -> Result<api::VersionAnswer, WebError> {
    let targets = details
        .iter()
        .map(|detail| {
            let links = detail
                .task
                .artifact
                .filter(|_| detail.task.state == store::TaskState::Verified)
                .map(|artifact| api::Links {
                    download: format!(
                        "/crates/{}/{}/{}",
                        info.crate_name, info.version.version, detail.task.target
                    ),
                    blob: format!("/blobs/{}", artifact.blake3),
                    bundle: format!("/attestations/{}", artifact.blake3),
                });
            Ok(api::TargetAnswer {
                task: task(&detail.task)?,
                results: build_results(&detail.results)?,
                links,
            })
        })
        .collect::<Result<_, WebError>>()?;
    Ok(api::VersionAnswer {
        crate_name: info.crate_name.clone(),
        version: version_summary(&info.version)?,
        targets,
    })
}

/// An artifact with its tasks, attestations and downloads.
pub(crate) fn artifact_answer(info: &store::ArtifactInfo) -> Result<api::ArtifactAnswer, WebError> {
    Ok(api::ArtifactAnswer {
        artifact: info.artifact,
        storage_key: info.storage_key.clone(),
        verified_at: info.verified_at,
        tasks: tasks(&info.tasks)?,
        attestations: build_results(&info.attestations)?,
        downloads: info
            .downloads
            .iter()
            .map(|day| api::DailyDownloads {
                day: day.day,
                count: day.count,
            })
            .collect(),
    })
}

/// A builder.
pub(crate) fn builder(builder: &store::BuilderInfo) -> Result<api::Builder, WebError> {
    Ok(api::Builder {
        public_key: builder.public_key,
        name: builder.name.clone(),
        status: builder_status(builder.status),
        operator: builder.operator.clone(),
        targets: builder
            .targets
            .iter()
            .map(|target| parsed(target, "target"))
            .collect::<Result<_, _>>()?,
        toolchains: builder.toolchains.clone(),
        registered_at: builder.registered_at,
        last_seen: builder.last_seen,
        built: builder.built,
        agreed: builder.agreed,
        outvoted: builder.outvoted,
        failed: builder.failed,
    })
}

/// A builder and its recent results.
pub(crate) fn builder_answer(
    view: &crate::load::BuilderView,
) -> Result<api::BuilderAnswer, WebError> {
    let recent_results = view
        .recent_results
        .iter()
        .map(|recent| {
            Ok(api::BuilderResult {
                crate_name: recent.crate_name.clone(),
                version: recent.version.clone(),
                target: recent.target.clone(),
                toolchain: recent.toolchain.clone(),
                task_state: task_state(recent.task_state),
                result: build_result(&recent.result)?,
            })
        })
        .collect::<Result<_, WebError>>()?;
    Ok(api::BuilderAnswer {
        builder: builder(&view.builder)?,
        recent_results,
    })
}

/// Queue statistics and a page of open tasks.
pub(crate) fn queue_answer(view: &crate::load::QueueView) -> Result<api::QueueAnswer, WebError> {
    let s = &view.stats;
    Ok(api::QueueAnswer {
        stats: api::QueueStats {
            queued: s.queued,
            building: s.building,
            verified: s.verified,
            mismatch: s.mismatch,
            failed: s.failed,
            no_binaries: s.no_binaries,
            cancelled: s.cancelled,
            ready: s.ready,
            active_leases: s.active_leases,
            builders_pending: s.builders_pending,
            builders_approved: s.builders_approved,
            builders_revoked: s.builders_revoked,
            crates: s.crates,
            versions: s.versions,
            artifacts_verified: s.artifacts_verified,
        },
        tasks: api::TaskList {
            items: tasks(&view.tasks.items)?,
            total: view.tasks.total,
            page: page(view.tasks.page),
        },
        next: view.next,
    })
}
