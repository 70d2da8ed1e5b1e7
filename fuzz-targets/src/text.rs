//! Text decoders: Mesos-syntax resources and attributes (agent flags, offers' text), the ACL
//! file, and Marathon's app definitions.

use std::str::FromStr;

use drover_acl::{Acls, Action};
use drover_resources::{Attributes, Ranges, Resources};
use drover_scheduler::marathon::app::parse_app;

use crate::select;

/// Resources, ranges or attributes in Mesos syntax: what parses prints as text that parses
/// back to the same value.
pub fn resources(data: &[u8]) {
    let (which, bytes) = select(data);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match which % 3 {
        0 => round_trip::<Resources>(text),
        1 => round_trip::<Ranges>(text),
        _ => round_trip::<Attributes>(text),
    }
}

fn round_trip<T>(text: &str)
where
    T: FromStr + std::fmt::Display + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        let again = printed.parse::<T>().unwrap_or_else(|e| {
            panic!("{printed:?}, printed from {text:?}, does not parse: {e:?}")
        });
        assert_eq!(again, value, "{text:?} printed as {printed:?}");
    }
}

/// An ACL file: parsed (or refused with the field at fault), then asked about every kind of
/// action for a principal, none and the empty name.
pub fn acls(data: &[u8]) {
    let Ok(acls) = Acls::from_json(data) else {
        return;
    };
    let actions = [
        Action::RegisterFramework { role: "*" },
        Action::RunTask { user: "nobody" },
        Action::RunTask { user: "" },
        Action::TeardownFramework {
            framework_principal: "fw",
        },
        Action::KillTask {
            framework_principal: "fw",
        },
        Action::Operator {
            call: "drain_agent",
        },
        Action::ReadState,
        Action::ReadMetrics,
        Action::Store {
            namespace: "ns",
            write: true,
        },
    ];
    for principal in [Some("fw"), Some(""), None] {
        for action in &actions {
            let decision = acls.decide(principal, action);
            assert_eq!(
                decision.allowed(),
                decision.refusal(principal, action).is_none()
            );
        }
    }
}

/// A Marathon app definition (`POST /v2/apps`): what is accepted, written back as JSON, is
/// accepted again as the same app (a client's GET, edit, PUT).
pub fn marathon_app(data: &[u8]) {
    let Ok(app) = parse_app(data) else {
        return;
    };
    let json = serde_json::to_vec(&app).expect("an app encodes");
    let again = parse_app(&json)
        .unwrap_or_else(|e| panic!("{} is refused: {e:?}", String::from_utf8_lossy(&json)));
    assert_eq!(again, app);
}
