//! `drover chaos run`: one Jepsen-style run from start to verdict.
//!
//! 1. Start a real cluster (the same [`LocalCluster`] `drover up` uses) with a fault layer in
//!    front of every master, and wait for a leader.
//! 2. Run the workloads, the monitor and the nemesis side by side for `--duration`, recording
//!    everything in `history.jsonl`.
//! 3. Stop the nemesis (it heals everything), let the workloads go on for `--recovery` so the
//!    history shows the cluster serving again (with schedulers, until each has its long tasks
//!    running again, or the liveness bound has passed), then stop them.
//! 4. Read every replica's final state once it has caught up with the leader, keep every
//!    node's log, stop the cluster.
//! 5. Run the checkers over what was saved ([`crate::checker`]) and write `results.json`.
//!
//! The output directory holds `history.jsonl` (the runner's and every scheduler process's
//! records merged on the run's clock; the parts in `parts/`), `run.json` (what ran),
//! `results.json`, `report.html`, `final/`, `nodes/*.log`, `launches.log`, and with
//! `--keep-data` the cluster's data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::checker::{self, final_state_path, Results, RunInfo};
use crate::cluster::{ClusterError, ClusterSpec, LocalCluster};
use crate::history::{Clock, HistoryError, Mode, Recorder};
use crate::nemesis::{Family, Nemesis, Schedule};
use crate::workload::tasks::Containers;
use crate::workload::{self, Context, Workload};

/// Parses `60s`, `10m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 90s, 10m, 1h)"))
}

/// The options of `drover chaos run` (their doc comments are its help).
#[derive(clap::Args, Clone, Debug)]
pub struct ChaosOptions {
    /// Masters (3 or 5 are the usual sizes).
    #[arg(long, default_value_t = 3)]
    pub masters: u64,
    /// Real agents (each with its own address, so it can be cut off).
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    /// Workloads to run side by side (comma-separated): store, tasks, marathon.
    #[arg(long, value_delimiter = ',', default_value = "store,tasks")]
    pub workload: Vec<String>,
    /// Fault families (comma-separated): kill, kill-agent (agents only), pause, partition,
    /// restart-all, rolling-restart, truncate (a leader's uncommitted tail left on one
    /// follower; aimed at 5 masters); `none` for a run without faults.
    #[arg(long, value_delimiter = ',', default_value = "kill,partition")]
    pub nemesis: Vec<String>,
    /// How long faults are injected (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Mean quiet time between faults (each drawn from half to one and a half times it).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub quiet: Duration,
    /// Mean time a fault lasts (drawn likewise).
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub hold: Duration,
    /// How long the workloads go on after the last heal, at least (with schedulers, until each
    /// has its long tasks running again, up to the liveness bound of 45 s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub recovery: Duration,
    /// Operations per second per workload, in total over its clients.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seed of the fault schedule and of the clients' choices (random when not given; the
    /// run prints it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the history, results, report and logs go (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Time the checkers may take in all before they answer "unknown".
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub check_time_limit: Duration,
    /// Keep the cluster's data directories under OUT/cluster.
    #[arg(long)]
    pub keep_data: bool,
    /// Extra arguments for every master.
    #[arg(long = "master-arg", allow_hyphen_values = true)]
    pub master_args: Vec<String>,
    /// The framework API the tasks workload's schedulers speak: Drover's gRPC service or the
    /// Mesos v1 scheduler HTTP API.
    #[arg(long, value_enum, default_value_t = drover_scheduler::driver::Api::Grpc)]
    pub api: drover_scheduler::driver::Api,
    /// How the tasks workload's tasks run: `none` (commands) or `docker` (containers of a test
    /// image built locally; the run then also checks that no container outlives its task or
    /// the run).
    #[arg(long, value_enum, default_value_t = Containers::None)]
    pub containers: Containers,
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Evidence(#[from] checker::EvidenceError),
    #[error("workload {name}: {reason}")]
    Workload { name: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChaosError {
    let what = what.into();
    move |source| ChaosError::Io { what, source }
}

/// What a run did, besides the verdict.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub seed: u64,
    pub records: u64,
    pub faults: crate::nemesis::FaultCount,
    pub results: Results,
}

fn families(names: &[String]) -> Result<Vec<Family>, ChaosError> {
    let mut out = Vec::new();
    for n in names {
        if n == "none" {
            continue;
        }
        let f: Family = n.parse().map_err(ChaosError::Options)?;
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn spread(mean: Duration) -> (Duration, Duration) {
    (mean / 2, mean + mean / 2)
}

/// The workloads a run drives.
type Workloads = Vec<Arc<dyn Workload>>;

/// The nemesis families and workloads `opts` names, once its numbers are checked.
fn checked(opts: &ChaosOptions) -> Result<(Vec<Family>, Workloads), ChaosError> {
    let families = families(&opts.nemesis)?;
    let workloads: Workloads = opts
        .workload
        .iter()
        .map(|w| workload::by_name(w).map_err(ChaosError::Options))
        .collect::<Result<_, _>>()?;
    if workloads.is_empty() {
        return Err(ChaosError::Options("--workload: name at least one".into()));
    }
    if !(3..=9).contains(&opts.masters) {
        return Err(ChaosError::Options(format!(
            "--masters {}: from 3 to 9 (a fault must leave a majority to test)",
            opts.masters
        )));
    }
    if !(opts.rate > 0.0 && opts.rate <= 10_000.0) {
        return Err(ChaosError::Options(format!(
            "--rate {}: from above 0 to 10000 operations per second",
            opts.rate
        )));
    }
    Ok((families, workloads))
}

/// `opts` with its output directory created (it must be new or empty) and made absolute:
/// tasks write their launches there from their own sandboxes.
fn with_out_dir(opts: &ChaosOptions) -> Result<ChaosOptions, ChaosError> {
    let out = &opts.out;
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(io(format!("reading {}", out.display())))?
            .next()
            .is_some()
    {
        return Err(ChaosError::Options(format!(
            "--out {}: not empty (each run needs its own directory)",
            out.display()
        )));
    }
    std::fs::create_dir_all(out.join("final"))
        .map_err(io(format!("creating {}", out.display())))?;
    let mut opts = opts.clone();
    opts.out = std::fs::canonicalize(out).map_err(io(format!("resolving {}", out.display())))?;
    Ok(opts)
}

/// Runs one chaos run; `progress` gets a line at each phase.
pub async fn run(
    binary: PathBuf,
    opts: &ChaosOptions,
    progress: impl Fn(&str),
) -> Result<RunSummary, ChaosError> {
    let (families, workloads) = checked(opts)?;
    let opts = with_out_dir(opts)?;
    let opts = &opts;
    let out = &opts.out;
    let seed = opts.seed.unwrap_or_else(rand::random);
    let info = RunInfo {
        workloads: workloads.iter().map(|w| w.name().to_string()).collect(),
        nemeses: families.iter().map(|f| f.name().to_string()).collect(),
        masters: opts.masters,
        agents: opts.agents,
        seed,
        duration_secs: opts.duration.as_secs_f64(),
        rate: opts.rate,
        api: api_name(opts.api),
        containers: containers_name(opts.containers),
    };
    write_json(&out.join("run.json"), &info)?;
    progress(&format!(
        "seed {seed}: {} masters, {} agents, workloads {} ({} framework API, containers {}), nemesis {}, {:?} of faults",
        opts.masters,
        opts.agents,
        info.workloads.join(","),
        info.api,
        info.containers,
        if info.nemeses.is_empty() {
            "none".to_string()
        } else {
            info.nemeses.join(",")
        },
        opts.duration
    ));

    let base = out.join("cluster");
    let clock = Clock::starting_now();
    let mut spec =
        ClusterSpec::on_free_ports(binary, base.clone(), opts.masters)?.with_agents(opts.agents)?;
    spec.proxied = true;
    spec.master_args = opts.master_args.clone();
    spec.schedulers = workloads.iter().map(|w| w.schedulers()).sum();
    spec.scheduler_args = vec![
        "--run-dir".into(),
        out.display().to_string(),
        "--clock-base-ns".into(),
        clock.base_ns.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--rate".into(),
        opts.rate.to_string(),
        "--api".into(),
        api_name(opts.api),
    ];
    // The tasks workload's commands run as whoever runs this (they write to the run's
    // directory): root, where the run is root's.
    spec.agent_args.push("--allow-root-tasks".to_string());
    if opts.containers == Containers::Docker {
        let image = drover_agent::testing::docker_test_image()
            .await
            .map_err(|why| ChaosError::Options(format!("--containers docker: {why}")))?;
        progress(&format!("the tasks run as containers of {image}"));
        spec.scheduler_args
            .extend(["--image".to_string(), image.to_string()]);
        // The tasks append to launches.log in the run's directory.
        spec.agent_args.extend([
            "--docker-volume-paths".to_string(),
            out.display().to_string(),
        ]);
    }
    let cluster = LocalCluster::start(spec).await?;
    let outcome = drive(cluster, clock, opts, &families, &workloads, seed, &progress).await;
    let (faults, records) = outcome?;

    if !opts.keep_data {
        let _ = std::fs::remove_dir_all(&base);
    }
    progress("checking");
    let ev = checker::Evidence::load(out)?;
    let results = checker::check_all(&ev, opts.check_time_limit);
    write_json(&out.join("results.json"), &results)?;
    write_report(out, &info, &results, &ev)?;
    Ok(RunSummary {
        seed,
        records,
        faults,
        results,
    })
}

/// The command-line name of `api` (`grpc`, `http`).
pub fn api_name(api: drover_scheduler::driver::Api) -> String {
    use clap::ValueEnum as _;
    api.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// Phases 1–4; the cluster is stopped whatever happens.
async fn drive(
    mut cluster: LocalCluster,
    clock: Clock,
    opts: &ChaosOptions,
    families: &[Family],
    workloads: &[Arc<dyn Workload>],
    seed: u64,
    progress: &impl Fn(&str),
) -> Result<(crate::nemesis::FaultCount, u64), ChaosError> {
    let out = &opts.out;
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(60)).await {
        keep_logs(&cluster, out);
        return Err(e.into());
    }
    let (rec, writer) = Recorder::start(&out.join(RUNNER_HISTORY), clock, Mode::Buffered)?;
    let (stop_faults_tx, stop_faults) = watch::channel(false);
    let (stop_clients_tx, stop_clients) = watch::channel(false);
    let (stop_monitor_tx, stop_monitor) = watch::channel(false);
    let schedulers: Vec<usize> = cluster.schedulers().map(|s| s.index).collect();
    for i in &schedulers {
        cluster.start_scheduler(*i)?;
    }

    let masters: Vec<(u64, String)> = cluster.masters().map(|m| (m.id, m.addr.clone())).collect();
    let monitor = tokio::spawn(crate::monitor::run(
        cluster.client(),
        masters.clone(),
        rec.clone(),
        stop_monitor.clone(),
    ));
    let sampler = tokio::spawn(crate::monitor::sample_states(
        cluster.client().with_deadline(Duration::from_secs(1)),
        masters,
        rec.clone(),
        stop_monitor,
    ));
    let mut clients = tokio::task::JoinSet::new();
    for (i, w) in workloads.iter().enumerate() {
        let ctx = Context {
            rec: rec.clone(),
            masters: cluster.addrs(),
            stop: stop_clients.clone(),
            rate: opts.rate,
            seed: seed.wrapping_add(1 + i as u64),
            faults_stopped: stop_faults.clone(),
            binary: Some(cluster.spec().binary.clone()),
            out: Some(out.to_path_buf()),
        };
        let w = w.clone();
        clients.spawn(async move { (w.name(), w.clone().run(ctx).await) });
    }
    let schedule = Schedule {
        families: families.to_vec(),
        quiet: spread(opts.quiet),
        hold: spread(opts.hold),
        seed,
    };
    let nemesis = tokio::spawn(Nemesis::new(cluster, schedule, rec.clone()).run(stop_faults));
    progress("running");
    tokio::time::sleep(opts.duration).await;
    let _ = stop_faults_tx.send(true);
    let (mut cluster, faults) = nemesis.await.map_err(|e| ChaosError::Workload {
        name: "nemesis".into(),
        reason: e.to_string(),
    })?;
    progress(&format!(
        "healed after {} faults; the workloads go on for {:?}",
        faults.by_kind.values().sum::<u64>(),
        opts.recovery
    ));
    let heal_ns = rec.now_ns();
    tokio::time::sleep(opts.recovery).await;
    if workloads.iter().any(|w| w.schedulers() > 0) && !watch_liveness(out, &rec, heal_ns).await {
        progress(&format!(
            "the schedulers' long tasks did not all run again within {:?} of the heal",
            checker::tasks::LIVENESS_BOUND
        ));
    }
    let _ = stop_clients_tx.send(true);
    // Schedulers drain (kill their tasks and learn every fate) before they exit.
    let killed = cluster.stop_schedulers(SCHEDULER_DRAIN).await;
    if !killed.is_empty() {
        progress(&format!(
            "schedulers {killed:?} did not finish within {SCHEDULER_DRAIN:?}"
        ));
    }
    let failure = join_clients(clients).await;
    let containers = if opts.containers == Containers::Docker {
        Some(containers_after_drain(out, &cluster, progress).await)
    } else {
        None
    };
    let _ = stop_monitor_tx.send(true);
    let _ = monitor.await;
    let _ = sampler.await;
    drop(rec);
    writer.finish().await?;
    let records = merge_histories(out)?;

    save_evidence(&cluster, out, progress).await?;
    keep_logs(&cluster, out);
    let cluster_agents = cluster.agent_ids();
    cluster.stop_all(Duration::from_secs(10)).await?;
    if let Some(mut found) = containers {
        // Stopping the cluster removes every container of its agents.
        let left = crate::containers::of_frameworks(&found.frameworks)
            .await
            .ok();
        found.left_after_stop = left.as_ref().map(Vec::len);
        let of_agents: std::collections::BTreeSet<String> =
            left.into_iter().flatten().map(|c| c.agent).collect();
        found.left_of_agents = of_agents.into_iter().collect();
        found.cluster_agents = cluster_agents;
        write_json(&checker::containers_path(out), &found)?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((faults, records))
}

/// The command-line name of `c` (`none`, `docker`).
pub fn containers_name(c: Containers) -> String {
    use clap::ValueEnum as _;
    c.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The framework ids the run's schedulers saved.
fn run_frameworks(out: &Path, cluster: &LocalCluster) -> Vec<String> {
    cluster
        .schedulers()
        .filter_map(|s| {
            std::fs::read_to_string(crate::workload::tasks::framework_id_path(out, s.index)).ok()
        })
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .collect()
}

/// How long the containers of the drained frameworks' tasks may take to stop (a kill is
/// `docker stop` with the task's grace, then SIGKILL).
const CONTAINER_STOP_WAIT: Duration = Duration::from_secs(30);

/// Once the schedulers drained: waits (up to [`CONTAINER_STOP_WAIT`]) until no container of
/// theirs runs, and says what the engine then lists.
async fn containers_after_drain(
    out: &Path,
    cluster: &LocalCluster,
    progress: &impl Fn(&str),
) -> checker::containers::ContainerEvidence {
    let frameworks = run_frameworks(out, cluster);
    let started = std::time::Instant::now();
    loop {
        let listed = crate::containers::of_frameworks(&frameworks).await;
        let running = listed
            .as_ref()
            .map(|l| l.iter().filter(|c| c.running).count())
            .unwrap_or(0);
        if running == 0 || started.elapsed() >= CONTAINER_STOP_WAIT {
            let waited_s = started.elapsed().as_secs_f64();
            progress(&format!(
                "{} containers of the run's frameworks, {running} still running after {waited_s:.1} s",
                listed.as_ref().map_or(0, |l| l.len())
            ));
            let (after_drain, error) = match listed {
                Ok(l) => (l, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            return checker::containers::ContainerEvidence {
                frameworks,
                after_drain,
                waited_s,
                error,
                left_after_stop: None,
                left_of_agents: Vec::new(),
                cluster_agents: Vec::new(),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A workload client's end: its workload's name and how it ended.
type ClientEnd = (&'static str, Result<(), crate::workload::WorkloadError>);

/// Waits for every workload client; the first failure, if any.
async fn join_clients(mut clients: tokio::task::JoinSet<ClientEnd>) -> Option<ChaosError> {
    let mut failure = None;
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok((_, Ok(()))) => {}
            Ok((name, Err(e))) => {
                failure.get_or_insert(ChaosError::Workload {
                    name: name.into(),
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                failure.get_or_insert(ChaosError::Workload {
                    name: "?".into(),
                    reason: e.to_string(),
                });
            }
        }
    }
    failure
}

/// What the checkers read besides the history: every replica's Raft metrics and final state,
/// and what each agent saw acknowledged.
async fn save_evidence(
    cluster: &LocalCluster,
    out: &Path,
    progress: &impl Fn(&str),
) -> Result<(), ChaosError> {
    progress("reading every replica's final state");
    save_raft_metrics(cluster, out).await?;
    // What agents were acknowledged first: each of those updates was committed before, so
    // every replica that caught up with the leader afterwards must hold it.
    for a in cluster.agents() {
        let acked = checker::tasks::acked_by_master(&a.work_dir);
        write_json(&checker::agent_acks_path(out, a.index), &acked)?;
    }
    // A cluster that cannot show its state after the heal is evidence, not an error: the
    // checkers that need the final states then cannot say valid.
    if let Err(e) = save_final_states(cluster, out).await {
        progress(&format!(
            "the final state could not be read from every replica: {e}"
        ));
    }
    Ok(())
}

/// What the runner itself records (the nemesis, the monitor, the in-process clients); merged
/// with the schedulers' files into `history.jsonl` at the end.
const RUNNER_HISTORY: &str = "runner.jsonl";
/// How long schedulers may take to drain at the end.
const SCHEDULER_DRAIN: Duration = Duration::from_secs(90);

/// Keeps the run going until the schedulers' records show each with its long tasks running
/// again since `heal_ns`, or until the liveness bound has passed since then (false): the
/// liveness checker judges what the history shows, so the run watches for as long as the
/// bound, not only for `--recovery`.
async fn watch_liveness(out: &Path, rec: &Recorder, heal_ns: u64) -> bool {
    let wanted = crate::workload::tasks::TasksWorkload::default().long_tasks;
    let deadline_ns = heal_ns + checker::tasks::LIVENESS_BOUND.as_nanos() as u64;
    loop {
        let parts = scheduler_parts(out).unwrap_or_default();
        // A part being written may end mid-line; `read` leaves that line out.
        let mut history = Vec::new();
        for p in &parts {
            history.extend(crate::history::read(p).unwrap_or_default());
        }
        history.sort_by_key(|r| r.time_ns);
        if checker::tasks::every_scheduler_recovered(&history, heal_ns, wanted) {
            return true;
        }
        if rec.now_ns() >= deadline_ns {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The schedulers' own history files (`scheduler-<index>.<life>.jsonl`) in the run's directory.
fn scheduler_parts(out: &Path) -> Result<Vec<PathBuf>, ChaosError> {
    let mut parts = Vec::new();
    for e in std::fs::read_dir(out)
        .map_err(io("listing the run's directory"))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("scheduler-") && name.ends_with(".jsonl") {
            parts.push(e.path());
        }
    }
    Ok(parts)
}

/// Merges the runner's history and every scheduler incarnation's into `history.jsonl`, in time
/// order (one clock), numbered again; the parts move to `parts/`. Returns the record count.
fn merge_histories(out: &Path) -> Result<u64, ChaosError> {
    let parts_dir = out.join("parts");
    std::fs::create_dir_all(&parts_dir).map_err(io("creating parts/"))?;
    let mut parts = vec![out.join(RUNNER_HISTORY)];
    parts.extend(scheduler_parts(out)?);
    let mut all = Vec::new();
    for p in &parts {
        all.extend(crate::history::read(p)?);
    }
    // Stable: records of one part keep their order when times tie.
    all.sort_by_key(|r| r.time_ns);
    let path = out.join("history.jsonl");
    let mut text = String::new();
    for (i, r) in all.iter_mut().enumerate() {
        r.index = i as u64;
        text.push_str(&serde_json::to_string(r).map_err(|e| ChaosError::Io {
            what: "encoding the history".into(),
            source: std::io::Error::other(e),
        })?);
        text.push('\n');
    }
    std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    for p in parts {
        if let Some(name) = p.file_name() {
            let _ = std::fs::rename(&p, parts_dir.join(name));
        }
    }
    Ok(all.len() as u64)
}

/// Waits until each master has applied what the leader committed, then saves its
/// `/v1/state`. A master that never catches up is left out (its absence is evidence too);
/// without a leader, none is saved.
async fn save_final_states(cluster: &LocalCluster, out: &Path) -> Result<(), ChaosError> {
    let leader = cluster.wait_for_leader(Duration::from_secs(60)).await?;
    let target = leader.committed_index;
    for m in cluster.masters() {
        let caught_up = cluster
            .wait_for_status(m.id, "catching up", Duration::from_secs(30), |s| {
                if s.applied_index >= target {
                    Ok(())
                } else {
                    Err(format!("applied {} of {target}", s.applied_index))
                }
            })
            .await;
        if caught_up.is_err() {
            continue;
        }
        if let Ok(state) = crate::http::get_json(&m.addr, "/v1/state").await {
            write_json(&final_state_path(out, m.id), &state)?;
        }
    }
    Ok(())
}

/// Saves every reachable master's Raft metrics (`/v1/raft`: vote, last log, committed and
/// applied ids, and on the leader each follower's matched id) as `final/raft-<id>.json`, so
/// a run whose cluster stopped making progress shows where each replica stood.
async fn save_raft_metrics(cluster: &LocalCluster, out: &Path) -> Result<(), ChaosError> {
    for m in cluster.masters() {
        if let Ok(metrics) = crate::http::get_json(&m.addr, "/v1/raft").await {
            write_json(
                &out.join("final").join(format!("raft-{}.json", m.id)),
                &metrics,
            )?;
        }
    }
    Ok(())
}

/// Copies every node's log into `OUT/nodes`.
fn keep_logs(cluster: &LocalCluster, out: &Path) {
    let dir = out.join("nodes");
    let _ = std::fs::create_dir_all(&dir);
    for m in cluster.masters() {
        let _ = std::fs::copy(&m.log_path, dir.join(format!("master-{}.log", m.id)));
    }
    for a in cluster.agents() {
        let _ = std::fs::copy(&a.log_path, dir.join(format!("agent-{}.log", a.index)));
    }
    for s in cluster.schedulers() {
        let _ = std::fs::copy(&s.log_path, dir.join(format!("scheduler-{}.log", s.index)));
    }
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), ChaosError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ChaosError::Io {
        what: format!("encoding {}", path.display()),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// `drover chaos check DIR`: the checkers again over a saved run; writes `results.json`.
pub fn check_saved(dir: &Path, time_limit: Duration) -> Result<Results, ChaosError> {
    let ev = checker::Evidence::load(dir)?;
    let info: RunInfo = serde_json::from_str(
        &std::fs::read_to_string(dir.join("run.json")).map_err(io("reading run.json"))?,
    )
    .map_err(|e| ChaosError::Options(format!("run.json: {e}")))?;
    let results = checker::check_all(&ev, time_limit);
    write_json(&dir.join("results.json"), &results)?;
    write_report(dir, &info, &results, &ev)?;
    Ok(results)
}

fn write_report(
    dir: &Path,
    info: &RunInfo,
    results: &Results,
    ev: &checker::Evidence,
) -> Result<(), ChaosError> {
    let page = crate::report::render(info, results, &ev.history);
    let path = dir.join("report.html");
    std::fs::write(&path, page).map_err(io(format!("writing {}", path.display())))
}
