//! Blobs and bundles over HTTP, the same wherever they are served from: the coordinator's
//! web server and `buildsrs mirror serve` both answer `/blobs/{hash}` and
//! `/attestations/{hash}` with this code, so a mirror can stand in for the coordinator.
//!
//! A blob's URL is its content hash, so the answer is immutable: `ETag: "<hash>"`, a
//! year-long `immutable` cache lifetime, 304 for a matching `If-None-Match`, `HEAD`, and one
//! byte range (a resumed download). Bundles can grow (more attestations), so they are
//! revalidated: their ETag is the hash of their bytes. Bytes stream from object storage.
//!
//! Errors answer `{"error": {"status": N, "message": "…"}}`, as the coordinator's API does.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;

use crate::{ArtifactStorage, StorageError};

/// Cache lifetime of content-addressed responses.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Why a request could not be answered with content.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Malformed input (a bad hash).
    #[error("{0}")]
    BadRequest(String),
    /// Not stored here.
    #[error("{0} not found")]
    NotFound(String),
    /// A range starting past the end (with the blob's size).
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// Storage failed.
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StorageError> for HttpError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::InvalidHash(_) => HttpError::BadRequest(error.to_string()),
            StorageError::RangeNotSatisfiable { size, .. } => HttpError::RangeNotSatisfiable(size),
            other => HttpError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            HttpError::Internal(detail) => {
                tracing::error!("serving a blob: {detail}");
                "internal error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        };
        let body =
            serde_json::json!({ "error": { "status": status.as_u16(), "message": message } });
        let mut response = (status, axum::Json(body)).into_response();
        if let HttpError::RangeNotSatisfiable(size) = self
            && let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        response
    }
}

/// One blob request.
#[derive(Clone, Copy, Debug)]
pub struct BlobRequest<'a> {
    /// GET or HEAD.
    pub method: &'a Method,
    /// The request's headers (`Range`, `If-None-Match`).
    pub headers: &'a HeaderMap,
    /// The blob's BLAKE3 hash, hex.
    pub hash_hex: &'a str,
    /// The name a presigned URL's answer gives the download.
    pub file_name: Option<&'a str>,
    /// Redirect to a presigned URL valid this long, when the storage can presign.
    pub presign: Option<Duration>,
}

/// The answer to a blob request.
#[derive(Debug)]
pub struct BlobAnswer {
    /// What to send.
    pub response: Response,
    /// Whether this is a new download (a GET of the content from its first byte), for
    /// whoever counts downloads.
    pub is_download: bool,
}

/// Answers a blob request: 200 whole, 206 for one satisfiable range, 304 when the client's
/// copy is current, 416 for a range past the end, 404 when not stored; or a 302 to a
/// presigned URL (object storage then answers ranges itself).
pub async fn answer_blob(
    storage: &ArtifactStorage,
    request: BlobRequest<'_>,
) -> Result<BlobAnswer, HttpError> {
    let hex = request.hash_hex;
    let size = storage
        .blob_size(hex)
        .await?
        .ok_or_else(|| HttpError::NotFound(format!("blob {hex}")))?;
    let etag = format!("\"{hex}\"");
    if if_none_match(request.headers, &etag) {
        return Ok(BlobAnswer {
            response: (StatusCode::NOT_MODIFIED, immutable_headers(&etag)).into_response(),
            is_download: false,
        });
    }
    let range = requested_range(request.headers, size)?;
    let is_get = request.method == Method::GET;
    let is_download = is_get && range.as_ref().is_none_or(|r| r.start == 0);
    if is_get
        && let Some(lifetime) = request.presign
        && let Some(url) = storage
            .presigned_blob_url(hex, lifetime, request.file_name)
            .await?
    {
        let response = (
            StatusCode::FOUND,
            [
                (header::LOCATION, url.to_string()),
                // The URL expires: never cache the redirect.
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response();
        return Ok(BlobAnswer {
            response,
            is_download,
        });
    }
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let mut headers = immutable_headers(&etag);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(r) = &range
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    if !is_get {
        return Ok(BlobAnswer {
            response: (status, headers).into_response(),
            is_download,
        });
    }
    let (_, stream) = storage
        .get_blob_range(hex, range)
        .await?
        .ok_or_else(|| HttpError::NotFound(format!("blob {hex}")))?;
    let body = Body::from_stream(stream.map_err(std::io::Error::other));
    Ok(BlobAnswer {
        response: (status, headers, body).into_response(),
        is_download,
    })
}

/// Answers a bundle request: the JSON, revalidated by the hash of its bytes.
pub async fn answer_bundle(
    storage: &ArtifactStorage,
    headers: &HeaderMap,
    hash_hex: &str,
) -> Result<Response, HttpError> {
    let bytes = storage
        .get_bundle(hash_hex)
        .await?
        .ok_or_else(|| HttpError::NotFound(format!("a bundle for {hash_hex}")))?;
    let etag = format!("\"{}\"", blake3::hash(&bytes).to_hex());
    let mut out = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if if_none_match(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{hash_hex}.buildsrs.json\""
    )) {
        out.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok((out, bytes).into_response())
}

/// `/blobs/{hash}` and `/attestations/{hash}` over `storage`, for a server that only serves
/// content (a mirror).
pub fn routes(storage: ArtifactStorage) -> Router {
    async fn blob(
        State(storage): State<ArtifactStorage>,
        method: Method,
        headers: HeaderMap,
        Path(hash): Path<String>,
    ) -> Result<Response, HttpError> {
        let request = BlobRequest {
            method: &method,
            headers: &headers,
            hash_hex: &hash,
            file_name: None,
            presign: None,
        };
        Ok(answer_blob(&storage, request).await?.response)
    }
    async fn bundle(
        State(storage): State<ArtifactStorage>,
        headers: HeaderMap,
        Path(hash): Path<String>,
    ) -> Result<Response, HttpError> {
        answer_bundle(&storage, &headers, &hash).await
    }
    Router::new()
        .route("/blobs/{hash}", get(blob))
        .route("/attestations/{hash}", get(bundle))
        .fallback(|| async { HttpError::NotFound("this page".to_owned()) })
        .with_state(storage)
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
) -> Result<Option<std::ops::Range<u64>>, HttpError> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Ok(None);
    };
    let ranges = parsed
        .validate(size)
        .map_err(|_| HttpError::RangeNotSatisfiable(size))?;
    match ranges.as_slice() {
        [one] => Ok(Some(*one.start()..one.end() + 1)),
        _ => Ok(None),
    }
}
