//! The executor run in-process against a scripted agent on a Unix socket.

use std::collections::BTreeMap;
use std::path::Path;

use drover_resources::Resources;
use tokio::io::BufReader;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use super::*;
use crate::cgroups::CgroupMode;
use crate::ids::{AgentId, FrameworkId, TaskId};
use crate::protocol::{read_message, write_message, ToExecutor};
use crate::task::TaskSpec;

const DEADLINE: Duration = Duration::from_secs(20);

struct Setup {
    _dir: tempfile::TempDir,
    task_dir: TaskDir,
    listener: UnixListener,
    executor: JoinHandle<Result<i32, ExecutorError>>,
}

/// A command task's `task.json` with a fresh task id (also used by the container tests).
pub(super) fn launch_spec(
    shell: &str,
    env: &[(&str, &str)],
    resources: &str,
    cgroups: CgroupMode,
) -> LaunchSpec {
    LaunchSpec {
        version: LAUNCH_SPEC_VERSION,
        agent_id: AgentId::new("agent-1").expect("id"),
        framework_id: FrameworkId::new("fw-1").expect("id"),
        task: TaskSpec {
            task_id: TaskId::new(&format!("t-{}", uuid::Uuid::new_v4())).expect("id"),
            name: "test".into(),
            resources: resources.parse::<Resources>().expect("resources"),
            shell: shell.into(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            kill_grace_ms: None,
            health_check: None,
            executor: None,
            data: Vec::new(),
            task_group: None,
            container: None,
            arguments: Vec::new(),
            user: String::new(),
        },
        default_kill_grace_ms: 3000,
        cgroups,
        docker: None,
        run_as: None,
    }
}

/// Writes the task and starts the executor on it, with a socket for the test to play agent.
async fn start(spec: LaunchSpec) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let task_dir = TaskDir(dir.path().join("task"));
    std::fs::create_dir_all(task_dir.sandbox()).expect("mkdir");
    checkpoint::write_atomic(
        &task_dir.task_json(),
        &serde_json::to_vec(&spec).expect("encode"),
    )
    .expect("write task.json");
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let args = ExecutorArgs {
        task_dir: Some(task_dir.0.clone()),
        agent_socket: Some(socket),
        executor_dir: None,
    };
    let executor = tokio::spawn(run(args, None));
    Setup {
        _dir: dir,
        task_dir,
        listener,
        executor,
    }
}

struct Conn {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Conn {
    async fn accept(listener: &UnixListener) -> Conn {
        let (stream, _) = tokio::time::timeout(DEADLINE, listener.accept())
            .await
            .expect("executor connects in time")
            .expect("accept");
        let (read, write) = stream.into_split();
        let mut conn = Conn {
            read: BufReader::new(read),
            write,
        };
        match conn.next().await {
            FromExecutor::Hello { task_id, .. } => assert!(task_id.as_str().starts_with("t-")),
            other => panic!("expected hello, got {other:?}"),
        }
        conn
    }

    async fn next(&mut self) -> FromExecutor {
        tokio::time::timeout(DEADLINE, read_message::<_, FromExecutor>(&mut self.read))
            .await
            .expect("message in time")
            .expect("well-formed message")
            .expect("connection open")
    }

    async fn update(&mut self) -> StatusUpdate {
        match self.next().await {
            FromExecutor::Update { update } => update,
            other => panic!("expected an update, got {other:?}"),
        }
    }

    async fn ack(&mut self, u: &StatusUpdate) {
        write_message(
            &mut self.write,
            &ToExecutor::Ack {
                uuid: u.status.uuid,
            },
        )
        .await
        .expect("ack");
    }

    /// Reads and acknowledges the next update.
    async fn take(&mut self) -> StatusUpdate {
        let u = self.update().await;
        self.ack(&u).await;
        u
    }
}

async fn exit_of(executor: JoinHandle<Result<i32, ExecutorError>>) -> i32 {
    tokio::time::timeout(DEADLINE, executor)
        .await
        .expect("executor exits in time")
        .expect("executor task")
        .expect("executor result")
}

fn group_gone(pgid: i32) -> bool {
    group::members(pgid).is_empty()
}

fn command_pgid(dir: &TaskDir) -> i32 {
    std::fs::read_to_string(dir.command_pid())
        .expect("command.pid")
        .trim()
        .parse()
        .expect("pid")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn a_failing_command_reports_starting_running_failed_with_its_exit_code() {
    let s = start(launch_spec(
        "echo hello; echo oops >&2; exit 3",
        &[],
        "cpus:0.1;mem:32",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    let starting = agent.take().await;
    assert_eq!(starting.status.state, TaskState::Starting);
    let running = agent.take().await;
    assert_eq!(running.status.state, TaskState::Running);
    let failed = agent.take().await;
    assert_eq!(failed.status.state, TaskState::Failed);
    assert_eq!(failed.status.exit_code, Some(3));
    assert_eq!(failed.status.signal, None);
    assert_eq!(failed.status.reason, "command_exited");
    assert_eq!(failed.status.message, "exited with status 3");
    assert_eq!(failed.status.source, StatusSource::Executor);
    let uuids: std::collections::HashSet<_> = [
        starting.status.uuid,
        running.status.uuid,
        failed.status.uuid,
    ]
    .into();
    assert_eq!(uuids.len(), 3, "each update has its own uuid");
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
    assert_eq!(read(&s.task_dir.sandbox().join("stdout")), "hello\n");
    assert_eq!(read(&s.task_dir.sandbox().join("stderr")), "oops\n");
    // The executor's own checkpoint holds the three updates.
    let replay =
        checkpoint::read_records::<StatusUpdate>(&s.task_dir.executor_updates_log()).expect("read");
    assert_eq!(replay.records, vec![starting, running, failed]);
}

/// As root: a task with an account runs as it (uid, gid, no other group), writes in its
/// sandbox (given to it) though the directories above are root's alone (the test's 0700
/// temporary directory), and its command check runs as it too.
#[tokio::test]
async fn a_command_with_an_account_runs_as_it_in_its_own_sandbox() {
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        eprintln!("skipped: no user nobody on this host");
        return;
    };
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let mut spec = launch_spec(
        "id -u; id -g; id -G; echo $USER; echo mine > file && cat file; sleep 2",
        &[],
        "cpus:0.1;mem:32",
        CgroupMode::none("test"),
    );
    // Passes only as the user: the task is reported healthy only if it ran as it.
    spec.task.health_check = Some(drover_model::health::HealthCheckSpec {
        delay_ms: 0,
        interval_ms: 200,
        timeout_ms: 5000,
        consecutive_failures: 0,
        grace_period_ms: 0,
        command: format!("test \"$(id -u)\" = {}", nobody.uid),
        environment: Default::default(),
    });
    spec.run_as = Some(crate::users::RunAs {
        user: "nobody".into(),
        uid: nobody.uid.as_raw(),
        gid: nobody.gid.as_raw(),
    });
    let s = start(spec).await;
    let mut agent = Conn::accept(&s.listener).await;
    let mut last = agent.take().await;
    let mut healthy = Vec::new();
    while !last.status.state.is_terminal() {
        healthy.push(last.status.healthy());
        last = agent.take().await;
    }
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
    assert!(
        healthy.contains(&Some(true)) && !healthy.contains(&Some(false)),
        "the check ran as the user: {healthy:?}"
    );
    let out = read(&s.task_dir.sandbox().join("stdout"));
    assert_eq!(last.status.state, TaskState::Finished, "{last:?}\n{out}");
    let (uid, gid) = (nobody.uid.to_string(), nobody.gid.to_string());
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [uid.as_str(), gid.as_str(), gid.as_str(), "nobody", "mine"],
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(s.task_dir.sandbox()).expect("sandbox");
    assert_eq!(meta.uid(), nobody.uid.as_raw(), "the sandbox is the user's");
}

#[tokio::test]
async fn a_successful_command_finishes_with_its_environment() {
    let s = start(launch_spec(
        "echo \"$PORT0 $PORT1 $PORTS $PORT $DROVER_TASK_ID $DROVER_FRAMEWORK_ID $DROVER_AGENT_ID $FOO $(pwd)\"",
        &[("FOO", "bar"), ("PORT0", "spoofed")],
        "cpus:0.1;ports:[31000-31000,31005-31005]",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    let states: Vec<TaskState> = [agent.take().await, agent.take().await, agent.take().await]
        .iter()
        .map(|u| u.status.state)
        .collect();
    assert_eq!(
        states,
        vec![TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
    let spec = read_spec(&s.task_dir).expect("spec");
    let sandbox = std::fs::canonicalize(s.task_dir.sandbox()).expect("canonical sandbox");
    assert_eq!(
        read(&s.task_dir.sandbox().join("stdout")),
        format!(
            "31000 31005 31000,31005 31000 {} fw-1 agent-1 bar {}\n",
            spec.task.task_id,
            sandbox.display()
        )
    );
}

#[tokio::test]
async fn a_kill_terminates_the_process_group_and_reports_killed() {
    // A background child too, to show the whole group goes.
    let s = start(launch_spec(
        "sleep 60 & sleep 60",
        &[],
        "cpus:0.1",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    assert_eq!(agent.take().await.status.state, TaskState::Starting);
    assert_eq!(agent.take().await.status.state, TaskState::Running);
    let pgid = command_pgid(&s.task_dir);
    assert!(!group_gone(pgid), "the command runs");
    write_message(&mut agent.write, &ToExecutor::Kill { grace_ms: 5_000 })
        .await
        .expect("kill");
    let killed = agent.take().await;
    assert_eq!(killed.status.state, TaskState::Killed);
    assert_eq!(killed.status.reason, "killed");
    assert_eq!(killed.status.signal, Some(libc_sigterm()));
    assert!(
        killed.status.message.contains("SIGTERM"),
        "{}",
        killed.status.message
    );
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
    assert!(group_gone(pgid), "process group {pgid} still exists");
}

#[tokio::test]
async fn a_command_ignoring_sigterm_is_killed_after_the_grace_period() {
    let s = start(launch_spec(
        "trap '' TERM; echo ready; sleep 60",
        &[],
        "cpus:0.1",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    agent.take().await;
    assert_eq!(agent.take().await.status.state, TaskState::Running);
    let pgid = command_pgid(&s.task_dir);
    // The shell ignores SIGTERM only once the trap ran.
    let stdout = s.task_dir.sandbox().join("stdout");
    crate::testing::wait_for(DEADLINE, "the trap to be set", || {
        let ready = read(&stdout) == "ready\n";
        async move { ready }
    })
    .await;
    let asked = std::time::Instant::now();
    write_message(&mut agent.write, &ToExecutor::Kill { grace_ms: 300 })
        .await
        .expect("kill");
    let killed = agent.take().await;
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "SIGKILL came before the grace ran out"
    );
    assert_eq!(killed.status.state, TaskState::Killed);
    assert!(
        killed.status.message.contains("grace period"),
        "{}",
        killed.status.message
    );
    assert_eq!(killed.status.signal, Some(Signal::SIGKILL as i32));
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
    assert!(group_gone(pgid));
}

/// Regression (found by the chaos suite): a framework repeating KILL sends the agent a burst
/// of kill requests, and those that reached the executor after its command had ended filled
/// the link's queue of kills, which nobody read any more; the link then waited forever, so
/// the terminal update was never acknowledged (or, arriving earlier, never sent) and the task
/// stayed RUNNING until the executor gave up 5 minutes later.
#[tokio::test]
async fn kill_requests_after_the_command_ended_do_not_block_the_link() {
    let s = start(launch_spec(
        "sleep 60",
        &[],
        "cpus:0.1",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    agent.take().await;
    assert_eq!(agent.take().await.status.state, TaskState::Running);
    write_message(&mut agent.write, &ToExecutor::Kill { grace_ms: 200 })
        .await
        .expect("kill");
    let killed = agent.update().await;
    assert_eq!(killed.status.state, TaskState::Killed);
    // The command is over: more kills than the link buffers, then the acknowledgement.
    for _ in 0..32 {
        write_message(&mut agent.write, &ToExecutor::Kill { grace_ms: 200 })
            .await
            .expect("kill");
    }
    agent.ack(&killed).await;
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
}

#[tokio::test]
async fn a_signal_nobody_asked_for_is_a_failure() {
    let s = start(launch_spec(
        "kill -9 $$",
        &[],
        "cpus:0.1",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    agent.take().await;
    agent.take().await;
    let failed = agent.take().await;
    assert_eq!(failed.status.state, TaskState::Failed);
    assert_eq!(failed.status.reason, "command_signaled");
    assert_eq!(failed.status.signal, Some(Signal::SIGKILL as i32));
    assert_eq!(failed.status.exit_code, None);
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
}

#[tokio::test]
async fn unacknowledged_updates_are_resent_after_a_reconnect() {
    let s = start(launch_spec(
        "exit 0",
        &[],
        "cpus:0.1",
        CgroupMode::none("test"),
    ))
    .await;
    // First agent: reads updates, acknowledges only the first, then goes away.
    let mut agent = Conn::accept(&s.listener).await;
    let starting = agent.take().await;
    let running = agent.update().await;
    let finished = agent.update().await;
    assert_eq!(finished.status.state, TaskState::Finished);
    drop(agent);
    // The executor must not exit before its terminal update is acknowledged.
    assert!(!s.executor.is_finished());
    // Second agent: the executor says hello again and resends both, same uuids, in order.
    let mut agent = Conn::accept(&s.listener).await;
    let again = agent.take().await;
    assert_eq!(again, running);
    let again = agent.take().await;
    assert_eq!(again, finished);
    assert_ne!(again.status.uuid, starting.status.uuid);
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
}

#[tokio::test]
async fn the_command_runs_in_its_cgroup_when_the_host_allows() {
    let mode = crate::cgroups::detect();
    if let CgroupMode::None { reason } = &mode {
        eprintln!("skipped: no cgroups on this host: {reason}");
        return;
    }
    let s = start(launch_spec(
        "cat /proc/self/cgroup",
        &[],
        "cpus:0.5;mem:64",
        mode.clone(),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    agent.take().await;
    agent.take().await;
    assert_eq!(agent.take().await.status.state, TaskState::Finished);
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
    let spec = read_spec(&s.task_dir).expect("spec");
    let name = cgroups::cgroup_name(spec.framework_id.as_str(), spec.task.task_id.as_str());
    let out = read(&s.task_dir.sandbox().join("stdout"));
    assert!(out.contains(&format!("/drover/{name}")), "{out}");
    // Removed after the task.
    let dirs: Vec<PathBuf> = match &mode {
        CgroupMode::V2 { parent } => vec![parent.join(&name)],
        CgroupMode::V1 { cpu, memory } => vec![cpu.join(&name), memory.join(&name)],
        CgroupMode::None { .. } => vec![],
    };
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// A command that holds 300 MB in a shell variable, under a 32 MiB limit.
pub(crate) const MEMORY_HOG: &str = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived";

#[tokio::test]
async fn a_command_over_its_memory_limit_fails_with_the_memory_reason() {
    let mode = crate::cgroups::detect();
    if let CgroupMode::None { reason } = &mode {
        eprintln!("skipped: no cgroups on this host, so no memory limit to hit: {reason}");
        return;
    }
    let s = start(launch_spec(MEMORY_HOG, &[], "cpus:1;mem:32", mode)).await;
    let mut agent = Conn::accept(&s.listener).await;
    assert_eq!(agent.take().await.status.state, TaskState::Starting);
    assert_eq!(agent.take().await.status.state, TaskState::Running);
    let end = agent.take().await;
    assert_eq!(end.status.state, TaskState::Failed, "{end:?}");
    assert_eq!(end.status.reason, REASON_MEMORY_LIMIT, "{end:?}");
    assert!(
        end.status.message.contains("memory limit of 32 MiB"),
        "{end:?}"
    );
    let out = read(&s.task_dir.sandbox().join("stdout"));
    assert!(!out.contains("survived"), "{out}");
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
}

#[tokio::test]
async fn the_same_command_without_a_limit_succeeds() {
    // The control for the test above: the command itself is fine when memory is not capped
    // (no cgroup: the mode says none).
    let s = start(launch_spec(
        MEMORY_HOG,
        &[],
        "cpus:1;mem:32",
        CgroupMode::none("test"),
    ))
    .await;
    let mut agent = Conn::accept(&s.listener).await;
    agent.take().await;
    agent.take().await;
    let end = agent.take().await;
    assert_eq!(end.status.state, TaskState::Finished, "{end:?}");
    assert!(read(&s.task_dir.sandbox().join("stdout")).contains("survived"));
    assert_eq!(exit_of(s.executor).await, EXIT_OK);
}

fn libc_sigterm() -> i32 {
    Signal::SIGTERM as i32
}
