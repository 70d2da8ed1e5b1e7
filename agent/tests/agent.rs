//! End-to-end tests of the agent: a real agent (and simulated ones) against the fake master's
//! agent registry, driven through its gRPC and HTTP port, with real executor processes.
//!
//! The executor is this very test program: it runs without the libtest harness, and when
//! started as `<this program> executor --task-dir … --agent-socket …` (the agent's
//! `--executor-command`), it is `drover executor`. Otherwise it runs the scenarios below in
//! order and fails on the first assertion that does not hold.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use drover_agent::config::AgentConfig;
use drover_agent::ids::{FrameworkId, TaskId};
use drover_agent::layout::{Layout, TaskDir};
use drover_agent::testing::{wait_for, ExecutorClient, FakeMaster};
use drover_agent::{run_with_config, AgentError, ExecutorArgs, Stop};
use drover_proto::v1::agent_client::AgentClient;
use drover_proto::v1::{self, CommandInfo, KillTaskRequest, RunTaskRequest, TaskInfo};
use drover_resources::{Attributes, Resources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);

#[path = "agent_scenarios/docker.rs"]
mod docker;

type Scenario = fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

#[derive(Parser)]
struct ExecutorCli {
    #[command(flatten)]
    args: ExecutorArgs,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("executor") {
        let cli = ExecutorCli::parse_from(
            std::iter::once(args[0].clone()).chain(args[2..].iter().cloned()),
        );
        let code = match rt.block_on(drover_agent::run_executor(cli.args)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("executor: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("real_agent_runs_kills_and_survives_a_restart", || {
            Box::pin(real_agent())
        }),
        (
            "an_executor_that_cannot_start_is_reported_by_the_agent",
            || Box::pin(executor_cannot_start()),
        ),
        ("simulated_agents_register_and_run_timers", || {
            Box::pin(simulated_agents())
        }),
        (
            "recovery_survives_corrupt_checkpoints_and_cleans_up_on_request",
            || Box::pin(recovery_corrupt_and_cleanup()),
        ),
        (
            "a_custom_executor_subscribes_runs_its_tasks_and_is_shut_down_when_idle",
            || Box::pin(custom_executor()),
        ),
        (
            "the_executor_api_refuses_bad_calls_with_the_documented_code",
            || Box::pin(executor_api_refusals()),
        ),
        (
            "a_custom_executor_is_taken_back_after_an_agent_restart",
            || Box::pin(custom_executor_across_a_restart()),
        ),
        ("docker_containers_run_report_and_stop", || {
            Box::pin(docker::containers_run_report_and_stop())
        }),
        ("docker_containers_outlive_an_agent_restart", || {
            Box::pin(docker::containers_outlive_an_agent_restart())
        }),
    ];
    // Opt-in (named exactly): a load check rather than a correctness test.
    if filter.as_deref() == Some("scale_10k_simulated_agents") {
        rt.block_on(scale_10k());
        return;
    }
    for (name, scenario) in scenarios {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        println!("test {name} ...");
        rt.block_on(scenario());
        println!("test {name} ... ok");
    }
}

/// The process-wide recorder every in-process agent of this binary records into (one per
/// process, as in the agent binary), so that its `/metrics` tell what the scenarios did.
fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("the test binary's one metrics recorder")
        })
        .clone()
}

/// The value of the sample `series` (a name with its labels, as rendered:
/// `drover_agent_containers{state="running"}`) in a Prometheus text page.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

struct Agent {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    fn start(config: AgentConfig) -> Agent {
        let handle = prometheus();
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(run_with_config(config, handle, async move {
            let _ = rx.await;
            Stop::KeepTasks
        }));
        Agent {
            stop: Some(stop),
            handle,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("agent stops in time")
            .expect("agent task")
            .expect("agent ran cleanly");
    }
}

fn config(work_dir: &Path, master: &str, simulate: usize, executor: Vec<String>) -> AgentConfig {
    AgentConfig {
        masters: vec![master.to_string()],
        work_dir: work_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        advertise: None,
        hostname: "test-host".into(),
        resources: "cpus:2;mem:1024;ports:[31000-31010]"
            .parse::<Resources>()
            .expect("resources"),
        attributes: "rack:a".parse::<Attributes>().expect("attributes"),
        heartbeat_interval: Duration::from_millis(200),
        executor_grace: Duration::from_secs(3),
        simulate,
        executor_command: executor.into_iter().map(Into::into).collect(),
        recover: drover_agent::recovery::RecoverMode::Reconnect,
        master_bind_ip: None,
        tls: None,
        gc_delay: Duration::from_secs(7 * 24 * 3600),
        gc_disk_headroom: 0.1,
        disk_watch_interval: Duration::from_secs(60),
        executor_registration_timeout: Duration::from_secs(60),
        executor_reregistration_timeout: Duration::from_secs(5),
        executor_shutdown_grace: Duration::from_secs(2),
        executor_idle_timeout: Duration::from_secs(1),
        docker: drover_agent::config::DockerSettings::disabled(),
        // As the test's own user: tasks here name their sandbox by absolute path under a 0700
        // temporary directory (switching users: tests/users.rs and the executor's tests).
        users: drover_agent::users::UserPolicy::as_agent(),
    }
}

fn this_program_as_executor() -> Vec<String> {
    let exe = std::env::current_exe().expect("current exe");
    vec![exe.display().to_string(), "executor".into()]
}

fn task(id: &str, shell: &str) -> TaskInfo {
    TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: "cpus:0.1;mem:32;ports:[31000-31000]"
            .parse::<Resources>()
            .expect("resources")
            .to_proto(),
        command: Some(CommandInfo {
            shell: shell.into(),
            environment: Default::default(),
            ..Default::default()
        }),
        kill_grace_seconds: 0.0,
        health_check: None,
        ..Default::default()
    }
}

async fn registrations(fake: &FakeMaster, n: usize) -> Vec<v1::AgentInfo> {
    wait_for(DEADLINE, "registrations", || async {
        fake.state().registrations.len() >= n
    })
    .await;
    fake.state()
        .registrations
        .iter()
        .filter_map(|r| r.agent.clone())
        .collect()
}

async fn connect(addr: &str) -> AgentClient<tonic::transport::Channel> {
    AgentClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to the agent")
}

/// A health check of `shell` (with `env`) every 0.3 s, that has the task killed after two
/// failures in a row; its 10 s grace period covers the task's start.
fn health_check(shell: &str, env: &[(&str, &str)]) -> v1::HealthCheck {
    v1::HealthCheck {
        delay_seconds: 0.0,
        interval_seconds: 0.3,
        timeout_seconds: 5.0,
        consecutive_failures: 2,
        grace_period_seconds: 10.0,
        command: Some(CommandInfo {
            shell: shell.into(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }),
    }
}

/// `task`'s updates said: started, running, healthy, unhealthy, then killed for it.
fn assert_healthy_then_killed_unhealthy(fake: &FakeMaster, task: &str) {
    let reports: Vec<(v1::TaskState, Option<bool>, String)> = fake
        .state()
        .applied
        .iter()
        .filter(|s| s.task_id == task)
        .map(|s| (s.state(), s.healthy, s.reason.clone()))
        .collect();
    let r = |state, healthy: Option<bool>, reason: &str| (state, healthy, reason.to_string());
    assert_eq!(
        reports,
        vec![
            r(v1::TaskState::TaskStarting, None, "starting"),
            r(v1::TaskState::TaskRunning, None, "running"),
            r(v1::TaskState::TaskRunning, Some(true), "task_healthy"),
            r(v1::TaskState::TaskRunning, Some(false), "task_unhealthy"),
            r(v1::TaskState::TaskKilled, Some(false), "task_unhealthy"),
        ],
        "{task}"
    );
}

fn states(fake: &FakeMaster, task: &str) -> Vec<v1::TaskState> {
    fake.applied_for(task)
        .into_iter()
        .map(|(s, _)| v1::TaskState::try_from(s).expect("state"))
        .collect()
}

async fn wait_state(fake: &FakeMaster, task: &str, state: v1::TaskState) {
    wait_for(DEADLINE, &format!("{task} {state:?}"), || async {
        states(fake, task).contains(&state)
    })
    .await;
}

/// Waits until the master has been told that executor `executor` ended SIGKILLed.
async fn wait_executor_killed(fake: &FakeMaster, executor: &str, what: &str) {
    wait_for(DEADLINE, what, || async {
        fake.state()
            .executor_exits
            .iter()
            .any(|(e, status)| e == executor && status.is_some_and(|s| s & 0x7f == 9))
    })
    .await;
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// A task's directory: where it runs, or where the sandbox collector moved it once the
/// master acknowledged its end.
fn task_dir(work_dir: &Path, task: &str) -> TaskDir {
    let layout = Layout::new(work_dir);
    let live = layout.task_dir(
        &FrameworkId::new("fw-1").expect("id"),
        &TaskId::new(task).expect("id"),
    );
    let moved = layout.completed_dir().join("fw-1").join(task);
    TaskDir(if !live.exists() && moved.exists() {
        moved
    } else {
        live
    })
}

/// Waits until the agent under `work_dir` has written the id the master gave it.
async fn wait_id_persisted(work_dir: &Path) {
    let id_file = work_dir.join("meta/agent_id");
    wait_for(DEADLINE, "the agent id persisted", || {
        let there = id_file.exists();
        async move { there }
    })
    .await;
}

/// Waits until the agent at `addr` says it is registered (a master's registration request
/// seen by the fake is not yet its answer processed: RunTask is refused until then).
async fn wait_registered(addr: &str) {
    wait_for(DEADLINE, "registered in /health", || async {
        http_get(addr, "/health").await.contains("\"registered\":1")
    })
    .await;
}

/// A real agent (this program as its executor) in a fresh work directory, registered with a
/// fresh fake master: (work dir holder, work dir, fake, master address, agent, registration).
async fn real_agent_with_fake_master() -> (
    tempfile::TempDir,
    PathBuf,
    FakeMaster,
    String,
    Agent,
    v1::AgentInfo,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let work_dir: PathBuf = std::fs::canonicalize(dir.path()).expect("canonical");
    let fake = FakeMaster::default();
    let master = fake.serve().await;
    let agent = Agent::start(config(&work_dir, &master, 0, this_program_as_executor()));
    let info = registrations(&fake, 1).await.remove(0);
    (dir, work_dir, fake, master, agent, info)
}

async fn real_agent() {
    let (_dir, work_dir, fake, master, agent, info) = real_agent_with_fake_master().await;
    assert_eq!(info.id, "", "first registration has no id");
    assert_eq!(info.hostname, "test-host");
    let agent_id = "agent-1";
    wait_id_persisted(&work_dir).await;
    assert_eq!(
        std::fs::read_to_string(work_dir.join("meta/agent_id"))
            .expect("agent_id file")
            .trim(),
        agent_id
    );
    let addr = info.addr.clone();
    let mut client = connect(&addr).await;

    // HTTP on the same port.
    let health = http_get(&addr, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"simulated\":false"), "{health}");
    wait_registered(&addr).await;
    assert!(http_get(&addr, "/metrics")
        .await
        .starts_with("HTTP/1.1 200"));

    // A task that fails: STARTING, RUNNING, FAILED with its exit code; its output kept.
    let run = |t: TaskInfo| RunTaskRequest {
        agent_id: agent_id.into(),
        framework_id: "fw-1".into(),
        tasks: vec![t],
        framework_name: String::new(),
    };
    client
        .run_task(run(task("t1", "echo hello $PORT0; exit 3")))
        .await
        .expect("RunTask");
    wait_state(&fake, "t1", v1::TaskState::TaskFailed).await;
    assert_eq!(
        states(&fake, "t1"),
        vec![
            v1::TaskState::TaskStarting,
            v1::TaskState::TaskRunning,
            v1::TaskState::TaskFailed
        ]
    );
    let failed = fake
        .state()
        .applied
        .iter()
        .find(|s| s.task_id == "t1" && s.state == v1::TaskState::TaskFailed as i32)
        .cloned()
        .expect("failed update");
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(failed.source, v1::StatusSource::SourceExecutor as i32);
    assert_eq!(failed.agent_id, agent_id);
    let t1 = task_dir(&work_dir, "t1");
    // The sandbox collector may move the directory at any moment once the end is
    // acknowledged (a rename): each file is looked for where it ran, then where it went.
    let moved = Layout::new(&work_dir)
        .completed_dir()
        .join("fw-1")
        .join("t1");
    let stdout = std::fs::read_to_string(t1.sandbox().join("stdout"))
        .or_else(|_| std::fs::read_to_string(moved.join("sandbox").join("stdout")))
        .expect("stdout");
    assert_eq!(stdout, "hello 31000\n");
    // The same through the agent's /files, by the sandbox's path; nothing outside it.
    let sandbox_path = "frameworks/fw-1/tasks/t1/sandbox/stdout";
    let read = http_get(&addr, &format!("/files/read?path={sandbox_path}&offset=0")).await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(
        read.contains(r#"{"data":"hello 31000\n","offset":0}"#),
        "{read}"
    );
    let download = http_get(&addr, &format!("/files/download?path={sandbox_path}")).await;
    assert!(download.starts_with("HTTP/1.1 200"), "{download}");
    assert!(download.ends_with("\r\n\r\nhello 31000\n"), "{download}");
    let outside = http_get(
        &addr,
        "/files/read?path=frameworks/fw-1/tasks/t1/task.json&offset=0",
    )
    .await;
    assert!(outside.starts_with("HTTP/1.1 400"), "{outside}");
    for f in [
        t1.task_json(),
        t1.executor_pid(),
        t1.updates_log(),
        t1.command_pid(),
    ] {
        let name = f.file_name().expect("a file name");
        assert!(
            f.exists() || moved.join(name).exists(),
            "{} missing (and not under {})",
            f.display(),
            moved.display()
        );
    }
    // A task with a health check: its executor reports the health when it changes, and
    // kills the task after two failures in a row (the grace period covers its start).
    let mut checked = task("hc", "touch ok; sleep 2; rm ok; sleep 60");
    checked.health_check = Some(health_check("test -f ok", &[]));
    client.run_task(run(checked)).await.expect("RunTask hc");
    wait_state(&fake, "hc", v1::TaskState::TaskKilled).await;
    assert_healthy_then_killed_unhealthy(&fake, "hc");

    // RunTask again: idempotent, nothing new.
    client
        .run_task(run(task("t1", "echo again")))
        .await
        .expect("RunTask again");
    assert_eq!(fake.applied_for("t1").len(), 3);

    // Refusals name the field.
    let e = client
        .run_task(RunTaskRequest {
            agent_id: "someone-else".into(),
            ..run(task("t9", "true"))
        })
        .await
        .expect_err("wrong agent");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("agent_id"), "{}", e.message());
    let mut no_command = task("t9", "true");
    no_command.command = None;
    let e = client
        .run_task(run(no_command))
        .await
        .expect_err("no command");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("tasks[0].command"), "{}", e.message());
    let e = client
        .kill_task(KillTaskRequest {
            agent_id: agent_id.into(),
            framework_id: "fw-1".into(),
            task_id: "nope".into(),
            grace_seconds: 0.0,
        })
        .await
        .expect_err("unknown task");
    assert_eq!(e.code(), Code::NotFound);

    // A long task survives the agent's restart, and the next agent can kill it.
    client
        .run_task(run(task("t2", "sleep 60")))
        .await
        .expect("RunTask t2");
    wait_state(&fake, "t2", v1::TaskState::TaskRunning).await;
    let t2 = task_dir(&work_dir, "t2");
    let executor_pid: i32 = std::fs::read_to_string(t2.executor_pid())
        .expect("executor.pid")
        .trim()
        .parse()
        .expect("pid");
    agent.stop().await;
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(executor_pid), None).is_ok(),
        "the executor died with the agent"
    );
    let agent = Agent::start(config(&work_dir, &master, 0, this_program_as_executor()));
    let infos = registrations(&fake, 2).await;
    assert_eq!(infos[1].id, agent_id, "re-registers under its stored id");
    let mut client = connect(&infos[1].addr).await;
    wait_for(DEADLINE, "the new agent to accept requests", || {
        let mut c = client.clone();
        async move {
            c.kill_task(KillTaskRequest {
                agent_id: agent_id.into(),
                framework_id: "fw-1".into(),
                task_id: "t2".into(),
                grace_seconds: 1.0,
            })
            .await
            .is_ok()
        }
    })
    .await;
    wait_state(&fake, "t2", v1::TaskState::TaskKilled).await;
    let _ = &mut client;
    agent.stop().await;
}

async fn executor_cannot_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeMaster::default();
    let master = fake.serve().await;
    let agent = Agent::start(config(
        dir.path(),
        &master,
        0,
        vec!["/nonexistent/drover".into()],
    ));
    let info = registrations(&fake, 1).await.remove(0);
    let mut client = connect(&info.addr).await;
    wait_for(DEADLINE, "registered", || async {
        fake.state().heartbeats > 0
    })
    .await;
    client
        .run_task(RunTaskRequest {
            agent_id: "agent-1".into(),
            framework_id: "fw-1".into(),
            tasks: vec![task("t1", "true")],
            framework_name: String::new(),
        })
        .await
        .expect("RunTask");
    wait_state(&fake, "t1", v1::TaskState::TaskFailed).await;
    let s = fake.state().applied[0].clone();
    assert_eq!(s.source, v1::StatusSource::SourceAgent as i32);
    assert_eq!(s.reason, "executor_failed");
    agent.stop().await;
}

/// The pid a task wrote to `sandbox/pid`.
fn task_pid(work_dir: &Path, task: &str) -> i32 {
    std::fs::read_to_string(task_dir(work_dir, task).sandbox().join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

fn alive(pid: i32) -> bool {
    drover_agent::recovery::is_alive(pid)
}

async fn recovery_corrupt_and_cleanup() {
    let (_dir, work_dir, fake, master, agent, info) = real_agent_with_fake_master().await;
    let mut client = connect(&info.addr).await;
    wait_id_persisted(&work_dir).await;
    wait_registered(&info.addr).await;
    for t in ["c1", "c2", "c3"] {
        client
            .run_task(RunTaskRequest {
                agent_id: "agent-1".into(),
                framework_id: "fw-1".into(),
                tasks: vec![task(t, "echo $$ > pid; exec sleep 600")],
                framework_name: String::new(),
            })
            .await
            .expect("RunTask");
    }
    for t in ["c1", "c2", "c3"] {
        wait_state(&fake, t, v1::TaskState::TaskRunning).await;
    }
    let pids: Vec<i32> = ["c1", "c2", "c3"]
        .iter()
        .map(|t| task_pid(&work_dir, t))
        .collect();
    agent.stop().await;

    // While the agent is down: c1's task.json is destroyed, and a line in the middle of c2's
    // update log is damaged.
    std::fs::write(task_dir(&work_dir, "c1").task_json(), b"{ not json").expect("corrupt");
    let log = task_dir(&work_dir, "c2").updates_log();
    let text = std::fs::read_to_string(&log).expect("c2 log");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(lines.len() >= 2, "{text}");
    lines.insert(1, "deadbeef {\"record\":\"garbage\"".into());
    std::fs::write(&log, lines.join("\n") + "\n").expect("damage");

    let agent = Agent::start(config(&work_dir, &master, 0, this_program_as_executor()));
    let report = wait_for_registration_report(&fake, 2).await;
    // c1 cannot be read: failed and stopped. c2 and c3 are re-attached and reported running.
    wait_state(&fake, "c1", v1::TaskState::TaskFailed).await;
    let failed = fake
        .state()
        .applied
        .iter()
        .find(|s| s.task_id == "c1" && s.state == v1::TaskState::TaskFailed as i32)
        .cloned()
        .expect("c1 failed");
    assert_eq!(failed.reason, "checkpoint_corrupt", "{failed:?}");
    wait_for(DEADLINE, "c1's process is killed", || async {
        !alive(pids[0])
    })
    .await;
    for (t, pid) in [("c2", pids[1]), ("c3", pids[2])] {
        assert!(alive(pid), "{t} runs on");
        assert_eq!(
            states(&fake, t),
            vec![v1::TaskState::TaskStarting, v1::TaskState::TaskRunning],
            "{t}: re-attached, not started again"
        );
        assert!(
            report
                .iter()
                .any(|r| r.task_id == t && r.state == v1::TaskState::TaskRunning as i32),
            "{t} reported running: {report:?}"
        );
    }
    agent.stop().await;

    // --recover cleanup: everything an earlier life started is killed and reported.
    let mut cleanup = config(&work_dir, &master, 0, this_program_as_executor());
    cleanup.recover = drover_agent::recovery::RecoverMode::Cleanup;
    let agent = Agent::start(cleanup);
    for (t, pid) in [("c2", pids[1]), ("c3", pids[2])] {
        wait_state(&fake, t, v1::TaskState::TaskKilled).await;
        let killed = fake
            .state()
            .applied
            .iter()
            .find(|s| s.task_id == t && s.state == v1::TaskState::TaskKilled as i32)
            .cloned()
            .expect("killed");
        assert_eq!(killed.reason, "agent_cleanup");
        wait_for(DEADLINE, "cleaned task's process gone", || async {
            !alive(pid)
        })
        .await;
    }
    agent.stop().await;
}

/// The task report of registration number `n` (1-based) once it arrived.
async fn wait_for_registration_report(fake: &FakeMaster, n: usize) -> Vec<v1::ReportedTask> {
    wait_for(DEADLINE, "registration", || async {
        fake.state().registrations.len() >= n
    })
    .await;
    fake.state().registrations[n - 1].tasks.clone()
}

async fn simulated_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeMaster::default();
    let master = fake.serve().await;
    let agent = Agent::start(config(dir.path(), &master, 3, vec![]));
    let infos = registrations(&fake, 3).await;
    let mut hosts: Vec<String> = infos.iter().map(|i| i.hostname.clone()).collect();
    hosts.sort();
    assert_eq!(hosts, vec!["sim-0", "sim-1", "sim-2"]);
    for i in &infos {
        let attrs = Attributes::from_proto(&i.attributes).expect("attributes");
        assert_eq!(attrs.to_string(), "rack:a;simulated:true");
    }
    // Each writes the id the master gave it once the reply is in, just after the fake master
    // recorded the registration.
    wait_for(
        DEADLINE,
        "every simulated agent's id checkpointed",
        || async { (0..3).all(|i| dir.path().join(format!("sim-{i}/meta/agent_id")).exists()) },
    )
    .await;
    let mut client = connect(&infos[0].addr).await;
    let health = http_get(&infos[0].addr, "/health").await;
    assert!(health.contains("\"simulated\":true"), "{health}");
    // Each simulated agent answers for its own id.
    wait_for(DEADLINE, "every simulated agent routable", || {
        let mut c = client.clone();
        async move {
            let mut ok = true;
            for n in 1..=3 {
                ok &= c
                    .run_task(RunTaskRequest {
                        agent_id: format!("agent-{n}"),
                        framework_id: "fw-1".into(),
                        tasks: vec![task(&format!("s{n}"), "sleep 0.05")],
                        framework_name: String::new(),
                    })
                    .await
                    .is_ok();
            }
            ok
        }
    })
    .await;
    for n in 1..=3 {
        wait_state(&fake, &format!("s{n}"), v1::TaskState::TaskFinished).await;
    }
    let agents: std::collections::BTreeSet<String> = fake
        .state()
        .applied
        .iter()
        .map(|u| u.agent_id.clone())
        .collect();
    assert_eq!(agents.len(), 3);
    let _ = &mut client;
    agent.stop().await;
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// 10 000 simulated agents in this process against the fake master: all register within the
/// deadline, and heartbeat; prints the time taken, memory and threads.
async fn scale_10k() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeMaster::default();
    let master = fake.serve().await;
    let started = std::time::Instant::now();
    let mut c = config(dir.path(), &master, N, vec![]);
    c.heartbeat_interval = Duration::from_secs(1);
    let agent = Agent::start(c);
    wait_for(Duration::from_secs(120), "10k registrations", || async {
        fake.state().registrations.len() >= N
    })
    .await;
    let registered_after = started.elapsed();
    let beats = fake.state().heartbeats;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rate = (fake.state().heartbeats - beats) as f64 / 5.0;
    println!(
        "{N} simulated agents registered in {registered_after:?}; {rate:.0} heartbeats/s; {}; {}",
        proc_status("VmRSS"),
        proc_status("Threads")
    );
    assert!(rate > N as f64 * 0.5, "heartbeats too slow: {rate}/s");
    agent.stop().await;
}

/// A task of a custom executor: the executor's command writes its pid and then its
/// environment into its sandbox (each whole, by a rename), then sleeps (the test plays the
/// executor over HTTP).
fn custom_task(id: &str, executor: &str) -> TaskInfo {
    TaskInfo {
        command: None,
        executor: Some(v1::ExecutorInfo {
            executor_id: executor.into(),
            name: "test executor".into(),
            command: Some(CommandInfo {
                shell: r#"echo $$ > "$MESOS_SANDBOX/pid.tmp"; mv "$MESOS_SANDBOX/pid.tmp" "$MESOS_SANDBOX/pid"; env > "$MESOS_SANDBOX/env.tmp"; mv "$MESOS_SANDBOX/env.tmp" "$MESOS_SANDBOX/env"; exec sleep 600"#.into(),
                environment: [("MINE".to_string(), "1".to_string())].into_iter().collect(),
                ..Default::default()
            }),
            resources: "cpus:0.1;mem:32"
                .parse::<Resources>()
                .expect("resources")
                .to_proto(),
            shutdown_grace_seconds: 0.0,
            data: b"executor data".to_vec(),
            charged: false,
        }),
        data: b"task data".to_vec(),
        ..task(id, "unused")
    }
}

/// The pid the command of executor `e`'s (first) run wrote, once it wrote it: the test plays
/// the executor, so its subscription says nothing of the command's progress.
async fn executor_pid(work_dir: &Path, e: &str) -> i32 {
    let read = || {
        runs_of(work_dir, e)
            .first()
            .and_then(|r| std::fs::read_to_string(r.join("sandbox/pid")).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
    };
    wait_for(DEADLINE, "the executor's pid", || {
        let there = read().is_some();
        async move { there }
    })
    .await;
    read().expect("a pid")
}

/// The runs of executor `e` of framework fw-1.
fn runs_of(work_dir: &Path, e: &str) -> Vec<PathBuf> {
    let dir = work_dir
        .join("frameworks/fw-1/executors")
        .join(e)
        .join("runs");
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn executor_call(kind: &str, executor: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut call = serde_json::json!({
        "type": kind,
        "executor_id": {"value": executor},
        "framework_id": {"value": "fw-1"},
    });
    if let (Some(c), serde_json::Value::Object(extra)) = (call.as_object_mut(), extra) {
        c.extend(extra);
    }
    call
}

fn update_call(executor: &str, task: &str, state: &str, uuid: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    executor_call(
        "UPDATE",
        executor,
        serde_json::json!({"update": {"status": {
            "task_id": {"value": task},
            "state": state,
            "source": "SOURCE_EXECUTOR",
            "timestamp": 1700000000,
            "uuid": base64::engine::general_purpose::STANDARD.encode(uuid),
        }}}),
    )
}

async fn custom_executor() {
    let (_dir, work_dir, fake, _master, agent, info) = real_agent_with_fake_master().await;
    let addr = info.addr.clone();
    wait_registered(&addr).await;
    let mut client = connect(&addr).await;
    let run = |t: TaskInfo| RunTaskRequest {
        agent_id: "agent-1".into(),
        framework_id: "fw-1".into(),
        tasks: vec![t],
        framework_name: "test framework".into(),
    };
    client
        .run_task(run(custom_task("t1", "e1")))
        .await
        .expect("RunTask t1");
    // The executor starts with Mesos's environment, in a process group of its own.
    wait_for(DEADLINE, "the executor's environment", || {
        let there = runs_of(&work_dir, "e1")
            .first()
            .is_some_and(|r| r.join("sandbox/env").exists());
        async move { there }
    })
    .await;
    let run_dir = runs_of(&work_dir, "e1").remove(0);
    let sandbox = run_dir.join("sandbox");
    let env = std::fs::read_to_string(sandbox.join("env")).expect("env");
    for var in [
        format!("MESOS_AGENT_ENDPOINT={addr}"),
        "MESOS_FRAMEWORK_ID=fw-1".to_string(),
        "MESOS_EXECUTOR_ID=e1".to_string(),
        format!("MESOS_DIRECTORY={}", sandbox.display()),
        format!("MESOS_SANDBOX={}", sandbox.display()),
        "MESOS_CHECKPOINT=1".to_string(),
        "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=2000ms".to_string(),
        "MESOS_AGENT_ID=agent-1".to_string(),
        "MINE=1".to_string(),
    ] {
        assert!(env.lines().any(|l| l == var), "{var} missing from\n{env}");
    }
    let pid: i32 = std::fs::read_to_string(sandbox.join("pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let pgid: i32 = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(2))
        .and_then(|g| g.parse().ok())
        .expect("pgid");
    assert_eq!(pgid, pid, "the executor leads a process group of its own");
    // The task's sandbox is the executor's.
    let t1 = task_dir(&work_dir, "t1");
    assert_eq!(
        std::fs::canonicalize(t1.sandbox()).expect("sandbox link"),
        std::fs::canonicalize(&sandbox).expect("sandbox")
    );

    let api = ExecutorClient::new(&addr);
    // Not subscribed yet: its calls are refused, nothing changes.
    let early = api
        .call(&update_call("e1", "t1", "TASK_RUNNING", &[7; 16]))
        .await;
    assert_eq!(early.status, 403, "{early:?}");
    assert!(early.body.contains("not subscribed"), "{early:?}");

    let wait = Duration::from_secs(20);
    let mut events = api
        .subscribe(&executor_call(
            "SUBSCRIBE",
            "e1",
            serde_json::json!({"subscribe": {"unacknowledged_tasks": [], "unacknowledged_updates": []}}),
        ))
        .await;
    assert_eq!(events.status, 200);
    let subscribed = events.next(wait).await.expect("SUBSCRIBED");
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    let s = &subscribed["subscribed"];
    assert_eq!(
        s["executor_info"]["executor_id"],
        serde_json::json!({"value": "e1"})
    );
    assert_eq!(
        s["framework_info"]["id"],
        serde_json::json!({"value": "fw-1"})
    );
    assert_eq!(s["framework_info"]["name"], "test framework");
    assert_eq!(
        s["agent_info"]["id"],
        serde_json::json!({"value": "agent-1"})
    );
    assert_eq!(
        s["container_id"]["value"],
        run_dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .as_ref()
    );
    assert_eq!(
        events.next(wait).await.expect("HEARTBEAT")["type"],
        "HEARTBEAT"
    );
    let launch = events.next_event(wait).await.expect("LAUNCH t1");
    assert_eq!(launch["type"], "LAUNCH", "{launch}");
    assert_eq!(launch["launch"]["task"]["task_id"]["value"], "t1");
    assert_eq!(
        launch["launch"]["task"]["data"], "dGFzayBkYXRh",
        "task data, base64"
    );
    assert_eq!(
        launch["launch"]["task"]["executor"]["executor_id"]["value"],
        "e1"
    );

    // A second task of the same executor goes to the same run.
    client
        .run_task(run(custom_task("t2", "e1")))
        .await
        .expect("RunTask t2");
    let launch = events.next_event(wait).await.expect("LAUNCH t2");
    assert_eq!(
        launch["launch"]["task"]["task_id"]["value"], "t2",
        "{launch}"
    );
    assert_eq!(runs_of(&work_dir, "e1").len(), 1, "one run for both tasks");

    // UPDATE: 202 once checkpointed, ACKNOWLEDGED with the executor's own uuid, and the
    // master gets it under that uuid.
    let uuid = *uuid::Uuid::new_v4().as_bytes();
    let answer = api
        .call(&update_call("e1", "t1", "TASK_RUNNING", &uuid))
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let ack = events.next_event(wait).await.expect("ACKNOWLEDGED");
    assert_eq!(ack["type"], "ACKNOWLEDGED", "{ack}");
    assert_eq!(ack["acknowledged"]["task_id"]["value"], "t1");
    {
        use base64::Engine as _;
        assert_eq!(
            ack["acknowledged"]["uuid"],
            base64::engine::general_purpose::STANDARD.encode(uuid)
        );
    }
    wait_state(&fake, "t1", v1::TaskState::TaskRunning).await;
    assert_eq!(
        fake.applied_for("t1"),
        vec![(
            v1::TaskState::TaskRunning as i32,
            uuid::Uuid::from_bytes(uuid).to_string()
        )]
    );

    // Messages both ways: the framework's arrives as MESSAGE; the executor's reaches the
    // master for its framework.
    client
        .send_framework_message(v1::FrameworkMessageRequest {
            agent_id: "agent-1".into(),
            framework_id: "fw-1".into(),
            executor_id: "e1".into(),
            data: b"to the executor".to_vec(),
        })
        .await
        .expect("SendFrameworkMessage");
    let m = events.next_event(wait).await.expect("MESSAGE");
    assert_eq!(m["type"], "MESSAGE", "{m}");
    {
        use base64::Engine as _;
        assert_eq!(
            m["message"]["data"],
            base64::engine::general_purpose::STANDARD.encode("to the executor")
        );
    }
    let answer = api
        .call(&executor_call(
            "MESSAGE",
            "e1",
            serde_json::json!({"message": {"data": "dG8gdGhlIGZyYW1ld29yaw=="}}),
        ))
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    wait_for(DEADLINE, "the executor's message at the master", || async {
        fake.state().executor_messages == vec![("e1".to_string(), b"to the framework".to_vec())]
    })
    .await;

    // Kills go to the executor, which reports the end.
    let kill = |t: &str| KillTaskRequest {
        agent_id: "agent-1".into(),
        framework_id: "fw-1".into(),
        task_id: t.into(),
        grace_seconds: 1.0,
    };
    client.kill_task(kill("t1")).await.expect("KillTask t1");
    let k = events.next_event(wait).await.expect("KILL t1");
    assert_eq!(k["type"], "KILL", "{k}");
    assert_eq!(k["kill"]["task_id"]["value"], "t1");
    let answer = api
        .call(&update_call(
            "e1",
            "t1",
            "TASK_KILLED",
            uuid::Uuid::new_v4().as_bytes(),
        ))
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(
        events.next_event(wait).await.expect("ack")["type"],
        "ACKNOWLEDGED"
    );
    let answer = api
        .call(&update_call(
            "e1",
            "t2",
            "TASK_FINISHED",
            uuid::Uuid::new_v4().as_bytes(),
        ))
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(
        events.next_event(wait).await.expect("ack")["type"],
        "ACKNOWLEDGED"
    );
    wait_state(&fake, "t1", v1::TaskState::TaskKilled).await;
    wait_state(&fake, "t2", v1::TaskState::TaskFinished).await;

    // Idle: SHUTDOWN, then (this executor ignores it) SIGKILL of its group after its grace;
    // the run ends and its stream with it.
    let shutdown = events.next_event(wait).await.expect("SHUTDOWN");
    assert_eq!(shutdown["type"], "SHUTDOWN", "{shutdown}");
    assert!(
        events.next_event(wait).await.is_none(),
        "the stream ends with the run"
    );
    let exit_status: i32 = std::fs::read_to_string(run_dir.join("exit_status"))
        .expect("exit_status")
        .trim()
        .parse()
        .expect("a status");
    assert_eq!(
        exit_status & 0x7f,
        9,
        "killed by SIGKILL (raw status {exit_status})"
    );
    wait_for(DEADLINE, "the executor's end at the master", || async {
        fake.state().executor_exits == vec![("e1".to_string(), Some(exit_status))]
    })
    .await;
    wait_for(DEADLINE, "the executor gone", || {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
        async move { gone }
    })
    .await;

    // A task of a new run that its executor never gets: killed at once.
    client
        .run_task(run(custom_task("t3", "e2")))
        .await
        .expect("RunTask t3");
    client.kill_task(kill("t3")).await.expect("KillTask t3");
    wait_state(&fake, "t3", v1::TaskState::TaskKilled).await;
    let reason = fake
        .state()
        .applied
        .iter()
        .find(|s| s.task_id == "t3")
        .map(|s| s.reason.clone());
    assert_eq!(reason.as_deref(), Some("killed_before_launch"));

    // An executor killed outright: its running task fails (executor_terminated), and the
    // framework hears of the end with the wait status.
    client
        .run_task(run(custom_task("t4", "e3")))
        .await
        .expect("RunTask t4");
    let mut e3 = running_executor(&api, "e3", "t4").await;
    wait_state(&fake, "t4", v1::TaskState::TaskRunning).await;
    let e3_pid = executor_pid(&work_dir, "e3").await;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(e3_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the executor's group");
    wait_state(&fake, "t4", v1::TaskState::TaskFailed).await;
    let failed = fake
        .state()
        .applied
        .iter()
        .find(|s| s.task_id == "t4" && s.state == v1::TaskState::TaskFailed as i32)
        .cloned()
        .expect("failed");
    assert_eq!(failed.reason, "executor_terminated");
    assert_eq!(failed.source, v1::StatusSource::SourceAgent as i32);
    wait_executor_killed(&fake, "e3", "e3's end at the master").await;
    assert!(
        e3.next_event(wait).await.is_none(),
        "the stream ends with the run"
    );
    agent.stop().await;
    let killed = tokio::task::spawn_blocking({
        let layout = Layout::new(&work_dir);
        move || drover_agent::recovery::kill_executor_runs(&layout)
    })
    .await
    .expect("kill");
    let _ = killed;
}

async fn executor_api_refusals() {
    let (_dir, work_dir, fake, _master, agent, info) = real_agent_with_fake_master().await;
    let addr = info.addr.clone();
    wait_registered(&addr).await;
    let mut client = connect(&addr).await;
    client
        .run_task(RunTaskRequest {
            agent_id: "agent-1".into(),
            framework_id: "fw-1".into(),
            tasks: vec![custom_task("t1", "e1")],
            framework_name: String::new(),
        })
        .await
        .expect("RunTask");
    let api = ExecutorClient::new(&addr);
    let heartbeat = executor_call("HEARTBEAT", "e1", serde_json::json!({}));
    let body = heartbeat.to_string();
    // (method, content type, body, expected code, what the answer says)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", None, vec![], 405, ""),
        ("POST", None, body.clone().into_bytes(), 400, "Content-Type"),
        (
            "POST",
            Some("text/plain"),
            body.clone().into_bytes(),
            415,
            "text/plain",
        ),
        (
            "POST",
            Some("application/json"),
            b"{not json".to_vec(),
            400,
            "",
        ),
        (
            "POST",
            Some("application/json"),
            executor_call("LAUNCH", "e1", serde_json::json!({}))
                .to_string()
                .into_bytes(),
            400,
            "LAUNCH",
        ),
        (
            "POST",
            Some("application/json"),
            executor_call("HEARTBEAT", "..", serde_json::json!({}))
                .to_string()
                .into_bytes(),
            400,
            "executor_id",
        ),
        (
            "POST",
            Some("application/json"),
            executor_call("HEARTBEAT", "nope", serde_json::json!({}))
                .to_string()
                .into_bytes(),
            400,
            "Executor cannot be found",
        ),
        (
            "POST",
            Some("application/json"),
            body.clone().into_bytes(),
            403,
            "not subscribed",
        ),
        (
            "POST",
            Some("application/json"),
            vec![b' '; drover_agent::executor_api::MAX_CALL_BYTES + 1],
            413,
            "",
        ),
    ];
    for (method, ct, body, code, says) in cases {
        let a = api.request(method, ct, &body).await.expect("answered");
        assert_eq!(a.status, code, "{method} {ct:?}: {a:?}");
        assert!(
            a.body.contains(says),
            "{method} {ct:?}: {a:?} should say {says:?}"
        );
    }
    // Subscribed: bad updates are refused, naming the field; the master sees none of them.
    wait_for(DEADLINE, "the run", || {
        let there = !runs_of(&work_dir, "e1").is_empty();
        async move { there }
    })
    .await;
    let mut events = api
        .subscribe(&executor_call(
            "SUBSCRIBE",
            "e1",
            serde_json::json!({"subscribe": {}}),
        ))
        .await;
    assert_eq!(events.status, 200);
    assert_eq!(
        events
            .next(Duration::from_secs(20))
            .await
            .expect("SUBSCRIBED")["type"],
        "SUBSCRIBED"
    );
    let a = api.call(&heartbeat).await;
    assert_eq!(a.status, 202, "{a:?}");
    for (call, says) in [
        (
            update_call("e1", "t1", "TASK_RUNNING", &[1; 15]),
            "update.status.uuid",
        ),
        (
            update_call("e1", "t1", "TASK_STAGING", &[1; 16]),
            "update.status.state",
        ),
        (
            update_call("e1", "t9", "TASK_RUNNING", &[1; 16]),
            "Task cannot be found",
        ),
        (
            update_call("e1", "t1", "TASK_RUNNIN", &[1; 16]),
            "TASK_RUNNIN",
        ),
    ] {
        let a = api.call(&call).await;
        assert_eq!(a.status, 400, "{call}: {a:?}");
        assert!(a.body.contains(says), "{call}: {a:?} should say {says:?}");
    }
    assert!(
        fake.applied_for("t1").is_empty(),
        "nothing reached the master"
    );
    agent.stop().await;
    tokio::task::spawn_blocking({
        let layout = Layout::new(&work_dir);
        move || drover_agent::recovery::kill_executor_runs(&layout)
    })
    .await
    .expect("kill");
}

fn subscribe_call(executor: &str, unacknowledged_tasks: &[&str]) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = unacknowledged_tasks
        .iter()
        .map(|t| serde_json::json!({"name": t, "task_id": {"value": t}, "agent_id": {"value": "agent-1"}}))
        .collect();
    executor_call(
        "SUBSCRIBE",
        executor,
        serde_json::json!({"subscribe": {"unacknowledged_tasks": tasks, "unacknowledged_updates": []}}),
    )
}

/// Subscribes as `executor`, takes the LAUNCH of `task` and reports it RUNNING (acknowledged);
/// the subscription's stream.
async fn running_executor(
    api: &ExecutorClient,
    executor: &str,
    task: &str,
) -> drover_agent::testing::EventStream {
    let wait = Duration::from_secs(20);
    let mut events = api.subscribe(&subscribe_call(executor, &[])).await;
    assert_eq!(events.status, 200);
    assert_eq!(
        events.next(wait).await.expect("SUBSCRIBED")["type"],
        "SUBSCRIBED"
    );
    expect_launch(&mut events, task).await;
    let a = api
        .call(&update_call(
            executor,
            task,
            "TASK_RUNNING",
            uuid::Uuid::new_v4().as_bytes(),
        ))
        .await;
    assert_eq!(a.status, 202, "{executor} {task}: {a:?}");
    assert_eq!(
        events.next_event(wait).await.expect("ACKNOWLEDGED")["type"],
        "ACKNOWLEDGED"
    );
    events
}

/// The executor's next event is LAUNCH of `task`.
async fn expect_launch(events: &mut drover_agent::testing::EventStream, task: &str) {
    let e = events
        .next_event(Duration::from_secs(20))
        .await
        .expect("an event");
    assert_eq!(e["type"], "LAUNCH", "{e}");
    assert_eq!(e["launch"]["task"]["task_id"]["value"], task, "{e}");
}

async fn custom_executor_across_a_restart() {
    let (_dir, work_dir, fake, master, agent, info) = real_agent_with_fake_master().await;
    wait_registered(&info.addr).await;
    let mut client = connect(&info.addr).await;
    let run = |t: TaskInfo| RunTaskRequest {
        agent_id: "agent-1".into(),
        framework_id: "fw-1".into(),
        tasks: vec![t],
        framework_name: "test framework".into(),
    };
    let wait = Duration::from_secs(20);
    // e1 runs t1 (RUNNING); t2 is queued while e1 is away; e2 runs t3; e3 runs t4 and ends
    // while the agent is down.
    let api = ExecutorClient::new(&info.addr);
    client
        .run_task(run(custom_task("t1", "e1")))
        .await
        .expect("t1");
    let e1 = running_executor(&api, "e1", "t1").await;
    client
        .run_task(run(custom_task("t3", "e2")))
        .await
        .expect("t3");
    let e2 = running_executor(&api, "e2", "t3").await;
    client
        .run_task(run(custom_task("t4", "e3")))
        .await
        .expect("t4");
    let e3 = running_executor(&api, "e3", "t4").await;
    wait_state(&fake, "t1", v1::TaskState::TaskRunning).await;
    wait_state(&fake, "t3", v1::TaskState::TaskRunning).await;
    drop(e1);
    client
        .run_task(run(custom_task("t2", "e1")))
        .await
        .expect("t2");
    let (pid1, pid2, pid3) = (
        executor_pid(&work_dir, "e1").await,
        executor_pid(&work_dir, "e2").await,
        executor_pid(&work_dir, "e3").await,
    );

    // The agent restarts; the executors keep running, but for e3, killed meanwhile.
    agent.stop().await;
    drop((e2, e3));
    let alive = |p: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok();
    assert!(
        alive(pid1) && alive(pid2) && alive(pid3),
        "the executors outlive the agent"
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid3),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill e3's group");
    let e3_run = runs_of(&work_dir, "e3").remove(0);
    wait_for(DEADLINE, "e3's supervisor records its end", || {
        let ended = e3_run.join("exit_status").exists();
        async move { ended }
    })
    .await;
    assert!(
        !fake.state().executor_exits.iter().any(|(e, _)| e == "e3"),
        "e3's end was told before the restart"
    );
    let agent = Agent::start(config(&work_dir, &master, 0, this_program_as_executor()));
    let infos = registrations(&fake, 2).await;
    let report: Vec<(String, i32)> = fake.state().registrations[1]
        .tasks
        .iter()
        .map(|t| (t.task_id.clone(), t.state))
        .collect();
    for (t, state) in [
        ("t1", v1::TaskState::TaskRunning),
        ("t2", v1::TaskState::TaskStaging),
        ("t3", v1::TaskState::TaskRunning),
    ] {
        assert!(
            report.contains(&(t.to_string(), state as i32)),
            "{t} {state:?} in the report {report:?}"
        );
    }
    let addr = infos[1].addr.clone();
    wait_registered(&addr).await;
    let api = ExecutorClient::new(&addr);
    // e3's task fails with it, and its framework hears of its end (SIGKILLed).
    wait_state(&fake, "t4", v1::TaskState::TaskFailed).await;
    wait_executor_killed(&fake, "e3", "e3's end, told after the restart").await;
    assert!(e3_run.join("exit_reported").exists(), "marked as told");

    // e1 subscribes again, listing nothing unacknowledged: it gets t2 (never given), not t1
    // (it reported on it).
    let mut e1 = api.subscribe(&subscribe_call("e1", &[])).await;
    assert_eq!(e1.status, 200);
    assert_eq!(
        e1.next(wait).await.expect("SUBSCRIBED")["type"],
        "SUBSCRIBED"
    );
    expect_launch(&mut e1, "t2").await;
    assert!(
        e1.next_event_within(Duration::from_millis(500))
            .await
            .is_err(),
        "nothing more: t1 is not launched again"
    );
    // e2 does not come back: its task fails, it is killed.
    wait_state(&fake, "t3", v1::TaskState::TaskFailed).await;
    let reason = fake
        .state()
        .applied
        .iter()
        .find(|s| s.task_id == "t3" && s.state == v1::TaskState::TaskFailed as i32)
        .map(|s| s.reason.clone());
    assert_eq!(reason.as_deref(), Some("executor_reregistration_timeout"));
    wait_for(DEADLINE, "e2 killed", || {
        let gone = !alive(pid2);
        async move { gone }
    })
    .await;
    // e1 finishes its tasks; idle, it is shut down, and its end (noticed without being its
    // parent) reaches the master.
    for t in ["t1", "t2"] {
        let a = api
            .call(&update_call(
                "e1",
                t,
                "TASK_FINISHED",
                uuid::Uuid::new_v4().as_bytes(),
            ))
            .await;
        assert_eq!(a.status, 202, "{t}: {a:?}");
        assert_eq!(
            e1.next_event(wait).await.expect("ack")["type"],
            "ACKNOWLEDGED"
        );
    }
    assert_eq!(
        e1.next_event(wait).await.expect("SHUTDOWN")["type"],
        "SHUTDOWN"
    );
    assert!(
        e1.next_event(wait).await.is_none(),
        "the stream ends with the run"
    );
    wait_for(DEADLINE, "both executors' ends at the master", || async {
        let exits = fake.state().executor_exits.clone();
        exits.iter().any(|(e, _)| e == "e1") && exits.iter().any(|(e, _)| e == "e2")
    })
    .await;
    assert!(!alive(pid1));
    agent.stop().await;
}
