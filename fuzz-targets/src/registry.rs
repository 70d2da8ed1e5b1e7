//! The registry state machine under arbitrary committed operations.
//!
//! Every replica applies whatever the log commits, and a panic there would stop every replica
//! at the same entry, so [`apply`] must take any decodable operation. The input is a list of
//! proposals (their time and operations) in postcard, decoded by the rule committed data
//! decodes by; each is applied at the next log index. Afterwards the registry must survive a
//! snapshot's trip (written as records, decoded, gathered) unchanged, as a replica restoring
//! from a snapshot of it must hold the same state as one that applied the log.

use drover_master::registry::records::reloaded;
use drover_master::registry::{Op, Proposal, Registry};

/// At most this many operations are applied per input, so that one input stays fast.
const MAX_OPS: usize = 256;

pub fn apply(data: &[u8]) {
    let Ok(proposals) =
        drover_model::decoding_committed(|| postcard::from_bytes::<Vec<(u64, Vec<Op>)>>(data))
    else {
        return;
    };
    let mut registry = Registry::default();
    let mut applied = 0usize;
    for (i, (at_ms, ops)) in proposals.into_iter().enumerate() {
        applied += ops.len();
        if applied > MAX_OPS {
            break;
        }
        let Ok(proposal) = Proposal::new(at_ms, ops) else {
            continue;
        };
        let outcomes = registry.apply(i as u64 + 1, &proposal);
        assert_eq!(
            outcomes.len(),
            proposal.ops().len(),
            "an outcome per operation"
        );
    }
    assert_eq!(
        reloaded(&registry),
        registry,
        "a snapshot of the registry restores the same registry"
    );
}
