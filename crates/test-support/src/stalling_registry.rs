//! A registry whose downloads never end, for the tests of what a node does when a registry
//! stalls or dribbles (the node's download limits, and whose fault it is).
//!
//! It listens on `127.0.0.1:0`. `GET /config.json` is answered properly (`dl` points back at
//! the server, as a sparse registry's does), so a node takes it as its registry, and so is a
//! crate's index file: every crate is listed with one version, [`LISTED_VERSION`], whose
//! checksum is [`LISTED_CKSUM`]. A download (`/dl/…`) gets headers that promise 1000 bytes
//! and then, by [`Sends`], nothing at all, or one byte at a time, forever. Dropping the
//! [`StallingRegistry`] stops it.
//!
//! Threads and a std listener, not an async runtime: the crate stays without dependencies,
//! and the server runs the same under any runtime a test uses.
//!
//! ```no_run
//! use buildsrs_test_support::stalling_registry::{Sends, StallingRegistry};
//!
//! let registry = StallingRegistry::start(Sends::Nothing)?;
//! let index = registry.index_url(); // sparse+http://127.0.0.1:PORT/
//! let url = registry.download_url("hello-bin", "0.1.0");
//! # let _ = (index, url);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The one version the index lists of every crate.
pub const LISTED_VERSION: &str = "0.1.0";

/// The checksum the index lists for it (the download never delivers bytes to match).
pub const LISTED_CKSUM: &str = "abababababababababababababababababababababababababababababababab";

/// What the registry sends of a download's body, after headers promising 1000 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sends {
    /// Nothing, ever: a stall.
    Nothing,
    /// One byte every so often, forever (past the 1000 promised): a dribble.
    OneByteEvery(Duration),
}

/// A running registry whose downloads never end; stops when dropped.
#[derive(Debug)]
pub struct StallingRegistry {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl StallingRegistry {
    /// Starts the registry on `127.0.0.1:0`, sending `sends` of every download.
    pub fn start(sends: Sends) -> std::io::Result<StallingRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("stalling-registry".into())
            .spawn(move || {
                for socket in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    // A connection that failed, or a thread that could not start, is a
                    // connection this registry drops: what the client sees of a bad registry.
                    if let Ok(socket) = socket {
                        let stopped = stopped.clone();
                        let _ = std::thread::Builder::new()
                            .name("stalling-registry-conn".into())
                            .spawn(move || serve(socket, addr, sends, &stopped));
                    }
                }
            })?;
        Ok(StallingRegistry { addr, stop })
    }

    /// The index URL a node is given: `sparse+http://127.0.0.1:PORT/`.
    pub fn index_url(&self) -> String {
        format!("sparse+http://{}/", self.addr)
    }

    /// The download URL of a crate version, below the `dl` of the registry's `config.json`.
    pub fn download_url(&self, name: &str, version: &str) -> String {
        format!("http://{}/dl/{name}/{version}/download", self.addr)
    }
}

impl Drop for StallingRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag and ends.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Answers one connection: the request's head, then the config or a download that never ends.
fn serve(mut socket: TcpStream, addr: SocketAddr, sends: Sends, stopped: &AtomicBool) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    if request.starts_with(b"GET /config.json ") {
        let config = format!(r#"{{"dl":"http://{addr}/dl","api":null}}"#);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{config}",
            config.len()
        );
        let _ = socket.write_all(answer.as_bytes());
        return;
    }
    if !request.starts_with(b"GET /dl/") {
        // A crate's index file (`/he/ll/hello-bin`): the crate, as the last path segment.
        let head = String::from_utf8_lossy(&request);
        let path = head.split_whitespace().nth(1).unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        let line = format!(
            r#"{{"name":"{name}","vers":"{LISTED_VERSION}","deps":[],"cksum":"{LISTED_CKSUM}","features":{{}},"yanked":false}}"#
        );
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{line}\n",
            line.len() + 1
        );
        let _ = socket.write_all(answer.as_bytes());
        return;
    }
    if socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        .is_err()
    {
        return;
    }
    match sends {
        // Blocks until the client gives up and hangs up (or sends something more, which is
        // ignored): nothing is sent meanwhile, and the thread ends with the connection.
        Sends::Nothing => while matches!(socket.read(&mut buf), Ok(n) if n > 0) {},
        Sends::OneByteEvery(every) => {
            while !stopped.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                if socket.write_all(b"x").is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn get(addr: &str, path: &str) -> TcpStream {
        let mut socket = TcpStream::connect(addr).unwrap();
        write!(socket, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket
    }

    /// What arrives on `socket` until it has been quiet for the read timeout.
    fn received(socket: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = socket.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    #[test]
    fn the_config_points_back_and_downloads_stall_or_dribble() {
        let stalling = StallingRegistry::start(Sends::Nothing).unwrap();
        let addr = stalling
            .index_url()
            .trim_start_matches("sparse+http://")
            .trim_end_matches('/')
            .to_owned();
        assert_eq!(
            stalling.download_url("a", "1.0.0"),
            format!("http://{addr}/dl/a/1.0.0/download")
        );
        let config = received(&mut get(&addr, "/config.json"));
        assert!(
            config.ends_with(&format!(r#"{{"dl":"http://{addr}/dl","api":null}}"#)),
            "{config}"
        );
        let index = received(&mut get(&addr, "/he/ll/hello-bin"));
        assert!(
            index.contains(r#""name":"hello-bin","vers":"0.1.0""#) && index.contains(LISTED_CKSUM),
            "{index}"
        );
        let download = received(&mut get(&addr, "/dl/a/1.0.0/download"));
        assert_eq!(download, "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");

        let dribbling =
            StallingRegistry::start(Sends::OneByteEvery(Duration::from_millis(10))).unwrap();
        let addr = dribbling.download_url("a", "1.0.0");
        let addr = addr
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap();
        let mut socket = get(addr, "/dl/a/1.0.0/download");
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"xxx") {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the dribble ended");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(started.elapsed() >= Duration::from_millis(20));
        drop(dribbling);
    }
}
