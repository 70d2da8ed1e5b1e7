//! Binary encoding of what Raft stores and sends: log entries, votes, openraft's RPC messages
//! and snapshot bodies, all with postcard (compact, serde-based, no schema evolution needed
//! because every replica of a cluster runs the same format version).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct CodecError {
    pub what: &'static str,
    #[source]
    pub source: postcard::Error,
}

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|source| CodecError { what, source })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|source| CodecError { what, source })
}
