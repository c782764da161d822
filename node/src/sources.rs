//! Where a crate's dependencies may come from, checked before phase 1 runs.
//!
//! Phase 1 (`cargo fetch`) runs with the network, and a crate's manifest can make cargo contact
//! other hosts: git dependencies, `[patch]` and `[replace]` sections, dependencies from other
//! registries (`registry-index`). A published crate needs none of that: crates.io refuses git
//! and path dependencies and rewrites every dependency to a registry one. So before anything is
//! fetched, [`check_unpacked`] reads the unpacked crate's `Cargo.toml` (the normalized manifest
//! of a published crate) and, when it ships one, its `Cargo.lock`, and refuses:
//!
//! - `git` and `path` dependencies (a hostile `.crate` may point a path at host files), and
//!   dependencies naming a registry (`registry`) the node does not configure;
//! - a `registry-index` that is not the job's registry;
//! - `[patch]` and `[replace]` sections, and a `package.workspace` pointing outside the crate;
//! - a `Cargo.lock` package whose `source` is not the job's registry (`git+…`, another
//!   `registry+…` or `sparse+…`), or that is replaced.
//!
//! Every dependency table is read: `dependencies`, `dev-dependencies`, `build-dependencies`
//! (and cargo's old underscore spellings), their `target.<cfg>.` forms, and
//! `workspace.dependencies`. A refusal ([`Refused`]) is the crate's failure, named with the
//! offending dependency and its source. The node's registry proxy
//! ([`crate::registry_proxy`]) stops whatever gets past this check (a dependency's index line
//! may name another registry too).
//!
//! Which sources are the job's ([`JobRegistry`]): the job's registry itself, and crates.io.
//! For a crates.io job that is the same thing; for any other registry the node's cargo
//! configuration replaces crates.io by the job's registry, so a lock made against it names
//! crates.io (`registry+https://github.com/rust-lang/crates.io-index`) and still fetches from
//! the job's registry only.

use std::path::{Path, PathBuf};

use buildsrs_index::crates_io;

/// Where a package comes from, as cargo spells it in a lock file's `source` (`kind+url`) or a
/// manifest's `registry-index` (a plain URL is a git index). Parsed once, compared by kind and
/// URL (without a trailing slash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceId {
    /// A registry with a git index (`registry+URL`).
    Registry(String),
    /// A registry with a sparse index (`sparse+URL`).
    Sparse(String),
    /// A git repository (`git+URL`, with its `?branch=`, `#commit` and so on).
    Git(String),
    /// A directory (`path+URL`).
    Path(String),
    /// Anything else cargo might write.
    Other(String),
}

impl SourceId {
    /// Parses a lock file's `source` value.
    pub fn from_lock(source: &str) -> Self {
        let trimmed = |url: &str| url.trim_end_matches('/').to_owned();
        match source.split_once('+') {
            Some(("registry", url)) => Self::Registry(trimmed(url)),
            Some(("sparse", url)) => Self::Sparse(trimmed(url)),
            Some(("git", url)) => Self::Git(url.to_owned()),
            Some(("path", url)) => Self::Path(url.to_owned()),
            _ => Self::Other(source.to_owned()),
        }
    }

    /// Parses a registry URL as a manifest's `registry-index` or the node's configuration
    /// gives it: `sparse+URL`, `registry+URL`, or a plain URL (a git index).
    pub fn from_registry_url(url: &str) -> Self {
        if url.starts_with("sparse+") || url.starts_with("registry+") {
            Self::from_lock(url)
        } else {
            Self::Registry(url.trim_end_matches('/').to_owned())
        }
    }

    /// Whether this is a registry (either index protocol), not git or a path.
    pub fn is_registry(&self) -> bool {
        matches!(self, Self::Registry(_) | Self::Sparse(_))
    }
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry(url) => write!(f, "registry+{url}"),
            Self::Sparse(url) => write!(f, "sparse+{url}"),
            Self::Git(url) => write!(f, "git+{url}"),
            Self::Path(url) => write!(f, "path+{url}"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// The sources a job may fetch from: its registry, and crates.io (the same registry for a
/// crates.io job; replaced by the job's registry in the node's cargo configuration for any
/// other).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRegistry {
    /// The job's registry as the request names it.
    registry: String,
    /// What counts as the job's registry.
    accepted: Vec<SourceId>,
}

impl JobRegistry {
    /// For a job whose registry is `registry` (a crates-index URL, e.g.
    /// `sparse+https://index.crates.io/`).
    pub fn new(registry: &str) -> Self {
        let accepted = vec![
            SourceId::from_registry_url(registry),
            SourceId::from_registry_url(crates_io::INDEX),
            SourceId::from_registry_url(crates_io::GIT_INDEX),
        ];
        Self {
            registry: registry.to_owned(),
            accepted,
        }
    }

    /// The job's registry as the request names it.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Whether `source` is the job's registry.
    pub fn accepts(&self, source: &SourceId) -> bool {
        self.accepted.contains(source)
    }
}

/// Why a crate's sources were refused. The crate's doing: it ends the job as the crate's
/// failure, before anything is fetched.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A git dependency.
    #[error("dependency `{name}` in [{table}] is a git dependency ({url})")]
    Git {
        /// The dependency table (`dependencies`, `target."cfg(unix)".build-dependencies`, ...).
        table: String,
        /// The dependency's key.
        name: String,
        /// The repository.
        url: String,
    },
    /// A path dependency.
    #[error(
        "dependency `{name}` in [{table}] is a path dependency ({path}); a published crate has none"
    )]
    Path {
        /// The dependency table.
        table: String,
        /// The dependency's key.
        name: String,
        /// The path (or path base) it names.
        path: String,
    },
    /// A dependency from a registry that is not the job's.
    #[error(
        "dependency `{name}` in [{table}] comes from another registry ({index}), not {registry}"
    )]
    OtherRegistry {
        /// The dependency table.
        table: String,
        /// The dependency's key.
        name: String,
        /// Its `registry-index`.
        index: String,
        /// The job's registry.
        registry: String,
    },
    /// A dependency from a registry known by name (the node configures none).
    #[error(
        "dependency `{name}` in [{table}] comes from registry `{registry}`, which this node does not use"
    )]
    NamedRegistry {
        /// The dependency table.
        table: String,
        /// The dependency's key.
        name: String,
        /// The registry name.
        registry: String,
    },
    /// A `[patch]` or `[replace]` section.
    #[error("the manifest has a [{section}] section; a crate's sources cannot be overridden")]
    Override {
        /// `patch` or `replace` (with the patched source, when there is one).
        section: String,
    },
    /// `package.workspace`: a workspace root outside the crate.
    #[error("the manifest points at a workspace outside the crate ({path})")]
    Workspace {
        /// The path it names.
        path: String,
    },
    /// A lock file package from a source that is not the job's registry.
    #[error("Cargo.lock: package `{name} {version}` comes from {from}, not {registry}")]
    LockSource {
        /// The package.
        name: String,
        /// Its version.
        version: String,
        /// Its source.
        from: SourceId,
        /// The job's registry.
        registry: String,
    },
    /// A lock file package that is replaced by another (`replace = …`, old lock files).
    #[error("Cargo.lock: package `{name} {version}` is replaced by {replacement}")]
    LockReplace {
        /// The package.
        name: String,
        /// Its version.
        version: String,
        /// What replaces it.
        replacement: String,
    },
    /// The manifest or lock file could not be read as TOML, so its sources cannot be checked.
    #[error("{file} is not valid TOML: {message}")]
    Unreadable {
        /// `Cargo.toml` or `Cargo.lock`.
        file: &'static str,
        /// The parser's message (first line).
        message: String,
    },
}

/// Why the check could not be made: the node could not read the unpacked source. The node's
/// fault, never the crate's.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// What the OS said.
    pub source: std::io::Error,
}

/// Checks the unpacked crate in `dir` (the directory holding `Cargo.toml`): its manifest and,
/// when it ships one, its `Cargo.lock`. `Ok(Err(refused))` is the crate's failure.
pub fn check_unpacked(
    dir: &Path,
    registry: &JobRegistry,
) -> Result<Result<(), Refused>, ReadError> {
    let read = |name: &str| {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ReadError { path, source }),
        }
    };
    let Some(manifest) = read("Cargo.toml")? else {
        return Err(ReadError {
            path: dir.join("Cargo.toml"),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    if let Err(refused) = check_manifest(&manifest, registry) {
        return Ok(Err(refused));
    }
    match read("Cargo.lock")? {
        Some(lock) => Ok(check_lock(&lock, registry)),
        None => Ok(Ok(())),
    }
}

/// The dependency tables of a manifest (or of one `target.<cfg>` table), with cargo's old
/// underscore spellings, which it still reads.
const DEPENDENCY_TABLES: &[&str] = &[
    "dependencies",
    "dev-dependencies",
    "dev_dependencies",
    "build-dependencies",
    "build_dependencies",
];

/// Checks a manifest's text.
pub fn check_manifest(text: &str, registry: &JobRegistry) -> Result<(), Refused> {
    let manifest: toml::Table = text
        .parse()
        .map_err(|error| unreadable("Cargo.toml", error))?;
    for section in ["patch", "replace"] {
        if let Some(value) = manifest.get(section) {
            let first = value
                .as_table()
                .and_then(|t| t.keys().next())
                .map_or(String::new(), |key| format!(".{}", toml_key(key)));
            return Err(Refused::Override {
                section: format!("{section}{first}"),
            });
        }
    }
    for package in ["package", "project"] {
        if let Some(path) = manifest
            .get(package)
            .and_then(|p| p.get("workspace"))
            .and_then(toml::Value::as_str)
        {
            return Err(Refused::Workspace {
                path: path.to_owned(),
            });
        }
    }
    for table in DEPENDENCY_TABLES {
        check_dependencies(&manifest, table, table, registry)?;
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (cfg, target) in targets {
            let Some(target) = target.as_table() else {
                continue;
            };
            for table in DEPENDENCY_TABLES {
                let name = format!("target.{}.{table}", toml_key(cfg));
                check_dependencies(target, table, &name, registry)?;
            }
        }
    }
    if let Some(workspace) = manifest.get("workspace").and_then(toml::Value::as_table) {
        check_dependencies(
            workspace,
            "dependencies",
            "workspace.dependencies",
            registry,
        )?;
    }
    Ok(())
}

/// Checks `parent[key]`, a dependency table called `table` in messages.
fn check_dependencies(
    parent: &toml::Table,
    key: &str,
    table: &str,
    registry: &JobRegistry,
) -> Result<(), Refused> {
    let Some(dependencies) = parent.get(key).and_then(toml::Value::as_table) else {
        return Ok(());
    };
    for (name, spec) in dependencies {
        // A plain version requirement is a registry dependency of crates.io; anything but a
        // table or a string does not parse in cargo either.
        let Some(spec) = spec.as_table() else {
            continue;
        };
        let field = |key: &str| spec.get(key).map(value_text);
        let dependency = || (table.to_owned(), name.clone());
        if let Some(url) = field("git") {
            let (table, name) = dependency();
            return Err(Refused::Git { table, name, url });
        }
        if let Some(path) = field("path").or_else(|| field("base")) {
            let (table, name) = dependency();
            return Err(Refused::Path { table, name, path });
        }
        if let Some(index) = field("registry-index")
            && !registry.accepts(&SourceId::from_registry_url(&index))
        {
            let (table, name) = dependency();
            return Err(Refused::OtherRegistry {
                table,
                name,
                index,
                registry: registry.registry().to_owned(),
            });
        }
        if let Some(named) = field("registry")
            && named != "crates-io"
        {
            let (table, name) = dependency();
            return Err(Refused::NamedRegistry {
                table,
                name,
                registry: named,
            });
        }
    }
    Ok(())
}

/// Checks a lock file's text: every package (and unused patch) is from the job's registry or
/// is one of the crate's own packages (no source).
pub fn check_lock(text: &str, registry: &JobRegistry) -> Result<(), Refused> {
    let lock: toml::Table = text
        .parse()
        .map_err(|error| unreadable("Cargo.lock", error))?;
    let packages = lock
        .get("package")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten();
    let unused_patches = lock
        .get("patch")
        .and_then(|patch| patch.get("unused"))
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten();
    let root = lock.get("root").into_iter();
    for package in packages.chain(unused_patches).chain(root) {
        let field = |key: &str| package.get(key).map(value_text).unwrap_or_default();
        if let Some(replacement) = package.get("replace") {
            return Err(Refused::LockReplace {
                name: field("name"),
                version: field("version"),
                replacement: value_text(replacement),
            });
        }
        let Some(source) = package.get("source") else {
            continue;
        };
        let source = SourceId::from_lock(&value_text(source));
        if !(source.is_registry() && registry.accepts(&source)) {
            return Err(Refused::LockSource {
                name: field("name"),
                version: field("version"),
                from: source,
                registry: registry.registry().to_owned(),
            });
        }
    }
    Ok(())
}

/// A value as text: a string as it is, anything else in TOML syntax.
fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A table key as it would be written in a TOML header (`"cfg(unix)"`, `crates-io`).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

fn unreadable(file: &'static str, error: toml::de::Error) -> Refused {
    Refused::Unreadable {
        file,
        message: error.message().lines().next().unwrap_or("").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "sparse+http://127.0.0.1:7780/";

    fn fixture() -> JobRegistry {
        JobRegistry::new(FIXTURE)
    }

    fn crates_io_job() -> JobRegistry {
        JobRegistry::new(crates_io::INDEX)
    }

    fn manifest(extra: &str) -> String {
        format!(
            "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nlib-only = \"0.1\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n{extra}"
        )
    }

    #[test]
    fn a_published_manifest_with_registry_dependencies_passes() {
        for job in [fixture(), crates_io_job()] {
            assert_eq!(check_manifest(&manifest(""), &job), Ok(()));
            let extra = "[target.'cfg(unix)'.dependencies]\nlibc = { version = \"0.2\" }\n\
                         [build-dependencies]\ncc = \"1\"\n\
                         [dev-dependencies.tempfile]\nversion = \"3\"\n\
                         [workspace]\n";
            assert_eq!(check_manifest(&manifest(extra), &job), Ok(()));
        }
    }

    #[test]
    fn crates_io_and_the_jobs_own_registry_are_accepted_as_registry_index() {
        let crates_io_index = "[dependencies.a]\nversion = \"1\"\n\
                               registry-index = \"https://github.com/rust-lang/crates.io-index\"\n";
        let own = format!("[dependencies.b]\nversion = \"1\"\nregistry-index = \"{FIXTURE}\"\n");
        let named = "[dependencies.c]\nversion = \"1\"\nregistry = \"crates-io\"\n";
        for extra in [crates_io_index, own.as_str(), named] {
            assert_eq!(
                check_manifest(&format!("[package]\nname = \"x\"\n{extra}"), &fixture()),
                Ok(()),
                "{extra}"
            );
        }
        assert_eq!(
            check_manifest(
                "[dependencies.s]\nversion = \"1\"\nregistry-index = \"sparse+https://index.crates.io\"\n",
                &crates_io_job()
            ),
            Ok(())
        );
    }

    #[test]
    fn git_dependencies_are_refused_in_every_table() {
        let git = "{ git = \"http://127.0.0.1:9/evil.git\", version = \"0.1\" }";
        let cases = [
            (format!("[dependencies]\nevil = {git}\n"), "dependencies"),
            (
                format!("[dev-dependencies]\nevil = {git}\n"),
                "dev-dependencies",
            ),
            (
                format!("[build_dependencies]\nevil = {git}\n"),
                "build_dependencies",
            ),
            (
                format!("[target.'cfg(unix)'.build-dependencies]\nevil = {git}\n"),
                "target.\"cfg(unix)\".build-dependencies",
            ),
            (
                format!("[target.x86_64-unknown-linux-gnu.dependencies]\nevil = {git}\n"),
                "target.x86_64-unknown-linux-gnu.dependencies",
            ),
            (
                format!("[workspace.dependencies]\nevil = {git}\n"),
                "workspace.dependencies",
            ),
        ];
        for (text, table) in cases {
            let refused = check_manifest(&text, &fixture()).unwrap_err();
            assert_eq!(
                refused,
                Refused::Git {
                    table: table.into(),
                    name: "evil".into(),
                    url: "http://127.0.0.1:9/evil.git".into()
                },
                "{text}"
            );
            let reason = refused.to_string();
            assert!(
                reason.contains("`evil`") && reason.contains("http://127.0.0.1:9/evil.git"),
                "{reason}"
            );
        }
    }

    #[test]
    fn path_dependencies_and_path_bases_are_refused() {
        let refused = check_manifest(
            &manifest("[dependencies.keys]\npath = \"/home/node/.ssh\"\n"),
            &fixture(),
        );
        assert!(
            matches!(&refused, Err(Refused::Path { path, .. }) if path == "/home/node/.ssh"),
            "{refused:?}"
        );
        let refused = check_manifest(
            "[dependencies]\nx = { base = \"root\", version = \"1\" }\n",
            &fixture(),
        );
        assert!(matches!(refused, Err(Refused::Path { .. })), "{refused:?}");
    }

    #[test]
    fn another_registry_is_refused() {
        let other = "[dependencies]\nx = { version = \"1\", registry-index = \"sparse+http://127.0.0.1:9/\" }\n";
        let refused = check_manifest(other, &fixture()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "dependency `x` in [dependencies] comes from another registry \
                 (sparse+http://127.0.0.1:9/), not {FIXTURE}"
            )
        );
        // The fixture registry is not crates.io's; a git index elsewhere is not either.
        let fixture_from_crates_io =
            format!("[dependencies]\nx = {{ version = \"1\", registry-index = \"{FIXTURE}\" }}\n");
        assert!(check_manifest(&fixture_from_crates_io, &crates_io_job()).is_err());
        let git_index = "[dependencies]\nx = { version = \"1\", registry-index = \"https://example.com/index\" }\n";
        assert!(check_manifest(git_index, &crates_io_job()).is_err());
        let named = "[dependencies]\nx = { version = \"1\", registry = \"private\" }\n";
        assert!(matches!(
            check_manifest(named, &crates_io_job()),
            Err(Refused::NamedRegistry { .. })
        ));
    }

    #[test]
    fn patch_replace_and_an_outside_workspace_are_refused() {
        let patch = "[patch.crates-io]\nlib-only = { git = \"http://127.0.0.1:9/x.git\" }\n";
        assert_eq!(
            check_manifest(&manifest(patch), &fixture()),
            Err(Refused::Override {
                section: "patch.crates-io".into()
            })
        );
        let patch_url =
            "[patch.'https://github.com/rust-lang/crates.io-index']\nx = { path = \"x\" }\n";
        assert!(matches!(
            check_manifest(&manifest(patch_url), &fixture()),
            Err(Refused::Override { .. })
        ));
        let replace = "[replace]\n\"lib-only:0.1.0\" = { path = \"/etc\" }\n";
        assert!(matches!(
            check_manifest(&manifest(replace), &fixture()),
            Err(Refused::Override { section }) if section.starts_with("replace")
        ));
        let workspace = "[package]\nname = \"x\"\nworkspace = \"../..\"\n";
        assert!(matches!(
            check_manifest(workspace, &fixture()),
            Err(Refused::Workspace { .. })
        ));
    }

    #[test]
    fn a_manifest_that_is_not_toml_is_refused() {
        assert!(matches!(
            check_manifest("[package\nname = 1", &fixture()),
            Err(Refused::Unreadable {
                file: "Cargo.toml",
                ..
            })
        ));
    }

    fn lock(source: &str) -> String {
        format!(
            "version = 4\n\n[[package]]\nname = \"demo\"\nversion = \"0.1.0\"\n\
             dependencies = [\"lib-only\"]\n\n[[package]]\nname = \"lib-only\"\n\
             version = \"0.1.0\"\nsource = \"{source}\"\nchecksum = \"00\"\n"
        )
    }

    #[test]
    fn a_lock_from_the_jobs_registry_passes() {
        for job in [fixture(), crates_io_job()] {
            assert_eq!(check_lock(&lock(crates_io::GIT_INDEX), &job), Ok(()));
            assert_eq!(
                check_lock(&lock("sparse+https://index.crates.io/"), &job),
                Ok(())
            );
        }
        assert_eq!(check_lock(&lock(FIXTURE), &fixture()), Ok(()));
        assert_eq!(
            check_lock("version = 4\n[[package]]\nname = \"alone\"\n", &fixture()),
            Ok(())
        );
    }

    #[test]
    fn a_lock_with_git_or_another_registry_is_refused() {
        let git = "git+http://127.0.0.1:9/lib-only.git?branch=main#0123abcd";
        assert_eq!(
            check_lock(&lock(git), &fixture()).unwrap_err().to_string(),
            format!("Cargo.lock: package `lib-only 0.1.0` comes from {git}, not {FIXTURE}")
        );
        for source in [
            "sparse+http://127.0.0.1:9/",
            "registry+https://example.com/index",
            "path+file:///etc",
            "weird",
        ] {
            assert!(
                matches!(
                    check_lock(&lock(source), &fixture()),
                    Err(Refused::LockSource { .. })
                ),
                "{source}"
            );
        }
        // The fixture registry is not a source of a crates.io job.
        assert!(check_lock(&lock(FIXTURE), &crates_io_job()).is_err());
        let unused_patch = format!(
            "{}\n[[patch.unused]]\nname = \"x\"\nversion = \"1.0.0\"\nsource = \"{git}\"\n",
            lock(crates_io::GIT_INDEX)
        );
        assert!(check_lock(&unused_patch, &fixture()).is_err());
        let replaced = "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\
                        source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                        replace = \"a 1.0.0 (git+http://127.0.0.1:9/a#00)\"\n";
        assert!(matches!(
            check_lock(replaced, &fixture()),
            Err(Refused::LockReplace { .. })
        ));
        assert!(matches!(
            check_lock("[[package]\n", &fixture()),
            Err(Refused::Unreadable {
                file: "Cargo.lock",
                ..
            })
        ));
    }

    #[test]
    fn source_ids_parse_once_and_ignore_a_trailing_slash() {
        assert_eq!(
            SourceId::from_lock("sparse+https://index.crates.io/"),
            SourceId::from_registry_url("sparse+https://index.crates.io")
        );
        assert_eq!(
            SourceId::from_registry_url("https://github.com/rust-lang/crates.io-index"),
            SourceId::from_lock(crates_io::GIT_INDEX)
        );
        assert!(!SourceId::from_lock("git+https://x/y").is_registry());
        assert_eq!(
            SourceId::from_lock("git+https://x/y#0a").to_string(),
            "git+https://x/y#0a"
        );
    }

    #[test]
    fn check_unpacked_reads_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), manifest("")).unwrap();
        assert_eq!(check_unpacked(dir.path(), &fixture()).unwrap(), Ok(()));
        std::fs::write(dir.path().join("Cargo.lock"), lock("git+http://h/r#1")).unwrap();
        assert!(matches!(
            check_unpacked(dir.path(), &fixture()).unwrap(),
            Err(Refused::LockSource { .. })
        ));
        assert!(check_unpacked(&dir.path().join("missing"), &fixture()).is_err());
    }
}
