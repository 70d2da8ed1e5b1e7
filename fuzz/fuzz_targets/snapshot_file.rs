#![no_main]
//! Fuzz target `snapshot_file`: [`drover_fuzz_targets::raft::snapshot_file`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::raft::snapshot_file(data));
