//! The operator's pages: approve builders (naming who runs each key, its [`Operator`]: keys
//! of one operator count once toward a quorum) and revoke them, watch and unwatch crates,
//! retry a stopped task, change a task's quorum.
//!
//! Access: the operator logs in with the admin token (from config or the environment;
//! compared in constant time, by hash so not even its length leaks) and gets a session
//! cookie (random, `HttpOnly`, `SameSite=Strict`, 12 hours, kept in memory: a restart logs
//! everyone out). Every form carries the session's CSRF token, and a POST whose `Origin`
//! names another host is refused before anything else is looked at.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use buildsrs_domain::{CrateName, Operator};
use buildsrs_keys::Blake3Hash;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::WebState;
use crate::error::{PageError, WebError};
use crate::params::{HtmlQuery, parse, parse_builder_key, parse_task_id};

/// The session cookie's name.
pub const COOKIE: &str = "buildsrs_admin";

/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Failed logins one client may make within [`LOGIN_WINDOW`] before it is refused until
/// the oldest of them is that old.
const MAX_FAILED_LOGINS: usize = 5;
/// The window failed logins are counted in.
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The most clients whose failed logins are remembered (the oldest are forgotten first).
const MAX_LOGIN_CLIENTS: usize = 10_000;

/// How often the server drops expired sessions and failed logins older than the window
/// ([`purge_every`]), so that memory is given back without waiting for the next login.
pub(crate) const PURGE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The admin token and the live sessions.
pub struct Admin {
    token_hash: Option<Blake3Hash>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Recent failed logins per client address (`None`: the address is not known).
    failed_logins: Mutex<HashMap<Option<IpAddr>, Vec<Instant>>>,
}

#[derive(Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

impl std::fmt::Debug for Admin {
    // Never the token's hash or the session ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("enabled", &self.token_hash.is_some())
            .finish_non_exhaustive()
    }
}

impl Admin {
    pub(crate) fn new(token: Option<String>) -> Self {
        Admin {
            token_hash: token
                .filter(|t| !t.is_empty())
                .map(|t| Blake3Hash::of_bytes(t.as_bytes())),
            sessions: Mutex::new(HashMap::new()),
            failed_logins: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a login attempt from `client`: refused without looking at the token while the
    /// client has [`MAX_FAILED_LOGINS`] failures within [`LOGIN_WINDOW`]; a wrong token is
    /// counted. Guessing the token is then a few tries per quarter hour per address.
    fn check_login(&self, client: Option<IpAddr>, given: &str) -> Result<(), WebError> {
        let now = Instant::now();
        {
            let mut failed = self.failed_logins.lock().unwrap_or_else(|e| e.into_inner());
            let recent = failed.entry(client).or_default();
            recent.retain(|at| now.duration_since(*at) < LOGIN_WINDOW);
            if recent.len() >= MAX_FAILED_LOGINS {
                let wait = recent.first().map_or(LOGIN_WINDOW, |oldest| {
                    LOGIN_WINDOW - now.duration_since(*oldest)
                });
                return Err(WebError::TooManyRequests(
                    format!(
                        "too many failed logins from this address; try again in {} minutes",
                        wait.as_secs().div_ceil(60)
                    ),
                    wait.as_secs().max(1),
                ));
            }
        }
        let checked = self.check_token(given);
        if matches!(checked, Err(WebError::Unauthorized(_))) {
            let mut failed = self.failed_logins.lock().unwrap_or_else(|e| e.into_inner());
            if failed.len() >= MAX_LOGIN_CLIENTS && !failed.contains_key(&client) {
                failed.retain(|_, times| {
                    times.retain(|at| now.duration_since(*at) < LOGIN_WINDOW);
                    !times.is_empty()
                });
                if failed.len() >= MAX_LOGIN_CLIENTS {
                    failed.clear();
                }
            }
            failed.entry(client).or_default().push(now);
        }
        checked
    }

    fn enabled(&self) -> Result<&Blake3Hash, WebError> {
        self.token_hash.as_ref().ok_or_else(|| {
            WebError::Forbidden(
                "the admin pages are disabled: start the coordinator with an admin token"
                    .to_owned(),
            )
        })
    }

    fn check_token(&self, given: &str) -> Result<(), WebError> {
        let expected = self.enabled()?;
        let given = Blake3Hash::of_bytes(given.as_bytes());
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(WebError::Unauthorized("wrong admin token".to_owned()))
        }
    }

    fn login(&self) -> Result<(String, Session), WebError> {
        let session = Session {
            csrf: random_token()?,
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let id = random_token()?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// Drops the sessions expired at `now` and the failed logins older than the window;
    /// returns how many sessions went. (A session is also refused when expired, purged or
    /// not: this is about memory.)
    fn purge_expired(&self, now: Instant) -> usize {
        let purged = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let before = sessions.len();
            sessions.retain(|_, s| s.expires > now);
            before - sessions.len()
        };
        let mut failed = self.failed_logins.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, times| {
            times.retain(|at| now.saturating_duration_since(*at) < LOGIN_WINDOW);
            !times.is_empty()
        });
        purged
    }

    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(&id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| (id, s.clone()))
    }

    fn logout(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(id);
    }

    /// The session of a form post, with its CSRF token checked.
    fn authorize(&self, headers: &HeaderMap, csrf: &str) -> Result<(), WebError> {
        self.enabled()?;
        let (_, session) = self
            .session(headers)
            .ok_or_else(|| WebError::Unauthorized("log in as admin first".to_owned()))?;
        if bool::from(session.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "the form's CSRF token does not match your session; reload the page".to_owned(),
            ))
        }
    }
}

/// Purges expired sessions and old failed logins every `every` until `stop`: run by
/// [`crate::serve`] with [`PURGE_INTERVAL`]. Before, sessions were purged only at a login, so
/// a server nobody logged in to again kept every expired one.
pub(crate) async fn purge_every(admin: &Admin, every: Duration, stop: &CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let purged = admin.purge_expired(Instant::now());
        if purged > 0 {
            tracing::debug!("purged {purged} expired admin session(s)");
        }
    }
}

/// 32 random bytes in hex.
fn random_token() -> Result<String, WebError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| WebError::Internal(format!("no randomness for a session: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Refuses a cross-site form post: an `Origin` header must name the host asked.
fn same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Browsers send Origin on every cross-site POST; its absence means same-site or
        // not a browser (curl), and the CSRF token still has to match.
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(WebError::Forbidden(format!(
            "a form posted from {origin} is refused here"
        )))
    }
}

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/builders/approve", post(approve))
        .route("/admin/builders/revoke", post(revoke))
        .route("/admin/crates/watch", post(watch))
        .route("/admin/crates/unwatch", post(unwatch))
        .route("/admin/tasks/retry", post(retry))
        .route("/admin/tasks/quorum", post(quorum))
}

#[derive(Debug, Deserialize)]
struct DashboardQuery {
    done: Option<String>,
}

/// What an action reports back through the redirect (a fixed set: nothing echoed).
fn done_message(done: &str) -> Option<&'static str> {
    Some(match done {
        "approved" => "Builder approved.",
        "revoked" => "Builder revoked.",
        "watched" => {
            "Crate watched: its newest version (and any backfill) is planned, and \
                      what it publishes next."
        }
        "unwatched" => "Crate no longer watched.",
        "retried" => "Task requeued.",
        "quorum" => "Quorum changed; the task was decided again.",
        _ => return None,
    })
}

async fn dashboard(
    State(state): State<WebState>,
    headers: HeaderMap,
    HtmlQuery(query): HtmlQuery<DashboardQuery>,
) -> Result<Response, PageError> {
    state.admin().enabled()?;
    let Some((_, session)) = state.admin().session(&headers) else {
        return Ok(state
            .templates()
            .render("admin_login.html", json!({}))?
            .into_response());
    };
    let mut builders = state.store().builders().await?;
    builders.sort_by_key(|b| b.status != buildsrs_store::BuilderStatus::Pending);
    let watched = state.store().watched_crates().await?;
    let done = query.done.as_deref().and_then(done_message);
    Ok(state
        .templates()
        .render(
            "admin.html",
            json!({
                "csrf": session.csrf,
                "builders": builders,
                "watched": watched,
                "done": done,
            }),
        )?
        .into_response())
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

/// The address the request came from, when the server knows it (served by [`crate::serve`];
/// a router called without a socket, as in tests, does not).
struct ClientIp(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let connected = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(connected.map(|ConnectInfo(address)| address.ip())))
    }
}

async fn login(
    State(state): State<WebState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    state.admin().check_login(client, &form.token)?;
    let (id, _) = state.admin().login()?;
    let secure = if state.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    );
    let mut response = Redirect::to("/admin").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    state.admin().authorize(&headers, &form.csrf)?;
    if let Some((id, _)) = state.admin().session(&headers) {
        state.admin().logout(&id);
    }
    let mut response = Redirect::to("/admin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("buildsrs_admin=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// Runs an action after the origin and CSRF checks, then sends the browser back to the
/// dashboard with a fixed message.
async fn act<F>(
    state: &WebState,
    headers: &HeaderMap,
    csrf: &str,
    done: &str,
    action: F,
) -> Result<Response, PageError>
where
    F: Future<Output = Result<(), WebError>>,
{
    same_origin(headers)?;
    state.admin().authorize(headers, csrf)?;
    action.await?;
    // The operator should see their change on the next page they open, not a TTL later.
    state.page_cache().clear();
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/admin?done={done}"))],
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct BuilderForm {
    csrf: String,
    key: String,
    reason: Option<String>,
    /// Who runs the key (approve only); empty: the key is its own operator.
    operator: Option<String>,
}

async fn approve(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<BuilderForm>,
) -> Result<Response, PageError> {
    act(&state, &headers, &form.csrf, "approved", async {
        let key = parse_builder_key(form.key.trim())?;
        let operator = form.operator.as_deref().map(str::trim).unwrap_or_default();
        let now = Timestamp::now();
        if operator.is_empty() {
            return Ok(state.store().approve_builder(&key, now).await?);
        }
        let operator = parse::<Operator>(operator)?;
        Ok(state
            .store()
            .approve_builder_as(&key, &operator, now)
            .await?)
    })
    .await
}

async fn revoke(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<BuilderForm>,
) -> Result<Response, PageError> {
    act(&state, &headers, &form.csrf, "revoked", async {
        let key = parse_builder_key(form.key.trim())?;
        let reason = form
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .unwrap_or("revoked by the operator in the admin UI");
        state
            .store()
            .revoke_builder(&key, reason, Timestamp::now())
            .await?;
        Ok(())
    })
    .await
}

#[derive(Debug, Deserialize)]
struct CrateForm {
    csrf: String,
    name: String,
    /// Older versions to build besides the newest (watch only; empty means 0).
    backfill: Option<String>,
}

/// The most older versions the admin form plans at once; more is a typo more often than not.
const MAX_FORM_BACKFILL: u32 = 1000;

fn parse_backfill(text: Option<&str>) -> Result<u32, WebError> {
    let text = text.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u32>()
        .ok()
        .filter(|n| *n <= MAX_FORM_BACKFILL)
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "backfill {text:?} is not a number of older versions from 0 to \
                 {MAX_FORM_BACKFILL}"
            ))
        })
}

async fn watch(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CrateForm>,
) -> Result<Response, PageError> {
    act(&state, &headers, &form.csrf, "watched", async {
        let name = parse::<CrateName>(form.name.trim())?;
        let backfill = parse_backfill(form.backfill.as_deref())?;
        state
            .store()
            .watch_crate(name.as_str(), backfill, Timestamp::now())
            .await?;
        Ok(())
    })
    .await
}

async fn unwatch(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CrateForm>,
) -> Result<Response, PageError> {
    act(&state, &headers, &form.csrf, "unwatched", async {
        let name = parse::<CrateName>(form.name.trim())?;
        state
            .store()
            .unwatch_crate(name.as_str(), Timestamp::now())
            .await?;
        Ok(())
    })
    .await
}

#[derive(Debug, Deserialize)]
struct TaskForm {
    csrf: String,
    task: String,
    quorum: Option<String>,
}

async fn retry(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<TaskForm>,
) -> Result<Response, PageError> {
    act(&state, &headers, &form.csrf, "retried", async {
        let task = parse_task_id(form.task.trim())?;
        Ok(state.store().retry_task(task, Timestamp::now()).await?)
    })
    .await
}

async fn quorum(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<TaskForm>,
) -> Result<Response, PageError> {
    act(&state, &headers, &form.csrf, "quorum", async {
        let task = parse_task_id(form.task.trim())?;
        let text = form.quorum.as_deref().unwrap_or("").trim();
        let quorum = text
            .parse::<u32>()
            .map_err(|_| WebError::BadRequest(format!("quorum {text:?} is not a number")))?;
        state
            .store()
            .set_task_quorum(task, quorum, Timestamp::now())
            .await?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(admin: &Admin) -> usize {
        admin.sessions.lock().map(|s| s.len()).unwrap_or(usize::MAX)
    }

    /// An admin logs in and never again: their expired session (and someone's failed
    /// logins) must not stay in memory for as long as the server runs.
    #[tokio::test]
    async fn expired_sessions_are_purged_on_a_timer_without_a_login() -> Result<(), WebError> {
        let admin = Admin::new(Some("a token long enough to be used".to_owned()));
        let (_, expiring) = admin.login()?;
        let (live_id, _) = admin.login()?;
        admin.check_login(None, "wrong").unwrap_err();
        assert_eq!(sessions(&admin), 2);
        // Nothing has expired yet: a purge keeps everything.
        assert_eq!(admin.purge_expired(Instant::now()), 0);
        assert_eq!(sessions(&admin), 2);
        // The first session's time runs out (its expiry is moved to the past, as twelve
        // hours would).
        {
            let mut all = admin.sessions.lock().unwrap_or_else(|e| e.into_inner());
            for session in all.values_mut() {
                if session.csrf == expiring.csrf {
                    session.expires = Instant::now();
                }
            }
        }
        // The timer purges it, with no login in between.
        let stop = CancellationToken::new();
        let watch = async {
            for _ in 0..500 {
                if sessions(&admin) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
        };
        tokio::join!(purge_every(&admin, Duration::from_millis(5), &stop), watch);
        assert_eq!(sessions(&admin), 1);
        assert!(
            admin
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&live_id),
            "the live session stays"
        );
        // Twelve hours on, the other session has expired too, and the failed login is older
        // than the window: both go.
        let later = Instant::now() + SESSION_LIFETIME;
        assert_eq!(admin.purge_expired(later), 1);
        assert!(
            admin
                .failed_logins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
        );
        Ok(())
    }
}
