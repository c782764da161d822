//! A local crates.io-style registry for tests: a sparse index and real `.crate` files in a
//! temporary directory, served over HTTP on `127.0.0.1`.
//!
//! Every test that needs a registry (the index follower's, the builder node's, end-to-end
//! runs) starts one of these instead of touching the network. The crates it publishes are
//! built from the small real crates kept in `fixtures/` (see its README), so builders can
//! actually compile them; [`FixtureRegistry::publish_raw`] takes hand-made archives and
//! wrong checksums for the tests of what must be refused.
//!
//! ```no_run
//! # async fn demo() -> Result<(), buildsrs_fixture_registry::FixtureError> {
//! use buildsrs_fixture_registry::FixtureRegistry;
//! let registry = FixtureRegistry::start().await?;
//! let published = registry.publish("hello-bin", "0.1.0")?;
//! registry.yank("hello-bin", "0.1.0")?;
//! // point a follower at registry.index_url(), a downloader at published.download_url
//! registry.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Layout of [`FixtureRegistry::dir`]:
//! - `index/config.json`, `index/1/a`, `index/2/ab`, `index/3/a/abc`, `index/se/rd/serde`:
//!   the index, served at `/`; with [`ServeOptions::git`] also a git work tree.
//! - `crates/NAME/NAME-VERSION.crate`: served at `/dl/NAME/VERSION/download`, the `dl`
//!   template in `config.json`.

pub mod crates_io;
mod git;
pub mod layout;
pub mod pack;
mod server;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use pack::{IndexDep, IndexEntry, PackedCrate, pack_dir, pack_dir_with_lock, sha256_hex};
pub use server::{RequestRecord, ServeOptions};

use git::GitIndexRepo;
use layout::{index_path, is_crate_name, is_version};
use server::{Server, Shared, lock};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server could not bind its address.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A fixture's `Cargo.toml` is not one we can pack.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// There is no fixture crate of that name.
    #[error("no fixture crate named {0:?} in {dir}", dir = fixtures_dir().display())]
    NoSuchFixture(String),
    /// A name or version is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The version is already in the index.
    #[error("{name} {version} is already published")]
    AlreadyPublished {
        /// The crate.
        name: String,
        /// The version.
        version: String,
    },
    /// The version is not in the index.
    #[error("{name} {version} is not published")]
    NotPublished {
        /// The crate.
        name: String,
        /// The version.
        version: String,
    },
    /// A git command failed.
    #[error("git index: {0}")]
    Git(String),
}

/// The directory holding the fixture crates (`crates/fixture-registry/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// What [`FixtureRegistry::publish`] put in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The crate name, as in its manifest.
    pub name: String,
    /// The version.
    pub version: String,
    /// The sha256 written into the index, lowercase hex (for `publish_raw` with an override,
    /// deliberately not the archive's).
    pub cksum: String,
    /// The size of the `.crate` file.
    pub size: usize,
    /// Where the `.crate` file is served.
    pub download_url: String,
}

/// Index writes happen one at a time: they read, change and replace whole files, tick the
/// logical clock and make git commits.
#[derive(Debug)]
struct Writer {
    tick: u64,
    git: Option<GitIndexRepo>,
}

/// A running fixture registry. The server stops on [`FixtureRegistry::shutdown`] or drop;
/// the directory is removed on drop.
#[derive(Debug)]
pub struct FixtureRegistry {
    root: tempfile::TempDir,
    addr: SocketAddr,
    shared: Arc<Shared>,
    writer: Mutex<Writer>,
    server: Option<Server>,
}

impl FixtureRegistry {
    /// Starts an empty registry on `127.0.0.1` with an ephemeral port, sending no validators.
    pub async fn start() -> Result<Self, FixtureError> {
        Self::start_with(ServeOptions::default()).await
    }

    /// Starts an empty registry on `127.0.0.1` with an ephemeral port.
    pub async fn start_with(options: ServeOptions) -> Result<Self, FixtureError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Starts an empty registry on `addr` (a test that first points a client at a port with
    /// nothing listening, then brings the registry up there).
    pub async fn start_on(addr: SocketAddr, options: ServeOptions) -> Result<Self, FixtureError> {
        let root = tempfile::Builder::new()
            .prefix("buildsrs-fixture-registry-")
            .tempdir()
            .map_err(|source| FixtureError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let index_dir = root.path().join("index");
        let crates_dir = root.path().join("crates");
        for dir in [&index_dir, &crates_dir] {
            fs::create_dir_all(dir).map_err(|source| FixtureError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let git = options.git;
        let shared = Arc::new(Shared::new(index_dir.clone(), crates_dir, options));
        let (server, addr) = Server::start(addr, shared.clone())
            .await
            .map_err(|source| FixtureError::Bind { addr, source })?;

        let registry = Self {
            root,
            addr,
            shared,
            writer: Mutex::new(Writer { tick: 0, git: None }),
            server: Some(server),
        };
        let dl = format!("{}dl/{{crate}}/{{version}}/download", registry.base_url());
        registry.write_config(&dl, false)?;
        if git {
            let mut writer = lock(&registry.writer);
            writer.git = Some(GitIndexRepo::init(&index_dir, writer.tick)?);
        }
        Ok(registry)
    }

    /// The index URL to give crates-index or cargo: `sparse+http://127.0.0.1:PORT/`.
    pub fn index_url(&self) -> String {
        format!("sparse+{}", self.base_url())
    }

    /// The registry as statements and node configurations name it: [`Self::index_url`].
    pub fn registry(&self) -> buildsrs_keys::RegistryUrl {
        buildsrs_keys::RegistryUrl::from_index_url(&self.index_url())
            .expect("a loopback sparse index URL is a registry URL")
    }

    /// The plain HTTP root: `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry's directory (see the module docs for its layout).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// The index root inside [`Self::dir`].
    pub fn index_dir(&self) -> &Path {
        &self.shared.index_dir
    }

    /// Where `name` `version` is downloaded from, as the `dl` template says.
    pub fn download_url(&self, name: &str, version: &str) -> String {
        format!("{}dl/{name}/{version}/download", self.base_url())
    }

    /// The `file://` URL of the git index, when started with [`ServeOptions::git`].
    pub fn git_url(&self) -> Option<String> {
        lock(&self.writer)
            .git
            .as_ref()
            .map(|_| format!("file://{}", self.shared.index_dir.display()))
    }

    /// The commit the git index's `master` points at, when started with [`ServeOptions::git`].
    pub fn git_head(&self) -> Result<Option<String>, FixtureError> {
        lock(&self.writer)
            .git
            .as_ref()
            .map(GitIndexRepo::head)
            .transpose()
    }

    /// Changes how the server answers from now on ([`ServeOptions::git`] is ignored).
    pub fn set_options(&self, options: ServeOptions) {
        *lock(&self.shared.options) = options;
    }

    /// How the server answers.
    pub fn options(&self) -> ServeOptions {
        lock(&self.shared.options).clone()
    }

    /// Every request answered since the start or the last [`Self::clear_requests`].
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Forgets the logged requests and the in-flight maximum.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// The most requests ever in flight at once since the start or the last
    /// [`Self::clear_requests`].
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight()
    }

    /// Stops serving, keeping the contents; [`Self::resume`] serves again on the same port.
    pub async fn pause(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Serves again on the same address after [`Self::pause`].
    pub async fn resume(&mut self) -> Result<(), FixtureError> {
        if self.server.is_none() {
            let (server, _) = Server::start(self.addr, self.shared.clone())
                .await
                .map_err(|source| FixtureError::Bind {
                    addr: self.addr,
                    source,
                })?;
            self.server = Some(server);
        }
        Ok(())
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        self.pause().await;
    }

    /// Replaces the `dl` template in `config.json`, e.g. to test `{prefix}` markers. The
    /// server still serves `.crate` files only at `/dl/NAME/VERSION/download`.
    pub fn set_dl_template(&self, dl: &str) -> Result<(), FixtureError> {
        self.write_config(dl, true)
    }

    fn write_config(&self, dl: &str, commit: bool) -> Result<(), FixtureError> {
        let config = serde_json::json!({ "dl": dl, "api": null });
        let text = format!("{config}\n");
        self.change_index("config.json", &text, commit.then_some("Update config.json"))
    }

    /// Packs `fixtures/<fixture>` as `version`, stores the `.crate` and appends its index line.
    pub fn publish(&self, fixture: &str, version: &str) -> Result<Published, FixtureError> {
        let dir = fixtures_dir().join(fixture);
        if !is_crate_name(fixture) || !dir.join("Cargo.toml").is_file() {
            return Err(FixtureError::NoSuchFixture(fixture.to_owned()));
        }
        self.publish_dir(&dir, version)
    }

    /// Like [`Self::publish`], with a `Cargo.lock` in the `.crate`, as `cargo package` ships
    /// for crates with binaries. The lock is made by `cargo generate-lockfile` against this
    /// registry, so the fixture's dependencies must be published first.
    pub async fn publish_locked(
        &self,
        fixture: &str,
        version: &str,
    ) -> Result<Published, FixtureError> {
        let dir = fixtures_dir().join(fixture);
        if !is_crate_name(fixture) || !dir.join("Cargo.toml").is_file() {
            return Err(FixtureError::NoSuchFixture(fixture.to_owned()));
        }
        let lock = self.generate_lock(&pack_dir(&dir, version)?).await?;
        let packed = pack_dir_with_lock(&dir, version, &lock)?;
        self.store(packed.entry, &packed.bytes)
    }

    /// Resolves a packed crate's dependencies against this registry: its `Cargo.lock`.
    async fn generate_lock(&self, packed: &PackedCrate) -> Result<Vec<u8>, FixtureError> {
        let scratch = tempfile::tempdir().map_err(|source| FixtureError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FixtureError::Io { path, source }
        };
        tar::Archive::new(flate2::read::GzDecoder::new(packed.bytes.as_slice()))
            .unpack(scratch.path())
            .map_err(io(scratch.path()))?;
        let home = scratch.path().join("cargo-home");
        fs::create_dir_all(&home).map_err(io(&home))?;
        let config = format!(
            "[source.crates-io]\nreplace-with = \"fixture\"\n\
             [source.fixture]\nregistry = \"{}\"\n",
            self.index_url()
        );
        fs::write(home.join("config.toml"), config).map_err(io(&home))?;
        let root = scratch
            .path()
            .join(format!("{}-{}", packed.entry.name, packed.entry.vers));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = tokio::process::Command::new(cargo)
            .args(["generate-lockfile", "--quiet"])
            .current_dir(&root)
            .env("CARGO_HOME", &home)
            .output()
            .await
            .map_err(io(&root))?;
        if !output.status.success() {
            return Err(FixtureError::Invalid(format!(
                "cargo generate-lockfile for {}: {}",
                packed.entry.name,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let lock = root.join("Cargo.lock");
        fs::read(&lock).map_err(io(&lock))
    }

    /// Like [`Self::publish`] for a crate directory anywhere (e.g. written by a test).
    pub fn publish_dir(&self, dir: &Path, version: &str) -> Result<Published, FixtureError> {
        let packed = pack_dir(dir, version)?;
        self.store(packed.entry, &packed.bytes)
    }

    /// Publishes a crate packed by [`pack_dir`] or [`pack_dir_with_lock`] with its index line
    /// as given: a test may change the line first (e.g. a dependency from another registry,
    /// which only a hostile index would show).
    pub fn publish_packed(&self, packed: PackedCrate) -> Result<Published, FixtureError> {
        self.store(packed.entry, &packed.bytes)
    }

    /// Publishes hand-made `.crate` bytes (e.g. a malicious archive). The index line has no
    /// dependencies or features; its `cksum` is the archive's sha256 unless overridden.
    pub fn publish_raw(
        &self,
        name: &str,
        version: &str,
        crate_bytes: &[u8],
        cksum_override: Option<String>,
    ) -> Result<Published, FixtureError> {
        let entry = IndexEntry {
            name: name.to_owned(),
            vers: version.to_owned(),
            deps: Vec::new(),
            cksum: cksum_override.unwrap_or_else(|| sha256_hex(crate_bytes)),
            features: Default::default(),
            yanked: false,
            links: None,
            v: 2,
            features2: None,
            rust_version: None,
        };
        self.store(entry, crate_bytes)
    }

    fn store(&self, entry: IndexEntry, crate_bytes: &[u8]) -> Result<Published, FixtureError> {
        let (name, version) = (entry.name.clone(), entry.vers.clone());
        check_name_version(&name, &version)?;
        let relative = relative_index_path(&name)?;
        let existing = self.read_index(&relative)?;
        let taken = existing
            .lines()
            .filter_map(|line| serde_json::from_str::<IndexEntry>(line).ok())
            .any(|e| e.vers == version);
        if taken {
            return Err(FixtureError::AlreadyPublished { name, version });
        }

        let crate_dir = self.dir().join("crates").join(&name);
        let crate_path = crate_dir.join(format!("{name}-{version}.crate"));
        fs::create_dir_all(&crate_dir)
            .and_then(|()| fs::write(&crate_path, crate_bytes))
            .map_err(|source| FixtureError::Io {
                path: crate_path,
                source,
            })?;

        let line = serde_json::to_string(&entry)
            .map_err(|e| FixtureError::Invalid(format!("index line for {name}: {e}")))?;
        let text = format!("{existing}{line}\n");
        self.change_index(&relative, &text, Some(&format!("Publish {name} {version}")))?;
        Ok(Published {
            download_url: self.download_url(&name, &version),
            name,
            version,
            cksum: entry.cksum,
            size: crate_bytes.len(),
        })
    }

    /// Marks `name` `version` yanked. Yanking a yanked version changes nothing.
    pub fn yank(&self, name: &str, version: &str) -> Result<(), FixtureError> {
        self.set_yanked(name, version, true)
    }

    /// Marks `name` `version` not yanked.
    pub fn unyank(&self, name: &str, version: &str) -> Result<(), FixtureError> {
        self.set_yanked(name, version, false)
    }

    fn set_yanked(&self, name: &str, version: &str, yanked: bool) -> Result<(), FixtureError> {
        check_name_version(name, version)?;
        let relative = relative_index_path(name)?;
        let existing = self.read_index(&relative)?;
        let mut found = false;
        let mut changed = false;
        let mut text = String::with_capacity(existing.len());
        for line in existing.lines() {
            match serde_json::from_str::<IndexEntry>(line) {
                Ok(mut entry) if entry.vers == version => {
                    found = true;
                    changed |= entry.yanked != yanked;
                    entry.yanked = yanked;
                    let line = serde_json::to_string(&entry)
                        .map_err(|e| FixtureError::Invalid(format!("index line: {e}")))?;
                    text.push_str(&line);
                }
                // Lines that are not ours to touch (e.g. deliberately malformed) stay as they are.
                _ => text.push_str(line),
            }
            text.push('\n');
        }
        if !found {
            return Err(FixtureError::NotPublished {
                name: name.to_owned(),
                version: version.to_owned(),
            });
        }
        if changed {
            let verb = if yanked { "Yank" } else { "Unyank" };
            self.change_index(&relative, &text, Some(&format!("{verb} {name} {version}")))?;
        }
        Ok(())
    }

    /// Appends `line` as it is to `name`'s index file: for malformed-line tests.
    pub fn append_index_line(&self, name: &str, line: &str) -> Result<(), FixtureError> {
        if !is_crate_name(name) || line.contains('\n') {
            return Err(FixtureError::Invalid(format!(
                "{name:?}: need a crate name and a single line"
            )));
        }
        let relative = relative_index_path(name)?;
        let existing = self.read_index(&relative)?;
        let text = format!("{existing}{line}\n");
        self.change_index(&relative, &text, Some(&format!("Append a line for {name}")))
    }

    /// The index file's current text, empty if there is none yet.
    fn read_index(&self, relative: &str) -> Result<String, FixtureError> {
        let path = self.shared.index_dir.join(relative);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(FixtureError::Io { path, source }),
        }
    }

    /// Replaces an index file atomically (the server never sees half a file), ticks the
    /// logical clock for its Last-Modified, and commits when keeping a git index.
    fn change_index(
        &self,
        relative: &str,
        text: &str,
        commit: Option<&str>,
    ) -> Result<(), FixtureError> {
        let mut writer = lock(&self.writer);
        writer.tick += 1;
        let path = self.shared.index_dir.join(relative);
        let io_error = |source| FixtureError::Io {
            path: path.clone(),
            source,
        };
        let parent = path.parent().unwrap_or(&self.shared.index_dir);
        fs::create_dir_all(parent).map_err(io_error)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(io_error)?;
        temp.write_all(text.as_bytes()).map_err(io_error)?;
        temp.persist(&path).map_err(|e| io_error(e.error))?;
        lock(&self.shared.modified).insert(relative.to_owned(), writer.tick);
        if let (Some(git), Some(message)) = (&writer.git, commit) {
            git.commit(message, writer.tick)?;
        }
        Ok(())
    }
}

fn check_name_version(name: &str, version: &str) -> Result<(), FixtureError> {
    if !is_crate_name(name) {
        return Err(FixtureError::Invalid(format!(
            "{name:?} is not a crate name"
        )));
    }
    if !is_version(version) {
        return Err(FixtureError::Invalid(format!(
            "{version:?} is not a version"
        )));
    }
    Ok(())
}

fn relative_index_path(name: &str) -> Result<String, FixtureError> {
    index_path(name).ok_or_else(|| FixtureError::Invalid(format!("{name:?} is not a crate name")))
}
