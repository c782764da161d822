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

use std::sync::Arc;

use buildsrs_keys::{PublicKey, SignedAttestation, Statement};
use buildsrs_protocol::{
    Attested, Hello, Job, JobResult, NoJobReason, Outcome, RejectKind, Request, Response, Standing,
};
use buildsrs_store::{
    BuildOutcome, BuilderStatus, Decision, LeaseId, LeasedTask, NewBuilder, Store, StoreError,
    StoredBuild, Submission, TaskState,
};
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::sessions::{Session, Sessions};

/// How long a node waits before asking again when there is nothing for it.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The largest signed attestation taken (the store keeps at most as much).
pub const MAX_ATTESTATION_BYTES: usize = 64 * 1024;

/// Answers job-protocol requests from the store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobService {
    store: Store,
    sessions: Sessions,
    auto_approve: bool,
    verified: Arc<Notify>,
}

impl JobService {
    /// A service over `store`. `verified` is notified whenever an artifact becomes verified.
    pub fn new(
        store: Store,
        auto_approve: bool,
        sessions: Sessions,
        verified: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            sessions,
            auto_approve,
            verified,
        }
    }

    /// The sessions this service keeps.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The keys of the builders the store holds as approved.
    pub async fn approved_builders(&self) -> Result<Vec<PublicKey>, StoreError> {
        Ok(self
            .store
            .builders()
            .await?
            .into_iter()
            .filter(|b| b.status == BuilderStatus::Approved)
            .map(|b| b.public_key)
            .collect())
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
        // Bounded before anything is stored or kept in the session.
        if let Err(why) = hello.check_bounds() {
            return Ok(Response::rejected(RejectKind::BadRequest, why.to_string()));
        }
        let registered = self
            .store
            .register_builder(
                NewBuilder {
                    public_key: peer,
                    name: hello.name.clone(),
                    targets: hello.targets.clone(),
                    toolchains: hello.toolchains.clone(),
                    capacity: hello.capacity,
                },
                now,
            )
            .await;
        let mut info = match registered {
            Ok(info) => info,
            Err(StoreError::Invalid(why)) => {
                return Ok(Response::rejected(RejectKind::BadRequest, why));
            }
            // Too many new keys wait for approval: this one may try again later.
            Err(StoreError::Conflict(why)) => {
                return Ok(Response::rejected(RejectKind::Unavailable, why));
            }
            Err(other) => return Err(other),
        };
        // Kept so that a restarted coordinator can fetch from this builder before it says
        // hello again; an address the store refuses only costs that.
        if let Err(error) = self.store.set_blob_address(&peer, &hello.blobs).await {
            tracing::warn!(
                "builder {}: not keeping its blob address: {error}",
                peer.fingerprint()
            );
        }
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
        let Some(download_url) = lease.download_url.clone() else {
            // Stored before versions kept their URL, and not seen in the index since: the
            // next poll that lists the crate fills it. The lease stays with the builder until
            // it expires; giving it back would need a store operation for a transient case.
            tracing::warn!(
                "no download URL stored for {} {} yet",
                lease.crate_name,
                lease.version
            );
            return Ok(Response::rejected(
                RejectKind::Unavailable,
                format!(
                    "no download URL stored for {} {} yet",
                    lease.crate_name, lease.version
                ),
            ));
        };
        tracing::info!(
            "lease {} (task {}, epoch {}): {} {} for {} to {}",
            lease.lease_id,
            lease.task_id,
            lease.epoch,
            lease.crate_name,
            lease.version,
            lease.target,
            peer.fingerprint()
        );
        Ok(Response::Job(Job {
            task_id: lease.task_id,
            lease_id: lease.lease_id,
            epoch: lease.epoch,
            deadline_unix: lease.deadline.as_second(),
            crate_name: lease.crate_name,
            version: lease.version,
            source_sha256: lease.cksum,
            download_url,
            target: lease.target,
            toolchain: lease.toolchain,
        }))
    }

    async fn renew(
        &self,
        peer: PublicKey,
        lease_id: LeaseId,
        epoch: i64,
        now: Timestamp,
    ) -> Result<Response, StoreError> {
        match self.store.renew_lease(&peer, lease_id, epoch, now).await {
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
        // Only a built result carries more than the store keeps: the attestation. Cheap
        // checks come first: its size, then its form (the store needs the artifact it names).
        // Its signature, the one costly check, is verified in the store's submit transaction,
        // only once the store has found that this peer holds the lease under that epoch, with
        // the check that it describes exactly the leased task; so a peer submitting made-up
        // results under leases it does not hold never gets a signature checked.
        let (outcome, signed) = match result.outcome {
            Outcome::Built(Attested { attestation }) => {
                if attestation.len() > MAX_ATTESTATION_BYTES {
                    return Ok(Response::rejected(
                        RejectKind::BadRequest,
                        format!("a signed attestation is at most {MAX_ATTESTATION_BYTES} bytes"),
                    ));
                }
                let signed = match SignedAttestation::from_json(&attestation) {
                    Ok(signed) => signed,
                    Err(e) => {
                        return Ok(Response::rejected(
                            RejectKind::Forbidden,
                            format!("attestation refused: {e}"),
                        ));
                    }
                };
                let built = StoredBuild {
                    artifact: signed.statement.artifact,
                    signed: attestation,
                };
                (BuildOutcome::Built(built), Some(signed))
            }
            Outcome::Ended(ended) => (BuildOutcome::Ended(ended), None),
        };
        let claimed_task = result.task_id;
        let lease_id = result.lease_id;
        let check = move |task: &LeasedTask| {
            if task.task_id != claimed_task {
                return Err(format!(
                    "lease {lease_id} is not a lease of task {claimed_task}"
                ));
            }
            let Some(signed) = &signed else {
                return Ok(());
            };
            describes_task(&signed.statement, task)?;
            verify_signer(&peer, signed)
        };
        let node_error = outcome.is_builder_fault();
        let outcome_name = outcome.kind().as_str();
        let submission = Submission {
            lease_id: result.lease_id,
            epoch: result.epoch,
            builder: peer,
            outcome,
            log: (!result.log.is_empty()).then_some(result.log),
        };
        let report = match self.store.submit_checked(submission, now, check).await {
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
            let task = &report.task;
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
        StoreError::NotApproved { .. } | StoreError::Conflict(_) | StoreError::Refused(_) => {
            RejectKind::Forbidden
        }
        StoreError::Invalid(_) => RejectKind::BadRequest,
        _ => return Err(error),
    };
    Ok(Response::rejected(kind, error.to_string()))
}

/// Checks a submitted attestation's signature, and that the connection's key made it.
fn verify_signer(peer: &PublicKey, signed: &SignedAttestation) -> Result<(), String> {
    signed
        .verify_signature()
        .map_err(|e| format!("attestation refused: {e}"))?;
    if signed.statement.builder != *peer {
        return Err(format!(
            "attestation is signed by {}, not by the submitting builder {}",
            signed.statement.builder.fingerprint(),
            peer.fingerprint()
        ));
    }
    Ok(())
}

/// Checks that a statement is about exactly the leased task (crate, version, target,
/// toolchain), built from the source the index names.
fn describes_task(s: &Statement, task: &LeasedTask) -> Result<(), String> {
    let matches = task.crate_name == s.crate_name
        && task.version == s.version
        && task.target == s.target
        && task.toolchain == s.toolchain.release;
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
    if s.source_sha256 != Some(task.cksum) {
        let named = s.source_sha256.map(|d| d.to_hex()).unwrap_or_default();
        return Err(format!(
            "attestation names source sha256 {named:?}, the index says {}",
            task.cksum
        ));
    }
    Ok(())
}
