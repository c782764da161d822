//! What people fetch with curl: archives by crate, version and target; blobs and bundles by
//! hash; the keyring of builder keys.
//!
//! Blobs are immutable (the URL is the content's hash), so they carry `ETag: "<hash>"` and a
//! year-long immutable cache lifetime, answer `If-None-Match` with 304, and serve single byte
//! ranges (a resumed download). Bytes stream from object storage; nothing is buffered whole.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use buildsrs_keys::bundle::BUNDLE_SUFFIX;
use buildsrs_keys::{Blake3Hash, Keyring};
use buildsrs_store::{BuilderStatus, TaskState};
use futures::TryStreamExt;
use jiff::Timestamp;

use crate::WebState;
use crate::error::WebError;
use crate::pages::load_version;
use crate::params::{CrateName, Target, VersionParam, parse_hash};

/// Cache lifetime of content-addressed responses.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/crates/{name}/{version}/{target}", get(archive))
        .route("/blobs/{hash}", get(blob))
        .route("/attestations/{hash}", get(bundle))
        .route("/keyring", get(keyring))
}

/// `GET /crates/{name}/{version}/{target}`: the verified archive, named for a download.
async fn archive(
    State(state): State<WebState>,
    method: Method,
    headers: HeaderMap,
    Path((name, version, target)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let name = CrateName::parse(&name)?;
    let version = VersionParam::parse(&version)?;
    let target = Target::parse(&target)?;
    let info = load_version(&state, &name, &version).await?;
    // Several toolchains may have verified artifacts for one target: the newest decision.
    let artifact = info
        .tasks
        .iter()
        .filter(|t| t.target == target.as_str() && t.state == TaskState::Verified)
        .max_by_key(|t| t.decided_at)
        .and_then(|t| t.artifact)
        .ok_or_else(|| {
            WebError::not_found(format!(
                "a verified artifact of {} {} for {}",
                info.crate_name,
                info.version.version,
                target.as_str()
            ))
        })?;
    let file = format!(
        "{}-{}-{}.tar.gz",
        info.crate_name,
        info.version.version,
        target.as_str()
    );
    let mut response = serve_blob(&state, &method, &headers, &artifact.blake3, Some(&file)).await?;
    // The name only holds characters the parameter checks allowed: no quoting issues.
    if response.status() != StatusCode::FOUND
        && let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    // The same URL serves other bytes once a newer version is `latest`.
    if version == VersionParam::Latest {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(response)
}

/// `GET /blobs/{hash}`.
async fn blob(
    State(state): State<WebState>,
    method: Method,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, WebError> {
    let hash = parse_hash(&hash)?;
    serve_blob(&state, &method, &headers, &hash, None).await
}

/// Streams a stored blob: 200 whole, 206 for one satisfiable range, 304 when the client's
/// copy is current, 416 for a range past the end; or, with presigned downloads on, a 302 to
/// object storage (which answers ranges itself). Counts a download when the transfer starts
/// at byte 0 with a GET (a resumed download is not a new one).
async fn serve_blob(
    state: &WebState,
    method: &Method,
    headers: &HeaderMap,
    hash: &Blake3Hash,
    file_name: Option<&str>,
) -> Result<Response, WebError> {
    let hex = hash.to_hex();
    let size = state
        .storage()
        .blob_size(&hex)
        .await?
        .ok_or_else(|| WebError::not_found(format!("blob {hex}")))?;
    let etag = format!("\"{hex}\"");
    if if_none_match(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, immutable_headers(&etag)).into_response());
    }
    let range = requested_range(headers, size)?;
    let starts_at_zero = range.as_ref().is_none_or(|r| r.start == 0);
    if method == Method::GET && starts_at_zero {
        count_download(state, hash).await;
    }
    if method == Method::GET
        && let Some(lifetime) = state.presign_downloads()
        && let Some(url) = state
            .storage()
            .presigned_blob_url(&hex, lifetime, file_name)
            .await?
    {
        return Ok((
            StatusCode::FOUND,
            [
                (header::LOCATION, url.to_string()),
                // The URL expires: never cache the redirect.
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response());
    }
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let mut headers_out = immutable_headers(&etag);
    headers_out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers_out.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(r) = &range
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
    {
        headers_out.insert(header::CONTENT_RANGE, value);
    }
    if method == Method::HEAD {
        return Ok((status, headers_out).into_response());
    }
    let (_, stream) = state
        .storage()
        .get_blob_range(&hex, range)
        .await?
        .ok_or_else(|| WebError::not_found(format!("blob {hex}")))?;
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    Ok((status, headers_out, body).into_response())
}

/// Counts a download. Artifacts in storage but unknown to the store (a restored backup) are
/// still served, uncounted.
async fn count_download(state: &WebState, hash: &Blake3Hash) {
    match state.store().record_download(hash, Timestamp::now()).await {
        Ok(()) | Err(buildsrs_store::StoreError::NotFound(_)) => {}
        Err(error) => tracing::warn!("counting a download of {hash}: {error}"),
    }
}

/// Headers every content-addressed answer carries.
fn immutable_headers(etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers
}

/// Whether `If-None-Match` names this ETag (or `*`).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// The one byte range asked for, as a half-open range. A header that does not parse, or
/// asks for several ranges, is ignored (the whole blob is served, as HTTP allows); a range
/// that starts past the end is a 416.
fn requested_range(
    headers: &HeaderMap,
    size: u64,
) -> Result<Option<std::ops::Range<u64>>, WebError> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Ok(None);
    };
    let ranges = parsed
        .validate(size)
        .map_err(|_| WebError::RangeNotSatisfiable(size))?;
    match ranges.as_slice() {
        [one] => Ok(Some(*one.start()..one.end() + 1)),
        _ => Ok(None),
    }
}

/// `GET /attestations/{hash}`: the artifact's attestation bundle.
async fn bundle(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, WebError> {
    let hash = parse_hash(&hash)?;
    let hex = hash.to_hex();
    let bytes = state
        .storage()
        .get_bundle(&hex)
        .await?
        .ok_or_else(|| WebError::not_found(format!("a bundle for {hex}")))?;
    // A revocation can rewrite a bundle, so it is revalidated, unlike the blob.
    let etag = format!("\"{}\"", Blake3Hash::of_bytes(&bytes).to_hex());
    let mut out = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"{hex}{BUNDLE_SUFFIX}\""))
    {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok((out, bytes).into_response())
}

/// `GET /keyring`: every approved builder's key, and revoked ones marked revoked, in the
/// keyring format `buildsrs verify` reads. Fetching it means trusting this server; the
/// `buildsrs` CLI only uses it when told to.
async fn keyring(State(state): State<WebState>) -> Result<Response, WebError> {
    let mut text = String::from(
        "# buildsrs keyring: <public key> <name> [revoked | revoked-since=RFC3339]\n\
         # the builders this coordinator approved; review before trusting it\n",
    );
    let mut names = Keyring::default();
    for builder in state.store().builders().await? {
        if builder.status == BuilderStatus::Pending {
            continue;
        }
        // Builders choose their names: use it when the keyring format takes it, else the
        // fingerprint.
        let name = if names.push(builder.public_key, &builder.name).is_ok() {
            builder.name.clone()
        } else {
            let fallback = format!("builder-{}", builder.public_key.fingerprint());
            names
                .push(builder.public_key, &fallback)
                .map_err(|e| WebError::Internal(format!("keyring entry: {e}")))?;
            fallback
        };
        text.push_str(&format!("{} {name}", builder.public_key));
        if builder.status == BuilderStatus::Revoked {
            text.push_str(" revoked");
        }
        text.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response())
}
