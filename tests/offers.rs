//! The offer cycle end to end, on real processes: three masters, real agents (executors running
//! real shell commands) or simulated ones, and frameworks built on the driver library.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::v1;
use drover_scheduler::driver::{
    Driver, DriverEvent, DriverOptions, EventStream, FrameworkInfo, Offer,
};

use common::{cli, leader_state, next, next_offers, shell_task, start_with_agents, wait_until};

const AGENT_RESOURCES: &str = "cpus:2;mem:2048;disk:1024;ports:[31000-31099]";

async fn subscribe(masters: &[String], name: &str, role: &str) -> (Driver, EventStream) {
    let mut info = FrameworkInfo::new(name);
    info.role = role.into();
    let (driver, mut events) =
        Driver::start(masters, info, DriverOptions::default()).expect("driver starts");
    loop {
        match next(&mut events, Duration::from_secs(30)).await {
            Some(DriverEvent::Subscribed { .. }) => break,
            Some(DriverEvent::Disconnected { .. }) => continue,
            other => panic!("{name}: expected SUBSCRIBED, got {other:?}"),
        }
    }
    (driver, events)
}

/// `drover run -- 'echo hello; exit 3'`: the client sees every state, ending in FAILED with exit
/// code 3, exits 3, and the task's sandbox holds what it printed.
#[tokio::test(flavor = "multi_thread")]
async fn run_reports_every_state_and_exits_with_the_task_status() {
    let c = start_with_agents(3, &[], 2, &["--resources", AGENT_RESOURCES], 2).await;
    let masters = c.addrs().join(",");
    let out = cli(&[
        "run",
        "--masters",
        &masters,
        "--name",
        "e2e",
        "--task-id",
        "hello-task",
        "--cpus",
        "0.5",
        "--mem",
        "64",
        // Only the status lines on stdout (the task's output is in its sandbox).
        "--no-output",
        "--",
        "echo hello; exit 3",
    ])
    .await;
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let states: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        states,
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FAILED"
        ],
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("exit code 3"), "{}", out.stdout);

    // The sandbox's stdout, on whichever agent ran it.
    let sandboxes: Vec<String> = c
        .agents()
        .filter_map(|a| find_file(&a.work_dir, "stdout"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert!(
        sandboxes.iter().any(|s| s.contains("hello")),
        "no sandbox stdout holds hello: {sandboxes:?}"
    );

    // The registry agrees, on the leader, with every update acknowledged.
    let state = leader_state(&c).await.unwrap();
    let task = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "hello-task")
        .expect("task in /v1/state")
        .clone();
    assert_eq!(task["state"], "TASK_FAILED", "{task}");
    let last = task["updates"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["exit_code"], 3, "{task}");
    assert!(
        task["updates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["acknowledged"] == true),
        "{task}"
    );
    // The framework was torn down and the agent's resources are all free again.
    for a in state["agents"].as_array().unwrap() {
        assert_eq!(a["used"], "", "{a}");
    }
}

/// Subscribes framework `name`, launches task `id` (a shell that writes its pid to `pid` in
/// its sandbox, then sleeps) on the first offer, and waits until it is RUNNING.
async fn run_long_task(
    c: &drover_chaos::LocalCluster,
    name: &str,
    id: &str,
) -> (Driver, EventStream) {
    let (driver, mut events) = subscribe(&c.addrs(), name, "*").await;
    let offers = next_offers(&mut events, Duration::from_secs(10))
        .await
        .expect("an offer");
    let task = shell_task(id, "cpus:0.5;mem:32", "echo $$ > pid; exec sleep 600");
    driver
        .accept(std::slice::from_ref(&offers[0].id), vec![task], None)
        .await
        .expect("accept");
    loop {
        let s = next_update(&driver, &mut events, Duration::from_secs(20))
            .await
            .expect("an update");
        if state_of(&s) == v1::TaskState::TaskRunning {
            return (driver, events);
        }
    }
}

/// The process id in the first file called `name` under an agent's work directory, once one
/// holds a number.
async fn read_pid(c: &drover_chaos::LocalCluster, name: &str) -> i32 {
    wait_until(name, Duration::from_secs(10), || async {
        c.agents()
            .find_map(|a| find_file(&a.work_dir, name))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
            .ok_or_else(|| format!("no {name} yet"))
    })
    .await
    .unwrap()
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// A framework with nothing to run declines; once it SUPPRESSes it gets no offers at all (even
/// after its decline filters have run out); REVIVE brings them back at once.
#[tokio::test(flavor = "multi_thread")]
async fn idle_framework_declines_suppress_stops_offers_and_revive_restarts_them() {
    let c = start_with_agents(
        3,
        &["--allocation-interval-ms", "100"],
        1,
        &["--resources", AGENT_RESOURCES],
        1,
    )
    .await;
    let (driver, mut events) = subscribe(&c.addrs(), "idle", "*").await;

    let offers = next_offers(&mut events, Duration::from_secs(10))
        .await
        .expect("an offer");
    let ids: Vec<_> = offers.iter().map(|o| o.id.clone()).collect();
    driver.decline(&ids, Some(0.2)).await.expect("decline");
    // The filter ran out: the same resources come back. SUPPRESS does not rescind what is
    // already offered, so decline that too.
    let offers = next_offers(&mut events, Duration::from_secs(10))
        .await
        .expect("offered again after the filter");
    driver.suppress().await.expect("suppress");
    let ids: Vec<_> = offers.iter().map(|o| o.id.clone()).collect();
    driver.decline(&ids, Some(0.0)).await.expect("decline");
    // Offers sent before SUPPRESS took effect may still arrive; decline them, then expect
    // silence for several allocation intervals and filter lifetimes.
    let mut quiet = false;
    for _ in 0..10 {
        match next_offers(&mut events, Duration::from_secs(2)).await {
            Some(o) => {
                let ids: Vec<_> = o.iter().map(|o| o.id.clone()).collect();
                driver.decline(&ids, Some(0.0)).await.expect("decline");
            }
            None => {
                quiet = true;
                break;
            }
        }
    }
    assert!(quiet, "offers kept coming while suppressed");

    driver.revive().await.expect("revive");
    next_offers(&mut events, Duration::from_secs(5))
        .await
        .expect("offers again after REVIVE");
    driver.teardown().await.expect("teardown");
}

/// Weighted DRF, two frameworks in two roles with weights 1 and 3, identical one-cpu tasks
/// launched one per offer on 16 cpus of simulated agents: they converge to 4 and 12 tasks
/// (weighted dominant shares 0.25 / 1 and 0.75 / 3), where equal weights would give 8 and 8.
#[tokio::test(flavor = "multi_thread")]
async fn two_roles_with_weights_one_and_three_converge_to_weighted_drf_shares() {
    let c = start_with_agents(
        3,
        &["--allocation-interval-ms", "50"],
        1,
        &[
            "--simulate",
            "4",
            "--resources",
            "cpus:4;mem:4096;disk:1024",
        ],
        4,
    )
    .await;
    let out = cli(&[
        "cluster",
        "--masters",
        &c.addrs().join(","),
        "set-weight",
        "heavy",
        "3",
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    let masters = c.addrs();
    let mut tasks = tokio::task::JoinSet::new();
    for (name, role) in [("light-fw", "light"), ("heavy-fw", "heavy")] {
        let masters = masters.clone();
        tasks.spawn(async move {
            let (driver, mut events) = subscribe(&masters, name, role).await;
            let mut launched = 0usize;
            // Launch one task per offer, hand the rest back at once (refuse 0), until offers
            // stop coming: the cluster is full.
            while let Some(offers) = next_offers(&mut events, Duration::from_secs(3)).await {
                for o in offers {
                    if o.resources.cpus().as_f64() < 1.0 {
                        // What is left without cpus is of no use: refuse it for the rest of
                        // the test (a short filter would have it offered back and forth).
                        driver
                            .decline(std::slice::from_ref(&o.id), Some(600.0))
                            .await
                            .ok();
                        continue;
                    }
                    let task = v1::TaskInfo {
                        name: "sleeper".into(),
                        kill_grace_seconds: 0.0,
                        health_check: None,
                        ..shell_task(&format!("{name}-{launched}"), "cpus:1;mem:256", "sleep 600")
                    };
                    match driver
                        .accept(std::slice::from_ref(&o.id), vec![task], Some(0.0))
                        .await
                    {
                        Ok(()) => launched += 1,
                        Err(e) => eprintln!("{name}: accept refused: {e}"),
                    }
                }
            }
            (name, launched, driver)
        });
    }
    let mut launched = BTreeMap::new();
    let mut drivers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (name, n, driver) = r.expect("framework task");
        launched.insert(name, n);
        drivers.push(driver);
    }
    let (light, heavy) = (launched["light-fw"], launched["heavy-fw"]);
    assert_eq!(light + heavy, 16, "the cluster fills: {launched:?}");
    assert!(
        (3..=5).contains(&light) && (11..=13).contains(&heavy),
        "weighted DRF shares are 4 and 12 tasks; got {launched:?}"
    );

    // The registry holds exactly those tasks, and never more than an agent's total.
    wait_until("tasks committed", Duration::from_secs(10), || async {
        let state = leader_state(&c).await?;
        let n = state["tasks"].as_array().map_or(0, |t| t.len());
        if n == 16 {
            Ok(())
        } else {
            Err(format!("{n} tasks"))
        }
    })
    .await
    .unwrap();
    for d in drivers {
        d.teardown().await.ok();
    }
}

/// `/v1/state` and the offer-cycle metrics answer on every master.
#[tokio::test(flavor = "multi_thread")]
async fn state_and_metrics_show_agents_on_every_master() {
    let c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    for m in c.masters() {
        let addr = m.addr.clone();
        wait_until("follower state", Duration::from_secs(10), || {
            let addr = addr.clone();
            async move {
                let (_, body) = common::try_http_get(&addr, "/v1/state")
                    .await
                    .map_err(|e| e.to_string())?;
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| e.to_string())?;
                if v["agents"].as_array().map_or(0, |a| a.len()) == 1 {
                    Ok(())
                } else {
                    Err(body)
                }
            }
        })
        .await
        .unwrap();
        wait_until("agent gauge", Duration::from_secs(10), || {
            let addr = addr.clone();
            async move {
                match common::metric(&addr, r#"drover_master_agents{state="active"}"#).await {
                    Some(1.0) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await
        .unwrap();
    }
}

/// Waits for the next UPDATE (acknowledging it) within `timeout`, skipping other events.
async fn next_update(
    driver: &Driver,
    events: &mut EventStream,
    timeout: Duration,
) -> Option<v1::TaskStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(events, left).await? {
            DriverEvent::Update(s) => {
                driver.acknowledge(&s).await.expect("acknowledge");
                return Some(s);
            }
            DriverEvent::Offers(o) => {
                let ids: Vec<_> = o.iter().map(|o| o.id.clone()).collect();
                driver.decline(&ids, Some(60.0)).await.ok();
            }
            DriverEvent::Error(e) => panic!("driver error: {e}"),
            _ => {}
        }
    }
}

fn state_of(s: &v1::TaskStatus) -> v1::TaskState {
    v1::TaskState::try_from(s.state).unwrap_or(v1::TaskState::Unspecified)
}

/// KILL reaches the executor on a real agent: the task goes TASK_KILLED, its process is gone,
/// its resources are offered again, and RECONCILE (explicit, and for an unknown id) answers from the registry.
#[tokio::test(flavor = "multi_thread")]
async fn kill_ends_a_running_task_and_reconcile_answers_from_the_registry() {
    let c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let (driver, mut events) = run_long_task(&c, "killer", "long").await;
    let pid = read_pid(&c, "pid").await;

    driver
        .kill(&drover_scheduler::driver::TaskId::new("long"), None)
        .await
        .expect("kill");
    let killed = next_update(&driver, &mut events, Duration::from_secs(20))
        .await
        .expect("a terminal update");
    assert_eq!(state_of(&killed), v1::TaskState::TaskKilled, "{killed:?}");
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the task's process {pid} still exists"
    );
    // Its resources are offered again: the whole agent is free.
    let whole: drover_resources::Resources = AGENT_RESOURCES.parse().unwrap();
    loop {
        let offers = next_offers(&mut events, Duration::from_secs(20))
            .await
            .expect("the killed task's resources offered again");
        if offers.iter().any(|o| o.resources == whole) {
            break;
        }
    }

    driver
        .reconcile(&[
            drover_scheduler::driver::TaskId::new("long"),
            drover_scheduler::driver::TaskId::new("never-launched"),
        ])
        .await
        .expect("reconcile");
    let mut answers = BTreeMap::new();
    while answers.len() < 2 {
        let s = next_update(&driver, &mut events, Duration::from_secs(10))
            .await
            .expect("reconciliation answers");
        assert!(
            s.uuid.is_empty(),
            "reconciliation answers carry no uuid: {s:?}"
        );
        answers.insert(s.task_id.clone(), state_of(&s));
    }
    assert_eq!(answers["long"], v1::TaskState::TaskKilled);
    // Not partition-aware: a task the master never heard of is LOST to it (as Mesos answers).
    assert_eq!(answers["never-launched"], v1::TaskState::TaskLost);
    driver.teardown().await.expect("teardown");
}

/// An agent that stops heartbeating (SIGKILL) is marked UNREACHABLE in the registry after the
/// configured timeout, and its offers are rescinded.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_agent_becomes_unreachable_and_its_offers_are_rescinded() {
    let mut c = start_with_agents(
        3,
        &["--agent-timeout-ms", "1500", "--agent-heartbeat-ms", "300"],
        1,
        &["--resources", AGENT_RESOURCES],
        1,
    )
    .await;
    let (_driver, mut events) = subscribe(&c.addrs(), "watcher", "*").await;
    let offers = next_offers(&mut events, Duration::from_secs(10))
        .await
        .expect("an offer");
    c.kill_agent(0).await.unwrap();
    // The outstanding offer is rescinded…
    let rescinded = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.next_event().await {
                Some(DriverEvent::Rescind(id)) => return id,
                Some(_) => continue,
                None => panic!("driver stopped"),
            }
        }
    })
    .await
    .expect("a RESCIND");
    assert_eq!(rescinded, offers[0].id);
    // …and the registry says UNREACHABLE.
    wait_until("agent unreachable", Duration::from_secs(15), || async {
        let state = leader_state(&c).await?;
        match state["agents"][0]["state"].as_str() {
            Some("UNREACHABLE") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
}

/// The offers and tasks of the leader's registry, as comparable text.
async fn offers_and_tasks(c: &drover_chaos::LocalCluster) -> (Vec<String>, Vec<String>) {
    let state = leader_state(c).await.expect("state");
    let list = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = state[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect();
        v.sort();
        v
    };
    (list("offers"), list("tasks"))
}

/// A `sleep 600` task `id` with `resources`.
fn small_task(id: &str, resources: &str) -> v1::TaskInfo {
    shell_task(id, resources, "sleep 600")
}

/// Expects `result` to be the master's refusal with `code`, its message containing `says`.
fn refused(
    result: Result<(), drover_scheduler::driver::DriverError>,
    code: tonic::Code,
    says: &str,
) {
    match result {
        Err(drover_scheduler::driver::DriverError::Rejected(s)) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(says),
                "{:?} lacks {says:?}",
                s.message()
            );
        }
        other => panic!("expected a refusal ({code:?}, {says:?}), got {other:?}"),
    }
}

/// ACCEPT of another framework's offer, of an unknown one, of one declined earlier or used
/// already, or with tasks that do not fit or repeat an id: each is refused with a status that
/// says why, and none changes the registry's offers or tasks.
#[tokio::test(flavor = "multi_thread")]
async fn accept_of_a_foreign_stale_or_used_offer_or_of_too_much_is_refused_and_changes_nothing() {
    let c = start_with_agents(
        3,
        &["--allocation-interval-ms", "200"],
        2,
        &["--resources", AGENT_RESOURCES],
        2,
    )
    .await;
    let (alpha, mut alpha_events) = subscribe(&c.addrs(), "alpha", "*").await;
    // Alpha, alone, is offered both agents.
    let mut alpha_offers: Vec<Offer> = Vec::new();
    while alpha_offers.len() < 2 {
        let more = next_offers(&mut alpha_events, Duration::from_secs(10))
            .await
            .expect("offers for alpha");
        alpha_offers.extend(more);
    }
    let (beta, mut beta_events) = subscribe(&c.addrs(), "beta", "*").await;
    // Alpha declines the second agent for long; the next cycle offers it to beta.
    let declined = alpha_offers.pop().unwrap();
    alpha
        .decline(std::slice::from_ref(&declined.id), Some(600.0))
        .await
        .expect("decline");
    let beta_offer = next_offers(&mut beta_events, Duration::from_secs(10))
        .await
        .expect("an offer for beta")
        .remove(0);
    assert_eq!(beta_offer.agent_id, declined.agent_id);
    let kept = alpha_offers.pop().unwrap();
    let before = offers_and_tasks(&c).await;
    assert_eq!(before.0.len(), 2, "{before:?}");
    assert!(before.1.is_empty(), "{before:?}");

    let one = || vec![small_task("t1", "cpus:0.5;mem:64")];
    refused(
        beta.accept(std::slice::from_ref(&kept.id), one(), None)
            .await,
        tonic::Code::FailedPrecondition,
        "belongs to another framework",
    );
    refused(
        alpha
            .accept(std::slice::from_ref(&declined.id), one(), None)
            .await,
        tonic::Code::FailedPrecondition,
        "not outstanding",
    );
    refused(
        alpha
            .accept(
                &[drover_scheduler::driver::OfferId::new("no-such-offer")],
                one(),
                None,
            )
            .await,
        tonic::Code::FailedPrecondition,
        "not outstanding",
    );
    refused(
        alpha
            .accept(
                std::slice::from_ref(&kept.id),
                vec![small_task("big", "cpus:64;mem:64")],
                None,
            )
            .await,
        tonic::Code::InvalidArgument,
        "the offers hold",
    );
    refused(
        alpha
            .accept(
                std::slice::from_ref(&kept.id),
                vec![
                    small_task("twin", "cpus:0.5;mem:64"),
                    small_task("twin", "cpus:0.5;mem:64"),
                ],
                None,
            )
            .await,
        tonic::Code::InvalidArgument,
        "a task with this id exists",
    );
    refused(
        alpha
            .accept(&[kept.id.clone(), beta_offer.id.clone()], one(), None)
            .await,
        tonic::Code::FailedPrecondition,
        "belongs to another framework",
    );
    assert_eq!(
        offers_and_tasks(&c).await,
        before,
        "a refused ACCEPT changed the registry"
    );

    // A good ACCEPT consumes the offer once; the same offer again is refused and launches
    // nothing more.
    alpha
        .accept(std::slice::from_ref(&kept.id), one(), None)
        .await
        .expect("accept");
    refused(
        alpha
            .accept(
                std::slice::from_ref(&kept.id),
                vec![small_task("t2", "cpus:0.5;mem:64")],
                None,
            )
            .await,
        tonic::Code::FailedPrecondition,
        "not outstanding",
    );
    let state = leader_state(&c).await.unwrap();
    let tasks: Vec<&str> = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(tasks, ["t1"], "{state}");
    assert!(
        state["offers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["id"] != kept.id.as_str()),
        "the used offer is still outstanding: {state}"
    );
    alpha.teardown().await.expect("teardown");
    beta.teardown().await.expect("teardown");
}

/// A task that goes over its memory limit is killed by the kernel and reported TASK_FAILED
/// with the memory reason, where the host has cgroups (the test says when it cannot run).
#[tokio::test(flavor = "multi_thread")]
async fn a_task_over_its_memory_limit_is_reported_failed_for_memory() {
    if let drover_agent::cgroups::CgroupMode::None { reason } = drover_agent::cgroups::detect() {
        eprintln!("skipped: this host gives the agent no cgroups, so no memory limit: {reason}");
        return;
    }
    let c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let masters = c.addrs().join(",");
    let out = cli(&[
        "run",
        "--masters",
        &masters,
        "--name",
        "hog",
        "--task-id",
        "hog-task",
        "--cpus",
        "0.5",
        "--mem",
        "32",
        "--",
        "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived",
    ])
    .await;
    assert_ne!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("TASK_FAILED"), "stdout:\n{}", out.stdout);
    assert!(last.contains("memory limit of 32 MiB exceeded"), "{last}");
    let state = leader_state(&c).await.unwrap();
    let task = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "hog-task")
        .expect("task in /v1/state")
        .clone();
    let end = task["updates"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(end["reason"], "memory_limit", "{task}");
}

/// Whether process `pid` has ended (gone, or a zombie nobody has reaped yet).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Stopping a test cluster stops what its agents started: the executor of a running task
/// and the task itself (executors start in their own sessions so that they outlive an agent
/// restart, so the harness has to find them; it acts only on processes working under the
/// agent's directory).
#[tokio::test(flavor = "multi_thread")]
async fn stopping_a_cluster_leaves_no_executor_or_task_behind() {
    let mut c = start_with_agents(1, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    // Kept alive until the end: the framework stays subscribed while the cluster stops.
    let _framework = run_long_task(&c, "leaver", "stays").await;
    let executor = read_pid(&c, "executor.pid").await;
    let task = read_pid(&c, "pid").await;
    assert!(!ended(executor) && !ended(task), "both run before the stop");

    c.stop_all(Duration::from_secs(10)).await.expect("stop");
    wait_until(
        "executor and task gone",
        Duration::from_secs(10),
        || async {
            if ended(executor) && ended(task) {
                Ok(())
            } else {
                Err(format!(
                    "executor {executor} ended: {}, task {task} ended: {}",
                    ended(executor),
                    ended(task)
                ))
            }
        },
    )
    .await
    .unwrap();
}

/// `drover run --image IMAGE --publish 8080 -- 'echo …; exit 4'`: the task runs as a container
/// on an agent whose engine answers, with the same statuses and exit code as a command, its
/// output streamed back, and a published port in PORT0 (skipped, saying why, where the Docker
/// engine does not answer).
#[tokio::test(flavor = "multi_thread")]
async fn run_image_runs_a_container_with_the_statuses_and_exit_code_of_a_command() {
    let Some(image) = common::docker_image_or_skip().await else {
        return;
    };
    let c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let masters = c.addrs().join(",");
    let task_id = format!("container-{}", std::process::id());
    let out = cli(&[
        "run",
        "--masters",
        &masters,
        "--name",
        "e2e-container",
        "--task-id",
        &task_id,
        "--image",
        image,
        "--publish",
        "8080",
        "--",
        "echo in a container on port $PORT0 as $(id -u); exit 4",
    ])
    .await;
    common::remove_task_containers(&task_id).await;
    assert_eq!(
        out.code, 4,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let states: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("TASK_"))
        .collect();
    assert_eq!(
        states,
        [
            "TASK_STAGING",
            "TASK_STARTING",
            "TASK_RUNNING",
            "TASK_FAILED"
        ],
        "stdout:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("in a container on port 31000 as 0"),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );

    // --no-shell: the words are the container's command line, each as given (no shell
    // expands `$PORT0` or splits the quoted one).
    let words_id = format!("container-words-{}", std::process::id());
    let out = cli(&[
        "run",
        "--masters",
        &masters,
        "--task-id",
        &words_id,
        "--image",
        image,
        "--no-shell",
        "--",
        "echo",
        "$PORT0",
        "as  given",
    ])
    .await;
    common::remove_task_containers(&words_id).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.lines().any(|l| l == "$PORT0 as  given"),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

/// `drover bench launch --containers docker` (the benchmark's smoke version: 10 tasks on one
/// agent): a round with the command executor, then the same tasks as containers on a fresh
/// cluster, every task RUNNING in both, the comparison printed, and no container left once the
/// benchmark's clusters stopped (skipped, saying why, where the Docker engine does not answer).
#[tokio::test(flavor = "multi_thread")]
async fn bench_launch_measures_containers_beside_commands_and_leaves_none() {
    if common::docker_image_or_skip().await.is_none() {
        return;
    }
    let out = cli(&[
        "bench",
        "launch",
        "--agents",
        "1",
        "--tasks",
        "10",
        "--containers",
        "docker",
        "--timeout-seconds",
        "100",
    ])
    .await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    for label in ["[grpc]", "[grpc docker]"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(label) && l.contains("10 of 10 tasks RUNNING (0 failed)")),
            "{label} not all RUNNING:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .contains("[grpc] containers against commands: launches/s"),
        "{}",
        out.stdout
    );
    let left = tokio::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=drover.task_id=bench-grpc-0"])
        .output()
        .await
        .expect("docker ps");
    assert!(
        left.stdout.is_empty(),
        "the benchmark's containers were left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
