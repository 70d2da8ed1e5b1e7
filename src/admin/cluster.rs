//! `drover leader` and `drover cluster …`: finding the leader, the cluster's state (masters
//! and their Raft health; agents, frameworks and tasks from the leader's registry), and
//! replacing masters.

use std::time::Duration;

use drover_client::MasterClient;
use drover_proto::master::MembershipReply;

use super::{CliError, Exit};

/// Prints the leader as JSON: `{"leader_id":2,"leader_addr":"127.0.0.1:5052","term":7}`.
pub async fn leader(client: &MasterClient) -> Result<Exit, CliError> {
    let s = client.leader_status().await?;
    let body = serde_json::json!({
        "leader_id": s.leader_id,
        "leader_addr": s.leader_addr,
        "term": s.term,
    });
    println!("{body}");
    Ok(Exit::Success)
}

/// Prints the leader's view of the membership and every reachable master's own status.
pub async fn status(client: &MasterClient, masters: &[String]) -> Result<Exit, CliError> {
    let leader = client.leader_status().await?;
    println!(
        "cluster {}  term {}  leader master {} at {}",
        leader.cluster_id, leader.term, leader.leader_id, leader.leader_addr
    );
    println!(
        "{:<4} {:<22} {:<8} {:<10} {:>10} {:>10} {:>10} {:>10}",
        "id", "addr", "voter", "role", "last_log", "committed", "applied", "snapshot"
    );
    let mut addrs: Vec<String> = leader.members.iter().map(|m| m.addr.clone()).collect();
    for a in masters {
        if !addrs.contains(a) {
            addrs.push(a.clone());
        }
    }
    for addr in addrs {
        let member = leader.members.iter().find(|m| m.addr == addr);
        let voter = member.map_or("-", |m| if m.voter { "yes" } else { "learner" });
        match client.status_of(&addr, Duration::from_secs(1)).await {
            Ok(s) => println!(
                "{:<4} {:<22} {:<8} {:<10} {:>10} {:>10} {:>10} {:>10}",
                s.node_id,
                addr,
                voter,
                s.role,
                s.last_log_index,
                s.committed_index,
                s.applied_index,
                s.snapshot_index
            ),
            Err(e) => println!(
                "{:<4} {:<22} {:<8} unreachable: {e}",
                member.map_or("?".to_string(), |m| m.id.to_string()),
                addr,
                voter
            ),
        }
    }
    match drover_chaos::http::get_json(&leader.leader_addr, "/v1/state").await {
        Ok(state) => print_registry(&state),
        Err(e) => println!("\n(the leader's /v1/state could not be read: {e})"),
    }
    Ok(Exit::Success)
}

/// Agents with their resources, frameworks, and tasks by state, from a `/v1/state`.
fn print_registry(state: &serde_json::Value) {
    use std::collections::BTreeMap;
    let list = |k: &str| state[k].as_array().cloned().unwrap_or_default();
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let agents = list("agents");
    println!("\nagents: {}", agents.len());
    println!(
        "{:<38} {:<16} {:<12} {:<44} USED (offers and live tasks)",
        "id", "hostname", "state", "resources"
    );
    for a in &agents {
        println!(
            "{:<38} {:<16} {:<12} {:<44} {}",
            text(a, "id"),
            text(a, "hostname"),
            text(a, "state"),
            text(a, "resources"),
            text(a, "used")
        );
    }
    let tasks = list("tasks");
    let mut live_by_framework: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for t in &tasks {
        let st = text(t, "state");
        let terminal = drover_proto::v1::TaskState::from_str_name(&st)
            .is_some_and(drover_scheduler::driver::is_terminal);
        if !terminal {
            *live_by_framework
                .entry(text(t, "framework_id"))
                .or_default() += 1;
        }
        *by_state.entry(st).or_default() += 1;
    }
    let frameworks = list("frameworks");
    println!("\nframeworks: {}", frameworks.len());
    println!(
        "{:<38} {:<20} {:<12} {:>10}  STATE",
        "id", "name", "role", "live tasks"
    );
    for f in &frameworks {
        let id = text(f, "id");
        println!(
            "{:<38} {:<20} {:<12} {:>10}  {}",
            id,
            text(f, "name"),
            text(f, "role"),
            live_by_framework.get(&id).copied().unwrap_or(0),
            if f["torn_down"] == true {
                "torn down"
            } else {
                "active"
            }
        );
    }
    let states: Vec<String> = by_state.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("\ntasks: {} ({})", tasks.len(), states.join(", "));
}

fn print_membership(m: &MembershipReply) {
    println!("membership committed at log index {}:", m.log_index);
    for member in &m.members {
        println!(
            "  master {} at {} ({})",
            member.id,
            member.addr,
            if member.voter { "voter" } else { "learner" }
        );
    }
}

pub async fn add_master(client: &MasterClient, id: u64, addr: &str) -> Result<Exit, CliError> {
    eprintln!("adding master {id} at {addr}: joining as a learner, then promoting once caught up…");
    let m = client.add_master(id, addr).await?;
    print_membership(&m);
    Ok(Exit::Success)
}

pub async fn remove_master(client: &MasterClient, id: u64) -> Result<Exit, CliError> {
    let m = client.remove_master(id).await?;
    print_membership(&m);
    Ok(Exit::Success)
}

/// Hands leadership to master `to` (any caught-up voter when None), for a planned restart of
/// the current leader.
pub async fn transfer_leader(client: &MasterClient, to: Option<u64>) -> Result<Exit, CliError> {
    let before = client.leader_status().await?;
    eprintln!(
        "moving leadership away from master {} (term {}): writes pause until a new leader is elected…",
        before.leader_id, before.term
    );
    let (leader, term) = client.transfer_leadership(to.unwrap_or(0)).await?;
    println!("{}", serde_json::json!({"leader_id": leader, "term": term}));
    Ok(Exit::Success)
}
