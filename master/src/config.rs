//! A master's configuration: where it listens, who its peers are, where its data lives, and
//! the Raft timing and log-compaction settings, each with its unit.

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
