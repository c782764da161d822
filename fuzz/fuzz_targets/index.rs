//! A registry's index is outside input: its `config.json` and every line of a crate's index
//! file must be read or refused, never panic. A bad line costs that version only.
//!
//! The input's first line is `config.json`, the second the crate name the file is read for,
//! the rest the index file. A `config.json` that does not parse is replaced by crates.io's,
//! so the index lines are read either way.
#![no_main]

use std::collections::HashSet;

use buildsrs_index::{IndexConfig, diff_versions, index_path, parse_index_file};
use buildsrs_keys::RustRelease;
use libfuzzer_sys::fuzz_target;

const CRATES_IO_CONFIG: &[u8] =
    br#"{"dl":"https://static.crates.io/crates","api":"https://crates.io"}"#;

/// The parts of the input, split at the first two newlines.
fn split(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

fuzz_target!(|data: &[u8]| {
    let (config, name, body) = split(data);
    let config = match IndexConfig::from_json(config) {
        Ok(config) => {
            assert!(!config.dl().trim().is_empty());
            let _ = config.api();
            config
        }
        Err(error) => {
            let _ = error.to_string();
            IndexConfig::from_json(CRATES_IO_CONFIG).expect("crates.io's config parses")
        }
    };
    let name = String::from_utf8_lossy(name);
    let _ = index_path(&name);
    let (versions, skipped) = parse_index_file(&name, body, &config);

    // Every line that is not blank is either a version or a skipped line, in order.
    let lines = body
        .split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count();
    assert_eq!(versions.len() + skipped.len(), lines);
    assert!(skipped.windows(2).all(|w| w[0].line < w[1].line));
    let mut seen = HashSet::new();
    for version in &versions {
        assert!(version.name.as_str().eq_ignore_ascii_case(&name));
        assert!(
            seen.insert(version.version.clone()),
            "a version listed twice"
        );
        if let Some(rust_version) = &version.rust_version {
            assert!(RustRelease::parse_rust_version(rust_version).is_some());
        }
        let _ = config.download_url(&version.name, &version.version, &version.cksum.to_string());
    }
    // Diffing against an older read of the same file (its first half) never panics.
    let changes = diff_versions(&versions[..versions.len() / 2], &versions);
    let _ = changes.summary();
});
