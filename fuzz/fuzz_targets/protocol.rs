//! Every message of the job protocol comes from a peer: each decoder must
//! refuse what is not a message, never panic, and what decodes must re-encode to bytes that
//! decode to the same value (so a message means one thing to both sides).
#![no_main]

use std::fmt::Debug;

use buildsrs_protocol::{
    Hello, Job, JobResult, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, Request, Response, decode, encode,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `data` as a `T` within `limit` and, when it is one, checks the round trip.
fn round_trip<T>(data: &[u8], limit: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(message) = decode::<T>(data, limit) else {
        return;
    };
    // No limit on the way back: the input may have used longer forms (indefinite lengths,
    // wide integers) than the encoder does, and the size limits are tested elsewhere.
    let bytes = encode(&message, usize::MAX).expect("a decoded message encodes");
    let again: T = decode(&bytes, usize::MAX).expect("an encoded message decodes");
    assert_eq!(again, message);
    // The encoder's form is a fixed point.
    assert_eq!(encode(&again, usize::MAX).expect("encodes"), bytes);
}

fuzz_target!(|data: &[u8]| {
    // The two messages as the network reads them, through their own entry points.
    let _ = Request::from_cbor(data);
    let _ = Response::from_cbor(data);
    round_trip::<Request>(data, MAX_REQUEST_BYTES);
    round_trip::<Response>(data, MAX_RESPONSE_BYTES);
    // Their parts on their own, so the fuzzer reaches each field's rules without first
    // finding the enclosing enum's tag.
    round_trip::<Hello>(data, MAX_REQUEST_BYTES);
    if let Ok(hello) = decode::<Hello>(data, MAX_REQUEST_BYTES) {
        // The coordinator's bounds check sees any hello that decodes.
        let _ = hello.check_bounds();
    }
    round_trip::<Job>(data, MAX_RESPONSE_BYTES);
    round_trip::<JobResult>(data, MAX_REQUEST_BYTES);
});
