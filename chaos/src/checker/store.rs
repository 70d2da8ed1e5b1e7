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

    fn rec(
        index: u64,
        process: &str,
        kind: Kind,
        f: &str,
        value: serde_json::Value,
        t: u64,
    ) -> Record {
        Record {
            index,
            process: process.into(),
            kind,
            f: f.into(),
            value,
            time_ns: t,
            error: None,
        }
    }

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
    fn nothing_checked_is_unknown_not_valid() {
        assert_eq!(check(&[], None).valid, Validity::Unknown);
    }
}
