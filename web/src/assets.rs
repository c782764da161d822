//! Static assets compiled into the binary (htmx, the stylesheet) and the security headers
//! every response carries.
//!
//! Nothing is fetched from elsewhere: htmx is vendored in `web/static/` (0BSD licence beside
//! it). The content security policy allows scripts and styles from this origin only and no
//! inline script, so the templates carry none; htmx's own inline indicator styles are turned
//! off in `base.html`.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::WebState;
use crate::error::{PageError, WebError};

/// The assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/htmx.min.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/style.css"),
    ),
];

/// The policy: this origin only, no inline script, no framing, forms post here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<WebState> {
    Router::new().route("/static/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, PageError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| WebError::not_found(format!("static file {file:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            // Assets change only with the binary; a day is a fair compromise.
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        *bytes,
    )
        .into_response())
}

/// Adds the security headers to every response.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
