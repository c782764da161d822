//! One build, start to finish: fetch, unpack, plan, lock and fetch dependencies (phase 1,
//! network), compile (phase 2, no network), pack, sign, keep.
//!
//! Every job is recorded in the node state before work starts and finished in one
//! transaction with its artifact and attestation; its scratch directory is removed at the end
//! whatever happens. Each step maps its failures onto a [`BuildOutcome`]: what the crate did
//! (a checksum that does not match, a refused archive, a compile error, a limit hit) is a
//! result other builders can confirm; what went wrong on this machine is a `NodeError` and
//! never counts against the crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use buildsrs_archive::{
    ArtifactFile, Limits as UnpackLimits, UnpackError, pack_artifact, unpack_tar_gz,
};
use buildsrs_keys::{
    CrateName, CrateVersion, Identity, RegistryUrl, RustRelease, SCHEMA_VERSION, Sha256Digest,
    SignedAttestation, Statement, TargetTriple, Toolchain,
};
use buildsrs_sandbox::{
    CappedLog, CargoLayout, RunKind, RunOutcome, Sandbox, SandboxSpec, clock, layout, output,
};
use sha2::{Digest, Sha256};

use crate::datadir::{DataDir, DataDirLock, NodeConfig};
use crate::fetch::{DownloadLimits, FetchError, download_crate};
use crate::job::{DownloadUrl, JobError, JobFields, JobGate, JobSpec};
use crate::metadata::{MetadataRun, read_metadata};
use crate::outcome::{self, BuildOutcome, Built};
use crate::plan::{BuildPlan, plan_from_metadata};
use crate::registry_proxy::{ProxyGrant, RegistryProxy};
use crate::settings::BuildSettings;
use crate::sources::{JobRegistry, check_unpacked};
use crate::state::{JobEnd, JobLease, JobStart, NodeState};

/// `SOURCE_DATE_EPOCH` for every build: a fixed instant, so that nothing depends on when or
/// where a crate was built.
pub const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;

/// What to build. Made from a job's fields by [`Pipeline::accept`], which checks them against
/// this node (see [`crate::job`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRequest {
    /// Crate name.
    pub crate_name: CrateName,
    /// Crate version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// The index checksum of the `.crate`.
    pub source_sha256: Sha256Digest,
    /// Where to download the `.crate`: on the host the registry serves downloads from.
    pub download_url: DownloadUrl,
    /// The registry the crate and its dependencies come from (`sparse+https://index.crates.io/`
    /// for crates.io): the node's own, named in the statement with the source checksum.
    pub registry: RegistryUrl,
    /// The coordinator's task and lease, when the job came from one.
    pub lease: Option<JobLease>,
}

/// Where a build is at, for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Downloading the `.crate`: bytes so far, total when known.
    Downloading(u64, Option<u64>),
    /// Unpacking and reading the manifest.
    Planning,
    /// Phase 1: locking and fetching dependencies.
    FetchingDependencies,
    /// Phase 2: compiling in the sandbox.
    Compiling,
    /// Packing and signing.
    Packing,
}

/// The end of a job.
#[derive(Clone, Debug)]
pub struct JobReport {
    /// The node-state job id.
    pub job_id: i64,
    /// How it ended; a built outcome holds the archive and the attestation.
    pub outcome: BuildOutcome,
    /// The capped build log. It ends with the step timings and the outcome.
    pub log: String,
}

impl JobReport {
    /// The archive in the data dir, when it built.
    pub fn archive(&self) -> Option<&Path> {
        self.outcome.built().map(|built| built.archive.as_path())
    }

    /// The signed attestation, when it built.
    pub fn attestation(&self) -> Option<&SignedAttestation> {
        self.outcome.built().map(|built| &built.attestation)
    }
}

/// Builds crates for one node. Cheap to share: the state is behind an `Arc`.
#[derive(Debug)]
pub struct Pipeline {
    dir: DataDir,
    config: NodeConfig,
    identity: Identity,
    sandbox: Sandbox,
    state: Arc<NodeState>,
    http: reqwest::Client,
    toolchain: Toolchain,
    toolchain_dir: PathBuf,
    clock_shim: PathBuf,
    gate: JobGate,
    /// Held for the pipeline's life: no other process builds with this data dir.
    _lock: DataDirLock,
    /// Phase 1's only way out: the job's registry and nothing else.
    proxy: RegistryProxy,
}

impl Pipeline {
    /// Sets up a pipeline over an opened data dir: reads the identity and configuration, and
    /// asks the toolchain for its version and sysroot.
    ///
    /// `lock` is the data dir's ([`DataDir::lock`], taken before the state was opened, since
    /// opening it marks unfinished jobs abandoned).
    pub async fn new(
        dir: DataDir,
        sandbox: Sandbox,
        state: Arc<NodeState>,
        lock: DataDirLock,
    ) -> Result<Self> {
        let config = dir.config()?;
        let identity = dir.identity()?;
        // Whatever a crash or `kill -9` left mid-job: job dirs, run cgroups, scratch dirs.
        let work_dirs = dir.remove_stale_work(&lock)?;
        let stale = sandbox.remove_stale().await;
        if work_dirs + stale.cgroups + stale.scratch_dirs > 0 {
            tracing::info!(
                "removed what interrupted jobs left: {work_dirs} job dirs, {} sandbox cgroups, \
                 {} scratch dirs",
                stale.cgroups,
                stale.scratch_dirs
            );
        }
        let (toolchain, toolchain_dir) = local_toolchain(config.toolchain.as_deref()).await?;
        let clock_shim = clock::install(&dir.lib_dir()).context("installing the clock library")?;
        clock::self_check(&sandbox, &clock_shim).await?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let gate = JobGate::new(
            &config.targets,
            http.clone(),
            Duration::from_secs(config.limits.download_secs),
        );
        let proxy = RegistryProxy::start(tokio_util::sync::CancellationToken::new())
            .await
            .context("starting the registry proxy")?;
        Ok(Self {
            dir,
            config,
            identity,
            sandbox,
            state,
            http,
            toolchain,
            toolchain_dir,
            clock_shim,
            gate,
            _lock: lock,
            proxy,
        })
    }

    /// The node's state.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// Checks a job (from a coordinator or the command line) against this node and makes the
    /// request [`Pipeline::build`] takes; `registry` is where its dependencies come from. A
    /// refused job changes nothing (see [`crate::job`]).
    pub async fn accept(
        &self,
        spec: JobSpec,
        registry: &RegistryUrl,
        lease: Option<JobLease>,
    ) -> Result<BuildRequest, JobError> {
        self.gate.accept(spec, registry, lease).await
    }

    /// `name` `version` as `registry`'s index lists it, read by this node (the same read its
    /// job check compares a job's checksum with).
    pub async fn index_version(
        &self,
        registry: &RegistryUrl,
        name: &CrateName,
        version: &CrateVersion,
    ) -> Result<buildsrs_index::IndexVersion, JobError> {
        self.gate.index_version(registry, name, version).await
    }

    /// [`Pipeline::accept`] for a job given as text: each field is parsed first.
    pub async fn accept_fields(
        &self,
        fields: &JobFields<'_>,
        registry: &RegistryUrl,
        lease: Option<JobLease>,
    ) -> Result<BuildRequest, JobError> {
        self.accept(fields.parse()?, registry, lease).await
    }

    /// The toolchain builds use.
    pub fn toolchain(&self) -> &Toolchain {
        &self.toolchain
    }

    /// The node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Runs one job to its outcome. `Err` only when the node state itself fails; everything
    /// else, including node-side problems, is an outcome.
    pub async fn build(
        &self,
        request: &BuildRequest,
        progress: &(dyn Fn(Stage) + Sync),
    ) -> Result<JobReport> {
        let job_id = self.state.begin_job(&JobStart {
            crate_name: request.crate_name.clone(),
            version: request.version.clone(),
            target: request.target.clone(),
            source_sha256: Some(request.source_sha256),
            lease: request.lease,
        })?;
        let work = self.dir.work_dir().join(format!("job-{job_id}"));
        let mut log = CappedLog::new(
            usize::try_from(self.config.limits.log_kib * 1024).unwrap_or(usize::MAX),
        );
        let started = jiff::Timestamp::now();
        let mut steps = Steps::start();
        let result = self
            .run_job(request, &work, &mut log, &mut steps, started, progress)
            .await;
        steps.begin("clean up");
        if let Err(error) = std::fs::remove_dir_all(&work)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {error}", work.display());
        }
        let outcome = result.unwrap_or_else(|error| BuildOutcome::node_error(format!("{error:#}")));
        steps.end();
        push_line(&mut log, &format!("== steps: {steps}"));
        push_line(&mut log, &format!("== outcome: {outcome}"));
        let built = outcome.built();
        self.state.finish_job(
            job_id,
            &JobEnd {
                outcome: outcome.kind().as_str().to_owned(),
                detail: outcome.to_string(),
                artifact: built.map(|b| (b.artifact, b.archive.clone())),
                attestation: built.map(|b| {
                    String::from_utf8_lossy(&b.attestation.to_canonical_json()).into_owned()
                }),
            },
        )?;
        Ok(JobReport {
            job_id,
            outcome,
            log: log.to_string_lossy(),
        })
    }

    /// The steps, in order; each either hands the next what it needs or ends the job with
    /// an outcome (`Ok(Err(outcome))`). `Err` means the node failed (disk, sandbox); the
    /// caller turns it into a node error.
    async fn run_job(
        &self,
        request: &BuildRequest,
        work: &Path,
        log: &mut CappedLog,
        steps: &mut Steps,
        started: jiff::Timestamp,
        progress: &(dyn Fn(Stage) + Sync),
    ) -> Result<BuildOutcome> {
        /// The value of a step, or the end of the job with its outcome.
        macro_rules! step {
            ($step:expr) => {
                match $step {
                    Ok(value) => value,
                    Err(outcome) => return Ok(outcome),
                }
            };
        }
        let top = format!("{}-{}", request.crate_name, request.version);
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        let crate_file = work.join(format!("{top}.crate"));

        steps.begin("download");
        step!(self.download(request, &crate_file, log, progress).await?);

        steps.begin("unpack");
        progress(Stage::Planning);
        let unpack_dir = work.join("src");
        let source = step!(unpack_source(&crate_file, &unpack_dir, &top, log)?);

        steps.begin("plan");
        let plan = step!(self.plan(&source, work, log).await?);
        if let Some(outcome) = self.cannot_build(&plan, &request.target) {
            push_line(log, &format!("== not building: {outcome}"));
            return Ok(outcome);
        }

        steps.begin("check sources");
        step!(check_sources(&source, request, log)?);

        steps.begin("phase 1");
        let cargo = CargoLayout {
            source: source.clone(),
            cargo_home: self.cargo_home(&request.registry)?,
            dependency_sources: work.join("dependency-sources"),
            target: work.join("target"),
            toolchain: self.toolchain_dir.clone(),
            clock_shim: self.clock_shim.clone(),
        };
        cargo.create_dirs()?;
        progress(Stage::FetchingDependencies);
        let lock_path = source.join("Cargo.lock");
        let shipped_lock = lock_path.is_file();
        let cached = shipped_lock && {
            let check = check_dependency_cache(&lock_path, &cargo.cargo_home);
            note_repairs(log, &check);
            check.complete
        };
        if cached {
            push_line(
                log,
                "== phase 1: skipped, every dependency in the shipped Cargo.lock is cached",
            );
        } else if let Some(outcome) = self
            .fetch_dependencies(&cargo, shipped_lock, request, log)
            .await?
        {
            return Ok(outcome);
        }

        steps.begin("phase 2");
        // Read before phase 2, which may write into the source.
        let lock_sha256 = sha256_file(&lock_path)?;
        progress(Stage::Compiling);
        let spec = self.build_spec(&cargo, &plan, &request.target);
        let settings = BuildSettings {
            buildsrs_version: env!("CARGO_PKG_VERSION").to_owned(),
            archive_format: buildsrs_archive::pack::MANIFEST_FORMAT,
            compile: self.sandbox.settings_description(&spec),
            clock: BuildSettings::frozen_clock(SOURCE_DATE_EPOCH),
        };
        let phase_one = PhaseOne {
            crate_file: &crate_file,
            unpack_dir: &unpack_dir,
            top: &top,
            shipped_lock,
            cached,
        };
        step!(
            self.compile(request, &cargo, &spec, &phase_one, work, log, steps)
                .await?
        );

        steps.begin("pack and sign");
        progress(Stage::Packing);
        let signed = Signed {
            plan: &plan,
            settings: &settings,
            lock_sha256,
            started,
        };
        let built = step!(self.pack_and_sign(request, &cargo, &signed, work, log)?);
        Ok(BuildOutcome::Built(built))
    }

    /// Downloads the `.crate` to `crate_file`, capped in size and time and checked against
    /// the index checksum.
    async fn download(
        &self,
        request: &BuildRequest,
        crate_file: &Path,
        log: &mut CappedLog,
        progress: &(dyn Fn(Stage) + Sync),
    ) -> Result<Result<(), BuildOutcome>> {
        push_line(log, &format!("== downloading {}", request.download_url));
        let limits = DownloadLimits::new(
            self.config.limits.crate_mib << 20,
            Duration::from_secs(self.config.limits.download_secs),
        );
        let downloaded = download_crate(
            &self.http,
            request.download_url.as_str(),
            &request.source_sha256,
            limits,
            crate_file,
            |received, total| progress(Stage::Downloading(received, total)),
        )
        .await;
        match downloaded {
            Ok(bytes) => {
                push_line(
                    log,
                    &format!("   {bytes} bytes, sha256 {}", request.source_sha256),
                );
                Ok(Ok(()))
            }
            Err(error @ FetchError::ChecksumMismatch { .. }) => {
                push_line(log, &error.to_string());
                Ok(Err(BuildOutcome::source_checksum_mismatch(
                    error.to_string(),
                )))
            }
            Err(error @ FetchError::TooLarge { .. }) => {
                push_line(log, &error.to_string());
                Ok(Err(failed(error.to_string())))
            }
            Err(error) => {
                // The registry's or the network's trouble (a stall, the time limit, an error
                // status): never the crate's.
                push_line(log, &error.to_string());
                Err(error).context("downloading the crate")
            }
        }
    }

    /// Phase 2 in the sandbox. When phase 1 was skipped (every dependency cached) and cargo
    /// still wanted something, fetches as usual and builds again from a fresh source.
    #[allow(clippy::too_many_arguments)] // The job's state, passed along rather than bundled.
    async fn compile(
        &self,
        request: &BuildRequest,
        cargo: &CargoLayout,
        spec: &SandboxSpec,
        phase_one: &PhaseOne<'_>,
        work: &Path,
        log: &mut CappedLog,
        steps: &mut Steps,
    ) -> Result<Result<(), BuildOutcome>> {
        push_line(
            log,
            &format!(
                "== phase 2: cargo {} (offline, sandboxed)",
                spec.args.join(" ")
            ),
        );
        let mut run = self.sandbox.run(spec).await?;
        append_run(log, &run);
        if phase_one.cached && run.kind() == RunKind::Failed && missed_offline(&run) {
            // The cache looked complete but cargo still wanted something (an index entry,
            // say): fetch as usual and build again from a fresh source and clean dirs (the
            // failed run may have written into all of them).
            push_line(
                log,
                "== phase 2 needed something not cached; fetching and building again",
            );
            for dir in [
                phase_one.unpack_dir,
                &cargo.dependency_sources,
                &cargo.target,
            ] {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            if let Err(outcome) = unpack_source(
                phase_one.crate_file,
                phase_one.unpack_dir,
                phase_one.top,
                log,
            )? {
                return Ok(Err(outcome));
            }
            cargo.create_dirs()?;
            steps.begin("phase 1 (again)");
            if let Some(outcome) = self
                .fetch_dependencies(cargo, phase_one.shipped_lock, request, log)
                .await?
            {
                return Ok(Err(outcome));
            }
            steps.begin("phase 2 (again)");
            run = self.sandbox.run(spec).await?;
            append_run(log, &run);
        }
        Ok(match self.compile_failure(&run, spec, work) {
            Some(outcome) => Err(outcome),
            None => Ok(()),
        })
    }

    /// Takes the binaries out of the target dir (without following links), packs them into
    /// the data dir's artifacts, and signs the attestation.
    fn pack_and_sign(
        &self,
        request: &BuildRequest,
        cargo: &CargoLayout,
        signed: &Signed<'_>,
        work: &Path,
        log: &mut CappedLog,
    ) -> Result<Result<Built, BuildOutcome>> {
        let plan = signed.plan;
        let files = match self.take_binaries(&cargo.target, &request.target, plan, work)? {
            Ok(files) => files,
            Err(reason) => {
                push_line(log, &reason);
                return Ok(Err(failed(reason)));
            }
        };
        let staged = work.join("artifact.tar.gz");
        let packed = pack_artifact(
            &request.crate_name,
            &request.version,
            &request.target,
            &files,
            &staged,
        )?;
        let archive = self
            .dir
            .artifacts_dir()
            .join(format!("{}.tar.gz", packed.id.blake3));
        std::fs::rename(&staged, &archive)
            .with_context(|| format!("storing {}", archive.display()))?;
        push_line(
            log,
            &format!("== packed {} ({})", packed.id, plan.binaries.join(", ")),
        );

        let statement = Statement {
            schema: SCHEMA_VERSION,
            crate_name: request.crate_name.clone(),
            version: request.version.clone(),
            registry: Some(request.registry.clone()),
            source_sha256: Some(request.source_sha256),
            cargo_lock_sha256: Some(signed.lock_sha256),
            target: request.target.clone(),
            toolchain: self.toolchain.clone(),
            features: plan.enabled_features.clone(),
            settings_digest: Some(signed.settings.digest()),
            artifact: packed.id,
            builder: self.identity.public_key(),
            build_started: unix_seconds(signed.started),
            build_finished: unix_seconds(jiff::Timestamp::now()),
        };
        let attestation = SignedAttestation::sign(statement, &self.identity)?;
        Ok(Ok(Built {
            artifact: packed.id,
            binaries: plan.binaries.clone(),
            archive,
            attestation,
        }))
    }

    /// Copies the planned binaries out of the build's target dir into `work/binaries/` for
    /// packing. Everything in the target dir is the build's writing, so nothing there is opened
    /// by name: each binary is reached without following links and must be a regular file
    /// under the file size limit (`buildsrs_sandbox::output`). `Ok(Err(reason))` when what is
    /// there is not that: the build's doing, so a failure of the crate.
    fn take_binaries(
        &self,
        target_dir: &Path,
        triple: &str,
        plan: &BuildPlan,
        work: &Path,
    ) -> Result<Result<Vec<ArtifactFile>, String>> {
        let staged = work.join("binaries");
        std::fs::create_dir(&staged).with_context(|| format!("creating {}", staged.display()))?;
        let max = self.config.limits.file_size_mib << 20;
        let mut files = Vec::with_capacity(plan.binaries.len());
        for bin in &plan.binaries {
            let built = Path::new(triple).join("release").join(bin);
            let mut file = match output::open_regular_beneath(target_dir, &built, max) {
                Ok(file) => file,
                Err(error) if error.is_the_builds_doing() => {
                    return Ok(Err(format!("cargo succeeded but {error}")));
                }
                Err(error) => return Err(error.into()),
            };
            let copy = staged.join(bin);
            let mut out = std::fs::File::create_new(&copy)
                .with_context(|| format!("creating {}", copy.display()))?;
            std::io::copy(&mut file, &mut out)
                .with_context(|| format!("copying {}", built.display()))?;
            files.push(ArtifactFile {
                name: bin.clone(),
                source: copy,
            });
        }
        Ok(Ok(files))
    }

    /// Why a planned crate is not built at all, decided before anything is fetched: it does
    /// not want this target, has no binaries, or needs a newer Rust than this node has.
    fn cannot_build(&self, plan: &BuildPlan, target: &str) -> Option<BuildOutcome> {
        if !plan.wants_target(target) {
            let reason = format!("the crate's metadata does not list target {target}");
            return Some(BuildOutcome::no_binaries(reason));
        }
        if plan.binaries.is_empty() {
            let reason = "the crate has no binaries to build".to_owned();
            return Some(BuildOutcome::no_binaries(reason));
        }
        let required = plan.rust_version?;
        let available = RustRelease::parse_release(&self.toolchain.release)?;
        (available < required)
            .then(|| outcome::needs_newer_toolchain(&required.to_string(), &self.toolchain.release))
    }

    /// How a phase 2 that did not succeed ended, naming the limit it hit when one did.
    /// `work` is the job's directory, whose filesystem is checked for free space.
    fn compile_failure(
        &self,
        run: &RunOutcome,
        spec: &SandboxSpec,
        work: &Path,
    ) -> Option<BuildOutcome> {
        let limits = &spec.limits;
        match run.kind() {
            RunKind::Succeeded => None,
            RunKind::TimedOut => Some(outcome::timed_out(limits.wall_clock.as_secs())),
            RunKind::OutOfMemory => Some(outcome::out_of_memory(
                limits.memory_bytes.map(|bytes| bytes >> 20),
            )),
            RunKind::OutputTooLarge => {
                Some(outcome::output_too_large(limits.output_cap_bytes >> 20))
            }
            RunKind::DiskLimit => Some(outcome::disk_limit(limits.disk_bytes.unwrap_or(0) >> 20)),
            RunKind::Failed => {
                let text = run.log.to_string_lossy();
                let mib =
                    |bytes: Option<u64>| bytes.map_or("no".to_owned(), |b| (b >> 20).to_string());
                if let Some(free) = disk_nearly_full(work) {
                    // Nothing bounds a build's total disk use yet, so a full disk is this
                    // machine's state, not a verdict on the crate. Decided from the
                    // filesystem, never from the log, which the crate writes.
                    return Some(BuildOutcome::node_error(format!(
                        "the build failed with the disk nearly full ({} MiB free)",
                        free >> 20
                    )));
                }
                let limit = if run.pids_limit_hit {
                    Some(format!(
                        "hit the process limit ({} processes and threads)",
                        limits.max_pids.map_or("no".to_owned(), |n| n.to_string())
                    ))
                } else if FILE_SIZE_SIGNS.iter().any(|sign| text.contains(sign)) {
                    Some(format!(
                        "hit the file size limit ({} MiB per file)",
                        mib(limits.file_size_bytes)
                    ))
                } else {
                    None
                };
                let reason = match limit {
                    Some(limit) => format!("cargo build {limit} ({})", run.status),
                    None => format!(
                        "cargo build failed ({}): {}",
                        run.status,
                        first_error_line(&text)
                    ),
                };
                Some(failed(reason))
            }
        }
    }

    /// Phase 1, one sandboxed `cargo fetch` with the network and no crate code: with the
    /// crate's own lock `--locked` (the lock must already fit the manifest), without one it
    /// resolves and writes `Cargo.lock` first. Cargo reaches the network only through the
    /// node's registry proxy, which allows the job's registry alone. `Some` when that ended
    /// the job.
    async fn fetch_dependencies(
        &self,
        cargo: &CargoLayout,
        shipped_lock: bool,
        request: &BuildRequest,
        log: &mut CappedLog,
    ) -> Result<Option<BuildOutcome>> {
        let mut args = vec!["fetch"];
        if shipped_lock {
            args.push("--locked");
        }
        args.extend([
            "--target",
            &request.target,
            "--manifest-path",
            layout::MANIFEST,
        ]);
        push_line(
            log,
            &format!(
                "== phase 1: cargo {} (network, no crate code runs)",
                args.join(" ")
            ),
        );
        let hosts = self
            .proxy
            .registry_hosts(&request.registry, &self.http)
            .await
            .context("finding the registry's hosts for phase 1")?;
        let label = format!("{} {}", request.crate_name, request.version);
        let grant = self.proxy.grant(&label, hosts)?;
        push_line(
            log,
            &format!(
                "   network: only {}, through the node's registry proxy",
                grant.allowed_hosts()
            ),
        );
        let spec = self
            .limited(cargo.fetch(args))
            .env("CARGO_HTTP_PROXY", grant.url());
        let run = self.sandbox.run(&spec).await?;
        if let Some(outcome) = phase_one_ended(&run, &grant, log) {
            return Ok(Some(outcome));
        }
        // Cargo trusts any `.crate` already in its cache; one cut short by an earlier job that
        // was killed mid-download would fail every later build that needs it. Remove damaged
        // downloads and fetch them again, once.
        let lock = cargo.source.join("Cargo.lock");
        let check = check_dependency_cache(&lock, &cargo.cargo_home);
        if check.repaired == 0 {
            return Ok(None);
        }
        note_repairs(log, &check);
        let run = self.sandbox.run(&spec).await?;
        if let Some(outcome) = phase_one_ended(&run, &grant, log) {
            return Ok(Some(outcome));
        }
        let check = check_dependency_cache(&lock, &cargo.cargo_home);
        if check.repaired > 0 {
            return Ok(Some(BuildOutcome::node_error(format!(
                "the dependency cache {} keeps damaged downloads",
                cargo.cargo_home.display()
            ))));
        }
        Ok(None)
    }

    /// Phase 2: `cargo build --release --offline --locked` of the planned binaries, with the
    /// configured limits and extra flags.
    fn build_spec(&self, cargo: &CargoLayout, plan: &BuildPlan, target: &str) -> SandboxSpec {
        let mut args: Vec<String> = ["build", "--release", "--offline", "--locked", "--target"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(target.to_owned());
        if plan.no_default_features {
            args.push("--no-default-features".into());
        }
        if !plan.features.is_empty() {
            args.push("--features".into());
            args.push(plan.features.join(","));
        }
        for bin in &plan.binaries {
            args.push("--bin".into());
            args.push(bin.clone());
        }
        args.extend(["--manifest-path", layout::MANIFEST].map(str::to_owned));
        let mut spec = self.limited(cargo.build(args, SOURCE_DATE_EPOCH));
        if !self.config.extra_rustflags.is_empty() {
            let flags = spec.env.entry("RUSTFLAGS".to_owned()).or_default();
            for flag in &self.config.extra_rustflags {
                flags.push(' ');
                flags.push_str(flag);
            }
        }
        spec
    }

    /// Reads `cargo metadata --no-deps` in the sandbox (see [`crate::metadata`]: no network,
    /// the canonical layout, `limits.metadata_secs`) and makes the plan. The command parses
    /// the manifest and runs no crate code; what it reads and names are sandbox paths.
    async fn plan(
        &self,
        source: &Path,
        work: &Path,
        log: &mut CappedLog,
    ) -> Result<Result<BuildPlan, BuildOutcome>> {
        let run = MetadataRun {
            source: source.to_owned(),
            dir: work.join("metadata"),
            toolchain: self.toolchain_dir.clone(),
            clock_shim: self.clock_shim.clone(),
        };
        let mut spec = self.limited(run.spec(SOURCE_DATE_EPOCH)?);
        let mut limits = spec.limits.clone();
        limits.wall_clock = Duration::from_secs(self.config.limits.metadata_secs);
        spec = spec.limits(limits);
        push_line(
            log,
            "== plan: cargo metadata --no-deps (offline, sandboxed)",
        );
        let json = match read_metadata(&self.sandbox, &run, spec, log).await? {
            Ok(json) => json,
            Err(outcome) => return Ok(Err(outcome)),
        };
        match plan_from_metadata(&json) {
            Ok(plan) => {
                for warning in &plan.warnings {
                    push_line(log, warning);
                }
                push_line(
                    log,
                    &format!(
                        "== plan: binaries [{}], features [{}]{}",
                        plan.binaries.join(", "),
                        plan.features.join(", "),
                        if plan.no_default_features {
                            ", no default features"
                        } else {
                            ""
                        }
                    ),
                );
                Ok(Ok(plan))
            }
            Err(error) => {
                push_line(log, &error.to_string());
                Ok(Err(failed(error.to_string())))
            }
        }
    }

    /// The dependency cache for a registry: crates.io's (cargo's own default registry, no
    /// configuration), or one per other registry with a cargo config that replaces crates.io
    /// by it. Created when missing.
    fn cargo_home(&self, registry: &str) -> Result<PathBuf> {
        let crates_io = buildsrs_index::crates_io::is_crates_io(registry);
        let home = if crates_io {
            self.dir.cargo_home().join("crates-io")
        } else {
            let id = &blake3::hash(registry.as_bytes()).to_hex()[..16];
            self.dir.cargo_home().join(format!("registry-{id}"))
        };
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        if !crates_io {
            let config = format!(
                "# Written by buildsrs-node: dependencies come from {registry}.\n\
                 [source.crates-io]\nreplace-with = \"buildsrs-registry\"\n\n\
                 [source.buildsrs-registry]\nregistry = {}\n",
                toml_string(registry)
            );
            let path = home.join("config.toml");
            // Concurrent jobs share the file: write it only when it is not already right.
            if std::fs::read_to_string(&path).ok().as_deref() != Some(config.as_str()) {
                let mut staged = tempfile::NamedTempFile::new_in(&home)?;
                std::io::Write::write_all(&mut staged, config.as_bytes())?;
                staged.persist(&path).map_err(|e| e.error)?;
            }
        }
        Ok(home)
    }

    /// Applies the configured limits to a spec.
    fn limited(&self, spec: SandboxSpec) -> SandboxSpec {
        let limits = &self.config.limits;
        let mut applied = spec.limits.clone();
        applied.wall_clock = Duration::from_secs(limits.wall_clock_secs);
        let mib = |value: u64| (value > 0).then_some(value << 20);
        applied.memory_bytes = mib(limits.memory_mib);
        applied.max_pids = (limits.processes > 0).then_some(limits.processes);
        applied.disk_bytes = mib(limits.disk_mib);
        applied.tmpfs_bytes = mib(limits.tmpfs_mib);
        applied.file_size_bytes = Some(limits.file_size_mib << 20);
        applied.log_keep_bytes = usize::try_from(limits.log_kib * 1024).unwrap_or(usize::MAX);
        spec.limits(applied)
    }
}

/// How a phase 1 through the registry proxy ended: as [`phase_one_failure`] says, except that
/// the proxy knows better about the network. A host it refused is the crate's doing (the
/// sources check let nothing through that names one, so a dependency's index entry did); an
/// allowed host that did not answer is the node's trouble.
fn phase_one_ended(
    run: &RunOutcome,
    grant: &ProxyGrant,
    log: &mut CappedLog,
) -> Option<BuildOutcome> {
    let outcome = phase_one_failure(run, log);
    let traffic = grant.traffic();
    let mut note = format!("   registry proxy: {} allowed", traffic.allowed);
    if !traffic.refused.is_empty() {
        note.push_str(&format!(", refused {}", traffic.refused.join(", ")));
    }
    if !traffic.unreachable.is_empty() {
        note.push_str(&format!(
            ", no answer from {}",
            traffic.unreachable.join(", ")
        ));
    }
    push_line(log, &note);
    let outcome = outcome?;
    if !traffic.refused.is_empty() {
        return Some(failed(format!(
            "phase 1 tried to reach {}, not a host of the job's registry (refused by the node's \
             registry proxy)",
            traffic.refused.join(", ")
        )));
    }
    if !traffic.unreachable.is_empty() {
        return Some(BuildOutcome::node_error(format!(
            "fetching dependencies failed (network): the registry at {} did not answer",
            traffic.unreachable.join(", ")
        )));
    }
    Some(outcome)
}

/// Phase 1 failed? A network problem on the node's side is the node's fault; anything else
/// (dependencies that do not resolve, a lock file that does not match) is the crate's.
fn phase_one_failure(run: &RunOutcome, log: &mut CappedLog) -> Option<BuildOutcome> {
    append_run(log, run);
    match run.kind() {
        RunKind::Succeeded => None,
        RunKind::TimedOut => Some(BuildOutcome::node_error("fetching dependencies timed out")),
        RunKind::DiskLimit => Some(failed(
            "fetching dependencies wrote more than the disk limit".into(),
        )),
        RunKind::OutOfMemory | RunKind::OutputTooLarge | RunKind::Failed => {
            let text = run.log.to_string_lossy();
            let network = [
                "Couldn't resolve host",
                "failed to connect",
                "Connection refused",
                "spurious network error",
                "failed to get successful HTTP response",
                "Network is unreachable",
            ];
            if network.iter().any(|marker| text.contains(marker)) {
                Some(BuildOutcome::node_error(format!(
                    "fetching dependencies failed (network): {}",
                    last_error_line(&text)
                )))
            } else {
                Some(failed(format!(
                    "dependencies could not be locked or fetched: {}",
                    last_error_line(&text)
                )))
            }
        }
    }
}

/// What the dependency cache holds for a `Cargo.lock`.
#[derive(Debug, Default)]
struct CacheCheck {
    /// Every registry package the lock names is downloaded, with the lock's checksum, so
    /// phase 1 has nothing to do (phase 2 unpacks them into the build's own directory).
    complete: bool,
    /// Damaged downloads (not a whole gzip stream: cut short when a job was killed while cargo
    /// wrote them) that were removed so that cargo fetches them again.
    repaired: usize,
}

/// Checks the downloads a `Cargo.lock` needs. Conservative: an unreadable lock, a lock without
/// per-package checksums (format 1), or a git or path source other than the crate itself is
/// never complete. A download that does not match the lock's checksum but is whole is kept
/// (the lock may be what is wrong: phase 1 lets cargo say so against the index); one that is
/// not whole is removed.
fn check_dependency_cache(lock: &Path, cargo_home: &Path) -> CacheCheck {
    let mut check = CacheCheck::default();
    let Ok(text) = std::fs::read_to_string(lock) else {
        return check;
    };
    let Ok(lock) = text.parse::<toml::Table>() else {
        return check;
    };
    let caches: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/cache"))
        .map(|dirs| dirs.filter_map(|d| d.ok().map(|d| d.path())).collect())
        .unwrap_or_default();
    let packages = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut complete = true;
    for package in packages {
        let field = |key| package.get(key).and_then(toml::Value::as_str);
        match (field("name"), field("version"), field("source")) {
            // The crate itself (a lock of a single package has no other source).
            (Some(_), Some(_), None) => {}
            (Some(name), Some(version), Some(source))
                if source.starts_with("registry+") || source.starts_with("sparse+") =>
            {
                let file = format!("{name}-{version}.crate");
                let mut found = false;
                for path in caches.iter().map(|cache| cache.join(&file)) {
                    match cached_download(&path, field("checksum")) {
                        Download::Matches => found = true,
                        Download::Missing | Download::Whole => {}
                        Download::Damaged => {
                            if std::fs::remove_file(&path).is_ok() {
                                check.repaired += 1;
                            }
                        }
                    }
                }
                complete &= found;
            }
            _ => complete = false,
        }
    }
    check.complete = complete;
    check
}

/// A `.crate` in the dependency cache, as checked against a lock.
enum Download {
    /// Not there, or not a regular file.
    Missing,
    /// Its SHA-256 is the lock's checksum.
    Matches,
    /// A whole gzip stream, but not what the lock says (or the lock says nothing).
    Whole,
    /// Not a whole gzip stream.
    Damaged,
}

fn cached_download(path: &Path, checksum: Option<&str>) -> Download {
    let is_file = std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file());
    let Some(bytes) = is_file.then(|| std::fs::read(path).ok()).flatten() else {
        return Download::Missing;
    };
    let digest = Sha256Digest::from_bytes(Sha256::digest(&bytes).into());
    if checksum.is_some_and(|expected| expected.eq_ignore_ascii_case(&digest.to_hex())) {
        return Download::Matches;
    }
    let mut decoder = flate2::read::GzDecoder::new(bytes.as_slice());
    match std::io::copy(&mut decoder, &mut std::io::sink()) {
        Ok(_) => Download::Whole,
        Err(_) => Download::Damaged,
    }
}

/// Logs what [`check_dependency_cache`] repaired.
fn note_repairs(log: &mut CappedLog, check: &CacheCheck) {
    if check.repaired > 0 {
        push_line(
            log,
            &format!(
                "== removed {} damaged download(s) from the dependency cache; fetching them again",
                check.repaired
            ),
        );
    }
}

/// How a process that hit `RLIMIT_FSIZE` shows in cargo's log: killed by SIGXFSZ (signal
/// 25, which cargo prints as `(signal: 25)` or by name), or a write failing with `EFBIG`.
const FILE_SIZE_SIGNS: &[&str] = &["(signal: 25", "SIGXFSZ", "File too large"];

/// Whether an offline build failed for want of something not downloaded: cargo says so while
/// resolving and downloading, before it compiles anything, so a run that compiled something
/// (and could have printed those words itself) does not qualify.
fn missed_offline(run: &RunOutcome) -> bool {
    let text = run.log.to_string_lossy();
    let compiled = text
        .lines()
        .any(|l| l.trim_start().starts_with("Compiling "));
    !compiled && (text.contains("--offline") || text.contains("offline mode"))
}

/// Free bytes on the filesystem of `path` when they are below 256 MiB (`None`: plenty, or
/// the filesystem could not be asked).
fn disk_nearly_full(path: &Path) -> Option<u64> {
    const NEARLY_FULL: u64 = 256 << 20;
    let stats = rustix::fs::statvfs(path).ok()?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    (free < NEARLY_FULL).then_some(free)
}

fn append_run(log: &mut CappedLog, run: &RunOutcome) {
    log.push(run.log.to_bytes().as_slice());
    push_line(
        log,
        &format!("   ({}, {:.1} s)", run.status, run.wall_time.as_secs_f64()),
    );
}

/// Wall time per pipeline step, for the log's `== steps:` line.
struct Steps {
    started: Instant,
    current: Option<(&'static str, Instant)>,
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn start() -> Self {
        Self {
            started: Instant::now(),
            current: None,
            done: Vec::new(),
        }
    }

    /// Ends the current step, if any, and begins `name`.
    fn begin(&mut self, name: &'static str) {
        self.end();
        self.current = Some((name, Instant::now()));
    }

    /// Ends the current step (a job that stopped early ends with the step it stopped in).
    fn end(&mut self) {
        if let Some((name, since)) = self.current.take() {
            self.done.push((name, since.elapsed()));
        }
    }

    /// Time since the start.
    fn total(&self) -> Duration {
        self.started.elapsed()
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, took) in &self.done {
            write!(f, "{name} {} ms, ", took.as_millis())?;
        }
        write!(f, "total {} ms", self.total().as_millis())
    }
}

/// Unpacks the downloaded `.crate` into `into` (a fresh directory) and returns the crate's
/// root (`into/NAME-VERSION`). An archive the unpacker refuses is the crate's failure.
fn unpack_source(
    crate_file: &Path,
    into: &Path,
    top: &str,
    log: &mut CappedLog,
) -> Result<Result<PathBuf, BuildOutcome>> {
    let archive = std::fs::File::open(crate_file)
        .with_context(|| format!("opening {}", crate_file.display()))?;
    match unpack_tar_gz(archive, into, top, UnpackLimits::CRATE_SOURCE) {
        Ok(unpacked) => {
            push_line(
                log,
                &format!(
                    "== unpacked {} files ({} bytes)",
                    unpacked.files, unpacked.bytes
                ),
            );
            Ok(Ok(into.join(top)))
        }
        Err(error @ (UnpackError::Refused { .. } | UnpackError::TooLarge(_))) => {
            let reason = format!("refused source archive: {error}");
            push_line(log, &reason);
            Ok(Err(failed(reason)))
        }
        Err(error) => Err(error).context("unpacking the crate"),
    }
}

/// What phase 2 needs to know of phase 1, to run it again when the cache fell short.
struct PhaseOne<'a> {
    crate_file: &'a Path,
    unpack_dir: &'a Path,
    top: &'a str,
    shipped_lock: bool,
    cached: bool,
}

/// What the attestation states besides the artifact.
struct Signed<'a> {
    plan: &'a BuildPlan,
    settings: &'a BuildSettings,
    lock_sha256: Sha256Digest,
    started: jiff::Timestamp,
}

/// Refuses, before phase 1, a crate whose manifest or shipped lock names any source but the
/// job's registry.
fn check_sources(
    source: &Path,
    request: &BuildRequest,
    log: &mut CappedLog,
) -> Result<Result<(), BuildOutcome>> {
    match check_unpacked(source, &JobRegistry::new(&request.registry))? {
        Ok(()) => {
            push_line(log, "== sources: only the job's registry");
            Ok(Ok(()))
        }
        Err(refused) => {
            let reason = format!("refused before phase 1: {refused}");
            push_line(log, &reason);
            Ok(Err(failed(reason)))
        }
    }
}

fn failed(reason: String) -> BuildOutcome {
    BuildOutcome::build_failed(reason)
}

pub(crate) fn push_line(log: &mut CappedLog, text: &str) {
    log.push(text.as_bytes());
    if !text.ends_with('\n') {
        log.push(b"\n");
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// The first line cargo or rustc marked as an error (`error:`, `error[E0308]:`), which is
/// the one that says why, or the first line at all.
pub(crate) fn first_error_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| first_line(text))
        .chars()
        .take(300)
        .collect()
}

fn last_error_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| first_line(text))
        .trim()
        .to_owned()
}

fn sha256_file(path: &Path) -> Result<Sha256Digest> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256Digest::from_bytes(Sha256::digest(&bytes).into()))
}

fn unix_seconds(time: jiff::Timestamp) -> u64 {
    u64::try_from(time.as_second()).unwrap_or(0)
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The toolchain builds use: `rustc -vV` and `rustc --print sysroot` of the configured
/// toolchain (a rustup toolchain name), or of the `rustc` on PATH.
async fn local_toolchain(name: Option<&str>) -> Result<(Toolchain, PathBuf)> {
    let rustc = |args: &[&str]| {
        let mut command = match name {
            Some(name) => {
                let mut c = tokio::process::Command::new("rustup");
                c.args(["run", name, "rustc"]);
                c
            }
            None => tokio::process::Command::new("rustc"),
        };
        command.args(args);
        command
    };
    let version = rustc(&["-vV"])
        .output()
        .await
        .context("running rustc -vV")?;
    anyhow::ensure!(
        version.status.success(),
        "rustc -vV failed: {}",
        String::from_utf8_lossy(&version.stderr)
    );
    let toolchain =
        Toolchain::from_rustc_verbose_version(&String::from_utf8_lossy(&version.stdout))?;
    let sysroot = rustc(&["--print", "sysroot"])
        .output()
        .await
        .context("running rustc --print sysroot")?;
    anyhow::ensure!(sysroot.status.success(), "rustc --print sysroot failed");
    let dir = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    anyhow::ensure!(
        dir.join("bin/cargo").is_file(),
        "{} has no bin/cargo",
        dir.display()
    );
    Ok((toolchain, dir))
}
