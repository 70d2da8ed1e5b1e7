//! The shared harness of the end-to-end tests: real `drover` processes on loopback with their
//! data in a temporary directory, helpers to run the CLI and read metrics, and the tail of every
//! master's log printed when a test fails.

#![allow(dead_code)]

pub mod framework;
pub mod mesos;
pub mod scheduler;
pub mod updates;

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use drover_chaos::{ClusterSpec, LocalCluster};
use drover_proto::v1;
use drover_scheduler::driver::{DriverEvent, EventStream, Offer};

#[allow(unused_imports)]
pub use drover_chaos::wait_until;

/// How long a test waits for a cluster to elect a leader.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The last `lines` lines of the log at `path`, under a header naming `what`: for a failed
/// test's output.
pub fn log_tail(what: &str, path: &std::path::Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    let mut out = format!("---- {what} log (last {} lines) ----\n", tail.len());
    for line in tail {
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drover"))
}

/// A local cluster that lives as long as the test; its processes are killed and its directory
/// removed on drop.
pub struct TestCluster {
    // Declared before `dir`: fields drop in declaration order.
    cluster: LocalCluster,
    dir: Option<tempfile::TempDir>,
}

impl Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in self.cluster.masters() {
                eprint!("{}", log_tail(&format!("master {}", m.id), &m.log_path, 40));
            }
            for a in self.cluster.agents() {
                eprint!(
                    "{}",
                    log_tail(&format!("agent {}", a.index), &a.log_path, 40)
                );
            }
        }
        // The fields drop after this, in order: `cluster` SIGKILLs the masters, then `dir`
        // removes their directories.
    }
}

/// Starts `masters` masters with `args` added to each and waits for a leader.
pub async fn start(masters: u64, args: &[&str]) -> TestCluster {
    launch(prepare(masters, args, false)).await
}

/// Like [`start`], with a fault-injecting proxy between masters (`cluster.net()`).
pub async fn start_proxied(masters: u64, args: &[&str]) -> TestCluster {
    launch(prepare(masters, args, true)).await
}

async fn launch(mut c: TestCluster) -> TestCluster {
    let ids: Vec<u64> = c.masters().map(|m| m.id).collect();
    for id in ids {
        c.start_master(id).expect("start master");
    }
    c.wait_for_leader(LEADER_TIMEOUT)
        .await
        .expect("leader elected");
    c
}

/// Starts `masters` masters (with `master_args`) and `agents` agents (with `agent_args`), and
/// waits until the leader has registered `expect_agents` active agents (a simulating agent
/// process registers several).
pub async fn start_with_agents(
    masters: u64,
    master_args: &[&str],
    agents: usize,
    agent_args: &[&str],
    expect_agents: usize,
) -> TestCluster {
    start_agents_with(
        masters,
        master_args,
        agents,
        agent_args,
        expect_agents,
        |_| {},
    )
    .await
}

/// Like [`start_with_agents`], each agent with a hostname of its own (see
/// `ClusterSpec::distinct_agent_hostnames`), as if on machines of their own.
pub async fn start_with_agents_on_own_hosts(masters: u64, agents: usize) -> TestCluster {
    start_agents_with(masters, &[], agents, &[], agents, |spec| {
        spec.distinct_agent_hostnames = true
    })
    .await
}

/// Like [`start_with_agents`], with the fault layer (`cluster.net()`) between masters and
/// between agents and masters.
pub async fn start_with_agents_proxied(
    masters: u64,
    master_args: &[&str],
    agents: usize,
    agent_args: &[&str],
    expect_agents: usize,
) -> TestCluster {
    start_agents_with(
        masters,
        master_args,
        agents,
        agent_args,
        expect_agents,
        |spec| spec.proxied = true,
    )
    .await
}

async fn start_agents_with(
    masters: u64,
    master_args: &[&str],
    agents: usize,
    agent_args: &[&str],
    expect_agents: usize,
    configure: impl FnOnce(&mut ClusterSpec),
) -> TestCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = ClusterSpec::on_free_ports(binary(), dir.path().to_path_buf(), masters)
        .expect("ports")
        .with_agents(agents)
        .expect("agent ports");
    spec.master_args = master_args.iter().map(|s| s.to_string()).collect();
    spec.agent_args = agent_args.iter().map(|s| s.to_string()).collect();
    configure(&mut spec);
    let c = TestCluster {
        cluster: LocalCluster::new(spec).expect("cluster"),
        dir: Some(dir),
    };
    let mut c = launch(c).await;
    for i in 0..agents {
        c.start_agent(i).expect("start agent");
    }
    wait_for_agents(&c, expect_agents).await;
    c
}

/// The `/v1/state` of the master at `addr` (its own registry, leader or not) as JSON.
pub async fn state_at(addr: &str) -> Result<serde_json::Value, String> {
    let (code, body) = try_http_get(addr, "/v1/state")
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    if code != 200 {
        return Err(format!("{addr}: /v1/state answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{addr}: {e}"))
}

/// The leader's `/v1/state` as JSON (over HTTPS, as the harness, in a cluster with TLS).
pub async fn leader_state(c: &LocalCluster) -> Result<serde_json::Value, String> {
    let leader = c
        .wait_for_leader(LEADER_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let addr = &leader.leader_addr;
    if c.certs().is_none() {
        return state_at(addr).await;
    }
    let (code, body) = https_get(c, addr, "/v1/state").await?;
    if code != 200 {
        return Err(format!("{addr}: /v1/state answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{addr}: {e}"))
}

/// The next driver event within `timeout`; `None` on timeout or once the driver has stopped.
pub async fn next(events: &mut EventStream, timeout: Duration) -> Option<DriverEvent> {
    tokio::time::timeout(timeout, events.next_event())
        .await
        .ok()
        .flatten()
}

/// Waits for the next OFFERS event (skipping others) within `timeout`; panics on the driver's
/// ERROR event.
pub async fn next_offers(events: &mut EventStream, timeout: Duration) -> Option<Vec<Offer>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(events, left).await? {
            DriverEvent::Offers(o) => return Some(o),
            DriverEvent::Error(e) => panic!("driver error: {e}"),
            _ => continue,
        }
    }
}

/// A task `id` (named `id` too) with `resources` (text, e.g. `cpus:0.5;mem:64`) running
/// `/bin/sh -c shell`, with a kill grace period of 1 s.
pub fn shell_task(id: &str, resources: &str, shell: &str) -> v1::TaskInfo {
    v1::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: resources
            .parse::<drover_resources::Resources>()
            .unwrap()
            .to_proto(),
        command: Some(v1::CommandInfo {
            shell: shell.into(),
            environment: Default::default(),
            ..Default::default()
        }),
        kill_grace_seconds: 1.0,
        health_check: None,
        ..Default::default()
    }
}

/// Waits until the leader's registry holds `n` active agents.
pub async fn wait_for_agents(c: &LocalCluster, n: usize) {
    wait_until("agents registered", Duration::from_secs(60), || async {
        enough_active_agents(&leader_state(c).await?, n)
    })
    .await
    .expect("agents registered");
}

/// `Ok` when the registry `state` (a master's `/v1/state`) holds at least `n` active agents.
fn enough_active_agents(state: &serde_json::Value, n: usize) -> Result<(), String> {
    let active = state["agents"]
        .as_array()
        .map(|a| a.iter().filter(|a| a["state"] == "ACTIVE").count())
        .unwrap_or(0);
    if active >= n {
        Ok(())
    } else {
        Err(format!("{active} of {n} agents active"))
    }
}

/// Prepares a cluster of `masters` without starting anything.
pub fn prepare(masters: u64, args: &[&str], proxied: bool) -> TestCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec =
        ClusterSpec::on_free_ports(binary(), dir.path().to_path_buf(), masters).expect("ports");
    spec.master_args = args.iter().map(|s| s.to_string()).collect();
    spec.proxied = proxied;
    TestCluster {
        cluster: LocalCluster::new(spec).expect("cluster"),
        dir: Some(dir),
    }
}

/// Output of one `drover` CLI run.
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `drover ARGS…` to completion (bounded by a timeout).
pub async fn cli(args: &[&str]) -> CliOutput {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(binary())
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("CLI finished in time")
    .expect("CLI ran");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// GET `http://addr/path`, returning status and body.
pub async fn try_http_get(addr: &str, path: &str) -> Result<(u16, String), reqwest::Error> {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// GET `http://addr/path` from a master that must be up.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    try_http_get(addr, path).await.expect("HTTP request")
}

/// The value of metric `name` (with exactly these labels, e.g. `{reason="x"}`, or "") on `addr`;
/// None when it is absent or the master does not answer.
pub async fn metric(addr: &str, name_and_labels: &str) -> Option<f64> {
    let (_, body) = try_http_get(addr, "/metrics").await.ok()?;
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name_and_labels).then(|| v.parse().ok()).flatten()
    })
}

/// The directory of task `task` under an agent's work directory (any framework), if any:
/// where it runs, or, once its end is acknowledged, where the sandbox collector moved it.
pub fn task_dir(work_dir: &std::path::Path, task: &str) -> Option<PathBuf> {
    let under = |dir: &str, tail: &[&str]| {
        std::fs::read_dir(work_dir.join(dir))
            .ok()?
            .flatten()
            .map(|f| tail.iter().fold(f.path(), |p, t| p.join(t)))
            .find(|p| p.is_dir())
    };
    under("frameworks", &["tasks", task]).or_else(|| under("completed", &[task]))
}

/// Whether process `pid` exists (zombies count as gone).
pub fn process_alive(pid: i32) -> bool {
    drover_agent::recovery::is_alive(pid)
}

/// The pid written to `file` (by a task's `echo $$ > file`).
pub fn read_pid(file: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The state of task `task` and of its agent in the `/v1/state` of the master at `addr`.
pub async fn task_in_state(addr: &str, task: &str) -> Result<(String, String), String> {
    let state = state_at(addr).await?;
    let t = state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["id"] == task)
        .ok_or_else(|| format!("no task {task} in the registry"))?;
    let agent = t["agent_id"].as_str().unwrap_or_default();
    let agent_state = state["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == agent)
        .and_then(|a| a["state"].as_str())
        .unwrap_or("?");
    Ok((
        t["state"].as_str().unwrap_or("?").to_string(),
        agent_state.to_string(),
    ))
}

/// The test virtualenv's Python (`DROVER_PYTHON`, made by `scripts/setup.sh`), for the tests
/// that drive Drover with real clients from PyPI. Without it a test says it skips and returns
/// None, unless `DROVER_REQUIRE_PYTHON=1` (as the test command sets), where it fails.
pub fn test_python() -> Option<String> {
    match std::env::var("DROVER_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var("DROVER_REQUIRE_PYTHON").as_deref() != Ok("1"),
                "DROVER_PYTHON is not set: run scripts/setup.sh (it makes the clients' virtualenv)"
            );
            eprintln!("skipped: DROVER_PYTHON is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// Runs `python script args…` to its end within `timeout`; fails the test with the script's
/// output unless it exits 0 and its stdout starts with "ok". Returns its stdout.
pub async fn run_python_ok(python: &str, script: &str, args: &[&str], timeout: Duration) -> String {
    run_python_ok_with(python, script, args, &[], timeout).await
}

/// [`run_python_ok`] with `env` added to the script's environment.
pub async fn run_python_ok_with(
    python: &str,
    script: &str,
    args: &[&str],
    env: &[(&str, &std::path::Path)],
    timeout: Duration,
) -> String {
    let run = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} did not finish within {timeout:?}"))
        .expect("run the script");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("ok"),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// A client script that talks with the test: it prints lines (some asking the test to do
/// something, such as killing a process), reads the test's answers on stdin, and ends by
/// printing a line starting with "ok".
pub struct Conversation {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    /// What it printed so far.
    pub out: String,
}

impl Conversation {
    /// Starts `python script args…`.
    pub fn start(python: &str, script: &str, args: &[&str]) -> Conversation {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run the client script");
        let stdin = child.stdin.take().expect("stdin");
        let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let mut r = tokio::io::BufReader::new(stderr);
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut r, &mut s).await;
            s
        });
        Conversation {
            child,
            stdin,
            lines,
            stderr,
            out: String::new(),
        }
    }

    /// The script's next line (kept in `out`), `None` once it closed its output.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = self
            .lines
            .next_line()
            .await
            .expect("read the script's output")?;
        self.out.push_str(&line);
        self.out.push('\n');
        Some(line)
    }

    /// Answers the script with one line.
    pub async fn say(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the script");
        self.stdin.flush().await.expect("flush");
    }

    /// Waits for the script to end (its lines all read) and checks that it printed "ok";
    /// `talked` is the outcome of the conversation, `None` when it ran out of time.
    pub async fn finish(mut self, talked: Option<()>) -> String {
        let status = match talked {
            Some(()) => Some(self.child.wait().await.expect("the script ends")),
            None => None,
        };
        let err = match tokio::time::timeout(Duration::from_secs(5), self.stderr).await {
            Ok(Ok(s)) => s,
            _ => String::new(),
        };
        let out = self.out;
        let Some(status) = status else {
            panic!("the script timed out:\n{out}\n{err}");
        };
        assert!(
            status.success() && out.lines().any(|l| l.starts_with("ok")),
            "the script failed ({status}):\n{out}\n{err}"
        );
        out
    }
}

/// The container tests' image (built locally once per machine), or `None` after saying why
/// the test is skipped here (no Docker engine that answers, or no static busybox).
pub async fn docker_image_or_skip() -> Option<&'static str> {
    match drover_agent::testing::docker_test_image().await {
        Ok(image) => Some(image),
        Err(why) => {
            eprintln!("skipped: no usable Docker engine here ({why})");
            None
        }
    }
}

/// Removes every container of task `task_id`: an ended one stays until its sandbox is
/// collected (days, with the agents' default), so tests remove their own.
pub async fn remove_task_containers(task_id: &str) {
    let _ = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker rm -f $(docker ps -aq --filter label=drover.task_id={task_id}) >/dev/null 2>&1"
        ))
        .status()
        .await;
}

/// [`start_tls`] with arguments for every master too.
pub async fn start_tls_with(
    masters: u64,
    master_args: &[&str],
    agents: usize,
    agent_args: &[&str],
) -> TestCluster {
    start_agents_with(masters, master_args, agents, agent_args, agents, |spec| {
        spec.tls = true
    })
    .await
}

/// Starts `masters` masters and `agents` agents (with `agent_args`) with mutual TLS on every
/// connection (`ClusterSpec::tls`), and waits until the leader has them all active, asked
/// over HTTPS as the cluster's harness.
pub async fn start_tls(masters: u64, agents: usize, agent_args: &[&str]) -> TestCluster {
    start_agents_with(masters, &[], agents, agent_args, agents, |spec| {
        spec.tls = true
    })
    .await
}

/// `GET path` of the master or agent at `addr` over mutual TLS, as the cluster's harness (an
/// operator): the status and the body.
pub async fn https_get(c: &LocalCluster, addr: &str, path: &str) -> Result<(u16, String), String> {
    let certs = c.certs().ok_or("the cluster runs without TLS")?;
    let harness = certs.harness().map_err(|e| e.to_string())?;
    let http = drover_chaos::http::Http::tls(
        &harness.client(&[drover_tls::Role::Master, drover_tls::Role::Agent]),
    )?;
    let resp = http
        .client()
        .get(http.url(addr, path))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let code = resp.status().as_u16();
    Ok((code, resp.text().await.map_err(|e| e.to_string())?))
}
