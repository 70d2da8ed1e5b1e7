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
        // Tasks whose ACCEPT is committing (answered TASK_STAGING, as Mesos does).
        let mut staging = Vec::new();
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
                for (task, agent) in self.launching.of(&framework) {
                    staging.push(convert::staging_status(task, agent, now));
                }
            } else {
                for (id, agent) in &tasks {
                    let tid = TaskId::new(id).ok();
                    let known = tid.as_ref().and_then(|t| state.task(&framework, t));
                    let launching = tid
                        .as_ref()
                        .and_then(|t| Some((t, self.launching.agent_of(&framework, t)?)));
                    match (known, launching) {
                        (Some(t), _) => answer(t),
                        (None, Some((t, agent))) => {
                            staging.push(convert::staging_status(t, agent, now));
                        }
                        (None, None) => {
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
        answers.extend(staging);
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

    use drover_proto::v1;

    use super::RECONCILE_PER_SECOND;
    use crate::config::OfferCycleConfig;
    use crate::ids::{AgentId, FrameworkId, TaskId};
    use crate::leader::answer::{Answer, Refusal};
    use crate::leader::engine::sim::*;
    use crate::leader::engine::{Call, EVENT_QUEUE, MAX_RECONCILE_TASKS};
    use crate::registry::cluster::{AgentState, ClusterOp, ReportedTask};
    use crate::registry::TaskState;

    /// The reconciliation answers among `events`: (task id, state).
    fn reconciliations(events: &[v1::event::Event]) -> Vec<(String, i32)> {
        events
            .iter()
            .filter_map(|e| match e {
                v1::event::Event::Update(v1::Update { status: Some(s) })
                    if s.reason == "reconciliation" =>
                {
                    Some((s.task_id.clone(), s.state))
                }
                _ => None,
            })
            .collect()
    }

    fn implicit(sim: &mut Sim, stream: &Stream) -> Option<Result<Answer, Refusal>> {
        let call = sim.call(stream, Call::Reconcile { tasks: Vec::new() });
        sim.answer(call)
    }

    /// Agent a1 running task t1 of framework f1, then a leader change: f1 subscribed again,
    /// a1 not registered again yet.
    fn a_task_across_a_leader_change(
        config: OfferCycleConfig,
    ) -> (Sim, Stream, FrameworkId, TaskId) {
        let mut sim = Sim::new(config);
        sim.register_agent("a1", "cpus:4;mem:4096");
        let mut stream = sim.subscribe("f1");
        let f1 = stream.framework.clone();
        let t1 = sim.launch(&mut stream, "t1", "cpus:1;mem:128");
        sim.report("a1", &f1, &t1, TaskState::Running, 1).unwrap();
        sim.restart_leader();
        assert!(
            sim.c.recovery.awaits(&AgentId::new("a1").unwrap()),
            "the new leader awaits a1"
        );
        drop(stream);
        let mut stream = sim.subscribe_with("f1", 0, true);
        stream.events();
        (sim, stream, f1, t1)
    }

    #[test]
    fn held_reconciliation_answers_during_re_registration_go_out_once_the_agent_registers_again() {
        let (mut sim, mut stream, f1, t1) =
            a_task_across_a_leader_change(OfferCycleConfig::default());
        assert_eq!(implicit(&mut sim, &stream), Some(Ok(Answer::Done)));
        let early = stream.events();
        assert!(
            reconciliations(&early).is_empty(),
            "answered from the registry while a1 is awaited: {early:?}"
        );
        sim.register_agent_with(
            "a1",
            "cpus:4;mem:4096",
            Some(vec![ReportedTask {
                framework: f1,
                task: t1,
                state: TaskState::Running,
            }]),
        );
        let running = v1::TaskState::TaskRunning as i32;
        let events = stream.events();
        assert_eq!(
            reconciliations(&events),
            [("t1".to_string(), running)],
            "the held answer, once a1 registered again: {events:?}"
        );
    }

    #[test]
    fn a_task_whose_accept_is_committing_is_reconciled_staging_on_its_offers_agent() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let accept = accept_first_offer(&mut sim, &mut stream, task("t1", "cpus:1;mem:128"));
        let staging = v1::TaskState::TaskStaging as i32;
        let explicit = sim.call(
            &stream,
            Call::Reconcile {
                tasks: vec![("t1".into(), None), ("t9".into(), None)],
            },
        );
        assert_eq!(sim.answer(explicit), Some(Ok(Answer::Done)));
        let events = stream.events();
        let unknown = v1::TaskState::TaskUnknown as i32;
        assert_eq!(
            reconciliations(&events),
            [("t1".to_string(), staging), ("t9".to_string(), unknown)],
            "{events:?}"
        );
        let agent_of = |events: &[v1::event::Event]| -> Vec<String> {
            events
                .iter()
                .filter_map(|e| match e {
                    v1::event::Event::Update(v1::Update { status: Some(s) })
                        if s.task_id == "t1" =>
                    {
                        Some(s.agent_id.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        assert_eq!(agent_of(&events), ["a1"]);
        sim.advance(Duration::from_secs(1));
        assert_eq!(implicit(&mut sim, &stream), Some(Ok(Answer::Done)));
        assert_eq!(
            reconciliations(&stream.events()),
            [("t1".to_string(), staging)],
            "an implicit RECONCILE names it too"
        );
        // Committed: answered from the registry.
        sim.commit();
        assert_eq!(sim.answer(accept), Some(Ok(Answer::Done)));
        stream.events();
        sim.advance(Duration::from_secs(1));
        assert_eq!(implicit(&mut sim, &stream), Some(Ok(Answer::Done)));
        assert_eq!(
            reconciliations(&stream.events()),
            [("t1".to_string(), staging)],
        );
        sim.advance(Duration::from_secs(1));
        let call = sim.call(
            &stream,
            Call::Reconcile {
                tasks: vec![("t1".into(), None)],
            },
        );
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let events = stream.events();
        assert!(
            events.iter().all(|e| !matches!(e, v1::event::Event::Update(v1::Update { status: Some(s) }) if s.message.contains("ACCEPT"))),
            "from the registry once committed: {events:?}"
        );
    }

    #[test]
    fn held_reconciliation_answers_go_out_when_the_agent_misses_its_re_registration_timeout() {
        // Shorter than `agent_timeout`: the mark is the re-registration timeout's.
        let config = OfferCycleConfig {
            agent_reregister_timeout: Duration::from_secs(10),
            ..OfferCycleConfig::default()
        };
        assert!(config.agent_reregister_timeout < config.agent_timeout);
        let (mut sim, mut stream, _, _) = a_task_across_a_leader_change(config);
        assert_eq!(implicit(&mut sim, &stream), Some(Ok(Answer::Done)));
        let unreachable_marks = |sim: &Sim| {
            sim.proposed_ops()
                .into_iter()
                .filter(|op| {
                    matches!(op, ClusterOp::SetAgentState { agent, state: AgentState::Unreachable, .. } if agent.to_string() == "a1")
                })
                .count()
        };
        sim.advance(Duration::from_secs(9));
        let early = stream.events();
        assert!(reconciliations(&early).is_empty(), "{early:?}");
        assert_eq!(unreachable_marks(&sim), 0, "{:?}", sim.proposed_ops());
        sim.advance(Duration::from_secs(1));
        assert_eq!(unreachable_marks(&sim), 1, "{:?}", sim.proposed_ops());
        let early = stream.events();
        assert!(
            reconciliations(&early).is_empty(),
            "answered before the mark committed: {early:?}"
        );
        sim.settle();
        assert_eq!(
            sim.registry
                .agent(&AgentId::new("a1").unwrap())
                .unwrap()
                .state,
            AgentState::Unreachable
        );
        let unreachable = v1::TaskState::TaskUnreachable as i32;
        let events = stream.events();
        assert_eq!(
            reconciliations(&events),
            [("t1".to_string(), unreachable)],
            "the held answer, once a1 was marked unreachable: {events:?}"
        );
    }

    #[test]
    fn reconcile_calls_beyond_the_per_second_budget_in_a_burst_are_refused_resource_exhausted() {
        let (mut sim, stream) = one_agent_one_framework();
        let burst = RECONCILE_PER_SECOND as usize;
        for i in 0..burst {
            assert_eq!(
                implicit(&mut sim, &stream),
                Some(Ok(Answer::Done)),
                "call {i} of a burst of {burst}"
            );
        }
        match implicit(&mut sim, &stream) {
            Some(Err(Refusal::ResourceExhausted(m))) => {
                assert!(m.contains("RECONCILE"), "{m}")
            }
            other => panic!("call {} of the burst answered {other:?}", burst + 1),
        }
        // A token comes back every 1/RECONCILE_PER_SECOND s.
        sim.advance(Duration::from_secs_f64(1.5 / RECONCILE_PER_SECOND));
        assert_eq!(implicit(&mut sim, &stream), Some(Ok(Answer::Done)));
        assert!(
            matches!(
                implicit(&mut sim, &stream),
                Some(Err(Refusal::ResourceExhausted(_)))
            ),
            "only one token came back"
        );
    }

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
