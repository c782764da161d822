//! [`BlobAddr`]: how one node tells another where its blob server is.

use std::net::SocketAddr;

use iroh::{EndpointAddr, EndpointId, TransportAddr};
use serde::{Deserialize, Serialize};

use crate::BlobError;

/// Where a blob server can be reached: its iroh endpoint id and direct socket addresses.
///
/// This travels inside protocol messages (CBOR) and is stored as JSON, so it is plain data:
/// the endpoint id is a string in iroh's text form (64 lowercase hex digits, what
/// `Display` of an `EndpointId` writes) and is only checked when it is used, by
/// [`BlobAddr::to_endpoint_addr`]. A malformed address from a peer then fails that one
/// provider in a fetch instead of the whole message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobAddr {
    /// The provider's iroh endpoint id (its ed25519 public key), as text.
    pub endpoint_id: String,
    /// Direct UDP socket addresses the provider listens on. Nothing else is ever dialled.
    pub addrs: Vec<SocketAddr>,
}

impl BlobAddr {
    /// The direct addresses of an iroh endpoint address; relay URLs and custom transports
    /// are dropped, since this crate never uses relays. Addresses are sorted and
    /// deduplicated, so the same endpoint always gives the same `BlobAddr`.
    pub fn from_endpoint_addr(addr: &EndpointAddr) -> Self {
        let mut addrs: Vec<SocketAddr> = addr.ip_addrs().copied().collect();
        addrs.sort();
        addrs.dedup();
        Self {
            endpoint_id: addr.id.to_string(),
            addrs,
        }
    }

    /// The parsed endpoint id.
    pub fn endpoint_id(&self) -> Result<EndpointId, BlobError> {
        self.endpoint_id
            .parse()
            .map_err(|err| BlobError::InvalidAddr {
                endpoint_id: self.endpoint_id.chars().take(80).collect(),
                reason: format!("{err}"),
            })
    }

    /// The iroh address to dial: the id plus exactly the direct addresses listed here.
    /// Refuses an address without any socket address, because with relays and address
    /// lookup disabled there would be no way to reach it.
    pub fn to_endpoint_addr(&self) -> Result<EndpointAddr, BlobError> {
        let id = self.endpoint_id()?;
        if self.addrs.is_empty() {
            return Err(BlobError::InvalidAddr {
                endpoint_id: self.endpoint_id.clone(),
                reason: "no socket addresses".to_owned(),
            });
        }
        Ok(EndpointAddr::from_parts(
            id,
            self.addrs.iter().copied().map(TransportAddr::Ip),
        ))
    }
}

impl std::fmt::Display for BlobAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at [", self.endpoint_id)?;
        for (i, addr) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{addr}")?;
        }
        f.write_str("]")
    }
}

/// The text form people pass on command lines: `ENDPOINT_ID@IP:PORT[,IP:PORT…]`.
impl std::str::FromStr for BlobAddr {
    type Err = BlobError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| BlobError::InvalidAddr {
            endpoint_id: text.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        let (id, addrs) = text
            .split_once('@')
            .ok_or_else(|| invalid("expected ENDPOINT_ID@IP:PORT[,IP:PORT...]"))?;
        let addrs = addrs
            .split(',')
            .map(|a| a.trim().parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&format!("a socket address does not parse: {e}")))?;
        let addr = BlobAddr {
            endpoint_id: id.to_owned(),
            addrs,
        };
        // Checks the id and that there is an address.
        addr.to_endpoint_addr()?;
        Ok(addr)
    }
}

impl BlobAddr {
    /// The text form [`FromStr`](std::str::FromStr) reads.
    pub fn to_arg(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        format!("{}@{}", self.endpoint_id, addrs.join(","))
    }
}

// The job protocol carries the same two fields in its own plain-data type (the protocol
// crate knows nothing of iroh); these convert between the two without loss.
impl From<buildsrs_protocol::BlobAddress> for BlobAddr {
    fn from(addr: buildsrs_protocol::BlobAddress) -> Self {
        Self {
            endpoint_id: addr.endpoint_id,
            addrs: addr.addrs,
        }
    }
}

impl From<BlobAddr> for buildsrs_protocol::BlobAddress {
    fn from(addr: BlobAddr) -> Self {
        Self {
            endpoint_id: addr.endpoint_id,
            addrs: addr.addrs,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips_through_iroh_addr() {
        let key = iroh::SecretKey::from_bytes(&[7; 32]);
        let sock: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let iroh_addr = EndpointAddr::new(key.public()).with_ip_addr(sock);
        let addr = BlobAddr::from_endpoint_addr(&iroh_addr);
        assert_eq!(addr.endpoint_id, key.public().to_string());
        assert_eq!(addr.endpoint_id.len(), 64);
        assert_eq!(addr.addrs, vec![sock]);
        assert_eq!(addr.to_endpoint_addr().unwrap(), iroh_addr);
    }

    #[test]
    fn the_command_line_form_round_trips() {
        let key = iroh::SecretKey::from_bytes(&[9; 32]);
        let addr = BlobAddr {
            endpoint_id: key.public().to_string(),
            addrs: vec![
                "127.0.0.1:4433".parse().unwrap(),
                "[::1]:5".parse().unwrap(),
            ],
        };
        assert_eq!(addr.to_arg().parse::<BlobAddr>().unwrap(), addr);
        for bad in [
            "",
            "abc",
            "abc@127.0.0.1:1",
            &format!("{}@", key.public()),
            &format!("{}@x", key.public()),
        ] {
            assert!(bad.parse::<BlobAddr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_bad_ids_and_empty_addresses() {
        let bad = BlobAddr {
            endpoint_id: "not-a-key".to_owned(),
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
        };
        assert!(matches!(
            bad.to_endpoint_addr(),
            Err(BlobError::InvalidAddr { .. })
        ));
        let key = iroh::SecretKey::from_bytes(&[7; 32]);
        let empty = BlobAddr {
            endpoint_id: key.public().to_string(),
            addrs: vec![],
        };
        assert!(matches!(
            empty.to_endpoint_addr(),
            Err(BlobError::InvalidAddr { .. })
        ));
    }
}
