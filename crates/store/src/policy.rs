//! The scheduling policy: quorum, lease limits, backoff, retry limits.
//!
//! The policy is configuration of the coordinator process, handed to [`crate::Store::open`].
//! Per-task numbers that must not change under a task's feet (its quorum) are copied into the
//! task when it is planned; the others apply to every operation as they come. What to build
//! (targets and toolchains) lives in tables instead, so that the admin UI can change it.

use std::time::Duration;

use crate::error::{Result, StoreError};

/// How tasks are planned, leased, retried and decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Distinct approved builders that must agree for a decision. Copied into each task.
    pub quorum: u32,
    /// Leases allowed beyond the results still wanted, so one slow or dead builder does not
    /// hold a task up. A fresh task has at most `quorum + extra_leases` concurrent leases.
    pub extra_leases: u32,
    /// Results wanted beyond `quorum` when builders disagree. After that the mismatch is final.
    pub max_extra_builds: u32,
    /// How long a lease lasts without renewal.
    pub lease_duration: Duration,
    /// How long a lease can last at all, renewals included: a builder cannot hold a task
    /// forever by renewing it. A renewal's deadline never passes `granted + this`.
    pub max_lease_lifetime: Duration,
    /// Backoff after the first node-side failure; doubles with each further one.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// Node-side failures (expired leases and node errors) after which a task stops being
    /// retried. It is cancelled with the reason; it is never marked failed for this.
    pub max_node_failures: u32,
    /// Plan tasks for every crate's new versions (full-index mode), not only watched crates'.
    pub plan_all_crates: bool,
    /// Priority of newly planned tasks (higher is leased first).
    pub default_priority: i64,
    /// The most bytes kept of a build log (the end of it).
    pub max_log_bytes: usize,
    /// The most builders waiting for approval at once; hellos from further new keys are
    /// refused until an operator approves or revokes some.
    pub max_pending_builders: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            quorum: 2,
            extra_leases: 1,
            max_extra_builds: 2,
            lease_duration: Duration::from_secs(30 * 60),
            // Nodes stop a build phase after 30 minutes by default; four hours is ample.
            max_lease_lifetime: Duration::from_secs(4 * 60 * 60),
            backoff_base: Duration::from_secs(60),
            backoff_max: Duration::from_secs(6 * 60 * 60),
            max_node_failures: 5,
            plan_all_crates: false,
            default_priority: 0,
            max_log_bytes: 64 * 1024,
            max_pending_builders: 1_000,
        }
    }
}

impl Policy {
    /// Refuses settings the rules cannot work with.
    pub fn validate(&self) -> Result<()> {
        let refuse = |message: &str| Err(StoreError::invalid(format!("policy: {message}")));
        if !(1..=16).contains(&self.quorum) {
            return refuse("quorum must be between 1 and 16");
        }
        if self.extra_leases > 16 || self.max_extra_builds > 16 {
            return refuse("extra_leases and max_extra_builds must be at most 16");
        }
        if self.lease_duration < Duration::from_secs(1) {
            return refuse("lease_duration must be at least one second");
        }
        if self.max_lease_lifetime < self.lease_duration {
            return refuse("max_lease_lifetime must not be below lease_duration");
        }
        if self.max_node_failures == 0 {
            return refuse("max_node_failures must be at least 1");
        }
        if self.backoff_max < self.backoff_base {
            return refuse("backoff_max must not be below backoff_base");
        }
        Ok(())
    }

    /// Milliseconds a lease lasts.
    pub(crate) fn lease_millis(&self) -> i64 {
        duration_millis(self.lease_duration)
    }

    /// Milliseconds a lease can last at all.
    pub(crate) fn max_lease_lifetime_millis(&self) -> i64 {
        duration_millis(self.max_lease_lifetime)
    }

    /// Milliseconds to wait before leasing a task again after its `failures`-th node-side
    /// failure: `backoff_base * 2^(failures-1)`, at most `backoff_max`.
    pub(crate) fn backoff_millis(&self, failures: u32) -> i64 {
        let base = duration_millis(self.backoff_base);
        let max = duration_millis(self.backoff_max);
        let shift = failures.saturating_sub(1).min(32);
        base.saturating_mul(1_i64 << shift).min(max)
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = Policy {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            ..Policy::default()
        };
        assert_eq!(policy.backoff_millis(1), 10_000);
        assert_eq!(policy.backoff_millis(2), 20_000);
        assert_eq!(policy.backoff_millis(3), 40_000);
        assert_eq!(policy.backoff_millis(4), 60_000);
        assert_eq!(policy.backoff_millis(400), 60_000);
    }

    #[test]
    fn nonsense_policies_are_refused() {
        assert!(Policy::default().validate().is_ok());
        for bad in [
            Policy {
                quorum: 0,
                ..Policy::default()
            },
            Policy {
                max_node_failures: 0,
                ..Policy::default()
            },
            Policy {
                lease_duration: Duration::ZERO,
                ..Policy::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
