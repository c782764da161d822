//! Shared by the integration tests: nodes on 127.0.0.1:0, test data, and two kinds of bad
//! provider (a store damaged on disk, and a peer that lies on the wire).

#![allow(clippy::unwrap_used, dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buildsrs_blobs::iroh::endpoint::{Connection, PortmapperConfig, presets};
use buildsrs_blobs::iroh::protocol::{AcceptError, ProtocolHandler, Router};
use buildsrs_blobs::iroh::{Endpoint, NetReportConfig, RelayMode, SecretKey};
use buildsrs_blobs::iroh_blobs::protocol::{ChunkRanges, Request};
use buildsrs_blobs::iroh_blobs::store::mem::MemStore;
use buildsrs_blobs::{BlobAddress, BlobConfig, BlobNode, FetchTimeouts, IrohAddress};
use buildsrs_keys::Blake3Hash;

pub const LOOPBACK: &str = "127.0.0.1:0";

/// Short limits: every bad provider in these tests fails within a couple of seconds.
pub const TEST_TIMEOUTS: FetchTimeouts = FetchTimeouts {
    connect: Duration::from_secs(2),
    stall: Duration::from_secs(5),
};

/// A distinct key per call, so every node in a test has its own endpoint id.
pub fn secret_key() -> SecretKey {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8..16].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    SecretKey::from_bytes(&seed)
}

pub async fn mem_node() -> BlobNode {
    spawn(secret_key(), None).await
}

pub async fn fs_node(dir: &Path) -> BlobNode {
    spawn(secret_key(), Some(dir.to_owned())).await
}

pub async fn spawn(secret_key: SecretKey, store_dir: Option<PathBuf>) -> BlobNode {
    BlobNode::spawn(BlobConfig {
        secret_key,
        store_dir,
        bind: LOOPBACK.parse().unwrap(),
        gc_interval: None,
    })
    .await
    .unwrap()
    .with_fetch_timeouts(TEST_TIMEOUTS)
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible enough, no extra crate.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An address where nothing answers: a UDP port that was free a moment ago, with a key
/// nobody holds.
pub fn unreachable_addr() -> BlobAddress {
    let port = UdpSocket::bind(LOOPBACK)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    BlobAddress {
        endpoint_id: secret_key().public().to_string(),
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
    }
}

/// Flips one byte of the data file an `FsStore` in `store_dir` keeps for `hash`. Blobs
/// above 16 KiB are stored as `data/<hex>.data` (smaller ones are inlined in the database).
/// Only call this while no node has the store open.
pub fn corrupt_stored_data(store_dir: &Path, hash: &Blake3Hash, offset: u64) {
    use std::os::unix::fs::FileExt;
    let path = store_dir.join("data").join(format!("{hash}.data"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0xff;
    file.write_all_at(&byte, offset).unwrap();
    file.sync_all().unwrap();
}

/// A provider that speaks the iroh-blobs protocol but lies: it answers a get with the
/// genuine BAO encoding of the blob (size, tree nodes, data) with one byte of the last
/// data chunk flipped. iroh-blobs' own provider verifies what it sends and would never do
/// this, so a malicious or broken peer is the only source of such bytes; this stands in
/// for one.
#[derive(Debug, Clone)]
pub struct LyingProvider {
    store: MemStore,
}

impl LyingProvider {
    /// Serves corrupted copies of `blobs` on a fresh endpoint with the same network
    /// settings as `BlobNode`. Keep the router alive while it should answer.
    pub async fn spawn(blobs: &[Vec<u8>]) -> (BlobAddress, Router) {
        let store = MemStore::new();
        for blob in blobs {
            store.add_slice(blob).await.unwrap();
        }
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(secret_key())
            .relay_mode(RelayMode::Disabled)
            .clear_address_lookup()
            .clear_ip_transports()
            .bind_addr(LOOPBACK)
            .unwrap()
            .portmapper_config(PortmapperConfig::Disabled)
            .net_report_config(NetReportConfig::minimal())
            .bind()
            .await
            .unwrap();
        let router = Router::builder(endpoint)
            .accept(buildsrs_blobs::iroh_blobs::ALPN, Self { store })
            .spawn();
        (
            BlobAddress::from_endpoint_addr(&router.endpoint().addr()),
            router,
        )
    }
}

impl ProtocolHandler for LyingProvider {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let (request, _) = Request::read_async(&mut recv)
            .await
            .map_err(AcceptError::from_err)?;
        let Request::Get(get) = request else {
            return Ok(());
        };
        // The whole blob, whatever ranges were asked for: the fetcher in these tests has
        // nothing yet, so it asks for everything.
        let mut encoded = self
            .store
            .export_bao(get.hash, ChunkRanges::all())
            .bao_to_vec()
            .await
            .map_err(AcceptError::from_err)?;
        if let Some(last) = encoded.last_mut() {
            *last ^= 0x01;
        }
        send.write_all(&encoded)
            .await
            .map_err(AcceptError::from_err)?;
        send.finish().map_err(AcceptError::from_err)?;
        conn.closed().await;
        Ok(())
    }
}
