//! `drover agent drain|deactivate|reactivate|remove AGENT`: agent maintenance through the
//! leader.
//!
//! Drain stops offers on the agent and kills its tasks with their grace period; `--wait`
//! follows it until no task is left (asking again for the state the agent is in changes
//! nothing). Remove marks the agent GONE: its remaining tasks end as TASK_GONE_BY_OPERATOR
//! (TASK_LOST for frameworks that are not partition-aware) and it can never register under its id again (the agent kills what
//! it still runs and exits; removing its `meta/agent_id` starts it afresh under a new id).
//! Deactivate stops offers on the agent and leaves its tasks running. Reactivate undoes a
//! drain or a deactivation.

use std::time::{Duration, Instant};

use drover_client::MasterClient;
use drover_proto::master::AgentMaintenance;

use super::{CliError, Exit};

/// How often `drain --wait` asks how many tasks are left.
const POLL: Duration = Duration::from_millis(500);

pub async fn drain(
    client: &MasterClient,
    agent: &str,
    wait: Option<Duration>,
) -> Result<Exit, CliError> {
    let live = client
        .set_agent_state(agent, AgentMaintenance::Drain)
        .await?;
    eprintln!("agent {agent} is draining: no new offers; {live} live task(s) being killed");
    let Some(limit) = wait else {
        println!("{live}");
        return Ok(Exit::Success);
    };
    let started = Instant::now();
    let mut left = live;
    while left > 0 {
        if started.elapsed() >= limit {
            eprintln!("agent {agent}: {left} task(s) still live after {limit:?}");
            println!("{left}");
            return Ok(Exit::No);
        }
        tokio::time::sleep(POLL).await;
        // Draining again changes nothing and answers what is still live.
        let now = client
            .set_agent_state(agent, AgentMaintenance::Drain)
            .await?;
        if now != left {
            eprintln!("agent {agent}: {now} live task(s) left");
        }
        left = now;
    }
    eprintln!("agent {agent} is drained; `drover agent remove {agent}` takes it out for good");
    println!("0");
    Ok(Exit::Success)
}

pub async fn deactivate(client: &MasterClient, agent: &str) -> Result<Exit, CliError> {
    let live = client
        .set_agent_state(agent, AgentMaintenance::Deactivate)
        .await?;
    eprintln!("agent {agent} is deactivated: no new offers; its {live} live task(s) keep running");
    Ok(Exit::Success)
}

pub async fn reactivate(client: &MasterClient, agent: &str) -> Result<Exit, CliError> {
    client
        .set_agent_state(agent, AgentMaintenance::Reactivate)
        .await?;
    eprintln!("agent {agent} is active again: its resources are offered");
    Ok(Exit::Success)
}

pub async fn remove(client: &MasterClient, agent: &str) -> Result<Exit, CliError> {
    let live = client
        .set_agent_state(agent, AgentMaintenance::Remove)
        .await?;
    eprintln!("agent {agent} is removed (GONE); {live} live task(s) were left on it");
    Ok(Exit::Success)
}
