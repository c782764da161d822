//! [`ArtifactStorage`]: the content-addressed blob and bundle store.

use std::fmt;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer, Url};
use object_store::{
    GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use crate::{StorageConfig, StorageError};

/// Blobs up to this size are stored with one conditional PUT; bigger ones are streamed as a
/// multipart upload in parts of this size. S3 wants parts of at least 5 MiB (except the last)
/// and at most 10 000 of them, so this allows blobs of up to ~78 GiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many parts of one multipart upload may be in flight at once. With the part being read
/// and the one being filled, one upload holds at most `(PARTS_IN_FLIGHT + 2) * PART_SIZE` of
/// memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Key prefix of blobs.
const BLOBS: &str = "blobs";
/// Key prefix of attestation bundles.
const ATTESTATIONS: &str = "attestations";

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PutOutcome {
    /// The object was written.
    Stored,
    /// A blob with this hash was already there; nothing was written.
    AlreadyPresent,
}

/// Verified artifacts in object storage, keyed by content hash: `blobs/<blake3 hex>` and
/// `attestations/<blake3 hex>.json`. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ArtifactStorage {
    store: Arc<dyn ObjectStore>,
    /// The same store as a URL signer, when it can presign (S3).
    signer: Option<Arc<dyn Signer>>,
}

impl fmt::Debug for ArtifactStorage {
    // The store's `Display` (e.g. `AmazonS3(bucket)`), not its whole configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactStorage")
            .field("store", &format_args!("{}", self.store))
            .finish()
    }
}

impl ArtifactStorage {
    /// Opens the storage `config` describes. `Local` creates its directory if needed and
    /// fsyncs every write; `S3` installs the TLS crypto provider
    /// ([`install_crypto_provider`](crate::install_crypto_provider)), addresses the bucket
    /// path-style and uses only the given credentials. Nothing is sent over the network here:
    /// a wrong endpoint or a missing bucket shows up on first use.
    pub fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        let (store, signer): (Arc<dyn ObjectStore>, Option<Arc<dyn Signer>>) = match config {
            StorageConfig::Local { root } => {
                std::fs::create_dir_all(root).map_err(|source| StorageError::Io {
                    op: "creating the storage directory",
                    path: root.clone(),
                    source,
                })?;
                let local = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| StorageError::Config(format!("{}: {e}", root.display())))?;
                // Verified artifacts are the point of the whole system: make a successful put
                // durable, as it is on S3.
                (Arc::new(local.with_fsync(true)), None)
            }
            StorageConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
                allow_http,
            } => {
                // Empty credentials would make the builder fall back to instance metadata,
                // i.e. probe a link-local address: refuse instead.
                for (what, value) in [
                    ("endpoint", endpoint),
                    ("bucket", bucket),
                    ("region", region),
                    ("access key id", access_key_id),
                    ("secret access key", secret_access_key),
                ] {
                    if value.trim().is_empty() {
                        return Err(StorageError::Config(format!("S3 {what} is empty")));
                    }
                }
                crate::install_crypto_provider();
                let s3 = AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key)
                    .with_allow_http(*allow_http)
                    .with_virtual_hosted_style_request(false)
                    .build()
                    .map_err(|e| StorageError::Config(format!("{}: {e}", config.describe())))?;
                let s3 = Arc::new(s3);
                (s3.clone(), Some(s3))
            }
        };
        Ok(ArtifactStorage { store, signer })
    }

    /// Wraps any object store (tests, other backends). Keys are as for the built-in ones.
    pub fn from_object_store(store: Arc<dyn ObjectStore>) -> Self {
        ArtifactStorage {
            store,
            signer: None,
        }
    }

    /// Whether this storage can hand out presigned download URLs (S3 can, a directory not).
    pub fn can_presign(&self) -> bool {
        self.signer.is_some()
    }

    /// A URL that lets anyone GET the blob `hash_hex` straight from object storage for
    /// `expires_in`, signed locally (nothing is sent); `None` when the storage cannot
    /// presign. With `file_name`, the answer names the download (S3's
    /// `response-content-disposition`, covered by the signature). It does not check that the
    /// blob exists.
    pub async fn presigned_blob_url(
        &self,
        hash_hex: &str,
        expires_in: std::time::Duration,
        file_name: Option<&str>,
    ) -> Result<Option<Url>, StorageError> {
        let key = Self::blob_key(hash_hex)?;
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let mut options = SignedUrlOptions::new();
        if let Some(name) = file_name {
            options = options.with_query([(
                "response-content-disposition",
                format!("attachment; filename=\"{name}\""),
            )]);
        }
        let url = signer
            .signed_url_opts(Method::GET, &key, expires_in, &options)
            .await
            .map_err(StorageError::store("presign", &key))?;
        Ok(Some(url))
    }

    /// The object store underneath, for what this API does not cover (listing, deleting,
    /// maintenance, tests).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `blobs/<hash_hex>`, after checking that `hash_hex` is 64 lowercase hex digits.
    pub fn blob_key(hash_hex: &str) -> Result<Path, StorageError> {
        validate_hash(hash_hex)?;
        Ok(Path::from(format!("{BLOBS}/{hash_hex}")))
    }

    /// `attestations/<hash_hex>.json`, after checking that `hash_hex` is 64 lowercase hex
    /// digits.
    pub fn bundle_key(hash_hex: &str) -> Result<Path, StorageError> {
        validate_hash(hash_hex)?;
        Ok(Path::from(format!("{ATTESTATIONS}/{hash_hex}.json")))
    }

    /// Stores the blob whose BLAKE3 is `hash_hex` from the local `file`, idempotently.
    ///
    /// - If `blobs/<hash_hex>` already exists: `Ok(AlreadyPresent)`, the file is not read.
    /// - The file is read once, hashing exactly the bytes that are sent. If they do not hash
    ///   to `hash_hex`: [`StorageError::HashMismatch`] and nothing is stored.
    /// - Nothing partial ever appears under the final key, whatever fails.
    ///
    /// Design: a blob of less than [`PART_SIZE`] is read into memory, hashed, and written with
    /// one conditional PUT (`PutMode::Create`; "already exists" means another writer stored
    /// it first: `AlreadyPresent`). A bigger blob is streamed as a multipart upload straight
    /// to the final key: hashing goes along with reading, and the upload is completed only if
    /// the hash matches, else aborted. A multipart upload is invisible until completed (on
    /// S3; `LocalFileSystem` stages it in a side file and renames it into place), so no
    /// temporary key and no copy are needed — and S3 has no conditional copy to make one
    /// safe. Multipart completion cannot be conditional here, so two writers racing on the
    /// same big blob may both complete: the key then holds the same verified bytes either
    /// way, and both get `Stored`. Hashing first and uploading in a second pass would read
    /// the file twice and could upload bytes other than those hashed if the file changed in
    /// between. An upload interrupted by a crash leaves an incomplete multipart upload on S3
    /// (not an object; a bucket lifecycle rule `AbortIncompleteMultipartUpload` reclaims it).
    pub async fn put_blob_file(
        &self,
        hash_hex: &str,
        file: &FsPath,
    ) -> Result<PutOutcome, StorageError> {
        let key = Self::blob_key(hash_hex)?;
        if self.head(&key).await?.is_some() {
            debug!(%key, "blob already stored");
            return Ok(PutOutcome::AlreadyPresent);
        }
        let io = |op: &'static str| {
            move |source| StorageError::Io {
                op,
                path: file.to_owned(),
                source,
            }
        };
        let mut reader = tokio::fs::File::open(file).await.map_err(io("opening"))?;
        let mut hasher = blake3::Hasher::new();

        let first = read_up_to(&mut reader, PART_SIZE)
            .await
            .map_err(io("reading"))?;
        hasher.update(&first);
        if first.len() < PART_SIZE {
            check_hash(&hasher, hash_hex, file)?;
            let size = first.len();
            let options = PutOptions::from(PutMode::Create);
            return match self.store.put_opts(&key, first.into(), options).await {
                Ok(_) => {
                    debug!(%key, size, "blob stored");
                    Ok(PutOutcome::Stored)
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    debug!(%key, "blob stored concurrently by another writer");
                    Ok(PutOutcome::AlreadyPresent)
                }
                Err(e) => Err(StorageError::store("put", &key)(e)),
            };
        }

        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(StorageError::store("starting multipart upload", &key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(first);
        let mut size = PART_SIZE as u64;
        let streamed = async {
            loop {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(StorageError::store("uploading part", &key))?;
                let chunk = read_up_to(&mut reader, PART_SIZE)
                    .await
                    .map_err(io("reading"))?;
                if chunk.is_empty() {
                    break;
                }
                hasher.update(&chunk);
                size += chunk.len() as u64;
                // Sends a part whenever PART_SIZE bytes are buffered; the last, short one
                // goes only with `finish`, after the hash check.
                writer.put(chunk);
            }
            check_hash(&hasher, hash_hex, file)
        }
        .await;
        if let Err(error) = streamed {
            if let Err(abort) = writer.abort().await {
                warn!(%key, %abort, "could not abort the multipart upload");
            }
            return Err(error);
        }
        // `finish` aborts the upload itself when completing fails.
        writer
            .finish()
            .await
            .map_err(StorageError::store("completing multipart upload", &key))?;
        debug!(%key, size, "blob stored (multipart)");
        Ok(PutOutcome::Stored)
    }

    /// Writes the attestation bundle of `hash_hex`, replacing any earlier one (a bundle grows
    /// as more builders attest). The write is atomic: readers see the old or the new bundle.
    /// Always `Ok(Stored)`.
    pub async fn put_bundle(
        &self,
        hash_hex: &str,
        json: Bytes,
    ) -> Result<PutOutcome, StorageError> {
        let key = Self::bundle_key(hash_hex)?;
        self.store
            .put(&key, PutPayload::from(json))
            .await
            .map_err(StorageError::store("put", &key))?;
        Ok(PutOutcome::Stored)
    }

    /// Whether the blob `hash_hex` is stored.
    pub async fn has_blob(&self, hash_hex: &str) -> Result<bool, StorageError> {
        Ok(self.blob_size(hash_hex).await?.is_some())
    }

    /// Whether the bundle of `hash_hex` is stored (without reading it).
    pub async fn has_bundle(&self, hash_hex: &str) -> Result<bool, StorageError> {
        let key = Self::bundle_key(hash_hex)?;
        Ok(self.head(&key).await?.is_some())
    }

    /// The size of the blob `hash_hex`, or `None` if it is not stored.
    pub async fn blob_size(&self, hash_hex: &str) -> Result<Option<u64>, StorageError> {
        let key = Self::blob_key(hash_hex)?;
        Ok(self.head(&key).await?.map(|meta| meta.size))
    }

    /// The attestation bundle of `hash_hex`, or `None` if there is none.
    pub async fn get_bundle(&self, hash_hex: &str) -> Result<Option<Bytes>, StorageError> {
        let key = Self::bundle_key(hash_hex)?;
        let result = match self.store.get(&key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StorageError::store("get", &key)(e)),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(StorageError::store("read", &key))?;
        Ok(Some(bytes))
    }

    /// The blob `hash_hex` as a byte stream, whole or the bytes in `range`; with the blob's
    /// total size. `None` if the blob is not stored.
    ///
    /// As in HTTP, a range ending past the blob is cut at its end (the stream is then
    /// shorter than `range`), and one starting at or past the end is
    /// [`StorageError::RangeNotSatisfiable`] (with the size, for `Content-Range: bytes
    /// */size`). An empty or inverted range is [`StorageError::InvalidRange`].
    pub async fn get_blob_range(
        &self,
        hash_hex: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<(u64, BoxStream<'static, Result<Bytes, StorageError>>)>, StorageError> {
        let key = Self::blob_key(hash_hex)?;
        if let Some(r) = &range
            && r.start >= r.end
        {
            return Err(StorageError::InvalidRange {
                start: r.start,
                end: r.end,
            });
        }
        let options = GetOptions::new().with_range(range.clone());
        match self.store.get_opts(&key, options).await {
            Ok(result) => {
                let size = result.meta.size;
                let key = key.to_string();
                let stream = result
                    .into_stream()
                    .map_err(move |source| StorageError::Store {
                        op: "read",
                        key: key.clone(),
                        source,
                    })
                    .boxed();
                Ok(Some((size, stream)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => {
                // Backends report an unsatisfiable range differently (LocalFileSystem: a
                // generic error; S3: an HTTP 416). Tell it apart by looking at the size.
                if let Some(r) = range {
                    match self.head(&key).await? {
                        None => return Ok(None),
                        Some(meta) if r.start >= meta.size => {
                            return Err(StorageError::RangeNotSatisfiable {
                                start: r.start,
                                size: meta.size,
                            });
                        }
                        Some(_) => {}
                    }
                }
                Err(StorageError::store("get", &key)(error))
            }
        }
    }

    /// The object's metadata, `None` if it does not exist.
    async fn head(&self, key: &Path) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::store("head", key)(e)),
        }
    }
}

/// 64 lowercase hex digits, else [`StorageError::InvalidHash`].
fn validate_hash(hash_hex: &str) -> Result<(), StorageError> {
    let ok = hash_hex.len() == 64
        && hash_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidHash(
            hash_hex.chars().take(80).collect(),
        ))
    }
}

fn check_hash(hasher: &blake3::Hasher, expected: &str, file: &FsPath) -> Result<(), StorageError> {
    let actual = hasher.finalize().to_hex();
    if actual.as_str() == expected {
        Ok(())
    } else {
        Err(StorageError::HashMismatch {
            path: file.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_string(),
        })
    }
}

/// Reads until `limit` bytes or the end of the file, whichever comes first.
async fn read_up_to(reader: &mut tokio::fs::File, limit: usize) -> std::io::Result<Bytes> {
    let mut buf = vec![0; limit];
    let mut filled = 0;
    while filled < limit {
        match reader.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    if filled < limit {
        buf.shrink_to_fit();
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn keys() -> Result<(), StorageError> {
        assert_eq!(
            ArtifactStorage::blob_key(HASH)?.as_ref(),
            format!("blobs/{HASH}")
        );
        assert_eq!(
            ArtifactStorage::bundle_key(HASH)?.as_ref(),
            format!("attestations/{HASH}.json")
        );
        Ok(())
    }

    #[test]
    fn bad_hashes_are_refused() {
        let upper = HASH.to_uppercase();
        let long = format!("{HASH}00");
        let traversal = format!("../{}", &HASH[3..]);
        let non_ascii = format!("{}é", &HASH[..62]);
        for bad in [
            "",
            &HASH[..63],
            &long,
            &upper,
            &traversal,
            &non_ascii,
            "g".repeat(64).as_str(),
        ] {
            assert!(
                matches!(
                    ArtifactStorage::blob_key(bad),
                    Err(StorageError::InvalidHash(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    ArtifactStorage::bundle_key(bad),
                    Err(StorageError::InvalidHash(_))
                ),
                "{bad:?}"
            );
        }
    }
}
