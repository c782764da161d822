//! The job protocol's codec: one CBOR message per libp2p stream, size-limited on read.
//!
//! A request-response stream carries exactly one request and one response, each written whole
//! and followed by closing the write half, so the message boundary is the end of the stream.
//! Reading stops one byte past the limit: a peer that sends more gets an error, and we never
//! buffer more than the limit whatever it sends.

use std::io;

use buildsrs_protocol::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, Request, Response, WireError};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Codec for [`buildsrs_protocol::JOBS_PROTOCOL`].
#[derive(Clone, Copy, Debug, Default)]
pub struct JobCodec;

/// Reads the whole stream, refusing more than `limit` bytes.
async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    // `limit + 1` so that a message of exactly `limit` bytes is told apart from a longer one.
    io.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
    if bytes.len() > limit {
        return Err(invalid(WireError::TooLarge {
            size: bytes.len(),
            limit,
        }));
    }
    Ok(bytes)
}

fn invalid(error: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

async fn write_all_and_close<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for JobCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_REQUEST_BYTES).await?;
        Request::from_cbor(&bytes).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_RESPONSE_BYTES).await?;
        Response::from_cbor(&bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = request.to_cbor().map_err(invalid)?;
        write_all_and_close(io, &bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = response.to_cbor().map_err(invalid)?;
        write_all_and_close(io, &bytes).await
    }
}
