#![no_main]
//! Fuzz target `raft_log`: [`drover_fuzz_targets::raft::log`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzz_targets::raft::log(data));
