//! Where artifacts are stored: [`StorageConfig`].

use std::fmt;
use std::path::PathBuf;

/// Where verified artifacts are stored.
///
/// `Debug` and [`StorageConfig::describe`] never show the secret access key.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A directory on the local file system; created by [`ArtifactStorage::open`] when missing.
    ///
    /// [`ArtifactStorage::open`]: crate::ArtifactStorage::open
    Local {
        /// The directory that holds `blobs/` and `attestations/`.
        root: PathBuf,
    },
    /// An S3-compatible bucket, addressed path-style (`ENDPOINT/BUCKET/KEY`), with static
    /// credentials. Nothing is read from the environment or from instance metadata.
    S3 {
        /// Base URL of the service, e.g. `https://s3.eu-central-1.amazonaws.com` or
        /// `http://127.0.0.1:5055`.
        endpoint: String,
        /// The bucket; it must exist.
        bucket: String,
        /// The signing region, e.g. `us-east-1`.
        region: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key. Never logged.
        secret_access_key: String,
        /// Allow a plain `http://` endpoint (tests, a storage service on a private network).
        allow_http: bool,
    },
}

impl StorageConfig {
    /// A one-line description for logs. Never contains the secret access key, nor a password
    /// written into the endpoint URL.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Local { root } => format!("local directory {}", root.display()),
            StorageConfig::S3 {
                endpoint,
                bucket,
                region,
                ..
            } => format!(
                "S3 bucket {bucket:?} at {} (region {region})",
                redact_userinfo(endpoint)
            ),
        }
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageConfig::Local { root } => f.debug_struct("Local").field("root", root).finish(),
            StorageConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key: _,
                allow_http,
            } => f
                .debug_struct("S3")
                .field("endpoint", &redact_userinfo(endpoint))
                .field("bucket", bucket)
                .field("region", region)
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field("allow_http", allow_http)
                .finish(),
        }
    }
}

/// `scheme://user:pass@host/...` → `scheme://<redacted>@host/...`; anything else unchanged.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str) -> StorageConfig {
        StorageConfig::S3 {
            endpoint: endpoint.into(),
            bucket: "artifacts".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "very-secret-key".into(),
            allow_http: false,
        }
    }

    #[test]
    fn describe_and_debug_hide_secrets() {
        let config = s3("https://user:hunter2@s3.example.net/base");
        for text in [config.describe(), format!("{config:?}")] {
            assert!(!text.contains("very-secret-key"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("s3.example.net/base"), "{text}");
            assert!(text.contains("artifacts"), "{text}");
        }
        assert_eq!(
            s3("http://127.0.0.1:5055").describe(),
            "S3 bucket \"artifacts\" at http://127.0.0.1:5055 (region us-east-1)"
        );
        let local = StorageConfig::Local {
            root: "/srv/artifacts".into(),
        };
        assert_eq!(local.describe(), "local directory /srv/artifacts");
    }

    #[test]
    fn userinfo_only_in_the_authority() {
        assert_eq!(redact_userinfo("http://h/p@q"), "http://h/p@q");
        assert_eq!(redact_userinfo("no scheme@x"), "no scheme@x");
        assert_eq!(
            redact_userinfo("http://a@b@h:1/x"),
            "http://<redacted>@h:1/x"
        );
    }
}
