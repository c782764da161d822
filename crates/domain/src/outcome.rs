//! How a build ended: [`Outcome`], one enum from the node's pipeline through the wire to the
//! coordinator's store, and its fieldless [`OutcomeKind`] (the text form stored and shown).
//!
//! Every layer keeps the same variants and the same reasons; only what a built result carries
//! differs (the node: its archive and binaries; the wire: the signed attestation; the store:
//! the artifact and the signed bytes), so `Outcome` is generic over that payload and a layer
//! passes an outcome on with [`Outcome::map_built`] instead of a converter of its own.
//!
//! A result that is not `Built` carries a reason for people: the compiler's first error, the
//! limit that was hit ("limit 768 MiB for the whole build"), what the node could not do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a build ended, without its details: the stored and displayed kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Binaries were built, packed and attested.
    Built,
    /// The crate (or this target) has no binaries to build.
    NoBinaries,
    /// The build failed: a compiler error, a failing build script, a refused source, or a
    /// per-process limit (file size, process count) named in the reason.
    BuildFailed,
    /// A phase ran past its wall-clock or CPU limit.
    TimedOut,
    /// The build ran out of memory.
    OutOfMemory,
    /// The build printed more than the output cap.
    OutputTooLarge,
    /// The build wrote more to disk than allowed.
    DiskLimit,
    /// The downloaded `.crate` does not match the index checksum.
    SourceChecksumMismatch,
    /// The crate's `rust-version` is above the builder's toolchain: nothing was built, and it
    /// is not the crate's fault (the task should not have been given to this toolchain).
    NeedsNewerToolchain,
    /// The builder failed for its own reasons; never held against the crate.
    NodeError,
}

impl OutcomeKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [OutcomeKind] = &[
        OutcomeKind::Built,
        OutcomeKind::NoBinaries,
        OutcomeKind::BuildFailed,
        OutcomeKind::TimedOut,
        OutcomeKind::OutOfMemory,
        OutcomeKind::OutputTooLarge,
        OutcomeKind::DiskLimit,
        OutcomeKind::SourceChecksumMismatch,
        OutcomeKind::NeedsNewerToolchain,
        OutcomeKind::NodeError,
    ];

    /// The text form, as stored, sent and shown (`snake_case`).
    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Built => "built",
            OutcomeKind::NoBinaries => "no_binaries",
            OutcomeKind::BuildFailed => "build_failed",
            OutcomeKind::TimedOut => "timed_out",
            OutcomeKind::OutOfMemory => "out_of_memory",
            OutcomeKind::OutputTooLarge => "output_too_large",
            OutcomeKind::DiskLimit => "disk_limit",
            OutcomeKind::SourceChecksumMismatch => "source_checksum_mismatch",
            OutcomeKind::NeedsNewerToolchain => "needs_newer_toolchain",
            OutcomeKind::NodeError => "node_error",
        }
    }

    /// Words for people, as the first part of an outcome's line.
    pub const fn label(self) -> &'static str {
        match self {
            OutcomeKind::Built => "built",
            OutcomeKind::NoBinaries => "no binaries",
            OutcomeKind::BuildFailed => "build failed",
            OutcomeKind::TimedOut => "timed out",
            OutcomeKind::OutOfMemory => "out of memory",
            OutcomeKind::OutputTooLarge => "output too large",
            OutcomeKind::DiskLimit => "disk limit",
            OutcomeKind::SourceChecksumMismatch => "source checksum mismatch",
            OutcomeKind::NeedsNewerToolchain => "needs a newer toolchain",
            OutcomeKind::NodeError => "node error",
        }
    }

    /// Says the crate does not build (as opposed to built, no binaries, or the builder's own
    /// trouble).
    pub const fn is_build_failure(self) -> bool {
        matches!(
            self,
            OutcomeKind::BuildFailed
                | OutcomeKind::TimedOut
                | OutcomeKind::OutOfMemory
                | OutcomeKind::OutputTooLarge
                | OutcomeKind::DiskLimit
                | OutcomeKind::SourceChecksumMismatch
        )
    }

    /// Says something about the builder, not the crate: never counted for or against it.
    pub const fn is_builder_fault(self) -> bool {
        matches!(
            self,
            OutcomeKind::NodeError | OutcomeKind::NeedsNewerToolchain
        )
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no outcome kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome kind {0:?}")]
pub struct UnknownOutcomeKind(pub String);

impl FromStr for OutcomeKind {
    type Err = UnknownOutcomeKind;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        OutcomeKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownOutcomeKind(text.to_owned()))
    }
}

/// How a build ended. `B` is what a built result carries in the layer at hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<B> {
    /// Built.
    Built(B),
    /// Not built: which kind (never [`OutcomeKind::Built`]) and why.
    Ended(Ended),
}

/// A build that produced no artifact: its kind and the reason, for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EndedFields")]
pub struct Ended {
    kind: OutcomeKind,
    /// Why, in a line or two.
    pub reason: String,
}

/// [`Ended::new`] was given [`OutcomeKind::Built`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a built outcome needs what was built")]
pub struct BuiltWithoutPayload;

/// [`Ended`] as it arrives, checked by [`Ended::new`] before it is one.
#[derive(Deserialize)]
struct EndedFields {
    kind: OutcomeKind,
    reason: String,
}

impl TryFrom<EndedFields> for Ended {
    type Error = BuiltWithoutPayload;
    fn try_from(fields: EndedFields) -> Result<Self, Self::Error> {
        Ended::new(fields.kind, fields.reason)
    }
}

impl Ended {
    /// An ending of `kind`, which must not be [`OutcomeKind::Built`].
    pub fn new(kind: OutcomeKind, reason: impl Into<String>) -> Result<Self, BuiltWithoutPayload> {
        if kind == OutcomeKind::Built {
            return Err(BuiltWithoutPayload);
        }
        Ok(Ended {
            kind,
            reason: reason.into(),
        })
    }

    /// Its kind (never [`OutcomeKind::Built`]).
    pub fn kind(&self) -> OutcomeKind {
        self.kind
    }
}

macro_rules! endings {
    ($($(#[$meta:meta])* $fn:ident => $kind:ident,)*) => {
        impl<B> Outcome<B> {
            $(
                $(#[$meta])*
                pub fn $fn(reason: impl Into<String>) -> Self {
                    Outcome::Ended(Ended { kind: OutcomeKind::$kind, reason: reason.into() })
                }
            )*
        }
    };
}

endings! {
    /// No binaries, and why.
    no_binaries => NoBinaries,
    /// A failed build, and why (cargo's first error, a refused source, a per-process limit).
    build_failed => BuildFailed,
    /// Ran past a time limit (named in the reason).
    timed_out => TimedOut,
    /// Ran out of memory (the limit, when there is one, in the reason).
    out_of_memory => OutOfMemory,
    /// Printed more than the output cap (named in the reason).
    output_too_large => OutputTooLarge,
    /// Wrote more to disk than the limit (named in the reason).
    disk_limit => DiskLimit,
    /// The `.crate` is not what the index says.
    source_checksum_mismatch => SourceChecksumMismatch,
    /// The crate needs a newer Rust than the builder has.
    needs_newer_toolchain => NeedsNewerToolchain,
    /// The builder's own trouble.
    node_error => NodeError,
}

impl<B> Outcome<B> {
    /// Its kind.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Built(_) => OutcomeKind::Built,
            Outcome::Ended(ended) => ended.kind,
        }
    }

    /// The reason, when it was not built.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Built(_) => None,
            Outcome::Ended(ended) => Some(&ended.reason),
        }
    }

    /// The kind and reason of an outcome that was not built, for matching on both:
    /// `match outcome.ended() { Some((OutcomeKind::BuildFailed, reason)) => …, _ => … }`.
    pub fn ended(&self) -> Option<(OutcomeKind, &str)> {
        match self {
            Outcome::Built(_) => None,
            Outcome::Ended(ended) => Some((ended.kind, &ended.reason)),
        }
    }

    /// What was built, when it was.
    pub fn built(&self) -> Option<&B> {
        match self {
            Outcome::Built(built) => Some(built),
            Outcome::Ended(_) => None,
        }
    }

    /// The same outcome with the built payload turned into another layer's.
    pub fn map_built<C>(self, f: impl FnOnce(B) -> C) -> Outcome<C> {
        match self {
            Outcome::Built(built) => Outcome::Built(f(built)),
            Outcome::Ended(ended) => Outcome::Ended(ended),
        }
    }

    /// Like [`Outcome::map_built`], for a conversion that may fail.
    pub fn try_map_built<C, E>(self, f: impl FnOnce(B) -> Result<C, E>) -> Result<Outcome<C>, E> {
        Ok(match self {
            Outcome::Built(built) => Outcome::Built(f(built)?),
            Outcome::Ended(ended) => Outcome::Ended(ended),
        })
    }

    /// Says something about the builder rather than the crate.
    pub fn is_builder_fault(&self) -> bool {
        self.kind().is_builder_fault()
    }
}

impl<B: fmt::Display> fmt::Display for Outcome<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Built(built) => write!(f, "built {built}"),
            Outcome::Ended(ended) if ended.reason.is_empty() => f.write_str(ended.kind.label()),
            Outcome::Ended(ended) => write!(f, "{}: {}", ended.kind.label(), ended.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_text() {
        for kind in OutcomeKind::ALL {
            assert_eq!(kind.as_str().parse::<OutcomeKind>(), Ok(*kind));
            let json = serde_json::to_string(kind).expect("serializes");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert!("built ".parse::<OutcomeKind>().is_err());
    }

    #[test]
    fn only_builder_faults_spare_the_crate_and_failures_are_failures() {
        let faults: Vec<_> = OutcomeKind::ALL
            .iter()
            .filter(|k| k.is_builder_fault())
            .collect();
        assert_eq!(
            faults,
            [&OutcomeKind::NeedsNewerToolchain, &OutcomeKind::NodeError]
        );
        assert!(OutcomeKind::DiskLimit.is_build_failure());
        assert!(!OutcomeKind::NoBinaries.is_build_failure());
        assert!(!OutcomeKind::Built.is_build_failure());
    }

    #[test]
    fn an_ending_is_never_built_and_layers_map_only_the_payload() {
        assert_eq!(
            Ended::new(OutcomeKind::Built, "x"),
            Err(BuiltWithoutPayload)
        );
        let failed: Outcome<u32> = Outcome::build_failed("error[E0308]: mismatched types");
        assert_eq!(failed.kind(), OutcomeKind::BuildFailed);
        assert_eq!(
            failed.to_string(),
            "build failed: error[E0308]: mismatched types"
        );
        let mapped: Outcome<String> = failed.clone().map_built(|n| n.to_string());
        assert_eq!(mapped.reason(), failed.reason());
        let built: Outcome<u32> = Outcome::Built(7);
        assert_eq!(built.map_built(|n| n * 2), Outcome::Built(14));
        let json = serde_json::to_string(&Outcome::<u32>::disk_limit("more than 48 MiB written"))
            .expect("serializes");
        let back: Outcome<u32> = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.kind(), OutcomeKind::DiskLimit);
        let forged = r#"{"ended":{"kind":"built","reason":"no payload"}}"#;
        assert!(serde_json::from_str::<Outcome<u32>>(forged).is_err());
    }
}
