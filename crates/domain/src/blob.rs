//! Where a peer serves blobs: [`BlobAddress`], the one type the job protocol, the API, the
//! mirror CLI and the blob layer pass around (the blob layer adds the iroh conversions).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a blob server can be reached: its iroh endpoint id and direct socket addresses.
///
/// Plain data: it travels in protocol messages (CBOR) and API answers (JSON), and is stored.
/// The endpoint id is text in iroh's form (64 lowercase hex digits of an ed25519 public key)
/// and is only fully checked when it is dialled, so a malformed address from a peer fails
/// that one provider instead of the whole message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct BlobAddress {
    /// The iroh endpoint id (an ed25519 public key, 64 lowercase hex digits).
    pub endpoint_id: String,
    /// The UDP socket addresses it listens on (`IP:PORT`). Nothing else is ever dialled.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub addrs: Vec<SocketAddr>,
}

impl BlobAddress {
    /// The text form [`FromStr`] reads: `ENDPOINT_ID@IP:PORT[,IP:PORT…]`.
    pub fn to_arg(&self) -> String {
        let addrs: Vec<String> = self.addrs.iter().map(ToString::to_string).collect();
        format!("{}@{}", self.endpoint_id, addrs.join(","))
    }
}

impl fmt::Display for BlobAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// A blob address that does not parse, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("blob address {text:?}: {reason}")]
pub struct InvalidBlobAddress {
    /// The text (cut short).
    pub text: String,
    /// Why.
    pub reason: String,
}

/// The text form people pass on command lines: `ENDPOINT_ID@IP:PORT[,IP:PORT…]`, with at
/// least one address.
impl FromStr for BlobAddress {
    type Err = InvalidBlobAddress;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| InvalidBlobAddress {
            text: text.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        let (id, addrs) = text
            .split_once('@')
            .ok_or_else(|| invalid("expected ENDPOINT_ID@IP:PORT[,IP:PORT...]"))?;
        let id_ok = id.len() == 64
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !id_ok {
            return Err(invalid("the endpoint id is not 64 lowercase hex digits"));
        }
        let addrs = addrs
            .split(',')
            .map(|a| a.trim().parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&format!("a socket address does not parse: {e}")))?;
        Ok(BlobAddress {
            endpoint_id: id.to_owned(),
            addrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_form_round_trips_and_refuses_what_is_not_one() {
        let id = "ab".repeat(32);
        let addr = BlobAddress {
            endpoint_id: id.clone(),
            addrs: vec![
                "127.0.0.1:4433".parse().expect("an address"),
                "[::1]:5".parse().expect("an address"),
            ],
        };
        assert_eq!(addr.to_arg().parse::<BlobAddress>(), Ok(addr.clone()));
        assert_eq!(
            addr.to_string(),
            format!("{id} at [127.0.0.1:4433, [::1]:5]")
        );
        for bad in [
            "".to_owned(),
            "abc".to_owned(),
            "abc@127.0.0.1:1".to_owned(),
            format!("{id}@"),
            format!("{id}@x"),
            format!("{}@127.0.0.1:1", "AB".repeat(32)),
        ] {
            assert!(bad.parse::<BlobAddress>().is_err(), "{bad:?}");
        }
    }
}
