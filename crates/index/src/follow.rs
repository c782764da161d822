//! The long-running loop around a follower: poll every `interval`, send each
//! [`CrateUpdate`] to a channel, back off while the index is unreachable, stop promptly when
//! cancelled.
//!
//! Nothing here ends the loop but cancellation or the receiver going away: errors are logged
//! and retried. Backoff doubles from `initial_backoff` up to `max_backoff` and resets after
//! the first round that reaches the index.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sparse::SparseFollower;
use crate::versions::CrateUpdate;
use crate::watch::WatchList;

/// How often to poll and how to back off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowOptions {
    /// The time between the start of one round and the next.
    pub interval: Duration,
    /// The first wait after a round that could not reach the index.
    pub initial_backoff: Duration,
    /// The longest wait between attempts while the index is unreachable.
    pub max_backoff: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Why a follow loop returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowEnd {
    /// The cancellation token fired.
    Cancelled,
    /// The update receiver was dropped: nobody is listening any more.
    ReceiverClosed,
}

/// Capped exponential backoff.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Backoff {
    pub(crate) fn new(options: &FollowOptions) -> Self {
        Self {
            initial: options.initial_backoff,
            max: options.max_backoff.max(options.initial_backoff),
            current: None,
        }
    }

    /// Records a failed round; returns how long to wait before the next.
    pub(crate) fn failed(&mut self) -> Duration {
        let next = match self.current {
            None => self.initial,
            Some(d) => d.saturating_mul(2).min(self.max),
        };
        self.current = Some(next);
        next
    }

    pub(crate) fn succeeded(&mut self) {
        self.current = None;
    }

    pub(crate) fn is_backing_off(&self) -> bool {
        self.current.is_some()
    }
}

/// Sends `updates` in order; `Some` when the loop must end instead.
pub(crate) async fn send_all(
    tx: &mpsc::Sender<CrateUpdate>,
    updates: Vec<CrateUpdate>,
    cancel: &CancellationToken,
) -> Option<FollowEnd> {
    for update in updates {
        tokio::select! {
            () = cancel.cancelled() => return Some(FollowEnd::Cancelled),
            sent = tx.send(update) => if sent.is_err() {
                return Some(FollowEnd::ReceiverClosed);
            },
        }
    }
    None
}

impl SparseFollower {
    /// Follows the crates in `watch` until `cancel` fires or `updates`' receiver is dropped.
    /// Crates added to the list while this runs are fetched at once; crates removed are
    /// forgotten at the next round. See the module docs.
    pub async fn follow(
        mut self,
        watch: WatchList,
        updates: mpsc::Sender<CrateUpdate>,
        options: FollowOptions,
        cancel: CancellationToken,
    ) -> FollowEnd {
        let mut changed = watch.subscribe();
        let mut backoff = Backoff::new(&options);
        loop {
            changed.borrow_and_update();
            let names = watch.names();
            let lowered: BTreeSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            self.retain(|key| lowered.contains(key));

            let reached = tokio::select! {
                () = cancel.cancelled() => return FollowEnd::Cancelled,
                reached = self.round(&names, &updates, &cancel) => reached,
            };
            let wait = match reached {
                Err(end) => return end,
                Ok(true) => {
                    backoff.succeeded();
                    options.interval
                }
                Ok(false) => {
                    let wait = backoff.failed();
                    tracing::warn!(
                        "index {} unreachable; retrying in {wait:?}",
                        self.index_url()
                    );
                    wait
                }
            };

            let deadline = Instant::now() + wait;
            let mut polled: BTreeSet<String> = names.into_iter().collect();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return FollowEnd::Cancelled,
                    () = tokio::time::sleep_until(deadline) => break,
                    // The sender lives in `watch`, which we hold: this never errs.
                    _ = changed.changed() => {
                        let added: Vec<String> = watch
                            .names()
                            .into_iter()
                            .filter(|n| !polled.contains(n))
                            .collect();
                        if added.is_empty() || backoff.is_backing_off() {
                            continue;
                        }
                        tracing::info!("watch list grew; fetching {added:?} now");
                        polled.extend(added.iter().cloned());
                        let round = tokio::select! {
                            () = cancel.cancelled() => return FollowEnd::Cancelled,
                            round = self.round(&added, &updates, &cancel) => round,
                        };
                        if let Err(end) = round {
                            return end;
                        }
                    }
                }
            }
        }
    }

    /// One poll of `names`, its updates sent. `Ok(reached)` tells whether the index answered.
    async fn round(
        &mut self,
        names: &[String],
        updates: &mpsc::Sender<CrateUpdate>,
        cancel: &CancellationToken,
    ) -> Result<bool, FollowEnd> {
        if names.is_empty() {
            return Ok(true);
        }
        let report = match self.poll(names).await {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!("polling {}: {e}", self.index_url());
                return Ok(false);
            }
        };
        let reached = !report.index_unreachable();
        if reached {
            for (name, error) in &report.errors {
                tracing::warn!(krate = %name, "fetching the index entry of {name}: {error}");
            }
            for name in &report.not_found {
                tracing::warn!(krate = %name, "{name} is not in the index");
            }
        }
        tracing::debug!(
            updated = report.updates.len(),
            unchanged = report.unchanged.len(),
            not_found = report.not_found.len(),
            errors = report.errors.len(),
            "polled {}",
            self.index_url()
        );
        match send_all(updates, report.updates, cancel).await {
            Some(end) => Err(end),
            None => Ok(reached),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut backoff = Backoff::new(&FollowOptions {
            interval: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        });
        let waits: Vec<u64> = (0..5).map(|_| backoff.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert!(backoff.is_backing_off());
        backoff.succeeded();
        assert!(!backoff.is_backing_off());
        assert_eq!(backoff.failed(), Duration::from_secs(1));
    }
}
