//! Rust release numbers: a crate's `rust-version` (the oldest Rust it builds with) and the
//! release of a toolchain, compared to decide whether the toolchain can build the crate. One
//! rule for everyone who reads them (the index follower, the planner in the store, the node).

use std::fmt;

/// The longest `rust-version` accepted (cargo's are a few characters).
pub const MAX_RUST_VERSION_LEN: usize = 32;

/// A Rust release, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RustRelease {
    /// `1` in `1.95.0`.
    pub major: u64,
    /// `95` in `1.95.0`.
    pub minor: u64,
    /// `0` in `1.95.0`.
    pub patch: u64,
}

impl RustRelease {
    /// Reads a `rust-version` as cargo accepts it: one to three dot-separated numbers
    /// (`1.70` means 1.70.0), at most [`MAX_RUST_VERSION_LEN`] characters.
    pub fn parse_rust_version(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > MAX_RUST_VERSION_LEN {
            return None;
        }
        let mut numbers = [0_u64; 3];
        for (count, part) in text.split('.').enumerate() {
            if count == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            numbers[count] = part.parse().ok()?;
        }
        let [major, minor, patch] = numbers;
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// Reads a toolchain's release as `rustc -vV` reports it, `X.Y.Z` with an optional
    /// channel suffix (`1.97.0-nightly`, `1.96.0-beta.3`): a nightly or beta of 1.97 builds
    /// what needs 1.97. Anything else (`nightly-2026-01-01`, `stable`, `1.95`) is not a
    /// release.
    pub fn parse_release(text: &str) -> Option<Self> {
        let numbers = text.split_once('-').map_or(text, |(numbers, _)| numbers);
        if numbers.split('.').count() != 3 {
            return None;
        }
        Self::parse_rust_version(numbers)
    }
}

impl fmt::Display for RustRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(major: u64, minor: u64, patch: u64) -> RustRelease {
        RustRelease {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn rust_versions_are_one_to_three_numbers() {
        assert_eq!(
            RustRelease::parse_rust_version("1.70"),
            Some(release(1, 70, 0))
        );
        assert_eq!(RustRelease::parse_rust_version("1"), Some(release(1, 0, 0)));
        assert_eq!(
            RustRelease::parse_rust_version("1.85.1"),
            Some(release(1, 85, 1))
        );
        for bad in [
            "",
            "1.",
            ".1",
            "1.2.3.4",
            "1.x",
            "v1.70",
            "1.70-nightly",
            "1.99999999999999999999",
            &"1".repeat(MAX_RUST_VERSION_LEN + 1),
        ] {
            assert_eq!(RustRelease::parse_rust_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn toolchain_releases_ignore_the_channel() {
        assert_eq!(
            RustRelease::parse_release("1.95.0"),
            Some(release(1, 95, 0))
        );
        assert_eq!(
            RustRelease::parse_release("1.97.0-nightly"),
            Some(release(1, 97, 0))
        );
        assert_eq!(
            RustRelease::parse_release("1.96.0-beta.3"),
            Some(release(1, 96, 0))
        );
        for other in ["nightly-2026-01-01", "stable", "1.95", "beta"] {
            assert_eq!(RustRelease::parse_release(other), None, "{other:?}");
        }
        assert!(release(1, 97, 0) >= RustRelease::parse_rust_version("1.97").unwrap());
        assert!(release(1, 96, 9) < RustRelease::parse_rust_version("1.97").unwrap());
    }
}
