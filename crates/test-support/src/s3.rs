//! A bucket of its own on the test S3 server: moto, at `BUILDSRS_TEST_S3_ENDPOINT`
//! (`scripts/ensure-moto` starts one and prints the URL to set; `scripts/test` does both).
//!
//! Without the variable, [`TestBucket::create`] follows the crate's rule ([`crate::skip`]):
//! locally it prints a loud `SKIPPED` line and answers `None`, under `CI=true` it is an error.
//!
//! object_store, which `buildsrs-storage` speaks S3 with, cannot create or delete buckets,
//! and moto takes both requests unsigned. So this sends one plain HTTP/1.1 request over a std
//! TCP stream rather than building an HTTP client into a crate every test may use. It blocks,
//! briefly: one request to a server on the same machine. It talks to the server directly,
//! never through a proxy from the environment.
//!
//! The caller turns a bucket into its own storage configuration (this crate knows nothing of
//! `buildsrs-storage`, which itself uses it):
//!
//! ```no_run
//! # fn demo() -> Result<(), buildsrs_test_support::s3::S3Error> {
//! use buildsrs_test_support::s3::TestBucket;
//!
//! let Some(bucket) = TestBucket::create("s3_round_trip")? else {
//!     return Ok(()); // skipped
//! };
//! // StorageConfig::S3 { endpoint: bucket.endpoint.clone(), bucket: bucket.name.clone(),
//! //     region: TestBucket::REGION.into(), .. }
//! // … the test, then (S3 deletes only empty buckets) empty it and:
//! bucket.delete()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::MustRun;

/// The environment variable that holds the test S3 server's URL.
pub const ENDPOINT_VAR: &str = "BUILDSRS_TEST_S3_ENDPOINT";

/// The longest one request to the test server may take (connecting, then each read or write):
/// moto answers in milliseconds, and a test must not hang on a server that stopped.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A bucket created for one test on the test S3 server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestBucket {
    /// The server's URL, without a trailing `/` (`http://127.0.0.1:5055`).
    pub endpoint: String,
    /// The bucket's name, unique to this process and call.
    pub name: String,
}

impl TestBucket {
    /// The region to configure (moto takes any; this is its default).
    pub const REGION: &str = "us-east-1";
    /// The access key to configure (moto takes any).
    pub const ACCESS_KEY_ID: &str = "buildsrs-test";
    /// The secret key to configure (moto takes any).
    pub const SECRET_ACCESS_KEY: &str = "buildsrs-test-secret";

    /// A fresh, empty bucket for the test `test` on the server at [`ENDPOINT_VAR`]; `None`
    /// when the variable is not set and this is not CI ([`crate::skip`] printed why).
    pub fn create(test: &str) -> Result<Option<TestBucket>, S3Error> {
        let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
            crate::skip(
                test,
                "BUILDSRS_TEST_S3_ENDPOINT is not set (scripts/ensure-moto starts a moto \
                 server and prints the URL to set; scripts/test does both)",
            )?;
            return Ok(None);
        };
        // Unique across the tests of one process (the counter) and across processes that
        // share one server (the process id and the clock; moto keeps buckets until it stops).
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let bucket = TestBucket {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            name: format!(
                "buildsrs-test-{}-{nanos}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        };
        bucket.request("PUT", "creating")?;
        Ok(Some(bucket))
    }

    /// Deletes the bucket, which must be empty (S3's rule): moto keeps everything in memory
    /// until it stops, so a test that stores much cleans up after itself.
    pub fn delete(self) -> Result<(), S3Error> {
        self.request("DELETE", "deleting")
    }

    /// Sends `method /<bucket>` with an empty body and wants a 2xx answer; `doing` names the
    /// action in errors.
    fn request(&self, method: &str, doing: &str) -> Result<(), S3Error> {
        let what = format!("{doing} bucket {} at {}", self.name, self.endpoint);
        let fail = |why: String| S3Error::Failed {
            what: what.clone(),
            why,
        };
        // `http://host:port[/base]`: moto speaks plain HTTP, and that is all this speaks.
        let rest = self.endpoint.strip_prefix("http://").ok_or_else(|| {
            fail(format!(
                "{ENDPOINT_VAR} must be an http:// URL, not {:?}",
                self.endpoint
            ))
        })?;
        let (authority, base) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut addresses = if authority.contains(':') {
            authority.to_socket_addrs()
        } else {
            (authority, 80).to_socket_addrs()
        }
        .map_err(|e| fail(format!("resolving {authority}: {e}")))?;
        let address = addresses
            .next()
            .ok_or_else(|| fail(format!("{authority} resolves to no address")))?;
        let io = |e: std::io::Error| fail(e.to_string());
        let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        // `Connection: close`, so the answer ends where the stream does.
        let head = format!(
            "{method} {base}/{name} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            name = self.name
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        // The status line, and enough of an error's body (S3's XML) to say why.
        let mut answer = Vec::new();
        stream.take(64 << 10).read_to_end(&mut answer).map_err(io)?;
        let answer = String::from_utf8_lossy(&answer);
        let status_line = answer.lines().next().unwrap_or("");
        let status = status_line.split(' ').nth(1).unwrap_or("");
        if status.len() == 3 && status.starts_with('2') {
            return Ok(());
        }
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Err(fail(format!("answered {status_line:?}: {}", body.trim())))
    }
}

/// Why [`TestBucket`] could not give a test its bucket.
#[derive(Clone, PartialEq, Eq)]
pub enum S3Error {
    /// There is no test S3 server, and this is CI.
    MustRun(MustRun),
    /// The server could not be reached, or refused.
    Failed {
        /// What was being done: `creating bucket … at …`.
        what: String,
        /// Why it failed.
        why: String,
    },
}

impl From<MustRun> for S3Error {
    fn from(error: MustRun) -> Self {
        S3Error::MustRun(error)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::MustRun(error) => fmt::Display::fmt(error, f),
            S3Error::Failed { what, why } => write!(f, "{what}: {why}"),
        }
    }
}

// Debug as Display, so that `.unwrap()` and a test's `Err` show the sentence.
impl fmt::Debug for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for S3Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot server on loopback that answers `answer` and hands back the request.
    fn server(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn a_bucket_is_made_and_deleted_by_plain_requests_and_a_refusal_says_why() {
        let (url, handle) = server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let bucket = TestBucket {
            endpoint: url.trim_end_matches('/').to_owned(),
            name: "buildsrs-test-1".into(),
        };
        bucket.request("PUT", "creating").unwrap();
        let request = handle.join().unwrap();
        assert!(
            request.starts_with("PUT /buildsrs-test-1 HTTP/1.1\r\n"),
            "{request}"
        );

        let (url, handle) = server(
            "HTTP/1.1 409 Conflict\r\nContent-Length: 30\r\n\r\n<Code>BucketNotEmpty</Code>\r\n",
        );
        let bucket = TestBucket {
            endpoint: url.trim_end_matches('/').to_owned(),
            name: "buildsrs-test-2".into(),
        };
        let error = bucket.delete().unwrap_err();
        assert!(
            handle
                .join()
                .unwrap()
                .starts_with("DELETE /buildsrs-test-2 ")
        );
        let text = error.to_string();
        assert!(
            text.starts_with("deleting bucket buildsrs-test-2 at http://127.0.0.1:"),
            "{text}"
        );
        assert!(
            text.contains("409 Conflict") && text.contains("BucketNotEmpty"),
            "{text}"
        );
    }
}
