//! The engine under random inputs: commands, outcomes (commits and losses) and time steps,
//! with its invariants checked after every step.

use std::time::Duration;

use super::sim::*;
use super::{Call, Command};
use crate::config::OfferCycleConfig;
use crate::ids::{AgentId, OfferId, TaskId};
use crate::leader::agents::AgentMessage;
use crate::leader::answer::CallId;
use crate::replicated::ReplicaError;

/// One step of a random run.
#[derive(Clone, Debug)]
enum Step {
    /// Time moves on (a tick; allocation when due).
    Advance(u64),
    /// The oldest proposal in flight commits.
    Commit,
    /// The oldest proposal in flight is lost (truncated, leadership lost: outcome unknown).
    Lose,
    /// The framework accepts its `n`-th outstanding offer, launching one task of 1 cpu.
    Accept(usize),
    /// The framework declines its `n`-th outstanding offer.
    Decline(usize),
    /// The `n`-th live task's agent reports it RUNNING, or FINISHED when `ends`.
    Report(usize, bool),
    /// The framework acknowledges the `n`-th task's latest update.
    Acknowledge(usize),
    /// The `n`-th agent heartbeats.
    Heartbeat(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1u64..=90_000).prop_map(Step::Advance),
        6 => Just(Step::Commit),
        1 => Just(Step::Lose),
        3 => (0usize..4).prop_map(Step::Accept),
        1 => (0usize..4).prop_map(Step::Decline),
        3 => ((0usize..8), any::<bool>()).prop_map(|(n, ends)| Step::Report(n, ends)),
        2 => (0usize..8).prop_map(Step::Acknowledge),
        2 => (0usize..3).prop_map(Step::Heartbeat),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random commands, outcomes (commits and losses) and time steps: after every step the
    /// allocator's books match the registry, no offer reached the framework before its commit,
    /// no task reached an agent before its ACCEPT's commit, and no agent's update was
    /// acknowledged before its commit.
    #[test]
    fn the_offer_cycle_keeps_its_invariants_under_random_inputs(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let mut sim = Sim::new(OfferCycleConfig::default());
        for a in ["a1", "a2", "a3"] {
            sim.register_agent(a, "cpus:4;mem:1024");
        }
        let mut stream = sim.subscribe("f1");
        let f1 = stream.framework.clone();
        let agents: Vec<AgentId> = ["a1", "a2", "a3"].iter().map(|a| AgentId::new(a).unwrap()).collect();
        let mut outstanding: Vec<String> = Vec::new();
        let mut launched = 0u32;
        let mut uuid = 0u128;
        let mut ran = 0usize;
        let mut acks: Vec<PendingAck> = Vec::new();
        for step in steps {
            match step {
                Step::Advance(ms) => sim.advance(Duration::from_millis(ms)),
                Step::Commit => {
                    if !sim.proposed.is_empty() {
                        sim.commit();
                    }
                }
                Step::Lose => {
                    if !sim.proposed.is_empty() {
                        sim.lose(ReplicaError::Lost("truncated".into()));
                    }
                }
                Step::Accept(n) | Step::Decline(n) if !outstanding.is_empty() => {
                    let offer = outstanding.remove(n % outstanding.len());
                    let call = if matches!(step, Step::Accept(_)) {
                        launched += 1;
                        accept_one(&offer, task(&format!("t{launched}"), "cpus:1;mem:64"))
                    } else {
                        Call::Decline { offers: vec![OfferId::new(&offer).unwrap()], refuse_ms: Some(0) }
                    };
                    sim.call(&stream, call);
                }
                Step::Accept(_) | Step::Decline(_) => {}
                Step::Report(n, ends) => {
                    let live: Vec<(AgentId, TaskId)> = sim
                        .registry
                        .tasks()
                        .filter(|t| !t.state.is_terminal())
                        .map(|t| (t.agent.clone(), t.spec.id.clone()))
                        .collect();
                    if let Some((agent, task)) = live.get(n % live.len().max(1)) {
                        uuid += 1;
                        let state = if ends {
                            crate::registry::TaskState::Finished
                        } else {
                            crate::registry::TaskState::Running
                        };
                        let call = sim.send_update(agent, &f1, task, state, uuid);
                        acks.push((task.clone(), uuid, call));
                    }
                }
                Step::Acknowledge(n) => {
                    let tasks: Vec<(TaskId, uuid::Uuid)> = sim
                        .registry
                        .tasks()
                        .filter_map(|t| t.updates.last().map(|u| (t.spec.id.clone(), u.update.uuid)))
                        .collect();
                    if let Some((task, uuid)) = tasks.get(n % tasks.len().max(1)) {
                        sim.call(&stream, Call::Acknowledge { task: task.clone(), uuid: *uuid });
                    }
                }
                Step::Heartbeat(n) => {
                    let reply = sim.reply();
                    sim.command(Command::AgentHeartbeat { agent: agents[n % agents.len()].clone(), reply });
                }
            }
            check_allocator_books(&sim);
            // Offers reach the framework only once committed.
            for o in Stream::offers(&stream.events()) {
                let id = OfferId::new(&o.id).unwrap();
                proptest::prop_assert!(sim.registry.offer(&id).is_some(), "offer {} sent, not in the registry", o.id);
                outstanding.push(o.id);
            }
            outstanding.retain(|id| sim.registry.offer(&OfferId::new(id).unwrap()).is_some());
            // Tasks reach agents only once their ACCEPT is committed.
            for (_, message) in sim.to_agents.drain(ran..).collect::<Vec<_>>() {
                if let AgentMessage::Run(run) = message {
                    for t in run.tasks {
                        let id = TaskId::new(&t.task_id).unwrap();
                        proptest::prop_assert!(sim.registry.task(&f1, &id).is_some(), "task {} sent before its ACCEPT committed", t.task_id);
                    }
                }
            }
            ran = sim.to_agents.len();
            // An agent's update is acknowledged (answered Ok) only once it is committed.
            let mut answered = Vec::new();
            acks.retain(|(task, uuid, call)| match sim.answer(*call) {
                Some(r) => {
                    answered.push((task.clone(), *uuid, r.is_ok()));
                    false
                }
                None => true,
            });
            for (task, uuid, ok) in answered {
                if ok {
                    let t = sim.registry.task(&f1, &task).expect("acknowledged update's task");
                    proptest::prop_assert!(
                        t.updates.iter().any(|u| u.update.uuid == uuid::Uuid::from_u128(uuid)) || t.state.is_terminal(),
                        "update {uuid} of {task} acknowledged before it committed"
                    );
                }
            }
        }
    }
}

/// An agent's update not answered yet: its task, its uuid, the call its answer comes for.
type PendingAck = (TaskId, u128, CallId);
