//! `drover up`: a whole local cluster in child processes, until Ctrl-C or SIGTERM.
//!
//! Masters listen on 127.0.0.1 from `base_port` in steps of two (5050, 5052, 5054 by default;
//! the odd ports are left for agents), keep their data under `base_dir` (`./.drover/`) and log
//! to files there. Running it again restarts the same cluster from its data.

use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::cluster::{ClusterError, ClusterSpec, LocalCluster};

pub struct UpOptions {
    pub binary: PathBuf,
    pub base_dir: PathBuf,
    pub masters: u64,
    pub base_port: u16,
    pub master_args: Vec<String>,
}

pub async fn run(opts: UpOptions) -> Result<(), ClusterError> {
    let mut spec = ClusterSpec::on_ports_from(
        opts.binary,
        opts.base_dir.clone(),
        opts.masters,
        opts.base_port,
    );
    spec.master_args = opts.master_args;
    println!(
        "starting {} masters (data and logs under {})…",
        opts.masters,
        opts.base_dir.display()
    );
    let mut cluster = LocalCluster::start(spec).await?;
    let leader = match cluster.wait_for_leader(Duration::from_secs(60)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("no leader was elected: {e}");
            for m in cluster.masters() {
                eprintln!("  see {}", m.log_path.display());
            }
            cluster.stop_all(Duration::from_secs(10)).await?;
            return Err(e);
        }
    };
    println!();
    println!(
        "Drover is up: cluster {}, term {}",
        leader.cluster_id, leader.term
    );
    for m in cluster.masters() {
        let tag = if m.id == leader.node_id {
            "  (leader)"
        } else {
            ""
        };
        println!("  master {}  grpc://{}{tag}", m.id, m.addr);
        println!(
            "            http://{}/health  http://{}/v1/leader  http://{}/metrics",
            m.addr, m.addr, m.addr
        );
        println!("            log {}", m.log_path.display());
    }
    let masters = cluster.addrs().join(",");
    println!();
    println!("Try:  drover store --masters {masters} put greeting hello");
    println!("      drover store --masters {masters} get greeting");
    println!("      drover cluster --masters {masters} status");
    println!("Press Ctrl-C to stop.");

    let mut term = signal(SignalKind::terminate()).map_err(|source| ClusterError::Io {
        what: "installing the SIGTERM handler".into(),
        source,
    })?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                let ids: Vec<u64> = cluster.masters().filter(|m| m.is_running()).map(|m| m.id).collect();
                for id in ids {
                    if let Ok(Some(status)) = cluster.exited(id) {
                        let log = cluster.master(id).map(|m| m.log_path.display().to_string()).unwrap_or_default();
                        eprintln!("master {id} exited ({status}); see {log}");
                    }
                }
            }
        }
    }
    println!("stopping…");
    cluster.stop_all(Duration::from_secs(15)).await?;
    println!("stopped.");
    Ok(())
}
