//! The conductor driven without a cluster: a simulated registry commits its proposals (in
//! order, or loses them, as a test says) and a test clock moves time. What the conductor asks
//! of the runtime is inspected as data: proposals, calls to agents, answers to callers;
//! framework streams are channels the test reads.

use std::collections::VecDeque;

use tokio::sync::mpsc::error::TryRecvError;

use super::*;
use crate::leader::answer::{self, Answer};
use crate::registry::cluster::ClusterError;
use crate::registry::cluster::Stamp;

pub(super) fn res(t: &str) -> Resources {
    t.parse().unwrap()
}

/// A conductor and the registry its proposals commit to.
pub(super) struct Sim {
    pub(super) c: Conductor,
    pub(super) registry: ClusterState,
    pub(super) now: Now,
    index: u64,
    /// Proposed, not yet committed or lost, oldest first.
    pub(super) proposed: VecDeque<(ClusterOp, After)>,
    /// RunTask and KillTask messages sent to agents, in order.
    pub(super) to_agents: Vec<(AgentId, AgentMessage)>,
    /// Answers to callers not taken yet, by call.
    answers: HashMap<CallId, Result<Answer, Refusal>>,
    next_call: CallId,
}

/// A framework's end of its event stream.
pub(super) struct Stream {
    pub(super) framework: FrameworkId,
    pub(super) stream_id: String,
    events: mpsc::Receiver<Result<v1::Event, Status>>,
    /// Events read with SUBSCRIBED and not handed out yet.
    unread: Vec<v1::event::Event>,
}

impl Stream {
    /// The events sent so far and not read yet.
    pub(super) fn events(&mut self) -> Vec<v1::event::Event> {
        let mut out = std::mem::take(&mut self.unread);
        loop {
            match self.events.try_recv() {
                Ok(Ok(v1::Event { event: Some(e) })) => out.push(e),
                Ok(other) => panic!("unexpected stream item {other:?}"),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }

    /// The offers among `events`.
    pub(super) fn offers(events: &[v1::event::Event]) -> Vec<v1::Offer> {
        events
            .iter()
            .filter_map(|e| match e {
                v1::event::Event::Offers(o) => Some(o.offers.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub(super) fn caller(&self) -> Caller {
        Caller {
            framework: self.framework.clone(),
            stream_id: self.stream_id.clone(),
        }
    }
}

impl Sim {
    pub(super) fn new(config: OfferCycleConfig) -> Self {
        let now = Now {
            mono: Instant::now(),
            wall_ms: 1_700_000_000_000,
        };
        let mut c = Conductor::new(1, config, now);
        let mut n = 0u64;
        c.fresh_id = Box::new(move || {
            n += 1;
            format!("id-{n}")
        });
        let mut sim = Self {
            c,
            registry: ClusterState::default(),
            now,
            index: 0,
            proposed: VecDeque::new(),
            to_agents: Vec::new(),
            answers: HashMap::new(),
            next_call: 0,
        };
        let registry = sim.registry.clone();
        sim.input(|c| {
            c.rebuild(&registry);
        });
        sim
    }

    /// Hands one input to the conductor at the current time and registry, then takes what it
    /// asked for.
    pub(super) fn input(&mut self, f: impl FnOnce(&mut Conductor)) {
        self.c.begin_input(self.now, self.registry.clone());
        f(&mut self.c);
        for action in self.c.take_actions() {
            match action {
                Action::Propose { op, after } => self.proposed.push_back((op, after)),
                Action::ToAgent { agent, message, .. } => self.to_agents.push((agent, message)),
                Action::Reply { call, answer } => {
                    assert!(
                        self.answers.insert(call, answer).is_none(),
                        "call {call} answered twice"
                    );
                }
            }
        }
    }

    /// A handle for a caller's answer.
    pub(super) fn reply<T>(&mut self) -> Reply<T> {
        self.next_call += 1;
        Reply::new(self.next_call)
    }

    /// The answer to `call`, if it came (taken).
    pub(super) fn answer(&mut self, call: CallId) -> Option<Result<Answer, Refusal>> {
        self.answers.remove(&call)
    }

    pub(super) fn command(&mut self, c: Command) {
        self.input(|k| k.command(c));
    }

    /// Commits the oldest proposal in flight and hands its outcome to the conductor; returns
    /// the operation.
    pub(super) fn commit(&mut self) -> ClusterOp {
        let (op, after) = self.proposed.pop_front().expect("a proposal in flight");
        self.index += 1;
        let outcome = self.registry.apply_at(
            &op,
            &Stamp {
                index: self.index,
                position: 0,
                now_ms: self.now.wall_ms,
            },
        );
        self.input(|c| {
            c.completed(Completion {
                result: Ok(outcome),
                after,
            })
        });
        op
    }

    /// The oldest proposal in flight ends with `error` (not committed, or not known to be).
    pub(super) fn lose(&mut self, error: ReplicaError) -> ClusterOp {
        let (op, after) = self.proposed.pop_front().expect("a proposal in flight");
        self.input(|c| {
            c.completed(Completion {
                result: Err(error),
                after,
            })
        });
        op
    }

    /// Commits until nothing is in flight (what commits may propose more).
    pub(super) fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.proposed.is_empty() {
                return;
            }
            self.commit();
        }
        panic!("proposals never settle");
    }

    /// Moves time on by `d`: a timer tick, then allocation if it is due.
    pub(super) fn advance(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.wall_ms += d.as_millis() as u64;
        self.input(|c| c.tick());
        if self
            .c
            .allocation_due()
            .is_some_and(|due| due <= self.now.mono)
        {
            self.input(|c| c.on_allocation_due());
        }
    }

    /// The operations in flight, oldest first.
    pub(super) fn proposed_ops(&self) -> Vec<&ClusterOp> {
        self.proposed.iter().map(|(op, _)| op).collect()
    }

    /// Registers agent `id` with `total`; settles; returns the conductor's answer.
    pub(super) fn register_agent(&mut self, id: &str, total: &str) -> v1::RegisterReply {
        let reply = self.reply();
        let call = reply.id();
        self.command(Command::RegisterAgent {
            agent: AgentRecord {
                id: AgentId::new(id).unwrap(),
                hostname: format!("{id}.test"),
                addr: "127.0.0.1:5051".into(),
                total: res(total),
                attributes: Default::default(),
                state: AgentState::Active,
                registered_at_ms: self.now.wall_ms,
                state_since_ms: self.now.wall_ms,
                draining: false,
            },
            tasks: None,
            truncated: false,
            reply,
        });
        self.settle();
        match self.answer(call) {
            Some(Ok(Answer::Registered(r))) => r,
            other => panic!("registration answered {other:?}"),
        }
    }

    /// Subscribes framework `id`; settles; returns its stream, SUBSCRIBED read.
    pub(super) fn subscribe(&mut self, id: &str) -> Stream {
        self.subscribe_with(id, 0, false)
    }

    /// Subscribes framework `id` (again, when `resubscribe`) with a failover timeout;
    /// settles; returns its stream, SUBSCRIBED read.
    pub(super) fn subscribe_with(
        &mut self,
        id: &str,
        failover_timeout_ms: u64,
        resubscribe: bool,
    ) -> Stream {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let reply = self.reply();
        let call = reply.id();
        let framework = FrameworkId::new(id).unwrap();
        self.command(Command::Subscribe {
            framework: FrameworkRecord {
                id: framework.clone(),
                name: id.into(),
                role: Role::default_role(),
                principal: String::new(),
                failover_timeout_ms,
                subscribed_at_ms: self.now.wall_ms,
                torn_down: false,
                partition_aware: true,
            },
            resubscribe,
            events,
            reply,
        });
        self.settle();
        assert_eq!(self.answer(call), Some(Ok(Answer::Done)), "subscription");
        let mut stream = Stream {
            framework,
            stream_id: String::new(),
            events: rx,
            unread: Vec::new(),
        };
        let first = stream.events();
        match first.first() {
            Some(v1::event::Event::Subscribed(s)) => stream.stream_id = s.stream_id.clone(),
            other => panic!("expected SUBSCRIBED first, got {other:?}"),
        }
        stream.unread = first[1..].to_vec();
        stream
    }

    /// Launches task `id` with `resources` on the first offer `stream` gets (allocating and
    /// committing as needed); returns the task's id.
    pub(super) fn launch(&mut self, stream: &mut Stream, id: &str, resources: &str) -> TaskId {
        sim_allocate_and_commit(self);
        let offer = Stream::offers(&stream.events()).remove(0);
        let call = self.call(stream, accept_one(&offer.id, task(id, resources)));
        self.settle();
        assert_eq!(self.answer(call), Some(Ok(Answer::Done)), "accept");
        TaskId::new(id).unwrap()
    }

    /// Framework call `call` from `stream`'s framework; returns the call its answer is for.
    pub(super) fn call(&mut self, stream: &Stream, call: Call) -> CallId {
        let reply = self.reply();
        let id = reply.id();
        self.command(Command::Call {
            caller: stream.caller(),
            call,
            reply,
        });
        id
    }

    /// Agent `agent` reports `state` for `task` of `framework` with update `uuid`; returns the
    /// call its answer is for.
    pub(super) fn send_update(
        &mut self,
        agent: &AgentId,
        framework: &FrameworkId,
        task: &TaskId,
        state: crate::registry::TaskState,
        uuid: u128,
    ) -> CallId {
        let reply = self.reply();
        let call = reply.id();
        self.command(Command::StatusUpdate {
            agent: agent.clone(),
            framework: framework.clone(),
            task: task.clone(),
            update: StatusUpdate {
                uuid: uuid::Uuid::from_u128(uuid),
                state,
                source: crate::registry::cluster::StatusSource::Executor,
                reason: String::new(),
                message: String::new(),
                exit_code: None,
                signal: None,
                at_ms: self.now.wall_ms,
            },
            reply,
        });
        call
    }

    /// As [`Self::send_update`], then settles; returns the answer the agent got.
    pub(super) fn report(
        &mut self,
        agent: &str,
        framework: &FrameworkId,
        task: &TaskId,
        state: crate::registry::TaskState,
        uuid: u128,
    ) -> Result<Answer, Refusal> {
        let call = self.send_update(&AgentId::new(agent).unwrap(), framework, task, state, uuid);
        self.settle();
        self.answer(call).expect("answered")
    }

    /// Runs allocation (time moves on by the allocation interval) and returns the
    /// CreateOffers in flight, not committed.
    pub(super) fn allocate(&mut self) -> Vec<OfferRecord> {
        let interval = self.c.config.allocation_interval;
        self.advance(interval);
        self.proposed
            .iter()
            .filter_map(|(op, _)| match op {
                ClusterOp::CreateOffers(o) => Some(o.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// ACCEPT of offer `offer` launching `task`.
pub(super) fn accept_one(offer: &str, task: TaskSpec) -> Call {
    Call::Accept {
        offers: vec![OfferId::new(offer).unwrap()],
        tasks: vec![task],
        refuse_ms: None,
    }
}

pub(super) fn task(id: &str, resources: &str) -> TaskSpec {
    TaskSpec {
        id: TaskId::new(id).unwrap(),
        name: id.into(),
        resources: res(resources),
        command: "true".into(),
        environment: Default::default(),
        kill_grace_ms: 0,
    }
}

fn sim_allocate_and_commit(sim: &mut Sim) {
    let made = sim.allocate();
    assert!(
        !made.is_empty(),
        "nothing to offer: {:?}",
        sim.proposed_ops()
    );
    sim.settle();
}

/// The status updates among `events`: (task id, state).
fn updates(events: &[v1::event::Event]) -> Vec<(String, i32)> {
    events
        .iter()
        .filter_map(|e| match e {
            v1::event::Event::Update(u) => u.status.as_ref().map(|s| (s.task_id.clone(), s.state)),
            _ => None,
        })
        .collect()
}

/// A cluster of one agent and one subscribed framework, nothing offered yet.
pub(super) fn one_agent_one_framework() -> (Sim, Stream) {
    let mut sim = Sim::new(OfferCycleConfig::default());
    sim.register_agent("a1", "cpus:4;mem:4096");
    let stream = sim.subscribe("f1");
    (sim, stream)
}

#[test]
fn an_offer_is_sent_only_after_it_is_committed() {
    let (mut sim, mut stream) = one_agent_one_framework();
    let made = sim.allocate();
    assert_eq!(made.len(), 1, "{:?}", sim.proposed_ops());
    assert!(
        Stream::offers(&stream.events()).is_empty(),
        "offer before commit"
    );
    sim.commit();
    let sent = Stream::offers(&stream.events());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, made[0].id.to_string());
    assert_eq!(sent[0].agent_id, "a1");
}

#[test]
fn an_offer_whose_creation_is_lost_is_never_sent_and_its_resources_are_offered_again() {
    let (mut sim, mut stream) = one_agent_one_framework();
    let lost = sim.allocate();
    assert_eq!(lost.len(), 1);
    sim.lose(ReplicaError::Lost("truncated".into()));
    assert!(Stream::offers(&stream.events()).is_empty());
    let again = sim.allocate();
    assert_eq!(again.len(), 1, "{:?}", sim.proposed_ops());
    assert_eq!(again[0].resources, lost[0].resources);
    assert_ne!(again[0].id, lost[0].id);
}

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
fn an_expired_offer_is_rescinded_once() {
    let (mut sim, mut stream) = one_agent_one_framework();
    sim.allocate();
    sim.commit();
    let offer = Stream::offers(&stream.events()).remove(0);
    let timeout = sim.c.config.offer_timeout;
    sim.advance(timeout);
    let removals = |sim: &Sim| {
        sim.proposed_ops()
            .into_iter()
            .filter(|op| matches!(op, ClusterOp::RemoveOffers(ids) if ids.iter().any(|i| i.to_string() == offer.id)))
            .count()
    };
    assert_eq!(removals(&sim), 1, "{:?}", sim.proposed_ops());
    // While the removal is in flight, later ticks do not propose it again.
    sim.advance(Duration::from_secs(1));
    assert_eq!(removals(&sim), 1, "{:?}", sim.proposed_ops());
    sim.settle();
    let rescinded: Vec<String> = stream
        .events()
        .into_iter()
        .filter_map(|e| match e {
            v1::event::Event::Rescind(r) => Some(r.offer_id),
            _ => None,
        })
        .collect();
    assert_eq!(rescinded, vec![offer.id]);
}

#[test]
fn a_silent_agent_is_marked_unreachable_once_and_a_heartbeat_keeps_it() {
    let mut sim = Sim::new(OfferCycleConfig::default());
    sim.register_agent("a1", "cpus:1;mem:128");
    sim.register_agent("a2", "cpus:1;mem:128");
    let timeout = sim.c.config.agent_timeout;
    let marks = |sim: &Sim, id: &str| {
        sim.proposed_ops()
            .into_iter()
            .filter(|op| {
                matches!(op, ClusterOp::SetAgentState { agent, state: AgentState::Unreachable, .. } if agent.to_string() == id)
            })
            .count()
    };
    // a2 heartbeats every interval; a1 is silent.
    let step = sim.c.config.agent_heartbeat_interval;
    let mut waited = Duration::ZERO;
    while waited <= timeout {
        let reply = sim.reply();
        sim.command(Command::AgentHeartbeat {
            agent: AgentId::new("a2").unwrap(),
            reply,
        });
        sim.advance(step);
        waited += step;
    }
    assert_eq!(marks(&sim, "a1"), 1, "{:?}", sim.proposed_ops());
    assert_eq!(marks(&sim, "a2"), 0, "{:?}", sim.proposed_ops());
    sim.advance(step);
    assert_eq!(
        marks(&sim, "a1"),
        1,
        "proposed twice: {:?}",
        sim.proposed_ops()
    );
    sim.settle();
    assert_eq!(
        sim.registry
            .agent(&AgentId::new("a1").unwrap())
            .unwrap()
            .state,
        AgentState::Unreachable
    );
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

#[test]
fn a_framework_gone_past_its_failover_timeout_is_torn_down_once() {
    let mut sim = Sim::new(OfferCycleConfig::default());
    sim.register_agent("a1", "cpus:1;mem:128");
    let stream = sim.subscribe_with("f1", 10_000, false);
    let f1 = stream.framework.clone();
    drop(stream);
    let teardowns = |sim: &Sim| {
        sim.proposed_ops()
            .into_iter()
            .filter(|op| matches!(op, ClusterOp::TeardownFramework { framework, .. } if *framework == f1))
            .count()
    };
    sim.advance(Duration::from_secs(1));
    sim.advance(Duration::from_secs(8));
    assert_eq!(
        teardowns(&sim),
        0,
        "before its timeout: {:?}",
        sim.proposed_ops()
    );
    sim.advance(Duration::from_secs(3));
    assert_eq!(teardowns(&sim), 1, "{:?}", sim.proposed_ops());
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        teardowns(&sim),
        1,
        "proposed twice: {:?}",
        sim.proposed_ops()
    );
    sim.settle();
    assert!(sim.registry.framework(&f1).unwrap().torn_down);
}

#[test]
fn unacknowledged_updates_are_sent_again_to_a_resubscribed_framework_until_acknowledged() {
    use crate::registry::TaskState;
    let (mut sim, mut stream) = one_agent_one_framework();
    let f1 = stream.framework.clone();
    let t1 = sim.launch(&mut stream, "t1", "cpus:1;mem:128");
    sim.report("a1", &f1, &t1, TaskState::Running, 1).unwrap();
    let running = v1::TaskState::TaskRunning as i32;
    assert_eq!(updates(&stream.events()), [("t1".to_string(), running)]);
    // Not acknowledged: the framework fails over and gets it again on its new stream.
    let mut again = sim.subscribe_with("f1", 0, true);
    assert_eq!(updates(&again.events()), [("t1".to_string(), running)]);
    let call = sim.call(
        &again,
        Call::Acknowledge {
            task: t1.clone(),
            uuid: uuid::Uuid::from_u128(1),
        },
    );
    sim.settle();
    assert_eq!(sim.answer(call), Some(Ok(Answer::Done)));
    let mut third = sim.subscribe_with("f1", 0, true);
    assert!(updates(&third.events()).is_empty());
}

/// What the allocator counts as allocated, per agent and framework, must be what the registry
/// holds (outstanding offers and live tasks) plus the offers proposed and not yet committed
/// or lost: resources go back to the allocator exactly when an outcome says they were freed.
fn check_allocator_books(sim: &Sim) {
    let mut expected: HashMap<AgentId, BTreeMap<FrameworkId, Resources>> =
        used_by_agent(&sim.registry)
            .into_iter()
            .map(|(a, used)| (a, used.into_iter().collect()))
            .collect();
    for (op, _) in &sim.proposed {
        if let ClusterOp::CreateOffers(offers) = op {
            for o in offers {
                let e = expected
                    .entry(o.agent.clone())
                    .or_default()
                    .entry(o.framework.clone())
                    .or_default();
                *e = e.checked_add(&o.resources).unwrap();
            }
        }
    }
    for a in sim.registry.agents() {
        if a.state == AgentState::Gone {
            continue;
        }
        let counted: BTreeMap<&FrameworkId, &Resources> = sim
            .c
            .allocator
            .allocated_on(&a.id)
            .unwrap_or_else(|| panic!("agent {} unknown to the allocator", a.id))
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .collect();
        let want: BTreeMap<&FrameworkId, &Resources> = expected
            .get(&a.id)
            .map(|m| m.iter().filter(|(_, r)| !r.is_empty()).collect())
            .unwrap_or_default();
        assert_eq!(counted, want, "allocator's books for agent {}", a.id);
    }
}

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
