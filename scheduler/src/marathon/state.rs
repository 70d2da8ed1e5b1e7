//! Apps in the masters' replicated framework store: the scheduler keeps no state of its own,
//! so that any `drover scheduler` can take over.
//!
//! Layout (one framework's keys): `apps/<id>` holds an app's current definition (JSON, its
//! `version` set), `versions/<id>@<version>` each definition it has had (`@` is in no id, so
//! one app's versions are never under another's prefix). Every change of an
//! app is a compare-and-set on its key's store version, so two schedulers (or two requests)
//! racing on one app cannot both win: the loser is told 409, or retries on the new state.
//!
//! [`KvStore`] is the store as this module needs it; [`FrameworkStore`] is the masters',
//! [`MemoryStore`] a test double.

use std::collections::BTreeMap;
use std::sync::Mutex;

use drover_client::MasterClient;
use drover_proto::master::compare_and_set_request::Expected;

use super::app::AppDefinition;
use super::error::ApiError;
use super::path::PathId;
use super::time::Timestamp;

/// Keys listed per store call.
const LIST_PAGE: u32 = 1000;

/// The store failed (no leader, no quorum, a deadline): the answer is 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the framework store is unavailable: {0}")]
pub struct StoreError(pub String);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError {
            status: 503,
            message: e.to_string(),
            details: Vec::new(),
        }
    }
}

/// What a key must hold for a compare-and-set to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Absent,
    Version(u64),
}

/// A versioned key-value store.
pub trait KvStore {
    /// The value and store version of `key`.
    fn get(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Option<(Vec<u8>, u64)>, StoreError>> + Send;
    /// Writes `value` if `key` is as `expect` says; whether it wrote.
    fn cas(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send;
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
    fn delete(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send;
    /// Up to `limit` keys after `start_after`, in order; and whether more follow.
    fn list(
        &self,
        start_after: &str,
        limit: u32,
    ) -> impl std::future::Future<Output = Result<(Vec<String>, bool), StoreError>> + Send;
}

/// The masters' framework store, for one framework.
#[derive(Clone)]
pub struct FrameworkStore {
    pub client: MasterClient,
    pub framework: String,
}

fn unavailable(e: drover_client::ClientError) -> StoreError {
    StoreError(e.to_string())
}

impl KvStore for FrameworkStore {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let entry = self
            .client
            .get(&self.framework, key)
            .await
            .map_err(unavailable)?;
        Ok(entry.map(|e| (e.value, e.version)))
    }

    async fn cas(&self, key: &str, expect: Expect, value: Vec<u8>) -> Result<bool, StoreError> {
        let expected = match expect {
            Expect::Absent => Expected::ExpectedAbsent(true),
            Expect::Version(v) => Expected::ExpectedVersion(v),
        };
        let reply = self
            .client
            .compare_and_set(&self.framework, key, expected, value)
            .await
            .map_err(unavailable)?;
        Ok(reply.succeeded)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put(&self.framework, key, value)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.client
            .delete(&self.framework, key)
            .await
            .map_err(unavailable)
    }

    async fn list(&self, start_after: &str, limit: u32) -> Result<(Vec<String>, bool), StoreError> {
        let reply = self
            .client
            .list(&self.framework, start_after, limit)
            .await
            .map_err(unavailable)?;
        Ok((reply.keys, reply.truncated))
    }
}

/// An in-memory [`KvStore`] with the masters' semantics (versions count writes per key).
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<BTreeMap<String, (Vec<u8>, u64)>>,
}

impl MemoryStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Vec<u8>, u64)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        Ok(self.entries().get(key).cloned())
    }

    async fn cas(&self, key: &str, expect: Expect, value: Vec<u8>) -> Result<bool, StoreError> {
        let mut entries = self.entries();
        let current = entries.get(key).map(|(_, v)| *v);
        let matches = match expect {
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        };
        if matches {
            entries.insert(key.to_string(), (value, current.unwrap_or(0) + 1));
        }
        Ok(matches)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let mut entries = self.entries();
        let version = entries.get(key).map_or(0, |(_, v)| *v) + 1;
        entries.insert(key.to_string(), (value, version));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.entries().remove(key).is_some())
    }

    async fn list(&self, start_after: &str, limit: u32) -> Result<(Vec<String>, bool), StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let entries = self.entries();
        let mut keys = entries
            .range::<str, _>((Excluded(start_after), Unbounded))
            .map(|(k, _)| k.clone());
        let page: Vec<String> = keys.by_ref().take(limit as usize).collect();
        Ok((page, keys.next().is_some()))
    }
}

fn app_key(id: &PathId) -> String {
    format!("apps{id}")
}

fn version_key(id: &PathId, version: Timestamp) -> String {
    format!("versions{id}@{version}")
}

/// An app as stored, with the store version its next change must expect.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredApp {
    pub app: AppDefinition,
    pub store_version: u64,
}

/// The apps of one scheduler, in a [`KvStore`].
pub struct Apps<S> {
    store: S,
}

impl<S: KvStore> Apps<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    /// Stores a new app at `version`; 409 if its id is taken.
    pub async fn create(
        &self,
        mut app: AppDefinition,
        version: Timestamp,
    ) -> Result<AppDefinition, ApiError> {
        app.version = Some(version);
        let json = encode(&app)?;
        if !self
            .store
            .cas(&app_key(&app.id), Expect::Absent, json.clone())
            .await?
        {
            return Err(ApiError::conflict(format!(
                "An app with id [{}] already exists.",
                app.id
            )));
        }
        self.store.put(&version_key(&app.id, version), json).await?;
        Ok(app)
    }

    /// The app `id`, if there is one.
    pub async fn get(&self, id: &PathId) -> Result<Option<StoredApp>, ApiError> {
        match self.store.get(&app_key(id)).await? {
            None => Ok(None),
            Some((json, store_version)) => Ok(Some(StoredApp {
                app: decode(&json)?,
                store_version,
            })),
        }
    }

    /// Replaces an app that is still at `stored.store_version`; 409 if it changed meanwhile.
    pub async fn replace(
        &self,
        stored: &StoredApp,
        mut app: AppDefinition,
        version: Timestamp,
    ) -> Result<AppDefinition, ApiError> {
        app.version = Some(version);
        let json = encode(&app)?;
        let key = app_key(&app.id);
        if !self
            .store
            .cas(&key, Expect::Version(stored.store_version), json.clone())
            .await?
        {
            return Err(ApiError::conflict(format!(
                "App '{}' was changed by another request; try again",
                app.id
            )));
        }
        self.store.put(&version_key(&app.id, version), json).await?;
        Ok(app)
    }

    /// Every app, in id order.
    pub async fn list(&self) -> Result<Vec<AppDefinition>, ApiError> {
        let mut apps = Vec::new();
        for key in self.keys_under("apps/").await? {
            if let Some((json, _)) = self.store.get(&key).await? {
                apps.push(decode(&json)?);
            }
        }
        Ok(apps)
    }

    /// The versions app `id` has had, newest first.
    pub async fn versions(&self, id: &PathId) -> Result<Vec<Timestamp>, ApiError> {
        let prefix = format!("versions{id}@");
        let mut versions: Vec<Timestamp> = self
            .keys_under(&prefix)
            .await?
            .iter()
            .filter_map(|k| Timestamp::parse(&k[prefix.len()..]).ok())
            .collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(versions)
    }

    /// Forgets app `id` and its versions; whether it existed.
    pub async fn delete(&self, id: &PathId) -> Result<bool, ApiError> {
        let existed = self.store.delete(&app_key(id)).await?;
        for key in self.keys_under(&format!("versions{id}@")).await? {
            self.store.delete(&key).await?;
        }
        Ok(existed)
    }

    /// Every key that starts with `prefix` (they follow `prefix` itself in key order).
    async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = Vec::new();
        loop {
            let after = keys.last().map_or(prefix, String::as_str);
            let (page, more) = self.store.list(after, LIST_PAGE).await?;
            let page_len = page.len();
            let under: Vec<String> = page
                .into_iter()
                .take_while(|k| k.starts_with(prefix))
                .collect();
            let whole_page = under.len() == page_len;
            keys.extend(under);
            if !(more && whole_page && page_len > 0) {
                return Ok(keys);
            }
        }
    }
}

fn encode(app: &AppDefinition) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(app).map_err(|e| ApiError {
        status: 500,
        message: format!("cannot encode app {}: {e}", app.id),
        details: Vec::new(),
    })
}

fn decode(json: &[u8]) -> Result<AppDefinition, ApiError> {
    serde_json::from_slice(json).map_err(|e| ApiError {
        status: 500,
        message: format!("a stored app does not decode: {e}"),
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
