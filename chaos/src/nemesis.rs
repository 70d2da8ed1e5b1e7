//! The nemesis: faults injected into a running cluster on a seeded schedule, each followed by
//! its heal, every start and stop recorded in the history (process `nemesis`).
//!
//! Families (`--nemesis`): `kill` (SIGKILL the leader, a random master or a random agent, or
//! a scheduler, and start it again at the heal), `kill-agent` (the same, aimed at a random
//! agent only, whose executors and containers run on meanwhile), `pause` (SIGSTOP the leader,
//! a random master, an agent or a scheduler; SIGCONT), `partition` (cuts in the fault layer
//! ([`crate::net`]): the leader isolated, the leader in a minority, random halves, a bridge; an
//! agent cut off from every master; a scheduler cut off from every master), `restart-all`
//! (SIGKILL every master, start them all again), `rolling-restart` (each master in turn
//! SIGKILLed, down for 1.5 s, started again and answering before the next) and `truncate`
//! (aimed at a leader's uncommitted tail: the leader and one follower are cut off from the
//! others for 100–600 ms, so that the leader's latest entries reach that follower only; then
//! the leader is isolated and the follower rejoins the majority holding them. Whichever replica
//! wins next either commits those entries (the follower) or truncates them (another one), and
//! the old leader's proposals for them end in "outcome unknown", never in a refusal a client
//! would retry (issue 16). With 5 masters the pair is a minority; with 3 it commits, and the
//! fault is an isolated leader).
//!
//! The schedule alternates a quiet period and a fault period whose lengths, the family and the
//! victim are drawn from one seeded generator, so a seed names a schedule (what the cluster
//! does in between is real time and is not replayed). The nemesis task owns the cluster for the
//! run and gives it back healed: links restored, processes resumed and started.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::{ClusterError, LocalCluster, MasterId};
use crate::history::{Kind, Recorder};

/// How long a fault may wait for a leader to pick as victim.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long each master stays down in a rolling restart.
const ROLLING_DOWNTIME: Duration = Duration::from_millis(1500);
/// How long the leader and one follower are cut off together before the leader is isolated
/// (the `truncate` fault): long enough for writes to reach the follower, shorter than an
/// election.
const TRUNCATE_PAIR_CUT: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_millis(600));
/// How long a restarted master may take to answer again.
const SERVING_WAIT: Duration = Duration::from_secs(30);

/// A family of faults, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Kill,
    /// A kill aimed at agents only (their executors and containers run on).
    KillAgent,
    Pause,
    Partition,
    RestartAll,
    RollingRestart,
    Truncate,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Kill,
        Family::KillAgent,
        Family::Pause,
        Family::Partition,
        Family::RestartAll,
        Family::RollingRestart,
        Family::Truncate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Kill => "kill",
            Family::KillAgent => "kill-agent",
            Family::Pause => "pause",
            Family::Partition => "partition",
            Family::RestartAll => "restart-all",
            Family::RollingRestart => "rolling-restart",
            Family::Truncate => "truncate",
        }
    }
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown nemesis {s:?}; choose from {}",
                    Family::ALL.map(Family::name).join(", ")
                )
            })
    }
}

/// A node a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Master(MasterId),
    Agent(usize),
    /// A scheduler process of the tasks workload.
    Scheduler(usize),
}

impl Target {
    fn label(self) -> String {
        match self {
            Target::Master(id) => format!("master-{id}"),
            Target::Agent(i) => format!("agent-{i}"),
            Target::Scheduler(i) => format!("scheduler-{i}"),
        }
    }
}

/// One fault in force, with what its heal must undo.
#[derive(Clone, Debug)]
enum Active {
    Killed(Target),
    Paused(Target),
    /// Links cut in the fault layer; the heal restores every link.
    Cut,
    /// Every master killed; the heal starts them.
    AllDown,
    /// Over when it returns (a rolling restart heals itself).
    Done,
}

/// The knobs of a schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub families: Vec<Family>,
    /// Quiet time before each fault, drawn uniformly from this range.
    pub quiet: (Duration, Duration),
    /// How long each fault lasts, drawn uniformly from this range.
    pub hold: (Duration, Duration),
    pub seed: u64,
}

/// How many faults of each kind were injected.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FaultCount {
    pub by_kind: std::collections::BTreeMap<String, u64>,
    pub errors: u64,
}

/// The nemesis of one run.
pub struct Nemesis {
    cluster: LocalCluster,
    schedule: Schedule,
    rng: StdRng,
    rec: Recorder,
    count: FaultCount,
}

fn rand_between(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    Duration::from_millis(rng.random_range(lo.as_millis() as u64..=hi.as_millis() as u64))
}

impl Nemesis {
    pub fn new(cluster: LocalCluster, schedule: Schedule, rec: Recorder) -> Nemesis {
        let rng = StdRng::seed_from_u64(schedule.seed);
        Nemesis {
            cluster,
            schedule,
            rng,
            rec,
            count: FaultCount::default(),
        }
    }

    /// Runs the schedule until `stop` turns true, then heals everything; gives the cluster
    /// back with what was injected.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> (LocalCluster, FaultCount) {
        if !self.schedule.families.is_empty() {
            loop {
                let quiet = rand_between(&mut self.rng, self.schedule.quiet);
                if sleep_or_stop(quiet, &mut stop).await {
                    break;
                }
                let family = *self
                    .schedule
                    .families
                    .choose(&mut self.rng)
                    .expect("not empty");
                let hold = rand_between(&mut self.rng, self.schedule.hold);
                let active = self.start(family).await;
                let stopped = sleep_or_stop(hold, &mut stop).await;
                if let Some(a) = active {
                    self.heal(a).await;
                }
                if stopped {
                    break;
                }
            }
        }
        self.heal_everything().await;
        (self.cluster, self.count)
    }

    async fn note(&self, kind: Kind, f: &str, value: serde_json::Value, error: Option<String>) {
        self.rec.record("nemesis", kind, f, value, error).await;
    }

    /// Injects one fault of `family`; returns what the heal must undo (none if it failed).
    async fn start(&mut self, family: Family) -> Option<Active> {
        let (fault, plan) = self.plan(family).await;
        self.note(
            Kind::Invoke,
            "start",
            json!({"family": family.name(), "fault": fault}),
            None,
        )
        .await;
        match self.inject(plan).await {
            Ok((active, detail)) => {
                *self.count.by_kind.entry(fault.clone()).or_default() += 1;
                self.note(
                    Kind::Info,
                    "start",
                    json!({"family": family.name(), "fault": fault, "detail": detail}),
                    None,
                )
                .await;
                Some(active)
            }
            Err(e) => {
                self.count.errors += 1;
                self.note(
                    Kind::Info,
                    "start",
                    json!({"family": family.name(), "fault": fault}),
                    Some(e.to_string()),
                )
                .await;
                // Whatever half happened is undone by a full heal.
                self.heal_everything().await;
                None
            }
        }
    }

    /// The current leader, if one answers soon.
    async fn leader(&self) -> Option<MasterId> {
        self.cluster
            .wait_for_leader(LEADER_WAIT)
            .await
            .ok()
            .map(|s| s.node_id)
    }

    fn running_masters(&self) -> Vec<MasterId> {
        self.cluster
            .masters()
            .filter(|m| m.is_running())
            .map(|m| m.id)
            .collect()
    }

    fn running_schedulers(&self) -> Vec<usize> {
        self.cluster
            .schedulers()
            .filter(|s| s.is_running())
            .map(|s| s.index)
            .collect()
    }

    fn running_agents(&self) -> Vec<usize> {
        self.cluster
            .agents()
            .filter(|a| a.is_running())
            .map(|a| a.index)
            .collect()
    }

    /// Picks the victim and the exact fault of `family`.
    async fn plan(&mut self, family: Family) -> (String, Plan) {
        match family {
            Family::Kill | Family::Pause => self.plan_process_fault(family).await,
            Family::KillAgent => match self.running_agents().choose(&mut self.rng).copied() {
                Some(i) => ("kill-agent".into(), Plan::Kill(Target::Agent(i))),
                None => self.plan_process_fault(Family::Kill).await,
            },
            Family::Partition => self.plan_partition().await,
            Family::RestartAll => ("restart-all".into(), Plan::RestartAll),
            Family::RollingRestart => ("rolling-restart".into(), Plan::RollingRestart),
            Family::Truncate => self.plan_truncate().await,
        }
    }

    /// A kill or pause of the leader, any master, an agent or a scheduler.
    async fn plan_process_fault(&mut self, family: Family) -> (String, Plan) {
        let masters = self.running_masters();
        let agents = self.running_agents();
        let schedulers = self.running_schedulers();
        let mut choices = vec!["leader", "master"];
        if !agents.is_empty() {
            choices.push("agent");
        }
        if !schedulers.is_empty() {
            choices.push("scheduler");
        }
        let who = *choices.choose(&mut self.rng).expect("not empty");
        // Every draw is made whatever the choice, so that the schedule's later draws do
        // not depend on this one (or on whether a leader was known): one seed, one
        // sequence of choices.
        let any_master = *masters.choose(&mut self.rng).unwrap_or(&1);
        let any_scheduler = schedulers.choose(&mut self.rng).copied();
        let any_agent = agents.choose(&mut self.rng).copied();
        let target = match who {
            "leader" => Target::Master(self.leader().await.unwrap_or(any_master)),
            "master" => Target::Master(any_master),
            "scheduler" => Target::Scheduler(any_scheduler.expect("schedulers")),
            _ => Target::Agent(any_agent.expect("agents")),
        };
        let verb = if family == Family::Kill {
            "kill"
        } else {
            "pause"
        };
        let plan = if family == Family::Kill {
            Plan::Kill(target)
        } else {
            Plan::Pause(target)
        };
        (format!("{verb}-{who}"), plan)
    }

    /// A partition among the masters (leader isolated or in a minority, halves, a bridge), or
    /// an agent or a scheduler cut off from every master.
    async fn plan_partition(&mut self) -> (String, Plan) {
        let agents = self.running_agents();
        let schedulers = self.running_schedulers();
        let mut choices = vec!["isolate-leader", "leader-minority", "halves", "bridge"];
        if !agents.is_empty() {
            choices.push("agent");
        }
        if !schedulers.is_empty() {
            choices.push("scheduler");
        }
        let kind = *choices.choose(&mut self.rng).expect("not empty");
        let mut all: Vec<MasterId> = self.cluster.masters().map(|m| m.id).collect();
        all.shuffle(&mut self.rng);
        let any_agent = agents.choose(&mut self.rng).copied();
        let any_scheduler = schedulers.choose(&mut self.rng).copied();
        let plan = match kind {
            "isolate-leader" | "leader-minority" => {
                let leader = self.leader().await.unwrap_or(all[0]);
                let minority_size = if kind == "isolate-leader" {
                    1
                } else {
                    all.len().saturating_sub(1) / 2
                }
                .max(1);
                let mut minority = vec![leader];
                minority.extend(
                    all.iter()
                        .copied()
                        .filter(|m| *m != leader)
                        .take(minority_size - 1),
                );
                let majority = all
                    .iter()
                    .copied()
                    .filter(|m| !minority.contains(m))
                    .collect();
                Plan::Split(minority, majority)
            }
            "halves" => {
                let half = all.len() / 2;
                Plan::Split(all[..half].to_vec(), all[half..].to_vec())
            }
            "bridge" => {
                let mid = all.len() / 2;
                Plan::Bridge {
                    left: all[..mid].to_vec(),
                    bridge: all[mid],
                    right: all[mid + 1..].to_vec(),
                }
            }
            "agent" => Plan::CutAgent(any_agent.expect("agents")),
            _ => Plan::CutScheduler(any_scheduler.expect("schedulers")),
        };
        (format!("partition-{kind}"), plan)
    }

    /// The leader and one follower cut off from the rest, then the leader alone (the follower
    /// holds entries the new majority never saw, which it must then drop).
    async fn plan_truncate(&mut self) -> (String, Plan) {
        let mut all: Vec<MasterId> = self.cluster.masters().map(|m| m.id).collect();
        all.shuffle(&mut self.rng);
        let pair_cut = rand_between(&mut self.rng, TRUNCATE_PAIR_CUT);
        let leader = self.leader().await.unwrap_or(all[0]);
        let others: Vec<MasterId> = all.into_iter().filter(|m| *m != leader).collect();
        let follower = others.first().copied().unwrap_or(leader);
        let rest = others.into_iter().skip(1).collect();
        (
            "truncate".into(),
            Plan::Truncate {
                leader,
                follower,
                rest,
                pair_cut,
            },
        )
    }

    async fn inject(&mut self, plan: Plan) -> Result<(Active, serde_json::Value), ClusterError> {
        match plan {
            Plan::Kill(t) => {
                match t {
                    Target::Master(id) => self.cluster.kill(id).await?,
                    Target::Agent(i) => self.cluster.kill_agent(i).await?,
                    Target::Scheduler(i) => self.cluster.kill_scheduler(i).await?,
                }
                Ok((Active::Killed(t), json!({"node": t.label()})))
            }
            Plan::Pause(t) => {
                match t {
                    Target::Master(id) => self.cluster.pause(id)?,
                    Target::Agent(i) => self.cluster.pause_agent(i)?,
                    Target::Scheduler(i) => self.cluster.pause_scheduler(i)?,
                }
                Ok((Active::Paused(t), json!({"node": t.label()})))
            }
            Plan::Split(a, b) => {
                let net = self.net()?;
                net.partition(&[&a, &b]);
                Ok((Active::Cut, json!({"groups": [a, b]})))
            }
            Plan::Bridge {
                left,
                bridge,
                right,
            } => {
                let net = self.net()?;
                for &l in &left {
                    for &r in &right {
                        net.cut(l, r);
                        net.cut(r, l);
                    }
                }
                Ok((
                    Active::Cut,
                    json!({"left": left, "bridge": bridge, "right": right}),
                ))
            }
            Plan::Truncate {
                leader,
                follower,
                rest,
                pair_cut,
            } => {
                let net = self.net()?;
                net.partition(&[&[leader, follower], &rest]);
                tokio::time::sleep(pair_cut).await;
                // Isolate the leader first, then let the follower back: at no moment can the
                // leader reach a majority again.
                net.cut(leader, follower);
                net.cut(follower, leader);
                for &r in &rest {
                    net.mend(follower, r);
                    net.mend(r, follower);
                }
                Ok((
                    Active::Cut,
                    json!({"leader": leader, "follower": follower, "rest": rest,
                           "pair_cut_ms": pair_cut.as_millis() as u64}),
                ))
            }
            Plan::CutAgent(i) => {
                self.net()?.isolate_agent(i);
                Ok((Active::Cut, json!({"node": Target::Agent(i).label()})))
            }
            Plan::CutScheduler(i) => {
                self.net()?.isolate_client(i);
                Ok((Active::Cut, json!({"node": format!("scheduler-{i}")})))
            }
            Plan::RestartAll => {
                let ids = self.running_masters();
                for id in &ids {
                    self.cluster.kill(*id).await?;
                }
                Ok((Active::AllDown, json!({"killed": ids})))
            }
            Plan::RollingRestart => {
                let ids = self.running_masters();
                for id in &ids {
                    self.cluster.kill(*id).await?;
                    // Down longer than an election timeout, so that killing the leader makes
                    // the others elect a new one (a leader back at once resumes its term).
                    tokio::time::sleep(ROLLING_DOWNTIME).await;
                    self.cluster.start_master(*id)?;
                    self.cluster.wait_until_serving(*id, SERVING_WAIT).await?;
                    // A new leader (if the leader was hit) before the next one goes down.
                    self.cluster.wait_for_leader(SERVING_WAIT).await?;
                }
                Ok((Active::Done, json!({"restarted": ids})))
            }
        }
    }

    fn net(&self) -> Result<&crate::net::FaultyNetwork, ClusterError> {
        self.cluster.net().ok_or_else(|| ClusterError::Io {
            what: "cutting links".into(),
            source: std::io::Error::other("the cluster has no fault layer (not proxied)"),
        })
    }

    async fn heal(&mut self, active: Active) {
        self.note(Kind::Invoke, "stop", json!({}), None).await;
        let result: Result<serde_json::Value, ClusterError> = async {
            match active {
                Active::Killed(Target::Master(id)) => {
                    self.cluster.start_master(id)?;
                    Ok(json!({"started": format!("master-{id}")}))
                }
                Active::Killed(Target::Agent(i)) => {
                    self.cluster.start_agent(i)?;
                    Ok(json!({"started": format!("agent-{i}")}))
                }
                Active::Killed(Target::Scheduler(i)) => {
                    self.cluster.start_scheduler(i)?;
                    Ok(json!({"started": format!("scheduler-{i}")}))
                }
                Active::Paused(Target::Scheduler(i)) => {
                    self.cluster.resume_scheduler(i)?;
                    Ok(json!({"resumed": format!("scheduler-{i}")}))
                }
                Active::Paused(Target::Master(id)) => {
                    self.cluster.resume(id)?;
                    Ok(json!({"resumed": format!("master-{id}")}))
                }
                Active::Paused(Target::Agent(i)) => {
                    self.cluster.resume_agent(i)?;
                    Ok(json!({"resumed": format!("agent-{i}")}))
                }
                Active::Cut => {
                    self.net()?.heal();
                    Ok(json!({"healed": "network"}))
                }
                Active::AllDown => {
                    let ids: Vec<MasterId> = self
                        .cluster
                        .masters()
                        .filter(|m| !m.is_running())
                        .map(|m| m.id)
                        .collect();
                    for id in &ids {
                        self.cluster.start_master(*id)?;
                    }
                    Ok(json!({"started": ids}))
                }
                Active::Done => Ok(json!({})),
            }
        }
        .await;
        match result {
            Ok(v) => self.note(Kind::Info, "stop", v, None).await,
            Err(e) => {
                self.count.errors += 1;
                self.note(Kind::Info, "stop", json!({}), Some(e.to_string()))
                    .await;
                self.heal_everything().await;
            }
        }
    }

    /// Restores every link, resumes every process, and starts every master and agent that is
    /// down. Safe to call at any time.
    pub async fn heal_everything(&mut self) {
        if let Some(net) = self.cluster.net() {
            net.heal();
        }
        let mut started = BTreeSet::new();
        let schedulers: Vec<(usize, bool)> = self
            .cluster
            .schedulers()
            .map(|s| (s.index, s.is_running()))
            .collect();
        for (i, running) in schedulers {
            if running {
                let _ = self.cluster.resume_scheduler(i);
            } else if self.cluster.start_scheduler(i).is_ok() {
                started.insert(format!("scheduler-{i}"));
            }
        }
        let masters: Vec<(MasterId, bool)> = self
            .cluster
            .masters()
            .map(|m| (m.id, m.is_running()))
            .collect();
        for (id, running) in masters {
            if running {
                let _ = self.cluster.resume(id);
            } else if self.cluster.start_master(id).is_ok() {
                started.insert(format!("master-{id}"));
            }
        }
        let agents: Vec<(usize, bool)> = self
            .cluster
            .agents()
            .map(|a| (a.index, a.is_running()))
            .collect();
        for (i, running) in agents {
            if running {
                let _ = self.cluster.resume_agent(i);
            } else if self.cluster.start_agent(i).is_ok() {
                started.insert(format!("agent-{i}"));
            }
        }
        if !started.is_empty() {
            self.note(Kind::Info, "heal", json!({"started": started}), None)
                .await;
        }
    }
}

/// One concrete fault.
#[derive(Clone, Debug)]
enum Plan {
    Kill(Target),
    Pause(Target),
    /// Two groups of masters that cannot reach each other.
    Split(Vec<MasterId>, Vec<MasterId>),
    /// Left and right cannot reach each other; the bridge reaches both.
    Bridge {
        left: Vec<MasterId>,
        bridge: MasterId,
        right: Vec<MasterId>,
    },
    CutAgent(usize),
    CutScheduler(usize),
    RestartAll,
    RollingRestart,
    /// The leader and `follower` cut off from `rest` for `pair_cut`, then the leader alone.
    Truncate {
        leader: MasterId,
        follower: MasterId,
        rest: Vec<MasterId>,
        pair_cut: Duration,
    },
}

/// Sleeps for `d` unless `stop` turns true first; returns whether it did.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.wait_for(|s| *s) => r.is_ok(),
    };
    stopped || *stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_parse_by_name_and_refuse_unknown_ones() {
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>(), Ok(f));
        }
        let e = "clock".parse::<Family>().expect_err("unknown");
        assert!(e.contains("partition"), "{e}");
    }

    #[test]
    fn a_seed_names_a_schedule() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..8)
                .map(|_| rand_between(&mut rng, (Duration::from_secs(1), Duration::from_secs(9))))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
