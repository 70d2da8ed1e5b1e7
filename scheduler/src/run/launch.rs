//! The one-task framework behind `drover run`: a small state machine over the driver's events.
//!
//! Phases: waiting for an offer → (ACCEPT succeeded) launched → (terminal update) done. An
//! ACCEPT whose outcome is unknown is never repeated blindly: the task is reconciled, and only
//! a TASK_UNKNOWN answer sends it back to waiting for an offer (the master refuses a second
//! launch of the same task id anyway). An interrupt kills the task and waits, bounded, for its
//! terminal update. Every path out tears the framework down.
//!
//! Invariant: each status is printed at most once (a redelivered update, same uuid, is only
//! acknowledged), and the task's updates are acknowledged only after they were printed.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::Duration;

use drover_proto::v1::{TaskState, TaskStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::output::OutputPump;
use super::{Plan, RunArgs, RunError};
use crate::driver::{
    is_terminal, Driver, DriverError, DriverEvent, DriverOptions, EventStream, Offer, OfferId,
};

/// Filter on offers that do not fit, seconds (Mesos's default).
const DECLINE_REFUSE_SECONDS: f64 = 5.0;
/// Filter on offers that arrive once the task is launched, seconds (SUPPRESS stops the rest).
const LAUNCHED_REFUSE_SECONDS: f64 = 60.0;
/// After an ambiguous ACCEPT, ask again this often until the master answers about the task.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// After a kill, wait this long beyond the grace period for the terminal update.
const KILL_WAIT_EXTRA: Duration = Duration::from_secs(15);
/// The agent's default kill grace period, used when `--kill-grace-seconds` is not given.
const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);
/// Bound on tearing the framework down at the end.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Most update uuids remembered for de-duplication (one task has a handful of updates).
const MAX_SEEN_UPDATES: usize = 1024;
/// Longest status message printed, characters.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Bound on reading the rest of the task's output once it ended.
const OUTPUT_DRAIN: Duration = Duration::from_secs(10);
/// Bound on reading what is left of the output when `drover run` ends otherwise (interrupted,
/// or the framework ended).
const OUTPUT_DRAIN_AT_EXIT: Duration = Duration::from_secs(2);

/// Where interrupts come from: SIGINT/SIGTERM, or a channel in tests. Each yields the exit
/// status to end with.
pub(crate) enum Interrupts {
    Signals(Signals),
    #[cfg_attr(not(test), allow(dead_code))]
    Channel(mpsc::Receiver<i32>),
}

pub(crate) struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    pub(crate) fn signals() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Interrupts::Signals(Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            })
        }
        #[cfg(not(unix))]
        {
            Interrupts::Signals(Signals {})
        }
    }

    /// Waits for the next interrupt; never returns if there is no source.
    async fn next(&mut self) -> i32 {
        match self {
            Interrupts::Channel(rx) => match rx.recv().await {
                Some(code) => code,
                None => std::future::pending().await,
            },
            #[cfg(unix)]
            Interrupts::Signals(s) => {
                async fn recv(sig: &mut Option<tokio::signal::unix::Signal>) {
                    match sig {
                        Some(s) => {
                            if s.recv().await.is_none() {
                                std::future::pending::<()>().await
                            }
                        }
                        None => std::future::pending().await,
                    }
                }
                tokio::select! {
                    _ = recv(&mut s.int) => 130,
                    _ = recv(&mut s.term) => 143,
                }
            }
            #[cfg(not(unix))]
            Interrupts::Signals(_) => match tokio::signal::ctrl_c().await {
                Ok(()) => 130,
                Err(_) => std::future::pending().await,
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    WaitingForOffer,
    /// ACCEPT's outcome is unknown; reconciling the task.
    Uncertain,
    Launched,
}

/// The uuids of the updates already printed, bounded.
#[derive(Default)]
struct SeenUpdates {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenUpdates {
    /// Records `uuid`; false when it was already there.
    fn insert(&mut self, uuid: &str) -> bool {
        if self.set.contains(uuid) {
            return false;
        }
        if self.order.len() >= MAX_SEEN_UPDATES {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(uuid.to_string());
        self.order.push_back(uuid.to_string());
        true
    }
}

/// What the event loop does next.
enum Next {
    Continue,
    Exit(i32),
}

struct Launcher<'a> {
    plan: Plan,
    driver: Driver,
    out: &'a mut (dyn Write + Send),
    phase: Phase,
    seen: SeenUpdates,
    last_printed: Option<TaskState>,
    staging_printed: bool,
    /// Set once interrupted: the exit status to end with.
    interrupted: Option<i32>,
    offers_seen: u64,
    last_trouble: Option<String>,
    /// The agent the task was launched on (host:port), where its output is read.
    agent_addr: Option<String>,
    /// Copies the task's output while it runs (unless --no-output).
    output: Option<OutputPump>,
}

/// Runs the plan to its end; `out` gets the status lines.
pub(crate) async fn launch(
    args: RunArgs,
    options: DriverOptions,
    out: &mut (dyn Write + Send),
    mut interrupts: Interrupts,
) -> Result<i32, RunError> {
    let plan = Plan::from_args(args)?;
    let options = match (&plan.tls, options.tls) {
        (Some(live), None) => DriverOptions {
            tls: Some(live.client(&[drover_tls::Role::Master])),
            ..options
        },
        (_, tls) => DriverOptions { tls, ..options },
    };
    eprintln!(
        "drover run: task {} ({}) via masters {}",
        plan.task_id,
        plan.wanted(),
        plan.masters.join(",")
    );
    let (driver, mut events) = Driver::start(&plan.masters, plan.framework.clone(), options)?;
    let offer_deadline = Instant::now() + plan.offer_timeout;
    let mut launcher = Launcher {
        plan,
        driver,
        out,
        phase: Phase::WaitingForOffer,
        seen: SeenUpdates::default(),
        last_printed: None,
        staging_printed: false,
        interrupted: None,
        offers_seen: 0,
        last_trouble: None,
        agent_addr: None,
        output: None,
    };
    let result = launcher
        .event_loop(&mut events, &mut interrupts, offer_deadline)
        .await;
    launcher.finish().await;
    result
}

impl Launcher<'_> {
    async fn event_loop(
        &mut self,
        events: &mut EventStream,
        interrupts: &mut Interrupts,
        offer_deadline: Instant,
    ) -> Result<i32, RunError> {
        let mut kill_deadline: Option<Instant> = None;
        // Only armed while Uncertain (set when the phase is entered).
        let mut reconcile_at = Instant::now() + RECONCILE_INTERVAL;
        loop {
            let waiting_for_offer = self.phase == Phase::WaitingForOffer && kill_deadline.is_none();
            let event = tokio::select! {
                code = interrupts.next() => {
                    if self.interrupted.is_some() {
                        eprintln!("drover run: interrupted again; tearing down without waiting");
                        return Ok(code);
                    }
                    self.interrupted = Some(code);
                    if self.phase == Phase::WaitingForOffer {
                        eprintln!("drover run: interrupted before launch");
                        return Ok(code);
                    }
                    let grace = self.plan.kill_grace.unwrap_or(DEFAULT_KILL_GRACE);
                    eprintln!("drover run: interrupted; killing task {}", self.plan.task_id);
                    self.kill().await;
                    kill_deadline = Some(Instant::now() + grace + KILL_WAIT_EXTRA);
                    continue;
                }
                _ = tokio::time::sleep_until(offer_deadline), if waiting_for_offer => {
                    return Err(RunError::NoFittingOffer(self.no_offer_message()));
                }
                _ = sleep_until_opt(kill_deadline) => {
                    eprintln!(
                        "drover run: task {} did not end in time; tearing the framework down \
                         (which kills it)",
                        self.plan.task_id
                    );
                    return Ok(self.interrupted.unwrap_or(1));
                }
                _ = tokio::time::sleep_until(reconcile_at), if self.phase == Phase::Uncertain => {
                    reconcile_at = Instant::now() + RECONCILE_INTERVAL;
                    self.reconcile().await;
                    continue;
                }
                e = events.next_event() => e,
            };
            let Some(event) = event else {
                return Err(RunError::DriverStopped);
            };
            let before = self.phase;
            if let Next::Exit(code) = self.on_event(event).await? {
                return Ok(code);
            }
            if before != Phase::Uncertain && self.phase == Phase::Uncertain {
                reconcile_at = Instant::now() + RECONCILE_INTERVAL;
            }
        }
    }

    async fn on_event(&mut self, event: DriverEvent) -> Result<Next, RunError> {
        match event {
            DriverEvent::Subscribed {
                framework_id,
                master_id,
                master_addr,
                resubscribed,
            } => {
                let verb = if resubscribed {
                    "re-subscribed"
                } else {
                    "subscribed"
                };
                eprintln!(
                    "drover run: {verb} to master {master_id} at {master_addr} as framework \
                     {framework_id}"
                );
                if resubscribed {
                    // A new leader may not know what the old one was told.
                    match self.phase {
                        Phase::Launched => self.suppress().await,
                        Phase::Uncertain => self.reconcile().await,
                        Phase::WaitingForOffer => {}
                    }
                    if self.interrupted.is_some() {
                        self.kill().await;
                    }
                }
            }
            DriverEvent::Disconnected { reason } => {
                eprintln!("drover run: lost the master ({reason}); re-subscribing");
                self.last_trouble = Some(reason);
            }
            DriverEvent::Error(message) => return Err(RunError::Framework(message)),
            DriverEvent::Rescind(_) => {}
            DriverEvent::Offers(offers) => self.on_offers(offers).await,
            DriverEvent::Update(status) => return self.on_update(status).await,
        }
        Ok(Next::Continue)
    }

    async fn on_offers(&mut self, offers: Vec<Offer>) {
        self.offers_seen += offers.len() as u64;
        let mut unused: Vec<OfferId> = Vec::new();
        let mut refuse = DECLINE_REFUSE_SECONDS;
        for offer in offers {
            if self.phase != Phase::WaitingForOffer || self.interrupted.is_some() {
                refuse = LAUNCHED_REFUSE_SECONDS;
                unused.push(offer.id);
                continue;
            }
            let Some(resources) = self.plan.fit(&offer.resources) else {
                tracing::debug!(offer = %offer.id, resources = %offer.resources, "offer does not fit");
                unused.push(offer.id);
                continue;
            };
            let task = self.plan.task_info(&resources);
            if !offer.agent_addr.is_empty() {
                self.agent_addr = Some(offer.agent_addr.clone());
            }
            match self
                .driver
                .accept(std::slice::from_ref(&offer.id), vec![task], None)
                .await
            {
                Ok(()) => {
                    eprintln!(
                        "drover run: launched task {} on agent {} ({}) with {resources}",
                        self.plan.task_id, offer.agent_id, offer.hostname
                    );
                    self.phase = Phase::Launched;
                    self.staged();
                    self.suppress().await;
                }
                Err(DriverError::Ambiguous(why)) => {
                    eprintln!(
                        "drover run: the launch's outcome is unknown ({why}); asking the master \
                         about task {}",
                        self.plan.task_id
                    );
                    self.phase = Phase::Uncertain;
                    self.reconcile().await;
                }
                Err(e) => {
                    eprintln!(
                        "drover run: the launch was refused ({e}); waiting for another offer"
                    );
                    self.last_trouble = Some(format!("launch refused: {e}"));
                }
            }
        }
        if !unused.is_empty() {
            if let Err(e) = self.driver.decline(&unused, Some(refuse)).await {
                eprintln!("drover run: warning: could not decline offers: {e}");
            }
        }
    }

    async fn on_update(&mut self, status: TaskStatus) -> Result<Next, RunError> {
        if status.task_id != self.plan.task_id.as_str() {
            tracing::debug!(task = %status.task_id, "update for another task");
            self.acknowledge(&status).await;
            return Ok(Next::Continue);
        }
        let state = status.state();
        if self.phase != Phase::Launched {
            if state == TaskState::TaskUnknown {
                if self.phase == Phase::Uncertain {
                    eprintln!(
                        "drover run: the master does not know task {}: it was not launched; \
                         waiting for another offer",
                        self.plan.task_id
                    );
                    self.phase = Phase::WaitingForOffer;
                    if let Err(e) = self.driver.revive().await {
                        eprintln!("drover run: warning: could not revive offers: {e}");
                    }
                }
                return Ok(Next::Continue);
            }
            eprintln!(
                "drover run: the master knows task {}: it was launched",
                self.plan.task_id
            );
            self.phase = Phase::Launched;
            self.staged();
            self.suppress().await;
        }
        let fresh = status.uuid.is_empty() || self.seen.insert(&status.uuid);
        if fresh && Some(state) != self.last_printed && state != TaskState::TaskStaging {
            if is_terminal(state) {
                // The whole output first, then how the task ended.
                if let Some(output) = self.output.take().or_else(|| self.start_output()) {
                    output.finish(OUTPUT_DRAIN).await;
                }
            }
            self.print(&status_line(&status))?;
            if !is_terminal(state) && self.output.is_none() {
                self.output = self.start_output();
            }
            self.last_printed = Some(state);
            if !is_terminal(state) && !status.message.is_empty() {
                eprintln!("drover run: {}", clean(&status.message));
            }
        }
        self.acknowledge(&status).await;
        if is_terminal(state) || state == TaskState::TaskUnknown {
            return Ok(Next::Exit(
                self.interrupted.unwrap_or_else(|| exit_code_of(&status)),
            ));
        }
        Ok(Next::Continue)
    }

    /// Starts copying the task's output, when it is wanted and where it is is known.
    fn start_output(&self) -> Option<OutputPump> {
        if !self.plan.stream_output {
            return None;
        }
        let addr = self.agent_addr.as_deref()?;
        let framework = self.driver.framework_id()?;
        let tls = self
            .plan
            .tls
            .as_ref()
            .map(|t| t.client(&[drover_tls::Role::Agent]));
        match OutputPump::start(
            addr,
            framework.as_str(),
            self.plan.task_id.as_str(),
            tls.as_ref(),
        ) {
            Ok(pump) => Some(pump),
            Err(e) => {
                eprintln!("drover run: warning: the task's output: {e}");
                None
            }
        }
    }

    /// Prints TASK_STAGING once: the task is committed.
    fn staged(&mut self) {
        if !self.staging_printed {
            self.staging_printed = true;
            if let Err(e) = self.print("TASK_STAGING") {
                eprintln!("drover run: warning: {e}");
            }
            self.last_printed = Some(TaskState::TaskStaging);
        }
    }

    fn print(&mut self, line: &str) -> Result<(), RunError> {
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(())
    }

    async fn acknowledge(&self, status: &TaskStatus) {
        if let Err(e) = self.driver.acknowledge(status).await {
            eprintln!(
                "drover run: warning: could not acknowledge {} of task {} ({e}); the master \
                 will send it again",
                status.state().as_str_name(),
                status.task_id
            );
        }
    }

    async fn suppress(&self) {
        if let Err(e) = self.driver.suppress().await {
            eprintln!("drover run: warning: could not suppress offers: {e}");
        }
    }

    async fn reconcile(&self) {
        if let Err(e) = self
            .driver
            .reconcile(std::slice::from_ref(&self.plan.task_id))
            .await
        {
            eprintln!("drover run: warning: could not reconcile: {e}");
        }
    }

    async fn kill(&self) {
        if let Err(e) = self
            .driver
            .kill(&self.plan.task_id, self.plan.kill_grace)
            .await
        {
            eprintln!(
                "drover run: warning: could not kill task {}: {e}",
                self.plan.task_id
            );
        }
    }

    fn no_offer_message(&self) -> String {
        let mut m = format!(
            "no offer fitting {} arrived within {:?}",
            self.plan.wanted(),
            self.plan.offer_timeout
        );
        match self.driver.framework_id() {
            None => m.push_str(" (never subscribed: is a master running at the given address?)"),
            Some(id) => m.push_str(&format!(
                " (framework {id}; {} offers seen, none fitted; is an agent with enough free \
                 resources registered?)",
                self.offers_seen
            )),
        }
        if let Some(t) = &self.last_trouble {
            m.push_str(&format!("; last problem: {t}"));
        }
        m
    }

    /// Tears the framework down (bounded) and stops the driver.
    async fn finish(&mut self) {
        if let Some(output) = self.output.take() {
            output.finish(OUTPUT_DRAIN_AT_EXIT).await;
        }
        if self.driver.framework_id().is_some() {
            match tokio::time::timeout(TEARDOWN_TIMEOUT, self.driver.teardown()).await {
                // Stopped: the master ended the framework (ERROR), nothing left to remove.
                Ok(Ok(())) | Ok(Err(DriverError::Stopped)) => {}
                Ok(Err(e)) => eprintln!(
                    "drover run: warning: could not tear the framework down ({e}); the master \
                     removes it after {} s",
                    super::FAILOVER_TIMEOUT_SECONDS
                ),
                Err(_) => eprintln!(
                    "drover run: warning: tearing the framework down took over {TEARDOWN_TIMEOUT:?}; \
                     the master removes it after {} s",
                    super::FAILOVER_TIMEOUT_SECONDS
                ),
            }
        }
        self.driver.stop().await;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The process exit status for a task that ended with `status`: FINISHED → 0, FAILED with
/// exit code k → k, FAILED by signal s → 128+s, anything else → 1.
pub fn exit_code_of(status: &TaskStatus) -> i32 {
    match status.state() {
        TaskState::TaskFinished => 0,
        TaskState::TaskFailed => match (status.exit_code, status.signal) {
            (Some(k), _) if (1..=255).contains(&k) => k,
            (_, Some(s)) if (1..=127).contains(&s) => 128 + s,
            _ => 1,
        },
        _ => 1,
    }
}

/// The stdout line for a status: the state name, then for a terminal state the exit code or
/// signal and the message, e.g. `TASK_FAILED (exit code 3): exited with status 3`.
pub fn status_line(status: &TaskStatus) -> String {
    let state = status.state();
    let mut line = state.as_str_name().to_string();
    if is_terminal(state) || state == TaskState::TaskUnknown {
        if let Some(k) = status.exit_code {
            line.push_str(&format!(" (exit code {k})"));
        } else if let Some(s) = status.signal {
            line.push_str(&format!(" (signal {s})"));
        }
        let detail = if status.message.is_empty() {
            &status.reason
        } else {
            &status.message
        };
        if !detail.is_empty() {
            line.push_str(": ");
            line.push_str(&clean(detail));
        }
    }
    line
}

/// `s` on one line, bounded: text from the network must not break the one-status-per-line
/// output.
fn clean(s: &str) -> String {
    s.chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
