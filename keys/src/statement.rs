//! The attestation statement: what a builder claims it built, from which inputs.
//!
//! # Canonical encoding
//!
//! A statement is signed as *canonical JSON*: the JSON text with object keys sorted by their
//! bytes, no white space, and every field present (absent optional values are `null`). This is
//! the canonical form of RFC 8785 (JCS) for the values we allow: ASCII strings, arrays,
//! objects, `null` and integers below 2^53. We chose it over deterministic CBOR because a
//! bundle is a file people read: the statement a signature covers is right there, legible, and
//! any language with a JSON library can recompute the signed bytes.
//!
//! Decoding is strict: unknown fields are refused, every string is checked against its
//! syntax (crate names, semver versions, target triples, lowercase hex digests), features
//! must be sorted and unique. A verifier re-encodes what it decoded and checks the signature
//! over those bytes, so what is verified is exactly what is then believed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::{ArtifactId, Blake3Hash, Sha256Digest};
use crate::identity::PublicKey;
use crate::names::{CrateName, CrateVersion, RegistryUrl, TargetTriple, ToolchainRelease};

/// The statement schema this code writes and reads. Version 2 added `registry`: a source
/// checksum means nothing without the index that lists it.
pub const SCHEMA_VERSION: u32 = 2;

/// Integers in canonical JSON must be exact in every JSON implementation (IEEE doubles).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The JSON did not decode into a statement.
    #[error("malformed statement: {0}")]
    Decode(String),
    /// A field decoded but its value is not allowed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> StatementError {
    StatementError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The compiler that built an artifact, as `rustc -vV` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toolchain {
    /// `release:`, e.g. `1.95.0`.
    pub release: ToolchainRelease,
    /// `commit-hash:`, the full hash of the rustc commit.
    pub commit_hash: String,
    /// `host:`, the triple rustc runs on.
    pub host: TargetTriple,
}

impl Toolchain {
    /// Reads the output of `rustc -vV`.
    pub fn from_rustc_verbose_version(output: &str) -> Result<Self, StatementError> {
        let field = |name: &str| {
            output
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|value| value.trim().to_owned())
                .ok_or_else(|| invalid("toolchain", format!("`rustc -vV` output lacks `{name}:`")))
        };
        Self::from_parts(&field("release")?, &field("commit-hash")?, &field("host")?)
    }

    /// A toolchain from its three parts, each checked by its rule.
    pub fn from_parts(
        release: &str,
        commit_hash: &str,
        host: &str,
    ) -> Result<Self, StatementError> {
        let toolchain = Self {
            release: release
                .parse()
                .map_err(|e| invalid("toolchain", format!("release {e}")))?,
            commit_hash: commit_hash.to_owned(),
            host: host
                .parse()
                .map_err(|e| invalid("toolchain", format!("host: {e}")))?,
        };
        toolchain.validate()?;
        Ok(toolchain)
    }

    /// What the types of the release and host leave to check: the commit hash.
    fn validate(&self) -> Result<(), StatementError> {
        validate_word(&self.commit_hash)
            .map_err(|e| invalid("toolchain", format!("commit hash {e}")))
    }
}

/// Text form `RELEASE/COMMIT_HASH/HOST`, as the `--toolchain` flags take it.
impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.release, self.commit_hash, self.host)
    }
}

impl FromStr for Toolchain {
    type Err = StatementError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split('/');
        let (Some(release), Some(commit_hash), Some(host), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                "toolchain",
                format!("expected RELEASE/COMMIT_HASH/HOST, got {:?}", shown(text)),
            ));
        };
        Self::from_parts(release, commit_hash, host)
    }
}

/// Everything a builder claims about one build. Field order here is irrelevant: the canonical
/// encoding sorts keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The crate's name on its registry.
    #[serde(rename = "crate")]
    pub crate_name: CrateName,
    /// The crate version (semver).
    pub version: CrateVersion,
    /// The registry whose index lists the source: its sparse index URL. Named exactly when
    /// `source_sha256` is, so the checksum can be checked against that index.
    pub registry: Option<RegistryUrl>,
    /// SHA-256 of the `.crate` file, as the registry index lists it (`cksum`).
    pub source_sha256: Option<Sha256Digest>,
    /// SHA-256 of the `Cargo.lock` the build used, when there was one.
    pub cargo_lock_sha256: Option<Sha256Digest>,
    /// The target triple the artifact is for.
    pub target: TargetTriple,
    /// The compiler.
    pub toolchain: Toolchain,
    /// Enabled cargo features, sorted and without duplicates.
    pub features: Vec<String>,
    /// BLAKE3 of every build setting that can change the output (flags, environment,
    /// canonical paths, sandbox). Builders with equal settings must produce equal bytes.
    pub settings_digest: Option<Blake3Hash>,
    /// The artifact built.
    pub artifact: ArtifactId,
    /// The key that signs this statement.
    pub builder: PublicKey,
    /// When the build started, in seconds since the Unix epoch (UTC).
    pub build_started: u64,
    /// When the build finished, in seconds since the Unix epoch (UTC).
    pub build_finished: u64,
}

impl Statement {
    /// Checks every field's syntax. Decoding calls this; builders call it before signing.
    pub fn validate(&self) -> Result<(), StatementError> {
        if self.schema != SCHEMA_VERSION {
            return Err(invalid(
                "schema",
                format!(
                    "version {} is not supported (this is {SCHEMA_VERSION})",
                    self.schema
                ),
            ));
        }
        // Name, version, target, registry and toolchain release are checked by their types.
        self.toolchain.validate()?;
        if self.registry.is_some() != self.source_sha256.is_some() {
            return Err(invalid(
                "registry",
                "must be named exactly when source_sha256 is (a checksum is a registry's word)",
            ));
        }
        for feature in &self.features {
            validate_feature(feature).map_err(|e| invalid("features", e))?;
        }
        if !self.features.windows(2).all(|w| w[0] < w[1]) {
            return Err(invalid("features", "must be sorted and without duplicates"));
        }
        for (field, value) in [
            ("artifact.size", self.artifact.size),
            ("build_started", self.build_started),
            ("build_finished", self.build_finished),
        ] {
            if value > MAX_SAFE_INTEGER {
                return Err(invalid(field, format!("{value} exceeds 2^53 - 1")));
            }
        }
        if self.build_finished < self.build_started {
            return Err(invalid("build_finished", "is before build_started"));
        }
        Ok(())
    }

    /// The canonical bytes that get signed (see the module docs).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical_json(self)
    }

    /// Decodes a statement from JSON and validates it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatementError> {
        let statement: Self =
            serde_json::from_slice(bytes).map_err(|e| StatementError::Decode(e.to_string()))?;
        statement.validate()?;
        Ok(statement)
    }
}

/// Sorts and deduplicates features into their canonical order.
pub fn canonical_features(features: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut features: Vec<String> = features.into_iter().collect();
    features.sort();
    features.dedup();
    features
}

/// Serializes any value as canonical JSON: keys sorted bytewise, no white space.
///
/// `serde_json::Value`'s map is ordered by key (we do not enable `preserve_order`), so going
/// through it sorts every object at every depth.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    let tree = serde_json::to_value(value).expect("our types always serialize to JSON");
    serde_json::to_vec(&tree).expect("a JSON value always serializes")
}

/// At most the first 80 characters of refused input, so an error message (which may end up
/// in an HTTP answer or a log) is short whatever was sent.
fn shown(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Crate names as crates.io allows them: ASCII letters, digits, `-` and `_`, starting with a
/// letter, at most 64 characters.
pub fn validate_crate_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a crate name (ASCII letters, digits, `-`, `_`; starts with a letter; at most 64)",
            shown(name)
        ))
    }
}

/// A toolchain's release: 1 to 128 of ASCII letters, digits, `.`, `_`, `+` and `-`.
pub fn validate_toolchain_release(release: &str) -> Result<(), String> {
    validate_word(release)
}

fn validate_word(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} must be 1-128 of [A-Za-z0-9._+-]",
            shown(value)
        ))
    }
}

/// A registry's sparse index URL in canonical form (see [`crate::names::RegistryUrl`]).
pub fn validate_registry_url(url: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{:?} is not a sparse index URL: {why}", shown(url)));
    let Some(rest) = url
        .strip_prefix("sparse+https://")
        .or_else(|| url.strip_prefix("sparse+http://"))
    else {
        return fail("expected sparse+https://… or sparse+http://…");
    };
    if url.len() > 256 {
        return fail("longer than 256 characters");
    }
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-:[]".contains(&b));
    if !host_ok {
        return fail("the host must be lowercase ASCII letters, digits, `.`, `-`, a port");
    }
    // What a path may hold unescaped, minus the query and fragment.
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/%+@!$&'()*,;=:".contains(&b));
    if !path_ok {
        return fail("the path holds a character that is not allowed");
    }
    let odd_segment = path.contains("//")
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if odd_segment {
        return fail("the path holds an empty segment, `.` or `..`");
    }
    if !path.ends_with('/') {
        return fail("it must end with `/`");
    }
    Ok(())
}

/// Versions must be semver, in the exact form the registry writes them.
pub fn validate_version(version: &str) -> Result<(), String> {
    match semver::Version::parse(version) {
        Ok(parsed) if parsed.to_string() == version && version.len() <= 128 => Ok(()),
        Ok(_) => Err(format!(
            "{:?} is not in canonical semver form",
            shown(version)
        )),
        Err(e) => Err(format!("{:?} is not a semver version: {e}", shown(version))),
    }
}

/// Target triples: lowercase ASCII letters, digits, `_`, `-` and `.`, not starting with `-` or
/// `.`, no `..`, at most 80 characters (so a triple is never a path component like `..` nor
/// an option like `-x`).
pub fn validate_target(target: &str) -> Result<(), String> {
    let ok = (1..=80).contains(&target.len())
        && !target.starts_with(['-', '.'])
        && !target.contains("..")
        && target
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a target triple (lowercase ASCII letters, digits, `_`, `-`, `.`; \
             not starting with `-` or `.`)",
            shown(target)
        ))
    }
}

/// Feature names as cargo allows them (plus the `dep:` and `/` forms).
fn validate_feature(feature: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&feature.len())
        && feature
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+./:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{:?} is not a feature name", shown(feature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    pub(crate) fn sample() -> Statement {
        Statement {
            schema: SCHEMA_VERSION,
            crate_name: "ripgrep".parse().unwrap(),
            version: "14.1.1".parse().unwrap(),
            registry: Some(RegistryUrl::crates_io()),
            source_sha256: Some(Sha256Digest::from_bytes([1; 32])),
            cargo_lock_sha256: None,
            target: "x86_64-unknown-linux-gnu".parse().unwrap(),
            toolchain: "1.95.0/59807616e/x86_64-unknown-linux-gnu".parse().unwrap(),
            features: vec!["default".into(), "pcre2".into()],
            settings_digest: None,
            artifact: ArtifactId::of_bytes(b"binary"),
            builder: Identity::from_seed([1; 32]).public_key(),
            build_started: 1_700_000_000,
            build_finished: 1_700_000_100,
        }
    }

    #[test]
    fn canonical_bytes_sort_keys_and_keep_nulls() {
        let text = String::from_utf8(sample().canonical_bytes()).unwrap();
        assert!(text.starts_with(r#"{"artifact":{"blake3":""#), "{text}");
        assert!(text.contains(r#""cargo_lock_sha256":null,"crate":"ripgrep""#));
        assert!(!text.contains(' '));
        let keys: Vec<&str> = [
            "artifact",
            "build_finished",
            "build_started",
            "builder",
            "cargo_lock_sha256",
            "crate",
            "features",
            "registry",
            "schema",
            "settings_digest",
            "source_sha256",
            "target",
            "toolchain",
            "version",
        ]
        .to_vec();
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn decoding_refuses_unknown_fields_and_bad_values() {
        let good = sample().canonical_bytes();
        assert_eq!(Statement::from_json(&good).unwrap(), sample());

        let mut value: serde_json::Value = serde_json::from_slice(&good).unwrap();
        value["extra"] = 1.into();
        assert!(matches!(
            Statement::from_json(value.to_string().as_bytes()),
            Err(StatementError::Decode(_))
        ));

        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("schema", 1.into()),
            ("schema", 3.into()),
            ("crate", "1abc".into()),
            ("crate", "a b".into()),
            ("version", "1.0".into()),
            ("version", "01.0.0".into()),
            ("target", "X86_64".into()),
            ("features", serde_json::json!(["b", "a"])),
            ("features", serde_json::json!(["a", "a"])),
            ("build_started", (1u64 << 54).into()),
            ("build_finished", 5.into()),
            ("registry", "https://index.crates.io/".into()),
            ("registry", "sparse+https://index.crates.io".into()),
            ("registry", serde_json::Value::Null),
        ];
        for (field, bad) in cases {
            let mut value: serde_json::Value = serde_json::from_slice(&good).unwrap();
            value[field] = bad.clone();
            let result = Statement::from_json(value.to_string().as_bytes());
            assert!(result.is_err(), "{field} = {bad} was accepted");
        }
    }

    #[test]
    fn refusals_echo_at_most_80_characters_of_the_input() {
        let huge = "9".repeat(65_536);
        for error in [
            validate_version(&huge).unwrap_err(),
            validate_crate_name(&huge).unwrap_err(),
            validate_target(&huge).unwrap_err(),
            validate_registry_url(&huge).unwrap_err(),
            validate_toolchain_release(&huge).unwrap_err(),
        ] {
            assert!(
                error.len() < 300,
                "{} bytes: {}",
                error.len(),
                &error[..100]
            );
        }
        assert_eq!(shown("short"), "short");
    }

    #[test]
    fn toolchain_parses_rustc_verbose_version_and_text_form() {
        let output = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\n\
                      commit-hash: 59807616e1a7b2c3d4e5f60718293a4b5c6d7e8f\n\
                      commit-date: 2026-04-14\nhost: x86_64-unknown-linux-gnu\n\
                      release: 1.95.0\nLLVM version: 20.1.0\n";
        let toolchain = Toolchain::from_rustc_verbose_version(output).unwrap();
        assert_eq!(toolchain.release, "1.95.0");
        assert_eq!(
            toolchain.commit_hash,
            "59807616e1a7b2c3d4e5f60718293a4b5c6d7e8f"
        );
        assert_eq!(toolchain.host, "x86_64-unknown-linux-gnu");
        assert_eq!(
            toolchain.to_string().parse::<Toolchain>().unwrap(),
            toolchain
        );
        assert!("1.95.0/abc".parse::<Toolchain>().is_err());
        assert!("1.95.0/a b/x86_64".parse::<Toolchain>().is_err());
        assert!(Toolchain::from_rustc_verbose_version("rustc 1.0").is_err());
    }

    #[test]
    fn canonical_features_sorts_and_dedups() {
        let features = canonical_features(["z".into(), "a".into(), "z".into()]);
        assert_eq!(features, ["a", "z"]);
    }
}
