//! The driver's background task: the one owner of the subscription.
//!
//! It finds the leader, subscribes, publishes the live session (framework id + stream id) for
//! the [`super::Driver`] handles to stamp on their calls, forwards the stream's events to the
//! framework through a bounded channel, and re-subscribes with the framework id, with jittered
//! exponential backoff, when the stream breaks, ends, or stays silent for
//! `heartbeat_misses` heartbeat intervals. It never acts for the framework on its own except
//! to decline offers it cannot read and to tear the framework down when asked.
//!
//! Invariant: the published session is `Some` only while the stream it names is open here; a
//! call stamped with it may still race a failover, which the caller handles (the master answers
//! FAILED_PRECONDITION for a replaced stream).

use std::time::Duration;

use drover_client::{Backoff, ClientError, MasterClient};
use drover_proto::v1::{self, event, Caller, Event, SubscribeRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Code, Status, Streaming};

use super::http;
use super::rpc::{self, Call, Transport};
use super::types::{DriverEvent, FrameworkId, FrameworkInfo, Offer, OfferId};
use super::{DriverError, DriverOptions};

/// Heartbeat interval assumed when the master does not announce a usable one, seconds.
const DEFAULT_HEARTBEAT_SECONDS: f64 = 15.0;
/// Bounds on the announced heartbeat interval, seconds (a bogus value must neither make the
/// driver flap nor make it deaf to a dead master for hours).
const MIN_HEARTBEAT_SECONDS: f64 = 0.05;
const MAX_HEARTBEAT_SECONDS: f64 = 600.0;

/// What the driver handles see of the connection. Written only by the background task.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkState {
    /// Known from the first SUBSCRIBED on (and kept across re-subscriptions).
    pub framework_id: Option<FrameworkId>,
    /// The open stream, if any.
    pub session: Option<Session>,
    /// The background task has ended: no call can be made any more.
    pub stopped: bool,
}

/// One open subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    pub framework_id: FrameworkId,
    pub stream_id: String,
    pub master_id: u64,
}

impl Session {
    pub fn caller(&self) -> Caller {
        Caller {
            framework_id: self.framework_id.as_str().to_string(),
            stream_id: self.stream_id.clone(),
        }
    }
}

/// Requests from the driver handles to the background task.
pub(crate) enum Control {
    Stop,
    Teardown(oneshot::Sender<Result<(), DriverError>>),
    /// The leader refused a call because it does not know the stream `stream_id`: leadership
    /// moved while that stream looked alive (e.g. the old leader is partitioned away).
    /// Re-subscribe now rather than after the heartbeat timeout, if it is still the live one.
    StreamUnknown {
        stream_id: String,
    },
}

enum Flow {
    Continue,
    Stop,
}

enum SubscribeError {
    /// Try again after a backoff.
    Retry(String),
    /// The master refused the framework for good: report and stop.
    Fatal(String),
}

struct Subscription {
    subscribed: v1::Subscribed,
    stream: EventSource,
    master_addr: String,
}

/// The events of one open subscription, over either transport.
enum EventSource {
    Grpc(Streaming<Event>),
    Http(http::Events),
}

impl EventSource {
    /// The next event; `None` when the master ended the stream; an error when it broke.
    async fn message(&mut self) -> Result<Option<Event>, String> {
        match self {
            EventSource::Grpc(s) => s
                .message()
                .await
                .map_err(|st| format!("{:?}: {}", st.code(), st.message())),
            EventSource::Http(e) => e.message().await,
        }
    }
}

pub(crate) struct Connection {
    /// Deadline = one subscription round.
    subscribe_client: MasterClient,
    /// Deadline = one call (teardown, declining unreadable offers).
    call_client: MasterClient,
    transport: Transport,
    info: FrameworkInfo,
    options: DriverOptions,
    state: watch::Sender<LinkState>,
    events: mpsc::Sender<DriverEvent>,
    control: mpsc::Receiver<Control>,
    /// Teardowns asked for while re-subscribing, done as soon as the stream is back.
    pending_teardowns: Vec<oneshot::Sender<Result<(), DriverError>>>,
    subscribed_before: bool,
    /// Set by [`Control::StreamUnknown`] for the live stream: why to give it up.
    give_up_stream: Option<String>,
}

impl Connection {
    pub(crate) fn new(
        client: MasterClient,
        transport: Transport,
        info: FrameworkInfo,
        options: DriverOptions,
        state: watch::Sender<LinkState>,
        events: mpsc::Sender<DriverEvent>,
        control: mpsc::Receiver<Control>,
    ) -> Self {
        Self {
            subscribe_client: client.with_deadline(options.subscribe_timeout),
            call_client: client.with_deadline(options.call_timeout),
            transport,
            info,
            options,
            state,
            events,
            control,
            pending_teardowns: Vec::new(),
            subscribed_before: false,
            give_up_stream: None,
        }
    }

    /// Runs until stopped, torn down, refused by the master, or abandoned by every handle.
    pub(crate) async fn run(mut self) {
        self.run_until_stopped().await;
        self.state.send_modify(|s| {
            s.session = None;
            s.stopped = true;
        });
        for t in self.pending_teardowns.drain(..) {
            let _ = t.send(Err(DriverError::Stopped));
        }
        tracing::debug!("framework driver stopped");
    }

    async fn run_until_stopped(&mut self) {
        let mut backoff = Backoff::new(
            self.options.resubscribe_backoff_start,
            self.options.resubscribe_backoff_max,
        );
        loop {
            let request = SubscribeRequest {
                framework: Some(self.info.to_proto()),
            };
            let client = self.subscribe_client.clone();
            let transport = self.transport.clone();
            let subscribing = subscribe(&client, &transport, request, self.options.attempt_timeout);
            tokio::pin!(subscribing);
            let outcome = loop {
                let ctl = tokio::select! {
                    r = &mut subscribing => break r,
                    ctl = self.control.recv() => ctl,
                };
                if let Flow::Stop = self.on_control(ctl, None).await {
                    return;
                }
            };
            let reason = match outcome {
                Ok(sub) => {
                    let (flow, healthy) = self.serve(sub).await;
                    match flow {
                        Served::Stop => return,
                        Served::Broken(reason) => {
                            if healthy {
                                backoff.reset(self.options.resubscribe_backoff_start);
                            }
                            reason
                        }
                    }
                }
                Err(SubscribeError::Fatal(message)) => {
                    tracing::warn!(%message, "the master refused the framework");
                    let _ = self.forward(DriverEvent::Error(message), None).await;
                    return;
                }
                Err(SubscribeError::Retry(reason)) => format!("could not subscribe: {reason}"),
            };
            tracing::info!(%reason, retry_within = ?backoff.step(), "re-subscribing");
            if let Flow::Stop = self
                .forward(DriverEvent::Disconnected { reason }, None)
                .await
            {
                return;
            }
            if let Flow::Stop = self.pause(backoff.next_wait()).await {
                return;
            }
        }
    }

    /// Serves one open subscription until it breaks. Returns how it ended and whether it
    /// delivered anything after SUBSCRIBED (a healthy stream resets the backoff).
    async fn serve(&mut self, sub: Subscription) -> (Served, bool) {
        let Subscription {
            subscribed,
            mut stream,
            master_addr,
        } = sub;
        let framework_id = FrameworkId::new(subscribed.framework_id.clone());
        if let Some(old) = &self.info.id {
            if *old != framework_id {
                tracing::warn!(%old, new = %framework_id, "the master gave a new framework id");
            }
        }
        self.info.id = Some(framework_id.clone());
        let session = Session {
            framework_id: framework_id.clone(),
            stream_id: subscribed.stream_id.clone(),
            master_id: subscribed.master_id,
        };
        let silence = heartbeat_timeout(
            subscribed.heartbeat_interval_seconds,
            self.options.heartbeat_misses,
        );
        tracing::info!(
            framework_id = %framework_id,
            master_id = session.master_id,
            %master_addr,
            heartbeat_timeout = ?silence,
            "subscribed"
        );
        self.state.send_modify(|s| {
            s.framework_id = Some(framework_id.clone());
            s.session = Some(session.clone());
        });
        let resubscribed = std::mem::replace(&mut self.subscribed_before, true);
        let hello = DriverEvent::Subscribed {
            framework_id,
            master_id: session.master_id,
            master_addr,
            resubscribed,
        };
        if let Flow::Stop = self.forward(hello, Some(&session)).await {
            return (Served::Stop, false);
        }
        if !self.pending_teardowns.is_empty() {
            let result = self.teardown(&session).await;
            let done = result.is_ok();
            for t in self.pending_teardowns.drain(..) {
                let _ = t.send(result.clone());
            }
            if done {
                return (Served::Stop, false);
            }
        }

        let mut healthy = false;
        self.give_up_stream = None;
        let broken = loop {
            if let Some(reason) = self.give_up_stream.take() {
                break reason;
            }
            let next = tokio::select! {
                m = tokio::time::timeout(silence, stream.message()) => m,
                ctl = self.control.recv() => {
                    if let Flow::Stop = self.on_control(ctl, Some(&session)).await {
                        return (Served::Stop, healthy);
                    }
                    continue;
                }
            };
            let event = match next {
                Err(_) => {
                    break format!(
                        "no event from the master for {silence:?} ({} heartbeat intervals)",
                        self.options.heartbeat_misses
                    )
                }
                Ok(Err(why)) => break format!("the stream failed: {why}"),
                Ok(Ok(None)) => break "the master closed the stream".to_string(),
                Ok(Ok(Some(e))) => e,
            };
            healthy = true;
            if let Flow::Stop = self.on_event(event, &session).await {
                return (Served::Stop, healthy);
            }
        };
        self.state.send_modify(|s| s.session = None);
        (Served::Broken(broken), healthy)
    }

    async fn on_event(&mut self, event: Event, session: &Session) -> Flow {
        let Some(event) = event.event else {
            tracing::debug!("ignoring an event of a kind this driver does not know");
            return Flow::Continue;
        };
        match event {
            event::Event::Heartbeat(_) => Flow::Continue,
            event::Event::Subscribed(_) => {
                tracing::warn!("ignoring a second SUBSCRIBED on the same stream");
                Flow::Continue
            }
            event::Event::Offers(offers) => {
                let mut good = Vec::with_capacity(offers.offers.len());
                let mut bad = Vec::new();
                for o in &offers.offers {
                    match Offer::from_proto(o) {
                        Ok(offer) => good.push(offer),
                        Err(e) => {
                            tracing::warn!(offer_id = %o.id, error = %e, "declining an offer this driver cannot read");
                            bad.push(o.id.clone());
                        }
                    }
                }
                if !bad.is_empty() {
                    self.decline_unreadable(bad, session).await;
                }
                if good.is_empty() {
                    return Flow::Continue;
                }
                self.forward(DriverEvent::Offers(good), Some(session)).await
            }
            event::Event::Rescind(r) => {
                self.forward(
                    DriverEvent::Rescind(OfferId::new(r.offer_id)),
                    Some(session),
                )
                .await
            }
            event::Event::Update(u) => match u.status {
                Some(status) => {
                    self.forward(DriverEvent::Update(status), Some(session))
                        .await
                }
                None => {
                    tracing::warn!("ignoring an UPDATE without a status");
                    Flow::Continue
                }
            },
            // This driver's frameworks run commands, not custom executors: nothing of theirs
            // sends these.
            event::Event::Message(m) => {
                tracing::debug!(executor = %m.executor_id, agent = %m.agent_id, "ignoring an executor's message");
                Flow::Continue
            }
            event::Event::Failure(f) => {
                tracing::debug!(executor = %f.executor_id, agent = %f.agent_id, status = ?f.status, "ignoring an executor's end");
                Flow::Continue
            }
            event::Event::Error(e) => {
                tracing::warn!(message = %e.message, "the master sent ERROR; the driver stops");
                let _ = self.forward(DriverEvent::Error(e.message), None).await;
                Flow::Stop
            }
        }
    }

    async fn decline_unreadable(&self, offer_ids: Vec<String>, session: &Session) {
        let request = Call::Decline(v1::DeclineRequest {
            caller: Some(session.caller()),
            offer_ids,
            refuse_seconds: None,
        });
        let r = rpc::send(
            &self.call_client,
            &self.transport,
            self.options.attempt_timeout,
            request,
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not decline unreadable offers; they will expire");
        }
    }

    /// Hands `event` to the framework, waiting (bounded channel) while it is busy, and serving
    /// control requests meanwhile. Stops when the framework dropped its event stream.
    async fn forward(&mut self, event: DriverEvent, session: Option<&Session>) -> Flow {
        loop {
            let ctl = tokio::select! {
                permit = self.events.reserve() => {
                    return match permit {
                        Ok(p) => {
                            p.send(event);
                            Flow::Continue
                        }
                        Err(_) => {
                            tracing::debug!("the event stream was dropped; stopping");
                            Flow::Stop
                        }
                    };
                }
                ctl = self.control.recv() => ctl,
            };
            if let Flow::Stop = self.on_control(ctl, session).await {
                return Flow::Stop;
            }
        }
    }

    /// Sleeps `wait`, serving control requests meanwhile.
    async fn pause(&mut self, wait: Duration) -> Flow {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            let ctl = tokio::select! {
                _ = &mut sleep => return Flow::Continue,
                ctl = self.control.recv() => ctl,
            };
            if let Flow::Stop = self.on_control(ctl, None).await {
                return Flow::Stop;
            }
        }
    }

    /// `None` means every [`super::Driver`] handle is gone.
    async fn on_control(&mut self, ctl: Option<Control>, session: Option<&Session>) -> Flow {
        match ctl {
            None | Some(Control::Stop) => Flow::Stop,
            Some(Control::StreamUnknown { stream_id }) => {
                if session.is_some_and(|s| s.stream_id == stream_id) {
                    self.give_up_stream =
                        Some("the leader does not know this stream (leadership moved)".to_string());
                }
                Flow::Continue
            }
            Some(Control::Teardown(reply)) => match session {
                Some(s) => {
                    let result = self.teardown(s).await;
                    let done = result.is_ok();
                    let _ = reply.send(result);
                    if done {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    }
                }
                None if self.info.id.is_none() => {
                    let _ = reply.send(Err(DriverError::NotSubscribed));
                    Flow::Continue
                }
                None => {
                    self.pending_teardowns.push(reply);
                    Flow::Continue
                }
            },
        }
    }

    async fn teardown(&self, session: &Session) -> Result<(), DriverError> {
        let request = Call::Teardown(v1::TeardownRequest {
            caller: Some(session.caller()),
        });
        let r = rpc::send(
            &self.call_client,
            &self.transport,
            self.options.attempt_timeout,
            request,
        )
        .await;
        match r {
            Ok(()) => Ok(()),
            // A repeated TEARDOWN whose first attempt took effect finds no framework.
            Err(ClientError::Rejected(s)) if s.code() == Code::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

enum Served {
    Stop,
    Broken(String),
}

/// Opens the event stream on the leader and reads its first event, which must be SUBSCRIBED.
async fn subscribe(
    client: &MasterClient,
    transport: &Transport,
    request: SubscribeRequest,
    attempt_timeout: Duration,
) -> Result<Subscription, SubscribeError> {
    let opened = match transport {
        Transport::Grpc => subscribe_grpc(client, request, attempt_timeout)
            .await
            .map(|(first, stream)| (first, EventSource::Grpc(stream))),
        Transport::Http(h) => h
            .subscribe(
                client,
                &request.framework.unwrap_or_default(),
                attempt_timeout,
            )
            .await
            .map(|(first, events)| (first, EventSource::Http(events))),
    };
    let (first, stream) = opened.map_err(|e| match e {
        ClientError::Rejected(s) if is_definite_refusal(s.code()) => SubscribeError::Fatal(
            format!("subscription refused: {:?}: {}", s.code(), s.message()),
        ),
        other => SubscribeError::Retry(other.to_string()),
    })?;
    let master_addr = client.known_leader().unwrap_or_default();
    match first.and_then(|e| e.event) {
        Some(event::Event::Subscribed(s)) => {
            if s.framework_id.is_empty() || s.stream_id.is_empty() {
                return Err(SubscribeError::Retry(format!(
                    "{master_addr} sent SUBSCRIBED without a framework id or stream id"
                )));
            }
            Ok(Subscription {
                subscribed: s,
                stream,
                master_addr,
            })
        }
        Some(event::Event::Error(e)) => Err(SubscribeError::Fatal(format!(
            "subscription refused: {}",
            e.message
        ))),
        None => Err(SubscribeError::Retry(format!(
            "{master_addr} ended the stream before SUBSCRIBED"
        ))),
        Some(_) => Err(SubscribeError::Retry(format!(
            "{master_addr} sent another event before SUBSCRIBED"
        ))),
    }
}

/// Opens the gRPC event stream on the leader and reads its first event.
async fn subscribe_grpc(
    client: &MasterClient,
    request: SubscribeRequest,
    attempt_timeout: Duration,
) -> Result<(Option<Event>, Streaming<Event>), ClientError> {
    client
        .call_idempotent(|channel, time_left| {
            let request = request.clone();
            let limit = time_left.min(attempt_timeout);
            async move {
                // No grpc-timeout on the request: it would end the stream. Only opening it
                // and receiving SUBSCRIBED are bounded.
                let open = async {
                    let mut stream = rpc::scheduler_client(channel)
                        .subscribe(request)
                        .await?
                        .into_inner();
                    let first = stream.message().await?;
                    Ok::<_, Status>((first, stream))
                };
                match tokio::time::timeout(limit, open).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::deadline_exceeded(format!(
                        "no SUBSCRIBED within {limit:?}"
                    ))),
                }
            }
        })
        .await
}

/// A refusal of SUBSCRIBE that retrying will not change (bad framework info, a removed
/// framework id). Everything else (no leader yet, a timeout) is retried.
fn is_definite_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::Unimplemented
    )
}

/// How long the stream may stay silent before the driver gives up on it.
pub(crate) fn heartbeat_timeout(interval_seconds: f64, misses: u32) -> Duration {
    let interval = if interval_seconds.is_finite() && interval_seconds > 0.0 {
        interval_seconds.clamp(MIN_HEARTBEAT_SECONDS, MAX_HEARTBEAT_SECONDS)
    } else {
        DEFAULT_HEARTBEAT_SECONDS
    };
    Duration::from_secs_f64(interval * f64::from(misses.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_timeout_is_bounded() {
        assert_eq!(heartbeat_timeout(1.0, 3), Duration::from_secs(3));
        assert_eq!(heartbeat_timeout(0.0, 3), Duration::from_secs(45));
        assert_eq!(heartbeat_timeout(f64::NAN, 3), Duration::from_secs(45));
        assert_eq!(heartbeat_timeout(1e12, 1), Duration::from_secs(600));
        assert_eq!(heartbeat_timeout(1.0, 0), Duration::from_secs(1));
    }
}
