//! One error type for every handler. Under `/api/` (and for downloads, which curl reads) the
//! body is JSON, `{"error": {"status": 404, "message": "…"}}` (`buildsrs_api::ErrorBody`);
//! pages get a small HTML page.
//! Bad input is always a 4xx with a message that says what was wrong; a 500 says nothing
//! about internals (the details go to the log).

use axum::Json;
use axum::extract::OriginalUri;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use buildsrs_api::ErrorBody;
use buildsrs_storage::StorageError;
use buildsrs_store::StoreError;

/// What went wrong, as HTTP sees it.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The request is malformed: a bad name, version, hash, form field.
    #[error("{0}")]
    BadRequest(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// The action does not fit the current state (e.g. approving a revoked builder).
    #[error("{0}")]
    Conflict(String),
    /// Admin pages need a valid session.
    #[error("{0}")]
    Unauthorized(String),
    /// A form without a valid CSRF token, or admin disabled.
    #[error("{0}")]
    Forbidden(String),
    /// A method the route does not answer (`Allow` says which it does).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Too many attempts from one client (failed admin logins): try again after the seconds
    /// given.
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// A Range that starts past the end of the blob (with its size).
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// Our fault or a dependency's: logged, answered with a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            WebError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            WebError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told.
    pub fn public_message(&self) -> String {
        match self {
            WebError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                "internal error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// A 404 for "no such thing".
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        WebError::NotFound(format!("{what} not found"))
    }

    /// The page form of this error (an HTML body).
    pub fn into_page(self) -> Response {
        let status = self.status();
        let message = escape(&self.public_message());
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{code} · buildsrs</title><link rel=\"stylesheet\" href=\"/static/style.css\">\
             </head><body><header class=\"top\"><a class=\"brand\" href=\"/\">buildsrs</a></header>\
             <main><h1>{code}</h1><p class=\"error\">{message}</p><p><a href=\"/\">Home</a></p>\
             </main></body></html>",
            code = status.as_u16(),
        );
        let retry_after = match &self {
            WebError::TooManyRequests(_, seconds) => Some(*seconds),
            _ => None,
        };
        let mut response = (status, Html(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody::new(status.as_u16(), self.public_message());
        let mut response = (status, Json(body)).into_response();
        if let WebError::RangeNotSatisfiable(size) = self
            && let Ok(value) = format!("bytes */{size}").parse()
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        response
    }
}

impl From<StoreError> for WebError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(message) => WebError::BadRequest(message),
            StoreError::NotFound(message) => WebError::NotFound(format!("{message} not found")),
            StoreError::Conflict(message) => WebError::Conflict(message),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<StorageError> for WebError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::InvalidHash(message) => WebError::BadRequest(message),
            StorageError::RangeNotSatisfiable { size, .. } => WebError::RangeNotSatisfiable(size),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<buildsrs_storage::http::HttpError> for WebError {
    fn from(error: buildsrs_storage::http::HttpError) -> Self {
        use buildsrs_storage::http::HttpError;
        match error {
            HttpError::BadRequest(message) => WebError::BadRequest(message),
            HttpError::NotFound(_) => WebError::NotFound(error.to_string()),
            HttpError::RangeNotSatisfiable(size) => WebError::RangeNotSatisfiable(size),
            HttpError::Internal(message) => WebError::Internal(message),
        }
    }
}

impl From<minijinja::Error> for WebError {
    fn from(error: minijinja::Error) -> Self {
        WebError::Internal(format!("template: {error:#}"))
    }
}

/// A handler result rendered as an HTML page on error.
#[derive(Debug)]
pub struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(error: E) -> Self {
        PageError(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.into_page()
    }
}

/// The fallback: JSON under `/api/`, a page elsewhere.
/// (The original URI: inside `/api/v1` the nested router sees the path without its prefix.)
pub async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    let error = WebError::NotFound(format!("no page at {}", uri.path()));
    if uri.path().starts_with("/api/") {
        error.into_response()
    } else {
        error.into_page()
    }
}

/// HTML-escapes text for the few bodies built without a template.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}
