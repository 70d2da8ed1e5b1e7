use super::*;
use crate::marathon::app::parse_app;

fn app(extra: &str) -> AppDefinition {
    let body = format!(r#"{{"id": "/a", "cmd": "x", "cpus": 1, "mem": 100{extra}}}"#);
    parse_app(body.as_bytes()).expect("valid app")
}

fn offer(text: &str) -> Resources {
    text.parse().expect("resources")
}

fn attrs(text: &str) -> Attributes {
    text.parse().expect("attributes")
}

#[test]
fn an_offer_takes_as_many_instances_as_its_resources_hold() {
    let a = app("");
    let none = attrs("");
    let agent = Agent {
        hostname: "h1",
        attributes: &none,
    };
    let got = place(
        &a,
        agent,
        &offer("cpus:3.5;mem:1000;ports:[31000-31010]"),
        &[],
        10,
    )
    .unwrap();
    assert_eq!(got.len(), 3, "cpus bound it");
    let ports: Vec<u64> = got.iter().flat_map(|l| l.ports.clone()).collect();
    assert_eq!(
        ports,
        vec![31000, 31001, 31002],
        "one port each, lowest first, none twice"
    );
    assert_eq!(
        got[0].resources.to_string(),
        offer("cpus:1;mem:100;ports:[31000-31000]").to_string()
    );
    assert_eq!(
        place(
            &a,
            agent,
            &offer("cpus:8;mem:1000;ports:[31000-31001]"),
            &[],
            10
        )
        .unwrap()
        .len(),
        2,
        "ports bound it"
    );
    assert_eq!(
        place(&a, agent, &offer("cpus:8;mem:1000;ports:[1-9]"), &[], 4)
            .unwrap()
            .len(),
        4,
        "wanted bounds it"
    );
    assert!(
        place(&a, agent, &offer("cpus:8;mem:50;ports:[1-9]"), &[], 4)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn required_ports_are_taken_exactly_once() {
    let a = app(r#", "requirePorts": true, "portDefinitions": [{"port": 8080}, {"port": 8081}]"#);
    let none = attrs("");
    let agent = Agent {
        hostname: "h1",
        attributes: &none,
    };
    let got = place(
        &a,
        agent,
        &offer("cpus:8;mem:1000;ports:[8000-9000]"),
        &[],
        3,
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ports, vec![8080, 8081]);
    assert!(place(
        &a,
        agent,
        &offer("cpus:8;mem:1000;ports:[8081-9000]"),
        &[],
        3
    )
    .unwrap()
    .is_empty());
}

#[test]
fn unique_hostname_puts_one_instance_per_agent() {
    let a = app(r#", "constraints": [["hostname", "UNIQUE"]]"#);
    let none = attrs("");
    let (h1, h2) = (
        Agent {
            hostname: "h1",
            attributes: &none,
        },
        Agent {
            hostname: "h2",
            attributes: &none,
        },
    );
    let big = offer("cpus:8;mem:1000;ports:[1-100]");
    // Three instances wanted, two agents: one each, the third waits.
    let first = place(&a, h1, &big, &[], 3).unwrap();
    assert_eq!(first.len(), 1);
    let second = place(&a, h2, &big, &[h1], 2).unwrap();
    assert_eq!(second.len(), 1);
    assert!(place(&a, h1, &big, &[h1, h2], 1).unwrap().is_empty());
    assert!(place(&a, h2, &big, &[h1, h2], 1).unwrap().is_empty());
}

#[test]
fn attribute_constraints() {
    let r1 = attrs("rack:r1;os:linux");
    let r2 = attrs("rack:r2;os:windows");
    let bare = attrs("");
    let on = |attributes| Agent {
        hostname: "h",
        attributes,
    };
    let big = offer("cpus:8;mem:1000;ports:[1-100]");
    let count = |extra: &str, agent, placed: &[Agent<'_>], wanted| {
        place(&app(extra), agent, &big, placed, wanted)
            .unwrap()
            .len()
    };
    let cluster = r#", "constraints": [["rack", "CLUSTER", "r1"]]"#;
    assert_eq!(count(cluster, on(&r1), &[], 3), 3);
    assert_eq!(count(cluster, on(&r2), &[], 3), 0);
    assert_eq!(
        count(cluster, on(&bare), &[], 3),
        0,
        "no attribute: no match"
    );
    let max_per = r#", "constraints": [["rack", "MAX_PER", "2"]]"#;
    assert_eq!(count(max_per, on(&r1), &[], 5), 2);
    assert_eq!(count(max_per, on(&r1), &[on(&r1)], 5), 1);
    let like = r#", "constraints": [["os", "LIKE", "lin.*"]]"#;
    assert_eq!(count(like, on(&r1), &[], 1), 1);
    assert_eq!(count(like, on(&r2), &[], 1), 0);
    let unlike = r#", "constraints": [["os", "UNLIKE", "win.*"]]"#;
    assert_eq!(count(unlike, on(&r1), &[], 1), 1);
    assert_eq!(count(unlike, on(&r2), &[], 1), 0);
    assert_eq!(
        count(unlike, on(&bare), &[], 1),
        1,
        "no attribute: not like it"
    );
}

#[test]
fn group_by_spreads_evenly() {
    let r1 = attrs("rack:r1");
    let r2 = attrs("rack:r2");
    let on = |attributes| Agent {
        hostname: "h",
        attributes,
    };
    let big = offer("cpus:8;mem:1000;ports:[1-100]");
    let a = app(r#", "constraints": [["rack", "GROUP_BY", "2"]]"#);
    // Two racks expected: until both are used, the unused one first.
    assert_eq!(place(&a, on(&r1), &big, &[], 4).unwrap().len(), 1);
    assert_eq!(place(&a, on(&r1), &big, &[on(&r1)], 4).unwrap().len(), 0);
    // The unused rack, then one ahead at most.
    assert_eq!(place(&a, on(&r2), &big, &[on(&r1)], 4).unwrap().len(), 2);
    // Both used once: each rack takes one more, not two.
    assert_eq!(
        place(&a, on(&r1), &big, &[on(&r1), on(&r2)], 4)
            .unwrap()
            .len(),
        1
    );
    let plain = app(r#", "constraints": [["rack", "GROUP_BY"]]"#);
    // Behind by two: it catches up and goes one ahead, no further.
    assert_eq!(
        place(&plain, on(&r2), &big, &[on(&r1), on(&r1)], 4)
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_docker_app_goes_to_agents_that_run_containers_and_takes_its_mapped_ports() {
    let app = app(
        r#", "container": {"type": "DOCKER", "docker": {"image": "web:1"},
            "portMappings": [{"containerPort": 80}, {"containerPort": 90, "hostPort": 31003}]},
           "networks": [{"mode": "container/bridge"}]"#,
    );
    let offered = offer("cpus:4;mem:4096;ports:[31000-31003]");
    let plain = attrs("rack:a");
    let on = |attributes| Agent {
        hostname: "h1",
        attributes,
    };
    let none = place(&app, on(&plain), &offered, &[], 2).unwrap();
    assert!(none.is_empty(), "an agent without docker: {none:?}");
    let docker = attrs("containerizers:docker,command");
    let launches = place(&app, on(&docker), &offered, &[], 2).unwrap();
    // The fixed host port can be taken once: one instance.
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0].ports, vec![31000, 31003]);
}
