//! The best-effort news of custom executors for their frameworks: each executor's messages
//! (its MESSAGE calls) and its end, sent to the leading master (`AgentRegistry.ExecutorMessage`
//! and `ExecutorExited`), which hands them to the framework's stream.
//!
//! Owns a bounded queue ([`QUEUE_DEPTH`]) and the one task that empties it, one call at a
//! time, each retried to the leader for at most [`SEND_DEADLINE`]. Nothing is checkpointed: a
//! message lost with the agent, the master or a full queue is lost, as in Mesos (frameworks
//! that need more build it on status updates, which are reliable).

use std::time::Duration;

use drover_client::MasterClient;
use drover_proto::v1;
use drover_proto::v1::agent_registry_client::AgentRegistryClient;
use tokio::sync::mpsc;

use crate::ids::{AgentId, ExecutorId, FrameworkId};

/// Messages and ends waiting to be sent, at most.
pub const QUEUE_DEPTH: usize = 256;
/// How long one is retried before it is dropped.
pub const SEND_DEADLINE: Duration = Duration::from_secs(5);

enum Item {
    Message(v1::ExecutorMessageRequest),
    Exited(v1::ExecutorExitedRequest),
}

/// The handle to the relay. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    tx: mpsc::Sender<Item>,
}

impl Relay {
    /// Starts the relay's task; it ends when every handle is gone.
    pub fn start(client: MasterClient) -> (Relay, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        (
            Relay { tx },
            tokio::spawn(run(client.with_deadline(SEND_DEADLINE), rx)),
        )
    }

    fn queue(&self, item: Item) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(_) => {
                crate::metrics::executor_news_dropped();
                false
            }
        }
    }

    /// Queues an executor's message for its framework; false when dropped (queue full).
    pub fn message(
        &self,
        agent: &AgentId,
        framework: &FrameworkId,
        executor: &ExecutorId,
        data: Vec<u8>,
    ) -> bool {
        self.queue(Item::Message(v1::ExecutorMessageRequest {
            agent_id: agent.to_string(),
            framework_id: framework.to_string(),
            executor_id: executor.to_string(),
            data,
        }))
    }

    /// Queues the news that an executor ended, with its raw wait status when known.
    pub fn exited(
        &self,
        agent: &AgentId,
        framework: &FrameworkId,
        executor: &ExecutorId,
        status: Option<i32>,
    ) -> bool {
        self.queue(Item::Exited(v1::ExecutorExitedRequest {
            agent_id: agent.to_string(),
            framework_id: framework.to_string(),
            executor_id: executor.to_string(),
            status,
        }))
    }
}

async fn run(client: MasterClient, mut rx: mpsc::Receiver<Item>) {
    while let Some(item) = rx.recv().await {
        let sent = match &item {
            Item::Message(req) => {
                client
                    .call_idempotent(|channel, time_left| {
                        let mut r = tonic::Request::new(req.clone());
                        r.set_timeout(time_left);
                        async move {
                            AgentRegistryClient::new(channel)
                                .executor_message(r)
                                .await
                                .map(drop)
                        }
                    })
                    .await
            }
            Item::Exited(req) => {
                client
                    .call_idempotent(|channel, time_left| {
                        let mut r = tonic::Request::new(req.clone());
                        r.set_timeout(time_left);
                        async move {
                            AgentRegistryClient::new(channel)
                                .executor_exited(r)
                                .await
                                .map(drop)
                        }
                    })
                    .await
            }
        };
        if let Err(e) = sent {
            crate::metrics::executor_news_dropped();
            tracing::debug!(error = %e, "an executor's message or end did not reach the master; dropped");
        }
    }
}
