//! The scene the web tests share: a store seeded with a watched crate, builders and one
//! verified artifact whose real bytes sit in object storage (a temp dir), and helpers that
//! send requests through the router without a socket.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use buildsrs_keys::Identity;
use buildsrs_keys::bundle::Bundle;
use buildsrs_keys::{
    ArtifactId, Blake3Hash, PublicKey, SCHEMA_VERSION, SignedAttestation, Statement, Toolchain,
};
use buildsrs_storage::{ArtifactStorage, StorageConfig};
pub use buildsrs_store::testing::{TARGET, TOOLCHAIN};
use buildsrs_store::testing::{lease, matrix, register};
use buildsrs_store::{BuildOutcome, IndexVersion, Store, StoredBuild, Submission, TaskId};
use buildsrs_test_support::s3::TestBucket;
use buildsrs_web::{WebConfig, WebState, router};
use jiff::Timestamp;
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "correct horse battery staple";

/// A seeded coordinator, as the web layer sees it.
pub struct Scene {
    pub store: Store,
    pub state: WebState,
    pub router: Router,
    /// The verified artifact of `demo 1.0.0` and its bytes.
    pub artifact: ArtifactId,
    pub bytes: Vec<u8>,
    pub bundle: Vec<u8>,
    /// The verified task.
    pub task: TaskId,
    /// Two approved builders (they verified the artifact) and one pending.
    pub approved: [PublicKey; 2],
    pub pending: PublicKey,
    _storage_dir: tempfile::TempDir,
}

/// An index line for `name` `version`, not yanked, with a checksum from `n`.
pub fn index_line(name: &str, version: &str, n: u64) -> IndexVersion {
    self::version(name, version, n, false)
}

fn version(name: &str, version: &str, n: u64, yanked: bool) -> IndexVersion {
    IndexVersion {
        name: name.parse().expect("a crate name"),
        version: version.parse().expect("a version"),
        cksum: format!("{n:064x}").parse().expect("a sha256"),
        download_url: format!("https://registry.test/dl/{name}/{version}/download"),
        yanked,
        rust_version: None,
    }
}

/// The signed attestation of `demo 1.0.0` by the builder `key(n)`, as a node sends it.
pub fn attestation(builder: &PublicKey, artifact: ArtifactId) -> Vec<u8> {
    let identity = (1..=u8::MAX)
        .map(|n| Identity::from_seed([n; 32]))
        .find(|identity| identity.public_key() == *builder)
        .expect("a builder of the scene");
    let statement = Statement {
        schema: SCHEMA_VERSION,
        crate_name: "demo".parse().unwrap(),
        version: "1.0.0".parse().unwrap(),
        registry: Some(buildsrs_keys::RegistryUrl::crates_io()),
        source_sha256: Some(format!("{:064x}", 1).parse().unwrap()),
        cargo_lock_sha256: None,
        target: TARGET.parse().unwrap(),
        toolchain: Toolchain::from_parts(TOOLCHAIN, "0000000", TARGET).unwrap(),
        features: Vec::new(),
        settings_digest: None,
        artifact,
        builder: *builder,
        build_started: 1_700_000_000,
        build_finished: 1_700_000_060,
    };
    SignedAttestation::sign(statement, &identity)
        .unwrap()
        .to_canonical_json()
}

impl Scene {
    /// Seeds `store`: crates `demo` (1.0.0 verified, 1.1.0 queued, 2.0.0 yanked; watched before
    /// the index showed it, with a backfill of one so that both 1.1.0 and 1.0.0 are planned)
    /// and `demo-tools` (unwatched), builders `alpha` and `beta` approved, `gamma` pending.
    pub async fn seed(store: Store) -> Scene {
        Scene::seed_with(
            store,
            WebConfig {
                admin_token: Some(ADMIN_TOKEN.to_owned()),
                public_url: Some("http://buildsrs.test".to_owned()),
                ..WebConfig::default()
            },
        )
        .await
    }

    pub async fn seed_with(store: Store, config: WebConfig) -> Scene {
        let storage_dir = tempfile::tempdir().unwrap();
        let storage = ArtifactStorage::open(&StorageConfig::Local {
            root: storage_dir.path().to_owned(),
        })
        .unwrap();
        Scene::seed_on(store, config, storage, storage_dir).await
    }

    /// Seeds with artifacts in `storage` (`scratch` holds the upload file meanwhile).
    pub async fn seed_on(
        store: Store,
        config: WebConfig,
        storage: ArtifactStorage,
        scratch: tempfile::TempDir,
    ) -> Scene {
        let now = Timestamp::now();
        matrix(&store, now).await;
        store.watch_crate("demo", 1, now).await.unwrap();
        store
            .upsert_versions(
                vec![
                    version("demo", "1.0.0", 1, false),
                    version("demo", "1.1.0", 2, false),
                    version("demo", "2.0.0", 3, true),
                    version("demo-tools", "0.1.0", 4, false),
                ],
                now,
            )
            .await
            .unwrap();
        let alpha = register(&store, 1, "alpha", now).await;
        let beta = register(&store, 2, "beta", now).await;
        let pending = register(&store, 3, "gamma", now).await;
        store.approve_builder(&alpha, now).await.unwrap();
        store.approve_builder(&beta, now).await.unwrap();

        // Real bytes, so downloads can be checked against the hash.
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let artifact = ArtifactId::of_bytes(&bytes);
        let (first, second) = (
            lease(&store, &alpha, now).await,
            lease(&store, &beta, now).await,
        );
        assert_eq!(first.task_id, second.task_id, "both build demo 1.0.0");
        for (lease, builder) in [(&first, alpha), (&second, beta)] {
            store
                .submit(
                    Submission {
                        lease_id: lease.lease_id,
                        epoch: lease.epoch,
                        builder,
                        outcome: BuildOutcome::Built(StoredBuild {
                            artifact,
                            signed: attestation(&builder, artifact),
                        }),
                        log: Some(b"   Compiling demo v1.0.0\n    Finished release\n".to_vec()),
                    },
                    now,
                )
                .await
                .unwrap();
        }

        let hex = artifact.blake3.to_hex();
        let file = scratch.path().join("upload");
        std::fs::write(&file, &bytes).unwrap();
        storage.put_blob_file(&hex, &file).await.unwrap();
        std::fs::remove_file(&file).unwrap();
        let bundle = Bundle::new(artifact).to_json_pretty();
        storage
            .put_bundle(&hex, bundle.clone().into())
            .await
            .unwrap();
        store
            .set_artifact_storage_key(&artifact.blake3, &format!("blobs/{hex}"))
            .await
            .unwrap();

        let state = WebState::new(store.clone(), storage, config).unwrap();
        Scene {
            router: router(state.clone()),
            store,
            state,
            artifact,
            bytes,
            bundle,
            task: first.task_id,
            approved: [alpha, beta],
            pending,
            _storage_dir: scratch,
        }
    }

    pub fn hash(&self) -> String {
        self.artifact.blake3.to_hex()
    }

    /// Sends a request through the router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// Asks as htmx does when it restores a page from its history after a cache miss.
    pub async fn get_history_restore(&self, uri: &str) -> Answer {
        let headers = [
            ("hx-request", "true"),
            ("hx-history-restore-request", "true"),
        ];
        self.get_with(uri, &headers).await
    }

    /// Posts a form (`application/x-www-form-urlencoded`), with extra headers.
    pub async fn post_form(
        &self,
        uri: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "buildsrs.test");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// The number of downloads counted for the seeded artifact (written to the store first).
    pub async fn downloads(&self) -> u64 {
        self.state.flush_downloads().await.unwrap();
        self.downloads_in_store().await
    }

    /// The number of downloads of the seeded artifact the store holds now.
    pub async fn downloads_in_store(&self) -> u64 {
        let info = self
            .store
            .artifact(&self.artifact.blake3)
            .await
            .unwrap()
            .unwrap();
        info.downloads.iter().map(|d| d.count).sum()
    }

    /// Logs in as admin; returns the `Cookie` header value and the CSRF token.
    pub async fn login(&self) -> (String, String) {
        let answer = self
            .post_form("/admin/login", &[("token", ADMIN_TOKEN)], &[])
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
        let set_cookie = answer.header("set-cookie");
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = self.get_with("/admin", &[("cookie", &cookie)]).await;
        assert_eq!(page.status, StatusCode::OK);
        let text = page.text();
        let marker = "name=\"csrf\" value=\"";
        let start = text.find(marker).expect("a CSRF field") + marker.len();
        let csrf = text[start..start + 64].to_owned();
        (cookie, csrf)
    }
}

/// Storage in a fresh bucket of the test S3 server ([`TestBucket`]); `None` when the test
/// `test` skips for want of one (under `CI=true` that panics instead).
pub fn s3_storage(test: &str) -> Option<ArtifactStorage> {
    let bucket = TestBucket::create(test).unwrap()?;
    Some(
        ArtifactStorage::open(&StorageConfig::S3 {
            endpoint: bucket.endpoint,
            bucket: bucket.name,
            region: TestBucket::REGION.into(),
            access_key_id: TestBucket::ACCESS_KEY_ID.into(),
            secret_access_key: TestBucket::SECRET_ACCESS_KEY.into(),
            allow_http: true,
        })
        .unwrap(),
    )
}

/// Percent-encodes a form value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text; HTML character references decoded for HTML (minijinja escapes
    /// `/` in values as `&#x2f;`, which browsers read as `/`).
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        if !self.header("content-type").starts_with("text/html") {
            return text;
        }
        text.replace("&#x2f;", "/")
            .replace("&#x27;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn hash(&self) -> Blake3Hash {
        Blake3Hash::of_bytes(&self.body)
    }
}
