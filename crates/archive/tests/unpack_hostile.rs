//! Hostile archives: every way out of the top-level directory is refused, and nothing is left
//! behind when extraction stops.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::fs;
use std::io::Read;
use std::path::Path;

use buildsrs_archive::{ArtifactFile, Limits, UnpackError, pack_artifact, unpack_tar_gz};
use flate2::{Compression, write::GzEncoder};

const TOP: &str = "pkg-1.0.0";

/// An entry written with its path bytes copied verbatim into the header, so tests can make
/// the entries the `tar` crate's safe API refuses to write.
struct Raw<'a> {
    path: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: Option<&'a str>,
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        path,
        kind: tar::EntryType::Regular,
        data,
        link: None,
    }
}

fn dir(path: &str) -> Raw<'_> {
    Raw {
        path,
        kind: tar::EntryType::Directory,
        data: b"",
        link: None,
    }
}

fn link<'a>(path: &'a str, to: &'a str) -> Raw<'a> {
    Raw {
        path,
        kind: tar::EntryType::Symlink,
        data: b"",
        link: Some(to),
    }
}

fn tar_gz(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let name = &mut header.as_old_mut().name;
        name[..entry.path.len()].copy_from_slice(entry.path.as_bytes());
        header.set_entry_type(entry.kind);
        header.set_mode(0o644);
        header.set_size(entry.data.len() as u64);
        if let Some(to) = entry.link {
            header.as_old_mut().linkname[..to.len()].copy_from_slice(to.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn unpack(bytes: &[u8], dest: &Path) -> Result<buildsrs_archive::Unpacked, UnpackError> {
    unpack_tar_gz(bytes, dest, TOP, Limits::CRATE_SOURCE)
}

fn assert_refused(entries: &[Raw<'_>], needle: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("out");
    let err = unpack(&tar_gz(entries), &dest).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "left files behind");
    // Nothing escaped next to the destination either.
    let mut outside: Vec<_> = fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["out"]);
}

#[test]
fn a_normal_crate_unpacks() {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = tar_gz(&[
        dir("pkg-1.0.0/"),
        file("pkg-1.0.0/Cargo.toml", b"[package]\n"),
        file("pkg-1.0.0/src/main.rs", b"fn main() {}\n"),
        link("pkg-1.0.0/src/alias.rs", "main.rs"),
        link("pkg-1.0.0/README", "src/../Cargo.toml"),
    ]);
    let unpacked = unpack(&bytes, scratch.path()).unwrap();
    assert_eq!(unpacked.files, 2);
    assert_eq!(
        fs::read_to_string(unpacked.root.join("src/alias.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        fs::read_to_string(unpacked.root.join("README")).unwrap(),
        "[package]\n"
    );
}

#[test]
fn path_traversal_is_refused() {
    assert_refused(&[file("pkg-1.0.0/../evil", b"x")], "`..` is not allowed");
    assert_refused(&[file("/tmp/evil", b"x")], "absolute paths");
    assert_refused(&[file("./pkg-1.0.0/x", b"x")], "`.` components");
    assert_refused(
        &[file("other-1.0.0/x", b"x")],
        "entries must be under `pkg-1.0.0/`",
    );
    assert_refused(&[file("pkg-1.0.0x", b"x")], "entries must be under");
}

#[test]
fn links_that_escape_are_refused() {
    assert_refused(&[link("pkg-1.0.0/l", "/etc/passwd")], "must be relative");
    assert_refused(&[link("pkg-1.0.0/l", "../outside")], "leaves `pkg-1.0.0/`");
    assert_refused(&[link("pkg-1.0.0/a/l", "../../x")], "leaves");
    // `b` points at the package dir itself; `b/..` would then climb out in the kernel even
    // though it looks harmless lexically.
    assert_refused(
        &[
            link("pkg-1.0.0/b", "."),
            link("pkg-1.0.0/a", "b/b/../../etc"),
        ],
        "passes through another link",
    );
}

#[test]
fn writing_through_a_link_is_impossible() {
    // A link to a directory inside, then a file "under" the link: the file entry comes
    // first in extraction order, so the link does not exist yet and a real directory is made
    // instead; the link then collides and fails.
    assert_refused(
        &[
            link("pkg-1.0.0/d", "sub"),
            dir("pkg-1.0.0/sub/"),
            file("pkg-1.0.0/d/x", b"x"),
        ],
        "creating link",
    );
}

#[test]
fn special_files_are_refused() {
    for kind in [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let entry = Raw {
            path: "pkg-1.0.0/dev",
            kind,
            data: b"",
            link: None,
        };
        assert_refused(&[entry], "are not allowed");
    }
    let hard = Raw {
        path: "pkg-1.0.0/h",
        kind: tar::EntryType::Link,
        data: b"",
        link: Some("pkg-1.0.0/x"),
    };
    assert_refused(&[file("pkg-1.0.0/x", b"x"), hard], "are not allowed");
}

#[test]
fn duplicates_are_refused() {
    assert_refused(
        &[file("pkg-1.0.0/x", b"1"), file("pkg-1.0.0/x", b"2")],
        "duplicate entry",
    );
}

#[test]
fn limits_are_enforced() {
    let scratch = tempfile::tempdir().unwrap();
    let big = vec![0u8; 4096];
    let bytes = tar_gz(&[file("pkg-1.0.0/a", &big), file("pkg-1.0.0/b", &big)]);
    let tight = Limits {
        max_total_bytes: 6000,
        max_entries: 10,
        max_stream_bytes: 1 << 20,
    };
    let err = unpack_tar_gz(bytes.as_slice(), &scratch.path().join("1"), TOP, tight).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge(_)), "{err}");

    let few = Limits {
        max_total_bytes: 1 << 20,
        max_entries: 1,
        max_stream_bytes: 1 << 20,
    };
    let err = unpack_tar_gz(bytes.as_slice(), &scratch.path().join("2"), TOP, few).unwrap_err();
    assert!(err.to_string().contains("more than 1 entries"), "{err}");

    // A gzip bomb: one entry of 64 MiB of zeros is about 64 KiB compressed; extraction stops
    // at the stream cap long before it is inflated.
    let mut header = tar::Header::new_gnu();
    header.set_path("pkg-1.0.0/zeros").unwrap();
    header.set_size(64 << 20);
    header.set_mode(0o644);
    header.set_cksum();
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::best()));
    builder
        .append(&header, std::io::repeat(0).take(64 << 20))
        .unwrap();
    let bomb = builder.into_inner().unwrap().finish().unwrap();
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let capped = Limits {
        max_total_bytes: 1 << 30,
        max_entries: 10,
        max_stream_bytes: 1 << 20,
    };
    let err = unpack_tar_gz(bomb.as_slice(), &scratch.path().join("3"), TOP, capped).unwrap_err();
    assert!(
        err.to_string().contains("bytes of decompressed archive"),
        "{err}"
    );
}

#[test]
fn the_destination_must_be_empty_and_is_left_alone_otherwise() {
    let scratch = tempfile::tempdir().unwrap();
    fs::write(scratch.path().join("keep"), b"mine").unwrap();
    let bytes = tar_gz(&[file("pkg-1.0.0/x", b"x")]);
    assert!(matches!(
        unpack(&bytes, scratch.path()),
        Err(UnpackError::DestinationNotEmpty(_))
    ));
    assert_eq!(fs::read(scratch.path().join("keep")).unwrap(), b"mine");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let scratch = tempfile::tempdir().unwrap();
    assert!(unpack(b"not gzip at all", &scratch.path().join("a")).is_err());
    let mut truncated = tar_gz(&[file("pkg-1.0.0/x", &[7u8; 10_000])]);
    truncated.truncate(truncated.len() / 2);
    assert!(unpack(&truncated, &scratch.path().join("b")).is_err());
}

#[test]
fn packed_artifacts_round_trip_through_unpack() {
    let scratch = tempfile::tempdir().unwrap();
    let bin = scratch.path().join("hello");
    fs::write(&bin, b"#!/bin/sh\necho hello\n").unwrap();
    let out = scratch.path().join("a.tar.gz");
    let packed = pack_artifact(
        &"hello".parse().unwrap(),
        &"0.1.0".parse().unwrap(),
        &"x86_64-unknown-linux-gnu".parse().unwrap(),
        &[ArtifactFile {
            name: "hello".into(),
            source: bin,
        }],
        &out,
    )
    .unwrap();
    let top = packed.manifest.top_dir();
    let unpacked = unpack_tar_gz(
        fs::File::open(&out).unwrap(),
        &scratch.path().join("x"),
        &top,
        Limits::CRATE_SOURCE,
    )
    .unwrap();
    let hello = unpacked.root.join("bin/hello");
    assert_eq!(fs::read(&hello).unwrap(), b"#!/bin/sh\necho hello\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&hello).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let manifest: buildsrs_archive::Manifest =
        serde_json::from_slice(&fs::read(unpacked.root.join("buildsrs-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest, packed.manifest);
}
