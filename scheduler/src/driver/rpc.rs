//! One unary call of the framework API on the leading master, over gRPC or the Mesos HTTP API
//! ([`Transport`]), through [`MasterClient`]'s leader-following retry loop, with a bounded time
//! per attempt.
//!
//! Owns the choice of retry discipline per call: a call that must not be applied twice
//! (ACCEPT) goes through `call_once`, so a failure with an unknown outcome comes back as
//! [`DriverError::Ambiguous`] and is never repeated here; every other call is idempotent at the
//! master and may be repeated.

use std::future::Future;
use std::time::Duration;

use drover_client::{ClientError, MasterClient, MAX_REPLY_BYTES};
use drover_proto::v1::scheduler_client::SchedulerClient;
use drover_proto::v1::{self, CallReply};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::http::MesosHttp;
use super::DriverError;

/// Whether a call may be sent again when its outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Safe to repeat (DECLINE, KILL, ACKNOWLEDGE, …).
    Idempotent,
    /// Must not be applied twice (ACCEPT).
    AtMostOnce,
}

/// A generated client on `channel`, accepting replies up to the client's limit.
pub(crate) fn scheduler_client(channel: Channel) -> SchedulerClient<Channel> {
    SchedulerClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES)
}

/// Sends `request` with `rpc` to the leader. `attempt_timeout` bounds each attempt (a hung
/// master must not eat the whole deadline); the client's policy bounds the total.
pub(crate) async fn unary<R, F, Fut>(
    client: &MasterClient,
    repeat: Repeat,
    attempt_timeout: Duration,
    request: R,
    rpc: F,
) -> Result<(), ClientError>
where
    R: Clone,
    F: Fn(SchedulerClient<Channel>, Request<R>) -> Fut,
    Fut: Future<Output = Result<Response<CallReply>, Status>>,
{
    let attempt = |channel: Channel, time_left: Duration| {
        let limit = time_left.min(attempt_timeout);
        let mut r = Request::new(request.clone());
        r.set_timeout(limit);
        let fut = rpc(scheduler_client(channel), r);
        async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(reply) => reply.map(|_| ()),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer within {limit:?}"
                ))),
            }
        }
    };
    match repeat {
        Repeat::Idempotent => client.call_idempotent(attempt).await,
        Repeat::AtMostOnce => client.call_once(attempt).await,
    }
}

impl From<ClientError> for DriverError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Ambiguous(m) => DriverError::Ambiguous(m),
            ClientError::Rejected(s) => DriverError::Rejected(s),
            ClientError::Unavailable { elapsed, last } => {
                DriverError::Unavailable(format!("no leader answered within {elapsed:?}: {last}"))
            }
            other => DriverError::Masters(other.to_string()),
        }
    }
}

/// One call of the framework API, whichever transport carries it.
#[derive(Clone, Debug)]
pub(crate) enum Call {
    Accept(v1::AcceptRequest),
    Decline(v1::DeclineRequest),
    Suppress(v1::SuppressRequest),
    Revive(v1::ReviveRequest),
    Kill(v1::KillRequest),
    /// `agents[i]` is the agent of `request.acks[i]` (a Mesos ACKNOWLEDGE names it).
    Acknowledge {
        request: v1::AcknowledgeRequest,
        agents: Vec<String>,
    },
    Reconcile(v1::ReconcileRequest),
    Teardown(v1::TeardownRequest),
}

impl Call {
    fn caller(&self) -> Option<&v1::Caller> {
        match self {
            Call::Accept(r) => r.caller.as_ref(),
            Call::Decline(r) => r.caller.as_ref(),
            Call::Suppress(r) => r.caller.as_ref(),
            Call::Revive(r) => r.caller.as_ref(),
            Call::Kill(r) => r.caller.as_ref(),
            Call::Acknowledge { request, .. } => request.caller.as_ref(),
            Call::Reconcile(r) => r.caller.as_ref(),
            Call::Teardown(r) => r.caller.as_ref(),
        }
    }
}

/// Which of the masters' framework APIs carries the driver's calls and events.
#[derive(Clone)]
pub(crate) enum Transport {
    /// `drover.v1.Scheduler` over gRPC.
    Grpc,
    /// The Mesos v1 scheduler HTTP API.
    Http(MesosHttp),
}

/// Sends `call` to the leader over `transport`: at most once for ACCEPT, else until answered.
pub(crate) async fn send(
    client: &MasterClient,
    transport: &Transport,
    attempt_timeout: Duration,
    call: Call,
) -> Result<(), ClientError> {
    use Repeat::{AtMostOnce, Idempotent};
    let t = attempt_timeout;
    match transport {
        Transport::Http(h) => {
            let stream_id = call
                .caller()
                .map(|c| c.stream_id.clone())
                .unwrap_or_default();
            h.call(client, t, &stream_id, &call).await
        }
        Transport::Grpc => match call {
            Call::Accept(r) => {
                unary(client, AtMostOnce, t, r, |mut c, r| async move {
                    c.accept(r).await
                })
                .await
            }
            Call::Decline(r) => {
                unary(client, Idempotent, t, r, |mut c, r| async move {
                    c.decline(r).await
                })
                .await
            }
            Call::Suppress(r) => {
                unary(client, Idempotent, t, r, |mut c, r| async move {
                    c.suppress(r).await
                })
                .await
            }
            Call::Revive(r) => {
                unary(client, Idempotent, t, r, |mut c, r| async move {
                    c.revive(r).await
                })
                .await
            }
            Call::Kill(r) => {
                unary(client, Idempotent, t, r, |mut c, r| async move {
                    c.kill(r).await
                })
                .await
            }
            Call::Acknowledge { request, .. } => {
                unary(client, Idempotent, t, request, |mut c, r| async move {
                    c.acknowledge(r).await
                })
                .await
            }
            Call::Reconcile(r) => {
                unary(client, Idempotent, t, r, |mut c, r| async move {
                    c.reconcile(r).await
                })
                .await
            }
            Call::Teardown(r) => {
                unary(client, Idempotent, t, r, |mut c, r| async move {
                    c.teardown(r).await
                })
                .await
            }
        },
    }
}
