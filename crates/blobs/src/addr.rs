//! Where a blob server is, in iroh's terms: [`IrohAddress`] turns the domain's
//! [`BlobAddress`] (plain data that travels in messages and answers) into the address iroh
//! dials, and an iroh endpoint's address into one.

use std::net::SocketAddr;

pub use buildsrs_domain::BlobAddress;
use iroh::{EndpointAddr, EndpointId, TransportAddr};

use crate::BlobError;

/// The iroh side of a [`BlobAddress`].
pub trait IrohAddress: Sized {
    /// The direct addresses of an iroh endpoint address; relay URLs and custom transports
    /// are dropped, since this crate never uses relays. Addresses are sorted and
    /// deduplicated, so the same endpoint always gives the same address.
    fn from_endpoint_addr(addr: &EndpointAddr) -> Self;

    /// The parsed endpoint id.
    fn endpoint(&self) -> Result<EndpointId, BlobError>;

    /// The iroh address to dial: the id plus exactly the direct addresses listed. Refuses an
    /// address without any socket address, because with relays and address lookup disabled
    /// there would be no way to reach it.
    fn to_endpoint_addr(&self) -> Result<EndpointAddr, BlobError>;
}

impl IrohAddress for BlobAddress {
    fn from_endpoint_addr(addr: &EndpointAddr) -> Self {
        let mut addrs: Vec<SocketAddr> = addr.ip_addrs().copied().collect();
        addrs.sort();
        addrs.dedup();
        Self {
            endpoint_id: addr.id.to_string(),
            addrs,
        }
    }

    fn endpoint(&self) -> Result<EndpointId, BlobError> {
        self.endpoint_id
            .parse()
            .map_err(|err| BlobError::InvalidAddr {
                endpoint_id: self.endpoint_id.chars().take(80).collect(),
                reason: format!("{err}"),
            })
    }

    fn to_endpoint_addr(&self) -> Result<EndpointAddr, BlobError> {
        let id = self.endpoint()?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips_through_iroh_addr() {
        let key = iroh::SecretKey::from_bytes(&[7; 32]);
        let sock: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let iroh_addr = EndpointAddr::new(key.public()).with_ip_addr(sock);
        let addr = BlobAddress::from_endpoint_addr(&iroh_addr);
        assert_eq!(addr.endpoint_id, key.public().to_string());
        assert_eq!(addr.endpoint_id.len(), 64);
        assert_eq!(addr.addrs, vec![sock]);
        assert_eq!(addr.to_endpoint_addr().unwrap(), iroh_addr);
    }

    #[test]
    fn refuses_bad_ids_and_empty_addresses() {
        let bad = BlobAddress {
            endpoint_id: "not-a-key".to_owned(),
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
        };
        assert!(matches!(
            bad.to_endpoint_addr(),
            Err(BlobError::InvalidAddr { .. })
        ));
        let key = iroh::SecretKey::from_bytes(&[7; 32]);
        let empty = BlobAddress {
            endpoint_id: key.public().to_string(),
            addrs: vec![],
        };
        assert!(matches!(
            empty.to_endpoint_addr(),
            Err(BlobError::InvalidAddr { .. })
        ));
    }
}
