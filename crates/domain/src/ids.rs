//! The coordinator's ids that travel between crates: a [`TaskId`] names one crate version ×
//! target × toolchain to build, a [`LeaseId`] one builder's right to work on it. The store
//! hands them out, the protocol carries them to the node and back, the API shows them.
//!
//! Both are positive integers on the wire and in JSON; decoding anything else fails.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an id (a positive integer)")]
pub struct InvalidId(String);

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text.parse::<i64>() {
                    Ok(value) if value > 0 => Ok(Self(value)),
                    _ => Err(InvalidId(text.chars().take(40).collect())),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = i64::deserialize(deserializer)?;
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(serde::de::Error::custom(InvalidId(value.to_string())))
                }
            }
        }
    };
}

id_type!(
    /// A task: one crate version × target × toolchain.
    TaskId
);
id_type!(
    /// A lease: one builder's right to work on one task until a deadline.
    LeaseId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_integers_everywhere() {
        assert_eq!("7".parse(), Ok(TaskId(7)));
        assert_eq!(serde_json::to_string(&LeaseId(9)).unwrap(), "9");
        assert_eq!(serde_json::from_str::<LeaseId>("9").unwrap(), LeaseId(9));
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999"] {
            assert!(bad.parse::<TaskId>().is_err(), "{bad:?}");
        }
        for bad in ["0", "-3", "\"4\"", "1.5"] {
            assert!(serde_json::from_str::<TaskId>(bad).is_err(), "{bad:?}");
        }
    }
}
