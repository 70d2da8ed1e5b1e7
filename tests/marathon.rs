//! `drover scheduler` on a real cluster (3 masters, 2 agents running real executors), driven
//! over HTTP as a Marathon client would: an app of 3 instances runs, shows in `/v2/apps/{id}`,
//! `/v2/tasks` and the event stream; it scales to 5 and to 1, restarts, rolls to a new
//! command, and on delete every task is killed in the masters' registry.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::scheduler::{send, Scheduler};
use serde_json::{json, Value};

/// How long the app may take to reach a state.
const CONVERGE: Duration = Duration::from_secs(60);

/// Waits until `GET /v2/apps/web` satisfies `cond`; returns the app.
async fn app_when(addr: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    app_named(addr, "web", what, cond).await
}

async fn app_named(addr: &str, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    common::wait_until(what, CONVERGE, || {
        let addr = addr.to_string();
        let ok = &cond;
        async move {
            let (_, body) =
                send(reqwest::Method::GET, &addr, &format!("/v2/apps/{id}"), None).await;
            let app = body["app"].clone();
            if ok(&app) {
                Ok(app)
            } else {
                Err(format!(
                    "running {} staged {} tasks {} deployments {}",
                    app["tasksRunning"],
                    app["tasksStaged"],
                    app["tasks"].as_array().map_or(0, Vec::len),
                    app["deployments"]
                ))
            }
        }
    })
    .await
    .expect(what)
}

fn settled(app: &Value, n: usize) -> bool {
    app["tasksRunning"] == n
        && app["tasks"].as_array().map(Vec::len) == Some(n)
        && app["deployments"] == json!([])
}

fn task_ids(app: &Value) -> BTreeSet<String> {
    app["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

/// Reads the event stream in the background; the payloads seen so far. Until a scheduler
/// holds the lease, `/v2/events` answers 503 (a scheduler answers `/ping` before it has won
/// its lease): the stream is asked for again until one answers 200; once that one ends, the
/// reading stops.
fn follow_events(addr: &str) -> tokio::sync::watch::Receiver<Vec<Value>> {
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let url = format!("http://{addr}/v2/events");
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while !tx.is_closed() {
            let resp = http
                .get(&url)
                .header("Accept", "text/event-stream")
                .send()
                .await;
            let mut resp = match resp {
                Ok(r) if r.status().is_success() => r,
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let mut pending = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(at) = pending.find('\n') {
                    let line: String = pending.drain(..=at).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data: ") {
                        let event: Value = serde_json::from_str(data).expect("one line of JSON");
                        tx.send_modify(|v| v.push(event));
                    }
                }
            }
            return;
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_runs_scales_restarts_rolls_and_is_deleted_on_a_real_cluster() {
    let c = common::start_with_agents(3, &[], 2, &[], 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    let events = follow_events(&s.addr);
    common::wait_until(
        "the event stream to attach",
        Duration::from_secs(10),
        || {
            let seen = events.borrow().clone();
            async move {
                seen.iter()
                    .any(|e| e["eventType"] == "event_stream_attached")
                    .then_some(())
                    .ok_or_else(|| "not yet".to_string())
            }
        },
    )
    .await
    .expect("attached");

    let app = json!({"id": "/web", "cmd": "sleep 1000", "instances": 3, "cpus": 0.05, "mem": 16});
    let (status, created) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(app)).await;
    assert_eq!(status, 201, "{created}");
    let running = app_when(&s.addr, "3 running", |a| settled(a, 3)).await;
    let first = task_ids(&running);
    let (_, tasks) = send(reqwest::Method::GET, &s.addr, "/v2/tasks", None).await;
    let listed: BTreeSet<String> = tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "TASK_RUNNING", "{t}");
            assert_eq!(t["ports"].as_array().map(Vec::len), Some(1), "{t}");
            t["id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(listed, first);
    let seen = events.borrow().clone();
    for t in &first {
        assert!(
            seen.iter().any(|e| e["eventType"] == "status_update_event"
                && e["taskId"] == t.as_str()
                && e["taskStatus"] == "TASK_RUNNING"),
            "no RUNNING event for {t}"
        );
    }
    assert!(seen.iter().any(|e| e["eventType"] == "deployment_success"));

    // The same through the client: tables for people, JSON for scripts, the API's errors.
    let url = format!("http://{}", s.addr);
    let out = common::cli(&["app", "list", "--scheduler", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("/web ")),
        "{}",
        out.stdout
    );
    let out = common::cli(&[
        "task",
        "list",
        "--app",
        "/web",
        "--json",
        "--scheduler",
        &url,
    ])
    .await;
    let listed: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        listed["tasks"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
    let out = common::cli(&["app", "show", "/nothing", "--scheduler", &url]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("404: App '/nothing' does not exist"),
        "{}",
        out.stderr
    );
    // The cluster as an operator sees it: masters, agents with their resources, frameworks,
    // tasks by state.
    let masters = c.addrs().join(",");
    let out = common::cli(&["cluster", "--masters", &masters, "status"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for want in ["agents: 2", "frameworks: 1", "marathon", "TASK_RUNNING 3"] {
        assert!(out.stdout.contains(want), "{want} in:\n{}", out.stdout);
    }
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"id": "/bad", "cmd": "x", "cpus": -1}"#).expect("write");
    let out = common::cli(&[
        "app",
        "add",
        bad.to_str().expect("path"),
        "--scheduler",
        &url,
    ])
    .await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("422: Object is not valid") && out.stderr.contains("/cpus"),
        "{}",
        out.stderr
    );

    let (status, r) = send(
        reqwest::Method::PUT,
        &s.addr,
        "/v2/apps//web?force=False",
        Some(json!({"instances": 5})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    app_when(&s.addr, "5 running", |a| settled(a, 5)).await;
    let (status, r) = send(
        reqwest::Method::PUT,
        &s.addr,
        "/v2/apps/web",
        Some(json!({"instances": 1})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let one = app_when(&s.addr, "1 running", |a| settled(a, 1)).await;
    let before_restart = task_ids(&one);

    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps/web/restart", None).await;
    assert_eq!(status, 200, "{r}");
    let restarted = app_when(&s.addr, "the restart", |a| {
        settled(a, 1) && task_ids(a).is_disjoint(&before_restart)
    })
    .await;

    let (status, r) = send(
        reqwest::Method::PUT,
        &s.addr,
        "/v2/apps/web",
        Some(json!({"cmd": "sleep 2000", "instances": 2})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let rolled = app_when(&s.addr, "the new command", |a| {
        settled(a, 2) && a["cmd"] == "sleep 2000" && task_ids(a).is_disjoint(&task_ids(&restarted))
    })
    .await;
    let version = rolled["versionInfo"]["lastConfigChangeAt"].clone();
    for t in rolled["tasks"].as_array().expect("tasks") {
        assert_eq!(
            t["version"], version,
            "every task runs the new configuration: {t}"
        );
    }

    let last = task_ids(&rolled);
    let (status, r) = send(reqwest::Method::DELETE, &s.addr, "/v2/apps/web", None).await;
    assert_eq!(status, 200, "{r}");
    assert!(r["deploymentId"].is_string(), "{r}");
    common::wait_until("every task killed in the registry", CONVERGE, || {
        let last = last.clone();
        let c = &c;
        async move {
            let state = common::leader_state(c).await?;
            let live: Vec<String> = state["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    t["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("web.instance-"))
                })
                .filter(|t| {
                    !matches!(
                        t["state"].as_str(),
                        Some("TASK_KILLED" | "TASK_FINISHED" | "TASK_FAILED")
                    )
                })
                .map(|t| format!("{} {}", t["id"], t["state"]))
                .collect();
            if !live.is_empty() {
                return Err(format!("still live: {live:?}"));
            }
            let killed = last.iter().all(|id| {
                state["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["id"] == id.as_str() && t["state"] == "TASK_KILLED")
            });
            killed
                .then_some(())
                .ok_or_else(|| "the last tasks are not KILLED yet".to_string())
        }
    })
    .await
    .expect("tasks killed");
    let (status, _) = send(reqwest::Method::GET, &s.addr, "/v2/apps/web", None).await;
    assert_eq!(status, 404);
    // Their resources are free again: no agent has live tasks or offers outstanding (the
    // scheduler, with nothing to launch, declined its offers and suppressed).
    common::wait_until("every agent's resources free", CONVERGE, || {
        let c = &c;
        async move {
            let state = common::leader_state(c).await?;
            let agents = state["agents"].as_array().cloned().unwrap_or_default();
            if agents.len() != 2 || agents.iter().any(|a| !a["used"].is_string()) {
                return Err(format!("agents: {agents:?}"));
            }
            let used: Vec<String> = agents
                .iter()
                .filter_map(|a| a["used"].as_str())
                .filter(|u| u.contains("cpus"))
                .map(str::to_string)
                .collect();
            used.is_empty()
                .then_some(())
                .ok_or_else(|| format!("still used: {used:?}"))
        }
    })
    .await
    .expect("resources free");
    common::wait_until("app_terminated_event", Duration::from_secs(10), || {
        let seen = events.borrow().clone();
        async move {
            seen.iter()
                .any(|e| e["eventType"] == "app_terminated_event" && e["appId"] == "/web")
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        }
    })
    .await
    .expect("terminated event");
}

/// The framework's tasks in the leading master's registry whose id starts with `prefix`:
/// id → state.
async fn registry_tasks(
    c: &common::TestCluster,
    prefix: &str,
) -> Result<BTreeMap<String, String>, String> {
    let state = common::leader_state(c).await?;
    Ok(state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let id = t["id"].as_str()?;
            id.starts_with(prefix).then(|| {
                (
                    id.to_string(),
                    t["state"].as_str().unwrap_or("?").to_string(),
                )
            })
        })
        .collect())
}

/// SIGKILLs the active scheduler (or, with `kill_master`, the leading master) while an app's
/// deployment runs: a standby takes over and the deployment completes with exactly the app's
/// instances, none launched twice and none killed because of the takeover.
async fn takeover_during_a_deployment(kill_master: bool) {
    let mut c = common::start_with_agents(3, &[], 2, &[], 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = Scheduler::start(&c.addrs(), dir.path(), "scheduler-a", &[]).await;
    a.wait_active(Duration::from_secs(30)).await;
    let b = Scheduler::start(&c.addrs(), dir.path(), "scheduler-b", &[]).await;
    // The standby names the active one and sends clients there.
    let (status, leader) = send(reqwest::Method::GET, &b.addr, "/v2/leader", None).await;
    assert_eq!(
        (status, leader["leader"].as_str()),
        (200, Some(a.addr.as_str()))
    );
    let (status, listed) = send(reqwest::Method::GET, &b.addr, "/v2/apps", None).await;
    assert_eq!(status, 200, "followed the redirect: {listed}");

    let (_, info) = send(reqwest::Method::GET, &a.addr, "/v2/info", None).await;
    let framework = info["frameworkId"]
        .as_str()
        .expect("subscribed")
        .to_string();
    let app = json!({"id": "/ha", "cmd": "sleep 1000", "instances": 20, "cpus": 0.02, "mem": 8});
    let (status, created) = send(reqwest::Method::POST, &a.addr, "/v2/apps", Some(app)).await;
    assert_eq!(status, 201, "{created}");
    let killed_at = Instant::now();
    let active = if kill_master {
        let leader = c
            .wait_for_leader(common::LEADER_TIMEOUT)
            .await
            .expect("a leader");
        c.kill(leader.leader_id).await.expect("kill the leader");
        &a
    } else {
        a.kill().await;
        b.wait_active(Duration::from_secs(30)).await;
        eprintln!(
            "scheduler takeover: {} ms from SIGKILL to active",
            killed_at.elapsed().as_millis()
        );
        &b
    };
    let settled = app_named(&active.addr, "ha", "20 running after the takeover", |a| {
        settled(a, 20)
    })
    .await;
    eprintln!(
        "deployment done {} ms after the SIGKILL",
        killed_at.elapsed().as_millis()
    );
    let shown = task_ids(&settled);
    // The same framework, failed over (a new one would leave the old one's tasks behind).
    let (_, info) = send(reqwest::Method::GET, &active.addr, "/v2/info", None).await;
    assert_eq!(info["frameworkId"], framework.as_str(), "{info}");
    common::wait_until(
        "the registry to hold exactly the 20 tasks",
        CONVERGE,
        || {
            let shown = shown.clone();
            let c = &c;
            async move {
                let tasks = registry_tasks(c, "ha.instance-").await?;
                let running: BTreeSet<String> = tasks
                    .iter()
                    .filter(|(_, s)| s.as_str() == "TASK_RUNNING")
                    .map(|(id, _)| id.clone())
                    .collect();
                if running != shown {
                    return Err(format!("registry {tasks:?} against shown {shown:?}"));
                }
                // Nothing was killed or replaced: every task the masters ever had for the app
                // still runs, one per instance.
                let ended: Vec<&String> = tasks
                    .iter()
                    .filter(|(_, s)| s.as_str() != "TASK_RUNNING")
                    .map(|(id, _)| id)
                    .collect();
                if !ended.is_empty() {
                    return Err(format!("tasks ended by the takeover: {ended:?}"));
                }
                let instances: BTreeSet<&str> = tasks
                    .keys()
                    .map(|id| id.rsplit_once("._app.").map_or(id.as_str(), |(i, _)| i))
                    .collect();
                if instances.len() != tasks.len() {
                    return Err(format!("an instance ran two tasks: {tasks:?}"));
                }
                Ok(())
            }
        },
    )
    .await
    .expect("no duplicates");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_scheduler_takes_over_a_deployment_when_the_active_one_is_killed() {
    takeover_during_a_deployment(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_completes_when_the_leading_master_is_killed() {
    takeover_during_a_deployment(true).await;
}

/// The `status_update_event`s of app `id` seen so far, in order: (when seen, task, state).
fn updates_of(events: &[(Instant, Value)], id: &str) -> Vec<(Instant, String, String)> {
    events
        .iter()
        .filter(|(_, e)| e["eventType"] == "status_update_event" && e["appId"] == id)
        .map(|(at, e)| {
            (
                *at,
                e["taskId"].as_str().unwrap_or("").to_string(),
                e["taskStatus"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Like [`follow_events`], with the time each event was read.
fn follow_timed_events(addr: &str) -> tokio::sync::watch::Receiver<Vec<(Instant, Value)>> {
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let mut plain = follow_events(addr);
    tokio::spawn(async move {
        let mut seen = 0;
        while plain.changed().await.is_ok() {
            let now = Instant::now();
            let all = plain.borrow_and_update().clone();
            tx.send_modify(|v| v.extend(all[seen..].iter().map(|e| (now, e.clone()))));
            seen = all.len();
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_is_relaunched_with_growing_backoff_and_an_unhealthy_task_is_replaced() {
    // Two agents on hosts of their own, for the UNIQUE constraint at the end.
    let c = common::start_with_agents_on_own_hosts(3, 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    s.wait_active(Duration::from_secs(30)).await;
    let events = follow_timed_events(&s.addr);

    let failing = json!({"id": "/fail", "cmd": "exit 1", "cpus": 0.05, "mem": 16,
        "backoffSeconds": 2, "backoffFactor": 2, "maxLaunchDelaySeconds": 60});
    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(failing)).await;
    assert_eq!(status, 201, "{r}");
    // Three failures: the launches after them wait 2 s, then 4 s.
    let failures = common::wait_until("three failed launches", CONVERGE, || {
        let seen = events.borrow().clone();
        async move {
            let failed: Vec<(Instant, String, String)> = updates_of(&seen, "/fail")
                .into_iter()
                .filter(|(_, _, state)| state == "TASK_FAILED")
                .collect();
            (failed.len() >= 3)
                .then_some(failed)
                .ok_or_else(|| "fewer than 3 failures".to_string())
        }
    })
    .await
    .expect("failures");
    let gap1 = failures[1].0 - failures[0].0;
    let gap2 = failures[2].0 - failures[1].0;
    assert!(gap1 >= Duration::from_millis(900), "first backoff {gap1:?}");
    assert!(
        gap2 >= gap1 + Duration::from_millis(500),
        "the backoff grows: {gap1:?} then {gap2:?}"
    );
    let ids: BTreeSet<&str> = failures.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(ids.len(), 3, "each relaunch is a new task: {ids:?}");
    let instances: BTreeSet<&str> = ids
        .iter()
        .map(|t| t.rsplit_once("._app.").expect("task id").0)
        .collect();
    assert_eq!(instances.len(), 1, "of the same instance: {ids:?}");
    let (_, app) = send(reqwest::Method::GET, &s.addr, "/v2/apps/fail", None).await;
    assert_eq!(
        app["app"]["lastTaskFailure"]["state"], "TASK_FAILED",
        "{app}"
    );
    let (_, queue) = send(reqwest::Method::GET, &s.addr, "/v2/queue", None).await;
    assert_eq!(queue["queue"][0]["app"]["id"], "/fail", "{queue}");
    let (status, r) = send(reqwest::Method::DELETE, &s.addr, "/v2/apps/fail", None).await;
    assert_eq!(status, 200, "{r}");

    // An HTTP check that fails (404): killed after two failures in a row, and replaced.
    let sick = json!({"id": "/sick", "cmd": "exec python3 -m http.server $PORT0", "cpus": 0.05, "mem": 64,
        "healthChecks": [{"protocol": "HTTP", "path": "/missing", "gracePeriodSeconds": 0,
                          "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}]});
    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(sick)).await;
    assert_eq!(status, 201, "{r}");
    common::wait_until("an unhealthy task killed and replaced", CONVERGE, || {
        let seen = events.borrow().clone();
        async move {
            let killed: Vec<&Value> = seen
                .iter()
                .map(|(_, e)| e)
                .filter(|e| {
                    e["eventType"] == "unhealthy_instance_kill_event" && e["appId"] == "/sick"
                })
                .collect();
            let Some(first) = killed.first() else {
                return Err("no unhealthy_instance_kill_event yet".to_string());
            };
            let old = first["taskId"].as_str().unwrap_or("");
            let replaced = updates_of(&seen, "/sick")
                .iter()
                .any(|(_, t, state)| t != old && state == "TASK_RUNNING");
            let failed_check = seen.iter().any(|(_, e)| {
                e["eventType"] == "failed_health_check_event" && e["appId"] == "/sick"
            });
            (replaced && failed_check)
                .then_some(())
                .ok_or_else(|| format!("killed {old}; no replacement RUNNING yet"))
        }
    })
    .await
    .expect("replaced");
    let (_, app) = send(reqwest::Method::GET, &s.addr, "/v2/apps/sick", None).await;
    assert_eq!(app["app"]["tasksHealthy"], 0, "{app}");
    // Its deployment never finishes (no task becomes healthy): deleting it takes force.
    let (status, r) = send(reqwest::Method::DELETE, &s.addr, "/v2/apps/sick", None).await;
    assert_eq!(status, 409, "{r}");
    let (status, r) = send(
        reqwest::Method::DELETE,
        &s.addr,
        "/v2/apps/sick?force=true",
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");

    // UNIQUE hostname, 3 instances, 2 hosts: two run (one per host), the third waits queued.
    let unique = json!({"id": "/unique", "cmd": "sleep 1000", "instances": 3, "cpus": 0.05,
        "mem": 16, "constraints": [["hostname", "UNIQUE"]]});
    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(unique)).await;
    assert_eq!(status, 201, "{r}");
    let app = app_named(&s.addr, "unique", "2 running", |a| {
        a["tasksRunning"] == 2 && a["tasks"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let hosts: BTreeSet<String> = app["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["host"].as_str().expect("host").to_string())
        .collect();
    let expected: BTreeSet<String> = (0..2).map(drover_chaos::cluster::agent_hostname).collect();
    assert_eq!(hosts, expected, "one task on each host: {app}");
    common::wait_until("the third instance queued", CONVERGE, || {
        let addr = s.addr.clone();
        async move {
            let (_, queue) = send(reqwest::Method::GET, &addr, "/v2/queue", None).await;
            queue["queue"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|q| q["app"]["id"] == "/unique" && q["count"] == 1)
                .then_some(())
                .ok_or_else(|| format!("{queue}"))
        }
    })
    .await
    .expect("queued");
    // And it stays at two: no offer from either host fits a third.
    let (_, again) = send(reqwest::Method::GET, &s.addr, "/v2/apps/unique", None).await;
    assert_eq!(again["app"]["tasksRunning"], 2, "{again}");
    assert_eq!(again["app"]["tasksStaged"], 0, "{again}");
}

/// A COMMAND health check runs beside each task: the task turns healthy, then (its check
/// failing) unhealthy, its executor kills it, and the scheduler replaces it.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_health_check_is_run_by_the_executor_and_an_unhealthy_task_is_replaced() {
    let c = common::start_with_agents(1, &[], 1, &[], 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    s.wait_active(Duration::from_secs(30)).await;
    let events = follow_timed_events(&s.addr);
    // Healthy while `ok` exists: about 4 s, then the check fails twice in a row.
    let app = json!({"id": "/flaky", "cmd": "touch ok; sleep 4; rm ok; sleep 1000",
        "cpus": 0.05, "mem": 16,
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f ok"},
                          "delaySeconds": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1,
                          "timeoutSeconds": 5, "maxConsecutiveFailures": 2}]});
    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(app)).await;
    assert_eq!(status, 201, "{r}");
    let healthy = app_named(&s.addr, "flaky", "a healthy task", |a| {
        a["tasksHealthy"] == 1 && a["tasks"][0]["healthCheckResults"][0]["alive"] == true
    })
    .await;
    let first = healthy["tasks"][0]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    common::wait_until("the unhealthy task killed and replaced", CONVERGE, || {
        let seen = events.borrow().clone();
        let first = first.clone();
        async move {
            let updates = updates_of(&seen, "/flaky");
            let killed = updates
                .iter()
                .any(|(_, t, state)| *t == first && state == "TASK_KILLED");
            let replaced = updates
                .iter()
                .any(|(_, t, state)| *t != first && state == "TASK_RUNNING");
            let changes: Vec<&Value> = seen
                .iter()
                .map(|(_, e)| e)
                .filter(|e| {
                    e["eventType"] == "health_status_changed_event" && e["appId"] == "/flaky"
                })
                .collect();
            let went_bad = changes.iter().any(|e| e["alive"] == false);
            let failed = seen.iter().any(|(_, e)| {
                e["eventType"] == "failed_health_check_event" && e["appId"] == "/flaky"
            });
            (killed && replaced && went_bad && failed)
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "killed {killed} replaced {replaced} unhealthy {went_bad} failed {failed}"
                    )
                })
        }
    })
    .await
    .expect("replaced");
}

/// `unreachableStrategy` on a real partition: the agent of an app's task is cut off from the
/// masters; once its task is UNREACHABLE for `inactiveAfterSeconds` another replaces it on the
/// other agent; when the cut heals the old task comes back RUNNING, one task is surplus, and
/// the app's `killSelection` (YOUNGEST_FIRST, Marathon's default) stops the replacement.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_on_a_partitioned_agent_is_replaced_and_the_surplus_killed_when_it_comes_back() {
    let c = common::start_with_agents_proxied(
        3,
        &["--agent-timeout-ms", "2000", "--agent-heartbeat-ms", "400"],
        2,
        &[],
        2,
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    s.wait_active(Duration::from_secs(30)).await;
    let events = follow_timed_events(&s.addr);
    let app = json!({"id": "/cut", "cmd": "sleep 1000", "cpus": 0.05, "mem": 16,
        "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 600}});
    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(app)).await;
    assert_eq!(status, 201, "{r}");
    let running = app_named(&s.addr, "cut", "1 running", |a| settled(a, 1)).await;
    let old = running["tasks"][0]["id"].as_str().expect("id").to_string();
    let agent = (0..2)
        .find(|i| common::task_dir(&c.agent(*i).unwrap().work_dir, &old).is_some())
        .expect("an agent runs the task");

    c.net().expect("fault layer").isolate_agent(agent);
    let replaced = common::wait_until("a replacement running elsewhere", CONVERGE, || {
        let seen = events.borrow().clone();
        let old = old.clone();
        async move {
            let updates = updates_of(&seen, "/cut");
            let unreachable = updates
                .iter()
                .any(|(_, t, state)| *t == old && state == "TASK_UNREACHABLE");
            updates
                .iter()
                .find(|(_, t, state)| *t != old && state == "TASK_RUNNING")
                .filter(|_| unreachable)
                .map(|(_, t, _)| t.clone())
                .ok_or_else(|| format!("{updates:?}"))
        }
    })
    .await
    .expect("replaced");
    assert!(
        common::task_dir(&c.agent(1 - agent).unwrap().work_dir, &replaced).is_some(),
        "the replacement runs on the reachable agent"
    );

    c.net().expect("fault layer").heal_agent(agent);
    common::wait_until(
        "the old task back, the replacement killed",
        CONVERGE,
        || {
            let seen = events.borrow().clone();
            let (old, replaced) = (old.clone(), replaced.clone());
            async move {
                let updates = updates_of(&seen, "/cut");
                let of = |task: &str| -> Vec<String> {
                    updates
                        .iter()
                        .filter(|(_, t, _)| t == task)
                        .map(|(_, _, s)| s.clone())
                        .collect()
                };
                let old_states = of(&old);
                let back = old_states
                    .iter()
                    .skip_while(|s| *s != "TASK_UNREACHABLE")
                    .any(|s| s == "TASK_RUNNING");
                let surplus_killed = of(&replaced).last().is_some_and(|s| s == "TASK_KILLED");
                (back && surplus_killed)
                    .then_some(())
                    .ok_or_else(|| format!("old {old_states:?} replacement {:?}", of(&replaced)))
            }
        },
    )
    .await
    .expect("surplus killed");
    let app = app_named(&s.addr, "cut", "one task again", |a| settled(a, 1)).await;
    assert_eq!(app["tasks"][0]["id"], old.as_str(), "{app}");
}

/// A Docker app on the bridge network, through the Marathon API on a real cluster whose agent
/// runs containers: its task runs the image, its container port is reachable on the offered
/// host port the task view lists, and deleting the app stops the container (skipped, saying
/// why, where the Docker engine does not answer).
#[tokio::test(flavor = "multi_thread")]
async fn a_docker_app_serves_on_its_mapped_host_port_and_stops_on_delete() {
    let Some(image) = common::docker_image_or_skip().await else {
        return;
    };
    let c = common::start_with_agents(1, &[], 1, &[], 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scheduler::start(&c.addrs(), dir.path(), "scheduler", &[]).await;
    s.wait_active(Duration::from_secs(30)).await;
    let app = json!({"id": "/docker-web",
        "cmd": "mkdir -p /www && echo served-by-marathon-app > /www/index.html && exec httpd -f -p 8080 -h /www",
        "cpus": 0.1, "mem": 32,
        "container": {"type": "DOCKER", "docker": {"image": image},
                      "portMappings": [{"containerPort": 8080, "name": "http"}]},
        "networks": [{"mode": "container/bridge"}]});
    let (status, r) = send(reqwest::Method::POST, &s.addr, "/v2/apps", Some(app)).await;
    assert_eq!(status, 201, "{r}");
    let running = app_named(&s.addr, "docker-web", "the container app running", |a| {
        settled(a, 1)
    })
    .await;
    let task = running["tasks"][0].clone();
    let task_id = task["id"].as_str().expect("task id").to_string();
    let host_port = task["ports"][0].as_u64().expect("a host port");
    let body = common::wait_until(
        "the app answers on its host port",
        CONVERGE,
        || async move {
            let text = reqwest::get(format!("http://127.0.0.1:{host_port}/index.html"))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(text)
        },
    )
    .await
    .expect("served");
    assert_eq!(body, "served-by-marathon-app\n");
    let (status, r) = send(
        reqwest::Method::DELETE,
        &s.addr,
        "/v2/apps/docker-web",
        None,
    )
    .await;
    assert!(status == 200 || status == 202, "{status} {r}");
    common::wait_until("the container stopped", CONVERGE, || {
        let task_id = task_id.clone();
        async move {
            let out = tokio::process::Command::new("docker")
                .args([
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=drover.task_id={task_id}"),
                ])
                .output()
                .await
                .map_err(|e| e.to_string())?;
            let running = String::from_utf8_lossy(&out.stdout).trim().to_string();
            running.is_empty().then_some(()).ok_or(running)
        }
    })
    .await
    .expect("stopped");
    common::remove_task_containers(&task_id).await;
}
