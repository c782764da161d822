//! Crate names, versions and target triples as types: each parsed once, by the rules of
//! [`crate::statement`] (crates.io's name rule, canonical semver, the triple charset), and
//! then carried as a value that cannot be anything else.
//!
//! These strings end up in file names, directory names and URLs. Holding them as
//! [`CrateName`], [`CrateVersion`] and [`TargetTriple`] instead of `String` means no path or
//! request is ever made from one that was not checked: none can hold `/`, `..`, white space or
//! anything outside its charset.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::statement::{
    validate_crate_name, validate_target, validate_toolchain_release, validate_version,
};

/// Why a name, version or triple was refused: says what a good one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The checked text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $validate(text).map_err(InvalidName)?;
                Ok(Self(text.to_owned()))
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        /// As its text: the wire and JSON form is the plain string.
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Parses by the same rule as [`FromStr`]: nothing unchecked is ever decoded.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_string!(
    /// A crate name by crates.io's rule: ASCII letters, digits, `-` and `_`, starting with a
    /// letter, at most 64 characters.
    CrateName,
    validate_crate_name
);
checked_string!(
    /// A crate version: semver, in the canonical form the registry writes (at most 128
    /// characters).
    CrateVersion,
    validate_version
);
checked_string!(
    /// A target triple: lowercase ASCII letters, digits, `_`, `-` and `.`, at most 80
    /// characters.
    TargetTriple,
    validate_target
);
checked_string!(
    /// A toolchain's release as `rustc -vV` reports it and tasks name it (`1.95.0`,
    /// `1.97.0-nightly`): 1 to 128 of ASCII letters, digits, `.`, `_`, `+`, `-`.
    ToolchainRelease,
    validate_toolchain_release
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_values_parse_and_print_as_given() {
        let name: CrateName = "ripgrep".parse().unwrap();
        assert_eq!(name.as_str(), "ripgrep");
        assert_eq!(
            format!("{name}-{}", "14.1.1".parse::<CrateVersion>().unwrap()),
            "ripgrep-14.1.1"
        );
        let triple: TargetTriple = "x86_64-unknown-linux-gnu".parse().unwrap();
        assert_eq!(&*triple, "x86_64-unknown-linux-gnu");
        assert_eq!(String::from(triple), "x86_64-unknown-linux-gnu");
    }

    #[test]
    fn serde_uses_the_same_rule() {
        let name: CrateName = serde_json::from_str("\"ripgrep\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"ripgrep\"");
        let error = serde_json::from_str::<CrateName>("\"../x\"").unwrap_err();
        assert!(error.to_string().contains("not a crate name"), "{error}");
        assert!(serde_json::from_str::<CrateVersion>("\"1.0\"").is_err());
        let release: ToolchainRelease = serde_json::from_str("\"1.97.0-nightly\"").unwrap();
        assert_eq!(release, "1.97.0-nightly");
    }

    #[test]
    fn nothing_that_could_make_a_path_parses() {
        for bad in [
            "",
            "../x",
            "a/b",
            "a b",
            ".hidden",
            "-x",
            "é",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<CrateName>().is_err(), "{bad:?}");
        }
        for bad in ["", "1.0", "1.0.0/../../x", "01.0.0", "1.0.0 ", "v1.0.0"] {
            assert!(bad.parse::<CrateVersion>().is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "x86_64/../../etc",
            "..",
            "x..y",
            "-x",
            ".x",
            "X86_64-linux",
            "a b",
            &"a".repeat(81),
        ] {
            assert!(bad.parse::<TargetTriple>().is_err(), "{bad:?}");
        }
        for bad in ["", "1.95.0 ", "1.95/0", &"1".repeat(129)] {
            assert!(bad.parse::<ToolchainRelease>().is_err(), "{bad:?}");
        }
        let error = "../x".parse::<CrateName>().unwrap_err().to_string();
        assert!(error.contains("not a crate name"), "{error}");
    }
}
