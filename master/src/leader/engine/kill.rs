//! KILL: a framework asks for a task to be killed; the KillTask goes to its agent (whose
//! update, committed, ends the task). A task already ended is answered as done.
//!
//! A KILL of a task whose ACCEPT is proposed and not yet committed waits for that ACCEPT
//! (at most [`MAX_KILLS_WAITING`] per task), then is handled as if it came after: the task
//! launched is killed, one whose ACCEPT was refused is not found. A Mesos master knows a task
//! from its ACCEPT on, so a framework that kills right after accepting (as one shutting down
//! does) must not be told the task is unknown while it is about to be launched.

use std::collections::HashMap;

use super::Engine;
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::leader::answer::{Refusal, Reply};
use crate::registry::cluster::TaskSpec;

/// KILLs kept per task while its ACCEPT commits; more are answered as before it.
pub const MAX_KILLS_WAITING: usize = 16;

/// A KILL waiting for its task's ACCEPT: its grace and its caller.
type WaitingKill = (Option<u64>, Reply<()>);

/// Tasks of ACCEPTs in flight, each with the agent its offers are on and the KILLs waiting
/// for it. An ACCEPT in flight holds at most `MAX_TASKS_PER_ACCEPT` tasks, and the proposer
/// bounds what is in flight.
#[derive(Default)]
pub(super) struct Launching {
    tasks: HashMap<(FrameworkId, TaskId), (Option<AgentId>, Vec<WaitingKill>)>,
}

impl Launching {
    /// The ACCEPT of `tasks` on `agent`'s offers is proposed.
    pub(super) fn begin(
        &mut self,
        framework: &FrameworkId,
        agent: Option<&AgentId>,
        tasks: &[TaskSpec],
    ) {
        for t in tasks {
            self.tasks
                .entry((framework.clone(), t.id.clone()))
                .or_insert_with(|| (agent.cloned(), Vec::new()));
        }
    }

    /// Whether `task` is being launched, and on which agent (when its offer named one).
    pub(super) fn agent_of(
        &self,
        framework: &FrameworkId,
        task: &TaskId,
    ) -> Option<Option<&AgentId>> {
        self.tasks
            .get(&(framework.clone(), task.clone()))
            .map(|(agent, _)| agent.as_ref())
    }

    /// The tasks of `framework` being launched, with their agents.
    pub(super) fn of(
        &self,
        framework: &FrameworkId,
    ) -> impl Iterator<Item = (&TaskId, Option<&AgentId>)> + '_ {
        let framework = framework.clone();
        self.tasks
            .iter()
            .filter(move |((f, _), _)| *f == framework)
            .map(|((_, t), (agent, _))| (t, agent.as_ref()))
    }

    /// Keeps `kill` until the task's ACCEPT settles; gives it back if the task is not being
    /// launched, or too many wait already.
    fn wait(
        &mut self,
        framework: &FrameworkId,
        task: &TaskId,
        kill: WaitingKill,
    ) -> Option<WaitingKill> {
        match self.tasks.get_mut(&(framework.clone(), task.clone())) {
            Some((_, waiting)) if waiting.len() < MAX_KILLS_WAITING => {
                waiting.push(kill);
                None
            }
            _ => Some(kill),
        }
    }
}

impl Engine {
    /// The ACCEPT of `tasks` committed or was refused: the KILLs that waited for it go on.
    pub(super) fn launch_settled(&mut self, framework: &FrameworkId, tasks: &[TaskSpec]) {
        for t in tasks {
            let key = (framework.clone(), t.id.clone());
            let waiting = self.launching.tasks.remove(&key).map(|(_, w)| w);
            for (grace_ms, reply) in waiting.unwrap_or_default() {
                self.kill(framework.clone(), t.id.clone(), grace_ms, reply);
            }
        }
    }

    pub(super) fn kill(
        &mut self,
        framework: FrameworkId,
        task: TaskId,
        grace_ms: Option<u64>,
        reply: Reply<()>,
    ) {
        let state = self.state();
        let r = match state.task(&framework, &task) {
            None => {
                // Unless it waits for the task's ACCEPT.
                if let Some((_, reply)) = self.launching.wait(&framework, &task, (grace_ms, reply))
                {
                    self.answer(
                        reply,
                        Err(Refusal::NotFound(format!(
                            "task_id: framework {framework} has no task {task}"
                        ))),
                    );
                }
                return;
            }
            Some(t) if t.state.is_terminal() => Ok(()),
            Some(t) => {
                let grace = grace_ms.unwrap_or(t.spec.kill_grace_ms);
                self.kill_on_agent(&state, &framework, &t.agent, &task, grace);
                Ok(())
            }
        };
        self.answer(reply, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::agents::AgentMessage;
    use crate::leader::answer::{self, Answer};
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;
    use crate::registry::cluster::TaskSpec;
    use crate::registry::TaskState;

    /// The KillTask messages sent to agents since the last call: (agent, framework, task,
    /// grace in seconds).
    fn kills(sim: &mut Sim) -> Vec<(String, String, String, f64)> {
        sim.to_agents
            .drain(..)
            .filter_map(|(agent, m)| match m {
                AgentMessage::Kill(k) => Some((
                    agent.to_string(),
                    k.framework_id,
                    k.task_id,
                    k.grace_seconds,
                )),
                _ => None,
            })
            .collect()
    }

    fn kill(task: &TaskId, grace_ms: Option<u64>) -> Call {
        Call::Kill {
            task: task.clone(),
            grace_ms,
        }
    }

    #[test]
    fn a_kill_while_the_tasks_accept_commits_waits_for_it() {
        use crate::replica_error::ReplicaError;
        let (mut sim, mut stream) = one_agent_one_framework();
        // Launched: the KILL that came while its ACCEPT committed is answered once it did,
        // and reaches the agent after the launch.
        let accept = accept_first_offer(&mut sim, &mut stream, task("t1", "cpus:1;mem:128"));
        let t1 = TaskId::new("t1").unwrap();
        let early = sim.call(&stream, kill(&t1, Some(500)));
        assert_eq!(
            sim.answer(early),
            None,
            "not answered before the ACCEPT commits"
        );
        sim.to_agents.clear();
        sim.commit();
        assert_eq!(sim.answer(accept), Some(Ok(Answer::Done)));
        assert_eq!(sim.answer(early), Some(Ok(Answer::Done)));
        let sent: Vec<&str> = sim
            .to_agents
            .iter()
            .map(|(_, m)| match m {
                AgentMessage::Kill(_) => "kill",
                _ => "other",
            })
            .collect();
        assert_eq!(sent.last(), Some(&"kill"), "the launch first: {sent:?}");
        assert_eq!(
            kills(&mut sim),
            [("a1".into(), "f1".into(), "t1".into(), 0.5)]
        );
        // Refused (or lost): the waiting KILL is told the task is not there. (The rest of the
        // agent is offered again once the ACCEPT's refusal filter ran out.)
        sim.advance(std::time::Duration::from_secs(10));
        sim.settle();
        let offers = Stream::offers(&stream.events());
        assert!(!offers.is_empty(), "offered again");
        let accept = sim.call(
            &stream,
            accept_one(&offers[0].id, task("t2", "cpus:1;mem:128")),
        );
        let t2 = TaskId::new("t2").unwrap();
        let early = sim.call(&stream, kill(&t2, None));
        sim.lose(ReplicaError::Lost("truncated".into()));
        assert!(matches!(sim.answer(accept), Some(Err(_))));
        assert!(
            matches!(sim.answer(early), Some(Err(Refusal::NotFound(_)))),
            "not found once the ACCEPT failed"
        );
        // A task no ACCEPT is launching is not found at once.
        let call = sim.call(&stream, kill(&TaskId::new("t9").unwrap(), None));
        assert!(matches!(sim.answer(call), Some(Err(Refusal::NotFound(_)))));
    }

    #[test]
    fn a_kill_of_a_live_task_goes_to_its_agent_with_the_tasks_grace_unless_the_call_gives_one() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let spec = TaskSpec {
            kill_grace_ms: 3_000,
            ..task("t1", "cpus:1;mem:128")
        };
        let t1 = sim.launch_task(&mut stream, spec);
        sim.to_agents.clear();
        let call = sim.call(&stream, kill(&t1, None));
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        assert!(
            sim.proposed.is_empty(),
            "a KILL proposes nothing (the agent's update ends the task): {:?}",
            sim.proposed_ops()
        );
        let t = |grace: f64| ("a1".to_string(), "f1".to_string(), "t1".to_string(), grace);
        assert_eq!(kills(&mut sim), [t(3.0)], "the task's own grace");
        let call = sim.call(&stream, kill(&t1, Some(500)));
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        assert_eq!(kills(&mut sim), [t(0.5)], "the call's grace");
    }

    #[test]
    fn a_kill_of_a_task_the_framework_does_not_have_is_refused_not_found_naming_the_field() {
        let (mut sim, mut s1) = one_agent_one_framework();
        let mut s2 = sim.subscribe("f2");
        let t1 = sim.launch(&mut s1, "t1", "cpus:1;mem:128");
        s2.events();
        sim.to_agents.clear();
        let unknown = TaskId::new("no-such-task").unwrap();
        // A task never launched, and another framework's task, are alike unknown.
        for (stream, task) in [(&s1, &unknown), (&s2, &t1)] {
            let call = sim.call(stream, kill(task, None));
            match sim.answer(call) {
                Some(Err(Refusal::NotFound(m))) => {
                    assert!(m.starts_with("task_id:"), "the field is named: {m}");
                    assert!(m.contains(&task.to_string()), "the task is named: {m}");
                    let status = answer::to_status(Refusal::NotFound(m));
                    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
                }
                other => panic!("KILL of {task} by {} answered {other:?}", stream.framework),
            }
        }
        assert!(
            kills(&mut sim).is_empty(),
            "nothing is sent to agents for an unknown task"
        );
    }

    #[test]
    fn a_kill_of_a_task_that_ended_is_answered_done_and_sends_nothing() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let f1 = stream.framework.clone();
        let t1 = sim.launch(&mut stream, "t1", "cpus:1;mem:128");
        sim.report("a1", &f1, &t1, TaskState::Running, 1).unwrap();
        sim.report("a1", &f1, &t1, TaskState::Finished, 2).unwrap();
        sim.to_agents.clear();
        let call = sim.call(&stream, kill(&t1, Some(1_000)));
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)), "a retried KILL");
        let sent = kills(&mut sim);
        assert!(sent.is_empty(), "KillTask for an ended task: {sent:?}");
        assert!(sim.proposed.is_empty(), "{:?}", sim.proposed_ops());
    }
}
