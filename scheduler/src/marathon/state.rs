//! The scheduler's records in the masters' replicated framework store: the scheduler keeps no state of its own,
//! so that any `drover scheduler` can take over.
//!
//! Layout (one framework's keys): `apps/<id>` holds an app's record (its current definition,
//! `version` set, and its configuration version), `versions/<id>@<version>` each definition it
//! has had (`@` is in no id, so one app's versions are never under another's prefix),
//! `instances/<instance id>` each instance that has had a task, `deployments/<id>` each
//! deployment under way. Every change of an
//! app is a compare-and-set on its key's store version, so two schedulers (or two requests)
//! racing on one app cannot both win: the loser is told 409, or retries on the new state.
//!
//! [`Records`] reads and writes them; [`KvStore`] is the store as this module needs it;
//! [`FrameworkStore`] is the masters',
//! [`MemoryStore`] a test double.

use std::collections::BTreeMap;
use std::sync::Mutex;

use drover_client::MasterClient;
use drover_proto::master::compare_and_set_request::Expected;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::app::AppDefinition;
use super::deployment::{Deployment, DeploymentId};
use super::error::ApiError;
use super::instance::{Instance, InstanceId};
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
        ApiError::new(503, e.to_string())
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
    /// Writes `value` if `key` is as `expect` says: the new version if it wrote.
    fn cas(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Option<u64>, StoreError>> + Send;
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

impl<T: KvStore + Send + Sync> KvStore for std::sync::Arc<T> {
    fn get(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Option<(Vec<u8>, u64)>, StoreError>> + Send {
        (**self).get(key)
    }

    fn cas(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Option<u64>, StoreError>> + Send {
        (**self).cas(key, expect, value)
    }

    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        (**self).put(key, value)
    }

    fn delete(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send {
        (**self).delete(key)
    }

    fn list(
        &self,
        start_after: &str,
        limit: u32,
    ) -> impl std::future::Future<Output = Result<(Vec<String>, bool), StoreError>> + Send {
        (**self).list(start_after, limit)
    }
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

    async fn cas(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        let expected = match expect {
            Expect::Absent => Expected::ExpectedAbsent(true),
            Expect::Version(v) => Expected::ExpectedVersion(v),
        };
        let reply = self
            .client
            .compare_and_set(&self.framework, key, expected, value)
            .await
            .map_err(unavailable)?;
        Ok(reply.succeeded.then_some(reply.version))
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

    async fn cas(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        let mut entries = self.entries();
        let current = entries.get(key).map(|(_, v)| *v);
        let matches = match expect {
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        };
        if !matches {
            return Ok(None);
        }
        let version = current.unwrap_or(0) + 1;
        entries.insert(key.to_string(), (value, version));
        Ok(Some(version))
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

fn instance_key(id: &InstanceId) -> String {
    format!("instances/{id}")
}

fn deployment_key(id: &DeploymentId) -> String {
    format!("deployments/{id}")
}

/// Values read at once when loading many records.
const READ_CONCURRENCY: usize = 64;

/// An app as the store keeps it: its definition (whose `version` is the time of its last
/// change) and the time of its last change of configuration (anything but `instances`),
/// which is the version its tasks run (`versionInfo.lastConfigChangeAt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRecord {
    pub app: AppDefinition,
    pub config_version: Timestamp,
}

impl AppRecord {
    /// The app's version (the time of its last change).
    pub fn version(&self) -> Timestamp {
        self.app.version.unwrap_or(self.config_version)
    }
}

/// An app as stored, with the store version its next change must expect.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredApp {
    pub record: AppRecord,
    pub store_version: u64,
}

/// The scheduler's records in a [`KvStore`]: apps and their versions, instances,
/// deployments.
pub struct Records<S> {
    store: S,
}

impl<S: KvStore> Records<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Stores a new app (its `version` set); 409 if its id is taken.
    pub async fn create(&self, record: &AppRecord) -> Result<(), ApiError> {
        let id = &record.app.id;
        if self
            .store
            .cas(&app_key(id), Expect::Absent, encode(record)?)
            .await?
            .is_none()
        {
            return Err(ApiError::conflict(format!(
                "An app with id [{id}] already exists."
            )));
        }
        self.put_version(&record.app).await
    }

    async fn put_version(&self, app: &AppDefinition) -> Result<(), ApiError> {
        let version = app.version.unwrap_or(Timestamp(0));
        self.store
            .put(&version_key(&app.id, version), encode(app)?)
            .await?;
        Ok(())
    }

    /// The app `id`, if there is one.
    pub async fn get(&self, id: &PathId) -> Result<Option<StoredApp>, ApiError> {
        match self.store.get(&app_key(id)).await? {
            None => Ok(None),
            Some((json, store_version)) => Ok(Some(StoredApp {
                record: decode(&json)?,
                store_version,
            })),
        }
    }

    /// Replaces an app that is still at `stored.store_version`; 409 if it changed meanwhile.
    pub async fn replace(&self, stored: &StoredApp, record: &AppRecord) -> Result<(), ApiError> {
        let key = app_key(&record.app.id);
        if self
            .store
            .cas(&key, Expect::Version(stored.store_version), encode(record)?)
            .await?
            .is_none()
        {
            return Err(ApiError::conflict(format!(
                "App '{}' was changed by another request; try again",
                record.app.id
            )));
        }
        self.put_version(&record.app).await
    }

    /// Every app, in id order.
    pub async fn list(&self) -> Result<Vec<AppRecord>, ApiError> {
        self.load_under("apps/").await
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

    /// App `id` as it was at `version`.
    pub async fn version(
        &self,
        id: &PathId,
        version: Timestamp,
    ) -> Result<Option<AppDefinition>, ApiError> {
        match self.store.get(&version_key(id, version)).await? {
            None => Ok(None),
            Some((json, _)) => Ok(Some(decode(&json)?)),
        }
    }

    /// Forgets app `id` and its versions; whether it existed.
    pub async fn delete(&self, id: &PathId) -> Result<bool, ApiError> {
        let existed = self.store.delete(&app_key(id)).await?;
        for key in self.keys_under(&format!("versions{id}@")).await? {
            self.store.delete(&key).await?;
        }
        Ok(existed)
    }

    pub async fn put_instance(&self, i: &Instance) -> Result<(), ApiError> {
        Ok(self.store.put(&instance_key(&i.id), encode(i)?).await?)
    }

    pub async fn forget_instance(&self, id: &InstanceId) -> Result<(), ApiError> {
        self.store.delete(&instance_key(id)).await?;
        Ok(())
    }

    pub async fn instances(&self) -> Result<Vec<Instance>, ApiError> {
        self.load_under("instances/").await
    }

    pub async fn put_deployment(&self, d: &Deployment) -> Result<(), ApiError> {
        Ok(self.store.put(&deployment_key(&d.id), encode(d)?).await?)
    }

    pub async fn forget_deployment(&self, id: &DeploymentId) -> Result<(), ApiError> {
        self.store.delete(&deployment_key(id)).await?;
        Ok(())
    }

    pub async fn deployments(&self) -> Result<Vec<Deployment>, ApiError> {
        self.load_under("deployments/").await
    }

    /// Every record under `prefix`, read a few at a time, in key order.
    async fn load_under<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, ApiError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let keys = self.keys_under(prefix).await?;
        let values: Vec<Option<(Vec<u8>, u64)>> = stream::iter(keys)
            .map(|k| async move { self.store.get(&k).await })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        values
            .into_iter()
            .flatten()
            .map(|(json, _)| decode(&json))
            .collect()
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

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|e| ApiError::new(500, format!("cannot encode a record: {e}")))
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(json)
        .map_err(|e| ApiError::new(500, format!("a stored record does not decode: {e}")))
}

#[cfg(test)]
mod tests;
