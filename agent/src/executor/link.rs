//! The executor's end of the agent socket: keeps a connection to the agent, (re)sends every
//! update the agent has not acknowledged, in order, and passes kill requests on.
//!
//! Owns the list of unacknowledged updates. It survives the agent: when the connection breaks
//! it reconnects with backoff and sends `hello` and the whole unacknowledged list again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::protocol::{read_message, write_message, FromExecutor, ProtocolError, ToExecutor};
use crate::update::StatusUpdate;

/// First wait before reconnecting to the agent; doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// Kill requests buffered between the link and the executor's main loop (more are dropped:
/// one pending is enough).
const KILL_DEPTH: usize = 8;

/// The executor's side of the link.
pub struct Link {
    updates: mpsc::Sender<StatusUpdate>,
    /// Kill requests from the agent: the grace period.
    pub kills: mpsc::Receiver<Duration>,
    /// How many updates the agent has acknowledged so far.
    pub acked: watch::Receiver<usize>,
    sent: usize,
}

impl Link {
    /// Starts the link task. It runs until the executor drops the [`Link`] and every update is
    /// acknowledged, or the runtime stops.
    pub fn start(socket: PathBuf, hello: FromExecutor) -> Link {
        let (updates, updates_rx) = mpsc::channel(64);
        let (kill_tx, kills) = mpsc::channel(KILL_DEPTH);
        let (acked_tx, acked) = watch::channel(0usize);
        tokio::spawn(run(socket, hello, updates_rx, kill_tx, acked_tx));
        Link {
            updates,
            kills,
            acked,
            sent: 0,
        }
    }

    /// Queues `update` for the agent.
    pub async fn send(&mut self, update: StatusUpdate) {
        self.sent += 1;
        if self.updates.send(update).await.is_err() {
            tracing::error!("the agent link stopped; the update is lost");
        }
    }

    /// Waits until the agent has acknowledged every update sent; false after `timeout`.
    pub async fn all_acked(&mut self, timeout: Duration) -> bool {
        let sent = self.sent;
        tokio::time::timeout(timeout, self.acked.wait_for(|n| *n >= sent))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }
}

/// Reads messages from the agent into a channel (a read is not cancel-safe, so it gets its
/// own task instead of a `select!` branch).
fn spawn_reader(
    read: tokio::net::unix::OwnedReadHalf,
) -> (
    mpsc::Receiver<Result<ToExecutor, ProtocolError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(16);
    let handle = tokio::spawn(async move {
        let mut read = BufReader::new(read);
        loop {
            match read_message::<_, ToExecutor>(&mut read).await {
                Ok(Some(m)) => {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    (rx, handle)
}

async fn run(
    socket: PathBuf,
    hello: FromExecutor,
    mut updates_rx: mpsc::Receiver<StatusUpdate>,
    kill_tx: mpsc::Sender<Duration>,
    acked_tx: watch::Sender<usize>,
) {
    let mut unacked: VecDeque<StatusUpdate> = VecDeque::new();
    let mut open = true;
    let mut backoff = RECONNECT_MIN;
    let mut connected_once = false;
    loop {
        if !open && unacked.is_empty() {
            return;
        }
        let stream = match UnixStream::connect(&socket).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(socket = %socket.display(), error = %e, "cannot reach the agent; retrying");
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        u = updates_rx.recv(), if open => match u {
                            Some(u) => unacked.push_back(u),
                            None => open = false,
                        },
                    }
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        backoff = RECONNECT_MIN;
        if connected_once {
            tracing::info!(unacked = unacked.len(), "reconnected to the agent");
        }
        connected_once = true;
        let (read, mut write) = stream.into_split();
        let (mut incoming, reader) = spawn_reader(read);
        let result: Result<(), ProtocolError> = async {
            write_message(&mut write, &hello).await?;
            for u in &unacked {
                write_message(&mut write, &FromExecutor::Update { update: u.clone() }).await?;
            }
            loop {
                if !open && unacked.is_empty() {
                    return Ok(());
                }
                tokio::select! {
                    u = updates_rx.recv(), if open => match u {
                        Some(u) => {
                            unacked.push_back(u.clone());
                            write_message(&mut write, &FromExecutor::Update { update: u }).await?;
                        }
                        None => open = false,
                    },
                    m = incoming.recv() => match m {
                        Some(Ok(ToExecutor::Ack { uuid })) => {
                            let before = unacked.len();
                            unacked.retain(|u| u.status.uuid != uuid);
                            if unacked.len() < before {
                                acked_tx.send_modify(|n| *n += before - unacked.len());
                            }
                        }
                        Some(Ok(ToExecutor::Kill { grace_ms })) => {
                            // Never wait here: once the command has ended nobody reads the
                            // kills, and a full queue means kills are pending anyway (a
                            // framework repeating KILL sends bursts of them).
                            let _ = kill_tx.try_send(Duration::from_millis(grace_ms));
                        }
                        Some(Err(e)) => return Err(e),
                        None => {
                            return Err(ProtocolError::Io(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "the agent closed the connection",
                            )))
                        }
                    },
                }
            }
        }
        .await;
        reader.abort();
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, unacked = unacked.len(), "lost the agent; reconnecting")
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
