//! Reading what a build wrote, on the host, without following links.
//!
//! Anything under a directory the sandbox could write may be a symbolic link, a FIFO or
//! something else by the time the node reads it: code that ran during the build (a proc macro
//! of one binary, waiting for another to be finished) can replace a finished binary with a
//! link to the node's secret key, whose host path it can learn from `/proc/self/mountinfo`.
//! Opened by name on the host, the link would be followed and the key packed, signed and
//! served. So the node never opens such a path by name: [`open_regular_beneath`] walks it one
//! component at a time from a directory the node made, with `O_NOFOLLOW` on every component,
//! and accepts only a regular file of bounded size.
//!
//! Call it only once the run has ended: the sandbox's processes are then all gone (its pid
//! namespace and cgroups die with it), so nothing can swap a file between the check and the
//! read.
//!
//! [`remove_tree`] removes what a build left behind, even directories it made unwritable
//! (`chmod 0500` stops a node that does not run as root from deleting their entries).

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a build's output could not be read. All but [`OutputError::Io`] are the build's
/// doing.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Nothing is there.
    #[error("{0} is missing")]
    Missing(PathBuf),
    /// Something other than a regular file is there (or on the way there).
    #[error("{path} is a {kind}, not a file the build wrote")]
    NotAFile {
        /// The path, relative to the directory it was looked up in.
        path: PathBuf,
        /// What it is: `symbolic link`, `FIFO`, `directory`, ….
        kind: &'static str,
    },
    /// The file is larger than allowed.
    #[error("{path} is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The path, relative to the directory it was looked up in.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The relative path is not a plain path below the directory (absolute, `..`, empty).
    #[error("{0} is not a plain relative path")]
    BadPath(PathBuf),
    /// The node could not read it (permissions, I/O): the node's fault.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl OutputError {
    /// Whether this is the build's doing (anything but an I/O failure of the node).
    pub fn is_the_builds_doing(&self) -> bool {
        !matches!(self, OutputError::Io { .. })
    }
}

/// Opens `root/relative` for reading without following any link below `root`: every
/// component of `relative` must be a real directory and the last a regular file of at most
/// `max_bytes`. `root` itself is trusted (the node made it).
pub fn open_regular_beneath(
    root: &Path,
    relative: &Path,
    max_bytes: u64,
) -> Result<File, OutputError> {
    let parts: Vec<&OsStr> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => Ok(part),
            _ => Err(OutputError::BadPath(relative.to_owned())),
        })
        .collect::<Result<_, _>>()?;
    let Some((last, dirs)) = parts.split_last() else {
        return Err(OutputError::BadPath(relative.to_owned()));
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |errno: Errno| OutputError::Io {
            path,
            source: errno.into(),
        }
    };
    let mut dir = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(root))?;
    let mut walked = PathBuf::new();
    for part in dirs {
        walked.push(part);
        dir = rustix::fs::openat(
            &dir,
            *part,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| refused(errno, &dir, part, &walked))?;
    }
    walked.push(last);
    // NONBLOCK: opening a FIFO must not wait for a writer that will never come.
    let file = rustix::fs::openat(
        &dir,
        *last,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| refused(errno, &dir, last, &walked))?;
    let stat = rustix::fs::fstat(&file).map_err(io(&walked))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(OutputError::NotAFile {
            path: walked,
            kind: describe(kind),
        });
    }
    let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if size > max_bytes {
        return Err(OutputError::TooLarge {
            path: walked,
            size,
            max: max_bytes,
        });
    }
    Ok(File::from(file))
}

/// Why opening `name` in `dir` failed: a link or other non-directory is the build's doing.
/// Removes `path` and everything below it, as a build may have left it: directories it made
/// unreadable or unwritable are given back to their owner (`0700`) first, and links are
/// removed, never followed. A missing `path` is not an error.
///
/// Like [`open_regular_beneath`], only for trees no running build can still change: the
/// permission walk goes by name, and checks each directory with `lstat` right before it
/// changes its mode.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
        Ok(meta) if !meta.is_dir() => return std::fs::remove_file(path),
        Ok(_) => {}
    }
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|meta| meta.is_dir());
        if !is_dir {
            continue;
        }
        // Errors here surface below, when the removal itself fails.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    std::fs::remove_dir_all(path)
}

fn refused(errno: Errno, dir: &rustix::fd::OwnedFd, name: &OsStr, path: &Path) -> OutputError {
    match errno {
        Errno::NOENT => OutputError::Missing(path.to_owned()),
        // O_NOFOLLOW on a link is ELOOP; O_DIRECTORY on anything else ENOTDIR. Look at what
        // is there to say which.
        Errno::LOOP | Errno::NOTDIR => {
            let kind = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| describe(FileType::from_raw_mode(stat.st_mode)))
                .unwrap_or("symbolic link");
            OutputError::NotAFile {
                path: path.to_owned(),
                kind,
            }
        }
        other => OutputError::Io {
            path: path.to_owned(),
            source: other.into(),
        },
    }
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(root: &Path, relative: &str, max: u64) -> Result<Vec<u8>, OutputError> {
        let mut bytes = Vec::new();
        open_regular_beneath(root, Path::new(relative), max)?
            .read_to_end(&mut bytes)
            .map_err(|source| OutputError::Io {
                path: relative.into(),
                source,
            })?;
        Ok(bytes)
    }

    fn kind_of(error: OutputError) -> &'static str {
        match error {
            OutputError::NotAFile { kind, .. } => kind,
            other => panic!("expected a refusal of a non-file, got {other}"),
        }
    }

    #[test]
    fn a_regular_file_is_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("t/release")).unwrap();
        std::fs::write(root.path().join("t/release/a"), b"binary").unwrap();
        assert_eq!(read(root.path(), "t/release/a", 6).unwrap(), b"binary");
        assert!(matches!(
            read(root.path(), "t/release/a", 5),
            Err(OutputError::TooLarge {
                size: 6,
                max: 5,
                ..
            })
        ));
        assert!(matches!(
            read(root.path(), "t/release/b", 6),
            Err(OutputError::Missing(_))
        ));
        for bad in ["", "/etc/passwd", "t/../t/release/a", "./t/release/a"] {
            assert!(
                matches!(read(root.path(), bad, 6), Err(OutputError::BadPath(_))),
                "{bad}"
            );
        }
    }

    /// The attack: a finished binary swapped for a link to a secret outside, or a directory
    /// on the way swapped for a link to the secret's directory.
    #[test]
    fn links_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("identity.key"), b"SECRET").unwrap();
        std::fs::create_dir_all(root.path().join("t/release")).unwrap();
        symlink(
            outside.path().join("identity.key"),
            root.path().join("t/release/a"),
        )
        .unwrap();
        let error = read(root.path(), "t/release/a", 1 << 20).unwrap_err();
        assert_eq!(kind_of(error), "symbolic link");

        std::fs::create_dir_all(root.path().join("u")).unwrap();
        symlink(outside.path(), root.path().join("u/release")).unwrap();
        let error = read(root.path(), "u/release/identity.key", 1 << 20).unwrap_err();
        assert_eq!(kind_of(error), "symbolic link");
        // A relative link is no better.
        symlink("../../../etc/passwd", root.path().join("t/release/rel")).unwrap();
        assert_eq!(
            kind_of(read(root.path(), "t/release/rel", 1 << 20).unwrap_err()),
            "symbolic link"
        );
    }

    /// A FIFO where a binary should be must not hang the node; a directory is refused too.
    #[test]
    fn fifos_and_directories_are_refused_at_once() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("a");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(
            kind_of(read(root.path(), "a", 1 << 20).unwrap_err()),
            "FIFO"
        );
        std::fs::create_dir(root.path().join("d")).unwrap();
        assert_eq!(
            kind_of(read(root.path(), "d", 1 << 20).unwrap_err()),
            "directory"
        );
    }

    #[test]
    fn remove_tree_removes_links_not_their_targets_and_missing_is_fine() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"keep").unwrap();
        let tree = root.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/file"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("a/out")).unwrap();
        super::remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
        super::remove_tree(&tree).unwrap();
    }
}
