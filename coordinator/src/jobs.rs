//! The job protocol's meaning: what the coordinator answers to each [`Request`].
//!
//! [`JobService::handle`] takes the *authenticated* key of the asking peer (libp2p's noise
//! handshake proved it owns the key behind its `PeerId`) and a request, and returns the
//! response. It knows nothing of sockets, so tests call it directly; `network` feeds it.
//!
//! Rules enforced here, on top of the store's own:
//! - a node says hello before anything else on a connection; hello registers it (pending,
//!   or approved at once with `auto_approve`) and remembers its blob address;
//! - a built result counts only if its attestation is validly signed **by the connection's
//!   key** and describes exactly the leased task (crate, version, target, toolchain, source);
//!   anything else is refused and changes nothing;
//! - a result that makes an artifact verified wakes the publisher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use buildsrs_keys::{PublicKey, SignedAttestation};
use buildsrs_protocol::{
    BlobAddress, Hello, Job, JobResult, NoJobReason, Outcome, RejectKind, Request, Response,
    Standing,
};
use buildsrs_store::{
    BuildOutcome, BuilderStatus, Decision, LeaseId, NewBuilder, Store, StoreError, Submission,
    TaskId, TaskState,
};
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::registry::DownloadUrls;

/// How long a node waits before asking again when there is nothing for it.
pub const RETRY_AFTER_SECS: u32 = 5;

/// What the coordinator knows of a connected node beyond the store.
#[derive(Clone, Debug)]
pub struct Session {
    /// Its hello.
    pub hello: Hello,
    /// When it said hello.
    pub since: Timestamp,
}

/// Where connected (and recently connected) builders serve blobs, by key. Shared with the
/// publisher, which fetches verified artifacts from the builders that attested them.
#[derive(Clone, Debug, Default)]
pub struct Sessions(Arc<Mutex<HashMap<PublicKey, Session>>>);

impl Sessions {
    fn insert(&self, key: PublicKey, session: Session) {
        self.lock().insert(key, session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Session>> {
        // A panic while holding this lock cannot leave the map half-updated (every use is a
        // single insert/get), so a poisoned lock is still good to use.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hello a builder sent, if it said hello since the coordinator started.
    pub fn get(&self, key: &PublicKey) -> Option<Session> {
        self.lock().get(key).cloned()
    }

    /// The blob address of a builder, if known.
    pub fn blob_address(&self, key: &PublicKey) -> Option<BlobAddress> {
        self.get(key).map(|s| s.hello.blobs)
    }

    /// The blob addresses of those of `keys` that said hello, in the order given.
    pub fn blob_addresses(&self, keys: &[PublicKey]) -> Vec<BlobAddress> {
        let sessions = self.lock();
        keys.iter()
            .filter_map(|k| sessions.get(k).map(|s| s.hello.blobs.clone()))
            .collect()
    }

    /// How many builders said hello.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no builder said hello yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Answers job-protocol requests from the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobService {
    store: Store,
    sessions: Sessions,
    urls: DownloadUrls,
    auto_approve: bool,
    verified: Arc<Notify>,
}

impl JobService {
    /// A service over `store`. `verified` is notified whenever an artifact becomes verified.
    pub fn new(
        store: Store,
        urls: DownloadUrls,
        auto_approve: bool,
        sessions: Sessions,
        verified: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            sessions,
            urls,
            auto_approve,
            verified,
        }
    }

    /// The sessions this service keeps.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Answers one request from the peer whose key the transport authenticated.
    pub async fn handle(&self, peer: PublicKey, request: Request) -> Response {
        let now = Timestamp::now();
        let answer = match request {
            Request::Hello(hello) => self.hello(peer, hello, now).await,
            Request::RequestJob => self.request_job(peer, now).await,
            Request::RenewLease { lease_id, epoch } => self.renew(peer, lease_id, epoch, now).await,
            Request::Submit(result) => self.submit(peer, result, now).await,
            Request::Goodbye => {
                tracing::info!("builder {} says goodbye", peer.fingerprint());
                Ok(Response::Farewell)
            }
        };
        answer.unwrap_or_else(|error| {
            tracing::warn!("request from {}: {error}", peer.fingerprint());
            Response::rejected(RejectKind::Unavailable, "the coordinator failed; try again")
        })
    }

    async fn hello(
        &self,
        peer: PublicKey,
        hello: Hello,
        now: Timestamp,
    ) -> Result<Response, StoreError> {
        let registered = self
            .store
            .register_builder(
                NewBuilder {
                    public_key: peer,
                    name: hello.name.clone(),
                    targets: hello.targets.clone(),
                    toolchains: hello.toolchains.clone(),
                },
                now,
            )
            .await;
        let mut info = match registered {
            Ok(info) => info,
            Err(StoreError::Invalid(why)) => {
                return Ok(Response::rejected(RejectKind::BadRequest, why));
            }
            Err(other) => return Err(other),
        };
        if self.auto_approve && info.status == BuilderStatus::Pending {
            self.store.approve_builder(&peer, now).await?;
            info.status = BuilderStatus::Approved;
        }
        tracing::info!(
            "builder {} ({}) says hello: {} target(s), capacity {}, {:?}",
            peer.fingerprint(),
            hello.name,
            hello.targets.len(),
            hello.capacity,
            info.status
        );
        self.sessions.insert(peer, Session { hello, since: now });
        Ok(Response::Welcome {
            standing: standing(info.status),
        })
    }

    async fn request_job(&self, peer: PublicKey, now: Timestamp) -> Result<Response, StoreError> {
        if self.sessions.get(&peer).is_none() {
            return Ok(no_job(NoJobReason::HelloFirst));
        }
        let lease = match self.store.lease_next(&peer, now).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Ok(no_job(NoJobReason::NothingQueued)),
            Err(StoreError::NotApproved { .. }) => return Ok(no_job(NoJobReason::NotApproved)),
            Err(other) => return Err(other),
        };
        let download_url = match self
            .urls
            .download_url(&lease.crate_name, &lease.version, &lease.cksum)
            .await
        {
            Ok(url) => url,
            Err(error) => {
                // The lease stays with the builder until it expires; giving it back would need
                // a store operation for a case that only a broken registry causes.
                tracing::warn!(
                    "no download URL for {} {}: {error:#}",
                    lease.crate_name,
                    lease.version
                );
                return Ok(Response::rejected(
                    RejectKind::Unavailable,
                    format!("{error:#}"),
                ));
            }
        };
        tracing::info!(
            "lease {} (task {}, epoch {}): {} {} for {} to {}",
            lease.lease_id.0,
            lease.task_id.0,
            lease.epoch,
            lease.crate_name,
            lease.version,
            lease.target,
            peer.fingerprint()
        );
        Ok(Response::Job(Job {
            task_id: lease.task_id.0,
            lease_id: lease.lease_id.0,
            epoch: lease.epoch,
            deadline_unix: lease.deadline.as_second(),
            crate_name: lease.crate_name,
            version: lease.version,
            source_sha256: lease.cksum,
            download_url,
            target: lease.target,
            toolchain: lease.toolchain,
            features: Vec::new(),
        }))
    }

    async fn renew(
        &self,
        peer: PublicKey,
        lease_id: i64,
        epoch: i64,
        now: Timestamp,
    ) -> Result<Response, StoreError> {
        match self
            .store
            .renew_lease(&peer, LeaseId(lease_id), epoch, now)
            .await
        {
            Ok(deadline) => Ok(Response::Renewed {
                deadline_unix: deadline.as_second(),
            }),
            Err(error) => refusal(error),
        }
    }

    async fn submit(
        &self,
        peer: PublicKey,
        result: JobResult,
        now: Timestamp,
    ) -> Result<Response, StoreError> {
        let Some(detail) = self.store.task(TaskId(result.task_id)).await? else {
            return Ok(Response::rejected(
                RejectKind::StaleLease,
                format!("no task {}", result.task_id),
            ));
        };
        if !detail.leases.iter().any(|l| l.id.0 == result.lease_id) {
            return Ok(Response::rejected(
                RejectKind::StaleLease,
                format!(
                    "lease {} is not a lease of task {}",
                    result.lease_id, result.task_id
                ),
            ));
        }
        let outcome = match result.outcome {
            Outcome::Built { attestation } => {
                let cksum = self
                    .store
                    .version_info(&detail.task.crate_name, &detail.task.version)
                    .await?
                    .map(|v| v.version.cksum)
                    .unwrap_or_default();
                match check_attestation(&peer, &attestation, &detail.task, &cksum) {
                    Ok(signed) => BuildOutcome::Built {
                        artifact: signed.statement.artifact,
                        signed: attestation,
                    },
                    Err(why) => return Ok(Response::rejected(RejectKind::Forbidden, why)),
                }
            }
            Outcome::NoBinaries => BuildOutcome::NoBinaries,
            Outcome::BuildFailed { reason } => BuildOutcome::BuildFailed { reason },
            Outcome::TimedOut => BuildOutcome::TimedOut,
            Outcome::OutOfMemory => BuildOutcome::OutOfMemory,
            Outcome::OutputTooLarge => BuildOutcome::OutputTooLarge,
            Outcome::SourceChecksumMismatch { reason } => {
                BuildOutcome::SourceChecksumMismatch { reason }
            }
            Outcome::NodeError { reason } => BuildOutcome::NodeError { reason },
        };
        let node_error = matches!(outcome, BuildOutcome::NodeError { .. });
        let outcome_name = outcome.kind().as_str();
        let submission = Submission {
            lease_id: LeaseId(result.lease_id),
            epoch: result.epoch,
            builder: peer,
            outcome,
            log: (!result.log.is_empty()).then_some(result.log),
        };
        let report = match self.store.submit(submission, now).await {
            Ok(report) => report,
            Err(error) => return refusal(error),
        };
        let counted = match &report.not_counted {
            None => "counted".to_owned(),
            Some(why) => format!("not counted: {why}"),
        };
        tracing::info!(
            "result for task {} from {}: {outcome_name}, {counted}{}, task {:?}",
            result.task_id,
            peer.fingerprint(),
            if report.late { ", late" } else { "" },
            report.task_state
        );
        let ended = match report.decision.as_ref() {
            Some(decision) => describe_end(decision),
            // A node error that used up the task's retries stops it without a decision.
            None if node_error
                && !report.late
                && !report.duplicate
                && report.task_state == TaskState::Cancelled =>
            {
                Some("stopped: too many node-side failures (see the task page)".into())
            }
            None => None,
        };
        if let Some(ended) = ended {
            let task = &detail.task;
            tracing::info!(
                "task {} ({} {} for {}, {}) ended: {ended}",
                result.task_id,
                task.crate_name,
                task.version,
                task.target,
                task.toolchain
            );
        }
        if matches!(report.decision, Some(Decision::Verified { .. })) {
            self.verified.notify_one();
        }
        Ok(Response::Accepted {
            counted: report.counted,
            reason: report.not_counted.as_ref().map(ToString::to_string),
        })
    }
}

/// Why a task ended, in words for the operator's log; `None` while it is still open.
fn describe_end(decision: &Decision) -> Option<String> {
    match decision {
        Decision::Pending { .. }
        | Decision::Mismatch {
            exhausted: false, ..
        } => None,
        Decision::Verified { artifact } => Some(format!("verified, artifact {artifact}")),
        Decision::Mismatch {
            wanted,
            exhausted: true,
        } => Some(format!(
            "mismatch: builders still disagree after {wanted} results"
        )),
        Decision::Failed { reason } => Some(format!("failed: {reason}")),
        Decision::NoBinaries => Some("no binaries: the builders agree it has none".into()),
    }
}

fn no_job(reason: NoJobReason) -> Response {
    Response::NoJob {
        reason,
        retry_after_secs: RETRY_AFTER_SECS,
    }
}

fn standing(status: BuilderStatus) -> Standing {
    match status {
        BuilderStatus::Pending => Standing::Pending,
        BuilderStatus::Approved => Standing::Approved,
        BuilderStatus::Revoked => Standing::Revoked,
    }
}

/// Turns the store's refusals into protocol refusals; other errors stay errors.
fn refusal(error: StoreError) -> Result<Response, StoreError> {
    let kind = match &error {
        StoreError::StaleEpoch { .. } | StoreError::LeaseEnded { .. } | StoreError::NotFound(_) => {
            RejectKind::StaleLease
        }
        StoreError::NotApproved { .. } | StoreError::Conflict(_) => RejectKind::Forbidden,
        StoreError::Invalid(_) => RejectKind::BadRequest,
        _ => return Err(error),
    };
    Ok(Response::rejected(kind, error.to_string()))
}

/// Checks a submitted attestation: well-formed, validly signed, signed by the connection's
/// key, and about exactly the task the lease is for, built from the source the index names.
fn check_attestation(
    peer: &PublicKey,
    bytes: &[u8],
    task: &buildsrs_store::TaskInfo,
    cksum: &str,
) -> Result<SignedAttestation, String> {
    let signed = SignedAttestation::from_json_verified(bytes)
        .map_err(|e| format!("attestation refused: {e}"))?;
    let s = &signed.statement;
    if s.builder != *peer {
        return Err(format!(
            "attestation is signed by {}, not by the submitting builder {}",
            s.builder.fingerprint(),
            peer.fingerprint()
        ));
    }
    let matches = s.crate_name == task.crate_name
        && s.version == task.version
        && s.target == task.target
        && s.toolchain.release == task.toolchain;
    if !matches {
        return Err(format!(
            "attestation is for {} {} ({}, {}), the task is {} {} ({}, {})",
            s.crate_name,
            s.version,
            s.target,
            s.toolchain.release,
            task.crate_name,
            task.version,
            task.target,
            task.toolchain
        ));
    }
    let source = s.source_sha256.map(|d| d.to_hex()).unwrap_or_default();
    if !source.eq_ignore_ascii_case(cksum) {
        return Err(format!(
            "attestation names source sha256 {source:?}, the index says {cksum:?}"
        ));
    }
    Ok(signed)
}

/// The blob addresses the feed of verified artifacts lists for mirrors: the coordinator's
/// own blob store first (it holds every artifact it published; set once the network is up),
/// then the attesting builders that said hello.
#[derive(Clone, Debug, Default)]
pub struct FeedProviders {
    /// Who said hello, with their blob addresses.
    pub sessions: Sessions,
    /// The coordinator's own blob address.
    pub own: Arc<OnceLock<BlobAddress>>,
}

impl buildsrs_web::BlobProviders for FeedProviders {
    fn addresses(&self, attesters: &[PublicKey]) -> Vec<buildsrs_web::BlobAddress> {
        self.own
            .get()
            .cloned()
            .into_iter()
            .chain(self.sessions.blob_addresses(attesters))
            .map(|addr| buildsrs_web::BlobAddress {
                endpoint_id: addr.endpoint_id,
                addrs: addr.addrs,
            })
            .collect()
    }
}
