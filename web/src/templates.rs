//! The page templates, compiled into the binary, and the filters they use.
//!
//! minijinja escapes everything in `.html` templates; no template marks input as safe. The
//! filters turn store values into what people read: short fingerprints, sizes, times.

use axum::response::Html;
use minijinja::Environment;
use minijinja::value::Serde;
use serde::Serialize;

use crate::error::WebError;

/// Every template, by name. Names starting with `_` are fragments htmx swaps in.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("search.html", include_str!("../templates/search.html")),
    (
        "_search_results.html",
        include_str!("../templates/_search_results.html"),
    ),
    ("crate.html", include_str!("../templates/crate.html")),
    ("version.html", include_str!("../templates/version.html")),
    ("artifact.html", include_str!("../templates/artifact.html")),
    ("builders.html", include_str!("../templates/builders.html")),
    ("builder.html", include_str!("../templates/builder.html")),
    ("queue.html", include_str!("../templates/queue.html")),
    ("_queue.html", include_str!("../templates/_queue.html")),
    ("task.html", include_str!("../templates/task.html")),
    (
        "admin_login.html",
        include_str!("../templates/admin_login.html"),
    ),
    ("admin.html", include_str!("../templates/admin.html")),
];

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("count", &TEMPLATES.len())
            .finish()
    }
}

impl Templates {
    /// Parses every template; an error here is a bug in a template file.
    pub fn new() -> Result<Self, WebError> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        env.add_filter("fingerprint", fingerprint);
        env.add_filter("when", when);
        env.add_filter("bytes", bytes);
        env.add_filter("short", short);
        Ok(Templates { env })
    }

    /// Renders `name` with `context`.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<Html<String>, WebError> {
        let template = self.env.get_template(name)?;
        Ok(Html(template.render(Serde(context))?))
    }
}

/// `ed25519:<hex>` → the short fingerprint people compare.
fn fingerprint(key: &str) -> String {
    key.parse::<buildsrs_keys::PublicKey>()
        .map(|key| key.fingerprint().to_string())
        .unwrap_or_else(|_| key.to_owned())
}

/// An RFC 3339 time → `2026-11-28 11:00:05 UTC`.
fn when(time: &str) -> String {
    time.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| time.to_owned())
}

/// A byte count → `1.5 MiB`.
fn bytes(size: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if size < 1024 {
        return format!("{size} B");
    }
    let mut value = size as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A long hash → its first 12 characters (the full one stays in links and titles).
fn short(text: &str) -> String {
    text.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_filters_read_well() {
        assert!(Templates::new().is_ok());
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(when("2026-11-28T11:00:05Z"), "2026-11-28 11:00:05 UTC");
        assert_eq!(short(&"ab".repeat(32)), "abababababab");
    }
}
