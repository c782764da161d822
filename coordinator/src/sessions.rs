//! Who said hello: what the coordinator knows of connected builders beyond the store.
//!
//! [`Sessions`] lives in memory only (nodes say hello again on every connection, so a
//! restart loses nothing): [`crate::jobs`] fills it on hello and asks it whether a node said
//! hello; the publisher asks it where attesting builders serve blobs, and [`FeedProviders`]
//! lists those addresses in the feed mirrors follow. The network actor removes a session
//! when its peer's last connection closes, so sessions are bounded by the connections the
//! coordinator admits, not by every builder it ever heard from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use buildsrs_keys::PublicKey;
use buildsrs_protocol::{BlobAddress, Hello};
use jiff::Timestamp;

/// What the coordinator knows of a connected node beyond the store.
#[derive(Clone, Debug)]
pub struct Session {
    /// Its hello.
    pub hello: Hello,
    /// When it said hello.
    pub since: Timestamp,
}

/// Where connected builders serve blobs, by key. Shared with the
/// publisher, which fetches verified artifacts from the builders that attested them.
#[derive(Clone, Debug, Default)]
pub struct Sessions(Arc<Mutex<HashMap<PublicKey, Session>>>);

impl Sessions {
    pub(crate) fn insert(&self, key: PublicKey, session: Session) {
        self.lock().insert(key, session);
    }

    /// Forgets a builder that left.
    pub(crate) fn remove(&self, key: &PublicKey) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Session>> {
        // A panic while holding this lock cannot leave the map half-updated (every use is a
        // single insert/get), so a poisoned lock is still good to use.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hello a builder sent, if it said hello on a connection it still has.
    pub fn get(&self, key: &PublicKey) -> Option<Session> {
        self.lock().get(key).cloned()
    }

    /// The blob address of a builder, if known.
    pub fn blob_address(&self, key: &PublicKey) -> Option<BlobAddress> {
        self.get(key).map(|s| s.hello.blobs)
    }

    /// The blob addresses of those of `keys` that said hello, in the order given.
    pub fn blob_addresses(&self, keys: &[PublicKey]) -> Vec<BlobAddress> {
        let sessions = self.lock();
        keys.iter()
            .filter_map(|k| sessions.get(k).map(|s| s.hello.blobs.clone()))
            .collect()
    }

    /// How many connected builders said hello.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no builder said hello yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The blob addresses the feed of verified artifacts lists for mirrors: the coordinator's
/// own blob store first (it holds every artifact it published; set once the network is up),
/// then the attesting builders that said hello.
#[derive(Clone, Debug, Default)]
pub struct FeedProviders {
    /// Who said hello, with their blob addresses.
    pub sessions: Sessions,
    /// The coordinator's own blob address.
    pub own: Arc<OnceLock<BlobAddress>>,
}

impl buildsrs_web::BlobProviders for FeedProviders {
    fn addresses(&self, attesters: &[PublicKey]) -> Vec<buildsrs_web::BlobAddress> {
        self.own
            .get()
            .cloned()
            .into_iter()
            .chain(self.sessions.blob_addresses(attesters))
            .collect()
    }
}
