//! A user's `Cargo.lock` (read by `verify --cargo-lock`) and the registry URLs people and
//! lock files write must be read or refused, never panic. The input's first line names the
//! crate and version to look up (`NAME VERSION`); the rest is the lock file. Every line is
//! also read as a registry URL.
#![no_main]

use buildsrs_keys::lockfile::locked_source;
use buildsrs_keys::{CrateName, CrateVersion, RegistryUrl};
use libfuzzer_sys::fuzz_target;

/// A registry read from what someone wrote is canonical: reading it again changes nothing,
/// and it parses as it is, by the strict rule statements use.
fn check_registry(registry: &RegistryUrl) {
    let again = RegistryUrl::from_index_url(registry.as_str()).expect("a canonical URL re-reads");
    assert_eq!(&again, registry);
    let strict: RegistryUrl = registry
        .as_str()
        .parse()
        .expect("a canonical URL parses strictly");
    assert_eq!(&strict, registry);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        if let Ok(registry) = RegistryUrl::from_index_url(line) {
            check_registry(&registry);
        }
    }
    let (first, lock) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = first.split(' ');
    let (Some(Ok(name)), Some(Ok(version))) = (
        words.next().map(str::parse::<CrateName>),
        words.next().map(str::parse::<CrateVersion>),
    ) else {
        return;
    };
    match locked_source(lock, &name, &version) {
        Ok(source) => check_registry(&source.registry),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
