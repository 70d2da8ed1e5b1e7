//! The executor's Docker path: runs a task whose definition has a container as a Docker
//! container through the local engine, with the same statuses as a command task.
//!
//! Owns one container's life, from the image to its end: the agent's policy is checked
//! (privileged, parameters, host paths: a refusal is TASK_FAILED naming the field), the image
//! is looked up and pulled when missing (or always, with `force_pull_image`; a pull that fails
//! is TASK_FAILED with the engine's message, reason `container_image_pull_failed`), the container
//! is created (`drover-<task id>`, labelled with agent, framework and task, see
//! [`crate::docker`]) with the task's cpu shares and CFS quota, its memory as a hard limit
//! without swap, its offered host ports published, `PORT0…` and `DROVER_*` in its environment
//! and the sandbox bind-mounted at [`SANDBOX_MOUNT`], then started (TASK_RUNNING). Its output
//! is streamed from the engine into the sandbox's `stdout` and `stderr`. A kill is `docker
//! stop` with the task's grace (SIGTERM, SIGKILL when it is over); its end is TASK_FINISHED
//! (exit 0), TASK_FAILED (another code; reason `memory_limit` when the kernel's OOM killer
//! acted) or TASK_KILLED. A health check runs inside the container (`docker exec`), with the
//! same reports and kill as for a command task. The container id is recorded in the task directory; the ended
//! container stays until the agent collects the task's directory (see [`crate::gc`]), so
//! `docker logs` and `docker inspect` still tell about it.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::Docker;
use drover_model::container::{parse_bytes, ContainerSpec, DockerNetwork, SANDBOX_MOUNT};
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

use super::health::CheckPlace;
use super::{Checking, KillRequest, KillState, Reporter};
use crate::cgroups::MemoryLimitHit;
use crate::checkpoint;
use crate::docker;
use crate::layout::TaskDir;
use crate::task::LaunchSpec;
use crate::update::TaskState;

/// The reason of a container task that could not be started (Mesos's
/// REASON_CONTAINER_LAUNCH_FAILED).
pub const REASON_LAUNCH_FAILED: &str = "container_launch_failed";
/// The reason of a container task whose image could not be had (Mesos: the same
/// REASON_CONTAINER_LAUNCH_FAILED as any other launch failure; Drover says which).
pub const REASON_IMAGE_PULL_FAILED: &str = "container_image_pull_failed";
/// How long the executor waits for the output stream to drain after the container ended.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// Past the grace period, how long `docker stop` may take before the executor sends SIGKILL
/// itself.
const STOP_SLACK: Duration = Duration::from_secs(5);
/// Longest image pull.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// cpu shares per cpu (Docker's and the kernel's unit).
const SHARES_PER_CPU: f64 = 1024.0;
/// The CFS period the quota is a fraction of, microseconds.
const CFS_PERIOD_US: i64 = 100_000;
/// Smallest CFS quota the kernel takes, microseconds.
const MIN_CFS_QUOTA_US: i64 = 1_000;

/// Runs the task's container and reports its end (every update before returning).
pub(super) async fn run(
    spec: &LaunchSpec,
    dir: &TaskDir,
    container: &ContainerSpec,
    reporter: &mut Reporter,
    sigterm: &mut Option<tokio::signal::unix::Signal>,
) {
    match start(spec, dir, container, reporter, sigterm).await {
        Ok(Started::Running(running)) => supervise(spec, running, reporter, sigterm).await,
        Ok(Started::KilledBefore) => {
            reporter
                .report(
                    TaskState::Killed,
                    "killed",
                    "killed on request before its container started".into(),
                    None,
                )
                .await
        }
        Err((reason, message)) => {
            reporter
                .report(TaskState::Failed, reason, message, None)
                .await
        }
    }
}

/// A started container.
struct Running {
    docker: Docker,
    id: String,
    /// Streams its output into the sandbox; ends with the container.
    logs: tokio::task::JoinHandle<()>,
    /// The memory limit, bytes (0: none).
    memory_limit: u64,
}

enum Started {
    Running(Running),
    /// A kill came before the container ran.
    KilledBefore,
}

/// Why a container did not start: the TASK_FAILED reason and message.
type NotStarted = (&'static str, String);

fn launch_failed(message: impl ToString) -> NotStarted {
    (REASON_LAUNCH_FAILED, message.to_string())
}

/// Checks, pulls, creates and starts the container; reports TASK_RUNNING.
async fn start(
    spec: &LaunchSpec,
    dir: &TaskDir,
    container: &ContainerSpec,
    reporter: &mut Reporter,
    sigterm: &mut Option<tokio::signal::unix::Signal>,
) -> Result<Started, NotStarted> {
    let Some(engine) = spec.docker.as_ref() else {
        return Err(launch_failed(
            "this agent does not run containers: its Docker engine did not answer when it started",
        ));
    };
    engine.policy.check(container).map_err(launch_failed)?;
    let docker = docker::connect(&engine.socket)
        .await
        .map_err(launch_failed)?;
    let began = Instant::now();
    // The pull may take long: a kill meanwhile ends the task before it starts.
    let pulled = tokio::select! {
        r = ensure_image(&docker, container) => r,
        Some(_) = reporter.link.kills.recv() => return Ok(Started::KilledBefore),
        Some(()) = next_sigterm(sigterm) => return Ok(Started::KilledBefore),
    };
    pulled.map_err(|message| (REASON_IMAGE_PULL_FAILED, message))?;
    let task = spec.task.task_id.as_str();
    let framework = spec.framework_id.as_str();
    let agent = spec.agent_id.as_str();
    // What an earlier executor of this task may have left (it died between create and its
    // end): never two containers for one task.
    for old in docker::list(&docker, agent, Some((framework, task)))
        .await
        .map_err(launch_failed)?
    {
        tracing::warn!(container = %old.id, "removing a container an earlier executor of this task left");
        docker::remove(&docker, &old.id)
            .await
            .map_err(launch_failed)?;
    }
    let body = create_body(spec, &dir.sandbox(), container).map_err(launch_failed)?;
    let memory_limit = body
        .host_config
        .as_ref()
        .and_then(|h| h.memory)
        .unwrap_or(0)
        .max(0) as u64;
    let id = create(&docker, task, framework, body)
        .await
        .map_err(launch_failed)?;
    if let Err(e) = checkpoint::write_atomic(&dir.container_id(), format!("{id}\n").as_bytes()) {
        tracing::warn!(error = %e, "cannot record the container's id");
    }
    if let Err(e) = docker.start_container(&id, None).await {
        let message = docker::engine_error(e).to_string();
        if let Err(e) = docker::remove(&docker, &id).await {
            tracing::warn!(error = %e, "cannot remove the container that did not start");
        }
        return Err(launch_failed(format!(
            "cannot start the container: {message}"
        )));
    }
    let logs = tokio::spawn(stream_logs(docker.clone(), id.clone(), dir.sandbox()));
    let short = id.get(..12).unwrap_or(&id);
    reporter
        .report(
            TaskState::Running,
            "running",
            format!(
                "container {} ({short}) running, started in {} ms",
                docker::container_name(task),
                began.elapsed().as_millis()
            ),
            None,
        )
        .await;
    Ok(Started::Running(Running {
        docker,
        id,
        logs,
        memory_limit,
    }))
}

/// The next SIGTERM, if the executor listens for them.
async fn next_sigterm(sigterm: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sigterm.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Makes sure the engine has the image: pulls it when it is missing, or always with
/// `force_pull_image`. The error is the engine's message.
async fn ensure_image(docker: &Docker, container: &ContainerSpec) -> Result<(), String> {
    let image = &container.image;
    if !container.force_pull_image {
        match docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if docker::is_not_found(&e) => {}
            Err(e) => {
                return Err(format!(
                    "cannot look up image {image}: {}",
                    docker::engine_error(e)
                ))
            }
        }
    }
    tracing::info!(%image, "pulling the image");
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(image.clone()),
        ..Default::default()
    };
    let pull = async {
        let mut progress = Box::pin(docker.create_image(Some(options), None, None));
        while let Some(item) = progress.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        return Err(detail.message.unwrap_or_else(|| "pull failed".into()));
                    }
                }
                Err(e) => return Err(docker::engine_error(e).to_string()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(PULL_TIMEOUT, pull).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(format!("cannot pull image {image}: {message}")),
        Err(_) => Err(format!(
            "cannot pull image {image}: not done within {} s",
            PULL_TIMEOUT.as_secs()
        )),
    }
}

/// Creates the container under the task's name (or, when another framework's task of the same
/// id holds it, under a name with the framework's id too); its id.
async fn create(
    docker: &Docker,
    task: &str,
    framework: &str,
    body: ContainerCreateBody,
) -> Result<String, String> {
    let first = docker::container_name(task);
    let second = format!("{first}.{}", framework.replace(':', "_"));
    for name in [first, second] {
        let options = bollard::query_parameters::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        match docker.create_container(Some(options), body.clone()).await {
            Ok(created) => {
                for w in created.warnings {
                    tracing::warn!(container = %name, warning = %w, "the engine warns");
                }
                return Ok(created.id);
            }
            Err(e) if docker::is_conflict(&e) => {
                tracing::warn!(container = %name, "the name is taken; trying another");
            }
            Err(e) => {
                return Err(format!(
                    "cannot create the container: {}",
                    docker::engine_error(e)
                ))
            }
        }
    }
    Err("cannot create the container: its names are taken".into())
}

/// The container's definition: image, command, environment, labels, limits, network, ports,
/// mounts and parameters. The error is a TASK_FAILED message.
pub(crate) fn create_body(
    spec: &LaunchSpec,
    sandbox: &Path,
    container: &ContainerSpec,
) -> Result<ContainerCreateBody, String> {
    let task = &spec.task;
    let mut env = environment(spec);
    let mut labels = docker::labels(
        spec.agent_id.as_str(),
        spec.framework_id.as_str(),
        task.task_id.as_str(),
    );
    let mut host = HostConfig {
        network_mode: Some(match &container.network {
            DockerNetwork::Host => "host".to_string(),
            DockerNetwork::Bridge => "bridge".to_string(),
            DockerNetwork::None => "none".to_string(),
            DockerNetwork::User(name) => name.clone(),
        }),
        privileged: Some(container.privileged),
        ..Default::default()
    };
    let cpus = task.resources.cpus().milli() as f64 / 1000.0;
    if cpus > 0.0 {
        host.cpu_shares = Some(((cpus * SHARES_PER_CPU) as i64).max(2));
        host.cpu_period = Some(CFS_PERIOD_US);
        host.cpu_quota = Some(((cpus * CFS_PERIOD_US as f64) as i64).max(MIN_CFS_QUOTA_US));
    }
    let mem_mib = task.resources.mem_mib().milli() / 1000;
    if mem_mib > 0 {
        let bytes = (mem_mib as i64) * 1024 * 1024;
        host.memory = Some(bytes);
        // No swap beyond the limit: over it, the kernel's OOM killer acts.
        host.memory_swap = Some(bytes);
    }
    let mut binds = vec![format!("{}:{SANDBOX_MOUNT}:rw", sandbox.display())];
    for v in &container.volumes {
        let host_path = if v.in_sandbox() {
            let p = sandbox.join(&v.host_path);
            std::fs::create_dir_all(&p)
                .map_err(|e| format!("cannot make volume directory {}: {e}", p.display()))?;
            p.display().to_string()
        } else {
            v.host_path.clone()
        };
        let mode = if v.read_only { "ro" } else { "rw" };
        binds.push(format!("{host_path}:{}:{mode}", v.container_path));
    }
    host.binds = Some(binds);
    let mut exposed = Vec::new();
    if !container.port_mappings.is_empty() {
        let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for m in &container.port_mappings {
            let key = format!("{}/{}", m.container_port, m.protocol.as_str());
            exposed.push(key.clone());
            ports
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: None,
                    host_port: Some(m.host_port.to_string()),
                });
        }
        host.port_bindings = Some(ports);
    }
    let mut body = ContainerCreateBody {
        image: Some(container.image.clone()),
        working_dir: None,
        // The command's user is the container's (a `user` parameter, later, wins).
        user: (!task.user.is_empty()).then(|| task.user.clone()),
        ..Default::default()
    };
    if !task.shell.is_empty() {
        // As Mesos runs a shell command in a container: `/bin/sh -c COMMAND`, whatever the
        // image's entrypoint.
        body.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        body.cmd = Some(vec![task.shell.clone()]);
    } else if !task.arguments.is_empty() {
        // The image's entrypoint with these arguments (Mesos: shell false).
        body.cmd = Some(task.arguments.clone());
    }
    let mut cap_add = Vec::new();
    let mut cap_drop = Vec::new();
    for p in &container.parameters {
        let truthy = matches!(p.value.as_str(), "" | "true");
        match p.key.as_str() {
            "label" => {
                if let Some((k, v)) = p.value.split_once('=') {
                    // Drover's own labels cannot be overridden.
                    if !k.starts_with("drover.") {
                        labels.insert(k.to_string(), v.to_string());
                    }
                }
            }
            "env" => {
                if let Some((k, v)) = p.value.split_once('=') {
                    env.entry(k.to_string()).or_insert_with(|| v.to_string());
                }
            }
            "hostname" => body.hostname = Some(p.value.clone()),
            "user" => body.user = Some(p.value.clone()),
            "workdir" => body.working_dir = Some(p.value.clone()),
            "init" => host.init = Some(truthy),
            "read-only" => host.readonly_rootfs = Some(truthy),
            "cap-add" => cap_add.push(p.value.clone()),
            "cap-drop" => cap_drop.push(p.value.clone()),
            "shm-size" => host.shm_size = parse_bytes(&p.value),
            other => return Err(format!("parameter {other} is not applied by this agent")),
        }
    }
    if !cap_add.is_empty() {
        host.cap_add = Some(cap_add);
    }
    if !cap_drop.is_empty() {
        host.cap_drop = Some(cap_drop);
    }
    if !exposed.is_empty() {
        body.exposed_ports = Some(exposed);
    }
    body.env = Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
    body.labels = Some(labels);
    body.host_config = Some(host);
    Ok(body)
}

/// The container's environment: the task's, then Drover's (which win): `PORT0`…, `PORT`,
/// `PORTS`, `DROVER_*` and `MESOS_SANDBOX` (the sandbox as the container sees it). `PATH` is
/// the image's own.
fn environment(spec: &LaunchSpec) -> BTreeMap<String, String> {
    let mut env = super::environment(spec, Path::new(SANDBOX_MOUNT));
    env.remove("PATH");
    if let Some(path) = spec.task.environment.get("PATH") {
        env.insert("PATH".into(), path.clone());
    }
    env.insert("MESOS_SANDBOX".into(), SANDBOX_MOUNT.into());
    env
}

/// Appends the container's output to the sandbox's `stdout` and `stderr` until it ends.
async fn stream_logs(docker: Docker, id: String, sandbox: std::path::PathBuf) {
    let open = |name: &'static str| {
        let path = sandbox.join(name);
        async move {
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
        }
    };
    let (mut out, mut err) = match (open("stdout").await, open("stderr").await) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot open the sandbox's output files");
            return;
        }
    };
    let options = bollard::query_parameters::LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: "all".into(),
        ..Default::default()
    };
    let mut stream = Box::pin(docker.logs(&id, Some(options)));
    while let Some(item) = stream.next().await {
        let written = match item {
            Ok(bollard::container::LogOutput::StdErr { message }) => err.write_all(&message).await,
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                out.write_all(&message).await
            }
            Ok(bollard::container::LogOutput::StdIn { .. }) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "the container's output stream broke");
                break;
            }
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write the container's output to the sandbox");
            break;
        }
    }
    let _ = out.flush().await;
    let _ = err.flush().await;
}

/// How the container ended, from the engine.
struct Ended {
    exit_code: i64,
    oom_killed: bool,
}

/// Waits for the container to stop; reads its exit code and whether the OOM killer acted.
async fn wait_ended(docker: &Docker, id: &str) -> Result<Ended, String> {
    loop {
        let options = bollard::query_parameters::WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut wait = Box::pin(docker.wait_container(id, Some(options)));
        match wait.next().await {
            // A non-zero exit comes as an error of its own kind: the container ended too.
            Some(Ok(_)) | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => {}
            Some(Err(e)) if docker::is_not_found(&e) => {
                return Err("the container was removed while it ran".into())
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "waiting for the container failed; asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
        match docker.inspect_container(id, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                if state.running == Some(true) {
                    continue;
                }
                return Ok(Ended {
                    exit_code: state.exit_code.unwrap_or(-1),
                    oom_killed: state.oom_killed.unwrap_or(false),
                });
            }
            Err(e) if docker::is_not_found(&e) => {
                return Err("the container was removed while it ran".into())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot inspect the container; asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Waits for the container's end, stopping it when the agent asks (or on SIGTERM); reports
/// its end.
async fn supervise(
    spec: &LaunchSpec,
    running: Running,
    reporter: &mut Reporter,
    sigterm: &mut Option<tokio::signal::unix::Signal>,
) {
    let Running {
        docker,
        id,
        logs,
        memory_limit,
    } = running;
    let mut kill: Option<KillState> = None;
    let mut health = Checking::start(spec, || CheckPlace::Container {
        docker: docker.clone(),
        id: id.clone(),
    });
    let mut checking = health.as_mut();
    let ended = {
        let wait = wait_ended(&docker, &id);
        tokio::pin!(wait);
        loop {
            let deadline = kill
                .as_ref()
                .filter(|k| !k.sigkill_sent)
                .map(|k| k.deadline + STOP_SLACK);
            tokio::select! {
                ended = &mut wait => break ended,
                grace = reporter.link.kills.recv() => {
                    if let Some(grace) = grace {
                        request_stop(&docker, &id, &mut kill, grace);
                    }
                }
                Some(()) = next_sigterm(sigterm) => {
                    tracing::info!("SIGTERM: stopping the container");
                    request_stop(&docker, &id, &mut kill, spec.kill_grace(None));
                }
                Some(result) = Checking::next(&mut checking) => {
                    if kill.is_some() {
                        continue;
                    }
                    let Some(c) = checking.as_mut() else { continue };
                    if let Some(why) = c.observe(result, reporter).await {
                        tracing::info!(container = %id, "unhealthy: stopping the container");
                        request_stop(&docker, &id, &mut kill, spec.kill_grace(None));
                        if let Some(k) = kill.as_mut() {
                            k.unhealthy = Some(why);
                        }
                    }
                }
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::warn!(container = %id, "still running after its stop: SIGKILL");
                    let options = bollard::query_parameters::KillContainerOptions {
                        signal: "SIGKILL".into(),
                    };
                    if let Err(e) = docker.kill_container(&id, Some(options)).await {
                        tracing::warn!(error = %e, "cannot SIGKILL the container");
                    }
                    if let Some(k) = kill.as_mut() {
                        k.sigkill_sent = true;
                    }
                }
            }
        }
    };
    drop(health);
    // The output stream ends with the container; what it had is in the sandbox before the end
    // is reported.
    if tokio::time::timeout(LOG_DRAIN, logs).await.is_err() {
        tracing::warn!("the container's output did not drain in time");
    }
    let memory = ended
        .as_ref()
        .is_ok_and(|e| e.oom_killed)
        .then_some(MemoryLimitHit {
            oom_kills: 1,
            limit_bytes: memory_limit,
        });
    let status = ended
        .map(|e| ExitStatus::from_raw(((e.exit_code & 0xff) as i32) << 8))
        .map_err(|e| format!("lost track of the container: {e}"));
    reporter
        .report_end(status, kill.as_ref(), memory.as_ref())
        .await;
}

/// Asks the engine to stop the container with `grace` (it sends SIGTERM, then SIGKILL when
/// the grace is over); a later request may only shorten the grace.
fn request_stop(docker: &Docker, id: &str, kill: &mut Option<KillState>, grace: Duration) {
    if KillState::request(kill, grace) == KillRequest::Unchanged {
        return;
    }
    tracing::info!(container = %id, grace_ms = grace.as_millis() as u64, "kill requested: docker stop");
    let seconds = grace.as_secs_f64().ceil().min(i32::MAX as f64) as i32;
    let options = bollard::query_parameters::StopContainerOptions {
        t: Some(seconds),
        signal: None,
    };
    let docker = docker.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        if let Err(e) = docker.stop_container(&id, Some(options)).await {
            if !docker::is_not_found(&e) {
                tracing::warn!(error = %e, "docker stop failed");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::CgroupMode;
    use crate::ids::{AgentId, TaskId};
    use drover_model::container::{Parameter, PortMapping, PortProtocol, VolumeSpec};

    fn spec(shell: &str) -> LaunchSpec {
        let mut spec = crate::executor::tests::launch_spec(
            shell,
            &[("A", "1")],
            "cpus:0.5;mem:64;ports:[31000-31000]",
            CgroupMode::none("test"),
        );
        spec.agent_id = AgentId::new("a1").unwrap();
        spec.task.task_id = TaskId::new("web.1").unwrap();
        spec
    }

    fn container() -> ContainerSpec {
        ContainerSpec {
            image: "web:1".into(),
            network: DockerNetwork::Bridge,
            port_mappings: vec![PortMapping {
                host_port: 31000,
                container_port: 80,
                protocol: PortProtocol::Tcp,
            }],
            privileged: false,
            parameters: vec![
                Parameter {
                    key: "label".into(),
                    value: "team=a".into(),
                },
                Parameter {
                    key: "label".into(),
                    value: "drover.task_id=forged".into(),
                },
                Parameter {
                    key: "shm-size".into(),
                    value: "64m".into(),
                },
            ],
            force_pull_image: false,
            volumes: vec![VolumeSpec {
                container_path: "/data".into(),
                host_path: "data".into(),
                read_only: true,
            }],
        }
    }

    #[test]
    fn the_container_gets_the_task_s_limits_ports_mounts_environment_and_labels() {
        let sandbox = tempfile::tempdir().unwrap();
        let body = create_body(&spec("serve"), sandbox.path(), &container()).unwrap();
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(
            (host.cpu_period, host.cpu_quota),
            (Some(100_000), Some(50_000))
        );
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, host.memory, "no swap beyond the limit");
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.shm_size, Some(64 << 20));
        let bindings = host.port_bindings.unwrap();
        let b = bindings["80/tcp"].as_ref().unwrap();
        assert_eq!(b[0].host_port.as_deref(), Some("31000"));
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let binds = host.binds.unwrap();
        assert_eq!(
            binds[0],
            format!("{}:/mnt/mesos/sandbox:rw", sandbox.path().display())
        );
        assert_eq!(
            binds[1],
            format!("{}:/data:ro", sandbox.path().join("data").display())
        );
        assert!(sandbox.path().join("data").is_dir(), "made for the mount");
        let env = body.env.unwrap();
        for want in [
            "A=1",
            "PORT0=31000",
            "PORT=31000",
            "DROVER_TASK_ID=web.1",
            "DROVER_SANDBOX=/mnt/mesos/sandbox",
            "MESOS_SANDBOX=/mnt/mesos/sandbox",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
        }
        assert!(
            !env.iter().any(|e| e.starts_with("PATH=")),
            "the image's PATH"
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels["drover.task_id"], "web.1", "not overridden");
        assert_eq!(labels["drover.agent_id"], "a1");
        assert_eq!(labels["team"], "a");
        assert_eq!(
            body.entrypoint,
            Some(vec!["/bin/sh".to_string(), "-c".to_string()])
        );
        assert_eq!(body.cmd, Some(vec!["serve".to_string()]));
        // Without a command the image's own runs, with the task's arguments if it has some.
        let own = create_body(&spec(""), sandbox.path(), &container()).unwrap();
        assert_eq!((own.entrypoint, own.cmd), (None, None));
        let mut with_args = spec("");
        with_args.task.arguments = vec!["-p".into(), "8080".into()];
        let args = create_body(&with_args, sandbox.path(), &container()).unwrap();
        assert_eq!(
            (args.entrypoint, args.cmd),
            (None, Some(vec!["-p".to_string(), "8080".to_string()]))
        );
    }
}
