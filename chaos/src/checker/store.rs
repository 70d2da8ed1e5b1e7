//! Invariant 7: the framework store is linearizable. Splits the store workload's operations by
//! key (each key is an independent register) and searches each key's history with
//! [`crate::linearizability`]; failed writes are dropped (they did not happen), unknown ones
//! may take effect at any point after their invocation or never, failed and unknown reads
//! constrain nothing.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::{cite, CheckerResult, Validity, MAX_COUNTEREXAMPLES};
use crate::history::{pairs, Kind, Pair, Record};
use crate::linearizability::{check_within, Op, Operation, Value, Verdict};

pub const NAME: &str = "store-linearizable";

fn value_of(v: &serde_json::Value) -> Value {
    v.as_str().map(|s| s.as_bytes().to_vec())
}

/// The register operation a pair stands for; None when it constrains nothing.
fn operation(p: &Pair<'_>) -> Option<Operation> {
    let call = p.invoke.time_ns;
    let outcome = p.outcome();
    let ret = p.complete.filter(|c| c.kind == Kind::Ok).map(|c| c.time_ns);
    let args = &p.invoke.value;
    let op = match p.invoke.f.as_str() {
        "read" => {
            let done = p.complete.filter(|_| outcome == Kind::Ok)?;
            Op::Read {
                value: value_of(&done.value["value"]),
            }
        }
        "write" => {
            if outcome == Kind::Fail {
                return None;
            }
            Op::Write {
                value: value_of(&args["value"])?,
            }
        }
        "cas" => {
            if outcome == Kind::Fail {
                return None;
            }
            Op::Cas {
                expected: value_of(&args["expected"]),
                new: value_of(&args["new"])?,
                succeeded: p
                    .complete
                    .filter(|_| outcome == Kind::Ok)
                    .and_then(|c| c.value["succeeded"].as_bool())
                    .unwrap_or(false),
            }
        }
        "delete" => {
            if outcome == Kind::Fail {
                return None;
            }
            Op::Delete
        }
        _ => return None,
    };
    Some(Operation { call, ret, op })
}

/// Checks every key of the store workload; gives up (unknown) on keys still searched at
/// `deadline`.
pub fn check(history: &[Record], deadline: Option<Instant>) -> CheckerResult {
    let all = pairs(history, |p| p.starts_with("store-"));
    let mut by_key: BTreeMap<String, Vec<(Operation, Pair<'_>)>> = BTreeMap::new();
    let (mut ok, mut fail, mut info) = (0u64, 0u64, 0u64);
    for p in all {
        match p.outcome() {
            Kind::Ok => ok += 1,
            Kind::Fail => fail += 1,
            _ => info += 1,
        }
        let Some(key) = p.invoke.value["key"].as_str().map(str::to_string) else {
            continue;
        };
        if let Some(op) = operation(&p) {
            by_key.entry(key).or_default().push((op, p));
        }
    }
    let mut invalid = Vec::new();
    let mut unknown = Vec::new();
    for (key, ops) in &by_key {
        let plain: Vec<Operation> = ops.iter().map(|(o, _)| o.clone()).collect();
        match check_within(&plain, None, deadline) {
            Verdict::Linearizable => {}
            Verdict::Unknown => unknown.push(key.clone()),
            Verdict::NotLinearizable { stuck_at } => {
                if invalid.len() < MAX_COUNTEREXAMPLES {
                    invalid.push(counterexample(key, ops, stuck_at));
                }
            }
        }
    }
    let stats = json!({
        "operations": ok + fail + info, "ok": ok, "fail": fail, "info": info,
        "keys": by_key.len(), "keys_unknown": unknown,
    });
    let (valid, summary) = if !invalid.is_empty() {
        (
            Validity::Invalid,
            format!(
                "{} of {} keys have no linearization",
                invalid.len(),
                by_key.len()
            ),
        )
    } else if !unknown.is_empty() {
        (
            Validity::Unknown,
            format!(
                "{} of {} keys not decided within the time limit",
                unknown.len(),
                by_key.len()
            ),
        )
    } else if ok == 0 {
        (
            Validity::Unknown,
            "no store operation succeeded: nothing was checked".to_string(),
        )
    } else {
        (
            Validity::Valid,
            format!(
                "{} keys linearizable ({ok} ok, {fail} failed, {info} unknown operations)",
                by_key.len()
            ),
        )
    };
    CheckerResult {
        checker: NAME.into(),
        invariant: "7. the framework store is linearizable".into(),
        valid,
        summary,
        stats,
        counterexamples: invalid,
    }
}

/// How long after the last heal the store may take to serve again.
pub const AVAILABILITY_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// Liveness of the store: after the last heal, a write or compare-and-set invoked then
/// succeeds within [`AVAILABILITY_BOUND`] (reads alone do not count: a leader that still
/// confirms its leadership can serve them while nothing commits). Also counts, as figures, how many operations succeeded during
/// faults and outside them.
pub fn available_after_heal(history: &[Record]) -> CheckerResult {
    let heal = super::last_heal_ns(history);
    let ops = pairs(history, |p| p.starts_with("store-"));
    let first_ok = ops
        .iter()
        .filter(|p| p.invoke.time_ns >= heal && p.outcome() == Kind::Ok && p.invoke.f != "read")
        .filter_map(|p| p.complete.map(|c| c.time_ns))
        .min();
    let (mut during, mut during_ok, mut outside, mut outside_ok) = (0u64, 0u64, 0u64, 0u64);
    let faults: Vec<(u64, u64)> = crate::history::fault_periods(history)
        .into_iter()
        .map(|p| (p.from_ns, p.to_ns.unwrap_or(u64::MAX)))
        .collect();
    for p in &ops {
        let t = p.invoke.time_ns;
        let ok = p.outcome() == Kind::Ok;
        if faults.iter().any(|(a, b)| (*a..=*b).contains(&t)) {
            during += 1;
            during_ok += u64::from(ok);
        } else {
            outside += 1;
            outside_ok += u64::from(ok);
        }
    }
    let took = first_ok.map(|t| t.saturating_sub(heal));
    let bound = AVAILABILITY_BOUND.as_nanos() as u64;
    let (valid, summary, counterexamples) = match took {
        _ if ops.is_empty() => (Validity::Unknown, "no store operation at all".to_string(), vec![]),
        Some(t) if t <= bound => (
            Validity::Valid,
            format!(
                "served {:.1} s after the last heal; ok during faults {during_ok}/{during}, outside {outside_ok}/{outside}",
                t as f64 / 1e9
            ),
            vec![],
        ),
        _ => (
            Validity::Invalid,
            format!("no write succeeded within {AVAILABILITY_BOUND:?} of the last heal"),
            vec![json!({"last_heal_s": heal as f64 / 1e9,
                        "first_ok_s": first_ok.map(|t| t as f64 / 1e9)})],
        ),
    };
    CheckerResult {
        checker: "store-available-after-heal".into(),
        invariant:
            "5. liveness: after faults heal, the store commits writes again within the bound".into(),
        valid,
        summary,
        stats: json!({"served_after_heal_s": took.map(|t| t as f64 / 1e9),
                      "during_faults": {"ok": during_ok, "all": during},
                      "outside_faults": {"ok": outside_ok, "all": outside}}),
        counterexamples,
    }
}

/// The operation no order could place, with the key's operations that overlap it or ended
/// just before it.
fn counterexample(key: &str, ops: &[(Operation, Pair<'_>)], stuck_at: usize) -> serde_json::Value {
    let (stuck, p) = &ops[stuck_at];
    let end = stuck.ret.unwrap_or(u64::MAX);
    let mut context: Vec<&(Operation, Pair<'_>)> = ops
        .iter()
        .filter(|(o, _)| o.call <= end && o.ret.is_none_or(|r| r + 5_000_000_000 >= stuck.call))
        .collect();
    context.sort_by_key(|(o, _)| o.call);
    let context: Vec<serde_json::Value> = context
        .iter()
        .rev()
        .take(16)
        .rev()
        .map(|(_, q)| json!({"invoke": cite(q.invoke), "complete": q.complete.map(cite)}))
        .collect();
    json!({
        "key": key,
        "why": "no order of the key's operations consistent with real time explains this operation's result",
        "operation": {"invoke": cite(p.invoke), "complete": p.complete.map(cite)},
        "around": context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::history::record as rec;

    #[test]
    fn a_stale_read_is_caught_and_cited() {
        let h = vec![
            rec(
                0,
                "store-0",
                Kind::Invoke,
                "write",
                json!({"key": "k", "value": "a"}),
                1,
            ),
            rec(
                1,
                "store-0",
                Kind::Ok,
                "write",
                json!({"key": "k", "value": "a"}),
                2,
            ),
            rec(
                2,
                "store-0",
                Kind::Invoke,
                "write",
                json!({"key": "k", "value": "b"}),
                3,
            ),
            rec(
                3,
                "store-0",
                Kind::Ok,
                "write",
                json!({"key": "k", "value": "b"}),
                4,
            ),
            rec(4, "store-1", Kind::Invoke, "read", json!({"key": "k"}), 5),
            rec(
                5,
                "store-1",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": "a"}),
                6,
            ),
        ];
        let r = check(&h, None);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.counterexamples[0]["operation"]["invoke"]["index"], 4);
    }

    #[test]
    fn a_failed_write_that_is_read_anyway_is_caught() {
        let h = vec![
            rec(
                0,
                "store-0",
                Kind::Invoke,
                "write",
                json!({"key": "k", "value": "a"}),
                1,
            ),
            rec(1, "store-0", Kind::Fail, "write", json!({"key": "k"}), 2),
            rec(2, "store-1", Kind::Invoke, "read", json!({"key": "k"}), 3),
            rec(
                3,
                "store-1",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": "a"}),
                4,
            ),
        ];
        assert_eq!(check(&h, None).valid, Validity::Invalid);
    }

    #[test]
    fn an_unknown_write_may_show_up_later() {
        let h = vec![
            rec(
                0,
                "store-0",
                Kind::Invoke,
                "write",
                json!({"key": "k", "value": "a"}),
                1,
            ),
            rec(1, "store-0", Kind::Info, "write", json!({"key": "k"}), 2),
            rec(2, "store-1", Kind::Invoke, "read", json!({"key": "k"}), 3),
            rec(
                3,
                "store-1",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": null}),
                4,
            ),
            rec(4, "store-1", Kind::Invoke, "read", json!({"key": "k"}), 5),
            rec(
                5,
                "store-1",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": "a"}),
                6,
            ),
        ];
        let r = check(&h, None);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.stats["info"], 1);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        // CAS from absent succeeded, then a read finds the key absent again.
        let h = vec![
            rec(
                0,
                "store-0",
                Kind::Invoke,
                "cas",
                json!({"key": "k", "expected": null, "new": "x"}),
                1,
            ),
            rec(
                1,
                "store-0",
                Kind::Ok,
                "cas",
                json!({"key": "k", "succeeded": true}),
                2,
            ),
            rec(2, "store-1", Kind::Invoke, "read", json!({"key": "k"}), 3),
            rec(
                3,
                "store-1",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": null}),
                4,
            ),
        ];
        assert_eq!(check(&h, None).valid, Validity::Invalid);
    }

    #[test]
    fn a_store_that_never_serves_after_the_heal_is_caught() {
        let h = vec![
            rec(0, "store-0", Kind::Invoke, "read", json!({"key": "k"}), 1),
            rec(
                1,
                "store-0",
                Kind::Ok,
                "read",
                json!({"key": "k", "value": null}),
                2,
            ),
            rec(
                2,
                "nemesis",
                Kind::Info,
                "start",
                json!({"fault": "restart-all"}),
                3,
            ),
            rec(3, "nemesis", Kind::Info, "stop", json!({}), 4),
            rec(4, "store-0", Kind::Invoke, "read", json!({"key": "k"}), 5),
            rec(5, "store-0", Kind::Fail, "read", json!({"key": "k"}), 6),
        ];
        assert_eq!(available_after_heal(&h).valid, Validity::Invalid);
        let mut served = h.clone();
        let read = json!({"key": "k"});
        served.push(rec(6, "store-1", Kind::Invoke, "read", read.clone(), 7));
        served.push(rec(7, "store-1", Kind::Ok, "read", read, 8));
        assert_eq!(
            available_after_heal(&served).valid,
            Validity::Invalid,
            "reads alone do not show that anything commits"
        );
        let write = json!({"key": "k", "value": "1.0:1"});
        served.push(rec(8, "store-1", Kind::Invoke, "write", write.clone(), 9));
        served.push(rec(9, "store-1", Kind::Ok, "write", write, 10));
        assert_eq!(available_after_heal(&served).valid, Validity::Valid);
    }

    #[test]
    fn nothing_checked_is_unknown_not_valid() {
        assert_eq!(check(&[], None).valid, Validity::Unknown);
    }
}
