//! What people fetch with curl: archives by crate, version and target; blobs and bundles by
//! hash; the keyring of builder keys.
//!
//! Blobs and bundles are answered by `buildsrs_storage::http`, the code mirrors serve with
//! (ETag = hash, immutable caching, HEAD, one byte range, streaming); this module resolves
//! names to hashes and counts downloads.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use buildsrs_domain::{CrateName, TargetTriple};
use buildsrs_keys::{Blake3Hash, Keyring};
use buildsrs_storage::http::{BlobRequest, answer_blob, answer_bundle};
use buildsrs_store::{BuilderStatus, TaskState};
use jiff::Timestamp;

use crate::error::WebError;
use crate::params::{VersionParam, parse, parse_hash};
use crate::{WebState, load};

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
    let name = parse::<CrateName>(&name)?;
    let version = VersionParam::parse(&version)?;
    let target = parse::<TargetTriple>(&target)?;
    let info = load::version(&state, &name, &version).await?;
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
    // The same URL serves other bytes once a newer version is `latest` (a redirect is
    // never cached anyway).
    if version == VersionParam::Latest && response.status() != StatusCode::FOUND {
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

/// Answers from object storage through the shared blob code (what mirrors serve too), with
/// presigned redirects when configured, and counts the download.
async fn serve_blob(
    state: &WebState,
    method: &Method,
    headers: &HeaderMap,
    hash: &Blake3Hash,
    file_name: Option<&str>,
) -> Result<Response, WebError> {
    let hex = hash.to_hex();
    let answer = answer_blob(
        state.storage(),
        BlobRequest {
            method,
            headers,
            hash_hex: &hex,
            file_name,
            presign: state.presign_downloads(),
        },
    )
    .await?;
    if answer.is_download {
        count_download(state, hash).await;
    }
    Ok(answer.response)
}

/// Counts a download in memory (see [`crate::download_counts`]); writes the waiting counts
/// at once when many have piled up. Artifacts in storage but unknown to the store (a
/// restored backup) are served and not counted.
async fn count_download(state: &WebState, hash: &Blake3Hash) {
    if state.download_counts().add(*hash, Timestamp::now())
        && let Err(error) = state.flush_downloads().await
    {
        tracing::warn!("writing download counts: {error}");
    }
}

/// `GET /attestations/{hash}`: the artifact's attestation bundle.
async fn bundle(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Response, WebError> {
    let hash = parse_hash(&hash)?;
    Ok(answer_bundle(state.storage(), &headers, &hash.to_hex()).await?)
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
        // Builders choose their names, by `BuilderName`'s rule: a subset of the keyring's, so
        // a name is always one word of its line and never adds a revocation or a line. A
        // keyring's names are unique, though: a name taken already falls back to
        // `builder+<fingerprint>`, which no builder can choose (`+` is outside the rule).
        let name = if names.push(builder.public_key, &builder.name).is_ok() {
            builder.name.to_string()
        } else {
            let fallback = format!("builder+{}", builder.public_key.fingerprint());
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
