use drover_resources::Attributes;

use super::*;
use crate::marathon::app::parse_app;

const T0: u64 = 1_000_000;

fn record(body: &str, version: u64) -> AppRecord {
    let mut app = parse_app(body.as_bytes()).unwrap();
    app.version = Some(Timestamp(version));
    AppRecord {
        app,
        config_version: Timestamp(version),
    }
}

fn offer(n: u32, host: &str, resources: &str) -> Offer {
    Offer {
        id: OfferId::new(format!("offer-{n}")),
        agent_id: AgentId::new(format!("agent-{host}")),
        hostname: host.to_string(),
        resources: resources.parse().unwrap(),
        attributes: Attributes::default(),
        expires_at_ms: 0,
        agent_addr: String::new(),
        executor_ids: Vec::new(),
    }
}

const BIG: &str = "cpus:8;mem:8192;disk:1000;ports:[31000-31100]";

fn status(task: &str, state: TaskState, uuid: &str) -> TaskStatus {
    TaskStatus {
        task_id: task.to_string(),
        agent_id: "agent-h1".into(),
        state: state as i32,
        uuid: uuid.to_string(),
        ..Default::default()
    }
}

/// An engine with app `body` created at T0.
fn engine_with(body: &str) -> (Engine, PathId, Vec<Effect>) {
    let r = record(body, T0);
    let id = r.app.id.clone();
    let d = Deployment::plan(&id, None, Some(r.app.clone()), Timestamp(T0), true);
    let mut e = Engine::default();
    let fx = e.app_changed(r, d, T0);
    (e, id, fx)
}

fn launched(fx: &[Effect]) -> Vec<(Instance, TaskInfo)> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Launch { launches, .. } => Some(launches.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn killed(fx: &[Effect]) -> Vec<TaskId> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Kill { task_id, .. } | Effect::KillTask { task_id } => Some(task_id.clone()),
            _ => None,
        })
        .collect()
}

fn events(fx: &[Effect]) -> Vec<&'static str> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Event(e) => Some(e.kind),
            _ => None,
        })
        .collect()
}

/// Reports every task of `launches` in `state`; returns the effects.
fn report(e: &mut Engine, tasks: &[TaskId], state: TaskState, now: u64) -> Vec<Effect> {
    tasks
        .iter()
        .flat_map(|t| e.update(&status(t.as_str(), state, "u"), now))
        .collect()
}

fn task_ids(l: &[(Instance, TaskInfo)]) -> Vec<TaskId> {
    l.iter()
        .map(|(_, t)| TaskId::new(t.task_id.clone()))
        .collect()
}

#[test]
fn an_app_is_launched_on_offers_and_its_deployment_finishes_when_all_run() {
    let (mut e, id, fx) =
        engine_with(r#"{"id": "/web", "cmd": "sleep 100", "instances": 3, "cpus": 1, "mem": 64}"#);
    assert!(fx.contains(&Effect::Revive), "work arrived: {fx:?}");
    assert_eq!(
        events(&fx),
        vec![
            "deployment_info",
            "deployment_step_success",
            "deployment_info"
        ]
    );
    let fx = e.offers(&[offer(1, "h1", BIG)], T0 + 10);
    let l = launched(&fx);
    assert_eq!(l.len(), 3, "one offer takes all three: {fx:?}");
    assert!(fx.contains(&Effect::Suppress), "nothing else waits");
    let (i, task) = &l[0];
    assert_eq!(i.condition, Condition::Provisioned);
    assert_eq!(i.incarnation, 1);
    assert!(task.task_id.ends_with("._app.1"));
    let env = &task.command.as_ref().unwrap().environment;
    assert_eq!(env["MARATHON_APP_ID"], "/web");
    assert_eq!(
        env["PORT0"],
        i.placed.as_ref().unwrap().ports[0].to_string()
    );
    let ports: BTreeSet<u64> = l
        .iter()
        .map(|(i, _)| i.placed.as_ref().unwrap().ports[0])
        .collect();
    assert_eq!(ports.len(), 3, "each instance its own host port");
    assert_eq!(
        e.app_view(e.app(&id).unwrap(), false).counts.tasks_staged,
        3
    );
    let tasks = task_ids(&l);
    let fx = report(&mut e, &tasks[..2], TaskState::TaskRunning, T0 + 20);
    assert!(e.deployment_of(&id).is_some(), "two of three running");
    assert!(fx.iter().any(|f| matches!(f, Effect::Acknowledge(_))));
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Persist(i) if i.started_at.is_some())));
    let fx = report(&mut e, &tasks[2..], TaskState::TaskRunning, T0 + 30);
    assert!(events(&fx).contains(&"deployment_success"), "{fx:?}");
    assert!(e.deployment_of(&id).is_none());
    let view = e.app_view(e.app(&id).unwrap(), true);
    assert_eq!(view.counts.tasks_running, 3);
    assert_eq!(view.tasks.as_ref().unwrap().len(), 3);
    assert!(view.tasks.unwrap().iter().all(|t| t.started_at.is_some()));
}

fn running_app(body: &str) -> (Engine, PathId, Vec<TaskId>) {
    let (mut e, id, _) = engine_with(body);
    let l = launched(&e.offers(&[offer(1, "h1", BIG)], T0 + 10));
    let tasks = task_ids(&l);
    report(&mut e, &tasks, TaskState::TaskRunning, T0 + 20);
    assert!(e.deployment_of(&id).is_none());
    (e, id, tasks)
}

fn change(
    e: &mut Engine,
    id: &PathId,
    now: u64,
    f: impl FnOnce(&mut AppRecord) -> bool,
) -> Vec<Effect> {
    let mut r = e.app(id).unwrap().clone();
    let original = r.app.clone();
    let config = f(&mut r);
    r.app.version = Some(Timestamp(now));
    if config {
        r.config_version = Timestamp(now);
    }
    let d = Deployment::plan(
        id,
        Some(original),
        Some(r.app.clone()),
        Timestamp(now),
        config,
    );
    e.app_changed(r, d, now)
}

#[test]
fn scaling_down_stops_the_youngest_and_forgets_them_once_killed() {
    let (mut e, id, _) =
        engine_with(r#"{"id": "/web", "cmd": "x", "instances": 3, "cpus": 1, "mem": 64}"#);
    // Staged one by one, so they have distinct ages.
    let mut tasks = Vec::new();
    for n in 0..3 {
        let l = launched(&e.offers(
            &[offer(n, "h1", "cpus:1;mem:64;ports:[31000-31010]")],
            T0 + n as u64,
        ));
        tasks.extend(task_ids(&l));
    }
    report(&mut e, &tasks, TaskState::TaskRunning, T0 + 20);
    let fx = change(&mut e, &id, T0 + 100, |r| {
        r.app.instances = 1;
        false
    });
    let mut k = killed(&fx);
    k.sort();
    let mut youngest = tasks[1..].to_vec();
    youngest.sort();
    assert_eq!(k, youngest, "the two staged last go");
    assert!(fx
        .iter()
        .any(|f| matches!(f, Effect::Kill { instance, .. } if instance.goal == Goal::Stopped)));
    let fx = report(&mut e, &k, TaskState::TaskKilled, T0 + 200);
    assert_eq!(
        fx.iter().filter(|f| matches!(f, Effect::Forget(_))).count(),
        2
    );
    assert!(events(&fx).contains(&"deployment_success"));
    assert_eq!(e.instances_of(&id).count(), 1);
    // A kill is asked again while no terminal update came.
    let fx = change(&mut e, &id, T0 + 300, |r| {
        r.app.instances = 0;
        false
    });
    assert_eq!(killed(&fx), vec![tasks[0].clone()]);
    assert!(killed(&e.tick(T0 + 301)).is_empty());
    assert_eq!(
        killed(&e.tick(T0 + 300 + KILL_RETRY_MS)),
        vec![tasks[0].clone()]
    );
}

#[test]
fn a_failing_task_is_relaunched_as_its_next_incarnation_after_the_backoff() {
    let (mut e, id, tasks) = running_app(
        r#"{"id": "/web", "cmd": "x", "instances": 1, "backoffSeconds": 10, "backoffFactor": 2}"#,
    );
    let fx = report(&mut e, &tasks, TaskState::TaskFailed, T0 + 1000);
    assert!(!fx.contains(&Effect::Revive), "held back: no offers wanted");
    assert!(launched(&e.offers(&[offer(2, "h1", BIG)], T0 + 2000)).is_empty());
    let queue = e.queue(T0 + 2000);
    assert_eq!(queue[0].0.count, 1);
    assert_eq!(queue[0].0.delay.time_left_seconds, 9);
    let fx = e.tick(T0 + 11_000);
    assert!(fx.contains(&Effect::Revive));
    let l = launched(&e.offers(&[offer(3, "h1", BIG)], T0 + 11_000));
    assert_eq!(l.len(), 1);
    let (before, _) = InstanceId::of_task(tasks[0].as_str()).unwrap();
    assert_eq!(l[0].0.id, before, "the same instance");
    assert_eq!(l[0].0.incarnation, 2);
    let failure = e
        .app_view(e.app(&id).unwrap(), true)
        .last_task_failure
        .unwrap();
    assert_eq!(failure.task_id, tasks[0].as_str());
    assert_eq!(failure.state, "TASK_FAILED");
    // The second failure doubles the delay.
    report(&mut e, &task_ids(&l), TaskState::TaskFailed, T0 + 12_000);
    assert_eq!(e.queue(T0 + 12_000)[0].0.delay.time_left_seconds, 20);
    // A task of an older incarnation that still runs is killed.
    let fx = e.update(
        &status(tasks[0].as_str(), TaskState::TaskRunning, ""),
        T0 + 13_000,
    );
    assert_eq!(killed(&fx), vec![tasks[0].clone()]);
}

#[test]
fn unknown_tasks_are_killed_and_acknowledged() {
    let (mut e, _, _) = running_app(r#"{"id": "/web", "cmd": "x"}"#);
    let fx = e.update(
        &status("stray.instance-1._app.1", TaskState::TaskRunning, "u1"),
        T0,
    );
    assert!(fx.iter().any(|f| matches!(f, Effect::Acknowledge(_))));
    assert_eq!(killed(&fx), vec![TaskId::new("stray.instance-1._app.1")]);
    let fx = e.update(&status("whatever", TaskState::TaskFinished, "u2"), T0);
    assert!(killed(&fx).is_empty(), "ended already");
}

#[test]
fn a_restart_at_both_limits_replaces_one_instance_at_a_time() {
    let (mut e, id, old) = running_app(
        r#"{"id": "/web", "cmd": "x", "instances": 2, "cpus": 1, "mem": 64,
            "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}}"#,
    );
    let fx = change(&mut e, &id, T0 + 100, |r| {
        r.app.cmd = Some("y".into());
        true
    });
    assert_eq!(killed(&fx).len(), 1, "one old instance first: {fx:?}");
    assert!(
        launched(&e.offers(&[offer(5, "h1", BIG)], T0 + 101)).is_empty(),
        "no room yet"
    );
    report(&mut e, &killed(&fx), TaskState::TaskKilled, T0 + 102);
    let l = launched(&e.offers(&[offer(6, "h1", BIG)], T0 + 103));
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].1.command.as_ref().unwrap().shell, "y");
    let fx = report(&mut e, &task_ids(&l), TaskState::TaskRunning, T0 + 104);
    let second = killed(&fx);
    assert_eq!(second.len(), 1, "then the other");
    assert!(old.contains(&second[0]));
    report(&mut e, &second, TaskState::TaskKilled, T0 + 105);
    let l = launched(&e.offers(&[offer(7, "h1", BIG)], T0 + 106));
    let fx = report(&mut e, &task_ids(&l), TaskState::TaskRunning, T0 + 107);
    assert!(events(&fx).contains(&"deployment_success"));
    assert!(e
        .instances_of(&id)
        .all(|i| i.version == Timestamp(T0 + 100)));
}

#[test]
fn a_restart_with_room_starts_new_instances_before_stopping_old_ones() {
    let (mut e, id, old) =
        running_app(r#"{"id": "/web", "cmd": "x", "instances": 2, "cpus": 1, "mem": 64}"#);
    let fx = change(&mut e, &id, T0 + 100, |_| true);
    assert!(
        killed(&fx).is_empty(),
        "minimumHealthCapacity 1: nothing goes first"
    );
    let l = launched(&e.offers(&[offer(5, "h1", BIG)], T0 + 101));
    assert_eq!(l.len(), 2, "maximumOverCapacity 1: both new at once");
    let fx = report(&mut e, &task_ids(&l), TaskState::TaskRunning, T0 + 102);
    let mut k = killed(&fx);
    k.sort();
    assert_eq!(k, old);
}

#[test]
fn unique_hostname_runs_two_of_three_on_two_agents() {
    let (mut e, id, _) = engine_with(
        r#"{"id": "/u", "cmd": "x", "instances": 3, "cpus": 0.1, "mem": 16,
            "constraints": [["hostname", "UNIQUE"]]}"#,
    );
    let l = launched(&e.offers(&[offer(1, "h1", BIG), offer(2, "h2", BIG)], T0));
    assert_eq!(l.len(), 2);
    report(&mut e, &task_ids(&l), TaskState::TaskRunning, T0 + 1);
    let l = launched(&e.offers(&[offer(3, "h1", BIG), offer(4, "h2", BIG)], T0 + 2));
    assert!(l.is_empty());
    let q = e.queue(T0 + 3);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0.count, 1);
    assert!(e.deployment_of(&id).is_some());
}

#[test]
fn an_unreachable_task_is_replaced_after_the_inactive_time_and_the_surplus_stopped_if_it_returns() {
    let (mut e, id, tasks) = running_app(
        r#"{"id": "/web", "cmd": "x", "instances": 1,
            "unreachableStrategy": {"inactiveAfterSeconds": 5, "expungeAfterSeconds": 60}}"#,
    );
    let mut s = status(tasks[0].as_str(), TaskState::TaskUnreachable, "u1");
    s.timestamp_ms = T0 + 1000;
    e.update(&s, T0 + 1000);
    assert!(launched(&e.offers(&[offer(2, "h1", BIG)], T0 + 2000)).is_empty());
    e.tick(T0 + 6000);
    let l = launched(&e.offers(&[offer(3, "h2", BIG)], T0 + 6000));
    assert_eq!(l.len(), 1, "replaced");
    report(&mut e, &task_ids(&l), TaskState::TaskRunning, T0 + 6500);
    // The old one comes back: one of the two goes.
    let fx = report(&mut e, &tasks, TaskState::TaskRunning, T0 + 7000);
    assert_eq!(killed(&fx).len(), 1);
    assert_eq!(e.app(&id).unwrap().app.instances, 1);
}

#[test]
fn an_unreachable_task_forgotten_after_the_expunge_time_is_killed_if_it_returns() {
    let (mut e, _, tasks) = running_app(
        r#"{"id": "/web", "cmd": "x", "instances": 1,
            "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 2}}"#,
    );
    let mut s = status(tasks[0].as_str(), TaskState::TaskUnreachable, "u1");
    s.timestamp_ms = T0;
    e.update(&s, T0);
    let fx = e.tick(T0 + 2000);
    assert_eq!(
        fx.iter().filter(|f| matches!(f, Effect::Forget(_))).count(),
        1
    );
    let fx = report(&mut e, &tasks, TaskState::TaskRunning, T0 + 3000);
    assert_eq!(killed(&fx), tasks);
}

#[test]
fn a_takeover_reconciles_recorded_tasks_and_relaunches_those_never_launched() {
    let r = record(r#"{"id": "/web", "cmd": "x", "instances": 2}"#, T0);
    let mut provisioned = Instance::scheduled(&r.app.id, Timestamp(T0));
    provisioned.incarnation = 1;
    provisioned.condition = Condition::Provisioned;
    provisioned.staged_at = Some(Timestamp(T0));
    let mut running = Instance::scheduled(&r.app.id, Timestamp(T0));
    running.incarnation = 3;
    running.condition = Condition::Running;
    let mut e = Engine::load(
        vec![r],
        vec![provisioned.clone(), running.clone()],
        Vec::new(),
    );
    let fx = e.subscribed(T0 + 10);
    let asked: Vec<Vec<(TaskId, Option<AgentId>)>> = fx
        .iter()
        .filter_map(|f| match f {
            Effect::Reconcile(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 2, "explicit, then implicit");
    assert_eq!(asked[0].len(), 2);
    assert!(asked[1].is_empty());
    assert!(
        launched(&e.offers(&[offer(1, "h1", BIG)], T0 + 11)).is_empty(),
        "both slots are taken"
    );
    // The master never heard of the provisioned task: its launch did not happen.
    let answer = status(
        provisioned.task_id().unwrap().as_str(),
        TaskState::TaskUnknown,
        "",
    );
    let fx = e.update(&answer, T0 + 12);
    assert!(
        !fx.iter().any(|f| matches!(f, Effect::Acknowledge(_))),
        "answers are not acknowledged"
    );
    let l = launched(&e.offers(&[offer(2, "h1", BIG)], T0 + 13));
    assert_eq!(l.len(), 1, "relaunched at once (no backoff)");
    assert_eq!(l[0].0.id, provisioned.id);
    assert_eq!(l[0].0.incarnation, 2);
}

#[test]
fn a_deleted_app_has_every_task_killed_and_its_deployment_ends_when_they_end() {
    let (mut e, id, tasks) = running_app(r#"{"id": "/web", "cmd": "x", "instances": 2}"#);
    let original = e.app(&id).unwrap().app.clone();
    let d = Deployment::plan(&id, Some(original), None, Timestamp(T0 + 100), false);
    let fx = e.app_removed(&id, d, T0 + 100);
    let mut k = killed(&fx);
    k.sort();
    assert_eq!(k, tasks);
    assert!(events(&fx).contains(&"app_terminated_event"));
    let fx = report(&mut e, &tasks, TaskState::TaskKilled, T0 + 200);
    assert!(events(&fx).contains(&"deployment_success"));
    assert_eq!(e.all_instances().count(), 0);
}

#[test]
fn a_forced_change_replaces_the_running_deployment() {
    let (mut e, id, _) = engine_with(r#"{"id": "/web", "cmd": "x", "instances": 2}"#);
    let first = e.deployment_of(&id).unwrap().id.clone();
    let fx = change(&mut e, &id, T0 + 5, |r| {
        r.app.instances = 3;
        false
    });
    assert!(events(&fx).contains(&"deployment_failed"));
    assert!(fx.contains(&Effect::ForgetDeployment(first.clone())));
    assert_ne!(e.deployment_of(&id).unwrap().id, first);
}

#[test]
fn unhealthy_instances_are_killed_and_relaunched_and_health_gates_the_deployment() {
    let (mut e, id, _) = engine_with(
        r#"{"id": "/web", "cmd": "x", "instances": 1,
            "healthChecks": [{"protocol": "HTTP", "maxConsecutiveFailures": 2}]}"#,
    );
    let l = launched(&e.offers(&[offer(1, "h1", BIG)], T0));
    let tasks = task_ids(&l);
    report(&mut e, &tasks, TaskState::TaskRunning, T0 + 1);
    assert!(
        e.deployment_of(&id).is_some(),
        "running but not yet healthy"
    );
    let instance = l[0].0.id.clone();
    let ok = |healthy| HealthReport {
        instance: instance.clone(),
        check: 0,
        healthy,
        cause: (!healthy).then(|| "503".to_string()),
    };
    let fx = e.health(ok(true), T0 + 2);
    assert!(events(&fx).contains(&"deployment_success"));
    assert_eq!(
        e.app_view(e.app(&id).unwrap(), false).counts.tasks_healthy,
        1
    );
    assert!(killed(&e.health(ok(false), T0 + 3)).is_empty());
    assert_eq!(
        e.app_view(e.app(&id).unwrap(), false)
            .counts
            .tasks_unhealthy,
        1
    );
    let fx = e.health(ok(false), T0 + 4);
    assert_eq!(killed(&fx), tasks, "second failure in a row");
    assert!(events(&fx).contains(&"unhealthy_instance_kill_event"));
    report(&mut e, &tasks, TaskState::TaskKilled, T0 + 5);
    let l = launched(&e.offers(&[offer(2, "h1", BIG)], T0 + 6));
    assert_eq!(l.len(), 1, "killed for health: relaunched without backoff");
}

#[test]
fn a_command_check_runs_beside_the_task_and_its_reports_gate_the_deployment() {
    let (mut e, id, _) = engine_with(
        r#"{"id": "/web", "cmd": "x", "instances": 1,
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f ok"},
                              "intervalSeconds": 2, "maxConsecutiveFailures": 3,
                              "gracePeriodSeconds": 7, "delaySeconds": 1}]}"#,
    );
    let l = launched(&e.offers(&[offer(1, "h1", BIG)], T0));
    // The executor gets the check with the task.
    let check = l[0]
        .1
        .health_check
        .clone()
        .expect("the check goes with the task");
    assert_eq!(check.command.unwrap().shell, "test -f ok");
    assert_eq!(
        (
            check.interval_seconds,
            check.consecutive_failures,
            check.grace_period_seconds
        ),
        (2.0, 3, 7.0)
    );
    assert_eq!(check.delay_seconds, 1.0);
    let tasks = task_ids(&l);
    report(&mut e, &tasks, TaskState::TaskRunning, T0 + 1);
    assert!(e.deployment_of(&id).is_some(), "running, not yet healthy");
    let health = |healthy: bool| TaskStatus {
        healthy: Some(healthy),
        reason: if healthy {
            "task_healthy"
        } else {
            "task_unhealthy"
        }
        .into(),
        message: "the health check failed: exit status 1".into(),
        ..status(tasks[0].as_str(), TaskState::TaskRunning, "h")
    };
    let fx = e.update(&health(true), T0 + 2);
    assert!(events(&fx).contains(&"health_status_changed_event"));
    assert!(
        events(&fx).contains(&"deployment_success"),
        "{:?}",
        events(&fx)
    );
    let counts = |e: &Engine| e.app_view(e.app(&id).unwrap(), false).counts;
    assert_eq!(counts(&e).tasks_healthy, 1);
    // Unhealthy: counted and announced; the executor kills, not the scheduler.
    for t in 3..8 {
        let fx = e.update(&health(false), T0 + t);
        assert!(
            killed(&fx).is_empty(),
            "the scheduler killed for a COMMAND check"
        );
        assert!(events(&fx).contains(&"failed_health_check_event"));
    }
    assert_eq!(counts(&e).tasks_unhealthy, 1);
}

#[test]
fn at_most_one_command_check_per_app() {
    let e = parse_app(
        br#"{"id": "/web", "cmd": "x", "healthChecks": [
            {"protocol": "COMMAND", "command": {"value": "true"}},
            {"protocol": "COMMAND", "command": {"value": "true"}}]}"#,
    )
    .unwrap_err();
    assert_eq!(e.status, 422);
    assert!(
        e.details
            .iter()
            .any(|v| v.path == "/healthChecks(1)/protocol"),
        "{e:?}"
    );
}

#[test]
fn args_are_quoted_for_the_shell() {
    let r = record(r#"{"id": "/a", "args": ["echo", "it's", "$HOME"]}"#, T0);
    let mut i = Instance::scheduled(&r.app.id, Timestamp(T0));
    i.incarnation = 1;
    let t = task_info(&r.app, &i, &"cpus:1".parse().unwrap());
    assert_eq!(t.command.unwrap().shell, r#"exec 'echo' 'it'\''s' '$HOME'"#);
}

#[test]
fn an_app_s_user_is_its_tasks_and_a_bad_one_is_a_422_at_user() {
    let r = record(r#"{"id": "/a", "cmd": "id -u", "user": "www-data"}"#, T0);
    let mut i = Instance::scheduled(&r.app.id, Timestamp(T0));
    i.incarnation = 1;
    let t = task_info(&r.app, &i, &"cpus:1".parse().unwrap());
    assert_eq!(t.command.unwrap().user, "www-data");
    let r = record(r#"{"id": "/a", "cmd": "id -u"}"#, T0);
    let t = task_info(&r.app, &i, &"cpus:1".parse().unwrap());
    assert_eq!(t.command.unwrap().user, "", "none: the agent's default");
    let e = parse_app(br#"{"id": "/a", "cmd": "x", "user": "../root"}"#).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(e.details.iter().any(|v| v.path == "/user"), "{e:?}");
}

#[test]
fn a_container_s_args_go_to_its_image_s_entrypoint_and_its_command_check_runs_inside() {
    let r = record(
        r#"{"id": "/a", "args": ["-p", "$PORT0"],
            "container": {"type": "DOCKER", "docker": {"image": "web:1"}},
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}"#,
        T0,
    );
    let mut i = Instance::scheduled(&r.app.id, Timestamp(T0));
    i.incarnation = 1;
    let t = task_info(&r.app, &i, &"cpus:1".parse().unwrap());
    let c = t.command.expect("command");
    assert_eq!(c.shell, "");
    assert_eq!(c.arguments, ["-p", "$PORT0"]);
    assert!(t.container.is_some());
    assert_eq!(
        t.health_check
            .and_then(|h| h.command)
            .map(|c| c.shell)
            .as_deref(),
        Some("true")
    );
}
