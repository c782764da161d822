//! Which crates to follow: a watch list that can change while a follower runs, and the
//! names file for lists too long for a command line.
//!
//! The watch list is shared (config at start, CLI, and the admin UI through the store add
//! and remove crates later). It sits in a `tokio::sync::watch` channel so a running follower
//! wakes up when a crate is added and fetches it at once instead of at the next round.
//!
//! Names file format: one crate name per line; `#` starts a comment (whole line or after a
//! name); blank lines are ignored; duplicates are dropped. Names are checked with the
//! crates.io rules, and errors name the line.
//!
//! A watch file ([`read_watch_file`]) is a names file whose names may carry a backfill,
//! `NAME:N` ([`WatchEntry`]): besides a crate's newest version, build its `N` next-older ones.
//! The follower itself ignores the number; the coordinator hands it to the store.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use buildsrs_keys::statement::validate_crate_name;
use tokio::sync::watch;

/// The largest names file we read.
pub const MAX_NAMES_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a names file or a name was refused.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The names file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is too large or not UTF-8.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The names file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A line does not hold a crate name.
    #[error("names file line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A name given directly is not a crate name.
    #[error("{0}")]
    Name(String),
}

/// A crate to watch, with the backfill asked for it: `NAME` or `NAME:N`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchEntry {
    /// The crate name (checked with the crates.io rules).
    pub name: String,
    /// How many versions older than the newest to build; `None`: the default.
    pub backfill: Option<u32>,
}

impl FromStr for WatchEntry {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, backfill) = match text.split_once(':') {
            Some((name, number)) => {
                let backfill = number.parse::<u32>().map_err(|_| {
                    format!("{text:?}: after the name, `:N` takes a number of older versions")
                })?;
                (name, Some(backfill))
            }
            None => (text, None),
        };
        validate_crate_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            backfill,
        })
    }
}

impl fmt::Display for WatchEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backfill {
            Some(n) => write!(f, "{}:{n}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The entries of a names file, each line parsed by `entry`; the first of each name is kept.
fn parse_lines<T>(
    text: &str,
    entry: impl Fn(&str) -> Result<T, String>,
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>, NamesError> {
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let line = index + 1;
        if content.split_whitespace().nth(1).is_some() {
            return Err(NamesError::Line {
                line,
                message: format!("{content:?}: one crate name per line"),
            });
        }
        let parsed = entry(content).map_err(|message| NamesError::Line { line, message })?;
        if seen.insert(name(&parsed).to_owned()) {
            entries.push(parsed);
        }
    }
    Ok(entries)
}

/// Parses a names file (see the module docs), keeping the first occurrence of each name.
pub fn parse_names_file(text: &str) -> Result<Vec<String>, NamesError> {
    parse_lines(
        text,
        |content| validate_crate_name(content).map(|()| content.to_owned()),
        String::as_str,
    )
}

/// Parses a watch file: a names file whose names may carry a backfill (`NAME:N`), keeping
/// the first occurrence of each name.
pub fn parse_watch_file(text: &str) -> Result<Vec<WatchEntry>, NamesError> {
    parse_lines(text, str::parse, |entry: &WatchEntry| entry.name.as_str())
}

/// Reads and parses a names file.
pub fn read_names_file(path: &Path) -> Result<Vec<String>, NamesError> {
    parse_names_file(&read_text(path)?)
}

/// Reads and parses a watch file (`NAME` or `NAME:N` per line).
pub fn read_watch_file(path: &Path) -> Result<Vec<WatchEntry>, NamesError> {
    parse_watch_file(&read_text(path)?)
}

/// Reads a names or watch file: at most [`MAX_NAMES_FILE_BYTES`], UTF-8.
fn read_text(path: &Path) -> Result<String, NamesError> {
    use std::io::Read;

    let io = |source| NamesError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_NAMES_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_NAMES_FILE_BYTES {
        return Err(NamesError::Unreadable {
            path: path.to_owned(),
            reason: format!("larger than {MAX_NAMES_FILE_BYTES} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|_| NamesError::Unreadable {
        path: path.to_owned(),
        reason: "not UTF-8".into(),
    })
}

/// The crates a sparse follower polls. Cloning gives another handle to the same list.
#[derive(Clone, Debug)]
pub struct WatchList {
    names: Arc<watch::Sender<BTreeSet<String>>>,
}

impl Default for WatchList {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchList {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            names: Arc::new(watch::Sender::new(BTreeSet::new())),
        }
    }

    /// A list holding `names`, each checked.
    pub fn from_names<I, S>(names: I) -> Result<Self, NamesError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = Self::new();
        list.replace(names)?;
        Ok(list)
    }

    /// Adds a crate; returns whether it was new.
    pub fn add(&self, name: &str) -> Result<bool, NamesError> {
        validate_crate_name(name).map_err(NamesError::Name)?;
        Ok(self
            .names
            .send_if_modified(|names| names.insert(name.to_owned())))
    }

    /// Removes a crate; returns whether it was there.
    pub fn remove(&self, name: &str) -> bool {
        self.names.send_if_modified(|names| names.remove(name))
    }

    /// Replaces the whole list (e.g. after re-reading a names file). Nothing changes if any
    /// name is invalid.
    pub fn replace<I, S>(&self, names: I) -> Result<(), NamesError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut new = BTreeSet::new();
        for name in names {
            let name = name.as_ref();
            validate_crate_name(name).map_err(NamesError::Name)?;
            new.insert(name.to_owned());
        }
        self.names.send_if_modified(|names| {
            let changed = *names != new;
            *names = new;
            changed
        });
        Ok(())
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.names.borrow().iter().cloned().collect()
    }

    /// Whether `name` is watched.
    pub fn contains(&self, name: &str) -> bool {
        self.names.borrow().contains(name)
    }

    /// How many crates are watched.
    pub fn len(&self) -> usize {
        self.names.borrow().len()
    }

    /// Whether no crate is watched.
    pub fn is_empty(&self) -> bool {
        self.names.borrow().is_empty()
    }

    /// A receiver that wakes when the list changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<BTreeSet<String>> {
        self.names.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_with_comments_blanks_and_duplicates() {
        let text = "# crates we build\nripgrep\n\n  fd-find   # a comment\nripgrep\nbat\n";
        assert_eq!(
            parse_names_file(text).unwrap(),
            ["ripgrep", "fd-find", "bat"]
        );
    }

    #[test]
    fn names_file_errors_name_the_line() {
        let err = parse_names_file("ok\n# fine\nnot/a/name\n").unwrap_err();
        assert!(matches!(err, NamesError::Line { line: 3, .. }), "{err}");
        assert!(err.to_string().starts_with("names file line 3:"), "{err}");
        let err = parse_names_file("two names\n").unwrap_err();
        assert!(matches!(err, NamesError::Line { line: 1, .. }), "{err}");
        let err = parse_names_file(&format!("{}\n", "a".repeat(65))).unwrap_err();
        assert!(matches!(err, NamesError::Line { line: 1, .. }), "{err}");
    }

    #[test]
    fn watch_entries_carry_an_optional_backfill() {
        let entry = |text: &str| text.parse::<WatchEntry>();
        assert_eq!(
            entry("ripgrep:3"),
            Ok(WatchEntry {
                name: "ripgrep".into(),
                backfill: Some(3)
            })
        );
        assert_eq!(
            entry("bat"),
            Ok(WatchEntry {
                name: "bat".into(),
                backfill: None
            })
        );
        assert_eq!(
            entry("fd-find:0").map(|e| e.to_string()),
            Ok("fd-find:0".into())
        );
        for bad in [
            "ripgrep:",
            "ripgrep:-1",
            "ripgrep:x",
            ":3",
            "rip grep:1",
            "a:1:2",
        ] {
            assert!(entry(bad).is_err(), "{bad:?}");
        }
        let text = "# crates\nripgrep:3\nbat # no backfill\nripgrep\nfd-find:0\n";
        let names: Vec<String> = parse_watch_file(text)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["ripgrep:3", "bat", "fd-find:0"]);
        let err = parse_watch_file("ok\nbad:many\n").unwrap_err();
        assert!(matches!(err, NamesError::Line { line: 2, .. }), "{err}");
        // A names file takes names only.
        assert!(parse_names_file("ripgrep:3\n").is_err());
    }

    #[test]
    fn names_file_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.txt");
        std::fs::write(&path, "serde\n").unwrap();
        assert_eq!(read_names_file(&path).unwrap(), ["serde"]);
        std::fs::write(&path, "serde:2\n").unwrap();
        assert_eq!(
            read_watch_file(&path).unwrap(),
            [WatchEntry {
                name: "serde".into(),
                backfill: Some(2)
            }]
        );
        std::fs::write(&path, b"\xff\xfe").unwrap();
        assert!(matches!(
            read_names_file(&path),
            Err(NamesError::Unreadable { .. })
        ));
        assert!(matches!(
            read_names_file(&dir.path().join("missing")),
            Err(NamesError::Io { .. })
        ));
    }

    #[test]
    fn watch_list_changes_are_seen() {
        let list = WatchList::from_names(["b", "a"]).unwrap();
        let mut rx = list.subscribe();
        rx.borrow_and_update();
        assert_eq!(list.names(), ["a", "b"]);
        assert!(!list.add("a").unwrap());
        assert!(!rx.has_changed().unwrap());
        assert!(list.add("c").unwrap());
        assert!(rx.has_changed().unwrap());
        assert!(list.add("../x").is_err());
        assert!(list.replace(["ok", "not ok"]).is_err());
        assert_eq!(list.len(), 3);
        assert!(list.remove("b"));
        assert!(!list.contains("b"));
    }
}
