//! What people call a builder: its [`BuilderName`] (the builder's own choice, sent in its
//! hello) and its [`Operator`] (who runs the key, set by the coordinator's admin when the key
//! is approved).
//!
//! Both end up in places where a stray character changes meaning: the `/keyring` text file
//! the web serves (`<key> <name> [revoked]`, split on white space, `#` starting a comment),
//! log lines, admin pages. So both follow one rule, checked once when the text comes in:
//! 1 to 64 of ASCII letters, digits, `.`, `_` and `-` ([`LABEL_MAX_LEN`]). No white space,
//! no `#`, no control characters: a name can never add a word or a line to a keyring. The
//! rule is a subset of the keyring's own name rule (which also allows `@` and `+`), so the
//! web can write every stored name into a keyring as it is, and can make fallback names with
//! `+` that no builder can choose.
//!
//! Their serde form is the text, decoded by the same rule.

/// The longest builder name or operator.
pub const LABEL_MAX_LEN: usize = 64;

/// The rule as a regular expression, for documents that state it (the API's schema).
pub const LABEL_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// Whether `text` follows the rule of names and operators.
fn is_label(text: &str) -> bool {
    (1..=LABEL_MAX_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a builder name or operator was refused: says what a good one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {given:?} is not allowed: use 1 to 64 of ASCII letters, digits, `.`, `_` and `-` \
     (no spaces)"
)]
pub struct InvalidLabel {
    what: &'static str,
    /// What was given, cut to a length that is safe to echo.
    given: String,
}

impl InvalidLabel {
    fn new(what: &'static str, text: &str) -> Self {
        let mut given: String = text.chars().take(LABEL_MAX_LEN + 8).collect();
        if given.len() < text.len() {
            given.push('…');
        }
        InvalidLabel { what, given }
    }
}

/// The rule of names and operators, refusing as `what`.
fn check_label(what: &'static str, text: &str) -> Result<(), InvalidLabel> {
    if is_label(text) {
        Ok(())
    } else {
        Err(InvalidLabel::new(what, text))
    }
}

buildsrs_keys::checked_string!(
    /// The name a builder goes by in the builder list and the served keyring (a node sends its
    /// host name unless told otherwise): 1 to 64 of ASCII letters, digits, `.`, `_`, `-`.
    BuilderName,
    |text| check_label("builder name", text) => InvalidLabel
);
buildsrs_keys::checked_string!(
    /// Who runs a builder key: a short name the admin gives at approval. Keys of one operator
    /// count once toward a quorum. 1 to 64 of ASCII letters, digits, `.`, `_`, `-`.
    Operator,
    |text| check_label("operator", text) => InvalidLabel
);

#[cfg(test)]
mod tests {
    use super::*;
    use buildsrs_keys::{Identity, Keyring, Revocation};

    #[test]
    fn good_names_parse_and_print_as_given() {
        for good in ["alice", "build-01.example.org", "A_b-c.9", &"x".repeat(64)] {
            let name: BuilderName = good.parse().unwrap();
            assert_eq!(name.as_str(), good);
            let operator: Operator = good.parse().unwrap();
            assert_eq!(operator.to_string(), good);
        }
    }

    #[test]
    fn nothing_that_could_change_a_keyring_line_parses() {
        for bad in [
            "",
            "x revoked",
            "x\nrevoked",
            "x\ned25519:00 victim revoked",
            "x\trevoked",
            "x#comment",
            "x\u{a0}revoked",
            "x\u{2028}y",
            "a+b",
            "a@b",
            "a/b",
            "é",
            "x\0",
            &"x".repeat(65),
        ] {
            let error = bad.parse::<BuilderName>().unwrap_err().to_string();
            assert!(error.starts_with("builder name"), "{error}");
            assert!(error.contains("no spaces"), "{error}");
            let error = bad.parse::<Operator>().unwrap_err().to_string();
            assert!(error.starts_with("operator"), "{error}");
        }
    }

    #[test]
    fn an_overlong_name_is_echoed_cut() {
        let error = "y".repeat(10_000).parse::<BuilderName>().unwrap_err();
        assert!(error.to_string().len() < 300, "{error}");
    }

    #[test]
    fn serde_uses_the_same_rule() {
        let name: BuilderName = serde_json::from_str("\"alice\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"alice\"");
        assert!(serde_json::from_str::<BuilderName>("\"x revoked\"").is_err());
        assert!(serde_json::from_str::<Operator>("\"a\\nb\"").is_err());
    }

    /// Every name the rule allows goes into a keyring line as one word: the key keeps no
    /// revocation and the name reads back unchanged.
    #[test]
    fn every_allowed_name_is_one_keyring_word() {
        let key = Identity::from_seed([7; 32]).public_key();
        let alphabet = "abcXYZ019._-";
        for (i, first) in alphabet.chars().enumerate() {
            for second in alphabet.chars().skip(i) {
                let text = format!("{first}{second}{first}");
                let name: BuilderName = text.parse().unwrap();
                let mut keyring = Keyring::default();
                keyring.push(key, name.as_str()).unwrap();
                let parsed = Keyring::parse(&keyring.to_text()).unwrap();
                let entry = parsed.get(&key).unwrap();
                assert_eq!(entry.name, text);
                assert_eq!(entry.revocation, Revocation::None);
            }
        }
    }
}
