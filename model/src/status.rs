//! A task status: the core of a status update as every part of Drover records it (the agent's
//! checkpoints and its link to executors, the master's log, snapshots and framework events),
//! its source, and its one wire form.
//!
//! Owns what an update says about its task (state, cause, exit) and the uuid that makes every
//! resend of it recognisably the same update. Which task, framework and agent it belongs to is
//! kept beside it by each holder: the agent addresses it in full, the master files it under its
//! task record.
//!
//! Encoded, it keeps two existing formats byte for byte: in JSON (the agent's checkpoints and
//! executor pipe) fields and enums carry their wire names (`timestamp_ms`, `SOURCE_EXECUTOR`);
//! in postcard (the master's log and snapshots) fields and variants are positional, so the
//! order of both declarations below is part of the master's on-disk format.

use drover_proto::v1;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{unix_ms, TaskState};

/// Longest message kept in a status, bytes; longer ones are cut at a char boundary.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest reason kept in a status made here, bytes (cut likewise).
pub const MAX_REASON_BYTES: usize = 128;

/// Who made a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StatusSource {
    /// The task's executor (the process that ran it).
    #[serde(rename = "SOURCE_EXECUTOR")]
    Executor,
    /// The agent, when the executor could not report (it died, or never started).
    #[serde(rename = "SOURCE_AGENT")]
    Agent,
    /// The master, for what it decided itself (agent unreachable or gone, a kill with no agent).
    #[serde(rename = "SOURCE_MASTER")]
    Master,
}

impl StatusSource {
    pub fn to_proto(self) -> v1::StatusSource {
        match self {
            StatusSource::Executor => v1::StatusSource::SourceExecutor,
            StatusSource::Agent => v1::StatusSource::SourceAgent,
            StatusSource::Master => v1::StatusSource::SourceMaster,
        }
    }

    /// The source a wire value names; UNSPECIFIED and unknown numbers name none.
    pub fn from_proto(raw: i32) -> Option<StatusSource> {
        match v1::StatusSource::try_from(raw).ok()? {
            v1::StatusSource::SourceExecutor => Some(StatusSource::Executor),
            v1::StatusSource::SourceAgent => Some(StatusSource::Agent),
            v1::StatusSource::SourceMaster => Some(StatusSource::Master),
            v1::StatusSource::SourceUnspecified => None,
        }
    }
}

/// One status of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// Made once by whoever creates the status; resends carry it unchanged, and the master
    /// applies a uuid at most once.
    pub uuid: Uuid,
    pub state: TaskState,
    pub source: StatusSource,
    /// Machine-readable cause: `command_exited`, `command_signaled`, `killed`,
    /// `executor_failed`, `agent_unreachable`, ….
    pub reason: String,
    /// For humans: "exited with status 3".
    pub message: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    /// When its source made it, milliseconds since the Unix epoch.
    #[serde(rename = "timestamp_ms")]
    pub at_ms: u64,
}

impl TaskStatus {
    /// A new status (fresh uuid, stamped now) with no exit code or signal, its text
    /// [`bounded`](TaskStatus::bounded).
    pub fn new(
        state: TaskState,
        source: StatusSource,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            uuid: Uuid::new_v4(),
            state,
            source,
            reason: reason.into(),
            message: message.into(),
            exit_code: None,
            signal: None,
            at_ms: unix_ms(),
        }
        .bounded()
    }

    /// The status with its reason and message cut to [`MAX_REASON_BYTES`] and
    /// [`MAX_MESSAGE_BYTES`] (one read from an executor may be longer).
    pub fn bounded(mut self) -> Self {
        self.reason = cut(self.reason, MAX_REASON_BYTES);
        self.message = cut(self.message, MAX_MESSAGE_BYTES);
        self
    }

    /// This status on the wire, for `task` on `agent`.
    pub fn to_proto(&self, task: &str, agent: &str) -> v1::TaskStatus {
        v1::TaskStatus {
            task_id: task.to_string(),
            agent_id: agent.to_string(),
            state: self.state.to_proto() as i32,
            uuid: self.uuid.to_string(),
            source: self.source.to_proto() as i32,
            reason: self.reason.clone(),
            message: self.message.clone(),
            exit_code: self.exit_code,
            signal: self.signal,
            timestamp_ms: self.at_ms,
            healthy: self.healthy(),
            executor_id: String::new(),
        }
    }

    /// What the task's health check found, when this status reports it (see
    /// [`crate::health`]: the reason says it).
    pub fn healthy(&self) -> Option<bool> {
        crate::health::healthy_of(&self.reason)
    }
}

/// `s` cut to at most `max` bytes, at a char boundary.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TaskStatus {
        TaskStatus {
            uuid: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            state: TaskState::Failed,
            source: StatusSource::Executor,
            reason: "command_exited".into(),
            message: "exited with status 3".into(),
            exit_code: Some(3),
            signal: None,
            at_ms: 1_700_000_000_000,
        }
    }

    /// The agent's checkpoints hold statuses written before this type existed (exit code and
    /// signal omitted when absent); they still read, and what is written now reads back.
    #[test]
    fn json_keeps_the_wire_names_and_reads_older_checkpoints() {
        let old = r#"{"uuid":"01234567-89ab-cdef-0123-456789abcdef","state":"TASK_FAILED",
            "source":"SOURCE_EXECUTOR","reason":"command_exited",
            "message":"exited with status 3","exit_code":3,"timestamp_ms":1700000000000}"#;
        let read: TaskStatus = serde_json::from_str(old).expect("decode");
        assert_eq!(read, sample());
        let json = serde_json::to_string(&sample()).expect("encode");
        assert!(json.contains("\"timestamp_ms\":1700000000000"), "{json}");
        assert!(json.contains("\"SOURCE_EXECUTOR\""), "{json}");
        assert_eq!(
            serde_json::from_str::<TaskStatus>(&json).expect("decode"),
            sample()
        );
    }

    #[test]
    fn sources_round_trip_through_the_wire() {
        for s in [
            StatusSource::Executor,
            StatusSource::Agent,
            StatusSource::Master,
        ] {
            assert_eq!(StatusSource::from_proto(s.to_proto() as i32), Some(s));
        }
        assert_eq!(StatusSource::from_proto(0), None);
        assert_eq!(StatusSource::from_proto(99), None);
    }

    #[test]
    fn to_proto_carries_every_field() {
        let p = sample().to_proto("t1", "a1");
        assert_eq!(p.task_id, "t1");
        assert_eq!(p.agent_id, "a1");
        assert_eq!(p.state, v1::TaskState::TaskFailed as i32);
        assert_eq!(p.source, v1::StatusSource::SourceExecutor as i32);
        assert_eq!(p.uuid, "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(p.exit_code, Some(3));
        assert_eq!(p.timestamp_ms, 1_700_000_000_000);
        assert_eq!(p.healthy, None);
        let mut h = sample();
        h.reason = crate::health::REASON_UNHEALTHY.into();
        assert_eq!(h.to_proto("t1", "a1").healthy, Some(false));
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let s = cut("é".repeat(MAX_MESSAGE_BYTES), MAX_MESSAGE_BYTES);
        assert!(s.len() <= MAX_MESSAGE_BYTES);
        assert!(s.len() > MAX_MESSAGE_BYTES - 2);
        let new = TaskStatus::new(
            TaskState::Running,
            StatusSource::Agent,
            "r".repeat(200),
            "x".repeat(5000),
        );
        assert_eq!(new.message.len(), MAX_MESSAGE_BYTES);
        assert_eq!(new.reason.len(), MAX_REASON_BYTES);
    }
}
