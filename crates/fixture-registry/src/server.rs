//! The HTTP side of the fixture registry: an axum server on loopback that serves the sparse
//! index and the `.crate` files from the registry's directory.
//!
//! It behaves like the sparse index of a real registry, with knobs for tests: validators
//! (ETag, Last-Modified) can be switched on or off, since crates.io sends neither to us and a
//! follower must cope with both; a delay per index request makes concurrency measurable; an
//! "unavailable" switch answers 503. Every request is logged, with the number in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::layout::{is_crate_name, is_version};
use crate::pack::sha256_hex;

/// How the server answers; see [`crate::FixtureRegistry::set_options`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Send an `ETag` (a hash of the file) and honour `If-None-Match` with 304.
    pub etag: bool,
    /// Send `Last-Modified` (a logical clock that ticks once per index write, so two writes in
    /// the same second still differ) and honour an identical `If-Modified-Since` with 304.
    pub last_modified: bool,
    /// Wait this long before answering a crate's index file.
    pub delay: Duration,
    /// Answer every request with 503 Service Unavailable.
    pub unavailable: bool,
    /// Keep the index in a git repository too, one commit per change (see
    /// [`crate::FixtureRegistry::git_url`]). Only read at start.
    pub git: bool,
}

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The request path, e.g. `/he/ll/hello-bin`.
    pub path: String,
    /// The status sent back.
    pub status: u16,
    /// Whether the request carried `If-None-Match` or `If-Modified-Since`.
    pub conditional: bool,
}

/// State shared by the server and the registry handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The index root (config.json and the crate files).
    pub index_dir: PathBuf,
    /// Where `.crate` files live: `crates/NAME/NAME-VERSION.crate`.
    pub crates_dir: PathBuf,
    pub options: Mutex<ServeOptions>,
    /// The logical modification time (seconds after [`CLOCK_EPOCH_SECS`]) of each index
    /// file, by path relative to the index root.
    pub modified: Mutex<HashMap<String, u64>>,
    log: Mutex<Vec<RequestRecord>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The logical clock's zero: 2020-01-01T00:00:00Z.
const CLOCK_EPOCH_SECS: u64 = 1_577_836_800;

/// Locks a mutex, recovering the data if a panicking test thread poisoned it: the data here
/// (logs, options) is always left consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(index_dir: PathBuf, crates_dir: PathBuf, options: ServeOptions) -> Self {
        Self {
            index_dir,
            crates_dir,
            options: Mutex::new(options),
            modified: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn last_modified(&self, relative: &str) -> Option<String> {
        let tick = *lock(&self.modified).get(relative)?;
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(CLOCK_EPOCH_SECS + tick);
        Some(httpdate::fmt_http_date(time))
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running server task.
#[derive(Debug)]
pub(crate) struct Server {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves until [`Server::shutdown`] or drop.
    pub(crate) async fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
    ) -> std::io::Result<(Self, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = Router::new()
            .route("/dl/{crate}/{version}/download", get(download))
            .fallback(index_file)
            .with_state(shared);
        let cancel = CancellationToken::new();
        let stop = cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!("fixture registry server stopped: {e}");
            }
        });
        Ok((
            Self {
                cancel,
                task: Some(task),
            },
            local,
        ))
    }

    pub(crate) async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            // Graceful shutdown waits for open connections; a client with a kept-alive
            // connection must not make a test hang, so give it a moment, then cut it.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn record(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap, status: StatusCode) {
    let conditional = headers.contains_key(header::IF_NONE_MATCH)
        || headers.contains_key(header::IF_MODIFIED_SINCE);
    lock(&shared.log).push(RequestRecord {
        method: method.to_string(),
        path: path.to_owned(),
        status: status.as_u16(),
        conditional,
    });
}

/// `config.json` and the crates' index files.
async fn index_file(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let path = uri.path().to_owned();
    let options = lock(&shared.options).clone();
    let response = answer_index(&shared, &method, &path, &headers, &options).await;
    record(&shared, &method, &path, &headers, response.status());
    response
}

async fn answer_index(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    options: &ServeOptions,
) -> Response {
    if options.unavailable {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(relative) = safe_relative(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if relative != "config.json" && !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    let Some(body) = read_file(&shared.index_dir.join(&relative)).await else {
        return StatusCode::NOT_FOUND.into_response();
    };

    let mut validators = HeaderMap::new();
    let mut not_modified = false;
    if options.etag {
        let etag = format!("\"{}\"", &sha256_hex(&body)[..32]);
        not_modified |= headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == etag.as_bytes());
        insert(&mut validators, header::ETAG, &etag);
    }
    if options.last_modified
        && let Some(modified) = shared.last_modified(&relative)
    {
        // Clients echo back what we sent, so an exact match is all this needs.
        not_modified |= headers
            .get(header::IF_MODIFIED_SINCE)
            .is_some_and(|v| v.as_bytes() == modified.as_bytes());
        insert(&mut validators, header::LAST_MODIFIED, &modified);
    }
    if not_modified {
        return (StatusCode::NOT_MODIFIED, validators).into_response();
    }
    insert(&mut validators, header::CONTENT_TYPE, "text/plain");
    (StatusCode::OK, validators, Body::from(body)).into_response()
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The path below the index root, if it is one we serve: no empty, `.` or hidden segments,
/// only the characters of crate names and `config.json`.
fn safe_relative(path: &str) -> Option<String> {
    let relative = path.strip_prefix('/')?;
    let ok = !relative.is_empty()
        && relative.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    ok.then(|| relative.to_owned())
}

async fn read_file(path: &Path) -> Option<Vec<u8>> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => tokio::fs::read(path).await.ok(),
        _ => None,
    }
}

/// `/dl/{crate}/{version}/download`: the `.crate` file.
async fn download(
    State(shared): State<Arc<Shared>>,
    UrlPath((name, version)): UrlPath<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let _in_flight = InFlight::enter(&shared);
    let unavailable = lock(&shared.options).unavailable;
    let response = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    } else if !is_crate_name(&name) || !is_version(&version) {
        StatusCode::NOT_FOUND.into_response()
    } else {
        let path = shared
            .crates_dir
            .join(&name)
            .join(format!("{name}-{version}.crate"));
        match read_file(&path).await {
            Some(bytes) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/gzip")],
                Body::from(bytes),
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    };
    record(&shared, &method, uri.path(), &headers, response.status());
    response
}
