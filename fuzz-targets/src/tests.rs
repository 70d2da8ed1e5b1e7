//! Every committed corpus input through its target (the regression tests of what fuzzing
//! found, and a check that the seeds still decode), and the seeds themselves.

use std::path::{Path, PathBuf};

use super::*;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_committed_corpus_and_each_input_runs() {
    for (name, run) in TARGETS {
        let dir = corpus_dir(name);
        let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        assert!(!inputs.is_empty(), "{}: no inputs", dir.display());
        for input in inputs {
            let bytes = std::fs::read(&input).expect("read corpus input");
            run(&bytes);
        }
    }
}

#[test]
fn every_target_has_seeds_and_takes_them() {
    let seeds = seeds::all();
    assert_eq!(
        seeds.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
    for (name, inputs) in seeds {
        assert!(!inputs.is_empty(), "{name}");
        for input in inputs {
            target(name).expect("a target")(&input);
        }
    }
}

/// The seeds decode as what they are (a target taking them without a panic proves only that
/// it does not crash): the registry's lifecycle applies with every operation accepted.
#[test]
fn the_registry_seed_applies_without_a_rejection() {
    use drover_master::registry::cluster::ClusterOutcome;
    use drover_master::registry::{Op, Outcome, Proposal, Registry, StoreOutcome};
    let seeds = seeds::all();
    let (_, inputs) = seeds
        .iter()
        .find(|(n, _)| *n == "registry_apply")
        .expect("seeds");
    let proposals: Vec<(u64, Vec<Op>)> = postcard::from_bytes(&inputs[0]).expect("decodes");
    let mut registry = Registry::default();
    for (i, (at, ops)) in proposals.into_iter().enumerate() {
        let p = Proposal::new(at, ops).expect("encodes");
        for outcome in registry.apply(i as u64 + 1, &p) {
            let rejected = match &outcome {
                Outcome::Cluster(ClusterOutcome::Refused(_))
                | Outcome::Store(StoreOutcome::Rejected(_)) => true,
                Outcome::Cluster(ClusterOutcome::OffersCreated { refused }) => !refused.is_empty(),
                _ => false,
            };
            assert!(!rejected, "proposal {i}: {outcome:?}");
        }
    }
}

/// Writes the seeds into `$DROVER_FUZZ_SEEDS/<target>/seed-<n>` (what `scripts/fuzz.sh seeds`
/// runs).
#[test]
#[ignore = "writes files; run by scripts/fuzz.sh seeds"]
fn write_seeds() {
    let root = PathBuf::from(std::env::var("DROVER_FUZZ_SEEDS").expect("DROVER_FUZZ_SEEDS"));
    for (name, inputs) in seeds::all() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input).expect("write seed");
        }
    }
}
