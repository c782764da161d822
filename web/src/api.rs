//! The JSON API under `/api/v1/`: the same reads as the pages, for programs (the `buildsrs`
//! CLI, mirrors). Errors are `{"error": {"status", "message"}}`; [`crate::openapi`]
//! describes every route here, and a test keeps the two in step.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::WebError;
use crate::params::{
    CrateName, ListQuery, VersionParam, parse_builder_key, parse_hash, parse_task_id,
};
use crate::{WebState, load};

type ApiResult = Result<Json<Value>, WebError>;

/// Every API route, relative to `/api/v1` (the OpenAPI test reads this list).
pub const ROUTES: &[&str] = &[
    "/crates",
    "/crates/{name}",
    "/crates/{name}/{version}",
    "/tasks/{id}",
    "/artifacts/{hash}",
    "/builders",
    "/builders/{key}",
    "/queue",
    "/verified",
    "/openapi.json",
];

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route(ROUTES[0], get(crates))
        .route(ROUTES[1], get(crate_info))
        .route(ROUTES[2], get(version))
        .route(ROUTES[3], get(task))
        .route(ROUTES[4], get(artifact))
        .route(ROUTES[5], get(builders))
        .route(ROUTES[6], get(builder))
        .route(ROUTES[7], get(queue))
        .route(ROUTES[8], get(verified))
        .route(
            ROUTES[9],
            get(|| async { Json(crate::openapi::document()) }),
        )
        .fallback(crate::error::not_found)
}

/// Serializes a store value, turning the signed attestation bytes (canonical JSON) into
/// JSON rather than an array of numbers.
fn to_json(value: impl serde::Serialize) -> ApiResult {
    let mut value =
        serde_json::to_value(value).map_err(|e| WebError::Internal(format!("json: {e}")))?;
    inline_signed(&mut value);
    Ok(Json(value))
}

fn inline_signed(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "signed"
                    && let Value::Array(numbers) = inner
                {
                    let bytes: Option<Vec<u8>> = numbers
                        .iter()
                        .map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
                        .collect();
                    if let Some(parsed) = bytes.and_then(|b| serde_json::from_slice(&b).ok()) {
                        *inner = parsed;
                    }
                } else {
                    inline_signed(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(inline_signed),
        _ => {}
    }
}

/// `GET /crates?q=&offset=&limit=`: crates whose name contains `q`.
async fn crates(State(state): State<WebState>, Query(query): Query<ListQuery>) -> ApiResult {
    let q = query.search()?;
    let page = query.page(50)?;
    to_json(state.store().search_crates(&q, page).await?)
}

/// `GET /crates/{name}`: the crate, its versions, and which is `latest`.
async fn crate_info(State(state): State<WebState>, Path(name): Path<String>) -> ApiResult {
    let name = CrateName::parse(&name)?;
    let info = load::krate(&state, &name).await?;
    let latest = crate::params::latest(&info.versions).map(|v| v.version.clone());
    let mut value = to_json(&info)?.0;
    value["latest"] = json!(latest);
    Ok(Json(value))
}

/// `GET /crates/{name}/{version}` (`latest` allowed): the version and its tasks, each with
/// its results, and the download and bundle paths of verified ones.
async fn version(
    State(state): State<WebState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult {
    let name = CrateName::parse(&name)?;
    let version = VersionParam::parse(&version)?;
    let (info, details) = load::version_details(&state, &name, &version).await?;
    let mut targets = Vec::new();
    for detail in details {
        let task = &detail.task;
        let links = task
            .artifact
            .filter(|_| task.state == buildsrs_store::TaskState::Verified)
            .map(|artifact| {
                json!({
                    "download": format!("/crates/{}/{}/{}", info.crate_name, info.version.version, task.target),
                    "blob": format!("/blobs/{}", artifact.blake3),
                    "bundle": format!("/attestations/{}", artifact.blake3),
                })
            });
        targets.push(json!({ "task": detail.task, "results": detail.results, "links": links }));
    }
    to_json(json!({
        "crate_name": info.crate_name,
        "version": info.version,
        "targets": targets,
    }))
}

/// `GET /tasks/{id}`.
async fn task(State(state): State<WebState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_task_id(&id)?;
    to_json(load::task(&state, id).await?)
}

/// `GET /artifacts/{hash}`.
async fn artifact(State(state): State<WebState>, Path(hash): Path<String>) -> ApiResult {
    let hash = parse_hash(&hash)?;
    to_json(load::artifact(&state, &hash).await?)
}

/// `GET /builders`.
async fn builders(State(state): State<WebState>) -> ApiResult {
    to_json(state.store().builders().await?)
}

/// `GET /builders/{key}`: the builder and its 50 most recent results.
async fn builder(State(state): State<WebState>, Path(key): Path<String>) -> ApiResult {
    let key = parse_builder_key(&key)?;
    to_json(load::builder(&state, &key).await?)
}

/// `GET /queue?offset=&limit=`: statistics and the open tasks.
async fn queue(State(state): State<WebState>, Query(query): Query<ListQuery>) -> ApiResult {
    to_json(load::queue(&state, query.page(50)?).await?)
}

/// `?since=&limit=` of the verified feed.
#[derive(Debug, Deserialize)]
struct FeedQuery {
    since: Option<String>,
    limit: Option<String>,
}

/// `GET /verified?since=N&limit=L`: artifacts in object storage with a feed number above
/// `since`, in order, and the cursor to ask with next. What mirrors follow.
async fn verified(State(state): State<WebState>, Query(query): Query<FeedQuery>) -> ApiResult {
    let since = match query.since.as_deref() {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                WebError::BadRequest(format!(
                    "since {text:?} is not a cursor (a number from a previous answer, or 0)"
                ))
            })?,
    };
    let limit = ListQuery {
        limit: query.limit,
        ..ListQuery::default()
    }
    .page(100)?
    .limit;
    let items = state.store().published_since(since, limit).await?;
    let next = items.last().map_or(since, |item| item.seq);
    let mut answer = Vec::with_capacity(items.len());
    for item in &items {
        // Who holds it over iroh-blobs: the builders that attested it, when connected.
        let providers = match state.providers() {
            Some(providers) => {
                let attesters: Vec<_> = state
                    .store()
                    .artifact(&item.artifact.blake3)
                    .await?
                    .map(|info| info.attestations.iter().map(|a| a.builder).collect())
                    .unwrap_or_default();
                providers.addresses(&attesters)
            }
            None => Vec::new(),
        };
        answer.push(json!({
            "seq": item.seq,
            "hash": item.artifact.blake3,
            "size": item.artifact.size,
            "verified_at": item.verified_at,
            "blob": format!("/blobs/{}", item.artifact.blake3),
            "bundle": format!("/attestations/{}", item.artifact.blake3),
            "providers": providers,
        }));
    }
    to_json(json!({ "items": answer, "next": next }))
}
