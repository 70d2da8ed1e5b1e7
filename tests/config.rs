//! `drover master` configuration from a TOML file (flags and DROVER_* variables win over it),
//! clear errors for bad settings, and a clean exit on SIGTERM.

mod common;

use std::time::Duration;

use drover_client::MasterClient;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::{binary, cli, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_supplies_settings_flags_win_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = drover_chaos::cluster::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let file = dir.path().join("master.toml");
    std::fs::write(
        &file,
        format!(
            "id = 9\nlisten = \"{addr}\"\npeers = \"7={addr}\"\ndata_dir = \"{}\"\nheartbeat_ms = 20\nwrite_timeout_ms = 9999\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    // The flag's id wins over the file's 9; everything else comes from the file.
    let mut child = tokio::process::Command::new(binary())
        .args(["master", "--config"])
        .arg(&file)
        .args(["--id", "7"])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = MasterClient::new(std::slice::from_ref(&addr)).unwrap();
    let status = wait_until("the single master leads", Duration::from_secs(30), || {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            let s = client
                .status_of(&addr, Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())?;
            if s.role == "leader" {
                Ok(s)
            } else {
                Err(s.role)
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(status.node_id, 7, "the --id flag wins over the file");
    client.put("cfg", "k", b"v".to_vec()).await.unwrap();
    assert!(
        dir.path().join("data").join("raft").exists(),
        "data_dir came from the file"
    );

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "SIGTERM: {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.toml");
    std::fs::write(&file, "id = 1\nheartbeat_millis = 5\n").unwrap();
    let f = file.to_str().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    let base = [
        "master",
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1",
        "--data-dir",
        d,
    ];
    let heartbeat_too_long = [&base[..], &["--heartbeat-ms", "500"]].concat();
    let acls = dir.path().join("acls.json");
    std::fs::write(&acls, r#"{"run_tasks": [{"principals": {"type": "ANY"}}]}"#).unwrap();
    let acls_missing_users = [&base[..], &["--acls", acls.to_str().unwrap()]].concat();
    let cases: [(&[&str], &str); 5] = [
        (&["master", "--config", f], "heartbeat_millis"),
        (
            &["master", "--peers", "1=127.0.0.1:1", "--data-dir", d],
            "--id is required",
        ),
        (
            &[
                "master",
                "--id",
                "1",
                "--peers",
                "1=nowhere",
                "--data-dir",
                d,
            ],
            "--peers",
        ),
        (&heartbeat_too_long, "--heartbeat-ms"),
        // An ACL file that does not parse: the flag and the field at fault.
        (&acls_missing_users, "--acls"),
    ];
    for (args, needle) in cases {
        let out = cli(args).await;
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    let out = cli(&acls_missing_users).await;
    assert!(
        out.stderr.contains("run_tasks[0].users: missing"),
        "{}",
        out.stderr
    );

    // A data directory belongs to one id.
    let port = drover_chaos::cluster::free_port().unwrap();
    let peers = format!("1=127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut first = tokio::process::Command::new(binary())
        .args([
            "master",
            "--id",
            "1",
            "--peers",
            &peers,
            "--listen",
            &listen,
            "--data-dir",
            d,
        ])
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = MasterClient::new(std::slice::from_ref(&listen)).unwrap();
    wait_until("master 1 answers", Duration::from_secs(30), || {
        let (client, listen) = (client.clone(), listen.clone());
        async move {
            client
                .status_of(&listen, Duration::from_secs(1))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await
    .unwrap();
    kill(Pid::from_raw(first.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    first.wait().await.unwrap();
    let out = cli(&[
        "master",
        "--id",
        "2",
        "--peers",
        &peers,
        "--listen",
        &listen,
        "--data-dir",
        d,
    ])
    .await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("belongs to master 1"), "{}", out.stderr);
}
