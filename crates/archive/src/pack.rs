//! Deterministic artifact archives.
//!
//! Two builders that compiled the same bytes must publish the same archive, so everything that
//! could differ between machines is fixed:
//! - entries sorted by path, directories listed explicitly;
//! - mtime 0 (the Unix epoch), uid and gid 0, no user or group names;
//! - modes 0755 for directories and executables, 0644 for other files;
//! - GNU tar headers, gzip with compression level 9, header mtime 0 and OS byte "unknown".
//!
//! The compressor's output is only stable for one version of the compression library, so the
//! buildsrs version that packed an archive is part of the build settings a builder attests.
//!
//! Layout: everything sits under `{crate}-{version}-{target}/`: the binaries under `bin/`, and
//! `buildsrs-manifest.json`, which names the crate, version and target and lists every file
//! with its BLAKE3 hash and size.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use buildsrs_keys::{ArtifactId, Blake3Hash, CrateName, CrateVersion, TargetTriple};
use flate2::{Compression, GzBuilder};
use serde::{Deserialize, Serialize};

/// The manifest's file name inside the archive's top-level directory.
pub const MANIFEST_NAME: &str = "buildsrs-manifest.json";

/// The manifest format this code writes.
pub const MANIFEST_FORMAT: u32 = 1;

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading an input or writing the archive failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// An input's name cannot go into an archive.
    #[error("cannot pack {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why not.
        reason: &'static str,
    },
}

/// One file to put under `bin/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactFile {
    /// The name inside `bin/`, e.g. `rg`.
    pub name: String,
    /// Where the file is now.
    pub source: PathBuf,
}

/// One file as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the archive's top-level directory, e.g. `bin/rg`.
    pub path: String,
    /// BLAKE3 of the file's bytes.
    pub blake3: Blake3Hash,
    /// Length in bytes.
    pub size: u64,
}

/// What an artifact archive contains, written into it as `buildsrs-manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub buildsrs_manifest: u32,
    /// The crate name.
    #[serde(rename = "crate")]
    pub crate_name: CrateName,
    /// The crate version.
    pub version: CrateVersion,
    /// The target triple.
    pub target: TargetTriple,
    /// Every file, sorted by path.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The archive's top-level directory name.
    pub fn top_dir(&self) -> String {
        format!("{}-{}-{}", self.crate_name, self.version, self.target)
    }
}

/// The result of packing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedArtifact {
    /// BLAKE3 and size of the archive file.
    pub id: ArtifactId,
    /// What went into it.
    pub manifest: Manifest,
}

/// Packs `files` into a deterministic `.tar.gz` at `out` and hashes it while writing.
pub fn pack_artifact(
    crate_name: &CrateName,
    version: &CrateVersion,
    target: &TargetTriple,
    files: &[ArtifactFile],
    out: &Path,
) -> Result<PackedArtifact, PackError> {
    let mut files: Vec<&ArtifactFile> = files.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in files.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(bad_name(&pair[0].name, "two files have this name"));
        }
    }
    let mut listed = Vec::with_capacity(files.len());
    for file in &files {
        check_name(&file.name)?;
        let id = ArtifactId::of_file(&file.source).map_err(io_at(&file.source))?;
        listed.push(ManifestFile {
            path: format!("bin/{}", file.name),
            blake3: id.blake3,
            size: id.size,
        });
    }
    let manifest = Manifest {
        buildsrs_manifest: MANIFEST_FORMAT,
        crate_name: crate_name.clone(),
        version: version.clone(),
        target: target.clone(),
        files: listed,
    };
    let top = manifest.top_dir();
    check_name(&top)?;

    let output = File::create(out).map_err(io_at(out))?;
    let hashing = HashingWriter::new(BufWriter::new(output));
    let gzip = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(hashing, Compression::new(9));
    let mut tar = tar::Builder::new(gzip);
    tar.mode(tar::HeaderMode::Deterministic);

    let write = |tar: &mut tar::Builder<_>| -> io::Result<()> {
        append_dir(tar, &format!("{top}/"))?;
        append_dir(tar, &format!("{top}/bin/"))?;
        for file in &files {
            let source = File::open(&file.source)?;
            let len = source.metadata()?.len();
            let mut header = file_header(len, 0o755);
            tar.append_data(&mut header, format!("{top}/bin/{}", file.name), source)?;
        }
        let manifest_bytes = manifest_json(&manifest);
        let mut header = file_header(manifest_bytes.len() as u64, 0o644);
        tar.append_data(
            &mut header,
            format!("{top}/{MANIFEST_NAME}"),
            manifest_bytes.as_slice(),
        )?;
        Ok(())
    };
    write(&mut tar).map_err(io_at(out))?;
    let hashing = tar
        .into_inner()
        .and_then(|gzip| gzip.finish())
        .map_err(io_at(out))?;
    let (writer, id) = hashing.finish();
    writer
        .into_inner()
        .map_err(|e| io_at(out)(e.into_error()))?
        .sync_all()
        .map_err(io_at(out))?;
    Ok(PackedArtifact { id, manifest })
}

/// The manifest as canonical JSON (sorted keys, no white space) plus a newline.
pub fn manifest_json(manifest: &Manifest) -> Vec<u8> {
    let tree = serde_json::to_value(manifest).expect("a manifest always serializes");
    let mut bytes = serde_json::to_vec(&tree).expect("a JSON value always serializes");
    bytes.push(b'\n');
    bytes
}

fn file_header(len: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(len);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut header = file_header(0, 0o755);
    header.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut header, path, io::empty())
}

fn check_name(name: &str) -> Result<(), PackError> {
    if name.is_empty() || name.len() > 200 {
        return Err(bad_name(name, "names must be 1-200 bytes"));
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return Err(bad_name(name, "names must not start with a dot"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return Err(bad_name(name, "names are ASCII letters, digits and `._+-`"));
    }
    Ok(())
}

fn bad_name(name: &str, reason: &'static str) -> PackError {
    PackError::BadName {
        name: name.to_owned(),
        reason,
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }

    fn finish(self) -> (W, ArtifactId) {
        let id = ArtifactId::from_hasher(&self.hasher);
        (self.inner, id)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> CrateName {
        "demo".parse().unwrap()
    }

    fn version() -> CrateVersion {
        "1.0.0".parse().unwrap()
    }

    fn target() -> TargetTriple {
        "x86_64-unknown-linux-gnu".parse().unwrap()
    }

    fn inputs(dir: &Path) -> Vec<ArtifactFile> {
        let mut files = Vec::new();
        for (name, bytes) in [("zeta", &b"second binary"[..]), ("alpha", b"first binary")] {
            let source = dir.join(name);
            std::fs::write(&source, bytes).unwrap();
            files.push(ArtifactFile {
                name: name.into(),
                source,
            });
        }
        files
    }

    #[test]
    fn packing_twice_gives_identical_bytes_and_the_hash_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path());
        let a = dir.path().join("a.tar.gz");
        let b = dir.path().join("b.tar.gz");
        let first = pack_artifact(&name(), &version(), &target(), &files, &a).unwrap();
        // Different source mtimes and permissions must not matter.
        for file in &files {
            let f = File::options().append(true).open(&file.source).unwrap();
            f.set_modified(std::time::SystemTime::now()).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file.source, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let reversed: Vec<ArtifactFile> = files.iter().rev().cloned().collect();
        let second = pack_artifact(&name(), &version(), &target(), &reversed, &b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(first, second);
        assert_eq!(first.id, ArtifactId::of_file(&a).unwrap());
        let names: Vec<&str> = first
            .manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(names, ["bin/alpha", "bin/zeta"]);
    }

    #[test]
    fn entries_are_sorted_owned_by_root_and_dated_at_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.tar.gz");
        pack_artifact(&name(), &version(), &target(), &inputs(dir.path()), &out).unwrap();
        let gz = flate2::read::GzDecoder::new(File::open(&out).unwrap());
        let mut archive = tar::Archive::new(gz);
        let mut paths = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
            assert_eq!(header.username().unwrap(), Some(""));
            paths.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        let top = "demo-1.0.0-x86_64-unknown-linux-gnu";
        assert_eq!(
            paths,
            [
                format!("{top}/"),
                format!("{top}/bin/"),
                format!("{top}/bin/alpha"),
                format!("{top}/bin/zeta"),
                format!("{top}/{MANIFEST_NAME}"),
            ]
        );
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.tar.gz");
        let mut files = inputs(dir.path());
        files[0].name = "../evil".into();
        assert!(matches!(
            pack_artifact(&name(), &version(), &target(), &files, &out),
            Err(PackError::BadName { .. })
        ));
        assert!(!out.exists());
        files[0].name = "alpha".into();
        assert!(pack_artifact(&name(), &version(), &target(), &files, &out).is_err());
    }
}
