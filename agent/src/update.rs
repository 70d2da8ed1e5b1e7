//! [`StatusUpdate`]: one task status update (the model's [`TaskStatus`] and whose task it
//! is) as the agent keeps it, checkpoints it, passes it between executor and agent, and sends
//! it to the master.
//!
//! The uuid is made once, by whoever creates the update (the executor, or the agent itself
//! when the executor could not report), so that every resend of an update is recognisably the
//! same update all the way to the master, which applies a uuid at most once.

use drover_proto::v1;
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, FrameworkId, TaskId};

/// The task states: the model's, the same the master applies (the agent makes only the
/// forward ones and the terminal ones an executor can end in).
pub use drover_model::TaskState;
/// A status's core (state, cause, exit, uuid, time) and its source: the model's, the same the
/// master records.
pub use drover_model::{StatusSource, TaskStatus};

/// Longest message and reason kept in an update, bytes; longer ones are cut (at a char
/// boundary).
pub use drover_model::status::{MAX_MESSAGE_BYTES, MAX_REASON_BYTES};

/// One status update of one task: the status, addressed to its task, framework and agent.
/// In JSON the status's fields sit beside the ids (one flat object, as checkpoints have it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    #[serde(flatten)]
    pub status: TaskStatus,
}

impl StatusUpdate {
    /// A new update (fresh uuid, stamped now) with no exit code or signal.
    pub fn new(
        agent_id: AgentId,
        framework_id: FrameworkId,
        task_id: TaskId,
        state: TaskState,
        source: StatusSource,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            agent_id,
            framework_id,
            task_id,
            status: TaskStatus::new(state, source, reason, message),
        }
    }

    pub fn with_exit_code(mut self, code: Option<i32>) -> Self {
        self.status.exit_code = code;
        self
    }

    pub fn with_signal(mut self, signal: Option<i32>) -> Self {
        self.status.signal = signal;
        self
    }

    /// Makes the free-text fields fit their limits (an update read from an executor may not).
    pub fn bounded(mut self) -> Self {
        self.status = self.status.bounded();
        self
    }

    pub fn to_proto(&self) -> v1::TaskStatus {
        self.status
            .to_proto(self.task_id.as_str(), self.agent_id.as_str())
    }

    /// This update as one item of an UpdateStatus call.
    pub fn to_wire(&self) -> v1::AgentStatusUpdate {
        v1::AgentStatusUpdate {
            agent_id: self.agent_id.to_string(),
            framework_id: self.framework_id.to_string(),
            status: Some(self.to_proto()),
        }
    }

    /// About how many bytes [`StatusUpdate::to_wire`] encodes to (an upper bound for
    /// sizing batches without encoding).
    pub fn wire_len(&self) -> usize {
        // Ids, uuid, enums, numbers and framing are well under 512 bytes together.
        512 + self.agent_id.as_str().len()
            + self.framework_id.as_str().len()
            + self.task_id.as_str().len()
            + self.status.reason.len()
            + self.status.message.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_wire_names() {
        let u = StatusUpdate::new(
            AgentId::new("a1").expect("id"),
            FrameworkId::new("f1").expect("id"),
            TaskId::new("t1").expect("id"),
            TaskState::Failed,
            StatusSource::Executor,
            "command_exited",
            "exited with status 3",
        )
        .with_exit_code(Some(3));
        let json = serde_json::to_string(&u).expect("encode");
        assert!(json.contains("\"TASK_FAILED\""), "{json}");
        assert!(json.contains("\"SOURCE_EXECUTOR\""), "{json}");
        let back: StatusUpdate = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, u);
        let p = u.to_proto();
        assert_eq!(p.state, v1::TaskState::TaskFailed as i32);
        assert_eq!(p.exit_code, Some(3));
        assert_eq!(p.uuid, u.status.uuid.to_string());
    }

    /// Checkpoints written before the status had its own type (one flat object, exit code
    /// and signal omitted when absent) still read.
    #[test]
    fn older_checkpoints_read() {
        let old = r#"{"agent_id":"a1","framework_id":"f1","task_id":"t1",
            "uuid":"01234567-89ab-cdef-0123-456789abcdef","state":"TASK_RUNNING",
            "source":"SOURCE_AGENT","reason":"r","message":"m","timestamp_ms":7}"#;
        let u: StatusUpdate = serde_json::from_str(old).expect("decode");
        assert_eq!(u.task_id.as_str(), "t1");
        assert_eq!(u.status.state, TaskState::Running);
        assert_eq!(u.status.source, StatusSource::Agent);
        assert_eq!(u.status.exit_code, None);
        assert_eq!(u.status.at_ms, 7);
    }

    /// What this build writes, an agent of the build before reads (a downgrade keeps its
    /// checkpoints): its update type, field for field, takes the absent exit code and signal
    /// now written as `null`.
    #[test]
    fn the_previous_build_reads_what_this_one_writes() {
        #[derive(Deserialize, Debug, PartialEq)]
        enum EarlierSource {
            #[serde(rename = "SOURCE_EXECUTOR")]
            Executor,
            #[serde(rename = "SOURCE_AGENT")]
            Agent,
        }
        #[derive(Deserialize, Debug)]
        struct Earlier {
            agent_id: AgentId,
            framework_id: FrameworkId,
            task_id: TaskId,
            uuid: uuid::Uuid,
            state: TaskState,
            source: EarlierSource,
            reason: String,
            message: String,
            #[serde(default)]
            exit_code: Option<i32>,
            #[serde(default)]
            signal: Option<i32>,
            timestamp_ms: u64,
        }
        let u = StatusUpdate::new(
            AgentId::new("a1").expect("id"),
            FrameworkId::new("f1").expect("id"),
            TaskId::new("t1").expect("id"),
            TaskState::Killed,
            StatusSource::Agent,
            "killed",
            "killed by SIGTERM",
        )
        .with_signal(Some(15));
        let json = serde_json::to_string(&u).expect("encode");
        let earlier: Earlier = serde_json::from_str(&json).expect("the previous build decodes it");
        assert_eq!(earlier.agent_id, u.agent_id);
        assert_eq!(earlier.framework_id, u.framework_id);
        assert_eq!(earlier.task_id, u.task_id);
        assert_eq!(earlier.uuid, u.status.uuid);
        assert_eq!(earlier.state, u.status.state);
        assert_eq!(earlier.source, EarlierSource::Agent);
        assert_eq!(
            (earlier.reason, earlier.message),
            (u.status.reason.clone(), u.status.message.clone())
        );
        assert_eq!((earlier.exit_code, earlier.signal), (None, Some(15)));
        assert_eq!(earlier.timestamp_ms, u.status.at_ms);
    }

    #[test]
    fn long_reason_is_cut() {
        let u = StatusUpdate::new(
            AgentId::new("a1").expect("id"),
            FrameworkId::new("f1").expect("id"),
            TaskId::new("t1").expect("id"),
            TaskState::Failed,
            StatusSource::Agent,
            &"é".repeat(MAX_REASON_BYTES),
            "m",
        );
        assert!(u.status.reason.len() <= MAX_REASON_BYTES);
    }
}
