//! The path and query parameters of `/api/v1`, each a type parsed once, by the same rules the
//! document states (its schema says exactly what parses). A value that does not parse fails
//! deserialization with a message that says what a good one looks like; the server answers
//! that message as a 400.
//!
//! Crate names, versions and hashes are the `buildsrs-keys` types; the rest (a version or
//! `latest`, a builder key in a URL, ids, paging, the feed cursor, search text) are here.

use std::fmt;
use std::str::FromStr;

use buildsrs_keys::{Blake3Hash, CrateName, CrateVersion, PublicKey};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::schema;

/// Why a parameter was refused: says what a good one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(String);

/// Cuts echoed input so a message stays short.
fn echo(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A version in a URL: an exact version, or `latest` (the newest one not yanked, a release
/// before a pre-release).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VersionRef {
    /// The newest version that is not yanked.
    Latest,
    /// This version.
    Exact(CrateVersion),
}

impl FromStr for VersionRef {
    type Err = ParamError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "latest" {
            return Ok(VersionRef::Latest);
        }
        text.parse()
            .map(VersionRef::Exact)
            .map_err(|e| ParamError(format!("{e} (or `latest`)")))
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRef::Latest => f.write_str("latest"),
            VersionRef::Exact(version) => f.write_str(version),
        }
    }
}

impl Serialize for VersionRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(deserializer)
    }
}

impl PartialSchema for VersionRef {
    fn schema() -> RefOr<Schema> {
        schema::string(
            "A version (semver in canonical form) or `latest`: the newest version not yanked, \
             a release before a pre-release.",
            schema::VERSION_REF_PATTERN,
            5,
            schema::VERSION_MAX_LEN,
            "latest",
        )
    }
}

impl ToSchema for VersionRef {}

/// A builder's key in a URL: `ed25519:<64 hex>`, or the 64 hex digits alone.
///
/// Any 32 bytes are a key here; [`BuilderKey::public_key`] says whether they are a point of
/// the curve. Bytes that are not cannot belong to any builder, so the server answers "not
/// found" for them rather than "bad request": the document's pattern cannot tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BuilderKey([u8; 32]);

impl BuilderKey {
    /// The public key, if the bytes are one.
    pub fn public_key(&self) -> Option<PublicKey> {
        PublicKey::from_bytes(&self.0).ok()
    }
}

impl From<PublicKey> for BuilderKey {
    fn from(key: PublicKey) -> Self {
        BuilderKey(*key.as_bytes())
    }
}

impl FromStr for BuilderKey {
    type Err = ParamError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix("ed25519:").unwrap_or(text);
        // `Blake3Hash` parses exactly 64 lowercase hex digits into 32 bytes.
        hex.parse::<Blake3Hash>()
            .map(|bytes| BuilderKey(*bytes.as_bytes()))
            .map_err(|_| {
                ParamError(format!(
                    "{:?} is not a builder key (ed25519:<64 lowercase hex digits>)",
                    echo(text)
                ))
            })
    }
}

impl fmt::Display for BuilderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", Blake3Hash::from_bytes(self.0))
    }
}

impl Serialize for BuilderKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BuilderKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(deserializer)
    }
}

impl PartialSchema for BuilderKey {
    fn schema() -> RefOr<Schema> {
        schema::string(
            "A builder's ed25519 public key, with or without its `ed25519:` prefix.",
            schema::BUILDER_KEY_PATTERN,
            64,
            72,
            "ed25519:8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
        )
    }
}

impl ToSchema for BuilderKey {}

/// Search text: at most [`SearchText::MAX_CHARS`] characters, none of them a control
/// character. It is matched trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SearchText(String);

impl SearchText {
    /// The longest search, in characters.
    pub const MAX_CHARS: usize = 64;

    /// The text without white space around it.
    pub fn trimmed(&self) -> &str {
        self.0.trim()
    }
}

impl FromStr for SearchText {
    type Err = ParamError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.chars().count() > Self::MAX_CHARS {
            return Err(ParamError(format!(
                "a search is at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(ParamError(
                "a search holds no control characters".to_owned(),
            ));
        }
        Ok(SearchText(text.to_owned()))
    }
}

impl fmt::Display for SearchText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SearchText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SearchText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(deserializer)
    }
}

impl PartialSchema for SearchText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Text the crate name contains (case-insensitive; `-` and `_` match each \
                 other); no control characters.",
            ))
            .max_length(Some(Self::MAX_CHARS))
            .pattern(Some("^[^\\x00-\\x1f\\x7f-\\x9f]*$"))
            .examples(["grep"])
            .into()
    }
}

impl ToSchema for SearchText {}

/// Reads an integer parameter from its text (a path or query string) or from a JSON number.
struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = Result<i128, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Ok(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Ok(value.into()))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        // Digits only: no sign, no white space, no `1e3`.
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        Ok(match text.parse::<i128>() {
            Ok(value) if digits => Ok(value),
            _ => Err(echo(text)),
        })
    }
}

/// An integer parameter with bounds, and what is said when a value is outside them.
macro_rules! bounded {
    (
        $(#[$meta:meta])* $name:ident($inner:ty), $min:expr, $max:expr,
        |$text:ident| $message:expr, $description:literal
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($inner);

        impl $name {
            /// The smallest value.
            pub const MIN: $inner = $min;
            /// The largest value.
            pub const MAX: $inner = $max;

            /// The value, if it is within bounds.
            #[allow(clippy::manual_range_contains)] // `contains` is not const.
            pub const fn new(value: $inner) -> Option<Self> {
                if value >= Self::MIN && value <= Self::MAX {
                    Some(Self(value))
                } else {
                    None
                }
            }

            /// The value.
            pub const fn get(self) -> $inner {
                self.0
            }

            fn refuse($text: &str) -> ParamError {
                ParamError($message)
            }

            fn from_i128(value: i128, text: &str) -> Result<Self, ParamError> {
                <$inner>::try_from(value)
                    .ok()
                    .and_then(Self::new)
                    .ok_or_else(|| Self::refuse(text))
            }
        }

        impl FromStr for $name {
            type Err = ParamError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match IntegerVisitor.visit_str::<de::value::Error>(text) {
                    Ok(Ok(value)) => Self::from_i128(value, text),
                    _ => Err(Self::refuse(&echo(text))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                match deserializer.deserialize_any(IntegerVisitor)? {
                    Ok(value) => Self::from_i128(value, &value.to_string()),
                    Err(text) => Err(Self::refuse(&text)),
                }
                .map_err(de::Error::custom)
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .description(Some($description))
                    .minimum(Some(Self::MIN))
                    .maximum(Some(Self::MAX))
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

bounded!(
    /// A task id in a path: a positive integer, as [`buildsrs_domain::TaskId`] is, with the
    /// refusal and schema a parameter needs; [`TaskIdParam::task_id`] is the domain's id.
    TaskIdParam(i64), 1, i64::MAX,
    |text| format!("{text:?} is not a task id (a positive integer)"),
    "A task id."
);
bounded!(
    /// How many items of a list to skip.
    Offset(u64), 0, 1_000_000,
    |text| format!("{text:?} is not a number from 0 to 1000000"),
    "How many items to skip."
);
bounded!(
    /// How many items a page holds at most.
    Limit(u32), 1, 200,
    |text| format!("{text:?} is not a number from 1 to 200"),
    "How many items a page holds at most."
);
bounded!(
    /// Where a reader of the feed of verified artifacts stands: the `next` of the page it read
    /// last, 0 at first.
    Cursor(i64), 0, i64::MAX,
    |text| format!("{text:?} is not a cursor (a number from a previous answer, or 0)"),
    "The `next` of the previous page of the feed; 0 to start."
);

/// `{name}`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CratePath {
    /// The crate's name.
    #[param(value_type = schema::CrateName, inline)]
    #[serde(with = "crate::text")]
    pub name: CrateName,
}

/// `{name}/{version}`.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionPath {
    /// The crate's name.
    #[param(value_type = schema::CrateName, inline)]
    #[serde(with = "crate::text")]
    pub name: CrateName,
    /// The version, or `latest`.
    #[param(inline)]
    pub version: VersionRef,
}

/// `{id}` of a task.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// The task's id.
    #[param(inline)]
    pub id: TaskIdParam,
}

impl TaskIdParam {
    /// The task id it names.
    pub fn task_id(self) -> buildsrs_domain::TaskId {
        buildsrs_domain::TaskId(self.0)
    }
}

/// `{hash}` of an artifact.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ArtifactPath {
    /// The artifact's BLAKE3 hash.
    #[param(value_type = schema::Blake3Hash, inline)]
    #[serde(deserialize_with = "blake3_param")]
    pub hash: Blake3Hash,
}

/// A BLAKE3 hash in a URL, refused with a message that names it.
fn blake3_param<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Blake3Hash, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        de::Error::custom(format!(
            "{:?} is not a BLAKE3 hash (64 lowercase hex digits)",
            echo(&text)
        ))
    })
}

/// `{key}` of a builder.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BuilderPath {
    /// The builder's public key.
    #[param(inline)]
    pub key: BuilderKey,
}

/// `?q=&offset=&limit=` of the crate search.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CrateSearch {
    /// Text the name contains; all crates without it.
    #[param(inline, nullable = false)]
    pub q: Option<SearchText>,
    /// Items to skip (default 0).
    #[param(inline, nullable = false)]
    pub offset: Option<Offset>,
    /// Items per page (default 50).
    #[param(inline, nullable = false)]
    pub limit: Option<Limit>,
}

/// `?offset=&limit=` of a list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items to skip (default 0).
    #[param(inline, nullable = false)]
    pub offset: Option<Offset>,
    /// Items per page (default 50).
    #[param(inline, nullable = false)]
    pub limit: Option<Limit>,
}

/// `?since=&limit=` of the feed of verified artifacts.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The `next` of the previous page; 0 (the default) to start.
    #[param(inline, nullable = false)]
    pub since: Option<Cursor>,
    /// Items per page (default 100).
    #[param(inline, nullable = false)]
    pub limit: Option<Limit>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parameters_parse_by_their_documented_rules() {
        assert_eq!("latest".parse::<VersionRef>(), Ok(VersionRef::Latest));
        assert_eq!(
            "1.2.3-rc.1".parse::<VersionRef>().unwrap().to_string(),
            "1.2.3-rc.1"
        );
        for bad in ["", "1.0", "Latest", "01.0.0", "latest/..", "1.0.0\n"] {
            assert!(bad.parse::<VersionRef>().is_err(), "{bad:?}");
        }
        let hex = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
        let key: BuilderKey = hex.parse().unwrap();
        assert_eq!(key, format!("ed25519:{hex}").parse().unwrap());
        assert_eq!(key.to_string(), format!("ed25519:{hex}"));
        for bad in [
            "",
            "ed25519:",
            "abc",
            &hex.to_uppercase(),
            &format!("{hex}0"),
        ] {
            let error = bad.parse::<BuilderKey>().unwrap_err().to_string();
            assert!(error.contains("not a builder key"), "{error}");
        }
        // Well-formed bytes that are no curve point are a key nobody has.
        let no_point = (0..=255u8)
            .map(|b| format!("{b:02x}").repeat(32).parse::<BuilderKey>().unwrap())
            .find(|key| key.public_key().is_none());
        assert!(no_point.is_some());

        assert_eq!("7".parse::<TaskIdParam>().map(TaskIdParam::get), Ok(7));
        for bad in [
            "0",
            "-1",
            "+1",
            "1.0",
            " 1",
            "",
            "9223372036854775808",
            "1e3",
        ] {
            let error = bad.parse::<TaskIdParam>().unwrap_err().to_string();
            assert!(error.contains("not a task id"), "{bad:?}: {error}");
        }
        assert!("1000000".parse::<Offset>().is_ok());
        assert!("1000001".parse::<Offset>().is_err());
        assert!("0".parse::<Limit>().is_err());
        assert!("200".parse::<Limit>().is_ok());
        assert!("201".parse::<Limit>().is_err());
        assert!(
            "x".parse::<Cursor>()
                .unwrap_err()
                .to_string()
                .contains("not a cursor")
        );
        assert_eq!(
            "9223372036854775807".parse::<Cursor>().map(Cursor::get),
            Ok(i64::MAX)
        );

        assert!("a".repeat(64).parse::<SearchText>().is_ok());
        assert!(
            "é".repeat(64).parse::<SearchText>().is_ok(),
            "characters, not bytes"
        );
        assert!("a".repeat(65).parse::<SearchText>().is_err());
        assert!(
            format!(" {} ", "a".repeat(63))
                .parse::<SearchText>()
                .is_err()
        );
        assert!("a\0b".parse::<SearchText>().is_err());
        assert_eq!(" demo ".parse::<SearchText>().unwrap().trimmed(), "demo");
    }

    #[test]
    fn numbers_deserialize_from_json_and_from_text() {
        let limit: Limit = serde_json::from_str("5").unwrap();
        assert_eq!(limit.get(), 5);
        let limit: Limit = serde_json::from_str("\"5\"").unwrap();
        assert_eq!(limit.get(), 5);
        let error = serde_json::from_str::<Limit>("500")
            .unwrap_err()
            .to_string();
        assert!(error.contains("from 1 to 200"), "{error}");
        assert!(serde_json::from_str::<Limit>("-5").is_err());
    }
}
