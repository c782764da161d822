//! What the `buildsrs` tests share: running the binary, and a proxy in front of the
//! coordinator that can change, slow down or count what passes (the stand-in for a
//! compromised or failing server).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::response::IntoResponse;

pub const BIN: &str = env!("CARGO_BIN_EXE_buildsrs");
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Runs `buildsrs` with no keyring or coordinator from the environment.
pub fn buildsrs(args: &[&str]) -> Output {
    command(args).output().unwrap()
}

/// `buildsrs` ready to spawn.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("BUILDSRS_KEYRING")
        .env_remove("BUILDSRS_COORDINATOR")
        .env_remove("BUILDSRS_REGISTRY")
        // No default keyring from the machine's user.
        .env("XDG_CONFIG_HOME", "/nonexistent");
    command
}

/// Stdout and stderr together.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// Rewrites a response body, given the request path.
pub type Tamper = Arc<dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// What a proxy does to `/blobs/` requests besides forwarding.
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    /// `/blobs/` requests seen.
    pub blob_requests: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    tamper: Tamper,
    /// Blob requests after this many hang (a server that stalls mid-mirror).
    stall_after: Option<usize>,
    blob_requests: Arc<AtomicUsize>,
}

impl Proxy {
    /// Forwards to `upstream`, passing bodies through `tamper`.
    pub async fn start(
        upstream: &str,
        tamper: impl Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync + 'static,
    ) -> Result<Proxy> {
        Self::start_with(upstream, Arc::new(tamper), None).await
    }

    /// Forwards, and hangs every blob request after the first `n`.
    pub async fn stalling(upstream: &str, n: usize) -> Result<Proxy> {
        Self::start_with(upstream, Arc::new(|_, body| body), Some(n)).await
    }

    async fn start_with(
        upstream: &str,
        tamper: Tamper,
        stall_after: Option<usize>,
    ) -> Result<Proxy> {
        let blob_requests = Arc::new(AtomicUsize::new(0));
        let state = ProxyState {
            upstream: upstream.to_owned(),
            tamper,
            stall_after,
            blob_requests: blob_requests.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Proxy { url, blob_requests })
    }

    pub fn blob_requests(&self) -> usize {
        self.blob_requests.load(Ordering::SeqCst)
    }
}

async fn forward(
    State(state): State<ProxyState>,
    OriginalUri(uri): OriginalUri,
) -> impl IntoResponse {
    if uri.path().starts_with("/blobs/") {
        let seen = state.blob_requests.fetch_add(1, Ordering::SeqCst);
        if state.stall_after.is_some_and(|n| seen >= n) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let response = reqwest::get(format!("{}{uri}", state.upstream))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap().to_vec();
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        Bytes::from((state.tamper)(uri.path(), body)),
    )
}
