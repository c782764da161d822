//! What can go wrong in the store, as callers need to tell it apart.
//!
//! Every operation is one transaction, so any error means nothing was changed. The variants
//! are what a caller acts on: `NotFound`/`Invalid` become 404/400 answers, `Conflict`,
//! `StaleEpoch` and `LeaseEnded` tell a node to drop its work, `NotApproved` tells a volunteer
//! to wait for an operator, and `Unavailable`/`Backend` are the operator's problem.

use std::error::Error as StdError;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed. Whatever the variant, the operation changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The input was refused before anything was written.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The operation does not fit the current state (e.g. approving a revoked builder).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The submitter's own check of a result against its leased task (see
    /// [`crate::Store::submit_checked`]) refused it: for example an attestation that describes
    /// another crate.
    #[error("refused: {0}")]
    Refused(String),
    /// A lease operation named an epoch other than the lease's own: the caller's lease token
    /// is not the one the store handed out.
    #[error("lease {lease_id}: stale fencing epoch {given}, the lease has epoch {current}")]
    StaleEpoch {
        /// The lease.
        lease_id: i64,
        /// The epoch the caller sent.
        given: i64,
        /// The lease's epoch.
        current: i64,
    },
    /// The lease is no longer active (expired, completed or cancelled); the node should stop
    /// working on it. A result for it is still accepted and recorded.
    #[error("lease {lease_id} is no longer active ({state})")]
    LeaseEnded {
        /// The lease.
        lease_id: i64,
        /// Why it ended: `expired`, `completed` or `cancelled`.
        state: String,
    },
    /// The builder is not approved, so it gets no work.
    #[error("builder {key} is {status}; only approved builders get work")]
    NotApproved {
        /// The builder's public key.
        key: String,
        /// Its status.
        status: String,
    },
    /// The database was migrated by a newer buildsrs than this one.
    #[error(
        "database schema version {found} is newer than this buildsrs knows ({known}); \
         upgrade buildsrs before using this database"
    )]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A row held something this code never writes (hand-edited or corrupted database).
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
    /// The database could not be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused or failed an operation.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt(message.into())
    }
}

impl From<buildsrs_domain::UnknownOutcomeKind> for StoreError {
    fn from(error: buildsrs_domain::UnknownOutcomeKind) -> Self {
        StoreError::corrupt(error.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Backend(Box::new(error))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.is_closed() {
            return Self::Unavailable(error.to_string());
        }
        Self::Backend(Box::new(error))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => Self::Unavailable(other.to_string()),
        }
    }
}
