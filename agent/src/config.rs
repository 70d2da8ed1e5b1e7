//! The agent's settings: the `drover agent` flags ([`AgentArgs`]), checked into an
//! [`AgentConfig`], and the detection of what this host offers when `--resources` leaves a
//! resource out.
//!
//! Every flag can also be set by an environment variable: `DROVER_MASTERS` (shared with the
//! other subcommands), the rest `DROVER_AGENT_*` so that a shell that configures a master and an
//! agent does not mix their `--listen` or `--work-dir`. A refusal names the flag.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_model::container::{DockerPolicy, CONTAINERIZERS_ATTRIBUTE, KNOWN_PARAMETERS};
use drover_resources::{Attributes, Resources};

use crate::users::UserPolicy;

/// Most simulated agents in one process.
pub const MAX_SIMULATED: usize = 100_000;
/// Memory kept for the system, MiB, when detecting `mem`.
pub const MEM_RESERVE_MIB: u64 = 1024;
/// Least `mem` detected, MiB.
pub const MIN_MEM_MIB: u64 = 256;
/// Disk kept for the system, MiB, when detecting `disk`.
pub const DISK_RESERVE_MIB: u64 = 5 * 1024;
/// Ports offered when `--resources` names none.
pub const DEFAULT_PORTS: &str = "[31000-32000]";
/// What each simulated agent offers when `--resources` does not say.
pub const SIMULATED_RESOURCES: &str = "cpus:4;mem:8192;disk:65536;ports:[31000-32000]";
/// Bounds of `--heartbeat-interval-ms`.
pub const MIN_HEARTBEAT_MS: u64 = 100;
pub const MAX_HEARTBEAT_MS: u64 = 60_000;
/// Longest `--executor-grace-ms`.
pub const MAX_EXECUTOR_GRACE_MS: u64 = 3_600_000;

/// `drover agent`: run an agent (or, with --simulate N, N simulated agents).
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Masters to contact, any subset of the cluster (host:port,…).
    #[arg(
        long,
        env = "DROVER_MASTERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:5050,127.0.0.1:5052,127.0.0.1:5054"
    )]
    pub masters: Vec<String>,
    /// Where the agent keeps its id, task checkpoints and sandboxes. Required.
    #[arg(long, env = "DROVER_AGENT_WORK_DIR")]
    pub work_dir: PathBuf,
    /// Address the Agent service (gRPC) and /health, /metrics (HTTP) listen on.
    #[arg(long, env = "DROVER_AGENT_LISTEN", default_value = "127.0.0.1:5051")]
    pub listen: SocketAddr,
    /// Address masters dial to reach this agent, host:port (default: the listen address; with
    /// an unspecified listen IP, the hostname and the listen port).
    #[arg(long, env = "DROVER_AGENT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Hostname reported to the masters (default: the system's).
    #[arg(long, env = "DROVER_AGENT_HOSTNAME")]
    pub hostname: Option<String>,
    /// Resources offered, Mesos syntax, e.g. "cpus:4;mem:8192;ports:[31000-32000]". Names
    /// given override the detected ones (cpus: available parallelism; mem: total memory minus
    /// 1 GiB, at least 256 MiB; disk: the work directory's file system minus 5 GiB; ports:
    /// [31000-32000]); names left out keep them.
    #[arg(long, env = "DROVER_AGENT_RESOURCES")]
    pub resources: Option<String>,
    /// Attributes, e.g. "rack:a;zone:z1".
    #[arg(long, env = "DROVER_AGENT_ATTRIBUTES", default_value = "")]
    pub attributes: String,
    /// Heartbeat interval, milliseconds; the master's, when it gives one, wins.
    #[arg(
        long,
        env = "DROVER_AGENT_HEARTBEAT_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub heartbeat_interval_ms: u64,
    /// SIGTERM-to-SIGKILL grace when killing a task that set none, milliseconds.
    #[arg(long, env = "DROVER_AGENT_EXECUTOR_GRACE_MS", default_value_t = 3000)]
    pub executor_grace_ms: u64,
    /// Run N simulated agents in this process instead of a real one (tasks are timers).
    #[arg(long, env = "DROVER_AGENT_SIMULATE", default_value_t = 0)]
    pub simulate: usize,
    /// Source address of connections to the masters (default: chosen by the kernel). A host
    /// with several interfaces picks one; a test cluster's fault layer tells agents apart by it.
    #[arg(long, env = "DROVER_AGENT_MASTER_BIND_IP")]
    pub master_bind_ip: Option<std::net::IpAddr>,
    /// This agent's certificate (PEM), issued for the agent role; with --tls-key and
    /// --tls-ca, every connection is mutual TLS. (The three flags are spelled out rather
    /// than flattened from `drover_tls::TlsArgs`: clap cannot tell an optional flattened
    /// group that holds another flattened group is present, and `drover agent` is one.)
    #[arg(long, env = "DROVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "DROVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM).
    #[arg(long, env = "DROVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// What to do at start with the tasks an earlier life of this agent started: reconnect
    /// (re-attach to running executors, report what ended meanwhile) or cleanup (kill them
    /// all, reported TASK_KILLED).
    #[arg(long, env = "DROVER_AGENT_RECOVER", value_enum, default_value_t = crate::recovery::RecoverMode::Reconnect)]
    pub recover: crate::recovery::RecoverMode,
    /// How long an ended task's directory (sandbox, logs) is kept, e.g. "7days", "12h"; the
    /// fuller the disk past --gc-disk-headroom, the shorter (Mesos's --gc_delay).
    #[arg(long, env = "DROVER_AGENT_GC_DELAY", default_value = "7days", value_parser = humantime::parse_duration)]
    pub gc_delay: Duration,
    /// The fraction of the work directory's disk to keep free, 0 to 1: an ended task's
    /// directory is kept gc-delay × max(0, 1 − headroom − disk usage).
    #[arg(long, env = "DROVER_AGENT_GC_DISK_HEADROOM", default_value_t = 0.1)]
    pub gc_disk_headroom: f64,
    /// How often the disk's usage is read and old task directories removed, e.g. "1m".
    #[arg(long, env = "DROVER_AGENT_DISK_WATCH_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub disk_watch_interval: Duration,
    /// How long a custom executor may take to subscribe before it is killed and its tasks
    /// fail (Mesos's --executor_registration_timeout), e.g. "1min".
    #[arg(long, env = "DROVER_AGENT_EXECUTOR_REGISTRATION_TIMEOUT", default_value = "1min", value_parser = humantime::parse_duration)]
    pub executor_registration_timeout: Duration,
    /// How long a custom executor found running after the agent's restart may take to
    /// subscribe again before it is killed and its tasks fail (Mesos's
    /// --executor_reregistration_timeout; pymesos retries with a backoff of up to 15 s).
    #[arg(long, env = "DROVER_AGENT_EXECUTOR_REREGISTRATION_TIMEOUT", default_value = "30secs", value_parser = humantime::parse_duration)]
    pub executor_reregistration_timeout: Duration,
    /// From SHUTDOWN to SIGKILL for a custom executor that set no grace (Mesos's
    /// --executor_shutdown_grace_period), e.g. "5secs".
    #[arg(long, env = "DROVER_AGENT_EXECUTOR_SHUTDOWN_GRACE", default_value = "5secs", value_parser = humantime::parse_duration)]
    pub executor_shutdown_grace: Duration,
    /// How long a custom executor with no live task keeps running before it is shut down.
    #[arg(long, env = "DROVER_AGENT_EXECUTOR_IDLE_TIMEOUT", default_value = "5secs", value_parser = humantime::parse_duration)]
    pub executor_idle_timeout: Duration,
    /// Containerizers to offer (Mesos's --containerizers): "docker,command" runs container
    /// tasks through the local Docker engine when it answers at start (the agent logs why
    /// not otherwise) and advertises it in its `containerizers` attribute; "command" runs
    /// commands only.
    #[arg(
        long,
        env = "DROVER_AGENT_CONTAINERIZERS",
        value_delimiter = ',',
        default_value = "docker,command"
    )]
    pub containerizers: Vec<String>,
    /// The Docker engine's Unix socket.
    #[arg(long, env = "DROVER_AGENT_DOCKER_SOCKET", default_value = crate::docker::DEFAULT_SOCKET)]
    pub docker_socket: PathBuf,
    /// Run privileged containers (refused otherwise).
    #[arg(long, env = "DROVER_AGENT_DOCKER_ALLOW_PRIVILEGED")]
    pub docker_allow_privileged: bool,
    /// The `docker run` parameters containers may set, of label, env, hostname, user,
    /// workdir, init, read-only, cap-add, cap-drop, shm-size (default: all but cap-add).
    #[arg(
        long,
        env = "DROVER_AGENT_DOCKER_ALLOWED_PARAMETERS",
        value_delimiter = ','
    )]
    pub docker_allowed_parameters: Option<Vec<String>>,
    /// Absolute host paths (and what is below them) container volumes may mount; the task's
    /// sandbox is always allowed. Default: none.
    #[arg(long, env = "DROVER_AGENT_DOCKER_VOLUME_PATHS", value_delimiter = ',')]
    pub docker_volume_paths: Vec<PathBuf>,
    /// Whom tasks that name no user run as (default: `nobody` when the agent runs as root;
    /// an agent not running as root runs every task as itself).
    #[arg(long, env = "DROVER_AGENT_DEFAULT_TASK_USER")]
    pub default_task_user: Option<String>,
    /// The users tasks may run as (default: any that exists on this host, root aside).
    #[arg(long, env = "DROVER_AGENT_ALLOWED_USERS", value_delimiter = ',')]
    pub allowed_users: Vec<String>,
    /// Let tasks run as root (refused otherwise).
    #[arg(long, env = "DROVER_AGENT_ALLOW_ROOT_TASKS")]
    pub allow_root_tasks: bool,
    /// Program and arguments that start an executor (default: this program, "executor").
    #[arg(
        long,
        env = "DROVER_AGENT_EXECUTOR_COMMAND",
        hide = true,
        num_args = 1..,
        value_delimiter = ' '
    )]
    pub executor_command: Vec<String>,
}

/// Longest custom executor timeout accepted.
const MAX_EXECUTOR_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Bounds of `--disk-watch-interval`.
const MIN_DISK_WATCH: Duration = Duration::from_millis(10);
const MAX_DISK_WATCH: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        reason: reason.into(),
    }
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub masters: Vec<String>,
    pub work_dir: PathBuf,
    pub listen: SocketAddr,
    /// `None`: derived from the bound listen address.
    pub advertise: Option<String>,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: Attributes,
    pub heartbeat_interval: Duration,
    pub executor_grace: Duration,
    /// Simulated agents; 0 for a real agent.
    pub simulate: usize,
    pub executor_command: Vec<OsString>,
    pub recover: crate::recovery::RecoverMode,
    pub master_bind_ip: Option<std::net::IpAddr>,
    /// Mutual TLS on every connection, in and out (plain TCP when `None`).
    pub tls: Option<drover_tls::config::TlsFiles>,
    /// The sandbox collector's settings (see [`crate::gc`]).
    pub gc_delay: Duration,
    pub gc_disk_headroom: f64,
    pub disk_watch_interval: Duration,
    /// Custom executors' timeouts (see [`AgentArgs`]).
    pub executor_registration_timeout: Duration,
    pub executor_reregistration_timeout: Duration,
    pub executor_shutdown_grace: Duration,
    pub executor_idle_timeout: Duration,
    /// Whether and how to run container tasks (see [`DockerSettings`]).
    pub docker: DockerSettings,
    /// Whom tasks run as (see [`crate::users`]).
    pub users: UserPolicy,
}

/// The Docker containerizer's settings: whether it is wanted (the engine must still answer at
/// start), where the engine is and what containers may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    pub wanted: bool,
    pub socket: PathBuf,
    pub policy: DockerPolicy,
}

impl DockerSettings {
    /// Commands only.
    pub fn disabled() -> Self {
        DockerSettings {
            wanted: false,
            socket: PathBuf::from(crate::docker::DEFAULT_SOCKET),
            policy: DockerPolicy::default(),
        }
    }

    /// The local engine at its default socket, with the default policy.
    pub fn local() -> Self {
        DockerSettings {
            wanted: true,
            ..Self::disabled()
        }
    }
}

impl AgentConfig {
    /// Checks the flags and detects what they leave out. Creates the work directory (its file
    /// system is measured for `disk`).
    pub fn from_args(args: AgentArgs) -> Result<Self, ConfigError> {
        let masters = masters(&args.masters)?;
        let work_dir = work_dir(&args.work_dir)?;
        if let Some(a) = &args.advertise {
            if a.trim().is_empty() || !a.contains(':') {
                return Err(invalid("advertise", format!("{a:?}: expected host:port")));
            }
        }
        let docker = docker_settings(&args)?;
        let users = user_policy(&args)?;
        let hostname = hostname(args.hostname)?;
        if !(MIN_HEARTBEAT_MS..=MAX_HEARTBEAT_MS).contains(&args.heartbeat_interval_ms) {
            return Err(invalid(
                "heartbeat-interval-ms",
                format!("between {MIN_HEARTBEAT_MS} and {MAX_HEARTBEAT_MS}"),
            ));
        }
        if args.executor_grace_ms > MAX_EXECUTOR_GRACE_MS {
            return Err(invalid(
                "executor-grace-ms",
                format!("at most {MAX_EXECUTOR_GRACE_MS}"),
            ));
        }
        if !(0.0..=1.0).contains(&args.gc_disk_headroom) {
            return Err(invalid(
                "gc-disk-headroom",
                format!("{}: a fraction between 0 and 1", args.gc_disk_headroom),
            ));
        }
        if args.disk_watch_interval < MIN_DISK_WATCH || args.disk_watch_interval > MAX_DISK_WATCH {
            return Err(invalid(
                "disk-watch-interval",
                format!("between {MIN_DISK_WATCH:?} and {MAX_DISK_WATCH:?}"),
            ));
        }
        for (flag, value) in [
            (
                "executor-registration-timeout",
                args.executor_registration_timeout,
            ),
            ("executor-shutdown-grace", args.executor_shutdown_grace),
            ("executor-idle-timeout", args.executor_idle_timeout),
        ] {
            if value > MAX_EXECUTOR_TIMEOUT {
                return Err(invalid(flag, format!("at most {MAX_EXECUTOR_TIMEOUT:?}")));
            }
        }
        if args.simulate > MAX_SIMULATED {
            return Err(invalid("simulate", format!("at most {MAX_SIMULATED}")));
        }
        let resources = resources(args.resources.as_deref(), args.simulate, &work_dir)?;
        let attributes = args
            .attributes
            .parse::<Attributes>()
            .map_err(|e| invalid("attributes", e.to_string()))?;
        if attributes.get(CONTAINERIZERS_ATTRIBUTE).is_some() {
            return Err(invalid(
                "attributes",
                format!("{CONTAINERIZERS_ATTRIBUTE} is the agent's own: use --containerizers"),
            ));
        }
        let executor_command = executor_command(&args.executor_command)?;
        Ok(AgentConfig {
            masters,
            work_dir,
            listen: args.listen,
            advertise: args.advertise,
            hostname,
            resources,
            attributes,
            heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms),
            executor_grace: Duration::from_millis(args.executor_grace_ms),
            simulate: args.simulate,
            executor_command,
            recover: args.recover,
            master_bind_ip: args.master_bind_ip,
            tls: drover_tls::live::files_from_flags(
                args.tls_cert.clone(),
                args.tls_key.clone(),
                args.tls_ca.clone(),
            )
            .map_err(|e| invalid("tls-cert", e.to_string()))?,
            gc_delay: args.gc_delay,
            gc_disk_headroom: args.gc_disk_headroom,
            disk_watch_interval: args.disk_watch_interval,
            executor_registration_timeout: args.executor_registration_timeout,
            executor_reregistration_timeout: args.executor_reregistration_timeout,
            executor_shutdown_grace: args.executor_shutdown_grace,
            executor_idle_timeout: args.executor_idle_timeout,
            docker,
            users,
        })
    }

    /// The address masters dial, given the address actually bound.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        match &self.advertise {
            Some(a) => a.clone(),
            None if bound.ip().is_unspecified() => format!("{}:{}", self.hostname, bound.port()),
            None => bound.to_string(),
        }
    }
}

/// `base` with every resource named in `explicit` replaced by the explicit amount.
pub fn overlay(base: Resources, explicit: &Resources) -> Result<Resources, String> {
    let mut out = base;
    for (name, amount) in explicit.scalars() {
        out = out
            .with_scalar(name.as_str(), amount)
            .map_err(|e| e.to_string())?;
    }
    for (name, ranges) in explicit.range_sets() {
        out = out
            .with_ranges(name.as_str(), ranges.clone())
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// `MemTotal` of `/proc/meminfo`, MiB.
fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The memory offered: total minus the reserve, at least [`MIN_MEM_MIB`].
fn offered_mem_mib(total_mib: u64) -> u64 {
    total_mib.saturating_sub(MEM_RESERVE_MIB).max(MIN_MEM_MIB)
}

/// What this host offers (see [`AgentArgs::resources`]). Anything it cannot measure it leaves
/// out, with a warning.
pub fn detect_resources(work_dir: &Path) -> Resources {
    let mut text = Vec::new();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    text.push(format!("cpus:{cpus}"));
    match std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(mem_total_mib)
    {
        Some(total) => text.push(format!("mem:{}", offered_mem_mib(total))),
        None => tracing::warn!(
            "cannot read MemTotal from /proc/meminfo; offering no mem (set --resources)"
        ),
    }
    match nix::sys::statvfs::statvfs(work_dir) {
        Ok(s) => {
            let total_mib = s.blocks().saturating_mul(s.fragment_size()) / (1024 * 1024);
            let disk = total_mib.saturating_sub(DISK_RESERVE_MIB);
            if disk > 0 {
                text.push(format!("disk:{disk}"));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot measure the work directory's file system; offering no disk (set --resources)")
        }
    }
    text.push(format!("ports:{DEFAULT_PORTS}"));
    text.join(";").parse().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "detected resources do not parse; offering none");
        Resources::empty()
    })
}

/// `--masters`: at least one, each a valid endpoint.
fn masters(given: &[String]) -> Result<Vec<String>, ConfigError> {
    let masters: Vec<String> = given
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if masters.is_empty() {
        return Err(invalid("masters", "give at least one master, host:port"));
    }
    for m in &masters {
        drover_client::channel::endpoint(m)
            .map_err(|e| invalid("masters", format!("{m:?}: {e}")))?;
    }
    Ok(masters)
}

/// `--work-dir`: created if missing, and made absolute.
fn work_dir(given: &Path) -> Result<PathBuf, ConfigError> {
    if given.as_os_str().is_empty() {
        return Err(invalid("work-dir", "required"));
    }
    std::fs::create_dir_all(given).map_err(|e| {
        invalid(
            "work-dir",
            format!("cannot create {}: {e}", given.display()),
        )
    })?;
    std::fs::canonicalize(given)
        .map_err(|e| invalid("work-dir", format!("{}: {e}", given.display())))
}

/// `--hostname`, or the system's.
fn hostname(given: Option<String>) -> Result<String, ConfigError> {
    let hostname = match given {
        Some(h) => h,
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .map_err(|e| {
                invalid(
                    "hostname",
                    format!("cannot read the system hostname ({e}); set it"),
                )
            })?,
    };
    if hostname.is_empty() || hostname.len() > 255 {
        return Err(invalid("hostname", "1 to 255 bytes"));
    }
    Ok(hostname)
}

/// What the agent offers: the detected resources (or the simulated agents' fixed ones) with
/// `--resources` laid over them.
fn resources(
    given: Option<&str>,
    simulate: usize,
    work_dir: &Path,
) -> Result<Resources, ConfigError> {
    let explicit = match given {
        Some(text) => text
            .parse::<Resources>()
            .map_err(|e| invalid("resources", e.to_string()))?,
        None => Resources::empty(),
    };
    let base = if simulate > 0 {
        SIMULATED_RESOURCES
            .parse::<Resources>()
            .map_err(|e| invalid("resources", e.to_string()))?
    } else {
        detect_resources(work_dir)
    };
    overlay(base, &explicit).map_err(|e| invalid("resources", e))
}

/// `--executor-command`, or this program's `executor` subcommand.
fn executor_command(given: &[String]) -> Result<Vec<OsString>, ConfigError> {
    if given.is_empty() {
        return crate::launcher::default_executor_command().map_err(|e| {
            invalid(
                "executor-command",
                format!("cannot find this program ({e}); give the executor command"),
            )
        });
    }
    let mut command: Vec<OsString> = given.iter().map(OsString::from).collect();
    // Executors work in their task directory: a program named by a relative path is resolved
    // here, against the agent's directory, where the operator meant it.
    if let Some(program) = command.first_mut() {
        let path = Path::new(program.as_os_str());
        if path.components().count() > 1 && path.is_relative() {
            *program = std::fs::canonicalize(path)
                .map_err(|e| invalid("executor-command", format!("{}: {e}", path.display())))?
                .into_os_string();
        }
    }
    Ok(command)
}

/// The task user policy of the flags, checked against this host: every name is a user name,
/// and the default user is one tasks may run as (else every task naming none would fail).
fn user_policy(args: &AgentArgs) -> Result<UserPolicy, ConfigError> {
    for u in &args.allowed_users {
        if let Some(e) = drover_model::limits::user_name_error(u) {
            return Err(invalid("allowed-users", e));
        }
    }
    if let Some(u) = &args.default_task_user {
        if let Some(e) = drover_model::limits::user_name_error(u) {
            return Err(invalid("default-task-user", e));
        }
    }
    let policy = UserPolicy::for_this_process(
        args.default_task_user.clone(),
        args.allowed_users.clone(),
        args.allow_root_tasks,
    );
    policy
        .decide("", &crate::users::HostAccounts)
        .map_err(|e| invalid("default-task-user", e.to_string()))?;
    Ok(policy)
}

fn docker_settings(args: &AgentArgs) -> Result<DockerSettings, ConfigError> {
    let mut wanted = false;
    for c in &args.containerizers {
        match c.trim() {
            "docker" => wanted = true,
            // Mesos calls its plain-process containerizer "mesos".
            "command" | "mesos" => {}
            other => {
                return Err(invalid(
                    "containerizers",
                    format!("{other:?}: docker or command"),
                ))
            }
        }
    }
    let mut policy = DockerPolicy {
        allow_privileged: args.docker_allow_privileged,
        ..DockerPolicy::default()
    };
    if let Some(allowed) = &args.docker_allowed_parameters {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if let Some(p) = allowed
            .iter()
            .find(|p| !KNOWN_PARAMETERS.contains(&p.as_str()))
        {
            return Err(invalid(
                "docker-allowed-parameters",
                format!("{p:?}: one of {}", KNOWN_PARAMETERS.join(",")),
            ));
        }
        policy.allowed_parameters = allowed;
    }
    for p in &args.docker_volume_paths {
        let text = p.to_str().unwrap_or_default();
        if !p.is_absolute() || text.contains(':') || text.contains(',') {
            return Err(invalid(
                "docker-volume-paths",
                format!("{}: absolute paths without ':'", p.display()),
            ));
        }
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(invalid(
                "docker-volume-paths",
                format!("{}: no '..'", p.display()),
            ));
        }
        policy.allowed_volume_paths.push(text.to_string());
    }
    Ok(DockerSettings {
        wanted,
        socket: args.docker_socket.clone(),
        policy,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(args: &[&str]) -> Result<AgentConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
            .expect("flags parse");
        AgentConfig::from_args(cli.agent)
    }

    #[test]
    fn explicit_resources_override_detected_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wd = dir.path().display().to_string();
        let c = parse(&[
            "--work-dir",
            &wd,
            "--resources",
            "cpus:0.5;gpus:1",
            "--hostname",
            "h",
        ])
        .expect("valid");
        assert_eq!(c.resources.cpus().milli(), 500);
        assert_eq!(c.resources.scalar("gpus").milli(), 1000);
        assert!(c.resources.mem_mib().milli() >= MIN_MEM_MIB * 1000);
        assert_eq!(c.resources.ports().values().next(), Some(31000));
        assert_eq!(c.masters.len(), 3);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.executor_grace, Duration::from_secs(3));
        assert_eq!(
            c.advertised("127.0.0.1:5051".parse().expect("addr")),
            "127.0.0.1:5051"
        );
        assert_eq!(
            c.advertised("0.0.0.0:5051".parse().expect("addr")),
            "h:5051"
        );
    }

    #[test]
    fn simulated_agents_default_to_the_simulated_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wd = dir.path().display().to_string();
        let c = parse(&[
            "--work-dir",
            &wd,
            "--simulate",
            "3",
            "--resources",
            "mem:100",
        ])
        .expect("valid");
        assert_eq!(
            c.resources.to_string(),
            "cpus:4;disk:65536;mem:100;ports:[31000-32000]"
        );
    }

    #[test]
    fn refusals_name_the_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wd = dir.path().display().to_string();
        let flag_of = |args: &[&str]| match parse(args) {
            Err(ConfigError::Invalid { flag, .. }) => flag,
            Ok(_) => panic!("{args:?} accepted"),
        };
        assert_eq!(
            flag_of(&["--work-dir", &wd, "--resources", "cpus:x"]),
            "resources"
        );
        assert_eq!(
            flag_of(&["--work-dir", &wd, "--attributes", "rack"]),
            "attributes"
        );
        assert_eq!(
            flag_of(&["--work-dir", &wd, "--heartbeat-interval-ms", "1"]),
            "heartbeat-interval-ms"
        );
        assert_eq!(flag_of(&["--work-dir", &wd, "--masters", ","]), "masters");
        assert_eq!(
            flag_of(&["--work-dir", &wd, "--advertise", "nohost"]),
            "advertise"
        );
        assert_eq!(
            flag_of(&["--work-dir", &wd, "--allowed-users", "a b"]),
            "allowed-users"
        );
        // Root as the default, without --allow-root-tasks (as root), or anyone but the
        // agent's own user (not as root): every task naming no user would fail.
        assert_eq!(
            flag_of(&["--work-dir", &wd, "--default-task-user", "root"]),
            "default-task-user"
        );
        assert_eq!(
            flag_of(&[
                "--work-dir",
                &wd,
                "--default-task-user",
                "no-such-user-here"
            ]),
            "default-task-user"
        );
    }

    #[test]
    fn memory_detection() {
        assert_eq!(
            mem_total_mib("MemTotal:       24683656 kB\nMemFree: 1 kB\n"),
            Some(24105)
        );
        assert_eq!(mem_total_mib("nothing"), None);
        assert_eq!(offered_mem_mib(24105), 23081);
        assert_eq!(offered_mem_mib(512), MIN_MEM_MIB);
    }
}
