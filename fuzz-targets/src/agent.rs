//! The agent's decoders of what it reads back from its disk (status update logs, a task's
//! `task.json`, a launch's spec) and of the frames on the executor socket.

use drover_agent::checkpoint::decode_records;
use drover_agent::protocol::{read_message, FromExecutor, ToExecutor};
use drover_agent::status_updates::Record;
use drover_agent::task::LaunchSpec;
use drover_agent::task::TaskSpec;
use drover_agent::update::StatusUpdate;
use serde::de::DeserializeOwned;

use crate::select;

/// A checkpoint file's bytes: a record log (the agent's `updates.log`, the executor's) or a
/// task's JSON. A record log's replay accounts for every byte: the complete records end where
/// its torn tail, if any, begins.
pub fn checkpoint(data: &[u8]) {
    let (which, bytes) = select(data);
    match which % 4 {
        0 => replay::<Record>(bytes),
        1 => replay::<StatusUpdate>(bytes),
        2 => drop(serde_json::from_slice::<TaskSpec>(bytes)),
        _ => drop(serde_json::from_slice::<LaunchSpec>(bytes)),
    }
}

fn replay<T: DeserializeOwned>(bytes: &[u8]) {
    let r = decode_records::<T>(bytes);
    assert!(r.complete_len as usize <= bytes.len());
    assert_eq!(r.torn_tail, r.complete_len as usize != bytes.len());
}

/// The executor socket's byte stream, read one message at a time as the agent (selector even)
/// or the executor (odd) reads it, until its end or the first error.
pub fn executor_frame(data: &[u8]) {
    let (which, mut stream) = select(data);
    futures::executor::block_on(async {
        for _ in 0..data.len() / 2 + 1 {
            let next = if which & 1 == 0 {
                read_message::<_, FromExecutor>(&mut stream)
                    .await
                    .map(|m| m.is_some())
            } else {
                read_message::<_, ToExecutor>(&mut stream)
                    .await
                    .map(|m| m.is_some())
            };
            if !matches!(next, Ok(true)) {
                break;
            }
        }
    });
}
