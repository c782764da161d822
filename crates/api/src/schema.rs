//! The schemas of the `buildsrs-keys` types the API carries, with the rules their parsers
//! enforce (pattern, length), so a request the document allows is a request the server
//! takes, and an answer always matches its document.
//!
//! `buildsrs-keys` stays free of any schema library: each type here is a marker that only
//! stands in for a keys type in `#[schema(value_type = ..)]` (it is never built). The string
//! types are written out by hand; the objects (an artifact id, a signed attestation) are
//! schema-only structs with the fields of the keys type, held to its serde form by the tests
//! below.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A crate name: `buildsrs_keys::statement::validate_crate_name`.
pub const CRATE_NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_-]{0,63}$";

/// One number of a version: no leading zero, and at most 19 digits so that it always fits
/// the `u64` the semver parser reads it into.
macro_rules! number {
    () => {
        "(0|[1-9][0-9]{0,18})"
    };
}
/// One pre-release identifier: a number without leading zero, or anything with a letter or
/// `-`.
macro_rules! pre {
    () => {
        "(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
    };
}
/// The canonical semver form, unanchored.
macro_rules! semver {
    () => {
        concat!(
            number!(),
            "\\.",
            number!(),
            "\\.",
            number!(),
            "(-",
            pre!(),
            "(\\.",
            pre!(),
            ")*)?",
            "(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?"
        )
    };
}

/// A version: `buildsrs_keys::statement::validate_version` (semver, in the form the semver
/// crate writes it back, at most [`VERSION_MAX_LEN`] characters).
pub const VERSION_PATTERN: &str = concat!("^", semver!(), "$");

/// A version in a URL: a version or `latest`.
pub const VERSION_REF_PATTERN: &str = concat!("^(latest|", semver!(), ")$");

/// The longest version.
pub const VERSION_MAX_LEN: usize = 128;

/// A target triple: `buildsrs_keys::statement::validate_target` (lowercase letters, digits,
/// `_`, `-`, `.`; not starting with `-` or `.`; no `..`).
pub const TARGET_PATTERN: &str = "^[a-z0-9_][a-z0-9_-]*(\\.[a-z0-9_-]+)*\\.?$";

/// A toolchain release: `buildsrs_keys::statement::validate_toolchain_release`.
pub const TOOLCHAIN_RELEASE_PATTERN: &str = "^[A-Za-z0-9._+-]+$";

/// A registry's sparse index URL: `buildsrs_keys::statement::validate_registry_url`. A path
/// segment is spelled so that it cannot be `.` or `..` without look-ahead, which not every
/// pattern engine has.
pub const REGISTRY_URL_PATTERN: &str = "^sparse\\+https?://[a-z0-9.:\\[\\]-]+/(([A-Za-z0-9_~%+@!$&'()*,;=:-][A-Za-z0-9._~%+@!$&'()*,;=:-]*|\\.[A-Za-z0-9_~%+@!$&'()*,;=:-][A-Za-z0-9._~%+@!$&'()*,;=:-]*|\\.\\.[A-Za-z0-9._~%+@!$&'()*,;=:-]+)/)*$";

/// A BLAKE3 hash or SHA-256 digest: 64 lowercase hex digits.
pub const DIGEST_PATTERN: &str = "^[0-9a-f]{64}$";

/// A public key as the API writes it.
pub const PUBLIC_KEY_PATTERN: &str = "^ed25519:[0-9a-f]{64}$";

/// A builder key in a URL: with or without its `ed25519:` prefix.
pub const BUILDER_KEY_PATTERN: &str = "^(ed25519:)?[0-9a-f]{64}$";

/// A signature: 128 lowercase hex digits.
pub const SIGNATURE_PATTERN: &str = "^[0-9a-f]{128}$";

/// A string schema with a pattern and length bounds.
pub(crate) fn string(
    description: &str,
    pattern: &str,
    min_length: usize,
    max_length: usize,
    example: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(min_length))
        .max_length(Some(max_length))
        .examples([example])
        .into()
}

macro_rules! string_schema {
    ($name:ident, $description:literal, $pattern:expr, $min:expr, $max:expr, $example:expr) => {
        #[doc = $description]
        #[derive(Debug)]
        pub enum $name {}

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($description, $pattern, $min, $max, $example)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_schema!(
    CrateName,
    "A crate name (ASCII letters, digits, `-`, `_`; starts with a letter; at most 64).",
    CRATE_NAME_PATTERN,
    1,
    64,
    "ripgrep"
);
string_schema!(
    CrateVersion,
    "A crate version: semver in canonical form, at most 128 characters.",
    VERSION_PATTERN,
    5,
    VERSION_MAX_LEN,
    "14.1.1"
);
string_schema!(
    TargetTriple,
    "A target triple (lowercase ASCII letters, digits, `_`, `-`, `.`; not starting with `-` or `.`; no `..`).",
    TARGET_PATTERN,
    1,
    80,
    "x86_64-unknown-linux-gnu"
);
string_schema!(
    ToolchainRelease,
    "A toolchain's release as `rustc -vV` reports it (ASCII letters, digits, `.`, `_`, `+`, `-`; at most 128).",
    TOOLCHAIN_RELEASE_PATTERN,
    1,
    128,
    "1.95.0"
);
string_schema!(
    RegistryUrl,
    "A registry, by its sparse index URL in canonical form (`sparse+http(s)://`, lowercase host, a path of non-empty segments ending in `/`, no query or fragment; at most 256).",
    REGISTRY_URL_PATTERN,
    16,
    256,
    "sparse+https://index.crates.io/"
);
string_schema!(
    Blake3Hash,
    "A BLAKE3 hash: 64 lowercase hex digits.",
    DIGEST_PATTERN,
    64,
    64,
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
);
string_schema!(
    Sha256Digest,
    "A SHA-256 digest: 64 lowercase hex digits.",
    DIGEST_PATTERN,
    64,
    64,
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
);
string_schema!(
    PublicKey,
    "An ed25519 public key: a builder's identity.",
    PUBLIC_KEY_PATTERN,
    72,
    72,
    "ed25519:8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
);
string_schema!(
    Signature,
    "An ed25519 signature: 128 lowercase hex digits.",
    SIGNATURE_PATTERN,
    128,
    128,
    "0e4bd4b7c6a2a06a0b0e3dcb9e0a6a4d3d9f1c1f6a8fb2a9d8c5b7a3e1d0c9b80e4bd4b7c6a2a06a0b0e3dcb9e0a6a4d3d9f1c1f6a8fb2a9d8c5b7a3e1d0c9b8"
);

string_schema!(
    BuilderName,
    "A builder's name, its own choice: 1 to 64 of ASCII letters, digits, `.`, `_`, `-` (`buildsrs_domain::BuilderName`).",
    buildsrs_domain::LABEL_PATTERN,
    1,
    buildsrs_domain::LABEL_MAX_LEN,
    "build-01.example.org"
);
string_schema!(
    Operator,
    "Who runs a builder key, as the coordinator's admin named it at approval; keys of one operator count once toward a quorum. 1 to 64 of ASCII letters, digits, `.`, `_`, `-` (`buildsrs_domain::Operator`).",
    buildsrs_domain::LABEL_PATTERN,
    1,
    buildsrs_domain::LABEL_MAX_LEN,
    "example-org"
);

/// An artifact: `buildsrs_keys::ArtifactId`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct ArtifactId {
    /// BLAKE3 of the artifact's bytes.
    blake3: Blake3Hash,
    /// Length of the artifact in bytes.
    size: u64,
}

/// The compiler of a build: `buildsrs_keys::Toolchain`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct Toolchain {
    /// The Rust release, e.g. `1.95.0`.
    release: String,
    /// The compiler's commit hash.
    commit_hash: String,
    /// The compiler's host triple.
    host: TargetTriple,
}

/// What a builder attests: `buildsrs_keys::Statement`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct Statement {
    /// The statement format's version.
    schema: u32,
    /// The crate.
    #[schema(rename = "crate")]
    crate_name: CrateName,
    /// The version.
    version: CrateVersion,
    /// The registry whose index lists the source (named exactly when `source_sha256` is).
    registry: Option<RegistryUrl>,
    /// SHA-256 of the `.crate` file, as the registry index lists it.
    source_sha256: Option<Sha256Digest>,
    /// SHA-256 of the `Cargo.lock` the build used, when there was one.
    cargo_lock_sha256: Option<Sha256Digest>,
    /// The target the artifact is for.
    target: TargetTriple,
    /// The compiler.
    toolchain: Toolchain,
    /// Enabled cargo features, sorted.
    features: Vec<String>,
    /// BLAKE3 of every build setting that can change the output.
    settings_digest: Option<Blake3Hash>,
    /// The artifact built.
    artifact: ArtifactId,
    /// The key that signed this statement.
    builder: PublicKey,
    /// When the build started, in seconds since the Unix epoch.
    build_started: u64,
    /// When the build finished, in seconds since the Unix epoch.
    build_finished: u64,
}

/// A statement and its builder's signature: `buildsrs_keys::SignedAttestation`, exactly as
/// bundles hold it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct SignedAttestation {
    /// The builder's signature over the statement's canonical JSON.
    signature: Signature,
    /// What is attested.
    statement: Statement,
}

/// The OpenAPI document of this API (its first fields; the rest is the OpenAPI 3.1 format).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub struct OpenApiDocument {
    /// The OpenAPI version.
    #[schema(pattern = "^3\\.1\\.[0-9]+$")]
    openapi: String,
    /// Title, version and description of the API.
    #[schema(value_type = Object)]
    info: (),
    /// The API's operations, by path.
    #[schema(value_type = Object)]
    paths: (),
    /// The schemas the operations refer to.
    #[schema(value_type = Object)]
    components: (),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use buildsrs_keys::{ArtifactId, Identity, Toolchain};
    use serde_json::Value;

    /// The JSON schema of `T`, with its references resolved from `T::schemas`.
    fn schema_json<T: ToSchema>() -> (Value, Vec<(String, Value)>) {
        let mut refs = Vec::new();
        T::schemas(&mut refs);
        let refs = refs
            .into_iter()
            .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap()))
            .collect();
        (serde_json::to_value(T::schema()).unwrap(), refs)
    }

    /// Checks that `value` has exactly the properties `schema` lists, recursively; returns
    /// the paths that differ.
    fn differences(
        schema: &Value,
        refs: &[(String, Value)],
        value: &Value,
        at: &str,
    ) -> Vec<String> {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &refs.iter().find(|(n, _)| n == name).unwrap().1
            }
            None => schema,
        };
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        let object = value.as_object().unwrap();
        let mut out = Vec::new();
        for key in object.keys() {
            if !properties.contains_key(key) {
                out.push(format!("{at}/{key}: not in the schema"));
            }
        }
        for (key, property) in properties {
            match object.get(key) {
                None => out.push(format!("{at}/{key}: not in the value")),
                Some(inner) if inner.is_object() => {
                    // An `Option<Ref>` is `oneOf [null, ref]`.
                    let property = property
                        .get("oneOf")
                        .and_then(Value::as_array)
                        .and_then(|all| all.iter().find(|s| s.get("$ref").is_some()))
                        .unwrap_or(property);
                    out.extend(differences(property, refs, inner, &format!("{at}/{key}")));
                }
                Some(_) => {}
            }
        }
        out
    }

    /// Whether the schema of `T` (pattern and length) allows a text.
    fn allows<T: PartialSchema>() -> impl Fn(&str) -> bool {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        let max = schema["maxLength"].as_u64();
        let min = schema["minLength"].as_u64();
        move |text| {
            let chars = text.chars().count() as u64;
            pattern.is_match(text)
                && max.is_none_or(|max| chars <= max)
                && min.is_none_or(|min| chars >= min)
        }
    }

    /// Versions from pieces that parsers and patterns get wrong: leading zeros, numbers
    /// that overflow, empty and numeric identifiers.
    fn tricky_versions() -> Vec<String> {
        let numbers = [
            "0",
            "1",
            "01",
            "00",
            "10",
            "1234567890123456789",
            "99999999999999999999",
        ];
        let pre = [
            "", "-alpha", "-0", "-00", "-01", "-0a", "--", "-a.1", "-a..1", "-", "-a.", "-x.01",
        ];
        let build = ["", "+build", "+001", "+", "+a..b", "+a.b-c", "+b.", "+é"];
        let mut out = vec![
            String::new(),
            "1".into(),
            "1.0".into(),
            "v1.0.0".into(),
            "1.0.0 ".into(),
        ];
        for major in numbers {
            for minor in ["0", "01", "99999999999999999999"] {
                for pre in pre {
                    for build in build {
                        out.push(format!("{major}.{minor}.0{pre}{build}"));
                    }
                }
            }
        }
        out.push(format!("1.0.0-{}", "a".repeat(122)));
        out.push(format!("1.0.0-{}", "a".repeat(123)));
        out
    }

    #[test]
    fn patterns_allow_exactly_what_the_parsers_take() {
        use buildsrs_keys::statement::{
            validate_crate_name, validate_target, validate_toolchain_release, validate_version,
        };
        let version_ok = allows::<CrateVersion>();
        let version_ref_ok = allows::<crate::params::VersionRef>();
        let name_ok = allows::<CrateName>();
        let target_ok = allows::<TargetTriple>();
        let release_ok = allows::<ToolchainRelease>();
        let key_ok = allows::<crate::params::BuilderKey>();
        let hash_ok = allows::<Blake3Hash>();
        let search_ok = allows::<crate::params::SearchText>();
        for version in tricky_versions() {
            assert_eq!(
                version_ok(&version),
                validate_version(&version).is_ok(),
                "{version:?}"
            );
            assert_eq!(
                version_ref_ok(&version),
                version.parse::<crate::params::VersionRef>().is_ok(),
                "{version:?}"
            );
        }
        assert!(version_ref_ok("latest"));
        let names = [
            "a",
            "A-b_c9",
            "9a",
            "-a",
            "_a",
            "a.b",
            "a b",
            "é",
            "",
            &"a".repeat(64),
            &"a".repeat(65),
        ];
        for name in names {
            assert_eq!(name_ok(name), validate_crate_name(name).is_ok(), "{name:?}");
        }
        let targets = [
            "x86_64-unknown-linux-gnu",
            "a",
            "_",
            "a.",
            "a.b",
            "a..b",
            ".a",
            "-a",
            "a.-b",
            "A",
            "a/b",
            "",
            "wasm32-wasip1",
            &"a".repeat(80),
            &"a".repeat(81),
        ];
        for target in targets {
            assert_eq!(
                target_ok(target),
                validate_target(target).is_ok(),
                "{target:?}"
            );
        }
        for release in [
            "1.95.0",
            "1.97.0-nightly",
            "1.96.0-beta.3",
            "1.0+x_y",
            "",
            "1.95.0 ",
            "1/2",
            "é",
            &"1".repeat(128),
            &"1".repeat(129),
        ] {
            assert_eq!(
                release_ok(release),
                validate_toolchain_release(release).is_ok(),
                "{release:?}"
            );
        }
        let hex = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
        for key in [
            hex.to_owned(),
            format!("ed25519:{hex}"),
            hex.to_uppercase(),
            format!("{hex}0"),
            format!("ed25519:{}", &hex[1..]),
            "ed25519:".into(),
        ] {
            assert_eq!(
                key_ok(&key),
                key.parse::<crate::params::BuilderKey>().is_ok(),
                "{key:?}"
            );
            assert_eq!(
                hash_ok(&key),
                key.parse::<buildsrs_keys::Blake3Hash>().is_ok(),
                "{key:?}"
            );
        }
        let registry_ok = allows::<RegistryUrl>();
        for url in [
            "sparse+https://index.crates.io/",
            "sparse+http://127.0.0.1:7780/index/",
            "sparse+http://[::1]:80/a/.b/..c/",
            "sparse+http://a/",
            "sparse+http://a/./",
            "sparse+http://a/../",
            "sparse+http://a//",
            "sparse+http://a/b",
            "sparse+http://A/",
            "sparse+ftp://a/",
            "sparse+http:///",
            "sparse+http://a/b c/",
            "sparse+http://a/?q/",
            "https://index.crates.io/",
            &format!("sparse+http://a/{}/", "b".repeat(240)),
            &format!("sparse+http://a/{}/", "b".repeat(239)),
        ] {
            assert_eq!(
                registry_ok(url),
                buildsrs_keys::statement::validate_registry_url(url).is_ok(),
                "{url:?}"
            );
        }
        let builder_name_ok = allows::<BuilderName>();
        let operator_ok = allows::<Operator>();
        for label in [
            "alice",
            "build-01.example.org",
            "x revoked",
            "x\nrevoked",
            "a+b",
            "é",
            "",
            &"a".repeat(64),
            &"a".repeat(65),
        ] {
            let parsed = label.parse::<buildsrs_domain::BuilderName>().is_ok();
            assert_eq!(builder_name_ok(label), parsed, "{label:?}");
            let parsed = label.parse::<buildsrs_domain::Operator>().is_ok();
            assert_eq!(operator_ok(label), parsed, "{label:?}");
        }
        let searches = [
            "",
            "grep",
            " a ",
            "a\u{0}b",
            "a\tb",
            "a\u{85}b",
            "é",
            &"é".repeat(64),
            &"a".repeat(65),
        ];
        for search in searches {
            assert_eq!(
                search_ok(search),
                search.parse::<crate::params::SearchText>().is_ok(),
                "{search:?}"
            );
        }
    }

    #[test]
    fn the_attestation_schema_has_the_fields_keys_writes() {
        let identity = Identity::from_seed([7; 32]);
        let statement = buildsrs_keys::Statement {
            schema: buildsrs_keys::SCHEMA_VERSION,
            crate_name: "demo".parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            registry: Some(buildsrs_keys::RegistryUrl::crates_io()),
            source_sha256: Some("0".repeat(64).parse().unwrap()),
            cargo_lock_sha256: None,
            target: "x86_64-unknown-linux-gnu".parse().unwrap(),
            toolchain: Toolchain::from_parts("1.95.0", "abc", "x86_64-unknown-linux-gnu").unwrap(),
            features: vec![],
            settings_digest: None,
            artifact: ArtifactId::of_bytes(b"x"),
            builder: identity.public_key(),
            build_started: 1,
            build_finished: 2,
        };
        let signed = buildsrs_keys::SignedAttestation::sign(statement, &identity).unwrap();
        let value = serde_json::to_value(&signed).unwrap();
        let (schema, refs) = schema_json::<SignedAttestation>();
        assert_eq!(
            differences(&schema, &refs, &value, ""),
            Vec::<String>::new()
        );
        let (schema, refs) = schema_json::<super::ArtifactId>();
        let value = serde_json::to_value(ArtifactId::of_bytes(b"x")).unwrap();
        assert_eq!(
            differences(&schema, &refs, &value, ""),
            Vec::<String>::new()
        );
    }
}
