//! `buildsrs fetch NAME[@VERSION]`: resolve the version through the coordinator's API,
//! download the archive and its bundle, verify them against the user's keyring with the
//! user's threshold, and only then unpack and install the binaries.
//!
//! The attestations must name the source the user's own read of the registry's index lists
//! (`--registry`, crates.io by default; see [`crate::source`]): builders that signed another
//! tarball under the crate's name do not count, whatever the coordinator says.
//!
//! Which keyring: `--keyring FILE`, else the default file (`~/.config/buildsrs/keyring`),
//! else the coordinator's `/keyring` — but only with `--trust-coordinator-keyring`, because
//! then the server vouches for its own artifacts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use buildsrs_api::answers::{TargetAnswer, TaskState};
use buildsrs_api::params::VersionRef;
use buildsrs_keys::{
    ArtifactId, Bundle, CrateName, Expectations, Keyring, Policy, RegistryUrl, TargetTriple,
    verify_bundle,
};
use clap::Args;

use crate::api::Coordinator;
use crate::install::{Expected, install_archive};
use crate::source::indexed_source;

/// The largest archive `fetch` downloads, whatever the coordinator says its size is.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;

/// The coordinator used when none is given.
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:8080";

/// `buildsrs fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The crate, optionally with a version: `ripgrep` or `ripgrep@14.1.0` [default: the
    /// newest version that is not yanked].
    #[arg(value_name = "NAME[@VERSION]")]
    pub spec: String,
    /// The target to install for [default: this machine's].
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// The coordinator (or a mirror with its API) to ask.
    #[arg(
        long,
        env = "BUILDSRS_COORDINATOR",
        default_value = DEFAULT_COORDINATOR,
        value_name = "URL"
    )]
    pub coordinator: String,
    /// The keyring of builders you trust [default: ~/.config/buildsrs/keyring].
    #[arg(long, env = "BUILDSRS_KEYRING", value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Use the coordinator's own keyring when you have none: trusting the server.
    #[arg(long)]
    pub trust_coordinator_keyring: bool,
    /// How many distinct trusted builders must have signed these bytes.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: u32,
    /// Where to put the binaries [default: ~/.cargo/bin].
    #[arg(long, value_name = "DIR")]
    pub install_dir: Option<PathBuf>,
    /// The registry whose index lists the crate, as its sparse index URL: the attestations
    /// must name the source it lists.
    #[arg(
        long,
        env = "BUILDSRS_REGISTRY",
        default_value = buildsrs_keys::names::CRATES_IO_INDEX,
        value_name = "URL",
        value_parser = buildsrs_keys::cli::parse_registry
    )]
    pub registry: RegistryUrl,
    /// Download the archive and its bundle by hash from this mirror (`buildsrs mirror
    /// serve`) instead of the coordinator, which is still asked which artifact it is.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
}

/// How a fetch ended (errors aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified and installed.
    Installed,
    /// Not verified to the user's standard: nothing installed.
    Refused,
}

/// The default keyring location.
pub fn default_keyring() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("buildsrs").join("keyring"))
}

/// This machine's target triple, for the common platforms.
pub fn host_target() -> Option<&'static str> {
    Some(match (std::env::consts::ARCH, std::env::consts::OS) {
        ("x86_64", "linux") => "x86_64-unknown-linux-gnu",
        ("aarch64", "linux") => "aarch64-unknown-linux-gnu",
        ("x86_64", "macos") => "x86_64-apple-darwin",
        ("aarch64", "macos") => "aarch64-apple-darwin",
        ("x86_64", "windows") => "x86_64-pc-windows-msvc",
        _ => return None,
    })
}

/// Splits `name[@version]` and parses both parts.
fn parse_spec(spec: &str) -> Result<(CrateName, VersionRef)> {
    let (name, version) = match spec.split_once('@') {
        Some((name, version)) => (name, version),
        None => (spec, "latest"),
    };
    Ok((name.parse()?, version.parse()?))
}

/// Runs `buildsrs fetch`.
pub async fn fetch(args: &FetchArgs) -> Result<Outcome> {
    let (name, version) = parse_spec(&args.spec)?;
    let target: TargetTriple = match &args.target {
        Some(target) => target.parse()?,
        None => host_target()
            .context("this platform has no default target: pass --target")?
            .parse()?,
    };
    let install_dir = match &args.install_dir {
        Some(dir) => dir.clone(),
        None => dirs::home_dir()
            .context("no home directory: pass --install-dir")?
            .join(".cargo")
            .join("bin"),
    };
    let coordinator = Coordinator::new(&args.coordinator)?;
    let keyring = load_keyring(args, &coordinator).await?;

    let answer = coordinator.version(&name, &version).await?;
    // The registry's names are case-insensitive; the answer may spell it as published.
    if !answer.crate_name.eq_ignore_ascii_case(&name) {
        bail!(
            "asked for {name}, the coordinator answered for {}: refused",
            answer.crate_name
        );
    }
    let name = answer.crate_name.clone();
    if let VersionRef::Exact(asked) = &version
        && *asked != answer.version.version
    {
        bail!(
            "asked for {name} {asked}, the coordinator answered with {}: refused",
            answer.version.version
        );
    }
    let version = answer.version.version.clone();
    let entry = pick_target(&answer.targets, &target).with_context(|| {
        let states: Vec<String> = answer
            .targets
            .iter()
            .filter(|t| t.task.target == target)
            .map(|t| match &t.task.reason {
                Some(reason) => format!("{} ({reason})", t.task.state),
                None => t.task.state.to_string(),
            })
            .collect();
        if states.is_empty() {
            format!("{name} {version} is not built for {target}")
        } else {
            format!(
                "{name} {version} has no verified artifact for {target} yet: {}",
                states.join(", ")
            )
        }
    })?;
    let links = entry
        .links
        .as_ref()
        .context("the coordinator listed a verified task without download links")?;
    let size = entry
        .task
        .artifact
        .as_ref()
        .context("the coordinator listed a verified task without its artifact")?
        .size;
    if size > MAX_ARCHIVE_BYTES {
        bail!("the artifact is {size} bytes, more than the {MAX_ARCHIVE_BYTES} fetch takes");
    }
    // Our own read of the index, before anything is downloaded.
    let source = indexed_source(&args.registry, &name, &version).await?;
    if answer.version.yanked {
        eprintln!("warning: {name} {version} is yanked by its authors");
    }

    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let file_name = format!("{name}-{version}-{target}.tar.gz");
    let archive = scratch.path().join(&file_name);
    let bundle_bytes = match &args.mirror {
        None => {
            coordinator
                .download(&links.download, &archive, &file_name, size)
                .await?;
            coordinator.get_small(&links.bundle).await?
        }
        Some(mirror) => {
            let mirror = Coordinator::new(mirror)?;
            let hash = &entry
                .task
                .artifact
                .as_ref()
                .context("the coordinator named no artifact hash to ask the mirror for")?
                .blake3;
            mirror
                .download(&format!("/blobs/{hash}"), &archive, &file_name, size)
                .await?;
            mirror.get_small(&format!("/attestations/{hash}")).await?
        }
    };

    let artifact =
        ArtifactId::of_file(&archive).with_context(|| format!("hashing {}", archive.display()))?;
    // A bundle that does not even parse verifies nothing: refuse, do not error.
    let bundle = match Bundle::from_json(&bundle_bytes) {
        Ok(bundle) => bundle,
        Err(error) => {
            eprintln!("REFUSED: the attestation bundle does not parse: {error}");
            eprintln!("nothing was installed");
            return Ok(Outcome::Refused);
        }
    };
    let policy = Policy {
        threshold: args.threshold as usize,
        expect: Expectations {
            crate_name: Some(name.clone()),
            version: Some(version.clone()),
            target: Some(target.clone()),
            source: Some(source),
        },
    };
    let report = verify_bundle(artifact, &bundle, &keyring, &policy);
    if !report.verified {
        eprint!("{report}");
        eprintln!("REFUSED: nothing was installed");
        return Ok(Outcome::Refused);
    }

    let installed = install_archive(
        &archive,
        &Expected {
            crate_name: &name,
            version: &version,
            target: &target,
        },
        &install_dir,
    )?;
    print_installed(&name, &version, &target, &installed, &report.to_string());
    Ok(Outcome::Installed)
}

/// The verified entry for `target`; of several toolchains, the most recently decided.
fn pick_target<'a>(targets: &'a [TargetAnswer], target: &TargetTriple) -> Option<&'a TargetAnswer> {
    targets
        .iter()
        .filter(|t| {
            t.task.target == *target && t.task.state == TaskState::Verified && t.links.is_some()
        })
        .max_by(|a, b| a.task.decided_at.cmp(&b.task.decided_at))
}

async fn load_keyring(args: &FetchArgs, coordinator: &Coordinator) -> Result<Keyring> {
    let path = match &args.keyring {
        Some(path) => Some(path.clone()),
        None => default_keyring().filter(|p| p.exists()),
    };
    if let Some(path) = path {
        return Keyring::load(&path).with_context(|| format!("keyring {}", path.display()));
    }
    if !args.trust_coordinator_keyring {
        bail!(
            "no keyring: pass --keyring FILE (the builders you trust), put one at {}, or \
             pass --trust-coordinator-keyring to trust the coordinator's list of builders",
            default_keyring().map_or_else(
                || "~/.config/buildsrs/keyring".into(),
                |p| { p.display().to_string() }
            )
        );
    }
    eprintln!(
        "warning: trusting the coordinator's keyring: the server vouches for its own builders"
    );
    let text = String::from_utf8(coordinator.get_small("/keyring").await?)
        .context("the coordinator's keyring is not text")?;
    Keyring::parse(&text).context("the coordinator's keyring")
}

fn print_installed(name: &str, version: &str, target: &str, installed: &[PathBuf], report: &str) {
    println!("installed {name} {version} for {target}:");
    for path in installed {
        println!("  {}", path.display());
    }
    println!("attested by:");
    for line in report.lines().filter(|l| l.trim_start().starts_with('#')) {
        println!("  {}", line.trim());
    }
    if let Some(dir) = installed.first().and_then(|p| p.parent())
        && !on_path(dir)
    {
        println!("note: {} is not on your PATH", dir.display());
    }
}

fn on_path(dir: &Path) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p == dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        let (name, version) = parse_spec("ripgrep").unwrap();
        assert_eq!((name.as_str(), version), ("ripgrep", VersionRef::Latest));
        let (name, version) = parse_spec("ripgrep@14.1.0").unwrap();
        assert_eq!(
            (name.as_str(), version.to_string().as_str()),
            ("ripgrep", "14.1.0")
        );
        for bad in [
            "",
            "rip grep",
            "ripgrep@14",
            "ripgrep@",
            "../x@1.0.0",
            "@1.0.0",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad:?}");
        }
    }
}
