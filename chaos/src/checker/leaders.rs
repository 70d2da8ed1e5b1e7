//! Invariant 6: at most one leader per Raft term. The monitor ([`crate::monitor`]) recorded
//! every change in what each master said of itself (term, role, leader it knows); a term in
//! which two different masters were named leader, by themselves or by another master, is a
//! violation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{cite, CheckerResult, Validity, MAX_COUNTEREXAMPLES};
use crate::history::Record;

pub const NAME: &str = "one-leader-per-term";

pub fn check(history: &[Record]) -> CheckerResult {
    // term -> leader named -> the records that named it
    let mut named: BTreeMap<u64, BTreeMap<u64, Vec<&Record>>> = BTreeMap::new();
    let mut observations = 0u64;
    let mut nodes = BTreeSet::new();
    for r in history
        .iter()
        .filter(|r| r.process == "monitor" && r.f == "status")
    {
        observations += 1;
        let v = &r.value;
        let (Some(node), Some(term)) = (v["node"].as_u64(), v["term"].as_u64()) else {
            continue;
        };
        nodes.insert(node);
        let mut leaders = BTreeSet::new();
        if let Some(l) = v["leader"].as_u64().filter(|l| *l != 0) {
            leaders.insert(l);
        }
        if v["role"].as_str() == Some("leader") {
            leaders.insert(node);
        }
        for l in leaders {
            named.entry(term).or_default().entry(l).or_default().push(r);
        }
    }
    let mut counterexamples = Vec::new();
    let mut bad_terms = 0usize;
    for (term, leaders) in &named {
        if leaders.len() > 1 {
            bad_terms += 1;
            if counterexamples.len() < MAX_COUNTEREXAMPLES {
                let by: BTreeMap<String, Vec<serde_json::Value>> = leaders
                    .iter()
                    .map(|(l, rs)| {
                        (
                            format!("master-{l}"),
                            rs.iter().take(4).map(|r| cite(r)).collect(),
                        )
                    })
                    .collect();
                counterexamples.push(json!({"term": term, "leaders": by}));
            }
        }
    }
    let terms_with_leader = named.len();
    let (valid, summary) = if bad_terms > 0 {
        (
            Validity::Invalid,
            format!("{bad_terms} terms had more than one leader"),
        )
    } else if terms_with_leader == 0 {
        (
            Validity::Unknown,
            "the monitor saw no leader at all: nothing was checked".to_string(),
        )
    } else {
        (
            Validity::Valid,
            format!(
                "{terms_with_leader} terms, one leader each ({observations} observations of {} masters)",
                nodes.len()
            ),
        )
    };
    CheckerResult {
        checker: NAME.into(),
        invariant: "6. at most one leader per Raft term".into(),
        valid,
        summary,
        stats: json!({"observations": observations, "terms_with_leader": terms_with_leader}),
        counterexamples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Kind;

    fn status(index: u64, node: u64, term: u64, role: &str, leader: u64) -> Record {
        Record {
            index,
            process: "monitor".into(),
            kind: Kind::Info,
            f: "status".into(),
            value: json!({"node": node, "term": term, "role": role, "leader": leader}),
            time_ns: index * 1000,
            error: None,
        }
    }

    #[test]
    fn successive_leaders_in_successive_terms_are_valid() {
        let h = vec![
            status(0, 1, 2, "leader", 1),
            status(1, 2, 2, "follower", 1),
            status(2, 2, 3, "leader", 2),
            status(3, 1, 3, "follower", 2),
        ];
        assert_eq!(check(&h).valid, Validity::Valid);
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let h = vec![
            status(0, 1, 4, "leader", 1),
            status(1, 3, 4, "follower", 0),
            status(2, 2, 4, "leader", 2),
        ];
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.counterexamples[0]["term"], 4);
    }

    #[test]
    fn a_follower_naming_another_leader_in_the_term_is_caught() {
        let h = vec![status(0, 1, 5, "leader", 1), status(1, 2, 5, "follower", 3)];
        assert_eq!(check(&h).valid, Validity::Invalid);
    }
}
