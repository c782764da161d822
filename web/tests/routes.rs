//! Every route through the router, against a seeded store on SQLite and on Postgres: status,
//! content and headers; bad input; the admin flow.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use buildsrs_keys::Keyring;
use buildsrs_store::{BuilderStatus, Store, TaskState, store_test};
use support::{Scene, TARGET};

fn assert_security_headers(answer: &support::Answer) {
    let csp = answer.header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert_eq!(answer.header("x-frame-options"), "DENY");
}

store_test!(pages_show_the_seeded_network, |store: Store| async move {
    let scene = Scene::seed(store).await;
    let hash = scene.hash();
    let fingerprints: Vec<String> = scene
        .approved
        .iter()
        .map(|k| k.fingerprint().to_string())
        .collect();

    let home = scene.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.header("content-type").starts_with("text/html"));
    assert_security_headers(&home);
    let text = home.text();
    assert!(text.contains("id=\"stat-verified\">1<"), "{text}");
    assert!(text.contains("id=\"stat-crates\">2<"));
    assert!(text.contains("id=\"stat-online\">2<"));
    assert!(text.contains(&format!("/artifacts/{hash}")));
    assert!(text.contains("src=\"/static/htmx.min.js\""));
    assert!(!text.contains("<script>"), "no inline script");

    // The search page is a plain form; htmx gets only the results fragment.
    let search = scene.get("/search?q=DEMO").await;
    assert_eq!(search.status, StatusCode::OK);
    let text = search.text();
    assert!(text.contains("hx-get=\"/search\""));
    assert!(text.contains("href=\"/crates/demo\"") && text.contains("href=\"/crates/demo-tools\""));
    let fragment = scene
        .get_with("/search?q=tools", &[("hx-request", "true")])
        .await;
    let text = fragment.text();
    assert!(!text.contains("<html"), "a fragment: {text}");
    assert_eq!(fragment.header("vary"), "HX-Request");
    let restore = scene.get_history_restore("/search?q=tools").await;
    assert!(
        restore.text().contains("<html"),
        "history restore gets the page"
    );
    assert_eq!(search.header("vary"), "HX-Request");
    assert!(text.contains("demo-tools") && !text.contains("href=\"/crates/demo\""));
    let none = scene.get("/search?q=zzz").await.text();
    assert!(none.contains("No crates match"));

    let krate = scene.get("/crates/demo").await;
    assert_eq!(krate.status, StatusCode::OK);
    let text = krate.text();
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        assert!(
            text.contains(&format!("/crates/demo/{version}\"")),
            "{version}"
        );
    }
    assert!(text.contains("yanked"));
    assert!(text.contains(&format!("{TARGET}: verified")));
    assert!(
        text.contains("Latest: <a href=\"/crates/demo/1.1.0\">"),
        "{text}"
    );

    // The version page: who attested, the hash each reported, download, bundle, command.
    let version = scene.get("/crates/demo/1.0.0").await;
    assert_eq!(version.status, StatusCode::OK);
    let text = version.text();
    for fingerprint in &fingerprints {
        assert!(text.contains(fingerprint.as_str()), "{fingerprint} missing");
    }
    assert!(text.contains("all reported hashes agree"));
    assert!(text.contains(&format!("href=\"/crates/demo/1.0.0/{TARGET}\"")));
    assert!(text.contains(&format!("href=\"/attestations/{hash}\"")));
    assert!(text.contains(&format!(
        "curl -fLo demo-1.0.0-{TARGET}.tar.gz http://buildsrs.test/crates/demo/1.0.0/{TARGET}"
    )));
    assert!(text.contains(&format!(
        "buildsrs verify demo-1.0.0-{TARGET}.tar.gz --keyring keyring.txt --threshold 2"
    )));
    assert!(text.contains("97.7 KiB"), "size shown");
    let latest = scene.get("/crates/demo/latest").await;
    assert_eq!(latest.status, StatusCode::OK);
    assert!(latest.text().contains("demo</a> 1.1.0"));

    let artifact = scene.get(&format!("/artifacts/{hash}")).await;
    assert_eq!(artifact.status, StatusCode::OK);
    let text = artifact.text();
    assert!(text.contains("alpha") && text.contains("beta"));
    assert!(text.contains("demo 1.0.0"));

    let builders = scene.get("/builders").await.text();
    for name in ["alpha", "beta", "gamma"] {
        assert!(builders.contains(name));
    }
    assert!(builders.contains("status-pending"));
    let alpha = scene.get(&format!("/builders/{}", scene.approved[0])).await;
    assert_eq!(alpha.status, StatusCode::OK);
    let text = alpha.text();
    assert!(
        text.contains("demo 1.0.0") && text.contains(">verified<"),
        "{text}"
    );

    // The queue: demo 1.1.0 is waiting; htmx polls the fragment.
    let queue = scene.get("/queue").await;
    let text = queue.text();
    assert!(text.contains("hx-trigger=\"every 3s\""));
    assert!(text.contains("demo 1.1.0"));
    assert!(
        !text.contains("demo 1.0.0"),
        "decided tasks are not in the queue"
    );
    let fragment = scene.get_with("/queue", &[("hx-request", "true")]).await;
    assert!(!fragment.text().contains("<html") && fragment.text().contains("demo 1.1.0"));

    let task = scene.get(&format!("/tasks/{}", scene.task)).await;
    assert_eq!(task.status, StatusCode::OK);
    let text = task.text();
    assert!(text.contains("state-verified"));
    let log_link = text
        .split("href=\"/logs/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let log = scene.get(&format!("/logs/{log_link}")).await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(log.header("content-type").starts_with("text/plain"));
    assert!(log.text().contains("Compiling demo v1.0.0"));

    let css = scene.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    let htmx = scene.get("/static/htmx.min.js").await;
    assert!(htmx.header("content-type").starts_with("text/javascript"));
    assert!(htmx.body.len() > 10_000);
});

store_test!(
    nothing_of_what_builders_built_shows_until_the_task_is_decided,
    |store: Store| async move {
        // A lazy builder reads every public page and API answer while another builder's
        // result for an open task is in: it finds no hash to copy.
        let scene = Scene::seed(store).await;
        let [alpha, beta] = scene.approved;
        let built = buildsrs_keys::ArtifactId::of_bytes(b"demo 1.1.0, built by alpha");
        let hex = built.blake3.to_hex();
        let submit = |builder, lease: buildsrs_store::Lease| {
            scene.store.submit(
                buildsrs_store::Submission {
                    lease_id: lease.lease_id,
                    epoch: lease.epoch,
                    builder,
                    outcome: buildsrs_store::BuildOutcome::Built(buildsrs_store::StoredBuild {
                        artifact: built,
                        signed: support::attestation(&builder, built),
                    }),
                    log: Some(format!("== packed blake3:{hex}\n").into_bytes()),
                },
                jiff::Timestamp::now(),
            )
        };
        let now = jiff::Timestamp::now();
        let first = buildsrs_store::testing::lease(&scene.store, &alpha, now).await;
        assert_eq!(first.version, "1.1.0");
        let report = submit(alpha, first.clone()).await.unwrap();
        assert!(report.counted);
        let task = first.task_id;
        let result = report.attestation_id;
        let public = [
            format!("/tasks/{task}"),
            format!("/api/v1/tasks/{task}"),
            "/crates/demo/1.1.0".to_owned(),
            "/api/v1/crates/demo/1.1.0".to_owned(),
            format!("/builders/{alpha}"),
            format!("/api/v1/builders/{alpha}"),
            "/queue".to_owned(),
            "/api/v1/queue".to_owned(),
        ];
        for path in &public {
            let answer = scene.get(path).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
            assert!(!answer.text().contains(&hex), "{path} shows the hash");
        }
        let log = scene.get(&format!("/logs/{result}")).await;
        assert_eq!(log.status, StatusCode::FORBIDDEN, "{}", log.text());
        assert!(!log.text().contains(&hex));

        // Once a second builder agrees, the task is decided and everything shows.
        let second = buildsrs_store::testing::lease(&scene.store, &beta, now).await;
        assert_eq!(second.task_id, task);
        submit(beta, second).await.unwrap();
        for path in [&public[0], &public[1], &public[4]] {
            assert!(scene.get(path).await.text().contains(&hex), "{path}");
        }
        let log = scene.get(&format!("/logs/{result}")).await;
        assert_eq!(log.status, StatusCode::OK);
        assert!(log.text().contains(&hex));
    }
);

store_test!(
    downloads_are_counted_in_memory_and_written_in_one_batch,
    |store: Store| async move {
        // A download is not a store write: twenty downloads wait in memory, then one flush
        // writes them all.
        let scene = Scene::seed(store).await;
        for _ in 0..20 {
            let archive = scene.get(&format!("/crates/demo/1.0.0/{TARGET}")).await;
            assert_eq!(archive.status, StatusCode::OK);
        }
        assert_eq!(scene.state.download_counts().pending(), 20);
        assert_eq!(
            scene.downloads_in_store().await,
            0,
            "nothing written per download"
        );
        assert_eq!(scene.state.flush_downloads().await.unwrap(), 20);
        assert_eq!(scene.downloads_in_store().await, 20);
        assert_eq!(scene.state.download_counts().pending(), 0);
        assert_eq!(
            scene.state.flush_downloads().await.unwrap(),
            0,
            "nothing twice"
        );
    }
);

store_test!(
    downloads_stream_the_verified_bytes,
    |store: Store| async move {
        let scene = Scene::seed(store).await;
        let hash = scene.hash();

        let archive = scene.get(&format!("/crates/demo/1.0.0/{TARGET}")).await;
        assert_eq!(archive.status, StatusCode::OK);
        assert_eq!(archive.body, scene.bytes);
        assert_eq!(archive.hash(), scene.artifact.blake3);
        assert_eq!(
            archive.header("content-disposition"),
            format!("attachment; filename=\"demo-1.0.0-{TARGET}.tar.gz\"")
        );
        assert_eq!(archive.header("etag"), format!("\"{hash}\""));
        assert_eq!(scene.downloads().await, 1);
        // `latest` resolves to 1.1.0, which has nothing verified.
        let latest = scene.get(&format!("/crates/demo/latest/{TARGET}")).await;
        assert_eq!(latest.status, StatusCode::NOT_FOUND);
        assert!(
            latest.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1.1.0")
        );
        let other_target = scene.get("/crates/demo/1.0.0/aarch64-apple-darwin").await;
        assert_eq!(other_target.status, StatusCode::NOT_FOUND);

        let blob = scene.get(&format!("/blobs/{hash}")).await;
        assert_eq!(blob.status, StatusCode::OK);
        assert_eq!(blob.body, scene.bytes);
        assert_eq!(
            blob.header("cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(blob.header("accept-ranges"), "bytes");
        assert_eq!(blob.header("content-length"), scene.bytes.len().to_string());
        assert_security_headers(&blob);
        assert_eq!(scene.downloads().await, 2);

        let cached = scene
            .get_with(
                &format!("/blobs/{hash}"),
                &[("if-none-match", &format!("\"{hash}\""))],
            )
            .await;
        assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
        assert!(cached.body.is_empty());

        let head = scene
            .send(
                axum::http::Request::head(format!("/blobs/{hash}"))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), scene.bytes.len().to_string());

        // A resumed download: one range, and it is not counted again.
        let part = scene
            .get_with(&format!("/blobs/{hash}"), &[("range", "bytes=1000-1999")])
            .await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.body, scene.bytes[1000..2000]);
        assert_eq!(
            part.header("content-range"),
            format!("bytes 1000-1999/{}", scene.bytes.len())
        );
        let tail = scene
            .get_with(&format!("/blobs/{hash}"), &[("range", "bytes=-10")])
            .await;
        assert_eq!(tail.body, scene.bytes[scene.bytes.len() - 10..]);
        let past = scene
            .get_with(&format!("/blobs/{hash}"), &[("range", "bytes=200000-")])
            .await;
        assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            past.header("content-range"),
            format!("bytes */{}", scene.bytes.len())
        );
        let garbled = scene
            .get_with(&format!("/blobs/{hash}"), &[("range", "pages=1-2")])
            .await;
        assert_eq!(
            garbled.status,
            StatusCode::OK,
            "an unparsable Range is ignored"
        );
        assert_eq!(scene.downloads().await, 3);

        let unknown = scene.get(&format!("/blobs/{}", "0".repeat(64))).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);

        let bundle = scene.get(&format!("/attestations/{hash}")).await;
        assert_eq!(bundle.status, StatusCode::OK);
        assert_eq!(bundle.body, scene.bundle);
        assert_eq!(bundle.header("content-type"), "application/json");

        let keyring = scene.get("/keyring").await;
        assert_eq!(keyring.status, StatusCode::OK);
        let parsed = Keyring::parse(&keyring.text()).unwrap();
        let names: Vec<&str> = parsed.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["alpha", "beta"],
            "approved builders only, pending left out"
        );
    }
);

store_test!(builder_lists_come_in_pages, |store: Store| async move {
    let scene = Scene::seed(store).await;
    // Registered alpha, beta, gamma: two per page.
    let first = scene.get("/builders?limit=2").await.text();
    assert!(first.contains("alpha") && first.contains("beta"), "{first}");
    assert!(!first.contains("gamma"), "{first}");
    assert!(first.contains("3 in all"), "{first}");
    assert!(
        first.contains("/builders?offset=2"),
        "a link to the rest: {first}"
    );
    let rest = scene.get("/builders?offset=2").await.text();
    assert!(rest.contains("gamma") && !rest.contains("alpha"), "{rest}");
    assert!(!rest.contains("/builders?offset="), "no more: {rest}");

    let names = |answer: serde_json::Value| -> Vec<String> {
        let list = answer.as_array().unwrap().iter();
        list.map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = scene.get("/api/v1/builders?limit=2").await.json();
    assert_eq!(names(page), ["alpha", "beta"]);
    let page = scene.get("/api/v1/builders?offset=2&limit=2").await.json();
    assert_eq!(names(page), ["gamma"]);
    let past = scene.get("/api/v1/builders?offset=3").await.json();
    assert!(names(past).is_empty());
    for bad in ["limit=0", "limit=201", "offset=-1", "offset=x"] {
        let answer = scene.get(&format!("/api/v1/builders?{bad}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        let answer = scene.get(&format!("/builders?{bad}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "page {bad}");
    }
});

store_test!(the_api_answers_json, |store: Store| async move {
    let scene = Scene::seed(store).await;
    let hash = scene.hash();

    let crates = scene.get("/api/v1/crates?q=demo&limit=1").await;
    assert_eq!(crates.status, StatusCode::OK);
    assert_eq!(crates.header("content-type"), "application/json");
    let json = crates.json();
    assert_eq!(json["total"], 2);
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    assert_eq!(json["items"][0]["name"], "demo");

    let krate = scene.get("/api/v1/crates/demo").await.json();
    assert_eq!(krate["latest"], "1.1.0");
    assert_eq!(krate["versions"].as_array().unwrap().len(), 3);

    let version = scene.get("/api/v1/crates/demo/1.0.0").await.json();
    let target = &version["targets"][0];
    assert_eq!(target["task"]["state"], "verified");
    assert_eq!(target["links"]["blob"], format!("/blobs/{hash}"));
    assert_eq!(target["results"].as_array().unwrap().len(), 2);
    assert_eq!(
        target["results"][0]["signed"]["statement"]["crate"], "demo",
        "the signed attestation, as JSON"
    );
    let latest = scene.get("/api/v1/crates/demo/latest").await.json();
    assert_eq!(latest["version"]["version"], "1.1.0");
    assert!(latest["targets"][0]["links"].is_null());

    let task = scene
        .get(&format!("/api/v1/tasks/{}", scene.task))
        .await
        .json();
    assert_eq!(task["task"]["id"], scene.task.0);
    assert_eq!(task["leases"].as_array().unwrap().len(), 2);

    let artifact = scene.get(&format!("/api/v1/artifacts/{hash}")).await.json();
    assert_eq!(artifact["artifact"]["size"], scene.bytes.len());
    assert_eq!(artifact["attestations"].as_array().unwrap().len(), 2);

    let builders = scene.get("/api/v1/builders").await.json();
    assert_eq!(builders.as_array().unwrap().len(), 3);
    let alpha = scene
        .get(&format!("/api/v1/builders/{}", scene.approved[0]))
        .await
        .json();
    assert_eq!(alpha["builder"]["name"], "alpha");
    assert_eq!(alpha["recent_results"].as_array().unwrap().len(), 1);

    let queue = scene.get("/api/v1/queue").await.json();
    assert_eq!(queue["stats"]["verified"], 1);
    assert_eq!(queue["tasks"]["total"], 1);

    // The feed mirrors follow: one stored artifact, then nothing after its cursor.
    let feed = scene.get("/api/v1/verified").await.json();
    assert_eq!(feed["items"].as_array().unwrap().len(), 1);
    assert_eq!(feed["items"][0]["hash"], hash);
    assert_eq!(feed["items"][0]["blob"], format!("/blobs/{hash}"));
    let next = feed["next"].as_i64().unwrap();
    let after = scene
        .get(&format!("/api/v1/verified?since={next}"))
        .await
        .json();
    assert!(after["items"].as_array().unwrap().is_empty());
    assert_eq!(after["next"], next);

    let doc = scene.get("/api/v1/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/verified"].is_object());
    assert_eq!(
        doc["paths"]["/crates/{name}/{version}"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/VersionAnswer"
    );
    let fields = doc["components"]["schemas"]["VersionSummary"]["properties"]
        .as_object()
        .unwrap();
    for field in ["rust_version", "plan", "plan_note"] {
        assert!(fields.contains_key(field), "{field} documented");
    }
});

// Every answer reads back as its `buildsrs-api` type, the one the CLI and mirrors read.
store_test!(
    the_api_answers_are_the_api_crates_types,
    |store: Store| async move {
        use buildsrs_api::answers as api;
        use serde::de::DeserializeOwned;

        let scene = Scene::seed(store).await;
        async fn read<T: DeserializeOwned>(scene: &Scene, path: &str) -> T {
            let answer = scene.get(path).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
            serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{path}: {e}: {}", answer.text()))
        }
        let hash = scene.hash();
        let list: api::CrateList = read(&scene, "/api/v1/crates?q=demo").await;
        assert_eq!(list.total, 2);
        let krate: api::CrateAnswer = read(&scene, "/api/v1/crates/demo").await;
        assert_eq!(krate.latest.as_deref(), Some("1.1.0"));
        let version: api::VersionAnswer = read(&scene, "/api/v1/crates/demo/1.0.0").await;
        let target = &version.targets[0];
        assert_eq!(target.task.state, api::TaskState::Verified);
        let signed = target.results[0].signed.as_ref().unwrap();
        signed.verify_signature().unwrap();
        assert_eq!(signed.statement.artifact, scene.artifact);
        let task: api::TaskAnswer = read(&scene, &format!("/api/v1/tasks/{}", scene.task)).await;
        assert_eq!(task.leases.len(), 2);
        let artifact: api::ArtifactAnswer =
            read(&scene, &format!("/api/v1/artifacts/{hash}")).await;
        assert_eq!(artifact.artifact, scene.artifact);
        let builders: Vec<api::Builder> = read(&scene, "/api/v1/builders").await;
        assert_eq!(builders.len(), 3);
        let alpha: api::BuilderAnswer =
            read(&scene, &format!("/api/v1/builders/{}", scene.approved[0])).await;
        assert_eq!(alpha.builder.status, api::BuilderStatus::Approved);
        let queue: api::QueueAnswer = read(&scene, "/api/v1/queue").await;
        assert_eq!(queue.stats.verified, 1);
        let feed: api::FeedPage = read(&scene, "/api/v1/verified").await;
        assert_eq!(feed.items[0].hash, scene.artifact.blake3);
        // The document served is the one the API crate generates.
        let doc: serde_json::Value = read(&scene, "/api/v1/openapi.json").await;
        assert_eq!(
            doc,
            serde_json::to_value(buildsrs_api::openapi::document()).unwrap()
        );
    }
);

// Whatever goes wrong under `/api/v1`, the answer is JSON with the error body: bad values,
// the extractors' own rejections, unknown routes, wrong methods.
store_test!(every_api_error_is_json, |store: Store| async move {
    use axum::body::Body;
    use axum::http::Request;

    let scene = Scene::seed(store).await;
    // (request, status, words the message must contain)
    let long_id = "9".repeat(30);
    let no_point = (0..=255u8)
        .map(|b| format!("{b:02x}").repeat(32))
        .find(|hex| {
            let key: buildsrs_api::params::BuilderKey = hex.parse().unwrap();
            key.public_key().is_none()
        })
        .unwrap();
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "/api/v1/crates?limit=1&limit=2".into(),
            StatusCode::BAD_REQUEST,
            "duplicate field",
        ),
        (
            "/api/v1/crates?limit=".into(),
            StatusCode::BAD_REQUEST,
            "limit: \"\" is not a number from 1 to 200",
        ),
        (
            "/api/v1/crates?limit=%FF".into(),
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/api/v1/crates?offset=1000001".into(),
            StatusCode::BAD_REQUEST,
            "offset",
        ),
        (
            "/api/v1/crates?q=a%00b".into(),
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
        (
            format!("/api/v1/crates?q={}", "a".repeat(65)),
            StatusCode::BAD_REQUEST,
            "at most 64",
        ),
        (
            "/api/v1/queue?offset=x&offset=y".into(),
            StatusCode::BAD_REQUEST,
            "offset",
        ),
        (
            "/api/v1/verified?since=-1".into(),
            StatusCode::BAD_REQUEST,
            "not a cursor",
        ),
        (
            "/api/v1/verified?since=1.5".into(),
            StatusCode::BAD_REQUEST,
            "not a cursor",
        ),
        (
            format!("/api/v1/tasks/{long_id}"),
            StatusCode::BAD_REQUEST,
            "not a task id",
        ),
        (
            "/api/v1/tasks/%2F".into(),
            StatusCode::BAD_REQUEST,
            "not a task id",
        ),
        (
            "/api/v1/crates/demo/01.0.0".into(),
            StatusCode::BAD_REQUEST,
            "semver",
        ),
        (
            "/api/v1/artifacts/XYZ".into(),
            StatusCode::BAD_REQUEST,
            "not a BLAKE3 hash",
        ),
        (
            format!("/api/v1/builders/{no_point}"),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "/api/v1/crates/".into(),
            StatusCode::NOT_FOUND,
            "no page at",
        ),
        ("/api/v1".into(), StatusCode::NOT_FOUND, "no page at"),
        (
            "/api/v1/crates/demo/1.0.0/extra".into(),
            StatusCode::NOT_FOUND,
            "no page at",
        ),
    ];
    for (path, status, words) in &cases {
        let answer = scene.get(path).await;
        assert_eq!(answer.status, *status, "{path}: {}", answer.text());
        assert_eq!(answer.header("content-type"), "application/json", "{path}");
        let body: buildsrs_api::ErrorBody = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", answer.text()));
        assert_eq!(body.error.status, status.as_u16(), "{path}");
        assert!(
            body.error.message.contains(words),
            "{path}: {}",
            body.error.message
        );
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in [
            "/api/v1/crates",
            "/api/v1/crates/demo",
            "/api/v1/openapi.json",
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            let answer = scene.send(request).await;
            assert_eq!(
                answer.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(answer.header("allow"), "GET,HEAD", "{method} {path}");
            assert_eq!(answer.header("content-type"), "application/json");
            assert_eq!(answer.json()["error"]["status"], 405);
        }
    }
    // HEAD is GET without the body.
    let head = scene
        .send(
            Request::head("/api/v1/crates/demo")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
});

store_test!(
    versions_say_why_they_were_not_planned,
    |store: Store| async move {
        let scene = Scene::seed(store).await;
        // A version needing a newer Rust than the enabled toolchain (1.95.0).
        let line = buildsrs_store::IndexVersion {
            rust_version: Some("1.96".to_owned()),
            ..support::index_line("demo", "3.0.0", 9)
        };
        let report = scene
            .store
            .upsert_versions(vec![line], jiff::Timestamp::now())
            .await
            .unwrap();
        assert_eq!((report.versions_added, report.tasks_planned), (1, 0));
        let note = "needs Rust 1.96 or newer; enabled toolchains: 1.95.0";

        let page = scene.get("/crates/demo/3.0.0").await;
        assert_eq!(page.status, StatusCode::OK);
        let text = page.text();
        assert!(text.contains(&format!("Not planned: {note}")), "{text}");
        assert!(text.contains("needs Rust 1.96 or newer (<code>rust-version</code>)"));
        assert!(
            !text.contains("No build tasks"),
            "the note says why: {text}"
        );
        let krate = scene.get("/crates/demo").await.text();
        assert!(
            krate.contains(&format!("not planned: {note}")),
            "the crate page lists the note: {krate}"
        );
        assert!(krate.contains(
            "Watched: its newest version when it was watched (plus 1 older), and every version \
             published since, are built."
        ));
        let api = scene.get("/api/v1/crates/demo/3.0.0").await.json();
        assert_eq!(api["version"]["plan_note"], note);
        assert_eq!(api["version"]["rust_version"], "1.96");
        assert_eq!(api["version"]["plan"], "matrix");
        assert!(api["targets"].as_array().unwrap().is_empty());

        // A planned version has no note; one never chosen (its crate is not watched) says so.
        let planned = scene.get("/api/v1/crates/demo/1.0.0").await.json();
        assert_eq!(planned["version"]["plan"], "matrix");
        assert!(planned["version"]["plan_note"].is_null());
        assert!(planned["version"]["rust_version"].is_null());
        let unwatched = scene.get("/api/v1/crates/demo-tools/0.1.0").await.json();
        assert!(unwatched["version"]["plan"].is_null());
        let text = scene.get("/crates/demo-tools/0.1.0").await.text();
        assert!(
            text.contains("No build tasks: this version was not chosen for building."),
            "{text}"
        );
        assert!(!text.contains("Not planned:"));

        // A crate both approved builders find without binaries: its page says that new
        // versions are probed, and the next version's page shows its probe.
        let now = jiff::Timestamp::now();
        scene.store.watch_crate("demo-lib", 0, now).await.unwrap();
        let lines = vec![support::index_line("demo-lib", "0.1.0", 10)];
        scene.store.upsert_versions(lines, now).await.unwrap();
        let lib = scene
            .store
            .version_info("demo-lib", "0.1.0")
            .await
            .unwrap()
            .unwrap();
        scene
            .store
            .set_task_priority(lib.tasks[0].id, 10, now)
            .await
            .unwrap();
        for builder in scene.approved {
            let lease = scene
                .store
                .lease_next(&builder, now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(lease.task_id, lib.tasks[0].id);
            let submission = buildsrs_store::Submission {
                lease_id: lease.lease_id,
                epoch: lease.epoch,
                builder,
                outcome: buildsrs_store::BuildOutcome::no_binaries(""),
                log: None,
            };
            scene.store.submit(submission, now).await.unwrap();
        }
        let text = scene.get("/crates/demo-lib").await.text();
        assert!(
            text.contains(
                "It had no binaries so far: a new version is probed on one target first."
            ),
            "{text}"
        );
        let lines = vec![support::index_line("demo-lib", "0.2.0", 11)];
        scene.store.upsert_versions(lines, now).await.unwrap();
        let text = scene.get("/crates/demo-lib/0.2.0").await.text();
        assert!(text.contains("Probed on one target only"), "{text}");
        let api = scene.get("/api/v1/crates/demo-lib/0.2.0").await.json();
        assert_eq!(api["version"]["plan"], "probe");
        assert_eq!(api["targets"].as_array().unwrap().len(), 1);
    }
);

// A query string that does not deserialize (here: a parameter given twice) is a 400 in the
// form of its route, never axum's plain-text refusal: a page on the pages (public and admin),
// the API's JSON error body under `/api/v1`.
store_test!(
    a_repeated_query_parameter_is_a_400_in_the_form_of_its_route,
    |store: Store| async move {
        let scene = Scene::seed(store).await;
        for path in [
            "/search?q=a&q=b",
            "/queue?offset=1&offset=2",
            "/admin?done=a&done=b",
        ] {
            let answer = scene.get(path).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
            let content_type = answer.header("content-type");
            assert!(
                content_type.starts_with("text/html"),
                "{path}: {content_type}"
            );
            let text = answer.text();
            assert!(
                text.contains("<h1>400</h1>") && text.contains("duplicate field"),
                "{path}: {text}"
            );
            assert_security_headers(&answer);
        }
        for (path, field) in [
            ("/api/v1/crates?q=a&q=b", "q"),
            ("/api/v1/queue?limit=1&limit=2", "limit"),
        ] {
            let answer = scene.get(path).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
            let content_type = answer.header("content-type");
            assert!(
                content_type.starts_with("application/json"),
                "{path}: {content_type}"
            );
            // The API's one error type, as its clients read it.
            let body: buildsrs_api::ErrorBody = serde_json::from_slice(&answer.body)
                .unwrap_or_else(|e| panic!("{path}: not the error body ({e}): {}", answer.text()));
            assert_eq!(body.error.status, 400, "{path}");
            assert!(
                body.error
                    .message
                    .contains(&format!("duplicate field `{field}`")),
                "{path}: {}",
                body.error.message
            );
        }
    }
);

store_test!(bad_input_is_a_clear_4xx, |store: Store| async move {
    let scene = Scene::seed(store).await;
    let hash = scene.hash();
    // (path, status, words the message must contain)
    let cases: &[(&str, StatusCode, &str)] = &[
        ("/crates/-bad", StatusCode::BAD_REQUEST, "not a crate name"),
        (
            "/crates/demo/1.0",
            StatusCode::BAD_REQUEST,
            "not a semver version",
        ),
        (
            "/crates/demo/1.0.0/X86",
            StatusCode::BAD_REQUEST,
            "not a target triple",
        ),
        (
            "/crates/demo/1.0.0/..%2F..%2Fetc",
            StatusCode::BAD_REQUEST,
            "not a target triple",
        ),
        (
            "/crates/nope",
            StatusCode::NOT_FOUND,
            "crate nope not found",
        ),
        (
            "/crates/demo/9.9.9",
            StatusCode::NOT_FOUND,
            "demo 9.9.9 not found",
        ),
        ("/blobs/xyz", StatusCode::BAD_REQUEST, "not a BLAKE3 hash"),
        (
            "/blobs/..%2F..%2Fetc%2Fpasswd",
            StatusCode::BAD_REQUEST,
            "not a BLAKE3 hash",
        ),
        (
            "/attestations/ABC",
            StatusCode::BAD_REQUEST,
            "not a BLAKE3 hash",
        ),
        (
            "/artifacts/12",
            StatusCode::BAD_REQUEST,
            "not a BLAKE3 hash",
        ),
        (
            "/builders/ed25519:zz",
            StatusCode::BAD_REQUEST,
            "not a builder key",
        ),
        ("/tasks/0", StatusCode::BAD_REQUEST, "not a task id"),
        (
            "/tasks/99999",
            StatusCode::NOT_FOUND,
            "task 99999 not found",
        ),
        ("/logs/abc", StatusCode::BAD_REQUEST, "not a result id"),
        (
            "/search?q=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            StatusCode::BAD_REQUEST,
            "at most 64",
        ),
        ("/queue?offset=-1", StatusCode::BAD_REQUEST, "offset"),
        (
            "/static/..%2FCargo.toml",
            StatusCode::NOT_FOUND,
            "not found",
        ),
        ("/no/such/page", StatusCode::NOT_FOUND, "no page at"),
        ("/api/v1/crates?limit=0", StatusCode::BAD_REQUEST, "limit"),
        (
            "/api/v1/crates/demo/latest%00",
            StatusCode::BAD_REQUEST,
            "semver",
        ),
        (
            "/api/v1/verified?since=x",
            StatusCode::BAD_REQUEST,
            "not a cursor",
        ),
        (
            "/api/v1/builders/abc",
            StatusCode::BAD_REQUEST,
            "not a builder key",
        ),
        ("/api/v1/nothing", StatusCode::NOT_FOUND, "no page at"),
    ];
    for (path, status, words) in cases {
        let answer = scene.get(path).await;
        assert_eq!(answer.status, *status, "{path}: {}", answer.text());
        assert!(answer.text().contains(words), "{path}: {}", answer.text());
        assert_security_headers(&answer);
        if path.starts_with("/api/")
            || path.starts_with("/blobs")
            || path.starts_with("/attestations")
        {
            assert_eq!(answer.json()["error"]["status"], status.as_u16(), "{path}");
        } else if !path.starts_with("/crates/demo/1.0.0/") {
            assert!(
                answer.header("content-type").starts_with("text/html"),
                "{path}"
            );
        }
    }
    // Nothing was counted or changed by all that.
    assert_eq!(scene.downloads().await, 0);
    let _ = hash;
});

store_test!(
    failed_admin_logins_are_limited_per_address,
    |store: Store| async move {
        let scene = Scene::seed(store).await;
        let from = |ip: &str, token: &str| {
            let address = std::net::SocketAddr::new(ip.parse().unwrap(), 40_000);
            axum::http::Request::post("/admin/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("host", "buildsrs.test")
                .extension(axum::extract::ConnectInfo(address))
                .body(axum::body::Body::from(format!(
                    "token={}",
                    token.replace(' ', "+")
                )))
                .unwrap()
        };
        for _ in 0..5 {
            let wrong = scene.send(from("192.0.2.1", "a guess")).await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        }
        // The sixth try is refused without the token being looked at, even the right one.
        let locked = scene.send(from("192.0.2.1", support::ADMIN_TOKEN)).await;
        assert_eq!(
            locked.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            locked.text()
        );
        assert!(locked.header("set-cookie").is_empty(), "no session");
        let wait: u64 = locked.header("retry-after").parse().unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert!(locked.text().contains("too many failed logins"));
        // Another address is not held up by it.
        let other = scene.send(from("192.0.2.2", support::ADMIN_TOKEN)).await;
        assert_eq!(other.status, StatusCode::SEE_OTHER, "{}", other.text());
    }
);

store_test!(
    admin_actions_need_a_session_and_its_csrf_token,
    |store: Store| async move {
        let scene = Scene::seed(store).await;
        let pending = scene.pending.to_string();

        let login_page = scene.get("/admin").await;
        assert_eq!(login_page.status, StatusCode::OK);
        assert!(login_page.text().contains("name=\"token\""));
        let wrong = scene
            .post_form("/admin/login", &[("token", "guess")], &[])
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.header("set-cookie").is_empty());

        let (cookie, csrf) = scene.login().await;
        let dashboard = scene
            .get_with("/admin", &[("cookie", &cookie)])
            .await
            .text();
        assert!(dashboard.contains("gamma") && dashboard.contains("Approve"));

        // Without the session, with a wrong token, or from another site: refused, unchanged.
        let form = [("csrf", csrf.as_str()), ("key", pending.as_str())];
        let no_session = scene.post_form("/admin/builders/approve", &form, &[]).await;
        assert_eq!(no_session.status, StatusCode::UNAUTHORIZED);
        let bad_csrf = scene
            .post_form(
                "/admin/builders/approve",
                &[("csrf", "0"), ("key", pending.as_str())],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(bad_csrf.status, StatusCode::FORBIDDEN);
        let cross_site = scene
            .post_form(
                "/admin/builders/approve",
                &form,
                &[("cookie", &cookie), ("origin", "https://evil.example")],
            )
            .await;
        assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
        let still = scene.store.builder(&scene.pending).await.unwrap().unwrap();
        assert_eq!(still.status, BuilderStatus::Pending);

        let approved = scene
            .post_form(
                "/admin/builders/approve",
                &form,
                &[("cookie", &cookie), ("origin", "http://buildsrs.test")],
            )
            .await;
        assert_eq!(
            approved.status,
            StatusCode::SEE_OTHER,
            "{}",
            approved.text()
        );
        assert_eq!(approved.header("location"), "/admin?done=approved");
        let now = scene.store.builder(&scene.pending).await.unwrap().unwrap();
        assert_eq!(now.status, BuilderStatus::Approved);
        let shown = scene
            .get_with("/admin?done=approved", &[("cookie", &cookie)])
            .await
            .text();
        assert!(shown.contains("Builder approved."));

        // Watch a crate (bad names refused), change a quorum, revoke.
        let bad = scene
            .post_form(
                "/admin/crates/watch",
                &[("csrf", &csrf), ("name", "../x")],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let bad_backfill = scene
            .post_form(
                "/admin/crates/watch",
                &[("csrf", &csrf), ("name", "demo-tools"), ("backfill", "-1")],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(bad_backfill.status, StatusCode::BAD_REQUEST);
        assert!(
            bad_backfill.text().contains("backfill"),
            "{}",
            bad_backfill.text()
        );
        assert!(
            !scene
                .store
                .crate_info("demo-tools")
                .await
                .unwrap()
                .unwrap()
                .watched
        );
        let watched = scene
            .post_form(
                "/admin/crates/watch",
                &[("csrf", &csrf), ("name", "demo-tools"), ("backfill", "2")],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(watched.status, StatusCode::SEE_OTHER);
        assert!(
            scene
                .store
                .watched_crates()
                .await
                .unwrap()
                .contains(&"demo-tools".to_owned())
        );
        let tools = scene.store.crate_info("demo-tools").await.unwrap().unwrap();
        assert_eq!(tools.backfill, 2);
        assert_eq!(
            tools.versions[0].plan,
            Some(buildsrs_store::VersionPlan::Matrix),
            "its newest version is planned"
        );
        // The form without a backfill asks for none more; a backfill only grows, so the
        // one asked for before stays.
        let again = scene
            .post_form(
                "/admin/crates/watch",
                &[("csrf", &csrf), ("name", "demo-tools")],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(again.status, StatusCode::SEE_OTHER);
        assert_eq!(
            scene
                .store
                .crate_info("demo-tools")
                .await
                .unwrap()
                .unwrap()
                .backfill,
            2
        );

        let open = scene
            .store
            .open_tasks(buildsrs_store::Page::first(10))
            .await
            .unwrap();
        let task = open.items[0].id;
        let quorum = scene
            .post_form(
                "/admin/tasks/quorum",
                &[
                    ("csrf", &csrf),
                    ("task", &task.0.to_string()),
                    ("quorum", "3"),
                ],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(quorum.status, StatusCode::SEE_OTHER, "{}", quorum.text());
        assert_eq!(
            scene.store.task(task).await.unwrap().unwrap().task.quorum,
            3
        );
        let decided = scene
            .post_form(
                "/admin/tasks/quorum",
                &[
                    ("csrf", &csrf),
                    ("task", &scene.task.0.to_string()),
                    ("quorum", "1"),
                ],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(decided.status, StatusCode::CONFLICT);
        let retry = scene
            .post_form(
                "/admin/tasks/retry",
                &[("csrf", &csrf), ("task", &task.0.to_string())],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(
            retry.status,
            StatusCode::CONFLICT,
            "only stopped tasks are retried"
        );

        let revoked = scene
            .post_form(
                "/admin/builders/revoke",
                &[
                    ("csrf", &csrf),
                    ("key", &scene.approved[1].to_string()),
                    ("reason", "test"),
                ],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(revoked.status, StatusCode::SEE_OTHER);
        let verified = scene.store.task(scene.task).await.unwrap().unwrap().task;
        assert_ne!(
            verified.state,
            TaskState::Verified,
            "the revoked builder's vote is gone"
        );

        let out = scene
            .post_form("/admin/logout", &[("csrf", &csrf)], &[("cookie", &cookie)])
            .await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        let after = scene.get_with("/admin", &[("cookie", &cookie)]).await;
        assert!(after.text().contains("name=\"token\""), "logged out");
    }
);

store_test!(admin_is_off_without_a_token, |store: Store| async move {
    let scene = Scene::seed_with(store, buildsrs_web::WebConfig::default()).await;
    let page = scene.get("/admin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.text().contains("disabled"));
    let login = scene.post_form("/admin/login", &[("token", "")], &[]).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
});

store_test!(metrics_and_health, |store: Store| async move {
    let scene = Scene::seed(store).await;
    scene.get("/").await;
    scene.get("/blobs/nothex").await;
    let health = scene.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.text().starts_with("ok"));
    let metrics = scene.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(
        text.contains("buildsrs_tasks{state=\"verified\"} 1"),
        "{text}"
    );
    assert!(text.contains("buildsrs_tasks{state=\"queued\"} 1"));
    assert!(text.contains("buildsrs_builders{status=\"pending\"} 1"));
    assert!(text.contains("buildsrs_artifacts_verified 1"));
    assert!(text.contains("buildsrs_http_responses_total{class=\"2xx\"}"));
    let four = text
        .lines()
        .find(|l| l.starts_with("buildsrs_http_responses_total{class=\"4xx\"}"))
        .unwrap();
    assert!(!four.ends_with(" 0"), "{four}");
});

store_test!(
    downloads_redirect_to_presigned_s3_urls,
    |store: Store| async move {
        let Some(storage) = support::s3_storage("downloads_redirect_to_presigned_s3_urls") else {
            return;
        };
        let config = buildsrs_web::WebConfig {
            presign_downloads: Some(std::time::Duration::from_secs(300)),
            ..buildsrs_web::WebConfig::default()
        };
        let scene = Scene::seed_on(store, config, storage, tempfile::tempdir().unwrap()).await;
        let archive = scene.get(&format!("/crates/demo/1.0.0/{TARGET}")).await;
        assert_eq!(archive.status, StatusCode::FOUND);
        assert_eq!(archive.header("cache-control"), "no-store");
        let location = archive.header("location");
        assert!(location.contains("X-Amz-Signature"), "{location}");
        assert_eq!(
            scene.downloads().await,
            1,
            "a redirect counts as a download"
        );
        // What curl -L does next: the bytes and the file name come from object storage.
        let fetched = reqwest::get(&location).await.unwrap();
        assert!(fetched.status().is_success());
        assert_eq!(
            fetched.headers()["content-disposition"],
            format!("attachment; filename=\"demo-1.0.0-{TARGET}.tar.gz\"").as_str()
        );
        assert_eq!(
            fetched.bytes().await.unwrap().as_ref(),
            scene.bytes.as_slice()
        );
        let blob = scene.get(&format!("/blobs/{}", scene.hash())).await;
        assert_eq!(blob.status, StatusCode::FOUND);
        // HEAD still answers here, with the size.
        let head = scene
            .send(
                axum::http::Request::head(format!("/blobs/{}", scene.hash()))
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), scene.bytes.len().to_string());
    }
);

/// A Scene whose public answers are cached for `ttl`, with the admin pages on.
async fn cached_scene(store: Store, ttl: std::time::Duration) -> Scene {
    let config = buildsrs_web::WebConfig {
        admin_token: Some(support::ADMIN_TOKEN.to_owned()),
        page_cache_ttl: ttl,
        ..buildsrs_web::WebConfig::default()
    };
    Scene::seed_with(store, config).await
}

/// Adds `version` of `name` to the index behind the web layer's back (as the index follower
/// or another coordinator would).
async fn index(store: &Store, name: &str, version: &str) {
    let line = buildsrs_store::IndexVersion {
        name: name.parse().unwrap(),
        version: version.parse().unwrap(),
        cksum: format!("{:064x}", version.len() * 97 + name.len())
            .parse()
            .unwrap(),
        download_url: format!("https://registry.test/dl/{name}/{version}/download"),
        yanked: false,
        rust_version: None,
    };
    store
        .upsert_versions(vec![line], jiff::Timestamp::now())
        .await
        .unwrap();
}

store_test!(
    the_page_cache_keeps_answers_until_a_change_here_or_the_ttl,
    |store: Store| async move {
        let scene = cached_scene(store, std::time::Duration::from_secs(600)).await;
        let counts = || scene.state.page_cache().counts();

        // A page and its API twin are rendered once, then served as they were: a version
        // indexed since does not show before the TTL.
        for path in ["/crates/demo-tools", "/api/v1/crates/demo-tools"] {
            assert!(!scene.get(path).await.text().contains("0.2.0"));
        }
        index(&scene.store, "demo-tools", "0.2.0").await;
        let before = counts();
        for (path, kind) in [
            ("/crates/demo-tools", "text/html"),
            ("/api/v1/crates/demo-tools", "application/json"),
        ] {
            let again = scene.get(path).await;
            assert_eq!(again.status, StatusCode::OK);
            assert!(
                !again.text().contains("0.2.0"),
                "{path} came from the cache"
            );
            // The page and its API twin are different answers, though the API router sees
            // the same path once its prefix is stripped.
            assert!(again.header("content-type").starts_with(kind), "{path}");
            assert_security_headers(&again);
        }
        let api = scene.get("/api/v1/crates/demo-tools").await.json();
        assert_eq!(api["name"], "demo-tools", "{api}");
        assert_eq!(counts(), (before.0 + 3, before.1));

        // The fragment htmx asks for and the whole page are kept apart, both ways round.
        let fragment = scene
            .get_with("/search?q=tools", &[("hx-request", "true")])
            .await;
        assert!(!fragment.text().contains("<html"));
        let page = scene.get("/search?q=tools").await;
        assert!(page.text().contains("<html"));
        let restore = scene.get_history_restore("/search?q=tools").await;
        assert!(restore.text().contains("<html"));
        assert_eq!(restore.header("vary"), "HX-Request");
        let fragment_again = scene
            .get_with("/search?q=tools", &[("hx-request", "true")])
            .await;
        assert_eq!(fragment_again.body, fragment.body);

        // Answers other than 200 are not kept: a crate that appears is found at once.
        assert_eq!(
            scene.get("/crates/newcomer").await.status,
            StatusCode::NOT_FOUND
        );
        index(&scene.store, "newcomer", "1.0.0").await;
        assert_eq!(scene.get("/crates/newcomer").await.status, StatusCode::OK);
        assert_eq!(
            scene.get("/api/v1/crates/latecomer").await.status,
            StatusCode::NOT_FOUND
        );
        index(&scene.store, "latecomer", "1.0.0").await;
        let found = scene.get("/api/v1/crates/latecomer").await;
        assert_eq!(found.status, StatusCode::OK);
        assert_eq!(found.json()["name"], "latecomer");

        // The admin pages are never cached: the same URL with and without a session.
        let (cookie, csrf) = scene.login().await;
        assert!(scene.get("/admin").await.text().contains("name=\"token\""));
        let dashboard = scene.get_with("/admin", &[("cookie", &cookie)]).await;
        assert!(dashboard.text().contains("Approve"));
        assert!(scene.get("/admin").await.text().contains("name=\"token\""));

        // An admin action clears the cache: the builders page shows the approval at once,
        // and every other page is rendered afresh too.
        let pending = scene.pending.to_string();
        let page = format!("/builders/{pending}");
        assert!(scene.get(&page).await.text().contains("status-pending"));
        let approved = scene
            .post_form(
                "/admin/builders/approve",
                &[("csrf", csrf.as_str()), ("key", pending.as_str())],
                &[("cookie", &cookie), ("origin", "http://buildsrs.test")],
            )
            .await;
        assert_eq!(approved.status, StatusCode::SEE_OTHER);
        let shown = scene.get(&page).await.text();
        assert!(shown.contains("status-approved"), "{shown}");
        assert!(shows_new_version(&scene).await);

        // Many asking at once for a page nobody has rendered yet: one renders it, the others
        // wait for that answer.
        let before = counts();
        let answers = futures::future::join_all((0..24).map(|_| scene.get("/crates/demo"))).await;
        assert!(answers.iter().all(|a| a.status == StatusCode::OK));
        assert!(answers.iter().all(|a| a.body == answers[0].body));
        let after = counts();
        assert_eq!(after.1 - before.1, 1, "one render: {before:?} → {after:?}");
        assert_eq!(after.0 - before.0, 23);

        let metrics = scene.get("/metrics").await.text();
        assert!(
            metrics.contains(&format!(
                "buildsrs_page_cache_requests_total{{result=\"miss\"}} {}",
                after.1
            )),
            "{metrics}"
        );
    }
);

/// Whether the crate page of `demo-tools` lists the version [`index`] adds in these tests.
async fn shows_new_version(scene: &Scene) -> bool {
    scene
        .get("/crates/demo-tools")
        .await
        .text()
        .contains("0.2.0")
}

store_test!(
    cached_answers_expire_after_the_ttl,
    |store: Store| async move {
        let ttl = std::time::Duration::from_millis(200);
        let scene = cached_scene(store, ttl).await;
        assert!(!shows_new_version(&scene).await);
        index(&scene.store, "demo-tools", "0.2.0").await;
        // Seen within the TTL or not (a slow machine may take longer than it between the two
        // requests), the new version shows once the TTL has surely passed.
        tokio::time::sleep(ttl * 3).await;
        assert!(shows_new_version(&scene).await);
    }
);

store_test!(
    without_a_ttl_every_request_renders,
    |store: Store| async move {
        let scene = cached_scene(store, std::time::Duration::ZERO).await;
        assert!(!shows_new_version(&scene).await);
        index(&scene.store, "demo-tools", "0.2.0").await;
        assert!(shows_new_version(&scene).await);
        assert_eq!(scene.state.page_cache().counts(), (0, 0));
    }
);

store_test!(
    a_builder_name_cannot_alter_the_keyring_for_anyone,
    |store: Store| async move {
        use buildsrs_keys::Revocation;
        use buildsrs_store::testing::{TOOLCHAIN, key, register};
        use buildsrs_store::{NewBuilder, StoreError};

        let scene = Scene::seed(store).await;
        let [alpha, beta] = scene.approved;
        let now = jiff::Timestamp::now();
        // A builder names itself in its hello. Names that would add a revocation, another
        // key's line or a comment to the served keyring are refused; nothing is stored.
        let attacks = [
            "x revoked".to_owned(),
            "alpha revoked".to_owned(),
            format!("x\n{beta} beta revoked"),
            format!("x\r\n{beta} beta revoked"),
            "x # everything after is a comment".to_owned(),
        ];
        for name in attacks {
            let error = scene
                .store
                .register_builder(
                    NewBuilder {
                        public_key: key(5),
                        name: name.clone(),
                        targets: vec![TARGET.parse().unwrap()],
                        toolchains: vec![TOOLCHAIN.parse().unwrap()],
                        capacity: 1,
                    },
                    now,
                )
                .await
                .unwrap_err();
            assert!(matches!(error, StoreError::Invalid(_)), "{name:?}: {error}");
        }
        assert!(scene.store.builder(&key(5)).await.unwrap().is_none());

        // What the rule lets through cannot hurt either, even approved: a copy of another
        // builder's name, and a name that is a keyring word.
        let copycat = register(&scene.store, 5, "alpha", now).await;
        let odd = register(&scene.store, 6, "revoked", now).await;
        for key in [copycat, odd] {
            scene.store.approve_builder(&key, now).await.unwrap();
        }

        // Every user who fetches the keyring gets one that parses, with every approved key
        // trusted under a name of its own.
        let keyring = scene.get("/keyring").await;
        assert_eq!(keyring.status, StatusCode::OK);
        let text = keyring.text();
        let parsed = Keyring::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.entries().len(), 4, "{text}");
        let fallback = format!("builder+{}", copycat.fingerprint());
        for (key, name) in [
            (alpha, "alpha"),
            (beta, "beta"),
            (copycat, fallback.as_str()),
            (odd, "revoked"),
        ] {
            let entry = parsed.get(&key).unwrap();
            assert_eq!(entry.name, name, "{text}");
            assert_eq!(entry.revocation, Revocation::None, "{text}");
        }
    }
);

store_test!(
    the_admin_approves_a_key_as_run_by_an_operator,
    |store: Store| async move {
        let scene = Scene::seed(store).await;
        let pending = scene.pending.to_string();
        let (cookie, csrf) = scene.login().await;
        let dashboard = scene
            .get_with("/admin", &[("cookie", &cookie)])
            .await
            .text();
        assert!(dashboard.contains("name=\"operator\""), "{dashboard}");

        // An operator that breaks the rule is refused, and the key stays pending.
        let bad = scene
            .post_form(
                "/admin/builders/approve",
                &[
                    ("csrf", csrf.as_str()),
                    ("key", pending.as_str()),
                    ("operator", "x revoked"),
                ],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.text().contains("operator"), "{}", bad.text());
        let still = scene.store.builder(&scene.pending).await.unwrap().unwrap();
        assert_eq!(still.status, BuilderStatus::Pending);

        let approved = scene
            .post_form(
                "/admin/builders/approve",
                &[
                    ("csrf", csrf.as_str()),
                    ("key", pending.as_str()),
                    ("operator", "example-org"),
                ],
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(
            approved.status,
            StatusCode::SEE_OTHER,
            "{}",
            approved.text()
        );
        let info = scene.store.builder(&scene.pending).await.unwrap().unwrap();
        assert_eq!(info.status, BuilderStatus::Approved);
        assert_eq!(
            info.operator.as_ref().map(|o| o.as_str()),
            Some("example-org")
        );

        // The operator shows on the builder pages and in the API; the others are their own.
        let page = scene.get(&format!("/builders/{pending}")).await.text();
        assert!(page.contains("example-org"), "{page}");
        let list = scene.get("/builders").await.text();
        assert!(
            list.contains("example-org") && list.contains("its own key"),
            "{list}"
        );
        let dashboard = scene
            .get_with("/admin", &[("cookie", &cookie)])
            .await
            .text();
        assert!(dashboard.contains("example-org"), "{dashboard}");
        let answer = scene.get(&format!("/api/v1/builders/{pending}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let json = answer.json();
        assert_eq!(json["builder"]["operator"], "example-org", "{json}");
        let alpha = scene
            .get(&format!("/api/v1/builders/{}", scene.approved[0]))
            .await
            .json();
        assert!(alpha["builder"]["operator"].is_null(), "{alpha}");
        let all = scene.get("/api/v1/builders").await.json();
        assert!(all.to_string().contains("example-org"), "{all}");
    }
);
