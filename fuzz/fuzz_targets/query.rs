//! Query strings and path parameters of the web UI and `/api/v1` come from anyone: they must
//! be read into their types or refused with a message, never panic. Query strings are
//! decoded by `serde_urlencoded` over the raw bytes, as axum's `Query` extractor (which the
//! web's `ApiQuery` and `HtmlQuery` use) does. Every parameter that parses prints as text
//! that parses to the same value, and survives JSON, as the answers carry them.
#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use buildsrs_api::params::{
    ArtifactPath, BuilderKey, BuilderPath, CratePath, CrateSearch, Cursor, FeedQuery, Limit,
    Offset, PageQuery, SearchText, TaskIdParam, TaskPath, VersionPath, VersionRef,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `text` as a `T` and, when it is one, checks its text and JSON round trips. A
/// refusal's message is answered to the client; with `short`, it must stay short whatever
/// the input (the parameter types echo at most 80 characters, quoted and escaped: at most 10
/// characters each).
fn param<T>(text: &str, short: bool)
where
    T: FromStr + Display + Serialize + DeserializeOwned + PartialEq + Debug,
    T::Err: Display,
{
    match text.parse::<T>() {
        Ok(value) => {
            let printed = value.to_string();
            let again: T = printed
                .parse()
                .unwrap_or_else(|e| panic!("{printed:?} does not re-parse: {e}"));
            assert_eq!(again, value);
            let json = serde_json::to_string(&value).expect("a parameter serializes");
            let again: T = serde_json::from_str(&json).expect("a serialized parameter parses");
            assert_eq!(again, value);
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!short || message.chars().count() <= 1_000, "{message:?}");
        }
    }
}

/// Decodes the whole query string as a `T`, as the server's extractors do.
fn whole<T: DeserializeOwned>(query: &[u8]) {
    if let Err(error) = serde_urlencoded::from_bytes::<T>(query) {
        let _ = error.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    whole::<CrateSearch>(data);
    whole::<PageQuery>(data);
    whole::<FeedQuery>(data);
    // Path parameters are decoded from text the same way; their structs read here as if each
    // segment were a query parameter (`name=..&version=..`).
    whole::<CratePath>(data);
    whole::<VersionPath>(data);
    whole::<TaskPath>(data);
    whole::<ArtifactPath>(data);
    whole::<BuilderPath>(data);
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else {
        return;
    };
    for (_, value) in pairs {
        // A refused version echoes `buildsrs-keys`' message, which quotes the whole text.
        param::<VersionRef>(&value, false);
        param::<BuilderKey>(&value, true);
        param::<SearchText>(&value, true);
        param::<TaskIdParam>(&value, true);
        param::<Offset>(&value, true);
        param::<Limit>(&value, true);
        param::<Cursor>(&value, true);
    }
});
