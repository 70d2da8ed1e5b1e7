//! `drover run`: launch one command as a task on the cluster and follow it to its end, in the
//! spirit of `mesos-execute`.
//!
//! Owns the command line ([`RunArgs`]), its validation into a launch plan, and the one-task
//! framework in `launch` that drives the [`Driver`]: subscribe, decline what does not fit,
//! accept the first offer that does, print each status, acknowledge it, tear the framework down
//! at the end and exit with the task's status.
//!
//! Output contract: stdout holds one line per status, whose first word is the state name
//! (`TASK_STAGING`, `TASK_RUNNING`, `TASK_FAILED (exit code 3): …`), and the task's own stdout
//! between its RUNNING and its terminal line (its stderr goes to ours); everything else
//! (which master, the framework id, the agent, re-subscriptions) goes to stderr. With
//! `--no-output` stdout holds only the status lines.

mod launch;
mod output;

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model::limits::{MAX_COMMAND_BYTES, MAX_ENV_VARS};
use drover_proto::v1::{CommandInfo, ContainerInfo, TaskInfo};
use drover_resources::{ResourceError, Resources};

use crate::driver::{DriverError, DriverOptions, FrameworkInfo, TaskId};

pub use launch::{exit_code_of, status_line};

/// The masters `drover up` starts.
pub const DEFAULT_MASTERS: &str = "127.0.0.1:5050,127.0.0.1:5052,127.0.0.1:5054";
/// How long the master keeps the framework (and the task) when `drover run` loses its
/// connection: long enough to ride out a master failover, short enough that a crashed
/// `drover run` does not leave its task behind for long.
pub const FAILOVER_TIMEOUT_SECONDS: f64 = 60.0;
/// Longest task id or name accepted, bytes.
const MAX_ID_BYTES: usize = 200;

/// `drover run [OPTIONS] -- COMMAND...`
#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Run one command as a task on the cluster and wait for it to end",
    long_about = "Run one command as a task on the cluster and wait for it to end.\n\n\
        Prints each status of the task on its own line to stdout (the state name first), \
        the task's stdout and stderr as it runs (read from its agent; --no-output turns that \
        off), progress to stderr, and exits with the task's exit status: 0 when it finished, its \
        exit code when it failed, 128+N when signal N ended it, 1 when it was killed or lost, \
        2 when no offer fitted within --timeout, 130 on Ctrl-C (the task is killed first)."
)]
pub struct RunArgs {
    /// Masters to talk to (any subset of the cluster), comma-separated host:port.
    #[arg(
        long,
        env = "DROVER_MASTERS",
        value_delimiter = ',',
        default_value = DEFAULT_MASTERS
    )]
    pub masters: Vec<String>,
    /// The framework's and the task's name.
    #[arg(long, default_value = "drover-run")]
    pub name: String,
    /// The allocation role to ask resources from.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// CPUs for the task.
    #[arg(long, default_value_t = 0.1)]
    pub cpus: f64,
    /// Memory for the task, MiB.
    #[arg(long, default_value_t = 32.0, value_name = "MIB")]
    pub mem: f64,
    /// Disk for the task, MiB.
    #[arg(long, default_value_t = 0.0, value_name = "MIB")]
    pub disk: f64,
    /// Number of ports to take from the offer's port ranges (the lowest ones).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub ports: u64,
    /// An environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The task's id (default: <name>.<8 random hex digits>).
    #[arg(long)]
    pub task_id: Option<String>,
    /// SIGTERM-to-SIGKILL grace period when the task is killed, seconds (default: the
    /// agent's, 3 s).
    #[arg(long, value_name = "SECONDS")]
    pub kill_grace_seconds: Option<f64>,
    /// How long to wait for an offer that fits (e.g. 60, 60s, 500ms, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Do not copy the task's stdout and stderr (stdout then holds only the status lines).
    #[arg(long)]
    pub no_output: bool,
    /// The user the task runs as on its agent (default: the agent's default task user,
    /// `nobody` on an agent running as root; root only where the agent allows it). With
    /// `--image`, the container's user.
    #[arg(long)]
    pub user: Option<String>,
    /// Run the task as a container of this Docker image (on an agent whose containerizers
    /// include docker); without a COMMAND, the image's own runs.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The container's network: host, bridge, none, or the name of a Docker network.
    #[arg(long, requires = "image", default_value = "bridge")]
    pub network: String,
    /// Publish this container port on a port taken from the offer (repeatable; the container
    /// sees the host port in PORT0…, the container port is where it listens).
    #[arg(long, requires = "image", value_name = "CONTAINER_PORT")]
    pub publish: Vec<u16>,
    /// Pull the image even when the agent's engine has it.
    #[arg(long, requires = "image")]
    pub force_pull: bool,
    /// Give COMMAND's words to the container as its own command line (Docker's CMD, after the
    /// image's entrypoint), with no shell in between: each word is passed as it is.
    #[arg(long, requires = "image")]
    pub no_shell: bool,
    /// The command, run with /bin/sh -c (its words are joined with spaces); with `--no-shell`,
    /// the container's command line.
    #[arg(
        value_name = "COMMAND",
        required_unless_present = "image",
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
    /// Mutual TLS to the masters and the task's agent, with an operator's (client)
    /// certificate.
    #[command(flatten)]
    pub tls: drover_tls::TlsArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("{0}")]
    NoFittingOffer(String),
    #[error("the master ended the framework: {0}")]
    Framework(String),
    #[error("the framework driver stopped unexpectedly")]
    DriverStopped,
    #[error("writing to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

impl RunError {
    /// The process exit status for this failure: 2 for a usage error or when no offer fitted,
    /// 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::NoFittingOffer(_) => 2,
            _ => 1,
        }
    }
}

/// Runs the task and returns the process exit status (the task's, or 130/143 when interrupted
/// by SIGINT/SIGTERM). Failures that are not the task's come back as [`RunError`]; print them
/// and exit with [`RunError::exit_code`].
pub async fn run(args: RunArgs) -> Result<i32, RunError> {
    let mut stdout = std::io::stdout();
    launch::launch(
        args,
        DriverOptions::default(),
        &mut stdout,
        launch::Interrupts::signals(),
    )
    .await
}

/// What to launch, checked.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub masters: Vec<String>,
    pub framework: FrameworkInfo,
    pub task_id: TaskId,
    pub name: String,
    /// cpus, mem, disk (ports are taken from the offer).
    pub scalars: Resources,
    pub ports: u64,
    pub command: CommandInfo,
    pub kill_grace: Option<Duration>,
    pub offer_timeout: Duration,
    /// Copy the task's stdout and stderr while it runs.
    pub stream_output: bool,
    /// The container to run in (host ports of its mappings are filled from the offer).
    pub container: Option<ContainerInfo>,
    /// Mutual TLS, as a client (operator).
    pub tls: Option<drover_tls::LiveTls>,
}

impl Plan {
    pub fn from_args(args: RunArgs) -> Result<Plan, RunError> {
        let usage = |field: &str, reason: String| RunError::Usage(format!("--{field}: {reason}"));
        let masters: Vec<String> = args
            .masters
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if masters.is_empty() {
            return Err(usage(
                "masters",
                "give at least one host:port (or set DROVER_MASTERS)".into(),
            ));
        }
        check_name("name", &args.name)?;
        if args.role.is_empty() || args.role.len() > MAX_ID_BYTES {
            return Err(usage(
                "role",
                format!("1 to {MAX_ID_BYTES} bytes, e.g. '*'"),
            ));
        }
        for (field, value) in [("cpus", args.cpus), ("mem", args.mem)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(usage(field, format!("{value}: must be more than 0")));
            }
        }
        let scalars = Resources::from_scalars(args.cpus, args.mem, args.disk)
            .map_err(|e| resource_usage(&e))?;
        if scalars.cpus().is_zero() || scalars.mem_mib().is_zero() {
            return Err(usage(
                "cpus/--mem",
                "must be at least 0.001 (resources are exact to a thousandth)".into(),
            ));
        }
        let task_id = match args.task_id {
            Some(id) => {
                check_id("task-id", &id)?;
                id
            }
            None => default_task_id(&args.name),
        };
        if let Some(g) = args.kill_grace_seconds {
            if !(0.0..=24.0 * 3600.0).contains(&g) {
                return Err(usage(
                    "kill-grace-seconds",
                    format!("{g}: must be 0 to 86400 seconds"),
                ));
            }
        }
        if args.timeout.is_zero() {
            return Err(usage("timeout", "must be more than 0".into()));
        }
        let container = match &args.image {
            Some(image) => Some(container(
                image,
                &args.network,
                &args.publish,
                args.force_pull,
            )?),
            None => None,
        };
        let (shell, arguments) = if args.no_shell {
            if args.command.is_empty() {
                return Err(usage(
                    "no-shell",
                    "give the container's command line after the options".into(),
                ));
            }
            (String::new(), args.command.clone())
        } else {
            (args.command.join(" "), Vec::new())
        };
        drover_model::container::check_arguments(
            &arguments,
            &shell,
            container.is_some(),
            "command",
        )
        .map_err(|e| usage("no-shell", e.reason))?;
        if shell.trim().is_empty() && arguments.is_empty() && container.is_none() {
            return Err(RunError::Usage(
                "no command: give it after the options, e.g. `drover run -- echo hello`".into(),
            ));
        }
        if shell.len() > MAX_COMMAND_BYTES {
            return Err(RunError::Usage(format!(
                "the command is longer than {MAX_COMMAND_BYTES} bytes"
            )));
        }
        if args.env.len() > MAX_ENV_VARS {
            return Err(usage("env", format!("at most {MAX_ENV_VARS} variables")));
        }
        if let Some(e) = args
            .user
            .as_deref()
            .and_then(drover_model::limits::user_name_error)
        {
            return Err(usage("user", e));
        }
        let mut environment = BTreeMap::new();
        for (k, v) in args.env {
            if environment.insert(k.clone(), v).is_some() {
                return Err(usage("env", format!("{k} is given twice")));
            }
        }
        let framework = FrameworkInfo {
            name: args.name.clone(),
            role: args.role,
            principal: String::new(),
            failover_timeout_seconds: FAILOVER_TIMEOUT_SECONDS,
            id: None,
            // Its task on a partitioned agent is UNREACHABLE, and RUNNING again if the agent
            // comes back, rather than LOST and killed.
            partition_aware: true,
        };
        let tls = match args
            .tls
            .files()
            .map_err(|e| usage("tls-cert", e.to_string()))?
        {
            None => None,
            Some(files) => Some(
                drover_tls::LiveTls::fixed(files, drover_tls::Role::Client)
                    .map_err(|e| usage("tls-cert", e.to_string()))?,
            ),
        };
        Ok(Plan {
            tls,
            masters,
            framework,
            task_id: TaskId::new(task_id),
            name: args.name,
            scalars,
            command: CommandInfo {
                shell,
                arguments,
                environment: environment.into_iter().collect(),
                user: args.user.unwrap_or_default(),
            },
            kill_grace: args.kill_grace_seconds.map(Duration::from_secs_f64),
            offer_timeout: args.timeout,
            stream_output: !args.no_output,
            // A published port takes one of the offer's ports.
            ports: args.ports.max(args.publish.len() as u64),
            container,
        })
    }

    /// The resources to take from `offer`, or `None` when it does not fit.
    pub fn fit(&self, offered: &Resources) -> Option<Resources> {
        let mut want = self.scalars.clone();
        if self.ports > 0 {
            let ports = offered.ports().first(self.ports)?;
            want = want.with_ranges("ports", ports).ok()?;
        }
        offered.contains(&want).then_some(want)
    }

    /// What is asked, for messages: `cpus:0.1;mem:32;ports:2`.
    pub fn wanted(&self) -> String {
        if self.ports > 0 {
            format!("{};ports:{}", self.scalars, self.ports)
        } else {
            self.scalars.to_string()
        }
    }

    pub fn task_info(&self, resources: &Resources) -> TaskInfo {
        let mut container = self.container.clone();
        // The i-th published container port goes on the i-th port taken from the offer.
        if let Some(d) = container.as_mut().and_then(|c| c.docker.as_mut()) {
            for (m, port) in d.port_mappings.iter_mut().zip(resources.ports().values()) {
                m.host_port = port as u32;
            }
        }
        TaskInfo {
            task_id: self.task_id.as_str().to_string(),
            name: self.name.clone(),
            resources: resources.to_proto(),
            command: Some(self.command.clone()),
            kill_grace_seconds: self.kill_grace.map(|g| g.as_secs_f64()).unwrap_or(0.0),
            health_check: None,
            container,
            ..Default::default()
        }
    }
}

/// The container of `--image`: its network and the container ports to publish (host ports are
/// the offer's, filled in at launch).
fn container(
    image: &str,
    network: &str,
    publish: &[u16],
    force_pull: bool,
) -> Result<ContainerInfo, RunError> {
    use drover_proto::v1::container_info::docker_info::{Network, PortMapping};
    use drover_proto::v1::container_info::{DockerInfo, Type};
    let (network, network_name) = match network {
        "host" => (Network::Host, String::new()),
        "bridge" => (Network::Bridge, String::new()),
        "none" => (Network::None, String::new()),
        name => (Network::User, name.to_string()),
    };
    let info = ContainerInfo {
        r#type: Type::Docker as i32,
        volumes: vec![],
        docker: Some(DockerInfo {
            image: image.to_string(),
            network: network as i32,
            port_mappings: publish
                .iter()
                .enumerate()
                .map(|(i, p)| PortMapping {
                    // A placeholder until the offer's ports are known (checked as such here).
                    host_port: 1 + i as u32,
                    container_port: u32::from(*p),
                    protocol: "tcp".into(),
                })
                .collect(),
            force_pull_image: force_pull,
            network_name,
            ..Default::default()
        }),
    };
    // The same check the master makes, so that a bad flag is a usage error here.
    drover_model::container::ContainerSpec::from_proto(&info, "container").map_err(|e| {
        let flag = if e.field.contains("image") {
            "image"
        } else if e.field.contains("port_mappings") {
            "publish"
        } else {
            "network"
        };
        RunError::Usage(format!("--{flag}: {}", e.reason))
    })?;
    Ok(info)
}

fn resource_usage(e: &ResourceError) -> RunError {
    RunError::Usage(format!("--cpus/--mem/--disk: {e}"))
}

fn check_name(field: &str, s: &str) -> Result<(), RunError> {
    if s.is_empty() || s.len() > MAX_ID_BYTES || s.chars().any(char::is_control) {
        return Err(RunError::Usage(format!(
            "--{field}: 1 to {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_id(field: &str, s: &str) -> Result<(), RunError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if !ok {
        return Err(RunError::Usage(format!(
            "--{field}: {s:?}: use 1 to {MAX_ID_BYTES} of A-Z a-z 0-9 . _ : -"
        )));
    }
    Ok(())
}

/// `<name>.<8 hex>`, with the name reduced to the characters a task id may hold.
fn default_task_id(name: &str) -> String {
    let base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_ID_BYTES - 9)
        .collect();
    format!("{base}.{:08x}", rand::random::<u32>())
}

/// `KEY=VALUE`, KEY a shell variable name.
fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    if !drover_model::limits::is_env_name(k) {
        return Err(format!(
            "{k:?}: a variable name is letters, digits and _, not starting with a digit"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `60`, `60s`, `500ms`, `2m`, `1h`, `1.5s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 60s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests;
