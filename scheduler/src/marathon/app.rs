//! [`AppDefinition`]: what a user asks Drover to keep running, in Marathon's JSON (camelCase,
//! Marathon's defaults), and [`parse_app`], the one way a definition comes in from the network.
//!
//! Owns the rules a definition must satisfy before it is stored: every violation is reported
//! with the field at fault, in Marathon's 422 shape. Parsing goes in three steps: the body
//! must be JSON (else 400); the keys Marathon itself writes into an app (`tasksRunning`,
//! `deployments`, …, which clients send back on update) are dropped and unknown keys are
//! refused by name; then the typed definition is read (a wrong type is refused with its
//! path) and checked field by field. Features Drover does not have yet (fetched URIs,
//! secrets, readiness checks, GPUs, MESOS container images) are refused by name rather than
//! silently ignored. Docker containers and their networks: see [`container`].

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

mod container;

pub use container::{AppNetwork, Container};

use super::error::{pointer, ApiError, PathSegment, Violation};
use super::path::PathId;
use super::time::Timestamp;

/// Most instances of one app.
pub const MAX_INSTANCES: u32 = 100_000;
/// Longest `cmd` (and all of `args` together); most environment variables (and labels), and
/// the longest name or value of either: what the master accepts for a task.
pub use drover_model::limits::{
    MAX_COMMAND_BYTES, MAX_ENV_BYTES, MAX_ENV_TOTAL_BYTES, MAX_ENV_VARS,
};
/// Most constraints, port definitions and health checks.
pub const MAX_LIST: usize = 64;

/// Keys Marathon writes into an app that a client may send back: ignored on input.
const READ_ONLY: [&str; 10] = [
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "tasks",
    "lastTaskFailure",
    "taskStats",
    "readinessCheckResults",
    "versionInfo",
];

/// Keys of Marathon features Drover does not have: accepted only empty (as clients send
/// them), refused by name otherwise.
const UNSUPPORTED_UNLESS_EMPTY: [&str; 8] = [
    "uris",
    "fetch",
    "storeUrls",
    "readinessChecks",
    "secrets",
    "residency",
    "ipAddress",
    "taskRateLimit",
];

/// An app definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppDefinition {
    pub id: PathId,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub instances: u32,
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    #[serde(default = "default_mem")]
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub executor: String,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// Deprecated form of `portDefinitions` (numbers only); folded into it on input.
    #[serde(default, skip_serializing)]
    pub ports: Option<Vec<u32>>,
    #[serde(default = "default_port_definitions")]
    pub port_definitions: Vec<PortDefinition>,
    #[serde(default)]
    pub require_ports: bool,
    #[serde(default = "one")]
    pub backoff_seconds: u32,
    #[serde(default = "default_backoff_factor")]
    pub backoff_factor: f64,
    #[serde(default = "default_max_launch_delay")]
    pub max_launch_delay_seconds: u32,
    #[serde(default)]
    pub container: Option<Container>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    #[serde(default)]
    pub dependencies: Vec<PathId>,
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    #[serde(default)]
    pub unreachable_strategy: UnreachableStrategy,
    #[serde(default)]
    pub kill_selection: KillSelection,
    #[serde(default)]
    pub task_kill_grace_period_seconds: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default = "default_networks")]
    pub networks: Vec<Network>,
    /// Set by the scheduler when it stores a version; ignored on input.
    #[serde(default)]
    pub version: Option<Timestamp>,
}

fn one() -> u32 {
    1
}
fn default_cpus() -> f64 {
    1.0
}
fn default_mem() -> f64 {
    128.0
}
fn default_backoff_factor() -> f64 {
    1.15
}
fn default_max_launch_delay() -> u32 {
    3600
}
fn default_port_definitions() -> Vec<PortDefinition> {
    vec![PortDefinition {
        port: 0,
        protocol: default_protocol(),
        name: Some("default".into()),
        labels: BTreeMap::new(),
    }]
}
fn default_networks() -> Vec<Network> {
    vec![Network {
        mode: "host".into(),
        name: None,
        labels: BTreeMap::new(),
    }]
}
fn default_protocol() -> String {
    "tcp".into()
}

/// A port the app's tasks need (`port` 0: any; the scheduler picks a service port for it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortDefinition {
    pub port: u32,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A network an app joins; Drover has host networking only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A placement rule: `[field, OPERATOR, value?]`, on `hostname` or an agent attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    pub field: String,
    pub operator: Operator,
}

/// What a constraint asks of the agents an app's tasks run on.
#[derive(Clone, Debug, PartialEq)]
pub enum Operator {
    /// No two tasks on agents with the same value.
    Unique,
    /// Every task on agents with this value.
    Cluster(String),
    /// Spread evenly over the values (at least this many, when given).
    GroupBy(Option<u32>),
    /// At most this many tasks per value.
    MaxPer(u32),
    /// The value matches this regular expression (whole value).
    Like(Pattern),
    /// The value does not match it.
    Unlike(Pattern),
}

/// A LIKE or UNLIKE constraint's regular expression, compiled once when the app is read
/// (placement tests it against every offer).
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    whole: regex::Regex,
}

impl Pattern {
    /// `text` as a regular expression that must match a whole value.
    pub fn new(text: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern {
            text: text.to_string(),
            whole: regex::Regex::new(&format!("^(?:{text})$"))?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        self.whole.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Constraint {
    /// The constraint as Marathon writes it: an array of 2 or 3 strings.
    fn to_strings(&self) -> Vec<String> {
        let (op, value) = match &self.operator {
            Operator::Unique => ("UNIQUE", None),
            Operator::Cluster(v) => ("CLUSTER", Some(v.clone())),
            Operator::GroupBy(n) => ("GROUP_BY", n.map(|n| n.to_string())),
            Operator::MaxPer(n) => ("MAX_PER", Some(n.to_string())),
            Operator::Like(p) => ("LIKE", Some(p.as_str().to_string())),
            Operator::Unlike(p) => ("UNLIKE", Some(p.as_str().to_string())),
        };
        let mut out = vec![self.field.clone(), op.to_string()];
        out.extend(value);
        out
    }

    /// Reads `[field, OPERATOR, value?]`; a value may be a JSON number (some clients send
    /// `MAX_PER`'s that way).
    fn from_values(values: Vec<Value>) -> Result<Constraint, String> {
        if !(2..=3).contains(&values.len()) {
            return Err("Each constraint must have either 2 or 3 fields".into());
        }
        let text = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("Constraint definition must be an array of strings".to_string()),
        };
        let field = text(&values[0])?;
        let op = text(&values[1])?;
        let value = values.get(2).map(text).transpose()?;
        if field.is_empty() || field.len() > 256 {
            return Err("the constraint's field must be 1 to 256 bytes".into());
        }
        let number = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{op}: value {v:?} is not a whole number"))
        };
        let needed = |v: Option<String>| v.ok_or_else(|| format!("{op}: missing value"));
        let operator = match op.as_str() {
            "UNIQUE" if value.is_some() => return Err("UNIQUE: value specified but not used".into()),
            "UNIQUE" => Operator::Unique,
            "CLUSTER" => Operator::Cluster(needed(value)?),
            "GROUP_BY" => Operator::GroupBy(value.as_deref().map(number).transpose()?),
            "MAX_PER" => Operator::MaxPer(number(&needed(value)?)?),
            "LIKE" | "UNLIKE" => {
                let text = needed(value)?;
                let pattern = Pattern::new(&text)
                    .map_err(|e| format!("{op}: {text:?} is not a regular expression: {e}"))?;
                if op == "LIKE" {
                    Operator::Like(pattern)
                } else {
                    Operator::Unlike(pattern)
                }
            }
            _ => {
                return Err("Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER or UNLIKE".into())
            }
        };
        Ok(Constraint { field, operator })
    }
}

impl Serialize for Constraint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_strings().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let values = Vec::<Value>::deserialize(d)?;
        Constraint::from_values(values).map_err(D::Error::custom)
    }
}

/// How a task's health is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthProtocol {
    /// `GET path` on the task's port answers 2xx or 3xx (run by the scheduler).
    #[default]
    Http,
    Https,
    /// A TCP connection to the task's port opens (run by the scheduler).
    Tcp,
    /// A shell command exits 0 (run by the executor beside the task).
    Command,
    MesosHttp,
    MesosHttps,
    MesosTcp,
}

/// A COMMAND health check's command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckCommand {
    pub value: String,
}

/// A health check, with Marathon's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub protocol: HealthProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CheckCommand>,
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u32,
    #[serde(default = "default_interval")]
    pub interval_seconds: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: u32,
    #[serde(default)]
    pub ignore_http1xx: bool,
    #[serde(default = "default_delay")]
    pub delay_seconds: u32,
}

fn default_grace() -> u32 {
    300
}
fn default_interval() -> u32 {
    60
}
fn default_timeout() -> u32 {
    20
}
fn default_max_failures() -> u32 {
    3
}
fn default_delay() -> u32 {
    15
}

/// How many tasks a restart or config change keeps and may add, as fractions of `instances`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeStrategy {
    #[serde(default = "full")]
    pub minimum_health_capacity: f64,
    #[serde(default = "full")]
    pub maximum_over_capacity: f64,
}

fn full() -> f64 {
    1.0
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        Self {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

/// What happens to a task whose agent is unreachable: replaced after `inactiveAfterSeconds`,
/// forgotten (and killed if it comes back) after `expungeAfterSeconds`; or never
/// (`"disabled"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnreachableStrategy {
    Disabled,
    Enabled {
        inactive_after_seconds: u64,
        expunge_after_seconds: u64,
    },
}

impl Default for UnreachableStrategy {
    fn default() -> Self {
        UnreachableStrategy::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UnreachableEnabled {
    #[serde(default)]
    inactive_after_seconds: u64,
    #[serde(default)]
    expunge_after_seconds: u64,
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            UnreachableStrategy::Disabled => s.serialize_str("disabled"),
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => UnreachableEnabled {
                inactive_after_seconds,
                expunge_after_seconds,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "disabled" => Ok(UnreachableStrategy::Disabled),
            v @ Value::Object(_) => {
                let e: UnreachableEnabled = serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(UnreachableStrategy::Enabled {
                    inactive_after_seconds: e.inactive_after_seconds,
                    expunge_after_seconds: e.expunge_after_seconds,
                })
            }
            _ => Err(D::Error::custom(
                "expected \"disabled\" or {inactiveAfterSeconds, expungeAfterSeconds}",
            )),
        }
    }
}

/// Which tasks go first when an app scales down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KillSelection {
    #[default]
    YoungestFirst,
    OldestFirst,
}

/// Reads an app definition from a request body: 400 if it is not JSON, 422 naming every field
/// at fault if it is not a valid definition.
pub fn parse_app(body: &[u8]) -> Result<AppDefinition, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid(vec![Violation::new(
            "/",
            "expected a JSON object",
        )]));
    };
    app_from_fields(fields)
}

/// [`parse_app`] on an already-parsed object (an element of a bulk update, say).
pub fn app_from_fields(mut fields: Map<String, Value>) -> Result<AppDefinition, ApiError> {
    for key in READ_ONLY {
        fields.remove(key);
    }
    let mut violations = Vec::new();
    for key in UNSUPPORTED_UNLESS_EMPTY {
        if let Some(v) = fields.remove(key) {
            if !is_empty(&v) {
                violations.push(Violation::new(
                    format!("/{key}"),
                    format!("{key} is not supported by Drover"),
                ));
            }
        }
    }
    if !violations.is_empty() {
        return Err(ApiError::invalid(violations));
    }
    let app: AppDefinition = serde_path_to_error::deserialize(Value::Object(fields))
        .map_err(|e| ApiError::invalid(vec![type_violation(&e)]))?;
    let app = app.normalized();
    let violations = app.violations();
    if violations.is_empty() {
        Ok(app)
    } else {
        Err(ApiError::invalid(violations))
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The violation a typed read failed with: its path and serde's message.
fn type_violation(e: &serde_path_to_error::Error<serde_json::Error>) -> Violation {
    use serde_path_to_error::Segment;
    let segments: Vec<PathSegment<'_>> = e
        .path()
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(PathSegment::Key(key)),
            Segment::Seq { index } => Some(PathSegment::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect();
    Violation::new(pointer(segments), e.inner().to_string())
}

impl AppDefinition {
    /// The definition as stored: the deprecated `ports` folded into `portDefinitions`, the
    /// version left to the scheduler.
    fn normalized(mut self) -> Self {
        if let Some(ports) = self.ports.take() {
            self.port_definitions = ports
                .into_iter()
                .map(|port| PortDefinition {
                    port,
                    protocol: default_protocol(),
                    name: None,
                    labels: BTreeMap::new(),
                })
                .collect();
        }
        if let Some(network) = self.container.as_mut().and_then(Container::fold_deprecated) {
            let mode = match network.as_str() {
                "BRIDGE" => Some("container/bridge"),
                "USER" => Some("container"),
                "HOST" => Some("host"),
                _ => None,
            };
            if let Some(mode) = mode {
                self.networks = vec![Network {
                    mode: mode.into(),
                    name: None,
                    labels: BTreeMap::new(),
                }];
            }
        }
        // Marathon's default port definition is for host networking only.
        if !matches!(self.network(), Some(AppNetwork::Host))
            && self.port_definitions == default_port_definitions()
        {
            self.port_definitions.clear();
        }
        self.version = None;
        self
    }

    /// How the app's tasks are networked; `None` when its networks are not one Drover runs.
    pub fn network(&self) -> Option<AppNetwork> {
        match self.networks.as_slice() {
            [] => Some(AppNetwork::Host),
            [n] => match (n.mode.as_str(), &n.name) {
                ("host", _) => Some(AppNetwork::Host),
                ("container/bridge", _) => Some(AppNetwork::Bridge),
                ("container", Some(name)) if !name.is_empty() => {
                    Some(AppNetwork::Named(name.clone()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The app's Docker container, if it runs one.
    pub fn docker_container(&self) -> Option<&Container> {
        self.container.as_ref().filter(|c| c.is_docker())
    }

    /// The host ports one instance needs, in order (`PORT0`…): `Some` of a fixed port, `None`
    /// for any offered one. On host networking, one per port definition (fixed with
    /// `requirePorts`); on a container network, one per published port mapping.
    pub fn host_port_requests(&self) -> Vec<Option<u64>> {
        match self.mapped_ports() {
            Some((c, n)) => c.host_port_requests(&n),
            None => self
                .port_definitions
                .iter()
                .map(|p| self.require_ports.then_some(u64::from(p.port)))
                .collect(),
        }
    }

    /// The names of the host ports (`PORT_<NAME>`), in the order of [`Self::host_port_requests`].
    pub fn port_names(&self) -> Vec<Option<String>> {
        match self.mapped_ports() {
            Some((c, n)) => c.published_names(&n),
            None => self
                .port_definitions
                .iter()
                .map(|p| p.name.clone())
                .collect(),
        }
    }

    /// The container and its network when the app's host ports come from its port mappings
    /// (a Docker container on a container network), not from its port definitions.
    fn mapped_ports(&self) -> Option<(&Container, AppNetwork)> {
        match (self.network(), self.docker_container()) {
            (Some(n @ (AppNetwork::Bridge | AppNetwork::Named(_))), Some(c)) => Some((c, n)),
            _ => None,
        }
    }

    /// Every rule the definition breaks, with the field at fault.
    pub fn violations(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        self.check_command(&mut v);
        self.check_resources(&mut v);
        self.check_env_and_labels(&mut v);
        self.check_ports(&mut v);
        self.check_health(&mut v);
        self.check_strategies(&mut v);
        self.check_unsupported(&mut v);
        v
    }

    fn check_command(&self, v: &mut Vec<Violation>) {
        match (&self.cmd, &self.args) {
            (Some(_), Some(_)) => v.push(Violation::new(
                "/",
                "AppDefinition must either contain one of 'cmd' or 'args', not both",
            )),
            (None, None) if self.docker_container().is_none() => v.push(Violation::new(
                "/",
                "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
            )),
            (Some(cmd), None) if cmd.is_empty() => {
                v.push(Violation::new("/cmd", "must not be empty"))
            }
            (None, Some(args)) if args.is_empty() => {
                v.push(Violation::new("/args", "must not be empty"))
            }
            _ => {}
        }
        let bytes = self.cmd.as_ref().map_or(0, String::len)
            + self
                .args
                .iter()
                .flatten()
                .map(|a| a.len() + 1)
                .sum::<usize>();
        if bytes > MAX_COMMAND_BYTES {
            let at = if self.cmd.is_some() { "/cmd" } else { "/args" };
            v.push(Violation::new(
                at,
                format!("is longer than {MAX_COMMAND_BYTES} bytes"),
            ));
        }
    }

    fn check_resources(&self, v: &mut Vec<Violation>) {
        for (name, value) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            if !value.is_finite() || value < 0.0 {
                v.push(Violation::new(
                    format!("/{name}"),
                    "must be a finite number, at least 0",
                ));
            }
        }
        if self.cpus == 0.0 && self.mem == 0.0 {
            v.push(Violation::new("/cpus", "an app needs some cpus or mem"));
        }
        if self.instances > MAX_INSTANCES {
            v.push(Violation::new(
                "/instances",
                format!("must be at most {MAX_INSTANCES}"),
            ));
        }
        if !(self.backoff_factor.is_finite() && self.backoff_factor >= 1.0) {
            v.push(Violation::new("/backoffFactor", "must be at least 1.0"));
        }
        if self.constraints.len() > MAX_LIST {
            v.push(Violation::new(
                "/constraints",
                format!("at most {MAX_LIST}"),
            ));
        }
        for (i, r) in self.accepted_resource_roles.iter().flatten().enumerate() {
            if drover_model::Role::new(r).is_err() {
                v.push(Violation::new(
                    format!("/acceptedResourceRoles({i})"),
                    format!("{r:?} is not a role"),
                ));
            }
        }
        if let Some(role) = &self.role {
            if let Err(e) = drover_model::Role::new(role) {
                v.push(Violation::new("/role", e.to_string()));
            }
        }
    }

    fn check_env_and_labels(&self, v: &mut Vec<Violation>) {
        for (what, map) in [("env", &self.env), ("labels", &self.labels)] {
            if map.len() > MAX_ENV_VARS {
                v.push(Violation::new(
                    format!("/{what}"),
                    format!("at most {MAX_ENV_VARS} entries"),
                ));
            }
            for (k, value) in map {
                if k.is_empty()
                    || k.len() > MAX_ENV_BYTES
                    || value.len() > MAX_ENV_BYTES
                    || k.contains('\0')
                    || value.contains('\0')
                {
                    v.push(Violation::new(
                        format!("/{what}/{k}"),
                        format!("names and values are 1 to {MAX_ENV_BYTES} bytes, without NUL"),
                    ));
                }
            }
        }
        let total = drover_model::limits::env_total_bytes(&self.env);
        if total > MAX_ENV_TOTAL_BYTES {
            v.push(Violation::new(
                "/env",
                format!("{total} bytes: at most {MAX_ENV_TOTAL_BYTES} (names and values together)"),
            ));
        }
        for k in self.env.keys() {
            if k.contains('=') {
                v.push(Violation::new(
                    format!("/env/{k}"),
                    "a variable's name cannot contain '='",
                ));
            }
        }
    }

    fn check_ports(&self, v: &mut Vec<Violation>) {
        if self.port_definitions.len() > MAX_LIST {
            v.push(Violation::new(
                "/portDefinitions",
                format!("at most {MAX_LIST}"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.port_definitions.iter().enumerate() {
            let at = |field: &str| format!("/portDefinitions({i})/{field}");
            if p.port > u32::from(u16::MAX) {
                v.push(Violation::new(at("port"), "must be between 0 and 65535"));
            }
            if !["tcp", "udp", "udp,tcp"].contains(&p.protocol.as_str()) {
                v.push(Violation::new(
                    at("protocol"),
                    "must be tcp, udp or udp,tcp",
                ));
            }
            if let Some(name) = &p.name {
                let ok = name.len() <= 64
                    && name.starts_with(|c: char| c.is_ascii_lowercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !ok {
                    v.push(Violation::new(
                        at("name"),
                        "must match ^[a-z][a-z0-9-]*$ (at most 64 bytes)",
                    ));
                }
                if !names.insert(name) {
                    v.push(Violation::new(at("name"), "port names must be unique"));
                }
            }
        }
        if self.require_ports && self.port_definitions.iter().any(|p| p.port == 0) {
            v.push(Violation::new(
                "/requirePorts",
                "requirePorts needs every port given (not 0)",
            ));
        }
    }

    fn check_health(&self, v: &mut Vec<Violation>) {
        if self.health_checks.len() > MAX_LIST {
            v.push(Violation::new(
                "/healthChecks",
                format!("at most {MAX_LIST}"),
            ));
        }
        for (i, h) in self.health_checks.iter().enumerate() {
            let at = |field: &str| format!("/healthChecks({i}){field}");
            match h.protocol {
                HealthProtocol::Http | HealthProtocol::Tcp => {
                    let index = h.port_index.unwrap_or(0) as usize;
                    if h.port.is_none() && index >= self.host_port_requests().len() {
                        v.push(Violation::new(at("/portIndex"), "must name one of the app's ports"));
                    }
                    if h.command.is_some() {
                        v.push(Violation::new(at("/command"), "only for COMMAND health checks"));
                    }
                }
                HealthProtocol::Command => {
                    match &h.command {
                        Some(c) if !c.value.is_empty() && c.value.len() <= MAX_COMMAND_BYTES => {}
                        _ => v.push(Violation::new(at("/command"), "a COMMAND health check needs a command (1 to 64 KiB)")),
                    }
                    let earlier = self.health_checks[..i]
                        .iter()
                        .any(|e| e.protocol == HealthProtocol::Command);
                    if earlier {
                        v.push(Violation::new(
                            at("/protocol"),
                            "at most one COMMAND health check (its executor runs one beside each task)",
                        ));
                    }
                }
                other => v.push(Violation::new(
                    at("/protocol"),
                    format!("{other:?} health checks are not supported by Drover (HTTP, TCP and COMMAND are)"),
                )),
            }
            let longest = [
                h.grace_period_seconds,
                h.interval_seconds,
                h.timeout_seconds,
                h.delay_seconds,
            ]
            .into_iter()
            .max()
            .unwrap_or(0);
            if f64::from(longest) > drover_model::health::MAX_CHECK_SECONDS {
                v.push(Violation::new(
                    at(""),
                    format!(
                        "gracePeriodSeconds, intervalSeconds, timeoutSeconds and delaySeconds are at most {}",
                        drover_model::health::MAX_CHECK_SECONDS
                    ),
                ));
            }
            if h.max_consecutive_failures > drover_model::health::MAX_CONSECUTIVE_FAILURES {
                v.push(Violation::new(
                    at("/maxConsecutiveFailures"),
                    format!("at most {}", drover_model::health::MAX_CONSECUTIVE_FAILURES),
                ));
            }
            if h.interval_seconds == 0 || h.timeout_seconds == 0 {
                v.push(Violation::new(
                    at(""),
                    "intervalSeconds and timeoutSeconds must be at least 1",
                ));
            }
            if h.path
                .as_ref()
                .is_some_and(|p| !p.starts_with('/') || p.len() > 1024)
            {
                v.push(Violation::new(
                    at("/path"),
                    "must start with '/' (at most 1024 bytes)",
                ));
            }
        }
    }

    fn check_strategies(&self, v: &mut Vec<Violation>) {
        let u = self.upgrade_strategy;
        for (name, value) in [
            ("minimumHealthCapacity", u.minimum_health_capacity),
            ("maximumOverCapacity", u.maximum_over_capacity),
        ] {
            if !(0.0..=1.0).contains(&value) {
                v.push(Violation::new(
                    format!("/upgradeStrategy/{name}"),
                    "must be between 0 and 1",
                ));
            }
        }
        if let UnreachableStrategy::Enabled {
            inactive_after_seconds,
            expunge_after_seconds,
        } = self.unreachable_strategy
        {
            if inactive_after_seconds > expunge_after_seconds {
                v.push(Violation::new(
                    "/unreachableStrategy/inactiveAfterSeconds",
                    "must be at most expungeAfterSeconds",
                ));
            }
        }
    }

    fn check_unsupported(&self, v: &mut Vec<Violation>) {
        let network = self.network();
        if let Some(c) = &self.container {
            c.violations(network.as_ref(), v);
        }
        if self.gpus > 0 {
            v.push(Violation::new("/gpus", "GPUs are not supported by Drover"));
        }
        if !matches!(self.executor.as_str(), "" | "//cmd") {
            v.push(Violation::new(
                "/executor",
                "only the default executor (\"\" or \"//cmd\")",
            ));
        }
        match &network {
            None => v.push(Violation::new(
                "/networks",
                "one network: host, container/bridge, or container with a name",
            )),
            Some(AppNetwork::Host) => {}
            Some(_) => {
                if self.docker_container().is_none() {
                    v.push(Violation::new(
                        "/networks",
                        "container networks need a DOCKER container",
                    ));
                }
                if !self.port_definitions.is_empty() {
                    v.push(Violation::new(
                        "/portDefinitions",
                        "must be empty on a container network: use container.portMappings",
                    ));
                }
            }
        }
        if let Some(e) = self
            .user
            .as_deref()
            .and_then(drover_model::limits::user_name_error)
        {
            v.push(Violation::new("/user", e));
        }
    }
}

#[cfg(test)]
mod tests;
