//! An app's `container` in Marathon's JSON (`type` DOCKER: `docker.image`, `privileged`,
//! `parameters`, `forcePullImage`; `portMappings`; `volumes`) and its networks (`host`,
//! `container/bridge`, `container` with a name), checked, and turned into the task's
//! container (Drover's `ContainerInfo`).
//!
//! Owns Marathon's rules for containers as Drover applies them: a BRIDGE (`container/bridge`)
//! port mapping without `hostPort` takes any offered port (as `hostPort: 0`), one on a named
//! network is not published unless it gives one; `containerPort: 0` means the host port; the
//! deprecated `docker.network` and `docker.portMappings` are folded into `networks` and
//! `container.portMappings`; `args` go to the image's entrypoint. What Drover does not run is
//! refused by name: MESOS containers with an image, persistent and external volumes, docker
//! parameters the agents do not apply.

use std::collections::BTreeMap;

use drover_model::container::{ContainerSpec, KNOWN_PARAMETERS};
use drover_proto::v1;
use serde::{Deserialize, Serialize};

use super::super::error::Violation;

/// A container: DOCKER, or MESOS (a plain process when it names no image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    #[serde(rename = "type", default = "docker")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

fn docker() -> String {
    "DOCKER".into()
}

/// `container.docker`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Docker {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub force_pull_image: bool,
    /// Deprecated (Marathon 1.4): folded into the app's `networks`.
    #[serde(default, skip_serializing)]
    pub network: Option<String>,
    /// Deprecated (Marathon 1.4): folded into `container.portMappings`.
    #[serde(default, skip_serializing)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

/// A container port and, when published, the host port it gets (0: any offered one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    #[serde(default)]
    pub container_port: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    #[serde(default)]
    pub service_port: u32,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn tcp() -> String {
    "tcp".into()
}

/// A bind mount (`hostPath` absolute, or relative to the sandbox).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default = "rw")]
    pub mode: String,
    /// Persistent and external volumes: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
}

fn rw() -> String {
    "RW".into()
}

/// How an app's tasks are networked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppNetwork {
    Host,
    Bridge,
    /// A named (user-defined) network.
    Named(String),
}

impl Container {
    /// Whether it runs an image (a DOCKER container), rather than a plain process.
    pub fn is_docker(&self) -> bool {
        self.kind == "DOCKER"
    }

    /// Folds the deprecated `docker.portMappings` into `portMappings`; returns the deprecated
    /// `docker.network`, for the app's networks.
    pub fn fold_deprecated(&mut self) -> Option<String> {
        let docker = self.docker.as_mut()?;
        if let Some(m) = docker.port_mappings.take() {
            if self.port_mappings.is_empty() {
                self.port_mappings = m;
            }
        }
        docker.network.take()
    }

    /// Every rule the container breaks, given the app's network.
    pub fn violations(&self, network: Option<&AppNetwork>, v: &mut Vec<Violation>) {
        let before = v.len();
        self.rule_violations(network, v);
        // What passes Marathon's rules must also pass the check every ACCEPT makes (an image
        // reference, a network name, duplicate host ports): else the app would be stored and
        // refused at every launch.
        if let (true, Some(network)) = (v.len() == before, network) {
            if let Some(bad) = self.launch_violation(network) {
                v.push(bad);
            }
        }
    }

    /// The refusal the agents' and master's container check ([`ContainerSpec::from_proto`])
    /// would give this container's tasks, at its place in the app's JSON.
    fn launch_violation(&self, network: &AppNetwork) -> Option<Violation> {
        let requests = self.host_port_requests(network);
        let fixed: Vec<u64> = requests.iter().flatten().copied().collect();
        // Stand-ins for the offered ports, distinct from the fixed ones.
        let mut stand_ins = (1..=65535u64).filter(|p| !fixed.contains(p));
        let host_ports: Vec<u64> = requests
            .iter()
            .map(|r| r.or_else(|| stand_ins.next()).unwrap_or(0))
            .collect();
        let info = self.to_proto(network, &host_ports)?;
        let e = ContainerSpec::from_proto(&info, "container").err()?;
        // The n-th published mapping is the index-th of the app's portMappings.
        let published: Vec<usize> = self
            .port_mappings
            .iter()
            .enumerate()
            .filter(|(_, m)| m.host_port.is_some() || *network == AppNetwork::Bridge)
            .map(|(i, _)| i)
            .collect();
        Some(Violation::new(
            marathon_path(&e.field, &published),
            e.reason,
        ))
    }

    /// Marathon's own rules for containers.
    fn rule_violations(&self, network: Option<&AppNetwork>, v: &mut Vec<Violation>) {
        match self.kind.as_str() {
            "DOCKER" => {}
            "MESOS" => {
                if self.docker.is_some() || !self.volumes.is_empty() {
                    v.push(Violation::new(
                        "/container/type",
                        "MESOS containers with images or volumes are not supported by Drover: use DOCKER",
                    ));
                }
                return;
            }
            other => v.push(Violation::new(
                "/container/type",
                format!("{other:?}: DOCKER or MESOS"),
            )),
        }
        match &self.docker {
            Some(d) if !d.image.trim().is_empty() => {
                for (i, p) in d.parameters.iter().enumerate() {
                    if !KNOWN_PARAMETERS.contains(&p.key.as_str()) {
                        v.push(Violation::new(
                            format!("/container/docker/parameters({i})/key"),
                            format!(
                                "{:?} is not applied by Drover's agents (they know {})",
                                p.key,
                                KNOWN_PARAMETERS.join(", ")
                            ),
                        ));
                    }
                }
            }
            _ => v.push(Violation::new(
                "/container/docker/image",
                "a DOCKER container names its image",
            )),
        }
        if matches!(network, Some(AppNetwork::Host)) && !self.port_mappings.is_empty() {
            v.push(Violation::new(
                "/container/portMappings",
                "port mappings need a container network (container/bridge or container); on host networking use portDefinitions",
            ));
        }
        for (i, m) in self.port_mappings.iter().enumerate() {
            if m.container_port > 65535 || m.host_port.is_some_and(|p| p > 65535) {
                v.push(Violation::new(
                    format!("/container/portMappings({i})"),
                    "ports are 0 to 65535",
                ));
            }
            if !matches!(m.protocol.as_str(), "tcp" | "udp") {
                v.push(Violation::new(
                    format!("/container/portMappings({i})/protocol"),
                    "tcp or udp",
                ));
            }
        }
        for (i, vol) in self.volumes.iter().enumerate() {
            if vol.persistent.is_some() || vol.external.is_some() {
                v.push(Violation::new(
                    format!("/container/volumes({i})"),
                    "persistent and external volumes are not supported by Drover",
                ));
            }
            if vol.host_path.as_deref().is_none_or(str::is_empty) {
                v.push(Violation::new(
                    format!("/container/volumes({i})/hostPath"),
                    "a host path (absolute, or relative to the sandbox)",
                ));
            }
            if !vol.container_path.starts_with('/') {
                v.push(Violation::new(
                    format!("/container/volumes({i})/containerPath"),
                    "an absolute path",
                ));
            }
            if !matches!(vol.mode.as_str(), "RW" | "RO") {
                v.push(Violation::new(
                    format!("/container/volumes({i})/mode"),
                    "RW or RO",
                ));
            }
        }
    }

    /// The host port each instance needs for the mappings that publish one, in order: `Some`
    /// of a fixed port, `None` for any offered one.
    pub fn host_port_requests(&self, network: &AppNetwork) -> Vec<Option<u64>> {
        self.published(network)
            .map(|(_, host)| (host > 0).then_some(u64::from(host)))
            .collect()
    }

    /// The mappings that publish a host port, with that port as asked (0: any).
    fn published<'a>(
        &'a self,
        network: &'a AppNetwork,
    ) -> impl Iterator<Item = (&'a PortMapping, u32)> + 'a {
        self.port_mappings
            .iter()
            .filter_map(move |m| match (network, m.host_port) {
                (AppNetwork::Bridge, None) => Some((m, 0)),
                (_, Some(h)) => Some((m, h)),
                (_, None) => None,
            })
    }

    /// The names of the published mappings, in the order of their host ports.
    pub fn published_names(&self, network: &AppNetwork) -> Vec<Option<String>> {
        self.published(network)
            .map(|(m, _)| m.name.clone())
            .collect()
    }

    /// The task's container, its published mappings on `host_ports` (in order); `None` for a
    /// MESOS container (a plain process).
    pub fn to_proto(&self, network: &AppNetwork, host_ports: &[u64]) -> Option<v1::ContainerInfo> {
        use v1::container_info::docker_info::{Network, Parameter, PortMapping};
        use v1::container_info::{volume::Mode, DockerInfo, Type, Volume};
        if !self.is_docker() {
            return None;
        }
        let d = self.docker.as_ref()?;
        let (net, network_name) = match network {
            AppNetwork::Host => (Network::Host, String::new()),
            AppNetwork::Bridge => (Network::Bridge, String::new()),
            AppNetwork::Named(n) => (Network::User, n.clone()),
        };
        let port_mappings = self
            .published(network)
            .zip(host_ports)
            .map(|((m, _), host)| PortMapping {
                host_port: *host as u32,
                container_port: if m.container_port == 0 {
                    *host as u32
                } else {
                    m.container_port
                },
                protocol: m.protocol.clone(),
            })
            .collect();
        Some(v1::ContainerInfo {
            r#type: Type::Docker as i32,
            docker: Some(DockerInfo {
                image: d.image.clone(),
                network: net as i32,
                port_mappings,
                privileged: d.privileged,
                parameters: d
                    .parameters
                    .iter()
                    .map(|p| Parameter {
                        key: p.key.clone(),
                        value: p.value.clone(),
                    })
                    .collect(),
                force_pull_image: d.force_pull_image,
                network_name,
            }),
            volumes: self
                .volumes
                .iter()
                .map(|v| Volume {
                    container_path: v.container_path.clone(),
                    host_path: v.host_path.clone().unwrap_or_default(),
                    mode: if v.mode == "RO" { Mode::Ro } else { Mode::Rw } as i32,
                })
                .collect(),
        })
    }
}

/// The JSON path in a Marathon app of a field the container check names
/// (`container.docker.port_mappings[0].host_port` is `/container/portMappings(2)/hostPort`
/// when the first published mapping is the app's third; `network_name` is the app's
/// `/networks`).
fn marathon_path(field: &str, published: &[usize]) -> String {
    let mut out = String::new();
    for segment in field.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let index = match (name, index) {
            ("port_mappings", Some(i)) => published.get(i).copied().or(Some(i)),
            (_, i) => i,
        };
        out.push('/');
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        if let Some(i) = index {
            out.push_str(&format!("({i})"));
        }
    }
    if out.contains("/networkName") {
        return "/networks".into();
    }
    out.replace("/docker/portMappings", "/portMappings")
}
