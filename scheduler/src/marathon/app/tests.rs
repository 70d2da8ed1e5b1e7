use super::*;

fn parse(json: &str) -> Result<AppDefinition, ApiError> {
    parse_app(json.as_bytes())
}

#[test]
fn a_minimal_app_gets_marathons_defaults() {
    let app = parse(r#"{"id": "web", "cmd": "sleep 100"}"#).unwrap();
    assert_eq!(app.id.as_str(), "/web");
    assert_eq!(app.instances, 1);
    assert_eq!((app.cpus, app.mem, app.disk), (1.0, 128.0, 0.0));
    assert_eq!((app.backoff_seconds, app.backoff_factor), (1, 1.15));
    assert_eq!(app.max_launch_delay_seconds, 3600);
    assert_eq!(app.upgrade_strategy, UpgradeStrategy::default());
    assert_eq!(app.kill_selection, KillSelection::YoungestFirst);
    assert_eq!(app.port_definitions.len(), 1);
    assert_eq!(app.port_definitions[0].port, 0);
    let json: Value = serde_json::to_value(&app).unwrap();
    assert_eq!(json["killSelection"], "YOUNGEST_FIRST");
    assert_eq!(
        json["unreachableStrategy"],
        serde_json::json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    );
    assert_eq!(json["networks"], serde_json::json!([{"mode": "host"}]));
    assert!(json.get("ports").is_none(), "{json}");
}

#[test]
fn a_full_app_reads_and_writes_back_the_same() {
    let body = r#"{
        "id": "/prod/web", "cmd": "python3 -m http.server $PORT0", "instances": 3,
        "cpus": 0.25, "mem": 64, "env": {"MODE": "prod"}, "labels": {"team": "a"},
        "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"], ["zone", "MAX_PER", 1],
                        ["os", "LIKE", "linux|bsd"], ["os", "UNLIKE", "win.*"], ["dc", "CLUSTER", "east"]],
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http"}],
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "gracePeriodSeconds": 5, "intervalSeconds": 2, "timeoutSeconds": 1,
                          "maxConsecutiveFailures": 2},
                         {"protocol": "COMMAND", "command": {"value": "true"}}],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
        "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 600},
        "killSelection": "OLDEST_FIRST", "taskKillGracePeriodSeconds": 10,
        "backoffSeconds": 2, "backoffFactor": 2.0, "maxLaunchDelaySeconds": 60,
        "tasksRunning": 3, "deployments": [{"id": "x"}], "uris": [], "version": "2020-01-01T00:00:00.000Z"
    }"#;
    let app = parse(body).unwrap();
    assert_eq!(app.constraints.len(), 6);
    assert_eq!(app.constraints[2].operator, Operator::MaxPer(1));
    assert_eq!(app.constraints[1].operator, Operator::GroupBy(Some(2)));
    assert_eq!(app.version, None, "the version is the scheduler's to set");
    let written = serde_json::to_vec(&app).unwrap();
    let again = parse_app(&written).unwrap();
    assert_eq!(again, app);
    let json: Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(
        json["constraints"][2],
        serde_json::json!(["zone", "MAX_PER", "1"])
    );
    assert_eq!(
        json["healthChecks"][1]["command"],
        serde_json::json!({"value": "true"})
    );
}

#[test]
fn deprecated_ports_become_port_definitions() {
    let app = parse(r#"{"id": "/a", "cmd": "x", "ports": [0, 8080]}"#).unwrap();
    let ports: Vec<u32> = app.port_definitions.iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![0, 8080]);
    assert_eq!(
        serde_json::to_value(&app).unwrap()["unreachableStrategy"],
        serde_json::json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
    );
    let disabled = parse(r#"{"id": "/a", "cmd": "x", "unreachableStrategy": "disabled"}"#).unwrap();
    assert_eq!(disabled.unreachable_strategy, UnreachableStrategy::Disabled);
}

/// Every refusal: its status and the path it names.
#[test]
fn bad_definitions_are_refused_naming_the_field() {
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"id": "/a", "cmd": "#, 400, ""),
        (r#"[1, 2]"#, 422, "/"),
        (r#"{"cmd": "x"}"#, 422, "/"),
        (r#"{"id": "/A", "cmd": "x"}"#, 422, "/id"),
        (r#"{"id": "/a/tasks", "cmd": "x"}"#, 422, "/id"),
        (
            r#"{"id": "/a", "cmd": "x", "colour": "red"}"#,
            422,
            "/colour",
        ),
        (r#"{"id": "/a", "cmd": "x", "cpus": "many"}"#, 422, "/cpus"),
        (r#"{"id": "/a", "cmd": "x", "cpus": -1}"#, 422, "/cpus"),
        (r#"{"id": "/a", "cmd": "x", "mem": -5}"#, 422, "/mem"),
        (
            r#"{"id": "/a", "cmd": "x", "instances": -1}"#,
            422,
            "/instances",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "instances": 100001}"#,
            422,
            "/instances",
        ),
        (r#"{"id": "/a"}"#, 422, "/"),
        (r#"{"id": "/a", "cmd": "x", "args": ["y"]}"#, 422, "/"),
        (r#"{"id": "/a", "cmd": ""}"#, 422, "/cmd"),
        (
            r#"{"id": "/a", "cmd": "x", "constraints": [["hostname"]]}"#,
            422,
            "/constraints(0)",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "constraints": [["hostname", "NEAR"]]}"#,
            422,
            "/constraints(0)",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "constraints": [["hostname", "UNIQUE", "x"]]}"#,
            422,
            "/constraints(0)",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "constraints": [["rack", "MAX_PER", "two"]]}"#,
            422,
            "/constraints(0)",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "constraints": [["os", "LIKE", "("]]}"#,
            422,
            "/constraints(0)",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "HTTPS"}]}"#,
            422,
            "/healthChecks(0)/protocol",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "GOPHER"}]}"#,
            422,
            "/healthChecks(0)/protocol",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "COMMAND"}]}"#,
            422,
            "/healthChecks(0)/command",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "healthChecks": [{"portIndex": 3}]}"#,
            422,
            "/healthChecks(0)/portIndex",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "healthChecks": [{"colour": 1}]}"#,
            422,
            "/healthChecks(0)/colour",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 1.5}}"#,
            422,
            "/upgradeStrategy/minimumHealthCapacity",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "unreachableStrategy": {"inactiveAfterSeconds": 9, "expungeAfterSeconds": 1}}"#,
            422,
            "/unreachableStrategy/inactiveAfterSeconds",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "killSelection": "RANDOM"}"#,
            422,
            "/killSelection",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "portDefinitions": [{"port": 70000}]}"#,
            422,
            "/portDefinitions(0)/port",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "portDefinitions": [{"port": 1, "name": "a"}, {"port": 2, "name": "a"}]}"#,
            422,
            "/portDefinitions(1)/name",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {}}}"#,
            422,
            "/container/docker/image",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "MESOS", "docker": {"image": "busybox"}}}"#,
            422,
            "/container/type",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "b", "parameters": [{"key": "volumes-from", "value": "c"}]}}}"#,
            422,
            "/container/docker/parameters(0)/key",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "b"}, "portMappings": [{"containerPort": 80}]}}"#,
            422,
            "/container/portMappings",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "networks": [{"mode": "container/bridge"}]}"#,
            422,
            "/networks",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "b"}, "volumes": [{"containerPath": "/d", "persistent": {"size": 1}}]}}"#,
            422,
            "/container/volumes(0)",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "uris": ["http://x/y.tgz"]}"#,
            422,
            "/uris",
        ),
        (r#"{"id": "/a", "cmd": "x", "gpus": 1}"#, 422, "/gpus"),
        (
            r#"{"id": "/a", "cmd": "x", "networks": [{"mode": "container"}]}"#,
            422,
            "/networks",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "env": {"A": {"secret": "s"}}}"#,
            422,
            "/env/A",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "backoffFactor": 0.5}"#,
            422,
            "/backoffFactor",
        ),
        (r#"{"id": "/a", "cmd": "x", "role": "a b"}"#, 422, "/role"),
        // The launch-time container check, at the app's JSON paths.
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "a b"}}}"#,
            422,
            "/container/docker/image",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "networks": [{"mode": "container/bridge"}], "container": {"type": "DOCKER", "docker": {"image": "b"}, "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8000}, {"containerPort": 82, "hostPort": 8000}]}}"#,
            422,
            "/container/portMappings(2)/hostPort",
        ),
        (
            r#"{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "b"}, "volumes": [{"containerPath": "/d", "hostPath": "/x/../etc", "mode": "RW"}]}}"#,
            422,
            "/container/volumes(0)/hostPath",
        ),
    ];
    for (body, status, path) in cases {
        let e = parse(body).expect_err(body);
        assert_eq!(e.status, *status, "{body}: {e:?}");
        if *status == 422 {
            assert!(
                e.details.iter().any(|d| d.path == *path),
                "{body}: wanted a violation at {path}, got {:?}",
                e.details
            );
            assert_eq!(e.message, "Object is not valid");
        }
    }
}

#[test]
fn an_oversized_command_is_refused() {
    let body =
        serde_json::json!({"id": "/a", "cmd": "x".repeat(MAX_COMMAND_BYTES + 1)}).to_string();
    let e = parse(&body).unwrap_err();
    assert_eq!(e.details[0].path, "/cmd");
}

/// Every variable within its bound, the whole over what an agent takes: 422 at `/env`.
#[test]
fn an_oversized_environment_is_refused() {
    let env: serde_json::Map<String, serde_json::Value> = (0..5)
        .map(|i| (format!("V{i}"), "x".repeat(MAX_ENV_BYTES).into()))
        .collect();
    let body = serde_json::json!({"id": "/a", "cmd": "x", "env": env}).to_string();
    let e = parse(&body).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(
        e.details.iter().any(|d| d.path == "/env"),
        "{:?}",
        e.details
    );
}

#[test]
fn a_docker_app_on_the_bridge_publishes_its_mapped_ports() {
    let app = parse(
        r#"{"id": "/web", "cmd": "httpd -f -p 8080",
            "container": {"type": "DOCKER", "docker": {"image": "web:1", "forcePullImage": true},
                "portMappings": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9000, "hostPort": 31005}],
                "volumes": [{"containerPath": "/data", "hostPath": "data", "mode": "RO"}]},
            "networks": [{"mode": "container/bridge"}]}"#,
    )
    .expect("a valid app");
    assert_eq!(app.network(), Some(AppNetwork::Bridge));
    assert!(
        app.port_definitions.is_empty(),
        "the host-network default is dropped"
    );
    assert_eq!(app.host_port_requests(), vec![None, Some(31005)]);
    assert_eq!(app.port_names(), vec![Some("http".to_string()), None]);
    let c = app
        .container
        .as_ref()
        .and_then(|c| c.to_proto(&AppNetwork::Bridge, &[31000, 31005]))
        .expect("a docker container");
    let d = c.docker.expect("docker");
    assert_eq!(d.image, "web:1");
    assert!(d.force_pull_image);
    let mapped: Vec<(u32, u32)> = d
        .port_mappings
        .iter()
        .map(|m| (m.host_port, m.container_port))
        .collect();
    assert_eq!(mapped, vec![(31000, 8080), (31005, 9000)]);
    assert_eq!(
        c.volumes[0].mode,
        drover_proto::v1::container_info::volume::Mode::Ro as i32
    );
    // The deprecated form reads the same.
    let old = parse(
        r#"{"id": "/web", "cmd": "x", "container": {"type": "DOCKER",
            "docker": {"image": "web:1", "network": "BRIDGE", "portMappings": [{"containerPort": 8080}]}}}"#,
    )
    .expect("a valid app");
    assert_eq!(old.network(), Some(AppNetwork::Bridge));
    assert_eq!(old.host_port_requests(), vec![None]);
    // A Docker app on host networking keeps its port definitions.
    let host = parse(
        r#"{"id": "/h", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "b"}}}"#,
    )
    .expect("a valid app");
    assert_eq!(host.network(), Some(AppNetwork::Host));
    assert_eq!(host.host_port_requests(), vec![None]);
}
