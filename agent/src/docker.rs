//! The agent's link to the local Docker engine (through `bollard`): whether the engine answers
//! (the agent advertises `containerizers: docker,command` only then), how Drover names and
//! labels the containers it starts, and finding and removing them by label (recovery, cleanup,
//! garbage collection).
//!
//! Owns the engine connection settings ([`DockerEngine`], passed to each executor in its
//! `task.json`) and the labels: every container Drover starts carries [`LABEL_AGENT`],
//! [`LABEL_FRAMEWORK`] and [`LABEL_TASK`], and nothing without them is ever touched. The
//! executor's side (create, start, logs, wait, stop) is in [`crate::executor::container`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use drover_model::container::DockerPolicy;
use serde::{Deserialize, Serialize};

/// Label naming the agent that started a container.
pub const LABEL_AGENT: &str = "drover.agent_id";
/// Label naming the framework of the container's task.
pub const LABEL_FRAMEWORK: &str = "drover.framework_id";
/// Label naming the container's task.
pub const LABEL_TASK: &str = "drover.task_id";

/// Default engine socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// How long the agent waits for the engine to answer at start.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any one engine call that is not a stream (create, inspect, remove).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach the engine and what it may do: the agent's settings, written into each
/// container task's `task.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerEngine {
    /// The engine's Unix socket.
    pub socket: PathBuf,
    pub policy: DockerPolicy,
}

/// The engine could not be reached or refused a call.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    #[error("the Docker engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Engine(String),
}

/// Describes an engine error by its message (the engine's words for a server error).
pub fn engine_error(e: bollard::errors::Error) -> DockerError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Engine(format!("{message} (HTTP {status_code})")),
        other => DockerError::Engine(other.to_string()),
    }
}

/// Whether `e` is the engine's 404 (no such container or image).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `e` is the engine's 409 (a name in use, a container already stopping).
pub fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// A client for the engine at `socket`, speaking the engine's API version when it is older
/// than the client's.
pub async fn connect(socket: &Path) -> Result<Docker, DockerError> {
    let unreachable = |reason: String| DockerError::Unreachable {
        socket: socket.display().to_string(),
        reason,
    };
    let path = socket
        .to_str()
        .ok_or_else(|| unreachable("the path is not UTF-8".into()))?;
    let docker =
        Docker::connect_with_unix(path, CALL_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(PROBE_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(DockerError::Timeout(PROBE_TIMEOUT)),
    }
}

/// Asks the engine at `socket` for its version: `Ok(version)` when it answers.
pub async fn probe(socket: &Path) -> Result<String, DockerError> {
    let docker = connect(socket).await?;
    match tokio::time::timeout(PROBE_TIMEOUT, docker.version()).await {
        Ok(Ok(v)) => Ok(v.version.unwrap_or_else(|| "unknown".into())),
        Ok(Err(e)) => Err(engine_error(e)),
        Err(_) => Err(DockerError::Timeout(PROBE_TIMEOUT)),
    }
}

/// The container name of a task: `drover-<task id>` (`:` is not allowed in names).
pub fn container_name(task_id: &str) -> String {
    format!("drover-{}", task_id.replace(':', "_"))
}

/// The labels of a task's container.
pub fn labels(agent: &str, framework: &str, task: &str) -> HashMap<String, String> {
    [
        (LABEL_AGENT, agent),
        (LABEL_FRAMEWORK, framework),
        (LABEL_TASK, task),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A container Drover started, as listed by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub id: String,
    pub agent: String,
    pub framework: String,
    pub task: String,
    pub running: bool,
}

/// Every container (running or not) labelled with this agent's id, and, when given, this
/// framework and task.
pub async fn list(
    docker: &Docker,
    agent: &str,
    task: Option<(&str, &str)>,
) -> Result<Vec<Labelled>, DockerError> {
    let mut labels = vec![(LABEL_AGENT, agent)];
    if let Some((framework, task)) = task {
        labels.push((LABEL_FRAMEWORK, framework));
        labels.push((LABEL_TASK, task));
    }
    list_labelled(docker, &labels).await
}

/// Every container Drover started (running or not) that carries each of `labels`
/// (`key`, `value`): e.g. one framework's, by [`LABEL_FRAMEWORK`].
pub async fn list_labelled(
    docker: &Docker,
    labels: &[(&str, &str)],
) -> Result<Vec<Labelled>, DockerError> {
    let label_filters = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let filters: HashMap<String, Vec<String>> = [("label".to_string(), label_filters)].into();
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    let listed = tokio::time::timeout(CALL_TIMEOUT, docker.list_containers(Some(options)))
        .await
        .map_err(|_| DockerError::Timeout(CALL_TIMEOUT))?
        .map_err(engine_error)?;
    Ok(listed
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            Some(Labelled {
                id: c.id?,
                agent: labels.get(LABEL_AGENT)?.clone(),
                framework: labels.get(LABEL_FRAMEWORK)?.clone(),
                task: labels.get(LABEL_TASK)?.clone(),
                running: matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                ),
            })
        })
        .collect())
}

/// Removes a container, stopping it first if it runs (`force`); one already gone is fine.
pub async fn remove(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match tokio::time::timeout(CALL_TIMEOUT, docker.remove_container(id, Some(options))).await {
        Err(_) => Err(DockerError::Timeout(CALL_TIMEOUT)),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if is_not_found(&e) => Ok(()),
        // Removal already under way (a concurrent cleanup).
        Ok(Err(e)) if is_conflict(&e) => Ok(()),
        Ok(Err(e)) => Err(engine_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_say_whose_container_it_is() {
        assert_eq!(container_name("web.1:a"), "drover-web.1_a");
        let l = labels("a1", "f1", "t1");
        assert_eq!(l[LABEL_AGENT], "a1");
        assert_eq!(l[LABEL_FRAMEWORK], "f1");
        assert_eq!(l[LABEL_TASK], "t1");
    }
}
