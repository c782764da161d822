//! What `/api/v1` answers: one type per answer, built by the coordinator's web layer,
//! read by the `buildsrs` CLI and mirrors, and described in the OpenAPI document.
//!
//! Every field is always written (`null` where there is nothing), and readers ignore fields
//! they do not know, so fields can be added within v1.

use buildsrs_domain::{BuilderName, Operator};
use buildsrs_keys::{
    ArtifactId, Blake3Hash, CrateName, CrateVersion, PublicKey, Sha256Digest, SignedAttestation,
    TargetTriple, ToolchainRelease,
};
use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schema;

/// `Display` for an answer enum: its JSON text.
macro_rules! display_as {
    ($name:ident { $($variant:ident => $text:literal,)* }) => {
        impl $name {
            /// The text the API writes.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a builder (possibly backing off after a node-side failure).
    Queued,
    /// At least one builder holds a lease on it.
    Building,
    /// A quorum of approved builders produced the same artifact.
    Verified,
    /// Builders disagree; extra builds are scheduled up to a limit.
    Mismatch,
    /// A quorum of approved builders agree that it does not build.
    Failed,
    /// A quorum of approved builders agree that it builds no binaries.
    NoBinaries,
    /// Stopped: the version was yanked, or node-side failures exceeded the retry limit.
    Cancelled,
}

display_as!(TaskState {
    Queued => "queued",
    Building => "building",
    Verified => "verified",
    Mismatch => "mismatch",
    Failed => "failed",
    NoBinaries => "no_binaries",
    Cancelled => "cancelled",
});

/// What the planner chose to build of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionPlan {
    /// One probe task: the crate had no binaries so far.
    Probe,
    /// Every enabled target and toolchain the version's `rust-version` allows.
    Matrix,
}

display_as!(VersionPlan {
    Probe => "probe",
    Matrix => "matrix",
});

/// An operator's verdict on a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuilderStatus {
    /// Registered, waiting for an operator; gets no work.
    Pending,
    /// Gets work; its results count.
    Approved,
    /// Gets no work; none of its results count any more.
    Revoked,
}

display_as!(BuilderStatus {
    Pending => "pending",
    Approved => "approved",
    Revoked => "revoked",
});

/// Where a lease stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// The builder may work and renew.
    Active,
    /// The builder delivered a result.
    Completed,
    /// The deadline passed and the task was requeued.
    Expired,
    /// The task was decided, cancelled, or the builder revoked.
    Cancelled,
}

display_as!(LeaseState {
    Active => "active",
    Completed => "completed",
    Expired => "expired",
    Cancelled => "cancelled",
});

/// What a builder reported: the one outcome kind of `buildsrs-domain`.
pub use buildsrs_domain::OutcomeKind as Outcome;

/// The page a list answer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PageInfo {
    /// Items skipped.
    pub offset: u64,
    /// Items per page.
    #[schema(minimum = 1, maximum = 200)]
    pub limit: u32,
}

/// A crate in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CrateSummary {
    /// Its name.
    #[schema(value_type = schema::CrateName)]
    #[serde(with = "crate::text")]
    pub name: CrateName,
    /// Whether its new versions get built.
    pub watched: bool,
    /// Versions known.
    pub versions: u64,
    /// When the coordinator first saw it.
    pub first_seen: Timestamp,
}

/// `GET /crates`: a page of the crates whose name contains the search text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CrateList {
    /// This page's crates, by name.
    pub items: Vec<CrateSummary>,
    /// How many crates match in all.
    pub total: u64,
    /// The page.
    pub page: PageInfo,
}

/// A version of a crate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionSummary {
    /// The version.
    #[schema(value_type = schema::CrateVersion)]
    #[serde(with = "crate::text")]
    pub version: CrateVersion,
    /// SHA-256 of the `.crate` file, from the registry index.
    #[schema(value_type = schema::Sha256Digest)]
    pub cksum: Sha256Digest,
    /// Yanked by its authors.
    pub yanked: bool,
    /// When the coordinator first saw it.
    pub first_seen: Timestamp,
    /// The manifest's `rust-version`, from the index.
    pub rust_version: Option<String>,
    /// What the planner chose to build: nothing (`null`: older than the newest version
    /// when the crate was watched, and not asked for), a probe, or the matrix.
    pub plan: Option<VersionPlan>,
    /// Why a chosen version has no tasks, e.g. "needs Rust 1.96 or newer; enabled
    /// toolchains: 1.95.0".
    pub plan_note: Option<String>,
}

/// `GET /crates/{name}`: a crate and its versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CrateAnswer {
    /// Its name.
    #[schema(value_type = schema::CrateName)]
    #[serde(with = "crate::text")]
    pub name: CrateName,
    /// Whether its new versions get built.
    pub watched: bool,
    /// When the coordinator first saw it.
    pub first_seen: Timestamp,
    /// Versions older than the newest to build when it is first planned.
    pub backfill: u32,
    /// Whether it has binaries, as its latest decision said (`null`: not decided yet).
    pub binaries: Option<bool>,
    /// Its versions, the most recently seen first.
    pub versions: Vec<VersionSummary>,
    /// The newest version not yanked (a release before a pre-release); what `latest`
    /// names.
    #[schema(value_type = Option<schema::CrateVersion>)]
    #[serde(with = "crate::text::option")]
    pub latest: Option<CrateVersion>,
}

/// A build task: one version for one target with one toolchain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// Its id.
    #[schema(minimum = 1)]
    pub id: i64,
    /// The crate.
    #[schema(value_type = schema::CrateName)]
    #[serde(with = "crate::text")]
    pub crate_name: CrateName,
    /// The version.
    #[schema(value_type = schema::CrateVersion)]
    #[serde(with = "crate::text")]
    pub version: CrateVersion,
    /// The target.
    #[schema(value_type = schema::TargetTriple)]
    #[serde(with = "crate::text")]
    pub target: TargetTriple,
    /// The toolchain's release, e.g. `1.95.0`.
    #[schema(value_type = schema::ToolchainRelease)]
    pub toolchain: ToolchainRelease,
    /// Where it stands.
    pub state: TaskState,
    /// Why it failed, mismatched or was cancelled.
    pub reason: Option<String>,
    /// Higher goes first.
    pub priority: i64,
    /// Agreeing results needed.
    pub quorum: u32,
    /// Results wanted in all (the quorum plus extra builds after a mismatch).
    pub wanted: u32,
    /// Results counted so far.
    pub counted: u32,
    /// Leases active now.
    pub active_leases: u32,
    /// Node-side failures so far (expired leases and node errors).
    pub attempts: u32,
    /// No new lease before this time (backoff).
    pub not_before: Timestamp,
    /// The verified artifact.
    #[schema(value_type = Option<schema::ArtifactId>)]
    pub artifact: Option<ArtifactId>,
    /// When it was planned.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it reached a final decision.
    pub decided_at: Option<Timestamp>,
}

/// A lease: one builder's right to work on a task until a deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// Its id.
    pub id: i64,
    /// The task.
    pub task_id: i64,
    /// Who holds it.
    #[schema(value_type = schema::PublicKey)]
    pub builder: PublicKey,
    /// Its fencing epoch.
    pub epoch: i64,
    /// Where it stands.
    pub state: LeaseState,
    /// When it was granted.
    pub granted_at: Timestamp,
    /// Its deadline (as last renewed).
    pub deadline: Timestamp,
    /// When it stopped being active.
    pub ended_at: Option<Timestamp>,
}

/// A result a builder sent for a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuildResult {
    /// Its id (the build log is at `/logs/{id}`).
    pub id: i64,
    /// The task.
    pub task_id: i64,
    /// The lease it came under.
    pub lease_id: i64,
    /// Who sent it.
    #[schema(value_type = schema::PublicKey)]
    pub builder: PublicKey,
    /// The builder's name.
    #[schema(value_type = schema::BuilderName)]
    pub builder_name: BuilderName,
    /// What it reported.
    pub outcome: Outcome,
    /// The artifact, for `built`.
    #[schema(value_type = Option<schema::ArtifactId>)]
    pub artifact: Option<ArtifactId>,
    /// The signed attestation, for `built`: what goes into the artifact's bundle.
    #[schema(value_type = Option<schema::SignedAttestation>)]
    pub signed: Option<SignedAttestation>,
    /// The reason given, for failures.
    pub reason: Option<String>,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Whether it counts toward the task's decision.
    pub counted: bool,
    /// Whether it came under an expired or cancelled lease.
    pub late: bool,
}

/// `GET /tasks/{id}`: a task, every lease granted for it, every result sent for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskAnswer {
    /// The task.
    pub task: Task,
    /// Its leases, oldest first.
    pub leases: Vec<Lease>,
    /// Its results, oldest first.
    pub results: Vec<BuildResult>,
}

/// Where a verified artifact can be downloaded (paths on the coordinator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Links {
    /// The archive by name: `/crates/{name}/{version}/{target}`.
    pub download: String,
    /// The archive by hash: `/blobs/{hash}`.
    pub blob: String,
    /// Its attestation bundle: `/attestations/{hash}`.
    pub bundle: String,
}

/// One task of a version, with its results and, once verified, where its artifact is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetAnswer {
    /// The task.
    pub task: Task,
    /// Its results, oldest first.
    pub results: Vec<BuildResult>,
    /// Where its artifact is, when verified.
    pub links: Option<Links>,
}

/// `GET /crates/{name}/{version}`: a version and its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VersionAnswer {
    /// The crate.
    #[schema(value_type = schema::CrateName)]
    #[serde(with = "crate::text")]
    pub crate_name: CrateName,
    /// The version (for `latest`, the one it names).
    pub version: VersionSummary,
    /// One entry per task (target × toolchain).
    pub targets: Vec<TargetAnswer>,
}

/// Downloads of an artifact on one day (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DailyDownloads {
    /// The day.
    pub day: Date,
    /// Downloads that day.
    pub count: u64,
}

/// `GET /artifacts/{hash}`: a verified artifact, the tasks verified with it and the
/// attestations that go into its bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactAnswer {
    /// Its hash and size.
    #[schema(value_type = schema::ArtifactId)]
    pub artifact: ArtifactId,
    /// Where object storage keeps it, once stored.
    pub storage_key: Option<String>,
    /// When first verified; `null` if a revocation withdrew its verification.
    pub verified_at: Option<Timestamp>,
    /// The tasks verified with it.
    pub tasks: Vec<Task>,
    /// The counted attestations of approved builders (its bundle).
    pub attestations: Vec<BuildResult>,
    /// Downloads per day, the most recent first (the last 30 days with downloads).
    pub downloads: Vec<DailyDownloads>,
}

/// A builder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Builder {
    /// Its identity.
    #[schema(value_type = schema::PublicKey)]
    pub public_key: PublicKey,
    /// The name it gave.
    #[schema(value_type = schema::BuilderName)]
    pub name: BuilderName,
    /// The operator's verdict.
    pub status: BuilderStatus,
    /// Who runs it, as the admin named it at approval; `null`: the key is its own operator.
    /// Keys of one operator count once toward a quorum.
    #[schema(value_type = Option<schema::Operator>)]
    pub operator: Option<Operator>,
    /// Targets it builds for.
    #[schema(value_type = Vec<schema::TargetTriple>)]
    #[serde(with = "crate::text::vec")]
    pub targets: Vec<TargetTriple>,
    /// Toolchain releases it has.
    #[schema(value_type = Vec<schema::ToolchainRelease>)]
    pub toolchains: Vec<ToolchainRelease>,
    /// When it first registered.
    pub registered_at: Timestamp,
    /// When it last asked for work, renewed a lease or sent a result.
    pub last_seen: Option<Timestamp>,
    /// Artifacts it built and attested.
    pub built: u64,
    /// Results on the winning side of a decision.
    pub agreed: u64,
    /// Results on the losing side of a decision.
    pub outvoted: u64,
    /// Node-side failures: node errors it reported and leases it let expire.
    pub failed: u64,
}

/// One result of a builder, with the task it was for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuilderResult {
    /// The crate.
    #[schema(value_type = schema::CrateName)]
    #[serde(with = "crate::text")]
    pub crate_name: CrateName,
    /// The version.
    #[schema(value_type = schema::CrateVersion)]
    #[serde(with = "crate::text")]
    pub version: CrateVersion,
    /// The target.
    #[schema(value_type = schema::TargetTriple)]
    #[serde(with = "crate::text")]
    pub target: TargetTriple,
    /// The toolchain's release.
    #[schema(value_type = schema::ToolchainRelease)]
    pub toolchain: ToolchainRelease,
    /// Where the task stands now.
    pub task_state: TaskState,
    /// The result.
    pub result: BuildResult,
}

/// `GET /builders/{key}`: a builder and its most recent results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BuilderAnswer {
    /// The builder.
    pub builder: Builder,
    /// Its 50 most recent results, the newest first.
    pub recent_results: Vec<BuilderResult>,
}

/// Counts of tasks by state, of builders by status, and of what the coordinator holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueStats {
    /// Tasks queued (including those backing off).
    pub queued: u64,
    /// Tasks being built.
    pub building: u64,
    /// Tasks verified.
    pub verified: u64,
    /// Tasks in mismatch (open or final).
    pub mismatch: u64,
    /// Tasks failed.
    pub failed: u64,
    /// Tasks with no binaries.
    pub no_binaries: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Tasks a builder could lease right now.
    pub ready: u64,
    /// Leases active now.
    pub active_leases: u64,
    /// Builders pending approval.
    pub builders_pending: u64,
    /// Approved builders.
    pub builders_approved: u64,
    /// Revoked builders.
    pub builders_revoked: u64,
    /// Crates known.
    pub crates: u64,
    /// Versions known.
    pub versions: u64,
    /// Artifacts verified.
    pub artifacts_verified: u64,
}

/// A page of tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    /// This page's tasks.
    pub items: Vec<Task>,
    /// How many there are in all.
    pub total: u64,
    /// The page.
    pub page: PageInfo,
}

/// `GET /queue`: statistics and a page of the open tasks, in the order builders get them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueAnswer {
    /// The statistics.
    pub stats: QueueStats,
    /// A page of the open tasks.
    pub tasks: TaskList,
    /// The `offset` of the next page, if there is one.
    pub next: Option<u64>,
}

/// Where a peer serves blobs over iroh-blobs: the one type of `buildsrs-domain`.
pub use buildsrs_domain::BlobAddress;

/// An artifact in object storage, in the order of publication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedItem {
    /// Its number in the feed: increasing in publication order.
    #[schema(minimum = 1)]
    pub seq: i64,
    /// Its BLAKE3 hash.
    #[schema(value_type = schema::Blake3Hash)]
    pub hash: Blake3Hash,
    /// Its size in bytes.
    pub size: u64,
    /// When verified; `null` if a revocation has since withdrawn the verification (the blob
    /// stays; mirrors that check bundles against a keyring decide).
    pub verified_at: Option<Timestamp>,
    /// The archive: `/blobs/{hash}`.
    pub blob: String,
    /// Its attestation bundle: `/attestations/{hash}`.
    pub bundle: String,
    /// Peers that hold it over iroh-blobs (the coordinator and its attesting builders, when
    /// known). Older coordinators list none.
    #[serde(default)]
    pub providers: Vec<BlobAddress>,
}

/// `GET /verified`: the artifacts published after a cursor, in order. What mirrors follow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    /// The artifacts after `since`, in publication order.
    pub items: Vec<FeedItem>,
    /// The cursor to ask with next (`since` itself when nothing is new).
    #[schema(minimum = 0)]
    pub next: i64,
}

/// Every error the API answers, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's status and message. (The fields are in the order `buildsrs_storage::http`
/// writes them, so the coordinator's and a mirror's answers to the same download are the
/// same bytes.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// What was wrong, and for bad input what a good value looks like.
    pub message: String,
    /// The HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
}

impl ErrorBody {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                status,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn enums_display_as_they_serialize() {
        fn check<T: Serialize + std::fmt::Display>(values: &[T]) {
            for value in values {
                assert_eq!(
                    serde_json::to_value(value).unwrap(),
                    serde_json::Value::String(value.to_string())
                );
            }
        }
        use TaskState as T;
        check(&[
            T::Queued,
            T::Building,
            T::Verified,
            T::Mismatch,
            T::Failed,
            T::NoBinaries,
            T::Cancelled,
        ]);
        check(&[VersionPlan::Probe, VersionPlan::Matrix]);
        use BuilderStatus as B;
        check(&[B::Pending, B::Approved, B::Revoked]);
        use LeaseState as L;
        check(&[L::Active, L::Completed, L::Expired, L::Cancelled]);
    }
}
