//! The `buildsrs-coordinator` command line: a thin layer that turns flags into a [`Config`]
//! and runs the service until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buildsrs_index::read_watch_file;
use buildsrs_p2p::ConnectionLimits;
use buildsrs_p2p::libp2p::Multiaddr;
use buildsrs_p2p::libp2p::multiaddr::Protocol;
use buildsrs_store::{Policy, Store};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use buildsrs_keys::PublicKey;
use buildsrs_storage::StorageConfig;

use crate::config::{CRATES_IO_SPARSE, Config, IndexSource};
use crate::network::NetworkLimits;

/// The buildsrs coordinator: follows the registry index, plans and schedules builds.
#[derive(Debug, Parser)]
#[command(
    name = "buildsrs-coordinator",
    version,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what the store holds: schema version, watched crates, queue.
    Status(StoreArgs),
    /// List the builders with their standing and counts.
    Builders(StoreArgs),
    /// Approve a pending builder: it gets work and its attestations count.
    Approve(ApproveArgs),
    /// Revoke a builder: no more work, its attestations stop counting, artifacts that relied
    /// on them are decided again. Final.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct BuilderArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The builder's public key (`ed25519:<hex>`, as `builders` lists it).
    key: String,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    #[command(flatten)]
    builder: BuilderArgs,
    /// Who runs the key (1 to 64 of ASCII letters, digits, `.`, `_`, `-`): all keys of one
    /// operator count once toward a quorum. Without it the key is its own operator.
    #[arg(long, value_name = "NAME")]
    operator: Option<buildsrs_store::Operator>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    builder: BuilderArgs,
    /// Why, for the event log.
    #[arg(long, default_value = "revoked by the operator")]
    reason: String,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The coordinator's data dir (holds the SQLite store by default).
    #[arg(long, env = "BUILDSRS_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// A Postgres URL (`postgres://…`) instead of SQLite in the data dir.
    #[arg(long, env = "BUILDSRS_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The coordinator's data dir (holds the SQLite store by default).
    #[arg(long, env = "BUILDSRS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A Postgres URL (`postgres://…`) instead of SQLite in the data dir.
    #[arg(long, env = "BUILDSRS_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// The registry index: `sparse+https://…` (polled for watched crates) or a git index
    /// (`git+https://…`, `file://…`, a path; every crate is followed).
    #[arg(long, default_value = CRATES_IO_SPARSE, value_name = "URL")]
    index: String,
    /// Crates to watch, comma-separated (added to those already watched): each crate's newest
    /// version and every version published from then on are built. `NAME:N` also builds the
    /// N next-older versions (overriding --backfill).
    #[arg(long, value_delimiter = ',', value_name = "NAME[:N],...")]
    watch: Vec<String>,
    /// A file of crates to watch, one `NAME` or `NAME:N` per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    watch_file: Option<PathBuf>,
    /// Older versions to build besides the newest, for the crates of --watch and
    /// --watch-file that do not say `NAME:N`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    backfill: u32,
    /// Seconds between polls of the index.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    poll_interval: u64,
    /// Target triples to build (repeatable).
    #[arg(
        long = "target",
        value_name = "TRIPLE",
        default_value = "x86_64-unknown-linux-gnu"
    )]
    targets: Vec<String>,
    /// Toolchains to build with (repeatable) [default: the local `rustc` release].
    #[arg(long = "toolchain", value_name = "RELEASE")]
    toolchains: Vec<String>,
    /// Distinct approved builders that must agree before an artifact is verified.
    #[arg(long, default_value_t = 2, value_name = "N")]
    quorum: u32,
    /// libp2p addresses to serve builders on (repeatable). Loopback by default: give a
    /// reachable address (e.g. /ip4/0.0.0.0/tcp/7700) for builders on other machines.
    #[arg(
        long,
        value_name = "MULTIADDR",
        default_value = "/ip4/127.0.0.1/tcp/7700"
    )]
    listen: Vec<String>,
    /// Approve every builder that says hello. For local networks only: refused with a
    /// `--listen` address that is not loopback, unless `--auto-approve-anyone`.
    #[arg(long)]
    auto_approve: bool,
    /// With `--auto-approve`, allow listening beyond loopback: anyone who can reach the
    /// coordinator then becomes an approved builder, and enough keys verify anything alone.
    #[arg(long, requires = "auto_approve")]
    auto_approve_anyone: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Where the blob client (iroh-blobs, fetching artifacts from builders) binds.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    blobs_bind: std::net::SocketAddr,
    /// Keep verified artifacts in this directory [default: DATA_DIR/artifacts].
    #[arg(long, value_name = "DIR", conflicts_with = "s3_endpoint")]
    storage_dir: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
    /// Where to serve the web UI, JSON API and downloads (`off`: no HTTP).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    http: String,
    /// The admin token for the web UI's admin pages (unset: admin pages off).
    #[arg(
        long,
        env = "BUILDSRS_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Read the admin token from this file (its first line), so that it is in neither the
    /// command line nor the environment of the process.
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Serve a rendered public page or API answer from memory for this many milliseconds
    /// before rendering it again (0: render every request). Changes made through the admin
    /// pages show at once; others show within this time.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    page_cache_ms: u64,
    /// The URL people reach the web UI at, for the commands it shows [default: the bound
    /// address].
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
}

/// What the coordinator takes from its libp2p peers (see `network::NetworkLimits`).
#[derive(Debug, Args)]
struct LimitArgs {
    /// Established libp2p connections at most; approved builders are admitted beyond it.
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Established connections of one peer at most.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_peer: u32,
    /// Incoming connections in their handshake at most.
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_pending_connections: u32,
    /// Requests of one peer being answered at once at most; more are answered `throttled`.
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_per_peer: u32,
    /// Requests one peer may make per second, sustained; more are answered `throttled`.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    peer_requests_per_sec: u32,
    /// Requests one peer may make at once after a quiet time.
    #[arg(long, default_value_t = 80, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    peer_request_burst: u32,
    /// Requests of all peers being answered at once at most; more are answered `throttled`.
    /// Peers other than approved builders get only half of these.
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_in_flight: u32,
}

impl LimitArgs {
    fn limits(&self) -> NetworkLimits {
        let mut limits = NetworkLimits::default();
        limits.swarm.connections = ConnectionLimits {
            max_pending_incoming: self.max_pending_connections,
            max_established: self.max_connections,
            max_established_per_peer: self.max_connections_per_peer,
        };
        limits.max_requests_per_peer = self.max_requests_per_peer;
        limits.requests_per_sec = f64::from(self.peer_requests_per_sec);
        limits.request_burst = self.peer_request_burst;
        limits.max_requests_in_flight = self.max_requests_in_flight;
        limits
    }
}

/// S3-compatible object storage for verified artifacts (path-style addressing).
#[derive(Debug, Args)]
struct S3Args {
    /// The S3 endpoint, e.g. http://127.0.0.1:5055; with --s3-bucket, artifacts go to S3.
    #[arg(
        long,
        env = "BUILDSRS_S3_ENDPOINT",
        value_name = "URL",
        requires = "s3_bucket"
    )]
    s3_endpoint: Option<String>,
    /// The bucket.
    #[arg(
        long,
        env = "BUILDSRS_S3_BUCKET",
        value_name = "NAME",
        requires = "s3_endpoint"
    )]
    s3_bucket: Option<String>,
    /// The region.
    #[arg(
        long,
        env = "AWS_REGION",
        default_value = "us-east-1",
        value_name = "REGION"
    )]
    s3_region: String,
    /// Access key id.
    #[arg(
        long,
        env = "AWS_ACCESS_KEY_ID",
        value_name = "ID",
        hide_env_values = true
    )]
    s3_access_key_id: Option<String>,
    /// Redirect downloads to presigned S3 URLs valid this many seconds instead of streaming
    /// them through the coordinator (0: stream).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    s3_presign_secs: u64,
    /// Secret access key.
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    s3_secret_access_key: Option<String>,
}

impl S3Args {
    fn storage(self) -> Result<Option<StorageConfig>> {
        let (Some(endpoint), Some(bucket)) = (self.s3_endpoint, self.s3_bucket) else {
            return Ok(None);
        };
        let allow_http = endpoint.starts_with("http://");
        Ok(Some(StorageConfig::S3 {
            endpoint,
            bucket,
            region: self.s3_region,
            access_key_id: self
                .s3_access_key_id
                .context("S3 storage needs AWS_ACCESS_KEY_ID (or --s3-access-key-id)")?,
            secret_access_key: self
                .s3_secret_access_key
                .context("S3 storage needs AWS_SECRET_ACCESS_KEY (or --s3-secret-access-key)")?,
            allow_http,
        }))
    }
}

/// The log filter without `BUILDSRS_LOG`. libp2p's request-response handler warns once per
/// stream it drops beyond `max_streams_per_connection`: a peer opening streams as fast as it
/// can would write the log full, so its warnings are left out.
const DEFAULT_LOG: &str = "info,libp2p_request_response=error";

/// Parses, sets up logging, runs; returns the exit code (2 for errors).
pub fn main(cli: Cli) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUILDSRS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Status(args)) => status(&args).await,
            Some(Command::Builders(args)) => builders(&args).await,
            Some(Command::Approve(args)) => approve(&args).await,
            Some(Command::Revoke(args)) => revoke(&args).await,
            None => serve(cli.run).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The admin token in `file`: its first line, without the line break.
fn read_admin_token(file: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--admin-token-file {}", file.display()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        bail!("--admin-token-file {}: the file is empty", file.display());
    }
    Ok(token.to_owned())
}

/// Whether a listen address only accepts connections from this machine.
fn is_loopback(address: &Multiaddr) -> bool {
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn config_from(args: RunArgs) -> Result<Config> {
    let data_dir = args
        .data_dir
        .context("--data-dir (or BUILDSRS_DATA_DIR) is required")?;
    let mut config = Config::new(data_dir);
    config.database_url = args.database_url;
    config.index = IndexSource::parse(&args.index)?;
    config.watch = args.watch;
    if let Some(file) = &args.watch_file {
        config
            .watch
            .extend(read_watch_file(file)?.iter().map(ToString::to_string));
    }
    config.backfill = args.backfill;
    // Refuse a bad entry now, before anything starts.
    crate::config::watch_requests(&config)?;
    config.poll_interval = Duration::from_secs(args.poll_interval.max(1));
    config.targets = args.targets;
    config.toolchains = if args.toolchains.is_empty() {
        let local = buildsrs_keys::cli::detect_toolchain()
            .context("no --toolchain given and the local rustc could not be asked")?;
        vec![local.release.to_string()]
    } else {
        args.toolchains
    };
    config.policy = Policy {
        quorum: args.quorum,
        plan_all_crates: matches!(config.index, IndexSource::Git(_)),
        ..Policy::default()
    };
    config.policy.validate()?;
    config.listen = args
        .listen
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|e| anyhow::anyhow!("--listen {a:?}: {e}"))
        })
        .collect::<Result<_>>()?;
    if args.auto_approve
        && !args.auto_approve_anyone
        && let Some(public) = config.listen.iter().find(|a| !is_loopback(a))
    {
        bail!(
            "--auto-approve approves every key that says hello, so it is for loopback only; \
             --listen {public} is reachable from elsewhere (add --auto-approve-anyone if that \
             is really meant)"
        );
    }
    config.auto_approve = args.auto_approve;
    config.network_limits = args.limits.limits();
    config.blobs_bind = args.blobs_bind;
    config.http = match args.http.as_str() {
        "off" => None,
        addr => Some(addr.parse().map_err(|e| {
            anyhow::anyhow!("--http {addr:?}: {e} (an address like 127.0.0.1:8080, or off)")
        })?),
    };
    let (admin_token, flag) = match &args.admin_token_file {
        Some(file) => (
            Some(read_admin_token(file)?),
            format!("--admin-token-file {}", file.display()),
        ),
        None => (args.admin_token, "--admin-token".to_owned()),
    };
    config.admin_token = admin_token.filter(|t| !t.trim().is_empty());
    if let Some(token) = &config.admin_token
        && token.len() < 16
    {
        anyhow::bail!("{flag}: use at least 16 characters");
    }
    if let Some(url) = &args.public_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        anyhow::bail!("--public-url {url:?}: expected http://… or https://…");
    }
    config.public_url = args.public_url;
    config.page_cache_ttl = Duration::from_millis(args.page_cache_ms);
    config.presign_downloads =
        (args.s3.s3_presign_secs > 0).then(|| Duration::from_secs(args.s3.s3_presign_secs));
    config.storage = match args.storage_dir {
        Some(root) => Some(StorageConfig::Local { root }),
        None => args.s3.storage()?,
    };
    Ok(config)
}

async fn serve(args: RunArgs) -> Result<()> {
    let config = config_from(args)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tracing::info!(
        "coordinator starting: data dir {}, index {:?}",
        config.data_dir.display(),
        config.index
    );
    crate::run(config, shutdown).await?;
    tracing::info!("coordinator stopped cleanly");
    Ok(())
}

/// Cancels `token` on the first SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot listen for signals; stop the coordinator with SIGKILL");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    token.cancel();
}

async fn open_store(args: &StoreArgs) -> Result<Store> {
    let mut config = Config::new(&args.data_dir);
    config.database_url.clone_from(&args.database_url);
    Ok(Store::open(&config.store_config()?).await?)
}

fn parse_key(text: &str) -> Result<PublicKey> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a builder key (ed25519:<64 hex>): {e}"))
}

async fn builders(args: &StoreArgs) -> Result<()> {
    let store = open_store(args).await?;
    for b in store.builders().await? {
        println!(
            "{} {:<9} {:<20} operator {:<20} built {} agreed {} outvoted {} failed {}",
            b.public_key,
            b.status,
            b.name.as_str(),
            b.operator.as_ref().map_or("(its own key)", |o| o.as_str()),
            b.built,
            b.agreed,
            b.outvoted,
            b.failed
        );
    }
    Ok(())
}

async fn approve(args: &ApproveArgs) -> Result<()> {
    let key = parse_key(&args.builder.key)?;
    let store = open_store(&args.builder.store).await?;
    let now = jiff::Timestamp::now();
    match &args.operator {
        Some(operator) => {
            store.approve_builder_as(&key, operator, now).await?;
            println!(
                "approved {key} ({}) as run by {operator}",
                key.fingerprint()
            );
        }
        None => {
            store.approve_builder(&key, now).await?;
            println!("approved {key} ({}), its own operator", key.fingerprint());
        }
    }
    Ok(())
}

async fn revoke(args: &RevokeArgs) -> Result<()> {
    let key = parse_key(&args.builder.key)?;
    let store = open_store(&args.builder.store).await?;
    let report = store
        .revoke_builder(&key, &args.reason, jiff::Timestamp::now())
        .await?;
    println!("revoked {key}: {report:?}");
    Ok(())
}

async fn status(args: &StoreArgs) -> Result<()> {
    let store = open_store(args).await?;
    let stats = store.queue_stats(jiff::Timestamp::now()).await?;
    let watched = store.watched_crates().await?;
    println!("schema version: {}", store.schema_version().await?);
    println!("watched crates: {}", watched.len());
    println!(
        "tasks:          {} queued ({} ready), {} building, {} verified, {} mismatch, {} failed, \
         {} no binaries, {} cancelled",
        stats.queued,
        stats.ready,
        stats.building,
        stats.verified,
        stats.mismatch,
        stats.failed,
        stats.no_binaries,
        stats.cancelled
    );
    println!(
        "leases:         {} active; builders pending approval: {}",
        stats.active_leases, stats.builders_pending
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(args: &[&str]) -> Result<Config> {
        let mut all = vec!["buildsrs-coordinator", "--data-dir", "/nonexistent"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--toolchain", "1.95.0"]);
        let cli = Cli::try_parse_from(all)?;
        config_from(cli.run)
    }

    #[test]
    fn approve_takes_an_operator_by_its_rule() -> Result<()> {
        let key = format!("ed25519:{}", "ab".repeat(32));
        let parse = |extra: &[&str]| {
            let mut all = vec![
                "buildsrs-coordinator",
                "approve",
                "--data-dir",
                "/nonexistent",
                key.as_str(),
            ];
            all.extend_from_slice(extra);
            Cli::try_parse_from(all)
        };
        let Some(Command::Approve(args)) = parse(&["--operator", "example-org"])?.command else {
            anyhow::bail!("not the approve command");
        };
        assert_eq!(
            args.operator.map(String::from).as_deref(),
            Some("example-org")
        );
        let Some(Command::Approve(args)) = parse(&[])?.command else {
            anyhow::bail!("not the approve command");
        };
        assert!(
            args.operator.is_none(),
            "without it, the key is its own operator"
        );
        for bad in ["x revoked", "a\nb", ""] {
            let error = parse(&["--operator", bad]).unwrap_err().to_string();
            assert!(error.contains("operator"), "{bad:?}: {error}");
        }
        Ok(())
    }

    #[test]
    fn the_admin_token_comes_from_a_flag_or_a_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("admin-token");
        std::fs::write(&file, "a-long-enough-admin-token\n")?;
        let path = file.to_str().context("a UTF-8 path")?;
        let config = config_of(&["--admin-token-file", path])?;
        assert_eq!(
            config.admin_token.as_deref(),
            Some("a-long-enough-admin-token")
        );
        std::fs::write(&file, "short\n")?;
        let error = config_of(&["--admin-token-file", path]).unwrap_err();
        assert!(error.to_string().contains("16 characters"), "{error}");
        std::fs::write(&file, "\n")?;
        let error = config_of(&["--admin-token-file", path]).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
        let missing = dir.path().join("missing");
        let error = config_of(&["--admin-token-file", missing.to_str().context("UTF-8")?]);
        assert!(error.is_err());
        let both = config_of(&[
            "--admin-token",
            "a-long-enough-admin-token",
            "--admin-token-file",
            path,
        ]);
        assert!(both.is_err(), "one or the other");
        Ok(())
    }

    #[test]
    fn network_limits_come_from_flags_and_zero_is_refused() -> Result<()> {
        assert_eq!(config_of(&[])?.network_limits, NetworkLimits::default());
        let config = config_of(&[
            "--max-connections",
            "10",
            "--max-connections-per-peer",
            "1",
            "--max-pending-connections",
            "3",
            "--max-requests-per-peer",
            "4",
            "--peer-requests-per-sec",
            "5",
            "--peer-request-burst",
            "6",
            "--max-requests-in-flight",
            "7",
        ])?;
        let limits = config.network_limits;
        assert_eq!(
            limits.swarm.connections,
            ConnectionLimits {
                max_pending_incoming: 3,
                max_established: 10,
                max_established_per_peer: 1,
            }
        );
        assert_eq!(
            (
                limits.max_requests_per_peer,
                limits.requests_per_sec,
                limits.request_burst,
                limits.max_requests_in_flight
            ),
            (4, 5.0, 6, 7)
        );
        // A limit of zero would refuse everyone: it is a mistake, not a setting.
        assert!(config_of(&["--max-connections", "0"]).is_err());
        assert!(config_of(&["--peer-requests-per-sec", "0"]).is_err());
        Ok(())
    }

    #[test]
    fn auto_approve_is_for_loopback_unless_forced() -> Result<()> {
        assert!(
            config_of(&["--auto-approve"])?.auto_approve,
            "the loopback default"
        );
        let local = config_of(&["--auto-approve", "--listen", "/ip6/::1/tcp/7700"])?;
        assert!(local.auto_approve);
        for public in [
            "/ip4/0.0.0.0/tcp/7700",
            "/ip4/192.0.2.7/tcp/7700",
            "/dns4/x.test/tcp/1",
        ] {
            let error = config_of(&["--auto-approve", "--listen", public])
                .unwrap_err()
                .to_string();
            assert!(error.contains("loopback only"), "{public}: {error}");
        }
        let forced = config_of(&[
            "--auto-approve",
            "--auto-approve-anyone",
            "--listen",
            "/ip4/0.0.0.0/tcp/7700",
        ])?;
        assert!(forced.auto_approve);
        assert!(!config_of(&["--listen", "/ip4/0.0.0.0/tcp/7700"])?.auto_approve);
        Ok(())
    }

    #[test]
    fn watch_takes_a_backfill_per_crate_and_a_default() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("crates.txt");
        std::fs::write(&file, "# more\nfd-find:2\nhexyl\n")?;
        let file = file.to_str().context("a UTF-8 path")?;
        let config = config_of(&[
            "--watch",
            "ripgrep:3,bat",
            "--backfill",
            "1",
            "--watch-file",
            file,
        ])?;
        assert_eq!(config.watch, ["ripgrep:3", "bat", "fd-find:2", "hexyl"]);
        assert_eq!(config.backfill, 1);
        let requests: Vec<(String, u32)> = crate::config::watch_requests(&config)?
            .into_iter()
            .collect();
        assert_eq!(
            requests,
            [
                ("bat".to_owned(), 1),
                ("fd-find".to_owned(), 2),
                ("hexyl".to_owned(), 1),
                ("ripgrep".to_owned(), 3)
            ]
        );
        assert_eq!(config_of(&["--watch", "bat"])?.backfill, 0, "the default");

        for bad in ["ripgrep:x", "rip/grep", "bat:-1"] {
            let error = config_of(&["--watch", bad]).unwrap_err().to_string();
            assert!(error.contains("--watch"), "{bad}: {error}");
        }
        std::fs::write(dir.path().join("bad.txt"), "ok\nbad:many\n")?;
        let bad = dir.path().join("bad.txt");
        let error = config_of(&["--watch-file", bad.to_str().context("UTF-8")?])
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        Ok(())
    }
}
