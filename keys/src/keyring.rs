//! The keyring: which builder keys a user trusts, in a text file people edit by hand.
//!
//! ```text
//! # buildsrs keyring: one trusted builder key per line.
//! # <public key>                                                            <name>   [revocation]
//! ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c alice
//! ed25519:8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c bob      revoked
//! ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a carol    revoked-since=2026-11-01T00:00:00Z
//! ```
//!
//! `revoked` withdraws trust in every attestation by that key. `revoked-since=TIME` (RFC 3339)
//! keeps attestations whose build finished before TIME and refuses later ones: for retiring a
//! key. A key that may have leaked should be plainly `revoked`, since whoever holds it can
//! write any build time into a statement.
//!
//! Errors name the line. A key may appear once; names must be unique too, so reports are
//! never ambiguous.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::identity::PublicKey;

/// The largest keyring file we read.
pub const MAX_KEYRING_BYTES: u64 = 4 * 1024 * 1024;

/// Why a keyring was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The keyring file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is larger than [`MAX_KEYRING_BYTES`] or not UTF-8.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The keyring file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A line could not be parsed.
    #[error("keyring line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Whether, and from when on, a key is no longer trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "since")]
pub enum Revocation {
    /// Trusted.
    None,
    /// Never trusted again, for any attestation.
    Always,
    /// Attestations of builds finished at or after this time do not count.
    Since(jiff::Timestamp),
}

/// One trusted key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyringEntry {
    /// The builder's public key.
    pub key: PublicKey,
    /// The name people know the builder by.
    pub name: String,
    /// Whether the key is revoked.
    pub revocation: Revocation,
    /// The 1-based line it came from.
    pub line: usize,
}

impl KeyringEntry {
    /// Whether an attestation of a build that finished at `finished` (Unix seconds) counts.
    pub fn trusted_for(&self, finished: u64) -> bool {
        match self.revocation {
            Revocation::None => true,
            Revocation::Always => false,
            Revocation::Since(since) => i64::try_from(finished)
                .map(|finished| finished < since.as_second())
                .unwrap_or(false),
        }
    }
}

impl fmt::Display for KeyringEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.name)?;
        match self.revocation {
            Revocation::None => Ok(()),
            Revocation::Always => f.write_str(" revoked"),
            Revocation::Since(since) => write!(f, " revoked-since={since}"),
        }
    }
}

/// A set of trusted (and revoked) builder keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    entries: Vec<KeyringEntry>,
    by_key: HashMap<PublicKey, usize>,
}

impl Keyring {
    /// Parses keyring text. The first bad line fails the whole keyring: a keyring that is
    /// half understood is not one to trust.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keyring = Self::default();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let entry = parse_line(content, line)?;
            let fail = |message: String| KeyringError::Line { line, message };
            if let Some(first) = keyring.by_key.get(&entry.key) {
                let first = keyring.entries[*first].line;
                return Err(fail(format!(
                    "key {} is already on line {first}",
                    entry.key
                )));
            }
            if let Some(first) = names.insert(entry.name.clone(), line) {
                return Err(fail(format!(
                    "name {:?} is already used on line {first}",
                    entry.name
                )));
            }
            keyring.by_key.insert(entry.key, keyring.entries.len());
            keyring.entries.push(entry);
        }
        Ok(keyring)
    }

    /// Reads and parses a keyring file.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let io_err = |source| KeyringError::Io {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        fs::File::open(path)
            .map_err(io_err)?
            .take(MAX_KEYRING_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        let unreadable = |reason: &str| KeyringError::Unreadable {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if bytes.len() as u64 > MAX_KEYRING_BYTES {
            return Err(unreadable("larger than the 4 MiB limit for keyrings"));
        }
        let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8 text"))?;
        Self::parse(&text)
    }

    /// The entry for a key, revoked or not.
    pub fn get(&self, key: &PublicKey) -> Option<&KeyringEntry> {
        self.by_key.get(key).map(|i| &self.entries[*i])
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[KeyringEntry] {
        &self.entries
    }

    /// Adds an entry (used when writing keyrings, e.g. for a devnet).
    pub fn push(&mut self, key: PublicKey, name: &str) -> Result<(), KeyringError> {
        let line = self.entries.len() + 1;
        let entry = parse_line(&format!("{key} {name}"), line)?;
        if self.get(&key).is_some() || self.entries.iter().any(|e| e.name == name) {
            return Err(KeyringError::Line {
                line,
                message: format!("{key} or {name:?} is already in the keyring"),
            });
        }
        self.by_key.insert(key, self.entries.len());
        self.entries.push(entry);
        Ok(())
    }

    /// The keyring as text, one entry per line, with a header comment.
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# buildsrs keyring: <public key> <name> [revoked | revoked-since=RFC3339]\n",
        );
        for entry in &self.entries {
            text.push_str(&entry.to_string());
            text.push('\n');
        }
        text
    }
}

fn parse_line(content: &str, line: usize) -> Result<KeyringEntry, KeyringError> {
    let fail = |message: String| KeyringError::Line { line, message };
    let mut fields = content.split_whitespace();
    let key_text = fields.next().unwrap_or_default();
    let key: PublicKey = key_text.parse().map_err(|e| fail(format!("{e}")))?;
    let name = fields
        .next()
        .ok_or_else(|| fail(format!("key {key} has no name; write `{key} NAME`")))?;
    if !(1..=64).contains(&name.len())
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
    {
        return Err(fail(format!(
            "name {name:?} must be 1-64 of ASCII letters, digits and `._@+-`"
        )));
    }
    let revocation =
        match fields.next() {
            None => Revocation::None,
            Some("revoked") => Revocation::Always,
            Some(flag) => match flag.strip_prefix("revoked-since=") {
                Some(time) => Revocation::Since(time.parse().map_err(|e| {
                    fail(format!("revoked-since={time}: not an RFC 3339 time ({e})"))
                })?),
                None => {
                    return Err(fail(format!(
                        "unexpected {flag:?}; expected `revoked` or `revoked-since=RFC3339`"
                    )));
                }
            },
        };
    if let Some(extra) = fields.next() {
        return Err(fail(format!("unexpected {extra:?} after the revocation")));
    }
    Ok(KeyringEntry {
        key,
        name: name.to_owned(),
        revocation,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn key(n: u8) -> PublicKey {
        Identity::from_seed([n; 32]).public_key()
    }

    #[test]
    fn parses_comments_names_and_revocations() {
        let text = format!(
            "# trusted builders\n\n{} alice  # home server\n  {} bob revoked\n{} carol revoked-since=2026-11-01T00:00:00Z\n",
            key(1),
            key(2),
            key(3)
        );
        let keyring = Keyring::parse(&text).unwrap();
        assert_eq!(keyring.entries().len(), 3);
        let alice = keyring.get(&key(1)).unwrap();
        assert_eq!((alice.name.as_str(), alice.line), ("alice", 3));
        assert_eq!(alice.revocation, Revocation::None);
        assert_eq!(keyring.get(&key(2)).unwrap().revocation, Revocation::Always);
        let carol = keyring.get(&key(3)).unwrap();
        let since: jiff::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        assert_eq!(carol.revocation, Revocation::Since(since));
        let since = since.as_second() as u64;
        assert!(carol.trusted_for(since - 1));
        assert!(!carol.trusted_for(since));
        assert!(keyring.get(&key(4)).is_none());
        assert_eq!(
            Keyring::parse(&keyring.to_text()).unwrap().entries().len(),
            3
        );
    }

    #[test]
    fn errors_name_the_line() {
        let good = format!("{} alice\n", key(1));
        let cases = [
            (format!("{good}ed25519:zz alice2\n"), 2, "public key"),
            (format!("{good}\n{} \n", key(2)), 3, "has no name"),
            (format!("{good}{} bad/name\n", key(2)), 2, "name"),
            (format!("{good}{} bob revokd\n", key(2)), 2, "unexpected"),
            (
                format!("{good}{} bob revoked-since=yesterday\n", key(2)),
                2,
                "RFC 3339",
            ),
            (
                format!("{good}{} bob revoked extra\n", key(2)),
                2,
                "unexpected",
            ),
            (
                format!("{good}{} alice-again\n", key(1)),
                2,
                "already on line 1",
            ),
            (
                format!("{good}{} alice\n", key(2)),
                2,
                "already used on line 1",
            ),
        ];
        for (text, line, needle) in cases {
            let err = Keyring::parse(&text).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("keyring line {line}:")),
                "{message}"
            );
            assert!(message.contains(needle), "{message} lacks {needle}");
        }
    }

    #[test]
    fn invalid_utf8_and_oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(KeyringError::Unreadable { .. })
        ));
        fs::File::create(&path)
            .unwrap()
            .set_len(MAX_KEYRING_BYTES + 1)
            .unwrap();
        assert!(matches!(
            Keyring::load(&path),
            Err(KeyringError::Unreadable { .. })
        ));
    }
}
