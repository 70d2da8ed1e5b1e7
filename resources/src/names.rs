//! A small map from resource names to values, kept sorted in place.
//!
//! A bundle holds a handful of names (cpus, mem, disk, ports, perhaps gpus), and the
//! allocator and the registry copy and combine bundles for every agent and task they touch, so
//! the map stores its first `N` entries inline: copying a typical bundle allocates nothing
//! (a name is shared, so copying it copies no text). Entries stay sorted by name, so iteration
//! is in name order (the text form and equality depend on it) and lookups are binary searches.

use smallvec::SmallVec;

use crate::ResourceName;

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct NameMap<V, const N: usize>(SmallVec<[(ResourceName, V); N]>);

impl<V, const N: usize> NameMap<V, N> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    pub(crate) fn get<Q: AsRef<str> + ?Sized>(&self, name: &Q) -> Option<&V> {
        self.find(name.as_ref()).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn contains_key<Q: AsRef<str> + ?Sized>(&self, name: &Q) -> bool {
        self.find(name.as_ref()).is_ok()
    }

    /// Sets `name` to `value`, returning what it replaced.
    pub(crate) fn insert(&mut self, name: ResourceName, value: V) -> Option<V> {
        match self.find(name.as_str()) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    pub(crate) fn remove<Q: AsRef<str> + ?Sized>(&mut self, name: &Q) -> Option<V> {
        self.find(name.as_ref()).ok().map(|i| self.0.remove(i).1)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ResourceName, &V)> {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl<V, const N: usize> IntoIterator for NameMap<V, N> {
    type Item = (ResourceName, V);
    type IntoIter = smallvec::IntoIter<[(ResourceName, V); N]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V, const N: usize> IntoIterator for &'a NameMap<V, N> {
    type Item = (&'a ResourceName, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ResourceName, V)>,
        fn(&'a (ResourceName, V)) -> (&'a ResourceName, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ResourceName {
        ResourceName::new(s).unwrap()
    }

    #[test]
    fn stays_sorted_and_replaces() {
        let mut m: NameMap<u32, 2> = NameMap::default();
        assert_eq!(m.insert(name("mem"), 1), None);
        assert_eq!(m.insert(name("cpus"), 2), None);
        assert_eq!(m.insert(name("disk"), 3), None);
        assert_eq!(m.insert(name("mem"), 4), Some(1));
        let keys: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(keys, ["cpus", "disk", "mem"]);
        assert_eq!(m.get("mem"), Some(&4));
        assert!(m.contains_key(&name("disk")));
        assert_eq!(m.remove("disk"), Some(3));
        assert_eq!(m.remove("disk"), None);
        assert_eq!(m.len(), 2);
        assert!(!m.is_empty());
    }
}
