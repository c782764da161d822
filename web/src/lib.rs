//! The coordinator's HTTP face: the server-rendered web UI, the JSON API, the download URLs
//! people use with curl, `/metrics` and `/healthz`.
//!
//! [`router`] builds the whole application from a [`WebState`]; tests drive it without a
//! socket, and [`serve`] runs it on a listener until a cancellation token fires.
//!
//! - [`params`]: path and query parameters, checked before anything reads the store.
//! - [`error`]: one error type, answered as JSON under `/api/` and as a page elsewhere.
//! - `load`: what a page and its API twin both read from the store.
//! - [`cache`]: a short-lived cache of the public pages' and API's answers.
//! - [`pages`]: the HTML pages (minijinja templates from [`templates`], htmx for liveness).
//! - [`api`]: `/api/v1/…`, the contract of `buildsrs-api` (its parameters, answers and
//!   OpenAPI document); `answers` turns store rows into its answers.
//! - [`downloads`]: archives, blobs (ETag, HEAD, Range), bundles and the keyring.
//! - [`admin`]: the operator's actions behind a token, with CSRF protection.
//! - [`metrics`]: Prometheus text and the health check.
//! - [`assets`]: htmx and the stylesheet, served from the binary, and security headers.
//!
//! **This crate never writes to the store except through admin actions and download counts,
//! and never trusts a parameter it has not parsed into one of [`params`]' types (under
//! `/api/v1`, `buildsrs_api::params`').**

pub mod admin;
mod answers;
pub mod api;
pub mod assets;
pub mod cache;
pub mod download_counts;
pub mod downloads;
pub mod error;
mod load;
pub mod metrics;
pub mod pages;
pub mod params;
pub mod templates;

use std::sync::Arc;

use axum::Router;
use buildsrs_storage::ArtifactStorage;
use buildsrs_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use buildsrs_api::answers::BlobAddress;
pub use error::WebError;

/// Where holders of artifacts serve them over iroh-blobs, so mirrors can fetch from peers.
/// The coordinator implements it over the builders that said hello (and its own blob
/// store); the web layer only passes the addresses on.
pub trait BlobProviders: Send + Sync + std::fmt::Debug {
    /// The blob addresses of those of `attesters` whose address is known, and of the server
    /// itself if it serves blobs.
    fn addresses(&self, attesters: &[buildsrs_keys::PublicKey]) -> Vec<BlobAddress>;
}

/// What the web layer is told by its process.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// The operator's admin token; `None` disables the admin pages.
    pub admin_token: Option<String>,
    /// The base URL people reach this server at, for the commands shown on pages (e.g.
    /// `http://127.0.0.1:8080`). Without one, pages show paths only.
    pub public_url: Option<String>,
    /// Send downloads to object storage with presigned URLs valid this long, instead of
    /// streaming them through this server (S3 only; ignored for a directory).
    pub presign_downloads: Option<std::time::Duration>,
    /// Blob addresses to list in the feed of verified artifacts; `None` lists none.
    pub providers: Option<Arc<dyn BlobProviders>>,
    /// How long a rendered public page or API answer is served from memory (see
    /// [`cache`]); zero, the default here, renders every request.
    pub page_cache_ttl: std::time::Duration,
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    storage: ArtifactStorage,
    templates: templates::Templates,
    admin: admin::Admin,
    metrics: metrics::Metrics,
    page_cache: cache::PageCache,
    public_url: String,
    presign_downloads: Option<std::time::Duration>,
    providers: Option<Arc<dyn BlobProviders>>,
    downloads: download_counts::DownloadCounts,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("storage", &self.inner.storage)
            .field("public_url", &self.inner.public_url)
            .finish_non_exhaustive()
    }
}

impl WebState {
    /// Builds the state; fails only if a compiled-in template does not parse (a build bug).
    pub fn new(
        store: Store,
        storage: ArtifactStorage,
        config: WebConfig,
    ) -> Result<Self, WebError> {
        let storage_presigns = storage.can_presign();
        let public_url = config
            .public_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        Ok(WebState {
            inner: Arc::new(Inner {
                store,
                storage,
                templates: templates::Templates::new()?,
                admin: admin::Admin::new(config.admin_token),
                metrics: metrics::Metrics::default(),
                page_cache: cache::PageCache::new(config.page_cache_ttl),
                public_url,
                presign_downloads: config.presign_downloads.filter(|_| storage_presigns),
                providers: config.providers,
                downloads: download_counts::DownloadCounts::default(),
            }),
        })
    }

    /// Downloads counted in memory, not yet in the store.
    pub fn download_counts(&self) -> &download_counts::DownloadCounts {
        &self.inner.downloads
    }

    /// Writes the downloads counted in memory to the store now (the server does every
    /// [`download_counts::FLUSH_INTERVAL`] and when it stops).
    pub async fn flush_downloads(&self) -> Result<u64, buildsrs_store::StoreError> {
        self.inner.downloads.flush(&self.inner.store).await
    }

    /// The job store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Object storage with the verified artifacts.
    pub fn storage(&self) -> &ArtifactStorage {
        &self.inner.storage
    }

    pub(crate) fn templates(&self) -> &templates::Templates {
        &self.inner.templates
    }

    pub(crate) fn admin(&self) -> &admin::Admin {
        &self.inner.admin
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The cache of rendered public answers.
    pub fn page_cache(&self) -> &cache::PageCache {
        &self.inner.page_cache
    }

    /// How long presigned download URLs live, when downloads are redirected.
    pub(crate) fn presign_downloads(&self) -> Option<std::time::Duration> {
        self.inner.presign_downloads
    }

    /// The blob provider directory, if the process has one.
    pub(crate) fn providers(&self) -> Option<&Arc<dyn BlobProviders>> {
        self.inner.providers.as_ref()
    }

    /// The configured public base URL without a trailing slash, or "".
    pub(crate) fn public_url(&self) -> &str {
        &self.inner.public_url
    }
}

/// The whole application: pages, API, downloads, admin, metrics, static assets, with the
/// security headers on every response. The public pages and the API answer through the
/// [`cache`].
pub fn router(state: WebState) -> Router {
    let cached = || axum::middleware::from_fn_with_state(state.clone(), cache::answer_cached);
    Router::new()
        .merge(pages::routes().route_layer(cached()))
        .merge(downloads::routes())
        .merge(admin::routes())
        .nest("/api/v1", api::routes().route_layer(cached()))
        .merge(metrics::routes())
        .merge(assets::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .layer(axum::middleware::from_fn(assets::security_headers))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` fires, then finishes the requests in
/// flight.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Download counts go to the store in batches, on a timer and once more at the end.
    let flusher = {
        let (state, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(download_counts::FLUSH_INTERVAL) => {}
                }
                if let Err(error) = state.flush_downloads().await {
                    tracing::warn!("writing download counts: {error}");
                }
            }
        })
    };
    // Expired admin sessions and old failed logins are dropped on a timer, not only when
    // someone logs in.
    let purger = {
        let (state, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            admin::purge_every(state.admin(), admin::PURGE_INTERVAL, &stop).await;
        })
    };
    // The client's address is known to handlers that limit per client (admin logins).
    let service =
        router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    flusher.await.ok();
    purger.await.ok();
    if let Err(error) = state.flush_downloads().await {
        tracing::warn!("writing the last download counts: {error}");
    }
    served
}
