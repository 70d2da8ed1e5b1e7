//! Versioned on-disk formats (issue 16), with directories made by the previous build
//! (`tests/data/unversioned/`, see its README): this build migrates them and serves what they
//! hold; a directory stamped by a newer build is refused by name, and left as it was.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use drover_client::MasterClient;
use tokio::process::{Child, Command};

use common::{binary, state_at, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/unversioned")
        .join(name)
}

/// Copies a directory tree (the committed data stays as it is).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn port() -> u16 {
    drover_chaos::cluster::free_port_block(1, 1).expect("a free port")
}

fn master(data_dir: &Path, port: u16) -> Command {
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(binary());
    cmd.args(["master", "--id", "1", "--listen", &addr])
        .args(["--peers", &format!("1={addr}")])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

fn agent(work_dir: &Path, master_port: u16, port: u16) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["agent", "--masters", &format!("127.0.0.1:{master_port}")])
        .arg("--work-dir")
        .arg(work_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--resources", "cpus:2;mem:1024"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `cmd` expecting it to refuse to start: its exit status and what it printed.
async fn refused(mut cmd: Command) -> String {
    let out = tokio::time::timeout(
        WAIT,
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output(),
    )
    .await
    .expect("it exits by itself")
    .unwrap();
    assert!(!out.status.success(), "it started");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn directories_of_the_previous_build_are_migrated_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let master_dir = tmp.path().join("master-1");
    let work_dir = tmp.path().join("agent-0");
    copy_tree(&data("master-1"), &master_dir);
    copy_tree(&data("agent-0"), &work_dir);
    let (mport, aport) = (port(), port());
    let addr = format!("127.0.0.1:{mport}");

    let m = master(&master_dir, mport)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // What the previous build stored: 31 keys, two tasks, one agent.
    let client = MasterClient::new(std::slice::from_ref(&addr)).unwrap();
    let greeting = wait_until("the migrated master serves its store", WAIT, || async {
        client
            .get("default", "greeting")
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    assert_eq!(greeting.map(|v| v.value), Some(b"hello".to_vec()));
    let keys = client.list("default", "", 100).await.unwrap().keys;
    assert_eq!(keys.len(), 31, "{keys:?}");
    let state = state_at(&addr).await.unwrap();
    let tasks: Vec<&str> = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(tasks.len(), 2, "{state}");
    assert!(
        tasks.contains(&"TASK_FINISHED") && tasks.contains(&"TASK_FAILED"),
        "{tasks:?}"
    );
    let agent_id = std::fs::read_to_string(work_dir.join("meta/agent_id")).unwrap();
    let agent_id = agent_id.trim();

    // The agent of the previous build comes back as itself; its ended tasks, acknowledged,
    // are moved out of the tree a restart reads.
    let a = agent(&work_dir, mport, aport)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_addr = format!("127.0.0.1:{aport}");
    wait_until("the old agent registers again", WAIT, || async {
        match common::metric(&agent_addr, "drover_agent_registered").await {
            Some(v) if v >= 1.0 => Ok(()),
            other => Err(format!("drover_agent_registered {other:?}")),
        }
    })
    .await
    .unwrap();
    // Under its old id: the registry has one agent, that one, active.
    let state = state_at(&addr).await.unwrap();
    let agents = state["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["id"], agent_id);
    assert_eq!(agents[0]["state"], "ACTIVE");
    assert_eq!(
        std::fs::read_to_string(work_dir.join("meta/format")).unwrap(),
        "drover-agent-work-dir 1\n"
    );
    wait_until("its ended tasks moved to completed/", WAIT, || async {
        let moved = std::fs::read_dir(work_dir.join("completed"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|fw| std::fs::read_dir(fw.path()).into_iter().flatten().flatten())
            .count();
        (moved == 2).then_some(()).ok_or(format!("{moved} moved"))
    })
    .await
    .unwrap();
    stop(a).await;
    stop(m).await;

    // Started again, the migrated directories are current: same data.
    let m = master(&master_dir, mport)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let again = wait_until("the master serves again", WAIT, || async {
        client
            .get("default", "k30")
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    assert_eq!(again.map(|v| v.value), Some(b"v30".to_vec()));
    stop(m).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn directories_stamped_by_a_newer_build_are_refused_by_name_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let master_dir = tmp.path().join("master-1");
    copy_tree(&data("master-1"), &master_dir);
    {
        let db = drover_master::db::open(&master_dir.join("raft")).unwrap();
        drover_master::format::stamp(&db, drover_master::format::DATA_FORMAT + 1).unwrap();
    }
    let out = refused(master(&master_dir, port())).await;
    let newer = drover_master::format::DATA_FORMAT + 1;
    assert!(
        out.contains(&master_dir.join("raft").display().to_string())
            && out.contains(&format!("format {newer}"))
            && out.contains(&format!(
                "this build reads format {}",
                drover_master::format::DATA_FORMAT
            )),
        "{out}"
    );
    {
        let db = drover_master::db::open(&master_dir.join("raft")).unwrap();
        assert!(
            matches!(
                drover_master::format::check(&db, &master_dir.join("raft")),
                Err(drover_master::format::FormatError::Newer { found, .. }) if found == newer
            ),
            "the refused directory was changed"
        );
    }

    let work_dir = tmp.path().join("agent-0");
    copy_tree(&data("agent-0"), &work_dir);
    std::fs::write(work_dir.join("meta/format"), "drover-agent-work-dir 9\n").unwrap();
    let out = refused(agent(&work_dir, port(), port())).await;
    assert!(
        out.contains(&work_dir.join("meta/format").display().to_string())
            && out.contains("format 9")
            && out.contains("this build reads format 1"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(work_dir.join("meta/format")).unwrap(),
        "drover-agent-work-dir 9\n"
    );
    assert!(
        !work_dir.join("completed").exists(),
        "it moved tasks anyway"
    );
}
