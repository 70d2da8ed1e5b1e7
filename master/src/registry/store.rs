//! The framework store: a small versioned key-value space per framework, where schedulers keep
//! their own state so that they are stateless and can fail over (DESIGN.md, "framework store").
//!
//! Owns the namespaces, their keys and values, and the limits on them. The store counts its
//! successful writes (its revision, as in etcd); every value carries the revision of the write
//! that produced it as its version, so versions only grow and no two writes share one. Names and keys are validated when they are built, including when they are
//! decoded from the log or a snapshot, so no invalid name can enter the state.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Longest framework name, in bytes.
pub const MAX_FRAMEWORK_NAME_BYTES: usize = 128;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys one framework may hold.
pub const MAX_KEYS_PER_FRAMEWORK: usize = 100_000;
/// Most bytes (keys plus values) one framework may hold.
pub const MAX_BYTES_PER_FRAMEWORK: u64 = 64 * 1024 * 1024;
/// Most bytes (keys plus values) the whole store may hold: what every replica keeps in
/// memory and every snapshot carries.
pub const MAX_TOTAL_BYTES: u64 = 1024 * 1024 * 1024;
/// Most frameworks with a store.
pub const MAX_NAMESPACES: usize = 10_000;
/// Most keys one `list` call returns.
pub const MAX_LIST_KEYS: usize = 1000;

/// Why a name, key or value was refused. The message names the fault and the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    #[error("framework name must be 1 to {MAX_FRAMEWORK_NAME_BYTES} bytes of [A-Za-z0-9._:-], got {0:?}")]
    InvalidFramework(String),
    #[error("key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8 without control characters, got {len} bytes")]
    InvalidKey { len: usize },
    #[error("value is {len} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLarge { len: usize },
    #[error(
        "framework {framework} already holds {MAX_KEYS_PER_FRAMEWORK} keys; delete some first"
    )]
    TooManyKeys { framework: String },
    #[error("framework {framework}'s store would hold {would_bytes} bytes of keys and values; the limit is {MAX_BYTES_PER_FRAMEWORK}: delete or shrink some first")]
    FrameworkFull { framework: String, would_bytes: u64 },
    #[error("the store would hold {would_bytes} bytes of keys and values across frameworks; the limit is {MAX_TOTAL_BYTES}: frameworks must delete some first")]
    StoreFull { would_bytes: u64 },
    #[error(
        "{MAX_NAMESPACES} frameworks already have a store; framework {framework} cannot start one"
    )]
    TooManyNamespaces { framework: String },
}

impl StoreError {
    /// Whether the write was refused for room (retrying after deletes can succeed), rather
    /// than for what it is.
    pub fn is_full(&self) -> bool {
        matches!(
            self,
            StoreError::TooManyKeys { .. }
                | StoreError::FrameworkFull { .. }
                | StoreError::StoreFull { .. }
                | StoreError::TooManyNamespaces { .. }
        )
    }
}

/// A validated framework name: the namespace of a store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FrameworkName(Arc<str>);

impl FrameworkName {
    pub fn new(name: &str) -> Result<Self, StoreError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_FRAMEWORK_NAME_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(name.into()))
        } else {
            let shown: String = name.chars().take(MAX_FRAMEWORK_NAME_BYTES).collect();
            Err(StoreError::InvalidFramework(shown))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FrameworkName {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        Self::new(&s)
    }
}

impl From<FrameworkName> for String {
    fn from(n: FrameworkName) -> String {
        n.0.to_string()
    }
}

impl fmt::Display for FrameworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FrameworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A validated key within a framework's store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StoreKey(Arc<str>);

impl StoreKey {
    pub fn new(key: &str) -> Result<Self, StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
            return Err(StoreError::InvalidKey { len: key.len() });
        }
        Ok(Self(key.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StoreKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StoreKey {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        Self::new(&s)
    }
}

impl From<StoreKey> for String {
    fn from(k: StoreKey) -> String {
        k.0.to_string()
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge { len: value.len() });
    }
    Ok(())
}

/// The store's write counter; also the version of a value.
pub type Revision = u64;

/// A value and the revision of the write that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    pub value: Bytes,
    pub version: Revision,
}

/// What a compare-and-set requires of the current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expectation {
    /// The key holds exactly this value.
    Value(Bytes),
    /// The key is at exactly this version.
    Version(Revision),
    /// The key does not exist.
    Absent,
}

impl Expectation {
    fn holds(&self, current: Option<&Versioned>) -> bool {
        match (self, current) {
            (Expectation::Absent, None) => true,
            (Expectation::Value(v), Some(cur)) => cur.value == *v,
            (Expectation::Version(v), Some(cur)) => cur.version == *v,
            _ => false,
        }
    }
}

/// A write to a framework's store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreOp {
    Put {
        framework: FrameworkName,
        key: StoreKey,
        value: Bytes,
    },
    Delete {
        framework: FrameworkName,
        key: StoreKey,
    },
    CompareAndSet {
        framework: FrameworkName,
        key: StoreKey,
        expected: Expectation,
        new_value: Bytes,
    },
}

impl StoreOp {
    /// A short name of the operation, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreOp::Put { .. } => "put",
            StoreOp::Delete { .. } => "delete",
            StoreOp::CompareAndSet { .. } => "cas",
        }
    }
}

/// What a store write did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreOutcome {
    Put {
        version: Revision,
    },
    Delete {
        existed: bool,
    },
    CompareAndSet {
        succeeded: bool,
        /// On success the new version; on failure the current one (0 when absent).
        version: Revision,
        /// On failure, the current entry (None when absent). On success, None.
        current: Option<Versioned>,
    },
    /// The write was refused; the state did not change.
    Rejected(StoreError),
}

/// One framework's entries.
pub(super) type Space = imbl::OrdMap<StoreKey, Versioned>;

/// All frameworks' stores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredFrameworkStore")]
pub struct FrameworkStore {
    spaces: imbl::OrdMap<FrameworkName, Space>,
    /// Successful puts and compare-and-sets so far.
    revision: Revision,
    /// Bytes of keys and values per framework, kept by every write. Not stored: counted when
    /// a snapshot loads.
    #[serde(skip)]
    bytes: imbl::OrdMap<FrameworkName, u64>,
    /// Their sum.
    #[serde(skip)]
    total_bytes: u64,
}

/// [`FrameworkStore`] as stored: without the byte counts. Also what a snapshot's records are
/// gathered into (`registry::records`).
#[derive(Default, Deserialize)]
pub(super) struct StoredFrameworkStore {
    pub(super) spaces: imbl::OrdMap<FrameworkName, Space>,
    pub(super) revision: Revision,
}

impl From<StoredFrameworkStore> for FrameworkStore {
    fn from(s: StoredFrameworkStore) -> Self {
        let bytes: imbl::OrdMap<FrameworkName, u64> = s
            .spaces
            .iter()
            .map(|(f, space)| {
                (
                    f.clone(),
                    space
                        .iter()
                        .map(|(k, v)| entry_bytes(k, &v.value))
                        .sum::<u64>(),
                )
            })
            .collect();
        let total_bytes = bytes.values().sum();
        FrameworkStore {
            spaces: s.spaces,
            revision: s.revision,
            bytes,
            total_bytes,
        }
    }
}

/// What one entry counts against the limits: its key and its value.
fn entry_bytes(key: &StoreKey, value: &Bytes) -> u64 {
    (key.as_str().len() + value.len()) as u64
}

impl FrameworkStore {
    /// Applies a write.
    pub fn apply(&mut self, op: &StoreOp) -> StoreOutcome {
        match op {
            StoreOp::Put {
                framework,
                key,
                value,
            } => match self.write(framework, key, value) {
                Ok(version) => StoreOutcome::Put { version },
                Err(e) => StoreOutcome::Rejected(e),
            },
            StoreOp::Delete { framework, key } => {
                let removed = match self.spaces.get_mut(framework) {
                    Some(space) => {
                        let removed = space.remove(key);
                        if space.is_empty() {
                            self.spaces.remove(framework);
                        }
                        removed
                    }
                    None => None,
                };
                if let Some(old) = &removed {
                    self.account(framework, entry_bytes(key, &old.value), 0);
                }
                StoreOutcome::Delete {
                    existed: removed.is_some(),
                }
            }
            StoreOp::CompareAndSet {
                framework,
                key,
                expected,
                new_value,
            } => {
                let current = self.get(framework, key);
                if !expected.holds(current) {
                    return StoreOutcome::CompareAndSet {
                        succeeded: false,
                        version: current.map_or(0, |c| c.version),
                        current: current.cloned(),
                    };
                }
                match self.write(framework, key, new_value) {
                    Ok(version) => StoreOutcome::CompareAndSet {
                        succeeded: true,
                        version,
                        current: None,
                    },
                    Err(e) => StoreOutcome::Rejected(e),
                }
            }
        }
    }

    fn write(
        &mut self,
        framework: &FrameworkName,
        key: &StoreKey,
        value: &Bytes,
    ) -> Result<Revision, StoreError> {
        check_value(value)?;
        let existing = self.get(framework, key).map(|v| entry_bytes(key, &v.value));
        let old = existing.unwrap_or(0);
        let new = entry_bytes(key, value);
        let had = self.bytes.get(framework).copied().unwrap_or(0);
        let would = had - old + new;
        if new > old {
            if !self.spaces.contains_key(framework) && self.spaces.len() >= MAX_NAMESPACES {
                return Err(StoreError::TooManyNamespaces {
                    framework: framework.to_string(),
                });
            }
            if would > MAX_BYTES_PER_FRAMEWORK {
                return Err(StoreError::FrameworkFull {
                    framework: framework.to_string(),
                    would_bytes: would,
                });
            }
            let total = self.total_bytes - old + new;
            if total > MAX_TOTAL_BYTES {
                return Err(StoreError::StoreFull { would_bytes: total });
            }
        }
        if existing.is_none()
            && self.spaces.get(framework).map_or(0, |s| s.len()) >= MAX_KEYS_PER_FRAMEWORK
        {
            return Err(StoreError::TooManyKeys {
                framework: framework.to_string(),
            });
        }
        self.account(framework, old, new);
        let space = self.spaces.entry(framework.clone()).or_default();
        self.revision += 1;
        space.insert(
            key.clone(),
            Versioned {
                value: value.clone(),
                version: self.revision,
            },
        );
        Ok(self.revision)
    }

    /// Replaces `old` bytes of `framework`'s entries by `new` in the counts.
    fn account(&mut self, framework: &FrameworkName, old: u64, new: u64) {
        let had = self.bytes.get(framework).copied().unwrap_or(0);
        let now = had - old + new;
        if now == 0 {
            self.bytes.remove(framework);
        } else {
            self.bytes.insert(framework.clone(), now);
        }
        self.total_bytes = self.total_bytes - old + new;
    }

    /// Bytes of keys and values `framework` holds.
    pub fn bytes_of(&self, framework: &FrameworkName) -> u64 {
        self.bytes.get(framework).copied().unwrap_or(0)
    }

    /// Bytes of keys and values across frameworks.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Frameworks with a store.
    pub fn namespaces(&self) -> usize {
        self.spaces.len()
    }

    /// Every framework's entries, for a snapshot.
    pub(super) fn spaces(&self) -> &imbl::OrdMap<FrameworkName, Space> {
        &self.spaces
    }

    /// Successful writes so far.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The current entry of `key`, if any.
    pub fn get(&self, framework: &FrameworkName, key: &StoreKey) -> Option<&Versioned> {
        self.spaces.get(framework)?.get(key)
    }

    /// Up to `limit` keys (capped at [`MAX_LIST_KEYS`]) after `start_after`, in order, and
    /// whether more follow.
    pub fn list(
        &self,
        framework: &FrameworkName,
        start_after: &str,
        limit: usize,
    ) -> (Vec<StoreKey>, bool) {
        let limit = limit.clamp(1, MAX_LIST_KEYS);
        let Some(space) = self.spaces.get(framework) else {
            return (Vec::new(), false);
        };
        let lower: Bound<&str> = if start_after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(start_after)
        };
        let mut keys: Vec<StoreKey> = space
            .range::<_, str>((lower, Bound::Unbounded))
            .take(limit + 1)
            .map(|(k, _)| k.clone())
            .collect();
        let truncated = keys.len() > limit;
        keys.truncate(limit);
        (keys, truncated)
    }

    /// Number of keys across all frameworks.
    pub fn len(&self) -> usize {
        self.spaces.values().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn fw(s: &str) -> FrameworkName {
        FrameworkName::new(s).unwrap()
    }
    fn key(s: &str) -> StoreKey {
        StoreKey::new(s).unwrap()
    }

    fn put(f: &str, k: &str, len: usize) -> StoreOp {
        StoreOp::Put {
            framework: fw(f),
            key: key(k),
            value: Bytes::from(vec![b'x'; len]),
        }
    }

    /// The byte counts, recounted from the entries: the kept ones must always agree.
    fn recount(s: &FrameworkStore) -> (imbl::OrdMap<FrameworkName, u64>, u64) {
        let reloaded: FrameworkStore =
            postcard::from_bytes(&postcard::to_stdvec(s).unwrap()).unwrap();
        (reloaded.bytes, reloaded.total_bytes)
    }

    /// Issue 16: the store has a total bound, per framework and overall, in bytes and in
    /// namespaces; beyond it a write is refused, naming the limit, and changes nothing.
    #[test]
    fn a_framework_cannot_grow_past_its_bytes_and_shrinking_is_always_allowed() {
        let mut s = FrameworkStore::default();
        let big = MAX_VALUE_BYTES;
        let fits = (MAX_BYTES_PER_FRAMEWORK / (big as u64 + 8)) as usize;
        for i in 0..fits {
            assert!(matches!(
                s.apply(&put("m", &format!("k{i:06}"), big)),
                StoreOutcome::Put { .. }
            ));
        }
        let before = s.clone();
        match s.apply(&put("m", "one-more", big)) {
            StoreOutcome::Rejected(e @ StoreError::FrameworkFull { .. }) => {
                assert!(e.is_full());
                assert!(
                    e.to_string().contains(&MAX_BYTES_PER_FRAMEWORK.to_string()),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s, before, "a refused write changes nothing");
        // Overwriting with something smaller, and deleting, always work.
        assert!(matches!(
            s.apply(&put("m", "k000000", 10)),
            StoreOutcome::Put { .. }
        ));
        assert!(matches!(
            s.apply(&put("m", "one-more", big)),
            StoreOutcome::Put { .. }
        ));
        assert_eq!((s.bytes.clone(), s.total_bytes), recount(&s));
        // Another framework has its own budget.
        assert!(matches!(
            s.apply(&put("other", "k", big)),
            StoreOutcome::Put { .. }
        ));
        assert_eq!(s.bytes_of(&fw("other")), 1 + big as u64);
        assert_eq!(
            s.total_bytes(),
            s.bytes_of(&fw("m")) + s.bytes_of(&fw("other"))
        );
    }

    #[test]
    fn the_number_of_namespaces_is_bounded() {
        let mut s = FrameworkStore::default();
        for i in 0..MAX_NAMESPACES {
            s.apply(&put(&format!("f{i}"), "k", 1));
        }
        assert_eq!(s.namespaces(), MAX_NAMESPACES);
        assert!(matches!(
            s.apply(&put("one-too-many", "k", 1)),
            StoreOutcome::Rejected(StoreError::TooManyNamespaces { .. })
        ));
        // An existing one still writes; a deleted one frees its place.
        assert!(matches!(
            s.apply(&put("f0", "k2", 1)),
            StoreOutcome::Put { .. }
        ));
        for k in ["k", "k2"] {
            s.apply(&StoreOp::Delete {
                framework: fw("f0"),
                key: key(k),
            });
        }
        assert!(matches!(
            s.apply(&put("one-too-many", "k", 1)),
            StoreOutcome::Put { .. }
        ));
        assert_eq!((s.bytes.clone(), s.total_bytes), recount(&s));
    }

    proptest! {
        /// The byte counts kept by every write equal a recount, whatever the writes.
        #[test]
        fn byte_counts_match_a_recount(ops in prop::collection::vec((0..3u8, 0..4u8, 0..6u8, 0..300usize), 1..80)) {
            let mut s = FrameworkStore::default();
            for (kind, f, k, len) in ops {
                let (f, k) = (format!("f{f}"), format!("k{k}"));
                let op = match kind {
                    0 => put(&f, &k, len),
                    1 => StoreOp::Delete { framework: fw(&f), key: key(&k) },
                    _ => StoreOp::CompareAndSet {
                        framework: fw(&f),
                        key: key(&k),
                        expected: Expectation::Absent,
                        new_value: Bytes::from(vec![0; len]),
                    },
                };
                s.apply(&op);
                prop_assert_eq!((s.bytes.clone(), s.total_bytes), recount(&s));
            }
        }
    }

    #[test]
    fn names_are_validated_on_decode_too() {
        assert!(FrameworkName::new("").is_err());
        assert!(FrameworkName::new("has space").is_err());
        assert!(FrameworkName::new(&"a".repeat(MAX_FRAMEWORK_NAME_BYTES + 1)).is_err());
        assert!(StoreKey::new("line\nbreak").is_err());
        let bad = postcard::to_stdvec(&String::from("has space")).unwrap();
        assert!(postcard::from_bytes::<FrameworkName>(&bad).is_err());
    }

    #[test]
    fn cas_on_value_version_and_absence() {
        let mut s = FrameworkStore::default();
        let (f, k) = (fw("m"), key("k"));
        let cas = |expected, v: &'static [u8]| StoreOp::CompareAndSet {
            framework: f.clone(),
            key: k.clone(),
            expected,
            new_value: Bytes::from_static(v),
        };
        assert!(matches!(
            s.apply(&cas(Expectation::Absent, b"a")),
            StoreOutcome::CompareAndSet {
                succeeded: true,
                version: 1,
                ..
            }
        ));
        assert!(matches!(
            s.apply(&cas(Expectation::Absent, b"b")),
            StoreOutcome::CompareAndSet {
                succeeded: false,
                version: 1,
                ..
            }
        ));
        assert!(matches!(
            s.apply(&cas(Expectation::Value(Bytes::from_static(b"a")), b"c")),
            StoreOutcome::CompareAndSet {
                succeeded: true,
                version: 2,
                ..
            }
        ));
        assert!(matches!(
            s.apply(&cas(Expectation::Version(1), b"d")),
            StoreOutcome::CompareAndSet {
                succeeded: false,
                ..
            }
        ));
        assert!(matches!(
            s.apply(&cas(Expectation::Version(2), b"e")),
            StoreOutcome::CompareAndSet {
                succeeded: true,
                version: 3,
                ..
            }
        ));
        assert_eq!(s.get(&f, &k).unwrap().value, Bytes::from_static(b"e"));
    }

    #[test]
    fn oversized_value_is_rejected_without_change() {
        let mut s = FrameworkStore::default();
        let op = StoreOp::Put {
            framework: fw("m"),
            key: key("k"),
            value: Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]),
        };
        assert!(matches!(
            s.apply(&op),
            StoreOutcome::Rejected(StoreError::ValueTooLarge { .. })
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn list_pages_in_order() {
        let mut s = FrameworkStore::default();
        for k in ["b", "a", "d", "c"] {
            let op = StoreOp::Put {
                framework: fw("m"),
                key: key(k),
                value: Bytes::new(),
            };
            s.apply(&op);
        }
        let (keys, more) = s.list(&fw("m"), "", 2);
        assert_eq!(keys, vec![key("a"), key("b")]);
        assert!(more);
        let (keys, more) = s.list(&fw("m"), "b", 10);
        assert_eq!(keys, vec![key("c"), key("d")]);
        assert!(!more);
    }

    #[derive(Debug, Clone)]
    enum ModelOp {
        Put(u8, u8),
        Delete(u8),
        CasValue(u8, u8, u8),
        CasVersion(u8, u64, u8),
        CasAbsent(u8, u8),
    }

    fn model_op() -> impl Strategy<Value = ModelOp> {
        prop_oneof![
            (0..4u8, any::<u8>()).prop_map(|(k, v)| ModelOp::Put(k, v)),
            (0..4u8).prop_map(ModelOp::Delete),
            (0..4u8, 0..3u8, any::<u8>()).prop_map(|(k, e, v)| ModelOp::CasValue(k, e, v)),
            (0..4u8, 0..20u64, any::<u8>()).prop_map(|(k, e, v)| ModelOp::CasVersion(k, e, v)),
            (0..4u8, any::<u8>()).prop_map(|(k, v)| ModelOp::CasAbsent(k, v)),
        ]
    }

    proptest! {
        /// The store behaves like a plain map of (value, version), and snapshots of it
        /// (clones) never change when the store does.
        #[test]
        fn store_matches_model(ops in proptest::collection::vec(model_op(), 1..60)) {
            let mut s = FrameworkStore::default();
            let mut model: BTreeMap<u8, (u8, u64)> = BTreeMap::new();
            type Model = BTreeMap<u8, (u8, u64)>;
            let mut frozen: Vec<(FrameworkStore, Model)> = Vec::new();
            let f = fw("m");
            let mut revision = 0u64;
            for (i, op) in ops.iter().enumerate() {
                let index = revision + 1;
                let k = |n: u8| key(&format!("k{n}"));
                let b = |v: u8| Bytes::from(vec![v]);
                let store_op = match *op {
                    ModelOp::Put(kk, v) => {
                        model.insert(kk, (v, index));
                        StoreOp::Put { framework: f.clone(), key: k(kk), value: b(v) }
                    }
                    ModelOp::Delete(kk) => {
                        model.remove(&kk);
                        StoreOp::Delete { framework: f.clone(), key: k(kk) }
                    }
                    ModelOp::CasValue(kk, e, v) => {
                        if model.get(&kk).map(|c| c.0) == Some(e) { model.insert(kk, (v, index)); }
                        StoreOp::CompareAndSet { framework: f.clone(), key: k(kk), expected: Expectation::Value(b(e)), new_value: b(v) }
                    }
                    ModelOp::CasVersion(kk, e, v) => {
                        if model.get(&kk).map(|c| c.1) == Some(e) { model.insert(kk, (v, index)); }
                        StoreOp::CompareAndSet { framework: f.clone(), key: k(kk), expected: Expectation::Version(e), new_value: b(v) }
                    }
                    ModelOp::CasAbsent(kk, v) => {
                        model.entry(kk).or_insert((v, index));
                        StoreOp::CompareAndSet { framework: f.clone(), key: k(kk), expected: Expectation::Absent, new_value: b(v) }
                    }
                };
                if let StoreOutcome::Put { .. } | StoreOutcome::CompareAndSet { succeeded: true, .. } = s.apply(&store_op) {
                    revision += 1;
                }
                prop_assert_eq!(s.revision(), revision);
                if i % 7 == 0 {
                    frozen.push((s.clone(), model.clone()));
                }
            }
            let check = |s: &FrameworkStore, model: &Model| {
                for kk in 0..4u8 {
                    let got = s.get(&f, &key(&format!("k{kk}"))).map(|v| (v.value[0], v.version));
                    prop_assert_eq!(got, model.get(&kk).copied());
                }
                Ok(())
            };
            check(&s, &model)?;
            for (snap, m) in &frozen {
                check(snap, m)?;
            }
            let encoded = postcard::to_stdvec(&s).unwrap();
            let decoded: FrameworkStore = postcard::from_bytes(&encoded).unwrap();
            prop_assert_eq!(decoded, s);
        }
    }
}
