//! Jobs as they enter the node, from a coordinator's lease (`run`) or the command line
//! (`build`): every field is input, and [`JobGate::accept`] turns a [`JobSpec`] into a
//! [`BuildRequest`] or refuses it, before any directory, state row or request is made from
//! it.
//!
//! A job from a coordinator arrives typed (the protocol decodes its fields by the domain's
//! rules); text from elsewhere ([`JobFields`]) is parsed into the same types by
//! [`JobFields::parse`]: the crate name ([`CrateName`], crates.io's rule), the version
//! ([`CrateVersion`], canonical semver), the target ([`TargetTriple`]), the checksum
//! ([`Sha256Digest`], 64 lowercase hex digits). The gate then checks what only this node can:
//! that it builds the target, and the download URL ([`DownloadUrl`]: `http` or `https`, no
//! user or password, and on the host the node's own registry downloads from). That host is the origin of the `dl`
//! template in the registry's `config.json`, read once per registry (within the download time
//! limit) and kept: a job cannot make the node send a request anywhere else, nor read a
//! `file://` URL.
//!
//! A refused job changes nothing: no directory, no job in the node state, no request to the
//! host it names. [`JobError::is_node_fault`] tells the one refusal that is this node's
//! trouble (it could not read its own registry's `config.json`) from a bad job.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use buildsrs_index::{IndexVersion, SparseFollower};
use buildsrs_keys::hash::DigestParseError;
use buildsrs_keys::{
    CrateName, CrateVersion, InvalidName, RegistryUrl, Sha256Digest, TargetTriple,
};
use reqwest::Url;

use crate::pipeline::BuildRequest;
use crate::state::JobLease;

/// What a job asks for, in the domain's types; the download URL is still text for the gate
/// to check against this node's registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    /// Crate name.
    pub crate_name: CrateName,
    /// Version.
    pub version: CrateVersion,
    /// Target triple.
    pub target: TargetTriple,
    /// The index checksum of the `.crate`.
    pub source_sha256: Sha256Digest,
    /// Where to download the `.crate`.
    pub download_url: String,
}

/// A job's fields as text (the command line, tests), unchecked.
#[derive(Clone, Copy, Debug)]
pub struct JobFields<'a> {
    /// Crate name.
    pub crate_name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Target triple.
    pub target: &'a str,
    /// The index checksum of the `.crate`.
    pub source_sha256: &'a str,
    /// Where to download the `.crate`.
    pub download_url: &'a str,
}

impl JobFields<'_> {
    /// Parses each field into its one type.
    pub fn parse(&self) -> Result<JobSpec, JobError> {
        Ok(JobSpec {
            crate_name: self.crate_name.parse().map_err(JobError::CrateName)?,
            version: self.version.parse().map_err(JobError::Version)?,
            target: self.target.parse().map_err(JobError::Target)?,
            source_sha256: self.source_sha256.parse().map_err(JobError::Checksum)?,
            download_url: self.download_url.to_owned(),
        })
    }
}

/// Why a job was refused.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The crate name is not one crates.io allows.
    #[error("refused job: crate name: {0}")]
    CrateName(InvalidName),
    /// The version is not canonical semver.
    #[error("refused job: version: {0}")]
    Version(InvalidName),
    /// The target is not a triple.
    #[error("refused job: target: {0}")]
    Target(InvalidName),
    /// The target is a triple this node does not build.
    #[error("refused job: this node does not build target {target} (it builds {allowed})")]
    TargetNotBuilt {
        /// The job's target.
        target: TargetTriple,
        /// The node's configured targets.
        allowed: String,
    },
    /// The checksum is not a SHA-256 digest.
    #[error("refused job: source checksum: {0}")]
    Checksum(DigestParseError),
    /// The download URL is not one the node fetches.
    #[error("refused job: download URL {url:?}: {reason}")]
    DownloadUrl {
        /// The URL (cut short when long).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The job's source checksum is not the one this node's own read of its registry's index
    /// lists for the version: the job's source is not the registry's. Reported to the
    /// coordinator as a source checksum mismatch, never built.
    #[error("refused job: {0}")]
    ChecksumDiffers(Box<ChecksumDiffers>),
    /// The registry's index, as this node reads it, does not list the version.
    #[error(
        "refused job: {crate_name} has no version {version} in this node's index of {registry}"
    )]
    NotInIndex {
        /// The crate.
        crate_name: CrateName,
        /// The version.
        version: CrateVersion,
        /// The registry's index URL.
        registry: RegistryUrl,
    },
    /// The node could not learn where its own registry serves downloads.
    #[error("registry {registry}: {reason}")]
    Registry {
        /// The registry's index URL.
        registry: RegistryUrl,
        /// What went wrong.
        reason: String,
    },
}

impl JobError {
    fn registry(registry: &RegistryUrl, reason: String) -> Self {
        Self::Registry {
            registry: registry.clone(),
            reason,
        }
    }

    /// Whether the refusal is this node's trouble rather than the job's.
    pub fn is_node_fault(&self) -> bool {
        matches!(self, Self::Registry { .. })
    }
}

/// A job's checksum against the one the registry's index lists, as this node read it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{crate_name} {version} has sha256 {indexed} in this node's index of {registry}, the job \
     says {job}"
)]
pub struct ChecksumDiffers {
    /// The crate.
    pub crate_name: CrateName,
    /// The version.
    pub version: CrateVersion,
    /// The registry's index URL.
    pub registry: RegistryUrl,
    /// What the job says.
    pub job: Sha256Digest,
    /// What the index says.
    pub indexed: Sha256Digest,
}

/// A `.crate` download URL: `http` or `https`, with a host, without user or password.
#[derive(Clone, PartialEq, Eq)]
pub struct DownloadUrl(Url);

impl DownloadUrl {
    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    fn origin(&self) -> Origin {
        Origin::of(&self.0)
    }
}

/// Scheme, host and port of an `http(s)` URL (the port made explicit).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Self {
        Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl FromStr for DownloadUrl {
    type Err = JobError;

    fn from_str(text: &str) -> Result<Self, JobError> {
        let refuse = |reason: &str| JobError::DownloadUrl {
            url: text.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let url = Url::parse(text).map_err(|e| refuse(&format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse("only http and https downloads are made"));
        }
        if url.host().is_none() {
            return Err(refuse("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("a user or password in the URL is not accepted"));
        }
        Ok(Self(url))
    }
}

impl fmt::Display for DownloadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DownloadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DownloadUrl({:?})", self.as_str())
    }
}

/// Where jobs are checked: the node's targets and, per registry, the origin it downloads
/// from.
#[derive(Debug)]
pub struct JobGate {
    targets: Vec<TargetTriple>,
    http: reqwest::Client,
    timeout: Duration,
    /// Per registry: where it serves downloads and this node's own read of its index.
    registries: tokio::sync::Mutex<HashMap<RegistryUrl, RegistryView>>,
}

impl JobGate {
    /// A gate for a node building `targets` (its configuration), reading registries'
    /// `config.json` with `http` within `timeout`.
    pub fn new(targets: &[TargetTriple], http: reqwest::Client, timeout: Duration) -> Self {
        Self {
            targets: targets.to_vec(),
            http,
            timeout,
            registries: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Checks a job's fields against this node, for dependencies from `registry` (the node's
    /// configured registry, or the one given on its command line).
    pub async fn accept(
        &self,
        spec: JobSpec,
        registry: &RegistryUrl,
        lease: Option<JobLease>,
    ) -> Result<BuildRequest, JobError> {
        let JobSpec {
            crate_name,
            version,
            target,
            source_sha256,
            download_url: url_text,
        } = spec;
        let download_url: DownloadUrl = url_text.parse()?;
        if !self.targets.contains(&target) {
            let allowed: Vec<&str> = self.targets.iter().map(TargetTriple::as_str).collect();
            return Err(JobError::TargetNotBuilt {
                target,
                allowed: allowed.join(", "),
            });
        }
        let origin = self.download_origin(registry).await?;
        if download_url.origin() != origin {
            return Err(JobError::DownloadUrl {
                url: url_text.chars().take(200).collect(),
                reason: format!("not on {origin}, where the node's registry serves downloads"),
            });
        }
        // The checksum is the registry's word, read by this node, not the coordinator's: a
        // coordinator that hands out its own tarball under a real name with a matching
        // checksum gets no build and no signature.
        let indexed = self
            .index_version(registry, &crate_name, &version)
            .await?
            .cksum;
        if indexed != source_sha256 {
            return Err(JobError::ChecksumDiffers(Box::new(ChecksumDiffers {
                crate_name,
                version,
                registry: registry.clone(),
                job: source_sha256,
                indexed,
            })));
        }
        Ok(BuildRequest {
            crate_name,
            version,
            target,
            source_sha256,
            download_url,
            registry: registry.clone(),
            lease,
        })
    }

    /// The origin of `registry`'s `dl` template, read from its `config.json` the first time.
    async fn download_origin(&self, registry: &RegistryUrl) -> Result<Origin, JobError> {
        let mut registries = self.registries.lock().await;
        Ok(self.view(&mut registries, registry).await?.origin.clone())
    }

    /// `name` `version` as `registry`'s index lists it, as this node reads it: from what it
    /// read before, or from the crate's index file fetched now.
    pub async fn index_version(
        &self,
        registry: &RegistryUrl,
        name: &CrateName,
        version: &CrateVersion,
    ) -> Result<IndexVersion, JobError> {
        let mut registries = self.registries.lock().await;
        let view = self.view(&mut registries, registry).await?;
        let listed = |view: &RegistryView| {
            view.follower
                .known_versions(name)
                .and_then(|versions| versions.iter().find(|v| v.version == *version))
                .cloned()
        };
        if let Some(found) = listed(view) {
            return Ok(found);
        }
        let fail = |reason| JobError::registry(registry, reason);
        // Only the crates of recent jobs are kept: a coordinator naming endless crates must
        // not grow the node's memory.
        if view.follower.crates_known() >= MAX_INDEXED_CRATES {
            view.follower.retain(|_| false);
        }
        let report = tokio::time::timeout(self.timeout, view.follower.poll(&[name.as_str()]))
            .await
            .map_err(|_| {
                fail(format!(
                    "the index file of {name} did not arrive within {} s",
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| fail(format!("reading the index: {e}")))?;
        if let Some((_, error)) = report.errors.first() {
            return Err(fail(format!("reading the index file of {name}: {error}")));
        }
        listed(view).ok_or_else(|| JobError::NotInIndex {
            crate_name: name.clone(),
            version: version.clone(),
            registry: registry.clone(),
        })
    }

    /// This node's view of `registry`, made (its `config.json` read) the first time.
    async fn view<'a>(
        &self,
        registries: &'a mut HashMap<RegistryUrl, RegistryView>,
        registry: &RegistryUrl,
    ) -> Result<&'a mut RegistryView, JobError> {
        Ok(match registries.entry(registry.clone()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(self.open_view(registry).await?),
        })
    }

    async fn open_view(&self, registry: &RegistryUrl) -> Result<RegistryView, JobError> {
        let fail = |reason| JobError::registry(registry, reason);
        // A RegistryUrl is canonical: crates.io is always its sparse index here.
        let mut follower = SparseFollower::with_client(registry, self.http.clone())
            .map_err(|e| fail(e.to_string()))?;
        let config = tokio::time::timeout(self.timeout, follower.refresh_config())
            .await
            .map_err(|_| {
                fail(format!(
                    "config.json did not arrive within {} s",
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| fail(format!("reading config.json: {e}")))?;
        let dl = Url::parse(config.dl()).map_err(|e| {
            fail(format!(
                "the dl template {:?} is not a URL: {e}",
                config.dl()
            ))
        })?;
        if !matches!(dl.scheme(), "http" | "https") || dl.host().is_none() {
            return Err(fail(format!(
                "the dl template {:?} is not an http(s) URL",
                config.dl()
            )));
        }
        Ok(RegistryView {
            origin: Origin::of(&dl),
            follower,
        })
    }
}

/// The most crates whose index files one registry view keeps.
const MAX_INDEXED_CRATES: usize = 1024;

/// What this node knows of one registry: where it serves downloads, and its index as this
/// node last read it.
#[derive(Debug)]
struct RegistryView {
    origin: Origin,
    follower: SparseFollower,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_urls_are_http_with_a_host_and_no_credentials() {
        for good in [
            "https://static.crates.io/crates/serde/serde-1.0.0.crate",
            "http://127.0.0.1:7780/dl/x/1.0.0/download",
        ] {
            assert_eq!(good.parse::<DownloadUrl>().unwrap().as_str(), good);
        }
        for (bad, says) in [
            ("file:///etc/passwd", "only http and https"),
            ("ftp://example.org/x", "only http and https"),
            ("https://user:secret@example.org/x", "user or password"),
            ("https://user@example.org/x", "user or password"),
            ("not a url", "not a URL"),
            ("/dl/x", "not a URL"),
        ] {
            let error = bad.parse::<DownloadUrl>().unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let origin = |u: &str| u.parse::<DownloadUrl>().unwrap().origin();
        assert_eq!(
            origin("https://static.crates.io/a"),
            origin("https://static.crates.io:443/b")
        );
        assert_ne!(
            origin("https://static.crates.io/a"),
            origin("http://static.crates.io/a")
        );
        assert_ne!(
            origin("http://127.0.0.1:1/a"),
            origin("http://127.0.0.1:2/a")
        );
        assert_ne!(
            origin("https://static.crates.io/a"),
            origin("https://static.crates.io.example/a")
        );
    }
}
