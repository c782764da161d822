//! Keyring parsing must never panic, and what it accepts must survive a write-read cycle.
#![no_main]

use buildsrs_keys::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Keyring::parse(text) {
        Ok(keyring) => {
            let again = Keyring::parse(&keyring.to_text()).expect("a written keyring re-parses");
            assert_eq!(again.entries().len(), keyring.entries().len());
        }
        Err(error) => {
            assert!(error.to_string().starts_with("keyring line "));
        }
    }
});
