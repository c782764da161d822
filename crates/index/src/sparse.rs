//! Following a sparse (HTTP) index for a list of crates.
//!
//! Each poll fetches every watched crate's index file, a bounded number at a time, with our
//! own reqwest client (system TLS roots, the system proxy, gzip). A crate is reported only
//! when its file changed since the last poll. We know that cheaply in two ways:
//!
//! - when the server sent `ETag` or `Last-Modified`, the next request is conditional and a
//!   304 means unchanged;
//! - otherwise (crates.io's answers carry neither, and ignore conditional requests) we
//!   compare the SHA-256 of the body with the last one.
//!
//! crates-index gives the URL layout (`se/rd/serde`) and the `config.json` model; we do not
//! use its response parsing, which refuses a whole file for one bad line (see
//! [`crate::versions`]), nor its on-disk cache, since the follower keeps its state in memory.
//! Requests are HTTP/1.1 (crates-index would ask for HTTP/2, which a plain-http server like
//! the fixture registry refuses); over TLS, ALPN still picks HTTP/2 where offered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::config::IndexConfig;
use crate::error::IndexError;
use crate::versions::{CrateUpdate, IndexVersion, diff_versions, parse_index_file};

/// How many index files are fetched at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The largest index file we accept (crates.io's largest are a few MiB).
pub const MAX_INDEX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// The HTTP client a follower uses unless given one: system TLS roots, system proxy, gzip,
/// timeouts so that a stalled server cannot stall a poll forever.
pub fn default_client() -> Result<reqwest::Client, IndexError> {
    client_builder().build().map_err(IndexError::Client)
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!(
            "buildsrs-index/",
            env!("CARGO_PKG_VERSION"),
            " (index follower)"
        ))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Crates whose index file changed, with their full version lists.
    pub updates: Vec<CrateUpdate>,
    /// Crates whose index file did not change.
    pub unchanged: Vec<String>,
    /// Crates the index does not have (404, 410 or 451).
    pub not_found: Vec<String>,
    /// Crates that could not be fetched this time; they keep their last known state.
    pub errors: Vec<(String, IndexError)>,
}

impl PollReport {
    /// Whether the index looked unreachable: every crate failed, and for reasons of the
    /// connection or the server (not, say, an invalid name).
    pub fn index_unreachable(&self) -> bool {
        !self.errors.is_empty()
            && self.updates.is_empty()
            && self.unchanged.is_empty()
            && self.not_found.is_empty()
            && self.errors.iter().all(|(_, e)| e.is_unreachable())
    }
}

/// What we remember of a crate between polls.
#[derive(Debug)]
struct CrateState {
    etag: Option<String>,
    last_modified: Option<String>,
    body_sha256: [u8; 32],
    versions: Vec<IndexVersion>,
}

/// The answer to one index file request.
enum Answer {
    NotModified {
        validators: Validators,
    },
    NotFound,
    Body {
        validators: Validators,
        body: Vec<u8>,
    },
}

#[derive(Clone, Debug, Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Follows a sparse index for the crates it is asked about. See the module docs.
#[derive(Debug)]
pub struct SparseFollower {
    client: reqwest::Client,
    index: crates_index::SparseIndex,
    concurrency: usize,
    config: Option<IndexConfig>,
    /// By lowercased name, the index's own key.
    crates: HashMap<String, CrateState>,
}

impl SparseFollower {
    /// A follower of the index at `index_url` (`sparse+https://index.crates.io/`; the
    /// `sparse+` prefix may be left out) with the [`default_client`]. For a loopback index
    /// (a fixture registry) the client skips any configured proxy, which could not reach it.
    pub fn new(index_url: &str) -> Result<Self, IndexError> {
        let url = parse_index_url(index_url)?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        let client = if loopback {
            client_builder()
                .no_proxy()
                .build()
                .map_err(IndexError::Client)?
        } else {
            default_client()?
        };
        Self::with_client(index_url, client)
    }

    /// A follower using `client` for every request.
    pub fn with_client(index_url: &str, client: reqwest::Client) -> Result<Self, IndexError> {
        let url = parse_index_url(index_url)?;
        // No on-disk cache is ever read or written (we never call the cache methods), so the
        // path is never used.
        let index = crates_index::SparseIndex::at_path(PathBuf::new(), format!("sparse+{url}"));
        Ok(Self {
            client,
            index,
            concurrency: DEFAULT_CONCURRENCY,
            config: None,
            crates: HashMap::new(),
        })
    }

    /// Fetches at most `limit` index files at once (at least 1).
    pub fn with_concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit.max(1);
        self
    }

    /// The index URL, with its `sparse+` prefix.
    pub fn index_url(&self) -> String {
        format!("sparse+{}", self.index.url())
    }

    /// The index's `config.json`, once fetched.
    pub fn config(&self) -> Option<&IndexConfig> {
        self.config.as_ref()
    }

    /// The versions seen at the last successful fetch of `name`.
    pub fn known_versions(&self, name: &str) -> Option<&[IndexVersion]> {
        self.crates
            .get(&name.to_ascii_lowercase())
            .map(|s| s.versions.as_slice())
    }

    /// How many crates it knows the versions of.
    pub fn crates_known(&self) -> usize {
        self.crates.len()
    }

    /// Forgets everything about crates for which `keep` is false (e.g. no longer watched).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.crates.retain(|key, _| keep(key));
    }

    /// Fetches `config.json` again.
    pub async fn refresh_config(&mut self) -> Result<&IndexConfig, IndexError> {
        let url = format!("{}config.json", self.index.url());
        let config = match fetch(&self.client, &url, &Validators::default()).await? {
            Answer::Body { body, .. } => IndexConfig::from_json(&body)?,
            Answer::NotFound => return Err(IndexError::Config(format!("{url} not found"))),
            Answer::NotModified { .. } => {
                return Err(IndexError::Status { url, status: 304 });
            }
        };
        Ok(self.config.insert(config))
    }

    /// Polls `names` once: refreshes `config.json` (keeping the old one if that fails), then
    /// fetches every crate's index file. Fails only when there is no `config.json` at all,
    /// which means the index is unreachable or not an index; per-crate failures are in the
    /// report.
    pub async fn poll<S: AsRef<str>>(&mut self, names: &[S]) -> Result<PollReport, IndexError> {
        if let Err(e) = self.refresh_config().await {
            if self.config.is_none() {
                return Err(e);
            }
            tracing::warn!("keeping the index config we have: {e}");
        }
        let config = self
            .config
            .clone()
            .ok_or_else(|| IndexError::Config("not fetched".into()))?;

        let mut report = PollReport::default();
        let mut requests = Vec::new();
        let mut asked = std::collections::HashSet::new();
        for name in names {
            let name = name.as_ref();
            let key = name.to_ascii_lowercase();
            if !asked.insert(key.clone()) {
                continue;
            }
            if let Err(message) = buildsrs_keys::statement::validate_crate_name(name) {
                report
                    .errors
                    .push((name.to_owned(), IndexError::InvalidName(message)));
                continue;
            }
            let Some(url) = self.index.crate_url(name) else {
                report.errors.push((
                    name.to_owned(),
                    IndexError::InvalidName(format!("{name:?} has no index path")),
                ));
                continue;
            };
            let validators = self
                .crates
                .get(&key)
                .map(|s| Validators {
                    etag: s.etag.clone(),
                    last_modified: s.last_modified.clone(),
                })
                .unwrap_or_default();
            requests.push((name.to_owned(), url, validators));
        }

        let client = &self.client;
        let answers: Vec<(String, String, Result<Answer, IndexError>)> =
            futures::stream::iter(requests)
                .map(|(name, url, validators)| async move {
                    let answer = fetch(client, &url, &validators).await;
                    (name, url, answer)
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;

        for (name, url, answer) in answers {
            match answer {
                Ok(answer) => self.apply(&name, &url, answer, &config, &mut report),
                Err(e) => report.errors.push((name, e)),
            }
        }
        report.updates.sort_by(|a, b| a.name.cmp(&b.name));
        report.unchanged.sort();
        report.not_found.sort();
        report.errors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(report)
    }

    /// Folds one answer into the follower's state and the report.
    fn apply(
        &mut self,
        name: &str,
        url: &str,
        answer: Answer,
        config: &IndexConfig,
        report: &mut PollReport,
    ) {
        let key = name.to_ascii_lowercase();
        match answer {
            Answer::NotFound => {
                self.crates.remove(&key);
                report.not_found.push(name.to_owned());
            }
            Answer::NotModified { validators } => match self.crates.get_mut(&key) {
                Some(state) => {
                    // A 304 may carry fresh validators; keep ours when it does not.
                    if validators.etag.is_some() || validators.last_modified.is_some() {
                        state.etag = validators.etag;
                        state.last_modified = validators.last_modified;
                    }
                    report.unchanged.push(name.to_owned());
                }
                None => report.errors.push((
                    name.to_owned(),
                    IndexError::Status {
                        url: url.to_owned(),
                        status: 304,
                    },
                )),
            },
            Answer::Body { validators, body } => {
                let body_sha256: [u8; 32] = Sha256::digest(&body).into();
                if let Some(state) = self.crates.get_mut(&key)
                    && state.body_sha256 == body_sha256
                {
                    state.etag = validators.etag;
                    state.last_modified = validators.last_modified;
                    report.unchanged.push(name.to_owned());
                    return;
                }
                let (versions, _skipped) = parse_index_file(name, &body, config);
                let previous = self
                    .crates
                    .get(&key)
                    .map(|s| s.versions.as_slice())
                    .unwrap_or_default();
                let changes = diff_versions(previous, &versions);
                let published_name = versions
                    .first()
                    .map_or_else(|| name.to_owned(), |v| v.name.to_string());
                tracing::info!(
                    krate = %published_name,
                    "index changed for {published_name}: {}",
                    changes.summary()
                );
                report.updates.push(CrateUpdate {
                    name: published_name,
                    versions: versions.clone(),
                    changes,
                });
                self.crates.insert(
                    key,
                    CrateState {
                        etag: validators.etag,
                        last_modified: validators.last_modified,
                        body_sha256,
                        versions,
                    },
                );
            }
        }
    }
}

/// Checks an index URL: http or https, a host, no query or fragment; `sparse+` optional.
fn parse_index_url(index_url: &str) -> Result<url::Url, IndexError> {
    let bad = |message: &str| IndexError::Url {
        url: index_url.to_owned(),
        message: message.to_owned(),
    };
    let bare = index_url.strip_prefix("sparse+").unwrap_or(index_url);
    let url = url::Url::parse(bare).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("must be an http:// or https:// URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url)
}

/// GETs one index file (or `config.json`), conditionally when we have validators.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    validators: &Validators,
) -> Result<Answer, IndexError> {
    let mut headers = HeaderMap::new();
    // What cargo sends, as crates-index builds it.
    headers.insert("cargo-protocol", HeaderValue::from_static("version=1"));
    headers.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
    if let Some(etag) = validators
        .etag
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::IF_NONE_MATCH, etag);
    }
    if let Some(modified) = validators
        .last_modified
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::IF_MODIFIED_SINCE, modified);
    }
    let http_error = |source| IndexError::Http {
        url: url.to_owned(),
        source,
    };
    let mut response = client
        .get(url)
        .version(http::Version::HTTP_11)
        .headers(headers)
        .send()
        .await
        .map_err(http_error)?;

    let status = response.status();
    let validators = Validators {
        etag: header_string(response.headers(), header::ETAG),
        last_modified: header_string(response.headers(), header::LAST_MODIFIED),
    };
    match status.as_u16() {
        200 => {}
        304 => return Ok(Answer::NotModified { validators }),
        404 | 410 | 451 => return Ok(Answer::NotFound),
        other => {
            return Err(IndexError::Status {
                url: url.to_owned(),
                status: other,
            });
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http_error)? {
        if body.len() + chunk.len() > MAX_INDEX_FILE_BYTES {
            return Err(IndexError::TooLarge {
                url: url.to_owned(),
                limit: MAX_INDEX_FILE_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer::Body { validators, body })
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_urls_are_checked() {
        let client = reqwest::Client::new();
        for good in [
            "sparse+https://index.crates.io/",
            "https://index.crates.io",
            "sparse+http://127.0.0.1:8080/",
        ] {
            let f = SparseFollower::with_client(good, client.clone()).unwrap();
            assert!(f.index_url().starts_with("sparse+http"), "{good}");
            assert!(f.index_url().ends_with('/'), "{good}");
        }
        for bad in [
            "",
            "index.crates.io",
            "ftp://x/",
            "sparse+file:///x",
            "https://",
            "https://x/?q",
        ] {
            assert!(
                SparseFollower::with_client(bad, client.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
