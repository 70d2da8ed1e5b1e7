//! Examples and properties of the resource arithmetic.

use proptest::prelude::*;

use super::*;

fn r(text: &str) -> Resources {
    text.parse().unwrap()
}

#[test]
fn parses_and_prints_mesos_syntax() {
    let res = r("cpus:4; mem:8192;disk:10240;ports:[31000-32000]");
    assert_eq!(res.cpus().milli(), 4000);
    assert_eq!(res.mem_mib().as_f64(), 8192.0);
    assert_eq!(res.ports().count(), 1001);
    assert_eq!(
        res.to_string(),
        "cpus:4;disk:10240;mem:8192;ports:[31000-32000]"
    );
    assert_eq!(r(&res.to_string()), res);
    assert_eq!(r("cpus:0.5").to_string(), "cpus:0.5");
    assert_eq!(
        r("cpus:0.1;cpus:0.2").cpus().milli(),
        300,
        "summed, exactly"
    );
    assert_eq!(r("ports:[5,1-3,4]").to_string(), "ports:[1-5]");
    assert!(r("").is_empty());
    assert!(r("cpus:0").is_empty(), "a zero amount is not stored");
}

#[test]
fn bad_text_names_the_fault() {
    for (text, needle) in [
        ("cpus", "name:value"),
        ("cpus:-1", "negative"),
        ("cpus:abc", "neither a number"),
        ("Cpus:1", "lowercase"),
        ("ports:[10-5]", "ends before it begins"),
        ("ports:[a-b]", "whole numbers"),
        ("ports:31000", "ports"),
        ("licenses:1;licenses:[1-2]", "scalar in one bundle"),
        ("cpus:NaN", "finite"),
        ("mem:1e300", "too large"),
    ] {
        let err = text
            .parse::<Resources>()
            .err()
            .unwrap_or_else(|| panic!("{text:?} parsed"));
        assert!(err.to_string().contains(needle), "{text:?}: {err}");
    }
    assert!("x".repeat(MAX_TEXT_BYTES + 1).parse::<Resources>().is_err());
}

#[test]
fn subtraction_names_what_is_short() {
    let have = r("cpus:1;mem:128;ports:[31000-31001]");
    let err = have.checked_sub(&r("cpus:2")).unwrap_err();
    assert_eq!(
        err,
        ResourceError::Insufficient {
            name: "cpus".into(),
            need: "2".into(),
            have: "1".into()
        }
    );
    assert!(have.checked_sub(&r("ports:[31002-31002]")).is_err());
    assert!(have.checked_sub(&r("gpus:1")).is_err());
    assert_eq!(
        have.checked_sub(&r("cpus:0.25;ports:[31000-31000]"))
            .unwrap(),
        r("cpus:0.75;mem:128;ports:[31001-31001]")
    );
}

#[test]
fn dominant_share_is_the_largest_fraction() {
    let total = r("cpus:9;mem:18432");
    assert_eq!(
        r("cpus:1;mem:4096").dominant_share(&total),
        4096.0 / 18432.0
    );
    assert_eq!(r("cpus:3;mem:1024").dominant_share(&total), 3.0 / 9.0);
    assert_eq!(r("ports:[1-100]").dominant_share(&total), 0.0);
    assert_eq!(Resources::empty().dominant_share(&total), 0.0);
}

#[test]
fn attributes_parse_numbers_and_text() {
    let a: Attributes = "rack:a; zone:z1;generation:3".parse().unwrap();
    assert_eq!(a.get("rack"), Some(&AttributeValue::Text("a".into())));
    assert_eq!(a.get("generation"), Some(&AttributeValue::Number(3.0)));
    assert_eq!(a.to_string(), "generation:3;rack:a;zone:z1");
    assert!("rack:a;rack:b".parse::<Attributes>().is_err());
    assert!("rack".parse::<Attributes>().is_err());
    assert!("rack:".parse::<Attributes>().is_err());
}

#[test]
fn serde_rechecks_invariants() {
    let res = r("cpus:2;ports:[1-3,5-9]");
    let json = serde_json::to_string(&res).unwrap();
    assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), res);
    // A peer sending an inverted range or a bad name is refused at decoding.
    let bad = r#"{"scalars":[],"ranges":[["ports",[{"begin":9,"end":1}]]]}"#;
    assert!(serde_json::from_str::<Resources>(bad).is_err());
    let bad = r#"{"scalars":[["CPUS",1000]],"ranges":[]}"#;
    assert!(serde_json::from_str::<Resources>(bad).is_err());
}

fn ranges_strategy() -> impl Strategy<Value = Ranges> {
    prop::collection::vec((0u64..200, 0u64..20), 0..6)
        .prop_map(|v| Ranges::new(v.into_iter().map(|(b, len)| (b, b + len))).unwrap())
}

fn resources_strategy() -> impl Strategy<Value = Resources> {
    (
        0u64..8_000,
        0u64..100_000,
        prop::option::of(0u64..3_000),
        ranges_strategy(),
    )
        .prop_map(|(cpus, mem, gpus, ports)| {
            let mut res = Resources::empty()
                .with_scalar(CPUS, Scalar::from_milli(cpus).unwrap())
                .unwrap()
                .with_scalar(MEM, Scalar::from_milli(mem).unwrap())
                .unwrap()
                .with_ranges(PORTS, ports)
                .unwrap();
            if let Some(g) = gpus {
                res = res
                    .with_scalar("gpus", Scalar::from_milli(g).unwrap())
                    .unwrap();
            }
            res
        })
}

/// A reference model of a range set: the integers themselves.
fn model(r: &Ranges) -> std::collections::BTreeSet<u64> {
    r.values().collect()
}

proptest! {
    #[test]
    fn ranges_behave_like_sets(a in ranges_strategy(), b in ranges_strategy()) {
        let (ma, mb) = (model(&a), model(&b));
        prop_assert_eq!(model(&a.union(&b)), ma.union(&mb).copied().collect());
        prop_assert_eq!(model(&a.difference(&b)), ma.difference(&mb).copied().collect());
        prop_assert_eq!(a.contains(&b), mb.is_subset(&ma));
        prop_assert_eq!(a.count(), ma.len() as u64);
        for x in 0..230 {
            prop_assert_eq!(a.contains_value(x), ma.contains(&x));
        }
        // Canonical form: built from its own values, a set is the same value.
        prop_assert_eq!(Ranges::new(ma.iter().map(|x| (*x, *x))).unwrap(), a.clone());
        let n = a.count() / 2;
        let first = a.first(n).unwrap();
        prop_assert_eq!(model(&first), ma.iter().take(n as usize).copied().collect());
        prop_assert!(a.first(a.count() + 1).is_none());
    }

    #[test]
    fn add_then_sub_gives_back_the_start(a in resources_strategy(), b in resources_strategy()) {
        // Ports may overlap; the property holds for what is disjoint.
        let b = b.saturating_sub(&Resources::empty().with_ranges(PORTS, a.ports()).unwrap());
        let sum = a.checked_add(&b).unwrap();
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        prop_assert_eq!(sum.checked_sub(&b).unwrap(), a.clone());
        prop_assert_eq!(sum.checked_sub(&a).unwrap(), b);
    }

    #[test]
    fn sub_succeeds_exactly_when_contained(a in resources_strategy(), b in resources_strategy()) {
        match a.checked_sub(&b) {
            Ok(left) => {
                prop_assert!(a.contains(&b));
                prop_assert_eq!(left.checked_add(&b).unwrap(), a.clone());
                prop_assert_eq!(a.saturating_sub(&b), left);
            }
            Err(_) => prop_assert!(!a.contains(&b)),
        }
        // Never below zero.
        let s = a.saturating_sub(&b);
        prop_assert!(a.contains(&s));
    }

    #[test]
    fn text_round_trips(a in resources_strategy()) {
        prop_assert_eq!(a.to_string().parse::<Resources>().unwrap(), a);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,80}") {
        let _ = text.parse::<Resources>();
        let _ = text.parse::<Attributes>();
    }
}

#[test]
fn well_known_names_have_their_kind() {
    assert!("cpus:[1-2]".parse::<Resources>().is_err());
    assert!("ports:[1-2]".parse::<Resources>().is_ok());
    assert!("bandwidth:[1-2];licenses:3".parse::<Resources>().is_ok());
}
