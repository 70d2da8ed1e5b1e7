//! Messages from the leader to agents: RunTask (the tasks of one ACCEPT together) and KillTask
//! over the `drover.v1.Agent` service.
//!
//! Owns one lazily connected channel per agent address and the retry policy for these calls:
//! a launch or kill is retried with backoff for a bounded time, since both are idempotent on
//! the agent. What never arrives is left to reconciliation (the task stays STAGING until the
//! agent re-registers and reports what it runs).

use std::collections::HashMap;
use std::time::Duration;

use drover_proto::v1;
use drover_proto::v1::agent_client::AgentClient;
use tonic::transport::Channel;

use crate::ids::AgentId;

/// How long a launch or kill is retried before it is left to reconciliation.
pub const SEND_DEADLINE: Duration = Duration::from_secs(30);
const PER_TRY: Duration = Duration::from_secs(5);

/// Channels to agents, by id (re-created when an agent's address changes).
#[derive(Default)]
pub struct AgentChannels {
    by_agent: HashMap<AgentId, (String, Channel)>,
}

impl AgentChannels {
    pub fn channel(&mut self, agent: &AgentId, addr: &str) -> Option<Channel> {
        if let Some((a, ch)) = self.by_agent.get(agent) {
            if a == addr {
                return Some(ch.clone());
            }
        }
        let ch = drover_client::channel::endpoint(addr).ok()?.connect_lazy();
        self.by_agent
            .insert(agent.clone(), (addr.to_string(), ch.clone()));
        Some(ch)
    }
}

pub enum AgentMessage {
    Run(v1::RunTaskRequest),
    Kill(v1::KillTaskRequest),
}

/// Sends `message`, retrying transport failures with backoff until [`SEND_DEADLINE`]; an
/// answer from the agent (success or refusal) ends it. Returns whether the agent accepted it.
pub async fn send(channel: Channel, agent: AgentId, message: AgentMessage) -> bool {
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut client = AgentClient::new(channel.clone());
        let r = match &message {
            AgentMessage::Run(req) => {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(PER_TRY);
                client.run_task(r).await.map(|_| ())
            }
            AgentMessage::Kill(req) => {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(PER_TRY);
                client.kill_task(r).await.map(|_| ())
            }
        };
        let what = match &message {
            AgentMessage::Run(r) => match r.tasks.as_slice() {
                [t] => format!("launch of {}", t.task_id),
                ts => format!(
                    "launch of {} tasks ({}…)",
                    ts.len(),
                    ts.first().map_or("?", |t| &t.task_id)
                ),
            },
            AgentMessage::Kill(r) => format!("kill of {}", r.task_id),
        };
        match r {
            Ok(()) => return true,
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                ) && started.elapsed() < SEND_DEADLINE =>
            {
                tracing::debug!(%agent, %what, error = %s, "agent unreachable; retrying");
            }
            Err(s) => {
                tracing::warn!(%agent, %what, code = ?s.code(), error = s.message(), "agent did not take it");
                return false;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
