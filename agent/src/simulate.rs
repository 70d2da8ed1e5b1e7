//! Simulated agents (`drover agent --simulate N`): N agents in one process, for exercising
//! masters and schedulers at scale without running processes.
//!
//! Each simulated agent registers and heartbeats like a real one (its own id in
//! `WORK_DIR/sim-<i>/meta/agent_id`, hostname `sim-<i>`, attribute `simulated:true`), and all
//! of them are served by the one Agent service, which routes a request by its `agent_id`. A
//! task is a timer, not a process: it reports `TASK_STARTING` and `TASK_RUNNING` at once, and
//! after its duration `TASK_FINISHED` (exit code 0) or `TASK_FAILED` (another exit code); a
//! kill ends it with `TASK_KILLED` at once (no grace: nothing runs). Duration:
//! `DROVER_SIM_DURATION_MS` in the task's environment, else N from a command starting with
//! `sleep N` (`sleep infinity`: until killed), else 0. Exit code: `DROVER_SIM_EXIT_CODE`, else 0.
//! Updates go through the same status update manager and master protocol as a real agent's,
//! but are checkpointed **in memory only**: a simulated agent's tasks and unacknowledged
//! updates do not survive its process. When the manager's queue is full (the master is
//! behind), a simulated task keeps its updates, in order, and offers them again every
//! [`QUEUE_FULL_RETRY`], as a real executor does.
//!
//! Cheap by construction, so that 10 000 agents fit in one process: one actor owns every
//! simulated task (reached through [`Simulator`]); a timer is a tokio task, not a thread;
//! registration loops are tokio tasks sharing one [`drover_client::MasterClient`] (one
//! connection per master), with their first registration and heartbeats spread over the
//! heartbeat interval.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::launcher::TaskError;
use crate::metrics as m;
use crate::status_updates::{StatusUpdates, UpdateError};
use crate::task::{KillTask, RunTask, TaskSpec};
use crate::update::{StatusSource, StatusUpdate, TaskState};

/// Environment variable giving a simulated task's duration, milliseconds.
pub const DURATION_ENV: &str = "DROVER_SIM_DURATION_MS";
/// Environment variable giving a simulated task's exit code.
pub const EXIT_CODE_ENV: &str = "DROVER_SIM_EXIT_CODE";
/// Longest simulated duration; longer ones (and `sleep infinity`) run until killed.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Finished simulated tasks remembered, all agents together.
pub const MAX_COMPLETED_TASKS: usize = 100_000;
const CHANNEL_DEPTH: usize = 4096;
/// How long a task whose update the status update manager could not take waits before
/// offering it again.
pub const QUEUE_FULL_RETRY: Duration = Duration::from_millis(250);

/// How a simulated task behaves: how long it runs (None: until killed) and its exit code.
pub fn plan(task: &TaskSpec) -> (Option<Duration>, i32) {
    let exit_code = task
        .environment
        .get(EXIT_CODE_ENV)
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let duration = if let Some(ms) = task
        .environment
        .get(DURATION_ENV)
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(Duration::from_millis(ms))
    } else if let Some(rest) = task.shell.trim_start().strip_prefix("sleep ") {
        let arg = rest.trim_start();
        let number: String = arg
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        match number.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                Some(Duration::from_secs_f64(s.min(MAX_DURATION.as_secs_f64())))
            }
            _ if arg.starts_with("infinity") => None,
            _ => Some(Duration::ZERO),
        }
    } else {
        Some(Duration::ZERO)
    };
    (duration.filter(|d| *d < MAX_DURATION), exit_code)
}

type Key = (AgentId, FrameworkId, TaskId);

enum Msg {
    Run {
        // Boxed: a task (its resources held inline) is much larger than the other messages.
        req: Box<RunTask>,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    Kill {
        req: KillTask,
        reply: oneshot::Sender<Result<(), TaskError>>,
    },
    Registered(usize, AgentId),
    Report {
        agent: AgentId,
        reply: oneshot::Sender<Vec<(FrameworkId, TaskId, TaskState)>>,
    },
    Ended {
        key: Key,
        exit_code: i32,
    },
    /// Offer the task's kept updates to the status update manager again.
    Flush(Key),
}

/// The handle to the simulated agents' tasks. Cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    tx: mpsc::Sender<Msg>,
}

struct SimTask {
    state: TaskState,
    timer: Option<AbortHandle>,
    /// Updates the status update manager could not take yet (its queue was full), in order.
    unsent: VecDeque<StatusUpdate>,
}

struct Actor {
    updates: StatusUpdates,
    /// Current id of each simulated agent, by index.
    ids: Vec<Option<AgentId>>,
    by_id: HashMap<AgentId, usize>,
    tasks: HashMap<Key, SimTask>,
    /// The keys of `tasks` by agent (a registration's report reads one agent's).
    by_agent: HashMap<AgentId, std::collections::HashSet<(FrameworkId, TaskId)>>,
    /// Agents that made a task report and wait for their registration's answer: they refuse
    /// new tasks meanwhile (as the real agent does).
    registering: std::collections::HashSet<AgentId>,
    completed: VecDeque<Key>,
    timers: JoinSet<()>,
    me: mpsc::WeakSender<Msg>,
}

impl Simulator {
    pub fn start(
        agents: usize,
        updates: StatusUpdates,
    ) -> (Simulator, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let actor = Actor {
            updates,
            ids: vec![None; agents],
            by_id: HashMap::new(),
            tasks: HashMap::new(),
            by_agent: HashMap::new(),
            registering: Default::default(),
            completed: VecDeque::new(),
            timers: JoinSet::new(),
            me: tx.downgrade(),
        };
        (Simulator { tx }, tokio::spawn(actor.run(rx)))
    }

    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), TaskError>>) -> Msg,
    ) -> Result<(), TaskError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| TaskError::Stopped)?;
        rx.await.map_err(|_| TaskError::Stopped)?
    }

    /// Starts the tasks of one RunTask (see [`crate::launcher::run_all`]).
    pub async fn run_tasks(&self, reqs: Vec<RunTask>) -> Vec<Result<(), TaskError>> {
        crate::launcher::run_all(&self.tx, reqs, |req, reply| Msg::Run {
            req: Box::new(req),
            reply,
        })
        .await
    }

    pub async fn run_task(&self, req: RunTask) -> Result<(), TaskError> {
        self.ask(|reply| Msg::Run {
            req: Box::new(req),
            reply,
        })
        .await
    }

    pub async fn kill_task(&self, req: KillTask) -> Result<(), TaskError> {
        self.ask(|reply| Msg::Kill { req, reply }).await
    }

    pub async fn registered(&self, index: usize, id: AgentId) {
        let _ = self.tx.send(Msg::Registered(index, id)).await;
    }

    /// What simulated agent `agent` reports when it registers again: every task it has (the
    /// ended ones it still remembers too, so that the master waits for their last updates).
    pub async fn report(&self, agent: AgentId) -> Vec<(FrameworkId, TaskId, TaskState)> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Report { agent, reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Some(_) = self.timers.join_next(), if !self.timers.is_empty() => {}
            }
        }
        for (_, t) in self.tasks.drain() {
            m::task_state_changed(Some(t.state), None);
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Run { req, reply } => {
                let r = self.run_task(*req).await;
                let _ = reply.send(r);
            }
            Msg::Kill { req, reply } => {
                let r = self.kill_task(req).await;
                let _ = reply.send(r);
            }
            Msg::Registered(index, id) => {
                self.registering.remove(&id);
                if let Some(slot) = self.ids.get_mut(index) {
                    if let Some(old) = slot.replace(id.clone()) {
                        self.by_id.remove(&old);
                    }
                    self.by_id.insert(id, index);
                }
            }
            Msg::Ended { key, exit_code } => {
                let (state, message) = if exit_code == 0 {
                    (
                        TaskState::Finished,
                        "simulated: exited with status 0".to_string(),
                    )
                } else {
                    (
                        TaskState::Failed,
                        format!("simulated: exited with status {exit_code}"),
                    )
                };
                if let Some(t) = self.tasks.get_mut(&key) {
                    t.timer = None;
                }
                self.report(&key, state, "command_exited", message, Some(exit_code))
                    .await;
            }
            Msg::Flush(key) => self.flush(&key).await,
            Msg::Report { agent, reply } => {
                self.registering.insert(agent.clone());
                let report = self
                    .by_agent
                    .get(&agent)
                    .into_iter()
                    .flatten()
                    .filter_map(|(f, t)| {
                        let key = (agent.clone(), f.clone(), t.clone());
                        let state = self.tasks.get(&key)?.state;
                        Some((f.clone(), t.clone(), state))
                    })
                    .collect::<Vec<_>>();
                let mut report = report;
                report.sort_by_key(|(_, _, s)| s.is_terminal());
                let _ = reply.send(report);
            }
        }
    }

    fn check_agent(&self, id: &AgentId) -> Result<(), TaskError> {
        if self.by_id.contains_key(id) {
            Ok(())
        } else if self.by_id.is_empty() {
            Err(TaskError::NotRegistered)
        } else {
            Err(TaskError::UnknownAgent(id.clone()))
        }
    }

    /// Sends an update for a simulated task and moves it to `state`.
    async fn report(
        &mut self,
        key: &Key,
        state: TaskState,
        reason: &str,
        message: String,
        exit_code: Option<i32>,
    ) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if task.state.is_terminal() {
            return;
        }
        let was = task.state;
        task.state = state;
        m::task_state_changed(Some(was), Some(state));
        let update = StatusUpdate::new(
            key.0.clone(),
            key.1.clone(),
            key.2.clone(),
            state,
            StatusSource::Executor,
            reason,
            message,
        )
        .with_exit_code(exit_code);
        task.unsent.push_back(update);
        if task.unsent.len() == 1 {
            self.flush(key).await;
        }
        if state.is_terminal() {
            self.completed.push_back(key.clone());
            while self.completed.len() > MAX_COMPLETED_TASKS {
                let Some(old) = self.completed.pop_front() else {
                    break;
                };
                if self.tasks.get(&old).is_some_and(|t| !t.unsent.is_empty()) {
                    // Still has updates to deliver: forgotten later.
                    self.completed.push_back(old);
                    break;
                }
                if let Some(t) = self.tasks.remove(&old) {
                    m::task_state_changed(Some(t.state), None);
                    if let Some(keys) = self.by_agent.get_mut(&old.0) {
                        keys.remove(&(old.1.clone(), old.2.clone()));
                        if keys.is_empty() {
                            self.by_agent.remove(&old.0);
                        }
                    }
                }
            }
        }
    }

    /// Hands the task's kept updates to the status update manager, in order, until it
    /// refuses one for a full queue (then again after [`QUEUE_FULL_RETRY`]).
    async fn flush(&mut self, key: &Key) {
        loop {
            let Some(update) = self.tasks.get(key).and_then(|t| t.unsent.front().cloned()) else {
                return;
            };
            match self.updates.update(update).await {
                Ok(()) => {}
                Err(UpdateError::QueueFull(why)) => {
                    tracing::debug!(task = %key.2, why, "simulated: status update queue full; offering again later");
                    let (me, k) = (self.me.clone(), key.clone());
                    self.timers.spawn(async move {
                        tokio::time::sleep(drover_client::jittered(QUEUE_FULL_RETRY)).await;
                        if let Some(tx) = me.upgrade() {
                            let _ = tx.send(Msg::Flush(k)).await;
                        }
                    });
                    return;
                }
                Err(e) => {
                    tracing::warn!(task = %key.2, agent_id = %key.0, error = %e, "simulated: cannot queue a status update; it is lost");
                }
            }
            if let Some(t) = self.tasks.get_mut(key) {
                t.unsent.pop_front();
            }
        }
    }

    async fn run_task(&mut self, req: RunTask) -> Result<(), TaskError> {
        self.check_agent(&req.agent_id)?;
        let key = (
            req.agent_id.clone(),
            req.framework_id.clone(),
            req.task.task_id.clone(),
        );
        if self.tasks.contains_key(&key) {
            return Ok(());
        }
        if self.registering.contains(&key.0) {
            return Err(TaskError::Registering);
        }
        let (duration, exit_code) = plan(&req.task);
        tracing::debug!(task = %key.2, agent_id = %key.0, ?duration, exit_code, "simulated task launched");
        self.tasks.insert(
            key.clone(),
            SimTask {
                state: TaskState::Staging,
                timer: None,
                unsent: VecDeque::new(),
            },
        );
        self.by_agent
            .entry(key.0.clone())
            .or_default()
            .insert((key.1.clone(), key.2.clone()));
        m::task_state_changed(None, Some(TaskState::Staging));
        self.report(
            &key,
            TaskState::Starting,
            "starting",
            "simulated: starting".into(),
            None,
        )
        .await;
        self.report(
            &key,
            TaskState::Running,
            "running",
            "simulated: running".into(),
            None,
        )
        .await;
        if let Some(d) = duration {
            let (me, k) = (self.me.clone(), key.clone());
            let handle = self.timers.spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(tx) = me.upgrade() {
                    let _ = tx.send(Msg::Ended { key: k, exit_code }).await;
                }
            });
            if let Some(t) = self.tasks.get_mut(&key) {
                t.timer = Some(handle);
            }
        }
        Ok(())
    }

    async fn kill_task(&mut self, req: KillTask) -> Result<(), TaskError> {
        self.check_agent(&req.agent_id)?;
        let key = (
            req.agent_id.clone(),
            req.framework_id.clone(),
            req.task_id.clone(),
        );
        let Some(task) = self.tasks.get_mut(&key) else {
            return Err(TaskError::NotFound {
                framework: key.1,
                task: key.2,
            });
        };
        if let Some(t) = task.timer.take() {
            t.abort();
        }
        self.report(
            &key,
            TaskState::Killed,
            "killed",
            "simulated: killed on request".into(),
            None,
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use drover_proto::v1;

    use super::*;
    use crate::status_updates::{Checkpointing, Config};
    use crate::testing::{wait_for, FakeMaster};

    fn spec(shell: &str, env: &[(&str, &str)]) -> TaskSpec {
        TaskSpec {
            task_id: TaskId::new("t1").expect("id"),
            name: String::new(),
            resources: "cpus:1".parse().expect("resources"),
            shell: shell.into(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kill_grace_ms: None,
            health_check: None,
            executor: None,
            data: Vec::new(),
            task_group: None,
            container: None,
            arguments: Vec::new(),
            user: String::new(),
        }
    }

    #[test]
    fn plans_follow_env_then_sleep_then_zero() {
        assert_eq!(
            plan(&spec("sleep 2", &[])),
            (Some(Duration::from_secs(2)), 0)
        );
        assert_eq!(
            plan(&spec("sleep 0.5; echo", &[])),
            (Some(Duration::from_millis(500)), 0)
        );
        assert_eq!(plan(&spec("sleep infinity", &[])), (None, 0));
        assert_eq!(plan(&spec("echo hi", &[])), (Some(Duration::ZERO), 0));
        assert_eq!(
            plan(&spec(
                "sleep 9",
                &[(DURATION_ENV, "20"), (EXIT_CODE_ENV, "4")]
            )),
            (Some(Duration::from_millis(20)), 4)
        );
    }

    #[tokio::test]
    async fn simulated_tasks_report_through_the_status_update_manager() {
        let fake = FakeMaster::default();
        let addr = fake.serve().await;
        let (updates, manager) = crate::status_updates::StatusUpdates::start(
            FakeMaster::client(&addr),
            Config::new(Checkpointing::Memory),
        );
        let (sim, actor) = Simulator::start(2, updates);
        let a0 = AgentId::new("sim-agent-0").expect("id");
        let a1 = AgentId::new("sim-agent-1").expect("id");
        sim.registered(0, a0.clone()).await;
        sim.registered(1, a1.clone()).await;
        let fw = FrameworkId::new("fw").expect("id");
        let run = |agent: &AgentId, task: &str, shell: &str, env: &[(&str, &str)]| RunTask {
            agent_id: agent.clone(),
            framework_id: fw.clone(),
            framework_name: String::new(),
            task: TaskSpec {
                task_id: TaskId::new(task).expect("id"),
                ..spec(shell, env)
            },
        };
        sim.run_task(run(&a0, "quick", "true", &[(EXIT_CODE_ENV, "3")]))
            .await
            .expect("run");
        sim.run_task(run(&a1, "long", "sleep infinity", &[]))
            .await
            .expect("run");
        // Idempotent.
        sim.run_task(run(&a1, "long", "sleep infinity", &[]))
            .await
            .expect("run again");
        let stranger = run(&AgentId::new("other").expect("id"), "x", "true", &[]);
        assert!(matches!(
            sim.run_task(stranger).await,
            Err(TaskError::UnknownAgent(_))
        ));
        sim.kill_task(KillTask {
            agent_id: a1.clone(),
            framework_id: fw.clone(),
            task_id: TaskId::new("long").expect("id"),
            grace: None,
        })
        .await
        .expect("kill");
        let missing = KillTask {
            agent_id: a1.clone(),
            framework_id: fw.clone(),
            task_id: TaskId::new("missing").expect("id"),
            grace: None,
        };
        assert!(matches!(
            sim.kill_task(missing).await,
            Err(TaskError::NotFound { .. })
        ));
        wait_for(
            Duration::from_secs(10),
            "simulated updates applied",
            || async {
                fake.applied_for("quick").len() == 3 && fake.applied_for("long").len() == 3
            },
        )
        .await;
        let states = |t: &str| {
            fake.applied_for(t)
                .into_iter()
                .map(|(s, _)| s)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states("quick"),
            vec![
                v1::TaskState::TaskStarting as i32,
                v1::TaskState::TaskRunning as i32,
                v1::TaskState::TaskFailed as i32
            ]
        );
        assert_eq!(
            states("long"),
            vec![
                v1::TaskState::TaskStarting as i32,
                v1::TaskState::TaskRunning as i32,
                v1::TaskState::TaskKilled as i32
            ]
        );
        let quick = fake
            .state()
            .applied
            .iter()
            .find(|u| u.task_id == "quick" && u.state == v1::TaskState::TaskFailed as i32)
            .cloned()
            .expect("failed");
        assert_eq!(quick.exit_code, Some(3));
        assert_eq!(quick.agent_id, "sim-agent-0");
        actor.abort();
        manager.stop().await;
    }
}
