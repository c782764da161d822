//! Crate names, versions and target triples as types: each parsed once, by the rules of
//! [`crate::statement`] (crates.io's name rule, canonical semver, the triple charset), and
//! then carried as a value that cannot be anything else.
//!
//! These strings end up in file names, directory names and URLs. Holding them as
//! [`CrateName`], [`CrateVersion`] and [`TargetTriple`] instead of `String` means no path or
//! request is ever made from one that was not checked: none can hold `/`, `..`, white space or
//! anything outside its charset.

use serde::{Deserialize, Deserializer};

use crate::statement::{
    validate_crate_name, validate_registry_url, validate_target, validate_toolchain_release,
    validate_version,
};

/// Why a name, version or triple was refused: says what a good one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(String);

impl InvalidName {
    /// A refusal saying `why`.
    pub fn new(why: String) -> Self {
        Self(why)
    }
}

/// For [`checked_string!`] in other crates: the serde it implements.
#[doc(hidden)]
pub use serde;

/// A string newtype checked by one rule: `FromStr` and `Deserialize` run the rule, `Display`
/// and `Serialize` give the text back. `checked_string!(Name, validate)` with `validate:
/// fn(&str) -> Result<(), String>` refuses with [`InvalidName`];
/// `checked_string!(Name, check => Error)` with `check: fn(&str) -> Result<(), Error>` with
/// the caller's error type (the domain's builder names and operators use it).
#[macro_export]
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $validate:path) => {
        $crate::checked_string!(
            $(#[$meta])* $name,
            |text| $validate(text).map_err($crate::names::InvalidName::new) => $crate::names::InvalidName
        );
    };
    ($(#[$meta:meta])* $name:ident, $check:expr => $error:ty) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The checked text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let check: fn(&str) -> Result<(), $error> = $check;
                check(text)?;
                Ok(Self(text.to_owned()))
            }
        }

        impl ::std::ops::Deref for $name {
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

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
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
        impl $crate::names::serde::Serialize for $name {
            fn serialize<S: $crate::names::serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Parses by the same rule as `FromStr`: nothing unchecked is ever decoded.
        impl<'de> $crate::names::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::names::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let text = <String as $crate::names::serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err($crate::names::serde::de::Error::custom)
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

checked_string!(
    /// A registry, named by its sparse index URL in canonical form: `sparse+http://` or
    /// `sparse+https://`, a lowercase host, a path ending in `/`, at most 256 characters, no
    /// white space, query or fragment. crates.io is [`RegistryUrl::crates_io`]. Read what people
    /// and lock files write with [`RegistryUrl::from_index_url`].
    RegistryUrl,
    validate_registry_url
);

/// crates.io's sparse index, as cargo and crates-index spell it: the name statements give it.
pub const CRATES_IO_INDEX: &str = "sparse+https://index.crates.io/";

/// The git index cargo knows crates.io by (lock files name it as their source).
pub const CRATES_IO_GIT_INDEX: &str = "registry+https://github.com/rust-lang/crates.io-index";

impl RegistryUrl {
    /// crates.io, the default registry.
    pub fn crates_io() -> Self {
        Self(CRATES_IO_INDEX.to_owned())
    }

    /// Reads a registry the way people, configurations and `Cargo.lock` write it: crates.io
    /// by its sparse or its git index URL, any sparse index with or without its final `/`.
    /// The result is canonical, so one registry always has one name.
    pub fn from_index_url(text: &str) -> Result<Self, InvalidName> {
        if is_crates_io(text) {
            return Ok(Self::crates_io());
        }
        if text.starts_with("sparse+") && !text.ends_with('/') {
            return format!("{text}/").parse();
        }
        text.parse()
    }

    /// Whether this is crates.io.
    pub fn is_crates_io(&self) -> bool {
        self.0 == CRATES_IO_INDEX
    }
}

/// For `#[serde(deserialize_with)]` in configuration files: reads a registry the way people
/// write it ([`RegistryUrl::from_index_url`]); it serializes in canonical form.
pub fn registry_as_written<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RegistryUrl, D::Error> {
    let text = String::deserialize(deserializer)?;
    RegistryUrl::from_index_url(&text).map_err(serde::de::Error::custom)
}

/// Whether a crates-index URL names crates.io (its sparse index, or the git index cargo
/// knows it by), whatever the trailing slash.
pub fn is_crates_io(registry: &str) -> bool {
    let url = registry.trim_end_matches('/');
    url == CRATES_IO_INDEX.trim_end_matches('/') || url == CRATES_IO_GIT_INDEX
}

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

    #[test]
    fn a_registry_has_one_name() {
        for crates_io in [
            "sparse+https://index.crates.io/",
            "sparse+https://index.crates.io",
            "registry+https://github.com/rust-lang/crates.io-index",
        ] {
            let registry = RegistryUrl::from_index_url(crates_io).unwrap();
            assert_eq!(registry, RegistryUrl::crates_io(), "{crates_io}");
            assert!(registry.is_crates_io());
        }
        let local = RegistryUrl::from_index_url("sparse+http://127.0.0.1:7780/index").unwrap();
        assert_eq!(local, "sparse+http://127.0.0.1:7780/index/");
        assert!(!local.is_crates_io());
        // The strict rule (statements, serde) takes only the canonical form.
        assert!(
            "sparse+http://127.0.0.1:7780/index"
                .parse::<RegistryUrl>()
                .is_err()
        );
        assert!(
            "registry+https://github.com/rust-lang/crates.io-index"
                .parse::<RegistryUrl>()
                .is_err()
        );
        assert!(serde_json::from_str::<RegistryUrl>("\"sparse+https://index.crates.io\"").is_err());
    }

    #[test]
    fn a_registry_url_cannot_smuggle_anything() {
        for bad in [
            "",
            "https://index.crates.io/",
            "sparse+ftp://example.org/",
            "sparse+https:///",
            "sparse+https://Example.org/",
            "sparse+https://example.org/a b/",
            "sparse+https://example.org/?x=/",
            "sparse+https://example.org/#x/",
            "sparse+https://example.org/\"/",
            "sparse+https://example.org/\n/",
            "sparse+https://example.org/../",
            "sparse+https://example.org//",
            &format!("sparse+https://example.org/{}/", "a".repeat(256)),
        ] {
            assert!(RegistryUrl::from_index_url(bad).is_err(), "{bad:?}");
        }
        let lookalike = RegistryUrl::from_index_url("sparse+https://index.crates.io.example/");
        assert!(!lookalike.unwrap().is_crates_io());
        assert!(!is_crates_io("sparse+https://index.crates.io.example/"));
        assert!(!is_crates_io("sparse+https://index.crates.io/extra/"));
    }
}
