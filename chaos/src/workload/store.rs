//! The store workload: concurrent reads, writes and compare-and-sets on a few keys of the
//! framework store, each recorded as invoke / ok / fail / info, for the linearizability
//! checker ([`crate::checker::store`]).
//!
//! Every written value is unique (`<client>.<incarnation>:<n>`), so a read names the write it saw. Keys are
//! used for a bounded number of operations each (`ops_per_key`) and then retired for a fresh
//! one, as Jepsen's independent keys are: each key's history stays small enough to search
//! however long the run. A compare-and-set expects the value the client last saw on that key
//! (or absence), so that many of them succeed.
//!
//! Outcomes follow the client library's guarantees: a write that returns `Ambiguous` is
//! `info` (it may yet commit); one refused before it was proposed or that never reached a
//! leader (`Rejected`, `Unavailable`) is `fail`. A read that fails is `fail` (it changed
//! nothing). The checker trusts none of this blindly: a `fail` that did take effect shows up
//! as a read of a value no successful write produced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_client::{ClientError, MasterClient, RetryPolicy};
use drover_proto::master::compare_and_set_request::Expected;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinSet;

use super::{BoxFuture, Context, Workload, WorkloadError};
use crate::history::Kind;

/// The store namespace (framework name) every key lives in.
pub const NAMESPACE: &str = "chaos";

/// Its shape.
#[derive(Clone, Debug)]
pub struct StoreWorkload {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys in use at any time.
    pub keys: usize,
    /// Operations on one key before it is retired.
    pub ops_per_key: u64,
    /// How long one operation may take (following the leader) before it is given up.
    pub op_timeout: Duration,
}

impl Default for StoreWorkload {
    fn default() -> Self {
        Self {
            clients: 5,
            keys: 3,
            ops_per_key: 200,
            op_timeout: Duration::from_secs(3),
        }
    }
}

impl Workload for StoreWorkload {
    fn name(&self) -> &'static str {
        "store"
    }

    fn run(self: Arc<Self>, ctx: Context) -> BoxFuture<Result<(), WorkloadError>> {
        Box::pin(async move {
            let policy = RetryPolicy {
                deadline: self.op_timeout,
                backoff_start: Duration::from_millis(20),
                backoff_max: Duration::from_millis(200),
            };
            let slots: Arc<Vec<AtomicU64>> =
                Arc::new((0..self.keys.max(1)).map(|_| AtomicU64::new(0)).collect());
            let mut clients = JoinSet::new();
            for c in 0..self.clients.max(1) {
                let client = MasterClient::with_policy(&ctx.masters, policy.clone())
                    .map_err(|e| WorkloadError::Setup(e.to_string()))?;
                let worker = Worker {
                    shape: self.clone(),
                    ctx: ctx.clone(),
                    client,
                    slots: slots.clone(),
                    index: c,
                    rng: StdRng::seed_from_u64(ctx.seed ^ (c as u64).wrapping_mul(0x9e37)),
                    last_seen: HashMap::new(),
                    written: 0,
                };
                clients.spawn(worker.run());
            }
            while clients.join_next().await.is_some() {}
            Ok(())
        })
    }
}

struct Worker {
    shape: Arc<StoreWorkload>,
    ctx: Context,
    client: MasterClient,
    slots: Arc<Vec<AtomicU64>>,
    index: usize,
    rng: StdRng,
    /// What this client last saw on each key (None: absent).
    last_seen: HashMap<String, Option<String>>,
    written: u64,
}

/// One operation to invoke.
enum Invocation {
    Read,
    Write(String),
    Cas {
        expected: Option<String>,
        new: String,
    },
}

impl Worker {
    fn key(&mut self) -> String {
        let slot = self.rng.random_range(0..self.slots.len());
        let n = self.slots[slot].fetch_add(1, Ordering::Relaxed);
        let generation = n / self.shape.ops_per_key.max(1);
        format!("s{:x}-k{slot}-g{generation}", self.ctx.seed & 0xffff_ffff)
    }

    async fn run(mut self) {
        let clients = self.shape.clients.max(1) as f64;
        let period = Duration::from_secs_f64((clients / self.ctx.rate.max(0.1)).min(60.0));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Clients start spread over one period rather than all at once.
        let offset = period.mul_f64(self.index as f64 / clients);
        tokio::time::sleep(offset).await;
        // After an `info`, the operation may still be in flight: go on as a new process
        // (`store-<client>.<n>`).
        let mut incarnation = 0u64;
        loop {
            tick.tick().await;
            if *self.ctx.stop.borrow() {
                return;
            }
            let key = self.key();
            let inv = match self.rng.random_range(0..10) {
                0..=3 => Invocation::Read,
                4..=6 => {
                    self.written += 1;
                    Invocation::Write(format!("{}.{incarnation}:{}", self.index, self.written))
                }
                _ => {
                    self.written += 1;
                    Invocation::Cas {
                        expected: self.last_seen.get(&key).cloned().flatten(),
                        new: format!("{}.{incarnation}:{}", self.index, self.written),
                    }
                }
            };
            let name = if incarnation == 0 {
                format!("store-{}", self.index)
            } else {
                format!("store-{}.{incarnation}", self.index)
            };
            if self.invoke(&name, &key, inv).await == Kind::Info {
                incarnation += 1;
            }
        }
    }

    /// Invokes one operation and records it; returns how it completed.
    async fn invoke(&mut self, process: &str, key: &str, inv: Invocation) -> Kind {
        let rec = self.ctx.rec.clone();
        let (f, args) = match &inv {
            Invocation::Read => ("read", json!({"key": key})),
            Invocation::Write(v) => ("write", json!({"key": key, "value": v})),
            Invocation::Cas { expected, new } => {
                ("cas", json!({"key": key, "expected": expected, "new": new}))
            }
        };
        rec.record(process, Kind::Invoke, f, args, None).await;
        let (kind, value, error) = match inv {
            Invocation::Read => match self.client.get(NAMESPACE, key).await {
                Ok(entry) => {
                    let v = entry.map(|e| String::from_utf8_lossy(&e.value).into_owned());
                    self.last_seen.insert(key.to_string(), v.clone());
                    (Kind::Ok, json!({"key": key, "value": v}), None)
                }
                // A read changes nothing: whatever went wrong, it did not happen.
                Err(e) => (Kind::Fail, json!({"key": key}), Some(e.to_string())),
            },
            Invocation::Write(v) => {
                match self
                    .client
                    .put(NAMESPACE, key, v.clone().into_bytes())
                    .await
                {
                    Ok(_) => {
                        self.last_seen.insert(key.to_string(), Some(v.clone()));
                        (Kind::Ok, json!({"key": key, "value": v}), None)
                    }
                    Err(e) => write_failure(key, e),
                }
            }
            Invocation::Cas { expected, new } => {
                let want = match &expected {
                    Some(v) => Expected::ExpectedValue(v.clone().into_bytes()),
                    None => Expected::ExpectedAbsent(true),
                };
                match self
                    .client
                    .compare_and_set(NAMESPACE, key, want, new.clone().into_bytes())
                    .await
                {
                    Ok(reply) => {
                        let now = if reply.succeeded {
                            Some(new.clone())
                        } else {
                            reply
                                .current
                                .map(|c| String::from_utf8_lossy(&c.value).into_owned())
                        };
                        self.last_seen.insert(key.to_string(), now);
                        (
                            Kind::Ok,
                            json!({"key": key, "expected": expected, "new": new,
                                   "succeeded": reply.succeeded}),
                            None,
                        )
                    }
                    Err(e) => write_failure(key, e),
                }
            }
        };
        rec.record(process, kind, f, value, error).await;
        kind
    }
}

/// How a failed write completed: unknown when it may have been proposed, failed otherwise.
fn write_failure(key: &str, e: ClientError) -> (Kind, serde_json::Value, Option<String>) {
    let kind = match e {
        ClientError::Ambiguous(_) => Kind::Info,
        _ => Kind::Fail,
    };
    (kind, json!({"key": key}), Some(e.to_string()))
}
