//! The JSON API under `/api/v1/`: the same reads as the pages, for programs (the `buildsrs`
//! CLI, mirrors). Its contract is the `buildsrs-api` crate: every parameter is extracted as
//! one of its [`params`](buildsrs_api::params) types, every answer is one of its
//! [`answers`](buildsrs_api::answers) (built from store rows in [`crate::answers`]), and
//! `/api/v1/openapi.json` is its document.
//!
//! Every error here is JSON, `{"error": {"status", "message"}}`: bad parameters (the
//! extractors' rejections included: a malformed or repeated query parameter), unknown
//! routes, methods other than GET and HEAD.

use axum::extract::{FromRequestParts, OriginalUri, Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use buildsrs_api::answers::{
    ArtifactAnswer, Builder, BuilderAnswer, CrateAnswer, CrateList, FeedItem, FeedPage,
    QueueAnswer, TaskAnswer, VersionAnswer,
};
use buildsrs_api::params::{
    ArtifactPath, BuilderPath, CratePath, CrateSearch, FeedQuery, Limit, PageQuery, TaskPath,
    VersionPath,
};
use buildsrs_api::routes;
use buildsrs_store::Page;
use serde::de::DeserializeOwned;

use crate::error::WebError;
use crate::params::VersionParam;
use crate::{WebState, answers, load};

type ApiResult<T> = Result<Json<T>, WebError>;

/// The default page sizes.
const CRATES_PER_PAGE: u32 = 50;
const TASKS_PER_PAGE: u32 = 50;

/// Builders in an answer of `GET /builders` unless the query says otherwise.
const BUILDERS_PER_PAGE: u32 = 100;
const FEED_PER_PAGE: u32 = 100;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route(routes::CRATES, get(crates))
        .route(routes::CRATE, get(crate_info))
        .route(routes::VERSION, get(version))
        .route(routes::TASK, get(task))
        .route(routes::ARTIFACT, get(artifact))
        .route(routes::BUILDERS, get(builders))
        .route(routes::BUILDER, get(builder))
        .route(routes::QUEUE, get(queue))
        .route(routes::VERIFIED, get(verified))
        .route(
            routes::OPENAPI,
            get(|| async { Json(buildsrs_api::openapi::document()) }),
        )
        // After the routes: it applies to those registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(crate::error::not_found)
}

/// A path parameter of the API; a value that does not parse is a JSON 400 with the
/// parameter's own message.
pub(crate) struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                Err(WebError::BadRequest(match error.kind() {
                    ErrorKind::Message(message) => message.clone(),
                    _ => error.body_text(),
                }))
            }
            // The route and the type disagree: our bug, not the client's.
            Err(other) => Err(WebError::Internal(other.body_text())),
        }
    }
}

/// The query string of an API request, as [`crate::params::query`] reads it; a malformed one
/// (a bad value, a parameter given twice) is a JSON 400 that says which parameter and why.
pub(crate) struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        crate::params::query(&parts.uri).map(ApiQuery)
    }
}

/// A method other than GET (and HEAD) on an API route: a JSON 405 (axum adds `Allow`).
async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    WebError::MethodNotAllowed(format!(
        "{method} is not allowed on {}: the API answers GET and HEAD",
        uri.path()
    ))
    .into_response()
}

fn page(offset: Option<buildsrs_api::params::Offset>, limit: Option<Limit>, default: u32) -> Page {
    Page {
        offset: offset.map_or(0, |offset| offset.get()),
        limit: limit.map_or(default, Limit::get),
    }
}

/// `GET /crates?q=&offset=&limit=`: crates whose name contains `q`.
async fn crates(
    State(state): State<WebState>,
    ApiQuery(query): ApiQuery<CrateSearch>,
) -> ApiResult<CrateList> {
    let q = query.q.as_ref().map_or("", |q| q.trimmed());
    let page = page(query.offset, query.limit, CRATES_PER_PAGE);
    let found = state.store().search_crates(q, page).await?;
    Ok(Json(answers::crate_list(&found)?))
}

/// `GET /crates/{name}`: the crate, its versions, and which is `latest`.
async fn crate_info(
    State(state): State<WebState>,
    ApiPath(path): ApiPath<CratePath>,
) -> ApiResult<CrateAnswer> {
    let info = load::krate(&state, &path.name).await?;
    Ok(Json(answers::crate_answer(&info)?))
}

/// `GET /crates/{name}/{version}` (`latest` allowed): the version and its tasks, each with
/// its results, and the download and bundle paths of verified ones.
async fn version(
    State(state): State<WebState>,
    ApiPath(path): ApiPath<VersionPath>,
) -> ApiResult<VersionAnswer> {
    let (info, details) =
        load::version_details(&state, &path.name, &VersionParam::from(&path.version)).await?;
    Ok(Json(answers::version_answer(&info, &details)?))
}

/// `GET /tasks/{id}`.
async fn task(
    State(state): State<WebState>,
    ApiPath(path): ApiPath<TaskPath>,
) -> ApiResult<TaskAnswer> {
    let detail = load::task(&state, path.id.task_id()).await?;
    Ok(Json(answers::task_answer(&detail)?))
}

/// `GET /artifacts/{hash}`.
async fn artifact(
    State(state): State<WebState>,
    ApiPath(path): ApiPath<ArtifactPath>,
) -> ApiResult<ArtifactAnswer> {
    let info = load::artifact(&state, &path.hash).await?;
    Ok(Json(answers::artifact_answer(&info)?))
}

/// `GET /builders?offset=&limit=`: a page of builders, in the order they registered.
async fn builders(
    State(state): State<WebState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Vec<Builder>> {
    let page = page(query.offset, query.limit, BUILDERS_PER_PAGE);
    let builders = state.store().builders_page(page).await?;
    Ok(Json(
        builders
            .items
            .iter()
            .map(answers::builder)
            .collect::<Result<_, _>>()?,
    ))
}

/// `GET /builders/{key}`: the builder and its 50 most recent results. 32 bytes that are no
/// ed25519 key cannot be a builder's: not found.
async fn builder(
    State(state): State<WebState>,
    ApiPath(path): ApiPath<BuilderPath>,
) -> ApiResult<BuilderAnswer> {
    let key = path
        .key
        .public_key()
        .ok_or_else(|| WebError::not_found(format!("builder {}", path.key)))?;
    let view = load::builder(&state, &key).await?;
    Ok(Json(answers::builder_answer(&view)?))
}

/// `GET /queue?offset=&limit=`: statistics and the open tasks.
async fn queue(
    State(state): State<WebState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<QueueAnswer> {
    let view = load::queue(&state, page(query.offset, query.limit, TASKS_PER_PAGE)).await?;
    Ok(Json(answers::queue_answer(&view)?))
}

/// `GET /verified?since=N&limit=L`: artifacts in object storage with a feed number above
/// `since`, in order, and the cursor to ask with next. What mirrors follow.
async fn verified(
    State(state): State<WebState>,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> ApiResult<FeedPage> {
    let since = query.since.map_or(0, |since| since.get());
    let limit = query.limit.map_or(FEED_PER_PAGE, Limit::get);
    let published = state.store().published_since(since, limit).await?;
    let next = published.last().map_or(since, |item| item.seq);
    let mut items = Vec::with_capacity(published.len());
    for item in &published {
        let hash = item.artifact.blake3;
        // Who holds it over iroh-blobs: the builders that attested it, when connected.
        let providers = match state.providers() {
            Some(providers) => {
                let attesters: Vec<_> = state
                    .store()
                    .artifact(&hash)
                    .await?
                    .map(|info| info.attestations.iter().map(|a| a.builder).collect())
                    .unwrap_or_default();
                providers.addresses(&attesters)
            }
            None => Vec::new(),
        };
        items.push(FeedItem {
            seq: item.seq,
            hash,
            size: item.artifact.size,
            verified_at: item.verified_at,
            blob: format!("/blobs/{hash}"),
            bundle: format!("/attestations/{hash}"),
            providers,
        });
    }
    Ok(Json(FeedPage { items, next }))
}
