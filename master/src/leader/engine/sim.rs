//! The engine driven without a cluster, for the operations' tests: a simulated registry
//! commits its proposals (in order, or loses them, as a test says) and a test clock moves
//! time. What the engine asks of the runtime is inspected as data: proposals, calls to agents, answers to callers, and
//! events sent to framework streams, which the simulation queues (up to [`EVENT_QUEUE`], as
//! the runtime's channels) for the test to read.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::v1;
use drover_resources::Resources;

use super::rebuild::used_by_agent;
use super::{Action, Call, Caller, Command, Context, Engine, Pending, StreamKey, EVENT_QUEUE};
use crate::clock::Now;
use crate::config::OfferCycleConfig;
use crate::ids::{AgentId, FrameworkId, OfferId, Role, TaskId};
use crate::leader::agents::AgentMessage;
use crate::leader::answer::{Answer, CallId, Refusal, Reply};
use crate::registry::cluster::{
    AgentRecord, AgentState, ClusterOp, ClusterState, FrameworkRecord, OfferRecord, ReportedTask,
    Stamp, TaskSpec, TaskStatus,
};
use crate::replicated::ReplicaError;

pub(super) fn res(t: &str) -> Resources {
    t.parse().unwrap()
}

/// An engine and the registry its proposals commit to.
pub(super) struct Sim {
    pub(super) c: Engine,
    pub(super) registry: ClusterState,
    pub(super) now: Now,
    index: u64,
    /// Proposed, not yet committed or lost, oldest first.
    pub(super) proposed: VecDeque<(ClusterOp, Pending)>,
    /// RunTask and KillTask messages sent to agents, in order.
    pub(super) to_agents: Vec<(AgentId, AgentMessage)>,
    /// Answers to callers not taken yet, by call.
    answers: HashMap<CallId, Result<Answer, Refusal>>,
    next_call: CallId,
    /// Streams brought by SUBSCRIBE calls, not attached (yet).
    pub(super) offered: HashMap<StreamKey, Rc<RefCell<Pipe>>>,
    /// Streams the engine attached.
    pub(super) streams: HashMap<StreamKey, Rc<RefCell<Pipe>>>,
    /// The last fresh id made, shared by every leader's engine (ids stay unique across a
    /// leader change, as random ones are).
    ids: Arc<AtomicU64>,
}

/// Fresh ids `id-1`, `id-2`, … counted in `ids`.
fn fresh_ids(ids: Arc<AtomicU64>) -> Box<dyn FnMut() -> String + Send> {
    Box::new(move || format!("id-{}", ids.fetch_add(1, Ordering::Relaxed) + 1))
}

/// A simulated event stream: what was queued and not read yet.
pub(super) struct Pipe {
    queue: VecDeque<v1::event::Event>,
    /// The framework's end is gone.
    closed: bool,
    /// The engine's end is gone (detached, or never attached).
    pub(super) ended: bool,
    /// Events it holds at most (EVENT_QUEUE unless a test says less).
    capacity: usize,
}

impl Default for Pipe {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            closed: false,
            ended: false,
            capacity: EVENT_QUEUE,
        }
    }
}

/// A framework's end of its event stream (dropping it closes the stream).
pub(super) struct Stream {
    pub(super) framework: FrameworkId,
    pub(super) stream_id: String,
    pipe: Rc<RefCell<Pipe>>,
    /// Events read with SUBSCRIBED and not handed out yet.
    unread: Vec<v1::event::Event>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.pipe.borrow_mut().closed = true;
    }
}

impl Stream {
    /// The events sent so far and not read yet.
    pub(super) fn events(&mut self) -> Vec<v1::event::Event> {
        let mut out = std::mem::take(&mut self.unread);
        out.extend(self.pipe.borrow_mut().queue.drain(..));
        out
    }

    /// From now on the stream holds at most `n` events (a framework reading slowly).
    pub(super) fn limit(&self, n: usize) {
        self.pipe.borrow_mut().capacity = n;
    }

    /// Whether the engine closed the stream (and everything queued was read).
    pub(super) fn ended(&self) -> bool {
        let p = self.pipe.borrow();
        p.ended && p.queue.is_empty()
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
        let ids = Arc::new(AtomicU64::new(0));
        let mut c = Engine::new(1, config, now);
        c.fresh_id = fresh_ids(ids.clone());
        let mut sim = Self {
            c,
            registry: ClusterState::default(),
            now,
            index: 0,
            proposed: VecDeque::new(),
            to_agents: Vec::new(),
            answers: HashMap::new(),
            next_call: 0,
            offered: HashMap::new(),
            streams: HashMap::new(),
            ids,
        };
        sim.input(|e, at| e.on_rebuild(at).1);
        sim
    }

    /// A leader change: the engine is dropped with its soft state and the next leader's
    /// rebuilds from the registry as committed. Every stream ends (the runtime drops them
    /// with the engine: frameworks subscribe again); answers already given stay. Proposals
    /// must have settled first.
    pub(super) fn restart_leader(&mut self) {
        assert!(
            self.proposed.is_empty(),
            "proposals in flight across a leader change: {:?}",
            self.proposed_ops()
        );
        for (_, pipe) in self.streams.drain().chain(self.offered.drain()) {
            pipe.borrow_mut().ended = true;
        }
        let me = self.c.me + 1;
        let config = self.c.config.clone();
        self.c = Engine::new(me, config, self.now);
        self.c.fresh_id = fresh_ids(self.ids.clone());
        self.input(|e, at| e.on_rebuild(at).1);
    }

    /// What the next input is handled against.
    pub(super) fn context(&self) -> Context {
        Context {
            now: self.now,
            registry: self.registry.clone(),
        }
    }

    /// Hands one input to the engine at the current time and registry, then carries out what
    /// it asked for (as the runtime does, streams found full or closed go back to it).
    pub(super) fn input(&mut self, f: impl FnOnce(&mut Engine, Context) -> Vec<Action>) {
        let at = self.context();
        let mut actions = f(&mut self.c, at);
        loop {
            let lost = self.carry_out(actions);
            if lost.is_empty() {
                return;
            }
            actions = Vec::new();
            for (stream, full) in lost {
                let at = self.context();
                actions.extend(self.c.on_stream_lost(at, stream, full));
            }
        }
    }

    fn carry_out(&mut self, actions: Vec<Action>) -> Vec<(StreamKey, bool)> {
        let mut lost = Vec::new();
        for action in actions {
            match action {
                Action::Propose { op, pending } => self.proposed.push_back((op, pending)),
                Action::ToAgent { agent, message, .. } => self.to_agents.push((agent, message)),
                Action::Reply { call, answer } => {
                    assert!(
                        self.answers.insert(call, answer).is_none(),
                        "call {call} answered twice"
                    );
                    if let Some(p) = self.offered.remove(&StreamKey(call)) {
                        p.borrow_mut().ended = true;
                    }
                }
                Action::Attach { stream } => {
                    let pipe = self
                        .offered
                        .remove(&stream)
                        .expect("attached once, if offered");
                    self.streams.insert(stream, pipe);
                }
                Action::Send { stream, event } => {
                    let Some(pipe) = self.streams.get(&stream) else {
                        continue;
                    };
                    let mut p = pipe.borrow_mut();
                    if p.closed || p.queue.len() >= p.capacity {
                        lost.push((stream, !p.closed));
                        p.ended = true;
                        drop(p);
                        self.streams.remove(&stream);
                        continue;
                    }
                    p.queue.push_back(event.event.expect("an event"));
                    let room = p.capacity - p.queue.len();
                    drop(p);
                    self.c.stream_room(stream, room);
                }
                Action::Detach { stream } => {
                    if let Some(p) = self.streams.remove(&stream) {
                        p.borrow_mut().ended = true;
                    }
                }
            }
        }
        lost
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
        self.input(|e, at| e.on_command(at, c));
    }

    /// Commits the oldest proposal in flight and hands its outcome to the engine; returns
    /// the operation.
    pub(super) fn commit(&mut self) -> ClusterOp {
        let (op, pending) = self.proposed.pop_front().expect("a proposal in flight");
        self.index += 1;
        let outcome = self.registry.apply_at(
            &op,
            &Stamp {
                index: self.index,
                position: 0,
                now_ms: self.now.wall_ms,
            },
        );
        self.input(|e, at| e.on_outcome(at, pending, Ok(outcome)));
        op
    }

    /// The oldest proposal in flight ends with `error` (not committed, or not known to be).
    pub(super) fn lose(&mut self, error: ReplicaError) -> ClusterOp {
        let (op, pending) = self.proposed.pop_front().expect("a proposal in flight");
        self.input(|e, at| e.on_outcome(at, pending, Err(error)));
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

    /// Moves time on by `d`: a timer tick (streams' room told first, closed ones reported),
    /// then allocation if it is due.
    pub(super) fn advance(&mut self, d: Duration) {
        self.now.mono += d;
        self.now.wall_ms += d.as_millis() as u64;
        let mut closed = Vec::new();
        for (key, pipe) in &self.streams {
            let p = pipe.borrow();
            if p.closed {
                closed.push(*key);
            } else {
                self.c.stream_room(*key, p.capacity - p.queue.len());
            }
        }
        for key in &closed {
            self.streams.remove(key);
        }
        for key in closed {
            self.input(|e, at| e.on_stream_lost(at, key, false));
        }
        self.input(|e, at| e.on_tick(at));
        if self
            .c
            .allocation_due()
            .is_some_and(|due| due <= self.now.mono)
        {
            self.input(|e, at| e.on_allocation_due(at));
        }
    }

    /// The operations in flight, oldest first.
    pub(super) fn proposed_ops(&self) -> Vec<&ClusterOp> {
        self.proposed.iter().map(|(op, _)| op).collect()
    }

    /// The record agent `id` with `total` registers with now.
    pub(super) fn agent_record(&self, id: &str, total: &str) -> AgentRecord {
        AgentRecord {
            id: AgentId::new(id).unwrap(),
            hostname: format!("{id}.test"),
            addr: "127.0.0.1:5051".into(),
            total: res(total),
            attributes: Default::default(),
            state: AgentState::Active,
            registered_at_ms: self.now.wall_ms,
            state_since_ms: self.now.wall_ms,
            draining: false,
        }
    }

    /// Registers agent `id` with `total`; settles; returns the engine's answer.
    pub(super) fn register_agent(&mut self, id: &str, total: &str) -> v1::RegisterReply {
        self.register_agent_with(id, total, None)
    }

    /// Registers agent `id` with `total`, again with the task report `tasks` when given;
    /// settles; returns the engine's answer.
    pub(super) fn register_agent_with(
        &mut self,
        id: &str,
        total: &str,
        tasks: Option<Vec<ReportedTask>>,
    ) -> v1::RegisterReply {
        self.register_record(self.agent_record(id, total), tasks)
    }

    /// Registers `agent` (again with the task report `tasks` when given); settles; returns
    /// the engine's answer.
    pub(super) fn register_record(
        &mut self,
        agent: AgentRecord,
        tasks: Option<Vec<ReportedTask>>,
    ) -> v1::RegisterReply {
        let reply = self.reply();
        let call = reply.id();
        self.command(Command::RegisterAgent {
            agent,
            tasks,
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
        self.subscribe_as(id, Role::default_role(), failover_timeout_ms, resubscribe)
    }

    /// As [`Self::subscribe_with`], in `role`.
    pub(super) fn subscribe_as(
        &mut self,
        id: &str,
        role: Role,
        failover_timeout_ms: u64,
        resubscribe: bool,
    ) -> Stream {
        let reply = self.reply();
        let call = reply.id();
        let pipe = Rc::new(RefCell::new(Pipe::default()));
        self.offered.insert(StreamKey(call), pipe.clone());
        let framework = FrameworkId::new(id).unwrap();
        self.command(Command::Subscribe {
            framework: FrameworkRecord {
                id: framework.clone(),
                name: id.into(),
                role,
                principal: String::new(),
                failover_timeout_ms,
                subscribed_at_ms: self.now.wall_ms,
                torn_down: false,
                partition_aware: true,
            },
            resubscribe,
            stream: StreamKey(call),
            reply,
        });
        self.settle();
        assert_eq!(self.answer(call), Some(Ok(Answer::Done)), "subscription");
        let mut stream = Stream {
            framework,
            stream_id: String::new(),
            pipe,
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
        self.launch_task(stream, task(id, resources))
    }

    /// As [`Self::launch`], task `spec`.
    pub(super) fn launch_task(&mut self, stream: &mut Stream, spec: TaskSpec) -> TaskId {
        sim_allocate_and_commit(self);
        let offer = Stream::offers(&stream.events()).remove(0);
        let id = spec.id.clone();
        let call = self.call(stream, accept_one(&offer.id, spec));
        self.settle();
        assert_eq!(self.answer(call), Some(Ok(Answer::Done)), "accept");
        id
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
            update: TaskStatus {
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
        extensions: None,
    }
}

pub(super) fn sim_allocate_and_commit(sim: &mut Sim) {
    let made = sim.allocate();
    assert!(
        !made.is_empty(),
        "nothing to offer: {:?}",
        sim.proposed_ops()
    );
    sim.settle();
}

/// Offers made and committed, and an ACCEPT of the first one launching `task` proposed and
/// not yet committed: the call, to be answered once it commits.
pub(super) fn accept_first_offer(sim: &mut Sim, stream: &mut Stream, task: TaskSpec) -> CallId {
    sim_allocate_and_commit(sim);
    let offers = Stream::offers(&stream.events());
    sim.call(stream, accept_one(&offers[0].id, task))
}

/// The status updates among `events`: (task id, state).
pub(super) fn updates(events: &[v1::event::Event]) -> Vec<(String, i32)> {
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

/// What the allocator counts as allocated, per agent and framework, must be what the registry
/// holds (outstanding offers and live tasks) plus the offers proposed and not yet committed
/// or lost: resources go back to the allocator exactly when an outcome says they were freed.
pub(super) fn check_allocator_books(sim: &Sim) {
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
