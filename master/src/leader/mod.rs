//! The leader's offer cycle: what a master does only while it leads.
//!
//! Owns the start and stop of the offer cycle (the [`engine`] driven by its [`runtime`]): a
//! watcher follows openraft's metrics and, when this replica becomes leader, starts a fresh
//! engine (which rebuilds its soft state — the allocator, offer timers, agent liveness — from
//! the replicated registry); when it stops leading, the runtime is dropped with every
//! framework stream it held, so frameworks re-subscribe to the new leader. The gRPC services
//! reach the current runtime through a [`LeaderHandle`]; on a follower they answer
//! UNAVAILABLE with the leader hint.
//!
//! Everything the engine changes goes through Raft first; its own state is only what can be
//! rebuilt (DESIGN.md, "Replicated state": soft state on the leader only).

pub mod agents;
pub mod answer;
pub mod convert;
pub mod engine;
pub mod runtime;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::config::OfferCycleConfig;
use crate::raft::MasterId;
use crate::replicated::Replicated;

pub use answer::Reply;
pub use engine::{Call, Caller, Command, StreamKey};
pub use runtime::{EventSender, Request, Waitable};

/// Commands waiting for the engine; a full queue makes callers wait (back-pressure).
pub const MAX_QUEUED_COMMANDS: usize = 16 * 1024;

/// The services' door to the offer cycle of the current leadership, if this replica leads.
#[derive(Clone)]
pub struct LeaderHandle {
    current: Arc<Mutex<Option<mpsc::Sender<Request>>>>,
    /// Ids of callers' answers, unique across leaderships.
    next_call: Arc<AtomicU64>,
    replicated: Replicated,
    timeout: Duration,
}

impl LeaderHandle {
    fn sender(&self) -> Result<mpsc::Sender<Request>, Status> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match current {
            Some(tx) if !tx.is_closed() => Ok(tx),
            _ => {
                // Not leading (the hint says who is), or leading but not ready yet.
                self.replicated.check_leader().map_err(Status::from)?;
                let mut s = Status::unavailable(
                    "this master has just become leader and is rebuilding its offer cycle; retry",
                );
                s.metadata_mut().insert(
                    drover_proto::metadata::NOT_LEADER,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                Err(s)
            }
        }
    }

    /// Sends a command built around a reply handle and waits for the answer, within the
    /// write timeout (past it, the outcome is unknown: DEADLINE_EXCEEDED).
    pub async fn ask<T: Waitable>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, Status> {
        self.request(|reply, _| make(reply), None).await
    }

    /// As [`Self::ask`] for a SUBSCRIBE: `events` is the stream the framework's events go to,
    /// named in the command by the key `make` is given.
    pub async fn subscribe(
        &self,
        events: EventSender,
        make: impl FnOnce(Reply<()>, StreamKey) -> Command,
    ) -> Result<(), Status> {
        self.request(make, Some(events)).await
    }

    async fn request<T: Waitable>(
        &self,
        make: impl FnOnce(Reply<T>, StreamKey) -> Command,
        events: Option<EventSender>,
    ) -> Result<T, Status> {
        let tx = self.sender()?;
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let request = Request {
            call,
            command: make(Reply::new(call), StreamKey(call)),
            waiter: T::waiter(reply),
            events,
        };
        let work = async {
            tx.send(request)
                .await
                .map_err(|_| Status::unavailable("leadership ended; retry at the new leader"))?;
            rx.await
                .map_err(|_| Status::unavailable("leadership ended; retry at the new leader"))?
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}; the outcome is unknown",
                self.timeout
            ))),
        }
    }
}

/// Starts the watcher that runs the offer cycle whenever this replica leads. Returns the handle
/// the services use and the watcher's future (to spawn).
pub fn start(
    me: MasterId,
    replicated: Replicated,
    config: OfferCycleConfig,
    timeout: Duration,
    agents: drover_client::channel::Dialer,
) -> (LeaderHandle, impl std::future::Future<Output = ()> + Send) {
    let handle = LeaderHandle {
        current: Arc::new(Mutex::new(None)),
        next_call: Arc::new(AtomicU64::new(0)),
        replicated: replicated.clone(),
        timeout,
    };
    let current = handle.current.clone();
    let watcher = async move {
        let mut metrics = replicated.raft().metrics();
        let mut running: Option<(u64, tokio::task::JoinHandle<()>)> = None;
        loop {
            let (leading, term) = {
                let m = metrics.borrow_and_update();
                (
                    m.state == ServerState::Leader && m.current_leader == Some(me),
                    m.current_term,
                )
            };
            let stale = running
                .as_ref()
                .is_some_and(|(t, h)| !leading || *t != term || h.is_finished());
            if stale {
                if let Some((t, h)) = running.take() {
                    h.abort();
                    *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    tracing::info!(term = t, "offer cycle stopped: no longer leader");
                }
            }
            if leading && running.is_none() {
                let (tx, rx) = mpsc::channel(MAX_QUEUED_COMMANDS);
                let r =
                    runtime::Runtime::new(me, replicated.clone(), config.clone(), agents.clone());
                let h = tokio::spawn(r.run(rx));
                *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
                tracing::info!(term, "offer cycle started: this master leads");
                running = Some((term, h));
            }
            // Wake on a metrics change, or when the offer cycle ends by itself (it should not:
            // then it is restarted rather than leaving the services answering "retry").
            let changed = match running.as_mut() {
                Some((_, h)) => tokio::select! {
                    c = metrics.changed() => c.is_ok(),
                    r = h => {
                        if let Err(e) = r {
                            if e.is_panic() {
                                tracing::error!(error = %e, "the offer cycle panicked; restarting it");
                            }
                        }
                        running = None;
                        *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        true
                    }
                },
                None => metrics.changed().await.is_ok(),
            };
            if !changed {
                if let Some((_, h)) = running.take() {
                    h.abort();
                }
                return;
            }
        }
    };
    (handle, watcher)
}
