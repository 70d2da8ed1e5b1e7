//! [`StatusUpdate`]: one task status update as the agent keeps it, checkpoints it, passes it
//! between executor and agent, and sends it to the master.
//!
//! The uuid is made once, by whoever creates the update (the executor, or the agent itself
//! when the executor could not report), so that every resend of an update is recognisably the
//! same update all the way to the master, which applies a uuid at most once.

use std::time::{SystemTime, UNIX_EPOCH};

use drover_proto::v1;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{AgentId, FrameworkId, TaskId};

/// Longest message kept in an update, bytes; longer ones are cut (at a char boundary).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest reason kept in an update, bytes.
pub const MAX_REASON_BYTES: usize = 128;

/// The task states: the model's, the same the master applies (the agent makes only the
/// forward ones and the terminal ones an executor can end in).
pub use drover_model::TaskState;

/// Who made an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    #[serde(rename = "SOURCE_EXECUTOR")]
    Executor,
    #[serde(rename = "SOURCE_AGENT")]
    Agent,
}

impl Source {
    pub fn to_proto(self) -> v1::StatusSource {
        match self {
            Source::Executor => v1::StatusSource::SourceExecutor,
            Source::Agent => v1::StatusSource::SourceAgent,
        }
    }
}

/// One status update of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub agent_id: AgentId,
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub uuid: Uuid,
    pub state: TaskState,
    pub source: Source,
    /// Machine-readable cause: `command_exited`, `command_signaled`, `killed`,
    /// `executor_failed`, ….
    pub reason: String,
    /// For humans: "exited with status 3".
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub timestamp_ms: u64,
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl StatusUpdate {
    /// A new update (fresh uuid, stamped now) with no exit code or signal.
    pub fn new(
        agent_id: AgentId,
        framework_id: FrameworkId,
        task_id: TaskId,
        state: TaskState,
        source: Source,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            agent_id,
            framework_id,
            task_id,
            uuid: Uuid::new_v4(),
            state,
            source,
            reason: cut(reason.to_string(), MAX_REASON_BYTES),
            message: cut(message.into(), MAX_MESSAGE_BYTES),
            exit_code: None,
            signal: None,
            timestamp_ms: now_ms(),
        }
    }

    pub fn with_exit_code(mut self, code: Option<i32>) -> Self {
        self.exit_code = code;
        self
    }

    pub fn with_signal(mut self, signal: Option<i32>) -> Self {
        self.signal = signal;
        self
    }

    /// Makes the free-text fields fit their limits (an update read from an executor may not).
    pub fn bounded(mut self) -> Self {
        self.reason = cut(self.reason, MAX_REASON_BYTES);
        self.message = cut(self.message, MAX_MESSAGE_BYTES);
        self
    }

    pub fn to_proto(&self) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: self.task_id.to_string(),
            agent_id: self.agent_id.to_string(),
            state: self.state.to_proto() as i32,
            uuid: self.uuid.to_string(),
            source: self.source.to_proto() as i32,
            reason: self.reason.clone(),
            message: self.message.clone(),
            exit_code: self.exit_code,
            signal: self.signal,
            timestamp_ms: self.timestamp_ms,
        }
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
            + self.reason.len()
            + self.message.len()
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
            Source::Executor,
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
        assert_eq!(p.uuid, u.uuid.to_string());
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let s = cut("é".repeat(MAX_MESSAGE_BYTES), MAX_MESSAGE_BYTES);
        assert!(s.len() <= MAX_MESSAGE_BYTES);
    }
}
