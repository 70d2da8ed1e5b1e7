//! Conversions between Mesos v1 types (`drover_mesos::v1`) and Drover's framework API types
//! (`drover_proto::v1`), both ways, pure. A Mesos request becomes the request the gRPC edge
//! takes, so the same validation and the same engine command follow; an engine event becomes
//! the Mesos event a Mesos framework expects.
//!
//! What Drover does not run is refused here with the field at fault: reserved or SET/TEXT
//! resources, fetcher URIs, non-VALUE environment variables, HTTP/TCP health checks in a
//! TaskInfo, MESOS container images, the DEFAULT executor (task groups). DOCKER containers
//! convert to Drover's (the agents run them through their Docker engine); custom executors
//! (an ExecutorInfo with a command) run through the agents' executor API.

use std::net::Ipv4Addr;

use drover_mesos::v1 as mesos;
use drover_proto::v1;

/// A refused Mesos request: the field at fault (Mesos JSON path) and why.
pub use drover_mesos::Refused;

fn refused(field: impl Into<String>, reason: impl Into<String>) -> Refused {
    Refused::new(field, reason)
}

/// What converting events for one framework stream needs to know.
#[derive(Debug, Clone)]
pub struct StreamContext {
    /// The framework's role, as offered resources carry it.
    pub role: String,
    pub master_info: mesos::MasterInfo,
}

/// The master's MasterInfo as Mesos sends it: `id`, the IPv4 address as an integer in
/// network byte order, port, hostname, pid and address, with the Mesos API version.
pub fn master_info(id: u64, addr: &str, version: &str) -> mesos::MasterInfo {
    let (host, port) = split_host_port(addr);
    let ip = host.parse::<Ipv4Addr>().ok();
    mesos::MasterInfo {
        id: id.to_string(),
        ip: ip.map_or(0, |ip| u32::from_le_bytes(ip.octets())),
        port: u32::from(port),
        pid: Some(format!("master@{host}:{port}")),
        hostname: Some(host.to_string()),
        version: Some(version.to_string()),
        address: Some(mesos::Address {
            hostname: Some(host.to_string()),
            ip: ip.map(|ip| ip.to_string()),
            port: i32::from(port),
        }),
        capabilities: vec![],
    }
}

/// `host:port` split; a missing or bad port reads as 0.
pub fn split_host_port(addr: &str) -> (&str, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(0)),
        None => (addr, 0),
    }
}

/// Seconds from a Mesos client, made acceptable as Mesos does rather than refused: not a
/// number or negative gives `default`, more than Drover's bound gives the bound.
pub fn lenient_seconds(field: &str, s: f64, default: f64) -> f64 {
    if !s.is_finite() || s < 0.0 {
        tracing::debug!(field, value = s, "not a duration; using the default");
        default
    } else if s > crate::leader::convert::MAX_SECONDS {
        tracing::debug!(
            field,
            value = s,
            max = crate::leader::convert::MAX_SECONDS,
            "duration capped"
        );
        crate::leader::convert::MAX_SECONDS
    } else {
        s
    }
}

// ---- FrameworkInfo ----

/// A Mesos FrameworkInfo as Drover's. `user`, `hostname`, `webui_url`, `checkpoint` (Drover
/// always checkpoints) and `labels` are accepted and not kept; more than one role is refused;
/// a failover timeout beyond Drover's bound is cut to it (Mesos takes any).
#[allow(deprecated)] // `role`: Mesos still sends it for frameworks that are not MULTI_ROLE.
pub fn framework_info(f: &mesos::FrameworkInfo) -> Result<v1::FrameworkInfo, Refused> {
    let field = "subscribe.framework_info";
    let role = match (f.roles.as_slice(), f.role.as_deref()) {
        ([], None) => String::new(),
        ([], Some(r)) => r.to_string(),
        ([r], _) => r.clone(),
        (_, _) => {
            return Err(refused(
                format!("{field}.roles"),
                "a framework has one role in Drover; name at most one",
            ))
        }
    };
    let role = if role == "*" { String::new() } else { role };
    let mut capabilities = Vec::new();
    for c in &f.capabilities {
        if c.r#type == Some(mesos::framework_info::capability::Type::PartitionAware as i32) {
            capabilities.push(v1::FrameworkCapability::PartitionAware as i32);
        }
        // The others (GPU_RESOURCES, which pymesos always adds, MULTI_ROLE, ...) change
        // nothing Drover offers or sends.
    }
    Ok(v1::FrameworkInfo {
        id: f.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
        name: f.name.clone(),
        role,
        principal: f.principal.clone().unwrap_or_default(),
        failover_timeout_seconds: lenient_seconds(
            "subscribe.framework_info.failover_timeout",
            f.failover_timeout.unwrap_or(0.0),
            0.0,
        ),
        capabilities,
    })
}

/// Whether the FrameworkInfo names PARTITION_AWARE.
pub fn partition_aware(f: &mesos::FrameworkInfo) -> bool {
    f.capabilities
        .iter()
        .any(|c| c.r#type == Some(mesos::framework_info::capability::Type::PartitionAware as i32))
}

// ---- Resources ----

/// Mesos resources as Drover's: unreserved SCALAR and RANGES only.
pub fn resources(field: &str, rs: &[mesos::Resource]) -> Result<Vec<v1::Resource>, Refused> {
    use mesos::value::Type;
    let mut out = Vec::with_capacity(rs.len());
    for (i, r) in rs.iter().enumerate() {
        let at = |f: &str| format!("{field}[{i}]{f}");
        if r.reservation.is_some() || !r.reservations.is_empty() {
            return Err(refused(
                at(".reservations"),
                "reserved resources are not supported (Drover has no reservations)",
            ));
        }
        #[allow(deprecated)] // `role`: a role other than "*" is a static reservation.
        if r.role.as_deref().is_some_and(|role| role != "*") {
            return Err(refused(
                at(".role"),
                "reserved resources are not supported (Drover has no reservations)",
            ));
        }
        if r.disk.is_some() {
            return Err(refused(at(".disk"), "disk volumes are not supported"));
        }
        if r.revocable.is_some() || r.shared.is_some() {
            return Err(refused(
                at(if r.revocable.is_some() {
                    ".revocable"
                } else {
                    ".shared"
                }),
                "revocable and shared resources are not supported",
            ));
        }
        let value = match Type::try_from(r.r#type) {
            Ok(Type::Scalar) => {
                let s = r
                    .scalar
                    .as_ref()
                    .ok_or_else(|| refused(at(".scalar"), "missing for a SCALAR resource"))?;
                v1::resource::Value::Scalar(s.value)
            }
            Ok(Type::Ranges) => {
                let rs = r
                    .ranges
                    .as_ref()
                    .ok_or_else(|| refused(at(".ranges"), "missing for a RANGES resource"))?;
                v1::resource::Value::Ranges(drover_mesos::convert::ranges_from_mesos(rs))
            }
            _ => {
                return Err(refused(
                    at(".type"),
                    "only SCALAR and RANGES resources are supported",
                ))
            }
        };
        out.push(v1::Resource {
            name: r.name.clone(),
            value: Some(value),
        });
    }
    Ok(out)
}

pub use drover_mesos::convert::attributes_to_mesos;

/// Drover resources as Mesos's, allocated to `role` (`*` when empty).
pub fn resources_to_mesos(rs: &[v1::Resource], role: &str) -> Vec<mesos::Resource> {
    drover_mesos::convert::resources_to_mesos(rs, Some(role))
}

// ---- Offers ----

pub fn offer_to_mesos(o: &v1::Offer, role: &str) -> mesos::Offer {
    let url = (!o.agent_addr.is_empty()).then(|| {
        let (host, port) = split_host_port(&o.agent_addr);
        mesos::Url {
            scheme: "http".into(),
            address: mesos::Address {
                hostname: Some(host.to_string()),
                ip: host.parse::<Ipv4Addr>().ok().map(|ip| ip.to_string()),
                port: i32::from(port),
            },
            path: Some("/slave(1)".into()),
            ..Default::default()
        }
    });
    let role = if role.is_empty() { "*" } else { role };
    mesos::Offer {
        id: mesos::OfferId {
            value: o.id.clone(),
        },
        framework_id: mesos::FrameworkId {
            value: o.framework_id.clone(),
        },
        agent_id: mesos::AgentId {
            value: o.agent_id.clone(),
        },
        hostname: o.hostname.clone(),
        url,
        resources: resources_to_mesos(&o.resources, role),
        attributes: attributes_to_mesos(&o.attributes),
        executor_ids: o
            .executor_ids
            .iter()
            .map(|e| mesos::ExecutorId { value: e.clone() })
            .collect(),
        allocation_info: Some(mesos::resource::AllocationInfo {
            role: Some(role.to_string()),
        }),
    }
}

// ---- TaskInfo ----

/// A Mesos TaskInfo as Drover's: a command, or a custom executor that runs the task (with
/// the task's `data`). `agent_id` is not read (the offers name the agent; mesoshttp sends
/// `slave_id` instead), nor `labels`.
pub fn task_info(field: &str, t: &mesos::TaskInfo) -> Result<v1::TaskInfo, Refused> {
    let at = |f: &str| format!("{field}.{f}");
    if t.executor.is_some() && t.command.is_some() {
        return Err(refused(
            at("command"),
            "set either command or executor, not both",
        ));
    }
    let executor = t
        .executor
        .as_ref()
        .map(|e| executor_info(&at("executor"), e))
        .transpose()?;
    let container = container(&at("container"), t.container.as_ref())?;
    if container.is_some() && executor.is_some() {
        return Err(refused(
            at("container"),
            "a custom executor's task cannot have a container of its own",
        ));
    }
    if t.max_completion_time.is_some() {
        return Err(refused(at("max_completion_time"), "not supported"));
    }
    let kill_grace_seconds = t
        .kill_policy
        .as_ref()
        .and_then(|k| k.grace_period.as_ref())
        .map(|d| nanos_to_seconds(&at("kill_policy.grace_period.nanoseconds"), d.nanoseconds))
        .transpose()?
        .unwrap_or(0.0);
    if let Some(executor) = executor {
        if t.health_check.is_some() {
            return Err(refused(
                at("health_check"),
                "a custom executor runs its tasks' checks itself",
            ));
        }
        return Ok(v1::TaskInfo {
            task_id: t.task_id.value.clone(),
            name: t.name.clone(),
            resources: resources(&at("resources"), &t.resources)?,
            command: None,
            kill_grace_seconds,
            executor: Some(executor),
            data: t.data.clone().unwrap_or_default(),
            ..Default::default()
        });
    }
    if container.is_some() {
        // A Docker task may leave the command out (or give only its environment): the
        // image's own entrypoint and command run then.
        let command = t.command.clone().unwrap_or_default();
        let environment = environment(&at("command.environment"), command.environment.as_ref())?;
        let image_default = command.value.as_deref().unwrap_or("").trim().is_empty();
        // Without a value, the arguments go to the image's entrypoint (Docker's CMD), as
        // Mesos's docker containerizer passes them.
        if image_default && command.shell != Some(false) && !command.arguments.is_empty() {
            return Err(refused(
                at("command.shell"),
                "arguments without a value go to the image's entrypoint: set shell to false",
            ));
        }
        let arguments = if image_default && command.shell == Some(false) {
            command.arguments.clone()
        } else {
            Vec::new()
        };
        let shell = if image_default {
            if !command.uris.is_empty() {
                return Err(refused(
                    at("command.uris"),
                    "fetching URIs is not supported",
                ));
            }
            String::new()
        } else {
            command_line(&at("command"), &command)?
        };
        let mut task = command_task(field, t, shell, environment, kill_grace_seconds, container)?;
        if let Some(c) = task.command.as_mut() {
            c.arguments = arguments;
        }
        return Ok(task);
    }
    let command = t.command.as_ref().ok_or_else(|| {
        refused(
            at("command"),
            "missing (a task needs a command or an executor)",
        )
    })?;
    let shell = command_line(&at("command"), command)?;
    let environment = environment(&at("command.environment"), command.environment.as_ref())?;
    command_task(field, t, shell, environment, kill_grace_seconds, None)
}

/// A task Drover's executor runs (a command, in a container when it has one), with its
/// health check.
fn command_task(
    field: &str,
    t: &mesos::TaskInfo,
    shell: String,
    environment: std::collections::HashMap<String, String>,
    kill_grace_seconds: f64,
    container: Option<v1::ContainerInfo>,
) -> Result<v1::TaskInfo, Refused> {
    let at = |f: &str| format!("{field}.{f}");
    let health_check = t
        .health_check
        .as_ref()
        .map(|h| health_check(&at("health_check"), h))
        .transpose()?;
    Ok(v1::TaskInfo {
        task_id: t.task_id.value.clone(),
        name: t.name.clone(),
        resources: resources(&at("resources"), &t.resources)?,
        command: Some(v1::CommandInfo {
            shell,
            environment,
            user: t
                .command
                .as_ref()
                .and_then(|c| c.user.clone())
                .unwrap_or_default(),
            ..Default::default()
        }),
        kill_grace_seconds,
        health_check,
        container,
        ..Default::default()
    })
}

/// A custom executor: a command of its own (the DEFAULT executor, which runs task groups, is
/// not supported), plain-process containers only.
fn executor_info(field: &str, e: &mesos::ExecutorInfo) -> Result<v1::ExecutorInfo, Refused> {
    use mesos::executor_info::Type;
    let at = |f: &str| format!("{field}.{f}");
    if e.r#type == Some(Type::Default as i32) {
        return Err(refused(
            at("type"),
            "the DEFAULT executor is not supported; give a CUSTOM executor with a command (LAUNCH_GROUP takes one too)",
        ));
    }
    if container(&at("container"), e.container.as_ref())?.is_some() {
        return Err(refused(
            at("container.type"),
            "a custom executor runs as a plain process: only MESOS containers",
        ));
    }
    let command = e
        .command
        .as_ref()
        .ok_or_else(|| refused(at("command"), "missing (a custom executor needs a command)"))?;
    let shell = command_line(&at("command"), command)?;
    let environment = environment(&at("command.environment"), command.environment.as_ref())?;
    if let Some(f) = &e.framework_id {
        if f.value.is_empty() {
            return Err(refused(at("framework_id.value"), "empty"));
        }
    }
    let shutdown_grace_seconds = e
        .shutdown_grace_period
        .as_ref()
        .map(|d| nanos_to_seconds(&at("shutdown_grace_period.nanoseconds"), d.nanoseconds))
        .transpose()?
        .unwrap_or(0.0);
    Ok(v1::ExecutorInfo {
        executor_id: e.executor_id.value.clone(),
        name: e.name.clone().unwrap_or_default(),
        command: Some(v1::CommandInfo {
            shell,
            environment,
            user: command.user.clone().unwrap_or_default(),
            ..Default::default()
        }),
        resources: resources(&at("resources"), &e.resources)?,
        shutdown_grace_seconds,
        data: e.data.clone().unwrap_or_default(),
        charged: false,
    })
}

/// A container as Drover's: DOCKER (image, network, port mappings, privileged, parameters,
/// force_pull_image, volumes; a USER network's name from `network_infos[0].name`), or `None`
/// for a MESOS one (a plain process), which may not name an image. The fields are checked
/// where every task is, at ACCEPT.
fn container(
    field: &str,
    c: Option<&mesos::ContainerInfo>,
) -> Result<Option<v1::ContainerInfo>, Refused> {
    use mesos::container_info::{docker_info, volume, Type};
    use v1::container_info as drover;
    let at = |f: &str| format!("{field}.{f}");
    let Some(c) = c else { return Ok(None) };
    if c.r#type == Type::Mesos as i32 {
        if c.mesos.as_ref().is_some_and(|m| m.image.is_some()) {
            return Err(refused(
                at("mesos.image"),
                "MESOS container images are not supported; use a DOCKER container",
            ));
        }
        if c.docker.is_some() || !c.volumes.is_empty() {
            let what = if c.docker.is_some() {
                "docker"
            } else {
                "volumes"
            };
            return Err(refused(
                at(what),
                "a MESOS container is a plain process: images and volumes need type DOCKER",
            ));
        }
        return Ok(None);
    }
    if c.r#type != Type::Docker as i32 {
        return Err(refused(at("type"), "DOCKER or MESOS"));
    }
    let d = c
        .docker
        .as_ref()
        .ok_or_else(|| refused(at("docker"), "missing: a DOCKER container names its image"))?;
    let network = match d.network.map(docker_info::Network::try_from) {
        None | Some(Ok(docker_info::Network::Host)) => drover::docker_info::Network::Host,
        Some(Ok(docker_info::Network::Bridge)) => drover::docker_info::Network::Bridge,
        Some(Ok(docker_info::Network::None)) => drover::docker_info::Network::None,
        Some(Ok(docker_info::Network::User)) => drover::docker_info::Network::User,
        Some(Err(_)) => return Err(refused(at("docker.network"), "HOST, BRIDGE, NONE or USER")),
    };
    let network_name = if network == drover::docker_info::Network::User {
        c.network_infos
            .first()
            .and_then(|n| n.name.clone())
            .ok_or_else(|| {
                refused(
                    at("network_infos"),
                    "a USER network names its Docker network in network_infos[0].name",
                )
            })?
    } else {
        String::new()
    };
    let volumes = c
        .volumes
        .iter()
        .map(|v| drover::Volume {
            container_path: v.container_path.clone(),
            host_path: v.host_path.clone().unwrap_or_default(),
            mode: match v.mode.map(volume::Mode::try_from) {
                Some(Ok(volume::Mode::Ro)) => drover::volume::Mode::Ro as i32,
                _ => drover::volume::Mode::Rw as i32,
            },
        })
        .collect();
    Ok(Some(v1::ContainerInfo {
        r#type: drover::Type::Docker as i32,
        volumes,
        docker: Some(drover::DockerInfo {
            image: d.image.clone(),
            network: network as i32,
            port_mappings: d
                .port_mappings
                .iter()
                .map(|m| drover::docker_info::PortMapping {
                    host_port: m.host_port,
                    container_port: m.container_port,
                    protocol: m.protocol.clone().unwrap_or_default(),
                })
                .collect(),
            privileged: d.privileged.unwrap_or(false),
            parameters: d
                .parameters
                .iter()
                .map(|p| drover::docker_info::Parameter {
                    key: p.key.clone(),
                    value: p.value.clone(),
                })
                .collect(),
            force_pull_image: d.force_pull_image.unwrap_or(false),
            network_name,
        }),
    }))
}

fn nanos_to_seconds(field: &str, nanos: i64) -> Result<f64, Refused> {
    if nanos < 0 {
        return Err(refused(field, "negative"));
    }
    Ok(nanos as f64 / 1e9)
}

/// The shell command a CommandInfo runs: `value` with `shell` true (the default), else
/// `value` run directly with `arguments[1..]` (Mesos passes `arguments` as the whole argv),
/// each quoted for the shell.
fn command_line(field: &str, c: &mesos::CommandInfo) -> Result<String, Refused> {
    if !c.uris.is_empty() {
        return Err(refused(
            format!("{field}.uris"),
            "fetching URIs is not supported; put what the task needs in its command",
        ));
    }
    if c.user.is_some() {
        // Tasks run as the agent's user; Mesos would switch to this one.
        tracing::debug!(
            field,
            "command.user is ignored: tasks run as the agent's user"
        );
    }
    let value = c.value.clone().unwrap_or_default();
    if value.trim().is_empty() {
        return Err(refused(format!("{field}.value"), "missing or empty"));
    }
    if c.shell.unwrap_or(true) {
        return Ok(value);
    }
    let mut line = format!("exec {}", shell_quote(&value));
    for a in c.arguments.iter().skip(1) {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    Ok(line)
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn environment(
    field: &str,
    env: Option<&mesos::Environment>,
) -> Result<std::collections::HashMap<String, String>, Refused> {
    use mesos::environment::variable::Type;
    let mut out = std::collections::HashMap::new();
    for (i, v) in env
        .map(|e| e.variables.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let kind = v.r#type.unwrap_or(Type::Value as i32);
        if kind != Type::Value as i32 {
            return Err(refused(
                format!("{field}.variables[{i}].type"),
                "only VALUE variables are supported (no secrets)",
            ));
        }
        out.insert(v.name.clone(), v.value.clone().unwrap_or_default());
    }
    Ok(out)
}

/// A Mesos health check as Drover's: COMMAND checks, which the executor runs.
fn health_check(field: &str, h: &mesos::HealthCheck) -> Result<v1::HealthCheck, Refused> {
    use mesos::health_check::Type;
    let kind = h.r#type.and_then(|t| Type::try_from(t).ok());
    let command = match (kind, &h.command) {
        (Some(Type::Command), Some(c)) | (None, Some(c)) => c,
        (Some(Type::Command) | None, None) => {
            return Err(refused(format!("{field}.command"), "missing"))
        }
        _ => {
            return Err(refused(
                format!("{field}.type"),
                "only COMMAND health checks are supported in a TaskInfo",
            ))
        }
    };
    Ok(v1::HealthCheck {
        delay_seconds: h.delay_seconds.unwrap_or(15.0),
        interval_seconds: h.interval_seconds.unwrap_or(10.0),
        timeout_seconds: h.timeout_seconds.unwrap_or(20.0),
        consecutive_failures: h.consecutive_failures.unwrap_or(3),
        grace_period_seconds: h.grace_period_seconds.unwrap_or(10.0),
        command: Some(v1::CommandInfo {
            shell: command_line(&format!("{field}.command"), command)?,
            environment: environment(
                &format!("{field}.command.environment"),
                command.environment.as_ref(),
            )?,
            ..Default::default()
        }),
    })
}

// ---- Status updates ----

/// Reason of the updates the Mesos edge makes for tasks of an ACCEPT on offers that are
/// gone (TASK_DROPPED, or TASK_LOST for a framework that is not partition-aware).
pub const INVALID_OFFERS: &str = "invalid_offers";
/// Reason of the TASK_ERROR updates the Mesos edge makes for tasks it refuses.
pub const TASK_INVALID: &str = "task_invalid";
/// Reason of the TASK_ERROR updates for tasks the ACLs do not let the framework run.
pub const TASK_UNAUTHORIZED: &str = "task_unauthorized";

/// The Mesos reason for a Drover reason, where there is one.
fn reason_to_mesos(reason: &str) -> Option<mesos::task_status::Reason> {
    use drover_model::health::{REASON_HEALTHY, REASON_UNHEALTHY};
    use mesos::task_status::Reason;

    use crate::registry::cluster::reason as agents;
    Some(match reason {
        "reconciliation" => Reason::Reconciliation,
        r if r == REASON_HEALTHY || r == REASON_UNHEALTHY => Reason::TaskHealthCheckStatusUpdated,
        "memory_limit" => Reason::ContainerLimitationMemory,
        "command_exited" | "command_signaled" | "executor_failed" => Reason::CommandExecutorFailed,
        "killed" => return None,
        "executor_terminated" => Reason::ExecutorTerminated,
        "executor_registration_timeout" => Reason::ExecutorRegistrationTimeout,
        "executor_reregistration_timeout" => Reason::ExecutorReregistrationTimeout,
        "killed_before_launch" => Reason::TaskKilledDuringLaunch,
        // Drover tells an image that could not be had from other launch failures; Mesos
        // does not.
        "container_image_pull_failed" => Reason::ContainerLaunchFailed,
        INVALID_OFFERS => Reason::InvalidOffers,
        TASK_INVALID => Reason::TaskInvalid,
        TASK_UNAUTHORIZED => Reason::TaskUnauthorized,
        agents::TASK_UNKNOWN_TO_AGENT => Reason::TaskUnknown,
        agents::AGENT_REREGISTERED => Reason::AgentReregistered,
        agents::AGENT_UNREACHABLE | agents::AGENT_REMOVED => Reason::AgentRemoved,
        agents::AGENT_REMOVED_BY_OPERATOR => Reason::AgentRemovedByOperator,
        // What a custom executor reported in Mesos's words comes back as it was.
        other => return Reason::from_str_name(&format!("REASON_{}", other.to_ascii_uppercase())),
    })
}

fn state_to_mesos(raw: i32) -> i32 {
    v1::TaskState::try_from(raw)
        .ok()
        .and_then(|s| mesos::TaskState::from_str_name(s.as_str_name()))
        .unwrap_or(mesos::TaskState::TaskUnknown) as i32
}

fn source_to_mesos(raw: i32) -> Option<i32> {
    use mesos::task_status::Source;
    Some(match v1::StatusSource::try_from(raw).ok()? {
        v1::StatusSource::SourceExecutor => Source::Executor as i32,
        v1::StatusSource::SourceAgent => Source::Agent as i32,
        v1::StatusSource::SourceMaster => Source::Master as i32,
        v1::StatusSource::SourceUnspecified => return None,
    })
}

/// A Drover status as Mesos's. A status with a uuid (reliable: the framework acknowledges it)
/// always carries its agent id, which clients acknowledge with.
pub fn status_to_mesos(s: &v1::TaskStatus) -> mesos::TaskStatus {
    let uuid = (!s.uuid.is_empty())
        .then(|| uuid::Uuid::parse_str(&s.uuid).ok())
        .flatten()
        .map(|u| u.as_bytes().to_vec());
    let reason = reason_to_mesos(&s.reason);
    let mut message = s.message.clone();
    if reason.is_none() && !s.reason.is_empty() {
        // Keep Drover's reason readable where Mesos has no name for it.
        message = if message.is_empty() {
            s.reason.clone()
        } else {
            format!("{message} ({})", s.reason)
        };
    }
    mesos::TaskStatus {
        task_id: mesos::TaskId {
            value: s.task_id.clone(),
        },
        state: state_to_mesos(s.state),
        message: (!message.is_empty()).then_some(message),
        source: source_to_mesos(s.source),
        reason: reason.map(|r| r as i32),
        agent_id: (!s.agent_id.is_empty()).then(|| mesos::AgentId {
            value: s.agent_id.clone(),
        }),
        timestamp: Some(s.timestamp_ms as f64 / 1000.0),
        uuid,
        healthy: s.healthy,
        executor_id: (!s.executor_id.is_empty()).then(|| mesos::ExecutorId {
            value: s.executor_id.clone(),
        }),
        ..Default::default()
    }
}

// ---- Events ----

/// A Drover framework event as Mesos's.
pub fn event_to_mesos(e: &v1::Event, cx: &StreamContext) -> Option<mesos::scheduler::Event> {
    use mesos::scheduler::event;
    use mesos::scheduler::event::Type;
    let mut out = mesos::scheduler::Event::default();
    match e.event.as_ref()? {
        v1::event::Event::Subscribed(s) => {
            out.r#type = Some(Type::Subscribed as i32);
            out.subscribed = Some(event::Subscribed {
                framework_id: mesos::FrameworkId {
                    value: s.framework_id.clone(),
                },
                heartbeat_interval_seconds: Some(s.heartbeat_interval_seconds),
                master_info: Some(cx.master_info.clone()),
            });
        }
        v1::event::Event::Offers(o) => {
            out.r#type = Some(Type::Offers as i32);
            out.offers = Some(event::Offers {
                offers: o
                    .offers
                    .iter()
                    .map(|o| offer_to_mesos(o, &cx.role))
                    .collect(),
            });
        }
        v1::event::Event::Rescind(r) => {
            out.r#type = Some(Type::Rescind as i32);
            out.rescind = Some(event::Rescind {
                offer_id: mesos::OfferId {
                    value: r.offer_id.clone(),
                },
            });
        }
        v1::event::Event::Update(u) => {
            out.r#type = Some(Type::Update as i32);
            out.update = Some(event::Update {
                status: u.status.as_ref().map(status_to_mesos).unwrap_or_default(),
            });
        }
        v1::event::Event::Heartbeat(_) => out.r#type = Some(Type::Heartbeat as i32),
        v1::event::Event::Error(e) => {
            out.r#type = Some(Type::Error as i32);
            out.error = Some(event::Error {
                message: e.message.clone(),
            });
        }
        v1::event::Event::Message(m) => {
            out.r#type = Some(Type::Message as i32);
            out.message = Some(event::Message {
                agent_id: mesos::AgentId {
                    value: m.agent_id.clone(),
                },
                executor_id: mesos::ExecutorId {
                    value: m.executor_id.clone(),
                },
                data: m.data.clone(),
            });
        }
        v1::event::Event::Failure(f) => {
            out.r#type = Some(Type::Failure as i32);
            out.failure = Some(event::Failure {
                agent_id: Some(mesos::AgentId {
                    value: f.agent_id.clone(),
                }),
                executor_id: Some(mesos::ExecutorId {
                    value: f.executor_id.clone(),
                }),
                // Clients read a status whenever an executor is named (pymesos does).
                status: Some(f.status.unwrap_or(-1)),
            });
        }
    }
    Some(out)
}

/// A HEARTBEAT event.
pub fn heartbeat() -> mesos::scheduler::Event {
    mesos::scheduler::Event {
        r#type: Some(mesos::scheduler::event::Type::Heartbeat as i32),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesos_task(json: serde_json::Value) -> mesos::TaskInfo {
        drover_mesos::from_json(json.to_string().as_bytes()).expect("a TaskInfo")
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": "a1"},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31001}]}}
            ],
            "command": {"value": "echo hi"}
        })
    }

    #[test]
    fn a_task_of_a_custom_executor_converts_with_its_data() {
        let mut j = base();
        j.as_object_mut().unwrap().remove("command");
        j["data"] = serde_json::json!("aGVsbG8=");
        j["executor"] = serde_json::json!({
            "executor_id": {"value": "e1"}, "type": "CUSTOM", "name": "mine",
            "framework_id": {"value": "f1"},
            "command": {"value": "python3 executor.py", "environment": {"variables": [{"name": "K", "value": "v"}]}},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
            "shutdown_grace_period": {"nanoseconds": 2500000000u64},
            "data": "ZXhlYw=="
        });
        let t = task_info("task", &mesos_task(j)).unwrap();
        assert!(t.command.is_none());
        assert_eq!(t.data, b"hello");
        let e = t.executor.expect("executor");
        assert_eq!(e.executor_id, "e1");
        assert_eq!(e.name, "mine");
        let c = e.command.expect("command");
        assert_eq!(c.shell, "python3 executor.py");
        assert_eq!(c.environment.get("K").map(String::as_str), Some("v"));
        assert_eq!(e.shutdown_grace_seconds, 2.5);
        assert_eq!(e.data, b"exec");
        assert!(!e.charged);
        assert_eq!(e.resources.len(), 1);
        // Its updates name it, and its reasons come back in Mesos's words.
        let m = status_to_mesos(&v1::TaskStatus {
            task_id: "t1".into(),
            agent_id: "a1".into(),
            state: v1::TaskState::TaskFailed as i32,
            reason: "executor_terminated".into(),
            executor_id: "e1".into(),
            ..Default::default()
        });
        assert_eq!(m.executor_id.map(|e| e.value).as_deref(), Some("e1"));
        assert_eq!(
            m.reason,
            Some(mesos::task_status::Reason::ExecutorTerminated as i32)
        );
        assert_eq!(
            reason_to_mesos("container_limitation_disk"),
            Some(mesos::task_status::Reason::ContainerLimitationDisk)
        );
    }

    #[test]
    fn a_command_task_converts() {
        let t = task_info("task", &mesos_task(base())).unwrap();
        assert_eq!(t.task_id, "t1");
        assert_eq!(t.command.unwrap().shell, "echo hi");
        assert_eq!(t.resources.len(), 2);
        assert_eq!(t.resources[0].value, Some(v1::resource::Value::Scalar(0.5)));
    }

    #[test]
    fn a_command_without_shell_runs_its_arguments_quoted() {
        let mut j = base();
        j["command"] = serde_json::json!({
            "shell": false, "value": "/bin/echo", "arguments": ["echo", "it's", "a b"],
            "environment": {"variables": [{"name": "K", "value": "v"}]}
        });
        let t = task_info("task", &mesos_task(j)).unwrap();
        let c = t.command.unwrap();
        assert_eq!(c.shell, r#"exec '/bin/echo' 'it'\''s' 'a b'"#);
        assert_eq!(c.environment.get("K").map(String::as_str), Some("v"));
    }

    #[test]
    fn a_docker_task_converts_with_its_container_and_may_leave_its_command_out() {
        let mut j = base();
        j.as_object_mut().unwrap().remove("command");
        j["container"] = serde_json::json!({
            "type": "DOCKER",
            "docker": {"image": "web:1", "network": "USER", "privileged": false,
                "port_mappings": [{"host_port": 31000, "container_port": 80, "protocol": "tcp"}],
                "parameters": [{"key": "label", "value": "a=b"}], "force_pull_image": true},
            "network_infos": [{"name": "mynet"}],
            "volumes": [{"container_path": "/data", "host_path": "data", "mode": "RO"}]
        });
        let t = task_info("task", &mesos_task(j)).unwrap();
        assert_eq!(t.command.as_ref().map(|c| c.shell.as_str()), Some(""));
        let c = t.container.expect("container");
        assert_eq!(c.r#type, v1::container_info::Type::Docker as i32);
        let d = c.docker.expect("docker");
        assert_eq!(d.image, "web:1");
        assert_eq!(
            d.network,
            v1::container_info::docker_info::Network::User as i32
        );
        assert_eq!(d.network_name, "mynet");
        assert_eq!(
            (
                d.port_mappings[0].host_port,
                d.port_mappings[0].container_port
            ),
            (31000, 80)
        );
        assert_eq!(d.parameters[0].key, "label");
        assert!(d.force_pull_image);
        assert_eq!(
            c.volumes[0].mode,
            v1::container_info::volume::Mode::Ro as i32
        );
        // Arguments without a value go to the image's entrypoint.
        let mut args = base();
        args["command"] = serde_json::json!({"shell": false, "arguments": ["-p", "8080"]});
        args["container"] = serde_json::json!({"type": "DOCKER", "docker": {"image": "web:1"}});
        let c = task_info("task", &mesos_task(args))
            .unwrap()
            .command
            .expect("command");
        assert_eq!(
            (c.shell.as_str(), c.arguments),
            ("", vec!["-p".to_string(), "8080".to_string()])
        );
        // A MESOS container without an image is no container at all.
        let mut plain = base();
        plain["container"] = serde_json::json!({"type": "MESOS", "mesos": {}});
        assert!(task_info("task", &mesos_task(plain))
            .unwrap()
            .container
            .is_none());
    }

    #[test]
    fn what_drover_cannot_run_is_refused_naming_the_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                serde_json::json!({"command": null, "executor": {"executor_id": {"value": "e"}, "type": "DEFAULT"}}),
                "task.executor.type",
            ),
            (
                serde_json::json!({"executor": {"executor_id": {"value": "e"}}}),
                "task.command",
            ),
            (
                serde_json::json!({"command": null, "executor": {"executor_id": {"value": "e"}}}),
                "task.executor.command",
            ),
            (
                serde_json::json!({"container": {"type": "DOCKER"}}),
                "task.container.docker",
            ),
            (
                serde_json::json!({"container": {"type": "MESOS", "mesos": {"image": {}}}}),
                "task.container.mesos.image",
            ),
            (
                serde_json::json!({"container": {"type": "DOCKER", "docker": {"image": "x", "network": "USER"}}}),
                "task.container.network_infos",
            ),
            (
                serde_json::json!({"command": {"value": "x", "uris": [{"value": "http://x"}]}}),
                "task.command.uris",
            ),
            (
                serde_json::json!({"resources": [{"name": "disks", "type": "SET", "set": {"item": ["a"]}}]}),
                "task.resources[0].type",
            ),
            (
                serde_json::json!({"resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
                    "reservations": [{"type": "STATIC", "role": "r"}]}]}),
                "task.resources[0].reservations",
            ),
            (
                serde_json::json!({"command": {"value": "x", "environment": {"variables": [
                    {"name": "S", "type": "SECRET"}]}}}),
                "task.command.environment.variables[0].type",
            ),
            (
                serde_json::json!({"health_check": {"type": "HTTP", "http": {"port": 80}}}),
                "task.health_check.type",
            ),
            (
                serde_json::json!({"command": {"value": " "}}),
                "task.command.value",
            ),
        ];
        for (patch, field) in cases {
            let mut j = base();
            for (k, v) in patch.as_object().unwrap() {
                j[k] = v.clone();
            }
            let e = task_info("task", &mesos_task(j.clone())).unwrap_err();
            assert_eq!(e.field, field, "{j}: {e}");
        }
        let mut j = base();
        j.as_object_mut().unwrap().remove("command");
        assert_eq!(
            task_info("task", &mesos_task(j)).unwrap_err().field,
            "task.command"
        );
    }

    #[test]
    fn a_command_health_check_keeps_mesos_defaults() {
        let mut j = base();
        j["health_check"] = serde_json::json!({"type": "COMMAND", "command": {"value": "true"}});
        let h = task_info("task", &mesos_task(j))
            .unwrap()
            .health_check
            .unwrap();
        assert_eq!(
            (
                h.delay_seconds,
                h.interval_seconds,
                h.timeout_seconds,
                h.consecutive_failures
            ),
            (15.0, 10.0, 20.0, 3)
        );
        assert_eq!(h.command.unwrap().shell, "true");
    }

    #[test]
    fn statuses_carry_uuid_bytes_agent_and_mesos_reasons() {
        let uuid = uuid::Uuid::new_v4();
        let s = v1::TaskStatus {
            task_id: "t1".into(),
            agent_id: "a1".into(),
            state: v1::TaskState::TaskRunning as i32,
            uuid: uuid.to_string(),
            source: v1::StatusSource::SourceExecutor as i32,
            reason: drover_model::health::REASON_HEALTHY.into(),
            timestamp_ms: 1_700_000_000_123,
            healthy: Some(true),
            ..Default::default()
        };
        let m = status_to_mesos(&s);
        assert_eq!(m.uuid.as_deref(), Some(&uuid.as_bytes()[..]));
        assert_eq!(m.agent_id.as_ref().unwrap().value, "a1");
        assert_eq!(m.state, mesos::TaskState::TaskRunning as i32);
        assert_eq!(m.source, Some(mesos::task_status::Source::Executor as i32));
        assert_eq!(
            m.reason,
            Some(mesos::task_status::Reason::TaskHealthCheckStatusUpdated as i32)
        );
        assert_eq!(m.timestamp, Some(1_700_000_000.123));
        assert_eq!(m.healthy, Some(true));
        // A Drover reason Mesos has no name for stays readable in the message; no uuid, no
        // uuid field.
        let m = status_to_mesos(&v1::TaskStatus {
            task_id: "t1".into(),
            state: v1::TaskState::TaskFailed as i32,
            reason: "checkpoint_corrupt".into(),
            message: "bad".into(),
            ..Default::default()
        });
        assert_eq!((m.reason, m.uuid.as_ref()), (None, None));
        assert_eq!(m.message.as_deref(), Some("bad (checkpoint_corrupt)"));
        let json = String::from_utf8(drover_mesos::to_ascii_json(&m)).unwrap();
        assert!(
            !json.contains("uuid") && !json.contains("agent_id"),
            "{json}"
        );
        assert!(json.contains(r#""state":"TASK_FAILED""#), "{json}");
    }

    #[test]
    fn master_info_has_the_ip_as_mesos_writes_it() {
        let m = master_info(2, "127.0.0.1:5050", "1.11.0");
        assert_eq!(m.ip, 16_777_343);
        assert_eq!(m.port, 5050);
        assert_eq!(m.pid.as_deref(), Some("master@127.0.0.1:5050"));
    }

    #[test]
    fn framework_roles_and_capabilities() {
        let f: mesos::FrameworkInfo = drover_mesos::from_json(
            br#"{"user":"u","name":"n","roles":["web"],"capabilities":[{"type":"GPU_RESOURCES"},{"type":"PARTITION_AWARE"}],"failover_timeout":100}"#,
        )
        .unwrap();
        let ours = framework_info(&f).unwrap();
        assert_eq!(ours.role, "web");
        assert_eq!(
            ours.capabilities,
            vec![v1::FrameworkCapability::PartitionAware as i32]
        );
        assert_eq!(ours.failover_timeout_seconds, 100.0);
        let two: mesos::FrameworkInfo =
            drover_mesos::from_json(br#"{"user":"u","name":"n","roles":["a","b"]}"#).unwrap();
        assert_eq!(
            framework_info(&two).unwrap_err().field,
            "subscribe.framework_info.roles"
        );
        let unknown = drover_mesos::from_json::<mesos::FrameworkInfo>(
            br#"{"user":"u","name":"n","capabilities":[{"type":"TELEPORT"}]}"#,
        )
        .unwrap_err();
        assert_eq!(unknown.path, "capabilities[0].type");
    }
}
