//! Planned maintenance through the CLI: draining an agent (no offers, its tasks killed with
//! their grace period), removing it for good (GONE: it cannot come back under its id), and
//! handing leadership to another master before a restart.

mod common;

use std::time::Duration;

use drover_proto::v1;

use common::framework::Framework;
use common::{cli, leader_state, shell_task, start, start_with_agents, LEADER_TIMEOUT};

const AGENT_RESOURCES: &str = "cpus:4;mem:4096;disk:1024;ports:[31000-31099]";
const WAIT: Duration = Duration::from_secs(40);

/// The agent whose `field` is `value` in a `/v1/state`.
fn agent_in(state: &serde_json::Value, field: &str, value: &str) -> serde_json::Value {
    state["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a[field] == value)
        .cloned()
        .unwrap_or_else(|| panic!("no agent with {field} {value}: {state}"))
}

/// The id of the agent listening at `addr`, from the leader's state.
async fn agent_id_at(c: &common::TestCluster, addr: &str) -> String {
    let state = leader_state(c).await.unwrap();
    agent_in(&state, "addr", addr)["id"]
        .as_str()
        .expect("agent id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_agent_loses_its_tasks_and_offers_and_a_removed_one_never_comes_back() {
    let mut c = start_with_agents(3, &[], 1, &["--resources", AGENT_RESOURCES], 1).await;
    let masters = c.addrs().join(",");
    let agent_addr = c.agent(0).unwrap().addr.clone();
    let agent = agent_id_at(&c, &agent_addr).await;
    let mut f = Framework::start(
        &c.addrs(),
        Framework::info("tenant", true, Duration::from_secs(120)),
    );
    f.launch(vec![
        shell_task("d1", "cpus:0.5;mem:32", "exec sleep 600"),
        // Ignores SIGTERM: killed at the end of its 1 s grace period.
        shell_task(
            "d2",
            "cpus:0.5;mem:32",
            "trap '' TERM; while true; do sleep 0.1; done",
        ),
    ]);
    f.until_state("d1", v1::TaskState::TaskRunning, WAIT).await;
    f.until_state("d2", v1::TaskState::TaskRunning, WAIT).await;

    let out = cli(&["agent", "drain", &agent, "--masters", &masters]).await;
    assert_eq!(out.code, 0, "stdout {}\nstderr {}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "2", "two live tasks being killed");
    f.until_state("d1", v1::TaskState::TaskKilled, WAIT).await;
    f.until_state("d2", v1::TaskState::TaskKilled, WAIT).await;
    let out = cli(&[
        "agent",
        "drain",
        &agent,
        "--wait",
        "30",
        "--masters",
        &masters,
    ])
    .await;
    assert_eq!(out.code, 0, "stdout {}\nstderr {}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "0");
    let state = leader_state(&c).await.unwrap();
    let a = agent_in(&state, "addr", &agent_addr);
    assert_eq!(a["state"], "DRAINING", "{a}");
    let on_agent = state["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["agent_id"] == a["id"])
        .count();
    assert_eq!(on_agent, 0, "no offers on a draining agent");

    // Removed: GONE in the registry, and the agent process, refused, stops.
    let agent = a["id"].as_str().unwrap().to_string();
    let masters = c.addrs().join(",");
    let out = cli(&["agent", "remove", &agent, "--masters", &masters]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if c.exited_agents().contains(&0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the removed agent is still running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(&c.agent(0).unwrap().log_path).unwrap();
    assert!(log.contains("GONE"), "{log}");
    let a = agent_in(&leader_state(&c).await.unwrap(), "id", &agent);
    assert_eq!(a["state"], "GONE", "{a}");
    // A GONE agent cannot be made active again.
    let out = cli(&["agent", "reactivate", &agent, "--masters", &masters]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("GONE"), "{}", out.stderr);
    f.driver.teardown().await.expect("teardown");
}

/// `drover cluster transfer-leader --to TO`.
async fn transfer_to(masters: &str, to: u64) -> common::CliOutput {
    cli(&[
        "cluster",
        "--masters",
        masters,
        "transfer-leader",
        "--to",
        &to.to_string(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn leadership_moves_to_the_master_asked_and_writes_go_on() {
    let c = start(3, &[]).await;
    let masters = c.addrs().join(",");
    let before = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    let to = c
        .masters()
        .map(|m| m.id)
        .find(|id| *id != before.leader_id)
        .unwrap();
    let out = transfer_to(&masters, to).await;
    assert_eq!(out.code, 0, "stdout {}\nstderr {}", out.stdout, out.stderr);
    let reply: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(reply["leader_id"], to);
    assert!(reply["term"].as_u64().unwrap() > before.term);
    let after = c.wait_for_leader(LEADER_TIMEOUT).await.unwrap();
    assert_eq!(after.leader_id, to);
    let out = cli(&["store", "--masters", &masters, "put", "after", "transfer"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // To itself: refused, nothing changes.
    let out = transfer_to(&masters, to).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        c.wait_for_leader(LEADER_TIMEOUT).await.unwrap().leader_id,
        to
    );
}
