//! ACCEPT: a framework launches tasks on offers. The registry validates and commits it (the
//! offers consumed, the tasks STAGING); only then does the RunTask go to the agent, and the
//! unused part of the offers returns to the allocator with the framework's filter.
//!
//! A custom executor is paid for once per run: the first task that names it on an agent (no
//! live task of the framework there, and no earlier task of the same ACCEPT, names it) has
//! the executor's resources added to its own and the executor marked `charged`; a later task
//! that names it must name it the same way.
//!
//! A task with a container goes only to an agent that runs containers: one whose
//! `containerizers` attribute (set by the agent when its Docker engine answered at start)
//! names `docker`; elsewhere the ACCEPT is refused naming the task.

use std::collections::HashMap;

use drover_model::container::{runs_docker, CONTAINERIZERS_ATTRIBUTE};
use drover_proto::v1;

use super::{ms, Engine, Pending};
use crate::ids::{FrameworkId, OfferId};
use crate::leader::answer::{Refusal, Reply};
use crate::leader::convert;
use crate::metrics as m;
use crate::registry::cluster::{ClusterOp, ClusterOutcome, ClusterState, TaskSpec};

/// `tasks` with each custom executor charged to the first task that starts a run of it
/// (see the module doc); refused when a task names a running executor differently.
pub(super) fn charge_executors(
    state: &ClusterState,
    framework: &FrameworkId,
    offers: &[OfferId],
    tasks: Vec<TaskSpec>,
) -> Result<Vec<TaskSpec>, Refusal> {
    if tasks.iter().all(|t| t.extensions.is_none()) {
        return Ok(tasks);
    }
    // An offer the registry does not have makes it refuse the ACCEPT; nothing to charge.
    let Some(agent) = offers
        .first()
        .and_then(|o| state.offer(o))
        .map(|o| o.agent.clone())
    else {
        return Ok(tasks);
    };
    let uncharged = |e: &v1::ExecutorInfo| v1::ExecutorInfo {
        charged: false,
        ..e.clone()
    };
    let mut running: HashMap<String, v1::ExecutorInfo> = state
        .live_tasks_on(&agent)
        .filter(|t| &t.framework == framework)
        .filter_map(|t| convert::executor_of(&t.spec))
        .map(|e| (e.executor_id.clone(), uncharged(&e)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        let Some(executor) = convert::executor_of(&task) else {
            out.push(task);
            continue;
        };
        match running.get(&executor.executor_id) {
            Some(known) if *known == uncharged(&executor) => out.push(task),
            Some(_) => {
                let id = &executor.executor_id;
                return Err(Refusal::InvalidArgument(format!(
                    "launch[{i}].executor: differs from executor {id} of this framework on {agent}"
                )));
            }
            None => {
                let charged = convert::with_executor_charged(&task, &executor).map_err(|e| {
                    Refusal::InvalidArgument(format!("launch[{i}].{}", e.message()))
                })?;
                running.insert(executor.executor_id.clone(), uncharged(&executor));
                out.push(charged);
            }
        }
    }
    Ok(out)
}

/// Refuses the ACCEPT when a task has a container and the offers' agent does not run
/// containers.
pub(super) fn check_containerizers(
    state: &ClusterState,
    offers: &[OfferId],
    tasks: &[TaskSpec],
) -> Result<(), Refusal> {
    let Some(i) = tasks
        .iter()
        .position(|t| convert::container_of(t).is_some())
    else {
        return Ok(());
    };
    let Some(agent) = offers
        .first()
        .and_then(|o| state.offer(o))
        .and_then(|o| state.agent(&o.agent))
    else {
        // The registry refuses an ACCEPT of offers it does not have.
        return Ok(());
    };
    let containerizers = agent
        .attributes
        .get(CONTAINERIZERS_ATTRIBUTE)
        .map(|v| v.to_string())
        .unwrap_or_else(|| "command".into());
    if runs_docker(&containerizers) {
        return Ok(());
    }
    Err(Refusal::InvalidArgument(format!(
        "launch[{i}].container: agent {} ({}) does not run containers (its containerizers: {containerizers})",
        agent.id, agent.hostname,
    )))
}

impl Engine {
    pub(super) fn accept(
        &mut self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        refuse_ms: Option<u64>,
        reply: Reply<()>,
    ) {
        if let Err(refusal) = check_containerizers(&self.view, &offers, &tasks) {
            self.answer(reply, Err(refusal));
            return;
        }
        let tasks = match charge_executors(&self.view, &framework, &offers, tasks) {
            Ok(t) => t,
            Err(refusal) => {
                self.answer(reply, Err(refusal));
                return;
            }
        };
        // Tasks without extensions are written as every build reads them.
        let op = if tasks.iter().any(|t| t.extensions.is_some()) {
            ClusterOp::AcceptExtended {
                framework: framework.clone(),
                offers: offers.clone(),
                tasks: tasks.clone(),
                extensions: tasks.iter().map(|t| t.extensions.clone()).collect(),
            }
        } else {
            ClusterOp::Accept {
                framework: framework.clone(),
                offers: offers.clone(),
                tasks: tasks.clone(),
            }
        };
        let agent = offers
            .first()
            .and_then(|o| self.view.offer(o))
            .map(|o| o.agent.clone());
        self.launching.begin(&framework, agent.as_ref(), &tasks);
        self.propose(
            op,
            Pending::Accepted {
                framework,
                offers,
                tasks,
                refuse_ms: refuse_ms.unwrap_or(ms(self.config.default_refuse)),
                reply,
            },
        );
    }

    pub(super) fn accepted(
        &mut self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        tasks: Vec<TaskSpec>,
        refuse_ms: u64,
        outcome: ClusterOutcome,
        reply: Reply<()>,
    ) {
        let ClusterOutcome::Accepted { agent, unused } = outcome else {
            self.answer(reply, Err(Refusal::Internal("unexpected outcome".into())));
            self.launch_settled(&framework, &tasks);
            return;
        };
        // The offers are consumed; drop their timers.
        let state = self.state();
        for id in &offers {
            self.offers.forget(id);
        }
        if !unused.is_empty() {
            let refuse = (refuse_ms > 0).then_some((self.now.wall_ms, refuse_ms));
            if let Err(e) = self.allocator.recover(&framework, &agent, &unused, refuse) {
                tracing::error!(error = %e, "allocator");
            }
        }
        metrics::counter!(m::TASKS_LAUNCHED_TOTAL).increment(tasks.len() as u64);
        // A TEARDOWN committed meanwhile is killing these: do not launch them.
        if !self.frameworks.is_torn_down(&framework) {
            // One RunTask: an ACCEPT's tasks fit (`MAX_TASKS_PER_ACCEPT`).
            self.run_on_agent(&state, &framework, &agent, &tasks);
        }
        self.answer(reply, Ok(()));
        self.launch_settled(&framework, &tasks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OfferCycleConfig;
    use crate::leader::agents::AgentMessage;
    use crate::leader::answer::{self, Answer};
    use crate::leader::engine::sim::*;
    use crate::leader::engine::Call;
    use crate::registry::cluster::{AgentRecord, ClusterError};

    #[test]
    fn a_task_is_sent_to_its_agent_only_after_its_accept_is_committed() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.allocate();
        sim.commit();
        let offer = Stream::offers(&stream.events()).remove(0);
        let call = sim.call(&stream, accept_one(&offer.id, task("t1", "cpus:1;mem:128")));
        assert!(sim.to_agents.is_empty(), "RunTask before ACCEPT committed");
        assert_eq!(sim.answer(call), None, "answered before commit");
        assert!(matches!(sim.commit(), ClusterOp::Accept { .. }));
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        match sim.to_agents.as_slice() {
            [(agent, AgentMessage::Run(run))] => {
                assert_eq!(agent.to_string(), "a1");
                assert_eq!(run.tasks.len(), 1);
                assert_eq!(run.tasks[0].task_id, "t1");
            }
            other => panic!("expected one RunTask, got {} messages", other.len()),
        }
    }

    #[test]
    fn an_accept_the_registry_refuses_is_answered_with_the_refusal_and_launches_nothing() {
        let (mut sim, stream) = one_agent_one_framework();
        let call = sim.call(&stream, accept_one("never-offered", task("t1", "cpus:1")));
        sim.settle();
        let refused = sim.answer(call).unwrap().unwrap_err();
        assert!(
            matches!(&refused, Refusal::Cluster(ClusterError::OfferNotOutstanding(id)) if id.to_string() == "never-offered"),
            "{refused:?}"
        );
        let status = answer::to_status(refused);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
        assert!(status.message().contains("never-offered"), "{status}");
        assert!(sim.to_agents.is_empty());
    }

    fn custom(id: &str, resources: &str, executor: &str, shell: &str) -> TaskSpec {
        let info = v1::TaskInfo {
            task_id: id.into(),
            name: id.into(),
            resources: res(resources).to_proto(),
            executor: Some(v1::ExecutorInfo {
                executor_id: executor.into(),
                command: Some(v1::CommandInfo {
                    shell: shell.into(),
                    environment: Default::default(),
                    ..Default::default()
                }),
                resources: res("cpus:0.5;mem:64").to_proto(),
                ..Default::default()
            }),
            ..Default::default()
        };
        convert::task_from_proto(0, &info).expect("a valid task")
    }

    fn container_task(id: &str) -> TaskSpec {
        let info = v1::TaskInfo {
            task_id: id.into(),
            name: id.into(),
            resources: res("cpus:1;mem:128").to_proto(),
            container: Some(v1::ContainerInfo {
                r#type: v1::container_info::Type::Docker as i32,
                docker: Some(v1::container_info::DockerInfo {
                    image: "web:1".into(),
                    ..Default::default()
                }),
                volumes: vec![],
            }),
            ..Default::default()
        };
        convert::task_from_proto(0, &info).expect("a valid task")
    }

    /// A container task goes only to an agent whose `containerizers` attribute names docker:
    /// elsewhere the ACCEPT is refused naming the task, and nothing is launched.
    #[test]
    fn a_container_task_is_refused_on_an_agent_without_docker() {
        let (mut sim, mut stream) = one_agent_one_framework();
        let call = accept_first_offer(&mut sim, &mut stream, container_task("c1"));
        sim.settle();
        let refused = answer::to_status(sim.answer(call).unwrap().unwrap_err());
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
        assert!(
            refused.message().contains("launch[0].container")
                && refused.message().contains("does not run containers"),
            "{refused}"
        );
        assert!(launched(&sim).is_empty());

        let mut sim = Sim::new(OfferCycleConfig::default());
        let agent = AgentRecord {
            attributes: "containerizers:docker,command".parse().unwrap(),
            ..sim.agent_record("a1", "cpus:4;mem:4096")
        };
        sim.register_record(agent, None);
        let mut stream = sim.subscribe("f1");
        let call = accept_first_offer(&mut sim, &mut stream, container_task("c1"));
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let tasks = launched(&sim);
        let image = tasks[0]
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .map(|d| d.image.clone());
        assert_eq!(image.as_deref(), Some("web:1"));
    }

    fn launched(sim: &Sim) -> Vec<v1::TaskInfo> {
        sim.to_agents
            .iter()
            .filter_map(|(_, m)| match m {
                AgentMessage::Run(r) => Some(r.tasks.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// A custom executor is paid for once per run on an agent: by the first task of the
    /// ACCEPT that names it, not by the second, nor by a later ACCEPT's task while the first
    /// is live; a task that names it differently is refused.
    #[test]
    fn a_custom_executor_is_charged_once_to_the_task_that_starts_it() {
        let (mut sim, mut stream) = one_agent_one_framework();
        sim.allocate();
        sim.commit();
        let offer = Stream::offers(&stream.events()).remove(0);
        assert!(offer.executor_ids.is_empty(), "no executor runs yet");
        let call = sim.call(
            &stream,
            Call::Accept {
                offers: vec![OfferId::new(&offer.id).unwrap()],
                tasks: vec![
                    custom("t1", "cpus:1;mem:128", "e1", "run-executor"),
                    custom("t2", "cpus:1;mem:128", "e1", "run-executor"),
                ],
                // What is left is offered again at once.
                refuse_ms: Some(0),
            },
        );
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let tasks = launched(&sim);
        assert_eq!(tasks.len(), 2);
        let charged: Vec<bool> = tasks
            .iter()
            .map(|t| t.executor.as_ref().expect("executor").charged)
            .collect();
        assert_eq!(charged, vec![true, false]);
        assert_eq!(res_of(&tasks[0]), res("cpus:1.5;mem:192"));
        assert_eq!(res_of(&tasks[1]), res("cpus:1;mem:128"));
        assert!(tasks.iter().all(|t| t.command.is_none()));
        // The registry holds the executor's share once.
        let fw = FrameworkId::new("f1").unwrap();
        let t1 = sim
            .registry
            .task(&fw, &crate::ids::TaskId::new("t1").unwrap())
            .map(|t| t.spec.resources.clone());
        assert_eq!(t1, Some(res("cpus:1.5;mem:192")));

        // A later ACCEPT: the run is live, so nothing more is charged; another command for the
        // same executor id is refused.
        sim.to_agents.clear();
        sim.allocate();
        sim.commit();
        let offer = Stream::offers(&stream.events()).remove(0);
        // The offer names the executor running there, as a Mesos offer does.
        assert_eq!(offer.executor_ids, ["e1"]);
        let refused = sim.call(
            &stream,
            accept_one(&offer.id, custom("t3", "cpus:0.5", "e1", "something else")),
        );
        sim.settle();
        let refusal = sim.answer(refused).expect("answered").expect_err("refused");
        let status = crate::leader::answer::to_status(refusal);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert!(
            status.message().starts_with("launch[0].executor"),
            "{status}"
        );
        let call = sim.call(
            &stream,
            accept_one(&offer.id, custom("t3", "cpus:0.5", "e1", "run-executor")),
        );
        sim.settle();
        assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
        let tasks = launched(&sim);
        assert_eq!(tasks.len(), 1);
        assert!(!tasks[0].executor.as_ref().expect("executor").charged);
        assert_eq!(res_of(&tasks[0]), res("cpus:0.5"));
        check_allocator_books(&sim);
    }

    fn res_of(t: &v1::TaskInfo) -> drover_resources::Resources {
        drover_resources::Resources::from_proto(&t.resources).expect("resources")
    }
}
