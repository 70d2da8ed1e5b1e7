//! `drover task logs ID [--follow] [--stderr]`: a task's stdout (or stderr) read from its
//! sandbox through its agent's `/files/read`.
//!
//! Finding the file takes three answers: the scheduler's `/v2/info` (its framework id and its
//! masters), the masters' `/v1/state` (which agent runs the task, and that agent's address),
//! then the agent itself. The masters keep an ended task for a while, so the logs of a task
//! that just failed can still be read.

use std::io::Write;
use std::time::Duration;

use drover_chaos::http::Http;
use drover_scheduler::sandbox::SandboxFile;
use drover_tls::Role;
use serde_json::Value;

use super::apps::{Api, AppsError};

/// How often `--follow` asks the agent for more.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// Prints the task's file, then (with `follow`) what is appended to it until Ctrl-C.
pub(super) async fn logs(api: &Api, id: &str, follow: bool, stderr: bool) -> Result<(), AppsError> {
    let info = api.call(reqwest::Method::GET, "/v2/info", None).await?;
    let framework = info["frameworkId"].as_str().ok_or_else(|| {
        AppsError::Api("the scheduler has no framework id yet (it has not subscribed)".into())
    })?;
    let masters: Vec<String> = info["marathon_config"]["master"]
        .as_str()
        .and_then(|m| m.strip_prefix("drover://"))
        .map(|m| m.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if masters.is_empty() {
        return Err(AppsError::Api(
            "the scheduler's /v2/info names no masters (marathon_config.master)".into(),
        ));
    }
    let tls_error = |e: String| AppsError::Usage(format!("TLS: {e}"));
    let http = match &api.tls {
        None => Http::plain(),
        Some(t) => Http::tls(&t.client(&[Role::Master])).map_err(tls_error)?,
    };
    let agent = locate(&http, &masters, framework, id).await?;
    let name = if stderr { "stderr" } else { "stdout" };
    let sandbox = |e: drover_scheduler::sandbox::SandboxError| AppsError::Api(e.to_string());
    let to_agents = api.tls.as_ref().map(|t| t.client(&[Role::Agent]));
    let mut file =
        SandboxFile::new(&agent, framework, id, name, to_agents.as_ref()).map_err(sandbox)?;
    loop {
        let text = file.read_more().await.map_err(sandbox)?;
        if text.is_empty() {
            break;
        }
        write_out(&text)?;
    }
    if !follow {
        return Ok(());
    }
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut interrupt => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        match file.read_more().await {
            Ok(text) => write_out(&text)?,
            // The agent may restart while we follow: say so once per failure, keep going.
            Err(e) => eprintln!("drover: {e}; trying again"),
        }
    }
}

fn write_out(text: &str) -> Result<(), AppsError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| AppsError::Api(format!("writing to stdout: {e}")))
}

/// The address of the agent that runs (or ran) task `id` of `framework`, from the first master
/// whose registry names it (the leader's first).
async fn locate(
    http: &Http,
    masters: &[String],
    framework: &str,
    id: &str,
) -> Result<String, AppsError> {
    let mut order: Vec<String> = Vec::new();
    for m in masters {
        let leader = http.get_json(m, "/v1/leader").await;
        if let Some(addr) = leader
            .ok()
            .and_then(|l| l["leader_addr"].as_str().map(str::to_string))
        {
            order.push(addr);
            break;
        }
    }
    order.extend(masters.iter().cloned());
    let mut last = String::from("no master answered");
    for m in &order {
        let state = match http.get_json(m, "/v1/state").await {
            Ok(s) => s,
            Err(e) => {
                last = format!("{m}: {e}");
                continue;
            }
        };
        match agent_of(&state, framework, id) {
            Ok(addr) => return Ok(addr),
            Err(e) => last = e,
        }
    }
    Err(AppsError::Api(last))
}

/// The agent address `/v1/state` gives for task `id` of `framework`.
fn agent_of(state: &Value, framework: &str, id: &str) -> Result<String, String> {
    let tasks = state["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let task = tasks
        .iter()
        .find(|t| t["id"] == id && t["framework_id"] == framework)
        .ok_or_else(|| {
            format!(
                "the masters know no task {id} of framework {framework} (a wrong id, or it ended \
                 long enough ago to be forgotten)"
            )
        })?;
    let agent_id = task["agent_id"].as_str().unwrap_or_default();
    let agents = state["agents"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    agents
        .iter()
        .find(|a| a["id"] == agent_id)
        .and_then(|a| a["addr"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            format!("task {id} ran on agent {agent_id}, which the masters no longer list")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_of_a_task_is_read_from_the_registry() {
        let state = serde_json::json!({
            "agents": [{"id": "a1", "addr": "127.0.0.1:5051"}, {"id": "a2", "addr": "127.0.0.1:5053"}],
            "tasks": [
                {"id": "t", "framework_id": "other", "agent_id": "a1"},
                {"id": "t", "framework_id": "fw", "agent_id": "a2"},
                {"id": "lost", "framework_id": "fw", "agent_id": "gone"}
            ]
        });
        assert_eq!(agent_of(&state, "fw", "t").unwrap(), "127.0.0.1:5053");
        assert!(agent_of(&state, "fw", "nope")
            .unwrap_err()
            .contains("know no task"));
        assert!(agent_of(&state, "fw", "lost")
            .unwrap_err()
            .contains("no longer list"));
    }
}
