//! A master's configuration: where it listens, who its peers are, where its data lives, the
//! Raft timing and log-compaction settings and the offer cycle's, each with its unit; the
//! `drover master` flags ([`MasterArgs`]), their `DROVER_*` variables and the `--config` TOML
//! file, checked into a [`MasterConfig`] (a refusal names the flag).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raft::MasterId;

#[derive(Clone, Debug)]
pub struct MasterConfig {
    pub id: MasterId,
    /// Local address the gRPC + HTTP listener binds.
    pub listen: SocketAddr,
    /// The founding members of the cluster, `id -> host:port`, this master included. Used to
    /// bootstrap once; after that the replicated membership is authoritative.
    pub peers: BTreeMap<MasterId, String>,
    pub data_dir: PathBuf,
    pub heartbeat_interval: Duration,
    /// openraft 0.9 draws one election timeout in `[min, max)` when the node starts, and a
    /// follower that has a leader waits `max` (the leader lease) plus that timeout without
    /// hearing from it before it campaigns: with 250–500 ms, 750–1000 ms of silence.
    ///
    /// The defaults (heartbeat 50 ms, election 250–500 ms) leave room for a busy host:
    /// openraft 0.9 gives each AppendEntries the heartbeat interval to be answered, and with
    /// 30 ms and 100–200 ms a loaded 2-core machine running three masters and 10 000
    /// simulated agents lost its leader in about half of the `bench launch` runs (a follower
    /// stalled while every replica built a large snapshot at the same index); with these, none
    /// in four.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind the latest snapshot (so that a slightly lagging follower catches
    /// up from the log, not a snapshot).
    pub keep_entries_after_snapshot: u64,
    /// How long a write or a linearizable read may wait for a quorum.
    pub write_timeout: Duration,
    /// How long `add-master` waits for a new replica to catch up before making it a voter.
    pub catch_up_timeout: Duration,
    /// Source address for connections to other masters; None lets the kernel choose.
    pub peer_bind_ip: Option<std::net::IpAddr>,
    /// Mutual TLS on every connection, in and out (plain TCP when `None`).
    pub tls: Option<drover_tls::config::TlsFiles>,
    /// The ACL file (JSON, see `drover_acl`): who may register frameworks in which roles and
    /// run tasks as which users, read once at start. `None`: everything is allowed.
    pub acls: Option<crate::acl::AclFile>,
    /// The leader's offer cycle: allocation, offers, agent health.
    pub offers: OfferCycleConfig,
}

/// Timing of the leader's offer cycle (see [`crate::leader`]).
#[derive(Clone, Debug)]
pub struct OfferCycleConfig {
    /// A full allocation cycle runs this often; events (an agent added, resources freed, a
    /// REVIVE) also trigger one after [`Self::allocation_batch`].
    pub allocation_interval: Duration,
    /// How long events are batched before the allocation they trigger.
    pub allocation_batch: Duration,
    /// An offer not used within this long is rescinded.
    pub offer_timeout: Duration,
    /// How often agents heartbeat (told to them when they register).
    pub agent_heartbeat_interval: Duration,
    /// An agent silent for this long is marked UNREACHABLE (committed).
    pub agent_timeout: Duration,
    /// How often the leader sends HEARTBEAT to each subscribed framework.
    pub framework_heartbeat_interval: Duration,
    /// Filter applied by DECLINE and to ACCEPT's unused resources when the framework gives
    /// none (Mesos's default: 5 s).
    pub default_refuse: Duration,
    /// After a leader change: how long agents have to register again with their tasks before
    /// they are marked UNREACHABLE, and the least time every framework gets to subscribe again.
    pub agent_reregister_timeout: Duration,
    /// An agent UNREACHABLE this long is marked GONE.
    pub agent_removal_timeout: Duration,
    /// Completed tasks (ended, and their last update acknowledged) kept per framework; the
    /// oldest beyond it are forgotten (Mesos's `--max_completed_tasks_per_framework`).
    pub max_completed_tasks_per_framework: u32,
    /// Completed frameworks (torn down, no live task) kept with their tasks; the oldest beyond
    /// it are forgotten (Mesos's `--max_completed_frameworks`).
    pub max_completed_frameworks: u32,
}

impl Default for OfferCycleConfig {
    fn default() -> Self {
        Self {
            allocation_interval: Duration::from_secs(1),
            allocation_batch: Duration::from_millis(5),
            offer_timeout: Duration::from_secs(60),
            agent_heartbeat_interval: Duration::from_secs(5),
            agent_timeout: Duration::from_secs(30),
            framework_heartbeat_interval: Duration::from_secs(5),
            default_refuse: Duration::from_secs(5),
            agent_reregister_timeout: Duration::from_secs(60),
            agent_removal_timeout: Duration::from_secs(3600),
            max_completed_tasks_per_framework: 1_000,
            max_completed_frameworks: 50,
        }
    }
}

impl MasterConfig {
    /// Defaults for everything but identity, addresses and data directory.
    pub fn new(
        id: MasterId,
        listen: SocketAddr,
        peers: BTreeMap<MasterId, String>,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            id,
            listen,
            peers,
            data_dir,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(250),
            election_timeout_max: Duration::from_millis(500),
            snapshot_every_entries: 10_000,
            keep_entries_after_snapshot: 1_000,
            write_timeout: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(60),
            peer_bind_ip: None,
            tls: None,
            acls: None,
            offers: OfferCycleConfig::default(),
        }
    }

    /// The address this master is reached at: its entry in `peers`, else its listen address.
    pub fn advertised_addr(&self) -> String {
        self.peers
            .get(&self.id)
            .cloned()
            .unwrap_or_else(|| self.listen.to_string())
    }

    #[cfg_attr(not(feature = "durable"), allow(dead_code))]
    pub(crate) fn raft_config(&self) -> openraft::Config {
        openraft::Config {
            cluster_name: "drover".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            // The budget for the last step of a snapshot transfer (install on the follower);
            // the stream itself gets a size-proportional budget in `raft::network`.
            install_snapshot_timeout: 10_000,
            max_payload_entries: 1024,
            replication_lag_threshold: 1_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            purge_batch_size: 64,
            ..Default::default()
        }
    }
}

/// Parses `1=host:port,2=host:port,…`.
pub fn parse_peers(s: &str) -> Result<BTreeMap<MasterId, String>, String> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected ID=HOST:PORT"))?;
        let id: MasterId = id
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: id must be a positive integer"))?;
        if id == 0 {
            return Err(format!("{part:?}: id must be greater than 0"));
        }
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{part:?}: address must be HOST:PORT")),
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("master {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject() {
        let p = parse_peers("1=127.0.0.1:5050, 2=localhost:5052").unwrap();
        assert_eq!(p[&2], "localhost:5052");
        assert!(parse_peers("1=127.0.0.1").is_err());
        assert!(parse_peers("0=a:1").is_err());
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("").is_err());
    }
}

/// `drover master`: run one master. Every flag has a `DROVER_*` variable and a key in the
/// `--config` file; flags and variables win over the file, the file over the defaults.
#[derive(clap::Args, Debug, Clone)]
pub struct MasterArgs {
    /// A TOML file with any of these settings (same names, e.g. `heartbeat_ms = 30`). Flags and
    /// DROVER_* variables win over the file, the file over the defaults.
    #[arg(long, env = "DROVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// This master's id in the cluster (a positive integer, never reused). Required.
    #[arg(long, env = "DROVER_MASTER_ID")]
    pub id: Option<u64>,
    /// Address to listen on for gRPC and HTTP.
    #[arg(long, env = "DROVER_LISTEN", default_value = "127.0.0.1:5050")]
    pub listen: std::net::SocketAddr,
    /// The founding masters, this one included: 1=host:port,2=host:port,… Required.
    #[arg(long, env = "DROVER_PEERS")]
    pub peers: Option<String>,
    /// Where this master keeps its Raft log, snapshots and identity. Required.
    #[arg(long, env = "DROVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Leader heartbeat interval, milliseconds. openraft 0.9 also gives every AppendEntries
    /// this long to be answered (received, appended and fsynced by the follower).
    #[arg(long, env = "DROVER_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Election timeout range, milliseconds. A follower campaigns after hearing nothing from
    /// its leader for MAX (the leader lease) plus a timeout drawn in [MIN, MAX) at start.
    #[arg(long, env = "DROVER_ELECTION_TIMEOUT_MIN_MS", default_value_t = 250)]
    pub election_timeout_min_ms: u64,
    #[arg(long, env = "DROVER_ELECTION_TIMEOUT_MAX_MS", default_value_t = 500)]
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, env = "DROVER_SNAPSHOT_EVERY", default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot.
    #[arg(long, env = "DROVER_KEEP_LOGS", default_value_t = 1_000)]
    pub keep_logs: u64,
    /// How long a write or linearizable read may wait for a quorum, milliseconds.
    #[arg(long, env = "DROVER_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    pub write_timeout_ms: u64,
    /// Source IP for connections to other masters (default: chosen by the kernel).
    #[arg(long, env = "DROVER_PEER_BIND_IP")]
    pub peer_bind_ip: Option<std::net::IpAddr>,
    /// How long `cluster add-master` waits on this leader for the new learner to catch up
    /// before it gives up (the learner stays; add-master again promotes it), milliseconds.
    #[arg(long, env = "DROVER_CATCH_UP_TIMEOUT_MS", default_value_t = 60_000)]
    pub catch_up_timeout_ms: u64,
    /// How often the leader runs a full DRF allocation cycle, milliseconds (events such as a
    /// new agent, freed resources or REVIVE also trigger one).
    #[arg(long, env = "DROVER_ALLOCATION_INTERVAL_MS", default_value_t = 1_000)]
    pub allocation_interval_ms: u64,
    /// An offer unused for this long is rescinded, milliseconds.
    #[arg(long, env = "DROVER_OFFER_TIMEOUT_MS", default_value_t = 60_000)]
    pub offer_timeout_ms: u64,
    /// How often agents heartbeat, milliseconds (told to agents when they register).
    #[arg(long, env = "DROVER_AGENT_HEARTBEAT_MS", default_value_t = 5_000)]
    pub agent_heartbeat_ms: u64,
    /// An agent silent for this long is marked UNREACHABLE, milliseconds.
    #[arg(long, env = "DROVER_AGENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub agent_timeout_ms: u64,
    /// How often subscribed frameworks get a HEARTBEAT event, milliseconds.
    #[arg(long, env = "DROVER_FRAMEWORK_HEARTBEAT_MS", default_value_t = 5_000)]
    pub framework_heartbeat_ms: u64,
    /// After a leader change, how long agents have to register again (with their tasks)
    /// before they are marked UNREACHABLE, and the least time every framework has to
    /// subscribe again before its failover timeout tears it down, milliseconds.
    #[arg(
        long,
        env = "DROVER_AGENT_REREGISTER_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub agent_reregister_timeout_ms: u64,
    /// An agent UNREACHABLE for this long is removed (GONE: its tasks end as TASK_GONE, and it
    /// may not register under its id again), milliseconds.
    #[arg(
        long,
        env = "DROVER_AGENT_REMOVAL_TIMEOUT_MS",
        default_value_t = 3_600_000
    )]
    pub agent_removal_timeout_ms: u64,
    /// Completed tasks (ended, last update acknowledged) each framework keeps in the
    /// registry; the oldest beyond it are forgotten (as Mesos's
    /// --max_completed_tasks_per_framework).
    #[arg(
        long,
        env = "DROVER_MAX_COMPLETED_TASKS_PER_FRAMEWORK",
        default_value_t = 1_000
    )]
    pub max_completed_tasks_per_framework: u32,
    /// Completed frameworks (torn down, no live task) kept with their tasks; the oldest beyond
    /// it are forgotten (as Mesos's --max_completed_frameworks).
    #[arg(long, env = "DROVER_MAX_COMPLETED_FRAMEWORKS", default_value_t = 50)]
    pub max_completed_frameworks: u32,
    #[command(flatten)]
    pub tls: drover_tls::TlsArgs,
    /// An ACL file (JSON): which principals may register frameworks in which roles and run
    /// tasks as which users; read again on SIGHUP and when it changes. Default: none
    /// (everything allowed).
    #[arg(long, env = "DROVER_ACLS")]
    pub acls: Option<PathBuf>,
}

/// `drover master --config FILE`: the master's settings in TOML.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterFile {
    id: Option<u64>,
    listen: Option<std::net::SocketAddr>,
    peers: Option<String>,
    data_dir: Option<PathBuf>,
    heartbeat_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every: Option<u64>,
    keep_logs: Option<u64>,
    write_timeout_ms: Option<u64>,
    peer_bind_ip: Option<std::net::IpAddr>,
    catch_up_timeout_ms: Option<u64>,
    allocation_interval_ms: Option<u64>,
    offer_timeout_ms: Option<u64>,
    agent_heartbeat_ms: Option<u64>,
    agent_timeout_ms: Option<u64>,
    framework_heartbeat_ms: Option<u64>,
    agent_reregister_timeout_ms: Option<u64>,
    agent_removal_timeout_ms: Option<u64>,
    max_completed_tasks_per_framework: Option<u32>,
    max_completed_frameworks: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    acls: Option<PathBuf>,
}

/// A refused configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required (flag, DROVER_* variable or config file)")]
    Missing(&'static str),
    #[error("{flag}: {error}")]
    Invalid { flag: &'static str, error: String },
    #[error("need {0}")]
    Order(&'static str),
    #[error("{path}: {error}")]
    Read { path: PathBuf, error: String },
}

impl MasterArgs {
    /// Fills what neither a flag nor a variable gave from the `--config` file, if there is
    /// one; `given` are the parsed arguments of the `master` subcommand (to tell a default from
    /// a value given).
    pub fn merge_file(mut self, given: &clap::ArgMatches) -> Result<Self, ConfigError> {
        let a = &mut self;
        let Some(path) = a.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            error: e.to_string(),
        })?;
        let f: MasterFile = toml::from_str(&text).map_err(|e| ConfigError::Read {
            path: path.clone(),
            error: e.to_string(),
        })?;
        let explicit = |id: &str| {
            matches!(
                given.value_source(id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            )
        };
        macro_rules! fill {
            ($($field:ident),*) => {$(
                if !explicit(stringify!($field)) {
                    if let Some(v) = f.$field {
                        a.$field = v.into();
                    }
                }
            )*};
        }
        fill!(
            id,
            listen,
            peers,
            data_dir,
            heartbeat_ms,
            election_timeout_min_ms,
            election_timeout_max_ms,
            snapshot_every,
            keep_logs,
            write_timeout_ms,
            peer_bind_ip,
            catch_up_timeout_ms,
            allocation_interval_ms,
            offer_timeout_ms,
            agent_heartbeat_ms,
            agent_timeout_ms,
            framework_heartbeat_ms,
            agent_reregister_timeout_ms,
            agent_removal_timeout_ms,
            max_completed_tasks_per_framework,
            max_completed_frameworks
        );
        for (id, slot, value) in [
            ("tls_cert", &mut a.tls.tls_cert, f.tls_cert),
            ("tls_key", &mut a.tls.tls_key, f.tls_key),
            ("tls_ca", &mut a.tls.tls_ca, f.tls_ca),
            ("acls", &mut a.acls, f.acls),
        ] {
            if !explicit(id) && value.is_some() {
                *slot = value;
            }
        }
        Ok(self)
    }

    /// Checks the settings into a [`MasterConfig`]; a refusal names the flag.
    pub fn into_config(self) -> Result<MasterConfig, ConfigError> {
        let a = &self;
        let missing = ConfigError::Missing;
        let id = a.id.ok_or_else(|| missing("--id"))?;
        let peers = a.peers.as_deref().ok_or_else(|| missing("--peers"))?;
        let data_dir = a.data_dir.clone().ok_or_else(|| missing("--data-dir"))?;
        let peers = parse_peers(peers).map_err(|e| ConfigError::Invalid {
            flag: "--peers",
            error: e,
        })?;
        if a.election_timeout_min_ms <= a.heartbeat_ms
            || a.election_timeout_max_ms <= a.election_timeout_min_ms
        {
            return Err(ConfigError::Order(
                "--heartbeat-ms < --election-timeout-min-ms < --election-timeout-max-ms",
            ));
        }
        let mut config = MasterConfig::new(id, a.listen, peers, data_dir);
        config.heartbeat_interval = Duration::from_millis(a.heartbeat_ms);
        config.election_timeout_min = Duration::from_millis(a.election_timeout_min_ms);
        config.election_timeout_max = Duration::from_millis(a.election_timeout_max_ms);
        config.snapshot_every_entries = a.snapshot_every;
        config.keep_entries_after_snapshot = a.keep_logs;
        config.write_timeout = Duration::from_millis(a.write_timeout_ms);
        config.peer_bind_ip = a.peer_bind_ip;
        config.tls = a.tls.files().map_err(|e| ConfigError::Invalid {
            flag: "--tls-cert",
            error: e.to_string(),
        })?;
        config.acls = a
            .acls
            .as_deref()
            .map(crate::acl::AclFile::load)
            .transpose()
            .map_err(|error| ConfigError::Invalid {
                flag: "--acls",
                error,
            })?;
        config.catch_up_timeout = Duration::from_millis(a.catch_up_timeout_ms);
        for (flag, v) in [
            ("--allocation-interval-ms", a.allocation_interval_ms),
            ("--offer-timeout-ms", a.offer_timeout_ms),
            ("--agent-heartbeat-ms", a.agent_heartbeat_ms),
            ("--agent-timeout-ms", a.agent_timeout_ms),
            ("--framework-heartbeat-ms", a.framework_heartbeat_ms),
            (
                "--agent-reregister-timeout-ms",
                a.agent_reregister_timeout_ms,
            ),
            ("--agent-removal-timeout-ms", a.agent_removal_timeout_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    flag,
                    error: "must be greater than 0".into(),
                });
            }
        }
        if a.agent_timeout_ms <= a.agent_heartbeat_ms {
            return Err(ConfigError::Order(
                "--agent-heartbeat-ms < --agent-timeout-ms",
            ));
        }
        config.offers.allocation_interval = Duration::from_millis(a.allocation_interval_ms);
        config.offers.offer_timeout = Duration::from_millis(a.offer_timeout_ms);
        config.offers.agent_heartbeat_interval = Duration::from_millis(a.agent_heartbeat_ms);
        config.offers.agent_timeout = Duration::from_millis(a.agent_timeout_ms);
        config.offers.framework_heartbeat_interval =
            Duration::from_millis(a.framework_heartbeat_ms);
        config.offers.agent_reregister_timeout =
            Duration::from_millis(a.agent_reregister_timeout_ms);
        config.offers.agent_removal_timeout = Duration::from_millis(a.agent_removal_timeout_ms);
        config.offers.max_completed_tasks_per_framework = a.max_completed_tasks_per_framework;
        config.offers.max_completed_frameworks = a.max_completed_frameworks;
        Ok(config)
    }
}
