//! Mesos's v1 operator API on the leading master: `POST /api/v1` (alias `/api/v1/operator`,
//! where pymesos sends it), Mesos JSON or protobuf as the scheduler API.
//!
//! Reads are answered `200` from the applied registry: GET_HEALTH, GET_VERSION, GET_STATE,
//! GET_AGENTS, GET_FRAMEWORKS, GET_EXECUTORS, GET_TASKS, GET_ROLES, GET_MASTER,
//! GET_MAINTENANCE_STATUS. Changes go to the leader engine as Drover's own administration does:
//! DRAIN_AGENT (no new offers, the agent's tasks killed), DEACTIVATE_AGENT (no new offers, the
//! tasks left running), REACTIVATE_AGENT, MARK_AGENT_GONE and
//! TEARDOWN of a framework, answered `200` once committed. SUBSCRIBE streams SUBSCRIBED (the
//! state), then TASK_ADDED, TASK_UPDATED, AGENT_ADDED, AGENT_REMOVED, FRAMEWORK_ADDED,
//! FRAMEWORK_UPDATED and FRAMEWORK_REMOVED as the registry changes (each applied change is
//! compared with the one before), and a HEARTBEAT every few seconds; the stream ends when this
//! master stops leading. Other calls are answered `501` naming the call.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use drover_mesos::v1 as mesos;
use drover_mesos::v1::master::{call, event, response};
use futures::StreamExt as _;

use super::convert;
use super::usage::Usage;
use super::{ContentType, HttpError, MesosState};
use crate::api::http::MESOS_API_VERSION;
use crate::leader::Command;
use crate::registry::cluster::{
    AgentRecord, AgentState, Change, ClusterState, FrameworkRecord, TaskRecord,
};

/// How often an operator event stream carries a HEARTBEAT.
pub const OPERATOR_HEARTBEAT: Duration = Duration::from_secs(5);
/// Most operator event streams one master serves at once (503 beyond).
pub const MAX_OPERATOR_STREAMS: usize = 64;

fn time_info(ms: u64) -> mesos::TimeInfo {
    mesos::TimeInfo {
        nanoseconds: (ms as i64).saturating_mul(1_000_000),
    }
}

fn resources(r: &drover_resources::Resources) -> Vec<mesos::Resource> {
    convert::resources_to_mesos(&r.to_proto(), "*")
}

/// `m[key]` as Mesos resources.
fn resources_of(
    m: &HashMap<String, drover_resources::Resources>,
    key: &str,
) -> Vec<mesos::Resource> {
    resources(&Usage::of_key(m, key))
}

fn agent_view(a: &AgentRecord, u: &Usage) -> response::get_agents::Agent {
    let (_, port) = convert::split_host_port(&a.addr);
    let id = a.id.to_string();
    response::get_agents::Agent {
        agent_info: mesos::AgentInfo {
            hostname: a.hostname.clone(),
            port: Some(i32::from(port)),
            resources: resources(&a.total),
            attributes: convert::attributes_to_mesos(&a.attributes.to_proto()),
            id: Some(mesos::AgentId { value: id.clone() }),
        },
        active: a.state == AgentState::Active,
        deactivated: Some(matches!(
            a.state,
            AgentState::Draining | AgentState::Deactivated
        )),
        version: MESOS_API_VERSION.to_string(),
        pid: Some(drover_mesos::agent_pid(&a.addr)),
        registered_time: Some(time_info(a.registered_at_ms)),
        total_resources: resources(&a.total),
        allocated_resources: resources_of(&u.used_on, &id),
        offered_resources: resources_of(&u.offered_on, &id),
        drain_info: (a.state == AgentState::Draining).then(|| mesos::DrainInfo {
            state: mesos::DrainState::Draining as i32,
            config: mesos::DrainConfig::default(),
        }),
        ..Default::default()
    }
}

fn framework_info(f: &FrameworkRecord) -> mesos::FrameworkInfo {
    let mut capabilities = Vec::new();
    if f.partition_aware {
        capabilities.push(mesos::framework_info::Capability {
            r#type: Some(mesos::framework_info::capability::Type::PartitionAware as i32),
        });
    }
    mesos::FrameworkInfo {
        user: String::new(),
        name: f.name.clone(),
        id: Some(mesos::FrameworkId {
            value: f.id.to_string(),
        }),
        failover_timeout: Some(f.failover_timeout_ms as f64 / 1000.0),
        checkpoint: Some(true),
        roles: vec![f.role.to_string()],
        principal: (!f.principal.is_empty()).then(|| f.principal.clone()),
        capabilities,
        ..Default::default()
    }
}

fn framework_view(
    f: &FrameworkRecord,
    c: &ClusterState,
    u: &Usage,
) -> response::get_frameworks::Framework {
    let id = f.id.to_string();
    let offers = c
        .offers()
        .filter(|o| o.framework == f.id)
        .map(|o| {
            let offer = crate::leader::convert::offer_to_proto(o, c);
            convert::offer_to_mesos(&offer, f.role.as_str())
        })
        .collect();
    response::get_frameworks::Framework {
        framework_info: framework_info(f),
        active: !f.torn_down && u.is_connected(&id),
        connected: !f.torn_down && u.is_connected(&id),
        recovered: false,
        registered_time: Some(time_info(f.subscribed_at_ms)),
        offers,
        allocated_resources: resources_of(&u.used_by, &id),
        offered_resources: resources_of(&u.offered_by, &id),
        ..Default::default()
    }
}

/// A registry task as Mesos's v1 Task, with its statuses.
pub fn task_view(t: &TaskRecord) -> mesos::Task {
    let statuses: Vec<mesos::TaskStatus> = t
        .updates
        .iter()
        .map(|u| convert::status_to_mesos(&crate::leader::convert::status_to_proto(t, &u.update)))
        .collect();
    let latest = statuses.last().cloned();
    mesos::Task {
        name: t.spec.name.clone(),
        task_id: mesos::TaskId {
            value: t.spec.id.to_string(),
        },
        framework_id: mesos::FrameworkId {
            value: t.framework.to_string(),
        },
        agent_id: mesos::AgentId {
            value: t.agent.to_string(),
        },
        state: mesos::TaskState::from_str_name(t.state.mesos_name())
            .unwrap_or(mesos::TaskState::TaskUnknown) as i32,
        resources: resources(&t.spec.resources),
        status_update_state: latest.as_ref().map(|s| s.state),
        status_update_uuid: latest.and_then(|s| s.uuid),
        statuses,
        ..Default::default()
    }
}

fn get_agents(c: &ClusterState, u: &Usage) -> response::GetAgents {
    response::GetAgents {
        agents: c
            .agents()
            .filter(|a| a.state != AgentState::Gone)
            .map(|a| agent_view(a, u))
            .collect(),
        recovered_agents: vec![],
    }
}

fn get_frameworks(c: &ClusterState, u: &Usage) -> response::GetFrameworks {
    let (completed, live): (Vec<&FrameworkRecord>, Vec<_>) =
        c.frameworks().partition(|f| f.torn_down);
    let view =
        |fs: Vec<&FrameworkRecord>| fs.into_iter().map(|f| framework_view(f, c, u)).collect();
    let (live, completed) = (view(live), view(completed));
    #[allow(deprecated)]
    response::GetFrameworks {
        frameworks: live,
        completed_frameworks: completed,
        recovered_frameworks: vec![],
    }
}

fn get_tasks(c: &ClusterState) -> response::GetTasks {
    let mut out = response::GetTasks::default();
    for t in c.tasks() {
        let view = task_view(t);
        if t.state.is_terminal() {
            out.completed_tasks.push(view);
        } else if t.state == crate::registry::TaskState::Unreachable {
            out.unreachable_tasks.push(view);
        } else {
            out.tasks.push(view);
        }
    }
    out
}

fn get_state(c: &ClusterState, u: &Usage) -> response::GetState {
    response::GetState {
        get_tasks: Some(get_tasks(c)),
        get_executors: Some(response::GetExecutors::default()),
        get_frameworks: Some(get_frameworks(c, u)),
        get_agents: Some(get_agents(c, u)),
    }
}

fn get_roles(c: &ClusterState, u: &Usage) -> response::GetRoles {
    let mut roles: std::collections::BTreeMap<String, mesos::Role> = Default::default();
    for (role, weight) in c.role_weights() {
        roles.insert(
            role.to_string(),
            mesos::Role {
                name: role.to_string(),
                weight,
                ..Default::default()
            },
        );
    }
    for f in c.frameworks().filter(|f| !f.torn_down) {
        let r = roles
            .entry(f.role.to_string())
            .or_insert_with(|| mesos::Role {
                name: f.role.to_string(),
                weight: 1.0,
                ..Default::default()
            });
        r.frameworks.push(mesos::FrameworkId {
            value: f.id.to_string(),
        });
        r.resources.extend(resources_of(&u.used_by, f.id.as_str()));
    }
    response::GetRoles {
        roles: roles.into_values().collect(),
    }
}

fn get_maintenance_status(c: &ClusterState) -> response::GetMaintenanceStatus {
    response::GetMaintenanceStatus {
        status: mesos::maintenance::ClusterStatus {
            draining_machines: c
                .agents()
                .filter(|a| a.state == AgentState::Draining)
                .map(|a| mesos::maintenance::cluster_status::DrainingMachine {
                    id: mesos::MachineId {
                        hostname: Some(a.hostname.clone()),
                        ip: Some(convert::split_host_port(&a.addr).0.to_string()),
                    },
                })
                .collect(),
            down_machines: vec![],
        },
    }
}

fn answer(kind: response::Type) -> mesos::master::Response {
    mesos::master::Response {
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn encoded(content: ContentType, r: &mesos::master::Response) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content.media_type())],
        content.encode(r),
    )
        .into_response()
}

fn refused(field: &str, reason: impl std::fmt::Display) -> HttpError {
    HttpError::new(
        StatusCode::BAD_REQUEST,
        format!("Failed to validate master::Call: {field}: {reason}"),
    )
}

/// `POST /api/v1` and `/api/v1/operator`.
pub async fn handle(
    State(s): State<MesosState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serve(&s, uri.path(), &headers, &body).await {
        Ok(r) if r.extensions().get::<EventStream>().is_some() => r,
        Ok(r) => super::close_unless_ok(r),
        Err(e) => super::close_unless_ok(e.into_response()),
    }
}

async fn serve(
    s: &MesosState,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, HttpError> {
    if let Some(r) = s.not_leading(path) {
        return Ok(r);
    }
    let content = super::body_media(headers)?;
    let call: mesos::master::Call = content.decode(body)?;
    let accept = super::answer_media(headers)?;
    let kind = call
        .r#type
        .and_then(|t| call::Type::try_from(t).ok())
        .unwrap_or(call::Type::Unknown);
    let c = s.cluster();
    // What is used, offered and connected: only for the calls that show it.
    let usage = || async { Usage::of(&c, s.connected().await) };
    let mut r;
    match kind {
        call::Type::GetHealth => {
            r = answer(response::Type::GetHealth);
            r.get_health = Some(response::GetHealth { healthy: true });
        }
        call::Type::GetVersion => {
            r = answer(response::Type::GetVersion);
            r.get_version = Some(response::GetVersion {
                version_info: mesos::VersionInfo {
                    version: MESOS_API_VERSION.to_string(),
                    build_user: Some(format!("drover {}", env!("CARGO_PKG_VERSION"))),
                    ..Default::default()
                },
            });
        }
        call::Type::GetState => {
            r = answer(response::Type::GetState);
            r.get_state = Some(get_state(&c, &usage().await));
        }
        call::Type::GetAgents => {
            r = answer(response::Type::GetAgents);
            r.get_agents = Some(get_agents(&c, &usage().await));
        }
        call::Type::GetFrameworks => {
            r = answer(response::Type::GetFrameworks);
            r.get_frameworks = Some(get_frameworks(&c, &usage().await));
        }
        call::Type::GetExecutors => {
            // Drover runs no custom executors yet: each task has its own built-in one.
            r = answer(response::Type::GetExecutors);
            r.get_executors = Some(response::GetExecutors::default());
        }
        call::Type::GetTasks => {
            r = answer(response::Type::GetTasks);
            r.get_tasks = Some(get_tasks(&c));
        }
        call::Type::GetRoles => {
            r = answer(response::Type::GetRoles);
            r.get_roles = Some(get_roles(&c, &usage().await));
        }
        call::Type::GetMaster => {
            r = answer(response::Type::GetMaster);
            r.get_master = Some(response::GetMaster {
                master_info: Some(s.master_info()),
                start_time: Some(s.started_at_ms as f64 / 1000.0),
                elected_time: None,
            });
        }
        call::Type::GetMaintenanceStatus => {
            r = answer(response::Type::GetMaintenanceStatus);
            r.get_maintenance_status = Some(get_maintenance_status(&c));
        }
        call::Type::DrainAgent
        | call::Type::DeactivateAgent
        | call::Type::ReactivateAgent
        | call::Type::MarkAgentGone => {
            let (member, agent_id, state) = agent_call(&call, kind)?;
            set_agent_state(s, &format!("{member}.agent_id"), agent_id, state).await?;
            return Ok(StatusCode::OK.into_response());
        }
        call::Type::Teardown => {
            let t = call
                .teardown
                .as_ref()
                .ok_or_else(|| refused("teardown", "Expecting 'teardown' to be present"))?;
            let framework = crate::leader::convert::framework_id(
                "teardown.framework_id",
                &t.framework_id.value,
            )
            .map_err(|e| refused("teardown.framework_id", e.message()))?;
            s.leader
                .ask(|reply| Command::TeardownFramework { framework, reply })
                .await
                .map_err(|st| status_error(&st))?;
            return Ok(StatusCode::OK.into_response());
        }
        call::Type::Subscribe => return subscribe(s, accept, &c, &usage().await),
        call::Type::Unknown => {
            return Err(refused("type", "Expecting 'type' to be present and known"))
        }
        other => {
            return Err(HttpError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("{} is not supported by Drover", other.as_str_name()),
            ))
        }
    }
    Ok(encoded(accept, &r))
}

/// The HTTP error for a status the engine answered.
fn status_error(s: &tonic::Status) -> HttpError {
    let code = match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpError::new(code, s.message())
}

/// An agent maintenance call's member, agent id and the state it asks for.
fn agent_call(
    call: &mesos::master::Call,
    kind: call::Type,
) -> Result<(&'static str, &str, AgentState), HttpError> {
    let missing = |member: &str| refused(member, format!("Expecting '{member}' to be present"));
    match kind {
        call::Type::DrainAgent => {
            let d = call
                .drain_agent
                .as_ref()
                .ok_or_else(|| missing("drain_agent"))?;
            if d.mark_gone == Some(true) {
                return Err(refused(
                    "drain_agent.mark_gone",
                    "not supported: drain, then MARK_AGENT_GONE",
                ));
            }
            Ok(("drain_agent", &d.agent_id.value, AgentState::Draining))
        }
        call::Type::DeactivateAgent => {
            let a = call
                .deactivate_agent
                .as_ref()
                .ok_or_else(|| missing("deactivate_agent"))?;
            Ok((
                "deactivate_agent",
                &a.agent_id.value,
                AgentState::Deactivated,
            ))
        }
        call::Type::ReactivateAgent => {
            let a = call
                .reactivate_agent
                .as_ref()
                .ok_or_else(|| missing("reactivate_agent"))?;
            Ok(("reactivate_agent", &a.agent_id.value, AgentState::Active))
        }
        _ => {
            let a = call
                .mark_agent_gone
                .as_ref()
                .ok_or_else(|| missing("mark_agent_gone"))?;
            Ok(("mark_agent_gone", &a.agent_id.value, AgentState::Gone))
        }
    }
}

async fn set_agent_state(
    s: &MesosState,
    field: &str,
    id: &str,
    state: AgentState,
) -> Result<(), HttpError> {
    let agent =
        crate::leader::convert::agent_id(field, id).map_err(|e| refused(field, e.message()))?;
    s.leader
        .ask(|reply| Command::SetAgentState {
            agent,
            state,
            reply,
        })
        .await
        .map(drop)
        .map_err(|st| status_error(&st))
}

// ---- SUBSCRIBE ----

/// An operator event stream between records: the last state it told, and what it has to
/// send.
struct OperatorStream {
    s: MesosState,
    applied: tokio::sync::watch::Receiver<crate::raft::state_machine::AppliedState>,
    last: ClusterState,
    _permit: tokio::sync::OwnedSemaphorePermit,
    queued: std::collections::VecDeque<mesos::master::Event>,
}

/// Marks the answer that is an event stream (kept open, not closed after).
#[derive(Clone, Copy)]
struct EventStream;

fn event(kind: event::Type) -> mesos::master::Event {
    mesos::master::Event {
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

/// The events that take the registry from `old` to `new` (successive applied states: only
/// what differs is visited).
pub fn changes(
    old: &ClusterState,
    new: &ClusterState,
    connected: &HashSet<String>,
) -> Vec<mesos::master::Event> {
    let mut out = Vec::new();
    let mut usage: Option<Usage> = None;
    let gone = |a: &AgentRecord| a.state == AgentState::Gone;
    for change in old.agent_changes(new) {
        let (was, now) = match change {
            Change::Added(a) => (None, Some(a)),
            Change::Updated { old, new } => (Some(old), Some(new)),
            Change::Removed(a) => (Some(a), None),
        };
        match (was.filter(|a| !gone(a)), now.filter(|a| !gone(a))) {
            (None, Some(a)) => {
                let u = usage.get_or_insert_with(|| Usage::of(new, connected.clone()));
                let mut e = event(event::Type::AgentAdded);
                e.agent_added = Some(event::AgentAdded {
                    agent: agent_view(a, u),
                });
                out.push(e);
            }
            (Some(a), None) => {
                let mut e = event(event::Type::AgentRemoved);
                e.agent_removed = Some(event::AgentRemoved {
                    agent_id: mesos::AgentId {
                        value: a.id.to_string(),
                    },
                });
                out.push(e);
            }
            _ => {}
        }
    }
    for change in old.framework_changes(new) {
        let e = match change {
            Change::Added(f) if !f.torn_down => {
                let u = usage.get_or_insert_with(|| Usage::of(new, connected.clone()));
                let mut e = event(event::Type::FrameworkAdded);
                e.framework_added = Some(event::FrameworkAdded {
                    framework: framework_view(f, new, u),
                });
                e
            }
            Change::Updated { old: was, new: f } if f.torn_down && !was.torn_down => {
                let mut e = event(event::Type::FrameworkRemoved);
                e.framework_removed = Some(event::FrameworkRemoved {
                    framework_info: framework_info(f),
                });
                e
            }
            Change::Updated { old: was, new: f }
                if !f.torn_down && was.subscribed_at_ms != f.subscribed_at_ms =>
            {
                let u = usage.get_or_insert_with(|| Usage::of(new, connected.clone()));
                let mut e = event(event::Type::FrameworkUpdated);
                e.framework_updated = Some(event::FrameworkUpdated {
                    framework: framework_view(f, new, u),
                });
                e
            }
            _ => continue,
        };
        out.push(e);
    }
    for change in old.task_changes(new) {
        match change {
            Change::Added(t) => {
                let mut e = event(event::Type::TaskAdded);
                e.task_added = Some(event::TaskAdded { task: task_view(t) });
                out.push(e);
            }
            Change::Updated { old: was, new: t }
                if was.updates.len() != t.updates.len() || was.state != t.state =>
            {
                let Some(latest) = t.updates.last() else {
                    continue;
                };
                let status = convert::status_to_mesos(&crate::leader::convert::status_to_proto(
                    t,
                    &latest.update,
                ));
                let mut e = event(event::Type::TaskUpdated);
                e.task_updated = Some(event::TaskUpdated {
                    framework_id: mesos::FrameworkId {
                        value: t.framework.to_string(),
                    },
                    state: status.state,
                    status,
                });
                out.push(e);
            }
            // An acknowledgement only, or a task forgotten after it ended (pruned): Mesos has
            // no event for either.
            _ => {}
        }
    }
    out
}

fn subscribe(
    s: &MesosState,
    accept: ContentType,
    first: &ClusterState,
    u: &Usage,
) -> Result<Response, HttpError> {
    let Some(permit) = s.operator_streams.clone().try_acquire_owned().ok() else {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_OPERATOR_STREAMS} operator event streams at once"),
        ));
    };
    let mut subscribed = event(event::Type::Subscribed);
    subscribed.subscribed = Some(event::Subscribed {
        get_state: Some(get_state(first, u)),
        heartbeat_interval_seconds: Some(OPERATOR_HEARTBEAT.as_secs_f64()),
    });
    let record = move |e: &mesos::master::Event| {
        Bytes::from(drover_mesos::recordio::encode(&accept.encode(e)))
    };
    let opening = vec![record(&subscribed), record(&event(event::Type::Heartbeat))];
    let mut applied = s.applied.clone();
    applied.mark_unchanged();
    let state = OperatorStream {
        s: s.clone(),
        applied,
        last: first.clone(),
        _permit: permit,
        queued: std::collections::VecDeque::new(),
    };
    let rest = futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(next) = st.queued.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(record(&next)), st));
            }
            if st.s.raft.metrics().borrow().current_leader != Some(st.s.me) {
                return None;
            }
            tokio::select! {
                changed = st.applied.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let now = st.applied.borrow_and_update().registry.cluster().clone();
                    // Ask the engine who is connected only when frameworks changed.
                    let connected = if st.last.framework_changes(&now).next().is_some() {
                        st.s.connected().await
                    } else {
                        HashSet::new()
                    };
                    st.queued.extend(changes(&st.last, &now, &connected));
                    st.last = now;
                }
                _ = tokio::time::sleep(OPERATOR_HEARTBEAT) => {
                    st.queued.push_back(event(event::Type::Heartbeat));
                }
            }
        }
    });
    let body = futures::stream::iter(opening.into_iter().map(Ok)).chain(rest);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, accept.media_type())
        .extension(EventStream)
        .body(Body::from_stream(body))
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
