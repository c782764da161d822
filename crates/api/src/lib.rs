//! The contract of the coordinator's JSON API, `/api/v1`: the type of every path and query
//! parameter, of every answer and of the error body, and the OpenAPI document generated from
//! them.
//!
//! The coordinator's web layer parses requests into [`params`] and answers with [`answers`];
//! the `buildsrs` CLI and mirrors read the same [`answers`]; [`openapi::document`] describes
//! them all. No other crate declares these shapes.
//!
//! - [`params`]: path and query parameters, parsed once by the rules the document states.
//! - [`answers`]: what each route answers, and [`ErrorBody`], what every error is.
//! - [`routes`]: the routes, and the paths clients ask for.
//! - [`openapi`]: the OpenAPI 3.1 document.
//! - [`schema`]: the schemas of the `buildsrs-keys` types the API carries (names, versions,
//!   hashes, keys, attestations), so that crate stays free of any schema library.

pub mod answers;
pub mod openapi;
pub mod params;
pub mod routes;
pub mod schema;
mod text;

pub use answers::ErrorBody;
