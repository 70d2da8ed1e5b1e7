//! A task's container (Mesos's `ContainerInfo` of type DOCKER): the image it runs, its network,
//! its port mappings, its volumes and the few `docker run` parameters Drover knows how to
//! apply.
//!
//! Owns the one validation of a container from the wire, which the master (at ACCEPT) and the
//! agent (at RunTask) both apply, and [`ContainerSpec`], the checked form the agent writes into
//! `task.json` for the executor. What depends on the agent's policy (privileged containers,
//! which parameters, which host paths) is the agent's to decide: see [`DockerPolicy`], which
//! the executor applies before it creates the container, so a refusal is a TASK_FAILED naming
//! the field.

use drover_proto::v1;
use drover_proto::v1::container_info::docker_info::Network;
use drover_proto::v1::container_info::{volume::Mode, Type};
use serde::{Deserialize, Serialize};

/// Longest image reference, bytes.
pub const MAX_IMAGE_BYTES: usize = 512;
/// Most port mappings of one container.
pub const MAX_PORT_MAPPINGS: usize = 64;
/// Most parameters of one container.
pub const MAX_PARAMETERS: usize = 64;
/// Longest parameter value, bytes.
pub const MAX_PARAMETER_VALUE_BYTES: usize = 4096;
/// Most volumes of one container.
pub const MAX_VOLUMES: usize = 64;
/// Longest volume path, bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest user network name, bytes.
pub const MAX_NETWORK_NAME_BYTES: usize = 128;

/// Most arguments of a container's entrypoint.
pub const MAX_ARGUMENTS: usize = 1024;
/// Longest arguments of a container's entrypoint together, bytes.
pub const MAX_ARGUMENTS_BYTES: usize = 64 * 1024;

/// Where the task's sandbox is mounted in its container (as Mesos mounts it).
pub const SANDBOX_MOUNT: &str = "/mnt/mesos/sandbox";

/// The `docker run` parameters Drover applies (each maps to a field of the engine's API):
/// any other key is refused where the container is checked. Which of them an agent allows
/// is its policy ([`DockerPolicy::allowed_parameters`]).
pub const KNOWN_PARAMETERS: &[&str] = &[
    "label",
    "env",
    "hostname",
    "user",
    "workdir",
    "init",
    "read-only",
    "cap-add",
    "cap-drop",
    "shm-size",
];

/// The parameters an agent allows unless told otherwise: those that give the container no
/// more power over its host than a plain task has.
pub const DEFAULT_ALLOWED_PARAMETERS: &[&str] = &[
    "label",
    "env",
    "hostname",
    "user",
    "workdir",
    "init",
    "read-only",
    "cap-drop",
    "shm-size",
];

/// The agent attribute that says which containerizers an agent runs (`docker,command` or
/// `command`): the agent sets it, the master and schedulers read it.
pub const CONTAINERIZERS_ATTRIBUTE: &str = "containerizers";

/// Checks a command's `arguments` (`at` names the command): they are for a container's
/// entrypoint (Docker's CMD), so they need a container and an empty shell.
pub fn check_arguments(
    arguments: &[String],
    shell: &str,
    container: bool,
    at: &str,
) -> Result<(), InvalidContainer> {
    if arguments.is_empty() {
        return Ok(());
    }
    let invalid = |reason: String| InvalidContainer {
        field: format!("{at}.arguments"),
        reason,
    };
    if !container {
        return Err(invalid(
            "arguments are for a container's entrypoint: a task without a container gives its shell"
                .into(),
        ));
    }
    if !shell.is_empty() {
        return Err(invalid(
            "give either shell (run with /bin/sh -c) or arguments (for the image's entrypoint), not both".into(),
        ));
    }
    if arguments.len() > MAX_ARGUMENTS {
        return Err(invalid(format!("at most {MAX_ARGUMENTS}")));
    }
    if arguments.iter().map(|a| a.len() + 1).sum::<usize>() > MAX_ARGUMENTS_BYTES {
        return Err(invalid(format!(
            "at most {MAX_ARGUMENTS_BYTES} bytes together"
        )));
    }
    if let Some(i) = arguments.iter().position(|a| a.contains('\0')) {
        return Err(InvalidContainer {
            field: format!("{at}.arguments[{i}]"),
            reason: "contains a NUL byte".into(),
        });
    }
    Ok(())
}

/// Whether a `containerizers` attribute's value names docker.
pub fn runs_docker(containerizers: &str) -> bool {
    containerizers.split(',').any(|c| c.trim() == "docker")
}

/// A field of a container that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidContainer {
    pub field: String,
    pub reason: String,
}

/// A checked Docker container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// An image reference as the engine takes it (`busybox`, `repo/name:tag`, `name@sha256:…`).
    pub image: String,
    pub network: DockerNetwork,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Pull the image even when the engine has it.
    #[serde(default)]
    pub force_pull_image: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
}

/// How the container is networked (Docker's network modes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DockerNetwork {
    /// The host's network namespace: the task binds its offered ports itself.
    Host,
    /// Docker's default bridge: container ports are published on offered host ports.
    Bridge,
    /// No network but loopback.
    None,
    /// A user-defined Docker network, by name; ports are published as for the bridge.
    User(String),
}

impl DockerNetwork {
    /// Whether ports of the container are published on the host (and mappings make sense).
    pub fn publishes_ports(&self) -> bool {
        matches!(self, DockerNetwork::Bridge | DockerNetwork::User(_))
    }
}

/// A container port published on a host port the task was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortProtocol {
    Tcp,
    Udp,
}

impl PortProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        }
    }
}

/// A `docker run` parameter (`--key value`), one of [`KNOWN_PARAMETERS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

/// A bind mount: `host_path` (absolute, or relative to the task's sandbox) at
/// `container_path` (absolute) in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub container_path: String,
    pub host_path: String,
    #[serde(default)]
    pub read_only: bool,
}

impl VolumeSpec {
    /// Whether the host path is inside the task's sandbox (relative).
    pub fn in_sandbox(&self) -> bool {
        !self.host_path.starts_with('/')
    }
}

impl ContainerSpec {
    /// `image` on the host's network, with nothing else set.
    pub fn of_image(image: impl Into<String>) -> Self {
        ContainerSpec {
            image: image.into(),
            network: DockerNetwork::Host,
            port_mappings: Vec::new(),
            privileged: false,
            parameters: Vec::new(),
            force_pull_image: false,
            volumes: Vec::new(),
        }
    }

    /// Checks a container from the wire; `at` names it in errors (`launch[0].container`).
    /// `Ok(None)` for a MESOS container without an image: a plain process, as no container.
    pub fn from_proto(c: &v1::ContainerInfo, at: &str) -> Result<Option<Self>, InvalidContainer> {
        let invalid = |f: &str, reason: String| InvalidContainer {
            field: format!("{at}.{f}"),
            reason,
        };
        match Type::try_from(c.r#type) {
            Ok(Type::Docker) => {}
            Ok(Type::Mesos) => {
                if c.docker.is_some() || !c.volumes.is_empty() {
                    return Err(invalid(
                        "type",
                        "a MESOS container is a plain process: images and volumes need DOCKER"
                            .into(),
                    ));
                }
                return Ok(None);
            }
            _ => {
                return Err(invalid(
                    "type",
                    format!("{}: give DOCKER (or MESOS for a plain process)", c.r#type),
                ))
            }
        }
        let d = c.docker.as_ref().ok_or_else(|| {
            invalid(
                "docker",
                "missing: a DOCKER container names its image".into(),
            )
        })?;
        check_image(&d.image).map_err(|r| invalid("docker.image", r))?;
        let network = match Network::try_from(d.network) {
            Ok(Network::Unspecified) | Ok(Network::Host) => DockerNetwork::Host,
            Ok(Network::Bridge) => DockerNetwork::Bridge,
            Ok(Network::None) => DockerNetwork::None,
            Ok(Network::User) => {
                check_network_name(&d.network_name)
                    .map_err(|r| invalid("docker.network_name", r))?;
                DockerNetwork::User(d.network_name.clone())
            }
            Err(_) => {
                return Err(invalid(
                    "docker.network",
                    format!("{}: HOST, BRIDGE, NONE or USER", d.network),
                ))
            }
        };
        if !matches!(network, DockerNetwork::User(_)) && !d.network_name.is_empty() {
            return Err(invalid(
                "docker.network_name",
                "only a USER network is named".into(),
            ));
        }
        if d.port_mappings.len() > MAX_PORT_MAPPINGS {
            return Err(invalid(
                "docker.port_mappings",
                format!("at most {MAX_PORT_MAPPINGS}"),
            ));
        }
        if !d.port_mappings.is_empty() && !network.publishes_ports() {
            return Err(invalid(
                "docker.port_mappings",
                "ports are mapped only on a BRIDGE or USER network (on HOST the task binds its offered ports itself)".into(),
            ));
        }
        let mut port_mappings = Vec::with_capacity(d.port_mappings.len());
        for (i, m) in d.port_mappings.iter().enumerate() {
            let port = |f: &str, p: u32| -> Result<u16, InvalidContainer> {
                u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                    invalid(
                        &format!("docker.port_mappings[{i}].{f}"),
                        format!("{p}: 1 to 65535"),
                    )
                })
            };
            let protocol = match m.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => PortProtocol::Tcp,
                "udp" => PortProtocol::Udp,
                other => {
                    return Err(invalid(
                        &format!("docker.port_mappings[{i}].protocol"),
                        format!(
                            "{:?}: tcp or udp",
                            other.chars().take(16).collect::<String>()
                        ),
                    ))
                }
            };
            let mapping = PortMapping {
                host_port: port("host_port", m.host_port)?,
                container_port: port("container_port", m.container_port)?,
                protocol,
            };
            if port_mappings.iter().any(|p: &PortMapping| {
                p.host_port == mapping.host_port && p.protocol == mapping.protocol
            }) {
                return Err(invalid(
                    &format!("docker.port_mappings[{i}].host_port"),
                    format!("{} is mapped twice", mapping.host_port),
                ));
            }
            port_mappings.push(mapping);
        }
        if d.parameters.len() > MAX_PARAMETERS {
            return Err(invalid(
                "docker.parameters",
                format!("at most {MAX_PARAMETERS}"),
            ));
        }
        let mut parameters = Vec::with_capacity(d.parameters.len());
        for (i, p) in d.parameters.iter().enumerate() {
            if !KNOWN_PARAMETERS.contains(&p.key.as_str()) {
                return Err(invalid(
                    &format!("docker.parameters[{i}].key"),
                    format!(
                        "{:?} is not one Drover applies (it knows {})",
                        p.key.chars().take(64).collect::<String>(),
                        KNOWN_PARAMETERS.join(", ")
                    ),
                ));
            }
            if p.value.len() > MAX_PARAMETER_VALUE_BYTES || p.value.contains('\0') {
                return Err(invalid(
                    &format!("docker.parameters[{i}].value"),
                    format!("at most {MAX_PARAMETER_VALUE_BYTES} bytes, without NUL"),
                ));
            }
            check_parameter(&p.key, &p.value)
                .map_err(|r| invalid(&format!("docker.parameters[{i}].value"), r))?;
            parameters.push(Parameter {
                key: p.key.clone(),
                value: p.value.clone(),
            });
        }
        if c.volumes.len() > MAX_VOLUMES {
            return Err(invalid("volumes", format!("at most {MAX_VOLUMES}")));
        }
        let mut volumes = Vec::with_capacity(c.volumes.len());
        for (i, v) in c.volumes.iter().enumerate() {
            let at = |f: &str| format!("volumes[{i}].{f}");
            check_path(&v.container_path, true).map_err(|r| invalid(&at("container_path"), r))?;
            if v.container_path.trim_end_matches('/') == SANDBOX_MOUNT {
                return Err(invalid(
                    &at("container_path"),
                    format!("{SANDBOX_MOUNT} is where the sandbox goes"),
                ));
            }
            check_path(&v.host_path, false).map_err(|r| invalid(&at("host_path"), r))?;
            let read_only = match Mode::try_from(v.mode) {
                Ok(Mode::Unspecified) | Ok(Mode::Rw) => false,
                Ok(Mode::Ro) => true,
                Err(_) => return Err(invalid(&at("mode"), format!("{}: RW or RO", v.mode))),
            };
            volumes.push(VolumeSpec {
                container_path: v.container_path.clone(),
                host_path: v.host_path.clone(),
                read_only,
            });
        }
        Ok(Some(ContainerSpec {
            image: d.image.clone(),
            network,
            port_mappings,
            privileged: d.privileged,
            parameters,
            force_pull_image: d.force_pull_image,
            volumes,
        }))
    }

    /// Checks the port mappings against the ports the task was given: every host port must
    /// be one of them (as Mesos's docker containerizer requires).
    pub fn check_host_ports(&self, task_ports: &[u64], at: &str) -> Result<(), InvalidContainer> {
        for (i, m) in self.port_mappings.iter().enumerate() {
            if !task_ports.contains(&u64::from(m.host_port)) {
                return Err(InvalidContainer {
                    field: format!("{at}.docker.port_mappings[{i}].host_port"),
                    reason: format!("{} is not among the task's ports resources", m.host_port),
                });
            }
        }
        Ok(())
    }

    /// The wire form (what `from_proto` reads back as `self`).
    pub fn to_proto(&self) -> v1::ContainerInfo {
        use v1::container_info::docker_info;
        let (network, network_name) = match &self.network {
            DockerNetwork::Host => (Network::Host, String::new()),
            DockerNetwork::Bridge => (Network::Bridge, String::new()),
            DockerNetwork::None => (Network::None, String::new()),
            DockerNetwork::User(n) => (Network::User, n.clone()),
        };
        v1::ContainerInfo {
            r#type: Type::Docker as i32,
            docker: Some(v1::container_info::DockerInfo {
                image: self.image.clone(),
                network: network as i32,
                port_mappings: self
                    .port_mappings
                    .iter()
                    .map(|m| docker_info::PortMapping {
                        host_port: m.host_port.into(),
                        container_port: m.container_port.into(),
                        protocol: m.protocol.as_str().to_string(),
                    })
                    .collect(),
                privileged: self.privileged,
                parameters: self
                    .parameters
                    .iter()
                    .map(|p| docker_info::Parameter {
                        key: p.key.clone(),
                        value: p.value.clone(),
                    })
                    .collect(),
                force_pull_image: self.force_pull_image,
                network_name,
            }),
            volumes: self
                .volumes
                .iter()
                .map(|v| v1::container_info::Volume {
                    container_path: v.container_path.clone(),
                    host_path: v.host_path.clone(),
                    mode: if v.read_only { Mode::Ro } else { Mode::Rw } as i32,
                })
                .collect(),
        }
    }
}

/// What an agent lets containers do beyond the plain task's powers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerPolicy {
    /// Privileged containers may run.
    pub allow_privileged: bool,
    /// Parameters allowed (a subset of [`KNOWN_PARAMETERS`]).
    pub allowed_parameters: Vec<String>,
    /// Absolute host paths (and what is below them) volumes may mount, beside the sandbox.
    pub allowed_volume_paths: Vec<String>,
}

impl Default for DockerPolicy {
    fn default() -> Self {
        DockerPolicy {
            allow_privileged: false,
            allowed_parameters: DEFAULT_ALLOWED_PARAMETERS
                .iter()
                .map(|p| p.to_string())
                .collect(),
            allowed_volume_paths: Vec::new(),
        }
    }
}

impl DockerPolicy {
    /// Checks `c` against the policy; the refusal names the field (under `container`).
    pub fn check(&self, c: &ContainerSpec) -> Result<(), InvalidContainer> {
        let refuse = |field: String, reason: String| InvalidContainer {
            field: format!("container.{field}"),
            reason,
        };
        if c.privileged && !self.allow_privileged {
            return Err(refuse(
                "docker.privileged".into(),
                "this agent does not run privileged containers (--docker-allow-privileged)".into(),
            ));
        }
        for (i, p) in c.parameters.iter().enumerate() {
            if !self.allowed_parameters.contains(&p.key) {
                return Err(refuse(
                    format!("docker.parameters[{i}].key"),
                    format!(
                        "{} is not allowed on this agent (--docker-allowed-parameters: {})",
                        p.key,
                        self.allowed_parameters.join(",")
                    ),
                ));
            }
        }
        for (i, v) in c.volumes.iter().enumerate() {
            if v.in_sandbox() {
                continue;
            }
            let allowed = self
                .allowed_volume_paths
                .iter()
                .any(|a| path_within(&v.host_path, a));
            if !allowed {
                return Err(refuse(
                    format!("volumes[{i}].host_path"),
                    format!(
                        "{} is outside the sandbox and the host paths this agent allows (--docker-volume-paths: {})",
                        v.host_path,
                        if self.allowed_volume_paths.is_empty() {
                            "none".to_string()
                        } else {
                            self.allowed_volume_paths.join(",")
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `path` is `base` or below it (both absolute, without `..`, as checked).
pub fn path_within(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    if base.is_empty() {
        return true;
    }
    path == base || path.starts_with(&format!("{base}/"))
}

fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("empty: name the image".into());
    }
    if image.len() > MAX_IMAGE_BYTES {
        return Err(format!("longer than {MAX_IMAGE_BYTES} bytes"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if !image.chars().all(ok) || image.starts_with(['-', '.', '/', ':', '@']) {
        return Err(format!(
            "{:?}: an image reference (letters, digits and ._-/:@)",
            image.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

fn check_network_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NETWORK_NAME_BYTES {
        return Err(format!(
            "a USER network needs its name (1 to {MAX_NETWORK_NAME_BYTES} bytes)"
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if !name.chars().all(ok) {
        return Err(format!(
            "{:?}: a Docker network name (letters, digits and ._-)",
            name.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// A path without NUL, `..` components or a `:` (which the engine's bind syntax would split
/// on); absolute when `absolute`, else absolute or relative to the sandbox.
fn check_path(path: &str, absolute: bool) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(format!("1 to {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') || path.contains(':') || path.contains(',') {
        return Err("contains NUL, ':' or ','".into());
    }
    if absolute && !path.starts_with('/') {
        return Err(format!("{path:?}: an absolute path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("{path:?}: no '..' components"));
    }
    Ok(())
}

/// Checks a parameter's value where its meaning is simple enough to check here.
fn check_parameter(key: &str, value: &str) -> Result<(), String> {
    match key {
        "label" | "env" => {
            let (k, _) = value
                .split_once('=')
                .ok_or_else(|| format!("{key}: KEY=VALUE"))?;
            if k.is_empty() {
                return Err(format!("{key}: KEY=VALUE with a KEY"));
            }
            if key == "env" && !crate::limits::is_env_name(k) {
                return Err(format!("{k:?} is not a variable name"));
            }
        }
        "init" | "read-only" => {
            if !matches!(value, "" | "true" | "false") {
                return Err(format!("{key}: true or false"));
            }
        }
        "shm-size" => {
            parse_bytes(value).ok_or_else(|| format!("{value:?}: a size (1048576, 64m, 1g)"))?;
        }
        _ => {
            if value.is_empty() {
                return Err(format!("{key}: a value"));
            }
        }
    }
    Ok(())
}

/// A size as `docker run` takes it: bytes, or with a k/m/g suffix.
pub fn parse_bytes(value: &str) -> Option<i64> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (digits, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1i64 << 10),
        'm' => (&v[..v.len() - 1], 1i64 << 20),
        'g' => (&v[..v.len() - 1], 1i64 << 30),
        _ => (v, 1),
    };
    digits
        .parse::<i64>()
        .ok()?
        .checked_mul(mult)
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::container_info::{docker_info, DockerInfo, Volume};

    fn docker(image: &str) -> v1::ContainerInfo {
        v1::ContainerInfo {
            r#type: Type::Docker as i32,
            docker: Some(DockerInfo {
                image: image.into(),
                ..Default::default()
            }),
            volumes: vec![],
        }
    }

    fn refused(c: &v1::ContainerInfo) -> InvalidContainer {
        ContainerSpec::from_proto(c, "launch[0].container").expect_err("refused")
    }

    #[test]
    fn a_full_container_round_trips_through_its_wire_form() {
        let mut c = docker("registry.local:5000/team/app:1.2");
        let d = c.docker.as_mut().expect("docker");
        d.network = Network::Bridge as i32;
        d.port_mappings = vec![docker_info::PortMapping {
            host_port: 31000,
            container_port: 80,
            protocol: "udp".into(),
        }];
        d.parameters = vec![docker_info::Parameter {
            key: "label".into(),
            value: "team=a".into(),
        }];
        d.force_pull_image = true;
        c.volumes = vec![Volume {
            container_path: "/data".into(),
            host_path: "data".into(),
            mode: Mode::Ro as i32,
        }];
        let spec = ContainerSpec::from_proto(&c, "c")
            .expect("valid")
            .expect("docker");
        assert_eq!(spec.network, DockerNetwork::Bridge);
        assert_eq!(spec.port_mappings[0].protocol, PortProtocol::Udp);
        assert!(spec.volumes[0].read_only && spec.volumes[0].in_sandbox());
        let again = ContainerSpec::from_proto(&spec.to_proto(), "c").expect("valid");
        assert_eq!(again, Some(spec.clone()));
        // And through task.json.
        let json = serde_json::to_string(&spec).expect("json");
        assert_eq!(
            serde_json::from_str::<ContainerSpec>(&json).expect("back"),
            spec
        );
    }

    #[test]
    fn a_mesos_container_without_image_is_a_plain_process() {
        let c = v1::ContainerInfo {
            r#type: Type::Mesos as i32,
            ..Default::default()
        };
        assert_eq!(ContainerSpec::from_proto(&c, "c"), Ok(None));
        let with_image = v1::ContainerInfo {
            r#type: Type::Mesos as i32,
            docker: docker("x").docker,
            ..Default::default()
        };
        assert_eq!(refused(&with_image).field, "launch[0].container.type");
        let unspecified = v1::ContainerInfo::default();
        assert_eq!(refused(&unspecified).field, "launch[0].container.type");
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            refused(&docker("")).field,
            "launch[0].container.docker.image"
        );
        assert_eq!(
            refused(&docker("a b")).field,
            "launch[0].container.docker.image"
        );
        assert_eq!(
            refused(&docker("-x")).field,
            "launch[0].container.docker.image"
        );
        let mut user = docker("x");
        user.docker.as_mut().expect("d").network = Network::User as i32;
        assert_eq!(
            refused(&user).field,
            "launch[0].container.docker.network_name"
        );
        let mut host_mapped = docker("x");
        host_mapped.docker.as_mut().expect("d").port_mappings = vec![docker_info::PortMapping {
            host_port: 1,
            container_port: 2,
            protocol: String::new(),
        }];
        assert_eq!(
            refused(&host_mapped).field,
            "launch[0].container.docker.port_mappings"
        );
        let mut zero = docker("x");
        let d = zero.docker.as_mut().expect("d");
        d.network = Network::Bridge as i32;
        d.port_mappings = vec![docker_info::PortMapping {
            host_port: 31000,
            container_port: 0,
            protocol: String::new(),
        }];
        assert_eq!(
            refused(&zero).field,
            "launch[0].container.docker.port_mappings[0].container_port"
        );
        let mut param = docker("x");
        param.docker.as_mut().expect("d").parameters = vec![docker_info::Parameter {
            key: "volumes-from".into(),
            value: "other".into(),
        }];
        assert_eq!(
            refused(&param).field,
            "launch[0].container.docker.parameters[0].key"
        );
        for (container_path, host_path, field) in [
            ("relative", "/x", "container_path"),
            ("/mnt/mesos/sandbox", "/x", "container_path"),
            ("/x", "../etc", "host_path"),
            ("/x", "/a:/b", "host_path"),
        ] {
            let mut v = docker("x");
            v.volumes = vec![Volume {
                container_path: container_path.into(),
                host_path: host_path.into(),
                mode: 0,
            }];
            assert_eq!(
                refused(&v).field,
                format!("launch[0].container.volumes[0].{field}"),
                "{container_path} {host_path}"
            );
        }
    }

    #[test]
    fn host_ports_must_be_the_task_s_own() {
        let mut c = docker("x");
        let d = c.docker.as_mut().expect("d");
        d.network = Network::Bridge as i32;
        d.port_mappings = vec![docker_info::PortMapping {
            host_port: 31001,
            container_port: 80,
            protocol: String::new(),
        }];
        let spec = ContainerSpec::from_proto(&c, "c")
            .expect("valid")
            .expect("docker");
        assert!(spec.check_host_ports(&[31001], "t").is_ok());
        let e = spec
            .check_host_ports(&[31000], "t")
            .expect_err("not offered");
        assert_eq!(e.field, "t.docker.port_mappings[0].host_port");
    }

    #[test]
    fn the_agent_policy_refuses_what_it_does_not_allow() {
        let mut c = docker("x");
        c.docker.as_mut().expect("d").privileged = true;
        c.docker.as_mut().expect("d").parameters = vec![docker_info::Parameter {
            key: "cap-add".into(),
            value: "NET_ADMIN".into(),
        }];
        c.volumes = vec![
            Volume {
                container_path: "/in".into(),
                host_path: "work".into(),
                mode: 0,
            },
            Volume {
                container_path: "/data".into(),
                host_path: "/srv/data/a".into(),
                mode: 0,
            },
        ];
        let spec = ContainerSpec::from_proto(&c, "c")
            .expect("valid")
            .expect("docker");
        let mut policy = DockerPolicy::default();
        assert_eq!(
            policy.check(&spec).expect_err("privileged").field,
            "container.docker.privileged"
        );
        policy.allow_privileged = true;
        assert_eq!(
            policy.check(&spec).expect_err("cap-add").field,
            "container.docker.parameters[0].key"
        );
        policy.allowed_parameters.push("cap-add".into());
        assert_eq!(
            policy.check(&spec).expect_err("host path").field,
            "container.volumes[1].host_path"
        );
        policy.allowed_volume_paths = vec!["/srv/dat".into()];
        assert!(policy.check(&spec).is_err(), "a prefix is not a parent");
        policy.allowed_volume_paths = vec!["/srv/data/".into()];
        assert_eq!(policy.check(&spec), Ok(()));
    }

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_bytes("64m"), Some(64 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(parse_bytes("x"), None);
    }

    #[test]
    fn arguments_need_a_container_and_no_shell() {
        let args = vec!["-p".to_string(), "8080".to_string()];
        assert_eq!(check_arguments(&[], "echo", false, "c"), Ok(()));
        assert_eq!(check_arguments(&args, "", true, "c"), Ok(()));
        assert_eq!(
            check_arguments(&args, "", false, "c")
                .expect_err("no container")
                .field,
            "c.arguments"
        );
        assert_eq!(
            check_arguments(&args, "echo", true, "c")
                .expect_err("shell too")
                .field,
            "c.arguments"
        );
        let nul = vec!["a".to_string(), "b\0".to_string()];
        assert_eq!(
            check_arguments(&nul, "", true, "c").expect_err("NUL").field,
            "c.arguments[1]"
        );
        let many = vec!["a".to_string(); MAX_ARGUMENTS + 1];
        assert!(check_arguments(&many, "", true, "c").is_err());
        let long = vec!["a".repeat(MAX_ARGUMENTS_BYTES)];
        assert!(check_arguments(&long, "", true, "c").is_err());
    }
}
