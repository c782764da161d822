//! What a crate's index file says, and what changed since we last looked.
//!
//! An index file is one JSON object per line, one line per published version. We read it
//! line by line and keep only what building needs (name, version, checksum, yank state, the
//! manifest's `rust-version`), so one bad line costs one version, never the crate: it is
//! skipped with a warning naming the crate and the line. We deliberately do not parse
//! dependencies or features here; a line whose `deps` we could not read would still be a
//! version we can build. For the same reason a `rust_version` that is not one to three
//! dot-separated numbers is dropped with a warning, keeping the version.

use std::collections::HashMap;

use buildsrs_domain::{CrateName, CrateVersion, InvalidName, Sha256Digest};
use serde::Deserialize;

use crate::config::IndexConfig;

pub use buildsrs_domain::IndexVersion;

/// A crate whose index file changed since the last poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateUpdate {
    /// The crate name: as published when the file lists a version, else as watched.
    pub name: String,
    /// The crate's full current version list, in index order.
    pub versions: Vec<IndexVersion>,
    /// What changed against the list this follower saw before (everything is new the first
    /// time a follower sees a crate).
    pub changes: VersionChanges,
}

/// The difference between two version lists of one crate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionChanges {
    /// Versions that were not listed before.
    pub added: Vec<IndexVersion>,
    /// Versions listed before, now yanked.
    pub yanked: Vec<IndexVersion>,
    /// Versions yanked before, now not.
    pub unyanked: Vec<IndexVersion>,
    /// Versions listed before and gone now (registries delete very rarely).
    pub removed: Vec<IndexVersion>,
    /// Versions whose checksum changed: never legitimate on crates.io, worth an alarm.
    pub cksum_changed: Vec<IndexVersion>,
}

impl VersionChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.yanked.is_empty()
            && self.unyanked.is_empty()
            && self.removed.is_empty()
            && self.cksum_changed.is_empty()
    }

    /// A short human summary for logs, e.g. `+1.2.0 yanked:1.1.0`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut list = |label: &str, versions: &[IndexVersion]| {
            // A crate seen for the first time may list hundreds of versions: name a few.
            const SHOWN: usize = 8;
            if !versions.is_empty() {
                let names: Vec<&str> = versions
                    .iter()
                    .take(SHOWN)
                    .map(|v| v.version.as_str())
                    .collect();
                let more = match versions.len().saturating_sub(SHOWN) {
                    0 => String::new(),
                    n => format!(",... ({n} more)"),
                };
                parts.push(format!("{label}{}{more}", names.join(",")));
            }
        };
        list("+", &self.added);
        list("yanked:", &self.yanked);
        list("unyanked:", &self.unyanked);
        list("removed:", &self.removed);
        list("CKSUM CHANGED:", &self.cksum_changed);
        if parts.is_empty() {
            "no version changes".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// Compares two version lists of one crate (matched by version string). Results keep the
/// order of `current` (and of `previous` for removals).
pub fn diff_versions(previous: &[IndexVersion], current: &[IndexVersion]) -> VersionChanges {
    let before: HashMap<&str, &IndexVersion> =
        previous.iter().map(|v| (v.version.as_str(), v)).collect();
    let mut changes = VersionChanges::default();
    for now in current {
        match before.get(now.version.as_str()) {
            None => changes.added.push(now.clone()),
            Some(then) => {
                if then.cksum != now.cksum {
                    changes.cksum_changed.push(now.clone());
                }
                match (then.yanked, now.yanked) {
                    (false, true) => changes.yanked.push(now.clone()),
                    (true, false) => changes.unyanked.push(now.clone()),
                    _ => {}
                }
            }
        }
    }
    let after: HashMap<&str, ()> = current.iter().map(|v| (v.version.as_str(), ())).collect();
    changes.removed = previous
        .iter()
        .filter(|v| !after.contains_key(v.version.as_str()))
        .cloned()
        .collect();
    changes
}

/// The fields of an index line we use; serde ignores the others.
#[derive(Deserialize)]
struct IndexLine {
    name: String,
    vers: String,
    cksum: String,
    #[serde(default)]
    yanked: bool,
    /// Read loosely: a wrong type here must not cost the version.
    #[serde(default)]
    rust_version: Option<serde_json::Value>,
}

/// A line of an index file that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub reason: String,
}

/// Reads the index file of `crate_name`. Bad lines are skipped, logged with
/// `tracing::warn!` naming the crate and line, and returned so callers can report them.
pub fn parse_index_file(
    crate_name: &str,
    body: &[u8],
    config: &IndexConfig,
) -> (Vec<IndexVersion>, Vec<SkippedLine>) {
    let (versions, skipped) = parse_index_lines(crate_name, body, config);
    for SkippedLine { line, reason } in &skipped {
        tracing::warn!(
            krate = crate_name,
            line,
            "skipping malformed index line {line} of crate {crate_name}: {reason}"
        );
    }
    (versions, skipped)
}

/// [`parse_index_file`] without the logging, for reading a file we have already reported on.
pub(crate) fn parse_index_lines(
    crate_name: &str,
    body: &[u8],
    config: &IndexConfig,
) -> (Vec<IndexVersion>, Vec<SkippedLine>) {
    let mut versions: Vec<IndexVersion> = Vec::new();
    let mut skipped = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(crate_name, line, config, &versions) {
            Ok(version) => versions.push(version),
            Err(reason) => skipped.push(SkippedLine {
                line: index + 1,
                reason,
            }),
        }
    }
    (versions, skipped)
}

fn parse_line(
    crate_name: &str,
    line: &[u8],
    config: &IndexConfig,
    seen: &[IndexVersion],
) -> Result<IndexVersion, String> {
    let parsed: IndexLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if !parsed.name.eq_ignore_ascii_case(crate_name) {
        return Err(format!("names crate {:?}", parsed.name));
    }
    let name: CrateName = parsed
        .name
        .parse()
        .map_err(|e: InvalidName| e.to_string())?;
    let version: CrateVersion = parsed
        .vers
        .parse()
        .map_err(|e: InvalidName| e.to_string())?;
    // The index writes checksums in lowercase; anything else is not what the registry wrote.
    let lowercase = parsed
        .cksum
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let cksum: Sha256Digest = match parsed.cksum.parse() {
        Ok(cksum) if lowercase => cksum,
        _ => {
            return Err(format!(
                "cksum {:?} is not 64 lowercase hex digits",
                parsed.cksum
            ));
        }
    };
    if seen.iter().any(|v| v.version == version) {
        return Err(format!("version {} listed twice", parsed.vers));
    }
    let download_url = config
        .download_url(&parsed.name, &parsed.vers, &parsed.cksum)
        .ok_or_else(|| "the dl template gives no download URL".to_owned())?;
    let rust_version = match parsed.rust_version {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text))
            if buildsrs_keys::RustRelease::parse_rust_version(&text).is_some() =>
        {
            Some(text)
        }
        Some(other) => {
            tracing::warn!(
                krate = crate_name,
                "{crate_name} {}: ignoring rust_version {:.40}: not one to three \
                 dot-separated numbers",
                parsed.vers,
                other.to_string()
            );
            None
        }
    };
    Ok(IndexVersion {
        name,
        version,
        cksum,
        yanked: parsed.yanked,
        download_url,
        rust_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> IndexConfig {
        IndexConfig::from_json(br#"{"dl":"http://127.0.0.1:1/dl/{crate}/{version}/download"}"#)
            .unwrap()
    }

    fn version(vers: &str, yanked: bool, cksum: char) -> IndexVersion {
        IndexVersion {
            name: "x".parse().unwrap(),
            version: vers.parse().unwrap(),
            cksum: cksum.to_string().repeat(64).parse().unwrap(),
            yanked,
            download_url: String::new(),
            rust_version: None,
        }
    }

    #[test]
    fn diff_sees_new_yanked_unyanked_removed_and_cksum_changes() {
        let before = [
            version("1.0.0", false, 'a'),
            version("1.1.0", true, 'b'),
            version("1.2.0", false, 'c'),
            version("1.3.0", false, 'd'),
        ];
        let after = [
            version("1.0.0", true, 'a'),
            version("1.1.0", false, 'b'),
            version("1.2.0", false, 'e'),
            version("2.0.0", false, 'f'),
        ];
        let changes = diff_versions(&before, &after);
        let names = |v: &[IndexVersion]| v.iter().map(|v| v.version.clone()).collect::<Vec<_>>();
        assert_eq!(names(&changes.added), ["2.0.0"]);
        assert_eq!(names(&changes.yanked), ["1.0.0"]);
        assert_eq!(names(&changes.unyanked), ["1.1.0"]);
        assert_eq!(names(&changes.removed), ["1.3.0"]);
        assert_eq!(names(&changes.cksum_changed), ["1.2.0"]);
        assert_eq!(
            changes.summary(),
            "+2.0.0 yanked:1.0.0 unyanked:1.1.0 removed:1.3.0 CKSUM CHANGED:1.2.0"
        );
        assert!(diff_versions(&after, &after).is_empty());

        let many: Vec<IndexVersion> = (0..10)
            .map(|i| version(&format!("0.{i}.0"), false, 'a'))
            .collect();
        assert_eq!(
            diff_versions(&[], &many).summary(),
            "+0.0.0,0.1.0,0.2.0,0.3.0,0.4.0,0.5.0,0.6.0,0.7.0,... (2 more)"
        );
    }

    #[test]
    fn rust_version_is_kept_when_well_formed_and_dropped_otherwise() {
        let line = |vers: &str, rust_version: &str| {
            format!(
                r#"{{"name":"foo","vers":"{vers}","cksum":"{}","rust_version":{rust_version}}}"#,
                "a".repeat(64)
            )
        };
        let body = [
            line("1.0.0", r#""1.70""#),
            line("1.1.0", r#""1.80.1""#),
            line("1.2.0", "null"),
            line("1.3.0", r#""1.70-beta""#),
            line("1.4.0", "170"),
            line("1.5.0", r#""1.2.3.4""#),
            format!(
                r#"{{"name":"foo","vers":"1.6.0","cksum":"{}"}}"#,
                "a".repeat(64)
            ),
        ]
        .join("\n");
        let (versions, skipped) = parse_index_file("foo", body.as_bytes(), &config());
        assert!(skipped.is_empty(), "{skipped:?}");
        let read: Vec<(&str, Option<&str>)> = versions
            .iter()
            .map(|v| (v.version.as_str(), v.rust_version.as_deref()))
            .collect();
        assert_eq!(
            read,
            [
                ("1.0.0", Some("1.70")),
                ("1.1.0", Some("1.80.1")),
                ("1.2.0", None),
                ("1.3.0", None),
                ("1.4.0", None),
                ("1.5.0", None),
                ("1.6.0", None),
            ]
        );
    }

    #[test]
    fn bad_lines_are_skipped_and_named() {
        let good = |v: &str| {
            format!(
                r#"{{"name":"Foo","vers":"{v}","deps":[],"cksum":"{}","features":{{}},"yanked":false}}"#,
                "a".repeat(64)
            )
        };
        let body = [
            good("1.0.0"),
            "{not json".to_owned(),
            String::new(),
            r#"{"name":"bar","vers":"1.0.0","cksum":"x"}"#.to_owned(),
            good("not.semver"),
            format!(
                r#"{{"name":"foo","vers":"3.0.0","cksum":"{}"}}"#,
                "A".repeat(64)
            ),
            good("1.0.0"),
            good("2.0.0"),
        ]
        .join("\n");
        let (versions, skipped) = parse_index_file("foo", body.as_bytes(), &config());
        let listed: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(listed, ["1.0.0", "2.0.0"]);
        assert_eq!(versions[0].name, "Foo");
        assert_eq!(
            versions[1].download_url,
            "http://127.0.0.1:1/dl/Foo/2.0.0/download"
        );
        let lines: Vec<usize> = skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7]);
    }
}
