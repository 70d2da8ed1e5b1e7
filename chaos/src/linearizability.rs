//! A linearizability checker for histories of operations on one register (one key of the
//! framework store): read, write, delete and compare-and-set.
//!
//! The algorithm is Wing & Gong's search with Lowe's memoisation (as in Knossos and
//! Porcupine): walk the history in real-time order, try to linearize each pending call at the
//! current point, backtrack when an operation's return is reached before it could be placed,
//! and never revisit a (set of linearized operations, register state) pair.
//!
//! Operations whose outcome is unknown (the client timed out or lost the connection; Jepsen's
//! `:info`) have no return: they may take effect at any point after their call, or never. A
//! compare-and-set with an unknown outcome that takes effect succeeded; one that did not take
//! effect is the same as one that never happened.

use std::collections::HashSet;

/// A register value; `None` is "absent".
pub type Value = Option<Vec<u8>>;

/// What an operation did, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read returned `value`.
    Read {
        value: Value,
    },
    Write {
        value: Vec<u8>,
    },
    Delete,
    /// Compare-and-set; `expected: None` requires the key to be absent. `succeeded` is
    /// ignored when the outcome is unknown.
    Cas {
        expected: Value,
        new: Vec<u8>,
        succeeded: bool,
    },
}

/// One operation in a history. Times are from one monotonic clock (e.g. nanoseconds since the
/// test started).
#[derive(Clone, Debug)]
pub struct Operation {
    pub call: u64,
    /// `None` when the outcome is unknown.
    pub ret: Option<u64>,
    pub op: Op,
}

/// The verdict, with a witness when the history is not linearizable.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order fits; `stuck_at` is the index (in the input) of an operation whose return
    /// was reached with no way left to place it.
    NotLinearizable {
        stuck_at: usize,
    },
}

/// Applies `op` to `state` if it can happen there; returns the next state.
fn step(state: &Value, op: &Op, known_outcome: bool) -> Option<Value> {
    match op {
        Op::Read { value } => (value == state).then(|| state.clone()),
        Op::Write { value } => Some(Some(value.clone())),
        Op::Delete => Some(None),
        Op::Cas {
            expected,
            new,
            succeeded,
        } => {
            let holds = expected == state;
            if !known_outcome {
                // Placed means it took effect, which it can only have done if it held.
                return holds.then(|| Some(new.clone()));
            }
            match (succeeded, holds) {
                (true, true) => Some(Some(new.clone())),
                (false, false) => Some(state.clone()),
                _ => None,
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Return,
}

struct Event {
    kind: Kind,
    op: usize,
    time: u64,
}

/// Checks `history` starting from `initial`.
pub fn check(history: &[Operation], initial: Value) -> Verdict {
    // Reads with unknown outcome constrain nothing.
    let ops: Vec<(usize, &Operation)> = history
        .iter()
        .enumerate()
        .filter(|(_, o)| o.ret.is_some() || !matches!(o.op, Op::Read { .. }))
        .collect();
    let n = ops.len();
    let mut events: Vec<Event> = Vec::with_capacity(2 * n);
    for (i, (_, o)) in ops.iter().enumerate() {
        events.push(Event {
            kind: Kind::Call,
            op: i,
            time: o.call,
        });
        if let Some(r) = o.ret {
            events.push(Event {
                kind: Kind::Return,
                op: i,
                time: r,
            });
        }
    }
    // Real-time order; on equal times calls come first, so touching operations count as
    // concurrent (the permissive reading).
    events.sort_by_key(|e| (e.time, e.kind == Kind::Return));

    // A doubly linked list over `events` (index `len` is the head sentinel), so that placed
    // operations can be unlinked and relinked in LIFO order.
    let len = events.len();
    let head = len;
    let end = usize::MAX;
    let mut next = vec![end; len + 1];
    let mut prev = vec![head; len + 1];
    for i in 0..len {
        next[i] = if i + 1 < len { i + 1 } else { end };
        prev[i] = if i == 0 { head } else { i - 1 };
    }
    next[head] = if len > 0 { 0 } else { end };
    let mut return_of = vec![end; n];
    let mut call_of = vec![end; n];
    let mut returns_left = 0usize;
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            Kind::Call => call_of[e.op] = i,
            Kind::Return => {
                return_of[e.op] = i;
                returns_left += 1;
            }
        }
    }

    let unlink = |i: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx != end {
            prev[nx] = p;
        }
    };
    let relink = |i: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx != end {
            prev[nx] = i;
        }
    };

    let words = n.div_ceil(64).max(1);
    let mut placed = vec![0u64; words];
    let mut state = initial;
    let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
    // (op, state before it)
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut cursor = next[head];
    while returns_left > 0 {
        if cursor == end {
            // Only unplaceable unknown-outcome calls remain ahead: backtrack.
            match stack.pop() {
                None => return Verdict::NotLinearizable { stuck_at: 0 },
                Some((op, before)) => {
                    cursor = undo(
                        op,
                        before,
                        &mut state,
                        &mut placed,
                        &return_of,
                        &call_of,
                        &mut returns_left,
                        &mut next,
                        &mut prev,
                        relink,
                    );
                    continue;
                }
            }
        }
        let e = &events[cursor];
        match e.kind {
            Kind::Call => {
                let (_, o) = ops[e.op];
                if let Some(new_state) = step(&state, &o.op, o.ret.is_some()) {
                    let mut new_placed = placed.clone();
                    new_placed[e.op / 64] |= 1 << (e.op % 64);
                    if seen.insert((new_placed.clone(), new_state.clone())) {
                        stack.push((e.op, std::mem::replace(&mut state, new_state)));
                        placed = new_placed;
                        unlink(cursor, &mut next, &mut prev);
                        if return_of[e.op] != end {
                            unlink(return_of[e.op], &mut next, &mut prev);
                            returns_left -= 1;
                        }
                        cursor = next[head];
                        continue;
                    }
                }
                cursor = next[cursor];
            }
            Kind::Return => match stack.pop() {
                None => {
                    return Verdict::NotLinearizable {
                        stuck_at: ops[e.op].0,
                    }
                }
                Some((op, before)) => {
                    cursor = undo(
                        op,
                        before,
                        &mut state,
                        &mut placed,
                        &return_of,
                        &call_of,
                        &mut returns_left,
                        &mut next,
                        &mut prev,
                        relink,
                    );
                }
            },
        }
    }
    Verdict::Linearizable
}

/// Takes back the last placed operation; returns where the search resumes (just after its
/// call).
#[allow(clippy::too_many_arguments)]
fn undo(
    op: usize,
    before: Value,
    state: &mut Value,
    placed: &mut [u64],
    return_of: &[usize],
    call_of: &[usize],
    returns_left: &mut usize,
    next: &mut Vec<usize>,
    prev: &mut Vec<usize>,
    relink: impl Fn(usize, &mut Vec<usize>, &mut Vec<usize>),
) -> usize {
    *state = before;
    placed[op / 64] &= !(1 << (op % 64));
    if return_of[op] != usize::MAX {
        relink(return_of[op], next, prev);
        *returns_left += 1;
    }
    relink(call_of[op], next, prev);
    next[call_of[op]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: u8) -> Value {
        Some(vec![x])
    }
    fn op(call: u64, ret: u64, op: Op) -> Operation {
        Operation {
            call,
            ret: Some(ret),
            op,
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(0, 1, Op::Write { value: vec![1] }),
            op(2, 3, Op::Read { value: v(1) }),
            op(
                4,
                5,
                Op::Cas {
                    expected: v(1),
                    new: vec![2],
                    succeeded: true,
                },
            ),
            op(
                6,
                7,
                Op::Cas {
                    expected: v(1),
                    new: vec![3],
                    succeeded: false,
                },
            ),
            op(8, 9, Op::Delete),
            op(10, 11, Op::Read { value: None }),
        ];
        assert_eq!(check(&h, None), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_caught() {
        let h = vec![
            op(0, 1, Op::Write { value: vec![1] }),
            op(2, 3, Op::Write { value: vec![2] }),
            op(4, 5, Op::Read { value: v(1) }),
        ];
        assert!(matches!(check(&h, None), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn concurrent_ops_may_reorder() {
        // The read overlaps the write, so it may see either value.
        let h = vec![
            op(0, 10, Op::Write { value: vec![2] }),
            op(1, 2, Op::Read { value: v(2) }),
            op(3, 4, Op::Read { value: v(2) }),
        ];
        assert_eq!(check(&h, v(1)), Verdict::Linearizable);
        // ...but two sequential reads cannot go back in time.
        let h = vec![
            op(0, 10, Op::Write { value: vec![2] }),
            op(1, 2, Op::Read { value: v(2) }),
            op(3, 4, Op::Read { value: v(1) }),
        ];
        assert!(matches!(check(&h, v(1)), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn two_cas_winners_on_one_value_are_caught() {
        let h = vec![
            op(
                0,
                10,
                Op::Cas {
                    expected: v(1),
                    new: vec![2],
                    succeeded: true,
                },
            ),
            op(
                0,
                10,
                Op::Cas {
                    expected: v(1),
                    new: vec![3],
                    succeeded: true,
                },
            ),
        ];
        assert!(matches!(check(&h, v(1)), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_apply() {
        let unknown = |call, op| Operation {
            call,
            ret: None,
            op,
        };
        // Took effect: a later read sees it.
        let h = vec![
            unknown(0, Op::Write { value: vec![7] }),
            op(5, 6, Op::Read { value: v(7) }),
        ];
        assert_eq!(check(&h, None), Verdict::Linearizable);
        // Did not take effect (yet): a later read does not see it.
        let h = vec![
            unknown(0, Op::Write { value: vec![7] }),
            op(5, 6, Op::Read { value: None }),
        ];
        assert_eq!(check(&h, None), Verdict::Linearizable);
        // But it cannot take effect before it was called.
        let h = vec![
            op(0, 1, Op::Read { value: v(7) }),
            unknown(5, Op::Write { value: vec![7] }),
        ];
        assert!(matches!(check(&h, None), Verdict::NotLinearizable { .. }));
    }
}
