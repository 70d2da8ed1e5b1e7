//! The CI smoke run of the chaos suite: `drover chaos run` with 3 masters, 2 agents, both
//! workloads and the kill and partition nemeses for a minute must end valid; and the checkers,
//! re-run with `drover chaos check` on copies of that real run with damage put in (an
//! acknowledged update removed from a replica, a task launched twice, a stale read, an
//! over-committed agent), must each say invalid.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// The smoke run's seed (any seed must pass; a fixed one makes a failure replayable).
const SEED: &str = "20261202";

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_string(v).expect("encode")).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// Runs `drover ARGS` in its own process group, killing the whole group if it overruns.
async fn drover(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(common::binary());
    cmd.args(args)
        .kill_on_drop(true)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn drover");
    let pid = child.id().expect("pid") as i32;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("output");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("drover {args:?} did not finish within {limit:?}");
        }
    }
}

/// `drover chaos check DIR`: the exit code and the verdict of checker `name`.
async fn check(dir: &Path, name: &str) -> (i32, String) {
    let (code, stdout, stderr) = drover(
        &["chaos", "check", dir.to_str().expect("utf-8")],
        Duration::from_secs(120),
    )
    .await;
    let results = read_json(&dir.join("results.json"));
    let verdict = results["checkers"]
        .as_array()
        .expect("checkers")
        .iter()
        .find(|c| c["checker"] == name)
        .unwrap_or_else(|| panic!("no {name} in {stdout}{stderr}"))["valid"]
        .as_str()
        .expect("valid")
        .to_string();
    (code, verdict)
}

/// A finished smoke run: its directory (kept while `tmp` lives), stdout and results.
struct SmokeRun {
    tmp: tempfile::TempDir,
    out: PathBuf,
    stdout: String,
    results: Value,
}

/// `drover chaos run` of `workload` under kills and partitions (3 masters, 2 agents, seed
/// [`SEED`], a fault every 4 s or so for 5 s), for `duration`, then `recovery`, at `rate`
/// operations per second, with the tasks workload's schedulers on the framework API `api`;
/// asserted valid (exit 0) with its output on failure.
async fn smoke_run(
    workload: &str,
    duration: &str,
    recovery: &str,
    rate: &str,
    api: &str,
) -> SmokeRun {
    smoke_run_with(
        workload,
        "kill,partition",
        duration,
        recovery,
        rate,
        api,
        &[],
    )
    .await
}

/// [`smoke_run`] under the fault families `nemesis`, with `extra` arguments for `chaos run`.
async fn smoke_run_with(
    workload: &str,
    nemesis: &str,
    duration: &str,
    recovery: &str,
    rate: &str,
    api: &str,
    extra: &[&str],
) -> SmokeRun {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out: PathBuf = tmp.path().join("run");
    let out_s = out.to_str().expect("utf-8").to_string();
    let mut args = vec![
        "--log",
        "warn",
        "chaos",
        "run",
        "--masters",
        "3",
        "--agents",
        "2",
        "--workload",
        workload,
        "--nemesis",
        nemesis,
        "--duration",
        duration,
        "--quiet",
        "4s",
        "--hold",
        "5s",
        "--recovery",
        recovery,
        "--rate",
        rate,
        "--seed",
        SEED,
        "--api",
        api,
        "--out",
        &out_s,
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = drover(&args, Duration::from_secs(420)).await;
    let results = read_json(&out.join("results.json"));
    if code != 0 {
        // The run's directory (histories, every process's log) is kept for a post-mortem.
        let kept = tmp.keep();
        panic!(
            "chaos run not valid (its directory kept: {}):\n{stdout}\n{stderr}\n{}\nwhat the nodes logged as errors and warnings:\n{}",
            kept.display(),
            serde_json::to_string_pretty(&results).unwrap_or_default(),
            troubles_logged(&out.join("nodes"))
        );
    }
    SmokeRun {
        tmp,
        out,
        stdout,
        results,
    }
}

/// The distinct ERROR and WARN messages of every node's log in `dir` (their first 40, the
/// time stamp and fields cut off), with how often each came: a failed run's likely causes,
/// for CI output that keeps no files.
fn troubles_logged(dir: &Path) -> String {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let node = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in std::fs::read_to_string(&f).unwrap_or_default().lines() {
            let Some(at) = line.find(" ERROR ").or_else(|| line.find("  WARN ")) else {
                continue;
            };
            let message: String = line[at..].trim().chars().take(160).collect();
            *seen.entry(format!("{node}: {message}")).or_default() += 1;
        }
    }
    seen.iter()
        .take(40)
        .map(|(m, n)| format!("{n:>5} x {m}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_under_kills_and_partitions_is_valid_and_damage_is_caught() {
    let SmokeRun {
        tmp,
        out,
        stdout,
        results,
    } = smoke_run("store,tasks", "60s", "15s", "10", "grpc").await;
    assert_eq!(results["valid"], json!(true));
    assert_eq!(
        results["checkers"].as_array().map(Vec::len),
        Some(8),
        "{results}"
    );
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    let faults = history
        .lines()
        .filter(|l| {
            l.contains("\"process\":\"nemesis\"")
                && l.contains("\"f\":\"start\"")
                && l.contains("\"type\":\"info\"")
        })
        .count();
    assert!(
        faults >= 3,
        "the nemesis injected {faults} faults:\n{stdout}"
    );
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert_eq!(
        report.matches("<svg").count(),
        3,
        "every plot in the report"
    );

    for m in 1..=3 {
        assert!(
            out.join(format!("nodes/master-{m}.log")).exists(),
            "master {m}'s log kept"
        );
        assert!(
            out.join(format!("final/master-{m}.json")).exists(),
            "master {m}'s final state"
        );
    }

    // An acknowledged update removed from one replica.
    let lost = tmp.path().join("lost");
    copy_dir(&out, &lost);
    let acked = read_json(&lost.join("final/agent-0-acked.json"));
    let (task, uuids) = acked
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("an acked task");
    let uuid = uuids[0].clone();
    let state_path = lost.join("final/master-2.json");
    let mut state = read_json(&state_path);
    for t in state["tasks"].as_array_mut().expect("tasks") {
        if t["id"] == json!(task) {
            t["updates"]
                .as_array_mut()
                .expect("updates")
                .retain(|u| u["uuid"] != uuid);
        }
    }
    write_json(&state_path, &state);
    assert_eq!(
        check(&lost, "acked-updates-kept").await,
        (1, "invalid".to_string())
    );

    // A task launched twice.
    let twice = tmp.path().join("twice");
    copy_dir(&out, &twice);
    let launches = std::fs::read_to_string(twice.join("launches.log")).expect("launches");
    let first = launches.lines().next().expect("a launch").to_string();
    std::fs::write(twice.join("launches.log"), format!("{launches}{first}\n")).expect("write");
    assert_eq!(
        check(&twice, "no-double-launch").await,
        (1, "invalid".to_string())
    );

    // A stale read: after two successful writes of one key, a read of the first value.
    let stale = tmp.path().join("stale");
    copy_dir(&out, &stale);
    let records: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let mut writes: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for r in &records {
        if r["f"] == "write" && r["type"] == "ok" {
            writes
                .entry(r["value"]["key"].as_str().expect("key").to_string())
                .or_default()
                .push(r);
        }
    }
    let (key, w) = writes
        .iter()
        .find(|(_, w)| w.len() >= 2)
        .expect("a key written twice");
    let end = records.last().expect("records")["time_ns"]
        .as_u64()
        .expect("time")
        + 1_000;
    let mut appended = String::new();
    for (i, kind) in ["invoke", "ok"].iter().enumerate() {
        let r = json!({"index": records.len() + i, "process": "store-99", "type": kind, "f": "read",
                       "value": {"key": key, "value": w[w.len() - 2]["value"]["value"]},
                       "time_ns": end + i as u64});
        appended.push_str(&format!("{r}\n"));
    }
    std::fs::write(stale.join("history.jsonl"), format!("{history}{appended}")).expect("write");
    assert_eq!(
        check(&stale, "store-linearizable").await,
        (1, "invalid".to_string())
    );

    // An agent over-committed in its final state: a copy of a live task's resources, many
    // times over.
    let over = tmp.path().join("over");
    copy_dir(&out, &over);
    let state_path = over.join("final/master-1.json");
    let mut state = read_json(&state_path);
    let agent = state["agents"][0]["id"].clone();
    let tasks = state["tasks"].as_array_mut().expect("tasks");
    for i in 0..1000 {
        tasks.push(
            json!({"id": format!("ghost-{i}"), "agent_id": agent, "state": "TASK_RUNNING",
                          "resources": "cpus:1;mem:1", "updates": []}),
        );
    }
    write_json(&state_path, &state);
    assert_eq!(
        check(&over, "resources-safe").await,
        (1, "invalid".to_string())
    );

    // The undamaged run checks valid again.
    let (code, verdict) = check(&out, "store-linearizable").await;
    assert_eq!((code, verdict.as_str()), (0, "valid"));
}

/// The marathon workload under kills and partitions (and SIGKILLs of the active scheduler):
/// every app converges, the apps are those the acknowledged operations made, and no instance
/// ran two tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marathon_smoke_run_under_kills_and_partitions_is_valid() {
    // `_tmp` keeps the run's directory until the end.
    let SmokeRun {
        tmp: _tmp,
        out,
        results,
        ..
    } = smoke_run("marathon", "40s", "10s", "5", "grpc").await;
    let names: Vec<&str> = results["checkers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["checker"].as_str())
        .collect();
    for want in ["marathon-converged", "marathon-apps", "marathon-slots"] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    assert!(
        history.contains("\"f\":\"kill-scheduler\""),
        "the active scheduler was never killed"
    );
    for op in ["create", "scale", "delete"] {
        assert!(
            history.lines().any(|l| l.contains("\"type\":\"ok\"")
                && l.contains(&format!("\"f\":\"{op}\""))
                && l.contains("\"process\":\"marathon.")),
            "no acknowledged {op}"
        );
    }
}

/// The tasks workload with its schedulers on the Mesos v1 scheduler HTTP API (the driver's
/// HTTP transport: redirects followed to the leader, RecordIO events, one ACKNOWLEDGE per
/// update) under kills and partitions: valid, and its tasks ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_smoke_run_over_the_mesos_http_api_is_valid() {
    let SmokeRun {
        tmp: _tmp,
        out,
        results,
        ..
    } = smoke_run("tasks", "40s", "15s", "10", "http").await;
    assert_eq!(results["valid"], json!(true));
    assert_eq!(read_json(&out.join("run.json"))["api"], "http");
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    let running = history
        .lines()
        .filter(|l| l.contains("\"f\":\"update\"") && l.contains("TASK_RUNNING"))
        .count();
    let acked = history
        .lines()
        .filter(|l| l.contains("\"f\":\"ack\"") && l.contains("\"type\":\"ok\""))
        .count();
    assert!(running >= 5, "{running} RUNNING updates over HTTP");
    assert!(acked >= 5, "{acked} acknowledgements over HTTP");
}

/// The tasks workload with its tasks as Docker containers under SIGKILLs of the agents (and
/// partitions): valid, the containers checker among the verdicts, containers ran, an agent
/// was SIGKILLed while they ran, and no container of the run is left once it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_smoke_run_with_containers_under_agent_kills_is_valid_and_leaves_none() {
    if common::docker_image_or_skip().await.is_none() {
        return;
    }
    let SmokeRun {
        tmp: _tmp,
        out,
        results,
        ..
    } = smoke_run_with(
        "tasks",
        "kill-agent,partition",
        "40s",
        "15s",
        "5",
        "grpc",
        &["--containers", "docker"],
    )
    .await;
    let containers = results["checkers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["checker"] == "containers")
        .cloned()
        .unwrap_or_else(|| panic!("no containers checker: {results}"));
    assert_eq!(containers["valid"], "valid", "{containers}");
    assert!(
        containers["stats"]["containers"].as_u64() >= Some(5),
        "{containers}"
    );
    assert_eq!(read_json(&out.join("run.json"))["containers"], "docker");
    let history = std::fs::read_to_string(out.join("history.jsonl")).expect("history");
    assert!(
        history
            .lines()
            .any(|l| l.contains("\"fault\":\"kill-agent\"")
                && l.contains("\"type\":\"info\"")
                && !l.contains("\"error\"")),
        "no agent was SIGKILLed"
    );
    let evidence = read_json(&out.join("final/containers.json"));
    let frameworks: Vec<&str> = evidence["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(!frameworks.is_empty(), "{evidence}");
    for f in frameworks {
        let listed = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=drover.framework_id={f}"),
            ])
            .output()
            .expect("docker ps");
        assert!(
            listed.stdout.is_empty(),
            "containers of {f} left: {}",
            String::from_utf8_lossy(&listed.stdout)
        );
    }
}
