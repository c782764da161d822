//! What can go wrong while following an index.
//!
//! None of these stop a follower: a crate whose fetch failed keeps its last known state and
//! is fetched again next round; an index that cannot be reached at all is retried with
//! backoff by the `follow` drivers.

/// Why fetching or reading (part of) an index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index URL is not one we can follow.
    #[error("index URL {url:?}: {message}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A watched name is not a crate name.
    #[error("{0}")]
    InvalidName(String),
    /// The HTTP client could not be built.
    #[cfg(feature = "follow")]
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request failed before an answer came (connection refused, timeout, TLS, ...).
    #[cfg(feature = "follow")]
    #[error("GET {url}: {source}")]
    Http {
        /// What was requested.
        url: String,
        /// What the client said.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status we cannot use.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// What was requested.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer was larger than we accept.
    #[error("GET {url}: body larger than {limit} bytes")]
    TooLarge {
        /// What was requested.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The index's `config.json` is missing or unusable.
    #[error("index config.json: {0}")]
    Config(String),
    /// Reading the git index failed.
    #[error("git index: {0}")]
    Git(String),
}

impl IndexError {
    /// Whether this error says the index could not be reached at all (as opposed to one
    /// crate's answer being bad): connection failures, timeouts and 5xx answers.
    pub fn is_unreachable(&self) -> bool {
        match self {
            #[cfg(feature = "follow")]
            Self::Http { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
