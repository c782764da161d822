//! The web UI in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver) by fantoccini, against the server on a loopback socket. It walks what a person
//! does: reads the home page, types in the search box (htmx swaps the results in), watches the
//! queue page refresh itself, opens a version page, downloads the artifact and checks its
//! hash, logs in as admin and approves a builder. After each step the browser's console must be free of errors. Chromium talks to
//! loopback only, and its net log is checked for that afterwards. Screenshots (desktop and
//! phone sized) are saved as test artifacts. Two more tests go Back to a search, past the
//! browser's cache and past htmx's history cache: the whole page must come back.
//!
//! Needs `chromium` and `chromedriver` (`scripts/ensure-chromium` installs them; `scripts/test`
//! calls it). Without them the test fails, saying so. Paths: `BUILDSRS_CHROMIUM` and
//! `BUILDSRS_CHROMEDRIVER` override the Debian ones. Locally, `BUILDSRS_SKIP_BROWSER_TEST=1`
//! skips it (refused when `CI` is set). Screenshots, chromedriver's log and Chromium's net log
//! go to `BUILDSRS_BROWSER_ARTIFACTS`, by default `$CARGO_TARGET_DIR/browser-screenshots` (or
//! `target/browser-screenshots`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use buildsrs_keys::Blake3Hash;
use buildsrs_store::BuilderStatus;
use buildsrs_store::testing::TestStore;
use buildsrs_web::serve;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, Scene, TARGET};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The longest any single wait in the walk may take.
const WAIT: Duration = Duration::from_secs(10);
/// The whole walk, once the browser is up.
const WHOLE: Duration = Duration::from_secs(120);
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_walks_the_web_ui_in_chromium() {
    in_chromium(Journey::Everything).await;
}

/// Back to a search after following a result, when the page is no longer in the browser's
/// back/forward cache (evicted after a while or under memory pressure, or not kept at all):
/// the browser then takes `/search?q=tools` from its HTTP cache, where the last response for
/// that URL is the htmx fragment, so the person sees the bare result list without header,
/// search box or styles. Fixed when the pages that answer `HX-Request` with a fragment send
/// `Vary: HX-Request` (or keep fragments out of caches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_a_search_shows_the_whole_page() {
    in_chromium(Journey::BackToSearch).await;
}

/// Back from a search to the page before it, when htmx's own history cache (ten pages in
/// `sessionStorage`; each pause in typing pushes one) no longer holds that page: htmx fetches
/// it with `HX-Request` and `HX-History-Restore-Request` and puts the answer in the body, but
/// the server answers `HX-Request` with the results fragment, so header, search box and footer
/// vanish. Fixed when `from_htmx` (web/src/pages.rs) says no to history restore requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_past_htmx_history_shows_the_whole_page() {
    in_chromium(Journey::HistoryRestore).await;
}

/// What a browser test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Journey {
    /// Every page and action, at desktop and phone size.
    Everything,
    /// A search, a result followed, and Back, with no back/forward cache.
    BackToSearch,
    /// A search, then Back with htmx's history cache emptied.
    HistoryRestore,
}

async fn in_chromium(journey: Journey) {
    let Some(tools) = Tools::find() else {
        return;
    };
    let artifacts = match journey {
        Journey::Everything => artifact_dir(),
        Journey::BackToSearch => artifact_dir().join("back-to-search"),
        Journey::HistoryRestore => artifact_dir().join("history-restore"),
    };
    std::fs::create_dir_all(&artifacts).expect("creating the screenshot folder");
    // Nothing left from an earlier run may pass for this run's.
    for entry in std::fs::read_dir(&artifacts).expect("reading the screenshot folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".png") || LOGS.contains(&name) || name == "failure.html" {
            std::fs::remove_file(&path).expect("removing an old artifact");
        }
    }
    // The profile, downloads and logs of this run: its own, even if another checkout runs
    // this test at the same time with the same target folder.
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let outcome = walk_in_chromium(&tools, &artifacts, scratch.path(), journey).await;
    for log in LOGS {
        std::fs::copy(scratch.path().join(log), artifacts.join(log)).ok();
    }
    if let Err(error) = outcome {
        panic!(
            "{error:#}\n(see {} for screenshots, the page source, chromedriver's log and \
             Chromium's net log)",
            artifacts.display()
        );
    }
    eprintln!("screenshots in {}", artifacts.display());
}

/// The logs kept with the screenshots.
const LOGS: [&str; 2] = ["chromedriver.log", "chromium-netlog.json"];

async fn walk_in_chromium(
    tools: &Tools,
    artifacts: &Path,
    scratch: &Path,
    journey: Journey,
) -> Result<()> {
    let downloads = scratch.join("downloads");
    let profile = scratch.join("profile");
    std::fs::create_dir(&downloads)?;
    std::fs::create_dir(&profile)?;
    let netlog = scratch.join(LOGS[1]);

    // The server, on loopback, its public URL the one the browser uses.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the server to 127.0.0.1")?;
    let base = format!("http://{}", listener.local_addr()?);
    let test_store = TestStore::sqlite().await;
    let scene = Scene::seed(test_store.store.clone()).await;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, scene.state.clone(), shutdown.clone()));

    let started = Instant::now();
    let mut driver = Chromedriver::start(&tools.chromedriver, &scratch.join(LOGS[0]))
        .await
        .context("starting chromedriver")?;
    let client = driver
        .session(&tools.chromium, &profile, &downloads, &netlog, journey)
        .await
        .context("starting headless Chromium through chromedriver")?;
    eprintln!("browser up after {:?}", started.elapsed());

    let walk = Walk {
        client: &client,
        base: &base,
        scene: &scene,
        artifacts,
        downloads: &downloads,
    };
    let outcome = tokio::time::timeout(WHOLE, walk.run(journey))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the walk took longer than {WHOLE:?}")));
    if outcome.is_err() {
        // What the browser showed when it went wrong, for the CI log's reader.
        walk.screenshot("failure").await.ok();
        if let Ok(source) = client.source().await {
            std::fs::write(artifacts.join("failure.html"), source).ok();
        }
    }
    // Always end the session, so chromedriver closes Chromium, then chromedriver itself.
    tokio::time::timeout(WAIT, client.close()).await.ok();
    driver.stop().await;
    shutdown.cancel();
    server.await?.context("the server")?;
    eprintln!("browser walk took {:?}", started.elapsed());
    outcome?;
    netlog_is_loopback(&netlog)
}

/// The browser and its driver, found on this machine.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Tools {
    /// `None` only when a person opted out locally; a missing browser fails the test.
    fn find() -> Option<Tools> {
        if std::env::var_os("BUILDSRS_SKIP_BROWSER_TEST").is_some_and(|v| v == "1") {
            buildsrs_test_support::skip_or_panic(
                "the browser tests",
                "BUILDSRS_SKIP_BROWSER_TEST=1 (for local runs only)",
            );
            return None;
        }
        let chromium = locate(
            "BUILDSRS_CHROMIUM",
            // The browser itself rather than Debian's /usr/bin/chromium launcher script,
            // which adds flags of its own (extensions, GPU rasterization).
            &["/usr/lib/chromium/chromium", "/usr/bin/chromium"],
        );
        let chromedriver = locate("BUILDSRS_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Some(Tools {
                chromium,
                chromedriver,
            }),
            _ => panic!(
                "the browser test needs Chromium and chromedriver: run scripts/ensure-chromium \
                 (installs Debian's `chromium` and `chromium-driver`), or point \
                 BUILDSRS_CHROMIUM / BUILDSRS_CHROMEDRIVER at them; to skip it locally, set \
                 BUILDSRS_SKIP_BROWSER_TEST=1"
            ),
        }
    }
}

/// The file an environment variable names (which must exist), or the first default present.
fn locate(var: &str, defaults: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return Some(path);
    }
    defaults.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn artifact_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BUILDSRS_BROWSER_ARTIFACTS").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("browser-screenshots")
}

/// A chromedriver child process on a free loopback port; killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start(path: &Path, log: &Path) -> Result<Chromedriver> {
        // A port the kernel just handed out and took back: free unless someone races us.
        let port = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut child = Command::new(path)
            .arg(format!("--port={port}"))
            // Loopback only: no remote client may drive this browser.
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", path.display()))?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("chromedriver exited ({status}) before listening; see chromedriver.log");
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "chromedriver did not listen on {address} within {WAIT:?}; see chromedriver.log"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Chromedriver {
            child,
            url: format!("http://{address}"),
        })
    }

    /// A new browser session: headless Chromium with a fresh profile, no background traffic,
    /// downloads into `downloads` without asking.
    async fn session(
        &self,
        chromium: &Path,
        profile: &Path,
        downloads: &Path,
        netlog: &Path,
        journey: Journey,
    ) -> Result<Client> {
        let back_forward_cache = if journey == Journey::BackToSearch {
            ",BackForwardCache"
        } else {
            ""
        };
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-default-apps".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--no-first-run".to_owned(),
            // Containers often have a small /dev/shm.
            "--disable-dev-shm-usage".to_owned(),
            // Screenshots without scroll bars, and the viewport as wide as the window.
            "--hide-scrollbars".to_owned(),
            // Nothing but loopback: the flags above still leave Chromium asking Google's
            // servers for updates and accounts and preconnecting to its search engine. No
            // name resolves (so no DNS query leaves the machine), the features that call home
            // are off, and the net log shows what it tried (checked in `netlog_is_loopback`).
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_owned(),
            "--dns-prefetch-disable".to_owned(),
            "--disable-domain-reliability".to_owned(),
            "--disable-client-side-phishing-detection".to_owned(),
            "--no-pings".to_owned(),
            format!(
                "--disable-features=AutofillServerCommunication,NetworkTimeServiceQuerying,\
                 OptimizationHints,MediaRouter,Translate,InterestFeedContentSuggestions,\
                 CertificateTransparencyComponentUpdater{back_forward_cache}"
            ),
            format!("--log-net-log={}", netlog.display()),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            // The console, read back after each step: CSP violations and script errors land there.
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object");
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let connect = builder.connect(&self.url);
        match tokio::time::timeout(Duration::from_secs(30), connect).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(error)) => Err(anyhow::Error::new(error).context(format!(
                "chromedriver could not start {}; see chromedriver.log",
                chromium.display()
            ))),
            Err(_) => bail!("Chromium did not start within 30 s; see chromedriver.log"),
        }
    }

    async fn stop(&mut self) {
        self.child.start_kill().ok();
        self.child.wait().await.ok();
    }
}

/// The steps, sharing the browser and the scene.
struct Walk<'a> {
    client: &'a Client,
    base: &'a str,
    scene: &'a Scene,
    artifacts: &'a Path,
    downloads: &'a Path,
}

impl Walk<'_> {
    async fn run(&self, journey: Journey) -> Result<()> {
        self.viewport(DESKTOP).await?;
        if journey == Journey::BackToSearch {
            self.search().await.context("the search page")?;
            return self.back_to_search().await.context("back to the search");
        }
        if journey == Journey::HistoryRestore {
            return self
                .history_restore()
                .await
                .context("back past htmx's history cache");
        }
        self.home().await.context("the home page")?;
        self.console_is_clean().await.context("the home page")?;
        self.search().await.context("the search page")?;
        self.console_is_clean().await.context("the search page")?;
        self.queue().await.context("the queue page")?;
        self.console_is_clean().await.context("the queue page")?;
        self.version_page_and_download()
            .await
            .context("the version page and its download")?;
        self.console_is_clean()
            .await
            .context("the version page and its download")?;
        self.admin().await.context("the admin pages")?;
        self.console_is_clean().await.context("the admin pages")?;
        self.phone().await.context("the pages at phone size")?;
        self.console_is_clean()
            .await
            .context("the pages at phone size")?;
        Ok(())
    }

    /// Sizes the window so that the page itself gets `width` × `height` CSS pixels (headless
    /// Chromium still counts some window decoration into the window's size).
    async fn viewport(&self, (width, height): (u32, u32)) -> Result<()> {
        self.client.set_window_size(width, height).await?;
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await?;
        let (Some(inner_width), Some(inner_height)) = (inner[0].as_u64(), inner[1].as_u64()) else {
            bail!("window.innerWidth/innerHeight: {inner}");
        };
        let outer_width = u64::from(width) + u64::from(width).saturating_sub(inner_width);
        let outer_height = u64::from(height) + u64::from(height).saturating_sub(inner_height);
        self.client
            .set_window_size(u32::try_from(outer_width)?, u32::try_from(outer_height)?)
            .await?;
        Ok(())
    }

    /// Fails on any error the browser's console collected since the last look: a script
    /// error, a resource that failed to load, a content security policy violation.
    async fn console_is_clean(&self) -> Result<()> {
        let entries = self.client.issue_cmd(BrowserLog).await?;
        let errors: Vec<&Value> = entries
            .as_array()
            .context("the browser log is a list")?
            .iter()
            .filter(|e| e["level"] == json!("SEVERE"))
            // The server has no favicon (yet); the browser asks for one on every page.
            .filter(|e| {
                !e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("{}/favicon.ico ", self.base)))
            })
            .collect();
        ensure!(
            errors.is_empty(),
            "the browser's console shows errors: {}",
            serde_json::to_string_pretty(&errors)?
        );
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn home(&self) -> Result<()> {
        self.client.goto(&self.url("/")).await?;
        for (id, expected) in [
            ("stat-crates", "2"),
            ("stat-verified", "1"),
            ("stat-online", "2"),
        ] {
            let text = self.find(&format!("#{id}")).await?.text().await?;
            ensure!(
                text == expected,
                "#{id} shows {text:?}, expected {expected}"
            );
        }
        // The recently verified table links the version page.
        self.find("table a[href=\"/crates/demo/1.0.0\"]").await?;
        // htmx came from /static under the content security policy.
        let htmx = self
            .client
            .execute("return typeof window.htmx === 'object';", vec![])
            .await?;
        ensure!(htmx == json!(true), "htmx did not load on the home page");
        self.screenshot("home-desktop").await
    }

    /// Typing updates the results in place: htmx fetches the fragment and swaps it in. The
    /// proof that no page load happened is a value left on `window` before typing, still
    /// there afterwards (a navigation would have made a new `window`).
    async fn search(&self) -> Result<()> {
        self.client.goto(&self.url("/search")).await?;
        self.find("#results a[href=\"/crates/demo\"]")
            .await
            .context("the empty search lists every crate")?;
        self.mark("typed-here").await?;
        self.find("#search-box").await?.send_keys("tools").await?;
        self.until(
            "the results to show only demo-tools",
            "return document.querySelector('#results a[href=\"/crates/demo-tools\"]') !== null \
             && document.querySelector('#results a[href=\"/crates/demo\"]') === null;",
        )
        .await?;
        self.ensure_still_marked(
            "typed-here",
            "the page was reloaded instead of updated by htmx",
        )
        .await?;
        // hx-push-url put the query in the address bar, so the results can be bookmarked.
        let url = self.client.current_url().await?;
        ensure!(
            url.path() == "/search" && url.query() == Some("q=tools"),
            "the address bar shows {url}"
        );
        let summary = self.find("#results p.muted").await?.text().await?;
        ensure!(summary.contains("1 crate"), "results summary {summary:?}");
        self.screenshot("search-desktop").await
    }

    /// The queue page polls for its list (htmx, every 3 s): a builder taking a task shows up
    /// without a reload.
    async fn queue(&self) -> Result<()> {
        self.client.goto(&self.url("/queue")).await?;
        let building = self.find("#queue-building").await?.text().await?;
        ensure!(building == "0", "building before any lease: {building:?}");
        self.mark("watching").await?;
        self.scene
            .store
            .lease_next(&self.scene.approved[0], jiff::Timestamp::now())
            .await?
            .context("demo 1.1.0 is there to lease")?;
        self.until(
            "the queue to show the lease",
            "return document.getElementById('queue-building')?.textContent === '1';",
        )
        .await?;
        self.ensure_still_marked(
            "watching",
            "the queue page was reloaded instead of refreshed by htmx",
        )
        .await?;
        self.screenshot("queue-desktop").await
    }

    /// Follows the result of [`Walk::search`], then goes back.
    async fn back_to_search(&self) -> Result<()> {
        self.find("#results a[href=\"/crates/demo-tools\"]")
            .await?
            .click()
            .await?;
        self.until(
            "the crate page",
            "return location.pathname === '/crates/demo-tools';",
        )
        .await?;
        self.client.back().await?;
        self.whole_search_page_after_back("?q=tools", "/crates/demo-tools")
            .await
    }

    /// After going Back: the search page with header, box and a result linking `link`, at
    /// the URL query `search` (not the bare htmx fragment).
    async fn whole_search_page_after_back(&self, search: &str, link: &str) -> Result<()> {
        let whole = self
            .until(
                "the whole search page after going back",
                &format!(
                    "return location.search === '{search}' \
                     && document.querySelector('header.top') !== null \
                     && document.querySelector('#search-box') !== null \
                     && document.querySelector('#results a[href=\"{link}\"]') !== null;"
                ),
            )
            .await;
        self.screenshot("search-after-back").await?;
        whole
    }

    /// Searches, empties htmx's history cache as if it had moved on, and goes back.
    async fn history_restore(&self) -> Result<()> {
        self.client.goto(&self.url("/search")).await?;
        self.find("#search-box").await?.send_keys("tools").await?;
        self.until(
            "the search to be pushed",
            "return location.search === '?q=tools';",
        )
        .await?;
        self.client
            .execute(
                "sessionStorage.removeItem('htmx-history-cache'); return true;",
                vec![],
            )
            .await?;
        self.client.back().await?;
        self.whole_search_page_after_back("", "/crates/demo").await
    }

    async fn version_page_and_download(&self) -> Result<()> {
        // From the crate page, follow the link to the verified version as a person would.
        self.client.goto(&self.url("/crates/demo")).await?;
        self.find("a[href=\"/crates/demo/1.0.0\"]")
            .await?
            .click()
            .await?;
        self.until(
            "the version page",
            "return location.pathname === '/crates/demo/1.0.0' \
             && document.querySelector('section.target') !== null;",
        )
        .await?;
        let section = self
            .find(&format!("section[id=\"target-{TARGET}\"]"))
            .await?;
        let text = section.text().await?;
        ensure!(text.contains("verified"), "the target's state: {text}");
        ensure!(text.contains("all reported hashes agree"), "{text}");
        for (name, key) in ["alpha", "beta"].iter().zip(&self.scene.approved) {
            ensure!(text.contains(name), "builder {name} missing: {text}");
            let fingerprint = key.fingerprint().to_string();
            ensure!(
                text.contains(&fingerprint),
                "{name}'s fingerprint {fingerprint} missing"
            );
        }
        self.screenshot("version-desktop").await?;

        let link = section.find(Locator::Css("a.button")).await?;
        let href = link.attr("href").await?.unwrap_or_default();
        ensure!(
            href == format!("/crates/demo/1.0.0/{TARGET}"),
            "the download link goes to {href:?}"
        );
        let name = link.attr("download").await?.unwrap_or_default();
        ensure!(
            name == format!("demo-1.0.0-{TARGET}.tar.gz"),
            "download name {name:?}"
        );
        // The browser itself downloads it (chromedriver lets headless Chromium save into the
        // profile's download folder), so this checks what a person would get.
        ensure!(self.scene.downloads().await == 0, "no download counted yet");
        link.click().await?;
        let file = self.downloads.join(&name);
        let expected = self.scene.bytes.len();
        let deadline = Instant::now() + WAIT;
        loop {
            // Chromium writes `<name>.crdownload` and renames it when complete.
            if std::fs::metadata(&file).is_ok_and(|m| m.len() as usize == expected) {
                break;
            }
            if Instant::now() >= deadline {
                let present: Vec<_> = std::fs::read_dir(self.downloads)?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                bail!("{name} did not arrive within {WAIT:?}; the folder holds {present:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let bytes = std::fs::read(&file)?;
        ensure!(
            Blake3Hash::of_bytes(&bytes) == self.scene.artifact.blake3,
            "the downloaded file's BLAKE3 differs from the verified artifact's"
        );
        ensure!(
            self.scene.downloads().await == 1,
            "the server counted the browser's download"
        );
        Ok(())
    }

    async fn admin(&self) -> Result<()> {
        self.client.goto(&self.url("/admin")).await?;
        self.find("input[name=token]")
            .await?
            .send_keys(ADMIN_TOKEN)
            .await?;
        self.screenshot("admin-login-desktop").await?;
        self.find("form.login button[type=submit]")
            .await?
            .click()
            .await?;
        // The dashboard lists gamma, pending, with an Approve button.
        let row = format!("//tr[@id='builder-{}']", self.scene.pending.fingerprint());
        let gamma = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::XPath(&row))
            .await
            .context("the dashboard after logging in")?;
        let text = gamma.text().await?;
        ensure!(text.contains("gamma") && text.contains("pending"), "{text}");
        self.screenshot("admin-desktop").await?;
        gamma
            .find(Locator::Css(
                "form[action=\"/admin/builders/approve\"] button",
            ))
            .await?
            .click()
            .await?;
        let notice = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.notice"))
            .await
            .context("the dashboard after approving")?;
        let text = notice.text().await?;
        ensure!(text == "Builder approved.", "notice {text:?}");
        let url = self.client.current_url().await?;
        ensure!(
            url.query() == Some("done=approved"),
            "after approving: {url}"
        );
        let gamma = self.client.find(Locator::XPath(&row)).await?;
        let text = gamma.text().await?;
        ensure!(
            text.contains("approved"),
            "gamma's row after approving: {text}"
        );
        let approve = gamma
            .find_all(Locator::Css("form[action=\"/admin/builders/approve\"]"))
            .await?;
        ensure!(approve.is_empty(), "gamma still has an Approve button");
        let gamma = self
            .scene
            .store
            .builder(&self.scene.pending)
            .await?
            .context("gamma in the store")?;
        ensure!(
            gamma.status == BuilderStatus::Approved,
            "gamma is {:?} in the store",
            gamma.status
        );
        self.screenshot("admin-approved-desktop").await
    }

    /// The same pages in a phone-sized window, for a person to look at.
    async fn phone(&self) -> Result<()> {
        self.viewport(PHONE).await?;
        for (path, name) in [
            ("/", "home-phone"),
            ("/search?q=demo", "search-phone"),
            ("/crates/demo/1.0.0", "version-phone"),
            ("/admin", "admin-phone"),
        ] {
            self.client.goto(&self.url(path)).await?;
            self.find("main").await?;
            // Wider content than the screen means sideways scrolling: worth knowing, but a
            // matter of design rather than a failure of this walk.
            let widths = self
                .client
                .execute(
                    "return [document.documentElement.scrollWidth, window.innerWidth];",
                    vec![],
                )
                .await?;
            eprintln!("{path} at phone size: [content width, viewport width] = {widths}");
            self.screenshot(name).await?;
        }
        Ok(())
    }

    /// Waits for an element the page should have.
    /// Leaves `mark` on the page's `window`: htmx swaps keep it, a page load does not.
    async fn mark(&self, mark: &str) -> Result<()> {
        self.client
            .execute(
                "window.buildsrsMarker = arguments[0]; return true;",
                vec![json!(mark)],
            )
            .await?;
        Ok(())
    }

    /// Fails with `reloaded` if the page no longer carries `mark` (it was loaded again).
    async fn ensure_still_marked(&self, mark: &str, reloaded: &str) -> Result<()> {
        let found = self
            .client
            .execute("return window.buildsrsMarker || null;", vec![])
            .await?;
        ensure!(found == json!(mark), "{reloaded} (marker {found})");
        Ok(())
    }

    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    /// Polls a script until it returns `true`.
    async fn until(&self, what: &str, script: &str) -> Result<()> {
        poll(what, || async {
            Ok(self.client.execute(script, vec![]).await? == json!(true))
        })
        .await
    }

    async fn screenshot(&self, name: &str) -> Result<()> {
        let png = self.client.screenshot().await?;
        std::fs::write(self.artifacts.join(format!("{name}.png")), png)?;
        Ok(())
    }
}

/// Polls `check` every 50 ms until it says yes, for at most [`WAIT`].
async fn poll<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what} in vain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// chromedriver's log endpoint (a Selenium extension): the console entries since last asked.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// Reads Chromium's net log (JSON, one event a line, so a log cut short still reads) and
/// fails if the browser sent anything beyond loopback: a DNS query, a TCP connection to
/// another address, or a UDP datagram to one. (Chromium `connect`s a UDP socket towards a
/// public address to learn whether IPv6 is routable; that sends nothing, and is allowed.)
fn netlog_is_loopback(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading Chromium's net log {}", path.display()))?;
    let mut lines = text.lines();
    let constants: Value = lines
        .next()
        .and_then(|l| l.strip_prefix("{\"constants\":"))
        .and_then(|l| serde_json::from_str(l.trim_end_matches(',')).ok())
        .context("the net log starts with its constants")?;
    let names: std::collections::HashMap<u64, &str> = constants["logEventTypes"]
        .as_object()
        .context("the net log names its event types")?
        .iter()
        .filter_map(|(name, number)| Some((number.as_u64()?, name.as_str())))
        .collect();
    let mut udp_elsewhere = std::collections::HashMap::new();
    let mut loopback_connections = 0;
    let mut problems = std::collections::BTreeSet::new();
    for line in lines {
        let Ok(event) = serde_json::from_str::<Value>(line.trim_end_matches(',')) else {
            continue; // the "events" line, the closing one, or a last line cut short
        };
        let kind = event["type"]
            .as_u64()
            .and_then(|n| names.get(&n))
            .copied()
            .unwrap_or("");
        let source = event["source"]["id"].as_u64();
        let address = event["params"]["address"].as_str();
        match kind {
            "DNS_TRANSACTION" => {
                if let Some(name) = event["params"]["hostname"].as_str() {
                    problems.insert(format!("a DNS query for {name}"));
                }
            }
            "TCP_CONNECT_ATTEMPT" => match address {
                Some(address) if is_loopback(address) => loopback_connections += 1,
                Some(address) => {
                    problems.insert(format!("a TCP connection to {address}"));
                }
                None => {}
            },
            "UDP_CONNECT" => {
                if let (Some(source), Some(address)) = (source, address)
                    && !is_loopback(address)
                {
                    udp_elsewhere.insert(source, address.to_owned());
                }
            }
            "UDP_BYTES_SENT" => {
                if let Some(address) = source.and_then(|s| udp_elsewhere.get(&s)) {
                    problems.insert(format!("a UDP datagram to {address}"));
                }
            }
            _ => {}
        }
    }
    // The walk's own connections to the server prove the log covers it.
    ensure!(
        loopback_connections > 0,
        "the net log {} shows no connection at all",
        path.display()
    );
    ensure!(
        problems.is_empty(),
        "Chromium reached beyond loopback: {}",
        problems.into_iter().collect::<Vec<_>>().join("; ")
    );
    Ok(())
}

/// Whether `host:port` (or `[v6]:port`) names a loopback address.
fn is_loopback(address: &str) -> bool {
    let host = match address.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => address.rsplit_once(':').map_or(address, |(host, _)| host),
    };
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[test]
fn the_net_log_check_catches_traffic_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let log = |events: &[&str]| {
        let path = dir.path().join("netlog.json");
        let mut text = String::from(
            "{\"constants\":{\"logEventTypes\":{\"DNS_TRANSACTION\":1,\
             \"TCP_CONNECT_ATTEMPT\":2,\"UDP_CONNECT\":3,\"UDP_BYTES_SENT\":4}},\n\"events\": [\n",
        );
        for event in events {
            text.push_str(event);
            text.push_str(",\n");
        }
        std::fs::write(&path, text).unwrap();
        netlog_is_loopback(&path)
    };
    let server = r#"{"type":2,"source":{"id":1},"params":{"address":"127.0.0.1:8080"}}"#;
    let probe = r#"{"type":3,"source":{"id":2},"params":{"address":"[2001:db8::1]:443"}}"#;
    log(&[server, probe]).expect("loopback, and a UDP probe that sends nothing");
    log(&[]).expect_err("a log without the walk's connections");

    let dns = r#"{"type":1,"source":{"id":3},"params":{"hostname":"example.com"}}"#;
    let error = log(&[server, dns]).unwrap_err().to_string();
    assert!(error.contains("DNS query for example.com"), "{error}");
    let tcp = r#"{"type":2,"source":{"id":4},"params":{"address":"192.0.2.1:443"}}"#;
    let error = log(&[server, tcp]).unwrap_err().to_string();
    assert!(error.contains("TCP connection to 192.0.2.1:443"), "{error}");
    let sent = r#"{"type":4,"source":{"id":2},"params":{"byte_count":10}}"#;
    let error = log(&[server, probe, sent]).unwrap_err().to_string();
    assert!(
        error.contains("UDP datagram to [2001:db8::1]:443"),
        "{error}"
    );

    assert!(is_loopback("[::1]:9515") && is_loopback("127.0.0.1:1"));
    assert!(!is_loopback("10.0.0.1:53") && !is_loopback("[fd00::2]:1") && !is_loopback("x"));
}
