//! Test scenes for the builder node: a fixture registry and nodes with their own data dirs,
//! building real fixture crates with real cargo in the real sandbox.

#![allow(dead_code, clippy::unwrap_used)] // Each test binary uses a subset; fixtures fail loudly.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use buildsrs_fixture_registry::{FixtureRegistry, Published};
use buildsrs_node::datadir::{DataDir, NodeConfig};
use buildsrs_node::job::JobFields;
use buildsrs_node::pipeline::{BuildRequest, JobReport, Pipeline};
use buildsrs_node::state::NodeState;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// A node in a temp dir.
pub struct TestNode {
    pub dir: DataDir,
    pub pipeline: Pipeline,
    pub state: Arc<NodeState>,
    _temp: tempfile::TempDir,
}

impl TestNode {
    /// A node with the default config, changed by `configure`.
    pub async fn new(configure: impl FnOnce(&mut NodeConfig)) -> Result<Self> {
        let temp = tempfile::tempdir()?;
        let (dir, _) = DataDir::init(&temp.path().join("node"))?;
        let mut config = dir.config()?;
        configure(&mut config);
        std::fs::write(dir.config_path(), toml::to_string(&config)?)?;
        Self::open(dir, temp).await
    }

    /// The same data dir opened again, as a restarted node would (this one's lock is
    /// released first).
    pub async fn restart(self) -> Result<Self> {
        let TestNode {
            dir,
            pipeline,
            state,
            _temp,
        } = self;
        drop(pipeline);
        drop(state);
        Self::open(dir, _temp).await
    }

    /// Starts a pipeline over `dir` the way the node does: the config decides whether cgroups
    /// are used; the lock is taken before the state is opened.
    async fn open(dir: DataDir, temp: tempfile::TempDir) -> Result<Self> {
        let (sandbox, _) = buildsrs_node::datadir::sandbox_for(&dir, &dir.config()?, false).await?;
        let lock = dir.lock()?;
        let (state, _) = NodeState::open(&dir.state_path())?;
        let state = Arc::new(state);
        let pipeline = Pipeline::new(dir.clone(), sandbox, state.clone(), lock).await?;
        Ok(Self {
            dir,
            pipeline,
            state,
            _temp: temp,
        })
    }

    /// Builds a published version from `registry`.
    pub async fn build(
        &self,
        registry: &FixtureRegistry,
        published: &Published,
    ) -> Result<JobReport> {
        let request = self.request(registry, published).await?;
        self.pipeline.build(&request, &|_| {}).await
    }

    /// The request for a published fixture, as a coordinator following `registry` would send
    /// it, accepted by this node.
    pub async fn request(
        &self,
        registry: &FixtureRegistry,
        published: &Published,
    ) -> Result<BuildRequest> {
        let fields = JobFields {
            crate_name: &published.name,
            version: &published.version,
            target: TARGET,
            source_sha256: &published.cksum,
            download_url: &published.download_url,
        };
        Ok(self
            .pipeline
            .accept_fields(&fields, &registry.registry(), None)
            .await?)
    }

    /// The request a coordinator following crates.io would send for `name` `version`,
    /// accepted by this node (the crates.io test group and the reproducibility bench only).
    pub async fn crates_io_request(&self, name: &str, version: &str) -> Result<BuildRequest> {
        use anyhow::Context as _;
        use buildsrs_fixture_registry::crates_io;
        let found = crates_io::versions(name)
            .await
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .find(|v| v.version == version)
            .with_context(|| format!("{name} {version} is not on crates.io"))?;
        let cksum = found.cksum.to_hex();
        let fields = JobFields {
            crate_name: name,
            version,
            target: TARGET,
            source_sha256: &cksum,
            download_url: &found.download_url,
        };
        Ok(self
            .pipeline
            .accept_fields(&fields, &buildsrs_keys::RegistryUrl::crates_io(), None)
            .await?)
    }
}

/// Unpacks the archive a build made (`NAME-VERSION-TARGET/`) into a temp dir, runs
/// `bin/BINARY` with `args` and `input` on stdin, and returns what it printed. Panics when it
/// does not run or fails.
pub fn run_built(
    report: &JobReport,
    name: &str,
    version: &str,
    binary: &str,
    args: &[&str],
    input: &str,
) -> String {
    use std::io::Write;
    let out = tempfile::tempdir().unwrap();
    let unpacked = buildsrs_archive::unpack_tar_gz(
        std::fs::File::open(report.archive().expect("an archive")).unwrap(),
        out.path(),
        &format!("{name}-{version}-{TARGET}"),
        buildsrs_archive::Limits::CRATE_SOURCE,
    )
    .unwrap();
    let mut child = std::process::Command::new(unpacked.root.join("bin").join(binary))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{binary}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Copies a fixture crate to a temp dir so a test can add files (ports, paths) to it.
pub fn fixture_copy(name: &str, into: &Path) -> Result<std::path::PathBuf> {
    let from = buildsrs_fixture_registry::fixtures_dir().join(name);
    let to = into.join(name);
    copy_dir(&from, &to)?;
    Ok(to)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&path, &to.join(entry.file_name()))?;
            }
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
