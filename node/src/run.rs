//! `buildsrs-node run`: join a coordinator's network and build what it hands out.
//!
//! Three long-running parts, started here and stopped in order:
//! 1. the blob server (iroh-blobs over the node's own key, a store in `D/blobs/`), which
//!    serves every artifact the node built to whoever asks by hash;
//! 2. the libp2p client ([`crate::net`]), which keeps the coordinator connection up;
//! 3. the job loop below: while fewer than `capacity` jobs run, ask for one; run each through
//!    the [`Pipeline`], renewing its lease meanwhile; add the artifact to the blob store;
//!    submit the result (retrying while the coordinator is unreachable).
//!
//! On shutdown the loop stops asking, says goodbye, and gives running jobs a grace period to
//! finish and submit; jobs still running after it are dropped (their sandboxes die with
//! them), recorded as abandoned by the node state at the next start, and their leases expire
//! at the coordinator, which hands the tasks to someone else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use buildsrs_blobs::{BlobConfig, BlobNode};
use buildsrs_domain::LeaseId;
use buildsrs_keys::RegistryUrl;
use buildsrs_p2p::libp2p::Multiaddr;
use buildsrs_protocol::{
    Attested, Hello, Job, JobResult, MAX_LOG_BYTES, NoJobReason, Outcome, RejectKind,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::datadir::DataDir;
use crate::job::{JobError, JobSpec};
use crate::net::{self, Client, JobAnswer, Renewal, Submitted};
use crate::outcome::{BuildOutcome, Built};
use crate::pipeline::{JobReport, Pipeline};
use crate::state::JobLease;
use crate::state::NodeState;

/// How `run` is set up beyond the data dir's configuration.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The coordinator to join, ending in `/p2p/<peer id>`.
    pub coordinator: Multiaddr,
    /// The name shown in the coordinator's builder list.
    pub name: String,
    /// Where the blob server binds. Loopback by default: a node serving a coordinator on
    /// another machine must be told an address that machine can reach.
    pub blobs_bind: SocketAddr,
    /// How long running jobs may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Build without a sandbox (tests of the network on machines without bubblewrap only).
    pub insecure_no_sandbox: bool,
    /// Start even when builds would run without a memory, process or disk limit.
    pub allow_unlimited_builds: bool,
}

impl RunOptions {
    /// Defaults for everything but the coordinator.
    pub fn new(coordinator: Multiaddr) -> Self {
        Self {
            coordinator,
            name: default_name(),
            blobs_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_grace: Duration::from_secs(30),
            insecure_no_sandbox: false,
            allow_unlimited_builds: false,
        }
    }
}

fn default_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "buildsrs-node".to_owned())
}

/// The agent string sent in hello and identify.
pub fn agent() -> String {
    format!("buildsrs-node/{}", env!("CARGO_PKG_VERSION"))
}

/// Everything a job task needs, shared.
struct Shared {
    pipeline: Pipeline,
    client: Client,
    blobs: BlobNode,
    registry: RegistryUrl,
}

/// Runs the node until `shutdown` fires, then stops cleanly (see the module docs).
pub async fn run(dir: DataDir, options: RunOptions, shutdown: CancellationToken) -> Result<()> {
    let config = dir.config()?;
    let identity = dir.identity()?;
    if options.insecure_no_sandbox {
        tracing::warn!("--insecure-no-sandbox: crates build unconfined");
    }
    if rustix::process::geteuid().is_root() {
        tracing::warn!(
            "running as root: a sandbox escape would own this machine. Run the node as its \
             own unprivileged user (see docs/node.md)"
        );
    }
    let (sandbox, capabilities) =
        crate::datadir::sandbox_for(&dir, &config, options.insecure_no_sandbox).await?;
    for note in &capabilities.notes {
        tracing::info!("sandbox: {note}");
    }
    let limits = crate::limits::report(&config.limits, &capabilities);
    for line in limits.lines() {
        tracing::info!("build limit: {line}");
    }
    limits.require_all(options.allow_unlimited_builds)?;
    let lock = dir.lock()?;
    let (state, abandoned) = NodeState::open(&dir.state_path())?;
    for job in &abandoned {
        tracing::warn!(
            "job {} ({} {}) was interrupted earlier; recorded as abandoned",
            job.id,
            job.start.crate_name,
            job.start.version
        );
    }
    let blobs_dir: PathBuf = dir.root().join("blobs");
    let dir_for_retention = dir.artifacts_dir();
    let pipeline = Pipeline::new(dir, sandbox, Arc::new(state), lock).await?;
    let blobs = BlobNode::spawn(BlobConfig {
        secret_key: identity.iroh_secret_key(),
        store_dir: Some(blobs_dir),
        bind: options.blobs_bind,
        gc_interval: Some(Duration::from_secs(60)),
    })
    .await
    .context("starting the blob server")?;
    let blob_addr = blobs.addr();
    tracing::info!(
        "blobs: serving as {} at {:?}",
        blob_addr.endpoint_id,
        blob_addr.addrs
    );
    let hello = Hello {
        agent: agent(),
        name: options.name.clone(),
        targets: config.targets.clone(),
        toolchains: vec![pipeline.toolchain().release.clone()],
        capacity: config.capacity,
        blobs: blob_addr,
    };
    // The network outlives the job loop: jobs still finishing after a shutdown signal must
    // be able to submit.
    let network_stop = CancellationToken::new();
    let (client, network) = net::start(
        &identity,
        options.coordinator.clone(),
        hello,
        &agent(),
        network_stop.clone(),
    )?;
    tracing::info!(
        "node {} joining {} with capacity {}",
        identity.fingerprint(),
        options.coordinator,
        config.capacity
    );
    let shared = Arc::new(Shared {
        pipeline,
        client: client.clone(),
        blobs,
        registry: config.registry.clone(),
    });

    let pruning = tokio::spawn(prune_hourly(
        shared.clone(),
        dir_for_retention,
        config.retention.clone(),
        shutdown.clone(),
    ));
    let jobs = job_loop(&shared, config.capacity, &shutdown).await;
    let _ = pruning.await;
    finish(jobs, &client, options.shutdown_grace).await;

    network_stop.cancel();
    let _ = network.await;
    match Arc::try_unwrap(shared) {
        Ok(shared) => shared.blobs.shutdown().await?,
        Err(_) => tracing::warn!("a job still holds the blob server; not shutting it down"),
    }
    tracing::info!("node stopped");
    Ok(())
}

/// Applies the retention rule at start and every hour, until `shutdown`.
async fn prune_hourly(
    shared: Arc<Shared>,
    artifacts_dir: PathBuf,
    rule: crate::retention::RetentionConfig,
    shutdown: CancellationToken,
) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = hourly.tick() => {}
        }
        let now = jiff::Timestamp::now().as_second();
        let state = shared.pipeline.state();
        match crate::retention::prune(state, &artifacts_dir, Some(&shared.blobs), &rule, now).await
        {
            Ok(pruned) if pruned.artifacts > 0 => tracing::info!(
                "retention: removed {} artifacts ({} MiB)",
                pruned.artifacts,
                pruned.bytes >> 20
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!("retention: {error:#}"),
        }
    }
}

/// Asks for work while there is capacity, until `shutdown`. Returns the running jobs.
async fn job_loop(
    shared: &Arc<Shared>,
    capacity: u32,
    shutdown: &CancellationToken,
) -> JoinSet<()> {
    let capacity = usize::try_from(capacity.max(1)).unwrap_or(1);
    let permits = Arc::new(Semaphore::new(capacity));
    let mut jobs = JoinSet::new();
    let mut told_pending = false;
    loop {
        while jobs.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = shutdown.cancelled() => return jobs,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return jobs,
            },
        };
        if shared.client.wait_welcomed(shutdown).await.is_none() {
            return jobs;
        }
        let wait = match shared.client.request_job().await {
            Ok(JobAnswer::Job(job)) => {
                told_pending = false;
                let shared = Arc::clone(shared);
                jobs.spawn(async move {
                    run_job(&shared, job).await;
                    drop(permit);
                });
                continue;
            }
            Ok(JobAnswer::NoJob {
                reason,
                retry_after,
            }) => {
                if reason == NoJobReason::NotApproved && !told_pending {
                    tracing::warn!("the coordinator has not approved this node; waiting");
                    told_pending = true;
                }
                retry_after
            }
            Err(error) => {
                tracing::debug!("job request failed: {error:#}");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return jobs,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Says goodbye and lets running jobs finish within `grace`.
async fn finish(mut jobs: JoinSet<()>, client: &Client, grace: Duration) {
    if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), client.goodbye()).await {
        tracing::info!("told the coordinator we are leaving");
    }
    if jobs.is_empty() {
        return;
    }
    tracing::info!("waiting up to {grace:?} for {} running job(s)", jobs.len());
    let drained =
        tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "abandoning {} job(s) still running; their leases will expire",
            jobs.len()
        );
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}
    }
}

/// One job: build while renewing the lease, keep the artifact, submit the result.
async fn run_job(shared: &Shared, job: Job) {
    tracing::info!(
        "job: task {} lease {} — {} {} for {}",
        job.task_id,
        job.lease_id,
        job.crate_name,
        job.version,
        job.target
    );
    let renewing = CancellationToken::new();
    // If this job is dropped (aborted after the shutdown grace), the renewer must stop too,
    // or it would keep an abandoned lease alive.
    let _stop_renewing = renewing.clone().drop_guard();
    let renewer = tokio::spawn(renew_until(
        shared.client.clone(),
        job.lease_id,
        job.epoch,
        job.deadline_unix,
        renewing.clone(),
    ));
    let started = std::time::Instant::now();
    let (outcome, log) = build(shared, &job).await;
    renewing.cancel();
    let _ = renewer.await;
    tracing::info!(
        "job: task {} — {} {}: {} after {:.1} s",
        job.task_id,
        job.crate_name,
        job.version,
        log.summary,
        started.elapsed().as_secs_f64()
    );
    let result = JobResult {
        task_id: job.task_id,
        lease_id: job.lease_id,
        epoch: job.epoch,
        outcome,
        log: log.bytes,
    };
    submit(shared, result).await;
}

/// What a job leaves for the volunteer and the coordinator besides its outcome.
struct JobLog {
    /// The outcome in the node's words, limits named (for the volunteer's log).
    summary: String,
    /// The build log as sent.
    bytes: Vec<u8>,
}

impl JobLog {
    fn node_error(reason: String) -> (Outcome, JobLog) {
        let log = JobLog {
            summary: format!("node error: {reason}"),
            bytes: Vec::new(),
        };
        (Outcome::node_error(reason), log)
    }
}

async fn build(shared: &Shared, job: &Job) -> (Outcome, JobLog) {
    // Everything in the job is input: checked before anything is made from it.
    // The protocol decoded name, version, target and checksum by the domain's rules; the
    // gate checks what only this node can (its targets, its registry's download origin).
    let spec = JobSpec {
        crate_name: job.crate_name.clone(),
        version: job.version.clone(),
        target: job.target.clone(),
        source_sha256: job.source_sha256,
        download_url: job.download_url.clone(),
    };
    let lease = Some(JobLease {
        task_id: job.task_id,
        lease_id: job.lease_id,
        epoch: job.epoch,
    });
    let request = match shared.pipeline.accept(spec, &shared.registry, lease).await {
        Ok(request) => request,
        Err(error @ JobError::ChecksumDiffers(_)) => {
            // Not the node's trouble: the job's source is not the registry's. Said as the
            // outcome it is, so honest builders agree on it and the task ends failed.
            tracing::warn!("job: task {}: {error}", job.task_id);
            let reason = error.to_string();
            let log = JobLog {
                summary: format!("source checksum mismatch: {reason}"),
                bytes: format!("{reason}\n").into_bytes(),
            };
            return (Outcome::source_checksum_mismatch(reason), log);
        }
        Err(error) => {
            tracing::warn!("job: task {}: {error}", job.task_id);
            return JobLog::node_error(error.to_string());
        }
    };
    let report = match shared.pipeline.build(&request, &|_| {}).await {
        Ok(report) => report,
        Err(error) => return JobLog::node_error(format!("{error:#}")),
    };
    let log = JobLog {
        summary: report.outcome.to_string(),
        bytes: capped_log(&report),
    };
    (keep_and_describe(shared, report).await, log)
}

/// Adds a built artifact to the blob store (so the coordinator can fetch it) and gives the
/// outcome its wire payload, the signed attestation.
async fn keep_and_describe(shared: &Shared, report: JobReport) -> Outcome {
    let Built {
        artifact,
        archive,
        attestation,
        ..
    } = match report.outcome {
        BuildOutcome::Built(built) => built,
        BuildOutcome::Ended(ended) => return Outcome::Ended(ended),
    };
    match shared.blobs.add_file(&archive).await {
        Ok(added) if added == artifact => {}
        Ok(added) => {
            return Outcome::node_error(format!(
                "the blob store hashed the archive as {}, the build as {}",
                added.blake3, artifact.blake3
            ));
        }
        Err(error) => {
            return Outcome::node_error(format!("adding the artifact to the blob store: {error}"));
        }
    }
    let json = attestation.to_canonical_json();
    Outcome::Built(Attested { attestation: json })
}

/// The log as sent: its tail when it is over the protocol's cap (the end says why it failed).
fn capped_log(report: &JobReport) -> Vec<u8> {
    let bytes = report.log.as_bytes();
    let start = bytes.len().saturating_sub(MAX_LOG_BYTES);
    bytes[start..].to_vec()
}

/// Renews the lease at a third of its remaining time until `stop`.
async fn renew_until(
    client: Client,
    lease_id: LeaseId,
    epoch: i64,
    mut deadline: i64,
    stop: CancellationToken,
) {
    loop {
        let left = deadline
            .saturating_sub(jiff::Timestamp::now().as_second())
            .max(3);
        let wait = Duration::from_secs(u64::try_from(left / 3).unwrap_or(1).max(1));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match client.renew(lease_id, epoch).await {
            Ok(Renewal::Renewed(deadline_unix)) => deadline = deadline_unix,
            // A busy or failing coordinator said nothing about the lease: ask again later.
            Ok(Renewal::Refused { kind, reason })
                if matches!(kind, RejectKind::Throttled | RejectKind::Unavailable) =>
            {
                tracing::debug!("lease {lease_id} not renewed yet ({kind:?}): {reason}");
            }
            Ok(Renewal::Refused { kind, reason }) => {
                // The task went to someone else; our result will still be recorded, late.
                tracing::warn!("lease {lease_id} not renewed ({kind:?}): {reason}");
                return;
            }
            Err(error) => tracing::debug!("renewing lease {lease_id}: {error:#}"),
        }
    }
}

/// Submits a result, retrying for a while when the coordinator cannot be reached.
async fn submit(shared: &Shared, result: JobResult) {
    let lease = result.lease_id;
    let mut wait = Duration::from_secs(1);
    for _ in 0..12 {
        match shared.client.submit(result.clone()).await {
            Ok(Submitted::Recorded { counted: true, .. }) => {
                tracing::info!("lease {lease}: result accepted and counted");
                return;
            }
            Ok(Submitted::Recorded {
                counted: false,
                reason,
            }) => {
                let reason = reason
                    .as_deref()
                    .unwrap_or("the coordinator gave no reason");
                tracing::warn!("lease {lease}: result recorded but not counted: {reason}");
                return;
            }
            Ok(Submitted::Refused { kind, reason })
                if !matches!(kind, RejectKind::Unavailable | RejectKind::Throttled) =>
            {
                tracing::warn!("lease {lease}: result refused ({kind:?}): {reason}");
                return;
            }
            Ok(Submitted::Refused { reason, .. }) => {
                tracing::warn!(
                    "lease {lease}: submitting: the coordinator is busy or unavailable ({reason}); retrying"
                );
            }
            Err(error) => tracing::debug!("lease {lease}: submitting: {error:#}; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
    tracing::warn!("lease {lease}: gave up submitting; the lease will expire");
}
