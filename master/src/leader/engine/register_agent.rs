//! Agent registration: a new agent, or one registering again (after a restart, a partition,
//! or a leader change) with its task report, which the registry reconciles. Committed, the
//! agent joins the allocator, the master's updates are forwarded, STAGING tasks it lacks are
//! launched again and tasks it must not run are killed.

use std::collections::HashMap;

use drover_proto::agent_api::MAX_TASKS_PER_RUN;
use drover_proto::v1;

use super::rebuild::used_on;
use super::{Engine, Pending};
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::leader::answer::{Refusal, Reply};
use crate::leader::convert;
use crate::metrics as m;
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterOp, ClusterOutcome, ClusterState, ReportedTask, TaskSpec,
};

impl Engine {
    /// Registers an agent: a re-registration carries its task report.
    pub(super) fn register_agent(
        &mut self,
        agent: AgentRecord,
        tasks: Option<Vec<ReportedTask>>,
        truncated: bool,
        reply: Reply<v1::RegisterReply>,
    ) {
        let reregistered = tasks.is_some();
        let op = ClusterOp::RegisterAgent {
            agent: agent.clone(),
            tasks,
            truncated,
        };
        self.propose(
            op,
            Pending::AgentRegistered {
                agent,
                reregistered,
                reply,
            },
        );
    }

    /// A registration committed: offers of its old description rescinded, the master's
    /// updates forwarded, STAGING tasks it lacks launched again, orphans killed.
    pub(super) fn agent_registered(
        &mut self,
        agent: AgentRecord,
        reregistered: bool,
        outcome: ClusterOutcome,
        reply: Reply<v1::RegisterReply>,
    ) {
        let ClusterOutcome::AgentRegistered {
            removed,
            updates,
            relaunch,
            kill,
        } = outcome
        else {
            self.answer(reply, Err(Refusal::Internal("unexpected outcome".into())));
            return;
        };
        metrics::counter!(m::AGENT_REGISTRATIONS_TOTAL, "kind" => if reregistered { "reregistered" } else { "new" })
            .increment(1);
        self.rescind(&removed, None, None);
        let state = self.state();
        let registered = state.agent(&agent.id).cloned().unwrap_or(agent);
        let known = self.allocator.agent_total(&registered.id).is_some();
        let r = if known {
            // Known to this leader's allocator: same allocations (minus the tasks the master
            // just ended, recovered below), possibly another total.
            self.allocator
                .set_total(&registered.id, registered.total.clone())
                .and_then(|()| {
                    self.allocator
                        .set_agent_active(&registered.id, registered.state == AgentState::Active)
                })
        } else {
            let used = if state.committed_on(&registered.id).is_empty() {
                Vec::new()
            } else {
                used_on(&state, &registered.id)
            };
            self.allocator
                .add_agent(registered.id.clone(), registered.total.clone(), used)
                .and_then(|()| {
                    self.allocator
                        .set_agent_active(&registered.id, registered.state == AgentState::Active)
                })
        };
        if let Err(e) = r {
            tracing::error!(agent = %registered.id, error = %e, "allocator refused a registered agent");
        }
        // An agent new to the allocator was added from the registry as it is after the
        // master's updates; one it knew gets the released resources back now.
        self.forward_master_updates(&updates, known);
        let mut by_framework: HashMap<FrameworkId, Vec<TaskSpec>> = HashMap::new();
        for (framework, spec) in relaunch {
            by_framework.entry(framework).or_default().push(spec);
        }
        for (framework, specs) in by_framework {
            metrics::counter!(m::TASK_RELAUNCHES_TOTAL).increment(specs.len() as u64);
            if self.frameworks.is_torn_down(&framework) {
                continue;
            }
            for run in crate::leader::convert::runs_keeping_groups(&specs, MAX_TASKS_PER_RUN) {
                self.run_on_agent(&state, &framework, &registered.id, &run);
            }
        }
        for (framework, task) in kill {
            metrics::counter!(m::ORPHAN_KILLS_TOTAL).increment(1);
            tracing::info!(agent = %registered.id, %framework, %task, "killing a task the registry does not have running there");
            let grace = state
                .task(&framework, &task)
                .map(|t| t.spec.kill_grace_ms)
                .unwrap_or(0);
            self.kill_on_agent(&state, &framework, &registered.id, &task, grace);
        }
        if registered.state == AgentState::Draining {
            self.kill_all_on(&state, &registered.id);
        }
        self.liveness.heard(&registered.id, self.now.mono);
        self.liveness.marked(&registered.id);
        self.settled(&registered.id);
        tracing::info!(agent = %registered.id, hostname = %registered.hostname, addr = %registered.addr, resources = %registered.total, reregistered, "agent registered");
        self.allocate_soon();
        self.answer(
            reply,
            Ok(v1::RegisterReply {
                agent_id: registered.id.to_string(),
                master_id: self.me,
                heartbeat_interval_seconds: self.config.agent_heartbeat_interval.as_secs_f64(),
            }),
        );
    }

    /// `agent` is settled (registered, or marked unreachable or gone): it is no longer
    /// awaited, and reconciliation answers held for it go out.
    pub(super) fn settled(&mut self, agent: &AgentId) {
        if self.recovery.awaiting.remove(agent).is_some() {
            self.awaiting_gauge();
            if self.recovery.awaiting.is_empty() {
                if let Some(since) = self.recovery.reconciling_since.take() {
                    let took = self.now.mono.duration_since(since);
                    metrics::histogram!(m::AGENT_RECONCILIATION_SECONDS).record(took);
                    tracing::info!(
                        took_ms = took.as_millis() as u64,
                        "every agent re-registered or was marked unreachable"
                    );
                }
            }
        }
        if let Some(held) = self.recovery.deferred.remove(agent) {
            self.recovery.deferred_count -= held.len();
            let state = self.state();
            let now = self.now.wall_ms;
            for (framework, task) in held {
                if let Some(t) = state.task(&framework, &task) {
                    let status = convert::reconciliation_status(t, now);
                    self.enqueue(&framework, status);
                }
            }
        }
    }

    /// Kills every live task on `agent` with its grace period (a draining agent).
    pub(super) fn kill_all_on(&mut self, state: &ClusterState, agent: &AgentId) {
        let live: Vec<(FrameworkId, TaskId, u64)> = state
            .live_tasks_on(agent)
            .map(|t| (t.framework.clone(), t.spec.id.clone(), t.spec.kill_grace_ms))
            .collect();
        for (framework, task, grace) in live {
            self.kill_on_agent(state, &framework, agent, &task, grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::answer::Answer;
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Command;

    fn offers_proposed(sim: &Sim) -> Vec<String> {
        sim.proposed_ops()
            .into_iter()
            .filter_map(|op| match op {
                ClusterOp::CreateOffers(offers) => Some(offers),
                _ => None,
            })
            .flatten()
            .map(|o| format!("{} on {}", o.resources, o.agent))
            .collect()
    }

    fn heartbeat(sim: &mut Sim, agent: &str) -> Option<Result<Answer, Refusal>> {
        let reply = sim.reply();
        let call = reply.id();
        sim.command(Command::AgentHeartbeat {
            agent: AgentId::new(agent).unwrap(),
            reply,
        });
        sim.answer(call)
    }

    #[test]
    fn a_registering_agents_resources_are_offered_once_its_registration_commits_and_not_before() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        let mut stream = sim.subscribe("f1");
        let interval = sim.c.config.allocation_interval;
        let batch = sim.c.config.allocation_batch;
        let reply = sim.reply();
        let call = reply.id();
        let record = sim.agent_record("a1", "cpus:2;mem:1024");
        sim.command(Command::RegisterAgent {
            agent: record,
            tasks: None,
            truncated: false,
            reply,
        });
        sim.advance(interval);
        assert!(
            offers_proposed(&sim).is_empty(),
            "offered before the registration committed: {:?}",
            sim.proposed_ops()
        );
        assert_eq!(sim.answer(call), None, "answered before commit");
        assert!(matches!(
            sim.commit(),
            ClusterOp::RegisterAgent { tasks: None, .. }
        ));
        match sim.answer(call) {
            Some(Ok(Answer::Registered(r))) => assert_eq!(r.agent_id, "a1"),
            other => panic!("registration answered {other:?}"),
        }
        // Right after a periodic cycle: the offer comes within `allocation_batch`.
        sim.advance(batch);
        assert_eq!(
            offers_proposed(&sim),
            ["cpus:2;mem:1024 on a1"],
            "offered within {batch:?} of the registration"
        );
        sim.settle();
        let offers = Stream::offers(&stream.events());
        assert_eq!(offers.len(), 1, "{offers:?}");
        assert_eq!(offers[0].agent_id, "a1");
    }

    #[test]
    fn an_agent_is_answered_reregister_after_a_leader_change_until_it_registers_again() {
        let mut sim = Sim::new(OfferCycleConfig::default());
        sim.register_agent("a1", "cpus:2;mem:1024");
        sim.register_agent("a2", "cpus:2;mem:1024");
        assert_eq!(
            heartbeat(&mut sim, "a1"),
            Some(Ok(Answer::Reregister(false))),
            "before the leader change"
        );
        sim.restart_leader();
        for a in ["a1", "a2"] {
            assert_eq!(
                heartbeat(&mut sim, a),
                Some(Ok(Answer::Reregister(true))),
                "{a} after the leader change"
            );
        }
        sim.register_agent_with("a1", "cpus:2;mem:1024", Some(Vec::new()));
        assert_eq!(
            heartbeat(&mut sim, "a1"),
            Some(Ok(Answer::Reregister(false))),
            "a1 registered again"
        );
        assert_eq!(
            heartbeat(&mut sim, "a2"),
            Some(Ok(Answer::Reregister(true))),
            "a2 is still awaited"
        );
        assert_eq!(
            heartbeat(&mut sim, "unknown"),
            Some(Ok(Answer::Reregister(true))),
            "an agent the registry does not know registers"
        );
    }
}
