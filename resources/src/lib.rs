//! Resources: what an agent has, what an offer carries and what a task uses.
//!
//! Owns the resource arithmetic every other part trusts (the allocator's bookkeeping, ACCEPT
//! validation, the agent's `--resources`), and nothing else: no I/O, no clock.
//!
//! - A **scalar** (`cpus`, `mem`, `disk`, `gpus`, or any custom name) is fixed-point with three
//!   decimals, as in Mesos: `0.001` is the smallest amount, so no sum or difference ever drifts
//!   the way floating point does and "fits" is exact.
//! - A **range set** (`ports`) is a set of integers kept as sorted, disjoint, non-adjacent
//!   inclusive intervals.
//!
//! Invariants kept by construction: no zero scalar and no empty range set is stored, so two
//! equal bundles compare equal; subtraction never goes below zero (it fails instead, naming the
//! resource that is short); addition never overflows silently.
//!
//! Text form is Mesos's: `cpus:4;mem:8192;disk:10240;ports:[31000-32000]`.

pub mod attributes;
mod names;
mod ranges;
mod scalar;
mod wire;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use attributes::{AttributeValue, Attributes};
pub use ranges::{Range, Ranges};
pub use scalar::Scalar;

use names::NameMap;

/// Longest resource or attribute text accepted, bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most distinct resource names in one bundle.
pub const MAX_NAMES: usize = 64;
/// Longest resource name, bytes.
pub const MAX_NAME_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource {name:?}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("resources: {0}")]
    Syntax(String),
    #[error("not enough {name}: need {need}, have {have}")]
    Insufficient {
        name: String,
        need: String,
        have: String,
    },
    #[error("resource {0:?}: amount overflows")]
    Overflow(String),
    #[error("resource {0:?} is a scalar in one bundle and a range set in the other")]
    KindMismatch(String),
}

/// A resource name: lowercase ASCII letters, digits, `_`, `-` and `.`, starting with a letter.
/// Shared, so that copying a bundle (the allocator does it for every agent it visits) copies
/// no text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceName(Arc<str>);

impl ResourceName {
    pub fn new(name: &str) -> Result<Self, ResourceError> {
        let invalid = |reason: &str| ResourceError::Invalid {
            name: name.chars().take(MAX_NAME_BYTES).collect(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(invalid("empty name"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(invalid("name longer than 64 bytes"));
        }
        let mut chars = name.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Err(invalid("a name starts with a lowercase letter"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c)) {
            return Err(invalid(
                "a name has only lowercase letters, digits, '_', '-' and '.'",
            ));
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResourceName {
    type Error = ResourceError;
    fn try_from(s: String) -> Result<Self, ResourceError> {
        Self::new(&s)
    }
}

impl From<ResourceName> for String {
    fn from(n: ResourceName) -> String {
        n.0.to_string()
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

pub const CPUS: &str = "cpus";
pub const MEM: &str = "mem";
pub const DISK: &str = "disk";
pub const PORTS: &str = "ports";

/// Lets the maps keyed by name be looked up with a `&str`, without building a name. Sound
/// because a name's order and equality are its string's.
impl std::borrow::Borrow<str> for ResourceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ResourceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A bundle of resources. See the module docs for its invariants.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ResourcesRepr", into = "ResourcesRepr")]
pub struct Resources {
    /// Inline room for the usual scalars (cpus, mem, disk, gpus) and one range set (ports).
    scalars: NameMap<Scalar, 4>,
    ranges: NameMap<Ranges, 1>,
}

/// The serialised form; deserialising re-checks the invariants, so a bundle read from a peer or
/// a file is as sound as one built here.
#[derive(Serialize, Deserialize)]
struct ResourcesRepr {
    scalars: Vec<(ResourceName, Scalar)>,
    ranges: Vec<(ResourceName, Ranges)>,
}

impl TryFrom<ResourcesRepr> for Resources {
    type Error = ResourceError;
    fn try_from(r: ResourcesRepr) -> Result<Self, ResourceError> {
        if r.scalars.len() + r.ranges.len() > MAX_NAMES {
            return Err(ResourceError::Syntax(format!(
                "more than {MAX_NAMES} resource names"
            )));
        }
        let mut out = Resources::default();
        for (n, v) in r.scalars {
            out = out.checked_add(&Resources::default().with_scalar_named(n, v))?;
        }
        for (n, v) in r.ranges {
            out = out.checked_add(&Resources::default().with_ranges_named(n, v))?;
        }
        Ok(out)
    }
}

impl From<Resources> for ResourcesRepr {
    fn from(r: Resources) -> Self {
        ResourcesRepr {
            scalars: r.scalars.into_iter().collect(),
            ranges: r.ranges.into_iter().collect(),
        }
    }
}

impl Resources {
    /// No resources.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.scalars.is_empty() && self.ranges.is_empty()
    }

    /// `self` with scalar `name` set to `amount` (replacing what was there).
    pub fn with_scalar(self, name: &str, amount: Scalar) -> Result<Self, ResourceError> {
        Ok(self.with_scalar_named(ResourceName::new(name)?, amount))
    }

    fn with_scalar_named(mut self, name: ResourceName, amount: Scalar) -> Self {
        self.ranges.remove(&name);
        if amount.is_zero() {
            self.scalars.remove(&name);
        } else {
            self.scalars.insert(name, amount);
        }
        self
    }

    /// `self` with range set `name` set to `ranges` (replacing what was there).
    pub fn with_ranges(self, name: &str, ranges: Ranges) -> Result<Self, ResourceError> {
        Ok(self.with_ranges_named(ResourceName::new(name)?, ranges))
    }

    fn with_ranges_named(mut self, name: ResourceName, ranges: Ranges) -> Self {
        self.scalars.remove(&name);
        if ranges.is_empty() {
            self.ranges.remove(&name);
        } else {
            self.ranges.insert(name, ranges);
        }
        self
    }

    /// A bundle of the usual scalars (cpus, mem and disk in MiB).
    pub fn from_scalars(cpus: f64, mem_mib: f64, disk_mib: f64) -> Result<Self, ResourceError> {
        Resources::empty()
            .with_scalar(CPUS, Scalar::from_f64(CPUS, cpus)?)?
            .with_scalar(MEM, Scalar::from_f64(MEM, mem_mib)?)?
            .with_scalar(DISK, Scalar::from_f64(DISK, disk_mib)?)
    }

    /// The amount of scalar `name` (zero when absent).
    pub fn scalar(&self, name: &str) -> Scalar {
        self.scalars.get(name).copied().unwrap_or(Scalar::ZERO)
    }

    /// The range set `name` (empty when absent).
    pub fn ranges(&self, name: &str) -> Ranges {
        self.ranges.get(name).cloned().unwrap_or_default()
    }

    pub fn cpus(&self) -> Scalar {
        self.scalar(CPUS)
    }

    pub fn mem_mib(&self) -> Scalar {
        self.scalar(MEM)
    }

    pub fn disk_mib(&self) -> Scalar {
        self.scalar(DISK)
    }

    pub fn ports(&self) -> Ranges {
        self.ranges(PORTS)
    }

    /// Every scalar, by name.
    pub fn scalars(&self) -> impl Iterator<Item = (&ResourceName, Scalar)> {
        self.scalars.iter().map(|(n, s)| (n, *s))
    }

    /// Every range set, by name.
    pub fn range_sets(&self) -> impl Iterator<Item = (&ResourceName, &Ranges)> {
        self.ranges.iter()
    }

    /// Whether `other` fits in `self`: every scalar at least as large, every range a superset.
    pub fn contains(&self, other: &Resources) -> bool {
        other
            .scalars
            .iter()
            .all(|(n, v)| self.scalars.get(n).is_some_and(|have| have >= v))
            && other
                .ranges
                .iter()
                .all(|(n, r)| self.ranges.get(n).is_some_and(|have| have.contains(r)))
    }

    /// `self + other`; fails on overflow, or when a name is a scalar on one side and a range
    /// set on the other.
    pub fn checked_add(&self, other: &Resources) -> Result<Resources, ResourceError> {
        let mut out = self.clone();
        for (n, v) in &other.scalars {
            if out.ranges.contains_key(n) {
                return Err(ResourceError::KindMismatch(n.0.to_string()));
            }
            let sum = out
                .scalar(n.as_str())
                .checked_add(*v)
                .ok_or_else(|| ResourceError::Overflow(n.0.to_string()))?;
            out.scalars.insert(n.clone(), sum);
        }
        for (n, r) in &other.ranges {
            if out.scalars.contains_key(n) {
                return Err(ResourceError::KindMismatch(n.0.to_string()));
            }
            let union = match out.ranges.get(n) {
                Some(have) => have.union(r),
                None => r.clone(),
            };
            out.ranges.insert(n.clone(), union);
        }
        if out.scalars.len() + out.ranges.len() > MAX_NAMES {
            return Err(ResourceError::Syntax(format!(
                "more than {MAX_NAMES} resource names"
            )));
        }
        Ok(out)
    }

    /// `self - other`; fails, naming the resource, unless `self` contains `other`.
    pub fn checked_sub(&self, other: &Resources) -> Result<Resources, ResourceError> {
        let mut out = self.clone();
        for (n, need) in &other.scalars {
            let have = self.scalar(n.as_str());
            let left = have
                .checked_sub(*need)
                .ok_or_else(|| ResourceError::Insufficient {
                    name: n.0.to_string(),
                    need: need.to_string(),
                    have: have.to_string(),
                })?;
            out = out.with_scalar_named(n.clone(), left);
        }
        for (n, need) in &other.ranges {
            let have = self.ranges.get(n).cloned().unwrap_or_default();
            if !have.contains(need) {
                return Err(ResourceError::Insufficient {
                    name: n.0.to_string(),
                    need: need.to_string(),
                    have: have.to_string(),
                });
            }
            out = out.with_ranges_named(n.clone(), have.difference(need));
        }
        Ok(out)
    }

    /// What is in `self` and not in `other`, never below zero (for "what is left").
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        let mut out = self.clone();
        for (n, v) in &other.scalars {
            let left = out.scalar(n.as_str()).saturating_sub(*v);
            if out.scalars.contains_key(n) {
                out = out.with_scalar_named(n.clone(), left);
            }
        }
        for (n, r) in &other.ranges {
            if let Some(have) = out.ranges.get(n) {
                let left = have.difference(r);
                out = out.with_ranges_named(n.clone(), left);
            }
        }
        out
    }

    /// The largest fraction of `total` that `self` holds of any scalar resource: the dominant
    /// share of Dominant Resource Fairness. Range sets (ports) are not a dimension of fairness,
    /// as in Mesos. Zero when `total` has none of what `self` holds.
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        self.scalars
            .iter()
            .filter_map(|(n, v)| {
                let t = total.scalars.get(n)?;
                Some(v.milli() as f64 / t.milli() as f64)
            })
            .fold(0.0, f64::max)
    }
}

impl fmt::Display for Resources {
    /// Mesos syntax, scalars first, names in order: `cpus:1.5;mem:128;ports:[31000-31009]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (n, v) in &self.scalars {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            write!(f, "{n}:{v}")?;
        }
        for (n, r) in &self.ranges {
            if !first {
                f.write_str(";")?;
            }
            first = false;
            write!(f, "{n}:{r}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({self})")
    }
}

impl FromStr for Resources {
    type Err = ResourceError;

    /// Parses Mesos syntax: `name:value` items separated by `;`, a value being a number
    /// (scalar) or `[a-b,c-d]` (ranges). A name given twice is summed, as Mesos does.
    fn from_str(text: &str) -> Result<Self, ResourceError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ResourceError::Syntax(format!(
                "longer than {MAX_TEXT_BYTES} bytes"
            )));
        }
        let mut out = Resources::empty();
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (n, value) = item
                .split_once(':')
                .ok_or_else(|| ResourceError::Syntax(format!("{item:?}: expected name:value")))?;
            let n = ResourceName::new(n.trim())?;
            let value = value.trim();
            let is_ranges = value.starts_with('[');
            let kind_error = |expected: &str| ResourceError::Invalid {
                name: n.0.to_string(),
                reason: format!("{value:?}: {} is always {expected}", n.0),
            };
            if &*n.0 == PORTS && !is_ranges {
                return Err(kind_error("a range set, e.g. [31000-32000]"));
            }
            if [CPUS, MEM, DISK, "gpus"].contains(&&*n.0) && is_ranges {
                return Err(kind_error("a number"));
            }
            let one = if is_ranges {
                Resources::empty().with_ranges_named(
                    n.clone(),
                    value
                        .parse::<Ranges>()
                        .map_err(|reason| ResourceError::Invalid {
                            name: n.0.to_string(),
                            reason,
                        })?,
                )
            } else {
                let amount = value.parse::<f64>().map_err(|_| ResourceError::Invalid {
                    name: n.0.to_string(),
                    reason: format!("{value:?} is neither a number nor [ranges]"),
                })?;
                Resources::empty().with_scalar_named(n.clone(), Scalar::from_f64(&n.0, amount)?)
            };
            out = out.checked_add(&one)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
