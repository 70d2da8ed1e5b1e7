//! The leader's soft state, in parts with one owner each: pure data structures with the rules
//! that keep them, tested on their own. The conductor ([`super::conductor`]) holds the parts
//! and decides with them; the runtime ([`super::runtime`]) does the I/O.
//!
//! - [`offers`]: outstanding offers, their expiry, and removals in flight.
//! - [`liveness`]: when agents were last heard from, and the leader's state changes in flight.

pub mod liveness;
pub mod offers;
