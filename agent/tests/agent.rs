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
use drover_agent::testing::{wait_for, FakeMaster};
use drover_agent::{run_with_config, AgentError, ExecutorArgs, Stop};
use drover_proto::v1::agent_client::AgentClient;
use drover_proto::v1::{self, CommandInfo, KillTaskRequest, RunTaskRequest, TaskInfo};
use drover_resources::{Attributes, Resources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(30);

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

struct Agent {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    fn start(config: AgentConfig) -> Agent {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
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
        gc_delay: Duration::from_secs(7 * 24 * 3600),
        gc_disk_headroom: 0.1,
        disk_watch_interval: Duration::from_secs(60),
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
        }),
        kill_grace_seconds: 0.0,
        health_check: None,
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
    assert_eq!(
        std::fs::read_to_string(t1.sandbox().join("stdout")).expect("stdout"),
        "hello 31000\n"
    );
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
    // The sandbox collector may move the directory at any moment once the end is
    // acknowledged (a rename): each file is looked for where it ran, then where it went.
    let moved = Layout::new(&work_dir)
        .completed_dir()
        .join("fw-1")
        .join("t1");
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
    checked.health_check = Some(v1::HealthCheck {
        delay_seconds: 0.0,
        interval_seconds: 0.3,
        timeout_seconds: 5.0,
        consecutive_failures: 2,
        grace_period_seconds: 10.0,
        command: Some(CommandInfo {
            shell: "test -f ok".into(),
            environment: Default::default(),
        }),
    });
    client.run_task(run(checked)).await.expect("RunTask hc");
    wait_state(&fake, "hc", v1::TaskState::TaskKilled).await;
    let reports: Vec<(v1::TaskState, Option<bool>, String)> = fake
        .state()
        .applied
        .iter()
        .filter(|s| s.task_id == "hc")
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
        ]
    );

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
