//! Sets of integers as sorted, disjoint, non-adjacent inclusive intervals (port ranges).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// Most intervals in one range set: a bound on what one agent's `--resources` can allocate.
pub const MAX_INTERVALS: usize = 4096;

/// One inclusive interval `[begin, end]`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Range {
    pub begin: u64,
    pub end: u64,
}

/// A set of integers. Invariant: intervals sorted, `begin <= end`, and each ends at least two
/// before the next begins (adjacent ones are merged), so equal sets are equal values.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Range>", into = "Vec<Range>")]
pub struct Ranges(SmallVec<[Range; 1]>);

impl Ranges {
    /// The set covering `intervals` (in any order, overlapping or not).
    pub fn new(intervals: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, String> {
        let mut v: SmallVec<[Range; 1]> = SmallVec::new();
        for (begin, end) in intervals {
            if begin > end {
                return Err(format!("range {begin}-{end} ends before it begins"));
            }
            v.push(Range { begin, end });
            if v.len() > MAX_INTERVALS {
                return Err(format!("more than {MAX_INTERVALS} intervals"));
            }
        }
        Ok(Self::normalized(v))
    }

    fn normalized(mut v: SmallVec<[Range; 1]>) -> Self {
        v.sort();
        let mut out: SmallVec<[Range; 1]> = SmallVec::with_capacity(v.len());
        for r in v {
            match out.last_mut() {
                Some(last) if r.begin <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end);
                }
                _ => out.push(r),
            }
        }
        Self(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many integers the set holds.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|r| (r.end - r.begin).saturating_add(1))
            .fold(0u64, u64::saturating_add)
    }

    pub fn intervals(&self) -> &[Range] {
        &self.0
    }

    /// Every integer in the set, in order.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|r| r.begin..=r.end)
    }

    pub fn contains_value(&self, x: u64) -> bool {
        let i = self.0.partition_point(|r| r.end < x);
        self.0.get(i).is_some_and(|r| r.begin <= x)
    }

    /// Whether every integer of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        other.0.iter().all(|o| {
            let i = self.0.partition_point(|r| r.end < o.begin);
            self.0
                .get(i)
                .is_some_and(|r| r.begin <= o.begin && o.end <= r.end)
        })
    }

    pub fn union(&self, other: &Ranges) -> Ranges {
        Self::normalized(self.0.iter().chain(other.0.iter()).copied().collect())
    }

    /// The integers of `self` not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = SmallVec::new();
        for r in &self.0 {
            let mut begin = r.begin;
            let mut done = false;
            for o in other
                .0
                .iter()
                .filter(|o| o.end >= r.begin && o.begin <= r.end)
            {
                if o.begin > begin {
                    out.push(Range {
                        begin,
                        end: o.begin - 1,
                    });
                }
                if o.end >= r.end {
                    done = true;
                    break;
                }
                begin = o.end + 1;
            }
            if !done {
                out.push(Range { begin, end: r.end });
            }
        }
        Self(out)
    }

    /// The `n` lowest integers of the set, or None if it holds fewer.
    pub fn first(&self, n: u64) -> Option<Ranges> {
        let mut left = n;
        let mut out = SmallVec::new();
        for r in &self.0 {
            if left == 0 {
                break;
            }
            let size = (r.end - r.begin).saturating_add(1);
            let take = size.min(left);
            out.push(Range {
                begin: r.begin,
                end: r.begin + (take - 1),
            });
            left -= take;
        }
        (left == 0).then_some(Self(out))
    }
}

impl TryFrom<Vec<Range>> for Ranges {
    type Error = String;
    fn try_from(v: Vec<Range>) -> Result<Self, String> {
        Self::new(v.into_iter().map(|r| (r.begin, r.end)))
    }
}

impl From<Ranges> for Vec<Range> {
    fn from(r: Ranges) -> Vec<Range> {
        r.0.into_vec()
    }
}

impl fmt::Display for Ranges {
    /// `[31000-31009,32000-32000]`, as Mesos writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}", r.begin, r.end)?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Ranges {
    type Err = String;

    /// `[a-b,c-d,e]` (a lone number is a one-value range).
    fn from_str(s: &str) -> Result<Self, String> {
        let inner = s
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| format!("{s:?}: expected [begin-end,…]"))?;
        let mut intervals = Vec::new();
        for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let parse = |x: &str| {
                x.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{part:?}: expected begin-end with whole numbers"))
            };
            intervals.push((parse(a)?, parse(b)?));
            if intervals.len() > MAX_INTERVALS {
                return Err(format!("more than {MAX_INTERVALS} intervals"));
            }
        }
        Ranges::new(intervals)
    }
}
