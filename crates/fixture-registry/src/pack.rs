//! Packing a fixture crate into a real `.crate` file and its index line, as `cargo publish`
//! would.
//!
//! The archive is a gzip'd tar with every file under `NAME-VERSION/`. It is deterministic
//! (sorted entries, fixed mtime, uid, gid and modes, no gzip timestamp), so the same fixture
//! and version always give the same bytes and the same `cksum`, on every machine. As cargo
//! does, the packed `Cargo.toml` has its `package.version` set to the published version and
//! the `path` keys of its dependencies dropped (the original is kept as `Cargo.toml.orig`),
//! and dev-dependencies that are only a path are left out.
//!
//! Left out of the archive: `target/`, `Cargo.lock` (so a local build in a fixture directory
//! never changes the bytes; [`pack_dir_with_lock`] packs a given one) and hidden files.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml_edit::{DocumentMut, Item, TableLike};

use crate::FixtureError;
use crate::layout::{is_crate_name, is_version};

/// The mtime of every archive entry: 2020-01-01T00:00:00Z.
const FIXED_MTIME: u64 = 1_577_836_800;

/// One line of a crate's index file, with the fields crates.io writes, in its order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The crate name, as published.
    pub name: String,
    /// The version.
    pub vers: String,
    /// Dependencies of every kind.
    pub deps: Vec<IndexDep>,
    /// The sha256 of the `.crate` file, lowercase hex.
    pub cksum: String,
    /// Features in the original syntax.
    pub features: BTreeMap<String, Vec<String>>,
    /// Whether the version is yanked.
    pub yanked: bool,
    /// The `links` value of the manifest.
    pub links: Option<String>,
    /// The index format version: 2 (features2 may be present).
    pub v: u32,
    /// Features using `dep:` or `?/` syntax, which older cargo could not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features2: Option<BTreeMap<String, Vec<String>>>,
    /// The manifest's `rust-version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust_version: Option<String>,
}

/// A dependency in an index line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDep {
    /// The name the dependency is known by in the depending crate (the manifest key).
    pub name: String,
    /// The version requirement.
    pub req: String,
    /// Features enabled on it.
    pub features: Vec<String>,
    /// Whether it is optional.
    pub optional: bool,
    /// Whether its default features are on.
    pub default_features: bool,
    /// The `cfg(..)` or triple it is limited to.
    pub target: Option<String>,
    /// `normal`, `build` or `dev`.
    pub kind: String,
    /// `null`: the same registry (fixtures depend only on other fixtures).
    pub registry: Option<String>,
    /// The real crate name when the dependency is renamed.
    pub package: Option<String>,
}

/// A packed crate, ready to be stored and indexed.
#[derive(Clone, Debug)]
pub struct PackedCrate {
    /// The `.crate` bytes.
    pub bytes: Vec<u8>,
    /// Its index line (with `cksum` filled in).
    pub entry: IndexEntry,
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Packs the crate in `dir` as version `version`.
pub fn pack_dir(dir: &Path, version: &str) -> Result<PackedCrate, FixtureError> {
    pack_dir_with(dir, version, None)
}

/// Like [`pack_dir`], with `lock` packed as the crate's `Cargo.lock` (what `cargo package`
/// ships for crates with binaries).
pub fn pack_dir_with_lock(
    dir: &Path,
    version: &str,
    lock: &[u8],
) -> Result<PackedCrate, FixtureError> {
    pack_dir_with(dir, version, Some(lock))
}

fn pack_dir_with(
    dir: &Path,
    version: &str,
    lock: Option<&[u8]>,
) -> Result<PackedCrate, FixtureError> {
    if !is_version(version) || !version.contains('.') {
        return Err(FixtureError::Invalid(format!(
            "{version:?} is not a version"
        )));
    }
    let manifest_path = dir.join("Cargo.toml");
    let original = read_to_string(&manifest_path)?;
    let bad_manifest = |message: String| FixtureError::Manifest {
        path: manifest_path.clone(),
        message,
    };
    let mut doc: DocumentMut = original
        .parse()
        .map_err(|e: toml_edit::TomlError| bad_manifest(e.to_string()))?;

    let package = doc
        .get_mut("package")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| bad_manifest("no [package] table".into()))?;
    let name = package
        .get("name")
        .and_then(Item::as_str)
        .ok_or_else(|| bad_manifest("no package.name".into()))?
        .to_owned();
    if !is_crate_name(&name) {
        return Err(bad_manifest(format!("{name:?} is not a crate name")));
    }
    let links = package
        .get("links")
        .and_then(Item::as_str)
        .map(str::to_owned);
    let rust_version = package
        .get("rust-version")
        .and_then(Item::as_str)
        .map(str::to_owned);
    package.insert("version", toml_edit::value(version));

    let (features, features2) = read_features(&doc);
    let deps = normalize_dependencies(&mut doc).map_err(bad_manifest)?;
    let manifest = doc.to_string();

    let root = format!("{name}-{version}");
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for (relative, path, mode) in list_files(dir)? {
        let data = if relative == "Cargo.toml" {
            manifest.clone().into_bytes()
        } else {
            fs::read(&path).map_err(|source| FixtureError::Io { path, source })?
        };
        files.push((relative, data, mode));
    }
    files.push(("Cargo.toml.orig".into(), original.into_bytes(), 0o644));
    if let Some(lock) = lock {
        files.push(("Cargo.lock".into(), lock.to_vec(), 0o644));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let bytes = build_archive(&root, &files)?;
    let entry = IndexEntry {
        name,
        vers: version.to_owned(),
        deps,
        cksum: sha256_hex(&bytes),
        features,
        yanked: false,
        links,
        v: 2,
        features2,
        rust_version,
    };
    Ok(PackedCrate { bytes, entry })
}

fn read_to_string(path: &Path) -> Result<String, FixtureError> {
    fs::read_to_string(path).map_err(|source| FixtureError::Io {
        path: path.to_owned(),
        source,
    })
}

type FeatureMap = BTreeMap<String, Vec<String>>;

/// Splits `[features]` as crates.io does: entries using the newer `dep:` / `?/` syntax go to
/// `features2`.
fn read_features(doc: &DocumentMut) -> (FeatureMap, Option<FeatureMap>) {
    let mut features = FeatureMap::new();
    let mut features2 = FeatureMap::new();
    if let Some(table) = doc.get("features").and_then(Item::as_table_like) {
        for (feature, value) in table.iter() {
            let enables: Vec<String> = value
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let new_syntax = enables
                .iter()
                .any(|e| e.starts_with("dep:") || e.contains("?/"));
            let map = if new_syntax {
                &mut features2
            } else {
                &mut features
            };
            map.insert(feature.to_owned(), enables);
        }
    }
    let features2 = (!features2.is_empty()).then_some(features2);
    (features, features2)
}

/// Collects the index deps of every dependency table and rewrites the tables the way
/// `cargo package` does (no `path`; path-only dev-dependencies removed).
fn normalize_dependencies(doc: &mut DocumentMut) -> Result<Vec<IndexDep>, String> {
    const KINDS: [(&str, &str); 3] = [
        ("dependencies", "normal"),
        ("build-dependencies", "build"),
        ("dev-dependencies", "dev"),
    ];
    let mut deps = Vec::new();
    for (key, kind) in KINDS {
        if let Some(table) = doc.get_mut(key).and_then(Item::as_table_like_mut) {
            deps.extend(normalize_table(table, kind, None)?);
        }
    }
    if let Some(targets) = doc.get_mut("target").and_then(Item::as_table_like_mut) {
        for (target, item) in targets.iter_mut() {
            let Some(target_table) = item.as_table_like_mut() else {
                continue;
            };
            for (key, kind) in KINDS {
                if let Some(table) = target_table.get_mut(key).and_then(Item::as_table_like_mut) {
                    deps.extend(normalize_table(table, kind, Some(target.get()))?);
                }
            }
        }
    }
    deps.sort_by(|a, b| (&a.name, &a.kind).cmp(&(&b.name, &b.kind)));
    Ok(deps)
}

fn normalize_table(
    table: &mut dyn TableLike,
    kind: &str,
    target: Option<&str>,
) -> Result<Vec<IndexDep>, String> {
    let mut deps = Vec::new();
    let mut drop = Vec::new();
    for (name, item) in table.iter_mut() {
        let name = name.get().to_owned();
        if let Some(req) = item.as_str() {
            deps.push(index_dep(&name, req, kind, target, None));
            continue;
        }
        let Some(spec) = item.as_table_like_mut() else {
            return Err(format!(
                "dependency {name:?} is neither a string nor a table"
            ));
        };
        let has_path = spec.remove("path").is_some();
        let Some(req) = spec
            .get("version")
            .and_then(Item::as_str)
            .map(str::to_owned)
        else {
            if has_path && kind == "dev" {
                drop.push(name);
                continue;
            }
            return Err(format!("dependency {name:?} has no version"));
        };
        deps.push(index_dep(&name, &req, kind, target, Some(&*spec)));
    }
    for name in drop {
        table.remove(&name);
    }
    Ok(deps)
}

fn index_dep(
    name: &str,
    req: &str,
    kind: &str,
    target: Option<&str>,
    spec: Option<&dyn TableLike>,
) -> IndexDep {
    let bool_of = |key: &str, default: bool| {
        spec.and_then(|s| s.get(key))
            .and_then(Item::as_bool)
            .unwrap_or(default)
    };
    let features = spec
        .and_then(|s| s.get("features"))
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    IndexDep {
        name: name.to_owned(),
        req: req.to_owned(),
        features,
        optional: bool_of("optional", false),
        default_features: bool_of("default-features", true),
        target: target.map(str::to_owned),
        kind: kind.to_owned(),
        registry: None,
        package: spec
            .and_then(|s| s.get("package"))
            .and_then(Item::as_str)
            .map(str::to_owned),
    }
}

/// The files to pack: `(path relative to dir with '/', full path, mode)`.
fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf, u32)>, FixtureError> {
    use std::os::unix::fs::PermissionsExt;

    let mut out = Vec::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((path, relative)) = stack.pop() {
        let entries = fs::read_dir(&path).map_err(|source| FixtureError::Io {
            path: path.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| FixtureError::Io {
                path: path.clone(),
                source,
            })?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let child_relative = if relative.is_empty() {
                file_name.clone()
            } else {
                format!("{relative}/{file_name}")
            };
            let skipped = file_name.starts_with('.')
                || child_relative == "target"
                || child_relative == "Cargo.lock";
            if skipped {
                continue;
            }
            let meta = fs::symlink_metadata(entry.path()).map_err(|source| FixtureError::Io {
                path: entry.path(),
                source,
            })?;
            if meta.is_dir() {
                stack.push((entry.path(), child_relative));
            } else if meta.is_file() {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                out.push((child_relative, entry.path(), mode));
            }
        }
    }
    Ok(out)
}

/// A deterministic `.crate`: tar entries in the given order under `root/`, gzip'd without a
/// timestamp or file name.
pub fn build_archive(
    root: &str,
    files: &[(String, Vec<u8>, u32)],
) -> Result<Vec<u8>, FixtureError> {
    let archive_error = |source: std::io::Error| FixtureError::Io {
        path: PathBuf::from(format!("{root}.crate")),
        source,
    };
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (relative, data, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(FIXED_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, format!("{root}/{relative}"), data.as_slice())
            .map_err(archive_error)?;
    }
    let mut gz = tar.into_inner().map_err(archive_error)?;
    gz.flush().map_err(archive_error)?;
    gz.finish().map_err(archive_error)
}
