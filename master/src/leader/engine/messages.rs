//! What passes between a framework and its custom executors without being replicated (as in
//! Mesos, best effort): the framework's MESSAGE and SHUTDOWN go to the executor's agent, the
//! executor's messages and its end (FAILURE) to the framework's stream.
//!
//! Nothing here is proposed: a message lost with a leader, an agent or a full stream is lost,
//! and frameworks that need more build it on status updates. An executor's events reach its
//! framework only while the stream has room beyond what status updates keep for themselves,
//! so a chatty executor loses messages but never costs its framework the subscription.

use drover_proto::v1;

use super::{Action, Engine};
use crate::ids::{AgentId, ExecutorId, FrameworkId};
use crate::leader::agents::AgentMessage;
use crate::leader::answer::Reply;
use crate::metrics as m;

impl Engine {
    /// The agent's address, while it is registered and reachable.
    fn reachable_agent(&self, agent: &AgentId) -> Option<String> {
        self.view
            .agent(agent)
            .filter(|a| a.state.is_reachable())
            .map(|a| a.addr.clone())
    }

    pub(super) fn framework_message(
        &mut self,
        framework: FrameworkId,
        agent: AgentId,
        executor: ExecutorId,
        data: Vec<u8>,
        reply: Reply<()>,
    ) {
        if let Some(addr) = self.reachable_agent(&agent) {
            self.out.push(Action::ToAgent {
                agent: agent.clone(),
                addr,
                message: AgentMessage::FrameworkMessage(v1::FrameworkMessageRequest {
                    agent_id: agent.to_string(),
                    framework_id: framework.to_string(),
                    executor_id: executor.to_string(),
                    data,
                }),
            });
        } else {
            metrics::counter!(m::EXECUTOR_MESSAGES_DROPPED_TOTAL, "to" => "executor").increment(1);
            tracing::debug!(%framework, %agent, %executor, "framework message dropped: agent not reachable");
        }
        self.answer(reply, Ok(()));
    }

    pub(super) fn shutdown_executor(
        &mut self,
        framework: FrameworkId,
        agent: AgentId,
        executor: ExecutorId,
        reply: Reply<()>,
    ) {
        if let Some(addr) = self.reachable_agent(&agent) {
            self.out.push(Action::ToAgent {
                agent: agent.clone(),
                addr,
                message: AgentMessage::ShutdownExecutor(v1::AgentShutdownExecutorRequest {
                    agent_id: agent.to_string(),
                    framework_id: framework.to_string(),
                    executor_id: executor.to_string(),
                }),
            });
        }
        self.answer(reply, Ok(()));
    }

    /// Sends a best-effort event to `framework` if its stream has room to spare.
    fn send_spare(&mut self, framework: &FrameworkId, e: v1::event::Event) -> bool {
        let Some(stream) = self.frameworks.sent_if_room(framework) else {
            return false;
        };
        self.out.push(Action::Send {
            stream,
            event: v1::Event { event: Some(e) },
        });
        true
    }

    pub(super) fn executor_message(
        &mut self,
        agent: AgentId,
        framework: FrameworkId,
        executor: ExecutorId,
        data: Vec<u8>,
        reply: Reply<()>,
    ) {
        let e = v1::event::Event::Message(v1::ExecutorMessage {
            agent_id: agent.to_string(),
            executor_id: executor.to_string(),
            data,
        });
        if !self.send_spare(&framework, e) {
            metrics::counter!(m::EXECUTOR_MESSAGES_DROPPED_TOTAL, "to" => "framework").increment(1);
            tracing::debug!(%framework, %agent, %executor, "executor message dropped: the framework's stream is absent or backed up");
        }
        self.answer(reply, Ok(()));
    }

    pub(super) fn executor_exited(
        &mut self,
        agent: AgentId,
        framework: FrameworkId,
        executor: ExecutorId,
        status: Option<i32>,
        reply: Reply<()>,
    ) {
        tracing::info!(%framework, %agent, %executor, ?status, "custom executor ended");
        let e = v1::event::Event::Failure(v1::ExecutorFailure {
            agent_id: agent.to_string(),
            executor_id: executor.to_string(),
            status,
        });
        if !self.send_spare(&framework, e) {
            metrics::counter!(m::EXECUTOR_MESSAGES_DROPPED_TOTAL, "to" => "framework").increment(1);
        }
        self.answer(reply, Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::answer::Answer;
    use crate::leader::engine::frameworks::RESERVED_ROOM;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::{Call, Command};

    fn ids() -> (AgentId, FrameworkId, ExecutorId) {
        (
            AgentId::new("a1").unwrap(),
            FrameworkId::new("f1").unwrap(),
            ExecutorId::new("e1").unwrap(),
        )
    }

    #[test]
    fn a_framework_message_goes_to_the_agent_and_nothing_is_proposed() {
        let (mut sim, stream) = one_agent_one_framework();
        sim.settle();
        let proposed = sim.proposed_ops().len();
        let (agent, _, executor) = ids();
        let call = sim.call(
            &stream,
            Call::Message {
                agent: agent.clone(),
                executor: executor.clone(),
                data: b"hi".to_vec(),
            },
        );
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        assert_eq!(sim.proposed_ops().len(), proposed, "nothing proposed");
        match sim.to_agents.last() {
            Some((a, AgentMessage::FrameworkMessage(m))) => {
                assert_eq!(a, &agent);
                assert_eq!(
                    (m.executor_id.as_str(), m.data.as_slice()),
                    ("e1", &b"hi"[..])
                );
            }
            _ => panic!("no message to the agent"),
        }
        // An agent the registry does not have: answered, dropped.
        let sent = sim.to_agents.len();
        let call = sim.call(
            &stream,
            Call::Message {
                agent: AgentId::new("nowhere").unwrap(),
                executor,
                data: vec![],
            },
        );
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        assert_eq!(sim.to_agents.len(), sent);
    }

    #[test]
    fn executor_events_reach_the_framework_only_with_room_to_spare() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.settle();
        stream.events();
        let (agent, framework, executor) = ids();
        let message = |sim: &mut Sim, data: &[u8]| {
            let reply = sim.reply();
            sim.command(Command::ExecutorMessage {
                agent: agent.clone(),
                framework: framework.clone(),
                executor: executor.clone(),
                data: data.to_vec(),
                reply,
            })
        };
        message(&mut sim, b"one");
        let reply = sim.reply();
        sim.command(Command::ExecutorExited {
            agent: agent.clone(),
            framework: framework.clone(),
            executor: executor.clone(),
            status: Some(9),
            reply,
        });
        let events = stream.events();
        assert!(
            matches!(
                events.as_slice(),
                [v1::event::Event::Message(m), v1::event::Event::Failure(f)]
                    if m.data == b"one" && f.status == Some(9) && f.executor_id == "e1"
            ),
            "{events:?}"
        );
        // A stream backed up to the room kept for updates: messages are dropped, the stream
        // stays.
        stream.limit(RESERVED_ROOM + 1);
        message(&mut sim, b"two");
        message(&mut sim, b"three");
        let events = stream.events();
        assert!(
            matches!(events.as_slice(), [v1::event::Event::Message(m)] if m.data == b"two"),
            "{events:?}"
        );
        assert!(
            sim.c.frameworks.is_connected(&framework),
            "the stream stays"
        );
    }
}
