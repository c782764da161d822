//! Download counts, kept in memory and written to the store in batches.
//!
//! Counting each download with its own store transaction made every `GET` of an artifact a
//! write: anyone could load the database by downloading in a loop. Instead a download adds
//! one to an in-memory count per artifact and UTC day, and [`DownloadCounts::flush`] writes
//! them all in one transaction: every [`FLUSH_INTERVAL`] from [`crate::serve`], at once when
//! [`MAX_PENDING`] artifact-days wait, and when the server stops. A crash loses at most the
//! counts of the last interval; counts are statistics, the artifacts are untouched.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use buildsrs_keys::Blake3Hash;
use buildsrs_store::{Store, StoreError};
use jiff::Timestamp;

/// How often counts are written while the server runs.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// How many artifact-days may wait in memory before a download writes them at once.
pub const MAX_PENDING: usize = 10_000;

/// The counts not yet written, by artifact and unix day.
#[derive(Debug, Default)]
pub struct DownloadCounts {
    pending: Mutex<HashMap<(Blake3Hash, i64), u64>>,
}

impl DownloadCounts {
    /// Counts one download at `now`; says whether so many artifact-days wait that they
    /// should be written now.
    pub fn add(&self, hash: Blake3Hash, now: Timestamp) -> bool {
        let day = now.as_second().div_euclid(86_400);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry((hash, day)).or_default() += 1;
        pending.len() >= MAX_PENDING
    }

    /// How many downloads wait to be written.
    pub fn pending(&self) -> u64 {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.values().sum()
    }

    /// Writes every waiting count in one store transaction. On failure the counts are kept
    /// for the next flush.
    pub async fn flush(&self, store: &Store) -> Result<u64, StoreError> {
        let batch: Vec<(Blake3Hash, i64, u64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .drain()
                .map(|((hash, day), count)| (hash, day, count))
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_downloads(batch.clone()).await {
            Ok(recorded) => Ok(recorded),
            Err(error) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (hash, day, count) in batch {
                    *pending.entry((hash, day)).or_default() += count;
                }
                Err(error)
            }
        }
    }
}
