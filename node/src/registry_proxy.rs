//! The HTTP proxy phase 1 goes through: it reaches the job's registry and nothing else.
//!
//! Phase 1 (`cargo fetch`) shares the host's network, so without a fence a crate's manifest
//! or a dependency's index line could make cargo contact any host, loopback and the LAN
//! included. [`crate::sources`] refuses what a manifest or lock file names before phase 1; this
//! proxy stops the rest. The node starts one [`RegistryProxy`] on `127.0.0.1:0` (owned by the
//! pipeline, stopped by its cancellation token when the pipeline is dropped), and every phase 1
//! gets a [`ProxyGrant`]: credentials of its own in the proxy URL (`CARGO_HTTP_PROXY`) and the
//! hosts of its registry ([`AllowedHosts`]: the index host and the download host of the
//! registry's `config.json` `dl`). Then:
//!
//! - `CONNECT host:port` (HTTPS) opens a tunnel only to an allowed host and port;
//! - an absolute-form plain-HTTP request (`GET http://127.0.0.1:PORT/…`, as cargo sends for an
//!   `http` registry) is forwarded only to an allowed host and port;
//! - everything else (another host, no or unknown credentials, an origin-form request) gets
//!   `403 Forbidden` and a log line naming the refused host, and the grant records it, so the
//!   pipeline can tell a crate that reached for another host (the crate's failure) from a
//!   registry that did not answer (the node's).
//!
//! cargo hands the proxy to curl, which uses it for loopback addresses too: curl bypasses a
//! proxy only for hosts in `NO_PROXY`, and the sandbox's environment has none. The proxy never
//! reads request bodies or terminates TLS: it checks where a request goes, not what it says.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, PROXY_AUTHORIZATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a registry's hosts (from its `config.json`) are kept before it is read again.
const HOSTS_TTL: Duration = Duration::from_secs(600);

/// How long the proxy waits for a connection to an allowed host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The user name in every grant's proxy URL; the password is the grant's token.
const USER: &str = "buildsrs";

/// Why the proxy could not start or a registry's hosts could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listening socket.
    #[error("binding the registry proxy on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// A URL without a host and port the proxy could allow.
    #[error("{url:?} is not an http(s) URL with a host: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Phase 1 can be fenced to sparse registries only (their `config.json` says where
    /// downloads come from).
    #[error(
        "registry {0} is not a sparse index (sparse+http(s)://…); phase 1 cannot be limited to it"
    )]
    NotSparse(String),
    /// The registry's `config.json` could not be read.
    #[error("reading {url}: {reason}")]
    Config {
        /// Where it was read from.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Random bytes for a grant's token.
    #[error("no random bytes for a proxy token: {0}")]
    Random(String),
}

/// A host and port the proxy may connect to. Hosts are compared without case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// `host` (a name, an IPv4 address or a bracketed IPv6 address) and `port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    /// The host and port of a URL (`sparse+` or `registry+` prefixes are ignored; the port
    /// defaults to the scheme's).
    pub fn of_url(url: &str) -> Result<Self, ProxyError> {
        let bare = url
            .strip_prefix("sparse+")
            .or_else(|| url.strip_prefix("registry+"))
            .unwrap_or(url);
        let error = |reason: &str| ProxyError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = reqwest::Url::parse(bare).map_err(|e| error(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(error("not http or https"));
        }
        let host = parsed.host_str().ok_or_else(|| error("no host"))?;
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| error("no port"))?;
        Ok(Self::new(host, port))
    }

    /// The host as it is connected to (an IPv6 address without its brackets).
    fn connect_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The hosts one phase 1 may reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts(BTreeSet<Endpoint>);

impl AllowedHosts {
    /// Allows `endpoint`.
    pub fn insert(&mut self, endpoint: Endpoint) {
        self.0.insert(endpoint);
    }

    /// Whether `endpoint` is allowed.
    pub fn allows(&self, endpoint: &Endpoint) -> bool {
        self.0.contains(endpoint)
    }
}

impl std::fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, endpoint) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{endpoint}")?;
        }
        Ok(())
    }
}

/// What went through one grant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests and tunnels to allowed hosts.
    pub allowed: u64,
    /// Hosts refused (each once, in order), with the method: `CONNECT evil:443`.
    pub refused: Vec<String>,
    /// Allowed hosts that could not be reached (each once).
    pub unreachable: Vec<String>,
}

impl Traffic {
    fn note(list: &mut Vec<String>, what: String) {
        if !list.contains(&what) {
            list.push(what);
        }
    }
}

/// One job's permission to use the proxy. Dropping it withdraws the permission.
#[derive(Debug)]
pub struct ProxyGrant {
    token: String,
    url: String,
    state: Arc<GrantState>,
    shared: Arc<Shared>,
}

impl ProxyGrant {
    /// The proxy URL with this grant's credentials, for `CARGO_HTTP_PROXY`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The hosts this grant may reach.
    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.state.allowed
    }

    /// What went through so far.
    pub fn traffic(&self) -> Traffic {
        lock(&self.state.traffic).clone()
    }
}

impl Drop for ProxyGrant {
    fn drop(&mut self) {
        lock(&self.shared.grants).remove(&self.token);
    }
}

#[derive(Debug)]
struct GrantState {
    label: String,
    allowed: AllowedHosts,
    traffic: Mutex<Traffic>,
}

struct Shared {
    grants: Mutex<HashMap<String, Arc<GrantState>>>,
    client: Client<HttpConnector, Incoming>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("grants", &lock(&self.grants).len())
            .finish_non_exhaustive()
    }
}

/// The node's registry proxy on `127.0.0.1`. Stops when dropped or when its cancellation
/// token is cancelled.
#[derive(Debug)]
pub struct RegistryProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    hosts: tokio::sync::Mutex<HashMap<String, (AllowedHosts, Instant)>>,
}

impl RegistryProxy {
    /// Starts the proxy on `127.0.0.1:0`; it serves until `cancel` is cancelled or the proxy is
    /// dropped.
    pub async fn start(cancel: CancellationToken) -> Result<Self, ProxyError> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(ProxyError::Bind)?;
        let addr = listener.local_addr().map_err(ProxyError::Bind)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let shared = Arc::new(Shared {
            grants: Mutex::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build(connector),
            cancel,
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            hosts: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A grant to reach `allowed`; `label` (the job) names it in log lines.
    pub fn grant(&self, label: &str, allowed: AllowedHosts) -> Result<ProxyGrant, ProxyError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| ProxyError::Random(e.to_string()))?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let state = Arc::new(GrantState {
            label: label.to_owned(),
            allowed,
            traffic: Mutex::new(Traffic::default()),
        });
        lock(&self.shared.grants).insert(token.clone(), state.clone());
        Ok(ProxyGrant {
            url: format!("http://{USER}:{token}@{}", self.addr),
            token,
            state,
            shared: self.shared.clone(),
        })
    }

    /// The hosts of a registry: its index host and the download host of its `config.json`
    /// (read with `http`, directly, and kept for a while). crates.io by either of its names
    /// is its sparse index; other registries must be sparse.
    pub async fn registry_hosts(
        &self,
        registry: &str,
        http: &reqwest::Client,
    ) -> Result<AllowedHosts, ProxyError> {
        let index = if buildsrs_index::crates_io::is_crates_io(registry) {
            buildsrs_index::crates_io::INDEX
        } else {
            registry
        };
        let Some(base) = index.strip_prefix("sparse+") else {
            return Err(ProxyError::NotSparse(registry.to_owned()));
        };
        let mut cache = self.hosts.lock().await;
        if let Some((hosts, read)) = cache.get(base)
            && read.elapsed() < HOSTS_TTL
        {
            return Ok(hosts.clone());
        }
        let mut hosts = AllowedHosts::default();
        hosts.insert(Endpoint::of_url(base)?);
        let url = format!("{}/config.json", base.trim_end_matches('/'));
        let config = read_config(http, &url).await?;
        hosts.insert(Endpoint::of_url(config.dl())?);
        cache.insert(base.to_owned(), (hosts.clone(), Instant::now()));
        Ok(hosts)
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// Reads and parses a registry's `config.json`.
async fn read_config(
    http: &reqwest::Client,
    url: &str,
) -> Result<buildsrs_index::IndexConfig, ProxyError> {
    let error = |reason: String| ProxyError::Config {
        url: url.to_owned(),
        reason,
    };
    let response = http
        .get(url)
        .timeout(CONNECT_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| error(e.to_string()))?;
    let bytes = response.bytes().await.map_err(|e| error(e.to_string()))?;
    buildsrs_index::IndexConfig::from_json(&bytes).map_err(|e| error(e.to_string()))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = tokio::select! {
            () = shared.cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!("registry proxy: accepting a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn({
                let shared = shared.clone();
                move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(request, &shared).await) }
                }
            });
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                () = shared.cancel.cancelled() => {}
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!("registry proxy connection: {error}");
                    }
                }
            }
        });
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

async fn handle(mut request: Request<Incoming>, shared: &Arc<Shared>) -> Response<ProxyBody> {
    let method = request.method().clone();
    let Some(grant) = grant_of(&request, shared) else {
        tracing::warn!(
            "registry proxy refused {method} {}: no job's credentials",
            request.uri()
        );
        return text(StatusCode::FORBIDDEN, "no job's credentials\n");
    };
    let Some(target) = target_of(&request) else {
        tracing::warn!(
            "registry proxy refused {method} {} of {}: not a proxy request for an http URL",
            request.uri(),
            grant.label
        );
        return text(
            StatusCode::FORBIDDEN,
            "not a proxy request for an http URL\n",
        );
    };
    if !grant.allowed.allows(&target) {
        tracing::warn!(
            "registry proxy refused {method} {target} of {}: not a host of the job's registry ({})",
            grant.label,
            grant.allowed
        );
        Traffic::note(
            &mut lock(&grant.traffic).refused,
            format!("{method} {target}"),
        );
        return text(
            StatusCode::FORBIDDEN,
            &format!("{target} is not a host of the job's registry\n"),
        );
    }
    lock(&grant.traffic).allowed += 1;
    if method == Method::CONNECT {
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((target.connect_host(), target.port)),
        )
        .await;
        let mut upstream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return unreachable(&grant, &target, &error.to_string()),
            Err(_) => return unreachable(&grant, &target, "timed out"),
        };
        let upgrade = hyper::upgrade::on(&mut request);
        let cancel = shared.cancel.clone();
        tokio::spawn(async move {
            let mut client = match upgrade.await {
                Ok(upgraded) => TokioIo::new(upgraded),
                Err(error) => {
                    tracing::debug!("registry proxy: tunnel to {target} not upgraded: {error}");
                    return;
                }
            };
            tokio::select! {
                () = cancel.cancelled() => {}
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(error) = result {
                        tracing::debug!("registry proxy: tunnel to {target}: {error}");
                    }
                }
            }
        });
        return Response::new(empty());
    }
    // Plain HTTP: forward without the proxy's own headers.
    let headers = request.headers_mut();
    for hop in [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "keep-alive",
    ] {
        headers.remove(hop);
    }
    match shared.client.request(request).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(error) => unreachable(&grant, &target, &error.to_string()),
    }
}

/// The grant whose credentials a request carries (`Proxy-Authorization: Basic`).
fn grant_of(request: &Request<Incoming>, shared: &Shared) -> Option<Arc<GrantState>> {
    let value = request.headers().get(PROXY_AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = data_encoding::BASE64
        .decode(encoded.trim().as_bytes())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, token) = decoded.split_once(':')?;
    if user != USER {
        return None;
    }
    lock(&shared.grants).get(token).cloned()
}

/// Where a proxy request goes: the authority of a `CONNECT`, or the host and port of an
/// absolute `http://` URL. `None` for anything else.
fn target_of(request: &Request<Incoming>) -> Option<Endpoint> {
    let uri = request.uri();
    let authority = uri.authority()?;
    if request.method() == Method::CONNECT {
        return Some(Endpoint::new(authority.host(), authority.port_u16()?));
    }
    if uri.scheme_str() != Some("http") {
        return None;
    }
    Some(Endpoint::new(
        authority.host(),
        authority.port_u16().unwrap_or(80),
    ))
}

fn unreachable(grant: &GrantState, target: &Endpoint, error: &str) -> Response<ProxyBody> {
    tracing::warn!(
        "registry proxy: {target} (for {}) did not answer: {error}",
        grant.label
    );
    Traffic::note(&mut lock(&grant.traffic).unreachable, target.to_string());
    text(
        StatusCode::BAD_GATEWAY,
        &format!("{target} did not answer: {error}\n"),
    )
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Locks a mutex, taking over one a panicking thread left (the data is plain bookkeeping).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_urls_with_default_ports() {
        let of = |url| Endpoint::of_url(url).unwrap().to_string();
        assert_eq!(of("sparse+https://index.crates.io/"), "index.crates.io:443");
        assert_eq!(
            of("https://index.crates.io:443/artifactory/api/cargo/crates-io/v1/crates"),
            "index.crates.io:443"
        );
        assert_eq!(of("sparse+http://127.0.0.1:7780/"), "127.0.0.1:7780");
        assert_eq!(of("http://Static.Crates.IO/crates"), "static.crates.io:80");
        assert_eq!(of("http://[::1]:8080/{crate}/{version}"), "[::1]:8080");
        assert!(Endpoint::of_url("file:///srv/index").is_err());
        assert!(Endpoint::of_url("not a url").is_err());
    }

    #[test]
    fn only_the_exact_host_and_port_are_allowed() {
        let mut hosts = AllowedHosts::default();
        hosts.insert(Endpoint::of_url("sparse+http://127.0.0.1:7780/").unwrap());
        assert!(hosts.allows(&Endpoint::new("127.0.0.1", 7780)));
        assert!(!hosts.allows(&Endpoint::new("127.0.0.1", 7781)));
        assert!(!hosts.allows(&Endpoint::new("localhost", 7780)));
        assert_eq!(hosts.to_string(), "127.0.0.1:7780");
    }
}
