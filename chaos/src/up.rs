//! `drover up`: a whole local cluster in child processes, until Ctrl-C or SIGTERM.
//!
//! Masters listen on 127.0.0.1 from `base_port` in steps of two (5050, 5052, 5054 by default),
//! agents on the odd ports between them (5051, 5053), the schedulers (`/v2`) from
//! `scheduler_port` (8080, 8081; one active, the other a standby), everything keeps its data under
//! `base_dir` (`./.drover/`) and logs to files there. Running it again restarts the same
//! cluster from its data (agents keep their ids).
//!
//! TLS is on unless asked otherwise: a CA under `base_dir/tls` issues every process its
//! certificate (masters, agents, the schedulers as frameworks) and one operator's certificate
//! (`client-operator`), and `base_dir/env` exports the variables that point drover's commands
//! at this cluster with it (`. .drover/env`).

use std::path::PathBuf;
use std::time::Duration;

use drover_proto::master::StatusReply;
use tokio::signal::unix::{signal, SignalKind};

use crate::cluster::marathon::{MarathonScheduler, READY_TIMEOUT};
use crate::cluster::{ClusterError, ClusterSpec, LocalCluster};

/// How long the schedulers get to release their lease and exit before SIGKILL.
const SCHEDULER_STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the agents, then the masters, each get to exit before SIGKILL: with the
/// schedulers' grace, a stop takes at most 25 s.
const CLUSTER_STOP_GRACE: Duration = Duration::from_secs(10);

pub struct UpOptions {
    pub binary: PathBuf,
    pub base_dir: PathBuf,
    pub masters: u64,
    pub agents: usize,
    pub base_port: u16,
    pub master_args: Vec<String>,
    pub agent_args: Vec<String>,
    /// How many `drover scheduler`s (one active, the rest standbys).
    pub schedulers: usize,
    /// The first scheduler's `/v2` port; the others follow it.
    pub scheduler_port: u16,
    /// Mutual TLS on every connection (the default of `drover up`).
    pub tls: bool,
}

/// The operator's certificate `drover up` issues (`client-operator.pem`).
pub const OPERATOR: &str = "operator";
/// The schedulers' certificate (`framework-marathon.pem`).
const SCHEDULER_CERT: &str = "marathon";

/// What the cluster's TLS gives `drover up`: the operator's files (for the banner and the env
/// file) and the same certificate loaded (for `drover up`'s own calls), and the flags the
/// schedulers get.
struct UpTls {
    operator: drover_tls::config::TlsFiles,
    as_operator: drover_tls::LiveTls,
    scheduler_flags: Vec<String>,
}

fn up_tls(cluster: &LocalCluster) -> Result<Option<UpTls>, ClusterError> {
    let Some(certs) = cluster.certs() else {
        return Ok(None);
    };
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    let scheduler = certs.files(drover_tls::Role::Framework, SCHEDULER_CERT, &hosts)?;
    Ok(Some(UpTls {
        operator: certs.files(drover_tls::Role::Client, OPERATOR, &[])?,
        as_operator: certs.loaded(drover_tls::Role::Client, OPERATOR)?,
        scheduler_flags: crate::cluster::certs::flags(&scheduler),
    }))
}

/// An HTTP client of the cluster's servers of `roles`, as the operator when TLS is on.
fn http_as_operator(
    tls: Option<&UpTls>,
    roles: &[drover_tls::Role],
) -> Result<crate::http::Http, ClusterError> {
    let Some(t) = tls else {
        return Ok(crate::http::Http::plain());
    };
    crate::http::Http::tls(&t.as_operator.client(roles)).map_err(|e| ClusterError::Io {
        what: "the operator's certificate".into(),
        source: std::io::Error::other(e),
    })
}

/// `s` as one word to a POSIX shell, whatever it holds (spaces, `$`, quotes).
fn shell_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `base_dir/env`: the variables that point drover's commands at this cluster (its masters,
/// its first scheduler, and with TLS the operator's certificate).
fn write_env(
    path: &std::path::Path,
    masters: &str,
    scheduler: Option<String>,
    operator: Option<&drover_tls::config::TlsFiles>,
) -> Result<(), ClusterError> {
    let mut vars = vec![("DROVER_MASTERS", masters.to_string())];
    vars.extend(scheduler.map(|s| ("DROVER_SCHEDULER", s)));
    if let Some(f) = operator {
        for (var, file) in [
            ("DROVER_TLS_CERT", &f.cert),
            ("DROVER_TLS_KEY", &f.key),
            ("DROVER_TLS_CA", &f.ca),
        ] {
            let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
            vars.push((var, file.display().to_string()));
        }
    }
    let mut text: String = vars
        .iter()
        .map(|(var, value)| format!("export {var}={}\n", shell_quoted(value)))
        .collect();
    if operator.is_none() {
        text.push_str("unset DROVER_TLS_CERT DROVER_TLS_KEY DROVER_TLS_CA\n");
    }
    std::fs::write(path, text).map_err(|source| ClusterError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// The schedulers' slots: `count` of them on the ports from `first_port`.
fn scheduler_slots(
    binary: &std::path::Path,
    base_dir: &std::path::Path,
    masters: &str,
    count: usize,
    first_port: u16,
    flags: &[String],
) -> Vec<MarathonScheduler> {
    (0..count)
        .map(|i| {
            let port = first_port.saturating_add(i as u16);
            MarathonScheduler::new(
                binary,
                masters,
                format!("127.0.0.1:{port}"),
                base_dir.join(format!("scheduler-{i}.log")),
                flags,
            )
        })
        .collect()
}

/// Starts the schedulers, and waits until each answers (through `http`).
async fn start_schedulers(
    schedulers: &mut [MarathonScheduler],
    http: &crate::http::Http,
) -> Result<(), ClusterError> {
    for s in schedulers.iter_mut() {
        s.start()?;
    }
    for s in schedulers.iter() {
        if s.wait_ready_with(http, READY_TIMEOUT).await.is_err() {
            eprintln!(
                "scheduler {} did not answer; see {}",
                s.addr,
                s.log.display()
            );
        }
    }
    Ok(())
}

/// Refuses ports a cluster still running (a stale `drover up`, say) holds, naming it, rather
/// than letting each master fail alone with "address in use".
fn check_ports_free(spec: &ClusterSpec) -> Result<(), ClusterError> {
    let ports: Vec<u16> = spec
        .ports
        .values()
        .chain(spec.agent_ports.iter())
        .copied()
        .collect();
    let taken: Vec<String> = ports
        .into_iter()
        .filter(|p| !crate::ports::is_free(*p))
        .map(crate::ports::explain_taken)
        .collect();
    if taken.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::PortsTaken(taken.join("; ")))
    }
}

/// The containerizers an agent advertises (its `/state`'s `containerizers` attribute).
async fn agent_containerizers(http: &crate::http::Http, addr: &str) -> Option<String> {
    let state = http.get_json(addr, "/state").await.ok()?;
    state["attributes"][drover_model::container::CONTAINERIZERS_ATTRIBUTE]
        .as_str()
        .map(str::to_string)
}

/// Where everything is, and what to try.
fn print_banner(
    cluster: &LocalCluster,
    leader: &StatusReply,
    schedulers: &[MarathonScheduler],
    containerizers: &[Option<String>],
    tls: Option<&UpTls>,
    env_file: &std::path::Path,
) {
    let http = if tls.is_some() { "https" } else { "http" };
    let curl = match tls {
        Some(t) => format!(
            "curl --cacert {} --cert {} --key {}",
            t.operator.ca.display(),
            t.operator.cert.display(),
            t.operator.key.display()
        ),
        None => "curl".to_string(),
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
            "            {http}://{}/health  {http}://{}/v1/leader  {http}://{}/metrics",
            m.addr, m.addr, m.addr
        );
        println!("            log {}", m.log_path.display());
    }
    for (i, a) in cluster.agents().enumerate() {
        println!(
            "  agent {}   grpc://{}  {http}://{}/health",
            a.index, a.addr, a.addr
        );
        let containers = match containerizers.get(i).cloned().flatten() {
            Some(c) if drover_model::container::runs_docker(&c) => {
                format!("containers: yes (containerizers {c})")
            }
            Some(c) => format!(
                "containers: no (containerizers {c}: the Docker engine did not answer; see its log)"
            ),
            None => "containers: unknown (its /state did not answer)".to_string(),
        };
        println!("            {containers}");
        println!(
            "            work dir {}  log {}",
            a.work_dir.display(),
            a.log_path.display()
        );
    }
    for (i, s) in schedulers.iter().enumerate() {
        println!(
            "  scheduler {i}  {http}://{}/v2/apps  {http}://{}/v2/leader  (one active, the others redirect to it)",
            s.addr, s.addr
        );
        println!("            log {}", s.log.display());
    }
    println!();
    match tls {
        Some(t) => {
            println!("TLS is on: every connection is mutual TLS; the operator's certificate is");
            println!(
                "  {} (key {}, CA {})",
                t.operator.cert.display(),
                t.operator.key.display(),
                t.operator.ca.display()
            );
        }
        None => println!("TLS is off (--insecure): anyone who reaches these ports may use them."),
    }
    println!(
        "Point drover's commands at this cluster{}:  . {}",
        if tls.is_some() { " with it" } else { "" },
        env_file.display()
    );
    println!();
    if let Some(s) = schedulers.first() {
        println!(
            "Try:  {curl} -X POST -H 'Content-Type: application/json' {http}://{}/v2/apps \\",
            s.addr
        );
        println!(
            r#"        -d '{{"id": "/hello", "cmd": "sleep 1000", "instances": 2, "cpus": 0.1, "mem": 32}}'"#
        );
        println!("      {curl} {http}://{}/v2/apps/hello", s.addr);
    }
    println!("      drover app list");
    println!("      drover run -- 'echo hello from drover'");
    println!("      {curl} {http}://{}/v1/state", leader.leader_addr);
    println!("      drover store put greeting hello");
    println!("      drover store get greeting");
    println!("      drover cluster status");
    println!("Press Ctrl-C to stop.");
}

pub async fn run(opts: UpOptions) -> Result<(), ClusterError> {
    let mut spec = ClusterSpec::on_ports_from(
        opts.binary,
        opts.base_dir.clone(),
        opts.masters,
        opts.agents,
        opts.base_port,
    );
    spec.master_args = opts.master_args;
    spec.agent_args = opts.agent_args;
    spec.tls = opts.tls;
    check_ports_free(&spec)?;
    let scheduler_ports: Vec<String> = (0..opts.schedulers)
        .map(|i| opts.scheduler_port.saturating_add(i as u16))
        .filter(|p| !crate::ports::is_free(*p))
        .map(crate::ports::explain_taken)
        .collect();
    if !scheduler_ports.is_empty() {
        return Err(ClusterError::PortsTaken(scheduler_ports.join("; ")));
    }
    let binary = spec.binary.clone();
    println!(
        "starting {} masters and {} agents (data and logs under {})…",
        opts.masters,
        opts.agents,
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
    let masters = cluster.addrs().join(",");
    let tls = match up_tls(&cluster) {
        Ok(t) => t,
        Err(e) => {
            cluster.stop_all(Duration::from_secs(10)).await?;
            return Err(e);
        }
    };
    let mut schedulers = scheduler_slots(
        &binary,
        &opts.base_dir,
        &masters,
        opts.schedulers,
        opts.scheduler_port,
        tls.as_ref().map_or(&[][..], |t| &t.scheduler_flags),
    );
    let started = async {
        let to_schedulers = http_as_operator(tls.as_ref(), &[drover_tls::Role::Framework])?;
        start_schedulers(&mut schedulers, &to_schedulers).await?;
        let to_agents = http_as_operator(tls.as_ref(), &[drover_tls::Role::Agent])?;
        let mut containerizers = Vec::new();
        for a in cluster.agents() {
            containerizers.push(agent_containerizers(&to_agents, &a.addr).await);
        }
        let env_file = opts.base_dir.join("env");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let first = schedulers.first().map(|s| format!("{scheme}://{}", s.addr));
        write_env(
            &env_file,
            &masters,
            first,
            tls.as_ref().map(|t| &t.operator),
        )?;
        Ok::<_, ClusterError>((containerizers, env_file))
    }
    .await;
    let (containerizers, env_file) = match started {
        Ok(s) => s,
        Err(e) => {
            cluster.stop_all(Duration::from_secs(10)).await?;
            return Err(e);
        }
    };
    print_banner(
        &cluster,
        &leader,
        &schedulers,
        &containerizers,
        tls.as_ref(),
        &env_file,
    );

    // Both listeners live for the whole loop: a listener sees only the signals that arrive
    // after it subscribed, so one made afresh each round (`tokio::signal::ctrl_c()`) missed a
    // Ctrl-C that came while the previous round's tick ran, and `drover up` never stopped.
    let installing = |what: &str| {
        let what = what.to_string();
        move |source| ClusterError::Io { what, source }
    };
    let mut term =
        signal(SignalKind::terminate()).map_err(installing("installing the SIGTERM handler"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(installing("installing the SIGINT handler"))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                for i in cluster.exited_agents() {
                    let log = cluster.agent(i).map(|a| a.log_path.display().to_string()).unwrap_or_default();
                    eprintln!("agent {i} exited; see {log}");
                }
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
    let started = std::time::Instant::now();
    // All at once, so the grace is one for every scheduler, not one each.
    for s in &schedulers {
        s.terminate();
    }
    for s in &mut schedulers {
        s.stop(SCHEDULER_STOP_GRACE).await;
    }
    let schedulers_stopped = started.elapsed();
    cluster.stop_all(CLUSTER_STOP_GRACE).await?;
    println!(
        "stopped in {:.1} s (schedulers {:.1} s).",
        started.elapsed().as_secs_f64(),
        schedulers_stopped.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The env file is sourced by a shell: a path with a space, a quote or a `$` is one
    /// word and runs nothing.
    #[test]
    fn the_env_file_gives_the_shell_paths_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a b'c$(touch pwned)");
        std::fs::create_dir_all(&odd).unwrap();
        let operator = drover_tls::config::TlsFiles {
            cert: odd.join("client-operator.pem"),
            key: odd.join("client-operator.key"),
            ca: odd.join("ca.pem"),
        };
        let env = dir.path().join("env");
        write_env(
            &env,
            "127.0.0.1:5050",
            Some("https://127.0.0.1:8080".into()),
            Some(&operator),
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#". "$1" && printf '%s\n' "$DROVER_TLS_CERT" "$DROVER_SCHEDULER""#)
            .arg("sh")
            .arg(&env)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let printed = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines,
            [
                operator.cert.display().to_string().as_str(),
                "https://127.0.0.1:8080"
            ]
        );
        assert!(!dir.path().join("pwned").exists());
    }
}
