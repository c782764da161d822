//! The index's `config.json`: where a version's `.crate` file is downloaded from.
//!
//! The `dl` value is a URL template with the markers `{crate}`, `{version}`, `{prefix}`,
//! `{lowerprefix}` and `{sha256-checksum}`; without any marker, `/{crate}/{version}/download`
//! is appended. We hand the expansion to crates-index, which does it the way cargo does, and
//! always pass the checksum, so every template gives a URL.

use crate::error::IndexError;

/// A registry's `config.json`.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    inner: crates_index::IndexConfig,
}

impl IndexConfig {
    /// Parses `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, IndexError> {
        let inner: crates_index::IndexConfig =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Config(e.to_string()))?;
        if inner.dl.trim().is_empty() {
            return Err(IndexError::Config("`dl` is empty".into()));
        }
        Ok(Self { inner })
    }

    /// The `dl` template as the index gives it.
    pub fn dl(&self) -> &str {
        &self.inner.dl
    }

    /// The registry's API root, if it has one.
    pub fn api(&self) -> Option<&str> {
        self.inner.api.as_deref()
    }

    /// Where `name` `version` is downloaded from. `cksum` is the version's sha256 (64 hex
    /// digits, as in the index), needed by templates with `{sha256-checksum}`.
    ///
    /// Returns `None` only for an empty name or a checksum that is not 64 hex digits.
    pub fn download_url(&self, name: &str, version: &str, cksum: &str) -> Option<String> {
        let checksum = decode_sha256(cksum)?;
        self.inner
            .download_url_with_checksum(name, version, &checksum)
    }
}

/// 64 hex digits to 32 bytes.
pub(crate) fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CKSUM: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn config(dl: &str) -> IndexConfig {
        IndexConfig::from_json(
            serde_json::json!({ "dl": dl, "api": null })
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn markers_are_expanded() {
        let c =
            config("https://dl.example/{prefix}/{lowerprefix}/{crate}/{version}/{sha256-checksum}");
        assert_eq!(
            c.download_url("MyCrate", "1.2.3", CKSUM).unwrap(),
            format!("https://dl.example/My/Cr/my/cr/MyCrate/1.2.3/{CKSUM}")
        );
        let c = config("https://dl.example/{prefix}/{crate}");
        assert_eq!(
            c.download_url("a", "1.0.0", CKSUM).unwrap(),
            "https://dl.example/1/a"
        );
        assert_eq!(
            c.download_url("abc", "1.0.0", CKSUM).unwrap(),
            "https://dl.example/3/a/abc"
        );
    }

    #[test]
    fn no_marker_appends_the_default_suffix() {
        let c = config("https://crates.example/api/v1/crates");
        assert_eq!(
            c.download_url("serde", "1.0.0", CKSUM).unwrap(),
            "https://crates.example/api/v1/crates/serde/1.0.0/download"
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(IndexConfig::from_json(b"{}").is_err());
        assert!(IndexConfig::from_json(br#"{"dl":""}"#).is_err());
        assert!(IndexConfig::from_json(b"not json").is_err());
        let c = config("https://dl.example/{crate}");
        assert_eq!(c.download_url("serde", "1.0.0", "xyz"), None);
        assert_eq!(c.download_url("serde", "1.0.0", &"g".repeat(64)), None);
    }

    #[test]
    fn sha256_hex_decodes() {
        let bytes = decode_sha256(CKSUM).unwrap();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(bytes[31], 0xef);
    }
}
