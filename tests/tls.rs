//! A cluster with mutual TLS on every connection, on real processes: three masters (Raft over
//! TLS), an agent (registering, and taking launches, over TLS) and `drover run` (framework API
//! and sandbox reads over TLS) run a task; a would-be peer without a valid certificate is
//! refused at the handshake, and one whose certificate is of another role is refused what
//! that role may not call.

mod common;

use std::time::{Duration, SystemTime};

use drover_client::channel::Dialer;
use drover_client::{ClientError, MasterClient, RetryPolicy};
use drover_proto::raft::raft_service_client::RaftServiceClient;
use drover_proto::raft::RaftRequest;
use drover_proto::v1;
use drover_proto::v1::agent_client::AgentClient;
use drover_scheduler::driver::{Api, Driver, DriverEvent, DriverOptions, FrameworkInfo};
use drover_tls::ca::Validity;
use drover_tls::config::TlsFiles;
use drover_tls::{LiveTls, Role};
use tonic::Code;

use common::scheduler::Scheduler;
use common::{cli, https_get, next, start_tls};

const AGENT_RESOURCES: &str = "cpus:2;mem:1024;disk:512;ports:[31000-31009]";

/// The flags that hand `files` to the CLI.
fn tls_flags(files: &TlsFiles) -> Vec<String> {
    drover_chaos::cluster::certs::flags(files)
}

/// A client of the masters at `addrs` presenting `files` (a certificate of `role`), that
/// gives up after a few seconds.
fn client_as(addrs: &[String], files: TlsFiles, role: Role) -> MasterClient {
    let tls = LiveTls::fixed(files, role).expect("the certificate loads");
    MasterClient::with_dialer(
        addrs,
        RetryPolicy {
            deadline: Duration::from_secs(3),
            ..RetryPolicy::default()
        },
        Dialer {
            bind_ip: None,
            tls: Some(tls.client(&[Role::Master])),
        },
    )
    .expect("client")
}

/// The gRPC status code a failed call ended with.
fn code_of(e: &ClientError) -> Option<Code> {
    match e {
        ClientError::Rejected(s) => Some(s.code()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_tls_runs_a_task_and_refuses_who_has_no_valid_certificate() {
    let c = start_tls(3, 1, &["--resources", AGENT_RESOURCES]).await;
    let addrs = c.addrs();
    let masters = addrs.join(",");
    let certs = c.certs().expect("certificates");
    let operator = certs.files(Role::Client, "ops", &[]).unwrap();

    // `drover run` as an operator: the framework API, the launch on the agent, the updates
    // back, and the task's output read from the agent, every hop over TLS.
    let mut args: Vec<String> = ["run", "--masters", &masters, "--name", "tls"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(tls_flags(&operator));
    args.extend(["--", "echo hello over tls"].iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&args).await;
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("TASK_FINISHED"), "{}", out.stdout);
    assert!(out.stdout.contains("hello over tls"), "{}", out.stdout);

    // A framework's certificate: it subscribes over gRPC and over the Mesos HTTP API, and
    // uses its store.
    let framework = certs.files(Role::Framework, "fw", &[]).unwrap();
    let as_framework = LiveTls::fixed(framework.clone(), Role::Framework).unwrap();
    for api in [Api::Grpc, Api::Http] {
        let options = DriverOptions {
            api,
            tls: Some(as_framework.client(&[Role::Master])),
            ..DriverOptions::default()
        };
        let (_driver, mut events) =
            Driver::start(&addrs, FrameworkInfo::new("tls-framework"), options).unwrap();
        loop {
            match next(&mut events, Duration::from_secs(30)).await {
                Some(DriverEvent::Subscribed { .. }) => break,
                Some(DriverEvent::Disconnected { .. }) => continue,
                other => panic!("{api:?}: expected SUBSCRIBED, got {other:?}"),
            }
        }
    }
    let store = client_as(&addrs, framework.clone(), Role::Framework);
    store
        .put("tls-framework", "k", b"v".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store
            .get("tls-framework", "k")
            .await
            .unwrap()
            .map(|v| v.value),
        Some(b"v".to_vec())
    );

    // Only masters may launch on an agent: an operator's certificate is refused RunTask.
    let agent_addr = c.agents().next().expect("an agent").addr.clone();
    let channel = Dialer {
        bind_ip: None,
        tls: Some(
            LiveTls::fixed(operator.clone(), Role::Client)
                .unwrap()
                .client(&[Role::Agent]),
        ),
    }
    .channel(&agent_addr)
    .unwrap();
    let e = AgentClient::new(channel)
        .run_task(v1::RunTaskRequest::default())
        .await
        .expect_err("an operator may not launch on an agent");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // The same CLI without a certificate: no master answers it.
    let out = cli(&["leader", "--masters", &masters]).await;
    assert_ne!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    // Nor plain HTTP.
    let plain = common::try_http_get(&addrs[0], "/health").await;
    assert!(
        !matches!(&plain, Ok((200, _))),
        "plain HTTP answered: {plain:?}"
    );
    // Over HTTPS as an operator, it does.
    let (code, body) = https_get(&c, &addrs[0], "/health").await.unwrap();
    assert_eq!(code, 200, "{body}");

    // An expired operator certificate: refused at the handshake.
    let now = SystemTime::now();
    let expired = certs
        .issue_valid(
            Role::Client,
            "old",
            Validity {
                not_before: now - Duration::from_secs(2 * 86_400),
                not_after: now - Duration::from_secs(86_400),
            },
        )
        .unwrap();
    let e = client_as(&addrs, expired, Role::Client)
        .leader_status()
        .await
        .expect_err("an expired certificate is refused");
    assert!(
        code_of(&e).is_none(),
        "refused by a master, not at the handshake: {e}"
    );

    // Another CA's operator: refused at the handshake.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger_certs =
        drover_chaos::cluster::certs::ClusterCerts::open(stranger_dir.path()).unwrap();
    let stranger = TlsFiles {
        ca: operator.ca.clone(),
        ..stranger_certs.files(Role::Client, "ops", &[]).unwrap()
    };
    let e = client_as(&addrs, stranger, Role::Client)
        .leader_status()
        .await
        .expect_err("another CA's certificate is refused");
    assert!(
        code_of(&e).is_none(),
        "refused by a master, not at the handshake: {e}"
    );

    // Certificates of the CA, of roles that may not make the call: refused by name.
    let agent = certs.files(Role::Agent, "a0", &[]).unwrap();
    // An agent cannot administer the cluster…
    let e = client_as(&addrs, agent.clone(), Role::Agent)
        .leader_status()
        .await
        .expect_err("an agent may not call Cluster");
    assert_eq!(code_of(&e), Some(Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("not allowed for agent a0"), "{e}");
    // …nor subscribe as a framework.
    let as_agent = client_as(&addrs, agent, Role::Agent);
    let e = as_agent
        .call_idempotent(|ch, _| async move {
            drover_proto::v1::scheduler_client::SchedulerClient::new(ch)
                .subscribe(v1::SubscribeRequest::default())
                .await
                .map(|_| ())
        })
        .await
        .expect_err("an agent may not subscribe");
    assert_eq!(code_of(&e), Some(Code::PermissionDenied), "{e}");
    // A framework cannot register as an agent.
    let e = client_as(&addrs, framework, Role::Framework)
        .call_idempotent(|ch, _| async move {
            drover_proto::v1::agent_registry_client::AgentRegistryClient::new(ch)
                .register(v1::RegisterRequest::default())
                .await
                .map(|_| ())
        })
        .await
        .expect_err("a framework may not register an agent");
    assert_eq!(code_of(&e), Some(Code::PermissionDenied), "{e}");
    // An operator cannot speak Raft to a master.
    let tls = LiveTls::fixed(operator, Role::Client).unwrap();
    let channel = Dialer {
        bind_ip: None,
        tls: Some(tls.client(&[Role::Master])),
    }
    .channel(&addrs[0])
    .unwrap();
    let e = RaftServiceClient::new(channel)
        .vote(RaftRequest::default())
        .await
        .expect_err("an operator may not vote");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not allowed for client ops"), "{e:?}");
}

/// The Marathon API over mutual TLS: `drover scheduler` with a framework's certificate talks
/// to the masters over TLS and serves `/v2` as HTTPS to operators' certificates. The real
/// Marathon client (marathon-python, unchanged, given a requests session holding the
/// certificate) runs its whole script; the CLI adds an app and reads its task's output
/// (scheduler, masters and agent all over TLS); a client without a certificate is refused at
/// the handshake, and an agent's certificate is refused `/v2` by name.
#[tokio::test(flavor = "multi_thread")]
async fn the_marathon_api_serves_https_to_operators_only() {
    let c = start_tls(1, 2, &[]).await;
    let certs = c.certs().expect("certificates");
    let framework = certs
        .files(Role::Framework, "marathon", &["127.0.0.1".to_string()])
        .unwrap();
    let operator = certs.files(Role::Client, "ops", &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let as_operator = drover_chaos::http::Http::tls(
        &LiveTls::fixed(operator.clone(), Role::Client)
            .unwrap()
            .client(&[Role::Framework]),
    )
    .unwrap();
    let flags = tls_flags(&framework);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let scheduler =
        Scheduler::start_with(&c.addrs(), dir.path(), "scheduler", &flags, as_operator).await;
    scheduler.wait_active(Duration::from_secs(30)).await;
    let addr = scheduler.addr.clone();
    let url = format!("https://{addr}");

    // Without a certificate: no answer, over HTTPS or plain HTTP.
    let bare = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = bare.get(format!("{url}/v2/apps")).send().await;
    assert!(e.is_err(), "answered without a certificate: {e:?}");
    let plain = common::try_http_get(&addr, "/v2/apps").await;
    assert!(
        !matches!(&plain, Ok((200, _))),
        "plain HTTP answered: {plain:?}"
    );
    // An agent's certificate: refused /v2 by name (a 403), though it may ping.
    let agent = certs.files(Role::Agent, "a9", &[]).unwrap();
    let as_agent = drover_chaos::http::Http::tls(
        &LiveTls::fixed(agent, Role::Agent)
            .unwrap()
            .client(&[Role::Framework]),
    )
    .unwrap();
    let refused = as_agent
        .client()
        .get(format!("{url}/v2/apps"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("not allowed for agent a9"), "{body}");
    assert_eq!(as_agent.get(&addr, "/ping").await.unwrap().trim(), "pong");

    // The real Marathon client over HTTPS with the operator's certificate.
    if let Some(python) = common::test_python() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/marathon_client.py");
        let env = [
            ("DROVER_TLS_CERT", operator.cert.as_path()),
            ("DROVER_TLS_KEY", operator.key.as_path()),
            ("DROVER_TLS_CA", operator.ca.as_path()),
        ];
        let stdout =
            common::run_python_ok_with(&python, script, &[&url], &env, Duration::from_secs(240))
                .await;
        eprintln!("marathon_client.py over TLS: {}", stdout.trim());
    }

    // The CLI: an app added and waited for, its task's output read.
    let app = dir.path().join("app.json");
    std::fs::write(
        &app,
        r#"{"id": "/tls/echo", "cmd": "echo hello-over-marathon-tls && sleep 600",
            "cpus": 0.1, "mem": 16, "instances": 1}"#,
    )
    .unwrap();
    let mut flags = vec!["--scheduler".to_string(), url.clone()];
    flags.extend(tls_flags(&operator));
    let with_flags = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(flags.iter().cloned())
            .collect()
    };
    let run_cli = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args).await
    };
    let out = run_cli(with_flags(&["app", "add", app.to_str().unwrap(), "--wait"])).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let out = run_cli(with_flags(&[
        "task",
        "list",
        "--app",
        "/tls/echo",
        "--json",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let tasks: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let task = tasks["tasks"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {tasks}"))
        .to_string();
    let logs = with_flags(&["task", "logs", &task]);
    common::wait_until("the task's output", Duration::from_secs(30), || {
        let logs = logs.clone();
        async move {
            let out = run_cli(logs).await;
            if out.stdout.contains("hello-over-marathon-tls") {
                Ok(())
            } else {
                Err(format!("{}\n{}", out.stdout, out.stderr))
            }
        }
    })
    .await
    .unwrap();
}

/// A subscription over gRPC to the master at `addr` as the holder of `files` (a framework's
/// certificate): the framework id SUBSCRIBED gave, and the stream (kept open), or why not.
async fn subscribe_as(
    addr: &str,
    files: &TlsFiles,
    info: v1::FrameworkInfo,
) -> Result<(String, tonic::Streaming<v1::Event>), tonic::Status> {
    let tls = LiveTls::fixed(files.clone(), Role::Framework).unwrap();
    let channel = Dialer {
        bind_ip: None,
        tls: Some(tls.client(&[Role::Master])),
    }
    .channel(addr)
    .unwrap();
    let mut events = drover_proto::v1::scheduler_client::SchedulerClient::new(channel)
        .subscribe(v1::SubscribeRequest {
            framework: Some(info),
        })
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(20), events.message())
        .await
        .expect("SUBSCRIBED in time")?
        .and_then(|e| e.event);
    match first {
        Some(v1::event::Event::Subscribed(s)) => Ok((s.framework_id, events)),
        other => panic!("expected SUBSCRIBED, got {other:?}"),
    }
}

/// With TLS, a framework's principal is its certificate's name, never one it claims: a
/// subscription claiming another is refused, and another principal may not take over its
/// framework (by subscribing with its id), over gRPC and over the Mesos HTTP API.
#[tokio::test(flavor = "multi_thread")]
async fn a_framework_s_principal_is_its_certificate_s_name_and_its_framework_its_own() {
    let c = start_tls(1, 0, &[]).await;
    let (leader, a, b) = leader_and_two_frameworks(&c).await;
    let info = |principal: &str, id: &str| v1::FrameworkInfo {
        id: id.into(),
        name: "owned".into(),
        principal: principal.into(),
        failover_timeout_seconds: 600.0,
        ..Default::default()
    };

    // Claiming nothing: the principal is the certificate's name, as the registry records it.
    let (id, _a_events) = subscribe_as(&leader, &a, info("", "")).await.unwrap();
    let state = common::leader_state(&c).await.unwrap();
    let recorded = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {state}"))
        .clone();
    assert_eq!(recorded["principal"], "fw-a", "{recorded}");

    // Claiming another principal: refused, naming both.
    let e = subscribe_as(&leader, &a, info("admin", ""))
        .await
        .expect_err("a claimed principal that is not the certificate's");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("\"admin\"") && e.message().contains("\"fw-a\""),
        "{e:?}"
    );

    // Another principal subscribing with fw-a's framework id: refused, over gRPC…
    let e = subscribe_as(&leader, &b, info("", &id))
        .await
        .expect_err("another principal's framework");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("principal \"fw-a\"'s"), "{e:?}");
    // …and over the Mesos HTTP API (403).
    let body = serde_json::json!({
        "type": "SUBSCRIBE",
        "framework_id": {"value": id},
        "subscribe": {"framework_info": {
            "id": {"value": id}, "name": "owned", "user": "u", "failover_timeout": 600.0}},
    });
    let (status, text) = mesos_call_as(&leader, &b, &body).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("principal \"fw-a\"'s"), "{text}");

    // Its own principal fails over to a new subscription.
    let (again, _) = subscribe_as(&leader, &a, info("fw-a", &id)).await.unwrap();
    assert_eq!(again, id);
}

/// The masters' ACL file, rule by rule, over gRPC and the Mesos HTTP API: `fw-a` may register
/// in role `*` (not `web`) and run tasks as nobody or the agent's default user (not root);
/// `fw-b` may do neither; the refusals name the action, the principal and the rule.
#[tokio::test(flavor = "multi_thread")]
async fn the_acls_allow_each_rule_s_principal_and_deny_another_over_grpc_and_http() {
    let dir = tempfile::tempdir().unwrap();
    let acls = dir.path().join("acls.json");
    std::fs::write(
        &acls,
        r#"{
          "register_frameworks": [{"principals": {"values": ["fw-a"]}, "roles": {"values": ["*"]}}],
          "run_tasks": [{"principals": {"values": ["fw-a"]}, "users": {"values": ["nobody", ""]}}]
        }"#,
    )
    .unwrap();
    let acls_path = acls.clone();
    let acls = acls.display().to_string();
    let c =
        common::start_tls_with(1, &["--acls", &acls], 1, &["--resources", AGENT_RESOURCES]).await;
    let (leader, a, b) = leader_and_two_frameworks(&c).await;
    let info = |role: &str| v1::FrameworkInfo {
        name: "acl".into(),
        role: role.into(),
        ..Default::default()
    };

    // register_frameworks over gRPC: its principal in its role; not in another, nor another.
    let (_id, first) = subscribe_as(&leader, &a, info("*")).await.unwrap();
    // Gone: its offers are rescinded, for the drivers below.
    drop(first);
    for (files, role, who) in [(&a, "web", "fw-a"), (&b, "*", "fw-b")] {
        let e = subscribe_as(&leader, files, info(role))
            .await
            .expect_err("denied by the ACLs");
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let want = format!("principal \"{who}\" may not register a framework in role \"{role}\"");
        assert!(e.message().contains(&want), "{e:?}");
    }
    // …and over the Mesos HTTP API: 403, saying why.
    let body = serde_json::json!({
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": {"name": "acl", "user": "u", "role": "*"}},
    });
    let (status, text) = mesos_call_as(&leader, &b, &body).await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("principal \"fw-b\" may not register"),
        "{text}"
    );

    // run_tasks, over each API: root is refused (gRPC: the ACCEPT; the Mesos API: a
    // TASK_ERROR for the task), nobody runs.
    let as_a = LiveTls::fixed(a.clone(), Role::Framework).unwrap();
    for api in [Api::Grpc, Api::Http] {
        let options = DriverOptions {
            api,
            tls: Some(as_a.client(&[Role::Master])),
            ..DriverOptions::default()
        };
        let (driver, mut events) = Driver::start(
            std::slice::from_ref(&leader),
            FrameworkInfo::new("acl"),
            options,
        )
        .unwrap();
        let task = |id: &str, user: &str| {
            let mut t = common::shell_task(id, "cpus:0.1;mem:32", "true");
            if let Some(c) = t.command.as_mut() {
                c.user = user.into();
            }
            t
        };
        let offers = common::next_offers(&mut events, Duration::from_secs(30))
            .await
            .expect("offers");
        let root_task = format!("as-root-{api:?}");
        let refused = driver
            .accept(
                &[offers[0].id.clone()],
                vec![task(&root_task, "root")],
                None,
            )
            .await;
        match api {
            Api::Grpc => {
                let e = refused.expect_err("root is not granted");
                assert!(
                    e.to_string().contains("PermissionDenied")
                        && e.to_string()
                            .contains("may not run a task as user \"root\""),
                    "{e}"
                );
            }
            Api::Http => {
                refused.expect("202: the refusal comes as an update");
                let status = wait_for_update(&mut events, &root_task).await;
                assert_eq!(status.state(), v1::TaskState::TaskError, "{status:?}");
                assert!(
                    status
                        .message
                        .contains("may not run a task as user \"root\""),
                    "{status:?}"
                );
            }
        }
        // The refused ACCEPT never reached the offers: the same one is still outstanding.
        let ok_task = format!("as-nobody-{api:?}");
        driver
            .accept(
                &[offers[0].id.clone()],
                vec![task(&ok_task, "nobody")],
                None,
            )
            .await
            .expect("nobody is granted");
        let status = wait_for_update(&mut events, &ok_task).await;
        assert_ne!(status.state(), v1::TaskState::TaskError, "{status:?}");
    }

    // The file is read again when it changes (replaced whole, as an operator should): fw-b,
    // denied above, is granted without a restart.
    let next_file = dir.path().join("acls.json.new");
    std::fs::write(
        &next_file,
        r#"{"register_frameworks": [{"principals": {"values": ["fw-a", "fw-b"]}, "roles": {"type": "ANY"}}]}"#,
    )
    .unwrap();
    std::fs::rename(&next_file, &acls_path).unwrap();
    common::wait_until(
        "fw-b granted by the new file",
        Duration::from_secs(20),
        || {
            let (leader, b) = (leader.clone(), b.clone());
            async move {
                subscribe_as(&leader, &b, info("*"))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await
    .unwrap();
}

/// The next update of `task` (acknowledged), within 30 s.
async fn wait_for_update(
    events: &mut drover_scheduler::driver::EventStream,
    task: &str,
) -> v1::TaskStatus {
    loop {
        match next(events, Duration::from_secs(30)).await {
            Some(DriverEvent::Update(s)) if s.task_id == task => return s,
            Some(DriverEvent::Error(e)) => panic!("driver error: {e}"),
            None => panic!("no update of {task}"),
            _ => continue,
        }
    }
}

/// A Mesos scheduler API call (JSON) to the master at `addr` over HTTPS as the holder of
/// `files` (a framework's certificate): the answer's status and body.
async fn mesos_call_as(addr: &str, files: &TlsFiles, body: &serde_json::Value) -> (u16, String) {
    let http = drover_chaos::http::Http::tls(
        &LiveTls::fixed(files.clone(), Role::Framework)
            .unwrap()
            .client(&[Role::Master]),
    )
    .unwrap();
    let r = http
        .client()
        .post(http.url(addr, "/api/v1/scheduler"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// The leader's address, and the certificates of two frameworks, `fw-a` and `fw-b`.
async fn leader_and_two_frameworks(c: &drover_chaos::LocalCluster) -> (String, TlsFiles, TlsFiles) {
    let certs = c.certs().expect("certificates");
    let leader = c
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader")
        .leader_addr;
    let a = certs.files(Role::Framework, "fw-a", &[]).unwrap();
    let b = certs.files(Role::Framework, "fw-b", &[]).unwrap();
    (leader, a, b)
}
