//! Where things live in a registry: the index path of a crate and the names we accept.
//!
//! The index layout is cargo's (`1/a`, `2/ab`, `3/a/abc`, `se/rd/serde`, lowercased), so the
//! same files serve as a sparse index over HTTP and as a git index on disk.

/// The index file of a crate, relative to the index root (`None` for an empty or
/// non-ASCII name).
pub use buildsrs_index::index_path;

/// Crate names as crates.io allows them: ASCII letters, digits, `-` and `_`, starting with a
/// letter, at most 64 characters. Everything that builds a path from a name checks it first.
pub fn is_crate_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Versions as semver writes them; the check keeps `/` and `..` out of download paths.
pub fn is_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.+".contains(&b))
        && !version.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_are_checked() {
        assert!(is_crate_name("hello_bin-2"));
        assert!(!is_crate_name("../etc"));
        assert!(!is_crate_name("1abc"));
        assert!(is_version("1.0.0-beta.1+build"));
        assert!(!is_version("../1.0.0"));
        assert!(!is_version("1.0/0"));
    }
}
