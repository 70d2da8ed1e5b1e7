//! Binary encoding of what Raft stores and sends: log entries, votes, openraft's RPC messages
//! and snapshot bodies, all with postcard (compact, serde-based, no schema evolution needed
//! because every replica of a cluster runs the same format version). Decoding is of data the
//! cluster committed (or a peer replicates), so ids decode by the rule they were committed
//! under (`drover_model::decoding_committed`).

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
    drover_model::decoding_committed(|| postcard::from_bytes(bytes))
        .map_err(|source| CodecError { what, source })
}

#[cfg(test)]
mod tests {
    use drover_model::{TaskId, TaskState};

    use super::*;

    /// A task id the master accepted before the ids' rule refused `..` was committed as a
    /// plain string: the log and snapshots holding it still decode.
    #[test]
    fn a_task_id_committed_under_the_earlier_rule_still_decodes() {
        let bytes = encode("test", &"..".to_string()).unwrap();
        assert!(postcard::from_bytes::<TaskId>(&bytes).is_err());
        let id: TaskId = decode("test", &bytes).unwrap();
        assert_eq!(id.as_str(), "..");
    }

    /// Task states are encoded by their position: the model's enum (with its Mesos names for
    /// text formats) writes the bytes the master's own enum wrote, so no format changed.
    #[test]
    fn task_states_encode_as_their_position() {
        use TaskState::*;
        // The master's log and snapshots before the model crate: these positions.
        let written = [
            Staging,
            Starting,
            Running,
            Killing,
            Unreachable,
            Finished,
            Failed,
            Killed,
            Lost,
            Error,
            Dropped,
            Gone,
            GoneByOperator,
        ];
        for (i, s) in written.into_iter().enumerate() {
            assert_eq!(encode("test", &s).unwrap(), vec![i as u8], "{s:?}");
            assert_eq!(decode::<TaskState>("test", &[i as u8]).unwrap(), s);
        }
    }
}
