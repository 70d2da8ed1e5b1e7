//! A test framework on the driver library: launches tasks on the offers it gets, declines the
//! rest, records every status update it receives, and acknowledges them (unless told not to).
//! The failover tests drive it while they kill and pause processes, then assert on what it
//! saw.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::v1;
use drover_resources::Resources;
use drover_scheduler::driver::{
    is_terminal, Driver, DriverEvent, DriverOptions, EventStream, FrameworkInfo, Offer, TaskId,
};
use tokio::time::Instant;

/// Tasks of one framework and what it heard of them.
pub struct Framework {
    pub driver: Driver,
    events: EventStream,
    /// Every update received, in order (reconciliation answers have an empty uuid).
    pub updates: Vec<v1::TaskStatus>,
    /// Whether updates are acknowledged as they arrive.
    pub ack: bool,
    /// Tasks waiting for an offer that fits, in order.
    queue: Vec<v1::TaskInfo>,
    /// Subscriptions seen: (master id, resubscribed).
    pub subscriptions: Vec<(u64, bool)>,
    /// ACCEPT calls that failed, with the tasks they carried (their outcome may be unknown).
    pub failed_accepts: Vec<(Vec<String>, String)>,
    /// Offers taken since the start, by agent id.
    pub launched_on: BTreeMap<String, String>,
}

impl Framework {
    /// Subscribes `info` through `addrs`.
    pub fn start(addrs: &[String], info: FrameworkInfo) -> Framework {
        let (driver, events) =
            Driver::start(addrs, info, DriverOptions::default()).expect("driver");
        Framework {
            driver,
            events,
            updates: Vec::new(),
            ack: true,
            queue: Vec::new(),
            subscriptions: Vec::new(),
            failed_accepts: Vec::new(),
            launched_on: BTreeMap::new(),
        }
    }

    /// A framework named `name` that is partition-aware (or not), with a failover timeout.
    pub fn info(name: &str, partition_aware: bool, failover_timeout: Duration) -> FrameworkInfo {
        let mut info = FrameworkInfo::new(name);
        info.partition_aware = partition_aware;
        info.failover_timeout_seconds = failover_timeout.as_secs_f64();
        info
    }

    /// Queues tasks to launch on the next offers that fit.
    pub fn launch(&mut self, tasks: Vec<v1::TaskInfo>) {
        self.queue.extend(tasks);
    }

    /// The tasks still waiting for an offer.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The latest state received for `task` (reconciliation answers included).
    pub fn latest(&self, task: &str) -> Option<v1::TaskState> {
        self.updates
            .iter()
            .rev()
            .find(|s| s.task_id == task)
            .map(state_of)
    }

    /// The latest update received for `task` in `state`.
    pub fn update_in(&self, task: &str, state: v1::TaskState) -> Option<&v1::TaskStatus> {
        self.updates
            .iter()
            .rev()
            .find(|s| s.task_id == task && state_of(s) == state)
    }

    /// Handles events until `done` says so or `timeout` passes (then panics with `what` and
    /// the last updates of every task).
    pub async fn until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Framework) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = done(self) {
                return t;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{what}: not within {timeout:?}; latest states: {:?}",
                    self.states()
                );
            }
            let event = tokio::time::timeout(
                left.min(Duration::from_millis(500)),
                self.events.next_event(),
            )
            .await;
            match event {
                Err(_) => continue,
                Ok(None) => panic!("{what}: the driver stopped"),
                Ok(Some(e)) => self.handle(e).await,
            }
        }
    }

    /// Handles events for `d` (whatever they are).
    pub async fn pump(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, self.events.next_event()).await {
                Err(_) => return,
                Ok(None) => panic!("the driver stopped"),
                Ok(Some(e)) => self.handle(e).await,
            }
        }
    }

    /// Waits until `task`'s latest state is `state`.
    pub async fn until_state(&mut self, task: &str, state: v1::TaskState, timeout: Duration) {
        let what = format!("{task} in {}", state.as_str_name());
        self.until(&what, timeout, |f| {
            (f.latest(task) == Some(state)).then_some(())
        })
        .await
    }

    /// Every task's latest state.
    pub fn states(&self) -> BTreeMap<String, v1::TaskState> {
        let mut out = BTreeMap::new();
        for s in &self.updates {
            out.insert(s.task_id.clone(), state_of(s));
        }
        out
    }

    /// Whether every task it heard of is in a terminal state.
    pub fn all_terminal(&self) -> bool {
        self.states().values().all(|s| is_terminal(*s))
    }

    async fn handle(&mut self, e: DriverEvent) {
        match e {
            DriverEvent::Subscribed {
                master_id,
                resubscribed,
                ..
            } => self.subscriptions.push((master_id, resubscribed)),
            DriverEvent::Offers(offers) => self.offers(offers).await,
            DriverEvent::Update(s) => {
                if self.ack && !s.uuid.is_empty() {
                    // An acknowledgement lost to a failover is redelivered and sent again.
                    let _ = self.driver.acknowledge(&s).await;
                }
                self.updates.push(s);
            }
            DriverEvent::Error(e) => panic!("driver error: {e}"),
            DriverEvent::Rescind(_) | DriverEvent::Disconnected { .. } => {}
        }
    }

    /// Launches queued tasks on each offer as far as they fit; declines the rest briefly.
    async fn offers(&mut self, offers: Vec<Offer>) {
        for o in offers {
            let mut left: Resources = o.resources.clone();
            let mut take = Vec::new();
            while let Some(t) = self.queue.first() {
                let need = Resources::from_proto(&t.resources).expect("task resources");
                match left.checked_sub(&need) {
                    Ok(rest) => {
                        left = rest;
                        take.push(self.queue.remove(0));
                    }
                    Err(_) => break,
                }
            }
            if take.is_empty() {
                let _ = self
                    .driver
                    .decline(std::slice::from_ref(&o.id), Some(1.0))
                    .await;
                continue;
            }
            let ids: Vec<String> = take.iter().map(|t| t.task_id.clone()).collect();
            for id in &ids {
                self.launched_on
                    .insert(id.clone(), o.agent_id.as_str().to_string());
            }
            if let Err(e) = self
                .driver
                .accept(std::slice::from_ref(&o.id), take, Some(1.0))
                .await
            {
                self.failed_accepts.push((ids, e.to_string()));
            }
        }
    }

    /// Explicit reconciliation of `tasks`.
    pub async fn reconcile(&self, tasks: &[&str]) {
        let ids: Vec<TaskId> = tasks.iter().map(|t| TaskId::new(*t)).collect();
        self.driver.reconcile(&ids).await.expect("reconcile");
    }
}

pub fn state_of(s: &v1::TaskStatus) -> v1::TaskState {
    v1::TaskState::try_from(s.state).unwrap_or(v1::TaskState::Unspecified)
}
