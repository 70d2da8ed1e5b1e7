//! RECONCILE: a framework asks for the state of its tasks (explicit: the ids it names;
//! implicit: all its live tasks). Answers come from the registry, except for tasks on agents
//! a new leader still waits for: those are held until the agent settles, so that a framework
//! never hears a stale RUNNING. Rate-limited per framework; answers beyond the stream's room
//! wait in its backlog.

use super::recovery::MAX_DEFERRED;
use super::Engine;
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::leader::answer::{Refusal, Reply};
use crate::leader::convert;
use crate::metrics as m;

/// RECONCILE calls a framework may make per second (and in one burst).
pub const RECONCILE_PER_SECOND: f64 = 10.0;

impl Engine {
    /// Takes one RECONCILE token of `framework`; false when it has none left.
    pub(super) fn reconcile_allowed(&mut self, framework: &FrameworkId) -> bool {
        let now = self.now.mono;
        let (tokens, at) = self
            .recovery
            .reconcile_tokens
            .entry(framework.clone())
            .or_insert((RECONCILE_PER_SECOND, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * RECONCILE_PER_SECOND)
            .min(RECONCILE_PER_SECOND);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// RECONCILE: explicit (task ids, with their agents when given) or implicit (none).
    pub(super) fn reconcile(
        &mut self,
        framework: FrameworkId,
        tasks: Vec<(String, Option<String>)>,
        reply: Reply<()>,
    ) {
        let kind = if tasks.is_empty() {
            "implicit"
        } else {
            "explicit"
        };
        if !self.reconcile_allowed(&framework) {
            metrics::counter!(m::RECONCILE_REQUESTS_TOTAL, "kind" => kind, "outcome" => "throttled")
                .increment(1);
            self.answer(reply, Err(Refusal::ResourceExhausted(format!(
                "at most {RECONCILE_PER_SECOND} RECONCILE calls per second per framework; retry later"
            ))));
            return;
        }
        metrics::counter!(m::RECONCILE_REQUESTS_TOTAL, "kind" => kind, "outcome" => "answered")
            .increment(1);
        let state = self.state();
        let now = self.now.wall_ms;
        let partition_aware = state
            .framework(&framework)
            .is_some_and(|f| f.partition_aware);
        let mut answers = Vec::new();
        let mut unknown = Vec::new();
        let mut held: Vec<(AgentId, TaskId)> = Vec::new();
        {
            // A live task on an agent still awaited is answered once the agent settles.
            let mut answer = |t: &crate::registry::cluster::TaskRecord| {
                if !t.state.is_terminal()
                    && self.recovery.awaits(&t.agent)
                    && self.recovery.deferred_count + held.len() < MAX_DEFERRED
                {
                    held.push((t.agent.clone(), t.spec.id.clone()));
                } else {
                    answers.push(convert::reconciliation_status(t, now));
                }
            };
            if tasks.is_empty() {
                for t in state
                    .tasks_of(&framework)
                    .filter(|t| !t.state.is_terminal())
                {
                    answer(t);
                }
            } else {
                for (id, agent) in &tasks {
                    let known = TaskId::new(id)
                        .ok()
                        .and_then(|tid| state.task(&framework, &tid));
                    match known {
                        Some(t) => answer(t),
                        None => {
                            let agent_state = agent.as_deref().map(|a| {
                                let s = AgentId::new(a)
                                    .ok()
                                    .and_then(|aid| state.agent(&aid))
                                    .map(|r| r.state);
                                (a, s)
                            });
                            unknown.push(convert::unknown_task_status(
                                id,
                                agent_state,
                                partition_aware,
                                now,
                            ));
                        }
                    }
                }
            }
        }
        answers.extend(unknown);
        let deferred = held.len();
        for (agent, task) in held {
            if self
                .recovery
                .deferred
                .entry(agent)
                .or_default()
                .insert((framework.clone(), task))
            {
                self.recovery.deferred_count += 1;
            }
        }
        if deferred > 0 {
            tracing::info!(%framework, deferred, "reconciliation answers held until their agents re-register");
        }
        for status in answers {
            self.enqueue(&framework, status);
        }
        self.answer(reply, Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::{Call, EVENT_QUEUE, MAX_RECONCILE_TASKS};

    #[test]
    fn reconciliation_answers_beyond_the_streams_room_wait_and_follow_in_order_as_it_drains() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let ids: Vec<(String, Option<String>)> = (0..MAX_RECONCILE_TASKS)
            .map(|i| (format!("gone-{i}"), None))
            .collect();
        let call = sim.call(&stream, Call::Reconcile { tasks: ids });
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let mut got: Vec<String> = Vec::new();
        let first = updates(&stream.events());
        assert!(
            !first.is_empty() && first.len() < EVENT_QUEUE,
            "sent at once: {}",
            first.len()
        );
        got.extend(first.into_iter().map(|(id, _)| id));
        for _ in 0..100 {
            if got.len() == MAX_RECONCILE_TASKS {
                break;
            }
            sim.advance(Duration::from_millis(100));
            got.extend(updates(&stream.events()).into_iter().map(|(id, _)| id));
        }
        let want: Vec<String> = (0..MAX_RECONCILE_TASKS)
            .map(|i| format!("gone-{i}"))
            .collect();
        assert_eq!(got.len(), want.len(), "answers delivered");
        assert!(got == want, "answers out of order");
        assert!(
            !stream.ended(),
            "a framework reading its stream stays connected"
        );
    }
}
