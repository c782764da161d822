//! Unpacking archives we did not make (`.crate` files from a registry, artifact archives a
//! user downloaded) and reading an artifact's manifest must refuse what is not allowed,
//! never panic, and never write outside the destination.
//!
//! The first byte chooses what the rest is: a `.crate` (top-level directory
//! `hello-bin-0.1.0`), an artifact archive (`hello-bin-0.1.0-x86_64-unknown-linux-gnu`), or
//! an artifact manifest's JSON.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use buildsrs_archive::pack::manifest_json;
use buildsrs_archive::{Limits, Manifest, Unpacked, unpack_tar_gz};
use libfuzzer_sys::fuzz_target;

const CRATE_TOP: &str = "hello-bin-0.1.0";
const ARTIFACT_TOP: &str = "hello-bin-0.1.0-x86_64-unknown-linux-gnu";

/// Small limits keep each run fast; the limit checks themselves are exercised all the same.
const LIMITS: Limits = Limits {
    max_total_bytes: 1 << 20,
    max_entries: 256,
    max_stream_bytes: 4 << 20,
};

/// Regular files and their bytes under `dir`, checking that every symbolic link resolves
/// (when it resolves at all) inside `root`. Never follows a link while walking.
fn walk(dir: &Path, root: &Path, files: &mut u64, bytes: &mut u64) {
    for entry in fs::read_dir(dir).expect("an unpacked directory reads") {
        let path = entry.expect("a directory entry reads").path();
        let meta = fs::symlink_metadata(&path).expect("an unpacked entry stats");
        if meta.file_type().is_symlink() {
            if let Ok(resolved) = fs::canonicalize(&path) {
                assert!(
                    resolved.starts_with(root),
                    "{} resolves to {}, outside {}",
                    path.display(),
                    resolved.display(),
                    root.display()
                );
            }
        } else if meta.is_dir() {
            walk(&path, root, files, bytes);
        } else {
            assert!(meta.is_file(), "{} is not a file", path.display());
            *files += 1;
            *bytes += meta.len();
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("a directory reads")
        .map(|e| {
            e.expect("a directory entry reads")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Where scratch directories go: memory (`/dev/shm`) when there is one, as creating and
/// removing a directory tree per input on a disk file system makes the target some thirty
/// times slower; the system's temporary directory otherwise.
fn scratch_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        match tempfile::tempdir_in(shm) {
            Ok(_) => shm.to_owned(),
            Err(_) => std::env::temp_dir(),
        }
    })
}

fn unpack(archive: &[u8], top_dir: &str) {
    // A fresh directory per input; the destination is inside it, so anything escaping the
    // destination would show up next to it.
    let scratch = tempfile::tempdir_in(scratch_base()).expect("a scratch directory");
    let dest = scratch.path().join("dest");
    let result = unpack_tar_gz(archive, &dest, top_dir, LIMITS);
    assert_eq!(
        names(scratch.path()),
        ["dest"],
        "written outside the destination"
    );
    match result {
        Ok(Unpacked { root, files, bytes }) => {
            assert_eq!(root, dest.join(top_dir));
            assert_eq!(
                names(&dest),
                [top_dir],
                "written beside the top-level directory"
            );
            let root = fs::canonicalize(&root).expect("the root resolves");
            let (mut found_files, mut found_bytes) = (0, 0);
            walk(&root, &root, &mut found_files, &mut found_bytes);
            assert_eq!((found_files, found_bytes), (files, bytes));
            if let Ok(manifest) = fs::read(root.join("buildsrs-manifest.json")) {
                check_manifest(&manifest);
            }
        }
        Err(error) => {
            let _ = error.to_string();
            assert!(names(&dest).is_empty(), "a refused archive left output");
        }
    }
}

/// What the CLI reads from an unpacked artifact: it parses, or is refused, and what parses
/// writes back and parses to the same manifest.
fn check_manifest(json: &[u8]) {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(json) else {
        return;
    };
    let written = manifest_json(&manifest);
    let again: Manifest = serde_json::from_slice(&written).expect("a written manifest parses");
    assert_eq!(again, manifest);
    let _ = manifest.top_dir();
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    match choice % 3 {
        0 => unpack(rest, CRATE_TOP),
        1 => unpack(rest, ARTIFACT_TOP),
        _ => check_manifest(rest),
    }
});
