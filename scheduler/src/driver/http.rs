//! The driver's HTTP transport: its calls and its subscription over the masters' Mesos v1
//! scheduler API (`POST /api/v1/scheduler`, Mesos JSON), as any Mesos framework makes them.
//!
//! Owns the mapping of HTTP answers onto what the leader-following loop
//! ([`MasterClient::call_idempotent_at`]) and the driver's retry rules already understand:
//! a `307` to the leader is a follower's refusal naming it (never applied, so safe to send
//! again there), a refused connection was never sent, `403 Framework is not subscribed` and
//! `400` for a stream id that is not the framework's live one are the stale-caller refusal,
//! `202` is success, and a `503` or a broken answer leaves a write's outcome unknown.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_client::{AttemptError, ClientError, MasterClient};
use drover_mesos::v1 as mesos;
use drover_mesos::{recordio, SCHEDULER_PATH, STREAM_ID_HEADER};
use drover_proto::metadata;
use drover_proto::v1;
use drover_tls::tokio_rustls::rustls::ClientConfig;
use reqwest::StatusCode;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::mesos as convert;

/// Largest event record the driver reads (an OFFERS event of a large cluster fits).
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Largest error body kept for the message.
const MAX_ERROR_BYTES: usize = 4096;
/// How many ACKNOWLEDGEs (one per update in Mesos) are in flight at once.
const ACKS_IN_FLIGHT: usize = 16;

/// An HTTP client for the masters' scheduler API. Cheap to clone.
#[derive(Clone)]
pub(crate) struct MesosHttp {
    bind_ip: Option<IpAddr>,
    /// Mutual TLS (`https`), or plain `http` when `None`.
    tls: Option<drover_tls::ClientTls>,
    /// The client, and the TLS configuration it was built with: built again when the
    /// certificates were reloaded, so new connections present the new ones.
    current: Arc<Mutex<(Option<Arc<ClientConfig>>, reqwest::Client)>>,
}

impl MesosHttp {
    /// A client whose connections leave from `bind_ip`, over mutual TLS with `tls`.
    pub fn new(
        bind_ip: Option<IpAddr>,
        tls: Option<&drover_tls::ClientTls>,
    ) -> Result<Self, String> {
        let config = tls
            .map(|t| t.config().map_err(|e| e.to_string()))
            .transpose()?;
        let client = build_client(bind_ip, config.as_deref())?;
        Ok(Self {
            bind_ip,
            tls: tls.cloned(),
            current: Arc::new(Mutex::new((config, client))),
        })
    }

    /// The client for the next request, and its scheme.
    fn client(&self) -> Result<(reqwest::Client, &'static str), String> {
        let Some(tls) = &self.tls else {
            let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            return Ok((current.1.clone(), "http"));
        };
        let config = tls.config().map_err(|e| e.to_string())?;
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if !current.0.as_ref().is_some_and(|c| Arc::ptr_eq(c, &config)) {
            *current = (
                Some(config.clone()),
                build_client(self.bind_ip, Some(&config))?,
            );
        }
        Ok((current.1.clone(), "https"))
    }

    /// POSTs `call` to the master at `addr`; an answer other than `2xx` is an [`AttemptError`].
    /// `limit` bounds the whole exchange unless `streaming` (a SUBSCRIBE, whose body lasts).
    async fn post(
        &self,
        addr: &str,
        stream_id: Option<&str>,
        call: &mesos::scheduler::Call,
        limit: Option<Duration>,
    ) -> Result<reqwest::Response, AttemptError> {
        let (client, scheme) = self
            .client()
            .map_err(|e| AttemptError::NotSent(tonic::Status::unavailable(format!("TLS: {e}"))))?;
        let mut request = client
            .post(format!("{scheme}://{addr}{SCHEDULER_PATH}"))
            .header(reqwest::header::CONTENT_TYPE, drover_mesos::media::JSON)
            .header(reqwest::header::ACCEPT, drover_mesos::media::JSON)
            .body(drover_mesos::to_ascii_json(call));
        if let Some(id) = stream_id {
            request = request.header(STREAM_ID_HEADER, id);
        }
        if let Some(limit) = limit {
            request = request.timeout(limit);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(addr, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(answer_error(addr, response).await)
    }

    /// Sends one call through the leader-following loop: at most once (`once`, for ACCEPT)
    /// or until it is answered.
    async fn send(
        &self,
        client: &MasterClient,
        once: bool,
        attempt_timeout: Duration,
        stream_id: &str,
        call: mesos::scheduler::Call,
    ) -> Result<(), ClientError> {
        let attempt = |addr: String, time_left: Duration| {
            let call = &call;
            async move {
                let limit = time_left.min(attempt_timeout);
                self.post(&addr, Some(stream_id), call, Some(limit))
                    .await
                    .map(|_| ())
            }
        };
        if once {
            client.call_once_at(attempt).await
        } else {
            client.call_idempotent_at(attempt).await
        }
    }

    /// Sends the driver's call `call` on the stream `stream_id`.
    pub async fn call(
        &self,
        client: &MasterClient,
        attempt_timeout: Duration,
        stream_id: &str,
        call: &super::rpc::Call,
    ) -> Result<(), ClientError> {
        use super::rpc::Call;
        let (once, mesos_call) = match call {
            Call::Accept(r) => (true, convert::accept(r)),
            Call::Decline(r) => (false, convert::decline(r)),
            Call::Suppress(r) => (false, convert::suppress(r)),
            Call::Revive(r) => (false, convert::revive(r)),
            Call::Kill(r) => (false, convert::kill(r)),
            Call::Reconcile(r) => (false, convert::reconcile(r)),
            Call::Teardown(r) => (false, convert::teardown(r)),
            Call::Acknowledge { request, agents } => {
                return self
                    .acknowledge(client, attempt_timeout, stream_id, request, agents)
                    .await
            }
        };
        self.send(client, once, attempt_timeout, stream_id, mesos_call)
            .await
    }

    /// One ACKNOWLEDGE per update, a few in flight at once; the first failure is the answer.
    async fn acknowledge(
        &self,
        client: &MasterClient,
        attempt_timeout: Duration,
        stream_id: &str,
        request: &v1::AcknowledgeRequest,
        agents: &[String],
    ) -> Result<(), ClientError> {
        use futures::StreamExt as _;
        let mut calls = Vec::with_capacity(request.acks.len());
        for (ack, agent) in request.acks.iter().zip(agents) {
            let call = convert::acknowledge(&request.caller, agent, ack)
                .map_err(|e| ClientError::Rejected(Status::invalid_argument(e.to_string())))?;
            calls.push(call);
        }
        let mut sends = futures::stream::iter(calls)
            .map(|c| self.send(client, false, attempt_timeout, stream_id, c))
            .buffer_unordered(ACKS_IN_FLIGHT);
        while let Some(r) = sends.next().await {
            r?;
        }
        Ok(())
    }

    /// Opens a subscription on the leader: its SUBSCRIBED (as the driver's) and the rest of
    /// its events. `attempt_timeout` bounds opening it and reading SUBSCRIBED on one master.
    pub async fn subscribe(
        &self,
        client: &MasterClient,
        framework: &v1::FrameworkInfo,
        attempt_timeout: Duration,
    ) -> Result<(Option<v1::Event>, Events), ClientError> {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
        let call = convert::subscribe(framework, &user);
        client
            .call_idempotent_at(|addr, time_left| {
                let call = &call;
                async move {
                    let limit = time_left.min(attempt_timeout);
                    let open = async {
                        let response = self.post(&addr, None, call, None).await?;
                        let stream_id = response
                            .headers()
                            .get(STREAM_ID_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let mut events = Events {
                            response,
                            decoder: recordio::Decoder::new(MAX_RECORD_BYTES),
                            stream_id,
                        };
                        let first = events
                            .message()
                            .await
                            .map_err(|e| AttemptError::Failed(Status::unavailable(e)))?;
                        Ok((first, events))
                    };
                    match tokio::time::timeout(limit, open).await {
                        Ok(r) => r,
                        Err(_) => Err(AttemptError::Failed(Status::deadline_exceeded(format!(
                            "{addr}: no SUBSCRIBED within {limit:?}"
                        )))),
                    }
                }
            })
            .await
    }
}

/// The events of one subscription: RecordIO records of Mesos JSON events.
pub(crate) struct Events {
    response: reqwest::Response,
    decoder: recordio::Decoder,
    stream_id: String,
}

impl Events {
    /// The next event the driver uses (others are skipped), `None` when the master ended the
    /// stream, an error when it broke or sent what cannot be read.
    pub async fn message(&mut self) -> Result<Option<v1::Event>, String> {
        loop {
            while let Some(record) = self.decoder.next_record().map_err(|e| e.to_string())? {
                let event: mesos::scheduler::Event = drover_mesos::from_json(&record)
                    .map_err(|e| format!("an event that is not Mesos JSON: {e}"))?;
                match convert::event(&event, &self.stream_id) {
                    Ok(Some(e)) => return Ok(Some(e)),
                    Ok(None) => continue,
                    Err(e) => return Err(format!("an event the driver cannot read: {e}")),
                }
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.decoder.push(&bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn transport_error(addr: &str, e: &reqwest::Error) -> AttemptError {
    let message = format!("{addr}: {e}");
    if e.is_connect() {
        AttemptError::NotSent(Status::unavailable(message))
    } else if e.is_timeout() {
        AttemptError::Failed(Status::deadline_exceeded(message))
    } else {
        AttemptError::Failed(Status::unavailable(message))
    }
}

/// A refusal with a marker the driver's rules read (see `drover_proto::metadata`).
fn marked(code: Code, message: String, marks: &[(&'static str, &str)]) -> Status {
    let mut s = Status::new(code, message);
    for (k, v) in marks {
        if let Ok(v) = MetadataValue::try_from(*v) {
            s.metadata_mut().insert(*k, v);
        }
    }
    s
}

/// What a non-`2xx` answer means to the loop and the driver.
async fn answer_error(addr: &str, response: reqwest::Response) -> AttemptError {
    let code = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match response.bytes().await {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(MAX_ERROR_BYTES)]).into_owned(),
        Err(_) => String::new(),
    };
    let message = format!("{addr}: {code}: {body}");
    AttemptError::Failed(match code {
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => {
            let leader = location.as_deref().and_then(leader_of);
            let mut marks = vec![(metadata::NOT_LEADER, "1")];
            if let Some(l) = &leader {
                marks.push((metadata::LEADER_ADDR, l.as_str()));
            }
            marked(Code::Unavailable, message, &marks)
        }
        StatusCode::FORBIDDEN => marked(
            Code::FailedPrecondition,
            message,
            &[(
                metadata::STALE_CALLER,
                metadata::STALE_CALLER_NOT_SUBSCRIBED,
            )],
        ),
        StatusCode::BAD_REQUEST if body.starts_with(drover_mesos::FRAMEWORK_NOT_FOUND) => marked(
            Code::FailedPrecondition,
            message,
            &[(
                metadata::STALE_CALLER,
                metadata::STALE_CALLER_NOT_SUBSCRIBED,
            )],
        ),
        StatusCode::BAD_REQUEST if body.starts_with(drover_mesos::STREAM_ID_MISMATCH) => marked(
            Code::FailedPrecondition,
            message,
            &[(metadata::STALE_CALLER, metadata::STALE_CALLER_REPLACED)],
        ),
        StatusCode::BAD_REQUEST
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::NOT_ACCEPTABLE
        | StatusCode::PAYLOAD_TOO_LARGE => Status::invalid_argument(message),
        StatusCode::NOT_FOUND => Status::not_found(message),
        StatusCode::TOO_MANY_REQUESTS => Status::resource_exhausted(message),
        StatusCode::GATEWAY_TIMEOUT => Status::deadline_exceeded(message),
        // No leader yet, or leadership lost under the call: unknown for a write.
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(message),
        _ => Status::unknown(message),
    })
}

/// A reqwest client for the masters: no redirects followed (the leader-following loop does
/// it), from `bind_ip`, with TLS `config` (offering only HTTP/1.1) when given.
fn build_client(
    bind_ip: Option<IpAddr>,
    config: Option<&ClientConfig>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(bind_ip)
        .tcp_nodelay(true);
    if let Some(config) = config {
        builder = builder.use_preconfigured_tls(drover_tls::live::http1_only(config));
    }
    builder.build().map_err(|e| e.to_string())
}

/// The leader's `host:port` in a redirect's `Location` (`//host:port/api/v1/scheduler`, or
/// with a scheme).
fn leader_of(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("//")
        .or_else(|| location.split_once("://").map(|(_, r)| r))?;
    let host_port = rest.split('/').next()?;
    (!host_port.is_empty()).then(|| host_port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_names_the_leader() {
        assert_eq!(
            leader_of("//127.0.0.2:5050/api/v1/scheduler").as_deref(),
            Some("127.0.0.2:5050")
        );
        assert_eq!(
            leader_of("http://127.0.0.2:5050/api/v1/scheduler").as_deref(),
            Some("127.0.0.2:5050")
        );
        assert_eq!(leader_of("/api/v1/scheduler"), None);
        assert_eq!(leader_of("//"), None);
    }
}
