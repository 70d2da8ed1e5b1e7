//! The agent's end of the executor socket (`WORK_DIR/agent.sock`; protocol in
//! [`crate::protocol`]).
//!
//! Owns the connections: for each, it learns the task from `hello`, registers the connection
//! with the [`Launcher`] (which sends kill requests down it), and for each update from the
//! executor: has the status update manager checkpoint it, tells the launcher the task's new
//! state, and only then acknowledges it to the executor. Anything it cannot handle (a
//! malformed line, an update for another task, a full queue, a failed checkpoint) closes the
//! connection without acknowledging, so the executor reconnects and sends it again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::executor::container::REASON_IMAGE_PULL_FAILED;
use crate::launcher::Launcher;
use crate::metrics as m;
use crate::protocol::{read_message, write_message, FromExecutor, ProtocolError, ToExecutor};
use crate::status_updates::StatusUpdates;

/// Most executors connected at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("executor socket {path}: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the socket at `path` (mode 0600), replacing a stale one from an earlier life.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let err = |source| SocketError::Bind {
        path: path.display().to_string(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    // Only this user (the agent's, its executors') may report task status.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(err)?;
    Ok(listener)
}

/// Accepts executors until dropped (the caller owns the task running this).
pub async fn serve(listener: UnixListener, launcher: Launcher, updates: StatusUpdates) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "executor socket accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(max = MAX_CONNECTIONS, "too many executor connections; refusing one");
                    continue;
                };
                let (launcher, updates) = (launcher.clone(), updates.clone());
                conns.spawn(async move {
                    metrics::gauge!(m::EXECUTOR_CONNECTIONS).increment(1.0);
                    if let Err(e) = handle(stream, launcher, updates).await {
                        tracing::warn!(error = %e, "executor connection closed");
                    }
                    metrics::gauge!(m::EXECUTOR_CONNECTIONS).decrement(1.0);
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("no hello within {0:?}")]
    NoHello(Duration),
    #[error("{0}")]
    Refused(String),
}

async fn handle(
    stream: UnixStream,
    launcher: Launcher,
    updates: StatusUpdates,
) -> Result<(), ConnError> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_message::<_, FromExecutor>(&mut read))
        .await
        .map_err(|_| ConnError::NoHello(HELLO_TIMEOUT))??;
    let Some(FromExecutor::Hello {
        framework_id,
        task_id,
        pid,
    }) = hello
    else {
        return Err(ConnError::Refused("the first message must be hello".into()));
    };
    let (kill_tx, mut kill_rx) = mpsc::channel::<ToExecutor>(8);
    launcher
        .connected(framework_id.clone(), task_id.clone(), kill_tx.clone())
        .await
        .map_err(|e| ConnError::Refused(e.to_string()))?;
    tracing::debug!(task = %task_id, framework = %framework_id, executor_pid = pid, "executor connected");

    // Reads go through their own task: a read is not cancel-safe in a select!.
    let (in_tx, mut incoming) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let m = read_message::<_, FromExecutor>(&mut read).await;
            let end = !matches!(m, Ok(Some(_)));
            if in_tx.send(m).await.is_err() || end {
                return;
            }
        }
    });
    let result: Result<(), ConnError> = async {
        loop {
            tokio::select! {
                m = incoming.recv() => match m {
                    Some(Ok(Some(FromExecutor::Update { update }))) => {
                        if update.framework_id != framework_id || update.task_id != task_id {
                            return Err(ConnError::Refused(format!(
                                "update for task {} of framework {} on the connection of task {task_id}",
                                update.task_id, update.framework_id
                            )));
                        }
                        let (uuid, state) = (update.status.uuid, update.status.state);
                        let pull_failed = update.status.reason == REASON_IMAGE_PULL_FAILED;
                        updates
                            .update(update)
                            .await
                            .map_err(|e| ConnError::Refused(e.to_string()))?;
                        launcher
                            .state_seen(framework_id.clone(), task_id.clone(), state, pull_failed)
                            .await;
                        write_message(&mut write, &ToExecutor::Ack { uuid }).await?;
                    }
                    Some(Ok(Some(FromExecutor::Hello { .. }))) => {
                        return Err(ConnError::Refused("hello twice".into()))
                    }
                    Some(Ok(None)) | None => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                },
                Some(kill) = kill_rx.recv() => write_message(&mut write, &kill).await?,
            }
        }
    }
    .await;
    reader.abort();
    launcher.disconnected(framework_id, task_id, kill_tx).await;
    result
}
