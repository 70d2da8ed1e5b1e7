//! One unary call of the framework API on the leading master, through [`MasterClient`]'s
//! leader-following retry loop, with a bounded time per attempt.
//!
//! Owns the choice of retry discipline per call: a call that must not be applied twice
//! (ACCEPT) goes through `call_once`, so a failure with an unknown outcome comes back as
//! [`DriverError::Ambiguous`] and is never repeated here; every other call is idempotent at the
//! master and may be repeated.

use std::future::Future;
use std::time::Duration;

use drover_client::{ClientError, MasterClient, MAX_REPLY_BYTES};
use drover_proto::v1::scheduler_client::SchedulerClient;
use drover_proto::v1::CallReply;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

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
