//! The decision rules, as pure functions: the same code decides on both backends.
//!
//! A task's *counted* results are those of approved builders, at most one per builder (the
//! database enforces the "one per builder" part with a unique index) and one per operator
//! (keys the admin approved as run by one operator count once: submit does not count a second
//! key's result, and the rules keep only an operator's earliest, should two ever be
//! counted). Only so does a quorum mean that many independent parties agree. They fall into
//! classes: an artifact (BLAKE3 hash and size), "no binaries", or "does not build" (build
//! failed, timed out, out of memory, output too large, source checksum mismatch). Node errors
//! are never counted.
//!
//! 1. A class with `quorum` results wins: an artifact → *verified*, "no binaries" →
//!    *no binaries*, "does not build" → *failed* with a reason. If several classes reach
//!    quorum (only possible when a revocation re-decides), the largest wins, then the earliest.
//!    Builders in other classes are *outvoted*.
//! 2. Otherwise, if the counted results disagree, the task is a *mismatch*: it wants enough
//!    extra results for the leading class to reach quorum, but never more than
//!    `quorum + max_extra_builds` in total. When the results wanted are all in and still no
//!    class has quorum, the mismatch is final.
//! 3. Otherwise the task is pending: it wants more results.

use std::collections::BTreeMap;

use buildsrs_keys::{ArtifactId, Blake3Hash};

use crate::model::OutcomeKind;

/// One counted result, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CountedResult {
    /// Recorded result id: earlier results win ties.
    pub attestation_id: i64,
    /// Who.
    pub builder_id: i64,
    /// Who runs that builder: its operator's name, or its own key's text when it is its own
    /// operator (the two never coincide: see `ops::OPERATOR_OF_B`).
    pub operator: String,
    /// What they say.
    pub class: Class,
    /// Their reason, for failures.
    pub reason: Option<String>,
    /// Their exact kind, for failure reasons.
    pub kind: OutcomeKind,
}

/// What a result says about the task; results agree when their classes are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Class {
    Built { hash: Blake3Hash, size: u64 },
    NoBinaries,
    DoesNotBuild,
}

impl Class {
    /// The class of a result kind; `None` for the builder's own faults, which never count.
    pub(crate) fn of(kind: OutcomeKind, artifact: Option<ArtifactId>) -> Option<Class> {
        match kind {
            OutcomeKind::Built => artifact.map(|a| Class::Built {
                hash: a.blake3,
                size: a.size,
            }),
            OutcomeKind::NoBinaries => Some(Class::NoBinaries),
            kind if kind.is_builder_fault() => None,
            _ => Some(Class::DoesNotBuild),
        }
    }

    fn describe(&self) -> String {
        match self {
            Class::Built { hash, size } => {
                let hex = hash.to_hex();
                format!("artifact {}… ({size} bytes)", &hex[..12])
            }
            Class::NoBinaries => "no binaries".to_owned(),
            Class::DoesNotBuild => "does not build".to_owned(),
        }
    }
}

/// What the rules decide for a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// More results wanted.
    Pending { wanted: u32 },
    /// A class reached quorum.
    Decided {
        class: Class,
        /// Failure reason (for "does not build").
        reason: Option<String>,
        /// Builders in the winning class.
        winners: Vec<i64>,
        /// Builders in other classes.
        losers: Vec<i64>,
    },
    /// Results disagree.
    Mismatch {
        wanted: u32,
        exhausted: bool,
        summary: String,
    },
}

/// Decides a task from its counted results.
///
/// `wanted` is how many results the task wants so far (at least `quorum`); `max_total` is
/// `quorum + max_extra_builds`.
pub(crate) fn decide(
    quorum: u32,
    wanted: u32,
    max_total: u32,
    results: &[CountedResult],
) -> Verdict {
    let quorum = quorum.max(1);
    let wanted = wanted.max(quorum);

    // One result per builder and per operator (the earliest), in case a caller hands in
    // more: a quorum is that many operators, however many keys each runs.
    let mut builders = std::collections::BTreeSet::new();
    let mut operators = std::collections::BTreeSet::new();
    let mut results: Vec<&CountedResult> = results.iter().collect();
    results.sort_by_key(|r| r.attestation_id);
    results.retain(|r| builders.insert(r.builder_id) && operators.insert(r.operator.as_str()));
    let counted = u32::try_from(results.len()).unwrap_or(u32::MAX);

    // Group by class, remembering each group's earliest result for tie-breaking.
    let mut groups: BTreeMap<&Class, Vec<&CountedResult>> = BTreeMap::new();
    for result in &results {
        groups.entry(&result.class).or_default().push(result);
    }
    let mut ranked: Vec<(&Class, Vec<&CountedResult>)> = groups.into_iter().collect();
    ranked.sort_by_key(|(_, members)| {
        (
            std::cmp::Reverse(members.len()),
            members.first().map_or(i64::MAX, |m| m.attestation_id),
        )
    });

    let quorum_len = quorum as usize;
    // Rule 1: artifacts first, then "no binaries", then "does not build".
    let winner = ranked
        .iter()
        .filter(|(_, members)| members.len() >= quorum_len)
        .min_by_key(|(class, members)| {
            let rank = match class {
                Class::Built { .. } => 0,
                Class::NoBinaries => 1,
                Class::DoesNotBuild => 2,
            };
            (
                rank,
                std::cmp::Reverse(members.len()),
                members.first().map_or(i64::MAX, |m| m.attestation_id),
            )
        });
    if let Some((class, members)) = winner {
        let winners: Vec<i64> = members.iter().map(|m| m.builder_id).collect();
        let losers = results
            .iter()
            .filter(|r| &r.class != *class)
            .map(|r| r.builder_id)
            .collect();
        let reason = (**class == Class::DoesNotBuild).then(|| failure_reason(members));
        return Verdict::Decided {
            class: (*class).clone(),
            reason,
            winners,
            losers,
        };
    }

    // Rule 2: disagreement.
    if ranked.len() >= 2 {
        let best = ranked.first().map_or(0, |(_, m)| m.len());
        let needed = u32::try_from(quorum_len.saturating_sub(best)).unwrap_or(u32::MAX);
        let target = counted.saturating_add(needed).min(max_total.max(quorum));
        let wanted = wanted.max(target);
        let summary = ranked
            .iter()
            .map(|(class, members)| format!("{} ×{}", class.describe(), members.len()))
            .collect::<Vec<_>>()
            .join(", ");
        return Verdict::Mismatch {
            wanted,
            exhausted: counted >= wanted,
            summary: format!("builders disagree: {summary}"),
        };
    }

    // Rule 3.
    Verdict::Pending { wanted }
}

/// The reason shown for a "does not build" decision: the kinds reported and the first
/// builder's own words.
fn failure_reason(members: &[&CountedResult]) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for member in members {
        *kinds.entry(member.kind.as_str()).or_default() += 1;
    }
    let kinds = kinds
        .iter()
        .map(|(kind, n)| format!("{} ×{n}", kind.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ");
    match members.iter().find_map(|m| m.reason.as_deref()) {
        Some(words) if !words.is_empty() => format!("{kinds}: {words}"),
        _ => kinds,
    }
}

/// Keeps at most `max` bytes of a build log: the end, where the errors are.
pub(crate) fn cap_log(log: &[u8], max: usize) -> &[u8] {
    &log[log.len().saturating_sub(max)..]
}

/// Longest free-text reason kept.
pub(crate) const MAX_REASON_CHARS: usize = 2_000;

/// Cuts a free-text reason to [`MAX_REASON_CHARS`] characters.
pub(crate) fn cap_reason(reason: &str) -> String {
    reason.chars().take(MAX_REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A builder that is its own operator.
    fn own(builder: i64) -> String {
        format!("ed25519:{builder}")
    }

    fn built(id: i64, builder: i64, byte: u8) -> CountedResult {
        CountedResult {
            attestation_id: id,
            builder_id: builder,
            operator: own(builder),
            class: Class::Built {
                hash: Blake3Hash::from_bytes([byte; 32]),
                size: 100,
            },
            reason: None,
            kind: OutcomeKind::Built,
        }
    }

    fn failed(id: i64, builder: i64, kind: OutcomeKind) -> CountedResult {
        CountedResult {
            attestation_id: id,
            builder_id: builder,
            operator: own(builder),
            class: Class::DoesNotBuild,
            reason: Some("error[E0425]".to_owned()),
            kind,
        }
    }

    #[test]
    fn agreement_verifies_and_names_the_outvoted() {
        let verdict = decide(
            2,
            3,
            4,
            &[built(1, 10, 1), built(2, 11, 2), built(3, 12, 1)],
        );
        let Verdict::Decided {
            class,
            winners,
            losers,
            ..
        } = verdict
        else {
            panic!("expected a decision, got {verdict:?}");
        };
        assert!(matches!(class, Class::Built { .. }));
        assert_eq!(winners, vec![10, 12]);
        assert_eq!(losers, vec![11]);
    }

    #[test]
    fn disagreement_wants_extra_builds_up_to_the_limit() {
        assert_eq!(
            decide(2, 2, 4, &[built(1, 10, 1), built(2, 11, 2)]),
            Verdict::Mismatch {
                wanted: 3,
                exhausted: false,
                summary: decide_summary(&[built(1, 10, 1), built(2, 11, 2)]),
            }
        );
        let three = [built(1, 10, 1), built(2, 11, 2), built(3, 12, 3)];
        assert!(matches!(
            decide(2, 3, 4, &three),
            Verdict::Mismatch {
                wanted: 4,
                exhausted: false,
                ..
            }
        ));
        let four = [
            built(1, 10, 1),
            built(2, 11, 2),
            built(3, 12, 3),
            built(4, 13, 4),
        ];
        assert!(matches!(
            decide(2, 4, 4, &four),
            Verdict::Mismatch {
                wanted: 4,
                exhausted: true,
                ..
            }
        ));
    }

    fn decide_summary(results: &[CountedResult]) -> String {
        match decide(2, 2, 4, results) {
            Verdict::Mismatch { summary, .. } => summary,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_need_quorum_and_give_a_reason() {
        assert_eq!(
            decide(2, 2, 4, &[failed(1, 10, OutcomeKind::BuildFailed)]),
            Verdict::Pending { wanted: 2 }
        );
        let verdict = decide(
            2,
            2,
            4,
            &[
                failed(1, 10, OutcomeKind::BuildFailed),
                failed(2, 11, OutcomeKind::TimedOut),
            ],
        );
        let Verdict::Decided { class, reason, .. } = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(class, Class::DoesNotBuild);
        assert_eq!(
            reason.as_deref(),
            Some("build failed ×1, timed out ×1: error[E0425]")
        );
    }

    #[test]
    fn a_builder_counts_once() {
        assert_eq!(
            decide(2, 2, 4, &[built(1, 10, 1), built(2, 10, 1)]),
            Verdict::Pending { wanted: 2 }
        );
    }

    #[test]
    fn an_operator_counts_once_however_many_keys_it_runs() {
        let by = |mut result: CountedResult, operator: &str| {
            result.operator = operator.to_owned();
            result
        };
        let two_keys = [
            by(built(1, 10, 1), "mallory"),
            by(built(2, 11, 1), "mallory"),
        ];
        assert_eq!(decide(2, 2, 4, &two_keys), Verdict::Pending { wanted: 2 });
        let mut three = two_keys.to_vec();
        three.push(built(3, 12, 1));
        let Verdict::Decided { winners, .. } = decide(2, 2, 4, &three) else {
            panic!("{:?}", decide(2, 2, 4, &three));
        };
        assert_eq!(winners, vec![10, 12]);
    }

    #[test]
    fn log_keeps_the_tail() {
        assert_eq!(cap_log(b"0123456789", 4), b"6789");
        assert_eq!(cap_log(b"01", 4), b"01");
    }

    fn arb_result() -> impl Strategy<Value = (i64, u8)> {
        (0_i64..6, 0_u8..4)
    }

    proptest! {
        /// Whatever the results, a decision names `quorum` distinct builders of distinct
        /// operators that agree, and nobody is both a winner and a loser.
        #[test]
        fn decisions_rest_on_quorum_distinct_agreeing_operators(
            quorum in 1_u32..4,
            extra in 0_u32..3,
            raw in proptest::collection::vec(arb_result(), 0..10),
        ) {
            let results: Vec<CountedResult> = raw
                .iter()
                .enumerate()
                .map(|(i, (builder, class))| {
                    let id = i64::try_from(i).unwrap_or(0);
                    let mut result = if *class == 3 {
                        failed(id, *builder, OutcomeKind::BuildFailed)
                    } else {
                        built(id, *builder, *class)
                    };
                    // Builders 0 and 1 are one operator's keys, 2 and 3 another's.
                    result.operator = format!("operator-{}", builder / 2);
                    result
                })
                .collect();
            let operator_of = |builder: &i64| format!("operator-{}", builder / 2);
            match decide(quorum, quorum, quorum + extra, &results) {
                Verdict::Decided { winners, losers, .. } => {
                    let distinct: std::collections::BTreeSet<_> = winners.iter().collect();
                    prop_assert!(distinct.len() >= quorum as usize);
                    prop_assert_eq!(distinct.len(), winners.len());
                    let operators: std::collections::BTreeSet<_> =
                        winners.iter().map(operator_of).collect();
                    prop_assert_eq!(operators.len(), winners.len());
                    prop_assert!(losers.iter().all(|l| !winners.contains(l)));
                }
                Verdict::Mismatch { wanted, .. } => {
                    prop_assert!(wanted <= quorum + extra);
                }
                Verdict::Pending { wanted } => prop_assert_eq!(wanted, quorum),
            }
        }
    }
}
