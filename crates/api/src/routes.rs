//! The routes of `/api/v1`, relative to [`PREFIX`], and the paths clients ask for.

use buildsrs_keys::CrateName;

use crate::params::{Cursor, Limit, VersionRef};

/// Where the API is on a coordinator.
pub const PREFIX: &str = "/api/v1";

/// `GET /crates?q=&offset=&limit=`.
pub const CRATES: &str = "/crates";
/// `GET /crates/{name}`.
pub const CRATE: &str = "/crates/{name}";
/// `GET /crates/{name}/{version}`.
pub const VERSION: &str = "/crates/{name}/{version}";
/// `GET /tasks/{id}`.
pub const TASK: &str = "/tasks/{id}";
/// `GET /artifacts/{hash}`.
pub const ARTIFACT: &str = "/artifacts/{hash}";
/// `GET /builders`.
pub const BUILDERS: &str = "/builders";
/// `GET /builders/{key}`.
pub const BUILDER: &str = "/builders/{key}";
/// `GET /queue?offset=&limit=`.
pub const QUEUE: &str = "/queue";
/// `GET /verified?since=&limit=`.
pub const VERIFIED: &str = "/verified";
/// `GET /openapi.json`.
pub const OPENAPI: &str = "/openapi.json";

/// Every route (the document and the server are both held to this list by tests).
pub const ALL: &[&str] = &[
    CRATES, CRATE, VERSION, TASK, ARTIFACT, BUILDERS, BUILDER, QUEUE, VERIFIED, OPENAPI,
];

/// The path of a version's answer: `/api/v1/crates/{name}/{version}`.
pub fn version(name: &CrateName, version: &VersionRef) -> String {
    format!("{PREFIX}/crates/{name}/{version}")
}

/// The path of a page of the feed: `/api/v1/verified?since=N&limit=L`.
pub fn feed(since: Cursor, limit: Limit) -> String {
    format!("{PREFIX}/verified?since={since}&limit={limit}")
}
