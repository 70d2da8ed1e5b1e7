//! `drover up`: a whole local cluster in child processes, mutual TLS on every connection by
//! default, that prints its URLs, serves, stops cleanly on Ctrl-C, and comes back with its
//! data when run again; drover's commands reach it after `. .drover/env`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use drover_client::MasterClient;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The operator's certificate `drover up` issued under `data`, loaded.
fn as_operator(data: &std::path::Path) -> drover_tls::LiveTls {
    drover_chaos::cluster::certs::ClusterCerts::open(data)
        .and_then(|c| c.loaded(drover_tls::Role::Client, drover_chaos::up::OPERATOR))
        .expect("the operator's certificate")
}

/// A client of the masters as the operator.
fn masters_client(data: &std::path::Path, addrs: &[String]) -> MasterClient {
    MasterClient::with_dialer(
        addrs,
        drover_client::RetryPolicy::default(),
        drover_client::channel::Dialer {
            bind_ip: None,
            tls: Some(as_operator(data).client(&[drover_tls::Role::Master])),
        },
    )
    .unwrap()
}

/// An HTTPS client of the schedulers as the operator.
fn schedulers_http(data: &std::path::Path) -> drover_chaos::http::Http {
    drover_chaos::http::Http::tls(&as_operator(data).client(&[drover_tls::Role::Framework]))
        .unwrap()
}

/// `drover args…` after `. data/env`, as the banner says to: nothing else tells it where
/// the cluster is or which certificate to present.
fn drover_after_env(data: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#". "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(data.join("env"))
        .arg(common::binary())
        .args(args)
        .env_remove("DROVER_MASTERS")
        .env_remove("DROVER_SCHEDULER")
        .kill_on_drop(true);
    cmd
}

/// [`drover_after_env`] to its end: its exit code, stdout and stderr.
async fn run_after_env(data: &std::path::Path, args: &[&str]) -> common::CliOutput {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        drover_after_env(data, args).output(),
    )
    .await
    .expect("the command finishes within 60 s")
    .unwrap();
    common::CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A base port with base to base+4 free a moment ago: three masters on every second port, two
/// agents on the ports between.
fn free_base_port() -> u16 {
    drover_chaos::cluster::free_port_block(5, 1).expect("free ports")
}

/// Two free ports for the schedulers.
fn free_scheduler_port() -> u16 {
    drover_chaos::cluster::free_port_block(2, 1).expect("free ports")
}

/// Starts `drover up`, reads its output until it says it is up, returns the child and the lines.
async fn up(dir: &std::path::Path, base: u16) -> (tokio::process::Child, Vec<String>) {
    up_with(dir, base, free_scheduler_port()).await
}

async fn up_with(
    dir: &std::path::Path,
    base: u16,
    scheduler_port: u16,
) -> (tokio::process::Child, Vec<String>) {
    // Beside the data directory: what `drover up` says when it gives up (no leader, say).
    let stderr_path = dir.with_file_name(format!("up-{base}.stderr.log"));
    let mut child = tokio::process::Command::new(common::binary())
        .args(["up", "--data-dir"])
        .arg(dir)
        .args(["--base-port", &base.to_string()])
        .args(["--scheduler-port", &scheduler_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(&stderr_path).expect("a file for drover up's stderr"),
        ))
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
    assert_eq!(
        ready,
        Ok(true),
        "drover up did not come up: {seen:#?}\n{}its logs end:\n{}",
        common::log_tail("drover up's stderr", &stderr_path, 20),
        log_tails(dir)
    );
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, seen)
}

/// SIGINTs `drover up` and waits for it to exit; if it does not within 30 s, fails with the
/// end of every log under `data`.
async fn interrupt_and_wait(child: &mut tokio::process::Child, data: &std::path::Path) {
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => panic!(
            "drover up did not stop within 30 s of SIGINT; its logs end:\n{}",
            log_tails(data)
        ),
    };
    assert!(status.success(), "drover up exited with {status}");
}

/// The last lines of every `*.log` under `dir` (two levels deep).
fn log_tails(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut dirs = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && depth < 2 {
                dirs.push((p, depth + 1));
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push_str(&common::log_tail(&p.display().to_string(), &p, 15));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_prints_urls_stops_on_ctrl_c_and_restarts_from_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".drover");
    let base = free_base_port();
    let scheduler_port = free_scheduler_port();
    let (mut child, out) = up_with(&data, base, scheduler_port).await;
    let text = out.join("\n");
    for port in [scheduler_port, scheduler_port + 1] {
        assert!(
            text.contains(&format!("https://127.0.0.1:{port}/v2/apps")),
            "{text}"
        );
    }
    assert!(text.contains("Drover is up"), "{text}");
    assert!(text.contains("(leader)"), "{text}");
    assert!(text.contains("TLS is on"), "{text}");
    assert!(text.contains("client-operator.pem"), "{text}");
    for port in [base, base + 2, base + 4] {
        assert!(
            text.contains(&format!("https://127.0.0.1:{port}/metrics")),
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
    // Nothing answers without a certificate.
    assert!(
        MasterClient::new(&addrs)
            .unwrap()
            .leader_status()
            .await
            .is_err(),
        "a master answered without a certificate"
    );
    let client = masters_client(&data, &addrs);
    client.put("up", "k", b"kept".to_vec()).await.unwrap();
    let cluster_id = client.leader_status().await.unwrap().cluster_id;

    // Its two agents take tasks: `drover run` with nothing but the environment the banner
    // names, and the task's output streamed between its RUNNING and its end.
    let out = run_after_env(&data, &["run", "--", "echo hi; echo oops >&2"]).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let got = run_after_env(&data, &["store", "--framework", "up", "get", "k"]).await;
    assert_eq!(
        (got.code, got.stdout.trim()),
        (0, "kept"),
        "{}\n{}",
        got.stdout,
        got.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l));
    let (running, hi, finished) = (
        at(&|l| l == "TASK_RUNNING"),
        at(&|l| l == "hi"),
        at(&|l| l.starts_with("TASK_FINISHED")),
    );
    assert!(
        running < hi && hi < finished && running.is_some(),
        "the task's output between RUNNING and FINISHED: {lines:?}"
    );
    assert!(out.stderr.lines().any(|l| l == "oops"), "{}", out.stderr);

    // Its schedulers keep an app running: POSTed to either (the standby redirects).
    let to_schedulers = schedulers_http(&data);
    for port in [scheduler_port, scheduler_port + 1] {
        common::wait_until("a scheduler is active", Duration::from_secs(30), || {
            let http = to_schedulers.clone();
            async move {
                let (status, _) = http
                    .request_json(
                        reqwest::Method::GET,
                        &format!("127.0.0.1:{port}"),
                        "/v2/apps",
                        None,
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap_or_else(|e| (0, serde_json::Value::String(e)));
                (status == 200).then_some(()).ok_or(format!("{status}"))
            }
        })
        .await
        .expect("scheduler answers");
    }
    let standby = format!("127.0.0.1:{}", scheduler_port + 1);
    let send = |method: reqwest::Method, path: &'static str, body: Option<serde_json::Value>| {
        let (http, standby) = (to_schedulers.clone(), standby.clone());
        async move {
            http.request_json(
                method,
                &standby,
                path,
                body.as_ref(),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|e| (0, serde_json::Value::String(e)))
        }
    };
    let (status, body) = send(
        reqwest::Method::POST,
        "/v2/apps",
        Some(serde_json::json!({
            "id": "/hello",
            "cmd": "echo hello from the app; echo a warning >&2; sleep 1000",
            "cpus": 0.1,
            "mem": 32
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    common::wait_until("the app runs", Duration::from_secs(60), || {
        let send = &send;
        async move {
            let (_, body) = send(reqwest::Method::GET, "/v2/apps/hello", None).await;
            (body["app"]["tasksRunning"] == 1)
                .then_some(())
                .ok_or(format!("{body}"))
        }
    })
    .await
    .expect("running");

    // `drover task logs` reads its sandbox through its agent.
    let (_, body) = send(reqwest::Method::GET, "/v2/apps/hello/tasks", None).await;
    let task = body["tasks"][0]["id"]
        .as_str()
        .expect("a task id")
        .to_string();
    let scheduler_url = format!("https://{standby}");
    for (flag, want) in [
        (None, "hello from the app"),
        (Some("--stderr"), "a warning"),
    ] {
        let mut args = vec!["task", "logs", &task, "--scheduler", &scheduler_url];
        args.extend(flag);
        common::wait_until("the task's output", Duration::from_secs(30), || {
            let (args, data) = (args.clone(), data.clone());
            async move {
                let out = run_after_env(&data, &args).await;
                (out.code == 0 && out.stdout.lines().any(|l| l == want))
                    .then_some(())
                    .ok_or(format!("{}: {}{}", out.code, out.stdout, out.stderr))
            }
        })
        .await
        .expect("drover task logs prints the task's output");
    }

    interrupt_and_wait(&mut child, &data).await;
    for a in &addrs {
        assert!(
            tokio::net::TcpStream::connect(a).await.is_err(),
            "a master still listens on {a} after drover up stopped"
        );
    }

    // Again, on the same data: same cluster, same data.
    let (mut child, _) = up(&data, base).await;
    let client = masters_client(&data, &addrs);
    assert_eq!(client.leader_status().await.unwrap().cluster_id, cluster_id);
    let got = client.get("up", "k").await.unwrap();
    assert_eq!(got.map(|v| v.value), Some(b"kept".to_vec()));
    interrupt_and_wait(&mut child, &data).await;
}

/// Every process working for the cluster under `dir` (masters, agents, executors and their
/// tasks): those whose command line or working directory names it.
fn processes_under(dir: &std::path::Path) -> Vec<(i32, String)> {
    let dir = dir.to_string_lossy().to_string();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        // A zombie has neither; it is gone for this purpose.
        if cmdline.contains(&dir) || cwd.starts_with(&dir) {
            found.push((pid, format!("{} (in {cwd})", cmdline.trim())));
        }
    }
    found
}

async fn wait_for_processes(
    dir: &std::path::Path,
    what: &str,
    deadline: Duration,
    done: impl Fn(&[(i32, String)]) -> bool,
) -> Vec<(i32, String)> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let found = processes_under(dir);
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what} within {deadline:?}; running: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_up_leaves_nothing_running_and_a_second_up_names_what_holds_its_ports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".drover");
    let base = free_base_port();
    let (mut child, _) = up(&data, base).await;

    // A long task, so that executors and tasks are part of what must go.
    let mut run = drover_after_env(&data, &["run", "--", "sleep 600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = wait_for_processes(&data, "the task runs", Duration::from_secs(30), |p| {
        p.iter().any(|(_, c)| c.starts_with("sleep 600"))
    })
    .await;
    for kind in [" master ", " agent ", " executor "] {
        assert!(
            before.iter().any(|(_, c)| c.contains(kind)),
            "no{kind}process found: {before:#?}"
        );
    }

    // A second `drover up` on the same ports names what holds them, and starts nothing.
    let second = tokio::process::Command::new(common::binary())
        .args(["up", "--data-dir"])
        .arg(dir.path().join("second"))
        .args(["--base-port", &base.to_string()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second drover up started: {stderr}"
    );
    assert!(
        stderr.contains(&format!("port {base} is held by process"))
            && stderr.contains("drover master")
            && stderr.contains(&format!("port {} is held by process", base + 1)),
        "{stderr}"
    );

    // SIGKILL: no handler runs in `drover up`; its children must notice alone.
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait().await;
    wait_for_processes(
        &data,
        "every master, agent, executor and task of the killed drover up stops",
        Duration::from_secs(15),
        |p| p.is_empty(),
    )
    .await;
    for port in [base, base + 1, base + 2, base + 3, base + 4] {
        assert!(
            drover_chaos::ports::is_free(port),
            "port {port} still held: {}",
            drover_chaos::ports::explain_taken(port)
        );
    }
    let _ = run.kill().await;
}
