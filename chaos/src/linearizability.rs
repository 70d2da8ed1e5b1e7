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
    /// No order fits; `stuck_at` is the index (in the input) of the operation whose return
    /// the search got furthest to without being able to place it (the likely culprit).
    NotLinearizable {
        stuck_at: usize,
    },
    /// The search ran out of time before it found an order or proved there is none.
    Unknown,
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
    check_within(history, initial, None)
}

/// Search steps between two looks at the clock.
const STEPS_PER_CLOCK_CHECK: u32 = 4096;

/// Checks `history` starting from `initial`, giving up with [`Verdict::Unknown`] at `deadline`.
pub fn check_within(
    history: &[Operation],
    initial: Value,
    deadline: Option<std::time::Instant>,
) -> Verdict {
    // Reads with unknown outcome constrain nothing.
    let ops: Vec<(usize, &Operation)> = history
        .iter()
        .enumerate()
        .filter(|(_, o)| o.ret.is_some() || !matches!(o.op, Op::Read { .. }))
        .collect();
    let mut events: Vec<Event> = Vec::with_capacity(2 * ops.len());
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

    let mut search = Search::new(&events, ops.len(), initial);
    let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut cursor = search.first();
    let mut steps = 0u32;
    let mut furthest: Option<usize> = None;
    while search.returns_left > 0 {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(STEPS_PER_CLOCK_CHECK)
            && deadline.is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Verdict::Unknown;
        }
        let Some(here) = cursor else {
            // Only unplaceable unknown-outcome calls remain ahead: backtrack.
            match search.backtrack() {
                Some(c) => {
                    cursor = c;
                    continue;
                }
                None => {
                    return Verdict::NotLinearizable {
                        stuck_at: furthest.map_or(0, |f| ops[events[f].op].0),
                    }
                }
            }
        };
        let e = &events[here];
        match e.kind {
            Kind::Call => {
                let (_, o) = ops[e.op];
                if let Some(new_state) = step(&search.state, &o.op, o.ret.is_some()) {
                    let mut placed = search.placed.clone();
                    placed[e.op / 64] |= 1 << (e.op % 64);
                    if seen.insert((placed.clone(), new_state.clone())) {
                        search.place(here, e.op, placed, new_state);
                        cursor = search.first();
                        continue;
                    }
                }
                cursor = search.after(here);
            }
            Kind::Return => {
                // The latest return the search could not get past names the culprit.
                let worst = furthest.map_or(here, |f| f.max(here));
                furthest = Some(worst);
                match search.backtrack() {
                    Some(c) => cursor = c,
                    None => {
                        return Verdict::NotLinearizable {
                            stuck_at: ops[events[worst].op].0,
                        }
                    }
                }
            }
        }
    }
    Verdict::Linearizable
}

/// The search state: the events not yet placed, as a doubly linked list (so that placing an
/// operation unlinks its call and return, and backtracking relinks them in LIFO order), the
/// register state, and the stack of placed operations.
struct Search {
    /// `next[i]`/`prev[i]` over event indexes; index `head` is the sentinel; `END` ends it.
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    call_of: Vec<usize>,
    return_of: Vec<Option<usize>>,
    placed: Vec<u64>,
    state: Value,
    returns_left: usize,
    /// (operation, its call event, placed set and state before it)
    stack: Vec<(usize, usize, Vec<u64>, Value)>,
}

const END: usize = usize::MAX;

impl Search {
    fn new(events: &[Event], n_ops: usize, initial: Value) -> Self {
        let len = events.len();
        let head = len;
        let mut next = vec![END; len + 1];
        let mut prev = vec![head; len + 1];
        for i in 0..len {
            next[i] = if i + 1 < len { i + 1 } else { END };
            prev[i] = if i == 0 { head } else { i - 1 };
        }
        next[head] = if len > 0 { 0 } else { END };
        let mut call_of = vec![END; n_ops];
        let mut return_of = vec![None; n_ops];
        for (i, e) in events.iter().enumerate() {
            match e.kind {
                Kind::Call => call_of[e.op] = i,
                Kind::Return => return_of[e.op] = Some(i),
            }
        }
        Self {
            next,
            prev,
            head,
            call_of,
            returns_left: return_of.iter().flatten().count(),
            return_of,
            placed: vec![0u64; n_ops.div_ceil(64).max(1)],
            state: initial,
            stack: Vec::new(),
        }
    }

    fn first(&self) -> Option<usize> {
        let f = self.next[self.head];
        (f != END).then_some(f)
    }

    fn after(&self, i: usize) -> Option<usize> {
        let n = self.next[i];
        (n != END).then_some(n)
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != END {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != END {
            self.prev[n] = i;
        }
    }

    /// Linearizes operation `op` (whose call is event `call`) here.
    fn place(&mut self, call: usize, op: usize, placed: Vec<u64>, state: Value) {
        let before_placed = std::mem::replace(&mut self.placed, placed);
        let before_state = std::mem::replace(&mut self.state, state);
        self.stack.push((op, call, before_placed, before_state));
        self.unlink(call);
        if let Some(r) = self.return_of[op] {
            self.unlink(r);
            self.returns_left -= 1;
        }
    }

    /// Takes back the last placed operation. Returns where the search resumes (just after its
    /// call), or None when nothing is left to take back.
    fn backtrack(&mut self) -> Option<Option<usize>> {
        let (op, call, placed, state) = self.stack.pop()?;
        self.placed = placed;
        self.state = state;
        if let Some(r) = self.return_of[op] {
            self.relink(r);
            self.returns_left += 1;
        }
        self.relink(call);
        debug_assert_eq!(self.call_of[op], call);
        Some(self.after(call))
    }
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

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        #[derive(Debug, Clone)]
        enum Kind {
            Read,
            Write(u8),
            Delete,
            Cas(Option<u8>, u8),
        }

        fn kind() -> impl Strategy<Value = Kind> {
            prop_oneof![
                Just(Kind::Read),
                (0..4u8).prop_map(Kind::Write),
                Just(Kind::Delete),
                (proptest::option::of(0..4u8), 0..4u8).prop_map(|(e, n)| Kind::Cas(e, n)),
            ]
        }

        /// Operations with random intervals, each taking effect at a random point inside its
        /// interval; results computed by running them in that order.
        fn history() -> impl Strategy<Value = Vec<Operation>> {
            proptest::collection::vec((kind(), 0..100u64, 1..30u64, 0..1000u32), 1..25).prop_map(
                |specs| {
                    let mut timed: Vec<(u64, u64, u64, Kind)> = specs
                        .into_iter()
                        .map(|(k, start, len, at)| {
                            let point = start * 1000 + (at as u64 * len * 1000) / 1000;
                            (start * 1000, (start + len) * 1000 + 1, point, k)
                        })
                        .collect();
                    timed.sort_by_key(|t| t.2);
                    let mut state: Value = None;
                    timed
                        .into_iter()
                        .map(|(call, ret, _, k)| {
                            let op = match k {
                                Kind::Read => Op::Read {
                                    value: state.clone(),
                                },
                                Kind::Write(v) => {
                                    state = Some(vec![v]);
                                    Op::Write { value: vec![v] }
                                }
                                Kind::Delete => {
                                    state = None;
                                    Op::Delete
                                }
                                Kind::Cas(e, n) => {
                                    let expected = e.map(|e| vec![e]);
                                    let ok = expected == state;
                                    if ok {
                                        state = Some(vec![n]);
                                    }
                                    Op::Cas {
                                        expected,
                                        new: vec![n],
                                        succeeded: ok,
                                    }
                                }
                            };
                            Operation {
                                call,
                                ret: Some(ret),
                                op,
                            }
                        })
                        .collect()
                },
            )
        }

        proptest! {
            #[test]
            fn histories_that_happened_are_linearizable(h in history()) {
                prop_assert_eq!(check(&h, None), Verdict::Linearizable);
            }

            #[test]
            fn a_read_of_a_value_never_written_is_caught(h in history(), pick in any::<prop::sample::Index>()) {
                let mut h = h;
                let i = pick.index(h.len());
                h[i].op = Op::Read { value: Some(vec![99]) };
                let caught = matches!(check(&h, None), Verdict::NotLinearizable { .. });
                prop_assert!(caught, "a read of 99 was accepted");
            }
        }
    }
}
