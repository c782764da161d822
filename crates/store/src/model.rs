//! The store's typed inputs and outputs.
//!
//! Inputs (`IndexVersion`, `NewBuilder`, `Submission`, ...) are what the index follower, the
//! scheduler and the API hand in; the store validates them before writing anything. Outputs
//! are plain data the UI and the JSON API render (they all implement `Serialize`). Builder
//! identity is the ed25519 public key, artifacts are named by BLAKE3 hash and size, and every
//! time is a [`jiff::Timestamp`] (stored as unix milliseconds).

use std::fmt;
use std::str::FromStr;

use buildsrs_domain::Outcome;
use buildsrs_domain::{
    ArtifactId, CrateName, CrateVersion, PublicKey, Sha256Digest, TargetTriple, ToolchainRelease,
};
pub use buildsrs_domain::{BuilderName, IndexVersion, LeaseId, Operator, OutcomeKind, TaskId};
use jiff::Timestamp;
use serde::Serialize;

/// One recorded result (an attestation or a failure report). Only the store and the pages
/// that show a result know it; the ids that travel (tasks, leases) are `buildsrs-domain`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AttestationId(pub i64);

impl fmt::Display for AttestationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Defines a string-backed enum with its database text form.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The text form, as stored and as shown in the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = crate::StoreError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)*
                    other => Err(crate::StoreError::corrupt(format!(
                        "unknown {} {other:?}", stringify!($name)
                    ))),
                }
            }
        }
    };
}

text_enum!(
    /// Where a task stands.
    ///
    /// `queued` and `building` are open; `mismatch` is open while extra builds are wanted and
    /// final once the extra-build limit is reached (see [`TaskInfo::decided_at`]); the rest
    /// are final (a revocation can reopen a decided task).
    TaskState {
        /// Waiting for a builder (possibly backing off after a node-side failure).
        Queued => "queued",
        /// At least one builder holds a lease on it.
        Building => "building",
        /// `quorum` approved builders produced the same artifact.
        Verified => "verified",
        /// Builders disagree; extra builds are scheduled up to a limit.
        Mismatch => "mismatch",
        /// `quorum` approved builders agree that it does not build.
        Failed => "failed",
        /// `quorum` approved builders agree that it builds no binaries.
        NoBinaries => "no_binaries",
        /// Stopped: the version was yanked, or node-side failures exceeded the retry limit.
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// What the planner chose to build of a version (see [`VersionSummary::plan`]).
    VersionPlan {
        /// One probe task (the first enabled target, the newest fitting toolchain): the
        /// crate's last decision was "no binaries". A counted built result plans the rest.
        Probe => "probe",
        /// Every enabled target × every enabled toolchain its `rust-version` allows.
        Matrix => "matrix",
    }
);

text_enum!(
    /// An operator's verdict on a builder.
    BuilderStatus {
        /// Registered, waiting for an operator; gets no work.
        Pending => "pending",
        /// Gets work; its results count.
        Approved => "approved",
        /// Gets no work; none of its results count any more.
        Revoked => "revoked",
    }
);

text_enum!(
    /// Where a lease stands.
    LeaseState {
        /// The builder may work and renew.
        Active => "active",
        /// The builder delivered a result.
        Completed => "completed",
        /// The deadline passed and the task was requeued.
        Expired => "expired",
        /// The task was decided, cancelled, or the builder revoked.
        Cancelled => "cancelled",
    }
);

/// What one [`crate::Store::upsert_versions`] batch changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Crates seen for the first time.
    pub crates_added: u64,
    /// Versions seen for the first time.
    pub versions_added: u64,
    /// Known versions that became yanked.
    pub versions_yanked: u64,
    /// Known versions that were yanked and are not any more.
    pub versions_unyanked: u64,
    /// Tasks created.
    pub tasks_planned: u64,
    /// Open tasks cancelled because their version was yanked.
    pub tasks_cancelled: u64,
    /// Cancelled tasks requeued because their version was un-yanked.
    pub tasks_requeued: u64,
}

/// A builder introducing itself (or updating what it can build).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBuilder {
    /// Its identity.
    pub public_key: PublicKey,
    /// The name it asks to be known by, as its hello sent it: registering parses it as a
    /// [`BuilderName`] and refuses the builder, saying why, when it breaks that rule.
    pub name: String,
    /// Target triples it builds for.
    pub targets: Vec<TargetTriple>,
    /// Toolchains it has.
    pub toolchains: Vec<ToolchainRelease>,
    /// Jobs it runs at once (1 to [`crate::MAX_BUILDER_CAPACITY`]): it is never leased more
    /// tasks than that at a time.
    pub capacity: u32,
}

/// A builder as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuilderInfo {
    /// Its identity.
    pub public_key: PublicKey,
    /// Its name.
    pub name: BuilderName,
    /// The operator's verdict.
    pub status: BuilderStatus,
    /// Who runs it, as the admin said at approval; `None`: the key is its own operator.
    /// Keys of one operator count once toward a quorum.
    pub operator: Option<Operator>,
    /// Target triples it builds for.
    pub targets: Vec<TargetTriple>,
    /// Toolchains it has.
    pub toolchains: Vec<ToolchainRelease>,
    /// When it first registered.
    pub registered_at: Timestamp,
    /// When it last asked for work, renewed or submitted.
    pub last_seen: Option<Timestamp>,
    /// Artifacts it built and attested.
    pub built: u64,
    /// Results that ended on the winning side of a decision.
    pub agreed: u64,
    /// Results that ended on the losing side of a decision.
    pub outvoted: u64,
    /// Node-side failures: node errors it reported and leases it let expire.
    pub failed: u64,
}

/// Work handed to a builder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The task.
    pub task_id: TaskId,
    /// The lease, to renew and to submit under.
    pub lease_id: LeaseId,
    /// The fencing epoch: renewals and results must quote it.
    pub epoch: i64,
    /// When the lease expires unless renewed.
    pub deadline: Timestamp,
    /// Crate to build.
    pub crate_name: CrateName,
    /// Version to build.
    pub version: CrateVersion,
    /// SHA-256 the `.crate` must have.
    pub cksum: Sha256Digest,
    /// Target triple.
    pub target: TargetTriple,
    /// Toolchain.
    pub toolchain: ToolchainRelease,
    /// Where the `.crate` is downloaded from, as the index said when the version was
    /// ingested (`None` only for a version stored before the store kept it and not seen in
    /// the index since).
    pub download_url: Option<String>,
}

/// What a builder reports for a lease: the one outcome of `buildsrs-domain`, whose built
/// result carries [`StoredBuild`].
pub type BuildOutcome = Outcome<StoredBuild>;

/// What a lease is for, read in the submit transaction and handed to the submitter's check
/// (see [`crate::Store::submit_checked`]): what a built result's attestation must describe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeasedTask {
    /// The task the lease is for.
    pub task_id: TaskId,
    /// Crate.
    pub crate_name: CrateName,
    /// Version.
    pub version: CrateVersion,
    /// The `.crate`'s SHA-256, as the index listed it.
    pub cksum: Sha256Digest,
    /// Target triple.
    pub target: TargetTriple,
    /// Toolchain.
    pub toolchain: ToolchainRelease,
}

/// The submitter's check of a result against the task its lease is for; `Err` says why it is
/// refused ([`crate::StoreError::Refused`]), and nothing is recorded.
pub type SubmitCheck =
    std::sync::Arc<dyn Fn(&LeasedTask) -> std::result::Result<(), String> + Send + Sync>;

/// A built result as the store keeps it: the artifact and the signed attestation bytes
/// (verified by the coordinator, not by the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBuild {
    /// BLAKE3 and size of the archive.
    pub artifact: ArtifactId,
    /// The signed attestation, as received.
    pub signed: Vec<u8>,
}

/// A builder's result for a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The lease it worked under.
    pub lease_id: LeaseId,
    /// The lease's fencing epoch.
    pub epoch: i64,
    /// Who submits (must be the lease's holder).
    pub builder: PublicKey,
    /// What happened.
    pub outcome: BuildOutcome,
    /// The build log; the store keeps at most [`crate::Policy::max_log_bytes`] of it.
    pub log: Option<Vec<u8>>,
}

/// The decision a result led to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Not decided yet: more results wanted.
    Pending {
        /// Results counted so far.
        counted: u32,
        /// Results wanted in total.
        wanted: u32,
    },
    /// `quorum` builders agree on this artifact.
    Verified {
        /// The artifact.
        artifact: ArtifactId,
    },
    /// Builders disagree.
    Mismatch {
        /// Results wanted in total, extra builds included.
        wanted: u32,
        /// Whether the extra-build limit is reached (the task is final).
        exhausted: bool,
    },
    /// `quorum` builders agree it does not build.
    Failed {
        /// Why.
        reason: String,
    },
    /// `quorum` builders agree it has no binaries.
    NoBinaries,
}

/// What [`crate::Store::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubmitReport {
    /// The recorded result.
    pub attestation_id: AttestationId,
    /// The task it was for.
    pub task: LeasedTask,
    /// Whether it counts toward the task's decision (each builder counts once per task, and
    /// only while approved; node errors never count).
    pub counted: bool,
    /// Whether it came in under a lease that had expired or been cancelled.
    pub late: bool,
    /// Whether this exact lease already had a result (the earlier one stands; nothing was
    /// written).
    pub duplicate: bool,
    /// The task's state afterwards.
    pub task_state: TaskState,
    /// The decision this result led to, if it was evaluated.
    pub decision: Option<Decision>,
    /// Why the result does not count toward the decision; `None` exactly when
    /// [`Self::counted`].
    pub not_counted: Option<NotCounted>,
}

/// Why a result was recorded but not counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum NotCounted {
    /// A node error: the node's own failure, never evidence about the crate.
    NodeError,
    /// The builder is not approved (pending, or revoked).
    BuilderNotApproved {
        /// Its status.
        status: BuilderStatus,
    },
    /// The task was cancelled (its version yanked, or stopped after node-side failures).
    TaskCancelled {
        /// The task's reason.
        reason: Option<String>,
    },
    /// The builder already has a counted result for this task: each builder counts once.
    AlreadyCounted,
    /// Another key of the builder's operator already has a counted result for this task:
    /// each operator counts once, however many keys it runs.
    OperatorAlreadyCounted {
        /// The operator.
        operator: Operator,
    },
    /// A second submission under the same lease, whose first result was not counted either
    /// (the first stands; nothing new was recorded).
    Duplicate,
}

impl fmt::Display for NotCounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCounted::NodeError => f.write_str("node errors never count"),
            NotCounted::BuilderNotApproved { status } => {
                write!(f, "the builder is not approved ({status})")
            }
            NotCounted::TaskCancelled {
                reason: Some(reason),
            } => {
                write!(f, "the task was cancelled: {reason}")
            }
            NotCounted::TaskCancelled { reason: None } => f.write_str("the task was cancelled"),
            NotCounted::AlreadyCounted => {
                f.write_str("the builder already has a counted result for this task")
            }
            NotCounted::OperatorAlreadyCounted { operator } => write!(
                f,
                "another key of operator {operator} already has a counted result for this task"
            ),
            NotCounted::Duplicate => {
                f.write_str("a duplicate submission under the same lease (the first stands)")
            }
        }
    }
}

/// What [`crate::Store::expire_leases`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExpireReport {
    /// Leases past their deadline, now expired.
    pub expired: u64,
    /// Tasks requeued (with backoff).
    pub requeued: u64,
    /// Tasks stopped because node-side failures reached the retry limit.
    pub stopped: u64,
}

/// What [`crate::Store::revoke_builder`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RevokeReport {
    /// The builder's active leases, now cancelled.
    pub leases_cancelled: u64,
    /// Tasks whose counted results included the builder's, decided again.
    pub tasks_redecided: u64,
    /// Tasks that were verified and no longer are.
    pub verified_lost: u64,
}

/// A slice of a long list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Page {
    /// Items to skip.
    pub offset: u64,
    /// Items to return (capped at [`Page::MAX_LIMIT`]).
    pub limit: u32,
}

impl Page {
    /// The largest page the store returns.
    pub const MAX_LIMIT: u32 = 200;

    /// The first `limit` items.
    pub const fn first(limit: u32) -> Self {
        Self { offset: 0, limit }
    }
}

/// One page of results and the total count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Paged<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// How many items match in all.
    pub total: u64,
    /// The page asked for (limit capped).
    pub page: Page,
}

/// A crate in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrateSummary {
    /// Name.
    pub name: CrateName,
    /// Whether its new versions get built.
    pub watched: bool,
    /// Versions known.
    pub versions: u64,
    /// When the store first saw it.
    pub first_seen: Timestamp,
}

/// A crate and its versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrateInfo {
    /// Name.
    pub name: CrateName,
    /// Whether its new versions get built.
    pub watched: bool,
    /// When the store first saw it.
    pub first_seen: Timestamp,
    /// Versions older than the newest to build when it is first planned (its last watch
    /// request).
    pub backfill: u32,
    /// Whether it has binaries, as its latest decision said (`None`: not decided yet). New
    /// versions of a crate without binaries get one probe task.
    pub binaries: Option<bool>,
    /// Versions, newest first seen first.
    pub versions: Vec<VersionSummary>,
}

/// A version in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionSummary {
    /// Version string.
    pub version: CrateVersion,
    /// SHA-256 of the `.crate`.
    pub cksum: Sha256Digest,
    /// Yanked?
    pub yanked: bool,
    /// When the store first saw it.
    pub first_seen: Timestamp,
    /// The manifest's `rust-version`, from the index.
    pub rust_version: Option<String>,
    /// What the planner chose to build; `None`: not chosen (older than the newest version
    /// when its crate was watched or first seen, and not asked for as backfill).
    pub plan: Option<VersionPlan>,
    /// Why a chosen version has no tasks, e.g. "needs Rust 1.96 or newer; enabled
    /// toolchains: 1.95.0".
    pub plan_note: Option<String>,
}

/// A version and its tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// Crate name.
    pub crate_name: CrateName,
    /// The version.
    pub version: VersionSummary,
    /// Its tasks.
    pub tasks: Vec<TaskInfo>,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// Id.
    pub id: TaskId,
    /// Crate name.
    pub crate_name: CrateName,
    /// Version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// Toolchain.
    pub toolchain: ToolchainRelease,
    /// State.
    pub state: TaskState,
    /// Why it is failed, mismatched or cancelled.
    pub reason: Option<String>,
    /// Higher goes first.
    pub priority: i64,
    /// Agreeing results needed.
    pub quorum: u32,
    /// Results wanted in total (quorum plus extra builds after a mismatch).
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
    pub artifact: Option<ArtifactId>,
    /// When planned.
    pub created_at: Timestamp,
    /// When last changed.
    pub updated_at: Timestamp,
    /// When it reached a final decision.
    pub decided_at: Option<Timestamp>,
}

/// A task with its leases and results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskDetail {
    /// The task.
    pub task: TaskInfo,
    /// Every lease ever granted for it.
    pub leases: Vec<LeaseInfo>,
    /// Every result recorded for it.
    pub results: Vec<AttestationInfo>,
}

/// A lease as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// Id.
    pub id: LeaseId,
    /// The task.
    pub task_id: TaskId,
    /// Holder.
    pub builder: PublicKey,
    /// Fencing epoch.
    pub epoch: i64,
    /// State.
    pub state: LeaseState,
    /// Granted.
    pub granted_at: Timestamp,
    /// Deadline (last renewal's).
    pub deadline: Timestamp,
    /// When it stopped being active.
    pub ended_at: Option<Timestamp>,
}

/// A recorded result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttestationInfo {
    /// Id.
    pub id: AttestationId,
    /// The task.
    pub task_id: TaskId,
    /// The lease it came under.
    pub lease_id: LeaseId,
    /// Who.
    pub builder: PublicKey,
    /// Their name.
    pub builder_name: BuilderName,
    /// What kind of result.
    pub outcome: OutcomeKind,
    /// The artifact, for `built`.
    pub artifact: Option<ArtifactId>,
    /// The signed attestation bytes, for `built`.
    pub signed: Option<Vec<u8>>,
    /// The reason given, for failures.
    pub reason: Option<String>,
    /// When received.
    pub received_at: Timestamp,
    /// Whether it counts toward the decision.
    pub counted: bool,
    /// Whether it came under an expired or cancelled lease.
    pub late: bool,
}

/// A verified artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    /// Hash and size.
    pub artifact: ArtifactId,
    /// Where object storage keeps it, once stored.
    pub storage_key: Option<String>,
    /// When first verified; `None` if a revocation withdrew its verification.
    pub verified_at: Option<Timestamp>,
    /// Tasks verified with it.
    pub tasks: Vec<TaskInfo>,
    /// The counted attestations of approved builders for it (what goes in its bundle).
    pub attestations: Vec<AttestationInfo>,
    /// Downloads per day, most recent first (last 30 days with downloads).
    pub downloads: Vec<DailyDownloads>,
}

/// Downloads of an artifact on one UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DailyDownloads {
    /// The day.
    pub day: jiff::civil::Date,
    /// Downloads that day.
    pub count: u64,
}

/// One verified task, for the "recently verified" list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedItem {
    /// The task.
    pub task_id: TaskId,
    /// Crate name.
    pub crate_name: CrateName,
    /// Version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// Toolchain.
    pub toolchain: ToolchainRelease,
    /// The artifact.
    pub artifact: ArtifactId,
    /// When verified.
    pub verified_at: Timestamp,
}

/// Queue statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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
    /// Tasks a builder could lease right now (not backing off, below their lease limit).
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

/// A target triple or toolchain in the build matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatrixEntry {
    /// The triple or toolchain name.
    pub name: String,
    /// Whether new versions get tasks for it and its tasks get leased.
    pub enabled: bool,
}

/// An entry of the append-only event log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Increasing id.
    pub id: i64,
    /// When.
    pub at: Timestamp,
    /// What kind of event, e.g. `task_decided`.
    pub kind: String,
    /// The task concerned.
    pub task_id: Option<TaskId>,
    /// The builder concerned.
    pub builder: Option<PublicKey>,
    /// Details.
    pub detail: serde_json::Value,
}

/// A stored build log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildLog {
    /// Whether the result's task is decided: until it is, the log is not shown (it names
    /// the artifact's hash).
    pub task_decided: bool,
    /// The result it belongs to.
    pub attestation_id: AttestationId,
    /// The kept bytes: the end of the log, where errors are.
    pub bytes: Vec<u8>,
    /// The length the builder sent.
    pub original_len: u64,
}

impl BuildLog {
    /// Whether the log was cut.
    pub fn truncated(&self) -> bool {
        self.original_len > self.bytes.len() as u64
    }
}

/// An artifact in the publication feed (see [`crate::Store::published_since`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedArtifact {
    /// Its feed number: increasing in the order artifacts reached object storage.
    pub seq: i64,
    /// Hash and size.
    pub artifact: ArtifactId,
    /// When verified; `None` if a revocation has since withdrawn the verification (the
    /// blob stays stored, and mirrors that check bundles against a keyring decide).
    pub verified_at: Option<Timestamp>,
}

/// One result a builder sent, with the task it was for (a builder's recent jobs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuilderResult {
    /// Crate name.
    pub crate_name: CrateName,
    /// Version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// Toolchain.
    pub toolchain: ToolchainRelease,
    /// The task's state now.
    pub task_state: TaskState,
    /// Whether the task is decided (see [`TaskInfo::decided_at`]).
    pub task_decided: bool,
    /// The result.
    pub result: AttestationInfo,
}
