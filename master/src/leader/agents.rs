//! Messages from the leader to agents: RunTask (the tasks of one ACCEPT together) and KillTask
//! over the `drover.v1.Agent` service, and the best-effort messages for custom executors
//! (a framework's message, SHUTDOWN), sent once.
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

/// Channels to agents: one per address (agents that share an address, such as the simulated
/// agents of one process, share a connection), kept while some agent has that address.
#[derive(Default)]
pub struct AgentChannels {
    /// How agents are dialled (mutual TLS, whose servers must be agents).
    dialer: drover_client::channel::Dialer,
    addr_of: HashMap<AgentId, String>,
    /// Each address's channel and how many agents have it.
    by_addr: HashMap<String, (Channel, usize)>,
}

impl AgentChannels {
    pub fn new(dialer: drover_client::channel::Dialer) -> Self {
        Self {
            dialer,
            ..Self::default()
        }
    }

    pub fn channel(&mut self, agent: &AgentId, addr: &str) -> Option<Channel> {
        if self.addr_of.get(agent).map(String::as_str) == Some(addr) {
            return self.by_addr.get(addr).map(|(ch, _)| ch.clone());
        }
        let ch = match self.by_addr.get_mut(addr) {
            Some((ch, users)) => {
                *users += 1;
                ch.clone()
            }
            None => {
                let ch = self.dialer.channel(addr).ok()?;
                self.by_addr.insert(addr.to_string(), (ch.clone(), 1));
                ch
            }
        };
        // A new agent, or one that moved: it no longer uses its old address.
        if let Some(old) = self.addr_of.insert(agent.clone(), addr.to_string()) {
            self.release(&old);
        }
        Some(ch)
    }

    fn release(&mut self, addr: &str) {
        if let Some((_, users)) = self.by_addr.get_mut(addr) {
            *users -= 1;
            if *users == 0 {
                self.by_addr.remove(addr);
            }
        }
    }

    /// Connections held (distinct addresses).
    pub fn connections(&self) -> usize {
        self.by_addr.len()
    }
}

pub enum AgentMessage {
    Run(v1::RunTaskRequest),
    Kill(v1::KillTaskRequest),
    /// Best effort: one try, never retried.
    FrameworkMessage(v1::FrameworkMessageRequest),
    /// Best effort, as a framework message.
    ShutdownExecutor(v1::AgentShutdownExecutorRequest),
}

impl AgentMessage {
    /// For logs: what the message asks.
    fn describe(&self) -> String {
        match self {
            AgentMessage::Run(r) => match r.tasks.as_slice() {
                [t] => format!("launch of {}", t.task_id),
                ts => format!(
                    "launch of {} tasks ({}…)",
                    ts.len(),
                    ts.first().map_or("?", |t| &t.task_id)
                ),
            },
            AgentMessage::Kill(r) => format!("kill of {}", r.task_id),
            AgentMessage::FrameworkMessage(r) => format!("message to executor {}", r.executor_id),
            AgentMessage::ShutdownExecutor(r) => format!("shutdown of executor {}", r.executor_id),
        }
    }

    /// Sent once or not at all (a lost one is lost, as in Mesos).
    pub fn best_effort(&self) -> bool {
        matches!(
            self,
            AgentMessage::FrameworkMessage(_) | AgentMessage::ShutdownExecutor(_)
        )
    }
}

/// Sends `message`, retrying transport failures with backoff until [`SEND_DEADLINE`]; an
/// answer from the agent (success or refusal) ends it. Returns whether the agent accepted it.
pub async fn send(channel: Channel, agent: AgentId, message: AgentMessage) -> bool {
    let started = std::time::Instant::now();
    let mut backoff =
        drover_client::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
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
            AgentMessage::FrameworkMessage(req) => {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(PER_TRY);
                client.send_framework_message(r).await.map(|_| ())
            }
            AgentMessage::ShutdownExecutor(req) => {
                let mut r = tonic::Request::new(req.clone());
                r.set_timeout(PER_TRY);
                client.shutdown_executor(r).await.map(|_| ())
            }
        };
        match r {
            Ok(()) => return true,
            Err(s)
                if !message.best_effort()
                    && matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                            | tonic::Code::Cancelled
                    )
                    && started.elapsed() < SEND_DEADLINE =>
            {
                tracing::debug!(%agent, what = %message.describe(), error = %s, "agent unreachable; retrying");
            }
            Err(s) => {
                tracing::warn!(%agent, what = %message.describe(), code = ?s.code(), error = s.message(), "agent did not take it");
                return false;
            }
        }
        backoff.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AgentId {
        AgentId::new(s).expect("id")
    }

    #[tokio::test]
    async fn agents_sharing_an_address_share_a_channel_until_the_last_moves_away() {
        let mut c = AgentChannels::default();
        c.channel(&id("a1"), "127.0.0.1:5051").expect("channel");
        c.channel(&id("a2"), "127.0.0.1:5051").expect("channel");
        c.channel(&id("a1"), "127.0.0.1:5051").expect("channel");
        assert_eq!(c.connections(), 1);
        c.channel(&id("a3"), "127.0.0.2:5051").expect("channel");
        assert_eq!(c.connections(), 2);
        // a1 moves; a2 still uses the first address.
        c.channel(&id("a1"), "127.0.0.3:5051").expect("channel");
        assert_eq!(c.connections(), 3);
        c.channel(&id("a2"), "127.0.0.3:5051").expect("channel");
        assert_eq!(c.connections(), 2, "nobody uses 127.0.0.1:5051 any more");
    }
}
