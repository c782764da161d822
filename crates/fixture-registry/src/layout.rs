//! Where things live in a registry: the index path of a crate and the names we accept.
//!
//! The index layout is cargo's (`1/a`, `2/ab`, `3/a/abc`, `se/rd/serde`, lowercased), so the
//! same files serve as a sparse index over HTTP and as a git index on disk.

/// The index file of a crate, relative to the index root, with `/` separators.
///
/// Returns `None` for an empty name.
pub fn index_path(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let prefix = match lower.len() {
        0 => return None,
        1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", &lower[..1]),
        _ => format!("{}/{}", &lower[..2], &lower[2..4]),
    };
    Some(format!("{prefix}/{lower}"))
}

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
    fn index_paths_follow_cargo_layout() {
        assert_eq!(index_path("a").as_deref(), Some("1/a"));
        assert_eq!(index_path("ab").as_deref(), Some("2/ab"));
        assert_eq!(index_path("abc").as_deref(), Some("3/a/abc"));
        assert_eq!(index_path("Serde").as_deref(), Some("se/rd/serde"));
        assert_eq!(index_path("hello-bin").as_deref(), Some("he/ll/hello-bin"));
        assert_eq!(index_path(""), None);
    }

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
