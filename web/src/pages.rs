//! The HTML pages. Every page is complete without JavaScript; where htmx asks (the
//! `HX-Request` header), the search and queue pages answer with just the fragment it swaps.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use buildsrs_domain::CrateName;
use buildsrs_keys::bundle::BUNDLE_SUFFIX;
use buildsrs_store::{AttestationId, TaskDetail, TaskState};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::error::{PageError, WebError};
use crate::params::{
    HtmlQuery, ListQuery, VersionParam, parse, parse_builder_key, parse_hash, parse_id,
    parse_task_id,
};
use crate::{WebState, load};

/// A builder counts as online if it was seen this recently.
pub const ONLINE_WITHIN: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// How many of a crate's newest versions its page shows with their task states.
const CRATE_PAGE_VERSIONS: u32 = 30;

type PageResult = Result<Response, PageError>;

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(home))
        .route("/search", get(search))
        .route("/crates/{name}", get(crate_page))
        .route("/crates/{name}/{version}", get(version_page))
        .route("/artifacts/{hash}", get(artifact_page))
        .route("/builders", get(builders_page))
        .route("/builders/{key}", get(builder_page))
        .route("/queue", get(queue_page))
        .route("/tasks/{id}", get(task_page))
        .route("/logs/{id}", get(build_log))
}

/// Whether htmx made this request (and wants a fragment).
pub(crate) fn from_htmx(headers: &HeaderMap) -> bool {
    // htmx restoring a page from history (its cache missed) wants the whole page.
    headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request")
}

/// The whole page, or for htmx just the fragment it swaps in. The answer varies with the
/// `HX-Request` header and says so, so that a browser's history or a cache never shows the
/// fragment as the page (Back to a search would otherwise show the bare result list).
fn render_page_or_fragment(
    state: &WebState,
    headers: &HeaderMap,
    page: &str,
    fragment: &str,
    context: impl Serialize,
) -> PageResult {
    let template = if from_htmx(headers) { fragment } else { page };
    let mut response = render(state, template, context)?;
    response
        .headers_mut()
        .insert(header::VARY, header::HeaderValue::from_static("HX-Request"));
    Ok(response)
}

fn render(state: &WebState, name: &str, context: impl Serialize) -> PageResult {
    Ok(state.templates().render(name, context)?.into_response())
}

async fn home(State(state): State<WebState>) -> PageResult {
    let now = Timestamp::now();
    let stats = state.store().queue_stats(now).await?;
    let since = now
        .checked_sub(ONLINE_WITHIN)
        .map_err(|e| WebError::Internal(format!("the time {now} minus a while: {e}")))?;
    let online = state.store().builders_seen_since(since).await?;
    let recent = state.store().recently_verified(20).await?;
    render(
        &state,
        "home.html",
        json!({
            "stats": stats,
            "queue_length": stats.queued + stats.building + stats.mismatch,
            "builders_online": online,
            "recent": recent,
        }),
    )
}

async fn search(
    State(state): State<WebState>,
    headers: HeaderMap,
    HtmlQuery(query): HtmlQuery<ListQuery>,
) -> PageResult {
    let q = query.search()?;
    let page = query.page(20)?;
    let results = state.store().search_crates(&q, page).await?;
    let next = load::next_offset(page, results.total);
    let context = json!({ "q": q, "results": results, "next": next });
    render_page_or_fragment(
        &state,
        &headers,
        "search.html",
        "_search_results.html",
        context,
    )
}

async fn crate_page(State(state): State<WebState>, Path(name): Path<String>) -> PageResult {
    let name = parse::<CrateName>(&name)?;
    let (info, versions) = state
        .store()
        .crate_with_tasks(name.as_str(), CRATE_PAGE_VERSIONS)
        .await?
        .ok_or_else(|| WebError::not_found(format!("crate {}", name.as_str())))?;
    let latest = crate::params::latest(&info.versions).map(|v| v.version.clone());
    render(
        &state,
        "crate.html",
        json!({
            "info": info,
            "versions": versions,
            "latest": latest,
            "more": info.versions.len().saturating_sub(versions.len()),
        }),
    )
}

/// One target's row on a version page: the task, what each builder reported, and how to
/// download and verify the artifact.
#[derive(Serialize)]
struct TargetRow {
    detail: TaskDetail,
    /// Distinct hashes reported, so the page can show agreement at a glance.
    distinct_hashes: usize,
    download: Option<String>,
    file_name: Option<String>,
    bundle: Option<String>,
    commands: Option<String>,
}

async fn version_page(
    State(state): State<WebState>,
    Path((name, version)): Path<(String, String)>,
) -> PageResult {
    let name = parse::<CrateName>(&name)?;
    let version = VersionParam::parse(&version)?;
    let (info, details) = load::version_details(&state, &name, &version).await?;
    let base = state.public_url();
    let mut rows = Vec::new();
    for detail in details {
        let task = &detail.task;
        let mut hashes: Vec<_> = detail
            .results
            .iter()
            .filter_map(|r| r.artifact.map(|a| a.blake3))
            .collect();
        hashes.sort();
        hashes.dedup();
        let verified = (task.state == TaskState::Verified)
            .then_some(task.artifact)
            .flatten();
        let file_name = verified.map(|_| {
            format!(
                "{}-{}-{}.tar.gz",
                info.crate_name, info.version.version, task.target
            )
        });
        let download = verified.map(|_| {
            format!(
                "/crates/{}/{}/{}",
                info.crate_name, info.version.version, task.target
            )
        });
        let bundle = verified.map(|a| format!("/attestations/{}", a.blake3));
        let commands = match (&download, &bundle, &file_name) {
            (Some(download), Some(bundle), Some(file)) => Some(format!(
                "curl -fLo {file} {base}{download}\n\
                 curl -fLo {file}{BUNDLE_SUFFIX} {base}{bundle}\n\
                 buildsrs verify {file} --keyring keyring.txt --threshold {quorum}",
                quorum = task.quorum
            )),
            _ => None,
        };
        rows.push(TargetRow {
            distinct_hashes: hashes.len(),
            detail,
            download,
            file_name,
            bundle,
            commands,
        });
    }
    render(
        &state,
        "version.html",
        json!({ "info": info, "rows": rows }),
    )
}

async fn artifact_page(State(state): State<WebState>, Path(hash): Path<String>) -> PageResult {
    let hash = parse_hash(&hash)?;
    let info = load::artifact(&state, &hash).await?;
    let total: u64 = info.downloads.iter().map(|d| d.count).sum();
    render(
        &state,
        "artifact.html",
        json!({ "info": info, "hash": hash.to_hex(), "total_downloads": total }),
    )
}

async fn builders_page(
    State(state): State<WebState>,
    HtmlQuery(query): HtmlQuery<ListQuery>,
) -> PageResult {
    let page = query.page(100)?;
    let builders = state.store().builders_page(page).await?;
    let next = load::next_offset(page, builders.total);
    let context = json!({ "builders": builders.items, "total": builders.total, "next": next });
    render(&state, "builders.html", context)
}

async fn builder_page(State(state): State<WebState>, Path(key): Path<String>) -> PageResult {
    let key = parse_builder_key(&key)?;
    render(&state, "builder.html", load::builder(&state, &key).await?)
}

async fn queue_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    HtmlQuery(query): HtmlQuery<ListQuery>,
) -> PageResult {
    let page = query.page(50)?;
    let queue = load::queue(&state, page).await?;
    let context = json!({
        "stats": queue.stats, "tasks": queue.tasks, "next": queue.next, "offset": page.offset,
    });
    render_page_or_fragment(&state, &headers, "queue.html", "_queue.html", context)
}

async fn task_page(State(state): State<WebState>, Path(id): Path<String>) -> PageResult {
    let id = parse_task_id(&id)?;
    render(
        &state,
        "task.html",
        json!({ "detail": load::task(&state, id).await? }),
    )
}

/// A result's build log as plain text (never HTML: it is the builder's output).
async fn build_log(State(state): State<WebState>, Path(id): Path<String>) -> PageResult {
    let id = AttestationId(parse_id(&id, "result")?);
    let log = state
        .store()
        .build_log(id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("a build log for result {id}")))?;
    if !log.task_decided {
        // A log names the artifact it packed: shown once the task is decided, like the
        // results' hashes (see `load::sealed`).
        return Err(WebError::Forbidden(format!(
            "the build log of result {id} is shown once its task is decided"
        ))
        .into());
    }
    let mut text = String::new();
    if log.truncated() {
        text.push_str(&format!(
            "[the builder sent {} bytes; the last {} are kept]\n",
            log.original_len,
            log.bytes.len()
        ));
    }
    text.push_str(&String::from_utf8_lossy(&log.bytes));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
