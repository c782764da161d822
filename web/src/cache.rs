//! A short-lived cache of rendered public pages and API answers ("micro-caching").
//!
//! A popular version page or search is asked for many times a second and changes far less
//! often. Each answer with status 200 is kept for a short time to live (one second by
//! default in the coordinator) and served from memory until then, so the store and the
//! template engine see one request per page per TTL however many people ask. While one
//! request renders a page, the others asking for the same page wait for its answer instead
//! of rendering it again (so a page's expiry under load costs one render, not one per
//! connection).
//!
//! What may be stale, and for how long: a cached answer is at most one TTL (plus the time it
//! took to render) old. The admin
//! actions of this process clear the cache, so the operator sees their change at once;
//! changes made by the scheduler or by other coordinators on the same database show after
//! the TTL. Answers other than 200 (bad input, not found, errors) are never kept: something
//! created a moment later shows at once. Downloads, the admin pages, `/metrics` and
//! `/healthz` do not pass through here.
//!
//! The key is the request's path and query as the client sent it (before any router
//! stripped a prefix: `/api/v1/crates/x` and `/crates/x` are different answers), whether
//! htmx asked for a fragment (the same URL then answers with part of the page), and the
//! cache's generation: [`PageCache::clear`] moves to a new one, so that a page whose render
//! began before an admin action and ends after it is never served afterwards.
//!
//! **Architecture Invariant:** only responses that are the same for every visitor are
//! cached; nothing here may see a cookie, a session or an admin token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::WebState;

/// Bytes of rendered answers kept at most. Beyond it moka evicts the least used, and its
/// admission policy keeps a flood of one-off URLs (random searches) from pushing out pages
/// that are asked for often.
const MAX_BYTES: u64 = 64 << 20;

/// The largest answer read into memory to cache it. Pages and API answers are bounded by
/// their page sizes and far smaller; a larger one fails loudly rather than being cut.
const MAX_ANSWER: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    path_and_query: String,
    /// htmx asked for the fragment it swaps in (see `pages::from_htmx`).
    fragment: bool,
    generation: u64,
}

/// An answer read into memory, to be sent again.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    async fn read(response: Response) -> Answer {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_ANSWER).await {
            Ok(body) => Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            },
            Err(error) => {
                tracing::error!("an answer could not be read for the page cache: {error}");
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Answer {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    headers,
                    body: Bytes::from_static(b"internal error\n"),
                }
            }
        }
    }

    fn to_response(&self) -> Response {
        (self.status, self.headers.clone(), self.body.clone()).into_response()
    }

    /// Roughly the memory an entry holds, for the size bound.
    fn weight(key: &Key, answer: &Answer) -> u32 {
        let headers: usize = answer
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        u32::try_from(key.path_and_query.len() + headers + answer.body.len() + 64)
            .unwrap_or(u32::MAX)
    }
}

/// The cache, its counters, and whether it is on.
#[derive(Debug)]
pub struct PageCache {
    answers: Option<moka::future::Cache<Key, Arc<Answer>>>,
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl PageCache {
    /// Keeps answers for `ttl`; a zero `ttl` turns the cache off.
    pub fn new(ttl: Duration) -> PageCache {
        let answers = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(MAX_BYTES)
                .weigher(|key: &Key, answer: &Arc<Answer>| Answer::weight(key, answer))
                .build()
        });
        PageCache {
            answers,
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Forgets every answer (after a change this process made, such as an admin action),
    /// including those being rendered now: they are kept under the old generation, which no
    /// request asks for any more.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(answers) = &self.answers {
            answers.invalidate_all();
        }
    }

    /// Requests served an answer rendered for an earlier request (hits), and requests that
    /// rendered one (misses), so far. Requests that shared another's error answer are
    /// neither.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// Middleware on the public page and API routes: answers a GET from the cache when it can,
/// renders it once otherwise (concurrent requests for the same answer share that render).
pub(crate) async fn answer_cached(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let cache = state.page_cache();
    let Some(answers) = &cache.answers else {
        return next.run(request).await;
    };
    // HEAD (and anything else) goes straight through: GET is what people load.
    if request.method() != Method::GET {
        return next.run(request).await;
    }
    // Nested routers see the path without their prefix; the client's URI is the key.
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri(), |original| &original.0);
    let key = Key {
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        fragment: crate::pages::from_htmx(request.headers()),
        generation: cache.generation.load(Ordering::SeqCst),
    };
    let mut rendered = false;
    let result = answers
        .try_get_with(key, async {
            rendered = true;
            let answer = Answer::read(next.run(request).await).await;
            // Only a success is kept; the other waiters get an error answer too, unkept.
            if answer.status == StatusCode::OK {
                Ok(Arc::new(answer))
            } else {
                Err(answer)
            }
        })
        .await;
    match (&result, rendered) {
        (_, true) => cache.misses.fetch_add(1, Ordering::Relaxed),
        (Ok(_), false) => cache.hits.fetch_add(1, Ordering::Relaxed),
        (Err(_), false) => 0,
    };
    match result {
        Ok(answer) => answer.to_response(),
        Err(answer) => answer.to_response(),
    }
}
