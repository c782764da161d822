//! Path and query parameters, parsed into types before any handler uses them. Every parser
//! refuses with a [`WebError::BadRequest`] that says what a valid value looks like, so bad
//! input is a 400, never a 500 and never a path into storage.
//!
//! The rules are the registry's and the attestation format's own (`buildsrs_keys::statement`),
//! so the web layer accepts exactly what the rest of the system can hold.

use buildsrs_api::params::{SearchText, VersionRef};
use std::fmt::Display;
use std::str::FromStr;

use axum::extract::{FromRequestParts, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use buildsrs_domain::{Blake3Hash, CrateVersion, PublicKey};
use buildsrs_store::{CrateInfo, Page, TaskId, VersionSummary};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{PageError, WebError};

/// Parses a path or form value into its domain type ([`CrateName`], [`TargetTriple`], ...) by
/// that type's one rule; a refusal is a 400 that says what a valid value looks like.
pub fn parse<T>(text: &str) -> Result<T, WebError>
where
    T: FromStr,
    T::Err: Display,
{
    text.parse()
        .map_err(|error: T::Err| WebError::BadRequest(error.to_string()))
}

/// The query string of `uri` as `T`. One that does not deserialize (a parameter given twice,
/// a value of the wrong form) is a 400 that says which parameter and why, never axum's own
/// plain-text refusal: the API answers it as JSON ([`crate::api::ApiQuery`]), pages as a page
/// ([`HtmlQuery`]).
pub(crate) fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, WebError> {
    match Query::<T>::try_from_uri(uri) {
        Ok(Query(value)) => Ok(value),
        // "Failed to deserialize query string: limit: …": the parameter and why is enough.
        Err(rejection) => {
            let text = rejection.body_text();
            Err(WebError::BadRequest(
                text.strip_prefix("Failed to deserialize query string: ")
                    .map_or_else(|| text.clone(), str::to_owned),
            ))
        }
    }
}

/// The query string of an HTML page (public or admin), as [`query`] reads it; a refusal is
/// the page's 400, an HTML page like every other error of a page.
#[derive(Debug)]
pub(crate) struct HtmlQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for HtmlQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(HtmlQuery(query(&parts.uri)?))
    }
}

/// A version in a URL: exact semver, or `latest` (the newest non-yanked release).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionParam {
    /// The newest version that is not yanked (a pre-release only if there is nothing else).
    Latest,
    /// This version.
    Exact(CrateVersion),
}

impl VersionParam {
    /// Parses `latest` or a canonical semver version.
    pub fn parse(text: &str) -> Result<Self, WebError> {
        if text == "latest" {
            return Ok(VersionParam::Latest);
        }
        parse(text).map(VersionParam::Exact)
    }

    /// The version this names among a crate's versions, if any.
    pub fn resolve<'a>(&self, info: &'a CrateInfo) -> Option<&'a VersionSummary> {
        match self {
            VersionParam::Exact(version) => info.versions.iter().find(|v| &v.version == version),
            VersionParam::Latest => latest(&info.versions),
        }
    }
}

impl From<&VersionRef> for VersionParam {
    /// A version the API's parameters parsed (by the same rules).
    fn from(version: &VersionRef) -> Self {
        match version {
            VersionRef::Latest => VersionParam::Latest,
            VersionRef::Exact(version) => VersionParam::Exact(version.clone()),
        }
    }
}

/// The newest non-yanked version by semver order, preferring releases to pre-releases.
pub fn latest(versions: &[VersionSummary]) -> Option<&VersionSummary> {
    let candidates = versions.iter().filter(|v| !v.yanked).filter_map(|v| {
        semver::Version::parse(&v.version)
            .ok()
            .map(|parsed| (parsed, v))
    });
    candidates
        .max_by(|(a, _), (b, _)| {
            (a.pre.is_empty(), a)
                .partial_cmp(&(b.pre.is_empty(), b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|(_, v)| v)
}

/// A BLAKE3 hash: exactly 64 lowercase hex digits.
pub fn parse_hash(text: &str) -> Result<Blake3Hash, WebError> {
    text.parse().map_err(|_| {
        WebError::BadRequest(format!(
            "{:?} is not a BLAKE3 hash (64 lowercase hex digits)",
            truncate(text)
        ))
    })
}

/// A builder key: `ed25519:<64 hex>`, or the 64 hex digits alone.
pub fn parse_builder_key(text: &str) -> Result<PublicKey, WebError> {
    let full = if text.starts_with("ed25519:") {
        text.to_owned()
    } else {
        format!("ed25519:{text}")
    };
    full.parse().map_err(|_| {
        WebError::BadRequest(format!(
            "{:?} is not a builder key (ed25519:<64 lowercase hex digits>)",
            truncate(text)
        ))
    })
}

/// A task or result id: a positive integer.
pub fn parse_id(text: &str, what: &str) -> Result<i64, WebError> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(WebError::BadRequest(format!(
            "{:?} is not a {what} id (a positive integer)",
            truncate(text)
        ))),
    }
}

/// A task id.
pub fn parse_task_id(text: &str) -> Result<TaskId, WebError> {
    text.parse().map_err(|_| {
        WebError::BadRequest(format!(
            "{:?} is not a task id (a positive integer)",
            truncate(text)
        ))
    })
}

/// `?offset=&limit=` and, for searches, `?q=`. Fields are text so that a malformed number
/// gets our message rather than the extractor's.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Search text.
    pub q: Option<String>,
    /// Items to skip.
    pub offset: Option<String>,
    /// Items per page.
    pub limit: Option<String>,
}

impl ListQuery {
    /// The page asked for; `default_limit` when none is given; at most 200 per page.
    pub fn page(&self, default_limit: u32) -> Result<Page, WebError> {
        let offset = match self.offset.as_deref() {
            None | Some("") => 0,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|o| *o <= 1_000_000)
                .ok_or_else(|| {
                    WebError::BadRequest(format!(
                        "offset {:?} is not a number from 0 to 1000000",
                        truncate(text)
                    ))
                })?,
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => default_limit,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=Page::MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    WebError::BadRequest(format!(
                        "limit {:?} is not a number from 1 to {}",
                        truncate(text),
                        Page::MAX_LIMIT
                    ))
                })?,
        };
        Ok(Page { offset, limit })
    }

    /// The search text, trimmed: at most 64 characters, no control characters (the API's
    /// rule, [`SearchText`]).
    pub fn search(&self) -> Result<String, WebError> {
        let q: SearchText =
            self.q.as_deref().unwrap_or("").parse().map_err(
                |e: buildsrs_api::params::ParamError| WebError::BadRequest(e.to_string()),
            )?;
        Ok(q.trimmed().to_owned())
    }
}

/// Cuts echoed input so an error message stays short.
fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildsrs_domain::{CrateName, Sha256Digest, TargetTriple};

    fn summary(version: &str, yanked: bool) -> VersionSummary {
        VersionSummary {
            version: version.parse().unwrap(),
            cksum: Sha256Digest::from_bytes([0; 32]),
            yanked,
            first_seen: jiff::Timestamp::UNIX_EPOCH,
            rust_version: None,
            plan: None,
            plan_note: None,
        }
    }

    #[test]
    fn latest_is_the_newest_unyanked_release() {
        let versions = [
            summary("1.2.0", true),
            summary("1.10.0-rc.1", false),
            summary("1.9.0", false),
            summary("1.1.0", false),
        ];
        assert_eq!(latest(&versions).map(|v| v.version.as_str()), Some("1.9.0"));
        let only_pre = [summary("0.1.0-alpha", false), summary("0.1.0-beta", false)];
        assert_eq!(
            latest(&only_pre).map(|v| v.version.as_str()),
            Some("0.1.0-beta")
        );
        assert!(latest(&[summary("1.0.0", true)]).is_none());
    }

    #[test]
    fn parameters_refuse_what_storage_must_never_see() {
        for bad in ["", "../etc", "a/b", "-x", "x".repeat(65).as_str(), "é"] {
            assert!(parse::<CrateName>(bad).is_err(), "{bad:?}");
        }
        for bad in ["1.0", "v1.0.0", "01.0.0", "latest/..", ""] {
            assert!(VersionParam::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["X86_64", "a/b", "..%2f", ""] {
            assert!(parse::<TargetTriple>(bad).is_err(), "{bad:?}");
        }
        assert!(parse_hash(&"A".repeat(64)).is_err());
        assert!(parse_hash(&"a".repeat(63)).is_err());
        assert!(parse_hash(&"a".repeat(64)).is_ok());
        assert!(parse_builder_key(&"z".repeat(64)).is_err());
        assert!(parse_builder_key("ed25519:").is_err());
        assert!(parse_task_id("0").is_err());
        assert!(parse_task_id("-1").is_err());
        assert_eq!(parse_task_id("7").ok(), Some(TaskId(7)));
        let query = ListQuery {
            limit: Some("201".into()),
            ..ListQuery::default()
        };
        assert!(query.page(20).is_err());
    }
}
