//! The executor ↔ agent protocol, over the agent's Unix socket (`WORK_DIR/agent.sock`).
//!
//! JSON lines, one message per line, at most [`MAX_LINE_BYTES`] each:
//!
//! ```text
//! executor → agent   {"type":"hello","framework_id":"…","task_id":"…","pid":123}
//!                    {"type":"update","update":{…StatusUpdate…}}
//! agent → executor   {"type":"ack","uuid":"…"}             the update is checkpointed (fsynced)
//!                    {"type":"kill","grace_ms":3000}        SIGTERM, then SIGKILL after grace_ms
//! ```
//!
//! The executor says `hello` first on every connection, then sends every update it has not
//! seen acknowledged, in order, and each new one as it happens. The agent acknowledges an
//! update only after the status update manager has checkpointed it, so an executor that keeps
//! its unacknowledged updates and sends them again after a reconnect (the agent restarted, the
//! connection broke) loses none; the uuid makes the resend harmless. An executor exits once its
//! terminal update is acknowledged. Either side closes the connection on a malformed line.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::ids::{FrameworkId, TaskId};
use crate::update::StatusUpdate;

/// Longest line either side sends or accepts, bytes (newline included).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromExecutor {
    Hello {
        framework_id: FrameworkId,
        task_id: TaskId,
        pid: u32,
    },
    Update {
        update: StatusUpdate,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToExecutor {
    Ack { uuid: Uuid },
    Kill { grace_ms: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read_message<R, T>(reader: &mut R) -> Result<Option<T>, ProtocolError>
where
    R: AsyncBufRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut line = Vec::new();
    let n = reader
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if n >= MAX_LINE_BYTES {
            return Err(ProtocolError::TooLong);
        }
        return Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of a line",
        )));
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

/// Writes one message and flushes it.
pub async fn write_message<W, T>(writer: &mut W, message: &T) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtocolError::TooLong);
    }
    writer.write_all(&line).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    #[tokio::test]
    async fn messages_round_trip_and_long_lines_are_refused() {
        let (a, b) = tokio::io::duplex(4 * MAX_LINE_BYTES);
        let (mut a, mut b) = (a, BufReader::new(b));
        let kill = ToExecutor::Kill { grace_ms: 5 };
        write_message(&mut a, &kill).await.expect("write");
        let got: Option<ToExecutor> = read_message(&mut b).await.expect("read");
        assert_eq!(got, Some(kill));

        a.write_all(&vec![b'x'; MAX_LINE_BYTES + 10])
            .await
            .expect("write");
        a.write_all(b"\n").await.expect("write");
        let r: Result<Option<ToExecutor>, _> = read_message(&mut b).await;
        assert!(matches!(r, Err(ProtocolError::TooLong)), "{r:?}");

        let (a, b) = tokio::io::duplex(1024);
        let (mut a, mut b) = (a, BufReader::new(b));
        a.write_all(b"{\"type\":\"nonsense\"}\n")
            .await
            .expect("write");
        let r: Result<Option<ToExecutor>, _> = read_message(&mut b).await;
        assert!(matches!(r, Err(ProtocolError::Malformed(_))), "{r:?}");
        drop(a);
        let r: Option<ToExecutor> = read_message(&mut b).await.expect("clean end");
        assert!(r.is_none());
    }
}
