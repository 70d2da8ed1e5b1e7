//! The registry as a sequence of records, one per map entry: how a snapshot file holds it
//! (`raft::snapshot`), so that a snapshot is written and read one entry at a time and the whole
//! state is never held a second time, encoded, in memory.
//!
//! [`Registry::records`] lists a registry's records, borrowed; a [`Builder`] gathers records
//! read back, owned, into a registry, and rebuilds the derived indexes (live tasks, completed
//! tasks, store byte counts) once, at the end. [`RecordRef`] and [`Record`] have the same
//! variants in the same order, so what one encodes the other decodes.

use drover_resources::Resources;
use serde::{Deserialize, Serialize};

use super::cluster::{
    AgentRecord, FrameworkRecord, OfferRecord, StoredClusterState, TaskExtensions, TaskKey,
    TaskRecord,
};
use super::store::{Revision, StoredFrameworkStore};
use super::{FrameworkName, Registry, StoreKey, Versioned};
use crate::ids::{AgentId, FrameworkId, OfferId, Role};

/// One entry of a registry, borrowed from it: what a snapshot writes.
#[derive(Debug, Serialize)]
pub enum RecordRef<'a> {
    /// The store's revision (successful writes so far).
    Revision(Revision),
    StoreEntry(&'a FrameworkName, &'a StoreKey, &'a Versioned),
    Agent(&'a AgentId, &'a AgentRecord),
    Framework(&'a FrameworkId, &'a FrameworkRecord),
    Role(&'a Role, f64),
    Offer(&'a OfferId, &'a OfferRecord),
    Task(&'a TaskKey, &'a TaskRecord),
    /// Per agent, its outstanding offers plus its live tasks.
    Committed(&'a AgentId, &'a Resources),
    /// A task's extensions (after its task's record; new variants go last: they are
    /// positional in the encoding).
    TaskExtensions(&'a TaskKey, &'a TaskExtensions),
    /// An agent an operator deactivated (snapshot format 6).
    AgentDeactivated(&'a AgentId),
}

/// One entry of a registry, owned: what a snapshot reads back.
#[derive(Debug, Deserialize)]
pub enum Record {
    Revision(Revision),
    StoreEntry(FrameworkName, StoreKey, Versioned),
    Agent(AgentId, AgentRecord),
    Framework(FrameworkId, FrameworkRecord),
    Role(Role, f64),
    Offer(OfferId, OfferRecord),
    Task(TaskKey, TaskRecord),
    Committed(AgentId, Resources),
    TaskExtensions(TaskKey, TaskExtensions),
    AgentDeactivated(AgentId),
}

/// Records that cannot make a registry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("two records for {0} {1}")]
    Duplicate(&'static str, String),
    #[error("extensions for task {0}, which has no record before them")]
    OrphanExtensions(String),
    #[error("agent {0} deactivated, which has no record before it")]
    OrphanDeactivated(String),
}

impl Registry {
    /// Every entry of this registry, one record each: the store's revision first, then the
    /// store's entries, agents, frameworks, roles, offers, tasks, committed resources, tasks'
    /// extensions and deactivated agents.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        let store = self.store.spaces().iter().flat_map(|(framework, space)| {
            space
                .iter()
                .map(move |(key, value)| RecordRef::StoreEntry(framework, key, value))
        });
        let c = self.cluster.stored_maps();
        std::iter::once(RecordRef::Revision(self.store.revision()))
            .chain(store)
            .chain(c.agents.iter().map(|(k, v)| RecordRef::Agent(k, v)))
            .chain(c.frameworks.iter().map(|(k, v)| RecordRef::Framework(k, v)))
            .chain(c.roles.iter().map(|(k, v)| RecordRef::Role(k, *v)))
            .chain(c.offers.iter().map(|(k, v)| RecordRef::Offer(k, v)))
            .chain(c.tasks.iter().map(|(k, v)| RecordRef::Task(k, v)))
            .chain(c.committed.iter().map(|(k, v)| RecordRef::Committed(k, v)))
            .chain(c.tasks.iter().filter_map(|(k, t)| {
                t.spec
                    .extensions
                    .as_ref()
                    .map(|e| RecordRef::TaskExtensions(k, e))
            }))
            .chain(c.deactivated.iter().map(RecordRef::AgentDeactivated))
    }
}

/// Gathers records into a registry.
#[derive(Default)]
pub struct Builder {
    store: StoredFrameworkStore,
    cluster: StoredClusterState,
    records: u64,
}

/// Inserts `value` at `key` in `map`, refusing a second value for one key.
fn insert_new<K: Ord + Clone + std::fmt::Debug, V: Clone>(
    map: &mut imbl::OrdMap<K, V>,
    what: &'static str,
    key: K,
    value: V,
) -> Result<(), RecordError> {
    if map.contains_key(&key) {
        return Err(RecordError::Duplicate(what, format!("{key:?}")));
    }
    map.insert(key, value);
    Ok(())
}

impl Builder {
    pub fn push(&mut self, record: Record) -> Result<(), RecordError> {
        self.records += 1;
        let c = &mut self.cluster;
        match record {
            Record::Revision(r) => self.store.revision = r,
            Record::StoreEntry(framework, key, value) => {
                let space = self.store.spaces.entry(framework).or_default();
                insert_new(space, "store key", key, value)?;
            }
            Record::Agent(k, v) => insert_new(&mut c.agents, "agent", k, v)?,
            Record::Framework(k, v) => insert_new(&mut c.frameworks, "framework", k, v)?,
            Record::Role(k, v) => insert_new(&mut c.roles, "role", k, v)?,
            Record::Offer(k, v) => insert_new(&mut c.offers, "offer", k, v)?,
            Record::Task(k, v) => insert_new(&mut c.tasks, "task", k, v)?,
            Record::Committed(k, v) => insert_new(&mut c.committed, "committed", k, v)?,
            Record::TaskExtensions(k, e) => {
                let t = c
                    .tasks
                    .get_mut(&k)
                    .ok_or_else(|| RecordError::OrphanExtensions(format!("{k:?}")))?;
                if t.spec.extensions.is_some() {
                    return Err(RecordError::Duplicate("task extensions", format!("{k:?}")));
                }
                t.spec.extensions = Some(e);
            }
            Record::AgentDeactivated(agent) => {
                if !c.agents.contains_key(&agent) {
                    return Err(RecordError::OrphanDeactivated(format!("{agent:?}")));
                }
                if c.deactivated.insert(agent.clone()).is_some() {
                    return Err(RecordError::Duplicate(
                        "deactivated agent",
                        format!("{agent:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Records gathered so far.
    pub fn len(&self) -> u64 {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The registry the records make, with its derived indexes rebuilt.
    pub fn finish(self) -> Registry {
        Registry {
            store: self.store.into(),
            cluster: self.cluster.into(),
        }
    }
}

/// The registry `registry` becomes once written as records, encoded, decoded and gathered
/// again: what a replica loading a snapshot of it holds. For tests and the fuzz targets: it
/// panics if a record does not survive the trip.
pub fn reloaded(registry: &Registry) -> Registry {
    let mut builder = Builder::default();
    for record in registry.records() {
        let bytes = postcard::to_stdvec(&record).expect("encode");
        builder
            .push(postcard::from_bytes(&bytes).expect("decode"))
            .expect("gather");
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Op, Proposal, StoreOp};

    fn put(framework: &str, key: &str, value: &[u8]) -> Op {
        Op::Store(StoreOp::Put {
            framework: FrameworkName::new(framework).unwrap(),
            key: StoreKey::new(key).unwrap(),
            value: value.to_vec().into(),
        })
    }

    #[test]
    fn a_registry_written_as_records_reads_back_equal() {
        let mut registry = Registry::default();
        let ops = (0..50)
            .map(|i| put(["a", "b", "c"][i % 3], &format!("k{i}"), &[i as u8; 40]))
            .collect();
        registry.apply(1, &Proposal::new(1, ops).unwrap());
        let back = reloaded(&registry);
        assert_eq!(back, registry);
        assert_eq!(back.store().total_bytes(), registry.store().total_bytes());
        assert_eq!(back.store().revision(), 50);
        assert_eq!(reloaded(&Registry::default()), Registry::default());
    }

    #[test]
    fn a_second_record_for_one_key_is_refused() {
        let mut registry = Registry::default();
        registry.apply(1, &Proposal::new(1, vec![put("a", "k", b"v")]).unwrap());
        let mut builder = Builder::default();
        for record in registry.records().chain(registry.records().skip(1)) {
            let bytes = postcard::to_stdvec(&record).unwrap();
            if let Err(e) = builder.push(postcard::from_bytes(&bytes).unwrap()) {
                assert!(matches!(e, RecordError::Duplicate("store key", _)), "{e}");
                return;
            }
        }
        panic!("a duplicate store key was gathered");
    }
}
