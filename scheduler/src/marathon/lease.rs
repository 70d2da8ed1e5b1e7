//! Which `drover scheduler` is active: a lease in the framework store, taken and renewed by
//! compare-and-set, so that several schedulers can run and exactly one holds the
//! framework's subscription and changes its records.
//!
//! Owns the lease's rule. No two processes compare clocks: a contender takes the lease only
//! after it has seen the same store version of it, unchanged, for a whole [`LeaseTimes::ttl`]
//! by its own monotonic clock (the holder renews every `ttl / 4`, each renewal a new
//! version), or at once when the holder released it on a clean stop. The holder counts its
//! lease valid until `ttl - margin` after it sent its last successful renewal, and stops
//! acting when that passes without another ([`Holder::fence`]): the contender's wait started
//! after that renewal was written, so the two never act at once (beyond a request already on
//! the wire; the masters' refusal of calls from a replaced subscription fences those).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::state::{Expect, KvStore};

/// The lease's key in the framework store.
pub const LEASE_KEY: &str = "leader";

/// How long a lease lasts, and how often it is looked at.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    pub ttl: Duration,
    /// The holder stops acting this long before its lease could be taken.
    pub margin: Duration,
    /// How often a contender reads the lease.
    pub poll: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self {
            ttl: Duration::from_millis(2000),
            margin: Duration::from_millis(500),
            poll: Duration::from_millis(200),
        }
    }
}

/// The lease as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's process id (random per process).
    pub owner: String,
    /// Where the holder serves `/v2`.
    pub address: String,
    /// Set when the holder stopped cleanly: anyone may take it at once.
    #[serde(default)]
    pub released: bool,
}

/// One process's side of the lease.
pub struct Lease<S> {
    store: S,
    me: LeaseRecord,
    times: LeaseTimes,
}

/// The lease, held: its version, and until when it may be acted on.
pub struct Holder {
    version: u64,
    valid_until: watch::Sender<Instant>,
}

impl Holder {
    /// Until when the holder may act (it moves on with each renewal).
    pub fn fence(&self) -> watch::Receiver<Instant> {
        self.valid_until.subscribe()
    }
}

impl<S: KvStore> Lease<S> {
    pub fn new(store: S, owner: String, address: String, times: LeaseTimes) -> Self {
        Self {
            store,
            me: LeaseRecord {
                owner,
                address,
                released: false,
            },
            times,
        }
    }

    fn mine(&self) -> Vec<u8> {
        serde_json::to_vec(&self.me).unwrap_or_default()
    }

    /// Waits until this process holds the lease. Meanwhile `leader` says where the holder
    /// serves (`None` while nobody holds it).
    pub async fn acquire(&self, leader: &watch::Sender<Option<String>>) -> Holder {
        let mut seen: Option<(u64, Instant)> = None;
        loop {
            let sent = Instant::now();
            let attempt = match self.store.get(LEASE_KEY).await {
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the scheduler lease");
                    None
                }
                Ok(None) => Some(Expect::Absent),
                Ok(Some((value, version))) => {
                    let record: Option<LeaseRecord> = serde_json::from_slice(&value).ok();
                    let free = record.as_ref().is_none_or(|r| r.released);
                    leader.send_replace(record.filter(|r| !r.released).map(|r| r.address));
                    match seen {
                        _ if free => Some(Expect::Version(version)),
                        Some((v, since)) if v == version && since.elapsed() >= self.times.ttl => {
                            Some(Expect::Version(version))
                        }
                        Some((v, _)) if v == version => None,
                        _ => {
                            seen = Some((version, Instant::now()));
                            None
                        }
                    }
                }
            };
            if let Some(expect) = attempt {
                if let Ok(Some(version)) = self.store.cas(LEASE_KEY, expect, self.mine()).await {
                    leader.send_replace(Some(self.me.address.clone()));
                    let (valid_until, _) = watch::channel(sent + self.valid_for());
                    return Holder {
                        version,
                        valid_until,
                    };
                }
                seen = None;
            }
            tokio::time::sleep(self.times.poll).await;
        }
    }

    fn valid_for(&self) -> Duration {
        self.times.ttl.saturating_sub(self.times.margin)
    }

    /// Renews the lease until a renewal fails for good; returns when the holder must stop
    /// acting (its lease may be someone else's from now on).
    pub async fn hold(&self, holder: &mut Holder) {
        let every = self.times.ttl / 4;
        loop {
            tokio::time::sleep(every).await;
            let sent = Instant::now();
            let deadline = *holder.valid_until.borrow();
            let renewal = tokio::time::timeout(
                deadline.saturating_duration_since(sent),
                self.store
                    .cas(LEASE_KEY, Expect::Version(holder.version), self.mine()),
            )
            .await;
            match renewal {
                Ok(Ok(Some(version))) => {
                    holder.version = version;
                    holder.valid_until.send_replace(sent + self.valid_for());
                }
                Ok(Ok(None)) => {
                    tracing::warn!("the scheduler lease was taken by another scheduler");
                    return;
                }
                Ok(Err(e)) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "lease renewal failed; trying again");
                }
                _ => {
                    tracing::warn!("the scheduler lease could not be renewed in time");
                    return;
                }
            }
        }
    }

    /// Gives the lease up on a clean stop, so a standby takes over at once.
    pub async fn release(&self, holder: &Holder) {
        let mut record = self.me.clone();
        record.released = true;
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let _ = self
            .store
            .cas(LEASE_KEY, Expect::Version(holder.version), value)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::marathon::state::MemoryStore;

    fn times() -> LeaseTimes {
        LeaseTimes {
            ttl: Duration::from_millis(400),
            margin: Duration::from_millis(100),
            poll: Duration::from_millis(20),
        }
    }

    fn lease(store: &Arc<MemoryStore>, who: &str) -> Lease<Arc<MemoryStore>> {
        Lease::new(store.clone(), who.into(), format!("{who}:8080"), times())
    }

    #[tokio::test]
    async fn one_holds_the_other_waits_and_takes_over_only_after_the_holder_stops_renewing() {
        let store = Arc::new(MemoryStore::default());
        let (a, b) = (lease(&store, "a"), lease(&store, "b"));
        let (leader_a, _) = watch::channel(None);
        let mut held = a.acquire(&leader_a).await;
        let (leader_b, mut seen_by_b) = watch::channel(None);
        let b_acquires = tokio::spawn(async move {
            let h = b.acquire(&leader_b).await;
            (h, Instant::now())
        });
        seen_by_b
            .wait_for(|l| l.as_deref() == Some("a:8080"))
            .await
            .unwrap();
        // Renewed for a while: b must not take it.
        let renewing = tokio::time::timeout(Duration::from_millis(1500), a.hold(&mut held)).await;
        assert!(renewing.is_err(), "a kept its lease while renewing");
        assert!(!b_acquires.is_finished(), "b waited");
        let fence = held.fence();
        let a_stopped = Instant::now();
        let (_, b_at) = b_acquires.await.unwrap();
        assert!(
            *fence.borrow() <= b_at,
            "a's lease was valid until after b took it"
        );
        assert!(b_at.duration_since(a_stopped) >= times().ttl - times().margin);
        // a's next renewal finds the lease taken.
        tokio::time::timeout(Duration::from_secs(5), a.hold(&mut held))
            .await
            .expect("a learns it lost the lease");
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let store = Arc::new(MemoryStore::default());
        let (a, b) = (lease(&store, "a"), lease(&store, "b"));
        let (leader, _) = watch::channel(None);
        let held = a.acquire(&leader).await;
        a.release(&held).await;
        let started = Instant::now();
        b.acquire(&leader).await;
        assert!(
            started.elapsed() < times().ttl,
            "no wait for a released lease"
        );
        assert_eq!(leader.borrow().as_deref(), Some("b:8080"));
    }
}
