//! The driver's side of the masters' Mesos v1 scheduler HTTP API (`POST /api/v1/scheduler`),
//! pure: the driver's calls as Mesos calls, and Mesos events as the driver's events, so that
//! one driver (its subscription loop, its retry rules) runs over either API.
//!
//! What Mesos cannot say is lost on the way and documented here: a Mesos ACKNOWLEDGE names one
//! update (the driver sends one call per update), a TaskStatus has no exit code or signal,
//! and a Drover reason Mesos has no name for arrives as the Mesos name's lowercase
//! (`REASON_AGENT_REMOVED` → `agent_removed`) or not at all (it stays in the message).

use drover_mesos::v1 as mesos;
use drover_proto::v1;

use mesos::scheduler::call::{self, Type as CallType};
use mesos::scheduler::event::Type as EventType;

/// A Mesos event the driver cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Unreadable {
    pub field: &'static str,
    pub reason: String,
}

fn unreadable(field: &'static str, reason: impl Into<String>) -> Unreadable {
    Unreadable {
        field,
        reason: reason.into(),
    }
}

/// The member an event of its type must carry.
fn present<'a, T>(member: &'a Option<T>, field: &'static str) -> Result<&'a T, Unreadable> {
    member.as_ref().ok_or_else(|| unreadable(field, "missing"))
}

fn framework_id(id: &str) -> mesos::FrameworkId {
    mesos::FrameworkId {
        value: id.to_string(),
    }
}

fn agent_id(id: &str) -> mesos::AgentId {
    mesos::AgentId {
        value: id.to_string(),
    }
}

fn task_id(id: &str) -> mesos::TaskId {
    mesos::TaskId {
        value: id.to_string(),
    }
}

fn offer_ids(ids: &[String]) -> Vec<mesos::OfferId> {
    ids.iter()
        .map(|i| mesos::OfferId { value: i.clone() })
        .collect()
}

fn filters(refuse_seconds: Option<f64>) -> Option<mesos::Filters> {
    refuse_seconds.map(|s| mesos::Filters {
        refuse_seconds: Some(s),
    })
}

fn call(framework: &str, kind: CallType) -> mesos::scheduler::Call {
    mesos::scheduler::Call {
        framework_id: (!framework.is_empty()).then(|| framework_id(framework)),
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn caller_framework(c: &Option<v1::Caller>) -> &str {
    c.as_ref().map_or("", |c| c.framework_id.as_str())
}

// ---- Calls ----

/// SUBSCRIBE for the framework `f` (with its id when it fails over), as the system user
/// `user` (Mesos requires one; Drover runs tasks as the agent's user and ignores it).
pub fn subscribe(f: &v1::FrameworkInfo, user: &str) -> mesos::scheduler::Call {
    use mesos::framework_info::{capability, Capability};
    let mut c = call(&f.id, CallType::Subscribe);
    let capabilities = f
        .capabilities
        .iter()
        .filter(|c| **c == v1::FrameworkCapability::PartitionAware as i32)
        .map(|_| Capability {
            r#type: Some(capability::Type::PartitionAware as i32),
        })
        .collect();
    #[allow(deprecated)] // `role`: left unset; `roles` names the one role.
    let info = mesos::FrameworkInfo {
        user: user.to_string(),
        name: f.name.clone(),
        id: (!f.id.is_empty()).then(|| framework_id(&f.id)),
        failover_timeout: Some(f.failover_timeout_seconds),
        checkpoint: Some(true),
        roles: (!f.role.is_empty())
            .then(|| f.role.clone())
            .into_iter()
            .collect(),
        principal: (!f.principal.is_empty()).then(|| f.principal.clone()),
        capabilities,
        ..Default::default()
    };
    c.subscribe = Some(call::Subscribe {
        framework_info: info,
        suppressed_roles: vec![],
    });
    c
}

/// ACCEPT with one LAUNCH of the request's tasks.
pub fn accept(r: &v1::AcceptRequest) -> mesos::scheduler::Call {
    use mesos::offer::operation::{Launch, Type};
    let mut c = call(caller_framework(&r.caller), CallType::Accept);
    let operations = if r.launch.is_empty() {
        vec![]
    } else {
        vec![mesos::offer::Operation {
            r#type: Some(Type::Launch as i32),
            launch: Some(Launch {
                task_infos: r.launch.iter().map(task_info).collect(),
            }),
            ..Default::default()
        }]
    };
    c.accept = Some(call::Accept {
        offer_ids: offer_ids(&r.offer_ids),
        operations,
        filters: filters(r.refuse_seconds),
    });
    c
}

pub fn decline(r: &v1::DeclineRequest) -> mesos::scheduler::Call {
    let mut c = call(caller_framework(&r.caller), CallType::Decline);
    c.decline = Some(call::Decline {
        offer_ids: offer_ids(&r.offer_ids),
        filters: filters(r.refuse_seconds),
    });
    c
}

pub fn suppress(r: &v1::SuppressRequest) -> mesos::scheduler::Call {
    let mut c = call(caller_framework(&r.caller), CallType::Suppress);
    c.suppress = Some(call::Suppress { roles: vec![] });
    c
}

pub fn revive(r: &v1::ReviveRequest) -> mesos::scheduler::Call {
    let mut c = call(caller_framework(&r.caller), CallType::Revive);
    c.revive = Some(call::Revive { roles: vec![] });
    c
}

pub fn kill(r: &v1::KillRequest) -> mesos::scheduler::Call {
    let mut c = call(caller_framework(&r.caller), CallType::Kill);
    c.kill = Some(call::Kill {
        task_id: task_id(&r.task_id),
        agent_id: None,
        kill_policy: r.grace_seconds.map(kill_policy),
    });
    c
}

/// One ACKNOWLEDGE per update: Mesos has no batch form.
pub fn acknowledge(
    caller: &Option<v1::Caller>,
    agent: &str,
    ack: &v1::Acknowledgement,
) -> Result<mesos::scheduler::Call, Unreadable> {
    let uuid = uuid::Uuid::parse_str(&ack.uuid)
        .map_err(|e| unreadable("acknowledge.uuid", format!("{:?}: {e}", ack.uuid)))?;
    let mut c = call(caller_framework(caller), CallType::Acknowledge);
    c.acknowledge = Some(call::Acknowledge {
        agent_id: agent_id(agent),
        task_id: task_id(&ack.task_id),
        uuid: uuid.as_bytes().to_vec(),
    });
    Ok(c)
}

pub fn reconcile(r: &v1::ReconcileRequest) -> mesos::scheduler::Call {
    let mut c = call(caller_framework(&r.caller), CallType::Reconcile);
    let tasks = r
        .task_ids
        .iter()
        .map(|t| (t.as_str(), ""))
        .chain(
            r.tasks
                .iter()
                .map(|t| (t.task_id.as_str(), t.agent_id.as_str())),
        )
        .map(|(t, a)| call::reconcile::Task {
            task_id: task_id(t),
            agent_id: (!a.is_empty()).then(|| agent_id(a)),
        })
        .collect();
    c.reconcile = Some(call::Reconcile { tasks });
    c
}

pub fn teardown(r: &v1::TeardownRequest) -> mesos::scheduler::Call {
    call(caller_framework(&r.caller), CallType::Teardown)
}

fn kill_policy(grace_seconds: f64) -> mesos::KillPolicy {
    mesos::KillPolicy {
        grace_period: Some(mesos::DurationInfo {
            nanoseconds: (grace_seconds * 1e9) as i64,
        }),
    }
}

fn command(c: &v1::CommandInfo) -> mesos::CommandInfo {
    let mut variables: Vec<_> = c
        .environment
        .iter()
        .map(|(k, v)| mesos::environment::Variable {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    variables.sort_by(|a, b| a.name.cmp(&b.name));
    // A container's entrypoint arguments (no shell): Mesos says so with `shell: false`, the
    // arguments and no value.
    let shelled = c.arguments.is_empty();
    mesos::CommandInfo {
        value: shelled.then(|| c.shell.clone()),
        shell: Some(shelled),
        arguments: c.arguments.clone(),
        environment: (!variables.is_empty()).then_some(mesos::Environment { variables }),
        user: (!c.user.is_empty()).then(|| c.user.clone()),
        ..Default::default()
    }
}

/// A Drover task as a Mesos TaskInfo. `agent_id` is required by Mesos's schema but not read
/// by the master (the offers name the agent), so it is sent empty.
pub fn task_info(t: &v1::TaskInfo) -> mesos::TaskInfo {
    mesos::TaskInfo {
        name: t.name.clone(),
        task_id: task_id(&t.task_id),
        agent_id: agent_id(""),
        resources: drover_mesos::convert::resources_to_mesos(&t.resources, None),
        command: t.command.as_ref().map(command),
        health_check: t.health_check.as_ref().map(|h| mesos::HealthCheck {
            delay_seconds: Some(h.delay_seconds),
            interval_seconds: Some(h.interval_seconds),
            timeout_seconds: Some(h.timeout_seconds),
            consecutive_failures: Some(h.consecutive_failures),
            grace_period_seconds: Some(h.grace_period_seconds),
            r#type: Some(mesos::health_check::Type::Command as i32),
            command: h.command.as_ref().map(command),
            ..Default::default()
        }),
        kill_policy: (t.kill_grace_seconds > 0.0).then(|| kill_policy(t.kill_grace_seconds)),
        ..Default::default()
    }
}

// ---- Events ----

/// A Mesos event as the driver's. `stream_id` is the `Mesos-Stream-Id` of the subscription
/// (SUBSCRIBED carries it in Drover's event). `Ok(None)` for an event the driver does not use
/// (MESSAGE, FAILURE, inverse offers, operation updates, one of a type it does not know).
pub fn event(
    e: &mesos::scheduler::Event,
    stream_id: &str,
) -> Result<Option<v1::Event>, Unreadable> {
    use v1::event::Event as E;
    let kind = e.r#type.and_then(|t| EventType::try_from(t).ok());
    let out = match kind {
        Some(EventType::Subscribed) => {
            let s = present(&e.subscribed, "subscribed")?;
            let master_id = match &s.master_info {
                Some(m) => m.id.parse().map_err(|_| {
                    unreadable(
                        "subscribed.master_info.id",
                        format!("{:?}: not a number", m.id),
                    )
                })?,
                None => 0,
            };
            E::Subscribed(v1::Subscribed {
                framework_id: s.framework_id.value.clone(),
                stream_id: stream_id.to_string(),
                heartbeat_interval_seconds: s.heartbeat_interval_seconds.unwrap_or(0.0),
                master_id,
            })
        }
        Some(EventType::Offers) => E::Offers(v1::Offers {
            offers: present(&e.offers, "offers")?
                .offers
                .iter()
                .map(offer)
                .collect(),
        }),
        Some(EventType::Rescind) => E::Rescind(v1::Rescind {
            offer_id: present(&e.rescind, "rescind")?.offer_id.value.clone(),
        }),
        Some(EventType::Update) => E::Update(v1::Update {
            status: Some(status(&present(&e.update, "update")?.status)?),
        }),
        Some(EventType::Heartbeat) => E::Heartbeat(v1::Heartbeat {}),
        Some(EventType::Error) => E::Error(v1::Error {
            message: present(&e.error, "error")?.message.clone(),
        }),
        _ => return Ok(None),
    };
    Ok(Some(v1::Event { event: Some(out) }))
}

/// A Mesos offer as Drover's: SCALAR and RANGES resources (the driver reads no other kind),
/// SCALAR and TEXT attributes, and the agent's address from its URL.
pub fn offer(o: &mesos::Offer) -> v1::Offer {
    let agent_addr = o
        .url
        .as_ref()
        .map(|u| {
            let host = u
                .address
                .ip
                .clone()
                .or_else(|| u.address.hostname.clone())
                .unwrap_or_default();
            format!("{host}:{}", u.address.port)
        })
        .unwrap_or_default();
    v1::Offer {
        id: o.id.value.clone(),
        framework_id: o.framework_id.value.clone(),
        agent_id: o.agent_id.value.clone(),
        hostname: o.hostname.clone(),
        resources: drover_mesos::convert::resources_from_mesos(&o.resources),
        attributes: drover_mesos::convert::attributes_from_mesos(&o.attributes),
        expires_at_ms: 0,
        agent_addr,
        executor_ids: o.executor_ids.iter().map(|e| e.value.clone()).collect(),
    }
}

/// A Mesos TaskStatus as Drover's: the uuid's 16 bytes as Drover's text form, so that the
/// acknowledgement names the same update.
pub fn status(s: &mesos::TaskStatus) -> Result<v1::TaskStatus, Unreadable> {
    use mesos::task_status::Source;
    let uuid = match &s.uuid {
        Some(b) => uuid::Uuid::from_slice(b)
            .map_err(|_| unreadable("update.status.uuid", format!("{} bytes, not 16", b.len())))?
            .to_string(),
        None => String::new(),
    };
    let state = mesos::TaskState::try_from(s.state)
        .ok()
        .and_then(|m| v1::TaskState::from_str_name(m.as_str_name()))
        .ok_or_else(|| unreadable("update.status.state", format!("{}: unknown", s.state)))?;
    let source = match s.source.and_then(|x| Source::try_from(x).ok()) {
        Some(Source::Executor) => v1::StatusSource::SourceExecutor,
        Some(Source::Agent) => v1::StatusSource::SourceAgent,
        Some(Source::Master) => v1::StatusSource::SourceMaster,
        None => v1::StatusSource::SourceUnspecified,
    };
    let reason = drover_mesos::convert::reason_from_mesos(s.reason, s.healthy);
    Ok(v1::TaskStatus {
        task_id: s.task_id.value.clone(),
        agent_id: s
            .agent_id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default(),
        state: state as i32,
        uuid,
        source: source as i32,
        reason,
        message: s.message.clone().unwrap_or_default(),
        exit_code: None,
        signal: None,
        timestamp_ms: s
            .timestamp
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map_or(0, |t| (t * 1000.0).round() as u64),
        healthy: s.healthy,
        executor_id: s
            .executor_id
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
        serde_json::from_slice(&drover_mesos::to_ascii_json(v)).expect("json")
    }

    fn caller() -> Option<v1::Caller> {
        Some(v1::Caller {
            framework_id: "fw".into(),
            stream_id: "s".into(),
        })
    }

    #[test]
    fn an_accept_is_one_launch_in_mesos_json() {
        let task = v1::TaskInfo {
            task_id: "t1".into(),
            name: "t".into(),
            resources: vec![
                v1::Resource {
                    name: "cpus".into(),
                    value: Some(v1::resource::Value::Scalar(0.5)),
                },
                v1::Resource {
                    name: "ports".into(),
                    value: Some(v1::resource::Value::Ranges(v1::Ranges {
                        ranges: vec![v1::ValueRange {
                            begin: 31000,
                            end: 31001,
                        }],
                    })),
                },
            ],
            command: Some(v1::CommandInfo {
                shell: "echo hi".into(),
                environment: [("K".to_string(), "v".to_string())].into(),
                ..Default::default()
            }),
            kill_grace_seconds: 2.5,
            health_check: None,
            ..Default::default()
        };
        let c = accept(&v1::AcceptRequest {
            caller: caller(),
            offer_ids: vec!["o1".into()],
            launch: vec![task],
            refuse_seconds: Some(1.0),
        });
        let j = json(&c);
        assert_eq!(j["type"], "ACCEPT");
        assert_eq!(j["framework_id"]["value"], "fw");
        assert_eq!(j["accept"]["offer_ids"][0]["value"], "o1");
        assert_eq!(j["accept"]["filters"]["refuse_seconds"], 1.0);
        let op = &j["accept"]["operations"][0];
        assert_eq!(op["type"], "LAUNCH");
        let t = &op["launch"]["task_infos"][0];
        assert_eq!(t["task_id"]["value"], "t1");
        assert_eq!(t["command"]["value"], "echo hi");
        assert_eq!(t["command"]["environment"]["variables"][0]["name"], "K");
        assert_eq!(t["command"]["shell"], true);
        // A container's entrypoint arguments: no value, no shell.
        let args = command(&v1::CommandInfo {
            arguments: vec!["echo".into(), "$X".into()],
            ..Default::default()
        });
        let a = json(&args);
        assert_eq!(a["shell"], false, "{a}");
        assert_eq!(a["arguments"][1], "$X", "{a}");
        assert!(a.get("value").is_none_or(|v| v.is_null()), "{a}");
        assert_eq!(
            t["kill_policy"]["grace_period"]["nanoseconds"],
            2_500_000_000i64
        );
        assert_eq!(t["resources"][0]["type"], "SCALAR");
        assert_eq!(t["resources"][1]["ranges"]["range"][0]["end"], 31001);
    }

    #[test]
    fn an_acknowledgement_carries_the_uuid_bytes_and_the_agent() {
        let u = uuid::Uuid::new_v4();
        let c = acknowledge(
            &caller(),
            "a1",
            &v1::Acknowledgement {
                task_id: "t1".into(),
                uuid: u.to_string(),
            },
        )
        .unwrap();
        let a = c.acknowledge.unwrap();
        assert_eq!(
            (a.agent_id.value.as_str(), a.uuid.as_slice()),
            ("a1", &u.as_bytes()[..])
        );
        let bad = v1::Acknowledgement {
            task_id: "t1".into(),
            uuid: "nope".into(),
        };
        assert_eq!(
            acknowledge(&caller(), "a1", &bad).unwrap_err().field,
            "acknowledge.uuid"
        );
    }

    #[test]
    fn a_subscribe_names_the_role_capability_and_id() {
        let c = subscribe(
            &v1::FrameworkInfo {
                id: "fw".into(),
                name: "n".into(),
                role: "web".into(),
                principal: String::new(),
                failover_timeout_seconds: 60.0,
                capabilities: vec![v1::FrameworkCapability::PartitionAware as i32],
            },
            "u",
        );
        let j = json(&c);
        assert_eq!(j["subscribe"]["framework_info"]["user"], "u");
        assert_eq!(j["type"], "SUBSCRIBE");
        let f = &j["subscribe"]["framework_info"];
        assert_eq!(f["id"]["value"], "fw");
        assert_eq!(f["roles"][0], "web");
        assert_eq!(f["capabilities"][0]["type"], "PARTITION_AWARE");
        assert_eq!(f["failover_timeout"], 60.0);
    }

    fn event_of(j: serde_json::Value) -> Option<v1::Event> {
        let e: mesos::scheduler::Event =
            drover_mesos::from_json(j.to_string().as_bytes()).expect("an event");
        event(&e, "stream-1").expect("readable")
    }

    #[test]
    fn mesos_events_read_as_the_drivers() {
        // As the master writes them (Mesos's documented shapes).
        let e = event_of(serde_json::json!({"type": "SUBSCRIBED", "subscribed": {
            "framework_id": {"value": "fw"}, "heartbeat_interval_seconds": 15,
            "master_info": {"id": "2", "ip": 16777343, "port": 5050}}}));
        let Some(v1::event::Event::Subscribed(s)) = e.and_then(|e| e.event) else {
            panic!("SUBSCRIBED")
        };
        assert_eq!(
            (s.framework_id.as_str(), s.stream_id.as_str(), s.master_id),
            ("fw", "stream-1", 2)
        );
        assert_eq!(s.heartbeat_interval_seconds, 15.0);

        let e = event_of(serde_json::json!({"type": "OFFERS", "offers": {"offers": [{
            "id": {"value": "o1"}, "framework_id": {"value": "fw"}, "agent_id": {"value": "a1"},
            "hostname": "h", "url": {"scheme": "http", "address": {"ip": "127.0.0.1", "port": 5051}},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, "role": "*"},
                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 9}]}},
                {"name": "disks", "type": "SET", "set": {"item": ["x"]}}],
            "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": "r1"}}]}]}}));
        let Some(v1::event::Event::Offers(o)) = e.and_then(|e| e.event) else {
            panic!("OFFERS")
        };
        let o = &o.offers[0];
        assert_eq!((o.id.as_str(), o.agent_id.as_str()), ("o1", "a1"));
        assert_eq!(o.agent_addr, "127.0.0.1:5051");
        assert_eq!(o.resources.len(), 2, "the SET resource is not Drover's");
        assert_eq!(
            o.attributes[0].value,
            Some(v1::attribute::Value::Text("r1".into()))
        );

        let u = uuid::Uuid::new_v4();
        let e = event_of(serde_json::json!({"type": "UPDATE", "update": {"status": {
            "task_id": {"value": "t1"}, "state": "TASK_GONE", "reason": "REASON_RECONCILIATION",
            "source": "SOURCE_MASTER", "agent_id": {"value": "a1"}, "timestamp": 1700000000.123,
            "uuid": base64_of(u.as_bytes())}}}));
        let Some(v1::event::Event::Update(v1::Update { status: Some(s) })) =
            e.and_then(|e| e.event)
        else {
            panic!("UPDATE")
        };
        assert_eq!(s.state, v1::TaskState::TaskGone as i32);
        assert_eq!(s.reason, "reconciliation");
        assert_eq!(s.uuid, u.to_string());
        assert_eq!(s.source, v1::StatusSource::SourceMaster as i32);
        assert_eq!(s.timestamp_ms, 1_700_000_000_123);

        let e = event_of(serde_json::json!({"type": "UPDATE", "update": {"status": {
            "task_id": {"value": "t1"}, "state": "TASK_RUNNING", "healthy": false,
            "reason": "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"}}}));
        let Some(v1::event::Event::Update(v1::Update { status: Some(s) })) =
            e.and_then(|e| e.event)
        else {
            panic!("UPDATE")
        };
        assert_eq!(s.reason, drover_model::health::REASON_UNHEALTHY);
        assert!(s.uuid.is_empty());

        assert!(event_of(serde_json::json!({"type": "FAILURE", "failure": {}})).is_none());
        assert!(matches!(
            event_of(serde_json::json!({"type": "HEARTBEAT"})).and_then(|e| e.event),
            Some(v1::event::Event::Heartbeat(_))
        ));
    }

    #[test]
    fn a_short_uuid_is_unreadable() {
        let e: mesos::scheduler::Event = drover_mesos::from_json(
            br#"{"type":"UPDATE","update":{"status":{"task_id":{"value":"t"},"state":"TASK_RUNNING","uuid":"AAEC"}}}"#,
        )
        .unwrap();
        assert_eq!(event(&e, "s").unwrap_err().field, "update.status.uuid");
        let bare: mesos::scheduler::Event =
            drover_mesos::from_json(br#"{"type":"UPDATE"}"#).unwrap();
        assert_eq!(event(&bare, "s").unwrap_err().field, "update");
    }

    fn base64_of(b: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    }
}
