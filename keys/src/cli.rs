//! The `buildsrs-keys` command line. The `verify` subcommand's arguments and behaviour are
//! public so that `buildsrs verify` runs exactly this code.
//!
//! Exit codes: 0 success (for `verify`: verified), 1 not verified, 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::hash::{ArtifactId, Blake3Hash, Sha256Digest};
use crate::identity::Identity;
use crate::keyring::Keyring;
use crate::lockfile::locked_source;
use crate::names::{CrateName, CrateVersion, RegistryUrl, TargetTriple};
use crate::statement::{SCHEMA_VERSION, Statement, Toolchain, canonical_features};
use crate::verify::{Expectations, Policy, Report, Source, verify_bundle};
use crate::{PublicKey, SignedAttestation};

/// Exit code when verification ran and the artifact is not verified.
pub const EXIT_NOT_VERIFIED: u8 = 1;
/// Exit code for usage and I/O errors.
pub const EXIT_ERROR: u8 = 2;

/// Identities and offline verification of buildsrs artifacts.
#[derive(Debug, Parser)]
#[command(name = "buildsrs-keys", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a new identity; prints its keyring line.
    Generate(GenerateArgs),
    /// Show the public key, fingerprint, libp2p PeerId and iroh endpoint id of a key file.
    Show(ShowArgs),
    /// Hash an artifact, sign a statement about it and append it to a bundle.
    Attest(Box<AttestArgs>),
    /// Check that enough trusted builders signed exactly this file.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Where to write the secret key (created with mode 0600; never overwritten).
    #[arg(long, value_name = "KEYFILE")]
    out: PathBuf,
    /// The name for the keyring line [default: the key file's name without extension].
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The secret key file.
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AttestArgs {
    /// The builder's secret key file.
    #[arg(long, value_name = "KEYFILE")]
    key: PathBuf,
    /// The artifact to attest.
    #[arg(long, value_name = "FILE")]
    artifact: PathBuf,
    /// The crate name.
    #[arg(long = "crate", value_name = "NAME")]
    crate_name: CrateName,
    /// The crate version.
    #[arg(long, value_name = "VER")]
    version: CrateVersion,
    /// The target triple the artifact is for.
    #[arg(long, value_name = "TRIPLE")]
    target: TargetTriple,
    /// SHA-256 of the `.crate` file (the index `cksum`).
    #[arg(long, value_name = "HEX")]
    source_sha256: Option<Sha256Digest>,
    /// The registry whose index lists that checksum, as its sparse index URL [default:
    /// crates.io, when --source-sha256 is given].
    #[arg(long, value_name = "URL", value_parser = parse_registry, requires = "source_sha256")]
    registry: Option<RegistryUrl>,
    /// SHA-256 of the Cargo.lock used.
    #[arg(long, value_name = "HEX")]
    cargo_lock_sha256: Option<Sha256Digest>,
    /// The compiler as RELEASE/COMMIT_HASH/HOST [default: read from `rustc -vV`].
    #[arg(long, value_name = "STR")]
    toolchain: Option<Toolchain>,
    /// An enabled feature (repeatable).
    #[arg(long = "feature", value_name = "NAME")]
    features: Vec<String>,
    /// BLAKE3 digest of the build settings.
    #[arg(long, value_name = "HEX")]
    settings_digest: Option<Blake3Hash>,
    /// When the build started (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    build_started: Option<jiff::Timestamp>,
    /// When the build finished (RFC 3339) [default: now].
    #[arg(long, value_name = "TIME")]
    build_finished: Option<jiff::Timestamp>,
    /// The bundle to append to (created when missing).
    #[arg(long, value_name = "BUNDLE")]
    bundle: PathBuf,
}

/// Arguments of `verify`, shared by `buildsrs-keys verify` and `buildsrs verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The artifact file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The attestation bundle [default: FILE.buildsrs.json].
    #[arg(long, value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// The keyring of trusted builder keys.
    #[arg(long, value_name = "KEYRING")]
    pub keyring: PathBuf,
    /// How many distinct trusted builders must have signed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: u32,
    /// The crate the artifact must be.
    #[arg(long = "crate", value_name = "NAME")]
    pub crate_name: Option<CrateName>,
    /// The version the artifact must be.
    #[arg(long, value_name = "VER")]
    pub version: Option<CrateVersion>,
    /// The target the artifact must be for.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<TargetTriple>,
    /// The `.crate` file's SHA-256 as you read it in the registry's index: attestations of
    /// another source do not count.
    #[arg(long, value_name = "HEX", conflicts_with = "cargo_lock")]
    pub source_sha256: Option<Sha256Digest>,
    /// The registry of --source-sha256 (of --check-index in `buildsrs verify`), as its
    /// sparse index URL [default: crates.io].
    #[arg(long, value_name = "URL", value_parser = parse_registry)]
    pub registry: Option<RegistryUrl>,
    /// Read the source (registry and checksum) of --crate at --version from this
    /// `Cargo.lock`: attestations of another source do not count.
    #[arg(long, value_name = "FILE", requires_all = ["crate_name", "version"])]
    pub cargo_lock: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Generate(args) => generate(&args).map(|()| ExitCode::SUCCESS),
        Command::Show(args) => show(&args).map(|()| ExitCode::SUCCESS),
        Command::Attest(args) => attest(&args).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => return run_verify(&args),
    };
    result.unwrap_or_else(report_error)
}

/// Runs `verify`: exit 0 when verified, 1 when not, 2 on usage or I/O errors.
pub fn run_verify(args: &VerifyArgs) -> ExitCode {
    print_verdict(args, verify(args))
}

/// Prints a verification's report (as JSON with `--json`) or its error, and returns the
/// exit code: 0 when verified, 1 when not, 2 on usage or I/O errors.
pub fn print_verdict(args: &VerifyArgs, verdict: anyhow::Result<Report>) -> ExitCode {
    match verdict {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report always serializes")
                );
            } else {
                print!("{report}");
            }
            if report.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_VERIFIED)
            }
        }
        Err(error) => report_error(error),
    }
}

/// Reads `--registry` as people write it (see [`RegistryUrl::from_index_url`]).
pub fn parse_registry(text: &str) -> Result<RegistryUrl, crate::InvalidName> {
    RegistryUrl::from_index_url(text)
}

impl VerifyArgs {
    /// The source the user expects, from `--source-sha256` (and `--registry`) or
    /// `--cargo-lock`; `None` when neither was given.
    pub fn expected_source(&self) -> anyhow::Result<Option<Source>> {
        if self.registry.is_some() && self.source_sha256.is_none() {
            bail!("--registry names the registry of --source-sha256: give both");
        }
        if let Some(sha256) = self.source_sha256 {
            let registry = self.registry.clone().unwrap_or_else(RegistryUrl::crates_io);
            return Ok(Some(Source { registry, sha256 }));
        }
        let Some(lock) = &self.cargo_lock else {
            return Ok(None);
        };
        let (Some(name), Some(version)) = (&self.crate_name, &self.version) else {
            bail!("--cargo-lock needs --crate and --version");
        };
        let text =
            std::fs::read_to_string(lock).with_context(|| format!("reading {}", lock.display()))?;
        let source = locked_source(&text, name, version)
            .with_context(|| format!("lock file {}", lock.display()))?;
        Ok(Some(source))
    }
}

/// Loads everything `verify` needs and runs the check. Errors are usage or I/O errors.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<Report> {
    let source = args.expected_source()?;
    verify_against(args, source)
}

/// [`verify`] with the expected source given by the caller (`buildsrs verify --check-index`
/// reads it from the index itself).
pub fn verify_against(args: &VerifyArgs, source: Option<Source>) -> anyhow::Result<Report> {
    let bundle_path = args
        .bundle
        .clone()
        .unwrap_or_else(|| Bundle::path_for(&args.file));
    let keyring = Keyring::load(&args.keyring)?;
    let bundle =
        Bundle::load(&bundle_path).with_context(|| format!("bundle {}", bundle_path.display()))?;
    let artifact = ArtifactId::of_file(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let policy = Policy {
        threshold: args.threshold as usize,
        expect: Expectations {
            crate_name: args.crate_name.clone(),
            version: args.version.clone(),
            target: args.target.clone(),
            source,
        },
    };
    Ok(verify_bundle(artifact, &bundle, &keyring, &policy))
}

fn report_error(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(EXIT_ERROR)
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&args.out),
    };
    // Check the name before writing anything, so a bad name leaves no key file behind.
    let identity = Identity::generate()?;
    let mut keyring = Keyring::default();
    keyring
        .push(identity.public_key(), &name)
        .context("choose another --name")?;
    identity.save(&args.out)?;
    eprintln!(
        "wrote secret key {} (fingerprint {}); add this line to a keyring:",
        args.out.display(),
        identity.fingerprint()
    );
    println!("{}", keyring.entries()[0]);
    Ok(())
}

fn default_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let usable = (1..=64).contains(&stem.len())
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    if usable {
        stem.to_owned()
    } else {
        "builder".to_owned()
    }
}

#[derive(Serialize)]
struct ShowOutput {
    public_key: PublicKey,
    fingerprint: String,
    peer_id: String,
    endpoint_id: String,
}

fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.key)?;
    let output = ShowOutput {
        public_key: identity.public_key(),
        fingerprint: identity.fingerprint().to_string(),
        peer_id: identity.peer_id().to_string(),
        endpoint_id: identity.endpoint_id().to_string(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        println!("public key:  {}", output.public_key);
        println!("fingerprint: {}", output.fingerprint);
        println!("peer id:     {}", output.peer_id);
        println!("endpoint id: {}", output.endpoint_id);
    }
    Ok(())
}

fn attest(args: &AttestArgs) -> anyhow::Result<()> {
    let identity = Identity::load(&args.key)?;
    let artifact = ArtifactId::of_file(&args.artifact)
        .with_context(|| format!("reading {}", args.artifact.display()))?;
    let toolchain = match &args.toolchain {
        Some(toolchain) => toolchain.clone(),
        None => detect_toolchain()?,
    };
    let now = jiff::Timestamp::now();
    let started = args.build_started.unwrap_or(now);
    let finished = args.build_finished.unwrap_or(now);
    let seconds =
        |t: jiff::Timestamp| u64::try_from(t.as_second()).context("build times must be after 1970");
    let statement = Statement {
        schema: SCHEMA_VERSION,
        crate_name: args.crate_name.clone(),
        version: args.version.clone(),
        registry: args
            .source_sha256
            .map(|_| args.registry.clone().unwrap_or_else(RegistryUrl::crates_io)),
        source_sha256: args.source_sha256,
        cargo_lock_sha256: args.cargo_lock_sha256,
        target: args.target.clone(),
        toolchain,
        features: canonical_features(args.features.iter().cloned()),
        settings_digest: args.settings_digest,
        artifact,
        builder: identity.public_key(),
        build_started: seconds(started)?,
        build_finished: seconds(finished)?,
    };
    let signed = SignedAttestation::sign(statement, &identity)?;
    let mut bundle = if args.bundle.exists() {
        Bundle::load(&args.bundle)?
    } else {
        Bundle::new(artifact)
    };
    bundle
        .push(&signed)
        .with_context(|| format!("adding to {}", args.bundle.display()))?;
    bundle.save(&args.bundle)?;
    println!(
        "attested {} by {} ({}); {} now holds {} attestation(s)",
        artifact,
        identity.public_key(),
        identity.fingerprint(),
        args.bundle.display(),
        bundle.attestations.len()
    );
    Ok(())
}

/// Reads the toolchain from `rustc -vV`.
pub fn detect_toolchain() -> anyhow::Result<Toolchain> {
    let output = Process::new("rustc")
        .arg("-vV")
        .output()
        .context("running `rustc -vV` (or pass --toolchain RELEASE/COMMIT_HASH/HOST)")?;
    if !output.status.success() {
        bail!(
            "`rustc -vV` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Toolchain::from_rustc_verbose_version(
        &String::from_utf8_lossy(&output.stdout),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_names_come_from_the_file_stem() {
        assert_eq!(default_name(Path::new("/keys/alice.key")), "alice");
        assert_eq!(default_name(Path::new("/keys/with space.key")), "builder");
    }
}
