//! Safe extraction of gzip'd tar archives we did not make: `.crate` files from a registry and
//! artifact archives a user downloaded.
//!
//! An archive is untrusted input. Everything must land under one expected top-level directory
//! (`NAME-VERSION/` for a `.crate`) inside a fresh destination, so extraction refuses:
//! - absolute paths, `..` and `.` components, and entries outside the top-level directory;
//! - hard links, device files, FIFOs and anything else that is not a file, a directory or a
//!   symbolic link;
//! - symbolic links whose target is absolute or leaves the top-level directory;
//! - duplicate entries, and more entries or more bytes than the [`Limits`] allow (counted on
//!   the decompressed stream, so a gzip bomb stops early).
//!
//! Nothing is ever written through a link: files are created with `O_EXCL | O_NOFOLLOW`, and
//! symbolic links are created only after every file and directory is in place, so no path
//! written during extraction can pass through one. On any error the partial output is removed.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

/// Caps on what one archive may unpack to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of file contents.
    pub max_total_bytes: u64,
    /// Number of entries of any kind.
    pub max_entries: u64,
    /// Bytes of decompressed tar stream (headers included).
    pub max_stream_bytes: u64,
}

impl Limits {
    /// Limits fit for crate sources: crates.io caps uploads at 10 MiB compressed; we allow
    /// 512 MiB unpacked and 100,000 entries.
    pub const CRATE_SOURCE: Limits = Limits {
        max_total_bytes: 512 << 20,
        max_entries: 100_000,
        max_stream_bytes: 640 << 20,
    };
}

/// Why extraction stopped. Nothing is left behind in the destination.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the archive or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The archive holds something we refuse to extract.
    #[error("refused entry {path:?}: {reason}")]
    Refused {
        /// The entry's path as the archive gives it.
        path: String,
        /// Why.
        reason: String,
    },
    /// The archive is larger than the limits allow.
    #[error("archive exceeds the limit: {0}")]
    TooLarge(String),
    /// The destination exists and is not empty.
    #[error("destination {0} exists and is not empty")]
    DestinationNotEmpty(PathBuf),
}

/// What was extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// `dest/top_dir`.
    pub root: PathBuf,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
}

/// Extracts a `.tar.gz` whose entries all live under `top_dir/` into `dest` (created if
/// missing; must be empty).
pub fn unpack_tar_gz(
    archive: impl Read,
    dest: &Path,
    top_dir: &str,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    prepare_destination(dest)?;
    let result = extract(archive, dest, top_dir, limits);
    if result.is_err() {
        // Leave nothing half-extracted; the error says why.
        if let Ok(entries) = fs::read_dir(dest) {
            for entry in entries.flatten() {
                let _ = fs::remove_dir_all(entry.path()).or_else(|_| fs::remove_file(entry.path()));
            }
        }
    }
    result
}

fn prepare_destination(dest: &Path) -> Result<(), UnpackError> {
    fs::create_dir_all(dest).map_err(|source| UnpackError::Io {
        context: format!("creating {}", dest.display()),
        source,
    })?;
    let mut entries = fs::read_dir(dest).map_err(|source| UnpackError::Io {
        context: format!("reading {}", dest.display()),
        source,
    })?;
    if entries.next().is_some() {
        return Err(UnpackError::DestinationNotEmpty(dest.to_owned()));
    }
    Ok(())
}

fn extract(
    archive: impl Read,
    dest: &Path,
    top_dir: &str,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    if top_dir.is_empty() || top_dir.contains('/') || top_dir == "." || top_dir == ".." {
        return Err(UnpackError::Refused {
            path: top_dir.to_owned(),
            reason: "the expected top-level directory is not a plain name".into(),
        });
    }
    let stream = CappedReader {
        inner: GzDecoder::new(archive),
        left: limits.max_stream_bytes,
    };
    let mut tar = tar::Archive::new(stream);
    let read_err = |source| UnpackError::Io {
        context: "reading the archive".into(),
        source,
    };
    let root = dest.join(top_dir);
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut links: Vec<(PathBuf, PathBuf, Vec<PathBuf>)> = Vec::new();
    let (mut entries_count, mut files, mut bytes) = (0u64, 0u64, 0u64);

    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(|e| stream_error(e, limits))?;
        entries_count += 1;
        if entries_count > limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "more than {} entries",
                limits.max_entries
            )));
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: &str| UnpackError::Refused {
            path: raw_path.clone(),
            reason: reason.to_owned(),
        };
        let relative = checked_relative(&raw_path, top_dir).map_err(|r| refuse(&r))?;
        if !seen.insert(relative.clone()) {
            return Err(refuse("duplicate entry"));
        }
        let target = dest.join(&relative);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                create_dirs(dest, &relative)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                bytes = bytes.saturating_add(size);
                if bytes > limits.max_total_bytes {
                    return Err(UnpackError::TooLarge(format!(
                        "more than {} bytes of file contents",
                        limits.max_total_bytes
                    )));
                }
                if let Some(parent) = relative.parent() {
                    create_dirs(dest, parent)?;
                }
                let executable = entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false);
                write_file(&mut entry, &target, executable, limits)?;
                files += 1;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(read_err)?
                    .ok_or_else(|| refuse("symbolic link without a target"))?
                    .into_owned();
                let passed = check_link(&relative, &link, top_dir).map_err(|r| refuse(&r))?;
                links.push((relative, link, passed));
            }
            // PAX and GNU long-name records are consumed by the tar reader itself.
            _ => {
                return Err(refuse(&format!(
                    "{kind:?} entries are not allowed (only files, directories and symbolic links)"
                )));
            }
        }
    }
    // Links last: nothing above was written through one.
    let link_paths: HashSet<&PathBuf> = links.iter().map(|(at, _, _)| at).collect();
    for (relative, _, passed) in &links {
        if let Some(through) = passed.iter().find(|p| link_paths.contains(p)) {
            return Err(UnpackError::Refused {
                path: relative.display().to_string(),
                reason: format!(
                    "symbolic link passes through another link ({})",
                    through.display()
                ),
            });
        }
    }
    for (relative, link, _) in &links {
        if let Some(parent) = relative.parent() {
            create_dirs(dest, parent)?;
        }
        let at = dest.join(relative);
        std::os::unix::fs::symlink(link, &at).map_err(|source| UnpackError::Io {
            context: format!("creating link {}", at.display()),
            source,
        })?;
    }
    if !root.is_dir() {
        return Err(UnpackError::Refused {
            path: top_dir.to_owned(),
            reason: "the archive has no entries under its expected top-level directory".into(),
        });
    }
    Ok(Unpacked { root, files, bytes })
}

/// The entry's path as a relative path starting with `top_dir`, or why not.
fn checked_relative(raw: &str, top_dir: &str) -> Result<PathBuf, String> {
    let path = Path::new(raw);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed".into());
            }
            Component::ParentDir => return Err("`..` is not allowed".into()),
            Component::CurDir => return Err("`.` components are not allowed".into()),
        }
    }
    if raw.contains('\0') {
        return Err("NUL in path".into());
    }
    match clean.components().next() {
        Some(Component::Normal(first)) if first == top_dir => Ok(clean),
        _ => Err(format!("entries must be under `{top_dir}/`")),
    }
}

/// A link at `relative` pointing to `link` must stay inside `top_dir` when resolved
/// lexically. Returns the directories the target passes through (relative to `dest`), which
/// must not be links themselves: the kernel resolves `..` after a link from the link's
/// target, not lexically, so a chain of links could otherwise climb out.
fn check_link(relative: &Path, link: &Path, top_dir: &str) -> Result<Vec<PathBuf>, String> {
    if link.is_absolute() {
        return Err("symbolic links must be relative".into());
    }
    let mut at: Vec<&std::ffi::OsStr> = relative
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let mut passed = Vec::new();
    let parts: Vec<Component<'_>> = link.components().collect();
    for (i, component) in parts.iter().enumerate() {
        match component {
            Component::Normal(part) => {
                at.push(part);
                if i + 1 < parts.len() {
                    passed.push(at.iter().collect::<PathBuf>());
                }
            }
            Component::ParentDir => {
                at.pop();
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("symbolic links must be relative".into());
            }
        }
        if at.is_empty() {
            return Err(format!("symbolic link leaves `{top_dir}/`"));
        }
    }
    Ok(passed)
}

/// Creates `dest/relative` one component at a time, refusing to pass through anything that
/// is not a real directory.
fn create_dirs(dest: &Path, relative: &Path) -> Result<(), UnpackError> {
    let mut at = dest.to_path_buf();
    for component in relative.components() {
        at.push(component);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Refused {
                    path: relative.display().to_string(),
                    reason: format!("{} exists and is not a directory", at.display()),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at).map_err(|source| UnpackError::Io {
                    context: format!("creating {}", at.display()),
                    source,
                })?;
                fs::set_permissions(&at, fs::Permissions::from_mode(0o755)).map_err(|source| {
                    UnpackError::Io {
                        context: format!("setting permissions of {}", at.display()),
                        source,
                    }
                })?;
            }
            Err(source) => {
                return Err(UnpackError::Io {
                    context: format!("inspecting {}", at.display()),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn write_file(
    entry: &mut impl Read,
    target: &Path,
    executable: bool,
    limits: Limits,
) -> Result<(), UnpackError> {
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(target)
        .map_err(|source| UnpackError::Io {
            context: format!("creating {}", target.display()),
            source,
        })?;
    io::copy(entry, &mut file).map_err(|e| stream_error(e, limits))?;
    Ok(())
}

fn stream_error(error: io::Error, limits: Limits) -> UnpackError {
    if error.kind() == io::ErrorKind::FileTooLarge {
        UnpackError::TooLarge(format!(
            "more than {} bytes of decompressed archive",
            limits.max_stream_bytes
        ))
    } else {
        UnpackError::Io {
            context: "reading the archive".into(),
            source: error,
        }
    }
}

/// Fails reads past a byte budget, so a decompression bomb stops early.
struct CappedReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One more byte would exceed the cap: probe for it.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    "decompressed stream exceeds its cap",
                )),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_must_stay_under_the_top_dir() {
        assert!(checked_relative("pkg-1.0.0/src/main.rs", "pkg-1.0.0").is_ok());
        assert!(checked_relative("/etc/passwd", "pkg-1.0.0").is_err());
        assert!(checked_relative("pkg-1.0.0/../x", "pkg-1.0.0").is_err());
        assert!(checked_relative("./pkg-1.0.0/x", "pkg-1.0.0").is_err());
        assert!(checked_relative("other-1.0.0/x", "pkg-1.0.0").is_err());
    }

    #[test]
    fn links_must_stay_under_the_top_dir() {
        let at = Path::new("pkg/src/link");
        assert_eq!(
            check_link(at, Path::new("main.rs"), "pkg").unwrap(),
            Vec::<PathBuf>::new()
        );
        assert!(check_link(at, Path::new("../Cargo.toml"), "pkg").is_ok());
        assert_eq!(
            check_link(at, Path::new("../b/c"), "pkg").unwrap(),
            [PathBuf::from("pkg/b")]
        );
        assert!(check_link(at, Path::new("../../x"), "pkg").is_err());
        assert!(check_link(at, Path::new("/etc/passwd"), "pkg").is_err());
        assert!(check_link(Path::new("pkg/l"), Path::new("a/../../x"), "pkg").is_err());
    }
}
