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

    /// A status update's core is the model's `TaskStatus`: it writes the bytes the registry's
    /// own struct wrote (fields and source variants positional; the JSON names and defaults
    /// the model adds for the agent change nothing here).
    #[test]
    fn task_statuses_encode_as_the_registry_wrote_them() {
        use crate::registry::cluster::{StatusSource, TaskStatus};
        // The registry's types before the model crate, field for field.
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        enum WrittenSource {
            Executor,
            Agent,
            Master,
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Written {
            uuid: uuid::Uuid,
            state: TaskState,
            source: WrittenSource,
            reason: String,
            message: String,
            exit_code: Option<i32>,
            signal: Option<i32>,
            at_ms: u64,
        }
        let sources = [
            (StatusSource::Executor, WrittenSource::Executor),
            (StatusSource::Agent, WrittenSource::Agent),
            (StatusSource::Master, WrittenSource::Master),
        ];
        for (i, (source, written_source)) in sources.into_iter().enumerate() {
            let now = TaskStatus {
                uuid: uuid::Uuid::from_u128(0x1234 + i as u128),
                state: TaskState::Failed,
                source,
                reason: "command_exited".into(),
                message: "exited with status 3".into(),
                exit_code: (i != 1).then_some(3),
                signal: (i == 1).then_some(9),
                at_ms: 1_700_000_000_000 + i as u64,
            };
            let before = Written {
                uuid: now.uuid,
                state: now.state,
                source: written_source,
                reason: now.reason.clone(),
                message: now.message.clone(),
                exit_code: now.exit_code,
                signal: now.signal,
                at_ms: now.at_ms,
            };
            let bytes = encode("test", &before).unwrap();
            assert_eq!(encode("test", &now).unwrap(), bytes, "{source:?}");
            assert_eq!(decode::<TaskStatus>("test", &bytes).unwrap(), now);
        }
    }
}
