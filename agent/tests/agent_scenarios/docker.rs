//! Container tasks on a real agent with the local Docker engine: output, exit codes, the
//! memory limit, a published port, a kill with its grace, a health check inside the
//! container, a missing image, the agent's policy, and an agent restart while containers run. Each scenario builds its image locally
//! (no registry) and is skipped, saying why, where the engine does not answer.

use super::*;
use drover_agent::config::DockerSettings;
use drover_agent::testing::docker_test_image;
use v1::container_info::docker_info::{Network, PortMapping};
use v1::container_info::{DockerInfo, Type};

/// The image, or `None` after printing why container scenarios are skipped here.
async fn image_or_skip() -> Option<&'static str> {
    match docker_test_image().await {
        Ok(image) => Some(image),
        Err(why) => {
            println!("    skipped: no usable Docker engine here ({why})");
            None
        }
    }
}

/// A container task of `image` running `shell` (empty: the image's own command).
fn container_task(id: &str, image: &str, shell: &str, resources: &str) -> TaskInfo {
    TaskInfo {
        task_id: id.into(),
        name: id.into(),
        resources: resources
            .parse::<Resources>()
            .expect("resources")
            .to_proto(),
        command: Some(CommandInfo {
            shell: shell.into(),
            environment: [("GREETING".to_string(), "hello".to_string())].into(),
            ..Default::default()
        }),
        container: Some(v1::ContainerInfo {
            r#type: Type::Docker as i32,
            docker: Some(DockerInfo {
                image: image.into(),
                ..Default::default()
            }),
            volumes: vec![],
        }),
        ..Default::default()
    }
}

fn docker_config(work_dir: &Path, master: &str) -> AgentConfig {
    AgentConfig {
        docker: DockerSettings::local(),
        // As the test's own user: tasks here name their sandbox by absolute path under a 0700
        // temporary directory (switching users: tests/users.rs and the executor's tests).
        users: drover_agent::users::UserPolicy::as_agent(),
        // Ended tasks' directories, and their containers, go soon.
        gc_delay: Duration::from_secs(1),
        disk_watch_interval: Duration::from_millis(200),
        ..config(work_dir, master, 0, this_program_as_executor())
    }
}

fn update_of(fake: &FakeMaster, task: &str, state: v1::TaskState) -> v1::TaskStatus {
    fake.state()
        .applied
        .iter()
        .find(|s| s.task_id == task && s.state == state as i32)
        .cloned()
        .unwrap_or_else(|| panic!("{task}: no {state:?} update"))
}

/// Containers the engine has for `agent_id`'s tasks (running or not), by `docker ps`.
fn containers_of(agent_id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=drover.agent_id={agent_id}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A unique agent id per run, so that scenarios on one engine never see each other's
/// containers.
fn unique_agent_id() -> String {
    format!(
        "agent-docker-{}-{}",
        std::process::id(),
        drover_model::unix_ms()
    )
}

/// Removes every container of an agent when dropped: a scenario that fails leaves none.
struct RemoveContainers(String);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        for id in containers_of(&self.0) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &id])
                .output();
        }
    }
}

/// A real agent whose engine answers, registered with a fake master under an id of its own.
struct DockerAgent {
    work_dir: PathBuf,
    fake: FakeMaster,
    master: String,
    agent: Agent,
    info: v1::AgentInfo,
    agent_id: String,
    // Dropped last: the containers go even when the scenario fails.
    _cleanup: RemoveContainers,
    _dir: tempfile::TempDir,
}

async fn start_docker_agent() -> DockerAgent {
    let dir = tempfile::tempdir().expect("tempdir");
    let work_dir: PathBuf = std::fs::canonicalize(dir.path()).expect("canonical");
    let fake = FakeMaster::default();
    let agent_id = unique_agent_id();
    let cleanup = RemoveContainers(agent_id.clone());
    fake.state().assign_id = Some(agent_id.clone());
    let master = fake.serve().await;
    let agent = Agent::start(docker_config(&work_dir, &master));
    let info = registrations(&fake, 1).await.remove(0);
    wait_id_persisted(&work_dir).await;
    wait_registered(&info.addr).await;
    DockerAgent {
        work_dir,
        fake,
        master,
        agent,
        info,
        agent_id,
        _cleanup: cleanup,
        _dir: dir,
    }
}

fn run_request(agent_id: &str, t: TaskInfo) -> RunTaskRequest {
    RunTaskRequest {
        agent_id: agent_id.into(),
        framework_id: "fw-1".into(),
        tasks: vec![t],
        framework_name: String::new(),
    }
}

fn kill_request(agent_id: &str, task: &str) -> KillTaskRequest {
    KillTaskRequest {
        agent_id: agent_id.into(),
        framework_id: "fw-1".into(),
        task_id: task.into(),
        grace_seconds: 0.0,
    }
}

async fn wait_no_containers(agent_id: &str) {
    wait_for(DEADLINE, "no container of this agent is left", || async {
        containers_of(agent_id).is_empty()
    })
    .await;
}

pub(super) async fn containers_run_report_and_stop() {
    let Some(image) = image_or_skip().await else {
        return;
    };
    // Every field bound: one left to `..` would be dropped here (the directory, the cleanup).
    let DockerAgent {
        work_dir,
        fake,
        master: _master,
        agent,
        info,
        agent_id,
        _cleanup,
        _dir,
    } = start_docker_agent().await;
    let containerizers = info
        .attributes
        .iter()
        .find(|a| a.name == drover_model::container::CONTAINERIZERS_ATTRIBUTE)
        .and_then(|a| match &a.value {
            Some(v1::attribute::Value::Text(t)) => Some(t.clone()),
            _ => None,
        });
    assert_eq!(
        containerizers.as_deref(),
        Some("docker,command"),
        "{info:?}"
    );
    let mut client = connect(&info.addr).await;
    let run = |t: TaskInfo| run_request(&agent_id, t);

    // Output into the sandbox, exit 0: FINISHED.
    client
        .run_task(run(container_task(
            "d-ok",
            image,
            "echo $GREETING from $DROVER_TASK_ID in $MESOS_SANDBOX; echo oops >&2",
            "cpus:0.5;mem:64",
        )))
        .await
        .expect("RunTask d-ok");
    // Exit 3: FAILED with code 3.
    client
        .run_task(run(container_task(
            "d-fail",
            image,
            "exit 3",
            "cpus:0.1;mem:32",
        )))
        .await
        .expect("RunTask d-fail");
    // Over its memory: FAILED memory_limit.
    client
        .run_task(run(container_task(
            "d-oom",
            image,
            "head -c 200000000 /dev/zero | tail -c 100000000 > /dev/null",
            // A cpu to itself: a throttled task takes long to fill its memory.
            "cpus:1;mem:32",
        )))
        .await
        .expect("RunTask d-oom");
    // An image no registry has: FAILED with the engine's message.
    client
        .run_task(run(container_task(
            "d-missing",
            "drover-test/no-such-image:none",
            "true",
            "cpus:0.1;mem:32",
        )))
        .await
        .expect("RunTask d-missing");
    // Privileged, which this agent does not allow: FAILED naming the field.
    let mut privileged = container_task("d-priv", image, "true", "cpus:0.1;mem:32");
    if let Some(d) = privileged
        .container
        .as_mut()
        .and_then(|c| c.docker.as_mut())
    {
        d.privileged = true;
    }
    client
        .run_task(run(privileged))
        .await
        .expect("RunTask d-priv");
    // A web server on the bridge network, its port 8080 published on the offered 31001; it
    // notes the SIGTERM of a kill in the sandbox.
    let mut web = container_task(
        "d-web",
        image,
        "trap 'echo TERM > /mnt/mesos/sandbox/term; exit 0' TERM; mkdir -p /www; \
         echo served-by-container > /www/index.html; httpd -f -p 8080 -h /www & \
         while true; do sleep 0.1; done",
        "cpus:0.1;mem:32;ports:[31001-31001]",
    );
    if let Some(d) = web.container.as_mut().and_then(|c| c.docker.as_mut()) {
        d.network = Network::Bridge as i32;
        d.port_mappings = vec![PortMapping {
            host_port: 31001,
            container_port: 8080,
            protocol: "tcp".into(),
        }];
    }
    web.kill_grace_seconds = 10.0;
    client.run_task(run(web)).await.expect("RunTask d-web");
    // A health check inside the container (`docker exec`, in the sandbox as the container
    // sees it, with the check's own environment): healthy while the container's /tmp/ok is
    // there, then killed after two failures in a row.
    let mut checked = container_task(
        "d-hc",
        image,
        "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 60",
        "cpus:0.1;mem:32",
    );
    checked.health_check = Some(health_check(
        "test -f /tmp/ok && test \"$(pwd)\" = /mnt/mesos/sandbox && test \"$HC\" = yes",
        &[("HC", "yes")],
    ));
    client.run_task(run(checked)).await.expect("RunTask d-hc");
    // Arguments instead of a shell: the image's command line (it has no entrypoint), with no
    // shell to expand `$GREETING` (it is `hello`): `test` compares the words as given, fails.
    let mut args = container_task("d-args", image, "", "cpus:0.1;mem:32");
    if let Some(c) = args.command.as_mut() {
        c.arguments = vec![
            "test".into(),
            "$GREETING".into(),
            "=".into(),
            "hello".into(),
        ];
    }
    client.run_task(run(args)).await.expect("RunTask d-args");

    wait_state(&fake, "d-ok", v1::TaskState::TaskFinished).await;
    assert_eq!(
        states(&fake, "d-ok"),
        vec![
            v1::TaskState::TaskStarting,
            v1::TaskState::TaskRunning,
            v1::TaskState::TaskFinished
        ]
    );
    let sandbox = task_dir(&work_dir, "d-ok").sandbox();
    let stdout = std::fs::read_to_string(sandbox.join("stdout")).expect("stdout");
    assert_eq!(stdout, "hello from d-ok in /mnt/mesos/sandbox\n");
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).expect("stderr");
    assert!(stderr.ends_with("oops\n"), "{stderr}");

    wait_state(&fake, "d-fail", v1::TaskState::TaskFailed).await;
    let failed = update_of(&fake, "d-fail", v1::TaskState::TaskFailed);
    assert_eq!(failed.exit_code, Some(3), "{failed:?}");
    assert_eq!(failed.reason, "command_exited", "{failed:?}");

    wait_state(&fake, "d-oom", v1::TaskState::TaskFailed).await;
    let oom = update_of(&fake, "d-oom", v1::TaskState::TaskFailed);
    assert_eq!(oom.reason, "memory_limit", "{oom:?}");
    assert!(oom.message.contains("32 MiB"), "{oom:?}");

    wait_state(&fake, "d-missing", v1::TaskState::TaskFailed).await;
    let missing = update_of(&fake, "d-missing", v1::TaskState::TaskFailed);
    assert_eq!(missing.reason, "container_image_pull_failed", "{missing:?}");
    assert!(
        missing.message.contains("drover-test/no-such-image:none"),
        "{missing:?}"
    );

    wait_state(&fake, "d-priv", v1::TaskState::TaskFailed).await;
    let refused = update_of(&fake, "d-priv", v1::TaskState::TaskFailed);
    assert_eq!(refused.reason, "container_launch_failed", "{refused:?}");
    assert!(
        refused.message.contains("container.docker.privileged"),
        "{refused:?}"
    );

    wait_state(&fake, "d-web", v1::TaskState::TaskRunning).await;
    let got = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    wait_for(DEADLINE, "the container serves on host port 31001", || {
        let got = got.clone();
        async move {
            let answer = match tokio::net::TcpStream::connect("127.0.0.1:31001").await {
                Ok(mut s) => {
                    let _ = s
                        .write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
                        .await;
                    let mut out = String::new();
                    let _ = s.read_to_string(&mut out).await;
                    out
                }
                Err(_) => String::new(),
            };
            let served = answer.contains("served-by-container");
            *got.lock().expect("lock") = answer;
            served
        }
    })
    .await;
    let body = got.lock().expect("lock").clone();
    assert!(
        body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"),
        "{body}"
    );
    // The metrics tell of it: a container running, its start latency, the image that could
    // not be had (at least: the recorder is the whole test process's).
    let page = http_get(&info.addr, "/metrics").await;
    let at_least = |series: &str, least: f64| {
        let v = metric(&page, series);
        assert!(
            v >= Some(least),
            "{series} = {v:?} (want >= {least}):\n{page}"
        );
    };
    at_least("drover_agent_containers{state=\"running\"}", 1.0);
    at_least("drover_agent_container_start_seconds_count", 1.0);
    at_least("drover_agent_image_pull_failures_total", 1.0);
    client
        .kill_task(kill_request(&agent_id, "d-web"))
        .await
        .expect("KillTask d-web");
    wait_state(&fake, "d-web", v1::TaskState::TaskKilled).await;
    let web_sandbox = task_dir(&work_dir, "d-web").sandbox();
    assert_eq!(
        std::fs::read_to_string(web_sandbox.join("term")).expect("SIGTERM noted"),
        "TERM\n"
    );

    wait_state(&fake, "d-args", v1::TaskState::TaskFailed).await;
    let args_end = update_of(&fake, "d-args", v1::TaskState::TaskFailed);
    assert_eq!(
        args_end.exit_code,
        Some(1),
        "no shell expanded it: {args_end:?}"
    );

    wait_state(&fake, "d-hc", v1::TaskState::TaskKilled).await;
    assert_healthy_then_killed_unhealthy(&fake, "d-hc");

    // Every task ended and was acknowledged: the collector takes their directories, and
    // their containers with them.
    wait_no_containers(&agent_id).await;
    agent.stop().await;
}

pub(super) async fn containers_outlive_an_agent_restart() {
    let Some(image) = image_or_skip().await else {
        return;
    };
    let DockerAgent {
        work_dir,
        fake,
        master,
        agent,
        info,
        agent_id,
        _cleanup,
        _dir,
    } = start_docker_agent().await;
    let mut client = connect(&info.addr).await;
    let run = |t: TaskInfo| run_request(&agent_id, t);
    // One runs until killed; the other until a file appears in its sandbox (while the agent
    // is down).
    let mut long = container_task(
        "d-long",
        image,
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        "cpus:0.1;mem:32",
    );
    long.kill_grace_seconds = 5.0;
    client.run_task(run(long)).await.expect("RunTask d-long");
    client
        .run_task(run(container_task(
            "d-until",
            image,
            "while [ ! -f /mnt/mesos/sandbox/go ]; do sleep 0.1; done; echo went",
            "cpus:0.1;mem:32",
        )))
        .await
        .expect("RunTask d-until");
    for t in ["d-long", "d-until"] {
        wait_state(&fake, t, v1::TaskState::TaskRunning).await;
    }
    agent.stop().await;
    assert_eq!(
        containers_of(&agent_id).len(),
        2,
        "the containers outlive the agent"
    );
    std::fs::write(task_dir(&work_dir, "d-until").sandbox().join("go"), b"").expect("go");
    // Containers of this agent no task accounts for: one running, one ended.
    let ghost = |task: &str, command: &str| {
        let out = std::process::Command::new("docker")
            .args(["run", "-d"])
            .args(["--label", &format!("drover.agent_id={agent_id}")])
            .args(["--label", "drover.framework_id=fw-1"])
            .args(["--label", &format!("drover.task_id={task}")])
            .args([image, "sh", "-c", command])
            .output()
            .expect("docker run");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let ghosts = [
        ghost("ghost-running", "sleep 600"),
        ghost("ghost-ended", "true"),
    ];

    let agent = Agent::start(docker_config(&work_dir, &master));
    let addr = registrations(&fake, 2).await.remove(1).addr;
    wait_registered(&addr).await;
    // Recovery removed the containers no task accounts for, before registering.
    let left = containers_of(&agent_id);
    for g in &ghosts {
        assert!(
            !left.iter().any(|c| g.starts_with(c.as_str())),
            "{g} left: {left:?}"
        );
    }
    // The end that came while the agent was down arrives; the other task runs on.
    wait_state(&fake, "d-until", v1::TaskState::TaskFinished).await;
    assert_eq!(
        std::fs::read_to_string(task_dir(&work_dir, "d-until").sandbox().join("stdout"))
            .expect("stdout"),
        "went\n"
    );
    assert_eq!(
        states(&fake, "d-long"),
        vec![v1::TaskState::TaskStarting, v1::TaskState::TaskRunning]
    );
    let mut client = connect(&addr).await;
    client
        .kill_task(kill_request(&agent_id, "d-long"))
        .await
        .expect("KillTask d-long");
    wait_state(&fake, "d-long", v1::TaskState::TaskKilled).await;
    wait_no_containers(&agent_id).await;
    agent.stop().await;
}
