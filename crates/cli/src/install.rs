//! Putting a verified archive's binaries in place.
//!
//! The archive was verified as a whole (its BLAKE3 is what the builders signed), so its
//! manifest can be believed; it is still checked against what was unpacked, so that a bug
//! on either side shows up as a refusal rather than a wrong binary. Binaries are written
//! into the install directory under temporary names and renamed into place, so an
//! interrupted install never leaves half a file under a binary's name.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use buildsrs_archive::pack::MANIFEST_NAME;
use buildsrs_archive::{Limits, Manifest, unpack_tar_gz};
use buildsrs_keys::{ArtifactId, CrateName, CrateVersion, TargetTriple};

/// Limits for artifact archives: binaries can be large, but not unboundedly so.
pub const ARTIFACT_LIMITS: Limits = Limits {
    max_total_bytes: 4 << 30,
    max_entries: 10_000,
    max_stream_bytes: 5 << 30,
};

/// What the archive must be.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// The crate.
    pub crate_name: &'a CrateName,
    /// The version.
    pub version: &'a CrateVersion,
    /// The target.
    pub target: &'a TargetTriple,
}

/// Unpacks `archive` (already verified), checks its manifest, and installs every `bin/`
/// file into `install_dir` (created if missing). Returns the installed paths.
pub fn install_archive(
    archive: &Path,
    expected: &Expected<'_>,
    install_dir: &Path,
) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(install_dir)
        .with_context(|| format!("creating {}", install_dir.display()))?;
    // Unpacked next to the destination, so the final renames stay on one file system.
    let scratch = tempfile::Builder::new()
        .prefix(".buildsrs-install-")
        .tempdir_in(install_dir)
        .with_context(|| {
            format!(
                "creating a temporary directory in {}",
                install_dir.display()
            )
        })?;
    let top = format!(
        "{}-{}-{}",
        expected.crate_name, expected.version, expected.target
    );
    let file = fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let unpacked = unpack_tar_gz(file, &scratch.path().join("x"), &top, ARTIFACT_LIMITS)
        .context("unpacking the archive")?;
    let manifest = read_manifest(&unpacked.root, expected)?;
    check_files(&unpacked.root, &manifest)?;

    let mut installed = Vec::new();
    let binaries: Vec<_> = manifest
        .files
        .iter()
        .filter_map(|f| f.path.strip_prefix("bin/").map(|name| (name, f)))
        .collect();
    ensure!(!binaries.is_empty(), "the archive holds no binaries");
    for (name, _) in &binaries {
        ensure!(
            !name.is_empty() && !name.contains('/') && *name != "." && *name != "..",
            "refusing to install a binary named {name:?}"
        );
    }
    for (name, entry) in binaries {
        let source = unpacked.root.join(&entry.path);
        let staged = scratch.path().join(format!("staged-{name}"));
        fs::copy(&source, &staged).with_context(|| format!("staging {name}"))?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))?;
        fs::File::open(&staged)?.sync_all()?;
        let dest = install_dir.join(name);
        fs::rename(&staged, &dest).with_context(|| format!("installing {}", dest.display()))?;
        installed.push(dest);
    }
    Ok(installed)
}

fn read_manifest(root: &Path, expected: &Expected<'_>) -> Result<Manifest> {
    let path = root.join(MANIFEST_NAME);
    let bytes = fs::read(&path).context("the archive has no manifest")?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).context("the archive's manifest does not parse")?;
    if (&manifest.crate_name, &manifest.version, &manifest.target)
        != (expected.crate_name, expected.version, expected.target)
    {
        bail!(
            "the archive is {} {} for {}, not {} {} for {}",
            manifest.crate_name,
            manifest.version,
            manifest.target,
            expected.crate_name,
            expected.version,
            expected.target
        );
    }
    Ok(manifest)
}

/// Every unpacked file is in the manifest with its hash and size, and nothing else is there.
fn check_files(root: &Path, manifest: &Manifest) -> Result<()> {
    let mut found = Vec::new();
    walk(root, root, &mut found)?;
    found.retain(|p| p != MANIFEST_NAME);
    found.sort();
    let mut listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    listed.sort_unstable();
    ensure!(
        found == listed,
        "the archive's files {found:?} differ from its manifest {listed:?}"
    );
    for entry in &manifest.files {
        let actual = ArtifactId::of_file(&root.join(&entry.path))
            .with_context(|| format!("hashing {}", entry.path))?;
        ensure!(
            actual.blake3 == entry.blake3 && actual.size == entry.size,
            "{} does not match the manifest",
            entry.path
        );
    }
    Ok(())
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, found)?;
        } else {
            let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
            found.push(relative);
        }
    }
    Ok(())
}
