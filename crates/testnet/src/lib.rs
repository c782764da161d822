//! Whole buildsrs networks on loopback, for tests: a fixture registry, a coordinator, and
//! builder nodes, each a real in-process peer with its own temp data dir, talking libp2p and
//! iroh-blobs over 127.0.0.1 and building real fixture crates in the real sandbox.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use buildsrs_testnet::{Testnet, TestnetOptions};
//! let options = TestnetOptions { watch: vec!["hello-bin".into()], ..Default::default() };
//! let net = Testnet::start(options).await?;
//! net.registry.publish("hello-bin", "0.1.0")?;
//! net.wait_until("hello-bin verified", |s| s.verified >= 1).await?;
//! net.stop().await?;
//! # Ok(()) }
//! ```
//!
//! Nodes and the coordinator can be stopped and started again on the same data dirs, which
//! is how restart tests are written.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buildsrs_coordinator::{Config, IndexSource};
use buildsrs_fixture_registry::FixtureRegistry;
use buildsrs_keys::{Identity, Keyring};
use buildsrs_node::datadir::{DataDir, NodeConfig};
use buildsrs_node::run::RunOptions;
use buildsrs_storage::StorageConfig;
use buildsrs_store::{Policy, QueueStats, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The target every test builds for (the only one installed here).
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// How a test network is set up.
#[derive(Debug)]
pub struct TestnetOptions {
    /// Builder nodes to create.
    pub nodes: usize,
    /// How many of them to start at once (the others with [`Testnet::start_node`]).
    pub start_nodes: usize,
    /// Quorum.
    pub quorum: u32,
    /// A Postgres URL for the coordinator's store; `None` means SQLite.
    pub database_url: Option<String>,
    /// Object storage; `None` means a directory in the coordinator's data dir.
    pub storage: Option<StorageConfig>,
    /// Approve every builder at hello.
    pub auto_approve: bool,
    /// Changes node `i`'s configuration before it starts.
    pub configure_node: fn(usize, &mut NodeConfig),
    /// Lease duration (short, so that vanished nodes' tasks come back quickly).
    pub lease_duration: Duration,
    /// Leases beyond the results still wanted, per task (the store's `extra_leases`).
    pub extra_leases: u32,
    /// Crates the coordinator watches (publish their versions before or after the start).
    pub watch: Vec<String>,
    /// The registry the coordinator follows and the nodes build from, as a crates-index URL;
    /// `None` means the network's own fixture registry. Only the crates.io test group sets
    /// it (to `sparse+https://index.crates.io/`).
    pub index: Option<String>,
}

impl Default for TestnetOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            start_nodes: 3,
            quorum: 2,
            database_url: None,
            storage: None,
            auto_approve: true,
            configure_node: |_, _| {},
            lease_duration: Duration::from_secs(30),
            watch: Vec::new(),
            extra_leases: Policy::default().extra_leases,
            index: None,
        }
    }
}

/// A running coordinator.
#[derive(Debug)]
pub struct RunningCoordinator {
    stop: CancellationToken,
    task: JoinHandle<Result<()>>,
}

/// A running node.
#[derive(Debug)]
pub struct RunningNode {
    stop: CancellationToken,
    task: JoinHandle<Result<()>>,
}

/// A node's files and, when running, its task.
#[derive(Debug)]
pub struct TestNode {
    /// Its data dir.
    pub dir: DataDir,
    /// Its identity.
    pub identity: Identity,
    /// Its task, while running.
    pub running: Option<RunningNode>,
}

/// A network on loopback.
#[derive(Debug)]
pub struct Testnet {
    /// The fixture registry the coordinator follows and nodes download from (unless
    /// [`TestnetOptions::index`] names another).
    pub registry: FixtureRegistry,
    /// The coordinator's configuration (its data dir persists across restarts).
    pub config: Config,
    /// The coordinator, while running.
    pub coordinator: Option<RunningCoordinator>,
    /// The nodes.
    pub nodes: Vec<TestNode>,
    /// A store handle for looking (the coordinator opens its own).
    pub store: Store,
    options: TestnetOptions,
    _temp: tempfile::TempDir,
}

/// Logs to the test output when `BUILDSRS_LOG` is set (e.g. `BUILDSRS_LOG=info`).
pub fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("BUILDSRS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

impl Testnet {
    /// Starts a registry, a coordinator and `options.nodes` nodes; returns once every node
    /// has been welcomed by the coordinator.
    pub async fn start(options: TestnetOptions) -> Result<Self> {
        init_logging();
        let temp = tempfile::tempdir()?;
        let registry = FixtureRegistry::start().await?;
        let mut config = Config::new(temp.path().join("coordinator"));
        config.database_url.clone_from(&options.database_url);
        let index = options
            .index
            .clone()
            .unwrap_or_else(|| registry.index_url());
        config.index = IndexSource::Sparse(index.clone());
        // The fixture registry may be polled hard; a real registry is asked politely.
        config.poll_interval = if options.index.is_some() {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(300)
        };
        config.expiry_interval = Duration::from_millis(500);
        config.toolchains = vec![buildsrs_keys::cli::detect_toolchain()?.release.to_string()];
        config.policy = Policy {
            quorum: options.quorum,
            lease_duration: options.lease_duration,
            backoff_base: Duration::from_millis(200),
            extra_leases: options.extra_leases,
            ..Policy::default()
        };
        // A fixed port, so that a restarted coordinator is found where the nodes dial.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        config.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse()?];
        config.auto_approve = options.auto_approve;
        config.watch.clone_from(&options.watch);
        config.storage.clone_from(&options.storage);
        config.http = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::open(&config.store_config()?).await?;
        let mut net = Self {
            registry,
            config,
            coordinator: None,
            nodes: Vec::new(),
            store,
            options,
            _temp: temp,
        };
        net.start_coordinator().await?;
        for i in 0..net.options.nodes {
            let root = net._temp.path().join(format!("node-{i}"));
            let (dir, identity) = DataDir::init(&root)?;
            let mut node_config = dir.config()?;
            node_config.registry = buildsrs_keys::RegistryUrl::from_index_url(&index)?;
            node_config.capacity = 1;
            (net.options.configure_node)(i, &mut node_config);
            std::fs::write(dir.config_path(), toml::to_string(&node_config)?)?;
            net.nodes.push(TestNode {
                dir,
                identity,
                running: None,
            });
            if i < net.options.start_nodes {
                net.start_node(i)?;
            }
        }
        net.wait_for_builders(net.options.start_nodes).await?;
        Ok(net)
    }

    /// Starts (or restarts) the coordinator on its data dir; waits for its listen address.
    pub async fn start_coordinator(&mut self) -> Result<()> {
        if self.coordinator.is_some() {
            bail!("the coordinator is already running");
        }
        let _ = std::fs::remove_file(self.config.addr_path());
        let _ = std::fs::remove_file(self.config.http_path());
        let stop = CancellationToken::new();
        let run = buildsrs_coordinator::run(self.config.clone(), stop.clone());
        let task = tokio::spawn(said_when_failed("the coordinator".into(), run));
        self.coordinator = Some(RunningCoordinator { stop, task });
        self.coordinator_addr().await?;
        Ok(())
    }

    /// Stops the coordinator cleanly.
    pub async fn stop_coordinator(&mut self) -> Result<()> {
        if let Some(c) = self.coordinator.take() {
            c.stop.cancel();
            c.task.await??;
        }
        Ok(())
    }

    /// Drops the coordinator without letting it finish anything (the in-process stand-in for
    /// kill -9: its tasks are aborted mid-await; the store sees only committed transactions).
    pub async fn kill_coordinator(&mut self) {
        if let Some(c) = self.coordinator.take() {
            c.task.abort();
            let _ = c.task.await;
            c.stop.cancel();
        }
    }

    /// The base URL of the coordinator's web UI and API (written before it listens for
    /// builders, so it is there once [`Testnet::start_coordinator`] returned).
    pub fn http_url(&self) -> Result<String> {
        let text = std::fs::read_to_string(self.config.http_path())
            .with_context(|| format!("reading {}", self.config.http_path().display()))?;
        Ok(text.trim().to_owned())
    }

    /// The coordinator's libp2p address, once it listens.
    pub async fn coordinator_addr(&self) -> Result<String> {
        let path = self.config.addr_path();
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Some(line) = text.lines().next()
            {
                return Ok(line.to_owned());
            }
            if let Some(c) = &self.coordinator
                && c.task.is_finished()
            {
                bail!("the coordinator stopped before listening");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the coordinator did not write {}", path.display())
    }

    /// Starts node `i` on its data dir.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let addr = std::fs::read_to_string(self.config.addr_path())?;
        let addr = addr.lines().next().context("no coordinator address")?;
        let node = &mut self.nodes[i];
        if node.running.is_some() {
            bail!("node {i} is already running");
        }
        let mut options = RunOptions::new(addr.parse()?);
        options.name = format!("node-{i}");
        options.shutdown_grace = Duration::from_secs(5);
        let stop = CancellationToken::new();
        let run = buildsrs_node::run::run(node.dir.clone(), options, stop.clone());
        let task = tokio::spawn(said_when_failed(format!("node {i}"), run));
        node.running = Some(RunningNode { stop, task });
        Ok(())
    }

    /// Stops node `i` cleanly.
    pub async fn stop_node(&mut self, i: usize) -> Result<()> {
        if let Some(n) = self.nodes[i].running.take() {
            n.stop.cancel();
            n.task.await??;
        }
        Ok(())
    }

    /// Aborts node `i` mid-whatever (its sandbox dies with the aborted build).
    pub async fn kill_node(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].running.take() {
            n.task.abort();
            let _ = n.task.await;
            n.stop.cancel();
        }
    }

    /// A keyring holding every node's key.
    pub fn keyring(&self) -> Result<Keyring> {
        let mut keyring = Keyring::default();
        for (i, node) in self.nodes.iter().enumerate() {
            keyring.push(node.identity.public_key(), &format!("node-{i}"))?;
        }
        Ok(keyring)
    }

    /// Waits (up to a minute) until object storage holds every verified artifact.
    pub async fn wait_published(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        // Including artifacts backing off after a failed try.
        let any_time = jiff::Timestamp::MAX;
        while !self
            .store
            .artifacts_awaiting_storage(10, any_time)
            .await?
            .is_empty()
        {
            if tokio::time::Instant::now() > deadline {
                bail!("verified artifacts were not published within a minute");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Waits (up to three minutes) until the queue statistics satisfy `done`.
    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&QueueStats) -> bool,
    ) -> Result<QueueStats> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let stats = self.store.queue_stats(jiff::Timestamp::now()).await?;
            if done(&stats) {
                return Ok(stats);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for {what}; queue: {stats:?}");
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `n` builders have registered.
    pub async fn wait_for_builders(&self, n: usize) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.store.builders().await?.len() < n {
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for {n} builders to say hello");
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    fn check_alive(&self) -> Result<()> {
        if let Some(c) = &self.coordinator
            && c.task.is_finished()
        {
            bail!("the coordinator stopped");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(n) = &node.running
                && n.task.is_finished()
            {
                bail!("node {i} stopped");
            }
        }
        Ok(())
    }

    /// Every lease of every task, with the index of the node that held it.
    pub async fn leases(&self) -> Result<Vec<(usize, buildsrs_store::LeaseInfo)>> {
        let mut all = Vec::new();
        let stats = self
            .store
            .search_crates("", buildsrs_store::Page::first(100))
            .await?;
        for summary in stats.items {
            let Some(info) = self.store.crate_info(&summary.name).await? else {
                continue;
            };
            for version in info.versions {
                let Some(v) = self
                    .store
                    .version_info(&summary.name, &version.version)
                    .await?
                else {
                    continue;
                };
                for task in v.tasks {
                    let Some(detail) = self.store.task(task.id).await? else {
                        continue;
                    };
                    for lease in detail.leases {
                        if let Some(i) = self.node_index(&lease.builder) {
                            all.push((i, lease));
                        }
                    }
                }
            }
        }
        Ok(all)
    }

    /// Which node has this key.
    pub fn node_index(&self, key: &buildsrs_keys::PublicKey) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.identity.public_key() == *key)
    }

    /// Where directory storage keeps artifacts (when not on S3).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.config.data_dir.join("artifacts")
    }

    /// Stops every node, then the coordinator, cleanly.
    pub async fn stop(mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.stop_node(i).await?;
        }
        self.stop_coordinator().await?;
        self.registry.shutdown().await;
        Ok(())
    }
}

/// Runs `run`, printing its error when it fails: a test that sees a part stop can then say why.
async fn said_when_failed(
    who: String,
    run: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let result = run.await;
    if let Err(error) = &result {
        eprintln!("{who} stopped: {error:#}");
    }
    result
}
