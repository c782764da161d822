//! Where builders serve their blobs, as their last hello said: kept in the store so that a
//! coordinator restarted after a verification can still fetch the artifact from the builders
//! that attested it, before they say hello again.

use buildsrs_domain::BlobAddress;
use buildsrs_keys::PublicKey;

use crate::db::{Db, params};
use crate::error::{Result, StoreError};

/// The longest blob address kept (its text form); a hello's address is bounded long before.
const MAX_ADDRESS_TEXT: usize = 1024;

/// Records `address` for `builder`, a known builder. An address without a socket address
/// to dial is recorded as none.
pub(crate) async fn set_blob_address(
    db: &mut dyn Db,
    builder: &PublicKey,
    address: &BlobAddress,
) -> Result<()> {
    let text = (!address.addrs.is_empty()).then(|| address.to_arg());
    if text.as_ref().is_some_and(|t| t.len() > MAX_ADDRESS_TEXT) {
        return Err(StoreError::invalid(format!(
            "a blob address is at most {MAX_ADDRESS_TEXT} bytes"
        )));
    }
    let key = builder.to_string();
    let changed = db
        .execute(
            "UPDATE builders SET blob_address = $2 WHERE public_key = $1",
            params![&key, text.as_deref()],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::not_found(format!("builder {key}")));
    }
    Ok(())
}

/// Where `builder` serves blobs, as last recorded.
pub(crate) async fn blob_address(
    db: &mut dyn Db,
    builder: &PublicKey,
) -> Result<Option<BlobAddress>> {
    let key = builder.to_string();
    let Some(row) = db
        .query_opt(
            "SELECT blob_address FROM builders WHERE public_key = $1",
            params![&key],
        )
        .await?
    else {
        return Ok(None);
    };
    let text: Option<String> = row.get(0)?;
    text.map(|t| {
        t.parse()
            .map_err(|e| StoreError::corrupt(format!("builder {key}: {e}")))
    })
    .transpose()
}
