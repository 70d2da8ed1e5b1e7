//! `drover up`: a whole local cluster in child processes that prints its URLs, serves, stops
//! cleanly on Ctrl-C, and comes back with its data when run again.

mod common;

use std::process::Stdio;
use std::time::Duration;

use drover_client::MasterClient;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A base port with base to base+4 free a moment ago: three masters on every second port, two
/// agents on the ports between.
fn free_base_port() -> u16 {
    drover_chaos::cluster::free_port_block(5, 1).expect("free ports")
}

/// Starts `drover up`, reads its output until it says it is up, returns the child and the lines.
async fn up(dir: &std::path::Path, base: u16) -> (tokio::process::Child, Vec<String>) {
    let mut child = tokio::process::Command::new(common::binary())
        .args(["up", "--data-dir"])
        .arg(dir)
        .args(["--base-port", &base.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("Press Ctrl-C to stop");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "drover up did not come up: {seen:#?}");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, seen)
}

async fn interrupt_and_wait(child: &mut tokio::process::Child) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("drover up stopped within 30 s")
        .unwrap();
    assert!(status.success(), "drover up exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_prints_urls_stops_on_ctrl_c_and_restarts_from_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".drover");
    let base = free_base_port();
    let (mut child, out) = up(&data, base).await;
    let text = out.join("\n");
    assert!(text.contains("Drover is up"), "{text}");
    assert!(text.contains("(leader)"), "{text}");
    for port in [base, base + 2, base + 4] {
        assert!(
            text.contains(&format!("http://127.0.0.1:{port}/metrics")),
            "{text}"
        );
        assert!(text.contains(&format!("grpc://127.0.0.1:{port}")), "{text}");
    }
    let addrs: Vec<String> = [base, base + 2, base + 4]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    for port in [base + 1, base + 3] {
        assert!(text.contains(&format!("grpc://127.0.0.1:{port}")), "{text}");
    }
    let client = MasterClient::new(&addrs).unwrap();
    client.put("up", "k", b"kept".to_vec()).await.unwrap();
    let cluster_id = client.leader_status().await.unwrap().cluster_id;

    // Its two agents take tasks: `drover run` with nothing but the masters.
    let out = common::cli(&["run", "--masters", &addrs.join(","), "--", "echo hi"]).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("TASK_FINISHED"), "{}", out.stdout);

    interrupt_and_wait(&mut child).await;
    for a in &addrs {
        assert!(
            tokio::net::TcpStream::connect(a).await.is_err(),
            "a master still listens on {a} after drover up stopped"
        );
    }

    // Again, on the same data: same cluster, same data.
    let (mut child, _) = up(&data, base).await;
    let client = MasterClient::new(&addrs).unwrap();
    assert_eq!(client.leader_status().await.unwrap().cluster_id, cluster_id);
    let got = client.get("up", "k").await.unwrap();
    assert_eq!(got.map(|v| v.value), Some(b"kept".to_vec()));
    interrupt_and_wait(&mut child).await;
}
