//! The framework driver: what any Rust framework (the `drover scheduler`, `drover run`, a
//! user's own) uses to speak the framework API (`drover.v1.Scheduler`) to the masters.
//!
//! [`Driver::start`] spawns one background task (`connection`) that owns the subscription: it
//! finds the leader through [`MasterClient`], subscribes, keeps the framework id and the live
//! stream id, hands every event to the framework through a bounded [`EventStream`], and
//! re-subscribes with the framework id (bounded exponential backoff) when the stream breaks,
//! ends, or is silent for `heartbeat_misses` heartbeat intervals. The [`Driver`] handle is
//! cheap to clone; its calls go straight to the leader, stamped with the live session.
//!
//! What the driver never does: repeat an ACCEPT whose outcome is unknown (that is the caller's
//! decision, see [`DriverError::Ambiguous`]), acknowledge updates on the framework's behalf, or
//! de-duplicate updates (after a failover the master re-sends what was not acknowledged; the
//! framework recognises a repeat by its uuid).
//!
//! The driver stops when [`Driver::stop`] or a successful [`Driver::teardown`] is called, when
//! the master sends ERROR, when the [`EventStream`] is dropped, or when every [`Driver`] handle
//! is dropped; the event stream then ends.

mod connection;
mod http;
pub mod mesos;
mod rpc;
mod types;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use drover_client::{MasterClient, RetryPolicy};
use drover_proto::v1::{self, TaskInfo, TaskStatus};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Code, Status};

use connection::{Connection, Control, LinkState, Session};
use rpc::{Call, Transport};

pub use types::{
    is_terminal, AgentId, DriverEvent, ExecutorId, FrameworkId, FrameworkInfo, Offer, OfferId,
    TaskId,
};

/// Most pending control requests (stop, teardown) from the handles to the background task.
const CONTROL_BUFFER: usize = 8;
/// How many times a call is re-sent after the master refused it because the stream it named
/// was replaced meanwhile (a failover under the call). Each re-send is certainly safe: the
/// refusal means the call was not applied.
const MAX_STALE_STREAM_RETRIES: u32 = 2;
/// Most offer ids in one ACCEPT or DECLINE, and most tasks in one ACCEPT.
pub const MAX_IDS_PER_CALL: usize = 1000;

/// Tunables; [`Default`] suits a framework on a LAN.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// Events buffered for the framework before the driver stops reading the stream.
    pub event_buffer: usize,
    /// Heartbeat intervals of silence after which the stream is given up and re-opened.
    pub heartbeat_misses: u32,
    /// Total time one call may take, following the leader through a failover.
    pub call_timeout: Duration,
    /// Time one attempt on one master may take (so one hung master does not eat
    /// `call_timeout`).
    pub attempt_timeout: Duration,
    /// Time one subscription round (over every master) may take before backing off.
    pub subscribe_timeout: Duration,
    /// First wait before re-subscribing; doubles after each failure up to the max, and is
    /// reset once a subscription delivered an event.
    pub resubscribe_backoff_start: Duration,
    pub resubscribe_backoff_max: Duration,
    /// Longest wait between tries of the masters while none leads (an election): short, so
    /// that a framework reaches a new leader soon after it is elected. A framework is one
    /// client, so asking every master ten times a second during an election costs little.
    pub leader_retry_max: Duration,
    /// Source address of the driver's connections (None lets the kernel choose); a chaos run
    /// gives each scheduler its own so that the fault layer can cut it off.
    pub bind_ip: Option<std::net::IpAddr>,
    /// Mutual TLS to the masters, over either API.
    pub tls: Option<drover_tls::ClientTls>,
    /// Which of the masters' framework APIs the driver speaks.
    pub api: Api,
}

/// The masters' framework APIs: Drover's gRPC service, or the Mesos v1 scheduler HTTP API
/// (`POST /api/v1/scheduler`, Mesos JSON, as an unchanged Mesos framework speaks it). The
/// driver behaves the same over both, but for what Mesos cannot say: an ACCEPT on offers
/// that are gone is answered `202` and its tasks come back TASK_DROPPED (or TASK_LOST), one
/// ACKNOWLEDGE is sent per update, and statuses carry no exit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    #[default]
    Grpc,
    Http,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            event_buffer: 64,
            heartbeat_misses: 3,
            call_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            subscribe_timeout: Duration::from_secs(15),
            resubscribe_backoff_start: Duration::from_millis(100),
            resubscribe_backoff_max: Duration::from_secs(5),
            leader_retry_max: Duration::from_millis(100),
            bind_ip: None,
            tls: None,
            api: Api::Grpc,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    #[error(
        "the driver is not subscribed to a master (not yet, or it is re-subscribing); \
         wait for DriverEvent::Subscribed"
    )]
    NotSubscribed,
    #[error("the driver has stopped")]
    Stopped,
    #[error("the outcome is unknown (the call may or may not have taken effect): {0}")]
    Ambiguous(String),
    #[error("the master refused the call: {:?}: {}", .0.code(), .0.message())]
    Rejected(Status),
    #[error("{0}")]
    Unavailable(String),
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("--masters: {0}")]
    Masters(String),
}

/// The events of one driver, in order. Ends when the driver stops.
pub struct EventStream {
    rx: mpsc::Receiver<DriverEvent>,
}

impl EventStream {
    /// The next event, or `None` once the driver has stopped.
    pub async fn next_event(&mut self) -> Option<DriverEvent> {
        self.rx.recv().await
    }
}

impl futures::Stream for EventStream {
    type Item = DriverEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DriverEvent>> {
        self.rx.poll_recv(cx)
    }
}

struct Shared {
    client: MasterClient,
    transport: Transport,
    state: watch::Receiver<LinkState>,
    control: mpsc::Sender<Control>,
    options: DriverOptions,
}

/// A handle on a running driver. Cheap to clone; the driver stops when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Driver {
    shared: Arc<Shared>,
}

impl Driver {
    /// Starts a driver for the framework `info` on the masters at `masters` (`host:port`, any
    /// subset of the cluster). Must be called within a tokio runtime. The first event is
    /// [`DriverEvent::Subscribed`] once a leader accepted the framework.
    pub fn start(
        masters: &[String],
        info: FrameworkInfo,
        options: DriverOptions,
    ) -> Result<(Driver, EventStream), DriverError> {
        let policy = RetryPolicy {
            deadline: options.call_timeout,
            backoff_max: options.leader_retry_max,
            ..RetryPolicy::default()
        };
        let dialer = drover_client::channel::Dialer {
            bind_ip: options.bind_ip,
            tls: options.tls.clone(),
        };
        let client = MasterClient::with_dialer(masters, policy, dialer)
            .map_err(|e| DriverError::Masters(e.to_string()))?;
        let transport = match options.api {
            Api::Grpc => Transport::Grpc,
            Api::Http => Transport::Http(
                http::MesosHttp::new(options.bind_ip, options.tls.as_ref())
                    .map_err(DriverError::Masters)?,
            ),
        };
        let (state_tx, state_rx) = watch::channel(LinkState {
            framework_id: info.id.clone(),
            ..LinkState::default()
        });
        let (events_tx, events_rx) = mpsc::channel(options.event_buffer.max(1));
        let (control_tx, control_rx) = mpsc::channel(CONTROL_BUFFER);
        let connection = Connection::new(
            client.clone(),
            transport.clone(),
            info,
            options.clone(),
            state_tx,
            events_tx,
            control_rx,
        );
        // Owned through the control channel: it ends when the last handle is dropped.
        tokio::spawn(connection.run());
        let driver = Driver {
            shared: Arc::new(Shared {
                client,
                transport,
                state: state_rx,
                control: control_tx,
                options,
            }),
        };
        Ok((driver, EventStream { rx: events_rx }))
    }

    /// The framework's id, once the master gave one (kept across re-subscriptions).
    pub fn framework_id(&self) -> Option<FrameworkId> {
        self.shared.state.borrow().framework_id.clone()
    }

    /// Whether a stream to the leader is open right now.
    pub fn is_subscribed(&self) -> bool {
        self.shared.state.borrow().session.is_some()
    }

    /// Launches `tasks` on the offers' resources, consuming the offers (which must all be of
    /// one agent); `refuse_seconds` filters the resources left unused. Sent at most once: on
    /// [`DriverError::Ambiguous`] the tasks may or may not have been launched; find out with
    /// [`Driver::reconcile`] before launching them again.
    pub async fn accept(
        &self,
        offer_ids: &[OfferId],
        tasks: Vec<TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), DriverError> {
        use drover_model::limits::{MAX_OFFERS_PER_ACCEPT, MAX_TASKS_PER_ACCEPT};
        check_ids("offer_ids", offer_ids.len())?;
        if offer_ids.len() > MAX_OFFERS_PER_ACCEPT {
            return Err(DriverError::InvalidArgument {
                field: "offer_ids",
                reason: format!("at most {MAX_OFFERS_PER_ACCEPT} per ACCEPT"),
            });
        }
        if tasks.len() > MAX_TASKS_PER_ACCEPT {
            return Err(DriverError::InvalidArgument {
                field: "tasks",
                reason: format!("at most {MAX_TASKS_PER_ACCEPT} per ACCEPT"),
            });
        }
        check_refuse(refuse_seconds)?;
        let offer_ids = ids(offer_ids);
        self.call(|caller| {
            Call::Accept(v1::AcceptRequest {
                caller: Some(caller),
                offer_ids: offer_ids.clone(),
                launch: tasks.clone(),
                refuse_seconds,
            })
        })
        .await
    }

    /// Returns offers unused; with `refuse_seconds` they are not offered again on those agents
    /// for that long (the master's default is 5 s).
    pub async fn decline(
        &self,
        offer_ids: &[OfferId],
        refuse_seconds: Option<f64>,
    ) -> Result<(), DriverError> {
        check_refuse(refuse_seconds)?;
        // Any number of offers (a lone framework on a large cluster gets one per agent), in
        // calls of at most MAX_IDS_PER_CALL.
        for chunk in offer_ids.chunks(MAX_IDS_PER_CALL) {
            let offer_ids = ids(chunk);
            self.call(|caller| {
                Call::Decline(v1::DeclineRequest {
                    caller: Some(caller),
                    offer_ids: offer_ids.clone(),
                    refuse_seconds,
                })
            })
            .await?;
        }
        Ok(())
    }

    /// No more offers until [`Driver::revive`].
    pub async fn suppress(&self) -> Result<(), DriverError> {
        self.call(|caller| {
            Call::Suppress(v1::SuppressRequest {
                caller: Some(caller),
            })
        })
        .await
    }

    /// Offers again, forgetting every decline filter.
    pub async fn revive(&self) -> Result<(), DriverError> {
        self.call(|caller| {
            Call::Revive(v1::ReviveRequest {
                caller: Some(caller),
            })
        })
        .await
    }

    /// Kills a task; `grace` overrides its SIGTERM-to-SIGKILL grace period. The outcome comes
    /// as an update (TASK_KILLED, or another terminal state if it ended first).
    pub async fn kill(&self, task_id: &TaskId, grace: Option<Duration>) -> Result<(), DriverError> {
        let task_id = task_id.as_str().to_string();
        let grace_seconds = grace.map(|g| g.as_secs_f64());
        self.call(|caller| {
            Call::Kill(v1::KillRequest {
                caller: Some(caller),
                task_id: task_id.clone(),
                grace_seconds,
            })
        })
        .await
    }

    /// Tells the master the framework has `status`, so it stops redelivering it. A no-op for
    /// an update without a uuid (an answer to RECONCILE).
    pub async fn acknowledge(&self, status: &TaskStatus) -> Result<(), DriverError> {
        self.acknowledge_all(std::slice::from_ref(status)).await
    }

    /// [`Driver::acknowledge`] for many updates at once, in calls of at most
    /// [`MAX_IDS_PER_CALL`] (a framework that receives updates faster than it can acknowledge
    /// them one by one collects them and acknowledges them together). Updates without a uuid
    /// are skipped.
    pub async fn acknowledge_all(&self, statuses: &[TaskStatus]) -> Result<(), DriverError> {
        let reliable: Vec<&TaskStatus> = statuses.iter().filter(|s| !s.uuid.is_empty()).collect();
        for chunk in reliable.chunks(MAX_IDS_PER_CALL) {
            self.call(|caller| Call::Acknowledge {
                request: v1::AcknowledgeRequest {
                    caller: Some(caller),
                    acks: chunk
                        .iter()
                        .map(|s| v1::Acknowledgement {
                            task_id: s.task_id.clone(),
                            uuid: s.uuid.clone(),
                        })
                        .collect(),
                },
                agents: chunk.iter().map(|s| s.agent_id.clone()).collect(),
            })
            .await?;
        }
        Ok(())
    }

    /// Asks for the latest state of `task_ids` (or, when empty, of every live task of the
    /// framework). The answers come as [`DriverEvent::Update`]s without a uuid; a task the
    /// master never heard of is answered TASK_UNKNOWN (TASK_LOST if the framework is not
    /// partition-aware), one whose ACCEPT is still being committed TASK_STAGING.
    pub async fn reconcile(&self, task_ids: &[TaskId]) -> Result<(), DriverError> {
        let tasks: Vec<(TaskId, Option<AgentId>)> =
            task_ids.iter().map(|t| (t.clone(), None)).collect();
        self.reconcile_on(&tasks).await
    }

    /// Explicit reconciliation naming the agent each task was launched on, when known: a task
    /// the master never heard of is then answered from that agent's state (TASK_UNREACHABLE,
    /// TASK_GONE, else TASK_UNKNOWN). An empty list reconciles every live task.
    pub async fn reconcile_on(
        &self,
        tasks: &[(TaskId, Option<AgentId>)],
    ) -> Result<(), DriverError> {
        if tasks.len() > MAX_IDS_PER_CALL {
            return Err(DriverError::InvalidArgument {
                field: "tasks",
                reason: format!("at most {MAX_IDS_PER_CALL} per call, got {}", tasks.len()),
            });
        }
        let tasks: Vec<v1::ReconcileTask> = tasks
            .iter()
            .map(|(t, a)| v1::ReconcileTask {
                task_id: t.as_str().to_string(),
                agent_id: a
                    .as_ref()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
            })
            .collect();
        self.call(|caller| {
            Call::Reconcile(v1::ReconcileRequest {
                caller: Some(caller),
                task_ids: Vec::new(),
                tasks: tasks.clone(),
            })
        })
        .await
    }

    /// Kills every task of the framework, removes it from the cluster, and stops the driver.
    /// While re-subscribing, the teardown waits for the new subscription (bound it with a
    /// timeout if need be). On error the driver keeps running.
    pub async fn teardown(&self) -> Result<(), DriverError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .control
            .send(Control::Teardown(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.unwrap_or(Err(DriverError::Stopped))
    }

    /// Stops the driver without tearing the framework down (its tasks keep running for the
    /// framework's failover timeout, so that a new driver with its id can take over), and
    /// waits until the background task has ended.
    pub async fn stop(&self) {
        let _ = self.shared.control.send(Control::Stop).await;
        let mut state = self.shared.state.clone();
        // An error means the task is gone, which is what we wait for.
        let _ = state.wait_for(|s| s.stopped).await;
    }

    /// The live session, waiting (up to `call_timeout`) while the driver re-subscribes.
    async fn session(&self) -> Result<Session, DriverError> {
        let mut state = self.shared.state.clone();
        {
            let now = state.borrow_and_update();
            if now.stopped {
                return Err(DriverError::Stopped);
            }
            if let Some(s) = &now.session {
                return Ok(s.clone());
            }
            if now.framework_id.is_none() {
                return Err(DriverError::NotSubscribed);
            }
        }
        let waited = tokio::time::timeout(
            self.shared.options.call_timeout,
            state.wait_for(|s| s.stopped || s.session.is_some()),
        )
        .await;
        match waited {
            Err(_) => Err(DriverError::NotSubscribed),
            Ok(Err(_)) => Err(DriverError::Stopped),
            Ok(Ok(s)) => match &s.session {
                Some(session) if !s.stopped => Ok(session.clone()),
                _ => Err(DriverError::Stopped),
            },
        }
    }

    /// After the leader refused a call for naming `used`'s stream: waits (up to
    /// `call_timeout`) for a different live stream. `leader_lost_it` asks the background task
    /// to re-subscribe at once (the leader does not know the stream at all).
    async fn await_new_stream(&self, used: &Session, leader_lost_it: bool) -> bool {
        if leader_lost_it {
            let _ = self
                .shared
                .control
                .send(Control::StreamUnknown {
                    stream_id: used.stream_id.clone(),
                })
                .await;
        }
        let mut state = self.shared.state.clone();
        let changed = tokio::time::timeout(
            self.shared.options.call_timeout,
            state.wait_for(|s| s.stopped || s.session.as_ref().is_some_and(|s| s != used)),
        )
        .await;
        matches!(changed, Ok(Ok(s)) if !s.stopped)
    }

    async fn call(&self, build: impl Fn(v1::Caller) -> Call) -> Result<(), DriverError> {
        let mut stale_retries = 0;
        loop {
            let session = self.session().await?;
            let r = rpc::send(
                &self.shared.client,
                &self.shared.transport,
                self.shared.options.attempt_timeout,
                build(session.caller()),
            )
            .await;
            let refusal = match r {
                Ok(()) => return Ok(()),
                Err(drover_client::ClientError::Rejected(s)) => s,
                Err(e) => return Err(e.into()),
            };
            // A refusal of the caller (the stream is not the framework's live one on this
            // leader; the master marks it with `drover-stale-caller`) was not applied, so once
            // a new stream is up the call is sent again on it.
            let marker = refusal
                .metadata()
                .get(drover_proto::metadata::STALE_CALLER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let stale = refusal.code() == Code::FailedPrecondition && marker.is_some();
            if !stale || stale_retries >= MAX_STALE_STREAM_RETRIES {
                return Err(DriverError::Rejected(refusal));
            }
            stale_retries += 1;
            let leader_lost_it =
                marker.as_deref() == Some(drover_proto::metadata::STALE_CALLER_NOT_SUBSCRIBED);
            tracing::debug!(
                message = refusal.message(),
                "stale stream; waiting for a new one"
            );
            if !self.await_new_stream(&session, leader_lost_it).await {
                return Err(DriverError::Rejected(refusal));
            }
        }
    }
}

fn ids(ids: &[OfferId]) -> Vec<String> {
    ids.iter().map(|i| i.as_str().to_string()).collect()
}

fn check_ids(field: &'static str, n: usize) -> Result<(), DriverError> {
    if n == 0 {
        return Err(DriverError::InvalidArgument {
            field,
            reason: "name at least one".into(),
        });
    }
    if n > MAX_IDS_PER_CALL {
        return Err(DriverError::InvalidArgument {
            field,
            reason: format!("at most {MAX_IDS_PER_CALL} per call, got {n}"),
        });
    }
    Ok(())
}

fn check_refuse(refuse_seconds: Option<f64>) -> Result<(), DriverError> {
    match refuse_seconds {
        Some(s) if !s.is_finite() || s < 0.0 => Err(DriverError::InvalidArgument {
            field: "refuse_seconds",
            reason: format!("{s}: must be a finite number of seconds, 0 or more"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
