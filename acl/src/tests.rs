//! The ACL file's format and its decisions, table-driven: each rule allows its principal and
//! denies another.

use super::*;

const FILE: &str = r#"{
  "register_frameworks": [
    {"principals": {"values": ["marathon"]}, "roles": {"values": ["*", "web"]}},
    {"principals": {"values": ["intruder"]}, "roles": {"type": "NONE"}}
  ],
  "run_tasks": [
    {"principals": {"values": ["marathon"]}, "users": {"values": ["nobody", ""]}},
    {"principals": {"values": ["ops"]}, "users": {"type": "ANY"}}
  ],
  "teardown_frameworks": [
    {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
    {"principals": {"values": ["marathon"]}, "framework_principals": {"values": ["marathon"]}}
  ],
  "kill_tasks": [
    {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}}
  ],
  "operator": [
    {"principals": {"values": ["ops"]}, "calls": {"values": ["drain_agent", "set_weights"]}}
  ],
  "read_state": [{"principals": {"values": ["ops", "marathon"]}}],
  "read_metrics": [{"principals": {"type": "ANY"}}],
  "store": [
    {"principals": {"values": ["marathon"]}, "namespaces": {"values": ["marathon"]}, "access": "read_write"},
    {"principals": {"values": ["ops"]}, "namespaces": {"type": "ANY"}, "access": "read"}
  ]
}"#;

fn acls() -> Acls {
    Acls::from_json(FILE.as_bytes()).expect("the example parses")
}

#[test]
fn each_rule_allows_its_principal_and_denies_another() {
    let a = acls();
    let table: Vec<(Option<&str>, Action<'_>, bool)> = vec![
        (
            Some("marathon"),
            Action::RegisterFramework { role: "web" },
            true,
        ),
        (
            Some("marathon"),
            Action::RegisterFramework { role: "*" },
            true,
        ),
        (
            Some("marathon"),
            Action::RegisterFramework { role: "batch" },
            false,
        ),
        (
            Some("intruder"),
            Action::RegisterFramework { role: "web" },
            false,
        ),
        (
            Some("ops"),
            Action::RegisterFramework { role: "web" },
            false,
        ),
        (None, Action::RegisterFramework { role: "web" }, false),
        (Some("marathon"), Action::RunTask { user: "nobody" }, true),
        (Some("marathon"), Action::RunTask { user: "" }, true),
        (Some("marathon"), Action::RunTask { user: "root" }, false),
        (Some("ops"), Action::RunTask { user: "root" }, true),
        (Some("x"), Action::RunTask { user: "nobody" }, false),
        (
            Some("ops"),
            Action::TeardownFramework {
                framework_principal: "marathon",
            },
            true,
        ),
        (
            Some("marathon"),
            Action::TeardownFramework {
                framework_principal: "marathon",
            },
            true,
        ),
        (
            Some("marathon"),
            Action::TeardownFramework {
                framework_principal: "other",
            },
            false,
        ),
        (
            Some("ops"),
            Action::KillTask {
                framework_principal: "marathon",
            },
            true,
        ),
        (
            Some("marathon"),
            Action::KillTask {
                framework_principal: "marathon",
            },
            false,
        ),
        (
            Some("ops"),
            Action::Operator {
                call: "drain_agent",
            },
            true,
        ),
        (
            Some("ops"),
            Action::Operator {
                call: "remove_master",
            },
            false,
        ),
        (
            Some("marathon"),
            Action::Operator {
                call: "drain_agent",
            },
            false,
        ),
        (Some("ops"), Action::ReadState, true),
        (Some("x"), Action::ReadState, false),
        (None, Action::ReadState, false),
        (Some("x"), Action::ReadMetrics, true),
        (None, Action::ReadMetrics, true),
        (
            Some("marathon"),
            Action::Store {
                namespace: "marathon",
                write: true,
            },
            true,
        ),
        (
            Some("marathon"),
            Action::Store {
                namespace: "marathon",
                write: false,
            },
            true,
        ),
        (
            Some("marathon"),
            Action::Store {
                namespace: "other",
                write: false,
            },
            false,
        ),
        (
            Some("ops"),
            Action::Store {
                namespace: "marathon",
                write: false,
            },
            true,
        ),
        (
            Some("ops"),
            Action::Store {
                namespace: "marathon",
                write: true,
            },
            false,
        ),
    ];
    for (who, action, allowed) in table {
        let d = a.decide(who, &action);
        assert_eq!(d.allowed(), allowed, "{who:?} {action}: {d:?}");
        assert_eq!(d.refusal(who, &action).is_some(), !allowed);
    }
}

#[test]
fn the_first_rule_that_matches_decides_and_none_denies() {
    let a = Acls::from_json(
        br#"{"register_frameworks": [
            {"principals": {"values": ["a"]}, "roles": {"type": "NONE"}},
            {"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#,
    )
    .unwrap();
    assert_eq!(
        a.decide(Some("a"), &Action::RegisterFramework { role: "*" }),
        Decision::Denied { rule: Some(0) }
    );
    assert_eq!(
        a.decide(Some("b"), &Action::RegisterFramework { role: "*" }),
        Decision::Allowed { rule: Some(1) }
    );
}

#[test]
fn what_no_rule_covers_is_denied_unless_permissive() {
    let strict = Acls::from_json(b"{}").unwrap();
    let d = strict.decide(
        Some("p"),
        &Action::Operator {
            call: "drain_agent",
        },
    );
    assert_eq!(d, Decision::Denied { rule: None });
    let why = d
        .refusal(
            Some("p"),
            &Action::Operator {
                call: "drain_agent",
            },
        )
        .unwrap();
    assert!(
        why.contains("principal \"p\"") && why.contains("drain_agent") && why.contains("operator"),
        "{why}"
    );
    let open = Acls::from_json(br#"{"permissive": true}"#).unwrap();
    assert_eq!(
        open.decide(None, &Action::ReadState),
        Decision::Allowed { rule: None }
    );
    assert!(Acls::permissive()
        .decide(None, &Action::RunTask { user: "root" })
        .allowed());
}

#[test]
fn a_refused_file_names_the_field_at_fault() {
    let field_of = |json: &str| match Acls::from_json(json.as_bytes()) {
        Err(AclError::Invalid { field, .. }) => field,
        other => panic!("{json}: {other:?}"),
    };
    assert_eq!(field_of(r#"{"permisive": true}"#), "permisive");
    assert_eq!(
        field_of(r#"{"run_tasks": [{"principals": {"type": "ANY"}}]}"#),
        "run_tasks[0].users"
    );
    assert_eq!(
        field_of(r#"{"run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "SOME"}}]}"#),
        "run_tasks[0].users.type"
    );
    assert_eq!(
        field_of(r#"{"read_state": [{"principals": {"values": []}}]}"#),
        "read_state[0].principals.values"
    );
    assert_eq!(
        field_of(r#"{"read_state": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}]}"#),
        "read_state[0].roles"
    );
    assert_eq!(
        field_of(r#"{"store": [{"principals": {"type": "ANY"}, "namespaces": {"type": "ANY"}}]}"#),
        "store[0].access"
    );
    assert_eq!(
        field_of(
            r#"{"operator": [{"principals": {"type": "ANY", "values": ["a"]}, "calls": {"type": "ANY"}}]}"#
        ),
        "operator[0].principals"
    );
    assert_eq!(
        Acls::from_json(&vec![b' '; MAX_FILE_BYTES + 1]),
        Err(AclError::TooLarge)
    );
}

proptest::proptest! {
    /// Whatever the bytes, parsing answers (a refusal or ACLs) and never panics.
    #[test]
    fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = Acls::from_json(&bytes);
    }

    /// With only an ANY-for-everyone rule per kind, everything is allowed; with none (and
    /// not permissive), everything is denied.
    #[test]
    fn an_any_rule_allows_and_no_rule_denies(who in "[a-z]{0,8}", object in "[a-z]{0,8}") {
        let open = Acls::from_json(br#"{
            "register_frameworks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}],
            "run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}],
            "operator": [{"principals": {"type": "ANY"}, "calls": {"type": "ANY"}}]}"#).unwrap();
        let closed = Acls::from_json(b"{}").unwrap();
        for action in [
            Action::RegisterFramework { role: &object },
            Action::RunTask { user: &object },
            Action::Operator { call: &object },
        ] {
            proptest::prop_assert!(open.decide(Some(&who), &action).allowed());
            proptest::prop_assert!(!closed.decide(Some(&who), &action).allowed());
        }
    }
}
